//! Retention through the real binary, on SQLite and on PostgreSQL: `store purge` removes
//! exactly what is past `retention:` and nothing a job still looks back at, and `validate`
//! refuses a retention shorter than a job's window, naming the job and the key.

mod common;

use common::{Backend, Workspace, birthday, delivered, event};
use serde_json::json;

fn both(test: fn(Backend)) {
    test(Backend::Sqlite);
    test(Backend::Postgres);
}

/// The messages of `contact` in the log, as (job, step, state).
fn messages_of(ws: &Workspace, contact: &str) -> Vec<(String, i64, String)> {
    let log = ws.logs_json(&["--contact", contact]);
    log.as_array()
        .expect("a list")
        .iter()
        .map(|m| {
            (
                m["job_id"].as_str().unwrap_or_default().to_string(),
                m["step"].as_i64().unwrap_or(-1),
                m["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Import `lines` as if at `now` (messages are created then).
fn import_at(ws: &Workspace, now: &str, lines: &[String]) {
    ws.write("events.jsonl", &(lines.join("\n") + "\n"));
    ws.run(&["events", "import", "events.jsonl", "--now", now])
        .ok();
}

fn sent(s: &str) -> (String, i64, String) {
    (s.to_string(), 0, "sent".to_string())
}

/// A birthday greeting sent 11 months ago still blocks a second one this year after the
/// birthday is corrected, while a review request of 15 months ago (past the 400-day
/// default) goes, with its reminder, attempts and event.
fn purge_keeps_this_years_greeting_and_removes_last_years_messages(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&["birthday-greeting", "review-request"]);
    import_at(
        &ws,
        "2025-09-01T10:00:00+08:00",
        &[
            birthday(
                "b-1",
                "c-bday",
                "李娜",
                "li.na@example.com",
                "Asia/Shanghai",
                "zh-CN",
                "1990-01-05",
            ),
            delivered(
                "d-old",
                "c-old",
                "old@example.com",
                "SO-OLD",
                "2025-09-01T10:00:00+08:00",
            ),
        ],
    );
    // September 2025: the review request and its reminder go.
    assert!(
        ws.once("2025-09-04T10:00:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    assert!(
        ws.once("2025-09-08T10:00:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    // January 2026: the greeting goes.
    assert!(
        ws.once("2026-01-05T09:30:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    assert_eq!(
        messages_of(&ws, "c-bday"),
        [sent("birthday-greeting")],
        "{b:?}"
    );

    // December: the birthday was wrong, it is today. The purge runs first.
    ws.import(&[birthday(
        "b-2",
        "c-bday",
        "李娜",
        "li.na@example.com",
        "Asia/Shanghai",
        "zh-CN",
        "1990-12-05",
    )])
    .ok();
    // September's figures, by day: read now, and again after the purge.
    let september = || {
        ws.run(&[
            "report",
            "daily",
            "--since",
            "2025-09-01",
            "--until",
            "2025-09-30",
            "--format",
            "json",
        ])
        .ok()
        .stdout
    };
    let before = september();
    let purge = ws
        .run(&["store", "purge", "--now", "2026-12-05T08:00:00+08:00"])
        .ok();
    assert!(
        purge.stdout.starts_with(
            // January's greeting is past `retention.content`: its words go, it stays.
            "removed 2 messages, 2 attempts, 0 receipts, 1 events, 0 event payloads emptied, 1 message texts, 0 replies, 0 bounces, 0 suppression changes"
        ),
        "{b:?}: {}",
        purge.stdout
    );
    assert!(messages_of(&ws, "c-old").is_empty(), "{b:?}");
    // The review request and its reminder, sent in September, still count there.
    let counted: Vec<serde_json::Value> = serde_json::from_str(&before).expect("JSON");
    let said: Vec<(String, String, i64, String, i64)> = counted
        .iter()
        .map(|c| {
            (
                c["day"].as_str().unwrap_or_default().to_string(),
                c["job_id"].as_str().unwrap_or_default().to_string(),
                c["step"].as_i64().unwrap_or(-1),
                c["outcome"].as_str().unwrap_or_default().to_string(),
                c["n"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            (
                "2025-09-04".into(),
                "review-request".into(),
                0,
                "sent".into(),
                1
            ),
            (
                "2025-09-08".into(),
                "review-request".into(),
                1,
                "sent".into(),
                1
            ),
        ],
        "{b:?}: {before}"
    );
    assert_eq!(september(), before, "{b:?}");
    // The greeting of January is still there, so December's scan plans no second one.
    let run = ws.once("2026-12-05T09:30:00+08:00");
    assert!(run.stdout.starts_with("0 sent"), "{b:?}: {}", run.stdout);
    assert_eq!(
        messages_of(&ws, "c-bday"),
        [sent("birthday-greeting")],
        "{b:?}"
    );
    // Purging again removes nothing more.
    let again = ws
        .run(&["store", "purge", "--now", "2026-12-05T08:00:00+08:00"])
        .ok();
    assert!(
        again.stdout.starts_with("removed 0 messages, 0 attempts"),
        "{b:?}: {}",
        again.stdout
    );
}

/// `exclude_if_sent: 90d` with `retention.messages: 90d`: the survey of 84 days ago stays
/// (and still excludes its contact), the one of 98 days ago goes; events past 60 days go.
fn purge_keeps_what_exclude_if_sent_still_sees(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&["nps-survey"]);
    ws.write_config(
        None,
        "retention: {messages: 90d, events: 60d, attempts: 90d}\n",
    );
    let rental = |id: &str, contact: &str, at: &str| {
        event(
            id,
            "rental.completed",
            contact,
            &format!("{contact}@example.com"),
            at,
            json!({}),
            json!({}),
        )
    };
    ws.import(&[rental("r-b1", "b", "2026-08-20T10:00:00+08:00")])
        .ok();
    // Monday 2026-08-24, 98 days before Monday 2026-11-30: b is surveyed.
    assert!(
        ws.once("2026-08-24T10:00:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    ws.import(&[rental("r-a1", "a", "2026-09-03T10:00:00+08:00")])
        .ok();
    // Monday 2026-09-07, 84 days before: a is (b was two weeks ago).
    assert!(
        ws.once("2026-09-07T10:00:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    ws.import(&[
        rental("r-a2", "a", "2026-11-25T10:00:00+08:00"),
        rental("r-b2", "b", "2026-11-25T10:00:00+08:00"),
    ])
    .ok();
    let purge = ws
        .run(&["store", "purge", "--now", "2026-11-30T09:00:00+08:00"])
        .ok();
    assert!(
        purge
            .stdout
            .starts_with("removed 1 messages, 1 attempts, 0 receipts, 2 events,"),
        "{b:?}: {}",
        purge.stdout
    );
    assert!(messages_of(&ws, "b").is_empty(), "{b:?}");
    assert_eq!(messages_of(&ws, "a"), [sent("nps-survey")], "{b:?}");
    // The occurrence of 2026-11-30: b again (98 days is outside the window anyway), not a.
    assert!(
        ws.once("2026-11-30T10:00:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    assert_eq!(messages_of(&ws, "b"), [sent("nps-survey")], "{b:?}");
    assert_eq!(messages_of(&ws, "a"), [sent("nps-survey")], "{b:?}");
}

#[test]
fn purge_keeps_this_years_greeting_and_removes_last_years_messages_on_both_backends() {
    both(purge_keeps_this_years_greeting_and_removes_last_years_messages);
}

#[test]
fn purge_keeps_what_exclude_if_sent_still_sees_on_both_backends() {
    both(purge_keeps_what_exclude_if_sent_still_sees);
}

#[test]
fn validate_refuses_a_retention_shorter_than_a_jobs_window() {
    let ws = Workspace::on(Backend::Sqlite, None);
    ws.write_config(
        None,
        "retention:\n  events: 20d\n  messages: 60d\n  content: 3d\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let out = format!("{}{}", r.stdout, r.stderr);
    for want in [
        // The shipped nps-survey (exclude_if_sent 90d, had_event 30d), the birthday job (a
        // year), review-request's stop_when over 3d + 4d of events and their data.
        "retention.messages: 60d is shorter than the 90d that job `nps-survey` looks back over (audience.exclude_if_sent.within)",
        "retention.events: 20d is shorter than the 30d that job `nps-survey` looks back over (audience.had_event.within)",
        "retention.messages: 60d is shorter than the 368d that job `birthday-greeting` looks back over (trigger.anniversary (one greeting a year))",
        "retention.content: 3d is shorter than the 7d that job `review-request` looks back over (stop_when.match (compares event data))",
        "hint: keep messages at least 368d (retention.messages: 368d), or shorten that window",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    // Each error points at its key in the config file.
    assert!(
        out.contains("aftercare.yaml:17:3: error: retention.messages"),
        "{out}"
    );
    // A job-window error stops `run` too, not only `validate`, and a purge by hand (which
    // would delete what the job still reads, for good).
    let run = ws.run(&["run", "--once", "--now", "2026-11-30T10:00:00+08:00"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let purge = ws.run(&["store", "purge", "--now", "2026-11-30T10:00:00+08:00"]);
    assert_eq!(purge.code, 1, "{}", purge.stdout);
    assert!(
        purge.stderr.contains("retention.messages: 60d is shorter"),
        "{}",
        purge.stderr
    );

    // A retention under a day is a config error.
    ws.write_config(None, "retention: {replies: 12h}\n");
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "aftercare.yaml:15:22: error: retention.replies: `12h` is shorter than a day"
        ),
        "{}",
        r.stderr
    );

    ws.write_config(
        None,
        "retention: {events: 30d, messages: 368d, content: 7d, replies: never}\n",
    );
    ws.run(&["validate"]).ok();
}

/// `aftercare run` purges on start (and then daily), logs the counts and exports them as a
/// metric; a second daemon on the same store within the day does not purge again.
#[test]
fn the_daemon_purges_once_a_day_and_says_what_it_removed() {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let ws = Workspace::on(Backend::from_env(), None);
    ws.keep_jobs(&["review-request"]);
    import_at(
        &ws,
        "2024-09-01T10:00:00+08:00",
        &[delivered(
            "d-old",
            "c-old",
            "old@example.com",
            "SO-OLD",
            "2024-09-01T10:00:00+08:00",
        )],
    );
    ws.once("2024-09-04T10:00:00+08:00");
    ws.once("2024-09-08T10:00:00+08:00");
    let start = |ws: &Workspace| {
        let port = common::free_port();
        ws.write_config(
            None,
            &format!("api:\n  listen: 127.0.0.1:{port}\n  tokens: []\n"),
        );
        let (child, log) = common::spawn_logged(ws.command(&["run"]).env("AFTERCARE_LOG", "info"));
        (child, log, port)
    };
    let has = |log: &Arc<Mutex<Vec<String>>>, needle: &str| {
        log.lock().unwrap().iter().any(|l| l.contains(needle))
    };
    let wait = |log: &Arc<Mutex<Vec<String>>>, needle: &str| {
        assert!(
            common::until(Duration::from_secs(30), || has(log, needle)),
            "no {needle:?} in {:?}",
            log.lock().unwrap()
        );
    };
    let (mut first, log, port) = start(&ws);
    wait(&log, "retention purge: removed 2 messages, 2 attempts");
    // Counts only: never an address or an order.
    assert!(
        !log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("SO-OLD") || l.contains("old@"))
    );
    let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("aftercare_purged_rows_total{kind=\"messages\"} 2"),
        "{metrics}"
    );
    assert!(messages_of(&ws, "c-old").is_empty());
    let _ = first.kill();
    let _ = first.wait();

    let (mut second, log, _) = start(&ws);
    wait(&log, "api listening");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!has(&log, "retention purge"), "{:?}", log.lock().unwrap());
    let _ = second.kill();
    let _ = second.wait();
}
