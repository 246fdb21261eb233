//! Schema versions: the migrations this binary carries, the ones a store has applied, and
//! when they are applied.
//!
//! The rule, checked by every verb that opens the store ([`Store::open`]):
//!
//! - A store migrated by a **newer** aftercare (it has applied a version this binary does
//!   not know) is refused on both backends: an old binary would write rows the new schema
//!   does not expect.
//! - **SQLite** migrates on open. One machine owns the file, and a newcomer's first `run`
//!   should just work.
//! - **PostgreSQL** never migrates on open: several daemons share it, and a new binary
//!   started on one node must not change the schema under the others mid-upgrade. A store
//!   that is behind is refused until somebody runs `aftercare migrate`, the explicit step of
//!   an upgrade (sqlx holds an advisory lock while it migrates, so two at once is safe).
//!
//! Versions are sqlx's: the number before the `_` in `migrations/<backend>/NNNN_name.sql`,
//! recorded in sqlx's `_sqlx_migrations` table.

use super::sql::on_pool;
use super::{Pool, Result, Store, StoreError};
use sqlx::migrate::Migrator;
use sqlx::{AssertSqlSafe, Row};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// A migration, by version and description (`1 init`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
}

impl std::fmt::Display for MigrationInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04} {}", self.version, self.description)
    }
}

/// Where a store's schema stands against this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Versions the store has applied, ascending.
    pub applied: Vec<i64>,
    /// This binary's migrations the store has not applied, ascending.
    pub pending: Vec<MigrationInfo>,
    /// Applied versions this binary does not know: a newer aftercare migrated the store.
    pub unknown: Vec<i64>,
    /// The newest version this binary knows.
    pub known: i64,
}

impl SchemaStatus {
    /// The store's version: its newest applied migration (`None`: no schema yet).
    pub fn version(&self) -> Option<i64> {
        self.applied.last().copied()
    }

    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }

    fn version_text(&self) -> String {
        match self.version() {
            Some(v) => format!("schema version {v}"),
            None => "no schema yet".into(),
        }
    }
}

impl Store {
    pub(super) fn migrator(&self) -> &'static Migrator {
        match self.pool {
            Pool::Sqlite(_) => &SQLITE,
            Pool::Postgres(_) => &POSTGRES,
        }
    }

    /// The store's schema against this binary's migrations. Reads only: a store without
    /// sqlx's table has applied nothing.
    pub async fn schema(&self) -> Result<SchemaStatus> {
        let migrator = self.migrator();
        let table = migrator.table_name.to_string();
        // Whether a table exists is the one thing the two catalogs spell differently.
        let exists_sql = match self.pool {
            Pool::Sqlite(_) => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Pool::Postgres(_) => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        // Only successful migrations count; a failed one is sqlx's to report on `migrate`.
        let versions_sql = format!("SELECT version FROM {table} WHERE success ORDER BY version");
        let applied: Vec<i64> = on_pool!(self, |pool, _b| {
            let n: i64 = sqlx::query_scalar(exists_sql)
                .bind(&table)
                .fetch_one(pool)
                .await?;
            if n == 0 {
                Vec::new()
            } else {
                sqlx::query(AssertSqlSafe(versions_sql))
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<Result<_, _>>()?
            }
        });
        let ups = || {
            migrator
                .iter()
                .filter(|m| !m.migration_type.is_down_migration())
        };
        Ok(SchemaStatus {
            pending: ups()
                .filter(|m| !applied.contains(&m.version))
                .map(|m| MigrationInfo {
                    version: m.version,
                    description: m.description.to_string(),
                })
                .collect(),
            unknown: applied
                .iter()
                .copied()
                .filter(|v| !migrator.version_exists(*v))
                .collect(),
            known: ups().map(|m| m.version).max().unwrap_or(0),
            applied,
        })
    }

    /// Apply this binary's pending migrations; returns what was applied (empty when the
    /// schema was current). Refuses a store migrated by a newer aftercare.
    pub async fn migrate(&self) -> Result<Vec<MigrationInfo>> {
        let before = self.schema().await?;
        self.refuse_newer(&before)?;
        on_pool!(self, |pool, _b| self.migrator().run(pool).await?);
        self.key_contacts().await?;
        // Another node may have applied some of them meanwhile: report what this call added.
        let after = self.schema().await?;
        Ok(before
            .pending
            .into_iter()
            .filter(|m| after.applied.contains(&m.version))
            .collect())
    }

    /// At open: refuse a newer schema; migrate SQLite; refuse PostgreSQL that is behind.
    pub(super) async fn prepare_schema(&self) -> Result<()> {
        let status = self.schema().await?;
        self.refuse_newer(&status)?;
        if status.pending.is_empty() {
            // A migration to v14 that stopped before the binary keyed its contacts.
            self.key_contacts().await?;
            return Ok(());
        }
        match self.pool {
            Pool::Sqlite(_) => {
                self.migrate().await?;
                Ok(())
            }
            Pool::Postgres(_) => Err(StoreError::NeedsMigration {
                target: self.target.clone(),
                have: status.version_text(),
                known: status.known,
            }),
        }
    }

    fn refuse_newer(&self, status: &SchemaStatus) -> Result<()> {
        match status.unknown.iter().max() {
            Some(v) => Err(StoreError::SchemaTooNew {
                target: self.target.clone(),
                have: *v,
                known: status.known,
            }),
            None => Ok(()),
        }
    }
}
