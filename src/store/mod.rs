//! The store: contacts, events, the outbox and the attempt log, in SQLite or PostgreSQL.
//!
//! One implementation for both backends. Every query is written once, in SQL both dialects
//! accept (`$1` placeholders, `ON CONFLICT`, `RETURNING`, partial indexes, instants as
//! integer milliseconds, JSON as text), and the `on_pool!` / `on_tx!` macros compile each body
//! once per backend with concrete sqlx types, so there is no `Any` driver (sqlx #3521) and no
//! wall of generic bounds. The only dialect difference in the flow is the claim's
//! `FOR UPDATE SKIP LOCKED`; reading the catalog (`schema`, `copy`) is the other.
//!
//! The store knows nothing of jobs, templates or channels: it stores what plan and dispatch
//! decide. `schema` says when migrations run; `copy` moves every row to another store;
//! `receipts` records what carriers said about sent SMS; `replies` what customers texted back.

mod copy;
mod ingest;
mod lease;
mod ops;
mod query;
mod receipts;
mod replies;
mod schedule;
mod schema;
pub mod settings;
mod suppress;

pub use copy::{COPY_TABLES, CopyError, CopyOptions, CopyProgress, CopyReport, TableCount};
pub use lease::Reaped;
pub use ops::{HandAction, OutboxFigures, StateCount};
pub use query::LogFilter;
pub use receipts::{NewReceipt, ReceiptMatch};
pub use replies::{ReplyKeyword, SMS_REPLY, StoredReply};
pub use schedule::{AnniversaryRow, Suppression};
pub use schema::{MigrationInfo, SchemaStatus};
pub use settings::{SqliteSync, StoreConfig};

use crate::clock::{from_millis, to_millis};
use crate::model::{Class, Contact, Event, MessageState, Outcome};
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Row, Sqlite, Transaction};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {target}: {source}")]
    Open { target: String, source: sqlx::Error },
    #[error(
        "cannot open the store at {target}: no connection within {secs}s (refused or unanswered); \
         check that PostgreSQL runs there and accepts connections from this host"
    )]
    Unreachable { target: String, secs: u64 },
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("{0}")]
    Config(String),
    #[error(
        "the store at {target} has schema version {have}, newer than this aftercare knows (up to {known}): \
         a newer aftercare migrated it. Run that release or a newer one, or restore a backup from before the upgrade"
    )]
    SchemaTooNew {
        target: String,
        have: i64,
        known: i64,
    },
    #[error(
        "the store at {target} has {have}, and this aftercare needs schema version {known}: \
         run `aftercare migrate` once (PostgreSQL stores are not migrated on start, so that one \
         node's upgrade does not change the schema under the others), then start again"
    )]
    NeedsMigration {
        target: String,
        have: String,
        known: i64,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle on the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// The file or the URL without a password, for messages.
    target: String,
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$begin` to the statement that
/// opens a write transaction (`BEGIN IMMEDIATE` on SQLite takes the write lock up front, so
/// two writers queue on busy_timeout instead of failing on lock upgrade).
macro_rules! on_pool {
    ($self:expr, |$pool:ident, $begin:ident| $body:expr) => {
        match &$self.pool {
            $crate::store::Pool::Sqlite($pool) => {
                #[allow(unused_variables)]
                let $begin = "BEGIN IMMEDIATE";
                $body
            }
            $crate::store::Pool::Postgres($pool) => {
                #[allow(unused_variables)]
                let $begin = "BEGIN";
                $body
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to the transaction's concrete connection.
macro_rules! on_tx {
    ($self:expr, |$conn:ident| $body:expr) => {
        match &mut $self.tx {
            $crate::store::TxInner::Sqlite(t) => {
                let $conn = &mut **t;
                $body
            }
            $crate::store::TxInner::Postgres(t) => {
                let $conn = &mut **t;
                $body
            }
        }
    };
}

pub(crate) use {on_pool, on_tx};

/// How long opening a PostgreSQL store waits for a first connection.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's bind limits.
const CHUNK: usize = 100;

/// A value for a dynamically built statement.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(Option<String>),
    Int(Option<i64>),
}

/// Bind every value of a `Vec<Bind>` in order.
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::Text(s) => q.bind(s.clone()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}
pub(crate) use bind_all;

/// [`bind_all!`] for a `Vec<Bind>` that is not needed afterwards: moves the values in.
macro_rules! bind_vec {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Int(i) => q.bind(i),
            };
        }
        q
    }};
}
pub(crate) use bind_vec;

/// The most rows one multi-row statement of the hot paths (ingest, completions) takes.
pub(crate) const ROWS: usize = 64;

/// `items` cut into runs of `ROWS`, then of the powers of two that make up the rest (37 →
/// 32, 4, 1): a batch of any size uses a few statement texts out of eight, so they stay in
/// the connection's prepared-statement cache instead of being parsed for every batch.
pub(crate) fn shaped<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let n = if items.len() >= ROWS {
            ROWS
        } else {
            1 << items.len().ilog2()
        };
        let (head, rest) = items.split_at(n);
        items = rest;
        Some(head)
    })
}

/// `$start, $start+1, ...` for `n` values.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2), ($3, $4)` for `rows` rows of `cols` values; `(?, ?), (?, ?)` on SQLite, where
/// sqlx looks up every numbered parameter by name, which is quadratic in their number (a
/// hundred-row statement spent more time binding than executing).
pub(crate) fn values_rows(rows: usize, cols: usize, pg: bool) -> String {
    if !pg {
        let row = format!("({})", vec!["?"; cols].join(", "));
        return vec![row; rows].join(", ");
    }
    (0..rows)
        .map(|r| format!("({})", placeholders(1 + r * cols, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Insert a planned message on `$conn`; evaluates to `false` when the (job, dedupe key,
/// step) exists already. A macro so that it compiles against each backend's connection.
macro_rules! insert_message {
    ($conn:expr, $m:expr, $now:expr) => {{
        let m: &NewMessage = $m;
        let n = sqlx::query(query::INSERT_MESSAGE)
            .bind(&m.id)
            .bind(&m.job_id)
            .bind(&m.contact_id)
            .bind(&m.event_id)
            .bind(m.step)
            .bind(&m.dedupe_key)
            .bind(&m.template)
            .bind(m.state.as_str())
            .bind(to_millis(m.due_at))
            .bind(m.not_after.map(to_millis))
            .bind(&m.reason)
            .bind(to_millis($now))
            .bind(m.class.as_str())
            .bind(&m.token)
            .bind(&m.channel_plan)
            .execute($conn)
            .await?
            .rows_affected();
        n == 1
    }};
}

pub(crate) enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    tx: TxInner,
}

/// A message the planner wants in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: String,
    pub job_id: String,
    pub contact_id: String,
    pub event_id: Option<String>,
    pub step: i64,
    pub dedupe_key: String,
    pub template: String,
    pub due_at: DateTime<Utc>,
    pub not_after: Option<DateTime<Utc>>,
    /// `Scheduled`, or `Cancelled` when it is known at planning time that it must not go.
    pub state: MessageState,
    pub reason: Option<String>,
    pub class: Class,
    pub token: Option<String>,
    /// `webhook` for a callback task; `None`: the job's customer channels.
    pub channel_plan: Option<String>,
}

/// What a claim reads besides the messages.
#[derive(Debug, Clone, Default)]
pub struct ClaimWith {
    /// Event types some job's `stop_when` names.
    pub stop_types: Vec<String>,
    /// Marketing sends since this instant (the longest frequency-cap period back).
    pub sends_since: Option<DateTime<Utc>>,
}

/// A stored event's type and `data`, as `stop_when` compares it.
pub type StopEvent = (String, Map<String, Value>);

/// A message claimed for sending, with what rendering needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub job_id: String,
    pub step: i64,
    pub dedupe_key: String,
    pub template: String,
    pub due_at: DateTime<Utc>,
    pub not_after: Option<DateTime<Utc>>,
    /// Rows in the attempt log so far: the next attempt is number `attempts + 1`.
    pub attempts: i64,
    /// Times dispatch has tried it (one try may log several attempts: SMS failover, channel
    /// fallback); what `dispatch.retry` counts.
    pub tries: i64,
    pub class: Class,
    pub token: Option<String>,
    pub channel_plan: Option<String>,
    pub contact: Contact,
    pub event: Option<Event>,
    pub claim_token: String,
    /// The contact's stored events of the types some job stops on.
    pub stop_events: Vec<StopEvent>,
    /// (channel, reason) for each of the contact's addresses on the suppression list.
    pub suppressed: Vec<(String, String)>,
    /// (message id, sent at) of the contact's recent marketing messages (frequency caps).
    pub recent_sends: Vec<(String, DateTime<Utc>)>,
}

/// One attempt to record.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// 1 for the first try.
    pub number: i64,
    pub at: DateTime<Utc>,
    pub channel: String,
    pub address: Option<String>,
    pub outcome: Outcome,
    pub code: Option<i64>,
    pub detail: Option<String>,
    pub provider_id: Option<String>,
    pub node: String,
    pub duration_ms: i64,
    /// The SMS gateway the request went to; `None` for other channels.
    pub gateway: Option<String>,
}

/// What became of a claimed message; written in batches.
#[derive(Debug, Clone)]
pub struct Completion {
    pub message_id: String,
    pub claim_token: String,
    pub state: MessageState,
    /// The attempts this try made, in order, numbered on from the message's attempts so far
    /// (`attempts + 1`, `+ 2`, ...): one per SMS gateway asked and per channel fallen back
    /// to. Empty when it did not try to send (cancelled, deferred).
    pub attempts: Vec<NewAttempt>,
    /// Next try, for `Retrying`.
    pub retry_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub channel: Option<String>,
    pub address: Option<String>,
    pub at: DateTime<Utc>,
    /// The reminder planned by this send, inserted in the same transaction.
    pub next: Option<NewMessage>,
    /// The try met a fault of ours, not the message's (the SMTP relay refused our login):
    /// its attempts are recorded, but it does not count toward `max_attempts` (`tries`).
    pub uncounted: bool,
}

impl Store {
    /// Open for use: connect (creating the SQLite file and its folder if needed), then check
    /// the schema version, migrating SQLite and refusing a PostgreSQL store that is behind
    /// (see `schema.rs` for why).
    pub async fn open(cfg: &StoreConfig) -> Result<Store> {
        let store = Store::connect(cfg).await?;
        store.prepare_schema().await?;
        Ok(store)
    }

    /// Connect without looking at the schema: for `migrate` and `store copy`.
    pub async fn connect(cfg: &StoreConfig) -> Result<Store> {
        Ok(match cfg {
            StoreConfig::Sqlite { path, synchronous } => {
                if let Some(dir) = path.parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Config(format!(
                            "cannot create the store folder {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(match synchronous {
                        SqliteSync::Full => SqliteSynchronous::Full,
                        SqliteSync::Normal => SqliteSynchronous::Normal,
                    })
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(false)
                    // Statement journals (every multi-row INSERT ... ON CONFLICT or UPDATE
                    // inside a transaction keeps one) spill to a temporary file past 64 KiB,
                    // written, closed and deleted per statement: ~4% of dispatch's CPU and
                    // ~10% of ingest's (perf). They are rollback scratch, never durable state.
                    .pragma("temp_store", "memory");
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts)
                    .await
                    .map_err(|source| StoreError::Open {
                        target: path.display().to_string(),
                        source,
                    })?;
                Store {
                    pool: Pool::Sqlite(pool),
                    target: path.display().to_string(),
                }
            }
            StoreConfig::Postgres { url, password } => {
                let mut opts =
                    PgConnectOptions::from_str(url).map_err(|source| StoreError::Open {
                        target: redact_url(url),
                        source,
                    })?;
                if let Some(pw) = password
                    .read("store.password")
                    .map_err(|e| StoreError::Config(e.to_string()))?
                {
                    opts = opts.password(&pw);
                }
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(PG_CONNECT_TIMEOUT)
                    .connect_with(opts)
                    .await
                    .map_err(|source| match source {
                        // sqlx retries a refused connection until the timeout and then
                        // reports only the timeout.
                        sqlx::Error::PoolTimedOut => StoreError::Unreachable {
                            target: redact_url(url),
                            secs: PG_CONNECT_TIMEOUT.as_secs(),
                        },
                        source => StoreError::Open {
                            target: redact_url(url),
                            source,
                        },
                    })?;
                Store {
                    pool: Pool::Postgres(pool),
                    target: redact_url(url),
                }
            }
        })
    }

    /// A handle whose transactions all run on one connection of its own (SQLite; the same
    /// pool on PostgreSQL), for a single busy writer (the ingest queue, a dispatcher). A SQLite
    /// connection drops its page cache whenever another connection wrote since its last
    /// transaction, and the shared pool hands its connections out in turn, so a writer going
    /// through it re-reads the pages it needs for nearly every transaction.
    pub fn own_writer(&self) -> Store {
        match &self.pool {
            Pool::Sqlite(p) => Store {
                pool: Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_lazy_with((*p.connect_options()).clone()),
                ),
                target: self.target.clone(),
            },
            Pool::Postgres(_) => self.clone(),
        }
    }

    /// The SQLite file or the PostgreSQL URL (without a password).
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        on_pool!(self, |p, _b| p.close().await)
    }

    pub async fn begin(&self) -> Result<Tx> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => Tx {
                tx: TxInner::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            },
            Pool::Postgres(p) => Tx {
                tx: TxInner::Postgres(p.begin().await?),
            },
        })
    }

    /// Claim up to `limit` due messages for `node` under a lease ending at `until` (renewed by
    /// [`Store::renew`] while the node lives; [`Store::reap`] returns it once it expires). With each
    /// message comes what its policy checks need about its contact (stored stop events,
    /// suppressed addresses, recent marketing sends), read in the same transaction so
    /// dispatch needs no query per message.
    pub async fn claim(
        &self,
        node: &str,
        token: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
        with: &ClaimWith,
    ) -> Result<Vec<Claimed>> {
        let pg = matches!(self.pool, Pool::Postgres(_));
        let claim_sql = if pg {
            query::CLAIM_PG
        } else {
            query::CLAIM_SQLITE
        };
        let now = to_millis(now);
        let mut stop_binds = vec![Bind::Text(Some(token.to_string()))];
        stop_binds.extend(with.stop_types.iter().map(|t| Bind::Text(Some(t.clone()))));
        let stop_sql = format!(
            "SELECT e.contact_id, e.type, e.data FROM events e WHERE e.type IN ({}) \
             AND e.contact_id IN (SELECT contact_id FROM messages WHERE state = 'claimed' AND claim_token = $1)",
            placeholders(2, with.stop_types.len())
        );
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let n = sqlx::query(claim_sql)
                .bind(token)
                .bind(node)
                .bind(to_millis(until))
                .bind(now)
                .bind(limit)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                tx.commit().await?;
                return Ok(Vec::new());
            }
            let rows = sqlx::query(query::CLAIMED)
                .bind(token)
                .fetch_all(&mut *tx)
                .await?;
            let mut stops: HashMap<String, Vec<StopEvent>> = HashMap::new();
            if !with.stop_types.is_empty() {
                for r in bind_all!(sqlx::query(AssertSqlSafe(stop_sql)), &stop_binds)
                    .fetch_all(&mut *tx)
                    .await?
                {
                    let data = json_map(r.try_get(2)?)?;
                    stops
                        .entry(r.try_get(0)?)
                        .or_default()
                        .push((r.try_get(1)?, data));
                }
            }
            let mut suppressed: HashMap<(String, String), String> = HashMap::new();
            for r in sqlx::query(query::CLAIMED_SUPPRESSIONS)
                .bind(token)
                .fetch_all(&mut *tx)
                .await?
            {
                suppressed.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
            }
            let mut sends: HashMap<String, Vec<(String, DateTime<Utc>)>> = HashMap::new();
            if let Some(since) = with.sends_since {
                for r in sqlx::query(query::CLAIMED_RECENT_SENDS)
                    .bind(token)
                    .bind(to_millis(since))
                    .fetch_all(&mut *tx)
                    .await?
                {
                    sends
                        .entry(r.try_get(0)?)
                        .or_default()
                        .push((r.try_get(2)?, from_millis(r.try_get(1)?)));
                }
            }
            tx.commit().await?;
            rows.iter()
                .map(|r| {
                    let mut c = claimed_from_row(r, token)?;
                    c.stop_events = stops.get(&c.contact.id).cloned().unwrap_or_default();
                    c.recent_sends = sends.get(&c.contact.id).cloned().unwrap_or_default();
                    if let Some(email) = &c.contact.email
                        && let Some(reason) =
                            suppressed.get(&("email".to_string(), email.to_lowercase()))
                    {
                        c.suppressed.push(("email".into(), reason.clone()));
                    }
                    if let Some(phone) = &c.contact.phone
                        && let Some(reason) = suppressed.get(&("sms".to_string(), phone.clone()))
                    {
                        c.suppressed.push(("sms".into(), reason.clone()));
                    }
                    Ok(c)
                })
                .collect::<Result<Vec<_>>>()
        })
    }

    /// Put claimed messages back untouched (shutdown before they were tried).
    pub async fn release(&self, token: &str, ids: &[String], now: DateTime<Utc>) -> Result<()> {
        let now = to_millis(now);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            for id in ids {
                sqlx::query(query::RELEASE)
                    .bind(id)
                    .bind(token)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Record a batch of outcomes in one transaction, a few multi-row statements of a few
    /// shapes (see [`shaped`]), not one round trip each. Returns how many were stale: the lease was lost and
    /// the message reclaimed elsewhere, so the completion was not applied.
    pub async fn complete(&self, batch: &[Completion]) -> Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let pg = matches!(self.pool, Pool::Postgres(_));
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let mut applied: HashSet<String> = HashSet::with_capacity(batch.len());
            for chunk in shaped(batch) {
                let (sql, binds) = query::complete_sql(chunk, pg);
                for r in bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .fetch_all(&mut *tx)
                    .await?
                {
                    applied.insert(r.try_get(0)?);
                }
            }
            let done: Vec<&Completion> = batch
                .iter()
                .filter(|c| applied.contains(&c.message_id))
                .collect();
            let attempts: Vec<(&Completion, &NewAttempt)> = done
                .iter()
                .flat_map(|c| c.attempts.iter().map(move |a| (*c, a)))
                .collect();
            for chunk in shaped(&attempts) {
                let (sql, binds) = query::attempts_sql(chunk, pg);
                bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .execute(&mut *tx)
                    .await?;
            }
            let next: Vec<(&NewMessage, DateTime<Utc>)> = done
                .iter()
                .filter_map(|c| c.next.as_ref().map(|m| (m, c.at)))
                .collect();
            for chunk in shaped(&next) {
                let (sql, binds) = query::insert_messages_sql(chunk, pg);
                bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(batch.len() - applied.len())
        })
    }

    /// A copy of the whole store in a new SQLite file (the forecast replays on it): on SQLite
    /// `VACUUM INTO`, a consistent snapshot in one statement; on PostgreSQL the table copy of
    /// `store copy`, which reads one snapshot too.
    pub async fn snapshot_to(&self, path: &std::path::Path) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let target = path.to_string_lossy().replace('\'', "''");
                sqlx::query(AssertSqlSafe(format!("VACUUM INTO '{target}'")))
                    .execute(p)
                    .await?;
                Ok(())
            }
            Pool::Postgres(_) => {
                let scratch = Store::open(&StoreConfig::Sqlite {
                    path: path.to_path_buf(),
                    synchronous: SqliteSync::Normal,
                })
                .await?;
                let copied = self
                    .copy_to(&scratch, copy::CopyOptions::default(), &mut |_| {})
                    .await;
                scratch.close().await;
                copied
                    .map(|_| ())
                    .map_err(|e| StoreError::Config(format!("forecast snapshot: {e}")))
            }
        }
    }

    /// When the next scheduled message falls due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        on_pool!(self, |pool, _b| {
            let v: Option<i64> = sqlx::query_scalar(query::NEXT_DUE).fetch_one(pool).await?;
            Ok(v.map(from_millis))
        })
    }

    /// Message counts by state, for the status line and metrics.
    pub async fn counts(&self) -> Result<Vec<(MessageState, i64)>> {
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(query::COUNTS).fetch_all(pool).await?;
            let mut out = Vec::new();
            for r in rows {
                let s: String = r.try_get(0)?;
                if let Some(state) = MessageState::parse(&s) {
                    out.push((state, r.try_get::<i64, _>(1)?));
                }
            }
            Ok(out)
        })
    }
}

/// The date fields of a contact that anniversary jobs can use: `birthday` and every
/// attribute holding a `YYYY-MM-DD` date, as (field key, date).
pub fn contact_dates(c: &Contact) -> Vec<(String, String)> {
    let is_date =
        |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10;
    let mut out = Vec::new();
    if let Some(b) = c.birthday.as_deref().filter(|b| is_date(b)) {
        out.push(("birthday".to_string(), b.to_string()));
    }
    for (k, v) in &c.attributes {
        if let Some(s) = v.as_str().filter(|s| is_date(s)) {
            out.push((format!("attributes.{k}"), s.to_string()));
        }
    }
    out
}

/// Hide a password that somebody put in a URL despite the docs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        // Only when there is a password: `user@host` is printed as it is.
        (Some(s), Some(at)) if at > s && url[s + 3..at].contains(':') => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn json_map(text: String) -> Result<Map<String, Value>> {
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Ok(Map::new()),
    }
}

fn opt_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.map(from_millis)
}

fn event_from_parts(
    id: String,
    kind: String,
    contact_id: String,
    at_ms: i64,
    offset: i64,
    data: String,
) -> Result<Event> {
    let offset = FixedOffset::east_opt(i32::try_from(offset).unwrap_or(0))
        .unwrap_or(FixedOffset::east_opt(0).expect("zero offset"));
    Ok(Event {
        id,
        kind,
        occurred_at: from_millis(at_ms).with_timezone(&offset),
        contact_id,
        data: json_map(data)?,
    })
}

fn claimed_from_row<R: Row>(r: &R, token: &str) -> Result<Claimed>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let contact = Contact {
        id: r.try_get("contact_id")?,
        name: r.try_get("c_name")?,
        email: r.try_get("c_email")?,
        phone: r.try_get("c_phone")?,
        locale: r.try_get("c_locale")?,
        timezone: r.try_get("c_timezone")?,
        birthday: r.try_get("c_birthday")?,
        attributes: json_map(r.try_get("c_attributes")?)?,
        consent: json_map(r.try_get("c_consent")?)?,
    };
    let event_id: Option<String> = r.try_get("event_id")?;
    let event_type: Option<String> = r.try_get("e_type")?;
    let event = match (event_id, event_type) {
        (Some(id), Some(kind)) => Some(event_from_parts(
            id,
            kind,
            contact.id.clone(),
            r.try_get("e_occurred_at")?,
            r.try_get::<Option<i64>, _>("e_offset")?.unwrap_or(0),
            r.try_get::<Option<String>, _>("e_data")?
                .unwrap_or_else(|| "{}".into()),
        )?),
        _ => None,
    };
    Ok(Claimed {
        id: r.try_get("id")?,
        job_id: r.try_get("job_id")?,
        step: r.try_get("step")?,
        dedupe_key: r.try_get("dedupe_key")?,
        template: r.try_get("template")?,
        due_at: from_millis(r.try_get("due_at")?),
        not_after: opt_ms(r.try_get("not_after")?),
        attempts: r.try_get("attempts")?,
        tries: r.try_get("tries")?,
        class: Class::parse(&r.try_get::<String, _>("class")?),
        token: r.try_get("token")?,
        channel_plan: r.try_get("channel_plan")?,
        contact,
        event,
        claim_token: token.to_string(),
        stop_events: Vec::new(),
        suppressed: Vec::new(),
        recent_sends: Vec::new(),
    })
}

fn contact_from_row<R: Row>(r: &R) -> Result<Contact>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Contact {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        locale: r.try_get("locale")?,
        timezone: r.try_get("timezone")?,
        birthday: r.try_get("birthday")?,
        attributes: json_map(r.try_get("attributes")?)?,
        consent: json_map(r.try_get("consent")?)?,
    })
}

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self.tx {
            TxInner::Sqlite(t) => t.commit().await?,
            TxInner::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// The digest of a stored event with this id, if there is one.
    pub async fn event_digest(&mut self, id: &str) -> Result<Option<String>> {
        on_tx!(self, |conn| {
            Ok(sqlx::query_scalar(query::EVENT_DIGEST)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?)
        })
    }

    pub async fn contact(&mut self, id: &str) -> Result<Option<Contact>> {
        on_tx!(self, |conn| {
            let row = sqlx::query(query::CONTACT)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            row.as_ref().map(contact_from_row).transpose()
        })
    }

    /// Store an event; `false` if its id was taken meanwhile.
    pub async fn insert_event(
        &mut self,
        e: &Event,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let data = Value::Object(e.data.clone()).to_string();
        on_tx!(self, |conn| {
            let n = sqlx::query(query::INSERT_EVENT)
                .bind(&e.id)
                .bind(&e.kind)
                .bind(&e.contact_id)
                .bind(e.occurred_at.timestamp_millis())
                .bind(i64::from(e.occurred_at.offset().local_minus_utc()))
                .bind(to_millis(now))
                .bind(e.order_id())
                .bind(&data)
                .bind(digest)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            Ok(n == 1)
        })
    }

    pub async fn upsert_contact(&mut self, c: &Contact, now: DateTime<Utc>) -> Result<()> {
        let attributes = Value::Object(c.attributes.clone()).to_string();
        let consent = Value::Object(c.consent.clone()).to_string();
        on_tx!(self, |conn| {
            sqlx::query(query::UPSERT_CONTACT)
                .bind(&c.id)
                .bind(&c.name)
                .bind(&c.email)
                .bind(&c.phone)
                .bind(&c.locale)
                .bind(&c.timezone)
                .bind(&c.birthday)
                .bind(&attributes)
                .bind(&consent)
                .bind(to_millis(now))
                .execute(&mut *conn)
                .await?;
            sqlx::query(query::DELETE_CONTACT_DATES)
                .bind(&c.id)
                .execute(&mut *conn)
                .await?;
            for (field, date) in contact_dates(c) {
                sqlx::query(query::INSERT_CONTACT_DATE)
                    .bind(&c.id)
                    .bind(&field)
                    .bind(&date[5..])
                    .bind(&date)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        })
    }

    pub async fn insert_message(&mut self, m: &NewMessage, now: DateTime<Utc>) -> Result<bool> {
        on_tx!(self, |conn| Ok(insert_message!(&mut *conn, m, now)))
    }

    /// Pending messages of `job_id` for `contact_id`, with the data of the event that
    /// triggered each (for `stop_when` matching).
    pub async fn pending_with_trigger(
        &mut self,
        contact_id: &str,
        job_id: &str,
    ) -> Result<Vec<(String, Map<String, Value>)>> {
        on_tx!(self, |conn| {
            let rows = sqlx::query(query::PENDING_WITH_TRIGGER)
                .bind(contact_id)
                .bind(job_id)
                .fetch_all(&mut *conn)
                .await?;
            rows.iter()
                .map(|r| {
                    let data: Option<String> = r.try_get(1)?;
                    Ok((
                        r.try_get::<String, _>(0)?,
                        json_map(data.unwrap_or_else(|| "{}".into()))?,
                    ))
                })
                .collect()
        })
    }

    /// `event.data` of the contact's stored events of type `kind`.
    pub async fn event_data_of(
        &mut self,
        contact_id: &str,
        kind: &str,
    ) -> Result<Vec<Map<String, Value>>> {
        on_tx!(self, |conn| {
            let rows = sqlx::query(query::EVENT_DATA_OF)
                .bind(contact_id)
                .bind(kind)
                .fetch_all(&mut *conn)
                .await?;
            rows.iter()
                .map(|r| json_map(r.try_get::<String, _>(0)?))
                .collect()
        })
    }

    /// Cancel a message that has not been sent, with the reason support will read.
    pub async fn cancel(&mut self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        on_tx!(self, |conn| {
            let n = sqlx::query(query::CANCEL)
                .bind(id)
                .bind(reason)
                .bind(to_millis(now))
                .execute(&mut *conn)
                .await?
                .rows_affected();
            Ok(n == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
