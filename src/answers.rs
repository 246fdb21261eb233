//! Survey answers, however they come: the answer page (`GET`/`POST /s/{token}`), an SMS
//! reply that is a score, `POST /v1/answers` (a form elsewhere), or `aftercare answer`.
//!
//! A message is answerable when its job is a survey (`survey: nps|csat`), it was sent, and
//! its answer window (`survey.window`, default 7 days after the send) is open; until then the
//! answer may be changed. Every recorded answer, and every change, becomes a
//! `survey.answered` event that goes through `plan` like any other (so a job can trigger on
//! it: the detractor callback), written in the same transaction as the answer's row.
//! An unchanged answer given again (a double-click, a retried POST) records nothing.

// Answers come from outside (forms, SMS texts, API bodies): no `unwrap`, and no indexing or
// slicing that could panic on them. Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use crate::ingest::check_event;
use crate::jobs::{Job, Survey};
use crate::plan::{self, IngestOutcome};
use crate::playbook::Playbook;
use crate::store::{Store, StoreError, StoredAnswer, TokenMessage};
use crate::values::new_id;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use std::sync::Arc;

/// The longest comment kept, in characters.
pub(crate) const MAX_COMMENT: usize = 2000;

/// How an answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Web,
    Sms,
    Api,
    Cli,
}

impl Via {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Via::Web => "web",
            Via::Sms => "sms",
            Via::Api => "api",
            Via::Cli => "cli",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AnswerError {
    /// No message has this token (mistyped, or forged).
    #[error("no survey has this link (token)")]
    Unknown,
    #[error(
        "message {message} is not a survey: job `{job}` has no `survey:` key (or is no longer defined)"
    )]
    NotSurvey { message: String, job: String },
    #[error("this survey message has not been sent")]
    NotSent,
    #[error("this survey closed at {}", .0.to_rfc3339_opts(SecondsFormat::Secs, true))]
    Closed(DateTime<Utc>),
    #[error("score {score} is outside the {scale} scale ({lo} to {hi})")]
    Score {
        score: i64,
        scale: &'static str,
        lo: i64,
        hi: i64,
    },
    #[error("the comment {0}")]
    Comment(String),
    /// Planning refused the `survey.answered` event (a job's dedupe key it cannot fill).
    #[error("the answer's event was refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AnswerError {
    /// The HTTP status of the API's answer: 404 unknown, 410 closed, 400 a bad answer.
    pub(crate) fn status(&self) -> u16 {
        match self {
            AnswerError::Unknown | AnswerError::NotSurvey { .. } => 404,
            AnswerError::NotSent => 409,
            AnswerError::Closed(_) => 410,
            AnswerError::Score { .. } | AnswerError::Comment(_) | AnswerError::Refused(_) => 400,
            AnswerError::Store(_) => 503,
        }
    }
}

/// An answerable survey message.
#[derive(Debug, Clone)]
pub(crate) struct Open {
    pub message: TokenMessage,
    pub job: Arc<Job>,
    pub survey: Survey,
    pub closes_at: DateTime<Utc>,
}

/// What recording an answer did.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub answer: StoredAnswer,
    /// The `survey.answered` event written; `None` when the answer was already so.
    pub event_id: Option<String>,
    /// Messages the event planned (a detractor callback).
    pub planned: usize,
    pub closes_at: DateTime<Utc>,
}

/// The survey message behind `token`, if it may be answered now.
pub(crate) async fn open(
    book: &Playbook,
    store: &Store,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Open, AnswerError> {
    if token.is_empty() || token.len() > 64 || token.contains('\0') {
        return Err(AnswerError::Unknown);
    }
    let message = store
        .message_by_token(token)
        .await?
        .ok_or(AnswerError::Unknown)?;
    let job = book.jobs.get(&message.job_id).cloned();
    let Some((job, survey)) = job.and_then(|j| j.survey.map(|s| (j, s))) else {
        return Err(AnswerError::NotSurvey {
            message: message.id.clone(),
            job: message.job_id.clone(),
        });
    };
    let Some(sent_at) = message.sent_at.filter(|_| message.state.as_str() == "sent") else {
        return Err(AnswerError::NotSent);
    };
    let closes_at = sent_at + survey.window;
    if now > closes_at {
        return Err(AnswerError::Closed(closes_at));
    }
    Ok(Open {
        message,
        job,
        survey,
        closes_at,
    })
}

/// Record `score` (and `comment`) as the answer to the message behind `token`.
pub(crate) async fn record(
    book: &Playbook,
    store: &Store,
    token: &str,
    score: i64,
    comment: Option<&str>,
    via: Via,
    now: DateTime<Utc>,
) -> Result<Recorded, AnswerError> {
    let open = open(book, store, token, now).await?;
    let scale = open.survey.scale;
    if !scale.contains(score) {
        let (lo, hi) = scale.range();
        return Err(AnswerError::Score {
            score,
            scale: scale.as_str(),
            lo,
            hi,
        });
    }
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if let Some(c) = comment {
        if c.contains('\0') {
            return Err(AnswerError::Comment("holds a NUL character".into()));
        }
        if c.chars().count() > MAX_COMMENT {
            return Err(AnswerError::Comment(format!(
                "is longer than {MAX_COMMENT} characters"
            )));
        }
    }
    let m = &open.message;
    let mut answer = StoredAnswer {
        message_id: m.id.clone(),
        job_id: m.job_id.clone(),
        contact_id: m.contact.id.clone(),
        scale: scale.as_str().to_string(),
        score,
        comment: comment.map(str::to_string),
        channel: via.as_str().to_string(),
        answered_at: now,
        updated_at: now,
        changes: 0,
    };
    if let Some(old) = &m.answer {
        if old.score == score && old.comment.as_deref() == comment {
            return Ok(Recorded {
                answer: old.clone(),
                event_id: None,
                planned: 0,
                closes_at: open.closes_at,
            });
        }
        answer.answered_at = old.answered_at;
        answer.changes = old.changes + 1;
    }
    let event_id = format!("answer-{}", new_id(now));
    let event = json!({
        "id": event_id,
        "type": "survey.answered",
        "occurred_at": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "contact": {"id": m.contact.id},
        "data": {
            "score": score,
            "comment": answer.comment,
            "job": m.job_id,
            "message_id": m.id,
            "channel": via.as_str(),
            "scale": scale.as_str(),
        },
    });
    let incoming = check_event(event).map_err(|errs| {
        AnswerError::Refused(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let mut tx = store.begin().await?;
    if !tx.upsert_answer(&answer).await? {
        // The same answer was recorded meanwhile (a double click's other request): as the
        // check above would have said had it come first.
        drop(tx);
        let stored = store
            .message_by_token(token)
            .await?
            .and_then(|m| m.answer)
            .unwrap_or(answer);
        return Ok(Recorded {
            answer: stored,
            event_id: None,
            planned: 0,
            closes_at: open.closes_at,
        });
    }
    let outcome = plan::ingest_in(book, &mut tx, &[incoming], &[1], now).await?;
    let planned = match outcome.first() {
        Some(IngestOutcome::Accepted { planned, .. }) => *planned,
        Some(IngestOutcome::Rejected(errs)) => {
            return Err(AnswerError::Refused(
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        _ => 0,
    };
    tx.commit().await?;
    tracing::info!(message = %m.id, job = %m.job_id, score, via = via.as_str(), planned, "survey answered");
    Ok(Recorded {
        answer,
        event_id: Some(event_id),
        planned,
        closes_at: open.closes_at,
    })
}

/// An SMS reply from `phone` (E.164) that starts with a score: recorded as the answer to the
/// latest survey message sent to that number by SMS, while its window is open and when the
/// score is on its scale. `None`: the reply is not an answer and stays a reply.
pub(crate) async fn record_sms_reply(
    book: &Playbook,
    store: &Store,
    phone: &str,
    text: &str,
    now: DateTime<Utc>,
) -> Result<Option<Recorded>, AnswerError> {
    let Some((score, comment)) = parse_reply(text) else {
        return Ok(None);
    };
    let longest = book
        .jobs
        .iter()
        .filter_map(|j| j.survey.map(|s| s.window))
        .max();
    let Some(longest) = longest else {
        return Ok(None);
    };
    let sent = store.sms_sent_to(phone, now - longest).await?;
    let latest = sent
        .iter()
        .find(|s| book.jobs.get(&s.job_id).is_some_and(|j| j.survey.is_some()));
    let Some(latest) = latest else {
        return Ok(None);
    };
    match record(
        book,
        store,
        &latest.token,
        score,
        comment.as_deref(),
        Via::Sms,
        now,
    )
    .await
    {
        Ok(r) => Ok(Some(r)),
        // "12" to a 0–10 question, or a late reply: a message for a person, not an answer.
        Err(AnswerError::Score { .. } | AnswerError::Closed(_) | AnswerError::Comment(_)) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A reply that starts with a whole number of one or two digits (ASCII or full-width, `９`),
/// optionally followed by `分` or `/10`, then anything: the number, and the rest (after
/// spaces and punctuation) as the comment. `"3 太慢了"` → 3 and "太慢了"; `"10分"` → 10;
/// `"3.5"`, `"100"`, `"about 9"` → not a score.
pub(crate) fn parse_reply(text: &str) -> Option<(i64, Option<String>)> {
    let norm: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(u32::from(c) - 0xFF10 + u32::from('0')).unwrap_or(c),
            '／' => '/',
            '　' => ' ',
            c => c,
        })
        .collect();
    let digits: String = norm.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() || digits.len() > 2 {
        return None;
    }
    let score: i64 = digits.parse().ok()?;
    let mut rest = norm.get(digits.len()..).unwrap_or_default();
    // 3.5, 3,5: a number we do not take.
    let mut after = rest.chars();
    if let (Some('.' | ','), Some(d)) = (after.next(), after.next())
        && d.is_ascii_digit()
    {
        return None;
    }
    for unit in ["分", "/10", "/5", "点"] {
        if let Some(r) = rest.strip_prefix(unit) {
            rest = r;
            break;
        }
    }
    // The number must stand alone: "2days" is not a score.
    if rest.chars().next().is_some_and(char::is_alphanumeric)
        && !rest.chars().next().is_some_and(is_cjk)
    {
        return None;
    }
    let comment = rest
        .trim_start_matches(|c: char| {
            c.is_whitespace() || c.is_ascii_punctuation() || "，。！？、：；～—".contains(c)
        })
        .trim();
    Some((score, (!comment.is_empty()).then(|| comment.to_string())))
}

fn is_cjk(c: char) -> bool {
    matches!(u32::from(c), 0x3400..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_that_are_scores() {
        type Case<'a> = (&'a str, Option<(i64, Option<&'a str>)>);
        let cases: &[Case] = &[
            ("3 太慢了", Some((3, Some("太慢了")))),
            ("10", Some((10, None))),
            ("10分", Some((10, None))),
            ("９", Some((9, None))),
            ("１０分 很好", Some((10, Some("很好")))),
            ("  7, fast delivery ", Some((7, Some("fast delivery")))),
            ("0", Some((0, None))),
            ("8/10 ok", Some((8, Some("ok")))),
            ("5太慢", Some((5, Some("太慢")))),
            ("12", Some((12, None))),
            ("100", None),
            ("3.5", None),
            ("2days late", None),
            ("about 9", None),
            ("STOP", None),
            ("", None),
            ("包裹还没到", None),
        ];
        for (text, want) in cases {
            let got = parse_reply(text);
            let want = want.map(|(s, c)| (s, c.map(str::to_string)));
            assert_eq!(got, want, "{text:?}");
        }
    }
}
