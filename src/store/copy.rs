//! `store copy`: every row of every table from one store into another, so a business that
//! outgrew the embedded SQLite file moves to PostgreSQL with its whole history. Nothing here
//! depends on the direction: PostgreSQL to SQLite, or between two PostgreSQL databases, work
//! the same way.
//!
//! Table-driven: [`COPY_TABLES`] is the one list of what is copied. Columns come from the
//! catalog, so a new column needs no change here and a new table is one line; a table of
//! the source that the list does not name stops the copy instead of being left behind.
//!
//! The source is read in one read-only transaction, a snapshot: every table as of the same
//! instant, so the copy holds no attempt without its message even if something writes to the
//! source meanwhile. It is read in pages in key order, and each table is written in one
//! transaction on the target (with `force`, its old rows are deleted in the same
//! transaction), in multi-row INSERTs. At the end the target's row counts are compared with
//! the snapshot's.

use super::sql::{Bind, bind_all, on_pool, on_tx, placeholders, values_rows};
use super::{MigrationInfo, Pool, Store, StoreError, Tx, TxInner};
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashSet;

/// Every table `store copy` moves, in this order, with its primary key (the source is read
/// page by page in key order). **A new table is one line here.** The copy refuses a source that
/// has a table missing from this list, and `tests/store_backends.rs` checks the list against a
/// freshly migrated store of each backend.
///
/// Copied rows keep their keys, so a table must not take its key from a sequence
/// (PostgreSQL's would not be advanced past the copied ids): keys are text (ULIDs) or
/// natural.
pub const COPY_TABLES: &[(&str, &[&str])] = &[
    ("contacts", &["id"]),
    ("events", &["id"]),
    ("messages", &["id"]),
    ("attempts", &["message_id", "attempt"]),
    ("contact_dates", &["contact_id", "field"]),
    ("suppressions", &["channel", "address"]),
    ("recurring", &["job_id"]),
    ("replies", &["id"]),
    ("receipts", &["message_id", "attempt", "status"]),
    ("receipts_waiting", &["gateway", "provider_id", "status"]),
    ("agent_actions", &["id"]),
    ("daily_counts", &["id"]),
    ("housekeeping", &["task"]),
    ("answers", &["message_id"]),
    ("bounces", &["id"]),
    ("suppression_changes", &["id"]),
    ("brakes", &["scope"]),
    ("hook_tokens", &["provider", "token"]),
];

/// Tables whose rows the schema writes itself (PostgreSQL's triggers), not copied: a copied
/// `messages` row fills them on the target.
pub(super) const KEPT_BY_THE_SCHEMA: &[&str] = &["message_queue"];

/// Binds per INSERT: well under SQLite's 32,766 and PostgreSQL's 65,535.
const MAX_BINDS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the source and the target are the same store ({0})")]
    SameStore(String),
    #[error(
        "the {side} store at {target} has {have}, not this aftercare's schema version {known}: \
         run `aftercare migrate` on it first (or use the aftercare release that wrote it)"
    )]
    Schema {
        side: &'static str,
        target: String,
        have: String,
        known: i64,
    },
    #[error(
        "table `{table}` exists in the store at {target} but store copy does not know it: \
         add it to COPY_TABLES in src/store/copy.rs"
    )]
    UnknownTable { table: String, target: String },
    #[error(
        "table `{table}` differs between the stores (column `{column}` is only in the {side}): \
         migrate both with the same aftercare"
    )]
    Columns {
        table: String,
        column: String,
        side: &'static str,
    },
    #[error(
        "column `{table}.{column}` has type {ty}, which store copy does not carry yet: \
         add it to `Kind` in src/store/copy.rs"
    )]
    UnsupportedType {
        table: String,
        column: String,
        ty: String,
    },
    #[error("COPY_TABLES names `{column}` as a key of `{table}`, which has no such column")]
    Key { table: String, column: String },
    #[error(
        "the target store at {target} is not empty ({rows}): copy into an empty store, \
         or pass --force to replace its rows"
    )]
    NotEmpty { target: String, rows: String },
    #[error(
        "after the copy, table `{table}` has {copied} row(s) in the target but {expected} in \
         the source; the target is incomplete, run the copy again with --force"
    )]
    Count {
        table: String,
        copied: i64,
        expected: i64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CopyError {
    fn from(e: sqlx::Error) -> CopyError {
        CopyError::Store(e.into())
    }
}

/// How to copy.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Replace the rows of a non-empty target (deleted table by table, each in the
    /// transaction that writes the table again) instead of refusing.
    pub force: bool,
    /// Rows read from the source per write on the target.
    pub batch: usize,
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions {
            force: false,
            batch: 1000,
        }
    }
}

/// Reported after each batch.
#[derive(Debug, Clone, Copy)]
pub struct CopyProgress {
    pub table: &'static str,
    pub copied: u64,
    pub total: u64,
}

/// One table's rows in the source snapshot and, after the copy, in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: &'static str,
    pub source: i64,
    pub target: i64,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Migrations applied to the target before copying.
    pub migrated: Vec<MigrationInfo>,
    /// Every table of [`COPY_TABLES`], counts checked equal.
    pub tables: Vec<TableCount>,
}

/// How a column's values are read and bound. Instants are integer milliseconds and JSON is
/// text (see the migrations); message contents are compressed bytes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bytes,
}

impl Kind {
    /// From SQLite's declared type or PostgreSQL's `information_schema` data type.
    fn of(ty: &str) -> Option<Kind> {
        let t = ty.to_ascii_lowercase();
        match t.as_str() {
            "bigint" | "integer" | "int8" => Some(Kind::Int),
            "text" | "character varying" | "varchar" => Some(Kind::Text),
            "blob" | "bytea" => Some(Kind::Bytes),
            _ => None,
        }
    }
}

/// One table, as the copy reads and writes it.
struct Plan {
    table: &'static str,
    /// Positions of the primary key's columns in `columns`.
    key: Vec<usize>,
    columns: Vec<(String, Kind)>,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Store {
    /// The store's tables, without sqlx's and SQLite's own and those of
    /// [`KEPT_BY_THE_SCHEMA`].
    pub async fn tables(&self) -> Result<Vec<String>, StoreError> {
        // The catalogs are the one place the dialects cannot agree.
        let sql = match self.pool {
            Pool::Sqlite(_) => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            }
            Pool::Postgres(_) => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            }
        };
        let migrations = self.migrator().table_name.to_string();
        let names: Vec<String> = on_pool!(self, |pool, _b| sqlx::query_scalar(sql)
            .fetch_all(pool)
            .await?);
        let mut names: Vec<String> = names
            .into_iter()
            .filter(|n| *n != migrations && !KEPT_BY_THE_SCHEMA.contains(&n.as_str()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// `(name, declared type)` of each column of `table`, in table order; empty when the
    /// table does not exist.
    async fn columns(&self, table: &str) -> Result<Vec<(String, String)>, StoreError> {
        let sql = match self.pool {
            Pool::Sqlite(_) => "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
            Pool::Postgres(_) => {
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
            }
        };
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(sql).bind(table).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    /// Rows in each table of [`COPY_TABLES`]; 0 for a table the store does not have yet.
    pub async fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, StoreError> {
        let present = self.tables().await?;
        let mut out = Vec::with_capacity(COPY_TABLES.len());
        for (table, _) in COPY_TABLES {
            if !present.iter().any(|t| t == table) {
                out.push((*table, 0));
                continue;
            }
            let sql = format!("SELECT COUNT(*) FROM {}", quote(table));
            let n: i64 = on_pool!(self, |pool, _b| {
                sqlx::query_scalar(AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?
            });
            out.push((*table, n));
        }
        Ok(out)
    }

    /// Copy every row of [`COPY_TABLES`] into `to`. The source must be at this binary's
    /// schema version and is only read. The target must be empty unless `opts.force`; it is
    /// checked before anything is written to it, then migrated, then filled. Returns what
    /// was migrated and each table's counts, checked equal.
    pub async fn copy_to(
        &self,
        to: &Store,
        opts: CopyOptions,
        progress: &mut dyn FnMut(CopyProgress),
    ) -> Result<CopyReport, CopyError> {
        if self.backend() == to.backend() && self.target == to.target {
            return Err(CopyError::SameStore(self.target.clone()));
        }
        let schema_error = |side, store: &Store, s: &super::SchemaStatus| CopyError::Schema {
            side,
            target: store.target.clone(),
            have: match s.version() {
                Some(v) => format!("schema version {v}"),
                None => "no schema".into(),
            },
            known: s.known,
        };
        let source = self.schema().await?;
        if !source.is_current() {
            return Err(schema_error("source", self, &source));
        }
        // A table of the source that the list does not name would be left behind.
        for table in self.tables().await? {
            if !COPY_TABLES.iter().any(|(t, _)| *t == table) {
                return Err(CopyError::UnknownTable {
                    table,
                    target: self.target.clone(),
                });
            }
        }
        let target = to.schema().await?;
        if !target.unknown.is_empty() {
            return Err(schema_error("target", to, &target));
        }
        // Refuse a non-empty target before migrating it: it may be a store in use by an
        // older release, whose schema is not ours to change.
        let present: Vec<String> = to
            .row_counts()
            .await?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| format!("{n} {t}"))
            .collect();
        if !present.is_empty() && !opts.force {
            return Err(CopyError::NotEmpty {
                target: to.target.clone(),
                rows: present.join(", "),
            });
        }
        let migrated = to.migrate().await?;
        let mut plans = Vec::with_capacity(COPY_TABLES.len());
        for (table, key) in COPY_TABLES {
            let source = self.columns(table).await?;
            let target: HashSet<String> =
                to.columns(table).await?.into_iter().map(|c| c.0).collect();
            let names: HashSet<&String> = source.iter().map(|c| &c.0).collect();
            if let Some(column) = target.iter().find(|c| !names.contains(c)) {
                return Err(CopyError::Columns {
                    table: table.to_string(),
                    column: column.clone(),
                    side: "target",
                });
            }
            let mut columns = Vec::with_capacity(source.len());
            for (name, ty) in source {
                if !target.contains(&name) {
                    return Err(CopyError::Columns {
                        table: table.to_string(),
                        column: name,
                        side: "source",
                    });
                }
                let Some(kind) = Kind::of(&ty) else {
                    return Err(CopyError::UnsupportedType {
                        table: table.to_string(),
                        column: name,
                        ty,
                    });
                };
                columns.push((name, kind));
            }
            let key = key
                .iter()
                .map(|k| {
                    columns
                        .iter()
                        .position(|(c, _)| c == k)
                        .ok_or_else(|| CopyError::Key {
                            table: table.to_string(),
                            column: k.to_string(),
                        })
                })
                .collect::<Result<_, _>>()?;
            plans.push(Plan {
                table,
                key,
                columns,
            });
        }

        // The snapshot: SQLite's read transaction sees the database as of its first read
        // (WAL); PostgreSQL needs REPEATABLE READ for one snapshot across statements.
        let snapshot = match self.pool {
            Pool::Sqlite(_) => "BEGIN",
            Pool::Postgres(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        let batch = opts.batch.max(1);
        let mut expected = Vec::with_capacity(plans.len());
        on_pool!(self, |pool, _b| {
            let mut snap = pool.begin_with(snapshot).await?;
            for p in &plans {
                let sql = format!("SELECT COUNT(*) FROM {}", quote(p.table));
                let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                    .fetch_one(&mut *snap)
                    .await?;
                expected.push(n);
            }
            for (p, total) in plans.iter().zip(&expected) {
                // Page by page in key order (keyset pagination): short statements, and no
                // cursor held open on the source while the target writes.
                let names: Vec<String> = p.columns.iter().map(|(c, _)| quote(c)).collect();
                let key: Vec<&str> = p.key.iter().map(|i| names[*i].as_str()).collect();
                let key = key.join(", ");
                let first = format!(
                    "SELECT {} FROM {} ORDER BY {key} LIMIT {batch}",
                    names.join(", "),
                    quote(p.table),
                );
                let next = format!(
                    "SELECT {} FROM {} WHERE ({key}) > ({}) ORDER BY {key} LIMIT {batch}",
                    names.join(", "),
                    quote(p.table),
                    placeholders(1, p.key.len())
                );
                let mut tx = to.begin().await?;
                if opts.force {
                    tx.delete_all(p.table).await?;
                }
                let total = u64::try_from(*total).unwrap_or(0);
                let mut copied = 0u64;
                let mut after: Option<Vec<Bind>> = None;
                loop {
                    let q = match &after {
                        None => sqlx::query(AssertSqlSafe(first.clone())),
                        Some(k) => bind_all!(sqlx::query(AssertSqlSafe(next.clone())), k),
                    };
                    let rows = q.fetch_all(&mut *snap).await?;
                    let mut page = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let mut values = Vec::with_capacity(p.columns.len());
                        for (i, (_, kind)) in p.columns.iter().enumerate() {
                            values.push(match kind {
                                Kind::Int => Bind::Int(r.try_get(i)?),
                                Kind::Text => Bind::Text(r.try_get(i)?),
                                Kind::Bytes => Bind::Bytes(r.try_get(i)?),
                            });
                        }
                        page.push(values);
                    }
                    if let Some(last) = page.last() {
                        after = Some(p.key.iter().map(|i| last[*i].clone()).collect());
                        tx.insert_rows(p.table, &names, &page).await?;
                        copied += page.len() as u64;
                    }
                    progress(CopyProgress {
                        table: p.table,
                        copied,
                        total,
                    });
                    if page.len() < batch {
                        break;
                    }
                }
                tx.commit().await?;
            }
            snap.commit().await?;
        });

        let after = to.row_counts().await?;
        let mut out = Vec::with_capacity(plans.len());
        for (p, source) in plans.iter().zip(expected) {
            let target = after
                .iter()
                .find(|(t, _)| *t == p.table)
                .map_or(0, |(_, n)| *n);
            if target != source {
                return Err(CopyError::Count {
                    table: p.table.to_string(),
                    copied: target,
                    expected: source,
                });
            }
            out.push(TableCount {
                table: p.table,
                source,
                target,
            });
        }
        Ok(CopyReport {
            migrated,
            tables: out,
        })
    }
}

impl Tx {
    /// Insert `rows` (values in the order of `columns`, already quoted) in multi-row
    /// statements.
    async fn insert_rows(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Bind>],
    ) -> Result<(), StoreError> {
        let pg = matches!(self.tx, TxInner::Postgres(_));
        let per_statement = (MAX_BINDS / columns.len().max(1)).max(1);
        for chunk in rows.chunks(per_statement) {
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                quote(table),
                columns.join(", "),
                values_rows(chunk.len(), columns.len(), pg)
            );
            on_tx!(self, |conn| {
                bind_all!(sqlx::query(AssertSqlSafe(sql)), chunk.iter().flatten())
                    .execute(&mut *conn)
                    .await?;
            });
        }
        Ok(())
    }

    async fn delete_all(&mut self, table: &str) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM {}", quote(table));
        on_tx!(self, |conn| {
            sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await?;
        });
        Ok(())
    }
}
