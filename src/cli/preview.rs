//! `aftercare preview JOB --event FILE`: what the customer would receive, rendered exactly
//! as dispatch would render it, without touching the store or sending anything.

use super::{App, Exit, read_input};
use crate::ingest::parse_event;
use crate::jobs::{DateField, Trigger};
use crate::model::Channel;
use crate::playbook::MessageFacts;
use crate::text::{printable as p, printable_lines as lines};
use crate::values::When;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Job id
    job: String,
    /// An event as JSON (one object, or the first line of a JSON-lines file); for birthday
    /// and cron jobs, its contact is the one previewed
    #[arg(long, value_name = "FILE")]
    event: PathBuf,
    /// Render for this locale instead of the contact's
    #[arg(long)]
    locale: Option<String>,
    /// Which message of the job: 0 for the first send, 1.. for reminders
    #[arg(long, default_value_t = 0)]
    step: i64,
    /// Preview as of this time instead of now (RFC 3339, or a date: its midnight in defaults.timezone),
    /// as `run --once --now` would plan it: "what does the Christmas greeting say on the 24th?"
    #[arg(long, value_parser = When::parse)]
    now: Option<When>,
}

pub(super) fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let Some(job) = app.jobs.get(&a.job) else {
        eprint!("{}", lines(&app.diags.to_string()));
        let known: Vec<&str> = app.jobs.iter().map(|j| j.id.as_str()).collect();
        let hint = crate::diag::did_you_mean(&a.job, known.iter().copied())
            .unwrap_or_else(|| format!("jobs: {}", known.join(", ")));
        return Err(Exit::invalid(format!("no valid job `{}` ({hint})", a.job)));
    };
    let Some(step) = job.step(a.step) else {
        return Err(Exit::invalid(match job.steps.len() {
            // A callback task's job (webhook only) sends nothing a customer reads.
            0 => format!(
                "job {} sends no message to preview (a callback task for the CRM or the agents; `aftercare callbacks` lists them)",
                job.id
            ),
            n => format!(
                "job {} has steps 0..={} (0 is the first send)",
                job.id,
                n - 1
            ),
        }));
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
            p(&inc.event.kind)
        );
    }
    let book = app.playbook();
    let mut contact = inc.contact.apply(None, false);
    if let Some(l) = &a.locale {
        contact.locale = Some(l.clone());
    }
    let now = crate::clock::from_option(app.at(a.now)).now();
    let tz = book.zone_of(&contact);
    // When it would go, and under which dedupe key.
    let (due, dedupe) = match &job.trigger {
        Trigger::Event { .. } => {
            let planned = crate::plan::messages_for_event(&book, job, &inc.event, &contact, now)
                .map_err(|e| Exit::invalid(e.message))?;
            let Some(first) = planned.into_iter().find(|m| m.channel_plan.is_none()) else {
                return Err(Exit::invalid(format!(
                    "this contact is not in the audience of job {} (audience.where)",
                    job.id
                )));
            };
            (Some(first.due_at), first.dedupe_key)
        }
        Trigger::Anniversary {
            field,
            at,
            leap_day,
        } => {
            let leap = leap_day.unwrap_or(book.policy.leap_day);
            let value = match field {
                DateField::Birthday => contact.birthday.clone(),
                DateField::Attribute(k) => contact
                    .attributes
                    .get(k)
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            };
            let date = value.and_then(|v| chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok());
            let next = date.and_then(|d| {
                now.with_timezone(&tz)
                    .date_naive()
                    .iter_days()
                    .take(367)
                    .find_map(|day| {
                        crate::schedule::fire_time(d, day, *at, tz, leap).filter(|t| *t >= now)
                    })
            });
            (next, format!("{}:<year>", contact.id))
        }
        Trigger::Cron { cron, timezone, .. } => {
            let ctz = timezone.unwrap_or(book.default_timezone);
            let next = crate::cron_tz::next_after(cron, ctz, now)?;
            (next, format!("{}:<occurrence>", contact.id))
        }
    };
    let facts = MessageFacts {
        id: "preview",
        step: a.step,
        token: Some("preview-token"),
        send_at: due.unwrap_or(now),
    };
    let event = job.trigger.event().map(|_| &inc.event);
    let email = if job.channels.contains(&Channel::Email) {
        Some(
            book.render_email(job, &contact, event, &facts, &step.template)
                .map_err(|e| Exit::invalid(e.to_string()))?,
        )
    } else {
        None
    };
    let sms = if job.channels.contains(&Channel::Sms) {
        Some(
            book.render_sms(job, &contact, event, &facts, &step.template)
                .map_err(|e| Exit::invalid(e.to_string()))?,
        )
    } else {
        None
    };
    let used_locale = email
        .as_ref()
        .map(|e| e.locale.clone())
        .or_else(|| sms.as_ref().map(|s| s.locale.clone()))
        .unwrap_or_else(|| book.locale_of(&contact));
    println!(
        "job:      {} (step {}, template {}, locale {}, {})",
        job.id,
        a.step,
        step.template,
        used_locale,
        job.class.as_str()
    );
    match (a.step, due) {
        (0, Some(d)) => println!(
            "due:      {} ({})",
            d.with_timezone(&tz).to_rfc3339(),
            tz.name()
        ),
        (0, None) => println!("due:      never (this contact has no such date)"),
        _ => println!(
            "due:      {} after step {} is sent",
            crate::duration::format(step.after),
            a.step - 1
        ),
    }
    println!("dedupe:   {}", p(&dedupe));
    println!(
        "channels: {}",
        job.channels
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(email) = &email {
        let to = match (&contact.name, &contact.email) {
            (Some(n), Some(e)) => format!("{n} <{e}>"),
            (None, Some(e)) => e.clone(),
            _ => "(no email address: this contact would be skipped)".into(),
        };
        println!("to:       {}", p(&to));
        println!("subject:  {}", p(&email.subject));
        if let Some(t) = &email.text {
            println!("--- text ---\n{}", lines(t.trim_end()));
        }
        if let Some(h) = &email.html {
            println!("--- html ---\n{}", lines(h.trim_end()));
        }
    }
    if let Some(sms) = &sms {
        let cost = crate::channels::sms::segments(&sms.text);
        println!("--- sms ---");
        println!(
            "to:       {}",
            p(contact
                .phone
                .as_deref()
                .unwrap_or("(no phone number: the next channel would be used)"))
        );
        let route = if job.sms.route.is_empty() {
            app.config
                .sms
                .as_ref()
                .map(|s| s.route.clone())
                .unwrap_or_default()
        } else {
            job.sms.route.clone()
        };
        println!("route:    {}", route.join(" → "));
        let over = match job.sms.max_segments {
            Some(max) if cost.segments > max => {
                format!("  — over max_segments {max}: it would be refused on SMS")
            }
            Some(max) => format!("  (max_segments {max})"),
            None => String::new(),
        };
        println!(
            "length:   {cost}, {} characters{over}",
            sms.text.chars().count()
        );
        if let Some(code) = job.sms.template_codes.get(&step.template) {
            println!(
                "provider template: {code} {}",
                p(sms.params.as_deref().map(str::trim).unwrap_or("{}"))
            );
        }
        println!("{}", lines(&sms.text));
    }
    Ok(())
}
