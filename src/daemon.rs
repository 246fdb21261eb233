//! The long-running daemon: wiring of dispatch, the scheduler, the HTTP API, signals,
//! systemd notification and hot reload.
//!
//! Reload model: jobs and templates are compiled and checked in full first (on SIGHUP, or
//! when a file under `jobs/` or `message_templates/` changes, debounced). If anything is
//! invalid the daemon keeps running the old set and logs every problem at `path:line:col`.
//! If valid, the running dispatch generation finishes its in-flight sends and stops, the new
//! set replaces the old one in one swap, and a new generation starts. Planned messages
//! follow the job definition current at send time (their template per step was fixed when
//! planned); a job removed from YAML has its pending messages cancelled with a logged reason
//! (or held, per `dispatch.on_job_removed`).

use crate::api::ApiConfig;
use crate::api::{self, ApiState, IngestQueue, Token};
use crate::channels::Channels;
use crate::clock::SharedClock;
use crate::diag::Diagnostics;
use crate::dispatch::{DispatchConfig, OnJobRemoved};
use crate::dispatch::{Dispatcher, Stats};
use crate::playbook::Playbook;
use crate::schedule::Scheduler;
use crate::store::Store;
use crate::unsubscribe::Unsubscriber;
use arc_swap::ArcSwap;
use sd_notify::NotifyState;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};

/// Compiles the jobs and templates afresh (a reload); the diagnostics on failure.
pub(crate) type Reloader = Box<dyn Fn() -> Result<Playbook, Diagnostics> + Send + Sync>;

/// Everything the daemon runs with.
pub(crate) struct Daemon {
    pub store: Store,
    pub channels: Arc<Channels>,
    pub clock: SharedClock,
    pub dispatch: DispatchConfig,
    pub node: String,
    pub api: Option<(ApiConfig, Vec<Token>)>,
    pub unsubscriber: Option<Arc<Unsubscriber>>,
    /// Folders whose changes trigger a reload.
    pub watch: Vec<PathBuf>,
    /// The web console, served on the API's listener when there is one.
    pub console: Option<ConsoleParts>,
    /// How long records are kept: the daily purge (`housekeeping`).
    pub retention: crate::store::Retention,
}

/// What the console needs from the verbs above the daemon.
pub(crate) struct ConsoleParts {
    pub config: crate::console::ConsoleConfig,
    pub validate: Option<crate::console::Validator>,
    pub forecast: Option<crate::console::Forecaster>,
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// Run until SIGTERM/SIGINT; a second signal exits at once.
pub(crate) async fn run(
    d: Daemon,
    mut signals: StopSignals,
    book: Playbook,
    reload: Reloader,
) -> anyhow::Result<Stats> {
    let current = Arc::new(ArcSwap::from_pointee(book));
    let ready = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // Signals: the first asks to stop, the second exits.
    tokio::spawn(async move {
        signals.next().await;
        tracing::info!("stopping: finishing in-flight sends (a second signal exits at once)");
        notify(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping: finishing in-flight sends"),
        ]);
        let _ = shutdown_tx.send(true);
        signals.next().await;
        tracing::warn!(
            "second signal: exiting now; claimed messages return to the queue when their lease expires"
        );
        std::process::exit(130);
    });

    // Watch (and take the files' fingerprint) before the API says it listens: a file changed
    // after that is always seen, and compared against what was loaded.
    let (reload_tx, mut reload_rx) = mpsc::channel::<&'static str>(4);
    spawn_sighup(reload_tx.clone());
    let _watcher = watch_files(&d.watch, reload_tx.clone());
    let mut files_seen = fingerprint(&d.watch);
    // Said once the folders are watched, so a file changed after this line is always seen
    // (said before, a job file removed at once could go unnoticed until the next change).
    tracing::info!(
        jobs = current.load().jobs.count(),
        store = d.store.backend(),
        email = %d.channels.email.config().transport,
        node = %d.node,
        "aftercare running"
    );
    let status = Arc::new(crate::console::RunStatus::default());
    status.loaded(version(&d.watch), d.clock.now());

    // The HTTP API runs across reloads.
    let mut api_task = None;
    if let Some((cfg, tokens)) = &d.api {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| anyhow::anyhow!("api.listen: cannot listen on {}: {e}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let console = match &d.console {
            Some(parts) if parts.config.enabled => {
                let admins = tokens
                    .iter()
                    .filter(|t| t.scope == crate::api::Scope::Admin)
                    .map(|t| crate::console::TokenLogin {
                        name: t.name.clone(),
                        secret: t.secret().to_string(),
                    })
                    .collect();
                tracing::info!(users = parts.config.users.len(), "console at /console/");
                Some(crate::console::Console::new(
                    crate::console::Setup {
                        config: parts.config.clone(),
                        tokens: admins,
                        validate: parts.validate.clone(),
                        forecast: parts.forecast.clone(),
                        status: status.clone(),
                        sms: d.channels.sms.clone(),
                        relay: d.channels.email.health(),
                    },
                    d.store.clone(),
                    current.clone(),
                    d.clock.clone(),
                ))
            }
            _ => None,
        };
        let state = ApiState::new(api::ApiParts {
            store: d.store.clone(),
            book: current.clone(),
            tokens: Arc::new(tokens.clone()),
            config: cfg.clone(),
            unsubscriber: d.unsubscriber.clone(),
            clock: d.clock.clone(),
            ingest: IngestQueue::start(
                d.store.clone(),
                current.clone(),
                d.clock.clone(),
                cfg.group_commit,
            ),
            ready: ready.clone(),
            sms: d.channels.sms.clone(),
            relay: d.channels.email.health(),
            email_hooks: Some(Arc::new(api::EmailHooks {
                feedback: crate::feedback::Feedback::new(
                    d.store.clone(),
                    d.channels.email.config(),
                ),
                webhooks: d.channels.email.config().webhooks.clone(),
                certs: Default::default(),
                http: reqwest::Client::new(),
            })),
            console,
            store_counts: Default::default(),
        });
        let mut stop = shutdown_rx.clone();
        api_task = Some(tokio::spawn(api::serve(listener, state, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
        tracing::info!(%addr, tokens = tokens.len(), "api listening");
    }

    // A relay that refused our login is tried again now and then even when nothing is due,
    // so readiness recovers with it.
    if d.channels.email.health().is_some() {
        let channels = d.channels.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(crate::channels::email::relay::PROBE_EVERY * 6).await;
                channels.email.probe_relay().await;
            }
        });
    }
    // The daily retention purge, on one node of several. Awaited before returning: the
    // caller closes the store next, and a purge cut off by a closed pool is an error.
    let purge_task = tokio::spawn(crate::housekeeping::run(
        d.store.clone(),
        d.retention.clone(),
        d.clock.clone(),
        d.node.clone(),
        shutdown_rx.clone(),
    ));

    // The dispatch loop stamps this every turn; the watchdog pings only while it moves.
    let alive = Arc::new(AtomicI64::new(now_millis()));
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let alive = alive.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 3);
            loop {
                tick.tick().await;
                let idle = now_millis() - alive.load(Ordering::Relaxed);
                if idle < (interval.as_millis() as i64) {
                    notify(&[NotifyState::Watchdog]);
                } else {
                    tracing::error!(
                        idle_ms = idle,
                        "the dispatch loop has not turned for a watchdog period; not pinging"
                    );
                }
            }
        });
    }

    let mut total = Stats::default();
    let mut first = true;
    // Dispatch writes on a SQLite connection of its own, like the ingest queue: a connection
    // keeps its page cache only while no other connection writes between its transactions.
    let dispatch_store = d.store.own_writer();
    loop {
        let book = current.load_full();
        let on_loop: Arc<dyn Fn() + Send + Sync> = {
            let alive = alive.clone();
            Arc::new(move || alive.store(now_millis(), Ordering::Relaxed))
        };
        let dispatcher = Arc::new(
            Dispatcher::new(
                dispatch_store.clone(),
                (*book).clone(),
                d.channels.clone(),
                d.clock.clone(),
                d.dispatch.clone(),
                d.node.clone(),
            )
            .on_loop(on_loop),
        );
        let scheduler = Arc::new(Scheduler::new(d.store.clone(), (*book).clone()));
        let mut cron = start_ticking(scheduler, d.clock.clone()).await?;
        let (gen_tx, gen_rx) = watch::channel(false);
        let mut generation = tokio::spawn({
            let dispatcher = dispatcher.clone();
            async move { dispatcher.run(gen_rx).await }
        });
        ready.store(true, Ordering::Relaxed);
        let summary = format!(
            "running {} job(s); store {}",
            book.jobs.count(),
            d.store.backend()
        );
        if first {
            notify(&[NotifyState::Ready, NotifyState::Status(&summary)]);
            first = false;
        } else {
            notify(&[
                NotifyState::Ready,
                NotifyState::Status(&format!("reloaded: {summary}")),
            ]);
        }
        let mut shutdown = shutdown_rx.clone();
        // Wait for a stop, a good reload, or the loop failing.
        let next = loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break None,
                Some(why) = reload_rx.recv() => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while reload_rx.try_recv().is_ok() {}
                    // Reading the files (a reload does) is reported as a change by some
                    // watchers: reload only when a file's size or time really changed.
                    let now_print = fingerprint(&d.watch);
                    if why == "file change" && now_print == files_seen {
                        continue;
                    }
                    files_seen = now_print;
                    let mut states = vec![NotifyState::Reloading];
                    if let Ok(m) = NotifyState::monotonic_usec_now() {
                        states.push(m);
                    }
                    notify(&states);
                    tracing::info!(trigger = why, "reloading jobs and templates");
                    match reload() {
                        Err(diags) => {
                            for item in &diags.items {
                                tracing::error!("{item}");
                            }
                            let text = format!("reload refused: {} error(s); still running the previous jobs", diags.errors());
                            tracing::error!("{text}");
                            let first = diags.items.first().map(|d| format!(": {d}")).unwrap_or_default();
                            status.reloaded(d.clock.now(), false, format!("{text}{first}"));
                            notify(&[NotifyState::Ready, NotifyState::Status(&text)]);
                        }
                        Ok(new) => break Some(new),
                    }
                }
                r = &mut generation => {
                    cron.shutdown().await.ok();
                    let stats = r.map_err(|e| anyhow::anyhow!("the dispatch loop panicked: {e}"))??;
                    total.merge(stats);
                    anyhow::bail!("the dispatch loop ended unexpectedly");
                }
            }
        };
        let _ = gen_tx.send(true);
        let stats = generation
            .await
            .map_err(|e| anyhow::anyhow!("the dispatch loop panicked: {e}"))??;
        total.merge(stats);
        cron.shutdown().await.ok();
        match next {
            None => break,
            Some(new) => {
                let removed: Vec<String> = book
                    .jobs
                    .iter()
                    .map(|j| j.id.clone())
                    .filter(|id| new.jobs.get(id).is_none())
                    .collect();
                for id in &removed {
                    match d.dispatch.on_job_removed {
                        OnJobRemoved::Cancel => {
                            let reason = format!("job `{id}` was removed from the jobs folder");
                            let n = d.store.cancel_job(id, &reason, d.clock.now()).await?;
                            tracing::warn!(job = %id, cancelled = n, "job removed: its pending messages are cancelled");
                        }
                        OnJobRemoved::Hold => {
                            tracing::warn!(job = %id, "job removed: its pending messages are held until it returns")
                        }
                    }
                }
                tracing::info!(jobs = new.jobs.count(), removed = removed.len(), "reloaded");
                status.loaded(version(&d.watch), d.clock.now());
                status.reloaded(
                    d.clock.now(),
                    true,
                    format!(
                        "reloaded: {} job(s), {} removed",
                        new.jobs.count(),
                        removed.len()
                    ),
                );
                current.store(Arc::new(new));
            }
        }
    }
    ready.store(false, Ordering::Relaxed);
    if let Some(t) = api_task {
        let _ = t.await;
    }
    let _ = purge_task.await;
    Ok(total)
}

/// The running job set's version: a digest of every job and template file's path and bytes,
/// so two nodes (or two reloads) can be seen to run the same set.
fn version(dirs: &[PathBuf]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for dir in dirs {
        for (path, _, _) in fingerprint(std::slice::from_ref(dir)) {
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            h.update(rel.to_string_lossy().as_bytes());
            h.update([0]);
            if let Ok(bytes) = std::fs::read(&path) {
                h.update(&bytes);
            }
            h.update([0]);
        }
        h.update([1]);
    }
    hex::encode(&h.finalize()[..6])
}

/// Every file below `dirs` with its size and modification time, sorted.
fn fingerprint(dirs: &[PathBuf]) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(PathBuf, u64, Option<std::time::SystemTime>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => walk(&p, out),
                Ok(m) => out.push((p, m.len(), m.modified().ok())),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out.sort();
    out
}

fn now_millis() -> i64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}

/// tokio-cron-scheduler wakes the scheduler every minute (and once now); the scheduler
/// computes what is due itself, in each job's time zone.
pub(crate) async fn start_ticking(
    scheduler: Arc<Scheduler>,
    clock: SharedClock,
) -> anyhow::Result<JobScheduler> {
    let tick = move || {
        let scheduler = scheduler.clone();
        let now = clock.now();
        async move {
            if let Err(e) = scheduler.tick(now).await {
                tracing::error!("scheduler tick failed: {e}");
            }
        }
    };
    tick().await;
    let cron = JobScheduler::new().await?;
    let job = CronJob::new_async("0 * * * * *", move |_, _| Box::pin(tick()))?;
    cron.add(job).await?;
    cron.start().await?;
    Ok(cron)
}

/// SIGTERM and SIGINT, caught from the moment this is made: made before the daemon says it
/// is running, so a stop that follows at once (systemd, a test) is a clean stop and never
/// the default action that kills the process.
pub(crate) struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(crate) fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

fn spawn_sighup(tx: mpsc::Sender<&'static str>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = tx.send("SIGHUP").await;
        }
    });
}

/// Watch the job and template folders; the debouncer folds an editor's burst of writes
/// into one reload.
fn watch_files(
    dirs: &[PathBuf],
    tx: mpsc::Sender<&'static str>,
) -> Option<notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>> {
    use notify_debouncer_mini::notify::RecursiveMode;
    let handler = move |res: notify_debouncer_mini::DebounceEventResult| {
        if res.is_ok_and(|events| !events.is_empty()) {
            let _ = tx.blocking_send("file change");
        }
    };
    let mut debouncer =
        match notify_debouncer_mini::new_debouncer(Duration::from_millis(500), handler) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(
                    "cannot watch the job and template folders ({e}); reload with SIGHUP"
                );
                return None;
            }
        };
    for dir in dirs {
        if let Err(e) = debouncer.watcher().watch(dir, RecursiveMode::Recursive) {
            tracing::warn!(dir = %dir.display(), "cannot watch for changes ({e}); reload with SIGHUP");
        }
    }
    Some(debouncer)
}
