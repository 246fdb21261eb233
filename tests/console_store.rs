//! What the console reads and changes in the store, on SQLite and on PostgreSQL: the search
//! (id, email in any case, phone, order id, message id), the stored words of a sent message,
//! and agents' actions (retry, cancel, claim and close a callback task, suppress and
//! unsuppress), each recorded by name, and gone with the contact's erasure.

mod common;

use aftercare::ingest::parse_event;
use aftercare::model::{MessageState, Outcome};
use aftercare::plan;
use aftercare::store::{
    Completion, HandAction, NewAction, NewAttempt, SearchKey, SqliteSync, Store, StoreConfig,
    pack_content,
};
use aftercare::values::Secret;
use chrono::{DateTime, Duration, Utc};
use common::{Backend, pg};
use serde_json::json;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn open(b: Backend) -> (Store, Option<tempfile::TempDir>) {
    let (cfg, dir) = match b {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            (
                StoreConfig::Sqlite {
                    path: dir.path().join("aftercare.db"),
                    synchronous: SqliteSync::Normal,
                },
                Some(dir),
            )
        }
        Backend::Postgres => (
            StoreConfig::Postgres {
                url: pg::fresh_database(),
                password: Secret::None,
            },
            None,
        ),
    };
    let s = Store::connect(&cfg).await.unwrap();
    s.migrate().await.unwrap();
    (s, dir)
}

fn key(text: &str, email: Option<&str>, phone: Option<&str>) -> SearchKey {
    SearchKey {
        text: text.into(),
        email: email.map(str::to_string),
        phone: phone.map(str::to_string),
    }
}

fn agent(at: DateTime<Utc>) -> NewAction {
    NewAction {
        agent: "li.na".into(),
        contact_id: None,
        message_id: None,
        note: None,
        at,
    }
}

async fn console_store(b: Backend) {
    let (store, _dir) = open(b).await;
    let book = common::shipped_playbook();
    let t0 = t("2026-11-20T02:00:00Z");
    let lines = [
        json!({"id": "e-1", "type": "order.delivered", "occurred_at": "2026-11-20T10:00:00+08:00",
               "contact": {"id": "c-wf", "name": "王芳", "email": "Wang.Fang@Example.com", "phone": "+8613800138000"},
               "data": {"order_id": "SO-1"}}),
        json!({"id": "e-2", "type": "order.delivered", "occurred_at": "2026-11-20T10:00:00+08:00",
               "contact": {"id": "c-ln", "name": "李娜", "email": "li.na@example.com"},
               "data": {"order_id": "SO-2"}}),
        json!({"id": "e-3", "type": "complaint.resolved", "occurred_at": "2026-11-20T10:00:00+08:00",
               "contact": {"id": "c-wf"}, "data": {"complaint_id": "CP-1"}}),
    ];
    let events: Vec<_> = lines
        .iter()
        .map(|l| parse_event(&l.to_string()).unwrap())
        .collect();
    plan::ingest(&book, &store, &events, t0).await.unwrap();

    // Search: each way of naming Wang Fang, and nothing for what names nobody.
    let found = |hits: Vec<aftercare::store::Hit>| -> Vec<(String, &'static str)> {
        hits.into_iter()
            .map(|h| (h.contact.id, h.matched))
            .collect()
    };
    let wf = |how| vec![("c-wf".to_string(), how)];
    assert_eq!(
        found(store.search(&key("c-wf", None, None)).await.unwrap()),
        wf("contact")
    );
    assert_eq!(
        found(
            store
                .search(&key(
                    "WANG.fang@example.com",
                    Some("wang.fang@example.com"),
                    None
                ))
                .await
                .unwrap()
        ),
        wf("email")
    );
    assert_eq!(
        found(
            store
                .search(&key("138 0013 8000", None, Some("+8613800138000")))
                .await
                .unwrap()
        ),
        wf("phone")
    );
    assert_eq!(
        found(store.search(&key("SO-1", None, None)).await.unwrap()),
        wf("order")
    );
    assert!(
        store
            .search(&key("SO-404", None, None))
            .await
            .unwrap()
            .is_empty(),
        "{b:?}"
    );
    assert!(
        store
            .search(&key("  ", None, None))
            .await
            .unwrap()
            .is_empty()
    );

    // Sent with its words, in the batch of its attempt; a failure without.
    let at = t("2026-11-23T03:00:00Z");
    let claimed = store
        .claim(
            "node-a",
            "tok",
            at,
            at + Duration::minutes(5),
            10,
            &Default::default(),
        )
        .await
        .unwrap();
    let first = |contact: &str, job: &str| {
        claimed
            .iter()
            .find(|m| m.contact.id == contact && m.job_id == job)
            .unwrap_or_else(|| panic!("{contact} {job} not claimed"))
            .clone()
    };
    let sent = first("c-wf", "review-request");
    let failed = first("c-ln", "review-request");
    let task = store
        .callback_tasks(aftercare::store::Tasks::ToDo, 100_000)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.contact_id == "c-wf")
        .expect("the complaint's callback task");
    let completion = |m: &aftercare::store::Claimed, state, content: Option<Vec<u8>>| Completion {
        message_id: m.id.clone(),
        claim_token: m.claim_token.clone(),
        state,
        attempts: vec![NewAttempt {
            number: 1,
            at,
            channel: "email".into(),
            address: m.contact.email.clone(),
            outcome: if state == MessageState::Sent {
                Outcome::Sent
            } else {
                Outcome::Permanent
            },
            code: Some(250),
            detail: Some("ok".into()),
            provider_id: None,
            node: "node-a".into(),
            duration_ms: 3,
            gateway: None,
            content,
        }],
        retry_at: None,
        reason: None,
        channel: Some("email".into()),
        address: m.contact.email.clone(),
        at,
        next: None,
        uncounted: false,
    };
    let words = "王芳，您好：\n\n您的订单 SO-1 已送达。";
    let mut batch = vec![
        completion(
            &sent,
            MessageState::Sent,
            Some(pack_content(Some("订单已送达"), words)),
        ),
        completion(&failed, MessageState::Failed, None),
    ];
    // Everything else claimed goes back untouched (the complaint's email notice).
    batch.extend(
        claimed
            .iter()
            .filter(|m| m.id != sent.id && m.id != failed.id)
            .map(|m| completion(m, MessageState::Sent, None)),
    );
    assert_eq!(store.complete(&batch).await.unwrap(), 0);
    let got = store.message_contents(&sent.id).await.unwrap();
    assert_eq!(got.len(), 1, "{b:?}");
    assert_eq!(
        (
            got[0].subject.as_deref(),
            got[0].text.as_str(),
            got[0].attempt
        ),
        (Some("订单已送达"), words, 1)
    );
    assert_eq!(store.message_contents(&failed.id).await.unwrap(), []);
    let marked = store
        .with_content(&[sent.id.clone(), failed.id.clone()])
        .await
        .unwrap();
    assert!(marked.contains(&sent.id) && !marked.contains(&failed.id));
    // A message id finds its contact too.
    assert_eq!(
        found(
            store
                .search(&key(&sent.id.to_uppercase(), None, None))
                .await
                .unwrap()
        ),
        wf("message")
    );

    // Agents' actions, each recorded by name.
    let later = at + Duration::minutes(10);
    assert_eq!(
        store.agent_retry(&failed.id, &agent(later)).await.unwrap(),
        HandAction::Done
    );
    // A final message back in the queue (PostgreSQL's trigger inserts its queue row).
    common::assert_queue_whole(&store).await;
    assert!(matches!(
        store.agent_retry(&failed.id, &agent(later)).await.unwrap(),
        HandAction::WrongState(_)
    ));
    assert_eq!(
        store
            .agent_cancel(&failed.id, &agent(later + Duration::seconds(1)))
            .await
            .unwrap(),
        HandAction::Done
    );
    assert_eq!(
        store
            .agent_retry("no-such-id", &agent(later))
            .await
            .unwrap(),
        HandAction::NotFound
    );
    assert_eq!(
        store
            .agent_claim_task(&task.id, &agent(later))
            .await
            .unwrap(),
        HandAction::Done
    );
    let claims = store
        .task_claims(std::slice::from_ref(&task.id))
        .await
        .unwrap();
    assert_eq!(claims.get(&task.id).map(|c| c.0.as_str()), Some("li.na"));
    let mut done = agent(later + Duration::minutes(1));
    done.note = Some("回访完成".into());
    assert_eq!(
        store.agent_close_task(&task.id, &done).await.unwrap(),
        HandAction::Done
    );
    assert!(matches!(
        store.agent_close_task(&task.id, &done).await.unwrap(),
        HandAction::WrongState(_)
    ));
    let mut sup = agent(later + Duration::minutes(2));
    sup.contact_id = Some("c-wf".into());
    sup.note = Some("asked on the phone".into());
    store
        .agent_suppress("email", "Wang.Fang@Example.com", "asked on the phone", &sup)
        .await
        .unwrap();
    let listed = store
        .suppressions_of(Some("wang.fang@example.com"), Some("+8613800138000"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{b:?}");
    assert_eq!(listed[0].reason, "asked on the phone");
    sup.note = None;
    sup.at += Duration::seconds(1);
    assert!(
        store
            .agent_unsuppress("email", "wang.fang@example.com", &sup)
            .await
            .unwrap()
    );
    assert!(
        store
            .suppressions_of(Some("wang.fang@example.com"), None)
            .await
            .unwrap()
            .is_empty()
    );

    // The list's history has both changes, by the agent.
    let history = common::history(&store, "email", "Wang.Fang@Example.com").await;
    assert_eq!(
        history,
        [
            (
                "added".to_string(),
                "asked on the phone".to_string(),
                "console: li.na".to_string()
            ),
            (
                "removed".to_string(),
                String::new(),
                "console: li.na".to_string()
            ),
        ],
        "{b:?}"
    );

    let wf_actions: Vec<String> = store
        .actions_of("c-wf")
        .await
        .unwrap()
        .into_iter()
        .map(|a| format!("{} {} {}", a.agent, a.action, a.note.unwrap_or_default()))
        .collect();
    assert_eq!(
        wf_actions,
        [
            "li.na claim ",
            "li.na callback_done 回访完成",
            "li.na suppress asked on the phone",
            "li.na unsuppress ",
        ],
        "{b:?}"
    );
    let ln_actions: Vec<String> = store
        .actions_of("c-ln")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(ln_actions, ["retry", "cancel"], "{b:?}");

    // Erasure takes the words and the actions with the contact.
    let e = store.erase_contact("c-wf", "request", later).await.unwrap();
    assert_eq!((e.texts, e.actions), (1, 4), "{b:?}: {e:?}");
    assert!(store.actions_of("c-wf").await.unwrap().is_empty());
    assert_eq!(store.message_contents(&sent.id).await.unwrap(), []);
    assert_eq!(
        store.actions_of("c-ln").await.unwrap().len(),
        2,
        "another contact's stay"
    );

    // The same person comes back under a new id: the hashed entries the erasure left stop
    // sends to their addresses, and the customer page and the export show them (by the
    // addresses as this contact has them); an agent's unsuppress removes one.
    let back = json!({"id": "e-9", "type": "order.delivered", "occurred_at": "2026-11-22T10:00:00+08:00",
               "contact": {"id": "c-back", "email": "WANG.FANG@example.com", "phone": "+8613800138000"},
               "data": {"order_id": "SO-9"}});
    plan::ingest(
        &book,
        &store,
        &[parse_event(&back.to_string()).unwrap()],
        later,
    )
    .await
    .unwrap();
    let entries = |list: Vec<aftercare::store::Suppression>| -> Vec<(String, bool, String)> {
        list.into_iter()
            .map(|s| (s.channel.clone(), s.erased(), s.reason))
            .collect()
    };
    let listed = store
        .suppressions_of(Some("WANG.FANG@example.com"), Some("+8613800138000"))
        .await
        .unwrap();
    let mut seen = entries(listed);
    seen.sort();
    assert_eq!(
        seen,
        [
            ("email".to_string(), true, "erased: request".to_string()),
            ("sms".to_string(), true, "erased: request".to_string()),
        ],
        "{b:?}"
    );
    let export = store
        .export_contact("c-back", later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        export["suppressions"].as_array().map(Vec::len),
        Some(2),
        "{b:?}: {export:#}"
    );
    let mut back_agent = agent(later + Duration::minutes(5));
    back_agent.contact_id = Some("c-back".into());
    assert!(
        store
            .agent_unsuppress("email", "WANG.FANG@example.com", &back_agent)
            .await
            .unwrap(),
        "{b:?}"
    );
    assert_eq!(
        entries(
            store
                .suppressions_of(Some("WANG.FANG@example.com"), Some("+8613800138000"))
                .await
                .unwrap()
        ),
        [("sms".to_string(), true, "erased: request".to_string())],
        "{b:?}"
    );
}

/// A store written by the release before v9 kept the words in `message_contents`; the
/// migration moves them into their attempts, and the console reads them there.
async fn words_move_into_their_attempts(b: Backend) {
    let ddl = match b {
        Backend::Sqlite => "BLOB",
        Backend::Postgres => "BYTEA",
    };
    // The migrations up to v8 exactly as shipped (same checksums), applied by sqlx.
    let old = common::migrations_before(b, "0009");
    let v8 = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = match b {
        Backend::Sqlite => StoreConfig::Sqlite {
            path: dir.path().join("aftercare.db"),
            synchronous: SqliteSync::Normal,
        },
        Backend::Postgres => StoreConfig::Postgres {
            url: pg::fresh_database(),
            password: Secret::None,
        },
    };
    let at = t("2026-11-02T10:00:00Z").timestamp_millis();
    let words = pack_content(Some("您的订单已送达"), "请为订单 SO-1 写评价");
    let attempt = "INSERT INTO attempts (message_id, attempt, at, channel, outcome) VALUES ($1, $2, $3, 'email', 'sent')";
    let content = "INSERT INTO message_contents (message_id, attempt, channel, body, created_at) VALUES ($1, 1, 'email', $2, $3)";
    // The same v8 rows on either pool type (sqlx's pools differ in type, not in use).
    macro_rules! seed {
        ($pool:expr) => {{
            let pool = $pool;
            v8.run(&pool).await.unwrap();
            for n in [1i64, 2] {
                let q = sqlx::query(attempt).bind("m-1").bind(n).bind(at);
                q.execute(&pool).await.unwrap();
            }
            let q = sqlx::query(content).bind("m-1").bind(&words).bind(at);
            q.execute(&pool).await.unwrap();
            pool.close().await;
        }};
    }
    match &cfg {
        StoreConfig::Sqlite { path, .. } => {
            let pool = sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
            seed!(pool);
        }
        StoreConfig::Postgres { url, .. } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            seed!(pool);
        }
    }
    let store = Store::connect(&cfg).await.unwrap();
    store.migrate().await.unwrap();
    let got = store.message_contents("m-1").await.unwrap();
    assert_eq!(got.len(), 1, "{b:?} ({ddl}): {got:?}");
    assert_eq!(
        (
            got[0].attempt,
            got[0].channel.as_str(),
            got[0].subject.as_deref(),
            got[0].text.as_str()
        ),
        (1, "email", Some("您的订单已送达"), "请为订单 SO-1 写评价"),
        "{b:?}"
    );
    assert_eq!(got[0].at.timestamp_millis(), at, "{b:?}");
    assert!(
        store
            .with_content(&["m-1".into(), "m-2".into()])
            .await
            .unwrap()
            .contains("m-1"),
        "{b:?}"
    );
    let gone =
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'message_contents'";
    let left: i64 = match &cfg {
        StoreConfig::Sqlite { path, .. } => {
            let pool = sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new().filename(path),
            )
            .await
            .unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'message_contents'")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
        StoreConfig::Postgres { url, .. } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query_scalar(gone).fetch_one(&pool).await.unwrap()
        }
    };
    assert_eq!(left, 0, "{b:?}: the old table is dropped");
}

mod sqlite {
    #[tokio::test]
    async fn console_store() {
        super::console_store(super::Backend::Sqlite).await
    }
    #[tokio::test]
    async fn words_move_into_their_attempts() {
        super::words_move_into_their_attempts(super::Backend::Sqlite).await
    }
}

mod postgres {
    #[tokio::test]
    async fn console_store() {
        super::console_store(super::Backend::Postgres).await
    }
    #[tokio::test]
    async fn words_move_into_their_attempts() {
        super::words_move_into_their_attempts(super::Backend::Postgres).await
    }
}
