//! Email over SMTP (lettre, pooled) or into `.eml` files (the default: a first run needs no
//! server, and marketing can open what would have been sent).
//!
//! lettre's own timeout covers connecting only (lettre #1027), so every send is wrapped in
//! `tokio::time::timeout`: a server that stalls after DATA costs one timeout, not a worker.

use super::Delivery;
use crate::config::{EmailConfig, EmailTransport, SmtpConfig, TlsMode};
use crate::model::Outcome;
use crate::templates::RenderedEmail;
use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::response::Severity;
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Semaphore;

pub enum EmailChannel {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// lettre's pool bounds idle connections, not open ones: without this limit a burst
        /// opens one connection per concurrent send and closes the surplus afterwards.
        slots: Semaphore,
        timeout: Duration,
        from: Mailbox,
        domain: String,
    },
    File {
        dir: PathBuf,
        from: Mailbox,
        domain: String,
    },
}

/// One email to send.
pub struct OutgoingEmail<'a> {
    pub message_id: &'a str,
    pub to: &'a str,
    pub to_name: Option<&'a str>,
    pub content: &'a RenderedEmail,
    pub date: DateTime<Utc>,
}

impl EmailChannel {
    pub fn new(cfg: &EmailConfig) -> anyhow::Result<EmailChannel> {
        Ok(match &cfg.transport {
            EmailTransport::File { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!("email.file.dir: cannot create {}: {e}", dir.display())
                })?;
                EmailChannel::File {
                    dir: dir.clone(),
                    from: cfg.from.clone(),
                    domain: cfg.message_id_domain.clone(),
                }
            }
            EmailTransport::Smtp(s) => EmailChannel::Smtp {
                transport: smtp_transport(s)?,
                slots: Semaphore::new(s.pool_size as usize),
                timeout: s.timeout,
                from: cfg.from.clone(),
                domain: cfg.message_id_domain.clone(),
            },
        })
    }

    /// The Message-ID header for an outbox message: stable, so a resend after a crash is
    /// recognisable as the same message.
    pub fn message_id(&self, outbox_id: &str) -> String {
        let domain = match self {
            EmailChannel::Smtp { domain, .. } | EmailChannel::File { domain, .. } => domain,
        };
        format!("<{outbox_id}@{domain}>")
    }

    fn from(&self) -> &Mailbox {
        match self {
            EmailChannel::Smtp { from, .. } | EmailChannel::File { from, .. } => from,
        }
    }

    pub async fn send(&self, out: &OutgoingEmail<'_>) -> Delivery {
        let message = match build(self.from(), out) {
            Ok(m) => m,
            Err(e) => return Delivery::permanent(e),
        };
        let provider_id = Some(out.message_id.to_string());
        match self {
            EmailChannel::File { dir, .. } => {
                let name = out
                    .message_id
                    .trim_matches(['<', '>'])
                    .replace(['/', '\\'], "_");
                let path = dir.join(format!("{name}.eml"));
                let tmp = dir.join(format!(".{name}.eml.tmp"));
                let result = tokio::fs::write(&tmp, message.formatted())
                    .await
                    .and(tokio::fs::rename(&tmp, &path).await);
                match result {
                    Ok(()) => Delivery {
                        outcome: Outcome::Sent,
                        code: None,
                        detail: format!("written to {}", path.display()),
                        provider_id,
                    },
                    Err(e) => Delivery {
                        provider_id,
                        ..Delivery::transient(format!("cannot write {}: {e}", path.display()))
                    },
                }
            }
            EmailChannel::Smtp {
                transport,
                slots,
                timeout,
                ..
            } => {
                let _slot = slots
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                let result = tokio::time::timeout(*timeout, transport.send(message)).await;
                let mut d = match result {
                    Err(_) => Delivery::transient(format!(
                        "no answer from the SMTP server within {}",
                        crate::duration::format(*timeout)
                    )),
                    Ok(Ok(resp)) => Delivery {
                        outcome: Outcome::Sent,
                        code: Some(i64::from(u16::from(resp.code()))),
                        detail: resp.message().collect::<Vec<_>>().join(" "),
                        provider_id: None,
                    },
                    Ok(Err(e)) => classify(&e),
                };
                d.provider_id = provider_id;
                d
            }
        }
    }
}

/// SMTP 4xx, network and TLS trouble are transient; 5xx and malformed requests are not.
fn classify(e: &lettre::transport::smtp::Error) -> Delivery {
    let text = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string());
    if let Some(code) = e.status() {
        let outcome = match code.severity {
            Severity::TransientNegativeCompletion => Outcome::Transient,
            _ => Outcome::Permanent,
        };
        return Delivery {
            outcome,
            code: Some(i64::from(u16::from(code))),
            detail: text,
            provider_id: None,
        };
    }
    if e.is_client() {
        return Delivery::permanent(format!("{e}"));
    }
    Delivery::transient(format!("{e}"))
}

fn build(from: &Mailbox, out: &OutgoingEmail) -> Result<Message, String> {
    let to: Mailbox = match out.to.parse::<lettre::Address>() {
        Ok(addr) => Mailbox::new(out.to_name.map(str::to_string), addr),
        Err(e) => return Err(format!("invalid recipient address `{}`: {e}", out.to)),
    };
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(out.content.subject.clone())
        .message_id(Some(out.message_id.to_string()))
        .date(out.date.into());
    let c = out.content;
    let result = match (&c.text, &c.html) {
        (Some(t), Some(h)) => {
            builder.multipart(MultiPart::alternative_plain_html(t.clone(), h.clone()))
        }
        (Some(t), None) => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(t.clone()),
        ),
        (None, Some(h)) => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(h.clone()),
        ),
        (None, None) => return Err("the template rendered no body".into()),
    };
    result.map_err(|e| format!("cannot build the email: {e}"))
}

fn smtp_transport(s: &SmtpConfig) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let tls = match s.tls {
        TlsMode::None => Tls::None,
        TlsMode::Starttls => Tls::Required(TlsParameters::new(s.host.clone())?),
        TlsMode::Tls => Tls::Wrapper(TlsParameters::new(s.host.clone())?),
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.clone())
        .port(s.port)
        .tls(tls)
        .timeout(Some(s.timeout))
        .pool_config(
            PoolConfig::new()
                .max_size(s.pool_size)
                .idle_timeout(Duration::from_secs(60)),
        );
    if let Some(user) = &s.username {
        let password = s.password.read("email.smtp.password")?.unwrap_or_default();
        b = b.credentials(Credentials::new(user.clone(), password));
    }
    Ok(b.build())
}
