//! `aftercare callbacks`: callback tasks for agents without a CRM (and the delivery state of
//! those that went to one).

use super::{App, Exit, Format, FormatArg};
use crate::model::MessageState;
use crate::text::printable as p;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Also show closed and delivered tasks
    #[arg(long)]
    all: bool,
    /// Tell due from overdue, and date a closing, as of this time instead of now (RFC 3339,
    /// or a date: midnight UTC), like `run --once --now`
    #[arg(long, value_parser = crate::values::parse_time)]
    now: Option<DateTime<Utc>>,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Close an open task after calling the customer
    Done {
        id: String,
        #[arg(long, default_value = "called")]
        note: String,
        #[arg(long, default_value = "agent")]
        agent: String,
    },
}

pub(super) async fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let store = app.open_store().await?;
    let now = crate::clock::from_option(a.now).now();
    if let Some(Command::Done { id, note, agent }) = a.command {
        if !store.close_task(&id, &note, &agent, now).await? {
            return Err(Exit::invalid(format!(
                "no open callback task `{}` (see `aftercare callbacks`)",
                p(&id)
            )));
        }
        println!("closed {}: {}", p(&id), p(&note));
        return Ok(());
    }
    let tasks = store.callback_tasks(a.all).await?;
    let mut rows = Vec::new();
    for t in &tasks {
        let contact = store.contact(&t.contact_id).await?;
        let status = match t.state {
            MessageState::Open | MessageState::Scheduled | MessageState::Retrying
                if t.due_at <= now =>
            {
                "overdue"
            }
            MessageState::Open | MessageState::Scheduled | MessageState::Retrying => "due",
            other => other.as_str(),
        };
        rows.push((t, contact, status));
    }
    if a.format.get() == Format::Json {
        let out: Vec<_> = rows
            .iter()
            .map(|(t, c, status)| serde_json::json!({"task": t, "contact": c, "status": status}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let tz = app.config.default_timezone;
        for (t, c, status) in &rows {
            let who = c.as_ref().map(|c| {
                format!(
                    "{} {}",
                    p(c.name.as_deref().unwrap_or(&c.id)),
                    p(c.phone
                        .as_deref()
                        .or(c.email.as_deref())
                        .unwrap_or("(no phone)"))
                )
            });
            println!(
                "{}  {:<8}  due {}  {}  {}{}",
                p(&t.id),
                status,
                t.due_at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
                p(&t.job_id),
                who.unwrap_or_else(|| p(&t.contact_id).into_owned()),
                t.order_id
                    .as_deref()
                    .map(|o| format!("  order {}", p(o)))
                    .unwrap_or_default()
            );
        }
        println!("{} task(s)", rows.len());
    }
    store.close().await;
    Ok(())
}
