//! `POST /v1/events`: one event or an array, checked like `events import`, stored with
//! group commit.
//!
//! A request is checked as a whole first: one bad event and the request is refused with
//! 400 and the field path, storing nothing. Checked requests go to one writer task that
//! takes every request waiting at that moment into one transaction, so a hundred concurrent
//! single-event POSTs cost a few fsyncs, not a hundred.

use super::Scope;
use super::{ApiError, ApiState, authorize, read_body};
use crate::ingest::{Incoming, check_event};
use crate::metrics;
use crate::plan::{self, IngestOutcome};
use crate::playbook::Playbook;
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::Serialize;
use serde_json::Value;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Per-event outcome of a POST.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct EventResult {
    pub index: usize,
    pub id: String,
    /// `accepted`, `duplicate` or `rejected`.
    pub status: String,
    /// Messages planned for it.
    pub planned: usize,
    /// For a duplicate: whether the payload differed from the stored one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicting: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct IngestResponse {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub results: Vec<EventResult>,
}

struct Job {
    items: Vec<Incoming>,
    reply: oneshot::Sender<Result<Vec<IngestOutcome>, Refused>>,
}

/// Why the store took nothing of a request.
#[derive(Debug)]
enum Refused {
    /// The store is unwell (unreachable, full, a conflict): the client should try again.
    Unavailable,
    /// The store refused this request's own data (PostgreSQL's data exceptions and size
    /// limits): trying again cannot help, so the client gets a 400.
    Data(String),
}

/// The way into the writer task.
#[derive(Clone)]
pub struct IngestQueue {
    tx: mpsc::Sender<Job>,
}

impl IngestQueue {
    /// Start the writer: it takes all waiting requests, up to `group` events, per transaction.
    pub fn start(
        store: Store,
        book: Arc<ArcSwap<Playbook>>,
        clock: crate::clock::SharedClock,
        group: usize,
    ) -> IngestQueue {
        let (tx, mut rx) = mpsc::channel::<Job>(1024);
        let sqlite = store.backend() == "sqlite";
        let writer = async move {
            // Its own connection on SQLite (keeps its page cache warm), closed when the
            // queue is.
            let store = store.own_writer();
            metrics::set_ingest_requests("writing", 0);
            while let Some(first) = rx.recv().await {
                let book = book.load_full();
                // A bug in one group must not stop the intake for good: its transaction
                // rolls back, its requests get a 503 (their replies are dropped), and the
                // next group is written.
                let write = write_group(&store, &book, first, &mut rx, group, clock.now());
                if AssertUnwindSafe(write).catch_unwind().await.is_err() {
                    tracing::error!(
                        "the event writer hit a bug on a group of events (logged above); nothing of it was stored, its requests were answered 503, and the writer goes on"
                    );
                }
                metrics::set_ingest_requests("writing", 0);
            }
            if sqlite {
                store.close().await;
            }
        };
        if sqlite {
            // On a thread and runtime of its own: a group commit is a chain of some fifteen
            // round trips to SQLite's thread, and on the shared workers each wake-up of the
            // writer queued behind the connections' tasks, which lengthened every commit
            // while the two cores were not busy (bench/ingest.sh, 15 pairs of runs against a
            // task on the shared runtime: 12 faster by 2-23%, 3 slower by 1-7%; README).
            // PostgreSQL's connections belong to the shared runtime's pool, so its writer
            // stays there.
            let thread = std::thread::Builder::new()
                .name("ingest-writer".into())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(writer),
                        // The queue's receiver is dropped with `writer`: each POST then
                        // gets a 503 saying the writer is not running.
                        Err(e) => tracing::error!("the event writer could not start: {e}"),
                    }
                });
            if let Err(e) = thread {
                tracing::error!("the event writer could not start: {e}");
            }
        } else {
            tokio::spawn(writer);
        }
        IngestQueue { tx }
    }

    /// Requests sent to the writer that it has not taken yet.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    async fn submit(&self, items: Vec<Incoming>) -> Result<Vec<IngestOutcome>, ApiError> {
        let (reply, rx) = oneshot::channel();
        let unavailable = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the event writer is not running",
            )
        };
        self.tx
            .send(Job { items, reply })
            .await
            .map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())?.map_err(|r| match r {
            Refused::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store did not take the events; nothing was stored; try again",
            ),
            Refused::Data(why) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_event",
                format!("nothing was stored: the store refused this data ({why})"),
            ),
        })
    }
}

/// The requests of one group commit: each one's events, in the order they came.
#[derive(Default)]
struct Group {
    jobs: Vec<Job>,
    counts: Vec<usize>,
    all: Vec<Incoming>,
}

impl Group {
    fn add(&mut self, mut job: Job) {
        self.counts.push(job.items.len());
        self.all.append(&mut job.items);
        self.jobs.push(job);
    }

    /// Takes the requests waiting now (none is waited for), up to `limit` events in all.
    fn take_waiting(&mut self, rx: &mut mpsc::Receiver<Job>, limit: usize) {
        while self.all.len() < limit {
            match rx.try_recv() {
                Ok(job) => self.add(job),
                Err(_) => break,
            }
        }
        metrics::set_ingest_requests("writing", self.jobs.len());
    }
}

/// Store the requests of one group commit in one transaction. Requests that arrive while
/// the group is being decided and written join it before the commit (a round of their
/// own in the same transaction, which sees the rounds before it): with single-event POSTs
/// the clients answered by the last commit send again at once, and without this they
/// waited for a whole commit, so each commit took about half of the connections
/// (bench/ingest.sh; README). When the transaction fails, one request's data may be the
/// cause (a value the store cannot keep that the checks let through): each request is then
/// written alone, so one bad request never fails another, and the one the store refuses is
/// told so.
async fn write_group(
    store: &Store,
    book: &Playbook,
    first: Job,
    rx: &mut mpsc::Receiver<Job>,
    limit: usize,
    now: DateTime<Utc>,
) {
    let mut group = Group::default();
    group.add(first);
    group.take_waiting(rx, limit);
    let written = async {
        let mut tx = store.begin().await?;
        let mut outcomes = Vec::with_capacity(group.all.len());
        let (mut jobs, mut events) = (0, 0);
        while jobs < group.jobs.len() {
            let round = &group.all[events..];
            let sizes = &group.counts[jobs..];
            outcomes.extend(plan::ingest_in(book, &mut tx, round, sizes, now).await?);
            (jobs, events) = (group.jobs.len(), group.all.len());
            group.take_waiting(rx, limit);
        }
        tx.commit().await?;
        metrics::count_ingest_commit();
        Ok::<_, StoreError>(outcomes)
    }
    .await;
    let Group { jobs, counts, all } = group;
    let failure = match written {
        Ok(outcomes) => {
            let mut rest = outcomes.into_iter();
            for (j, count) in jobs.into_iter().zip(counts) {
                let mine: Vec<IngestOutcome> = rest.by_ref().take(count).collect();
                let _ = j.reply.send(Ok(mine));
            }
            return;
        }
        Err(e) => e,
    };
    metrics::count_error("store");
    if jobs.len() == 1 {
        tracing::error!("storing {} event(s) failed: {failure}", all.len());
        for j in jobs {
            let _ = j.reply.send(Err(refusal(&failure)));
        }
        return;
    }
    tracing::warn!(
        requests = jobs.len(),
        "a shared ingest transaction failed ({failure}); writing each request alone"
    );
    let mut rest = all.into_iter();
    for (j, count) in jobs.into_iter().zip(counts) {
        let mine: Vec<Incoming> = rest.by_ref().take(count).collect();
        let result = plan::ingest_requests(book, store, &mine, &[count], now)
            .await
            .inspect(|_| metrics::count_ingest_commit())
            .map_err(|e| {
                tracing::error!("storing {count} event(s) failed: {e}");
                refusal(&e)
            });
        let _ = j.reply.send(result);
    }
}

/// A failed write as the client sees it: its own data, or a store that should be retried.
fn refusal(e: &StoreError) -> Refused {
    match e {
        StoreError::Query(sqlx::Error::Database(db))
            if db
                .code()
                .is_some_and(|c| c.starts_with("22") || c.starts_with("54")) =>
        {
            Refused::Data(db.message().to_string())
        }
        _ => Refused::Unavailable,
    }
}

/// Store events (one JSON object, or an array of up to `api.max_events`).
#[utoipa::path(
    post,
    path = "/v1/events",
    request_body(content = Object, description = "An event, or an array of events, as documented for `events import`"),
    responses(
        (status = 202, description = "Checked and stored (duplicates are counted, not stored twice)", body = IngestResponse),
        (status = 400, description = "Malformed JSON or an invalid event; nothing was stored", body = ApiError),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 403, description = "The token's scope does not allow ingest", body = ApiError),
        (status = 413, description = "Too many events or too large a body", body = ApiError),
    ),
    security(("bearer" = []))
)]
pub(super) async fn post_events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    authorize(&state, &headers, Scope::Ingest)?;
    let body = read_body(&state, body).await?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("not valid JSON: {e}"),
        )
    })?;
    let (values, single) = match value {
        Value::Array(list) => (list, false),
        obj @ Value::Object(_) => (vec![obj], true),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "send an event object or an array of event objects",
            ));
        }
    };
    if values.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the array is empty",
        ));
    }
    if values.len() > state.config.max_events {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!(
                "{} events in one request; at most {} (api.max_events)",
                values.len(),
                state.config.max_events
            ),
        ));
    }
    let count = values.len();
    let mut items = Vec::with_capacity(count);
    let mut problems: Vec<(String, String)> = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        match check_event(v) {
            Ok(inc) => items.push(inc),
            Err(errs) => {
                for e in errs {
                    let path = match (single, e.field.is_empty()) {
                        (true, _) => e.field.clone(),
                        (false, true) => format!("[{i}]"),
                        (false, false) => format!("[{i}].{}", e.field),
                    };
                    problems.push((path, e.message));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(invalid(&problems, count));
    }
    let ids: Vec<String> = items.iter().map(|i| i.event.id.clone()).collect();
    let outcomes = state.ingest.submit(items).await?;
    // A request is all or nothing: planning refused one of its events (say, a dedupe key
    // the event cannot fill), so none of them was written.
    let refused: Vec<(String, String)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            IngestOutcome::Rejected(errs) => Some((i, errs)),
            _ => None,
        })
        .flat_map(|(i, errs)| {
            errs.iter().map(move |e| {
                let path = match (single, e.field.is_empty()) {
                    (true, _) => e.field.clone(),
                    (false, true) => format!("[{i}]"),
                    (false, false) => format!("[{i}].{}", e.field),
                };
                (path, e.message.clone())
            })
        })
        .collect();
    if !refused.is_empty() {
        return Err(invalid(&refused, count));
    }
    let mut resp = IngestResponse {
        accepted: 0,
        duplicates: 0,
        rejected: 0,
        results: Vec::with_capacity(outcomes.len()),
    };
    for (index, (id, o)) in ids.into_iter().zip(outcomes).enumerate() {
        let mut r = EventResult {
            index,
            id,
            status: String::new(),
            planned: 0,
            conflicting: None,
            errors: Vec::new(),
        };
        match o {
            IngestOutcome::Accepted { planned, .. } => {
                resp.accepted += 1;
                r.status = "accepted".into();
                r.planned = planned;
            }
            IngestOutcome::Duplicate { same } => {
                resp.duplicates += 1;
                r.status = "duplicate".into();
                r.conflicting = Some(!same);
            }
            // Handled above: such a request answers 400.
            IngestOutcome::Rejected(errs) => {
                resp.rejected += 1;
                r.status = "rejected".into();
                r.errors = errs.iter().map(ToString::to_string).collect();
            }
            IngestOutcome::Withdrawn => {
                resp.rejected += 1;
                r.status = "rejected".into();
            }
        }
        resp.results.push(r);
    }
    metrics::count_events("accepted", resp.accepted as u64);
    metrics::count_events("duplicate", resp.duplicates as u64);
    metrics::count_events("rejected", resp.rejected as u64);
    Ok((StatusCode::ACCEPTED, Json(resp)))
}

/// The 400 for a request with invalid events: every problem with its field path, the first
/// path in `field`; nothing of the request was stored.
fn invalid(problems: &[(String, String)], events: usize) -> ApiError {
    metrics::count_events("rejected", events as u64);
    let detail = problems
        .iter()
        .map(|(f, m)| {
            if f.is_empty() {
                m.clone()
            } else {
                format!("{f}: {m}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let e = ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_event",
        format!("nothing was stored: {detail}"),
    );
    match problems.first() {
        Some((field, _)) if !field.is_empty() => e.field(field.clone()),
        _ => e,
    }
}
