//! `aftercare callbacks`: callback tasks for agents without a CRM (and the delivery state of
//! those that went to one).

use super::{App, Exit, Format, FormatArg};
use crate::model::{Contact, MessageState};
use crate::store::Tasks;
use crate::text::printable as p;
use crate::values::When;
use clap::Subcommand;
use std::collections::HashMap;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Also show closed and delivered tasks: the newest --limit of them
    #[arg(long)]
    all: bool,
    /// With --all: how many of the newest tasks to show
    #[arg(long, default_value_t = 1000, requires = "all", value_parser = clap::value_parser!(i64).range(1..=100_000))]
    limit: i64,
    /// Tell due from overdue, and date a closing, as of this time instead of now (RFC 3339,
    /// or a date: its midnight in defaults.timezone), like `run --once --now`
    #[arg(long, value_parser = When::parse)]
    now: Option<When>,
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
    let now = crate::clock::from_option(app.at(a.now)).now();
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
    // Still to do: every one (a queue is short, or it is the problem to see); with --all,
    // the newest --limit, read one more to know whether older ones were left out.
    let (which, limit) = if a.all {
        (Tasks::All, a.limit + 1)
    } else {
        (Tasks::ToDo, 100_000)
    };
    let mut tasks = store.callback_tasks(which, limit).await?;
    let shown = usize::try_from(a.limit).unwrap_or(usize::MAX);
    let left_out = a.all && tasks.len() > shown;
    if a.all {
        tasks.truncate(shown);
        // Shown oldest first, like the tasks still to do.
        tasks.reverse();
    }
    let mut ids: Vec<String> = tasks.iter().map(|t| t.contact_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let contacts: HashMap<String, Contact> = store
        .contacts(&ids)
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    let mut rows = Vec::new();
    for t in &tasks {
        let contact = contacts.get(&t.contact_id);
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
        if left_out {
            eprintln!(
                "note: the newest {} task(s); older ones are left out (--limit)",
                a.limit
            );
        }
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
        if left_out {
            println!(
                "{} task(s): the newest {}; older ones are left out (--limit)",
                rows.len(),
                a.limit
            );
        } else {
            println!("{} task(s)", rows.len());
        }
    }
    store.close().await;
    Ok(())
}
