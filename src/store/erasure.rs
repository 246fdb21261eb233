//! A person's data on request: everything held about a contact (export, GDPR art. 15 /
//! PIPL art. 45), and erasing it (GDPR art. 17 / PIPL art. 47).
//!
//! Erasure removes, in one transaction, the contact, its date index, its events, its
//! messages with their attempts, receipts and stored words (pending ones are cancelled by
//! going), agents' console actions on it, its SMS replies (by contact or by its number), its
//! survey answers, the email bounces and complaints about its messages or its address (with
//! their raw reports), and plain suppression entries of its addresses with the history of
//! changes to them.
//! What stays is anonymous: the messages are added to `daily_counts` first (finished ones
//! on their day, pending ones as cancelled today), so figures do not change, and each of
//! its addresses stays on the suppression list as a one-way hash (`suppressions::
//! hashed_address`), which the claim honours: should the shop send the same address again,
//! it is stored anew (nothing can tell it is the same person) but never contacted on it.
//! Erasing again finds nothing and changes nothing.

use super::retention::{COUNTED_COLUMNS, count_deleted};
use super::sql::{bind_all, on_pool, placeholders};
use super::suppressions::{hashed_address, normalise_address};
use super::{LogFilter, Pool, Result, Store};
use crate::clock::{from_millis, to_millis};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Row};

/// The (channel, address) pairs the contact's messages went to or were tried at.
const USED_ADDRESSES: &str = "SELECT a.channel, a.address FROM attempts a JOIN messages m ON m.id = a.message_id \
     WHERE m.contact_id = $1 AND a.channel IN ('email', 'sms') AND a.address IS NOT NULL \
     UNION SELECT channel, address FROM messages \
     WHERE contact_id = $1 AND channel IN ('email', 'sms') AND address IS NOT NULL";

/// What an erasure removed: counts only, for the log and the answer.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Erased {
    /// Contacts removed (0: nothing was held; erasing is idempotent).
    pub contacts: u64,
    pub events: u64,
    pub messages: u64,
    /// Of those, messages that were still to be sent.
    pub cancelled: u64,
    pub attempts: u64,
    pub receipts: u64,
    /// Stored subjects and texts of sent messages (what the console shows).
    pub texts: u64,
    /// Agents' actions on the contact in the console (they name its addresses and notes).
    pub actions: u64,
    pub replies: u64,
    /// Survey answers (scores and comments).
    pub answers: u64,
    /// Bounces and complaints about its messages or its email address.
    #[serde(default)]
    pub bounces: u64,
    /// Entries of the suppression list's history (who suppressed or lifted, and why).
    #[serde(default)]
    pub suppression_changes: u64,
    /// Addresses now suppressed as a one-way hash.
    pub suppressed: u64,
    /// A one-way reference of the erased contact id(s) for the operator's records
    /// (`sha256` of the id, 12 hex digits); not the id.
    pub reference: Vec<String>,
}

/// A short one-way reference of a contact id, for logs and tickets.
pub fn reference(contact_id: &str) -> String {
    let h = hashed_address("contact", contact_id);
    h.trim_start_matches(super::suppressions::HASHED)
        .chars()
        .take(12)
        .collect()
}

impl Store {
    /// The ids of the contacts `key` names: its id, else every contact with that email
    /// address (any case) or phone number.
    pub async fn contacts_named(&self, key: &str) -> Result<Vec<String>> {
        let phone = crate::values::normalise_phone(key).unwrap_or_else(|_| key.to_string());
        on_pool!(self, |pool, _b| {
            // By id also what a contact left behind without its row (see `erase_contact`).
            let by_id: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM contacts WHERE id = $1 \
                 UNION SELECT contact_id FROM messages WHERE contact_id = $1 \
                 UNION SELECT contact_id FROM events WHERE contact_id = $1",
            )
            .bind(key)
            .fetch_all(pool)
            .await?;
            if !by_id.is_empty() {
                return Ok(by_id);
            }
            Ok(sqlx::query_scalar(
                "SELECT id FROM contacts WHERE email_key = $1 OR phone = $2 ORDER BY id",
            )
            .bind(normalise_address("email", key))
            .bind(phone)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Erase the contact `id` (see the module doc); `reason` goes on its hashed suppression
    /// entries. Nothing held: an `Erased` of zeros.
    pub async fn erase_contact(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Erased> {
        let pg = matches!(self.pool, Pool::Postgres(_));
        let now_ms = to_millis(now);
        let mut out = Erased::default();
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            // Held first: an ingest of this contact reading it meanwhile would write it back.
            super::sql::hold!(&mut *tx, pg, &[id.to_string()], super::sql::Hold::Contacts);
            let found: Option<(Option<String>, Option<String>)> =
                sqlx::query_as("SELECT email, phone FROM contacts WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            // Without the contact's row, what was written for it while an erasure ran (a
            // cron occurrence planned from an audience read before, a reminder committed
            // behind it) is erased on asking again; with nothing left, nothing is done.
            let (email, phone) = match found {
                Some(addresses) => addresses,
                None => {
                    let left: Option<i32> = sqlx::query_scalar(
                        "SELECT 1 FROM messages WHERE contact_id = $1 \
                         UNION SELECT 1 FROM events WHERE contact_id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if left.is_none() {
                        tx.commit().await?;
                        return Ok(out);
                    }
                    (None, None)
                }
            };
            out.reference.push(reference(id));
            // The addresses its messages went to, read before they go: an address it had
            // before its current one keeps suppressions, their history and bounces too.
            let used: Vec<(String, String)> = sqlx::query_as(USED_ADDRESSES)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            // Messages: counted into the daily figures, then gone with attempts and receipts.
            let rows = sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM messages WHERE contact_id = $1 RETURNING {COUNTED_COLUMNS}"
            )))
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            out.messages = rows.len() as u64;
            for r in &rows {
                let state: String = r.try_get(4)?;
                if !matches!(state.as_str(), "sent" | "failed" | "cancelled" | "held_out") {
                    out.cancelled += 1;
                }
            }
            let (ids, add) = count_deleted(&rows, pg, now_ms)?;
            for (sql, binds) in add {
                bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .execute(&mut *tx)
                    .await?;
            }
            for chunk in ids.chunks(super::CHUNK) {
                let list = placeholders(1, chunk.len());
                out.receipts += bind_all!(
                    sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM receipts WHERE message_id IN ({list})"
                    ))),
                    chunk
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let texts: i64 = bind_all!(
                    sqlx::query(AssertSqlSafe(format!(
                        "SELECT COUNT(*) FROM attempts WHERE message_id IN ({list}) AND content IS NOT NULL"
                    ))),
                    chunk
                )
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                out.texts += texts as u64;
                out.attempts += bind_all!(
                    sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM attempts WHERE message_id IN ({list})"
                    ))),
                    chunk
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                out.bounces += bind_all!(
                    sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM bounces WHERE message_id IN ({list})"
                    ))),
                    chunk
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            out.actions = sqlx::query("DELETE FROM agent_actions WHERE contact_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            out.events = sqlx::query("DELETE FROM events WHERE contact_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM contact_dates WHERE contact_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            out.replies = sqlx::query(
                "DELETE FROM replies WHERE contact_id = $1 OR ($2 IS NOT NULL AND from_number = $2)",
            )
            .bind(id)
            .bind(&phone)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // A comment is the person's own words; the score goes with it (the NPS figures
            // of past periods lose that answer, as they lose the message).
            out.answers = sqlx::query("DELETE FROM answers WHERE contact_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // Each address: its plain entry (if any) gives way to a hashed one. The current
            // ones are suppressed whatever they were; an earlier one stays as it was (kept
            // suppressed, as a hash, only if it was), since it may be someone else's now.
            let mut addresses: Vec<(String, String, bool)> = Vec::new();
            for (channel, address) in [("email", email), ("sms", phone)] {
                if let Some(a) = address.filter(|a| !a.trim().is_empty()) {
                    addresses.push((channel.to_string(), a, true));
                }
            }
            for (channel, address) in used {
                let plain = normalise_address(&channel, &address);
                if !addresses
                    .iter()
                    .any(|(c, a, _)| *c == channel && normalise_address(c, a) == plain)
                {
                    addresses.push((channel, address, false));
                }
            }
            for (channel, address, current) in &addresses {
                let (channel, address) = (channel.as_str(), address.as_str());
                let plain = normalise_address(channel, address);
                let was_suppressed =
                    sqlx::query("DELETE FROM suppressions WHERE channel = $1 AND address = $2")
                        .bind(channel)
                        .bind(&plain)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        > 0;
                out.suppression_changes += sqlx::query(
                    "DELETE FROM suppression_changes WHERE channel = $1 AND address = $2",
                )
                .bind(channel)
                .bind(&plain)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if channel == "email" {
                    // Reports matched to no message (or to another contact's) still name
                    // the address.
                    out.bounces += sqlx::query("DELETE FROM bounces WHERE address = $1")
                        .bind(&plain)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                if !current && !was_suppressed {
                    continue;
                }
                out.suppressed += sqlx::query(super::suppressions::SUPPRESS)
                    .bind(channel)
                    .bind(hashed_address(channel, address))
                    .bind(format!("erased: {reason}"))
                    .bind("erasure")
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            out.contacts = sqlx::query("DELETE FROM contacts WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Everything held about contact `id`, as one JSON document: the contact, its date
    /// index, events (with their data), messages with every attempt and receipt and what each
    /// said (`attempts.content`), SMS replies (by contact or from its number), survey answers,
    /// the suppression entries of its addresses (plain or hashed) and their history, and the
    /// bounces and complaints about it (raw reports included). `None` when there is no such
    /// contact.
    pub async fn export_contact(&self, id: &str, now: DateTime<Utc>) -> Result<Option<Value>> {
        let Some(contact) = self.contact(id).await? else {
            return Ok(None);
        };
        let dates: Vec<(String, String)> = on_pool!(self, |pool, _b| sqlx::query_as(
            "SELECT field, date FROM contact_dates WHERE contact_id = $1 ORDER BY field"
        )
        .bind(id)
        .fetch_all(pool)
        .await?);
        let events = self.events_of(id).await?;
        let received: Vec<(String, i64)> = on_pool!(self, |pool, _b| sqlx::query_as(
            "SELECT id, received_at FROM events WHERE contact_id = $1"
        )
        .bind(id)
        .fetch_all(pool)
        .await?);
        let events: Vec<Value> = events
            .into_iter()
            .map(|e| {
                let at = received
                    .iter()
                    .find(|(i, _)| *i == e.id)
                    .map(|(_, ms)| from_millis(*ms));
                json!({"id": e.id, "type": e.kind, "occurred_at": e.occurred_at, "received_at": at, "data": e.data})
            })
            .collect();
        // By id only: `find_messages` also matches an email or a phone, which could be
        // another contact's id.
        let messages: Vec<_> = self
            .find_messages(&LogFilter {
                contact: Some(id.to_string()),
                limit: i64::MAX / 2,
                ..Default::default()
            })
            .await?
            .into_iter()
            .filter(|m| m.contact_id == id)
            .collect();
        // What each sent message said, as stored (`retention.content` long).
        let mut contents = Vec::new();
        for m in &messages {
            for c in self.message_contents(&m.id).await? {
                contents.push(
                    json!({"message_id": m.id, "attempt": c.attempt, "channel": c.channel,
                    "subject": c.subject, "text": c.text, "at": c.at}),
                );
            }
        }
        // Those matched to the contact when they came, and those from its number.
        let replies = self.replies_of(id).await?;
        let answers = self.answers_of(id).await?;
        // Its addresses: the current ones and those its messages went to before.
        let mut addresses: Vec<(String, String)> = Vec::new();
        let current = [
            ("email", contact.email.as_deref()),
            ("sms", contact.phone.as_deref()),
        ];
        let earlier = messages.iter().flat_map(|m| {
            m.attempt_log
                .iter()
                .map(|a| (a.channel.as_str(), a.address.as_deref()))
                .chain([(
                    m.channel.as_deref().unwrap_or_default(),
                    m.address.as_deref(),
                )])
        });
        for (channel, address) in current.into_iter().chain(earlier) {
            if let Some(a) = address.filter(|_| matches!(channel, "email" | "sms")) {
                let plain = (channel.to_string(), normalise_address(channel, a));
                if !addresses.contains(&plain) {
                    addresses.push(plain);
                }
            }
        }
        // Bounces and complaints about its messages or its addresses, each with its raw
        // report; and the suppression history of its plain addresses.
        let mut bounces: Vec<super::StoredBounce> = Vec::new();
        for (_, address) in addresses.iter().filter(|(c, _)| c == "email") {
            for b in self.bounces(None, Some(address), i64::MAX / 2).await? {
                if !bounces.iter().any(|x| x.id == b.id) {
                    bounces.push(b);
                }
            }
        }
        for m in &messages {
            for b in self.bounces(Some(&m.id), None, i64::MAX / 2).await? {
                if !bounces.iter().any(|x| x.id == b.id) {
                    bounces.push(b);
                }
            }
        }
        let mut bounce_docs = Vec::new();
        for b in bounces {
            let raw = self.bounce_raw(&b.id).await?;
            let mut v = serde_json::to_value(&b).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("raw".into(), json!(raw));
            }
            bounce_docs.push(v);
        }
        let mut changes = Vec::new();
        for (channel, address) in &addresses {
            for (change, reason, actor, at) in self.suppression_changes(channel, address).await? {
                changes.push(json!({"channel": channel, "address": address, "change": change, "reason": reason, "actor": actor, "at": at}));
            }
        }
        let mut suppressions = self
            .suppressions_of(contact.email.as_deref(), contact.phone.as_deref())
            .await?;
        for (channel, address) in &addresses {
            let (email, phone) = match channel.as_str() {
                "email" => (Some(address.as_str()), None),
                _ => (None, Some(address.as_str())),
            };
            for s in self.suppressions_of(email, phone).await? {
                if !suppressions
                    .iter()
                    .any(|x| (&x.channel, &x.address) == (&s.channel, &s.address))
                {
                    suppressions.push(s);
                }
            }
        }
        Ok(Some(json!({
            "exported_at": now,
            "contact": contact,
            "contact_dates": dates.into_iter().map(|(f, d)| json!({"field": f, "date": d})).collect::<Vec<_>>(),
            "events": events,
            "messages": messages,
            "message_contents": contents,
            "agent_actions": self.actions_of(id).await?,
            "replies": replies,
            "answers": answers,
            "suppressions": suppressions,
            "bounces": bounce_docs,
            "suppression_changes": changes,
        })))
    }
}
