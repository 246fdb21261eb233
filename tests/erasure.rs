//! Erasure and export in the store, on SQLite and on PostgreSQL: after `erase_contact`, no
//! text column of any table (read from the catalog) holds the person's email, phone or name;
//! the export before it holds every kind of record; the addresses stay suppressed as
//! one-way hashes, which the claim honours when the address comes back.

mod common;

use aftercare::ingest::parse_event;
use aftercare::model::{MessageState, Outcome};
use aftercare::plan;
use aftercare::store::{
    ClaimWith, Completion, NewAttempt, NewBounce, NewReceipt, SoftRule, Store, StoreConfig,
    StoredAnswer,
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::Backend;
use serde_json::json;

const EMAIL: &str = "wang.fang@example.com";
const PHONE: &str = "+8613800138000";
const NAME: &str = "王芳";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Db {
    cfg: StoreConfig,
    _dir: Option<tempfile::TempDir>,
}

async fn open(b: Backend) -> (Store, Db) {
    let (s, cfg, dir) = common::open_store(b).await;
    (s, Db { cfg, _dir: dir })
}

/// (table.column, rows) of every text column of every table that holds `needle` (any
/// case), the columns read from the database's own catalog.
async fn holding(db: &Db, needle: &str) -> Vec<(String, i64)> {
    let pattern = format!("%{}%", needle.to_lowercase());
    let mut out = Vec::new();
    match &db.cfg {
        StoreConfig::Sqlite { path, .. } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let cols: Vec<(String, String)> = sqlx::query_as(
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND UPPER(p.type) = 'TEXT'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            assert!(cols.len() > 30, "{cols:?}");
            for (table, col) in cols {
                let sql =
                    format!("SELECT COUNT(*) FROM \"{table}\" WHERE LOWER(\"{col}\") LIKE $1");
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(&pattern)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                if n > 0 {
                    out.push((format!("{table}.{col}"), n));
                }
            }
            pool.close().await;
        }
        StoreConfig::Postgres { url, .. } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let cols: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND data_type IN ('text', 'character varying')",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            assert!(cols.len() > 30, "{cols:?}");
            for (table, col) in cols {
                let sql =
                    format!("SELECT COUNT(*) FROM \"{table}\" WHERE LOWER(\"{col}\") LIKE $1");
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(&pattern)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                if n > 0 {
                    out.push((format!("{table}.{col}"), n));
                }
            }
            pool.close().await;
        }
    }
    out.sort();
    out
}

fn delivery(id: &str, contact: &str, email: &str, order: &str) -> String {
    json!({
        "id": id, "type": "order.delivered", "occurred_at": "2026-11-20T10:00:00+08:00",
        "contact": {"id": contact, "name": NAME, "email": email, "phone": PHONE,
                    "birthday": "1990-02-28", "attributes": {"note": format!("{NAME}'s account")}},
        "data": {"order_id": order, "ship_to": format!("{NAME}, {EMAIL}")}
    })
    .to_string()
}

async fn claim(store: &Store, at: DateTime<Utc>) -> Vec<aftercare::store::Claimed> {
    store
        .claim(
            "node-a",
            &format!("tok-{}", at.timestamp()),
            at,
            at + Duration::minutes(5),
            100,
            &ClaimWith::default(),
        )
        .await
        .unwrap()
}

async fn erase_leaves_no_trace_and_export_holds_everything(b: Backend) {
    let (store, db) = open(b).await;
    let book = common::shipped_playbook();
    let now = t("2026-11-20T03:00:00Z");
    let events: Vec<_> = [
        delivery("evt-1", "c-wf", "Wang.Fang@Example.com", "SO-1"),
        delivery("evt-2", "c-wf", "Wang.Fang@Example.com", "SO-2"),
        json!({"id": "evt-o", "type": "order.delivered", "occurred_at": "2026-11-20T10:00:00+08:00",
               "contact": {"id": "c-other", "name": "李娜", "email": "li.na@example.com"},
               "data": {"order_id": "SO-9"}})
        .to_string(),
    ]
    .iter()
    .map(|l| parse_event(l).unwrap())
    .collect();
    plan::ingest(&book, &store, &events, now).await.unwrap();
    // Three days on: SO-1 by email (its reminder stays pending), SO-2 by SMS with a
    // delivery receipt, li.na's sent.
    let at = t("2026-11-23T03:00:00Z");
    let claimed = claim(&store, at).await;
    assert_eq!(claimed.len(), 3);
    let job = book.jobs.get("review-request").unwrap().clone();
    let batch: Vec<Completion> = claimed
        .iter()
        .map(|m| {
            let order = m.event.as_ref().and_then(|e| e.order_id()).unwrap();
            let sms = order == "SO-2";
            let address = if sms {
                PHONE.to_string()
            } else {
                m.contact.email.clone().unwrap()
            };
            Completion {
                message_id: m.id.clone(),
                claim_token: m.claim_token.clone(),
                state: MessageState::Sent,
                attempts: vec![NewAttempt {
                    number: 1,
                    at,
                    channel: if sms { "sms" } else { "email" }.into(),
                    address: Some(address.clone()),
                    outcome: Outcome::Sent,
                    code: Some(250),
                    detail: Some(format!("250 ok: queued for {address}")),
                    provider_id: Some(format!("P-{order}")),
                    node: "node-a".into(),
                    duration_ms: 3,
                    gateway: sms.then(|| "twilio".to_string()),
                    // What the customer got (the console shows it; erasure takes it).
                    content: Some(aftercare::store::pack_content(
                        (!sms).then_some("您的订单已送达"),
                        &format!(
                            "{}，您好！订单 {order} 已送达。",
                            m.contact.name.clone().unwrap_or_default()
                        ),
                    )),
                }],
                retry_at: None,
                reason: (m.contact.id == "c-wf")
                    .then(|| format!("fell back: sms: {PHONE} is suppressed")),
                channel: Some(if sms { "sms" } else { "email" }.into()),
                address: Some(address),
                at,
                next: (order == "SO-1")
                    .then(|| plan::next_step(&book, &job, m, at))
                    .flatten(),
                uncounted: false,
            }
        })
        .collect();
    assert_eq!(store.complete(&batch).await.unwrap(), 0);
    store
        .apply_receipts(
            &[NewReceipt {
                gateway: "twilio".into(),
                provider_id: "P-SO-2".into(),
                reference: None,
                status: "delivered".into(),
                code: None,
                text: Some(format!("delivered to {PHONE}")),
            }],
            at,
        )
        .await
        .unwrap();
    store
        .record_reply(
            "r-1",
            "twilio",
            Some("SM1"),
            PHONE,
            &format!("我是{NAME}，收到了"),
            None,
            at,
        )
        .await
        .unwrap();
    store
        .suppress("email", EMAIL, "bounced", Some("smtp"), "smtp", at)
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.upsert_answer(&StoredAnswer {
        message_id: "m-nps-1".into(),
        job_id: "nps-survey".into(),
        contact_id: "c-wf".into(),
        scale: "nps".into(),
        score: 3,
        comment: Some(format!("{NAME}: 太慢了")),
        channel: "web".into(),
        answered_at: at,
        updated_at: at,
        changes: 0,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // A DSN about the SO-1 email, with its raw report, and support's note on the list.
    let so1 = claimed
        .iter()
        .find(|m| m.event.as_ref().and_then(|e| e.order_id()).as_deref() == Some("SO-1"))
        .unwrap();
    store
        .record_bounce(
            &NewBounce {
                id: "b-1".into(),
                kind: "hard".into(),
                source: "dsn".into(),
                address: EMAIL.into(),
                message_id: Some(so1.id.clone()),
                attempt: Some(1),
                job_id: Some("review-request".into()),
                status: Some("5.1.1".into()),
                code: Some(550),
                detail: format!("550 5.1.1 <{EMAIL}>: user unknown"),
                report_id: Some("dsn-1".into()),
                raw: Some(format!("Final-Recipient: rfc822; {EMAIL}\r\nStatus: 5.1.1")),
                at,
            },
            SoftRule {
                count: 3,
                within: Duration::days(15),
                suppress_for: Duration::days(30),
            },
        )
        .await
        .unwrap()
        .expect("a new report");
    store
        .suppress("email", EMAIL, "asked by phone", Some("cli"), "agent-7", at)
        .await
        .unwrap();

    // The search finds the person everywhere before the erasure (so it can fail).
    let email_before = holding(&db, EMAIL).await;
    for t in [
        "contacts.email",
        "messages.address",
        "attempts.address",
        "attempts.detail",
        "events.data",
        "suppressions.address",
        "bounces.address",
        "bounces.detail",
        "bounces.raw",
        "suppression_changes.address",
    ] {
        assert!(
            email_before.iter().any(|(c, _)| c == t),
            "{b:?}: {t} not in {email_before:?}"
        );
    }
    let phone_before = holding(&db, "13800138000").await;
    for t in [
        "contacts.phone",
        "replies.from_number",
        "receipts.text",
        "messages.reason",
    ] {
        assert!(
            phone_before.iter().any(|(c, _)| c == t),
            "{b:?}: {t} not in {phone_before:?}"
        );
    }
    let name_before = holding(&db, NAME).await;
    for t in [
        "contacts.name",
        "contacts.attributes",
        "replies.text",
        "answers.comment",
    ] {
        assert!(
            name_before.iter().any(|(c, _)| c == t),
            "{b:?}: {t} not in {name_before:?}"
        );
    }

    // The export: one document with every kind of record.
    let doc = store.export_contact("c-wf", at).await.unwrap().unwrap();
    assert_eq!(doc["contact"]["email"], "Wang.Fang@Example.com", "{b:?}");
    assert_eq!(doc["contact_dates"][0]["date"], "1990-02-28");
    assert_eq!(doc["events"].as_array().unwrap().len(), 2);
    assert_eq!(doc["events"][0]["data"]["order_id"], "SO-1");
    let messages = doc["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "two sends and a pending reminder");
    let attempts: Vec<&serde_json::Value> = messages
        .iter()
        .flat_map(|m| m["attempt_log"].as_array().unwrap())
        .collect();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts
            .iter()
            .any(|a| a["receipts"].as_array().is_some_and(|r| !r.is_empty())),
        "a receipt under its attempt: {attempts:?}"
    );
    assert_eq!(doc["replies"].as_array().unwrap().len(), 1);
    assert_eq!(doc["answers"][0]["score"], 3, "{b:?}");
    assert_eq!(doc["suppressions"].as_array().unwrap().len(), 1);
    assert_eq!(doc["bounces"].as_array().unwrap().len(), 1, "{b:?}");
    assert_eq!(doc["bounces"][0]["status"], "5.1.1");
    assert!(
        doc["bounces"][0]["raw"]
            .as_str()
            .unwrap()
            .contains("Final-Recipient"),
        "the raw report: {}",
        doc["bounces"]
    );
    let changes = doc["suppression_changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["actor"] == "agent-7"),
        "{changes:?}"
    );
    let texts = doc["message_contents"].as_array().unwrap();
    assert_eq!(texts.len(), 2, "what each send said: {texts:?}");
    assert!(
        texts.iter().all(|c| c["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{NAME}，您好"))),
        "{texts:?}"
    );
    let sent_ids: Vec<String> = messages
        .iter()
        .filter(|m| m["state"] == "sent")
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent_ids.len(), 2);
    assert!(
        !doc.to_string().contains("li.na@example.com"),
        "another contact's data"
    );

    let day = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let figures = store.daily_counts(None, day, day).await.unwrap();

    // Erase by the email address, in any case.
    let ids = store.contacts_named("WANG.FANG@example.com").await.unwrap();
    assert_eq!(ids, ["c-wf"]);
    let e = store
        .erase_contact("c-wf", "GDPR request 17", at)
        .await
        .unwrap();
    assert_eq!(
        (
            e.contacts,
            e.events,
            e.messages,
            e.cancelled,
            e.attempts,
            e.receipts,
            e.replies,
            e.answers,
            e.suppressed,
            e.texts
        ),
        (1, 2, 3, 1, 2, 1, 1, 1, 2, 2),
        "{b:?}: {e:?}"
    );
    assert_eq!(e.bounces, 1, "{b:?}: {e:?}");
    assert!(e.suppression_changes >= 2, "the DSN's and support's: {e:?}");
    assert_eq!(e.reference.len(), 1);
    assert!(!e.reference[0].contains("c-wf"));

    for needle in [EMAIL, "13800138000", NAME, "c-wf"] {
        assert_eq!(
            holding(&db, needle).await,
            [],
            "{b:?}: {needle} left behind"
        );
    }
    // The stored words went with the messages (compressed, so `holding` cannot see them).
    for id in &sent_ids {
        assert_eq!(store.message_contents(id).await.unwrap(), [], "{b:?}");
    }
    // The other contact is untouched.
    assert!(!holding(&db, "li.na@example.com").await.is_empty());
    // Anonymous counts stay: the sends as they were, the pending reminder as cancelled today.
    let mut after = store.daily_counts(None, day, day).await.unwrap();
    after.retain(|c| c.outcome != "cancelled");
    assert_eq!(after, figures, "{b:?}");
    let total: i64 = store
        .daily_counts(None, day, t("2026-11-24T00:00:00Z").date_naive())
        .await
        .unwrap()
        .iter()
        .filter(|c| c.outcome == "cancelled")
        .map(|c| c.n)
        .sum();
    assert_eq!(total, 1, "{b:?}");

    // Idempotent.
    let again = store.erase_contact("c-wf", "again", at).await.unwrap();
    assert_eq!(again.contacts + again.messages + again.suppressed, 0);
    assert!(store.export_contact("c-wf", at).await.unwrap().is_none());

    // The shop sends the person again under a new id: stored, planned, and never sent to on
    // those addresses (the hashed entries match at claim time).
    let back = parse_event(&delivery("evt-3", "c-new", "WANG.FANG@example.com", "SO-3")).unwrap();
    plan::ingest(&book, &store, &[back], at).await.unwrap();
    let claimed = claim(&store, t("2026-11-26T03:00:00Z")).await;
    let m = claimed.iter().find(|m| m.contact.id == "c-new").unwrap();
    let mut suppressed = m.suppressed.clone();
    suppressed.sort();
    assert_eq!(
        suppressed,
        [
            ("email".to_string(), "erased: GDPR request 17".to_string()),
            ("sms".to_string(), "erased: GDPR request 17".to_string())
        ],
        "{b:?}"
    );
    // `suppress remove` with the address lifts the hashed entry too.
    assert!(
        store
            .unsuppress("email", EMAIL, "came back", "support", at)
            .await
            .unwrap()
    );
    assert_eq!(
        store.suppressions(Some("email")).await.unwrap().len(),
        0,
        "{b:?}"
    );
}

#[tokio::test]
async fn sqlite_erase_leaves_no_trace_and_export_holds_everything() {
    erase_leaves_no_trace_and_export_holds_everything(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_erase_leaves_no_trace_and_export_holds_everything() {
    erase_leaves_no_trace_and_export_holds_everything(Backend::Postgres).await;
}

/// An address the contact had before its current one: its suppression, its history and
/// the bounce about it are in the export and go with the erasure (the suppression kept as a
/// hash, as the current addresses' are).
async fn an_earlier_address_goes_with_the_contact(b: Backend) {
    const OLD: &str = "wf.old@example.net";
    let (store, db) = open(b).await;
    let book = common::shipped_playbook();
    let first = parse_event(&delivery("evt-1", "c-wf", OLD, "SO-1")).unwrap();
    plan::ingest(&book, &store, &[first], t("2026-11-20T03:00:00Z"))
        .await
        .unwrap();
    let at = t("2026-11-23T03:00:00Z");
    let claimed = claim(&store, at).await;
    assert_eq!(claimed.len(), 1, "{b:?}");
    let attempt = NewAttempt {
        number: 1,
        at,
        channel: "email".into(),
        address: Some(OLD.into()),
        outcome: Outcome::Permanent,
        code: Some(550),
        detail: Some(format!("550 5.1.1 <{OLD}>: user unknown")),
        provider_id: None,
        node: "node-a".into(),
        duration_ms: 3,
        gateway: None,
        content: None,
    };
    let done = Completion {
        message_id: claimed[0].id.clone(),
        claim_token: claimed[0].claim_token.clone(),
        state: MessageState::Failed,
        attempts: vec![attempt],
        retry_at: None,
        reason: Some("550 5.1.1".into()),
        channel: Some("email".into()),
        address: Some(OLD.into()),
        at,
        next: None,
        uncounted: false,
    };
    assert_eq!(store.complete(&[done]).await.unwrap(), 0);
    store
        .suppress("email", OLD, "bounced: 550 5.1.1", Some("smtp"), "smtp", at)
        .await
        .unwrap();
    // Then the shop sends the new address.
    let second = parse_event(&delivery("evt-2", "c-wf", EMAIL, "SO-2")).unwrap();
    plan::ingest(&book, &store, &[second], at).await.unwrap();

    let doc = store.export_contact("c-wf", at).await.unwrap().unwrap();
    assert_eq!(doc["contact"]["email"], EMAIL);
    assert!(
        doc["suppressions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["address"] == OLD),
        "{b:?}: {}",
        doc["suppressions"]
    );
    assert!(
        doc["suppression_changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["address"] == OLD),
        "{b:?}: {}",
        doc["suppression_changes"]
    );
    assert!(!holding(&db, OLD).await.is_empty());
    let e = store
        .erase_contact("c-wf", "GDPR request 18", at)
        .await
        .unwrap();
    assert_eq!(
        holding(&db, OLD).await,
        [],
        "{b:?}: the earlier address left behind"
    );
    // Kept suppressed as a hash: the current email and phone, and the earlier email.
    assert_eq!(e.suppressed, 3, "{b:?}: {e:?}");
    let hashed = store.suppressions(Some("email")).await.unwrap();
    assert_eq!(hashed.len(), 2, "{b:?}: {hashed:?}");
}

#[tokio::test]
async fn sqlite_an_earlier_address_goes_with_the_contact() {
    an_earlier_address_goes_with_the_contact(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_an_earlier_address_goes_with_the_contact() {
    an_earlier_address_goes_with_the_contact(Backend::Postgres).await;
}

/// The verbs: `contact export` prints the document, `contact erase` by phone number says
/// what it removed (counts and a reference, never the data) and is idempotent.
#[test]
fn contact_erase_and_export_on_the_command_line() {
    let ws = common::Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    ws.import(&[delivery("evt-1", "c-wf", EMAIL, "SO-1")]).ok();
    ws.once("2026-11-23T10:00:00+08:00");
    let doc: serde_json::Value =
        serde_json::from_str(&ws.run(&["contact", "export", PHONE]).ok().stdout).unwrap();
    assert_eq!(doc["contact"]["id"], "c-wf");
    assert_eq!(doc["messages"].as_array().unwrap().len(), 2);
    let r = ws
        .command(&["contact", "erase", PHONE, "--reason", "ticket 42"])
        .env("AFTERCARE_LOG", "info")
        .output()
        .unwrap();
    assert!(r.status.success());
    let (out, log) = (
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr),
    );
    assert!(
        out.starts_with("erased contact (ref ")
            && out.contains("1 event(s), 2 message(s) (1 pending cancelled), 1 attempt(s)")
            && out.contains("2 address(es) kept suppressed as one-way hashes"),
        "{out}"
    );
    assert!(
        log.contains("contact erased") && log.contains("ticket 42"),
        "{log}"
    );
    for secret in ["c-wf", EMAIL, "13800138000", NAME] {
        assert!(
            !log.contains(secret) && !out.contains(secret),
            "{secret} in {out}{log}"
        );
    }
    let again = ws.run(&["contact", "erase", "c-wf"]).ok().stdout;
    assert!(again.starts_with("nothing held for c-wf"), "{again}");

    // What was written for a contact while its erasure ran (the contact's row gone, its
    // message and event not): asked again, the erasure takes them, and the store is whole.
    ws.import(&[delivery("evt-2", "c-late", "late@example.com", "SO-2")])
        .ok();
    ws.store_sql(
        "DELETE FROM contacts WHERE id = 'c-late'",
        "DELETE FROM contacts WHERE id = 'c-late'",
    );
    assert_eq!(
        ws.run(&["store", "check"]).code,
        1,
        "the left rows are found"
    );
    let out = ws.run(&["contact", "erase", "c-late"]).ok().stdout;
    assert!(
        out.contains("1 event(s), 1 message(s) (1 pending cancelled)"),
        "{out}"
    );
    ws.run(&["store", "check"]).ok();
    let missing = ws.run(&["contact", "export", "c-wf"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no contact c-wf"),
        "{}",
        missing.stderr
    );
}
