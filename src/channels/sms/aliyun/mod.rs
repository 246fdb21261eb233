//! Alibaba Cloud SMS (`dysmsapi`, `SendSms`, version 2017-05-25): sending and SmsReport receipts.
//!
//! Chinese carriers only deliver pre-approved templates, so this gateway never sends free
//! text: the message names a `TemplateCode` and carries the rendered `TemplateParam` JSON
//! object; the approved `SignName` comes from the config.
//!
//! Requests are RPC style, signed with the POP signature version 1.0 (HMAC-SHA1) exactly as
//! Alibaba Cloud documents it: every parameter but `Signature` is percent-encoded by RFC 3986
//! (unreserved `A-Z a-z 0-9 - _ . ~` kept, everything else `%XY` of its UTF-8 bytes, so a
//! space is `%20`, never `+`), sorted by name and joined with `&` into the canonicalized query
//! string; StringToSign = `METHOD&%2F&` + percentEncode(canonicalized query string); the key is
//! the AccessKey secret followed by `&`; the signature is the base64 of the HMAC. We POST the
//! parameters as a form body (signed with `POST`) so neither the key id nor the signature
//! lands in a URL that a proxy or an error message could log.
//!
//! The answer is JSON: `Code` = `OK` is success and `BizId` is the id receipts refer to.
//! Throttling and Alibaba's own failures (`isv.BUSINESS_LIMIT_CONTROL`, `Throttling*`,
//! `isp.SYSTEM_ERROR`, whose documented remedy is "retry") are transient; so are failures of
//! the account rather than the message (key, signature, balance, permissions), for the same
//! reason as HTTP 401 in `outcome`: another gateway can still take the message. Every other
//! code is the message's fault (an invalid number, a template that does not match its
//! parameters) and permanent.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use super::SmsMessage;
pub mod settings;

use super::outcome::{Redactor, excerpt, exchange, scalar_text};
use super::receipt::{Receipt, ReceiptError, ReceiptStatus};
use super::reply::{Reply, sender_e164};
use crate::channels::Delivery;
use crate::model::Outcome;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Url;
use serde_json::Value;
use settings::AliyunConfig;
use sha1::Sha1;
use std::time::Duration;

const VERSION: &str = "2017-05-25";

/// Codes that say "later, or elsewhere" rather than "never".
const TRANSIENT_CODES: &[&str] = &[
    // throttling
    "isv.BUSINESS_LIMIT_CONTROL",
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
    "Throttling.Tps",
    // Alibaba's side
    "isp.SYSTEM_ERROR",
    "isp.GATEWAY_ERROR",
    "ServiceUnavailable",
    "InternalError",
    // the account, not the message
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.OUT_OF_SERVICE",
    "isv.PRODUCT_UN_SUBSCRIPT",
    "isv.PRODUCT_UNSUBSCRIBE",
    "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL",
    "isp.RAM_PERMISSION_DENY",
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidTimeStamp.Expired",
    "SignatureNonceUsed",
    "Forbidden.RAM",
];

/// Percent-encoding as the POP signature wants it (RFC 3986 unreserved characters kept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonicalized query string: encoded `name=value` pairs sorted by name, joined by `&`.
pub fn canonical_query(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// The `Signature` parameter for a request with these parameters.
pub fn sign(method: &str, params: &[(String, String)], access_key_secret: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{access_key_secret}&").as_bytes())
        .expect("HMAC takes a key of any size");
    mac.update(string_to_sign(method, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// An E.164 number as `PhoneNumbers` wants it: mainland China without `+86` (11 digits),
/// elsewhere country code and number without `+` (`85200000000`).
pub fn phone_number(e164: &str) -> String {
    let n = e164.trim();
    match n.strip_prefix("+86") {
        Some(national) => national.to_string(),
        None => n.trim_start_matches('+').to_string(),
    }
}

pub(super) struct Aliyun {
    url: Url,
    access_key_id: String,
    access_key_secret: String,
    sign_name: String,
    region: String,
}

pub(super) struct Prepared {
    phone: String,
    template_code: String,
    template_param: String,
    out_id: String,
}

impl Aliyun {
    pub(super) fn new(cfg: &AliyunConfig, access_key_secret: String) -> Aliyun {
        Aliyun {
            url: cfg.base_url.clone(),
            access_key_id: cfg.access_key_id.clone(),
            access_key_secret,
            sign_name: cfg.sign_name.clone(),
            region: cfg.region.clone(),
        }
    }

    pub(super) fn redactor(&self) -> Redactor {
        Redactor::new(&[&self.access_key_secret])
    }

    pub(super) fn prepare(&self, msg: &SmsMessage) -> Result<Prepared, String> {
        let Some(t) = &msg.template else {
            return Err(
                "aliyun sends approved templates only and this message names no template code"
                    .into(),
            );
        };
        if t.code.trim().is_empty() {
            return Err("the template code is empty".into());
        }
        Ok(Prepared {
            phone: phone_number(&msg.to),
            template_code: t.code.trim().to_string(),
            template_param: template_param(&t.params)?,
            out_id: msg.reference.clone(),
        })
    }

    /// Every parameter of a `SendSms` call, `Signature` excepted.
    fn params(&self, p: &Prepared, timestamp: &str, nonce: &str) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = [
            ("AccessKeyId", self.access_key_id.as_str()),
            ("Action", "SendSms"),
            ("Format", "JSON"),
            ("RegionId", self.region.as_str()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", nonce),
            ("SignatureVersion", "1.0"),
            ("Timestamp", timestamp),
            ("Version", VERSION),
            ("PhoneNumbers", p.phone.as_str()),
            ("SignName", self.sign_name.as_str()),
            ("TemplateCode", p.template_code.as_str()),
            ("TemplateParam", p.template_param.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if !p.out_id.is_empty() {
            params.push(("OutId".into(), p.out_id.clone()));
        }
        params
    }

    pub(super) async fn send(
        &self,
        client: &reqwest::Client,
        p: Prepared,
        timeout: Duration,
        redactor: &Redactor,
    ) -> Delivery {
        // Signed at the last moment: the timestamp must be within 15 minutes of Alibaba's
        // clock, and the send may have waited for the rate limit.
        let timestamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let nonce = ulid::Ulid::new().to_string();
        let params = self.params(&p, &timestamp, &nonce);
        let signature = sign("POST", &params, &self.access_key_secret);
        let body = format!(
            "{}&Signature={}",
            canonical_query(&params),
            percent_encode(&signature)
        );
        let request = client
            .post(self.url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        let answer = match exchange(request, timeout, redactor).await {
            Ok(a) => a,
            Err(d) => return d,
        };
        let json = answer.json();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|j| j.get(name))
                .and_then(scalar_text)
        };
        let code = field("Code");
        let request_id = field("RequestId")
            .map(|r| format!(" (RequestId {r})"))
            .unwrap_or_default();
        if answer.is_success() && code.as_deref() == Some("OK") {
            let mut d = answer.delivery(Outcome::Sent, format!("OK{request_id}"));
            d.provider_id = field("BizId");
            return d;
        }
        let Some(code) = code else {
            let what = if answer.body.trim().is_empty() {
                format!("HTTP {}", answer.status)
            } else {
                format!("HTTP {}: {}", answer.status, excerpt(&answer.body))
            };
            let outcome = if answer.is_success() {
                // 2xx but not the answer SendSms gives: we cannot tell whether it was sent.
                Outcome::Permanent
            } else {
                answer.status_outcome()
            };
            return answer.delivery(outcome, format!("aliyun: {what}"));
        };
        let message = field("Message").unwrap_or_default();
        let outcome = if TRANSIENT_CODES.contains(&code.as_str()) {
            Outcome::Transient
        } else if answer.is_success() {
            Outcome::Permanent
        } else {
            match answer.status_outcome() {
                Outcome::Transient => Outcome::Transient,
                _ => Outcome::Permanent,
            }
        };
        answer.delivery(
            outcome,
            format!("aliyun {code}: {}{request_id}", excerpt(&message)),
        )
    }
}

/// The rendered parameters as the compact JSON object `TemplateParam` takes. Alibaba accepts
/// string values only (`isv.INVALID_JSON_PARAM` otherwise), so numbers and booleans are
/// written as strings; nested values cannot be a template variable and are refused.
fn template_param(rendered: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(rendered.trim()).map_err(|e| {
        format!(
            "the rendered template parameters are not JSON ({e}): {}",
            excerpt(rendered)
        )
    })?;
    let Value::Object(map) = value else {
        return Err("the rendered template parameters are not a JSON object".into());
    };
    let mut out = serde_json::Map::new();
    for (k, v) in map {
        let text = match &v {
            Value::Null => String::new(),
            Value::Array(_) | Value::Object(_) => {
                return Err(format!(
                    "template parameter `{k}` is not a string, number or boolean"
                ));
            }
            other => scalar_text(other).unwrap_or_default(),
        };
        out.insert(k, Value::String(text));
    }
    Ok(Value::Object(out).to_string())
}

/// SmsReport receipts as Alibaba pushes them over HTTP: a JSON array of reports.
pub(super) fn receipts(gateway: &str, body: &[u8]) -> Result<Vec<Receipt>, ReceiptError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    let reports = match value {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return Err(ReceiptError::Malformed(
                "expected a JSON array of reports".into(),
            ));
        }
    };
    reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let text = |name: &str| r.get(name).and_then(scalar_text).filter(|s| !s.is_empty());
            let provider_id = text("biz_id")
                .ok_or_else(|| ReceiptError::Malformed(format!("report {i} has no biz_id")))?;
            let status = match r.get("success") {
                Some(Value::Bool(true)) => ReceiptStatus::Delivered,
                Some(Value::Bool(false)) => ReceiptStatus::Undelivered,
                Some(Value::String(s)) if s == "true" => ReceiptStatus::Delivered,
                Some(Value::String(s)) if s == "false" => ReceiptStatus::Undelivered,
                _ => {
                    return Err(ReceiptError::Malformed(format!(
                        "report {i} has no success flag"
                    )));
                }
            };
            Ok(Receipt {
                gateway: gateway.to_string(),
                provider_id,
                status,
                code: text("err_code"),
                text: text("err_msg"),
                reference: text("out_id"),
            })
        })
        .collect()
}

/// Inbound messages (SmsUp) as Alibaba pushes them over HTTP: a JSON array of
/// `{phone_number, content, send_time, sign_name, dest_code, sequence_id}`; mainland numbers
/// come without `+86`.
pub(super) fn replies(gateway: &str, body: &[u8]) -> Result<Vec<Reply>, ReceiptError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    let items = match value {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return Err(ReceiptError::Malformed(
                "expected a JSON array of messages".into(),
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let phone = m.get("phone_number").and_then(scalar_text).ok_or_else(|| {
                ReceiptError::Malformed(format!("message {i} has no phone_number"))
            })?;
            Ok(Reply {
                gateway: gateway.to_string(),
                from: sender_e164(&phone)
                    .map_err(|e| ReceiptError::Malformed(format!("message {i}: {e}")))?,
                text: m.get("content").and_then(scalar_text).unwrap_or_default(),
                provider_id: m.get("sequence_id").and_then(scalar_text),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Alibaba Cloud's "Request signature" document (RPC API, signature version 1.0), worked
    /// example: DescribeRegions with AccessKeyId `testid`, AccessKeySecret `testsecret`, GET.
    #[test]
    fn signature_matches_the_rpc_signature_document() {
        let params = pairs(&[
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ]);
        assert_eq!(
            sign("GET", &params, "testsecret"),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
    }

    /// The SMS service's own signature example (SendSms with AccessKeyId `testId`,
    /// AccessKeySecret `testSecret`), with its published intermediate strings.
    #[test]
    fn signature_matches_the_sms_signature_example() {
        let params = pairs(&[
            ("AccessKeyId", "testId"),
            ("Action", "SendSms"),
            ("Format", "XML"),
            ("OutId", "123"),
            ("PhoneNumbers", "15300000001"),
            ("RegionId", "cn-hangzhou"),
            ("SignName", "阿里云短信测试专用"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", "SMS_71390007"),
            ("TemplateParam", "{\"customer\":\"test\"}"),
            ("Timestamp", "2017-07-12T02:42:19Z"),
            ("Version", "2017-05-25"),
        ]);
        assert_eq!(
            canonical_query(&params),
            "AccessKeyId=testId&Action=SendSms&Format=XML&OutId=123&PhoneNumbers=15300000001\
             &RegionId=cn-hangzhou&SignName=%E9%98%BF%E9%87%8C%E4%BA%91%E7%9F%AD%E4%BF%A1%E6%B5%8B%E8%AF%95%E4%B8%93%E7%94%A8\
             &SignatureMethod=HMAC-SHA1&SignatureNonce=45e25e9b-0a6f-4070-8c85-2956eda1b466\
             &SignatureVersion=1.0&TemplateCode=SMS_71390007\
             &TemplateParam=%7B%22customer%22%3A%22test%22%7D&Timestamp=2017-07-12T02%3A42%3A19Z\
             &Version=2017-05-25"
        );
        assert_eq!(
            string_to_sign("GET", &params),
            "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123\
             %26PhoneNumbers%3D15300000001%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598%25BF\
             %25E9%2587%258C%25E4%25BA%2591%25E7%259F%25AD%25E4%25BF%25A1%25E6%25B5%258B%25E8\
             %25AF%2595%25E4%25B8%2593%25E7%2594%25A8%26SignatureMethod%3DHMAC-SHA1\
             %26SignatureNonce%3D45e25e9b-0a6f-4070-8c85-2956eda1b466%26SignatureVersion%3D1.0\
             %26TemplateCode%3DSMS_71390007%26TemplateParam%3D%257B%2522customer%2522%253A\
             %2522test%2522%257D%26Timestamp%3D2017-07-12T02%253A42%253A19Z%26Version%3D2017-05-25"
        );
        assert_eq!(
            sign("GET", &params, "testSecret"),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
        // The method is part of what is signed.
        assert_ne!(
            sign("POST", &params, "testSecret"),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
    }

    #[test]
    fn percent_encoding_rules() {
        for (raw, want) in [
            ("a b", "a%20b"),
            ("a+b", "a%2Bb"),
            ("a*b", "a%2Ab"),
            ("a~b", "a~b"),
            ("-_.", "-_."),
            ("/", "%2F"),
            ("=&", "%3D%26"),
            ("好", "%E5%A5%BD"),
        ] {
            assert_eq!(percent_encode(raw), want, "{raw}");
        }
    }

    #[test]
    fn phone_numbers_for_aliyun() {
        assert_eq!(phone_number("+8613800138000"), "13800138000");
        assert_eq!(phone_number("+85291234567"), "85291234567");
        assert_eq!(phone_number("+14155550100"), "14155550100");
    }

    #[test]
    fn template_params_are_string_valued_objects() {
        assert_eq!(
            template_param(r#" {"name": "王芳", "n": 3, "ok": true, "none": null} "#).unwrap(),
            r#"{"n":"3","name":"王芳","none":"","ok":"true"}"#
        );
        assert!(
            template_param("[1]")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(template_param("name: x").unwrap_err().contains("not JSON"));
        assert!(
            template_param(r#"{"a":{"b":1}}"#)
                .unwrap_err()
                .contains("`a`")
        );
    }

    #[test]
    fn sms_reports_become_receipts() {
        let body = r#"[
          {"phone_number":"1381111****","send_time":"2017-01-01 00:00:00","report_time":"2017-01-01 00:00:00",
           "success":true,"err_code":"DELIVERED","err_msg":"用户接收成功","sms_size":"1","biz_id":"12345^0","out_id":"01JMSG"},
          {"phone_number":"1381111****","send_time":"2017-01-01 00:00:00","report_time":"2017-01-01 00:00:09",
           "success":false,"err_code":"MK:0001","err_msg":"空号","sms_size":"1","biz_id":"12346^0","out_id":""}
        ]"#;
        let r = receipts("aliyun", body.as_bytes()).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            Receipt {
                gateway: "aliyun".into(),
                provider_id: "12345^0".into(),
                status: ReceiptStatus::Delivered,
                code: Some("DELIVERED".into()),
                text: Some("用户接收成功".into()),
                reference: Some("01JMSG".into()),
            }
        );
        assert_eq!(r[1].status, ReceiptStatus::Undelivered);
        assert_eq!(r[1].code.as_deref(), Some("MK:0001"));
        assert_eq!(r[1].reference, None);
        assert!(receipts("aliyun", b"[{\"success\":true}]").is_err());
        assert!(receipts("aliyun", b"[{\"biz_id\":\"1\"}]").is_err());
        assert!(receipts("aliyun", b"not json").is_err());
    }
}
