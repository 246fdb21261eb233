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

use super::config::Rate;
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
    pub fn new(rate: Rate) -> Pace {
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
    pub async fn wait(&self) {
        let _turn = self.queue.lock().await;
        while let Err(not_until) = self.limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
    }
}
