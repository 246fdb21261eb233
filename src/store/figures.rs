//! The figures the console's health page draws: sends and failures of the last minutes (by
//! index on `attempts.at`). Campaign funnels and NPS are the reports' (`store/reports.rs`).

use super::sql::on_pool;
use super::{Result, Store};
use crate::clock::to_millis;
use chrono::{DateTime, Utc};
use sqlx::Row;

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
}
