//! The one place the program learns the time.
//!
//! Every stage takes a [`Clock`] instead of calling `Utc::now()`, so `run --once --now T`
//! and the tests can replay days of schedule in milliseconds. Wall-clock timeouts (an SMTP
//! send that hangs) still use tokio's real timers: they measure the network, not the plan.

use chrono::{DateTime, Utc};
use std::sync::Arc;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The real time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at one instant, for `--now` and tests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// A clock a simulation moves forward (the forecast replays the daemon step by step).
#[derive(Debug)]
pub(crate) struct SteppedClock(std::sync::Mutex<DateTime<Utc>>);

impl SteppedClock {
    pub(crate) fn new(t: DateTime<Utc>) -> SteppedClock {
        SteppedClock(std::sync::Mutex::new(t))
    }

    pub(crate) fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = t;
    }
}

impl Clock for SteppedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

pub(crate) type SharedClock = Arc<dyn Clock>;

/// The clock for a command: fixed when `--now` was given, the system clock otherwise.
pub(crate) fn from_option(now: Option<DateTime<Utc>>) -> SharedClock {
    match now {
        Some(t) => Arc::new(FixedClock(t)),
        None => Arc::new(SystemClock),
    }
}

/// Milliseconds since the Unix epoch: how the store keeps every instant, on both backends.
pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
