//! `aftercare answer`: record a survey answer by hand (a customer who answered by phone, a
//! paper form), by the message's token or by job and contact. The same path as the answer
//! page: the answer window, the scale, and a `survey.answered` event that jobs act on.

use super::{App, Exit};
use crate::answers::{self, AnswerError, Via};
use crate::values::When;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// The score: 0–10 (nps) or 1–5 (csat)
    score: i64,
    /// The message's token (the last part of its survey link)
    #[arg(long, required_unless_present = "job", conflicts_with_all = ["job", "contact"])]
    token: Option<String>,
    /// With --contact: the latest message of this survey job sent to the contact
    #[arg(long, requires = "contact")]
    job: Option<String>,
    /// Contact id, email address or phone number
    #[arg(long, requires = "job")]
    contact: Option<String>,
    /// What the customer said
    #[arg(long)]
    comment: Option<String>,
    /// Record it as of this time instead of now (RFC 3339, or a date: its midnight in defaults.timezone)
    #[arg(long, value_parser = When::parse)]
    now: Option<When>,
}

pub(super) async fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    let app = App::load_valid(config_path)?;
    let store = app.open_store().await?;
    let book = app.playbook();
    let now = crate::clock::from_option(app.at(a.now)).now();
    let token = match (&a.token, &a.job, &a.contact) {
        (Some(t), _, _) => t.clone(),
        (None, Some(job), Some(contact)) => match store.latest_sent_token(job, contact).await? {
            Some(t) => t,
            None => {
                store.close().await;
                return Err(Exit::invalid(format!(
                    "job `{job}` has sent no message to contact {contact}"
                )));
            }
        },
        _ => return Err(Exit::invalid("give --token, or --job and --contact")),
    };
    let result = answers::record(
        &book,
        &store,
        &token,
        a.score,
        a.comment.as_deref(),
        Via::Cli,
        now,
    )
    .await;
    store.close().await;
    let r = match result {
        Ok(r) => r,
        Err(AnswerError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(Exit::invalid(e.to_string())),
    };
    let what = match (&r.event_id, r.answer.changes) {
        (None, _) => "unchanged",
        (Some(_), 0) => "recorded",
        (Some(_), _) => "changed",
    };
    println!(
        "{what}: contact {} answered {} ({}) to {} (message {}){}; {} message(s) planned",
        r.answer.contact_id,
        r.answer.score,
        r.answer.scale,
        r.answer.job_id,
        r.answer.message_id,
        r.answer
            .comment
            .as_deref()
            .map(|c| format!(", saying {c:?}"))
            .unwrap_or_default(),
        r.planned
    );
    Ok(())
}
