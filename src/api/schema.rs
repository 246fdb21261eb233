//! The OpenAPI document as the API really behaves: utoipa describes the routes and the
//! response types from the code, and this module writes what the derive cannot say (the
//! event body field by field, the query's ranges and enums, path patterns, every error
//! status with its JSON body), so a request the schema calls valid is one the API takes, and
//! one it calls invalid is refused with a 4xx. A schemathesis run against `/openapi.json`
//! (tests/openapi.rs) holds the two to that.
//!
//! The patterns here mirror the checks in `ingest`, `api::log` and `api::public`; a change to
//! one is a change to both.

use serde_json::{Value, json};

/// No NUL anywhere (the store cannot keep it; see `ingest`).
const NO_NUL: &str = r"^[^\x00]*$";

/// An id as `ingest::check_id` takes it: no control character (Rust's `char::is_control`,
/// Unicode's Cc) anywhere, and no white space (`str::trim`'s) at either end; so not empty.
const ID_BODY: &str = r"[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?";

fn id_pattern() -> String {
    format!("^{ID_BODY}$")
}

/// `data.order_id` as text: an id's rule, or empty (an empty order id is taken as it is).
fn order_id_pattern() -> String {
    format!("^({ID_BODY})?$")
}

/// A consent key `ingest` refuses: a channel's name in other letters or with white space
/// around it (`Email`, ` sms`; ASCII letters, white space as `str::trim`'s), which sending
/// would not read. Written without `(?i)`, which JSON Schema's regular expressions lack.
const CONSENT_MISSPELT: &str = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*([Ee][Mm][Aa][Ii][Ll]|[Ss][Mm][Ss]|[Ww][Ee][Bb][Hh][Oo][Oo][Kk])[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$";

/// An RFC 3339 time with an offset, written in the years 1970 to 2199 (the range `ingest`
/// takes), with a day that exists in its month.
fn event_time_pattern() -> String {
    let year = r"(19[7-9][0-9]|2[01][0-9]{2})";
    let leap =
        r"(19(7[26]|8[048]|9[26])|20([02468][048]|[13579][26])|21(0[48]|[2468][048]|[13579][26]))";
    let day = format!(
        r"({year}-(0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|{year}-(0[469]|11)-(0[1-9]|[12][0-9]|30)|{year}-02-(0[1-9]|1[0-9]|2[0-8])|{leap}-02-29)"
    );
    format!(
        r"^{day}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{{1,9}})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
    )
}

/// A cursor as `GET /v1/messages` hands it out: `<due_at in ms>~<message id>`.
pub(super) const CURSOR: &str = r"^[0-9]{1,15}~[0-9a-z]{1,64}$";

/// An unsubscribe token's shape: base64url, one part of at least
/// `unsubscribe::SEALED_MIN_LEN` characters (sealed) or two joined by a dot (the first
/// format).
pub(super) const TOKEN: &str = r"^([A-Za-z0-9_-]{42,}|[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$";

/// A message token (`{{message.token}}`, the survey link's last part): base64url.
pub(super) const SURVEY_TOKEN: &str = r"^[A-Za-z0-9_-]{1,64}$";

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}
    })
}

fn text(description: &str, media: &str) -> Value {
    json!({
        "description": description,
        "content": {media: {"schema": {"type": "string"}}}
    })
}

/// Any JSON value whose strings and keys hold no NUL, at any depth (a recursive schema:
/// `ingest` walks the whole value).
fn json_no_nul() -> Value {
    json!({"$ref": "#/components/schemas/JsonValue"})
}

fn json_value_schema() -> Value {
    json!({
        "description": "Any JSON value without a NUL character in its strings and keys",
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "number"},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": json_no_nul()},
            {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": json_no_nul()},
        ]
    })
}

fn schemas() -> Value {
    let id = json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": id_pattern()});
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
    let free = json_no_nul();
    json!({
        "JsonValue": json_value_schema(),
        "Event": {
            "type": "object",
            "description": "One event, checked as `events import` checks a line. Limits: ids and `data.order_id` at most 200 characters, `occurred_at` in 1970..2199, no NUL in any string or key.",
            "required": ["id", "type", "occurred_at", "contact"],
            "additionalProperties": false,
            "properties": {
                "id": id,
                "type": {"type": "string", "maxLength": 100, "pattern": r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$",
                         "description": "lowercase words joined by dots, e.g. order.delivered"},
                "occurred_at": {"type": "string", "pattern": event_time_pattern(),
                                "description": "RFC 3339 with an offset, e.g. 2026-11-20T10:00:00+08:00"},
                "contact": {"$ref": "#/components/schemas/Contact"},
                "data": {
                    "type": ["object", "null"],
                    "propertyNames": {"pattern": NO_NUL},
                    "properties": {
                        "order_id": {"anyOf": [
                            {"type": "string", "maxLength": 200, "pattern": order_id_pattern()},
                            {"type": ["number", "boolean", "null"]},
                            {"type": "array", "items": json_no_nul()},
                            {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": json_no_nul()},
                        ]}
                    },
                    "additionalProperties": free,
                }
            }
        },
        "Contact": {
            "type": "object",
            "description": "The contact; every field but `id` is optional and, when present, updates the stored contact.",
            "required": ["id"],
            "additionalProperties": false,
            "properties": {
                "id": id,
                "name": {"type": ["string", "null"], "pattern": NO_NUL},
                "email": {"type": ["string", "null"], "format": "email", "maxLength": 254,
                          "pattern": r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$"},
                "phone": {"type": ["string", "null"], "format": "phone",
                          "description": "an international number with its country code; numbers that do not exist for their country (libphonenumber) are refused"},
                "locale": {"type": ["string", "null"], "pattern": "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"},
                "timezone": {"type": ["string", "null"], "enum": zones.into_iter().map(Value::from).chain([Value::Null]).collect::<Vec<_>>()},
                "birthday": {"type": ["string", "null"], "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                "attributes": {"type": ["object", "null"], "propertyNames": {"pattern": NO_NUL}, "additionalProperties": json_no_nul()},
                "consent": {"type": ["object", "null"],
                            "propertyNames": {"pattern": NO_NUL, "anyOf": [
                                {"enum": ["email", "sms", "webhook"]},
                                {"not": {"pattern": CONSENT_MISSPELT}},
                            ]},
                            "additionalProperties": {"type": "boolean"},
                            "description": "`email` and `sms` are read by sending, exactly so spelled (`Email` is refused); other keys are the business's own"},
            }
        }
    })
}

/// The document: utoipa's, with what the derive cannot say written in.
pub(super) fn document(max_events: usize) -> Value {
    let mut doc = serde_json::to_value(super::openapi()).unwrap_or_else(|_| json!({}));
    if let Some(Value::Object(s)) = doc.pointer_mut("/components/schemas")
        && let Value::Object(more) = schemas()
    {
        s.extend(more);
    }
    if let Some(op) = doc.pointer_mut("/paths/~1v1~1events/post") {
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/Event"},
                {"type": "array", "items": {"$ref": "#/components/schemas/Event"}, "minItems": 1, "maxItems": max_events},
            ]}}}
        });
    }
    if let Some(Value::Array(params)) = doc.pointer_mut("/paths/~1v1~1messages/get/parameters") {
        for p in params.iter_mut() {
            let name = p["name"].as_str().unwrap_or_default().to_string();
            let states: Vec<&str> = crate::model::MessageState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect();
            let time = json!({"anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
            ]});
            let schema = match name.as_str() {
                "limit" => {
                    json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
                }
                "status" => {
                    p["style"] = json!("form");
                    p["explode"] = json!(false);
                    json!({"type": "array", "minItems": 1, "items": {"type": "string", "enum": states}})
                }
                "delivery" => {
                    json!({"type": "string", "enum": ["delivered", "undelivered", "unknown"]})
                }
                "since" | "until" => time,
                "cursor" => json!({"type": "string", "pattern": CURSOR}),
                _ => json!({"type": "string", "pattern": NO_NUL}),
            };
            p["schema"] = schema;
        }
    }
    // The reports' queries: the times as `/v1/messages` takes them, `by` per report.
    for (path, by) in [
        (
            "/paths/~1v1~1reports~1conversions/get/parameters",
            &["step", "variant", "channel", "locale", "week"][..],
        ),
        (
            "/paths/~1v1~1reports~1nps/get/parameters",
            &["week", "month", "locale", "tier"][..],
        ),
        (
            "/paths/~1v1~1reports~1csat/get/parameters",
            &["week", "month", "locale", "tier"][..],
        ),
        (
            "/paths/~1v1~1reports~1answers/get/parameters",
            &[
                "step", "variant", "channel", "locale", "week", "month", "tier",
            ][..],
        ),
    ] {
        if let Some(Value::Array(params)) = doc.pointer_mut(path) {
            for p in params.iter_mut() {
                let schema = match p["name"].as_str().unwrap_or_default() {
                    "job" => json!({"type": "string", "pattern": NO_NUL}),
                    "since" | "until" => json!({"anyOf": [
                        {"type": "string", "format": "date-time"},
                        {"type": "string", "format": "date"},
                    ]}),
                    "by" => json!({"type": "string", "enum": by}),
                    "limit" => {
                        json!({"type": "integer", "minimum": 1, "maximum": 100_000, "default": 1000})
                    }
                    "score_lte" => {
                        json!({"type": "integer", "minimum": -1_000_000, "maximum": 1_000_000})
                    }
                    _ => continue,
                };
                p["schema"] = schema;
            }
        }
    }
    // An erasure's reason: one line, as `api::contacts::erase` checks it.
    if let Some(Value::Array(params)) =
        doc.pointer_mut("/paths/~1v1~1contacts~1{id}/delete/parameters")
    {
        for p in params.iter_mut().filter(|p| p["name"] == "reason") {
            p["schema"] = json!({"type": "string", "maxLength": super::contacts::MAX_REASON_CHARS,
                                 "pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"});
        }
    }
    // `report daily` takes UTC days, not instants.
    if let Some(Value::Array(params)) =
        doc.pointer_mut("/paths/~1v1~1reports~1daily/get/parameters")
    {
        for p in params.iter_mut() {
            let schema = match p["name"].as_str().unwrap_or_default() {
                "job" => json!({"type": "string", "pattern": NO_NUL}),
                "since" | "until" => json!({"type": "string", "format": "date"}),
                _ => continue,
            };
            p["schema"] = schema;
        }
    }
    // Path parameters, and every error status with its body.
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        for (path, item) in paths.iter_mut() {
            let Value::Object(ops) = item else { continue };
            for (_, op) in ops.iter_mut() {
                if let Some(Value::Array(params)) = op.get_mut("parameters") {
                    for p in params.iter_mut().filter(|p| p["in"] == "path") {
                        let pattern = match p["name"].as_str() {
                            Some("token") if path.starts_with("/s/") => SURVEY_TOKEN,
                            Some("token") => TOKEN,
                            Some("gateway") => "^[A-Za-z0-9_-]{1,64}$",
                            _ => r"^[^\x00]+$",
                        };
                        p["schema"] = json!({"type": "string", "pattern": pattern});
                    }
                }
                let secured = op.get("security").is_some();
                let Some(Value::Object(responses)) = op.get_mut("responses") else {
                    continue;
                };
                let mut add = |status: &str, body: Value| {
                    responses.entry(status.to_string()).or_insert(body);
                };
                if secured {
                    add("401", error("No or unknown bearer token"));
                    add("403", error("The token's scope does not allow this"));
                }
                if path.starts_with("/v1/") {
                    add(
                        "400",
                        error("A malformed request: the field and what is wrong"),
                    );
                    add("503", error("The store did not answer; try again"));
                }
                if path.starts_with("/hooks/") {
                    add(
                        "503",
                        error("The store did not answer; the provider retries"),
                    );
                }
                if path.starts_with("/v1/messages/") || path.starts_with("/v1/contacts/") {
                    add("404", error("No such message or contact"));
                }
            }
        }
    }
    let page = |d: &str| text(d, "text/html");
    for method in ["get", "post"] {
        let pointer = format!("/paths/~1s~1{{token}}/{method}/responses");
        if let Some(Value::Object(r)) = doc.pointer_mut(&pointer) {
            for (status, what) in [
                (
                    "200",
                    "The question and its form (GET), or the thank-you page (POST)",
                ),
                (
                    "400",
                    "No score, or one off the scale: the form again, saying so",
                ),
                (
                    "404",
                    "No survey has this link: forged, mistyped, or not a survey",
                ),
                ("409", "The survey message has not been sent yet"),
                ("410", "The survey has closed (its answer window is over)"),
                ("503", "The store did not answer; try again"),
            ] {
                r.insert(status.to_string(), page(what));
            }
        }
    }
    if let Some(op) = doc.pointer_mut("/paths/~1s~1{token}/post") {
        op["requestBody"] = json!({
            "required": true,
            "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object",
                "properties": {
                    "score": {"type": "string", "pattern": "^[0-9]{1,2}$"},
                    "comment": {"type": "string", "maxLength": crate::answers::MAX_COMMENT, "pattern": NO_NUL},
                },
            }}}
        });
    }
    for (pointer, status, body) in [
        (
            "/paths/~1u~1{token}/get/responses",
            "200",
            page("The confirm page: a button that POSTs to the same URL"),
        ),
        (
            "/paths/~1u~1{token}/get/responses",
            "400",
            page("Not a token (malformed)"),
        ),
        (
            "/paths/~1u~1{token}/get/responses",
            "404",
            page("No such link: forged, altered, or unsubscribe links are off"),
        ),
        (
            "/paths/~1u~1{token}/post/responses",
            "200",
            page("Unsubscribed"),
        ),
        (
            "/paths/~1u~1{token}/post/responses",
            "400",
            page("Not a token (malformed)"),
        ),
        (
            "/paths/~1u~1{token}/post/responses",
            "404",
            page("No such link: forged, altered, or unsubscribe links are off"),
        ),
        (
            "/paths/~1u~1{token}/post/responses",
            "503",
            error("The store did not answer; try again"),
        ),
        (
            "/paths/~1healthz/get/responses",
            "200",
            text("ok", "text/plain"),
        ),
        (
            "/paths/~1readyz/get/responses",
            "200",
            text("ready", "text/plain"),
        ),
        (
            "/paths/~1readyz/get/responses",
            "503",
            text("not ready, with the reason", "text/plain"),
        ),
        (
            "/paths/~1metrics/get/responses",
            "200",
            text("Prometheus text exposition", "text/plain"),
        ),
        (
            "/paths/~1metrics/get/responses",
            "503",
            error("The store did not answer"),
        ),
        (
            "/paths/~1openapi.json/get/responses",
            "200",
            json!({"description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}),
        ),
        (
            "/paths/~1v1~1contacts~1{id}~1export/get/responses",
            "200",
            json!({"description": "{exported_at, contact, contact_dates, events, messages, replies, suppressions}", "content": {"application/json": {"schema": {"type": "object"}}}}),
        ),
        (
            "/paths/~1v1~1contacts~1{id}~1export/get/responses",
            "409",
            error("Several contacts have this email address or phone number: ask by id"),
        ),
        (
            "/paths/~1v1~1contacts~1{id}~1timeline/get/responses",
            "200",
            json!({"description": "{contact, items: [{at, kind: event|message|reply, ...}]} in time order", "content": {"application/json": {"schema": {"type": "object"}}}}),
        ),
    ] {
        if let Some(Value::Object(r)) = doc.pointer_mut(pointer) {
            r.insert(status.to_string(), body);
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_token_pattern_knows_the_shortest_sealed_token() {
        let n = crate::unsubscribe::SEALED_MIN_LEN;
        assert!(
            super::TOKEN.contains(&format!("{{{n},}}")),
            "{}",
            super::TOKEN
        );
    }

    /// The id, order id and consent-key patterns say what `ingest` does, string for string: the
    /// characters each rule turns on (white space of both kinds, controls, letters of a
    /// channel's name in both cases) in every order, short.
    #[test]
    fn the_id_and_consent_patterns_agree_with_ingest() {
        use proptest::prelude::*;
        let id = regex::Regex::new(&super::id_pattern()).unwrap();
        let misspelt = regex::Regex::new(super::CONSENT_MISSPELT).unwrap();
        let refused = |id: &str, key: &str| -> Vec<String> {
            let event = serde_json::json!({"id": id, "type": "order.delivered",
                "occurred_at": "2026-11-20T10:00:00+08:00",
                "contact": {"id": "c", "consent": {key: true}}});
            match crate::ingest::check_event(event) {
                Ok(_) => Vec::new(),
                Err(errs) => errs.into_iter().map(|e| e.field).collect(),
            }
        };
        let chars = "[ a\\t\\n\\x0b\\x1c\\x7f\\u{85}\\u{a0}\\u{3000}\\u{feff}eEmMaAiIlLsS]{0,7}";
        let order = regex::Regex::new(&super::order_id_pattern()).unwrap();
        proptest!(ProptestConfig::with_cases(4000), |(s in chars)| {
            let fields = refused(&s, "email");
            prop_assert_eq!(id.is_match(&s), !fields.contains(&"id".to_string()), "id {:?}", s);
            let event = serde_json::json!({"id": "e", "type": "order.delivered",
                "occurred_at": "2026-11-20T10:00:00+08:00", "contact": {"id": "c"},
                "data": {"order_id": s}});
            prop_assert_eq!(order.is_match(&s), crate::ingest::check_event(event).is_ok(), "order {:?}", s);
            let key = format!("contact.consent.{s}");
            let schema_ok = ["email", "sms", "webhook"].contains(&s.as_str()) || !misspelt.is_match(&s);
            prop_assert_eq!(schema_ok, !refused("e", &s).contains(&key), "key {:?}", s);
        });
    }

    /// The answer's limits are written in the schema by hand (derive attributes).
    #[test]
    fn the_answer_schema_knows_the_comment_and_score_limits() {
        let doc = super::document(10);
        let comment = &doc["components"]["schemas"]["AnswerRequest"]["properties"]["comment"];
        assert_eq!(
            comment["maxLength"],
            crate::answers::MAX_COMMENT,
            "{comment}"
        );
        assert_eq!(comment["pattern"], super::NO_NUL, "{comment}");
        let score = &doc["components"]["schemas"]["AnswerRequest"]["properties"]["score"];
        use crate::jobs::Scale;
        let (lo, hi) = [Scale::Nps, Scale::Csat]
            .map(Scale::range)
            .into_iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), (a, b)| {
                (lo.min(a), hi.max(b))
            });
        assert_eq!(
            (&score["minimum"], &score["maximum"]),
            (&lo.into(), &hi.into()),
            "{score}"
        );
    }
}
