//! The keys of a job about what comes back: `stop_when` (one event or a list), the `goal`
//! that reports count as a conversion and its `goal_window`, `survey` (the scale of the
//! question its messages ask), and the experiment (`variants`, `holdout`).

use super::job::*;
use super::spec::{CompileEnv, RawJob, RawStopList, RawStopWhen};
use crate::check::Checker;
use crate::diag::did_you_mean;
use crate::ingest::check_event_type;

/// `stop_when` (or `goal`) as written: one entry or a list. Field paths of a single entry
/// are `stop_when` / `stop_when.event`; of a list, `stop_when[i]` / `stop_when[i].event`.
pub(super) fn stop_list(
    c: &mut Checker,
    key: &str,
    list: &RawStopList,
    known_events: &[String],
) -> Vec<StopWhen> {
    let single = !c.has(&format!("{key}[0]"));
    list.0
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = if single {
                key.to_string()
            } else {
                format!("{key}[{i}]")
            };
            stop_when(c, &at, s, known_events)
        })
        .collect()
}

fn stop_when(c: &mut Checker, at: &str, s: &RawStopWhen, known_events: &[String]) -> StopWhen {
    let event_at = format!("{at}.event");
    let field = if c.has(&event_at) {
        event_at.as_str()
    } else {
        at
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
                &format!("{at}.match[{i}]"),
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

/// The goal: `goal:` when given, else the first `stop_when` (for a review request, the
/// review); its window (`goal_window`, default 7d).
pub(super) fn goal(
    c: &mut Checker,
    raw: &RawJob,
    stops: &[StopWhen],
    known_events: &[String],
) -> Goal {
    let events = match &raw.goal {
        Some(g) => stop_list(c, "goal", g, known_events),
        None => stops.first().cloned().into_iter().collect(),
    };
    let window = match &raw.goal_window {
        None => DEFAULT_GOAL_WINDOW,
        Some(w) => match c.duration("goal_window", w) {
            Some(d) if d.is_zero() => {
                c.err(
                    "goal_window",
                    "must be longer than 0s",
                    Some("e.g. goal_window: 7d".into()),
                );
                DEFAULT_GOAL_WINDOW
            }
            Some(d) => d,
            None => DEFAULT_GOAL_WINDOW,
        },
    };
    if raw.goal_window.is_some() && events.is_empty() {
        c.warn(
            "goal_window",
            "the job has no goal (no `goal` and no `stop_when`): nothing will count as converted",
            Some("add goal: <event type>, e.g. goal: review.submitted".into()),
        );
    }
    Goal { events, window }
}

pub(super) fn survey(c: &mut Checker, raw: &RawJob) -> Option<Survey> {
    let s = raw.survey.as_ref()?;
    let scale_at = if c.has("survey.scale") {
        "survey.scale"
    } else {
        "survey"
    };
    let Some(scale) = Scale::parse(&s.scale) else {
        let hint = did_you_mean(&s.scale, ["nps", "csat"]).unwrap_or_else(|| {
            "nps (0–10, would you recommend us) or csat (1–5, how satisfied)".into()
        });
        c.err(
            scale_at,
            format!("unknown survey scale `{}`", s.scale),
            Some(hint),
        );
        return None;
    };
    let window = match &s.window {
        Some(w) => c.duration("survey.window", w)?,
        None => DEFAULT_ANSWER_WINDOW,
    };
    if window.is_zero() {
        c.err(
            "survey.window",
            "must be longer than 0s",
            Some("e.g. window: 7d".into()),
        );
    }
    Some(Survey { scale, window })
}

/// `variants` and `holdout`. Variant templates must exist (the caller checks their files and
/// variables like any step's).
pub(super) fn experiment(c: &mut Checker, raw: &RawJob, env: &CompileEnv) -> Experiment {
    let mut variants: Vec<Variant> = Vec::new();
    for (i, v) in raw.variants.iter().flatten().enumerate() {
        let at = format!("variants[{i}]");
        let name_ok = !v.name.is_empty()
            && v.name.len() <= 32
            && v.name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_');
        if !name_ok {
            c.err(
                &format!("{at}.name"),
                format!("`{}` is not a variant name", v.name),
                Some("lowercase letters, digits, - and _ (at most 32), e.g. short".into()),
            );
        } else if variants.iter().any(|o| o.name == v.name) {
            c.err(
                &format!("{at}.name"),
                format!("variant `{}` is listed twice", v.name),
                None,
            );
        }
        if v.weight == Some(0) {
            c.err(
                &format!("{at}.weight"),
                "a weight of 0 sends this variant to nobody",
                Some("remove the variant, or give it a weight above 0".into()),
            );
        }
        if !env.templates.has(&v.template) {
            let hint = did_you_mean(&v.template, env.templates.names())
                .unwrap_or_else(|| "a folder in message_templates".into());
            c.err(
                &format!("{at}.template"),
                format!("unknown template `{}`", v.template),
                Some(hint),
            );
        }
        variants.push(Variant {
            name: v.name.clone(),
            template: v.template.clone(),
            weight: v.weight.unwrap_or(1),
        });
    }
    if variants.len() == 1 {
        c.warn(
            "variants",
            "one variant: every contact gets it; an experiment needs two or more",
            None,
        );
    }
    let holdout_bp = match &raw.holdout {
        None => 0,
        Some(v) => holdout(c, v).unwrap_or(0),
    };
    Experiment {
        variants,
        holdout_bp,
    }
}

/// `10%`, `2.5%` (or a bare number of percent) → basis points, above 0 and below 100%.
fn holdout(c: &mut Checker, v: &serde_yaml::Value) -> Option<u32> {
    let text = match v {
        serde_yaml::Value::String(s) => s.trim().trim_end_matches('%').trim().to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let pct: Option<f64> = text.parse().ok().filter(|p: &f64| p.is_finite());
    match pct {
        Some(p) if p > 0.0 && p < 100.0 && (p * 100.0).fract() == 0.0 => Some((p * 100.0) as u32),
        _ => {
            c.err(
                "holdout",
                "a holdout is a share of contacts above 0% and below 100%, to two decimals",
                Some("e.g. holdout: 10%".into()),
            );
            None
        }
    }
}
