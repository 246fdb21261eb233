//! The purge: records past their retention (`retention:`) leave the store, in small
//! batches, and the figures reports need stay behind as daily counts.
//!
//! What goes, each kind by its own clock:
//!
//! - **messages** finished (sent, failed, cancelled, held out) and neither created nor changed within
//!   `retention.messages`, with their attempts and receipts. Before they go, their counts are
//!   added to `daily_counts` in the same transaction (day, job, step, variant, channel,
//!   outcome), so `report daily` reads the same figures after the purge as before it
//!   ([`Store::daily_counts`] adds both up). Pending messages are never purged.
//! - **attempts** (with their receipts) made longer than `retention.attempts` ago.
//! - **events** that occurred longer than `retention.events` ago, unless a pending message
//!   still needs them (its template renders `event.data`, its `stop_when` compares it);
//!   finished messages that referred to one keep their row without the reference.
//! - **content**: the `data` of events older than `retention.content` is emptied (`{}`);
//!   the event, its type, time and `order_id` stay for `had_event`, `stop_when` and
//!   `logs --order`. Again not while a pending message needs it. The words of the messages
//!   sent that long ago (`attempts.content`, what the console shows support) go too; the
//!   message and its attempts stay.
//! - **replies** received longer than `retention.replies` ago.
//! - **bounces** and complaints received longer than `retention.bounces` ago, with their
//!   raw reports, and the suppression list's history of changes made before then. The
//!   suppressions themselves stay (see below); a soft-bounce count only looks back days.
//!
//! Contacts and the suppression list are not purged by age: a contact leaves by erasure
//! (`contact erase`), and a suppression must outlive everything.
//!
//! Each batch is one short transaction that finds its rows by index, so dispatch and
//! ingest wait for a batch at most, never for the whole purge. On PostgreSQL several daemons
//! share the store and one of them purges each day: [`Store::claim_housekeeping`] is a
//! conditional update that only one node wins (as `recurring` does for cron occurrences).
//! Whether a retention is long enough for the jobs' windows is `validate`'s concern
//! (`jobs::retention`).

use super::sql::{Bind, bind_all, on_pool, placeholders, values_rows};
use super::{Kept, Pool, Result, Retention, Store};
use crate::clock::{from_millis, to_millis};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{AssertSqlSafe, Row};
use std::collections::BTreeMap;
use std::time::Duration;

/// Message states nothing will change any more (an admin's retry aside).
const FINAL: &str = "('sent', 'failed', 'cancelled', 'held_out')";

/// An event no pending message needs (its template renders `event.data`, its `stop_when`
/// compares it): the condition of both the events' purge and the contents' purge.
fn unneeded_events() -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM messages m WHERE m.event_id = events.id AND m.state NOT IN {FINAL})"
    )
}

/// A batch of events of type `$1` older than `$2` that no pending message needs, oldest
/// first, `$3` at most: read from `events_type_time` in its order.
fn old_events_sql() -> String {
    format!(
        "SELECT id FROM events WHERE type = $1 AND occurred_at < $2 AND {} ORDER BY occurred_at LIMIT $3",
        unneeded_events()
    )
}

/// Rows per purge transaction unless the caller says otherwise.
pub const PURGE_BATCH: usize = 500;

/// What one purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    pub messages: u64,
    pub attempts: u64,
    pub receipts: u64,
    pub events: u64,
    /// Events whose `data` was emptied (`retention.content`).
    pub contents: u64,
    /// Sent messages' stored subject and text removed (`retention.content`, or with their
    /// message).
    pub texts: u64,
    pub replies: u64,
    /// Bounces and complaints (`retention.bounces`).
    pub bounces: u64,
    /// Entries of the suppression list's history (`retention.bounces`).
    pub suppression_changes: u64,
    /// Transactions it took.
    pub batches: u64,
}

impl Purged {
    /// (what, how many) in the order of the log line and the metric's labels.
    pub fn items(&self) -> [(&'static str, u64); 9] {
        [
            ("messages", self.messages),
            ("attempts", self.attempts),
            ("receipts", self.receipts),
            ("events", self.events),
            ("contents", self.contents),
            ("texts", self.texts),
            ("replies", self.replies),
            ("bounces", self.bounces),
            ("suppression_changes", self.suppression_changes),
        ]
    }

    pub fn total(&self) -> u64 {
        self.items().iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Display for Purged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages, {} attempts, {} receipts, {} events, {} event payloads emptied, {} message texts, {} replies, {} bounces, {} suppression changes in {} batch(es)",
            self.messages,
            self.attempts,
            self.receipts,
            self.events,
            self.contents,
            self.texts,
            self.replies,
            self.bounces,
            self.suppression_changes,
            self.batches
        )
    }
}

/// Messages of one job, step, variant and channel with one outcome on one UTC day: the
/// unit of the figures that survive the purge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema)]
pub struct DailyCount {
    /// The UTC day (YYYY-MM-DD) it was sent, or finished without a send.
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    pub job_id: String,
    pub step: i64,
    /// The A/B variant's name; `None` for none.
    pub variant: Option<String>,
    /// The channel it went (or was to go) through; empty when none was chosen.
    pub channel: String,
    /// `sent`, `failed`, `cancelled`; `delivered` and `undelivered` count sent SMS again by
    /// their carrier's receipt.
    pub outcome: String,
    pub n: i64,
}

/// The key of a [`DailyCount`] without its number.
type CountKey = (NaiveDate, String, i64, Option<String>, String, String);

const DAY_MS: i64 = 86_400_000;

fn day_of(ms: i64) -> NaiveDate {
    from_millis(ms).date_naive()
}

/// Add `n` finished messages of one kind to `counts`: their outcome, and their receipts'
/// verdict if any. `day` is the UTC day of the outcome (sent_at, else the last update).
fn count_messages(
    counts: &mut BTreeMap<CountKey, i64>,
    day: NaiveDate,
    row: (
        String,
        i64,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
    ),
    n: i64,
) {
    let (job, step, variant, channel, state, delivery) = row;
    let channel = channel.unwrap_or_default();
    *counts
        .entry((
            day,
            job.clone(),
            step,
            variant.clone(),
            channel.clone(),
            state,
        ))
        .or_default() += n;
    if let Some(d) = delivery {
        *counts
            .entry((day, job, step, variant, channel, d))
            .or_default() += n;
    }
}

/// The row id of a count: its key joined by `|` (job ids, steps, variant names, channels
/// and outcomes hold no `|`).
fn count_id(k: &CountKey) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        k.0,
        k.1,
        k.2,
        k.3.as_deref().unwrap_or(""),
        k.4,
        k.5
    )
}

/// A statement and its binds.
pub(super) type Statement = (String, Vec<Bind>);

/// The statements that add `counts` to `daily_counts` (an upsert per chunk of rows).
fn add_counts_sql(counts: BTreeMap<CountKey, i64>, pg: bool) -> Vec<Statement> {
    let counts: Vec<(CountKey, i64)> = counts.into_iter().collect();
    counts
        .chunks(super::CHUNK)
        .map(|chunk| {
            let sql = format!(
                "INSERT INTO daily_counts (id, day, job_id, step, variant, channel, outcome, n) VALUES {} \
                 ON CONFLICT (id) DO UPDATE SET n = daily_counts.n + excluded.n",
                values_rows(chunk.len(), 8, pg)
            );
            let mut binds = Vec::with_capacity(chunk.len() * 8);
            for (k, n) in chunk {
                binds.push(Bind::Text(Some(count_id(k))));
                binds.push(Bind::Text(Some(k.0.to_string())));
                binds.push(Bind::Text(Some(k.1.clone())));
                binds.push(Bind::Int(Some(k.2)));
                binds.push(Bind::Text(k.3.clone()));
                binds.push(Bind::Text(Some(k.4.clone())));
                binds.push(Bind::Text(Some(k.5.clone())));
                binds.push(Bind::Int(Some(*n)));
            }
            (sql, binds)
        })
        .collect()
}

/// What `DELETE FROM messages ... RETURNING` gives back for counting: id, job_id, step,
/// channel, state, delivery, sent_at, updated_at, variant.
pub(super) const COUNTED_COLUMNS: &str =
    "id, job_id, step, channel, state, delivery, sent_at, updated_at, variant";

/// Read rows of [`COUNTED_COLUMNS`]: their ids, and the statements that add them to
/// `daily_counts`. `pending_as` counts messages that were not finished with that outcome
/// on `today` (an erasure cancels them).
pub(super) fn count_deleted<R: Row>(
    rows: &[R],
    pg: bool,
    today: i64,
) -> Result<(Vec<Bind>, Vec<Statement>)>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let mut ids = Vec::with_capacity(rows.len());
    let mut counts: BTreeMap<CountKey, i64> = BTreeMap::new();
    for r in rows {
        ids.push(Bind::Text(Some(r.try_get(0)?)));
        let state: String = r.try_get(4)?;
        let finished = matches!(state.as_str(), "sent" | "failed" | "cancelled" | "held_out");
        let sent_at: Option<i64> = r.try_get(6)?;
        let day = if finished {
            day_of(sent_at.unwrap_or(r.try_get(7)?))
        } else {
            day_of(today)
        };
        let state = if finished { state } else { "cancelled".into() };
        count_messages(
            &mut counts,
            day,
            (
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(8)?,
                r.try_get(3)?,
                state,
                r.try_get(5)?,
            ),
            1,
        );
    }
    Ok((ids, add_counts_sql(counts, pg)))
}

impl Store {
    /// Whether this node runs `task` now: `true` for exactly one caller per `every`, across
    /// processes and nodes (the conditional update of the `housekeeping` row).
    pub async fn claim_housekeeping(
        &self,
        task: &str,
        node: &str,
        now: DateTime<Utc>,
        every: Duration,
    ) -> Result<bool> {
        let due_before = to_millis(now) - i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
        on_pool!(self, |pool, _b| {
            let n = sqlx::query(
                "INSERT INTO housekeeping (task, last_run_at, node) VALUES ($1, $2, $3) \
                 ON CONFLICT (task) DO UPDATE SET last_run_at = excluded.last_run_at, node = excluded.node \
                 WHERE housekeeping.last_run_at <= $4",
            )
            .bind(task)
            .bind(to_millis(now))
            .bind(node)
            .bind(due_before)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// Give back `node`'s claim of `task` made at `claimed_at` so that it is due again
    /// `after` from then (a purge that failed half-way would otherwise wait a day, and its
    /// later kinds with it). Another node's claim since is left alone.
    pub async fn retry_housekeeping(
        &self,
        task: &str,
        node: &str,
        claimed_at: DateTime<Utc>,
        every: Duration,
        after: Duration,
    ) -> Result<()> {
        let span = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        let due_at = to_millis(claimed_at) - span(every) + span(after);
        on_pool!(self, |pool, _b| {
            sqlx::query(
                "UPDATE housekeeping SET last_run_at = $4 WHERE task = $1 AND node = $2 AND last_run_at = $3",
            )
            .bind(task)
            .bind(node)
            .bind(to_millis(claimed_at))
            .bind(due_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Remove what is past `retention` at `now`, `batch` rows per transaction, resting
    /// `pause` between transactions so that other writers go first.
    pub async fn purge(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
        batch: usize,
        pause: Duration,
    ) -> Result<Purged> {
        let batch = batch.max(1);
        let cutoff = |k: Kept| {
            retention
                .of(k)
                .map(|d| to_millis(now) - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
        };
        let mut out = Purged::default();
        let rest = || async {
            if pause.is_zero() {
                tokio::task::yield_now().await
            } else {
                tokio::time::sleep(pause).await
            }
        };
        // Each kind goes in transactions of `batch` rows until one finds fewer: `$step`
        // removes one batch, adds it to `out`, and gives how many rows it found.
        macro_rules! in_batches {
            ($step:expr) => {
                loop {
                    out.batches += 1;
                    let found: u64 = $step;
                    if found < batch as u64 {
                        break;
                    }
                    rest().await;
                }
            };
        }
        if let Some(cut) = cutoff(Kept::Messages) {
            in_batches!({
                let (messages, attempts, receipts) = self.purge_messages(cut, batch).await?;
                out.messages += messages;
                out.attempts += attempts;
                out.receipts += receipts;
                messages
            });
        }
        if let Some(cut) = cutoff(Kept::Attempts) {
            in_batches!({
                let (found, attempts, receipts) = self.purge_attempts(cut, batch).await?;
                out.attempts += attempts;
                out.receipts += receipts;
                found as u64
            });
        }
        if let Some(cut) = cutoff(Kept::Events) {
            // Type by type, each by `events_type_time` (schema v19 dropped the index of
            // events by time alone, which only this read, to spare every event its entry).
            let mut after = None;
            while let Some(ty) = self.next_event_type(after.as_deref()).await? {
                in_batches!({
                    let (found, events) = self.purge_events(&ty, cut, batch).await?;
                    out.events += events;
                    found as u64
                });
                after = Some(ty);
            }
        }
        if let Some(cut) = cutoff(Kept::Content) {
            in_batches!({
                let n = self.purge_contents(cut, batch).await?;
                out.contents += n;
                n
            });
            in_batches!({
                let n = self.purge_answer_comments(cut, batch).await?;
                out.contents += n;
                n
            });
            in_batches!({
                let n = self.purge_texts(cut, batch).await?;
                out.texts += n;
                n
            });
        }
        if let Some(cut) = cutoff(Kept::Replies) {
            in_batches!({
                let n = self.purge_replies(cut, batch).await?;
                out.replies += n;
                n
            });
        }
        if let Some(cut) = cutoff(Kept::Bounces) {
            in_batches!({
                let n = self
                    .purge_by_time("bounces", "received_at", cut, batch)
                    .await?;
                out.bounces += n;
                n
            });
            in_batches!({
                let n = self
                    .purge_by_time("suppression_changes", "at", cut, batch)
                    .await?;
                out.suppression_changes += n;
                n
            });
        }
        Ok(out)
    }

    /// One batch of finished messages, their attempts and receipts, counted into
    /// `daily_counts` first. Returns (messages, attempts, receipts) removed.
    async fn purge_messages(&self, cut: i64, batch: usize) -> Result<(u64, u64, u64)> {
        let pg = matches!(self.pool, Pool::Postgres(_));
        // The outer conditions again: on PostgreSQL a row an admin retried meanwhile is
        // re-checked against them, not only against its id.
        let delete = format!(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < $1 AND updated_at < $1 \
             AND state IN {FINAL} ORDER BY created_at LIMIT $2) AND updated_at < $1 AND state IN {FINAL} \
             RETURNING {COUNTED_COLUMNS}"
        );
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let rows = sqlx::query(AssertSqlSafe(delete))
                .bind(cut)
                .bind(batch as i64)
                .fetch_all(&mut *tx)
                .await?;
            if rows.is_empty() {
                tx.commit().await?;
                return Ok((0, 0, 0));
            }
            let (ids, add) = count_deleted(&rows, pg, 0)?;
            let list = placeholders(1, ids.len());
            let receipts = bind_all!(
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM receipts WHERE message_id IN ({list})"
                ))),
                &ids
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let attempts = bind_all!(
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM attempts WHERE message_id IN ({list})"
                ))),
                &ids
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            for (sql, binds) in add {
                bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok((rows.len() as u64, attempts, receipts))
        })
    }

    /// One batch of old attempts and their receipts. Returns (attempts looked at, attempts
    /// removed, receipts removed).
    async fn purge_attempts(&self, cut: i64, batch: usize) -> Result<(usize, u64, u64)> {
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let found: Vec<String> = sqlx::query_scalar(
                "SELECT message_id FROM attempts WHERE at < $1 ORDER BY at LIMIT $2",
            )
            .bind(cut)
            .bind(batch as i64)
            .fetch_all(&mut *tx)
            .await?;
            let mut ids = found.clone();
            ids.sort();
            ids.dedup();
            if ids.is_empty() {
                tx.commit().await?;
                return Ok((0, 0, 0));
            }
            let mut binds = vec![Bind::Int(Some(cut))];
            binds.extend(ids.into_iter().map(|i| Bind::Text(Some(i))));
            let list = placeholders(2, binds.len() - 1);
            let receipts = bind_all!(
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM receipts WHERE message_id IN ({list}) AND attempt IN \
                     (SELECT a.attempt FROM attempts a WHERE a.message_id = receipts.message_id AND a.at < $1)"
                ))),
                &binds
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let attempts = bind_all!(
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM attempts WHERE message_id IN ({list}) AND at < $1"
                ))),
                &binds
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok((found.len(), attempts, receipts))
        })
    }

    /// The first event type stored after `after` (the first of all for `None`): one step
    /// down `events_type_time` on both stores, however many events each type has.
    async fn next_event_type(&self, after: Option<&str>) -> Result<Option<String>> {
        on_pool!(self, |pool, _b| {
            Ok(match after {
                None => {
                    sqlx::query_scalar("SELECT MIN(type) FROM events")
                        .fetch_one(pool)
                        .await?
                }
                Some(t) => {
                    sqlx::query_scalar("SELECT MIN(type) FROM events WHERE type > $1")
                        .bind(t)
                        .fetch_one(pool)
                        .await?
                }
            })
        })
    }

    /// One batch of old events of type `ty` no pending message needs; finished messages
    /// that referred to them keep their row without the reference. Returns (events found,
    /// events removed).
    async fn purge_events(&self, ty: &str, cut: i64, batch: usize) -> Result<(usize, u64)> {
        let unneeded = unneeded_events();
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(old_events_sql()))
                .bind(ty)
                .bind(cut)
                .bind(batch as i64)
                .fetch_all(&mut *tx)
                .await?;
            if ids.is_empty() {
                tx.commit().await?;
                return Ok((0, 0));
            }
            let binds: Vec<Bind> = ids.iter().map(|i| Bind::Text(Some(i.clone()))).collect();
            let list = placeholders(1, binds.len());
            bind_all!(
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE messages SET event_id = NULL WHERE event_id IN ({list}) AND state IN {FINAL}"
                ))),
                &binds
            )
            .execute(&mut *tx)
            .await?;
            let n = bind_all!(
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM events WHERE id IN ({list}) AND {unneeded}"
                ))),
                &binds
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok((ids.len(), n))
        })
    }

    /// Empty the `data` of one batch of old events no pending message needs.
    async fn purge_contents(&self, cut: i64, batch: usize) -> Result<u64> {
        // `data <> '{}'` exactly as the partial index `events_content` says, so the batch
        // reads only payloads still to empty.
        let sql = format!(
            "UPDATE events SET data = '{{}}' WHERE id IN (SELECT id FROM events WHERE data <> '{{}}' AND occurred_at < $1 \
             AND {} ORDER BY occurred_at LIMIT $2) AND data <> '{{}}'",
            unneeded_events()
        );
        on_pool!(self, |pool, _b| {
            Ok(sqlx::query(AssertSqlSafe(sql))
                .bind(cut)
                .bind(batch as i64)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    /// Survey comments are the person's own words, content like an event's data: they go
    /// with it; the score stays for the NPS and CSAT figures.
    async fn purge_answer_comments(&self, cut: i64, batch: usize) -> Result<u64> {
        on_pool!(self, |pool, _b| {
            Ok(sqlx::query(
                "UPDATE answers SET comment = NULL WHERE message_id IN (SELECT message_id FROM answers \
                 WHERE comment IS NOT NULL AND answered_at < $1 ORDER BY answered_at LIMIT $2)",
            )
            .bind(cut)
            .bind(batch as i64)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// One batch of sent messages' stored words, emptied from their attempts (by the partial
    /// index `attempts_content_at`, which holds only attempts that still keep words).
    async fn purge_texts(&self, cut: i64, batch: usize) -> Result<u64> {
        on_pool!(self, |pool, _b| {
            Ok(sqlx::query(
                "UPDATE attempts SET content = NULL WHERE (message_id, attempt) IN (SELECT message_id, attempt \
                 FROM attempts WHERE content IS NOT NULL AND at < $1 ORDER BY at LIMIT $2)",
            )
            .bind(cut)
            .bind(batch as i64)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// One batch of the oldest rows of `table` (ours: `bounces`, `suppression_changes`)
    /// whose `column` is before `cut`, found by that column's index.
    async fn purge_by_time(
        &self,
        table: &'static str,
        column: &'static str,
        cut: i64,
        batch: usize,
    ) -> Result<u64> {
        let sql = format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {column} < $1 ORDER BY {column} LIMIT $2)"
        );
        on_pool!(self, |pool, _b| {
            Ok(sqlx::query(AssertSqlSafe(sql))
                .bind(cut)
                .bind(batch as i64)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    async fn purge_replies(&self, cut: i64, batch: usize) -> Result<u64> {
        on_pool!(self, |pool, _b| {
            Ok(sqlx::query(
                "DELETE FROM replies WHERE id IN (SELECT id FROM replies WHERE received_at < $1 ORDER BY received_at LIMIT $2)",
            )
            .bind(cut)
            .bind(batch as i64)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// Finished messages per UTC day from `from` to `to` (inclusive), by job, step,
    /// variant, channel and outcome: the counts the purge kept plus the messages still
    /// stored, so the figures are the same before and after a purge.
    pub async fn daily_counts(
        &self,
        job: Option<&str>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyCount>> {
        let start = from
            .and_hms_opt(0, 0, 0)
            .map(|t| to_millis(t.and_utc()))
            .unwrap_or(0);
        let end = to
            .and_hms_opt(0, 0, 0)
            .map(|t| to_millis(t.and_utc()) + DAY_MS)
            .unwrap_or(i64::MAX);
        let mut counts: BTreeMap<CountKey, i64> = BTreeMap::new();
        // Both reads in one snapshot: a purge or an erasure moving messages into the kept
        // counts between them was counted by neither (SQLite's deferred transaction keeps
        // the snapshot of its first read; PostgreSQL needs REPEATABLE READ for that).
        let begin = match self.pool {
            super::Pool::Postgres(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            super::Pool::Sqlite(_) => "BEGIN",
        };
        on_pool!(self, |pool, _b| {
            let mut tx = pool.begin_with(begin).await?;
            let kept = sqlx::query(
                "SELECT day, job_id, step, variant, channel, outcome, n FROM daily_counts \
                 WHERE day >= $1 AND day <= $2 AND ($3 IS NULL OR job_id = $3)",
            )
            .bind(from.to_string())
            .bind(to.to_string())
            .bind(job)
            .fetch_all(&mut *tx)
            .await?;
            for r in kept {
                let day: String = r.try_get(0)?;
                let Ok(day) = NaiveDate::parse_from_str(&day, "%Y-%m-%d") else {
                    continue;
                };
                *counts
                    .entry((
                        day,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                    ))
                    .or_default() += r.try_get::<i64, _>(6)?;
            }
            // Integer division by a day's milliseconds is the UTC day number on both
            // backends (no date functions, which the dialects spell differently).
            let live = sqlx::query(AssertSqlSafe(format!(
                "SELECT COALESCE(sent_at, updated_at) / {DAY_MS}, job_id, step, channel, state, delivery, COUNT(*), variant \
                 FROM messages WHERE state IN {FINAL} AND COALESCE(sent_at, updated_at) >= $1 \
                 AND COALESCE(sent_at, updated_at) < $2 AND ($3 IS NULL OR job_id = $3) \
                 GROUP BY COALESCE(sent_at, updated_at) / {DAY_MS}, job_id, step, channel, state, delivery, variant"
            )))
            .bind(start)
            .bind(end)
            .bind(job)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            for r in live {
                let day = day_of(r.try_get::<i64, _>(0)? * DAY_MS);
                count_messages(
                    &mut counts,
                    day,
                    (
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(7)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                    ),
                    r.try_get(6)?,
                );
            }
        });
        Ok(counts
            .into_iter()
            .map(
                |((day, job_id, step, variant, channel, outcome), n)| DailyCount {
                    day,
                    job_id,
                    step,
                    variant,
                    channel,
                    outcome,
                    n,
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::sql::plan_without_statistics;
    use super::*;

    /// Since v19 dropped `events_time`, the purge reads events by `events_type_time`: the
    /// next type is one step down the index, and a type's old events come in the index's
    /// order, so a batch reads its rows and stops: no scan of every event, no sort of every
    /// old one, on a store without statistics (as every store is).
    #[tokio::test]
    async fn old_events_are_read_type_by_type_from_their_index() {
        let ty = || Bind::Text(Some("order.delivered".into()));
        let plans = [
            plan_without_statistics("SELECT MIN(type) FROM events", &[]).await,
            plan_without_statistics("SELECT MIN(type) FROM events WHERE type > $1", &[ty()]).await,
            plan_without_statistics(
                &old_events_sql(),
                &[
                    ty(),
                    Bind::Int(Some(1_780_000_000_000)),
                    Bind::Int(Some(500)),
                ],
            )
            .await,
        ];
        for (plan, step) in plans.iter().zip([
            "SEARCH events USING COVERING INDEX events_type_time",
            "SEARCH events USING COVERING INDEX events_type_time (type>?)",
            "SEARCH events USING INDEX events_type_time (type=? AND occurred_at<?)",
        ]) {
            assert!(plan.iter().any(|l| l == step), "`{step}`: {plan:#?}");
            for never in ["SCAN", "TEMP B-TREE"] {
                assert!(
                    !plan.iter().any(|l| l.contains(never)),
                    "{never}: {plan:#?}"
                );
            }
        }
    }
}
