//! The nouns every stage shares: contacts, events, outbox messages and their attempts.
//!
//! Plain data, no I/O. The store persists them, plan creates messages from events, dispatch
//! moves messages through [`MessageState`], and `logs` shows them to support.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// A customer as the business knows them. Fields absent from an event keep their stored value;
/// an event older than the last change only fills fields that are empty ([`StoredContact`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Contact {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// E.164, normalised at import.
    pub phone: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    /// `YYYY-MM-DD`.
    pub birthday: Option<String>,
    pub attributes: Map<String, Value>,
    pub consent: Map<String, Value>,
}

/// A contact as the store holds it for ingest: with the time of the newest event that changed
/// its fields, so that an event imported late (a backfill of history) cannot put back what a
/// newer one replaced. `None`: no event has dated them (stored before v16 without events).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredContact {
    pub contact: Contact,
    pub fields_at: Option<DateTime<Utc>>,
}

impl Contact {
    /// Where `channel` reaches this contact, if it can.
    pub fn address(&self, channel: Channel) -> Option<&str> {
        match channel {
            Channel::Email => self.email.as_deref(),
            Channel::Sms => self.phone.as_deref(),
            Channel::Webhook => None,
        }
    }
}

/// How a message leaves: to the customer by email or SMS, or as a task to the business's
/// own systems (a CRM callback). Stored and logged by [`Channel::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Email,
    Sms,
    Webhook,
}

impl Channel {
    /// In the order `validate` lists them.
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// What a contact lacks when it cannot be reached on this channel, for the log.
    pub fn address_noun(self) -> &'static str {
        match self {
            Channel::Email => "email address",
            Channel::Sms => "phone number",
            Channel::Webhook => "callback queue",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to a contact (an order delivered, a review submitted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub occurred_at: DateTime<FixedOffset>,
    pub contact_id: String,
    pub data: Map<String, Value>,
}

/// A stored event as `stop_when` compares it with a message's trigger: which one, when,
/// and its `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct StopEvent {
    pub kind: String,
    pub id: String,
    pub at: DateTime<Utc>,
    pub data: Map<String, Value>,
}

impl StopEvent {
    pub fn of(e: &Event) -> StopEvent {
        StopEvent {
            kind: e.kind.clone(),
            id: e.id.clone(),
            at: e.occurred_at.with_timezone(&Utc),
            data: e.data.clone(),
        }
    }
}

impl Event {
    /// `data.order_id` as text: the key support searches the delivery log by.
    pub fn order_id(&self) -> Option<String> {
        data_key(&self.data, "order_id")
    }
}

/// A scalar field of event data as text, for matching and searching (`SO-1001`, `42`).
pub fn data_key(data: &Map<String, Value>, field: &str) -> Option<String> {
    match data.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `marketing` needs consent and counts toward frequency caps; `service` does neither.
#[derive(
    Debug,
    serde::Deserialize,
    Serialize,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Hash,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    #[default]
    Marketing,
    Service,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Marketing => "marketing",
            Class::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Class {
        if s == "service" {
            Class::Service
        } else {
            Class::Marketing
        }
    }
}

/// Where an outbox message is in its life. `Claimed` is held under a lease by one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    Scheduled,
    /// A callback task waiting for an agent (no CRM webhook configured).
    Open,
    Claimed,
    Retrying,
    Sent,
    Failed,
    Cancelled,
    /// The contact is in the job's holdout group: nothing is sent, and the row is kept so
    /// the report can compare their outcomes with those who got the message.
    #[serde(rename = "held_out")]
    HeldOut,
}

impl MessageState {
    pub const ALL: [MessageState; 8] = [
        MessageState::Scheduled,
        MessageState::Open,
        MessageState::Claimed,
        MessageState::Retrying,
        MessageState::Sent,
        MessageState::Failed,
        MessageState::Cancelled,
        MessageState::HeldOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Scheduled => "scheduled",
            MessageState::Open => "open",
            MessageState::Claimed => "claimed",
            MessageState::Retrying => "retrying",
            MessageState::Sent => "sent",
            MessageState::Failed => "failed",
            MessageState::Cancelled => "cancelled",
            MessageState::HeldOut => "held_out",
        }
    }

    pub fn parse(s: &str) -> Option<MessageState> {
        MessageState::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            MessageState::Sent
                | MessageState::Failed
                | MessageState::Cancelled
                | MessageState::HeldOut
        )
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Accepted by the server or gateway.
    Sent,
    /// Failed for now (4xx, timeout, connection refused); retried later.
    Transient,
    /// Refused for good (5xx, invalid address); not retried.
    Permanent,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Transient => "transient",
            Outcome::Permanent => "permanent",
        }
    }
}

/// A planned message row, as the log shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageRecord {
    pub id: String,
    pub job_id: String,
    pub step: i64,
    pub contact_id: String,
    pub event_id: Option<String>,
    pub order_id: Option<String>,
    pub template: String,
    pub class: Class,
    /// `webhook` for a callback task; absent for a customer message.
    pub channel_plan: Option<String>,
    pub state: MessageState,
    pub due_at: DateTime<Utc>,
    pub attempts: i64,
    pub channel: Option<String>,
    pub address: Option<String>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// What the carrier finally said about a sent SMS (`delivered`, `undelivered`), from the
    /// gateway's delivery receipt; `None` until one arrives, and for other channels.
    pub delivery: Option<String>,
    /// The job's experiment arm this message is in (a variant's name); absent without
    /// variants.
    pub variant: Option<String>,
    pub attempt_log: Vec<AttemptRecord>,
}

/// One request to deliver a message: to an SMTP server, a webhook, or one SMS gateway.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub channel: String,
    pub address: Option<String>,
    pub outcome: String,
    /// SMTP reply code or HTTP status.
    pub code: Option<i64>,
    /// The server's text, or our reason.
    pub detail: Option<String>,
    /// The Message-ID we sent, or the gateway's id.
    pub provider_id: Option<String>,
    pub node: Option<String>,
    pub duration_ms: Option<i64>,
    /// The SMS gateway asked (`aliyun`, `twilio-us`); absent for other channels.
    pub gateway: Option<String>,
    /// Delivery receipts for this attempt, oldest first.
    pub receipts: Vec<ReceiptRecord>,
}

/// A delivery receipt a gateway pushed for one attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReceiptRecord {
    pub received_at: DateTime<Utc>,
    /// `delivered`, `undelivered` or `pending`.
    pub status: String,
    /// The provider's or carrier's code (`DELIVRD`, `30003`).
    pub code: Option<String>,
    pub text: Option<String>,
}
