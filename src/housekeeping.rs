//! The daemon's daily purge: records past their retention leave the store.
//!
//! Every daemon checks a few times an hour whether the day's purge is due, and the store's
//! `housekeeping` row decides (a conditional update) which one node runs it, so several
//! daemons on one PostgreSQL purge once a day between them, not once each. The purge itself
//! (`store::retention`) works in small transactions with a rest between them, so dispatch
//! and ingest never wait long behind it. What it removed goes to the log (counts only, never
//! the data) and to the `aftercare_purged_rows_total` metric.

use crate::clock::SharedClock;
use crate::metrics;
use crate::store::{Kept, PURGE_BATCH, Purged, Retention, Store, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::watch;

/// How often the purge runs.
pub const PURGE_EVERY: Duration = Duration::from_secs(86_400);
/// How often a daemon asks whether it is due.
const CHECK_EVERY: Duration = Duration::from_secs(10 * 60);
/// The rest between two purge transactions.
const PAUSE: Duration = Duration::from_millis(20);

/// Run the purge when due until `stop` turns true.
pub async fn run(
    store: Store,
    retention: Retention,
    clock: SharedClock,
    node: String,
    mut stop: watch::Receiver<bool>,
) {
    if Kept::ALL.iter().all(|k| retention.of(*k).is_none()) {
        tracing::info!("retention: every kind of record is kept for ever; no purge");
        return;
    }
    loop {
        // A stop ends a purge between statements: each batch is its own transaction, so
        // what is dropped mid-way rolls back, and tomorrow's purge takes it up.
        let purged = tokio::select! {
            r = purge_if_due(&store, &retention, clock.now(), &node) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(e) = purged {
            metrics::count_error("purge");
            tracing::error!("retention purge failed (tried again later): {e}");
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

/// Purge now if no node has in the last day; `None` when it was not this node's turn.
pub async fn purge_if_due(
    store: &Store,
    retention: &Retention,
    now: DateTime<Utc>,
    node: &str,
) -> Result<Option<Purged>, StoreError> {
    if !store
        .claim_housekeeping("purge", node, now, PURGE_EVERY)
        .await?
    {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let purged = match store.purge(retention, now, PURGE_BATCH, PAUSE).await {
        Ok(p) => p,
        Err(e) => {
            // Due again at the next check, not tomorrow (what it removed stays removed).
            if let Err(again) = store
                .retry_housekeeping("purge", node, now, PURGE_EVERY, CHECK_EVERY)
                .await
            {
                tracing::warn!("the failed purge waits a day: {again}");
            }
            return Err(e);
        }
    };
    metrics::count_purged(&purged.items());
    tracing::info!(
        messages = purged.messages,
        attempts = purged.attempts,
        receipts = purged.receipts,
        events = purged.events,
        contents = purged.contents,
        replies = purged.replies,
        batches = purged.batches,
        ms = started.elapsed().as_millis() as u64,
        "retention purge: removed {purged}"
    );
    Ok(Some(purged))
}
