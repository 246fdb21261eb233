//! The operators' page: how much is waiting and how late, what went out in the last hour and
//! why things failed, each SMS gateway's breaker, the SMTP relay, and which job set runs
//! (its version and the last reload's result).

use super::chart;
use super::layout::{at, frame, text};
use super::{Console, Viewer};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

/// The span the per-minute chart and the failure list cover.
const MINUTES: i64 = 60;

pub(super) async fn page(State(c): State<Console>, v: Viewer) -> Response {
    if let Err(r) = v.require(v.role.sees_health()) {
        return r;
    }
    let l = v.lang;
    let now = c.inner.clock.now();
    let store = &c.inner.store;
    let (outbox, figures) = match (
        store.outbox_figures(now).await,
        store.figures(now, MINUTES).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return v.store_error(e),
    };
    let gateways = c
        .inner
        .sms
        .as_ref()
        .map(|s| s.breakers())
        .unwrap_or_default();
    let relay = c.inner.relay.as_ref().map(|r| r.fault());
    let status = c.inner.status.get();
    let per_minute_now = figures.sent_per_minute.iter().rev().take(5).sum::<i64>() as f64 / 5.0;
    let body = html! {
        h1 { (l.t("nav.health")) }
        section id="outbox" {
            h2 { (l.t("health.outbox")) }
            dl.figures {
                dt { (l.t("health.depth")) } dd id="depth" { (outbox.depth) }
                dt { (l.t("health.due")) } dd id="due" { (outbox.due) }
                dt { (l.t("health.oldest")) } dd id="oldest" {
                    @match outbox.oldest_due {
                        Some(t) => { (crate::duration::format((now - t).to_std().unwrap_or_default())) }
                        None => { "—" }
                    }
                }
                dt { (l.t("health.per_minute")) } dd id="per-minute" { (format!("{per_minute_now:.1}")) }
            }
            (chart::spark(l.t("health.per_minute"), &figures.sent_per_minute))
        }
        section id="failures" {
            h2 { (l.t("health.failures")) }
            @if figures.failures.is_empty() {
                p.empty { (l.t("health.no_failures")) }
            } @else {
                table.failures {
                    tbody {
                        @for (channel, outcome, detail, n) in &figures.failures {
                            tr { td { (n) } td { (channel) } td { (outcome) } td { (text(&v, detail)) } }
                        }
                    }
                }
            }
        }
        section id="gateways" {
            h2 { (l.t("health.gateways")) }
            @if gateways.is_empty() {
                p.empty { (l.t("health.no_gateways")) }
            } @else {
                table.gateways {
                    tbody {
                        @for g in &gateways {
                            tr.down[g.down_for.is_some()] {
                                th { (g.name) } td { (g.kind) }
                                td { @match g.down_for {
                                    Some(d) => { (l.t("health.down_for")) " " (crate::duration::format(std::time::Duration::from_secs(d.as_secs().max(1)))) }
                                    None => { (l.t("health.up")) }
                                } }
                                td { (g.failures) " " (l.t("health.failures_row")) }
                            }
                        }
                    }
                }
            }
            @if let Some(r) = &relay {
                p { strong { (l.t("health.relay")) ": " } @match r { Some(fault) => { span.problem { (text(&v, fault)) } } None => { (l.t("health.up")) } } }
            }
        }
        section id="jobs" {
            h2 { (l.t("health.jobs")) }
            dl.figures {
                dt { (l.t("health.version")) } dd id="version" { code { (status.version) } }
                dt { (l.t("health.loaded")) } dd { (status.loaded_at.map(|t| at(t, v.tz)).unwrap_or_default()) }
                dt { (l.t("health.reload")) } dd id="reload" {
                    @match &status.last_reload {
                        Some((t, ok, what)) => { (at(*t, v.tz)) " — " span class=(if *ok { "ok" } else { "problem" }) { (text(&v, what)) } }
                        None => { (l.t("health.no_reload")) }
                    }
                }
            }
        }
    };
    frame(&v, l.t("nav.health"), body).into_response()
}
