//! `POST /hooks/email/{provider}`: bounces and complaints pushed by an email provider
//! (`ses` through SNS, `sendgrid`, `mailgun`, `postmark`), each checked by the provider's
//! own proof (`channels::email::feedback::providers`) and recorded through `feedback`, the
//! same door as SMTP refusals and `bounces ingest`. No bearer token: the signature (or,
//! for Postmark, basic auth) is the check. A provider without `email.webhooks.<provider>`
//! settings has no endpoint (404).

use super::{ApiError, ApiState};
use crate::channels::email::feedback::Report;
use crate::channels::email::feedback::providers::{self, CertCache, HookError, Sns};
use crate::channels::email::feedback_settings::Webhooks;
use crate::feedback::Feedback;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use sha2::Digest;

/// What the email webhooks need, built once with the daemon.
pub struct EmailHooks {
    pub feedback: Feedback,
    pub webhooks: Webhooks,
    pub certs: CertCache,
    pub http: reqwest::Client,
}

/// What a webhook request did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct EmailHookSummary {
    /// Bounces and complaints recorded now.
    pub recorded: usize,
    /// Reports stored before (a provider's retry).
    pub duplicates: usize,
    /// `SubscriptionConfirmation` (SNS): confirmed.
    pub confirmed: bool,
}

fn refuse(e: HookError) -> ApiError {
    let (status, code) = match &e {
        HookError::Forged(_) => (StatusCode::UNAUTHORIZED, "bad_signature"),
        HookError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
        HookError::Upstream(_) => (StatusCode::BAD_GATEWAY, "unavailable"),
    };
    tracing::warn!("email hook refused: {e}");
    ApiError::new(status, code, e.to_string())
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn not_configured(provider: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no email.webhooks.{} in the config (providers: ses, sendgrid, mailgun, postmark)",
            crate::text::printable(provider)
        ),
    )
}

/// A bounce or complaint notification from an email provider.
#[utoipa::path(
    post,
    path = "/hooks/email/{provider}",
    params(("provider" = String, Path, description = "ses, sendgrid, mailgun or postmark")),
    responses(
        (status = 200, description = "Recorded", body = EmailHookSummary),
        (status = 400, description = "Not what the provider sends", body = ApiError),
        (status = 401, description = "Bad or missing signature", body = ApiError),
        (status = 404, description = "This provider is not configured", body = ApiError),
        (status = 502, description = "The SNS signing certificate could not be fetched", body = ApiError),
    )
)]
pub(super) async fn email_hook(
    State(state): State<ApiState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<EmailHookSummary>, ApiError> {
    let hooks = state
        .email_hooks
        .as_ref()
        .ok_or_else(|| not_configured(&provider))?;
    let w = &hooks.webhooks;
    let m = &hooks.feedback.matcher;
    // An empty key would make the signature anyone's to compute (an unset variable in a
    // compose file, an empty file): answered 503, so the provider retries once it is set.
    // The caller is not signed in yet: it is told which setting, the log says why (a file's
    // path or a variable's name is the operator's, not the caller's, to read).
    let secret = |s: &crate::values::Secret, field: &str| {
        let unavailable = |told: String, why: String| {
            tracing::error!("{why}");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", told)
        };
        match s.read(field) {
            Ok(Some(v)) if !v.trim().is_empty() => Ok(v),
            Ok(_) => {
                let why = format!("{field}: the secret is empty; set its variable or file");
                Err(unavailable(why.clone(), why))
            }
            Err(e) => Err(unavailable(
                format!("{field}: the secret cannot be read; the daemon's log says why"),
                format!("{e:#}"),
            )),
        }
    };
    let mut confirmed = false;
    let reports: Vec<Report> = match provider.as_str() {
        "mailgun" => {
            let key = w
                .mailgun
                .as_ref()
                .ok_or_else(|| not_configured(&provider))?;
            let key = secret(key, "email.webhooks.mailgun.signing_key")?;
            let now = state.clock.now();
            let (reports, token) = providers::mailgun(&body, &key, m, now).map_err(refuse)?;
            let digest = hex::encode(sha2::Sha256::digest(&body));
            let fresh = state
                .store
                .use_hook_token(
                    "mailgun",
                    &token,
                    &digest,
                    now,
                    providers::MAILGUN_TOLERANCE,
                )
                .await
                .map_err(ApiError::store)?;
            if !fresh {
                return Err(refuse(HookError::Forged(
                    "this Mailgun signature's token came before with another event: a replay"
                        .into(),
                )));
            }
            reports
        }
        "postmark" => {
            let (user, pw) = w
                .postmark
                .as_ref()
                .ok_or_else(|| not_configured(&provider))?;
            let pw = secret(pw, "email.webhooks.postmark.password")?;
            providers::postmark(&body, header(&headers, "authorization"), user, &pw, m)
                .map_err(refuse)?
        }
        "sendgrid" => {
            let key = w
                .sendgrid
                .as_ref()
                .ok_or_else(|| not_configured(&provider))?;
            providers::sendgrid(
                &body,
                header(&headers, "x-twilio-email-event-webhook-signature"),
                header(&headers, "x-twilio-email-event-webhook-timestamp"),
                key,
                m,
                state.clock.now(),
            )
            .map_err(refuse)?
        }
        "ses" => {
            let ses = w.ses.as_ref().ok_or_else(|| not_configured(&provider))?;
            match providers::ses(&body, ses, &hooks.certs, &hooks.http, m)
                .await
                .map_err(refuse)?
            {
                Sns::Reports(r) => r,
                Sns::Confirm(url) => {
                    let answer = hooks
                        .http
                        .get(&url)
                        .timeout(std::time::Duration::from_secs(10))
                        .send()
                        .await
                        .map_err(|e| {
                            refuse(HookError::Upstream(format!(
                                "cannot confirm the SNS subscription: {e}"
                            )))
                        })?;
                    if !answer.status().is_success() {
                        return Err(refuse(HookError::Upstream(format!(
                            "SNS answered {} to the subscription confirmation",
                            answer.status()
                        ))));
                    }
                    tracing::info!("SNS subscription confirmed");
                    confirmed = true;
                    Vec::new()
                }
                Sns::Ignored(what) => {
                    tracing::info!("email hook: {what} ignored");
                    Vec::new()
                }
            }
        }
        _ => return Err(not_configured(&provider)),
    };
    let now = state.clock.now();
    let mut summary = EmailHookSummary {
        recorded: 0,
        duplicates: 0,
        confirmed,
    };
    for r in &reports {
        let done = hooks
            .feedback
            .record(r, None, now)
            .await
            .map_err(ApiError::store)?;
        if done.action.is_some() {
            summary.recorded += 1;
        } else {
            summary.duplicates += 1;
        }
    }
    Ok(Json(summary))
}
