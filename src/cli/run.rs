//! `aftercare run`: the daemon (see `daemon`), or one pass with `--once`.

use super::{App, Exit, Format, FormatArg};
use crate::channels::sms::SmsChannel;
use crate::channels::webhook::WebhookChannel;
use crate::channels::{Channels, email::EmailChannel};
use crate::daemon::{self, Daemon};
use crate::dispatch::Dispatcher;
use crate::schedule::Scheduler;
use crate::values::When;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Dispatch everything due, then exit
    #[arg(long)]
    once: bool,
    /// With --once: dispatch what is due by this time instead of now (RFC 3339, or a date: its midnight in defaults.timezone)
    #[arg(long, value_parser = When::parse, requires = "once")]
    now: Option<When>,
    /// With --once: how to print what was done
    #[command(flatten)]
    format: FormatArg,
}

pub(super) async fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
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
    // Gateways read their secrets at first use: the daemon starts without them. With
    // `api.public_url`, Twilio is asked to call our receipts route.
    let public_url = app
        .config
        .api
        .as_ref()
        .and_then(|a| a.public_url.as_deref());
    let sms = match &app.config.sms {
        Some(s) => Some(
            SmsChannel::with_public_url(s, public_url)
                .map_err(|e| Exit::invalid(format!("{e:#}")))?,
        ),
        None => None,
    };
    let channels = Arc::new(Channels {
        email,
        webhook,
        sms,
    });
    let clock = crate::clock::from_option(app.at(a.now));
    if a.once {
        let dispatcher = Arc::new(Dispatcher::new(
            // Its own SQLite connection: see `Store::own_writer`.
            store.own_writer(),
            app.playbook(),
            channels,
            clock.clone(),
            app.config.dispatch.clone(),
            app.config.node_id.clone(),
        ));
        // The clock's work first (today's greetings, due survey occurrences), then sends.
        Scheduler::new(store.clone(), app.playbook())
            .tick(clock.now())
            .await?;
        let stats = dispatcher.run_once().await?;
        store.close().await;
        match a.format.get() {
            Format::Json => println!("{}", serde_json::to_string(&stats)?),
            Format::Text => println!("{stats}"),
        }
        return Ok(());
    }
    let signals = anyhow::Context::context(
        daemon::StopSignals::install(),
        "cannot catch SIGTERM and SIGINT",
    )?;
    let api = app
        .config
        .api
        .as_ref()
        .map(|cfg| (cfg.clone(), crate::api::load_tokens(cfg)));
    let d = Daemon {
        store: store.clone(),
        channels,
        clock,
        dispatch: app.config.dispatch.clone(),
        node: app.config.node_id.clone(),
        api,
        unsubscriber: app.unsubscriber.clone(),
        watch: vec![
            app.config.jobs_dir.clone(),
            app.config.templates_dir.clone(),
        ],
        console: None,
        retention: app.config.retention.clone(),
    };
    let config_path: PathBuf = config_path.to_path_buf();
    let console = console_parts(&app, &config_path);
    // A reload recompiles jobs and templates with the config the daemon started with.
    let started_with = app.config.clone();
    let reload: daemon::Reloader = Box::new(move || {
        let app = App::with_config(started_with.clone());
        if app.diags.has_errors() {
            return Err(app.diags);
        }
        Ok(app.playbook())
    });
    let d = Daemon { console, ..d };
    let stats = daemon::run(d, signals, app.playbook(), reload).await?;
    store.close().await;
    tracing::info!(%stats, "stopped");
    Ok(())
}

/// The console's parts from the verbs: `validate` and `forecast` read the files and the store
/// as those verbs do, on demand. `None` without a `console:` section; a console without an
/// `api:` section has no listener, which is said once.
fn console_parts(app: &App, config_path: &Path) -> Option<daemon::ConsoleParts> {
    let cfg = app.config.console.clone()?;
    if cfg.enabled && app.config.api.is_none() {
        tracing::warn!(
            "console.enabled, but the config has no api: section; the console is served on the API's listener (add api: {{listen: 127.0.0.1:8080}})"
        );
    }
    let path = config_path.to_path_buf();
    let validate: crate::console::Validator = Arc::new(move || match App::load(&path) {
        Ok(app) => {
            let mut d = app.diags.clone();
            d.extend(super::validate::environment(&app));
            d.sorted()
        }
        Err(e) => {
            let mut d = crate::diag::Diagnostics::default();
            d.push(crate::diag::Diagnostic::error(
                &path,
                None,
                format!("{e:#}"),
            ));
            d
        }
    });
    let path = config_path.to_path_buf();
    let forecast: crate::console::Forecaster = Arc::new(move |now, until| {
        let path = path.clone();
        // On a blocking thread of its own: the replay is long, and the store copy it starts
        // with (PostgreSQL) reports progress through a callback that is not `Send`.
        let handle = tokio::runtime::Handle::current();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                handle
                    .block_on(super::forecast::items(&path, now, until))
                    .map_err(|e| format!("{e:#}"))
            })
            .await
            .map_err(|e| format!("the forecast task failed: {e}"))?
        })
    });
    Some(daemon::ConsoleParts {
        config: cfg,
        validate: Some(validate),
        forecast: Some(forecast),
    })
}
