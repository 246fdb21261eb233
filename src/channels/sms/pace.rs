//! The rate limit of one gateway, shared by every sender in the process.
//!
//! Providers cap requests per second per account and answer 429 (or a throttling code) past
//! it, so we stay under the configured rate instead of finding it by failing. governor's GCRA
//! decides when the next message may go. Waiters queue on a fair (FIFO) async mutex so that
//! only the head of the queue polls the limiter: with governor's own `until_ready`, a burst of
//! 10,000 concurrent sends would all wake at every free slot and all but one sleep again.
//!
//! The allowed burst is 10 ms worth of messages (at least one): tokio's timer wakes in whole
//! milliseconds, and with no burst at all a fast rate (2,000/s) would lose the fractions and
//! run slower than configured. In any window of `t` seconds at most `rate × t` plus that
//! burst go out.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use super::settings::Rate;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

pub(super) struct Pace {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    queue: tokio::sync::Mutex<()>,
}

impl Pace {
    pub(super) fn new(rate: Rate) -> Pace {
        let count = rate.count.max(1);
        let period = (rate.per / count).max(Duration::from_nanos(1));
        let burst = (f64::from(count) * 0.010 / rate.per.as_secs_f64()).floor() as u32;
        let quota = Quota::with_period(period)
            .expect("the period is at least 1ns")
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"));
        Pace {
            limiter: RateLimiter::direct(quota),
            clock: DefaultClock::default(),
            queue: tokio::sync::Mutex::new(()),
        }
    }

    /// Wait for this gateway's next free slot, in arrival order.
    pub(super) async fn wait(&self) {
        let _turn = self.queue.lock().await;
        while let Err(not_until) = self.limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    /// The limiter alone, no HTTP: 10,000 concurrent waiters at 20,000/s are released no
    /// faster than the rate allows, and the FIFO hand-off keeps up with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_thousand_waiters_get_the_configured_rate() {
        const N: u32 = 10_000;
        let rate = Rate {
            count: 20_000,
            per: Duration::from_secs(1),
        };
        let origin = Instant::now();
        let pace = Arc::new(Pace::new(rate));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..N {
            let pace = pace.clone();
            tasks.spawn(async move {
                pace.wait().await;
                Instant::now()
            });
        }
        let mut released: Vec<Duration> = Vec::new();
        while let Some(at) = tasks.join_next().await {
            released.push(at.unwrap().duration_since(origin));
        }
        released.sort();
        let period = Duration::from_secs(1) / rate.count;
        let burst = 200; // 10 ms at 20,000/s
        for (k, t) in released.iter().enumerate() {
            let earliest = period * (k as u32 + 1).saturating_sub(burst);
            assert!(*t >= earliest, "release {k} at {t:?}, before {earliest:?}");
        }
        let floor = period * (N - burst);
        let last = *released.last().unwrap();
        assert!(
            last < floor * 4,
            "{last:?}: the queue does not keep up with {floor:?}"
        );
    }
}
