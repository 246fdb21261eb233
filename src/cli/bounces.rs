//! `aftercare bounces ingest [FILE|-]`: delivery status notifications (RFC 3464) and
//! complaint reports (ARF, RFC 5965) from a file, an mbox, a maildir or standard input,
//! which is how a postfix `pipe` transport or a `.forward` hands them over (README
//! "Bounces and complaints"); `bounces list` shows what came in and what it did.
//!
//! Exit codes for a mail delivery agent: 0 when the mail was taken (stored, or not a
//! report at all: an auto-reply must not bounce back), 75 (EX_TEMPFAIL) when the store
//! could not be written, so the agent keeps the mail and tries again.

use super::{App, Exit, Format, FormatArg};
use crate::channels::email::feedback::dsn::{self, Parsed};
use crate::text::printable as p;
use chrono::{DateTime, Utc};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub(super) enum Command {
    /// Read DSNs and ARF reports from FILE (one mail or an mbox), a maildir, or - (stdin)
    Ingest(IngestArgs),
    /// Show recorded bounces and complaints, newest first
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
pub(super) struct IngestArgs {
    /// A mail, an mbox file, a maildir folder, or - for standard input
    #[arg(default_value = "-")]
    input: PathBuf,
    /// The envelope recipient (postfix: ${recipient}), the VERP address the report came to
    #[arg(long)]
    to: Option<String>,
    /// Record as of this instant (RFC 3339) instead of now
    #[arg(long, value_parser = crate::values::parse_time)]
    now: Option<DateTime<Utc>>,
}

#[derive(clap::Args, Debug)]
pub(super) struct ListArgs {
    /// Only this address
    #[arg(long)]
    address: Option<String>,
    /// Only reports about this message
    #[arg(long)]
    message: Option<String>,
    /// Print the raw report of this bounce id
    #[arg(long, conflicts_with_all = ["address", "message"])]
    raw: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[command(flatten)]
    format: FormatArg,
}

pub(super) async fn run(config_path: &Path, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Ingest(a) => ingest(config_path, a).await,
        Command::List(a) => list(config_path, a).await,
    }
}

/// The mails in the input: a maildir's, an mbox's, or the one mail.
fn mails(input: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    if input == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(64 * 1024 * 1024)
            .read_to_end(&mut buf)
            .map_err(|e| Exit::invalid(format!("cannot read standard input: {e}")))?;
        return Ok(dsn::split_mbox(&buf));
    }
    if input.is_dir() {
        let it = mail_parser::mailbox::maildir::MessageIterator::new(input)
            .map_err(|e| Exit::invalid(format!("{} is not a maildir: {e}", input.display())))?;
        return it
            .map(|m| {
                m.map(|m| m.contents().to_vec()).map_err(|e| {
                    Exit::invalid(format!("cannot read a mail in {}: {e}", input.display()))
                })
            })
            .collect();
    }
    let bytes = std::fs::read(input)
        .map_err(|e| Exit::invalid(format!("cannot read {}: {e}", input.display())))?;
    Ok(dsn::split_mbox(&bytes))
}

async fn ingest(config_path: &Path, a: IngestArgs) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let mails = mails(&a.input)?;
    let store = app.open_store().await.map_err(|e| Exit {
        code: 75,
        message: format!("{e:#} (the mail is left to the delivery agent to retry)"),
    })?;
    let feedback = crate::feedback::Feedback::new(store.clone(), &app.config.email);
    let now = a.now.unwrap_or_else(Utc::now);
    let (mut recorded, mut skipped) = (0, 0);
    for (i, mail) in mails.iter().enumerate() {
        match dsn::parse(mail, a.to.as_deref(), &feedback.matcher) {
            Parsed::NotAReport(why) => {
                skipped += 1;
                println!("mail {}: not a bounce or complaint: {}", i + 1, p(&why));
            }
            Parsed::Reports(reports) => {
                for r in reports {
                    let done = feedback.record(&r, None, now).await.map_err(|e| Exit {
                        code: 75,
                        message: format!("cannot record the report: {e}"),
                    })?;
                    match done.action {
                        None => println!(
                            "{} {} {}: already recorded",
                            r.source,
                            r.kind.as_str(),
                            p(&r.address)
                        ),
                        Some(action) => {
                            recorded += 1;
                            println!(
                                "{} {} {}{}: {}{}",
                                r.source,
                                r.kind.as_str(),
                                p(&r.address),
                                r.status
                                    .as_deref()
                                    .map(|s| format!(" ({s})"))
                                    .unwrap_or_default(),
                                p(&action),
                                done.message_id
                                    .map(|m| format!(" [message {m}]"))
                                    .unwrap_or_else(|| " [no message matched]".into())
                            );
                        }
                    }
                    for (scope, why) in done.braked {
                        println!("reputation brake engaged for {scope}: {}", p(&why));
                    }
                }
            }
        }
    }
    println!("{recorded} recorded, {skipped} not a report");
    store.close().await;
    Ok(())
}

async fn list(config_path: &Path, a: ListArgs) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let store = app.open_store().await?;
    if let Some(id) = a.raw {
        match store.bounce_raw(&id).await? {
            Some(raw) => println!("{}", crate::text::for_terminal_lines(&raw)),
            None => {
                return Err(Exit::invalid(format!(
                    "no bounce {} with a raw report",
                    p(&id)
                )));
            }
        }
        store.close().await;
        return Ok(());
    }
    let list = store
        .bounces(
            a.message.as_deref(),
            a.address.as_deref(),
            a.limit.clamp(1, 100_000),
        )
        .await?;
    match a.format.get() {
        Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Format::Text => {
            for b in &list {
                println!(
                    "{}  {:<10} {:<8} {}{}  {}  → {}{}",
                    b.received_at.format("%Y-%m-%d %H:%M:%SZ"),
                    b.kind,
                    b.source,
                    p(&b.address),
                    b.status
                        .as_deref()
                        .map(|s| format!(" {s}"))
                        .unwrap_or_default(),
                    p(&b.detail),
                    p(&b.action),
                    b.message_id
                        .as_deref()
                        .map(|m| format!(" [message {m}]"))
                        .unwrap_or_default()
                );
            }
            println!("{} bounce(s) and complaint(s)", list.len());
        }
    }
    store.close().await;
    Ok(())
}
