//! What SMS gateways push back to us: delivery receipts and customers' replies. The HTTP
//! API mounts these two functions on its endpoints (one URL per configured gateway); they
//! verify and parse the request through the SMS channel, then write to the store.
//!
//! - A **receipt** is matched to the attempt that sent the message (by the gateway's message
//!   id, else by our reference when the provider echoes it), kept beside that attempt in the
//!   log, and a final one sets the message's delivery status (`delivered` / `undelivered`,
//!   with the carrier's code). A receipt for no message of ours is counted, not an error: the
//!   provider must not retry it forever. It may have outrun the record of its own send (the
//!   gateway answered, the recorder commits a moment later): it waits a day in the store,
//!   and the commit that records its attempt applies it (`store::receipts`).
//! - A **reply** that is an opt-out (`STOP`, `TD`, `T`, `退订`, … see
//!   `channels::sms::reply`) puts the sender's number on the suppression list for channel
//!   `sms`, so no later SMS reaches them through any gateway (the job falls back to its next
//!   channel, e.g. email). `START`/`UNSTOP` lifts such a suppression again, but not one that
//!   support made. Every reply is stored (`replies`), keyword or not: support reads them in
//!   the contact's timeline.
//!
//! Here rather than in `channels/`: channels never touch the store. Errors say which HTTP
//! status the endpoint answers ([`HookError::status`]): the provider retries 5xx, not 4xx.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use crate::answers::{self, AnswerError};
use crate::channels::sms::{Inbound, ReceiptError, SmsChannel, is_start_reply, is_stop_reply};
use crate::logging::mask;
use crate::playbook::Playbook;
use crate::store::{NewReceipt, ReceiptMatch, ReplyKeyword, Store, StoreError, StoredReply};
use chrono::{DateTime, Utc};

/// What one request came to, for the endpoint's answer and the daemon's log.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Receipts in the request.
    pub receipts: usize,
    /// Receipts recorded against one of our attempts (a repeat of a known one included).
    pub recorded: usize,
    /// Of those, receipts already known (the provider pushed the same status again).
    pub duplicates: usize,
    /// Receipts that matched no recorded send: each waits a day for its send to be recorded
    /// (it may have outrun it), then is dropped as another system's (at once, while
    /// `store::MAX_WAITING` wait already).
    pub unmatched: usize,
    /// Inbound messages in the request.
    pub replies: usize,
    /// Of those, opt-outs whose number is now suppressed.
    pub stopped: usize,
    /// Of those, opt-ins (`START`) that lifted the number's own earlier STOP.
    pub resumed: usize,
    /// Of those, messages stored already (the provider pushed the same one again).
    pub repeated: usize,
    /// Of those, replies recorded as the answer to a survey SMS (`3 太慢了`).
    pub answers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The URL names no configured gateway: 404.
    #[error("no SMS gateway named `{0}` (configured under sms.gateways)")]
    UnknownGateway(String),
    /// The gateway has no format configured for this kind of request (an http gateway without
    /// `receipt:` or `reply:`): 404.
    #[error(
        "SMS gateway `{0}` takes no such requests: give it a `receipt:` (or `reply:`) mapping in the config"
    )]
    NotConfigured(String),
    /// Not signed, or not by the provider (a forged or altered request, or signed for
    /// another URL): 403.
    #[error("rejected: {0}")]
    Signature(String),
    /// The body is not what the provider sends: 400.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The gateway's secret is missing on this machine, so the signature cannot be checked
    /// (the text names the variable or file): 503, the provider retries later.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed: 500, the provider retries later.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HookError {
    /// The HTTP status the endpoint answers with.
    pub fn status(&self) -> u16 {
        match self {
            HookError::UnknownGateway(_) | HookError::NotConfigured(_) => 404,
            HookError::Signature(_) => 403,
            HookError::Malformed(_) => 400,
            HookError::Unavailable(_) => 503,
            HookError::Store(_) => 500,
        }
    }
}

impl From<ReceiptError> for HookError {
    fn from(e: ReceiptError) -> HookError {
        match e {
            ReceiptError::UnknownGateway(g) => HookError::UnknownGateway(g),
            ReceiptError::NotConfigured(g) => HookError::NotConfigured(g),
            ReceiptError::MissingSignature
            | ReceiptError::BadSignature
            | ReceiptError::MissingToken
            | ReceiptError::BadToken => HookError::Signature(e.to_string()),
            ReceiptError::Malformed(m) => HookError::Malformed(m),
            ReceiptError::Unavailable(m) => HookError::Unavailable(m),
        }
    }
}

/// A delivery receipt pushed by `gateway` (Twilio status callback, Aliyun SmsReport, an http
/// gateway's `receipt:` format): verify, parse, record.
pub async fn status_callback(
    store: &Store,
    sms: &SmsChannel,
    gateway: &str,
    inbound: Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Summary, HookError> {
    let receipts = sms.receipts(gateway, &inbound)?;
    let rows: Vec<NewReceipt> = receipts
        .iter()
        .map(|r| NewReceipt {
            gateway: r.gateway.clone(),
            provider_id: r.provider_id.clone(),
            reference: r.reference.clone(),
            status: r.status.as_str().to_string(),
            code: r.code.clone(),
            text: r.text.clone(),
        })
        .collect();
    let matches = store.apply_receipts(&rows, now).await?;
    let mut s = Summary {
        receipts: rows.len(),
        ..Summary::default()
    };
    for (r, m) in rows.iter().zip(&matches) {
        match m {
            ReceiptMatch::Recorded {
                message_id, new, ..
            } => {
                s.recorded += 1;
                s.duplicates += usize::from(!new);
                tracing::info!(gateway, message = %message_id, status = %r.status, code = ?r.code, "sms receipt");
            }
            ReceiptMatch::Waiting => {
                s.unmatched += 1;
                tracing::info!(gateway, provider_id = %r.provider_id, "sms receipt for no recorded send: it waits a day for its send to be recorded");
            }
            ReceiptMatch::Dropped => {
                s.unmatched += 1;
                tracing::warn!(gateway, provider_id = %r.provider_id, "sms receipt for no recorded send dropped: {} receipts wait already (a flood of receipts for no message of ours?)", crate::store::MAX_WAITING);
            }
        }
    }
    Ok(s)
}

/// Inbound SMS pushed by `gateway`: each is stored for support (the contact's timeline); an
/// opt-out suppresses the sender's number on `sms`, an opt-in lifts a STOP the sender made.
pub async fn inbound_reply(
    store: &Store,
    sms: &SmsChannel,
    gateway: &str,
    inbound: Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Summary, HookError> {
    inbound_replies(store, sms, None, gateway, inbound, now).await
}

/// [`inbound_reply`], and with `book`, a reply that is a score (`3 太慢了`, `10分`) to the
/// latest survey SMS sent to that number, within its answer window, is also recorded as
/// the survey's answer (see `answers`); the reply's action says `answer`. What the API mounts.
pub async fn inbound_replies(
    store: &Store,
    sms: &SmsChannel,
    book: Option<&Playbook>,
    gateway: &str,
    inbound: Inbound<'_>,
    now: DateTime<Utc>,
) -> Result<Summary, HookError> {
    let replies = sms.replies(gateway, &inbound)?;
    let mut s = Summary {
        replies: replies.len(),
        ..Summary::default()
    };
    for r in &replies {
        let keyword = if is_stop_reply(&r.text) {
            Some(ReplyKeyword::OptOut)
        } else if is_start_reply(&r.text) {
            Some(ReplyKeyword::OptIn)
        } else {
            None
        };
        let id = crate::values::new_id(now);
        let provider_id = r.provider_id.as_deref();
        let Some(stored) = store
            .record_reply(&id, gateway, provider_id, &r.from, &r.text, keyword, now)
            .await?
        else {
            // The first push was answered 500 when the store failed after keeping the
            // reply: its retry takes the answer the first did not (what it did is stored).
            if let (Some(book), Some(pid)) = (book, provider_id)
                && keyword.is_none()
                && answers::parse_reply(&r.text).is_some()
                && let Some(kept) = store.reply_unacted(gateway, pid).await?
            {
                take_answer(book, store, gateway, &kept, &mut s).await?;
            }
            s.repeated += 1;
            tracing::info!(
                gateway,
                provider_id,
                "sms reply pushed again: already stored"
            );
            continue;
        };
        let from = mask(&stored.from);
        match stored.action.as_deref() {
            Some("opt_out") => {
                s.stopped += 1;
                tracing::info!(gateway, %from, "sms opt-out: number suppressed");
            }
            Some("opt_in") => {
                s.resumed += 1;
                tracing::info!(gateway, %from, "sms opt-in: the number's STOP is lifted");
            }
            Some(_) => tracing::info!(
                gateway,
                %from,
                "sms opt-in refused: the number was suppressed by support, not by a STOP reply"
            ),
            None => {
                tracing::info!(gateway, %from, reply = %id, "sms reply stored");
                if let Some(book) = book {
                    take_answer(book, store, gateway, &stored, &mut s).await?;
                }
            }
        }
    }
    Ok(s)
}

/// A stored reply that is a score, as the answer to the latest survey SMS to its number
/// when it came; the reply is then marked `answer`. A store error is returned (the push is
/// answered 5xx and retried).
async fn take_answer(
    book: &Playbook,
    store: &Store,
    gateway: &str,
    reply: &StoredReply,
    s: &mut Summary,
) -> Result<(), HookError> {
    let from = mask(&reply.from);
    match answers::record_sms_reply(book, store, &reply.from, &reply.text, reply.received_at).await
    {
        Ok(Some(rec)) => {
            store.mark_reply(&reply.id, "answer").await?;
            s.answers += 1;
            tracing::info!(gateway, %from, message = %rec.answer.message_id, score = rec.answer.score, "sms reply is a survey answer");
        }
        Ok(None) => {}
        Err(AnswerError::Store(e)) => return Err(e.into()),
        Err(e) => tracing::warn!(gateway, %from, "sms reply not taken as an answer: {e}"),
    }
    Ok(())
}
