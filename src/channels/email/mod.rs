//! Email over SMTP (see `smtp` for the pool) or into `.eml` files (the default: a first run
//! needs no server, and marketing can open what would have been sent).
//!
//! lettre's own timeout covers connecting only (lettre #1027), so every send is wrapped in
//! `tokio::time::timeout`: a server that stalls after DATA costs one timeout, not a worker.
//!
//! Everything in a message can come from outside (the contact's name, event data in the
//! subject), and lettre's header code panics on some of it (a CR or LF in a display name).
//! So values are made safe for a header first ([`display_name`]; `one_line` and
//! `LiteralSubject` for the subject), and building and formatting the message runs under
//! `catch_unwind` besides: whatever lettre still refuses, or panics on, is a permanent
//! failure of that one message with the reason, never a dead worker.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use crate::channels::Delivery;
pub mod relay;
pub mod settings;
pub mod smtp;

use crate::model::Outcome;
use crate::templates::RenderedEmail;
use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use settings::{EmailConfig, EmailTransport};
use smtp::SmtpPool;
use std::path::PathBuf;
use std::sync::Arc;
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

    /// Whether the SMTP relay takes our mail (`None` when writing files).
    pub fn health(&self) -> Option<Arc<relay::RelayHealth>> {
        match self {
            EmailChannel::Smtp { pool, .. } => Some(pool.health()),
            EmailChannel::File { .. } => None,
        }
    }

    /// See [`SmtpPool::probe`].
    pub async fn probe_relay(&self) {
        if let EmailChannel::Smtp { pool, timeout, .. } = self {
            let _ = tokio::time::timeout(*timeout, pool.probe()).await;
        }
    }

    fn from(&self) -> &Mailbox {
        match self {
            EmailChannel::Smtp { from, .. } | EmailChannel::File { from, .. } => from,
        }
    }

    pub async fn send(&self, out: &OutgoingEmail<'_>) -> Delivery {
        let (envelope, bytes) = match compose(self.from(), out) {
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
                let written = tokio::fs::write(&tmp, &bytes)
                    .await
                    .and(tokio::fs::rename(&tmp, &path).await);
                match written {
                    Ok(()) => Delivery {
                        outcome: Outcome::Sent,
                        code: None,
                        detail: format!("written to {}", path.display()),
                        provider_id: None,
                        retry_after: None,
                        relay_fault: false,
                    },
                    Err(e) => Delivery::transient(format!("cannot write {}: {e}", path.display())),
                }
            }
            EmailChannel::Smtp { pool, timeout, .. } => {
                tokio::time::timeout(*timeout, pool.send(&envelope, &bytes))
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

/// The envelope and the bytes of the message, or why it cannot be built. A panic inside
/// lettre is caught here and becomes that reason: it concerns this message only.
fn compose(from: &Mailbox, out: &OutgoingEmail) -> Result<(Envelope, Vec<u8>), String> {
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        build(from, out).map(|m| (m.envelope().clone(), m.formatted()))
    }));
    match built {
        Ok(result) => result,
        Err(panic) => Err(format!(
            "cannot build the email: lettre failed on it ({}); not sent",
            crate::text::printable(&panic_text(&*panic))
        )),
    }
}

/// A panic's message, when it has one.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// A contact's name as a header's display name: control characters (a CR or LF would start
/// a new header line; lettre panics on them) and other invisible trouble become spaces,
/// runs of spaces one; a name with nothing left is dropped (the address alone is a valid
/// recipient). Logged when it changed, so the bad data can be fixed at its source.
pub fn display_name(raw: Option<&str>, message_id: &str) -> Option<String> {
    let raw = raw?;
    let clean = raw
        .split(|c: char| crate::text::is_unsafe(c) || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let changed = clean != raw.trim();
    if changed {
        tracing::warn!(
            message_id = %message_id,
            "the contact's name holds control characters; {} (fix the contact at its source)",
            if clean.is_empty() { "sent without a name" } else { "they were replaced by spaces" }
        );
    }
    (!clean.is_empty()).then_some(clean)
}

/// The subject as one line: control characters become spaces (a subject is one header line,
/// and lettre passes ESC and other controls through as they are).
fn one_line(subject: &str) -> String {
    if !subject.chars().any(crate::text::is_unsafe) {
        return subject.to_string();
    }
    subject
        .split(crate::text::is_unsafe)
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `Subject` header that says exactly its text.
///
/// lettre writes an ASCII subject as it is; a subject holding the literal text of an
/// RFC 2047 encoded word (`=?utf-8?b?SGk=?=`, from event data) would then be decoded by
/// mail clients into other text. Such a subject is written wholly as encoded words instead:
/// a client decodes it once, back to the literal characters, and no further.
#[derive(Clone)]
struct LiteralSubject(String);

impl Header for LiteralSubject {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Subject")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(LiteralSubject(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        let mut encoded = String::new();
        {
            let mut w = email_encoding::headers::writer::EmailWriter::new(
                &mut encoded,
                "Subject: ".len(),
                0,
                false,
            );
            // Writing to a String does not fail; if it did, the text would be cut short,
            // never passed through raw.
            let _ = email_encoding::headers::rfc2047::encode(&self.0, &mut w);
        }
        HeaderValue::dangerous_new_pre_encoded(Self::name(), self.0.clone(), encoded)
    }
}

fn build(from: &Mailbox, out: &OutgoingEmail) -> Result<Message, String> {
    let to: Mailbox = match out.to.parse::<lettre::Address>() {
        Ok(addr) => Mailbox::new(display_name(out.to_name, out.message_id), addr),
        Err(e) => {
            return Err(format!(
                "invalid recipient address `{}`: {e}",
                crate::text::printable(out.to)
            ));
        }
    };
    let subject = one_line(&out.content.subject);
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .message_id(Some(out.message_id.to_string()))
        .date(out.date.into());
    builder = if subject.contains("=?") {
        builder.header(LiteralSubject(subject))
    } else {
        builder.subject(subject)
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn content(subject: &str) -> RenderedEmail {
        RenderedEmail {
            subject: subject.into(),
            text: Some("hello".into()),
            html: None,
            locale: "en".into(),
        }
    }

    fn out<'a>(name: Option<&'a str>, content: &'a RenderedEmail) -> OutgoingEmail<'a> {
        OutgoingEmail {
            message_id: "<m-1@example.com>",
            to: "eve@example.com",
            to_name: name,
            content,
            date: DateTime::<Utc>::UNIX_EPOCH,
            unsubscribe: None,
        }
    }

    fn from() -> Mailbox {
        "Shop <care@example.com>".parse().unwrap()
    }

    fn headers(bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        text.split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn lettre_panics_on_a_raw_crlf_name_which_is_why_names_are_cleaned() {
        let name = "Eve\r\nBcc: x@y";
        let raw = std::panic::catch_unwind(|| {
            let to = Mailbox::new(Some(name.into()), "eve@example.com".parse().unwrap());
            Message::builder()
                .from(from())
                .to(to)
                .subject("s")
                .body(String::from("b"))
                .map(|m| m.formatted())
        });
        // lettre 0.11.23: `Mailbox`'s Display returns fmt::Error for the name and the To
        // header's `to_string()` panics on it ("a Display implementation returned an error
        // unexpectedly"). If an upgrade stops panicking, drop this half of the test.
        assert!(
            raw.is_err(),
            "lettre no longer panics on a CR/LF display name"
        );
        let c = content("s");
        let (envelope, bytes) = compose(&from(), &out(Some(name), &c)).unwrap();
        let h = headers(&bytes);
        assert!(
            h.contains("To: \"Eve Bcc: x@y\" <eve@example.com>") || h.contains("To: =?utf-8?"),
            "{h}"
        );
        assert!(!h.contains("\r\nBcc:"), "{h}");
        assert_eq!(envelope.to().len(), 1);
    }

    #[test]
    fn display_names_lose_control_characters_or_are_dropped() {
        assert_eq!(display_name(Some("王芳"), "m"), Some("王芳".into()));
        assert_eq!(
            display_name(Some(" Eve\r\n\tMallory\u{1b}[2J "), "m"),
            Some("Eve Mallory [2J".into())
        );
        assert_eq!(display_name(Some("\r\n\u{7}"), "m"), None);
        assert_eq!(display_name(None, "m"), None);
    }

    #[test]
    fn a_literal_encoded_word_in_a_subject_stays_literal() {
        let c = content("Order =?utf-8?b?SGFja2Vk?= shipped");
        let (_, bytes) = compose(&from(), &out(None, &c)).unwrap();
        let h = headers(&bytes);
        let subject = h
            .lines()
            .skip_while(|l| !l.starts_with("Subject:"))
            .take_while(|l| l.starts_with("Subject:") || l.starts_with(' '))
            .collect::<Vec<_>>()
            .join("");
        // Written as encoded words: a client decodes them once, to the literal text.
        assert!(subject.starts_with("Subject: =?utf-8?b?"), "{subject}");
        assert!(!subject.contains("SGFja2Vk?="), "{subject}");
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(parsed.subject(), Some("Order =?utf-8?b?SGFja2Vk?= shipped"));
    }

    #[test]
    fn a_subject_is_one_line() {
        let c = content("Re: SO-1\r\nBcc: x@y\u{1b}[31m");
        let (_, bytes) = compose(&from(), &out(None, &c)).unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(parsed.subject(), Some("Re: SO-1 Bcc: x@y [31m"));
        assert!(parsed.header_raw("Bcc").is_none());
    }

    #[test]
    fn an_invalid_recipient_is_a_reason_not_a_panic() {
        let c = content("s");
        let mut o = out(None, &c);
        o.to = "not an address\u{1b}";
        let e = compose(&from(), &o).unwrap_err();
        assert!(
            e.starts_with("invalid recipient address `not an address\\x1b`"),
            "{e}"
        );
    }
}
