//! `aftercare preview JOB --event FILE`: what the customer would receive, rendered exactly
//! as dispatch would render it, without touching the store or sending anything.

use super::{App, Exit, read_input};
use crate::ingest::parse_event;
use chrono::Utc;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Job id
    job: String,
    /// An event as JSON (one object, or the first line of a JSON-lines file)
    #[arg(long, value_name = "FILE")]
    event: PathBuf,
    /// Render for this locale instead of the contact's
    #[arg(long)]
    locale: Option<String>,
    /// Which message of the job: 0 for the first send, 1.. for reminders
    #[arg(long, default_value_t = 0)]
    step: i64,
}

pub fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let Some(job) = app.jobs.get(&a.job) else {
        eprint!("{}", app.diags);
        let known: Vec<&str> = app.jobs.iter().map(|j| j.id.as_str()).collect();
        let hint = crate::diag::did_you_mean(&a.job, known.iter().copied())
            .unwrap_or_else(|| format!("jobs: {}", known.join(", ")));
        return Err(Exit::invalid(format!("no valid job `{}` ({hint})", a.job)));
    };
    let Some(step) = job.step(a.step) else {
        return Err(Exit::invalid(format!(
            "job {} has steps 0..={} (0 is the first send)",
            job.id,
            job.steps.len() - 1
        )));
    };
    let text = read_input(&a.event)?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let one = if text.trim_start().starts_with('{')
        && serde_json::from_str::<serde_json::Value>(&text).is_ok()
    {
        text.as_str()
    } else {
        first
    };
    let inc = parse_event(one).map_err(|errs| {
        let lines: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {e}", a.event.display()))
            .collect();
        Exit::invalid(lines.join("\n"))
    })?;
    if job.trigger.event() != Some(inc.event.kind.as_str()) {
        eprintln!(
            "warning: job {} is triggered by {}, this event is {}",
            job.id,
            job.trigger.event().unwrap_or("-"),
            inc.event.kind
        );
    }
    let planner = app.planner();
    let mut contact = inc.contact.apply(None);
    if let Some(l) = &a.locale {
        contact.locale = Some(l.clone());
    }
    let now = Utc::now();
    let first = planner
        .first_message(job, &inc.event, &contact, now)
        .map_err(|e| Exit::invalid(e.message))?;
    let locale = contact
        .locale
        .clone()
        .unwrap_or_else(|| app.config.default_locale.clone());
    let ctx = planner.context(
        job,
        &contact,
        Some(&inc.event),
        "preview",
        a.step,
        first.due_at,
    );
    let email = app
        .templates
        .render_email(&step.template, &locale, &ctx)
        .map_err(|e| Exit::invalid(e.to_string()))?;
    let tz = contact
        .timezone
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(app.config.default_timezone);
    println!(
        "job:      {} (step {}, template {}, locale {})",
        job.id, a.step, step.template, email.locale
    );
    if a.step == 0 {
        println!(
            "due:      {} ({})",
            first.due_at.with_timezone(&tz).to_rfc3339(),
            tz.name()
        );
    } else {
        println!(
            "due:      {} after step {} is sent",
            crate::duration::format(step.after),
            a.step - 1
        );
    }
    println!("dedupe:   {}", first.dedupe_key);
    let to = match (&contact.name, &contact.email) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (None, Some(e)) => e.clone(),
        _ => "(no email address: this contact would be skipped)".into(),
    };
    println!("to:       {to}");
    println!("subject:  {}", email.subject);
    if let Some(t) = &email.text {
        println!("--- text ---\n{}", t.trim_end());
    }
    if let Some(h) = &email.html {
        println!("--- html ---\n{}", h.trim_end());
    }
    Ok(())
}
