//! The `store:` section: which database holds the outbox, and how hard SQLite syncs; and the
//! `retention:` section: how long the store keeps each kind of record.

use crate::check::Checker;
use crate::diag::Location;
use crate::values::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

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
        if let Some(how) = url_password(url) {
            c.err(
                "store.url",
                format!("the URL holds a password ({how})"),
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

/// One kind of record `retention:` keeps for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    Events,
    Messages,
    Attempts,
    Content,
    Replies,
    /// Email bounces and complaints (raw reports included) and the suppression list's
    /// history of changes.
    Bounces,
}

impl Kept {
    pub const ALL: [Kept; 6] = [
        Kept::Events,
        Kept::Messages,
        Kept::Attempts,
        Kept::Content,
        Kept::Replies,
        Kept::Bounces,
    ];

    /// The key under `retention:`.
    pub fn key(self) -> &'static str {
        match self {
            Kept::Events => "events",
            Kept::Messages => "messages",
            Kept::Attempts => "attempts",
            Kept::Content => "content",
            Kept::Replies => "replies",
            Kept::Bounces => "bounces",
        }
    }

    /// The default: long enough for every window a job can look back over by default (a
    /// year and a day for anniversaries, plus room), short enough not to keep data forever.
    fn default_days(self) -> u64 {
        match self {
            // Bounces as long as the messages they answer: support reads them together.
            Kept::Events | Kept::Messages | Kept::Attempts | Kept::Bounces => 400,
            Kept::Content => 90,
            Kept::Replies => 180,
        }
    }
}

/// `retention:` as written: a duration or `never` per kind of record.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    events: Option<String>,
    messages: Option<String>,
    attempts: Option<String>,
    content: Option<String>,
    replies: Option<String>,
    bounces: Option<String>,
}

impl RawRetention {
    fn get(&self, k: Kept) -> Option<&str> {
        match k {
            Kept::Events => self.events.as_deref(),
            Kept::Messages => self.messages.as_deref(),
            Kept::Attempts => self.attempts.as_deref(),
            Kept::Content => self.content.as_deref(),
            Kept::Replies => self.replies.as_deref(),
            Kept::Bounces => self.bounces.as_deref(),
        }
    }
}

/// How long each kind of record is kept (`None`: forever), and where each key was written
/// in the config, so that a job whose window needs longer is refused at that place.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    keep: [Option<Duration>; Kept::ALL.len()],
    written: [Option<Location>; Kept::ALL.len()],
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep: Kept::ALL.map(|k| Some(Duration::from_secs(k.default_days() * 86_400))),
            written: [None; Kept::ALL.len()],
        }
    }
}

impl Retention {
    /// How long `k` is kept; `None`: forever.
    pub fn of(&self, k: Kept) -> Option<Duration> {
        self.keep[k as usize]
    }

    /// Where `retention.<k>` is written in the config (`None`: the default applies).
    pub fn written_at(&self, k: Kept) -> Option<Location> {
        self.written[k as usize]
    }

    /// The same with `k` kept for `d` (tests and tools).
    pub fn with(mut self, k: Kept, d: Option<Duration>) -> Retention {
        self.keep[k as usize] = d;
        self
    }
}

/// The shortest retention accepted: the purge runs daily, and less would remove records
/// that are still being worked on.
const MIN_RETENTION: Duration = Duration::from_secs(86_400);

/// Check `retention:`. Whether each job's windows fit is checked with the jobs
/// (`jobs::retention`), which know them.
pub fn check_retention(c: &mut Checker, raw: &RawRetention) -> Retention {
    let mut r = Retention::default();
    for k in Kept::ALL {
        let field = format!("retention.{}", k.key());
        let Some(text) = raw.get(k) else { continue };
        r.written[k as usize] = c.key_location(&field);
        if text.trim() == "never" {
            r.keep[k as usize] = None;
            continue;
        }
        match c.duration(&field, text) {
            Some(d) if d < MIN_RETENTION => c.err(
                &field,
                format!("`{text}` is shorter than a day"),
                Some("keep records at least 1d, or write `never` to keep them".into()),
            ),
            Some(d) => r.keep[k as usize] = Some(d),
            None => {}
        }
    }
    r
}
/// How a PostgreSQL URL holds a password, if it does (`user:password@…` or
/// `?password=…`): a secret written where secrets never live. A URL that does not parse is
/// left to the driver, which refuses it at connect.
pub(crate) fn url_password(url: &str) -> Option<&'static str> {
    let u = url::Url::parse(url).ok()?;
    if u.password().is_some() {
        Some("user:password@")
    } else if u
        .query_pairs()
        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
    {
        Some("?password=")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_found_where_a_url_can_hold_one() {
        for (url, found) in [
            (
                "postgres://aftercare:secret@db.internal/aftercare",
                Some("user:password@"),
            ),
            ("postgresql://aftercare:@db.internal/aftercare", None),
            (
                "postgres://db.internal/aftercare?password=secret",
                Some("?password="),
            ),
            (
                "postgres://db.internal/aftercare?sslmode=require&PASSWORD=x",
                Some("?password="),
            ),
            // No user, a port: the colon is the port's (refused before).
            ("postgres://db.internal:5432/aftercare", None),
            ("postgres://aftercare@db.internal:5432/aftercare", None),
            (
                "postgres://aftercare@db.internal:5432/aftercare?sslmode=verify-full",
                None,
            ),
            ("postgres:///aftercare?host=/run/postgresql", None),
        ] {
            assert_eq!(url_password(url), found, "{url}");
        }
    }
}
