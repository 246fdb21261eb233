//! The command line: verbs, exit codes, and loading what each verb needs.
//!
//! Exit codes: 0 success; 1 invalid input (config, jobs, templates, rejected events);
//! 2 usage error (clap); 3 the store cannot be opened.

mod answer;
mod bounces;
mod callbacks;
mod console;
mod contact;
mod forecast;
mod import;
mod jobs_cmd;
mod logs;
mod maintain;
mod migrate;
mod preview;
mod report;
mod run;
mod store_copy;
mod suppress;
mod validate;

use crate::config::{self, Config};
use crate::diag::Diagnostics;
use crate::jobs::{self, JobSet};
use crate::store::Store;
use crate::templates::TemplateSet;
use crate::values::When;
use anyhow::Context as _;
use chrono::{DateTime, Utc};

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const AFTER_HELP: &str = "\
Examples:
  aftercare validate
  aftercare preview review-request --event examples/events/order-delivered.json
  aftercare events import events.jsonl
  aftercare run
  aftercare run --once --now 2026-11-23T10:00:00+08:00
  aftercare logs --contact wang.fang@example.com

Exit codes: 0 ok, 1 invalid input, 2 usage error, 3 store unreachable.";

#[derive(Parser, Debug)]
#[command(name = "aftercare", version, about = "After-sales messages from YAML campaign definitions", after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file [default: $AFTERCARE_CONFIG, else config/aftercare.yaml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Log format [default: text on a terminal, journald under systemd]
    #[arg(long, global = true, value_enum)]
    log_format: Option<crate::logging::LogFormat>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Dispatch due messages until stopped (SIGINT/SIGTERM), or once with --once
    Run(run::Args),
    /// Check the config, every job and every template; print all problems
    Validate(validate::Args),
    /// Render a job's message for an example event, without sending or storing anything
    Preview(preview::Args),
    /// Work with events
    #[command(subcommand)]
    Events(EventsCommand),
    /// Show the delivery log: messages and every attempt
    Logs(logs::Args),
    /// What would be sent when, after every policy, without sending anything
    Forecast(forecast::Args),
    /// The suppression list (addresses never contacted on a channel)
    #[command(subcommand)]
    Suppress(suppress::Command),
    /// Apply a one-click unsubscribe token (exit 1 if it is forged or altered)
    Unsubscribe(suppress::UnsubscribeArgs),
    /// Email bounces and complaints: `bounces ingest` reads DSNs and ARF reports
    #[command(subcommand)]
    Bounces(bounces::Command),
    /// Jobs: the reputation brake (`jobs brakes`, `jobs resume JOB`)
    #[command(subcommand)]
    Jobs(jobs_cmd::Command),
    /// Callback tasks for agents; `callbacks done ID` closes one
    Callbacks(callbacks::Args),
    /// Record a survey answer (given by phone, on paper) by token, or by job and contact
    Answer(answer::Args),
    /// Reports: conversions, nps, csat, answers
    #[command(subcommand)]
    Report(report::Command),
    /// Print shell completions (bash, zsh, fish, powershell, elvish)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// A person's data: erase it, or export all of it as JSON
    #[command(subcommand)]
    Contact(contact::Command),
    /// The web console: set a user's password
    #[command(subcommand)]
    Console(console::Command),
    /// Apply the store's pending schema migrations and print them
    Migrate(migrate::Args),
    /// Print the man page (roff), for packaging
    #[command(hide = true)]
    Manpage,
    /// Work with the store
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Copy every row into another store (e.g. SQLite to PostgreSQL), verifying row counts
    Copy(store_copy::Args),
    /// Remove what is past `retention:` now (the daemon does this daily)
    Purge(maintain::PurgeArgs),
    /// Copy a live SQLite store into a new file, consistently (PostgreSQL: pg_dump)
    Backup(maintain::BackupArgs),
    /// Check a store: schema version, references between tables, row counts
    Check(maintain::CheckArgs),
}

#[derive(Subcommand, Debug)]
enum EventsCommand {
    /// Import events, one JSON object per line, from FILE or - (stdin)
    Import(import::Args),
}

/// An error that carries its exit code to `main`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn invalid(message: impl Into<String>) -> anyhow::Error {
        Exit {
            code: 1,
            message: message.into(),
        }
        .into()
    }
    /// Exit 1 after diagnostics were printed already.
    pub fn silent(code: u8) -> anyhow::Error {
        Exit {
            code,
            message: String::new(),
        }
        .into()
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let default_level = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    crate::logging::init(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<Exit>() {
                if !exit.message.is_empty() {
                    eprintln!("error: {}", crate::text::for_terminal_lines(&exit.message));
                }
                return ExitCode::from(exit.code);
            }
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "error: {}",
                crate::text::for_terminal_lines(&format!("{e:#}"))
            );
            ExitCode::from(1)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config_path = config::locate(cli.config.as_deref());
    match cli.command {
        Command::Run(a) => run::run(&config_path, a).await,
        Command::Validate(a) => validate::run(&config_path, a),
        Command::Preview(a) => preview::run(&config_path, a),
        Command::Events(EventsCommand::Import(a)) => import::run(&config_path, a).await,
        Command::Logs(a) => logs::run(&config_path, a).await,
        Command::Forecast(a) => forecast::run(&config_path, a).await,
        Command::Suppress(c) => suppress::run(&config_path, c).await,
        Command::Unsubscribe(a) => suppress::unsubscribe(&config_path, a).await,
        Command::Callbacks(a) => callbacks::run(&config_path, a).await,
        Command::Bounces(c) => bounces::run(&config_path, c).await,
        Command::Jobs(c) => jobs_cmd::run(&config_path, c).await,
        Command::Answer(a) => answer::run(&config_path, a).await,
        Command::Report(c) => report::run(&config_path, c).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "aftercare",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Contact(c) => contact::run(&config_path, c).await,
        Command::Console(c) => console::run(&config_path, c),
        Command::Migrate(a) => migrate::run(&config_path, a).await,
        Command::Manpage => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Store(StoreCommand::Copy(a)) => store_copy::run(a).await,
        Command::Store(StoreCommand::Purge(a)) => maintain::purge(&config_path, a).await,
        Command::Store(StoreCommand::Backup(a)) => maintain::backup(&config_path, a).await,
        Command::Store(StoreCommand::Check(a)) => maintain::check(&config_path, a).await,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Everything a verb may need, loaded from the config.
pub(crate) struct App {
    pub config: Config,
    pub templates: Arc<TemplateSet>,
    pub jobs: Arc<JobSet>,
    pub diags: Diagnostics,
    pub unsubscriber: Option<Arc<crate::unsubscribe::Unsubscriber>>,
}

impl App {
    /// A time given on the command line, as an instant: a date is its midnight in
    /// `defaults.timezone`, the business's day (see [`When`]).
    pub(crate) fn at(&self, w: Option<When>) -> Option<DateTime<Utc>> {
        w.map(|w| w.in_zone(self.config.default_timezone))
    }

    /// Load config, templates and jobs; problems are collected, not fatal here.
    pub(crate) fn load(config_path: &std::path::Path) -> anyhow::Result<App> {
        let config = Config::load(config_path).map_err(|e| match e {
            config::ConfigError::Invalid(diags) => {
                for d in &diags {
                    eprintln!("{}", crate::text::for_terminal_lines(&d.to_string()));
                }
                Exit::invalid(format!(
                    "the config {} is invalid",
                    crate::diag::display_path(config_path)
                ))
            }
            other => Exit::invalid(other.to_string()),
        })?;
        Ok(App::with_config(config))
    }

    /// Templates and jobs read under `config`. A reload reads them again this way with the
    /// config the daemon started with: the file is read at start only, so one caught
    /// half-written does not block a reload, and an edited policy is not half applied (the
    /// store, channels and retention stay as started).
    pub(crate) fn with_config(config: Config) -> App {
        let (templates, mut diags) =
            TemplateSet::load(&config.templates_dir, &config.default_locale);
        let (jobs, job_diags) = jobs::load(&config.jobs_dir, &templates, config.sms.as_ref());
        diags.extend(job_diags);
        diags.extend(config.warnings.clone());
        diags.extend(jobs::retention::check(
            &jobs,
            &config.retention,
            &config.policy,
            &config.path,
        ));
        let unsubscriber = match &config.unsubscribe {
            None => None,
            Some(u) => match crate::unsubscribe::Unsubscriber::from_config(u) {
                Ok(u) => Some(Arc::new(u)),
                Err(e) => {
                    diags.push(crate::diag::Diagnostic::error(
                        &config.path,
                        None,
                        format!("{e:#}"),
                    ));
                    None
                }
            },
        };
        // Without `unsubscribe:` no email carries List-Unsubscribe (RFC 8058), which Gmail
        // and Yahoo require of bulk senders, and `{{unsubscribe.url}}` renders empty.
        if config.unsubscribe.is_none()
            && let Some(j) = jobs.iter().find(|j| {
                j.class == jobs::Class::Marketing
                    && j.channels.contains(&crate::model::Channel::Email)
            })
        {
            diags.push(
                crate::diag::Diagnostic::warning(
                    &config.path,
                    None,
                    format!(
                        "job `{}` sends marketing email, but unsubscribe: is not set: no List-Unsubscribe header, and {{{{unsubscribe.url}}}} renders empty",
                        j.id
                    ),
                )
                .with_hint("add an unsubscribe: section (url, mailto, key_file; see config/aftercare.yaml): mailbox providers expect a one-click unsubscribe from bulk senders"),
            );
        }
        // With an API but no public URL, survey links would render empty. (Without an API
        // at all, answers come only through `aftercare answer`; no warning then.)
        if let Some(j) = jobs.iter().find(|j| j.survey.is_some())
            && config.api.as_ref().is_some_and(|a| a.public_url.is_none())
        {
            diags.push(
                crate::diag::Diagnostic::warning(
                    &config.path,
                    None,
                    format!(
                        "job `{}` is a survey, but api.public_url is not set: {{{{survey.url}}}} renders empty and customers cannot answer",
                        j.id
                    ),
                )
                .with_hint("set api.public_url to the URL where customers reach this API (the answer page is /s/<token>)"),
            );
        }
        App {
            config,
            templates: Arc::new(templates),
            jobs: Arc::new(jobs),
            diags: diags.sorted(),
            unsubscriber,
        }
    }

    /// Load and insist on a clean set of jobs (for verbs that plan or send).
    pub(crate) fn load_valid(config_path: &std::path::Path) -> anyhow::Result<App> {
        let app = App::load(config_path)?;
        if app.diags.has_errors() {
            eprint!(
                "{}",
                crate::text::for_terminal_lines(&app.diags.to_string())
            );
            return Err(Exit::invalid(format!(
                "{} error(s) in jobs or templates; fix them (see `aftercare validate`) first",
                app.diags.errors()
            )));
        }
        Ok(app)
    }

    pub(crate) async fn open_store(&self) -> anyhow::Result<Store> {
        Store::open(&self.config.store).await.map_err(|e| {
            Exit {
                code: 3,
                message: e.to_string(),
            }
            .into()
        })
    }

    /// The loaded jobs and templates with the config's defaults for speaking to contacts.
    pub(crate) fn playbook(&self) -> crate::playbook::Playbook {
        crate::playbook::Playbook {
            jobs: self.jobs.clone(),
            templates: self.templates.clone(),
            default_timezone: self.config.default_timezone,
            default_locale: self.config.default_locale.clone(),
            expire_after: self.config.dispatch.expire_after,
            policy: self.config.policy.clone(),
            unsubscribe: self.unsubscriber.clone(),
            webhook_enabled: self.config.webhook.is_some(),
            public_url: self.config.api.as_ref().and_then(|a| a.public_url.clone()),
        }
    }
}

/// How a verb prints what it found: `text` for people (the default), `json` for tools. One
/// convention for every verb; `table` is still accepted for `text`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Format {
    #[default]
    #[value(alias = "table")]
    Text,
    Json,
}

/// `--format text|json`, with the older `--json` kept as a hidden alias.
#[derive(clap::Args, Debug, Clone, Copy)]
pub(crate) struct FormatArg {
    /// Output for people (text) or for tools (json)
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[arg(long, hide = true, conflicts_with = "format")]
    json: bool,
}

impl FormatArg {
    pub(crate) fn get(self) -> Format {
        if self.json { Format::Json } else { self.format }
    }
}

pub(crate) fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
