//! The `sms:` section of the daemon config: raw YAML shapes, then [`SmsConfig`].
//!
//! Same two steps as the rest of the config (raw serde structs with `deny_unknown_fields`,
//! then a checked, typed form), kept here so the gateways and their settings live together.
//! [`compile`] collects every problem as a [`Problem`] with its field path
//! (`sms.gateways.aliyun.rate`), message and hint; the config checker locates the path in the
//! file and prints `path:line:col`.
//!
//! A gateway is one flat mapping whose `kind` says which keys apply. Flat rather than a
//! tagged enum so that serde still reports unknown keys with their line and column (an
//! internally tagged enum buffers the mapping and loses them), and a key that exists but
//! belongs to another kind gets its own message ("`sign_name` is an aliyun setting").
//! Secrets are only ever named (`*_env`, `*_file`): `auth_token: ...` is an unknown key, and a
//! generic gateway's credential header must come from `{{secret}}`.

use crate::config::Secret;
use crate::diag::did_you_mean;
use crate::duration;
use reqwest::Url;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `sms:` as written.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawSmsConfig {
    /// Default gateway order for jobs that name none.
    #[serde(default)]
    pub route: Vec<String>,
    #[serde(default)]
    pub gateways: BTreeMap<String, RawGateway>,
    pub breaker: Option<RawBreaker>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub failures: Option<u32>,
    pub cooldown: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawKind {
    Twilio,
    Aliyun,
    Http,
}

impl RawKind {
    fn as_str(self) -> &'static str {
        match self {
            RawKind::Twilio => "twilio",
            RawKind::Aliyun => "aliyun",
            RawKind::Http => "http",
        }
    }
}

/// A number or a string in YAML, read as text (`equals: 0` and `equals: "0"` mean the same).
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(untagged)]
pub enum RawScalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl RawScalar {
    fn text(&self) -> String {
        match self {
            RawScalar::Bool(b) => b.to_string(),
            RawScalar::Int(i) => i.to_string(),
            RawScalar::Float(f) => f.to_string(),
            RawScalar::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One gateway as written. `kind` decides which of the other keys apply.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub kind: RawKind,
    /// `10/s`, `600/m`, `3600/h`.
    pub rate: Option<RawScalar>,
    /// Per request, connecting included (default 10s).
    pub timeout: Option<String>,
    pub base_url: Option<String>,

    // twilio
    pub account_sid: Option<String>,
    pub auth_token_env: Option<String>,
    pub auth_token_file: Option<String>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub status_callback: Option<String>,

    // aliyun
    pub access_key_id: Option<String>,
    pub access_key_secret_env: Option<String>,
    pub access_key_secret_file: Option<String>,
    pub sign_name: Option<String>,
    pub region: Option<String>,

    // http
    pub method: Option<String>,
    pub url: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<String>,
    pub format: Option<RawFormat>,
    pub success: Option<RawSuccess>,
    pub id_pointer: Option<String>,
    pub message_pointer: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub receipt: Option<RawReceipt>,
    pub reply: Option<RawReply>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawFormat {
    Json,
    Form,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawSuccess {
    /// HTTP status (or list) that can mean success; default any 2xx.
    pub status: Option<OneOrMany<u16>>,
    /// JSON pointer into the answer whose value decides.
    pub pointer: Option<String>,
    pub equals: Option<RawScalar>,
    /// Values at `pointer` that mean "busy, try later" rather than a refusal.
    #[serde(default)]
    pub retry: Vec<RawScalar>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawReceipt {
    pub id_pointer: String,
    pub status_pointer: String,
    pub code_pointer: Option<String>,
    pub text_pointer: Option<String>,
    #[serde(default)]
    pub delivered: Vec<RawScalar>,
    #[serde(default)]
    pub undelivered: Vec<RawScalar>,
}

/// Where an http gateway's inbound SMS (a customer's reply) keeps the sender and the text.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawReply {
    pub from_pointer: String,
    pub text_pointer: String,
    /// The provider's id of the inbound message: a push the provider repeats is stored once.
    #[serde(default)]
    pub id_pointer: Option<String>,
}

/// A problem in the `sms:` section: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path from the config root, e.g. `sms.gateways.aliyun.rate`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// The checked `sms:` section.
#[derive(Debug, Clone)]
pub struct SmsConfig {
    /// Default route: gateway names in order of preference.
    pub route: Vec<String>,
    /// In name order.
    pub gateways: Vec<GatewayConfig>,
    pub breaker: BreakerConfig,
}

impl SmsConfig {
    pub fn gateway(&self, name: &str) -> Option<&GatewayConfig> {
        self.gateways.iter().find(|g| g.name == name)
    }

    /// Check a job's route against the configured gateways. `at` is the route's field path in
    /// the caller's file (`sms.route` in a job); the problem names the entry, with a "did you
    /// mean".
    pub fn check_route(&self, at: &str, route: &[String]) -> Result<(), Problem> {
        for (i, name) in route.iter().enumerate() {
            if self.gateway(name).is_none() {
                let hint = did_you_mean(name, self.gateways.iter().map(|g| g.name.as_str()))
                    .or_else(|| Some(format!("configured gateways: {}", self.names().join(", "))));
                return Err(Problem {
                    path: format!("{at}[{i}]"),
                    message: format!("no SMS gateway named `{name}`"),
                    hint,
                });
            }
        }
        Ok(())
    }

    fn names(&self) -> Vec<&str> {
        self.gateways.iter().map(|g| g.name.as_str()).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive transient failures that mark a gateway down.
    pub failures: u32,
    /// How long a down gateway is skipped before one send probes it again.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// At most `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub const DEFAULT: Rate = Rate {
        count: 10,
        per: Duration::from_secs(1),
    };

    /// `10/s`, `600/m`, `3600/h`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (n, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a rate"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{text}`: `{}` is not a whole number", n.trim()))?;
        if count == 0 {
            return Err(format!("`{text}`: the rate must be at least 1"));
        }
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => return Err(format!("`{text}`: unknown unit `{other}` (s, m or h)")),
        };
        Ok(Rate { count, per })
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub name: String,
    pub rate: Rate,
    pub timeout: Duration,
    pub settings: GatewaySettings,
}

#[derive(Debug, Clone)]
pub enum GatewaySettings {
    Twilio(TwilioConfig),
    Aliyun(AliyunConfig),
    // Boxed: templates, success rule, receipt and reply mappings make it twice the others.
    Http(Box<HttpConfig>),
}

impl GatewaySettings {
    pub fn kind(&self) -> &'static str {
        match self {
            GatewaySettings::Twilio(_) => "twilio",
            GatewaySettings::Aliyun(_) => "aliyun",
            GatewaySettings::Http(_) => "http",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub base_url: Url,
    pub account_sid: String,
    pub auth_token: Secret,
    pub sender: TwilioSender,
    pub status_callback: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioSender {
    From(String),
    MessagingService(String),
}

#[derive(Debug, Clone)]
pub struct AliyunConfig {
    pub base_url: Url,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub sign_name: String,
    pub region: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Form,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub method: HttpMethod,
    /// Handlebars; substituted values are percent-encoded.
    pub url: String,
    /// Header name → handlebars value.
    pub headers: Vec<(String, String)>,
    /// Handlebars; substituted values are escaped for `format`.
    pub body: Option<String>,
    pub format: BodyFormat,
    pub success: SuccessRule,
    pub id_pointer: Option<String>,
    pub message_pointer: Option<String>,
    pub secret: Secret,
    pub receipt: Option<ReceiptMapping>,
    pub reply: Option<ReplyMapping>,
}

/// When a generic gateway's answer means "accepted".
#[derive(Debug, Clone, Default)]
pub struct SuccessRule {
    /// Statuses that can mean success; empty: any 2xx.
    pub status: Vec<u16>,
    pub pointer: Option<String>,
    pub equals: Option<String>,
    pub retry: Vec<String>,
}

/// How to read a generic gateway's delivery receipt (one JSON object or an array of them).
#[derive(Debug, Clone)]
pub struct ReceiptMapping {
    pub id_pointer: String,
    pub status_pointer: String,
    pub code_pointer: Option<String>,
    pub text_pointer: Option<String>,
    pub delivered: Vec<String>,
    pub undelivered: Vec<String>,
}

/// How to read a generic gateway's inbound SMS (one JSON object or an array of them).
#[derive(Debug, Clone)]
pub struct ReplyMapping {
    pub from_pointer: String,
    pub text_pointer: String,
    pub id_pointer: Option<String>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";
pub const ALIYUN_BASE_URL: &str = "https://dysmsapi.aliyuncs.com";

/// Keys each kind takes besides `kind`, `rate`, `timeout` and `base_url`.
const TWILIO_KEYS: &[&str] = &[
    "account_sid",
    "auth_token_env",
    "auth_token_file",
    "from",
    "messaging_service_sid",
    "status_callback",
];
const ALIYUN_KEYS: &[&str] = &[
    "access_key_id",
    "access_key_secret_env",
    "access_key_secret_file",
    "sign_name",
    "region",
];
const HTTP_KEYS: &[&str] = &[
    "method",
    "url",
    "headers",
    "body",
    "format",
    "success",
    "id_pointer",
    "message_pointer",
    "secret_env",
    "secret_file",
    "receipt",
    "reply",
];

/// Check `raw` (the `sms:` section) into an [`SmsConfig`]. Relative secret files resolve
/// against `base`, the config file's folder. Every problem is reported, not just the first.
pub fn compile(raw: &RawSmsConfig, base: &Path) -> Result<SmsConfig, Vec<Problem>> {
    let mut c = Compiler {
        base,
        problems: Vec::new(),
    };
    let mut gateways = Vec::new();
    for (name, g) in &raw.gateways {
        if let Some(gw) = c.gateway(name, g) {
            gateways.push(gw);
        }
    }
    let breaker = c.breaker(raw.breaker.as_ref());
    let route = c.route(raw);
    if c.problems.is_empty() {
        Ok(SmsConfig {
            route,
            gateways,
            breaker,
        })
    } else {
        Err(c.problems)
    }
}

struct Compiler<'a> {
    base: &'a Path,
    problems: Vec<Problem>,
}

impl Compiler<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>, hint: Option<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
            hint,
        });
    }

    fn route(&mut self, raw: &RawSmsConfig) -> Vec<String> {
        let names: Vec<&str> = raw.gateways.keys().map(String::as_str).collect();
        if raw.route.is_empty() {
            return match names.as_slice() {
                [] => Vec::new(),
                [one] => vec![one.to_string()],
                _ => {
                    self.err(
                        "sms.route",
                        "several gateways but no default route",
                        Some(format!(
                            "name them in order of preference, e.g. route: [{}]",
                            names.join(", ")
                        )),
                    );
                    Vec::new()
                }
            };
        }
        for (i, name) in raw.route.iter().enumerate() {
            if !raw.gateways.contains_key(name) {
                let hint = did_you_mean(name, names.iter().copied()).or_else(|| {
                    Some(if names.is_empty() {
                        "define it under sms.gateways".into()
                    } else {
                        format!("configured gateways: {}", names.join(", "))
                    })
                });
                self.err(
                    format!("sms.route[{i}]"),
                    format!("no gateway named `{name}`"),
                    hint,
                );
            }
            if raw.route[..i].contains(name) {
                self.err(
                    format!("sms.route[{i}]"),
                    format!("`{name}` appears twice"),
                    None,
                );
            }
        }
        raw.route.clone()
    }

    fn breaker(&mut self, raw: Option<&RawBreaker>) -> BreakerConfig {
        let d = BreakerConfig::default();
        let Some(raw) = raw else { return d };
        let failures = raw.failures.unwrap_or(d.failures);
        if failures == 0 {
            self.err(
                "sms.breaker.failures",
                "must be at least 1",
                Some("the number of transient failures in a row that mark a gateway down".into()),
            );
        }
        BreakerConfig {
            failures: failures.max(1),
            cooldown: self.duration("sms.breaker.cooldown", raw.cooldown.as_deref(), d.cooldown),
        }
    }

    fn duration(&mut self, path: &str, v: Option<&str>, default: Duration) -> Duration {
        match v.map(duration::parse) {
            None => default,
            Some(Ok(d)) if d.is_zero() => {
                self.err(path, "must be longer than 0s", None);
                default
            }
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(
                    path,
                    e,
                    Some("write a number and a unit, e.g. 10s, 1m".into()),
                );
                default
            }
        }
    }

    fn secret(&mut self, at: &str, stem: &str, env: Option<&str>, file: Option<&str>) -> Secret {
        match (env, file) {
            (Some(_), Some(_)) => {
                self.err(
                    format!("{at}.{stem}_env"),
                    format!("give {stem}_env or {stem}_file, not both"),
                    None,
                );
                Secret::None
            }
            (Some(v), None) if v.trim().is_empty() => {
                self.err(format!("{at}.{stem}_env"), "empty variable name", None);
                Secret::None
            }
            (Some(v), None) => Secret::Env(v.trim().to_string()),
            (None, Some(f)) => Secret::File(resolve(self.base, f)),
            (None, None) => Secret::None,
        }
    }

    fn required<'v>(&mut self, at: &str, key: &str, v: Option<&'v str>, hint: &str) -> &'v str {
        match v {
            Some(s) if !s.trim().is_empty() => s,
            _ => {
                self.err(
                    format!("{at}.{key}"),
                    format!("`{key}` is required"),
                    Some(hint.to_string()),
                );
                ""
            }
        }
    }

    fn url(&mut self, path: &str, v: Option<&str>, default: &str) -> Url {
        let text = v.unwrap_or(default);
        match Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
            Ok(_) | Err(_) => {
                self.err(
                    path,
                    format!("`{text}` is not an http(s) URL"),
                    Some(format!("e.g. {default}")),
                );
                Url::parse(default).expect("default URLs parse")
            }
        }
    }

    fn pointer(&mut self, path: &str, p: Option<&str>) -> Option<String> {
        let p = p?;
        if !(p.is_empty() || p.starts_with('/')) {
            self.err(
                path,
                format!("`{p}` is not a JSON pointer"),
                Some(format!(
                    "pointers start with `/`, e.g. /{}",
                    p.replace('.', "/")
                )),
            );
        }
        Some(p.to_string())
    }

    fn gateway(&mut self, name: &str, g: &RawGateway) -> Option<GatewayConfig> {
        let at = format!("sms.gateways.{name}");
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            self.err(
                &at,
                format!("`{name}` is not a gateway name"),
                Some("use lowercase letters, digits, `-` and `_`".into()),
            );
        }
        self.foreign_keys(&at, g);
        let rate = match &g.rate {
            None => Rate::DEFAULT,
            Some(RawScalar::Text(t)) => Rate::parse(t).unwrap_or_else(|e| {
                self.err(
                    format!("{at}.rate"),
                    e,
                    Some("messages per second, minute or hour: 10/s, 600/m".into()),
                );
                Rate::DEFAULT
            }),
            Some(other) => {
                self.err(
                    format!("{at}.rate"),
                    format!("`{}` has no unit", other.text()),
                    Some(format!("write {}/s for per second", other.text())),
                );
                Rate::DEFAULT
            }
        };
        let timeout = self.duration(
            &format!("{at}.timeout"),
            g.timeout.as_deref(),
            DEFAULT_TIMEOUT,
        );
        let settings = match g.kind {
            RawKind::Twilio => GatewaySettings::Twilio(self.twilio(&at, g)),
            RawKind::Aliyun => GatewaySettings::Aliyun(self.aliyun(&at, g)),
            RawKind::Http => GatewaySettings::Http(Box::new(self.http(&at, g)?)),
        };
        Some(GatewayConfig {
            name: name.to_string(),
            rate,
            timeout,
            settings,
        })
    }

    /// Keys that exist but belong to another kind of gateway.
    fn foreign_keys(&mut self, at: &str, g: &RawGateway) {
        let present: [(&str, bool); 23] = [
            ("account_sid", g.account_sid.is_some()),
            ("auth_token_env", g.auth_token_env.is_some()),
            ("auth_token_file", g.auth_token_file.is_some()),
            ("from", g.from.is_some()),
            ("messaging_service_sid", g.messaging_service_sid.is_some()),
            ("status_callback", g.status_callback.is_some()),
            ("access_key_id", g.access_key_id.is_some()),
            ("access_key_secret_env", g.access_key_secret_env.is_some()),
            ("access_key_secret_file", g.access_key_secret_file.is_some()),
            ("sign_name", g.sign_name.is_some()),
            ("region", g.region.is_some()),
            ("method", g.method.is_some()),
            ("url", g.url.is_some()),
            ("headers", g.headers.is_some()),
            ("body", g.body.is_some()),
            ("format", g.format.is_some()),
            ("success", g.success.is_some()),
            ("id_pointer", g.id_pointer.is_some()),
            ("message_pointer", g.message_pointer.is_some()),
            ("secret_env", g.secret_env.is_some()),
            ("secret_file", g.secret_file.is_some()),
            ("receipt", g.receipt.is_some()),
            ("reply", g.reply.is_some()),
        ];
        let own = match g.kind {
            RawKind::Twilio => TWILIO_KEYS,
            RawKind::Aliyun => ALIYUN_KEYS,
            RawKind::Http => HTTP_KEYS,
        };
        for (key, set) in present {
            if !set || own.contains(&key) {
                continue;
            }
            let owner = [
                (RawKind::Twilio, TWILIO_KEYS),
                (RawKind::Aliyun, ALIYUN_KEYS),
                (RawKind::Http, HTTP_KEYS),
            ]
            .into_iter()
            .filter(|(_, keys)| keys.contains(&key))
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(" and ");
            self.err(
                format!("{at}.{key}"),
                format!("`{key}` is not a setting of {} gateways", g.kind.as_str()),
                Some(format!(
                    "it belongs to {owner} gateways; remove it or change `kind`"
                )),
            );
        }
        if g.kind == RawKind::Http && g.base_url.is_some() {
            self.err(
                format!("{at}.base_url"),
                "an http gateway has no base_url",
                Some("write the whole address in `url`".into()),
            );
        }
    }

    fn twilio(&mut self, at: &str, g: &RawGateway) -> TwilioConfig {
        let account_sid = self
            .required(
                at,
                "account_sid",
                g.account_sid.as_deref(),
                "your Account SID, AC…",
            )
            .trim()
            .to_string();
        let auth_token = self.secret(
            at,
            "auth_token",
            g.auth_token_env.as_deref(),
            g.auth_token_file.as_deref(),
        );
        if matches!(auth_token, Secret::None) {
            self.err(
                format!("{at}.auth_token_env"),
                "no auth token",
                Some(
                    "auth_token_env: TWILIO_AUTH_TOKEN (or auth_token_file: /run/secrets/twilio)"
                        .into(),
                ),
            );
        }
        let sender = match (g.from.as_deref(), g.messaging_service_sid.as_deref()) {
            (Some(_), Some(_)) => {
                self.err(
                    format!("{at}.messaging_service_sid"),
                    "give `from` or `messaging_service_sid`, not both",
                    None,
                );
                TwilioSender::From(String::new())
            }
            (Some(from), None) => {
                let from = from.trim();
                // A shape check only: the full number database (phonenumber's) costs every
                // command that loads the config a noticeable start-up; Twilio refuses a
                // sender that is not one of the account's numbers anyway, in the log.
                if from.starts_with('+') && !is_e164_shaped(from) {
                    self.err(
                        format!("{at}.from"),
                        format!("`{from}` is not a number in E.164 form"),
                        Some(
                            "+, the country code and the number: 8 to 15 digits, e.g. +15005550006"
                                .into(),
                        ),
                    );
                }
                TwilioSender::From(from.to_string())
            }
            (None, Some(sid)) => TwilioSender::MessagingService(sid.trim().to_string()),
            (None, None) => {
                self.err(
                    format!("{at}.from"),
                    "no sender",
                    Some("from: \"+15005550006\" or messaging_service_sid: MG…".into()),
                );
                TwilioSender::From(String::new())
            }
        };
        if let Some(cb) = &g.status_callback {
            self.url(
                &format!("{at}.status_callback"),
                Some(cb),
                "https://example.com/sms/status",
            );
        }
        TwilioConfig {
            base_url: self.url(
                &format!("{at}.base_url"),
                g.base_url.as_deref(),
                TWILIO_BASE_URL,
            ),
            account_sid,
            auth_token,
            sender,
            status_callback: g.status_callback.clone(),
        }
    }

    fn aliyun(&mut self, at: &str, g: &RawGateway) -> AliyunConfig {
        let access_key_id = self
            .required(
                at,
                "access_key_id",
                g.access_key_id.as_deref(),
                "your AccessKey ID, LTAI…",
            )
            .trim()
            .to_string();
        let access_key_secret = self.secret(
            at,
            "access_key_secret",
            g.access_key_secret_env.as_deref(),
            g.access_key_secret_file.as_deref(),
        );
        if matches!(access_key_secret, Secret::None) {
            self.err(
                format!("{at}.access_key_secret_env"),
                "no AccessKey secret",
                Some(
                    "access_key_secret_env: ALIYUN_SECRET (or access_key_secret_file: PATH)".into(),
                ),
            );
        }
        let sign_name = self
            .required(
                at,
                "sign_name",
                g.sign_name.as_deref(),
                "the approved signature, e.g. 示例商店",
            )
            .trim()
            .to_string();
        AliyunConfig {
            base_url: self.url(
                &format!("{at}.base_url"),
                g.base_url.as_deref(),
                ALIYUN_BASE_URL,
            ),
            access_key_id,
            access_key_secret,
            sign_name,
            region: g.region.clone().unwrap_or_else(|| "cn-hangzhou".into()),
        }
    }

    fn http(&mut self, at: &str, g: &RawGateway) -> Option<HttpConfig> {
        let method = match g.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("POST") => HttpMethod::Post,
            Some("GET") => HttpMethod::Get,
            Some("PUT") => HttpMethod::Put,
            Some("PATCH") => HttpMethod::Patch,
            Some(other) => {
                self.err(
                    format!("{at}.method"),
                    format!("unsupported method `{other}`"),
                    Some("GET, POST, PUT or PATCH".into()),
                );
                HttpMethod::Post
            }
        };
        let url = self
            .required(
                at,
                "url",
                g.url.as_deref(),
                "the provider's send address, e.g. https://sms.example.cn/api/send",
            )
            .to_string();
        let secret = self.secret(
            at,
            "secret",
            g.secret_env.as_deref(),
            g.secret_file.as_deref(),
        );
        let mut headers = Vec::new();
        for (name, value) in g.headers.iter().flatten() {
            let path = format!("{at}.headers.{name}");
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.err(&path, format!("`{name}` is not a header name"), None);
                continue;
            }
            let lower = name.to_ascii_lowercase();
            let credential = [
                "authorization",
                "token",
                "secret",
                "password",
                "api-key",
                "apikey",
                "api_key",
                "access-key",
                "accesskey",
            ]
            .iter()
            .any(|w| lower.contains(w));
            if credential && !mentions(value, "secret") {
                self.err(
                    &path,
                    format!("`{name}` looks like a credential written into the config"),
                    Some("keep it out of YAML: set secret_env (or secret_file) and write e.g. \"Bearer {{secret}}\"".into()),
                );
            }
            headers.push((name.clone(), value.clone()));
        }
        let format = match g.format {
            Some(RawFormat::Form) => BodyFormat::Form,
            Some(RawFormat::Json) | None => BodyFormat::Json,
        };
        if method == HttpMethod::Get && g.body.is_some() {
            self.err(
                format!("{at}.body"),
                "a GET request has no body",
                Some("put the values in the url, or use method: POST".into()),
            );
        }
        let uses_secret = mentions(&url, "secret")
            || headers.iter().any(|(_, v)| mentions(v, "secret"))
            || g.body.as_deref().is_some_and(|b| mentions(b, "secret"));
        match (&secret, uses_secret) {
            (Secret::None, true) => self.err(
                format!("{at}.secret_env"),
                "a template uses {{secret}} but no secret is configured",
                Some("secret_env: NAME_OF_THE_VARIABLE (or secret_file: PATH)".into()),
            ),
            (Secret::Env(_) | Secret::File(_), false) => self.err(
                format!("{at}.secret_env"),
                "a secret is configured but no template uses {{secret}}",
                Some(
                    "write {{secret}} where the provider wants it (a header, the body or the url)"
                        .into(),
                ),
            ),
            _ => {}
        }
        let success = match &g.success {
            None => SuccessRule::default(),
            Some(s) => {
                let status = s.status.as_ref().map(OneOrMany::to_vec).unwrap_or_default();
                for (i, code) in status.iter().enumerate() {
                    if !(200..300).contains(code) {
                        let path = match &s.status {
                            Some(OneOrMany::Many(_)) => format!("{at}.success.status[{i}]"),
                            _ => format!("{at}.success.status"),
                        };
                        self.err(
                            path,
                            format!("{code} is not a 2xx status"),
                            Some("only 2xx answers can mean success".into()),
                        );
                    }
                }
                let pointer = self.pointer(&format!("{at}.success.pointer"), s.pointer.as_deref());
                if pointer.is_some() != s.equals.is_some() {
                    self.err(
                        format!("{at}.success"),
                        "`pointer` and `equals` go together",
                        Some("e.g. success: {status: 200, pointer: /code, equals: \"0\"}".into()),
                    );
                }
                if !s.retry.is_empty() && pointer.is_none() {
                    self.err(
                        format!("{at}.success.retry"),
                        "`retry` needs a `pointer`",
                        None,
                    );
                }
                SuccessRule {
                    status,
                    pointer,
                    equals: s.equals.as_ref().map(RawScalar::text),
                    retry: s.retry.iter().map(RawScalar::text).collect(),
                }
            }
        };
        let receipt = g.receipt.as_ref().map(|r| {
            let rp = format!("{at}.receipt");
            let mapping = ReceiptMapping {
                id_pointer: self
                    .pointer(&format!("{rp}.id_pointer"), Some(&r.id_pointer))
                    .unwrap_or_default(),
                status_pointer: self
                    .pointer(&format!("{rp}.status_pointer"), Some(&r.status_pointer))
                    .unwrap_or_default(),
                code_pointer: self
                    .pointer(&format!("{rp}.code_pointer"), r.code_pointer.as_deref()),
                text_pointer: self
                    .pointer(&format!("{rp}.text_pointer"), r.text_pointer.as_deref()),
                delivered: r.delivered.iter().map(RawScalar::text).collect(),
                undelivered: r.undelivered.iter().map(RawScalar::text).collect(),
            };
            if mapping.delivered.is_empty() {
                self.err(
                    format!("{rp}.delivered"),
                    "no status value means delivered",
                    Some("list the provider's values, e.g. delivered: [DELIVRD]".into()),
                );
            }
            if let Some(both) = mapping
                .delivered
                .iter()
                .find(|v| mapping.undelivered.contains(v))
            {
                self.err(
                    format!("{rp}.undelivered"),
                    format!("`{both}` is in both lists"),
                    None,
                );
            }
            mapping
        });
        let reply = g.reply.as_ref().map(|r| ReplyMapping {
            from_pointer: self
                .pointer(&format!("{at}.reply.from_pointer"), Some(&r.from_pointer))
                .unwrap_or_default(),
            text_pointer: self
                .pointer(&format!("{at}.reply.text_pointer"), Some(&r.text_pointer))
                .unwrap_or_default(),
            id_pointer: self.pointer(&format!("{at}.reply.id_pointer"), r.id_pointer.as_deref()),
        });
        let cfg = HttpConfig {
            method,
            url,
            headers,
            body: g.body.clone(),
            format,
            success,
            id_pointer: self.pointer(&format!("{at}.id_pointer"), g.id_pointer.as_deref()),
            message_pointer: self.pointer(
                &format!("{at}.message_pointer"),
                g.message_pointer.as_deref(),
            ),
            secret,
            receipt,
            reply,
        };
        // Compile and try the templates now, so a typo is a config error, not a failed send.
        if let Err((field, e)) = super::generic::check_templates(&cfg) {
            let path = if field.is_empty() {
                at.to_string()
            } else {
                format!("{at}.{field}")
            };
            self.err(path, e, Some(super::generic::VARIABLES_HINT.into()));
            return None;
        }
        Some(cfg)
    }
}

/// `+` and 8 to 15 digits, the first not 0 (E.164's shape).
fn is_e164_shaped(n: &str) -> bool {
    n.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// Whether a handlebars template refers to `var` in one of its `{{...}}` expressions.
pub(crate) fn mentions(template: &str, var: &str) -> bool {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let expr = &after[..end];
        if expr
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == var)
        {
            return true;
        }
        rest = &after[end + 2..];
    }
    false
}

/// `p` against `base` unless absolute: secret files sit next to the config, wherever it runs from.
fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<SmsConfig, Vec<Problem>> {
        let raw: RawSmsConfig = serde_yaml::from_str(yaml).expect("shape");
        compile(&raw, Path::new("/etc/aftercare"))
    }

    const EXAMPLE: &str = r#"
route: [aliyun, http-backup]
gateways:
  twilio-us: {kind: twilio, account_sid: AC123, auth_token_env: TWILIO_AUTH_TOKEN, from: "+15005550006", status_callback: "https://example.com/sms/status", rate: 10/s, base_url: "https://api.twilio.com"}
  aliyun: {kind: aliyun, access_key_id: LTAI5t, access_key_secret_env: ALIYUN_SECRET, sign_name: 示例商店, rate: 50/s}
  http-backup: {kind: http, method: POST, url: "https://sms.example.cn/send", headers: {Authorization: "Bearer {{secret}}"}, secret_file: secrets/sms, body: '{"to":"{{to}}","text":"{{body}}"}', format: json, success: {status: 200, pointer: /code, equals: "0"}, id_pointer: /data/id, rate: 20/s}
breaker: {failures: 3, cooldown: 1m}
"#;

    #[test]
    fn the_documented_example_compiles() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.route, ["aliyun", "http-backup"]);
        assert_eq!(
            c.breaker,
            BreakerConfig {
                failures: 3,
                cooldown: Duration::from_secs(60)
            }
        );
        let names: Vec<_> = c.gateways.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["aliyun", "http-backup", "twilio-us"]);
        let a = c.gateway("aliyun").unwrap();
        assert_eq!(
            a.rate,
            Rate {
                count: 50,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(a.timeout, Duration::from_secs(10));
        let GatewaySettings::Aliyun(al) = &a.settings else {
            panic!()
        };
        assert_eq!(al.region, "cn-hangzhou");
        assert_eq!(al.base_url.as_str(), "https://dysmsapi.aliyuncs.com/");
        assert!(matches!(&al.access_key_secret, Secret::Env(v) if v == "ALIYUN_SECRET"));
        let GatewaySettings::Http(h) = &c.gateway("http-backup").unwrap().settings else {
            panic!()
        };
        assert!(
            matches!(&h.secret, Secret::File(p) if p == Path::new("/etc/aftercare/secrets/sms"))
        );
        assert_eq!(h.success.status, [200]);
        assert_eq!(h.success.equals.as_deref(), Some("0"));
        let GatewaySettings::Twilio(t) = &c.gateway("twilio-us").unwrap().settings else {
            panic!()
        };
        assert_eq!(t.sender, TwilioSender::From("+15005550006".into()));
        assert!(c.check_route("sms.route", &["twilio-us".into()]).is_ok());
        let p = c
            .check_route("sms.route", &["aliyun".into(), "twilio_us".into()])
            .unwrap_err();
        assert_eq!(p.path, "sms.route[1]");
        assert_eq!(p.message, "no SMS gateway named `twilio_us`");
        assert_eq!(p.hint.as_deref(), Some("did you mean `twilio-us`?"));
    }

    #[test]
    fn a_literal_secret_is_an_unknown_key() {
        for (yaml, key) in [
            (
                "gateways: {t: {kind: twilio, account_sid: AC1, auth_token: abc, from: \"+15005550006\"}}",
                "auth_token",
            ),
            (
                "gateways: {a: {kind: aliyun, access_key_id: L, access_key_secret: abc, sign_name: s}}",
                "access_key_secret",
            ),
            (
                "gateways: {h: {kind: http, url: \"http://x\", secret: abc}}",
                "secret",
            ),
        ] {
            let err = serde_yaml::from_str::<RawSmsConfig>(yaml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("unknown field `{key}`")), "{err}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let yaml = r#"
route: [aliyn, tw]
gateways:
  tw: {kind: twilio, account_sid: AC1, from: "+1", rate: 10, sign_name: x, timeout: 5x}
  aliyun: {kind: aliyun, access_key_id: L, access_key_secret_env: A, access_key_secret_file: B, sign_name: s, rate: 5/d}
  Bad.Name: {kind: http, url: "http://x/{{to}}", headers: {Authorization: "Bearer abc123"}, success: {status: 404, pointer: code}, body: "{{nope"}
breaker: {failures: 0, cooldown: 0s}
"#;
        let problems = parse(yaml).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let all = text.join("\n");
        for want in [
            "sms.route[0]: no gateway named `aliyn` (hint: did you mean `aliyun`?)",
            "sms.gateways.tw.auth_token_env: no auth token",
            "sms.gateways.tw.from: `+1`",
            "sms.gateways.tw.rate: `10` has no unit (hint: write 10/s for per second)",
            "sms.gateways.tw.sign_name: `sign_name` is not a setting of twilio gateways (hint: it belongs to aliyun gateways",
            "sms.gateways.tw.timeout: `5x` has an unknown unit",
            "sms.gateways.aliyun.access_key_secret_env: give access_key_secret_env or access_key_secret_file, not both",
            "sms.gateways.aliyun.rate: `5/d`: unknown unit `d`",
            "sms.gateways.Bad.Name: `Bad.Name` is not a gateway name",
            "sms.gateways.Bad.Name.headers.Authorization: `Authorization` looks like a credential",
            "sms.gateways.Bad.Name.success.status: 404 is not a 2xx status",
            "sms.gateways.Bad.Name.success.pointer: `code` is not a JSON pointer (hint: pointers start with `/`, e.g. /code)",
            "sms.gateways.Bad.Name.success: `pointer` and `equals` go together",
            "sms.gateways.Bad.Name.body:",
            "sms.breaker.failures: must be at least 1",
            "sms.breaker.cooldown: must be longer than 0s",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
    }

    #[test]
    fn defaults_and_single_gateway_route() {
        let c = parse("gateways: {only: {kind: aliyun, access_key_id: L, access_key_secret_file: /run/s, sign_name: s}}").unwrap();
        assert_eq!(c.route, ["only"]);
        assert_eq!(c.breaker, BreakerConfig::default());
        assert_eq!(c.gateways[0].rate, Rate::DEFAULT);
        let err = parse("gateways: {a: {kind: aliyun, access_key_id: L, access_key_secret_env: S, sign_name: s}, b: {kind: aliyun, access_key_id: L, access_key_secret_env: S, sign_name: s}}").unwrap_err();
        assert_eq!(err[0].path, "sms.route");
        assert!(parse("{}").unwrap().gateways.is_empty());
    }

    #[test]
    fn http_templates_are_checked_at_load() {
        let base = "gateways: {h: {kind: http, url: \"http://x/send\"";
        let ok = format!("{base}, body: '{{\"to\":\"{{{{to}}}}\",\"text\":\"{{{{body}}}}\"}}'}}}}");
        assert!(parse(&ok).is_ok(), "{:?}", parse(&ok));
        let not_json = format!("{base}, body: '{{\"to\": {{{{to}}}}}}'}}}}");
        let e = parse(&not_json).unwrap_err();
        assert_eq!(e[0].path, "sms.gateways.h.body");
        assert!(e[0].message.contains("JSON"), "{e:?}");
        let unknown = format!("{base}, body: '{{\"to\":\"{{{{phone}}}}\"}}'}}}}");
        let e = parse(&unknown).unwrap_err();
        assert!(e[0].message.contains("phone"), "{e:?}");
        let params = format!(
            "{base}, body: '{{\"tpl\":\"{{{{template_code}}}}\",\"n\":\"{{{{template_params.name}}}}\"}}'}}}}"
        );
        assert!(parse(&params).is_ok(), "{:?}", parse(&params));
        let unused = format!("{base}, secret_env: X}}}}");
        assert!(
            parse(&unused).unwrap_err()[0]
                .message
                .contains("no template uses")
        );
    }

    #[test]
    fn rates() {
        assert_eq!(
            Rate::parse("10/s"),
            Ok(Rate {
                count: 10,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            Rate::parse(" 600 / m"),
            Ok(Rate {
                count: 600,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(
            Rate::parse("1/h"),
            Ok(Rate {
                count: 1,
                per: Duration::from_secs(3600)
            })
        );
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("ten/s").is_err());
        assert!(Rate::parse("10").is_err());
    }

    #[test]
    fn mentions_finds_variables_inside_expressions_only() {
        assert!(mentions("Bearer {{secret}}", "secret"));
        assert!(mentions("{{{ secret }}}", "secret"));
        assert!(!mentions("secret {{to}}", "secret"));
        assert!(!mentions("{{secretive}}", "secret"));
    }
}
