//! What reports read: one job's messages over a period, counted by state, by why they were
//! cancelled, by whether a goal event converted them, and their survey answers, each grouped
//! by a key (step, variant, channel, locale, tier, or a time bucket). Everything is counted
//! in SQL over indexed columns (`messages (job_id, due_at)`, `messages (contact_id, job_id)`,
//! `events (type, occurred_at)`, `answers (job_id, answered_at)`); only the counts come
//! back. The store knows nothing of jobs: the caller says which events are goals.
//!
//! A message belongs to the period by its due time (a cohort: what the job planned for those
//! days). A goal event converts the last message of the job to that contact (a sent one, or a
//! held-out one: what the contact would have got) before it, when it comes within the window
//! after that message was sent (for held-out rows, after it would have been due), and, with
//! `match` fields, for the same values as the message's trigger event.

use super::sql::{Bind, bind_all, on_pool, placeholders};
use super::{Pool, Result, Store};
use crate::clock::{from_millis, to_millis};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};
use std::time::Duration;

/// What the rows are grouped by.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    All,
    Step,
    Variant,
    Channel,
    Locale,
    /// `contact.attributes.tier`.
    Tier,
    /// Time buckets by due time: each bound starts a bucket; the key is the bucket's index.
    Buckets(Vec<DateTime<Utc>>),
}

/// One goal: an event type and the `event.data` fields that must match the trigger's.
#[derive(Debug, Clone)]
pub struct GoalSpec {
    pub event: String,
    pub match_fields: Vec<String>,
}

/// Messages of one group, variant, step and state (and, cancelled, kind of reason).
#[derive(Debug, Clone, PartialEq)]
pub struct StateRow {
    pub key: String,
    /// The experiment arm (`''` without one), so one pass serves the comparisons too.
    pub variant: String,
    pub step: i64,
    pub state: String,
    /// For cancelled messages, the kind of reason (`stopped: order.returned`); else empty.
    pub reason: String,
    pub count: i64,
    /// Of those, SMS the carrier reported delivered.
    pub delivered: i64,
}

/// Converted messages of one group, variant, step and state (`sent` or `held_out`).
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub key: String,
    pub variant: String,
    pub step: i64,
    pub state: String,
    /// Converted messages due in the period (0 on a thread row).
    pub messages: i64,
    /// Converted threads (one order's request and its reminders) whose first message is due
    /// in the period, on the first message's row (0 on a message row).
    pub threads: i64,
}

/// Sent survey messages of a group by answer score (`None`: not answered).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreCount {
    pub key: String,
    pub score: Option<i64>,
    pub count: i64,
}

/// An answer with whom it came from, for the team's review.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AnswerRow {
    pub message_id: String,
    pub contact_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub score: i64,
    pub comment: Option<String>,
    /// How it came: web, sms, api, cli.
    pub channel: String,
    pub answered_at: DateTime<Utc>,
    pub changes: i64,
}

/// One job over one period.
#[derive(Debug, Clone)]
pub struct Period<'a> {
    pub job: &'a str,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl GroupBy {
    /// The key as SQL over `m` (messages) and `c` (contacts), and whether it needs `c`.
    fn sql(&self, pg: bool) -> (String, bool) {
        match self {
            GroupBy::All => ("''".into(), false),
            GroupBy::Step => ("CAST(m.step AS TEXT)".into(), false),
            GroupBy::Variant => ("COALESCE(m.variant, '')".into(), false),
            GroupBy::Channel => ("COALESCE(m.channel, '')".into(), false),
            GroupBy::Locale => ("COALESCE(c.locale, '')".into(), true),
            GroupBy::Tier if pg => (
                "COALESCE(CAST(c.attributes AS JSON) ->> 'tier', '')".into(),
                true,
            ),
            GroupBy::Tier => (
                "COALESCE(CAST(json_extract(c.attributes, '$.tier') AS TEXT), '')".into(),
                true,
            ),
            GroupBy::Buckets(bounds) => {
                // The bounds are instants we computed, written as integers.
                let mut case = String::from("CASE");
                for (i, b) in bounds.iter().enumerate().skip(1) {
                    case.push_str(&format!(
                        " WHEN m.due_at < {} THEN '{}'",
                        to_millis(*b),
                        i - 1
                    ));
                }
                case.push_str(&format!(" ELSE '{}' END", bounds.len().saturating_sub(1)));
                (case, false)
            }
        }
    }
}

/// `FROM messages m [JOIN contacts c]` for a key.
fn from(needs_contact: bool) -> &'static str {
    if needs_contact {
        "FROM messages m JOIN contacts c ON c.id = m.contact_id"
    } else {
        "FROM messages m"
    }
}

/// The period's customer messages of the job: `$1` job, `$2` since, `$3` until.
const IN_PERIOD: &str =
    "m.job_id = $1 AND m.due_at >= $2 AND m.due_at < $3 AND m.channel_plan IS NULL";

/// The cancelled reasons, in kinds: the text of a reason names event ids and values.
fn reason_kind(stop_events: &[String], first_bind: usize) -> (String, Vec<Bind>) {
    let mut case = String::from("CASE");
    let mut binds = Vec::new();
    for (i, e) in stop_events.iter().enumerate() {
        let n = first_bind + 2 * i;
        case.push_str(&format!(
            " WHEN m.reason LIKE CAST(${n} AS TEXT) THEN CAST(${} AS TEXT)",
            n + 1
        ));
        binds.push(Bind::Text(Some(format!("stopped: {e} received%"))));
        binds.push(Bind::Text(Some(format!("stopped: {e}"))));
    }
    case.push_str(
        " WHEN m.reason LIKE 'expired:%' THEN 'expired (sent too late)' \
         WHEN m.reason LIKE 'not sent:%' THEN 'no channel could reach the contact' \
         WHEN m.reason LIKE 'dropped: frequency cap%' THEN 'frequency cap' \
         WHEN m.reason LIKE 'cancelled by %' THEN 'cancelled by hand' \
         WHEN m.reason LIKE '%no longer defined%' THEN 'job removed' \
         WHEN m.reason LIKE '%is disabled%' THEN 'job disabled' \
         ELSE 'other' END",
    );
    (case, binds)
}

impl Store {
    fn pg(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Messages of the period by key, variant, step, state and (cancelled) kind of reason,
    /// in one pass over the job's messages.
    pub async fn report_states(
        &self,
        p: &Period<'_>,
        by: &GroupBy,
        stop_events: &[String],
    ) -> Result<Vec<StateRow>> {
        let (key, contact) = by.sql(self.pg());
        let (kind, more) = reason_kind(stop_events, 4);
        let sql = format!(
            "SELECT {key} AS k, COALESCE(m.variant, '') AS v, m.step, m.state, \
             CASE WHEN m.state = 'cancelled' THEN {kind} ELSE '' END AS r, COUNT(*) AS n, \
             SUM(CASE WHEN m.delivery = 'delivered' THEN 1 ELSE 0 END) AS d \
             {} WHERE {IN_PERIOD} GROUP BY 1, 2, 3, 4, 5",
            from(contact)
        );
        let mut binds = period_binds(p);
        binds.extend(more);
        on_pool!(self, |pool, _b| {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(StateRow {
                        key: r.try_get(0)?,
                        variant: r.try_get(1)?,
                        step: r.try_get(2)?,
                        state: r.try_get(3)?,
                        reason: r.try_get(4)?,
                        count: r.try_get(5)?,
                        delivered: r.try_get::<Option<i64>, _>(6)?.unwrap_or(0),
                    })
                })
                .collect()
        })
    }

    /// Messages of the period (sent or held out) that a goal event converted, by key, step
    /// and state. See the module's doc for the rule.
    pub async fn report_converted(
        &self,
        p: &Period<'_>,
        by: &GroupBy,
        goals: &[GoalSpec],
        window: Duration,
    ) -> Result<Vec<Converted>> {
        if goals.is_empty() {
            return Ok(Vec::new());
        }
        let (sql, binds) = converted_statement(p, by, goals, window, self.pg());
        on_pool!(self, |pool, _b| {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Converted {
                        key: r.try_get(0)?,
                        variant: r.try_get(1)?,
                        step: r.try_get(2)?,
                        state: r.try_get(3)?,
                        messages: r.try_get(4)?,
                        threads: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    /// Sent messages of the period by key and answer score (a histogram per key).
    pub async fn report_scores(&self, p: &Period<'_>, by: &GroupBy) -> Result<Vec<ScoreCount>> {
        let (key, contact) = by.sql(self.pg());
        let sql = format!(
            "SELECT {key} AS k, a.score, COUNT(*) {} LEFT JOIN answers a ON a.message_id = m.id \
             WHERE {IN_PERIOD} AND m.state = 'sent' GROUP BY 1, 2",
            from(contact)
        );
        let binds = period_binds(p);
        on_pool!(self, |pool, _b| {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(ScoreCount {
                        key: r.try_get(0)?,
                        score: r.try_get(1)?,
                        count: r.try_get(2)?,
                    })
                })
                .collect()
        })
    }

    /// Answers to the job given in the period (by when they were first given), oldest first;
    /// with `score_lte`, only those at or below it.
    pub async fn report_answers(
        &self,
        p: &Period<'_>,
        score_lte: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AnswerRow>> {
        let mut binds = period_binds(p);
        let mut cond = String::new();
        if let Some(s) = score_lte {
            binds.push(Bind::Int(Some(s)));
            cond = format!(" AND a.score <= {}", placeholders(binds.len(), 1));
        }
        let sql = format!(
            "SELECT a.message_id, a.contact_id, c.name, c.email, c.phone, a.score, a.comment, a.channel, a.answered_at, a.changes \
             FROM answers a LEFT JOIN contacts c ON c.id = a.contact_id \
             WHERE a.job_id = $1 AND a.answered_at >= $2 AND a.answered_at < $3{cond} \
             ORDER BY a.answered_at, a.message_id LIMIT {}",
            limit.clamp(1, 100_000)
        );
        on_pool!(self, |pool, _b| {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(AnswerRow {
                        message_id: r.try_get(0)?,
                        contact_id: r.try_get(1)?,
                        name: r.try_get(2)?,
                        email: r.try_get(3)?,
                        phone: r.try_get(4)?,
                        score: r.try_get(5)?,
                        comment: r.try_get(6)?,
                        channel: r.try_get(7)?,
                        answered_at: from_millis(r.try_get(8)?),
                        changes: r.try_get(9)?,
                    })
                })
                .collect()
        })
    }
}

/// The conversion statement of [`Store::report_converted`] and its binds.
fn converted_statement(
    p: &Period<'_>,
    by: &GroupBy,
    goals: &[GoalSpec],
    window: Duration,
    pg: bool,
) -> (String, Vec<Bind>) {
    let (key, contact) = by.sql(pg);
    let mut binds = period_binds(p);
    binds.push(Bind::Int(Some(
        i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
    )));
    // $1 job, $2 since, $3 until, $4 window; then each goal's type and match fields.
    let mut branches = Vec::new();
    for g in goals {
        binds.push(Bind::Text(Some(g.event.clone())));
        let ty = binds.len();
        let mut conds = String::new();
        for f in &g.match_fields {
            if f == "order_id" {
                conds.push_str(" AND t.order_id = e.order_id");
                continue;
            }
            binds.push(Bind::Text(Some(if pg {
                f.clone()
            } else {
                format!("$.{f}")
            })));
            let n = binds.len();
            if pg {
                conds.push_str(&format!(
                    " AND (CAST(t.data AS JSON) ->> CAST(${n} AS TEXT)) = (CAST(e.data AS JSON) ->> CAST(${n} AS TEXT))"
                ));
            } else {
                // As text, as PostgreSQL's `->>` and stop_when's match compare them: a
                // number in one event and its digits as a string in the other are the same.
                conds.push_str(&format!(
                    " AND CAST(json_extract(t.data, ${n}) AS TEXT) = CAST(json_extract(e.data, ${n}) AS TEXT)"
                ));
            }
        }
        // The goal events of the period first, then each one's contact's messages of the
        // job (`messages_contact`). SQLite keeps a CROSS JOIN's order: without statistics
        // (nothing runs ANALYZE) it began from the job's messages, every one it ever had,
        // and read the period's goal events again for each: more than 300 s for a job of
        // 450,000 messages, where this order takes 0.2-0.3 s for 30 days. PostgreSQL
        // plans a CROSS JOIN with its conditions in WHERE as any inner join.
        branches.push(format!(
            "SELECT e.id AS eid, e.occurred_at AS at, m.id AS mid, m.due_at AS due, \
             COALESCE(m.sent_at, m.due_at) AS ref \
             FROM events e CROSS JOIN messages m \
             LEFT JOIN events t ON t.id = m.event_id \
             WHERE m.contact_id = e.contact_id AND m.job_id = $1 \
             AND e.type = ${ty} AND e.occurred_at >= $2 AND m.channel_plan IS NULL \
             AND m.state IN ('sent', 'held_out') AND COALESCE(m.sent_at, m.due_at) < e.occurred_at{conds}"
        ));
    }
    // Two kinds of rows: converted messages due in the period (by step), and converted
    // threads whose first message is due in the period, as `reached` counts them (any of
    // the thread's messages won, whenever it was due). Counting threads from the winning
    // messages counted a thread once per step that won, and a thread reached before the
    // period whose reminder won inside it: more converted than reached.
    let sql = format!(
        "WITH cand AS ({}), \
         ranked AS (SELECT eid, at, mid, due, ref, ROW_NUMBER() OVER (PARTITION BY eid ORDER BY ref DESC, mid DESC) AS rn FROM cand), \
         won AS (SELECT DISTINCT mid, due FROM ranked WHERE rn = 1 AND at <= ref + $4), \
         won_threads AS (SELECT DISTINCT w.dedupe_key FROM messages w WHERE w.id IN (SELECT mid FROM won)) \
         SELECT {key} AS k, COALESCE(m.variant, '') AS v, m.step, m.state, COUNT(*), CAST(0 AS BIGINT) \
         {from} WHERE m.id IN (SELECT mid FROM won WHERE due >= $2 AND due < $3) GROUP BY 1, 2, 3, 4 \
         UNION ALL \
         SELECT {key} AS k, COALESCE(m.variant, '') AS v, m.step, m.state, CAST(0 AS BIGINT), COUNT(*) \
         {from} WHERE m.job_id = $1 AND m.step = 0 AND m.due_at >= $2 AND m.due_at < $3 \
         AND m.state IN ('sent', 'held_out') AND m.channel_plan IS NULL \
         AND m.dedupe_key IN (SELECT dedupe_key FROM won_threads) GROUP BY 1, 2, 3, 4",
        branches.join(" UNION ALL "),
        from = from(contact)
    );
    (sql, binds)
}

fn period_binds(p: &Period<'_>) -> Vec<Bind> {
    vec![
        Bind::Text(Some(p.job.to_string())),
        Bind::Int(Some(to_millis(p.since))),
        Bind::Int(Some(to_millis(p.until))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without statistics SQLite began the conversion from every message the job ever had
    /// (`messages_job_due` by job alone) and read the period's goal events again for each;
    /// the statement keeps its order: goal events of the period, then their contacts'
    /// messages of the job. (The converted threads read the job's index by the period's due
    /// times, as `report_states` does.)
    #[tokio::test]
    async fn a_conversion_reads_the_goal_events_first() {
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).expect("an instant");
        let p = Period {
            job: "review-request",
            since: at(1_780_000_000_000),
            until: at(1_782_592_000_000),
        };
        for fields in [
            vec!["order_id".to_string()],
            vec!["sku".to_string()],
            vec![],
        ] {
            let goals = [GoalSpec {
                event: "review.submitted".into(),
                match_fields: fields,
            }];
            let window = Duration::from_secs(7 * 86_400);
            let (sql, binds) = converted_statement(&p, &GroupBy::Variant, &goals, window, false);
            super::super::sql::assert_plan_order(
                &sql,
                &binds,
                "SEARCH e USING INDEX events_type_time",
                "SEARCH m USING INDEX messages_contact",
                &["messages_job_due (job_id=?)"],
            )
            .await;
        }
    }
}
