//! Raw job YAML → [`Job`]: durations parsed, templates and variables checked, every problem
//! reported at the line and column of the value that causes it.

use super::spec::{RawJob, RawStopWhen};
use crate::diag::{Diagnostic, Diagnostics, Location, did_you_mean};
use crate::duration;
use crate::ingest::check_event_type;
use crate::templates::{Scope, TemplateSet};
use crate::yaml::{Document, SpanIndex};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const MAX_REMINDERS: usize = 3;
const CHANNELS: &[&str] = &["email"];
const PLANNED_CHANNELS: &[&str] = &["sms", "webhook"];

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub description: String,
    pub enabled: bool,
    pub file: PathBuf,
    pub trigger: Trigger,
    /// Step 0 is the first send; steps 1.. are reminders, each `after` the previous send.
    pub steps: Vec<Step>,
    /// In order of preference.
    pub channels: Vec<String>,
    /// Handlebars text whose value makes a message unique per job (default: the event id).
    pub dedupe: Option<String>,
    pub stop_when: Option<StopWhen>,
    /// `None`: the config's default; `Some(None)`: never expires.
    pub expire_after: Option<Option<Duration>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// An event of this type, plus a delay.
    Event { event: String, delay: Duration },
}

impl Trigger {
    pub fn event(&self) -> Option<&str> {
        match self {
            Trigger::Event { event, .. } => Some(event),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub template: String,
    /// For step 0: after the trigger; for reminders: after the previous step was sent.
    pub after: Duration,
}

/// Pending messages of the job are cancelled when the contact has an event of this type
/// (and, with `match`, the same values in these `event.data` fields as the trigger event).
#[derive(Debug, Clone, PartialEq)]
pub struct StopWhen {
    pub event: String,
    pub match_fields: Vec<String>,
}

impl Job {
    pub fn step(&self, n: i64) -> Option<&Step> {
        usize::try_from(n).ok().and_then(|n| self.steps.get(n))
    }
}

struct Ctx<'a> {
    path: &'a Path,
    spans: &'a SpanIndex,
    diags: Diagnostics,
}

impl Ctx<'_> {
    fn at(&self, field: &str) -> Option<Location> {
        self.spans.locate(field)
    }
    fn error(&mut self, field: &str, msg: impl Into<String>, hint: Option<String>) {
        let d = Diagnostic::error(
            self.path,
            self.at(field),
            format!("{field}: {}", msg.into()),
        )
        .with_hint_opt(hint);
        self.diags.push(d);
    }
    fn warn(&mut self, field: &str, msg: impl Into<String>, hint: Option<String>) {
        let d = Diagnostic::warning(
            self.path,
            self.at(field),
            format!("{field}: {}", msg.into()),
        )
        .with_hint_opt(hint);
        self.diags.push(d);
    }
    fn duration(&mut self, field: &str, text: &str) -> Option<Duration> {
        duration::parse(text)
            .map_err(|e| {
                self.error(
                    field,
                    e,
                    Some(
                        "write a number and a unit: 30m, 12h, 3d, 1w, or combined as 1d12h".into(),
                    ),
                )
            })
            .ok()
    }
    fn template(&mut self, field: &str, name: &str, templates: &TemplateSet) -> bool {
        if templates.has(name) {
            return true;
        }
        let hint = did_you_mean(name, templates.names()).unwrap_or_else(|| {
            format!(
                "create {}/{name}/ with email.subject.hbs and email.txt.hbs",
                crate::diag::display_path(&templates.dir)
            )
        });
        self.error(field, format!("unknown template `{name}`"), Some(hint));
        false
    }
}

/// Compile one job document. The job is `None` when any error was found.
pub fn compile(
    path: &Path,
    doc: Document<RawJob>,
    templates: &TemplateSet,
    known_events: &[String],
) -> (Option<Job>, Diagnostics) {
    let raw = doc.value;
    let mut c = Ctx {
        path,
        spans: &doc.spans,
        diags: Diagnostics::default(),
    };

    if !valid_id(&raw.id) {
        c.error(
            "id",
            format!("`{}` is not a job id", raw.id),
            Some("use lowercase letters, digits, - and _, e.g. review-request".into()),
        );
    }

    let trigger = trigger(&mut c, &raw);

    let channels = raw.channels.clone().unwrap_or_else(|| vec!["email".into()]);
    if channels.is_empty() {
        c.error(
            "channels",
            "at least one channel is needed",
            Some("channels: [email]".into()),
        );
    }
    for (i, ch) in channels.iter().enumerate() {
        let field = format!("channels[{i}]");
        if PLANNED_CHANNELS.contains(&ch.as_str()) {
            c.error(
                &field,
                format!("the `{ch}` channel is not available in this version"),
                Some("use channels: [email]".into()),
            );
        } else if !CHANNELS.contains(&ch.as_str()) {
            c.error(
                &field,
                format!("unknown channel `{ch}`"),
                did_you_mean(ch, CHANNELS.iter().copied()).or(Some("channels: email".into())),
            );
        } else if channels[..i].contains(ch) {
            c.error(&field, format!("`{ch}` is listed twice"), None);
        }
    }

    let scope = Scope::event_job();
    let mut steps = Vec::new();
    let first_ok = c.template("template", &raw.template, templates);
    steps.push(Step {
        template: raw.template.clone(),
        after: trigger
            .as_ref()
            .map(|t| match t {
                Trigger::Event { delay, .. } => *delay,
            })
            .unwrap_or_default(),
    });
    let mut checked = vec![];
    if first_ok {
        checked.push(("template".to_string(), raw.template.clone()));
    }
    if raw.reminders.len() > MAX_REMINDERS {
        c.error(
            &format!("reminders[{MAX_REMINDERS}]"),
            format!("at most {MAX_REMINDERS} reminders"),
            Some("customers stop reading after the third reminder".into()),
        );
    }
    for (i, r) in raw.reminders.iter().enumerate() {
        let after = c.duration(&format!("reminders[{i}].after"), &r.after);
        if after.is_some_and(|d| d.is_zero()) {
            c.error(
                &format!("reminders[{i}].after"),
                "must be longer than 0s",
                None,
            );
        }
        let after = after.unwrap_or_default();
        let template = r.template.clone().unwrap_or_else(|| raw.template.clone());
        if let Some(t) = &r.template
            && c.template(&format!("reminders[{i}].template"), t, templates)
            && !checked.iter().any(|(_, n)| n == t)
        {
            checked.push((format!("reminders[{i}].template"), t.clone()));
        }
        steps.push(Step { template, after });
    }
    for (field, name) in &checked {
        for ch in &channels {
            if CHANNELS.contains(&ch.as_str()) {
                c.diags.extend(templates.check_for_job(
                    name,
                    ch,
                    &scope,
                    &format!("job {} ({field})", raw.id),
                ));
            }
        }
    }

    if let Some(d) = &raw.dedupe {
        match TemplateSet::check_inline(d, &scope) {
            Err(e) => c.error("dedupe", format!("template syntax: {e}"), None),
            Ok(problems) => {
                for (msg, _, hint) in problems {
                    c.error("dedupe", msg, hint);
                }
            }
        }
        if !d.contains("{{") {
            c.warn(
                "dedupe",
                "a constant key: the job would send once per job, ever",
                Some("use a variable, e.g. \"{{event.data.order_id}}\"".into()),
            );
        }
    }

    let stop_when = raw
        .stop_when
        .as_ref()
        .map(|s| stop_when(&mut c, s, known_events));

    let expire_after = raw.expire_after.as_deref().map(|t| {
        if t == "never" {
            None
        } else {
            c.duration("expire_after", t)
        }
    });

    let ok = !c.diags.has_errors();
    let job = match (ok, trigger) {
        (true, Some(trigger)) => Some(Job {
            id: raw.id,
            description: raw.description.unwrap_or_default(),
            enabled: raw.enabled,
            file: path.to_path_buf(),
            trigger,
            steps,
            channels,
            dedupe: raw.dedupe,
            stop_when,
            expire_after,
        }),
        _ => None,
    };
    (job, c.diags)
}

fn trigger(c: &mut Ctx, raw: &RawJob) -> Option<Trigger> {
    let t = &raw.trigger;
    if t.anniversary.is_some() || t.at.is_some() {
        c.error(
            "trigger.anniversary",
            "anniversary triggers are not available in this version",
            Some("use trigger: {event: ..., delay: ...}".into()),
        );
        return None;
    }
    if t.cron.is_some() || t.timezone.is_some() {
        c.error(
            "trigger.cron",
            "cron triggers are not available in this version",
            Some("use trigger: {event: ..., delay: ...}".into()),
        );
        return None;
    }
    let Some(event) = &t.event else {
        c.error(
            "trigger",
            "no trigger kind",
            Some("give trigger.event, e.g. trigger: {event: order.delivered, delay: 3d}".into()),
        );
        return None;
    };
    if let Err(e) = check_event_type(event) {
        c.error("trigger.event", e, None);
    }
    let delay = match &t.delay {
        Some(d) => c.duration("trigger.delay", d)?,
        None => Duration::ZERO,
    };
    Some(Trigger::Event {
        event: event.clone(),
        delay,
    })
}

fn stop_when(c: &mut Ctx, s: &RawStopWhen, known_events: &[String]) -> StopWhen {
    let field = if c.spans.has("stop_when.event") {
        "stop_when.event"
    } else {
        "stop_when"
    };
    if let Err(e) = check_event_type(&s.event) {
        c.error(field, e, None);
    } else if !known_events.iter().any(|k| k == &s.event) {
        let hint = did_you_mean(&s.event, known_events.iter().map(String::as_str))
            .unwrap_or_else(|| "fine if your systems send it; check the spelling".into());
        c.warn(
            field,
            format!(
                "`{}` is not a known event type and no job is triggered by it",
                s.event
            ),
            Some(hint),
        );
    }
    for (i, f) in s.match_fields.iter().enumerate() {
        if f.is_empty() || f.contains(['.', ' ']) {
            c.error(
                &format!("stop_when.match[{i}]"),
                format!("`{f}` is not a field of event.data"),
                Some("name top-level keys of event.data, e.g. order_id".into()),
            );
        }
    }
    StopWhen {
        event: s.event.clone(),
        match_fields: s.match_fields.clone(),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
