//! `aftercare run`: the daemon, or one pass with `--once`.

use super::{App, Exit, parse_time};
use crate::channels::{Channels, email::EmailChannel};
use crate::config::EmailTransport;
use crate::dispatch::Dispatcher;
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

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
    let dispatcher = Arc::new(Dispatcher {
        store: store.clone(),
        planner: app.planner(),
        channels: Arc::new(Channels { email }),
        clock: crate::clock::from_option(a.now),
        cfg: app.config.dispatch.clone(),
        node: app.config.node_id.clone(),
    });
    if a.once {
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
    let stats = dispatcher.run(stop_rx).await?;
    store.close().await;
    tracing::info!(%stats, "stopped");
    Ok(())
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
