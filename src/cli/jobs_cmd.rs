//! `aftercare jobs brakes` and `aftercare jobs resume JOB`: the reputation brake, seen and
//! released by an operator. A release is logged with who did it, and the messages the brake
//! held fall due at once.

use super::{App, Exit, Format, FormatArg};
use crate::text::printable as p;
use crate::values::When;
use chrono::Utc;
use std::path::Path;

#[derive(clap::Subcommand, Debug)]
pub(super) enum Command {
    /// Show the reputation brakes (engaged ones, or --all)
    Brakes {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Release the reputation brake of JOB (or of the sending domain, --domain)
    Resume {
        #[arg(required_unless_present = "domain")]
        job: Option<String>,
        /// The sending domain's brake instead of a job's
        #[arg(long, conflicts_with = "job")]
        domain: bool,
        /// Who releases it (for the record) [default: $USER]
        #[arg(long)]
        by: Option<String>,
        /// Held messages fall due at this time instead of now (RFC 3339, or a date: its midnight in defaults.timezone)
        #[arg(long, value_parser = When::parse)]
        now: Option<When>,
    },
}

pub(super) async fn run(config_path: &Path, cmd: Command) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let store = app.open_store().await?;
    match cmd {
        Command::Brakes { all, format } => {
            let brakes = store.brakes(!all).await?;
            match format.get() {
                Format::Json => println!("{}", serde_json::to_string_pretty(&brakes)?),
                Format::Text => {
                    for b in &brakes {
                        println!(
                            "{}  {}  since {}{}",
                            p(&b.scope),
                            p(&b.reason),
                            b.engaged_at.format("%Y-%m-%d %H:%M:%SZ"),
                            match (&b.released_at, &b.released_by) {
                                (Some(at), by) => format!(
                                    "; released {} by {}",
                                    at.format("%Y-%m-%d %H:%M:%SZ"),
                                    p(by.as_deref().unwrap_or("?"))
                                ),
                                _ => String::new(),
                            }
                        );
                    }
                    println!("{} brake(s)", brakes.len());
                }
            }
        }
        Command::Resume {
            job,
            domain,
            by,
            now,
        } => {
            let scope = match (job, domain) {
                (Some(j), _) => {
                    if !app.jobs.iter().any(|x| x.id == j) {
                        eprintln!("note: job `{}` is not defined now", p(&j));
                    }
                    format!("job:{j}")
                }
                (None, _) => format!(
                    "domain:{}",
                    app.config.email.from.email.domain().to_ascii_lowercase()
                ),
            };
            let by = by.unwrap_or_else(super::suppress::actor);
            if !store
                .release_brake(&scope, &by, app.at(now).unwrap_or_else(Utc::now))
                .await?
            {
                return Err(Exit::invalid(format!(
                    "no reputation brake holds {} (see `aftercare jobs brakes`)",
                    p(&scope)
                )));
            }
            tracing::warn!(scope = %scope, by = %by, "reputation brake released");
            println!(
                "resumed {}: its held marketing email falls due now (released by {})",
                p(&scope),
                p(&by)
            );
        }
    }
    store.close().await;
    Ok(())
}
