//! Dispatch: claim what is due, check it may still go, render, send, record.
//!
//! Claims are batches under a lease (`dispatch.lease`); a node that dies leaves its claims
//! to expire and be reaped. Policy is re-checked at send time, not only at planning time: a
//! review submitted after the reminder was planned cancels it here. Outcomes of a batch are
//! written in one transaction by a recorder task while the next batch is already sending,
//! so the fsync per commit is shared by a whole batch.
//!
//! The rooms, in the order a message passes them: `drain` (the claim loop), `gate` (may it
//! go now, and where: a pure function), `send` (render and send per channel), `state` (the
//! next state: sent, retrying, failed), `record` (the recorder that commits outcomes);
//! `lease` keeps the claims alive and reaps a dead node's, `pace` sizes the claims.

mod drain;
mod gate;
mod lease;
mod pace;
mod record;
mod send;
pub(crate) mod settings;
mod state;

pub(crate) use record::Stats;
pub(crate) use settings::{DispatchConfig, OnJobRemoved, RetryConfig};

use crate::channels::Channels;
use crate::clock::SharedClock;
use crate::model::{Channel, Class};
use crate::playbook::Playbook;
use crate::store::{Claimed, Completion, Store, StoreError};
use chrono::{DateTime, Utc};
use gate::{Gate, Verdict};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// (message id, sent at): one marketing send, for frequency caps.
type SendMark = (String, DateTime<Utc>);

/// The emails a dry run rendered to one contact: (job, template, step). Kept by contact, so
/// that asking costs no allocation (a forecast asks for every send; a contact has few).
type Rendered = HashMap<String, Vec<(String, String, i64)>>;

pub(crate) struct Dispatcher {
    store: Store,
    book: Playbook,
    channels: Arc<Channels>,
    clock: SharedClock,
    cfg: DispatchConfig,
    node: String,
    /// Marketing sends of this drain per contact, (message id, time): the claim's history
    /// cannot see sends whose completion is not committed yet. Merged with it by id.
    sends: Mutex<HashMap<String, Vec<SendMark>>>,
    /// Forecast: decide and render everything, send nothing (every send "succeeds").
    dry_run: bool,
    /// A dry run's emails known to render: (job, template, step, contact) of messages
    /// without a trigger event (see `send::render_email`); `None` outside a dry run.
    rendered: Option<Mutex<Rendered>>,
    /// Called on every turn of [`Dispatcher::run`] (the systemd watchdog watches it).
    on_loop: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Email bounces and complaints: an SMTP refusal is recorded and acted on at once.
    feedback: crate::feedback::Feedback,
    /// The reputation brakes engaged, (scope, why): read before each claim, and added to
    /// when a bounce in this drain engages one.
    brakes: Mutex<Vec<(String, String)>>,
    /// The claims this process's drain holds: its heartbeat renews them, and this node's
    /// reaper leaves them alone (`Store::reap_except`).
    held: Arc<lease::Held>,
}

impl Dispatcher {
    pub(crate) fn new(
        store: Store,
        book: Playbook,
        channels: Arc<Channels>,
        clock: SharedClock,
        cfg: DispatchConfig,
        node: String,
    ) -> Dispatcher {
        let feedback = crate::feedback::Feedback::new(store.clone(), channels.email.config());
        Dispatcher {
            feedback,
            brakes: Mutex::default(),
            held: Arc::new(lease::Held::new(&cfg)),
            store,
            book,
            channels,
            clock,
            cfg,
            node,
            sends: Mutex::default(),
            dry_run: false,
            rendered: None,
            on_loop: None,
        }
    }

    /// Decide and render everything, send nothing: what the forecast replays.
    pub(crate) fn dry_run(mut self) -> Dispatcher {
        self.dry_run = true;
        self.rendered = Some(Mutex::default());
        self
    }

    /// Call `f` on every turn of [`Dispatcher::run`] (a watchdog's sign of life).
    pub(crate) fn on_loop(mut self, f: Arc<dyn Fn() + Send + Sync>) -> Dispatcher {
        self.on_loop = Some(f);
        self
    }

    /// Dispatch everything due by the clock's now, then return. Retries fall due later and
    /// are left for a later run.
    ///
    /// The work runs as a task of its own. A future that `block_on` runs (the `run --once`
    /// command's) stays on the thread that blocks, so the claim loop, woken as sends free
    /// their slots, was a third busy thread beside the two workers: in a dispatch of
    /// 100,000 it switched 46,000 times, and the workers were preempted 78,000 times instead
    /// of 39,000 (`bench/dispatch.sh 100000`, eleven pairs: 95 → 90 µs of CPU a message,
    /// medians). The daemon's loop was a task already.
    pub(crate) async fn run_once(self: &Arc<Self>) -> Result<Stats, StoreError> {
        let me = Arc::clone(self);
        let mut task = AbortOnDrop(tokio::spawn(async move {
            let (_tx, stop) = watch::channel(false);
            me.reap().await?;
            me.drain(&stop).await
        }));
        match (&mut task.0).await {
            Ok(stats) => stats,
            Err(e) => match e.try_into_panic() {
                // A panic in the drain is this caller's, as it was when the drain ran here.
                Ok(panic) => std::panic::resume_unwind(panic),
                // Only the runtime's shutdown cancels it (it is aborted only with `task`).
                Err(e) => panic!("the dispatch task ended before its work: {e}"),
            },
        }
    }

    /// Dispatch until `stop` turns true: claim while there is work, otherwise sleep until
    /// the next message falls due (or `poll_interval`, for work other processes add). A
    /// reaper task returns the expired claims of stopped nodes every `heartbeat`, also while
    /// this loop is busy draining.
    pub(crate) async fn run(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Stats, StoreError> {
        let mut total = Stats::default();
        let reaped = Arc::new(tokio::sync::Notify::new());
        let (reaper_stop, reaper_stopped) = watch::channel(false);
        let reaper = tokio::spawn(lease::reaper(
            self.clone(),
            self.cfg.heartbeat,
            reaped.clone(),
            reaper_stopped,
        ));
        let result = async {
            while !*stop.borrow() {
                if let Some(f) = &self.on_loop {
                    f();
                }
                let stats = self.drain(&stop).await?;
                if stats.total() > 0 {
                    tracing::info!(%stats, "dispatched");
                }
                total.merge(stats);
                let now = self.clock.now();
                let wait = match self.store.next_due().await? {
                    Some(due) if due <= now => Duration::ZERO,
                    Some(due) => (due - now)
                        .to_std()
                        .unwrap_or_default()
                        .min(self.cfg.poll_interval),
                    None => self.cfg.poll_interval,
                };
                if !wait.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                        _ = reaped.notified() => {}
                    }
                }
            }
            Ok::<(), StoreError>(())
        }
        .await;
        let _ = reaper_stop.send(true);
        let _ = reaper.await;
        result.map(|()| total)
    }

    /// Return expired claims (of nodes that stopped) to the queue now, but not the claims
    /// this process holds: after a stall past their leases its heartbeat renews them, and
    /// its sends go on (another node's reaper may still take them). How many came back.
    async fn reap(&self) -> Result<usize, StoreError> {
        // The clock before the tokens: a claim missing from the list registered after this
        // reading, and its lease (read after registering) ends a lease after it.
        let now = self.clock.now();
        let spare = self.held.tokens();
        let r = self
            .store
            .reap_except(now, &self.node, self.cfg.retry.max_attempts, &spare)
            .await?;
        lease::log_reaped(&r);
        Ok(r.len())
    }

    /// Read the engaged reputation brakes once, for [`Dispatcher::try_unqueued`] (a drain
    /// reads them itself).
    pub(crate) async fn read_brakes(&self) -> Result<(), StoreError> {
        self.load_brakes().await
    }

    /// A dry run's decision on one message that is in no queue, tried at `now`: the same
    /// gate, rendering and next state as a claimed one. The forecast's in-memory path, for
    /// jobs whose messages nothing else reads (no frequency caps, no `exclude_if_sent`).
    /// `m` is lent, not given: the forecast tries it again when the gate defers it, and a
    /// copy a try was a tenth of a forecast's instructions. (Only the job's current class is
    /// written into it, as the store's row would be.)
    pub(crate) async fn try_unqueued(&self, m: &mut Claimed, now: DateTime<Utc>) -> Completion {
        debug_assert!(
            self.dry_run,
            "only a dry run decides messages outside the queue"
        );
        let guard = crate::send_guard::Guard::new(m, &self.book.jobs, &self.node, now);
        guard.run(self.process(m, now)).await
    }

    /// Decide, render and send one claimed message at `now`. Boxed: the send's future is
    /// about 3.8 KB, and each future around it (the send guard's panic catch, a forecast's
    /// step, a send task) held it whole and was copied whole on every message: 13 KB a
    /// forecast step, a fifth of a year's forecast spent in `memmove` (perf).
    fn process<'a>(
        &'a self,
        m: &'a mut Claimed,
        now: DateTime<Utc>,
    ) -> std::pin::Pin<Box<impl Future<Output = Completion> + Send + 'a>> {
        Box::pin(self.process_unboxed(m, now))
    }

    async fn process_unboxed(&self, m: &mut Claimed, now: DateTime<Utc>) -> Completion {
        let c = state::completion(m, now);
        let job = self.book.jobs.get(&m.job_id).cloned();
        let job = job.as_deref();
        // A customer message follows its job as it is now (README: "Planned messages follow
        // the job as defined when they are sent"): a job whose class changed decides
        // consent, caps, the brake and the unsubscribe link by the new one, the row
        // corrected so that later caps count the send as what it went as. A callback task
        // stays a service task. (A step the job dropped is the gate's to cancel.)
        if let Some(job) = job
            && m.channel_plan.is_none()
            && job.class != m.class
        {
            if let Err(e) = self.store.set_class(&m.id, job.class).await {
                tracing::warn!(message = %m.id, "the message's class is not corrected: {e}");
            }
            m.class = job.class;
        }
        let caps = m.class == Class::Marketing && !self.book.policy.caps.is_empty();
        // The gate reads this run's sends to the contact and, when the message may go under
        // the caps, takes its place in the same lock: two messages to one contact cannot both
        // pass a cap of one.
        let zone = self.book.zone_of(&m.contact);
        let braked = self.braked(&m.job_id);
        let decide = |in_run: &[SendMark]| {
            gate::decide(&Gate {
                job,
                m,
                policy: &self.book.policy,
                on_job_removed: self.cfg.on_job_removed,
                zone,
                now,
                in_run,
                braked: braked.as_ref().map(|(s, w)| (s.as_str(), w.as_str())),
                recheck: chrono::Duration::from_std(
                    self.channels.email.config().reputation.recheck,
                )
                .unwrap_or_else(|_| chrono::Duration::minutes(15)),
            })
        };
        let verdict = if caps {
            let mut in_run = self
                .sends
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mine = in_run.entry(m.contact.id.clone()).or_default();
            let verdict = decide(mine);
            if matches!(verdict, Verdict::Send { .. }) {
                mine.push((m.id.clone(), now));
            }
            verdict
        } else {
            decide(&[])
        };
        match (verdict, job) {
            (Verdict::Cancel(reason), _) => state::cancel(c, reason),
            (Verdict::HoldOut(reason), _) => state::hold_out(c, reason),
            (Verdict::Defer { at, reason }, _) => state::defer(c, m, at, reason),
            (Verdict::Task, Some(job)) => self.send_task(job, m, c).await,
            (Verdict::Send { usable, skipped }, Some(job)) => {
                // Pacing per destination: over its domain's budget, the message goes back to
                // the queue until the budget has room (not a try); other domains go on.
                let _paced = match usable.first() {
                    Some((Channel::Email, to)) if !self.dry_run => {
                        match self.channels.email.pacer().admit(to, now) {
                            Ok(a) => Some(a),
                            Err((at, why)) => {
                                if caps {
                                    self.unreserve(&m.contact.id, &m.id);
                                }
                                return state::defer(c, m, at, format!("pacing: {why}"));
                            }
                        }
                    }
                    _ => None,
                };
                self.send_customer(job, m, c, &usable, skipped, caps).await
            }
            (Verdict::Task | Verdict::Send { .. }, None) => {
                state::cancel(c, format!("job `{}` is no longer defined", m.job_id))
            }
        }
    }

    /// The brake holding a job's marketing email: its own, or the sending domain's.
    fn braked(&self, job_id: &str) -> Option<(String, String)> {
        let brakes = self
            .brakes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        brakes
            .iter()
            .find(|(s, _)| s.strip_prefix("job:") == Some(job_id))
            .or_else(|| brakes.iter().find(|(s, _)| s.starts_with("domain:")))
            .cloned()
    }

    /// Read the engaged brakes (before each claim of a drain). A brake this process engages
    /// between the read and the claim is in the store, so the next read has it again.
    async fn load_brakes(&self) -> Result<(), StoreError> {
        let engaged = self.store.brakes(true).await?;
        *self
            .brakes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            engaged.into_iter().map(|b| (b.scope, b.reason)).collect();
        Ok(())
    }

    /// A brake this process engaged holds from its next message on.
    fn hold(&self, scope: &str, why: &str) {
        let mut b = self
            .brakes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !b.iter().any(|(s, _)| s == scope) {
            b.push((scope.to_string(), why.to_string()));
        }
    }

    /// Give back a place under the caps that a send did not use.
    fn unreserve(&self, contact: &str, message_id: &str) {
        if let Some(v) = self
            .sends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(contact)
        {
            v.retain(|(id, _)| id != message_id);
        }
    }
}

/// A task that ends with its handle: a caller that stops waiting (dropped) stops the work,
/// as it would if the work were its own future.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_output<A, B, C, F>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn step(
        d: &'static Dispatcher,
        m: &'static mut Claimed,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Completion> {
        d.try_unqueued(m, now)
    }

    /// A forecast step's future is made and moved for every message (so is a send task's,
    /// around the same send): it must hold the send's future by pointer. Holding it whole,
    /// three times over with the send guard's wrappers, it was 13,256 bytes, and a fifth of a
    /// year's forecast went to copying it.
    #[test]
    fn a_steps_future_holds_the_send_by_pointer() {
        let size = size_of_output(step);
        assert!(size < 4096, "a forecast step's future is {size} bytes");
    }

    /// `run_once` runs its drain as a task: a caller dropped while it waits (a shutdown, a
    /// forecast given up) must not leave that drain claiming and sending on its own.
    #[tokio::test]
    async fn work_run_as_a_task_stops_when_its_waiter_is_dropped() {
        let held = Arc::new(());
        let in_task = held.clone();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let task = AbortOnDrop(tokio::spawn(async move {
            let _held = in_task;
            let _ = started_tx.send(());
            std::future::pending::<()>().await
        }));
        started.await.expect("the task starts");
        assert_eq!(Arc::strong_count(&held), 2, "the task holds its share");
        drop(task);
        for _ in 0..100 {
            if Arc::strong_count(&held) == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the task still runs after its waiter was dropped");
    }
}
