//! The `console:` section: whether the daemon serves the console, who may sign in, and how
//! long a session lives without a click.
//!
//! ```yaml
//! console:
//!   enabled: true
//!   idle_timeout: 30m
//!   session_lifetime: 12h                  # signed out this long after signing in, however busy
//!   public_url: https://care.example.com   # the session cookie is `Secure` when https
//!   users:
//!     - {name: li.na, role: support, password_file: ../data/console/li.na}
//! ```
//!
//! A user's `password_file` holds an argon2 hash, never a password (`aftercare console
//! passwd NAME` writes it); it is read at each sign-in, so a new password takes effect
//! without a restart.

use crate::check::Checker;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `console:` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    enabled: Option<bool>,
    #[serde(default)]
    users: Vec<RawUser>,
    idle_timeout: Option<String>,
    session_lifetime: Option<String>,
    public_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    role: Role,
    password_file: String,
}

/// What a console user may see and do.
///
/// - `support`: search, customers with full addresses, the actions (retry, cancel,
///   suppress, unsuppress), callback tasks.
/// - `marketing`: search and customers with masked addresses and no actions, campaigns.
/// - `admin`: everything, health included. An API token with the `admin` scope signs in
///   as admin.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Support,
    Marketing,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Support => "support",
            Role::Marketing => "marketing",
            Role::Admin => "admin",
        }
    }

    /// Full email addresses and phone numbers.
    pub fn sees_addresses(self) -> bool {
        self != Role::Marketing
    }

    /// Retry, cancel, suppress, unsuppress, callback tasks.
    pub fn acts(self) -> bool {
        self != Role::Marketing
    }

    pub fn sees_campaigns(self) -> bool {
        self != Role::Support
    }

    pub fn sees_health(self) -> bool {
        self == Role::Admin
    }
}

/// A console user; the hash is read from `password_file` at sign-in.
#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    pub password_file: PathBuf,
}

/// The checked section.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub enabled: bool,
    pub users: Vec<UserConfig>,
    /// A session unused this long is over.
    pub idle_timeout: Duration,
    /// A session this long after its sign-in is over, however busy: a cookie taken from a
    /// shared desk or a stolen one does not last for ever by being used.
    pub session_lifetime: Duration,
    pub public_url: Option<String>,
}

impl ConsoleConfig {
    /// Whether the session cookie carries `Secure`: the console is reached over HTTPS (a
    /// proxy in front of the daemon terminates TLS; `public_url` says so).
    pub fn secure_cookie(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// Shortest and longest idle timeout: a session must outlast a phone call, and a console
/// left open on a shared desk must not stay signed in for days.
const MIN_IDLE: Duration = Duration::from_secs(1);
const MAX_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Shortest and longest session: a minute to sign in and act, a month at the most.
const MIN_LIFETIME: Duration = Duration::from_secs(60);
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

pub fn check(c: &mut Checker, raw: RawConsole) -> ConsoleConfig {
    let idle_timeout = within(
        c,
        "console.idle_timeout",
        raw.idle_timeout.as_deref(),
        (Duration::from_secs(30 * 60), MIN_IDLE..=MAX_IDLE, "1s..7d"),
        "e.g. 30m (the default) or 8h",
    );
    let session_lifetime = within(
        c,
        "console.session_lifetime",
        raw.session_lifetime.as_deref(),
        (
            Duration::from_secs(12 * 3600),
            MIN_LIFETIME..=MAX_LIFETIME,
            "1m..30d",
        ),
        "e.g. 12h (the default: a working day) or 7d",
    );
    if let Some(u) = &raw.public_url {
        c.url("console.public_url", u, "https://care.example.com");
    }
    let mut users = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let at = format!("console.users[{i}]");
        if !valid_name(&u.name) {
            c.err(
                &format!("{at}.name"),
                format!(
                    "`{}` is not a user name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`",
                    crate::text::printable(&u.name)
                ),
                Some("e.g. li.na or support-1".into()),
            );
        }
        if raw.users[..i].iter().any(|o| o.name == u.name) {
            c.err(
                &format!("{at}.name"),
                format!("user `{}` is listed twice", u.name),
                None,
            );
        }
        if u.password_file.trim().is_empty() {
            c.err(
                &format!("{at}.password_file"),
                "empty path",
                Some(format!(
                    "a file for the hash that `aftercare console passwd {}` writes",
                    u.name
                )),
            );
        }
        users.push(UserConfig {
            name: u.name.clone(),
            role: u.role,
            password_file: c.resolve(&u.password_file),
        });
    }
    ConsoleConfig {
        enabled: raw.enabled.unwrap_or(true),
        users,
        idle_timeout,
        session_lifetime,
        public_url: raw.public_url,
    }
}

/// A duration key with its default and the range it must fall in (`range`, as written in
/// the error); out of range is reported with `hint`.
fn within(
    c: &mut Checker,
    field: &str,
    text: Option<&str>,
    (default, range, written): (Duration, std::ops::RangeInclusive<Duration>, &str),
    hint: &str,
) -> Duration {
    let d = c.positive_duration_or(field, text, default);
    if !range.contains(&d) {
        c.err(
            field,
            format!("`{}` is outside {written}", text.unwrap_or_default()),
            Some(hint.into()),
        );
    }
    d
}

/// User names appear in the log of agents' actions and in cookies' sessions: kept plain.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|ch| ch.is_alphanumeric() || matches!(ch, '.' | '_' | '-' | '@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ConsoleConfig, String> {
        #[derive(Deserialize)]
        struct Doc {
            console: RawConsole,
        }
        let path = std::path::Path::new("/etc/aftercare/aftercare.yaml");
        let doc = crate::yaml::parse_one::<Doc>(path, text)
            .map_err(|d| d.first().map(|d| d.to_string()).unwrap_or_default())?;
        let mut c = Checker::new(path, &doc.spans);
        let cfg = check(&mut c, doc.value.console);
        if c.has_errors() {
            return Err(c.into_diagnostics().to_string());
        }
        Ok(cfg)
    }

    #[test]
    fn users_roles_and_defaults() {
        let cfg = load(
            "console:\n  users:\n    - {name: li.na, role: support, password_file: pw/li.na}\n    - {name: mk, role: marketing, password_file: /run/mk}\n",
        )
        .unwrap();
        assert!(cfg.enabled);
        assert_eq!(cfg.idle_timeout, Duration::from_secs(1800));
        assert!(!cfg.secure_cookie());
        let li = cfg.user("li.na").unwrap();
        assert_eq!(li.role, Role::Support);
        assert_eq!(li.password_file, PathBuf::from("/etc/aftercare/pw/li.na"));
        assert!(Role::Support.acts() && !Role::Marketing.acts());
        assert!(!Role::Marketing.sees_addresses() && Role::Marketing.sees_campaigns());
        assert!(Role::Admin.sees_health() && !Role::Support.sees_health());
        let https = load("console: {public_url: \"https://care.example.com\"}\n").unwrap();
        assert!(https.secure_cookie());
    }

    #[test]
    fn bad_values_are_located() {
        let err = load(
            "console:\n  idle_timeout: 30d\n  users:\n    - {name: \"a b\", role: support, password_file: x}\n    - {name: \"a b\", role: root, password_file: y}\n",
        )
        .unwrap_err();
        assert!(
            err.contains("role") || err.contains("unknown variant"),
            "{err}"
        );
        let err = load(
            "console:\n  idle_timeout: 30d\n  session_lifetime: 90d\n  users:\n    - {name: \"a b\", role: support, password_file: x}\n    - {name: \"a b\", role: admin, password_file: y}\n",
        )
        .unwrap_err();
        for want in [
            ":2:17: error: console.idle_timeout: `30d` is outside 1s..7d",
            ":3:21: error: console.session_lifetime: `90d` is outside 1m..30d",
            ":5:14: error: console.users[0].name: `a b` is not a user name",
            "console.users[1].name: user `a b` is listed twice",
        ] {
            assert!(err.contains(want), "missing {want:?} in\n{err}");
        }
    }
}
