//! Store reads and writes for clock-driven jobs: anniversary candidates by month-day,
//! recurring occurrences fired at most once, and audiences.

use super::sql::{Bind, bind_all, on_pool, placeholders};
use super::{NewMessage, Result, Store};
use crate::clock::{from_millis, to_millis};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};

/// A contact whose date field falls on one of the scanned month-days.
#[derive(Debug, Clone)]
pub struct AnniversaryRow {
    pub contact_id: String,
    pub timezone: Option<String>,
    /// `YYYY-MM-DD`
    pub date: String,
}

/// How the send-time check ends the reason it cancels a greeting with when the contact's
/// date changed: the one kind of cancelled greeting that planning the new day moves (any
/// other cancel — by support, a dropped cap — stays).
pub const MOVED_TO_NEW_DAY: &str = "planned for the new day instead";

impl Store {
    /// Contacts whose date `field` (`birthday`, `attributes.member_since`) falls on one of
    /// `month_days` (`MM-DD`), by index: one day's share of the contacts, not all of them.
    pub async fn anniversary_candidates(
        &self,
        field: &str,
        month_days: &[String],
    ) -> Result<Vec<AnniversaryRow>> {
        if month_days.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT d.contact_id, c.timezone, d.date FROM contact_dates d JOIN contacts c ON c.id = d.contact_id \
             WHERE d.field = $1 AND d.month_day IN ({})",
            placeholders(2, month_days.len())
        );
        let mut binds = vec![Bind::Text(Some(field.to_string()))];
        binds.extend(month_days.iter().map(|d| Bind::Text(Some(d.clone()))));
        on_pool!(self, |pool, _b| {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(AnniversaryRow {
                        contact_id: r.try_get(0)?,
                        timezone: r.try_get(1)?,
                        date: r.try_get(2)?,
                    })
                })
                .collect()
        })
    }

    /// Plan anniversary greetings. A greeting not yet sent whose contact's date (or time
    /// zone) changed moves to the new time, even if the send-time check cancelled it for the
    /// change ([`MOVED_TO_NEW_DAY`]); one already sent this year stays the only one, and so
    /// does one cancelled otherwise (by support, a dropped cap). The change is told by the
    /// planned window's end (`not_after`, the greeting's time plus the grace), which
    /// deferrals (quiet hours, caps) leave alone while they move `due_at`. Returns how many
    /// rows were added or moved.
    pub async fn upsert_anniversaries(
        &self,
        messages: &[NewMessage],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        if messages.is_empty() {
            return Ok(0);
        }
        // In key order: two nodes planning the same day's greetings lock the same rows in
        // the same order, so they queue behind each other instead of deadlocking.
        let mut ordered: Vec<&NewMessage> = messages.iter().collect();
        ordered.sort_by(|a, b| (&a.job_id, &a.dedupe_key).cmp(&(&b.job_id, &b.dedupe_key)));
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let mut n = 0;
            for m in &ordered {
                n += sqlx::query(
                    "INSERT INTO messages (id, job_id, contact_id, event_id, step, dedupe_key, template, state, due_at, not_after, reason, created_at, updated_at, class, token, channel_plan, variant) \
                     VALUES ($1, $2, $3, NULL, 0, $4, $5, $11, $6, $7, $12, $8, $8, $9, $10, NULL, $13) \
                     ON CONFLICT (job_id, dedupe_key, step) DO UPDATE SET due_at = excluded.due_at, not_after = excluded.not_after, \
                     state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at \
                     WHERE messages.sent_at IS NULL AND messages.not_after IS DISTINCT FROM excluded.not_after \
                     AND (messages.state IN ('scheduled', 'retrying') OR (messages.state = 'cancelled' AND messages.reason LIKE $14))",
                )
                .bind(&m.id)
                .bind(&m.job_id)
                .bind(&m.contact_id)
                .bind(&m.dedupe_key)
                .bind(&m.template)
                .bind(to_millis(m.due_at))
                .bind(m.not_after.map(to_millis))
                .bind(to_millis(now))
                .bind(m.class.as_str())
                .bind(&m.token)
                .bind(m.state.as_str())
                .bind(&m.reason)
                .bind(&m.variant)
                .bind(format!("%{MOVED_TO_NEW_DAY}"))
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
            }
            tx.commit().await?;
            Ok(n)
        })
    }

    /// Which of `keys` (dedupe keys of `job_id`'s first step) the store holds a message for,
    /// in any state.
    pub async fn stored_keys(
        &self,
        job_id: &str,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        for chunk in keys.chunks(500) {
            let sql = format!(
                "SELECT dedupe_key FROM messages WHERE job_id = $1 AND step = 0 AND dedupe_key IN ({})",
                placeholders(2, chunk.len())
            );
            let mut binds = vec![Bind::Text(Some(job_id.to_string()))];
            binds.extend(chunk.iter().map(|k| Bind::Text(Some(k.clone()))));
            let found: Vec<String> = on_pool!(self, |pool, _b| {
                let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok(r.try_get(0)?))
                    .collect::<Result<Vec<_>>>()
            })?;
            out.extend(found);
        }
        Ok(out)
    }

    /// The occurrence a recurring job last fired for.
    pub async fn last_fire(&self, job_id: &str) -> Result<Option<DateTime<Utc>>> {
        on_pool!(self, |pool, _b| {
            let v: Option<i64> =
                sqlx::query_scalar("SELECT last_fire_at FROM recurring WHERE job_id = $1")
                    .bind(job_id)
                    .fetch_optional(pool)
                    .await?;
            Ok(v.map(from_millis))
        })
    }

    /// Record `occurrence` as fired for `job_id` and insert its messages, in one transaction,
    /// only if no process recorded this or a later occurrence first. Returns `None` when
    /// another process (or an earlier run) got there first: an occurrence fires once.
    pub async fn fire_occurrence(
        &self,
        job_id: &str,
        occurrence: DateTime<Utc>,
        messages: &[NewMessage],
        now: DateTime<Utc>,
    ) -> Result<Option<usize>> {
        let mut tx = self.begin().await?;
        if !tx.advance_recurring(job_id, occurrence, now).await? {
            return Ok(None);
        }
        // Multi-row INSERTs: an audience of thousands is a few statements, not one each.
        let n = tx.insert_messages(messages, now).await?.len();
        tx.commit().await?;
        Ok(Some(n))
    }
}

impl super::Tx {
    /// Move a recurring job's last fire time forward to `occurrence`; `false` if it was
    /// already there or later.
    pub async fn advance_recurring(
        &mut self,
        job_id: &str,
        occurrence: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        super::on_tx!(self, |conn| {
            let n = sqlx::query(
                "INSERT INTO recurring (job_id, last_fire_at, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (job_id) DO UPDATE SET last_fire_at = excluded.last_fire_at, updated_at = excluded.updated_at \
                 WHERE recurring.last_fire_at < excluded.last_fire_at",
            )
            .bind(job_id)
            .bind(to_millis(occurrence))
            .bind(to_millis(now))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }
}
