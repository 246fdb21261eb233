//! The survey answer page (`GET`/`POST /s/{token}`, no bearer token: the link's token is the
//! authority, as for unsubscribe links) and `POST /v1/answers` (scope `ingest`) for answers
//! collected elsewhere.
//!
//! `GET` shows the job's question in the contact's language with the scale and a comment box;
//! `?score=N` (the one-click links in the email) only pre-selects N: mail scanners and link
//! previews follow every link, so nothing is recorded until the form is submitted (`POST`).
//! An unknown or forged token, a closed survey or a message not sent get a page that says so.

use super::{ApiError, ApiState, Scope, authorize, read_body};
use crate::answers::{self, AnswerError, Open, Via};
use crate::jobs::Scale;
use crate::playbook::{MessageFacts, Playbook};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The words of the page, in Chinese or English (the contact's language; English otherwise).
struct Words {
    zh: bool,
}

impl Words {
    fn of(locale: &str) -> Words {
        Words {
            zh: locale.to_ascii_lowercase().starts_with("zh"),
        }
    }
    fn pick(&self, zh: &'static str, en: &'static str) -> &'static str {
        if self.zh { zh } else { en }
    }
    fn question(&self, scale: Scale) -> &'static str {
        match scale {
            Scale::Nps => self.pick(
                "您有多大可能向朋友或同事推荐我们？",
                "How likely are you to recommend us to a friend or colleague?",
            ),
            Scale::Csat => self.pick(
                "您对我们这次的服务满意吗？",
                "How satisfied are you with our service?",
            ),
        }
    }
    fn ends(&self, scale: Scale) -> (&'static str, &'static str) {
        match scale {
            Scale::Nps => (
                self.pick("完全不可能", "Not at all likely"),
                self.pick("非常可能", "Extremely likely"),
            ),
            Scale::Csat => (
                self.pick("非常不满意", "Very dissatisfied"),
                self.pick("非常满意", "Very satisfied"),
            ),
        }
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title></head><body style=\"font-family: sans-serif; max-width: 36em; margin: 3em auto; padding: 0 1em\">{body}</body></html>"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn when(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// The page for a token that cannot be answered: in both languages (an unknown token has no
/// contact to take a language from).
fn refusal(e: &AnswerError) -> Response {
    let (status, zh, en) = match e {
        AnswerError::Unknown | AnswerError::NotSurvey { .. } => (
            StatusCode::NOT_FOUND,
            "这个问卷链接无效。请使用邮件或短信中的链接。".to_string(),
            "This survey link is not valid. Please use the link from the email or text message itself.".to_string(),
        ),
        AnswerError::NotSent => (
            StatusCode::CONFLICT,
            "这份问卷还没有发出。".to_string(),
            "This survey has not been sent yet.".to_string(),
        ),
        AnswerError::Closed(at) => {
            let at = at.format("%Y-%m-%d %H:%M UTC");
            (
                StatusCode::GONE,
                format!("这份问卷已于 {at} 结束，感谢您的关注。"),
                format!("This survey closed on {at}. Thank you all the same."),
            )
        }
        AnswerError::Store(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "暂时无法记录，请稍后再试。".to_string(),
            "We cannot take answers right now; please try again in a few minutes.".to_string(),
        ),
        other => (
            StatusCode::BAD_REQUEST,
            "请选择一个分数。".to_string(),
            format!("Please choose a score ({other})."),
        ),
    };
    if let AnswerError::Store(err) = e {
        tracing::error!("survey page: {err}");
    }
    (
        status,
        Html(page(
            "Survey",
            &format!("<p>{}</p><p>{}</p>", escape(&zh), escape(&en)),
        )),
    )
        .into_response()
}

/// The question: the template's `survey[.<locale>].hbs` rendered for this message, or the
/// built-in one.
fn question(book: &Playbook, o: &Open, locale: &str) -> String {
    let m = &o.message;
    let ctx = book.context_json(
        &o.job,
        &m.contact,
        None,
        &MessageFacts {
            id: &m.id,
            step: m.step,
            token: None,
            send_at: m.sent_at.unwrap_or_default(),
        },
    );
    let ctx = handlebars::Context::from(ctx);
    match book.templates.render_survey(&m.template, locale, &ctx) {
        Some(Ok((html, _))) => html,
        Some(Err(e)) => {
            tracing::warn!(
                "survey question of {}: {e}; the built-in one is shown",
                m.template
            );
            escape(Words::of(locale).question(o.survey.scale))
        }
        None => escape(Words::of(locale).question(o.survey.scale)),
    }
}

fn form(book: &Playbook, o: &Open, selected: Option<i64>, note: &str) -> String {
    let locale = book.locale_of(&o.message.contact);
    let w = Words::of(&locale);
    let tz = book.zone_of(&o.message.contact);
    let (lo, hi) = o.survey.scale.range();
    let (low, high) = w.ends(o.survey.scale);
    let comment = o
        .message
        .answer
        .as_ref()
        .and_then(|a| a.comment.clone())
        .unwrap_or_default();
    let mut scores = String::new();
    for n in lo..=hi {
        let checked = if selected == Some(n) { " checked" } else { "" };
        scores.push_str(&format!(
            "<label style=\"display:inline-block; text-align:center; margin:0 .2em\"><input type=\"radio\" name=\"score\" value=\"{n}\"{checked} required><br>{n}</label>"
        ));
    }
    let previous = match &o.message.answer {
        Some(a) => format!(
            "<p>{} {}.</p>",
            w.pick("您之前的回答：", "Your answer so far:"),
            a.score
        ),
        None => String::new(),
    };
    format!(
        "<form method=\"post\"><p><strong>{q}</strong></p>{previous}{note}\
         <p><small>{lo}: {low} · {hi}: {high}</small></p><p>{scores}</p>\
         <p><label>{comment_label}<br><textarea name=\"comment\" rows=\"4\" cols=\"40\" maxlength=\"{max}\">{comment}</textarea></label></p>\
         <p><button type=\"submit\">{send}</button></p>\
         <p><small>{until} {closes}</small></p></form>",
        q = question(book, o, &locale),
        note = note,
        lo = lo,
        hi = hi,
        low = escape(low),
        high = escape(high),
        comment_label = w.pick(
            "还有什么想告诉我们的吗？（选填）",
            "Anything else you would like to tell us? (optional)"
        ),
        max = answers::MAX_COMMENT,
        comment = escape(&comment),
        send = w.pick("提交", "Send"),
        until = w.pick("提交后仍可修改，截止", "You can change your answer until"),
        closes = when(o.closes_at, tz),
    )
}

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    /// Pre-select this score (the one-click links in the email); records nothing.
    score: Option<String>,
}

/// The answer page: the question, the scale (with `?score=N` pre-selected) and a comment
/// box. Records nothing.
#[utoipa::path(
    get,
    path = "/s/{token}",
    params(
        ("token" = String, Path, description = "The message's token, from {{survey.url}}"),
        ("score" = Option<String>, Query, description = "A score to pre-select (nothing is recorded)"),
    ),
    responses(
        (status = 200, description = "The question with a form that POSTs to the same URL"),
        (status = 400, description = "A score that is not on the survey's scale, or a comment too long: the page again, saying so"),
        (status = 404, description = "A token no survey message has: a page saying so"),
        (status = 409, description = "The survey message has not been sent yet: a page saying so"),
        (status = 410, description = "The survey's answer window has closed: a page saying so"),
        (status = 503, description = "The store cannot be reached: a page asking to try later"),
    )
)]
pub(super) async fn survey_page(
    State(state): State<ApiState>,
    Path(token): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let book = state.book.load_full();
    let open = match answers::open(&book, &state.store, &token, state.clock.now()).await {
        Ok(o) => o,
        Err(e) => return refusal(&e),
    };
    let (lo, hi) = open.survey.scale.range();
    let selected = q
        .score
        .as_deref()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| (lo..=hi).contains(n))
        .or(open.message.answer.as_ref().map(|a| a.score));
    let title = Words::of(&book.locale_of(&open.message.contact)).pick("问卷", "Survey");
    Html(page(title, &form(&book, &open, selected, ""))).into_response()
}

/// Record the answer from the page's form (`score`, `comment`), or change it while the
/// survey is open.
#[utoipa::path(
    post,
    path = "/s/{token}",
    params(("token" = String, Path, description = "The message's token, from {{survey.url}}")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "score=N&comment=..."),
    responses(
        (status = 200, description = "Recorded: a thank-you page"),
        (status = 400, description = "A score that is not on the survey's scale, or a comment too long: the page again, saying so"),
        (status = 404, description = "A token no survey message has: a page saying so"),
        (status = 409, description = "The survey message has not been sent yet: a page saying so"),
        (status = 410, description = "The survey's answer window has closed: a page saying so"),
        (status = 503, description = "The store cannot be reached: a page asking to try later"),
    )
)]
pub(super) async fn survey_post(
    State(state): State<ApiState>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let book = state.book.load_full();
    let now = state.clock.now();
    let open = match answers::open(&book, &state.store, &token, now).await {
        Ok(o) => o,
        Err(e) => return refusal(&e),
    };
    let mut score: Option<String> = None;
    let mut comment: Option<String> = None;
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "score" => score = Some(v.into_owned()),
            "comment" => comment = Some(v.into_owned()),
            _ => {}
        }
    }
    let locale = book.locale_of(&open.message.contact);
    let w = Words::of(&locale);
    let score = score.and_then(|s| s.trim().parse::<i64>().ok());
    let again = |note: &str| {
        (
            StatusCode::BAD_REQUEST,
            Html(page(
                w.pick("问卷", "Survey"),
                &form(&book, &open, None, note),
            )),
        )
            .into_response()
    };
    let Some(score) = score else {
        return again(w.pick(
            "<p><em>请选择一个分数。</em></p>",
            "<p><em>Please choose a score.</em></p>",
        ));
    };
    match answers::record(&book, &state.store, &token, score, comment.as_deref(), Via::Web, now).await {
        Ok(r) => {
            let tz = book.zone_of(&open.message.contact);
            Html(page(
                w.pick("谢谢", "Thank you"),
                &format!(
                    "<p><strong>{}</strong></p><p>{} {}. {} {} <a href=\"\">{}</a></p>",
                    w.pick("谢谢您的回答！", "Thank you for your answer!"),
                    w.pick("您的评分：", "Your score:"),
                    r.answer.score,
                    w.pick("截止", "Until"),
                    when(r.closes_at, tz),
                    w.pick("可以修改回答", "you can change it here"),
                ),
            ))
            .into_response()
        }
        Err(AnswerError::Score { .. } | AnswerError::Comment(_)) => {
            again(w.pick("<p><em>请选择量表上的一个分数，留言不超过 2000 字。</em></p>", "<p><em>Please choose a score on the scale, and keep the comment under 2,000 characters.</em></p>"))
        }
        Err(e) => refusal(&e),
    }
}

/// An answer collected elsewhere (a third-party form), for the message with this token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AnswerRequest {
    /// The message's token (`{{message.token}}`). A NUL in it is refused with a 400, so the
    /// schema says so (schemathesis holds the two to it).
    #[schema(pattern = r"^[^\x00]*$")]
    pub token: String,
    /// 0–10 (nps) or 1–5 (csat), as the job's survey scale says (a whole number; `9.0` is 9).
    /// The schema's bounds are the widest scale's: a score outside every scale is refused.
    #[schema(value_type = i64, minimum = 0, maximum = 10)]
    pub score: serde_json::Number,
    /// At most `answers::MAX_COMMENT` characters once trimmed, without a NUL.
    #[schema(pattern = r"^[^\x00]*$", max_length = 2000)]
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct AnswerResponse {
    /// `recorded`, `changed` or `unchanged` (the same answer again: nothing new is written).
    pub status: String,
    pub answer: crate::store::StoredAnswer,
    /// The `survey.answered` event written, if any.
    pub event_id: Option<String>,
    /// Messages that event planned (a detractor callback).
    pub planned: usize,
    /// Until when the answer may be changed.
    pub closes_at: DateTime<Utc>,
}

/// Record an answer to a survey message by its token.
#[utoipa::path(
    post,
    path = "/v1/answers",
    request_body = AnswerRequest,
    responses(
        (status = 200, description = "Recorded (or unchanged)", body = AnswerResponse),
        (status = 400, description = "Malformed JSON, a NUL character in the token, or a score that is not a whole number on the survey's scale", body = ApiError),
        (status = 404, description = "No survey message has this token", body = ApiError),
        (status = 409, description = "The message has not been sent", body = ApiError),
        (status = 410, description = "The survey's answer window has closed", body = ApiError),
        (status = 503, description = "The store cannot be reached", body = ApiError),
    ),
    security(("bearer" = []))
)]
pub(super) async fn post_answer(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<AnswerResponse>, ApiError> {
    authorize(&state, &headers, Scope::Ingest)?;
    let body = read_body(&state, body).await?;
    let req: AnswerRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("not an answer: {e} (send {{\"token\", \"score\", \"comment\"}})"),
        )
    })?;
    super::refuse_nul("token", &req.token)?;
    let score = req
        .score
        .as_i64()
        .or_else(|| {
            req.score
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_answer",
                format!("score {} is not a whole number", req.score),
            )
            .field("score")
        })?;
    let book = state.book.load_full();
    let r = answers::record(
        &book,
        &state.store,
        &req.token,
        score,
        req.comment.as_deref(),
        Via::Api,
        state.clock.now(),
    )
    .await
    .map_err(|e| match e {
        AnswerError::Store(s) => ApiError::store(s),
        e => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let (code, field) = match &e {
                AnswerError::Unknown | AnswerError::NotSurvey { .. } => ("unknown_token", "token"),
                AnswerError::NotSent => ("not_sent", "token"),
                AnswerError::Closed(_) => ("closed", "token"),
                AnswerError::Score { .. } => ("invalid_answer", "score"),
                _ => ("invalid_answer", "comment"),
            };
            ApiError::new(status, code, e.to_string()).field(field)
        }
    })?;
    let status = match (&r.event_id, r.answer.changes) {
        (None, _) => "unchanged",
        (Some(_), 0) => "recorded",
        (Some(_), _) => "changed",
    };
    Ok(Json(AnswerResponse {
        status: status.into(),
        answer: r.answer,
        event_id: r.event_id,
        planned: r.planned,
        closes_at: r.closes_at,
    }))
}
