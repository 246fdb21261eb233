//! A small SMTP client pool over lettre's protocol code.
//!
//! lettre's own pool has two costs we measured: it writes the message body and the final
//! `\r\n.\r\n` as two writes on a socket without TCP_NODELAY, so every message waits out
//! Nagle plus the server's delayed ACK (~40 ms per message per connection: 332 msg/s with 16
//! connections on loopback), and its `max_size` bounds idle connections only, so a burst
//! opens one connection per concurrent send. Here we open the sockets ourselves with
//! TCP_NODELAY, hand them to lettre's `AsyncSmtpConnection` for the protocol, bound open
//! connections with a semaphore, and skip the NOOP probe for connections idle only briefly.
//!
//! Whose fault a refusal is decides what happens to the message. A reply about the recipient
//! or the message (RCPT, DATA, the reply after the final dot) is the message's: 4xx retries
//! it, 5xx fails it. A refusal of our session for good (a 5xx to the greeting, EHLO,
//! STARTTLS, AUTH or our MAIL FROM; a host that is no TLS name) is the same for every
//! message: a configuration fault of ours, so it is a [`Delivery::relay_fault`] (the message
//! waits, its tries are not used up), [`RelayHealth`] logs it once for the operator, counts
//! it, and tells `/readyz`; and
//! for [`PROBE_EVERY`](super::relay::PROBE_EVERY) after it, sends do not log in again (a relay that sees one failed
//! login per queued message may block our address). Every reply is scrubbed of our
//! credentials before it goes anywhere.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use super::bounce::BounceKind;
use super::relay::{RelayHealth, Stage};
use super::settings::{SmtpConfig, TlsMode};
use crate::channels::Delivery;
use crate::channels::redact::Redactor;
use crate::model::Outcome;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::response::Severity;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// A connection idle longer than this is probed with NOOP before reuse.
const PROBE_AFTER: Duration = Duration::from_secs(5);
/// And one idle longer than this is closed rather than probed.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

pub struct SmtpPool {
    host: String,
    port: u16,
    mode: TlsMode,
    connect_timeout: Duration,
    hello: ClientId,
    credentials: Option<Credentials>,
    starttls: Option<TlsParameters>,
    implicit: Option<tokio_rustls::TlsConnector>,
    idle: Mutex<Vec<(Conn, Instant)>>,
    slots: Semaphore,
    /// Our password (and the forms it travels in) out of every reply.
    redactor: Redactor,
    health: Arc<RelayHealth>,
}

/// rustls' client stream, as lettre's protocol code wants it.
#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl SmtpPool {
    pub fn new(s: &SmtpConfig) -> anyhow::Result<SmtpPool> {
        let (credentials, redactor) = match &s.username {
            Some(user) => {
                let password = s.password.read("email.smtp.password")?.unwrap_or_default();
                let redactor = Redactor::new(&[&password]).with_sasl_plain(user, &password);
                (Some(Credentials::new(user.clone(), password)), redactor)
            }
            None => (None, Redactor::default()),
        };
        let starttls = match s.tls {
            TlsMode::Starttls => Some(TlsParameters::new(s.host.clone())?),
            _ => None,
        };
        let implicit = match s.tls {
            TlsMode::Tls => {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            _ => None,
        };
        let hello = ClientId::Domain(
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into()),
        );
        Ok(SmtpPool {
            host: s.host.clone(),
            port: s.port,
            mode: s.tls,
            connect_timeout: s.timeout,
            hello,
            credentials,
            starttls,
            implicit,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(s.pool_size as usize),
            redactor,
            health: Arc::new(RelayHealth::default()),
        })
    }

    /// The relay's state, for `/readyz`.
    pub fn health(&self) -> Arc<RelayHealth> {
        self.health.clone()
    }

    /// Send one message. The caller bounds the whole call with its own timeout.
    pub async fn send(&self, envelope: &Envelope, email: &[u8]) -> Delivery {
        let Ok(_slot) = self.slots.acquire().await else {
            return Delivery::transient("the SMTP pool is shutting down");
        };
        if let Some(d) = self.health.waiting() {
            return d;
        }
        let mut conn = match self.checkout().await {
            Ok(c) => c,
            Err((stage, d)) => return self.settle_session(stage, d),
        };
        let result = transaction(&mut conn, envelope, email).await;
        match result {
            Ok(resp) => {
                // A session that sends is proof enough (a refused MAIL FROM is fixed).
                self.health.accepted();
                self.checkin(conn);
                Delivery {
                    outcome: Outcome::Sent,
                    code: Some(i64::from(u16::from(resp.code()))),
                    detail: self
                        .redactor
                        .scrub(&resp.message().collect::<Vec<_>>().join(" ")),
                    provider_id: None,
                    retry_after: None,
                    relay_fault: false,
                    bounce: None,
                }
            }
            Err((stage, refusal)) => {
                // After a refusal the session may hold unread pipelined replies: never reuse it.
                conn.inner.abort().await;
                let d = match refusal {
                    Refusal::Smtp(e) => self.classify(&e),
                    Refusal::Ours(why) => Delivery::permanent(why),
                };
                if stage.is_session() {
                    self.settle_session(stage, d)
                } else {
                    d
                }
            }
        }
    }

    /// While the relay refuses us, try a session without a message (at most every
    /// [`PROBE_EVERY`](super::relay::PROBE_EVERY)): `/readyz` then recovers when the relay does, even when nothing is
    /// due to be sent. Does nothing while the relay takes our mail.
    pub async fn probe(&self) {
        if self.health.fault().is_none() || self.health.waiting().is_some() {
            return;
        }
        let Ok(_slot) = self.slots.acquire().await else {
            return;
        };
        match self.connect().await {
            Ok(conn) => {
                self.health.accepted();
                self.checkin(conn);
            }
            Err((stage, d)) => {
                self.settle_session(stage, d);
            }
        }
    }

    /// A failure before the message's own commands. The relay refusing our session for
    /// good (a 5xx to EHLO, AUTH or MAIL FROM; no AUTH mechanism in common; a host that is
    /// no TLS name) is a relay fault: counted, reported, not the message's. A passing
    /// trouble (a 4xx such as 421 "too busy", a connection reset, a TLS handshake cut short)
    /// stays an ordinary transient failure of that message: one hiccup must not hold up the
    /// whole queue.
    fn settle_session(&self, stage: Stage, mut d: Delivery) -> Delivery {
        // Only "slow down" concerns the destination; any other refusal of our session says
        // nothing about the recipient's address.
        if d.bounce
            .as_ref()
            .is_some_and(|b| b.kind != BounceKind::RateLimit)
        {
            d.bounce = None;
        }
        if !stage.is_session() || d.outcome != Outcome::Permanent {
            return d;
        }
        d.outcome = Outcome::Transient;
        d.relay_fault = true;
        d.detail = format!("{}: {}", stage.refusal(), d.detail);
        self.health.refused(stage, &d);
        d
    }

    fn checkin(&self, conn: Conn) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((conn, Instant::now()));
    }

    async fn checkout(&self) -> Result<Conn, (Stage, Delivery)> {
        loop {
            let next = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some((mut conn, since)) = next else { break };
            let idle = since.elapsed();
            if idle < PROBE_AFTER || (idle < IDLE_LIMIT && conn.inner.test_connected().await) {
                return Ok(conn);
            }
            conn.inner.abort().await;
        }
        let conn = self.connect().await?;
        self.health.accepted();
        Ok(conn)
    }

    async fn connect(&self) -> Result<Conn, (Stage, Delivery)> {
        let target = format!("{}:{}", self.host, self.port);
        let tcp = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        {
            Err(_) => {
                return Err((
                    Stage::Connect,
                    Delivery::transient(format!("connecting to {target} timed out")),
                ));
            }
            Ok(Err(e)) => {
                return Err((
                    Stage::Connect,
                    Delivery::transient(format!("cannot connect to {target}: {e}")),
                ));
            }
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn AsyncTokioStream> = match (&self.implicit, self.mode) {
            (Some(connector), TlsMode::Tls) => {
                let name =
                    rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|e| {
                        (
                            Stage::Tls,
                            Delivery::permanent(format!(
                                "email.smtp.host `{}` is not a TLS server name: {e}",
                                self.host
                            )),
                        )
                    })?;
                match connector.connect(name, tcp).await {
                    Ok(tls) => Box::new(TlsStream(tls)),
                    Err(e) => {
                        return Err((
                            Stage::Tls,
                            Delivery::transient(format!("TLS with {target} failed: {e}")),
                        ));
                    }
                }
            }
            _ => Box::new(tcp),
        };
        // lettre reads the greeting and sends EHLO in one call: whether we had written
        // anything tells a refused greeting from a refused EHLO.
        let wrote = Arc::new(AtomicBool::new(false));
        let stream = Box::new(Watched {
            inner: stream,
            wrote: wrote.clone(),
        });
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(|e| {
                let stage = if wrote.load(Ordering::Relaxed) {
                    Stage::Ehlo
                } else {
                    Stage::Greeting
                };
                (stage, self.classify(&e))
            })?;
        if let Some(params) = &self.starttls {
            conn.starttls(params.clone(), &self.hello)
                .await
                .map_err(|e| (Stage::Starttls, self.classify(&e)))?;
        }
        if let Some(creds) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], creds)
                .await
                .map_err(|e| (Stage::Auth, self.classify(&e)))?;
        }
        // lettre keeps only some EHLO keywords; ask again to learn about PIPELINING.
        let ehlo = conn
            .command(Ehlo::new(self.hello.clone()))
            .await
            .map_err(|e| (Stage::Ehlo, self.classify(&e)))?;
        let pipelining = ehlo.message().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
        });
        Ok(Conn {
            inner: conn,
            pipelining,
        })
    }

    /// [`classify`] with our credentials scrubbed from the server's words.
    fn classify(&self, e: &lettre::transport::smtp::Error) -> Delivery {
        let mut d = classify(e);
        d.detail = self.redactor.scrub(&d.detail);
        d
    }
}

/// A stream that notes whether anything was written to it.
#[derive(Debug)]
struct Watched {
    inner: Box<dyn AsyncTokioStream>,
    wrote: Arc<AtomicBool>,
}

impl AsyncTokioStream for Watched {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.wrote.store(true, Ordering::Relaxed);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A pooled session and what its server offered.
struct Conn {
    inner: AsyncSmtpConnection,
    pipelining: bool,
}

/// One mail transaction, each refusal with the command it answered. With PIPELINING
/// (RFC 2920) MAIL, RCPT and DATA go in one write and the body with its final dot in
/// another: two round trips instead of four.
async fn transaction(
    conn: &mut Conn,
    envelope: &Envelope,
    email: &[u8],
) -> Result<Response, (Stage, Refusal)> {
    let non_ascii_address = envelope
        .from()
        .is_some_and(|a| !AsRef::<str>::as_ref(a).is_ascii())
        || envelope
            .to()
            .iter()
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    let c = &mut conn.inner;
    let smtp = |stage: Stage| move |e| (stage, Refusal::Smtp(e));
    if conn.pipelining && !non_ascii_address && email.is_ascii() {
        let mut head = Mail::new(envelope.from().cloned(), vec![]).to_string();
        for to in envelope.to() {
            head.push_str(&Rcpt::new(to.clone(), vec![]).to_string());
        }
        head.push_str("DATA\r\n");
        c.command(head).await.map_err(smtp(Stage::Mail))?;
        for _ in envelope.to() {
            c.read_response().await.map_err(smtp(Stage::Rcpt))?;
        }
        c.read_response().await.map_err(smtp(Stage::Data))?;
        return c
            .command(dot_stuffed(email))
            .await
            .map_err(smtp(Stage::Message));
    }
    // As lettre's `send`: one command at a time, with SMTPUTF8 and 8BITMIME when needed.
    let mut options = vec![];
    if non_ascii_address {
        if !c.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err((
                Stage::Rcpt,
                Refusal::Ours("the address is not ASCII and the server does not offer SMTPUTF8"),
            ));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !email.is_ascii() {
        if !c.server_info().supports_feature(Extension::EightBitMime) {
            return Err((
                Stage::Message,
                Refusal::Ours("the message is not ASCII and the server does not offer 8BITMIME"),
            ));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    c.command(Mail::new(envelope.from().cloned(), options))
        .await
        .map_err(smtp(Stage::Mail))?;
    for to in envelope.to() {
        c.command(Rcpt::new(to.clone(), vec![]))
            .await
            .map_err(smtp(Stage::Rcpt))?;
    }
    c.command(Data).await.map_err(smtp(Stage::Data))?;
    c.message(email).await.map_err(smtp(Stage::Message))
}

/// Why a transaction stopped: the server's reply (or the connection's end), or a check of
/// ours before sending what the server could not take.
enum Refusal {
    Smtp(lettre::transport::smtp::Error),
    Ours(&'static str),
}
/// The body as DATA carries it: a leading `.` doubled on every line, then `CRLF.CRLF`.
fn dot_stuffed(email: &[u8]) -> String {
    // lettre's output is UTF-8 (ASCII but for 8BITMIME bodies): `from_utf8` checks that a
    // word at a time, where `from_utf8_lossy` goes byte by byte (2% of a dispatch's
    // instructions, callgrind); the lossy copy is only for bytes that are not UTF-8.
    let text = match std::str::from_utf8(email) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(email),
    };
    let mut out = String::with_capacity(text.len() + 16);
    if !text.starts_with('.') && !text.contains("\n.") {
        // The common case (lettre's encodings rarely start a line with a dot): one copy.
        out.push_str(&text);
        out.push_str("\r\n.\r\n");
        return out;
    }
    let mut at_line_start = true;
    for c in text.chars() {
        if at_line_start && c == '.' {
            out.push('.');
        }
        out.push(c);
        at_line_start = c == '\n';
    }
    out.push_str("\r\n.\r\n");
    out
}

/// SMTP 4xx, network and TLS trouble are transient; 5xx and malformed requests are not.
pub(crate) fn classify(e: &lettre::transport::smtp::Error) -> Delivery {
    let text = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string());
    // A multi-line reply on one line: it becomes one attempt's detail.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(code) = e.status() {
        let mut outcome = match code.severity {
            Severity::TransientNegativeCompletion => Outcome::Transient,
            _ => Outcome::Permanent,
        };
        let code = i64::from(u16::from(code));
        let bounce = super::bounce::classify(Some(code), &text);
        // A 5xx that means "slow down" (QQ's `550 … frequency limited`) is retried later:
        // the address is fine. So is a full mailbox (5.2.2), counted as a soft bounce.
        if let Some(b) = &bounce
            && matches!(b.kind, BounceKind::RateLimit | BounceKind::Soft)
            && (b.kind == BounceKind::RateLimit || b.status.as_deref() == Some("5.2.2"))
        {
            outcome = Outcome::Transient;
        }
        return Delivery {
            outcome,
            code: Some(code),
            detail: text,
            provider_id: None,
            retry_after: None,
            relay_fault: false,
            bounce,
        };
    }
    if e.is_client() {
        return Delivery::permanent(format!("{e}"));
    }
    Delivery::transient(format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::dot_stuffed;

    #[test]
    fn leading_dots_are_doubled() {
        assert_eq!(
            dot_stuffed(b"a\r\n.b\r\n..c\r\nd.e"),
            "a\r\n..b\r\n...c\r\nd.e\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(b".start"), "..start\r\n.\r\n");
    }
}
