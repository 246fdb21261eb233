//! Raw job YAML, exactly as written. Nothing here is checked beyond its shape; see
//! `compile` for the meaning. The rest of the program never sees these types.

use crate::policy::LeapDay;
pub(super) use crate::policy::settings::RawWindow;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub id: String,
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub trigger: RawTrigger,
    /// Required unless the only channel is `webhook`.
    pub template: Option<String>,
    pub channels: Option<Vec<String>>,
    pub class: Option<Class>,
    pub dedupe: Option<String>,
    #[serde(default)]
    pub reminders: Vec<RawReminder>,
    pub stop_when: Option<RawStopWhen>,
    pub expire_after: Option<String>,
    pub send_window: Option<RawWindow>,
    pub over_cap: Option<OverCap>,
    pub audience: Option<RawAudience>,
    pub sms: Option<RawJobSms>,
}

/// How the job's messages go by SMS (when `channels` lists `sms`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJobSms {
    /// Gateway names in order of preference; default: the config's `sms.route`.
    pub gateways: Option<Vec<String>>,
    /// Template set name → the provider's approved template code (Aliyun's `TemplateCode`).
    #[serde(default)]
    pub template_codes: BTreeMap<String, String>,
    /// Refuse a text longer than this many segments.
    pub max_segments: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrigger {
    pub event: Option<String>,
    pub delay: Option<String>,
    pub anniversary: Option<String>,
    pub at: Option<String>,
    pub leap_day: Option<LeapDay>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub missed: Option<Missed>,
}

/// Who a job is for, beyond its trigger.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudience {
    pub had_event: Option<String>,
    pub within: Option<String>,
    /// `contact.attributes.tier: gold`, or a list of accepted values.
    #[serde(rename = "where", default)]
    pub conditions: BTreeMap<String, serde_yaml::Value>,
    pub exclude_if_sent: Option<RawExclude>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExclude {
    pub job: String,
    pub within: String,
}

pub use crate::model::Class;

/// What to do with a message over the frequency cap.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OverCap {
    #[default]
    Defer,
    Drop,
}

/// A recurring job whose occurrence passed while the daemon was down.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Fire once for the latest missed occurrence.
    #[default]
    RunOnce,
    /// Wait for the next occurrence.
    Skip,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReminder {
    pub after: String,
    pub template: Option<String>,
}

/// `stop_when: review.submitted` or `stop_when: {event: review.submitted, match: [order_id]}`.
#[derive(Debug)]
pub(super) struct RawStopWhen {
    pub event: String,
    pub match_fields: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopWhenMap {
    event: String,
    #[serde(default, rename = "match")]
    match_fields: Vec<String>,
}

impl<'de> Deserialize<'de> for RawStopWhen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawStopWhen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event type (review.submitted) or {event: ..., match: [...]}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStopWhen, E> {
                Ok(RawStopWhen {
                    event: v.to_string(),
                    match_fields: vec![],
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawStopWhen, A::Error> {
                let m = StopWhenMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawStopWhen {
                    event: m.event,
                    match_fields: m.match_fields,
                })
            }
        }
        d.deserialize_any(V)
    }
}
