//! Delivery receipts: what a carrier said about an SMS after the gateway took it.
//!
//! A receipt names the gateway's message id (`attempts.provider_id`, recorded when the
//! gateway accepted the message), and some providers also echo our own reference (the
//! outbox message id, Aliyun's `OutId`). Each is kept as a row of `receipts` beside the
//! attempt it is about, and a final one (delivered, undelivered) sets the message's
//! `delivery` column. The message stays `sent`: caps, reminders and `exclude_if_sent` count
//! what we sent, whatever the handset did with it.

use super::sql::on_pool;
use super::{Result, Store};
use crate::clock::to_millis;
use chrono::{DateTime, Utc};

/// A receipt to record, as the SMS hooks parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReceipt {
    /// The configured gateway it came through.
    pub gateway: String,
    /// The id the gateway gave at send time.
    pub provider_id: String,
    /// Our message id, when the provider echoes it.
    pub reference: Option<String>,
    /// `delivered`, `undelivered` or `pending`.
    pub status: String,
    pub code: Option<String>,
    pub text: Option<String>,
}

/// What became of one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptMatch {
    /// Recorded for this message and attempt; `new` is false when the same status had been
    /// recorded already (providers retry their pushes).
    Recorded {
        message_id: String,
        attempt: i64,
        new: bool,
    },
    /// No attempt of ours through this gateway has that id (another system's message, or
    /// one older than this store).
    Unmatched,
}

const BY_PROVIDER_ID: &str = "SELECT message_id, attempt FROM attempts \
     WHERE provider_id = $1 AND gateway = $2 AND channel = 'sms' ORDER BY attempt DESC LIMIT 1";

const BY_REFERENCE: &str = "SELECT message_id, attempt FROM attempts \
     WHERE message_id = $1 AND gateway = $2 AND channel = 'sms' AND outcome = 'sent' ORDER BY attempt DESC LIMIT 1";

const INSERT_RECEIPT: &str = "INSERT INTO receipts (message_id, attempt, status, gateway, code, text, received_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id, attempt, status) DO NOTHING";

const SET_DELIVERY: &str = "UPDATE messages SET delivery = $2, updated_at = $3 WHERE id = $1";

impl Store {
    /// Whether any message is being sent now (claimed, on any node): a receipt unmatched
    /// meanwhile may be about one whose attempt is not recorded yet.
    pub async fn sending_now(&self) -> Result<bool> {
        on_pool!(self, |pool, _b| {
            let one: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM message_queue WHERE state = 'claimed' LIMIT 1")
                    .fetch_optional(pool)
                    .await?;
            Ok(one.is_some())
        })
    }

    /// Record a batch of receipts (one provider push) in one transaction, each matched to its
    /// attempt by provider id, else by our reference. Returns what became of each, in order.
    pub async fn apply_receipts(
        &self,
        receipts: &[NewReceipt],
        now: DateTime<Utc>,
    ) -> Result<Vec<ReceiptMatch>> {
        let now = to_millis(now);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let mut out = Vec::with_capacity(receipts.len());
            for r in receipts {
                let mut found: Option<(String, i64)> = sqlx::query_as(BY_PROVIDER_ID)
                    .bind(&r.provider_id)
                    .bind(&r.gateway)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none()
                    && let Some(reference) = &r.reference
                {
                    found = sqlx::query_as(BY_REFERENCE)
                        .bind(reference)
                        .bind(&r.gateway)
                        .fetch_optional(&mut *tx)
                        .await?;
                }
                let Some((message_id, attempt)) = found else {
                    out.push(ReceiptMatch::Unmatched);
                    continue;
                };
                let new = sqlx::query(INSERT_RECEIPT)
                    .bind(&message_id)
                    .bind(attempt)
                    .bind(&r.status)
                    .bind(&r.gateway)
                    .bind(&r.code)
                    .bind(&r.text)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if new && r.status != "pending" {
                    sqlx::query(SET_DELIVERY)
                        .bind(&message_id)
                        .bind(&r.status)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                out.push(ReceiptMatch::Recorded {
                    message_id,
                    attempt,
                    new,
                });
            }
            tx.commit().await?;
            Ok(out)
        })
    }
}
