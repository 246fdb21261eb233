//! Marketing's page: every job with its trigger in words, its last 30 days as a funnel, NPS
//! over time for surveys, what the next 7 days would send (the forecast, replayed on a copy
//! of the store), the `validate` result with file:line:col, and each template previewed with
//! a sample event in each of its locales.

use super::chart::{self, Bar};
use super::i18n::Lang;
use super::layout::{frame, problem, text};
use super::{Console, ForecastItem, Viewer};
use crate::jobs::Scale;
use crate::jobs::{Job, Trigger};
use crate::model::{Channel, Contact, Event};
use crate::playbook::{MessageFacts, Playbook};
use crate::reports::{self, By, ConversionGroup, ReportError, ScoreGroup, Window};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
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
    let tz = book.default_timezone;
    for job in jobs {
        // The reports' own counts (`aftercare report`): the same figures in both places.
        let window = match Window::new(Some(since), Some(now), now, tz) {
            Ok(w) => w,
            Err(e) => return report_error(&v, e),
        };
        let funnel =
            match reports::conversions(&c.inner.store, job, &window, None, &book.default_locale)
                .await
            {
                Ok(r) => r.total,
                Err(e) => return report_error(&v, e),
            };
        let nps = match job.survey {
            Some(s) if s.scale == Scale::Nps => {
                // Weeks in the defaults' zone, as `aftercare report scores --by week` counts
                // them: the viewer's zone gave each viewer other weekly figures.
                let w = match Window::new(Some(now - Span::weeks(12)), Some(now), now, tz) {
                    Ok(w) => w,
                    Err(e) => return report_error(&v, e),
                };
                match reports::scores(
                    &c.inner.store,
                    job,
                    Scale::Nps,
                    &w,
                    Some(By::Week),
                    &book.default_locale,
                )
                .await
                {
                    Ok(r) => Some(r.groups),
                    Err(e) => return report_error(&v, e),
                }
            }
            _ => None,
        };
        sections.push(job_section(&v, &book, job, &funnel, nps, now));
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

fn forecast_table(
    v: &Viewer,
    f: &Option<Result<Vec<ForecastItem>, String>>,
    now: DateTime<Utc>,
) -> Markup {
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
            Lang::En => format!(
                "{} {} {event}",
                crate::duration::format(*delay),
                l.t("trigger.after")
            ),
            Lang::Zh => format!(
                "{event} {} {}",
                l.t("trigger.after"),
                crate::duration::format(*delay)
            ),
        }),
        Trigger::Anniversary { field, at, .. } => parts.push(format!(
            "{} contact.{} {} {}",
            l.t("trigger.anniversary"),
            field.key(),
            l.t("trigger.at"),
            at.format("%H:%M")
        )),
        Trigger::Cron {
            expr,
            cron,
            timezone,
            ..
        } => {
            let tz = timezone.unwrap_or(book.default_timezone);
            let next = crate::cron_tz::next_after(cron, tz, now).ok().flatten();
            parts.push(format!(
                "{} `{expr}` ({}){}",
                l.t("trigger.cron"),
                tz.name(),
                next.map(|n| format!(
                    ", {} {}",
                    l.t("trigger.next"),
                    n.with_timezone(&tz).format("%Y-%m-%d %H:%M")
                ))
                .unwrap_or_default()
            ));
        }
    }
    for s in job.steps.iter().skip(1) {
        parts.push(format!(
            "{} {}",
            l.t("trigger.reminder"),
            crate::duration::format(s.after)
        ));
    }
    if !job.stop_when.is_empty() {
        let events: Vec<&str> = job.stop_when.iter().map(|s| s.event.as_str()).collect();
        parts.push(format!("{} {}", l.t("trigger.stop"), events.join(", ")));
    }
    parts.join(" · ")
}

fn report_error(v: &Viewer, e: ReportError) -> Response {
    match e {
        ReportError::Store(e) => v.store_error(e),
        e @ (ReportError::Invalid(_) | ReportError::Field(..)) => {
            tracing::warn!("console campaigns: {e}");
            v.refuse(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "store_error")
        }
    }
}

fn job_section(
    v: &Viewer,
    book: &Playbook,
    job: &Job,
    f: &ConversionGroup,
    nps: Option<Vec<ScoreGroup>>,
    now: DateTime<Utc>,
) -> Markup {
    let l = v.lang;
    let mut rows = vec![
        Bar {
            label: l.t("funnel.planned").into(),
            value: f.planned,
            class: "planned",
        },
        Bar {
            label: l.t("funnel.sent").into(),
            value: f.sent,
            class: "sent",
        },
    ];
    if f.delivered > 0 {
        rows.push(Bar {
            label: l.t("funnel.delivered").into(),
            value: f.delivered,
            class: "delivered",
        });
    }
    if !job.goal.events.is_empty() {
        rows.push(Bar {
            label: l.t("funnel.converted").into(),
            value: f.converted,
            class: "converted",
        });
    }
    rows.push(Bar {
        label: l.t("funnel.failed").into(),
        value: f.failed,
        class: "failed",
    });
    rows.push(Bar {
        label: l.t("funnel.pending").into(),
        value: f.pending,
        class: "pending",
    });
    let mut cancelled: Vec<(&String, &i64)> = f.cancelled_by.iter().collect();
    cancelled.sort_by_key(|(k, n)| (std::cmp::Reverse(**n), (*k).clone()));
    for (kind, n) in cancelled {
        rows.push(Bar {
            label: format!("{}: {kind}", l.t("funnel.cancelled")),
            value: *n,
            class: "cancelled",
        });
    }
    let weeks: Vec<(String, f64)> = nps
        .iter()
        .flatten()
        .filter_map(|g| {
            g.nps
                .map(|n| (g.key.get(5..).unwrap_or(&g.key).to_string(), n.round()))
        })
        .collect();
    html! {
        section.job id={ "job-" (job.id) } {
            h2 { (job.id) @if !job.enabled { " (" (l.t("campaigns.disabled")) ")" } }
            p.desc { (job.description) }
            p.trigger { strong { (l.t("campaigns.trigger")) ": " } (trigger_words(l, job, book, now)) }
            p.meta { (job.class.as_str()) " · " (job.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")) @if job.webhook { " + webhook" } }
            h3 { (l.t("campaigns.funnel")) }
            (chart::bars(&format!("{} {}", job.id, l.t("campaigns.funnel")), &rows))
            @if nps.is_some() {
                h3 { (l.t("campaigns.nps")) }
                @if weeks.is_empty() {
                    p.empty { (l.t("campaigns.nps_none")) }
                } @else {
                    (chart::line(&format!("{} NPS", job.id), &weeks, -100.0, 100.0))
                }
            }
            h3 { (l.t("campaigns.preview")) }
            (previews(v, book, job, now))
        }
    }
}

/// Each template the job sends (steps and variants) rendered for a sample customer and event
/// in each locale it has.
fn previews(v: &Viewer, book: &Playbook, job: &Job, now: DateTime<Utc>) -> Markup {
    let l = v.lang;
    let templates = job.templates();
    html! {
        @for (step, name) in templates.iter().copied() {
            @let locales = locales_of(book, name);
            @for locale in &locales {
                @let (contact, event) = sample(book, job, name, locale, now);
                @let facts = MessageFacts { id: "preview", step, token: Some("preview-token"), send_at: now };
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
        out.insert(
            f.locale
                .clone()
                .unwrap_or_else(|| book.default_locale.clone()),
        );
    }
    out.into_iter().collect()
}

/// A customer and an event for a preview: every variable the template reads is filled, with
/// a placeholder naming the field, so nobody's real data is shown.
fn sample(
    book: &Playbook,
    job: &Job,
    template: &str,
    locale: &str,
    now: DateTime<Utc>,
) -> (Contact, Option<Event>) {
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
