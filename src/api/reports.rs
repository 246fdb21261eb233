//! `GET /v1/reports/{conversions,nps,csat,answers,daily}` (scope `read`): the figures of
//! `aftercare report`, as JSON.

use super::{ApiError, ApiState, Scope, authorize, bad_query as bad, refuse_nul};
use crate::jobs::{Job, Scale};
use crate::reports::{self, AnswersReport, By, ConversionReport, ReportError, ScoreReport, Window};
use crate::store::DailyCount;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::NaiveDate;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReportQuery {
    /// The job's id.
    job: String,
    /// From (RFC 3339, or a date: its midnight in defaults.timezone); default: 30 days before `until`.
    since: Option<String>,
    /// Before; default: now.
    until: Option<String>,
    /// Group by: step, variant, channel, locale, week (conversions); week, month, locale, tier (nps, csat).
    #[param(value_type = Option<String>)]
    by: Option<By>,
    /// answers: only those at or below this score.
    score_lte: Option<i64>,
    /// answers: at most this many (1 to 100000; default 1000).
    limit: Option<i64>,
}

/// The query, parsed after the token is checked (a request without one is a 401 first).
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
}

/// The job and the window of a query.
fn prepare(state: &ApiState, q: &ReportQuery) -> Result<(Arc<Job>, Window, String), ApiError> {
    refuse_nul("job", &q.job)?;
    let book = state.book.load_full();
    let job = book.jobs.get(&q.job).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no job `{}`", q.job),
        )
        .field("job")
    })?;
    let tz = book.default_timezone;
    let since = super::query_time("since", &q.since, tz)?;
    let until = super::query_time("until", &q.until, tz)?;
    let w = Window::new(since, until, state.clock.now(), tz).map_err(refused_at("since"))?;
    Ok((job, w, book.default_locale.clone()))
}

/// A report's refusal: the store's, or the query's, naming `field`.
fn refused_at(field: &'static str) -> impl Fn(ReportError) -> ApiError {
    move |e| match e {
        ReportError::Store(s) => ApiError::store(s),
        ReportError::Invalid(m) => bad(field, m),
        ReportError::Field(f, m) => bad(f, m),
    }
}

/// The job reports refuse only what `by` asks for.
fn refused(e: ReportError) -> ApiError {
    refused_at("by")(e)
}

/// Conversions of a job: planned, sent, delivered, failed, cancelled by reason, converted by
/// its goal with a 95% interval; variants and holdout compared.
#[utoipa::path(
    get,
    path = "/v1/reports/conversions",
    params(ReportQuery),
    responses((status = 200, description = "The report", body = ConversionReport), (status = 404, description = "No such job", body = ApiError)),
    security(("bearer" = []))
)]
pub(super) async fn conversions(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ConversionReport>, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let q = query(q)?;
    let (job, w, locale) = prepare(&state, &q)?;
    reports::conversions(&state.store, &job, &w, q.by, &locale)
        .await
        .map(Json)
        .map_err(refused)
}

async fn scores(
    state: ApiState,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
    scale: Scale,
) -> Result<Json<ScoreReport>, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let q = query(q)?;
    let (job, w, locale) = prepare(&state, &q)?;
    reports::scores(&state.store, &job, scale, &w, q.by, &locale)
        .await
        .map(Json)
        .map_err(refused)
}

/// NPS of a survey job (scale nps): response rate, promoters, passives, detractors, NPS
/// with its 95% interval; a warning under 30 answers.
#[utoipa::path(
    get,
    path = "/v1/reports/nps",
    params(ReportQuery),
    responses((status = 200, description = "The report", body = ScoreReport), (status = 404, description = "No such job", body = ApiError)),
    security(("bearer" = []))
)]
pub(super) async fn nps(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ScoreReport>, ApiError> {
    scores(state, headers, q, Scale::Nps).await
}

/// CSAT of a survey job (scale csat): the share of 4–5 with its 95% interval.
#[utoipa::path(
    get,
    path = "/v1/reports/csat",
    params(ReportQuery),
    responses((status = 200, description = "The report", body = ScoreReport), (status = 404, description = "No such job", body = ApiError)),
    security(("bearer" = []))
)]
pub(super) async fn csat(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ScoreReport>, ApiError> {
    scores(state, headers, q, Scale::Csat).await
}

/// The answers to a survey job with their comments (`score_lte` for the detractors).
#[utoipa::path(
    get,
    path = "/v1/reports/answers",
    params(ReportQuery),
    responses((status = 200, description = "The answers", body = AnswersReport), (status = 404, description = "No such job", body = ApiError)),
    security(("bearer" = []))
)]
pub(super) async fn answers(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<AnswersReport>, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let q = query(q)?;
    let (job, w, _) = prepare(&state, &q)?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=100_000).contains(&limit) {
        return Err(bad("limit", format!("limit {limit}: 1 to 100000")));
    }
    reports::answers(&state.store, &job, &w, q.score_lte, limit)
        .await
        .map(Json)
        .map_err(refused)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DailyQuery {
    /// Only this job's messages; default: every job's (a job since removed keeps its figures).
    job: Option<String>,
    /// The first UTC day (YYYY-MM-DD); default: 29 days before `until`.
    since: Option<String>,
    /// The last UTC day, included (YYYY-MM-DD); default: today.
    until: Option<String>,
}

/// Finished messages per UTC day by job, step, variant, channel and outcome (`sent`,
/// `failed`, `cancelled`, `held_out`; `delivered` and `undelivered` count sent SMS again):
/// the counts the retention purge and erasure keep, added to the messages still stored, so a
/// past day reads the same after them.
#[utoipa::path(
    get,
    path = "/v1/reports/daily",
    params(DailyQuery),
    responses((status = 200, description = "The counts, by day", body = Vec<DailyCount>), (status = 400, description = "A day that is not YYYY-MM-DD, or since after until", body = ApiError)),
    security(("bearer" = []))
)]
pub(super) async fn daily(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<DailyQuery>, QueryRejection>,
) -> Result<Json<Vec<DailyCount>>, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let q = query(q)?;
    let day = |field: &str, v: &Option<String>| -> Result<Option<NaiveDate>, ApiError> {
        let Some(s) = v else { return Ok(None) };
        refuse_nul(field, s)?;
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| bad(field, format!("`{s}` is not a date (YYYY-MM-DD)")))
    };
    let since = day("since", &q.since)?;
    let until = day("until", &q.until)?;
    if let Some(j) = &q.job {
        refuse_nul("job", j)?;
    }
    let today = state.clock.now().date_naive();
    reports::daily(&state.store, q.job.as_deref(), since, until, today)
        .await
        .map(Json)
        .map_err(refused_at("since"))
}
