//! Whether the SMTP relay takes our mail: the state behind `/readyz`, the one operator error
//! per refusal, the refusal counts `metrics` reads, and the pause that keeps a refused login
//! from being tried once per queued message.
//!
//! A refusal is one of our session for good (see `smtp`): the same for every message, so it
//! is reported once here and the messages wait (`Delivery::relay_fault`).

use crate::channels::Delivery;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// After the relay refused our session, sends wait this long before one logs in again; the
/// ones in between get the same refusal without a new login.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Where in the SMTP exchange a failure happened: it decides whose fault it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// TCP connect: an outage, retried like any transient failure.
    Connect,
    Tls,
    Greeting,
    Starttls,
    Auth,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    /// The reply after the final dot.
    Message,
}

impl Stage {
    /// A refusal here is the relay refusing us, whatever the message.
    pub(super) fn is_session(self) -> bool {
        matches!(
            self,
            Stage::Tls
                | Stage::Greeting
                | Stage::Starttls
                | Stage::Auth
                | Stage::Ehlo
                | Stage::Mail
        )
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Greeting => "greeting",
            Stage::Starttls => "starttls",
            Stage::Auth => "auth",
            Stage::Ehlo => "ehlo",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
            Stage::Message => "message",
        }
    }

    /// "SMTP relay refuses our login", as the operator reads it.
    pub(super) fn refusal(self) -> &'static str {
        match self {
            Stage::Tls => "TLS with the SMTP relay failed",
            Stage::Greeting => "SMTP relay refuses our connection",
            Stage::Starttls => "SMTP relay refuses STARTTLS",
            Stage::Auth => "SMTP relay refuses our login",
            Stage::Ehlo => "SMTP relay refuses our EHLO",
            Stage::Mail => "SMTP relay refuses our sender (MAIL FROM)",
            _ => "SMTP relay refuses the message",
        }
    }
}

/// Session refusals by stage since the process started; `metrics` reads them at scrape time.
static REFUSALS: Mutex<std::collections::BTreeMap<&'static str, u64>> =
    Mutex::new(std::collections::BTreeMap::new());

/// (stage, count) of every stage at which the relay has refused our session.
pub fn session_refusals() -> Vec<(&'static str, u64)> {
    REFUSALS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(s, n)| (*s, *n))
        .collect()
}

/// Whether the relay accepts our session; shared with `/readyz`.
#[derive(Debug, Default)]
pub struct RelayHealth {
    fault: Mutex<Option<Fault>>,
    /// `fault` is set: lets every successful send skip the lock.
    faulted: AtomicBool,
}

#[derive(Debug, Clone)]
struct Fault {
    /// What the messages are told.
    delivery: Delivery,
    /// What the operator is told: `SMTP relay refuses our login: 535 5.7.8 ...`.
    text: String,
    /// No new login before this.
    until: Instant,
}

impl RelayHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Fault>> {
        self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the relay does not take our mail, while it does not.
    pub fn fault(&self) -> Option<String> {
        self.lock().as_ref().map(|f| f.text.clone())
    }

    /// The relay refused our session: count it; tell the operator once (and again when the
    /// words change), not once per message.
    pub(super) fn refused(&self, stage: Stage, d: &Delivery) {
        *REFUSALS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(stage.as_str())
            .or_default() += 1;
        let text = match d.code {
            Some(code) => format!("{}: {code} {}", stage.refusal(), after_colon(&d.detail)),
            None => d.detail.clone(),
        };
        let mut fault = self.lock();
        if fault.as_ref().is_none_or(|f| f.text != text) {
            tracing::error!(
                stage = stage.as_str(),
                "{text}; messages wait and are retried (their tries are not used up) until the relay accepts; check email.smtp in the config"
            );
        }
        *fault = Some(Fault {
            delivery: d.clone(),
            text,
            until: Instant::now() + PROBE_EVERY,
        });
        self.faulted.store(true, Ordering::Release);
    }

    /// A session was set up: the relay takes our mail again.
    pub(super) fn accepted(&self) {
        if !self.faulted.load(Ordering::Acquire) {
            return;
        }
        let mut fault = self.lock();
        self.faulted.store(false, Ordering::Release);
        if let Some(f) = fault.take() {
            tracing::info!("the SMTP relay accepts our session again (was: {})", f.text);
        }
    }

    /// The last refusal, while no new login should be tried.
    pub(super) fn waiting(&self) -> Option<Delivery> {
        if !self.faulted.load(Ordering::Acquire) {
            return None;
        }
        self.lock()
            .as_ref()
            .filter(|f| Instant::now() < f.until)
            .map(|f| f.delivery.clone())
    }
}

/// "SMTP relay refuses our login: 5.7.8 ..." → "5.7.8 ...".
fn after_colon(detail: &str) -> &str {
    detail.split_once(": ").map_or(detail, |(_, rest)| rest)
}
