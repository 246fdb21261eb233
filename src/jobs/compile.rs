//! Raw job YAML → [`Job`]: durations parsed, cron and time zones checked, templates and
//! their variables checked against what the trigger provides, compliance rules linted;
//! every problem reported at the line and column of the value that causes it.

pub use super::spec::{Class, Missed, OverCap};
use super::spec::{RawAudience, RawJob, RawJobSms, RawStopWhen, RawTrigger};
use crate::channels::sms::{SmsConfig, segments};
use crate::check::Checker;
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::ingest::check_event_type;
use crate::model::Channel;
use crate::policy::{LeapDay, SendWindow, parse_clock};
use crate::templates::{Scope, TemplateSet};
use crate::yaml::Document;
use chrono::NaiveTime;
use chrono_tz::Tz;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub const MAX_REMINDERS: usize = 3;
/// Words a marketing SMS shows so the customer knows how to opt out ("回T退订", "Reply STOP").
const SMS_OPT_OUT_WORDS: &[&str] = &["退订", "STOP", "UNSUBSCRIBE"];
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

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub description: String,
    pub enabled: bool,
    pub trigger: Trigger,
    /// Step 0 is the first send; steps 1.. are reminders, each `after` the previous send.
    /// Empty for a job whose only channel is `webhook`.
    pub steps: Vec<Step>,
    /// Customer channels (email, sms) in order of preference (fallback order).
    pub channels: Vec<Channel>,
    /// Also hand a callback task to the webhook.
    pub webhook: bool,
    pub class: Class,
    /// Handlebars text whose value makes a message unique per job (default: the event id).
    pub dedupe: Option<String>,
    pub stop_when: Option<StopWhen>,
    /// `None`: the config's default; `Some(None)`: never expires.
    pub expire_after: Option<Option<Duration>>,
    /// Overrides the config's quiet hours.
    pub send_window: Option<SendWindow>,
    pub over_cap: OverCap,
    pub audience: Audience,
    pub sms: SmsSettings,
}

/// How a job's messages go by SMS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmsSettings {
    /// Gateway names in order of preference; empty: the config's `sms.route`.
    pub route: Vec<String>,
    /// Template set name → the provider's pre-approved template code (Aliyun's
    /// `TemplateCode`); a step whose template has none is not sent through such gateways.
    pub template_codes: BTreeMap<String, String>,
    /// A text longer than this is refused (permanently: the next channel gets it).
    pub max_segments: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// An event of this type, plus a delay.
    Event { event: String, delay: Duration },
    /// Once a year on the anniversary of a contact date field, at local time `at`.
    Anniversary {
        field: DateField,
        at: NaiveTime,
        leap_day: Option<LeapDay>,
    },
    /// At every occurrence of a cron expression in `timezone` (the config default if absent).
    Cron {
        expr: String,
        cron: Box<croner::Cron>,
        timezone: Option<Tz>,
        missed: Missed,
    },
}

impl Trigger {
    pub fn event(&self) -> Option<&str> {
        match self {
            Trigger::Event { event, .. } => Some(event),
            _ => None,
        }
    }
}

/// A date field of a contact: `contact.birthday` or `contact.attributes.<key>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DateField {
    Birthday,
    Attribute(String),
}

impl DateField {
    /// The key in the store's `contact_dates` table.
    pub fn key(&self) -> String {
        match self {
            DateField::Birthday => "birthday".into(),
            DateField::Attribute(a) => format!("attributes.{a}"),
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

/// Who receives a job's messages, beyond its trigger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audience {
    /// The contact had an event of this type within this long before the occurrence.
    pub had_event: Option<(String, Duration)>,
    /// Every condition must hold.
    pub conditions: Vec<Condition>,
    /// Not if this job sent to the contact within this long.
    pub exclude_if_sent: Option<(String, Duration)>,
}

/// `contact.attributes.tier: gold` (or a list: any of them).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub path: String,
    pub any_of: Vec<Value>,
}

impl Condition {
    /// Whether the value at `path` in a render context matches.
    pub fn holds(&self, ctx: &Value) -> bool {
        let found = self.path.split('.').try_fold(ctx, |v, k| v.get(k));
        match found {
            None | Some(Value::Null) => self.any_of.iter().any(Value::is_null),
            Some(v) => self.any_of.iter().any(|want| loosely_equal(v, want)),
        }
    }
}

/// YAML `gold` matches JSON "gold"; YAML `5` matches JSON 5 or "5".
fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::Number(n)) | (Value::Number(n), Value::String(x)) => {
            x == &n.to_string()
        }
        (Value::String(x), Value::Bool(t)) | (Value::Bool(t), Value::String(x)) => {
            x == &t.to_string()
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

impl Job {
    pub fn step(&self, n: i64) -> Option<&Step> {
        usize::try_from(n).ok().and_then(|n| self.steps.get(n))
    }

    pub fn effective_window(&self, default: SendWindow) -> SendWindow {
        self.send_window.unwrap_or(default)
    }
}

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
pub struct CompileEnv<'a> {
    pub templates: &'a TemplateSet,
    pub known_events: &'a [String],
    /// All job ids, for `exclude_if_sent`.
    pub job_ids: &'a [String],
    /// The config's SMS gateways; `None` without an `sms:` section.
    pub sms: Option<&'a SmsConfig>,
}

/// Compile one job document. The job is `None` when any error was found.
pub fn compile(path: &Path, doc: Document<RawJob>, env: &CompileEnv) -> (Option<Job>, Diagnostics) {
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

/// The job's `sms:` keys, checked against the config's gateways and the job's templates.
fn sms_settings(
    c: &mut Checker,
    raw: Option<&RawJobSms>,
    uses_sms: bool,
    class: Class,
    templates: &[String],
    env: &CompileEnv,
) -> SmsSettings {
    if !uses_sms {
        if raw.is_some() {
            c.warn(
                "sms",
                "SMS settings, but `channels` does not list sms: they are unused",
                Some("add sms to channels, e.g. channels: [sms, email]".into()),
            );
        }
        return SmsSettings::default();
    }
    // Without gateways, `channels` has said so already.
    let Some(cfg) = env.sms.filter(|s| !s.gateways.is_empty()) else {
        return SmsSettings::default();
    };
    let empty = RawJobSms {
        gateways: None,
        template_codes: BTreeMap::new(),
        max_segments: None,
    };
    let raw = raw.unwrap_or(&empty);
    // The route.
    let route = raw.gateways.clone().unwrap_or_default();
    if raw.gateways.as_ref().is_some_and(Vec::is_empty) {
        c.err(
            "sms.gateways",
            "no gateway",
            Some(format!(
                "name at least one, or leave gateways out for the config's route ({})",
                cfg.route.join(", ")
            )),
        );
    }
    cfg.check_route(c, "sms.gateways", &route);
    for (i, g) in route.iter().enumerate() {
        if route[..i].contains(g) {
            c.err(
                &format!("sms.gateways[{i}]"),
                format!("`{g}` is listed twice"),
                None,
            );
        }
    }
    let effective: Vec<&str> = if route.is_empty() {
        cfg.route.iter().map(String::as_str).collect()
    } else {
        route.iter().map(String::as_str).collect()
    };
    let kind = |g: &str| cfg.gateway(g).map(|g| g.settings.kind());
    // Provider template codes.
    for (tpl, code) in &raw.template_codes {
        let field = format!("sms.template_codes.{tpl}");
        if !templates.iter().any(|t| t == tpl) {
            let hint = did_you_mean(tpl, templates.iter().map(String::as_str))
                .unwrap_or_else(|| format!("this job's templates: {}", templates.join(", ")));
            // At the key: it is the name that is wrong.
            c.err_at_key(
                &field,
                format!("`{tpl}` is not a template of this job"),
                Some(hint),
            );
        }
        if code.trim().is_empty() {
            c.err(
                &field,
                "empty template code",
                Some("the code of the template your provider approved, e.g. SMS_123456789".into()),
            );
        }
    }
    let template_only: Vec<&str> = effective
        .iter()
        .copied()
        .filter(|g| kind(g) == Some("aliyun"))
        .collect();
    if !template_only.is_empty() {
        for tpl in templates
            .iter()
            .filter(|t| !raw.template_codes.contains_key(*t))
        {
            let hint = Some(format!(
                "map it to the code your provider approved: sms: {{template_codes: {{{tpl}: SMS_123456789}}}}"
            ));
            let field = if c.has("sms.template_codes") {
                "sms.template_codes"
            } else {
                "channels"
            };
            if template_only.len() == effective.len() {
                c.err(
                    field,
                    format!(
                        "no template code for `{tpl}`, and {} send(s) approved templates only",
                        template_only.join(", ")
                    ),
                    hint,
                );
            } else {
                c.warn(
                    field,
                    format!(
                        "no template code for `{tpl}`: {} will be passed over for it",
                        template_only.join(", ")
                    ),
                    hint,
                );
            }
        }
    }
    // Length.
    let max_segments = raw.max_segments.map(|m| m as usize);
    if max_segments == Some(0) {
        c.err(
            "sms.max_segments",
            "must be at least 1",
            Some("one segment is 160 GSM-7 characters or 70 UCS-2 (Chinese) ones".into()),
        );
    }
    let sms_files: Vec<&crate::templates::TemplateFile> = templates
        .iter()
        .flat_map(|t| env.templates.files(t))
        .filter(|f| f.kind == "sms")
        .collect();
    if let Some(max) = max_segments.filter(|m| *m > 0) {
        for f in &sms_files {
            let file = crate::diag::display_path(&f.path);
            let fixed = segments(f.static_text.trim());
            if fixed.segments > max {
                c.warn(
                    "sms.max_segments",
                    format!(
                        "{file} is {} before any value is filled in, more than max_segments {max}: its messages will be refused on SMS",
                        fixed
                    ),
                    Some("shorten the text, or raise max_segments".into()),
                );
            } else if f.has_expressions && fixed.encoding == crate::channels::sms::Encoding::Gsm7 {
                // One character outside GSM-7 in a value (a Chinese name, an emoji) makes the
                // whole text UCS-2, 70 characters a segment instead of 160.
                let wide = segments(&format!("{}好", f.static_text.trim()));
                if wide.segments > max {
                    c.warn(
                        "sms.max_segments",
                        format!(
                            "{file} can exceed max_segments {max}: a value outside GSM-7 (a Chinese name, an emoji) makes the text UCS-2, and the fixed text alone is then {} segments",
                            wide.segments
                        ),
                        Some("shorten the text, or raise max_segments".into()),
                    );
                }
            }
        }
    }
    // Marketing SMS say how to opt out (China's rules for marketing SMS, and Twilio's).
    if class == Class::Marketing {
        for f in &sms_files {
            let upper = f.static_text.to_uppercase();
            if !SMS_OPT_OUT_WORDS.iter().any(|w| upper.contains(w))
                && !f.uses_path("unsubscribe.url")
            {
                let d = Diagnostic::warning(
                    &f.path,
                    None,
                    "a marketing SMS that does not say how to opt out",
                )
                .with_hint("end it with e.g. 回T退订 or \"Reply STOP to opt out\": such replies put the number on the suppression list");
                c.push(d);
            }
        }
    }
    SmsSettings {
        route,
        template_codes: raw.template_codes.clone(),
        max_segments: max_segments.filter(|m| *m > 0),
    }
}

fn trigger(c: &mut Checker, t: &RawTrigger) -> Option<Trigger> {
    let kinds = [t.event.is_some(), t.anniversary.is_some(), t.cron.is_some()]
        .iter()
        .filter(|k| **k)
        .count();
    if kinds != 1 {
        let msg = if kinds == 0 {
            "no trigger kind"
        } else {
            "more than one trigger kind"
        };
        c.err(
            "trigger",
            msg,
            Some(
                "give exactly one of event (+ delay), anniversary (+ at) or cron (+ timezone)"
                    .into(),
            ),
        );
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

fn audience(
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
        let any_of = match serde_json::to_value(v) {
            Ok(Value::Array(list)) => list,
            Ok(Value::Object(_)) | Err(_) => {
                c.err(
                    &field,
                    "a condition is a value or a list of values",
                    Some("e.g. tier: gold, or tier: [gold, platinum]".into()),
                );
                continue;
            }
            Ok(one) => vec![one],
        };
        conditions.push(Condition {
            path: path.clone(),
            any_of,
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_match_loosely_typed_values() {
        let ctx = json!({"contact": {"attributes": {"tier": "gold", "visits": 5, "vip": true}, "locale": null}});
        let cond = |path: &str, v: Value| Condition {
            path: path.into(),
            any_of: vec![v],
        };
        assert!(cond("contact.attributes.tier", json!("gold")).holds(&ctx));
        assert!(!cond("contact.attributes.tier", json!("silver")).holds(&ctx));
        assert!(cond("contact.attributes.visits", json!("5")).holds(&ctx));
        assert!(cond("contact.attributes.vip", json!(true)).holds(&ctx));
        assert!(cond("contact.locale", Value::Null).holds(&ctx));
        assert!(!cond("contact.attributes.missing", json!("x")).holds(&ctx));
        let any = Condition {
            path: "contact.attributes.tier".into(),
            any_of: vec![json!("silver"), json!("gold")],
        };
        assert!(any.holds(&ctx));
    }
}
