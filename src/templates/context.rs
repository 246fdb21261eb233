//! The render context every template sees (`contact`, `event`, `job`, `message`,
//! `unsubscribe`) and our helpers (`date`, `datetime` in the contact's zone and locale).

use crate::model::{Contact, Event};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    ScopedJson,
};
use serde_json::{Map, Value, json};

/// Helpers of our own, beside handlebars' built-ins.
pub(super) const OUR_HELPERS: &[&str] = &["date", "datetime", "default"];

/// Facts about the message being rendered (`message.*`).
pub struct MessageInfo<'a> {
    pub id: &'a str,
    pub step: i64,
    pub send_at: DateTime<Utc>,
    pub locale: &'a str,
    pub timezone: Tz,
    pub token: Option<&'a str>,
    /// One-click unsubscribe link and mailto for this contact, when configured.
    pub unsubscribe: Option<(&'a str, Option<&'a str>)>,
    /// For a survey job's message: the answer page's link and the scale's scores.
    pub survey: Option<SurveyInfo<'a>>,
}

/// `survey.*`: the answer page of this message (`None` without `api.public_url`), the scale,
/// and one link per score (`?score=N` pre-selects it on the page; nothing is recorded until
/// the customer submits).
pub struct SurveyInfo<'a> {
    pub url: Option<String>,
    pub scale: &'a str,
    pub scores: std::ops::RangeInclusive<i64>,
}

/// The render context: every schema field present (null when unknown), so strict mode only
/// fails on paths that cannot exist for this message (a missing `event.data` key).
pub fn context(
    contact: &Contact,
    event: Option<&Event>,
    job_id: &str,
    job_description: &str,
    msg: &MessageInfo,
) -> Value {
    let mut root = Map::new();
    root.insert(
        "contact".into(),
        json!({
            "id": contact.id, "name": contact.name, "email": contact.email, "phone": contact.phone,
            "locale": contact.locale, "timezone": contact.timezone, "birthday": contact.birthday,
            "attributes": contact.attributes, "consent": contact.consent,
        }),
    );
    if let Some(e) = event {
        root.insert(
            "event".into(),
            json!({"id": e.id, "type": e.kind, "occurred_at": e.occurred_at.to_rfc3339(), "data": e.data}),
        );
    }
    root.insert(
        "job".into(),
        json!({"id": job_id, "description": job_description}),
    );
    root.insert(
        "message".into(),
        json!({
            "id": msg.id, "step": msg.step, "send_at": msg.send_at.with_timezone(&msg.timezone).to_rfc3339(),
            "locale": msg.locale, "timezone": msg.timezone.name(), "token": msg.token,
        }),
    );
    let (url, mailto) = msg.unsubscribe.unzip();
    root.insert(
        "unsubscribe".into(),
        json!({"url": url, "mailto": mailto.flatten()}),
    );
    if let Some(sv) = &msg.survey {
        let links: Vec<Value> = sv
            .scores
            .clone()
            .map(|n| json!({"score": n, "url": sv.url.as_ref().map(|u| format!("{u}?score={n}"))}))
            .collect();
        root.insert(
            "survey".into(),
            json!({"url": sv.url, "scale": sv.scale, "links": links}),
        );
    }
    Value::Object(root)
}

pub(super) fn ctx_tz_locale(ctx: &Context) -> (Tz, &str) {
    let m = &ctx.data()["message"];
    let tz = m["timezone"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Tz::UTC);
    (tz, m["locale"].as_str().unwrap_or("en"))
}

pub(super) fn default_format(locale: &str, with_time: bool) -> &'static str {
    let lang = locale.split('-').next().unwrap_or("");
    let lang = ["zh", "ja", "en"]
        .into_iter()
        .find(|l| lang.eq_ignore_ascii_case(l))
        .unwrap_or("");
    match (lang, with_time) {
        ("zh" | "ja", false) => "%Y年%-m月%-d日",
        ("zh" | "ja", true) => "%Y年%-m月%-d日 %H:%M",
        ("en", false) => "%B %-d, %Y",
        ("en", true) => "%B %-d, %Y %H:%M",
        (_, false) => "%Y-%m-%d",
        (_, true) => "%Y-%m-%d %H:%M",
    }
}

pub(super) fn format_when(
    h: &Helper,
    ctx: &Context,
    with_time: bool,
) -> Result<String, RenderError> {
    let name = if with_time { "datetime" } else { "date" };
    let value = h.param(0).ok_or(RenderErrorReason::ParamNotFoundForIndex(
        if with_time { "datetime" } else { "date" },
        0,
    ))?;
    let (tz, locale) = ctx_tz_locale(ctx);
    let fmt: &str = match h.param(1).map(|p| p.value()) {
        Some(Value::String(f)) => f,
        Some(_) => {
            return Err(RenderErrorReason::Other(format!(
                "{name}: the format must be a string such as \"%Y-%m-%d\""
            ))
            .into());
        }
        None => default_format(locale, with_time),
    };
    Ok(match value.value() {
        Value::Null => String::new(),
        Value::String(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                let local = t.with_timezone(&tz);
                // The wall-clock time writes the same as the zoned one for every specifier
                // but the zone's (`%z`, `%Z`, `%+`) and the timestamp (`%s`), without naming
                // the zone's offset first as chrono's zoned format does on every call.
                if fmt.contains(['z', 'Z', '+', 's']) {
                    written(name, fmt, local.format(fmt))?
                } else {
                    written(name, fmt, local.naive_local().format(fmt))?
                }
            } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                written(name, fmt, d.format(fmt))?
            } else {
                return Err(RenderErrorReason::Other(format!(
                    "{name}: `{s}` is not a date or RFC 3339 time"
                ))
                .into());
            }
        }
        other => {
            return Err(
                RenderErrorReason::Other(format!("{name}: expected a date, got {other}")).into(),
            );
        }
    })
}

/// A formatted date as text, or a render error. chrono's formatting fails on a specifier
/// it does not know (`%Q`) or one the value lacks (`%H` of a date without a time, which
/// `{{datetime}}` of a date-only field asks for), and `to_string()` would panic on that.
fn written(
    name: &str,
    fmt: &str,
    formatted: impl std::fmt::Display,
) -> Result<String, RenderError> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{formatted}").map_err(|_| {
        RenderError::from(RenderErrorReason::Other(format!(
            "{name}: the value cannot be written as \"{fmt}\" (an unknown % specifier, or a time of day asked of a date)"
        )))
    })?;
    Ok(out)
}

/// Our helpers return values rather than writing output, so the engine escapes them in
/// HTML (`{{default contact.name "x"}}` must not inject markup) and `{{{ }}}` still works.
#[derive(Clone, Copy)]
pub(super) enum OurHelper {
    Date,
    DateTime,
    /// `{{default contact.name "customer"}}`: the first argument that is not null or empty.
    Default,
}

impl HelperDef for OurHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let text = match self {
            OurHelper::Date => format_when(h, ctx, false)?,
            OurHelper::DateTime => format_when(h, ctx, true)?,
            OurHelper::Default => {
                let v = h.params().iter().map(|p| p.value()).find(|v| match v {
                    Value::Null => false,
                    Value::String(s) => !s.is_empty(),
                    _ => true,
                });
                return Ok(ScopedJson::Derived(v.cloned().unwrap_or(Value::Null)));
            }
        };
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use chrono_tz::Tz;

    /// `format_when` writes the wall-clock time for a pattern without `z`, `Z`, `+` or `s`:
    /// every other specifier must write it as the zoned time does.
    #[test]
    fn a_pattern_without_the_zone_writes_the_wall_clock_as_the_zoned_time() {
        let patterns = [
            "%Y年%-m月%-d日 %H:%M",
            "%B %-d, %Y %H:%M",
            "%Y-%m-%d",
            "%c",
            "%D %x %X %r %T %R",
            "%F %j %U %W %G %g %V %u %w",
            "%e %k %l %I %p %P %M %S %f %.3f %.6f %3f",
            "%a %A %b %h %C %y %q %t%n%%",
            "%-d %_d %0d %-H %_H",
        ];
        let zones: [Tz; 4] = [
            Tz::UTC,
            Tz::Asia__Shanghai,
            Tz::America__New_York,
            Tz::Asia__Kolkata,
        ];
        let times = [
            "2026-11-20T23:30:05.123456Z",
            "2026-03-08T07:15:00Z",
            "1999-12-31T23:59:59Z",
        ];
        for p in patterns {
            assert!(!p.contains(['z', 'Z', '+', 's']), "{p}");
            for tz in zones {
                for t in times {
                    let local = t.parse::<DateTime<Utc>>().unwrap().with_timezone(&tz);
                    assert_eq!(
                        local.naive_local().format(p).to_string(),
                        local.format(p).to_string(),
                        "{p} in {tz} at {t}"
                    );
                }
            }
        }
    }
}
