//! SMS through the real binary: jobs with `channels: [sms, ...]`, the `sms:` config section,
//! and local stand-ins for Twilio, Alibaba Cloud and a generic HTTP provider
//! (`common::provider`), which record exactly what they received. Each test checks what went
//! over the wire (method, path, auth, fields) and what support reads in `aftercare logs`:
//! every gateway hop and every channel fallen back to is its own attempt.

mod common;

use aftercare::channels::sms::{Inbound, SmsChannel, aliyun, twilio};
use aftercare::config::Config;
use aftercare::sms_hooks::{self, HookError};
use aftercare::store::Store;
use base64::Engine;
use chrono::{DateTime, Utc};
use common::provider::{Reply, Seen, Stub};
use common::{SmtpSink, Workspace};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

const TWILIO_TOKEN: &str = "tw-auth-token-5f1e2d3c9b";
const ALIYUN_SECRET: &str = "ali-secret-Q9w8e7r6t5y4";
const HTTP_SECRET: &str = "http-bearer-77aa88bb99cc";
const PHONE: &str = "+8613800138000";
const DELIVERED_AT: &str = "2026-11-20T10:00:00+08:00";
/// Three days later: when the jobs below fall due.
const DUE: &str = "2026-11-23T10:00:00+08:00";

// ---------------------------------------------------------------------------------------
// Workspace, config and events.

fn twilio_gw(name: &str, stub: &Stub) -> String {
    format!(
        "    {name}: {{kind: twilio, account_sid: AC0123456789abcdef, auth_token_file: twilio.token, \
         from: \"+15005550006\", status_callback: \"https://shop.example/sms/status\", rate: 100/s, \
         base_url: \"{}\"}}\n",
        stub.url
    )
}

fn aliyun_gw(name: &str, stub: &Stub) -> String {
    format!(
        "    {name}: {{kind: aliyun, access_key_id: LTAI5tTestKeyId, access_key_secret_file: aliyun.secret, \
         sign_name: 示例商店, rate: 100/s, base_url: \"{}\"}}\n",
        stub.url
    )
}

fn http_gw(name: &str, stub: &Stub, rate: &str) -> String {
    format!(
        "    {name}:\n      kind: http\n      url: \"{}/v1/send\"\n      \
         headers: {{Authorization: \"Bearer {{{{secret}}}}\"}}\n      secret_file: http.secret\n      \
         body: '{{\"to\":\"{{{{to}}}}\",\"text\":\"{{{{body}}}}\",\"ref\":\"{{{{reference}}}}\"}}'\n      \
         success: {{status: 200, pointer: /code, equals: \"0\"}}\n      id_pointer: /data/id\n      \
         message_pointer: /msg\n      rate: {rate}\n",
        stub.url
    )
}

/// A workspace with no shipped job, the three secrets as files next to the config, an
/// `sms:` section with these gateways (`route` first), and `jobs`.
fn workspace(smtp: Option<u16>, route: &[&str], gateways: &[String], jobs: &[String]) -> Workspace {
    let ws = Workspace::new(smtp);
    ws.keep_jobs(&[]);
    ws.write("twilio.token", &format!("{TWILIO_TOKEN}\n"));
    ws.write("aliyun.secret", ALIYUN_SECRET);
    ws.write("http.secret", HTTP_SECRET);
    ws.write_config(
        smtp,
        &format!(
            "sms:\n  route: [{}]\n  breaker: {{failures: 100, cooldown: 1s}}\n  gateways:\n{}",
            route.join(", "),
            gateways.concat()
        ),
    );
    for j in jobs {
        let id = j.lines().next().unwrap().trim_start_matches("id: ");
        ws.write(&format!("jobs/{id}.yaml"), j);
    }
    ws
}

/// A review request 3 days after delivery on `channels`, with extra keys (`sms:`).
fn job(id: &str, channels: &str, extra: &str) -> String {
    format!(
        "id: {id}\ntrigger: {{event: order.delivered, delay: 3d}}\ntemplate: review_request\n\
         channels: {channels}\ndedupe: \"{{{{event.data.order_id}}}}\"\n{extra}"
    )
}

/// An order.delivered event; `phone` and `email` may be absent, `consent` is the contact's.
fn order(n: usize, phone: Option<&str>, email: Option<&str>, consent: Value) -> String {
    let mut contact = json!({"id": format!("c-{n}"), "name": "王芳", "locale": "zh-CN",
        "timezone": "Asia/Shanghai", "consent": consent});
    if let Some(p) = phone {
        contact["phone"] = json!(p);
    }
    if let Some(e) = email {
        contact["email"] = json!(e);
    }
    json!({"id": format!("evt-{n}"), "type": "order.delivered", "occurred_at": DELIVERED_AT,
           "contact": contact, "data": {"order_id": format!("SO-{n}")}})
    .to_string()
}

fn ok_json(id: u64) -> Reply {
    Reply::json(
        200,
        json!({"code": 0, "msg": "success", "data": {"id": id}}),
    )
}

/// `logs --format json` for one job: each message with its attempt log.
fn log(ws: &Workspace, job: &str) -> Vec<Value> {
    ws.logs_json(&["--job", job]).as_array().unwrap().clone()
}

/// (channel, gateway, outcome, code) of each attempt of a message.
fn hops(m: &Value) -> Vec<(String, Option<String>, String, Option<i64>)> {
    m["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["channel"].as_str().unwrap().to_string(),
                a["gateway"].as_str().map(str::to_string),
                a["outcome"].as_str().unwrap().to_string(),
                a["code"].as_i64(),
            )
        })
        .collect()
}

fn hop(
    channel: &str,
    gateway: Option<&str>,
    outcome: &str,
    code: Option<i64>,
) -> (String, Option<String>, String, Option<i64>) {
    (
        channel.into(),
        gateway.map(str::to_string),
        outcome.into(),
        code,
    )
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// ---------------------------------------------------------------------------------------
// Sending through each gateway.

/// One message per gateway (three jobs, each routed to one), each request as its provider
/// documents it, and the log naming the gateway, the provider's id and the text's cost.
#[test]
fn each_gateway_gets_what_its_provider_documents() {
    let tw = Stub::spawn(|_, _| {
        Reply::json(
            201,
            json!({"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued", "error_code": null}),
        )
    });
    let ali = Stub::spawn(|_, _| {
        Reply::json(
            200,
            json!({"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0", "RequestId": "F655A8D5"}),
        )
    });
    let http = Stub::spawn(|_, _| ok_json(4242));
    let ws = workspace(
        None,
        &["ali", "tw", "gw"],
        &[
            twilio_gw("tw", &tw),
            aliyun_gw("ali", &ali),
            http_gw("gw", &http, "100/s"),
        ],
        &[
            job("via-twilio", "[sms]", "sms: {gateways: [tw]}\n"),
            job(
                "via-aliyun",
                "[sms]",
                "sms: {gateways: [ali], template_codes: {review_request: SMS_123456789}}\n",
            ),
            job("via-http", "[sms]", "sms: {gateways: [gw]}\n"),
        ],
    );
    ws.import(&[order(1, Some(PHONE), None, json!({}))]).ok();
    let r = ws.once(DUE);
    assert_eq!(r.stdout.trim(), "3 sent, 0 retrying, 0 failed, 0 cancelled");
    let text = "王芳您好，您的订单SO-1已送达，欢迎花一分钟写下评价。回T退订";

    // Twilio: form POST to the account's Messages resource, basic auth.
    let seen = tw.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(
        s.path,
        "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json"
    );
    assert_eq!(
        s.header("authorization").as_deref(),
        Some(basic("AC0123456789abcdef", TWILIO_TOKEN).as_str())
    );
    let form = s.form();
    assert_eq!(form["To"], PHONE);
    assert_eq!(form["From"], "+15005550006");
    assert_eq!(form["Body"], text);
    assert_eq!(form["StatusCallback"], "https://shop.example/sms/status");

    // Aliyun: signed RPC form; the number without +86, the approved template and its
    // parameters rendered from sms.params.hbs, our message id as OutId.
    let seen = ali.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/"));
    let form = s.form();
    assert_eq!(form["Action"], "SendSms");
    assert_eq!(form["AccessKeyId"], "LTAI5tTestKeyId");
    assert_eq!(form["PhoneNumbers"], "13800138000");
    assert_eq!(form["SignName"], "示例商店");
    assert_eq!(form["TemplateCode"], "SMS_123456789");
    let params: Value = serde_json::from_str(&form["TemplateParam"]).unwrap();
    assert_eq!(params, json!({"name": "王芳", "order": "SO-1"}));
    let pairs: Vec<(String, String)> = form.clone().into_iter().collect();
    assert_eq!(
        form["Signature"],
        aliyun::sign("POST", &pairs, ALIYUN_SECRET)
    );
    let logged: BTreeMap<String, Value> = ws
        .logs_json(&[])
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["job_id"].as_str().unwrap().to_string(), m.clone()))
        .collect();
    assert_eq!(form["OutId"], logged["via-aliyun"]["id"].as_str().unwrap());

    // http: the configured template, the secret only where {{secret}} put it.
    let seen = http.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/v1/send"));
    assert_eq!(
        s.header("authorization").unwrap(),
        format!("Bearer {HTTP_SECRET}")
    );
    assert_eq!(s.header("content-type").unwrap(), "application/json");
    assert_eq!(
        s.json(),
        json!({"to": PHONE, "text": text, "ref": logged["via-http"]["id"]})
    );

    // The log: one attempt each, through its gateway, with the provider's id and the cost.
    for (job, gateway, provider_id) in [
        ("via-twilio", "tw", "SM0123456789abcdef0123456789abcdef"),
        ("via-aliyun", "ali", "900619746936498440^0"),
        ("via-http", "gw", "4242"),
    ] {
        let m = &logged[job];
        assert_eq!(m["state"], "sent", "{m:#}");
        assert_eq!(
            (m["channel"].as_str(), m["address"].as_str()),
            (Some("sms"), Some(PHONE))
        );
        let a = &m["attempt_log"][0];
        assert_eq!(a["gateway"], gateway);
        assert_eq!(a["provider_id"], provider_id);
        assert!(
            a["detail"].as_str().unwrap().ends_with("1 segment, UCS-2"),
            "{a:#}"
        );
    }
    let table = ws.run(&["logs", "--job", "via-http"]).ok().stdout;
    assert!(table.contains("sent  sms +8613800138000"), "{table}");
    assert!(
        table.contains("sms via gw  sent  200 HTTP 200; 1 segment, UCS-2  4242"),
        "{table}"
    );
    // No credential in anything support reads.
    let all = ws.run(&["logs", "--format", "json"]).ok().stdout;
    for secret in [TWILIO_TOKEN, ALIYUN_SECRET, HTTP_SECRET] {
        assert!(!all.contains(secret));
    }
}

// ---------------------------------------------------------------------------------------
// Failures: transient, throttled, permanent.

#[test]
fn a_503_is_retried_on_a_later_run_then_sent() {
    let http = Stub::spawn(|_, i| {
        if i == 0 {
            Reply::json(503, json!({"code": 503, "msg": "maintenance"}))
        } else {
            ok_json(7)
        }
    });
    let ws = workspace(
        None,
        &["gw"],
        &[http_gw("gw", &http, "100/s")],
        &[job("j", "[sms, email]", "")],
    );
    ws.import(&[order(1, Some(PHONE), Some("a@example.com"), json!({}))])
        .ok();
    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "0 sent, 1 retrying, 0 failed, 0 cancelled"
    );
    let m = log(&ws, "j").remove(0);
    assert_eq!(m["state"], "retrying");
    assert_eq!(hops(&m), [hop("sms", Some("gw"), "transient", Some(503))]);
    assert!(
        m["reason"]
            .as_str()
            .unwrap()
            .contains("503 HTTP 503: maintenance"),
        "{m:#}"
    );
    // Transient is not a reason to fall back: no email went out.
    assert!(std::fs::read_dir(ws.path("data/outbox")).map_or(true, |d| d.count() == 0));
    // The backoff (1m ± 25%) has passed ten minutes later.
    assert_eq!(
        ws.once("2026-11-23T10:10:00+08:00").stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    let m = log(&ws, "j").remove(0);
    assert_eq!(m["state"], "sent");
    assert_eq!(
        hops(&m),
        [
            hop("sms", Some("gw"), "transient", Some(503)),
            hop("sms", Some("gw"), "sent", Some(200)),
        ]
    );
    assert_eq!(m["attempts"], 2);
    assert_eq!(http.seen().len(), 2);
}

#[test]
fn a_429_waits_as_long_as_retry_after_says() {
    let http = Stub::spawn(|_, i| {
        if i == 0 {
            Reply::json(429, json!({"code": 429, "msg": "slow down"})).header("retry-after", "7200")
        } else {
            ok_json(8)
        }
    });
    let ws = workspace(
        None,
        &["gw"],
        &[http_gw("gw", &http, "100/s")],
        &[job("j", "[sms]", "")],
    );
    ws.import(&[order(1, Some(PHONE), None, json!({}))]).ok();
    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "0 sent, 1 retrying, 0 failed, 0 cancelled"
    );
    let m = log(&ws, "j").remove(0);
    assert!(
        at(m["due_at"].as_str().unwrap()) >= at(DUE) + chrono::Duration::hours(2),
        "{m:#}"
    );
    // An hour later the backoff alone (1m) would have allowed it; Retry-After does not.
    assert_eq!(
        ws.once("2026-11-23T11:00:00+08:00").stdout.trim(),
        "0 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    assert_eq!(http.seen().len(), 1);
    assert_eq!(
        ws.once("2026-11-23T12:01:00+08:00").stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 0 cancelled"
    );
}

/// A `Retry-After` too long to add to a clock (a buggy or hostile provider) is taken as a
/// week, not as a panic in the send task.
#[test]
fn a_retry_after_past_the_end_of_time_waits_a_week() {
    let http = Stub::spawn(|_, i| {
        if i == 0 {
            Reply::json(429, json!({"code": 429, "msg": "slow down"}))
                .header("retry-after", "18446744073709551615")
        } else {
            ok_json(8)
        }
    });
    let ws = workspace(
        None,
        &["gw"],
        &[http_gw("gw", &http, "100/s")],
        &[job("j", "[sms]", "")],
    );
    ws.import(&[order(1, Some(PHONE), None, json!({}))]).ok();
    let r = ws.once(DUE);
    assert_eq!(r.stdout.trim(), "0 sent, 1 retrying, 0 failed, 0 cancelled");
    assert!(!r.stderr.contains("panic"), "{}", r.stderr);
    let m = log(&ws, "j").remove(0);
    let due = at(m["due_at"].as_str().unwrap());
    assert!(
        due >= at(DUE) + chrono::Duration::days(7) && due < at(DUE) + chrono::Duration::days(8),
        "{m:#}"
    );
}

#[test]
fn a_permanent_400_fails_with_the_providers_code_and_words() {
    let tw = Stub::spawn(|_, _| {
        Reply::json(
            400,
            json!({"code": 21211, "message": "The 'To' number +8613800138000 is not a valid phone number.",
                   "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}),
        )
    });
    let ws = workspace(
        None,
        &["tw"],
        &[twilio_gw("tw", &tw)],
        &[job("j", "[sms]", "")],
    );
    ws.import(&[order(1, Some(PHONE), None, json!({}))]).ok();
    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "0 sent, 0 retrying, 1 failed, 0 cancelled"
    );
    let words = "400 twilio error 21211: The 'To' number +8613800138000 is not a valid phone number. (https://www.twilio.com/docs/errors/21211)";
    let m = log(&ws, "j").remove(0);
    assert_eq!(m["reason"], words);
    assert_eq!(hops(&m), [hop("sms", Some("tw"), "permanent", Some(400))]);
    let table = ws
        .run(&["logs", "--job", "j", "--status", "failed"])
        .ok()
        .stdout;
    assert!(table.contains(&format!("reason: {words}")), "{table}");
    assert!(
        table.contains("sms via tw  permanent  400 twilio error 21211"),
        "{table}"
    );
    // Failed for good: not tried again.
    ws.once("2026-11-30T10:00:00+08:00");
    assert_eq!(tw.seen().len(), 1);
}

#[test]
fn a_gateway_that_is_down_fails_over_to_the_next_on_the_route() {
    let primary = Stub::spawn(|_, _| Reply::status(503));
    let backup = Stub::spawn(|_, _| ok_json(99));
    let ws = workspace(
        None,
        &["primary", "backup"],
        &[
            http_gw("primary", &primary, "100/s"),
            http_gw("backup", &backup, "100/s"),
        ],
        &[job("j", "[sms]", "")],
    );
    ws.import(&[order(1, Some(PHONE), None, json!({}))]).ok();
    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    let m = log(&ws, "j").remove(0);
    assert_eq!(
        hops(&m),
        [
            hop("sms", Some("primary"), "transient", Some(503)),
            hop("sms", Some("backup"), "sent", Some(200)),
        ]
    );
    assert_eq!((primary.seen().len(), backup.seen().len()), (1, 1));
    let table = ws.run(&["logs", "--job", "j"]).ok().stdout;
    assert!(
        table.contains("attempt 1  2026-11-23 10:00:00  sms via primary  transient  503 HTTP 503"),
        "{table}"
    );
    assert!(
        table.contains("attempt 2  2026-11-23 10:00:00  sms via backup  sent  200"),
        "{table}"
    );
}

// ---------------------------------------------------------------------------------------
// Fallback to email.

#[test]
fn a_permanent_sms_failure_falls_back_to_email() {
    let sink = SmtpSink::start(&[]);
    let http =
        Stub::spawn(|_, _| Reply::json(400, json!({"code": 40001, "msg": "invalid mobile"})));
    let ws = workspace(
        Some(sink.port),
        &["gw"],
        &[http_gw("gw", &http, "100/s")],
        &[job("j", "[sms, email]", "")],
    );
    ws.import(&[order(
        1,
        Some(PHONE),
        Some("wang.fang@example.com"),
        json!({}),
    )])
    .ok();
    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    let mails = sink.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, "wang.fang@example.com");
    assert!(mails[0].subject.contains("SO-1"), "{}", mails[0].subject);
    let m = log(&ws, "j").remove(0);
    assert_eq!(m["state"], "sent");
    assert_eq!(
        (m["channel"].as_str(), m["address"].as_str()),
        (Some("email"), Some("wang.fang@example.com"))
    );
    assert_eq!(
        hops(&m),
        [
            hop("sms", Some("gw"), "permanent", Some(400)),
            hop("email", None, "sent", Some(250)),
        ]
    );
    assert_eq!(m["reason"], "fell back: sms: 400 HTTP 400: invalid mobile");
    let table = ws.run(&["logs", "--job", "j"]).ok().stdout;
    let sms_line = table
        .find("sms via gw  permanent  400 HTTP 400: invalid mobile")
        .expect(&table);
    let email_line = table.find("email  sent  250").expect(&table);
    assert!(sms_line < email_line, "{table}");
}

/// No phone, `consent.sms: false`, a suppressed number: each goes by email at once (no SMS
/// request), with the reason; a contact with none of these gets the SMS.
#[test]
fn no_phone_no_consent_or_a_suppressed_number_go_by_email() {
    let sink = SmtpSink::start(&[]);
    let http = Stub::spawn(|_, _| ok_json(1));
    let ws = workspace(
        Some(sink.port),
        &["gw"],
        &[http_gw("gw", &http, "100/s")],
        &[job("j", "[sms, email]", "")],
    );
    ws.run(&[
        "suppress",
        "add",
        "sms",
        "+86 138 0013 8003",
        "--reason",
        "asked by phone",
    ])
    .ok();
    ws.import(&[
        order(1, None, Some("one@example.com"), json!({})),
        order(
            2,
            Some("+8613800138002"),
            Some("two@example.com"),
            json!({"sms": false}),
        ),
        order(
            3,
            Some("+8613800138003"),
            Some("three@example.com"),
            json!({}),
        ),
        order(
            4,
            Some("+8613800138004"),
            Some("four@example.com"),
            json!({}),
        ),
    ])
    .ok();
    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "4 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    let mut to: Vec<String> = sink.messages().into_iter().map(|m| m.to).collect();
    to.sort();
    assert_eq!(
        to,
        ["one@example.com", "three@example.com", "two@example.com"]
    );
    let seen = http.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].json()["to"], "+8613800138004");
    let by_contact: BTreeMap<String, Value> = log(&ws, "j")
        .into_iter()
        .map(|m| (m["contact_id"].as_str().unwrap().to_string(), m))
        .collect();
    for (contact, reason) in [
        ("c-1", "fell back: sms: contact c-1 has no phone number"),
        ("c-2", "fell back: sms: consent.sms is false"),
        (
            "c-3",
            "fell back: sms: +8613800138003 is suppressed (asked by phone)",
        ),
    ] {
        let m = &by_contact[contact];
        assert_eq!(m["reason"], reason, "{m:#}");
        assert_eq!(hops(m), [hop("email", None, "sent", Some(250))]);
    }
    assert_eq!(
        hops(&by_contact["c-4"]),
        [hop("sms", Some("gw"), "sent", Some(200))]
    );
    assert_eq!(by_contact["c-4"]["reason"], Value::Null);
}

/// A text longer than the job's max_segments is refused before any request (permanent), so
/// the next channel takes it.
#[test]
fn max_segments_refuses_a_long_text_and_email_takes_it() {
    let http = Stub::spawn(|_, _| ok_json(1));
    let ws = workspace(
        None,
        &["gw"],
        &[http_gw("gw", &http, "100/s")],
        &[job("j", "[sms, email]", "sms: {max_segments: 1}\n")],
    );
    let mut long =
        serde_json::from_str::<Value>(&order(1, Some(PHONE), Some("a@example.com"), json!({})))
            .unwrap();
    long["data"]["review_url"] =
        json!("https://shop.example.com/review/SO-1?from=sms&campaign=autumn");
    ws.import(&[long.to_string()]).ok();
    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    assert!(http.seen().is_empty());
    let m = log(&ws, "j").remove(0);
    assert_eq!(
        hops(&m),
        [
            hop("sms", None, "permanent", None),
            hop("email", None, "sent", None)
        ]
    );
    let refused = m["attempt_log"][0]["detail"].as_str().unwrap();
    assert!(
        refused.starts_with("the text is 2 segments, UCS-2 (")
            && refused.ends_with("characters), more than the job's max_segments 1"),
        "{refused}"
    );
}

// ---------------------------------------------------------------------------------------
// Rate.

/// 200 messages through a gateway limited to 100/s take about two seconds on the wire, not
/// a burst: the provider would answer 429 past its rate.
#[test]
fn a_burst_keeps_to_the_gateway_rate() {
    let http = Stub::spawn(|_, i| ok_json(i as u64));
    let ws = workspace(
        None,
        &["gw"],
        &[http_gw("gw", &http, "100/s")],
        &[job("j", "[sms]", "")],
    );
    ws.write_config(
        None,
        &format!(
            "dispatch:\n  concurrency: 64\n  retry: {{max_attempts: 3, initial: 1m, max: 1h}}\n\
             sms:\n  route: [gw]\n  gateways:\n{}",
            http_gw("gw", &http, "100/s")
        ),
    );
    let events: Vec<String> = (0..200)
        .map(|i| order(i, Some(&format!("+86139{i:08}")), None, json!({})))
        .collect();
    ws.import(&events).ok();
    let started = Instant::now();
    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "200 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    let took = started.elapsed();
    let seen: Vec<Seen> = http.seen();
    assert_eq!(seen.len(), 200);
    let span = seen.last().unwrap().at - seen[0].at;
    assert!(
        span >= Duration::from_millis(1500),
        "200 requests in {span:?}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

// ---------------------------------------------------------------------------------------
// Receipts and replies, through the functions the HTTP API mounts, on the daemon's store.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A workspace whose job `j` sends by SMS through Twilio (`sid` is the message's id there),
/// with an Aliyun gateway beside it for replies, and one order of a contact with a phone
/// number imported. The stubs must live as long as the test.
fn one_sms_order(sid: &'static str) -> (Workspace, Stub, Stub) {
    let tw = Stub::spawn(move |_, _| Reply::json(201, json!({"sid": sid, "status": "queued"})));
    let ali = Stub::spawn(|_, _| Reply::json(200, json!({"Code": "OK", "BizId": "1^0"})));
    let ws = workspace(
        None,
        &["tw", "ali"],
        &[twilio_gw("tw", &tw), aliyun_gw("ali", &ali)],
        &[job("j", "[sms, email]", "sms: {gateways: [tw]}\n")],
    );
    ws.import(&[order(1, Some(PHONE), Some("a@example.com"), json!({}))])
        .ok();
    (ws, tw, ali)
}

#[test]
fn a_receipt_marks_the_message_delivered_and_a_stop_reply_suppresses_the_number() {
    let (ws, tw, _ali) = one_sms_order("SMaaaabbbbccccddddeeeeffff00001111");
    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 0 cancelled"
    );

    let config = Config::load(&ws.path("aftercare.yaml")).unwrap();
    let channel = SmsChannel::new(config.sms.as_ref().unwrap()).unwrap();
    let rt = runtime();
    let store = rt.block_on(Store::open(&config.store)).unwrap();
    let now = at("2026-11-23T10:00:05+08:00");
    // Twilio's signed status callback, for the configured callback URL.
    let body = "MessageSid=SMaaaabbbbccccddddeeeeffff00001111&MessageStatus=delivered\
                &To=%2B8613800138000&AccountSid=AC0123456789abcdef";
    let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let signature = twilio::signature(TWILIO_TOKEN, "https://shop.example/sms/status", &params);
    let callback = |sig: &str| {
        let inbound = Inbound {
            url: None,
            signature: Some(sig),
            body: body.as_bytes(),
            token: None,
        };
        rt.block_on(sms_hooks::status_callback(
            &store, &channel, "tw", inbound, now,
        ))
    };
    let s = callback(&signature).unwrap();
    assert_eq!(
        (s.receipts, s.recorded, s.unmatched, s.duplicates),
        (1, 1, 0, 0)
    );
    // Pushed again (providers retry): recorded once.
    let s = callback(&signature).unwrap();
    assert_eq!((s.recorded, s.duplicates), (1, 1));
    // Forged: refused, 403.
    let e = callback("AAAA").unwrap_err();
    assert!(
        matches!(e, HookError::Signature(_)) && e.status() == 403,
        "{e}"
    );

    let m = log(&ws, "j").remove(0);
    assert_eq!(
        (m["state"].as_str(), m["delivery"].as_str()),
        (Some("sent"), Some("delivered"))
    );
    let receipts = m["attempt_log"][0]["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0]["status"], "delivered");
    let table = ws.run(&["logs", "--job", "j"]).ok().stdout;
    assert!(
        table.contains("sent  sms +8613800138000  (delivered)"),
        "{table}"
    );
    assert!(
        table.contains("      receipt  2026-11-23 10:00:05  delivered"),
        "{table}"
    );

    // The customer answers 退订 through Aliyun (SmsUp push: mainland numbers without +86).
    let up = json!([{"phone_number": "13800138000", "content": "退订", "send_time": "2026-11-23 10:05:00",
                     "sign_name": "示例商店", "dest_code": "1234", "sequence_id": 1}])
    .to_string();
    let s = rt
        .block_on(sms_hooks::inbound_reply(
            &store,
            &channel,
            "ali",
            Inbound {
                url: None,
                signature: None,
                body: up.as_bytes(),
                token: None,
            },
            now,
        ))
        .unwrap();
    assert_eq!((s.replies, s.stopped), (1, 1));
    // Not JSON: 400.
    let e = rt
        .block_on(sms_hooks::inbound_reply(
            &store,
            &channel,
            "ali",
            Inbound {
                url: None,
                signature: None,
                body: b"phone=1",
                token: None,
            },
            now,
        ))
        .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    rt.block_on(store.close());
    let list = ws
        .run(&["suppress", "list", "--channel", "sms"])
        .ok()
        .stdout;
    assert!(
        list.contains(PHONE) && list.contains("STOP reply via ali"),
        "{list}"
    );

    // The next order's message goes by email, saying why.
    let mut next: Value =
        serde_json::from_str(&order(1, Some(PHONE), Some("a@example.com"), json!({}))).unwrap();
    next["id"] = json!("evt-1b");
    next["data"]["order_id"] = json!("SO-1b");
    ws.import(&[next.to_string()]).ok();
    assert_eq!(
        ws.once(DUE).stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    let m = log(&ws, "j")
        .into_iter()
        .find(|m| m["order_id"] == "SO-1b")
        .unwrap();
    assert_eq!(m["channel"], "email");
    assert_eq!(
        m["reason"],
        "fell back: sms: +8613800138000 is suppressed (STOP reply via ali)"
    );
    assert_eq!(tw.seen().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Config, validate and start-up.

/// The shipped config names all three gateways, and the daemon starts on it with none of
/// their secrets in the environment (they are read at first use).
#[test]
fn the_shipped_config_starts_without_any_sms_secret() {
    let ws = Workspace::new(None);
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/aftercare.yaml"
    ))
    .unwrap();
    for kind in ["kind: twilio", "kind: aliyun", "kind: http"] {
        assert!(shipped.contains(kind), "the shipped config shows {kind}");
    }
    ws.write("config/aftercare.yaml", &shipped);
    let log_path = ws.path("daemon.log");
    let mut child = std::process::Command::new(common::BIN)
        .current_dir(ws.dir.path())
        .args(["--config", "config/aftercare.yaml", "run"])
        .env("AFTERCARE_LOG", "info")
        .env_remove("ALIYUN_ACCESS_KEY_SECRET")
        .env_remove("SMS_BACKUP_TOKEN")
        .env_remove("TWILIO_AUTH_TOKEN")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let started = common::until(Duration::from_secs(20), || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status}):\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains("aftercare running"))
    });
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(started, "no start within 20s:\n{text}");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains("ERROR"), "{text}");
}

#[test]
fn validate_locates_sms_mistakes_with_hints() {
    let stub = Stub::spawn(|_, _| ok_json(1));
    let ws = workspace(
        None,
        &["gw"],
        &[http_gw("gw", &stub, "5/d")],
        &[job(
            "j",
            "[sms, email]",
            "sms:\n  gateways: [gw, g2]\n  template_codes: {review_requst: SMS_1}\n",
        )],
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1);
    // The config is checked first: its error alone, at the value.
    assert!(r.stderr.contains("aftercare.yaml:"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("error: sms.gateways.gw.rate: `5/d`: unknown unit `d` (s, m or h)"),
        "{}",
        r.stderr
    );
    ws.write_config(
        None,
        &format!("sms:\n  gateways:\n{}", http_gw("gw", &stub, "5/s")),
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    for want in [
        "jobs/j.yaml:7:18: error: sms.gateways[1]: no SMS gateway named `g2`\n  hint: configured gateways: gw",
        "jobs/j.yaml:8:20: error: sms.template_codes.review_requst: `review_requst` is not a template of this job\n  hint: did you mean `review_request`?",
    ] {
        assert!(
            r.stdout.contains(want),
            "missing:\n{want}\nin:\n{}",
            r.stdout
        );
    }
    // Without an sms: section a job cannot list sms.
    ws.write_config(None, "");
    let r = ws.run(&["validate"]);
    assert!(
        r.stdout.contains("jobs/j.yaml:4:12: error: channels[0]: the `sms` channel needs an SMS gateway, and the config has none"),
        "{}",
        r.stdout
    );
}

/// `preview` shows the SMS as the customer gets it, with its cost and the route.
#[test]
fn preview_shows_the_sms_its_length_and_route() {
    let stub = Stub::spawn(|_, _| ok_json(1));
    let ws = workspace(
        None,
        &["ali", "gw"],
        &[aliyun_gw("ali", &stub), http_gw("gw", &stub, "5/s")],
        &[job(
            "j",
            "[sms, email]",
            "sms: {template_codes: {review_request: SMS_123456789}, max_segments: 2}\n",
        )],
    );
    ws.write(
        "event.json",
        &order(1, Some(PHONE), Some("a@example.com"), json!({})),
    );
    let out = ws
        .run(&["preview", "j", "--event", "event.json"])
        .ok()
        .stdout;
    for want in [
        "channels: sms, email",
        "--- sms ---",
        "to:       +8613800138000",
        "route:    ali → gw",
        "length:   1 segment, UCS-2, 32 characters  (max_segments 2)",
        "provider template: SMS_123456789 {\"name\": \"王芳\", \"order\": \"SO-1\"}",
        "王芳您好，您的订单SO-1已送达，欢迎花一分钟写下评价。回T退订",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert!(stub.seen().is_empty());
}

/// Lints for SMS templates: a fixed text already over the job's max_segments, and a
/// marketing SMS that does not say how to opt out. Warnings: the job still runs.
#[test]
fn validate_warns_about_a_long_or_opt_out_less_marketing_sms() {
    let stub = Stub::spawn(|_, _| ok_json(1));
    let ws = workspace(
        None,
        &["gw"],
        &[http_gw("gw", &stub, "5/s")],
        &[job("j", "[sms, email]", "sms: {max_segments: 1}\n")],
    );
    ws.write(
        "message_templates/review_request/sms.zh-CN.hbs",
        &format!("{{{{contact.name}}}}{}\n", "好".repeat(80)),
    );
    let r = ws.run(&["validate"]).ok();
    for want in [
        "jobs/j.yaml:6:21: warning: sms.max_segments: message_templates/review_request/sms.zh-CN.hbs is 2 segments, UCS-2 before any value is filled in, more than max_segments 1: its messages will be refused on SMS",
        "message_templates/review_request/sms.zh-CN.hbs: warning: a marketing SMS that does not say how to opt out",
    ] {
        assert!(
            r.stdout.contains(want),
            "missing:\n{want}\nin:\n{}",
            r.stdout
        );
    }
    assert_eq!(ws.run(&["validate", "--deny-warnings"]).code, 1);
}

/// The forecast decides the channel like a run (SMS for a contact with a phone, email for
/// one without) and asks no gateway.
#[test]
fn forecast_shows_the_channel_and_sends_nothing() {
    let stub = Stub::spawn(|_, _| ok_json(1));
    let ws = workspace(
        None,
        &["gw"],
        &[http_gw("gw", &stub, "5/s")],
        &[job("j", "[sms, email]", "")],
    );
    ws.import(&[
        order(1, Some(PHONE), Some("a@example.com"), json!({})),
        order(2, None, Some("b@example.com"), json!({})),
    ])
    .ok();
    let out = ws
        .run(&[
            "forecast",
            "--now",
            "2026-11-22T00:00:00+08:00",
            "--until",
            "2026-11-24",
        ])
        .ok()
        .stdout;
    assert!(
        out.contains("contact c-1  order SO-1  sms +8613800138000"),
        "{out}"
    );
    assert!(
        out.contains("contact c-2  order SO-2  email b@example.com"),
        "{out}"
    );
    assert!(stub.seen().is_empty());
}

#[test]
fn the_api_takes_receipts_and_stop_replies_from_the_providers() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ws, _tw, _ali) = one_sms_order("SMapi000111222333444555666777888");
    assert!(ws.once(DUE).stdout.starts_with("1 sent"));
    let by = |d: &str| ws.logs_json(&["--delivery", d]).as_array().unwrap().len();
    assert_eq!(
        (by("delivered"), by("unknown")),
        (0, 1),
        "sent, no receipt yet"
    );
    // Now the daemon, with its API, receives what the providers push.
    let port = common::free_port();
    // Aliyun's pushes are not signed: this gateway takes only those whose URL carries its
    // push token.
    let config = std::fs::read_to_string(ws.path("aftercare.yaml"))
        .unwrap()
        .replace(
            "sign_name: 示例商店, rate: 100/s",
            "sign_name: 示例商店, push_token_env: ALI_PUSH, rate: 100/s",
        );
    ws.write(
        "aftercare.yaml",
        &format!(
            "{config}api:\n  listen: 127.0.0.1:{port}\n  public_url: \"https://shop.example\"\n  \
             tokens: [{{name: support, scope: read, token_env: T_READ}}]\n"
        ),
    );
    let mut child = ws
        .command(&["run"])
        .env("T_READ", "support-token-0123456789")
        .env("ALI_PUSH", "ali-push/token+0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_for_api(&mut child, &base, Duration::from_secs(20), "no API");
    let body = "MessageSid=SMapi000111222333444555666777888&MessageStatus=delivered&To=%2B8613800138000&AccountSid=AC0123456789abcdef";
    let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let signature = twilio::signature(TWILIO_TOKEN, "https://shop.example/sms/status", &params);
    let post = |path: &str, sig: Option<&str>, body: &str| {
        let mut req = client.post(format!("{base}{path}")).body(body.to_string());
        if let Some(s) = sig {
            req = req.header("X-Twilio-Signature", s);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap())
    };
    let (s, summary) = post("/hooks/sms/tw/status", Some(&signature), body);
    assert_eq!(
        (s, summary["recorded"].as_u64()),
        (200, Some(1)),
        "{summary}"
    );
    let (s, err) = post("/hooks/sms/tw/status", Some("AAAA"), body);
    assert_eq!((s, err["error"].as_str()), (403, Some("bad_signature")));
    assert_eq!(post("/hooks/sms/nope/status", None, body).0, 404);
    let up = json!([{"phone_number": "13800138000", "content": "ＳＴＯＰ", "send_time": "2026-11-23 10:05:00",
                     "sign_name": "示例商店", "dest_code": "1234", "sequence_id": 1}])
    .to_string();
    let (s, err) = post("/hooks/sms/ali/inbound", None, &up);
    assert_eq!(
        (s, err["error"].as_str()),
        (403, Some("bad_signature")),
        "{err}"
    );
    let (s, _) = post("/hooks/sms/ali/inbound?token=ali-push", None, &up);
    assert_eq!(s, 403, "another token");
    let ali_inbound = "/hooks/sms/ali/inbound?token=ali-push%2Ftoken%2B0123456789";
    let (s, summary) = post(ali_inbound, None, &up);
    assert_eq!(
        (s, summary["stopped"].as_u64()),
        (200, Some(1)),
        "{summary}"
    );
    assert_eq!(post(ali_inbound, None, "phone=1").0, 400);
    // The contact's timeline has the reply after the message it answers.
    let tl: Value = client
        .get(format!("{base}/v1/contacts/{PHONE}/timeline"))
        .bearer_auth("support-token-0123456789")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let kinds: Vec<&str> = tl["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["event", "message", "reply"], "{tl}");
    let reply = &tl["items"][2]["reply"];
    assert_eq!(
        (
            reply["text"].as_str(),
            reply["action"].as_str(),
            reply["provider_id"].as_str()
        ),
        (Some("ＳＴＯＰ"), Some("opt_out"), Some("1")),
        "{tl}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let m = log(&ws, "j").remove(0);
    assert_eq!(m["delivery"], "delivered");
    // Support asks which SMS reached the handset, and which did not.
    assert_eq!(
        (by("delivered"), by("undelivered"), by("unknown")),
        (1, 0, 0)
    );
    let list = ws
        .run(&["suppress", "list", "--channel", "sms"])
        .ok()
        .stdout;
    assert!(
        list.contains(PHONE) && list.contains("STOP reply via ali"),
        "{list}"
    );
    // Support sees the reply beside the message it answers.
    let log = ws.run(&["logs", "--contact", PHONE]).ok().stdout;
    assert!(
        log.contains(&format!("from {PHONE} via ali  (opt_out)  \"ＳＴＯＰ\""))
            && log.contains("1 SMS reply"),
        "{log}"
    );
}

/// A Twilio Messaging Service with no per-gateway `status_callback`: with `api.public_url`
/// set, each send names public_url + the receipts path, and the receipts route checks the
/// signature against that URL (issue 14: it answered 400 "no callback URL").
#[test]
fn a_messaging_service_gets_its_receipts_at_the_public_url() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sid = "SMmsvc0000111122223333444455556666";
    let tw = Stub::spawn(move |_, _| Reply::json(201, json!({"sid": sid, "status": "accepted"})));
    let gw = format!(
        "    tw: {{kind: twilio, account_sid: AC0123456789abcdef, auth_token_file: twilio.token, \
         messaging_service_sid: MG0123456789abcdef0123456789abcdef, rate: 100/s, base_url: \"{}\"}}\n",
        tw.url
    );
    let ws = workspace(None, &["tw"], &[gw], &[job("j", "[sms]", "")]);
    let port = common::free_port();
    let config = std::fs::read_to_string(ws.path("aftercare.yaml")).unwrap();
    ws.write(
        "aftercare.yaml",
        &format!("{config}api:\n  listen: 127.0.0.1:{port}\n  public_url: \"https://shop.example/care/\"\n"),
    );
    ws.import(&[order(1, Some(PHONE), None, json!({}))]).ok();
    assert!(ws.once(DUE).stdout.starts_with("1 sent"));
    let form = tw.seen()[0].form();
    let callback_url = "https://shop.example/care/hooks/sms/tw/status";
    assert_eq!(
        form.get("MessagingServiceSid").map(String::as_str),
        Some("MG0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        form.get("StatusCallback").map(String::as_str),
        Some(callback_url)
    );

    // The daemon's API, behind a proxy that maps https://shop.example/care/ to it.
    let mut child = ws
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_for_api(&mut child, &base, Duration::from_secs(20), "no API");
    let body = format!(
        "MessageSid={sid}&MessageStatus=delivered&To=%2B8613800138000&AccountSid=AC0123456789abcdef\
         &MessagingServiceSid=MG0123456789abcdef0123456789abcdef"
    );
    let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let post = |sig: &str| {
        let r = client
            .post(format!("{base}/hooks/sms/tw/status"))
            .header("X-Twilio-Signature", sig)
            .body(body.clone())
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    // Signed for another URL, or with another token: refused.
    let elsewhere = twilio::signature(TWILIO_TOKEN, "https://shop.example/sms/status", &params);
    assert_eq!(post(&elsewhere).0, 403);
    assert_eq!(
        post(&twilio::signature("other-token", callback_url, &params)).0,
        403
    );
    let (status, summary) = post(&twilio::signature(TWILIO_TOKEN, callback_url, &params));
    assert_eq!(
        (status, summary["recorded"].as_u64()),
        (200, Some(1)),
        "{summary}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(log(&ws, "j")[0]["delivery"], "delivered");
}

/// A gateway whose secret is not there yet is our setup's fault, not the message's: the
/// message waits without using up its tries (three here), however many runs pass, and goes
/// once the secret is in place.
#[test]
fn a_missing_secret_keeps_the_sms_waiting_without_using_up_its_tries() {
    let stub = Stub::spawn(|_, _| ok_json(7));
    let ws = workspace(
        None,
        &["gw"],
        &[http_gw("gw", &stub, "50/s")],
        &[job("waits", "[sms]", "sms: {gateways: [gw]}\n")],
    );
    std::fs::remove_file(ws.path("http.secret")).unwrap();
    ws.import(&[order(1, Some(PHONE), None, json!({}))]).ok();
    // Five runs, each after the last one's wait (1, 2, 4, 8 min... under max_attempts: 3).
    for at in [
        "2026-11-23T10:00:00+08:00",
        "2026-11-23T11:00:00+08:00",
        "2026-11-23T12:00:00+08:00",
        "2026-11-23T13:00:00+08:00",
        "2026-11-23T14:00:00+08:00",
    ] {
        let r = ws.once(at);
        assert_eq!(
            r.stdout.trim(),
            "0 sent, 1 retrying, 0 failed, 0 cancelled",
            "{at}"
        );
    }
    let m = &log(&ws, "waits")[0];
    // Five tries on record, past max_attempts (3), and still waiting: none counted.
    assert_eq!(m["state"], "retrying", "{m}");
    assert_eq!(m["attempt_log"].as_array().map(Vec::len), Some(5), "{m}");
    let reason = m["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("waiting for an SMS gateway: no gateway available: gw is unavailable")
            && reason.contains("http.secret"),
        "{reason}"
    );
    assert!(stub.seen().is_empty());
    ws.write("http.secret", HTTP_SECRET);
    let r = ws.once("2026-11-23T15:00:00+08:00");
    assert_eq!(r.stdout.trim(), "1 sent, 0 retrying, 0 failed, 0 cancelled");
    assert_eq!(stub.seen().len(), 1);
}
