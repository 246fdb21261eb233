//! The rules that keep customers glad to hear from us: consent, quiet hours, frequency caps,
//! and which day an anniversary falls on.
//!
//! Pure functions over times and contact facts, so dispatch (at send time), planning and the
//! forecast all apply exactly the same rules, and table tests can pin the edge cases (a DST
//! gap at 09:00, a cap window that frees up at 10:00:01, Feb 29 in a common year).

pub mod settings;

pub use settings::PolicyConfig;

use crate::values::local_instant;
use chrono::{DateTime, Datelike, Duration as Span, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use std::time::Duration;

/// What a marketing message needs from `contact.consent.<channel>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    /// Only `true` allows (explicit opt-in, e.g. GDPR).
    OptIn,
    /// Anything but `false` allows (the contact may opt out).
    OptOut,
}

/// Whether a marketing message may use `channel` for a contact with these consents.
pub fn has_consent(mode: ConsentMode, consent: &Map<String, Value>, channel: &str) -> bool {
    match (mode, consent.get(channel)) {
        (_, Some(Value::Bool(b))) => *b,
        (ConsentMode::OptIn, _) => false,
        (ConsentMode::OptOut, _) => true,
    }
}

/// Hours of the contact's local day when messages may go out. `end` of `None` is midnight
/// (24:00). A window whose start is after its end spans midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    pub start: NaiveTime,
    pub end: Option<NaiveTime>,
}

impl SendWindow {
    #[cfg(test)]
    pub const ALWAYS: SendWindow = SendWindow {
        start: NaiveTime::MIN,
        end: None,
    };

    pub fn contains(&self, t: NaiveTime) -> bool {
        match self.end {
            None => t >= self.start,
            Some(end) if self.start <= end => t >= self.start && t < end,
            Some(end) => t >= self.start || t < end,
        }
    }

    /// The first instant at or after `t` that is inside the window in `tz`.
    pub fn next_allowed(&self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = t.with_timezone(&tz).naive_local();
        if self.contains(local.time()) {
            return t;
        }
        // Before today's start: today; otherwise the next day's start.
        let mut day = if local.time() < self.start {
            local.date()
        } else {
            local.date() + Span::days(1)
        };
        // A start in a repeated hour (clocks falling back) happens twice, and `t` can be in the
        // second pass after the first start: then the second start, or the next day's. Never
        // an instant before `t`.
        for _ in 0..3 {
            let naive = day.and_time(self.start);
            let (first, second) = match tz.from_local_datetime(&naive) {
                chrono::LocalResult::Ambiguous(a, b) => {
                    (a.with_timezone(&Utc), Some(b.with_timezone(&Utc)))
                }
                _ => (local_instant(tz, naive), None),
            };
            if let Some(at) = [Some(first), second]
                .into_iter()
                .flatten()
                .find(|at| *at >= t)
            {
                return at;
            }
            day += Span::days(1);
        }
        t
    }

    /// `from` plus `d` of time inside the window in `tz`: business time, for a callback
    /// task "due within one business hour" (an answer at 17:30 with a 09:00–18:00 window is
    /// due at 09:30 the next day). An always-open window adds `d` as it is.
    pub fn add_open_time(&self, from: DateTime<Utc>, d: Duration, tz: Tz) -> DateTime<Utc> {
        let d = Span::from_std(d).unwrap_or(Span::MAX);
        if self.start == NaiveTime::MIN && self.end.is_none() {
            return from + d;
        }
        let mut t = self.next_allowed(from, tz);
        let mut left = d;
        // Each turn uses up one open stretch (a day's, at most): bounded by ten years of them.
        for _ in 0..3660 {
            let local = t.with_timezone(&tz).naive_local();
            let end_local = match self.end {
                None => (local.date() + Span::days(1)).and_time(NaiveTime::MIN),
                Some(e) if self.start <= e => local.date().and_time(e),
                Some(e) if local.time() >= self.start => (local.date() + Span::days(1)).and_time(e),
                Some(e) => local.date().and_time(e),
            };
            let end = local_instant(tz, end_local);
            let open = end - t;
            if open >= left {
                return t + left;
            }
            if open > Span::zero() {
                left -= open;
            }
            t = self.next_allowed(end.max(t + Span::minutes(1)), tz);
        }
        t
    }

    pub fn describe(&self) -> String {
        let end = self
            .end
            .map(|e| e.format("%H:%M").to_string())
            .unwrap_or_else(|| "24:00".into());
        format!("{}–{end}", self.start.format("%H:%M"))
    }
}

/// "At most `max` marketing messages per contact per `per`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub max: u32,
    pub per: Duration,
}

/// `Ok` if one more marketing message may go at `now` given the contact's earlier sends;
/// otherwise the first instant it may, and which cap holds it back.
pub fn check_caps(
    caps: &[Cap],
    sends: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Result<(), (DateTime<Utc>, Cap)> {
    let mut worst: Option<(DateTime<Utc>, Cap)> = None;
    for cap in caps {
        let per = Span::from_std(cap.per).unwrap_or(Span::MAX);
        let mut inside: Vec<DateTime<Utc>> = sends
            .iter()
            .copied()
            .filter(|s| *s > now - per && *s <= now)
            .collect();
        if inside.len() < cap.max as usize {
            continue;
        }
        inside.sort();
        // The cap frees when enough of the oldest sends leave the window.
        let free_at = inside[inside.len() - cap.max as usize] + per;
        if worst.is_none_or(|(w, _)| free_at > w) {
            worst = Some((free_at, *cap));
        }
    }
    match worst {
        None => Ok(()),
        Some(w) => Err(w),
    }
}

/// Which day a Feb 29 anniversary falls on in a common year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeapDay {
    Feb28,
    Mar1,
}

/// The `MM-DD` values of date fields whose anniversary is on local day `d`.
pub fn anniversary_days(d: NaiveDate, leap: LeapDay) -> Vec<String> {
    let mut days = vec![d.format("%m-%d").to_string()];
    let common = NaiveDate::from_ymd_opt(d.year(), 2, 29).is_none();
    if common {
        match (leap, d.month(), d.day()) {
            (LeapDay::Feb28, 2, 28) | (LeapDay::Mar1, 3, 1) => days.push("02-29".into()),
            _ => {}
        }
    }
    days
}

/// The day in `year` on which a date field's anniversary falls.
pub fn anniversary_in(date: NaiveDate, year: i32, leap: LeapDay) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, date.month(), date.day()).unwrap_or_else(|| match leap {
        LeapDay::Feb28 => NaiveDate::from_ymd_opt(year, 2, 28).expect("Feb 28 exists"),
        LeapDay::Mar1 => NaiveDate::from_ymd_opt(year, 3, 1).expect("Mar 1 exists"),
    })
}

/// `09:00`, `9:00`, `21:30`; `24:00` as the end of a window.
pub fn parse_clock(text: &str) -> Result<Option<NaiveTime>, String> {
    if text.trim() == "24:00" {
        return Ok(None);
    }
    NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .map(Some)
        .map_err(|_| format!("`{text}` is not a time of day as HH:MM (24-hour), e.g. 09:00"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn business_time_skips_the_closed_hours() {
        let w = SendWindow {
            start: NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            end: Some(NaiveTime::from_hms_opt(18, 0, 0).unwrap()),
        };
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let hour = Duration::from_secs(3600);
        for (from, want) in [
            ("2026-11-23T12:00:00+08:00", "2026-11-23T13:00:00+08:00"),
            ("2026-11-23T17:30:00+08:00", "2026-11-24T09:30:00+08:00"),
            ("2026-11-23T20:00:00+08:00", "2026-11-24T10:00:00+08:00"),
            ("2026-11-23T07:00:00+08:00", "2026-11-23T10:00:00+08:00"),
        ] {
            assert_eq!(w.add_open_time(t(from), hour, tz), t(want), "{from}");
        }
        // Ten business hours: a day's nine, and one more the next morning.
        assert_eq!(
            w.add_open_time(t("2026-11-23T09:00:00+08:00"), hour * 10, tz),
            t("2026-11-24T10:00:00+08:00")
        );
        let night = SendWindow {
            start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            end: Some(NaiveTime::from_hms_opt(6, 0, 0).unwrap()),
        };
        assert_eq!(
            night.add_open_time(t("2026-11-23T05:30:00+08:00"), hour, tz),
            t("2026-11-23T22:30:00+08:00")
        );
        assert_eq!(
            SendWindow::ALWAYS.add_open_time(t("2026-11-23T05:30:00+08:00"), hour, tz),
            t("2026-11-23T06:30:00+08:00")
        );
    }

    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(a: &str, b: &str) -> SendWindow {
        SendWindow {
            start: parse_clock(a).unwrap().unwrap(),
            end: parse_clock(b).unwrap(),
        }
    }

    #[test]
    fn consent_modes() {
        let yes = json!({"email": true}).as_object().unwrap().clone();
        let no = json!({"email": false}).as_object().unwrap().clone();
        let none = Map::new();
        assert!(has_consent(ConsentMode::OptIn, &yes, "email"));
        assert!(!has_consent(ConsentMode::OptIn, &none, "email"));
        assert!(!has_consent(ConsentMode::OptOut, &no, "email"));
        assert!(has_consent(ConsentMode::OptOut, &none, "email"));
        assert!(has_consent(ConsentMode::OptOut, &no, "sms"));
    }

    #[test]
    fn quiet_hours_move_late_sends_to_the_next_morning() {
        let w = window("09:00", "21:00");
        let sh: Tz = "Asia/Shanghai".parse().unwrap();
        let cases = [
            ("2026-11-23T23:10:00+08:00", "2026-11-24T09:00:00+08:00"),
            ("2026-11-23T03:00:00+08:00", "2026-11-23T09:00:00+08:00"),
            ("2026-11-23T12:00:00+08:00", "2026-11-23T12:00:00+08:00"),
            ("2026-11-23T21:00:00+08:00", "2026-11-24T09:00:00+08:00"),
            ("2026-11-23T20:59:59+08:00", "2026-11-23T20:59:59+08:00"),
        ];
        for (at, want) in cases {
            assert_eq!(w.next_allowed(t(at), sh), t(want), "{at}");
        }
        assert_eq!(
            SendWindow::ALWAYS.next_allowed(t("2026-11-23T03:00:00Z"), sh),
            t("2026-11-23T03:00:00Z")
        );
    }

    #[test]
    fn windows_across_midnight_and_dst() {
        let night = window("20:00", "08:00");
        assert!(night.contains(NaiveTime::from_hms_opt(23, 0, 0).unwrap()));
        assert!(night.contains(NaiveTime::from_hms_opt(7, 59, 0).unwrap()));
        assert!(!night.contains(NaiveTime::from_hms_opt(12, 0, 0).unwrap()));
        // New York springs forward at 02:00 on 2027-03-14: 02:30 does not exist.
        let ny: Tz = "America/New_York".parse().unwrap();
        let w = window("02:30", "21:00");
        assert_eq!(
            w.next_allowed(t("2027-03-14T05:00:00Z"), ny),
            t("2027-03-14T07:00:00Z")
        ); // 03:00 EDT
        // And falls back at 02:00 on 2026-11-01: 01:30 happens twice; the first one counts.
        let w = window("01:30", "21:00");
        assert_eq!(
            w.next_allowed(t("2026-11-01T04:00:00Z"), ny),
            t("2026-11-01T05:30:00Z")
        ); // 01:30 EDT
        // From inside the second 01:00–02:00 (01:10 EST, after the first 01:30 has passed):
        // the second 01:30, never an instant before `t` (the message went out at once, inside
        // quiet hours, and a cap's deferral to it was due again at once, without end).
        assert_eq!(
            w.next_allowed(t("2026-11-01T06:10:00Z"), ny),
            t("2026-11-01T06:30:00Z")
        ); // 01:30 EST
        // Past the second 01:30 too, before the window's end: inside it.
        assert_eq!(
            w.next_allowed(t("2026-11-01T06:40:00Z"), ny),
            t("2026-11-01T06:40:00Z")
        );
    }

    #[test]
    fn caps_defer_to_when_the_oldest_send_leaves_the_window() {
        let caps = [
            Cap {
                max: 2,
                per: Duration::from_secs(7 * 86_400),
            },
            Cap {
                max: 1,
                per: Duration::from_secs(86_400),
            },
        ];
        let now = t("2026-11-23T10:00:00Z");
        assert!(check_caps(&caps, &[], now).is_ok());
        assert!(check_caps(&caps, &[t("2026-11-20T10:00:00Z")], now).is_ok());
        // One today: the daily cap holds until 24 h after it.
        let (at, cap) = check_caps(&caps, &[t("2026-11-23T08:00:00Z")], now).unwrap_err();
        assert_eq!((at, cap.max), (t("2026-11-24T08:00:00Z"), 1));
        // Two this week: the weekly cap holds until the older one is 7 days old.
        let sends = [t("2026-11-18T09:00:00Z"), t("2026-11-21T09:00:00Z")];
        let (at, cap) = check_caps(&caps, &sends, now).unwrap_err();
        assert_eq!((at, cap.max), (t("2026-11-25T09:00:00Z"), 2));
        assert!(check_caps(&caps, &sends, t("2026-11-25T09:00:01Z")).is_ok());
    }

    #[test]
    fn leap_day_anniversaries() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            anniversary_days(d("2027-02-28"), LeapDay::Feb28),
            ["02-28", "02-29"]
        );
        assert_eq!(anniversary_days(d("2027-03-01"), LeapDay::Feb28), ["03-01"]);
        assert_eq!(
            anniversary_days(d("2027-03-01"), LeapDay::Mar1),
            ["03-01", "02-29"]
        );
        assert_eq!(anniversary_days(d("2028-02-28"), LeapDay::Feb28), ["02-28"]);
        assert_eq!(anniversary_days(d("2028-02-29"), LeapDay::Feb28), ["02-29"]);
        assert_eq!(
            anniversary_in(d("1992-02-29"), 2027, LeapDay::Feb28),
            d("2027-02-28")
        );
        assert_eq!(
            anniversary_in(d("1992-02-29"), 2027, LeapDay::Mar1),
            d("2027-03-01")
        );
        assert_eq!(
            anniversary_in(d("1992-02-29"), 2028, LeapDay::Mar1),
            d("2028-02-29")
        );
    }
}
