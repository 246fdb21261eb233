//! A job's `trigger:` (an event and a delay, an anniversary at a local time, or a cron
//! expression in a zone) and its `audience:` (who of the contacts it speaks to).

use super::job::*;
use super::spec::{CompileEnv, RawAudience, RawTrigger};
use crate::check::Checker;
use crate::diag::did_you_mean;
use crate::ingest::check_event_type;
use crate::policy::parse_clock;
use crate::templates::{Scope, TemplateSet};
use std::time::Duration;

/// With more than one trigger kind: the first one written and the one after it (the error
/// points at the second, the key that does not belong).
fn second_trigger_kind(c: &Checker, t: &RawTrigger) -> Option<(&'static str, &'static str)> {
    let mut given: Vec<(Option<crate::diag::Location>, &'static str)> = [
        ("event", t.event.is_some()),
        ("anniversary", t.anniversary.is_some()),
        ("cron", t.cron.is_some()),
    ]
    .into_iter()
    .filter(|(_, present)| *present)
    .map(|(k, _)| (c.key_location(&format!("trigger.{k}")), k))
    .collect();
    given.sort();
    match given.as_slice() {
        [(_, first), (_, second), ..] => Some((first, second)),
        _ => None,
    }
}

pub(super) fn trigger(c: &mut Checker, t: &RawTrigger) -> Option<Trigger> {
    let kinds = [t.event.is_some(), t.anniversary.is_some(), t.cron.is_some()]
        .iter()
        .filter(|k| **k)
        .count();
    if kinds != 1 {
        let hint = "give exactly one of event (+ delay), anniversary (+ at) or cron (+ timezone)";
        match second_trigger_kind(c, t) {
            Some((first, second)) => c.err_at_key(
                &format!("trigger.{second}"),
                format!("given with `{first}`; a trigger has one kind"),
                Some(hint.into()),
            ),
            None => c.err("trigger", "no trigger kind", Some(hint.into())),
        }
        return None;
    }
    let stray = |c: &mut Checker, keys: &[(&str, bool)], kind: &str| {
        for (k, present) in keys {
            if *present {
                c.err(
                    &format!("trigger.{k}"),
                    format!("does not apply to a{kind} trigger"),
                    None,
                );
            }
        }
    };
    if let Some(event) = &t.event {
        stray(
            c,
            &[
                ("at", t.at.is_some()),
                ("leap_day", t.leap_day.is_some()),
                ("timezone", t.timezone.is_some()),
                ("missed", t.missed.is_some()),
            ],
            "n event",
        );
        if let Err(e) = check_event_type(event) {
            c.err("trigger.event", e, None);
        }
        let delay = match &t.delay {
            Some(d) => c.duration("trigger.delay", d)?,
            None => Duration::ZERO,
        };
        return Some(Trigger::Event {
            event: event.clone(),
            delay,
        });
    }
    if let Some(field) = &t.anniversary {
        stray(
            c,
            &[
                ("delay", t.delay.is_some()),
                ("timezone", t.timezone.is_some()),
                ("missed", t.missed.is_some()),
            ],
            "n anniversary",
        );
        let field = match field.as_str() {
            "contact.birthday" => DateField::Birthday,
            f => match f.strip_prefix("contact.attributes.") {
                Some(k) if !k.is_empty() && !k.contains('.') => DateField::Attribute(k.to_string()),
                _ => {
                    c.err(
                        "trigger.anniversary",
                        format!("`{f}` is not a contact date field"),
                        Some(
                            "contact.birthday or contact.attributes.<field> holding YYYY-MM-DD"
                                .into(),
                        ),
                    );
                    return None;
                }
            },
        };
        let at = match parse_clock(t.at.as_deref().unwrap_or("09:00")) {
            Ok(Some(at)) => at,
            Ok(None) | Err(_) => {
                c.err(
                    "trigger.at",
                    format!(
                        "`{}` is not a time of day",
                        t.at.as_deref().unwrap_or_default()
                    ),
                    Some("e.g. at: \"09:00\"".into()),
                );
                return None;
            }
        };
        return Some(Trigger::Anniversary {
            field,
            at,
            leap_day: t.leap_day,
        });
    }
    let expr = t.cron.as_deref().unwrap_or_default();
    stray(
        c,
        &[
            ("delay", t.delay.is_some()),
            ("at", t.at.is_some()),
            ("leap_day", t.leap_day.is_some()),
        ],
        " cron",
    );
    let cron = match croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expr)
    {
        Ok(cron) => cron,
        Err(e) => {
            c.err(
                "trigger.cron",
                format!("`{expr}` is not a cron expression: {e}"),
                Some(
                    "5 fields: minute hour day-of-month month day-of-week, e.g. \"0 10 * * MON\""
                        .into(),
                ),
            );
            return None;
        }
    };
    let timezone = match &t.timezone {
        None => None,
        Some(name) => Some(c.tz("trigger.timezone", name)?),
    };
    Some(Trigger::Cron {
        expr: expr.to_string(),
        cron: Box::new(cron),
        timezone,
        missed: t.missed.unwrap_or_default(),
    })
}

pub(super) fn audience(
    c: &mut Checker,
    a: &RawAudience,
    trigger: &Option<Trigger>,
    env: &CompileEnv,
) -> Audience {
    let is_cron = matches!(trigger, Some(Trigger::Cron { .. }));
    let had_event = match (&a.had_event, &a.within) {
        (Some(e), w) => {
            if let Err(err) = check_event_type(e) {
                c.err("audience.had_event", err, None);
            }
            let within = match w {
                Some(w) => c.duration("audience.within", w).unwrap_or_default(),
                None => {
                    c.err(
                        "audience.had_event",
                        "needs `within`",
                        Some("e.g. had_event: rental.completed, within: 30d".into()),
                    );
                    Duration::ZERO
                }
            };
            Some((e.clone(), within))
        }
        (None, Some(_)) => {
            c.err("audience.within", "only applies with had_event", None);
            None
        }
        (None, None) => None,
    };
    if is_cron && had_event.is_none() && a.conditions.is_empty() {
        c.warn(
            "audience",
            "no had_event and no conditions: every contact is in the audience",
            None,
        );
    }
    if !is_cron && had_event.is_some() {
        c.err("audience.had_event", "only cron jobs choose contacts by past events; an event job is for the event's contact", None);
    }
    if !is_cron && a.exclude_if_sent.is_some() {
        c.err(
            "audience.exclude_if_sent",
            "only cron jobs leave out contacts another job sent to; this job would send anyway",
            Some("for an event or anniversary job, policy.caps limits how often a contact hears from marketing, and dedupe how often from this job".into()),
        );
    }
    let scope = match trigger {
        Some(Trigger::Event { .. }) => Scope::event_job(),
        _ => Scope::without_event("this job is not triggered by an event"),
    };
    let mut conditions = Vec::new();
    for (path, v) in &a.conditions {
        let field = format!("audience.where.{path}");
        let root_ok = path.starts_with("contact.") || path.starts_with("event.data.");
        let check = TemplateSet::check_inline(&format!("{{{{{path}}}}}"), &scope);
        match check {
            Ok(problems) if root_ok && problems.is_empty() => {}
            Ok(problems) => {
                let hint = problems.into_iter().next().and_then(|(_, _, h)| h);
                c.err(
                    &field,
                    format!("`{path}` is not a field this job's contacts or events have"),
                    hint.or(Some(
                        "e.g. contact.attributes.tier or contact.locale".into(),
                    )),
                );
                continue;
            }
            Err(e) => {
                c.err(&field, e, None);
                continue;
            }
        }
        if let Some(cond) = super::condition::parse(c, &field, path, v) {
            conditions.push(cond);
        }
    }
    let exclude_if_sent = a.exclude_if_sent.as_ref().map(|x| {
        if !env.job_ids.iter().any(|j| j == &x.job) {
            let hint = did_you_mean(&x.job, env.job_ids.iter().map(String::as_str));
            c.err(
                "audience.exclude_if_sent.job",
                format!("no job `{}`", x.job),
                hint,
            );
        }
        (
            x.job.clone(),
            c.duration("audience.exclude_if_sent.within", &x.within)
                .unwrap_or_default(),
        )
    });
    Audience {
        had_event,
        conditions,
        exclude_if_sent,
    }
}
