//! What the HTTP API and the metrics read and change: a contact's timeline, retrying or
//! cancelling a message by hand, and outbox figures for monitoring; and the forecast's
//! listing of every final message, streamed.

use super::sql::on_pool;
use super::{Result, Store};
use crate::clock::{from_millis, to_millis};
use crate::model::{MessageRecord, MessageState};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Messages per job, channel and state (the metrics gauge).
#[derive(Debug, Clone)]
pub struct StateCount {
    pub job: String,
    pub channel: String,
    pub state: String,
    pub count: i64,
}

/// How much is waiting, and how late the oldest due message is.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxFigures {
    /// Scheduled or retrying.
    pub depth: i64,
    /// Due now or earlier and not yet sent.
    pub due: i64,
    pub oldest_due: Option<DateTime<Utc>>,
}

/// What a hand action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandAction {
    Done,
    NotFound,
    /// The message is in a state the action does not apply to.
    WrongState(MessageState),
}

impl Store {
    async fn state_of(&self, id: &str) -> Result<Option<MessageState>> {
        on_pool!(self, |pool, _b| {
            let s: Option<String> = sqlx::query_scalar("SELECT state FROM messages WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            Ok(s.and_then(|s| MessageState::parse(&s)))
        })
    }

    /// Send a failed or cancelled message again, now. Its attempts stay in the log.
    pub async fn retry_message(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<HandAction> {
        let n = on_pool!(self, |pool, _b| {
            sqlx::query(
                "UPDATE messages SET state = CASE WHEN attempts = 0 THEN 'scheduled' ELSE 'retrying' END, due_at = $2, \
                 not_after = NULL, reason = $3, updated_at = $2 WHERE id = $1 AND state IN ('failed', 'cancelled')",
            )
            .bind(id)
            .bind(to_millis(now))
            .bind(reason)
            .execute(pool)
            .await?
            .rows_affected()
        });
        self.hand_result(id, n).await
    }

    /// Cancel a message that has not gone yet (scheduled, retrying or an open task).
    pub async fn cancel_message(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<HandAction> {
        let n = on_pool!(self, |pool, _b| {
            sqlx::query(
                "UPDATE messages SET state = 'cancelled', reason = $2, updated_at = $3, claim_token = NULL, locked_by = NULL, locked_until = NULL \
                 WHERE id = $1 AND state IN ('scheduled', 'retrying', 'open')",
            )
            .bind(id)
            .bind(reason)
            .bind(to_millis(now))
            .execute(pool)
            .await?
            .rows_affected()
        });
        self.hand_result(id, n).await
    }

    async fn hand_result(&self, id: &str, changed: u64) -> Result<HandAction> {
        if changed == 1 {
            return Ok(HandAction::Done);
        }
        Ok(match self.state_of(id).await? {
            None => HandAction::NotFound,
            Some(s) => HandAction::WrongState(s),
        })
    }

    /// Cancel the pending messages of a job that no longer exists (after a reload).
    pub async fn cancel_job(&self, job_id: &str, reason: &str, now: DateTime<Utc>) -> Result<u64> {
        on_pool!(self, |pool, _b| {
            Ok(sqlx::query(
                "UPDATE messages SET state = 'cancelled', reason = $2, updated_at = $3 WHERE job_id = $1 AND state IN ('scheduled', 'retrying', 'open')",
            )
            .bind(job_id)
            .bind(reason)
            .bind(to_millis(now))
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    pub async fn state_counts(&self) -> Result<Vec<StateCount>> {
        on_pool!(self, |pool, _b| {
            // Grouped by state first: grouped by job first, SQLite walked `messages_job_due`
            // for the order and looked every row up from it (3.5 s for 1,000,000 messages
            // against 0.8 s reading the table straight through).
            let rows = sqlx::query("SELECT job_id, COALESCE(channel, channel_plan, ''), state, COUNT(*) FROM messages GROUP BY 3, 1, 2")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(StateCount {
                        job: r.try_get(0)?,
                        channel: r.try_get(1)?,
                        state: r.try_get(2)?,
                        count: r.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    pub async fn outbox_figures(&self, now: DateTime<Utc>) -> Result<OutboxFigures> {
        on_pool!(self, |pool, _b| {
            let r = sqlx::query(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN due_at <= $1 THEN 1 ELSE 0 END), 0), MIN(due_at) \
                 FROM message_queue WHERE state IN ('scheduled', 'retrying')",
            )
            .bind(to_millis(now))
            .fetch_one(pool)
            .await?;
            let oldest: Option<i64> = r.try_get(2)?;
            Ok(OutboxFigures {
                depth: r.try_get(0)?,
                due: r.try_get(1)?,
                oldest_due: oldest.map(from_millis).filter(|t| *t <= now),
            })
        })
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, |pool, _b| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    /// Every message in a final state, handed to `each` as it is read: the sent ones
    /// (`sent`) in the order they went, the others (failed, cancelled) by due time. No
    /// limit and no attempt logs: the forecast lists a year of sends this way without
    /// holding them in memory. `each` returns `false` to stop.
    pub async fn each_final_message(
        &self,
        sent: bool,
        mut each: impl FnMut(MessageRecord) -> bool,
    ) -> Result<()> {
        use futures::TryStreamExt;
        let (states, order) = if sent {
            ("'sent'", "m.sent_at, m.id")
        } else {
            ("'failed', 'cancelled'", "m.due_at, m.id")
        };
        let sql = format!(
            "SELECT m.id, m.job_id, m.step, m.contact_id, m.event_id, e.order_id, m.template, m.class, m.channel_plan, m.state, m.due_at, m.attempts, \
             m.channel, m.address, m.reason, m.created_at, m.updated_at, m.sent_at, m.delivery, m.variant \
             FROM messages m LEFT JOIN events e ON e.id = m.event_id WHERE m.state IN ({states}) ORDER BY {order}"
        );
        on_pool!(self, |pool, _b| {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(pool);
            while let Some(r) = rows.try_next().await? {
                let state: String = r.try_get("state")?;
                let record = MessageRecord {
                    id: r.try_get("id")?,
                    job_id: r.try_get("job_id")?,
                    step: r.try_get("step")?,
                    contact_id: r.try_get("contact_id")?,
                    event_id: r.try_get("event_id")?,
                    order_id: r.try_get("order_id")?,
                    template: r.try_get("template")?,
                    class: crate::model::Class::parse(&r.try_get::<String, _>("class")?),
                    channel_plan: r.try_get("channel_plan")?,
                    state: MessageState::parse(&state).unwrap_or(MessageState::Failed),
                    due_at: from_millis(r.try_get("due_at")?),
                    attempts: r.try_get("attempts")?,
                    channel: r.try_get("channel")?,
                    address: r.try_get("address")?,
                    reason: r.try_get("reason")?,
                    created_at: from_millis(r.try_get("created_at")?),
                    updated_at: from_millis(r.try_get("updated_at")?),
                    sent_at: r.try_get::<Option<i64>, _>("sent_at")?.map(from_millis),
                    delivery: r.try_get("delivery")?,
                    variant: r.try_get("variant")?,
                    attempt_log: Vec::new(),
                };
                if !each(record) {
                    break;
                }
            }
            Ok(())
        })
    }
}
