//! Render and send: one claimed message that the gate let through, on its channels in
//! order, each request recorded as an attempt.
//!
//! A customer message goes on the first usable channel and falls back to the next when one
//! fails for good (so the customer still hears from us); a transient failure retries the
//! whole message later, from the first channel again. Every request (each SMS gateway asked,
//! each channel tried) is its own attempt in the log. A callback task is one signed POST.
//!
//! The requests to the outside are boxed futures: inline, the SMS route's and the SMTP
//! client's states made every message's future 11 KB, copied on each move (by the task
//! spawn, the panic guard), even in a forecast that never sends.

use super::Dispatcher;
use super::state::{self, with_code};
use crate::channels::Delivery;
use crate::channels::email::OutgoingEmail;
use crate::channels::sms::{ProviderTemplate, SmsMessage, segments};
use crate::jobs::{Job, Trigger};
use crate::model::{Channel, Class, MessageState, Outcome};
use crate::playbook::MessageFacts;
use crate::store::{Claimed, Completion, NewAttempt};
use crate::templates::{TemplateRenderError, render_reason};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

impl Dispatcher {
    /// A callback task: one signed POST to the configured webhook.
    pub(super) async fn send_task(&self, job: &Job, m: &Claimed, mut c: Completion) -> Completion {
        let now = c.at;
        let started = Instant::now();
        c.channel = Some(Channel::Webhook.as_str().into());
        let d = match (
            &self.channels.webhook,
            self.dry_run && self.book.webhook_enabled,
        ) {
            (_, true) => dry_delivery(),
            (Some(webhook), false) => {
                let payload = callback_payload(job, m, now, self.book.default_timezone);
                Box::pin(webhook.send(&m.id, &payload)).await
            }
            (None, false) => {
                // Planned while a webhook was configured; now there is none: leave it to agents.
                c.channel = None;
                c.state = MessageState::Open;
                c.reason = Some("no webhook configured: open for `aftercare callbacks`".into());
                return c;
            }
        };
        let a = self.new_attempt(
            m,
            m.attempts + 1,
            c.at,
            Channel::Webhook,
            None,
            None,
            &d,
            millis(started.elapsed()),
        );
        self.settle(job, m, c, vec![a], &d)
    }

    /// A customer message on `usable` channels in order; `skipped` says why the job's other
    /// channels were out. `reserved`: this send holds a place under the frequency caps,
    /// given back if it does not go.
    pub(super) async fn send_customer(
        &self,
        job: &Job,
        m: &Claimed,
        mut c: Completion,
        usable: &[(Channel, String)],
        skipped: Vec<String>,
        reserved: bool,
    ) -> Completion {
        let now = c.at;
        let mut attempts: Vec<NewAttempt> = Vec::new();
        let mut last = Delivery::permanent("no channel was tried");
        let mut fell_back: Vec<String> = skipped;
        for (i, (channel, address)) in usable.iter().enumerate() {
            let first_number = m.attempts + 1 + attempts.len() as i64;
            let (mut tried, d) = match channel {
                Channel::Sms => self.try_sms(job, m, address, first_number, now).await,
                _ => self.try_email(job, m, address, first_number, now).await,
            };
            attempts.append(&mut tried);
            c.channel = Some(channel.as_str().into());
            c.address = Some(address.clone());
            let permanent = d.outcome == Outcome::Permanent;
            if permanent && i + 1 < usable.len() {
                fell_back.push(format!("{channel}: {}", with_code(d.code, &d.detail)));
            }
            last = d;
            if !permanent {
                break;
            }
        }
        if last.outcome != Outcome::Sent && reserved {
            self.unreserve(&m.contact.id, &m.id);
        }
        let mut c = self.settle(job, m, c, attempts, &last);
        // Sent on a later channel: say why not on the earlier ones.
        if last.outcome == Outcome::Sent && !fell_back.is_empty() {
            c.reason = Some(format!("fell back: {}", fell_back.join("; ")));
        }
        c
    }

    /// Render and send by email; one attempt.
    async fn try_email(
        &self,
        job: &Job,
        m: &Claimed,
        address: &str,
        number: i64,
        now: DateTime<Utc>,
    ) -> (Vec<NewAttempt>, Delivery) {
        let one = |d: Delivery, ms: i64| {
            let a = self.new_attempt(m, number, now, Channel::Email, Some(address), None, &d, ms);
            (vec![a], d)
        };
        let content = match self.render_email(job, m, now) {
            Ok(r) => r,
            Err(why) => return one(Delivery::permanent(why), 0),
        };
        let started = Instant::now();
        let d = match &content {
            Some(content) if !self.dry_run => {
                let unsubscribe = match (&self.book.unsubscribe, m.class == Class::Marketing) {
                    (Some(u), true) => Some((u.url("email", address), u.mailto("email", address))),
                    _ => None,
                };
                let message_id = self.channels.email.message_id(&m.id);
                let email = OutgoingEmail {
                    message_id: &message_id,
                    to: address,
                    to_name: m.contact.name.as_deref(),
                    content,
                    date: now,
                    unsubscribe,
                    feedback: Some((&job.id, m.class.as_str())),
                };
                Box::pin(self.channels.email.send(&email)).await
            }
            _ => dry_delivery(),
        };
        let mut d = d;
        if !self.dry_run
            && let Some(b) = d.bounce.clone()
        {
            Box::pin(self.email_bounce(m, address, number, &mut d, &b, now)).await;
        }
        let (mut attempts, d) = one(d, millis(started.elapsed()));
        // What the customer got, for support: the subject and the text part (the HTML part
        // when there is no text part).
        if !self.dry_run
            && let Some(content) = &content
            && let Some(a) = attempts.first_mut()
        {
            let body = content.text.as_deref().or(content.html.as_deref());
            a.content = Some(crate::store::pack_content(
                Some(&content.subject),
                body.unwrap_or_default(),
            ));
        }
        (attempts, d)
    }

    /// The email `m` becomes, or why it cannot be rendered. `None`: not rendered again, in a
    /// dry run that rendered this (job, template, step, contact) before: a forecast tries a
    /// cron job's message to a contact at every occurrence, and only whether it renders
    /// matters there. What changes between occurrences (the message's id, token and time)
    /// cannot make a render fail (every field is present, `date` and `datetime` format any
    /// time); messages of a trigger event are always rendered.
    fn render_email(
        &self,
        job: &Job,
        m: &Claimed,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::templates::RenderedEmail>, String> {
        let memo = self.rendered.as_ref().filter(|_| m.event.is_none());
        let this =
            |(j, t, s): &(String, String, i64)| *j == job.id && *t == m.template && *s == m.step;
        if let Some(memo) = memo
            && memo
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&m.contact.id)
                .is_some_and(|done| done.iter().any(this))
        {
            return Ok(None);
        }
        let r = self
            .book
            .render_email(
                job,
                &m.contact,
                m.event.as_ref(),
                &facts(m, now),
                &m.template,
            )
            .map_err(|e| render_failure(&e))?;
        if let Some(memo) = memo {
            memo.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(m.contact.id.clone())
                .or_default()
                .push((job.id.clone(), m.template.clone(), m.step));
        }
        Ok(Some(r))
    }

    /// An SMTP refusal that says something about the address or the destination: a rate
    /// limit slows that domain down (and the message waits as long); every other kind is
    /// recorded and acted on by `feedback` (a hard bounce suppresses the address before the
    /// next message to it is claimed).
    async fn email_bounce(
        &self,
        m: &Claimed,
        address: &str,
        number: i64,
        d: &mut Delivery,
        b: &crate::channels::email::bounce::Bounce,
        now: DateTime<Utc>,
    ) {
        use crate::channels::email::bounce::BounceKind;
        if b.kind == BounceKind::RateLimit {
            let wait = self.channels.email.pacer().slow_down(address, now);
            let wait = wait.to_std().unwrap_or_default();
            d.retry_after = Some(d.retry_after.map_or(wait, |w| w.max(wait)));
            return;
        }
        let report = crate::channels::email::feedback::Report {
            kind: b.kind,
            source: "smtp",
            address: address.to_string(),
            status: b.status.clone(),
            code: d.code,
            detail: with_code(d.code, &d.detail),
            outbox_id: Some(m.id.clone()),
            provider_id: None,
            report_id: None,
            raw: with_code(d.code, &d.detail),
        };
        match self.feedback.record(&report, Some(number), now).await {
            Ok(r) => {
                for (scope, why) in &r.braked {
                    self.hold(scope, why);
                }
            }
            Err(e) => {
                crate::metrics::count_error("store");
                tracing::error!(message = %m.id, "cannot record the bounce: {e}");
            }
        }
    }

    /// Render and send by SMS along the job's gateway route; one attempt per gateway asked
    /// (failover), or one for the route when no gateway could be asked.
    async fn try_sms(
        &self,
        job: &Job,
        m: &Claimed,
        phone: &str,
        number: i64,
        now: DateTime<Utc>,
    ) -> (Vec<NewAttempt>, Delivery) {
        let one = |d: Delivery, ms: i64| {
            let a = self.new_attempt(m, number, now, Channel::Sms, Some(phone), None, &d, ms);
            (vec![a], d)
        };
        let Some(sms) = &self.channels.sms else {
            return one(
                Delivery::permanent("no SMS gateway: the config has no sms: section"),
                0,
            );
        };
        let rendered = match self.book.render_sms(
            job,
            &m.contact,
            m.event.as_ref(),
            &facts(m, now),
            &m.template,
        ) {
            Ok(r) => r,
            Err(e) => return one(Delivery::permanent(render_failure(&e)), 0),
        };
        let cost = segments(&rendered.text);
        if let Some(max) = job.sms.max_segments
            && cost.segments > max
        {
            return one(
                Delivery::permanent(format!(
                    "the text is {cost} ({} characters), more than the job's max_segments {max}",
                    rendered.text.chars().count()
                )),
                0,
            );
        }
        let template = job
            .sms
            .template_codes
            .get(&m.template)
            .map(|code| ProviderTemplate {
                code: code.clone(),
                params: rendered.params.clone().unwrap_or_else(|| "{}".into()),
            });
        // What the customer got, for support (not in a forecast, which sends nothing).
        let mut packed = (!self.dry_run).then(|| crate::store::pack_content(None, &rendered.text));
        let msg = SmsMessage {
            to: phone.to_string(),
            text: Some(rendered.text),
            template,
            reference: m.id.clone(),
        };
        if self.dry_run {
            let mut d = dry_delivery();
            d.detail = format!("{}; {cost}", d.detail);
            return one(d, 0);
        }
        let started = Instant::now();
        let routed = Box::pin(sms.send(&job.sms.route, &msg)).await;
        let d = routed.delivery();
        if routed.hops.is_empty() {
            // No gateway could be asked (down, unavailable, unsuitable): one row says why.
            return one(d, millis(started.elapsed()));
        }
        let passed_over: Vec<String> = routed
            .skipped
            .iter()
            .map(|s| format!("{} passed over", s.gateway))
            .collect();
        let last = routed.hops.len() - 1;
        let attempts = routed
            .hops
            .iter()
            .enumerate()
            .map(|(i, hop)| {
                let mut hd = hop.delivery.clone();
                let summary = cost.to_string();
                if hd.outcome == Outcome::Sent && !hd.detail.contains(&summary) {
                    hd.detail = format!("{}; {summary}", hd.detail);
                }
                if i == last && !passed_over.is_empty() {
                    hd.detail = format!("{} ({})", hd.detail, passed_over.join(", "));
                }
                let mut a = self.new_attempt(
                    m,
                    number + i as i64,
                    now,
                    Channel::Sms,
                    Some(phone),
                    Some(&hop.gateway),
                    &hd,
                    millis(hop.elapsed),
                );
                // The text every gateway of the route was asked to send, once, with the first.
                a.content = packed.take();
                a
            })
            .collect();
        (attempts, d)
    }

    #[allow(clippy::too_many_arguments)]
    fn new_attempt(
        &self,
        m: &Claimed,
        number: i64,
        now: DateTime<Utc>,
        channel: Channel,
        address: Option<&str>,
        gateway: Option<&str>,
        d: &Delivery,
        ms: i64,
    ) -> NewAttempt {
        // A dry run's attempts (the forecast, also the console's inside the daemon) pretend:
        // neither the send metrics nor the log may count them as sends.
        if !self.dry_run {
            crate::metrics::observe_send(channel.as_str(), d.outcome, ms);
            tracing::debug!(
                message = %m.id,
                job = %m.job_id,
                channel = channel.as_str(),
                gateway = gateway.unwrap_or_default(),
                to = %address.map(crate::logging::mask).unwrap_or_default(),
                outcome = d.outcome.as_str(),
                ms,
                "delivery attempt"
            );
        }
        NewAttempt {
            number,
            at: now,
            channel: channel.as_str().into(),
            address: address.map(str::to_string),
            outcome: d.outcome,
            code: d.code,
            detail: Some(d.detail.clone()),
            provider_id: d.provider_id.clone(),
            node: self.node.clone(),
            duration_ms: ms,
            gateway: gateway.map(str::to_string),
            content: None,
        }
    }

    /// The state after a try, planning the next reminder once sent.
    fn settle(
        &self,
        job: &Job,
        m: &Claimed,
        c: Completion,
        attempts: Vec<NewAttempt>,
        d: &Delivery,
    ) -> Completion {
        let now = c.at;
        state::settle(&self.cfg.retry, m, c, attempts, d, || {
            crate::plan::next_step(&self.book, job, m, now)
        })
    }
}

fn facts(m: &Claimed, now: DateTime<Utc>) -> MessageFacts<'_> {
    MessageFacts {
        id: &m.id,
        step: m.step,
        token: m.token.as_deref(),
        send_at: now,
    }
}

fn render_failure(e: &TemplateRenderError) -> String {
    match e {
        TemplateRenderError::Render { file, source } => {
            format!("render failed in {file}: {}", render_reason(source))
        }
        other => format!("render failed: {other}"),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What the forecast records instead of sending.
fn dry_delivery() -> Delivery {
    Delivery {
        outcome: Outcome::Sent,
        code: None,
        detail: "forecast: not sent".into(),
        provider_id: None,
        retry_after: None,
        relay_fault: false,
        bounce: None,
    }
}

/// The JSON a CRM receives for a callback task.
fn callback_payload(job: &Job, m: &Claimed, now: DateTime<Utc>, tz: Tz) -> serde_json::Value {
    serde_json::json!({
        "type": "callback.requested",
        "id": m.id,
        "job": {"id": job.id, "description": job.description},
        "due_at": planned_due(job, m, tz).to_rfc3339(),
        "created_at": now.to_rfc3339(),
        "contact": m.contact,
        "event": m.event.as_ref().map(|e| serde_json::json!({
            "id": e.id, "type": e.kind, "occurred_at": e.occurred_at.to_rfc3339(), "data": e.data,
        })),
    })
}

/// When the job meant the task to be done (a retry moves `due_at`; the CRM wants the plan,
/// as planning worked it out: within the job's business hours).
fn planned_due(job: &Job, m: &Claimed, tz: Tz) -> DateTime<Utc> {
    match (&job.trigger, &m.event) {
        (Trigger::Event { delay, .. }, Some(e)) if m.step == 0 => {
            job.task_due(e.occurred_at.with_timezone(&Utc), *delay, tz)
        }
        _ => m.due_at,
    }
}
