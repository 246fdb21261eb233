//! Support's pages: the search box, a customer (who they are and one timeline of everything
//! that happened to them, newest first), a message with what it said, and the hand actions
//! (retry, cancel, suppress, unsuppress), each recorded with the agent's name.

use super::layout::{address, at, frame, notice, problem, text, when};
use super::{Console, Viewer};
use crate::model::{Contact, Event, MessageRecord, MessageState};
use crate::store::{
    AgentAction, HandAction, LogFilter, NewAction, SearchKey, StoredReply, Suppression,
};
use crate::values::Seal;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};
use serde::Deserialize;

/// Timeline items shown at most (newest first).
const TIMELINE_MAX: usize = 500;

/// Links to customers whose id is an email address or a phone number (shops that key
/// customers by them), for viewers who may not read addresses: the id is sealed into the
/// link, under keys drawn when the daemon starts, so neither the page, the address bar nor
/// the browser's history shows it. Such a link lasts while the daemon runs, like the
/// session that opened it.
pub(super) struct CustomerLinks(Seal);

impl CustomerLinks {
    pub(super) fn new() -> CustomerLinks {
        use rand::RngCore;
        let (mut key, mut nonce_key) = ([0u8; 32], [0u8; 32]);
        rand::rng().fill_bytes(&mut key);
        rand::rng().fill_bytes(&mut nonce_key);
        CustomerLinks(Seal::new(
            &key,
            &nonce_key,
            b"",
            b"aftercare console customer link",
        ))
    }

    fn seal(&self, id: &str) -> String {
        self.0.seal(id.as_bytes())
    }

    fn open(&self, token: &str) -> Option<String> {
        String::from_utf8(self.0.open(token).ok()?).ok()
    }
}

/// The link to a customer's page for this viewer: sealed when the id would show an address
/// the viewer may not read.
pub(super) fn customer_href(c: &Console, v: &Viewer, id: &str) -> String {
    if v.role.sees_addresses() || super::layout::mask_in_text(id) == id {
        format!("/console/customer/{}", super::encode_path(id))
    } else {
        format!("/console/c/{}", c.inner.links.seal(id))
    }
}

/// A customer as this viewer may see them called: the name, else the id, masked like free
/// text (a name or an id may be a phone number).
pub(super) fn customer_name(v: &Viewer, name: Option<&str>, id: &str) -> String {
    text(v, name.unwrap_or(id))
}

#[derive(Deserialize, Default)]
pub(super) struct SearchQuery {
    q: Option<String>,
}

/// The E.164 form of what someone typed as a phone number, in any of the usual ways:
/// `+86 138 0013 8000`, `0086-138-0013-8000`, `8613800138000`, or a national number
/// (`138 0013 8000`) read in the region of the default locale (`zh-CN`: China).
pub(super) fn phone_key(input: &str, default_locale: &str) -> Option<String> {
    let s = input.trim();
    let digits = s.chars().filter(char::is_ascii_digit).count();
    if !(6..=17).contains(&digits)
        || !s
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')' | '.'))
    {
        return None;
    }
    let compact: String = s
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    let international = if let Some(rest) = compact.strip_prefix("00") {
        Some(format!("+{rest}"))
    } else if compact.starts_with('+') {
        Some(compact.clone())
    } else {
        None
    };
    if let Some(i) = international {
        return crate::values::normalise_phone(&i).ok();
    }
    let region = default_locale.split(['-', '_']).nth(1).and_then(|r| {
        r.to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .ok()
    });
    if let Some(region) = region
        && let Ok(n) = phonenumber::parse(Some(region), &compact)
        && phonenumber::is_valid(&n)
    {
        return Some(n.format().mode(phonenumber::Mode::E164).to_string());
    }
    // A country code without its plus (`8613800138000`).
    crate::values::normalise_phone(&format!("+{compact}")).ok()
}

/// The search box, and its results.
pub(super) async fn search(
    State(c): State<Console>,
    v: Viewer,
    Query(q): Query<SearchQuery>,
) -> Response {
    let l = v.lang;
    let query = q.q.unwrap_or_default();
    let query = query.trim();
    let mut results = None;
    if !query.is_empty() && !query.contains('\0') {
        let book = c.book();
        let key = SearchKey {
            text: query.to_string(),
            email: query.contains('@').then(|| query.to_string()),
            phone: phone_key(query, &book.default_locale),
        };
        match c.inner.store.search(&key).await {
            Ok(hits) => {
                // One match: straight to the customer.
                if let [one] = hits.as_slice() {
                    return Redirect::to(&customer_href(&c, &v, &one.contact.id)).into_response();
                }
                results = Some(hits);
            }
            Err(e) => return v.store_error(e),
        }
    }
    let body = html! {
        form.search method="get" action="/console/search" role="search" {
            input type="search" name="q" id="q" value=(query) placeholder=(l.t("search.placeholder")) autofocus;
            button type="submit" id="find" { (l.t("search.go")) }
        }
        p.hint { (l.t("search.hint")) }
        @if let Some(hits) = &results {
            @if hits.is_empty() {
                p.empty id="no-match" { (l.t("search.none")) }
            } @else {
                table.results {
                    thead { tr { th { (l.t("customer.name")) } th { (l.t("customer.id")) } th { (l.t("customer.email")) } th { (l.t("customer.phone")) } th { (l.t("search.matched")) } } }
                    tbody {
                        @for h in hits {
                            tr {
                                td { a href=(customer_href(&c, &v, &h.contact.id)) { (h.contact.name.as_deref().map(|n| text(&v, n)).unwrap_or_else(|| "—".into())) } }
                                td { (text(&v, &h.contact.id)) }
                                td { (h.contact.email.as_deref().map(|e| address(&v, e)).unwrap_or_default()) }
                                td { (h.contact.phone.as_deref().map(|p| address(&v, p)).unwrap_or_default()) }
                                td { (l.t(match_key(h.matched))) }
                            }
                        }
                    }
                }
            }
        }
    };
    frame(&v, l.t("nav.search"), body).into_response()
}

fn match_key(kind: &str) -> &'static str {
    match kind {
        "email" => "match.email",
        "phone" => "match.phone",
        "order" => "match.order",
        "message" => "match.message",
        _ => "match.contact",
    }
}

#[derive(Deserialize, Default)]
pub(super) struct Done {
    ok: Option<String>,
    err: Option<String>,
}

/// The key of a notice after an action (`?ok=retry`).
fn done_key(ok: &str) -> Option<&'static str> {
    Some(match ok {
        "retry" => "done.retry",
        "cancel" => "done.cancel",
        "suppress" => "done.suppress",
        "unsuppress" => "done.unsuppress",
        "claim" => "done.claim",
        "done" => "done.done",
        _ => return None,
    })
}

pub(super) fn notices(v: &Viewer, d: &Done) -> Markup {
    let l = v.lang;
    html! {
        @if let Some(k) = d.ok.as_deref().and_then(done_key) { (notice(l.t(k))) }
        @if let Some(state) = d.err.as_deref().and_then(crate::model::MessageState::parse) {
            (problem(&format!("{} {}", l.t("refused.state"), state)))
        }
    }
}

/// One thing in a customer's timeline.
enum Item {
    Event(Event),
    Message(Box<MessageRecord>, bool),
    Reply(StoredReply),
    Action(AgentAction),
    Suppressed(Suppression),
}

impl Item {
    fn at(&self) -> DateTime<Utc> {
        match self {
            Item::Event(e) => e.occurred_at.with_timezone(&Utc),
            Item::Message(m, _) => m
                .attempt_log
                .last()
                .map(|a| a.at)
                .or(m.sent_at)
                .unwrap_or(m.due_at),
            Item::Reply(r) => r.received_at,
            Item::Action(a) => a.at,
            Item::Suppressed(s) => s.created_at,
        }
    }
}

/// The customer page.
pub(super) async fn page(
    State(c): State<Console>,
    v: Viewer,
    Path(id): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    show(c, v, id, d).await
}

/// The customer page by a sealed link ([`CustomerLinks`]).
pub(super) async fn sealed_page(
    State(c): State<Console>,
    v: Viewer,
    Path(token): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    match c.inner.links.open(&token) {
        Some(id) => show(c, v, id, d).await,
        None => v.refuse(StatusCode::NOT_FOUND, "customer.link_gone"),
    }
}

async fn show(c: Console, v: Viewer, id: String, d: Done) -> Response {
    let l = v.lang;
    let store = &c.inner.store;
    let contact = match store.contact(&id).await {
        Ok(Some(contact)) => contact,
        Ok(None) => return v.refuse(StatusCode::NOT_FOUND, "customer.none"),
        Err(e) => return v.store_error(e),
    };
    let book = c.book();
    let zone = book.zone_of(&contact);
    let loaded = async {
        let messages = store
            .find_messages(&LogFilter {
                contact_id: Some(contact.id.clone()),
                // The newest: no more can be shown, and the oldest of a long history were
                // read instead of what happened last.
                newest: true,
                limit: TIMELINE_MAX as i64 + 1,
                ..Default::default()
            })
            .await?;
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
        let with_content = store.with_content(&ids).await?;
        let events = store.events_of(&contact.id).await?;
        let replies = store.replies_of(&contact.id).await?;
        let actions = store.actions_of(&contact.id).await?;
        let suppressions = store
            .suppressions_of(contact.email.as_deref(), contact.phone.as_deref())
            .await?;
        Ok::<_, crate::store::StoreError>((
            messages,
            with_content,
            events,
            replies,
            actions,
            suppressions,
        ))
    };
    let (messages, with_content, events, replies, actions, suppressions) = match loaded.await {
        Ok(x) => x,
        Err(e) => return v.store_error(e),
    };
    let mut items: Vec<Item> = Vec::new();
    items.extend(events.into_iter().map(Item::Event));
    items.extend(messages.into_iter().map(|m| {
        let has = with_content.contains(&m.id);
        Item::Message(Box::new(m), has)
    }));
    items.extend(replies.into_iter().map(Item::Reply));
    items.extend(actions.into_iter().map(Item::Action));
    items.extend(suppressions.iter().cloned().map(Item::Suppressed));
    items.sort_by_key(|i| std::cmp::Reverse(i.at()));
    let truncated = items.len() > TIMELINE_MAX;
    items.truncate(TIMELINE_MAX);
    let now = c.inner.clock.now();
    let body = html! {
        (notices(&v, &d))
        h1 { (customer_name(&v, contact.name.as_deref(), &contact.id)) }
        (who(&v, &contact, zone, now, &suppressions, &book.default_locale))
        h2 { (l.t("customer.timeline")) }
        @if truncated { p.hint { (l.t("customer.truncated")) } }
        ol.timeline id="timeline" {
            @for item in &items { (timeline_item(&v, item, &contact, zone)) }
        }
    };
    frame(
        &v,
        &customer_name(&v, contact.name.as_deref(), &contact.id),
        body,
    )
    .into_response()
}

fn who(
    v: &Viewer,
    contact: &Contact,
    zone: Tz,
    now: DateTime<Utc>,
    suppressions: &[Suppression],
    default_locale: &str,
) -> Markup {
    let l = v.lang;
    let consent = |ch: &str| match contact.consent.get(ch) {
        Some(serde_json::Value::Bool(true)) => l.t("consent.yes"),
        Some(serde_json::Value::Bool(false)) => l.t("consent.no"),
        _ => l.t("consent.unset"),
    };
    html! {
        dl.who id="who" {
            dt { (l.t("customer.id")) } dd { (text(v, &contact.id)) }
            dt { (l.t("customer.email")) } dd id="email" { (contact.email.as_deref().map(|e| address(v, e)).unwrap_or_else(|| "—".into())) }
            dt { (l.t("customer.phone")) } dd id="phone" { (contact.phone.as_deref().map(|p| address(v, p)).unwrap_or_else(|| "—".into())) }
            dt { (l.t("customer.locale")) } dd { (contact.locale.as_deref().unwrap_or(default_locale)) }
            dt { (l.t("customer.zone")) } dd { (zone.name()) " · " (l.t("customer.local_now")) " " (now.with_timezone(&zone).format("%H:%M")) }
            dt { (l.t("customer.consent")) } dd { "email: " (consent("email")) " · sms: " (consent("sms")) }
        }
        h2 { (l.t("customer.suppressions")) }
        @if suppressions.is_empty() {
            p.empty { (l.t("customer.not_suppressed")) }
        } @else {
            ul.suppressions {
                @for s in suppressions {
                    li {
                        (s.channel) " " (address(v, suppressed_address(contact, s)))
                        @if s.erased() { " (" (l.t("customer.erased_entry")) ")" }
                        " — " (l.t("reason")) ": " (text(v, &s.reason))
                        @if let Some(src) = &s.source { " (" (src) ")" }
                        " · " (l.t("since")) " " (when(v, s.created_at, None))
                        @if v.role.acts() {
                            form.inline method="post" action={ "/console/customer/" (super::encode_path(&contact.id)) "/unsuppress" } {
                                input type="hidden" name="csrf" value=(v.csrf);
                                input type="hidden" name="channel" value=(s.channel);
                                button type="submit" { (l.t("unsuppress")) }
                            }
                        }
                    }
                }
            }
        }
        @if v.role.acts() && (contact.email.is_some() || contact.phone.is_some()) {
            form.suppress method="post" action={ "/console/customer/" (super::encode_path(&contact.id)) "/suppress" } {
                input type="hidden" name="csrf" value=(v.csrf);
                select name="channel" {
                    @if contact.email.is_some() { option value="email" { "email" } }
                    @if contact.phone.is_some() { option value="sms" { "sms" } }
                }
                input type="text" name="reason" placeholder=(l.t("suppress.reason")) required;
                button type="submit" { (l.t("suppress")) }
            }
        }
    }
}

/// The address a suppression entry is for: an erased (hashed) entry was found by the
/// contact's own address on its channel, which is what support knows it by.
fn suppressed_address<'a>(contact: &'a Contact, s: &'a Suppression) -> &'a str {
    let own = match s.channel.as_str() {
        "email" => contact.email.as_deref(),
        "sms" => contact.phone.as_deref(),
        _ => None,
    };
    match own {
        Some(a) if s.erased() => a,
        _ => &s.address,
    }
}

fn timeline_item(v: &Viewer, item: &Item, contact: &Contact, zone: Tz) -> Markup {
    let l = v.lang;
    let t = when(v, item.at(), Some(zone));
    match item {
        Item::Event(e) => html! {
            li.event {
                span.when { (t) } span.kind { (l.t("kind.event")) }
                strong { (e.kind) }
                @if let Some(o) = e.order_id() { " · " (l.t("order")) " " (o) }
                @if !e.data.is_empty() {
                    " " code.data { (text(v, &serde_json::Value::Object(e.data.clone()).to_string())) }
                }
            }
        },
        Item::Message(m, has_content) => html! {
            li.message.(m.state.as_str()) {
                span.when { (t) } span.kind { (l.t("kind.message")) }
                strong { (m.job_id) } " · " (l.t("step")) " " (m.step)
                " · " (m.channel.as_deref().or(m.channel_plan.as_deref()).unwrap_or("—"))
                " · " span.state { (m.state.as_str()) }
                @if let Some(d) = &m.delivery { " (" (d) ")" }
                @if let Some(r) = &m.reason { " — " span.reason { (text(v, r)) } }
                " " a.open href={ "/console/message/" (super::encode_path(&m.id)) } { (if *has_content { l.t("open_message") } else { l.t("message") }) }
                @if !m.attempt_log.is_empty() {
                    ul.attempts {
                        @for a in &m.attempt_log {
                            li {
                                "#" (a.attempt) " " (at(a.at, v.tz)) " " (a.channel)
                                @if let Some(g) = &a.gateway { " via " (g) }
                                " " strong { (a.outcome) }
                                @if let Some(code) = a.code { " " (code) }
                                @if let Some(d) = &a.detail { " — " (text(v, d)) }
                                @for r in &a.receipts {
                                    br; (l.t("receipt")) ": " (r.status)
                                    @if let Some(code) = &r.code { " " (code) }
                                    @if let Some(tx) = &r.text { " " (text(v, tx)) }
                                    " " (at(r.received_at, v.tz))
                                }
                            }
                        }
                    }
                }
                (message_actions(v, m))
            }
        },
        Item::Reply(r) => html! {
            li.reply {
                span.when { (t) } span.kind { (l.t("kind.reply")) }
                (address(v, &r.from)) " via " (r.gateway) ": " q { (text(v, &r.text)) }
                @if let Some(a) = &r.action { " (" (a) ")" }
            }
        },
        Item::Action(a) => html! {
            li.action {
                span.when { (t) } span.kind { (l.t("kind.action")) }
                strong { (a.agent) } " " (a.action)
                @if let Some(ch) = &a.channel { " " (ch) }
                @if let Some(ad) = &a.address { " " (address(v, ad)) }
                @if let Some(m) = &a.message_id { " · " a href={ "/console/message/" (super::encode_path(m)) } { (m) } }
                @if let Some(n) = &a.note { " — " (text(v, n)) }
            }
        },
        Item::Suppressed(s) => html! {
            li.suppressed {
                span.when { (t) } span.kind { (l.t("kind.suppression")) }
                (s.channel) " " (address(v, suppressed_address(contact, s)))
                @if s.erased() { " (" (l.t("customer.erased_entry")) ")" }
                " — " (text(v, &s.reason))
            }
        },
    }
}

/// Retry or cancel, for roles that act and states that allow it.
fn message_actions(v: &Viewer, m: &MessageRecord) -> Markup {
    let l = v.lang;
    let retry = matches!(m.state, MessageState::Failed | MessageState::Cancelled);
    let cancel = matches!(m.state, MessageState::Scheduled | MessageState::Retrying);
    html! {
        @if v.role.acts() && (retry || cancel) {
            form.inline method="post" action={ "/console/message/" (super::encode_path(&m.id)) "/" (if retry { "retry" } else { "cancel" }) } {
                input type="hidden" name="csrf" value=(v.csrf);
                button type="submit" class=(if retry { "retry" } else { "cancel" }) { (if retry { l.t("retry") } else { l.t("cancel") }) }
            }
        }
    }
}

/// One message: what it is, what the customer got, every attempt.
pub(super) async fn message(
    State(c): State<Console>,
    v: Viewer,
    Path(id): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    let l = v.lang;
    let store = &c.inner.store;
    let found = store
        .find_messages(&LogFilter {
            id: Some(id.clone()),
            limit: 1,
            ..Default::default()
        })
        .await;
    let m = match found.map(|v| v.into_iter().next()) {
        Ok(Some(m)) => m,
        Ok(None) => return v.refuse(StatusCode::NOT_FOUND, "message.none"),
        Err(e) => return v.store_error(e),
    };
    let (contents, contact) = match (
        store.message_contents(&m.id).await,
        store.contact(&m.contact_id).await,
    ) {
        (Ok(x), Ok(c)) => (x, c),
        (Err(e), _) | (_, Err(e)) => return v.store_error(e),
    };
    let zone = contact.as_ref().map(|ct| c.book().zone_of(ct));
    let body = html! {
        (notices(&v, &d))
        p.crumbs { a href=(customer_href(&c, &v, &m.contact_id)) { "← " (customer_name(&v, contact.as_ref().and_then(|c| c.name.as_deref()), &m.contact_id)) } }
        h1 { (m.job_id) " · " (l.t("step")) " " (m.step) }
        dl.who id="message" {
            dt { (l.t("state")) } dd id="state" { (m.state.as_str()) @if let Some(d) = &m.delivery { " (" (d) ")" } }
            @if let Some(r) = &m.reason { dt { (l.t("reason")) } dd { (text(&v, r)) } }
            dt { (l.t("due")) } dd { (when(&v, m.due_at, zone)) }
            dt { (l.t("channel")) } dd { (m.channel.as_deref().or(m.channel_plan.as_deref()).unwrap_or("—")) @if let Some(a) = &m.address { " " (address(&v, a)) } }
            @if let Some(o) = &m.order_id { dt { (l.t("order")) } dd { (o) } }
            dt { "id" } dd { code { (m.id) } }
        }
        (message_actions(&v, &m))
        h2 { (l.t("message.content")) }
        @if contents.is_empty() {
            p.empty id="no-content" { (l.t("message.no_content")) }
        }
        @for ct in &contents {
            section.content {
                p.meta { (ct.channel) " · " (l.t("attempt")) " #" (ct.attempt) " · " (when(&v, ct.at, zone)) }
                @if let Some(s) = &ct.subject { p.subject { strong { (l.t("message.subject")) ": " } span.subject-text { (text(&v, s)) } } }
                pre.body { (text(&v, &ct.text)) }
            }
        }
        h2 { (l.t("message.attempts")) }
        table.attempts id="attempts" {
            tbody {
                @for a in &m.attempt_log {
                    tr {
                        td { "#" (a.attempt) }
                        td { (when(&v, a.at, zone)) }
                        td { (a.channel) @if let Some(g) = &a.gateway { " via " (g) } }
                        td { (a.address.as_deref().map(|x| address(&v, x)).unwrap_or_default()) }
                        td.outcome { (a.outcome) }
                        td { (a.code.map(|c| c.to_string()).unwrap_or_default()) }
                        td.detail { (a.detail.as_deref().map(|d| text(&v, d)).unwrap_or_default())
                            @for r in &a.receipts { br; (l.t("receipt")) ": " (r.status) @if let Some(code) = &r.code { " " (code) } " " (at(r.received_at, v.tz)) }
                        }
                    }
                }
            }
        }
    };
    frame(&v, l.t("message"), body).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    reason: String,
}

/// The checks every action makes: the form's CSRF token, the role.
fn admit(
    v: &Viewer,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<ActionForm, Response> {
    let f = form.map(|f| f.0).unwrap_or_default();
    v.check_csrf(&f.csrf)?;
    v.require(v.role.acts())?;
    Ok(f)
}

fn action(v: &Viewer, c: &Console) -> NewAction {
    NewAction {
        agent: v.user.clone(),
        contact_id: None,
        message_id: None,
        note: None,
        at: c.inner.clock.now(),
    }
}

fn after_hand(
    v: &Viewer,
    r: Result<HandAction, crate::store::StoreError>,
    id: &str,
    ok: &str,
) -> Response {
    let back = format!("/console/message/{}", super::encode_path(id));
    match r {
        Ok(HandAction::Done) => Redirect::to(&format!("{back}?ok={ok}")).into_response(),
        Ok(HandAction::NotFound) => v.refuse(StatusCode::NOT_FOUND, "message.none"),
        Ok(HandAction::WrongState(s)) => Redirect::to(&format!("{back}?err={s}")).into_response(),
        Err(e) => v.store_error(e),
    }
}

pub(super) async fn retry(
    State(c): State<Console>,
    v: Viewer,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    if let Err(r) = admit(&v, form) {
        return r;
    }
    let r = c.inner.store.agent_retry(&id, &action(&v, &c)).await;
    tracing::info!(message = %crate::text::printable(&id), by = %v.user, "retry requested in the console");
    after_hand(&v, r, &id, "retry")
}

pub(super) async fn cancel(
    State(c): State<Console>,
    v: Viewer,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    if let Err(r) = admit(&v, form) {
        return r;
    }
    let r = c.inner.store.agent_cancel(&id, &action(&v, &c)).await;
    after_hand(&v, r, &id, "cancel")
}

/// The contact's address on `channel`, or a refusal.
async fn contact_address(
    c: &Console,
    v: &Viewer,
    id: &str,
    channel: &str,
) -> Result<(Contact, String), Response> {
    let contact = match c.inner.store.contact(id).await {
        Ok(Some(ct)) => ct,
        Ok(None) => return Err(v.refuse(StatusCode::NOT_FOUND, "customer.none")),
        Err(e) => return Err(v.store_error(e)),
    };
    let addr = match channel {
        "email" => contact.email.clone(),
        "sms" => contact.phone.clone(),
        _ => None,
    };
    match addr {
        Some(a) => Ok((contact, a)),
        None => Err(v.refuse(StatusCode::BAD_REQUEST, "not_found")),
    }
}

pub(super) async fn suppress(
    State(c): State<Console>,
    v: Viewer,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let f = match admit(&v, form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (contact, addr) = match contact_address(&c, &v, &id, &f.channel).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let reason = f.reason.trim();
    let reason = if reason.is_empty() || reason.contains('\0') {
        format!("suppressed by {}", v.user)
    } else {
        reason.chars().take(500).collect()
    };
    let mut a = action(&v, &c);
    a.contact_id = Some(contact.id.clone());
    a.note = Some(reason.clone());
    match c
        .inner
        .store
        .agent_suppress(&f.channel, &addr, &reason, &a)
        .await
    {
        Ok(()) => Redirect::to(&format!(
            "/console/customer/{}?ok=suppress",
            super::encode_path(&contact.id)
        ))
        .into_response(),
        Err(e) => v.store_error(e),
    }
}

pub(super) async fn unsuppress(
    State(c): State<Console>,
    v: Viewer,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let f = match admit(&v, form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (contact, addr) = match contact_address(&c, &v, &id, &f.channel).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut a = action(&v, &c);
    a.contact_id = Some(contact.id.clone());
    match c.inner.store.agent_unsuppress(&f.channel, &addr, &a).await {
        Ok(_) => Redirect::to(&format!(
            "/console/customer/{}?ok=unsuppress",
            super::encode_path(&contact.id)
        ))
        .into_response(),
        Err(e) => v.store_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_customer_link_opens_here_only_and_says_nothing() {
        let links = CustomerLinks::new();
        let token = links.seal("+8613900139000");
        assert_eq!(links.seal("+8613900139000"), token, "one link per customer");
        assert_ne!(links.seal("+8613900139001"), token);
        assert!(!token.contains("139"), "{token}");
        assert_eq!(links.open(&token).as_deref(), Some("+8613900139000"));
        // Another daemon's keys (a restart), an altered or a cut link: nothing.
        assert_eq!(CustomerLinks::new().open(&token), None);
        let mut altered = token.clone().into_bytes();
        altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(links.open(&String::from_utf8(altered).unwrap()), None);
        assert_eq!(links.open(&token[..10]), None);
        assert_eq!(links.open("not base64 !"), None);
    }

    #[test]
    fn an_erased_entry_is_shown_by_the_contacts_own_address() {
        let c = Contact {
            id: "c-back".into(),
            email: Some("Wang.Fang@Example.com".into()),
            phone: Some("+8613800138000".into()),
            ..Default::default()
        };
        let entry = |channel: &str, address: String| Suppression {
            channel: channel.into(),
            address,
            reason: "erased: request".into(),
            source: Some("erasure".into()),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            expires_at: None,
        };
        let hashed = crate::store::hashed_address;
        let email = entry("email", hashed("email", "wang.fang@example.com"));
        assert!(email.erased());
        assert_eq!(suppressed_address(&c, &email), "Wang.Fang@Example.com");
        let sms = entry("sms", hashed("sms", "+8613800138000"));
        assert_eq!(suppressed_address(&c, &sms), "+8613800138000");
        let plain = entry("email", "wang.fang@example.com".into());
        assert!(!plain.erased());
        assert_eq!(suppressed_address(&c, &plain), "wang.fang@example.com");
    }

    #[test]
    fn phone_numbers_in_any_format() {
        let want = Some("+8613800138000".to_string());
        for input in [
            "+86 138 0013 8000",
            "+86-138-0013-8000",
            "0086 138 0013 8000",
            "8613800138000",
            "138 0013 8000",
            "13800138000",
            "(+86) 138.0013.8000",
        ] {
            assert_eq!(phone_key(input, "zh-CN"), want, "{input}");
        }
        assert_eq!(
            phone_key("+1 415 555 2671", "zh-CN"),
            Some("+14155552671".into())
        );
        assert_eq!(phone_key("SO-1001", "zh-CN"), None);
        assert_eq!(phone_key("c-42", "zh-CN"), None);
        assert_eq!(phone_key("12", "zh-CN"), None);
    }
}
