//! `aftercare forecast`: what would be sent when, after every policy, without sending.
//!
//! Rather than a second implementation of the rules that could drift from the real one, the
//! forecast copies the store into a scratch SQLite file and replays the daemon on it: the
//! same scheduler ticks, the same dispatch decisions (stop conditions, consent, suppression,
//! quiet hours, caps, rendering), with a clock that jumps from one due time to the next and
//! channels that report success without sending. Reminders are planned as if each message
//! were sent on time.

use super::{App, Exit, Format, FormatArg};
use crate::channels::{Channels, email::EmailChannel};
use crate::clock::SteppedClock;
use crate::dispatch::Dispatcher;
use crate::model::{MessageRecord, MessageState};
use crate::schedule::Scheduler;
use crate::store::{LogFilter, Store};
use crate::store::{SqliteSync, StoreConfig};
use crate::text::printable as p;
use crate::values::parse_time;
use chrono::{DateTime, Duration as Span, Utc};
use std::path::Path;
use std::sync::Arc;

const MAX_STEPS: usize = 200_000;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Only this job's messages (all jobs are still simulated: caps are shared)
    #[arg(long)]
    job: Option<String>,
    /// Up to this time (RFC 3339 or YYYY-MM-DD) [default: 7 days from now]
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// Start from this time instead of now
    #[arg(long, value_parser = parse_time)]
    now: Option<DateTime<Utc>>,
    #[command(flatten)]
    format: FormatArg,
}

pub(super) async fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    let app = App::load_valid(config_path)?;
    if let Some(j) = &a.job
        && app.jobs.get(j).is_none()
    {
        return Err(Exit::invalid(format!("no job `{j}`")));
    }
    let now = a.now.unwrap_or_else(Utc::now);
    let until = a.until.unwrap_or(now + Span::days(7));
    if until <= now {
        return Err(Exit::invalid("--until must be after --now"));
    }
    let store = app.open_store().await?;
    let scratch_dir = tempfile::tempdir()?;
    let path = scratch_dir.path().join("forecast.db");
    store.snapshot_to(&path).await?;
    store.close().await;
    let scratch = Store::open(&StoreConfig::Sqlite {
        path,
        synchronous: SqliteSync::Normal,
    })
    .await?;
    let done_before = scratch.final_ids().await?;

    let clock = Arc::new(SteppedClock::new(now));
    let book = app.playbook();
    let dispatcher = Arc::new(
        Dispatcher::new(
            scratch.clone(),
            book.clone(),
            Arc::new(Channels {
                email: EmailChannel::new(&app.config.email)?,
                webhook: None,
                sms: app
                    .config
                    .sms
                    .as_ref()
                    .map(crate::channels::sms::SmsChannel::new)
                    .transpose()?,
            }),
            clock.clone(),
            app.config.dispatch.clone(),
            "forecast".into(),
        )
        .dry_run(),
    );
    let mut scheduler = Scheduler::new(scratch.clone(), book);
    scheduler.horizon = until - now + Span::days(1);
    let mut t = now;
    for _ in 0..MAX_STEPS {
        clock.set(t);
        scheduler.tick(t).await?;
        dispatcher.run_once().await?;
        let next_due = scratch
            .next_due()
            .await?
            .map(|d| d.max(t + Span::milliseconds(1)));
        let next_occ = scheduler.next_occurrence_after(t, until);
        match [next_due, next_occ].into_iter().flatten().min() {
            Some(next) if next <= until => t = next,
            _ => break,
        }
    }
    let filter = LogFilter {
        job: a.job.clone(),
        limit: 1_000_000,
        ..Default::default()
    };
    let changed: Vec<MessageRecord> = scratch
        .find_messages(&filter)
        .await?
        .into_iter()
        .filter(|m| m.state.is_final() && !done_before.contains(&m.id))
        .collect();
    scratch.close().await;
    let (send, skip): (Vec<_>, Vec<_>) = changed
        .into_iter()
        .partition(|m| m.state == MessageState::Sent);
    let mut send = send;
    send.sort_by_key(|m| (m.sent_at, m.id.clone()));
    if a.format.get() == Format::Json {
        let item = |m: &MessageRecord| {
            serde_json::json!({
                "at": m.sent_at, "job": m.job_id, "step": m.step, "contact": m.contact_id, "order": m.order_id,
                "channel": m.channel, "address": m.address, "callback_task": m.channel_plan.is_some(), "reason": m.reason,
            })
        };
        let out = serde_json::json!({
            "from": now, "until": until,
            "send": send.iter().map(item).collect::<Vec<_>>(),
            "not_sent": skip.iter().map(item).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let tz = app.config.default_timezone;
    let fmt = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    println!(
        "forecast {} → {} ({})",
        fmt(Some(now)),
        fmt(Some(until)),
        tz.name()
    );
    for m in &send {
        let what = if m.channel_plan.is_some() {
            "callback task".to_string()
        } else {
            format!(
                "{} {}",
                p(m.channel.as_deref().unwrap_or("-")),
                p(m.address.as_deref().unwrap_or(""))
            )
        };
        println!(
            "{}  {}  step {}  contact {}{}  {what}",
            fmt(m.sent_at),
            p(&m.job_id),
            m.step,
            p(&m.contact_id),
            m.order_id
                .as_deref()
                .map(|o| format!("  order {}", p(o)))
                .unwrap_or_default()
        );
    }
    println!("{} message(s) would be sent", send.len());
    if !skip.is_empty() {
        println!("not sent:");
        for m in &skip {
            println!(
                "  {}  {}  contact {}: {}",
                p(&m.id),
                p(&m.job_id),
                p(&m.contact_id),
                p(m.reason.as_deref().unwrap_or(m.state.as_str()))
            );
        }
    }
    Ok(())
}
