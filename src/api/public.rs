//! Routes without a token: one-click unsubscribe (the token in the link is the authority),
//! health, readiness and metrics (bind the API to a private address, or put a proxy in
//! front, if metrics must not be public).

use super::{ApiError, ApiState, is_ready};
use crate::metrics;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title></head><body style=\"font-family: sans-serif; max-width: 32em; margin: 4em auto\">{body}</body></html>"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn verify(state: &ApiState, token: &str) -> Result<(String, String), Box<Response>> {
    let refuse = |status: StatusCode, text: &str| {
        Box::new((status, Html(page("Unsubscribe", text))).into_response())
    };
    let Some(u) = &state.unsubscriber else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "<p>Unsubscribe links are not enabled here.</p>",
        ));
    };
    if !well_formed(token) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "<p>This is not an unsubscribe link. Please use the link from the email itself.</p>",
        ));
    }
    u.verify(token).map_err(|e| {
        tracing::warn!("refused an unsubscribe token: {e}");
        refuse(
            StatusCode::NOT_FOUND,
            "<p>This unsubscribe link is not valid. Please use the link from the email itself.</p>",
        )
    })
}

/// A token's shape (the OpenAPI pattern `schema::TOKEN`): base64url, one part (a sealed
/// token) or two joined by a dot (the first format, still honoured). Malformed text is a bad
/// request (400); a well-formed token this key did not make is a link that does not exist
/// (404).
fn well_formed(token: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match token.split_once('.') {
        Some((a, b)) => part(a) && part(b),
        None => part(token) && token.len() >= crate::unsubscribe::SEALED_MIN_LEN,
    }
}

/// The confirm page behind the link in an email.
#[utoipa::path(
    get,
    path = "/u/{token}",
    params(("token" = String, Path, description = "The token from the List-Unsubscribe link")),
    responses((status = 200, description = "An HTML page with a button that POSTs to the same URL"), (status = 400, description = "Forged or altered token"))
)]
pub(super) async fn unsubscribe_page(
    State(state): State<ApiState>,
    Path(token): Path<String>,
) -> Response {
    match verify(&state, &token) {
        Err(r) => *r,
        // The address masked (`w***g@example.com`): the page needs no login, and the sealed
        // token must not be read back by whoever sees the link (a proxy's log, a forwarded
        // email); the owner recognises their own address.
        Ok((channel, address)) => Html(page(
            "Unsubscribe",
            &format!(
                "<p>Stop marketing {} to <strong>{}</strong>?</p><form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>",
                what_we_send(&channel),
                escape(&crate::logging::mask(&address))
            ),
        ))
        .into_response(),
    }
}

/// What a channel's marketing is called on the pages.
fn what_we_send(channel: &str) -> &'static str {
    if channel == "sms" {
        "text messages"
    } else {
        "emails"
    }
}

/// RFC 8058 one-click unsubscribe: no confirmation, effective at once.
#[utoipa::path(
    post,
    path = "/u/{token}",
    params(("token" = String, Path, description = "The token from the List-Unsubscribe link")),
    responses((status = 200, description = "Unsubscribed"), (status = 400, description = "Forged or altered token"))
)]
pub(super) async fn unsubscribe_post(
    State(state): State<ApiState>,
    Path(token): Path<String>,
) -> Response {
    let (channel, address) = match verify(&state, &token) {
        Err(r) => return *r,
        Ok(v) => v,
    };
    if let Err(e) = state
        .store
        .suppress(
            &channel,
            &address,
            "unsubscribed (one-click link)",
            Some("link"),
            "the customer, by the one-click link",
            state.clock.now(),
        )
        .await
    {
        return ApiError::store(e).into_response();
    }
    tracing::info!(channel = %channel, address = %crate::logging::mask(&address), "unsubscribed by link");
    Html(page(
        "Unsubscribed",
        &format!(
            "<p>You are unsubscribed. We will not send you marketing {} any more.</p>",
            what_we_send(&channel)
        ),
    ))
    .into_response()
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "ok")))]
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// The store answers, the jobs are loaded, and the SMTP relay (when email goes over SMTP)
/// does not refuse our session (a wrong password: mail waits, so this node is not ready).
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "not ready, with the reason")))]
pub(super) async fn readyz(State(state): State<ApiState>) -> Response {
    if !is_ready(&State(state.clone())) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: jobs not loaded yet\n",
        )
            .into_response();
    }
    if let Some(why) = state.relay.as_ref().and_then(|r| r.fault()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", crate::text::printable(&why)),
        )
            .into_response();
    }
    match state.store.ping().await {
        // A reputation brake holds marketing email only: still ready, and it says so.
        Ok(()) => match state.store.brakes(true).await {
            Ok(brakes) if !brakes.is_empty() => {
                let mut text = String::from("ready\n");
                for b in brakes {
                    text.push_str(&format!(
                        "reputation brake: {} paused since {}: {}\n",
                        crate::text::printable(&b.scope),
                        b.engaged_at.format("%Y-%m-%d %H:%M:%SZ"),
                        crate::text::printable(&b.reason)
                    ));
                }
                text.into_response()
            }
            _ => "ready\n".into_response(),
        },
        // The store's error names its host and user: for the log, not for any caller.
        Err(e) => {
            tracing::warn!("readyz: store unreachable: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n").into_response()
        }
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus metrics")))]
pub(super) async fn metrics(State(state): State<ApiState>) -> Response {
    metrics::set_ingest_requests("queued", state.ingest.queued());
    match metrics::render(&state.store, &state.store_counts, state.clock.now()).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::store(e).into_response(),
    }
}
