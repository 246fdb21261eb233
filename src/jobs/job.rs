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

impl Job {
    pub fn step(&self, n: i64) -> Option<&Step> {
        usize::try_from(n).ok().and_then(|n| self.steps.get(n))
    }

    pub fn effective_window(&self, default: SendWindow) -> SendWindow {
        self.send_window.unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
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
