//! The claim loop: claim what is due in batches under a lease, hand each message to its own
//! task, and let the recorder commit outcomes while the next batch is already sending.

use super::Dispatcher;
use super::pace::Pace;
use super::record::{self, Stats};
use crate::store::{ClaimWith, Claimed, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Semaphore, watch};

impl Dispatcher {
    /// Claim and send until nothing is due or `stop` is set. Each message is its own task
    /// (so sends use every core), at most `concurrency` at once; the next batch (about a
    /// second of work, see `pace`) is claimed while the last half of the previous one is
    /// handed out, and a recorder task commits outcomes in groups as they arrive. A
    /// heartbeat task renews the leases of this drain's claims until the last outcome is
    /// committed; a message whose lease was not renewed lately, or was lost to another
    /// node's reaper, is not started (see `lease.rs`).
    pub(super) async fn drain(
        self: &Arc<Self>,
        stop: &watch::Receiver<bool>,
    ) -> Result<Stats, StoreError> {
        let limit = self.cfg.concurrency as usize;
        let group = self.cfg.batch_size as usize;
        let (done_tx, recorder) = record::start(
            self.store.clone(),
            group,
            self.cfg.record_wait,
            limit * 2 + group,
            self.dry_run,
        );
        let held = self.held.clone();
        let (beat_stop, beat_stopped) = watch::channel(false);
        let beat = tokio::spawn(super::lease::heartbeat(
            held.clone(),
            self.store.clone(),
            self.clock.clone(),
            self.cfg.heartbeat,
            beat_stopped,
        ));
        // Claimed, not started, lease not confirmed: handed back at the end if still ours.
        let mut unsure: HashMap<String, Vec<String>> = HashMap::new();
        let mut lost = 0u64;
        let slots = Arc::new(Semaphore::new(limit));
        let mut released = 0u64;
        let mut result = Ok(());
        let longest_cap = self.book.policy.caps.iter().map(|c| c.per).max();
        let with = ClaimWith {
            stop_types: self.book.jobs.stop_types(),
            sends_since: longest_cap
                .and_then(|p| chrono::Duration::from_std(p).ok())
                .map(|p| self.clock.now() - p),
        };
        let pace = Arc::new(Pace::default());
        // The next claim, asked for while the last half of this batch is handed out: a claim
        // is a store round trip behind the recorder's commits, and slots freed meanwhile
        // waited for it idle (17-19% of the two cores idle in a dispatch of 100,000, 7-10%
        // with it). Claimed but not started are then at most one and a half batches, not one.
        let mut ahead: Option<tokio::task::JoinHandle<Result<Batch, StoreError>>> = None;
        'claiming: while !*stop.borrow() {
            let claimed = match ahead.take() {
                Some(next) => next.await.expect("a claim task does not panic"),
                None => self.claim_next(limit, &pace, &with).await,
            };
            let (token, batch) = match claimed {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            let size = batch.len();
            let mut unstarted = batch.into_iter();
            while let Some(m) = unstarted.next() {
                // `m` and what is still in `unstarted` are left to start.
                if ahead.is_none() && (unstarted.len() + 1) * 2 <= size && !*stop.borrow() {
                    let (me, pace, with) = (Arc::clone(self), pace.clone(), with.clone());
                    ahead = Some(tokio::spawn(async move {
                        me.claim_next(limit, &pace, &with).await
                    }));
                }
                let slot = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                if *stop.borrow() || done_tx.is_closed() {
                    // Stopping (or the recorder failed): hand back what has not started.
                    let back = std::iter::once(m.id).chain(unstarted.map(|m| m.id));
                    result = result.and(self.hand_back(&token, back, &mut released).await);
                    break 'claiming;
                }
                if !held.may_start(&m.claim_token, self.clock.now()) {
                    lost += 1;
                    unsure.entry(m.claim_token).or_default().push(m.id);
                    continue;
                }
                let me = Arc::clone(self);
                let done = done_tx.clone();
                let pace = pace.clone();
                let guard = crate::send_guard::Guard::new(
                    &m,
                    &self.book.jobs,
                    &self.node,
                    self.clock.now(),
                );
                tokio::spawn(async move {
                    let mut m = m;
                    let started = Instant::now();
                    // A panic fails this message at once (see send_guard), not its lease.
                    let c = guard.run(me.process(&mut m, me.clock.now())).await;
                    pace.observe(started.elapsed());
                    let _ = done.send(c).await;
                    drop(slot);
                });
            }
        }
        // Stopped while the next batch was being claimed: none of it has started.
        if let Some(next) = ahead.take() {
            match next.await.expect("a claim task does not panic") {
                Ok((token, batch)) => {
                    let back = batch.into_iter().map(|m| m.id);
                    result = result.and(self.hand_back(&token, back, &mut released).await);
                }
                Err(e) => result = result.and(Err(e)),
            }
        }
        // Every started send finishes (each is bounded by the channel's timeout).
        let _all = slots
            .acquire_many(limit as u32)
            .await
            .expect("the semaphore is never closed");
        drop(done_tx);
        let recorded = recorder.await.expect("the recorder task does not panic");
        // Every outcome is committed (or the recorder gave up): nothing left to renew.
        let _ = beat_stop.send(true);
        let _ = beat.await;
        held.clear();
        let mut stats = recorded?;
        // Committed now: the next claim reads these sends from the store.
        self.sends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        for (token, ids) in unsure {
            // Still ours if no reaper took them (the renewal failed, the lease held): back
            // to the queue untried; otherwise this matches nothing.
            if let Err(e) = self.store.release(&token, &ids, self.clock.now()).await {
                tracing::warn!("could not hand back claims whose lease was in doubt: {e}");
            }
        }
        if lost > 0 {
            tracing::warn!(
                count = lost,
                "not started: their lease was lost or not renewed in time (another node sends them)"
            );
        }
        result?;
        stats.released = released;
        stats.stale += lost;
        Ok(stats)
    }

    /// Return claimed messages that have not started to the queue, counted in `released`.
    async fn hand_back(
        &self,
        token: &str,
        ids: impl Iterator<Item = String>,
        released: &mut u64,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = ids.collect();
        if ids.is_empty() {
            return Ok(());
        }
        *released += ids.len() as u64;
        self.store.release(token, &ids, self.clock.now()).await
    }

    /// Claim the next batch (its size from `pace`) under a new token, and hold its lease
    /// (the heartbeat renews it from now on). Empty when nothing is due.
    async fn claim_next(
        &self,
        limit: usize,
        pace: &Pace,
        with: &ClaimWith,
    ) -> Result<Batch, StoreError> {
        // The brakes as they are now, before each claim: one engaged by another node, or
        // released by `jobs resume` (which makes the held messages due at once), reaches a
        // drain that sends for minutes; read once a drain, a resume was undone by deferring
        // them again. A small table, read about once a second of sending.
        self.load_brakes().await?;
        let token = crate::values::new_id(self.clock.now());
        // Spared by this node's reaper from before the lease's clock reading: a reaper
        // whose list lacks the token read its own clock earlier, so this lease ends after
        // that clock (see `Dispatcher::reap`).
        self.held.claiming(&token);
        let now = self.clock.now();
        let lease_end = now + self.cfg.lease;
        let want = pace.claim_size(limit, self.cfg.batch_size as usize);
        let batch = self
            .store
            .claim(&self.node, &token, now, lease_end, want as i64, with)
            .await;
        match &batch {
            Ok(b) if !b.is_empty() => self.held.add(&token, lease_end),
            _ => self.held.forget(&token),
        }
        Ok((token, batch?))
    }
}

/// A claim's token and the messages claimed under it.
type Batch = (String, Vec<Claimed>);
