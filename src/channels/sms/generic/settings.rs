//! An http (generic) gateway's settings: its keys, the templates of its request, and how
//! to read its answers, receipts and replies.

use crate::check::Checker;
use crate::check::RawScalar;
use crate::values::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;

/// An http gateway's own keys (besides `kind`, `rate` and `timeout`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    method: Option<String>,
    url: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    body: Option<String>,
    format: Option<RawFormat>,
    success: Option<RawSuccess>,
    id_pointer: Option<String>,
    message_pointer: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    receipt: Option<RawReceipt>,
    reply: Option<RawReply>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawFormat {
    Json,
    Form,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawSuccess {
    /// HTTP status (or list) that can mean success; default any 2xx.
    status: Option<OneOrMany<u16>>,
    /// JSON pointer into the answer whose value decides.
    pointer: Option<String>,
    equals: Option<RawScalar>,
    /// Values at `pointer` that mean "busy, try later" rather than a refusal.
    #[serde(default)]
    retry: Vec<RawScalar>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawReceipt {
    id_pointer: String,
    status_pointer: String,
    code_pointer: Option<String>,
    text_pointer: Option<String>,
    #[serde(default)]
    delivered: Vec<RawScalar>,
    #[serde(default)]
    undelivered: Vec<RawScalar>,
}

/// Where an http gateway's inbound SMS (a customer's reply) keeps the sender and the text.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawReply {
    from_pointer: String,
    text_pointer: String,
    /// The provider's id of the inbound message: a push the provider repeats is stored once.
    #[serde(default)]
    id_pointer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
}

impl HttpMethod {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Form,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub method: HttpMethod,
    /// Handlebars; substituted values are percent-encoded.
    pub url: String,
    /// Header name → handlebars value.
    pub headers: Vec<(String, String)>,
    /// Handlebars; substituted values are escaped for `format`.
    pub body: Option<String>,
    pub format: BodyFormat,
    pub success: SuccessRule,
    pub id_pointer: Option<String>,
    pub message_pointer: Option<String>,
    pub secret: Secret,
    pub receipt: Option<ReceiptMapping>,
    pub reply: Option<ReplyMapping>,
}

/// When a generic gateway's answer means "accepted".
#[derive(Debug, Clone, Default)]
pub struct SuccessRule {
    /// Statuses that can mean success; empty: any 2xx.
    pub status: Vec<u16>,
    pub pointer: Option<String>,
    pub equals: Option<String>,
    pub retry: Vec<String>,
}

/// How to read a generic gateway's delivery receipt (one JSON object or an array of them).
#[derive(Debug, Clone)]
pub struct ReceiptMapping {
    pub id_pointer: String,
    pub status_pointer: String,
    pub code_pointer: Option<String>,
    pub text_pointer: Option<String>,
    pub delivered: Vec<String>,
    pub undelivered: Vec<String>,
}

/// How to read a generic gateway's inbound SMS (one JSON object or an array of them).
#[derive(Debug, Clone)]
pub struct ReplyMapping {
    pub from_pointer: String,
    pub text_pointer: String,
    pub id_pointer: Option<String>,
}

/// Check an http gateway; `None` when its templates do not compile (nothing to send with).
pub(crate) fn check(c: &mut Checker, at: &str, g: Raw) -> Option<HttpConfig> {
    let method = match g.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("POST") => HttpMethod::Post,
        Some("GET") => HttpMethod::Get,
        Some("PUT") => HttpMethod::Put,
        Some("PATCH") => HttpMethod::Patch,
        Some(other) => {
            c.err(
                &format!("{at}.method"),
                format!("unsupported method `{other}`"),
                Some("GET, POST, PUT or PATCH".into()),
            );
            HttpMethod::Post
        }
    };
    let url = c
        .required(
            at,
            "url",
            g.url.as_deref(),
            "the provider's send address, e.g. https://sms.example.cn/api/send",
        )
        .to_string();
    let secret = c.secret(
        at,
        "secret",
        g.secret_env.as_deref(),
        g.secret_file.as_deref(),
    );
    let mut headers = Vec::new();
    for (name, value) in g.headers.iter().flatten() {
        let path = format!("{at}.headers.{name}");
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.err(&path, format!("`{name}` is not a header name"), None);
            continue;
        }
        let lower = name.to_ascii_lowercase();
        let credential = [
            "authorization",
            "token",
            "secret",
            "password",
            "api-key",
            "apikey",
            "api_key",
            "access-key",
            "accesskey",
        ]
        .iter()
        .any(|w| lower.contains(w));
        if credential && !mentions(value, "secret") {
            c.err(
                &path,
                format!("`{name}` looks like a credential written into the config"),
                Some("keep it out of YAML: set secret_env (or secret_file) and write e.g. \"Bearer {{secret}}\"".into()),
            );
        }
        headers.push((name.clone(), value.clone()));
    }
    let format = match g.format {
        Some(RawFormat::Form) => BodyFormat::Form,
        Some(RawFormat::Json) | None => BodyFormat::Json,
    };
    if method == HttpMethod::Get && g.body.is_some() {
        c.err(
            &format!("{at}.body"),
            "a GET request has no body",
            Some("put the values in the url, or use method: POST".into()),
        );
    }
    let uses_secret = mentions(&url, "secret")
        || headers.iter().any(|(_, v)| mentions(v, "secret"))
        || g.body.as_deref().is_some_and(|b| mentions(b, "secret"));
    match (&secret, uses_secret) {
        (Secret::None, true) => c.err(
            &format!("{at}.secret_env"),
            "a template uses {{secret}} but no secret is configured",
            Some("secret_env: NAME_OF_THE_VARIABLE (or secret_file: PATH)".into()),
        ),
        (Secret::Env(_) | Secret::File(_), false) => c.err(
            &format!("{at}.secret_env"),
            "a secret is configured but no template uses {{secret}}",
            Some(
                "write {{secret}} where the provider wants it (a header, the body or the url)"
                    .into(),
            ),
        ),
        _ => {}
    }
    let success = match &g.success {
        None => SuccessRule::default(),
        Some(s) => {
            let status = s.status.as_ref().map(OneOrMany::to_vec).unwrap_or_default();
            for (i, code) in status.iter().enumerate() {
                if !(200..300).contains(code) {
                    let path = match &s.status {
                        Some(OneOrMany::Many(_)) => format!("{at}.success.status[{i}]"),
                        _ => format!("{at}.success.status"),
                    };
                    c.err(
                        &path,
                        format!("{code} is not a 2xx status"),
                        Some("only 2xx answers can mean success".into()),
                    );
                }
            }
            let pointer = pointer(c, &format!("{at}.success.pointer"), s.pointer.as_deref());
            if pointer.is_some() != s.equals.is_some() {
                c.err(
                    &format!("{at}.success"),
                    "`pointer` and `equals` go together",
                    Some("e.g. success: {status: 200, pointer: /code, equals: \"0\"}".into()),
                );
            }
            if !s.retry.is_empty() && pointer.is_none() {
                c.err(
                    &format!("{at}.success.retry"),
                    "`retry` needs a `pointer`",
                    None,
                );
            }
            SuccessRule {
                status,
                pointer,
                equals: s.equals.as_ref().map(RawScalar::text),
                retry: s.retry.iter().map(RawScalar::text).collect(),
            }
        }
    };
    let receipt = g.receipt.as_ref().map(|r| {
        let rp = format!("{at}.receipt");
        let mapping = ReceiptMapping {
            id_pointer: pointer(c, &format!("{rp}.id_pointer"), Some(&r.id_pointer))
                .unwrap_or_default(),
            status_pointer: pointer(c, &format!("{rp}.status_pointer"), Some(&r.status_pointer))
                .unwrap_or_default(),
            code_pointer: pointer(c, &format!("{rp}.code_pointer"), r.code_pointer.as_deref()),
            text_pointer: pointer(c, &format!("{rp}.text_pointer"), r.text_pointer.as_deref()),
            delivered: r.delivered.iter().map(RawScalar::text).collect(),
            undelivered: r.undelivered.iter().map(RawScalar::text).collect(),
        };
        if mapping.delivered.is_empty() {
            c.err(
                &format!("{rp}.delivered"),
                "no status value means delivered",
                Some("list the provider's values, e.g. delivered: [DELIVRD]".into()),
            );
        }
        if let Some(both) = mapping
            .delivered
            .iter()
            .find(|v| mapping.undelivered.contains(v))
        {
            c.err(
                &format!("{rp}.undelivered"),
                format!("`{both}` is in both lists"),
                None,
            );
        }
        mapping
    });
    let reply = g.reply.as_ref().map(|r| ReplyMapping {
        from_pointer: pointer(
            c,
            &format!("{at}.reply.from_pointer"),
            Some(&r.from_pointer),
        )
        .unwrap_or_default(),
        text_pointer: pointer(
            c,
            &format!("{at}.reply.text_pointer"),
            Some(&r.text_pointer),
        )
        .unwrap_or_default(),
        id_pointer: pointer(
            c,
            &format!("{at}.reply.id_pointer"),
            r.id_pointer.as_deref(),
        ),
    });
    let cfg = HttpConfig {
        method,
        url,
        headers,
        body: g.body.clone(),
        format,
        success,
        id_pointer: pointer(c, &format!("{at}.id_pointer"), g.id_pointer.as_deref()),
        message_pointer: pointer(
            c,
            &format!("{at}.message_pointer"),
            g.message_pointer.as_deref(),
        ),
        secret,
        receipt,
        reply,
    };
    // Compile and try the templates now, so a typo is a config error, not a failed send.
    if let Err((field, e)) = super::check_templates(&cfg) {
        let path = if field.is_empty() {
            at.to_string()
        } else {
            format!("{at}.{field}")
        };
        c.err(&path, e, Some(super::VARIABLES_HINT.into()));
        return None;
    }
    Some(cfg)
}

/// A JSON pointer (`/data/id`), or the empty pointer for the whole answer.
fn pointer(c: &mut Checker, path: &str, p: Option<&str>) -> Option<String> {
    let p = p?;
    if !(p.is_empty() || p.starts_with('/')) {
        c.err(
            path,
            format!("`{p}` is not a JSON pointer"),
            Some(format!(
                "pointers start with `/`, e.g. /{}",
                p.replace('.', "/")
            )),
        );
    }
    Some(p.to_string())
}

/// Whether a handlebars template refers to `var` in one of its `{{...}}` expressions.
pub(super) fn mentions(template: &str, var: &str) -> bool {
    let mut rest = template;
    while let Some((_, after)) = rest.split_once("{{") {
        let Some((expr, next)) = after.split_once("}}") else {
            break;
        };
        if expr
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == var)
        {
            return true;
        }
        rest = next;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_finds_variables_inside_expressions_only() {
        assert!(mentions("Bearer {{secret}}", "secret"));
        assert!(mentions("{{{ secret }}}", "secret"));
        assert!(!mentions("secret {{to}}", "secret"));
        assert!(!mentions("{{secretive}}", "secret"));
    }
}
