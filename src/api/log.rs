//! The delivery log over HTTP: the same filters as `aftercare logs`, keyset pagination, one
//! message with its attempts, a contact's timeline, and retry/cancel by hand (admin).

use super::Scope;
use super::{ApiError, ApiState, authorize, bad_query as bad};
use crate::clock::{from_millis, to_millis};
use crate::model::{MessageRecord, MessageState};
use crate::store::{HandAction, LogFilter};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Query of `GET /v1/messages`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct MessagesQuery {
    /// Contact id, email address or phone number.
    contact: Option<String>,
    job: Option<String>,
    /// `event.data.order_id` of the triggering event.
    order: Option<String>,
    /// Comma-separated states: scheduled, open, claimed, retrying, sent, failed, cancelled.
    status: Option<String>,
    /// Sent SMS by the carrier's receipt: delivered, undelivered, or unknown (none yet).
    delivery: Option<String>,
    /// Due at or after (RFC 3339, or a date: its midnight in defaults.timezone).
    since: Option<String>,
    /// Due at or before (RFC 3339, or a date: its midnight in defaults.timezone).
    until: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of the log, oldest due first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct MessagePage {
    pub items: Vec<MessageRecord>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `<due_at in ms>~<message id>`: a position in the log's order (due time, then id). Any
/// text of that shape is a position, so the OpenAPI pattern says exactly what is taken.
fn cursor_of(m: &MessageRecord) -> String {
    format!("{}~{}", to_millis(m.due_at), m.id)
}

fn parse_cursor(c: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    let parsed = c.split_once('~').and_then(|(ms, id)| {
        let shape = (1..=15).contains(&ms.len())
            && ms.bytes().all(|b| b.is_ascii_digit())
            && (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        shape
            .then(|| ms.parse::<i64>().ok())
            .flatten()
            .map(|ms| (from_millis(ms), id.to_string()))
    });
    parsed.ok_or_else(|| bad("cursor", "not a cursor from a previous page".into()))
}

/// The delivery log.
#[utoipa::path(
    get,
    path = "/v1/messages",
    params(MessagesQuery),
    responses(
        (status = 200, description = "A page of messages with their attempts", body = MessagePage),
        (status = 400, description = "A bad filter", body = ApiError),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 403, description = "Scope does not allow reading", body = ApiError),
    ),
    security(("bearer" = []))
)]
pub(super) async fn list_messages(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<Json<MessagePage>, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    for (field, value) in [
        ("contact", &q.contact),
        ("job", &q.job),
        ("order", &q.order),
        ("cursor", &q.cursor),
    ] {
        super::refuse_nul(field, value.as_deref().unwrap_or_default())?;
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad("limit", format!("{limit} is not between 1 and 1000")));
    }
    // Comma-separated states, each exactly as named (the OpenAPI enum, at least one); left
    // out means all. `status=` is refused, not read as all: it is also how a list holding one
    // empty name is written, which the schema calls invalid (schemathesis sends both).
    let mut states = Vec::new();
    for s in q
        .status
        .as_deref()
        .map(|s| s.split(',').collect::<Vec<_>>())
        .unwrap_or_default()
    {
        states.push(MessageState::parse(s).ok_or_else(|| {
            let names: Vec<&str> = MessageState::ALL.iter().map(|s| s.as_str()).collect();
            let what = if s.is_empty() {
                "an empty state".to_string()
            } else {
                format!("`{s}` is not a state")
            };
            bad(
                "status",
                format!(
                    "{what}: name one or more of {} separated by commas, or leave `status` out for every state",
                    names.join(", ")
                ),
            )
        })?);
    }
    let delivery = match q.delivery.as_deref() {
        None => None,
        Some(d @ ("delivered" | "undelivered" | "unknown")) => Some(d.to_string()),
        Some(d) => {
            return Err(bad(
                "delivery",
                format!("`{d}` is not one of delivered, undelivered, unknown"),
            ));
        }
    };
    let tz = state.book.load().default_timezone;
    let filter = LogFilter {
        contact: q.contact,
        job: q.job,
        order: q.order,
        states,
        delivery,
        since: super::query_time("since", &q.since, tz)?,
        until: super::query_time("until", &q.until, tz)?,
        after: q.cursor.as_deref().map(parse_cursor).transpose()?,
        limit: limit + 1,
        ..Default::default()
    };
    let mut items = state
        .store
        .find_messages(&filter)
        .await
        .map_err(ApiError::store)?;
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(cursor_of)
    } else {
        None
    };
    Ok(Json(MessagePage { items, next_cursor }))
}

async fn one(state: &ApiState, id: &str) -> Result<MessageRecord, ApiError> {
    super::refuse_nul("id", id)?;
    let filter = LogFilter {
        id: Some(id.to_string()),
        limit: 1,
        ..Default::default()
    };
    let found = state
        .store
        .find_messages(&filter)
        .await
        .map_err(ApiError::store)?;
    found.into_iter().next().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no message `{id}`"),
        )
    })
}

/// One message with every attempt.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, body = MessageRecord), (status = 404, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = []))
)]
pub(super) async fn get_message(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<MessageRecord>, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    Ok(Json(one(&state, &id).await?))
}

fn hand_result(action: HandAction, id: &str, what: &str) -> Result<(), ApiError> {
    match action {
        HandAction::Done => Ok(()),
        HandAction::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no message `{id}`"),
        )),
        HandAction::WrongState(s) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong_state",
            format!("message `{id}` is {s}; only {what} messages can be"),
        )
        .field("state")),
    }
}

/// Send a failed or cancelled message again, now (admin).
#[utoipa::path(
    post,
    path = "/v1/messages/{id}/retry",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, body = MessageRecord), (status = 404, body = ApiError), (status = 409, description = "Not failed or cancelled", body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []))
)]
pub(super) async fn retry_message(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<MessageRecord>, ApiError> {
    let who = authorize(&state, &headers, Scope::Admin)?;
    super::refuse_nul("id", &id)?;
    let now = state.clock.now();
    let action = state
        .store
        .retry_message(&id, &format!("retry requested by {who}"), now)
        .await
        .map_err(ApiError::store)?;
    hand_result(action, &id, "failed or cancelled")?;
    tracing::info!(message = %id, by = %who, "retry requested");
    Ok(Json(one(&state, &id).await?))
}

/// Cancel a message that has not gone yet (admin).
#[utoipa::path(
    post,
    path = "/v1/messages/{id}/cancel",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, body = MessageRecord), (status = 404, body = ApiError), (status = 409, description = "Already sent, failed or cancelled", body = ApiError), (status = 403, body = ApiError)),
    security(("bearer" = []))
)]
pub(super) async fn cancel_message(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<MessageRecord>, ApiError> {
    let who = authorize(&state, &headers, Scope::Admin)?;
    super::refuse_nul("id", &id)?;
    let now = state.clock.now();
    let action = state
        .store
        .cancel_message(&id, &format!("cancelled by {who}"), now)
        .await
        .map_err(ApiError::store)?;
    hand_result(action, &id, "scheduled, retrying or open")?;
    tracing::info!(message = %id, by = %who, "cancelled by hand");
    Ok(Json(one(&state, &id).await?))
}

/// A contact's events, messages and SMS replies, in time order.
#[utoipa::path(
    get,
    path = "/v1/contacts/{id}/timeline",
    params(("id" = String, Path, description = "Contact id, email address or phone number")),
    responses((status = 200, description = "{contact, items: [{at, kind: event|message|reply|bounce, ...}]}"), (status = 404, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = []))
)]
pub(super) async fn timeline(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers, Scope::Read)?;
    super::refuse_nul("id", &id)?;
    let messages = state
        .store
        .find_messages(&LogFilter {
            contact: Some(id.clone()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .map_err(ApiError::store)?;
    let contact_id = match messages.first() {
        Some(m) => m.contact_id.clone(),
        None => id.clone(),
    };
    let contact = state
        .store
        .contact(&contact_id)
        .await
        .map_err(ApiError::store)?;
    let Some(contact) = contact else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no contact `{id}`"),
        ));
    };
    let events = state
        .store
        .events_of(&contact.id)
        .await
        .map_err(ApiError::store)?;
    let mut items: Vec<(DateTime<Utc>, serde_json::Value)> = Vec::new();
    for e in events {
        let at = e.occurred_at.with_timezone(&Utc);
        items.push((at, json!({"at": at, "kind": "event", "event": e})));
    }
    for m in messages {
        let at = m.sent_at.unwrap_or(m.due_at);
        if m.channel.as_deref() == Some("email") {
            for b in state
                .store
                .bounces(Some(&m.id), None, 100)
                .await
                .map_err(ApiError::store)?
            {
                items.push((
                    b.received_at,
                    json!({"at": b.received_at, "kind": "bounce", "bounce": b}),
                ));
            }
        }
        items.push((at, json!({"at": at, "kind": "message", "message": m})));
    }
    for r in state
        .store
        .replies_of(&contact.id)
        .await
        .map_err(ApiError::store)?
    {
        items.push((
            r.received_at,
            json!({"at": r.received_at, "kind": "reply", "reply": r}),
        ));
    }
    items.sort_by_key(|(at, _)| *at);
    Ok(Json(
        json!({"contact": contact, "items": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>()}),
    ))
}
