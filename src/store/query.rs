//! The SQL, written once for both backends, and the delivery-log search.

use super::{
    Bind, Completion, NewAttempt, NewMessage, Result, Store, bind_all, event_from_parts, on_pool,
    opt_ms, values_rows,
};
use crate::clock::{from_millis, to_millis};
use crate::model::{AttemptRecord, MessageRecord, MessageState, ReceiptRecord};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashMap;

/// The claim differs between backends only in its tail: PostgreSQL skips rows another node
/// is claiming at this moment instead of waiting for them.
macro_rules! claim_sql {
    ($tail:literal) => {
        concat!(
            "UPDATE messages SET state = 'claimed', claim_token = $1, locked_by = $2, locked_until = $3, updated_at = $4 ",
            "WHERE id IN (SELECT id FROM messages WHERE state IN ('scheduled', 'retrying') AND due_at <= $4 ",
            "ORDER BY due_at LIMIT $5",
            $tail
        )
    };
}
pub(super) const CLAIM_SQLITE: &str = claim_sql!(")");
pub(super) const CLAIM_PG: &str = claim_sql!(" FOR UPDATE SKIP LOCKED)");

pub(super) const CLAIMED: &str = "SELECT m.id, m.job_id, m.contact_id, m.event_id, m.step, m.dedupe_key, m.template, m.due_at, m.not_after, m.attempts, m.tries, \
     m.class, m.token, m.channel_plan, \
     c.name AS c_name, c.email AS c_email, c.phone AS c_phone, c.locale AS c_locale, c.timezone AS c_timezone, \
     c.birthday AS c_birthday, c.attributes AS c_attributes, c.consent AS c_consent, \
     e.type AS e_type, e.occurred_at AS e_occurred_at, e.occurred_offset AS e_offset, e.data AS e_data \
     FROM messages m JOIN contacts c ON c.id = m.contact_id LEFT JOIN events e ON e.id = m.event_id \
     WHERE m.state = 'claimed' AND m.claim_token = $1 ORDER BY m.due_at";

/// The suppressed addresses of the claimed messages' contacts: email in lower case, phone
/// numbers in E.164 as `ingest` stores them.
pub(super) const CLAIMED_SUPPRESSIONS: &str = "SELECT s.channel, s.address, s.reason FROM suppressions s \
     WHERE (s.channel = 'email' AND s.address IN (SELECT LOWER(c.email) FROM contacts c \
     WHERE c.id IN (SELECT contact_id FROM messages WHERE state = 'claimed' AND claim_token = $1))) \
     OR (s.channel = 'sms' AND s.address IN (SELECT c.phone FROM contacts c \
     WHERE c.id IN (SELECT contact_id FROM messages WHERE state = 'claimed' AND claim_token = $1)))";

pub(super) const CLAIMED_RECENT_SENDS: &str = "SELECT m.contact_id, m.sent_at, m.id FROM messages m \
     WHERE m.state = 'sent' AND m.class = 'marketing' AND m.sent_at >= $2 \
     AND m.contact_id IN (SELECT contact_id FROM messages WHERE state = 'claimed' AND claim_token = $1)";

pub(super) const DELETE_CONTACT_DATES: &str = "DELETE FROM contact_dates WHERE contact_id = $1";

pub(super) const INSERT_CONTACT_DATE: &str =
    "INSERT INTO contact_dates (contact_id, field, month_day, date) VALUES ($1, $2, $3, $4)";

pub(super) const RELEASE: &str = "UPDATE messages SET state = CASE WHEN attempts = 0 THEN 'scheduled' ELSE 'retrying' END, \
     claim_token = NULL, locked_by = NULL, locked_until = NULL, updated_at = $3 \
     WHERE id = $1 AND state = 'claimed' AND claim_token = $2";

pub(super) const INSERT_MESSAGE: &str = "INSERT INTO messages (id, job_id, contact_id, event_id, step, dedupe_key, template, state, due_at, not_after, reason, created_at, updated_at, class, token, channel_plan) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14, $15) ON CONFLICT (job_id, dedupe_key, step) DO NOTHING";

pub(super) const EVENT_DATA_OF: &str =
    "SELECT data FROM events WHERE contact_id = $1 AND type = $2";

pub(super) const NEXT_DUE: &str =
    "SELECT MIN(due_at) FROM messages WHERE state IN ('scheduled', 'retrying')";

pub(super) const COUNTS: &str = "SELECT state, COUNT(*) FROM messages GROUP BY state";

pub(super) const EVENT_DIGEST: &str = "SELECT digest FROM events WHERE id = $1";

pub(super) const CONTACT: &str = "SELECT id, name, email, phone, locale, timezone, birthday, attributes, consent FROM contacts WHERE id = $1";

pub(super) const INSERT_EVENT: &str = "INSERT INTO events (id, type, contact_id, occurred_at, occurred_offset, received_at, order_id, data, digest) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING";

pub(super) const UPSERT_CONTACT: &str = "INSERT INTO contacts (id, name, email, phone, locale, timezone, birthday, attributes, consent, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, phone = excluded.phone, \
     locale = excluded.locale, timezone = excluded.timezone, birthday = excluded.birthday, \
     attributes = excluded.attributes, consent = excluded.consent, updated_at = excluded.updated_at";

pub(super) const PENDING_WITH_TRIGGER: &str = "SELECT m.id, e.data FROM messages m LEFT JOIN events e ON e.id = m.event_id \
     WHERE m.contact_id = $1 AND m.job_id = $2 AND m.state IN ('scheduled', 'retrying')";

pub(super) const CANCEL: &str = "UPDATE messages SET state = 'cancelled', reason = $2, updated_at = $3, claim_token = NULL, locked_by = NULL, locked_until = NULL \
     WHERE id = $1 AND state IN ('scheduled', 'retrying', 'claimed')";

/// What `aftercare logs` asks for. Every filter is optional and they combine with AND.
#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    /// A contact id, email address or phone number.
    pub contact: Option<String>,
    pub job: Option<String>,
    pub order: Option<String>,
    pub states: Vec<MessageState>,
    /// `webhook`: callback tasks only.
    pub channel_plan: Option<String>,
    /// What a carrier's receipt said of a sent SMS: `delivered` or `undelivered`; `unknown`
    /// for sent SMS without a final receipt yet.
    pub delivery: Option<String>,
    /// On the message's due time.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// One message by id.
    pub id: Option<String>,
    /// Keyset pagination: messages after this (due time, id), in the log's order.
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

impl LogFilter {
    /// The WHERE clause over `messages m` and its binds, numbered from $1.
    fn clause(&self) -> (String, Vec<Bind>) {
        let mut conds: Vec<String> = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let next = |b: Bind, binds: &mut Vec<Bind>| {
            binds.push(b);
            format!("${}", binds.len())
        };
        if let Some(c) = &self.contact {
            let phone = crate::values::normalise_phone(c).unwrap_or_else(|_| c.clone());
            let a = next(Bind::Text(Some(c.clone())), &mut binds);
            let b = next(Bind::Text(Some(c.to_lowercase())), &mut binds);
            let p = next(Bind::Text(Some(phone)), &mut binds);
            conds.push(format!("m.contact_id IN (SELECT id FROM contacts WHERE id = {a} OR LOWER(email) = {b} OR phone = {p})"));
        }
        if let Some(j) = &self.job {
            let a = next(Bind::Text(Some(j.clone())), &mut binds);
            conds.push(format!("m.job_id = {a}"));
        }
        if let Some(o) = &self.order {
            let a = next(Bind::Text(Some(o.clone())), &mut binds);
            conds.push(format!(
                "m.event_id IN (SELECT id FROM events WHERE order_id = {a})"
            ));
        }
        if !self.states.is_empty() {
            let list: Vec<String> = self
                .states
                .iter()
                .map(|s| next(Bind::Text(Some(s.as_str().into())), &mut binds))
                .collect();
            conds.push(format!("m.state IN ({})", list.join(", ")));
        }
        if let Some(p) = &self.channel_plan {
            let a = next(Bind::Text(Some(p.clone())), &mut binds);
            conds.push(format!("m.channel_plan = {a}"));
        }
        match self.delivery.as_deref() {
            None => {}
            Some("unknown") => conds
                .push("m.state = 'sent' AND m.channel = 'sms' AND m.delivery IS NULL".to_string()),
            Some(d) => {
                let a = next(Bind::Text(Some(d.to_string())), &mut binds);
                conds.push(format!("m.delivery = {a}"));
            }
        }
        if let Some(t) = self.since {
            let a = next(Bind::Int(Some(to_millis(t))), &mut binds);
            conds.push(format!("m.due_at >= {a}"));
        }
        if let Some(t) = self.until {
            let a = next(Bind::Int(Some(to_millis(t))), &mut binds);
            conds.push(format!("m.due_at <= {a}"));
        }
        if let Some(id) = &self.id {
            let a = next(Bind::Text(Some(id.clone())), &mut binds);
            conds.push(format!("m.id = {a}"));
        }
        if let Some((due, id)) = &self.after {
            let a = next(Bind::Int(Some(to_millis(*due))), &mut binds);
            let b = next(Bind::Text(Some(id.clone())), &mut binds);
            conds.push(format!(
                "(m.due_at > {a} OR (m.due_at = {a} AND m.id > {b}))"
            ));
        }
        let clause = if conds.is_empty() {
            "1 = 1".to_string()
        } else {
            conds.join(" AND ")
        };
        (clause, binds)
    }
}

impl Store {
    /// The delivery log: messages matching `f`, oldest due first, each with its attempts.
    pub async fn find_messages(&self, f: &LogFilter) -> Result<Vec<MessageRecord>> {
        let (clause, binds) = f.clause();
        let limit = if f.limit > 0 { f.limit } else { 1000 };
        // The clause is built from fixed fragments and numbered placeholders only; every
        // user value is bound.
        let msg_sql = format!(
            "SELECT m.id, m.job_id, m.step, m.contact_id, m.event_id, e.order_id, m.template, m.class, m.channel_plan, m.state, m.due_at, m.attempts, \
             m.channel, m.address, m.reason, m.created_at, m.updated_at, m.sent_at, m.delivery \
             FROM messages m LEFT JOIN events e ON e.id = m.event_id WHERE {clause} ORDER BY m.due_at, m.id LIMIT {limit}"
        );
        let att_sql = format!(
            "SELECT a.message_id, a.attempt, a.at, a.channel, a.address, a.outcome, a.code, a.detail, a.provider_id, a.node, a.duration_ms, a.gateway \
             FROM attempts a WHERE a.message_id IN (SELECT m.id FROM messages m WHERE {clause} ORDER BY m.due_at, m.id LIMIT {limit}) \
             ORDER BY a.message_id, a.attempt"
        );
        let rec_sql = format!(
            "SELECT r.message_id, r.attempt, r.received_at, r.status, r.code, r.text \
             FROM receipts r WHERE r.message_id IN (SELECT m.id FROM messages m WHERE {clause} ORDER BY m.due_at, m.id LIMIT {limit}) \
             ORDER BY r.message_id, r.attempt, r.received_at"
        );
        on_pool!(self, |pool, _b| {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(msg_sql)), &binds)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let state: String = r.try_get("state")?;
                out.push(MessageRecord {
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
                    sent_at: opt_ms(r.try_get("sent_at")?),
                    delivery: r.try_get("delivery")?,
                    attempt_log: Vec::new(),
                });
            }
            let arows = bind_all!(sqlx::query(AssertSqlSafe(att_sql)), &binds)
                .fetch_all(pool)
                .await?;
            let rrows = bind_all!(sqlx::query(AssertSqlSafe(rec_sql)), &binds)
                .fetch_all(pool)
                .await?;
            let mut receipts: HashMap<(String, i64), Vec<ReceiptRecord>> = HashMap::new();
            for r in &rrows {
                receipts
                    .entry((r.try_get("message_id")?, r.try_get("attempt")?))
                    .or_default()
                    .push(ReceiptRecord {
                        received_at: from_millis(r.try_get("received_at")?),
                        status: r.try_get("status")?,
                        code: r.try_get("code")?,
                        text: r.try_get("text")?,
                    });
            }
            let mut by_msg: HashMap<String, Vec<AttemptRecord>> = HashMap::new();
            for r in &arows {
                let message_id: String = r.try_get("message_id")?;
                let attempt: i64 = r.try_get("attempt")?;
                let receipts = receipts
                    .remove(&(message_id.clone(), attempt))
                    .unwrap_or_default();
                by_msg.entry(message_id).or_default().push(AttemptRecord {
                    attempt,
                    at: from_millis(r.try_get("at")?),
                    channel: r.try_get("channel")?,
                    address: r.try_get("address")?,
                    outcome: r.try_get("outcome")?,
                    code: r.try_get("code")?,
                    detail: r.try_get("detail")?,
                    provider_id: r.try_get("provider_id")?,
                    node: r.try_get("node")?,
                    duration_ms: r.try_get("duration_ms")?,
                    gateway: r.try_get("gateway")?,
                    receipts,
                });
            }
            for m in &mut out {
                m.attempt_log = by_msg.remove(&m.id).unwrap_or_default();
            }
            Ok(out)
        })
    }

    /// The trigger event of a message, for previews and the timeline.
    pub async fn event(&self, id: &str) -> Result<Option<crate::model::Event>> {
        on_pool!(self, |pool, _b| {
            let row = sqlx::query("SELECT id, type, contact_id, occurred_at, occurred_offset, data FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(r) => Ok(Some(event_from_parts(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                )?)),
            }
        })
    }
}

/// One UPDATE for a chunk of completions; returns the ids it applied to (a lost lease: the
/// row is no longer claimed under this token, and is left alone).
pub(super) fn complete_sql(chunk: &[Completion], pg: bool) -> (String, Vec<Bind>) {
    let sql = format!(
        "WITH v (id, token, state, due_at, reason, channel, address, at, inc, sent_at, tried) AS (VALUES {}) \
         UPDATE messages SET state = v.state, due_at = COALESCE(v.due_at, messages.due_at), reason = v.reason, \
         channel = COALESCE(v.channel, messages.channel), address = COALESCE(v.address, messages.address), \
         updated_at = v.at, attempts = messages.attempts + v.inc, sent_at = COALESCE(v.sent_at, messages.sent_at), \
         tries = messages.tries + v.tried, \
         claim_token = NULL, locked_by = NULL, locked_until = NULL \
         FROM v WHERE messages.id = v.id AND messages.state = 'claimed' AND messages.claim_token = v.token \
         RETURNING messages.id",
        values_rows(chunk.len(), 11, pg)
    );
    let mut b = Vec::with_capacity(chunk.len() * 11);
    for c in chunk {
        b.push(Bind::Text(Some(c.message_id.clone())));
        b.push(Bind::Text(Some(c.claim_token.clone())));
        b.push(Bind::Text(Some(c.state.as_str().into())));
        b.push(Bind::Int(c.retry_at.map(to_millis)));
        b.push(Bind::Text(c.reason.clone()));
        b.push(Bind::Text(c.channel.clone()));
        b.push(Bind::Text(c.address.clone()));
        b.push(Bind::Int(Some(to_millis(c.at))));
        b.push(Bind::Int(Some(c.attempts.len() as i64)));
        b.push(Bind::Int(
            (c.state == MessageState::Sent).then(|| to_millis(c.at)),
        ));
        b.push(Bind::Int(Some(i64::from(
            !c.attempts.is_empty() && !c.uncounted,
        ))));
    }
    (sql, b)
}

pub(super) fn attempts_sql(chunk: &[(&Completion, &NewAttempt)], pg: bool) -> (String, Vec<Bind>) {
    let sql = format!(
        "INSERT INTO attempts (message_id, attempt, at, channel, address, outcome, code, detail, provider_id, node, duration_ms, gateway) VALUES {}",
        values_rows(chunk.len(), 12, pg)
    );
    let mut b = Vec::with_capacity(chunk.len() * 12);
    for (c, a) in chunk {
        b.push(Bind::Text(Some(c.message_id.clone())));
        b.push(Bind::Int(Some(a.number)));
        b.push(Bind::Int(Some(to_millis(a.at))));
        b.push(Bind::Text(Some(a.channel.clone())));
        b.push(Bind::Text(a.address.clone()));
        b.push(Bind::Text(Some(a.outcome.as_str().into())));
        b.push(Bind::Int(a.code));
        b.push(Bind::Text(a.detail.clone()));
        b.push(Bind::Text(a.provider_id.clone()));
        b.push(Bind::Text(Some(a.node.clone())));
        b.push(Bind::Int(Some(a.duration_ms)));
        b.push(Bind::Text(a.gateway.clone()));
    }
    (sql, b)
}

/// Planned messages (reminders) in one INSERT; existing (job, dedupe key, step) are kept.
pub(super) fn insert_messages_sql(
    chunk: &[(&NewMessage, DateTime<Utc>)],
    pg: bool,
) -> (String, Vec<Bind>) {
    let sql = format!(
        "INSERT INTO messages (id, job_id, contact_id, event_id, step, dedupe_key, template, state, due_at, not_after, reason, created_at, updated_at, class, token, channel_plan) \
         VALUES {} ON CONFLICT (job_id, dedupe_key, step) DO NOTHING",
        values_rows(chunk.len(), 16, pg)
    );
    let mut b = Vec::with_capacity(chunk.len() * 16);
    for (m, now) in chunk {
        b.push(Bind::Text(Some(m.id.clone())));
        b.push(Bind::Text(Some(m.job_id.clone())));
        b.push(Bind::Text(Some(m.contact_id.clone())));
        b.push(Bind::Text(m.event_id.clone()));
        b.push(Bind::Int(Some(m.step)));
        b.push(Bind::Text(Some(m.dedupe_key.clone())));
        b.push(Bind::Text(Some(m.template.clone())));
        b.push(Bind::Text(Some(m.state.as_str().into())));
        b.push(Bind::Int(Some(to_millis(m.due_at))));
        b.push(Bind::Int(m.not_after.map(to_millis)));
        b.push(Bind::Text(m.reason.clone()));
        b.push(Bind::Int(Some(to_millis(*now))));
        b.push(Bind::Int(Some(to_millis(*now))));
        b.push(Bind::Text(Some(m.class.as_str().into())));
        b.push(Bind::Text(m.token.clone()));
        b.push(Bind::Text(m.channel_plan.clone()));
    }
    (sql, b)
}
