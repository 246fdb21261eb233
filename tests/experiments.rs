//! Experiments and outcomes through the real binary, on SQLite and on PostgreSQL: variants
//! split contacts by their weights and keep each contact in its arm across processes; the
//! holdout gets nothing and is counted; list `stop_when` cancels on any of its events; and
//! `report conversions` on a fixture whose figures were computed by hand.

mod common;

use common::{Backend, Workspace, delivered, reviewed};
use serde_json::{Value, json};
use std::collections::HashMap;

const DELIVERED: &str = "2026-11-20T10:00:00+08:00";
const DUE: &str = "2026-11-23T10:00:00+08:00";

fn deliveries(range: std::ops::Range<usize>, order_prefix: &str, first_id: usize) -> Vec<String> {
    range
        .enumerate()
        .map(|(n, i)| {
            delivered(
                &format!("evt-{}", first_id + n),
                &format!("c-{i}"),
                &format!("c{i}@example.com"),
                &format!("{order_prefix}-{i}"),
                DELIVERED,
            )
        })
        .collect()
}

/// (contact, arm) of each first message: the variant's name, or `held_out`.
fn arms(ws: &Workspace, order_prefix: &str) -> HashMap<String, String> {
    let log = ws.logs_json(&["--job", "ab", "--limit", "100000"]);
    log.as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["order_id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{order_prefix}-"))
        })
        .map(|m| {
            let arm = if m["state"] == "held_out" {
                "held_out".to_string()
            } else {
                m["variant"].as_str().unwrap().to_string()
            };
            (m["contact_id"].as_str().unwrap().to_string(), arm)
        })
        .collect()
}

fn variants_split_by_weight_hold_across_processes_and_the_holdout_gets_nothing(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&[]);
    ws.write(
        "jobs/ab.yaml",
        "id: ab\ntrigger: {event: order.delivered, delay: 3d}\nchannels: [email]\n\
         dedupe: \"{{event.data.order_id}}\"\n\
         variants:\n  - {name: a, template: review_request, weight: 50}\n  - {name: b, template: review_reminder, weight: 50}\n\
         holdout: 10%\nstop_when: {event: review.submitted, match: [order_id]}\n",
    );
    assert!(
        ws.run(&["validate"]).ok().stdout.contains("1 job"),
        "validate"
    );
    ws.import(&deliveries(0..2000, "SO", 0)).ok();
    // Planned, every first message has its contact's variant; the holdout is drawn when it
    // is due.
    let planned = arms(&ws, "SO");
    assert_eq!(planned.len(), 2000);
    let count = |m: &HashMap<String, String>, arm: &str| m.values().filter(|a| *a == arm).count();
    assert_eq!(count(&planned, "held_out"), 0);
    let out = ws.once(DUE).stdout;
    let first = arms(&ws, "SO");
    assert_eq!(first.len(), 2000);
    let (held, a, bee) = (
        count(&first, "held_out"),
        count(&first, "a"),
        count(&first, "b"),
    );
    // 10% ± 2 points held out; the rest 50/50 ± 5 points.
    assert!((160..=240).contains(&held), "held out {held}");
    let sent = (a + bee) as f64;
    assert!((a as f64 / sent - 0.5).abs() <= 0.05, "a {a} b {bee}");
    // The holdout gets nothing; every other first message goes with the variant it was
    // planned with.
    assert_eq!(
        out.trim(),
        format!(
            "{} sent, 0 retrying, 0 failed, 0 cancelled, {held} held out",
            2000 - held
        )
    );
    for (contact, arm) in first.iter().filter(|(_, a)| *a != "held_out") {
        assert_eq!(planned.get(contact), Some(arm), "{contact} changed variant");
    }
    // Another process (a restart, or another node) plans new orders of the same contacts:
    // each contact stays in its arm.
    ws.import(&deliveries(0..500, "SO2", 2000)).ok();
    let out = ws.once(DUE).stdout;
    let second = arms(&ws, "SO2");
    assert_eq!(second.len(), 500);
    for (contact, arm) in &second {
        assert_eq!(first.get(contact), Some(arm), "{contact} changed arm");
    }
    let held_second = count(&second, "held_out");
    assert_eq!(
        out.trim(),
        format!(
            "{} sent, 0 retrying, 0 failed, 0 cancelled, {held_second} held out",
            500 - held_second
        )
    );
    let held_total = held + held_second;
    let log = ws.logs_json(&["--job", "ab", "--limit", "100000"]);
    for m in log.as_array().unwrap() {
        match m["state"].as_str().unwrap() {
            "held_out" => {
                assert!(m["attempt_log"].as_array().unwrap().is_empty());
                assert!(
                    m["reason"]
                        .as_str()
                        .unwrap()
                        .starts_with("held out: in the 10% holdout of ab"),
                    "{m}"
                );
                assert_eq!(m["variant"], Value::Null);
            }
            "sent" => {
                let want = if m["variant"] == "a" {
                    "review_request"
                } else {
                    "review_reminder"
                };
                assert_eq!(m["template"], want, "{m}");
            }
            other => panic!("{other}: {m}"),
        }
    }
    let emails = std::fs::read_dir(ws.path("data/outbox")).unwrap().count();
    assert_eq!(emails, 2500 - held_total);
    let contact = first.iter().find(|(_, a)| *a == "held_out").unwrap().0;
    let table = ws
        .run(&["logs", "--contact", contact, "--job", "ab"])
        .ok()
        .stdout;
    assert!(
        table.contains("held out")
            && table.contains("held out: in the 10% holdout of ab; nothing is sent"),
        "{table}"
    );

    // The report counts them: planned per variant, and the holdout beside the messaged.
    let r = conversions(&ws, "ab", "2026-11-01", "2026-12-01", Some("variant"));
    assert_eq!(r["total"]["held_out"], json!(held_total), "{r}");
    assert_eq!(r["total"]["sent"], json!(2500 - held_total));
    let group = |k: &str| {
        r["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"] == k)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        group("a")["sent"].as_u64().unwrap() + group("b")["sent"].as_u64().unwrap(),
        (2500 - held_total) as u64
    );
    let comparisons = r["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 2, "{r}");
    assert_eq!(
        (comparisons[0]["a"].as_str(), comparisons[0]["b"].as_str()),
        (Some("a"), Some("b"))
    );
    assert_eq!(comparisons[1]["a"], "holdout");
}

/// The hand-computed fixture: eight orders delivered on 11-20 (first message due 11-23,
/// reminder 4 days after it is sent, goal: the review of the same order within 5 days).
///
/// | order | what happens                                         | counts as                       |
/// |-------|------------------------------------------------------|---------------------------------|
/// | SO-1  | sent 11-23; review 11-24                             | converted at step 0; reminder cancelled |
/// | SO-2  | sent 11-23, reminder 11-27; review 11-29              | converted at step 1             |
/// | SO-3  | sent 11-23; a review dated 11-22 arrives late         | not converted (before the send); reminder cancelled |
/// | SO-4  | sent 11-23, reminder 11-27; review 12-03 (6 days)     | not converted (after the window) |
/// | SO-5  | sent 11-23, reminder 11-27; no review                 | not converted                   |
/// | SO-6  | sent 11-23, reminder 11-27; a review of another order | not converted (other order)     |
/// | SO-7  | the contact has no email address                     | cancelled: no channel           |
/// | SO-8  | returned on 11-22                                    | cancelled: stop_when order.returned |
///
/// Planned 8 + 6 reminders = 14; sent 6 + 4 = 10; cancelled 4; reached 6; converted 2:
/// 33.3%, Wilson 95% interval 9.7% to 70.0%.
fn the_conversion_report_matches_a_hand_computed_fixture(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&[]);
    ws.write(
        "jobs/rr.yaml",
        &rr_job("[{event: review.submitted, match: [order_id]}, order.returned, {event: complaint.opened}]"),
    );
    let mut lines: Vec<String> = (1..=8)
        .map(|i| {
            let email = if i == 7 {
                None
            } else {
                Some(format!("c{i}@example.com"))
            };
            let mut contact =
                json!({"id": format!("c-{i}"), "locale": "zh-CN", "timezone": "Asia/Shanghai"});
            if let Some(e) = email {
                contact["email"] = json!(e);
            }
            json!({"id": format!("d-{i}"), "type": "order.delivered", "occurred_at": DELIVERED,
                   "contact": contact, "data": {"order_id": format!("SO-{i}")}})
            .to_string()
        })
        .collect();
    lines.push(
        json!({"id": "ret-8", "type": "order.returned", "occurred_at": "2026-11-22T09:00:00+08:00",
               "contact": {"id": "c-8"}, "data": {"order_id": "SO-8"}})
        .to_string(),
    );
    let imported = ws.import(&lines).ok().stdout;
    assert!(imported.contains("9 accepted"), "{imported}");
    let so8 = ws.logs_json(&["--order", "SO-8"]);
    assert_eq!(so8[0]["state"], "cancelled");
    assert!(
        so8[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("stopped: order.returned received"),
        "{so8}"
    );

    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "6 sent, 0 retrying, 0 failed, 1 cancelled"
    );
    ws.import(&[
        reviewed("rv-1", "c-1", "SO-1", "2026-11-24T12:00:00+08:00"),
        reviewed("rv-3", "c-3", "SO-3", "2026-11-22T20:00:00+08:00"),
        reviewed("rv-6", "c-6", "SO-99", "2026-11-25T12:00:00+08:00"),
    ])
    .ok();
    assert_eq!(
        ws.once("2026-11-27T10:00:00+08:00").stdout.trim(),
        "4 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    ws.import(&[
        reviewed("rv-2", "c-2", "SO-2", "2026-11-29T12:00:00+08:00"),
        reviewed("rv-4", "c-4", "SO-4", "2026-12-03T12:00:00+08:00"),
    ])
    .ok();

    let report = |by| conversions(&ws, "rr", "2026-11-01", "2027-01-01", by);
    let r = report(None);
    let t = &r["total"];
    let figures: Vec<i64> = [
        "planned",
        "sent",
        "delivered",
        "failed",
        "cancelled",
        "pending",
        "reached",
        "converted",
        "held_out",
    ]
    .iter()
    .map(|k| t[*k].as_i64().unwrap())
    .collect();
    assert_eq!(figures, [14, 10, 0, 0, 4, 0, 6, 2, 0], "{r}");
    assert_eq!(
        t["cancelled_by"],
        json!({"stopped: review.submitted": 2, "stopped: order.returned": 1, "no channel could reach the contact": 1})
    );
    let rate = &t["rate"];
    let close = |v: &Value, want: f64| (v.as_f64().unwrap() - want).abs() < 5e-4;
    assert!(
        close(&rate["rate"], 2.0 / 6.0)
            && close(&rate["low"], 0.0968)
            && close(&rate["high"], 0.7000),
        "{rate}"
    );
    assert_eq!(r["goal"], json!(["review.submitted by order_id"]));
    assert_eq!(r["goal_window"], "5d");

    let steps = report(Some("step"));
    let row = |k: &str| {
        steps["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["key"] == k)
            .cloned()
            .unwrap()
    };
    let pick = |g: &Value| -> Vec<i64> {
        ["planned", "sent", "cancelled", "reached", "converted"]
            .iter()
            .map(|k| g[*k].as_i64().unwrap())
            .collect()
    };
    assert_eq!(pick(&row("step 0")), [8, 6, 2, 6, 1]);
    assert_eq!(pick(&row("step 1")), [6, 4, 2, 4, 1]);
    assert_eq!(steps["total"]["converted"], 2);

    // The table says the same, with the interval.
    let table = conversions_report(&ws, "rr", "2026-11-01", "2027-01-01", None, &[]);
    assert!(table.contains("33.3% [9.7–70.0]"), "{table}");
    assert!(
        table.contains("goal: review.submitted by order_id within 5d"),
        "{table}"
    );
    // README's example is this fixture's table, by step (its job is called review-request).
    let by_step = conversions_report(&ws, "rr", "2026-11-01", "2026-12-01", Some("step"), &[]);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap()
        .replace("review-request", "rr");
    let example: String = readme
        .split("$ aftercare report conversions --job rr --since 2026-11-01 --until 2026-12-01 --by step\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README's conversions example")
        .to_string();
    let trimmed = |t: &str| t.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
    assert_eq!(
        trimmed(&by_step),
        trimmed(&example),
        "README's example, as printed"
    );
    // A period that holds none of it.
    let empty = conversions(&ws, "rr", "2025-01-01", "2025-02-01", None);
    assert_eq!(empty["total"]["planned"], 0);
}

/// The holdout is drawn when a message would go, so it meets what a send meets. 400 orders,
/// half the contacts held out: a fifth of the contacts said no to email, a fifth reviewed
/// before the request was due (a stop event), ten unsubscribed; every other customer reviews
/// the day after. Drawn at planning, the holdout kept the ones the messaged group lost
/// (cancelled, not counted) and its rate fell to the clean share: a lift of some 40 points
/// that the messages did not make. Drawn at send time, both groups are the clean customers,
/// and both convert all.
fn the_holdout_meets_the_checks_a_send_meets(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&[]);
    ws.write(
        "jobs/ab.yaml",
        "id: ab\ntrigger: {event: order.delivered, delay: 3d}\ntemplate: review_request\nchannels: [email]\n\
         dedupe: \"{{event.data.order_id}}\"\nholdout: 50%\ngoal_window: 5d\n\
         stop_when: {event: review.submitted, match: [order_id]}\n",
    );
    let no_consent = |i: usize| i.is_multiple_of(5);
    let early_review = |i: usize| i % 5 == 1;
    let unsubscribed = |i: usize| i % 5 == 2 && i < 50;
    let lines: Vec<String> = (0..400)
        .map(|i| {
            let mut contact = json!({"id": format!("c-{i}"), "email": format!("c{i}@example.com"),
                                     "locale": "zh-CN", "timezone": "Asia/Shanghai"});
            if no_consent(i) {
                contact["consent"] = json!({"email": false});
            }
            json!({"id": format!("d-{i}"), "type": "order.delivered", "occurred_at": DELIVERED,
                   "contact": contact, "data": {"order_id": format!("SO-{i}")}})
            .to_string()
        })
        .collect();
    ws.import(&lines).ok();
    let early: Vec<String> = (0..400)
        .filter(|i| early_review(*i))
        .map(|i| {
            reviewed(
                &format!("rv-{i}"),
                &format!("c-{i}"),
                &format!("SO-{i}"),
                "2026-11-22T12:00:00+08:00",
            )
        })
        .collect();
    ws.import(&early).ok();
    for i in (0..400).filter(|i| unsubscribed(*i)) {
        ws.run(&[
            "suppress",
            "add",
            "email",
            &format!("c{i}@example.com"),
            "--reason",
            "unsubscribed",
        ])
        .ok();
    }
    let clean = |i: usize| !no_consent(i) && !early_review(i) && !unsubscribed(i);
    let out = ws.once(DUE).stdout;

    let log = ws.logs_json(&["--job", "ab", "--limit", "100000"]);
    let state: HashMap<String, String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["contact_id"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(state.len(), 400);
    for i in 0..400 {
        let s = &state[&format!("c-{i}")];
        if clean(i) {
            assert!(s == "sent" || s == "held_out", "c-{i} is {s}");
        } else {
            assert_eq!(s, "cancelled", "c-{i}, which no send would reach, is {s}");
        }
    }
    let held = state.values().filter(|s| *s == "held_out").count();
    let sent = state.values().filter(|s| *s == "sent").count();
    let clean_n = (0..400).filter(|i| clean(*i)).count();
    assert_eq!(held + sent, clean_n);
    // Half of the clean ones, give or take four standard deviations (some 8 each).
    assert!(
        held.abs_diff(clean_n / 2) <= 30,
        "held out {held} of {clean_n}"
    );
    assert_eq!(
        out.trim(),
        format!(
            "{sent} sent, 0 retrying, 0 failed, {} cancelled, {held} held out",
            400 - clean_n - (0..400).filter(|i| early_review(*i)).count()
        ),
        "the early reviews cancelled theirs as they came in"
    );

    // Every customer who had not reviewed reviews the day after.
    let later: Vec<String> = (0..400)
        .filter(|i| !early_review(*i))
        .map(|i| {
            reviewed(
                &format!("rv-{i}"),
                &format!("c-{i}"),
                &format!("SO-{i}"),
                "2026-11-24T12:00:00+08:00",
            )
        })
        .collect();
    ws.import(&later).ok();
    let r = conversions(&ws, "ab", "2026-11-01", "2026-12-01", None);
    let t = &r["total"];
    assert_eq!(t["held_out"], json!(held), "{r}");
    assert_eq!(t["held_out_converted"], json!(held), "{r}");
    assert_eq!(t["reached"], json!(sent), "{r}");
    assert_eq!(t["converted"], json!(sent), "{r}");
    let vs = r["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["a"] == "holdout")
        .cloned()
        .unwrap_or_else(|| panic!("no comparison with the holdout: {r}"));
    assert!(vs["difference"].as_f64().unwrap().abs() < 1e-9, "{vs}");
}

/// A thread counts as converted in the period its first message is due in, once, as
/// `reached` counts it. Two orders whose requests were due in October and whose reminders
/// won reviews in November made November `reached 1, converted 2` (200%); and one thread
/// whose request and reminder each won an order counted twice.
fn converted_threads_are_the_reached_threads_that_converted(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&[]);
    ws.write(
        "jobs/rr.yaml",
        &rr_job("[{event: review.submitted, match: [order_id]}]"),
    );
    ws.write(
        "jobs/again.yaml",
        "id: again\ntrigger: {event: order.delivered, delay: 3d}\ntemplate: review_request\nchannels: [email]\n\
         dedupe: \"{{event.data.order_id}}\"\nreminders: [{after: 4d, template: review_reminder}]\n\
         goal: order.placed\ngoal_window: 3d\n",
    );
    let delivered_at = |order: &str, contact: &str, at: &str| {
        delivered(
            &format!("d-{order}"),
            contact,
            &format!("{contact}@example.com"),
            order,
            at,
        )
    };
    ws.import(&[
        delivered_at("SO-1", "c-1", "2026-10-25T10:00:00+08:00"),
        delivered_at("SO-2", "c-2", "2026-10-25T10:00:00+08:00"),
        delivered_at("SO-3", "c-3", "2026-11-05T10:00:00+08:00"),
    ])
    .ok();
    ws.once("2026-10-28T10:00:00+08:00");
    ws.once("2026-11-01T10:00:00+08:00");
    ws.import(&[
        reviewed("rv-1", "c-1", "SO-1", "2026-11-02T12:00:00+08:00"),
        reviewed("rv-2", "c-2", "SO-2", "2026-11-02T12:00:00+08:00"),
    ])
    .ok();
    ws.once("2026-11-08T10:00:00+08:00");
    // c-3's thread of `again`: an order after the request, another after the reminder.
    let placed = |id: &str, at: &str| {
        json!({"id": id, "type": "order.placed", "occurred_at": at, "contact": {"id": "c-3"}, "data": {}})
            .to_string()
    };
    ws.import(&[placed("p-1", "2026-11-09T12:00:00+08:00")])
        .ok();
    ws.once("2026-11-12T10:00:00+08:00");
    ws.import(&[placed("p-2", "2026-11-13T12:00:00+08:00")])
        .ok();

    let total = |job: &str, by: Option<&str>| {
        let r = conversions(&ws, job, "2026-11-01", "2026-12-01", by);
        let t = &r["total"];
        (
            t["reached"].as_i64().unwrap(),
            t["converted"].as_i64().unwrap(),
        )
    };
    assert_eq!(
        total("rr", None),
        (1, 0),
        "SO-3 reached in November, no review"
    );
    assert_eq!(total("rr", Some("step")), (1, 0));
    let steps = conversions(&ws, "rr", "2026-11-01", "2026-12-01", Some("step"));
    let reminders = steps["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "step 1")
        .cloned()
        .unwrap();
    assert_eq!(
        (reminders["sent"].as_i64(), reminders["converted"].as_i64()),
        (Some(3), Some(2)),
        "by step, the reminders due in November (SO-3's too) and the two that won: {steps}"
    );
    assert_eq!(total("again", None), (1, 1), "one thread, converted once");
    assert_eq!(total("again", Some("step")), (1, 1));
}

/// A goal matched on a data field compares values as text on both backends, as stop_when's
/// match does: a shop that sends the product id as a number when delivering and as a
/// string when the review comes converts. (SQLite compared an integer with a text: never.)
fn a_goal_matches_a_number_and_its_digits(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&[]);
    ws.write(
        "jobs/rr.yaml",
        &rr_job("[{event: review.submitted, match: [sku]}]"),
    );
    let mut d: Value = serde_json::from_str(&delivered(
        "d-1",
        "c-1",
        "c1@example.com",
        "SO-1",
        DELIVERED,
    ))
    .unwrap();
    d["data"]["sku"] = json!(42);
    ws.import(&[d.to_string()]).ok();
    ws.once(DUE);
    let review = json!({"id": "rv-1", "type": "review.submitted",
        "occurred_at": "2026-11-24T12:00:00+08:00", "contact": {"id": "c-1"},
        "data": {"sku": "42", "rating": 5}});
    ws.import(&[review.to_string()]).ok();
    let t = &conversions(&ws, "rr", "2026-11-01", "2026-12-01", None)["total"];
    assert_eq!(
        (t["reached"].as_i64(), t["converted"].as_i64()),
        (Some(1), Some(1)),
        "{b:?}: {t}"
    );
}

/// The review request `rr` of the conversion tests (a reminder 4 days after the send, a
/// goal window of 5 days), stopped by `stop_when`.
fn rr_job(stop_when: &str) -> String {
    format!(
        "id: rr\ntrigger: {{event: order.delivered, delay: 3d}}\ntemplate: review_request\nchannels: [email]\n\
         dedupe: \"{{{{event.data.order_id}}}}\"\nreminders: [{{after: 4d, template: review_reminder}}]\n\
         stop_when: {stop_when}\ngoal_window: 5d\n"
    )
}

/// `report conversions` of `job` from `since` to `until`, `--by` if given, then `more`.
fn conversions_report(
    ws: &Workspace,
    job: &str,
    since: &str,
    until: &str,
    by: Option<&str>,
    more: &[&str],
) -> String {
    let mut args = vec![
        "report",
        "conversions",
        "--job",
        job,
        "--since",
        since,
        "--until",
        until,
    ];
    if let Some(b) = by {
        args.extend(["--by", b]);
    }
    args.extend(more);
    ws.run(&args).ok().stdout
}

/// [`conversions_report`] as JSON.
fn conversions(ws: &Workspace, job: &str, since: &str, until: &str, by: Option<&str>) -> Value {
    serde_json::from_str(&conversions_report(
        ws,
        job,
        since,
        until,
        by,
        &["--format", "json"],
    ))
    .unwrap()
}

use common::on_both;

on_both!(
    variants_split_by_weight_hold_across_processes_and_the_holdout_gets_nothing,
    the_conversion_report_matches_a_hand_computed_fixture,
    a_goal_matches_a_number_and_its_digits,
    the_holdout_meets_the_checks_a_send_meets,
    converted_threads_are_the_reached_threads_that_converted,
);
