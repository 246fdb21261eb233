//! Channels: how a rendered message leaves the building.
//!
//! Each transport turns "send this" into a [`Delivery`]: accepted, transient failure
//! (retry later) or permanent failure, with the server's own code and text so support can
//! read what happened. A channel never touches the store and never retries by itself:
//! dispatch owns both, so every attempt is recorded the same way whatever the transport.

pub mod email;
pub mod sms;
pub mod webhook;

use crate::model::Outcome;

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
}

impl Delivery {
    pub fn permanent(detail: impl Into<String>) -> Delivery {
        Delivery {
            outcome: Outcome::Permanent,
            code: None,
            detail: detail.into(),
            provider_id: None,
            retry_after: None,
        }
    }

    pub fn transient(detail: impl Into<String>) -> Delivery {
        Delivery {
            outcome: Outcome::Transient,
            code: None,
            detail: detail.into(),
            provider_id: None,
            retry_after: None,
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
