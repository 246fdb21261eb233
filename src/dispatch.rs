//! Dispatch: claim what is due, check it may still go, render, send, record.
//!
//! Claims are batches under a lease (`dispatch.lease`); a node that dies leaves its claims
//! to expire and be reaped. Policy is re-checked at send time, not only at planning time: a
//! review submitted after the reminder was planned cancels it here. Outcomes of a batch are
//! written in one transaction by a recorder task while the next batch is already sending,
//! so the fsync per commit is shared by a whole batch.

use crate::channels::email::OutgoingEmail;
use crate::channels::sms::{ProviderTemplate, SmsMessage, segments};
use crate::channels::{Channels, Delivery};
use crate::clock::SharedClock;
use crate::config::{DispatchConfig, RetryConfig};
use crate::jobs::{DateField, Job, OverCap, Trigger};
use crate::lease::Held;
use crate::model::{Class, MessageState, Outcome};
use crate::plan::{MessageFacts, Planner, render_reason, stop_reason};
use crate::policy::{anniversary_in, check_caps, has_consent};
use crate::store::{ClaimWith, Claimed, Completion, NewAttempt, Store, StoreError};
use crate::templates::TemplateRenderError;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};

/// (message id, sent at): one marketing send, for frequency caps.
pub type SendMark = (String, DateTime<Utc>);

pub struct Dispatcher {
    pub store: Store,
    pub planner: Planner,
    pub channels: Arc<Channels>,
    pub clock: SharedClock,
    pub cfg: DispatchConfig,
    pub node: String,
    /// Marketing sends of this drain per contact, (message id, time): the claim's history
    /// cannot see sends whose completion is not committed yet. Merged with it by id.
    pub sends: Mutex<HashMap<String, Vec<SendMark>>>,
    /// Forecast: decide and render everything, send nothing (every send "succeeds").
    pub dry_run: bool,
    /// Called on every turn of [`Dispatcher::run`] (the systemd watchdog watches it).
    pub on_loop: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// What a dispatch run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Moved later by quiet hours or a frequency cap.
    pub deferred: u64,
    /// Callback tasks left open for agents.
    pub open: u64,
    /// Claimed but put back untried (shutdown).
    pub released: u64,
    /// Lease lost meanwhile (another node's reaper took it): completions not applied, and
    /// claimed messages not started.
    pub stale: u64,
}

impl Stats {
    fn add(&mut self, c: &Completion) {
        match c.state {
            MessageState::Sent => self.sent += 1,
            MessageState::Retrying => self.retrying += 1,
            MessageState::Failed => self.failed += 1,
            MessageState::Cancelled => self.cancelled += 1,
            MessageState::Scheduled => self.deferred += 1,
            MessageState::Open => self.open += 1,
            _ => {}
        }
    }

    fn merge(&mut self, o: Stats) {
        self.sent += o.sent;
        self.retrying += o.retrying;
        self.failed += o.failed;
        self.cancelled += o.cancelled;
        self.deferred += o.deferred;
        self.open += o.open;
        self.released += o.released;
        self.stale += o.stale;
    }

    pub fn total(&self) -> u64 {
        self.sent + self.retrying + self.failed + self.cancelled + self.deferred + self.open
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sent, {} retrying, {} failed, {} cancelled",
            self.sent, self.retrying, self.failed, self.cancelled
        )?;
        if self.deferred > 0 {
            write!(f, ", {} deferred", self.deferred)?;
        }
        if self.open > 0 {
            write!(f, ", {} open for agents", self.open)?;
        }
        if self.released > 0 {
            write!(f, ", {} released", self.released)?;
        }
        if self.stale > 0 {
            write!(f, ", {} stale", self.stale)?;
        }
        Ok(())
    }
}

impl Dispatcher {
    /// Dispatch everything due by the clock's now, then return. Retries fall due later and
    /// are left for a later run.
    pub async fn run_once(self: &Arc<Self>) -> Result<Stats, StoreError> {
        let (_tx, stop) = watch::channel(false);
        self.reap().await?;
        self.drain(&stop).await
    }

    /// Dispatch until `stop` turns true: claim while there is work, otherwise sleep until
    /// the next message falls due (or `poll_interval`, for work other processes add). A
    /// reaper task returns the expired claims of stopped nodes every `heartbeat`, also while
    /// this loop is busy draining.
    pub async fn run(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Stats, StoreError> {
        let mut total = Stats::default();
        let reaped = Arc::new(tokio::sync::Notify::new());
        let (reaper_stop, reaper_stopped) = watch::channel(false);
        let reaper = tokio::spawn(crate::lease::reaper(
            self.store.clone(),
            self.clock.clone(),
            self.node.clone(),
            self.cfg.retry.max_attempts,
            self.cfg.heartbeat,
            reaped.clone(),
            reaper_stopped,
        ));
        let result = async {
            while !*stop.borrow() {
                if let Some(f) = &self.on_loop {
                    f();
                }
                let stats = self.drain(&stop).await?;
                if stats.total() > 0 {
                    tracing::info!(%stats, "dispatched");
                }
                total.merge(stats);
                let now = self.clock.now();
                let wait = match self.store.next_due().await? {
                    Some(due) if due <= now => Duration::ZERO,
                    Some(due) => (due - now)
                        .to_std()
                        .unwrap_or_default()
                        .min(self.cfg.poll_interval),
                    None => self.cfg.poll_interval,
                };
                if !wait.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => {}
                        _ = reaped.notified() => {}
                    }
                }
            }
            Ok::<(), StoreError>(())
        }
        .await;
        let _ = reaper_stop.send(true);
        let _ = reaper.await;
        result.map(|()| total)
    }

    /// Return expired claims (of nodes that stopped) to the queue now.
    async fn reap(&self) -> Result<(), StoreError> {
        let r = self
            .store
            .reap(self.clock.now(), &self.node, self.cfg.retry.max_attempts)
            .await?;
        crate::lease::log_reaped(&r);
        Ok(())
    }

    /// Claim and send until nothing is due or `stop` is set. Each message is its own task
    /// (so sends use every core), at most `concurrency` at once; the next batch (about a
    /// second of work, see [`Pace`]) is claimed as soon as the previous one is handed out, and a recorder task commits outcomes in groups
    /// as they arrive. A heartbeat task renews the leases of this drain's claims until the
    /// last outcome is committed; a message whose lease was not renewed lately, or was lost
    /// to another node's reaper, is not started (see `lease.rs`).
    async fn drain(self: &Arc<Self>, stop: &watch::Receiver<bool>) -> Result<Stats, StoreError> {
        let limit = self.cfg.concurrency as usize;
        let (done_tx, mut done_rx) =
            mpsc::channel::<Completion>(limit * 2 + self.cfg.batch_size as usize);
        let store = self.store.clone();
        let group = self.cfg.batch_size as usize;
        let recorder = tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut batch = Vec::with_capacity(group);
            while done_rx.recv_many(&mut batch, group).await > 0 {
                stats.stale += complete_retrying(&store, &batch).await? as u64;
                for c in batch.drain(..) {
                    stats.add(&c);
                }
            }
            Ok::<Stats, StoreError>(stats)
        });
        let held = Arc::new(Held::new(&self.cfg));
        let (beat_stop, beat_stopped) = watch::channel(false);
        let beat = tokio::spawn(crate::lease::heartbeat(
            held.clone(),
            self.store.clone(),
            self.clock.clone(),
            self.cfg.heartbeat,
            beat_stopped,
        ));
        // Claimed, not started, lease not confirmed: handed back at the end if still ours.
        let mut unsure: HashMap<String, Vec<String>> = HashMap::new();
        let mut lost = 0u64;
        let slots = Arc::new(Semaphore::new(limit));
        let mut released = 0u64;
        let mut result = Ok(());
        let longest_cap = self.planner.policy.caps.iter().map(|c| c.per).max();
        let with = ClaimWith {
            stop_types: self.planner.jobs.stop_types(),
            sends_since: longest_cap
                .and_then(|p| chrono::Duration::from_std(p).ok())
                .map(|p| self.clock.now() - p),
        };
        let pace = Arc::new(Pace::default());
        'claiming: while !*stop.borrow() {
            let now = self.clock.now();
            let token = crate::plan::new_id(now);
            let lease_end = now + self.cfg.lease;
            let want = pace.claim_size(limit, self.cfg.batch_size as usize);
            let batch = match self
                .store
                .claim(&self.node, &token, now, lease_end, want as i64, &with)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            held.add(&token, lease_end);
            let mut unstarted = batch.into_iter();
            while let Some(m) = unstarted.next() {
                let slot = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                if *stop.borrow() || done_tx.is_closed() {
                    // Stopping (or the recorder failed): hand back what has not started.
                    let back: Vec<String> = std::iter::once(m.id)
                        .chain(unstarted.map(|m| m.id))
                        .collect();
                    released += back.len() as u64;
                    if let Err(e) = self.store.release(&token, &back, self.clock.now()).await {
                        result = Err(e);
                    }
                    break 'claiming;
                }
                if !held.may_start(&m.claim_token, self.clock.now()) {
                    lost += 1;
                    unsure.entry(m.claim_token).or_default().push(m.id);
                    continue;
                }
                let me = Arc::clone(self);
                let done = done_tx.clone();
                let pace = pace.clone();
                let guard = crate::send_guard::Guard::new(
                    &m,
                    &self.planner.jobs,
                    &self.node,
                    self.clock.now(),
                );
                tokio::spawn(async move {
                    let started = Instant::now();
                    // A panic fails this message at once (see send_guard), not its lease.
                    let c = guard.run(me.process(m)).await;
                    pace.observe(started.elapsed());
                    let _ = done.send(c).await;
                    drop(slot);
                });
            }
        }
        // Every started send finishes (each is bounded by the channel's timeout).
        let _all = slots
            .acquire_many(limit as u32)
            .await
            .expect("the semaphore is never closed");
        drop(done_tx);
        let recorded = recorder.await.expect("the recorder task does not panic");
        // Every outcome is committed (or the recorder gave up): nothing left to renew.
        let _ = beat_stop.send(true);
        let _ = beat.await;
        let mut stats = recorded?;
        // Committed now: the next claim reads these sends from the store.
        self.sends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        for (token, ids) in unsure {
            // Still ours if no reaper took them (the renewal failed, the lease held): back
            // to the queue untried; otherwise this matches nothing.
            if let Err(e) = self.store.release(&token, &ids, self.clock.now()).await {
                tracing::warn!("could not hand back claims whose lease was in doubt: {e}");
            }
        }
        if lost > 0 {
            tracing::warn!(
                count = lost,
                "not started: their lease was lost or not renewed in time (another node sends them)"
            );
        }
        result?;
        stats.released = released;
        stats.stale += lost;
        Ok(stats)
    }

    /// Decide, render and send one claimed message.
    async fn process(&self, m: Claimed) -> Completion {
        let now = self.clock.now();
        let c = Completion {
            message_id: m.id.clone(),
            claim_token: m.claim_token.clone(),
            state: MessageState::Cancelled,
            attempts: Vec::new(),
            retry_at: None,
            reason: None,
            channel: None,
            address: None,
            at: now,
            next: None,
            uncounted: false,
        };
        let Some(job) = self.planner.jobs.get(&m.job_id).cloned() else {
            if self.cfg.on_job_removed == crate::config::OnJobRemoved::Hold {
                let at = now + chrono::Duration::hours(1);
                return defer(
                    c,
                    &m,
                    at,
                    format!(
                        "job `{}` is not defined; held (dispatch.on_job_removed: hold)",
                        m.job_id
                    ),
                );
            }
            return cancel(c, format!("job `{}` is no longer defined", m.job_id));
        };
        if !job.enabled {
            return cancel(c, format!("job `{}` is disabled", job.id));
        }
        if let Some(limit) = m.not_after
            && now > limit
        {
            return cancel(
                c,
                format!(
                    "expired: due {}, not sent by {}",
                    fmt_time(m.due_at),
                    fmt_time(limit)
                ),
            );
        }
        if let Some(stop) = &job.stop_when {
            let trigger = m.event.as_ref().map(|e| e.data.clone()).unwrap_or_default();
            let stops: Vec<_> = m
                .stop_events
                .iter()
                .filter(|(t, _)| *t == stop.event)
                .map(|(_, d)| d.clone())
                .collect();
            if let Some(reason) = stop_reason(stop, &trigger, &stops) {
                return cancel(c, reason);
            }
        }
        if let Err(reason) = self.anniversary_still_holds(&job, &m) {
            return cancel(c, reason);
        }
        if m.channel_plan.as_deref() == Some("webhook") {
            return self.send_task(&job, &m, c).await;
        }
        self.send_customer(&job, &m, c).await
    }

    /// A greeting planned for a date field's anniversary goes only if the field still has
    /// that anniversary (a corrected birthday gets its own greeting on the new day).
    fn anniversary_still_holds(&self, job: &Job, m: &Claimed) -> Result<(), String> {
        let Trigger::Anniversary {
            field, leap_day, ..
        } = &job.trigger
        else {
            return Ok(());
        };
        let leap = leap_day.unwrap_or(self.planner.policy.leap_day);
        let value = match field {
            DateField::Birthday => m.contact.birthday.clone(),
            DateField::Attribute(a) => m
                .contact
                .attributes
                .get(a)
                .and_then(|v| v.as_str())
                .map(str::to_string),
        };
        let planned = m
            .due_at
            .with_timezone(&self.planner.zone_of(&m.contact))
            .date_naive();
        let Some(date) = value.and_then(|v| NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok()) else {
            return Err(format!(
                "contact {} no longer has {}",
                m.contact.id,
                field.key()
            ));
        };
        if anniversary_in(date, planned.year(), leap) != planned {
            return Err(format!(
                "{} changed to {}; planned for the new day instead",
                field.key(),
                date.format("%m-%d")
            ));
        }
        Ok(())
    }

    /// A callback task: one signed POST to the configured webhook.
    async fn send_task(&self, job: &Job, m: &Claimed, mut c: Completion) -> Completion {
        let now = c.at;
        let started = Instant::now();
        c.channel = Some("webhook".into());
        let d = match (
            &self.channels.webhook,
            self.dry_run && self.planner.webhook_enabled,
        ) {
            (_, true) => dry_delivery(),
            (Some(webhook), false) => {
                webhook
                    .send(&m.id, &callback_payload(job, m, now), now.timestamp())
                    .await
            }
            (None, false) => {
                // Planned while a webhook was configured; now there is none: leave it to agents.
                c.channel = None;
                c.state = MessageState::Open;
                c.reason = Some("no webhook configured: open for `aftercare callbacks`".into());
                return c;
            }
        };
        self.record(job, m, c, "webhook", None, d, started)
    }

    /// A customer message: the job's channels the contact can and may be reached on, in
    /// order; quiet hours and frequency caps; then render and send on the first, falling back
    /// to the next when one fails for good (so the customer still hears from us). A transient
    /// failure retries the whole message later, from the first channel again. Every request
    /// (each SMS gateway asked, each channel tried) is its own attempt in the log.
    async fn send_customer(&self, job: &Job, m: &Claimed, mut c: Completion) -> Completion {
        let now = c.at;
        let policy = &self.planner.policy;
        let marketing = m.class == Class::Marketing;
        let mut skipped = Vec::new();
        let mut usable: Vec<(String, String)> = Vec::new();
        for ch in &job.channels {
            let address = match ch.as_str() {
                "email" => m.contact.email.clone(),
                "sms" => m.contact.phone.clone(),
                _ => None,
            };
            let Some(address) = address else {
                skipped.push(format!(
                    "{ch}: contact {} has no {}",
                    m.contact.id,
                    address_noun(ch)
                ));
                continue;
            };
            if let Some((_, why)) = m.suppressed.iter().find(|(sc, _)| sc == ch) {
                skipped.push(format!("{ch}: {address} is suppressed ({why})"));
                continue;
            }
            if marketing && !has_consent(policy.consent, &m.contact.consent, ch) {
                let why = match m.contact.consent.get(ch) {
                    Some(serde_json::Value::Bool(false)) => format!("consent.{ch} is false"),
                    _ => format!("no consent.{ch} (consent mode opt_in)"),
                };
                skipped.push(format!("{ch}: {why}"));
                continue;
            }
            usable.push((ch.clone(), address));
        }
        if usable.is_empty() {
            return cancel(c, format!("not sent: {}", skipped.join("; ")));
        }

        // Quiet hours in the contact's local time.
        let tz = self.planner.zone_of(&m.contact);
        let window = job.effective_window(policy.send_window);
        let allowed = window.next_allowed(now, tz);
        if allowed > now {
            return defer(
                c,
                m,
                allowed,
                format!(
                    "quiet hours ({} {}); goes at {}",
                    window.describe(),
                    tz.name(),
                    fmt_local(allowed, tz)
                ),
            );
        }
        // Frequency caps across marketing jobs: the claim brought the recent sends; this run's
        // own sends are added under a lock so two messages to one contact cannot both pass.
        let mut reserved = false;
        if marketing && !policy.caps.is_empty() {
            let mut in_run = self
                .sends
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mine = in_run.entry(m.contact.id.clone()).or_default();
            let mut by_id: HashMap<&str, DateTime<Utc>> = m
                .recent_sends
                .iter()
                .map(|(id, t)| (id.as_str(), *t))
                .collect();
            by_id.extend(mine.iter().map(|(id, t)| (id.as_str(), *t)));
            let all: Vec<DateTime<Utc>> = by_id.into_values().collect();
            if let Err((free_at, cap)) = check_caps(&policy.caps, &all, now) {
                let what = format!(
                    "frequency cap {} per {}",
                    cap.max,
                    crate::duration::format(cap.per)
                );
                return match job.over_cap {
                    OverCap::Drop => cancel(c, format!("dropped: {what} reached")),
                    OverCap::Defer => {
                        let at = window.next_allowed(free_at, tz);
                        drop(in_run);
                        defer(
                            c,
                            m,
                            at,
                            format!("{what} reached; goes at {}", fmt_local(at, tz)),
                        )
                    }
                };
            }
            mine.push((m.id.clone(), now));
            reserved = true;
        }

        let mut attempts: Vec<NewAttempt> = Vec::new();
        let mut last = Delivery::permanent("no channel was tried");
        let mut fell_back: Vec<String> = skipped;
        for (i, (channel, address)) in usable.iter().enumerate() {
            let first_number = m.attempts + 1 + attempts.len() as i64;
            let (mut tried, d) = match channel.as_str() {
                "sms" => self.try_sms(job, m, address, first_number, now).await,
                _ => self.try_email(job, m, address, first_number, now).await,
            };
            attempts.append(&mut tried);
            c.channel = Some(channel.clone());
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
        if last.outcome != Outcome::Sent {
            self.unreserve(&m.contact.id, &m.id, reserved);
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
        let marketing = m.class == Class::Marketing;
        let locale = self.planner.locale_of(&m.contact);
        let facts = MessageFacts {
            id: &m.id,
            step: m.step,
            token: m.token.as_deref(),
            send_at: now,
        };
        let ctx = self
            .planner
            .context_on(job, &m.contact, m.event.as_ref(), &facts, "email");
        let content = match self
            .planner
            .templates
            .render_email(&m.template, &locale, &ctx)
        {
            Ok(r) => r,
            Err(e) => {
                let d = Delivery::permanent(render_failure(&e));
                let a = self.new_attempt(m, number, now, "email", Some(address), None, &d, 0);
                return (vec![a], d);
            }
        };
        let unsubscribe = match (&self.planner.unsubscribe, marketing) {
            (Some(u), true) => Some((u.url("email", address), u.mailto("email", address))),
            _ => None,
        };
        let message_id = self.channels.email.message_id(&m.id);
        let started = Instant::now();
        let d = if self.dry_run {
            dry_delivery()
        } else {
            self.channels
                .email
                .send(&OutgoingEmail {
                    message_id: &message_id,
                    to: address,
                    to_name: m.contact.name.as_deref(),
                    content: &content,
                    date: now,
                    unsubscribe,
                })
                .await
        };
        let ms = millis(started.elapsed());
        let a = self.new_attempt(m, number, now, "email", Some(address), None, &d, ms);
        (vec![a], d)
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
        let one = |d: Delivery| {
            let a = self.new_attempt(m, number, now, "sms", Some(phone), None, &d, 0);
            (vec![a], d)
        };
        let Some(sms) = &self.channels.sms else {
            return one(Delivery::permanent(
                "no SMS gateway: the config has no sms: section",
            ));
        };
        let locale = self.planner.locale_of(&m.contact);
        let facts = MessageFacts {
            id: &m.id,
            step: m.step,
            token: m.token.as_deref(),
            send_at: now,
        };
        let ctx = self
            .planner
            .context_on(job, &m.contact, m.event.as_ref(), &facts, "sms");
        let rendered = match self
            .planner
            .templates
            .render_sms(&m.template, &locale, &ctx)
        {
            Ok(r) => r,
            Err(e) => return one(Delivery::permanent(render_failure(&e))),
        };
        let cost = segments(&rendered.text);
        if let Some(max) = job.sms.max_segments
            && cost.segments > max
        {
            return one(Delivery::permanent(format!(
                "the text is {cost} ({} characters), more than the job's max_segments {max}",
                rendered.text.chars().count()
            )));
        }
        let template = job
            .sms
            .template_codes
            .get(&m.template)
            .map(|code| ProviderTemplate {
                code: code.clone(),
                params: rendered.params.clone().unwrap_or_else(|| "{}".into()),
            });
        let msg = SmsMessage {
            to: phone.to_string(),
            text: Some(rendered.text),
            template,
            reference: m.id.clone(),
        };
        if self.dry_run {
            let mut d = dry_delivery();
            d.detail = format!("{}; {cost}", d.detail);
            return one(d);
        }
        let started = Instant::now();
        let routed = sms.send(&job.sms.route, &msg).await;
        let d = routed.delivery();
        if routed.hops.is_empty() {
            // No gateway could be asked (down, unavailable, unsuitable): one row says why.
            let a = self.new_attempt(
                m,
                number,
                now,
                "sms",
                Some(phone),
                None,
                &d,
                millis(started.elapsed()),
            );
            return (vec![a], d);
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
                self.new_attempt(
                    m,
                    number + i as i64,
                    now,
                    "sms",
                    Some(phone),
                    Some(&hop.gateway),
                    &hd,
                    millis(hop.elapsed),
                )
            })
            .collect();
        (attempts, d)
    }

    fn unreserve(&self, contact: &str, message_id: &str, reserved: bool) {
        if reserved
            && let Some(v) = self
                .sends
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_mut(contact)
        {
            v.retain(|(id, _)| id != message_id);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_attempt(
        &self,
        m: &Claimed,
        number: i64,
        now: DateTime<Utc>,
        channel: &str,
        address: Option<&str>,
        gateway: Option<&str>,
        d: &Delivery,
        ms: i64,
    ) -> NewAttempt {
        crate::metrics::observe_send(channel, d.outcome, ms);
        tracing::debug!(
            message = %m.id,
            job = %m.job_id,
            channel,
            gateway = gateway.unwrap_or_default(),
            to = %address.map(crate::logging::mask).unwrap_or_default(),
            outcome = d.outcome.as_str(),
            ms,
            "delivery attempt"
        );
        NewAttempt {
            number,
            at: now,
            channel: channel.into(),
            address: address.map(str::to_string),
            outcome: d.outcome,
            code: d.code,
            detail: Some(d.detail.clone()),
            provider_id: d.provider_id.clone(),
            node: self.node.clone(),
            duration_ms: ms,
            gateway: gateway.map(str::to_string),
        }
    }

    /// One delivery on one channel (a callback task): its attempt, state and reminder.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        job: &Job,
        m: &Claimed,
        c: Completion,
        channel: &str,
        address: Option<&str>,
        d: Delivery,
        started: Instant,
    ) -> Completion {
        let a = self.new_attempt(
            m,
            m.attempts + 1,
            c.at,
            channel,
            address,
            None,
            &d,
            millis(started.elapsed()),
        );
        self.settle(job, m, c, vec![a], &d)
    }

    /// The message's next state after a try whose outcome is `d` (the last attempt's, or the
    /// route's), with the try's attempts and, once sent, the next reminder. Retries count
    /// tries, not attempts: failing over between gateways does not use up `max_attempts`.
    fn settle(
        &self,
        job: &Job,
        m: &Claimed,
        mut c: Completion,
        attempts: Vec<NewAttempt>,
        d: &Delivery,
    ) -> Completion {
        let now = c.at;
        c.attempts = attempts;
        let try_no = m.tries + 1;
        match d.outcome {
            Outcome::Sent => {
                c.state = MessageState::Sent;
                c.next = self.planner.next_step(job, m, now);
            }
            Outcome::Transient if d.relay_fault => {
                // Our relay refused our session (a login, our sender): not this message's
                // fault. It waits, its try recorded but not counted toward max_attempts.
                let at = now + backoff(&self.cfg.retry, m.attempts + 1);
                c.state = MessageState::Retrying;
                c.retry_at = Some(at);
                c.uncounted = true;
                c.reason = Some(format!(
                    "waiting for the relay: {} (not counted as a try); next try {}",
                    with_code(d.code, &d.detail),
                    fmt_time(at)
                ));
            }
            Outcome::Transient if try_no >= i64::from(self.cfg.retry.max_attempts) => {
                c.state = MessageState::Failed;
                c.reason = Some(format!(
                    "gave up after {try_no} attempts; last: {}",
                    with_code(d.code, &d.detail)
                ));
            }
            Outcome::Transient => {
                // The server's Retry-After wins when it asks for longer than our backoff.
                let wait = backoff(&self.cfg.retry, try_no).max(d.retry_after.unwrap_or_default());
                let at = now + wait;
                c.state = MessageState::Retrying;
                c.retry_at = Some(at);
                c.reason = Some(format!(
                    "attempt {try_no}/{} failed ({}); next try {}",
                    self.cfg.retry.max_attempts,
                    with_code(d.code, &d.detail),
                    fmt_time(at)
                ));
            }
            Outcome::Permanent => {
                c.state = MessageState::Failed;
                c.reason = Some(with_code(d.code, &d.detail));
            }
        }
        c
    }
}

/// What a contact lacks for a channel, for the log.
fn address_noun(channel: &str) -> &'static str {
    match channel {
        "sms" => "phone number",
        _ => "email address",
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

/// How long a message takes from start to outcome, smoothed over this drain's sends: what
/// sizes the next claim.
///
/// Why not always claim `batch_size`: claimed messages wait for a free slot, and while they
/// wait no other node can have them. Against a slow server (a relay that takes a second per
/// message) one node would sit on a whole batch while the others idle, so adding nodes would
/// add nothing. So a node claims about one second of work at its current pace: the whole
/// batch when sends are quick (few, large claims), about `concurrency` when they are slow.
#[derive(Debug, Default)]
struct Pace {
    /// Exponentially weighted mean, in microseconds; 0 until the first send finishes.
    micros: std::sync::atomic::AtomicU64,
}

impl Pace {
    fn observe(&self, took: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let x = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self.micros.fetch_update(Relaxed, Relaxed, |old| {
            Some(if old == 0 { x } else { (old * 7 + x) / 8 })
        });
    }

    /// `limit` sends at once, each taking the mean: how many finish in a second, kept
    /// between `limit` (until the first outcome, too) and `batch`.
    fn claim_size(&self, limit: usize, batch: usize) -> usize {
        let micros = self.micros.load(std::sync::atomic::Ordering::Relaxed);
        let per_second = match micros {
            0 => limit,
            m => usize::try_from(limit as u64 * 1_000_000 / m).unwrap_or(usize::MAX),
        };
        per_second.clamp(limit.min(batch), batch)
    }
}

/// Commit a group of outcomes, trying again a few times over about six seconds: the sends
/// have happened, and an outcome that is never committed becomes a resend once the lease
/// expires. A deadlock with another node's transaction (PostgreSQL aborts one of the two)
/// or a dropped connection is worth a second try; the completion is all-or-nothing, so a
/// retry never applies half of it twice.
async fn complete_retrying(store: &Store, batch: &[Completion]) -> Result<usize, StoreError> {
    let mut wait = Duration::from_millis(100);
    for _ in 0..6 {
        match store.complete(batch).await {
            Err(StoreError::Query(e)) => {
                tracing::warn!(
                    "recording {} outcomes failed, trying again: {e}",
                    batch.len()
                );
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
    store.complete(batch).await
}

fn dry_delivery() -> Delivery {
    Delivery {
        outcome: Outcome::Sent,
        code: None,
        detail: "forecast: not sent".into(),
        provider_id: None,
        retry_after: None,
        relay_fault: false,
    }
}

fn cancel(mut c: Completion, reason: String) -> Completion {
    c.state = MessageState::Cancelled;
    c.reason = Some(reason);
    c
}

/// Back to the queue for later, without counting an attempt.
fn defer(mut c: Completion, m: &Claimed, at: DateTime<Utc>, reason: String) -> Completion {
    c.state = if m.attempts == 0 {
        MessageState::Scheduled
    } else {
        MessageState::Retrying
    };
    c.retry_at = Some(at);
    c.reason = Some(format!("deferred: {reason}"));
    c
}

/// The JSON a CRM receives for a callback task.
pub fn callback_payload(job: &Job, m: &Claimed, now: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "type": "callback.requested",
        "id": m.id,
        "job": {"id": job.id, "description": job.description},
        "due_at": planned_due(job, m).to_rfc3339(),
        "created_at": now.to_rfc3339(),
        "contact": m.contact,
        "event": m.event.as_ref().map(|e| serde_json::json!({
            "id": e.id, "type": e.kind, "occurred_at": e.occurred_at.to_rfc3339(), "data": e.data,
        })),
    })
}

/// When the job meant the message to go (a retry moves `due_at`; the CRM wants the plan).
fn planned_due(job: &Job, m: &Claimed) -> DateTime<Utc> {
    match (&job.trigger, &m.event) {
        (Trigger::Event { delay, .. }, Some(e)) if m.step == 0 => {
            e.occurred_at.with_timezone(&Utc) + *delay
        }
        _ => m.due_at,
    }
}

fn fmt_local(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

fn with_code(code: Option<i64>, detail: &str) -> String {
    match code {
        Some(code) => format!("{code} {detail}"),
        None => detail.to_string(),
    }
}

fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// Exponential backoff from `initial`, doubling per attempt, capped at `max`, with ±25%
/// jitter so a server that was down is not hit by every retry in the same second.
pub fn backoff(r: &RetryConfig, attempt: i64) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let base = r
        .initial
        .saturating_mul(2u32.saturating_pow(exp))
        .min(r.max);
    base.mul_f64(0.75 + 0.5 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_claims_about_a_second_of_work() {
        let pace = Pace::default();
        assert_eq!(pace.claim_size(16, 256), 16, "unknown pace: one round");
        pace.observe(Duration::from_millis(4));
        assert_eq!(
            pace.claim_size(16, 256),
            256,
            "quick sends: the whole batch"
        );
        let slow = Pace::default();
        for _ in 0..50 {
            slow.observe(Duration::from_secs(1));
        }
        assert_eq!(slow.claim_size(16, 256), 16, "a second per send: one round");
        slow.observe(Duration::from_millis(1));
        assert!(
            (16..=20).contains(&slow.claim_size(16, 256)),
            "one quick send hardly moves the mean"
        );
        assert_eq!(
            Pace::default().claim_size(64, 10),
            10,
            "never above batch_size"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetryConfig {
            max_attempts: 8,
            initial: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        };
        for (attempt, base) in [(1, 60.0), (2, 120.0), (3, 240.0), (7, 3600.0), (30, 3600.0)] {
            let d = backoff(&r, attempt).as_secs_f64();
            assert!(
                d >= base * 0.75 && d <= base * 1.25,
                "attempt {attempt}: {d}"
            );
        }
    }
}
