//! Delivery receipts: what the carrier finally said about a message we handed to a gateway.
//!
//! A gateway's "accepted" only means the gateway took the message; whether the handset got it
//! arrives later, as a receipt the provider pushes to us (Twilio status callbacks, Aliyun's
//! SmsReport push, a local provider's JSON). Each provider's format is parsed by its gateway
//! module into the one [`Receipt`] shape here, keyed by the provider id that the send recorded
//! in `Delivery::provider_id`, so dispatch can find the message and update its state. Parsing
//! and verifying only: the HTTP endpoints that receive them are built elsewhere.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use std::fmt;

/// What the carrier said about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The configured gateway name the receipt came through.
    pub gateway: String,
    /// The id the gateway gave at send time (Twilio's SID, Aliyun's BizId, ...).
    pub provider_id: String,
    pub status: ReceiptStatus,
    /// The provider's or carrier's status code (`30003`, `DELIVERED`, `UNDELIV`).
    pub code: Option<String>,
    /// Words for support: the provider's message, or what a known code means.
    pub text: Option<String>,
    /// Our own reference when the provider echoes it (Aliyun's `out_id`: the outbox message id).
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// The handset has it.
    Delivered,
    /// It will not arrive (unknown number, handset off too long, carrier filtering).
    Undelivered,
    /// Still on its way (queued, sent to the carrier); a later receipt will settle it.
    Pending,
}

impl ReceiptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Undelivered => "undelivered",
            ReceiptStatus::Pending => "pending",
        }
    }
}

impl fmt::Display for ReceiptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A receipt request as the HTTP endpoint received it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The full URL the provider called, query included (Twilio signs it). `None`: the
    /// gateway's configured callback URL.
    pub url: Option<&'a str>,
    /// The `X-Twilio-Signature` header, for Twilio.
    pub signature: Option<&'a str>,
    /// The raw request body (form-encoded for Twilio, JSON for the others).
    pub body: &'a [u8],
    /// The `token` query parameter of the URL called: an unsigned gateway's `push_token`.
    pub token: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("no SMS gateway named `{0}`")]
    UnknownGateway(String),
    #[error("gateway `{0}` has no receipt (or reply) format configured")]
    NotConfigured(String),
    /// The gateway's secret cannot be read on this machine (the text names the variable or
    /// file), so its signature cannot be checked.
    #[error("the gateway cannot check this request: {0}")]
    Unavailable(String),
    #[error("the request is not signed")]
    MissingSignature,
    #[error("the signature does not match: not sent by the provider, or signed for another URL")]
    BadSignature,
    #[error("the URL called carries no ?token= (this gateway has a push_token)")]
    MissingToken,
    #[error("the URL's ?token= is not this gateway's push_token")]
    BadToken,
    #[error("malformed receipt: {0}")]
    Malformed(String),
}
