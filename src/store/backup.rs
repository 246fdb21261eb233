//! A page-for-page copy of a SQLite store, with SQLite's online backup API.
//!
//! The forecast replays on a copy of the store. `VACUUM INTO` made one in a single statement
//! but rebuilt every table and index on the way (2.4–2.9 s of a 7-day forecast on a store of
//! a million contacts); the backup API copies the pages as they are, from one read snapshot.
//! sqlx has no binding for it, so this calls SQLite's C API on the connection's own handle
//! (the same library sqlx links).

use super::{Result, StoreError};
use libsqlite3_sys as ffi;
use sqlx::sqlite::SqlitePool;
use std::ffi::{CStr, CString};
use std::path::Path;

/// Copy the database of `pool` into a new file at `path` (which must not exist yet).
pub(super) async fn backup(pool: &SqlitePool, path: &Path) -> Result<()> {
    let target = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| StoreError::Config(format!("{}: a path with a NUL byte", path.display())))?;
    let mut conn = pool.acquire().await?;
    let mut handle = conn.lock_handle().await?;
    let source = handle.as_raw_handle().as_ptr();
    // SAFETY: `source` is the open connection sqlx locked out of its worker for us (no other
    // call uses it meanwhile); `dest` is opened, used and closed here only, and every
    // pointer handed to SQLite outlives the calls it is passed to.
    unsafe {
        let mut dest = std::ptr::null_mut();
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE;
        let rc = ffi::sqlite3_open_v2(target.as_ptr(), &mut dest, flags, std::ptr::null());
        if rc != ffi::SQLITE_OK {
            let why = message(dest, rc);
            ffi::sqlite3_close(dest);
            return Err(failed(path, &why));
        }
        let b = ffi::sqlite3_backup_init(dest, c"main".as_ptr(), source, c"main".as_ptr());
        if b.is_null() {
            let why = message(dest, ffi::sqlite3_errcode(dest));
            ffi::sqlite3_close(dest);
            return Err(failed(path, &why));
        }
        // Every page in one step: the source is read under one snapshot, as VACUUM INTO did.
        let step = ffi::sqlite3_backup_step(b, -1);
        let finish = ffi::sqlite3_backup_finish(b);
        let why = (step != ffi::SQLITE_DONE)
            .then(|| message(dest, step))
            .or_else(|| (finish != ffi::SQLITE_OK).then(|| message(dest, finish)));
        let close = ffi::sqlite3_close(dest);
        match why {
            Some(why) => Err(failed(path, &why)),
            None if close != ffi::SQLITE_OK => Err(failed(path, "cannot close the copy")),
            None => Ok(()),
        }
    }
}

/// SQLite's words for `rc` on `db`.
///
/// # Safety
/// `db` is null or an open connection.
unsafe fn message(db: *mut ffi::sqlite3, rc: i32) -> String {
    // SAFETY: both return static or connection-owned NUL-terminated strings, read at once.
    unsafe {
        let text = if db.is_null() {
            ffi::sqlite3_errstr(rc)
        } else {
            ffi::sqlite3_errmsg(db)
        };
        CStr::from_ptr(text).to_string_lossy().into_owned()
    }
}

fn failed(path: &Path, why: &str) -> StoreError {
    StoreError::Config(format!(
        "cannot copy the store to {}: {why}",
        path.display()
    ))
}
