//! The message's state machine after a try: sent (and its next reminder), retrying with
//! backoff, failed for good; or, without a try, deferred, held out or cancelled.
//!
//! ```text
//! claimed ─┬─ sent ──────────── (next reminder planned in the same commit)
//!          ├─ retrying ─▶ claimed again at retry_at     (transient, tries < max_attempts)
//!          ├─ failed                                     (permanent, or tries used up)
//!          ├─ scheduled / retrying at a later time       (deferred: quiet hours, caps)
//!          ├─ open                                       (a callback task, no webhook)
//!          ├─ held_out                                   (an experiment's holdout)
//!          └─ cancelled                                  (a stop, expiry, no channel)
//! ```
//! Retries count tries, not attempts: failing over between SMS gateways or falling back to
//! another channel is one try with several attempts, so it does not use up `max_attempts`.

use super::RetryConfig;
use super::gate::fmt_time;
use crate::channels::Delivery;
use crate::model::{MessageState, Outcome};
use crate::store::{Claimed, Completion, NewAttempt, NewMessage};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A completion that changes nothing yet: the gate and the send fill it in.
pub(super) fn completion(m: &Claimed, now: DateTime<Utc>) -> Completion {
    Completion {
        message_id: m.id.clone(),
        claim_token: m.claim_token.clone(),
        state: MessageState::Cancelled,
        attempts: Vec::new(),
        retry_at: None,
        reason: None,
        channel: None,
        address: None,
        at: now,
        next: None,
        uncounted: false,
    }
}

pub(super) fn cancel(mut c: Completion, reason: String) -> Completion {
    c.state = MessageState::Cancelled;
    c.reason = Some(reason);
    c
}

/// Kept as its experiment's holdout would have been sent: nothing goes, and no reminder.
pub(super) fn hold_out(mut c: Completion, reason: String) -> Completion {
    c.state = MessageState::HeldOut;
    c.reason = Some(reason);
    c
}

/// Back to the queue for later, without counting an attempt.
pub(super) fn defer(
    mut c: Completion,
    m: &Claimed,
    at: DateTime<Utc>,
    reason: String,
) -> Completion {
    c.state = if m.attempts == 0 {
        MessageState::Scheduled
    } else {
        MessageState::Retrying
    };
    c.retry_at = Some(at);
    c.reason = Some(format!("deferred: {reason}"));
    c
}

/// The message's next state after a try whose outcome is `d` (the last attempt's, or the
/// route's), with the try's attempts and, once sent, the next reminder (`next` is asked only
/// then).
pub(super) fn settle(
    retry: &RetryConfig,
    m: &Claimed,
    mut c: Completion,
    attempts: Vec<NewAttempt>,
    d: &Delivery,
    next: impl FnOnce() -> Option<NewMessage>,
) -> Completion {
    let now = c.at;
    c.attempts = attempts;
    let try_no = m.tries + 1;
    match d.outcome {
        Outcome::Sent => {
            c.state = MessageState::Sent;
            c.next = next();
        }
        Outcome::Transient if d.relay_fault => {
            // Our relay refused our session (a login, our sender), or no SMS gateway had
            // its secret: not this message's fault. It waits, its try recorded but not
            // counted toward max_attempts.
            let at = now + backoff(retry, m.attempts + 1);
            c.state = MessageState::Retrying;
            c.retry_at = Some(at);
            c.uncounted = true;
            let waiting_for = if c.channel.as_deref() == Some("sms") {
                "an SMS gateway"
            } else {
                "the relay"
            };
            c.reason = Some(format!(
                "waiting for {waiting_for}: {} (not counted as a try); next try {}",
                with_code(d.code, &d.detail),
                fmt_time(at)
            ));
        }
        Outcome::Transient if try_no >= i64::from(retry.max_attempts) => {
            c.state = MessageState::Failed;
            c.reason = Some(format!(
                "gave up after {try_no} attempts; last: {}",
                with_code(d.code, &d.detail)
            ));
        }
        Outcome::Transient => {
            // The server's Retry-After wins when it asks for longer than our backoff.
            let wait = backoff(retry, try_no).max(d.retry_after.unwrap_or_default());
            let at = now + wait;
            c.state = MessageState::Retrying;
            c.retry_at = Some(at);
            c.reason = Some(format!(
                "attempt {try_no}/{} failed ({}); next try {}",
                retry.max_attempts,
                with_code(d.code, &d.detail),
                fmt_time(at)
            ));
        }
        Outcome::Permanent => {
            c.state = MessageState::Failed;
            c.reason = Some(with_code(d.code, &d.detail));
        }
    }
    c
}

pub(super) fn with_code(code: Option<i64>, detail: &str) -> String {
    match code {
        Some(code) => format!("{code} {detail}"),
        None => detail.to_string(),
    }
}

/// Exponential backoff from `initial`, doubling per attempt, capped at `max`, with ±25%
/// jitter so a server that was down is not hit by every retry in the same second.
pub(crate) fn backoff(r: &RetryConfig, attempt: i64) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let base = r
        .initial
        .saturating_mul(2u32.saturating_pow(exp))
        .min(r.max);
    base.mul_f64(0.75 + 0.5 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::gate::tests::{claimed, t};

    fn retry() -> RetryConfig {
        RetryConfig {
            max_attempts: 3,
            initial: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        }
    }

    fn after(tries: i64, d: Delivery) -> Completion {
        let mut m = claimed();
        m.tries = tries;
        let c = completion(&m, t("2026-11-23T02:00:00Z"));
        settle(&retry(), &m, c, Vec::new(), &d, || None)
    }

    #[test]
    fn the_state_after_a_try() {
        let sent = Delivery {
            outcome: Outcome::Sent,
            code: Some(250),
            detail: "ok".into(),
            provider_id: None,
            retry_after: None,
            relay_fault: false,
            bounce: None,
        };
        assert_eq!(after(0, sent.clone()).state, MessageState::Sent);

        let busy = Delivery {
            code: Some(451),
            ..Delivery::transient("try later")
        };
        let c = after(0, busy.clone());
        assert_eq!(c.state, MessageState::Retrying);
        let wait = c.retry_at.unwrap() - t("2026-11-23T02:00:00Z");
        assert!((45..=75).contains(&wait.num_seconds()), "{wait}");
        assert!(
            c.reason
                .as_deref()
                .unwrap()
                .starts_with("attempt 1/3 failed (451 try later); next try 2026-11-23 02:0"),
            "{:?}",
            c.reason
        );
        // The server asks for longer than the backoff: it wins.
        let c = after(
            0,
            Delivery {
                retry_after: Some(Duration::from_secs(600)),
                ..busy.clone()
            },
        );
        assert_eq!(c.retry_at, Some(t("2026-11-23T02:10:00Z")));
        // The last try gives up.
        let c = after(2, busy);
        assert_eq!(c.state, MessageState::Failed);
        assert_eq!(
            c.reason.as_deref(),
            Some("gave up after 3 attempts; last: 451 try later")
        );

        let refused = Delivery {
            code: Some(550),
            ..Delivery::permanent("no such user")
        };
        let c = after(0, refused);
        assert_eq!(c.state, MessageState::Failed);
        assert_eq!(c.reason.as_deref(), Some("550 no such user"));
    }

    #[test]
    fn a_relay_fault_waits_without_using_up_tries() {
        let refused = Delivery {
            code: Some(535),
            relay_fault: true,
            ..Delivery::transient("SMTP relay refuses our login: 5.7.8 bad credentials")
        };
        // At the last try an ordinary transient failure gives up; a relay fault does not.
        let c = after(2, refused);
        assert_eq!(c.state, MessageState::Retrying);
        assert!(c.uncounted);
        assert!(
            c.reason.as_deref().unwrap().starts_with(
                "waiting for the relay: 535 SMTP relay refuses our login: 5.7.8 bad credentials (not counted as a try); next try"
            ),
            "{:?}",
            c.reason
        );
        assert!(!after(2, Delivery::transient("x")).uncounted);
    }

    #[test]
    fn a_deferred_message_keeps_its_state_and_counts_no_attempt() {
        let mut m = claimed();
        let at = t("2026-11-23T03:00:00Z");
        let c = defer(completion(&m, at), &m, at, "quiet hours".into());
        assert_eq!(c.state, MessageState::Scheduled);
        assert_eq!(c.reason.as_deref(), Some("deferred: quiet hours"));
        assert!(c.attempts.is_empty());
        m.attempts = 1;
        let c = defer(completion(&m, at), &m, at, "cap".into());
        assert_eq!(c.state, MessageState::Retrying);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetryConfig {
            max_attempts: 8,
            initial: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        };
        for (attempt, base) in [(1, 60.0), (2, 120.0), (3, 240.0), (7, 3600.0), (30, 3600.0)] {
            let d = backoff(&r, attempt).as_secs_f64();
            assert!(
                d >= base * 0.75 && d <= base * 1.25,
                "attempt {attempt}: {d}"
            );
        }
    }
}
