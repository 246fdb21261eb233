//! The `store:` section: which database holds the outbox, and how hard SQLite syncs.

use crate::check::Checker;
use crate::values::Secret;
use serde::Deserialize;
use std::path::PathBuf;

/// `store:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    url: String,
    /// PostgreSQL password, kept out of the URL and the file.
    password_env: Option<String>,
    password_file: Option<String>,
    /// SQLite `synchronous`: `full` (default, every commit survives power loss) or `normal`.
    sqlite_synchronous: Option<SqliteSync>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    Full,
    Normal,
}

#[derive(Debug, Clone)]
pub enum StoreConfig {
    Sqlite {
        path: PathBuf,
        synchronous: SqliteSync,
    },
    Postgres {
        url: String,
        password: Secret,
    },
}

/// Check `store:`. A password in the URL is refused: the config file is not the place for
/// secrets, and the URL turns up in error messages.
pub fn check(c: &mut Checker, raw: &RawStore) -> StoreConfig {
    let url = raw.url.trim();
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = rest.split('?').next().unwrap_or(rest);
        if file.is_empty() {
            c.err(
                "store.url",
                "no file name after sqlite://",
                Some("e.g. sqlite://data/aftercare.db".into()),
            );
        }
        if raw.password_env.is_some() || raw.password_file.is_some() {
            let key = if raw.password_env.is_some() {
                "store.password_env"
            } else {
                "store.password_file"
            };
            c.err(
                key,
                "SQLite has no password",
                Some("remove password_env / password_file".into()),
            );
        }
        StoreConfig::Sqlite {
            path: c.resolve(file),
            synchronous: raw.sqlite_synchronous.unwrap_or(SqliteSync::Full),
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if url
            .split('@')
            .next()
            .is_some_and(|userinfo| userinfo.matches(':').count() > 1)
        {
            c.err(
                "store.url",
                "the URL holds a password",
                Some(
                    "remove it from the URL and set store.password_env or store.password_file"
                        .into(),
                ),
            );
        }
        let password = c.secret(
            "store",
            "password",
            raw.password_env.as_deref(),
            raw.password_file.as_deref(),
        );
        StoreConfig::Postgres {
            url: url.to_string(),
            password,
        }
    } else {
        c.err(
            "store.url",
            format!("unsupported store URL `{url}`"),
            Some("use sqlite://data/aftercare.db or postgres://user@host/db".into()),
        );
        StoreConfig::Sqlite {
            path: c.resolve("data/aftercare.db"),
            synchronous: SqliteSync::Full,
        }
    }
}
