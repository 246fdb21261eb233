//! Reports: what a job's messages came to, from the counts the store computes.
//!
//! - **conversions**: planned, sent, delivered, failed, cancelled (by kind of reason), and
//!   converted by the job's goal event (its `goal`, else its first `stop_when`) within
//!   `goal_window` after the send, attributed to the last message before it; the rate with a
//!   95% (Wilson) interval; for variants and the holdout, the difference with a
//!   two-proportion z-test and its p-value, and the lift over the holdout.
//! - **nps** / **csat**: sent, answered, response rate, promoters / passives / detractors and
//!   NPS with a 95% interval (csat: the share of 4–5), warned under 30 answers.
//! - **answers**: the answers with their comments, for the team's review.
//! - **daily**: finished messages per UTC day by job, step, variant, channel and outcome,
//!   from the counts the retention purge and erasure keep plus the messages still stored:
//!   the one report whose past does not shrink with the purge.
//!
//! The unit of a conversion is the thread (one order's request and its reminders): `reached`
//! counts threads whose first message was sent, `converted` threads with a conversion. By
//! step, each step's messages are the unit. Periods go by the messages' due time (a cohort);
//! answers by when they were first given.

use crate::jobs::{Job, Scale};
use crate::store::{
    AnswerRow, Converted, DailyCount, GoalSpec, GroupBy, Period, ScoreCount, StateRow, Store,
    StoreError,
};
use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::BTreeMap;

/// 95% two-sided.
const Z95: f64 = 1.959_963_984_540_054;
/// Below this many answers, a survey's figures are mostly noise.
pub(crate) const FEW_ANSWERS: i64 = 30;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum By {
    Step,
    Variant,
    Channel,
    Locale,
    Tier,
    Week,
    Month,
}

impl By {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            By::Step => "step",
            By::Variant => "variant",
            By::Channel => "channel",
            By::Locale => "locale",
            By::Tier => "tier",
            By::Week => "week",
            By::Month => "month",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    #[error("{0}")]
    Invalid(String),
    /// One field of the query is wrong (named, so the API can say which).
    #[error("{0}: {1}")]
    Field(&'static str, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A share with its 95% Wilson score interval (`None` when `n` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct Rate {
    pub k: i64,
    pub n: i64,
    pub rate: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl Rate {
    pub(crate) fn of(k: i64, n: i64) -> Rate {
        let (rate, low, high) = match wilson(k, n) {
            Some((p, lo, hi)) => (Some(p), Some(lo), Some(hi)),
            None => (None, None, None),
        };
        Rate {
            k,
            n,
            rate,
            low,
            high,
        }
    }

    fn show(&self) -> String {
        match (self.rate, self.low, self.high) {
            (Some(p), Some(lo), Some(hi)) => {
                format!("{:.1}% [{:.1}–{:.1}]", p * 100.0, lo * 100.0, hi * 100.0)
            }
            _ => "-".into(),
        }
    }
}

/// The Wilson score interval of k successes in n: (k/n, low, high).
pub(crate) fn wilson(k: i64, n: i64) -> Option<(f64, f64, f64)> {
    if n <= 0 {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some((p, (centre - half).max(0.0), (centre + half).min(1.0)))
}

/// A difference of two proportions: b's rate minus a's, with its 95% interval (unpooled),
/// and the pooled two-proportion z-test's statistic and two-sided p-value.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct Comparison {
    /// The baseline (the first variant, or the holdout).
    pub a: String,
    pub b: String,
    pub rate_a: Option<f64>,
    pub rate_b: Option<f64>,
    pub difference: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub z: Option<f64>,
    pub p_value: Option<f64>,
    /// (rate_b − rate_a) / rate_a: for the holdout, the lift the job brings.
    pub lift: Option<f64>,
}

pub(crate) fn two_proportions(a: &str, ka: i64, na: i64, b: &str, kb: i64, nb: i64) -> Comparison {
    let mut c = Comparison {
        a: a.into(),
        b: b.into(),
        rate_a: None,
        rate_b: None,
        difference: None,
        low: None,
        high: None,
        z: None,
        p_value: None,
        lift: None,
    };
    if na <= 0 || nb <= 0 {
        return c;
    }
    let (pa, pb) = (ka as f64 / na as f64, kb as f64 / nb as f64);
    let d = pb - pa;
    let se = (pa * (1.0 - pa) / na as f64 + pb * (1.0 - pb) / nb as f64).sqrt();
    c.rate_a = Some(pa);
    c.rate_b = Some(pb);
    c.difference = Some(d);
    c.low = Some(d - Z95 * se);
    c.high = Some(d + Z95 * se);
    let pooled = (ka + kb) as f64 / (na + nb) as f64;
    let se0 = (pooled * (1.0 - pooled) * (1.0 / na as f64 + 1.0 / nb as f64)).sqrt();
    if se0 > 0.0 {
        let z = d / se0;
        c.z = Some(z);
        // Two-sided: P(|Z| > |z|) = erfc(|z| / √2).
        c.p_value = Some(libm::erfc(z.abs() / std::f64::consts::SQRT_2));
    } else {
        c.z = Some(0.0);
        c.p_value = Some(1.0);
    }
    if pa > 0.0 {
        c.lift = Some(d / pa);
    }
    c
}

/// What the report covers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct Scope {
    pub job: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub by: Option<String>,
    pub timezone: String,
}

/// One group's figures (or the total).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct ConversionGroup {
    pub key: String,
    /// Customer messages due in the period (every step; held-out contacts not included).
    pub planned: i64,
    pub sent: i64,
    /// SMS the carrier reported delivered.
    pub delivered: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Not sent yet (scheduled, retrying, claimed).
    pub pending: i64,
    pub cancelled_by: BTreeMap<String, i64>,
    /// Threads whose first message was sent (by step: that step's sent messages).
    pub reached: i64,
    /// Of those, converted.
    pub converted: i64,
    #[schema(value_type = Object)]
    pub rate: Option<Rate>,
    /// Contacts in the holdout (nothing sent) and how many of them converted anyway.
    pub held_out: i64,
    pub held_out_converted: i64,
    #[schema(value_type = Object)]
    pub held_out_rate: Option<Rate>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ConversionReport {
    #[serde(flatten)]
    pub scope: Scope,
    /// The goal events (`type` or `type by field,...`) and their window.
    pub goal: Vec<String>,
    pub goal_window: String,
    pub total: ConversionGroup,
    pub groups: Vec<ConversionGroup>,
    /// Each variant against the first, and the job against its holdout.
    pub comparisons: Vec<Comparison>,
    pub notes: Vec<String>,
}

/// The period and buckets of a report: `since` and `until` (default: the 30 days up to
/// `now`), week and month buckets starting Monday / the 1st, 00:00, in `tz`.
pub(crate) struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub tz: Tz,
}

impl Window {
    pub(crate) fn new(
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Result<Window, ReportError> {
        // Within the years events may have (every bucket and default below stays inside
        // the calendar: `until - 30 days` of year -262143 panicked).
        use crate::ingest::{END_YEAR, FIRST_YEAR};
        for (field, t) in [("since", since), ("until", until)] {
            if let Some(t) = t
                && !(FIRST_YEAR..END_YEAR).contains(&t.year())
            {
                return Err(ReportError::Field(
                    field,
                    format!(
                        "{} is not in the years {FIRST_YEAR} to {}",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        END_YEAR - 1
                    ),
                ));
            }
        }
        // `since` at or after `until` is an empty period: every count is 0.
        let until = until.unwrap_or(now);
        let since = since.unwrap_or(until - Days::days(30));
        Ok(Window { since, until, tz })
    }

    /// A day's first instant in the report's zone (01:00 where DST skips midnight).
    fn local_midnight(&self, d: NaiveDate) -> DateTime<Utc> {
        crate::values::local_instant(self.tz, d.and_time(chrono::NaiveTime::MIN))
    }

    /// The bucket starts covering the period, and their labels.
    fn buckets(&self, by: By) -> Result<(Vec<DateTime<Utc>>, Vec<String>), ReportError> {
        let first = self.since.with_timezone(&self.tz).date_naive();
        let mut day = match by {
            By::Week => first - Days::days(i64::from(first.weekday().num_days_from_monday())),
            _ => first.with_day(1).unwrap_or(first),
        };
        let mut bounds = Vec::new();
        let mut labels = Vec::new();
        loop {
            let start = self.local_midnight(day);
            bounds.push(start);
            if start >= self.until {
                break;
            }
            labels.push(match by {
                By::Week => day.format("%Y-%m-%d").to_string(),
                _ => day.format("%Y-%m").to_string(),
            });
            day = match by {
                By::Week => day + Days::days(7),
                _ => day
                    .checked_add_months(chrono::Months::new(1))
                    .unwrap_or(day + Days::days(31)),
            };
            if bounds.len() > 1000 {
                return Err(ReportError::Invalid(
                    "more than 1,000 weeks or months: shorten the period".into(),
                ));
            }
        }
        Ok((bounds, labels))
    }
}

type Label = Box<dyn Fn(&str) -> String + Send + Sync>;

/// The store's grouping for `by`, and a function from a key to its label.
fn grouping(
    by: Option<By>,
    w: &Window,
    default_locale: &str,
) -> Result<(GroupBy, Label), ReportError> {
    let none = |s: &str, what: &'static str| {
        if s.is_empty() {
            what.to_string()
        } else {
            s.to_string()
        }
    };
    Ok(match by {
        None => (GroupBy::All, Box::new(|_: &str| "all".to_string())),
        Some(By::Step) => (GroupBy::Step, Box::new(|s: &str| format!("step {s}"))),
        Some(By::Variant) => (GroupBy::Variant, Box::new(move |s: &str| none(s, "(none)"))),
        Some(By::Channel) => (GroupBy::Channel, Box::new(move |s: &str| none(s, "(none)"))),
        Some(By::Tier) => (GroupBy::Tier, Box::new(move |s: &str| none(s, "(none)"))),
        Some(By::Locale) => {
            let d = default_locale.to_string();
            (
                GroupBy::Locale,
                Box::new(move |s: &str| {
                    if s.is_empty() {
                        d.clone()
                    } else {
                        s.to_string()
                    }
                }),
            )
        }
        Some(b @ (By::Week | By::Month)) => {
            let (bounds, labels) = w.buckets(b)?;
            (
                GroupBy::Buckets(bounds),
                Box::new(move |s: &str| {
                    s.parse::<usize>()
                        .ok()
                        .and_then(|i| labels.get(i).cloned())
                        .unwrap_or_else(|| s.to_string())
                }),
            )
        }
    })
}

fn scope(job: &Job, w: &Window, by: Option<By>) -> Scope {
    Scope {
        job: job.id.clone(),
        since: w.since,
        until: w.until,
        by: by.map(|b| b.as_str().to_string()),
        timezone: w.tz.name().to_string(),
    }
}

/// The conversions report of `job`.
pub(crate) async fn conversions(
    store: &Store,
    job: &Job,
    w: &Window,
    by: Option<By>,
    default_locale: &str,
) -> Result<ConversionReport, ReportError> {
    if matches!(by, Some(By::Tier)) {
        return Err(ReportError::Invalid(
            "conversions are grouped by step, variant, channel, locale or week".into(),
        ));
    }
    let (group, label) = grouping(by, w, default_locale)?;
    let p = Period {
        job: &job.id,
        since: w.since,
        until: w.until,
    };
    let goals: Vec<GoalSpec> = job
        .goal
        .events
        .iter()
        .map(|g| GoalSpec {
            event: g.event.clone(),
            match_fields: g.match_fields.clone(),
        })
        .collect();
    let stop_events: Vec<String> = job.stop_when.iter().map(|s| s.event.clone()).collect();
    let by_step = matches!(by, Some(By::Step));
    // One pass over the messages and one over the goal events; each row also carries its
    // variant, so the comparisons need no second pass.
    let states = store.report_states(&p, &group, &stop_events).await?;
    let converted = store
        .report_converted(&p, &group, &goals, job.goal.window)
        .await?;
    let mut groups: BTreeMap<String, ConversionGroup> = BTreeMap::new();
    fold(&mut groups, &states, &converted, by_step, &|s, _| label(s));
    let mut total = ConversionGroup {
        key: "total".into(),
        ..Default::default()
    };
    for g in groups.values() {
        add(&mut total, g);
    }
    if by_step {
        // The total counts threads, as every other view does.
        total.reached = states
            .iter()
            .filter(|s| s.step == 0 && s.state == "sent")
            .map(|s| s.count)
            .sum();
        total.converted = converted
            .iter()
            .filter(|c| c.state == "sent")
            .map(|c| c.threads)
            .sum::<i64>();
    }
    finish(&mut total);
    let mut groups: Vec<ConversionGroup> = groups.into_values().collect();
    for g in &mut groups {
        finish(g);
    }
    let mut comparisons = Vec::new();
    if !job.experiment.variants.is_empty() {
        // By variant, counting threads (the unit the arms are assigned by).
        let mut arms = BTreeMap::new();
        fold(&mut arms, &states, &converted, false, &|_, v| v.to_string());
        let listed: Vec<&ConversionGroup> = job
            .experiment
            .variants
            .iter()
            .filter_map(|v| arms.get(&v.name))
            .collect();
        if let Some((first, rest)) = listed.split_first() {
            for b in rest {
                comparisons.push(two_proportions(
                    &first.key,
                    first.converted,
                    first.reached,
                    &b.key,
                    b.converted,
                    b.reached,
                ));
            }
        }
    }
    if job.experiment.holdout_bp > 0 {
        comparisons.push(two_proportions(
            "holdout",
            total.held_out_converted,
            total.held_out,
            "messaged",
            total.converted,
            total.reached,
        ));
    }
    let mut notes = Vec::new();
    if goals.is_empty() {
        notes.push(format!(
            "job `{}` has no goal (no `goal:` and no `stop_when`): nothing counts as converted",
            job.id
        ));
    }
    Ok(ConversionReport {
        scope: scope(job, w, by),
        goal: goals
            .iter()
            .map(|g| {
                if g.match_fields.is_empty() {
                    g.event.clone()
                } else {
                    format!("{} by {}", g.event, g.match_fields.join(","))
                }
            })
            .collect(),
        goal_window: crate::duration::format(job.goal.window),
        total,
        groups,
        comparisons,
        notes,
    })
}

/// Fold the store's rows into groups; `label(key, variant)` names a row's group.
fn fold(
    groups: &mut BTreeMap<String, ConversionGroup>,
    states: &[StateRow],
    converted: &[Converted],
    by_step: bool,
    label: &dyn Fn(&str, &str) -> String,
) {
    fn at(groups: &mut BTreeMap<String, ConversionGroup>, l: String) -> &mut ConversionGroup {
        groups.entry(l.clone()).or_insert_with(|| ConversionGroup {
            key: l,
            ..Default::default()
        })
    }
    for s in states {
        let g = at(groups, label(&s.key, &s.variant));
        if s.state == "held_out" {
            g.held_out += s.count;
            continue;
        }
        g.planned += s.count;
        g.delivered += s.delivered;
        match s.state.as_str() {
            "sent" => {
                g.sent += s.count;
                if by_step || s.step == 0 {
                    g.reached += s.count;
                }
            }
            "failed" => g.failed += s.count,
            "cancelled" => {
                g.cancelled += s.count;
                *g.cancelled_by.entry(s.reason.clone()).or_default() += s.count;
            }
            _ => g.pending += s.count,
        }
    }
    for c in converted {
        let g = at(groups, label(&c.key, &c.variant));
        let n = if by_step { c.messages } else { c.threads };
        if c.state == "held_out" {
            g.held_out_converted += n;
        } else {
            g.converted += n;
        }
    }
}

fn add(t: &mut ConversionGroup, g: &ConversionGroup) {
    t.planned += g.planned;
    t.sent += g.sent;
    t.delivered += g.delivered;
    t.failed += g.failed;
    t.cancelled += g.cancelled;
    t.pending += g.pending;
    for (k, v) in &g.cancelled_by {
        *t.cancelled_by.entry(k.clone()).or_default() += v;
    }
    t.reached += g.reached;
    t.converted += g.converted;
    t.held_out += g.held_out;
    t.held_out_converted += g.held_out_converted;
}

fn finish(g: &mut ConversionGroup) {
    g.rate = Some(Rate::of(g.converted, g.reached));
    g.held_out_rate = (g.held_out > 0).then(|| Rate::of(g.held_out_converted, g.held_out));
}

/// One group of a survey report.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct ScoreGroup {
    pub key: String,
    pub sent: i64,
    pub answered: i64,
    #[schema(value_type = Object)]
    pub response_rate: Option<Rate>,
    /// NPS: 9–10, 7–8, 0–6.
    pub promoters: i64,
    pub passives: i64,
    pub detractors: i64,
    /// NPS: % promoters − % detractors, with its 95% interval.
    pub nps: Option<f64>,
    pub nps_low: Option<f64>,
    pub nps_high: Option<f64>,
    /// CSAT: the share of 4–5 among the answers.
    #[schema(value_type = Object)]
    pub csat: Option<Rate>,
    /// Answers per score.
    pub scores: BTreeMap<i64, i64>,
    pub warning: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ScoreReport {
    #[serde(flatten)]
    pub scope: Scope,
    /// `nps` or `csat`.
    pub scale: String,
    pub total: ScoreGroup,
    pub groups: Vec<ScoreGroup>,
}

/// The NPS (`scale` nps) or CSAT report of a survey job.
pub(crate) async fn scores(
    store: &Store,
    job: &Job,
    scale: Scale,
    w: &Window,
    by: Option<By>,
    default_locale: &str,
) -> Result<ScoreReport, ReportError> {
    let Some(survey) = job.survey else {
        return Err(ReportError::Invalid(format!(
            "job `{}` is not a survey (it has no `survey:` key)",
            job.id
        )));
    };
    if survey.scale != scale {
        return Err(ReportError::Invalid(format!(
            "job `{}` asks on the {} scale: use `report {}`",
            job.id,
            survey.scale.as_str(),
            survey.scale.as_str()
        )));
    }
    if matches!(by, Some(By::Step | By::Variant | By::Channel)) {
        return Err(ReportError::Invalid(
            "survey reports are grouped by week, month, locale or tier".into(),
        ));
    }
    let (group, label) = grouping(by, w, default_locale)?;
    let p = Period {
        job: &job.id,
        since: w.since,
        until: w.until,
    };
    let rows = store.report_scores(&p, &group).await?;
    let mut groups: BTreeMap<String, ScoreGroup> = BTreeMap::new();
    let mut total = ScoreGroup {
        key: "total".into(),
        ..Default::default()
    };
    for r in &rows {
        let l = label(&r.key);
        let g = groups.entry(l.clone()).or_insert_with(|| ScoreGroup {
            key: l,
            ..Default::default()
        });
        count_score(g, r);
        count_score(&mut total, r);
    }
    let mut groups: Vec<ScoreGroup> = groups.into_values().collect();
    for g in groups.iter_mut().chain(std::iter::once(&mut total)) {
        score_figures(g, scale);
    }
    Ok(ScoreReport {
        scope: scope(job, w, by),
        scale: scale.as_str().into(),
        total,
        groups,
    })
}

fn count_score(g: &mut ScoreGroup, r: &ScoreCount) {
    g.sent += r.count;
    if let Some(s) = r.score {
        g.answered += r.count;
        *g.scores.entry(s).or_default() += r.count;
    }
}

fn score_figures(g: &mut ScoreGroup, scale: Scale) {
    g.response_rate = Some(Rate::of(g.answered, g.sent));
    let n = g.answered;
    match scale {
        Scale::Nps => {
            for (s, c) in &g.scores {
                match s {
                    9.. => g.promoters += c,
                    7 | 8 => g.passives += c,
                    _ => g.detractors += c,
                }
            }
            if n > 0 {
                let (p, d) = (
                    g.promoters as f64 / n as f64,
                    g.detractors as f64 / n as f64,
                );
                let nps = 100.0 * (p - d);
                let var = (p + d - (p - d).powi(2)) / n as f64;
                let half = 100.0 * Z95 * var.max(0.0).sqrt();
                g.nps = Some(nps);
                g.nps_low = Some((nps - half).max(-100.0));
                g.nps_high = Some((nps + half).min(100.0));
            }
        }
        Scale::Csat => {
            let satisfied: i64 = g
                .scores
                .iter()
                .filter(|(s, _)| **s >= 4)
                .map(|(_, c)| c)
                .sum();
            g.csat = Some(Rate::of(satisfied, n));
        }
    }
    if n < FEW_ANSWERS {
        g.warning = Some(format!(
            "only {n} answer(s): under {FEW_ANSWERS}, the figures are mostly noise"
        ));
    }
}

/// The answers report: who answered what, with comments.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct AnswersReport {
    #[serde(flatten)]
    pub scope: Scope,
    pub score_lte: Option<i64>,
    pub answers: Vec<AnswerRow>,
}

pub(crate) async fn answers(
    store: &Store,
    job: &Job,
    w: &Window,
    score_lte: Option<i64>,
    limit: i64,
) -> Result<AnswersReport, ReportError> {
    if job.survey.is_none() {
        return Err(ReportError::Invalid(format!(
            "job `{}` is not a survey (it has no `survey:` key)",
            job.id
        )));
    }
    let p = Period {
        job: &job.id,
        since: w.since,
        until: w.until,
    };
    Ok(AnswersReport {
        scope: scope(job, w, None),
        score_lte,
        answers: store.report_answers(&p, score_lte, limit).await?,
    })
}

// ---------------------------------------------------------------------------------------
// Tables for the terminal.

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:+.1} pp", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn local(t: DateTime<Utc>, zone: &str) -> String {
    match zone.parse::<Tz>() {
        Ok(tz) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(),
        Err(_) => t.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

fn head(s: &Scope, what: &str) -> String {
    format!(
        "{what} of {}, due {} to {} ({}){}\n",
        s.job,
        local(s.since, &s.timezone),
        local(s.until, &s.timezone),
        s.timezone,
        s.by.as_deref()
            .map(|b| format!(", by {b}"))
            .unwrap_or_default()
    )
}

impl ConversionReport {
    pub(crate) fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = head(&self.scope, "conversions");
        let _ = writeln!(
            out,
            "goal: {} within {} of the send, attributed to the last message before it",
            if self.goal.is_empty() {
                "(none)".to_string()
            } else {
                self.goal.join(" or ")
            },
            self.goal_window
        );
        let _ = writeln!(
            out,
            "{:<14} {:>8} {:>8} {:>9} {:>7} {:>9} {:>7} {:>8} {:>9}  {:<24} {:>8} {:>9}",
            "",
            "planned",
            "sent",
            "delivered",
            "failed",
            "cancelled",
            "pending",
            "reached",
            "converted",
            "rate [95% CI]",
            "held out",
            "converted"
        );
        let mut row = |g: &ConversionGroup| {
            let _ = writeln!(
                out,
                "{:<14} {:>8} {:>8} {:>9} {:>7} {:>9} {:>7} {:>8} {:>9}  {:<24} {:>8} {:>9}",
                g.key,
                g.planned,
                g.sent,
                g.delivered,
                g.failed,
                g.cancelled,
                g.pending,
                g.reached,
                g.converted,
                g.rate.map(|r| r.show()).unwrap_or_default(),
                if g.held_out > 0 {
                    g.held_out.to_string()
                } else {
                    "-".into()
                },
                if g.held_out > 0 {
                    g.held_out_converted.to_string()
                } else {
                    "-".into()
                },
            );
        };
        if self.scope.by.is_some() {
            for g in &self.groups {
                row(g);
            }
        }
        row(&self.total);
        if !self.total.cancelled_by.is_empty() {
            let _ = writeln!(out, "cancelled by reason:");
            for (r, n) in &self.total.cancelled_by {
                let _ = writeln!(out, "  {n:>8}  {r}");
            }
        }
        if let Some(h) = &self.total.held_out_rate {
            let _ = writeln!(out, "holdout: {} of {} converted: {}", h.k, h.n, h.show());
        }
        for c in &self.comparisons {
            let _ = writeln!(
                out,
                "{} vs {}: {} [{} to {}], z = {}, p = {}{}",
                c.b,
                c.a,
                pct(c.difference),
                pct(c.low),
                pct(c.high),
                c.z.map(|z| format!("{z:.2}")).unwrap_or_else(|| "-".into()),
                c.p_value
                    .map(|p| format!("{p:.4}"))
                    .unwrap_or_else(|| "-".into()),
                c.lift
                    .map(|l| format!(", lift {:+.0}%", l * 100.0))
                    .unwrap_or_default()
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }
}

impl ScoreReport {
    pub(crate) fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = head(&self.scope, &self.scale.to_uppercase());
        let nps = self.scale == "nps";
        if nps {
            let _ = writeln!(
                out,
                "{:<14} {:>6} {:>8} {:<24} {:>9} {:>8} {:>10}  {:<20}",
                "",
                "sent",
                "answered",
                "response [95% CI]",
                "promoters",
                "passives",
                "detractors",
                "NPS [95% CI]"
            );
        } else {
            let _ = writeln!(
                out,
                "{:<14} {:>6} {:>8} {:<24} {:<24}",
                "", "sent", "answered", "response [95% CI]", "CSAT (4-5) [95% CI]"
            );
        }
        let mut warnings = Vec::new();
        let mut row = |g: &ScoreGroup| {
            let response = g.response_rate.map(|r| r.show()).unwrap_or_default();
            if nps {
                let score = match (g.nps, g.nps_low, g.nps_high) {
                    (Some(v), Some(lo), Some(hi)) => format!("{v:+.0} [{lo:+.0} to {hi:+.0}]"),
                    _ => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "{:<14} {:>6} {:>8} {:<24} {:>9} {:>8} {:>10}  {:<20}",
                    g.key,
                    g.sent,
                    g.answered,
                    response,
                    g.promoters,
                    g.passives,
                    g.detractors,
                    score
                );
            } else {
                let _ = writeln!(
                    out,
                    "{:<14} {:>6} {:>8} {:<24} {:<24}",
                    g.key,
                    g.sent,
                    g.answered,
                    response,
                    g.csat.map(|r| r.show()).unwrap_or_default()
                );
            }
            if let Some(w) = &g.warning {
                warnings.push(format!("{}: {w}", g.key));
            }
        };
        if self.scope.by.is_some() {
            for g in &self.groups {
                row(g);
            }
        }
        row(&self.total);
        for w in warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

impl AnswersReport {
    pub(crate) fn table(&self, tz: Tz) -> String {
        use std::fmt::Write;
        let mut out = format!(
            "answers to {}, given {} to {} ({}){}\n",
            self.scope.job,
            local(self.scope.since, &self.scope.timezone),
            local(self.scope.until, &self.scope.timezone),
            self.scope.timezone,
            self.score_lte
                .map(|s| format!(", score at most {s}"))
                .unwrap_or_default()
        );
        for a in &self.answers {
            let who = a
                .name
                .clone()
                .or_else(|| a.email.clone())
                .or_else(|| a.phone.clone())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{}  {:>2}  {} {}  via {}{}  {}",
                a.answered_at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
                a.score,
                a.contact_id,
                who,
                a.channel,
                if a.changes > 0 {
                    format!(" (changed {}x)", a.changes)
                } else {
                    String::new()
                },
                a.comment
                    .as_deref()
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(out, "{} answer(s)", self.answers.len());
        out
    }
}

/// Days `report daily` covers by default: `until` and the 29 before it.
const DAILY_DAYS: u64 = 30;

/// The days of `report daily`, both included: `until` defaults to `today` (UTC), `since`
/// to [`DAILY_DAYS`] days ending at `until`.
pub(crate) fn daily_days(
    since: Option<NaiveDate>,
    until: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), ReportError> {
    let until = until.unwrap_or(today);
    let since = match since {
        Some(s) => s,
        None => until
            .checked_sub_days(chrono::Days::new(DAILY_DAYS - 1))
            .unwrap_or(NaiveDate::MIN),
    };
    if since > until {
        return Err(ReportError::Invalid(format!(
            "since ({since}) must not be after until ({until})"
        )));
    }
    Ok((since, until))
}

/// `report daily` as text: a row per day, job, step, variant, channel and outcome.
pub(crate) fn daily_table(counts: &[DailyCount], since: NaiveDate, until: NaiveDate) -> String {
    let row = |c: [&str; 7]| {
        format!(
            "{:<10}  {:<24}  {:>4}  {:<10}  {:<8}  {:<11}  {:>9}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6]
        )
    };
    let mut t = row([
        "day", "job", "step", "variant", "channel", "outcome", "messages",
    ]);
    for c in counts {
        let (day, step, n) = (c.day.to_string(), c.step.to_string(), c.n.to_string());
        let channel = if c.channel.is_empty() {
            "-"
        } else {
            &c.channel
        };
        let variant = c.variant.as_deref().unwrap_or("-");
        t += &row([&day, &c.job_id, &step, variant, channel, &c.outcome, &n]);
    }
    if counts.is_empty() {
        t += &format!("no finished messages from {since} to {until}\n");
    }
    t
}

/// Finished messages per UTC day from `since` to `until` (see [`daily_days`]), of `job` or
/// of every job (a job no longer defined keeps its figures).
pub(crate) async fn daily(
    store: &Store,
    job: Option<&str>,
    since: Option<NaiveDate>,
    until: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<Vec<DailyCount>, ReportError> {
    let (since, until) = daily_days(since, until, today)?;
    Ok(store.daily_counts(job, since, until).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-3
    }

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), table I: 81/263 → 0.2553 to 0.3662.
        let (p, lo, hi) = wilson(81, 263).unwrap();
        assert!(
            close(p, 0.3080) && close(lo, 0.2553) && close(hi, 0.3662),
            "{lo} {hi}"
        );
        // 0/10 → 0 to 0.2775.
        let (_, lo, hi) = wilson(0, 10).unwrap();
        assert!(close(lo, 0.0) && close(hi, 0.2775), "{hi}");
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn two_proportion_test_matches_a_hand_computation() {
        // 120/1000 vs 150/1000: pooled p = 0.135, se0 = sqrt(.135*.865*.002) = 0.015282,
        // z = 0.03 / 0.015282 = 1.963, two-sided p = 0.0496.
        let c = two_proportions("a", 120, 1000, "b", 150, 1000);
        assert!(close(c.difference.unwrap(), 0.03));
        assert!(close(c.z.unwrap(), 1.9631), "{:?}", c.z);
        assert!(close(c.p_value.unwrap(), 0.0496), "{:?}", c.p_value);
        assert!(close(c.lift.unwrap(), 0.25));
        let none = two_proportions("a", 0, 0, "b", 1, 2);
        assert_eq!(none.p_value, None);
    }

    #[test]
    fn nps_with_its_interval() {
        let mut g = ScoreGroup::default();
        // 50 promoters, 30 passives, 20 detractors: NPS 30; var = (.5+.2-.09)/100 = .0061.
        g.scores.insert(10, 50);
        g.scores.insert(7, 30);
        g.scores.insert(3, 20);
        g.answered = 100;
        g.sent = 200;
        score_figures(&mut g, Scale::Nps);
        assert_eq!((g.promoters, g.passives, g.detractors), (50, 30, 20));
        assert!(close(g.nps.unwrap(), 30.0));
        let half = 100.0 * Z95 * 0.0061f64.sqrt();
        assert!(close(g.nps_low.unwrap(), 30.0 - half) && close(g.nps_high.unwrap(), 30.0 + half));
        assert_eq!(g.warning, None);
        assert!(close(g.response_rate.unwrap().rate.unwrap(), 0.5));
        let mut few = ScoreGroup::default();
        few.scores.insert(5, 3);
        few.answered = 3;
        score_figures(&mut few, Scale::Csat);
        assert!(few.warning.unwrap().contains("only 3 answer(s)"));
        assert_eq!(few.csat.unwrap().k, 3);
    }

    #[test]
    fn weeks_start_on_monday_in_the_zone() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let w = Window::new(
            Some(t("2026-11-04T00:00:00+08:00")),
            Some(t("2026-11-20T00:00:00+08:00")),
            Utc::now(),
            tz,
        )
        .unwrap();
        let (bounds, labels) = w.buckets(By::Week).unwrap();
        assert_eq!(labels, ["2026-11-02", "2026-11-09", "2026-11-16"]);
        assert_eq!(bounds[0], t("2026-11-02T00:00:00+08:00"));
        assert_eq!(bounds.len(), 4);
        let (_, labels) = w.buckets(By::Month).unwrap();
        assert_eq!(labels, ["2026-11"]);
    }

    #[test]
    fn daily_days_default_to_thirty_ending_today() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a day");
        let today = d("2026-12-02");
        assert_eq!(
            daily_days(None, None, today).ok(),
            Some((d("2026-11-03"), today))
        );
        assert_eq!(
            daily_days(None, Some(d("2026-01-31")), today).ok(),
            Some((d("2026-01-02"), d("2026-01-31")))
        );
        assert_eq!(
            daily_days(Some(d("2026-12-02")), None, today).ok(),
            Some((today, today))
        );
        // The earliest day there is: no day before it to start from.
        assert_eq!(
            daily_days(None, Some(NaiveDate::MIN), today).ok(),
            Some((NaiveDate::MIN, NaiveDate::MIN))
        );
        assert!(matches!(
            daily_days(Some(d("2026-12-03")), None, today),
            Err(ReportError::Invalid(m)) if m.contains("2026-12-03") && m.contains("2026-12-02")
        ));
    }
}
