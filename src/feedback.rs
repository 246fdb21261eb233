//! Email bounces and complaints, from every door (the SMTP reply in dispatch, `bounces
//! ingest`, the providers' webhooks), recorded the same way and acted on at once.
//!
//! Each report is matched to its message and attempt (our outbox id from VERP or the
//! Message-ID, else the id the attempt was recorded under, else the last email to that
//! address), kept with the raw report, and applied by the store in the same transaction:
//! a hard bounce or a complaint suppresses the address (a complaint also withdraws
//! `consent.email`), soft bounces count toward a suppression that ends by itself (see
//! `store::feedback`). Then the reputation brake: when a hard bounce or a complaint lands,
//! the job's last sends (and the sending domain's) are weighed; over the limit, that scope's
//! marketing email is paused (the gate defers it; nothing is dropped) until `aftercare jobs
//! resume`.

use crate::channels::email::bounce::BounceKind;
use crate::channels::email::feedback::{Matcher, Report};
use crate::channels::email::settings::EmailConfig;
use crate::store::{NewBounce, SoftRule, Store, StoreError};
use chrono::{DateTime, Utc};

/// What recording a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `None`: the same report was stored before; nothing changed.
    pub action: Option<String>,
    /// The outbox message it was matched to.
    pub message_id: Option<String>,
    /// A brake this report engaged: its scope and why.
    pub braked: Vec<(String, String)>,
}

/// The store and the rules a report is recorded under.
#[derive(Clone)]
pub struct Feedback {
    store: Store,
    soft: SoftRule,
    reputation: crate::channels::email::settings::Reputation,
    sending_domain: String,
    pub matcher: Matcher,
}

impl Feedback {
    pub fn new(store: Store, email: &EmailConfig) -> Feedback {
        let d = |x: std::time::Duration| chrono::Duration::from_std(x).unwrap_or_default();
        Feedback {
            store,
            soft: SoftRule {
                count: email.soft.count,
                within: d(email.soft.within),
                suppress_for: d(email.soft.suppress_for),
            },
            reputation: email.reputation,
            sending_domain: email.from.email.domain().to_ascii_lowercase(),
            matcher: Matcher::new(email.return_path.as_deref(), &email.message_id_domain),
        }
    }

    /// Record one report and act on it. `attempt` is the attempt number when the caller
    /// knows it (dispatch, whose attempt is not committed yet).
    pub async fn record(
        &self,
        r: &Report,
        attempt: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        let matched = self
            .store
            .bounced_message(
                r.outbox_id.as_deref(),
                r.provider_id.as_deref(),
                Some(&r.address),
                now,
            )
            .await?;
        let b = NewBounce {
            id: crate::values::new_id(now),
            kind: r.kind.as_str().to_string(),
            source: r.source.to_string(),
            address: r.address.clone(),
            message_id: matched.as_ref().map(|m| m.id.clone()),
            attempt: attempt.or(matched.as_ref().and_then(|m| m.attempt)),
            job_id: matched.as_ref().map(|m| m.job_id.clone()),
            status: r.status.clone(),
            code: r.code,
            detail: crate::text::printable(&r.detail)
                .chars()
                .take(1000)
                .collect(),
            report_id: r.report_id.clone(),
            raw: Some(r.raw.chars().take(256 * 1024).collect()),
            at: now,
        };
        let action = self.store.record_bounce(&b, self.soft).await?;
        let mut braked = Vec::new();
        if let Some(a) = &action {
            tracing::info!(
                kind = r.kind.as_str(),
                source = r.source,
                to = %crate::logging::mask(&r.address),
                message = b.message_id.as_deref().unwrap_or("-"),
                status = r.status.as_deref().unwrap_or("-"),
                action = %a,
                "email {}",
                if r.kind == BounceKind::Complaint { "complaint" } else { "bounce" }
            );
            if matches!(r.kind, BounceKind::Hard | BounceKind::Complaint) {
                if let Some(job) = &b.job_id {
                    braked.extend(self.weigh(Some(job), b.message_id.as_deref(), now).await?);
                }
                braked.extend(self.weigh(None, b.message_id.as_deref(), now).await?);
            }
        }
        Ok(Recorded {
            action,
            message_id: b.message_id,
            braked,
        })
    }

    /// Weigh a job's (or, with `None`, the sending domain's) last sends; engage its brake
    /// when a rate is over the limit. The scope engaged, if this did it.
    async fn weigh(
        &self,
        job: Option<&str>,
        also: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, String)>, StoreError> {
        let scope = match job {
            Some(j) => format!("job:{j}"),
            None => format!("domain:{}", self.sending_domain),
        };
        let rep = self.reputation;
        // After a release, the window starts again: the sends that tripped it are judged.
        let since = self
            .store
            .brakes(false)
            .await?
            .into_iter()
            .find(|b| b.scope == scope)
            .and_then(|b| b.released_at)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let w = self.store.send_window(job, rep.window, since, also).await?;
        let Some(reason) = over_limit(w, &rep) else {
            return Ok(None);
        };
        if !self.store.engage_brake(&scope, &reason, now).await? {
            return Ok(None);
        }
        tracing::error!(
            scope = %scope,
            "reputation brake engaged: {reason}; marketing email of {scope} is paused (service \
             messages go on, nothing is dropped); fix the list, then `aftercare jobs resume {}`",
            scope.strip_prefix("job:").unwrap_or("--domain")
        );
        crate::metrics::count_error("reputation_brake");
        Ok(Some((scope, reason)))
    }
}

/// Why a window of sends is over the brake's limits, or `None`.
pub fn over_limit(
    w: crate::store::Window,
    rep: &crate::channels::email::settings::Reputation,
) -> Option<String> {
    if w.sends < rep.min_sends || w.sends == 0 {
        return None;
    }
    let pct = |n: i64| n as f64 * 100.0 / w.sends as f64;
    if pct(w.hard) > rep.hard_bounce_percent {
        return Some(format!(
            "hard-bounce rate {:.2}% ({} of the last {} sends) is over {}%",
            pct(w.hard),
            w.hard,
            w.sends,
            rep.hard_bounce_percent
        ));
    }
    if pct(w.complaints) > rep.complaint_percent {
        return Some(format!(
            "complaint rate {:.2}% ({} of the last {} sends) is over {}%",
            pct(w.complaints),
            w.complaints,
            w.sends,
            rep.complaint_percent
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::email::settings::Reputation;
    use crate::store::Window;

    fn rep() -> Reputation {
        Reputation {
            window: 1000,
            min_sends: 100,
            hard_bounce_percent: 2.0,
            complaint_percent: 0.3,
            recheck: std::time::Duration::from_secs(900),
        }
    }

    #[test]
    fn the_brake_weighs_rates_once_the_window_is_full_enough() {
        let w = |sends, hard, complaints| Window {
            sends,
            hard,
            complaints,
        };
        assert_eq!(
            over_limit(w(99, 50, 0), &rep()),
            None,
            "too few sends to judge"
        );
        assert_eq!(
            over_limit(w(1000, 20, 3), &rep()),
            None,
            "at the limits, not over"
        );
        assert!(
            over_limit(w(1000, 21, 0), &rep())
                .unwrap()
                .starts_with("hard-bounce rate 2.10%")
        );
        assert!(
            over_limit(w(1000, 0, 4), &rep())
                .unwrap()
                .starts_with("complaint rate 0.40%")
        );
    }
}
