//! A person's data over HTTP (admin): `DELETE /v1/contacts/{id}` erases it, `GET
//! /v1/contacts/{id}/export` returns all of it. The same store calls as `aftercare contact
//! erase|export`.

use super::Scope;
use super::{ApiError, ApiState, authorize};
use crate::store::Erased;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

/// Query of `DELETE /v1/contacts/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EraseQuery {
    /// Why, as `contact erase --reason` takes it (a request's ticket, say): kept on the
    /// hashed suppression entries and in the log, beside the token that asked. At most 200
    /// characters, no control characters.
    reason: Option<String>,
}

/// The longest reason kept: a ticket reference and a few words, not a letter.
pub(super) const MAX_REASON_CHARS: usize = 200;

/// Erase everything held about the contact(s) with this id, email address or phone
/// number. Idempotent: erasing again answers 200 with zero counts.
#[utoipa::path(
    delete,
    path = "/v1/contacts/{id}",
    params(("id" = String, Path, description = "Contact id, email address or phone number"), EraseQuery),
    responses((status = 200, description = "What was removed (counts only) and a one-way reference", body = Erased)),
    security(("bearer" = []))
)]
pub(super) async fn erase(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<EraseQuery>, QueryRejection>,
) -> Result<Json<Erased>, ApiError> {
    let who = authorize(&state, &headers, Scope::Admin)?;
    super::refuse_nul("id", &id)?;
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let bad =
        |why: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", why).field("reason");
    let given = q.reason.as_deref().unwrap_or_default();
    if given.chars().count() > MAX_REASON_CHARS {
        return Err(bad(format!(
            "`reason` is longer than {MAX_REASON_CHARS} characters; a ticket reference and a few words"
        )));
    }
    if let Some(at) = crate::text::first_control(given) {
        return Err(bad(format!(
            "`reason` holds a control character ({at}); one line of plain text"
        )));
    }
    let reason = match given.trim() {
        "" => format!("erased through the API by {who}"),
        r => format!("{r} (erased through the API by {who})"),
    };
    let ids = state
        .store
        .contacts_named(&id)
        .await
        .map_err(ApiError::store)?;
    let mut total = Erased::default();
    for contact in ids {
        let e = state
            .store
            .erase_contact(&contact, &reason, state.clock.now())
            .await
            .map_err(ApiError::store)?;
        total.contacts += e.contacts;
        total.events += e.events;
        total.messages += e.messages;
        total.cancelled += e.cancelled;
        total.attempts += e.attempts;
        total.receipts += e.receipts;
        total.replies += e.replies;
        total.bounces += e.bounces;
        total.suppression_changes += e.suppression_changes;
        total.suppressed += e.suppressed;
        total.reference.extend(e.reference);
    }
    // Counts and one-way references only: never the id or an address.
    tracing::info!(token = %who, reason = %reason, reference = %total.reference.join(","), contacts = total.contacts, messages = total.messages, events = total.events, "contact erased");
    Ok(Json(total))
}

/// Everything held about the contact: the contact, its events with their data, its
/// messages with every attempt and receipt, its replies and its suppression entries.
#[utoipa::path(
    get,
    path = "/v1/contacts/{id}/export",
    params(("id" = String, Path, description = "Contact id, email address or phone number")),
    responses((status = 200, description = "{exported_at, contact, contact_dates, events, messages, replies, suppressions}")),
    security(("bearer" = []))
)]
pub(super) async fn export(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&state, &headers, Scope::Admin)?;
    super::refuse_nul("id", &id)?;
    let ids = state
        .store
        .contacts_named(&id)
        .await
        .map_err(ApiError::store)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no contact `{id}`"),
        )
    };
    let contact = match ids.as_slice() {
        [] => return Err(not_found()),
        [one] => one,
        many => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "ambiguous",
                format!("{} contacts have `{id}`; ask by contact id", many.len()),
            ));
        }
    };
    state
        .store
        .export_contact(contact, state.clock.now())
        .await
        .map_err(ApiError::store)?
        .map(Json)
        .ok_or_else(not_found)
}
