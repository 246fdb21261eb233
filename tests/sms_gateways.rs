//! The SMS channel against local HTTP servers standing in for Twilio, Alibaba Cloud and a
//! generic provider. Each stub records the exact requests, so the tests check what went over
//! the wire (method, path, auth, every form or JSON field, the Aliyun signature, verified by
//! an implementation written here from Alibaba's document) and how each answer became a
//! `Delivery`: sent, transient with `Retry-After`, permanent with the provider's words,
//! failover, the breaker, the rate limit, and no credential in any detail or log line.

mod common;

use aftercare::channels::Delivery;
use aftercare::channels::sms::{
    self, Inbound, ProviderTemplate, ReceiptError, ReceiptStatus, Routed, SkipReason, SmsChannel,
    SmsConfig, SmsMessage,
};
use aftercare::model::Outcome;
use base64::Engine;
use common::provider::{Reply, Stub};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const TWILIO_TOKEN: &str = "tw-auth-token-5f1e2d3c9b";
const ALIYUN_SECRET: &str = "ali-secret-Q9w8e7r6t5y4";
const HTTP_SECRET: &str = "http-bearer-77aa88bb99cc";
const TO: &str = "+8613800138000";

// ---------------------------------------------------------------------------------------
// Config and messages.

/// A folder holding the three secrets as files, the way a deployment mounts them.
fn secrets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("twilio.token"), format!("{TWILIO_TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("aliyun.secret"), ALIYUN_SECRET).unwrap();
    std::fs::write(dir.path().join("http.secret"), HTTP_SECRET).unwrap();
    dir
}

fn twilio_yaml(name: &str, url: &str) -> String {
    format!(
        "  {name}: {{kind: twilio, account_sid: AC0123456789abcdef, auth_token_file: twilio.token, \
         from: \"+15005550006\", status_callback: \"https://shop.example/sms/status\", \
         rate: 100/s, base_url: \"{url}\"}}\n"
    )
}

fn aliyun_yaml(name: &str, url: &str) -> String {
    format!(
        "  {name}: {{kind: aliyun, access_key_id: LTAI5tTestKeyId, access_key_secret_file: aliyun.secret, \
         sign_name: 示例商店, rate: 100/s, base_url: \"{url}\"}}\n"
    )
}

fn http_yaml(name: &str, url: &str, rate: &str) -> String {
    format!(
        "  {name}:\n    kind: http\n    url: \"{url}/v1/sms?ref={{{{reference}}}}\"\n    \
         headers: {{Authorization: \"Bearer {{{{secret}}}}\", X-Client: aftercare}}\n    \
         secret_file: http.secret\n    \
         body: '{{\"to\":\"{{{{to}}}}\",\"text\":\"{{{{body}}}}\",\"ref\":\"{{{{reference}}}}\"}}'\n    \
         format: json\n    success: {{status: 200, pointer: /code, equals: \"0\", retry: [\"1001\"]}}\n    \
         id_pointer: /data/id\n    message_pointer: /msg\n    rate: {rate}\n    \
         receipt: {{id_pointer: /msgid, status_pointer: /stat, code_pointer: /stat, text_pointer: /desc, \
         delivered: [DELIVRD], undelivered: [UNDELIV, EXPIRED]}}\n"
    )
}

fn config(dir: &Path, route: &[&str], gateways: &[String]) -> SmsConfig {
    let yaml = format!(
        "route: [{}]\nbreaker: {{failures: 3, cooldown: 1h}}\ngateways:\n{}",
        route.join(", "),
        gateways.concat()
    );
    sms::settings::from_yaml(&dir.join("aftercare.yaml"), &yaml)
        .unwrap_or_else(|p| panic!("{p}\n{yaml}"))
}

fn text(body: &str) -> SmsMessage {
    SmsMessage {
        to: TO.into(),
        text: Some(body.into()),
        template: None,
        reference: "01JREF0000000000000000001".into(),
    }
}

/// What a job with both an SMS text and an Aliyun template produces.
fn both(body: &str) -> SmsMessage {
    SmsMessage {
        template: Some(ProviderTemplate {
            code: "SMS_123456789".into(),
            params: r#"{"name": "王芳", "order": "SO-1001", "days": 3}"#.into(),
        }),
        ..text(body)
    }
}

/// No credential, in any form it travelled in, appears in what the channel returns.
fn assert_clean(d: &Delivery) {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let forms = [
        TWILIO_TOKEN.to_string(),
        ALIYUN_SECRET.to_string(),
        HTTP_SECRET.to_string(),
        b64(&format!("AC0123456789abcdef:{TWILIO_TOKEN}")),
        b64(TWILIO_TOKEN),
    ];
    for f in &forms {
        assert!(
            !d.detail.contains(f.as_str()),
            "credential in detail: {d:?}"
        );
        assert!(
            !d.provider_id.as_deref().unwrap_or("").contains(f.as_str()),
            "credential in provider id: {d:?}"
        );
    }
}

fn assert_all_clean(r: &Routed) {
    for h in &r.hops {
        assert_clean(&h.delivery);
    }
    assert_clean(&r.delivery());
}

fn hops(r: &Routed) -> Vec<(&str, Outcome)> {
    r.hops
        .iter()
        .map(|h| (h.gateway.as_str(), h.delivery.outcome))
        .collect()
}

fn twilio_created(sid: &str) -> Reply {
    Reply::json(
        201,
        json!({"sid": sid, "status": "queued", "error_code": null, "error_message": null,
               "to": TO, "from": "+15005550006", "num_segments": "1"}),
    )
}

fn aliyun_ok(biz: &str) -> Reply {
    Reply::json(
        200,
        json!({"Code": "OK", "Message": "OK", "BizId": biz, "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"}),
    )
}

fn http_ok(id: u64) -> Reply {
    Reply::json(
        200,
        json!({"code": 0, "msg": "success", "data": {"id": id}}),
    )
}

// ---------------------------------------------------------------------------------------
// Aliyun's signature, written independently from the document: Java's URLEncoder output with
// `+` → `%20`, `*` → `%2A`, `%7E` → `~`, exactly the recipe Alibaba gives.

fn doc_percent_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
        .replace('*', "%2A")
        .replace("%7E", "~")
}

fn doc_signature(method: &str, form: &BTreeMap<String, String>, secret: &str) -> String {
    let canonical = form
        .iter()
        .filter(|(k, _)| *k != "Signature")
        .map(|(k, v)| format!("{}={}", doc_percent_encode(k), doc_percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!(
        "{method}&{}&{}",
        doc_percent_encode("/"),
        doc_percent_encode(&canonical)
    );
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{secret}&").as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

// ---------------------------------------------------------------------------------------
// Sending: one per gateway.

#[tokio::test]
async fn twilio_sends_the_documented_form_with_basic_auth() {
    let stub = Stub::start(|_, _| twilio_created("SM0123456789abcdef0123456789abcdef")).await;
    let dir = secrets();
    let ch = SmsChannel::new(&config(
        dir.path(),
        &["tw"],
        &[twilio_yaml("tw", &stub.url)],
    ))
    .unwrap();

    let r = ch
        .send(
            &[],
            &text("Your order SO-1001 has arrived. Review it: https://s.example/r/1"),
        )
        .await;
    assert_eq!(hops(&r), [("tw", Outcome::Sent)]);
    let d = r.delivery();
    assert_eq!(d.code, Some(201));
    assert_eq!(
        d.provider_id.as_deref(),
        Some("SM0123456789abcdef0123456789abcdef")
    );
    assert_eq!(d.detail, "queued; 1 segment, GSM-7");
    assert_all_clean(&r);

    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path,
        "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json"
    );
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("AC0123456789abcdef:{TWILIO_TOKEN}"));
    assert_eq!(req.header("authorization"), Some(format!("Basic {basic}")));
    assert_eq!(
        req.header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let form = req.form();
    let want: BTreeMap<String, String> = [
        ("To", TO),
        ("From", "+15005550006"),
        (
            "Body",
            "Your order SO-1001 has arrived. Review it: https://s.example/r/1",
        ),
        ("StatusCallback", "https://shop.example/sms/status"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form, want);
}

#[tokio::test]
async fn twilio_messaging_service_and_unicode_text() {
    let stub = Stub::start(|_, _| twilio_created("SM1")).await;
    let dir = secrets();
    let yaml = twilio_yaml("tw", &stub.url).replace(
        "from: \"+15005550006\", status_callback: \"https://shop.example/sms/status\", ",
        "messaging_service_sid: MG0123456789abcdef, ",
    );
    let ch = SmsChannel::new(&config(dir.path(), &["tw"], &[yaml])).unwrap();
    let body = "王芳您好，订单已送达，欢迎评价 👍";
    let r = ch.send(&[], &text(body)).await;
    assert_eq!(hops(&r), [("tw", Outcome::Sent)]);
    assert_eq!(r.delivery().detail, "queued; 1 segment, UCS-2");
    let form = stub.seen()[0].form();
    assert_eq!(
        form.get("MessagingServiceSid").map(String::as_str),
        Some("MG0123456789abcdef")
    );
    assert_eq!(form.get("Body").map(String::as_str), Some(body));
    assert!(
        !form.contains_key("From") && !form.contains_key("StatusCallback"),
        "{form:?}"
    );
}

#[tokio::test]
async fn aliyun_sends_a_signed_sendsms_request() {
    let stub = Stub::start(|_, i| aliyun_ok(&format!("90061974693649844{i}^0"))).await;
    let dir = secrets();
    let ch = SmsChannel::new(&config(
        dir.path(),
        &["ali"],
        &[aliyun_yaml("ali", &stub.url)],
    ))
    .unwrap();

    let before = chrono::Utc::now() - chrono::Duration::seconds(2);
    let r = ch
        .send(&[], &both("(not sent: aliyun takes the template)"))
        .await;
    let r2 = ch.send(&[], &both("again")).await;
    let after = chrono::Utc::now() + chrono::Duration::seconds(2);
    assert_eq!(hops(&r), [("ali", Outcome::Sent)]);
    let d = r.delivery();
    assert_eq!(d.code, Some(200));
    assert_eq!(d.provider_id.as_deref(), Some("900619746936498440^0"));
    assert_eq!(
        d.detail,
        "OK (RequestId F655A8D5-B967-440B-8683-DAD6FF8DE990)"
    );
    assert_eq!(
        r2.delivery().provider_id.as_deref(),
        Some("900619746936498441^0")
    );
    assert_all_clean(&r);

    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/");
    assert!(
        req.header("content-type")
            .unwrap()
            .starts_with("application/x-www-form-urlencoded"),
        "{:?}",
        req.header("content-type")
    );
    let form = req.form();
    let keys: Vec<&str> = form.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "Action",
            "Format",
            "OutId",
            "PhoneNumbers",
            "RegionId",
            "SignName",
            "Signature",
            "SignatureMethod",
            "SignatureNonce",
            "SignatureVersion",
            "TemplateCode",
            "TemplateParam",
            "Timestamp",
            "Version"
        ]
    );
    let f = |k: &str| form[k].as_str();
    assert_eq!(f("AccessKeyId"), "LTAI5tTestKeyId");
    assert_eq!(f("Action"), "SendSms");
    assert_eq!(f("Format"), "JSON");
    assert_eq!(f("Version"), "2017-05-25");
    assert_eq!(f("RegionId"), "cn-hangzhou");
    assert_eq!(f("SignatureMethod"), "HMAC-SHA1");
    assert_eq!(f("SignatureVersion"), "1.0");
    assert_eq!(f("PhoneNumbers"), "13800138000");
    assert_eq!(f("SignName"), "示例商店");
    assert_eq!(f("TemplateCode"), "SMS_123456789");
    let params: Value = serde_json::from_str(f("TemplateParam")).unwrap();
    assert_eq!(
        params,
        json!({"name": "王芳", "order": "SO-1001", "days": "3"})
    );
    assert_eq!(f("OutId"), "01JREF0000000000000000001");
    let ts = chrono::NaiveDateTime::parse_from_str(f("Timestamp"), "%Y-%m-%dT%H:%M:%SZ")
        .expect("Timestamp as yyyy-MM-ddTHH:mm:ssZ")
        .and_utc();
    assert!(before <= ts && ts <= after, "{ts}");
    assert_eq!(f("Signature"), doc_signature("POST", &form, ALIYUN_SECRET));
    // A signature over anything else (the GET method, another secret) does not match.
    assert_ne!(f("Signature"), doc_signature("GET", &form, ALIYUN_SECRET));
    assert_ne!(
        f("Signature"),
        doc_signature("POST", &form, "another-secret")
    );
    // Each request has its own nonce; the secret itself never travels.
    assert_ne!(form["SignatureNonce"], seen[1].form()["SignatureNonce"]);
    assert_eq!(
        seen[1].form()["Signature"],
        doc_signature("POST", &seen[1].form(), ALIYUN_SECRET)
    );
    for s in &seen {
        assert!(!String::from_utf8_lossy(&s.body).contains(ALIYUN_SECRET));
    }
}

#[tokio::test]
async fn http_gateway_fills_the_templates_and_reads_the_id() {
    let stub = Stub::start(|_, _| http_ok(4242)).await;
    let dir = secrets();
    let ch = SmsChannel::new(&config(
        dir.path(),
        &["local"],
        &[http_yaml("local", &stub.url, "50/s")],
    ))
    .unwrap();
    let body = "Hi \"Wang\" & co,\nyour order arrived: {review}";
    let r = ch.send(&[], &text(body)).await;
    assert_eq!(hops(&r), [("local", Outcome::Sent)]);
    let d = r.delivery();
    assert_eq!(
        (d.code, d.provider_id.as_deref()),
        (Some(200), Some("4242"))
    );
    assert_eq!(d.detail, "HTTP 200; 1 segment, GSM-7"); // quotes, & and newline are GSM; { } escaped
    assert_all_clean(&r);

    let req = &stub.seen()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/sms");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {HTTP_SECRET}"))
    );
    assert_eq!(req.header("x-client").as_deref(), Some("aftercare"));
    assert_eq!(
        req.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        req.json(),
        json!({"to": TO, "text": body, "ref": "01JREF0000000000000000001"})
    );
}

// ---------------------------------------------------------------------------------------
// Failures: transient, Retry-After, permanent.

#[tokio::test]
async fn a_503_is_transient_on_every_gateway() {
    let stub =
        Stub::start(|_, _| Reply::json(503, json!({"message": "Service Unavailable"}))).await;
    let dir = secrets();
    let gateways = [
        twilio_yaml("tw", &stub.url),
        aliyun_yaml("ali", &stub.url),
        http_yaml("local", &stub.url, "50/s"),
    ];
    let cfg = config(dir.path(), &["tw"], &gateways);
    let ch = SmsChannel::new(&cfg).unwrap();
    for gw in ["tw", "ali", "local"] {
        let r = ch.send(&[gw.to_string()], &both("hello")).await;
        assert_eq!(hops(&r), [(gw, Outcome::Transient)], "{gw}");
        let d = r.delivery();
        assert_eq!(d.code, Some(503), "{gw}");
        assert_eq!(d.retry_after, None, "{gw}");
        assert!(d.detail.contains("503"), "{gw}: {}", d.detail);
        assert_all_clean(&r);
    }
    assert_eq!(stub.seen().len(), 3);
}

#[tokio::test]
async fn a_429_carries_retry_after_in_seconds_or_as_a_date() {
    let in_a_minute = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
    let stub = Stub::start(move |req, _| {
        let reply = Reply::json(
            429,
            json!({"code": 20429, "message": "Too Many Requests", "status": 429}),
        );
        if req.path.contains("Messages.json") {
            reply.header("retry-after", "120")
        } else {
            reply.header("retry-after", in_a_minute.clone())
        }
    })
    .await;
    let dir = secrets();
    let cfg = config(
        dir.path(),
        &["tw"],
        &[
            twilio_yaml("tw", &stub.url),
            http_yaml("local", &stub.url, "50/s"),
        ],
    );
    let ch = SmsChannel::new(&cfg).unwrap();

    let d = ch.send(&["tw".into()], &text("hi")).await.delivery();
    assert_eq!(d.outcome, Outcome::Transient);
    assert_eq!(d.code, Some(429));
    assert_eq!(d.retry_after, Some(Duration::from_secs(120)));
    assert_eq!(d.detail, "twilio error 20429: Too Many Requests");

    let d = ch.send(&["local".into()], &text("hi")).await.delivery();
    assert_eq!((d.outcome, d.code), (Outcome::Transient, Some(429)));
    let wait = d.retry_after.expect("Retry-After date");
    assert!(
        (Duration::from_secs(55)..=Duration::from_secs(60)).contains(&wait),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_refusal_is_permanent_with_the_providers_code_and_words_and_stops_the_route() {
    let twilio = Stub::start(|_, _| {
        Reply::json(
            400,
            json!({"code": 21211, "message": "The 'To' number +8612 is not a valid phone number.",
                   "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}),
        )
    })
    .await;
    let aliyun = Stub::start(|_, _| {
        Reply::json(
            200,
            json!({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "手机号码格式错误", "RequestId": "R-1"}),
        )
    })
    .await;
    let backup = Stub::start(|_, _| http_ok(1)).await;
    let dir = secrets();
    let cfg = config(
        dir.path(),
        &["tw", "local"],
        &[
            twilio_yaml("tw", &twilio.url),
            aliyun_yaml("ali", &aliyun.url),
            http_yaml("local", &backup.url, "50/s"),
        ],
    );
    let ch = SmsChannel::new(&cfg).unwrap();

    let r = ch.send(&[], &both("hi")).await;
    assert_eq!(hops(&r), [("tw", Outcome::Permanent)]);
    let d = r.delivery();
    assert_eq!(d.code, Some(400));
    assert_eq!(d.retry_after, None);
    assert_eq!(
        d.detail,
        "twilio error 21211: The 'To' number +8612 is not a valid phone number. \
         (https://www.twilio.com/docs/errors/21211)"
    );

    let r = ch.send(&["ali".into(), "local".into()], &both("hi")).await;
    assert_eq!(hops(&r), [("ali", Outcome::Permanent)]);
    assert_eq!(
        r.delivery().detail,
        "aliyun isv.MOBILE_NUMBER_ILLEGAL: 手机号码格式错误 (RequestId R-1)"
    );
    assert!(
        backup.seen().is_empty(),
        "no other gateway after a permanent refusal"
    );
}

#[tokio::test]
async fn aliyun_throttling_and_account_codes_are_transient() {
    let aliyun = Stub::start(|_, i| match i {
        0 => Reply::json(200, json!({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发号码天级流控"})),
        1 => Reply::json(200, json!({"Code": "isp.SYSTEM_ERROR", "Message": "系统错误"})),
        2 => Reply::json(400, json!({"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched with our calculation."})),
        3 => Reply::json(400, json!({"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "模板不合法"})),
        _ => Reply::status(502),
    })
    .await;
    let dir = secrets();
    let mut cfg = config(dir.path(), &["ali"], &[aliyun_yaml("ali", &aliyun.url)]);
    cfg.breaker.failures = 100; // this test is about codes, not the breaker
    let ch = SmsChannel::new(&cfg).unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let d = ch.send(&[], &both("x")).await.delivery();
        assert_clean(&d);
        got.push((d.outcome, d.code, d.detail));
    }
    assert_eq!(
        got,
        [
            (Outcome::Transient, Some(200), "aliyun isv.BUSINESS_LIMIT_CONTROL: 触发号码天级流控".to_string()),
            (Outcome::Transient, Some(200), "aliyun isp.SYSTEM_ERROR: 系统错误".to_string()),
            (Outcome::Transient, Some(400), "aliyun SignatureDoesNotMatch: Specified signature is not matched with our calculation.".to_string()),
            (Outcome::Permanent, Some(400), "aliyun isv.SMS_TEMPLATE_ILLEGAL: 模板不合法".to_string()),
            (Outcome::Transient, Some(502), "aliyun: HTTP 502".to_string()),
        ]
    );
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transient() {
    let slow = Stub::start(|_, _| http_ok(1).after(Duration::from_secs(3))).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }; // dropped: nothing listens there any more
    let dir = secrets();
    let mut cfg = config(
        dir.path(),
        &["slow"],
        &[
            http_yaml("slow", &slow.url, "50/s"),
            twilio_yaml("gone", &closed),
        ],
    );
    for g in &mut cfg.gateways {
        g.timeout = Duration::from_millis(300);
    }
    let ch = SmsChannel::new(&cfg).unwrap();

    let started = Instant::now();
    let d = ch.send(&["slow".into()], &text("hi")).await.delivery();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((d.outcome, d.code), (Outcome::Transient, None));
    assert_eq!(d.detail, "no answer within 300ms");

    let d = ch.send(&["gone".into()], &text("hi")).await.delivery();
    assert_eq!((d.outcome, d.code), (Outcome::Transient, None));
    assert!(d.detail.starts_with("cannot connect"), "{}", d.detail);
    assert!(
        !d.detail.contains("Messages.json"),
        "no URL in the detail: {}",
        d.detail
    );
}

// ---------------------------------------------------------------------------------------
// Failover and the breaker.

#[tokio::test]
async fn a_transient_failure_fails_over_to_the_next_gateway_at_once() {
    let aliyun = Stub::start(|_, _| Reply::status(503).header("retry-after", "30")).await;
    let backup = Stub::start(|_, _| http_ok(77)).await;
    let dir = secrets();
    let ch = SmsChannel::new(&config(
        dir.path(),
        &["aliyun", "http-backup"],
        &[
            aliyun_yaml("aliyun", &aliyun.url),
            http_yaml("http-backup", &backup.url, "50/s"),
        ],
    ))
    .unwrap();

    let r = ch.send(&[], &both("您的订单已送达")).await;
    assert_eq!(
        hops(&r),
        [
            ("aliyun", Outcome::Transient),
            ("http-backup", Outcome::Sent)
        ]
    );
    assert_eq!(
        r.hops[0].delivery.retry_after,
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        r.sent().unwrap().delivery.provider_id.as_deref(),
        Some("77")
    );
    assert_eq!(r.delivery().outcome, Outcome::Sent);
    assert_all_clean(&r);
    assert_eq!((aliyun.seen().len(), backup.seen().len()), (1, 1));
    assert_eq!(backup.seen()[0].json()["text"], "您的订单已送达");
}

#[tokio::test]
async fn the_breaker_skips_a_down_gateway_then_probes_it() {
    let flaky_ok = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = flaky_ok.clone();
    let primary = Stub::start(move |_, _| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            twilio_created("SM-back")
        } else {
            Reply::status(500)
        }
    })
    .await;
    let backup = Stub::start(|_, i| http_ok(i as u64)).await;
    let dir = secrets();
    let mut cfg = config(
        dir.path(),
        &["primary", "backup"],
        &[
            twilio_yaml("primary", &primary.url),
            http_yaml("backup", &backup.url, "50/s"),
        ],
    );
    cfg.breaker.cooldown = Duration::from_millis(400);
    let ch = SmsChannel::new(&cfg).unwrap();

    // Three transient failures in a row (failures: 3) take the primary down.
    for _ in 0..3 {
        let r = ch.send(&[], &text("hi")).await;
        assert_eq!(
            hops(&r),
            [("primary", Outcome::Transient), ("backup", Outcome::Sent)]
        );
    }
    for _ in 0..4 {
        let r = ch.send(&[], &text("hi")).await;
        assert_eq!(hops(&r), [("backup", Outcome::Sent)]);
        assert!(matches!(
            r.skipped.as_slice(),
            [s] if s.gateway == "primary" && matches!(s.reason, SkipReason::Down { .. })
        ));
    }
    assert_eq!(primary.seen().len(), 3, "no request while down");

    // Down with no other gateway: transient, retry when the cooldown ends.
    let d = ch.send(&["primary".into()], &text("hi")).await.delivery();
    assert_eq!(d.outcome, Outcome::Transient);
    assert!(
        d.detail
            .starts_with("no gateway available: primary is down"),
        "{}",
        d.detail
    );
    assert!(
        d.retry_after
            .is_some_and(|w| w <= Duration::from_millis(400))
    );

    // After the cooldown one send probes it; it has recovered, so the breaker closes.
    flaky_ok.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let r = ch.send(&[], &text("hi")).await;
    assert_eq!(hops(&r), [("primary", Outcome::Sent)]);
    let r = ch.send(&[], &text("hi")).await;
    assert_eq!(hops(&r), [("primary", Outcome::Sent)]);
    assert_eq!(primary.seen().len(), 5);
}

#[tokio::test]
async fn gateways_that_cannot_carry_the_message_are_skipped_without_a_request() {
    let aliyun = Stub::start(|_, _| aliyun_ok("1")).await;
    let twilio = Stub::start(|_, _| twilio_created("SM1")).await;
    let dir = secrets();
    let ch = SmsChannel::new(&config(
        dir.path(),
        &["ali", "tw"],
        &[
            aliyun_yaml("ali", &aliyun.url),
            twilio_yaml("tw", &twilio.url),
        ],
    ))
    .unwrap();

    // Text only: aliyun needs a template, so twilio takes it.
    let r = ch.send(&[], &text("hello")).await;
    assert_eq!(hops(&r), [("tw", Outcome::Sent)]);
    assert!(matches!(&r.skipped[0].reason, SkipReason::Unsuitable(w) if w.contains("template")));

    // Template only: twilio has nothing to send.
    let template_only = SmsMessage {
        text: None,
        ..both("")
    };
    let r = ch.send(&["tw".into(), "ali".into()], &template_only).await;
    assert_eq!(hops(&r), [("ali", Outcome::Sent)]);

    // Neither, or an unknown name: permanent, no request.
    let r = ch.send(&["tw".into(), "nope".into()], &template_only).await;
    assert!(r.hops.is_empty());
    let d = r.delivery();
    assert_eq!(d.outcome, Outcome::Permanent);
    assert!(d.detail.contains("tw: twilio sends text"), "{}", d.detail);
    assert!(d.detail.contains("nope: no such gateway"), "{}", d.detail);
    assert_eq!((aliyun.seen().len(), twilio.seen().len()), (1, 1));
}

// ---------------------------------------------------------------------------------------
// The rate limit.

/// 10,000 messages at once through a 1,000/s gateway: all arrive, none twice, none early.
///
/// The limiter's promise is exact: the k-th request is released no sooner than
/// `(k + 1 - burst) / rate` after the limiter was made, and the network can only delay it
/// further, so that bound is checked on every arrival. Arrivals can bunch (on two cores the
/// stub and the client compete), so the busiest second is checked loosely, against a
/// limiter that saves up unused capacity. The rate sits well below what this machine
/// can push through loopback, so a limiter that does not wait fails the first check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_thousand_respects_the_rate_and_loses_nothing() {
    const N: usize = 10_000;
    const RATE: usize = 1_000;
    const BURST: usize = RATE / 100; // 10 ms worth, see channels/sms/pace.rs
    let stub = Stub::start(|_, i| http_ok(i as u64)).await;
    let dir = secrets();
    let cfg = config(
        dir.path(),
        &["bulk"],
        &[http_yaml("bulk", &stub.url, &format!("{RATE}/s"))],
    );
    let origin = Instant::now(); // before the limiter exists
    let ch = SmsChannel::new(&cfg).unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let ch = ch.clone();
        tasks.spawn(async move {
            let msg = SmsMessage {
                reference: format!("msg-{i}"),
                ..text("hi")
            };
            ch.send(&[], &msg).await.delivery().outcome
        });
    }
    let mut sent = 0;
    while let Some(outcome) = tasks.join_next().await {
        if outcome.unwrap() == Outcome::Sent {
            sent += 1;
        }
    }
    let elapsed = origin.elapsed();
    assert_eq!(sent, N);

    let seen = stub.seen();
    assert_eq!(seen.len(), N, "one request per message");
    let refs: HashSet<String> = seen
        .iter()
        .map(|s| s.json()["ref"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refs.len(), N, "every message once");

    let mut at: Vec<Duration> = seen.iter().map(|s| s.at.duration_since(origin)).collect();
    at.sort();
    let period = Duration::from_secs(1) / RATE as u32;
    for (k, t) in at.iter().enumerate() {
        let earliest = period * (k + 1).saturating_sub(BURST) as u32;
        assert!(
            *t + Duration::from_millis(2) >= earliest,
            "request {k} arrived at {t:?}, before {earliest:?}"
        );
    }
    let floor = period * (N - BURST) as u32;
    assert!(elapsed >= floor, "{elapsed:?} < {floor:?}");
    assert!(elapsed < floor * 4, "{elapsed:?}: far slower than the rate");
    let mut busiest = 0;
    let mut j = 0;
    for i in 0..at.len() {
        while at[i] - at[j] >= Duration::from_secs(1) {
            j += 1;
        }
        busiest = busiest.max(i - j + 1);
    }
    assert!(
        busiest <= RATE * 5 / 4,
        "{busiest} requests arrived within one second"
    );
}

// ---------------------------------------------------------------------------------------
// Credentials: not in details, not in logs.

#[tokio::test]
async fn a_provider_echoing_the_request_leaks_no_credential() {
    // A hostile or broken provider that answers 400 with everything it received.
    let echo = Stub::start(|req, _| {
        let mut text = String::new();
        for (k, v) in &req.headers {
            text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
        }
        text.push_str(&String::from_utf8_lossy(&req.body));
        Reply::json(
            400,
            json!({"code": 1, "message": text, "msg": text, "Code": "Echo", "Message": text}),
        )
    })
    .await;
    let dir = secrets();
    let ch = SmsChannel::new(&config(
        dir.path(),
        &["tw"],
        &[
            twilio_yaml("tw", &echo.url),
            aliyun_yaml("ali", &echo.url),
            http_yaml("local", &echo.url, "50/s"),
        ],
    ))
    .unwrap();
    for gw in ["tw", "ali", "local"] {
        let r = ch.send(&[gw.to_string()], &both("hi")).await;
        assert_eq!(hops(&r), [(gw, Outcome::Permanent)]);
        assert!(
            r.delivery().detail.contains("[redacted]") || gw == "ali",
            "{gw}: {}",
            r.delivery().detail
        );
        assert_all_clean(&r);
    }
}

const LOG_CHILD: &str = "AFTERCARE_SMS_LOG_CHILD";

/// What the channel logs (everything at TRACE, other crates included) holds no credential
/// and no full phone number, and does say what happened.
///
/// Tracing caches per call site whether any subscriber listens, and a call site that another
/// test thread registers at the moment a thread-local subscriber is installed can stay cached
/// as "nobody listens". So the sends run alone in a child process of this test binary, with a
/// global subscriber, and this test reads what the child logged.
#[test]
fn logs_hold_no_credential_and_no_full_number() {
    const NAME: &str = "logs_hold_no_credential_and_no_full_number";
    if std::env::var_os(LOG_CHILD).is_some() {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init()
            .unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(log_scenario());
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(LOG_CHILD, "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the child failed:\n{log}");
    assert!(
        log.contains("sms attempt"),
        "the attempts are logged:\n{log}"
    );
    assert!(
        log.contains("hyper"),
        "other crates' logs are captured too:\n{log}"
    );
    assert!(
        log.contains("marked down"),
        "the breaker trip is logged:\n{log}"
    );
    assert!(log.contains("+86*******8000"), "numbers are masked:\n{log}");
    assert!(!log.contains(TO), "a full number in the log:\n{log}");
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("AC0123456789abcdef:{TWILIO_TOKEN}"));
    for secret in [TWILIO_TOKEN, ALIYUN_SECRET, HTTP_SECRET, basic.as_str()] {
        assert!(!log.contains(secret), "a credential in the log:\n{log}");
    }
}

/// Two sends: the first fails on two gateways (each echoing the credential it got) and trips
/// both breakers (failures: 1), the second skips them; Aliyun takes both.
async fn log_scenario() {
    let failing = Stub::start(|req, _| {
        let auth = req.header("authorization").unwrap_or_default();
        Reply::json(503, json!({"code": 1, "message": auth, "msg": auth}))
    })
    .await;
    let ok = Stub::start(|_, _| aliyun_ok("B1")).await;
    let dir = secrets();
    let mut cfg = config(
        dir.path(),
        &["tw", "local", "ali"],
        &[
            twilio_yaml("tw", &failing.url),
            http_yaml("local", &failing.url, "50/s"),
            aliyun_yaml("ali", &ok.url),
        ],
    );
    cfg.breaker.failures = 1;
    let ch = SmsChannel::new(&cfg).unwrap();
    for _ in 0..2 {
        let r = ch.send(&[], &both("hi")).await;
        assert_eq!(r.delivery().outcome, Outcome::Sent);
    }
}

/// Secrets are read at first use: the channel builds without them, and a send through the
/// gateway skips it as unavailable (transient: the message waits for the operator), naming
/// the file, without a request; once the file is there the gateway works.
#[tokio::test]
async fn a_missing_secret_is_named_not_shown() {
    let stub = Stub::start(|_, _| aliyun_ok("900")).await;
    let dir = secrets();
    std::fs::remove_file(dir.path().join("aliyun.secret")).unwrap();
    let cfg = config(dir.path(), &["ali"], &[aliyun_yaml("ali", &stub.url)]);
    let ch = SmsChannel::new(&cfg).expect("builds without the secret");
    let err = ch.check_secrets("ali").unwrap_err();
    assert!(err.contains("sms.gateways.ali.access_key_secret"), "{err}");
    assert!(err.contains("aliyun.secret"), "{err}");
    let r = ch.send(&[], &both("hi")).await;
    assert!(r.hops.is_empty());
    assert!(
        matches!(&r.skipped[0].reason, SkipReason::Unavailable(w) if w.contains("aliyun.secret"))
    );
    let d = r.delivery();
    assert_eq!(d.outcome, Outcome::Transient);
    assert!(
        d.relay_fault,
        "our setup's fault: the message waits untried"
    );
    assert!(
        d.detail
            .contains("ali is unavailable: sms.gateways.ali.access_key_secret"),
        "{}",
        d.detail
    );
    assert!(stub.seen().is_empty());
    std::fs::write(dir.path().join("aliyun.secret"), ALIYUN_SECRET).unwrap();
    assert_eq!(
        ch.send(&[], &both("hi")).await.delivery().outcome,
        Outcome::Sent
    );
    assert_eq!(stub.seen().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Receipts through the channel.

fn twilio_sign(url: &str, body: &str) -> String {
    // Independent of the library: the recipe from Twilio's security guide.
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    params.sort();
    let mut data = url.to_string();
    for (k, v) in params {
        data.push_str(&k);
        data.push_str(&v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TWILIO_TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[test]
fn receipts_from_each_gateway() {
    let dir = secrets();
    let cfg = config(
        dir.path(),
        &["tw"],
        &[
            twilio_yaml("tw", "http://127.0.0.1:9"),
            aliyun_yaml("ali", "http://127.0.0.1:9"),
            http_yaml("local", "http://127.0.0.1:9", "50/s"),
            "  bare: {kind: http, url: \"http://127.0.0.1:9/send\"}\n".to_string(),
        ],
    );
    let ch = SmsChannel::new(&cfg).unwrap();

    let body = "MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30005&To=%2B8613800138000&AccountSid=AC0123456789abcdef";
    let url = "https://shop.example/sms/status";
    let sig = twilio_sign(url, body);
    let inbound = |signature| Inbound {
        url: None, // the configured status_callback
        signature,
        body: body.as_bytes(),
        token: None,
    };
    let r = ch.receipts("tw", &inbound(Some(&sig))).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (
            r[0].provider_id.as_str(),
            r[0].status,
            r[0].code.as_deref(),
            r[0].text.as_deref()
        ),
        (
            "SM1",
            ReceiptStatus::Undelivered,
            Some("30005"),
            Some("unknown destination handset")
        )
    );
    assert_eq!(
        ch.receipts("tw", &inbound(None)),
        Err(ReceiptError::MissingSignature)
    );
    let forged = twilio_sign(url, "MessageSid=SM2&MessageStatus=delivered");
    assert_eq!(
        ch.receipts("tw", &inbound(Some(&forged))),
        Err(ReceiptError::BadSignature)
    );
    // With a status_callback configured, that is the URL Twilio signed (each send names
    // it): a signature for the URL the request reached instead is refused, and the right
    // one holds whatever path a proxy forwarded it to.
    let evil = "https://evil.example/sms/status";
    let elsewhere = Inbound {
        url: Some(evil),
        signature: Some(&twilio_sign(evil, body)),
        body: body.as_bytes(),
        token: None,
    };
    assert_eq!(
        ch.receipts("tw", &elsewhere),
        Err(ReceiptError::BadSignature)
    );
    let proxied = Inbound {
        url: Some("https://shop.example/hooks/sms/tw/status"),
        ..inbound(Some(&sig))
    };
    assert_eq!(ch.receipts("tw", &proxied).map(|r| r.len()), Ok(1));

    let report = r#"[{"phone_number":"13800138000","send_time":"2026-11-23 10:00:00","report_time":"2026-11-23 10:00:05",
        "success":true,"err_code":"DELIVERED","err_msg":"用户接收成功","sms_size":"1","biz_id":"900619746936498440^0","out_id":"01JREF0000000000000000001"}]"#;
    let r = ch
        .receipts(
            "ali",
            &Inbound {
                url: None,
                signature: None,
                body: report.as_bytes(),
                token: None,
            },
        )
        .unwrap();
    assert_eq!(r[0].status, ReceiptStatus::Delivered);
    assert_eq!(r[0].provider_id, "900619746936498440^0");
    assert_eq!(r[0].reference.as_deref(), Some("01JREF0000000000000000001"));

    let r = ch
        .receipts(
            "local",
            &Inbound {
                url: None,
                signature: None,
                body: br#"{"msgid":"4242","stat":"EXPIRED","desc":"expired"}"#,
                token: None,
            },
        )
        .unwrap();
    assert_eq!(
        (
            r[0].gateway.as_str(),
            r[0].provider_id.as_str(),
            r[0].status,
            r[0].text.as_deref()
        ),
        ("local", "4242", ReceiptStatus::Undelivered, Some("expired"))
    );

    let empty = Inbound {
        url: None,
        signature: None,
        body: b"{}",
        token: None,
    };
    assert_eq!(
        ch.receipts("bare", &empty),
        Err(ReceiptError::NotConfigured("bare".into()))
    );
    assert_eq!(
        ch.receipts("nope", &empty),
        Err(ReceiptError::UnknownGateway("nope".into()))
    );
}
