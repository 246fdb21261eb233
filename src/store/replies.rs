//! Inbound SMS replies, kept for support, and what their keywords did to the suppression
//! list.
//!
//! A reply is stored whatever it says: "wrong number" or "the parcel never came" is what
//! support needs beside the message it answers, so the contact's timeline shows it. A
//! keyword changes the list in the same transaction as the row that records it, so the log
//! never says a number was suppressed (or released) when it was not:
//!
//! - an opt-out (`STOP`, `退订`, …) suppresses the number on `sms`, with source
//!   [`SMS_REPLY`];
//! - an opt-in (`START`, …) lifts a suppression that an opt-out *reply* made, and only
//!   that: a number that support or the API suppressed stays suppressed (a customer who
//!   complained by phone is not re-subscribed by a text), and the reply says so
//!   (`opt_in_refused`).

use super::sql::on_pool;
use super::suppressions::{log_change, normalise_address};
use super::{Result, Store};
use crate::clock::{from_millis, to_millis};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// The suppression source of numbers suppressed by their own opt-out reply.
pub const SMS_REPLY: &str = "sms-reply";

/// What a reply asked for, as `channels::sms::reply` read its keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKeyword {
    OptOut,
    OptIn,
}

/// One stored reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StoredReply {
    pub id: String,
    /// The configured gateway it came through.
    pub gateway: String,
    /// The sender, in E.164.
    pub from: String,
    /// The contact with that number when it came, if any.
    pub contact_id: Option<String>,
    pub text: String,
    /// `opt_out` (number suppressed), `opt_in` (a STOP lifted), `opt_in_refused` (suppressed
    /// by support, so it stays), or absent for a message to a person.
    pub action: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The provider's id for the message, when it gives one.
    pub provider_id: Option<String>,
}

/// A STOP reply's entry. Unlike [`super::suppressions::SUPPRESS`], an entry in force is left as it is: had the
/// STOP taken over support's (or a complaint's) entry as its own, the customer's next START
/// would lift a suppression it did not make. Only an entry that would end (a soft bounce's)
/// becomes the customer's, for good.
const STOP_SUPPRESS: &str = "INSERT INTO suppressions (channel, address, reason, source, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (channel, address) DO UPDATE SET reason = excluded.reason, source = excluded.source, expires_at = NULL \
     WHERE suppressions.expires_at IS NOT NULL";

impl Store {
    /// Store a reply from `from` (E.164) and apply its keyword, in one transaction. `None`
    /// when the gateway's `provider_id` is stored already: a repeated push changes nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_reply(
        &self,
        id: &str,
        gateway: &str,
        provider_id: Option<&str>,
        from: &str,
        text: &str,
        keyword: Option<ReplyKeyword>,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredReply>> {
        let from = normalise_address("sms", from);
        let at = to_millis(now);
        let applied = on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            if provider_id.is_some() {
                let seen: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM replies WHERE gateway = $1 AND provider_id = $2",
                )
                .bind(gateway)
                .bind(provider_id)
                .fetch_optional(&mut *tx)
                .await?;
                if seen.is_some() {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
            let contact_id: Option<String> = sqlx::query_scalar(
                "SELECT id FROM contacts WHERE phone = $1 ORDER BY updated_at DESC, id LIMIT 1",
            )
            .bind(&from)
            .fetch_optional(&mut *tx)
            .await?;
            let action = match keyword {
                None => None,
                Some(ReplyKeyword::OptOut) => {
                    let reason = format!("STOP reply via {gateway}");
                    let written = sqlx::query(STOP_SUPPRESS)
                        .bind("sms")
                        .bind(&from)
                        .bind(&reason)
                        .bind(SMS_REPLY)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if written > 0 {
                        let at = crate::clock::from_millis(at);
                        log_change!(
                            &mut *tx,
                            "sms",
                            &from,
                            "added",
                            &reason,
                            "the customer, by SMS reply",
                            at
                        );
                    }
                    Some("opt_out")
                }
                Some(ReplyKeyword::OptIn) => {
                    let source: Option<Option<String>> = sqlx::query_scalar(
                        "SELECT source FROM suppressions WHERE channel = 'sms' AND address = $1",
                    )
                    .bind(&from)
                    .fetch_optional(&mut *tx)
                    .await?;
                    match source {
                        Some(Some(s)) if s != SMS_REPLY => Some("opt_in_refused"),
                        Some(None) => Some("opt_in_refused"),
                        Some(Some(_)) => {
                            let removed = sqlx::query(
                                "DELETE FROM suppressions WHERE channel = 'sms' AND address = $1 AND source = $2",
                            )
                            .bind(&from)
                            .bind(SMS_REPLY)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                            if removed > 0 {
                                let at = crate::clock::from_millis(at);
                                let reason = format!("START reply via {gateway}");
                                log_change!(
                                    &mut *tx,
                                    "sms",
                                    &from,
                                    "removed",
                                    &reason,
                                    "the customer, by SMS reply",
                                    at
                                );
                            }
                            Some("opt_in")
                        }
                        None => Some("opt_in"),
                    }
                }
            };
            // A concurrent push of the same message (another node) loses here, wholly.
            let inserted = sqlx::query(
                "INSERT INTO replies (id, gateway, from_number, contact_id, text, action, received_at, provider_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (gateway, provider_id) DO NOTHING",
            )
            .bind(id)
            .bind(gateway)
            .bind(&from)
            .bind(&contact_id)
            .bind(text)
            .bind(action)
            .bind(at)
            .bind(provider_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                tx.rollback().await?;
                return Ok(None);
            }
            tx.commit().await?;
            Ok::<_, super::StoreError>(Some((contact_id, action)))
        })?;
        let Some((contact_id, action)) = applied else {
            return Ok(None);
        };
        Ok(Some(StoredReply {
            id: id.to_string(),
            gateway: gateway.to_string(),
            from,
            contact_id,
            text: text.to_string(),
            action: action.map(str::to_string),
            received_at: from_millis(at),
            provider_id: provider_id.map(str::to_string),
        }))
    }

    /// A contact's replies, oldest first, by contact id, email address or phone number (as
    /// `logs --contact` takes them): those matched to the contact when they came, and those
    /// from its current number or from that number.
    pub async fn replies_of(&self, contact: &str) -> Result<Vec<StoredReply>> {
        let phone = crate::values::normalise_phone(contact).unwrap_or_else(|_| contact.to_string());
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(
                "SELECT id, gateway, from_number, contact_id, text, action, received_at, provider_id FROM replies \
                 WHERE from_number = $3 OR contact_id IN (SELECT id FROM contacts WHERE id = $1 OR email_key = $2 OR phone = $3) \
                 OR from_number IN (SELECT phone FROM contacts WHERE id = $1 OR email_key = $2) \
                 ORDER BY received_at, id",
            )
            .bind(contact)
            .bind(normalise_address("email", contact))
            .bind(&phone)
            .fetch_all(pool)
            .await?;
            rows.iter().map(stored_reply).collect()
        })
    }

    /// The reply `gateway` pushed as `provider_id`, if it is stored and nothing was done
    /// with it (no keyword, not taken as an answer).
    pub async fn reply_unacted(
        &self,
        gateway: &str,
        provider_id: &str,
    ) -> Result<Option<StoredReply>> {
        on_pool!(self, |pool, _b| {
            let row = sqlx::query(
                "SELECT id, gateway, from_number, contact_id, text, action, received_at, provider_id FROM replies \
                 WHERE gateway = $1 AND provider_id = $2 AND action IS NULL",
            )
            .bind(gateway)
            .bind(provider_id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(stored_reply).transpose()
        })
    }
}

fn stored_reply<R: Row>(r: &R) -> Result<StoredReply>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredReply {
        id: r.try_get(0)?,
        gateway: r.try_get(1)?,
        from: r.try_get(2)?,
        contact_id: r.try_get(3)?,
        text: r.try_get(4)?,
        action: r.try_get(5)?,
        received_at: from_millis(r.try_get(6)?),
        provider_id: r.try_get(7)?,
    })
}
