//! What agents do by hand in the console, each change recorded with the agent's name in the
//! same transaction: retry a failed message, cancel a scheduled one, suppress or unsuppress an
//! address, claim a callback task and close it with a note. The customer's timeline reads
//! `agent_actions`, so "who stopped this?" has an answer.

use super::ops::HandAction;
use super::sql::{Bind, bind_all, on_pool};
use super::suppressions::{SUPPRESS, log_change, normalise_address, remove_entries};
use super::{Result, Store};
use crate::clock::{from_millis, to_millis};
use crate::model::MessageState;
use chrono::{DateTime, Utc};
use sqlx::Row;

/// An action to record.
#[derive(Debug, Clone)]
pub struct NewAction {
    pub agent: String,
    pub contact_id: Option<String>,
    pub message_id: Option<String>,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

/// A recorded action, as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentAction {
    pub id: String,
    pub at: DateTime<Utc>,
    pub agent: String,
    /// `retry`, `cancel`, `suppress`, `unsuppress`, `claim`, `callback_done`.
    pub action: String,
    pub contact_id: Option<String>,
    pub message_id: Option<String>,
    pub channel: Option<String>,
    pub address: Option<String>,
    pub note: Option<String>,
}

const INSERT: &str = "INSERT INTO agent_actions (id, at, agent, action, contact_id, message_id, channel, address, note) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Insert one action row on `$conn` (a macro: it compiles against each backend's connection).
macro_rules! record {
    ($conn:expr, $a:expr, $action:expr, $channel:expr, $address:expr) => {{
        let a: &NewAction = $a;
        let channel: Option<&str> = $channel;
        let address: Option<&str> = $address;
        sqlx::query(INSERT)
            .bind(crate::values::new_id(a.at))
            .bind(to_millis(a.at))
            .bind(&a.agent)
            .bind($action)
            .bind(&a.contact_id)
            .bind(&a.message_id)
            .bind(channel)
            .bind(address)
            .bind(&a.note)
            .execute($conn)
            .await?;
    }};
}

impl Store {
    /// The contact of a message, if the message exists.
    async fn contact_of_message(&self, id: &str) -> Result<Option<(String, MessageState)>> {
        on_pool!(self, |pool, _b| {
            let row = sqlx::query("SELECT contact_id, state FROM messages WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(r) => {
                    let state: String = r.try_get(1)?;
                    Ok(Some((
                        r.try_get(0)?,
                        MessageState::parse(&state).unwrap_or(MessageState::Failed),
                    )))
                }
            }
        })
    }

    /// An agent sends a failed or cancelled message again, now.
    pub async fn agent_retry(&self, id: &str, a: &NewAction) -> Result<HandAction> {
        self.hand_change(
            id,
            a,
            "retry",
            "UPDATE messages SET state = CASE WHEN attempts = 0 THEN 'scheduled' ELSE 'retrying' END, due_at = $2, \
             not_after = NULL, reason = $3, updated_at = $2 WHERE id = $1 AND state IN ('failed', 'cancelled')",
            format!("retry requested by {}", a.agent),
        )
        .await
    }

    /// An agent cancels a message that has not gone yet.
    pub async fn agent_cancel(&self, id: &str, a: &NewAction) -> Result<HandAction> {
        self.hand_change(
            id,
            a,
            "cancel",
            "UPDATE messages SET state = 'cancelled', reason = $3, updated_at = $2, claim_token = NULL, locked_by = NULL, locked_until = NULL \
             WHERE id = $1 AND state IN ('scheduled', 'retrying')",
            format!("cancelled by {}", a.agent),
        )
        .await
    }

    /// An agent closes an open callback task (they called the customer) with a note: the
    /// task becomes `sent` through the `agent` channel, as `aftercare callbacks done` does.
    pub async fn agent_close_task(&self, id: &str, a: &NewAction) -> Result<HandAction> {
        let Some((contact, _)) = self.contact_of_message(id).await? else {
            return Ok(HandAction::NotFound);
        };
        let note = a.note.clone().unwrap_or_default();
        let now = to_millis(a.at);
        let mut a = a.clone();
        a.contact_id = Some(contact);
        a.message_id = Some(id.to_string());
        let done = on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let n = sqlx::query(
                "UPDATE messages SET state = 'sent', sent_at = $2, updated_at = $2, attempts = attempts + 1, tries = tries + 1, channel = 'agent', reason = $3 \
                 WHERE id = $1 AND state = 'open'",
            )
            .bind(id)
            .bind(now)
            .bind(format!("done by {}: {note}", a.agent))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "INSERT INTO attempts (message_id, attempt, at, channel, address, outcome, code, detail, provider_id, node, duration_ms) \
                     VALUES ($1, (SELECT attempts FROM messages WHERE id = $1), $2, 'agent', $3, 'sent', NULL, $4, NULL, NULL, 0)",
                )
                .bind(id)
                .bind(now)
                .bind(&a.agent)
                .bind(&note)
                .execute(&mut *tx)
                .await?;
                record!(&mut *tx, &a, "callback_done", None, None);
            }
            tx.commit().await?;
            n == 1
        });
        self.hand_outcome(id, done).await
    }

    /// An agent takes an open callback task ("I'm calling"); the last claim shows on the
    /// task list. Claiming does not change the task: another agent may still close it.
    pub async fn agent_claim_task(&self, id: &str, a: &NewAction) -> Result<HandAction> {
        match self.contact_of_message(id).await? {
            None => Ok(HandAction::NotFound),
            Some((_, s)) if s != MessageState::Open => Ok(HandAction::WrongState(s)),
            Some((contact, _)) => {
                let mut a = a.clone();
                a.contact_id = Some(contact);
                a.message_id = Some(id.to_string());
                on_pool!(self, |pool, _b| {
                    record!(pool, &a, "claim", None, None);
                });
                Ok(HandAction::Done)
            }
        }
    }

    /// The last claim of each of `ids` (open tasks): message id → (agent, when).
    pub async fn task_claims(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, (String, DateTime<Utc>)>> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT message_id, agent, at FROM agent_actions WHERE action = 'claim' AND message_id IN ({}) ORDER BY at",
                super::placeholders(1, chunk.len())
            );
            let binds: Vec<Bind> = chunk.iter().map(|i| Bind::Text(Some(i.clone()))).collect();
            on_pool!(self, |pool, _b| {
                for r in bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql)), &binds)
                    .fetch_all(pool)
                    .await?
                {
                    out.insert(
                        r.try_get::<String, _>(0)?,
                        (r.try_get(1)?, from_millis(r.try_get(2)?)),
                    );
                }
            });
        }
        Ok(out)
    }

    /// An agent adds an address to the suppression list (`source` names them).
    pub async fn agent_suppress(
        &self,
        channel: &str,
        address: &str,
        reason: &str,
        a: &NewAction,
    ) -> Result<()> {
        let address = normalise_address(channel, address);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            sqlx::query(SUPPRESS)
                .bind(channel)
                .bind(&address)
                .bind(reason)
                .bind(format!("console: {}", a.agent))
                .bind(to_millis(a.at))
                .execute(&mut *tx)
                .await?;
            let by = format!("console: {}", a.agent);
            log_change!(&mut *tx, channel, &address, "added", reason, &by, a.at);
            record!(
                &mut *tx,
                a,
                "suppress",
                Some(channel),
                Some(address.as_str())
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// An agent lifts a suppression; `false` if the address was not on the list.
    pub async fn agent_unsuppress(
        &self,
        channel: &str,
        address: &str,
        a: &NewAction,
    ) -> Result<bool> {
        // And the hashed entry an erasure left for it, as `suppress remove` does: the
        // customer page shows that entry, and the button beside it removes it.
        let plain = normalise_address(channel, address);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let n = remove_entries!(&mut *tx, channel, address);
            if n > 0 {
                let by = format!("console: {}", a.agent);
                let why = a.note.as_deref().unwrap_or("");
                log_change!(&mut *tx, channel, &plain, "removed", why, &by, a.at);
                record!(
                    &mut *tx,
                    a,
                    "unsuppress",
                    Some(channel),
                    Some(plain.as_str())
                );
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// A contact's recorded actions, oldest first.
    pub async fn actions_of(&self, contact_id: &str) -> Result<Vec<AgentAction>> {
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(
                "SELECT id, at, agent, action, contact_id, message_id, channel, address, note FROM agent_actions \
                 WHERE contact_id = $1 ORDER BY at, id",
            )
            .bind(contact_id)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(AgentAction {
                        id: r.try_get(0)?,
                        at: from_millis(r.try_get(1)?),
                        agent: r.try_get(2)?,
                        action: r.try_get(3)?,
                        contact_id: r.try_get(4)?,
                        message_id: r.try_get(5)?,
                        channel: r.try_get(6)?,
                        address: r.try_get(7)?,
                        note: r.try_get(8)?,
                    })
                })
                .collect()
        })
    }

    /// A state change of one message by an agent (`sql` binds id, now, reason), recorded.
    async fn hand_change(
        &self,
        id: &str,
        a: &NewAction,
        action: &str,
        sql: &'static str,
        reason: String,
    ) -> Result<HandAction> {
        let Some((contact, _)) = self.contact_of_message(id).await? else {
            return Ok(HandAction::NotFound);
        };
        let mut a = a.clone();
        a.contact_id = Some(contact);
        a.message_id = Some(id.to_string());
        let done = on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let n = sqlx::query(sql)
                .bind(id)
                .bind(to_millis(a.at))
                .bind(&reason)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 {
                record!(&mut *tx, &a, action, None, None);
            }
            tx.commit().await?;
            n == 1
        });
        self.hand_outcome(id, done).await
    }

    async fn hand_outcome(&self, id: &str, done: bool) -> Result<HandAction> {
        if done {
            return Ok(HandAction::Done);
        }
        Ok(match self.contact_of_message(id).await? {
            None => HandAction::NotFound,
            Some((_, s)) => HandAction::WrongState(s),
        })
    }
}
