//! The review-request pipeline end to end: the real binary, a SQLite file, and a real SMTP
//! server process receiving the mail. Time moves only through `run --once --now`.

mod common;

use common::{SmtpSink, Workspace, delivered, deliveries, reviewed};

const DELIVERED_AT: &str = "2026-11-20T10:00:00+08:00";

fn setup() -> (SmtpSink, Workspace) {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::new(Some(sink.port));
    (sink, ws)
}

#[test]
fn request_goes_out_exactly_three_days_after_delivery() {
    let (sink, ws) = setup();
    let r = ws
        .import(&[delivered(
            "evt-1",
            "c-42",
            "wang.fang@example.com",
            "SO-1001",
            DELIVERED_AT,
        )])
        .ok();
    assert!(
        r.stdout
            .contains("1 accepted, 0 duplicate, 0 rejected; 1 message(s) planned"),
        "{}",
        r.stdout
    );

    let r = ws.once("2026-11-23T09:59:59+08:00");
    assert_eq!(r.stdout.trim(), "0 sent, 0 retrying, 0 failed, 0 cancelled");
    assert!(sink.messages().is_empty());

    let r = ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "1 sent, 0 retrying, 0 failed, 0 cancelled");
    let mail = sink.messages();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].to, "wang.fang@example.com");
    assert_eq!(mail[0].subject, "王芳，您的订单 SO-1001 还满意吗？");
    assert!(
        mail[0]
            .text
            .contains("您的订单 SO-1001 已于 2026年11月20日 送达"),
        "{}",
        mail[0].text
    );
    assert!(
        mail[0]
            .html
            .as_deref()
            .unwrap_or("")
            .contains("<strong>SO-1001</strong>")
    );

    // Support sees the send with the server's reply and the same Message-ID.
    let log = ws.logs_json(&["--contact", "wang.fang@example.com"]);
    let first = &log[0];
    assert_eq!(first["state"], "sent");
    assert_eq!(first["step"], 0);
    let attempt = &first["attempt_log"][0];
    assert_eq!(attempt["outcome"], "sent");
    assert_eq!(attempt["code"], 250);
    assert_eq!(attempt["address"], "wang.fang@example.com");
    assert_eq!(attempt["provider_id"], format!("<{}>", mail[0].message_id));
    assert_eq!(attempt["at"], "2026-11-23T02:00:00Z");
    // ... and the reminder is planned four days after the send.
    assert_eq!(log[1]["step"], 1);
    assert_eq!(log[1]["state"], "scheduled");
    assert_eq!(log[1]["due_at"], "2026-11-27T02:00:00Z");

    // Running again at the same instant sends nothing twice.
    assert_eq!(
        ws.once("2026-11-23T10:00:00+08:00").stdout.trim(),
        "0 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn reminder_goes_out_when_no_review_arrives() {
    let (sink, ws) = setup();
    ws.import(&[delivered(
        "evt-1",
        "c-42",
        "wang.fang@example.com",
        "SO-1001",
        DELIVERED_AT,
    )])
    .ok();
    ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(
        ws.once("2026-11-27T09:59:00+08:00").stdout.trim(),
        "0 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    assert_eq!(
        ws.once("2026-11-27T10:00:00+08:00").stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    let mail = sink.messages();
    assert_eq!(mail.len(), 2);
    assert_eq!(mail[1].subject, "提醒：订单 SO-1001 的评价还差一步");
    assert_ne!(mail[0].message_id, mail[1].message_id);
    // One reminder only: nothing further is planned.
    let log = ws.logs_json(&["--order", "SO-1001"]);
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert!(log.as_array().unwrap().iter().all(|m| m["state"] == "sent"));
}

#[test]
fn review_in_between_stops_the_reminder_with_a_reason() {
    let (sink, ws) = setup();
    ws.import(&[
        delivered(
            "evt-1",
            "c-42",
            "wang.fang@example.com",
            "SO-1001",
            DELIVERED_AT,
        ),
        delivered(
            "evt-2",
            "c-42",
            "wang.fang@example.com",
            "SO-2002",
            DELIVERED_AT,
        ),
    ])
    .ok();
    ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(sink.messages().len(), 2);
    // A review for SO-1001 only: the SO-2002 reminder still goes.
    let r = ws
        .import(&[reviewed(
            "evt-3",
            "c-42",
            "SO-1001",
            "2026-11-24T08:00:00+08:00",
        )])
        .ok();
    assert!(r.stdout.contains("1 stopped"), "{}", r.stdout);
    let r = ws.once("2026-11-27T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "1 sent, 0 retrying, 0 failed, 0 cancelled");
    let mail = sink.messages();
    assert_eq!(mail.len(), 3);
    assert!(mail[2].subject.contains("SO-2002"), "{}", mail[2].subject);

    let log = ws.logs_json(&["--order", "SO-1001", "--status", "cancelled"]);
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["step"], 1);
    assert_eq!(
        log[0]["reason"],
        "stopped: review.submitted received for order_id=SO-1001 (event evt-3)"
    );
}

#[test]
fn stop_condition_is_checked_again_at_send_time() {
    // The job gains its stop_when only after the review was stored: nothing cancelled the
    // pending message at import, so dispatch must notice by itself.
    let (sink, ws) = setup();
    let job = std::fs::read_to_string(ws.path("jobs/review-request.yaml")).unwrap();
    let without_stop = job.split("stop_when:").next().unwrap().to_string();
    ws.write("jobs/review-request.yaml", &without_stop);
    ws.import(&[
        delivered(
            "evt-1",
            "c-42",
            "wang.fang@example.com",
            "SO-1001",
            DELIVERED_AT,
        ),
        reviewed("evt-2", "c-42", "SO-1001", "2026-11-21T08:00:00+08:00"),
    ])
    .ok();
    ws.write("jobs/review-request.yaml", &job);
    let r = ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "0 sent, 0 retrying, 0 failed, 1 cancelled");
    assert!(sink.messages().is_empty());
    let log = ws.logs_json(&["--job", "review-request"]);
    assert_eq!(log[0]["state"], "cancelled");
    assert_eq!(
        log[0]["reason"],
        "stopped: review.submitted received for order_id=SO-1001"
    );
}

#[test]
fn a_review_before_the_delivery_event_plans_nothing_to_send() {
    let (sink, ws) = setup();
    ws.import(&[
        reviewed("evt-2", "c-42", "SO-1001", "2026-11-21T08:00:00+08:00"),
        delivered(
            "evt-1",
            "c-42",
            "wang.fang@example.com",
            "SO-1001",
            DELIVERED_AT,
        ),
    ])
    .ok();
    assert_eq!(
        ws.once("2026-11-30T10:00:00+08:00").stdout.trim(),
        "0 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    assert!(sink.messages().is_empty());
    let log = ws.logs_json(&[]);
    assert_eq!(log[0]["state"], "cancelled");
}

/// A stop event counts from the trigger's time on: returns last spring and yesterday do not
/// stop today's delivery's request; the return after a delivery does, even imported first.
#[test]
fn a_stop_event_from_before_the_trigger_stops_nothing() {
    let (sink, ws) = setup();
    let job = std::fs::read_to_string(ws.path("jobs/review-request.yaml")).unwrap();
    let head = job.split("stop_when:").next().unwrap();
    ws.write(
        "jobs/review-request.yaml",
        &format!(
            "{head}stop_when: [{{event: review.submitted, match: [order_id]}}, order.returned]\n"
        ),
    );
    let returned = |id: &str, order: &str, at: &str| {
        reviewed(id, "c-42", order, at).replace("review.submitted", "order.returned")
    };
    ws.import(&[
        returned("ret-0", "SO-1000", "2026-03-02T10:00:00+08:00"),
        returned("ret-2", "SO-1002", "2026-11-21T10:00:00+08:00"),
        delivered(
            "evt-2",
            "c-42",
            "wang.fang@example.com",
            "SO-1002",
            DELIVERED_AT,
        ),
        delivered(
            "evt-1",
            "c-42",
            "wang.fang@example.com",
            "SO-1001",
            "2026-11-22T10:00:00+08:00",
        ),
    ])
    .ok();
    let log = ws.logs_json(&[]);
    let state = |order: &str| {
        log.as_array()
            .unwrap()
            .iter()
            .find(|m| m["order_id"] == order)
            .map(|m| m["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state("SO-1001").as_deref(), Some("scheduled"), "{log:#}");
    assert_eq!(state("SO-1002").as_deref(), Some("cancelled"), "{log:#}");
    assert!(
        ws.once("2026-11-25T10:00:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn duplicate_events_give_one_message() {
    let (sink, ws) = setup();
    let e = delivered(
        "evt-1",
        "c-42",
        "wang.fang@example.com",
        "SO-1001",
        DELIVERED_AT,
    );
    // The same event twice, then the same order again under a new event id.
    let again = delivered(
        "evt-9",
        "c-42",
        "wang.fang@example.com",
        "SO-1001",
        "2026-11-20T11:00:00+08:00",
    );
    let r = ws.import(&[e.clone(), e.clone(), again]).ok();
    assert!(
        r.stdout.contains(
            "2 accepted, 1 duplicate, 0 rejected; 1 message(s) planned, 1 already planned"
        ),
        "{}",
        r.stdout
    );
    let r = ws.import(&[e]).ok();
    assert!(r.stdout.contains("0 accepted, 1 duplicate"), "{}", r.stdout);
    ws.once("2026-11-24T10:00:00+08:00");
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn transient_failure_is_retried_then_sent() {
    let sink = SmtpSink::start(&["-r", "rcpt", "-b", "451 4.3.2 Please try again later"]);
    let ws = Workspace::new(Some(sink.port));
    ws.import(&[delivered(
        "evt-1",
        "c-42",
        "wang.fang@example.com",
        "SO-1001",
        DELIVERED_AT,
    )])
    .ok();
    let r = ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "0 sent, 1 retrying, 0 failed, 0 cancelled");
    let log = ws.logs_json(&[]);
    assert_eq!(log[0]["state"], "retrying");
    assert_eq!(log[0]["attempt_log"][0]["outcome"], "transient");
    assert_eq!(log[0]["attempt_log"][0]["code"], 451);
    assert!(
        log[0]["attempt_log"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("Please try again later")
    );
    // The next try is one minute later (± jitter), not at once.
    assert_eq!(
        ws.once("2026-11-23T10:00:30+08:00").stdout.trim(),
        "0 sent, 0 retrying, 0 failed, 0 cancelled"
    );

    // The server recovers.
    let port = sink.stop();
    let sink = SmtpSink::start_on(port, &[]);
    let r = ws.once("2026-11-23T10:02:00+08:00");
    assert_eq!(r.stdout.trim(), "1 sent, 0 retrying, 0 failed, 0 cancelled");
    let mail = sink.messages();
    assert_eq!(mail.len(), 1);
    let log = ws.logs_json(&[]);
    assert_eq!(log[0]["state"], "sent");
    assert_eq!(log[0]["attempts"], 2);
    let attempts = log[0]["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1]["outcome"], "sent");
    // Both attempts carried the same Message-ID: a resend is recognisable.
    assert_eq!(attempts[0]["provider_id"], attempts[1]["provider_id"]);
    assert_eq!(
        attempts[1]["provider_id"],
        format!("<{}>", mail[0].message_id)
    );
}

#[test]
fn retries_stop_at_the_configured_limit() {
    let sink = SmtpSink::start(&["-r", "rcpt"]);
    let ws = Workspace::new(Some(sink.port));
    ws.write_config(
        Some(sink.port),
        "dispatch:\n  retry: {max_attempts: 2, initial: 1m, max: 1h}\n",
    );
    ws.import(&[delivered(
        "evt-1",
        "c-42",
        "wang.fang@example.com",
        "SO-1001",
        DELIVERED_AT,
    )])
    .ok();
    assert!(
        ws.once("2026-11-23T10:00:00+08:00")
            .stdout
            .contains("1 retrying")
    );
    assert!(
        ws.once("2026-11-23T11:00:00+08:00")
            .stdout
            .contains("1 failed")
    );
    let log = ws.logs_json(&["--status", "failed"]);
    assert!(
        log[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 2 attempts; last: 450"),
        "{}",
        log[0]["reason"]
    );
}

#[test]
fn permanent_failure_fails_at_once_with_the_servers_words() {
    let text = "550 5.1.1 <wang.fang@example.com>: Recipient address rejected: User unknown in local recipient table";
    let sink = SmtpSink::start(&["-f", "rcpt", "-B", text]);
    let ws = Workspace::new(Some(sink.port));
    ws.import(&[delivered(
        "evt-1",
        "c-42",
        "wang.fang@example.com",
        "SO-1001",
        DELIVERED_AT,
    )])
    .ok();
    let r = ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "0 sent, 0 retrying, 1 failed, 0 cancelled");
    let table = ws
        .run(&[
            "logs",
            "--contact",
            "wang.fang@example.com",
            "--status",
            "failed",
        ])
        .ok()
        .stdout;
    assert!(table.contains("failed"), "{table}");
    assert!(
        table.contains(
            "550 5.1.1 <wang.fang@example.com>: Recipient address rejected: User unknown"
        ),
        "{table}"
    );
    // Failed for good: no retry, no reminder.
    assert_eq!(
        ws.once("2026-12-30T10:00:00+08:00").stdout.trim(),
        "0 sent, 0 retrying, 0 failed, 0 cancelled"
    );
}

#[test]
fn server_down_is_transient() {
    let port = common::free_port();
    let ws = Workspace::new(Some(port));
    ws.import(&[delivered(
        "evt-1",
        "c-42",
        "wang.fang@example.com",
        "SO-1001",
        DELIVERED_AT,
    )])
    .ok();
    let r = ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "0 sent, 1 retrying, 0 failed, 0 cancelled");
    let log = ws.logs_json(&[]);
    assert!(
        log[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{}",
        log[0]["reason"]
    );
}

/// An empty dedupe key would make the first such event the one message of every later one,
/// whoever its customer (the key is unique per job, not per contact); a key longer than a
/// PostgreSQL index entry holds would pass on SQLite only. Both are refused, by line.
#[test]
fn an_empty_or_overlong_dedupe_key_is_refused_not_shared() {
    let (_sink, ws) = setup();
    ws.keep_jobs(&["review-request", "complaint-callback"]);
    let empty = |id: &str, contact: &str, order: &str| {
        serde_json::json!({
            "id": id, "type": "order.delivered", "occurred_at": DELIVERED_AT,
            "contact": {"id": contact, "email": format!("{contact}@example.com")},
            "data": {"order_id": order}
        })
        .to_string()
    };
    let long = serde_json::json!({
        "id": "evt-9", "type": "complaint.resolved", "occurred_at": DELIVERED_AT,
        "contact": {"id": "c-9", "email": "c-9@example.com"},
        "data": {"complaint_id": "x".repeat(1025)}
    })
    .to_string();
    let r = ws.import(&[
        empty("evt-1", "c-1", ""),
        empty("evt-2", "c-2", "  "),
        long,
        empty("evt-3", "c-3", "SO-3"),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.contains("1 accepted, 0 duplicate, 3 rejected"),
        "{}",
        r.stdout
    );
    for want in [
        "events.jsonl:1: data: job review-request: dedupe `{{event.data.order_id}}` is empty for this event",
        // White space only is refused as an order id before any job reads it.
        "events.jsonl:2: data.order_id: is only white space",
        "events.jsonl:3: data: job complaint-callback: dedupe `{{event.data.complaint_id}}` is 1025 bytes for this event; at most 1024",
    ] {
        assert!(r.stderr.contains(want), "missing {want:?} in\n{}", r.stderr);
    }
}

#[test]
fn bad_event_lines_are_rejected_with_line_numbers_and_store_nothing() {
    let (_sink, ws) = setup();
    let good = delivered(
        "evt-1",
        "c-42",
        "wang.fang@example.com",
        "SO-1001",
        DELIVERED_AT,
    );
    let bad_email = delivered("evt-2", "c-50", "zhang@", "SO-1002", DELIVERED_AT);
    let no_order = serde_json::json!({
        "id": "evt-3", "type": "order.delivered", "occurred_at": DELIVERED_AT,
        "contact": {"id": "c-51", "email": "li@example.com"}, "data": {}
    })
    .to_string();
    let bad_time = delivered(
        "evt-4",
        "c-52",
        "z@example.com",
        "SO-1004",
        "2026-11-20 10:00",
    );
    let lines = [good, "{not json".into(), bad_email, no_order, bad_time];
    let r = ws.import(&lines);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout.contains("1 accepted, 0 duplicate, 4 rejected"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("events.jsonl:2: not valid JSON"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("events.jsonl:3: contact.email: `zhang@` is not a valid email address"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("events.jsonl:4: data: job review-request: dedupe `{{event.data.order_id}}` cannot be computed for this event: `event.data.order_id` is missing"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("events.jsonl:5: occurred_at: `2026-11-20 10:00` is not an RFC 3339 time"),
        "{}",
        r.stderr
    );
    // In line order: line 4's refusal comes from planning, the others' from reading.
    let at: Vec<Option<usize>> = (2..=5)
        .map(|n| r.stderr.find(&format!("events.jsonl:{n}:")))
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]) && at[0].is_some(),
        "{}",
        r.stderr
    );
    let log = ws.logs_json(&[]);
    assert_eq!(log.as_array().unwrap().len(), 1);
    for contact in ["c-50", "c-51", "c-52", "li@example.com"] {
        assert_eq!(
            ws.logs_json(&["--contact", contact])
                .as_array()
                .unwrap()
                .len(),
            0
        );
    }
    // The rejected lines, fixed, import cleanly: nothing half-stored blocks them.
    let fixed = delivered("evt-3", "c-51", "li@example.com", "SO-1003", DELIVERED_AT);
    assert!(ws.import(&[fixed]).ok().stdout.contains("1 accepted"));
}

#[test]
fn contact_without_email_is_cancelled_with_a_reason() {
    let (sink, ws) = setup();
    let e = serde_json::json!({
        "id": "evt-1", "type": "order.delivered", "occurred_at": DELIVERED_AT,
        "contact": {"id": "c-9", "phone": "+8613800138000"}, "data": {"order_id": "SO-9"}
    })
    .to_string();
    ws.import(&[e]).ok();
    assert!(
        ws.once("2026-11-23T10:00:00+08:00")
            .stdout
            .contains("1 cancelled")
    );
    assert!(sink.messages().is_empty());
    let log = ws.logs_json(&["--contact", "+86 138 0013 8000"]);
    assert_eq!(
        log[0]["reason"],
        "not sent: email: contact c-9 has no email address"
    );
}

#[test]
fn stale_events_expire_instead_of_surprising_customers() {
    let (sink, ws) = setup();
    ws.import(&[delivered(
        "evt-1",
        "c-42",
        "wang.fang@example.com",
        "SO-1001",
        "2026-01-10T10:00:00+08:00",
    )])
    .ok();
    let r = ws.once("2026-11-23T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "0 sent, 0 retrying, 0 failed, 1 cancelled");
    assert!(sink.messages().is_empty());
    let log = ws.logs_json(&[]);
    assert!(
        log[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("expired: due 2026-01-13"),
        "{}",
        log[0]["reason"]
    );
}

#[test]
fn english_contact_gets_english_templates_and_new_york_dates() {
    let (sink, ws) = setup();
    let e = serde_json::json!({
        "id": "evt-1", "type": "order.delivered", "occurred_at": "2026-11-20T23:30:00-05:00",
        "contact": {"id": "c-7", "name": "Emily & Co", "email": "emily@example.com", "locale": "en-US", "timezone": "America/New_York"},
        "data": {"order_id": "SO-7"}
    })
    .to_string();
    ws.import(&[e]).ok();
    ws.once("2026-11-24T05:00:00Z");
    let mail = sink.messages();
    assert_eq!(mail[0].subject, "Emily & Co, how is your order SO-7?");
    assert!(
        mail[0].text.contains("was delivered on November 20, 2026"),
        "{}",
        mail[0].text
    );
    assert!(mail[0].html.as_deref().unwrap().contains("Emily &amp; Co"));
}

/// `events import` stores 1,024 events a transaction; what a batch decides must not depend on
/// where the batches happen to be cut. Over four batches: a review that stops a request
/// planned in the batch just before (the first line of a batch, against the last of the one
/// before), one that stops a request two batches back, a contact whose later delivery
/// changes its address, and an event repeated across a boundary. Each comes out as if the
/// events came one by one.
fn a_long_import_decides_across_batches_as_if_the_events_came_one_by_one(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&["review-request"]);
    let later = "2026-11-21T10:00:00+08:00";
    let mut lines = deliveries(3500, DELIVERED_AT);
    // Batches: lines 0..1024, 1024..2048, 2048..3072, 3072..3500.
    lines[1024] = reviewed("rev-1023", "c-1023", "SO-1023", later);
    lines[2500] = reviewed("rev-20", "c-20", "SO-20", later);
    lines[2600] = delivered("evt-x30", "c-30", "new30@example.com", "SO-30b", later);
    lines[3072] = lines[3071].clone();
    let r = ws.import(&lines).ok();
    assert!(
        r.stdout.contains(
            "3499 accepted, 1 duplicate, 0 rejected; 3497 message(s) planned, 0 already planned, 2 stopped"
        ),
        "{}",
        r.stdout
    );
    for (order, event) in [("SO-1023", "rev-1023"), ("SO-20", "rev-20")] {
        let log = ws.logs_json(&["--order", order, "--status", "cancelled"]);
        assert_eq!(log.as_array().unwrap().len(), 1, "{order}: {log}");
        assert_eq!(
            log[0]["reason"],
            format!("stopped: review.submitted received for order_id={order} (event {event})")
        );
    }
    // Nothing else was stopped.
    let cancelled = ws.logs_json(&["--status", "cancelled"]);
    assert_eq!(cancelled.as_array().unwrap().len(), 2, "{cancelled}");
    // c-30's two requests, under the address its second delivery gave it.
    let log = ws.logs_json(&["--contact", "new30@example.com"]);
    assert_eq!(log.as_array().unwrap().len(), 2, "{log}");
}

/// A shop's history imported after its live events (a backfill) must not put back what the
/// customer has since changed: fields follow the newest event that changed them; an older event
/// only fills what the contact lacks. In one import, out of order, and across two.
fn a_backfill_after_live_events_does_not_undo_a_newer_address_or_consent(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&["review-request"]);
    let event = |id: &str, at: &str, contact: &str, fields: serde_json::Value| {
        let mut c = fields;
        c["id"] = contact.into();
        serde_json::json!({"id": format!("{contact}-{id}"), "type": "order.delivered",
            "occurred_at": at, "contact": c, "data": {"order_id": format!("SO-{contact}-{id}")}})
        .to_string()
    };
    let live = |contact| {
        event(
            "live",
            "2026-11-20T10:00:00+08:00",
            contact,
            serde_json::json!({"email": "new@example.com", "consent": {"email": false}}),
        )
    };
    let june = |contact| {
        event(
            "june",
            "2026-06-01T10:00:00+08:00",
            contact,
            serde_json::json!({"name": "王芳", "email": "old@example.com",
                "phone": "+8613800138000", "consent": {"email": true, "sms": true}}),
        )
    };
    let contact = |id: &str| -> serde_json::Value {
        let doc: serde_json::Value =
            serde_json::from_str(&ws.run(&["contact", "export", id]).ok().stdout).unwrap();
        doc["contact"].clone()
    };
    ws.import(&[live("c-1")]).ok();
    ws.import(&[june("c-1")]).ok();
    let c = contact("c-1");
    assert_eq!(c["email"], "new@example.com", "{b:?}: {c}");
    assert_eq!(c["consent"]["email"], false, "{b:?}: {c}");
    // What the newer event never said is filled from the older one.
    assert_eq!(c["name"], "王芳", "{b:?}: {c}");
    assert_eq!(c["phone"], "+8613800138000", "{b:?}: {c}");
    assert_eq!(c["consent"]["sms"], true, "{b:?}: {c}");
    // A newer event still changes what it carries.
    let dec = event(
        "dec",
        "2026-12-01T10:00:00+08:00",
        "c-1",
        serde_json::json!({"email": "newest@example.com"}),
    );
    ws.import(&[dec]).ok();
    assert_eq!(contact("c-1")["email"], "newest@example.com", "{b:?}");
    // The same order of arrival inside one import (one batch) decides the same.
    ws.import(&[live("c-2"), june("c-2")]).ok();
    let c = contact("c-2");
    assert_eq!(c["email"], "new@example.com", "{b:?}: {c}");
    assert_eq!(c["consent"]["email"], false, "{b:?}: {c}");
    assert_eq!(c["phone"], "+8613800138000", "{b:?}: {c}");
}

use common::{Backend, on_both};

on_both!(
    a_long_import_decides_across_batches_as_if_the_events_came_one_by_one,
    a_backfill_after_live_events_does_not_undo_a_newer_address_or_consent,
);
