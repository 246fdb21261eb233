//! Raw job YAML → [`Job`]: durations parsed, cron and time zones checked, templates and
//! their variables checked against what the trigger provides, compliance rules linted;
//! every problem reported at the line and column of the value that causes it.

use super::job::*;
use super::sms::sms_settings;
use super::spec::Class;
use super::spec::{RawJob, RawStopWhen};
use super::trigger::{audience, trigger};
use crate::channels::sms::SmsConfig;
use crate::check::Checker;
use crate::diag::{Diagnostics, did_you_mean};
use crate::ingest::check_event_type;
use crate::model::Channel;
use crate::templates::{Scope, TemplateSet};
use crate::yaml::Document;
use std::path::Path;
use std::time::Duration;

pub(super) const MAX_REMINDERS: usize = 3;
/// Audience keys that would turn a review request into review gating.
const GATING_WORDS: &[&str] = &[
    "rating",
    "satisf",
    "nps",
    "csat",
    "score",
    "star",
    "sentiment",
    "happy",
    "review_intent",
];

/// `name` must be a template set in the templates folder.
fn known_template(c: &mut Checker, field: &str, name: &str, templates: &TemplateSet) -> bool {
    if templates.has(name) {
        return true;
    }
    let hint = did_you_mean(name, templates.names()).unwrap_or_else(|| {
        format!(
            "create {}/{name}/ with email.subject.hbs and email.txt.hbs",
            crate::diag::display_path(&templates.dir)
        )
    });
    c.err(field, format!("unknown template `{name}`"), Some(hint));
    false
}

/// What compiling a job needs besides its document.
pub(super) struct CompileEnv<'a> {
    pub templates: &'a TemplateSet,
    pub known_events: &'a [String],
    /// All job ids, for `exclude_if_sent`.
    pub job_ids: &'a [String],
    /// The config's SMS gateways; `None` without an `sms:` section.
    pub sms: Option<&'a SmsConfig>,
}

/// Compile one job document. The job is `None` when any error was found.
pub(super) fn compile(
    path: &Path,
    doc: Document<RawJob>,
    env: &CompileEnv,
) -> (Option<Job>, Diagnostics) {
    let raw = doc.value;
    let mut c = Checker::new(path, &doc.spans);

    if !valid_id(&raw.id) {
        c.err(
            "id",
            format!("`{}` is not a job id", raw.id),
            Some("use lowercase letters, digits, - and _, e.g. review-request".into()),
        );
    }
    let trigger = trigger(&mut c, &raw.trigger);
    let class = raw.class.unwrap_or_default();

    let listed = raw.channels.clone().unwrap_or_else(|| vec!["email".into()]);
    if listed.is_empty() {
        c.err(
            "channels",
            "at least one channel is needed",
            Some("channels: [email]".into()),
        );
    }
    let mut channels = Vec::new();
    let mut webhook = false;
    for (i, ch) in listed.iter().enumerate() {
        let field = format!("channels[{i}]");
        match Channel::parse(ch) {
            _ if listed[..i].contains(ch) => {
                c.err(&field, format!("`{ch}` is listed twice"), None);
            }
            // Without a `webhook:` section the tasks stay open for `aftercare callbacks`.
            Some(Channel::Webhook) => webhook = true,
            Some(Channel::Sms) if env.sms.is_none_or(|s| s.gateways.is_empty()) => c.err(
                &field,
                "the `sms` channel needs an SMS gateway, and the config has none",
                Some("add an `sms:` section with gateways to the config (see the README's SMS section)".into()),
            ),
            Some(customer) => channels.push(customer),
            None => {
                let all = Channel::ALL.map(Channel::as_str);
                c.err(
                    &field,
                    format!("unknown channel `{ch}`"),
                    did_you_mean(ch, all).or(Some("channels: email, sms, webhook".into())),
                );
            }
        }
    }

    let scope = match &trigger {
        Some(Trigger::Event { .. }) | None => Scope::event_job(),
        Some(Trigger::Anniversary { .. }) => {
            Scope::without_event("an anniversary job is not triggered by an event")
        }
        Some(Trigger::Cron { .. }) => {
            Scope::without_event("a cron job is not triggered by an event")
        }
    };
    let first_delay = match &trigger {
        Some(Trigger::Event { delay, .. }) => *delay,
        _ => Duration::ZERO,
    };
    let mut steps = Vec::new();
    let mut checked: Vec<(String, String)> = Vec::new();
    match (&raw.template, channels.is_empty()) {
        (Some(t), _) => {
            if known_template(&mut c, "template", t, env.templates) {
                checked.push(("template".into(), t.clone()));
            }
            steps.push(Step {
                template: t.clone(),
                after: first_delay,
            });
        }
        (None, false) => c.err(
            "template",
            "missing: the customer channels need a template",
            Some("template: <folder in message_templates>".into()),
        ),
        (None, true) => {}
    }
    if raw.reminders.len() > MAX_REMINDERS {
        c.err(
            &format!("reminders[{MAX_REMINDERS}]"),
            format!("at most {MAX_REMINDERS} reminders"),
            Some("customers stop reading after the third reminder".into()),
        );
    }
    if !raw.reminders.is_empty() && !matches!(trigger, Some(Trigger::Event { .. }) | None) {
        c.err(
            "reminders",
            "reminders follow event-triggered messages only",
            None,
        );
    }
    for (i, r) in raw.reminders.iter().enumerate() {
        let after = c.duration(&format!("reminders[{i}].after"), &r.after);
        if after.is_some_and(|d| d.is_zero()) {
            c.err(
                &format!("reminders[{i}].after"),
                "must be longer than 0s",
                None,
            );
        }
        let after = after.unwrap_or_default();
        let template = r
            .template
            .clone()
            .or_else(|| raw.template.clone())
            .unwrap_or_default();
        if let Some(t) = &r.template
            && known_template(
                &mut c,
                &format!("reminders[{i}].template"),
                t,
                env.templates,
            )
            && !checked.iter().any(|(_, n)| n == t)
        {
            checked.push((format!("reminders[{i}].template"), t.clone()));
        }
        steps.push(Step { template, after });
    }
    for (field, name) in &checked {
        for ch in &channels {
            c.extend(env.templates.check_for_job(
                name,
                ch.as_str(),
                &scope,
                &format!("job {} ({field})", raw.id),
            ));
        }
        if class == Class::Marketing
            && channels.contains(&Channel::Email)
            && !env.templates.uses(name, "email.", "unsubscribe.url")
        {
            c.warn(
                field,
                format!("marketing template `{name}` has no unsubscribe link"),
                Some("add {{unsubscribe.url}} to the email body (the List-Unsubscribe header is sent either way)".into()),
            );
        }
    }

    if let Some(d) = &raw.dedupe {
        match TemplateSet::check_inline(d, &scope) {
            Err(e) => c.err("dedupe", format!("template syntax: {e}"), None),
            Ok(problems) => {
                for (msg, _, hint) in problems {
                    c.err("dedupe", msg, hint);
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
        if !matches!(trigger, Some(Trigger::Event { .. }) | None) {
            c.err("dedupe", "only event-triggered jobs take a dedupe key (anniversaries are once a year, cron jobs once per occurrence)", None);
        }
    }

    let step_templates: Vec<String> = {
        let mut v: Vec<String> = steps.iter().map(|s| s.template.clone()).collect();
        v.dedup();
        v.retain(|t| env.templates.has(t));
        v
    };
    let sms = sms_settings(
        &mut c,
        raw.sms.as_ref(),
        listed.iter().any(|ch| ch == "sms"),
        class,
        &step_templates,
        env,
    );

    let stop_when = raw
        .stop_when
        .as_ref()
        .map(|s| stop_when(&mut c, s, env.known_events));
    let expire_after = raw.expire_after.as_deref().map(|t| {
        if t == "never" {
            None
        } else {
            c.duration("expire_after", t)
        }
    });
    let send_window = raw
        .send_window
        .as_ref()
        .and_then(|w| crate::policy::settings::window(&mut c, "send_window", w));
    let audience = raw
        .audience
        .as_ref()
        .map(|a| audience(&mut c, a, &trigger, env))
        .unwrap_or_default();
    lint_review_gating(&mut c, &raw, &audience);

    let ok = !c.has_errors();
    let job = match (ok, trigger) {
        (true, Some(trigger)) => Some(Job {
            id: raw.id,
            description: raw.description.unwrap_or_default(),
            enabled: raw.enabled,
            trigger,
            steps,
            channels,
            webhook,
            class,
            dedupe: raw.dedupe,
            stop_when,
            expire_after,
            send_window,
            over_cap: raw.over_cap.unwrap_or_default(),
            audience,
            sms,
        }),
        _ => None,
    };
    (job, c.into_diagnostics())
}

/// Google's and Trustpilot's rules and the US FTC's 2024 rule on consumer reviews ban asking
/// only happy customers for reviews. A review request must not filter on satisfaction.
fn lint_review_gating(c: &mut Checker, raw: &RawJob, audience: &Audience) {
    let templates = raw
        .template
        .iter()
        .chain(raw.reminders.iter().filter_map(|r| r.template.as_ref()));
    let is_review =
        raw.id.contains("review") || templates.into_iter().any(|t| t.contains("review"));
    if !is_review {
        return;
    }
    for cond in &audience.conditions {
        let lower = cond.path.to_lowercase();
        if GATING_WORDS.iter().any(|w| lower.contains(w)) {
            c.err(
                &format!("audience.where.{}", cond.path),
                "review gating: a review request must go to every customer, not only satisfied ones",
                Some("Google, Trustpilot and the FTC's 2024 rule on consumer reviews ban filtering review requests on rating or satisfaction; remove this condition".into()),
            );
        }
    }
}

fn stop_when(c: &mut Checker, s: &RawStopWhen, known_events: &[String]) -> StopWhen {
    let field = if c.has("stop_when.event") {
        "stop_when.event"
    } else {
        "stop_when"
    };
    if let Err(e) = check_event_type(&s.event) {
        c.err(field, e, None);
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
            c.err(
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
