//! The console: web pages where support finds any customer in seconds and marketing sees what
//! its campaigns do, served by the daemon on the API's listener under `/console/`.
//!
//! Server-rendered HTML (maud: compiled templates, every value escaped), charts as inline SVG
//! drawn here, one small script file (the viewer's time zone), no asset from anywhere but the
//! daemon; a `Content-Security-Policy` forbids inline scripts and other origins. It reads the
//! store and the current playbook like `logs` and the API do, and changes things only through
//! the store's agent actions, each recorded with the agent's name (`store/actions.rs`).
//!
//! - `settings`: the `console:` section (users, roles, idle timeout, public URL).
//! - `auth`: passwords (argon2), sessions, CSRF, the brake on guessing.
//! - `customer`: search, the customer page and its timeline, a message and what it said,
//!   and the actions on them; `tasks`: callback tasks; `campaigns`: jobs, funnels, NPS,
//!   forecast, validate, previews (`chart` draws the SVG); `health`: what operators watch.
//! - `i18n`: Chinese and English; `layout`: the frame and how times and addresses are shown.
//!
//! The API mounts [`router`]; the daemon builds the [`Console`] and keeps [`RunStatus`] up to
//! date across reloads. What needs the verbs above the API (validate, forecast) comes in as
//! functions ([`Validator`], [`Forecaster`]), so the console stays below them on the code map.

// A handler's early exit is the page it answers with: `Result<_, Response>` is axum's idiom,
// and boxing every refusal buys nothing on a path that ends the request.
#![allow(clippy::result_large_err)]

mod auth;
mod campaigns;
mod chart;
mod customer;
mod health;
mod i18n;
mod layout;
pub mod settings;
mod tasks;

pub use auth::{TokenLogin, hash_password, verify_password};
pub use settings::{ConsoleConfig, RawConsole, Role};

use crate::clock::SharedClock;
use crate::diag::Diagnostics;
use crate::playbook::Playbook;
use crate::store::Store;
use arc_swap::ArcSwap;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use cookie::{Cookie, SameSite};
use futures::future::BoxFuture;
use i18n::Lang;
use maud::html;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SESSION_COOKIE: &str = "aftercare_session";
const LANG_COOKIE: &str = "aftercare_lang";
const TZ_COOKIE: &str = "aftercare_tz";
/// The sign-in form's CSRF value, doubled in a cookie (there is no session yet).
const PRE_COOKIE: &str = "aftercare_signin";
/// The browser's device id: a known device has a guessing brake of its own (`auth`).
const DEVICE_COOKIE: &str = "aftercare_device";

/// What `validate` says about the jobs and templates on disk now.
pub type Validator = Arc<dyn Fn() -> Diagnostics + Send + Sync>;

/// What would be sent from `now` until `until`, replayed on a copy of the store (the
/// `forecast` verb's machinery).
pub type Forecaster = Arc<
    dyn Fn(DateTime<Utc>, DateTime<Utc>) -> BoxFuture<'static, Result<Vec<ForecastItem>, String>>
        + Send
        + Sync,
>;

/// The forecast's items, or why it could not be made.
type Forecast = Result<Vec<ForecastItem>, String>;

/// One message the forecast made final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForecastItem {
    pub job: String,
    /// When it would go (sent) or was decided (not sent).
    pub at: DateTime<Utc>,
    pub sent: bool,
}

/// The running job set as the health page shows it; the daemon writes it at start and after
/// each reload.
#[derive(Debug, Default)]
pub struct RunStatus {
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default, Clone)]
pub struct StatusInner {
    /// A digest of the job and template files the running set was loaded from.
    pub version: String,
    pub loaded_at: Option<DateTime<Utc>>,
    /// (when, what happened) of the last reload since start.
    pub last_reload: Option<(DateTime<Utc>, bool, String)>,
}

impl RunStatus {
    pub fn loaded(&self, version: String, at: DateTime<Utc>) {
        let mut s = self.lock();
        s.version = version;
        s.loaded_at = Some(at);
    }

    pub fn reloaded(&self, at: DateTime<Utc>, ok: bool, text: String) {
        self.lock().last_reload = Some((at, ok, text));
    }

    pub fn get(&self) -> StatusInner {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the daemon hands the console besides the store and the playbook.
pub struct Setup {
    pub config: ConsoleConfig,
    /// Admin API tokens, which may sign in.
    pub tokens: Vec<TokenLogin>,
    pub validate: Option<Validator>,
    pub forecast: Option<Forecaster>,
    pub status: Arc<RunStatus>,
    pub sms: Option<crate::channels::sms::SmsChannel>,
    pub relay: Option<Arc<crate::channels::email::relay::RelayHealth>>,
}

/// The console's state; cheap to clone.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ConsoleConfig,
    store: Store,
    book: Arc<ArcSwap<Playbook>>,
    clock: SharedClock,
    tokens: Vec<TokenLogin>,
    auth: auth::Auth,
    validate: Option<Validator>,
    forecast: Option<Forecaster>,
    status: Arc<RunStatus>,
    sms: Option<crate::channels::sms::SmsChannel>,
    relay: Option<Arc<crate::channels::email::relay::RelayHealth>>,
    /// The last forecast (computed at most every few minutes: it copies the store).
    forecast_cache: tokio::sync::Mutex<Option<(Instant, Forecast)>>,
    links: customer::CustomerLinks,
}

impl Console {
    pub fn new(
        setup: Setup,
        store: Store,
        book: Arc<ArcSwap<Playbook>>,
        clock: SharedClock,
    ) -> Console {
        Console {
            inner: Arc::new(Inner {
                cfg: setup.config,
                store,
                book,
                clock,
                tokens: setup.tokens,
                auth: auth::Auth::default(),
                validate: setup.validate,
                forecast: setup.forecast,
                status: setup.status,
                sms: setup.sms,
                relay: setup.relay,
                forecast_cache: tokio::sync::Mutex::new(None),
                links: customer::CustomerLinks::new(),
            }),
        }
    }

    fn book(&self) -> Arc<Playbook> {
        self.inner.book.load_full()
    }
}

/// The console's routes, to be nested under `/console` by the API.
pub fn router(c: Console) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .route("/signin", get(signin_page).post(signin_post))
        .route("/signout", post(signout))
        .route("/lang/{code}", get(set_lang))
        .route("/search", get(customer::search))
        .route("/customer/{id}", get(customer::page))
        .route("/c/{token}", get(customer::sealed_page))
        .route("/customer/{id}/suppress", post(customer::suppress))
        .route("/customer/{id}/unsuppress", post(customer::unsuppress))
        .route("/message/{id}", get(customer::message))
        .route("/message/{id}/retry", post(customer::retry))
        .route("/message/{id}/cancel", post(customer::cancel))
        .route("/tasks", get(tasks::page))
        .route("/tasks/{id}/claim", post(tasks::claim))
        .route("/tasks/{id}/done", post(tasks::done))
        .route("/campaigns", get(campaigns::page))
        .route("/health", get(health::page))
        .route("/static/console.css", get(css))
        .route("/static/console.js", get(js))
        .route("/static/favicon.svg", get(icon))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(no_nul_in_path))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(c)
}

/// A NUL in a path (`%00`) names nothing the store can hold, and PostgreSQL refuses the
/// character in text: a customer or message page asked for one was a 503 and a store error
/// in the log. Not found, before any page reads the store.
async fn no_nul_in_path(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.uri().path().contains("%00") {
        return not_found(req.headers().clone()).await;
    }
    next.run(req).await
}

/// Every console response: no inline script, nothing from another origin, not framed, not
/// cached, not sniffed, no referrer leaking a customer's id.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    resp
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("static/console.css"),
    )
        .into_response()
}

/// The browser asks for an icon on every site; without one it would ask the API's
/// `/favicon.ico` (a 404 and a console error on every page).
async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        include_str!("static/favicon.svg"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("static/console.js"),
    )
        .into_response()
}

/// The person looking at a page: who, in what role, language and zone.
pub(super) struct Viewer {
    pub session: String,
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub lang: Lang,
    pub tz: Tz,
    /// This page's path and query, URL-encoded (where the language switch comes back to).
    pub path: String,
}

fn cookies(headers: &HeaderMap) -> Vec<Cookie<'static>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        // Decoded: the console's script writes the zone with `encodeURIComponent`
        // (`Europe%2FBerlin`), and undecoded no zone with a `/` parsed.
        .flat_map(|v| Cookie::split_parse_encoded(v.to_string()).filter_map(Result::ok))
        .collect()
}

fn cookie<'a>(jar: &'a [Cookie<'static>], name: &str) -> Option<&'a str> {
    jar.iter().find(|c| c.name() == name).map(|c| c.value())
}

impl FromRequestParts<Console> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Viewer, Response> {
        let jar = cookies(&parts.headers);
        let lang = Lang::of(&parts.headers, cookie(&jar, LANG_COOKIE));
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/console/".into());
        let here = if here.starts_with("/console") {
            here
        } else {
            format!("/console{here}")
        };
        let session = match cookie(&jar, SESSION_COOKIE) {
            Some(id) => c
                .inner
                .auth
                .current(id, &c.inner.cfg, Instant::now())
                .await
                .map(|s| (id.to_string(), s)),
            None => None,
        };
        let Some((id, s)) = session else {
            let expired = cookie(&jar, SESSION_COOKIE).is_some();
            let target = format!(
                "/console/signin?next={}{}",
                encode(&here),
                if expired { "&expired=1" } else { "" }
            );
            return Err(Redirect::to(&target).into_response());
        };
        let tz = cookie(&jar, TZ_COOKIE)
            .and_then(|z| z.parse::<Tz>().ok())
            .unwrap_or(c.book().default_timezone);
        Ok(Viewer {
            session: id,
            user: s.user,
            role: s.role,
            csrf: s.csrf,
            lang,
            tz,
            path: encode(&here),
        })
    }
}

impl Viewer {
    /// A POST's CSRF token must be this session's.
    pub(super) fn check_csrf(&self, presented: &str) -> Result<(), Response> {
        if crate::values::same_secret(self.csrf.as_bytes(), presented.as_bytes()) {
            Ok(())
        } else {
            Err(self.refuse(StatusCode::FORBIDDEN, "refused.csrf"))
        }
    }

    /// A page that says no, in the viewer's language.
    pub(super) fn refuse(&self, status: StatusCode, key: &'static str) -> Response {
        let body = layout::frame(self, self.lang.t(key), layout::problem(self.lang.t(key)));
        (status, body).into_response()
    }

    pub(super) fn store_error(&self, e: crate::store::StoreError) -> Response {
        tracing::error!("store error in the console: {e}");
        self.refuse(StatusCode::SERVICE_UNAVAILABLE, "store_error")
    }

    pub(super) fn require(&self, allowed: bool) -> Result<(), Response> {
        if allowed {
            Ok(())
        } else {
            Err(self.refuse(StatusCode::FORBIDDEN, "refused.role"))
        }
    }
}

/// One path segment (a contact or message id), percent-encoded.
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A path inside the console to come back to, or the search page (never another site, and
/// nothing a `Location` header cannot carry: a CR or LF made the redirect a bare 500, and
/// the sign-in's session cookie went out on it).
fn safe_back(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && !n.starts_with("/console/signin") =>
        {
            n.to_string()
        }
        _ => "/console/search".into(),
    }
}

async fn index() -> Redirect {
    Redirect::to("/console/search")
}

async fn not_found(headers: HeaderMap) -> Response {
    let jar = cookies(&headers);
    let l = Lang::of(&headers, cookie(&jar, LANG_COOKIE));
    (
        StatusCode::NOT_FOUND,
        layout::bare(l, l.t("not_found"), layout::problem(l.t("not_found"))),
    )
        .into_response()
}

#[derive(serde::Deserialize, Default)]
struct SigninQuery {
    next: Option<String>,
    expired: Option<String>,
}

/// A console cookie: HttpOnly, `SameSite=Strict`, `Secure` behind https; for the browser's
/// session when `max_age` is `None`.
fn cookie_header(
    c: &Console,
    name: &str,
    value: &str,
    max_age: Option<cookie::time::Duration>,
) -> HeaderValue {
    let mut cookie = Cookie::build((name.to_string(), value.to_string()))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(c.inner.cfg.secure_cookie());
    if let Some(age) = max_age {
        cookie = cookie.max_age(age);
    }
    let cookie = cookie.build();
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn signin_form(l: Lang, pre: &str, next: &str, message: Option<maud::Markup>) -> maud::Markup {
    layout::bare(
        l,
        l.t("signin"),
        html! {
            h1 { "aftercare" }
            @if let Some(m) = message { (m) }
            form.signin method="post" action="/console/signin" {
                input type="hidden" name="csrf" value=(pre);
                input type="hidden" name="next" value=(next);
                label { (l.t("signin.name")) input type="text" name="name" id="name" autocomplete="username"; }
                label { (l.t("signin.password")) input type="password" name="password" id="password" autocomplete="current-password" required; }
                p.hint { (l.t("signin.token_hint")) }
                button type="submit" id="signin" { (l.t("signin")) }
            }
        },
    )
}

async fn signin_page(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<SigninQuery>,
) -> Response {
    let jar = cookies(&headers);
    let l = Lang::of(&headers, cookie(&jar, LANG_COOKIE));
    let pre = auth::random_token();
    let message = q
        .expired
        .is_some()
        .then(|| layout::notice(l.t("signin.expired")));
    let next = safe_back(q.next.as_deref());
    let mut resp = signin_form(l, &pre, &next, message).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&c, PRE_COOKIE, &pre, None),
    );
    resp
}

#[derive(serde::Deserialize, Default)]
struct SigninForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

async fn signin_post(
    State(c): State<Console>,
    headers: HeaderMap,
    form: Result<axum::Form<SigninForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let jar = cookies(&headers);
    let l = Lang::of(&headers, cookie(&jar, LANG_COOKIE));
    let f = form.map(|f| f.0).unwrap_or_default();
    let pre = cookie(&jar, PRE_COOKIE).unwrap_or("");
    if pre.is_empty() || !crate::values::same_secret(pre.as_bytes(), f.csrf.as_bytes()) {
        return (
            StatusCode::FORBIDDEN,
            layout::bare(l, l.t("signin"), layout::problem(l.t("refused.csrf"))),
        )
            .into_response();
    }
    let name = f.name.trim().to_string();
    let next = safe_back(Some(&f.next));
    // A turn for the check, held until it ends (moved into the task: a caller who hangs up
    // does not free it early).
    let device = cookie(&jar, DEVICE_COOKIE).map(str::to_string);
    let checks = c.inner.auth.checks.clone();
    let Ok(Ok(turn)) = tokio::time::timeout(auth::CHECK_WAIT, checks.acquire_owned()).await else {
        tracing::warn!("console sign-in refused: too many password checks at once");
        let mut resp = (
            StatusCode::SERVICE_UNAVAILABLE,
            signin_form(l, pre, &next, Some(layout::problem(l.t("signin.busy")))),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return resp;
    };
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let outcome = {
        let c = c.clone();
        let password = f.password.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            c.inner.auth.sign_in(
                &c.inner.cfg,
                &c.inner.tokens,
                &name,
                &password,
                device.as_deref(),
                Instant::now(),
            )
        })
        .await
    };
    match outcome {
        Ok(Ok(signed)) => {
            let s = &signed.session;
            tracing::info!(user = %s.user, role = s.role.as_str(), "console sign-in");
            let mut resp = Redirect::to(&next).into_response();
            let device_age = cookie::time::Duration::seconds(
                i64::try_from(auth::DEVICE_LIFETIME.as_secs()).unwrap_or(i64::MAX),
            );
            for h in [
                cookie_header(&c, SESSION_COOKIE, &signed.id, None),
                cookie_header(&c, DEVICE_COOKIE, &signed.device, Some(device_age)),
            ] {
                resp.headers_mut().append(header::SET_COOKIE, h);
            }
            resp
        }
        Ok(Err(why)) => {
            let (status, msg) = match why {
                auth::Refused::Wrong => (StatusCode::UNAUTHORIZED, l.t("signin.wrong").to_string()),
                auth::Refused::Slowed(d) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("{} {}", l.t("signin.slowed"), d.as_secs().max(1)),
                ),
            };
            tracing::warn!(user = %crate::text::printable(&name), "console sign-in refused");
            let fresh = auth::random_token();
            let mut resp = (
                status,
                signin_form(l, &fresh, &next, Some(layout::problem(&msg))),
            )
                .into_response();
            resp.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(&c, PRE_COOKIE, &fresh, None),
            );
            resp
        }
        Err(e) => {
            tracing::error!("console sign-in task failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                layout::bare(l, l.t("signin"), layout::problem(l.t("store_error"))),
            )
                .into_response()
        }
    }
}

#[derive(serde::Deserialize, Default)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn signout(
    State(c): State<Console>,
    v: Viewer,
    form: Result<axum::Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let f = form.map(|f| f.0).unwrap_or_default();
    if let Err(r) = v.check_csrf(&f.csrf) {
        return r;
    }
    c.inner.auth.sign_out(&v.session);
    let mut resp = Redirect::to("/console/signin").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&c, SESSION_COOKIE, "", Some(cookie::time::Duration::ZERO)),
    );
    resp
}

#[derive(serde::Deserialize, Default)]
struct Back {
    back: Option<String>,
}

/// Switch the language (a cookie), then back to the page it was switched on.
async fn set_lang(
    State(c): State<Console>,
    Path(code): Path<String>,
    Query(q): Query<Back>,
) -> Response {
    let Some(l) = Lang::parse(&code) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut resp = Redirect::to(&safe_back(q.back.as_deref())).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&c, LANG_COOKIE, l.code(), None),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::safe_back;

    #[test]
    fn only_console_paths_a_header_can_carry_are_gone_back_to() {
        for (next, want) in [
            (
                Some("/console/customer/c-1?tab=log"),
                "/console/customer/c-1?tab=log",
            ),
            (None, "/console/search"),
            (Some("https://evil.example/"), "/console/search"),
            (Some("/console//evil.example"), "/console/search"),
            (Some("/console/\\evil.example"), "/console/search"),
            (Some("/console/signin"), "/console/search"),
            (Some("/console/x\r\nSet-Cookie: a=b"), "/console/search"),
            (Some("/console/x\u{7f}"), "/console/search"),
        ] {
            assert_eq!(safe_back(next), want, "{next:?}");
        }
    }
}
