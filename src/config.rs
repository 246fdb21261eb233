//! The daemon's own configuration (`config/aftercare.yaml`).
//!
//! Raw YAML structs with `deny_unknown_fields`, then [`Config`], with relative paths resolved
//! against the config file's folder (so the daemon behaves the same from any working
//! directory), durations parsed and time zones checked. Secrets never live in this file:
//! it names an environment variable or a file that holds them.

use crate::diag::{Diagnostic, Location, did_you_mean};
use crate::policy::{Cap, ConsentMode, LeapDay, SendWindow, parse_clock};
use crate::{duration, yaml};
use chrono_tz::Tz;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const ENV_CONFIG: &str = "AFTERCARE_CONFIG";
pub const DEFAULT_CONFIG: &str = "config/aftercare.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    store: RawStore,
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
    /// SMS gateways (checked by `channels::sms::config`).
    sms: Option<crate::channels::sms::RawSmsConfig>,
    api: Option<RawApi>,
    node_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
    #[serde(default)]
    tokens: Vec<RawToken>,
    max_events: Option<usize>,
    max_body: Option<String>,
    /// How many events one shared transaction takes at most (group commit).
    group_commit: Option<usize>,
    /// The URL the outside world reaches this API at (providers sign the URL they call).
    public_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    scope: Scope,
    token_env: Option<String>,
    token_file: Option<String>,
}

/// What a bearer token may do. `admin` may do everything, `read` only reads, `ingest` only
/// posts events.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

impl Scope {
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    consent: Option<ConsentMode>,
    send_window: Option<RawWindow>,
    caps: Option<Vec<RawCap>>,
    leap_day: Option<LeapDay>,
    /// How late an anniversary greeting may still go (a daemon down on the day).
    anniversary_grace: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    max: u32,
    per: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnsubscribe {
    /// `https://shop.example.com/u/{token}`
    url: String,
    mailto: Option<String>,
    key_env: Option<String>,
    key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: String,
    secret_env: Option<String>,
    secret_file: Option<String>,
    timeout: Option<String>,
}

fn default_jobs_dir() -> String {
    "jobs".into()
}
fn default_templates_dir() -> String {
    "message_templates".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    from: String,
    #[serde(default)]
    transport: TransportKind,
    file: Option<RawFile>,
    smtp: Option<RawSmtp>,
    /// Right-hand side of generated Message-IDs; the sender's domain when absent.
    message_id_domain: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    #[default]
    File,
    Smtp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    dir: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: Option<u16>,
    #[serde(default)]
    tls: TlsMode,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    pool_size: Option<u32>,
    timeout: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDispatch {
    batch_size: Option<u32>,
    concurrency: Option<u32>,
    lease: Option<String>,
    heartbeat: Option<String>,
    poll_interval: Option<String>,
    expire_after: Option<String>,
    on_job_removed: Option<OnJobRemoved>,
    #[serde(default)]
    retry: RawRetry,
}

/// What happens to pending messages of a job removed from the jobs folder (on reload).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnJobRemoved {
    /// Cancelled, with the reason in the log.
    #[default]
    Cancel,
    /// Left waiting until the job is back.
    Hold,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    initial: Option<String>,
    max: Option<String>,
}

/// Validated configuration: every path absolute, every duration parsed.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub store: StoreConfig,
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
    pub sms: Option<crate::channels::sms::SmsConfig>,
    pub api: Option<ApiConfig>,
    pub node_id: String,
}

/// The HTTP API: where it listens and who may call it.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: std::net::SocketAddr,
    pub tokens: Vec<TokenConfig>,
    /// Events per `POST /v1/events` at most.
    pub max_events: usize,
    /// Request body size at most, in bytes.
    pub max_body: usize,
    pub group_commit: usize,
    pub public_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub name: String,
    pub scope: Scope,
    pub secret: Secret,
}

/// Defaults for the customer-protecting rules; jobs may override some.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub consent: ConsentMode,
    pub send_window: SendWindow,
    /// Across all marketing jobs, per contact.
    pub caps: Vec<Cap>,
    pub leap_day: LeapDay,
    pub anniversary_grace: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            consent: ConsentMode::OptIn,
            send_window: SendWindow {
                start: chrono::NaiveTime::from_hms_opt(9, 0, 0).expect("09:00"),
                end: chrono::NaiveTime::from_hms_opt(21, 0, 0),
            },
            caps: vec![
                Cap {
                    max: 2,
                    per: Duration::from_secs(7 * 86_400),
                },
                Cap {
                    max: 1,
                    per: Duration::from_secs(86_400),
                },
            ],
            leap_day: LeapDay::Feb28,
            anniversary_grace: Duration::from_secs(86_400),
        }
    }
}

/// One-click unsubscribe links (RFC 8058) in every marketing email.
#[derive(Debug, Clone)]
pub struct UnsubscribeConfig {
    /// Holds `{token}`.
    pub url: String,
    pub mailto: Option<String>,
    /// The HMAC key; a `key_file` that does not exist is created with a fresh random key.
    pub key: Secret,
}

/// Where callback tasks are POSTed (a CRM or call-centre queue).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    pub timeout: Duration,
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

/// Where a secret comes from; read only when a connection is made.
#[derive(Debug, Clone, Default)]
pub enum Secret {
    #[default]
    None,
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// The secret's value; the error names the variable or file, never the value.
    pub fn read(&self, field: &str) -> anyhow::Result<Option<String>> {
        match self {
            Secret::None => Ok(None),
            Secret::Env(var) => std::env::var(var).map(Some).map_err(|_| {
                anyhow::anyhow!("{field}: environment variable {var} is not set (export it, or keep the secret in a file: the matching *_file key)")
            }),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| anyhow::anyhow!("{field}: cannot read {}: {e}", p.display())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub from: lettre::message::Mailbox,
    pub message_id_domain: String,
    pub transport: EmailTransport,
}

#[derive(Debug, Clone)]
pub enum EmailTransport {
    File { dir: PathBuf },
    Smtp(SmtpConfig),
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Secret,
    pub pool_size: u32,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub batch_size: u32,
    pub concurrency: u32,
    /// How long a claim holds a message without a renewal: after a node dies, its messages
    /// wait this long (plus one reaper round) before another node takes them.
    pub lease: Duration,
    /// How often a running daemon renews the leases it holds, and reaps expired ones.
    pub heartbeat: Duration,
    pub poll_interval: Duration,
    /// A message more than this late (a backfill of old events, a long outage) is not sent.
    pub expire_after: Option<Duration>,
    pub on_job_removed: OnJobRemoved,
    pub retry: RetryConfig,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

/// The default lease. With heartbeats a lease no longer has to outlast a batch, only a
/// stall: a live node renews every quarter of it, so it loses a claim only after missing
/// three renewals in a row (45 s cut off from the store, a frozen VM), while the messages of
/// a node that died wait about a minute, not five, before another node sends them.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            batch_size: 256,
            concurrency: 16,
            lease: DEFAULT_LEASE,
            heartbeat: DEFAULT_LEASE / 4,
            poll_interval: Duration::from_secs(1),
            expire_after: Some(Duration::from_secs(7 * 86_400)),
            on_job_removed: OnJobRemoved::Cancel,
            retry: RetryConfig {
                max_attempts: 8,
                initial: Duration::from_secs(60),
                max: Duration::from_secs(6 * 3600),
            },
        }
    }
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
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut c = Checker {
            path,
            spans: &doc.spans,
            diags: Vec::new(),
        };
        let raw = doc.value;
        let config = c.build(raw, &base, path);
        if c.diags.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(c.diags))
        }
    }

    pub fn config_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

struct Checker<'a> {
    path: &'a Path,
    spans: &'a yaml::SpanIndex,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&self, field: &str) -> Option<Location> {
        self.spans.locate(field)
    }

    fn err(&mut self, field: &str, msg: String, hint: Option<String>) {
        let d = Diagnostic::error(self.path, self.at(field), format!("{field}: {msg}"))
            .with_hint_opt(hint);
        self.diags.push(d);
    }

    fn duration(&mut self, field: &str, v: Option<&str>, default: Duration) -> Duration {
        match v.map(duration::parse) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(
                    field,
                    e,
                    Some("write a number and a unit, e.g. 30s, 5m, 6h, 3d".into()),
                );
                default
            }
        }
    }

    fn build(&mut self, raw: RawConfig, base: &Path, path: &Path) -> Config {
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            normalise(&if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            })
        };
        let store = self.store(&raw.store, &resolve);
        let default_timezone = parse_tz(&raw.defaults.timezone).unwrap_or_else(|hint| {
            self.err(
                "defaults.timezone",
                format!("unknown time zone `{}`", raw.defaults.timezone),
                hint,
            );
            Tz::UTC
        });
        if let Err(e) = check_locale(&raw.defaults.locale) {
            self.err(
                "defaults.locale",
                e,
                Some("use a language tag such as zh-CN, en or en-US".into()),
            );
        }
        let email = self.email(raw.email, &resolve);
        let dispatch = self.dispatch(raw.dispatch);
        let policy = self.policy(raw.policy);
        let unsubscribe = raw.unsubscribe.map(|u| self.unsubscribe(u, &resolve));
        let webhook = raw.webhook.map(|w| self.webhook(w, &resolve));
        let sms = raw.sms.as_ref().and_then(|s| self.sms(s, base));
        let api = raw.api.map(|a| self.api(a, &resolve));
        let node_id = raw.node_id.unwrap_or_else(default_node_id);
        Config {
            path: path.to_path_buf(),
            store,
            jobs_dir: resolve(&raw.jobs_dir),
            templates_dir: resolve(&raw.templates_dir),
            default_timezone,
            default_locale: raw.defaults.locale,
            email,
            dispatch,
            policy,
            unsubscribe,
            webhook,
            sms,
            api,
            node_id,
        }
    }

    /// The `sms:` section, checked by the SMS module; each problem it finds is located here.
    fn sms(
        &mut self,
        raw: &crate::channels::sms::RawSmsConfig,
        base: &Path,
    ) -> Option<crate::channels::sms::SmsConfig> {
        match crate::channels::sms::compile(raw, base) {
            Ok(c) => Some(c),
            Err(problems) => {
                for p in problems {
                    self.err(&p.path, p.message, p.hint);
                }
                None
            }
        }
    }

    fn api(&mut self, raw: RawApi, resolve: &dyn Fn(&str) -> PathBuf) -> ApiConfig {
        let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text.parse().unwrap_or_else(|_| {
            self.err(
                "api.listen",
                format!("`{listen_text}` is not an address:port"),
                Some("e.g. 127.0.0.1:8080 or 0.0.0.0:8080".into()),
            );
            std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        let mut tokens = Vec::new();
        for (i, t) in raw.tokens.iter().enumerate() {
            let at = format!("api.tokens[{i}]");
            let secret = match (&t.token_env, &t.token_file) {
                (Some(e), None) => Secret::Env(e.clone()),
                (None, Some(f)) => Secret::File(resolve(f)),
                _ => {
                    self.err(
                        &at,
                        "give exactly one of token_env or token_file".into(),
                        Some("tokens never live in this file".into()),
                    );
                    continue;
                }
            };
            if raw.tokens[..i].iter().any(|o| o.name == t.name) {
                self.err(
                    &format!("{at}.name"),
                    format!("token name `{}` is used twice", t.name),
                    None,
                );
            }
            tokens.push(TokenConfig {
                name: t.name.clone(),
                scope: t.scope,
                secret,
            });
        }
        let max_body = match raw.max_body.as_deref().map(parse_size) {
            None => 1 << 20,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.err("api.max_body", e, Some("e.g. 1MiB, 512KiB".into()));
                1 << 20
            }
        };
        ApiConfig {
            listen,
            tokens,
            max_events: raw.max_events.unwrap_or(1000).max(1),
            max_body,
            group_commit: raw.group_commit.unwrap_or(2000).max(1),
            public_url: raw.public_url,
        }
    }

    fn policy(&mut self, raw: RawPolicy) -> PolicyConfig {
        let d = PolicyConfig::default();
        let send_window = match &raw.send_window {
            Some(w) => self
                .window("policy.send_window", w)
                .unwrap_or(d.send_window),
            None => d.send_window,
        };
        let caps = match raw.caps {
            None => d.caps,
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let field = format!("policy.caps[{i}].per");
                    let per = self.duration(&field, Some(&c.per), Duration::ZERO);
                    if c.max == 0 || per.is_zero() {
                        self.err(
                            &format!("policy.caps[{i}]"),
                            "a cap needs max ≥ 1 and a period".into(),
                            Some("e.g. {max: 2, per: 7d}".into()),
                        );
                        return None;
                    }
                    Some(Cap { max: c.max, per })
                })
                .collect(),
        };
        PolicyConfig {
            consent: raw.consent.unwrap_or(d.consent),
            send_window,
            caps,
            leap_day: raw.leap_day.unwrap_or(d.leap_day),
            anniversary_grace: self.duration(
                "policy.anniversary_grace",
                raw.anniversary_grace.as_deref(),
                d.anniversary_grace,
            ),
        }
    }

    fn window(&mut self, field: &str, w: &RawWindow) -> Option<SendWindow> {
        match parse_window(w) {
            Ok(win) => Some(win),
            Err(e) => {
                self.err(
                    field,
                    e,
                    Some("e.g. {start: \"09:00\", end: \"21:00\"}".into()),
                );
                None
            }
        }
    }

    fn unsubscribe(
        &mut self,
        raw: RawUnsubscribe,
        resolve: &dyn Fn(&str) -> PathBuf,
    ) -> UnsubscribeConfig {
        if !raw.url.contains("{token}") {
            self.err(
                "unsubscribe.url",
                format!("`{}` has no {{token}} placeholder", raw.url),
                Some("e.g. https://shop.example.com/u/{token}".into()),
            );
        } else if !raw.url.starts_with("https://") {
            self.err(
                "unsubscribe.url",
                "must be an https:// link (mail providers ignore others)".into(),
                None,
            );
        }
        if let Some(m) = &raw.mailto
            && m.parse::<lettre::Address>().is_err()
        {
            self.err(
                "unsubscribe.mailto",
                format!("`{m}` is not an email address"),
                None,
            );
        }
        let key = match self.secret(
            "unsubscribe",
            raw.key_env.as_deref(),
            raw.key_file.as_deref(),
            resolve,
        ) {
            Secret::None => {
                self.err(
                    "unsubscribe",
                    "no key".into(),
                    Some(
                        "set key_env or key_file (a missing key_file is created with a random key)"
                            .into(),
                    ),
                );
                Secret::None
            }
            k => k,
        };
        UnsubscribeConfig {
            url: raw.url,
            mailto: raw.mailto,
            key,
        }
    }

    fn webhook(&mut self, raw: RawWebhook, resolve: &dyn Fn(&str) -> PathBuf) -> WebhookConfig {
        if !(raw.url.starts_with("https://") || raw.url.starts_with("http://")) {
            self.err(
                "webhook.url",
                format!("`{}` is not an http(s) URL", raw.url),
                None,
            );
        }
        let secret = match (raw.secret_env.as_deref(), raw.secret_file.as_deref()) {
            (Some(e), None) => Secret::Env(e.to_string()),
            (None, Some(f)) => Secret::File(resolve(f)),
            _ => {
                self.err(
                    "webhook",
                    "give exactly one of secret_env or secret_file".into(),
                    Some("the receiver checks the X-Aftercare-Signature HMAC with it".into()),
                );
                Secret::None
            }
        };
        WebhookConfig {
            url: raw.url,
            secret,
            timeout: self.duration(
                "webhook.timeout",
                raw.timeout.as_deref(),
                Duration::from_secs(10),
            ),
        }
    }

    fn store(&mut self, raw: &RawStore, resolve: &dyn Fn(&str) -> PathBuf) -> StoreConfig {
        let url = raw.url.trim();
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let file = rest.split('?').next().unwrap_or(rest);
            if file.is_empty() {
                self.err(
                    "store.url",
                    "no file name after sqlite://".into(),
                    Some("e.g. sqlite://data/aftercare.db".into()),
                );
            }
            if raw.password_env.is_some() || raw.password_file.is_some() {
                self.err(
                    "store.password_env",
                    "SQLite has no password".into(),
                    Some("remove password_env / password_file".into()),
                );
            }
            StoreConfig::Sqlite {
                path: resolve(file),
                synchronous: raw.sqlite_synchronous.unwrap_or(SqliteSync::Full),
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if url
                .split('@')
                .next()
                .is_some_and(|userinfo| userinfo.matches(':').count() > 1)
            {
                self.err(
                    "store.url",
                    "the URL holds a password".into(),
                    Some(
                        "remove it from the URL and set store.password_env or store.password_file"
                            .into(),
                    ),
                );
            }
            let password = self.secret(
                "store",
                raw.password_env.as_deref(),
                raw.password_file.as_deref(),
                resolve,
            );
            StoreConfig::Postgres {
                url: url.to_string(),
                password,
            }
        } else {
            self.err(
                "store.url",
                format!("unsupported store URL `{url}`"),
                Some("use sqlite://data/aftercare.db or postgres://user@host/db".into()),
            );
            StoreConfig::Sqlite {
                path: resolve("data/aftercare.db"),
                synchronous: SqliteSync::Full,
            }
        }
    }

    fn secret(
        &mut self,
        at: &str,
        env: Option<&str>,
        file: Option<&str>,
        resolve: &dyn Fn(&str) -> PathBuf,
    ) -> Secret {
        match (env, file) {
            (Some(_), Some(_)) => {
                self.err(
                    &format!("{at}.password_env"),
                    "give password_env or password_file, not both".into(),
                    None,
                );
                Secret::None
            }
            (Some(v), None) => Secret::Env(v.to_string()),
            (None, Some(f)) => Secret::File(resolve(f)),
            (None, None) => Secret::None,
        }
    }

    fn email(&mut self, raw: RawEmail, resolve: &dyn Fn(&str) -> PathBuf) -> EmailConfig {
        let from: lettre::message::Mailbox = raw.from.parse().unwrap_or_else(|e| {
            self.err(
                "email.from",
                format!("`{}` is not a valid sender: {e}", raw.from),
                Some("e.g. \"Example Shop <care@example.com>\"".into()),
            );
            "invalid@invalid.invalid".parse().expect("static address")
        });
        let message_id_domain = raw
            .message_id_domain
            .unwrap_or_else(|| from.email.domain().to_string());
        let transport = match raw.transport {
            TransportKind::File => EmailTransport::File {
                dir: resolve(
                    raw.file
                        .as_ref()
                        .map(|f| f.dir.as_str())
                        .unwrap_or("data/outbox"),
                ),
            },
            TransportKind::Smtp => match raw.smtp {
                None => {
                    self.err(
                        "email.transport",
                        "transport is smtp but there is no email.smtp section".into(),
                        Some("add email.smtp: {host: ..., port: ...}".into()),
                    );
                    EmailTransport::File {
                        dir: resolve("data/outbox"),
                    }
                }
                Some(s) => {
                    let password = self.secret(
                        "email.smtp",
                        s.password_env.as_deref(),
                        s.password_file.as_deref(),
                        resolve,
                    );
                    if s.username.is_some() && matches!(password, Secret::None) {
                        self.err(
                            "email.smtp.username",
                            "a username without a password".into(),
                            Some("set email.smtp.password_env or email.smtp.password_file".into()),
                        );
                    }
                    let pool_size = s.pool_size.unwrap_or(8);
                    if pool_size == 0 {
                        self.err("email.smtp.pool_size", "must be at least 1".into(), None);
                    }
                    EmailTransport::Smtp(SmtpConfig {
                        port: s.port.unwrap_or(match s.tls {
                            TlsMode::None => 25,
                            TlsMode::Starttls => 587,
                            TlsMode::Tls => 465,
                        }),
                        host: s.host,
                        tls: s.tls,
                        username: s.username,
                        password,
                        pool_size: pool_size.max(1),
                        timeout: self.duration(
                            "email.smtp.timeout",
                            s.timeout.as_deref(),
                            Duration::from_secs(30),
                        ),
                    })
                }
            },
        };
        EmailConfig {
            from,
            message_id_domain,
            transport,
        }
    }

    fn dispatch(&mut self, raw: RawDispatch) -> DispatchConfig {
        let d = DispatchConfig::default();
        let retry = RetryConfig {
            max_attempts: raw
                .retry
                .max_attempts
                .unwrap_or(d.retry.max_attempts)
                .max(1),
            initial: self.duration(
                "dispatch.retry.initial",
                raw.retry.initial.as_deref(),
                d.retry.initial,
            ),
            max: self.duration("dispatch.retry.max", raw.retry.max.as_deref(), d.retry.max),
        };
        let expire_after = match raw.expire_after.as_deref() {
            Some("never") => None,
            other => Some(self.duration(
                "dispatch.expire_after",
                other,
                d.expire_after.unwrap_or_default(),
            )),
        };
        let (lease, heartbeat) = self.lease(&raw);
        DispatchConfig {
            batch_size: raw.batch_size.unwrap_or(d.batch_size).clamp(1, 10_000),
            concurrency: raw.concurrency.unwrap_or(d.concurrency).clamp(1, 1_024),
            lease,
            heartbeat,
            poll_interval: self.duration(
                "dispatch.poll_interval",
                raw.poll_interval.as_deref(),
                d.poll_interval,
            ),
            expire_after,
            on_job_removed: raw.on_job_removed.unwrap_or_default(),
            retry,
        }
    }
}

/// `1MiB`, `512KiB`, `2000000` (bytes).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: usize = n.parse().map_err(|_| format!("`{text}` is not a size"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "k" => 1024,
        "MiB" | "MB" | "M" => 1024 * 1024,
        other => {
            return Err(format!(
                "`{text}` has an unknown unit `{other}` (B, KiB, MiB)"
            ));
        }
    };
    Ok(n * mult)
}

impl Checker<'_> {
    /// `dispatch.lease` and `dispatch.heartbeat` (default a quarter of the lease). A
    /// heartbeat longer than half the lease is refused: one late renewal would lose it.
    fn lease(&mut self, raw: &RawDispatch) -> (Duration, Duration) {
        let d = DispatchConfig::default();
        let mut lease = self.duration("dispatch.lease", raw.lease.as_deref(), d.lease);
        if lease < Duration::from_secs(1) {
            self.err(
                "dispatch.lease",
                format!(
                    "`{}` is too short: a lease must outlast a store round trip",
                    duration::format(lease)
                ),
                Some("use at least 1s; the default is 1m".into()),
            );
            lease = d.lease;
        }
        let heartbeat = match raw.heartbeat.as_deref() {
            None => lease / 4,
            Some(text) => {
                let h = self.duration("dispatch.heartbeat", Some(text), lease / 4);
                if h.is_zero() || h * 2 > lease {
                    self.err(
                        "dispatch.heartbeat",
                        format!(
                            "`{}` must be more than 0s and at most half of dispatch.lease ({}): \
                             a node that renews less often loses its claims after one late renewal",
                            duration::format(h),
                            duration::format(lease)
                        ),
                        Some("leave it out for a quarter of the lease".into()),
                    );
                    lease / 4
                } else {
                    h
                }
            }
        };
        (lease, heartbeat)
    }
}

/// `{start: "09:00", end: "21:00"}` as a [`SendWindow`].
pub fn parse_window(w: &RawWindow) -> Result<SendWindow, String> {
    let start =
        parse_clock(&w.start)?.ok_or_else(|| "a window cannot start at 24:00".to_string())?;
    let end = parse_clock(&w.end)?;
    if end == Some(start) {
        return Err(
            "start and end are the same; for no restriction use start 00:00, end 24:00".into(),
        );
    }
    Ok(SendWindow { start, end })
}

/// A time zone by IANA name, with a suggestion when it is misspelt.
pub fn parse_tz(name: &str) -> Result<Tz, Option<String>> {
    name.parse::<Tz>().map_err(|_| {
        did_you_mean(name, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()))
            .or_else(|| Some("use an IANA name such as Asia/Shanghai or America/New_York".into()))
    })
}

/// A BCP 47-shaped language tag (`zh-CN`, `en`, `pt-BR`); enough to pick template files.
pub fn check_locale(tag: &str) -> Result<(), String> {
    let mut parts = tag.split('-');
    let lang = parts.next().unwrap_or("");
    let lang_ok = (2..=3).contains(&lang.len()) && lang.chars().all(|c| c.is_ascii_alphabetic());
    let rest_ok =
        parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if lang_ok && rest_ok {
        Ok(())
    } else {
        Err(format!("`{tag}` is not a language tag"))
    }
}

/// `config/../data` → `data`, without touching the file system (the folder may not exist yet).
fn normalise(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
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
