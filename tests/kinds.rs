//! The job kinds beyond the review request: birthday greetings, recurring surveys and
//! complaint callbacks, through the real binary with time moved by `run --once --now`.

mod common;

use common::http::HttpServer;
use common::{Backend, SmtpSink, Workspace, birthday, event, on_both};
use serde_json::json;

fn setup(jobs: &[&str]) -> (SmtpSink, Workspace) {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::new(Some(sink.port));
    ws.keep_jobs(jobs);
    (sink, ws)
}

fn sent(ws: &Workspace, job: &str) -> Vec<serde_json::Value> {
    ws.logs_json(&["--job", job, "--status", "sent"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn birthday_at_nine_local_in_shanghai_and_new_york_on_the_same_utc_day() {
    let (sink, ws) = setup(&["birthday-greeting"]);
    ws.import(&[
        birthday(
            "u-1",
            "c-sh",
            "王芳",
            "wang.fang@example.com",
            "Asia/Shanghai",
            "zh-CN",
            "1990-11-23",
        ),
        birthday(
            "u-2",
            "c-ny",
            "Emily",
            "emily@example.com",
            "America/New_York",
            "en",
            "1985-11-23",
        ),
    ])
    .ok();
    assert!(ws.once("2026-11-23T00:59:00Z").stdout.starts_with("0 sent"));
    assert!(ws.once("2026-11-23T01:00:00Z").stdout.starts_with("1 sent"));
    assert!(ws.once("2026-11-23T13:59:00Z").stdout.starts_with("0 sent"));
    assert!(ws.once("2026-11-23T14:00:00Z").stdout.starts_with("1 sent"));
    let mail = sink.messages();
    assert_eq!(mail.len(), 2);
    assert_eq!(
        (mail[0].to.as_str(), mail[0].subject.as_str()),
        ("wang.fang@example.com", "王芳，生日快乐！")
    );
    assert_eq!(
        (mail[1].to.as_str(), mail[1].subject.as_str()),
        ("emily@example.com", "Happy birthday, Emily!")
    );
    let log = sent(&ws, "birthday-greeting");
    let at: Vec<&str> = log
        .iter()
        .map(|m| m["attempt_log"][0]["at"].as_str().unwrap())
        .collect();
    assert_eq!(at, ["2026-11-23T01:00:00Z", "2026-11-23T14:00:00Z"]);
}

/// `audience.where` holds for greetings as for any job: only the gold members are greeted.
#[test]
fn a_birthday_audience_greets_only_the_contacts_it_admits() {
    let (sink, ws) = setup(&["birthday-greeting"]);
    ws.append(
        "jobs/birthday.yaml",
        "audience:\n  where:\n    contact.attributes.tier: [gold]\n",
    );
    let member = |id: &str, contact: &str, tier: &str| {
        json!({"id": id, "type": "contact.updated", "occurred_at": "2026-01-01T00:00:00Z",
               "contact": {"id": contact, "email": format!("{contact}@example.com"),
                           "timezone": "Asia/Shanghai", "birthday": "1990-11-23",
                           "attributes": {"tier": tier}}})
        .to_string()
    };
    ws.import(&[
        member("u-1", "c-gold", "gold"),
        member("u-2", "c-silver", "silver"),
    ])
    .ok();
    assert!(ws.once("2026-11-23T01:00:00Z").stdout.starts_with("1 sent"));
    let to: Vec<String> = sink.messages().iter().map(|m| m.to.clone()).collect();
    assert_eq!(to, ["c-gold@example.com"]);
}

#[test]
fn feb_29_birthdays_in_common_and_leap_years() {
    let (sink, ws) = setup(&["birthday-greeting"]);
    ws.import(&[birthday(
        "u-1",
        "c-1",
        "闰日",
        "leap@example.com",
        "Asia/Shanghai",
        "zh-CN",
        "1992-02-29",
    )])
    .ok();
    // 2027 is a common year: Feb 28 (the default policy), not Mar 1.
    assert!(ws.once("2027-02-27T01:00:00Z").stdout.starts_with("0 sent"));
    assert!(ws.once("2027-02-28T01:00:00Z").stdout.starts_with("1 sent"));
    assert!(ws.once("2027-03-01T01:00:00Z").stdout.starts_with("0 sent"));
    // 2028 is a leap year: Feb 29 itself.
    assert!(ws.once("2028-02-28T01:00:00Z").stdout.starts_with("0 sent"));
    assert!(ws.once("2028-02-29T01:00:00Z").stdout.starts_with("1 sent"));
    assert_eq!(sink.messages().len(), 2);

    // With leap_day: mar1 the common-year greeting moves to Mar 1.
    let (sink, ws) = setup(&["birthday-greeting"]);
    let job = std::fs::read_to_string(ws.path("jobs/birthday.yaml")).unwrap();
    ws.write(
        "jobs/birthday.yaml",
        &job.replace("  at: \"09:00\"", "  at: \"09:00\"\n  leap_day: mar1"),
    );
    ws.import(&[birthday(
        "u-1",
        "c-1",
        "闰日",
        "leap@example.com",
        "Asia/Shanghai",
        "zh-CN",
        "1992-02-29",
    )])
    .ok();
    assert!(ws.once("2027-02-28T01:00:00Z").stdout.starts_with("0 sent"));
    assert!(ws.once("2027-03-01T01:00:00Z").stdout.starts_with("1 sent"));
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn no_second_greeting_after_restart_reimport_or_a_second_run() {
    let (sink, ws) = setup(&["birthday-greeting"]);
    let b = birthday(
        "u-1",
        "c-1",
        "王芳",
        "wang.fang@example.com",
        "Asia/Shanghai",
        "zh-CN",
        "1990-11-23",
    );
    ws.import(std::slice::from_ref(&b)).ok();
    ws.once("2026-11-23T01:00:00Z");
    ws.once("2026-11-23T01:00:00Z");
    // The same contact again under a new event id, later the same day.
    ws.import(&[b.replace("u-1", "u-2")]).ok();
    ws.once("2026-11-23T05:00:00Z");
    ws.once("2026-11-23T12:59:00Z");
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(
        ws.logs_json(&["--job", "birthday-greeting"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Next year: one more.
    ws.once("2027-11-23T01:00:00Z");
    assert_eq!(sink.messages().len(), 2);
}

#[test]
fn a_corrected_birthday_gets_the_new_date() {
    let (sink, ws) = setup(&["birthday-greeting"]);
    ws.import(&[birthday(
        "u-1",
        "c-1",
        "王芳",
        "wang.fang@example.com",
        "Asia/Shanghai",
        "zh-CN",
        "1990-11-23",
    )])
    .ok();
    // Planned an hour ahead...
    ws.once("2026-11-23T00:30:00Z");
    assert_eq!(
        ws.logs_json(&["--status", "scheduled"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // ...then support corrects the date.
    ws.import(&[birthday(
        "u-2",
        "c-1",
        "王芳",
        "wang.fang@example.com",
        "Asia/Shanghai",
        "zh-CN",
        "1990-11-25",
    )])
    .ok();
    assert!(ws.once("2026-11-23T01:00:00Z").stdout.starts_with("0 sent"));
    let log = ws.logs_json(&["--job", "birthday-greeting"]);
    assert_eq!(log[0]["state"], "cancelled");
    assert!(
        log[0]["reason"]
            .as_str()
            .unwrap()
            .contains("birthday changed to 11-25"),
        "{}",
        log[0]["reason"]
    );
    assert!(ws.once("2026-11-25T01:00:00Z").stdout.starts_with("1 sent"));
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn anniversary_of_any_date_field() {
    let (sink, ws) = setup(&[]);
    ws.write(
        "jobs/member.yaml",
        "id: member-anniversary\ntrigger: {anniversary: contact.attributes.member_since, at: \"10:00\"}\ntemplate: birthday_greeting\n",
    );
    ws.import(&[event(
        "e-1",
        "contact.updated",
        "c-1",
        "m@example.com",
        "2026-01-01T00:00:00Z",
        json!({"member_since": "2020-06-15"}),
        json!({}),
    )])
    .ok();
    // Two who joined today and one whose date is still to come: no anniversary yet.
    for (i, since) in [(2, "2026-06-15"), (3, "2026-06-15"), (4, "2031-06-15")] {
        ws.import(&[event(
            &format!("e-{i}"),
            "contact.updated",
            &format!("c-{i}"),
            &format!("m{i}@example.com"),
            "2026-06-15T01:00:00Z",
            json!({"member_since": since}),
            json!({}),
        )])
        .ok();
    }
    assert!(ws.once("2026-06-15T02:00:00Z").stdout.starts_with("1 sent"));
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(sink.messages()[0].to, "m@example.com");
}

fn survey_job(tz: &str, missed: &str, audience: &str) -> String {
    format!(
        "id: weekly-survey\ntrigger: {{cron: \"0 10 * * MON\", timezone: {tz}, missed: {missed}}}\n{audience}template: nps_survey\nchannels: [email]\nsurvey: nps\n"
    )
}

#[test]
fn survey_fires_weekly_at_ten_local_across_dst_and_catches_up_once() {
    let (sink, ws) = setup(&[]);
    // Survey links need the API's public URL.
    ws.write_config(
        Some(sink.port),
        "api:\n  public_url: \"https://care.example.com\"\n",
    );
    ws.write(
        "jobs/survey.yaml",
        &survey_job(
            "America/New_York",
            "run_once",
            "audience: {had_event: rental.completed, within: 90d}\n",
        ),
    );
    ws.import(&[event(
        "r-1",
        "rental.completed",
        "c-1",
        "a@example.com",
        "2026-10-20T12:00:00Z",
        json!({}),
        json!({}),
    )])
    .ok();
    // Monday 2026-10-26 10:00 EDT is 14:00Z; Monday 2026-11-02 10:00 EST is 15:00Z.
    assert!(ws.once("2026-10-26T13:59:00Z").stdout.starts_with("0 sent"));
    assert!(ws.once("2026-10-26T14:00:00Z").stdout.starts_with("1 sent"));
    assert!(
        ws.once("2026-11-02T14:00:00Z").stdout.starts_with("0 sent"),
        "10:00 EST is 15:00Z after the DST change"
    );
    assert!(ws.once("2026-11-02T15:00:00Z").stdout.starts_with("1 sent"));
    // Down from before Nov 9 until after Nov 30: four Mondays missed, one catch-up.
    assert!(ws.once("2026-11-30T17:00:00Z").stdout.starts_with("1 sent"));
    assert!(ws.once("2026-11-30T18:00:00Z").stdout.starts_with("0 sent"));
    let mail = sink.messages();
    assert_eq!(mail.len(), 3);
    // Each survey link carries its own token.
    let tokens: Vec<String> = mail
        .iter()
        .map(|m| {
            m.text
                .split("https://care.example.com/s/")
                .nth(1)
                .unwrap()
                .split(|c: char| c == '?' || c.is_whitespace())
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(tokens.iter().all(|t| t.len() >= 20), "{tokens:?}");
    assert_ne!(tokens[0], tokens[1]);
    let log = sent(&ws, "weekly-survey");
    let at: Vec<&str> = log
        .iter()
        .map(|m| m["attempt_log"][0]["at"].as_str().unwrap())
        .collect();
    assert_eq!(
        at,
        [
            "2026-10-26T14:00:00Z",
            "2026-11-02T15:00:00Z",
            "2026-11-30T17:00:00Z"
        ]
    );
}

#[test]
fn missed_skip_waits_for_the_next_occurrence() {
    let (sink, ws) = setup(&[]);
    ws.write(
        "jobs/survey.yaml",
        &survey_job(
            "Asia/Shanghai",
            "skip",
            "audience: {had_event: rental.completed, within: 90d}\n",
        ),
    );
    ws.import(&[event(
        "r-1",
        "rental.completed",
        "c-1",
        "a@example.com",
        "2026-11-20T12:00:00Z",
        json!({}),
        json!({}),
    )])
    .ok();
    ws.once("2026-11-22T00:00:00Z"); // first sight
    // Monday 2026-11-23 10:00 CST passed while down; found at 12:00: skipped.
    assert!(ws.once("2026-11-23T04:00:00Z").stdout.starts_with("0 sent"));
    assert!(ws.once("2026-11-30T02:00:00Z").stdout.starts_with("1 sent"));
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn a_survey_switched_back_on_does_not_send_what_passed_while_it_was_off() {
    let (sink, ws) = setup(&[]);
    let job = survey_job(
        "Asia/Shanghai",
        "run_once",
        "audience: {had_event: rental.completed, within: 90d}\n",
    );
    ws.write("jobs/survey.yaml", &job);
    ws.import(&[event(
        "r-1",
        "rental.completed",
        "c-1",
        "a@example.com",
        "2026-11-10T12:00:00Z",
        json!({}),
        json!({}),
    )])
    .ok();
    // Monday 2026-11-16 10:00 CST (02:00Z) fires.
    assert!(ws.once("2026-11-16T02:00:00Z").stdout.starts_with("1 sent"));
    // Switched off over the next Monday, which the daemon saw pass.
    ws.write("jobs/survey.yaml", &format!("{job}enabled: false\n"));
    assert!(ws.once("2026-11-23T02:00:00Z").stdout.starts_with("0 sent"));
    // Switched on again on the Wednesday: nothing owed; the next Monday fires.
    ws.write("jobs/survey.yaml", &job);
    assert!(ws.once("2026-11-25T02:00:00Z").stdout.starts_with("0 sent"));
    assert!(ws.once("2026-11-30T02:00:00Z").stdout.starts_with("1 sent"));
    assert_eq!(sink.messages().len(), 2);
}

#[test]
fn survey_audience_picks_exactly_the_right_contacts() {
    let (sink, ws) = setup(&[]);
    ws.write(
        "jobs/survey.yaml",
        &survey_job(
            "Asia/Shanghai",
            "run_once",
            "audience:\n  had_event: rental.completed\n  within: 30d\n  where:\n    contact.attributes.tier: [gold, platinum]\n  exclude_if_sent: {job: weekly-survey, within: 90d}\n",
        ),
    );
    let gold = json!({"tier": "gold"});
    ws.import(&[
        // E rented before the first survey and again recently: surveyed on Nov 2, so not again.
        event(
            "r-e1",
            "rental.completed",
            "e",
            "e@example.com",
            "2026-10-25T04:00:00Z",
            gold.clone(),
            json!({}),
        ),
    ])
    .ok();
    ws.once("2026-11-01T00:00:00Z");
    assert!(ws.once("2026-11-02T02:00:00Z").stdout.starts_with("1 sent"));
    ws.import(&[
        event(
            "r-a",
            "rental.completed",
            "a",
            "a@example.com",
            "2026-11-20T04:00:00Z",
            gold.clone(),
            json!({}),
        ),
        event(
            "r-b",
            "rental.completed",
            "b",
            "b@example.com",
            "2026-10-20T04:00:00Z",
            gold.clone(),
            json!({}),
        ),
        event(
            "r-c",
            "rental.completed",
            "c",
            "c@example.com",
            "2026-11-25T04:00:00Z",
            json!({"tier": "silver"}),
            json!({}),
        ),
        event(
            "r-p",
            "rental.completed",
            "p",
            "p@example.com",
            "2026-11-26T04:00:00Z",
            json!({"tier": "platinum"}),
            json!({}),
        ),
        event(
            "o-d",
            "order.delivered",
            "d",
            "d@example.com",
            "2026-11-26T04:00:00Z",
            gold.clone(),
            json!({"order_id": "X"}),
        ),
        event(
            "r-e2",
            "rental.completed",
            "e",
            "e@example.com",
            "2026-11-27T04:00:00Z",
            gold.clone(),
            json!({}),
        ),
    ])
    .ok();
    // Monday 2026-11-30 10:00 CST: a (gold, 10 days), p (platinum); not b (40 days ago), not c
    // (silver), not d (no rental), not e (surveyed within 90 days).
    assert!(ws.once("2026-11-30T02:00:00Z").stdout.starts_with("2 sent"));
    let mut to: Vec<String> = sink
        .messages()
        .iter()
        .skip(1)
        .map(|m| m.to.clone())
        .collect();
    to.sort();
    assert_eq!(to, ["a@example.com", "p@example.com"]);
}

/// `run --once --now NOW` with the webhook's secret in the environment: its summary line.
fn with_webhook_secret(ws: &Workspace, now: &str) -> String {
    let out = ws
        .command(&["run", "--once", "--now", now])
        .env("TEST_WEBHOOK_SECRET", "s3cret")
        .output()
        .expect("run aftercare");
    common::Run::from(out).ok().stdout
}

#[test]
fn complaint_callback_reaches_the_crm_signed_and_the_customer_gets_a_notice() {
    let (sink, ws) = setup(&["complaint-callback"]);
    let crm = HttpServer::start(&[503]);
    ws.write_config(
        Some(sink.port),
        &format!("webhook:\n  url: http://127.0.0.1:{}/hooks/callbacks\n  secret_env: TEST_WEBHOOK_SECRET\n  timeout: 5s\n", crm.port),
    );
    let e = json!({
        "id": "k-1", "type": "complaint.resolved", "occurred_at": "2026-11-21T10:00:00+08:00",
        "contact": {"id": "c-4", "name": "韩梅梅", "email": "han@example.com", "phone": "+8613800138000"},
        "data": {"complaint_id": "CMP-7", "summary": "late delivery"}
    })
    .to_string();
    ws.import(&[e]).ok();
    let run = |now: &str| with_webhook_secret(&ws, now);
    assert!(run("2026-11-23T09:59:00+08:00").starts_with("0 sent"));
    // Due: the CRM answers 503 the first time (retried), the notice goes by email.
    let out = run("2026-11-23T10:00:00+08:00");
    assert!(out.starts_with("1 sent, 1 retrying"), "{out}");
    assert_eq!(sink.messages().len(), 1);
    assert!(sink.messages()[0].subject.contains("CMP-7"));
    assert!(run("2026-11-23T10:05:00+08:00").starts_with("1 sent"));
    let reqs = crm.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/hooks/callbacks")
        );
        let ts = r.header("x-aftercare-timestamp").unwrap();
        let expected = {
            use hmac::{KeyInit, Mac};
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
            mac.update(format!("{ts}.").as_bytes());
            mac.update(&r.body);
            let hex: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("sha256={hex}")
        };
        assert_eq!(r.header("x-aftercare-signature"), Some(expected.as_str()));
    }
    // The same task, the same idempotency key on the retry.
    assert_eq!(
        reqs[0].header("idempotency-key"),
        reqs[1].header("idempotency-key")
    );
    let task = reqs[1].json();
    assert_eq!(task["type"], "callback.requested");
    assert_eq!(task["job"]["id"], "complaint-callback");
    assert_eq!(task["contact"]["phone"], "+8613800138000");
    assert_eq!(task["event"]["data"]["complaint_id"], "CMP-7");
    assert_eq!(task["due_at"], "2026-11-23T02:00:00+00:00");
}

/// A detractor's answer at 17:30, with agents' hours 09:00-18:00 and a delay of one hour:
/// the task goes out at 09:30 the next day and tells the CRM it is due then (the plan), not
/// at 18:30 the day before; it is signed at the wall clock's time, not the run's.
#[test]
fn a_callback_task_says_the_due_time_its_business_hours_give() {
    let (_sink, ws) = setup(&["detractor-callback"]);
    let crm = HttpServer::start(&[]);
    ws.write_config(
        None,
        &format!("webhook:\n  url: http://127.0.0.1:{}/hooks/callbacks\n  secret_env: TEST_WEBHOOK_SECRET\n  timeout: 5s\n", crm.port),
    );
    let e = json!({
        "id": "a-1", "type": "survey.answered", "occurred_at": "2026-11-23T17:30:00+08:00",
        "contact": {"id": "c-9", "name": "李雷", "phone": "+8613800138009"},
        "data": {"scale": "nps", "score": 3, "message_id": "m-survey-9"}
    })
    .to_string();
    ws.import(&[e]).ok();
    let run = |now: &str| with_webhook_secret(&ws, now);
    assert!(run("2026-11-23T18:30:00+08:00").starts_with("0 sent"));
    let out = run("2026-11-24T09:30:00+08:00");
    assert!(out.starts_with("1 sent"), "{out}");
    let reqs = crm.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].json()["due_at"], "2026-11-24T01:30:00+00:00");
    let ts: i64 = reqs[0]
        .header("x-aftercare-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("a timestamp");
    let wall = chrono::Utc::now().timestamp();
    assert!(
        (wall - ts).abs() < 600,
        "signed at {ts}, the wall clock says {wall} (the run's clock: 2026-11-24T01:30Z)"
    );
}

fn callbacks_without_a_crm_wait_for_an_agent(b: Backend) {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::on(b, Some(sink.port));
    ws.keep_jobs(&["complaint-callback"]);
    let e = json!({
        "id": "k-1", "type": "complaint.resolved", "occurred_at": "2026-11-21T10:00:00+08:00",
        "contact": {"id": "c-4", "name": "韩梅梅", "email": "han@example.com", "phone": "+8613800138000"},
        "data": {"complaint_id": "CMP-7"}
    })
    .to_string();
    ws.import(&[e]).ok();
    assert!(
        ws.once("2026-11-23T10:00:00+08:00")
            .stdout
            .starts_with("1 sent")
    );
    assert_eq!(sink.messages().len(), 1);
    let list = ws.run(&["callbacks"]).ok().stdout;
    assert!(
        list.contains("complaint-callback  韩梅梅 +8613800138000"),
        "{list}"
    );
    assert!(list.contains("1 task(s)"));
    let id = list.split_whitespace().next().unwrap().to_string();
    ws.run(&[
        "callbacks",
        "done",
        &id,
        "--note",
        "called, customer happy",
        "--agent",
        "li",
    ])
    .ok();
    assert!(ws.run(&["callbacks"]).ok().stdout.contains("0 task(s)"));
    let log = ws.logs_json(&["--job", "complaint-callback", "--status", "sent"]);
    let task = log
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["channel_plan"] == "webhook")
        .unwrap();
    assert_eq!(task["attempt_log"][0]["channel"], "agent");
    assert_eq!(task["attempt_log"][0]["detail"], "called, customer happy");
    assert_eq!(ws.run(&["callbacks", "done", &id]).code, 1);

    // Two more complaints, a day apart: `--all` shows the newest of every task, oldest of
    // them first, and says when older ones are left out.
    let more: Vec<String> = [("k-2", "c-5", "22"), ("k-3", "c-6", "23")]
        .iter()
        .map(|(id, contact, day)| {
            json!({
                "id": id, "type": "complaint.resolved",
                "occurred_at": format!("2026-11-{day}T10:00:00+08:00"),
                "contact": {"id": contact, "email": format!("{contact}@example.com")},
                "data": {"complaint_id": id}
            })
            .to_string()
        })
        .collect();
    ws.import(&more).ok();
    let all = ws.run(&["callbacks", "--all"]).ok().stdout;
    assert!(all.ends_with("3 task(s)\n"), "{all}");
    let two = ws.run(&["callbacks", "--all", "--limit", "2"]).ok().stdout;
    let contacts: Vec<&str> = two
        .lines()
        .filter_map(|l| l.split("complaint-callback  ").nth(1))
        .filter_map(|who| who.split_whitespace().next())
        .collect();
    assert_eq!(contacts, ["c-5", "c-6"], "{two}");
    assert!(
        two.ends_with("2 task(s): the newest 2; older ones are left out (--limit)\n"),
        "{two}"
    );
}

on_both!(callbacks_without_a_crm_wait_for_an_agent);

/// A stop event cancels a callback task waiting for an agent whether it comes in the same
/// import as the trigger or a later one (before, only the same batch did: a later one
/// looked at scheduled and retrying messages only, and the task stayed in the agents' list).
#[test]
fn a_later_stop_event_cancels_an_open_callback_task() {
    let (_sink, ws) = setup(&["complaint-callback"]);
    ws.append(
        "jobs/complaint-callback.yaml",
        "stop_when: [{event: complaint.reopened, match: [complaint_id]}]\n",
    );
    let event = |id: &str, kind: &str, complaint: &str| {
        json!({
            "id": id, "type": kind, "occurred_at": "2026-11-21T10:00:00+08:00",
            "contact": {"id": "c-4", "name": "韩梅梅", "email": "han@example.com", "phone": "+8613800138000"},
            "data": {"complaint_id": complaint}
        })
        .to_string()
    };
    ws.import(&[
        event("k-1", "complaint.resolved", "CMP-7"),
        event("k-2", "complaint.resolved", "CMP-8"),
    ])
    .ok();
    assert!(ws.run(&["callbacks"]).ok().stdout.contains("2 task(s)"));
    ws.import(&[event("k-3", "complaint.reopened", "CMP-7")])
        .ok();
    let list = ws.run(&["callbacks"]).ok().stdout;
    assert!(list.contains("1 task(s)"), "{list}");
    let log = ws.logs_json(&["--job", "complaint-callback", "--status", "cancelled"]);
    let cancelled: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["channel_plan"] == "webhook")
        .filter_map(|m| m["reason"].as_str())
        .collect();
    assert_eq!(cancelled.len(), 1, "{log}");
    assert!(
        cancelled[0].contains("complaint.reopened") && cancelled[0].contains("k-3"),
        "{}",
        cancelled[0]
    );
}
