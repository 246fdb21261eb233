//! `aftercare forecast`: what would be sent when, after every policy, without sending.
//!
//! Rather than a second implementation of the rules that could drift from the real one, the
//! forecast copies the store into a scratch SQLite file and replays the daemon on it: the
//! same scheduler ticks, the same dispatch decisions (stop conditions, consent, suppression,
//! quiet hours, caps, rendering), with a clock that jumps from one due time to the next and
//! channels that report success without sending. Reminders are planned as if each message
//! were sent on time. Jobs whose messages nothing else reads are worked out in memory with
//! the same decisions, a message at a time ([`alone`]): a year of a quarter-hourly job is
//! close to a million sends, too many for store round trips.

mod alone;

use super::{App, Exit, Format, FormatArg};
use crate::channels::{Channels, email::EmailChannel};
use crate::clock::SteppedClock;
use crate::dispatch::Dispatcher;
use crate::model::MessageRecord;
use crate::schedule::Scheduler;
use crate::store::Store;
use crate::text::printable as p;
use crate::values::When;
use chrono::{DateTime, Duration as Span, Utc};
use std::path::Path;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Only this job's messages (all jobs are still simulated: caps are shared)
    #[arg(long)]
    job: Option<String>,
    /// Up to this time (RFC 3339, or a date: its midnight in defaults.timezone) [default: 7 days from now]
    #[arg(long, value_parser = When::parse)]
    until: Option<When>,
    /// Start from this time instead of now (RFC 3339, or a date: its midnight in defaults.timezone)
    #[arg(long, value_parser = When::parse)]
    now: Option<When>,
    /// Replay every job on the store copy, also the cron and event jobs otherwise worked out
    /// in memory (slower; the same result)
    #[arg(long)]
    replay_all: bool,
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
    let now = app.at(a.now).unwrap_or_else(Utc::now);
    let until = app.at(a.until).unwrap_or(now + Span::days(7));
    if until <= now {
        return Err(Exit::invalid("--until must be after --now"));
    }
    let r = replay(&app, now, until, a.replay_all, a.job.as_deref()).await?;
    let json = a.format.get() == Format::Json;
    // Every message this run made final, streamed in order (a year of a frequent job is
    // hundreds of thousands): sends first, then what would not be sent, and why. The store
    // copy's and the in-memory part's are merged by time.
    let job = a.job.clone();
    let ours =
        |m: &MessageRecord| r.new_in_replay(m) && job.as_ref().is_none_or(|j| *j == m.job_id);
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut written: std::io::Result<()> = Ok(());
    let tz = app.config.default_timezone;
    let fmt = |t: Option<DateTime<Utc>>| Minute(t.map(|t| t.with_timezone(&tz).naive_local()));
    let mut put = |text: std::fmt::Arguments| {
        if written.is_ok() {
            written = std::io::Write::write_fmt(&mut out, text);
        }
        written.is_ok()
    };
    if json {
        put(format_args!(
            "{{\"from\": {}, \"until\": {},\n\"send\": [",
            serde_json::json!(now),
            serde_json::json!(until)
        ));
    } else {
        put(format_args!(
            "forecast {} → {} ({})\n",
            fmt(Some(now)),
            fmt(Some(until)),
            tz.name()
        ));
    }
    let mut sends = 0usize;
    let mut send = |m: &Line, put: &mut dyn FnMut(std::fmt::Arguments) -> bool| {
        sends += 1;
        if json {
            return m.json_entry(sends, put);
        }
        put(format_args!(
            "{}  {}  step {}  contact {}{}  {}\n",
            fmt(m.sent_at),
            p(&m.job),
            m.step,
            p(&m.contact),
            Order(m.order.as_deref()),
            Via(m)
        ))
    };
    let alone = r.alone.sent.iter().map(|m| r.alone.line(m));
    merged(&r.scratch, true, alone, &ours, |l| send(l, &mut put)).await?;
    if json {
        put(format_args!("],\n\"not_sent\": ["));
    } else {
        put(format_args!("{sends} message(s) would be sent\n"));
    }
    let mut skipped = 0usize;
    let mut skip = |m: &Line, put: &mut dyn FnMut(std::fmt::Arguments) -> bool| {
        skipped += 1;
        if json {
            return m.json_entry(skipped, put);
        }
        if skipped == 1 {
            put(format_args!("not sent:\n"));
        }
        put(format_args!(
            "  {}  {}  contact {}: {}\n",
            p(&m.id),
            p(&m.job),
            p(&m.contact),
            p(m.reason.as_deref().unwrap_or(m.state.as_str()))
        ))
    };
    let alone = r.alone.not_sent.iter().map(|m| r.alone.line(m));
    merged(&r.scratch, false, alone, &ours, |l| skip(l, &mut put)).await?;
    if json {
        put(format_args!("]}}\n"));
    }
    r.scratch.close().await;
    written.and_then(|()| std::io::Write::flush(&mut out))?;
    Ok(())
}

/// The store copy's final messages (sent, or not sent) that `ours` keeps, merged in order
/// (by send time, or by due time) with the in-memory part's `alone`, which is in that order
/// already; `each` returns `false` to stop (the output is gone).
async fn merged(
    scratch: &Store,
    sent: bool,
    alone: impl Iterator<Item = Line>,
    ours: impl Fn(&MessageRecord) -> bool,
    mut each: impl FnMut(&Line) -> bool,
) -> anyhow::Result<()> {
    let key = |l: &Line| if sent { l.sent_at } else { Some(l.due) };
    let mut alone = alone.peekable();
    let mut going = true;
    scratch
        .each_final_message(sent, |m| {
            if !ours(&m) {
                return true;
            }
            let line = Line::from(m);
            while let Some(l) = alone.next_if(|l| key(l) <= key(&line)) {
                going = each(&l);
                if !going {
                    return false;
                }
            }
            going = each(&line);
            going
        })
        .await?;
    for l in alone {
        if !going {
            break;
        }
        going = each(&l);
    }
    Ok(())
}

/// A local time as the text output shows it, `2026-11-30 09:00` (empty for `None`). Written
/// digit by digit: chrono's `format` parses its pattern and names the zone's offset on every
/// call, and `write!` of five padded numbers cost as much again (7% of a year's forecast,
/// which prints close to a million times).
struct Minute(Option<chrono::NaiveDateTime>);

impl std::fmt::Display for Minute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::{Datelike, Timelike};
        let Some(t) = self.0 else { return Ok(()) };
        let Ok(year @ 0..=9999) = u32::try_from(t.year()) else {
            return write!(f, "{}", t.format("%Y-%m-%d %H:%M"));
        };
        let mut b = *b"0000-00-00 00:00";
        let mut put = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                if let Some(d) = b.get_mut(i) {
                    *d = b'0' + (n % 10) as u8;
                }
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        f.write_str(std::str::from_utf8(&b).map_err(|_| std::fmt::Error)?)
    }
}

/// A send line's `  order SO-1`, when its event had an order.
struct Order<'a>(Option<&'a str>);

impl std::fmt::Display for Order<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(o) => write!(f, "  order {}", p(o)),
            None => Ok(()),
        }
    }
}

/// How a send line goes: `callback task`, or its channel and address.
struct Via<'a>(&'a Line);

impl std::fmt::Display for Via<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        if m.callback {
            return f.write_str("callback task");
        }
        write!(
            f,
            "{} {}",
            p(m.channel.as_deref().unwrap_or("-")),
            p(m.address.as_deref().unwrap_or(""))
        )
    }
}

/// One message the forecast made final, as it is printed.
pub(super) struct Line {
    id: String,
    /// `None`: not sent.
    sent_at: Option<DateTime<Utc>>,
    due: DateTime<Utc>,
    /// When it was decided.
    updated: DateTime<Utc>,
    job: Arc<str>,
    step: i64,
    contact: Arc<str>,
    order: Option<String>,
    channel: Option<String>,
    address: Option<String>,
    callback: bool,
    reason: Option<String>,
    state: crate::model::MessageState,
}

impl Line {
    /// This line as entry `n` (from 1) of a JSON array being written with `put`.
    fn json_entry(&self, n: usize, put: &mut dyn FnMut(std::fmt::Arguments) -> bool) -> bool {
        let sep = if n == 1 { "\n" } else { ",\n" };
        let item = serde_json::json!({
            "at": self.sent_at, "job": &*self.job, "step": self.step, "contact": &*self.contact,
            "order": self.order, "channel": self.channel, "address": self.address,
            "callback_task": self.callback, "reason": self.reason,
        });
        put(format_args!("{sep}{item}"))
    }
}

impl From<MessageRecord> for Line {
    fn from(m: MessageRecord) -> Line {
        Line {
            id: m.id,
            sent_at: m.sent_at,
            due: m.due_at,
            updated: m.updated_at,
            job: Arc::from(m.job_id),
            step: m.step,
            contact: Arc::from(m.contact_id),
            order: m.order_id,
            channel: m.channel,
            address: m.address,
            callback: m.channel_plan.is_some(),
            reason: m.reason,
            state: m.state,
        }
    }
}

/// A scratch copy of the store with the daemon replayed on it from `now` to `until`: every
/// message it made final is what would happen. The in-memory part is beside it.
struct Replay {
    scratch: Store,
    /// Holds the copy; kept while `scratch` is read.
    _dir: tempfile::TempDir,
    /// Messages final before the replay, and when they became so (not part of the
    /// forecast unless the replay changes them).
    done_before: std::collections::HashMap<String, DateTime<Utc>>,
    /// What the jobs worked out in memory would do (not in `scratch`).
    alone: alone::Decided,
}

impl Replay {
    /// Whether final message `m` is the replay's doing: not final before it, or changed
    /// since (a cancelled greeting planned again for a corrected date, then sent).
    fn new_in_replay(&self, m: &MessageRecord) -> bool {
        self.done_before.get(&m.id) != Some(&m.updated_at)
    }
}

/// The replay from `now` to `until`; `replay_all`: no job is worked out in memory. `only`:
/// just this job's messages are wanted (the jobs worked out in memory need not be run for
/// the others: nothing reads their messages).
async fn replay(
    app: &App,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    replay_all: bool,
    only: Option<&str>,
) -> anyhow::Result<Replay> {
    let store = app.open_store().await?;
    let scratch_dir = tempfile::tempdir()?;
    let path = scratch_dir.path().join("forecast.db");
    store.snapshot_to(&path).await?;
    store.close().await;
    let scratch = Store::open_scratch(&path).await?;
    let done_before = scratch.final_messages().await?;

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
                    .map(|s| {
                        crate::channels::sms::SmsChannel::with_public_url(
                            s,
                            app.config
                                .api
                                .as_ref()
                                .and_then(|a| a.public_url.as_deref()),
                        )
                    })
                    .transpose()?,
            }),
            clock.clone(),
            app.config.dispatch.clone(),
            "forecast".into(),
        )
        .dry_run(),
    );
    let in_memory = if replay_all {
        Vec::new()
    } else {
        alone::jobs(&book)
    };
    let wanted: Vec<_> = in_memory
        .iter()
        .filter(|j| only.is_none_or(|o| o == j.id))
        .cloned()
        .collect();
    if !in_memory.is_empty() {
        let names: Vec<&str> = in_memory.iter().map(|j| j.id.as_str()).collect();
        tracing::info!(jobs = %names.join(", "), "jobs worked out in memory (nothing else reads their messages)");
    }
    let mut scheduler = Scheduler::new(scratch.clone(), book.clone());
    scheduler.horizon = until - now + Span::days(1);
    scheduler.elsewhere = in_memory.iter().map(|j| j.id.clone()).collect();
    let alone = alone::forecast(
        &scratch,
        &scheduler,
        &dispatcher,
        &in_memory,
        &wanted,
        now,
        until,
    )
    .await?;
    // Each step moves the clock strictly forward (to the next due message or occurrence), so
    // the loop ends at `until` with every send, however many; a step that would not move
    // forward stops the forecast with an error instead of spinning.
    let mut t = now;
    let mut first = true;
    loop {
        clock.set(t);
        if std::mem::take(&mut first) {
            scheduler.tick(t).await?;
        } else {
            scheduler.tick_recurring(t).await?;
        }
        dispatcher.run_once().await?;
        let next_due = scratch.next_due().await?;
        if let Some(due) = next_due
            && due <= t
        {
            anyhow::bail!(
                "forecast stopped at {t}: a message due at {due} is still waiting after a dispatch pass at {t}, so the forecast clock cannot move on (a bug: please report it with the jobs and this time)"
            );
        }
        let next_occ = scheduler.next_occurrence_after(t)?;
        match [next_due, next_occ].into_iter().flatten().min() {
            Some(next) if next <= until => t = next,
            _ => break,
        }
    }
    Ok(Replay {
        scratch,
        _dir: scratch_dir,
        done_before,
        alone,
    })
}

/// The forecast as the console draws it: what the next days would send, per job.
pub(super) async fn items(
    config_path: &Path,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> anyhow::Result<Vec<crate::console::ForecastItem>> {
    let app = App::load(config_path)?;
    if app.diags.has_errors() {
        anyhow::bail!(
            "{} error(s) in jobs or templates (see `aftercare validate`)",
            app.diags.errors()
        );
    }
    let r = replay(&app, now, until, false, None).await?;
    let mut out = Vec::new();
    for sent in [true, false] {
        r.scratch
            .each_final_message(sent, |m| {
                if r.new_in_replay(&m) {
                    out.push(crate::console::ForecastItem {
                        job: m.job_id,
                        at: m.sent_at.unwrap_or(m.updated_at),
                        sent,
                    });
                }
                true
            })
            .await?;
    }
    let alone = r.alone.sent.iter().chain(&r.alone.not_sent);
    out.extend(
        alone
            .map(|m| r.alone.line(m))
            .map(|l| crate::console::ForecastItem {
                job: l.job.to_string(),
                at: l.sent_at.unwrap_or(l.updated),
                sent: l.sent_at.is_some(),
            }),
    );
    r.scratch.close().await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Minute;
    use chrono::NaiveDate;

    /// Written digit by digit, a time reads as chrono's `%Y-%m-%d %H:%M` says it, also for
    /// years that are not four digits.
    #[test]
    fn a_minute_reads_as_chronos_format() {
        for (y, mo, d, h, mi) in [
            (2026, 11, 30, 9, 0),
            (2027, 1, 5, 23, 59),
            (999, 12, 31, 0, 7),
            (10_000, 2, 29, 17, 45),
            (-44, 3, 15, 12, 0),
        ] {
            let t = NaiveDate::from_ymd_opt(y, mo, d)
                .and_then(|d| d.and_hms_opt(h, mi, 0))
                .unwrap();
            let want = t.format("%Y-%m-%d %H:%M").to_string();
            assert_eq!(Minute(Some(t)).to_string(), want);
        }
        assert_eq!(Minute(None).to_string(), "");
    }
}
