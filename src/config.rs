//! The daemon's own configuration (`config/aftercare.yaml`): where it is, loading it, and
//! putting it together.
//!
//! Each section's shape, checked type and check live with the module that uses it
//! (`store::settings`, `channels::email::settings`, `dispatch::settings`, `policy::settings`,
//! `api::settings`, `channels::sms::settings`, `channels::webhook`, `unsubscribe`): adding a
//! setting touches that one file. This module only locates the file, reads it through
//! `yaml` (unknown keys are errors with "did you mean"), hands each section to its owner with
//! one [`Checker`], and keeps the few keys that belong to the whole daemon (folders,
//! defaults, the node id). Relative paths resolve against the config file's folder, so the
//! daemon behaves the same from any working directory. Secrets never live in this file: it
//! names an environment variable or a file that holds them.

use crate::api::settings::{self as api, ApiConfig, RawApi};
use crate::channels::email::settings::{self as email, EmailConfig, RawEmail};
use crate::channels::sms::settings::{self as sms, RawSmsConfig, SmsConfig};
use crate::channels::webhook::{self, RawWebhook, WebhookConfig};
use crate::check::Checker;
use crate::console::settings::{self as console, ConsoleConfig, RawConsole};
use crate::diag::Diagnostic;
use crate::dispatch::settings::{self as dispatch, DispatchConfig, RawDispatch};
use crate::policy::settings::{self as policy, PolicyConfig, RawPolicy};
use crate::store::settings::{self as store, RawRetention, RawStore, Retention, StoreConfig};
use crate::unsubscribe::{self, RawUnsubscribe, UnsubscribeConfig};
use crate::yaml;
use chrono_tz::Tz;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const ENV_CONFIG: &str = "AFTERCARE_CONFIG";
pub const DEFAULT_CONFIG: &str = "config/aftercare.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    store: RawStore,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default = "default_jobs_dir")]
    jobs_dir: String,
    #[serde(default = "default_templates_dir")]
    templates_dir: String,
    #[serde(default)]
    defaults: RawDefaults,
    email: RawEmail,
    #[serde(default)]
    dispatch: RawDispatch,
    #[serde(default)]
    policy: RawPolicy,
    unsubscribe: Option<RawUnsubscribe>,
    webhook: Option<RawWebhook>,
    sms: Option<RawSmsConfig>,
    api: Option<RawApi>,
    console: Option<RawConsole>,
    node_id: Option<String>,
}

/// How to speak to a contact whose own record does not say.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default = "default_tz")]
    timezone: String,
    #[serde(default = "default_locale")]
    locale: String,
}

impl Default for RawDefaults {
    fn default() -> Self {
        RawDefaults {
            timezone: default_tz(),
            locale: default_locale(),
        }
    }
}
fn default_tz() -> String {
    "UTC".into()
}
fn default_locale() -> String {
    "en".into()
}
fn default_jobs_dir() -> String {
    "jobs".into()
}
fn default_templates_dir() -> String {
    "message_templates".into()
}

/// Validated configuration: every path absolute, every duration parsed.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub store: StoreConfig,
    pub retention: Retention,
    pub jobs_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub default_timezone: Tz,
    pub default_locale: String,
    pub email: EmailConfig,
    pub dispatch: DispatchConfig,
    pub policy: PolicyConfig,
    pub unsubscribe: Option<UnsubscribeConfig>,
    pub webhook: Option<WebhookConfig>,
    /// The SMS gateways; `None` without an `sms:` section (jobs cannot list `sms` then).
    pub sms: Option<SmsConfig>,
    pub api: Option<ApiConfig>,
    /// The web console on the API's listener; `None` without a `console:` section.
    pub console: Option<ConsoleConfig>,
    pub node_id: String,
    /// The config's warnings (e.g. a DKIM domain that is not the sender's), for `validate`.
    pub warnings: crate::diag::Diagnostics,
}

/// The config file to use: `--config`, then `$AFTERCARE_CONFIG`, then the shipped one.
pub fn locate(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Ok(p) = std::env::var(ENV_CONFIG)
        && !p.is_empty()
    {
        return PathBuf::from(p);
    }
    PathBuf::from(DEFAULT_CONFIG)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {source}\n  hint: pass --config PATH or set {ENV_CONFIG}"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = yaml::read_file(path).map_err(|e| match e {
            yaml::ReadError::Io(source) => ConfigError::Read {
                path: crate::diag::display_path(path),
                source,
            },
            yaml::ReadError::Invalid(d) => ConfigError::Invalid(vec![d]),
        })?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Config::from_text(&abs, &text)
    }

    pub fn from_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let doc = yaml::parse_one::<RawConfig>(path, text).map_err(ConfigError::Invalid)?;
        let mut c = Checker::new(path, &doc.spans);
        let mut config = assemble(&mut c, doc.value, path);
        if c.has_errors() {
            Err(ConfigError::Invalid(c.into_diagnostics().items))
        } else {
            config.warnings = c.into_diagnostics();
            Ok(config)
        }
    }
}

/// Every section through its owner's check, in file order.
fn assemble(c: &mut Checker, raw: RawConfig, path: &Path) -> Config {
    let store = store::check(c, &raw.store);
    let default_timezone = c
        .tz("defaults.timezone", &raw.defaults.timezone)
        .unwrap_or(Tz::UTC);
    c.locale("defaults.locale", &raw.defaults.locale);
    Config {
        path: path.to_path_buf(),
        store,
        retention: store::check_retention(c, &raw.retention),
        jobs_dir: c.resolve(&raw.jobs_dir),
        templates_dir: c.resolve(&raw.templates_dir),
        default_timezone,
        default_locale: raw.defaults.locale,
        email: email::check(c, raw.email),
        dispatch: dispatch::check(c, raw.dispatch),
        policy: policy::check(c, raw.policy),
        unsubscribe: raw.unsubscribe.map(|u| unsubscribe::check(c, u)),
        webhook: raw.webhook.map(|w| webhook::check(c, w)),
        sms: raw.sms.as_ref().map(|s| sms::check(c, s)),
        api: raw.api.map(|a| api::check(c, a)),
        console: raw.console.map(|r| console::check(c, r)),
        node_id: raw.node_id.unwrap_or_else(default_node_id),
        warnings: Default::default(),
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "node".into());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::email::settings::EmailTransport;
    use crate::values::Secret;
    use std::time::Duration;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_text(Path::new("/etc/aftercare/aftercare.yaml"), text)
    }

    const MIN: &str =
        "store: {url: \"sqlite://data/a.db\"}\nemail: {from: \"Shop <care@example.com>\"}\n";

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = load(MIN).unwrap();
        match c.store {
            StoreConfig::Sqlite { path, .. } => {
                assert_eq!(path, Path::new("/etc/aftercare/data/a.db"))
            }
            _ => panic!(),
        }
        assert_eq!(c.jobs_dir, Path::new("/etc/aftercare/jobs"));
        let up = load(&MIN.replace("data/a.db", "../../var/lib/a.db")).unwrap();
        let StoreConfig::Sqlite { path, .. } = up.store else {
            panic!()
        };
        assert_eq!(path, Path::new("/var/lib/a.db"));
        assert_eq!(c.email.message_id_domain, "example.com");
        assert!(
            matches!(c.email.transport, EmailTransport::File { ref dir } if dir == Path::new("/etc/aftercare/data/outbox"))
        );
    }

    #[test]
    fn unknown_keys_and_inline_passwords_are_errors() {
        let text = format!("{MIN}jobs_dri: x\n");
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.contains(":3:1: error: unknown field `jobs_dri`"),
            "{err}"
        );
        assert!(err.contains("did you mean `jobs_dir`?"), "{err}");

        let text = "store: {url: \"sqlite://a.db\"}\nemail:\n  from: a@b.c\n  transport: smtp\n  smtp: {host: h, password: secret}\n";
        let err = load(text).unwrap_err().to_string();
        assert!(err.contains("unknown field `password`"), "{err}");
        assert!(err.contains("password_env"), "{err}");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_place() {
        let text = "store: {url: \"mysql://x\"}\ndefaults: {timezone: Asia/Shanghia, locale: \"zh_CN\"}\nemail:\n  from: \"not an address\"\ndispatch: {lease: 5x}\n";
        let err = load(text).unwrap_err().to_string();
        for want in [
            ":1:14: error: store.url: unsupported store URL",
            ":2:22: error: defaults.timezone: unknown time zone `Asia/Shanghia`",
            "did you mean `Asia/Shanghai`?",
            "defaults.locale",
            ":4:9: error: email.from",
            "dispatch.lease: `5x` has an unknown unit",
        ] {
            assert!(err.contains(want), "missing {want:?} in\n{err}");
        }
    }

    #[test]
    fn heartbeat_defaults_to_a_quarter_of_the_lease_and_must_fit_twice_in_it() {
        let c = load(MIN).unwrap();
        assert_eq!(c.dispatch.lease, Duration::from_secs(60));
        assert_eq!(c.dispatch.heartbeat, Duration::from_secs(15));
        let c = load(&format!("{MIN}dispatch: {{lease: 5s}}\n")).unwrap();
        assert_eq!(c.dispatch.heartbeat, Duration::from_millis(1250));
        let c = load(&format!("{MIN}dispatch: {{lease: 2m, heartbeat: 20s}}\n")).unwrap();
        assert_eq!(c.dispatch.heartbeat, Duration::from_secs(20));
        for (bad, want) in [
            (
                "{lease: 1m, heartbeat: 31s}",
                "at most half of dispatch.lease (1m)",
            ),
            (
                "{lease: 1m, heartbeat: 0s}",
                "dispatch.heartbeat: `0s` must be more than 0s",
            ),
            ("{lease: 0s}", "dispatch.lease: `0s` is too short"),
            (
                "{heartbeat: 5x}",
                "dispatch.heartbeat: `5x` has an unknown unit",
            ),
        ] {
            let err = load(&format!("{MIN}dispatch: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{bad}: missing {want:?} in\n{err}");
        }
    }

    #[test]
    fn record_wait_defaults_to_5ms_and_is_at_most_a_second() {
        let c = load(MIN).unwrap();
        assert_eq!(c.dispatch.record_wait, Duration::from_millis(5));
        let c = load(&format!("{MIN}dispatch: {{record_wait_ms: 0}}\n")).unwrap();
        assert_eq!(c.dispatch.record_wait, Duration::ZERO);
        let c = load(&format!("{MIN}dispatch: {{record_wait_ms: 1000}}\n")).unwrap();
        assert_eq!(c.dispatch.record_wait, Duration::from_secs(1));
        let err = load(&format!("{MIN}dispatch: {{record_wait_ms: 1001}}\n"))
            .unwrap_err()
            .to_string();
        for want in [
            "dispatch.record_wait_ms: 1001 is too long",
            "use 0 to 1000 (milliseconds)",
        ] {
            assert!(err.contains(want), "missing {want:?} in\n{err}");
        }
    }

    #[test]
    fn smtp_defaults_and_secret_sources() {
        let text = "store: {url: \"sqlite://a.db\"}\nemail:\n  from: a@b.c\n  transport: smtp\n  smtp: {host: h, tls: starttls, username: u, password_file: secret}\n";
        let c = load(text).unwrap();
        let EmailTransport::Smtp(s) = c.email.transport else {
            panic!()
        };
        assert_eq!(s.port, 587);
        assert!(
            matches!(s.password, Secret::File(ref p) if p == Path::new("/etc/aftercare/secret"))
        );
    }
}
