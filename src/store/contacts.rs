//! Contacts and their events: what ingest writes (events once by id, contacts upserted with
//! their date index), and what planning, the scheduler and support read back.

use super::sql::{
    Bind, Hold, IDS_A_QUERY, ROWS, Val, bind_all, bind_vec, hold, in_list, insert_into, json_map,
    list, on_pool, on_tx, placeholders, shaped, values_rows,
};
use super::suppressions::normalise_address;
use super::{Result, Store, StoreError, Tx};

use crate::clock::{from_millis, to_millis};
use crate::model::{Contact, Event, StoredContact};
use chrono::{DateTime, FixedOffset, Utc};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use serde_json::{Map, Value};
use sqlx::{AssertSqlSafe, Row};

/// The date fields of a contact that anniversary jobs can use: `birthday` and every
/// attribute holding a `YYYY-MM-DD` date, as (field key, date).
pub fn contact_dates(c: &Contact) -> Vec<(String, String)> {
    // Only the canonical spelling: chrono's parser also takes spaces (any Unicode white
    // space) before a number, and `month_day` is the text after the year.
    let is_date = |s: &str| {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .is_ok_and(|d| s.is_ascii() && d.format("%Y-%m-%d").to_string() == s)
    };
    let mut out = Vec::new();
    if let Some(b) = c.birthday.as_deref().filter(|b| is_date(b)) {
        out.push(("birthday".to_string(), b.to_string()));
    }
    for (k, v) in &c.attributes {
        if let Some(s) = v.as_str().filter(|s| is_date(s)) {
            out.push((format!("attributes.{k}"), s.to_string()));
        }
    }
    out
}

pub(super) fn event_from_parts(
    id: String,
    kind: String,
    contact_id: String,
    at_ms: i64,
    offset: i64,
    data: String,
) -> Result<Event> {
    let offset = FixedOffset::east_opt(i32::try_from(offset).unwrap_or(0))
        .unwrap_or(FixedOffset::east_opt(0).expect("zero offset"));
    Ok(Event {
        id,
        kind,
        occurred_at: from_millis(at_ms).with_timezone(&offset),
        contact_id,
        data: json_map(data)?,
    })
}

pub(super) fn contact_from_row<R: Row>(r: &R) -> Result<Contact>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Contact {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        locale: r.try_get("locale")?,
        timezone: r.try_get("timezone")?,
        birthday: r.try_get("birthday")?,
        attributes: json_map(r.try_get("attributes")?)?,
        consent: json_map(r.try_get("consent")?)?,
    })
}

impl Store {
    /// The contact's events, oldest first.
    pub async fn events_of(&self, contact_id: &str) -> Result<Vec<Event>> {
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(
                "SELECT id, type, contact_id, occurred_at, occurred_offset, data FROM events WHERE contact_id = $1 ORDER BY occurred_at, id",
            )
            .bind(contact_id)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    event_from_parts(
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                    )
                })
                .collect()
        })
    }

    /// Contacts with an event of `kind` between `from` and `to`.
    pub async fn contacts_with_event(
        &self,
        kind: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        on_pool!(self, |pool, _b| {
            Ok(sqlx::query_scalar(
                "SELECT DISTINCT contact_id FROM events WHERE type = $1 AND occurred_at >= $2 AND occurred_at <= $3",
            )
            .bind(kind)
            .bind(to_millis(from))
            .bind(to_millis(to))
            .fetch_all(pool)
            .await?)
        })
    }

    /// Contacts `job_id` sent to since `since`.
    pub async fn contacts_sent_by(
        &self,
        job_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        on_pool!(self, |pool, _b| {
            Ok(sqlx::query_scalar("SELECT DISTINCT contact_id FROM messages WHERE job_id = $1 AND state = 'sent' AND sent_at >= $2")
                .bind(job_id)
                .bind(to_millis(since))
                .fetch_all(pool)
                .await?)
        })
    }

    /// Every contact id (an audience without `had_event`).
    pub async fn all_contact_ids(&self) -> Result<Vec<String>> {
        on_pool!(self, |pool, _b| Ok(sqlx::query_scalar(
            "SELECT id FROM contacts ORDER BY id"
        )
        .fetch_all(pool)
        .await?))
    }

    /// Contacts by id, in chunks.
    pub async fn contacts(&self, ids: &[String]) -> Result<Vec<Contact>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT id, name, email, phone, locale, timezone, birthday, attributes, consent FROM contacts WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let binds: Vec<Bind> = chunk.iter().map(|i| Bind::Text(Some(i.clone()))).collect();
            let rows: Vec<Contact> = on_pool!(self, |pool, _b| {
                let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(contact_from_row)
                    .collect::<Result<Vec<_>>>()
            })?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// One contact.
    pub async fn contact(&self, id: &str) -> Result<Option<Contact>> {
        Ok(self.contacts(&[id.to_string()]).await?.into_iter().next())
    }

    /// Compute `email_key` for the contacts that have an address but no key: those whose
    /// address v14 could not key in SQL (beyond ASCII, or with white space around it). Every
    /// write of a contact writes its key, so after this has run once there are none, and the
    /// check on each open is one look into the empty `contacts_unkeyed`. Key order, one
    /// transaction per page, so a stop part way keeps what was done and the next open goes on.
    pub(super) async fn key_contacts(&self) -> Result<u64> {
        const PAGE: i64 = 1_000;
        let mut keyed = 0;
        let mut after = String::new();
        loop {
            let rows: Vec<(String, String)> = on_pool!(self, |pool, _b| {
                sqlx::query_as(
                    "SELECT id, email FROM contacts WHERE email IS NOT NULL AND email_key IS NULL \
                     AND id > $1 ORDER BY id LIMIT $2",
                )
                .bind(&after)
                .bind(PAGE)
                .fetch_all(pool)
                .await?
            });
            let Some((last, _)) = rows.last() else {
                return Ok(keyed);
            };
            after = last.clone();
            on_pool!(self, |pool, begin| {
                let mut tx = pool.begin_with(begin).await?;
                for (id, email) in &rows {
                    // Another node may have rewritten the contact meanwhile, with its key.
                    keyed += sqlx::query(
                        "UPDATE contacts SET email_key = $2 WHERE id = $1 AND email = $3 AND email_key IS NULL",
                    )
                    .bind(id)
                    .bind(normalise_address("email", email))
                    .bind(email)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
            });
        }
    }
}

// Batched ingest writes: one statement per shape for a whole batch.

/// Stored `data` of a contact's events of one type: (contact id, type) → data.
pub(super) type EventDataByContact = HashMap<(String, String), Vec<crate::model::StopEvent>>;

/// A JSON object as compact text, the same as `Value::Object(map).to_string()`, uncopied.
pub(super) fn json_text(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).expect("a JSON map always serializes")
}

impl Tx {
    pub(super) fn is_pg(&self) -> bool {
        matches!(self.tx, super::TxInner::Postgres(_))
    }

    /// The contacts of `ids` that may have events, dates or messages stored: on SQLite all but
    /// `unstored`, those this transaction read as not stored, since its `BEGIN IMMEDIATE`
    /// keeps every other writer out until it ends and `store check` holds every event, date
    /// and message to its contact; on PostgreSQL all, as another node may store one meanwhile.
    /// For an import of new contacts, the probes left out were 5.6% of its instructions,
    /// all on SQLite's thread (README, Benchmarks).
    pub(super) fn maybe_stored<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
        unstored: &HashSet<&str>,
    ) -> Vec<String> {
        let pg = self.is_pg();
        ids.filter(|id| pg || !unstored.contains(id))
            .map(str::to_string)
            .collect()
    }

    /// Digests of the stored events among `ids`.
    pub async fn event_digests(&mut self, ids: &[String]) -> Result<HashMap<String, String>> {
        let pg = self.is_pg();
        let mut out = HashMap::new();
        for chunk in ids.chunks(IDS_A_QUERY) {
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

    /// The stored contacts among `ids`, held (PostgreSQL) until the transaction ends: an
    /// ingest writes back whole contact rows merged from what it read, so another writer of
    /// the same contact between its read and its commit would be overwritten (a withdrawn
    /// consent coming back). SQLite's write transactions take turns already.
    pub async fn contacts_by_id(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<String, StoredContact>> {
        let pg = self.is_pg();
        self.hold_contacts(ids).await?;
        let mut out = HashMap::new();
        for chunk in ids.chunks(IDS_A_QUERY) {
            let binds = in_list(chunk);
            let sql = format!(
                "SELECT id, name, email, phone, locale, timezone, birthday, attributes, consent, fields_at FROM contacts WHERE id IN ({})",
                list(1, binds.len(), pg)
            );
            let contacts: Vec<StoredContact> = on_tx!(self, |conn| {
                let rows = bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(StoredContact {
                            contact: contact_from_row(r)?,
                            fields_at: r.try_get::<Option<i64>, _>("fields_at")?.map(from_millis),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            });
            out.extend(contacts.into_iter().map(|c| (c.contact.id.clone(), c)));
        }
        Ok(out)
    }

    /// The stored events of `types` of `contacts`, as `stop_when` compares them; those of
    /// `unstored` are not looked for where none can be stored ([`Tx::maybe_stored`]).
    pub async fn event_data_for(
        &mut self,
        contacts: &[String],
        unstored: &HashSet<&str>,
        types: &[String],
    ) -> Result<EventDataByContact> {
        let mut out: EventDataByContact = HashMap::new();
        if types.is_empty() {
            return Ok(out);
        }
        let pg = self.is_pg();
        let stored: Vec<String>;
        let contacts = if unstored.is_empty() {
            contacts
        } else {
            stored = self.maybe_stored(contacts.iter().map(String::as_str), unstored);
            &stored
        };
        for chunk in contacts.chunks(IDS_A_QUERY) {
            let mut binds = in_list(chunk);
            let sql = format!(
                "SELECT contact_id, type, data, id, occurred_at FROM events WHERE contact_id IN ({}) AND type IN ({})",
                list(1, binds.len(), pg),
                list(1 + binds.len(), types.len(), pg)
            );
            binds.extend(types.iter().map(|t| Bind::Text(Some(t.clone()))));
            type Row = (String, String, String, String, i64);
            let found: Vec<Row> = on_tx!(self, |conn| {
                let rows = bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get(0)?,
                            r.try_get(1)?,
                            r.try_get(2)?,
                            r.try_get(3)?,
                            r.try_get(4)?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?
            });
            for (contact, kind, data, id, at) in found {
                out.entry((contact, kind.clone()))
                    .or_default()
                    .push(crate::model::StopEvent {
                        kind,
                        id,
                        at: from_millis(at),
                        data: json_map(data)?,
                    });
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
        let texts: Vec<(String, Option<String>)> = events
            .iter()
            .map(|(e, _)| (json_text(&e.data), e.order_id()))
            .collect();
        let rows: Vec<_> = events
            .iter()
            .zip(&texts)
            .map(|((e, digest), (data, order))| {
                [
                    Val::Text(Some(&e.id)),
                    Val::Text(Some(&e.kind)),
                    Val::Text(Some(&e.contact_id)),
                    Val::Int(Some(e.occurred_at.timestamp_millis())),
                    Val::Int(Some(i64::from(e.occurred_at.offset().local_minus_utc()))),
                    Val::Int(Some(to_millis(now))),
                    Val::Text(order.as_deref()),
                    Val::Text(Some(data)),
                    Val::Text(Some(digest)),
                ]
            })
            .collect();
        let sql = |values: &str| {
            format!(
                "{} events (id, type, contact_id, occurred_at, occurred_offset, received_at, order_id, data, digest) \
                 VALUES {values} ON CONFLICT (id) DO NOTHING",
                insert_into(pg)
            )
        };
        if !pg {
            // Under `BEGIN IMMEDIATE` no other writer can take an id between the caller's
            // read of the stored ids and this insert, so all go in (and SQLite is not asked
            // for them back: through sqlx each returned row was a wake-up of this thread).
            let n: u64 = self.write_rows(sql, &rows).await?.iter().map(|s| s.1).sum();
            if n as usize != events.len() {
                return Err(StoreError::Invariant(format!(
                    "{n} of {} events inserted while this transaction held the write lock \
                     (the ids were read as new in it); nothing of the batch is kept",
                    events.len()
                )));
            }
            return Ok(events.iter().map(|(e, _)| e.id.clone()).collect());
        }
        let mut inserted = HashSet::with_capacity(events.len());
        for chunk in shaped(&rows) {
            let sql = format!("{} RETURNING id", sql(&values_rows(chunk.len(), 9, pg)));
            let b: Vec<Bind> = chunk.iter().flatten().map(Bind::from).collect();
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

    /// Insert or update contacts (each id once) and rewrite their anniversary dates; the
    /// old dates of `unstored` are not deleted where none can be stored
    /// ([`Tx::maybe_stored`]).
    pub async fn upsert_contacts(
        &mut self,
        contacts: &[&StoredContact],
        unstored: &HashSet<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let pg = self.is_pg();
        let texts: Vec<(Option<String>, String, String)> = contacts
            .iter()
            .map(|c| {
                let c = &c.contact;
                (
                    c.email.as_deref().map(|e| normalise_address("email", e)),
                    json_text(&c.attributes),
                    json_text(&c.consent),
                )
            })
            .collect();
        let rows: Vec<_> = contacts
            .iter()
            .zip(&texts)
            .map(
                |(
                    StoredContact {
                        contact: c,
                        fields_at,
                    },
                    (key, attributes, consent),
                )| {
                    [
                        Val::Text(Some(&c.id)),
                        Val::Text(c.name.as_deref()),
                        Val::Text(c.email.as_deref()),
                        Val::Text(key.as_deref()),
                        Val::Text(c.phone.as_deref()),
                        Val::Text(c.locale.as_deref()),
                        Val::Text(c.timezone.as_deref()),
                        Val::Text(c.birthday.as_deref()),
                        Val::Text(Some(attributes)),
                        Val::Text(Some(consent)),
                        Val::Int(Some(to_millis(now))),
                        Val::Int(Some(to_millis(now))),
                        Val::Int(fields_at.map(to_millis)),
                    ]
                },
            )
            .collect();
        let upsert = |values: &str| {
            format!(
                "{} contacts (id, name, email, email_key, phone, locale, timezone, birthday, attributes, consent, created_at, updated_at, fields_at) \
                 VALUES {values} ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, email_key = excluded.email_key, phone = excluded.phone, \
                 locale = excluded.locale, timezone = excluded.timezone, birthday = excluded.birthday, \
                 attributes = excluded.attributes, consent = excluded.consent, updated_at = excluded.updated_at, fields_at = excluded.fields_at",
                insert_into(pg)
            )
        };
        self.write_rows(upsert, &rows).await?;
        let ids = self.maybe_stored(contacts.iter().map(|c| c.contact.id.as_str()), unstored);
        for ids in ids.chunks(ROWS) {
            let ids = in_list(ids);
            let del = format!(
                "DELETE FROM contact_dates WHERE contact_id IN ({})",
                list(1, ids.len(), pg)
            );
            on_tx!(self, |conn| {
                bind_vec!(sqlx::query(AssertSqlSafe(del)), ids)
                    .execute(&mut *conn)
                    .await?;
            });
        }
        let dates: Vec<(&str, String, String)> = contacts
            .iter()
            .flat_map(|c| {
                contact_dates(&c.contact)
                    .into_iter()
                    .map(|(f, d)| (c.contact.id.as_str(), f, d))
            })
            .collect();
        let rows: Vec<_> = dates
            .iter()
            .map(|(id, field, date)| {
                [
                    Val::Text(Some(id)),
                    Val::Text(Some(field)),
                    Val::Text(date.get(5..)),
                    Val::Text(Some(date)),
                ]
            })
            .collect();
        let insert = |values: &str| {
            format!(
                "{} contact_dates (contact_id, field, month_day, date) VALUES {values}",
                insert_into(pg)
            )
        };
        self.write_rows(insert, &rows).await?;
        Ok(())
    }
}

impl Tx {
    /// Hold `ids` against every other writer of these contacts until this transaction ends
    /// (see [`super::sql::HOLD`]).
    pub async fn hold_contacts(&mut self, ids: &[String]) -> Result<()> {
        let pg = self.is_pg();
        on_tx!(self, |conn| hold!(&mut *conn, pg, ids, Hold::Contacts));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::ROWS;

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
        assert!(in_list(&[] as &[String]).is_empty());
    }
}
