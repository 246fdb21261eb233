//! Survey answers through the real binary, on SQLite and on PostgreSQL: the link in a survey
//! email, the answer page (a GET records nothing, a POST records and plans the detractor
//! callback), `POST /v1/answers`, forged tokens, an SMS reply that is a score, and
//! `aftercare answer`. The daemon runs on the real clock (answers are checked against their
//! answer window), so the surveys here are sent "now".

mod common;

use chrono::{Duration as Days, SecondsFormat, Utc};
use common::provider::{Reply, Stub};
use common::{Backend, Workspace};
use serde_json::{Value, json};
use std::process::{Child, Stdio};
use std::time::Duration;

const INGEST: &str = "ingest-token-0123456789";
const READ: &str = "read-token-0123456789abc";
const PHONE: &str = "+8613800138000";

/// A survey job triggered by an event (the shipped one runs on Mondays), and the shipped
/// detractor callback.
const SURVEY_JOB: &str = "id: rental-nps\ntrigger: {event: rental.completed}\ntemplate: nps_survey\n\
                          channels: [email]\nsurvey: nps\n";

struct Daemon {
    child: Child,
    base: String,
    client: reqwest::blocking::Client,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    fn get_json(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(READ)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().unwrap()
    }

    fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    fn post_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }
}

/// The config's `api:` section on `port`, whose public URL is that port (the survey links
/// point at the daemon under test).
fn api_section(port: u16) -> String {
    format!(
        "api:\n  listen: 127.0.0.1:{port}\n  public_url: \"http://127.0.0.1:{port}\"\n  tokens:\n\
         \x20   - {{name: shop, scope: ingest, token_env: T_INGEST}}\n\
         \x20   - {{name: support, scope: read, token_env: T_READ}}\n"
    )
}

fn start(ws: &Workspace, port: u16) -> Daemon {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let child = ws
        .command(&["run"])
        .env("T_INGEST", INGEST)
        .env("T_READ", READ)
        .env("SMS_SECRET", "x")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child,
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::blocking::Client::new(),
    };
    common::wait_for_api(
        &mut d.child,
        &d.base,
        Duration::from_secs(30),
        "the API did not come up",
    );
    d
}

fn minutes_ago(n: i64) -> String {
    (Utc::now() - Days::minutes(n)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The text bodies of the emails written to `data/outbox`.
fn emails(ws: &Workspace) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(ws.path("data/outbox")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let raw = std::fs::read(e.ok()?.path()).ok()?;
        let msg = mail_parser::MessageParser::default().parse(&raw)?;
        Some(msg.body_text(0)?.into_owned())
    })
    .collect()
}

fn timeline_events(d: &Daemon, contact: &str, kind: &str) -> Vec<Value> {
    let tl = d.get_json(&format!("/v1/contacts/{contact}/timeline"));
    tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "event" && i["event"]["type"] == kind)
        .map(|i| i["event"].clone())
        .collect()
}

fn the_answer_page_records_on_post_only_and_plans_the_detractor_callback(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&["detractor-callback"]);
    ws.write("jobs/rental-nps.yaml", SURVEY_JOB);
    let port = common::free_port();
    ws.write_config(None, &api_section(port));
    let rental = json!({"id": "r-1", "type": "rental.completed", "occurred_at": minutes_ago(2),
        "contact": {"id": "c-1", "name": "王芳", "email": "wang.fang@example.com", "locale": "zh-CN"},
        "data": {"rental_id": "R-1"}});
    ws.import(&[rental.to_string()]).ok();
    assert!(ws.run(&["run", "--once"]).ok().stdout.starts_with("1 sent"));
    // The email's links: the survey page, and one per score that pre-selects it.
    let mail = emails(&ws).pop().expect("the survey email");
    let base = format!("http://127.0.0.1:{port}/s/");
    let link = |suffix: &str| {
        mail.lines()
            .map(str::trim)
            .find_map(|l| {
                let at = l.find(&base)?;
                let url = &l[at..];
                url.ends_with(suffix).then(|| url.to_string())
            })
            .unwrap_or_else(|| panic!("no link ending {suffix:?} in\n{mail}"))
    };
    let three = link("?score=3");
    let token = three
        .trim_start_matches(&base)
        .trim_end_matches("?score=3")
        .to_string();
    assert_eq!(token.len(), 30, "{three}");
    assert!(mail.contains(&format!("{base}{token}?score=0")), "{mail}");
    assert!(mail.contains(&format!("{base}{token}?score=10")), "{mail}");
    assert!(
        mail.contains(&format!("打开问卷，多告诉我们一些：{base}{token}\r\n"))
            || mail.contains(&format!("打开问卷，多告诉我们一些：{base}{token}\n")),
        "{mail}"
    );

    let d = start(&ws, port);
    // A mail scanner (or the customer) follows the one-click link: 3 is pre-selected, and
    // nothing is recorded.
    let (s, page) = d.get(&format!("/s/{token}?score=3"));
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("王芳，您有多大可能向朋友或同事推荐示例租车？"),
        "{page}"
    );
    assert!(page.contains("value=\"3\" checked"), "{page}");
    assert_eq!(page.matches("type=\"radio\"").count(), 11, "0 to 10");
    let (s, _) = d.get(&format!("/s/{token}?score=7"));
    assert_eq!(s, 200);
    assert!(timeline_events(&d, "c-1", "survey.answered").is_empty());
    let callbacks = d.get_json("/v1/messages?job=detractor-callback");
    assert_eq!(
        callbacks["items"].as_array().unwrap().len(),
        0,
        "{callbacks}"
    );

    // The form's POST records the answer and plans the callback.
    let (s, page) = d.post_form(
        &format!("/s/{token}"),
        &[("score", "3"), ("comment", "车有点脏")],
    );
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("谢谢您的回答") && page.contains("您的评分： 3"),
        "{page}"
    );
    let answered = timeline_events(&d, "c-1", "survey.answered");
    assert_eq!(answered.len(), 1, "{answered:?}");
    let data = &answered[0]["data"];
    assert_eq!(
        (
            &data["score"],
            &data["comment"],
            &data["job"],
            &data["channel"],
            &data["scale"]
        ),
        (
            &json!(3),
            &json!("车有点脏"),
            &json!("rental-nps"),
            &json!("web"),
            &json!("nps")
        ),
    );
    let callbacks = d.get_json("/v1/messages?job=detractor-callback");
    let tasks = callbacks["items"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{callbacks}");
    assert_eq!(
        (
            tasks[0]["state"].as_str(),
            tasks[0]["channel_plan"].as_str(),
            tasks[0]["contact_id"].as_str()
        ),
        (Some("open"), Some("webhook"), Some("c-1"))
    );
    // Now the page shows the answer, and a changed answer through the API plans no second
    // callback (one per survey message).
    let (_, page) = d.get(&format!("/s/{token}"));
    assert!(
        page.contains("value=\"3\" checked") && page.contains("车有点脏"),
        "{page}"
    );
    let (s, r) = d.post_json("/v1/answers", INGEST, json!({"token": token, "score": 2}));
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["status"].as_str(),
            r["answer"]["changes"].as_i64(),
            r["planned"].as_u64()
        ),
        (Some("changed"), Some(1), Some(0))
    );
    let (s, r) = d.post_json("/v1/answers", INGEST, json!({"token": token, "score": 2}));
    assert_eq!(
        (s, r["status"].as_str(), r["event_id"].as_str()),
        (200, Some("unchanged"), None)
    );
    assert_eq!(timeline_events(&d, "c-1", "survey.answered").len(), 2);
    assert_eq!(
        d.get_json("/v1/messages?job=detractor-callback")["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A forged or mistyped token: a clear page, and a 404 from the API, recording nothing.
    for forged in ["AAAAAAAAAAAAAAAAAAAAAA", &token[..21], "x"] {
        let (s, page) = d.get(&format!("/s/{forged}?score=9"));
        assert_eq!(s, 404, "{page}");
        assert!(
            page.contains("This survey link is not valid") && page.contains("这个问卷链接无效"),
            "{page}"
        );
        let (s, _) = d.post_form(&format!("/s/{forged}"), &[("score", "9")]);
        assert_eq!(s, 404);
        let (s, r) = d.post_json("/v1/answers", INGEST, json!({"token": forged, "score": 9}));
        assert_eq!(
            (s, r["error"].as_str(), r["field"].as_str()),
            (404, Some("unknown_token"), Some("token")),
            "{r}"
        );
    }
    // Off the scale, or without a score: refused, saying why.
    let (s, r) = d.post_json("/v1/answers", INGEST, json!({"token": token, "score": 11}));
    assert_eq!(
        (s, r["error"].as_str()),
        (400, Some("invalid_answer")),
        "{r}"
    );
    assert!(r["detail"].as_str().unwrap().contains("0 to 10"), "{r}");
    let (s, page) = d.post_form(&format!("/s/{token}"), &[("comment", "no score")]);
    assert_eq!(s, 400);
    assert!(page.contains("请选择一个分数"), "{page}");
    // The reports see it: the answers list (detractors), and the NPS of one answer, warned.
    let listed = d.get_json("/v1/reports/answers?job=rental-nps&score_lte=6");
    let rows = listed["answers"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(
        (
            rows[0]["score"].as_i64(),
            rows[0]["changes"].as_i64(),
            rows[0]["name"].as_str()
        ),
        (Some(2), Some(1), Some("王芳"))
    );
    let nps = d.get_json("/v1/reports/nps?job=rental-nps");
    let t = &nps["total"];
    assert_eq!(
        (
            t["sent"].as_i64(),
            t["answered"].as_i64(),
            t["detractors"].as_i64(),
            t["nps"].as_f64()
        ),
        (Some(1), Some(1), Some(1), Some(-100.0)),
        "{nps}"
    );
    assert!(
        t["warning"].as_str().unwrap().contains("only 1 answer(s)"),
        "{nps}"
    );
    // Only an ingest token may post answers.
    assert_eq!(
        d.post_json("/v1/answers", READ, json!({"token": token, "score": 5}))
            .0,
        403
    );
    assert_eq!(
        timeline_events(&d, "c-1", "survey.answered").len(),
        2,
        "nothing more recorded"
    );
    drop(d);

    // The callback task is due an hour after the first answer (within business hours), for
    // an agent; overdue as of a later time (`--now`, as `run --once --now`).
    let tasks = ws.run(&["callbacks", "--json"]).ok().stdout;
    assert!(
        tasks.contains("detractor-callback") && tasks.contains("c-1"),
        "{tasks}"
    );
    assert!(tasks.contains(r#""status": "due""#), "{tasks}");
    let later = ws.run(&["callbacks", "--json", "--now", "2030-01-01"]);
    assert!(later.ok().stdout.contains(r#""status": "overdue""#));
}

fn an_sms_reply_that_is_a_score_answers_the_latest_survey_sms(b: Backend) {
    let gw = Stub::spawn(|_, i| {
        Reply::json(
            200,
            json!({"code": 0, "msg": "ok", "data": {"id": 100 + i}}),
        )
    });
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&["detractor-callback"]);
    ws.write(
        "jobs/sms-nps.yaml",
        "id: sms-nps\ntrigger: {event: service.completed}\ntemplate: sms_nps\nclass: service\n\
         channels: [sms]\nsurvey: nps\n",
    );
    ws.write(
        "message_templates/sms_nps/sms.hbs",
        "您有多大可能向朋友推荐我们？请回复 0-10 分，可附上意见。{{survey.url}}",
    );
    let port = common::free_port();
    ws.write_config(
        None,
        &format!(
            "sms:\n  gateways:\n    gw:\n      kind: http\n      url: \"{}/send\"\n      secret_env: SMS_SECRET\n      \
             headers: {{Authorization: \"Bearer {{{{secret}}}}\"}}\n      \
             body: '{{\"to\":\"{{{{to}}}}\",\"text\":\"{{{{body}}}}\"}}'\n      success: {{status: 200, pointer: /code, equals: \"0\"}}\n      \
             id_pointer: /data/id\n      reply: {{from_pointer: /mobile, text_pointer: /content, id_pointer: /msg_id}}\n{}",
            gw.url,
            api_section(port)
        ),
    );
    let done = |id: &str, contact: &str, phone: &str| {
        json!({"id": id, "type": "service.completed", "occurred_at": minutes_ago(3),
            "contact": {"id": contact, "phone": phone, "locale": "zh-CN"}, "data": {}})
        .to_string()
    };
    ws.import(&[
        done("s-1", "c-1", PHONE),
        done("s-2", "c-2", "+8613900139000"),
    ])
    .ok();
    let sent = ws
        .command(&["run", "--once"])
        .env("SMS_SECRET", "x")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&sent.stdout).starts_with("2 sent"),
        "{sent:?}"
    );
    let texts: Vec<String> = gw
        .seen()
        .iter()
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    assert!(
        texts
            .iter()
            .all(|t| t.contains(&format!("http://127.0.0.1:{port}/s/"))),
        "{texts:?}"
    );

    let d = start(&ws, port);
    let inbound = |id: &str, from: &str, text: &str| {
        d.post_json(
            "/hooks/sms/gw/inbound",
            INGEST,
            json!({"mobile": from, "content": text, "msg_id": id}),
        )
    };
    let (s, summary) = inbound("in-1", PHONE, "3 太慢了");
    assert_eq!(
        (s, summary["replies"].as_u64(), summary["answers"].as_u64()),
        (200, Some(1), Some(1)),
        "{summary}"
    );
    let answered = timeline_events(&d, "c-1", "survey.answered");
    assert_eq!(answered.len(), 1);
    let data = &answered[0]["data"];
    assert_eq!(
        (
            &data["score"],
            &data["comment"],
            &data["channel"],
            &data["job"]
        ),
        (
            &json!(3),
            &json!("太慢了"),
            &json!("sms"),
            &json!("sms-nps")
        )
    );
    // The reply is kept, and says what it did; the detractor gets a callback.
    let tl = d.get_json(&format!("/v1/contacts/{PHONE}/timeline"));
    let reply = tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "reply")
        .unwrap();
    assert_eq!(
        (
            reply["reply"]["text"].as_str(),
            reply["reply"]["action"].as_str()
        ),
        (Some("3 太慢了"), Some("answer"))
    );
    let tasks = d.get_json("/v1/messages?job=detractor-callback");
    assert_eq!(tasks["items"].as_array().unwrap().len(), 1, "{tasks}");
    // Full-width digits with 分 from the other customer: a promoter, no callback. Words that
    // are not a score stay a reply for a person.
    let (_, summary) = inbound("in-2", "+8613900139000", "１０分");
    assert_eq!(summary["answers"].as_u64(), Some(1), "{summary}");
    assert_eq!(
        timeline_events(&d, "c-2", "survey.answered")[0]["data"]["score"],
        json!(10)
    );
    let (_, summary) = inbound("in-3", "+8613900139000", "包裹还没到");
    assert_eq!(summary["answers"].as_u64(), Some(0), "{summary}");
    let (_, summary) = inbound("in-4", "+8613900139000", "12");
    assert_eq!(
        summary["answers"].as_u64(),
        Some(0),
        "12 is off the 0-10 scale: {summary}"
    );
    // A number that was sent no survey: a reply, nothing more.
    let (_, summary) = inbound("in-5", "+8613700137000", "5");
    assert_eq!(
        (summary["replies"].as_u64(), summary["answers"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        d.get_json("/v1/messages?job=detractor-callback")["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The store fails after keeping the reply: the push is answered 500, and the gateway's
    // retry of it records the answer the first could not.
    ws.store_sql(
        "CREATE TRIGGER refuse_answers BEFORE INSERT ON answers BEGIN SELECT RAISE(ABORT, 'down'); END",
        "CREATE FUNCTION refuse_answers() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'down'; END $$; \
         CREATE TRIGGER refuse_answers BEFORE INSERT ON answers FOR EACH ROW EXECUTE FUNCTION refuse_answers();",
    );
    let (s, summary) = inbound("in-6", "+8613900139000", "9 还不错");
    assert_eq!(s, 500, "{summary}");
    ws.store_sql(
        "DROP TRIGGER refuse_answers",
        "DROP TRIGGER refuse_answers ON answers",
    );
    let (s, summary) = inbound("in-6", "+8613900139000", "9 还不错");
    assert_eq!(
        (s, summary["answers"].as_u64(), summary["repeated"].as_u64()),
        (200, Some(1), Some(1)),
        "{summary}"
    );
    let scores: Vec<Value> = timeline_events(&d, "c-2", "survey.answered")
        .iter()
        .map(|e| e["data"]["score"].clone())
        .collect();
    assert_eq!(scores, [json!(10), json!(9)]);
    let (_, summary) = inbound("in-6", "+8613900139000", "9 还不错");
    assert_eq!(
        summary["answers"].as_u64(),
        Some(0),
        "taken once: {summary}"
    );
}

fn support_records_an_answer_by_job_and_contact(b: Backend) {
    let ws = Workspace::on(b, None);
    ws.keep_jobs(&["detractor-callback"]);
    ws.write("jobs/rental-nps.yaml", SURVEY_JOB);
    ws.write(
        "jobs/repair-csat.yaml",
        "id: repair-csat\ntrigger: {event: service.completed}\ntemplate: nps_survey\n\
         channels: [email]\nsurvey: {scale: csat, window: 3d}\n",
    );
    ws.write_config(None, "api:\n  public_url: \"https://care.example.com\"\n");
    let at = "2026-11-23T10:00:00+08:00";
    let rental = json!({"id": "r-1", "type": "rental.completed", "occurred_at": at,
        "contact": {"id": "c-7", "email": "c7@example.com", "locale": "en", "attributes": {"tier": "gold"}}, "data": {}});
    ws.import(&[rental.to_string()]).ok();
    ws.once(at);
    let mail = emails(&ws).pop().unwrap();
    assert!(
        mail.contains("https://care.example.com/s/") && mail.contains("?score=10"),
        "{mail}"
    );
    let answer = |args: &[&str]| ws.run(&[&["answer"], args].concat());
    let r = answer(&[
        "--job",
        "rental-nps",
        "--contact",
        "c7@example.com",
        "4",
        "--comment",
        "slow pickup",
        "--now",
        "2026-11-24T17:30:00+08:00",
    ])
    .ok();
    assert!(
        r.stdout
            .starts_with("recorded: contact c-7 answered 4 (nps) to rental-nps"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.ends_with("1 message(s) planned\n"), "{}", r.stdout);
    // A week after the send, the survey is closed.
    let r = answer(&[
        "--job",
        "rental-nps",
        "--contact",
        "c-7",
        "9",
        "--now",
        "2026-11-30T10:00:01+08:00",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("this survey closed at 2026-11-30T02:00:00Z"),
        "{}",
        r.stderr
    );
    let r = answer(&["--token", "nope", "9"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no survey has this link"), "{}", r.stderr);
    let log = ws.logs_json(&["--job", "detractor-callback"]);
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    assert_eq!(
        log[0]["due_at"], "2026-11-25T01:30:00Z",
        "one business hour after 17:30: 09:30 the next day"
    );

    // CSAT: 1 to 5, a window of 3 days; three customers answer 5, 4 and 2.
    let repairs: Vec<String> = (1..=3)
        .map(|i| {
            json!({"id": format!("s-{i}"), "type": "service.completed", "occurred_at": at,
                   "contact": {"id": format!("r-{i}"), "email": format!("r{i}@example.com"), "locale": "en"}, "data": {}})
            .to_string()
        })
        .collect();
    ws.import(&repairs).ok();
    ws.once(at);
    for (i, score) in [(1, "5"), (2, "4"), (3, "2")] {
        let contact = format!("r-{i}");
        answer(&[
            "--job",
            "repair-csat",
            "--contact",
            &contact,
            score,
            "--now",
            "2026-11-24T10:00:00+08:00",
        ])
        .ok();
    }
    let r = answer(&[
        "--job",
        "repair-csat",
        "--contact",
        "r-1",
        "9",
        "--now",
        "2026-11-24T10:00:00+08:00",
    ]);
    assert!(
        r.stderr
            .contains("score 9 is outside the csat scale (1 to 5)"),
        "{}",
        r.stderr
    );
    let r = answer(&[
        "--job",
        "repair-csat",
        "--contact",
        "r-1",
        "3",
        "--now",
        "2026-11-26T10:00:01+08:00",
    ]);
    assert!(
        r.stderr.contains("this survey closed"),
        "3 days: {}",
        r.stderr
    );
    let report = |args: &[&str]| {
        let out = ws
            .run(
                &[
                    &["report"],
                    args,
                    &[
                        "--since",
                        "2026-11-01",
                        "--until",
                        "2026-12-01",
                        "--format",
                        "json",
                    ],
                ]
                .concat(),
            )
            .ok()
            .stdout;
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let csat = report(&["csat", "--job", "repair-csat"]);
    let t = &csat["total"];
    assert_eq!(
        (t["sent"].as_i64(), t["answered"].as_i64()),
        (Some(3), Some(3)),
        "{csat}"
    );
    assert_eq!(
        (t["csat"]["k"].as_i64(), t["csat"]["n"].as_i64()),
        (Some(2), Some(3)),
        "{csat}"
    );
    assert_eq!(t["scores"], json!({"2": 1, "4": 1, "5": 1}));
    let wrong = ws.run(&["report", "nps", "--job", "repair-csat"]);
    assert!(
        wrong
            .stderr
            .contains("asks on the csat scale: use `report csat`"),
        "{}",
        wrong.stderr
    );
    for (by, key) in [
        ("locale", "en"),
        ("tier", "gold"),
        ("week", "2026-11-23"),
        ("month", "2026-11"),
    ] {
        let r = report(&["nps", "--job", "rental-nps", "--by", by]);
        let groups = r["groups"].as_array().unwrap();
        let g = groups
            .iter()
            .find(|g| g["answered"] == 1)
            .unwrap_or_else(|| panic!("{r}"));
        assert_eq!(
            (g["key"].as_str(), g["detractors"].as_i64()),
            (Some(key), Some(1)),
            "by {by}: {r}"
        );
    }
    // Without --since/--until a report's window ends at --now: the answers of 24 November
    // are not there as of the morning before, and are as of the day after; `report daily`
    // counts the days up to --now's.
    let as_of = |report: &str, now: &str| {
        let out = ws
            .run(&[
                "report",
                report,
                "--job",
                "repair-csat",
                "--now",
                now,
                "--format",
                "json",
            ])
            .ok()
            .stdout;
        serde_json::from_str::<Value>(&out).unwrap()
    };
    for (now, answers) in [("2026-11-24T09:00:00+08:00", 0), ("2026-11-25", 3)] {
        let v = as_of("answers", now);
        assert_eq!(
            v["answers"].as_array().map(Vec::len),
            Some(answers),
            "as of {now}: {v}"
        );
    }
    let november = as_of("daily", "2026-11-30");
    assert!(november.to_string().contains("2026-11-2"), "{november}");
    let june = as_of("daily", "2027-06-01");
    assert!(!june.to_string().contains("2026-11"), "{june}");
    // The shipped callback is for NPS detractors: a CSAT 2 plans none.
    assert_eq!(
        ws.logs_json(&["--job", "detractor-callback"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

use common::on_both;

on_both!(
    the_answer_page_records_on_post_only_and_plans_the_detractor_callback,
    an_sms_reply_that_is_a_score_answers_the_latest_survey_sms,
    support_records_an_answer_by_job_and_contact,
);
