//! A small circuit breaker per gateway: stop sending to a gateway that keeps failing.
//!
//! After `failures` transient failures in a row the gateway is "down" for `cooldown`: routes
//! skip it and go straight to the next gateway instead of each send waiting out a timeout.
//! When the cooldown is over, one send is let through as a probe (the others keep skipping
//! it for another cooldown); a probe that gets any answer that is not transient closes the
//! breaker, a failed one opens it again. Anything but a transient failure (a success, or a
//! permanent refusal of one message, which proves the gateway is up) resets the count.
//!
//! Real time, like network timeouts: this is about the gateway's health now, not the
//! schedule. Per process; each node learns on its own.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use super::settings::BreakerConfig;
use crate::model::Outcome;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(super) struct Breaker {
    cfg: BreakerConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub(super) fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain fields, valid after any panic; poisoning carries no meaning.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May a send go to this gateway now? `Err` holds how long it stays down.
    pub(super) fn admit(&self, now: Instant) -> Result<(), Duration> {
        let mut s = self.state();
        match s.open_until {
            None => Ok(()),
            Some(until) if now >= until => {
                // This send is the probe; the others skip until it reports.
                s.open_until = Some(now + self.cfg.cooldown);
                Ok(())
            }
            Some(until) => Err(until - now),
        }
    }

    /// Failures in a row, and how much longer the gateway is skipped (`None`: it is up, or
    /// its cooldown is over and the next send is the probe). For the console's health page.
    pub(super) fn status(&self, now: Instant) -> (u32, Option<Duration>) {
        let s = self.state();
        let down = s.open_until.filter(|u| *u > now).map(|u| u - now);
        (s.failures, down)
    }

    /// Record the outcome of an admitted send. True when this failure took the gateway down.
    pub(super) fn record(&self, outcome: Outcome, now: Instant) -> bool {
        let mut s = self.state();
        if outcome != Outcome::Transient {
            *s = State::default();
            return false;
        }
        s.failures = s.failures.saturating_add(1);
        if s.failures >= self.cfg.failures {
            let was_down = s.open_until.is_some();
            s.open_until = Some(now + self.cfg.cooldown);
            return !was_down;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_after_the_cooldown() {
        let b = Breaker::new(BreakerConfig {
            failures: 3,
            cooldown: Duration::from_secs(30),
        });
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert!(b.admit(t0).is_ok());
        assert!(!b.record(Outcome::Transient, t0));
        assert!(!b.record(Outcome::Transient, t0));
        // A success in between resets the count.
        assert!(!b.record(Outcome::Sent, t0));
        assert!(!b.record(Outcome::Transient, t0));
        assert!(!b.record(Outcome::Transient, t0));
        assert!(b.admit(t0).is_ok());
        assert!(b.record(Outcome::Transient, t0), "third in a row opens it");
        assert_eq!(b.admit(t0 + s(10)), Err(s(20)));
        // After the cooldown one probe goes through, the next send still skips.
        assert!(b.admit(t0 + s(30)).is_ok());
        assert_eq!(b.admit(t0 + s(31)), Err(s(29)));
        // The probe fails: down again for a cooldown, not reported as newly down.
        assert!(!b.record(Outcome::Transient, t0 + s(32)));
        assert_eq!(b.admit(t0 + s(33)), Err(s(29)));
        // The next probe gets a permanent refusal: the gateway answers, so it is up.
        assert!(b.admit(t0 + s(62)).is_ok());
        assert!(!b.record(Outcome::Permanent, t0 + s(62)));
        assert!(b.admit(t0 + s(62)).is_ok());
        assert!(
            !b.record(Outcome::Transient, t0 + s(63)),
            "the count starts again"
        );
    }

    #[test]
    fn threshold_of_one() {
        let b = Breaker::new(BreakerConfig {
            failures: 1,
            cooldown: Duration::from_secs(5),
        });
        let t0 = Instant::now();
        assert!(b.record(Outcome::Transient, t0));
        assert!(b.admit(t0).is_err());
    }
}
