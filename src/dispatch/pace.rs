//! How much a node claims at once: about one second of work at its current pace.
//!
//! Why not always claim `batch_size`: claimed messages wait for a free slot, and while they
//! wait no other node can have them. Against a slow server (a relay that takes a second per
//! message) one node would sit on a whole batch while the others idle, so adding nodes would
//! add nothing. So a node claims the whole batch when sends are quick (few, large claims),
//! about `concurrency` when they are slow.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How long a message takes from start to outcome, smoothed over this drain's sends.
#[derive(Debug, Default)]
pub(super) struct Pace {
    /// Exponentially weighted mean, in microseconds; 0 until the first send finishes.
    micros: AtomicU64,
}

impl Pace {
    pub(super) fn observe(&self, took: Duration) {
        let x = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.micros.fetch_update(Relaxed, Relaxed, |old| {
            Some(if old == 0 { x } else { (old * 7 + x) / 8 })
        });
    }

    /// `limit` sends at once, each taking the mean: how many finish in a second, kept
    /// between `limit` (until the first outcome, too) and `batch`.
    pub(super) fn claim_size(&self, limit: usize, batch: usize) -> usize {
        let per_second = match self.micros.load(Relaxed) {
            0 => limit,
            m => usize::try_from(limit as u64 * 1_000_000 / m).unwrap_or(usize::MAX),
        };
        per_second.clamp(limit.min(batch), batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_claims_about_a_second_of_work() {
        let pace = Pace::default();
        assert_eq!(pace.claim_size(16, 256), 16, "unknown pace: one round");
        pace.observe(Duration::from_millis(4));
        assert_eq!(
            pace.claim_size(16, 256),
            256,
            "quick sends: the whole batch"
        );
        let slow = Pace::default();
        for _ in 0..50 {
            slow.observe(Duration::from_secs(1));
        }
        assert_eq!(slow.claim_size(16, 256), 16, "a second per send: one round");
        slow.observe(Duration::from_millis(1));
        assert!(
            (16..=20).contains(&slow.claim_size(16, 256)),
            "one quick send hardly moves the mean"
        );
        assert_eq!(
            Pace::default().claim_size(64, 10),
            10,
            "never above batch_size"
        );
    }
}
