//! Cron occurrences in a time zone, under DST rules we state (README, "Cron and DST") rather
//! than the ones croner applies on the two days a year when a zone's clocks change.
//!
//! croner is good at the calendar (ranges, steps, `L`, `W`, `#`, day-of-month OR
//! day-of-week) and we keep it for that, but we ask it only for *wall-clock* matches: it
//! searches on UTC, which has no gaps or overlaps, so a match it returns is a local date and
//! time. Turning a local time into instants is ours, one rule per case:
//!
//! | local time            | hour field fixed (`30 1`, `0 9-17`, `*/15 9`) | hour field `*` or `*/n` |
//! |-----------------------|-----------------------------------------------|-------------------------|
//! | exists once           | that instant                                  | that instant            |
//! | exists twice (overlap)| the first pass only                           | both passes             |
//! | does not exist (gap)  | the first instant after the gap, once         | skipped                 |
//!
//! That is Vixie cron's rule ("care is taken to avoid running jobs twice"; jobs that run by
//! the clock run by the new time), keyed on the hour field: a job pinned to hours gets each
//! of its hours once a day, a job that runs every hour gets every hour the clock shows.
//!
//! Why not croner's own handling. Reported upstream as this minimal case (croner 3.0.1):
//!
//! ```text
//! let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
//! let cron = croner::Cron::from_str("30 1 * * *").unwrap();
//! // 01:30 EST on 2027-03-14, the night New York skips 02:00-03:00.
//! let start = ny.with_ymd_and_hms(2027, 3, 14, 1, 30, 0).unwrap();
//! cron.find_next_occurrence(&start, false)
//! // expected: 2027-03-15T01:30:00EDT
//! // got:      2027-03-14T03:00:00EDT (a second run the same night)
//! ```
//!
//! In `find_occurrence`, the `LocalResult::None` branch for `JobType::FixedTime` snaps any
//! naive time the *search* passes through in the gap to the first valid time after it and
//! then checks only `day_match`/`month_match`/`year_match`, not whether the pattern's hour
//! and minute were in the gap. A second case from the same function: from the second pass of
//! a repeated hour (`30 2 * * *` in Europe/Berlin, start 2027-10-31T01:00:00Z = 02:00 CET)
//! it returns 02:30 CEST, an instant *before* the start; and for wildcard jobs it drops the
//! second pass it computes (`find_next_occurrence` keeps only the first of the pair).

use chrono::{DateTime, Duration as Span, LocalResult, NaiveDateTime, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError as CronerError;
use std::collections::BTreeSet;

/// Why occurrences could not be computed. Both name the expression and zone: they come from
/// a job's `trigger.cron` and `trigger.timezone`.
#[derive(Debug, thiserror::Error)]
pub enum CronTzError {
    #[error("cron `{expr}` in {tz}: croner failed to find the local time after {after}: {source}")]
    Search {
        expr: String,
        tz: Tz,
        after: NaiveDateTime,
        #[source]
        source: CronerError,
    },
    #[error(
        "cron `{expr}` in {tz}: croner answered {got} as the local time after {after}, which does not move forward; stopping rather than looping (a croner bug: please report the expression and zone)"
    )]
    NotForward {
        expr: String,
        tz: Tz,
        after: NaiveDateTime,
        got: NaiveDateTime,
    },
}

/// Whether `cron` runs by the clock (its hour field is `*` or `*/n`): such a job fires in
/// both passes of a repeated hour and skips the times a gap removes.
pub fn wildcard_hours(cron: &Cron) -> bool {
    cron.pattern.hours.from_wildcard
}

/// The occurrences of `cron` in `tz` strictly after an instant, oldest first, each once.
///
/// Lazy: the forecast and the daemon take a few from the front; nothing is kept but a
/// handful of pending instants around a DST overlap.
pub struct Occurrences<'a> {
    cron: &'a Cron,
    tz: Tz,
    wildcard: bool,
    after: DateTime<Utc>,
    /// The last local time croner matched (or where the search starts).
    cursor: NaiveDateTime,
    /// Whether `cursor` itself may match (only for the first search).
    inclusive: bool,
    /// Instants found but not yet returned; in an overlap a wildcard job's second passes
    /// come after first passes of later local times.
    pending: BTreeSet<DateTime<Utc>>,
    /// No instant still to be found is earlier than this (the earliest instant of the last
    /// local match: that is monotone in the local time).
    floor: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    exhausted: bool,
}

impl<'a> Occurrences<'a> {
    pub fn after(cron: &'a Cron, tz: Tz, after: DateTime<Utc>) -> Occurrences<'a> {
        // Searched from the whole second: croner keeps the fraction of where it starts, and
        // an occurrence at 10:00:00.700 is later than a tick at 10:00:00.400. An occurrence
        // in the second `after` is in is not after it, so nothing is found twice.
        let local = after.with_timezone(&tz).naive_local().trunc_subsecs(0);
        // A local time earlier than `after`'s can still have an instant after it only when
        // `after` is in the first pass of an overlap: start the search where the overlap
        // starts so its second passes are seen.
        let (cursor, inclusive) = match tz.from_local_datetime(&local) {
            LocalResult::Ambiguous(a, b) => (local - (b - a), true),
            _ => (local, false),
        };
        Occurrences {
            cron,
            tz,
            wildcard: wildcard_hours(cron),
            after,
            cursor,
            inclusive,
            pending: BTreeSet::new(),
            floor: None,
            last: None,
            exhausted: false,
        }
    }

    /// The next local time croner matches after the cursor; `None` when there is none.
    fn next_local(&mut self) -> Result<Option<NaiveDateTime>, CronTzError> {
        let from = self.cursor.and_utc();
        let found = match self.cron.find_next_occurrence(&from, self.inclusive) {
            Ok(t) => t.naive_utc(),
            // croner gave up searching years ahead: the pattern never matches again
            // (`0 0 30 2 *`).
            Err(CronerError::TimeSearchLimitExceeded) => return Ok(None),
            Err(source) => {
                return Err(CronTzError::Search {
                    expr: self.cron.pattern.to_string(),
                    tz: self.tz,
                    after: self.cursor,
                    source,
                });
            }
        };
        let forward = if self.inclusive {
            found >= self.cursor
        } else {
            found > self.cursor
        };
        if !forward {
            return Err(CronTzError::NotForward {
                expr: self.cron.pattern.to_string(),
                tz: self.tz,
                after: self.cursor,
                got: found,
            });
        }
        self.cursor = found;
        self.inclusive = false;
        Ok(Some(found))
    }

    /// Apply the rules of the module doc to one local match: its instants go to `pending`,
    /// and the floor moves to the earliest instant at or after that local time.
    fn place(&mut self, local: NaiveDateTime) {
        let earliest = match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => {
                self.pending.insert(t.with_timezone(&Utc));
                t.with_timezone(&Utc)
            }
            LocalResult::Ambiguous(first, second) => {
                self.pending.insert(first.with_timezone(&Utc));
                if self.wildcard {
                    self.pending.insert(second.with_timezone(&Utc));
                }
                first.with_timezone(&Utc)
            }
            LocalResult::None => {
                let end = gap_end(self.tz, local);
                if !self.wildcard {
                    self.pending.insert(end);
                }
                end
            }
        };
        self.floor = Some(earliest);
    }
}

impl Iterator for Occurrences<'_> {
    type Item = Result<DateTime<Utc>, CronTzError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(&first) = self.pending.first()
                && (self.exhausted || self.floor.is_some_and(|f| first <= f))
            {
                self.pending.pop_first();
                // Strictly later than the start and than what was returned: several local
                // times a gap swallowed share one instant, and the search may begin before
                // `after` (see `after`).
                if first > self.after && self.last.is_none_or(|l| first > l) {
                    self.last = Some(first);
                    return Some(Ok(first));
                }
                continue;
            }
            if self.exhausted {
                return None;
            }
            match self.next_local() {
                Ok(Some(local)) => self.place(local),
                Ok(None) => self.exhausted = true,
                Err(e) => {
                    self.exhausted = true;
                    self.pending.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Every occurrence of `cron` in `tz` after `after` and up to `until`, oldest first: all of
/// them (the forecast shows each one).
pub fn occurrences(
    cron: &Cron,
    tz: Tz,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, CronTzError> {
    let mut out = Vec::new();
    for t in Occurrences::after(cron, tz, after) {
        let t = t?;
        if t > until {
            break;
        }
        out.push(t);
    }
    Ok(out)
}

/// The first occurrence after `after`.
pub fn next_after(
    cron: &Cron,
    tz: Tz,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, CronTzError> {
    Occurrences::after(cron, tz, after).next().transpose()
}

/// The latest occurrence in (`after`, `until`], for the daemon's catch-up: only the latest
/// missed occurrence fires. Looks back a day first, then eight times further each round, so
/// a long downtime of a frequent job costs about a day of occurrences, not all of them.
pub fn latest_in(
    cron: &Cron,
    tz: Tz,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, CronTzError> {
    let mut back = Span::days(1);
    loop {
        let from = until
            .checked_sub_signed(back)
            .map_or(after, |f| f.max(after));
        let mut latest = None;
        for t in Occurrences::after(cron, tz, from) {
            let t = t?;
            if t > until {
                break;
            }
            latest = Some(t);
        }
        if latest.is_some() || from <= after {
            return Ok(latest);
        }
        back = back.checked_mul(8).unwrap_or(Span::MAX);
    }
}

/// The first instant after the DST gap that swallowed the local time `local`: the moment
/// the clocks jumped. Found by bisection on whole seconds (transitions fall on them);
/// the local time is monotone around a gap.
fn gap_end(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let past = |secs: i64| {
        DateTime::from_timestamp(secs, 0)
            .map(|t| tz.from_utc_datetime(&t.naive_utc()).naive_local() > local)
    };
    // UTC offsets stay within ±26 h, so these bracket the jump.
    let centre = local.and_utc().timestamp();
    let (mut lo, mut hi) = (centre - 26 * 3600, centre + 26 * 3600);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match past(mid) {
            Some(true) => hi = mid,
            _ => lo = mid,
        }
    }
    DateTime::from_timestamp(hi, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("RFC 3339")
            .with_timezone(&Utc)
    }

    fn cron(expr: &str) -> Cron {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .expect("a cron expression")
    }

    fn tz(name: &str) -> Tz {
        name.parse().expect("a zone")
    }

    fn occ(expr: &str, zone: &str, from: &str, until: &str) -> Vec<String> {
        occurrences(&cron(expr), tz(zone), t(from), t(until))
            .expect("occurrences")
            .iter()
            .map(|t| t.format("%m-%dT%H:%MZ").to_string())
            .collect()
    }

    #[test]
    fn a_time_before_the_gap_fires_once_not_again_after_it() {
        // New York skips 02:00-03:00 EST on 2027-03-14; 01:30 EST is 06:30Z.
        assert_eq!(
            occ(
                "30 1 * * *",
                "America/New_York",
                "2027-03-13T00:00:00Z",
                "2027-03-15T12:00:00Z"
            ),
            ["03-13T06:30Z", "03-14T06:30Z", "03-15T05:30Z"]
        );
        // From the 01:30 occurrence itself, the next is the next day's.
        assert_eq!(
            next_after(
                &cron("30 1 * * *"),
                tz("America/New_York"),
                t("2027-03-14T06:30:00Z")
            )
            .unwrap(),
            Some(t("2027-03-15T05:30:00Z"))
        );
    }

    #[test]
    fn fixed_hours_in_the_gap_fire_once_at_its_end_wildcard_hours_skip_it() {
        let ny = "America/New_York";
        let (from, until) = ("2027-03-14T04:00:00Z", "2027-03-14T09:00:00Z");
        // 02:30 does not exist: 03:00 EDT (07:00Z).
        assert_eq!(occ("30 2 * * *", ny, from, until), ["03-14T07:00Z"]);
        // Two of its times in the gap: still once.
        assert_eq!(occ("0,30 2 * * *", ny, from, until), ["03-14T07:00Z"]);
        assert_eq!(
            occ("30 1-3 * * *", ny, from, until),
            ["03-14T06:30Z", "03-14T07:00Z", "03-14T07:30Z"]
        );
        // Hourly: 02:00 is not on the clock that night.
        assert_eq!(
            occ("0 * * * *", ny, from, until),
            [
                "03-14T05:00Z",
                "03-14T06:00Z",
                "03-14T07:00Z",
                "03-14T08:00Z",
                "03-14T09:00Z"
            ]
        );
        // Lord Howe skips 02:00-02:30 (+10:30 → +11): 02:15 becomes 02:30 = 15:30Z.
        assert_eq!(
            occ(
                "15 2 * * *",
                "Australia/Lord_Howe",
                "2027-10-02T00:00:00Z",
                "2027-10-03T00:00:00Z"
            ),
            ["10-02T15:30Z"]
        );
        // Scoresbysund skips 23:00-24:00 on 2027-03-27: 23:30 fires at midnight, the next day.
        assert_eq!(
            occ(
                "30 23 27 3 *",
                "America/Scoresbysund",
                "2027-03-26T00:00:00Z",
                "2027-03-29T00:00:00Z"
            ),
            ["03-28T01:00Z"]
        );
    }

    #[test]
    fn repeated_hour_once_for_fixed_hours_twice_for_wildcard_hours() {
        let ny = "America/New_York";
        // 01:00-02:00 happens at 05:00Z (EDT) and again at 06:00Z (EST) on 2027-11-07.
        let (from, until) = ("2027-11-07T03:30:00Z", "2027-11-07T08:30:00Z");
        assert_eq!(occ("30 1 * * *", ny, from, until), ["11-07T05:30Z"]);
        assert_eq!(
            occ("*/30 1 * * *", ny, from, until),
            ["11-07T05:00Z", "11-07T05:30Z"]
        );
        assert_eq!(
            occ("0 * * * *", ny, from, until),
            [
                "11-07T04:00Z",
                "11-07T05:00Z",
                "11-07T06:00Z",
                "11-07T07:00Z",
                "11-07T08:00Z"
            ]
        );
        // Berlin repeats 02:00-03:00: 00:00Z, 00:30Z CEST then 01:00Z, 01:30Z CET.
        assert_eq!(
            occ(
                "*/30 * * * *",
                "Europe/Berlin",
                "2027-10-30T23:45:00Z",
                "2027-10-31T02:00:00Z"
            ),
            [
                "10-31T00:00Z",
                "10-31T00:30Z",
                "10-31T01:00Z",
                "10-31T01:30Z",
                "10-31T02:00Z"
            ]
        );
    }

    #[test]
    fn from_inside_a_repeated_hour_the_next_is_always_later() {
        let berlin = tz("Europe/Berlin");
        // 01:00Z is 02:00 CET, the second pass: 02:30 CEST (00:30Z) is behind us.
        assert_eq!(
            next_after(&cron("30 2 * * *"), berlin, t("2027-10-31T01:00:00Z")).unwrap(),
            Some(t("2027-11-01T01:30:00Z"))
        );
        // From the first pass of a wildcard job, the second passes of earlier local
        // times still come.
        let c = cron("*/20 * * * *");
        let got: Vec<_> = Occurrences::after(&c, berlin, t("2027-10-31T00:50:00Z"))
            .take(4)
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            got,
            [
                t("2027-10-31T01:00:00Z"),
                t("2027-10-31T01:20:00Z"),
                t("2027-10-31T01:40:00Z"),
                t("2027-10-31T02:00:00Z")
            ]
        );
        // Every instant from every start in the night moves forward and matches the list.
        let all = occurrences(
            &c,
            berlin,
            t("2027-10-30T22:00:00Z"),
            t("2027-10-31T04:00:00Z"),
        )
        .unwrap();
        let mut s = t("2027-10-30T22:00:00Z");
        while s < t("2027-10-31T03:40:00Z") {
            let want = all.iter().find(|x| **x > s).copied();
            assert_eq!(next_after(&c, berlin, s).unwrap(), want, "from {s}");
            s += Span::minutes(5);
        }
    }

    #[test]
    fn all_occurrences_not_the_last_thousand() {
        let all = occurrences(
            &cron("*/5 * * * *"),
            tz("Asia/Shanghai"),
            t("2027-01-01T00:00:00Z"),
            t("2027-01-05T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(all.len(), 4 * 24 * 12);
        assert_eq!(all.first(), Some(&t("2027-01-01T00:05:00Z")));
    }

    #[test]
    fn latest_in_a_long_downtime() {
        let c = cron("*/5 * * * *");
        let sh = tz("Asia/Shanghai");
        assert_eq!(
            latest_in(&c, sh, t("2026-01-01T00:00:00Z"), t("2027-03-01T00:03:00Z")).unwrap(),
            Some(t("2027-03-01T00:00:00Z"))
        );
        // A yearly job: looks back further than a day.
        assert_eq!(
            latest_in(
                &cron("0 9 29 2 *"),
                sh,
                t("2020-01-01T00:00:00Z"),
                t("2029-01-01T00:00:00Z")
            )
            .unwrap(),
            Some(t("2028-02-29T01:00:00Z"))
        );
        assert_eq!(
            latest_in(&c, sh, t("2027-03-01T00:00:00Z"), t("2027-03-01T00:03:00Z")).unwrap(),
            None
        );
    }

    /// Occurrences are whole seconds whatever the fraction of the time searched from: the
    /// daemon's clock has one, croner kept it, and a fire stored at 10:00:00.700 hid the next
    /// day's 10:00 from a tick at 10:00:00.400 (it came a minute late).
    #[test]
    fn occurrences_are_whole_seconds_whatever_the_fraction_searched_from() {
        let c = cron("0 10 * * *");
        let utc = tz("UTC");
        assert_eq!(
            next_after(&c, utc, t("2027-01-01T09:00:00.250Z")).unwrap(),
            Some(t("2027-01-01T10:00:00Z"))
        );
        assert_eq!(
            latest_in(
                &c,
                utc,
                t("2027-01-01T10:00:00.700Z"),
                t("2027-01-02T10:00:00.400Z")
            )
            .unwrap(),
            Some(t("2027-01-02T10:00:00Z"))
        );
        // The occurrence the fraction is past is not found again.
        assert_eq!(
            next_after(&c, utc, t("2027-01-01T10:00:00.250Z")).unwrap(),
            Some(t("2027-01-02T10:00:00Z"))
        );
    }

    #[test]
    fn a_pattern_that_never_matches_has_no_occurrences() {
        assert_eq!(
            next_after(&cron("0 0 30 2 *"), tz("UTC"), t("2027-01-01T00:00:00Z")).unwrap(),
            None
        );
    }
}
