//! Raw job YAML, exactly as written. Nothing here is checked beyond its shape; see
//! `compile` for the meaning. The rest of the program never sees these types.

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub id: String,
    pub description: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub trigger: RawTrigger,
    pub template: String,
    pub channels: Option<Vec<String>>,
    pub dedupe: Option<String>,
    #[serde(default)]
    pub reminders: Vec<RawReminder>,
    pub stop_when: Option<RawStopWhen>,
    pub expire_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    pub event: Option<String>,
    pub delay: Option<String>,
    pub anniversary: Option<String>,
    pub at: Option<String>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReminder {
    pub after: String,
    pub template: Option<String>,
}

/// `stop_when: review.submitted` or `stop_when: {event: review.submitted, match: [order_id]}`.
#[derive(Debug)]
pub struct RawStopWhen {
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
