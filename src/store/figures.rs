//! The figures the console's campaign and health pages draw: a job's funnel over a period
//! (by index on `(job_id, due_at)`, one job at a time), sends and failures of the last
//! minutes (by index on `attempts.at`), and survey scores from whatever the store holds.

use super::sql::on_pool;
use super::{Result, Store};
use crate::clock::{from_millis, to_millis};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// One job's messages due in a period, by what became of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunnelRow {
    /// Every message planned (due in the period), callback tasks included.
    pub planned: i64,
    pub sent: i64,
    /// Sent SMS whose receipt said delivered.
    pub delivered: i64,
    /// Sent SMS whose receipt said undelivered.
    pub undelivered: i64,
    pub failed: i64,
    /// Waiting: scheduled, retrying, claimed or open.
    pub pending: i64,
    /// Contacts who did the job's `stop_when` event after a first message was sent to them.
    pub converted: Option<i64>,
    /// Cancelled messages by their reason, as written.
    pub cancelled: Vec<(String, i64)>,
}

impl FunnelRow {
    pub fn cancelled_total(&self) -> i64 {
        self.cancelled.iter().map(|(_, n)| n).sum()
    }
}

/// What the health page reads from the store.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Attempts accepted in each of the last minutes, oldest first.
    pub sent_per_minute: Vec<i64>,
    /// Failed attempts since the start of the period: (channel, outcome, detail, count),
    /// most frequent first.
    pub failures: Vec<(String, String, String, i64)>,
}

impl Store {
    /// The funnel of `job` over messages due from `since` to `until`. `stop_event`: the job's
    /// `stop_when` event type, which counts as converting.
    pub async fn funnel(
        &self,
        job: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        stop_event: Option<&str>,
    ) -> Result<FunnelRow> {
        let (from, to) = (to_millis(since), to_millis(until));
        on_pool!(self, |pool, _b| {
            let mut f = FunnelRow::default();
            let rows = sqlx::query(
                "SELECT state, delivery, COUNT(*) FROM messages WHERE job_id = $1 AND due_at >= $2 AND due_at < $3 \
                 GROUP BY state, delivery",
            )
            .bind(job)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?;
            for r in &rows {
                let state: String = r.try_get(0)?;
                let delivery: Option<String> = r.try_get(1)?;
                let n: i64 = r.try_get(2)?;
                f.planned += n;
                match state.as_str() {
                    "sent" => {
                        f.sent += n;
                        match delivery.as_deref() {
                            Some("delivered") => f.delivered += n,
                            Some("undelivered") => f.undelivered += n,
                            _ => {}
                        }
                    }
                    "failed" => f.failed += n,
                    "cancelled" => {}
                    _ => f.pending += n,
                }
            }
            let rows = sqlx::query(
                "SELECT COALESCE(reason, ''), COUNT(*) FROM messages WHERE job_id = $1 AND due_at >= $2 AND due_at < $3 \
                 AND state = 'cancelled' GROUP BY reason ORDER BY 2 DESC",
            )
            .bind(job)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?;
            for r in &rows {
                f.cancelled.push((r.try_get(0)?, r.try_get(1)?));
            }
            if let Some(stop) = stop_event {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(DISTINCT m.contact_id) FROM messages m WHERE m.job_id = $1 AND m.due_at >= $2 AND m.due_at < $3 \
                     AND m.state = 'sent' AND m.step = 0 AND EXISTS (SELECT 1 FROM events e WHERE e.contact_id = m.contact_id \
                     AND e.type = $4 AND e.occurred_at >= m.sent_at)",
                )
                .bind(job)
                .bind(from)
                .bind(to)
                .bind(stop)
                .fetch_one(pool)
                .await?;
                f.converted = Some(n);
            }
            Ok(f)
        })
    }

    /// Sends per minute over the last `minutes` before `now`, and the failures of that span.
    pub async fn figures(&self, now: DateTime<Utc>, minutes: i64) -> Result<Figures> {
        let since = to_millis(now) - minutes * 60_000;
        on_pool!(self, |pool, _b| {
            let mut f = Figures {
                sent_per_minute: vec![0; usize::try_from(minutes).unwrap_or(0)],
                ..Default::default()
            };
            let rows = sqlx::query(
                "SELECT (at - $1) / 60000, COUNT(*) FROM attempts WHERE at >= $1 AND at < $2 AND outcome = 'sent' GROUP BY 1",
            )
            .bind(since)
            .bind(to_millis(now))
            .fetch_all(pool)
            .await?;
            for r in &rows {
                let minute: i64 = r.try_get(0)?;
                if let Some(slot) = usize::try_from(minute)
                    .ok()
                    .and_then(|m| f.sent_per_minute.get_mut(m))
                {
                    *slot += r.try_get::<i64, _>(1)?;
                }
            }
            let rows = sqlx::query(
                "SELECT channel, outcome, COALESCE(detail, ''), COUNT(*) FROM attempts WHERE at >= $1 AND outcome <> 'sent' \
                 GROUP BY channel, outcome, detail ORDER BY 4 DESC LIMIT 20",
            )
            .bind(since)
            .fetch_all(pool)
            .await?;
            for r in &rows {
                f.failures
                    .push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
            }
            Ok(f)
        })
    }

    /// NPS scores (0-10) for `job` answered since `since`, with when: from the `answers`
    /// table where the store has one (survey answers), else from `survey.answered` events
    /// whose data names the job. The second item says which source answered (`None`: the
    /// store has neither).
    pub async fn survey_scores(
        &self,
        job: &str,
        since: DateTime<Utc>,
    ) -> Result<(Vec<(DateTime<Utc>, i64)>, Option<&'static str>)> {
        let has_answers = self.tables().await?.iter().any(|t| t == "answers");
        if has_answers {
            let rows: Vec<(i64, i64)> = on_pool!(self, |pool, _b| {
                sqlx::query_as(
                    "SELECT answered_at, score FROM answers WHERE job_id = $1 AND scale = 'nps' AND answered_at >= $2 ORDER BY answered_at",
                )
                .bind(job)
                .bind(to_millis(since))
                .fetch_all(pool)
                .await?
            });
            return Ok((
                rows.into_iter().map(|(t, s)| (from_millis(t), s)).collect(),
                Some("answers"),
            ));
        }
        let rows: Vec<(i64, String)> = on_pool!(self, |pool, _b| {
            sqlx::query_as(
                "SELECT occurred_at, data FROM events WHERE type = 'survey.answered' AND occurred_at >= $1 ORDER BY occurred_at",
            )
            .bind(to_millis(since))
            .fetch_all(pool)
            .await?
        });
        let mut out = Vec::new();
        for (at, data) in rows {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) else {
                continue;
            };
            let for_job = v.get("job").and_then(|j| j.as_str()) == Some(job);
            let nps = v
                .get("scale")
                .and_then(|s| s.as_str())
                .is_none_or(|s| s == "nps");
            if let Some(score) = v.get("score").and_then(|s| s.as_i64())
                && for_job
                && nps
                && (0..=10).contains(&score)
            {
                out.push((from_millis(at), score));
            }
        }
        let source = (!out.is_empty()).then_some("events");
        Ok((out, source))
    }
}
