//! The `email:` section: the sender, and whether mail goes to an SMTP relay or into files;
//! how bounces come back (`bounces`: the VERP return path, the soft-bounce rule), the
//! reputation brake's thresholds (`reputation`), pacing per destination (`destinations`),
//! DKIM signing (`dkim`) and the providers' webhooks (`webhooks`).

use crate::check::Checker;
use crate::values::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `email:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    from: String,
    #[serde(default)]
    transport: TransportKind,
    file: Option<RawFile>,
    smtp: Option<RawSmtp>,
    /// Right-hand side of generated Message-IDs; the sender's domain when absent.
    message_id_domain: Option<String>,
    #[serde(default)]
    bounces: RawBounces,
    #[serde(default)]
    reputation: RawReputation,
    #[serde(default)]
    destinations: std::collections::BTreeMap<String, RawDestination>,
    dkim: Option<RawDkim>,
    /// `Feedback-ID: job:class:sender` for Gmail's feedback loop (default on).
    feedback_id: Option<bool>,
    #[serde(default)]
    webhooks: super::feedback_settings::RawWebhooks,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBounces {
    /// The envelope sender with `{id}` for the outbox id; `""` turns VERP off.
    return_path: Option<String>,
    soft_count: Option<i64>,
    soft_within: Option<String>,
    soft_suppress_for: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReputation {
    window: Option<i64>,
    min_sends: Option<i64>,
    hard_bounce_percent: Option<f64>,
    complaint_percent: Option<f64>,
    /// How long a paused message waits before the gate looks again.
    recheck: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    concurrency: Option<u32>,
    /// `20/m`, `1/s`, `600/h`.
    rate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    domain: String,
    selector: String,
    key_file: String,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TransportKind {
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

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub from: lettre::message::Mailbox,
    pub message_id_domain: String,
    pub transport: EmailTransport,
    /// The envelope sender, `{id}` replaced by the outbox id (VERP); `None`: the From address.
    pub return_path: Option<String>,
    pub soft: SoftBounces,
    pub reputation: Reputation,
    pub destinations: Destinations,
    pub dkim: Option<DkimSettings>,
    pub feedback_id: bool,
    pub webhooks: super::feedback_settings::Webhooks,
}

/// N soft bounces within a period suppress an address for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftBounces {
    pub count: i64,
    pub within: Duration,
    pub suppress_for: Duration,
}

/// The reputation brake's thresholds. Defaults follow Gmail's and Yahoo's published sender
/// rules (spam complaints under 0.3%) and the bulk-sender norm of under 2% hard bounces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reputation {
    /// The last N email sends of a job (and of the sending domain) that the rates cover.
    pub window: i64,
    /// Rates are judged only once the window holds this many sends.
    pub min_sends: i64,
    pub hard_bounce_percent: f64,
    pub complaint_percent: f64,
    pub recheck: Duration,
}

/// Pacing per destination domain: groups of domains that share one budget, and the rest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Destinations {
    /// (the group's name as written, its domains, its budget).
    pub groups: Vec<(String, Vec<String>, Budget)>,
    pub default: Option<Budget>,
}

/// At most `concurrency` sends at once and `rate` per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub concurrency: Option<u32>,
    pub rate: Option<(u32, Duration)>,
}

#[derive(Debug, Clone)]
pub struct DkimSettings {
    pub domain: String,
    pub selector: String,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub enum EmailTransport {
    File { dir: PathBuf },
    Smtp(SmtpConfig),
}

/// As the daemon's start line names it: `file <dir>` or `smtp <host>:<port>`.
impl std::fmt::Display for EmailTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmailTransport::File { dir } => write!(f, "file {}", dir.display()),
            EmailTransport::Smtp(s) => write!(f, "smtp {}:{}", s.host, s.port),
        }
    }
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

pub fn check(c: &mut Checker, raw: RawEmail) -> EmailConfig {
    let from: lettre::message::Mailbox = raw.from.parse().unwrap_or_else(|e| {
        c.err(
            "email.from",
            format!("`{}` is not a valid sender: {e}", raw.from),
            Some("e.g. \"Example Shop <care@example.com>\"".into()),
        );
        "invalid@invalid.invalid".parse().expect("a static address")
    });
    let message_id_domain = raw
        .message_id_domain
        .unwrap_or_else(|| from.email.domain().to_string());
    let transport = match raw.transport {
        TransportKind::File => EmailTransport::File {
            dir: c.resolve(
                raw.file
                    .as_ref()
                    .map(|f| f.dir.as_str())
                    .unwrap_or("data/outbox"),
            ),
        },
        TransportKind::Smtp => match raw.smtp {
            None => {
                c.err(
                    "email.transport",
                    "transport is smtp but there is no email.smtp section",
                    Some("add email.smtp: {host: ..., port: ...}".into()),
                );
                EmailTransport::File {
                    dir: c.resolve("data/outbox"),
                }
            }
            Some(s) => EmailTransport::Smtp(smtp(c, s)),
        },
    };
    let from_domain = from.email.domain().to_string();
    let return_path = match raw.bounces.return_path {
        Some(p) if p.trim().is_empty() => None,
        Some(p) => {
            let sample = p.replace("{id}", "01jabc");
            if !p.contains("{id}") {
                c.err(
                    "email.bounces.return_path",
                    format!("`{p}` has no `{{id}}`: bounces could not be matched to their message"),
                    Some("e.g. \"bounces+{id}@example.com\", or \"\" to send without VERP".into()),
                );
            } else if sample.parse::<lettre::Address>().is_err() {
                c.err(
                    "email.bounces.return_path",
                    format!("`{p}` is not an address once `{{id}}` is filled in"),
                    Some("e.g. \"bounces+{id}@example.com\"".into()),
                );
            }
            Some(p)
        }
        None => Some(format!("bounces+{{id}}@{from_domain}")),
    };
    let soft = SoftBounces {
        count: raw.bounces.soft_count.unwrap_or(3).max(1),
        within: c.duration_or(
            "email.bounces.soft_within",
            raw.bounces.soft_within.as_deref(),
            Duration::from_secs(15 * 86_400),
        ),
        suppress_for: c.duration_or(
            "email.bounces.soft_suppress_for",
            raw.bounces.soft_suppress_for.as_deref(),
            Duration::from_secs(30 * 86_400),
        ),
    };
    if raw.bounces.soft_count.is_some_and(|n| n < 1) {
        c.err("email.bounces.soft_count", "must be at least 1", None);
    }
    let r = raw.reputation;
    let reputation = Reputation {
        window: r.window.unwrap_or(1000),
        min_sends: r.min_sends.unwrap_or(100),
        hard_bounce_percent: r.hard_bounce_percent.unwrap_or(2.0),
        complaint_percent: r.complaint_percent.unwrap_or(0.3),
        recheck: c.duration_or(
            "email.reputation.recheck",
            r.recheck.as_deref(),
            Duration::from_secs(15 * 60),
        ),
    };
    if reputation.window < 1 {
        c.err("email.reputation.window", "must be at least 1", None);
    }
    if reputation.min_sends < 1 || reputation.min_sends > reputation.window {
        c.err(
            "email.reputation.min_sends",
            format!("must be between 1 and the window ({})", reputation.window),
            None,
        );
    }
    for (key, v) in [
        ("hard_bounce_percent", reputation.hard_bounce_percent),
        ("complaint_percent", reputation.complaint_percent),
    ] {
        if !(v > 0.0 && v <= 100.0) {
            c.err(
                &format!("email.reputation.{key}"),
                format!("{v} is not a percentage above 0"),
                Some("e.g. 0.3 for 0.3%".into()),
            );
        }
    }
    let destinations = destinations(c, raw.destinations);
    let dkim = raw.dkim.map(|d| {
        if d.domain.trim().is_empty() || d.selector.trim().is_empty() {
            c.err("email.dkim", "domain and selector must not be empty", None);
        }
        if !d.domain.eq_ignore_ascii_case(&from_domain)
            && !from_domain
                .to_ascii_lowercase()
                .ends_with(&format!(".{}", d.domain.to_ascii_lowercase()))
        {
            c.warn(
                "email.dkim.domain",
                format!(
                    "DKIM domain `{}` differs from email.from's domain `{from_domain}`: DMARC will not align",
                    d.domain
                ),
                Some(format!("sign as {from_domain} (or a parent domain of it)")),
            );
        }
        DkimSettings {
            domain: d.domain,
            selector: d.selector,
            key_file: c.resolve(&d.key_file),
        }
    });
    let webhooks = super::feedback_settings::check(c, raw.webhooks);
    EmailConfig {
        from,
        message_id_domain,
        transport,
        return_path,
        soft,
        reputation,
        destinations,
        dkim,
        feedback_id: raw.feedback_id.unwrap_or(true),
        webhooks,
    }
}

fn destinations(
    c: &mut Checker,
    raw: std::collections::BTreeMap<String, RawDestination>,
) -> Destinations {
    let mut out = Destinations::default();
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (name, d) in raw {
        let field = format!("email.destinations.{name}");
        let rate = d.rate.as_deref().and_then(|r| match parse_rate(r) {
            Some(x) => Some(x),
            None => {
                c.err(
                    &format!("{field}.rate"),
                    format!("`{r}` is not a rate"),
                    Some("e.g. 20/m, 1/s or 600/h".into()),
                );
                None
            }
        });
        if d.concurrency == Some(0) {
            c.err(&format!("{field}.concurrency"), "must be at least 1", None);
        }
        let budget = Budget {
            concurrency: d.concurrency,
            rate,
        };
        if name == "default" {
            out.default = Some(budget);
            continue;
        }
        let domains: Vec<String> = name
            .split(',')
            .map(|s| s.trim().trim_start_matches('@').to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        for d in &domains {
            if let Some(other) = seen.insert(d.clone(), name.clone()) {
                c.err(
                    &field,
                    format!("`{d}` is in two groups (also `{other}`)"),
                    Some("a domain shares one budget: list it once".into()),
                );
            }
        }
        out.groups.push((name, domains, budget));
    }
    out
}

/// `20/m` → 20 per minute.
pub fn parse_rate(text: &str) -> Option<(u32, Duration)> {
    let (n, per) = text.trim().split_once('/')?;
    let n: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
    let per = match per.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        _ => return None,
    };
    Some((n, per))
}

fn smtp(c: &mut Checker, s: RawSmtp) -> SmtpConfig {
    let password = c.secret(
        "email.smtp",
        "password",
        s.password_env.as_deref(),
        s.password_file.as_deref(),
    );
    if s.username.is_some() && !password.is_set() {
        c.err(
            "email.smtp.username",
            "a username without a password",
            Some("set email.smtp.password_env or email.smtp.password_file".into()),
        );
    }
    let pool_size = s.pool_size.unwrap_or(8);
    if pool_size == 0 {
        c.err("email.smtp.pool_size", "must be at least 1", None);
    }
    SmtpConfig {
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
        timeout: c.duration_or(
            "email.smtp.timeout",
            s.timeout.as_deref(),
            Duration::from_secs(30),
        ),
    }
}
