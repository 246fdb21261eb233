//! The email providers' bounce and complaint webhooks, each in its documented wire format,
//! each with its own proof of origin:
//! - Amazon SES through SNS: the notification is signed with the private key of a
//!   certificate SNS publishes at `SigningCertURL`; the URL must be https on
//!   `sns.<region>.amazonaws.com` and end in `.pem` (SNS's rules), the signature is over the
//!   canonical string of the notification's fields (SHA1withRSA for `SignatureVersion` 1,
//!   SHA256withRSA for 2). A `SubscriptionConfirmation` is confirmed by fetching its
//!   `SubscribeURL` (after the same check).
//! - SendGrid's Signed Event Webhook: ECDSA P-256 over `timestamp + body`, the signature
//!   in `X-Twilio-Email-Event-Webhook-Signature` (base64 DER).
//! - Mailgun: HMAC-SHA256 of `timestamp + token` with the webhook signing key, in the body.
//! - Postmark: HTTP basic auth in the URL we gave it.

use super::super::bounce::{self, BounceKind};
use super::{Matcher, Report};
use crate::values::same_secret;
use base64::Engine;
use serde_json::Value;
use std::sync::Mutex;

/// Why a webhook request is refused.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// 401: the request cannot prove it comes from the provider.
    #[error("{0}")]
    Forged(String),
    /// 400: not in the provider's format.
    #[error("{0}")]
    Malformed(String),
    /// 502: we could not fetch what we need to check it (the SNS certificate).
    #[error("{0}")]
    Upstream(String),
}

fn forged(s: impl Into<String>) -> HookError {
    HookError::Forged(s.into())
}
fn malformed(s: impl Into<String>) -> HookError {
    HookError::Malformed(s.into())
}

fn b64(s: &str) -> Result<Vec<u8>, HookError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| forged(format!("not base64: {e}")))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A provider's signed timestamp (Unix seconds) is within `tolerance` (said as `window`) of
/// now: further off, the signed request is a replay, or a clock is wrong.
fn signed_recently(
    provider: &str,
    ts: &str,
    now: chrono::DateTime<chrono::Utc>,
    tolerance: chrono::Duration,
    window: &str,
) -> Result<(), HookError> {
    let signed_at = ts
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0));
    if signed_at.is_none_or(|at| (now - at).abs() > tolerance) {
        return Err(forged(format!(
            "the {provider} signature's timestamp `{}` is more than {window} from now: a replay, or a clock that is wrong",
            crate::text::printable(ts)
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- Mailgun

/// How far a Mailgun signature's timestamp may be from now. The signature covers the
/// timestamp and token, not the event: a signature block seen once (a stored raw report, a
/// log) could carry any event of the caller's. Mailgun retries a webhook for 8 hours.
pub const MAILGUN_TOLERANCE: chrono::Duration = chrono::Duration::hours(24);

/// Check Mailgun's signature block (and that it is recent, [`MAILGUN_TOLERANCE`]) and read
/// its event (`failed`, `complained`). Also the block's one-time token: the caller refuses
/// one used before with another event (`Store::use_hook_token`), which the signature, over
/// timestamp and token only, cannot tell.
pub fn mailgun(
    body: &[u8],
    key: &str,
    m: &Matcher,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Vec<Report>, String), HookError> {
    use hmac::{KeyInit, Mac};
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let sig = v
        .get("signature")
        .ok_or_else(|| forged("no signature block"))?;
    let (Some(ts), Some(token), Some(signature)) = (
        str_of(sig, "timestamp"),
        str_of(sig, "token"),
        str_of(sig, "signature"),
    ) else {
        return Err(forged(
            "the signature block needs timestamp, token and signature",
        ));
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
        .map_err(|e| forged(format!("bad key: {e}")))?;
    mac.update(ts.as_bytes());
    mac.update(token.as_bytes());
    let want = hex::encode(mac.finalize().into_bytes());
    if !same_secret(want.as_bytes(), signature.to_ascii_lowercase().as_bytes()) {
        return Err(forged(
            "the Mailgun signature does not match the signing key",
        ));
    }
    signed_recently("Mailgun", ts, now, MAILGUN_TOLERANCE, "a day")?;
    let token = token.to_string();
    let e = v
        .get("event-data")
        .ok_or_else(|| malformed("no event-data"))?;
    let event = str_of(e, "event").unwrap_or_default();
    let Some(address) = str_of(e, "recipient") else {
        return Ok((Vec::new(), token));
    };
    let message_id = e
        .pointer("/message/headers/message-id")
        .and_then(Value::as_str);
    let ds = e.get("delivery-status");
    let code = ds.and_then(|d| d.get("code")).and_then(Value::as_i64);
    let text = ds
        .and_then(|d| {
            str_of(d, "message")
                .filter(|s| !s.is_empty())
                .or(str_of(d, "description"))
        })
        .unwrap_or_default()
        .to_string();
    let kind = match event {
        "complained" => Some(BounceKind::Complaint),
        "failed" => {
            let c = bounce::classify(code.or(Some(550)), &text).map(|b| b.kind);
            match (str_of(e, "severity"), c) {
                // Mailgun's "temporary" failures are retried by Mailgun itself.
                (Some("temporary"), Some(BounceKind::Hard)) => Some(BounceKind::Soft),
                (_, c) => c,
            }
        }
        _ => None,
    };
    let reports = kind
        .map(|kind| Report {
            kind,
            source: "mailgun",
            address: address.to_string(),
            status: bounce::enhanced_status(&text),
            code,
            detail: if text.is_empty() {
                event.to_string()
            } else {
                text
            },
            outbox_id: message_id.and_then(|i| m.from_message_id(i)),
            provider_id: message_id.map(Matcher::provider_id),
            report_id: str_of(e, "id").map(str::to_string),
            raw: String::from_utf8_lossy(body).into_owned(),
        })
        .into_iter()
        .collect();
    Ok((reports, token))
}

// ---------------------------------------------------------------- Postmark

/// Check Postmark's basic auth (`Authorization` header) and read a Bounce or SpamComplaint.
pub fn postmark(
    body: &[u8],
    authorization: Option<&str>,
    user: &str,
    password: &str,
    m: &Matcher,
) -> Result<Vec<Report>, HookError> {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    if !authorization.is_some_and(|a| same_secret(a.trim().as_bytes(), want.as_bytes())) {
        return Err(forged("basic auth does not match email.webhooks.postmark"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let record = str_of(&v, "RecordType").unwrap_or_default();
    let ty = str_of(&v, "Type").unwrap_or_default();
    let kind = match (record, ty) {
        ("SpamComplaint", _) | (_, "SpamComplaint") => Some(BounceKind::Complaint),
        ("Bounce", "HardBounce" | "BadEmailAddress" | "ManuallyDeactivated") => {
            Some(BounceKind::Hard)
        }
        ("Bounce", "SoftBounce" | "Transient" | "DnsError" | "AutoResponder") => {
            Some(BounceKind::Soft)
        }
        ("Bounce", "Blocked" | "SpamNotification" | "ContentRelated" | "VirusNotification") => {
            Some(BounceKind::Policy)
        }
        ("Bounce", _) => {
            let details = str_of(&v, "Details").unwrap_or_default();
            bounce::classify(None, details).map(|b| b.kind)
        }
        _ => None,
    };
    let Some(address) = str_of(&v, "Email") else {
        return Ok(Vec::new());
    };
    let details = str_of(&v, "Details")
        .filter(|d| !d.is_empty())
        .or(str_of(&v, "Description"))
        .unwrap_or(ty);
    // Mail sent through Postmark's SMTP keeps our Message-ID in the headers it reports.
    let our_id = v
        .get("Headers")
        .and_then(Value::as_array)
        .and_then(|hs| {
            hs.iter()
                .find(|h| str_of(h, "Name").is_some_and(|n| n.eq_ignore_ascii_case("Message-ID")))
        })
        .and_then(|h| str_of(h, "Value"));
    Ok(kind
        .map(|kind| Report {
            kind,
            source: "postmark",
            address: address.to_string(),
            status: bounce::enhanced_status(details),
            code: None,
            detail: format!("{ty}: {details}"),
            outbox_id: our_id.and_then(|i| m.from_message_id(i)),
            provider_id: our_id.map(Matcher::provider_id),
            report_id: v.get("ID").map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            raw: String::from_utf8_lossy(body).into_owned(),
        })
        .into_iter()
        .collect())
}

// ---------------------------------------------------------------- SendGrid

/// How far a SendGrid signature's timestamp may be from now. The signature covers the
/// timestamp and the events, so a signed request can only be sent again as it is: within this
/// window each event still counts once (its `sg_event_id` is the bounce's report id), and
/// after it, once retention may have purged those bounces, the request is refused. SendGrid
/// retries a POST that failed for up to a day; three days leave room for that and for a clock
/// that is off.
pub const SENDGRID_TOLERANCE: chrono::Duration = chrono::Duration::days(3);

/// Check SendGrid's ECDSA signature (and that it is recent, [`SENDGRID_TOLERANCE`]) and read
/// its events (`bounce`, `dropped`, `spamreport`).
pub fn sendgrid(
    body: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
    public_key_b64: &str,
    m: &Matcher,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Report>, HookError> {
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(forged(
            "no X-Twilio-Email-Event-Webhook-Signature and -Timestamp headers",
        ));
    };
    let spki = b64(public_key_b64)?;
    use x509_parser::prelude::FromDer;
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).map_err(|e| {
        forged(format!(
            "email.webhooks.sendgrid.public_key is no public key: {e}"
        ))
    })?;
    let point = info.subject_public_key.data.to_vec();
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(&signed, &b64(signature)?)
        .map_err(|_| forged("the SendGrid signature does not match the verification key"))?;
    signed_recently("SendGrid", timestamp, now, SENDGRID_TOLERANCE, "three days")?;
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let events = v
        .as_array()
        .ok_or_else(|| malformed("not a JSON array of events"))?;
    let mut out = Vec::new();
    for e in events {
        let event = str_of(e, "event").unwrap_or_default();
        let Some(address) = str_of(e, "email") else {
            continue;
        };
        let reason = str_of(e, "reason").unwrap_or_default().to_string();
        let status = str_of(e, "status").map(str::to_string);
        let code = reason
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<i64>().ok())
            .filter(|c| (400..600).contains(c));
        let kind = match (event, str_of(e, "type")) {
            ("spamreport", _) => Some(BounceKind::Complaint),
            ("bounce", Some("blocked")) => Some(BounceKind::Policy),
            ("bounce", _) => bounce::classify(
                code.or(Some(550)),
                &format!("{} {reason}", status.clone().unwrap_or_default()),
            )
            .map(|b| b.kind),
            _ => None,
        };
        let Some(kind) = kind else { continue };
        let smtp_id = str_of(e, "smtp-id");
        out.push(Report {
            kind,
            source: "sendgrid",
            address: address.to_string(),
            status: status.or_else(|| bounce::enhanced_status(&reason)),
            code,
            detail: if reason.is_empty() {
                event.to_string()
            } else {
                reason
            },
            outbox_id: smtp_id.and_then(|i| m.from_message_id(i)),
            provider_id: smtp_id.map(Matcher::provider_id),
            report_id: str_of(e, "sg_event_id").map(str::to_string),
            raw: e.to_string(),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------- Amazon SES via SNS

/// What an SNS request asks of us.
#[derive(Debug)]
pub enum Sns {
    Reports(Vec<Report>),
    /// Confirm the subscription by fetching this URL (checked like the certificate's).
    Confirm(String),
    Ignored(String),
}

/// SNS's signing certificates, by URL: fetched once.
#[derive(Default)]
pub struct CertCache(Mutex<Vec<(String, Vec<u8>)>>);

/// SNS's rule for `SigningCertURL` and `SubscribeURL`: https on `sns.<region>.amazonaws.com`
/// (or `.amazonaws.com.cn`). `test_prefix` (tests only) also admits URLs starting with it.
pub fn sns_url_ok(url: &str, cert: bool, test_prefix: Option<&str>) -> bool {
    if test_prefix.is_some_and(|p| !p.is_empty() && url.starts_with(p)) {
        return true;
    }
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = u.host_str().unwrap_or_default().to_ascii_lowercase();
    let region_host = host
        .strip_prefix("sns.")
        .and_then(|h| {
            h.strip_suffix(".amazonaws.com")
                .or_else(|| h.strip_suffix(".amazonaws.com.cn"))
        })
        .is_some_and(|region| {
            region.len() >= 3
                && region
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    u.scheme() == "https"
        && region_host
        && u.port().is_none()
        && (!cert || u.path().ends_with(".pem"))
}

/// The string SNS signs: the listed fields that are present, `Name\nvalue\n` each.
fn canonical(v: &Value, ty: &str) -> Result<String, HookError> {
    let keys: &[&str] = match ty {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
        other => return Err(malformed(format!("unknown SNS message type `{other}`"))),
    };
    let mut s = String::new();
    for k in keys {
        match str_of(v, k) {
            Some(val) => {
                s.push_str(k);
                s.push('\n');
                s.push_str(val);
                s.push('\n');
            }
            None if *k == "Subject" => {}
            None => return Err(malformed(format!("the SNS message has no {k}"))),
        }
    }
    Ok(s)
}

/// Check an SNS request's signature (fetching the certificate if need be) and read the SES
/// notification it carries.
pub async fn ses(
    body: &[u8],
    hook: &super::super::feedback_settings::SesHook,
    certs: &CertCache,
    http: &reqwest::Client,
    m: &Matcher,
) -> Result<Sns, HookError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let ty = str_of(&v, "Type").ok_or_else(|| malformed("no Type: not an SNS message"))?;
    let url = str_of(&v, "SigningCertURL").ok_or_else(|| forged("no SigningCertURL"))?;
    let test_prefix = hook.insecure_test_cert_url_prefix.as_deref();
    if !sns_url_ok(url, true, test_prefix) {
        return Err(forged(format!(
            "SigningCertURL `{}` is not an SNS certificate URL (https://sns.<region>.amazonaws.com/….pem)",
            crate::text::printable(url)
        )));
    }
    let algorithm: &dyn ring::signature::VerificationAlgorithm =
        match str_of(&v, "SignatureVersion") {
            Some("1") => &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Some("2") => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            other => {
                return Err(forged(format!(
                    "SignatureVersion {:?} is not 1 or 2",
                    other.unwrap_or("(none)")
                )));
            }
        };
    let signature = b64(str_of(&v, "Signature").ok_or_else(|| forged("no Signature"))?)?;
    let canonical = canonical(&v, ty)?;
    let pem = cert(url, certs, http).await?;
    let key = public_key(&pem)?;
    ring::signature::UnparsedPublicKey::new(algorithm, key)
        .verify(canonical.as_bytes(), &signature)
        .map_err(|_| forged("the SNS signature does not match the signing certificate"))?;
    let topic = str_of(&v, "TopicArn").unwrap_or_default();
    if !hook.topic_arns.iter().any(|t| t == topic) {
        return Err(forged(format!(
            "topic `{}` is not in email.webhooks.ses.topic_arns",
            crate::text::printable(topic)
        )));
    }
    match ty {
        "SubscriptionConfirmation" => {
            let url = str_of(&v, "SubscribeURL").ok_or_else(|| malformed("no SubscribeURL"))?;
            if !sns_url_ok(url, false, test_prefix) {
                return Err(forged("SubscribeURL is not on an SNS host"));
            }
            return Ok(Sns::Confirm(url.to_string()));
        }
        "Notification" => {}
        other => return Ok(Sns::Ignored(format!("SNS {other}"))),
    }
    let message = str_of(&v, "Message").unwrap_or_default();
    let n: Value = serde_json::from_str(message)
        .map_err(|e| malformed(format!("Message is not SES JSON: {e}")))?;
    Ok(Sns::Reports(ses_notification(&n, body, m)))
}

/// An SES notification (`notificationType`, or `eventType` for event publishing).
fn ses_notification(n: &Value, body: &[u8], m: &Matcher) -> Vec<Report> {
    let ty = str_of(n, "notificationType")
        .or(str_of(n, "eventType"))
        .unwrap_or_default();
    let our_id = n
        .pointer("/mail/commonHeaders/messageId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            n.pointer("/mail/headers")
                .and_then(Value::as_array)
                .and_then(|hs| {
                    hs.iter()
                        .find(|h| {
                            str_of(h, "name").is_some_and(|x| x.eq_ignore_ascii_case("Message-ID"))
                        })
                        .and_then(|h| str_of(h, "value"))
                        .map(str::to_string)
                })
        });
    let raw = String::from_utf8_lossy(body).into_owned();
    let base =
        |kind, address: &str, status, code, detail: String, report_id: Option<String>| Report {
            kind,
            source: "ses",
            address: address.to_string(),
            status,
            code,
            detail,
            outbox_id: our_id.as_deref().and_then(|i| m.from_message_id(i)),
            provider_id: our_id.as_deref().map(Matcher::provider_id),
            report_id,
            raw: raw.clone(),
        };
    let mut out = Vec::new();
    match ty {
        "Bounce" => {
            let b = n.get("bounce").cloned().unwrap_or_default();
            let bounce_type = str_of(&b, "bounceType").unwrap_or_default();
            let sub = str_of(&b, "bounceSubType").unwrap_or_default();
            let feedback = str_of(&b, "feedbackId").map(str::to_string);
            for (i, r) in b
                .get("bouncedRecipients")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some(address) = str_of(r, "emailAddress") else {
                    continue;
                };
                let diag = str_of(r, "diagnosticCode").unwrap_or_default();
                let diag = diag.split_once(';').map(|(_, t)| t.trim()).unwrap_or(diag);
                let status = str_of(r, "status").map(str::to_string);
                let code = diag
                    .split_whitespace()
                    .next()
                    .and_then(|w| w.parse::<i64>().ok())
                    .filter(|c| (400..600).contains(c));
                let kind = match bounce_type {
                    "Permanent" => match bounce::classify(
                        code.or(Some(550)),
                        &format!("{} {diag}", status.clone().unwrap_or_default()),
                    )
                    .map(|b| b.kind)
                    {
                        Some(BounceKind::Policy) => BounceKind::Policy,
                        _ => BounceKind::Hard,
                    },
                    _ => BounceKind::Soft,
                };
                let detail = if diag.is_empty() {
                    format!("{bounce_type}/{sub}")
                } else {
                    format!("{bounce_type}/{sub}: {diag}")
                };
                out.push(base(
                    kind,
                    address,
                    status,
                    code,
                    detail,
                    feedback.as_ref().map(|f| format!("{f}/{}", i + 1)),
                ));
            }
        }
        "Complaint" => {
            let c = n.get("complaint").cloned().unwrap_or_default();
            let feedback = str_of(&c, "feedbackId").map(str::to_string);
            let fty = str_of(&c, "complaintFeedbackType").unwrap_or("abuse");
            if !super::complains(fty) {
                return out;
            }
            for (i, r) in c
                .get("complainedRecipients")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(address) = str_of(r, "emailAddress") {
                    out.push(base(
                        BounceKind::Complaint,
                        address,
                        None,
                        None,
                        format!("feedback-type {fty}"),
                        feedback.as_ref().map(|f| format!("{f}/{}", i + 1)),
                    ));
                }
            }
        }
        _ => {}
    }
    out
}

async fn cert(url: &str, certs: &CertCache, http: &reqwest::Client) -> Result<Vec<u8>, HookError> {
    if let Some((_, pem)) = certs
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(u, _)| u == url)
    {
        return Ok(pem.clone());
    }
    let r = http
        .get(url)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| HookError::Upstream(format!("cannot fetch the SNS certificate: {e}")))?;
    if !r.status().is_success() {
        return Err(HookError::Upstream(format!(
            "the SNS certificate URL answered {}",
            r.status()
        )));
    }
    let pem = r
        .bytes()
        .await
        .map_err(|e| HookError::Upstream(format!("cannot read the SNS certificate: {e}")))?
        .to_vec();
    let mut c = certs
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if c.len() > 64 {
        c.clear();
    }
    c.push((url.to_string(), pem.clone()));
    Ok(pem)
}

/// The RSA public key (PKCS#1 DER, as ring wants it) of a PEM certificate.
fn public_key(pem: &[u8]) -> Result<Vec<u8>, HookError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| forged(format!("the SNS certificate is not PEM: {e}")))?;
    let cert = p
        .parse_x509()
        .map_err(|e| forged(format!("the SNS certificate is not X.509: {e}")))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_urls_follow_snss_rules() {
        let ok = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem";
        assert!(sns_url_ok(ok, true, None));
        for bad in [
            "http://sns.us-west-2.amazonaws.com/x.pem",
            "https://sns.us-west-2.amazonaws.com.evil.com/x.pem",
            "https://evil.com/sns.us-west-2.amazonaws.com/x.pem",
            "https://sns.us-west-2.amazonaws.com/x.txt",
            "https://sns.us-west-2.amazonaws.com:8443/x.pem",
            "https://s3.amazonaws.com/x.pem",
        ] {
            assert!(!sns_url_ok(bad, true, None), "{bad}");
        }
        assert!(sns_url_ok(
            "http://127.0.0.1:9/c.pem",
            true,
            Some("http://127.0.0.1:9/")
        ));
        assert!(!sns_url_ok("http://127.0.0.1:9/c.pem", true, Some("")));
    }

    #[test]
    fn the_canonical_string_lists_the_fields_in_snss_order() {
        let v: Value = serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": "t",
            "Message": "hello", "Timestamp": "2026-01-01T00:00:00.000Z", "Signature": "x"});
        assert_eq!(
            canonical(&v, "Notification").unwrap(),
            "Message\nhello\nMessageId\nm\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\nt\nType\nNotification\n"
        );
    }
}
