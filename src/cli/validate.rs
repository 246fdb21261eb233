//! `aftercare validate`: config, then templates, then jobs against their templates.
//! Prints every problem as `path:line:col: severity: message` with a hint.

use super::{App, Exit};
use clap::ValueEnum;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Treat warnings as errors (exit 1)
    #[arg(long)]
    deny_warnings: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Format {
    Text,
    Json,
}

pub fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let d = &app.diags;
    match a.format {
        Format::Text => {
            print!("{d}");
            let mut names: Vec<&str> = app.jobs.iter().map(|j| j.id.as_str()).collect();
            names.sort_unstable();
            println!(
                "{} job(s) valid{}{}; {} error(s), {} warning(s)",
                app.jobs.len(),
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
