//! `aftercare logs`: the delivery log for support. Every message with its state and reason,
//! and under it every attempt with the channel (and SMS gateway) it went through, the
//! server's answer, and any delivery receipt the carrier sent back; with `--contact`, the
//! SMS replies the contact sent us.

use super::{App, Format, FormatArg};
use crate::model::{MessageRecord, MessageState};
use crate::store::{LogFilter, StoredReply};
use crate::text::printable as p;
use crate::values::When;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::ValueEnum;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Contact id, email address or phone number
    #[arg(long)]
    contact: Option<String>,
    /// Job id
    #[arg(long)]
    job: Option<String>,
    /// Order id (event.data.order_id of the triggering event)
    #[arg(long)]
    order: Option<String>,
    /// Only messages in these states (repeat or comma-separate)
    #[arg(long, value_enum, value_delimiter = ',')]
    status: Vec<Status>,
    /// Sent SMS by what the carrier's receipt said (unknown: no final receipt yet)
    #[arg(long, value_enum)]
    delivery: Option<Delivery>,
    /// Messages due at or after this time (RFC 3339, or a date: its midnight in defaults.timezone)
    #[arg(long, value_parser = When::parse)]
    since: Option<When>,
    /// Messages due at or before this time (RFC 3339, or a date: its midnight in defaults.timezone)
    #[arg(long, value_parser = When::parse)]
    until: Option<When>,
    /// At most this many messages
    #[arg(long, default_value_t = 200)]
    limit: i64,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Status {
    Scheduled,
    Open,
    Claimed,
    Retrying,
    Sent,
    Failed,
    Cancelled,
    /// In the job's holdout group: nothing was sent.
    // Spelt as the state is everywhere else (the log, the API's `status=held_out`).
    #[value(name = "held_out", alias = "held-out")]
    HeldOut,
}

impl From<Status> for MessageState {
    fn from(s: Status) -> MessageState {
        match s {
            Status::Scheduled => MessageState::Scheduled,
            Status::Open => MessageState::Open,
            Status::Claimed => MessageState::Claimed,
            Status::Retrying => MessageState::Retrying,
            Status::Sent => MessageState::Sent,
            Status::Failed => MessageState::Failed,
            Status::Cancelled => MessageState::Cancelled,
            Status::HeldOut => MessageState::HeldOut,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Delivery {
    Delivered,
    Undelivered,
    Unknown,
}

pub(super) async fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    // The log is readable even while a job file is broken.
    let app = App::load(config_path)?;
    let store = app.open_store().await?;
    let filter = LogFilter {
        contact: a.contact,
        job: a.job,
        order: a.order,
        channel_plan: None,
        delivery: a.delivery.map(|d| {
            d.to_possible_value()
                .expect("no variant is skipped")
                .get_name()
                .to_string()
        }),
        states: a.status.into_iter().map(Into::into).collect(),
        since: app.at(a.since),
        until: app.at(a.until),
        limit: a.limit,
        ..Default::default()
    };
    let messages = store.find_messages(&filter).await?;
    // What the contact texted back belongs beside what we sent (table only: the JSON stays
    // an array of messages; the API's timeline has both).
    let replies = match (&filter.contact, a.format.get()) {
        (Some(c), Format::Text) => store.replies_of(c).await?,
        _ => Vec::new(),
    };
    // Email bounces and complaints beside the message they answer (table only, as replies).
    let mut bounces = std::collections::HashMap::new();
    if a.format.get() == Format::Text {
        for m in messages
            .iter()
            .filter(|m| m.channel.as_deref() == Some("email"))
        {
            let b = store.bounces(Some(&m.id), None, 100).await?;
            if !b.is_empty() {
                bounces.insert(m.id.clone(), b);
            }
        }
    }
    store.close().await;
    match a.format.get() {
        Format::Json => println!("{}", serde_json::to_string_pretty(&messages)?),
        Format::Text => {
            let tz = app.config.default_timezone;
            print!("{}", table(&messages, &bounces, tz));
            print!("{}", replies_table(&replies, tz));
        }
    }
    Ok(())
}

fn replies_table(replies: &[StoredReply], tz: Tz) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for r in replies {
        let _ = writeln!(
            out,
            "reply  {}  from {} via {}{}  {:?}",
            r.received_at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S"),
            p(&r.from),
            p(&r.gateway),
            r.action
                .as_deref()
                .map(|a| format!("  ({})", p(a)))
                .unwrap_or_default(),
            r.text,
        );
    }
    if !replies.is_empty() {
        let _ = writeln!(
            out,
            "{} SMS repl{}",
            replies.len(),
            if replies.len() == 1 { "y" } else { "ies" }
        );
    }
    out
}

fn table(
    messages: &[MessageRecord],
    bounces: &std::collections::HashMap<String, Vec<crate::store::StoredBounce>>,
    tz: Tz,
) -> String {
    use std::fmt::Write;
    let t = |d: DateTime<Utc>| d.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let mut out = String::new();
    if messages.is_empty() {
        out.push_str("no messages match\n");
        return out;
    }
    let _ = writeln!(out, "times in {}", tz.name());
    for m in messages {
        let _ = writeln!(
            out,
            "{}  {}  step {}{}  contact {}{}  due {}  {}{}{}",
            p(&m.id),
            p(&m.job_id),
            m.step,
            m.variant
                .as_deref()
                .map(|v| format!("  variant {}", p(v)))
                .unwrap_or_default(),
            p(&m.contact_id),
            m.order_id
                .as_deref()
                .map(|o| format!("  order {}", p(o)))
                .unwrap_or_default(),
            t(m.due_at),
            // `held out`: the words support reads.
            m.state.as_str().replace('_', " "),
            m.address
                .as_deref()
                .map(|a| format!("  {} {}", p(m.channel.as_deref().unwrap_or("")), p(a)))
                .unwrap_or_default(),
            m.delivery
                .as_deref()
                .map(|d| format!("  ({})", p(d)))
                .unwrap_or_default(),
        );
        if let Some(r) = &m.reason {
            let _ = writeln!(out, "    reason: {}", p(r));
        }
        for at in &m.attempt_log {
            let _ = writeln!(
                out,
                "    attempt {}  {}  {}{}  {}  {}{}{}",
                at.attempt,
                t(at.at),
                p(&at.channel),
                at.gateway
                    .as_deref()
                    .map(|g| format!(" via {}", p(g)))
                    .unwrap_or_default(),
                at.outcome,
                at.code.map(|c| format!("{c} ")).unwrap_or_default(),
                p(at.detail.as_deref().unwrap_or("")),
                at.provider_id
                    .as_deref()
                    .map(|id| format!("  {}", p(id)))
                    .unwrap_or_default(),
            );
            for r in &at.receipts {
                let _ = writeln!(
                    out,
                    "      receipt  {}  {}{}{}",
                    t(r.received_at),
                    p(&r.status),
                    r.code
                        .as_deref()
                        .map(|c| format!("  {}", p(c)))
                        .unwrap_or_default(),
                    r.text
                        .as_deref()
                        .map(|c| format!(" {}", p(c)))
                        .unwrap_or_default(),
                );
            }
        }
        for b in bounces.get(&m.id).into_iter().flatten() {
            let _ = writeln!(
                out,
                "    {} ({})  {}{}  {}  → {}",
                if b.kind == "complaint" {
                    "complaint".to_string()
                } else {
                    format!("{} bounce", b.kind)
                },
                p(&b.source),
                t(b.received_at),
                b.status
                    .as_deref()
                    .map(|s| format!("  {}", p(s)))
                    .unwrap_or_default(),
                p(&b.detail),
                p(&b.action),
            );
        }
    }
    let _ = writeln!(out, "{} message(s)", messages.len());
    out
}
