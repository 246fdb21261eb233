//! Incoming events: one JSON object, checked field by field.
//!
//! Both doors (`events import` and, later, `POST /v1/events`) come through here, so a bad
//! email address or time zone is refused the same way everywhere, with the field path, before
//! anything is stored. Phone numbers are normalised to E.164 here, once.

use crate::diag::did_you_mean;
use crate::model::{Channel, Contact, Event};
use crate::values::{check_locale, normalise_phone, parse_tz};
use chrono::{DateTime, Datelike, NaiveDate};
use serde_json::{Map, Value};
use std::fmt;

const EVENT_KEYS: &[&str] = &["id", "type", "occurred_at", "contact", "data"];

/// Longest event id, contact id and `data.order_id` (they are keys the store indexes; a
/// PostgreSQL index entry holds at most ~2.7 kB).
pub const MAX_ID_CHARS: usize = 200;
/// Longest email address (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;
/// Where event times must lie: before 1970 or from 2200 on is a wrong year (a typo, a
/// zero date, a sentinel such as 9999-12-31) that would plan nonsense.
pub(crate) const FIRST_YEAR: i32 = 1970;
pub(crate) const END_YEAR: i32 = 2200;
/// Problems of one kind reported per event (a payload full of NULs says so a few times).
const MAX_REPORTED: usize = 5;
const CONTACT_KEYS: &[&str] = &[
    "id",
    "name",
    "email",
    "phone",
    "locale",
    "timezone",
    "birthday",
    "attributes",
    "consent",
];

/// One problem with one field of an incoming event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldError {
    /// `contact.email`, `occurred_at`, or empty for the whole object.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A checked event and the contact fields it carries (absent fields: keep what is stored).
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub event: Event,
    pub contact: ContactPatch,
    /// A digest of the canonical JSON, to tell a true duplicate from a reused id.
    pub digest: String,
}

/// Contact fields present in the event. `attributes` and `consent` merge key by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactPatch {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub birthday: Option<String>,
    pub attributes: Map<String, Value>,
    pub consent: Map<String, Value>,
}

impl ContactPatch {
    /// The contact as it will be after the patch is applied over `stored`. With `only_gaps`
    /// (an event older than the stored fields' last change) it fills fields and keys the
    /// contact lacks and changes none it has.
    pub fn apply(&self, stored: Option<&Contact>, only_gaps: bool) -> Contact {
        let mut c = stored.cloned().unwrap_or_else(|| Contact {
            id: self.id.clone(),
            ..Contact::default()
        });
        let set = |slot: &mut Option<String>, v: &Option<String>| {
            if v.is_some() && !(only_gaps && slot.is_some()) {
                slot.clone_from(v);
            }
        };
        set(&mut c.name, &self.name);
        set(&mut c.email, &self.email);
        set(&mut c.phone, &self.phone);
        set(&mut c.locale, &self.locale);
        set(&mut c.timezone, &self.timezone);
        set(&mut c.birthday, &self.birthday);
        let merge = |into: &mut Map<String, Value>, from: &Map<String, Value>| {
            for (k, v) in from {
                if !(only_gaps && into.contains_key(k)) {
                    into.insert(k.clone(), v.clone());
                }
            }
        };
        merge(&mut c.attributes, &self.attributes);
        merge(&mut c.consent, &self.consent);
        c
    }
}

/// Parse and check one event given as JSON text; every problem is returned, not the first.
pub fn parse_event(text: &str) -> Result<Incoming, Vec<FieldError>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        vec![FieldError {
            field: String::new(),
            message: format!("not valid JSON: {e}"),
        }]
    })?;
    check_event(value)
}

pub fn check_event(mut value: Value) -> Result<Incoming, Vec<FieldError>> {
    let mut errs = Errors::default();
    let Some(obj) = value.as_object() else {
        errs.add("", "an event must be a JSON object");
        return Err(errs.finish());
    };
    errs.unknown_keys(obj, "", EVENT_KEYS);
    // Text the store cannot keep is refused here, the same on both backends, rather than
    // by PostgreSQL inside a transaction other requests share.
    if holds_nul(&value) {
        let mut found = 0;
        unstorable(&value, "", &mut errs, &mut found);
    }
    let id = errs.required_str(obj, "id", "");
    if let Some(id) = &id {
        check_id(&mut errs, "id", id);
    }
    let kind = errs.required_str(obj, "type", "");
    if let Some(k) = &kind
        && let Err(e) = check_event_type(k)
    {
        errs.add("type", &e);
    }
    let occurred_at = errs.required_str(obj, "occurred_at", "").and_then(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map_err(|e| errs.add("occurred_at", &format!("`{s}` is not an RFC 3339 time with offset ({e}); e.g. 2026-11-20T10:00:00+08:00")))
            .ok()
            .filter(|t| {
                // The year as written: the same rule as the OpenAPI pattern.
                let year = t.year();
                let sane = (FIRST_YEAR..END_YEAR).contains(&year);
                if !sane {
                    errs.add(
                        "occurred_at",
                        &format!("`{s}` is not in the years {FIRST_YEAR} to {last}: is the year right?", last = END_YEAR - 1),
                    );
                }
                sane
            })
    });
    match obj.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            // Matched exactly too: a review's `SO-1 ` would not stop the delivery's `SO-1`.
            if let Some(order) = crate::model::data_key(m, "order_id") {
                check_id(&mut errs, "data.order_id", &order);
            }
        }
        Some(_) => errs.add("data", "must be a JSON object"),
    }
    let contact = match obj.get("contact") {
        Some(Value::Object(c)) => Some(check_contact(c, &mut errs)),
        Some(_) => {
            errs.add("contact", "must be a JSON object with at least an `id`");
            None
        }
        None => {
            errs.add(
                "contact",
                "missing; every event names its contact (at least `contact.id`)",
            );
            None
        }
    };
    match (id, kind, occurred_at, contact) {
        (Some(id), Some(kind), Some(occurred_at), Some(contact)) if errs.is_empty() => {
            let digest = digest(&value);
            // Moved out, not copied: the event is done with.
            let data = match value.as_object_mut().and_then(|o| o.remove("data")) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            Ok(Incoming {
                event: Event {
                    id,
                    kind,
                    occurred_at,
                    contact_id: contact.id.clone(),
                    data,
                },
                contact,
                digest,
            })
        }
        _ => Err(errs.finish()),
    }
}

fn check_contact(c: &Map<String, Value>, errs: &mut Errors) -> ContactPatch {
    errs.unknown_keys(c, "contact", CONTACT_KEYS);
    let id = errs.required_str(c, "id", "contact").unwrap_or_default();
    check_id(errs, "contact.id", &id);
    let email = errs
        .present_str(c, "email", "contact")
        .and_then(|e| match check_email(&e) {
            Ok(()) => Some(e),
            Err(why) => {
                errs.add(
                    "contact.email",
                    &format!("`{e}` is not a valid email address ({why})"),
                );
                None
            }
        });
    let phone = errs
        .present_str(c, "phone", "contact")
        .and_then(|p| match normalise_phone(&p) {
            Ok(p) => Some(p),
            Err(e) => {
                errs.add("contact.phone", &e);
                None
            }
        });
    let locale = errs.present_str(c, "locale", "contact");
    if let Some(l) = &locale
        && let Err(e) = check_locale(l)
    {
        errs.add("contact.locale", &format!("{e}; e.g. zh-CN or en"));
    }
    let timezone = errs.present_str(c, "timezone", "contact");
    if let Some(tz) = &timezone
        && let Err(hint) = parse_tz(tz)
    {
        let hint = hint.map(|h| format!(" ({h})")).unwrap_or_default();
        errs.add(
            "contact.timezone",
            &format!("unknown time zone `{tz}`{hint}"),
        );
    }
    let birthday = errs.present_str(c, "birthday", "contact");
    if let Some(b) = &birthday
        && parse_date(b).is_none()
    {
        errs.add(
            "contact.birthday",
            &format!("`{b}` is not a date as YYYY-MM-DD (e.g. 1990-02-03)"),
        );
    }
    let attributes = match c.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            errs.add("contact.attributes", "must be a JSON object");
            Map::new()
        }
    };
    let consent = match c.get("consent") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if !v.is_boolean() {
                    errs.add(&format!("contact.consent.{k}"), "must be true or false");
                }
                // Sending reads `email` and `sms` exactly; `Email: false` would be kept beside
                // them and a withdrawal missed. Other keys are the business's own.
                if let Some(channel) = Channel::ALL
                    .into_iter()
                    .find(|c| k.trim().eq_ignore_ascii_case(c.as_str()))
                    && channel.as_str() != k
                {
                    errs.add(
                        &format!("contact.consent.{k}"),
                        &format!(
                            "consent keys are exact: did you mean `{}`? sending reads only that spelling",
                            channel.as_str()
                        ),
                    );
                }
            }
            m.clone()
        }
        Some(_) => {
            errs.add(
                "contact.consent",
                "must be a JSON object such as {\"email\": true}",
            );
            Map::new()
        }
    };
    ContactPatch {
        id,
        name: errs.optional_str(c, "name", "contact"),
        email,
        phone,
        locale,
        timezone,
        birthday,
        attributes,
        consent,
    }
}

/// An event's, a contact's or an order's id: compared exactly everywhere (duplicates, a
/// contact's events, `stop_when`'s `same: order_id`, `logs --contact`), so ` c-1` would be
/// another contact than `c-1` and a line break inside one splits the lines of logs and
/// reports. Refused rather than trimmed: which of two spellings the sender means is theirs
/// to say.
fn check_id(errs: &mut Errors, field: &str, id: &str) {
    if id.chars().count() > MAX_ID_CHARS {
        errs.add(field, &format!("longer than {MAX_ID_CHARS} characters"));
    }
    // A NUL has been refused already, as anywhere in the event.
    if let Some(at) = crate::text::first_control(id).filter(|_| !id.contains('\0')) {
        errs.add(
            field,
            &format!("holds a control character ({at}); an id is plain text"),
        );
    } else if !id.is_empty() && id.trim().is_empty() {
        errs.add(field, "is only white space; leave it out or give the id");
    } else if id.trim() != id {
        errs.add(
            field,
            &format!(
                "{id:?} has white space at its start or end; ids are compared exactly, so send it without"
            ),
        );
    }
}

/// A calendar date written exactly as `YYYY-MM-DD`: chrono's `%Y-%m-%d` also takes
/// `1990-2-3` and `+20000-01-01`, which no system means as a birthday.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// An address mail can be sent to: lettre's syntax check, plus what it lets through that no
/// mail system delivers (`a@b`: a domain without a dot, unless it is an address literal).
pub fn check_email(e: &str) -> Result<(), String> {
    if e.trim() != e {
        return Err("white space around it".into());
    }
    if e.chars().count() > MAX_EMAIL_CHARS {
        return Err(format!("longer than {MAX_EMAIL_CHARS} characters"));
    }
    let addr = e
        .parse::<lettre::Address>()
        .map_err(|err| err.to_string())?;
    let domain = addr.domain();
    let literal = domain.starts_with('[') && domain.ends_with(']');
    let labels_ok = domain
        .split('.')
        .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
    if !literal && (!domain.contains('.') || !labels_ok) {
        return Err(format!(
            "the domain `{domain}` is not a mail domain such as example.com"
        ));
    }
    Ok(())
}

/// Whether any text or key holds a NUL: the common answer, no, without making the field
/// paths [`unstorable`] reports (a string per key).
fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(m) => m
            .iter()
            .any(|(k, item)| k.contains('\0') || holds_nul(item)),
        _ => false,
    }
}

/// Every string and key in `v` that the store cannot keep, as field errors (at most
/// [`MAX_REPORTED`]). PostgreSQL text holds any Unicode but U+0000; the check is the same on
/// both backends so an event means the same wherever it is stored.
fn unstorable(v: &Value, path: &str, errs: &mut Errors, found: &mut usize) {
    match v {
        Value::String(s) if s.contains('\0') => nul_found(errs, found, path, "the text"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                unstorable(item, &format!("{path}[{i}]"), errs, found);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                if k.contains('\0') {
                    let what = format!("the key `{}`", k.escape_debug());
                    nul_found(errs, found, path, &what);
                } else {
                    unstorable(item, &Errors::path(path, k), errs, found);
                }
            }
        }
        _ => {}
    }
}

fn nul_found(errs: &mut Errors, found: &mut usize, field: &str, what: &str) {
    *found += 1;
    if *found <= MAX_REPORTED {
        errs.add(
            field,
            &format!("{what} holds a NUL character (\\u0000), which cannot be stored; remove it"),
        );
    }
}

/// `order.delivered`: lowercase words joined by dots.
pub fn check_event_type(kind: &str) -> Result<(), String> {
    let ok = !kind.is_empty()
        && kind.len() <= 100
        && kind.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{kind}` is not an event type: use lowercase words joined by dots, e.g. order.delivered"
        ))
    }
}

/// `s`, or its first and last [`MAX_ERROR_CHARS`]` / 2` characters around an ellipsis: a
/// value quoted in a message is shortened, and the reason after it kept.
fn cut(s: &str) -> String {
    let n = s.chars().count();
    if n <= MAX_ERROR_CHARS {
        return s.to_string();
    }
    let half = MAX_ERROR_CHARS / 2;
    let head: String = s.chars().take(half).collect();
    let tail: String = s.chars().skip(n - half).collect();
    format!("{head}…{tail}")
}

fn digest(value: &Value) -> String {
    // serde_json's map keeps keys sorted (no preserve_order), so this text is canonical. It
    // is hashed as it is written, not made first.
    let mut h = Fnv1a(0xcbf2_9ce4_8422_2325);
    // Writing into the hash cannot fail, nor can serializing a `Value` (its keys are text).
    let _ = serde_json::to_writer(&mut h, value);
    format!("{:016x}", h.0)
}

/// FNV-1a, 64 bit: only compares two payloads that share an id; not a security boundary.
struct Fnv1a(u64);

impl std::io::Write for Fnv1a {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for b in buf {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Problems reported per event at most; past them one line says how many more. (Every
/// unknown key was one error: a 1 MiB event of 95,000 keys answered 6.7 MB.)
const MAX_ERRORS: usize = 20;
/// The longest field path or message kept: a longer one loses its middle, where a quoted
/// value is (a 600 KB `occurred_at` was repeated whole, for every such line of an import).
const MAX_ERROR_CHARS: usize = 300;

#[derive(Default)]
struct Errors {
    list: Vec<FieldError>,
    more: usize,
}

impl Errors {
    fn add(&mut self, field: &str, message: &str) {
        if self.list.len() >= MAX_ERRORS {
            self.more += 1;
            return;
        }
        self.list.push(FieldError {
            field: cut(field),
            message: cut(message),
        });
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn finish(mut self) -> Vec<FieldError> {
        if self.more > 0 {
            self.list.push(FieldError {
                field: String::new(),
                message: format!("and {} more problems of this event", self.more),
            });
        }
        self.list
    }

    fn path(prefix: &str, key: &str) -> String {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    }

    fn unknown_keys(&mut self, obj: &Map<String, Value>, prefix: &str, known: &[&str]) {
        for k in obj.keys() {
            if !known.contains(&k.as_str()) {
                let hint = did_you_mean(k, known.iter().copied())
                    .unwrap_or_else(|| format!("allowed: {}", known.join(", ")));
                self.add(&Self::path(prefix, k), &format!("unknown field ({hint})"));
            }
        }
    }

    fn required_str(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        prefix: &str,
    ) -> Option<String> {
        // The field's name is written only for an error: this runs for every field of
        // every event.
        let field = || Self::path(prefix, key);
        match obj.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                self.add(&field(), "must not be empty");
                None
            }
            None | Some(Value::Null) => {
                self.add(&field(), "missing");
                None
            }
            Some(v) => {
                self.add(&field(), &format!("must be a string, not {}", kind_of(v)));
                None
            }
        }
    }

    /// Like `optional_str`, for fields where an empty string is never a value (an address,
    /// a time zone): absent or null keeps what is stored, `""` is an error rather than a
    /// silent "keep".
    fn present_str(&mut self, obj: &Map<String, Value>, key: &str, prefix: &str) -> Option<String> {
        match obj.get(key) {
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.add(
                    &Self::path(prefix, key),
                    "must not be empty; leave the field out to keep what is stored",
                );
                None
            }
            _ => self.optional_str(obj, key, prefix),
        }
    }

    fn optional_str(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        prefix: &str,
    ) -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                self.add(
                    &Self::path(prefix, key),
                    &format!("must be a string, not {}", kind_of(v)),
                );
                None
            }
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_few_and_short_whatever_the_event() {
        let mut v: Value = serde_json::from_str(GOOD).expect("GOOD parses");
        let obj = v.as_object_mut().expect("an object");
        for i in 0..100 {
            obj.insert(format!("extra_{i}"), Value::from(i));
        }
        obj.insert("occurred_at".into(), Value::from("9".repeat(600_000)));
        let errs = check_event(v).expect_err("refused");
        assert_eq!(errs.len(), MAX_ERRORS + 1, "{errs:?}");
        assert_eq!(
            errs.last().map(|e| e.message.as_str()),
            Some("and 81 more problems of this event")
        );
        assert!(
            errs.iter()
                .all(|e| e.message.chars().count() <= MAX_ERROR_CHARS + 1),
            "{errs:?}"
        );
        // A long quoted value loses its middle; the reason after it stays.
        let mut v: Value = serde_json::from_str(GOOD).expect("GOOD parses");
        v["occurred_at"] = Value::from("9".repeat(600_000));
        let errs = check_event(v).expect_err("refused");
        let m = &errs[0].message;
        assert!(m.chars().count() <= MAX_ERROR_CHARS + 1, "{m}");
        assert!(m.starts_with("`999") && m.contains('…'), "{m}");
        assert!(m.ends_with("e.g. 2026-11-20T10:00:00+08:00"), "{m}");
    }

    const GOOD: &str = r#"{"id":"evt-1","type":"order.delivered","occurred_at":"2026-11-20T10:00:00+08:00","contact":{"id":"c-42","name":"王芳","email":"wang.fang@example.com","phone":"+86 138 0013 8000","locale":"zh-CN","timezone":"Asia/Shanghai","birthday":"1990-02-28"},"data":{"order_id":"SO-1001"}}"#;

    #[test]
    fn accepts_the_documented_shape_and_normalises_the_phone() {
        let inc = parse_event(GOOD).unwrap();
        assert_eq!(inc.event.kind, "order.delivered");
        assert_eq!(inc.event.order_id().as_deref(), Some("SO-1001"));
        assert_eq!(inc.contact.phone.as_deref(), Some("+8613800138000"));
        assert_eq!(inc.contact.name.as_deref(), Some("王芳"));
    }

    #[test]
    fn the_digest_is_the_one_stored_events_were_given() {
        // Stored digests are compared with new ones (a duplicate's `conflicting`): the hash
        // of the event's canonical text, FNV-1a over `Value::to_string()` as before.
        let value: Value = serde_json::from_str(GOOD).unwrap();
        assert_eq!(digest(&value), "669f67e9a6323bcc");
        let fnv = |text: &str| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in text.as_bytes() {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            format!("{h:016x}")
        };
        for text in [
            GOOD,
            r#"{"a":"\u0001\"q\" é 🙂","b":[1,2.5,null,true],"c":{}}"#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(digest(&value), fnv(&value.to_string()), "{text}");
        }
    }

    #[test]
    fn reports_every_bad_field() {
        let bad = r#"{"id":"","type":"Order Delivered","occurred_at":"2026-11-20 10:00","contact":{"id":"c","email":"wang@","phone":"13800138000","timezone":"Mars/Base","birthday":"1990-02-30","emial":"x"},"extra":1}"#;
        let errs = parse_event(bad).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "extra",
            "id",
            "type",
            "occurred_at",
            "contact.email",
            "contact.phone",
            "contact.timezone",
            "contact.birthday",
            "contact.emial",
        ] {
            assert!(fields.contains(&f), "{f} missing from {errs:?}");
        }
        let emial = errs.iter().find(|e| e.field == "contact.emial").unwrap();
        assert!(emial.message.contains("did you mean `email`?"), "{emial}");
    }

    #[test]
    fn ids_are_refused_with_surrounding_space_or_control_characters() {
        let event = |id: &str, contact: &str| {
            serde_json::json!({"id": id, "type": "order.delivered",
                "occurred_at": "2026-11-20T10:00:00+08:00", "contact": {"id": contact}})
            .to_string()
        };
        let refused = |id: &str, contact: &str| -> Vec<FieldError> {
            parse_event(&event(id, contact)).unwrap_err()
        };
        let e = refused(" evt-1", "c-1");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "id");
        assert!(
            e[0].message.contains("white space at its start or end"),
            "{e:?}"
        );
        let e = refused("evt-1", "c-1\u{a0}");
        assert_eq!(e[0].field, "contact.id", "{e:?}");
        let e = refused("evt-1", "c-\n1");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "contact.id");
        assert!(e[0].message.contains("(U+000A at character 3)"), "{e:?}");
        // Inner spaces are ids' own business.
        assert!(parse_event(&event("evt 1", "Wang Fang")).is_ok());
        let order = |o: serde_json::Value| {
            let mut v: Value = serde_json::from_str(&event("e", "c")).unwrap();
            v["data"] = serde_json::json!({"order_id": o});
            check_event(v)
        };
        let e = order(serde_json::json!("SO-1 ")).unwrap_err();
        assert_eq!(e[0].field, "data.order_id", "{e:?}");
        assert!(order(serde_json::json!(1001)).is_ok());
    }

    #[test]
    fn a_consent_key_spelled_unlike_its_channel_is_refused() {
        let event = |consent: serde_json::Value| {
            serde_json::json!({"id": "e", "type": "order.delivered",
                "occurred_at": "2026-11-20T10:00:00+08:00",
                "contact": {"id": "c", "consent": consent}})
            .to_string()
        };
        for key in ["Email", "EMAIL", " email", "SMS"] {
            let e = parse_event(&event(serde_json::json!({key: false}))).unwrap_err();
            assert_eq!(e.len(), 1, "{key}: {e:?}");
            assert_eq!(e[0].field, format!("contact.consent.{key}"));
            assert!(e[0].message.contains("did you mean `"), "{e:?}");
        }
        let ok = parse_event(&event(
            serde_json::json!({"email": false, "sms": true, "newsletter": true}),
        ))
        .unwrap();
        assert_eq!(ok.contact.consent.len(), 3);
    }

    #[test]
    fn patch_keeps_stored_fields_that_the_event_omits() {
        let stored = Contact {
            id: "c".into(),
            name: Some("Old".into()),
            email: Some("a@b.c".into()),
            ..Contact::default()
        };
        let patch = ContactPatch {
            id: "c".into(),
            email: Some("new@b.c".into()),
            ..ContactPatch::default()
        };
        let c = patch.apply(Some(&stored), false);
        assert_eq!(c.name.as_deref(), Some("Old"));
        assert_eq!(c.email.as_deref(), Some("new@b.c"));
    }

    #[test]
    fn an_older_patch_fills_gaps_and_changes_nothing_held() {
        let mut stored = Contact {
            id: "c".into(),
            email: Some("new@b.c".into()),
            ..Contact::default()
        };
        stored.consent.insert("email".into(), Value::Bool(false));
        let mut patch = ContactPatch {
            id: "c".into(),
            email: Some("old@b.c".into()),
            phone: Some("+8613800138000".into()),
            ..ContactPatch::default()
        };
        patch.consent.insert("email".into(), Value::Bool(true));
        patch.consent.insert("sms".into(), Value::Bool(true));
        let c = patch.apply(Some(&stored), true);
        assert_eq!(c.email.as_deref(), Some("new@b.c"));
        assert_eq!(c.phone.as_deref(), Some("+8613800138000"));
        assert_eq!(c.consent.get("email"), Some(&Value::Bool(false)));
        assert_eq!(c.consent.get("sms"), Some(&Value::Bool(true)));
    }

    #[test]
    fn not_json_and_not_object() {
        assert!(
            parse_event("{").unwrap_err()[0]
                .message
                .contains("not valid JSON")
        );
        assert!(
            parse_event("[1]").unwrap_err()[0]
                .message
                .contains("JSON object")
        );
    }
}
