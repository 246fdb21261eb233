//! Callback tasks to the business's own systems (a CRM or call-centre queue): one signed
//! JSON POST per task.
//!
//! The receiver can trust and deduplicate what it gets: `X-Aftercare-Signature` is
//! `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` with `X-Aftercare-Timestamp`
//! (seconds) so a captured request cannot be replayed later, and `Idempotency-Key` is the
//! outbox id, the same on every retry of the same task.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use super::Delivery;
use crate::check::Checker;
use crate::model::Outcome;
use crate::values::Secret;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;

/// `webhook:` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    url: String,
    secret_env: Option<String>,
    secret_file: Option<String>,
    timeout: Option<String>,
}

/// Where callback tasks are POSTed (a CRM or call-centre queue).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    pub timeout: Duration,
}

/// Check `webhook:`. The secret is required: the receiver checks every task's signature.
pub fn check(c: &mut Checker, raw: RawWebhook) -> WebhookConfig {
    c.url(
        "webhook.url",
        &raw.url,
        "https://crm.example.com/hooks/aftercare",
    );
    let secret = c.required_secret(
        "webhook",
        "secret",
        (raw.secret_env.as_deref(), raw.secret_file.as_deref()),
        "secret",
        "the receiver checks the X-Aftercare-Signature HMAC with it",
    );
    WebhookConfig {
        url: raw.url,
        secret,
        timeout: c.duration_or(
            "webhook.timeout",
            raw.timeout.as_deref(),
            Duration::from_secs(10),
        ),
    }
}

pub struct WebhookChannel {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
    timeout: Duration,
}

impl WebhookChannel {
    pub fn new(cfg: &WebhookConfig) -> anyhow::Result<WebhookChannel> {
        let secret = cfg.secret.read("webhook.secret")?.unwrap_or_default();
        if secret.is_empty() {
            anyhow::bail!("webhook: the secret is empty");
        }
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("aftercare/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookChannel {
            client,
            url: cfg.url.clone(),
            secret: secret.into_bytes(),
            timeout: cfg.timeout,
        })
    }

    /// `sha256=<hex>` over `<timestamp>.<body>`.
    pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// POST `payload`, signed at the wall clock's time: the receiver checks the timestamp
    /// against its own clock, so a run under another clock (`run --once --now`, a backfill)
    /// must not sign with that one.
    pub async fn send(&self, idempotency_key: &str, payload: &serde_json::Value) -> Delivery {
        let timestamp = chrono::Utc::now().timestamp();
        let body = serde_json::to_vec(payload).expect("a JSON value serialises");
        let sig = Self::signature(&self.secret, timestamp, &body);
        let result = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", idempotency_key)
            .header("x-aftercare-timestamp", timestamp.to_string())
            .header("x-aftercare-signature", sig)
            .body(body)
            .send()
            .await;
        let resp = match result {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Delivery::transient(format!(
                    "no answer from the webhook within {}",
                    crate::duration::format(self.timeout)
                ));
            }
            // reqwest's error text can include the URL; it holds no secret (the secret is only
            // used for the signature header).
            Err(e) => return Delivery::transient(format!("webhook request failed: {e}")),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(super::MAX_RETRY_AFTER));
        let text: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect();
        let outcome = outcome_of(status.as_u16());
        let detail = if text.trim().is_empty() {
            status.to_string()
        } else {
            format!("{status}: {}", text.trim())
        };
        Delivery {
            outcome,
            code: Some(i64::from(status.as_u16())),
            detail,
            provider_id: None,
            retry_after,
            relay_fault: false,
            bounce: None,
        }
    }
}

/// What the CRM's answer means for the task. 401 and 403 are retried, though they are 4xx
/// (as the SMS gateways' are): a secret rotated on one side only is a mistake someone
/// mends, and failing the task for good would lose the customer's callback to it.
fn outcome_of(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        401 | 403 | 408 | 429 | 500..=599 => Outcome::Transient,
        _ => Outcome::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_secret_is_retried_and_a_refused_task_is_not() {
        for (status, want) in [
            (200, Outcome::Sent),
            (204, Outcome::Sent),
            (401, Outcome::Transient),
            (403, Outcome::Transient),
            (408, Outcome::Transient),
            (429, Outcome::Transient),
            (503, Outcome::Transient),
            (400, Outcome::Permanent),
            (404, Outcome::Permanent),
            (422, Outcome::Permanent),
        ] {
            assert_eq!(outcome_of(status), want, "{status}");
        }
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_and_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        let sig = WebhookChannel::signature(b"secret", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            sig,
            "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
