//! The recorder: commits the outcomes of sends in groups, while the next sends run.
//!
//! Each send is its own task; its [`Completion`] goes to one recorder task per drain, which
//! takes what arrives within a few milliseconds (up to `batch_size`) into one transaction,
//! so the fsync and the fixed cost of a commit are shared by a whole group. An outcome that
//! is never committed becomes a resend once its lease expires, so a failed commit is tried
//! again before the drain gives up.

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
    /// First messages kept back as their experiment's holdout.
    pub held_out: u64,
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
            MessageState::HeldOut => self.held_out += 1,
            _ => {}
        }
    }

    pub(crate) fn merge(&mut self, o: Stats) {
        self.sent += o.sent;
        self.retrying += o.retrying;
        self.failed += o.failed;
        self.cancelled += o.cancelled;
        self.deferred += o.deferred;
        self.open += o.open;
        self.held_out += o.held_out;
        self.released += o.released;
        self.stale += o.stale;
    }

    pub(crate) fn total(&self) -> u64 {
        self.sent
            + self.retrying
            + self.failed
            + self.cancelled
            + self.deferred
            + self.open
            + self.held_out
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
        if self.held_out > 0 {
            write!(f, ", {} held out", self.held_out)?;
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
/// committed, `group` at most per transaction, after waiting up to `wait` for the group to
/// fill; the task ends when every sender is dropped.
pub(super) fn start(
    store: Store,
    group: usize,
    wait: Duration,
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
        // A dry run (the forecast) has no one waiting on a commit: it fills the group (or
        // reaches the end of the drain) first, one transaction instead of dozens.
        let wait = (!dry_run).then_some(wait);
        while gather(&mut done_rx, &mut batch, group, wait).await {
            stats.stale += complete_retrying(&store, &batch).await? as u64;
            if !dry_run {
                crate::metrics::count_outcome_commit();
            }
            for c in batch.drain(..) {
                stats.add(&c);
            }
        }
        Ok::<Stats, StoreError>(stats)
    });
    (done_tx, task)
}

/// The next group into `batch`: what has arrived, then more until the group is full, every
/// sender is gone, or `wait` has passed (`None`: no time limit). False once every sender is
/// gone and nothing is left.
async fn gather<T>(
    rx: &mut mpsc::Receiver<T>,
    batch: &mut Vec<T>,
    group: usize,
    wait: Option<Duration>,
) -> bool {
    if rx.recv_many(batch, group).await == 0 {
        return false;
    }
    let until = wait.map(|w| tokio::time::Instant::now() + w);
    while batch.len() < group {
        let more = rx.recv_many(batch, group - batch.len());
        let n = match until {
            // `recv_many` is cancel safe: a timeout loses nothing.
            Some(t) => tokio::time::timeout_at(t, more).await.unwrap_or(0),
            None => more.await,
        };
        if n == 0 {
            break;
        }
    }
    true
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

#[cfg(test)]
mod tests {
    use super::gather;
    use std::time::Duration;
    use tokio::sync::mpsc;
    use tokio::time::{Instant, sleep};

    const WAIT: Option<Duration> = Some(Duration::from_millis(5));

    /// Sends `items` after the delays beside them, in the background.
    fn later(tx: mpsc::Sender<u32>, items: Vec<(u64, u32)>) {
        tokio::spawn(async move {
            for (ms, n) in items {
                sleep(Duration::from_millis(ms)).await;
                let _ = tx.send(n).await;
            }
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_takes_what_arrives_within_the_wait() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(1).await.unwrap();
        later(tx, vec![(2, 2), (2, 3), (20, 4)]);
        let mut batch = Vec::new();
        let t0 = Instant::now();
        assert!(gather(&mut rx, &mut batch, 10, WAIT).await);
        assert_eq!(batch, [1, 2, 3], "4 came after the wait");
        assert_eq!(
            t0.elapsed(),
            Duration::from_millis(5),
            "committed at the end of the wait"
        );
        batch.clear();
        assert!(gather(&mut rx, &mut batch, 10, WAIT).await);
        assert_eq!(batch, [4]);
        batch.clear();
        assert!(
            !gather(&mut rx, &mut batch, 10, WAIT).await,
            "every sender gone"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_group_or_a_closed_channel_ends_the_wait() {
        let (tx, mut rx) = mpsc::channel(16);
        for n in 1..=3 {
            tx.send(n).await.unwrap();
        }
        let mut batch = Vec::new();
        let t0 = Instant::now();
        assert!(gather(&mut rx, &mut batch, 2, WAIT).await);
        assert_eq!(
            (batch.as_slice(), t0.elapsed()),
            (&[1, 2][..], Duration::ZERO)
        );
        batch.clear();
        drop(tx);
        assert!(gather(&mut rx, &mut batch, 2, WAIT).await);
        assert_eq!((batch.as_slice(), t0.elapsed()), (&[3][..], Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_wait_a_group_fills() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(1).await.unwrap();
        later(tx, vec![(3_600_000, 2), (0, 3)]);
        let mut batch = Vec::new();
        assert!(gather(&mut rx, &mut batch, 2, None).await);
        assert_eq!(batch, [1, 2]);
    }
}
