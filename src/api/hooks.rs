//! Provider callbacks: SMS delivery receipts and inbound replies (kept; `STOP` suppresses
//! the number, `START` lifts the sender's own STOP). No bearer token: Twilio requests are checked by their `X-Twilio-Signature`;
//! Aliyun and generic gateways push unsigned: a gateway with a `push_token` takes only pushes
//! whose URL carries it (`?token=`); without one, keep these paths private (an unguessable
//! reverse-proxy path or an IP allowlist).

use super::{ApiError, ApiState};
use crate::channels::sms::Inbound;
use crate::sms_hooks::{self, HookError, Summary};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

fn refuse(e: HookError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = match e {
        HookError::UnknownGateway(_) | HookError::NotConfigured(_) => "not_found",
        HookError::Signature(_) => "bad_signature",
        HookError::Malformed(_) => "malformed",
        HookError::Unavailable(_) | HookError::Store(_) => "unavailable",
    };
    if status.is_server_error() {
        tracing::error!("sms hook: {e}");
        // The caller is not known yet: a secret's file or variable, or the store's error
        // (its host, its user), is for the operator's log, not for the answer.
        let told = match e {
            HookError::Store(_) => "the store did not answer; try again",
            _ => "this gateway's secret cannot be read here; the daemon's log says why",
        };
        return ApiError::new(status, code, told.to_string());
    }
    tracing::warn!("sms hook refused: {e}");
    ApiError::new(status, code, e.to_string())
}

struct Request<'a> {
    state: &'a ApiState,
    headers: &'a HeaderMap,
    uri: &'a axum::http::Uri,
    body: &'a [u8],
}

impl Request<'_> {
    /// The URL the provider called, as it signed it: `api.public_url` + path and query.
    fn url(&self) -> Option<String> {
        let base = self.state.config.public_url.as_deref()?;
        let pq = self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
        Some(format!("{}{pq}", base.trim_end_matches('/')))
    }

    fn inbound<'s>(&'s self, url: &'s Option<String>, token: &'s Option<String>) -> Inbound<'s> {
        Inbound {
            url: url.as_deref(),
            signature: self
                .headers
                .get("x-twilio-signature")
                .and_then(|v| v.to_str().ok()),
            body: self.body,
            token: token.as_deref(),
        }
    }

    /// The `token` query parameter: an unsigned gateway's push token.
    fn token(&self) -> Option<String> {
        let q = self.uri.query()?;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    }
}

fn no_sms() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no `sms:` section in the config",
    )
}

/// A delivery receipt from an SMS gateway.
#[utoipa::path(
    post,
    path = "/hooks/sms/{gateway}/status",
    params(("gateway" = String, Path, description = "The gateway's name under sms.gateways")),
    responses(
        (status = 200, description = "Recorded", body = Summary),
        (status = 400, description = "Not what the provider sends", body = ApiError),
        (status = 403, description = "Bad or missing signature", body = ApiError),
        (status = 404, description = "No such gateway, or it takes no receipts", body = ApiError),
    )
)]
pub(super) async fn sms_status(
    State(state): State<ApiState>,
    Path(gateway): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Summary>, ApiError> {
    let sms = state.sms.as_ref().ok_or_else(no_sms)?;
    let req = Request {
        state: &state,
        headers: &headers,
        uri: &uri,
        body: &body,
    };
    // Twilio signs status callbacks with the URL it called: the gateway's status_callback
    // when it has one (the channel prefers it), else `api.public_url` + this path, as for
    // inbound messages.
    let (url, token) = (req.url(), req.token());
    let summary = sms_hooks::status_callback(
        &state.store,
        sms,
        &gateway,
        req.inbound(&url, &token),
        state.clock.now(),
    )
    .await
    .map_err(refuse)?;
    Ok(Json(summary))
}

/// An inbound SMS (a reply), kept for support; `STOP`, `TD`, `退订`, `T` suppress the sender's
/// number, `START` lifts their own STOP.
#[utoipa::path(
    post,
    path = "/hooks/sms/{gateway}/inbound",
    params(("gateway" = String, Path, description = "The gateway's name under sms.gateways")),
    responses(
        (status = 200, description = "Taken", body = Summary),
        (status = 400, description = "Not what the provider sends", body = ApiError),
        (status = 403, description = "Bad or missing signature", body = ApiError),
        (status = 404, description = "No such gateway, or it takes no replies", body = ApiError),
    )
)]
pub(super) async fn sms_inbound(
    State(state): State<ApiState>,
    Path(gateway): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Summary>, ApiError> {
    let sms = state.sms.as_ref().ok_or_else(no_sms)?;
    let req = Request {
        state: &state,
        headers: &headers,
        uri: &uri,
        body: &body,
    };
    let (url, token) = (req.url(), req.token());
    let book = state.book.load_full();
    let summary = sms_hooks::inbound_replies(
        &state.store,
        sms,
        Some(&book),
        &gateway,
        req.inbound(&url, &token),
        state.clock.now(),
    )
    .await
    .map_err(refuse)?;
    Ok(Json(summary))
}
