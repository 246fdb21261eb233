//! The claims this process holds, kept alive by heartbeats; and the reaper that returns the
//! claims of a node that stopped.
//!
//! Why heartbeats: a lease long enough for the slowest batch (256 messages against a server
//! that times out after 30 s each) would leave a dead node's messages stuck for many
//! minutes, and one short enough for quick recovery would expire under a live node in the
//! middle of a slow batch, so a second node would send those messages again. So the lease
//! is short (`dispatch.lease`, default 1 m) and a live node renews the leases of every
//! claim it still holds every `dispatch.heartbeat` (default a quarter of the lease). Only
//! a node that stops renewing (killed, frozen, cut off from the store) loses its claims.
//!
//! A node also refuses to *start* a send whose lease it has not seen renewed lately: more
//! than `lease − 2 × heartbeat` must be left (with the defaults: half the lease, so two
//! missed renewals in a row), and a claim that a renewal no longer finds (another node
//! reaped it) is never started. A frozen node that wakes up sends at most what it had in
//! flight, not the rest of its batch.
//!
//! Leases compare the wall clocks of different nodes (`locked_until` is written by the
//! holder and read by the reaper): keep the nodes' clocks in sync (NTP), well within the
//! lease.

use super::DispatchConfig;
use crate::clock::SharedClock;
use crate::store::{Reaped, Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// The claim tokens of this process's drain and the lease end the store last confirmed for
/// each; emptied when the drain ends.
#[derive(Debug)]
pub(super) struct Held {
    lease: chrono::Duration,
    /// A send starts only while its lease has more than this left.
    margin: chrono::Duration,
    /// `None` while the claim is being made: spared by this node's reaper, not yet renewed
    /// or started.
    tokens: Mutex<HashMap<String, Option<DateTime<Utc>>>>,
}

impl Held {
    pub(super) fn new(cfg: &DispatchConfig) -> Held {
        let lease = chrono::Duration::from_std(cfg.lease).unwrap_or(chrono::Duration::MAX);
        let beat = chrono::Duration::from_std(cfg.heartbeat).unwrap_or(chrono::Duration::MAX);
        Held {
            lease,
            margin: (lease - beat - beat).max(chrono::Duration::zero()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A claim under `token` is about to be made: from now on this node's reaper spares it.
    /// Call it before the claim reads the clock for its lease. Registered only once
    /// committed, a node stalled past the lease inside the claim had its own reaper, woken
    /// first, return the rows it had just claimed, each logged as an attempt that "may have
    /// been sent" although none had started. Not renewed until [`Held::add`]: a renewal
    /// before the commit would find no row and drop the token.
    pub(super) fn claiming(&self, token: &str) {
        self.lock().insert(token.to_string(), None);
    }

    /// The claim under `token` is committed with its lease ending at `until`.
    pub(super) fn add(&self, token: &str, until: DateTime<Utc>) {
        self.lock().insert(token.to_string(), Some(until));
    }

    /// The claim under `token` claimed nothing or failed.
    pub(super) fn forget(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Whether a message claimed under `token` may still be handed to a channel at `now`.
    pub(super) fn may_start(&self, token: &str, now: DateTime<Utc>) -> bool {
        self.lock()
            .get(token)
            .copied()
            .flatten()
            .is_some_and(|until| until - now > self.margin)
    }

    /// One heartbeat: extend every held lease to `now + lease`. Tokens the store no longer
    /// knows as claimed are dropped (completed, released, or lost to the reaper); a token
    /// whose rows another writer had locked for the moment (PostgreSQL's renewal skips
    /// locked rows) keeps the lease it had, and is renewed at the next beat. It used to be
    /// dropped for good: its unstarted messages were never started, and this node's reaper
    /// no longer spared them.
    pub(super) async fn renew(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let asked: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, until)| until.is_some())
            .map(|(t, _)| t.clone())
            .collect();
        if asked.is_empty() {
            return Ok(0);
        }
        let until = now + self.lease;
        let kept = store.renew(&asked, until).await?;
        let missed: Vec<String> = asked
            .iter()
            .filter(|t| !kept.contains(*t))
            .cloned()
            .collect();
        let still = if missed.is_empty() {
            Default::default()
        } else {
            store.still_claimed(&missed).await?
        };
        settle(&mut self.lock(), &asked, &kept, &still, until);
        Ok(kept.len())
    }

    /// The tokens held now, claims being made included, for this node's reaper to leave
    /// alone.
    pub(super) fn tokens(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// A drain is over: every claim it made is completed or handed back.
    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<DateTime<Utc>>>> {
        self.tokens.lock().expect("held leases lock")
    }
}

/// The held leases after a renewal: `kept` (extended) to `until`; `still` (not extended,
/// still claimed) as they were; the rest of `asked` dropped.
fn settle(
    tokens: &mut HashMap<String, Option<DateTime<Utc>>>,
    asked: &[String],
    kept: &std::collections::HashSet<String>,
    still: &std::collections::HashSet<String>,
    until: DateTime<Utc>,
) {
    for t in asked {
        if kept.contains(t) {
            tokens.insert(t.clone(), Some(until));
        } else if !still.contains(t) {
            tokens.remove(t);
        }
    }
}

/// Renew `held` every `every` until `stop` turns true. A failed renewal is logged and
/// tried again at the next beat; [`Held::may_start`] stops new sends meanwhile. A beat that
/// comes more than twice `every` after the last is logged: the process was stalled (paused,
/// swapping, starved of CPU), which is when leases run out under a live node.
pub(super) async fn heartbeat(
    held: std::sync::Arc<Held>,
    store: Store,
    clock: SharedClock,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let gap = last.elapsed();
        if gap > every * 2 {
            tracing::warn!(
                "heartbeat {:.1} s after the last, due every {:.1} s: this process was stalled \
                 (paused, swapping or starved of CPU); leases it did not renew meanwhile may have \
                 run out and been taken by another node",
                gap.as_secs_f64(),
                every.as_secs_f64()
            );
        }
        if let Err(e) = held.renew(&store, clock.now()).await {
            tracing::warn!("lease renewal failed (sends stop if it keeps failing): {e}");
        }
        last = std::time::Instant::now();
    }
}

/// Reap expired claims every `every` until `stop` turns true, except those held by this
/// process ([`super::Dispatcher::reap`]); `reaped` is told each time some came back, so the
/// dispatch loop can pick them up without waiting for its poll.
pub(super) async fn reaper(
    d: std::sync::Arc<super::Dispatcher>,
    every: Duration,
    reaped: std::sync::Arc<tokio::sync::Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match d.reap().await {
            Ok(0) => {}
            Ok(_) => reaped.notify_one(),
            Err(e) => tracing::error!("reaping expired leases failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One warning per node whose claims came back.
pub(super) fn log_reaped(r: &[Reaped]) {
    let mut by_node: HashMap<&str, usize> = HashMap::new();
    for x in r {
        *by_node.entry(x.node.as_str()).or_default() += 1;
    }
    for (node, count) in by_node {
        tracing::warn!(
            node,
            count,
            "returned messages whose lease expired (the node stopped mid-send; each is logged as an attempt that may have been sent)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_extends_the_kept_keeps_the_still_claimed_and_drops_the_rest() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().expect("a time");
        let before = t("2026-11-23T02:01:00Z");
        let until = t("2026-11-23T02:02:00Z");
        let mut tokens: HashMap<String, Option<DateTime<Utc>>> = ["kept", "locked", "gone"]
            .iter()
            .map(|k| (k.to_string(), Some(before)))
            .collect();
        let asked: Vec<String> = tokens.keys().cloned().collect();
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        settle(
            &mut tokens,
            &asked,
            &set(&["kept"]),
            &set(&["locked"]),
            until,
        );
        assert_eq!(tokens.get("kept"), Some(&Some(until)));
        assert_eq!(
            tokens.get("locked"),
            Some(&Some(before)),
            "still held, not extended"
        );
        assert_eq!(tokens.get("gone"), None);
    }

    /// A claim being made is spared by the reaper from the start, but neither renewed (its
    /// rows may not be committed yet: a renewal would find none and drop it) nor started.
    #[tokio::test]
    async fn a_claim_being_made_is_spared_but_neither_renewed_nor_started() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open_scratch(&dir.path().join("s.db"))
            .await
            .expect("a scratch store");
        let held = Held::new(&DispatchConfig::default());
        let now: DateTime<Utc> = "2026-11-23T02:00:00Z".parse().expect("a time");
        held.claiming("t1");
        assert_eq!(
            held.tokens(),
            vec!["t1".to_string()],
            "spared by the reaper"
        );
        assert!(!held.may_start("t1", now));
        assert_eq!(held.renew(&store, now).await.expect("a renewal"), 0);
        assert_eq!(
            held.tokens(),
            vec!["t1".to_string()],
            "a renewal before the claim commits leaves it alone"
        );
        held.add("t1", now + chrono::Duration::minutes(1));
        assert!(held.may_start("t1", now));
        held.claiming("t2");
        held.forget("t2");
        assert_eq!(held.tokens(), vec!["t1".to_string()]);
    }
}
