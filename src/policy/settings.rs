//! The `policy:` section: the defaults that protect customers (consent mode, quiet hours,
//! frequency caps, leap-day anniversaries); jobs may override some of them.

use super::{Cap, ConsentMode, LeapDay, SendWindow, parse_clock};
use crate::check::Checker;
use serde::Deserialize;
use std::time::Duration;

/// `policy:` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    consent: Option<ConsentMode>,
    send_window: Option<RawWindow>,
    caps: Option<Vec<RawCap>>,
    leap_day: Option<LeapDay>,
    /// How late an anniversary greeting may still go (a daemon down on the day).
    anniversary_grace: Option<String>,
}

/// `{start: "09:00", end: "21:00"}`, in the config's policy and in jobs.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    max: u32,
    per: String,
}

/// Defaults for the customer-protecting rules; jobs may override some.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub consent: ConsentMode,
    pub send_window: SendWindow,
    /// Across all marketing jobs, per contact.
    pub caps: Vec<Cap>,
    pub leap_day: LeapDay,
    pub anniversary_grace: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            consent: ConsentMode::OptIn,
            send_window: SendWindow {
                start: chrono::NaiveTime::MIN + chrono::Duration::hours(9),
                end: Some(chrono::NaiveTime::MIN + chrono::Duration::hours(21)),
            },
            caps: vec![
                Cap {
                    max: 2,
                    per: Duration::from_secs(7 * 86_400),
                },
                Cap {
                    max: 1,
                    per: Duration::from_secs(86_400),
                },
            ],
            leap_day: LeapDay::Feb28,
            anniversary_grace: Duration::from_secs(86_400),
        }
    }
}

pub fn check(c: &mut Checker, raw: RawPolicy) -> PolicyConfig {
    let d = PolicyConfig::default();
    let send_window = raw
        .send_window
        .as_ref()
        .and_then(|w| window(c, "policy.send_window", w))
        .unwrap_or(d.send_window);
    let caps = match raw.caps {
        None => d.caps,
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, cap)| {
                let per = c.duration_or(
                    &format!("policy.caps[{i}].per"),
                    Some(&cap.per),
                    Duration::ZERO,
                );
                if cap.max == 0 || per.is_zero() {
                    c.err(
                        &format!("policy.caps[{i}]"),
                        "a cap needs max ≥ 1 and a period",
                        Some("e.g. {max: 2, per: 7d}".into()),
                    );
                    return None;
                }
                Some(Cap { max: cap.max, per })
            })
            .collect(),
    };
    PolicyConfig {
        consent: raw.consent.unwrap_or(d.consent),
        send_window,
        caps,
        leap_day: raw.leap_day.unwrap_or(d.leap_day),
        anniversary_grace: c.duration_or(
            "policy.anniversary_grace",
            raw.anniversary_grace.as_deref(),
            d.anniversary_grace,
        ),
    }
}

/// A send window at `field` (the config's default, or a job's own).
pub fn window(c: &mut Checker, field: &str, w: &RawWindow) -> Option<SendWindow> {
    parse_window(w)
        .map_err(|e| {
            c.err(
                field,
                e,
                Some("e.g. {start: \"09:00\", end: \"21:00\"}".into()),
            )
        })
        .ok()
}

/// `{start: "09:00", end: "21:00"}` as a [`SendWindow`].
fn parse_window(w: &RawWindow) -> Result<SendWindow, String> {
    let start =
        parse_clock(&w.start)?.ok_or_else(|| "a window cannot start at 24:00".to_string())?;
    let end = parse_clock(&w.end)?;
    if end == Some(start) {
        return Err(
            "start and end are the same; for no restriction use start 00:00, end 24:00".into(),
        );
    }
    Ok(SendWindow { start, end })
}
