//! `aftercare run`: the daemon, or one pass with `--once`.

use super::{App, Exit, parse_time};
use crate::channels::sms::SmsChannel;
use crate::channels::webhook::WebhookChannel;
use crate::channels::{Channels, email::EmailChannel};
use crate::clock::SharedClock;
use crate::config::EmailTransport;
use crate::dispatch::Dispatcher;
use crate::schedule::Scheduler;
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Dispatch everything due, then exit
    #[arg(long)]
    once: bool,
    /// With --once: dispatch what is due by this instant (RFC 3339) instead of now
    #[arg(long, value_parser = parse_time, requires = "once")]
    now: Option<DateTime<Utc>>,
}

pub async fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    let app = App::load_valid(config_path)?;
    for w in &app.diags.items {
        tracing::warn!("{w}");
    }
    let store = app.open_store().await?;
    let email =
        EmailChannel::new(&app.config.email).map_err(|e| Exit::invalid(format!("{e:#}")))?;
    let webhook = match &app.config.webhook {
        Some(w) => Some(WebhookChannel::new(w).map_err(|e| Exit::invalid(format!("{e:#}")))?),
        None => None,
    };
    // Gateways read their secrets at first use: the daemon starts without them.
    let sms = match &app.config.sms {
        Some(s) => Some(SmsChannel::new(s).map_err(|e| Exit::invalid(format!("{e:#}")))?),
        None => None,
    };
    let clock = crate::clock::from_option(a.now);
    let dispatcher = Arc::new(Dispatcher {
        store: store.clone(),
        planner: app.planner(),
        channels: Arc::new(Channels {
            email,
            webhook,
            sms,
        }),
        clock: clock.clone(),
        cfg: app.config.dispatch.clone(),
        node: app.config.node_id.clone(),
        sends: Default::default(),
        dry_run: false,
    });
    let scheduler = Arc::new(Scheduler::new(store.clone(), app.planner()));
    if a.once {
        // The clock's work first (today's greetings, due survey occurrences), then sends.
        scheduler.tick(clock.now()).await?;
        let stats = dispatcher.run_once().await?;
        store.close().await;
        println!("{stats}");
        return Ok(());
    }
    let transport = match &app.config.email.transport {
        EmailTransport::File { dir } => format!("file {}", dir.display()),
        EmailTransport::Smtp(s) => format!("smtp {}:{}", s.host, s.port),
    };
    tracing::info!(jobs = app.jobs.len(), store = store.backend(), email = %transport, node = %app.config.node_id, "aftercare running");
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping: finishing in-flight sends (a second signal exits at once)");
        let _ = stop_tx.send(true);
        wait_for_signal().await;
        tracing::warn!(
            "second signal: exiting now; claimed messages return to the queue when their lease expires"
        );
        std::process::exit(130);
    });
    let mut cron = start_ticking(scheduler.clone(), clock.clone()).await?;
    let stats = dispatcher.run(stop_rx).await;
    let _ = cron.shutdown().await;
    let stats = stats?;
    store.close().await;
    tracing::info!(%stats, "stopped");
    Ok(())
}

/// tokio-cron-scheduler wakes the scheduler every minute (and once now); the scheduler
/// computes what is due itself, in each job's time zone.
async fn start_ticking(
    scheduler: Arc<Scheduler>,
    clock: SharedClock,
) -> anyhow::Result<JobScheduler> {
    let tick = {
        let scheduler = scheduler.clone();
        let clock = clock.clone();
        move || {
            let scheduler = scheduler.clone();
            let now = clock.now();
            async move {
                if let Err(e) = scheduler.tick(now).await {
                    tracing::error!("scheduler tick failed: {e}");
                }
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

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
