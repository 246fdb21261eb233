//! The HTTP API: events in, the delivery log out, survey answers in (the answer page and
//! `/v1/answers`), one-click unsubscribe, health and metrics.
//!
//! Every `/v1` route needs a bearer token with a scope (`ingest`, `read`, `admin`); tokens
//! come from the environment or files, never from YAML, and only their names are logged.
//! Errors are JSON `{error, detail, field}`. The routes are listed once, in [`routes`], which
//! both the router and the OpenAPI document (`GET /openapi.json`) are built from.

mod contacts;
mod email_hooks;
mod events;
mod hooks;
mod log;
mod public;
mod reports;
mod schema;
pub mod settings;
mod survey;

pub use email_hooks::EmailHooks;

use crate::metrics;
use crate::playbook::Playbook;
use crate::store::Store;
use crate::unsubscribe::Unsubscriber;
use crate::values::same_secret;
use arc_swap::ArcSwap;
use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use events::IngestQueue;
pub use settings::{ApiConfig, Scope};

/// Every route, once: each handler's `#[utoipa::path]` names its method and path, and this
/// list registers it with the router and the OpenAPI document alike, so the two cannot
/// disagree. A new endpoint is one line here.
fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(events::post_events))
        .routes(routes!(log::list_messages))
        .routes(routes!(log::get_message))
        .routes(routes!(log::retry_message))
        .routes(routes!(log::cancel_message))
        .routes(routes!(log::timeline))
        .routes(routes!(contacts::erase))
        .routes(routes!(contacts::export))
        .routes(routes!(hooks::sms_status))
        .routes(routes!(hooks::sms_inbound))
        .routes(routes!(email_hooks::email_hook))
        .routes(routes!(public::unsubscribe_page, public::unsubscribe_post))
        .routes(routes!(survey::survey_page, survey::survey_post))
        .routes(routes!(survey::post_answer))
        .routes(routes!(reports::conversions))
        .routes(routes!(reports::nps))
        .routes(routes!(reports::csat))
        .routes(routes!(reports::answers))
        .routes(routes!(reports::daily))
        .routes(routes!(public::healthz))
        .routes(routes!(public::readyz))
        .routes(routes!(public::metrics))
        .routes(routes!(openapi_json))
}

/// utoipa's OpenAPI document of [`routes`] (`schema::document` adds what the derive cannot
/// say); built once.
pub(crate) fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(|| routes().split_for_parts().1)
}

/// Every route as (method, path), lowercase methods, as [`routes`] lists them.
pub fn route_list() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in &openapi().paths.paths {
        let methods = [
            ("get", item.get.is_some()),
            ("post", item.post.is_some()),
            ("put", item.put.is_some()),
            ("patch", item.patch.is_some()),
            ("delete", item.delete.is_some()),
        ];
        for (m, present) in methods {
            if present {
                out.push((m.to_string(), path.clone()));
            }
        }
    }
    out.sort();
    out
}

/// What every handler can reach. axum hands each request its own copy of the state, so
/// the copy is one reference count: the parts themselves (the store's pools and name, the
/// config's tokens) were cloned and dropped per request before, a dozen allocations each.
#[derive(Clone)]
pub struct ApiState(Arc<ApiParts>);

impl ApiState {
    pub fn new(parts: ApiParts) -> ApiState {
        ApiState(Arc::new(parts))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiParts;
    fn deref(&self) -> &ApiParts {
        &self.0
    }
}

/// The parts of [`ApiState`].
pub struct ApiParts {
    pub store: Store,
    /// The current jobs and templates; swapped by a reload.
    pub book: Arc<ArcSwap<Playbook>>,
    pub tokens: Arc<Vec<Token>>,
    pub config: ApiConfig,
    pub unsubscriber: Option<Arc<Unsubscriber>>,
    pub clock: crate::clock::SharedClock,
    pub ingest: IngestQueue,
    /// Jobs loaded and the store open: `/readyz` says so.
    pub ready: Arc<AtomicBool>,
    /// For receipts and inbound replies.
    pub sms: Option<crate::channels::sms::SmsChannel>,
    /// Whether the SMTP relay takes our mail: `/readyz` is not ready while it refuses us.
    pub relay: Option<Arc<crate::channels::email::relay::RelayHealth>>,
    /// Email providers' bounce and complaint webhooks.
    pub email_hooks: Option<Arc<email_hooks::EmailHooks>>,
    /// The web console, mounted under `/console` (its pages are HTML, not part of the
    /// OpenAPI document).
    pub console: Option<crate::console::Console>,
    /// The store's counts `/metrics` keeps between scrapes.
    pub(crate) store_counts: crate::metrics::StoreCounts,
}

/// A usable bearer token (its secret read at start).
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub scope: Scope,
    secret: String,
}

impl Token {
    /// The secret, for the console's sign-in with an admin token.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Read every configured token; one that cannot be read is left out with a warning (the
/// API still serves health, metrics and unsubscribe links).
pub fn load_tokens(cfg: &ApiConfig) -> Vec<Token> {
    let mut out = Vec::new();
    for t in &cfg.tokens {
        match t.secret.read(&format!("api token `{}`", t.name)) {
            Ok(Some(secret)) if secret.len() >= 16 => out.push(Token {
                name: t.name.clone(),
                scope: t.scope,
                secret,
            }),
            Ok(_) => {
                tracing::warn!(token = %t.name, "api token is empty or shorter than 16 characters; disabled")
            }
            Err(e) => tracing::warn!(token = %t.name, "api token disabled: {e}"),
        }
    }
    out
}

/// A JSON error body: what went wrong, in words, and which field.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// A stable code: `unauthorized`, `forbidden`, `invalid_json`, `invalid_event`, ...
    pub error: String,
    pub detail: String,
    pub field: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    pub status: u16,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            error: error.into(),
            detail: detail.into(),
            field: None,
            status: status.as_u16(),
        }
    }

    pub fn field(mut self, f: impl Into<String>) -> ApiError {
        self.field = Some(f.into());
        self
    }

    pub fn store(e: crate::store::StoreError) -> ApiError {
        metrics::count_error("store");
        tracing::error!("store error in the API: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store did not answer; try again",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(&self)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        resp
    }
}

/// Check the bearer token for `needed`; the token's name on success.
pub fn authorize(state: &ApiState, headers: &HeaderMap, needed: Scope) -> Result<String, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing Authorization: Bearer <token>",
        ));
    };
    let presented = value.to_str().ok().and_then(bearer).unwrap_or("");
    let token = state
        .tokens
        .iter()
        .find(|t| same_secret(t.secret.as_bytes(), presented.as_bytes()));
    match token {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown token",
        )),
        Some(t) if !t.scope.allows(needed) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token `{}` has scope {}; this needs {}",
                t.name,
                t.scope.as_str(),
                needed.as_str()
            ),
        )),
        Some(t) => Ok(t.name.clone()),
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 7235 §2.1: `bearer`, `BEARER`), and any run of spaces may follow it.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "aftercare", description = "After-sales messages: events in, delivery log out."),
    components(schemas(crate::store::Erased, crate::sms_hooks::Summary, crate::reports::ConversionReport, crate::reports::ScoreReport, crate::reports::AnswersReport, crate::store::DailyCount, survey::AnswerRequest, survey::AnswerResponse, crate::store::StoredAnswer, ApiError, events::IngestResponse, events::EventResult, log::MessagePage, crate::model::MessageRecord, crate::model::AttemptRecord)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3 document")))]
async fn openapi_json(State(state): State<ApiState>) -> impl IntoResponse {
    Json(schema::document(state.config.max_events))
}

/// Errors axum writes itself (a query string that does not deserialize, a path that is not
/// UTF-8, a body over the limit) come as text; every API error is `{error, detail, field}`.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_text = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if !status.is_client_error() || !is_text {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "bad_request",
    };
    ApiError::new(
        status,
        code,
        String::from_utf8_lossy(&body).trim().to_string(),
    )
    .into_response()
}

/// A query parameter that cannot be read: 400 `invalid_query`, naming the field.
pub(super) fn bad_query(field: &str, detail: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", detail).field(field)
}

/// A query's time: RFC 3339, or a date meaning its midnight in `tz` (the business's zone,
/// as on the command line: see `values::When`).
pub(super) fn query_time(
    field: &str,
    v: &Option<String>,
    tz: chrono_tz::Tz,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    v.as_deref()
        .map(|s| {
            refuse_nul(field, s)?;
            crate::values::When::parse(s)
                .map(|w| w.in_zone(tz))
                .map_err(|e| bad_query(field, e))
        })
        .transpose()
}

/// A NUL in a query or path value: no stored value holds one (the store cannot keep it), and
/// PostgreSQL refuses it as a parameter, so it is refused here with the field.
pub(crate) fn refuse_nul(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("`{field}` holds a NUL character"),
        )
        .field(field));
    }
    Ok(())
}

/// The body of a request whose caller [`authorize`] has let in. Token-checked endpoints
/// take the body this way, not as an extractor, which axum runs before the handler: an
/// unknown caller was made to wait for and buffered up to `api.max_body` before its 401.
pub(super) async fn read_body(
    state: &ApiState,
    body: axum::body::Body,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, state.config.max_body)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "{e} (the limit is api.max_body = {} bytes)",
                    state.config.max_body
                ),
            )
        })
}

pub fn router(state: ApiState) -> axum::Router {
    let max_body = state.config.max_body;
    let console = state.console.clone();
    let (router, _) = routes().split_for_parts();
    let router = router
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state);
    match console {
        Some(c) => router.nest("/console", crate::console::router(c)),
        None => router,
    }
}

/// Serve until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

pub(crate) fn is_ready(state: &State<ApiState>) -> bool {
    state.ready.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_document_describes_exactly_the_routes() {
        let served = schema::document(1000);
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in served["paths"].as_object().expect("paths") {
            for m in ["get", "post", "put", "patch", "delete"] {
                if item.get(m).is_some() {
                    documented.push((m.to_string(), path.clone()));
                }
            }
        }
        documented.sort();
        let routes = route_list();
        assert_eq!(documented, routes);
        // The list is not empty by accident: the endpoints every deployment relies on.
        for must in [
            ("post", "/v1/events"),
            ("get", "/healthz"),
            ("get", "/u/{token}"),
        ] {
            assert!(
                routes.iter().any(|(m, p)| (m.as_str(), p.as_str()) == must),
                "{must:?} missing from {routes:?}"
            );
        }
    }

    #[test]
    fn scopes() {
        assert!(Scope::Admin.allows(Scope::Read));
        assert!(Scope::Admin.allows(Scope::Ingest));
        assert!(!Scope::Read.allows(Scope::Ingest));
        assert!(!Scope::Ingest.allows(Scope::Read));
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer t0k", "bearer t0k", "BEARER  t0k ", "beaRer\tt0k"] {
            assert_eq!(bearer(v), (!v.contains('\t')).then_some("t0k"), "{v:?}");
        }
        assert_eq!(bearer("Basic t0k"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
