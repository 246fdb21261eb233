//! The second wall behind "no input can panic a send".
//!
//! The first wall is each channel: values from outside are made safe before a library sees
//! them, and what a library still panics on is caught where the message is built (see
//! `channels::email`). But a panic anywhere else in a send task (a bug of ours, a crate's
//! assertion on input nobody foresaw) would end the task without an outcome: its message
//! would stay claimed until the lease expired, then come back with "the node stopped
//! mid-send; may have been sent" — false, the node is alive — and be tried again, panicking
//! each time, until `max_attempts`. So each send task runs under [`Guard::run`]: a panic
//! becomes an outcome at once, a permanent failure of that message with the panic's words,
//! recorded like any other, and the worker goes on with the next message.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use crate::jobs::JobSet;
use crate::model::{MessageState, Outcome};
use crate::store::{Claimed, Completion, NewAttempt};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// What is needed to record a message's failure when its task panicked (the task's own
/// copy of the claim is gone with it).
pub(crate) struct Guard {
    message_id: String,
    claim_token: String,
    attempt: i64,
    channel: String,
    address: Option<String>,
    node: String,
    at: DateTime<Utc>,
}

impl Guard {
    /// For claimed message `m` of `jobs`, sent by `node` at `at`.
    pub(crate) fn new(m: &Claimed, jobs: &JobSet, node: &str, at: DateTime<Utc>) -> Guard {
        let channel = match m.channel_plan.as_deref() {
            Some(plan) => plan.to_string(),
            None => jobs
                .get(&m.job_id)
                .and_then(|j| j.channels.first())
                .map_or("email", |c| c.as_str())
                .to_string(),
        };
        let address = match channel.as_str() {
            "email" => m.contact.email.clone(),
            "sms" => m.contact.phone.clone(),
            _ => None,
        };
        Guard {
            message_id: m.id.clone(),
            claim_token: m.claim_token.clone(),
            attempt: m.attempts + 1,
            channel,
            address,
            node: node.to_string(),
            at,
        }
    }

    /// `send`'s outcome, or a permanent failure of the message if it panicked.
    pub(crate) async fn run(self, send: impl Future<Output = Completion>) -> Completion {
        match AssertUnwindSafe(send).catch_unwind().await {
            Ok(c) => c,
            Err(panic) => {
                let why = crate::text::printable(&crate::channels::email::panic_text(&*panic))
                    .into_owned();
                tracing::error!(
                    message_id = %self.message_id,
                    "a send task panicked ({why}); the message is failed, not retried: please report this as a bug"
                );
                crate::metrics::count_error("panic");
                self.failed(&why)
            }
        }
    }

    fn failed(self, why: &str) -> Completion {
        let detail = format!(
            "internal error: the send task panicked ({why}); failed without retrying (a bug: please report it)"
        );
        Completion {
            message_id: self.message_id,
            claim_token: self.claim_token,
            state: MessageState::Failed,
            attempts: vec![NewAttempt {
                number: self.attempt,
                at: self.at,
                channel: self.channel.clone(),
                address: self.address.clone(),
                outcome: Outcome::Permanent,
                code: None,
                detail: Some(detail.clone()),
                provider_id: None,
                node: self.node,
                duration_ms: 0,
                gateway: None,
                content: None,
            }],
            retry_at: None,
            reason: Some(detail),
            channel: Some(self.channel),
            address: self.address,
            at: self.at,
            next: None,
            uncounted: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard {
            message_id: "m-1".into(),
            claim_token: "t-1".into(),
            attempt: 3,
            channel: "email".into(),
            address: Some("a@example.com".into()),
            node: "n".into(),
            at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn a_panicking_send_fails_its_message_at_once() {
        let c = guard()
            .run(async {
                let name: Vec<&str> = Vec::new();
                // An index out of bounds, as a bug would have it.
                let _ = name[usize::from(name.is_empty())];
                unreachable!("the line above panics")
            })
            .await;
        assert_eq!(c.state, MessageState::Failed);
        assert_eq!(c.message_id, "m-1");
        assert_eq!(c.claim_token, "t-1", "applies to the claim it held");
        assert!(!c.uncounted);
        let a = &c.attempts[0];
        assert_eq!((a.number, a.outcome), (3, Outcome::Permanent));
        let detail = a.detail.as_deref().unwrap_or_default();
        assert!(detail.contains("panicked (index out of bounds"), "{detail}");
    }

    #[tokio::test]
    async fn a_send_that_returns_is_left_alone() {
        let done = guard().failed("x");
        let mut expected = done.clone();
        expected.reason = Some("kept".into());
        let c = guard().run(async move { expected }).await;
        assert_eq!(c.reason.as_deref(), Some("kept"));
    }
}
