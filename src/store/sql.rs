//! The plumbing every store file shares: one body per backend (`on_pool!`, `on_tx!`),
//! values for statements built at run time (`Bind`), and the shapes of multi-row
//! statements that keep the statement cache warm.

pub(crate) use super::sqlite_rows::Val;
use super::sqlite_rows::each_row;
use super::{Result, Tx, TxInner};
use crate::clock::from_millis;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::AssertSqlSafe;

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

/// Transaction-scoped advisory locks on keys (PostgreSQL; `$1`: the keys as a JSON array,
/// which either backend's statement binds; `$2`: what kind of key, a [`Hold`]), taken in one
/// order (sorted) so that two holders never wait on each other in a circle. A lock, not
/// `FOR UPDATE`: it also holds a key no row has yet (two first events of a new contact), and
/// it writes nothing to the rows. SQLite's write transactions take turns already.
pub(crate) const HOLD: &str = "SELECT pg_advisory_xact_lock(k) FROM \
     (SELECT DISTINCT hashtextextended(id, $2) AS k FROM jsonb_array_elements_text(CAST($1 AS jsonb)) AS t(id) ORDER BY k) s";

/// What a [`HOLD`] holds.
#[derive(Clone, Copy)]
pub(crate) enum Hold {
    /// Contact ids: ingests, complaints and erasures write contacts.
    Contacts = 7,
    /// Normalised email addresses: a bounce report counts an address's earlier ones.
    Addresses = 11,
    /// The contacts of a claim that reads their marketing sends (caps): claims of one
    /// contact on two nodes take turns, so the second sees the first's message.
    Sends = 13,
}

/// [`HOLD`]'s first parameter.
pub(crate) fn hold_param(keys: &[String]) -> String {
    serde_json::Value::from(keys.to_vec()).to_string()
}

/// Hold `$keys` (`&[String]`) as `$kind` (a [`Hold`]) on `$conn` until its transaction
/// ends, when `$pg`; nothing on SQLite. Inside a function returning the store's `Result`.
macro_rules! hold {
    ($conn:expr, $pg:expr, $keys:expr, $kind:expr) => {
        if $pg && !$keys.is_empty() {
            sqlx::query($crate::store::sql::HOLD)
                .bind($crate::store::sql::hold_param($keys))
                .bind($kind as i64)
                .execute($conn)
                .await?;
        }
    };
}
pub(crate) use hold;

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

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's bind limits.
pub(super) const CHUNK: usize = 100;

/// Ids per `IN (...)` read of an ingest batch (its contacts, events, stops): a batch of the
/// import's 1,024 events is one query, and the list's padding to a power of two
/// ([`in_list`]) stays within the bind limits.
pub(super) const IDS_A_QUERY: usize = 1024;

/// A value for a dynamically built statement.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(Option<String>),
    Int(Option<i64>),
    /// A BLOB (SQLite) or BYTEA (PostgreSQL): compressed message contents.
    Bytes(Option<Vec<u8>>),
}

impl From<&Val<'_>> for Bind {
    fn from(v: &Val<'_>) -> Bind {
        match *v {
            Val::Text(t) => Bind::Text(t.map(str::to_string)),
            Val::Int(n) => Bind::Int(n),
        }
    }
}

impl Tx {
    /// Run `sql(values)`, a statement over rows of `N` values whose placeholders are
    /// `values`, for all `rows`, as a few statements; returns how many rows each statement
    /// took and how many it changed, in order (an `INSERT … ON CONFLICT DO NOTHING` that met
    /// its conflict changed none). On SQLite, SQLite itself runs them ([`each_row`]); on
    /// PostgreSQL, sqlx, in statements of the [`shaped`] sizes that stay in its cache.
    pub(crate) async fn write_rows<const N: usize>(
        &mut self,
        sql: impl Fn(&str) -> String,
        rows: &[[Val<'_>; N]],
    ) -> Result<Vec<(usize, u64)>> {
        let conn = match &mut self.tx {
            TxInner::Sqlite(conn) => {
                return each_row(conn, |n| sql(&values_rows(n, N, false)), rows).await;
            }
            TxInner::Postgres(conn) => conn,
        };
        let mut out = Vec::new();
        for chunk in shaped(rows) {
            let binds: Vec<Bind> = chunk.iter().flatten().map(Bind::from).collect();
            let q = sql(&values_rows(chunk.len(), N, true));
            let n = bind_vec!(sqlx::query(AssertSqlSafe(q)), binds)
                .execute(&mut **conn)
                .await?
                .rows_affected();
            out.push((chunk.len(), n));
        }
        Ok(out)
    }
}

/// The items each statement of [`Tx::write_rows`] took (`written`, in order, for `items` in
/// order), with the rows it changed: a statement that changed fewer than it took says which
/// of its items to look at again.
pub(crate) fn by_statement<T>(mut items: &[T], written: Vec<(usize, u64)>) -> Vec<(&[T], u64)> {
    written
        .into_iter()
        .map(|(len, changed)| {
            let (taken, rest) = items.split_at(len);
            items = rest;
            (taken, changed)
        })
        .collect()
}

/// [`bind_vec!`] for binds that are used again afterwards: binds a copy of them.
macro_rules! bind_all {
    (sqlx::query($sql:expr), $binds:expr) => {
        $crate::store::sql::with_binds($sql, $binds.into_iter().cloned().collect())?
    };
}

/// [`bind_all!`] for a `Vec<Bind>` that is not needed afterwards: the statement of
/// [`with_binds`], its values moved in (`?`: inside a function returning the store's
/// `Result`).
macro_rules! bind_vec {
    (sqlx::query($sql:expr), $binds:expr) => {
        $crate::store::sql::with_binds($sql, $binds)?
    };
}

/// `sql` with `binds` as its arguments, made in one vector of their size and moved in.
/// `Query::bind` takes and returns the statement by value and grows its vector a value at a
/// time: for the ingest's statements of 256 rows that was 13% of the deciding thread's
/// instructions. A value that cannot be encoded (PostgreSQL: over 2 GiB) is the error.
pub(crate) fn with_binds<'q, DB>(
    sql: impl sqlx::SqlSafeStr,
    binds: Vec<Bind>,
) -> std::result::Result<sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>, sqlx::Error>
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<i64>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<Vec<u8>>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    use sqlx::Arguments;
    let mut args = <DB as sqlx::Database>::Arguments::default();
    args.reserve(binds.len(), 0);
    for (i, b) in binds.into_iter().enumerate() {
        match b {
            Bind::Text(s) => args.add(s),
            Bind::Int(n) => args.add(n),
            Bind::Bytes(v) => args.add(v),
        }
        .map_err(|e| sqlx::Error::Encode(format!("argument ${}: {e}", i + 1).into()))?;
    }
    Ok(sqlx::query_with(sql, args))
}

/// The most rows one multi-row statement of the hot paths (ingest, completions) takes.
/// Each statement is a round trip to SQLite's driver thread and back (two thread wake-ups):
/// 256 rows instead of 64 took a bulk import of new events from about 37,000 to 42,000 a
/// second; 1,024 (an import's whole batch) instead of 256 cut its statements from 24 to 9 a
/// batch and the importing thread's waits from 5,986 to 2,152 for 100,000 events, with 1–5%
/// less CPU an event in 11 of 15 pairs of runs (the rate within the noise; README). The
/// widest statement (17 columns) binds 17,408 values, under SQLite's 32,766 and
/// PostgreSQL's 65,535.
pub(crate) const ROWS: usize = 1024;

/// `items` cut into runs of `ROWS`, then of the powers of two that make up the rest (37 →
/// 32, 4, 1): a batch of any size uses a few statement texts out of eleven, so they stay in
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

/// How a multi-row `INSERT` inside a write transaction begins. On SQLite `INSERT OR FAIL`:
/// a statement that may abort part-way (any NOT NULL or key constraint) keeps a statement
/// journal, a copy of every page it changes so that it alone can be undone; FAIL stops at the
/// failing row and keeps the rows before it instead, and every caller rolls the whole
/// transaction back on any error, so the outcome is the same without the copies (8.6% of
/// the HTTP ingest's instructions, 1.3% of an import into an empty store). `ON CONFLICT`
/// clauses still decide their own conflicts. PostgreSQL has neither the clause nor the
/// journal.
pub(crate) fn insert_into(pg: bool) -> &'static str {
    if pg {
        "INSERT INTO"
    } else {
        "INSERT OR FAIL INTO"
    }
}

/// How a multi-row `UPDATE` inside a write transaction begins: `UPDATE OR FAIL` on SQLite,
/// for the reason [`insert_into`] gives.
pub(crate) fn update(pg: bool) -> &'static str {
    if pg { "UPDATE" } else { "UPDATE OR FAIL" }
}

/// `?, ?, ?` on SQLite, `$s, $s+1, ...` on PostgreSQL (see `values_rows` for why).
pub(crate) fn list(start: usize, n: usize, pg: bool) -> String {
    if pg {
        placeholders(start, n)
    } else {
        vec!["?"; n].join(", ")
    }
}

/// Values for an `IN (...)` list of `ids`, repeating the last one up to a power of two (the
/// answer is the same), so that the list has one of a few lengths; see [`shaped`].
pub(crate) fn in_list<S: AsRef<str>>(ids: &[S]) -> Vec<Bind> {
    let mut b: Vec<Bind> = ids
        .iter()
        .map(|i| Bind::Text(Some(i.as_ref().to_string())))
        .collect();
    if let Some(last) = ids.last() {
        b.resize(
            ids.len().next_power_of_two(),
            Bind::Text(Some(last.as_ref().to_string())),
        );
    }
    b
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

pub(super) fn json_map(text: String) -> Result<Map<String, Value>> {
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Ok(Map::new()),
    }
}

pub(super) fn opt_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.map(from_millis)
}

pub(crate) use {bind_all, bind_vec, on_pool, on_tx};

/// The plan SQLite makes for `sql` on a freshly migrated store, one step a line in its order:
/// for tests that pin a join order. A fresh store has no statistics, as no store in use has
/// (nothing runs `ANALYZE`), so the plan is the one a store of any size gets.
#[cfg(test)]
pub(crate) async fn plan_without_statistics(sql: &str, binds: &[Bind]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = super::Store::connect_sqlite(
        &dir.path().join("plan.db"),
        super::SqliteSync::Normal,
        false,
    )
    .await
    .expect("a SQLite store");
    store.migrate().await.expect("migrated");
    let super::Pool::Sqlite(pool) = &store.pool else {
        unreachable!("a SQLite store")
    };
    let rows = with_binds(
        sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")),
        binds.to_vec(),
    )
    .expect("the binds encode")
    .fetch_all(pool)
    .await
    .expect("a plan");
    use sqlx::Row;
    rows.iter()
        .map(|r| r.try_get::<String, _>(3).expect("the step's text"))
        .collect()
}

/// Asserts that the plan of `sql` without statistics (see [`plan_without_statistics`]) takes
/// the step containing `first` before the one containing `then`, and no step containing any
/// of `never`.
#[cfg(test)]
pub(crate) async fn assert_plan_order(
    sql: &str,
    binds: &[Bind],
    first: &str,
    then: &str,
    never: &[&str],
) {
    let plan = plan_without_statistics(sql, binds).await;
    let at = |step: &str| plan.iter().position(|l| l.contains(step));
    let (a, b) = (at(first), at(then));
    assert!(
        a.is_some() && b.is_some() && a < b,
        "`{first}` before `{then}`: {plan:#?}"
    );
    for n in never {
        assert_eq!(at(n), None, "never `{n}`: {plan:#?}");
    }
}
