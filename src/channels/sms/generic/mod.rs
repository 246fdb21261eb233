//! The `http` gateway: any provider with an HTTP API, described in the config.
//!
//! Local providers differ in every detail, so the request is a set of handlebars templates
//! (URL, headers, body) and the answer is read through JSON pointers: which status and which
//! value mean success, where the message id is, which values mean "busy, retry". Substituted
//! values are escaped for where they land (JSON string content in a JSON body, form encoding
//! in a form body, percent-encoding in the URL), so a customer name with a quote or an `&`
//! cannot break the request. Templates render in strict mode: a message without a value the
//! template needs (no text for `{{body}}`) is not sent through this gateway, rather than sent
//! half-filled.
//!
//! Receipts from such providers are mapped the same way (`receipt:` in the config).
//!
//! Over 600 lines with its tests (about 165): request templates, answer rules, receipts and
//! replies of a configurable provider; its settings are in `settings.rs`.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use super::SmsMessage;
pub(super) mod settings;

use super::outcome::{Answer, Redactor, excerpt, exchange, scalar_text};
use super::receipt::{Receipt, ReceiptError, ReceiptStatus};
use super::reply::{Reply, sender_e164};
use super::{aliyun, encoding};
use crate::channels::Delivery;
use crate::model::Outcome;
use handlebars::Handlebars;
use serde_json::{Value, json};
use settings::{BodyFormat, HttpConfig, HttpMethod, ReceiptMapping, ReplyMapping};
use std::time::Duration;

pub(crate) const VARIABLES_HINT: &str = "templates can use {{to}} (E.164), {{to_digits}}, {{body}}, {{reference}}, \
     {{template_code}}, {{template_params.NAME}} and {{secret}}";

pub(super) struct Generic {
    cfg: HttpConfig,
    secret: Option<String>,
    templates: Templates,
}

struct Templates {
    url: Handlebars<'static>,
    headers: Handlebars<'static>,
    body: Handlebars<'static>,
}

/// A rendered request.
pub(super) struct Prepared {
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    segments: Option<encoding::Segments>,
}

fn registry(escape: fn(&str) -> String) -> Handlebars<'static> {
    let mut h = Handlebars::new();
    h.set_strict_mode(true);
    h.register_escape_fn(escape);
    h
}

fn json_escape(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
}

fn form_escape(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Templates {
    /// Compile every template; the error names the field.
    fn new(cfg: &HttpConfig) -> Result<Templates, (String, String)> {
        let mut url = registry(aliyun::percent_encode);
        url.register_template_string("url", &cfg.url)
            .map_err(|e| ("url".to_string(), template_error(&e)))?;
        let mut headers = registry(handlebars::no_escape);
        for (name, value) in &cfg.headers {
            headers
                .register_template_string(name, value)
                .map_err(|e| (format!("headers.{name}"), template_error(&e)))?;
        }
        let mut body = registry(match cfg.format {
            BodyFormat::Json => json_escape,
            BodyFormat::Form => form_escape,
        });
        if let Some(b) = &cfg.body {
            body.register_template_string("body", b)
                .map_err(|e| ("body".to_string(), template_error(&e)))?;
        }
        Ok(Templates { url, headers, body })
    }

    fn render(&self, cfg: &HttpConfig, data: &Value) -> Result<Prepared, (String, String)> {
        let url = self
            .url
            .render("url", data)
            .map_err(|e| ("url".to_string(), render_error(&e)))?;
        let mut headers = Vec::new();
        for (name, _) in &cfg.headers {
            let v = self
                .headers
                .render(name, data)
                .map_err(|e| (format!("headers.{name}"), render_error(&e)))?;
            headers.push((name.clone(), v));
        }
        let body = match &cfg.body {
            None => None,
            Some(_) => Some(
                self.body
                    .render("body", data)
                    .map_err(|e| ("body".to_string(), render_error(&e)))?,
            ),
        };
        Ok(Prepared {
            url,
            headers,
            body,
            segments: None,
        })
    }
}

fn template_error(e: &handlebars::TemplateError) -> String {
    format!("not a valid template: {}", e.reason())
}

fn render_error(e: &handlebars::RenderError) -> String {
    e.reason().to_string()
}

/// Compile the templates and render them once with sample values: a misspelt variable, a
/// body that is not JSON or a URL that does not parse is a config error at load.
pub(crate) fn check_templates(cfg: &HttpConfig) -> Result<(), (String, String)> {
    let t = Templates::new(cfg)?;
    // The parameter names are the job's business: give every one the templates mention.
    let mut params = serde_json::Map::new();
    let texts = std::iter::once(cfg.url.as_str())
        .chain(cfg.headers.iter().map(|(_, v)| v.as_str()))
        .chain(cfg.body.as_deref());
    for text in texts {
        for name in param_names(text) {
            params.insert(name, "sample".into());
        }
    }
    let data = json!({
        "to": "+8613800138000",
        "to_digits": "8613800138000",
        "body": "Sample \"text\" & more\n2nd line",
        "reference": "01JSAMPLE",
        "template_code": "SMS_0",
        "template_params": params,
        "secret": "sample-secret",
    });
    let p = t
        .render(cfg, &data)
        .map_err(|(f, e)| (f, unknown_variable(&e)))?;
    reqwest::Url::parse(&p.url).map_err(|e| {
        (
            "url".to_string(),
            format!("does not render to a URL ({e}): {}", p.url),
        )
    })?;
    if let (BodyFormat::Json, Some(body)) = (cfg.format, &p.body) {
        serde_json::from_str::<Value>(body).map_err(|e| {
            (
                "body".to_string(),
                format!("does not render to JSON ({e}): {}", excerpt(body)),
            )
        })?;
    }
    for (name, value) in &p.headers {
        reqwest::header::HeaderValue::from_str(value).map_err(|_| {
            (
                format!("headers.{name}"),
                "does not render to a header value".to_string(),
            )
        })?;
    }
    Ok(())
}

/// The `NAME`s of `template_params.NAME` in a template.
fn param_names(template: &str) -> Vec<String> {
    const PREFIX: &str = "template_params.";
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(PREFIX) {
        rest = rest.get(i + PREFIX.len()..).unwrap_or_default();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// At load every variable is set, so a strict-mode failure means a name we do not provide.
fn unknown_variable(e: &str) -> String {
    format!("{e} (not a variable this gateway provides)")
}

impl Generic {
    pub(super) fn new(cfg: &HttpConfig, secret: Option<String>) -> anyhow::Result<Generic> {
        let templates = Templates::new(cfg).map_err(|(f, e)| anyhow::anyhow!("{f}: {e}"))?;
        Ok(Generic {
            cfg: cfg.clone(),
            secret,
            templates,
        })
    }

    pub(super) fn redactor(&self) -> Redactor {
        Redactor::new(&self.secret.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub(super) fn receipt_mapping(&self) -> Option<&ReceiptMapping> {
        self.cfg.receipt.as_ref()
    }

    pub(super) fn reply_mapping(&self) -> Option<&ReplyMapping> {
        self.cfg.reply.as_ref()
    }

    pub(super) fn prepare(&self, msg: &SmsMessage) -> Result<Prepared, String> {
        let mut data = serde_json::Map::new();
        data.insert("to".into(), msg.to.clone().into());
        data.insert(
            "to_digits".into(),
            msg.to.trim_start_matches('+').to_string().into(),
        );
        data.insert("reference".into(), msg.reference.clone().into());
        if let Some(text) = &msg.text {
            data.insert("body".into(), text.clone().into());
        }
        if let Some(t) = &msg.template {
            data.insert("template_code".into(), t.code.clone().into());
            let params: Value = serde_json::from_str(&t.params)
                .map_err(|e| format!("the rendered template parameters are not JSON ({e})"))?;
            data.insert("template_params".into(), params);
        }
        if let Some(s) = &self.secret {
            data.insert("secret".into(), s.clone().into());
        }
        let mut p = self
            .templates
            .render(&self.cfg, &Value::Object(data))
            .map_err(|(field, e)| format!("cannot fill in `{field}`: {e}"))?;
        p.segments = msg.text.as_deref().map(encoding::segments);
        Ok(p)
    }

    pub(super) async fn send(
        &self,
        client: &reqwest::Client,
        p: Prepared,
        timeout: Duration,
        redactor: &Redactor,
    ) -> Delivery {
        let method = match self.cfg.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
        };
        let mut request = client.request(method, &p.url);
        let has_content_type = p
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        for (name, value) in &p.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = p.body {
            if !has_content_type {
                request = request.header(
                    reqwest::header::CONTENT_TYPE,
                    match self.cfg.format {
                        BodyFormat::Json => "application/json",
                        BodyFormat::Form => "application/x-www-form-urlencoded",
                    },
                );
            }
            request = request.body(body);
        }
        let answer = match exchange(request, timeout, redactor).await {
            Ok(a) => a,
            Err(d) => return d,
        };
        let mut d = self.judge(&answer);
        if d.outcome == Outcome::Sent
            && let Some(s) = p.segments
        {
            d.detail = format!("{}; {s}", d.detail);
        }
        d
    }

    /// The provider's words: the configured message field, else the body itself.
    fn words(&self, answer: &Answer, json: Option<&Value>) -> String {
        let from_pointer = self
            .cfg
            .message_pointer
            .as_deref()
            .and_then(|p| json?.pointer(p))
            .and_then(scalar_text);
        match from_pointer {
            Some(w) => excerpt(&w),
            None => excerpt(&answer.body),
        }
    }

    fn judge(&self, answer: &Answer) -> Delivery {
        let json = answer.json();
        let words = self.words(answer, json.as_ref());
        let rule = &self.cfg.success;
        let with_words = |head: String| {
            if words.is_empty() {
                head
            } else {
                format!("{head}: {words}")
            }
        };
        if !answer.is_success() {
            return answer.delivery(
                answer.status_outcome(),
                with_words(format!("HTTP {}", answer.status)),
            );
        }
        if !rule.status.is_empty() && !rule.status.contains(&answer.status) {
            // A 2xx we were not told about: maybe accepted, maybe not; retrying could send
            // twice, so it fails for a person to look at.
            return answer.delivery(
                Outcome::Permanent,
                with_words(format!("unexpected HTTP {}", answer.status)),
            );
        }
        if let (Some(pointer), Some(expected)) = (&rule.pointer, &rule.equals) {
            let Some(json) = &json else {
                return answer.delivery(
                    Outcome::Permanent,
                    with_words(format!("HTTP {} but the answer is not JSON", answer.status)),
                );
            };
            let got = json.pointer(pointer).and_then(scalar_text);
            if got.as_deref() != Some(expected.as_str()) {
                let code = got.unwrap_or_else(|| format!("nothing at {pointer}"));
                let outcome = if rule.retry.contains(&code) {
                    Outcome::Transient
                } else {
                    Outcome::Permanent
                };
                return answer.delivery(outcome, with_words(format!("provider code {code}")));
            }
        }
        let mut d = answer.delivery(Outcome::Sent, format!("HTTP {}", answer.status));
        d.provider_id = self
            .cfg
            .id_pointer
            .as_deref()
            .and_then(|p| json.as_ref()?.pointer(p))
            .and_then(scalar_text);
        d
    }
}

/// Receipts from a generic provider: one JSON object or an array of them, read through the
/// configured pointers.
pub(super) fn receipts(
    gateway: &str,
    m: &ReceiptMapping,
    body: &[u8],
) -> Result<Vec<Receipt>, ReceiptError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |p: &str| {
                item.pointer(p)
                    .and_then(scalar_text)
                    .filter(|s| !s.is_empty())
            };
            let provider_id = at(&m.id_pointer).ok_or_else(|| {
                ReceiptError::Malformed(format!("receipt {i}: nothing at {}", m.id_pointer))
            })?;
            let raw = at(&m.status_pointer).ok_or_else(|| {
                ReceiptError::Malformed(format!("receipt {i}: nothing at {}", m.status_pointer))
            })?;
            let status = if m.delivered.contains(&raw) {
                ReceiptStatus::Delivered
            } else if m.undelivered.contains(&raw) {
                ReceiptStatus::Undelivered
            } else {
                ReceiptStatus::Pending
            };
            Ok(Receipt {
                gateway: gateway.to_string(),
                provider_id,
                status,
                code: m.code_pointer.as_deref().and_then(at).or(Some(raw)),
                text: m.text_pointer.as_deref().and_then(at),
                reference: None,
            })
        })
        .collect()
}

/// Inbound messages from a generic provider: one JSON object or an array of them, read
/// through the configured pointers.
pub(super) fn replies(
    gateway: &str,
    m: &ReplyMapping,
    body: &[u8],
) -> Result<Vec<Reply>, ReceiptError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let from = item
                .pointer(&m.from_pointer)
                .and_then(scalar_text)
                .ok_or_else(|| {
                    ReceiptError::Malformed(format!("message {i}: nothing at {}", m.from_pointer))
                })?;
            Ok(Reply {
                gateway: gateway.to_string(),
                from: sender_e164(&from)
                    .map_err(|e| ReceiptError::Malformed(format!("message {i}: {e}")))?,
                text: item
                    .pointer(&m.text_pointer)
                    .and_then(scalar_text)
                    .unwrap_or_default(),
                provider_id: m
                    .id_pointer
                    .as_deref()
                    .and_then(|p| item.pointer(p))
                    .and_then(scalar_text),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::settings::SuccessRule;
    use super::*;
    use crate::channels::sms::ProviderTemplate;
    use crate::values::Secret;

    fn cfg(body: &str, format: BodyFormat) -> HttpConfig {
        HttpConfig {
            method: HttpMethod::Post,
            url: "https://sms.example.cn/send?to={{to}}&ref={{reference}}".into(),
            headers: vec![("Authorization".into(), "Bearer {{secret}}".into())],
            body: Some(body.into()),
            format,
            success: SuccessRule {
                status: vec![200],
                pointer: Some("/code".into()),
                equals: Some("0".into()),
                retry: vec!["busy".into()],
            },
            id_pointer: Some("/data/id".into()),
            message_pointer: Some("/msg".into()),
            secret: Secret::Env("X".into()),
            receipt: None,
            reply: None,
        }
    }

    fn msg(text: Option<&str>) -> SmsMessage {
        SmsMessage {
            to: "+8613800138000".into(),
            text: text.map(str::to_string),
            template: None,
            reference: "01J A&B".into(),
        }
    }

    #[test]
    fn values_are_escaped_for_where_they_land() {
        let c = cfg(r#"{"to":"{{to}}","text":"{{body}}"}"#, BodyFormat::Json);
        let g = Generic::new(&c, Some("tok".into())).unwrap();
        let p = g.prepare(&msg(Some("say \"hi\"\n& bye"))).unwrap();
        let body: Value = serde_json::from_str(p.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["text"], "say \"hi\"\n& bye");
        assert_eq!(
            p.url,
            "https://sms.example.cn/send?to=%2B8613800138000&ref=01J%20A%26B"
        );
        assert_eq!(
            p.headers,
            [("Authorization".to_string(), "Bearer tok".to_string())]
        );

        let c = cfg("to={{to}}&text={{body}}", BodyFormat::Form);
        let g = Generic::new(&c, Some("tok".into())).unwrap();
        let p = g.prepare(&msg(Some("a&b=c d"))).unwrap();
        assert_eq!(
            p.body.as_deref(),
            Some("to=%2B8613800138000&text=a%26b%3Dc+d")
        );
    }

    #[test]
    fn a_message_without_what_the_template_needs_is_refused() {
        let c = cfg(r#"{"text":"{{body}}"}"#, BodyFormat::Json);
        let g = Generic::new(&c, Some("tok".into())).unwrap();
        let err = g.prepare(&msg(None)).err().unwrap();
        assert!(err.contains("body"), "{err}");
        let c = cfg(
            r#"{"tpl":"{{template_code}}","name":"{{template_params.name}}"}"#,
            BodyFormat::Json,
        );
        let g = Generic::new(&c, Some("tok".into())).unwrap();
        let mut m = msg(None);
        m.template = Some(ProviderTemplate {
            code: "T1".into(),
            params: r#"{"name":"王芳"}"#.into(),
        });
        let p = g.prepare(&m).unwrap();
        assert_eq!(p.body.as_deref(), Some(r#"{"tpl":"T1","name":"王芳"}"#));
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: Some(Duration::from_secs(7)),
            body: body.into(),
        }
    }

    #[test]
    fn answers_are_judged_by_the_success_rule() {
        let g = Generic::new(&cfg("{}", BodyFormat::Json), Some("tok".into())).unwrap();
        let d = g.judge(&answer(200, r#"{"code":0,"data":{"id":987},"msg":"ok"}"#));
        assert_eq!(
            (d.outcome, d.provider_id.as_deref(), d.code),
            (Outcome::Sent, Some("987"), Some(200))
        );
        assert_eq!(d.retry_after, None);
        let d = g.judge(&answer(200, r#"{"code":"E17","msg":"号码格式错误"}"#));
        assert_eq!(d.outcome, Outcome::Permanent);
        assert_eq!(d.detail, "provider code E17: 号码格式错误");
        let d = g.judge(&answer(200, r#"{"code":"busy","msg":"later"}"#));
        assert_eq!(
            (d.outcome, d.retry_after),
            (Outcome::Transient, Some(Duration::from_secs(7)))
        );
        let d = g.judge(&answer(200, "<html>ok</html>"));
        assert_eq!(d.outcome, Outcome::Permanent);
        assert!(d.detail.contains("not JSON"), "{}", d.detail);
        let d = g.judge(&answer(202, r#"{"code":0}"#));
        assert_eq!(d.outcome, Outcome::Permanent);
        let d = g.judge(&answer(503, ""));
        assert_eq!(
            (d.outcome, d.detail.as_str()),
            (Outcome::Transient, "HTTP 503")
        );
        let d = g.judge(&answer(400, r#"{"code":"E1","msg":"bad number"}"#));
        assert_eq!(
            (d.outcome, d.detail.as_str()),
            (Outcome::Permanent, "HTTP 400: bad number")
        );
    }

    #[test]
    fn receipts_follow_the_mapping() {
        let m = ReceiptMapping {
            id_pointer: "/msgid".into(),
            status_pointer: "/stat".into(),
            code_pointer: Some("/err".into()),
            text_pointer: Some("/desc".into()),
            delivered: vec!["DELIVRD".into()],
            undelivered: vec!["UNDELIV".into(), "EXPIRED".into()],
        };
        let body = br#"[{"msgid":1,"stat":"DELIVRD"},{"msgid":"2","stat":"UNDELIV","err":"MK:0005","desc":"off"},{"msgid":"3","stat":"ACCEPTD"}]"#;
        let r = receipts("local", &m, body).unwrap();
        let got: Vec<_> = r
            .iter()
            .map(|r| {
                (
                    r.provider_id.as_str(),
                    r.status,
                    r.code.as_deref(),
                    r.text.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("1", ReceiptStatus::Delivered, Some("DELIVRD"), None),
                (
                    "2",
                    ReceiptStatus::Undelivered,
                    Some("MK:0005"),
                    Some("off")
                ),
                ("3", ReceiptStatus::Pending, Some("ACCEPTD"), None),
            ]
        );
        let one = receipts("local", &m, br#"{"msgid":"9","stat":"EXPIRED"}"#).unwrap();
        assert_eq!(one[0].status, ReceiptStatus::Undelivered);
        assert!(receipts("local", &m, br#"{"stat":"DELIVRD"}"#).is_err());
    }
}
