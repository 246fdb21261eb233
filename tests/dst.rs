//! Time checked against implementations that share no code with ours: cron occurrences
//! against croniter, anniversary instants against Python's zoneinfo, over a year in zones
//! whose clocks change at 02:00, at midnight, by 30 minutes, at +12:45, and not at all.
//! The fixtures come from `tests/dst/generate.py` (how to rerun it is at its top; `.ci/run`
//! checks they are current).

mod common;

use aftercare::cron_tz::{self, wildcard_hours};
use chrono::{DateTime, Datelike, Duration as Span, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use std::collections::BTreeSet;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/dst/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn instant(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).expect("an instant")
}

/// The generator's encoding: first epoch second, then `[[deltas...], repeat]` blocks.
fn decode(v: &Value) -> Vec<DateTime<Utc>> {
    let items = v.as_array().expect("an encoded list");
    let Some(first) = items.first() else {
        return Vec::new();
    };
    let mut t = first.as_i64().expect("epoch seconds");
    let mut out = vec![instant(t)];
    for block in &items[1..] {
        let deltas = block[0].as_array().expect("deltas");
        for _ in 0..block[1].as_u64().expect("a count") {
            for d in deltas {
                t += d.as_i64().expect("a delta");
                out.push(instant(t));
            }
        }
    }
    out
}

fn cron(expr: &str) -> croner::Cron {
    // As jobs/compile.rs parses `trigger.cron`.
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
        .unwrap_or_else(|e| panic!("`{expr}`: {e}"))
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// Why croniter has an instant we do not: the second pass of a repeated hour for a job
/// with fixed hours (we fire those once, in the first pass).
fn second_pass_of_fixed_hours(
    c: &croner::Cron,
    tz: Tz,
    t: DateTime<Utc>,
    ours: &BTreeSet<DateTime<Utc>>,
) -> bool {
    let wall = t.with_timezone(&tz).naive_local();
    match tz.from_local_datetime(&wall) {
        LocalResult::Ambiguous(first, second) => {
            !wildcard_hours(c)
                && second.with_timezone(&Utc) == t
                && ours.contains(&first.with_timezone(&Utc))
        }
        _ => false,
    }
}

/// Why croniter has an instant we do not: it fires a job whose times a gap swallowed at
/// the gap's end even when the hour field is `*` (we skip such times: the job runs again
/// within the hour).
fn gap_end_of_wildcard_hours(c: &croner::Cron, tz: Tz, t: DateTime<Utc>) -> bool {
    let before = (t - Span::seconds(1)).with_timezone(&tz).naive_local() + Span::seconds(1);
    let after = t.with_timezone(&tz).naive_local();
    // `t` is where the clocks jumped forward, and the pattern matches a minute they skipped.
    wildcard_hours(c)
        && after > before
        && (0..(after - before).num_minutes()).any(|m| {
            c.is_time_matching(&(before + Span::minutes(m)).and_utc())
                .unwrap_or(false)
        })
}

#[test]
fn cron_occurrences_agree_with_croniter_but_for_the_documented_dst_rules() {
    let f = fixture("cron.json");
    let window = &f["window"];
    let (from, until) = (
        instant(window[0].as_i64().unwrap()),
        instant(window[1].as_i64().unwrap()),
    );
    let cases = f["cases"].as_array().unwrap();
    let (mut compared, mut same_as_croniter) = (0, 0);
    let (mut fall_back_rule, mut gap_rule) = (Vec::new(), Vec::new());
    let mut zones = BTreeSet::new();
    let mut exprs = BTreeSet::new();
    for case in cases {
        let zone = case["zone"].as_str().unwrap();
        let expr = case["expr"].as_str().unwrap();
        let tz: Tz = zone.parse().unwrap();
        let c = cron(expr);
        let ours = cron_tz::occurrences(&c, tz, from, until).unwrap();
        let expected = decode(&case["expected"]);
        if let Some(i) =
            (0..ours.len().max(expected.len())).find(|&i| ours.get(i) != expected.get(i))
        {
            panic!(
                "`{expr}` in {zone}: occurrence #{i} is {:?} ({}), the reference says {:?} ({}); {} vs {} occurrences",
                ours.get(i),
                ours.get(i).map(|t| local(*t, tz)).unwrap_or_default(),
                expected.get(i),
                expected.get(i).map(|t| local(*t, tz)).unwrap_or_default(),
                ours.len(),
                expected.len()
            );
        }
        compared += ours.len();
        zones.insert(zone);
        exprs.insert(expr);
        let croniter = match &case["croniter"] {
            Value::String(s) if s == "same" => expected.clone(),
            v => decode(v),
        };
        let ours: BTreeSet<_> = ours.into_iter().collect();
        let theirs: BTreeSet<_> = croniter.into_iter().collect();
        same_as_croniter += ours.intersection(&theirs).count();
        for t in theirs.difference(&ours) {
            if second_pass_of_fixed_hours(&c, tz, *t, &ours) {
                fall_back_rule.push(format!("{zone} `{expr}` {}", local(*t, tz)));
            } else if gap_end_of_wildcard_hours(&c, tz, *t) {
                gap_rule.push(format!("{zone} `{expr}` {}", local(*t, tz)));
            } else {
                panic!(
                    "`{expr}` in {zone}: croniter fires at {t} ({}), we do not, and no documented rule says so",
                    local(*t, tz)
                );
            }
        }
        if let Some(t) = ours.difference(&theirs).next() {
            panic!(
                "`{expr}` in {zone}: we fire at {t} ({}), croniter does not",
                local(*t, tz)
            );
        }
    }
    eprintln!(
        "{} expressions in {} zones: {compared} occurrences equal to the reference, {same_as_croniter} also to croniter; croniter's other {} are {} second passes of fixed hours and {} gap ends of wildcard hours",
        exprs.len(),
        zones.len(),
        fall_back_rule.len() + gap_rule.len(),
        fall_back_rule.len(),
        gap_rule.len()
    );
    eprintln!("fall-back rule: {fall_back_rule:#?}\ngap rule: {gap_rule:#?}");
    assert!(exprs.len() >= 20 && zones.len() >= 8);
    // The fixture does reach both rules (a test of the rules, not only of quiet days).
    assert!(
        fall_back_rule.len() >= zones.len() - 2,
        "{fall_back_rule:?}"
    );
    assert!(!gap_rule.is_empty());
}

/// The instants in `window` where `tz`'s UTC offset changes (found hour by hour, then to
/// the second).
fn transitions(tz: Tz, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    use chrono::Offset;
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    let mut out = Vec::new();
    let mut t = from;
    while t < until {
        let next = t + Span::hours(1);
        if offset(t) != offset(next) {
            let (mut lo, mut hi) = (t, next);
            while hi - lo > Span::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == offset(t) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(hi);
        }
        t = next;
    }
    out
}

#[test]
fn from_any_instant_around_a_clock_change_the_next_occurrence_is_the_references_next() {
    let f = fixture("cron.json");
    let from = instant(f["window"][0].as_i64().unwrap());
    let until = instant(f["window"][1].as_i64().unwrap());
    let mut asked = 0;
    for case in f["cases"].as_array().unwrap() {
        let zone = case["zone"].as_str().unwrap();
        let expr = case["expr"].as_str().unwrap();
        let tz: Tz = zone.parse().unwrap();
        let c = cron(expr);
        let expected = decode(&case["expected"]);
        for change in transitions(tz, from, until) {
            // Every 10 minutes from a day before the change to a day after, and the
            // instants of the occurrences themselves: the answer is strictly later, and the
            // reference's first occurrence after it.
            let mut starts: Vec<_> = (-144..=144)
                .map(|i| change + Span::minutes(10 * i))
                .collect();
            starts.extend(
                expected
                    .iter()
                    .filter(|t| (**t - change).num_hours().abs() <= 26),
            );
            for s in starts {
                let want = expected.iter().find(|t| **t > s).copied();
                let got = cron_tz::next_after(&c, tz, s).unwrap();
                if want.is_some() {
                    assert_eq!(
                        got,
                        want,
                        "`{expr}` in {zone}, next after {s} ({})",
                        local(s, tz)
                    );
                }
                assert!(got.is_none_or(|g| g > s));
                asked += 1;
            }
        }
    }
    eprintln!(
        "{asked} starts around clock changes: each next occurrence strictly later and the reference's"
    );
    assert!(asked > 100_000);
}

#[test]
fn anniversaries_agree_with_zoneinfo_on_every_2027_2028_dst_day() {
    let f = fixture("anniversaries.json");
    let at: Vec<chrono::NaiveTime> = f["at"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| chrono::NaiveTime::parse_from_str(v.as_str().unwrap(), "%H:%M").unwrap())
        .collect();
    let mut compared = 0;
    for case in f["cases"].as_array().unwrap() {
        let zone = case["zone"].as_str().unwrap();
        let tz: Tz = zone.parse().unwrap();
        let birth = NaiveDate::parse_from_str(case["birth"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        let leap = match case["leap_day"].as_str().unwrap() {
            "feb28" => aftercare::policy::LeapDay::Feb28,
            _ => aftercare::policy::LeapDay::Mar1,
        };
        for (i, time) in at.iter().enumerate() {
            for (y, year) in [2027, 2028].into_iter().enumerate() {
                let want = instant(case["fire"][i][y].as_i64().unwrap());
                // As the scheduler does: every local day of the year is a candidate.
                let days = NaiveDate::from_ymd_opt(year, 1, 1)
                    .unwrap()
                    .iter_days()
                    .take_while(|d| d.year() == year);
                let got: Vec<_> = days
                    .filter_map(|d| aftercare::schedule::fire_time(birth, d, *time, tz, leap))
                    .collect();
                assert_eq!(
                    got,
                    [want],
                    "born {birth} in {zone}, at {time}, {year} ({leap:?}): zoneinfo says {}",
                    local(want, tz)
                );
                compared += 1;
            }
        }
    }
    eprintln!("{compared} anniversary instants equal to zoneinfo's");
    assert!(compared >= 2000);
}

// The binary: the forecast and `run --once` stepped through the night use the same rules.

use common::{Workspace, event};
use serde_json::json;

/// A workspace with only `jobs` (YAML files by name) and contacts in team `ops`.
fn workspace(jobs: &[(&str, &str)], contacts: usize) -> Workspace {
    let ws = Workspace::new(None);
    ws.keep_jobs(&[]);
    for (name, yaml) in jobs {
        ws.write(&format!("jobs/{name}.yaml"), yaml);
    }
    let lines: Vec<String> = (0..contacts)
        .map(|i| {
            event(
                &format!("u-{i}"),
                "contact.updated",
                &format!("c-{i}"),
                &format!("c{i}@example.com"),
                "2027-01-01T00:00:00Z",
                json!({"team": "ops"}),
                json!({}),
            )
        })
        .collect();
    if !lines.is_empty() {
        ws.import(&lines).ok();
    }
    ws
}

fn cron_job(id: &str, expr: &str, tz: &str) -> String {
    format!(
        "id: {id}\ntrigger: {{cron: \"{expr}\", timezone: {tz}}}\naudience: {{where: {{contact.attributes.team: ops}}}}\ntemplate: nps_survey\nsurvey: nps\nchannels: [email]\n"
    )
}

/// `forecast --json`'s sends as (job, contact, instant), in order.
fn forecast(ws: &Workspace, now: &str, until: &str) -> Vec<(String, String, DateTime<Utc>)> {
    let (f, _) = ws.forecast(now, until, &[]);
    f["send"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["job"].as_str().unwrap().to_string(),
                m["contact"].as_str().unwrap().to_string(),
                m["at"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// The reference's occurrences of `expr` in `zone` in (`from`, `until`].
fn reference(expr: &str, zone: &str, from: &str, until: &str) -> Vec<DateTime<Utc>> {
    let (from, until): (DateTime<Utc>, DateTime<Utc>) =
        (from.parse().unwrap(), until.parse().unwrap());
    let f = fixture("cron.json");
    let case = f["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["zone"] == zone && c["expr"] == expr)
        .unwrap_or_else(|| panic!("`{expr}` in {zone} is not in tests/dst/cron.json"));
    decode(&case["expected"])
        .into_iter()
        .filter(|t| *t > from && *t <= until)
        .collect()
}

fn at_times(sends: &[(String, String, DateTime<Utc>)], contact: &str) -> Vec<DateTime<Utc>> {
    sends
        .iter()
        .filter(|s| s.1 == contact)
        .map(|s| s.2)
        .collect()
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn a_time_just_before_the_gap_is_sent_once_by_the_forecast_and_by_the_daemon() {
    let ws = workspace(
        &[("ny", &cron_job("ny-0130", "30 1 * * *", "America/New_York"))],
        2,
    );
    // The case: New York skips 02:00-03:00 on 2027-03-14; 01:30 EST is 06:30Z.
    let sends = forecast(&ws, "2027-03-10T00:00:00Z", "2027-04-06T00:00:00Z");
    let want = reference(
        "30 1 * * *",
        "America/New_York",
        "2027-03-10T00:00:00Z",
        "2027-04-06T00:00:00Z",
    );
    assert_eq!(want.len(), 27); // 01:30 local, Mar 10 to Apr 5
    assert!(
        want.contains(&t("2027-03-14T06:30:00Z")) && !want.contains(&t("2027-03-14T07:00:00Z"))
    );
    assert_eq!(at_times(&sends, "c-0"), want);
    assert_eq!(at_times(&sends, "c-1"), want);
    // The daemon, woken every 10 minutes through that night.
    let mut now = t("2027-03-14T04:00:00Z");
    while now <= t("2027-03-14T09:00:00Z") {
        ws.once(&now.to_rfc3339());
        now += Span::minutes(10);
    }
    let sent: Vec<String> = ws
        .logs_json(&["--status", "sent"])
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["attempt_log"][0]["at"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, ["2027-03-14T06:30:00Z", "2027-03-14T06:30:00Z"]);
}

#[test]
fn the_forecast_returns_every_occurrence_of_a_frequent_job() {
    let ws = workspace(
        &[("five", &cron_job("every-5", "*/5 * * * *", "Asia/Shanghai"))],
        1,
    );
    let sends = forecast(&ws, "2027-05-01T00:00:00Z", "2027-05-05T00:00:00Z");
    // [now, now + 4 days]: the occurrence at --now itself is due too (`run --once --now`
    // would send it), then 4 × 288 five-minute marks.
    assert_eq!(sends.len(), 4 * 288 + 1);
    let times = at_times(&sends, "c-0");
    assert_eq!(times.first(), Some(&t("2027-05-01T00:00:00Z")));
    assert_eq!(times.last(), Some(&t("2027-05-05T00:00:00Z")));
    assert!(times.windows(2).all(|w| w[1] - w[0] == Span::minutes(5)));
}

#[test]
fn the_forecast_moves_forward_through_a_repeated_hour() {
    // The stall: 02:30 Berlin (repeated on 2027-10-31) beside 01:00 UTC, whose
    // occurrence falls in the repeated hour's second pass.
    let ws = workspace(
        &[
            (
                "berlin",
                &cron_job("berlin-0230", "30 2 * * *", "Europe/Berlin"),
            ),
            ("utc", &cron_job("utc-0100", "0 1 * * *", "UTC")),
        ],
        1,
    );
    let sends = forecast(&ws, "2027-10-30T00:00:00Z", "2027-11-03T00:00:00Z");
    let berlin: Vec<_> = sends
        .iter()
        .filter(|s| s.0 == "berlin-0230")
        .map(|s| s.2)
        .collect();
    let utc: Vec<_> = sends
        .iter()
        .filter(|s| s.0 == "utc-0100")
        .map(|s| s.2)
        .collect();
    assert_eq!(
        berlin,
        reference(
            "30 2 * * *",
            "Europe/Berlin",
            "2027-10-30T00:00:00Z",
            "2027-11-03T00:00:00Z"
        )
    );
    assert_eq!(
        berlin,
        [
            t("2027-10-30T00:30:00Z"),
            t("2027-10-31T00:30:00Z"),
            t("2027-11-01T01:30:00Z"),
            t("2027-11-02T01:30:00Z")
        ]
    );
    assert_eq!(utc.len(), 4);
    assert_eq!(sends.len(), 8);
}

#[test]
fn on_a_fall_back_night_wildcard_hours_fire_in_both_passes_fixed_hours_once() {
    let ws = workspace(
        &[
            (
                "hourly",
                &cron_job("ny-hourly", "0 * * * *", "America/New_York"),
            ),
            (
                "fixed",
                &cron_job("ny-0130", "30 1 * * *", "America/New_York"),
            ),
            (
                "berlin",
                &cron_job("berlin-half", "*/30 * * * *", "Europe/Berlin"),
            ),
        ],
        1,
    );
    // New York repeats 01:00-02:00 on 2027-11-07 (05:00-06:00Z EDT, 06:00-07:00Z EST);
    // Berlin repeated 02:00-03:00 on 2027-10-31 (00:00-01:00Z CEST, 01:00-02:00Z CET).
    let (from, until) = ("2027-11-07T03:30:00Z", "2027-11-07T07:30:00Z");
    let sends = forecast(&ws, from, until);
    let of = |job: &str| -> Vec<DateTime<Utc>> {
        sends.iter().filter(|s| s.0 == job).map(|s| s.2).collect()
    };
    assert_eq!(
        of("ny-hourly"),
        [
            t("2027-11-07T04:00:00Z"),
            t("2027-11-07T05:00:00Z"),
            t("2027-11-07T06:00:00Z"),
            t("2027-11-07T07:00:00Z")
        ]
    );
    assert_eq!(of("ny-0130"), [t("2027-11-07T05:30:00Z")]);
    let berlin = forecast(&ws, "2027-10-30T23:40:00Z", "2027-10-31T02:00:00Z");
    let berlin: Vec<_> = berlin
        .iter()
        .filter(|s| s.0 == "berlin-half")
        .map(|s| s.2)
        .collect();
    assert_eq!(
        berlin,
        [
            t("2027-10-31T00:00:00Z"),
            t("2027-10-31T00:30:00Z"),
            t("2027-10-31T01:00:00Z"),
            t("2027-10-31T01:30:00Z"),
            t("2027-10-31T02:00:00Z")
        ]
    );
    // The daemon, woken every 10 minutes through New York's night, sends the same.
    let mut now = t(from);
    while now <= t(until) {
        ws.once(&now.to_rfc3339());
        now += Span::minutes(10);
    }
    let mut sent: Vec<(String, String)> = ws
        .logs_json(&["--status", "sent"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["job_id"] != "berlin-half")
        .map(|m| {
            (
                m["job_id"].as_str().unwrap().to_string(),
                m["attempt_log"][0]["at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    sent.sort();
    let mut want: Vec<(String, String)> = sends
        .iter()
        .filter(|s| s.0 != "berlin-half" && s.2 > t(from))
        .map(|s| {
            (
                s.0.clone(),
                s.2.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        })
        .collect();
    want.sort();
    assert_eq!(sent, want);
}

#[test]
fn a_year_of_forecast_for_the_shipped_jobs_and_business_hours_returns_every_send() {
    let ws = Workspace::new(None);
    ws.write(
        "jobs/business-hours.yaml",
        &cron_job("business-hours", "*/15 9-17 * * MON-FRI", "Asia/Shanghai"),
    );
    let (now, until) = ("2027-03-01T00:00:00Z", "2028-03-01T00:00:00Z");
    let ops = 3;
    let mut lines: Vec<String> = (0..ops)
        .map(|i| {
            event(
                &format!("u-{i}"),
                "contact.updated",
                &format!("ops-{i}"),
                &format!("ops{i}@example.com"),
                "2027-02-01T00:00:00Z",
                json!({"team": "ops"}),
                json!({}),
            )
        })
        .collect();
    // Birthdays (one on New York's spring-forward day, one on Feb 29), two rentals for the
    // survey, two deliveries for the review request and its reminder.
    lines.push(common::birthday(
        "b-1",
        "c-ny",
        "Emily",
        "emily@example.com",
        "America/New_York",
        "en",
        "1985-03-14",
    ));
    lines.push(common::birthday(
        "b-2",
        "c-leap",
        "Li",
        "li@example.com",
        "Asia/Shanghai",
        "zh-CN",
        "1992-02-29",
    ));
    for (i, at) in ["2027-03-02T08:00:00Z", "2027-06-10T08:00:00Z"]
        .iter()
        .enumerate()
    {
        lines.push(event(
            &format!("r-{i}"),
            "rental.completed",
            &format!("r-{i}"),
            &format!("r{i}@example.com"),
            at,
            json!({}),
            json!({}),
        ));
        lines.push(common::delivered(
            &format!("d-{i}"),
            &format!("d-{i}"),
            &format!("d{i}@example.com"),
            &format!("SO-{i}"),
            at,
        ));
    }
    ws.import(&lines).ok();
    let sends = forecast(&ws, now, until);
    let count = |job: &str| sends.iter().filter(|s| s.0 == job).count();
    let slots = reference("*/15 9-17 * * MON-FRI", "Asia/Shanghai", now, until);
    assert_eq!(
        slots.len(),
        36 * 262,
        "262 weekdays from 2027-03-01 to 2028-02-29, 36 quarter hours each"
    );
    for i in 0..ops {
        assert_eq!(at_times(&sends, &format!("ops-{i}")), slots);
    }
    assert_eq!(count("business-hours"), ops * slots.len());
    // Greetings at 09:00 local: 2027-03-14 EDT (the spring-forward day) and Feb 29 2028;
    // 2027's (Feb 28, 01:00Z) was 23 hours before --now, within `anniversary_grace`, so a
    // daemon started at --now sends it at once.
    let greetings: Vec<_> = sends
        .iter()
        .filter(|s| s.0 == "birthday-greeting")
        .map(|s| (s.1.as_str(), s.2))
        .collect();
    assert_eq!(
        greetings,
        [
            ("c-leap", t(now)),
            ("c-ny", t("2027-03-14T13:00:00Z")),
            ("c-leap", t("2028-02-29T01:00:00Z"))
        ]
    );
    assert_eq!(
        count("nps-survey"),
        2,
        "one survey per renter: the next Monday 10:00, then excluded for 90 days"
    );
    assert_eq!(
        count("review-request"),
        4,
        "a request and a reminder per delivery"
    );
    assert_eq!(sends.len(), ops * slots.len() + 3 + 2 + 4);
}

#[test]
fn birthdays_on_every_2027_2028_dst_day_are_forecast_when_zoneinfo_says() {
    let f = fixture("anniversaries.json");
    let at: Vec<&str> = f["at"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ws = Workspace::new(None);
    ws.keep_jobs(&[]);
    for time in &at {
        let id = format!("greet-{}", time.replace(':', ""));
        ws.write(
            &format!("jobs/{id}.yaml"),
            &format!("id: {id}\ntrigger: {{anniversary: contact.birthday, at: \"{time}\"}}\ntemplate: birthday_greeting\nchannels: [email]\n"),
        );
    }
    // One contact per zone and birth date (policy.leap_day is feb28, the default).
    let mut want = BTreeSet::new();
    let mut lines = Vec::new();
    for (n, case) in f["cases"].as_array().unwrap().iter().enumerate() {
        if case["leap_day"] != "feb28" {
            continue;
        }
        let contact = format!("c-{n}");
        lines.push(common::birthday(
            &format!("u-{n}"),
            &contact,
            "Kim",
            &format!("c{n}@example.com"),
            case["zone"].as_str().unwrap(),
            "en",
            case["birth"].as_str().unwrap(),
        ));
        for (i, time) in at.iter().enumerate() {
            for y in 0..2 {
                let fire = instant(case["fire"][i][y].as_i64().unwrap());
                want.insert((
                    format!("greet-{}", time.replace(':', "")),
                    contact.clone(),
                    fire,
                ));
            }
        }
    }
    ws.import(&lines).ok();
    let sends: BTreeSet<_> = forecast(&ws, "2027-01-01T00:00:00Z", "2029-01-01T00:00:00Z")
        .into_iter()
        .collect();
    let missing: Vec<_> = want.difference(&sends).take(5).collect();
    let extra: Vec<_> = sends.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not forecast: {missing:?}\nnot by zoneinfo: {extra:?}"
    );
    eprintln!("{} greetings forecast at zoneinfo's instants", sends.len());
    assert!(sends.len() >= 1500);
}
