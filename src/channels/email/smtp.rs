//! A small SMTP client pool over lettre's protocol code.
//!
//! lettre's own pool has two costs we measured: it writes the message body and the final
//! `\r\n.\r\n` as two writes on a socket without TCP_NODELAY, so every message waits out
//! Nagle plus the server's delayed ACK (~40 ms per message per connection: 332 msg/s with 16
//! connections on loopback), and its `max_size` bounds idle connections only, so a burst
//! opens one connection per concurrent send. Here we open the sockets ourselves with
//! TCP_NODELAY, hand them to lettre's `AsyncSmtpConnection` for the protocol, bound open
//! connections with a semaphore, and skip the NOOP probe for connections idle only briefly.

use super::settings::{SmtpConfig, TlsMode};
use crate::channels::Delivery;
use crate::model::Outcome;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use lettre::transport::smtp::response::Severity;
use std::sync::{Arc, Mutex};
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
        let credentials = match &s.username {
            Some(user) => {
                let password = s.password.read("email.smtp.password")?.unwrap_or_default();
                Some(Credentials::new(user.clone(), password))
            }
            None => None,
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
        })
    }

    /// Send one message. The caller bounds the whole call with its own timeout.
    pub async fn send(&self, envelope: &Envelope, email: &[u8]) -> Delivery {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut conn = match self.checkout().await {
            Ok(c) => c,
            Err(d) => return d,
        };
        let plain = email.is_ascii()
            && envelope
                .from()
                .is_none_or(|a| AsRef::<str>::as_ref(a).is_ascii())
            && envelope
                .to()
                .iter()
                .all(|a| AsRef::<str>::as_ref(a).is_ascii());
        let result = if conn.pipelining && plain {
            send_pipelined(&mut conn.inner, envelope, email).await
        } else {
            conn.inner.send(envelope, email).await
        };
        match result {
            Ok(resp) => {
                self.checkin(conn);
                Delivery {
                    outcome: Outcome::Sent,
                    code: Some(i64::from(u16::from(resp.code()))),
                    detail: resp.message().collect::<Vec<_>>().join(" "),
                    provider_id: None,
                    retry_after: None,
                }
            }
            Err(e) => {
                // After a refusal the session may hold unread pipelined replies: never reuse it.
                conn.inner.abort().await;
                classify(&e)
            }
        }
    }

    fn checkin(&self, conn: Conn) {
        self.idle
            .lock()
            .expect("pool lock")
            .push((conn, Instant::now()));
    }

    async fn checkout(&self) -> Result<Conn, Delivery> {
        loop {
            let next = self.idle.lock().expect("pool lock").pop();
            let Some((mut conn, since)) = next else { break };
            let idle = since.elapsed();
            if idle < PROBE_AFTER || (idle < IDLE_LIMIT && conn.inner.test_connected().await) {
                return Ok(conn);
            }
            conn.inner.abort().await;
        }
        self.connect().await
    }

    async fn connect(&self) -> Result<Conn, Delivery> {
        let target = format!("{}:{}", self.host, self.port);
        let tcp = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        {
            Err(_) => {
                return Err(Delivery::transient(format!(
                    "connecting to {target} timed out"
                )));
            }
            Ok(Err(e)) => {
                return Err(Delivery::transient(format!(
                    "cannot connect to {target}: {e}"
                )));
            }
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn AsyncTokioStream> = match (&self.implicit, self.mode) {
            (Some(connector), TlsMode::Tls) => {
                let name =
                    rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|e| {
                        Delivery::permanent(format!(
                            "email.smtp.host `{}` is not a TLS server name: {e}",
                            self.host
                        ))
                    })?;
                match connector.connect(name, tcp).await {
                    Ok(tls) => Box::new(TlsStream(tls)),
                    Err(e) => {
                        return Err(Delivery::transient(format!(
                            "TLS with {target} failed: {e}"
                        )));
                    }
                }
            }
            _ => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(|e| classify(&e))?;
        if let Some(params) = &self.starttls {
            conn.starttls(params.clone(), &self.hello)
                .await
                .map_err(|e| classify(&e))?;
        }
        if let Some(creds) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], creds)
                .await
                .map_err(|e| {
                    let mut d = classify(&e);
                    d.detail = format!("authentication failed: {}", d.detail);
                    d
                })?;
        }
        // lettre keeps only some EHLO keywords; ask again to learn about PIPELINING.
        let ehlo = conn
            .command(Ehlo::new(self.hello.clone()))
            .await
            .map_err(|e| classify(&e))?;
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
}

/// A pooled session and what its server offered.
struct Conn {
    inner: AsyncSmtpConnection,
    pipelining: bool,
}

/// One mail transaction with PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write, the
/// body and its final dot in another, two round trips instead of four.
async fn send_pipelined(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    email: &[u8],
) -> Result<Response, lettre::transport::smtp::Error> {
    let mut head = Mail::new(envelope.from().cloned(), vec![]).to_string();
    for to in envelope.to() {
        head.push_str(&Rcpt::new(to.clone(), vec![]).to_string());
    }
    head.push_str("DATA\r\n");
    conn.command(head).await?;
    for _ in envelope.to() {
        conn.read_response().await?;
    }
    conn.read_response().await?;
    conn.command(dot_stuffed(email)).await
}

/// The body as DATA carries it: a leading `.` doubled on every line, then `CRLF.CRLF`.
fn dot_stuffed(email: &[u8]) -> String {
    let text = String::from_utf8_lossy(email);
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
            retry_after: None,
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
