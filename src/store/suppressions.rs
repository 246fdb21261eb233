//! The suppression list and open callback tasks: what support and agents change by hand.

use super::sql::{Bind, bind_vec, on_pool};
use super::{Result, Store};
use crate::clock::{from_millis, to_millis};
use crate::model::{Contact, MessageRecord};
use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashMap;

/// An address that must not be contacted on a channel.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Suppression {
    pub channel: String,
    pub address: String,
    pub reason: String,
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
    /// A soft-bounce suppression ends here (the address is tried again); `None`: no end.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Suppression {
    /// An entry an erasure left: the address as a one-way hash ([`hashed_address`]), which
    /// still stops sends to the address should it come back.
    pub fn erased(&self) -> bool {
        self.address.starts_with(HASHED)
    }
}

/// Add (or update the reason and source of) a suppressed address: channel, address
/// (normalised), reason, source, created_at.
pub(super) const SUPPRESS: &str = "INSERT INTO suppressions (channel, address, reason, source, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (channel, address) DO UPDATE SET reason = excluded.reason, source = excluded.source, expires_at = NULL";

/// A change to the suppression list: id, channel, address, change, reason, actor, at.
pub(super) const LOG_CHANGE: &str = "INSERT INTO suppression_changes (id, channel, address, change, reason, actor, at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Records a change to the list (`added`, `removed`) on `$conn`, in the transaction that
/// made it: `suppress list --history` shows every change with who made it, whichever path
/// (CLI, console, link, SMS reply, bounce) it came by.
macro_rules! log_change {
    ($conn:expr, $channel:expr, $address:expr, $change:expr, $reason:expr, $actor:expr, $at:expr) => {{
        let at: chrono::DateTime<chrono::Utc> = $at;
        sqlx::query($crate::store::suppressions::LOG_CHANGE)
            .bind($crate::values::new_id(at))
            .bind($channel)
            .bind($address)
            .bind($change)
            .bind($reason)
            .bind($actor)
            .bind($crate::clock::to_millis(at))
            .execute($conn)
            .await?;
    }};
}
pub(super) use log_change;

/// Removes an address's entry and the hashed one an erasure left for it (`$address` as
/// written; normalised and hashed here) on `$conn`; evaluates to the rows removed.
macro_rules! remove_entries {
    ($conn:expr, $channel:expr, $address:expr) => {{
        let channel: &str = $channel;
        let address: &str = $address;
        sqlx::query(
            "DELETE FROM suppressions WHERE channel = $1 AND (address = $2 OR address = $3)",
        )
        .bind(channel)
        .bind($crate::store::suppressions::normalise_address(
            channel, address,
        ))
        .bind($crate::store::suppressions::hashed_address(
            channel, address,
        ))
        .execute($conn)
        .await?
        .rows_affected()
    }};
}
pub(super) use remove_entries;

/// The columns [`suppression_from_row`] reads, in its order, and the table: each query of
/// the list starts with it.
macro_rules! select_suppressions {
    () => {
        "SELECT channel, address, reason, source, created_at, expires_at FROM suppressions "
    };
}

impl Store {
    /// Add (or update the reason of) a suppressed address, and record who did (`actor`) in
    /// the same transaction. Email addresses are kept in lower case; pending messages to it
    /// are stopped at send time.
    pub async fn suppress(
        &self,
        channel: &str,
        address: &str,
        reason: &str,
        source: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let address = normalise_address(channel, address);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let n = sqlx::query(SUPPRESS)
                .bind(channel)
                .bind(&address)
                .bind(reason)
                .bind(source)
                .bind(to_millis(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            log_change!(&mut *tx, channel, &address, "added", reason, actor, now);
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// Remove an address from the list, and the hashed entry an erasure left for it, and
    /// record who did and why; `false` if it was not there (nothing recorded).
    pub async fn unsuppress(
        &self,
        channel: &str,
        address: &str,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let plain = normalise_address(channel, address);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let n = remove_entries!(&mut *tx, channel, address);
            if n > 0 {
                log_change!(&mut *tx, channel, &plain, "removed", reason, actor, now);
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    pub async fn suppressions(&self, channel: Option<&str>) -> Result<Vec<Suppression>> {
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(concat!(
                select_suppressions!(),
                "WHERE $1 IS NULL OR channel = $1 ORDER BY created_at, address"
            ))
            .bind(channel)
            .fetch_all(pool)
            .await?;
            rows.iter().map(suppression_from_row).collect()
        })
    }

    /// The entries for one contact's addresses, oldest first: as written and under their
    /// erased (hashed) forms, exactly what a claim asks for the contact ([`lookups_for`]).
    /// The console's customer page and a contact's export show these, so that support sees
    /// why a contact that came back after an erasure is not written to.
    pub async fn suppressions_of(
        &self,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Vec<Suppression>> {
        let pg = matches!(self.pool, super::Pool::Postgres(_));
        let mut out = Vec::new();
        for (sql, binds) in lookups_for(&[(email, phone)], pg) {
            on_pool!(self, |pool, _b| {
                for r in bind_vec!(sqlx::query(AssertSqlSafe(sql)), binds)
                    .fetch_all(pool)
                    .await?
                {
                    out.push(suppression_from_row(&r)?);
                }
            });
        }
        out.sort_by(|a, b| (a.created_at, &a.address).cmp(&(b.created_at, &b.address)));
        Ok(out)
    }

    /// The whole list in memory, to be asked per contact as a claim asks it (the forecast's
    /// in-memory path sends without claims).
    pub async fn suppression_list(&self) -> Result<SuppressionList> {
        Ok(SuppressionList::from(self.suppressions(None).await?))
    }

    /// Close an open callback task (an agent called the customer). `false` if there is no
    /// open task with this id.
    pub async fn close_task(
        &self,
        id: &str,
        note: &str,
        agent: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let now_ms = to_millis(now);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let n = sqlx::query(
                "UPDATE messages SET state = 'sent', sent_at = $2, updated_at = $2, attempts = attempts + 1, tries = tries + 1, channel = 'agent', reason = $3 \
                 WHERE id = $1 AND state = 'open'",
            )
            .bind(id)
            .bind(now_ms)
            .bind(format!("done: {note}"))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "INSERT INTO attempts (message_id, attempt, at, channel, address, outcome, code, detail, provider_id, node, duration_ms) \
                     VALUES ($1, (SELECT attempts FROM messages WHERE id = $1), $2, 'agent', $3, 'sent', NULL, $4, NULL, NULL, 0)",
                )
                .bind(id)
                .bind(now_ms)
                .bind(agent)
                .bind(note)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    /// Callback tasks (rows for the `webhook` channel). Still to do: oldest due first, the
    /// customer who has waited longest on top, asked of the store rather than filtered after
    /// the limit (a year of closed tasks ahead of them must not push open ones out). Done, or
    /// every one: the newest `limit` due, newest first: what an agent looks back on is the
    /// last days, not the first tasks the store ever held.
    pub async fn callback_tasks(&self, which: Tasks, limit: i64) -> Result<Vec<MessageRecord>> {
        use crate::model::MessageState::{
            Cancelled, Claimed, Failed, HeldOut, Open, Retrying, Scheduled, Sent,
        };
        let filter = super::LogFilter {
            limit,
            channel_plan: Some("webhook".into()),
            states: match which {
                Tasks::ToDo => vec![Scheduled, Open, Claimed, Retrying],
                Tasks::Done => vec![Sent, Failed, Cancelled, HeldOut],
                Tasks::All => Vec::new(),
            },
            newest: which != Tasks::ToDo,
            ..Default::default()
        };
        self.find_messages(&filter).await
    }
}

/// Which callback tasks [`Store::callback_tasks`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tasks {
    /// Waiting, claimed or retrying.
    ToDo,
    /// Closed by an agent, delivered to a CRM, failed or cancelled.
    Done,
    All,
}

/// A row of [`select_suppressions!`] as a [`Suppression`].
pub(super) fn suppression_from_row<R: Row>(r: &R) -> Result<Suppression>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Suppression {
        channel: r.try_get(0)?,
        address: r.try_get(1)?,
        reason: r.try_get(2)?,
        source: r.try_get(3)?,
        created_at: from_millis(r.try_get(4)?),
        expires_at: r.try_get::<Option<i64>, _>(5)?.map(from_millis),
    })
}

/// (reason, end) of a suppressed address.
type Entry = (String, Option<DateTime<Utc>>);

/// The suppression list held in memory: (channel, address) → entry.
pub struct SuppressionList {
    by_address: HashMap<(String, String), Entry>,
}

impl From<Vec<Suppression>> for SuppressionList {
    fn from(list: Vec<Suppression>) -> Self {
        let by_address = list
            .into_iter()
            .map(|s| ((s.channel, s.address), (s.reason, s.expires_at)))
            .collect();
        SuppressionList { by_address }
    }
}

impl SuppressionList {
    /// The entries for the contact's addresses, as the claim and the forecast ask: the
    /// address normalised as [`Store::suppress`] stores it, and the hashed entry an erasure
    /// left (which has no end, and whose reason wins).
    pub fn of(&self, contact: &Contact) -> ContactSuppressions {
        let mut entries = Vec::new();
        // A claim's list holds only the entries of its own addresses, and is mostly empty:
        // then there is nothing to hash an address for (SHA-256 is in software here, and
        // the claim's lookups hashed each address once already).
        if self.by_address.is_empty() {
            return ContactSuppressions { entries };
        }
        let forms = [
            ("email", contact.email.as_deref()),
            ("sms", contact.phone.as_deref()),
        ];
        for (channel, address) in forms {
            let Some(address) = address.map(|a| normalise_address(channel, a)) else {
                continue;
            };
            let hashed = self
                .by_address
                .get(&(channel.to_string(), hashed_address(channel, &address)))
                .map(|(reason, _)| (reason, None));
            let plain = || {
                self.by_address
                    .get(&(channel.to_string(), address.clone()))
                    .map(|(reason, ends)| (reason, *ends))
            };
            if let Some((reason, ends)) = hashed.or_else(plain) {
                entries.push((channel.to_string(), reason.clone(), ends));
            }
        }
        ContactSuppressions { entries }
    }
}

/// One contact's suppressed addresses: (channel, reason, end).
pub struct ContactSuppressions {
    entries: Vec<(String, String, Option<DateTime<Utc>>)>,
}

impl ContactSuppressions {
    /// (channel, reason) of the entries in force at `now`, as [`Claimed::suppressed`].
    ///
    /// [`Claimed::suppressed`]: super::Claimed::suppressed
    pub fn at(&self, now: DateTime<Utc>) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|(_, _, ends)| ends.is_none_or(|e| e > now))
            .map(|(channel, reason, _)| (channel.clone(), reason.clone()))
            .collect()
    }
}

/// The one-way form an erased contact's addresses are kept in on the suppression list:
/// `sha256:` and the hex SHA-256 of `aftercare:<channel>:<normalised address>`. The address
/// cannot be read back from it, yet the same address, should it come again, is found.
pub fn hashed_address(channel: &str, address: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update("aftercare:")
        .chain_update(channel)
        .chain_update(":")
        .chain_update(normalise_address(channel, address))
        .finalize();
    // Runs for each claimed message's addresses: a `format!` per byte was two thirds of its
    // cost, 2.3% of a dispatch's instructions (callgrind).
    [HASHED, &hex::encode(digest)].concat()
}

/// The prefix of hashed suppression entries.
pub(super) const HASHED: &str = "sha256:";

/// The statements that find the entries for the claimed messages' contacts, given their
/// (email, phone): each address as [`SuppressionList::of`] asks for it — normalised as
/// [`Store::suppress`] stores it, and hashed as an erasure leaves it. Each statement's SQL
/// and binds; the rows are [`select_suppressions!`]'s.
///
/// The addresses come from the claimed rows, not from SQL: `LOWER()` in SQL lowers ASCII
/// only (SQLite; PostgreSQL by its locale), so a suppressed `ülla@…` was not found for a
/// contact written `ÜLLA@…`, and the claim sent to it.
pub(super) fn lookups_for(
    addresses: &[(Option<&str>, Option<&str>)],
    pg: bool,
) -> Vec<(String, Vec<Bind>)> {
    let mut forms = Vec::with_capacity(addresses.len() * 4);
    for (email, phone) in addresses {
        for (channel, address) in [("email", email), ("sms", phone)] {
            if let Some(a) = *address {
                forms.push(normalise_address(channel, a));
                forms.push(hashed_address(channel, a));
            }
        }
    }
    forms.sort();
    forms.dedup();
    forms
        .chunks(LOOKUP_BINDS)
        .map(|chunk| {
            // Padded to a power of two: one prepared statement for many batch sizes.
            let binds = super::sql::in_list(chunk);
            let list = super::sql::list(1, binds.len(), pg);
            // Both channels, so that the primary key (channel, address) finds them by index.
            let sql = format!(
                concat!(
                    select_suppressions!(),
                    "WHERE channel IN ('email', 'sms') AND address IN ({list})"
                ),
                list = list
            );
            (sql, binds)
        })
        .collect()
}

/// Addresses a lookup statement binds at most: a claim of 10,000 (`dispatch.batch_size`'s
/// largest) asks up to 40,000, past SQLite's 32,766 variables and PostgreSQL's 65,535
/// parameters once padded.
const LOOKUP_BINDS: usize = 4096;

/// Email addresses compare case-insensitively; phone numbers are E.164 already.
pub(super) fn normalise_address(channel: &str, address: &str) -> String {
    if channel == "email" {
        address.trim().to_lowercase()
    } else {
        address.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Erased contacts' entries were stored in this form: a hash made any other way would
    /// not find them, and an erased customer would be written to again. The values are
    /// Python's `hashlib.sha256(b"aftercare:<channel>:<address>").hexdigest()`.
    #[test]
    fn an_address_hashes_as_erasures_stored_it() {
        assert_eq!(
            hashed_address("email", " ÜLLA@Example.com\t"),
            "sha256:f2f02e0b0fc459a18a48a5c3067310d09790bf226ab4be0ab7c5888d9ffac691"
        );
        assert_eq!(
            hashed_address("sms", "+8613900166666"),
            "sha256:91bb172b9e1f65452bbe9cd26995390076b9f992c95d8cc4162cace39a21173c"
        );
    }

    fn texts(binds: &[Bind]) -> Vec<String> {
        binds
            .iter()
            .map(|b| match b {
                Bind::Text(Some(t)) => t.clone(),
                other => panic!("an address binds as text, not {other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_lookup_asks_each_address_lowered_beyond_ascii_and_hashed() {
        let asked = lookups_for(&[(Some("ÜLLA@Example.com"), Some("+491701234567"))], false);
        assert_eq!(asked.len(), 1);
        let binds = texts(&asked[0].1);
        for form in [
            "ülla@example.com".to_string(),
            hashed_address("email", "ülla@example.com"),
            "+491701234567".to_string(),
            hashed_address("sms", "+491701234567"),
        ] {
            assert!(binds.contains(&form), "{form} in {binds:?}");
        }
    }

    #[test]
    fn a_claim_of_ten_thousand_is_asked_in_statements_both_backends_take() {
        let addresses: Vec<_> = (0..10_000)
            .map(|i| {
                (
                    Some(format!("c{i}@example.com")),
                    Some(format!("+86138{i:08}")),
                )
            })
            .collect();
        for pg in [false, true] {
            let borrowed: Vec<_> = addresses
                .iter()
                .map(|(e, p)| (e.as_deref(), p.as_deref()))
                .collect();
            let asked = lookups_for(&borrowed, pg);
            let mut all = Vec::new();
            for (sql, binds) in &asked {
                assert!(binds.len() <= LOOKUP_BINDS, "{} binds", binds.len());
                assert_eq!(sql.matches(if pg { '$' } else { '?' }).count(), binds.len());
                all.extend(texts(binds));
            }
            all.sort();
            all.dedup();
            assert_eq!(all.len(), 40_000);
        }
    }
}
