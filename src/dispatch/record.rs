//! The recorder: commits the outcomes of sends in groups, while the next sends run.
//!
//! Each send is its own task; its [`Completion`] goes to one recorder task per drain, which
//! takes whatever has arrived (up to `batch_size`) into one transaction, so the fsync of a
//! commit is shared by a whole group. An outcome that is never committed becomes a resend
//! once its lease expires, so a failed commit is tried again before the drain gives up.

use crate::model::MessageState;
use crate::store::{Completion, Store, StoreError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What a dispatch run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Stats {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Moved later by quiet hours or a frequency cap.
    pub deferred: u64,
    /// Callback tasks left open for agents.
    pub open: u64,
    /// Claimed but put back untried (shutdown).
    pub released: u64,
    /// Lease lost meanwhile (another node's reaper took it): completions not applied, and
    /// claimed messages not started.
    pub stale: u64,
}

impl Stats {
    fn add(&mut self, c: &Completion) {
        match c.state {
            MessageState::Sent => self.sent += 1,
            MessageState::Retrying => self.retrying += 1,
            MessageState::Failed => self.failed += 1,
            MessageState::Cancelled => self.cancelled += 1,
            MessageState::Scheduled => self.deferred += 1,
            MessageState::Open => self.open += 1,
            _ => {}
        }
    }

    pub(super) fn merge(&mut self, o: Stats) {
        self.sent += o.sent;
        self.retrying += o.retrying;
        self.failed += o.failed;
        self.cancelled += o.cancelled;
        self.deferred += o.deferred;
        self.open += o.open;
        self.released += o.released;
        self.stale += o.stale;
    }

    pub(crate) fn total(&self) -> u64 {
        self.sent + self.retrying + self.failed + self.cancelled + self.deferred + self.open
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sent, {} retrying, {} failed, {} cancelled",
            self.sent, self.retrying, self.failed, self.cancelled
        )?;
        if self.deferred > 0 {
            write!(f, ", {} deferred", self.deferred)?;
        }
        if self.open > 0 {
            write!(f, ", {} open for agents", self.open)?;
        }
        if self.released > 0 {
            write!(f, ", {} released", self.released)?;
        }
        if self.stale > 0 {
            write!(f, ", {} stale", self.stale)?;
        }
        Ok(())
    }
}

/// The recorder task of one drain: every completion sent to the returned sender is
/// committed, `group` at most per transaction; the task ends when every sender is dropped.
pub(super) fn start(
    store: Store,
    group: usize,
    capacity: usize,
    dry_run: bool,
) -> (
    mpsc::Sender<Completion>,
    JoinHandle<Result<Stats, StoreError>>,
) {
    let (done_tx, mut done_rx) = mpsc::channel::<Completion>(capacity);
    let task = tokio::spawn(async move {
        let mut stats = Stats::default();
        let mut batch = Vec::with_capacity(group);
        while done_rx.recv_many(&mut batch, group).await > 0 {
            // A dry run (the forecast) has no one waiting on a commit: fill the group (or
            // reach the end of the drain) first, one transaction instead of dozens.
            while dry_run
                && batch.len() < group
                && let Some(c) = done_rx.recv().await
            {
                batch.push(c);
            }
            stats.stale += complete_retrying(&store, &batch).await? as u64;
            for c in batch.drain(..) {
                stats.add(&c);
            }
        }
        Ok::<Stats, StoreError>(stats)
    });
    (done_tx, task)
}

/// Commit a group of outcomes, trying again a few times over about six seconds: the sends
/// have happened, and an outcome that is never committed becomes a resend once the lease
/// expires. A deadlock with another node's transaction (PostgreSQL aborts one of the two)
/// or a dropped connection is worth a second try; the completion is all-or-nothing, so a
/// retry never applies half of it twice.
async fn complete_retrying(store: &Store, batch: &[Completion]) -> Result<usize, StoreError> {
    let mut wait = Duration::from_millis(100);
    for _ in 0..6 {
        match store.complete(batch).await {
            Err(StoreError::Query(e)) => {
                tracing::warn!(
                    "recording {} outcomes failed, trying again: {e}",
                    batch.len()
                );
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
    store.complete(batch).await
}
