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
//! decide. Its files follow what they store: `outbox` (planned messages, claims,
//! completions), `contacts` (contacts and events, ingest's batched writes), `log` (the
//! delivery log support searches), `receipts` (what carriers said about sent SMS, and
//! what they said before the send was recorded),
//! `replies` (what customers texted back), `answers` (survey answers), `reports` (the
//! counts reports are made of), `suppressions`, `feedback` (email bounces, complaints and
//! the reputation brake), `schedule` (anniversaries and
//! cron occurrences), `lease` (renewing and reaping claims), `ops` (support's hand actions
//! and the figures health and metrics read), `retention` (the purge and the daily counts
//! that outlive it), `erasure` (a person's data exported or erased); `schema` says when
//! migrations run, `copy` moves every row to another store, `sql` is the plumbing they
//! share.

mod actions;
mod answers;
mod backup;
mod check;
mod contacts;
mod contents;
mod copy;
mod erasure;
mod feedback;
mod figures;
mod lease;
mod log;
mod ops;
mod outbox;
mod receipts;
mod replies;
mod reports;
mod retention;
mod schedule;
mod schema;
mod search;
pub mod settings;
mod sql;
mod sqlite_rows;
mod stops;
mod suppressions;

pub use actions::{AgentAction, NewAction};
pub use answers::{SentSms, StoredAnswer, TokenMessage};
pub use check::CheckReport;
pub use contacts::contact_dates;
pub use contents::{StoredContent, pack_content, unpack_content};
pub use copy::{COPY_TABLES, CopyError, CopyOptions, CopyProgress, CopyReport, TableCount};
pub use erasure::{Erased, reference as erasure_reference};
pub use feedback::{
    BouncedMessage, Brake, FeedbackFigures, NewBounce, SoftRule, StoredBounce, Window,
};
pub use figures::Figures;
pub use lease::Reaped;
pub use log::LogFilter;
pub use ops::{HandAction, OutboxFigures, StateCount};
pub use outbox::{ClaimWith, Claimed, Completion, NewAttempt, NewMessage, StopEvent};
pub use receipts::{MAX_WAITING, NewReceipt, ReceiptMatch};
pub use replies::{ReplyKeyword, SMS_REPLY, StoredReply};
pub use reports::{AnswerRow, Converted, GoalSpec, GroupBy, Period, ScoreCount, StateRow};
pub use retention::{DailyCount, PURGE_BATCH, Purged};
pub use schedule::{AnniversaryRow, MOVED_TO_NEW_DAY};
pub use schema::{MigrationInfo, SchemaStatus};
pub use search::{Hit, SearchKey};
pub(crate) use settings::url_password;
pub use settings::{Kept, Retention, SqliteSync, StoreConfig};
pub use suppressions::{ContactSuppressions, Suppression, SuppressionList, Tasks, hashed_address};

use contacts::event_from_parts;
use sql::{CHUNK, on_pool, on_tx, placeholders};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, Sqlite, Transaction};
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
    /// A statement run on SQLite's handle directly (`sqlite_rows`) failed.
    #[error("store query failed: {message} (SQLite code {code})")]
    Sqlite { code: i32, message: String },
    #[error("{0}")]
    Config(String),
    /// Something the store's own rules rule out happened; the transaction is rolled back.
    #[error("store invariant broken: {0}")]
    Invariant(String),
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

/// A SQLite pool of `max` connections, without an idle timeout or a maximum lifetime: a
/// connection to a local file has nothing to gain from being replaced, and with either set
/// sqlx runs a maintenance task that once spun a core for minutes in CI (sqlx 0.9.0, `run
/// --once` never exiting: the task looping over acquire and release in
/// `spawn_maintenance_tasks`).
fn sqlite_pool(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max)
        .idle_timeout(None)
        .max_lifetime(None)
}

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

/// The page cache of a single busy writer's SQLite connection ([`Store::own_writer`]), in KiB;
/// every other connection keeps SQLite's default of 2 MiB. A claim looks its messages'
/// contacts and events up by id, and their recent sends by contact: keys in no order the
/// queue follows, so a leaf anywhere in each of those indexes, and once they outgrew 2 MiB
/// nearly every lookup read its leaf back from the file: 1.5 reads a message dispatching
/// 20,000, 6.7 dispatching 200,000 in one run; with 16 MiB, 2.6 (`bench/dispatch.sh` counts
/// them), and the CPU a message grows less with the run (README, Benchmarks). The cache
/// fills only as the writer touches pages: up to 14 MiB more for a busy dispatcher, next to
/// nothing for an idle daemon.
const WRITER_CACHE_KIB: u32 = 16 * 1024;

/// How long opening a PostgreSQL store waits for a first connection.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    tx: TxInner,
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
                Store::connect_sqlite(path, *synchronous, false).await?
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

    /// A scratch SQLite store (the forecast's copy of the store), ready for use.
    pub async fn open_scratch(path: &std::path::Path) -> Result<Store> {
        let store = Store::connect_sqlite(path, SqliteSync::Normal, true).await?;
        store.prepare_schema().await?;
        Ok(store)
    }

    /// Connect to the SQLite file at `path`; `scratch`: a throwaway copy (see below).
    async fn connect_sqlite(
        path: &std::path::Path,
        synchronous: SqliteSync,
        scratch: bool,
    ) -> Result<Store> {
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
            // Statement journals (a multi-row statement that may abort inside a
            // transaction keeps one; the hot writes avoid them, see `sql::insert_into`)
            // spill to a temporary file past 64 KiB, written, closed and deleted per
            // statement: ~4% of dispatch's CPU and ~10% of ingest's (perf). They are
            // rollback scratch, never durable state.
            .pragma("temp_store", "memory");
        // A scratch copy's pages are read through a memory map: through the 2 MiB page cache
        // every miss was a `pread` (2 million in the forecast's week bench, a quarter of its
        // CPU). SQLite caps the map at 2 GiB; the file is private to the process.
        let opts = if scratch {
            opts.pragma("mmap_size", "2147483648")
        } else {
            opts
        };
        let pool = sqlite_pool(4)
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open {
                target: path.display().to_string(),
                source,
            })?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
            target: path.display().to_string(),
        })
    }

    /// A handle whose transactions all run on one connection of its own (SQLite; the same
    /// pool on PostgreSQL), for a single busy writer (the ingest queue, a dispatcher). A SQLite
    /// connection drops its page cache whenever another connection wrote since its last
    /// transaction, and the shared pool hands its connections out in turn, so a writer going
    /// through it re-reads the pages it needs for nearly every transaction.
    ///
    /// That connection keeps a larger page cache ([`WRITER_CACHE_KIB`]).
    pub fn own_writer(&self) -> Store {
        match &self.pool {
            Pool::Sqlite(p) => Store {
                pool: Pool::Sqlite(
                    sqlite_pool(1).connect_lazy_with(
                        (*p.connect_options())
                            .clone()
                            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}")),
                    ),
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

    /// A copy of the whole store in a new SQLite file (the forecast replays on it): on SQLite
    /// a page-for-page copy from one read snapshot (SQLite's backup API); on PostgreSQL the
    /// table copy of `store copy`, which reads one snapshot too.
    pub async fn snapshot_to(&self, path: &std::path::Path) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(p) => backup::backup(p, path).await,
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

impl Tx {
    pub async fn commit(self) -> Result<()> {
        match self.tx {
            TxInner::Sqlite(t) => t.commit().await?,
            TxInner::Postgres(t) => t.commit().await?,
        }
        Ok(())
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

    /// The single writers' connection keeps the larger page cache, the shared pool SQLite's
    /// default (2,000 KiB, given as a negative number of KiB).
    #[tokio::test]
    async fn a_writer_connection_keeps_a_larger_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect_sqlite(&dir.path().join("s.db"), SqliteSync::Full, false)
            .await
            .unwrap();
        async fn cache_size(s: &Store) -> i64 {
            let Pool::Sqlite(p) = &s.pool else {
                unreachable!("a SQLite store")
            };
            sqlx::query_scalar("PRAGMA cache_size")
                .fetch_one(p)
                .await
                .unwrap()
        }
        assert_eq!(
            cache_size(&store.own_writer()).await,
            -i64::from(WRITER_CACHE_KIB)
        );
        assert_eq!(cache_size(&store).await, -2000);
    }
}
