//! The forecast works out cron jobs that nothing else reads in memory, a message at a time;
//! `--replay-all` replays them on the store copy like every other job. The two must agree on
//! every send and every message not sent, whatever the gate says: quiet hours, expiry,
//! suppressions (also one that ends within the span), a stop event, consent, no address,
//! a holdout, a missed occurrence caught up or skipped, beside a job that stays replayed.

mod common;

use chrono::{DateTime, Duration, SecondsFormat, Timelike, Utc};
use common::{Workspace, event};
use serde_json::{Value, json};

fn job(id: &str, cron: &str, extra: &str) -> String {
    format!(
        "id: {id}\ntrigger: {{cron: \"{cron}\", timezone: Asia/Shanghai}}\naudience: {{where: {{contact.attributes.team: ops}}}}\ntemplate: nps_survey\nsurvey: nps\nchannels: [email]\n{extra}"
    )
}

/// A DSN reporting a soft bounce (4.2.2, mailbox full) for `to`.
fn soft_dsn(n: usize, to: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@example.com\r\nSubject: Delayed Mail\r\n\
Message-ID: <soft-{n}@mx.example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
--B\r\nContent-Type: text/plain\r\n\r\nmailbox full\r\n\
--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
Final-Recipient: rfc822; {to}\r\nAction: failed\r\nStatus: 4.2.2\r\nDiagnostic-Code: smtp; 452 4.2.2 mailbox full\r\n\r\n\
--B--\r\n"
    )
}

/// `forecast --json` from `now` to `until`: sends and messages not sent, each as a sorted
/// list of its fields (message ids and the order of equal times are not part of the answer).
fn forecast(
    ws: &Workspace,
    now: &str,
    until: &str,
    replay_all: bool,
) -> (Vec<String>, Vec<String>, String) {
    let extra: &[&str] = if replay_all { &["--replay-all"] } else { &[] };
    let (f, log) = ws.forecast(now, until, extra);
    let list = |key: &str| {
        let mut v: Vec<String> = f[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{} step {} {} at {} via {} {} ({}) order {} callback {}",
                    m["job"].as_str().unwrap(),
                    m["step"],
                    m["contact"].as_str().unwrap(),
                    m["at"],
                    m["channel"],
                    m["address"],
                    m["reason"],
                    m["order"],
                    m["callback_task"]
                )
            })
            .collect();
        v.sort();
        v
    };
    (list("send"), list("not_sent"), log)
}

/// The forecast from `now` to `until` worked out in memory and replayed whole, which must
/// agree: the sends, the messages not sent, and the log's line naming the jobs worked out in
/// memory.
#[track_caller]
fn agreed(ws: &Workspace, now: &str, until: &str) -> (Vec<String>, Vec<String>, String) {
    let (sent, not_sent, log) = forecast(ws, now, until, false);
    let (sent_replayed, not_sent_replayed, _) = forecast(ws, now, until, true);
    let said = log
        .lines()
        .find(|l| l.contains("worked out in memory"))
        .unwrap_or_else(|| panic!("no word of the in-memory part: {log}"))
        .to_string();
    assert_eq!(sent, sent_replayed);
    assert_eq!(not_sent, not_sent_replayed);
    (sent, not_sent, said)
}

#[test]
fn cron_jobs_worked_out_in_memory_agree_with_the_full_replay() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["nps-survey"]); // replayed: its audience excludes its own recent sends
    let config = std::fs::read_to_string(ws.path("aftercare.yaml")).unwrap();
    ws.write(
        "aftercare.yaml",
        &config.replace("email:\n", "email:\n  bounces: {soft_suppress_for: 5d}\n"),
    );
    ws.write(
        "jobs/daily.yaml",
        &job("daily", "0 10 * * *", "stop_when: account.closed\n"),
    );
    // 22:30 is in this job's quiet hours: each goes at 09:00 the next morning.
    ws.write(
        "jobs/late.yaml",
        &job(
            "late",
            "30 22 * * *",
            "send_window: {start: \"09:00\", end: \"21:00\"}\n",
        ),
    );
    // The same, but a message expires 6 hours after it is due: cancelled at 09:00.
    ws.write(
        "jobs/late-expiring.yaml",
        &job(
            "late-expiring",
            "30 22 * * MON",
            "send_window: {start: \"09:00\", end: \"21:00\"}\nexpire_after: 6h\n",
        ),
    );
    ws.write(
        "jobs/skips.yaml",
        &job("skips", "0 8 * * *", "class: service\n").replace(
            "timezone: Asia/Shanghai}",
            "timezone: Asia/Shanghai, missed: skip}",
        ),
    );
    ws.write(
        "jobs/halves.yaml",
        &job("halves", "0 12 * * *", "holdout: 50%\n"),
    );

    // Soft bounces are counted at the wall clock's time, and the soft suppression they make
    // ends some days later: the forecast spans that end.
    let now = Utc::now();
    let at = |d: Duration| (now + d).to_rfc3339_opts(SecondsFormat::Secs, true);
    let ops = json!({"team": "ops"});
    let mut lines: Vec<String> = (0..6)
        .map(|i| {
            event(
                &format!("u-{i}"),
                "contact.updated",
                &format!("c-{i}"),
                &format!("c{i}@example.com"),
                &at(-Duration::days(30)),
                ops.clone(),
                json!({}),
            )
        })
        .collect();
    // c-6 has a phone and no email; c-7 said no to email.
    lines.push(
        json!({"id": "u-6", "type": "contact.updated", "occurred_at": at(-Duration::days(30)),
               "contact": {"id": "c-6", "phone": "+8613800138006", "attributes": ops}})
        .to_string(),
    );
    lines.push(
        json!({"id": "u-7", "type": "contact.updated", "occurred_at": at(-Duration::days(30)),
               "contact": {"id": "c-7", "email": "c7@example.com", "attributes": ops,
                           "consent": {"email": false}}})
        .to_string(),
    );
    // c-3 closed the account (stops `daily`); c-0 rented (the replayed survey).
    lines.push(event(
        "x-3",
        "account.closed",
        "c-3",
        "c3@example.com",
        &at(-Duration::days(2)),
        ops.clone(),
        json!({}),
    ));
    lines.push(event(
        "r-0",
        "rental.completed",
        "c-0",
        "c0@example.com",
        &at(-Duration::days(1)),
        ops.clone(),
        json!({}),
    ));
    ws.import(&lines).ok();
    ws.run(&[
        "suppress",
        "add",
        "email",
        "c1@example.com",
        "--reason",
        "asked us to stop",
    ])
    .ok();
    for n in 0..3 {
        ws.write("soft.eml", &soft_dsn(n, "c2@example.com"));
        ws.run(&["bounces", "ingest", "soft.eml"]).ok();
    }
    let suppressed = ws
        .run(&["suppress", "list", "--format", "json"])
        .ok()
        .stdout;
    assert!(
        suppressed.contains("c2@example.com") && suppressed.contains("expires"),
        "{suppressed}"
    );

    // The daemon ran three days ago; since then every occurrence was missed.
    ws.once(&at(-Duration::days(3)));
    let (from, until) = (at(Duration::zero()), at(Duration::days(21)));
    let (sent, not_sent, said) = agreed(&ws, &from, &until);
    assert!(
        said.contains("daily") && !said.contains("nps-survey"),
        "{said}"
    );

    // And the answer is the one wanted, not only the same twice.
    let count = |v: &[String], what: &str| v.iter().filter(|l| l.contains(what)).count();
    assert!(count(&sent, "daily step 0 c-0 ") >= 21, "{sent:#?}");
    assert_eq!(count(&sent, "daily step 0 c-3 "), 0, "stopped: {sent:#?}");
    assert!(count(&not_sent, "daily step 0 c-3 ") >= 21);
    assert!(count(&not_sent, "asked us to stop") >= 21 * 3);
    assert!(count(&not_sent, "no email") >= 21);
    assert!(count(&not_sent, "consent.email is false") >= 21);
    // The soft suppression ends within the span: c-2 is skipped, then sent to.
    assert!(count(&not_sent, "daily step 0 c-2 ") >= 1, "{not_sent:#?}");
    assert!(count(&sent, "daily step 0 c-2 ") >= 1, "{sent:#?}");
    assert!(count(&sent, "late step 0 c-0 ") >= 20);
    // Each goes at 09:00 in Shanghai (01:00Z), but the occurrence missed while the daemon
    // was down is owed at once: when the forecast starts inside the window (01:00–13:00Z),
    // it goes at the start. The test runs at the wall clock's time of day, so both happen.
    let late: Vec<&String> = sent
        .iter()
        .filter(|l| l.starts_with("late step 0 c-0 "))
        .collect();
    let at_start = format!("at {from:?} ");
    let caught_up = late.iter().filter(|l| l.contains(&at_start)).count();
    assert!(
        late.iter()
            .all(|l| l.contains("T01:00:00Z") || l.contains(&at_start)),
        "09:00 in Shanghai: {late:#?}"
    );
    if (2..12).contains(&now.hour()) {
        assert_eq!(
            caught_up, 1,
            "the missed occurrence, inside the window: {late:#?}"
        );
    } else if !(1..13).contains(&now.hour()) {
        assert_eq!(
            caught_up, 0,
            "the missed occurrence, outside the window: {late:#?}"
        );
    }
    assert_eq!(count(&sent, "late-expiring "), 0);
    assert!(count(&not_sent, "late-expiring step 0 c-0 ") >= 3);
    assert!(count(&not_sent, "expired") >= 3);
    assert!(count(&sent, "halves step 0 ") > 0);
    assert_eq!(count(&sent, "nps-survey step 0 c-0 "), 1);
}

#[test]
fn a_missed_occurrence_is_caught_up_once_or_skipped_as_the_job_says() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&[]);
    ws.write("jobs/daily.yaml", &job("daily", "0 10 * * *", ""));
    ws.write(
        "jobs/skips.yaml",
        &job("skips", "0 10 * * *", "").replace(
            "timezone: Asia/Shanghai}",
            "timezone: Asia/Shanghai, missed: skip}",
        ),
    );
    ws.import(&[event(
        "u-0",
        "contact.updated",
        "c-0",
        "c0@example.com",
        "2027-01-01T00:00:00Z",
        json!({"team": "ops"}),
        json!({}),
    )])
    .ok();
    // Last run Monday 2027-03-01 12:00 Shanghai; the forecast starts Thursday 06:00, so the
    // 10:00 occurrences of Tuesday and Wednesday were missed.
    ws.once("2027-03-01T04:00:00Z");
    let (from, until) = ("2027-03-03T22:00:00Z", "2027-03-05T00:00:00Z");
    for replay_all in [false, true] {
        let (sent, _, _) = forecast(&ws, from, until, replay_all);
        let at = |job: &str| -> Vec<DateTime<Utc>> {
            sent.iter()
                .filter(|l| l.starts_with(&format!("{job} step 0 c-0 ")))
                .map(|l| l.split(" at \"").nth(1).unwrap()[..20].parse().unwrap())
                .collect()
        };
        // Caught up once, at --now, then Thursday's; skipped: only Thursday's.
        assert_eq!(
            at("daily"),
            [
                "2027-03-03T22:00:00Z".parse::<DateTime<Utc>>().unwrap(),
                "2027-03-04T02:00:00Z".parse().unwrap()
            ],
            "replay_all: {replay_all}: {sent:#?}"
        );
        assert_eq!(
            at("skips"),
            ["2027-03-04T02:00:00Z".parse::<DateTime<Utc>>().unwrap()]
        );
    }
}

#[test]
fn event_jobs_pending_in_the_store_are_decided_in_memory_as_the_replay_decides_them() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request", "complaint-callback"]);
    ws.write_config(
        None,
        "policy:\n  consent: opt_out\n  caps: []\n  send_window: {start: \"09:00\", end: \"21:00\"}\n",
    );
    let mut lines: Vec<String> = (1..=6)
        .map(|i| {
            common::delivered(
                &format!("d-{i}"),
                &format!("c-{i}"),
                &format!("c{i}@example.com"),
                &format!("SO-{i}"),
                // c-6's is due at 23:10 Shanghai: quiet hours move it to 09:00.
                if i == 6 {
                    "2027-03-01T23:10:00+08:00"
                } else {
                    "2027-03-01T10:00:00+08:00"
                },
            )
        })
        .collect();
    // c-2 and c-3 reviewed (c-3's review is dated after the request is due, but it is in the
    // store already); c-1 ordered twice.
    lines.push(common::reviewed(
        "v-2",
        "c-2",
        "SO-2",
        "2027-03-03T08:00:00+08:00",
    ));
    lines.push(common::reviewed(
        "v-3",
        "c-3",
        "SO-3",
        "2027-03-06T08:00:00+08:00",
    ));
    lines.push(common::delivered(
        "d-7",
        "c-1",
        "c1@example.com",
        "SO-7",
        "2027-03-02T10:00:00+08:00",
    ));
    // c-9's request falls due after the span: neither way touches it.
    lines.push(common::delivered(
        "d-9",
        "c-9",
        "c9@example.com",
        "SO-9",
        "2027-03-18T10:00:00+08:00",
    ));
    // A complaint resolved on Friday evening: a callback the next business hours.
    lines.push(
        json!({"id": "k-8", "type": "complaint.resolved", "occurred_at": "2027-03-05T19:30:00+08:00",
               "contact": {"id": "c-8", "phone": "+8613800138008", "email": "c8@example.com"},
               "data": {"complaint_id": "K-8", "order_id": "SO-8"}})
        .to_string(),
    );
    ws.import(&lines).ok();
    ws.run(&["suppress", "add", "email", "c4@example.com"]).ok();
    let (from, until) = ("2027-03-02T00:00:00Z", "2027-03-20T00:00:00Z");
    let (sent, not_sent, said) = agreed(&ws, from, until);
    assert!(
        said.contains("review-request") && said.contains("complaint-callback"),
        "{said}"
    );
    let count = |v: &[String], what: &str| v.iter().filter(|l| l.contains(what)).count();
    // Requests 3 days after delivery, reminders 4 days after each request.
    assert_eq!(count(&sent, "review-request step 0 "), 4, "{sent:#?}");
    assert_eq!(count(&sent, "review-request step 1 "), 4, "{sent:#?}");
    assert_eq!(count(&sent, "review-request step 0 c-1 "), 2);
    assert_eq!(count(&sent, " c-2 ") + count(&sent, " c-3 "), 0);
    assert_eq!(count(&sent, " c-9 ") + count(&not_sent, " c-9 "), 0);
    // Their requests were cancelled when the reviews came in, before the forecast's span.
    assert_eq!(count(&not_sent, " c-2 ") + count(&not_sent, " c-3 "), 0);
    assert_eq!(count(&not_sent, "c4@example.com is suppressed"), 1);
    assert!(
        sent.iter()
            .any(|l| l.starts_with("review-request step 0 c-6 at \"2027-03-05T01:00:00Z\"")),
        "quiet hours: {sent:#?}"
    );
    // --job keeps to that job's messages either way.
    let out = ws
        .run(&[
            "forecast",
            "--now",
            from,
            "--until",
            until,
            "--job",
            "review-request",
        ])
        .ok()
        .stdout;
    assert!(out.contains("8 message(s) would be sent"), "{out}");
}

/// A contact's birthday (and optional attributes) as a `contact.updated` event.
fn born(id: &str, contact: Value, at: &str) -> String {
    json!({"id": id, "type": "contact.updated", "occurred_at": at, "contact": contact}).to_string()
}

#[test]
fn anniversary_greetings_planned_on_the_copy_are_decided_in_memory_as_the_replay_decides_them() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["birthday-greeting"]);
    ws.write_config(
        None,
        "policy:\n  consent: opt_out\n  caps: []\n  anniversary_grace: 1d\n",
    );
    let at = "2026-11-01T00:00:00Z";
    let c = |id: &str, birthday: &str, tz: &str| json!({"id": id, "email": format!("{id}@example.com"), "birthday": birthday, "timezone": tz});
    let mut lines = vec![
        born("u-0", c("c-0", "1990-11-25", "America/New_York"), at),
        born("u-1", c("c-1", "1985-11-24", "Asia/Shanghai"), at),
        // c-2's greeting is planned (an hour ahead), then the date is corrected: it moves.
        born("u-2", c("c-2", "1990-11-23", "Asia/Shanghai"), at),
        // c-3's greeting is sent before the forecast: no second one this year.
        born("u-3", c("c-3", "1991-11-23", "Asia/Shanghai"), at),
        // No email; said no to marketing email; beyond the span.
        born(
            "u-6",
            json!({"id": "c-6", "phone": "+8613800138006", "birthday": "1990-11-26"}),
            at,
        ),
        born(
            "u-7",
            json!({"id": "c-7", "email": "c-7@example.com", "birthday": "1990-11-27",
                   "consent": {"email": false}}),
            at,
        ),
        born("u-8", c("c-8", "1990-12-25", "Asia/Shanghai"), at),
    ];
    lines.push(born("u-9", c("c-9", "2000-02-29", "Asia/Shanghai"), at));
    ws.import(&lines).ok();
    ws.run(&["suppress", "add", "email", "c-1@example.com"])
        .ok();
    ws.once("2026-11-23T00:30:00Z"); // plans c-2's and c-3's greetings (09:00 Shanghai)
    ws.import(&[born(
        "u-2b",
        c("c-2", "1990-11-28", "Asia/Shanghai"),
        "2026-11-23T00:40:00Z",
    )])
    .ok();
    // c-3's is sent; c-2's is cancelled (the date changed), and planned anew in the span.
    assert!(ws.once("2026-11-23T01:00:00Z").stdout.starts_with("1 sent"));
    // Yesterday in Berlin, not sent (they came after the daemon's last run): late within the
    // grace, or too late.
    ws.import(&[
        born("u-4", c("c-4", "1992-11-22", "Europe/Berlin"), at),
        born("u-5", c("c-5", "1993-11-21", "Europe/Berlin"), at),
    ])
    .ok();

    let (from, until) = ("2026-11-23T01:30:00Z", "2026-12-03T00:00:00Z");
    let (sent, not_sent, said) = agreed(&ws, from, until);
    assert!(said.contains("birthday-greeting"), "{said}");

    let count = |v: &[String], what: &str| v.iter().filter(|l| l.contains(what)).count();
    let has = |v: &[String], start: &str| v.iter().any(|l| l.starts_with(start));
    // 09:00 in each contact's zone.
    assert!(
        has(
            &sent,
            "birthday-greeting step 0 c-0 at \"2026-11-25T14:00:00Z\""
        ),
        "{sent:#?}"
    );
    assert!(
        has(
            &sent,
            "birthday-greeting step 0 c-2 at \"2026-11-28T01:00:00Z\""
        ),
        "the corrected date: {sent:#?}"
    );
    assert_eq!(count(&sent, " c-3 "), 0, "sent once this year: {sent:#?}");
    // Late, within the grace: quiet hours hold it until 09:00 in Berlin, the grace's end.
    assert!(
        has(
            &sent,
            "birthday-greeting step 0 c-4 at \"2026-11-23T08:00:00Z\""
        ),
        "{sent:#?}"
    );
    assert_eq!(
        count(&sent, " c-5 ") + count(&sent, " c-8 ") + count(&sent, " c-9 "),
        0
    );
    assert_eq!(
        count(&sent, " c-1 ") + count(&sent, " c-6 ") + count(&sent, " c-7 "),
        0
    );
    assert_eq!(
        count(&not_sent, "c-1@example.com is suppressed"),
        1,
        "{not_sent:#?}"
    );
    assert_eq!(
        count(&not_sent, " c-6 ") + count(&not_sent, " c-7 "),
        2,
        "{not_sent:#?}"
    );
    assert_eq!(sent.len(), 3, "{sent:#?}");
}

#[test]
fn many_pending_messages_are_read_a_page_at_a_time_and_none_is_lost() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    // More than one page (2,000) of pending review requests.
    ws.import(&common::deliveries(4_500, "2027-03-01T10:00:00+08:00"))
        .ok();
    let (from, until) = ("2027-03-02T00:00:00Z", "2027-03-20T00:00:00Z");
    let (sent, not_sent, _) = forecast(&ws, from, until, false);
    assert_eq!(sent.len(), 9_000, "a request and a reminder each");
    assert!(not_sent.is_empty());
    let (sent_replayed, _, _) = forecast(&ws, from, until, true);
    assert_eq!(sent, sent_replayed);
}
