//! Plan: events in, outbox rows out.
//!
//! An event starts every enabled job it triggers (one message per job and dedupe key, due
//! after the job's delay) and stops the pending messages of jobs whose `stop_when` it
//! matches. A sent message plans its job's next reminder. The decisions are pure functions
//! of (job, contact, event, now); [`ingest`] applies them to the store, one
//! transaction per batch, and never writes anything for a line it rejects.
//!
//! Over 600 lines with its tests: `ingest_requests` decides a whole batch in memory before one
//! write, and splitting its rounds across files would hide what they share.

use crate::ingest::{FieldError, Incoming};
use crate::jobs::{Class, Job, StopWhen, Trigger};
use crate::model::{Contact, Event, MessageState, StopEvent, StoredContact, data_key};
use crate::playbook::{MessageFacts, Playbook};
use crate::store::{Claimed, NewMessage, Store, StoreError, Tx};
use crate::templates::render_reason;
use crate::values::{new_id, new_token};
use chrono::{DateTime, Utc};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use serde_json::{Map, Value};

/// What became of one incoming event.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    Accepted {
        planned: usize,
        already_planned: usize,
        stopped: usize,
    },
    /// The id was seen before; `same` is false when the payload differs (a reused id).
    Duplicate {
        same: bool,
    },
    Rejected(Vec<FieldError>),
    /// Not stored: another event of the same all-or-nothing request was rejected.
    Withdrawn,
}

/// A message planned earlier in the same ingest batch: its index, and the index in the batch
/// of the event that triggered it (whose data a stop compares).
type PlannedHere = (usize, usize);

/// The suffix that keeps a job's callback-task row apart from its customer message.
pub const CALLBACK_SUFFIX: &str = "#callback";

/// The messages `job` plans for `event`: the customer message (if the job has customer
/// channels) and a callback task (if it lists `webhook`). Empty when the contact is not
/// in the job's audience; a field error when the dedupe key cannot be computed.
pub fn messages_for_event(
    book: &Playbook,
    job: &Job,
    event: &Event,
    contact: &Contact,
    now: DateTime<Utc>,
) -> Result<Vec<NewMessage>, FieldError> {
    if !book.in_audience(job, contact, Some(event), now) {
        return Ok(Vec::new());
    }
    let dedupe_key = match &job.dedupe {
        None => event.id.clone(),
        // The usual key, `{{event.data.<field>}}` holding a string or a number, without
        // building the whole render context and compiling the template per event: the
        // result is what handlebars renders for it (unescaped text).
        Some(src) if let Some(key) = simple_data_key(src, &event.data) => key,
        Some(src) => {
            let ctx = book.context(
                job,
                contact,
                Some(event),
                &MessageFacts {
                    id: "",
                    step: 0,
                    token: None,
                    send_at: now,
                },
            );
            book.templates
                .render_inline(src, &ctx)
                .map_err(|e| FieldError {
                    field: "data".into(),
                    message: format!(
                        "job {}: dedupe `{src}` cannot be computed for this event: {}",
                        job.id,
                        render_reason(&e)
                    ),
                })?
        }
    };
    // Either way (the shortcut too: `"order_id": ""`), an empty key would make this event
    // the one message of every event with an empty key, whichever customer's; and a key
    // longer than an index entry holds fails on PostgreSQL (about 2.7 kB) but not SQLite.
    if let Some(src) = &job.dedupe {
        if dedupe_key.trim().is_empty() {
            return Err(FieldError {
                field: "data".into(),
                message: format!("job {}: dedupe `{src}` is empty for this event", job.id),
            });
        }
        if dedupe_key.len() > MAX_DEDUPE_BYTES {
            return Err(FieldError {
                field: "data".into(),
                message: format!(
                    "job {}: dedupe `{src}` is {} bytes for this event; at most {MAX_DEDUPE_BYTES}",
                    job.id,
                    dedupe_key.len()
                ),
            });
        }
    }
    let Trigger::Event { delay, .. } = &job.trigger else {
        return Ok(Vec::new());
    };
    let due_at = event.occurred_at.with_timezone(&Utc) + *delay;
    let mut out = Vec::new();
    if job.webhook {
        let task_due = job.task_due(
            event.occurred_at.with_timezone(&Utc),
            *delay,
            book.default_timezone,
        );
        let mut task = new_message(
            book,
            job,
            &contact.id,
            Some(&event.id),
            0,
            format!("{dedupe_key}{CALLBACK_SUFFIX}"),
            "",
            task_due,
            now,
        );
        task.channel_plan = Some("webhook".into());
        if !book.webhook_enabled {
            task.state = MessageState::Open;
        }
        task.token = None;
        task.class = Class::Service;
        out.push(task);
    }
    if let Some(step) = job.steps.first() {
        out.push(new_message(
            book,
            job,
            &contact.id,
            Some(&event.id),
            0,
            dedupe_key,
            &step.template,
            due_at,
            now,
        ));
    }
    for m in &mut out {
        assign_variant(job, m);
    }
    Ok(out)
}

/// Give a first message (or a callback task) its contact's variant of the job's experiment:
/// the variant's template and name. The holdout is not drawn here but when the message would
/// go (`dispatch::gate`): drawn at planning, a held-out row never met the checks a send
/// meets (an unsubscribe, consent, a stop event before it was due), so the holdout kept
/// contacts the messaged group lost, and the comparison was biased.
pub fn assign_variant(job: &Job, m: &mut NewMessage) {
    if let Some(v) = job.experiment.variant(&job.id, &m.contact_id) {
        if m.channel_plan.is_none() {
            m.template = v.template.clone();
        }
        m.variant = Some(v.name.clone());
    }
}

/// The reminder that follows step `step` of `job`, sent at `sent_at`.
pub fn next_step(
    book: &Playbook,
    job: &Job,
    prev: &Claimed,
    sent_at: DateTime<Utc>,
) -> Option<NewMessage> {
    if prev.channel_plan.is_some() {
        return None; // a callback task has no reminders
    }
    let step = job.step(prev.step + 1)?;
    let event_id = prev.event.as_ref().map(|e| e.id.as_str());
    let mut m = new_message(
        book,
        job,
        &prev.contact.id,
        event_id,
        prev.step + 1,
        prev.dedupe_key.clone(),
        &step.template,
        sent_at + step.after,
        sent_at,
    );
    m.variant = prev.variant.clone();
    Some(m)
}

/// The greeting of an anniversary job for `contact` in `year`, due at `fire_at`.
pub fn anniversary_message(
    book: &Playbook,
    job: &Job,
    contact_id: &str,
    year: i32,
    fire_at: DateTime<Utc>,
) -> Option<NewMessage> {
    let step = job.steps.first()?;
    let mut m = new_message(
        book,
        job,
        contact_id,
        None,
        0,
        format!("{contact_id}:{year}"),
        &step.template,
        fire_at,
        fire_at,
    );
    // A greeting days late is odd: it goes within the grace period or not at all.
    m.not_after = Some(fire_at + book.policy.anniversary_grace);
    assign_variant(job, &mut m);
    Some(m)
}

/// The message of a cron job's occurrence for one contact of its audience.
pub fn occurrence_message(
    book: &Playbook,
    job: &Job,
    contact_id: &str,
    occurrence: DateTime<Utc>,
) -> Option<NewMessage> {
    let step = job.steps.first()?;
    let at = occurrence.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut key = String::with_capacity(contact_id.len() + 1 + at.len());
    key.push_str(contact_id);
    key.push(':');
    key.push_str(&at);
    let mut m = new_message(
        book,
        job,
        contact_id,
        None,
        0,
        key,
        &step.template,
        occurrence,
        occurrence,
    );
    assign_variant(job, &mut m);
    Some(m)
}

/// `made_at` is when the message is planned, as far as the caller knows (an event's
/// ingest time, a reminder's send time, an occurrence's own time): its id and its token
/// start with it, so the messages planned together sit together in the store's indexes
/// (by due time, a bulk import's messages, all due at once, took a random leaf each).
#[allow(clippy::too_many_arguments)]
fn new_message(
    book: &Playbook,
    job: &Job,
    contact_id: &str,
    event_id: Option<&str>,
    step: i64,
    dedupe_key: String,
    template: &str,
    due_at: DateTime<Utc>,
    made_at: DateTime<Utc>,
) -> NewMessage {
    let expire = match job.expire_after {
        Some(per_job) => per_job,
        None => book.expire_after,
    };
    NewMessage {
        id: new_id(made_at),
        job_id: job.id.clone(),
        contact_id: contact_id.to_string(),
        event_id: event_id.map(str::to_string),
        step,
        dedupe_key,
        template: template.to_string(),
        due_at,
        not_after: expire.map(|d| due_at + d),
        state: MessageState::Scheduled,
        reason: None,
        class: job.class,
        token: Some(new_token(made_at)),
        channel_plan: None,
        variant: None,
    }
}

/// The request each item of a batch belongs to, from the requests' sizes (items past the
/// sizes' sum are requests of their own).
fn request_index(sizes: &[usize], items: usize) -> Vec<usize> {
    let mut out: Vec<usize> = sizes
        .iter()
        .enumerate()
        .flat_map(|(r, n)| std::iter::repeat_n(r, *n))
        .take(items)
        .collect();
    let mut next = sizes.len();
    while out.len() < items {
        out.push(next);
        next += 1;
    }
    out
}

/// Ingest checked events: store each once, upsert its contact, plan and stop messages.
/// One transaction for the whole batch, in a few multi-row statements: everything is
/// decided in memory first (in batch order, as if the events came one by one), then
/// written. A rejected item writes nothing. Each item is its own request (`events
/// import` lines); see [`ingest_requests`] for all-or-nothing groups.
pub async fn ingest(
    book: &Playbook,
    store: &Store,
    batch: &[Incoming],
    now: DateTime<Utc>,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let sizes = vec![1; batch.len()];
    ingest_requests(book, store, batch, &sizes, now).await
}

/// Like [`ingest`] for a batch made of requests of `sizes` events, in order
/// (the API's group commit): a request is all or nothing, so when planning rejects one of
/// its events (a dedupe key that cannot be computed), none of it is written and its other
/// events come back [`IngestOutcome::Withdrawn`]. The decisions are then made again
/// without it, so the requests sharing the transaction see the store as if it had never
/// come (its contact changes do not leak into theirs). Each round withdraws at least one
/// request, so there are at most as many rounds as requests.
pub async fn ingest_requests(
    book: &Playbook,
    store: &Store,
    batch: &[Incoming],
    sizes: &[usize],
    now: DateTime<Utc>,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut tx = store.begin().await?;
    let outcomes = ingest_in(book, &mut tx, batch, sizes, now).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// [`ingest_requests`] inside a transaction the caller commits: a survey answer's row and
/// its `survey.answered` event are written together.
pub async fn ingest_in(
    book: &Playbook,
    tx: &mut Tx,
    batch: &[Incoming],
    sizes: &[usize],
    now: DateTime<Utc>,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let ids: Vec<String> = batch.iter().map(|i| i.event.id.clone()).collect();
    let stored_digests = tx.event_digests(&ids).await?;
    let mut contact_ids: Vec<String> = batch.iter().map(|i| i.contact.id.clone()).collect();
    contact_ids.sort();
    contact_ids.dedup();
    let mut stored_contacts = tx.contacts_by_id(&contact_ids).await?;
    // Read as not stored: the store leaves their dates and events unread and undeleted where
    // no other writer can have added them since (SQLite).
    let unstored: HashSet<&str> = contact_ids
        .iter()
        .filter(|id| !stored_contacts.contains_key(*id))
        .map(String::as_str)
        .collect();
    let stop_types = book.jobs.stop_types();
    // Stop events of these contacts, stored or earlier in this batch.
    let mut stored_stop_data = tx
        .event_data_for(&contact_ids, &unstored, &stop_types)
        .await?;
    // What the batch's stop events may cancel among the messages stored before it, read at
    // once (the batch's own are in `planned_here`, below).
    let mut stop_contacts: Vec<String> = Vec::new();
    let mut stopped_jobs: Vec<&str> = Vec::new();
    for inc in batch {
        for job in book.jobs.stopped_by(&inc.event.kind) {
            stop_contacts.push(inc.contact.id.clone());
            stopped_jobs.push(&job.id);
        }
    }
    stop_contacts.sort();
    stop_contacts.dedup();
    stopped_jobs.sort();
    stopped_jobs.dedup();
    let stored_pending = tx
        .pending_with_triggers(&stop_contacts, &stopped_jobs, &unstored)
        .await?;
    let request_of = request_index(sizes, batch.len());
    // Only a request of several events can be withdrawn and the batch decided again; without
    // one the store's answers are used up in one round instead of copied for it.
    let may_withdraw = sizes.iter().any(|n| *n > 1);

    enum Pending {
        Done(IngestOutcome),
        Store {
            event: usize,
            messages: Vec<usize>,
            stopped: usize,
        },
    }
    // Requests withdrawn so far, and the errors of their rejected events.
    let mut withdrawn: HashSet<usize> = HashSet::new();
    let mut refusals: HashMap<usize, Vec<FieldError>> = HashMap::new();
    let (outcomes, events, messages, dirty, contacts, db_cancels) = loop {
        let (mut contacts, mut stop_data) = if may_withdraw {
            (stored_contacts.clone(), stored_stop_data.clone())
        } else {
            (
                std::mem::take(&mut stored_contacts),
                std::mem::take(&mut stored_stop_data),
            )
        };
        // Sized for the batch: grown from empty, each map rehashed its keys some ten times.
        contacts.reserve(batch.len());
        let mut seen: HashMap<&str, &str> = HashMap::with_capacity(batch.len());
        let mut outcomes: Vec<Pending> = Vec::with_capacity(batch.len());
        let mut events: Vec<(&Event, &str)> = Vec::new();
        let mut messages: Vec<NewMessage> = Vec::new();
        // Planned in this batch, per (contact, job): message index and trigger data (for stops).
        let mut planned_here: HashMap<(String, String), Vec<PlannedHere>> =
            HashMap::with_capacity(batch.len());
        let mut dirty: HashSet<String> = HashSet::with_capacity(batch.len());
        // Stops of messages stored before this batch: (message id, reason, the stopping
        // event's index in `events`).
        let mut db_cancels: Vec<(String, String, usize)> = Vec::new();
        for (i, inc) in batch.iter().enumerate() {
            if withdrawn.contains(&request_of[i]) {
                outcomes.push(Pending::Done(match refusals.get(&i) {
                    Some(errors) => IngestOutcome::Rejected(errors.clone()),
                    None => IngestOutcome::Withdrawn,
                }));
                continue;
            }
            let ev = &inc.event;
            let digest = match stored_digests.get(&ev.id) {
                Some(d) => Some(d.as_str()),
                None => seen.get(ev.id.as_str()).copied(),
            };
            if let Some(digest) = digest {
                outcomes.push(Pending::Done(IngestOutcome::Duplicate {
                    same: digest == inc.digest,
                }));
                continue;
            }
            let stored = contacts.get(&inc.contact.id);
            // Fields follow the newest event that changed them, not the last to arrive: an
            // older event (a backfill imported after live ones) only fills what is missing.
            let fields_at = stored.and_then(|s| s.fields_at);
            let newer = fields_at.is_none_or(|at| ev.occurred_at >= at);
            let contact = inc.contact.apply(stored.map(|s| &s.contact), !newer);
            let mut planned = Vec::new();
            let mut errors = Vec::new();
            for job in book.jobs.triggered_by(&ev.kind) {
                match messages_for_event(book, job, ev, &contact, now) {
                    Ok(ms) => planned.extend(ms.into_iter().map(|m| (job.clone(), m))),
                    Err(e) => errors.push(e),
                }
            }
            if !errors.is_empty() {
                outcomes.push(Pending::Done(IngestOutcome::Rejected(errors)));
                continue;
            }
            seen.insert(&ev.id, &inc.digest);
            if stored.map(|s| &s.contact) != Some(&contact) {
                dirty.insert(contact.id.clone());
                let fields_at = if newer {
                    Some(ev.occurred_at.with_timezone(&Utc))
                } else {
                    fields_at
                };
                contacts.insert(contact.id.clone(), StoredContact { contact, fields_at });
            }
            let Some(contact) = contacts.get(&inc.contact.id).map(|s| &s.contact) else {
                return Err(StoreError::Invariant(format!(
                    "contact {} was decided but is not in the batch's contacts",
                    inc.contact.id
                )));
            };
            let mut mine = Vec::new();
            for (job, mut m) in planned {
                // An event that arrives after its own stop event (imports out of order) is
                // planned as cancelled, so the log says why nothing went out.
                for stop in &job.stop_when {
                    let stops = stop_data
                        .get(&(contact.id.clone(), stop.event.clone()))
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    if let Some(reason) = stop_reason(stop, &Triggered::of(ev), stops) {
                        m.state = MessageState::Cancelled;
                        m.reason = Some(reason);
                        break;
                    }
                }
                planned_here
                    .entry((contact.id.clone(), job.id.clone()))
                    .or_default()
                    .push((messages.len(), i));
                mine.push(messages.len());
                messages.push(m);
            }
            let mut stopped = 0;
            let this_stop = StopEvent::of(ev);
            for job in book.jobs.stopped_by(&ev.kind) {
                for stop in job.stop_when.iter().filter(|s| s.event == ev.kind) {
                    for (id, trigger, trigger_data) in stored_pending
                        .get(&(contact.id.clone(), job.id.clone()))
                        .into_iter()
                        .flatten()
                    {
                        let trigger = Triggered {
                            event: trigger.as_ref().map(|(id, at)| (id.as_str(), *at)),
                            data: trigger_data,
                        };
                        if let Some(reason) =
                            stop_reason(stop, &trigger, std::slice::from_ref(&this_stop))
                            && !db_cancels.iter().any(|(i, _, _)| i == id)
                        {
                            db_cancels.push((
                                id.clone(),
                                format!("{reason} (event {})", ev.id),
                                events.len(),
                            ));
                            stopped += 1;
                        }
                    }
                    for (idx, trigger) in planned_here
                        .get(&(contact.id.clone(), job.id.clone()))
                        .into_iter()
                        .flatten()
                    {
                        let trigger = Triggered::of(&batch[*trigger].event);
                        let m = &mut messages[*idx];
                        if matches!(m.state, MessageState::Scheduled | MessageState::Open)
                            && let Some(reason) =
                                stop_reason(stop, &trigger, std::slice::from_ref(&this_stop))
                        {
                            m.state = MessageState::Cancelled;
                            m.reason = Some(format!("{reason} (event {})", ev.id));
                            stopped += 1;
                        }
                    }
                }
            }
            if stop_types.contains(&ev.kind) {
                stop_data
                    .entry((contact.id.clone(), ev.kind.clone()))
                    .or_default()
                    .push(this_stop);
            }
            outcomes.push(Pending::Store {
                event: events.len(),
                messages: mine,
                stopped,
            });
            events.push((ev, inc.digest.as_str()));
        }
        let mut failed = false;
        for (i, p) in outcomes.iter().enumerate() {
            let r = request_of[i];
            if let Pending::Done(IngestOutcome::Rejected(errors)) = p
                && !withdrawn.contains(&r)
                && sizes.get(r).is_some_and(|n| *n > 1)
            {
                refusals.insert(i, errors.clone());
                failed = true;
            }
        }
        if !failed {
            break (outcomes, events, messages, dirty, contacts, db_cancels);
        }
        withdrawn.extend(refusals.keys().map(|i| request_of[*i]));
    };

    // Write: events first, so an id another writer took meanwhile writes nothing more.
    let inserted = tx.insert_events(&events, now).await?;
    let lost: HashSet<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, (e, _))| !inserted.contains(&e.id))
        .map(|(i, _)| i)
        .collect();
    // What the other writer stored under each lost id: a retry of the same event sent to
    // two nodes at once is a duplicate of the same content, not a reused id.
    let lost_digests = if lost.is_empty() {
        HashMap::new()
    } else {
        let ids: Vec<String> = lost.iter().map(|i| events[*i].0.id.clone()).collect();
        tx.event_digests(&ids).await?
    };
    let mut keep_messages = Vec::with_capacity(messages.len());
    let mut keep_contacts: Vec<&StoredContact> = Vec::new();
    let mut lost_contacts: HashSet<&str> = HashSet::new();
    for p in &outcomes {
        if let Pending::Store {
            event,
            messages: mine,
            ..
        } = p
        {
            if lost.contains(event) {
                lost_contacts.insert(events[*event].0.contact_id.as_str());
            } else {
                keep_messages.extend(mine.iter().map(|i| &messages[*i]));
            }
        }
    }
    for id in &dirty {
        if !lost_contacts.contains(id.as_str())
            && let Some(c) = contacts.get(id)
        {
            keep_contacts.push(c);
        }
    }
    keep_contacts.sort_by(|a, b| a.contact.id.cmp(&b.contact.id));
    tx.upsert_contacts(&keep_contacts, &unstored, now).await?;
    let new_ids = tx.insert_messages(&keep_messages, now).await?;
    // A stop counts what it cancelled: a message claimed since it was read is being sent,
    // and is left to its send.
    let cancels: Vec<(&str, &str)> = db_cancels
        .iter()
        .map(|(id, reason, _)| (id.as_str(), reason.as_str()))
        .collect();
    let kept = tx.cancel_waiting(&cancels, now).await?;
    let mut not_stopped: HashMap<usize, usize> = HashMap::new();
    for (id, _, event) in &db_cancels {
        if kept.contains(id) {
            *not_stopped.entry(*event).or_default() += 1;
        }
    }

    Ok(outcomes
        .into_iter()
        .map(|p| match p {
            Pending::Done(o) => o,
            Pending::Store { event, .. } if lost.contains(&event) => {
                let (e, digest) = events[event];
                IngestOutcome::Duplicate {
                    same: lost_digests.get(&e.id).is_some_and(|d| d == digest),
                }
            }
            Pending::Store {
                event,
                messages: mine,
                stopped,
            } => {
                let stopped = stopped.saturating_sub(not_stopped.get(&event).copied().unwrap_or(0));
                let planned = mine
                    .iter()
                    .filter(|i| new_ids.contains(messages[**i].id.as_str()))
                    .count();
                IngestOutcome::Accepted {
                    planned,
                    already_planned: mine.len() - planned,
                    stopped,
                }
            }
        })
        .collect())
}

/// The longest dedupe key taken, in bytes: the unique index on (job, key, step) holds an
/// entry of about 2.7 kB on PostgreSQL, and the same key must be taken on both backends.
pub const MAX_DEDUPE_BYTES: usize = 1024;

/// The value of a dedupe template that is exactly `{{event.data.<field>}}` (a plain field
/// name) as handlebars renders it, when that field holds a string or a number; `None` for
/// anything else (the caller renders the template).
fn simple_data_key(src: &str, data: &Map<String, Value>) -> Option<String> {
    let field = src
        .strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim_matches(' ')
        .strip_prefix("event.data.")?;
    let mut chars = field.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return None;
    }
    match data.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The event that planned a message, as `stop_when` compares stop events with it.
pub struct Triggered<'a> {
    /// Its id and time; `None` for a message without one (its event purged).
    pub event: Option<(&'a str, DateTime<Utc>)>,
    pub data: &'a Map<String, Value>,
}

impl<'a> Triggered<'a> {
    pub fn of(e: &'a Event) -> Triggered<'a> {
        Triggered {
            event: Some((e.id.as_str(), e.occurred_at.with_timezone(&Utc))),
            data: &e.data,
        }
    }
}

/// Why `stop` stops the message `trigger` planned, if one of `stop_events` does. A stop
/// event counts from the trigger's time on, and never the trigger itself: a return last
/// spring does not stop this autumn's review request, a complaint reopened before it was
/// resolved again does not stop the new callback, and a job stopped by its own trigger type
/// (a reminder after the last cart update) is not stopped by the update that planned it.
/// One imported before its trigger but dated after it still stops it.
pub fn stop_reason(
    stop: &StopWhen,
    trigger: &Triggered<'_>,
    stop_events: &[StopEvent],
) -> Option<String> {
    let counts = |s: &StopEvent| {
        s.kind == stop.event
            && trigger
                .event
                .is_none_or(|(id, at)| s.id != id && s.at >= at)
    };
    let trigger_data = trigger.data;
    stop_events
        .iter()
        .filter(|s| counts(s))
        .find(|s| stop_matches(stop, trigger_data, &s.data))
        .map(|_| {
            if stop.match_fields.is_empty() {
                format!("stopped: {} received", stop.event)
            } else {
                let pairs: Vec<String> = stop
                    .match_fields
                    .iter()
                    .map(|f| format!("{f}={}", data_key(trigger_data, f).unwrap_or_default()))
                    .collect();
                format!("stopped: {} received for {}", stop.event, pairs.join(", "))
            }
        })
}

/// Same contact is given; with `match`, every named field must be present and equal.
pub fn stop_matches(
    stop: &StopWhen,
    trigger_data: &Map<String, Value>,
    stop_data: &Map<String, Value>,
) -> bool {
    stop.match_fields.iter().all(
        |f| match (data_key(trigger_data, f), data_key(stop_data, f)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn simple_dedupe_key_renders_like_handlebars() {
        let mut h = handlebars::Handlebars::new();
        h.set_strict_mode(true);
        h.register_escape_fn(handlebars::no_escape);
        let data = map(json!({
            "order_id": "SO-1 <&> \"x\"", "n": 42, "neg": -7, "f": 1.5, "big": 12345678901234567890u64,
            "e": "", "cn": "订单", "_u1": "u", "b": true, "nul": null, "arr": [1], "obj": {"a": 1},
        }));
        let ctx = json!({"event": {"data": data}});
        for field in ["order_id", "n", "neg", "f", "big", "e", "cn", "_u1"] {
            for src in [
                format!("{{{{event.data.{field}}}}}"),
                format!("{{{{ event.data.{field} }}}}"),
            ] {
                let fast = simple_data_key(&src, &data);
                assert_eq!(fast, Some(h.render_template(&src, &ctx).unwrap()), "{src}");
            }
        }
        // Everything else is left to handlebars.
        for src in [
            "{{event.data.b}}",
            "{{event.data.nul}}",
            "{{event.data.arr}}",
            "{{event.data.obj}}",
            "{{event.data.missing}}",
            "{{{event.data.n}}}",
            "{{~event.data.n}}",
            "x{{event.data.n}}",
            "{{event.data.n}}-{{event.data.f}}",
            "{{event.data.obj.a}}",
            "{{event.id}}",
            "{{default event.data.n \"x\"}}",
        ] {
            assert_eq!(simple_data_key(src, &data), None, "{src}");
        }
    }

    #[test]
    fn stop_matching_table() {
        let by_order = StopWhen {
            event: "review.submitted".into(),
            match_fields: vec!["order_id".into()],
        };
        let any = StopWhen {
            event: "review.submitted".into(),
            match_fields: vec![],
        };
        let t = map(json!({"order_id": "SO-1"}));
        let cases = [
            (&by_order, json!({"order_id": "SO-1"}), true),
            (&by_order, json!({"order_id": "SO-2"}), false),
            (&by_order, json!({}), false),
            (&any, json!({"order_id": "SO-2"}), true),
            (&any, json!({}), true),
        ];
        for (stop, data, want) in cases {
            assert_eq!(stop_matches(stop, &t, &map(data.clone())), want, "{data}");
        }
        let numeric = map(json!({"order_id": 42}));
        assert!(stop_matches(
            &by_order,
            &numeric,
            &map(json!({"order_id": "42"}))
        ));
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let stop = |id: &str, kind: &str, when: &str, data: Value| StopEvent {
            kind: kind.into(),
            id: id.into(),
            at: at(when),
            data: map(data),
        };
        let delivered = Triggered {
            event: Some(("d-1", at("2026-11-20T02:00:00Z"))),
            data: &t,
        };
        let reviewed =
            |when: &str| stop("r-1", "review.submitted", when, json!({"order_id": "SO-1"}));
        assert_eq!(
            stop_reason(&by_order, &delivered, &[reviewed("2026-11-21T02:00:00Z")]).as_deref(),
            Some("stopped: review.submitted received for order_id=SO-1")
        );
        // From the trigger's time on: the same instant counts, before does not.
        assert!(stop_reason(&by_order, &delivered, &[reviewed("2026-11-20T02:00:00Z")]).is_some());
        assert_eq!(
            stop_reason(&any, &delivered, &[reviewed("2026-03-02T02:00:00Z")]),
            None,
            "a stop event from before the trigger"
        );
        // Another type does not stop, nor the trigger itself.
        let returned = stop("x-1", "order.returned", "2026-11-21T02:00:00Z", json!({}));
        assert_eq!(stop_reason(&any, &delivered, &[returned]), None);
        let updated = StopWhen {
            event: "cart.updated".into(),
            match_fields: vec!["order_id".into()],
        };
        let itself = stop(
            "d-1",
            "cart.updated",
            "2026-11-20T02:00:00Z",
            json!({"order_id": "SO-1"}),
        );
        assert_eq!(
            stop_reason(&updated, &delivered, std::slice::from_ref(&itself)),
            None
        );
        // A message whose trigger is gone: any stop event of the type counts.
        let unknown = Triggered {
            event: None,
            data: &t,
        };
        assert!(stop_reason(&any, &unknown, &[reviewed("2026-03-02T02:00:00Z")]).is_some());
    }
}
