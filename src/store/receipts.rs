//! Delivery receipts: what a carrier said about an SMS after the gateway took it.
//!
//! A receipt names the gateway's message id (`attempts.provider_id`, recorded when the
//! gateway accepted the message), and some providers also echo our own reference (the
//! outbox message id, Aliyun's `OutId`). Each is kept as a row of `receipts` beside the
//! attempt it is about, and a final one (delivered, undelivered) sets the message's
//! `delivery` column. One that comes before the record of its send (the gateway answers,
//! the recorder commits a moment later) waits in `receipts_waiting`, and the commit that
//! records the attempt applies it. The message stays `sent`: caps, reminders and `exclude_if_sent` count
//! what we sent, whatever the handset did with it.

use super::sql::on_tx;
use super::{Result, Store, Tx};
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
    /// No recorded attempt through this gateway has that id. It may have outrun the record
    /// of its own send: it waits in `receipts_waiting` for a day, and the
    /// commit that records its attempt applies it. One for another system's message (or a
    /// message older than this store) never matches and goes after that.
    Waiting,
    /// Matched nothing, and [`MAX_WAITING`] receipts wait already (a flood of receipts for
    /// no message of ours): not kept.
    Dropped,
}

/// Receipts that wait at most. A gateway without a signature (a generic HTTP one) takes
/// receipts from whoever reaches its URL; a flood of invented ones must not grow the store
/// without end. In normal sending only the few that outrun their send wait, for moments.
pub const MAX_WAITING: i64 = 100_000;

/// How long a receipt that matched no attempt waits for the record of its send. The
/// recorder commits within milliseconds, or minutes while the store is unwell; a day
/// covers a store outage a provider would give up on anyway.
const RECEIPT_WAITS: chrono::Duration = chrono::Duration::days(1);

const BY_PROVIDER_ID: &str = "SELECT message_id, attempt FROM attempts \
     WHERE provider_id = $1 AND gateway = $2 AND channel = 'sms' ORDER BY attempt DESC LIMIT 1";

const BY_REFERENCE: &str = "SELECT message_id, attempt FROM attempts \
     WHERE message_id = $1 AND gateway = $2 AND channel = 'sms' AND outcome = 'sent' ORDER BY attempt DESC LIMIT 1";

const INSERT_RECEIPT: &str = "INSERT INTO receipts (message_id, attempt, status, gateway, code, text, received_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id, attempt, status) DO NOTHING";

const SET_DELIVERY: &str = "UPDATE messages SET delivery = $2, updated_at = $3 WHERE id = $1";

const WAIT: &str = "INSERT INTO receipts_waiting (gateway, provider_id, status, reference, code, text, received_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (gateway, provider_id, status) DO NOTHING";

const FORGET_OLD: &str = "DELETE FROM receipts_waiting WHERE received_at < $1";

const ANY_WAITING: &str = "SELECT 1 FROM receipts_waiting LIMIT 1";

/// The waiting receipts an attempt just recorded answers: by the gateway's id, or by our
/// message id where the provider echoes it; in the order they came.
const WAITING_FOR: &str = "SELECT gateway, provider_id, status, reference, code, text, received_at \
     FROM receipts_waiting WHERE gateway = $1 AND (provider_id = $2 OR reference = $3) \
     ORDER BY received_at, status";

const DONE_WAITING: &str =
    "DELETE FROM receipts_waiting WHERE gateway = $1 AND provider_id = $2 AND status = $3";

/// An SMS attempt that was just recorded as sent: what a waiting receipt may be about.
pub(super) struct RecordedSms<'a> {
    pub message_id: &'a str,
    /// When its completion was recorded (the message's `updated_at`).
    pub at: i64,
    pub attempt: i64,
    pub gateway: &'a str,
    pub provider_id: Option<&'a str>,
}

type WaitingRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

impl Store {
    /// Record a batch of receipts (one provider push) in one transaction, each matched to its
    /// attempt by provider id, else by our reference; one that matches none waits for its
    /// attempt ([`ReceiptMatch::Waiting`]). Returns what became of each, in order.
    pub async fn apply_receipts(
        &self,
        receipts: &[NewReceipt],
        now: DateTime<Utc>,
    ) -> Result<Vec<ReceiptMatch>> {
        let at = to_millis(now);
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(receipts.len());
        // Room left in the waiting table, read at the first receipt that would wait.
        let mut room: Option<i64> = None;
        for r in receipts {
            let found: Option<(String, i64)> = on_tx!(tx, |conn| {
                let mut found: Option<(String, i64)> = sqlx::query_as(BY_PROVIDER_ID)
                    .bind(&r.provider_id)
                    .bind(&r.gateway)
                    .fetch_optional(&mut *conn)
                    .await?;
                if found.is_none()
                    && let Some(reference) = &r.reference
                {
                    found = sqlx::query_as(BY_REFERENCE)
                        .bind(reference)
                        .bind(&r.gateway)
                        .fetch_optional(&mut *conn)
                        .await?;
                }
                found
            });
            let Some((message_id, attempt)) = found else {
                let left = match room {
                    Some(n) => n,
                    None => room_to_wait(&mut tx, now).await?,
                };
                room = Some(left - 1);
                if left <= 0 {
                    out.push(ReceiptMatch::Dropped);
                    continue;
                }
                on_tx!(tx, |conn| {
                    sqlx::query(WAIT)
                        .bind(&r.gateway)
                        .bind(&r.provider_id)
                        .bind(&r.status)
                        .bind(&r.reference)
                        .bind(&r.code)
                        .bind(&r.text)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                });
                out.push(ReceiptMatch::Waiting);
                continue;
            };
            let new = keep(&mut tx, &message_id, attempt, r, at, at).await?;
            out.push(ReceiptMatch::Recorded {
                message_id,
                attempt,
                new,
            });
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// How many more receipts may wait ([`MAX_WAITING`] in all), once those that waited longer
/// than a day are gone.
async fn room_to_wait(tx: &mut Tx, now: DateTime<Utc>) -> Result<i64> {
    let old = to_millis(now - RECEIPT_WAITS);
    Ok(on_tx!(tx, |conn| {
        sqlx::query(FORGET_OLD)
            .bind(old)
            .execute(&mut *conn)
            .await?;
        let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM receipts_waiting")
            .fetch_one(&mut *conn)
            .await?;
        MAX_WAITING - waiting
    }))
}

/// Keep receipt `r` beside attempt `attempt` of `message_id`; a final one sets the
/// message's delivery. False when that status was kept already.
async fn keep(
    tx: &mut Tx,
    message_id: &str,
    attempt: i64,
    r: &NewReceipt,
    received_at: i64,
    now: i64,
) -> Result<bool> {
    Ok(on_tx!(tx, |conn| {
        let new = sqlx::query(INSERT_RECEIPT)
            .bind(message_id)
            .bind(attempt)
            .bind(&r.status)
            .bind(&r.gateway)
            .bind(&r.code)
            .bind(&r.text)
            .bind(received_at)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1;
        if new && r.status != "pending" {
            sqlx::query(SET_DELIVERY)
                .bind(message_id)
                .bind(&r.status)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        }
        new
    }))
}

/// Apply the waiting receipts that the SMS attempts `sent`, recorded in `tx`, are about, in
/// the order they came, and stop their waiting. One probe of an empty table when none waits
/// (the common case: receipts come after the record of their send).
pub(super) async fn settle_waiting(tx: &mut Tx, sent: &[RecordedSms<'_>]) -> Result<()> {
    if sent.is_empty() {
        return Ok(());
    }
    let any: Option<i32> = on_tx!(tx, |conn| {
        sqlx::query_scalar(ANY_WAITING)
            .fetch_optional(&mut *conn)
            .await?
    });
    if any.is_none() {
        return Ok(());
    }
    for s in sent {
        let rows: Vec<WaitingRow> = on_tx!(tx, |conn| {
            sqlx::query_as(WAITING_FOR)
                .bind(s.gateway)
                .bind(s.provider_id)
                .bind(s.message_id)
                .fetch_all(&mut *conn)
                .await?
        });
        for (gateway, provider_id, status, reference, code, text, received_at) in rows {
            let r = NewReceipt {
                gateway,
                provider_id,
                reference,
                status,
                code,
                text,
            };
            keep(tx, s.message_id, s.attempt, &r, received_at, s.at).await?;
            on_tx!(tx, |conn| {
                sqlx::query(DONE_WAITING)
                    .bind(&r.gateway)
                    .bind(&r.provider_id)
                    .bind(&r.status)
                    .execute(&mut *conn)
                    .await?;
            });
        }
    }
    Ok(())
}
