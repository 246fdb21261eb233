//! `POST /hooks/email/{provider}` on a running daemon: each provider's documented payload
//! (the examples in SES's, SendGrid's, Mailgun's and Postmark's docs, with our message's ids
//! in them), once correctly signed and once forged. Signatures are made by an independent
//! signer, the `openssl` command line: an RSA certificate served by a local HTTP server for
//! SNS (whose URL rule is relaxed by the test-only `insecure_test_cert_url_prefix`), a P-256
//! key for SendGrid. Then `/metrics` and `/readyz` tell what the reports did.

mod common;

use base64::Engine;
use common::smtp_script::{Script, ScriptedSmtp};
use common::{Workspace, delivered};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sign `data` with the PEM key in `dir/key` by `openssl dgst -<digest> -sign`; base64.
fn sign(dir: &Path, key: &str, digest: &str, data: &[u8]) -> String {
    std::fs::write(dir.join("to-sign"), data).unwrap();
    openssl(
        dir,
        &[
            "dgst",
            &format!("-{digest}"),
            "-sign",
            key,
            "-out",
            "sig",
            "to-sign",
        ],
    );
    B64.encode(std::fs::read(dir.join("sig")).unwrap())
}

/// Serves `body` to every GET and keeps the paths asked for.
fn serve_file(body: Vec<u8>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            seen.lock().unwrap().push(
                line.split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string(),
            );
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = stream.write_all(&body);
        }
    });
    (port, paths)
}

/// The string SNS signs (its documented field order).
fn sns_canonical(v: &Value) -> String {
    let keys: &[&str] = if v["Type"] == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    keys.iter()
        .filter_map(|k| v[*k].as_str().map(|s| format!("{k}\n{s}\n")))
        .collect()
}

/// A refusal says what was wrong: `bad_signature` and the reason.
fn refused(v: &Value, why: &str) {
    assert_eq!(v["error"], "bad_signature", "{v}");
    assert!(
        v["detail"].as_str().unwrap_or_default().contains(why),
        "{why} in {v}"
    );
}

const TOPIC: &str = "arn:aws:sns:us-west-2:123456789012:ses-bounces";

#[test]
fn each_provider_webhook_takes_its_signed_reports_and_refuses_forged_ones() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let keys = tempfile::tempdir().unwrap();
    let k = keys.path();
    openssl(
        k,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "sns.key",
            "-out",
            "sns.pem",
            "-days",
            "2",
            "-subj",
            "/CN=sns.us-west-2.amazonaws.com",
        ],
    );
    openssl(
        k,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sg.key",
        ],
    );
    openssl(
        k,
        &[
            "ec", "-in", "sg.key", "-pubout", "-outform", "DER", "-out", "sg.pub",
        ],
    );
    let sendgrid_public = B64.encode(std::fs::read(k.join("sg.pub")).unwrap());
    let (cert_port, cert_gets) = serve_file(std::fs::read(k.join("sns.pem")).unwrap());
    let cert_base = format!("http://127.0.0.1:{cert_port}/");

    let relay = ScriptedSmtp::start(Script::default());
    let api = common::free_port();
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    ws.write(
        "aftercare.yaml",
        &format!(
            "store: {{url: \"{}\"}}\njobs_dir: jobs\ntemplates_dir: message_templates\n\
             defaults: {{timezone: Asia/Shanghai, locale: zh-CN}}\n\
             email:\n  from: \"Example Shop <care@example.com>\"\n  transport: smtp\n  \
             smtp: {{host: 127.0.0.1, port: {}, tls: none, pool_size: 4, timeout: 10s}}\n  \
             reputation: {{window: 100, min_sends: 1, hard_bounce_percent: 100}}\n  \
             webhooks:\n    \
             ses: {{topic_arns: [\"{TOPIC}\"], insecure_test_cert_url_prefix: \"{cert_base}\"}}\n    \
             sendgrid: {{public_key: \"{sendgrid_public}\"}}\n    \
             mailgun: {{signing_key_env: MG_KEY}}\n    \
             postmark: {{username: pm, password_file: pm.pw}}\n\
             policy:\n  consent: opt_out\n  caps: []\n  send_window: {{start: \"00:00\", end: \"24:00\"}}\n\
             dispatch:\n  poll_interval: 1s\n\
             api:\n  listen: 127.0.0.1:{api}\n",
            ws.store_url, relay.port
        ),
    );
    let ago = (chrono::Utc::now() - chrono::Duration::days(3) - chrono::Duration::minutes(1))
        .to_rfc3339();
    let people = ["mg", "pm", "sg", "ses", "spam"];
    ws.import(
        &people
            .iter()
            .map(|p| {
                delivered(
                    &format!("e-{p}"),
                    &format!("c-{p}"),
                    &format!("{p}@example.org"),
                    &format!("SO-{p}"),
                    &ago,
                )
            })
            .collect::<Vec<_>>(),
    )
    .ok();
    ws.write("pm.pw", "pm-basic-pw\n");
    let log = std::fs::File::create(ws.path("daemon.log")).unwrap();
    let child = ws
        .command(&["run"])
        .env("MG_KEY", "key-3ax6xnjp29jd6fds4gc373sgvjxteol0")
        .env("AFTERCARE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _daemon = common::Killed(child);
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        assert!(
            common::until(Duration::from_secs(60), f),
            "timed out waiting for {what}; daemon log:\n{}",
            std::fs::read_to_string(ws.path("daemon.log")).unwrap_or_default()
        );
    };
    wait("the five messages", &|| relay.messages().len() == 5);
    let base = format!("http://127.0.0.1:{api}");
    let http = reqwest::blocking::Client::new();
    wait("the api", &|| {
        http.get(format!("{base}/healthz")).send().is_ok()
    });
    wait("the sends to be recorded", &|| {
        ws.logs_json(&["--limit", "100"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] == "sent" && m["step"] == 0)
            .count()
            == 5
    });
    let logs = ws.logs_json(&["--limit", "100"]);
    let id_of = |p: &str| -> String {
        logs.as_array()
            .unwrap()
            .iter()
            .find(|m| m["contact_id"] == format!("c-{p}") && m["step"] == 0)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let post = |provider: &str, body: &[u8], headers: &[(&str, String)]| -> (u16, Value) {
        let mut r = http
            .post(format!("{base}/hooks/email/{provider}"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (n, v) in headers {
            r = r.header(*n, v);
        }
        let r = r.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    };

    // Mailgun: the "failed" (permanent) example, signature in the body.
    // Signed now: a signature more than a day old is refused (below).
    let signed_at = chrono::Utc::now().timestamp().to_string();
    let mailgun_at = |ts: &str, signature: &str| {
        json!({
            "signature": {"timestamp": ts, "token": "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0", "signature": signature},
            "event-data": {
                "event": "failed", "severity": "permanent", "reason": "bounce",
                "id": "G9Bn5sl1TC6nu79C8C0bwg", "timestamp": 1521233195.375624, "log-level": "error",
                "recipient": "mg@example.org", "recipient-domain": "example.org",
                "delivery-status": {"code": 550, "message": "5.1.1 The email account that you tried to reach does not exist.", "description": "", "attempt-no": 1},
                "message": {"headers": {"to": "mg@example.org", "message-id": format!("{}@example.com", id_of("mg")), "from": "care@example.com", "subject": "review"}, "size": 111}
            }
        })
    };
    let mailgun = |signature: &str| mailgun_at(&signed_at, signature);
    let mailgun_sign = |ts: &str| {
        use hmac::{KeyInit, Mac};
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(b"key-3ax6xnjp29jd6fds4gc373sgvjxteol0")
                .unwrap();
        mac.update(format!("{ts}a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0").as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let good = mailgun_sign(&signed_at);
    // Mailgun's documented example, signed in 2018: the signature is right, and stale.
    let (s, v) = post(
        "mailgun",
        mailgun_at("1529006854", &mailgun_sign("1529006854"))
            .to_string()
            .as_bytes(),
        &[],
    );
    assert_eq!(s, 401, "a signature from 2018: {v}");
    refused(&v, "is more than a day from now");
    let (s, v) = post(
        "mailgun",
        mailgun(&"0".repeat(64)).to_string().as_bytes(),
        &[],
    );
    assert_eq!(s, 401, "a forged Mailgun signature");
    refused(&v, "the Mailgun signature does not match the signing key");
    let (s, v) = post("mailgun", mailgun(&good).to_string().as_bytes(), &[]);
    assert_eq!((s, v["recorded"].as_u64()), (200, Some(1)), "{v}");
    let (_, v) = post("mailgun", mailgun(&good).to_string().as_bytes(), &[]);
    assert_eq!(v["duplicates"], 1, "Mailgun's retry is stored once: {v}");
    // The signature covers timestamp and token, not the event: the same block with another
    // event (a complaint about someone else, with an id of its own) is a replay, refused.
    let mut replay = mailgun(&good);
    replay["event-data"]["id"] = json!("forged-complaint-1");
    replay["event-data"]["event"] = json!("complained");
    replay["event-data"]["recipient"] = json!("victim@example.org");
    let (s, v) = post("mailgun", replay.to_string().as_bytes(), &[]);
    assert_eq!(s, 401, "a replayed signature block: {v}");
    refused(&v, "came before with another event: a replay");

    // Postmark: the bounce webhook example, basic auth.
    let postmark = json!({
        "RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807u64,
        "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce", "Tag": "Test",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Metadata": {"a_key": "a_value"},
        "ServerID": 23, "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "Test bounce details", "Email": "pm@example.org", "From": "care@example.com",
        "BouncedAt": "2019-11-05T16:33:54.9070259Z", "DumpAvailable": true, "Inactive": true,
        "CanActivate": true, "Subject": "Test subject", "Content": "<Full dump of bounce>"
    })
    .to_string();
    let basic = |pw: &str| {
        (
            "authorization",
            format!("Basic {}", B64.encode(format!("pm:{pw}"))),
        )
    };
    let (s, v) = post("postmark", postmark.as_bytes(), &[basic("guess")]);
    assert_eq!(s, 401, "a wrong Postmark password");
    refused(&v, "basic auth does not match email.webhooks.postmark");
    let (s, _) = post("postmark", postmark.as_bytes(), &[]);
    assert_eq!(s, 401, "no Postmark auth at all");
    let (s, v) = post("postmark", postmark.as_bytes(), &[basic("pm-basic-pw")]);
    assert_eq!((s, v["recorded"].as_u64()), (200, Some(1)), "{v}");
    // An emptied password file is no password anyone may send: unavailable, retried later.
    ws.write("pm.pw", "");
    let other = postmark.replace("4323372036854775807", "4323372036854775806");
    let (s, v) = post("postmark", other.as_bytes(), &[basic("")]);
    assert_eq!(s, 503, "an empty Postmark password: {v}");
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|m| m.contains("the secret is empty")),
        "{v}"
    );
    // A password file that cannot be read: the caller is told which setting, not the path.
    std::fs::remove_file(ws.path("pm.pw")).unwrap();
    let (s, v) = post("postmark", other.as_bytes(), &[basic("pm-basic-pw")]);
    assert_eq!(s, 503, "an unreadable Postmark password: {v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("email.webhooks.postmark") && !detail.contains("pm.pw"),
        "{v}"
    );
    ws.write("pm.pw", "pm-basic-pw\n");

    // SendGrid: the bounce example of the Event Webhook reference, ECDSA-signed.
    let sendgrid = json!([{
        "email": "sg@example.org", "timestamp": 1513299569,
        "smtp-id": format!("<{}@example.com>", id_of("sg")), "event": "bounce",
        "category": "cat facts", "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
        "sg_message_id": "sg_message_id", "reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce"
    }])
    .to_string();
    // Signed now: a signed request more than three days old is refused (below).
    let ts = signed_at.as_str();
    let signature = sign(k, "sg.key", "sha256", format!("{ts}{sendgrid}").as_bytes());
    let headers_at = |ts: &str, sig: &str| {
        vec![
            ("x-twilio-email-event-webhook-signature", sig.to_string()),
            ("x-twilio-email-event-webhook-timestamp", ts.to_string()),
        ]
    };
    let headers = |sig: &str| headers_at(ts, sig);
    // The docs' own example, signed in 2017: the signature is good, the request a replay.
    let old_ts = "1513299600";
    let old = sign(
        k,
        "sg.key",
        "sha256",
        format!("{old_ts}{sendgrid}").as_bytes(),
    );
    let (s, v) = post("sendgrid", sendgrid.as_bytes(), &headers_at(old_ts, &old));
    assert_eq!(s, 401, "a signed request from 2017");
    refused(
        &v,
        "the SendGrid signature's timestamp `1513299600` is more than three days from now",
    );
    let tampered = sendgrid.replace("sg@example.org", "victim@example.org");
    let (s, v) = post("sendgrid", tampered.as_bytes(), &headers(&signature));
    assert_eq!(s, 401, "a body SendGrid did not sign");
    refused(
        &v,
        "the SendGrid signature does not match the verification key",
    );
    let (s, v) = post("sendgrid", sendgrid.as_bytes(), &[]);
    assert_eq!(s, 401, "no SendGrid signature at all");
    refused(&v, "no X-Twilio-Email-Event-Webhook-Signature");
    let (s, v) = post("sendgrid", sendgrid.as_bytes(), &headers(&signature));
    assert_eq!((s, v["recorded"].as_u64()), (200, Some(1)), "{v}");
    // The same signed request again (SendGrid's retry, or a replay within the window): its
    // event counts once.
    let (s, v) = post("sendgrid", sendgrid.as_bytes(), &headers(&signature));
    assert_eq!(
        (s, v["recorded"].as_u64(), v["duplicates"].as_u64()),
        (200, Some(0), Some(1)),
        "{v}"
    );

    // SES through SNS: the subscription is confirmed, then a bounce and a complaint.
    let cert_url =
        format!("{cert_base}SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem");
    let sns = |ty: &str, message: String, extra: Value| {
        let mut v = json!({
            "Type": ty, "MessageId": format!("22b80b92-fdea-4c2c-8f9d-{}", ty.len()),
            "TopicArn": TOPIC, "Message": message, "Timestamp": "2026-11-23T02:15:06.655Z",
            "SignatureVersion": "1", "SigningCertURL": cert_url,
            "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
        });
        for (key, value) in extra.as_object().unwrap() {
            v[key] = value.clone();
        }
        let sig = sign(k, "sns.key", "sha1", sns_canonical(&v).as_bytes());
        v["Signature"] = json!(sig);
        v
    };
    let confirm = sns(
        "SubscriptionConfirmation",
        format!("You have chosen to subscribe to the topic {TOPIC}."),
        json!({"Token": "2336412f37fb687f5d51e6e241d09c805a5a57b3", "SubscribeURL": format!("{cert_base}confirm?Action=ConfirmSubscription&Token=2336412f")}),
    );
    // A subscription to a topic that is not ours is refused, and its URL never visited.
    let mut other_topic = confirm.clone();
    other_topic["TopicArn"] = json!("arn:aws:sns:us-west-2:999999999999:someone-else");
    other_topic["SubscribeURL"] = json!(format!("{cert_base}other?Action=ConfirmSubscription"));
    other_topic["Signature"] = json!(sign(
        k,
        "sns.key",
        "sha1",
        sns_canonical(&other_topic).as_bytes()
    ));
    let (s, v) = post("ses", other_topic.to_string().as_bytes(), &[]);
    assert_eq!(s, 401, "{v}");
    refused(&v, "is not in email.webhooks.ses.topic_arns");
    assert!(
        !cert_gets
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.starts_with("/other")),
        "a refused subscription is not confirmed"
    );
    let (s, v) = post("ses", confirm.to_string().as_bytes(), &[]);
    assert_eq!((s, v["confirmed"].as_bool()), (200, Some(true)), "{v}");
    assert!(
        cert_gets
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.starts_with("/confirm?Action=ConfirmSubscription"))
    );
    let bounce = json!({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "ses@example.org", "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
            "timestamp": "2026-11-23T02:15:06.477Z", "feedbackId": "0102015fd91a6479-ae22395c-1f7d-4423-a9e5-e0715bffc731-000000",
            "remoteMtaIp": "192.0.2.1", "reportingMTA": "dsn; a4-8.smtp-out.us-west-2.amazonses.com"},
        "mail": {"timestamp": "2026-11-23T02:15:04.000Z", "source": "care@example.com",
            "messageId": "0102015fd91a5ca3-93c245fe-e333-46ae-8fed-96160d20cfab-000000",
            "destination": ["ses@example.org"], "headersTruncated": false,
            "commonHeaders": {"from": ["care@example.com"], "to": ["ses@example.org"], "messageId": format!("<{}@example.com>", id_of("ses")), "subject": "review"}}
    })
    .to_string();
    let mut forged = sns("Notification", bounce.clone(), json!({}));
    forged["Message"] = json!(bounce.replace("ses@example.org", "victim@example.org"));
    let (s, v) = post("ses", forged.to_string().as_bytes(), &[]);
    assert_eq!(s, 401, "an SNS message changed after signing: {v}");
    refused(
        &v,
        "the SNS signature does not match the signing certificate",
    );
    let mut elsewhere = sns("Notification", bounce.clone(), json!({}));
    elsewhere["SigningCertURL"] =
        json!("https://sns.us-west-2.amazonaws.com.evil.example/cert.pem");
    let (s, v) = post("ses", elsewhere.to_string().as_bytes(), &[]);
    assert_eq!(s, 401, "a certificate from outside SNS: {v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("is not an SNS certificate URL"),
        "{v}"
    );
    let (s, v) = post(
        "ses",
        sns("Notification", bounce, json!({}))
            .to_string()
            .as_bytes(),
        &[],
    );
    assert_eq!((s, v["recorded"].as_u64()), (200, Some(1)), "{v}");
    let complaint = json!({
        "notificationType": "Complaint",
        "complaint": {"userAgent": "ExampleCorp Feedback Loop (V0.01)", "complainedRecipients": [{"emailAddress": "spam@example.org"}],
            "complaintFeedbackType": "abuse", "arrivalDate": "2026-11-23T02:20:00.000Z",
            "timestamp": "2026-11-23T02:20:01.000Z", "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"},
        "mail": {"timestamp": "2026-11-23T02:15:04.000Z", "messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
            "source": "care@example.com", "destination": ["spam@example.org"],
            "commonHeaders": {"messageId": format!("<{}@example.com>", id_of("spam"))}}
    })
    .to_string();
    let (s, v) = post(
        "ses",
        sns("Notification", complaint, json!({}))
            .to_string()
            .as_bytes(),
        &[],
    );
    assert_eq!((s, v["recorded"].as_u64()), (200, Some(1)), "{v}");
    let (s, _) = post("sparkpost", b"[]", &[]);
    assert_eq!(s, 404);

    // Each report matched its message and suppressed its address, and nothing forged did.
    let r = ws.run(&["bounces", "list", "--format", "json"]).ok();
    let bounces: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(bounces.len(), 5, "{bounces:#?}");
    for b in &bounces {
        let who = b["address"]
            .as_str()
            .unwrap()
            .split('@')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(b["message_id"], id_of(&who), "{b}");
        assert_eq!(
            b["source"],
            match who.as_str() {
                "mg" => "mailgun",
                "pm" => "postmark",
                "sg" => "sendgrid",
                _ => "ses",
            },
            "{b}"
        );
        assert_eq!(
            b["kind"],
            if who == "spam" { "complaint" } else { "hard" },
            "{b}"
        );
    }
    let r = ws.run(&["suppress", "list", "--format", "json"]).ok();
    let s: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    let mut addresses: Vec<&str> = s.iter().map(|x| x["address"].as_str().unwrap()).collect();
    addresses.sort();
    assert_eq!(
        addresses,
        [
            "mg@example.org",
            "pm@example.org",
            "ses@example.org",
            "sg@example.org",
            "spam@example.org"
        ]
    );

    // The complaint tripped the brake (1 of 5 sends is over 0.3%); metrics and /readyz say so.
    wait("the metrics", &|| {
        http.get(format!("{base}/metrics"))
            .send()
            .map(|r| {
                r.text()
                    .unwrap_or_default()
                    .contains("aftercare_reputation_brake_engaged{scope=\"job:review-request\"} 1")
            })
            .unwrap_or(false)
    });
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "aftercare_email_bounces{kind=\"hard\",domain=\"example.org\"} 4",
        "aftercare_email_bounces{kind=\"complaint\",domain=\"example.org\"} 1",
        "aftercare_suppressions{channel=\"email\",reason=\"hard\"} 4",
        "aftercare_suppressions{channel=\"email\",reason=\"complaint\"} 1",
        "aftercare_reputation_brake_engaged{scope=\"domain:example.com\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    let ready = http.get(format!("{base}/readyz")).send().unwrap();
    assert_eq!(
        ready.status(),
        200,
        "a brake holds marketing only: still ready"
    );
    let text = ready.text().unwrap();
    assert!(
        text.contains("reputation brake: job:review-request paused since"),
        "{text}"
    );
    assert!(
        text.contains("complaint rate 20.00% (1 of the last 5 sends) is over 0.3%"),
        "{text}"
    );
}
