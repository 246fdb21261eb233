//! The suppression list and open callback tasks: what support and agents change by hand.

use super::sql::on_pool;
use super::{Result, Store};
use crate::clock::{from_millis, to_millis};
use crate::model::MessageRecord;
use chrono::{DateTime, Utc};
use sqlx::Row;

/// An address that must not be contacted on a channel.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Suppression {
    pub channel: String,
    pub address: String,
    pub reason: String,
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Add (or update the reason and source of) a suppressed address: channel, address
/// (normalised), reason, source, created_at.
pub(super) const SUPPRESS: &str = "INSERT INTO suppressions (channel, address, reason, source, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (channel, address) DO UPDATE SET reason = excluded.reason, source = excluded.source";

impl Store {
    /// Add (or update the reason of) a suppressed address. Email addresses are kept in lower
    /// case; pending messages to it are stopped at send time.
    pub async fn suppress(
        &self,
        channel: &str,
        address: &str,
        reason: &str,
        source: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let address = normalise_address(channel, address);
        on_pool!(self, |pool, _b| {
            let n = sqlx::query(SUPPRESS)
                .bind(channel)
                .bind(&address)
                .bind(reason)
                .bind(source)
                .bind(to_millis(now))
                .execute(pool)
                .await?
                .rows_affected();
            Ok(n > 0)
        })
    }

    /// Remove an address from the list; `false` if it was not there.
    pub async fn unsuppress(&self, channel: &str, address: &str) -> Result<bool> {
        let address = normalise_address(channel, address);
        on_pool!(self, |pool, _b| {
            let n = sqlx::query("DELETE FROM suppressions WHERE channel = $1 AND address = $2")
                .bind(channel)
                .bind(&address)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(n > 0)
        })
    }

    pub async fn suppressions(&self, channel: Option<&str>) -> Result<Vec<Suppression>> {
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(
                "SELECT channel, address, reason, source, created_at FROM suppressions \
                 WHERE $1 IS NULL OR channel = $1 ORDER BY created_at, address",
            )
            .bind(channel)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Suppression {
                        channel: r.try_get(0)?,
                        address: r.try_get(1)?,
                        reason: r.try_get(2)?,
                        source: r.try_get(3)?,
                        created_at: from_millis(r.try_get(4)?),
                    })
                })
                .collect()
        })
    }

    /// The suppressions of one contact's addresses (the console's customer page).
    pub async fn suppressions_of(
        &self,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Vec<Suppression>> {
        let email = email.map(|e| normalise_address("email", e));
        let phone = phone.map(|p| normalise_address("sms", p));
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(
                "SELECT channel, address, reason, source, created_at FROM suppressions \
                 WHERE (channel = 'email' AND address = $1) OR (channel = 'sms' AND address = $2) ORDER BY created_at",
            )
            .bind(email.as_deref())
            .bind(phone.as_deref())
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Suppression {
                        channel: r.try_get(0)?,
                        address: r.try_get(1)?,
                        reason: r.try_get(2)?,
                        source: r.try_get(3)?,
                        created_at: from_millis(r.try_get(4)?),
                    })
                })
                .collect()
        })
    }

    /// Close an open callback task (an agent called the customer). `false` if there is no
    /// open task with this id.
    pub async fn close_task(
        &self,
        id: &str,
        note: &str,
        agent: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let now_ms = to_millis(now);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let n = sqlx::query(
                "UPDATE messages SET state = 'sent', sent_at = $2, updated_at = $2, attempts = attempts + 1, tries = tries + 1, channel = 'agent', reason = $3 \
                 WHERE id = $1 AND state = 'open'",
            )
            .bind(id)
            .bind(now_ms)
            .bind(format!("done: {note}"))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "INSERT INTO attempts (message_id, attempt, at, channel, address, outcome, code, detail, provider_id, node, duration_ms) \
                     VALUES ($1, (SELECT attempts FROM messages WHERE id = $1), $2, 'agent', $3, 'sent', NULL, $4, NULL, NULL, 0)",
                )
                .bind(id)
                .bind(now_ms)
                .bind(agent)
                .bind(note)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    /// Callback tasks (rows for the `webhook` channel), newest due last.
    pub async fn callback_tasks(&self, include_closed: bool) -> Result<Vec<MessageRecord>> {
        let filter = super::LogFilter {
            limit: 100_000,
            channel_plan: Some("webhook".into()),
            ..Default::default()
        };
        let all = self.find_messages(&filter).await?;
        Ok(all
            .into_iter()
            .filter(|m| include_closed || !m.state.is_final())
            .collect())
    }
}

impl Store {}

/// Email addresses compare case-insensitively; phone numbers are E.164 already.
pub(super) fn normalise_address(channel: &str, address: &str) -> String {
    if channel == "email" {
        address.trim().to_lowercase()
    } else {
        address.trim().to_string()
    }
}
