//! The outbox: planned messages, claims under a lease, and completions (the new state and
//! every attempt in one transaction).
//!
//! About 1,000 lines: the claim, the completion and the SQL they run are kept together so a
//! change to one statement is read next to the code that binds it.

use super::receipts::{RecordedSms, settle_waiting};
use super::sql::{
    Bind, ROWS, Val, bind_all, bind_vec, by_statement, in_list, insert_into, json_map, list,
    on_pool, on_tx, opt_ms, placeholders, shaped, update, values_rows,
};
use super::{Pool, Result, Store, SuppressionList, Tx, TxInner, event_from_parts};
use crate::clock::{from_millis, to_millis};
use crate::model::{Class, Contact, Event, MessageState, Outcome};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};
use std::collections::{HashMap, HashSet};

/// The ids claimed under the token `$1`. `message_queue` holds the messages that are
/// scheduled, retrying or claimed: a table PostgreSQL's triggers keep (so a state change of
/// `messages` touches none of its indexes and is a HOT update), a view on SQLite
/// (migrations/*/0010_message_queue.sql). Statements search the queue by it, not `messages`.
macro_rules! claimed_ids {
    () => {
        "SELECT id FROM message_queue WHERE state = 'claimed' AND claim_token = $1"
    };
}

/// The contacts of the messages claimed under `$1`.
macro_rules! claimed_contacts {
    () => {
        concat!(
            "SELECT contact_id FROM messages WHERE id IN (",
            claimed_ids!(),
            ")"
        )
    };
}

/// The claim differs between backends: PostgreSQL locks the `messages` rows it takes and
/// skips those another node is claiming at this moment instead of waiting for them (a
/// statement locks `messages` before `message_queue`, see the migration). The state is
/// checked again on the locked row: the queue row read may be older than a claim that
/// committed meanwhile.
macro_rules! claim_sql {
    ($ids:literal) => {
        concat!(
            "UPDATE messages SET state = 'claimed', claim_token = $1, locked_by = $2, locked_until = $3, updated_at = $4 ",
            "WHERE state IN ('scheduled', 'retrying') AND ",
            $ids
        )
    };
}

pub(super) const CLAIM_SQLITE: &str = claim_sql!(
    "id IN (SELECT id FROM message_queue WHERE state IN ('scheduled', 'retrying') AND due_at <= $4 ORDER BY due_at LIMIT $5)"
);

/// The ids are taken as one array (`= ANY (ARRAY(...))`), not `IN (subquery)`: `messages`
/// has no index on its state (schema v10), and for the semi-join PostgreSQL priced a few
/// hundred primary-key lookups above reading the whole table, so on a store of up to some
/// 30,000 messages every claim read all of them (bench/nodes.sh: a 256-row claim 10.3 ms
/// of which 5.9 ms the scan of 20,000 rows, 2.9 ms with the array). The array's elements
/// are looked up by the primary key whatever the table's size.
pub(super) const CLAIM_PG: &str = claim_sql!(
    "id = ANY (ARRAY(SELECT m.id FROM message_queue q JOIN messages m ON m.id = q.id \
     WHERE q.state IN ('scheduled', 'retrying') AND q.due_at <= $4 AND m.state IN ('scheduled', 'retrying') \
     ORDER BY q.due_at LIMIT $5 FOR UPDATE OF m SKIP LOCKED))"
);

/// The claimed messages with their contacts and trigger events, then `$tail` (the filter).
macro_rules! claimed_sql {
    ($tail:expr) => {
        concat!(
            "SELECT m.id, m.job_id, m.contact_id, m.event_id, m.step, m.dedupe_key, m.template, m.due_at, m.not_after, m.attempts, m.tries, ",
            "m.class, m.token, m.channel_plan, m.variant, ",
            "c.name AS c_name, c.email AS c_email, c.phone AS c_phone, c.locale AS c_locale, c.timezone AS c_timezone, ",
            "c.birthday AS c_birthday, c.attributes AS c_attributes, c.consent AS c_consent, ",
            "e.type AS e_type, e.occurred_at AS e_occurred_at, e.occurred_offset AS e_offset, e.data AS e_data ",
            "FROM messages m JOIN contacts c ON c.id = m.contact_id LEFT JOIN events e ON e.id = m.event_id ",
            $tail
        )
    };
}

pub(super) const CLAIMED: &str = claimed_sql!(concat!(
    "WHERE m.id IN (",
    claimed_ids!(),
    ") ORDER BY m.due_at"
));

/// The claimed messages' query without its filter.
const CLAIMED_SELECT: &str = claimed_sql!("");

pub(super) const CLAIMED_RECENT_SENDS: &str = concat!(
    "SELECT m.contact_id, m.sent_at, m.id FROM messages m \
     WHERE m.state = 'sent' AND m.class = 'marketing' AND m.sent_at >= $2 \
     AND m.contact_id IN (",
    claimed_contacts!(),
    ")"
);

/// The claimed contacts' marketing messages another node has claimed (`$2`: this node):
/// in flight there, they count toward the caps until they are settled. (This node's own are
/// in the dispatcher's memory, `Dispatcher::sends`.)
pub(super) const CLAIMED_ELSEWHERE: &str = concat!(
    "SELECT m.contact_id, m.id, m.locked_by FROM messages m \
     WHERE m.state = 'claimed' AND m.class = 'marketing' AND m.channel_plan IS NULL \
     AND m.locked_by <> $2 AND m.contact_id IN (",
    claimed_contacts!(),
    ")"
);

pub(super) const RELEASE: &str = "UPDATE messages SET state = CASE WHEN attempts = 0 THEN 'scheduled' ELSE 'retrying' END, \
     claim_token = NULL, locked_by = NULL, locked_until = NULL, updated_at = $3 \
     WHERE id = $1 AND state = 'claimed' AND claim_token = $2";

pub(super) const INSERT_MESSAGE: &str = "INSERT INTO messages (id, job_id, contact_id, event_id, step, dedupe_key, template, state, due_at, not_after, reason, created_at, updated_at, class, token, channel_plan, variant) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14, $15, $16) ON CONFLICT (job_id, dedupe_key, step) DO NOTHING";

pub(super) const NEXT_DUE: &str =
    "SELECT MIN(due_at) FROM message_queue WHERE state IN ('scheduled', 'retrying')";

pub(super) const COUNTS: &str = "SELECT state, COUNT(*) FROM messages GROUP BY state";

/// What a completion sets on its message, from the row `v` (id, token, state, due_at, reason,
/// channel, address, at, inc, sent_at, tried), and only while it is still claimed under the
/// token: a lost lease leaves the row alone, and its id is not returned. A held-out message
/// loses its variant: its contact got none.
macro_rules! completion_set {
    () => {
        "messages SET state = v.state, due_at = COALESCE(v.due_at, messages.due_at), reason = v.reason, \
         channel = COALESCE(v.channel, messages.channel), address = COALESCE(v.address, messages.address), \
         updated_at = v.at, attempts = messages.attempts + v.inc, sent_at = COALESCE(v.sent_at, messages.sent_at), \
         tries = messages.tries + v.tried, \
         variant = CASE WHEN v.state = 'held_out' THEN NULL ELSE messages.variant END, \
         claim_token = NULL, locked_by = NULL, locked_until = NULL \
         FROM v WHERE messages.id = v.id AND messages.state = 'claimed' AND messages.claim_token = v.token \
         RETURNING messages.id"
    };
}

/// The columns of an attempt row, in the order [`attempts_sql`] and [`COMPLETE_PG`] bind them.
macro_rules! attempt_columns {
    () => {
        "message_id, attempt, at, channel, address, outcome, code, detail, provider_id, node, duration_ms, gateway, content"
    };
}

/// One UPDATE for a chunk of completions; returns the ids it applied to (a lost lease: the
/// row is no longer claimed under this token, and is left alone). SQLite's form
/// (PostgreSQL's is [`COMPLETE_PG`]).
pub(super) fn complete_sql(chunk: &[Completion]) -> (String, Vec<Bind>) {
    let sql = format!(
        concat!(
            "WITH v (id, token, state, due_at, reason, channel, address, at, inc, sent_at, tried) AS (VALUES {}) {} ",
            completion_set!()
        ),
        values_rows(chunk.len(), 11, false),
        update(false)
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
        b.push(Bind::Int(sent_at(c)));
        b.push(Bind::Int(Some(tried(c))));
    }
    (sql, b)
}

/// One column of `rows`, bound as one PostgreSQL array ([`COMPLETE_PG`]).
fn column<T, V>(rows: &[T], f: impl Fn(&T) -> V) -> Vec<V> {
    rows.iter().map(f).collect()
}

/// `sent_at` of a completion: its time, when it is a send.
fn sent_at(c: &Completion) -> Option<i64> {
    (c.state == MessageState::Sent).then(|| to_millis(c.at))
}

/// 1 when the try counts toward `max_attempts`.
fn tried(c: &Completion) -> i64 {
    i64::from(!c.attempts.is_empty() && !c.uncounted)
}

/// Completions per [`COMPLETE_PG`] statement at most. PostgreSQL plans a statement's first
/// runs for their parameters and knows an array's length; it expects almost no message to
/// be claimed (none was when the table was analyzed). For some 250 completions on a store
/// of 20,000 messages it priced reading the whole table below 250 primary-key lookups, and
/// then matched every claimed row against every completion: 90 ms a statement (auto_explain
/// in bench/nodes.sh, with groups that large since `dispatch.record_wait_ms`). At 64 the
/// lookups win on any store of more than some 8,000 messages, where a scan is small anyway.
pub(super) const COMPLETE_PG_ROWS: usize = 64;

/// PostgreSQL's completion of up to [`COMPLETE_PG_ROWS`] in one statement: the messages' new
/// states and their attempts, each column bound as one array. In chunks of the shapes
/// [`shaped`] cuts (one statement text per shape, for the statement cache), a recorder's
/// batch was five or six statements and as many runs of the queue's trigger, each
/// statement with a fixed cost larger than a row's (pg_stat_statements in bench/nodes.sh:
/// 94 us for a statement of one completion, 17 us a row in one of 32). The attempts of a
/// lost lease are not logged: `done` returns only the ids the update applied to.
pub(super) const COMPLETE_PG: &str = concat!(
    "WITH v AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], \
     $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::int8[]) \
     AS v (id, token, state, due_at, reason, channel, address, at, inc, sent_at, tried)), \
     done AS (UPDATE ",
    completion_set!(),
    "), logged AS (INSERT INTO attempts (",
    attempt_columns!(),
    ") SELECT a.* FROM UNNEST($12::text[], $13::int8[], $14::int8[], $15::text[], $16::text[], $17::text[], \
     $18::int8[], $19::text[], $20::text[], $21::text[], $22::int8[], $23::text[], $24::bytea[]) AS a (",
    attempt_columns!(),
    ") WHERE a.message_id IN (SELECT id FROM done)) SELECT id FROM done"
);

/// The attempts of a chunk of completions (SQLite; PostgreSQL writes them in [`COMPLETE_PG`]).
pub(super) fn attempts_sql(chunk: &[(&Completion, &NewAttempt)]) -> (String, Vec<Bind>) {
    let sql = format!(
        concat!("{} attempts (", attempt_columns!(), ") VALUES {}"),
        insert_into(false),
        values_rows(chunk.len(), 13, false)
    );
    let mut b = Vec::with_capacity(chunk.len() * 13);
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
        b.push(Bind::Bytes(a.content.clone()));
    }
    (sql, b)
}

/// The statement that inserts planned messages, with `values` for their rows.
fn insert_messages_head(values: &str, pg: bool) -> String {
    format!(
        "{} messages (id, job_id, contact_id, event_id, step, dedupe_key, template, state, due_at, not_after, reason, created_at, updated_at, class, token, channel_plan, variant) \
         VALUES {values} ON CONFLICT (job_id, dedupe_key, step) DO NOTHING",
        insert_into(pg)
    )
}

/// A planned message's values, in the order of [`insert_messages_head`]'s columns.
fn message_row(m: &NewMessage, now: DateTime<Utc>) -> [Val<'_>; 17] {
    [
        Val::Text(Some(&m.id)),
        Val::Text(Some(&m.job_id)),
        Val::Text(Some(&m.contact_id)),
        Val::Text(m.event_id.as_deref()),
        Val::Int(Some(m.step)),
        Val::Text(Some(&m.dedupe_key)),
        Val::Text(Some(&m.template)),
        Val::Text(Some(m.state.as_str())),
        Val::Int(Some(to_millis(m.due_at))),
        Val::Int(m.not_after.map(to_millis)),
        Val::Text(m.reason.as_deref()),
        Val::Int(Some(to_millis(now))),
        Val::Int(Some(to_millis(now))),
        Val::Text(Some(m.class.as_str())),
        Val::Text(m.token.as_deref()),
        Val::Text(m.channel_plan.as_deref()),
        Val::Text(m.variant.as_deref()),
    ]
}

/// Planned messages (reminders) in one INSERT; existing (job, dedupe key, step) are kept.
pub(super) fn insert_messages_sql(
    chunk: &[(&NewMessage, DateTime<Utc>)],
    pg: bool,
) -> (String, Vec<Bind>) {
    let sql = insert_messages_head(&values_rows(chunk.len(), 17, pg), pg);
    let b = chunk
        .iter()
        .flat_map(|(m, now)| message_row(m, *now))
        .map(|v| Bind::from(&v))
        .collect();
    (sql, b)
}

/// Insert a planned message on `$conn`; evaluates to `false` when the (job, dedupe key,
/// step) exists already. A macro so that it compiles against each backend's connection.
macro_rules! insert_message {
    ($conn:expr, $m:expr, $now:expr) => {{
        let m: &NewMessage = $m;
        let n = sqlx::query(INSERT_MESSAGE)
            .bind(&m.id)
            .bind(&m.job_id)
            .bind(&m.contact_id)
            .bind(&m.event_id)
            .bind(m.step)
            .bind(&m.dedupe_key)
            .bind(&m.template)
            .bind(m.state.as_str())
            .bind(to_millis(m.due_at))
            .bind(m.not_after.map(to_millis))
            .bind(&m.reason)
            .bind(to_millis($now))
            .bind(m.class.as_str())
            .bind(&m.token)
            .bind(&m.channel_plan)
            .bind(&m.variant)
            .execute($conn)
            .await?
            .rows_affected();
        n == 1
    }};
}

/// A message the planner wants in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: String,
    pub job_id: String,
    pub contact_id: String,
    pub event_id: Option<String>,
    pub step: i64,
    pub dedupe_key: String,
    pub template: String,
    pub due_at: DateTime<Utc>,
    pub not_after: Option<DateTime<Utc>>,
    /// `Scheduled`, or `Cancelled` when it is known at planning time that it must not go.
    pub state: MessageState,
    pub reason: Option<String>,
    pub class: Class,
    pub token: Option<String>,
    /// `webhook` for a callback task; `None`: the job's customer channels.
    pub channel_plan: Option<String>,
    /// The experiment arm (a variant's name); reminders inherit it.
    pub variant: Option<String>,
}

/// What a claim reads besides the messages.
#[derive(Debug, Clone, Default)]
pub struct ClaimWith {
    /// Event types some job's `stop_when` names.
    pub stop_types: Vec<String>,
    /// Marketing sends since this instant (the longest frequency-cap period back).
    pub sends_since: Option<DateTime<Utc>>,
}

pub use crate::model::StopEvent;

/// A message claimed for sending, with what rendering needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub job_id: String,
    pub step: i64,
    pub dedupe_key: String,
    pub template: String,
    pub due_at: DateTime<Utc>,
    pub not_after: Option<DateTime<Utc>>,
    /// Rows in the attempt log so far: the next attempt is number `attempts + 1`.
    pub attempts: i64,
    /// Times dispatch has tried it (one try may log several attempts: SMS failover, channel
    /// fallback); what `dispatch.retry` counts.
    pub tries: i64,
    pub class: Class,
    pub token: Option<String>,
    pub channel_plan: Option<String>,
    /// The experiment arm; the next reminder inherits it.
    pub variant: Option<String>,
    pub contact: Contact,
    pub event: Option<Event>,
    pub claim_token: String,
    /// The contact's stored events of the types some job stops on.
    pub stop_events: Vec<StopEvent>,
    /// (channel, reason) for each of the contact's addresses on the suppression list.
    pub suppressed: Vec<(String, String)>,
    /// (message id, sent at) of the contact's recent marketing messages (frequency caps).
    pub recent_sends: Vec<(String, DateTime<Utc>)>,
    /// (message id, node) of the contact's marketing messages being sent by other nodes
    /// (frequency caps: read with the sends, when there are caps).
    pub sending_elsewhere: Vec<(String, String)>,
}

impl Claimed {
    /// A message planned but never queued (a cron occurrence's, or a reminder), as a claim
    /// would hand it over (no attempts yet), with its trigger event and what the claim reads
    /// about its contact: the forecast decides the messages of
    /// jobs nothing else reads this way, without a store round trip per message.
    pub fn unqueued(
        m: NewMessage,
        contact: Contact,
        event: Option<Event>,
        stop_events: Vec<StopEvent>,
        suppressed: Vec<(String, String)>,
    ) -> Claimed {
        Claimed {
            id: m.id,
            job_id: m.job_id,
            step: m.step,
            dedupe_key: m.dedupe_key,
            template: m.template,
            due_at: m.due_at,
            not_after: m.not_after,
            attempts: 0,
            tries: 0,
            class: m.class,
            token: m.token,
            channel_plan: m.channel_plan,
            variant: m.variant,
            contact,
            event,
            claim_token: String::new(),
            stop_events,
            suppressed,
            recent_sends: Vec::new(),
            sending_elsewhere: Vec::new(),
        }
    }
}

/// One attempt to record.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// 1 for the first try.
    pub number: i64,
    pub at: DateTime<Utc>,
    pub channel: String,
    pub address: Option<String>,
    pub outcome: Outcome,
    pub code: Option<i64>,
    pub detail: Option<String>,
    pub provider_id: Option<String>,
    pub node: String,
    pub duration_ms: i64,
    /// The SMS gateway the request went to; `None` for other channels.
    pub gateway: Option<String>,
    /// What the customer got from this request ([`super::pack_content`]: the rendered subject
    /// and text), on the first request of each channel's try; kept in the attempt row
    /// (`attempts.content`).
    pub content: Option<Vec<u8>>,
}

/// What became of a claimed message; written in batches.
#[derive(Debug, Clone)]
pub struct Completion {
    pub message_id: String,
    pub claim_token: String,
    pub state: MessageState,
    /// The attempts this try made, in order, numbered on from the message's attempts so far
    /// (`attempts + 1`, `+ 2`, ...): one per SMS gateway asked and per channel fallen back
    /// to. Empty when it did not try to send (cancelled, deferred).
    pub attempts: Vec<NewAttempt>,
    /// Next try, for `Retrying`.
    pub retry_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub channel: Option<String>,
    pub address: Option<String>,
    pub at: DateTime<Utc>,
    /// The reminder planned by this send, inserted in the same transaction.
    pub next: Option<NewMessage>,
    /// The try met a fault of ours, not the message's (the SMTP relay refused our login):
    /// its attempts are recorded, but it does not count toward `max_attempts` (`tries`).
    pub uncounted: bool,
}

/// A struct of where each named column is in a query's rows, asked by name once for the
/// rows of one statement instead of once a row: sqlx finds a column by name through a hash
/// of the name (the claim's 27 a message were 1.2% of a dispatch's instructions, callgrind).
macro_rules! columns {
    ($name:ident { $($field:ident),* $(,)? }) => {
        struct $name {
            $($field: usize),*
        }

        impl $name {
            fn of<R: Row>(r: &R) -> Result<Self>
            where
                for<'a> &'a str: sqlx::ColumnIndex<R>,
            {
                use sqlx::Column;
                Ok(Self {
                    $($field: r.try_column(stringify!($field))?.ordinal()),*
                })
            }
        }
    };
}

// The columns of `claimed_sql!`.
columns!(ClaimedColumns {
    id,
    job_id,
    contact_id,
    event_id,
    step,
    dedupe_key,
    template,
    due_at,
    not_after,
    attempts,
    tries,
    class,
    token,
    channel_plan,
    variant,
    c_name,
    c_email,
    c_phone,
    c_locale,
    c_timezone,
    c_birthday,
    c_attributes,
    c_consent,
    e_type,
    e_occurred_at,
    e_offset,
    e_data,
});

/// Each row of [`claimed_sql!`] as a [`Claimed`].
pub(super) fn claimed_from_rows<R: Row>(rows: &[R], token: &str) -> Result<Vec<Claimed>>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let at = ClaimedColumns::of(first)?;
    rows.iter()
        .map(|r| claimed_from_row(r, &at, token))
        .collect()
}

fn claimed_from_row<R: Row>(r: &R, at: &ClaimedColumns, token: &str) -> Result<Claimed>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let contact = Contact {
        id: r.try_get(at.contact_id)?,
        name: r.try_get(at.c_name)?,
        email: r.try_get(at.c_email)?,
        phone: r.try_get(at.c_phone)?,
        locale: r.try_get(at.c_locale)?,
        timezone: r.try_get(at.c_timezone)?,
        birthday: r.try_get(at.c_birthday)?,
        attributes: json_map(r.try_get(at.c_attributes)?)?,
        consent: json_map(r.try_get(at.c_consent)?)?,
    };
    let event_id: Option<String> = r.try_get(at.event_id)?;
    let event_type: Option<String> = r.try_get(at.e_type)?;
    let event = match (event_id, event_type) {
        (Some(id), Some(kind)) => Some(event_from_parts(
            id,
            kind,
            contact.id.clone(),
            r.try_get(at.e_occurred_at)?,
            r.try_get::<Option<i64>, _>(at.e_offset)?.unwrap_or(0),
            r.try_get::<Option<String>, _>(at.e_data)?
                .unwrap_or_else(|| "{}".into()),
        )?),
        _ => None,
    };
    Ok(Claimed {
        id: r.try_get(at.id)?,
        job_id: r.try_get(at.job_id)?,
        step: r.try_get(at.step)?,
        dedupe_key: r.try_get(at.dedupe_key)?,
        template: r.try_get(at.template)?,
        due_at: from_millis(r.try_get(at.due_at)?),
        not_after: opt_ms(r.try_get(at.not_after)?),
        attempts: r.try_get(at.attempts)?,
        tries: r.try_get(at.tries)?,
        class: Class::parse(&r.try_get::<String, _>(at.class)?),
        token: r.try_get(at.token)?,
        channel_plan: r.try_get(at.channel_plan)?,
        variant: r.try_get(at.variant)?,
        contact,
        event,
        claim_token: token.to_string(),
        stop_events: Vec::new(),
        suppressed: Vec::new(),
        recent_sends: Vec::new(),
        sending_elsewhere: Vec::new(),
    })
}

impl Store {
    /// Claim up to `limit` due messages for `node` under a lease ending at `until` (renewed by
    /// [`Store::renew`] while the node lives; [`Store::reap`] returns it once it expires). With each
    /// message comes what its policy checks need about its contact (stored stop events,
    /// suppressed addresses, recent marketing sends), read in the same transaction so
    /// dispatch needs no query per message.
    pub async fn claim(
        &self,
        node: &str,
        token: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
        with: &ClaimWith,
    ) -> Result<Vec<Claimed>> {
        let pg = matches!(self.pool, Pool::Postgres(_));
        let claim_sql = if pg { CLAIM_PG } else { CLAIM_SQLITE };
        let mut stop_binds = vec![Bind::Text(Some(token.to_string()))];
        stop_binds.extend(with.stop_types.iter().map(|t| Bind::Text(Some(t.clone()))));
        let stop_sql = format!(
            concat!(
                "SELECT e.contact_id, e.type, e.data, e.id, e.occurred_at FROM events e WHERE e.type IN ({}) \
                 AND e.contact_id IN (",
                claimed_contacts!(),
                ")"
            ),
            placeholders(2, with.stop_types.len())
        );
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let n = sqlx::query(claim_sql)
                .bind(token)
                .bind(node)
                .bind(to_millis(until))
                .bind(to_millis(now))
                .bind(limit)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                tx.commit().await?;
                return Ok(Vec::new());
            }
            let rows = sqlx::query(CLAIMED).bind(token).fetch_all(&mut *tx).await?;
            let mut claimed = claimed_from_rows(&rows, token)?;
            drop(rows);
            let mut stops: HashMap<String, Vec<StopEvent>> = HashMap::new();
            if !with.stop_types.is_empty() {
                for r in bind_all!(sqlx::query(AssertSqlSafe(stop_sql)), &stop_binds)
                    .fetch_all(&mut *tx)
                    .await?
                {
                    let data = json_map(r.try_get(2)?)?;
                    stops.entry(r.try_get(0)?).or_default().push(StopEvent {
                        kind: r.try_get(1)?,
                        id: r.try_get(3)?,
                        at: from_millis(r.try_get(4)?),
                        data,
                    });
                }
            }
            // What the list holds for the claimed contacts' addresses, asked with the
            // addresses themselves (see `suppressions::lookups_for`).
            let addresses: Vec<(Option<&str>, Option<&str>)> = claimed
                .iter()
                .map(|c| (c.contact.email.as_deref(), c.contact.phone.as_deref()))
                .collect();
            let mut listed = Vec::new();
            for (sql, binds) in super::suppressions::lookups_for(&addresses, pg) {
                for r in bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(&mut *tx)
                    .await?
                {
                    listed.push(super::suppressions::suppression_from_row(&r)?);
                }
            }
            let listed = SuppressionList::from(listed);
            let mut sends: HashMap<String, Vec<(String, DateTime<Utc>)>> = HashMap::new();
            let mut elsewhere: HashMap<String, Vec<(String, String)>> = HashMap::new();
            if let Some(since) = with.sends_since {
                for r in sqlx::query(CLAIMED_RECENT_SENDS)
                    .bind(token)
                    .bind(to_millis(since))
                    .fetch_all(&mut *tx)
                    .await?
                {
                    sends
                        .entry(r.try_get(0)?)
                        .or_default()
                        .push((r.try_get(2)?, from_millis(r.try_get(1)?)));
                }
                // Another node's claim of the same contacts, committed or not yet: held
                // first (PostgreSQL), so of two claims at once the second reads the first's
                // message as in flight. Two messages to one contact due together on two
                // nodes each passed a cap of one. (SQLite's claims take turns.)
                if pg {
                    let ids: Vec<String> = claimed.iter().map(|c| c.contact.id.clone()).collect();
                    super::sql::hold!(&mut *tx, pg, &ids, super::sql::Hold::Sends);
                }
                for r in sqlx::query(CLAIMED_ELSEWHERE)
                    .bind(token)
                    .bind(node)
                    .fetch_all(&mut *tx)
                    .await?
                {
                    elsewhere
                        .entry(r.try_get(0)?)
                        .or_default()
                        .push((r.try_get(1)?, r.try_get(2)?));
                }
            }
            tx.commit().await?;
            for c in &mut claimed {
                c.stop_events = stops.get(&c.contact.id).cloned().unwrap_or_default();
                c.recent_sends = sends.get(&c.contact.id).cloned().unwrap_or_default();
                c.sending_elsewhere = elsewhere.get(&c.contact.id).cloned().unwrap_or_default();
                c.suppressed = listed.of(&c.contact).at(now);
            }
            Ok(claimed)
        })
    }

    /// Claim every scheduled or retrying message of `jobs` due by `until` at once, under a
    /// lease that does not end; returns how many. The forecast takes them out of its replay
    /// on the scratch copy this way, to decide them in memory, reading them a page at a time
    /// ([`Store::claimed_ids`], [`Store::claimed_of`]); one due later is outside its span,
    /// and its replay never reaches it either.
    pub async fn claim_jobs(
        &self,
        token: &str,
        jobs: &[String],
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<u64> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "UPDATE messages SET state = 'claimed', claim_token = $1, locked_by = 'forecast', locked_until = $2, updated_at = $3 \
             WHERE id IN (SELECT id FROM message_queue WHERE state IN ('scheduled', 'retrying') AND due_at <= $4) \
             AND state IN ('scheduled', 'retrying') AND job_id IN ({})",
            placeholders(5, jobs.len())
        );
        let mut binds = vec![
            Bind::Text(Some(token.to_string())),
            Bind::Int(Some(i64::MAX)),
            Bind::Int(Some(to_millis(now))),
            Bind::Int(Some(to_millis(until))),
        ];
        binds.extend(jobs.iter().map(|j| Bind::Text(Some(j.clone()))));
        on_pool!(self, |pool, _b| {
            Ok(bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    /// The ids of `job`'s messages claimed under `token`, in order.
    pub async fn claimed_ids(&self, token: &str, job: &str) -> Result<Vec<String>> {
        on_pool!(self, |pool, _b| {
            Ok(sqlx::query_scalar(concat!(
                "SELECT id FROM messages WHERE id IN (",
                claimed_ids!(),
                ") AND job_id = $2 ORDER BY id"
            ))
            .bind(token)
            .bind(job)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The messages `ids` (claimed under `token`), read as [`Store::claim`] reads them
    /// (without the contact's stop events, suppressions and sends, which the caller reads
    /// its own way). A page of [`Store::claimed_ids`] at a time.
    pub async fn claimed_of(&self, token: &str, ids: &[String]) -> Result<Vec<Claimed>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // By the primary key alone: with the claim's token beside it, SQLite reads every
        // message of the claim by that index for each page.
        let sql = format!(
            "{CLAIMED_SELECT}WHERE m.id IN ({})",
            placeholders(1, ids.len())
        );
        let binds: Vec<Bind> = ids.iter().map(|i| Bind::Text(Some(i.clone()))).collect();
        on_pool!(self, |pool, _b| {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                .fetch_all(pool)
                .await?;
            claimed_from_rows(&rows, token)
        })
    }

    /// Put claimed messages back untouched (shutdown before they were tried).
    pub async fn release(&self, token: &str, ids: &[String], now: DateTime<Utc>) -> Result<()> {
        let now = to_millis(now);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            for id in ids {
                sqlx::query(RELEASE)
                    .bind(id)
                    .bind(token)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Record a batch of outcomes in one transaction, a few multi-row statements of a few
    /// shapes (see [`shaped`]), not one round trip each. Returns how many were stale: the lease was lost and
    /// the message reclaimed elsewhere, so the completion was not applied.
    pub async fn complete(&self, batch: &[Completion]) -> Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut applied: HashSet<String> = HashSet::with_capacity(batch.len());
        match &mut tx.tx {
            TxInner::Postgres(conn) => {
                for chunk in batch.chunks(COMPLETE_PG_ROWS) {
                    let attempts: Vec<(&Completion, &NewAttempt)> = chunk
                        .iter()
                        .flat_map(|c| c.attempts.iter().map(move |a| (c, a)))
                        .collect();
                    let ids = sqlx::query_scalar::<_, String>(COMPLETE_PG)
                        .bind(column(chunk, |c| c.message_id.clone()))
                        .bind(column(chunk, |c| c.claim_token.clone()))
                        .bind(column(chunk, |c| c.state.as_str().to_string()))
                        .bind(column(chunk, |c| c.retry_at.map(to_millis)))
                        .bind(column(chunk, |c| c.reason.clone()))
                        .bind(column(chunk, |c| c.channel.clone()))
                        .bind(column(chunk, |c| c.address.clone()))
                        .bind(column(chunk, |c| to_millis(c.at)))
                        .bind(column(chunk, |c| c.attempts.len() as i64))
                        .bind(column(chunk, sent_at))
                        .bind(column(chunk, tried))
                        .bind(column(&attempts, |(c, _)| c.message_id.clone()))
                        .bind(column(&attempts, |(_, a)| a.number))
                        .bind(column(&attempts, |(_, a)| to_millis(a.at)))
                        .bind(column(&attempts, |(_, a)| a.channel.clone()))
                        .bind(column(&attempts, |(_, a)| a.address.clone()))
                        .bind(column(&attempts, |(_, a)| a.outcome.as_str().to_string()))
                        .bind(column(&attempts, |(_, a)| a.code))
                        .bind(column(&attempts, |(_, a)| a.detail.clone()))
                        .bind(column(&attempts, |(_, a)| a.provider_id.clone()))
                        .bind(column(&attempts, |(_, a)| a.node.clone()))
                        .bind(column(&attempts, |(_, a)| a.duration_ms))
                        .bind(column(&attempts, |(_, a)| a.gateway.clone()))
                        .bind(column(&attempts, |(_, a)| a.content.clone()))
                        .fetch_all(&mut **conn)
                        .await?;
                    applied.extend(ids);
                }
            }
            TxInner::Sqlite(conn) => {
                for chunk in shaped(batch) {
                    let (sql, binds) = complete_sql(chunk);
                    for r in bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                        .fetch_all(&mut **conn)
                        .await?
                    {
                        applied.insert(r.try_get(0)?);
                    }
                }
                let attempts: Vec<(&Completion, &NewAttempt)> = batch
                    .iter()
                    .filter(|c| applied.contains(&c.message_id))
                    .flat_map(|c| c.attempts.iter().map(move |a| (c, a)))
                    .collect();
                for chunk in shaped(&attempts) {
                    let (sql, binds) = attempts_sql(chunk);
                    bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                        .execute(&mut **conn)
                        .await?;
                }
            }
        }
        // Receipts that came before this record of their send wait for it (store::receipts).
        let sent: Vec<RecordedSms> = batch
            .iter()
            .filter(|c| applied.contains(&c.message_id))
            .flat_map(|c| c.attempts.iter().map(move |a| (c, a)))
            .filter(|(_, a)| a.outcome == Outcome::Sent && a.channel == "sms")
            .filter_map(|(c, a)| {
                Some(RecordedSms {
                    message_id: &c.message_id,
                    at: to_millis(c.at),
                    attempt: a.number,
                    gateway: a.gateway.as_deref()?,
                    provider_id: a.provider_id.as_deref(),
                })
            })
            .collect();
        settle_waiting(&mut tx, &sent).await?;
        let next: Vec<(&NewMessage, DateTime<Utc>)> = batch
            .iter()
            .filter(|c| applied.contains(&c.message_id))
            .filter_map(|c| c.next.as_ref().map(|m| (m, c.at)))
            .collect();
        let pg = matches!(self.pool, Pool::Postgres(_));
        for chunk in shaped(&next) {
            let (sql, binds) = insert_messages_sql(chunk, pg);
            on_tx!(tx, |conn| {
                bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .execute(&mut *conn)
                    .await?;
            });
        }
        tx.commit().await?;
        Ok(batch.len() - applied.len())
    }

    /// When the next scheduled message falls due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        on_pool!(self, |pool, _b| {
            let v: Option<i64> = sqlx::query_scalar(NEXT_DUE).fetch_one(pool).await?;
            Ok(v.map(from_millis))
        })
    }

    /// Message counts by state, for the status line and metrics.
    pub async fn counts(&self) -> Result<Vec<(MessageState, i64)>> {
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(COUNTS).fetch_all(pool).await?;
            let mut out = Vec::new();
            for r in rows {
                let s: String = r.try_get(0)?;
                if let Some(state) = MessageState::parse(&s) {
                    out.push((state, r.try_get::<i64, _>(1)?));
                }
            }
            Ok(out)
        })
    }

    /// Messages that are done (sent, failed, cancelled), by id, with when they last changed:
    /// the forecast reports only what changes after them.
    pub async fn final_messages(&self) -> Result<std::collections::HashMap<String, DateTime<Utc>>> {
        on_pool!(self, |pool, _b| {
            let v: Vec<(String, i64)> = sqlx::query_as(
                "SELECT id, updated_at FROM messages WHERE state IN ('sent', 'failed', 'cancelled')",
            )
            .fetch_all(pool)
            .await?;
            Ok(v.into_iter()
                .map(|(id, at)| (id, from_millis(at)))
                .collect())
        })
    }
}

impl Store {
    /// A claimed message's class, as its job says it now.
    pub async fn set_class(&self, id: &str, class: crate::model::Class) -> Result<()> {
        on_pool!(self, |pool, _b| {
            sqlx::query("UPDATE messages SET class = $2 WHERE id = $1 AND state = 'claimed'")
                .bind(id)
                .bind(class.as_str())
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}

impl Tx {
    pub async fn insert_message(&mut self, m: &NewMessage, now: DateTime<Utc>) -> Result<bool> {
        on_tx!(self, |conn| Ok(insert_message!(&mut *conn, m, now)))
    }

    /// Insert planned messages; returns the ids inserted (the others were planned already).
    ///
    /// Not `RETURNING id`: SQLite's driver hands each returned row from its thread to ours,
    /// a thread wake-up per message. The count says whether all went in (the usual case);
    /// when some did not, the ids present now are the ones this statement inserted, since
    /// every id is new (an old one would break the primary key, not the `ON CONFLICT`).
    pub async fn insert_messages<'m, M: std::borrow::Borrow<NewMessage>>(
        &mut self,
        messages: &'m [M],
        now: DateTime<Utc>,
    ) -> Result<HashSet<&'m str>> {
        let pg = self.is_pg();
        let rows: Vec<_> = messages
            .iter()
            .map(|m| message_row(m.borrow(), now))
            .collect();
        let written = self
            .write_rows(|values| insert_messages_head(values, pg), &rows)
            .await?;
        self.inserted_of(by_statement(messages, written)).await
    }

    /// The ids of the messages that statements inserting `groups` (each with the rows it
    /// changed) inserted. Where a statement inserted some of its rows and not others (they met
    /// their job, dedupe key and step), the ids now stored are the ones it inserted, as every
    /// id is new.
    async fn inserted_of<'m, M: std::borrow::Borrow<NewMessage>>(
        &mut self,
        groups: Vec<(&'m [M], u64)>,
    ) -> Result<HashSet<&'m str>> {
        let pg = self.is_pg();
        let mut inserted = HashSet::new();
        let mut unsure = Vec::new();
        for (group, n) in groups {
            let ids = group.iter().map(|m| m.borrow().id.as_str());
            if n as usize == group.len() {
                inserted.extend(ids);
            } else if n > 0 {
                unsure.extend(ids);
            }
        }
        for ids in unsure.chunks(ROWS) {
            let binds = in_list(ids);
            let sql = format!(
                "SELECT id FROM messages WHERE id IN ({})",
                list(1, binds.len(), pg)
            );
            let found: HashSet<String> = on_tx!(self, |conn| {
                let rows = bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| Ok(r.try_get(0)?))
                    .collect::<Result<HashSet<_>>>()?
            });
            inserted.extend(ids.iter().filter(|id| found.contains(**id)));
        }
        Ok(inserted)
    }
}
