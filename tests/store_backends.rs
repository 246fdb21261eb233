//! The store on both backends: every test body here is one function run twice, on a real
//! SQLite file and on a real PostgreSQL database (`common::pg` starts the server), so what
//! works on the embedded store is proven to work on the shared one. The `on_both!` list at
//! the bottom makes `sqlite::NAME` and `postgres::NAME` of each.

mod common;

use aftercare::ingest::parse_event;
use aftercare::model::{MessageState, Outcome};
use aftercare::plan::{self, IngestOutcome};
use aftercare::playbook::Playbook;
use aftercare::store::{
    COPY_TABLES, Claimed, Completion, CopyError, CopyOptions, HandAction, LogFilter, NewAttempt,
    Store, StoreError, StoredAnswer,
};
use aftercare::store::{SqliteSync, StoreConfig};
use aftercare::templates::TemplateSet;
use aftercare::values::Secret;
use chrono::{DateTime, Duration, Utc};
use common::{Backend, birthday, delivered, pg, reviewed};
use std::path::Path;
use std::sync::Arc;

/// A store of one backend: a SQLite file in a temporary folder or a fresh PostgreSQL
/// database, connected but not migrated.
struct Fixture {
    cfg: StoreConfig,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn new(b: Backend) -> Fixture {
        match b {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Fixture {
                    cfg: StoreConfig::Sqlite {
                        path: dir.path().join("aftercare.db"),
                        synchronous: SqliteSync::Normal,
                    },
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Fixture {
                cfg: StoreConfig::Postgres {
                    url: pg::fresh_database(),
                    password: Secret::None,
                },
                _dir: None,
            },
        }
    }

    async fn connect(&self) -> Store {
        Store::connect(&self.cfg).await.expect("connect")
    }

    /// Connected and migrated, as after `aftercare migrate`.
    async fn migrated(&self) -> Store {
        let s = self.connect().await;
        s.migrate().await.expect("migrate");
        s
    }

    /// Run one statement on the raw database, around the store (to fake what only another
    /// release or another node would do).
    async fn raw(&self, sql: &'static str, blob: Vec<u8>) {
        match &self.cfg {
            StoreConfig::Sqlite { path, .. } => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query(sql).bind(blob).execute(&pool).await.unwrap();
                pool.close().await;
            }
            StoreConfig::Postgres { url, .. } => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::query(sql).bind(blob).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// Run SQL text (several statements) on the raw database, around the store.
    async fn raw_script(&self, sql: &'static str) {
        match &self.cfg {
            StoreConfig::Sqlite { path, .. } => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            StoreConfig::Postgres { url, .. } => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// Every row of `table` as text, the `columns` of each joined by `|` (NULL as `∅`),
    /// sorted: for comparing what two stores hold.
    async fn rows_of(&self, table: &str, columns: &[&str]) -> Vec<String> {
        let cols: Vec<String> = columns
            .iter()
            .map(|c| format!("coalesce(CAST({c} AS TEXT), '∅')"))
            .collect();
        let sql = format!("SELECT concat_ws('|', {}) FROM {table}", cols.join(", "));
        let mut rows: Vec<String> = match &self.cfg {
            StoreConfig::Sqlite { path, .. } => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                let rows = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                rows
            }
            StoreConfig::Postgres { url, .. } => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let rows = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                rows
            }
        };
        rows.sort();
        rows
    }

    /// Apply the shipped migrations before `version` only, as an older release left the
    /// store (same files, same checksums).
    async fn migrated_before(&self, version: &str) {
        let b = match self.cfg {
            StoreConfig::Sqlite { .. } => Backend::Sqlite,
            StoreConfig::Postgres { .. } => Backend::Postgres,
        };
        let old = common::migrations_before(b, version);
        let m = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
        match &self.cfg {
            StoreConfig::Sqlite { path, .. } => {
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                m.run(&pool).await.unwrap();
                pool.close().await;
            }
            StoreConfig::Postgres { url, .. } => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                m.run(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// Returns once `n` of the database's sessions wait for a lock (PostgreSQL), so a race
    /// a test sets up has begun however slow the host is; SQLite's writers wait inside its
    /// busy handler, which nothing outside shows, so there it gives them 300 ms.
    async fn until_waiting(&self, n: i64) {
        let StoreConfig::Postgres { url, .. } = &self.cfg else {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            return;
        };
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let waiting = std::cell::Cell::new(0_i64);
        let reached = common::until_async(std::time::Duration::from_secs(30), || async {
            waiting.set(
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(&pool)
                .await
                .unwrap(),
            );
            waiting.get() >= n
        })
        .await;
        assert!(
            reached,
            "{} of {n} sessions waited for a lock after 30 s",
            waiting.get()
        );
        pool.close().await;
    }

    /// PostgreSQL: a transaction of another connection that has run `sql` and stays open
    /// (another node caught mid-way), with its pool; `None` on SQLite, whose writers take
    /// turns.
    async fn held(
        &self,
        sql: &'static str,
    ) -> Option<(sqlx::PgPool, sqlx::Transaction<'static, sqlx::Postgres>)> {
        let StoreConfig::Postgres { url, .. } = &self.cfg else {
            return None;
        };
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
        Some((pool, tx))
    }
}

/// A fresh migrated store of `b`, with its fixture (which keeps a SQLite folder alive).
async fn store(b: Backend) -> (Store, Fixture) {
    let f = Fixture::new(b);
    (f.migrated().await, f)
}

fn playbook() -> Playbook {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (templates, _) = TemplateSet::load(&root.join("message_templates"), "zh-CN");
    let (jobs, diags) = aftercare::jobs::load(&root.join("jobs"), &templates, None);
    assert!(!diags.has_errors(), "{diags}");
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

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const NOW: &str = "2026-11-20T12:00:00Z";

async fn ingest(store: &Store, lines: &[String]) -> Vec<IngestOutcome> {
    let batch: Vec<_> = lines.iter().map(|l| parse_event(l).unwrap()).collect();
    plan::ingest(&playbook(), store, &batch, t(NOW))
        .await
        .unwrap()
}

/// `n` deliveries for contacts c-0.. (orders SO-0..), the i-th delivered i hours after
/// 2026-11-20T00:00Z, so the first messages fall due from 2026-11-23T00:00Z an hour apart.
async fn deliveries(store: &Store, n: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let at = (t("2026-11-20T00:00:00Z") + Duration::hours(i as i64)).to_rfc3339();
            delivered(
                &format!("evt-{i}"),
                &format!("c-{i}"),
                &format!("c{i}@example.com"),
                &format!("SO-{i}"),
                &at,
            )
        })
        .collect();
    for o in ingest(store, &lines).await {
        assert!(
            matches!(o, IngestOutcome::Accepted { planned: 1, .. }),
            "{o:?}"
        );
    }
}

async fn log(store: &Store, f: LogFilter) -> Vec<aftercare::model::MessageRecord> {
    store.find_messages(&f).await.unwrap()
}

async fn all(store: &Store) -> Vec<aftercare::model::MessageRecord> {
    let every = LogFilter {
        limit: 100_000,
        ..LogFilter::default()
    };
    log(store, every).await
}

fn state_of(records: &[aftercare::model::MessageRecord], order: &str) -> MessageState {
    records
        .iter()
        .find(|m| m.order_id.as_deref() == Some(order))
        .unwrap_or_else(|| panic!("no message for {order}"))
        .state
}

async fn claim(store: &Store, token: &str, now: &str, limit: i64) -> Vec<Claimed> {
    let now = t(now);
    store
        .claim(
            "node-a",
            token,
            now,
            now + Duration::minutes(5),
            limit,
            &aftercare::store::ClaimWith {
                stop_types: vec!["review.submitted".to_string()],
                sends_since: None,
            },
        )
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------

async fn ingest_stores_once_and_stop_when_cancels(b: Backend) {
    let (store, _f) = store(b).await;
    let d1 = delivered(
        "e-1",
        "c-1",
        "a@example.com",
        "SO-1",
        "2026-11-20T10:00:00+08:00",
    );
    let d2 = delivered(
        "e-2",
        "c-1",
        "a@example.com",
        "SO-2",
        "2026-11-20T11:00:00+08:00",
    );
    let out = ingest(&store, &[d1.clone(), d2, d1.clone()]).await;
    assert_eq!(
        out,
        vec![
            IngestOutcome::Accepted {
                planned: 1,
                already_planned: 0,
                stopped: 0
            },
            IngestOutcome::Accepted {
                planned: 1,
                already_planned: 0,
                stopped: 0
            },
            IngestOutcome::Duplicate { same: true },
        ]
    );
    // Again in a later batch, and a reused id with other content.
    let reused = delivered(
        "e-1",
        "c-1",
        "a@example.com",
        "SO-9",
        "2026-11-20T10:00:00+08:00",
    );
    assert_eq!(
        ingest(&store, &[d1, reused]).await,
        vec![
            IngestOutcome::Duplicate { same: true },
            IngestOutcome::Duplicate { same: false }
        ]
    );
    // Another event for the same order: the dedupe key holds, nothing new.
    let again = delivered(
        "e-3",
        "c-1",
        "a@example.com",
        "SO-1",
        "2026-11-21T10:00:00+08:00",
    );
    assert_eq!(
        ingest(&store, &[again]).await,
        vec![IngestOutcome::Accepted {
            planned: 0,
            already_planned: 1,
            stopped: 0
        }]
    );

    // The review of SO-1 stops SO-1's request, not SO-2's.
    let review = reviewed("r-1", "c-1", "SO-1", "2026-11-21T12:00:00+08:00");
    assert_eq!(
        ingest(&store, &[review]).await,
        vec![IngestOutcome::Accepted {
            planned: 0,
            already_planned: 0,
            stopped: 1
        }]
    );
    let msgs = all(&store).await;
    assert_eq!(msgs.len(), 2);
    assert_eq!(state_of(&msgs, "SO-1"), MessageState::Cancelled);
    let so1 = msgs.iter().find(|m| m.order_id.as_deref() == Some("SO-1"));
    assert_eq!(
        so1.unwrap().reason.as_deref(),
        Some("stopped: review.submitted received for order_id=SO-1 (event r-1)")
    );
    assert_eq!(state_of(&msgs, "SO-2"), MessageState::Scheduled);
    assert_eq!(msgs[0].due_at, t("2026-11-23T02:00:00Z"));

    // A delivery imported after its own review is planned as cancelled, with the reason.
    let review3 = reviewed("r-3", "c-1", "SO-3", "2026-11-21T12:00:00+08:00");
    let late = delivered(
        "e-4",
        "c-1",
        "a@example.com",
        "SO-3",
        "2026-11-20T10:00:00+08:00",
    );
    ingest(&store, &[review3, late]).await;
    let msgs = all(&store).await;
    assert_eq!(state_of(&msgs, "SO-3"), MessageState::Cancelled);

    // The contact is stored once, updated by later events.
    let c2 = delivered(
        "e-5",
        "c-1",
        "new@example.com",
        "SO-5",
        "2026-11-20T10:00:00+08:00",
    );
    ingest(&store, &[c2]).await;
    let m = log(
        &store,
        LogFilter {
            contact: Some("new@example.com".into()),
            ..LogFilter::default()
        },
    )
    .await;
    assert_eq!(m.len(), 4, "every message of c-1, found by its new address");
    common::assert_queue_whole(&store).await;
    store.close().await;
}

/// `n` deliveries of other contacts (x-0.., orders SX-0..): beside a test's own events they
/// make a batch of `n` more rows, written in several statements (SQLite's own writes take
/// 16 rows a statement; sqlx's on PostgreSQL, the sizes of `shaped`).
fn padding(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            delivered(
                &format!("x-{i}"),
                &format!("x-{i}"),
                &format!("x{i}@example.com"),
                &format!("SX-{i}"),
                "2026-11-20T10:00:00+08:00",
            )
        })
        .collect()
}

/// The batch sizes a write test runs with: a few rows, and many statements' worth.
const PADDINGS: [usize; 2] = [0, BIG_BATCH];

/// Rows enough for many full statements and a part-filled last one on either backend.
const BIG_BATCH: usize = 300;

/// One insert statement holding new messages and already planned ones reports each exactly:
/// the insert returns no rows, and a short count looks up which went in.
async fn a_batch_of_new_and_planned_messages_counts_each(b: Backend) {
    for pad in PADDINGS {
        let (store, _f) = store(b).await;
        let d = |id: &str, order: &str| {
            delivered(
                id,
                "c-1",
                "a@example.com",
                order,
                "2026-11-20T10:00:00+08:00",
            )
        };
        ingest(&store, &[d("e-1", "SO-1"), d("e-2", "SO-2")]).await;
        let mut batch = padding(pad);
        // In the middle of the batch, so that statements before it and after it went in whole.
        let mine = [
            d("e-3", "SO-3"),
            d("e-4", "SO-1"),
            d("e-5", "SO-4"),
            d("e-6", "SO-2"),
        ];
        let at = pad / 2;
        batch.splice(at..at, mine);
        let out = ingest(&store, &batch).await;
        let counts: Vec<(usize, usize)> = out
            .iter()
            .map(|o| match o {
                IngestOutcome::Accepted {
                    planned,
                    already_planned,
                    ..
                } => (*planned, *already_planned),
                other => panic!("{other:?}"),
            })
            .collect();
        let mut expected = vec![(1, 0); pad];
        expected.splice(at..at, [(1, 0), (0, 1), (1, 0), (0, 1)]);
        assert_eq!(counts, expected, "{b:?}, {pad} more");
        assert_eq!(all(&store).await.len(), 4 + pad, "{b:?}, {pad} more");
        store.close().await;
    }
}

/// A statement that fails part-way leaves nothing of its batch: SQLite's multi-row inserts
/// run `OR FAIL` (the rows before the failing one stay in the transaction, to save the
/// statement journal), which is safe only because every writer rolls the whole transaction
/// back on an error. A trigger fails one message of an insert statement, after the batch's
/// events and contacts went in (and, in the bigger batch, after statements before it).
async fn a_statement_failing_part_way_leaves_nothing_of_the_batch(b: Backend) {
    for pad in PADDINGS {
        let (store, f) = store(b).await;
        f.raw_script(match b {
            Backend::Sqlite => {
                "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.dedupe_key = 'SO-BOOM' \
                 BEGIN SELECT RAISE(FAIL, 'boom'); END"
            }
            Backend::Postgres => {
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.dedupe_key = 'SO-BOOM' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$; \
                 CREATE TRIGGER boom BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION boom()"
            }
        })
        .await;
        let d = |id: &str, contact: &str, order: &str| {
            delivered(
                id,
                contact,
                &format!("{contact}@example.com"),
                order,
                "2026-11-20T10:00:00+08:00",
            )
        };
        let mut lines = padding(pad);
        let at = pad * 3 / 4;
        lines.splice(
            at..at,
            [d("e-1", "c-1", "SO-1"), d("e-2", "c-2", "SO-BOOM")],
        );
        let batch: Vec<_> = lines.iter().map(|l| parse_event(l).unwrap()).collect();
        let failed = plan::ingest(&playbook(), &store, &batch, t(NOW)).await;
        let e = failed.expect_err("the trigger fails the batch");
        assert!(e.to_string().contains("boom"), "{b:?}, {pad} more: {e}");
        assert!(all(&store).await.is_empty(), "{b:?}, {pad} more");
        // Neither event nor its contact was kept: both come in again as new.
        let again = ingest(&store, &[d("e-1", "c-1", "SO-1"), d("e-2", "c-2", "SO-2")]).await;
        for o in &again {
            assert!(
                matches!(o, IngestOutcome::Accepted { planned: 1, .. }),
                "{again:?}"
            );
        }
        let msgs = all(&store).await;
        assert_eq!(msgs.len(), 2);
        assert!(
            msgs.iter()
                .all(|m| m.contact_id != "c-2" || m.order_id.as_deref() == Some("SO-2"))
        );
        store.close().await;
    }
}

/// A batch of many statements stores what the same events store in batches of 7, a
/// statement each: every column an ingest writes but the messages' random ids and tokens.
/// Contacts come twice (the second time with other fields, an update of a stored row when
/// batches are small, of one written earlier in the same batch when not), with a birthday
/// or a date attribute, a phone number or none.
async fn a_big_batch_stores_what_small_batches_store(b: Backend) {
    let n = BIG_BATCH;
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let c = i % (n / 2);
            let mut contact = serde_json::json!({"id": format!("c-{c}"),
                "email": format!("C{c}@Example.com"), "locale": "zh-CN"});
            if i >= n / 2 {
                contact["name"] = format!("名{i}").into();
                contact["attributes"] = serde_json::json!({"tier": i % 3, "since": "2020-02-29"});
            }
            if c.is_multiple_of(3) {
                contact["birthday"] = format!("19{:02}-0{}-1{}", c % 100, 1 + c % 9, c % 10).into();
            }
            if c.is_multiple_of(4) {
                contact["phone"] = format!("+86138{c:08}").into();
            }
            serde_json::json!({"id": format!("e-{i}"), "type": "order.delivered",
                "occurred_at": format!("2026-11-20T{:02}:00:00+08:00", i % 24),
                "contact": contact, "data": {"order_id": format!("SO-{i}"), "n": i}})
            .to_string()
        })
        .collect();
    let (one, f1) = store(b).await;
    ingest(&one, &lines).await;
    let (many, f2) = store(b).await;
    for chunk in lines.chunks(7) {
        ingest(&many, chunk).await;
    }
    let tables: [(&str, &[&str]); 4] = [
        (
            "events",
            &[
                "id",
                "type",
                "contact_id",
                "occurred_at",
                "occurred_offset",
                "received_at",
                "order_id",
                "data",
                "digest",
            ],
        ),
        (
            "contacts",
            &[
                "id",
                "name",
                "email",
                "email_key",
                "phone",
                "locale",
                "timezone",
                "birthday",
                "attributes",
                "consent",
                "created_at",
                "updated_at",
                "fields_at",
            ],
        ),
        (
            "contact_dates",
            &["contact_id", "field", "month_day", "date"],
        ),
        (
            "messages",
            &[
                "job_id",
                "contact_id",
                "event_id",
                "step",
                "dedupe_key",
                "template",
                "state",
                "due_at",
                "not_after",
                "reason",
                "created_at",
                "updated_at",
                "class",
                "channel_plan",
                "variant",
                "token IS NULL",
            ],
        ),
    ];
    for (table, columns) in tables {
        let (a, z) = (
            f1.rows_of(table, columns).await,
            f2.rows_of(table, columns).await,
        );
        assert!(!a.is_empty(), "{b:?}: no {table}");
        assert_eq!(a, z, "{b:?}: {table}");
    }
    // A birthday for every third contact, the date attribute for every one.
    assert_eq!(
        f1.rows_of("contact_dates", &["field"]).await.len(),
        (0..n / 2).filter(|c| c.is_multiple_of(3)).count() + n / 2,
    );
    one.close().await;
    many.close().await;
}

/// The same for a batch of completions: the messages' update fails at the third row, after
/// the first two were changed; none of the three is completed and no attempt is logged.
async fn a_completion_failing_part_way_leaves_nothing_of_the_batch(b: Backend) {
    let (store, f) = store(b).await;
    deliveries(&store, 3).await;
    let claimed = claim(&store, "tok", "2026-12-31T00:00:00Z", 10).await;
    assert_eq!(claimed.len(), 3);
    f.raw_script(match b {
        Backend::Sqlite => {
            "CREATE TRIGGER boom BEFORE UPDATE ON messages \
             WHEN NEW.state = 'sent' AND OLD.dedupe_key = 'SO-2' \
             BEGIN SELECT RAISE(FAIL, 'boom'); END"
        }
        Backend::Postgres => {
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.state = 'sent' AND OLD.dedupe_key = 'SO-2' THEN RAISE EXCEPTION 'boom'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER boom BEFORE UPDATE ON messages FOR EACH ROW EXECUTE FUNCTION boom()"
        }
    })
    .await;
    let now = t("2026-12-31T00:00:00Z");
    let mut batch: Vec<Completion> = claimed
        .iter()
        .map(|m| sent(&m.id, &m.claim_token, now))
        .collect();
    // The failing row last, so the rows before it were changed when it fails.
    batch.sort_by_key(|c| {
        claimed
            .iter()
            .find(|m| m.id == c.message_id)
            .map(|m| m.dedupe_key == "SO-2")
    });
    let failed = store.complete(&batch).await;
    assert!(failed.is_err(), "{failed:?}");
    let msgs = all(&store).await;
    assert_eq!(msgs.len(), 3);
    for m in &msgs {
        assert_eq!(m.state, MessageState::Claimed, "{m:?}");
        assert!(m.attempt_log.is_empty(), "{m:?}");
    }
    common::assert_queue_whole(&store).await;
    store.close().await;
}

async fn claim_takes_due_batches_under_a_lease(b: Backend) {
    let (store, _f) = store(b).await;
    deliveries(&store, 5).await;
    ingest(
        &store,
        &[reviewed("r-0", "c-0", "SO-0", "2026-11-21T00:00:00Z")],
    )
    .await;
    // SO-0 was cancelled by its review; SO-1..4 fall due at 01:00, 02:00, 03:00, 04:00.
    assert!(
        claim(&store, "tok-0", "2026-11-23T00:59:59Z", 10)
            .await
            .is_empty()
    );

    let first = claim(&store, "tok-1", "2026-11-23T03:30:00Z", 2).await;
    let ids: Vec<&str> = first.iter().map(|c| c.dedupe_key.as_str()).collect();
    assert_eq!(ids, ["SO-1", "SO-2"], "oldest due first, at most the limit");
    let c = &first[0];
    assert_eq!(c.claim_token, "tok-1");
    assert_eq!(c.step, 0);
    assert_eq!(c.attempts, 0);
    assert_eq!(c.template, "review_request");
    assert_eq!(c.due_at, t("2026-11-23T01:00:00Z"));
    assert_eq!(c.contact.email.as_deref(), Some("c1@example.com"));
    assert_eq!(c.contact.name.as_deref(), Some("王芳"));
    let e = c.event.as_ref().expect("the trigger event");
    assert_eq!(e.id, "evt-1");
    assert_eq!(e.occurred_at.to_rfc3339(), "2026-11-20T01:00:00+00:00");
    assert_eq!(e.data["order_id"], "SO-1");
    assert!(c.stop_events.is_empty());

    // The next claim takes what is left and due, not what is claimed.
    let second = claim(&store, "tok-2", "2026-11-23T03:30:00Z", 10).await;
    let ids: Vec<&str> = second.iter().map(|c| c.dedupe_key.as_str()).collect();
    assert_eq!(ids, ["SO-3"]);
    let claimed = log(
        &store,
        LogFilter {
            states: vec![MessageState::Claimed],
            ..LogFilter::default()
        },
    )
    .await;
    assert_eq!(claimed.len(), 3);

    // Leases: nothing is reaped before they end; after, the messages are due again.
    let reap = |at: &str| store.reap(t(at), "node-b", 8);
    assert_eq!(reap("2026-11-23T03:35:00Z").await.unwrap().len(), 0);
    assert_eq!(reap("2026-11-23T03:35:01Z").await.unwrap().len(), 3);
    let again = claim(&store, "tok-3", "2026-11-23T04:00:00Z", 10).await;
    let ids: Vec<&str> = again.iter().map(|c| c.dedupe_key.as_str()).collect();
    assert_eq!(ids, ["SO-1", "SO-2", "SO-3", "SO-4"]);

    // The contact's stop events come with the claim: a review for another order of c-5.
    deliveries_of_c5(&store).await;
    let stops = claim(&store, "tok-4", "2026-11-30T00:00:00Z", 10).await;
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].stop_events.len(), 1);
    assert_eq!(stops[0].stop_events[0].kind, "review.submitted");
    assert_eq!(stops[0].stop_events[0].data["order_id"], "SO-OTHER");
    common::assert_queue_whole(&store).await;
    store.close().await;
}

async fn deliveries_of_c5(store: &Store) {
    ingest(
        store,
        &[
            delivered(
                "e-c5",
                "c-5",
                "c5@example.com",
                "SO-C5",
                "2026-11-24T00:00:00Z",
            ),
            reviewed("r-c5", "c-5", "SO-OTHER", "2026-11-24T00:00:00Z"),
        ],
    )
    .await;
}

async fn concurrent_claims_never_share_a_message(b: Backend) {
    let (store, _f) = store(b).await;
    deliveries(&store, 40).await;
    let now = "2026-12-31T00:00:00Z";
    let (a, c) = tokio::join!(
        claim(&store, "tok-a", now, 25),
        claim(&store, "tok-b", now, 25)
    );
    let mut ids: Vec<String> = a.iter().chain(&c).map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), 40, "{} + {}", a.len(), c.len());
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "a message was claimed twice");
    common::assert_queue_whole(&store).await;
    store.close().await;
}

/// A heartbeat keeps a live node's leases; the reaper returns an expired one as an attempt
/// that may have been sent, fails the message at its last attempt, and a completion under
/// the lost lease no longer applies (nor writes a second attempt of the same number).
async fn leases_renew_and_reaped_claims_count_an_attempt(b: Backend) {
    let (store, _f) = store(b).await;
    deliveries(&store, 6).await;
    let now = t("2026-12-31T00:00:00Z");
    let a = claim(&store, "tok-a", "2026-12-31T00:00:00Z", 3).await;
    let b_ = claim(&store, "tok-b", "2026-12-31T00:00:00Z", 3).await;
    assert_eq!((a.len(), b_.len()), (3, 3));

    let kept = store
        .renew(
            &["tok-a".to_string(), "tok-gone".to_string()],
            now + Duration::minutes(10),
        )
        .await
        .unwrap();
    assert_eq!(kept.into_iter().collect::<Vec<_>>(), ["tok-a"]);

    // tok-b's lease (5 minutes) ends; tok-a's was renewed to 10.
    let reaped = store
        .reap(now + Duration::minutes(6), "node-b", 2)
        .await
        .unwrap();
    let mut ids: Vec<&str> = reaped.iter().map(|r| r.message_id.as_str()).collect();
    ids.sort();
    let mut want: Vec<&str> = b_.iter().map(|m| m.id.as_str()).collect();
    want.sort();
    assert_eq!(ids, want);
    assert!(
        reaped
            .iter()
            .all(|r| r.attempt == 1 && r.node == "node-a" && r.state == MessageState::Retrying)
    );
    let msgs = all(&store).await;
    for m in msgs.iter().filter(|m| want.contains(&m.id.as_str())) {
        assert_eq!((m.state, m.attempts), (MessageState::Retrying, 1));
        assert!(
            m.reason
                .as_deref()
                .unwrap()
                .contains("lease expired on node node-a"),
            "{:?}",
            m.reason
        );
        let at = &m.attempt_log[..];
        assert_eq!(at.len(), 1);
        assert_eq!((at[0].attempt, at[0].outcome.as_str()), (1, "transient"));
        assert_eq!(at[0].node.as_deref(), Some("node-a"));
        let d = at[0].detail.as_deref().unwrap();
        assert!(
            d.contains("lease expired on node node-a") && d.contains("may have been sent"),
            "{d}"
        );
        assert!(d.contains("node-b"), "names the reaper: {d}");
    }

    // The dead node's completion arrives late: stale, and no second attempt 1.
    let late = sent(&b_[0].id, "tok-b", now);
    assert_eq!(store.complete(&[late]).await.unwrap(), 1);

    // Claimed again and lost again: the second expiry is the last of 2 attempts.
    let c = claim(&store, "tok-c", "2026-12-31T00:07:00Z", 10).await;
    assert_eq!(c.len(), 3, "the reaped ones, not tok-a's");
    assert!(c.iter().all(|m| m.attempts == 1));
    let reaped = store
        .reap(now + Duration::minutes(13), "node-b", 2)
        .await
        .unwrap();
    assert_eq!(reaped.len(), 6, "tok-a's and tok-c's");
    let msgs = all(&store).await;
    for m in &msgs {
        if want.contains(&m.id.as_str()) {
            assert_eq!((m.state, m.attempts), (MessageState::Failed, 2));
            assert!(
                m.reason
                    .as_deref()
                    .unwrap()
                    .starts_with("gave up after 2 attempts")
            );
            let numbers: Vec<i64> = m.attempt_log.iter().map(|a| a.attempt).collect();
            assert_eq!(numbers, [1, 2]);
        } else if a.iter().any(|x| x.id == m.id) {
            assert_eq!((m.state, m.attempts), (MessageState::Retrying, 1));
        }
    }
    assert!(
        store
            .reap(now + Duration::hours(1), "node-b", 2)
            .await
            .unwrap()
            .is_empty()
    );
    common::assert_queue_whole(&store).await;
    store.close().await;
}

/// Two nodes reaping at once (two connection pools) return each expired claim once: one
/// attempt row each, no primary-key clash, no claim left behind.
async fn two_reapers_take_each_expired_claim_once(b: Backend) {
    let (store, f) = store(b).await;
    let other = f.connect().await;
    deliveries(&store, 700).await;
    let claimed = claim(&store, "tok", "2026-12-31T00:00:00Z", 1000).await;
    assert_eq!(claimed.len(), 700);
    let later = t("2026-12-31T01:00:00Z");
    let (x, y) = tokio::join!(
        store.reap(later, "node-x", 8),
        other.reap(later, "node-y", 8)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut ids: Vec<&str> = x.iter().chain(&y).map(|r| r.message_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 700, "{} + {}", x.len(), y.len());
    assert_eq!(x.len() + y.len(), 700, "a claim was reaped twice");
    let msgs = all(&store).await;
    assert!(
        msgs.iter().all(|m| m.state == MessageState::Retrying
            && m.attempts == 1
            && m.attempt_log.len() == 1)
    );
    common::assert_queue_whole(&store).await;
    other.close().await;
    store.close().await;
}

/// The completion of a message sent by email on its first attempt, under claim `token`.
fn sent(message_id: &str, token: &str, at: DateTime<Utc>) -> Completion {
    Completion {
        message_id: message_id.into(),
        claim_token: token.into(),
        state: MessageState::Sent,
        attempts: vec![attempt(1, at, Outcome::Sent, Some(250))],
        retry_at: None,
        reason: None,
        channel: Some("email".into()),
        address: Some("x@example.com".into()),
        at,
        next: None,
        uncounted: false,
    }
}

fn attempt(n: i64, at: DateTime<Utc>, outcome: Outcome, code: Option<i64>) -> NewAttempt {
    NewAttempt {
        number: n,
        at,
        channel: "email".into(),
        address: Some("x@example.com".into()),
        outcome,
        code,
        detail: Some(format!("{outcome:?}")),
        provider_id: (outcome == Outcome::Sent).then(|| "<id@example.com>".to_string()),
        node: "node-a".into(),
        duration_ms: 12,
        gateway: None,
        content: None,
    }
}

/// The stop events of one batch, of several contacts, each cancel their own contact's
/// request for their own order: the messages they stop are read for the whole batch at
/// once, and cancelled together. A second review of one order stops nothing more, and a
/// review by a contact that was never stored stops nothing.
async fn a_batch_of_stop_events_cancels_each_its_own_contacts_request(b: Backend) {
    let (store, _f) = store(b).await;
    deliveries(&store, 4).await;
    let at = "2026-11-21T00:00:00Z";
    let other_order = delivered("evt-0b", "c-0", "c0@example.com", "SO-0b", at);
    ingest(&store, &[other_order]).await;
    let outcomes = ingest(
        &store,
        &[
            reviewed("r-0", "c-0", "SO-0", at),
            reviewed("r-2", "c-2", "SO-2", at),
            reviewed("r-0-again", "c-0", "SO-0", at),
            // c-1's order, reviewed by another contact: not c-1's review.
            reviewed("r-x", "c-3", "SO-1", at),
            reviewed("r-9", "c-9", "SO-9", at),
        ],
    )
    .await;
    let stopped: Vec<usize> = outcomes
        .iter()
        .map(|o| match o {
            IngestOutcome::Accepted { stopped, .. } => *stopped,
            other => panic!("{b:?}: {other:?}"),
        })
        .collect();
    assert_eq!(stopped, [1, 1, 0, 0, 0], "{b:?}");
    let records = all(&store).await;
    assert_eq!(records.len(), 5, "{b:?}");
    for (order, state) in [
        ("SO-0", MessageState::Cancelled),
        ("SO-0b", MessageState::Scheduled),
        ("SO-1", MessageState::Scheduled),
        ("SO-2", MessageState::Cancelled),
        ("SO-3", MessageState::Scheduled),
    ] {
        assert_eq!(state_of(&records, order), state, "{b:?}: {order}");
    }
    let reason = |order: &str| {
        records
            .iter()
            .find(|m| m.order_id.as_deref() == Some(order))
            .and_then(|m| m.reason.clone())
    };
    assert_eq!(
        reason("SO-2").as_deref(),
        Some("stopped: review.submitted received for order_id=SO-2 (event r-2)"),
        "{b:?}"
    );
    assert_eq!(
        reason("SO-0").as_deref(),
        Some("stopped: review.submitted received for order_id=SO-0 (event r-0)"),
        "{b:?}"
    );
    store.close().await;
}

/// A stop event that arrives while its message is being sent leaves the message to its
/// send. It used to cancel the claimed row (`CANCEL` took `claimed`): the email went out,
/// the completion found no claimed row and was dropped with its attempt, and the log said
/// "cancelled" with nothing tried. The next message of the thread meets the stop event at
/// the gate, as every later one does. The ingest's answer counts it as stopped no more.
async fn a_stop_event_leaves_a_message_in_flight_to_its_send(b: Backend) {
    let (store, f) = store(b).await;
    deliveries(&store, 1).await;
    // The review changes the contact's name, so the ingest writes the contact row.
    let review = serde_json::json!({
        "id": "rv-0", "type": "review.submitted", "occurred_at": "2026-11-23T00:00:01Z",
        "contact": {"id": "c-0", "name": "Ann"}, "data": {"order_id": "SO-0", "rating": 5}
    })
    .to_string();
    let claimed = if b == Backend::Postgres {
        // The ingest reads the message as scheduled, then waits on the contact row another
        // transaction holds; meanwhile a dispatcher claims the message; then the ingest
        // goes on to its cancel. (SQLite's writers take turns: no such interleaving.)
        let mut other = store.begin().await.unwrap();
        let c0 = aftercare::model::StoredContact {
            contact: aftercare::model::Contact {
                id: "c-0".into(),
                email: Some("c0@example.com".into()),
                ..Default::default()
            },
            fields_at: None,
        };
        other
            .upsert_contacts(&[&c0], &Default::default(), t(NOW))
            .await
            .unwrap();
        let racing = {
            let store = store.clone();
            tokio::spawn(async move { ingest(&store, &[review]).await })
        };
        f.until_waiting(1).await;
        let claimed = claim(&store, "tok", "2026-11-23T00:00:00Z", 10).await;
        other.commit().await.unwrap();
        let outcome = racing.await.unwrap();
        (claimed, outcome)
    } else {
        let claimed = claim(&store, "tok", "2026-11-23T00:00:00Z", 10).await;
        let outcome = ingest(&store, &[review]).await;
        (claimed, outcome)
    };
    let (claimed, outcome) = claimed;
    assert_eq!(claimed.len(), 1);
    // The review stopped nothing: the one message was already being sent.
    assert!(
        matches!(outcome[..], [IngestOutcome::Accepted { stopped: 0, .. }]),
        "{b:?}: {outcome:?}"
    );
    let at = t("2026-11-23T00:00:02Z");
    let stale = store
        .complete(&[sent(&claimed[0].id, "tok", at)])
        .await
        .unwrap();
    assert_eq!(stale, 0, "{b:?}: the send is recorded");
    let m = all(&store).await;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].state, MessageState::Sent, "{:?}", m[0]);
    assert_eq!(m[0].attempt_log.len(), 1);
    store.close().await;
}

/// Two ingests of one contact at once, on two nodes: one says the customer withdrew consent,
/// the other brings an attribute. The second used to read the contact before the first
/// committed and write its whole row after, so consent came back (a lost update); now each
/// ingest holds its contacts from before it reads them until it commits. (SQLite's writers
/// take turns.)
async fn two_ingests_of_one_contact_keep_both_changes(b: Backend) {
    let (store, f) = store(b).await;
    let event = |id: &str, contact: serde_json::Value| {
        serde_json::json!({"id": id, "type": "contact.updated", "occurred_at": "2026-11-20T00:00:00Z",
                           "contact": contact, "data": {}})
        .to_string()
    };
    ingest(
        &store,
        &[event(
            "u0",
            serde_json::json!({"id": "c-1", "email": "c1@example.com", "consent": {"email": true}}),
        )],
    )
    .await;
    let withdraw = parse_event(&event(
        "u1",
        serde_json::json!({"id": "c-1", "consent": {"email": false}}),
    ))
    .unwrap();
    let gold = event(
        "u2",
        serde_json::json!({"id": "c-1", "attributes": {"tier": "gold"}}),
    );
    let mut first = store.begin().await.unwrap();
    plan::ingest_in(&playbook(), &mut first, &[withdraw], &[1], t(NOW))
        .await
        .unwrap();
    let second = {
        let store = store.clone();
        tokio::spawn(async move { ingest(&store, &[gold]).await })
    };
    if b == Backend::Postgres {
        f.until_waiting(1).await;
    }
    first.commit().await.unwrap();
    second.await.unwrap();
    let c = store.contact("c-1").await.unwrap().unwrap();
    assert_eq!(
        c.consent.get("email"),
        Some(&serde_json::json!(false)),
        "{b:?}: {c:?}"
    );
    assert_eq!(
        c.attributes.get("tier"),
        Some(&serde_json::json!("gold")),
        "{b:?}: {c:?}"
    );
    store.close().await;
}

/// The daily figures read the kept counts and the live messages in one snapshot. A purge
/// (or an erasure) that moves a message into the kept counts between the two reads was
/// counted by neither: PostgreSQL's second read, blocked here until the move commits,
/// saw the message gone and the kept count it had read already without it. (SQLite's
/// readers are never blocked: its deferred transaction is the same snapshot.)
async fn the_daily_figures_read_one_snapshot(b: Backend) {
    let f = Fixture::new(b);
    let store = f.migrated().await;
    deliveries(&store, 1).await;
    let claimed = claim(&store, "tok", "2026-11-23T00:00:00Z", 10).await;
    let at = t("2026-11-23T00:00:02Z");
    assert_eq!(
        store
            .complete(&[sent(&claimed[0].id, "tok", at)])
            .await
            .unwrap(),
        0
    );
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let sent_that_day = |counts: &[aftercare::store::DailyCount]| -> i64 {
        counts
            .iter()
            .filter(|c| c.outcome == "sent")
            .map(|c| c.n)
            .sum()
    };
    assert_eq!(
        sent_that_day(&store.daily_counts(None, day, day).await.unwrap()),
        1
    );
    let Some((pool, mut mover)) = f.held("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE").await
    else {
        store.close().await;
        return;
    };
    let report = {
        let store = store.clone();
        tokio::spawn(async move { store.daily_counts(None, day, day).await.unwrap() })
    };
    f.until_waiting(1).await;
    sqlx::raw_sql(
        "INSERT INTO daily_counts (id, day, job_id, step, variant, channel, outcome, n) \
         VALUES ('moved', '2026-11-23', 'review-request', 0, NULL, 'email', 'sent', 1); \
         DELETE FROM attempts; DELETE FROM messages;",
    )
    .execute(&mut *mover)
    .await
    .unwrap();
    mover.commit().await.unwrap();
    assert_eq!(
        sent_that_day(&report.await.unwrap()),
        1,
        "read while it moved"
    );
    assert_eq!(
        sent_that_day(&store.daily_counts(None, day, day).await.unwrap()),
        1,
        "read after"
    );
    pool.close().await;
    store.close().await;
}

/// Two soft bounces of one address at once: each counted the address's earlier ones
/// without the other, so the third of three within the window suppressed nothing. Here the
/// two are held at their insert (the table locked against writes) after counting; on
/// PostgreSQL a report now holds its address first, so the second counts the first.
async fn two_soft_bounces_at_once_reach_the_threshold(b: Backend) {
    let f = Fixture::new(b);
    let store = f.migrated().await;
    let at = t("2026-11-23T00:00:00Z");
    let soft_report = |n: i64| {
        let mut r = report("soft", "full@example.org", None, at + Duration::minutes(n));
        r.id = format!("b-soft-{n}");
        r.report_id = Some(format!("r-soft-{n}"));
        r
    };
    store.record_bounce(&soft_report(0), soft()).await.unwrap();
    let held = f.held("LOCK TABLE bounces IN SHARE MODE").await;
    let both: Vec<_> = (1..=2)
        .map(|n| {
            let store = store.clone();
            let r = soft_report(n);
            tokio::spawn(async move { store.record_bounce(&r, soft()).await.unwrap() })
        })
        .collect();
    let pool = match held {
        Some((pool, tx)) => {
            f.until_waiting(2).await;
            tx.commit().await.unwrap();
            Some(pool)
        }
        None => None,
    };
    for h in both {
        h.await.unwrap();
    }
    let s = store.suppressions(Some("email")).await.unwrap();
    assert!(
        s.iter().any(|x| x.address == "full@example.org"),
        "{b:?}: three soft bounces within the window: {s:?}"
    );
    if let Some(p) = pool {
        p.close().await;
    }
    store.close().await;
}

/// Two marketing messages to one contact, due together, claimed by two nodes: each node's
/// gate saw no send and both passed a cap of one. A claim that reads sends (there are
/// caps) now also reads the contact's messages other nodes have claimed, and on PostgreSQL
/// claims of one contact take turns, so of two at once the second sees the first's.
async fn a_claim_sees_what_another_node_is_sending_the_contact(b: Backend) {
    let f = Fixture::new(b);
    let store = f.migrated().await;
    let at = "2026-11-20T00:00:00Z";
    ingest(
        &store,
        &[
            delivered("e-1", "c-0", "c0@example.com", "SO-1", at),
            delivered("e-2", "c-0", "c0@example.com", "SO-2", at),
        ],
    )
    .await;
    let now = t("2026-11-23T00:00:00Z");
    let claim_on = |node: &'static str, token: &'static str, limit: i64| {
        let store = store.clone();
        async move {
            store
                .claim(
                    node,
                    token,
                    now,
                    now + Duration::minutes(5),
                    limit,
                    &aftercare::store::ClaimWith {
                        stop_types: vec![],
                        sends_since: Some(now - Duration::days(1)),
                    },
                )
                .await
                .unwrap()
        }
    };
    // Node A's claim, caught before its commit (PostgreSQL): it holds the contact and has
    // claimed the first message.
    let node_a = f
        .held(
            "SELECT pg_advisory_xact_lock(hashtextextended('c-0', 13)); \
             UPDATE messages SET state = 'claimed', claim_token = 'ta', locked_by = 'node-a', locked_until = 0 \
             WHERE id = (SELECT MIN(id) FROM messages)",
        )
        .await;
    let b_claimed = if let Some((pool, a)) = node_a {
        let b_claim = tokio::spawn(claim_on("node-b", "tb", 10));
        f.until_waiting(1).await;
        a.commit().await.unwrap();
        let got = b_claim.await.unwrap();
        pool.close().await;
        got
    } else {
        assert_eq!(claim_on("node-a", "ta", 1).await.len(), 1);
        claim_on("node-b", "tb", 10).await
    };
    assert_eq!(b_claimed.len(), 1, "{b:?}");
    let elsewhere = &b_claimed[0].sending_elsewhere;
    assert_eq!(elsewhere.len(), 1, "{b:?}: {elsewhere:?}");
    assert_eq!(elsewhere[0].1, "node-a");
    assert_ne!(elsewhere[0].0, b_claimed[0].id);
    store.close().await;
}

/// A renewal that finds every row of a claim locked by another writer for the moment
/// (PostgreSQL's renewal skips locked rows; an erasure, a greeting's upsert) extends none of
/// them and returns nothing for the token; `still_claimed` tells the node the claim is still
/// its own, so it keeps it for the next beat. It was dropped for good: its unstarted messages
/// were never started, and the node's own reaper no longer spared them.
async fn a_claim_whose_rows_are_locked_for_a_moment_is_still_held(b: Backend) {
    let f = Fixture::new(b);
    let store = f.migrated().await;
    deliveries(&store, 2).await;
    assert_eq!(
        claim(&store, "tok", "2026-11-23T02:00:00Z", 10).await.len(),
        2
    );
    let until = t("2026-11-23T02:10:00Z");
    let held = f
        .held("SELECT 1 FROM messages WHERE state = 'claimed' FOR UPDATE")
        .await;
    let renewed = store.renew(&["tok".to_string()], until).await.unwrap();
    assert_eq!(
        renewed.contains("tok"),
        held.is_none(),
        "{b:?}: {renewed:?}"
    );
    let still = store
        .still_claimed(&["tok".to_string(), "gone".to_string()])
        .await
        .unwrap();
    assert_eq!(still, std::collections::HashSet::from(["tok".to_string()]));
    if let Some((pool, tx)) = held {
        tx.rollback().await.unwrap();
        pool.close().await;
    }
    store.close().await;
}

/// Every kind of completion, with NULLs in every nullable column, in batches larger than
/// one multi-row statement: PostgreSQL must type the VALUES list and the COALESCEs.
async fn complete_records_every_outcome_in_batches(b: Backend) {
    let (store, _f) = store(b).await;
    deliveries(&store, 230).await;
    let now = t("2026-12-31T00:00:00Z");
    let claimed = claim(&store, "tok", "2026-12-31T00:00:00Z", 1000).await;
    assert_eq!(claimed.len(), 230);
    let retry_at = now + Duration::hours(1);
    let book = playbook();
    let job = book.jobs.get("review-request").unwrap().clone();
    let batch: Vec<Completion> = claimed
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut c = Completion {
                message_id: m.id.clone(),
                claim_token: m.claim_token.clone(),
                state: MessageState::Cancelled,
                attempts: Vec::new(),
                retry_at: None,
                reason: None,
                channel: None,
                address: None,
                at: now,
                next: None,
                uncounted: false,
            };
            match i % 4 {
                // First row of each statement: cancelled, all NULLs.
                0 => c.reason = Some("cancelled for the test".into()),
                1 => {
                    c.state = MessageState::Sent;
                    c.channel = Some("email".into());
                    c.address = Some("x@example.com".into());
                    let mut a = attempt(1, now, Outcome::Sent, Some(250));
                    a.content = Some(aftercare::store::pack_content(Some("Thanks"), &m.id));
                    c.attempts = vec![a];
                    c.next = plan::next_step(&book, &job, m, now);
                }
                2 => {
                    c.state = MessageState::Retrying;
                    c.retry_at = Some(retry_at);
                    c.reason = Some("try again".into());
                    c.channel = Some("email".into());
                    c.address = Some("x@example.com".into());
                    c.attempts = vec![attempt(1, now, Outcome::Transient, None)];
                }
                _ => {
                    c.state = MessageState::Failed;
                    c.reason = Some("550 no such user".into());
                    c.attempts = vec![attempt(1, now, Outcome::Permanent, Some(550))];
                }
            }
            c
        })
        .collect();
    let mut stale = batch[0].clone();
    stale.claim_token = "someone-else".into();
    assert_eq!(store.complete(&[stale]).await.unwrap(), 1, "a lost lease");
    assert_eq!(store.complete(&batch).await.unwrap(), 0);
    assert_eq!(
        store.complete(&batch[..3]).await.unwrap(),
        3,
        "applied once"
    );

    let msgs = all(&store).await;
    let count = |s| msgs.iter().filter(|m| m.state == s).count();
    assert_eq!(count(MessageState::Cancelled), 58);
    assert_eq!(count(MessageState::Sent), 58);
    assert_eq!(count(MessageState::Retrying), 57);
    assert_eq!(count(MessageState::Failed), 57);
    assert_eq!(count(MessageState::Scheduled), 58, "one reminder per send");
    for m in &msgs {
        match m.state {
            MessageState::Cancelled => {
                assert_eq!(m.attempts, 0);
                assert!(m.attempt_log.is_empty() && m.channel.is_none());
                assert_eq!(m.reason.as_deref(), Some("cancelled for the test"));
            }
            MessageState::Sent => {
                assert_eq!((m.attempts, m.sent_at), (1, Some(now)));
                assert_eq!(m.address.as_deref(), Some("x@example.com"));
                let a = &m.attempt_log[0];
                assert_eq!((a.outcome.as_str(), a.code), ("sent", Some(250)));
                assert_eq!(a.provider_id.as_deref(), Some("<id@example.com>"));
                assert!(m.reason.is_none());
                // What the customer got is kept with the attempt (bytes, with NULLs beside).
                let said = store.message_contents(&m.id).await.unwrap();
                assert_eq!(said.len(), 1, "{}", m.id);
                assert_eq!(
                    (said[0].subject.as_deref(), said[0].text.as_str()),
                    (Some("Thanks"), m.id.as_str())
                );
            }
            MessageState::Retrying => {
                assert_eq!((m.attempts, m.due_at), (1, retry_at));
                assert_eq!(m.attempt_log[0].code, None);
                assert!(m.sent_at.is_none());
            }
            MessageState::Failed => {
                assert_eq!(m.attempt_log[0].code, Some(550));
                assert_eq!(m.channel, None, "a NULL channel keeps what was there");
            }
            MessageState::Scheduled => {
                assert_eq!(m.step, 1);
                assert_eq!(m.template, "review_reminder");
                assert_eq!(m.due_at, now + Duration::days(4));
                assert!(m.event_id.is_some());
            }
            MessageState::Claimed | MessageState::Open | MessageState::HeldOut => {
                panic!("left {}: {}", m.state, m.id)
            }
        }
    }
    // Retries fall due again and carry their attempt count.
    let again = claim(&store, "tok-2", "2026-12-31T01:00:00Z", 1000).await;
    assert_eq!(again.len(), 57);
    assert!(again.iter().all(|m| m.attempts == 1));
    common::assert_queue_whole(&store).await;
    store.close().await;
}

async fn release_and_reap_return_claims_to_the_queue(b: Backend) {
    let (store, _f) = store(b).await;
    deliveries(&store, 4).await;
    let now = t("2026-12-31T00:00:00Z");
    let claimed = claim(&store, "tok", "2026-12-31T00:00:00Z", 10).await;
    // One of them has been tried before: it goes back as `retrying`.
    let c = Completion {
        message_id: claimed[0].id.clone(),
        claim_token: "tok".into(),
        state: MessageState::Retrying,
        attempts: vec![attempt(1, now, Outcome::Transient, Some(421))],
        retry_at: Some(now),
        reason: Some("421".into()),
        channel: Some("email".into()),
        address: Some("x@example.com".into()),
        at: now,
        next: None,
        uncounted: false,
    };
    store.complete(&[c]).await.unwrap();
    let retry = claim(&store, "tok-r", "2026-12-31T00:00:00Z", 10).await;
    assert_eq!(retry.len(), 1);

    let ids: Vec<String> = claimed[1..3].iter().map(|m| m.id.clone()).collect();
    store.release("wrong-token", &ids, now).await.unwrap();
    assert_eq!(
        store.counts().await.unwrap_or_default().len(),
        1,
        "all claimed"
    );
    store.release("tok", &ids, now).await.unwrap();
    store
        .release("tok-r", &[retry[0].id.clone()], now)
        .await
        .unwrap();
    let states = |msgs: Vec<aftercare::model::MessageRecord>| {
        let mut v: Vec<_> = msgs.iter().map(|m| m.state.as_str()).collect();
        v.sort();
        v
    };
    assert_eq!(
        states(all(&store).await),
        ["claimed", "retrying", "scheduled", "scheduled"]
    );
    // The last claim's lease ends; the reaper returns it, as an attempt (it may have gone).
    let reaped = store
        .reap(now + Duration::minutes(6), "node-b", 8)
        .await
        .unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(
        states(all(&store).await),
        ["retrying", "retrying", "scheduled", "scheduled"]
    );
    assert_eq!(
        store.next_due().await.unwrap(),
        Some(t("2026-11-23T01:00:00Z")),
        "SO-0 was tried and is due again later"
    );
    common::assert_queue_whole(&store).await;
    store.close().await;
}

async fn find_messages_applies_every_filter(b: Backend) {
    let (store, _f) = store(b).await;
    let phone = |id: &str, email: &str, phone: &str, order: &str, at: &str| {
        serde_json::json!({
            "id": id, "type": "order.delivered", "occurred_at": at,
            "contact": {"id": format!("c-{order}"), "email": email, "phone": phone},
            "data": {"order_id": order}
        })
        .to_string()
    };
    ingest(
        &store,
        &[
            phone(
                "e-a",
                "Ann@Example.com",
                "+8613800138000",
                "A",
                "2026-11-01T00:00:00Z",
            ),
            phone(
                "e-b",
                "bob@example.com",
                "+14155550100",
                "B",
                "2026-11-02T00:00:00Z",
            ),
            phone(
                "e-c",
                "cy@example.com",
                "+14155550101",
                "C",
                "2026-11-03T00:00:00Z",
            ),
            reviewed("r-c", "c-C", "C", "2026-11-03T01:00:00Z"),
        ],
    )
    .await;
    let orders = |msgs: Vec<aftercare::model::MessageRecord>| -> Vec<String> {
        msgs.into_iter().filter_map(|m| m.order_id).collect()
    };
    let f = LogFilter::default;
    let cases: Vec<(LogFilter, Vec<&str>)> = vec![
        (f(), vec!["A", "B", "C"]),
        (
            LogFilter {
                contact: Some("c-B".into()),
                ..f()
            },
            vec!["B"],
        ),
        (
            LogFilter {
                contact: Some("ANN@example.COM".into()),
                ..f()
            },
            vec!["A"],
        ),
        (
            LogFilter {
                contact: Some("+1 415-555-0100".into()),
                ..f()
            },
            vec!["B"],
        ),
        (
            LogFilter {
                contact: Some("nobody".into()),
                ..f()
            },
            vec![],
        ),
        (
            LogFilter {
                job: Some("review-request".into()),
                ..f()
            },
            vec!["A", "B", "C"],
        ),
        (
            LogFilter {
                job: Some("birthday".into()),
                ..f()
            },
            vec![],
        ),
        (
            LogFilter {
                order: Some("C".into()),
                ..f()
            },
            vec!["C"],
        ),
        (
            LogFilter {
                states: vec![MessageState::Cancelled],
                ..f()
            },
            vec!["C"],
        ),
        (
            LogFilter {
                states: vec![MessageState::Scheduled, MessageState::Cancelled],
                ..f()
            },
            vec!["A", "B", "C"],
        ),
        (
            LogFilter {
                since: Some(t("2026-11-05T00:00:00Z")),
                ..f()
            },
            vec!["B", "C"],
        ),
        (
            LogFilter {
                until: Some(t("2026-11-05T00:00:00Z")),
                ..f()
            },
            vec!["A", "B"],
        ),
        (
            LogFilter {
                since: Some(t("2026-11-05T00:00:00Z")),
                until: Some(t("2026-11-05T00:00:00Z")),
                ..f()
            },
            vec!["B"],
        ),
        (LogFilter { limit: 2, ..f() }, vec!["A", "B"]),
        (
            LogFilter {
                contact: Some("cy@example.com".into()),
                job: Some("review-request".into()),
                order: Some("C".into()),
                states: vec![MessageState::Cancelled],
                since: Some(t("2026-11-01T00:00:00Z")),
                until: Some(t("2026-11-30T00:00:00Z")),
                limit: 10,
                ..Default::default()
            },
            vec!["C"],
        ),
    ];
    for (filter, want) in cases {
        assert_eq!(
            orders(log(&store, filter.clone()).await),
            want,
            "{filter:?}"
        );
    }

    // Attempts come with their message, filtered and limited alike.
    let claimed = claim(&store, "tok", "2026-12-31T00:00:00Z", 10).await;
    let now = t("2026-12-31T00:00:00Z");
    let done: Vec<Completion> = claimed
        .iter()
        .map(|m| Completion {
            message_id: m.id.clone(),
            claim_token: "tok".into(),
            state: MessageState::Retrying,
            attempts: vec![attempt(1, now, Outcome::Transient, Some(451))],
            retry_at: Some(now),
            reason: None,
            channel: Some("email".into()),
            address: None,
            at: now,
            next: None,
            uncounted: false,
        })
        .collect();
    store.complete(&done).await.unwrap();
    let one = log(
        &store,
        LogFilter {
            order: Some("B".into()),
            ..f()
        },
    )
    .await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].attempt_log.len(), 1);
    assert_eq!(one[0].attempt_log[0].code, Some(451));
    assert_eq!(
        one[0].address.as_deref(),
        None,
        "no address given, none stored"
    );
    store.close().await;
}

/// Filtered by due time only, the log merges each job's first page (by `messages_job_due`):
/// pages of two, continued by `after`, give every message once, in (due time, id) order,
/// across jobs whose messages share due times.
async fn the_whole_log_pages_in_order_across_jobs(b: Backend) {
    let f = Fixture::new(b);
    let store = f.migrated().await;
    // Three jobs; due times 1000..4000 ms, each shared by messages of two or three jobs.
    f.raw_script(
        "INSERT INTO messages (id, job_id, contact_id, step, dedupe_key, template, state, due_at, created_at, updated_at) VALUES \
         ('m07', 'b', 'c1', 0, 'k7', 't', 'scheduled', 1000, 0, 0), \
         ('m02', 'a', 'c1', 0, 'k2', 't', 'sent', 1000, 0, 0), \
         ('m09', 'c', 'c2', 0, 'k9', 't', 'cancelled', 1000, 0, 0), \
         ('m01', 'a', 'c2', 0, 'k1', 't', 'scheduled', 2000, 0, 0), \
         ('m05', 'b', 'c2', 0, 'k5', 't', 'failed', 2000, 0, 0), \
         ('m03', 'a', 'c3', 0, 'k3', 't', 'scheduled', 3000, 0, 0), \
         ('m04', 'a', 'c4', 0, 'k4', 't', 'scheduled', 3500, 0, 0), \
         ('m08', 'c', 'c3', 0, 'k8', 't', 'scheduled', 3500, 0, 0), \
         ('m06', 'b', 'c3', 0, 'k6', 't', 'scheduled', 4000, 0, 0);",
    )
    .await;
    let want = [
        "m02", "m07", "m09", "m01", "m05", "m03", "m04", "m08", "m06",
    ];
    let ids = |ms: &[aftercare::model::MessageRecord]| -> Vec<String> {
        ms.iter().map(|m| m.id.clone()).collect()
    };
    let all = log(
        &store,
        LogFilter {
            limit: 100,
            ..LogFilter::default()
        },
    )
    .await;
    assert_eq!(ids(&all), want);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = log(
            &store,
            LogFilter {
                limit: 2,
                after: after.clone(),
                ..LogFilter::default()
            },
        )
        .await;
        let Some(last) = page.last() else { break };
        after = Some((last.due_at, last.id.clone()));
        assert!(page.len() <= 2);
        paged.extend(ids(&page));
    }
    assert_eq!(paged, want);
    // A window of due times, merged the same way.
    let window = log(
        &store,
        LogFilter {
            since: Some(DateTime::from_timestamp_millis(2000).unwrap()),
            until: Some(DateTime::from_timestamp_millis(3500).unwrap()),
            limit: 3,
            ..LogFilter::default()
        },
    )
    .await;
    assert_eq!(ids(&window), ["m01", "m05", "m03"]);
    store.close().await;
}

async fn schema_versions_are_checked_on_open(b: Backend) {
    let f = Fixture::new(b);
    let fresh = f.connect().await;
    let s = fresh.schema().await.unwrap();
    let known = common::schema_version();
    assert_eq!(s.version(), None);
    assert_eq!(s.known, known);
    assert_eq!(
        s.pending.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        common::migrations(b)
    );
    fresh.close().await;

    // SQLite migrates on open; PostgreSQL waits for `aftercare migrate`.
    match (b, Store::open(&f.cfg).await) {
        (Backend::Sqlite, Ok(s)) => s.close().await,
        (Backend::Postgres, Err(e @ StoreError::NeedsMigration { .. })) => {
            let msg = e.to_string();
            assert!(msg.contains("has no schema yet"), "{msg}");
            assert!(msg.contains("run `aftercare migrate`"), "{msg}");
            let s = f.connect().await;
            let applied: Vec<String> = s
                .migrate()
                .await
                .unwrap()
                .iter()
                .map(|m| m.to_string())
                .collect();
            assert_eq!(applied, common::migrations(b));
            s.close().await;
        }
        (b, other) => panic!("{b:?}: {other:?}"),
    }
    let s = Store::open(&f.cfg).await.expect("current schema opens");
    assert!(
        s.migrate().await.unwrap().is_empty(),
        "nothing left to apply"
    );
    assert!(s.schema().await.unwrap().is_current());
    s.close().await;

    // A newer aftercare migrated the store: refused, saying which versions and what to do.
    f.raw(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'future', TRUE, $1, 0)",
        vec![0],
    )
    .await;
    let e = Store::open(&f.cfg).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::SchemaTooNew { have: 9999, known: k, .. } if k == known
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "schema version 9999, newer than this aftercare knows (up to {known})"
        )),
        "{msg}"
    );
    let s = f.connect().await;
    assert!(matches!(
        s.migrate().await,
        Err(StoreError::SchemaTooNew { .. })
    ));
    s.close().await;
}

/// The guard for the lead's new tables: every table of a migrated store is in COPY_TABLES.
async fn copy_tables_name_every_table(b: Backend) {
    let (store, _f) = store(b).await;
    let mut listed: Vec<&str> = COPY_TABLES.iter().map(|(t, _)| *t).collect();
    listed.sort();
    assert_eq!(
        store.tables().await.unwrap(),
        listed,
        "a table is missing from COPY_TABLES in src/store/copy.rs (or listed but not created)"
    );
    store.close().await;
}

/// Fill a store through the flows (ingest, claim, complete), copy it to the other backend,
/// and read back the same history.
async fn copy_to_the_other_backend_keeps_every_row(b: Backend) {
    let (from, _ff) = store(b).await;
    let other = match b {
        Backend::Sqlite => Backend::Postgres,
        Backend::Postgres => Backend::Sqlite,
    };
    deliveries(&from, 1234).await;
    ingest(
        &from,
        &[reviewed("r-1", "c-1", "SO-1", "2026-11-21T00:00:00Z")],
    )
    .await;
    let now = t("2026-11-24T00:00:00Z");
    let claimed = claim(&from, "tok", "2026-11-24T00:00:00Z", 500).await;
    let book = playbook();
    let job = book.jobs.get("review-request").unwrap().clone();
    let done: Vec<Completion> = claimed
        .iter()
        .map(|m| Completion {
            next: plan::next_step(&book, &job, m, now),
            ..sent(&m.id, "tok", now)
        })
        .collect();
    from.complete(&done).await.unwrap();
    let want = serde_json::to_value(all(&from).await).unwrap();
    let want_counts = from.row_counts().await.unwrap();

    let tf = Fixture::new(other);
    let to = tf.connect().await;
    let mut batches = 0;
    let report = from
        .copy_to(
            &to,
            // Small pages: the two-column key of `attempts` pages too.
            CopyOptions {
                force: false,
                batch: 7,
            },
            &mut |_| batches += 1,
        )
        .await
        .unwrap();
    assert_eq!(
        report.migrated.len(),
        common::migrations(other).len(),
        "the empty target was migrated"
    );
    assert!(batches > 500, "copied in pages ({batches})");
    let counts: Vec<(&str, i64)> = report.tables.iter().map(|c| (c.table, c.target)).collect();
    assert_eq!(counts, want_counts);
    for want in [
        ("contacts", 1234),
        ("events", 1235),
        ("messages", 1234 + 24),
        ("attempts", 24),
    ] {
        assert!(counts.contains(&want), "{want:?} not in {counts:?}");
    }
    let got = serde_json::to_value(all(&to).await).unwrap();
    assert_eq!(got, want);

    // A second copy into the now non-empty target is refused; --force replaces.
    let e = from
        .copy_to(&to, CopyOptions::default(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, CopyError::NotEmpty { .. }), "{e:?}");
    assert!(e.to_string().contains("1234 contacts"), "{e}");
    let forced = CopyOptions {
        force: true,
        ..CopyOptions::default()
    };
    let again = from.copy_to(&to, forced, &mut |_| {}).await.unwrap();
    assert!(again.migrated.is_empty());
    assert_eq!(serde_json::to_value(all(&to).await).unwrap(), want);

    // The copy is a working store: it claims what is due next.
    let reminders = claim(&to, "tok-2", "2027-02-01T00:00:00Z", 5000).await;
    assert_eq!(
        reminders.len(),
        1234 - 1 - 24 + 24,
        "the rest, and every reminder"
    );
    // And a store cannot be copied onto itself.
    let e = to.copy_to(&to, forced, &mut |_| {}).await.unwrap_err();
    assert!(matches!(e, CopyError::SameStore(_)), "{e:?}");
    common::assert_queue_whole(&from).await;
    common::assert_queue_whole(&to).await;
    from.close().await;
    to.close().await;
}

use common::on_both_async as on_both;

/// Upgrading a store to schema v10 queues what was scheduled, retrying or claimed, and
/// nothing else (PostgreSQL fills its table; SQLite's view shows them by itself): the claim,
/// the reaper and `store check` then work on the messages an older release planned.
async fn the_v10_upgrade_queues_what_was_queued(b: Backend) {
    let fx = Fixture::new(b);
    fx.migrated_before("0010").await;
    let store = fx.connect().await;
    // This binary writes `contacts.email_key` (v14) and `fields_at` (v16); an older release
    // planned the same rows without them, so the columns are there only while this one plans.
    fx.raw_script(
        "ALTER TABLE contacts ADD COLUMN email_key TEXT; \
         ALTER TABLE contacts ADD COLUMN fields_at BIGINT",
    )
    .await;
    deliveries(&store, 4).await;
    fx.raw_script(
        "ALTER TABLE contacts DROP COLUMN email_key; ALTER TABLE contacts DROP COLUMN fields_at",
    )
    .await;
    fx.raw(
        "UPDATE messages SET state = 'sent', sent_at = updated_at WHERE contact_id = 'c-0' AND $1 IS NOT NULL",
        Vec::new(),
    )
    .await;
    fx.raw(
        "UPDATE messages SET state = 'claimed', claim_token = 'old', locked_by = 'node-old', locked_until = 1 \
         WHERE contact_id = 'c-1' AND $1 IS NOT NULL",
        Vec::new(),
    )
    .await;
    store.migrate().await.unwrap();
    common::assert_queue_whole(&store).await;
    let due: Vec<String> = claim(&store, "tok-1", "2026-12-01T00:00:00Z", 10)
        .await
        .into_iter()
        .map(|m| m.contact.id)
        .collect();
    assert_eq!(
        due,
        ["c-2", "c-3"],
        "neither the sent message nor the claimed one"
    );
    let reaped = store
        .reap(t("2026-12-01T00:00:00Z"), "node-b", 3)
        .await
        .unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0].node, "node-old");
    common::assert_queue_whole(&store).await;
    store.close().await;
}

/// `reap_except` leaves the claims made under the tokens it is given (the reaping process's
/// own, which its heartbeat renews) and takes the others; once not spared, those too.
async fn a_reaper_spares_its_own_claims(b: Backend) {
    let (store, _fx) = store(b).await;
    deliveries(&store, 4).await;
    let mine = claim(&store, "tok-mine", "2026-11-30T00:00:00Z", 2).await;
    let theirs = claim(&store, "tok-theirs", "2026-11-30T00:00:00Z", 2).await;
    assert_eq!((mine.len(), theirs.len()), (2, 2));
    let later = t("2026-11-30T01:00:00Z");
    let ids = |v: Vec<String>| {
        let mut v = v;
        v.sort();
        v
    };
    let reaped = store
        .reap_except(later, "node-b", 8, &["tok-mine".to_string()])
        .await
        .unwrap();
    assert_eq!(
        ids(reaped.into_iter().map(|r| r.message_id).collect()),
        ids(theirs.into_iter().map(|m| m.id).collect())
    );
    let reaped = store.reap(later, "node-b", 8).await.unwrap();
    assert_eq!(
        ids(reaped.into_iter().map(|r| r.message_id).collect()),
        ids(mine.into_iter().map(|m| m.id).collect())
    );
    common::assert_queue_whole(&store).await;
    store.close().await;
}

/// `store check` counts a queue that drifted from `messages`: on PostgreSQL a table its
/// triggers keep (migrations/postgres/0010), a view on SQLite, which cannot drift.
async fn store_check_counts_a_queue_that_drifted(b: Backend) {
    let (store, fx) = store(b).await;
    deliveries(&store, 3).await;
    claim(&store, "tok-1", "2026-11-30T00:00:00Z", 1).await;
    common::assert_queue_whole(&store).await;
    if b == Backend::Postgres {
        fx.raw(
            "UPDATE message_queue SET state = 'scheduled', claim_token = NULL \
             WHERE claim_token = 'tok-1' AND $1 IS NOT NULL",
            Vec::new(),
        )
        .await;
        let r = store.check().await.unwrap();
        assert!(
            r.references
                .contains(&("message_queue = the queued rows of messages", 2)),
            "the claimed row as the queue has it and as messages has it: {:?}",
            r.references
        );
        assert!(
            r.problems().iter().any(|p| p.contains("message_queue")),
            "{:?}",
            r.problems()
        );
    }
    store.close().await;
}

/// Support's and the brake's changes by hand move messages into, out of and within the
/// queue (a release, a cancel, a retry, a brake's release moving due times, the forecast's
/// claim, a removed job's cancel): after each, PostgreSQL's `message_queue` is `messages`'
/// own.
async fn changes_by_hand_keep_the_queue_whole(b: Backend) {
    let (store, fx) = store(b).await;
    deliveries(&store, 4).await;
    let now = t("2026-12-01T00:00:00Z");
    let far = t("2027-01-01T00:00:00Z");
    let mut ids: Vec<String> = claim(&store, "tok-1", "2026-12-01T00:00:00Z", 10)
        .await
        .into_iter()
        .map(|m| m.id)
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 4);
    store.release("tok-1", &ids, now).await.unwrap();
    common::assert_queue_whole(&store).await;
    assert_eq!(
        store.cancel_message(&ids[0], "by hand", now).await.unwrap(),
        HandAction::Done
    );
    common::assert_queue_whole(&store).await;
    assert_eq!(
        store.retry_message(&ids[0], "again", now).await.unwrap(),
        HandAction::Done
    );
    common::assert_queue_whole(&store).await;
    fx.raw(
        "UPDATE messages SET reason = 'deferred: paused by the reputation brake' \
         WHERE contact_id = 'c-1' AND $1 IS NOT NULL",
        Vec::new(),
    )
    .await;
    assert!(
        store
            .engage_brake("job:review-request", "test", now)
            .await
            .unwrap()
    );
    let released = now + Duration::hours(1);
    assert!(
        store
            .release_brake("job:review-request", "tester", released)
            .await
            .unwrap()
    );
    common::assert_queue_whole(&store).await;
    assert_eq!(
        store
            .claim_jobs("fc", &["review-request".to_string()], now, far)
            .await
            .unwrap(),
        4
    );
    common::assert_queue_whole(&store).await;
    store.release("fc", &ids, now).await.unwrap();
    assert_eq!(
        store
            .cancel_job("review-request", "job removed", now)
            .await
            .unwrap(),
        4
    );
    common::assert_queue_whole(&store).await;
    store.close().await;
}

/// A bounce or complaint report of `kind` about `address`, of message `message_id` if known.
fn report(
    kind: &str,
    address: &str,
    message_id: Option<&str>,
    at: DateTime<Utc>,
) -> aftercare::store::NewBounce {
    aftercare::store::NewBounce {
        id: format!("b-{kind}-{address}"),
        kind: kind.into(),
        source: "dsn".into(),
        address: address.into(),
        message_id: message_id.map(str::to_string),
        attempt: message_id.map(|_| 1),
        job_id: None,
        status: None,
        code: None,
        detail: format!("{kind} report"),
        report_id: Some(format!("r-{kind}-{address}")),
        raw: None,
        at,
    }
}

/// The soft-bounce rule the tests run with (three in 15 days suppress for 30).
fn soft() -> aftercare::store::SoftRule {
    aftercare::store::SoftRule {
        count: 3,
        within: Duration::days(15),
        suppress_for: Duration::days(30),
    }
}

/// Every lookup by email address compares it as the suppression list keeps addresses
/// (trimmed, lowered by Unicode's rules, `contacts.email_key`), not by SQL's `LOWER()`, which
/// lowers ASCII only on SQLite: a contact written `ÜLLA@Beispiel.de` is found, erased,
/// marked by a complaint and matched to a bounce as `ülla@beispiel.de`, in any case.
async fn a_contact_is_found_by_its_address_beyond_ascii(b: Backend) {
    let (store, _f) = store(b).await;
    let line = delivered(
        "e-u",
        "c-u",
        "ÜLLA@Beispiel.de",
        "SO-U",
        "2026-11-20T00:00:00Z",
    );
    let other = delivered(
        "e-o",
        "c-o",
        "ulla@beispiel.de",
        "SO-O",
        "2026-11-20T00:00:00Z",
    );
    for o in ingest(&store, &[line, other]).await {
        assert!(matches!(o, IngestOutcome::Accepted { .. }), "{o:?}");
    }
    for key in ["ülla@beispiel.de", " Ülla@BEISPIEL.DE ", "ÜLLA@Beispiel.de"] {
        assert_eq!(store.contacts_named(key).await.unwrap(), ["c-u"], "{key}");
    }
    let hits = store
        .search(&aftercare::store::SearchKey {
            text: "Ülla@beispiel.DE".into(),
            email: Some("Ülla@beispiel.DE".into()),
            phone: None,
        })
        .await
        .unwrap();
    let found: Vec<_> = hits.iter().map(|h| h.contact.id.as_str()).collect();
    assert_eq!(found, ["c-u"]);
    let logged = log(
        &store,
        LogFilter {
            contact: Some("ülla@beispiel.de".into()),
            limit: 10,
            ..LogFilter::default()
        },
    )
    .await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].order_id.as_deref(), Some("SO-U"));

    // Sent to the address as the contact wrote it; a report names it in another case.
    let at = t("2026-11-23T00:00:00Z");
    let claimed = claim(&store, "tok-u", "2026-11-23T01:00:00Z", 10).await;
    let mine = claimed.iter().find(|m| m.contact.id == "c-u").unwrap();
    let mut done = sent(&mine.id, "tok-u", at);
    done.address = Some("ÜLLA@Beispiel.de".into());
    done.attempts[0].address = Some("ÜLLA@Beispiel.de".into());
    done.attempts[0].provider_id = None;
    assert_eq!(store.complete(&[done]).await.unwrap(), 0, "none stale");
    let bounced = store
        .bounced_message(None, None, Some("ülla@beispiel.de"), at)
        .await
        .unwrap()
        .expect("the message sent to the address");
    assert_eq!(bounced.id, mine.id);

    let complaint = report("complaint", "ülla@beispiel.de", None, at);
    store.record_bounce(&complaint, soft()).await.unwrap();
    let contacts = store
        .contacts(&["c-u".to_string(), "c-o".to_string()])
        .await
        .unwrap();
    let consent = |id: &str| {
        contacts
            .iter()
            .find(|c| c.id == id)
            .unwrap()
            .consent
            .get("email")
            .cloned()
    };
    assert_eq!(consent("c-u"), Some(serde_json::Value::Bool(false)));
    assert_eq!(consent("c-o"), None, "another address, without the umlaut");
    store.close().await;
}

/// v14 keys the addresses stored before it: ASCII ones in SQL, the others (beyond ASCII,
/// white space around them) by the binary right after migrating, so lookups find contacts
/// an older release wrote.
async fn the_v14_upgrade_keys_every_address(b: Backend) {
    let fx = Fixture::new(b);
    fx.migrated_before("0014").await;
    fx.raw_script(
        "INSERT INTO contacts (id, email, created_at, updated_at) VALUES \
         ('c-a', 'Ann@Example.COM', 1, 1), ('c-u', 'ÜLLA@Beispiel.de', 1, 1), \
         ('c-s', ' Sam@Example.com	', 1, 1), ('c-n', NULL, 1, 1)",
    )
    .await;
    let store = fx.connect().await;
    store.migrate().await.unwrap();
    for (key, id) in [
        ("ann@example.com", "c-a"),
        ("Ülla@beispiel.de", "c-u"),
        ("sam@example.com", "c-s"),
    ] {
        assert_eq!(store.contacts_named(key).await.unwrap(), [id], "{key}");
    }
    store.close().await;
}

/// v16 dates each stored contact's fields by its newest event, so that a backfill imported
/// after the upgrade cannot undo what the contact holds; a contact without events stays
/// undated, and any event may change it.
async fn the_v16_upgrade_dates_contacts_by_their_newest_event(b: Backend) {
    let fx = Fixture::new(b);
    fx.migrated_before("0016").await;
    fx.raw_script(
        "INSERT INTO contacts (id, email, created_at, updated_at) VALUES \
         ('c-e', 'new@example.com', 1, 1), ('c-n', 'none@example.com', 1, 1); \
         INSERT INTO events (id, type, contact_id, occurred_at, occurred_offset, received_at, data, digest) VALUES \
         ('e-1', 'order.delivered', 'c-e', 1795140000000, 0, 1, '{}', 'd1'), \
         ('e-2', 'order.delivered', 'c-e', 1795226400000, 0, 1, '{}', 'd2')",
    )
    .await;
    let store = fx.connect().await;
    store.migrate().await.unwrap();
    // Both older than c-e's newest event (2026-11-21T02:00:00Z), both with another address.
    let old = |id: &str, contact: &str| {
        delivered(id, contact, "old@example.com", id, "2026-11-20T00:00:00Z")
    };
    for o in ingest(&store, &[old("e-3", "c-e"), old("e-4", "c-n")]).await {
        assert!(matches!(o, IngestOutcome::Accepted { .. }), "{o:?}");
    }
    let contacts = store
        .contacts(&["c-e".to_string(), "c-n".to_string()])
        .await
        .unwrap();
    let email = |id: &str| {
        let c = contacts.iter().find(|c| c.id == id).unwrap();
        c.email.clone().unwrap_or_default()
    };
    assert_eq!(email("c-e"), "new@example.com", "{b:?}");
    assert_eq!(email("c-n"), "old@example.com", "{b:?}");
    store.close().await;
}

/// v19 keeps in `contacts_phone` only the contacts that have a number (an email-only contact
/// wrote an entry no lookup reads): a contact an older release stored is still found by its
/// number, and both stores still take the index for `phone = $n`, alone and among the ORs
/// of a lookup by id, address or number, rather than reading every contact.
async fn the_v19_upgrade_keeps_lookups_by_number_on_their_index(b: Backend) {
    let fx = Fixture::new(b);
    fx.migrated_before("0019").await;
    fx.raw_script(
        "INSERT INTO contacts (id, email, phone, created_at, updated_at) VALUES \
         ('c-p', NULL, '+8613800000001', 1, 1), ('c-e', 'e@example.com', NULL, 1, 1)",
    )
    .await;
    let store = fx.connect().await;
    store.migrate().await.unwrap();
    let hits = store
        .search(&aftercare::store::SearchKey {
            text: "+8613800000001".into(),
            email: None,
            phone: Some("+8613800000001".into()),
        })
        .await
        .unwrap();
    let found: Vec<_> = hits
        .iter()
        .map(|h| (h.contact.id.as_str(), h.matched))
        .collect();
    assert_eq!(found, [("c-p", "phone")], "{b:?}");
    store.close().await;

    let lookups = [
        "SELECT id FROM contacts WHERE phone = $1",
        "SELECT id FROM contacts WHERE id = $1 OR email_key = $1 OR phone = $1",
    ];
    match &fx.cfg {
        StoreConfig::Sqlite { path, .. } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            let sql: String =
                sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'contacts_phone'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            assert!(sql.ends_with("WHERE phone IS NOT NULL"), "{sql}");
            for q in lookups {
                let plan: Vec<String> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {q}")))
                        .bind("+8613800000001")
                        .fetch_all(&pool)
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| sqlx::Row::get::<String, _>(r, 3))
                        .collect();
                assert!(
                    plan.iter()
                        .any(|l| l.contains("USING INDEX contacts_phone (phone=?)")),
                    "{q}: {plan:#?}"
                );
                assert!(
                    !plan.iter().any(|l| l.starts_with("SCAN")),
                    "{q}: {plan:#?}"
                );
            }
            pool.close().await;
        }
        StoreConfig::Postgres { url, .. } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let def: String = sqlx::query_scalar(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'contacts_phone'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            assert!(def.ends_with("WHERE (phone IS NOT NULL)"), "{def}");
            // The plan the store's prepared statements get for any number (generic), with
            // scans priced out: a partial index the planner could not prove usable for
            // `phone = $1` would leave a `Seq Scan` here all the same.
            let mut conn = pool.acquire().await.unwrap();
            sqlx::raw_sql("SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan")
                .execute(&mut *conn)
                .await
                .unwrap();
            for (i, q) in lookups.iter().enumerate() {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE p{i}(text) AS {q}")))
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "EXPLAIN EXECUTE p{i}('+8613800000001')"
                )))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
                assert!(
                    plan.iter().any(|l| l.contains(" contacts_phone ")),
                    "{q}: {plan:#?}"
                );
                assert!(
                    !plan.iter().any(|l| l.contains("Seq Scan")),
                    "{q}: {plan:#?}"
                );
            }
            drop(conn);
            pool.close().await;
        }
    }
}

/// A batch of a new contact's delivery and a stored contact's, whose review of that order
/// (a day after the delivery, imported before it) is stored already: the stored contact's stop is found (its request is not planned) while
/// the new contact, which has nothing stored to read, gets its request. (SQLite skips the
/// reads of contacts the batch read as not stored; this holds it to reading the others.)
async fn a_batch_of_new_and_stored_contacts_finds_the_stored_stops(b: Backend) {
    let (store, _f) = store(b).await;
    let at = "2026-11-20T08:00:00+08:00";
    let later = "2026-11-21T08:00:00+08:00";
    let first = ingest(&store, &[reviewed("r-1", "c-1", "SO-1", later)]).await;
    assert!(
        matches!(first[0], IngestOutcome::Accepted { .. }),
        "{first:?}"
    );
    let outcomes = ingest(
        &store,
        &[
            delivered("e-2", "c-2", "c2@example.com", "SO-2", at),
            delivered("e-1", "c-1", "c1@example.com", "SO-1", at),
        ],
    )
    .await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, IngestOutcome::Accepted { planned: 1, .. })),
        "{b:?}: {outcomes:?}"
    );
    let records = all(&store).await;
    assert_eq!(state_of(&records, "SO-1"), MessageState::Cancelled, "{b:?}");
    assert_eq!(state_of(&records, "SO-2"), MessageState::Scheduled, "{b:?}");
    store.close().await;
}

/// A complaint's withdrawal is a change at the complaint's time: an event from before it,
/// imported afterwards with the consent the shop's CRM had then, does not give it back.
async fn a_complaint_outranks_an_older_event_imported_after_it(b: Backend) {
    let (store, _f) = store(b).await;
    let event = |id: &str, at: &str| {
        serde_json::json!({"id": id, "type": "order.delivered", "occurred_at": at,
            "contact": {"id": "c-1", "email": "ann@example.com", "consent": {"email": true}},
            "data": {"order_id": id}})
        .to_string()
    };
    ingest(&store, &[event("e-1", "2026-11-20T00:00:00Z")]).await;
    let complaint = report(
        "complaint",
        "ann@example.com",
        None,
        t("2026-11-25T00:00:00Z"),
    );
    store.record_bounce(&complaint, soft()).await.unwrap();
    ingest(&store, &[event("e-2", "2026-11-22T00:00:00Z")]).await;
    let contacts = store.contacts(&["c-1".to_string()]).await.unwrap();
    assert_eq!(
        contacts[0].consent.get("email"),
        Some(&serde_json::Value::Bool(false)),
        "{b:?}"
    );
    store.close().await;
}

/// A report that names only an address no contact has (the contact's address changed since,
/// or the contact was erased) is matched to the last send to it within a week before the
/// report, by the attempts' time index; an older one is not looked for (the attempts are not
/// indexed by address, and every attempt kept would be read for each such report).
async fn a_bounce_by_an_address_no_contact_has_looks_back_a_week(b: Backend) {
    let (store, _f) = store(b).await;
    deliveries(&store, 2).await;
    let at = t("2026-11-23T00:00:00Z");
    let mut claimed = claim(&store, "tok-a", "2026-11-23T01:00:00Z", 10).await;
    claimed.sort_by_key(|m| m.contact.id.clone());
    // `sent` records the attempt to x@example.com; the contact's address is c0@example.com.
    // The other went to an address in capitals beyond ASCII, which no contact has now.
    let mut beyond = sent(&claimed[1].id, "tok-a", at);
    beyond.attempts[0].address = Some("ÜLLA@Beispiel.de".into());
    assert_eq!(
        store
            .complete(&[sent(&claimed[0].id, "tok-a", at), beyond])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .bounced_message(None, None, Some("ülla@beispiel.de"), at + Duration::days(1))
            .await
            .unwrap()
            .map(|m| m.id),
        Some(claimed[1].id.clone()),
        "{b:?}"
    );
    let matched = |days: i64| {
        let store = &store;
        async move {
            store
                .bounced_message(None, None, Some("X@Example.com"), at + Duration::days(days))
                .await
                .unwrap()
                .map(|m| m.id)
        }
    };
    assert_eq!(matched(6).await, Some(claimed[0].id.clone()));
    assert_eq!(
        matched(8).await,
        None,
        "sent more than a week before the report"
    );
    store.close().await;
}

/// The reputation window: the last `n` email sends, dated by their last attempt, newest
/// first, of a job or of all, counting the message being settled now and how many of them
/// bounced hard.
async fn the_send_window_counts_the_last_sends_by_their_last_attempt(b: Backend) {
    let (store, _f) = store(b).await;
    deliveries(&store, 4).await;
    let mut claimed = claim(&store, "tok-w", "2026-11-23T05:00:00Z", 10).await;
    claimed.sort_by_key(|m| m.due_at);
    let ids: Vec<String> = claimed.iter().map(|m| m.id.clone()).collect();
    let at = |h: i64| t("2026-11-23T05:00:00Z") + Duration::hours(h);
    // Sent at +1 h and +2 h; the third failed for good at +3 h; the fourth is being settled.
    let mut failed = sent(&ids[2], "tok-w", at(3));
    failed.state = MessageState::Failed;
    failed.attempts = vec![attempt(1, at(3), Outcome::Permanent, Some(550))];
    let done = [
        sent(&ids[0], "tok-w", at(1)),
        sent(&ids[1], "tok-w", at(2)),
        failed,
    ];
    assert_eq!(store.complete(&done).await.unwrap(), 0);
    let hard = report("hard", "x@example.com", Some(&ids[1]), at(4));
    store.record_bounce(&hard, soft()).await.unwrap();
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let window = |job: Option<&'static str>, n: i64, since: DateTime<Utc>, also: Option<String>| {
        let store = &store;
        async move {
            let w = store
                .send_window(job, n, since, also.as_deref())
                .await
                .unwrap();
            (w.sends, w.hard)
        }
    };
    assert_eq!(window(None, 10, epoch, None).await, (3, 1));
    assert_eq!(
        window(None, 2, epoch, None).await,
        (2, 1),
        "the failed and the bounced"
    );
    assert_eq!(
        window(None, 1, epoch, None).await,
        (1, 0),
        "the failed one, last"
    );
    assert_eq!(
        window(None, 10, at(1), None).await,
        (2, 1),
        "after the first"
    );
    let settling = Some(ids[3].clone());
    assert_eq!(
        window(Some("review-request"), 2, epoch, settling).await,
        (2, 0),
        "the one being settled and the last one"
    );
    assert_eq!(window(Some("nps-survey"), 10, epoch, None).await, (0, 0));
    store.close().await;
}

/// The same event sent to two nodes at once (a client's retry): the one whose insert finds
/// the other's row says duplicate of the same content, not an id reused for another event.
/// Another writer holds the row uncommitted while the ingest reads (it sees nothing yet) and
/// inserts (it waits); on SQLite the ingest waits for the write lock instead and then reads
/// the row the ordinary way. Either way: `same: true`.
async fn an_event_another_writer_stored_meanwhile_is_the_same_duplicate(b: Backend) {
    let (store, f) = store(b).await;
    let line = delivered(
        "evt-race",
        "c-r",
        "r@example.com",
        "SO-R",
        "2026-11-20T00:00:00Z",
    );
    let inc = parse_event(&line).unwrap();
    let mut other = store.begin().await.unwrap();
    other
        .insert_events(&[(&inc.event, inc.digest.as_str())], t(NOW))
        .await
        .unwrap();
    let racing = {
        let store = store.clone();
        let line = line.clone();
        tokio::spawn(async move { ingest(&store, &[line]).await })
    };
    f.until_waiting(1).await;
    other.commit().await.unwrap();
    let outcome = racing.await.unwrap();
    assert!(
        matches!(outcome[..], [IngestOutcome::Duplicate { same: true }]),
        "{b:?}: {outcome:?}"
    );
    store.close().await;
}

/// A greeting deferred (quiet hours moved its due time) and then cancelled by support stays
/// cancelled when a scheduler plans the same greeting again (every restart builds a new
/// one): only a changed date moves a greeting, and a cancelled one only when the gate
/// cancelled it for that change (`tests/kinds.rs` pins the corrected birthday).
async fn a_deferred_greeting_cancelled_by_hand_stays_cancelled(b: Backend) {
    let (store, _f) = store(b).await;
    let book = playbook();
    let job = book
        .jobs
        .get("birthday-greeting")
        .expect("the shipped greeting");
    let line = birthday(
        "u-1",
        "c-b",
        "王芳",
        "wang.fang@example.com",
        "Asia/Shanghai",
        "zh-CN",
        "1990-11-23",
    );
    ingest(&store, &[line]).await;
    let fire = t("2026-11-23T01:00:00Z");
    let greeting = || plan::anniversary_message(&book, job, "c-b", 2026, fire).expect("a greeting");
    let planned = greeting();
    assert_eq!(
        store
            .upsert_anniversaries(&[planned], fire - Duration::hours(1))
            .await
            .unwrap(),
        1
    );
    let claimed = claim(&store, "tok-g", "2026-11-23T01:00:00Z", 10).await;
    let deferred = Completion {
        message_id: claimed[0].id.clone(),
        claim_token: "tok-g".into(),
        state: MessageState::Scheduled,
        attempts: Vec::new(),
        retry_at: Some(fire + Duration::hours(1)),
        reason: Some("deferred: quiet hours".into()),
        channel: None,
        address: None,
        at: fire,
        next: None,
        uncounted: false,
    };
    store.complete(&[deferred]).await.unwrap();
    assert_eq!(
        store
            .cancel_message(&claimed[0].id, "cancelled by support", fire)
            .await
            .unwrap(),
        HandAction::Done
    );
    let later = fire + Duration::minutes(10);
    assert_eq!(
        store
            .upsert_anniversaries(&[greeting()], later)
            .await
            .unwrap(),
        0,
        "{b:?}"
    );
    let records = all(&store).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].state, records[0].reason.as_deref()),
        (MessageState::Cancelled, Some("cancelled by support")),
        "{b:?}"
    );
    store.close().await;
}

/// The same answer twice at once (a double click): the request whose write meets the
/// other's row writes nothing and says so, so the answer counts no change and plans no
/// second `survey.answered`. The other request's transaction holds its row uncommitted while
/// this one writes (PostgreSQL waits on the row, SQLite for the write lock). A different
/// score afterwards is a change, counted once.
async fn the_same_answer_twice_at_once_is_written_once(b: Backend) {
    let (store, f) = store(b).await;
    let answer = |score: i64| StoredAnswer {
        message_id: "m-1".into(),
        job_id: "nps-survey".into(),
        contact_id: "c-1".into(),
        scale: "nps".into(),
        score,
        comment: Some("快".into()),
        channel: "web".into(),
        answered_at: t(NOW),
        updated_at: t(NOW),
        changes: 0,
    };
    let mut first = store.begin().await.unwrap();
    assert!(first.upsert_answer(&answer(9)).await.unwrap());
    let second = {
        let store = store.clone();
        let a = answer(9);
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let wrote = tx.upsert_answer(&a).await.unwrap();
            tx.commit().await.unwrap();
            wrote
        })
    };
    f.until_waiting(1).await;
    first.commit().await.unwrap();
    assert!(
        !second.await.unwrap(),
        "{b:?}: the double click wrote again"
    );
    let mut tx = store.begin().await.unwrap();
    assert!(tx.upsert_answer(&answer(3)).await.unwrap());
    tx.commit().await.unwrap();
    let stored = store.answers_of("c-1").await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|a| (a.score, a.changes))
            .collect::<Vec<_>>(),
        [(3, 1)],
        "{b:?}"
    );
    store.close().await;
}

on_both!(
    the_same_answer_twice_at_once_is_written_once,
    a_deferred_greeting_cancelled_by_hand_stays_cancelled,
    an_event_another_writer_stored_meanwhile_is_the_same_duplicate,
    ingest_stores_once_and_stop_when_cancels,
    a_batch_of_stop_events_cancels_each_its_own_contacts_request,
    a_batch_of_new_and_planned_messages_counts_each,
    a_statement_failing_part_way_leaves_nothing_of_the_batch,
    a_completion_failing_part_way_leaves_nothing_of_the_batch,
    claim_takes_due_batches_under_a_lease,
    concurrent_claims_never_share_a_message,
    complete_records_every_outcome_in_batches,
    release_and_reap_return_claims_to_the_queue,
    leases_renew_and_reaped_claims_count_an_attempt,
    two_reapers_take_each_expired_claim_once,
    find_messages_applies_every_filter,
    the_whole_log_pages_in_order_across_jobs,
    a_stop_event_leaves_a_message_in_flight_to_its_send,
    two_ingests_of_one_contact_keep_both_changes,
    the_daily_figures_read_one_snapshot,
    two_soft_bounces_at_once_reach_the_threshold,
    a_claim_sees_what_another_node_is_sending_the_contact,
    a_claim_whose_rows_are_locked_for_a_moment_is_still_held,
    schema_versions_are_checked_on_open,
    copy_tables_name_every_table,
    copy_to_the_other_backend_keeps_every_row,
    store_check_counts_a_queue_that_drifted,
    the_v10_upgrade_queues_what_was_queued,
    a_reaper_spares_its_own_claims,
    changes_by_hand_keep_the_queue_whole,
    a_contact_is_found_by_its_address_beyond_ascii,
    the_v14_upgrade_keys_every_address,
    the_v16_upgrade_dates_contacts_by_their_newest_event,
    the_v19_upgrade_keeps_lookups_by_number_on_their_index,
    a_batch_of_new_and_stored_contacts_finds_the_stored_stops,
    a_big_batch_stores_what_small_batches_store,
    a_complaint_outranks_an_older_event_imported_after_it,
    a_bounce_by_an_address_no_contact_has_looks_back_a_week,
    the_send_window_counts_the_last_sends_by_their_last_attempt,
);
