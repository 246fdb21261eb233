//! Twilio Programmable Messaging: sending, and reading status callbacks.
//!
//! Sending is `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded
//! `To`, `From` (or `MessagingServiceSid`), `Body` and `StatusCallback`, with HTTP basic auth
//! AccountSid:AuthToken. Twilio answers 201 with the message resource (`sid`, `status`,
//! `error_code`, `error_message`) or an error resource (`code`, `message`, `more_info`), whose
//! code we keep in the detail so support can look it up ("21211: invalid To number", "21610:
//! the customer replied STOP").
//!
//! Status callbacks are signed: `X-Twilio-Signature` is base64(HMAC-SHA1(auth token, the full
//! callback URL followed by each POST parameter's name and value, sorted by name)). A name
//! given several times contributes its distinct values in sorted order, as Twilio's own
//! validators do. Twilio may have signed the URL with or without an explicit default port, so
//! both forms are tried, again like its libraries.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

pub mod settings;

use super::outcome::{Redactor, excerpt, exchange, scalar_text};
use super::receipt::{Receipt, ReceiptError, ReceiptStatus};
use super::reply::{Reply, sender_e164};
use super::{SmsMessage, encoding};
use crate::channels::Delivery;
use crate::model::Outcome;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Url;
use settings::{TwilioConfig, TwilioSender};
use sha1::Sha1;
use std::time::Duration;

pub(super) struct Twilio {
    messages_url: Url,
    account_sid: String,
    auth_token: String,
    sender: TwilioSender,
    /// The gateway's own `status_callback`.
    configured_status_callback: Option<String>,
    /// What each send asks Twilio to call: the configured one, else `api.public_url` + the
    /// receipts path.
    status_callback: Option<String>,
}

/// A message ready to post: the form fields, and the text's cost for the detail.
pub(super) struct Prepared {
    form: Vec<(&'static str, String)>,
    segments: encoding::Segments,
}

impl Twilio {
    pub(super) fn new(
        cfg: &TwilioConfig,
        auth_token: String,
        public_status_url: Option<&str>,
    ) -> Twilio {
        let mut messages_url = cfg.base_url.clone();
        if let Ok(mut path) = messages_url.path_segments_mut() {
            path.pop_if_empty().extend([
                "2010-04-01",
                "Accounts",
                &cfg.account_sid,
                "Messages.json",
            ]);
        }
        Twilio {
            messages_url,
            account_sid: cfg.account_sid.clone(),
            auth_token,
            sender: cfg.sender.clone(),
            configured_status_callback: cfg.status_callback.clone(),
            status_callback: cfg
                .status_callback
                .clone()
                .or(public_status_url.map(str::to_string)),
        }
    }

    pub(super) fn redactor(&self) -> Redactor {
        Redactor::new(&[&self.auth_token]).with_basic(&self.account_sid, &self.auth_token)
    }

    /// The receipts URL the gateway's settings name (Twilio signs callbacks with it).
    pub(super) fn configured_status_callback(&self) -> Option<&str> {
        self.configured_status_callback.as_deref()
    }

    pub(super) fn auth_token(&self) -> &str {
        &self.auth_token
    }

    pub(super) fn prepare(&self, msg: &SmsMessage) -> Result<Prepared, String> {
        let text = match msg.text.as_deref() {
            Some(t) if !t.trim().is_empty() => t,
            Some(_) => return Err("the text is empty".into()),
            None => return Err("twilio sends text and this message has none".into()),
        };
        let mut form = vec![("To", msg.to.clone())];
        match &self.sender {
            TwilioSender::From(f) => form.push(("From", f.clone())),
            TwilioSender::MessagingService(s) => form.push(("MessagingServiceSid", s.clone())),
        }
        form.push(("Body", text.to_string()));
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb.clone()));
        }
        Ok(Prepared {
            form,
            segments: encoding::segments(text),
        })
    }

    pub(super) async fn send(
        &self,
        client: &reqwest::Client,
        p: Prepared,
        timeout: Duration,
        redactor: &Redactor,
    ) -> Delivery {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(p.form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let request = client
            .post(self.messages_url.clone())
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
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
        if answer.is_success() {
            let status = field("status").unwrap_or_else(|| "accepted".into());
            if matches!(status.as_str(), "failed" | "undelivered" | "canceled") {
                let code = field("error_code").unwrap_or_else(|| "?".into());
                let text = field("error_message").unwrap_or_default();
                return answer.delivery(
                    Outcome::Permanent,
                    format!("twilio says {status}: error {code} {text}")
                        .trim_end()
                        .to_string(),
                );
            }
            let mut d = answer.delivery(Outcome::Sent, format!("{status}; {}", p.segments));
            d.provider_id = field("sid");
            if d.provider_id.is_none() {
                d.detail = format!(
                    "{}; no sid in the answer: {}",
                    d.detail,
                    excerpt(&answer.body)
                );
            }
            return d;
        }
        let detail = match (field("code"), field("message")) {
            (Some(code), Some(message)) => {
                let more = field("more_info")
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                format!("twilio error {code}: {message}{more}")
            }
            _ if answer.body.trim().is_empty() => format!("HTTP {}", answer.status),
            _ => format!("HTTP {}: {}", answer.status, excerpt(&answer.body)),
        };
        answer.delivery(answer.status_outcome(), detail)
    }
}

/// `X-Twilio-Signature` for a request to `url` with these POST parameters.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mac = mac(auth_token, url, params);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// Whether `given` is Twilio's signature of this request, compared in constant time.
pub fn signature_matches(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    given: &str,
) -> bool {
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(given.trim()) else {
        return false;
    };
    port_variants(url)
        .iter()
        .any(|u| mac(auth_token, u, params).verify_slice(&tag).is_ok())
}

/// The URL as given, and with its default port added or removed (`https://h/x` ⇄
/// `https://h:443/x`): the form Twilio signed depends on how the callback URL was written.
fn port_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    let (host, port) = match authority.get(host_end..).and_then(|h| h.rfind(':')) {
        Some(i) => authority.split_at(host_end + i),
        None => (authority, ""),
    };
    match port.strip_prefix(':') {
        Some(p) if p == default => out.push(format!("{scheme}://{host}{tail}")),
        Some(_) => {}
        None => out.push(format!("{scheme}://{authority}:{default}{tail}")),
    }
    out
}

/// The form parameters of a callback body.
pub(super) fn form_params(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A verified status callback as a receipt.
pub(super) fn receipt(
    gateway: &str,
    auth_token: &str,
    url: &str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Receipt, ReceiptError> {
    let params = form_params(body);
    let given = signature.ok_or(ReceiptError::MissingSignature)?;
    if !signature_matches(auth_token, url, &params, given) {
        return Err(ReceiptError::BadSignature);
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let provider_id = get("MessageSid")
        .or_else(|| get("SmsSid"))
        .ok_or_else(|| ReceiptError::Malformed("no MessageSid".into()))?;
    let raw_status = get("MessageStatus")
        .or_else(|| get("SmsStatus"))
        .ok_or_else(|| ReceiptError::Malformed("no MessageStatus".into()))?;
    let status = match raw_status.as_str() {
        "delivered" | "read" => ReceiptStatus::Delivered,
        "undelivered" | "failed" | "canceled" => ReceiptStatus::Undelivered,
        _ => ReceiptStatus::Pending,
    };
    let code = get("ErrorCode");
    let text = get("ErrorMessage")
        .or_else(|| code.as_deref().and_then(error_text).map(str::to_string))
        .or_else(|| Some(raw_status.clone()));
    Ok(Receipt {
        gateway: gateway.to_string(),
        provider_id,
        status,
        code,
        text,
        reference: None,
    })
}

/// A verified incoming message (Twilio's messaging webhook: `From`, `Body`, signed like a
/// status callback, but for the URL configured on the number).
pub(super) fn reply(
    gateway: &str,
    auth_token: &str,
    url: &str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Reply, ReceiptError> {
    let params = form_params(body);
    let given = signature.ok_or(ReceiptError::MissingSignature)?;
    if !signature_matches(auth_token, url, &params, given) {
        return Err(ReceiptError::BadSignature);
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let from = get("From").ok_or_else(|| ReceiptError::Malformed("no From".into()))?;
    Ok(Reply {
        gateway: gateway.to_string(),
        from: sender_e164(&from).map_err(ReceiptError::Malformed)?,
        text: get("Body").unwrap_or_default(),
        provider_id: get("MessageSid"),
    })
}

/// What Twilio's common delivery error codes mean, for support reading the log.
fn error_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "30001" => "queue overflow",
        "30002" => "account suspended",
        "30003" => "unreachable destination handset",
        "30004" => "message blocked by the recipient or carrier",
        "30005" => "unknown destination handset",
        "30006" => "landline or unreachable carrier",
        "30007" => "filtered by the carrier",
        "30008" => "unknown error",
        "21610" => "the recipient replied STOP",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    /// The worked example of Twilio's webhook security guide
    /// (twilio.com/docs/usage/security, "Validating requests"): auth token 12345.
    #[test]
    fn signature_matches_the_security_guide_example() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            signature("12345", URL, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    /// The vectors of Twilio's own validators (twilio-php and twilio-python
    /// RequestValidatorTest): out-of-order parameters, then a repeated name.
    #[test]
    fn signature_matches_twilios_library_vectors() {
        let params = pairs(&[
            ("To", "+18005551212"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
        ]);
        assert_eq!(
            signature("12345", URL, &params),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        let repeated = pairs(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            signature("12345", URL, &repeated),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn validation_rejects_any_change() {
        let params = pairs(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]);
        let sig = signature("tok", "https://h.example/cb", &params);
        assert!(signature_matches(
            "tok",
            "https://h.example/cb",
            &params,
            &sig
        ));
        assert!(signature_matches(
            "tok",
            "https://h.example:443/cb",
            &params,
            &sig
        ));
        assert!(!signature_matches(
            "tok2",
            "https://h.example/cb",
            &params,
            &sig
        ));
        assert!(!signature_matches(
            "tok",
            "https://h.example/cb2",
            &params,
            &sig
        ));
        let changed = pairs(&[("MessageSid", "SM1"), ("MessageStatus", "failed")]);
        assert!(!signature_matches(
            "tok",
            "https://h.example/cb",
            &changed,
            &sig
        ));
        assert!(!signature_matches(
            "tok",
            "https://h.example/cb",
            &params,
            "not base64!"
        ));
        assert!(!signature_matches(
            "tok",
            "https://h.example/cb",
            &params,
            ""
        ));
    }

    #[test]
    fn port_variants_table() {
        assert_eq!(
            port_variants("https://a.example/x?y=1"),
            ["https://a.example/x?y=1", "https://a.example:443/x?y=1"]
        );
        assert_eq!(
            port_variants("https://a.example:443/x"),
            ["https://a.example:443/x", "https://a.example/x"]
        );
        assert_eq!(
            port_variants("http://a.example"),
            ["http://a.example", "http://a.example:80"]
        );
        assert_eq!(
            port_variants("http://a.example:8080/x"),
            ["http://a.example:8080/x"]
        );
        assert_eq!(
            port_variants("https://[::1]/x"),
            ["https://[::1]/x", "https://[::1]:443/x"]
        );
    }

    #[test]
    fn each_send_names_the_receipts_url_the_configured_one_first() {
        let cfg = |status_callback: Option<&str>| TwilioConfig {
            base_url: Url::parse("https://api.twilio.com").unwrap(),
            account_sid: "AC1".into(),
            auth_token: crate::values::Secret::None,
            sender: TwilioSender::MessagingService("MG1".into()),
            status_callback: status_callback.map(str::to_string),
        };
        let msg = SmsMessage {
            to: "+15005550006".into(),
            text: Some("hi".into()),
            template: None,
            reference: "m1".into(),
        };
        let callback = |t: &Twilio| {
            let p = t.prepare(&msg).unwrap();
            p.form
                .iter()
                .find(|(k, _)| *k == "StatusCallback")
                .map(|(_, v)| v.clone())
        };
        let public = Some("https://shop.example/hooks/sms/tw/status");
        // A Messaging Service without its own callback: api.public_url + the receipts path.
        let t = Twilio::new(&cfg(None), "tok".into(), public);
        assert_eq!(callback(&t).as_deref(), public);
        assert_eq!(t.configured_status_callback(), None);
        // The gateway's own wins, and is what signatures are checked against.
        let own = "https://proxy.example/twilio-receipts";
        let t = Twilio::new(&cfg(Some(own)), "tok".into(), public);
        assert_eq!(callback(&t).as_deref(), Some(own));
        assert_eq!(t.configured_status_callback(), Some(own));
        // Neither: no StatusCallback (the Messaging Service's console setting applies).
        let t = Twilio::new(&cfg(None), "tok".into(), None);
        assert_eq!(callback(&t), None);
    }

    #[test]
    fn status_callbacks_become_receipts() {
        let url = "https://shop.example/sms/status";
        let sign = |body: &str| signature("tok", url, &form_params(body.as_bytes()));
        for (body, status, code, text) in [
            (
                "MessageSid=SM1&MessageStatus=delivered&AccountSid=AC1",
                ReceiptStatus::Delivered,
                None,
                Some("delivered"),
            ),
            (
                "MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30003",
                ReceiptStatus::Undelivered,
                Some("30003"),
                Some("unreachable destination handset"),
            ),
            (
                "SmsSid=SM1&SmsStatus=sent",
                ReceiptStatus::Pending,
                None,
                Some("sent"),
            ),
            (
                "MessageSid=SM1&MessageStatus=failed&ErrorCode=99999",
                ReceiptStatus::Undelivered,
                Some("99999"),
                Some("failed"),
            ),
        ] {
            let r = receipt("tw", "tok", url, Some(&sign(body)), body.as_bytes()).unwrap();
            assert_eq!(r.provider_id, "SM1");
            assert_eq!(r.gateway, "tw");
            assert_eq!(r.status, status, "{body}");
            assert_eq!(r.code.as_deref(), code, "{body}");
            assert_eq!(r.text.as_deref(), text, "{body}");
        }
        let body = b"MessageSid=SM1&MessageStatus=delivered";
        assert_eq!(
            receipt("tw", "tok", url, None, body),
            Err(ReceiptError::MissingSignature)
        );
        let forged = signature("other", url, &form_params(body));
        assert_eq!(
            receipt("tw", "tok", url, Some(&forged), body),
            Err(ReceiptError::BadSignature)
        );
        let no_sid = b"MessageStatus=delivered";
        let sig = signature("tok", url, &form_params(no_sid));
        assert!(matches!(
            receipt("tw", "tok", url, Some(&sig), no_sid),
            Err(ReceiptError::Malformed(_))
        ));
    }
}
