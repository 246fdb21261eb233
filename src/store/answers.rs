//! Survey answers: one row per answered message, found by the message's token, changed in
//! place while the job's answer window is open. The `survey.answered` event that every
//! answer also becomes is written by `plan` in the same transaction (see `answers.rs`).

use super::sql::{json_map, on_pool, on_tx, opt_ms};
use super::suppressions::normalise_address;
use super::{Result, Store, Tx};
use crate::clock::{from_millis, to_millis};
use crate::model::{Contact, MessageState};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// A message looked up by its token, with its contact and its answer so far.
#[derive(Debug, Clone)]
pub struct TokenMessage {
    pub id: String,
    pub job_id: String,
    pub step: i64,
    pub template: String,
    pub state: MessageState,
    pub sent_at: Option<DateTime<Utc>>,
    /// The channel it went out on (`email`, `sms`).
    pub channel: Option<String>,
    pub contact: Contact,
    pub answer: Option<StoredAnswer>,
}

/// An answer as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct StoredAnswer {
    pub message_id: String,
    pub job_id: String,
    pub contact_id: String,
    /// `nps` or `csat`.
    pub scale: String,
    pub score: i64,
    pub comment: Option<String>,
    /// How it came: `web`, `sms`, `api` or `cli`.
    pub channel: String,
    pub answered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Times it was changed after the first answer.
    pub changes: i64,
}

/// A message sent by SMS to a number: a candidate for a reply that is a score.
#[derive(Debug, Clone)]
pub struct SentSms {
    pub token: String,
    pub job_id: String,
    pub sent_at: DateTime<Utc>,
}

const BY_TOKEN: &str = "SELECT m.id, m.job_id, m.step, m.template, m.state, m.sent_at, m.channel, \
     c.id AS c_id, c.name, c.email, c.phone, c.locale, c.timezone, c.birthday, c.attributes, c.consent, \
     a.scale, a.score, a.comment, a.channel AS a_channel, a.answered_at, a.updated_at AS a_updated_at, a.changes \
     FROM messages m JOIN contacts c ON c.id = m.contact_id LEFT JOIN answers a ON a.message_id = m.id \
     WHERE m.token = $1";

/// The answer, or a change to it; the same score and comment again writes nothing (a double
/// click, a retried POST), judged against the row as stored when this statement runs, so two
/// at once count once.
const UPSERT: &str = "INSERT INTO answers (message_id, job_id, contact_id, scale, score, comment, channel, answered_at, updated_at, changes) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 0) \
     ON CONFLICT (message_id) DO UPDATE SET score = excluded.score, comment = excluded.comment, \
     channel = excluded.channel, updated_at = excluded.updated_at, changes = answers.changes + 1 \
     WHERE answers.score <> excluded.score OR answers.comment IS DISTINCT FROM excluded.comment";

impl Store {
    /// The message whose `{{message.token}}` is `token`, if any.
    pub async fn message_by_token(&self, token: &str) -> Result<Option<TokenMessage>> {
        on_pool!(self, |pool, _b| {
            let Some(r) = sqlx::query(BY_TOKEN)
                .bind(token)
                .fetch_optional(pool)
                .await?
            else {
                return Ok(None);
            };
            let id: String = r.try_get("id")?;
            let job_id: String = r.try_get("job_id")?;
            let contact = Contact {
                id: r.try_get("c_id")?,
                name: r.try_get("name")?,
                email: r.try_get("email")?,
                phone: r.try_get("phone")?,
                locale: r.try_get("locale")?,
                timezone: r.try_get("timezone")?,
                birthday: r.try_get("birthday")?,
                attributes: json_map(r.try_get("attributes")?)?,
                consent: json_map(r.try_get("consent")?)?,
            };
            let score: Option<i64> = r.try_get("score")?;
            let answer = match score {
                None => None,
                Some(score) => Some(StoredAnswer {
                    message_id: id.clone(),
                    job_id: job_id.clone(),
                    contact_id: contact.id.clone(),
                    scale: r.try_get("scale")?,
                    score,
                    comment: r.try_get("comment")?,
                    channel: r.try_get("a_channel")?,
                    answered_at: from_millis(r.try_get("answered_at")?),
                    updated_at: from_millis(r.try_get("a_updated_at")?),
                    changes: r.try_get("changes")?,
                }),
            };
            let state: String = r.try_get("state")?;
            Ok(Some(TokenMessage {
                id,
                job_id,
                step: r.try_get("step")?,
                template: r.try_get("template")?,
                state: MessageState::parse(&state).unwrap_or(MessageState::Failed),
                sent_at: opt_ms(r.try_get("sent_at")?),
                channel: r.try_get("channel")?,
                contact,
                answer,
            }))
        })
    }

    /// Messages sent by SMS since `since` to the contacts with this number (E.164), newest
    /// first: where a reply that is a score may belong.
    pub async fn sms_sent_to(&self, phone: &str, since: DateTime<Utc>) -> Result<Vec<SentSms>> {
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(
                "SELECT m.token, m.job_id, m.sent_at FROM messages m \
                 WHERE m.contact_id IN (SELECT id FROM contacts WHERE phone = $1) \
                 AND m.state = 'sent' AND m.channel = 'sms' AND m.sent_at >= $2 AND m.token IS NOT NULL \
                 ORDER BY m.sent_at DESC, m.id DESC LIMIT 50",
            )
            .bind(phone)
            .bind(to_millis(since))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(SentSms {
                        token: r.try_get(0)?,
                        job_id: r.try_get(1)?,
                        sent_at: from_millis(r.try_get(2)?),
                    })
                })
                .collect()
        })
    }

    /// The token of the latest message of `job` sent to a contact (by id, email or phone):
    /// for support recording an answer given by phone.
    pub async fn latest_sent_token(&self, job: &str, contact: &str) -> Result<Option<String>> {
        on_pool!(self, |pool, _b| {
            let t: Option<String> = sqlx::query_scalar(
                "SELECT m.token FROM messages m WHERE m.job_id = $1 AND m.state = 'sent' AND m.token IS NOT NULL \
                 AND m.contact_id IN (SELECT id FROM contacts WHERE id = $2 OR email_key = $3 OR phone = $2) \
                 ORDER BY m.sent_at DESC, m.id DESC LIMIT 1",
            )
            .bind(job)
            .bind(contact)
            .bind(normalise_address("email", contact))
            .fetch_optional(pool)
            .await?;
            Ok(t)
        })
    }

    /// Note on a stored SMS reply what it did (`answer`: it was recorded as a survey score).
    /// Every answer of one contact, oldest first (its export).
    pub async fn answers_of(&self, contact: &str) -> Result<Vec<StoredAnswer>> {
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(
                "SELECT message_id, job_id, contact_id, scale, score, comment, channel, answered_at, updated_at, changes \
                 FROM answers WHERE contact_id = $1 ORDER BY answered_at, message_id",
            )
            .bind(contact)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(StoredAnswer {
                        message_id: r.try_get(0)?,
                        job_id: r.try_get(1)?,
                        contact_id: r.try_get(2)?,
                        scale: r.try_get(3)?,
                        score: r.try_get(4)?,
                        comment: r.try_get(5)?,
                        channel: r.try_get(6)?,
                        answered_at: from_millis(r.try_get(7)?),
                        updated_at: from_millis(r.try_get(8)?),
                        changes: r.try_get(9)?,
                    })
                })
                .collect()
        })
    }

    pub async fn mark_reply(&self, id: &str, action: &str) -> Result<()> {
        on_pool!(self, |pool, _b| {
            sqlx::query("UPDATE replies SET action = $2 WHERE id = $1")
                .bind(id)
                .bind(action)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}

impl Tx {
    /// Store the answer to a message, or change the one stored (counting the change).
    /// Record or change an answer; `false`: the same answer was there already (nothing
    /// written).
    pub async fn upsert_answer(&mut self, a: &StoredAnswer) -> Result<bool> {
        on_tx!(self, |conn| {
            let n = sqlx::query(UPSERT)
                .bind(&a.message_id)
                .bind(&a.job_id)
                .bind(&a.contact_id)
                .bind(&a.scale)
                .bind(a.score)
                .bind(&a.comment)
                .bind(&a.channel)
                .bind(to_millis(a.updated_at))
                .execute(&mut *conn)
                .await?
                .rows_affected();
            Ok(n > 0)
        })
    }
}
