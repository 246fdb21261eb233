//! Bounces and complaints, what they did to the suppression list, and the reputation brake.
//!
//! A bounce row and its consequence are written in one transaction, so the log never says
//! an address was suppressed when it was not (the same rule as `replies`):
//! - hard and complaint: the address is suppressed on email with no end (a complaint also
//!   sets `consent.email = false` on every contact with that address);
//! - soft: counted; the `count`-th soft bounce within `within` suppresses it until
//!   `now + suppress_for`, after which the claim no longer sees it;
//! - rate limit and policy: kept for support, nothing else.
//!
//! A report carries its own id where it has one; the same report twice is stored once.
//! Every change to the list is also written to `suppression_changes` with who made it.

use super::sql::{Bind, bind_all, on_pool};
use super::suppressions::{LOG_CHANGE, normalise_address};
use super::{Result, Store};
use crate::clock::{from_millis, to_millis};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// One bounce or complaint to record.
#[derive(Debug, Clone)]
pub struct NewBounce {
    pub id: String,
    /// hard, soft, rate_limit, policy, complaint.
    pub kind: String,
    /// smtp, dsn, arf, ses, sendgrid, mailgun, postmark.
    pub source: String,
    pub address: String,
    pub message_id: Option<String>,
    pub attempt: Option<i64>,
    pub job_id: Option<String>,
    pub status: Option<String>,
    pub code: Option<i64>,
    pub detail: String,
    pub report_id: Option<String>,
    pub raw: Option<String>,
    pub at: DateTime<Utc>,
}

/// When soft bounces suppress an address, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct SoftRule {
    pub count: i64,
    pub within: chrono::Duration,
    pub suppress_for: chrono::Duration,
}

/// A stored bounce, for `logs`, the timeline and `bounces list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StoredBounce {
    pub id: String,
    pub kind: String,
    pub source: String,
    pub address: String,
    pub message_id: Option<String>,
    pub attempt: Option<i64>,
    pub job_id: Option<String>,
    pub status: Option<String>,
    pub code: Option<i64>,
    pub detail: String,
    pub report_id: Option<String>,
    /// What it did: `suppressed`, `suppressed until …`, `counted (n of m)`, `none`.
    pub action: String,
    pub received_at: DateTime<Utc>,
}

/// The email message a report answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncedMessage {
    pub id: String,
    pub job_id: String,
    pub class: String,
    /// The last email attempt's number, and the address it went to.
    pub attempt: Option<i64>,
    pub address: Option<String>,
}

/// A scope's brake.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Brake {
    pub scope: String,
    pub reason: String,
    pub engaged_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
    pub released_by: Option<String>,
}

/// The last sends of a scope and how many of them bounced hard or were complained about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    pub sends: i64,
    pub hard: i64,
    pub complaints: i64,
}

/// How far back a report naming only an address that no contact has looks for the send it
/// answers. The attempts are not indexed by address, so the search reads every attempt in
/// the window: unbounded, each such report read every attempt kept (400 days by default;
/// half a second for 1,000,000 of them), and a wave of bounces for erased contacts' addresses
/// read them all again each. A server gives up on a message after 4 to 5 days (RFC 5321
/// 4.5.4.1), so its report comes within a week; complaints carry the message's ids.
const ADDRESS_WINDOW_DAYS: i64 = 7;

const SELECT_BOUNCES: &str = "SELECT id, kind, source, address, message_id, attempt, job_id, status, code, detail, report_id, action, received_at FROM bounces";

/// The statement of [`Store::send_window`] and its binds.
fn send_window_statement(
    job_id: Option<&str>,
    n: i64,
    since: DateTime<Utc>,
    also: Option<&str>,
) -> (String, Vec<Bind>) {
    let mut binds = vec![
        Bind::Int(Some(to_millis(since))),
        Bind::Text(also.map(str::to_string)),
        Bind::Int(Some(n - i64::from(also.is_some()))),
    ];
    let job = match job_id {
        Some(j) => {
            binds.push(Bind::Text(Some(j.to_string())));
            "AND m.job_id = $4"
        }
        None => "",
    };
    let sql = format!(
        "SELECT COUNT(*), \
         COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM bounces b WHERE b.message_id = w.id AND b.kind = 'hard') THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM bounces b WHERE b.message_id = w.id AND b.kind = 'complaint') THEN 1 ELSE 0 END), 0) \
         FROM (SELECT id FROM messages WHERE id = $2 \
         UNION ALL SELECT id FROM (SELECT m.id FROM attempts a CROSS JOIN messages m \
         WHERE m.id = a.message_id AND a.attempt = m.attempts AND a.at > $1 AND a.channel = 'email' \
         AND m.channel = 'email' AND m.state IN ('sent', 'failed') AND m.id <> COALESCE($2, '') {job} \
         ORDER BY a.at DESC LIMIT $3) recent) w"
    );
    (sql, binds)
}

fn bounce_from_row<R: Row>(r: &R) -> Result<StoredBounce>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredBounce {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        source: r.try_get(2)?,
        address: r.try_get(3)?,
        message_id: r.try_get(4)?,
        attempt: r.try_get(5)?,
        job_id: r.try_get(6)?,
        status: r.try_get(7)?,
        code: r.try_get(8)?,
        detail: r.try_get(9)?,
        report_id: r.try_get(10)?,
        action: r.try_get(11)?,
        received_at: from_millis(r.try_get(12)?),
    })
}

impl Store {
    /// Store a bounce or complaint and apply it to the suppression list in one transaction.
    /// `None` when the same report (source and report id) is stored already.
    pub async fn record_bounce(&self, b: &NewBounce, soft: SoftRule) -> Result<Option<String>> {
        let address = normalise_address("email", &b.address);
        let domain = address.rsplit('@').next().unwrap_or_default().to_string();
        let at = to_millis(b.at);
        let pg = matches!(self.pool, super::Pool::Postgres(_));
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            // One report of an address at a time: a soft bounce counts the address's earlier
            // ones, and two at once each counted the other out (no suppression at the
            // threshold).
            super::sql::hold!(
                &mut *tx,
                pg,
                std::slice::from_ref(&address),
                super::sql::Hold::Addresses
            );
            if b.report_id.is_some() {
                let seen: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM bounces WHERE source = $1 AND report_id = $2",
                )
                .bind(&b.source)
                .bind(&b.report_id)
                .fetch_optional(&mut *tx)
                .await?;
                if seen.is_some() {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
            let reason = format!(
                "{} bounce{}: {}{}",
                b.kind,
                b.status
                    .as_deref()
                    .map(|s| format!(" {s}"))
                    .unwrap_or_default(),
                b.detail,
                b.report_id
                    .as_deref()
                    .map(|r| format!(" (report {r})"))
                    .unwrap_or_default()
            );
            let action = match b.kind.as_str() {
                "hard" | "complaint" => {
                    let reason = if b.kind == "complaint" {
                        format!(
                            "complaint via {}: {}{}",
                            b.source,
                            b.detail,
                            b.report_id
                                .as_deref()
                                .map(|r| format!(" (report {r})"))
                                .unwrap_or_default()
                        )
                    } else {
                        reason.clone()
                    };
                    sqlx::query(
                        "INSERT INTO suppressions (channel, address, reason, source, created_at, expires_at) VALUES ('email', $1, $2, $3, $4, NULL) \
                         ON CONFLICT (channel, address) DO UPDATE SET reason = excluded.reason, source = excluded.source, \
                         created_at = excluded.created_at, expires_at = NULL",
                    )
                    .bind(&address)
                    .bind(&reason)
                    .bind(&b.source)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(LOG_CHANGE)
                        .bind(crate::values::new_id(b.at))
                        .bind("email")
                        .bind(&address)
                        .bind("added")
                        .bind(&reason)
                        .bind(&b.source)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    if b.kind == "complaint" {
                        // Held before their consent is read: an ingest writing the same
                        // contact meanwhile would put its own copy of the consent back.
                        if pg {
                            let ids: Vec<String> =
                                sqlx::query_scalar("SELECT id FROM contacts WHERE email_key = $1")
                                    .bind(&address)
                                    .fetch_all(&mut *tx)
                                    .await?;
                            super::sql::hold!(&mut *tx, pg, &ids, super::sql::Hold::Contacts);
                        }
                        let rows =
                            sqlx::query("SELECT id, consent FROM contacts WHERE email_key = $1")
                                .bind(&address)
                                .fetch_all(&mut *tx)
                                .await?;
                        for r in rows {
                            let id: String = r.try_get(0)?;
                            let consent: String = r.try_get(1)?;
                            let mut map: serde_json::Map<String, serde_json::Value> =
                                serde_json::from_str(&consent).unwrap_or_default();
                            map.insert("email".into(), serde_json::Value::Bool(false));
                            // A withdrawal dated now: an event from before the complaint,
                            // imported later, cannot give the consent back (plan::ingest).
                            sqlx::query(
                                "UPDATE contacts SET consent = $2, fields_at = \
                                 CASE WHEN fields_at IS NULL OR fields_at < $3 THEN $3 ELSE fields_at END \
                                 WHERE id = $1",
                            )
                            .bind(&id)
                            .bind(serde_json::Value::Object(map).to_string())
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                        }
                        "suppressed; consent.email = false".to_string()
                    } else {
                        "suppressed".to_string()
                    }
                }
                "soft" => {
                    let since = to_millis(b.at - soft.within);
                    let before: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM bounces WHERE address = $1 AND kind = 'soft' AND received_at > $2",
                    )
                    .bind(&address)
                    .bind(since)
                    .fetch_one(&mut *tx)
                    .await?;
                    let n = before + 1;
                    if n >= soft.count {
                        let end = to_millis(b.at + soft.suppress_for);
                        let reason = format!(
                            "{n} soft bounces within {}; last: {}",
                            crate::duration::format(soft.within.to_std().unwrap_or_default()),
                            reason
                        );
                        // A suppression without end (hard, complaint, support) stays as it is.
                        sqlx::query(
                            "INSERT INTO suppressions (channel, address, reason, source, created_at, expires_at) VALUES ('email', $1, $2, $3, $4, $5) \
                             ON CONFLICT (channel, address) DO UPDATE SET reason = excluded.reason, source = excluded.source, \
                             created_at = excluded.created_at, expires_at = excluded.expires_at \
                             WHERE suppressions.expires_at IS NOT NULL",
                        )
                        .bind(&address)
                        .bind(&reason)
                        .bind(&b.source)
                        .bind(at)
                        .bind(end)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(LOG_CHANGE)
                            .bind(crate::values::new_id(b.at))
                            .bind("email")
                            .bind(&address)
                            .bind("added")
                            .bind(&reason)
                            .bind(&b.source)
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                        format!(
                            "suppressed until {}",
                            from_millis(end).format("%Y-%m-%d %H:%M:%SZ")
                        )
                    } else {
                        format!("counted ({n} of {})", soft.count)
                    }
                }
                _ => "none".to_string(),
            };
            sqlx::query(
                "INSERT INTO bounces (id, kind, source, address, domain, message_id, attempt, job_id, status, code, detail, report_id, raw, action, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(&b.id)
            .bind(&b.kind)
            .bind(&b.source)
            .bind(&address)
            .bind(&domain)
            .bind(&b.message_id)
            .bind(b.attempt)
            .bind(&b.job_id)
            .bind(&b.status)
            .bind(b.code)
            .bind(&b.detail)
            .bind(&b.report_id)
            .bind(&b.raw)
            .bind(&action)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(action))
        })
    }

    /// The email message a report answers: by our outbox id (VERP, Message-ID), else by
    /// the id a provider or server gave the attempt, else the last email to the address
    /// (of a contact's with it, or sent within [`ADDRESS_WINDOW_DAYS`] before `now`).
    pub async fn bounced_message(
        &self,
        outbox_id: Option<&str>,
        provider_id: Option<&str>,
        address: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<BouncedMessage>> {
        let address = address.map(|a| normalise_address("email", a));
        let since = to_millis(now - chrono::Duration::days(ADDRESS_WINDOW_DAYS));
        on_pool!(self, |pool, _b| {
            let mut id: Option<String> = None;
            if let Some(o) = outbox_id {
                id = sqlx::query_scalar("SELECT id FROM messages WHERE id = $1")
                    .bind(o)
                    .fetch_optional(pool)
                    .await?;
            }
            if id.is_none()
                && let Some(p) = provider_id
            {
                id = sqlx::query_scalar(
                    "SELECT message_id FROM attempts WHERE provider_id = $1 AND channel = 'email' ORDER BY at DESC LIMIT 1",
                )
                .bind(p)
                .fetch_optional(pool)
                .await?;
            }
            if id.is_none()
                && let Some(a) = &address
            {
                // The contacts with the address, by index; of their attempts, the newest that
                // went to it (a contact's address may have changed since).
                let sent: Vec<(String, String)> = sqlx::query_as(
                    "SELECT a.message_id, a.address FROM attempts a JOIN messages m ON m.id = a.message_id \
                     WHERE m.contact_id IN (SELECT id FROM contacts WHERE email_key = $1) \
                     AND a.channel = 'email' AND a.address IS NOT NULL ORDER BY a.at DESC LIMIT 100",
                )
                .bind(a)
                .fetch_all(pool)
                .await?;
                id = sent
                    .into_iter()
                    .find(|(_, to)| normalise_address("email", to) == *a)
                    .map(|(m, _)| m);
            }
            if id.is_none()
                && let Some(a) = &address
            {
                // An address no contact has now: the recent attempts themselves, newest first.
                // SQL's LOWER() lowers ASCII only, which is exact for an ASCII address (SQLite;
                // PostgreSQL's locale lowers ASCII the same); one beyond ASCII (`ÜLLA@…`
                // reported as `ülla@…`) is compared in Rust, as every other lookup does.
                id = if a.is_ascii() {
                    sqlx::query_scalar(
                        "SELECT message_id FROM attempts WHERE at >= $2 AND LOWER(address) = $1 AND channel = 'email' \
                         ORDER BY at DESC LIMIT 1",
                    )
                    .bind(a)
                    .bind(since)
                    .fetch_optional(pool)
                    .await?
                } else {
                    use futures::TryStreamExt;
                    let mut rows = sqlx::query_as::<_, (String, String)>(
                        "SELECT message_id, address FROM attempts WHERE at >= $1 AND channel = 'email' \
                         AND address IS NOT NULL ORDER BY at DESC",
                    )
                    .bind(since)
                    .fetch(pool);
                    let mut found = None;
                    while let Some((m, to)) = rows.try_next().await? {
                        if normalise_address("email", &to) == *a {
                            found = Some(m);
                            break;
                        }
                    }
                    found
                };
            }
            let Some(id) = id else { return Ok(None) };
            let Some(m) = sqlx::query("SELECT id, job_id, class FROM messages WHERE id = $1")
                .bind(&id)
                .fetch_optional(pool)
                .await?
            else {
                return Ok(None);
            };
            let last = sqlx::query(
                "SELECT attempt, address FROM attempts WHERE message_id = $1 AND channel = 'email' ORDER BY attempt DESC LIMIT 1",
            )
            .bind(&id)
            .fetch_optional(pool)
            .await?;
            let (attempt, address) = match last {
                Some(r) => (Some(r.try_get(0)?), r.try_get(1)?),
                None => (None, None),
            };
            Ok(Some(BouncedMessage {
                id: m.try_get(0)?,
                job_id: m.try_get(1)?,
                class: m.try_get(2)?,
                attempt,
                address,
            }))
        })
    }

    /// Bounces, newest first: of a message, of an address, or all.
    pub async fn bounces(
        &self,
        message_id: Option<&str>,
        address: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredBounce>> {
        // Only the filters given, so each reads its own index (`bounces_message`,
        // `bounces_address`): `$1 IS NULL OR message_id = $1` let neither be used, and a
        // timeline asking once a message read every bounce newest first each time.
        let mut conds = vec!["TRUE".to_string()];
        let mut binds = Vec::new();
        let address = address.map(|a| normalise_address("email", a));
        for (column, value) in [
            ("message_id", message_id.map(str::to_string)),
            ("address", address),
        ] {
            if let Some(v) = value {
                binds.push(Bind::Text(Some(v)));
                conds.push(format!("{column} = ${}", binds.len()));
            }
        }
        binds.push(Bind::Int(Some(limit)));
        let sql = format!(
            "{SELECT_BOUNCES} WHERE {} ORDER BY received_at DESC, id DESC LIMIT ${}",
            conds.join(" AND "),
            binds.len()
        );
        on_pool!(self, |pool, _b| {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                .fetch_all(pool)
                .await?;
            rows.iter().map(bounce_from_row).collect()
        })
    }

    /// The raw report of a bounce, for support.
    pub async fn bounce_raw(&self, id: &str) -> Result<Option<String>> {
        on_pool!(self, |pool, _b| {
            let raw: Option<Option<String>> =
                sqlx::query_scalar("SELECT raw FROM bounces WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
            Ok(raw.flatten())
        })
    }

    /// The last `n` email sends of a job (or of every job), after `since`, counting `also`
    /// (the message being settled now, not committed yet), with how many bounced hard or
    /// were complained about. A send is a message that ended `sent` or `failed` by email,
    /// dated by its last attempt: the attempts' time index walks back from now to the `n`th
    /// (messages have no index by the time they ended; ordering them by `updated_at` read
    /// every message, 0.2-0.3 s for 1,000,000, twice for each hard bounce or complaint).
    /// SQLite keeps the CROSS JOIN's order, attempts first; without statistics it began from
    /// every message of the job instead.
    pub async fn send_window(
        &self,
        job_id: Option<&str>,
        n: i64,
        since: DateTime<Utc>,
        also: Option<&str>,
    ) -> Result<Window> {
        let (sql, binds) = send_window_statement(job_id, n, since, also);
        on_pool!(self, |pool, _b| {
            let r = bind_all!(sqlx::query(AssertSqlSafe(sql)), &binds)
                .fetch_one(pool)
                .await?;
            Ok(Window {
                sends: r.try_get(0)?,
                hard: r.try_get(1)?,
                complaints: r.try_get(2)?,
            })
        })
    }

    /// Engage a scope's brake; `true` when it was not engaged already.
    pub async fn engage_brake(
        &self,
        scope: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        on_pool!(self, |pool, _b| {
            let n = sqlx::query(
                "INSERT INTO brakes (scope, reason, engaged_at, released_at, released_by) VALUES ($1, $2, $3, NULL, NULL) \
                 ON CONFLICT (scope) DO UPDATE SET reason = excluded.reason, engaged_at = excluded.engaged_at, \
                 released_at = NULL, released_by = NULL WHERE brakes.released_at IS NOT NULL",
            )
            .bind(scope)
            .bind(reason)
            .bind(to_millis(now))
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n > 0)
        })
    }

    /// Release a scope's brake; the messages it held (deferred by the gate) fall due now.
    /// `false` if it was not engaged.
    pub async fn release_brake(&self, scope: &str, by: &str, now: DateTime<Utc>) -> Result<bool> {
        let job = scope.strip_prefix("job:").map(str::to_string);
        let now = to_millis(now);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            let n = sqlx::query(
                "UPDATE brakes SET released_at = $2, released_by = $3 WHERE scope = $1 AND released_at IS NULL",
            )
            .bind(scope)
            .bind(now)
            .bind(by)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query(
                    "UPDATE messages SET due_at = $2, updated_at = $2 WHERE ($1 IS NULL OR job_id = $1) \
                     AND state IN ('scheduled', 'retrying') AND reason LIKE 'deferred: paused by the reputation brake%'",
                )
                .bind(&job)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// Every brake ever engaged (`engaged_only`: those holding now).
    pub async fn brakes(&self, engaged_only: bool) -> Result<Vec<Brake>> {
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(
                "SELECT scope, reason, engaged_at, released_at, released_by FROM brakes \
                 WHERE ($1 = 0 OR released_at IS NULL) ORDER BY scope",
            )
            .bind(i64::from(engaged_only))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Brake {
                        scope: r.try_get(0)?,
                        reason: r.try_get(1)?,
                        engaged_at: from_millis(r.try_get(2)?),
                        released_at: r.try_get::<Option<i64>, _>(3)?.map(from_millis),
                        released_by: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    /// The changes to an address's suppression, oldest first: (change, reason, actor, at).
    pub async fn suppression_changes(
        &self,
        channel: &str,
        address: &str,
    ) -> Result<Vec<(String, String, String, DateTime<Utc>)>> {
        let address = normalise_address(channel, address);
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(
                "SELECT change, reason, actor, at FROM suppression_changes WHERE channel = $1 AND address = $2 ORDER BY at, id",
            )
            .bind(channel)
            .bind(&address)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        from_millis(r.try_get(3)?),
                    ))
                })
                .collect()
        })
    }
}

use sqlx::AssertSqlSafe;

/// What `/metrics` shows of bounces and suppressions: counts over whole tables, which
/// `/metrics` keeps between scrapes (the brakes it reads at each scrape, by [`Store::brakes`]).
#[derive(Debug, Default)]
pub struct FeedbackFigures {
    /// (kind, recipient domain or `other`, count).
    pub bounces: Vec<(String, String, i64)>,
    /// (channel, reason class, count) of suppressions in force.
    pub suppressions: Vec<(String, String, i64)>,
}

/// The reason class of a suppression, from its source: what a label can hold. The sources
/// are the writers': `link` (the one-click unsubscribe, RFC 8058) and `token` (`aftercare
/// unsubscribe`), `sms-reply`, `cli`, `api` and `console: <agent>` (support), `erasure`
/// (an erased contact's hashed address), and the feedback paths (bounces, complaints),
/// told apart by their reason.
fn reason_class(source: Option<&str>, reason: &str) -> &'static str {
    match source {
        Some("link") | Some("token") => "unsubscribe",
        Some("sms-reply") => "sms_reply",
        Some("cli") | Some("api") | None => "support",
        Some(s) if s.starts_with("console: ") => "support",
        Some("erasure") => "erased",
        Some(_) if reason.starts_with("complaint") => "complaint",
        Some(_) if reason.starts_with("hard") => "hard",
        Some(_) if reason.contains("soft bounce") => "soft",
        Some(_) => "other",
    }
}

impl Store {
    pub async fn feedback_figures(&self, now: DateTime<Utc>) -> Result<FeedbackFigures> {
        let now = to_millis(now);
        on_pool!(self, |pool, _b| {
            let mut f = FeedbackFigures::default();
            let rows = sqlx::query(
                "SELECT kind, domain, COUNT(*) AS n FROM bounces GROUP BY kind, domain ORDER BY n DESC",
            )
            .fetch_all(pool)
            .await?;
            let mut domains: Vec<String> = Vec::new();
            let mut other: std::collections::BTreeMap<String, i64> = Default::default();
            for r in rows {
                let (kind, domain, n): (String, String, i64) =
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                if domains.contains(&domain) || domains.len() < 50 {
                    if !domains.contains(&domain) {
                        domains.push(domain.clone());
                    }
                    f.bounces.push((kind, domain, n));
                } else {
                    *other.entry(kind).or_default() += n;
                }
            }
            f.bounces
                .extend(other.into_iter().map(|(k, n)| (k, "other".to_string(), n)));
            let rows = sqlx::query(
                "SELECT channel, source, reason FROM suppressions WHERE expires_at IS NULL OR expires_at > $1",
            )
            .bind(now)
            .fetch_all(pool)
            .await?;
            let mut by: std::collections::BTreeMap<(String, String), i64> = Default::default();
            for r in rows {
                let channel: String = r.try_get(0)?;
                let source: Option<String> = r.try_get(1)?;
                let reason: String = r.try_get(2)?;
                *by.entry((
                    channel,
                    reason_class(source.as_deref(), &reason).to_string(),
                ))
                .or_default() += 1;
            }
            f.suppressions = by.into_iter().map(|((c, r), n)| (c, r, n)).collect();
            Ok(f)
        })
    }
}

impl Store {
    /// Whether a signed webhook's one-time `token` may be used with this body (its SHA-256,
    /// hex): yes the first time, and again with the same body (the provider retrying); no with
    /// another body, a replay of the signature block with another event. Tokens are
    /// remembered for `keep`, as long as their signature stays fresh (migration 0018).
    pub async fn use_hook_token(
        &self,
        provider: &str,
        token: &str,
        body_sha: &str,
        now: DateTime<Utc>,
        keep: chrono::Duration,
    ) -> Result<bool> {
        let old = to_millis(now - keep);
        let now = to_millis(now);
        on_pool!(self, |pool, begin| {
            let mut tx = pool.begin_with(begin).await?;
            sqlx::query("DELETE FROM hook_tokens WHERE seen_at < $1")
                .bind(old)
                .execute(&mut *tx)
                .await?;
            let first = sqlx::query(
                "INSERT INTO hook_tokens (provider, token, body_sha, seen_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (provider, token) DO NOTHING",
            )
            .bind(provider)
            .bind(token)
            .bind(body_sha)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let same = first || {
                let seen: Option<String> = sqlx::query_scalar(
                    "SELECT body_sha FROM hook_tokens WHERE provider = $1 AND token = $2",
                )
                .bind(provider)
                .bind(token)
                .fetch_optional(&mut *tx)
                .await?;
                seen.as_deref() == Some(body_sha)
            };
            tx.commit().await?;
            Ok(same)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_writer_of_the_list_has_its_reason_class() {
        for (source, reason, class) in [
            (Some("link"), "unsubscribed (one-click link)", "unsubscribe"),
            (
                Some("token"),
                "unsubscribed (one-click link)",
                "unsubscribe",
            ),
            (Some("sms-reply"), "STOP reply via gw", "sms_reply"),
            (Some("cli"), "asked by phone", "support"),
            (Some("api"), "asked by email", "support"),
            (Some("console: li.na"), "asked by phone", "support"),
            (None, "imported", "support"),
            (Some("erasure"), "erased: request", "erased"),
            (Some("ses"), "complaint via ses: abuse", "complaint"),
            (Some("sendgrid"), "hard bounce 5.1.1: no such user", "hard"),
            (
                Some("smtp"),
                "3 soft bounces within 7d; last: soft bounce 4.2.2: mailbox full",
                "soft",
            ),
            (Some("mailgun"), "something new", "other"),
        ] {
            assert_eq!(reason_class(source, reason), class, "{source:?} {reason}");
        }
    }

    /// The reputation window walks the attempts back from now by their time index, for a
    /// job or for all; without statistics SQLite began from every message of the job
    /// (`messages_job_due`), and ordered by `updated_at` it read every message.
    #[tokio::test]
    async fn the_send_window_walks_the_attempts_back_by_time() {
        let since = DateTime::<Utc>::UNIX_EPOCH;
        for job in [None, Some("review-request")] {
            for also in [None, Some("m-1")] {
                let (sql, binds) = send_window_statement(job, 1000, since, also);
                super::super::sql::assert_plan_order(
                    &sql,
                    &binds,
                    "SEARCH a USING INDEX attempts_at",
                    "SEARCH m USING INDEX sqlite_autoindex_messages_1",
                    &["messages_job_due", "SCAN messages"],
                )
                .await;
            }
        }
    }
}
