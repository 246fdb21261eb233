//! Raw job YAML, exactly as written, and [`CompileEnv`], what compiling a job needs besides
//! its document: the inputs of `compile`. Nothing here is checked beyond its shape; see
//! `compile` for the meaning. The rest of the program never sees these types.

use crate::channels::sms::SmsConfig;
use crate::policy::LeapDay;
pub(super) use crate::policy::settings::RawWindow;
use crate::templates::TemplateSet;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;

/// What compiling a job needs besides its document. Here, below `compile` and the checks it
/// calls (`outcome`, `sms`, `trigger`), so they take it without importing `compile` back.
pub(super) struct CompileEnv<'a> {
    pub templates: &'a TemplateSet,
    pub known_events: &'a [String],
    /// All job ids, for `exclude_if_sent`.
    pub job_ids: &'a [String],
    /// The config's SMS gateways; `None` without an `sms:` section.
    pub sms: Option<&'a SmsConfig>,
}

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
    pub stop_when: Option<RawStopList>,
    /// The event that counts as a conversion in reports (default: the first `stop_when`).
    pub goal: Option<RawStopList>,
    /// How long after a send a goal event counts for it (default 7d).
    pub goal_window: Option<String>,
    /// `nps` or `csat` (or `{scale, window}`): the job's messages ask a survey question.
    pub survey: Option<RawSurvey>,
    /// A/B test: the first message's template per arm, with weights.
    pub variants: Option<Vec<RawVariant>>,
    /// `10%`: contacts held out of the job (nothing sent), to measure its lift.
    pub holdout: Option<serde_yaml::Value>,
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

/// `survey: nps`, or `survey: {scale: csat, window: 14d}`.
#[derive(Debug)]
pub(super) struct RawSurvey {
    pub scale: String,
    /// How long after the send answers are taken (and may be changed); default 7d.
    pub window: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SurveyMap {
    scale: String,
    window: Option<String>,
}

impl<'de> Deserialize<'de> for RawSurvey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSurvey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("nps, csat, or {scale: nps, window: 7d}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSurvey, E> {
                Ok(RawSurvey {
                    scale: v.to_string(),
                    window: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSurvey, A::Error> {
                let m = SurveyMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawSurvey {
                    scale: m.scale,
                    window: m.window,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// One arm of an A/B test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVariant {
    pub name: String,
    pub template: String,
    /// Relative share of contacts (default 1).
    pub weight: Option<u32>,
}

/// `stop_when` (and `goal`): one event type or `{event, match}`, or a list of them.
#[derive(Debug, Default)]
pub(super) struct RawStopList(pub Vec<RawStopWhen>);

impl<'de> Deserialize<'de> for RawStopList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawStopList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event type, {event: ..., match: [...]}, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawStopList, E> {
                Ok(RawStopList(vec![RawStopWhen {
                    event: v.to_string(),
                    match_fields: vec![],
                }]))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawStopList, A::Error> {
                let m = StopWhenMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawStopList(vec![RawStopWhen {
                    event: m.event,
                    match_fields: m.match_fields,
                }]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawStopList, A::Error> {
                let mut out = Vec::new();
                while let Some(one) = seq.next_element::<RawStopWhen>()? {
                    out.push(one);
                }
                Ok(RawStopList(out))
            }
        }
        d.deserialize_any(V)
    }
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
