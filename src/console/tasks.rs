//! Callback tasks for agents without a CRM: open and overdue oldest first, done newest
//! first; claim one ("I'm calling") so colleagues see it is taken, close it with a note. The
//! same rows as `aftercare callbacks`, and closing one is the same change, recorded with the
//! agent's name.

use super::customer::{Done, notices};
use super::layout::{address, frame, when};
use super::{Console, Viewer};
use crate::model::MessageState;
use crate::store::{HandAction, NewAction, Tasks};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

/// How many done tasks the Done tab shows, the newest.
const DONE_SHOWN: usize = 500;

#[derive(Deserialize, Default)]
pub(super) struct TasksQuery {
    show: Option<String>,
    #[serde(flatten)]
    done: Done,
}

pub(super) async fn page(
    State(c): State<Console>,
    v: Viewer,
    Query(q): Query<TasksQuery>,
) -> Response {
    if let Err(r) = v.require(v.role.acts()) {
        return r;
    }
    let l = v.lang;
    let show = q.show.as_deref().unwrap_or("open");
    let now = c.inner.clock.now();
    let store = &c.inner.store;
    // Done: the newest, newest first (one more read to know whether older ones are left
    // out). Open and overdue: every one, oldest first: the customer who has waited longest
    // is called first.
    let done = show == "done";
    let read = if done {
        store
            .callback_tasks(Tasks::Done, DONE_SHOWN as i64 + 1)
            .await
    } else {
        store.callback_tasks(Tasks::ToDo, 100_000).await
    };
    let mut rows = match read {
        Ok(t) => t,
        Err(e) => return v.store_error(e),
    };
    let done_left_out = done && rows.len() > DONE_SHOWN;
    rows.truncate(if done { DONE_SHOWN } else { rows.len() });
    let pending = |s: MessageState| {
        matches!(
            s,
            MessageState::Open | MessageState::Scheduled | MessageState::Retrying
        )
    };
    if show == "overdue" {
        rows.retain(|t| pending(t.state) && t.due_at <= now);
    }
    let ids: Vec<String> = rows.iter().map(|t| t.id.clone()).collect();
    let contact_ids: Vec<String> = rows.iter().map(|t| t.contact_id.clone()).collect();
    let (claims, contacts) = match (
        store.task_claims(&ids).await,
        store.contacts(&contact_ids).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return v.store_error(e),
    };
    let book = c.book();
    let tab = |key: &'static str, name: &str| {
        html! { a.tab.current[show == name] href={ "/console/tasks?show=" (name) } { (l.t(key)) } }
    };
    let body = html! {
        (notices(&v, &q.done))
        h1 { (l.t("nav.tasks")) }
        nav.tabs { (tab("tasks.open", "open")) (tab("tasks.overdue", "overdue")) (tab("tasks.done", "done")) }
        @if rows.is_empty() { p.empty { (l.t("tasks.none")) } }
        @if done_left_out { p.hint id="tasks-newest" { (l.t("tasks.newest")) } }
        ol.tasks id="tasks" {
            @for t in &rows {
                @let contact = contacts.iter().find(|ct| ct.id == t.contact_id);
                @let zone = contact.map(|ct| book.zone_of(ct));
                li.task.overdue[pending(t.state) && t.due_at <= now] data-task=(t.id) {
                    p {
                        span.when { (l.t("due")) " " (when(&v, t.due_at, zone)) }
                        " " strong { (t.job_id) } " · "
                        a href={ "/console/customer/" (super::encode_path(&t.contact_id)) } {
                            (contact.and_then(|ct| ct.name.clone()).unwrap_or_else(|| t.contact_id.clone()))
                        }
                        @if let Some(p) = contact.and_then(|ct| ct.phone.as_deref()) { " · " (address(&v, p)) }
                        @if let Some(o) = &t.order_id { " · " (l.t("order")) " " (o) }
                        " · " span.state { (t.state.as_str()) }
                    }
                    @if let Some((who, at)) = claims.get(&t.id) {
                        p.claimed { (l.t("tasks.claimed_by")) " " strong { (who) } " " (when(&v, *at, None)) }
                    }
                    @if let Some(r) = t.reason.as_deref().filter(|_| t.state.is_final()) { p.reason { (super::layout::text(&v, r)) } }
                    @if t.state == MessageState::Open {
                        form.inline method="post" action={ "/console/tasks/" (super::encode_path(&t.id)) "/claim" } {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" class="claim" { (l.t("tasks.claim")) }
                        }
                        form.done method="post" action={ "/console/tasks/" (super::encode_path(&t.id)) "/done" } {
                            input type="hidden" name="csrf" value=(v.csrf);
                            input type="text" name="note" placeholder=(l.t("tasks.note")) required;
                            button type="submit" class="done" { (l.t("tasks.mark_done")) }
                        }
                    }
                }
            }
        }
    };
    frame(&v, l.t("nav.tasks"), body).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct TaskForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

fn admit(v: &Viewer, form: Result<Form<TaskForm>, FormRejection>) -> Result<TaskForm, Response> {
    let f = form.map(|f| f.0).unwrap_or_default();
    v.check_csrf(&f.csrf)?;
    v.require(v.role.acts())?;
    Ok(f)
}

fn after(v: &Viewer, r: Result<HandAction, crate::store::StoreError>, ok: &str) -> Response {
    match r {
        Ok(HandAction::Done) => Redirect::to(&format!("/console/tasks?ok={ok}")).into_response(),
        Ok(HandAction::NotFound) => v.refuse(StatusCode::NOT_FOUND, "not_found"),
        Ok(HandAction::WrongState(s)) => {
            Redirect::to(&format!("/console/tasks?err={s}")).into_response()
        }
        Err(e) => v.store_error(e),
    }
}

pub(super) async fn claim(
    State(c): State<Console>,
    v: Viewer,
    Path(id): Path<String>,
    form: Result<Form<TaskForm>, FormRejection>,
) -> Response {
    if let Err(r) = admit(&v, form) {
        return r;
    }
    let a = NewAction {
        agent: v.user.clone(),
        contact_id: None,
        message_id: None,
        note: None,
        at: c.inner.clock.now(),
    };
    let r = c.inner.store.agent_claim_task(&id, &a).await;
    after(&v, r, "claim")
}

pub(super) async fn done(
    State(c): State<Console>,
    v: Viewer,
    Path(id): Path<String>,
    form: Result<Form<TaskForm>, FormRejection>,
) -> Response {
    let f = match admit(&v, form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let note = f.note.trim();
    let note = if note.is_empty() || note.contains('\0') {
        "called".to_string()
    } else {
        note.chars().take(2000).collect()
    };
    let a = NewAction {
        agent: v.user.clone(),
        contact_id: None,
        message_id: None,
        note: Some(note),
        at: c.inner.clock.now(),
    };
    let r = c.inner.store.agent_close_task(&id, &a).await;
    tracing::info!(task = %crate::text::printable(&id), by = %v.user, "callback task closed in the console");
    after(&v, r, "done")
}

#[cfg(test)]
mod tests {
    use super::DONE_SHOWN;
    use crate::console::i18n::Lang;

    #[test]
    fn the_done_tabs_note_says_how_many_it_shows() {
        for l in [Lang::Zh, Lang::En] {
            assert!(
                l.t("tasks.newest").contains(&DONE_SHOWN.to_string()),
                "{}",
                l.t("tasks.newest")
            );
        }
    }
}
