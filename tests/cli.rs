//! One output convention for every verb: `--format text|json`, with the older spellings
//! (`--json`, `--format table`) kept as hidden aliases so scripts written against them go on
//! working.

mod common;

use common::{Workspace, delivered};

fn json(ws: &Workspace, args: &[&str]) -> serde_json::Value {
    let r = ws.run(args);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}):\n{}\n{}",
            r.stdout, r.stderr
        )
    })
}

#[test]
fn every_reporting_verb_speaks_format_json() {
    let ws = Workspace::new(None);
    let line = delivered(
        "e1",
        "c1",
        "li@example.com",
        "SO-1",
        "2026-11-20T10:00:00+08:00",
    );
    ws.write("events.jsonl", &format!("{line}\n"));
    let import = json(
        &ws,
        &["events", "import", "events.jsonl", "--format", "json"],
    );
    assert_eq!(import["accepted"], 1, "{import}");
    assert!(json(&ws, &["validate", "--format", "json"]).is_object());
    let logs = json(&ws, &["logs", "--format", "json"]);
    assert_eq!(logs.as_array().map(Vec::len), Some(1), "{logs}");
    let forecast = json(
        &ws,
        &[
            "forecast",
            "--now",
            "2026-11-20T12:00:00Z",
            "--until",
            "2026-11-30",
            "--format",
            "json",
        ],
    );
    assert!(forecast.is_object(), "{forecast}");
    assert!(json(&ws, &["callbacks", "--format", "json"]).is_array());
    assert!(json(&ws, &["suppress", "list", "--format", "json"]).is_array());
    let once = json(
        &ws,
        &[
            "run",
            "--once",
            "--now",
            "2026-11-20T12:00:00Z",
            "--format",
            "json",
        ],
    );
    assert!(once.get("sent").is_some(), "{once}");
    let report = json(
        &ws,
        &[
            "report",
            "conversions",
            "--job",
            "review-request",
            "--since",
            "2026-11-01",
            "--until",
            "2026-12-01",
            "--format",
            "json",
        ],
    );
    assert_eq!(report["total"]["planned"], 1, "{report}");
}

#[test]
fn the_old_spellings_still_work() {
    let ws = Workspace::new(None);
    let new = ws.run(&[
        "forecast",
        "--now",
        "2026-11-20T12:00:00Z",
        "--format",
        "json",
    ]);
    let old = ws.run(&["forecast", "--now", "2026-11-20T12:00:00Z", "--json"]);
    assert_eq!(new.code, 0, "{}", new.stderr);
    assert_eq!(old.stdout, new.stdout);
    let text = ws.run(&["logs"]).ok().stdout;
    assert_eq!(ws.run(&["logs", "--format", "table"]).ok().stdout, text);
    assert_eq!(
        ws.run(&["callbacks", "--json"]).ok().stdout,
        ws.run(&["callbacks", "--format", "json"]).ok().stdout
    );
    // Both at once is a usage error, not a silent pick.
    let both = ws.run(&["callbacks", "--json", "--format", "text"]);
    assert_eq!(both.code, 2, "{}", both.stderr);
}

/// `preview --now` answers as of that time, as `run --once --now` plans: the birthday
/// greeting's next 09:00 after it, in the customer's zone (it used the real clock). A date is
/// the business's day (`defaults.timezone`, Shanghai here), not UTC's, as `report --since`
/// always read it: at Shanghai's midnight of the 14th it is 06:00 on the 13th in Honolulu, so
/// that customer's greeting of the 13th is still to come (read as UTC's midnight, 14:00 in
/// Honolulu, it would be next year's).
#[test]
fn preview_answers_as_of_now_given() {
    let ws = Workspace::new(None);
    for (zone, birthday, now, due) in [
        (
            "Europe/Berlin",
            "1990-03-14",
            "2031-03-01T00:00:00Z",
            "2031-03-14T09:00:00+01:00",
        ),
        (
            "Europe/Berlin",
            "1990-03-14",
            "2031-03-14T09:00:01+01:00",
            "2032-03-14T09:00:00+01:00",
        ),
        (
            "Pacific/Honolulu",
            "1990-03-13",
            "2031-03-14",
            "2031-03-13T09:00:00-10:00",
        ),
    ] {
        ws.write(
            "event.json",
            &format!(
                r#"{{"id": "e-1", "type": "contact.updated", "occurred_at": "2026-01-02T00:00:00Z",
                    "contact": {{"id": "c-1", "email": "c-1@example.com", "birthday": "{birthday}",
                                "timezone": "{zone}"}}}}"#
            ),
        );
        let r = ws.run(&[
            "preview",
            "birthday-greeting",
            "--event",
            "event.json",
            "--now",
            now,
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stdout.contains(&format!("due:      {due} ({zone})")),
            "{now}: {}",
            r.stdout
        );
    }
    // Not a time: said so, with both forms it takes.
    let r = ws.run(&["logs", "--since", "14/03/2031"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "`14/03/2031` is not an RFC 3339 time (2026-11-23T10:00:00+08:00) or a date (2026-11-23)"
        ),
        "{}",
        r.stderr
    );
}

/// A state is spelt as the log shows it (`held_out`, as the API's `status=`), the other
/// spelling still taken; and a job with nothing to preview says so instead of counting
/// steps it does not have.
#[test]
fn held_out_is_a_status_and_a_callback_job_has_nothing_to_preview() {
    let ws = Workspace::new(None);
    for spelling in ["held_out", "held-out", "sent,held_out"] {
        let r = ws.run(&["logs", "--status", spelling]);
        assert_eq!(r.code, 0, "{spelling}: {}", r.stderr);
    }
    ws.write("event.json", "{}");
    let r = ws.run(&["preview", "detractor-callback", "--event", "event.json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("job detractor-callback sends no message to preview"),
        "{}",
        r.stderr
    );
}
