//! The `email:` section: the sender, and whether mail goes to an SMTP relay or into files.

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
    EmailConfig {
        from,
        message_id_domain,
        transport,
    }
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
