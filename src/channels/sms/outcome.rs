//! From an HTTP exchange to a [`Delivery`]: the rules every gateway shares.
//!
//! - No answer (timeout, refused connection, reset) and 408, 429 and 5xx are transient: the
//!   gateway is busy or broken, not the message. `Retry-After` (seconds or an HTTP date)
//!   becomes `retry_after`.
//! - 401 and 403 are transient too, though they are 4xx: wrong or revoked credentials are the
//!   gateway's problem, not the message's. Failing the message for good would lose it to a
//!   config mistake; as a transient failure the route moves on to the next gateway, the
//!   breaker marks this one down, and the message is retried once someone fixes the key.
//! - Any other 4xx is permanent (an invalid number stays invalid).
//!
//! Each gateway then reads its provider's own codes on top (`twilio`, `aliyun`, `generic`).
//! The other side's words are kept short, on one line, and go through the gateway's
//! [`Redactor`] (shared with SMTP, `channels::redact`) so no credential reaches a log or the
//! attempt record.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use crate::channels::Delivery;
pub(super) use crate::channels::redact::Redactor;
use crate::model::Outcome;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// The longest excerpt of a provider's answer kept in a detail.
const EXCERPT: usize = 300;

/// What came back from the gateway, body read.
pub(super) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: String,
}

impl Answer {
    pub(super) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(super) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The answer's outcome by HTTP status alone.
    pub(super) fn status_outcome(&self) -> Outcome {
        status_outcome(self.status)
    }

    /// A delivery for this answer with the given outcome and words.
    pub(super) fn delivery(&self, outcome: Outcome, detail: String) -> Delivery {
        Delivery {
            outcome,
            code: Some(i64::from(self.status)),
            detail,
            provider_id: None,
            retry_after: if outcome == Outcome::Transient {
                self.retry_after
            } else {
                None
            },
            relay_fault: false,
            bounce: None,
        }
    }
}

pub(super) fn status_outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        401 | 403 | 408 | 429 | 500..=599 => Outcome::Transient,
        _ => Outcome::Permanent,
    }
}

/// Send `request` and read the answer, or say why there is none (always transient). The body
/// is scrubbed of credentials at once, before anything quotes or shortens it (a secret cut in
/// half by an excerpt would no longer be recognised).
pub(super) async fn exchange(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<Answer, Delivery> {
    let response = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(e, timeout))?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let body = response
        .text()
        .await
        .map_err(|e| transport_error(e, timeout))?;
    Ok(Answer {
        status,
        retry_after,
        body: redactor.scrub(&body),
    })
}

/// Why a request got no answer. The URL is left out (it may carry a query with a key).
pub(super) fn transport_error(e: reqwest::Error, timeout: Duration) -> Delivery {
    let why = if e.is_timeout() {
        if timeout < Duration::from_secs(1) {
            format!("no answer within {}ms", timeout.as_millis())
        } else {
            format!("no answer within {}", crate::duration::format(timeout))
        }
    } else if e.is_connect() {
        format!("cannot connect: {}", causes(&e.without_url()))
    } else {
        format!("request failed: {}", causes(&e.without_url()))
    };
    Delivery::transient(why)
}

/// An error and its sources on one line ("error sending request: connection refused").
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `Retry-After` as a wait: delay-seconds or an HTTP date (RFC 9110 §10.2.3), at most
/// [`MAX_RETRY_AFTER`](crate::channels::MAX_RETRY_AFTER).
pub(super) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).ok().filter(|d| !d.is_zero())?
    };
    Some(wait.min(crate::channels::MAX_RETRY_AFTER))
}

/// A provider's text, on one line and not too long for a log row.
pub(super) fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= EXCERPT {
        one_line
    } else {
        let cut: String = one_line.chars().take(EXCERPT).collect();
        format!("{cut}…")
    }
}

/// A JSON value as text for codes and ids: strings bare, numbers and booleans as written.
pub(super) fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn status_table() {
        for (status, want) in [
            (200, Outcome::Sent),
            (201, Outcome::Sent),
            (204, Outcome::Sent),
            (301, Outcome::Permanent),
            (400, Outcome::Permanent),
            (404, Outcome::Permanent),
            (422, Outcome::Permanent),
            (401, Outcome::Transient),
            (403, Outcome::Transient),
            (408, Outcome::Transient),
            (429, Outcome::Transient),
            (500, Outcome::Transient),
            (503, Outcome::Transient),
        ] {
            assert_eq!(status_outcome(status), want, "{status}");
        }
    }

    #[test]
    fn retry_after_seconds_or_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static(v));
            retry_after(&h, now)
        };
        assert_eq!(with("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            with("18446744073709551615"),
            Some(crate::channels::MAX_RETRY_AFTER)
        );
        assert_eq!(with(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            with("Wed, 21 Oct 2015 07:28:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(with("Wed, 21 Oct 2015 07:27:00 GMT"), None); // already past
        assert_eq!(with("soon"), None);
        assert_eq!(with("-5"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn excerpt_is_one_short_line() {
        assert_eq!(excerpt("a\n  b\tc"), "a b c");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT + 1);
    }
}
