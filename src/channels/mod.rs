//! Channels: how a rendered message leaves the building.
//!
//! Each transport turns "send this" into a [`Delivery`]: accepted, transient failure
//! (retry later) or permanent failure, with the server's own code and text so support can
//! read what happened. A channel never touches the store and never retries by itself:
//! dispatch owns both, so every attempt is recorded the same way whatever the transport.
//! A refusal of the session itself (an SMTP relay that rejects our login) is a fault of our
//! own setup, not of the message: it is marked [`Delivery::relay_fault`], so dispatch lets the
//! message wait without using up its tries.

pub mod email;
pub mod redact;
pub mod sms;
pub mod webhook;

use crate::model::Outcome;

/// The longest wait a server's `Retry-After` is taken at. Its value is the server's to
/// choose (`Retry-After: 18446744073709551615`), and a wait past the end of time cannot be
/// added to a clock without a panic; a week is longer than any real outage asks for.
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The result of one attempt on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub outcome: Outcome,
    /// SMTP reply code or HTTP status, when the other side answered.
    pub code: Option<i64>,
    /// The other side's words, or why we could not reach it.
    pub detail: String,
    /// Message-ID (email) or the gateway's message id.
    pub provider_id: Option<String>,
    /// The other side asked us to wait this long before trying again (HTTP `Retry-After`).
    pub retry_after: Option<std::time::Duration>,
    /// The failure is the relay's refusal of our session (its greeting, our EHLO, our login,
    /// our sender), not an answer about this message: a configuration fault of ours. The
    /// message waits and is retried with backoff, and the try does not count toward
    /// `max_attempts` (always with `Outcome::Transient`).
    pub relay_fault: bool,
    /// What an email refusal says about the address (hard, soft, a rate limit, policy); set
    /// by the SMTP pool for refusals of the message, and of the session only when they ask
    /// us to slow down. Dispatch hands it to `feedback`, which suppresses or counts.
    pub bounce: Option<email::bounce::Bounce>,
}

impl Delivery {
    pub fn permanent(detail: impl Into<String>) -> Delivery {
        Delivery {
            outcome: Outcome::Permanent,
            code: None,
            detail: detail.into(),
            provider_id: None,
            retry_after: None,
            relay_fault: false,
            bounce: None,
        }
    }

    pub fn transient(detail: impl Into<String>) -> Delivery {
        Delivery {
            outcome: Outcome::Transient,
            code: None,
            detail: detail.into(),
            provider_id: None,
            retry_after: None,
            relay_fault: false,
            bounce: None,
        }
    }
}

/// The channels configured for this daemon.
pub struct Channels {
    pub email: email::EmailChannel,
    /// Callback tasks; `None` when the config has no `webhook:` (tasks stay open for agents).
    pub webhook: Option<webhook::WebhookChannel>,
    /// SMS gateways; `None` when the config has no `sms:` section.
    pub sms: Option<sms::SmsChannel>,
}
