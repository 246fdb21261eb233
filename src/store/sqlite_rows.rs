//! Rows written by calling SQLite itself on a connection's handle: statements of a few rows,
//! prepared for the call and stepped on the calling thread.
//!
//! Why: an ingest writes thousands of rows of text it already holds. Through sqlx each value
//! was cloned into an owned argument on the writing thread and sent to the connection's own
//! thread, which bound it as a copy (`SQLITE_TRANSIENT`), then cleared and freed every
//! binding after the statement: 18% of the instructions of SQLite's thread in an import
//! (callgrind, README), besides the clones. Here each value is bound where it lies
//! (`SQLITE_STATIC`) and nothing crosses a thread. Statements that read rows back stay with
//! sqlx; only writes whose answer is how many rows changed come here.
//!
//! Small writes too: the HTTP ingest commits some 64 events at a time, and there sqlx kept its
//! statements parsed where these are parsed each call (206,000 against 164,000 instructions
//! an event, callgrind). Timed, the count misled: every statement through sqlx is two thread
//! wake-ups (SQLite's thread, then the writer's), which a count of instructions does not
//! see and which took a third of that thread's CPU (perf). With them gone the intake took
//! more events a second in ten of thirteen pairs of runs, median +10% (README, Benchmarks).

use super::{Result, StoreError};
use libsqlite3_sys as ffi;
use sqlx::sqlite::SqliteConnection;
use std::ffi::{CStr, c_int};

/// One value of a row that `Tx::write_rows` writes: text borrowed from the caller (bound
/// here without a copy) or an integer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

/// Rows a statement of [`each_row`] takes at once. SQLite keeps a statement's cursors open
/// from row to row, so a row whose key lands next to the last one's needs no new descent of
/// each index from its root; a statement a row opened ~20 cursors an event and sought each
/// from the root (+14% instructions on an import's path, callgrind). The statements are
/// parsed once a call (some 260,000 instructions a statement of 16 rows), and parsing grows
/// with their values: an import of batches of 1,024 spends some 770 instructions an event on
/// it. 32 rows counted the same, 64 and 128 more.
pub(crate) const GROUP: usize = 16;

/// Run `sql(n)`, a statement over `n` rows of `N` values (`?` placeholders, row by row), for
/// all `rows` on `conn` (inside the caller's transaction), [`GROUP`] rows a statement (fewer
/// in the last); returns how many rows each statement took and how many it changed,
/// in order (an `INSERT … ON CONFLICT DO NOTHING` that met its conflict changed none).
///
/// SQLite runs on this thread, locked out of the connection's worker meanwhile, so the
/// caller's runtime is told it blocks (a runtime of one thread, such as the HTTP ingest's
/// writer's, has nothing else to run).
pub(crate) async fn each_row<'a, const N: usize>(
    conn: &mut SqliteConnection,
    sql: impl Fn(usize) -> String,
    rows: &[[Val<'a>; N]],
) -> Result<Vec<(usize, u64)>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut locked = conn.lock_handle().await?;
    let db = locked.as_raw_handle().as_ptr();
    // SAFETY: `db` is the open connection sqlx locked out of its worker for us until `locked`
    // drops, after this call; no other call uses it meanwhile.
    blocking(|| unsafe { run(db, &sql, rows) })
}

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A prepared statement and its text, finalized when dropped (on every path out of [`run`]).
struct Stmt(*mut ffi::sqlite3_stmt, String);

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: null, or a statement prepared by `run` on a connection that stays open and
        // locked to this thread until after `run` returns; finalized once, here.
        unsafe {
            ffi::sqlite3_finalize(self.0);
        }
    }
}

/// # Safety
/// `db` is an open connection no other thread uses until this returns.
unsafe fn run<const N: usize>(
    db: *mut ffi::sqlite3,
    sql: &dyn Fn(usize) -> String,
    rows: &[[Val<'_>; N]],
) -> Result<Vec<(usize, u64)>> {
    let mut changed = Vec::with_capacity(rows.len().div_ceil(GROUP));
    let mut full: Option<Stmt> = None;
    for group in rows.chunks(GROUP) {
        let tail;
        let stmt = if group.len() == GROUP {
            match &mut full {
                Some(s) => s,
                None => full.insert(unsafe { prepare(db, sql(GROUP), GROUP * N)? }),
            }
        } else {
            tail = unsafe { prepare(db, sql(group.len()), group.len() * N)? };
            &tail
        };
        for (i, v) in group.iter().flatten().enumerate() {
            // Parameters count from 1; their number fits a c_int, as SQLite counted them.
            let at = i as c_int + 1;
            // SAFETY: `db` is open and ours (the caller's promise). `SQLITE_STATIC` text is
            // read by SQLite until the parameter is bound again or the statement is
            // finalized, both before `run` returns, and it lives beyond `run`.
            let rc = unsafe {
                match *v {
                    Val::Text(Some(s)) => ffi::sqlite3_bind_text64(
                        stmt.0,
                        at,
                        s.as_ptr().cast(),
                        s.len() as u64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    Val::Int(Some(n)) => ffi::sqlite3_bind_int64(stmt.0, at, n),
                    Val::Text(None) | Val::Int(None) => ffi::sqlite3_bind_null(stmt.0, at),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(unsafe { failed(db, rc, &stmt.1) });
            }
        }
        let rc = unsafe { ffi::sqlite3_step(stmt.0) };
        if rc != ffi::SQLITE_DONE {
            // The message first: resetting the statement sets the connection's error anew.
            let e = unsafe { failed(db, rc, &stmt.1) };
            unsafe { ffi::sqlite3_reset(stmt.0) };
            return Err(e);
        }
        changed.push((
            group.len(),
            u64::try_from(unsafe { ffi::sqlite3_changes64(db) }).unwrap_or(0),
        ));
        unsafe { ffi::sqlite3_reset(stmt.0) };
    }
    Ok(changed)
}

/// `sql` prepared on `db`, checked to take `values` values.
///
/// # Safety
/// As for [`run`].
unsafe fn prepare(db: *mut ffi::sqlite3, sql: String, values: usize) -> Result<Stmt> {
    let len = c_int::try_from(sql.len())
        .map_err(|_| StoreError::Invariant("a statement longer than 2 GiB".into()))?;
    let mut raw = std::ptr::null_mut();
    // SAFETY: `db` is open and ours; `sql` outlives the call; `raw` is written by SQLite.
    let rc = unsafe {
        ffi::sqlite3_prepare_v3(
            db,
            sql.as_ptr().cast(),
            len,
            0,
            &mut raw,
            std::ptr::null_mut(),
        )
    };
    let stmt = Stmt(raw, sql);
    if rc != ffi::SQLITE_OK || raw.is_null() {
        return Err(unsafe { failed(db, rc, &stmt.1) });
    }
    let params = unsafe { ffi::sqlite3_bind_parameter_count(stmt.0) };
    if usize::try_from(params).ok() != Some(values) {
        return Err(StoreError::Invariant(format!(
            "`{}` takes {params} values, and {values} were given",
            stmt.1
        )));
    }
    Ok(stmt)
}

/// SQLite's words for `rc` on `db`, and the statement it came from.
///
/// # Safety
/// `db` is an open connection.
unsafe fn failed(db: *mut ffi::sqlite3, rc: c_int, sql: &str) -> StoreError {
    // SAFETY: errmsg returns a connection-owned NUL-terminated string, read at once.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }
        .to_string_lossy()
        .into_owned();
    let head: String = sql.chars().take(60).collect();
    // The extended code where SQLite has one (`SQLITE_CONSTRAINT_NOTNULL`, not just
    // `SQLITE_CONSTRAINT`).
    let code = match unsafe { ffi::sqlite3_extended_errcode(db) } {
        ffi::SQLITE_OK => rc,
        extended => extended,
    };
    StoreError::Sqlite {
        code,
        message: format!("{message} (in `{head}…`)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// `n` rows of three placeholders, as `store::sql::values_rows` writes them for SQLite.
    fn three(n: usize) -> String {
        vec!["(?, ?, ?)"; n].join(", ")
    }

    async fn conn(dir: &tempfile::TempDir) -> SqliteConnection {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut c = SqliteConnection::connect(&url).await.expect("a connection");
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, note TEXT NOT NULL)")
            .execute(&mut c)
            .await
            .expect("a table");
        c
    }

    #[tokio::test]
    async fn each_row_counts_what_each_statement_wrote_and_stores_every_value_whole() {
        let dir = tempfile::tempdir().expect("a folder");
        let mut c = conn(&dir).await;
        // Two full statements and a last one of 3; keys 0..=34 with every seventh written
        // twice (a conflict, so not written again), texts with a NUL and outside ASCII.
        let keys: Vec<String> = (0..GROUP * 2 + 3)
            .map(|i| {
                if i % 7 == 6 {
                    format!("k{}\0ü€", i - 1)
                } else {
                    format!("k{i}\0ü€")
                }
            })
            .collect();
        let rows: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                [
                    Val::Text(Some(k)),
                    Val::Int((i % 5 != 0).then_some(i as i64)),
                    Val::Text(Some("x")),
                ]
            })
            .collect();
        let sql = |n| {
            format!(
                "INSERT INTO t (k, n, note) VALUES {} ON CONFLICT (k) DO NOTHING",
                three(n)
            )
        };
        let changed = each_row(&mut c, sql, &rows).await.expect("inserted");
        let repeats = |r: std::ops::Range<usize>| r.filter(|i| i % 7 == 6).count() as u64;
        assert_eq!(
            changed,
            [
                (GROUP, GROUP as u64 - repeats(0..GROUP)),
                (GROUP, GROUP as u64 - repeats(GROUP..2 * GROUP)),
                (3, 3 - repeats(2 * GROUP..2 * GROUP + 3)),
            ]
        );
        let stored: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT k, n FROM t ORDER BY rowid")
                .fetch_all(&mut c)
                .await
                .expect("read");
        let expected: Vec<(String, Option<i64>)> = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 7 != 6)
            .map(|(i, k)| (k.clone(), (i % 5 != 0).then_some(i as i64)))
            .collect();
        assert_eq!(stored, expected);
        assert_eq!(
            each_row(&mut c, sql, &[] as &[[Val; 3]])
                .await
                .expect("nothing"),
            [] as [(usize, u64); 0]
        );
    }

    #[tokio::test]
    async fn a_refused_row_is_an_error_naming_the_statement() {
        let dir = tempfile::tempdir().expect("a folder");
        let mut c = conn(&dir).await;
        let sql = |n| format!("INSERT INTO t (k, n, note) VALUES {}", three(n));
        let e = each_row(
            &mut c,
            sql,
            &[[Val::Text(Some("a")), Val::Int(None), Val::Text(None)]],
        )
        .await
        .expect_err("NOT NULL");
        let text = e.to_string();
        assert!(
            text.contains("NOT NULL constraint failed: t.note"),
            "{text}"
        );
        assert!(text.contains("INSERT INTO t (k, n, note)"), "{text}");
        let e = each_row(
            &mut c,
            |_| "INSERT INTO t (k) VALUES (?1)".into(),
            &[[Val::Int(Some(1)); 2]],
        )
        .await
        .expect_err("two values for one parameter");
        assert!(
            e.to_string().contains("takes 1 values, and 2 were given"),
            "{e}"
        );
        // The connection is still good for sqlx afterwards.
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut c)
            .await
            .expect("read");
        assert_eq!(n, 0);
    }
}
