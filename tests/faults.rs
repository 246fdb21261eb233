//! Hostile input and faults, the output half (issue 17): what reaches a mail server, a
//! terminal, a log or an attempt record when the input is hostile or the relay refuses us.
//! The real binary, a real SMTP server (postfix's `smtp-sink`, or a scripted one where a
//! relay must refuse a login), the store of `AFTERCARE_TEST_STORE` (CI runs this suite on
//! SQLite and on PostgreSQL). Time moves only through `run --once --now`, except in the
//! daemon test, which checks `/readyz` and `/metrics` of a running `aftercare run`.

mod common;

use base64::Engine;
use common::smtp_script::{Script, ScriptedSmtp};
use common::{Run, SmtpSink, Workspace, delivered};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;

const DELIVERED_AT: &str = "2026-11-20T10:00:00+08:00";
const NOW: &str = "2026-11-23T10:00:00+08:00";
const PASSWORD: &str = "hunter2-Relay-Pw";

/// An order.delivered event with the contact and data given.
fn order(id: &str, contact: Value, data: Value) -> String {
    json!({"id": id, "type": "order.delivered", "occurred_at": DELIVERED_AT, "contact": contact, "data": data})
        .to_string()
}

/// Only the review request, email to the SMTP server on `port` logging in as `care` with
/// [`PASSWORD`] (from a file), `extra` appended.
fn relay_workspace(port: u16, extra: &str) -> Workspace {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    ws.write("secrets/smtp-password", PASSWORD);
    ws.write(
        "aftercare.yaml",
        &format!(
            "store: {{url: \"{}\"}}\njobs_dir: jobs\ntemplates_dir: message_templates\n\
             defaults: {{timezone: Asia/Shanghai, locale: zh-CN}}\n\
             email:\n  from: \"Example Shop <care@example.com>\"\n  transport: smtp\n  \
             smtp: {{host: 127.0.0.1, port: {port}, tls: none, username: care, password_file: secrets/smtp-password, pool_size: 4, timeout: 10s}}\n\
             policy:\n  consent: opt_out\n  caps: []\n  send_window: {{start: \"00:00\", end: \"24:00\"}}\n{extra}",
            ws.store_url
        ),
    );
    ws
}

fn once_at(ws: &Workspace, now: &str) -> Run {
    ws.run(&["run", "--once", "--now", now]).ok()
}

/// `logs --format json` keyed by contact id.
fn by_contact(ws: &Workspace) -> std::collections::HashMap<String, Value> {
    ws.logs_json(&["--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["step"] == 0)
        .map(|m| (m["contact_id"].as_str().unwrap().to_string(), m.clone()))
        .collect()
}

fn no_control_characters(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
        .collect();
    assert!(bad.is_empty(), "{what} holds {bad:?}:\n{text}");
}

#[test]
fn a_contact_name_with_a_line_break_is_sent_without_it() {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::new(Some(sink.port));
    ws.keep_jobs(&["review-request"]);
    ws.import(&[
        order(
            "e1",
            json!({"id": "c-1", "name": "Eve\r\nBcc: mallory@example.com", "email": "eve@example.com"}),
            json!({"order_id": "SO-1"}),
        ),
        order(
            "e2",
            json!({"id": "c-2", "name": "\r\n\u{7}", "email": "nobody@example.com"}),
            json!({"order_id": "SO-2"}),
        ),
    ])
    .ok();
    let r = once_at(&ws, NOW);
    assert_eq!(
        r.stdout.trim(),
        "2 sent, 0 retrying, 0 failed, 0 cancelled",
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panic"), "{}", r.stderr);
    assert_eq!(
        r.stderr
            .matches("the contact's name holds control characters")
            .count(),
        2,
        "each cleaned name is logged: {}",
        r.stderr
    );
    let mut mail = sink.messages();
    mail.sort_by(|a, b| a.to.cmp(&b.to));
    assert_eq!(mail.len(), 2);
    assert_eq!(mail[0].to, "eve@example.com");
    assert_eq!(
        mail[0].to_name.as_deref(),
        Some("Eve Bcc: mallory@example.com")
    );
    for m in &mail {
        assert!(
            !m.headers.lines().any(|l| l.starts_with("Bcc:")),
            "no header injected:\n{}",
            m.headers
        );
    }
    assert!(
        mail[0]
            .subject
            .starts_with("Eve Bcc: mallory@example.com，"),
        "{}",
        mail[0].subject
    );
    assert_eq!(mail[1].to, "nobody@example.com");
    assert_eq!(mail[1].to_name, None, "nothing left of the name: dropped");
    let log = by_contact(&ws);
    assert_eq!(log["c-1"]["state"], "sent");
    assert_eq!(log["c-2"]["state"], "sent");
}

#[test]
fn a_relay_that_refuses_our_login_fails_no_message() {
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0care\0{PASSWORD}"));
    let relay = ScriptedSmtp::start(Script {
        auth: format!("535 5.7.8 login refused for care / {PASSWORD} ({plain}) \x1b[2J"),
        ..Script::default()
    });
    // One try allowed: a transient failure of the message would fail it at once.
    let ws = relay_workspace(
        relay.port,
        "dispatch:\n  retry: {max_attempts: 1, initial: 1m, max: 1h}\n",
    );
    let events: Vec<String> = (0..10)
        .map(|i| {
            delivered(
                &format!("e{i}"),
                &format!("c-{i}"),
                &format!("c{i}@example.com"),
                &format!("SO-{i}"),
                DELIVERED_AT,
            )
        })
        .collect();
    ws.import(&events).ok();

    let r = once_at(&ws, NOW);
    assert_eq!(
        r.stdout.trim(),
        "0 sent, 10 retrying, 0 failed, 0 cancelled",
        "{}",
        r.stderr
    );
    // One clear operator error, not one per message; the password in no form; the ESC the
    // relay sent, escaped.
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("SMTP relay refuses our login: 535 5.7.8 login refused"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains("ERROR") && errors[0].contains("\\x1b[2J"),
        "{}",
        errors[0]
    );
    assert!(!r.stderr.contains(PASSWORD) && !r.stderr.contains(&plain));
    no_control_characters("stderr", &r.stderr);
    assert!(
        relay.logins() <= 4,
        "{} logins for 10 messages: a refused login is not retried per message",
        relay.logins()
    );

    let log = by_contact(&ws);
    assert_eq!(log.len(), 10);
    for m in log.values() {
        assert_eq!(m["state"], "retrying", "{m:#}");
        let reason = m["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("waiting for the relay: 535 SMTP relay refuses our login")
                && reason.contains("(not counted as a try)"),
            "{reason}"
        );
        let a = &m["attempt_log"][0];
        assert_eq!(a["outcome"], "transient");
        assert_eq!(a["code"], 535);
        let detail = a["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("SMTP relay refuses our login: 5.7.8 login refused for care / [redacted] ([redacted])"),
            "{detail}"
        );
        assert!(!detail.contains(PASSWORD), "{detail}");
    }
    // `logs` as support reads it: scrubbed, escaped.
    let table = ws.run(&["logs", "--contact", "c-0"]).ok().stdout;
    assert!(!table.contains(PASSWORD), "{table}");
    no_control_characters("logs", &table);

    // Days of a broken relay: the messages keep waiting (max_attempts is 1).
    for now in ["2026-11-24T10:00:00+08:00", "2026-11-25T10:00:00+08:00"] {
        let r = once_at(&ws, now);
        assert_eq!(
            r.stdout.trim(),
            "0 sent, 10 retrying, 0 failed, 0 cancelled"
        );
    }
    let log = by_contact(&ws);
    assert_eq!(log["c-3"]["attempt_log"].as_array().unwrap().len(), 3);

    // The password is fixed on the relay's side: everything goes, once.
    relay.set(|s| s.auth = "235 2.7.0 Authentication successful".into());
    let r = once_at(&ws, "2026-11-26T10:00:00+08:00");
    assert_eq!(
        r.stdout.trim(),
        "10 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    assert_eq!(relay.messages().len(), 10);
}

#[test]
fn only_replies_about_the_recipient_or_the_message_fail_it() {
    let relay = ScriptedSmtp::start(Script {
        mail: "553 5.7.1 <care@example.com>: Sender address rejected: not owned by user care"
            .into(),
        ..Script::default()
    });
    let ws = relay_workspace(
        relay.port,
        "dispatch:\n  retry: {max_attempts: 1, initial: 1m, max: 1h}\n",
    );
    ws.import(&[delivered(
        "e1",
        "c-1",
        "a@example.com",
        "SO-1",
        DELIVERED_AT,
    )])
    .ok();
    // Our sender refused: the relay's fault (our configuration), not the message's.
    let r = once_at(&ws, NOW);
    assert_eq!(r.stdout.trim(), "0 sent, 1 retrying, 0 failed, 0 cancelled");
    assert!(
        r.stderr
            .contains("SMTP relay refuses our sender (MAIL FROM): 553 5.7.1"),
        "{}",
        r.stderr
    );
    // The recipient refused: that message fails, at once, with the server's words.
    relay.set(|s| {
        s.mail = "250 2.1.0 Ok".into();
        s.rcpt = "550 5.1.1 <a@example.com>: Recipient address rejected".into();
    });
    let r = once_at(&ws, "2026-11-24T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "0 sent, 0 retrying, 1 failed, 0 cancelled");
    let m = &by_contact(&ws)["c-1"];
    assert_eq!(m["state"], "failed");
    assert_eq!(
        m["reason"],
        "550 5.1.1 <a@example.com>: Recipient address rejected"
    );
}

#[test]
fn a_relay_that_refuses_ehlo_fails_no_message() {
    // A real server refusing EHLO (and HELO) with 5xx.
    let sink = SmtpSink::start(&["-f", "EHLO,HELO"]);
    let ws = Workspace::new(Some(sink.port));
    ws.keep_jobs(&["review-request"]);
    ws.write_config(
        Some(sink.port),
        "dispatch:\n  retry: {max_attempts: 1, initial: 1m, max: 1h}\n",
    );
    ws.import(&[delivered(
        "e1",
        "c-1",
        "a@example.com",
        "SO-1",
        DELIVERED_AT,
    )])
    .ok();
    let r = once_at(&ws, NOW);
    assert_eq!(
        r.stdout.trim(),
        "0 sent, 1 retrying, 0 failed, 0 cancelled",
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("SMTP relay refuses our EHLO: 5"),
        "{}",
        r.stderr
    );
    let m = &by_contact(&ws)["c-1"];
    assert_eq!(m["attempt_log"][0]["outcome"], "transient");
    assert!(sink.messages().is_empty());
}

#[test]
fn a_subject_holding_an_encoded_word_and_a_script_url_arrive_harmless() {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::new(Some(sink.port));
    ws.keep_jobs(&["review-request"]);
    ws.import(&[order(
        "e1",
        json!({"id": "c-1", "name": "Eve", "email": "eve@example.com", "locale": "en"}),
        json!({"order_id": "=?utf-8?b?SGFja2Vk?=", "review_url": " JaVaScRiPt:alert(document.cookie)"}),
    )])
    .ok();
    assert_eq!(
        once_at(&ws, NOW).stdout.trim(),
        "1 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    let mail = sink.messages();
    // A mail client decodes the subject once: to the literal text, not to "Hacked".
    assert_eq!(
        mail[0].subject,
        "Eve, how is your order =?utf-8?b?SGFja2Vk?=?"
    );
    assert!(!mail[0].subject.contains("Hacked"));
    let html = mail[0].html.as_deref().unwrap();
    assert!(
        html.contains("<a href=\"unsafe: JaVaScRiPt:alert(document.cookie)\">"),
        "{html}"
    );
    assert!(
        !html.to_lowercase().contains("href=\"javascript:"),
        "{html}"
    );
    assert!(
        !html.to_lowercase().contains("href=\" javascript:"),
        "{html}"
    );
}

#[test]
fn control_characters_never_reach_the_terminal() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request", "complaint-callback"]);
    let evil = "SO-1\u{1b}[2J\r\n01XYZ  review-request  step 0  sent\u{7}\u{202e}";
    ws.import(&[
        order(
            "e1",
            json!({"id": "c-1", "name": "Eve\u{1b}]0;pwned\u{7}", "email": "eve@example.com"}),
            json!({"order_id": "SO-1"}),
        ),
        json!({"id": "e2", "type": "complaint.resolved", "occurred_at": DELIVERED_AT,
               "contact": {"id": "c-2", "name": "Mallory\u{1b}[1A\r", "phone": "+8613800138000", "email": "m@example.com"},
               "data": {"complaint_id": "K-1\u{1b}[2J", "order_id": "SO-2"}})
        .to_string(),
    ])
    .ok();
    // Ids with control characters are refused at ingest now; a store written before that
    // (or by hand) still holds them, and what prints them must still be safe.
    let sql = |chr: &str, set: &str| {
        let evil = format!(
            "'SO-1' || {chr}(27) || '[2J' || {chr}(13) || {chr}(10) || \
             '01XYZ  review-request  step 0  sent' || {chr}(7) || {chr}(8238)"
        );
        format!(
            "UPDATE events SET order_id = {evil}, data = {} WHERE order_id IN ('SO-1', 'SO-2')",
            set.replace("EVIL", &evil)
        )
    };
    ws.store_sql(
        &sql("char", "json_set(data, '$.order_id', EVIL)"),
        &sql(
            "chr",
            "jsonb_set(data::jsonb, '{order_id}', to_jsonb(EVIL))::text",
        ),
    );
    let forecast = ws
        .run(&[
            "forecast",
            "--now",
            "2026-11-20T10:00:00+08:00",
            "--until",
            "2026-11-24T10:00:00+08:00",
        ])
        .ok();
    no_control_characters("forecast", &forecast.stdout);
    assert!(
        forecast.stdout.contains("order SO-1\\x1b[2J\\r\\n01XYZ"),
        "{}",
        forecast.stdout
    );
    once_at(&ws, NOW);
    for args in [
        vec!["logs"],
        vec!["logs", "--order", evil],
        vec!["callbacks", "--all"],
        vec!["preview", "review-request", "--event", "ev.json"],
    ] {
        if args[0] == "preview" {
            ws.write(
                "ev.json",
                &order(
                    "e9",
                    json!({"id": "c-9", "name": "Eve\u{1b}[2J", "email": "e@example.com"}),
                    json!({"order_id": "SO-9", "note": evil}),
                ),
            );
        }
        let r = ws.run(&args).ok();
        no_control_characters(&args.join(" "), &r.stdout);
        no_control_characters(&args.join(" "), &r.stderr);
        assert!(
            r.stdout.contains("\\x1b["),
            "{}: {}",
            args.join(" "),
            r.stdout
        );
    }
    // An error that quotes a rejected value.
    ws.write(
        "bad.jsonl",
        &(json!({"id": "e3", "type": "order.delivered", "occurred_at": DELIVERED_AT,
                 "contact": {"id": "c-3", "email": "not-an-address\u{1b}[2J\r\nline 9: ok"}, "data": {}})
        .to_string()
            + "\n"),
    );
    let r = ws.run(&["events", "import", "bad.jsonl"]);
    assert_eq!(r.code, 1);
    no_control_characters("import error", &r.stderr);
    assert!(r.stderr.contains("\\x1b[2J\\r\\nline 9"), "{}", r.stderr);
}

#[test]
fn debug_logs_show_no_customer_data() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    ws.write_config(
        None,
        "unsubscribe:\n  url: \"https://shop.example.com/u/{token}\"\n  key_file: secrets/unsub.key\n",
    );
    ws.write("secrets/unsub.key", "unsubscribe-key-0123456789");
    ws.import(&[order(
        "e1",
        json!({"id": "c-1", "name": "Wang Fang Secret-Name", "email": "wang.fang@example.com", "phone": "+8613800138000"}),
        json!({"order_id": "SO-1", "review_url": "https://shop.example.com/r/SO-1"}),
    )])
    .ok();
    let out = ws
        .command(&["run", "--once", "--now", NOW])
        .env("AFTERCARE_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("delivery attempt") && stderr.contains("w***g@example.com"),
        "debug logging is on, addresses masked:\n{stderr}"
    );
    for secret in [
        "Secret-Name",
        "wang.fang@example.com",
        "13800138000",
        "shop.example.com/u/",
    ] {
        assert!(
            !stderr.contains(secret),
            "`{secret}` in the debug log:\n{stderr}"
        );
    }
}

#[test]
fn unsubscribe_links_reveal_nothing_and_old_links_still_work() {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::new(Some(sink.port));
    ws.keep_jobs(&[]);
    ws.write(
        "jobs/promo.yaml",
        "id: promo\ntrigger: {event: order.delivered, delay: 3d}\ntemplate: review_request\n\
         class: marketing\nchannels: [email]\ndedupe: \"{{event.data.order_id}}\"\n",
    );
    ws.write_config(
        Some(sink.port),
        "unsubscribe:\n  url: \"https://shop.example.com/u/{token}\"\n  key_file: secrets/unsub.key\n",
    );
    ws.write("secrets/unsub.key", "unsubscribe-key-0123456789");
    ws.import(&[delivered(
        "e1",
        "c-1",
        "wang.fang@example.com",
        "SO-1",
        DELIVERED_AT,
    )])
    .ok();
    once_at(&ws, NOW);
    let mail = sink.messages();
    let header = mail[0].list_unsubscribe.clone().unwrap();
    let token = header
        .split("/u/")
        .nth(1)
        .and_then(|t| t.split('>').next())
        .unwrap()
        .to_string();
    // Nothing in the link says whom it is for, in any decoding.
    assert!(!header.contains("wang"), "{header}");
    for engine in [
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ] {
        let raw = engine.decode(token.replace('.', "")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&raw).contains("wang"), "{token}");
    }
    let r = ws.run(&["unsubscribe", "--check", &token]).ok();
    assert_eq!(r.stdout.trim(), "valid: email wang.fang@example.com");
    // A link minted by the first token format (base64 of the address, HMAC-SHA256 with the
    // same key), as customers still have them in their mailboxes.
    let old = "djF8ZW1haWx8bGkubGVpQGV4YW1wbGUuY29t.J6A-qWT151xwjo0oUm0OzQ";
    let r = ws.run(&["unsubscribe", old]).ok();
    assert_eq!(r.stdout.trim(), "unsubscribed email li.lei@example.com");
    let list = ws.run(&["suppress", "list"]).ok().stdout;
    assert!(list.contains("li.lei@example.com"), "{list}");
    // A token may begin with `-` (base64url): still a token, not a flag.
    let dashed = format!("-{}", &token[1..]);
    let r = ws.run(&["unsubscribe", "--check", &dashed]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("rejected:"), "{}", r.stderr);
    // Forged: one character changed.
    let mut forged = token.clone().into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let r = ws.run(&["unsubscribe", &String::from_utf8(forged).unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
}

#[test]
fn store_urls_never_repeat_a_password() {
    let ws = Workspace::new(None);
    for args in [
        vec![
            "store",
            "copy",
            "--from",
            "sqlite://data/aftercare.db",
            "--to",
            "postgres://u:PW-s3cret@127.0.0.1:1/x",
        ],
        vec![
            "store",
            "copy",
            "--from",
            "mysql://u:PW-s3cret@h/x",
            "--to",
            "sqlite://b.db",
        ],
    ] {
        let r = ws.run(&args);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(!r.stderr.contains("PW-s3cret"), "{}", r.stderr);
        assert!(r.stderr.contains("u:***@"), "{}", r.stderr);
    }
    // In the config: the same.
    ws.write(
        "aftercare.yaml",
        "store: {url: \"mysql://u:PW-s3cret@h/x\"}\njobs_dir: jobs\ntemplates_dir: message_templates\n",
    );
    let r = ws.run(&["logs"]);
    assert_ne!(r.code, 0);
    assert!(!r.stderr.contains("PW-s3cret"), "{}", r.stderr);
}

/// The running daemon while the relay refuses our login: not ready, counted, and one
/// error; ready again, and the mail out, once the relay takes it. Also: a lowercase bearer
/// scheme is a bearer token.
#[test]
fn readyz_and_metrics_tell_of_a_refused_login() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let relay = ScriptedSmtp::start(Script {
        auth: "535 5.7.8 Error: authentication failed".into(),
        ..Script::default()
    });
    let port = common::free_port();
    let ws = relay_workspace(
        relay.port,
        &format!(
            "dispatch:\n  retry: {{max_attempts: 1, initial: 1s, max: 2s}}\n  poll_interval: 1s\n\
             api:\n  listen: 127.0.0.1:{port}\n  tokens:\n    - {{name: support, scope: read, token_env: T_READ}}\n"
        ),
    );
    let ago = (chrono::Utc::now() - chrono::Duration::days(3) - chrono::Duration::minutes(1))
        .to_rfc3339();
    ws.import(&[delivered("e1", "c-1", "a@example.com", "SO-1", &ago)])
        .ok();
    let log = std::fs::File::create(ws.path("daemon.log")).unwrap();
    let child = ws
        .command(&["run"])
        .env("T_READ", "read-token-0123456789abc")
        .env("AFTERCARE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _daemon = common::Killed(child);
    let http = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &str| -> (u16, String) {
        match http.get(format!("{base}{path}")).send() {
            Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        assert!(
            common::until(Duration::from_secs(30), f),
            "timed out waiting for {what}; daemon log:\n{}",
            std::fs::read_to_string(ws.path("daemon.log")).unwrap_or_default()
        );
    };
    wait("/readyz to say why", &|| {
        let (status, body) = get("/readyz");
        status == 503 && body.contains("SMTP relay refuses our login: 535 5.7.8")
    });
    let (_, metrics) = get("/metrics");
    let refusals: f64 = metrics
        .lines()
        .find(|l| l.starts_with("aftercare_smtp_session_refusals_total{stage=\"auth\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no refusal counter:\n{metrics}"));
    assert!(refusals >= 1.0, "{metrics}");
    // A lowercase scheme is a bearer token (RFC 7235).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = http
            .get(format!("{base}/v1/messages"))
            .header(
                "authorization",
                format!("{scheme} read-token-0123456789abc"),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    // Still waiting, never failed, however many times the relay refused (max_attempts 1).
    std::thread::sleep(Duration::from_secs(3));
    let (_, page) = {
        let r = http
            .get(format!("{base}/v1/messages?contact=c-1"))
            .bearer_auth("read-token-0123456789abc")
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    };
    // Retrying, or claimed by the try going on at this moment (a try a second or two): the
    // first CI run of this test on 55f9f6b read it mid-try.
    let state = page["items"][0]["state"].as_str().unwrap_or_default();
    assert!(state == "retrying" || state == "claimed", "{page:#}");

    relay.set(|s| s.auth = "235 2.7.0 Authentication successful".into());
    wait("the message to go once the relay takes our login", &|| {
        relay.messages().len() == 1
    });
    wait("/readyz ready again", &|| get("/readyz").0 == 200);
    let daemon_log = std::fs::read_to_string(ws.path("daemon.log")).unwrap();
    assert_eq!(
        daemon_log
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("SMTP relay refuses our login"))
            .count(),
        1,
        "one operator error however many retries:\n{daemon_log}"
    );
    assert!(
        daemon_log.contains("the SMTP relay accepts our session again"),
        "{daemon_log}"
    );
}

/// What used to panic a send task (chrono's `to_string()` on a format the value cannot be
/// written in) now fails that one message at once, with the reason; the others go.
#[test]
fn a_render_that_cannot_succeed_fails_its_message_at_once() {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::new(Some(sink.port));
    ws.keep_jobs(&[]);
    ws.write(
        "jobs/when.yaml",
        "id: when\ntrigger: {event: order.delivered, delay: 3d}\ntemplate: when\n\
         channels: [email]\ndedupe: \"{{event.data.order_id}}\"\n",
    );
    ws.write(
        "message_templates/when/email.subject.hbs",
        "Your order {{event.data.order_id}}",
    );
    ws.write(
        "message_templates/when/email.txt.hbs",
        "Delivered {{datetime event.data.when}}.",
    );
    ws.import(&[
        order(
            "e1",
            json!({"id": "c-1", "email": "a@example.com"}),
            json!({"order_id": "SO-1", "when": "2026-11-20"}),
        ),
        order(
            "e2",
            json!({"id": "c-2", "email": "b@example.com"}),
            json!({"order_id": "SO-2", "when": "2026-11-20T10:00:00+08:00"}),
        ),
    ])
    .ok();
    let r = once_at(&ws, NOW);
    assert_eq!(
        r.stdout.trim(),
        "1 sent, 0 retrying, 1 failed, 0 cancelled",
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panic"), "{}", r.stderr);
    let log = by_contact(&ws);
    let failed = &log["c-1"];
    assert_eq!(failed["state"], "failed");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("render failed in message_templates/when/email.txt.hbs")
            && reason.contains("datetime: the value cannot be written"),
        "{reason}"
    );
    assert_eq!(failed["attempt_log"][0]["outcome"], "permanent");
    assert_eq!(log["c-2"]["state"], "sent");
    assert_eq!(sink.messages().len(), 1);
}

/// A passing trouble before the message (a busy relay's 421) is an ordinary transient
/// failure of that one message, counted: it must not hold up the whole queue as a relay
/// fault would.
#[test]
fn a_busy_relay_is_a_passing_trouble_not_a_relay_fault() {
    let relay = ScriptedSmtp::start(Script {
        greeting: "421 4.3.2 too busy, try later".into(),
        ..Script::default()
    });
    let ws = relay_workspace(
        relay.port,
        "dispatch:\n  retry: {max_attempts: 2, initial: 1m, max: 1h}\n",
    );
    ws.import(&[delivered(
        "e1",
        "c-1",
        "a@example.com",
        "SO-1",
        DELIVERED_AT,
    )])
    .ok();
    let r = once_at(&ws, NOW);
    assert_eq!(r.stdout.trim(), "0 sent, 1 retrying, 0 failed, 0 cancelled");
    assert!(!r.stderr.contains("SMTP relay refuses"), "{}", r.stderr);
    let m = &by_contact(&ws)["c-1"];
    assert!(
        m["reason"]
            .as_str()
            .unwrap()
            .starts_with("attempt 1/2 failed (421 "),
        "{m:#}"
    );
    // The second try is the last: counted, it fails.
    let r = once_at(&ws, "2026-11-24T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "0 sent, 0 retrying, 1 failed, 0 cancelled");
}
