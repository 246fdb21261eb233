//! SMS: gateways, failover between them, and what comes back (receipts, STOP replies).
//!
//! A send is given a route, gateway names in order of preference. Each gateway on it is tried
//! until one takes the message or refuses it for good:
//!
//! - a gateway that cannot carry this message (Aliyun needs a provider template, Twilio needs
//!   text) is skipped without a request;
//! - a gateway that is down (its breaker is open after repeated transient failures) is
//!   skipped without a request;
//! - a transient failure (timeout, 429, 5xx, throttling, bad credentials) moves on to the next
//!   gateway at once;
//! - a permanent failure (an invalid number, a template that does not fit) stops the route:
//!   no other gateway would do better.
//!
//! Every request is a hop, returned as `(gateway, Delivery)` so dispatch can record each one
//! as an attempt; [`Routed::delivery`] sums them up for the message's state. Channels do not
//! retry later or touch the store: dispatch owns both (see `channels`).
//!
//! Each gateway paces its requests to its configured rate (`pace`), shared by every concurrent
//! sender holding this [`SmsChannel`] (clones share it too), and scrubs its credentials from
//! every detail it returns (`outcome::Redactor`). Nothing here logs a credential, a header or
//! a request body; phone numbers in logs are masked.
//!
//! Credentials are read when a gateway is first used, not when the channel is built: the
//! daemon starts (and sends email) with gateways configured whose secrets this machine does
//! not have, and a send through such a gateway skips it as *unavailable*, naming the missing
//! variable or file. Like a 401 that is transient, not the message's fault: the message is
//! retried once the secret is there (and the daemon restarted, for a variable).
//!
//! Over 600 lines with its tests (about 100): the route (failover, breaker, pacing) is one
//! state machine; each gateway kind lives in its own folder.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

pub mod aliyun;
pub mod encoding;
pub mod receipt;
pub mod reply;
pub mod settings;
pub mod twilio;

mod breaker;
mod generic;
mod outcome;
mod pace;

pub use encoding::{Encoding, Segments, segments};
pub use receipt::{Inbound, Receipt, ReceiptError, ReceiptStatus};
pub use reply::{Reply, is_start_reply, is_stop_reply, sender_e164};
pub use settings::{RawSmsConfig, SmsConfig};

use super::Delivery;
use crate::model::Outcome;
use settings::{GatewayConfig, GatewaySettings};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One SMS to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsMessage {
    /// The recipient in E.164 (`+8613800138000`), as `ingest` normalises it.
    pub to: String,
    /// The rendered text, for gateways that send text (twilio, http).
    pub text: Option<String>,
    /// For gateways that send only pre-approved templates (aliyun; http may use it too).
    pub template: Option<ProviderTemplate>,
    /// Our id for the message (the outbox id): Aliyun's `OutId`, `{{reference}}` for http.
    pub reference: String,
}

/// A provider-side template and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTemplate {
    /// The provider's template code (`SMS_123456789`).
    pub code: String,
    /// The parameters as rendered: the text of a JSON object (`{"name":"王芳"}`).
    pub params: String,
}

/// One request to one gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    pub gateway: String,
    pub delivery: Delivery,
    /// From the request's start (after the rate limit let it go) to the answer.
    pub elapsed: Duration,
}

/// A gateway on the route that got no request, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub gateway: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Its breaker is open; it will be probed again after this long.
    Down { retry_in: Duration },
    /// It cannot carry this message (the why is for the log).
    Unsuitable(String),
    /// It cannot be used on this machine: a credential is missing (the why names the
    /// variable or file, never a value). Transient, like `Down`: fixed by the operator.
    Unavailable(String),
    /// No gateway by that name (the route was not checked against the config).
    Unknown,
}

/// What one send along a route came to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Routed {
    /// Every request made, in order; the last one decides.
    pub hops: Vec<Hop>,
    /// Gateways passed over without a request.
    pub skipped: Vec<Skip>,
}

impl Routed {
    /// The hop that took the message, if one did.
    pub fn sent(&self) -> Option<&Hop> {
        self.hops
            .iter()
            .find(|h| h.delivery.outcome == Outcome::Sent)
    }

    /// The outcome for the message: the last hop's, and when that is transient, a
    /// `retry_after` that is the earliest any gateway on the route may take it again (none
    /// when some gateway failed without asking for a wait). With no hop at all: transient
    /// while some gateway is only down, permanent when none can carry the message.
    pub fn delivery(&self) -> Delivery {
        let wait = self.earliest_retry();
        if let Some(last) = self.hops.last() {
            let mut d = last.delivery.clone();
            if d.outcome == Outcome::Transient {
                d.retry_after = wait;
            }
            return d;
        }
        let why = |s: &Skip| match &s.reason {
            SkipReason::Down { retry_in } => format!(
                "{} is down (next try in {})",
                s.gateway,
                crate::duration::format(ceil_secs(*retry_in))
            ),
            SkipReason::Unsuitable(w) => format!("{}: {w}", s.gateway),
            SkipReason::Unavailable(w) => format!("{} is unavailable: {w}", s.gateway),
            SkipReason::Unknown => format!("{}: no such gateway", s.gateway),
        };
        let list = self.skipped.iter().map(why).collect::<Vec<_>>().join("; ");
        if self.skipped.is_empty() {
            Delivery::permanent("no SMS route: no gateway is configured")
        } else if self.skipped.iter().any(|s| {
            matches!(
                s.reason,
                SkipReason::Down { .. } | SkipReason::Unavailable(_)
            )
        }) {
            let mut d = Delivery::transient(format!("no gateway available: {list}"));
            d.retry_after = wait;
            // Only passed over for a secret it could not read: a fault of our own setup,
            // not the message's, so it waits without using up its tries (as for an SMTP
            // relay that refuses our login) and goes once the secret is there. A gateway
            // that is down (its own failures) counts as any failed try.
            d.relay_fault = !self
                .skipped
                .iter()
                .any(|s| matches!(s.reason, SkipReason::Down { .. }));
            d
        } else {
            Delivery::permanent(format!(
                "no gateway on the route can send this message: {list}"
            ))
        }
    }

    fn earliest_retry(&self) -> Option<Duration> {
        let mut earliest: Option<Duration> = None;
        for h in &self.hops {
            if h.delivery.outcome == Outcome::Transient {
                let after = h.delivery.retry_after?;
                earliest = Some(earliest.map_or(after, |e| e.min(after)));
            }
        }
        for s in &self.skipped {
            if let SkipReason::Down { retry_in } = s.reason {
                earliest = Some(earliest.map_or(retry_in, |e| e.min(retry_in)));
            }
        }
        earliest
    }
}

fn ceil_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// Where the HTTP API takes `gateway`'s delivery receipts (`api/hooks.rs` serves it).
pub fn status_path(gateway: &str) -> String {
    format!("/hooks/sms/{gateway}/status")
}

/// A gateway's circuit breaker as the console's health page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayHealth {
    pub name: String,
    pub kind: &'static str,
    /// Transient failures in a row.
    pub failures: u32,
    /// Skipped for this much longer (the breaker is open); `None` when it takes sends.
    pub down_for: Option<Duration>,
}

/// The configured SMS gateways. Cheap to clone; clones share rate limits and breakers.
#[derive(Clone)]
pub struct SmsChannel {
    inner: Arc<Inner>,
}

struct Inner {
    gateways: HashMap<String, Gateway>,
    route: Vec<String>,
}

struct Gateway {
    name: String,
    kind: &'static str,
    settings: GatewaySettings,
    /// The driver and its redactor, built with the secrets at first use.
    ready: std::sync::OnceLock<Ready>,
    /// `api.public_url` + [`status_path`]: the receipts URL when the gateway names none.
    public_status_url: Option<String>,
    /// What its unsigned pushes must carry as `?token=` (`push_token_env`/`_file`).
    push_token: crate::values::Secret,
    /// Whether "unavailable" was logged already (once per gateway, not per message).
    warned: std::sync::atomic::AtomicBool,
    client: reqwest::Client,
    timeout: Duration,
    pace: pace::Pace,
    breaker: breaker::Breaker,
}

struct Ready {
    driver: Driver,
    redactor: outcome::Redactor,
}

enum Driver {
    Twilio(twilio::Twilio),
    Aliyun(aliyun::Aliyun),
    // Boxed: three handlebars registries make it five times the size of the others.
    Http(Box<generic::Generic>),
}

enum Prepared {
    Twilio(twilio::Prepared),
    Aliyun(aliyun::Prepared),
    Http(generic::Prepared),
}

impl SmsChannel {
    /// Set up the gateways and one HTTP client for all of them. Secrets are read at first use
    /// (see the module doc), so a missing one does not fail this.
    pub fn new(cfg: &SmsConfig) -> anyhow::Result<SmsChannel> {
        SmsChannel::with_public_url(cfg, None)
    }

    /// Like [`SmsChannel::new`], for a daemon whose HTTP API is reachable at `public_url`
    /// (`api.public_url`): a Twilio gateway without its own `status_callback` asks Twilio to
    /// call [`status_path`] there, so receipts come back without per-gateway configuration
    /// (and a Messaging Service's console callback pointed there verifies too).
    pub fn with_public_url(
        cfg: &SmsConfig,
        public_url: Option<&str>,
    ) -> anyhow::Result<SmsChannel> {
        // reqwest panics without a process-wide rustls provider; main installs ring, and a
        // library caller (a test) gets the same one.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("aftercare/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("sms: cannot set up the HTTP client: {e}"))?;
        let mut gateways = HashMap::new();
        for g in &cfg.gateways {
            let mut gw = Gateway::new(g, cfg, client.clone());
            gw.public_status_url = public_url
                .map(|base| format!("{}{}", base.trim_end_matches('/'), status_path(&g.name)));
            gateways.insert(g.name.clone(), gw);
        }
        Ok(SmsChannel {
            inner: Arc::new(Inner {
                gateways,
                route: cfg.route.clone(),
            }),
        })
    }

    /// Each gateway's breaker, by name: (kind, failures in a row, how long it is still
    /// skipped). What operators look at when SMS stop going out.
    pub fn breakers(&self) -> Vec<GatewayHealth> {
        let now = std::time::Instant::now();
        let mut out: Vec<GatewayHealth> = self
            .inner
            .gateways
            .values()
            .map(|g| {
                let (failures, down_for) = g.breaker.status(now);
                GatewayHealth {
                    name: g.name.clone(),
                    kind: g.kind,
                    failures,
                    down_for,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Read the secrets of `gateway` now (they are otherwise read at first use); the error
    /// names the variable or file. For `validate`'s environment check.
    pub fn check_secrets(&self, gateway: &str) -> Result<(), String> {
        match self.inner.gateways.get(gateway) {
            None => Err(format!("no SMS gateway named `{gateway}`")),
            Some(gw) => gw.ready().map(|_| ()),
        }
    }

    /// Send along `route` (the default route when empty). Never fails as a call: every
    /// outcome is in the returned hops.
    pub async fn send(&self, route: &[String], msg: &SmsMessage) -> Routed {
        let route = if route.is_empty() {
            &self.inner.route[..]
        } else {
            route
        };
        let mut routed = Routed::default();
        for name in route {
            let skip = |reason| Skip {
                gateway: name.clone(),
                reason,
            };
            let Some(gw) = self.inner.gateways.get(name) else {
                routed.skipped.push(skip(SkipReason::Unknown));
                continue;
            };
            let ready = match gw.ready() {
                Ok(r) => r,
                Err(why) => {
                    if !gw.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!(gateway = %name, %why, "sms gateway unavailable: skipped until its secret is there");
                    }
                    routed.skipped.push(skip(SkipReason::Unavailable(why)));
                    continue;
                }
            };
            let prepared = match ready.prepare(msg) {
                Ok(p) => p,
                Err(why) => {
                    tracing::debug!(gateway = %name, to = %crate::logging::mask(&msg.to), %why, "sms gateway cannot take this message");
                    routed.skipped.push(skip(SkipReason::Unsuitable(why)));
                    continue;
                }
            };
            if let Err(retry_in) = gw.breaker.admit(Instant::now()) {
                tracing::debug!(gateway = %name, "sms gateway is down, skipped");
                routed.skipped.push(skip(SkipReason::Down { retry_in }));
                continue;
            }
            gw.pace.wait().await;
            let started = Instant::now();
            let delivery = gw.attempt(ready, prepared).await;
            let elapsed = started.elapsed();
            if gw.breaker.record(delivery.outcome, Instant::now()) {
                tracing::warn!(
                    gateway = %name,
                    detail = %delivery.detail,
                    "sms gateway marked down after repeated transient failures"
                );
            }
            tracing::debug!(
                gateway = %name,
                kind = gw.kind,
                to = %crate::logging::mask(&msg.to),
                outcome = delivery.outcome.as_str(),
                code = ?delivery.code,
                provider_id = ?delivery.provider_id,
                "sms attempt"
            );
            let transient = delivery.outcome == Outcome::Transient;
            routed.hops.push(Hop {
                gateway: name.clone(),
                delivery,
                elapsed,
            });
            if !transient {
                break;
            }
        }
        routed
    }

    /// Parse and verify a delivery receipt that arrived for `gateway`.
    pub fn receipts(
        &self,
        gateway: &str,
        inbound: &Inbound<'_>,
    ) -> Result<Vec<Receipt>, ReceiptError> {
        let gw = self
            .inner
            .gateways
            .get(gateway)
            .ok_or_else(|| ReceiptError::UnknownGateway(gateway.to_string()))?;
        let ready = gw.ready().map_err(ReceiptError::Unavailable)?;
        gw.check_push_token(inbound)?;
        match &ready.driver {
            Driver::Twilio(t) => {
                // Twilio signs the URL it called: the gateway's `status_callback` when one is
                // configured (we sent it), else the one the request came to (`api.public_url`
                // + path, which we sent too, or which a Messaging Service's console names).
                let url = t.configured_status_callback().or(inbound.url).ok_or_else(|| {
                    ReceiptError::Malformed(
                        "no callback URL to check the signature against: set api.public_url (or the gateway's status_callback) to the URL Twilio calls".into(),
                    )
                })?;
                twilio::receipt(
                    gateway,
                    t.auth_token(),
                    url,
                    inbound.signature,
                    inbound.body,
                )
                .map(|r| vec![r])
            }
            Driver::Aliyun(_) => aliyun::receipts(gateway, inbound.body),
            Driver::Http(g) => {
                let m = g
                    .receipt_mapping()
                    .ok_or_else(|| ReceiptError::NotConfigured(gateway.to_string()))?;
                generic::receipts(gateway, m, inbound.body)
            }
        }
    }

    /// Parse (and for Twilio, verify) inbound SMS that arrived for `gateway`: who wrote and
    /// what (a provider may push several at once). Whether one is an opt-out or an opt-in
    /// is [`is_stop_reply`]'s and [`is_start_reply`]'s call.
    pub fn replies(
        &self,
        gateway: &str,
        inbound: &Inbound<'_>,
    ) -> Result<Vec<Reply>, ReceiptError> {
        let gw = self
            .inner
            .gateways
            .get(gateway)
            .ok_or_else(|| ReceiptError::UnknownGateway(gateway.to_string()))?;
        let ready = gw.ready().map_err(ReceiptError::Unavailable)?;
        gw.check_push_token(inbound)?;
        match &ready.driver {
            Driver::Twilio(t) => {
                // Twilio signs the URL of the number's messaging webhook, which is not in our
                // config: the endpoint passes the URL it was called on.
                let url = inbound.url.ok_or_else(|| {
                    ReceiptError::Malformed("no request URL to check the signature against".into())
                })?;
                twilio::reply(
                    gateway,
                    t.auth_token(),
                    url,
                    inbound.signature,
                    inbound.body,
                )
                .map(|r| vec![r])
            }
            Driver::Aliyun(_) => aliyun::replies(gateway, inbound.body),
            Driver::Http(g) => {
                let m = g
                    .reply_mapping()
                    .ok_or_else(|| ReceiptError::NotConfigured(gateway.to_string()))?;
                generic::replies(gateway, m, inbound.body)
            }
        }
    }
}

impl Gateway {
    fn new(g: &GatewayConfig, cfg: &SmsConfig, client: reqwest::Client) -> Gateway {
        Gateway {
            name: g.name.clone(),
            kind: g.settings.kind(),
            settings: g.settings.clone(),
            ready: std::sync::OnceLock::new(),
            public_status_url: None,
            push_token: g.push_token.clone(),
            warned: std::sync::atomic::AtomicBool::new(false),
            client,
            timeout: g.timeout,
            pace: pace::Pace::new(g.rate),
            breaker: breaker::Breaker::new(cfg.breaker),
        }
    }

    /// An Aliyun or http gateway's push (receipts, replies) is not signed: with a
    /// `push_token`, the URL it called must carry it as `?token=` (compared in constant time;
    /// the secret is read at each push, so a rotated file takes effect at once).
    fn check_push_token(&self, inbound: &Inbound<'_>) -> Result<(), ReceiptError> {
        if matches!(self.push_token, crate::values::Secret::None) {
            return Ok(());
        }
        let field = format!("sms.gateways.{}.push_token", self.name);
        let want = match self.push_token.read(&field) {
            Ok(Some(t)) if !t.trim().is_empty() => t,
            Ok(_) => {
                return Err(ReceiptError::Unavailable(format!(
                    "{field}: the secret is empty; set its variable or file"
                )));
            }
            Err(e) => return Err(ReceiptError::Unavailable(format!("{e:#}"))),
        };
        let given = inbound.token.ok_or(ReceiptError::MissingToken)?;
        if crate::values::same_secret(given.as_bytes(), want.trim().as_bytes()) {
            Ok(())
        } else {
            Err(ReceiptError::BadToken)
        }
    }

    /// The driver, built with the secrets on first use; until they can be read, why not.
    fn ready(&self) -> Result<&Ready, String> {
        if let Some(r) = self.ready.get() {
            return Ok(r);
        }
        let built = Ready::build(
            &self.name,
            &self.settings,
            self.public_status_url.as_deref(),
        )?;
        Ok(self.ready.get_or_init(|| built))
    }

    /// Make the request (the rate limit has been waited for), and clean the result of
    /// credentials (the answer is scrubbed as it arrives; this catches anything added after).
    async fn attempt(&self, ready: &Ready, p: Prepared) -> Delivery {
        let redactor = &ready.redactor;
        let mut d = match (&ready.driver, p) {
            (Driver::Twilio(t), Prepared::Twilio(p)) => {
                t.send(&self.client, p, self.timeout, redactor).await
            }
            (Driver::Aliyun(a), Prepared::Aliyun(p)) => {
                a.send(&self.client, p, self.timeout, redactor).await
            }
            (Driver::Http(h), Prepared::Http(p)) => {
                h.send(&self.client, p, self.timeout, redactor).await
            }
            _ => Delivery::permanent("internal error: a message prepared for another gateway"),
        };
        d.detail = redactor.scrub(&d.detail);
        if let Some(id) = &d.provider_id {
            d.provider_id = Some(redactor.scrub(id));
        }
        d
    }
}

impl Ready {
    fn build(
        name: &str,
        settings: &GatewaySettings,
        public_status_url: Option<&str>,
    ) -> Result<Ready, String> {
        let secret = |s: &crate::values::Secret, field: &str| -> Result<String, String> {
            let path = format!("sms.gateways.{name}.{field}");
            match s.read(&path).map_err(|e| e.to_string())? {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
                Some(_) => Err(format!("{path}: the secret is empty")),
                None => Err(format!("{path}: no secret configured")),
            }
        };
        let driver = match settings {
            GatewaySettings::Twilio(t) => Driver::Twilio(twilio::Twilio::new(
                t,
                secret(&t.auth_token, "auth_token")?,
                public_status_url,
            )),
            GatewaySettings::Aliyun(a) => Driver::Aliyun(aliyun::Aliyun::new(
                a,
                secret(&a.access_key_secret, "access_key_secret")?,
            )),
            GatewaySettings::Http(h) => {
                let s = match h.secret {
                    crate::values::Secret::None => None,
                    _ => Some(secret(&h.secret, "secret")?),
                };
                Driver::Http(Box::new(
                    generic::Generic::new(h, s).map_err(|e| format!("sms.gateways.{name}.{e}"))?,
                ))
            }
        };
        let redactor = match &driver {
            Driver::Twilio(t) => t.redactor(),
            Driver::Aliyun(a) => a.redactor(),
            Driver::Http(h) => h.redactor(),
        };
        Ok(Ready { driver, redactor })
    }

    fn prepare(&self, msg: &SmsMessage) -> Result<Prepared, String> {
        Ok(match &self.driver {
            Driver::Twilio(t) => Prepared::Twilio(t.prepare(msg)?),
            Driver::Aliyun(a) => Prepared::Aliyun(a.prepare(msg)?),
            Driver::Http(h) => Prepared::Http(h.prepare(msg)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(gateway: &str, outcome: Outcome, retry_after: Option<u64>) -> Hop {
        Hop {
            elapsed: Duration::ZERO,
            gateway: gateway.into(),
            delivery: Delivery {
                outcome,
                code: None,
                detail: format!("{gateway} said so"),
                provider_id: None,
                retry_after: retry_after.map(Duration::from_secs),
                relay_fault: false,
                bounce: None,
            },
        }
    }

    #[test]
    fn the_last_hop_decides_and_the_earliest_wait_wins() {
        let r = Routed {
            hops: vec![
                hop("a", Outcome::Transient, Some(60)),
                hop("b", Outcome::Transient, Some(20)),
            ],
            skipped: vec![Skip {
                gateway: "c".into(),
                reason: SkipReason::Down {
                    retry_in: Duration::from_secs(90),
                },
            }],
        };
        let d = r.delivery();
        assert_eq!(d.outcome, Outcome::Transient);
        assert_eq!(d.detail, "b said so");
        assert_eq!(d.retry_after, Some(Duration::from_secs(20)));
        assert_eq!(r.sent(), None);

        // A gateway that failed without asking for a wait may be tried again any time.
        let r = Routed {
            hops: vec![
                hop("a", Outcome::Transient, Some(60)),
                hop("b", Outcome::Transient, None),
            ],
            skipped: vec![],
        };
        assert_eq!(r.delivery().retry_after, None);

        let r = Routed {
            hops: vec![
                hop("a", Outcome::Transient, Some(60)),
                hop("b", Outcome::Sent, None),
            ],
            skipped: vec![],
        };
        assert_eq!(r.delivery().outcome, Outcome::Sent);
        assert_eq!(r.sent().map(|h| h.gateway.as_str()), Some("b"));
    }

    #[test]
    fn without_a_hop_down_is_transient_and_unsuitable_is_permanent() {
        let down = Skip {
            gateway: "a".into(),
            reason: SkipReason::Down {
                retry_in: Duration::from_millis(12_500),
            },
        };
        let unfit = Skip {
            gateway: "b".into(),
            reason: SkipReason::Unsuitable("needs a template".into()),
        };
        let r = Routed {
            hops: vec![],
            skipped: vec![down.clone(), unfit.clone()],
        };
        let d = r.delivery();
        assert_eq!(d.outcome, Outcome::Transient);
        assert_eq!(d.retry_after, Some(Duration::from_millis(12_500)));
        assert_eq!(
            d.detail,
            "no gateway available: a is down (next try in 13s); b: needs a template"
        );
        let r = Routed {
            hops: vec![],
            skipped: vec![unfit],
        };
        let d = r.delivery();
        assert_eq!(d.outcome, Outcome::Permanent);
        assert!(d.detail.contains("b: needs a template"), "{}", d.detail);
        assert_eq!(Routed::default().delivery().outcome, Outcome::Permanent);
    }
}
