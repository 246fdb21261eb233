//! The `dispatch:` section: batch and concurrency, leases and heartbeats, retries, and what
//! happens to the messages of a job that was removed.

use crate::check::Checker;
use crate::duration;
use serde::Deserialize;
use std::time::Duration;

/// `dispatch:` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDispatch {
    batch_size: Option<u32>,
    concurrency: Option<u32>,
    lease: Option<String>,
    heartbeat: Option<String>,
    poll_interval: Option<String>,
    record_wait_ms: Option<u64>,
    expire_after: Option<String>,
    on_job_removed: Option<OnJobRemoved>,
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    initial: Option<String>,
    max: Option<String>,
}

/// What happens to pending messages of a job removed from the jobs folder (on reload).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnJobRemoved {
    /// Cancelled, with the reason in the log.
    #[default]
    Cancel,
    /// Left waiting until the job is back.
    Hold,
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub batch_size: u32,
    pub concurrency: u32,
    /// How long a claim holds a message without a renewal: after a node dies, its messages
    /// wait this long (plus one reaper round) before another node takes them.
    pub lease: Duration,
    /// How often a running daemon renews the leases it holds, and reaps expired ones.
    pub heartbeat: Duration,
    pub poll_interval: Duration,
    /// How long the recorder waits for more outcomes before it commits a group. Each commit
    /// has a cost of its own beside its rows (a transaction, a round trip, on PostgreSQL
    /// some 300 us of the server's CPU); without a wait a group is what arrived during the
    /// last commit, about one per send slot (bench/nodes.sh: 16 outcomes a commit, 5 ms
    /// made it 80 and cut PostgreSQL's CPU per message by a quarter). Sends do not wait for
    /// it, only the commit of their outcome, which a lease of a minute covers many times.
    pub record_wait: Duration,
    /// A message more than this late (a backfill of old events, a long outage) is not sent.
    pub expire_after: Option<Duration>,
    pub on_job_removed: OnJobRemoved,
    pub retry: RetryConfig,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

/// The default lease. With heartbeats a lease no longer has to outlast a batch, only a
/// stall: a live node renews every quarter of it, so it loses a claim only after missing
/// three renewals in a row (45 s cut off from the store, a frozen VM), while the messages of
/// a node that died wait about a minute, not five, before another node sends them.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(60);

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            batch_size: 256,
            concurrency: 16,
            lease: DEFAULT_LEASE,
            heartbeat: DEFAULT_LEASE / 4,
            poll_interval: Duration::from_secs(1),
            record_wait: Duration::from_millis(5),
            expire_after: Some(Duration::from_secs(7 * 86_400)),
            on_job_removed: OnJobRemoved::Cancel,
            retry: RetryConfig {
                max_attempts: 8,
                initial: Duration::from_secs(60),
                max: Duration::from_secs(6 * 3600),
            },
        }
    }
}

pub(crate) fn check(c: &mut Checker, raw: RawDispatch) -> DispatchConfig {
    let d = DispatchConfig::default();
    let retry = RetryConfig {
        max_attempts: raw
            .retry
            .max_attempts
            .unwrap_or(d.retry.max_attempts)
            .max(1),
        initial: c.duration_or(
            "dispatch.retry.initial",
            raw.retry.initial.as_deref(),
            d.retry.initial,
        ),
        max: c.duration_or("dispatch.retry.max", raw.retry.max.as_deref(), d.retry.max),
    };
    let expire_after = match raw.expire_after.as_deref() {
        Some("never") => None,
        other => Some(c.duration_or(
            "dispatch.expire_after",
            other,
            d.expire_after.unwrap_or_default(),
        )),
    };
    let (lease, heartbeat) = lease(c, &raw);
    DispatchConfig {
        batch_size: raw.batch_size.unwrap_or(d.batch_size).clamp(1, 10_000),
        concurrency: raw.concurrency.unwrap_or(d.concurrency).clamp(1, 1_024),
        lease,
        heartbeat,
        poll_interval: c.duration_or(
            "dispatch.poll_interval",
            raw.poll_interval.as_deref(),
            d.poll_interval,
        ),
        record_wait: record_wait(c, raw.record_wait_ms),
        expire_after,
        on_job_removed: raw.on_job_removed.unwrap_or_default(),
        retry,
    }
}

/// `dispatch.record_wait_ms`: at most a second, as outcomes wait uncommitted meanwhile (a
/// daemon stopped hard in that time sends them again after the lease).
fn record_wait(c: &mut Checker, raw: Option<u64>) -> Duration {
    let d = DispatchConfig::default().record_wait;
    match raw {
        None => d,
        Some(ms) if ms <= 1_000 => Duration::from_millis(ms),
        Some(ms) => {
            c.err(
                "dispatch.record_wait_ms",
                format!(
                    "{ms} is too long: outcomes of sends wait uncommitted this long, and a \
                     daemon stopped hard meanwhile sends them again"
                ),
                Some("use 0 to 1000 (milliseconds); the default is 5".into()),
            );
            d
        }
    }
}

/// `dispatch.lease` and `dispatch.heartbeat` (default a quarter of the lease). A heartbeat
/// longer than half the lease is refused: one late renewal would lose it.
fn lease(c: &mut Checker, raw: &RawDispatch) -> (Duration, Duration) {
    let d = DispatchConfig::default();
    let mut lease = c.duration_or("dispatch.lease", raw.lease.as_deref(), d.lease);
    if lease < Duration::from_secs(1) {
        c.err(
            "dispatch.lease",
            format!(
                "`{}` is too short: a lease must outlast a store round trip",
                duration::format(lease)
            ),
            Some("use at least 1s; the default is 1m".into()),
        );
        lease = d.lease;
    }
    let heartbeat = match raw.heartbeat.as_deref() {
        None => lease / 4,
        Some(text) => {
            let h = c.duration_or("dispatch.heartbeat", Some(text), lease / 4);
            if h.is_zero() || h * 2 > lease {
                c.err(
                    "dispatch.heartbeat",
                    format!(
                        "`{}` must be more than 0s and at most half of dispatch.lease ({}): \
                         a node that renews less often loses its claims after one late renewal",
                        duration::format(h),
                        duration::format(lease)
                    ),
                    Some("leave it out for a quarter of the lease".into()),
                );
                lease / 4
            } else {
                h
            }
        }
    };
    (lease, heartbeat)
}
