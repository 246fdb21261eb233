//! Prometheus metrics (`GET /metrics`).
//!
//! Two sources: counters and the send-latency histogram are kept in the process as things
//! happen (dispatch and the API call [`observe_send`], [`count_error`], [`count_events`]);
//! the outbox depth and the brakes are read from the store at scrape time, because the store
//! is the truth and several nodes share it; so are the counts by job, channel and state, of
//! bounces and of suppressions, but those read whole tables, and [`StoreCounts`] keeps them
//! between scrapes once they cost more than a scrape should wait for.

use crate::model::Outcome;
use crate::store::{FeedbackFigures, StateCount, Store, StoreError};
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SendLabels {
    channel: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BounceLabels {
    kind: String,
    domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SuppressionLabels {
    channel: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabels {
    scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    job: String,
    channel: String,
    state: String,
}

struct Metrics {
    registry: Registry,
    purged: Family<KindLabels, Counter>,
    send_seconds: Family<SendLabels, Histogram>,
    retries: Counter,
    errors: Family<KindLabels, Counter>,
    relay_refusals: Family<StageLabels, Counter>,
    events: Family<StatusLabels, Counter>,
    ingest_commits: Counter,
    ingest_requests: Family<StageLabels, Gauge>,
    outcome_commits: Counter,
    messages: Family<MessageLabels, Gauge>,
    outbox_depth: Gauge,
    outbox_due: Gauge,
    oldest_due_age: Gauge<f64, AtomicU64>,
    bounces: Family<BounceLabels, Gauge>,
    suppressions: Family<SuppressionLabels, Gauge>,
    brakes: Family<ScopeLabels, Gauge>,
    counts_age: Gauge<f64, AtomicU64>,
    counts_took: Gauge<f64, AtomicU64>,
}

/// `metric` registered under `name`, explained by `help`; the handle it returns updates it.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

static METRICS: LazyLock<Mutex<Metrics>> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("aftercare");
    let send_seconds = registered(
        &mut registry,
        "send_duration_seconds",
        "Time to hand one message to its channel",
        Family::<SendLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        }),
    );
    let retries = registered(
        &mut registry,
        "retries",
        "Attempts that failed for now and will be retried",
        Counter::default(),
    );
    let errors = registered(
        &mut registry,
        "errors",
        "Failures by kind (transient, permanent, render, store)",
        Family::<KindLabels, Counter>::default(),
    );
    let relay_refusals = registered(
        &mut registry,
        "smtp_session_refusals",
        "The SMTP relay refused our session for good (greeting, ehlo, starttls, auth, mail, tls): a configuration fault, not the messages'",
        Family::<StageLabels, Counter>::default(),
    );
    let events = registered(
        &mut registry,
        "events",
        "Incoming events by outcome (accepted, duplicate, rejected)",
        Family::<StatusLabels, Counter>::default(),
    );
    let ingest_commits = registered(
        &mut registry,
        "ingest_commits",
        "Transactions the event writer committed for POST /v1/events (group commit): accepted events over this are the events per fsync",
        Counter::default(),
    );
    let ingest_requests = registered(
        &mut registry,
        "ingest_requests",
        "POST /v1/events requests this daemon's event writer has not answered yet, by stage: queued for it, or writing (in the group it is deciding and committing now); a queue that stays long says the store does not keep up",
        Family::<StageLabels, Gauge>::default(),
    );
    let outcome_commits = registered(
        &mut registry,
        "outcome_commits",
        "Transactions the recorder committed for the outcomes of sends: sent, retrying and failed messages over this are the outcomes per commit (dispatch.record_wait_ms)",
        Counter::default(),
    );
    let messages = registered(
        &mut registry,
        "messages",
        "Messages in the store by job, channel and state",
        Family::<MessageLabels, Gauge>::default(),
    );
    let outbox_depth = registered(
        &mut registry,
        "outbox_depth",
        "Messages scheduled or retrying",
        Gauge::default(),
    );
    let outbox_due = registered(
        &mut registry,
        "outbox_due",
        "Messages due now or earlier and not yet sent",
        Gauge::default(),
    );
    let oldest_due_age = registered(
        &mut registry,
        "outbox_oldest_due_age_seconds",
        "How late the oldest due message is",
        Gauge::<f64, AtomicU64>::default(),
    );
    let bounces = registered(
        &mut registry,
        "email_bounces",
        "Bounces and complaints in the store by kind (hard, soft, rate_limit, policy, complaint) and recipient domain (the 50 most frequent; the rest as `other`)",
        Family::<BounceLabels, Gauge>::default(),
    );
    let suppressions = registered(
        &mut registry,
        "suppressions",
        "Addresses suppressed now, by channel and reason (hard, soft, complaint, unsubscribe, support, sms_reply, erased, other)",
        Family::<SuppressionLabels, Gauge>::default(),
    );
    let brakes = registered(
        &mut registry,
        "reputation_brake_engaged",
        "1 while the reputation brake holds a scope's marketing email (job:<id> or domain:<sending domain>)",
        Family::<ScopeLabels, Gauge>::default(),
    );
    let counts_age = registered(
        &mut registry,
        "store_counts_age_seconds",
        "How old the counts of messages, email_bounces and suppressions on this page are: counted at each scrape while a count takes under 50 ms, else kept until they are 20 times as old as the count took (then counted again while the scrape is answered with these)",
        Gauge::<f64, AtomicU64>::default(),
    );
    let counts_took = registered(
        &mut registry,
        "store_counts_duration_seconds",
        "How long the last count of messages, email_bounces and suppressions took (it reads those tables whole, so it grows with the store)",
        Gauge::<f64, AtomicU64>::default(),
    );
    let purged = registered(
        &mut registry,
        "purged_rows",
        "Records the retention purge removed (event payloads: emptied), by kind",
        Family::<KindLabels, Counter>::default(),
    );
    Mutex::new(Metrics {
        registry,
        purged,
        bounces,
        suppressions,
        brakes,
        counts_age,
        counts_took,
        send_seconds,
        retries,
        errors,
        relay_refusals,
        events,
        ingest_commits,
        ingest_requests,
        outcome_commits,
        messages,
        outbox_depth,
        outbox_due,
        oldest_due_age,
    })
});

/// One delivery attempt handed to a channel.
pub(crate) fn observe_send(channel: &str, outcome: Outcome, millis: i64) {
    let m = lock();
    m.send_seconds
        .get_or_create(&SendLabels {
            channel: channel.into(),
            outcome: outcome.as_str().into(),
        })
        .observe(millis.max(0) as f64 / 1000.0);
    match outcome {
        Outcome::Transient => {
            m.retries.inc();
            m.errors
                .get_or_create(&KindLabels {
                    kind: "transient".into(),
                })
                .inc();
        }
        Outcome::Permanent => {
            m.errors
                .get_or_create(&KindLabels {
                    kind: "permanent".into(),
                })
                .inc();
        }
        Outcome::Sent => {}
    }
}

/// A panic elsewhere must not take the metrics down with it.
fn lock() -> std::sync::MutexGuard<'static, Metrics> {
    METRICS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A failure that is not a delivery outcome (`render`, `store`, `webhook`...).
pub(crate) fn count_error(kind: &str) {
    lock()
        .errors
        .get_or_create(&KindLabels { kind: kind.into() })
        .inc();
}

pub(crate) fn count_events(status: &str, n: u64) {
    lock()
        .events
        .get_or_create(&StatusLabels {
            status: status.into(),
        })
        .inc_by(n);
}

/// One transaction of the event writer committed.
pub(crate) fn count_ingest_commit() {
    lock().ingest_commits.inc();
}

/// How many requests the event writer holds at `stage` (`queued` or `writing`) now.
pub(crate) fn set_ingest_requests(stage: &str, n: usize) {
    lock()
        .ingest_requests
        .get_or_create(&StageLabels {
            stage: stage.into(),
        })
        .set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// One transaction of a dispatch recorder committed.
pub(crate) fn count_outcome_commit() {
    lock().outcome_commits.inc();
}

/// What one retention purge removed, by kind (`messages`, `attempts`, ...).
pub(crate) fn count_purged(items: &[(&'static str, u64)]) {
    let m = lock();
    for (kind, n) in items {
        m.purged
            .get_or_create(&KindLabels {
                kind: (*kind).into(),
            })
            .inc_by(*n);
    }
}

/// The text exposition: the outbox and the brakes read now, the counts from `counts`.
pub(crate) async fn render(
    store: &Store,
    counts: &StoreCounts,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let outbox = store.outbox_figures(now).await?;
    let brakes = store.brakes(false).await?;
    let counted = counts.read(store, now).await?;
    let m = lock();
    m.bounces.clear();
    for (kind, domain, n) in &counted.figures.feedback.bounces {
        m.bounces
            .get_or_create(&BounceLabels {
                kind: kind.clone(),
                domain: domain.clone(),
            })
            .set(*n);
    }
    m.suppressions.clear();
    for (channel, reason, n) in &counted.figures.feedback.suppressions {
        m.suppressions
            .get_or_create(&SuppressionLabels {
                channel: channel.clone(),
                reason: reason.clone(),
            })
            .set(*n);
    }
    m.brakes.clear();
    for b in brakes {
        m.brakes
            .get_or_create(&ScopeLabels { scope: b.scope })
            .set(i64::from(b.released_at.is_none()));
    }
    m.messages.clear();
    for c in &counted.figures.messages {
        m.messages
            .get_or_create(&MessageLabels {
                job: c.job.clone(),
                channel: c.channel.clone(),
                state: c.state.clone(),
            })
            .set(c.count);
    }
    m.counts_age.set(counted.at.elapsed().as_secs_f64());
    m.counts_took.set(counted.took.as_secs_f64());
    // Kept by the SMTP pool itself (channels sit below metrics on the code map).
    for (stage, n) in crate::channels::email::relay::session_refusals() {
        m.relay_refusals
            .get_or_create(&StageLabels {
                stage: stage.into(),
            })
            .inner()
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }
    m.outbox_depth.set(outbox.depth);
    m.outbox_due.set(outbox.due);
    let age = outbox
        .oldest_due
        .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    m.oldest_due_age.set(age);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &m.registry)
        .expect("writing to a String does not fail");
    Ok(out)
}

/// What [`StoreCounts`] keeps: the counts that read whole tables.
struct Figures {
    messages: Vec<StateCount>,
    feedback: FeedbackFigures,
}

/// One count of the store, with when it was taken and how long it took.
#[derive(Clone)]
struct Counted {
    figures: Arc<Figures>,
    at: Instant,
    took: Duration,
}

/// The counts of messages (by job, channel, state), bounces and suppressions, kept between
/// scrapes. Each count reads those tables whole: 0.6–0.7 s a scrape with 1,000,000 messages
/// on SQLite, growing with the store, so past ten million or so a scrape that waited for it
/// would outlast Prometheus' 10 s timeout, and every scrape of every node would spend it.
/// The rule: while a count takes under [`StoreCounts::CHEAP`] it is taken at every scrape (a
/// small store reads as before); a dearer one is kept until it is [`StoreCounts::FACTOR`]
/// times as old as it took, so counting takes at most a twentieth of one core however often
/// Prometheus asks; then the scrape that finds it old is answered with it while a new count
/// runs in the background. The age is on the page (`store_counts_age_seconds`). One per API
/// (per store), not per process: tests run several in one.
#[derive(Clone)]
pub(crate) struct StoreCounts {
    last: Arc<Mutex<Option<Counted>>>,
    counting: Arc<AtomicBool>,
    cheap: Duration,
    factor: u32,
}

impl Default for StoreCounts {
    fn default() -> Self {
        StoreCounts::with_limits(StoreCounts::CHEAP, StoreCounts::FACTOR)
    }
}

/// What a scrape does with the counts it finds.
#[derive(Debug, PartialEq, Eq)]
enum Serve {
    /// None yet, or cheap to take: count now and wait.
    Count,
    /// Young enough.
    Kept,
    /// Too old: serve them and count again in the background.
    KeptAndRecount,
}

impl StoreCounts {
    const CHEAP: Duration = Duration::from_millis(50);
    const FACTOR: u32 = 20;

    fn with_limits(cheap: Duration, factor: u32) -> Self {
        StoreCounts {
            last: Arc::default(),
            counting: Arc::default(),
            cheap,
            factor,
        }
    }

    /// `last`: the age of the counts kept and how long they took.
    fn serve(&self, last: Option<(Duration, Duration)>) -> Serve {
        match last {
            None => Serve::Count,
            Some((_, took)) if took < self.cheap => Serve::Count,
            Some((age, took)) if age < took.saturating_mul(self.factor) => Serve::Kept,
            Some(_) => Serve::KeptAndRecount,
        }
    }

    fn kept(&self) -> Option<Counted> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn keep(&self, c: Counted) {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(c);
    }

    async fn read(&self, store: &Store, now: DateTime<Utc>) -> Result<Counted, StoreError> {
        let kept = self.kept();
        match (
            self.serve(kept.as_ref().map(|c| (c.at.elapsed(), c.took))),
            kept,
        ) {
            (Serve::Kept, Some(c)) => Ok(c),
            (Serve::KeptAndRecount, Some(c)) => {
                if !self.counting.swap(true, Ordering::AcqRel) {
                    let (this, store) = (self.clone(), store.clone());
                    tokio::spawn(async move {
                        match count(&store, now).await {
                            Ok(fresh) => this.keep(fresh),
                            // The next scrape that finds them old tries again.
                            Err(e) => tracing::warn!(error = %e, "counting the store for /metrics"),
                        }
                        this.counting.store(false, Ordering::Release);
                    });
                }
                Ok(c)
            }
            _ => {
                let fresh = count(store, now).await?;
                self.keep(fresh.clone());
                Ok(fresh)
            }
        }
    }
}

async fn count(store: &Store, now: DateTime<Utc>) -> Result<Counted, StoreError> {
    let start = Instant::now();
    let messages = store.state_counts().await?;
    let feedback = store.feedback_figures(now).await?;
    Ok(Counted {
        figures: Arc::new(Figures { messages, feedback }),
        at: Instant::now(),
        took: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn counts_are_kept_once_dear_and_for_twenty_times_what_they_took() {
        let c = StoreCounts::default();
        assert_eq!(c.serve(None), Serve::Count);
        // Cheap: counted at every scrape, however young.
        assert_eq!(c.serve(Some((MS, 49 * MS))), Serve::Count);
        assert_eq!(c.serve(Some((Duration::ZERO, 49 * MS))), Serve::Count);
        // 700 ms (1,000,000 messages): kept for 14 s, then served once more while recounted.
        let took = 700 * MS;
        assert_eq!(c.serve(Some((13_999 * MS, took))), Serve::Kept);
        assert_eq!(c.serve(Some((14_000 * MS, took))), Serve::KeptAndRecount);
        assert_eq!(c.serve(Some((50 * MS, 50 * MS))), Serve::Kept);
    }

    /// The number of suppressions in force the counts show.
    fn suppressed(c: &Counted) -> i64 {
        c.figures.feedback.suppressions.iter().map(|s| s.2).sum()
    }

    #[tokio::test]
    async fn kept_counts_are_served_and_recounted_behind_the_scrape() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open_scratch(&dir.path().join("s.db"))
            .await
            .expect("a store");
        let now = DateTime::parse_from_rfc3339("2026-12-01T09:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let suppress = |address: &'static str| {
            let store = store.clone();
            async move {
                store
                    .suppress("email", address, "test", Some("cli"), "test", now)
                    .await
                    .expect("suppressed")
            }
        };

        // As shipped, a small store is counted at every scrape.
        let shipped = StoreCounts::default();
        assert_eq!(suppressed(&shipped.read(&store, now).await.unwrap()), 0);
        suppress("a@example.com").await;
        assert_eq!(suppressed(&shipped.read(&store, now).await.unwrap()), 1);

        // Counts that are never too old are served as they were.
        let kept = StoreCounts::with_limits(Duration::ZERO, u32::MAX);
        assert_eq!(suppressed(&kept.read(&store, now).await.unwrap()), 1);
        suppress("b@example.com").await;
        assert_eq!(suppressed(&kept.read(&store, now).await.unwrap()), 1);

        // Counts always too old: the scrape gets the old ones at once, and a count in the
        // background brings the new ones to a later scrape.
        let old = StoreCounts::with_limits(Duration::ZERO, 0);
        assert_eq!(suppressed(&old.read(&store, now).await.unwrap()), 2);
        suppress("c@example.com").await;
        assert_eq!(suppressed(&old.read(&store, now).await.unwrap()), 2);
        let deadline = Instant::now() + Duration::from_secs(10);
        while suppressed(&old.read(&store, now).await.unwrap()) != 3 {
            assert!(Instant::now() < deadline, "no count in the background");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
