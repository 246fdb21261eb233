//! Batched reads and writes for ingesting events: a few multi-row statements per batch
//! instead of several round trips per event (the import and `POST /v1/events` path).

use super::{
    Bind, Result, Tx, bind_vec, contact_dates, contact_from_row, json_map, on_tx, shaped,
    values_rows,
};
use crate::clock::to_millis;
use crate::model::{Contact, Event};
use crate::store::NewMessage;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{AssertSqlSafe, Row};
use std::collections::{HashMap, HashSet};

/// Stored `data` of a contact's events of one type: (contact id, type) → data.
pub type EventDataByContact = HashMap<(String, String), Vec<Map<String, Value>>>;

/// `?, ?, ?` on SQLite, `$s, $s+1, ...` on PostgreSQL (see `values_rows` for why).
fn list(start: usize, n: usize, pg: bool) -> String {
    if pg {
        super::placeholders(start, n)
    } else {
        vec!["?"; n].join(", ")
    }
}

/// A JSON object as compact text, the same as `Value::Object(map).to_string()`, uncopied.
fn json_text(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).expect("a JSON map always serializes")
}

/// Values for an `IN (...)` list of `ids`, repeating the last one up to a power of two (the
/// answer is the same), so that the list has one of a few lengths; see [`shaped`].
fn in_list(ids: &[String]) -> Vec<Bind> {
    let mut b: Vec<Bind> = ids.iter().map(|i| Bind::Text(Some(i.clone()))).collect();
    if let Some(last) = ids.last() {
        b.resize(
            ids.len().next_power_of_two(),
            Bind::Text(Some(last.clone())),
        );
    }
    b
}

impl Tx {
    fn is_pg(&self) -> bool {
        matches!(self.tx, super::TxInner::Postgres(_))
    }

    /// Digests of the stored events among `ids`.
    pub async fn event_digests(&mut self, ids: &[String]) -> Result<HashMap<String, String>> {
        let pg = self.is_pg();
        let mut out = HashMap::new();
        for chunk in ids.chunks(512) {
            let binds = in_list(chunk);
            let sql = format!(
                "SELECT id, digest FROM events WHERE id IN ({})",
                list(1, binds.len(), pg)
            );
            let pairs: Vec<(String, String)> = on_tx!(self, |conn| {
                let rows = bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<Vec<_>>>()?
            });
            out.extend(pairs);
        }
        Ok(out)
    }

    /// The stored contacts among `ids`.
    pub async fn contacts_by_id(&mut self, ids: &[String]) -> Result<HashMap<String, Contact>> {
        let pg = self.is_pg();
        let mut out = HashMap::new();
        for chunk in ids.chunks(512) {
            let binds = in_list(chunk);
            let sql = format!(
                "SELECT id, name, email, phone, locale, timezone, birthday, attributes, consent FROM contacts WHERE id IN ({})",
                list(1, binds.len(), pg)
            );
            let contacts: Vec<Contact> = on_tx!(self, |conn| {
                let rows = bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(contact_from_row)
                    .collect::<Result<Vec<_>>>()?
            });
            out.extend(contacts.into_iter().map(|c| (c.id.clone(), c)));
        }
        Ok(out)
    }

    /// `data` of the stored events of `types` of `contacts`.
    pub async fn event_data_for(
        &mut self,
        contacts: &[String],
        types: &[String],
    ) -> Result<EventDataByContact> {
        let mut out: EventDataByContact = HashMap::new();
        if types.is_empty() {
            return Ok(out);
        }
        let pg = self.is_pg();
        for chunk in contacts.chunks(512) {
            let mut binds = in_list(chunk);
            let sql = format!(
                "SELECT contact_id, type, data FROM events WHERE contact_id IN ({}) AND type IN ({})",
                list(1, binds.len(), pg),
                list(1 + binds.len(), types.len(), pg)
            );
            binds.extend(types.iter().map(|t| Bind::Text(Some(t.clone()))));
            let found: Vec<(String, String, String)> = on_tx!(self, |conn| {
                let rows = bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect::<Result<Vec<_>>>()?
            });
            for (contact, kind, data) in found {
                out.entry((contact, kind))
                    .or_default()
                    .push(json_map(data)?);
            }
        }
        Ok(out)
    }

    /// Insert events; returns the ids actually inserted (another writer may have won an id).
    pub async fn insert_events(
        &mut self,
        events: &[(&Event, &str)],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        let pg = self.is_pg();
        let mut inserted = HashSet::new();
        for chunk in shaped(events) {
            let sql = format!(
                "INSERT INTO events (id, type, contact_id, occurred_at, occurred_offset, received_at, order_id, data, digest) \
                 VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
                values_rows(chunk.len(), 9, pg)
            );
            let mut b = Vec::with_capacity(chunk.len() * 9);
            for (e, digest) in chunk {
                b.push(Bind::Text(Some(e.id.clone())));
                b.push(Bind::Text(Some(e.kind.clone())));
                b.push(Bind::Text(Some(e.contact_id.clone())));
                b.push(Bind::Int(Some(e.occurred_at.timestamp_millis())));
                b.push(Bind::Int(Some(i64::from(
                    e.occurred_at.offset().local_minus_utc(),
                ))));
                b.push(Bind::Int(Some(to_millis(now))));
                b.push(Bind::Text(e.order_id()));
                b.push(Bind::Text(Some(json_text(&e.data))));
                b.push(Bind::Text(Some(digest.to_string())));
            }
            let ids: Vec<String> = on_tx!(self, |conn| {
                let rows = bind_vec!(sqlx::query(AssertSqlSafe(sql)), b)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| Ok(r.try_get(0)?))
                    .collect::<Result<Vec<_>>>()?
            });
            inserted.extend(ids);
        }
        Ok(inserted)
    }

    /// Insert or update contacts (each id once) and rewrite their anniversary dates.
    pub async fn upsert_contacts(
        &mut self,
        contacts: &[&Contact],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let pg = self.is_pg();
        for chunk in shaped(contacts) {
            let sql = format!(
                "INSERT INTO contacts (id, name, email, phone, locale, timezone, birthday, attributes, consent, created_at, updated_at) \
                 VALUES {} ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, phone = excluded.phone, \
                 locale = excluded.locale, timezone = excluded.timezone, birthday = excluded.birthday, \
                 attributes = excluded.attributes, consent = excluded.consent, updated_at = excluded.updated_at",
                values_rows(chunk.len(), 11, pg)
            );
            let mut b = Vec::with_capacity(chunk.len() * 11);
            for c in chunk {
                b.push(Bind::Text(Some(c.id.clone())));
                b.push(Bind::Text(c.name.clone()));
                b.push(Bind::Text(c.email.clone()));
                b.push(Bind::Text(c.phone.clone()));
                b.push(Bind::Text(c.locale.clone()));
                b.push(Bind::Text(c.timezone.clone()));
                b.push(Bind::Text(c.birthday.clone()));
                b.push(Bind::Text(Some(json_text(&c.attributes))));
                b.push(Bind::Text(Some(json_text(&c.consent))));
                b.push(Bind::Int(Some(to_millis(now))));
                b.push(Bind::Int(Some(to_millis(now))));
            }
            on_tx!(self, |conn| {
                bind_vec!(sqlx::query(AssertSqlSafe(sql)), b)
                    .execute(&mut *conn)
                    .await?;
            });
            let ids: Vec<String> = chunk.iter().map(|c| c.id.clone()).collect();
            let ids = in_list(&ids);
            let del = format!(
                "DELETE FROM contact_dates WHERE contact_id IN ({})",
                list(1, ids.len(), pg)
            );
            on_tx!(self, |conn| {
                bind_vec!(sqlx::query(AssertSqlSafe(del)), ids)
                    .execute(&mut *conn)
                    .await?;
            });
            let dates: Vec<(String, String, String)> = chunk
                .iter()
                .flat_map(|c| {
                    contact_dates(c)
                        .into_iter()
                        .map(|(f, d)| (c.id.clone(), f, d))
                })
                .collect();
            for dates in shaped(&dates) {
                let sql = format!(
                    "INSERT INTO contact_dates (contact_id, field, month_day, date) VALUES {}",
                    values_rows(dates.len(), 4, pg)
                );
                let mut b = Vec::with_capacity(dates.len() * 4);
                for (id, field, date) in dates {
                    b.push(Bind::Text(Some(id.clone())));
                    b.push(Bind::Text(Some(field.clone())));
                    b.push(Bind::Text(Some(date[5..].to_string())));
                    b.push(Bind::Text(Some(date.clone())));
                }
                on_tx!(self, |conn| {
                    bind_vec!(sqlx::query(AssertSqlSafe(sql)), b)
                        .execute(&mut *conn)
                        .await?;
                });
            }
        }
        Ok(())
    }

    /// Insert planned messages; returns the ids inserted (the others were planned already).
    pub async fn insert_messages(
        &mut self,
        messages: &[NewMessage],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>> {
        let pg = self.is_pg();
        let mut inserted = HashSet::new();
        for chunk in shaped(messages) {
            let (mut sql, binds) = super::query::insert_messages_sql(
                &chunk.iter().map(|m| (m, now)).collect::<Vec<_>>(),
                pg,
            );
            sql.push_str(" RETURNING id");
            let ids: Vec<String> = on_tx!(self, |conn| {
                let rows = bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| Ok(r.try_get(0)?))
                    .collect::<Result<Vec<_>>>()?
            });
            inserted.extend(ids);
        }
        Ok(inserted)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ROWS;
    use super::*;

    #[test]
    fn shapes_are_few_and_cover_everything_in_order() {
        for n in 0..300usize {
            let items: Vec<usize> = (0..n).collect();
            let runs: Vec<&[usize]> = shaped(&items).collect();
            assert_eq!(runs.concat(), items, "n = {n}");
            assert!(
                runs.iter()
                    .all(|r| r.len().is_power_of_two() && r.len() <= ROWS),
                "n = {n}"
            );
        }
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let b = in_list(&ids);
        assert_eq!(b.len(), 4);
        assert!(matches!(&b[3], Bind::Text(Some(s)) if s == "c"));
        assert!(in_list(&[]).is_empty());
    }
}
