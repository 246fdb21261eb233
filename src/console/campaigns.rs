//! Marketing's page: every job with its trigger in words, its last 30 days as a funnel, NPS
//! over time for surveys, what the next 7 days would send (the forecast, replayed on a copy
//! of the store), the `validate` result with file:line:col, and each template previewed with
//! a sample event in each of its locales.

use super::chart::{self, Bar};
use super::i18n::Lang;
use super::layout::{frame, problem, text};
use super::{Console, ForecastItem, Viewer};
use crate::jobs::{Job, Trigger};
use crate::model::{Channel, Contact, Event};
use crate::playbook::{MessageFacts, Playbook};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Duration as Span, NaiveDate, Utc};
use maud::{Markup, html};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How long a forecast is reused: it copies the whole store and replays a week.
const FORECAST_FRESH: Duration = Duration::from_secs(10 * 60);

pub(super) async fn page(State(c): State<Console>, v: Viewer) -> Response {
    if let Err(r) = v.require(v.role.sees_campaigns()) {
        return r;
    }
    let l = v.lang;
    let book = c.book();
    let now = c.inner.clock.now();
    let since = now - Span::days(30);
    let diags = match &c.inner.validate {
        Some(f) => {
            let f = f.clone();
            tokio::task::spawn_blocking(move || f()).await.ok()
        }
        None => None,
    };
    let forecast = forecast(&c, now).await;
    let mut jobs: Vec<&std::sync::Arc<Job>> = book.jobs.iter().collect();
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    let mut sections = Vec::new();
    for job in jobs {
        let stop = job.stop_when.as_ref().map(|s| s.event.as_str());
        let funnel = match c.inner.store.funnel(&job.id, since, now, stop).await {
            Ok(f) => f,
            Err(e) => return v.store_error(e),
        };
        let scores = match c.inner.store.survey_scores(&job.id, now - Span::weeks(12)).await {
            Ok(s) => s,
            Err(e) => return v.store_error(e),
        };
        sections.push(job_section(&v, &book, job, &funnel, scores, &forecast, now));
    }
    let body = html! {
        h1 { (l.t("nav.campaigns")) }
        section.validate id="validate" {
            h2 { (l.t("campaigns.validate")) }
            @match &diags {
                Some(d) if !d.items.is_empty() => {
                    ul.diagnostics { @for item in &d.items { li.(severity(item)) { pre { (crate::text::printable_lines(&item.to_string())) } } } }
                }
                Some(_) => { p.ok { (l.t("campaigns.valid")) } }
                None => {}
            }
        }
        section.forecast id="forecast" {
            h2 { (l.t("campaigns.forecast")) }
            (forecast_table(&v, &forecast, now))
        }
        @for s in sections { (s) }
    };
    frame(&v, l.t("nav.campaigns"), body).into_response()
}

fn severity(d: &crate::diag::Diagnostic) -> &'static str {
    match d.severity {
        crate::diag::Severity::Error => "error",
        crate::diag::Severity::Warning => "warning",
    }
}

/// The forecast of the next 7 days, computed at most every [`FORECAST_FRESH`].
async fn forecast(c: &Console, now: DateTime<Utc>) -> Option<Result<Vec<ForecastItem>, String>> {
    let f = c.inner.forecast.clone()?;
    let mut cache = c.inner.forecast_cache.lock().await;
    if let Some((at, r)) = cache.as_ref()
        && at.elapsed() < FORECAST_FRESH
    {
        return Some(r.clone());
    }
    let r = f(now, now + Span::days(7)).await;
    if let Err(e) = &r {
        tracing::warn!("console forecast failed: {e}");
    }
    *cache = Some((Instant::now(), r.clone()));
    Some(r)
}

fn forecast_table(v: &Viewer, f: &Option<Result<Vec<ForecastItem>, String>>, now: DateTime<Utc>) -> Markup {
    let l = v.lang;
    let days: Vec<NaiveDate> = (0..7)
        .map(|d| (now + Span::days(d)).with_timezone(&v.tz).date_naive())
        .collect();
    match f {
        None => html! {},
        Some(Err(e)) => problem(&format!("{} {e}", l.t("campaigns.forecast_error"))),
        Some(Ok(items)) => {
            let mut by_job: BTreeMap<&str, BTreeMap<NaiveDate, i64>> = BTreeMap::new();
            for i in items.iter().filter(|i| i.sent) {
                *by_job
                    .entry(i.job.as_str())
                    .or_default()
                    .entry(i.at.with_timezone(&v.tz).date_naive())
                    .or_default() += 1;
            }
            if by_job.is_empty() {
                return html! { p.empty { (l.t("campaigns.forecast_none")) } };
            }
            html! {
                table.forecast {
                    thead { tr { th { (l.t("job")) } @for d in &days { th { (d.format("%m-%d")) } } } }
                    tbody {
                        @for (job, counts) in &by_job {
                            tr { th { (job) } @for d in &days { td { (counts.get(d).copied().unwrap_or(0)) } } }
                        }
                    }
                }
            }
        }
    }
}

/// The trigger in words: "3d after order.delivered · reminder after 4d · stops on review.submitted".
pub(super) fn trigger_words(l: Lang, job: &Job, book: &Playbook, now: DateTime<Utc>) -> String {
    let mut parts = Vec::new();
    match &job.trigger {
        Trigger::Event { event, delay } => parts.push(match l {
            Lang::En => format!("{} {} {event}", crate::duration::format(*delay), l.t("trigger.after")),
            Lang::Zh => format!("{event} {} {}", l.t("trigger.after"), crate::duration::format(*delay)),
        }),
        Trigger::Anniversary { field, at, .. } => parts.push(format!(
            "{} contact.{} {} {}",
            l.t("trigger.anniversary"),
            field.key(),
            l.t("trigger.at"),
            at.format("%H:%M")
        )),
        Trigger::Cron { expr, cron, timezone, .. } => {
            let tz = timezone.unwrap_or(book.default_timezone);
            let next = crate::cron_tz::next_after(cron, tz, now).ok().flatten();
            parts.push(format!(
                "{} `{expr}` ({}){}",
                l.t("trigger.cron"),
                tz.name(),
                next.map(|n| format!(", {} {}", l.t("trigger.next"), n.with_timezone(&tz).format("%Y-%m-%d %H:%M")))
                    .unwrap_or_default()
            ));
        }
    }
    for s in job.steps.iter().skip(1) {
        parts.push(format!("{} {}", l.t("trigger.reminder"), crate::duration::format(s.after)));
    }
    if let Some(stop) = &job.stop_when {
        parts.push(format!("{} {}", l.t("trigger.stop"), stop.event));
    }
    parts.join(" · ")
}

/// What a cancellation reason is about, without the addresses and times it names.
pub(super) fn reason_kind(reason: &str) -> String {
    let r = reason.trim();
    if let Some(rest) = r.strip_prefix("stopped: ") {
        return format!("stopped: {}", rest.split(' ').next().unwrap_or(""));
    }
    let kind = if r.starts_with("expired") {
        "expired"
    } else if r.contains("is suppressed") {
        "suppressed"
    } else if r.contains("consent") {
        "no consent"
    } else if r.starts_with("dropped:") || r.contains("frequency cap") {
        "frequency cap"
    } else if r.contains("no longer defined") || r.contains("is disabled") || r.contains("was removed") {
        "job removed or disabled"
    } else if r.starts_with("cancelled by") {
        "cancelled by an agent"
    } else if r.contains("no email address") || r.contains("no phone number") {
        "no address"
    } else if r.is_empty() {
        "—"
    } else {
        return r.split([':', '(']).next().unwrap_or(r).chars().take(40).collect();
    };
    kind.to_string()
}

#[allow(clippy::too_many_arguments)]
fn job_section(
    v: &Viewer,
    book: &Playbook,
    job: &Job,
    f: &crate::store::FunnelRow,
    scores: (Vec<(DateTime<Utc>, i64)>, Option<&'static str>),
    _forecast: &Option<Result<Vec<ForecastItem>, String>>,
    now: DateTime<Utc>,
) -> Markup {
    let l = v.lang;
    let mut rows = vec![
        Bar { label: l.t("funnel.planned").into(), value: f.planned, class: "planned" },
        Bar { label: l.t("funnel.sent").into(), value: f.sent, class: "sent" },
    ];
    if f.delivered + f.undelivered > 0 {
        rows.push(Bar { label: l.t("funnel.delivered").into(), value: f.delivered, class: "delivered" });
    }
    if let Some(n) = f.converted {
        rows.push(Bar { label: l.t("funnel.converted").into(), value: n, class: "converted" });
    }
    rows.push(Bar { label: l.t("funnel.failed").into(), value: f.failed, class: "failed" });
    rows.push(Bar { label: l.t("funnel.pending").into(), value: f.pending, class: "pending" });
    let mut cancelled: BTreeMap<String, i64> = BTreeMap::new();
    for (reason, n) in &f.cancelled {
        *cancelled.entry(reason_kind(reason)).or_default() += n;
    }
    let mut cancelled: Vec<(String, i64)> = cancelled.into_iter().collect();
    cancelled.sort_by_key(|(k, n)| (std::cmp::Reverse(*n), k.clone()));
    for (kind, n) in cancelled {
        rows.push(Bar { label: format!("{}: {kind}", l.t("funnel.cancelled")), value: n, class: "cancelled" });
    }
    let (scores, source) = scores;
    let survey = matches!(job.trigger, Trigger::Cron { .. }) || !scores.is_empty();
    html! {
        section.job id={ "job-" (job.id) } {
            h2 { (job.id) @if !job.enabled { " (" (l.t("campaigns.disabled")) ")" } }
            p.desc { (job.description) }
            p.trigger { strong { (l.t("campaigns.trigger")) ": " } (trigger_words(l, job, book, now)) }
            p.meta { (job.class.as_str()) " · " (job.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")) @if job.webhook { " + webhook" } }
            h3 { (l.t("campaigns.funnel")) }
            (chart::bars(&format!("{} {}", job.id, l.t("campaigns.funnel")), &rows))
            @if survey {
                h3 { (l.t("campaigns.nps")) }
                @if scores.is_empty() {
                    p.empty { (l.t("campaigns.nps_none")) }
                } @else {
                    (chart::line(&format!("{} NPS", job.id), &nps_by_week(&scores, v.tz), -100.0, 100.0))
                    @if source == Some("events") { p.hint { (l.t("campaigns.nps_events")) } }
                }
            }
            h3 { (l.t("campaigns.preview")) }
            (previews(v, book, job, now))
        }
    }
}

/// NPS per week (Monday in `tz`): promoters (9-10) minus detractors (0-6), in percent.
pub(super) fn nps_by_week(scores: &[(DateTime<Utc>, i64)], tz: chrono_tz::Tz) -> Vec<(String, f64)> {
    let mut weeks: BTreeMap<NaiveDate, (i64, i64, i64)> = BTreeMap::new();
    for (at, s) in scores {
        let d = at.with_timezone(&tz).date_naive();
        let monday = d - Span::days(i64::from(d.weekday().num_days_from_monday()));
        let w = weeks.entry(monday).or_default();
        w.0 += 1;
        if *s >= 9 {
            w.1 += 1;
        } else if *s <= 6 {
            w.2 += 1;
        }
    }
    weeks
        .into_iter()
        .map(|(d, (n, p, det))| {
            let nps = if n == 0 { 0.0 } else { ((p - det) as f64 * 100.0 / n as f64).round() };
            (d.format("%m-%d").to_string(), nps)
        })
        .collect()
}

/// Each step's template rendered for a sample customer and event in each locale it has.
fn previews(v: &Viewer, book: &Playbook, job: &Job, now: DateTime<Utc>) -> Markup {
    let l = v.lang;
    let mut templates: Vec<&str> = Vec::new();
    for s in &job.steps {
        if !templates.contains(&s.template.as_str()) {
            templates.push(&s.template);
        }
    }
    html! {
        @for (step, name) in templates.iter().enumerate() {
            @let locales = locales_of(book, name);
            @for locale in &locales {
                @let (contact, event) = sample(book, job, name, locale, now);
                @let facts = MessageFacts { id: "preview", step: step as i64, token: Some("preview-token"), send_at: now };
                details.preview {
                    summary { (name) " · " (locale) }
                    @if job.channels.contains(&Channel::Email) {
                        @match book.render_email(job, &contact, event.as_ref(), &facts, name) {
                            Ok(e) => {
                                p.subject { strong { "email: " } (e.subject) }
                                @if let Some(t) = e.text.as_deref().or(e.html.as_deref()) { pre.body { (text(v, t)) } }
                            }
                            Err(e) => { (problem(&e.to_string())) }
                        }
                    }
                    @if job.channels.contains(&Channel::Sms) {
                        @match book.render_sms(job, &contact, event.as_ref(), &facts, name) {
                            Ok(s) => { p.subject { strong { "sms: " } (crate::channels::sms::segments(&s.text).to_string()) } pre.body { (text(v, &s.text)) } }
                            Err(e) => { (problem(&e.to_string())) }
                        }
                    }
                }
            }
        }
        @if templates.is_empty() { p.hint { (l.t("nav.tasks")) ": webhook" } }
    }
}

/// The locales a template has files for (the default files count as the default locale).
fn locales_of(book: &Playbook, name: &str) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    for f in book.templates.files(name) {
        out.insert(f.locale.clone().unwrap_or_else(|| book.default_locale.clone()));
    }
    out.into_iter().collect()
}

/// A customer and an event for a preview: every variable the template reads is filled, with
/// a placeholder naming the field, so nobody's real data is shown.
fn sample(book: &Playbook, job: &Job, template: &str, locale: &str, now: DateTime<Utc>) -> (Contact, Option<Event>) {
    let zh = locale.to_ascii_lowercase().starts_with("zh");
    let mut data = Map::new();
    let mut attributes = Map::new();
    for f in book.templates.files(template) {
        for path in f.used_paths() {
            if let Some(rest) = path.strip_prefix("event.data.") {
                put(&mut data, rest);
            } else if let Some(rest) = path.strip_prefix("contact.attributes.") {
                put(&mut attributes, rest);
            }
        }
    }
    let contact = Contact {
        id: "sample".into(),
        name: Some(if zh { "王芳" } else { "Jane Doe" }.into()),
        email: Some("jane.doe@example.com".into()),
        phone: Some("+8613800138000".into()),
        locale: Some(locale.to_string()),
        timezone: Some(book.default_timezone.name().to_string()),
        birthday: Some("1990-02-28".into()),
        attributes,
        consent: Map::new(),
    };
    let event = Event {
        id: "sample".into(),
        kind: job.trigger.event().unwrap_or("sample").to_string(),
        occurred_at: now.fixed_offset(),
        contact_id: "sample".into(),
        data,
    };
    (contact, Some(event))
}

/// `order_id` → {"order_id": "‹order_id›"}; `items.0.name` → nested objects.
fn put(map: &mut Map<String, Value>, path: &str) {
    let mut parts = path.split('.').filter(|p| !p.is_empty()).peekable();
    let mut cur = map;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.entry(p.to_string())
                .or_insert_with(|| Value::String(format!("‹{p}›")));
            return;
        }
        let next = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(m) = next else { return };
        cur = m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_grouped_without_their_details() {
        assert_eq!(reason_kind("stopped: review.submitted received for order_id=SO-1"), "stopped: review.submitted");
        assert_eq!(reason_kind("expired: due 2026-11-20 10:00, not sent by 2026-11-27"), "expired");
        assert_eq!(reason_kind("not sent: email: a@b.c is suppressed (unsubscribe)"), "suppressed");
        assert_eq!(reason_kind("cancelled by li.na"), "cancelled by an agent");
        assert_eq!(reason_kind("dropped: frequency cap 1 per 1d reached"), "frequency cap");
    }

    #[test]
    fn nps_by_week_counts_promoters_minus_detractors() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let scores = vec![
            (t("2026-11-02T10:00:00Z"), 10),
            (t("2026-11-03T10:00:00Z"), 9),
            (t("2026-11-04T10:00:00Z"), 3),
            (t("2026-11-05T10:00:00Z"), 8),
            (t("2026-11-10T10:00:00Z"), 0),
        ];
        assert_eq!(
            nps_by_week(&scores, chrono_tz::UTC),
            vec![("11-02".to_string(), 25.0), ("11-09".to_string(), -100.0)]
        );
    }

    #[test]
    fn sample_paths_nest() {
        let mut m = Map::new();
        put(&mut m, "order_id");
        put(&mut m, "items.0.name");
        assert_eq!(
            Value::Object(m),
            serde_json::json!({"order_id": "‹order_id›", "items": {"0": {"name": "‹name›"}}})
        );
    }
}
