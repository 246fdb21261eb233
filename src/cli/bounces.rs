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
use crate::values::When;
use chrono::Utc;
use std::io::{BufRead, Read};
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
    /// Record as of this time instead of now (RFC 3339, or a date: its midnight in defaults.timezone)
    #[arg(long, value_parser = When::parse)]
    now: Option<When>,
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

/// The longest mail read: standard input (a delivery agent's one mail) past it is refused,
/// and a mail past it in an mbox or a maildir is skipped and said. (Standard input used to be
/// cut there silently: a report after 64 MiB of mbox was lost, and the agent told "taken".)
const MAX_MAIL: usize = 64 * 1024 * 1024;

/// One mail of the input, or one too long to read as a report.
enum Mail {
    Bytes(Vec<u8>),
    TooLong,
}

impl Mail {
    fn of(bytes: Vec<u8>) -> Mail {
        if bytes.len() > MAX_MAIL {
            Mail::TooLong
        } else {
            Mail::Bytes(bytes)
        }
    }
}

type Mails = Box<dyn Iterator<Item = anyhow::Result<Mail>>>;

/// The mails in the input, one at a time (an mbox file or a maildir is not read whole):
/// a maildir's, an mbox's, or the one mail.
fn mails(input: &Path) -> anyhow::Result<Mails> {
    if input == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(MAX_MAIL as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Exit::invalid(format!("cannot read standard input: {e}")))?;
        if buf.len() > MAX_MAIL {
            return Err(Exit::invalid(format!(
                "standard input is longer than {} MiB: nothing was recorded; give a larger mbox as a FILE",
                MAX_MAIL >> 20
            )));
        }
        return Ok(Box::new(
            dsn::split_mbox(&buf).into_iter().map(|m| Ok(Mail::of(m))),
        ));
    }
    if input.is_dir() {
        let shown = input.display().to_string();
        let it = mail_parser::mailbox::maildir::MessageIterator::new(input)
            .map_err(|e| Exit::invalid(format!("{shown} is not a maildir: {e}")))?;
        return Ok(Box::new(it.map(move |m| {
            m.map(|m| Mail::of(m.contents().to_vec()))
                .map_err(|e| Exit::invalid(format!("cannot read a mail in {shown}: {e}")))
        })));
    }
    let shown = input.display().to_string();
    let cannot = |e: std::io::Error| Exit::invalid(format!("cannot read {shown}: {e}"));
    let mut file = std::io::BufReader::new(std::fs::File::open(input).map_err(cannot)?);
    let is_mbox = file.fill_buf().map_err(cannot)?.starts_with(b"From ");
    if !is_mbox {
        let mut buf = Vec::new();
        (&mut file)
            .take(MAX_MAIL as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(cannot)?;
        return Ok(Box::new(std::iter::once(Ok(Mail::of(buf)))));
    }
    Ok(Box::new(
        mail_parser::mailbox::mbox::MessageIterator::new(file).map(move |m| {
            m.map(|m| Mail::of(m.contents().to_vec()))
                .map_err(|_| Exit::invalid(format!("cannot read the mbox {shown}")))
        }),
    ))
}

async fn ingest(config_path: &Path, a: IngestArgs) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let mails = mails(&a.input)?;
    let store = app.open_store().await.map_err(|e| Exit {
        code: 75,
        message: format!("{e:#} (the mail is left to the delivery agent to retry)"),
    })?;
    let feedback = crate::feedback::Feedback::new(store.clone(), &app.config.email);
    let now = app.at(a.now).unwrap_or_else(Utc::now);
    let (mut recorded, mut skipped) = (0, 0);
    for (i, mail) in mails.enumerate() {
        let mail = match mail? {
            Mail::Bytes(b) => b,
            Mail::TooLong => {
                skipped += 1;
                println!(
                    "mail {}: longer than {} MiB: not read as a report",
                    i + 1,
                    MAX_MAIL >> 20
                );
                continue;
            }
        };
        match dsn::parse(&mail, a.to.as_deref(), &feedback.matcher) {
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
