//! Email over SMTP (see `smtp` for the pool) or into `.eml` files (the default: a first run
//! needs no server, and marketing can open what would have been sent).
//!
//! lettre's own timeout covers connecting only (lettre #1027), so every send is wrapped in
//! `tokio::time::timeout`: a server that stalls after DATA costs one timeout, not a worker.

use crate::channels::Delivery;
pub mod settings;
pub(crate) mod smtp;

use crate::model::Outcome;
use crate::templates::RenderedEmail;
use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use settings::{EmailConfig, EmailTransport};
use smtp::SmtpPool;
use std::path::PathBuf;
use std::time::Duration;

pub enum EmailChannel {
    Smtp {
        pool: Box<SmtpPool>,
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
    /// Marketing mail: the https link and the optional mailto for `List-Unsubscribe`.
    pub unsubscribe: Option<(String, Option<String>)>,
}

/// `List-Unsubscribe: <https://...>, <mailto:...>` (RFC 2369).
#[derive(Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058): mail providers may
/// unsubscribe with one POST, no confirmation page.
#[derive(Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".into())
    }
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
                pool: Box::new(SmtpPool::new(s)?),
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
        let mut d = match self {
            EmailChannel::File { dir, .. } => {
                let name = out
                    .message_id
                    .trim_matches(['<', '>'])
                    .replace(['/', '\\'], "_");
                let path = dir.join(format!("{name}.eml"));
                let tmp = dir.join(format!(".{name}.eml.tmp"));
                let written = tokio::fs::write(&tmp, message.formatted())
                    .await
                    .and(tokio::fs::rename(&tmp, &path).await);
                match written {
                    Ok(()) => Delivery {
                        outcome: Outcome::Sent,
                        code: None,
                        detail: format!("written to {}", path.display()),
                        provider_id: None,
                        retry_after: None,
                    },
                    Err(e) => Delivery::transient(format!("cannot write {}: {e}", path.display())),
                }
            }
            EmailChannel::Smtp { pool, timeout, .. } => {
                let bytes = message.formatted();
                tokio::time::timeout(*timeout, pool.send(message.envelope(), &bytes))
                    .await
                    .unwrap_or_else(|_| {
                        Delivery::transient(format!(
                            "no answer from the SMTP server within {}",
                            crate::duration::format(*timeout)
                        ))
                    })
            }
        };
        d.provider_id = provider_id;
        d
    }
}

fn build(from: &Mailbox, out: &OutgoingEmail) -> Result<Message, String> {
    let to: Mailbox = match out.to.parse::<lettre::Address>() {
        Ok(addr) => Mailbox::new(out.to_name.map(str::to_string), addr),
        Err(e) => return Err(format!("invalid recipient address `{}`: {e}", out.to)),
    };
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(out.content.subject.clone())
        .message_id(Some(out.message_id.to_string()))
        .date(out.date.into());
    if let Some((url, mailto)) = &out.unsubscribe {
        let value = match mailto {
            Some(m) => format!("<{url}>, <{m}>"),
            None => format!("<{url}>"),
        };
        builder = builder
            .header(ListUnsubscribe(value))
            .header(ListUnsubscribePost);
    }
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
