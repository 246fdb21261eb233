//! Prometheus metrics (`GET /metrics`).
//!
//! Two sources: counters and the send-latency histogram are kept in the process as things
//! happen (dispatch and the API call [`observe_send`], [`count_error`], [`count_events`]);
//! message counts by job, channel and state and the outbox depth are read from the store at
//! scrape time, because the store is the truth and several nodes share it.

use crate::model::Outcome;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};

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
    outcome_commits: Counter,
    messages: Family<MessageLabels, Gauge>,
    outbox_depth: Gauge,
    outbox_due: Gauge,
    oldest_due_age: Gauge<f64, AtomicU64>,
    bounces: Family<BounceLabels, Gauge>,
    suppressions: Family<SuppressionLabels, Gauge>,
    brakes: Family<ScopeLabels, Gauge>,
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
        "Addresses suppressed now, by channel and reason (hard, soft, complaint, unsubscribe, support, sms_reply)",
        Family::<SuppressionLabels, Gauge>::default(),
    );
    let brakes = registered(
        &mut registry,
        "reputation_brake_engaged",
        "1 while the reputation brake holds a scope's marketing email (job:<id> or domain:<sending domain>)",
        Family::<ScopeLabels, Gauge>::default(),
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
        send_seconds,
        retries,
        errors,
        relay_refusals,
        events,
        ingest_commits,
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

/// One transaction of a dispatch recorder committed.
pub(crate) fn count_outcome_commit() {
    lock().outcome_commits.inc();
}

/// What one retention purge removed, by kind (`messages`, `attempts`, ...).
pub(crate) fn count_purged(items: &[(&'static str, u64)]) {
    let m = METRICS.lock().expect("metrics lock");
    for (kind, n) in items {
        m.purged
            .get_or_create(&KindLabels {
                kind: (*kind).into(),
            })
            .inc_by(*n);
    }
}

/// The text exposition, with the store's figures read now.
pub(crate) async fn render(store: &Store, now: DateTime<Utc>) -> Result<String, StoreError> {
    let counts = store.state_counts().await?;
    let outbox = store.outbox_figures(now).await?;
    let feedback = store.feedback_figures(now).await?;
    let m = lock();
    m.bounces.clear();
    for (kind, domain, n) in feedback.bounces {
        m.bounces
            .get_or_create(&BounceLabels { kind, domain })
            .set(n);
    }
    m.suppressions.clear();
    for (channel, reason, n) in feedback.suppressions {
        m.suppressions
            .get_or_create(&SuppressionLabels { channel, reason })
            .set(n);
    }
    m.brakes.clear();
    for (scope, engaged) in feedback.brakes {
        m.brakes
            .get_or_create(&ScopeLabels { scope })
            .set(i64::from(engaged));
    }
    m.messages.clear();
    for c in counts {
        m.messages
            .get_or_create(&MessageLabels {
                job: c.job,
                channel: c.channel,
                state: c.state,
            })
            .set(c.count);
    }
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
