//! The functions the HTTP API mounts for SMS gateways (`sms_hooks::status_callback`,
//! `sms_hooks::inbound_reply`), called directly on a real store of each backend: receipts
//! found by provider id or by our reference, kept beside their attempt, a final status on the
//! message; STOP replies on the suppression list; and each refusal with its HTTP status.

mod common;

use aftercare::channels::sms::{self, Inbound, SmsChannel, twilio};
use aftercare::ingest::parse_event;
use aftercare::model::{MessageRecord, MessageState, Outcome};
use aftercare::plan;
use aftercare::playbook::Playbook;
use aftercare::sms_hooks::{HookError, Summary, inbound_reply, status_callback};
use aftercare::store::{Completion, LogFilter, MAX_WAITING, NewAttempt, Store};
use aftercare::store::{SqliteSync, StoreConfig};
use aftercare::templates::TemplateSet;
use aftercare::values::Secret;
use chrono::{DateTime, Utc};
use common::{Backend, delivered, pg};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const TOKEN: &str = "tw-auth-token-5f1e2d3c9b";
const STATUS_URL: &str = "https://shop.example/sms/status";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A migrated store of `b`, and the folder holding its file (SQLite) and the secrets.
async fn store(b: Backend) -> (Store, tempfile::TempDir) {
    let (s, dir, _) = store_at(b).await;
    (s, dir)
}

/// [`store`], and where it is: a PostgreSQL URL, or `sqlite:` and the file's path.
async fn store_at(b: Backend) -> (Store, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, url) = match b {
        Backend::Sqlite => {
            let path = dir.path().join("aftercare.db");
            let url = format!("sqlite:{}", path.display());
            let cfg = StoreConfig::Sqlite {
                path,
                synchronous: SqliteSync::Normal,
            };
            (cfg, url)
        }
        Backend::Postgres => {
            let url = pg::fresh_database();
            let cfg = StoreConfig::Postgres {
                url: url.clone(),
                password: Secret::None,
            };
            (cfg, url)
        }
    };
    let s = Store::connect(&cfg).await.unwrap();
    s.migrate().await.unwrap();
    (s, dir, url)
}

/// Run a statement, written for each dialect, on the store at `url` ([`store_at`]).
async fn raw_sql(url: &str, sqlite: &str, postgres: &str) {
    match url.strip_prefix("sqlite:") {
        Some(path) => {
            use sqlx::Connection;
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sqlite.to_string()))
                .execute(&mut c)
                .await
                .unwrap();
        }
        None => {
            pg::psql(url, postgres);
        }
    }
}

/// Gateways of each kind; `tw-nokey` names a token file that does not exist, `plain` has
/// no receipt or reply format.
fn channel(dir: &Path) -> SmsChannel {
    std::fs::write(dir.join("twilio.token"), TOKEN).unwrap();
    std::fs::write(dir.join("aliyun.secret"), "ali-secret").unwrap();
    std::fs::write(dir.join("push.token"), "push-token-0123456789\n").unwrap();
    let yaml = format!(
        r#"
route: [ali]
gateways:
  tw: {{kind: twilio, account_sid: AC1, auth_token_file: twilio.token, from: "+15005550006", status_callback: "{STATUS_URL}"}}
  tw-nokey: {{kind: twilio, account_sid: AC1, auth_token_file: missing.token, from: "+15005550006"}}
  ali: {{kind: aliyun, access_key_id: LTAI, access_key_secret_file: aliyun.secret, sign_name: 示例商店}}
  gw:
    kind: http
    url: "http://127.0.0.1:9/send"
    body: '{{"to":"{{{{to}}}}","text":"{{{{body}}}}"}}'
    receipt: {{id_pointer: /msgid, status_pointer: /stat, text_pointer: /desc, delivered: [DELIVRD], undelivered: [UNDELIV, EXPIRED]}}
    reply: {{from_pointer: /mobile, text_pointer: /content, id_pointer: /msg_id}}
  plain: {{kind: http, url: "http://127.0.0.1:9/send"}}
  locked:
    kind: http
    url: "http://127.0.0.1:9/send"
    push_token_file: push.token
    receipt: {{id_pointer: /msgid, status_pointer: /stat, delivered: [DELIVRD]}}
"#
    );
    let cfg = sms::settings::from_yaml(&dir.join("aftercare.yaml"), &yaml).unwrap();
    SmsChannel::new(&cfg).unwrap()
}

fn playbook() -> Playbook {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (templates, _) = TemplateSet::load(&root.join("message_templates"), "zh-CN");
    let (jobs, _) = aftercare::jobs::load(&root.join("jobs"), &templates, None);
    Playbook {
        jobs: Arc::new(jobs),
        templates: Arc::new(templates),
        default_timezone: chrono_tz::Asia::Shanghai,
        default_locale: "zh-CN".into(),
        expire_after: None,
        policy: aftercare::policy::PolicyConfig::default(),
        unsubscribe: None,
        webhook_enabled: false,
        public_url: None,
    }
}

fn sms_attempt(n: i64, gateway: &str, outcome: Outcome, provider_id: Option<&str>) -> NewAttempt {
    NewAttempt {
        number: n,
        at: t("2026-11-23T02:00:00Z"),
        channel: "sms".into(),
        address: Some("+8613800138000".into()),
        outcome,
        code: Some(if outcome == Outcome::Sent { 200 } else { 503 }),
        detail: Some(format!("{outcome:?}")),
        provider_id: provider_id.map(str::to_string),
        node: "node-a".into(),
        duration_ms: 5,
        gateway: Some(gateway.into()),
        content: None,
    }
}

/// `lines` planned, and every message due at `now` claimed under `tok`.
async fn planned_and_claimed(
    store: &Store,
    lines: &[aftercare::ingest::Incoming],
    now: DateTime<Utc>,
) -> Vec<aftercare::store::Claimed> {
    plan::ingest(&playbook(), store, lines, t("2026-11-20T12:00:00Z"))
        .await
        .unwrap();
    store
        .claim(
            "node-a",
            "tok",
            now,
            now + chrono::Duration::minutes(5),
            10,
            &Default::default(),
        )
        .await
        .unwrap()
}

/// The completion of a message claimed under `tok`, sent by SMS after `attempts`.
fn sent_by_sms(id: &str, attempts: Vec<NewAttempt>, now: DateTime<Utc>) -> Completion {
    Completion {
        message_id: id.to_string(),
        claim_token: "tok".into(),
        state: MessageState::Sent,
        attempts,
        retry_at: None,
        reason: None,
        channel: Some("sms".into()),
        address: Some("+8613800138000".into()),
        at: now,
        next: None,
        uncounted: false,
    }
}

/// Three messages sent by SMS, as dispatch records them: the first failed over from `ali`
/// to `gw`, the second went through `ali`, the third through `tw`. Returns their ids.
async fn three_sent(store: &Store) -> Vec<String> {
    let lines: Vec<_> = (0..3)
        .map(|i| {
            parse_event(&delivered(
                &format!("evt-{i}"),
                &format!("c-{i}"),
                &format!("c{i}@example.com"),
                &format!("SO-{i}"),
                &format!("2026-11-20T0{i}:00:00Z"),
            ))
            .unwrap()
        })
        .collect();
    let now = t("2026-11-23T06:00:00Z");
    let claimed = planned_and_claimed(store, &lines, now).await;
    assert_eq!(claimed.len(), 3);
    let attempts = [
        vec![
            sms_attempt(1, "ali", Outcome::Transient, None),
            sms_attempt(2, "gw", Outcome::Sent, Some("H-1")),
        ],
        vec![sms_attempt(1, "ali", Outcome::Sent, Some("B-1"))],
        vec![sms_attempt(1, "tw", Outcome::Sent, Some("SM1"))],
    ];
    let batch: Vec<Completion> = claimed
        .iter()
        .zip(attempts)
        .map(|(m, attempts)| sent_by_sms(&m.id, attempts, now))
        .collect();
    assert_eq!(store.complete(&batch).await.unwrap(), 0);
    claimed.into_iter().map(|m| m.id).collect()
}

async fn message(store: &Store, id: &str) -> MessageRecord {
    store
        .find_messages(&LogFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .unwrap()
}

/// Receipts waiting for the record of their send (`store copy`'s row count of the table).
async fn waiting(store: &Store) -> i64 {
    store
        .row_counts()
        .await
        .unwrap()
        .into_iter()
        .find(|(table, _)| *table == "receipts_waiting")
        .map(|(_, n)| n)
        .unwrap()
}

fn inbound<'a>(url: Option<&'a str>, signature: Option<&'a str>, body: &'a [u8]) -> Inbound<'a> {
    Inbound {
        url,
        signature,
        body,
        token: None,
    }
}

/// An unsigned receipt push (`body`, JSON) through `gateway` at `at`: what it came to.
async fn receipts(
    store: &Store,
    ch: &SmsChannel,
    gateway: &str,
    body: serde_json::Value,
    at: DateTime<Utc>,
) -> Summary {
    let body = body.to_string();
    status_callback(store, ch, gateway, inbound(None, None, body.as_bytes()), at)
        .await
        .unwrap()
}

fn signed(url: &str, body: &str) -> String {
    let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    twilio::signature(TOKEN, url, &params)
}

async fn receipts_find_their_attempt_and_settle_the_message(b: Backend) {
    let (store, dir) = store(b).await;
    let ch = channel(dir.path());
    let ids = three_sent(&store).await;
    let now = t("2026-11-23T06:01:00Z");

    // A generic provider's batch: one of ours (the failover hop), one not.
    let batch = json!([{"msgid": "H-1", "stat": "DELIVRD", "desc": "用户接收成功"},
                       {"msgid": "someone-else", "stat": "DELIVRD"}]);
    let s = receipts(&store, &ch, "gw", batch, now).await;
    assert_eq!(
        s,
        Summary {
            receipts: 2,
            recorded: 1,
            unmatched: 1,
            ..Summary::default()
        }
    );
    let m = message(&store, &ids[0]).await;
    assert_eq!(m.state, MessageState::Sent);
    assert_eq!(m.delivery.as_deref(), Some("delivered"));
    assert!(m.attempt_log[0].receipts.is_empty());
    let r = &m.attempt_log[1].receipts;
    assert_eq!(r.len(), 1);
    assert_eq!(
        (
            r[0].status.as_str(),
            r[0].code.as_deref(),
            r[0].text.as_deref()
        ),
        ("delivered", Some("DELIVRD"), Some("用户接收成功"))
    );
    assert_eq!(r[0].received_at, now);

    // Aliyun's report, found by our reference (out_id) when the BizId is not one we kept.
    let aliyun = json!([{"phone_number": "13800138000", "success": false, "biz_id": "other^0",
                         "out_id": ids[1], "err_code": "UNDELIV", "err_msg": "用户手机关机"}]);
    let s = receipts(&store, &ch, "ali", aliyun, now).await;
    assert_eq!((s.recorded, s.unmatched), (1, 0));
    let m = message(&store, &ids[1]).await;
    assert_eq!(m.delivery.as_deref(), Some("undelivered"));
    assert_eq!(
        m.attempt_log[0].receipts[0].code.as_deref(),
        Some("UNDELIV")
    );
    // The same reference through another gateway is not ours.
    let s = receipts(
        &store,
        &ch,
        "gw",
        json!({"msgid": "B-1", "stat": "DELIVRD"}),
        now,
    )
    .await;
    assert_eq!(s.unmatched, 1);

    // Twilio: "sent" is on the way (kept, no delivery status yet), then the final word.
    let sent = "MessageSid=SM1&MessageStatus=sent";
    let s = status_callback(
        &store,
        &ch,
        "tw",
        inbound(None, Some(&signed(STATUS_URL, sent)), sent.as_bytes()),
        now,
    )
    .await
    .unwrap();
    assert_eq!(s.recorded, 1);
    assert_eq!(message(&store, &ids[2]).await.delivery, None);
    let failed = "MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30003";
    status_callback(
        &store,
        &ch,
        "tw",
        inbound(None, Some(&signed(STATUS_URL, failed)), failed.as_bytes()),
        t("2026-11-23T06:02:00Z"),
    )
    .await
    .unwrap();
    let m = message(&store, &ids[2]).await;
    assert_eq!(m.delivery.as_deref(), Some("undelivered"));
    let r: Vec<(&str, Option<&str>)> = m.attempt_log[0]
        .receipts
        .iter()
        .map(|r| (r.status.as_str(), r.code.as_deref()))
        .collect();
    assert_eq!(r, [("pending", None), ("undelivered", Some("30003"))]);
    assert_eq!(
        m.attempt_log[0].receipts[1].text.as_deref(),
        Some("unreachable destination handset")
    );
    store.close().await;
}

/// A receipt that outruns the record of its own send: the gateway answered, the receipt came
/// at once, and the recorder committed the attempt (its provider id) later — here after the
/// hook had answered, as when the store is busy for seconds. It was answered 200 as "for no
/// message of ours" and lost (the provider does not push a 2xx again); it now waits, and the
/// commit that records the attempt applies it, with the time it came.
async fn a_receipt_that_outruns_its_send_finds_it(b: Backend) {
    let (store, dir, url) = store_at(b).await;
    let ch = channel(dir.path());
    let lines: Vec<_> = (0..2)
        .map(|i| {
            parse_event(&delivered(
                &format!("evt-{i}"),
                &format!("c-{i}"),
                &format!("c{i}@example.com"),
                &format!("SO-{i}"),
                "2026-11-20T00:00:00Z",
            ))
            .unwrap()
        })
        .collect();
    let now = t("2026-11-23T06:00:00Z");
    let claimed = planned_and_claimed(&store, &lines, now).await;
    assert_eq!(claimed.len(), 2);
    let (first, second) = (claimed[0].id.clone(), claimed[1].id.clone());

    // The first: "pending", then a second later its final word, both before its send is
    // recorded; the second by our reference (as Aliyun echoes it); and one for another
    // system's message.
    let s = receipts(
        &store,
        &ch,
        "gw",
        json!([{"msgid": "H-9", "stat": "ENROUTE"}]),
        now,
    )
    .await;
    assert_eq!((s.recorded, s.unmatched), (0, 1), "{b:?}: {s:?}");
    let final_at = t("2026-11-23T06:00:01Z");
    let both =
        json!([{"msgid": "H-9", "stat": "DELIVRD"}, {"msgid": "someone-else", "stat": "DELIVRD"}]);
    let s = receipts(&store, &ch, "gw", both, final_at).await;
    assert_eq!((s.recorded, s.unmatched), (0, 2), "{b:?}: {s:?}");
    let aliyun = json!([{"phone_number": "13800138000", "success": false, "biz_id": "not-yet",
                         "out_id": second, "err_code": "UNDELIV", "err_msg": "用户手机关机"}]);
    let s = receipts(&store, &ch, "ali", aliyun, now).await;
    assert_eq!((s.recorded, s.unmatched), (0, 1), "{b:?}: {s:?}");
    assert_eq!(message(&store, &first).await.delivery, None);

    let recorded = t("2026-11-23T06:00:09Z");
    let done = [
        sent_by_sms(
            &first,
            vec![sms_attempt(1, "gw", Outcome::Sent, Some("H-9"))],
            recorded,
        ),
        sent_by_sms(
            &second,
            vec![sms_attempt(1, "ali", Outcome::Sent, Some("A-1"))],
            recorded,
        ),
    ];
    assert_eq!(store.complete(&done).await.unwrap(), 0);
    let m = message(&store, &first).await;
    assert_eq!(m.delivery.as_deref(), Some("delivered"), "{b:?}");
    let r: Vec<(&str, DateTime<Utc>)> = m.attempt_log[0]
        .receipts
        .iter()
        .map(|r| (r.status.as_str(), r.received_at))
        .collect();
    assert_eq!(r, [("pending", now), ("delivered", final_at)], "{b:?}");
    let m = message(&store, &second).await;
    assert_eq!(m.delivery.as_deref(), Some("undelivered"), "{b:?}");
    assert_eq!(
        m.attempt_log[0].receipts[0].code.as_deref(),
        Some("UNDELIV")
    );

    // What was applied waits no more (a repeat of the push is a duplicate, not a wait); the
    // other system's receipt is dropped with the next one that waits a day later.
    let s = receipts(
        &store,
        &ch,
        "gw",
        json!([{"msgid": "H-9", "stat": "DELIVRD"}]),
        now,
    )
    .await;
    assert_eq!((s.recorded, s.duplicates, s.unmatched), (1, 1, 0));
    assert_eq!(waiting(&store).await, 1, "{b:?}");
    let late = json!([{"msgid": "late", "stat": "DELIVRD"}]);
    receipts(&store, &ch, "gw", late, t("2026-11-24T06:00:02Z")).await;
    assert_eq!(waiting(&store).await, 1, "{b:?}: only `late` waits");

    // A flood of invented receipts (a gateway without a signature takes them from anyone)
    // fills the waiting room and no more: the next is dropped, not kept.
    let fill = MAX_WAITING - 1;
    let at = t("2026-11-24T06:00:02Z").timestamp_millis();
    raw_sql(
        &url,
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {fill}) \
             INSERT INTO receipts_waiting (gateway, provider_id, status, received_at) \
             SELECT 'gw', 'flood-' || i, 'delivered', {at} FROM n"
        ),
        &format!(
            "INSERT INTO receipts_waiting (gateway, provider_id, status, received_at) \
             SELECT 'gw', 'flood-' || i, 'delivered', {at} FROM generate_series(1, {fill}) i"
        ),
    )
    .await;
    let more =
        json!([{"msgid": "one-more", "stat": "DELIVRD"}, {"msgid": "H-9", "stat": "UNDELIV"}]);
    let s = receipts(&store, &ch, "gw", more, t("2026-11-24T06:00:03Z")).await;
    assert_eq!((s.recorded, s.unmatched), (1, 1), "{b:?}: {s:?}");
    assert_eq!(waiting(&store).await, MAX_WAITING, "{b:?}");
    store.close().await;
}

async fn refusals_carry_their_http_status(b: Backend) {
    let (store, dir) = store(b).await;
    let ch = channel(dir.path());
    let now = t("2026-11-23T06:01:00Z");
    let body = "MessageSid=SM1&MessageStatus=delivered";
    let elsewhere = signed("https://evil.example/x", body);
    let cases: Vec<(&str, Inbound, u16)> = vec![
        ("nope", inbound(None, None, b"{}"), 404),
        ("plain", inbound(None, None, b"{}"), 404),
        ("tw", inbound(None, None, body.as_bytes()), 403),
        ("tw", inbound(None, Some("bm90IGl0"), body.as_bytes()), 403),
        // Signed for another URL: refused like a forgery.
        ("tw", inbound(None, Some(&elsewhere), body.as_bytes()), 403),
        ("gw", inbound(None, None, b"not json"), 400),
        ("gw", inbound(None, None, br#"{"stat":"DELIVRD"}"#), 400),
        ("ali", inbound(None, None, br#"[{"biz_id":"1"}]"#), 400),
        ("tw-nokey", inbound(None, Some("x"), body.as_bytes()), 503),
        // An unsigned gateway with a push token: the URL called must carry it.
        (
            "locked",
            inbound(None, None, br#"{"msgid":"1","stat":"DELIVRD"}"#),
            403,
        ),
        (
            "locked",
            Inbound {
                token: Some("push-token-0123456788"),
                ..inbound(None, None, br#"{"msgid":"1","stat":"DELIVRD"}"#)
            },
            403,
        ),
    ];
    for (gateway, req, status) in cases {
        let e = status_callback(&store, &ch, gateway, req, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), status, "{gateway}: {e}");
        if status == 503 {
            assert!(e.to_string().contains("missing.token"), "{e}");
        }
    }
    let with_token = Inbound {
        token: Some("push-token-0123456789"),
        ..inbound(None, None, br#"{"msgid":"1","stat":"DELIVRD"}"#)
    };
    let s = status_callback(&store, &ch, "locked", with_token, now).await;
    assert_eq!(s.unwrap().unmatched, 1, "the right token lets the push in");
    // Replies: a Twilio reply needs the URL it was signed for.
    let e = inbound_reply(
        &store,
        &ch,
        "tw",
        inbound(None, Some("x"), b"From=%2B1&Body=STOP"),
        now,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, HookError::Malformed(_)), "{e}");
    let e = inbound_reply(&store, &ch, "plain", inbound(None, None, b"{}"), now)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 404);
    assert!(store.suppressions(None).await.unwrap().is_empty());
    store.close().await;
}

async fn stop_replies_suppress_the_number_and_others_do_not(b: Backend) {
    let (store, dir) = store(b).await;
    let ch = channel(dir.path());
    let now = t("2026-11-23T06:01:00Z");
    // A provider's batch: full-width STOP from a number without "+", and a thank-you.
    let body = json!([{"mobile": "8613800138001", "content": "ＳＴＯＰ"},
                      {"mobile": "+8613800138002", "content": "谢谢，已收到"}])
    .to_string();
    let s = inbound_reply(&store, &ch, "gw", inbound(None, None, body.as_bytes()), now)
        .await
        .unwrap();
    assert_eq!((s.replies, s.stopped), (2, 1));
    // Twilio's signed inbound webhook, for the URL the endpoint was called on.
    let url = "https://shop.example/sms/twilio/inbound?x=1";
    let form = "From=%2B15005550007&To=%2B15005550006&Body=stop&MessageSid=SM9";
    let s = inbound_reply(
        &store,
        &ch,
        "tw",
        inbound(Some(url), Some(&signed(url, form)), form.as_bytes()),
        now,
    )
    .await
    .unwrap();
    assert_eq!(s.stopped, 1);
    // Aliyun's SmsUp: 退订 and TD from mainland numbers.
    let up = json!([{"phone_number": "13800138003", "content": "退订"},
                    {"phone_number": "13800138004", "content": " td "},
                    {"phone_number": "13800138005", "content": "stop please"}])
    .to_string();
    let s = inbound_reply(&store, &ch, "ali", inbound(None, None, up.as_bytes()), now)
        .await
        .unwrap();
    assert_eq!((s.replies, s.stopped), (3, 2));
    let list: Vec<(String, String, String)> = store
        .suppressions(Some("sms"))
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.address, s.reason, s.source.unwrap_or_default()))
        .collect();
    let want = |n: &str, gw: &str| {
        (
            n.to_string(),
            format!("STOP reply via {gw}"),
            "sms-reply".to_string(),
        )
    };
    let mut list = list;
    list.sort();
    assert_eq!(
        list,
        [
            want("+15005550007", "tw"),
            want("+8613800138001", "gw"),
            want("+8613800138003", "ali"),
            want("+8613800138004", "ali"),
        ]
    );
    store.close().await;
}

/// Every reply is kept for support, matched to the contact with that number; START lifts the
/// customer's own STOP, but not a suppression that support made.
async fn replies_are_kept_and_start_lifts_only_the_customers_own_stop(b: Backend) {
    let (store, dir) = store(b).await;
    let ch = channel(dir.path());
    let line = r#"{"id":"evt-p","type":"order.delivered","occurred_at":"2026-11-20T10:00:00+08:00","contact":{"id":"c-p","email":"p@example.com","phone":"+8613800138010"},"data":{"order_id":"SO-P"}}"#;
    plan::ingest(
        &playbook(),
        &store,
        &[parse_event(line).unwrap()],
        t("2026-11-20T12:00:00Z"),
    )
    .await
    .unwrap();
    let push = |from: &str, text: &str| json!([{"mobile": from, "content": text}]).to_string();
    let reply = async |from: &str, text: &str, at: &str| {
        inbound_reply(
            &store,
            &ch,
            "gw",
            inbound(None, None, push(from, text).as_bytes()),
            t(at),
        )
        .await
        .unwrap()
    };
    let suppressed = async |n: &str| {
        store
            .suppressions(Some("sms"))
            .await
            .unwrap()
            .iter()
            .any(|s| s.address == n)
    };
    let s = reply("8613800138010", "包裹还没到", "2026-11-23T06:00:00Z").await;
    assert_eq!((s.replies, s.stopped, s.resumed), (1, 0, 0));
    let s = reply("8613800138010", "退订", "2026-11-23T06:01:00Z").await;
    assert_eq!(s.stopped, 1);
    assert!(suppressed("+8613800138010").await);
    let s = reply("8613800138010", "ＳＴＡＲＴ", "2026-11-23T06:02:00Z").await;
    assert_eq!(s.resumed, 1);
    assert!(
        !suppressed("+8613800138010").await,
        "START lifts the customer's STOP"
    );
    let history = common::history(&store, "sms", "+8613800138010").await;
    assert_eq!(
        history,
        [
            (
                "added".to_string(),
                "STOP reply via gw".to_string(),
                "the customer, by SMS reply".to_string()
            ),
            (
                "removed".to_string(),
                "START reply via gw".to_string(),
                "the customer, by SMS reply".to_string()
            ),
        ]
    );

    // A number support suppressed by hand stays suppressed whatever it texts.
    store
        .suppress(
            "sms",
            "+8613800138011",
            "asked by phone",
            Some("support"),
            "li.na",
            t("2026-11-23T05:00:00Z"),
        )
        .await
        .unwrap();
    let s = reply("8613800138011", "start", "2026-11-23T06:03:00Z").await;
    assert_eq!(s.resumed, 0);
    assert!(suppressed("+8613800138011").await);
    // A STOP does not make support's entry the customer's, so a START after it still
    // finds support's and lifts nothing.
    let s = reply("8613800138011", "STOP", "2026-11-23T06:04:00Z").await;
    assert_eq!(s.stopped, 1);
    let s = reply("8613800138011", "START", "2026-11-23T06:05:00Z").await;
    assert_eq!(s.resumed, 0);
    assert!(suppressed("+8613800138011").await, "support's entry stays");
    let entry = store
        .suppressions_of(None, Some("+8613800138011"))
        .await
        .unwrap();
    assert_eq!(
        entry
            .iter()
            .map(|e| (e.reason.as_str(), e.source.as_deref()))
            .collect::<Vec<_>>(),
        [("asked by phone", Some("support"))]
    );

    // Support reads them: by contact id, email address or number, oldest first, with what
    // each did.
    for key in ["c-p", "P@example.com", "+8613800138010"] {
        let got: Vec<(String, Option<String>, Option<String>)> = store
            .replies_of(key)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.text, r.action, r.contact_id))
            .collect();
        let c = Some("c-p".to_string());
        assert_eq!(
            got,
            [
                ("包裹还没到".to_string(), None, c.clone()),
                ("退订".to_string(), Some("opt_out".to_string()), c.clone()),
                (
                    "ＳＴＡＲＴ".to_string(),
                    Some("opt_in".to_string()),
                    c.clone()
                ),
            ],
            "{key}"
        );
    }
    // A provider that pushes the same message again (it saw a timeout) changes nothing:
    // Twilio's MessageSid and Aliyun's sequence_id name it.
    let url = "https://shop.example/sms/twilio/inbound";
    let form = "From=%2B8613800138010&To=%2B15005550006&Body=STOP&MessageSid=SMdup1";
    let sig = signed(url, form);
    let push_tw = || {
        inbound_reply(
            &store,
            &ch,
            "tw",
            inbound(Some(url), Some(&sig), form.as_bytes()),
            t("2026-11-23T06:04:00Z"),
        )
    };
    let first = push_tw().await.unwrap();
    assert_eq!((first.stopped, first.repeated), (1, 0));
    store
        .unsuppress(
            "sms",
            "+8613800138010",
            "test",
            "test",
            t("2026-11-23T06:00:00Z"),
        )
        .await
        .unwrap();
    let again = push_tw().await.unwrap();
    assert_eq!((again.replies, again.stopped, again.repeated), (1, 0, 1));
    assert!(
        !suppressed("+8613800138010").await,
        "a repeated push does not apply its keyword again"
    );
    let up =
        json!([{"phone_number": "13800138012", "content": "谢谢", "sequence_id": 77}]).to_string();
    for want in [0, 1] {
        let s = inbound_reply(
            &store,
            &ch,
            "ali",
            inbound(None, None, up.as_bytes()),
            t("2026-11-23T06:05:00Z"),
        )
        .await
        .unwrap();
        assert_eq!(s.repeated, want);
    }
    let gw = json!([{"mobile": "8613800138013", "content": "好的", "msg_id": "g-1"}]).to_string();
    for want in [0, 1] {
        let s = inbound_reply(
            &store,
            &ch,
            "gw",
            inbound(None, None, gw.as_bytes()),
            t("2026-11-23T06:06:00Z"),
        )
        .await
        .unwrap();
        assert_eq!(s.repeated, want, "http gateway, reply.id_pointer");
    }
    let ali = store.replies_of("+8613800138012").await.unwrap();
    assert_eq!(ali.len(), 1);
    assert_eq!(ali[0].provider_id.as_deref(), Some("77"));
    let tw: Vec<_> = store
        .replies_of("c-p")
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.gateway == "tw")
        .collect();
    assert_eq!(tw.len(), 1);
    assert_eq!(tw[0].provider_id.as_deref(), Some("SMdup1"));

    let other = store.replies_of("+8613800138011").await.unwrap();
    assert_eq!(
        other
            .iter()
            .map(|r| (r.action.as_deref(), r.contact_id.as_deref()))
            .collect::<Vec<_>>(),
        [
            (Some("opt_in_refused"), None),
            (Some("opt_out"), None),
            (Some("opt_in_refused"), None)
        ]
    );
    store.close().await;
}

use common::on_both_async as on_both;

on_both!(
    receipts_find_their_attempt_and_settle_the_message,
    a_receipt_that_outruns_its_send_finds_it,
    refusals_carry_their_http_status,
    stop_replies_suppress_the_number_and_others_do_not,
    replies_are_kept_and_start_lifts_only_the_customers_own_stop,
);
