//! A twilio gateway's settings: its keys, and what they become.

use crate::check::Checker;
use crate::values::{Secret, is_e164_shaped};
use reqwest::Url;
use serde::Deserialize;

pub const BASE_URL: &str = "https://api.twilio.com";

/// A twilio gateway's own keys (besides `kind`, `rate`, `timeout`, `base_url`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    account_sid: Option<String>,
    auth_token_env: Option<String>,
    auth_token_file: Option<String>,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    status_callback: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub base_url: Url,
    pub account_sid: String,
    pub auth_token: Secret,
    pub sender: TwilioSender,
    pub status_callback: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioSender {
    From(String),
    MessagingService(String),
}

pub fn check(c: &mut Checker, at: &str, base_url: Option<&str>, g: Raw) -> TwilioConfig {
    let account_sid = c
        .required(
            at,
            "account_sid",
            g.account_sid.as_deref(),
            "your Account SID, AC…",
        )
        .trim()
        .to_string();
    let auth_token = c.required_secret(
        at,
        "auth_token",
        (g.auth_token_env.as_deref(), g.auth_token_file.as_deref()),
        "auth token",
        "auth_token_env: TWILIO_AUTH_TOKEN (or auth_token_file: /run/secrets/twilio)",
    );
    let sender = match (g.from.as_deref(), g.messaging_service_sid.as_deref()) {
        (Some(_), Some(_)) => {
            c.err(
                &format!("{at}.messaging_service_sid"),
                "give `from` or `messaging_service_sid`, not both",
                None,
            );
            TwilioSender::From(String::new())
        }
        (Some(from), None) => {
            let from = from.trim();
            // A shape check only: the full number database (phonenumber's) costs every
            // command that loads the config a noticeable start-up; Twilio refuses a sender
            // that is not one of the account's numbers anyway, in the log.
            if from.starts_with('+') && !is_e164_shaped(from) {
                c.err(
                    &format!("{at}.from"),
                    format!("`{from}` is not a number in E.164 form"),
                    Some(
                        "+, the country code and the number: 8 to 15 digits, e.g. +15005550006"
                            .into(),
                    ),
                );
            }
            TwilioSender::From(from.to_string())
        }
        (None, Some(sid)) => TwilioSender::MessagingService(sid.trim().to_string()),
        (None, None) => {
            c.err(
                &format!("{at}.from"),
                "no sender",
                Some("from: \"+15005550006\" or messaging_service_sid: MG…".into()),
            );
            TwilioSender::From(String::new())
        }
    };
    if let Some(cb) = &g.status_callback {
        c.url(
            &format!("{at}.status_callback"),
            cb,
            "https://example.com/sms/status",
        );
    }
    TwilioConfig {
        base_url: base_url
            .and_then(|u| c.url(&format!("{at}.base_url"), u, BASE_URL))
            .unwrap_or_else(|| Url::parse(BASE_URL).expect("a static URL")),
        account_sid,
        auth_token,
        sender,
        status_callback: g.status_callback,
    }
}
