//! A compiled job: what the rest of the program sees of a campaign (never its raw YAML).

use super::spec::{Class, Missed, OverCap};
use crate::model::Channel;
use crate::policy::{LeapDay, SendWindow};
use chrono::NaiveTime;
use chrono_tz::Tz;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// Pending messages stop when any of these arrives (`stop_when`, one or a list).
    pub stop_when: Vec<StopWhen>,
    /// What counts as a conversion in reports, and for how long after a send.
    pub goal: Goal,
    /// The job's messages ask a survey question (`{{survey.url}}`, the answer page).
    pub survey: Option<Survey>,
    /// Variants of the first message and a holdout group.
    pub experiment: Experiment,
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

pub use super::condition::{Bound, Check, Condition, Op};

/// YAML `gold` matches JSON "gold"; YAML `5` matches JSON 5 or "5".
pub(super) fn loosely_equal(a: &Value, b: &Value) -> bool {
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

/// The event that counts as the job's success in `report conversions`, and the time after a
/// send within which it counts for that send.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    /// Any of these (with their `match` fields); empty: the job has no goal.
    pub events: Vec<StopWhen>,
    pub window: Duration,
}

impl Default for Goal {
    fn default() -> Goal {
        Goal {
            events: Vec::new(),
            window: DEFAULT_GOAL_WINDOW,
        }
    }
}

pub const DEFAULT_GOAL_WINDOW: Duration = Duration::from_secs(7 * 86_400);
pub const DEFAULT_ANSWER_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// The question a survey job asks: on which scale, answered until when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Survey {
    pub scale: Scale,
    /// Answers are taken (and may be changed) this long after the message was sent.
    pub window: Duration,
}

/// NPS ("how likely are you to recommend us", 0–10) or CSAT ("how satisfied", 1–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Nps,
    Csat,
}

impl Scale {
    pub fn as_str(self) -> &'static str {
        match self {
            Scale::Nps => "nps",
            Scale::Csat => "csat",
        }
    }

    pub fn parse(s: &str) -> Option<Scale> {
        match s {
            "nps" => Some(Scale::Nps),
            "csat" => Some(Scale::Csat),
            _ => None,
        }
    }

    /// The lowest and highest score.
    pub fn range(self) -> (i64, i64) {
        match self {
            Scale::Nps => (0, 10),
            Scale::Csat => (1, 5),
        }
    }

    pub fn contains(self, score: i64) -> bool {
        let (lo, hi) = self.range();
        (lo..=hi).contains(&score)
    }
}

/// One arm of an A/B test: its first message uses `template`.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub template: String,
    pub weight: u32,
}

/// A job's experiment: variants of its first message and a holdout share, assigned per
/// contact by a hash of (job, contact), so every node and every restart agrees.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Experiment {
    pub variants: Vec<Variant>,
    /// Held-out share in basis points (1000 = 10%).
    pub holdout_bp: u32,
}

impl Experiment {
    pub fn is_active(&self) -> bool {
        !self.variants.is_empty() || self.holdout_bp > 0
    }

    /// Whether the contact is in the job's holdout. Asked when a first message would go,
    /// after every check a send passes (see `dispatch::gate`), so the holdout and the
    /// messaged are the same kind of contact, counted at the same moment.
    pub fn held_out(&self, job_id: &str, contact_id: &str) -> bool {
        self.holdout_bp > 0 && draw(job_id, contact_id)[0] % 10_000 < u64::from(self.holdout_bp)
    }

    /// The contact's variant, by weight: asked when the first message is planned (its
    /// template is the variant's). Drawn on other bits of the hash than the holdout, so the
    /// two are independent: a held-out contact has a variant it never gets.
    pub fn variant(&self, job_id: &str, contact_id: &str) -> Option<&Variant> {
        let total: u64 = self.variants.iter().map(|v| u64::from(v.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut pick = draw(job_id, contact_id)[1] % total;
        for v in &self.variants {
            let w = u64::from(v.weight);
            if pick < w {
                return Some(v);
            }
            pick -= w;
        }
        None
    }

    /// `10%`, `2.5%`: the holdout as written.
    pub fn holdout_text(&self) -> String {
        let whole = self.holdout_bp / 100;
        match self.holdout_bp % 100 {
            0 => format!("{whole}%"),
            frac => format!("{}%", f64::from(whole) + f64::from(frac) / 100.0),
        }
    }
}

/// Two words of SHA-256 over (job id, contact id): a contact's arms are a pure function of
/// the two, the same on every node, after every restart, for every message of the job.
fn draw(job_id: &str, contact_id: &str) -> [u64; 2] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"aftercare-experiment\0");
    h.update(job_id.as_bytes());
    h.update(b"\0");
    h.update(contact_id.as_bytes());
    let d = h.finalize();
    let word = |i: usize| {
        let mut b = [0u8; 8];
        for (k, byte) in b.iter_mut().enumerate() {
            *byte = d.get(i * 8 + k).copied().unwrap_or(0);
        }
        u64::from_be_bytes(b)
    };
    [word(0), word(1)]
}

impl Job {
    /// When a callback task for an event at `occurred` is due: its delay counts the agents'
    /// working hours when the job gives a `send_window` (business time in `tz`, the default
    /// zone): "due within one business hour". Planning and the task the CRM receives ask
    /// this, so they say the same time.
    pub fn task_due(
        &self,
        occurred: chrono::DateTime<chrono::Utc>,
        delay: Duration,
        tz: Tz,
    ) -> chrono::DateTime<chrono::Utc> {
        match self.send_window {
            Some(w) => w.add_open_time(occurred, delay, tz),
            None => occurred + delay,
        }
    }

    /// Every template the job sends, each once, with the step it is first sent at: the
    /// steps', then the other variants' of the first message (a variant replaces step 0's).
    /// What the console previews.
    pub fn templates(&self) -> Vec<(i64, &str)> {
        templates_sent(&self.steps, &self.experiment)
    }

    pub fn step(&self, n: i64) -> Option<&Step> {
        usize::try_from(n).ok().and_then(|n| self.steps.get(n))
    }

    pub fn effective_window(&self, default: SendWindow) -> SendWindow {
        self.send_window.unwrap_or(default)
    }
}

fn templates_sent<'j>(steps: &'j [Step], experiment: &'j Experiment) -> Vec<(i64, &'j str)> {
    let steps = (0i64..).zip(steps.iter().map(|s| s.template.as_str()));
    let variants = experiment.variants.iter().map(|v| (0, v.template.as_str()));
    let mut out: Vec<(i64, &str)> = Vec::new();
    for (step, name) in steps.chain(variants) {
        if !out.iter().any(|(_, t)| *t == name) {
            out.push((step, name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_sent_are_the_steps_and_the_variants_each_once() {
        let step = |t: &str| Step {
            template: t.into(),
            after: Duration::ZERO,
        };
        let variant = |t: &str| Variant {
            name: t.into(),
            template: t.into(),
            weight: 50,
        };
        let steps = [step("request"), step("reminder"), step("reminder")];
        let e = Experiment {
            variants: vec![variant("request"), variant("request_short")],
            holdout_bp: 0,
        };
        assert_eq!(
            templates_sent(&steps, &e),
            [(0, "request"), (1, "reminder"), (0, "request_short")]
        );
        assert_eq!(
            templates_sent(&steps, &Experiment::default()),
            [(0, "request"), (1, "reminder")]
        );
    }

    #[test]
    fn assignment_is_stable_and_follows_the_weights() {
        let e = Experiment {
            variants: vec![
                Variant {
                    name: "a".into(),
                    template: "t1".into(),
                    weight: 50,
                },
                Variant {
                    name: "b".into(),
                    template: "t2".into(),
                    weight: 50,
                },
            ],
            holdout_bp: 1000,
        };
        let mut counts = (0, 0, 0);
        for i in 0..10_000 {
            let c = format!("c-{i}");
            let held = e.held_out("review-request", &c);
            let v = e.variant("review-request", &c);
            assert_eq!(held, e.held_out("review-request", &c), "stable");
            assert_eq!(v, e.variant("review-request", &c), "stable");
            match (held, v) {
                (true, _) => counts.0 += 1,
                (false, Some(v)) if v.name == "a" => counts.1 += 1,
                (false, Some(_)) => counts.2 += 1,
                (false, None) => panic!("an experiment with variants always assigns one"),
            }
        }
        assert!((900..1100).contains(&counts.0), "{counts:?}");
        assert!((4_000..4_600).contains(&counts.1), "{counts:?}");
        assert!((4_000..4_600).contains(&counts.2), "{counts:?}");
        // Another job draws its own arms.
        let differs = (0..100)
            .filter(|i| {
                let c = format!("c-{i}");
                e.variant("a", &c) != e.variant("b", &c)
            })
            .count();
        assert!(differs > 20, "{differs}");
        assert_eq!(Experiment::default().variant("j", "c"), None);
        assert!(!Experiment::default().held_out("j", "c"));
        assert_eq!(e.holdout_text(), "10%");
    }
}
