//! `aftercare validate`: config, then templates, then jobs against their templates, then
//! the environment (the secrets of the SMS gateways that jobs send through can be read here).
//! Prints every problem as `path:line:col: severity: message` with a hint.

use super::{App, Exit, Format, FormatArg};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Treat warnings as errors (exit 1)
    #[arg(long)]
    deny_warnings: bool,
    /// Output format
    #[command(flatten)]
    format: FormatArg,
}

pub(super) fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let mut d = app.diags.clone();
    d.extend(environment(&app));
    let d = &d.sorted();
    match a.format.get() {
        Format::Text => {
            print!("{}", crate::text::for_terminal_lines(&d.to_string()));
            let mut names: Vec<&str> = app.jobs.iter().map(|j| j.id.as_str()).collect();
            names.sort_unstable();
            println!(
                "{} job(s) valid{}{}; {} error(s), {} warning(s)",
                app.jobs.count(),
                if names.is_empty() { "" } else { ": " },
                names.join(", "),
                d.errors(),
                d.warnings()
            );
        }
        Format::Json => {
            let out = serde_json::json!({
                "valid_jobs": app.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
                "errors": d.errors(),
                "warnings": d.warnings(),
                "diagnostics": d.items,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    if d.has_errors() || (a.deny_warnings && d.warnings() > 0) {
        return Err(Exit::silent(1));
    }
    Ok(())
}

/// Secrets that this machine lacks for gateways some job sends through: a warning, since the
/// daemon runs (and sends email) without them, and the SMS waits until they are there.
pub(super) fn environment(app: &App) -> crate::diag::Diagnostics {
    let mut out = crate::diag::Diagnostics::default();
    let Some(cfg) = &app.config.sms else {
        return out;
    };
    let Ok(channel) = crate::channels::sms::SmsChannel::new(cfg) else {
        return out;
    };
    let mut used: Vec<&str> = Vec::new();
    for job in app
        .jobs
        .iter()
        .filter(|j| j.channels.contains(&crate::model::Channel::Sms))
    {
        let route = if job.sms.route.is_empty() {
            &cfg.route
        } else {
            &job.sms.route
        };
        for g in route {
            if !used.contains(&g.as_str()) {
                used.push(g);
            }
        }
    }
    for g in used {
        if let Err(why) = channel.check_secrets(g) {
            out.push(
                crate::diag::Diagnostic::warning(
                    &app.config.path,
                    None,
                    format!("sms gateway `{g}` cannot send from here: {why}"),
                )
                .with_hint(
                    "the daemon starts without it and retries these SMS until the secret is there",
                ),
            );
        }
    }
    out
}
