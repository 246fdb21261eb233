//! The rules that keep customers glad to hear from us: frequency caps, quiet hours,
//! suppression, one-click unsubscribe, consent, and the forecast that shows them in advance.

mod common;

use common::{SmtpSink, Workspace, delivered};
use serde_json::json;

const WINDOW: &str = "  send_window: {start: \"09:00\", end: \"21:00\"}\n";

fn setup(policy: &str) -> (SmtpSink, Workspace) {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::new(Some(sink.port));
    ws.keep_jobs(&["review-request", "complaint-callback"]);
    ws.write_config(Some(sink.port), &format!("policy:\n{policy}"));
    (sink, ws)
}

#[test]
fn frequency_cap_defers_the_third_message() {
    let (sink, ws) = setup(
        "  consent: opt_out\n  caps: [{max: 2, per: 7d}]\n  send_window: {start: \"00:00\", end: \"24:00\"}\n",
    );
    // Three orders delivered on three days: three review requests to one customer.
    ws.import(&[
        delivered(
            "e1",
            "c-1",
            "wang.fang@example.com",
            "SO-1",
            "2026-11-20T10:00:00+08:00",
        ),
        delivered(
            "e2",
            "c-1",
            "wang.fang@example.com",
            "SO-2",
            "2026-11-21T10:00:00+08:00",
        ),
        delivered(
            "e3",
            "c-1",
            "wang.fang@example.com",
            "SO-3",
            "2026-11-22T10:00:00+08:00",
        ),
    ])
    .ok();
    ws.once("2026-11-23T10:00:00+08:00");
    ws.once("2026-11-24T10:00:00+08:00");
    let r = ws.once("2026-11-25T10:00:00+08:00");
    assert_eq!(
        r.stdout.trim(),
        "0 sent, 0 retrying, 0 failed, 0 cancelled, 1 deferred"
    );
    assert_eq!(sink.messages().len(), 2);
    let log = ws.logs_json(&["--order", "SO-3"]);
    assert_eq!(log[0]["state"], "scheduled");
    assert_eq!(
        log[0]["reason"],
        "deferred: frequency cap 2 per 7d reached; goes at 2026-11-30 10:00 CST"
    );
    assert_eq!(log[0]["due_at"], "2026-11-30T02:00:00Z");
    assert!(
        ws.once("2026-11-30T09:59:00+08:00")
            .stdout
            .starts_with("0 sent")
    );
    assert!(
        ws.once("2026-11-30T10:00:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    assert_eq!(sink.messages().len(), 3);
}

#[test]
fn over_cap_drop_cancels_with_the_reason() {
    let (sink, ws) = setup(
        "  consent: opt_out\n  caps: [{max: 1, per: 1d}]\n  send_window: {start: \"00:00\", end: \"24:00\"}\n",
    );
    ws.append("jobs/review-request.yaml", "over_cap: drop\n");
    ws.import(&[
        delivered(
            "e1",
            "c-1",
            "a@example.com",
            "SO-1",
            "2026-11-20T10:00:00+08:00",
        ),
        delivered(
            "e2",
            "c-1",
            "a@example.com",
            "SO-2",
            "2026-11-20T10:00:00+08:00",
        ),
    ])
    .ok();
    // Two due at once for one contact: one goes, the other is dropped, not both.
    let r = ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "1 sent, 0 retrying, 0 failed, 1 cancelled");
    assert_eq!(sink.messages().len(), 1);
    let log = ws.logs_json(&["--status", "cancelled"]);
    assert_eq!(log[0]["reason"], "dropped: frequency cap 1 per 1d reached");
}

#[test]
fn service_messages_ignore_caps_and_consent() {
    let (sink, ws) = setup(&format!(
        "  consent: opt_in\n  caps: [{{max: 1, per: 1d}}]\n{WINDOW}"
    ));
    let complaint = json!({
        "id": "k-1", "type": "complaint.resolved", "occurred_at": "2026-11-21T10:00:00+08:00",
        "contact": {"id": "c-1", "email": "a@example.com", "consent": {"email": false}},
        "data": {"complaint_id": "CMP-1"}
    })
    .to_string();
    ws.import(&[
        complaint,
        delivered(
            "e1",
            "c-1",
            "a@example.com",
            "SO-1",
            "2026-11-20T10:00:00+08:00",
        ),
    ])
    .ok();
    let r = ws.once("2026-11-23T10:00:00+08:00");
    // The complaint notice goes; the review request (marketing) does not: consent is false.
    assert_eq!(r.stdout.trim(), "1 sent, 0 retrying, 0 failed, 1 cancelled");
    assert!(sink.messages()[0].subject.contains("CMP-1"));
    let log = ws.logs_json(&["--job", "review-request"]);
    assert_eq!(log[0]["reason"], "not sent: email: consent.email is false");
}

#[test]
fn opt_in_consent_needs_an_explicit_yes() {
    let (sink, ws) = setup(&format!("  consent: opt_in\n  caps: []\n{WINDOW}"));
    let with = json!({
        "id": "e1", "type": "order.delivered", "occurred_at": "2026-11-20T10:00:00+08:00",
        "contact": {"id": "c-1", "email": "yes@example.com", "consent": {"email": true}}, "data": {"order_id": "SO-1"}
    })
    .to_string();
    ws.import(&[
        with,
        delivered(
            "e2",
            "c-2",
            "unknown@example.com",
            "SO-2",
            "2026-11-20T10:00:00+08:00",
        ),
    ])
    .ok();
    assert_eq!(
        ws.once("2026-11-23T10:00:00+08:00").stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 1 cancelled"
    );
    assert_eq!(sink.messages()[0].to, "yes@example.com");
    let log = ws.logs_json(&["--contact", "c-2"]);
    assert_eq!(
        log[0]["reason"],
        "not sent: email: no consent.email (consent mode opt_in)"
    );
}

/// Planned messages follow the job as it is when they go: a review request planned while
/// the job said `class: service` meets the consent rule of marketing once the job says so,
/// and a reminder taken out of the job is not sent.
#[test]
fn a_message_goes_as_its_job_says_when_it_goes() {
    let (sink, ws) = setup(&format!("  consent: opt_in\n  caps: []\n{WINDOW}"));
    let shipped = std::fs::read_to_string(ws.path("jobs/review-request.yaml")).unwrap();
    ws.write(
        "jobs/review-request.yaml",
        &shipped.replace("channels: [email]", "channels: [email]\nclass: service"),
    );
    let with = |id: &str, contact: &str, consent: bool, order: &str| {
        json!({
            "id": id, "type": "order.delivered", "occurred_at": "2026-11-20T10:00:00+08:00",
            "contact": {"id": contact, "email": format!("{contact}@example.com"), "consent": {"email": consent}},
            "data": {"order_id": order}
        })
        .to_string()
    };
    ws.import(&[
        with("e1", "c-1", false, "SO-1"),
        with("e2", "c-2", true, "SO-2"),
    ])
    .ok();
    ws.write("jobs/review-request.yaml", &shipped);
    assert_eq!(
        ws.once("2026-11-23T10:00:00+08:00").stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 1 cancelled"
    );
    assert_eq!(sink.messages()[0].to, "c-2@example.com");
    let log = ws.logs_json(&["--contact", "c-1"]);
    assert_eq!(log[0]["reason"], "not sent: email: consent.email is false");
    // c-2's reminder is planned; the job loses its reminders before it is due.
    let head = shipped.split("reminders:").next().unwrap();
    let tail = shipped.split("stop_when:").nth(1).unwrap();
    ws.write(
        "jobs/review-request.yaml",
        &format!("{head}stop_when:{tail}"),
    );
    assert_eq!(
        ws.once("2026-11-27T10:00:00+08:00").stdout.trim(),
        "0 sent, 0 retrying, 0 failed, 1 cancelled"
    );
    let reminder = ws.logs_json(&["--contact", "c-2"]);
    assert_eq!(
        reminder[1]["reason"], "job `review-request` no longer has step 1 (its reminders changed)",
        "{reminder:#}"
    );
}

#[test]
fn quiet_hours_move_a_2310_send_to_0900() {
    let (sink, ws) = setup(&format!("  consent: opt_out\n  caps: []\n{WINDOW}"));
    ws.import(&[delivered(
        "e1",
        "c-1",
        "a@example.com",
        "SO-1",
        "2026-11-20T23:10:00+08:00",
    )])
    .ok();
    let r = ws.once("2026-11-23T23:10:00+08:00");
    assert_eq!(
        r.stdout.trim(),
        "0 sent, 0 retrying, 0 failed, 0 cancelled, 1 deferred"
    );
    let log = ws.logs_json(&[]);
    assert_eq!(
        log[0]["reason"],
        "deferred: quiet hours (09:00–21:00 Asia/Shanghai); goes at 2026-11-24 09:00 CST"
    );
    assert!(
        ws.once("2026-11-24T08:59:00+08:00")
            .stdout
            .starts_with("0 sent")
    );
    assert!(
        ws.once("2026-11-24T09:00:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    assert_eq!(sink.messages().len(), 1);
    let log = ws.logs_json(&[]);
    assert_eq!(log[0]["attempt_log"][0]["at"], "2026-11-24T01:00:00Z");
}

#[test]
fn quiet_hours_follow_the_contacts_own_zone() {
    let (sink, ws) = setup(&format!("  consent: opt_out\n  caps: []\n{WINDOW}"));
    let ny = json!({
        "id": "e1", "type": "order.delivered", "occurred_at": "2026-11-20T10:00:00+08:00",
        "contact": {"id": "c-ny", "email": "ny@example.com", "timezone": "America/New_York"}, "data": {"order_id": "SO-1"}
    })
    .to_string();
    ws.import(&[ny]).ok();
    // 10:00 in Shanghai is 21:00 in New York: outside the window there, so 09:00 New York.
    assert!(
        ws.once("2026-11-23T10:00:00+08:00")
            .stdout
            .contains("1 deferred")
    );
    assert!(ws.once("2026-11-23T14:00:00Z").stdout.starts_with("1 sent"));
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn a_suppressed_address_gets_nothing_more() {
    let (sink, ws) = setup(
        "  consent: opt_out\n  caps: []\n  send_window: {start: \"00:00\", end: \"24:00\"}\n",
    );
    ws.import(&[delivered(
        "e1",
        "c-1",
        "Wang.Fang@Example.com",
        "SO-1",
        "2026-11-20T10:00:00+08:00",
    )])
    .ok();
    ws.run(&[
        "suppress",
        "add",
        "email",
        "wang.fang@example.com",
        "--reason",
        "asked by phone",
    ])
    .ok();
    assert!(
        ws.run(&["suppress", "list"])
            .ok()
            .stdout
            .contains("email  wang.fang@example.com  asked by phone (cli)")
    );
    let r = ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "0 sent, 0 retrying, 0 failed, 1 cancelled");
    assert!(sink.messages().is_empty());
    let log = ws.logs_json(&[]);
    assert_eq!(
        log[0]["reason"],
        "not sent: email: Wang.Fang@Example.com is suppressed (asked by phone)"
    );
    // Removed from the list: the next order's request goes.
    ws.run(&["suppress", "remove", "email", "WANG.FANG@example.com"])
        .ok();
    ws.import(&[delivered(
        "e2",
        "c-1",
        "wang.fang@example.com",
        "SO-2",
        "2026-11-21T10:00:00+08:00",
    )])
    .ok();
    assert!(
        ws.once("2026-11-24T10:00:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    assert_eq!(
        ws.run(&["suppress", "add", "email", "not-an-address"]).code,
        1
    );
}

/// An address is suppressed in lower case (`suppress` lowers it as Rust does, beyond ASCII);
/// a contact may write it in capitals. SQL's `LOWER()` lowers ASCII only, and the claim once
/// compared with it: `ÜLLA@…` was not found on the list as `ülla@…` and was mailed.
#[test]
fn a_suppressed_address_written_in_capitals_beyond_ascii_gets_nothing() {
    let (sink, ws) = setup(
        "  consent: opt_out\n  caps: []\n  send_window: {start: \"00:00\", end: \"24:00\"}\n",
    );
    ws.import(&[
        delivered(
            "e1",
            "c-1",
            "ÜLLA.Öberg@Example.com",
            "SO-1",
            "2026-11-20T10:00:00+08:00",
        ),
        delivered(
            "e2",
            "c-2",
            "ÅSA@example.com",
            "SO-2",
            "2026-11-20T10:00:00+08:00",
        ),
    ])
    .ok();
    ws.run(&["suppress", "add", "email", "ülla.öberg@example.com"])
        .ok();
    ws.run(&["suppress", "add", "email", "ÅSA@EXAMPLE.COM"])
        .ok();
    assert!(
        ws.run(&["suppress", "list"])
            .ok()
            .stdout
            .contains("email  åsa@example.com")
    );
    let r = ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "0 sent, 0 retrying, 0 failed, 2 cancelled");
    assert!(sink.messages().is_empty());
    let mut reasons: Vec<String> = ws
        .logs_json(&[])
        .as_array()
        .expect("the log is a list")
        .iter()
        .map(|m| m["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "not sent: email: ÅSA@example.com is suppressed (added by support)",
            "not sent: email: ÜLLA.Öberg@Example.com is suppressed (added by support)",
        ]
    );
}

#[test]
fn marketing_email_carries_one_click_unsubscribe_and_tokens_cannot_be_forged() {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::new(Some(sink.port));
    ws.keep_jobs(&["review-request"]);
    ws.write_config(
        Some(sink.port),
        "unsubscribe:\n  url: \"https://shop.example.com/u/{token}\"\n  mailto: unsubscribe@example.com\n  key_file: data/unsubscribe.key\n",
    );
    ws.import(&[
        delivered(
            "e1",
            "c-1",
            "wang.fang@example.com",
            "SO-1",
            "2026-11-20T10:00:00+08:00",
        ),
        delivered(
            "e2",
            "c-2",
            "li.lei@example.com",
            "SO-2",
            "2026-11-20T10:00:00+08:00",
        ),
    ])
    .ok();
    ws.once("2026-11-23T10:00:00+08:00");
    let mail = sink.messages();
    let wang = mail
        .iter()
        .find(|m| m.to == "wang.fang@example.com")
        .unwrap();
    let header = wang
        .list_unsubscribe
        .clone()
        .expect("List-Unsubscribe header");
    assert!(
        header.starts_with("<https://shop.example.com/u/"),
        "{header}"
    );
    assert!(
        header.contains("<mailto:unsubscribe@example.com?subject=unsubscribe%20"),
        "{header}"
    );
    assert_eq!(
        wang.list_unsubscribe_post.as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    // The body's link is the header's link.
    let url = header
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    assert!(wang.text.contains(&url), "{}", wang.text);
    let token = url.rsplit('/').next().unwrap().to_string();
    let li_token = {
        let li = mail.iter().find(|m| m.to == "li.lei@example.com").unwrap();
        li.list_unsubscribe
            .clone()
            .unwrap()
            .trim_start_matches("<https://shop.example.com/u/")
            .split('>')
            .next()
            .unwrap()
            .to_string()
    };

    // Altered: one character changed (tokens are sealed: nonce, ciphertext, tag).
    let mut altered = token.clone().into_bytes();
    let i = 20;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let r = ws.run(&["unsubscribe", &altered]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("rejected: the token's signature does not match (forged or altered)"),
        "{}",
        r.stderr
    );
    // Forged: spliced from two genuine tokens (one's nonce, the other's sealed address).
    let spliced = format!("{}{}", &li_token[..16], &token[16..]);
    assert_eq!(ws.run(&["unsubscribe", &spliced]).code, 1);
    assert!(
        ws.run(&["suppress", "list"])
            .ok()
            .stdout
            .contains("0 suppressed")
    );

    // Genuine: applied, and the next message to that address is not sent.
    assert_eq!(
        ws.run(&["unsubscribe", &token, "--check"])
            .ok()
            .stdout
            .trim(),
        "valid: email wang.fang@example.com"
    );
    ws.run(&["unsubscribe", &token]).ok();
    assert!(
        ws.run(&["suppress", "list"])
            .ok()
            .stdout
            .contains("wang.fang@example.com  unsubscribed (one-click link) (token)")
    );
    ws.import(&[delivered(
        "e3",
        "c-1",
        "wang.fang@example.com",
        "SO-3",
        "2026-11-21T10:00:00+08:00",
    )])
    .ok();
    assert!(
        ws.once("2026-11-24T10:00:00+08:00")
            .stdout
            .contains("1 cancelled")
    );
    assert_eq!(sink.messages().len(), 2);
    // The key was created once, private to its owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ws.path("data/unsubscribe.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn forecast_matches_what_run_once_then_sends() {
    let (sink, ws) = setup(&format!(
        "  consent: opt_out\n  caps: [{{max: 1, per: 1d}}]\n{WINDOW}"
    ));
    ws.run(&["suppress", "add", "email", "blocked@example.com"])
        .ok();
    ws.import(&[
        delivered(
            "e1",
            "c-1",
            "a@example.com",
            "SO-1",
            "2026-11-20T10:00:00+08:00",
        ),
        // Same contact, an hour later: the daily cap defers it to 10:00 the next day.
        delivered(
            "e2",
            "c-1",
            "a@example.com",
            "SO-2",
            "2026-11-20T11:00:00+08:00",
        ),
        // Due at 23:10: quiet hours move it to 09:00 the next day.
        delivered(
            "e3",
            "c-2",
            "b@example.com",
            "SO-3",
            "2026-11-20T23:10:00+08:00",
        ),
        delivered(
            "e4",
            "c-3",
            "blocked@example.com",
            "SO-4",
            "2026-11-20T12:00:00+08:00",
        ),
        // Reviewed before it is due: stopped.
        delivered(
            "e5",
            "c-4",
            "d@example.com",
            "SO-5",
            "2026-11-20T13:00:00+08:00",
        ),
        common::reviewed("e6", "c-4", "SO-5", "2026-11-22T08:00:00+08:00"),
    ])
    .ok();
    let until = "2026-11-24T12:00:00+08:00";
    let (f, _) = ws.forecast("2026-11-23T00:00:00+08:00", until, &[]);
    let mut predicted: Vec<(String, String)> = f["send"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["contact"].as_str().unwrap().to_string(),
                m["at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    predicted.sort();
    let p = |c: &str, t: &str| (c.to_string(), t.to_string());
    assert_eq!(
        predicted,
        [
            p("c-1", "2026-11-23T02:00:00Z"),
            p("c-1", "2026-11-24T02:00:00Z"),
            p("c-2", "2026-11-24T01:00:00Z")
        ]
    );
    let not_sent: Vec<&str> = f["not_sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["contact"].as_str().unwrap())
        .collect();
    assert!(not_sent.contains(&"c-3"), "{not_sent:?}");
    // The forecast sent nothing and changed nothing.
    assert!(sink.messages().is_empty());
    assert_eq!(
        ws.logs_json(&["--status", "sent"])
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // The daemon at the same instants does exactly that.
    ws.once("2026-11-23T10:00:00+08:00");
    ws.once("2026-11-23T23:10:00+08:00");
    ws.once(until);
    let mut actual: Vec<(String, String)> = ws
        .logs_json(&["--status", "sent"])
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["contact_id"].as_str().unwrap().to_string(),
                m["attempt_log"][0]["at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    actual.sort();
    // The same messages; the deferred ones went at the first run after their time here.
    assert_eq!(
        actual.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        ["c-1", "c-1", "c-2"]
    );
    assert_eq!(actual[0], predicted[0]);
    assert_eq!(sink.messages().len(), 3);
}

#[test]
fn caps_count_each_send_once_across_runs_of_one_process() {
    // Regression: a send recorded by this process and read back from the store counted
    // twice, so the reminder (2nd message in 7 days) looked like the 3rd.
    let (_sink, ws) = setup(&format!(
        "  consent: opt_out\n  caps: [{{max: 2, per: 7d}}, {{max: 1, per: 1d}}]\n{WINDOW}"
    ));
    ws.import(&[delivered(
        "e1",
        "c-1",
        "a@example.com",
        "SO-1",
        "2026-11-20T10:00:00+08:00",
    )])
    .ok();
    let (f, _) = ws.forecast(
        "2026-11-23T00:00:00+08:00",
        "2026-11-28T00:00:00+08:00",
        &[],
    );
    let at: Vec<&str> = f["send"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["at"].as_str().unwrap())
        .collect();
    assert_eq!(at, ["2026-11-23T02:00:00Z", "2026-11-27T02:00:00Z"]);
}
