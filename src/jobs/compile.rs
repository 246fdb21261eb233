//! Raw job YAML → [`Job`]: durations parsed, cron and time zones checked, templates and
//! their variables checked against what the trigger provides, compliance rules linted;
//! every problem reported at the line and column of the value that causes it.

use super::job::*;
use super::outcome;
use super::sms::sms_settings;
use super::spec::Class;
use super::spec::{CompileEnv, RawJob};
use super::trigger::{audience, trigger};
use crate::check::Checker;
use crate::diag::{Diagnostics, did_you_mean};
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
    let survey = outcome::survey(&mut c, &raw);
    let scope = scope.with_survey(survey.is_some());
    let experiment = outcome::experiment(&mut c, &raw, env);
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
        // With variants, each arm's template is its first message's.
        (None, false) if let Some(v) = experiment.variants.first() => steps.push(Step {
            template: v.template.clone(),
            after: first_delay,
        }),
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
        if template.is_empty() && !channels.is_empty() {
            c.err(
                &format!("reminders[{i}]"),
                "this reminder needs a template: the job has none of its own (only variants)",
                Some("add template: <folder in message_templates> to the reminder".into()),
            );
        }
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
    for (i, v) in experiment.variants.iter().enumerate() {
        if env.templates.has(&v.template) && !checked.iter().any(|(_, n)| n == &v.template) {
            checked.push((format!("variants[{i}].template"), v.template.clone()));
        }
    }
    for (field, name) in &checked {
        if survey.is_some() {
            c.extend(env.templates.check_for_job(
                name,
                "survey",
                &scope,
                &format!("job {} ({field})", raw.id),
            ));
        }
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
                Some("add {{unsubscribe.url}} to the email body (the List-Unsubscribe header is sent when unsubscribe: is set)".into()),
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
        v.extend(experiment.variants.iter().map(|x| x.template.clone()));
        v.sort();
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
        .map(|s| outcome::stop_list(&mut c, "stop_when", s, env.known_events))
        .unwrap_or_default();
    let goal = outcome::goal(&mut c, &raw, &stop_when, env.known_events);
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
    lint_review_gating(&mut c, &raw, &audience, env.templates);

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
            goal,
            survey,
            experiment,
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

/// Words in a job's id, description, template names or template files that mark an
/// incentive (a coupon, points, a gift): such a job must not go only to customers who scored
/// us high.
const INCENTIVE_WORDS: &[&str] = &[
    "coupon",
    "voucher",
    "discount",
    "incentive",
    "reward",
    "gift",
    "promo",
    "cashback",
    "points",
    "优惠",
    "券",
    "红包",
    "礼",
    "积分",
    "返现",
];

/// The rules review gating breaks, named in the error so marketing can look them up.
const GATING_RULES: &str = "the US FTC's rule on consumer reviews (16 CFR Part 465, 2024; \
     incentives conditioned on sentiment: §465.4), Google's review policy (no selective \
     solicitation of positive reviews) and Trustpilot's guidelines for businesses (invite \
     all customers, not only happy ones)";

/// Review gating: asking only satisfied customers for a review, or rewarding only high
/// scorers. A review request must not filter on a score at all; a job that hands out an
/// incentive must not go only to high scores. (A callback to detractors is fine: it asks
/// for nothing and gives nothing away.)
fn lint_review_gating(c: &mut Checker, raw: &RawJob, audience: &Audience, templates: &TemplateSet) {
    if audience.conditions.is_empty() {
        return;
    }
    let mut names: Vec<&str> = vec![raw.id.as_str()];
    names.extend(raw.template.iter().map(String::as_str));
    names.extend(raw.reminders.iter().filter_map(|r| r.template.as_deref()));
    names.extend(raw.variants.iter().flatten().map(|v| v.template.as_str()));
    let is_review = names.iter().any(|t| t.contains("review"));
    let description = raw
        .description
        .as_deref()
        .unwrap_or_default()
        .to_lowercase();
    // What the messages say too (every file of each template set, every locale): a
    // "thanks" job whose email offers a 优惠券 hands out an incentive whatever it is called.
    let words = names[1..].iter().flat_map(|n| templates.files(n)).map(|f| {
        std::fs::read_to_string(&f.path)
            .unwrap_or_default()
            .to_lowercase()
    });
    let is_incentive = names
        .iter()
        .map(|n| n.to_lowercase())
        .chain(std::iter::once(description))
        .chain(words)
        .any(|t| INCENTIVE_WORDS.iter().any(|w| t.contains(w)));
    for cond in &audience.conditions {
        let lower = cond.path.to_lowercase();
        if !GATING_WORDS.iter().any(|w| lower.contains(w)) {
            continue;
        }
        let field = format!("audience.where.{}", cond.path);
        if is_review {
            c.err(
                &field,
                "review gating: a review request must go to every customer, not only satisfied ones",
                Some(format!("{GATING_RULES} forbid filtering review requests on rating or satisfaction; remove this condition")),
            );
        } else if is_incentive && cond.selects_high_scores() {
            c.err(
                &field,
                "review gating: this job gives an incentive only to customers who scored us high",
                Some(format!("{GATING_RULES} forbid rewards that depend on a favourable answer; give it to every customer, or drop it")),
            );
        }
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
