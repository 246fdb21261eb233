//! A person's data over HTTP (admin): `DELETE /v1/contacts/{id}` erases it, `GET
//! /v1/contacts/{id}/export` returns all of it. The same store calls as `aftercare contact
//! erase|export`.

use super::Scope;
use super::{ApiError, ApiState, authorize};
use crate::store::Erased;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

/// Erase everything held about the contact(s) with this id, email address or phone
/// number. Idempotent: erasing again answers 200 with zero counts.
#[utoipa::path(
    delete,
    path = "/v1/contacts/{id}",
    params(("id" = String, Path, description = "Contact id, email address or phone number")),
    responses((status = 200, description = "What was removed (counts only) and a one-way reference", body = Erased)),
    security(("bearer" = []))
)]
pub(super) async fn erase(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Erased>, ApiError> {
    let who = authorize(&state, &headers, Scope::Admin)?;
    super::refuse_nul("id", &id)?;
    let ids = state
        .store
        .contacts_named(&id)
        .await
        .map_err(ApiError::store)?;
    let mut total = Erased::default();
    for contact in ids {
        let e = state
            .store
            .erase_contact(
                &contact,
                &format!("erased through the API by {who}"),
                state.clock.now(),
            )
            .await
            .map_err(ApiError::store)?;
        total.contacts += e.contacts;
        total.events += e.events;
        total.messages += e.messages;
        total.cancelled += e.cancelled;
        total.attempts += e.attempts;
        total.receipts += e.receipts;
        total.replies += e.replies;
        total.suppressed += e.suppressed;
        total.reference.extend(e.reference);
    }
    // Counts and one-way references only: never the id or an address.
    tracing::info!(token = %who, reference = %total.reference.join(","), contacts = total.contacts, messages = total.messages, events = total.events, "contact erased");
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
