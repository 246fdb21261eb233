//! What a batch's stop events find pending and cancel (`stop_when`): read for the whole
//! batch at once, cancelled in statements of many. The ingest used to ask for each stop
//! event alone, two round trips to SQLite's thread an event (README, Benchmarks).

use super::sql::{
    Bind, IDS_A_QUERY, Val, bind_vec, by_statement, in_list, json_map, list, on_tx, update,
};
use super::{Result, Tx};
use crate::clock::{from_millis, to_millis};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{AssertSqlSafe, Row};
use std::collections::{HashMap, HashSet};

/// A pending message as a stop event meets it: its id, and the event that triggered it (id
/// and time, when it is still stored) with that event's data.
pub(crate) type PendingTrigger = (String, Option<(String, DateTime<Utc>)>, Map<String, Value>);

/// [`Tx::pending_with_triggers`]' answer, by (contact, job).
pub(crate) type PendingByContactJob = foldhash::HashMap<(String, String), Vec<PendingTrigger>>;

/// A stop event's cancel of pending messages, from the rows `v` (id, reason, at). Not of a
/// claimed one: it is being sent (its claim read the stop events before this one), and
/// cancelling it under the sender dropped the send's record; the thread's next message meets
/// the stop at the gate.
const CANCEL_SET: &str = "messages SET state = 'cancelled', reason = v.reason, updated_at = v.at, \
     claim_token = NULL, locked_by = NULL, locked_until = NULL \
     FROM v WHERE messages.id = v.id AND messages.state IN ('scheduled', 'retrying', 'open')";

impl Tx {
    /// Pending messages of `jobs` for `contacts`, by (contact, job), each with the event that
    /// triggered it (for `stop_when` matching; its data `{}` when the event is gone): the
    /// queue's and the callback tasks waiting for an agent (`open`), as a stop cancels them
    /// too. A batch's stop events read them here at once: a query per stop event was a round
    /// trip to SQLite's thread each. Those of `unstored` are not looked for where none can be
    /// stored ([`Tx::maybe_stored`]). Pairs not asked for may be in the answer too.
    pub async fn pending_with_triggers(
        &mut self,
        contacts: &[String],
        jobs: &[&str],
        unstored: &foldhash::HashSet<&str>,
    ) -> Result<PendingByContactJob> {
        let mut out = PendingByContactJob::default();
        if jobs.is_empty() {
            return Ok(out);
        }
        let pg = self.is_pg();
        let contacts = self.maybe_stored(contacts.iter().map(String::as_str), unstored);
        for chunk in contacts.chunks(IDS_A_QUERY) {
            let mut binds = in_list(chunk);
            let sql = format!(
                "SELECT m.contact_id, m.job_id, m.id, e.data, e.id, e.occurred_at \
                 FROM messages m LEFT JOIN events e ON e.id = m.event_id \
                 WHERE m.contact_id IN ({}) AND m.job_id IN ({}) AND m.state IN ('scheduled', 'retrying', 'open')",
                list(1, binds.len(), pg),
                list(1 + binds.len(), jobs.len(), pg)
            );
            binds.extend(jobs.iter().map(|j| Bind::Text(Some(j.to_string()))));
            on_tx!(self, |conn| {
                let rows = bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(&mut *conn)
                    .await?;
                for r in &rows {
                    let data: Option<String> = r.try_get(3)?;
                    let event: Option<String> = r.try_get(4)?;
                    let at: Option<i64> = r.try_get(5)?;
                    out.entry((r.try_get(0)?, r.try_get(1)?))
                        .or_default()
                        .push((
                            r.try_get(2)?,
                            event.zip(at.map(from_millis)),
                            json_map(data.unwrap_or_else(|| "{}".into()))?,
                        ));
                }
            });
        }
        Ok(out)
    }

    /// Cancel messages that are waiting (not ones being sent), each with the reason support
    /// will read, in statements of many; returns the ids it did not cancel (claimed since
    /// they were read, on PostgreSQL: being sent). A statement per message was a round trip
    /// to SQLite's thread each.
    pub async fn cancel_waiting(
        &mut self,
        cancels: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        let at = to_millis(now);
        let rows: Vec<[Val<'_>; 3]> = cancels
            .iter()
            .map(|(id, reason)| {
                [
                    Val::Text(Some(id)),
                    Val::Text(Some(reason)),
                    Val::Int(Some(at)),
                ]
            })
            .collect();
        let pg = self.is_pg();
        let sql = |values: &str| {
            format!(
                "WITH v (id, reason, at) AS (VALUES {values}) {} {CANCEL_SET}",
                update(pg)
            )
        };
        // As `inserted_of` does: only a statement that changed fewer rows than it took holds
        // a message claimed since it was read (PostgreSQL); its rows are read back.
        let written = self.write_rows(sql, &rows).await?;
        let unsure: Vec<(&str, &str)> = by_statement(cancels, written)
            .into_iter()
            .filter(|(group, changed)| *changed as usize != group.len())
            .flat_map(|(group, _)| group.iter().copied())
            .collect();
        if unsure.is_empty() {
            return Ok(HashSet::new());
        }
        // What each row holds now says which were not ours to cancel (a cancel of ours
        // carries our reason; another node's stop writes its own event's).
        let ids: Vec<&str> = unsure.iter().map(|(id, _)| *id).collect();
        let mut now_held: HashMap<String, (String, Option<String>)> = HashMap::new();
        for chunk in ids.chunks(IDS_A_QUERY) {
            let binds = in_list(chunk);
            let sql = format!(
                "SELECT id, state, reason FROM messages WHERE id IN ({})",
                list(1, binds.len(), pg)
            );
            on_tx!(self, |conn| {
                let rows = bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(&mut *conn)
                    .await?;
                for r in &rows {
                    now_held.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
                }
            });
        }
        Ok(unsure
            .iter()
            .filter(|(id, reason)| {
                !now_held
                    .get(*id)
                    .is_some_and(|(state, r)| state == "cancelled" && r.as_deref() == Some(*reason))
            })
            .map(|(id, _)| id.to_string())
            .collect())
    }
}
