//! `aftercare suppress add|remove|list` for support, and `aftercare unsubscribe TOKEN`,
//! which applies a one-click unsubscribe token (the same check the HTTP endpoint makes).

use super::{App, Exit, Format, FormatArg};
use crate::text::printable as p;
use crate::values::normalise_phone;
use chrono::Utc;
use clap::{Subcommand, ValueEnum};
use std::path::Path;

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Stop contacting an address on a channel
    Add {
        #[arg(value_enum)]
        channel: Channel,
        address: String,
        /// Why (shown in the log of every message it stops)
        #[arg(long, default_value = "added by support")]
        reason: String,
    },
    /// Allow an address again
    Remove {
        #[arg(value_enum)]
        channel: Channel,
        address: String,
    },
    /// Show the list
    List {
        #[arg(long, value_enum)]
        channel: Option<Channel>,
        #[command(flatten)]
        format: FormatArg,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub(super) enum Channel {
    Email,
    Sms,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

fn check_address(channel: Channel, address: &str) -> anyhow::Result<String> {
    match channel {
        Channel::Email => address
            .trim()
            .parse::<lettre::Address>()
            .map(|_| address.trim().to_lowercase())
            .map_err(|e| Exit::invalid(format!("`{address}` is not an email address ({e})"))),
        Channel::Sms => normalise_phone(address).map_err(Exit::invalid),
    }
}

pub(super) async fn run(config_path: &Path, cmd: Command) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let store = app.open_store().await?;
    match cmd {
        Command::Add {
            channel,
            address,
            reason,
        } => {
            let address = check_address(channel, &address)?;
            store
                .suppress(channel.as_str(), &address, &reason, Some("cli"), Utc::now())
                .await?;
            println!(
                "suppressed {} {}: {}",
                channel.as_str(),
                p(&address),
                p(&reason)
            );
        }
        Command::Remove { channel, address } => {
            let address = check_address(channel, &address)?;
            if !store.unsuppress(channel.as_str(), &address).await? {
                return Err(Exit::invalid(format!(
                    "{} {} is not on the suppression list",
                    channel.as_str(),
                    p(&address)
                )));
            }
            println!(
                "removed {} {} from the suppression list",
                channel.as_str(),
                p(&address)
            );
        }
        Command::List { channel, format } => {
            let list = store.suppressions(channel.map(Channel::as_str)).await?;
            match format.get() {
                Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                Format::Text => {
                    for s in &list {
                        println!(
                            "{}  {:<5}  {}  {}{}",
                            s.created_at.format("%Y-%m-%d %H:%M:%SZ"),
                            p(&s.channel),
                            p(&s.address),
                            p(&s.reason),
                            s.source
                                .as_deref()
                                .map(|x| format!(" ({})", p(x)))
                                .unwrap_or_default()
                        );
                    }
                    println!("{} suppressed address(es)", list.len());
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

#[derive(clap::Args, Debug)]
pub(super) struct UnsubscribeArgs {
    /// The token from an unsubscribe link (the part after /u/)
    // base64url: a token may begin with `-`, which is not a flag here.
    #[arg(allow_hyphen_values = true)]
    token: String,
    /// Only say whom the token is for; change nothing
    #[arg(long)]
    check: bool,
}

pub(super) async fn unsubscribe(config_path: &Path, a: UnsubscribeArgs) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let Some(u) = &app.unsubscriber else {
        return Err(Exit::invalid(
            "no `unsubscribe:` section in the config (or its key could not be read)",
        ));
    };
    let (channel, address) = u
        .verify(&a.token)
        .map_err(|e| Exit::invalid(format!("rejected: {e}")))?;
    if a.check {
        println!("valid: {} {}", p(&channel), p(&address));
        return Ok(());
    }
    let store = app.open_store().await?;
    store
        .suppress(
            &channel,
            &address,
            "unsubscribed (one-click link)",
            Some("token"),
            Utc::now(),
        )
        .await?;
    store.close().await;
    println!("unsubscribed {} {}", p(&channel), p(&address));
    Ok(())
}
