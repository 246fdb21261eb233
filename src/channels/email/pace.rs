//! Pacing per destination: mailbox providers such as QQ Mail and 163 throttle a sender that
//! sends them too fast (`550 Ip frequency limited`), then block it. `email.destinations`
//! gives each domain, or group of domains that share one receiving system (`qq.com,
//! foxmail.com`), a budget: at most `concurrency` sends at once and `rate` per period;
//! `default` is every other domain's own budget.
//!
//! A message over its domain's budget is not held in a worker: [`Pacer::admit`] says when
//! the budget has room again and dispatch puts the message back in the queue until then
//! (not counted as a try), so one throttled domain never delays another's mail. A rate
//! limit answer from the domain ([`Pacer::slow_down`]) pauses that domain alone, doubling
//! from a minute up to an hour while it keeps answering so; an acceptance ends the back-off.
//! Instants come from the caller (dispatch's clock), so pacing follows `run --now` too.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use super::settings::{Budget, Destinations};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const FIRST_BACKOFF: chrono::Duration = chrono::Duration::minutes(1);
const MAX_BACKOFF: chrono::Duration = chrono::Duration::hours(1);

/// One budget, shared by the domains of a group.
struct Lane {
    name: String,
    budget: Budget,
    slots: Option<Arc<Semaphore>>,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// Instants of the sends inside the rate's period, oldest first.
    sent: VecDeque<DateTime<Utc>>,
    paused_until: Option<DateTime<Utc>>,
    backoff: Option<chrono::Duration>,
}

impl Lane {
    fn new(name: String, budget: Budget) -> Lane {
        Lane {
            slots: budget
                .concurrency
                .map(|n| Arc::new(Semaphore::new(n.max(1) as usize))),
            name,
            budget,
            state: Mutex::default(),
        }
    }
}

/// A place in a domain's budget, held while the message is being sent.
pub struct Admitted {
    _slot: Option<OwnedSemaphorePermit>,
}

/// The destinations' budgets and back-offs, for the whole process.
pub struct Pacer {
    groups: HashMap<String, Arc<Lane>>,
    default: Option<Budget>,
    /// Lanes of domains without a group: created on first use.
    others: Mutex<HashMap<String, Arc<Lane>>>,
}

/// The domain of an address, lower case.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or(address)
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

impl Pacer {
    pub fn new(d: &Destinations) -> Pacer {
        let mut groups = HashMap::new();
        for (name, domains, budget) in &d.groups {
            let lane = Arc::new(Lane::new(name.clone(), *budget));
            for domain in domains {
                groups.insert(domain.clone(), lane.clone());
            }
        }
        Pacer {
            groups,
            default: d.default,
            others: Mutex::default(),
        }
    }

    fn lane(&self, domain: &str) -> Arc<Lane> {
        if let Some(l) = self.groups.get(domain) {
            return l.clone();
        }
        let mut others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
        if others.len() > 100_000 {
            // Only back-offs and rate windows are lost: bounded memory matters more.
            others.clear();
        }
        others
            .entry(domain.to_string())
            .or_insert_with(|| {
                Arc::new(Lane::new(
                    domain.to_string(),
                    self.default.unwrap_or(Budget {
                        concurrency: None,
                        rate: None,
                    }),
                ))
            })
            .clone()
    }

    /// May a message to `address` go now? `Err((when, why))`: not before `when`.
    pub fn admit(
        &self,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<Admitted, (DateTime<Utc>, String)> {
        let lane = self.lane(&domain_of(address));
        let mut st = lane.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(until) = st.paused_until {
            if until > now {
                return Err((
                    until,
                    format!(
                        "{} answered with a rate limit; its mail is slowed down until then",
                        lane.name
                    ),
                ));
            }
            st.paused_until = None;
        }
        if let Some((n, per)) = lane.budget.rate {
            let per = chrono::Duration::from_std(per).unwrap_or(chrono::Duration::MAX);
            while st.sent.front().is_some_and(|t| *t + per <= now) {
                st.sent.pop_front();
            }
            if st.sent.len() >= n as usize
                && let Some(oldest) = st.sent.front()
            {
                return Err((
                    *oldest + per,
                    format!(
                        "{}'s rate {n}/{} is used up",
                        lane.name,
                        crate::duration::format(per.to_std().unwrap_or_default())
                    ),
                ));
            }
        }
        let permit = match &lane.slots {
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    return Err((
                        now + chrono::Duration::seconds(1),
                        format!(
                            "{} has {} sends under way (its concurrency)",
                            lane.name,
                            lane.budget.concurrency.unwrap_or_default()
                        ),
                    ));
                }
            },
            None => None,
        };
        if lane.budget.rate.is_some() {
            st.sent.push_back(now);
        }
        Ok(Admitted { _slot: permit })
    }

    /// The domain of `address` answered "too fast": pause it; how long.
    pub fn slow_down(&self, address: &str, now: DateTime<Utc>) -> chrono::Duration {
        let lane = self.lane(&domain_of(address));
        let mut st = lane.state.lock().unwrap_or_else(PoisonError::into_inner);
        let wait = st
            .backoff
            .map(|b| (b * 2).min(MAX_BACKOFF))
            .unwrap_or(FIRST_BACKOFF);
        st.backoff = Some(wait);
        st.paused_until = Some(now + wait);
        tracing::warn!(
            destination = %lane.name,
            wait = %crate::duration::format(wait.to_std().unwrap_or_default()),
            "rate limited by the destination: its mail waits (other domains go on)"
        );
        wait
    }

    /// The domain took a message: its back-off is over.
    pub fn accepted(&self, address: &str) {
        let lane = self.lane(&domain_of(address));
        lane.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .backoff = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn pacer() -> Pacer {
        Pacer::new(&Destinations {
            groups: vec![(
                "qq.com, foxmail.com".into(),
                vec!["qq.com".into(), "foxmail.com".into()],
                Budget {
                    concurrency: Some(1),
                    rate: Some((2, Duration::from_secs(60))),
                },
            )],
            default: None,
        })
    }

    #[test]
    fn a_group_shares_one_budget_and_others_are_not_held() {
        let p = pacer();
        let now = t("2026-11-23T02:00:00Z");
        let a = p.admit("a@qq.com", now).map_err(|e| e.1).unwrap();
        let e = p.admit("b@foxmail.com", now).err().unwrap();
        assert!(e.1.contains("sends under way"), "{}", e.1);
        drop(a);
        let _b = p.admit("b@foxmail.com", now).map_err(|e| e.1).unwrap();
        drop(_b);
        let (at, why) = p.admit("c@qq.com", now).err().unwrap();
        assert_eq!(at, now + chrono::Duration::minutes(1));
        assert!(why.contains("rate 2/1m"), "{why}");
        for i in 0..10 {
            assert!(p.admit(&format!("x{i}@example.com"), now).is_ok());
        }
        assert!(p.admit("c@qq.com", at).is_ok(), "the window moved on");
    }

    #[test]
    fn a_rate_limit_answer_backs_off_that_domain_alone() {
        let p = pacer();
        let now = t("2026-11-23T02:00:00Z");
        assert_eq!(p.slow_down("a@163.com", now), chrono::Duration::minutes(1));
        assert_eq!(p.slow_down("a@163.com", now), chrono::Duration::minutes(2));
        let (at, _) = p.admit("b@163.com", now).err().unwrap();
        assert_eq!(at, now + chrono::Duration::minutes(2));
        assert!(p.admit("b@126.com", now).is_ok());
        assert!(p.admit("b@163.com", at).is_ok());
        p.accepted("b@163.com");
        assert_eq!(p.slow_down("a@163.com", at), chrono::Duration::minutes(1));
    }
}
