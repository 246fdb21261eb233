//! Leases in the store: renewing the claims a live node holds (its heartbeat) and reaping the
//! claims of a node that stopped.
//!
//! Why here and not in dispatch: both are row-level races between nodes, and the store is
//! where they are settled. Renewal and reaping never wait on each other or on a node's own
//! completion: on PostgreSQL both pick their rows `FOR UPDATE SKIP LOCKED`, so a row that is
//! being completed, renewed or reaped right now is left to that transaction (no deadlock
//! between a heartbeat and the recorder that lock the same rows in different orders). On
//! SQLite `BEGIN IMMEDIATE` serialises everything anyway.
//!
//! A reaped claim counts as an attempt: the node may have handed the message to the server
//! before it died, so the attempt log says so ("may have been sent") and support can tell a
//! possible duplicate from a bug. The attempt number is the one the dead node would have
//! written; its own completion can no longer apply (the claim token is gone), so that number
//! is never written twice. Counting it also bounds a message that kills every node that
//! tries it: after `max_attempts` it fails instead of taking the fleet down forever.

use super::sql::{
    Bind, bind_all, bind_vec, insert_into, on_pool, placeholders, update, values_rows,
};
use super::{Pool, Result, Store};
use crate::clock::to_millis;
use crate::model::{MessageState, Outcome};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashSet;

/// Rows reaped per transaction.
const REAP_BATCH: i64 = 500;

/// A claim the reaper returned to the queue (or failed, at the last attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    pub message_id: String,
    /// The node that held it (`locked_by`).
    pub node: String,
    /// The attempt number recorded for the expired lease.
    pub attempt: i64,
    pub state: MessageState,
}

impl Store {
    /// Extend to `until` the leases of every message still claimed under one of `tokens`.
    /// Returns the tokens that still hold at least one row: a token missing from the answer
    /// has nothing left to renew (all completed, released, or reaped by another node after
    /// its lease ran out), and never will again.
    pub async fn renew(&self, tokens: &[String], until: DateTime<Utc>) -> Result<HashSet<String>> {
        let mut kept = HashSet::new();
        let pg = matches!(self.pool, Pool::Postgres(_));
        for chunk in tokens.chunks(super::CHUNK) {
            let list = placeholders(2, chunk.len());
            // The ids as one array, for the reason `outbox::CLAIM_PG` gives.
            let sql = if pg {
                format!(
                    "UPDATE messages SET locked_until = $1 WHERE state = 'claimed' AND claim_token IN ({list}) \
                     AND id = ANY (ARRAY(SELECT m.id FROM message_queue q JOIN messages m ON m.id = q.id \
                     WHERE q.state = 'claimed' AND q.claim_token IN ({list}) \
                     AND m.state = 'claimed' AND m.claim_token IN ({list}) FOR UPDATE OF m SKIP LOCKED)) \
                     RETURNING claim_token"
                )
            } else {
                format!(
                    "UPDATE messages SET locked_until = $1 WHERE state = 'claimed' \
                     AND claim_token IN ({list}) RETURNING claim_token"
                )
            };
            let mut binds = vec![Bind::Int(Some(to_millis(until)))];
            binds.extend(chunk.iter().map(|t| Bind::Text(Some(t.clone()))));
            let rows = on_pool!(self, |pool, _b| {
                let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(|r| r.try_get::<String, _>(0))
                    .collect::<Result<Vec<_>, _>>()
            })?;
            kept.extend(rows);
        }
        Ok(kept)
    }

    /// Of `tokens`, those that still hold a claimed message (a renewal that found all of a
    /// token's rows locked by another writer for the moment extended none, and returned
    /// nothing for it).
    pub async fn still_claimed(&self, tokens: &[String]) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        for chunk in tokens.chunks(super::CHUNK) {
            let sql = format!(
                "SELECT DISTINCT claim_token FROM message_queue WHERE state = 'claimed' AND claim_token IN ({})",
                placeholders(1, chunk.len())
            );
            let binds: Vec<Bind> = chunk.iter().map(|t| Bind::Text(Some(t.clone()))).collect();
            on_pool!(self, |pool, _b| {
                for r in bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(pool)
                    .await?
                {
                    out.insert(r.try_get::<String, _>(0)?);
                }
            });
        }
        Ok(out)
    }

    /// Return every claim whose lease ended before `now` to the queue, as a `transient`
    /// attempt that says the message may have been sent; at the `max_attempts`-th attempt
    /// the message fails instead. `by` names the reaping node in the log.
    pub async fn reap(
        &self,
        now: DateTime<Utc>,
        by: &str,
        max_attempts: u32,
    ) -> Result<Vec<Reaped>> {
        self.reap_except(now, by, max_attempts, &[]).await
    }

    /// [`Store::reap`], leaving alone the claims made under `spare`: the reaping process's
    /// own, which it still holds. A process that stalled past its leases (a paused VM, a
    /// suspended laptop) would otherwise, on waking, take back the claims its own sends are
    /// working through and log each as a try that may have been sent; its heartbeat renews
    /// them instead. Another node's reaper still takes them.
    pub async fn reap_except(
        &self,
        now: DateTime<Utc>,
        by: &str,
        max_attempts: u32,
        spare: &[String],
    ) -> Result<Vec<Reaped>> {
        let mut all = Vec::new();
        loop {
            let (reaped, full) = self.reap_some(now, by, max_attempts, spare).await?;
            all.extend(reaped);
            if !full {
                return Ok(all);
            }
        }
    }

    /// One transaction of [`Store::reap`]; `true` when there may be more.
    async fn reap_some(
        &self,
        now: DateTime<Utc>,
        by: &str,
        max_attempts: u32,
        spare: &[String],
    ) -> Result<(Vec<Reaped>, bool)> {
        let pg = matches!(self.pool, Pool::Postgres(_));
        let select = reap_select(spare.len(), pg);
        let at = to_millis(now);
        let mut binds = vec![Bind::Int(Some(at))];
        binds.extend(spare.iter().map(|t| Bind::Text(Some(t.clone()))));
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let rows = bind_all!(sqlx::query(AssertSqlSafe(select)), &binds)
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                tx.commit().await?;
                return Ok((Vec::new(), false));
            }
            let full = rows.len() as i64 == REAP_BATCH;
            let mut expired = Vec::with_capacity(rows.len());
            for r in &rows {
                expired.push(Expired {
                    id: r.try_get(0)?,
                    token: r.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
                    node: r
                        .try_get::<Option<String>, _>(2)?
                        .unwrap_or_else(|| "unknown".into()),
                    attempts: r.try_get(3)?,
                    tries: r.try_get(4)?,
                    channel: r.try_get(5)?,
                    address: r.try_get(6)?,
                });
            }
            let mut applied: HashSet<String> = HashSet::with_capacity(expired.len());
            for chunk in expired.chunks(super::CHUNK) {
                let (sql, binds) = reap_update_sql(chunk, at, max_attempts, pg);
                for r in bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .fetch_all(&mut *tx)
                    .await?
                {
                    applied.insert(r.try_get(0)?);
                }
            }
            let done: Vec<&Expired> = expired.iter().filter(|e| applied.contains(&e.id)).collect();
            for chunk in done.chunks(super::CHUNK) {
                let (sql, binds) = reap_attempts_sql(chunk, at, by, pg);
                bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok((
                done.iter()
                    .map(|e| Reaped {
                        message_id: e.id.clone(),
                        node: e.node.clone(),
                        attempt: e.attempts + 1,
                        state: e.state_after(max_attempts),
                    })
                    .collect(),
                full,
            ))
        })
    }
}

/// The expired claims, oldest lease first, but those of the `spare` tokens bound from `$2`:
/// a range of the lease-end index (`messages_lease` on SQLite, `message_queue_lease` on
/// PostgreSQL), never all the claimed rows. Without that index SQLite scanned the claimed
/// rows through `messages_claimed` (tried: about 1% fewer instructions a dispatched
/// message), but a forecast claims every stored message of the jobs it works out in memory,
/// with leases that never end, and reaps at every step of its replay: 100,000 such claims in
/// a store of 1,000,000 messages cost 70 ms a step instead of nothing.
fn reap_select(spare: usize, pg: bool) -> String {
    let spared = if spare == 0 {
        String::new()
    } else {
        format!(" AND m.claim_token NOT IN ({})", placeholders(2, spare))
    };
    format!(
        "SELECT m.id, m.claim_token, m.locked_by, m.attempts, m.tries, COALESCE(m.channel_plan, m.channel), m.address \
         FROM message_queue q JOIN messages m ON m.id = q.id \
         WHERE q.state = 'claimed' AND q.locked_until < $1 AND m.state = 'claimed' AND m.locked_until < $1{spared} \
         ORDER BY q.locked_until, q.id LIMIT {REAP_BATCH}{}",
        if pg {
            " FOR UPDATE OF m SKIP LOCKED"
        } else {
            ""
        }
    )
}

/// A claimed row whose lease ended, as the reaper read it (locked, on PostgreSQL).
struct Expired {
    id: String,
    token: String,
    node: String,
    /// Attempt log rows so far: the reaped one is number `attempts + 1`.
    attempts: i64,
    /// Tries so far (a try may fail over between gateways): what `max_attempts` bounds.
    tries: i64,
    channel: Option<String>,
    address: Option<String>,
}

impl Expired {
    fn state_after(&self, max_attempts: u32) -> MessageState {
        if self.tries + 1 >= i64::from(max_attempts) {
            MessageState::Failed
        } else {
            MessageState::Retrying
        }
    }

    /// What the attempt log says: the node, why, and that the customer may have it.
    fn detail(&self, by: &str) -> String {
        format!(
            "lease expired on node {} (the node stopped mid-send); the message may have been sent; \
             returned to the queue by {by}",
            self.node
        )
    }

    fn reason(&self, max_attempts: u32) -> String {
        match self.state_after(max_attempts) {
            MessageState::Failed => format!(
                "gave up after {} attempts; last: lease expired on node {} (it may have been sent)",
                self.tries + 1,
                self.node
            ),
            _ => format!(
                "lease expired on node {} (it may have been sent); attempt {} counted, retrying",
                self.node,
                self.tries + 1
            ),
        }
    }
}

/// The reaped rows' new state, only while the lease that expired still holds them (the same
/// token-checked update as a completion).
fn reap_update_sql(chunk: &[Expired], at: i64, max: u32, pg: bool) -> (String, Vec<Bind>) {
    let sql = format!(
        "WITH v (id, token, state, reason, attempts, tries, at) AS (VALUES {}) \
         {} messages SET state = v.state, reason = v.reason, attempts = v.attempts, tries = v.tries, updated_at = v.at, \
         claim_token = NULL, locked_by = NULL, locked_until = NULL \
         FROM v WHERE messages.id = v.id AND messages.state = 'claimed' AND messages.claim_token = v.token \
         RETURNING messages.id",
        values_rows(chunk.len(), 7, pg),
        update(pg)
    );
    let mut b = Vec::with_capacity(chunk.len() * 7);
    for e in chunk {
        b.push(Bind::Text(Some(e.id.clone())));
        b.push(Bind::Text(Some(e.token.clone())));
        b.push(Bind::Text(Some(e.state_after(max).as_str().into())));
        b.push(Bind::Text(Some(e.reason(max))));
        b.push(Bind::Int(Some(e.attempts + 1)));
        b.push(Bind::Int(Some(e.tries + 1)));
        b.push(Bind::Int(Some(at)));
    }
    (sql, b)
}

fn reap_attempts_sql(chunk: &[&Expired], at: i64, by: &str, pg: bool) -> (String, Vec<Bind>) {
    let sql = format!(
        "{} attempts (message_id, attempt, at, channel, address, outcome, code, detail, provider_id, node, duration_ms) VALUES {}",
        insert_into(pg),
        values_rows(chunk.len(), 11, pg)
    );
    let mut b = Vec::with_capacity(chunk.len() * 11);
    for e in chunk {
        b.push(Bind::Text(Some(e.id.clone())));
        b.push(Bind::Int(Some(e.attempts + 1)));
        b.push(Bind::Int(Some(at)));
        b.push(Bind::Text(Some(
            e.channel.clone().unwrap_or_else(|| "unknown".into()),
        )));
        b.push(Bind::Text(e.address.clone()));
        b.push(Bind::Text(Some(Outcome::Transient.as_str().into())));
        b.push(Bind::Int(None));
        b.push(Bind::Text(Some(e.detail(by))));
        b.push(Bind::Text(None));
        b.push(Bind::Text(Some(e.node.clone())));
        b.push(Bind::Int(None));
    }
    (sql, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reaper reads the expired leases as a range of `messages_lease`, then each row by
    /// its key: never every claimed row nor the table, which it would read at every step of
    /// a forecast (see [`reap_select`]).
    #[tokio::test]
    async fn the_reaper_reads_only_the_expired_leases_on_sqlite() {
        let binds = [Bind::Int(Some(0)), Bind::Text(Some("t".into()))];
        let plan = super::super::sql::plan_without_statistics(&reap_select(1, false), &binds).await;
        let reads: Vec<&String> = plan
            .iter()
            .filter(|l| l.starts_with("SCAN") || l.starts_with("SEARCH"))
            .collect();
        assert!(
            reads
                .iter()
                .any(|l| l.contains("USING INDEX messages_lease (locked_until<?)")),
            "{plan:#?}"
        );
        for l in reads {
            assert!(
                l.contains("USING INDEX messages_lease (locked_until<?)")
                    || l.contains("USING INDEX sqlite_autoindex_messages_1 (id=?)"),
                "a read of messages beyond the expired leases: {l}\n{plan:#?}"
            );
        }
    }
}
