//! Finding a customer from whatever support has in hand: a contact id, an email address in
//! any case, a phone number (already normalised to E.164 by the caller), an order id or a
//! message id. Every branch is one indexed lookup, so the answer does not grow with the
//! store (`bench/console_search.sh` measures it on a million messages).

use super::sql::on_pool;
use super::suppressions::normalise_address;
use super::{Result, Store};
use crate::model::Contact;
use std::collections::BTreeMap;

/// What to look for. `text` is tried as a contact id, an order id and a message id; `email`
/// and `phone` only when the caller recognised one.
#[derive(Debug, Clone, Default)]
pub struct SearchKey {
    pub text: String,
    /// An email address in any case: compared as the suppression list keeps addresses.
    pub email: Option<String>,
    /// E.164.
    pub phone: Option<String>,
}

/// A contact found, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub contact: Contact,
    /// `contact`, `email`, `phone`, `order` or `message`: the first way it matched.
    pub matched: &'static str,
}

/// Contacts one search returns at most (an order id shared by many contacts, say).
const MAX_HITS: i64 = 50;

const KINDS: [&str; 5] = ["contact", "email", "phone", "order", "message"];

impl Store {
    /// The contacts `key` names, in the order of [`KINDS`] (an exact contact id first).
    pub async fn search(&self, key: &SearchKey) -> Result<Vec<Hit>> {
        let text = key.text.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        // One statement, five index lookups. A branch whose key the caller did not
        // recognise binds NULL, which matches nothing.
        let sql = format!(
            "SELECT CAST(0 AS BIGINT), id FROM contacts WHERE id = $1 \
             UNION ALL SELECT CAST(1 AS BIGINT), id FROM contacts WHERE email_key = $2 \
             UNION ALL SELECT CAST(2 AS BIGINT), id FROM contacts WHERE phone = $3 \
             UNION ALL SELECT CAST(3 AS BIGINT), contact_id FROM events WHERE order_id = $1 \
             UNION ALL SELECT CAST(4 AS BIGINT), contact_id FROM messages WHERE id = $4 \
             LIMIT {MAX_HITS}"
        );
        let rows: Vec<(i64, String)> = on_pool!(self, |pool, _b| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(text)
                .bind(key.email.as_deref().map(|e| normalise_address("email", e)))
                .bind(key.phone.as_deref())
                .bind(text.to_lowercase())
                .fetch_all(pool)
                .await?
        });
        let mut how: BTreeMap<String, i64> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for (kind, id) in rows {
            if !how.contains_key(&id) {
                order.push(id.clone());
            }
            let e = how.entry(id).or_insert(kind);
            *e = (*e).min(kind);
        }
        let contacts = self.contacts(&order).await?;
        let mut hits: Vec<Hit> = contacts
            .into_iter()
            .map(|c| {
                let kind = how.get(&c.id).copied().unwrap_or(0);
                Hit {
                    matched: KINDS
                        .get(usize::try_from(kind).unwrap_or(0))
                        .copied()
                        .unwrap_or("contact"),
                    contact: c,
                }
            })
            .collect();
        hits.sort_by_key(|h| {
            (
                KINDS.iter().position(|k| *k == h.matched),
                h.contact.id.clone(),
            )
        });
        Ok(hits)
    }
}
