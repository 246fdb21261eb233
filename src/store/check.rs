//! `store check` and `store backup`: is this store whole (a restored backup, a store after
//! a crash), and a consistent copy of a live SQLite store.
//!
//! The check reads only: the schema version against this binary, every reference between
//! tables (an attempt without its message, a message of a contact that is not there...),
//! the queue PostgreSQL's triggers keep against `messages`,
//! SQLite's own `integrity_check`, and each table's row count.

use super::sql::on_pool;
use super::{Pool, Result, SchemaStatus, Store, StoreError};
use sqlx::AssertSqlSafe;

/// Every reference between tables: (what, the rows that break it). Nullable references
/// (`messages.event_id`, `replies.contact_id`) count only when set.
const REFERENCES: &[(&str, &[&str], &str)] = &[
    (
        "events.contact_id → contacts",
        &["events", "contacts"],
        "SELECT COUNT(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = e.contact_id)",
    ),
    (
        "messages.contact_id → contacts",
        &["messages", "contacts"],
        "SELECT COUNT(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = m.contact_id)",
    ),
    (
        "messages.event_id → events",
        &["messages", "events"],
        "SELECT COUNT(*) FROM messages m WHERE m.event_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = m.event_id)",
    ),
    (
        "attempts.message_id → messages",
        &["attempts", "messages"],
        "SELECT COUNT(*) FROM attempts a WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = a.message_id)",
    ),
    (
        "receipts → attempts",
        &["receipts", "attempts"],
        "SELECT COUNT(*) FROM receipts r WHERE NOT EXISTS (SELECT 1 FROM attempts a WHERE a.message_id = r.message_id AND a.attempt = r.attempt)",
    ),
    (
        "contact_dates.contact_id → contacts",
        &["contact_dates", "contacts"],
        "SELECT COUNT(*) FROM contact_dates d WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = d.contact_id)",
    ),
    (
        "replies.contact_id → contacts",
        &["replies", "contacts"],
        "SELECT COUNT(*) FROM replies r WHERE r.contact_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = r.contact_id)",
    ),
];

/// The columns `message_queue` copies and the states it holds (migrations/*/0010).
macro_rules! queued {
    ($from:literal) => {
        concat!(
            "SELECT id, due_at, state, claim_token, locked_until FROM ",
            $from,
            " WHERE state IN ('scheduled', 'retrying', 'claimed')"
        )
    };
}

/// Rows of `message_queue` that are not a scheduled, retrying or claimed message as
/// `messages` has it, and such messages missing from the queue. PostgreSQL's triggers keep
/// the queue; a difference is a message the claim would miss or take twice. (A view on
/// SQLite, so 0 there.)
const QUEUE: &str = concat!(
    "SELECT (SELECT COUNT(*) FROM (",
    queued!("message_queue"),
    " EXCEPT ",
    queued!("messages"),
    ") AS extra) + (SELECT COUNT(*) FROM (",
    queued!("messages"),
    " EXCEPT ",
    queued!("message_queue"),
    ") AS missing)"
);

/// The schema version that added `message_queue`: older stores have none to check.
const QUEUE_SINCE: i64 = 10;

/// What `store check` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// The store's schema version (`None`: no schema at all).
    pub version: Option<i64>,
    /// The newest version this binary knows.
    pub known: i64,
    /// Every reference checked, with the rows that break it (0: whole).
    pub references: Vec<(&'static str, i64)>,
    /// SQLite's `integrity_check` answer (`ok`); `None` on PostgreSQL.
    pub integrity: Option<String>,
    /// Rows per table.
    pub counts: Vec<(&'static str, i64)>,
}

impl CheckReport {
    /// Each problem in words; empty when the store is whole.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.version {
            None => out.push("the store has no schema (not an aftercare store, or never migrated)".into()),
            Some(v) if v != self.known => out.push(format!(
                "schema version {v}, this aftercare has {}: run `aftercare migrate` (or the release that wrote it)",
                self.known
            )),
            Some(_) => {}
        }
        for (what, n) in &self.references {
            if *n > 0 {
                out.push(format!("{n} row(s) break {what}"));
            }
        }
        if let Some(i) = &self.integrity
            && i != "ok"
        {
            out.push(format!("SQLite integrity_check: {i}"));
        }
        out
    }
}

impl Store {
    /// Check the store (see the module doc). Reads only.
    pub async fn check(&self) -> Result<CheckReport> {
        let schema: SchemaStatus = self.schema().await?;
        let mut report = CheckReport {
            version: schema.version(),
            known: schema.known,
            references: Vec::new(),
            integrity: None,
            counts: Vec::new(),
        };
        if schema.version().is_none() {
            return Ok(report);
        }
        let present = self.tables().await?;
        for (what, tables, sql) in REFERENCES {
            // A table an older schema does not have yet has nothing to break.
            if !tables.iter().all(|t| present.iter().any(|p| p == t)) {
                continue;
            }
            let n: i64 = on_pool!(self, |pool, _b| sqlx::query_scalar(*sql)
                .fetch_one(pool)
                .await?);
            report.references.push((what, n));
        }
        if schema.applied.contains(&QUEUE_SINCE) {
            let n: i64 = on_pool!(self, |pool, _b| sqlx::query_scalar(QUEUE)
                .fetch_one(pool)
                .await?);
            report
                .references
                .push(("message_queue = the queued rows of messages", n));
        }
        if let Pool::Sqlite(p) = &self.pool {
            let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_all(p)
                .await?;
            report.integrity = Some(rows.join("; "));
        }
        report.counts = self.row_counts().await?;
        Ok(report)
    }

    /// A consistent copy of this SQLite store in a new file at `to`, while others keep
    /// writing (`VACUUM INTO` reads one snapshot). PostgreSQL is backed up with `pg_dump`.
    pub async fn backup_to(&self, to: &std::path::Path) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(p) => {
                if to.exists() {
                    return Err(StoreError::Config(format!(
                        "{} exists already; back up into a new file",
                        to.display()
                    )));
                }
                let target = to.to_string_lossy().replace('\'', "''");
                sqlx::query(AssertSqlSafe(format!("VACUUM INTO '{target}'")))
                    .execute(p)
                    .await?;
                Ok(())
            }
            Pool::Postgres(_) => Err(StoreError::Config(
                "store backup copies SQLite stores; back up PostgreSQL with pg_dump \
                 (pg_dump -Fc -f aftercare.dump DB; see the README's \"Backup and restore\")"
                    .into(),
            )),
        }
    }
}
