//! `email.webhooks`: how each email provider's bounce and complaint webhook proves it is the
//! provider. Amazon SES (through SNS) signs with a certificate SNS publishes, SendGrid with
//! an ECDSA key whose public half the account shows, Mailgun with an HMAC key, Postmark
//! with HTTP basic auth. Secrets are referenced (`*_env`, `*_file`), never written here.

use crate::check::Checker;
use crate::values::Secret;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    ses: Option<RawSes>,
    sendgrid: Option<RawSendgrid>,
    mailgun: Option<RawMailgun>,
    postmark: Option<RawPostmark>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSes {
    /// Only notifications of these topics are taken. Required: SNS signs every topic's
    /// messages alike, so without it anyone's topic could subscribe and report bounces.
    #[serde(default)]
    topic_arns: Vec<String>,
    /// Tests only: signing certificates may also come from URLs starting with this
    /// (plain HTTP, any host). Never set it in production: the host check is what makes a
    /// certificate Amazon's.
    insecure_test_cert_url_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSendgrid {
    /// The "verification key" SendGrid shows for the Signed Event Webhook (base64 SPKI).
    public_key: Option<String>,
    public_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailgun {
    signing_key_env: Option<String>,
    signing_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostmark {
    username: String,
    password_env: Option<String>,
    password_file: Option<String>,
}

/// The checked `email.webhooks`; a provider without settings has no endpoint (404).
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    pub ses: Option<SesHook>,
    /// The base64 SPKI public key.
    pub sendgrid: Option<String>,
    pub mailgun: Option<Secret>,
    pub postmark: Option<(String, Secret)>,
}

#[derive(Debug, Clone, Default)]
pub struct SesHook {
    pub topic_arns: Vec<String>,
    pub insecure_test_cert_url_prefix: Option<String>,
}

pub fn check(c: &mut Checker, raw: RawWebhooks) -> Webhooks {
    let ses = raw.ses.map(|s| {
        if s.insecure_test_cert_url_prefix.is_some() {
            c.warn(
                "email.webhooks.ses.insecure_test_cert_url_prefix",
                "SNS certificates are accepted from outside Amazon: for tests only",
                Some("remove it in production".into()),
            );
        }
        if s.topic_arns.iter().all(|t| t.trim().is_empty()) {
            c.err(
                "email.webhooks.ses.topic_arns",
                "name the SNS topics SES publishes bounces and complaints to: SNS signs any \
                 topic's messages alike, so without them anyone's topic could report bounces",
                Some("topic_arns: [\"arn:aws:sns:us-west-2:123456789012:ses-bounces\"]".into()),
            );
        }
        SesHook {
            topic_arns: s.topic_arns,
            insecure_test_cert_url_prefix: s.insecure_test_cert_url_prefix,
        }
    });
    let sendgrid = raw
        .sendgrid
        .and_then(|s| match (s.public_key, s.public_key_file) {
            (Some(k), None) => Some(k.trim().to_string()),
            (None, Some(f)) => {
                let path = c.resolve(&f);
                match std::fs::read_to_string(&path) {
                    Ok(k) => Some(k.trim().to_string()),
                    Err(e) => {
                        c.err(
                            "email.webhooks.sendgrid.public_key_file",
                            format!("cannot read {}: {e}", path.display()),
                            None,
                        );
                        None
                    }
                }
            }
            _ => {
                c.err(
                    "email.webhooks.sendgrid",
                    "give public_key or public_key_file (one of them)",
                    Some(
                        "the verification key from SendGrid's Signed Event Webhook settings".into(),
                    ),
                );
                None
            }
        });
    let mailgun = raw.mailgun.map(|m| {
        c.required_secret(
            "email.webhooks.mailgun",
            "signing_key",
            (m.signing_key_env.as_deref(), m.signing_key_file.as_deref()),
            "webhook signing key",
            "Mailgun: Settings → Webhooks → HTTP webhook signing key",
        )
    });
    let postmark = raw.postmark.map(|p| {
        let s = c.required_secret(
            "email.webhooks.postmark",
            "password",
            (p.password_env.as_deref(), p.password_file.as_deref()),
            "basic auth password",
            "the password in the webhook URL you gave Postmark",
        );
        (p.username, s)
    });
    Webhooks {
        ses,
        sendgrid,
        mailgun,
        postmark,
    }
}
