//! `aftercare report`: what a job's messages came to (conversions), how customers answered
//! its survey (nps, csat), and the answers themselves, as tables or JSON. The same figures
//! as `GET /v1/reports/...`, computed by the store in SQL. `daily` counts finished messages
//! by day, the figures that outlive the retention purge and erasure.

use super::{App, Exit, Format, FormatArg};
use crate::jobs::Scale;
use crate::reports::{self, By, ReportError, Window};
use crate::values::When;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use clap::Subcommand;
use std::path::Path;

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Planned, sent, delivered, failed, cancelled, converted by the job's goal; variants and holdout
    Conversions(Args),
    /// NPS of a survey job: response rate, promoters, passives, detractors, NPS with its 95% interval
    Nps(Args),
    /// CSAT of a survey job: the share of 4-5 answers with its 95% interval
    Csat(Args),
    /// The answers to a survey job, with comments
    Answers(AnswerArgs),
    /// Finished messages per UTC day by job, step, variant, channel and outcome: the figures
    /// the retention purge and erasure keep (daily_counts) added to the messages still stored
    Daily(DailyArgs),
}

#[derive(clap::Args, Debug)]
pub(super) struct DailyArgs {
    /// Only this job [default: every job]
    #[arg(long)]
    job: Option<String>,
    /// First UTC day (YYYY-MM-DD) [default: 29 days before --until]
    #[arg(long)]
    since: Option<String>,
    /// Last UTC day, included [default: today]
    #[arg(long)]
    until: Option<String>,
    /// Count as of this instant instead of now (its UTC day is "today")
    #[arg(long)]
    now: Option<String>,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// The job
    #[arg(long)]
    job: String,
    /// Messages due from (RFC 3339, or a date: midnight in defaults.timezone) [default: 30 days before --until]
    #[arg(long)]
    since: Option<String>,
    /// Messages due before [default: now]
    #[arg(long)]
    until: Option<String>,
    /// Group by (conversions: step, variant, channel, locale, week; surveys: week, month, locale, tier)
    #[arg(long, value_enum)]
    by: Option<By>,
    #[command(flatten)]
    format: FormatArg,
    /// Report as of this instant instead of now (the default --until), like `run --once --now`
    #[arg(long)]
    now: Option<String>,
}

#[derive(clap::Args, Debug)]
pub(super) struct AnswerArgs {
    #[arg(long)]
    job: String,
    /// Answers given from [default: 30 days before --until]
    #[arg(long)]
    since: Option<String>,
    /// Answers given before [default: now]
    #[arg(long)]
    until: Option<String>,
    /// Only answers at or below this score (e.g. 6: the detractors)
    #[arg(long)]
    score_lte: Option<i64>,
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    /// Report as of this instant instead of now (the default --until)
    #[arg(long)]
    now: Option<String>,
    #[command(flatten)]
    format: FormatArg,
}

/// `--now` as given, else the wall clock.
fn now_of(given: Option<&str>, tz: Tz) -> anyhow::Result<DateTime<Utc>> {
    match given {
        Some(n) => parse_in(n, tz, "--now"),
        None => Ok(crate::clock::from_option(None).now()),
    }
}

/// RFC 3339, or a date meaning its midnight in `tz`.
pub(super) fn parse_in(s: &str, tz: Tz, what: &str) -> anyhow::Result<DateTime<Utc>> {
    When::parse(s)
        .map(|w| w.in_zone(tz))
        .map_err(|e| Exit::invalid(format!("{what}: {e}")))
}

fn refused(e: ReportError) -> anyhow::Error {
    match e {
        ReportError::Store(s) => s.into(),
        other => Exit::invalid(other.to_string()),
    }
}

/// A UTC day of `report daily`.
fn day(s: &str, what: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| Exit::invalid(format!("{what}: `{s}` is not a date (2026-11-23)")))
}

/// `report daily`: no job needed (a removed job's figures stay), days rather than instants
/// (the counts are kept by UTC day).
async fn daily(app: &App, a: DailyArgs) -> anyhow::Result<String> {
    let today = now_of(a.now.as_deref(), app.config.default_timezone)?.date_naive();
    let since = a.since.as_deref().map(|s| day(s, "--since")).transpose()?;
    let until = a.until.as_deref().map(|s| day(s, "--until")).transpose()?;
    let (since, until) = reports::daily_days(since, until, today).map_err(refused)?;
    let store = app.open_store().await?;
    let counts = reports::daily(&store, a.job.as_deref(), Some(since), Some(until), today).await;
    store.close().await;
    let counts = counts.map_err(refused)?;
    Ok(match a.format.get() {
        Format::Json => serde_json::to_string_pretty(&counts)? + "\n",
        Format::Text => reports::daily_table(&counts, since, until),
    })
}

pub(super) async fn run(config_path: &Path, c: Command) -> anyhow::Result<()> {
    // Reports read the store; a broken job file elsewhere does not stop them.
    let app = App::load(config_path)?;
    let tz = app.config.default_timezone;
    let locale = app.config.default_locale.clone();
    let c = match c {
        Command::Daily(a) => {
            print!("{}", daily(&app, a).await?);
            return Ok(());
        }
        other => other,
    };
    let (job_id, since, until, now) = match &c {
        Command::Conversions(a) | Command::Nps(a) | Command::Csat(a) => {
            (&a.job, &a.since, &a.until, a.now.as_deref())
        }
        Command::Answers(a) => (&a.job, &a.since, &a.until, a.now.as_deref()),
        Command::Daily(_) => unreachable!("answered above"),
    };
    let Some(job) = app.jobs.get(job_id).cloned() else {
        let hint = crate::diag::did_you_mean(job_id, app.jobs.iter().map(|j| j.id.as_str()))
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        return Err(Exit::invalid(format!("no job `{job_id}`{hint}")));
    };
    let now = now_of(now, tz)?;
    let since = since
        .as_deref()
        .map(|s| parse_in(s, tz, "--since"))
        .transpose()?;
    let until = until
        .as_deref()
        .map(|s| parse_in(s, tz, "--until"))
        .transpose()?;
    let w = Window::new(since, until, now, tz).map_err(refused)?;
    if w.since >= w.until {
        return Err(Exit::invalid(format!(
            "--since ({}) must be before --until ({})",
            w.since.to_rfc3339(),
            w.until.to_rfc3339()
        )));
    }
    let store = app.open_store().await?;
    let is_csat = matches!(c, Command::Csat(_));
    let out = match c {
        Command::Conversions(a) => {
            let r = reports::conversions(&store, &job, &w, a.by, &locale).await;
            let r = r.map_err(refused)?;
            match a.format.get() {
                Format::Text => r.table(),
                Format::Json => serde_json::to_string_pretty(&r)? + "\n",
            }
        }
        Command::Nps(a) | Command::Csat(a) => {
            let want = if is_csat { Scale::Csat } else { Scale::Nps };
            let r = reports::scores(&store, &job, want, &w, a.by, &locale).await;
            let r = r.map_err(refused)?;
            match a.format.get() {
                Format::Text => r.table(),
                Format::Json => serde_json::to_string_pretty(&r)? + "\n",
            }
        }
        Command::Daily(_) => unreachable!("answered above"),
        Command::Answers(a) => {
            let r = reports::answers(&store, &job, &w, a.score_lte, a.limit).await;
            let r = r.map_err(refused)?;
            match a.format.get() {
                Format::Text => r.table(tz),
                Format::Json => serde_json::to_string_pretty(&r)? + "\n",
            }
        }
    };
    store.close().await;
    print!("{out}");
    Ok(())
}
