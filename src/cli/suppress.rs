//! `aftercare suppress add|remove|list` for support, and `aftercare unsubscribe TOKEN`,
//! which applies a one-click unsubscribe token (the same check the HTTP endpoint makes).

use super::{App, Exit, Format, FormatArg};
use crate::text::printable as p;
use crate::values::{When, normalise_phone};
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
        /// Date the change as of this time instead of now (RFC 3339, or a date: its
        /// midnight in defaults.timezone), like `run --once --now`
        #[arg(long, value_parser = When::parse)]
        now: Option<When>,
    },
    /// Allow an address again (logged with who did it)
    Remove {
        #[arg(value_enum)]
        channel: Channel,
        address: String,
        /// Who (for the record) [default: $USER]
        #[arg(long)]
        by: Option<String>,
        /// Why (for the record)
        #[arg(long, default_value = "removed by support")]
        reason: String,
        /// Date the change as of this time instead of now (RFC 3339, or a date: its
        /// midnight in defaults.timezone), like `run --once --now`
        #[arg(long, value_parser = When::parse)]
        now: Option<When>,
    },
    /// Show the list: why and since when, and until when for a soft-bounce suppression
    List {
        #[arg(long, value_enum)]
        channel: Option<Channel>,
        /// Every change ever made to this address's suppression, with who made it
        #[arg(long)]
        history: Option<String>,
        /// Tell an ended suppression from a running one as of this time instead of now
        /// (RFC 3339, or a date: its midnight in defaults.timezone), like `run --once --now`
        #[arg(long, value_parser = When::parse, conflicts_with = "history")]
        now: Option<When>,
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
            now,
        } => {
            let address = check_address(channel, &address)?;
            store
                .suppress(
                    channel.as_str(),
                    &address,
                    &reason,
                    Some("cli"),
                    &actor(),
                    crate::clock::from_option(app.at(now)).now(),
                )
                .await?;
            println!(
                "suppressed {} {}: {}",
                channel.as_str(),
                p(&address),
                p(&reason)
            );
        }
        Command::Remove {
            channel,
            address,
            by,
            reason,
            now,
        } => {
            let address = check_address(channel, &address)?;
            let by = by.unwrap_or_else(actor);
            if !store
                .unsuppress(
                    channel.as_str(),
                    &address,
                    &reason,
                    &by,
                    crate::clock::from_option(app.at(now)).now(),
                )
                .await?
            {
                return Err(Exit::invalid(format!(
                    "{} {} is not on the suppression list",
                    channel.as_str(),
                    p(&address)
                )));
            }
            tracing::warn!(channel = channel.as_str(), by = %by, "suppression removed by hand");
            println!(
                "removed {} {} from the suppression list (by {})",
                channel.as_str(),
                p(&address),
                p(&by)
            );
        }
        Command::List {
            history: Some(address),
            channel,
            format,
            now: _,
        } => {
            let channel = channel.unwrap_or(Channel::Email);
            let address = check_address(channel, &address)?;
            let changes = store
                .suppression_changes(channel.as_str(), &address)
                .await?;
            match format.get() {
                Format::Json => {
                    let v: Vec<_> = changes
                        .iter()
                        .map(|(change, reason, actor, at)| {
                            serde_json::json!({"change": change, "reason": reason, "by": actor, "at": at})
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Format::Text => {
                    for (change, reason, actor, at) in &changes {
                        println!(
                            "{}  {:<7}  by {}  {}",
                            at.format("%Y-%m-%d %H:%M:%SZ"),
                            p(change),
                            p(actor),
                            p(reason)
                        );
                    }
                    println!("{} change(s)", changes.len());
                }
            }
        }
        Command::List {
            channel,
            format,
            history: None,
            now,
        } => {
            let now = crate::clock::from_option(app.at(now)).now();
            let list = store.suppressions(channel.map(Channel::as_str)).await?;
            match format.get() {
                Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                Format::Text => {
                    for s in &list {
                        println!(
                            "{}  {:<5}  {}  {}{}{}",
                            s.created_at.format("%Y-%m-%d %H:%M:%SZ"),
                            p(&s.channel),
                            p(&s.address),
                            p(&s.reason),
                            s.source
                                .as_deref()
                                .map(|x| format!(" ({})", p(x)))
                                .unwrap_or_default(),
                            match s.expires_at {
                                Some(t) if t <= now =>
                                    format!("  [ended {}]", t.format("%Y-%m-%d %H:%M:%SZ")),
                                Some(t) => format!("  [until {}]", t.format("%Y-%m-%d %H:%M:%SZ")),
                                None => String::new(),
                            }
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
            &format!("unsubscribe link, applied by {}", actor()),
            Utc::now(),
        )
        .await?;
    store.close().await;
    println!("unsubscribed {} {}", p(&channel), p(&address));
    Ok(())
}

/// Who is at the terminal, for the record of a hand change: `$USER`, else `cli`.
pub(super) fn actor() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "cli".into())
}
