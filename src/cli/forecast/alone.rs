//! Jobs that nothing else reads, forecast in memory.
//!
//! The replay pays store round trips for every message at every step (about 300 µs a send),
//! and a year of a quarter-hourly job for a hundred contacts is close to a million sends. A
//! job whose messages no other decision reads (no frequency cap counts them: the job is
//! `class: service` or the policy has no caps; no `exclude_if_sent` in it or naming it) can
//! be worked out one message at a time instead: each is decided at its due time by the
//! dispatcher's own gate, rendering and state machine ([`Dispatcher::try_unqueued`]),
//! deferred to when the gate says, until it is sent (its reminder follows), cancelled or
//! past `until`. A cron job's occurrences are the scheduler's ([`fired_occurrences`]), its
//! audience the scheduler's (`schedule::occurrence_messages`, a contact at a time). An event
//! job's messages are those pending in the store copy, claimed out of the replay
//! ([`Store::claim_jobs`]). An anniversary job's greetings are the scheduler's
//! ([`Scheduler::plan_anniversaries`]): one whose key the copy holds already is upserted
//! there (the store's rules decide which greeting moves and which stays the only one) and
//! claimed with the stored ones; a new one is decided from memory. What a claim
//! reads about a contact (the row, stop events, suppressions) is read once. `forecast
//! --replay-all` replays every job, and the tests hold the two answers equal.

use super::Line;
use crate::dispatch::Dispatcher;
use crate::jobs::{Job, Trigger};
use crate::model::{Channel, Class, Contact, Event, MessageState};
use crate::plan::occurrence_message;
use crate::playbook::Playbook;
use crate::schedule::{Scheduler, fired_occurrences};
use crate::store::{Claimed, ContactSuppressions, NewMessage, StopEvent, Store, SuppressionList};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

/// The enabled cron, event and anniversary jobs whose messages no other decision reads.
pub(super) fn jobs(book: &Playbook) -> Vec<Arc<Job>> {
    let capped = |j: &Job| j.class == Class::Marketing && !book.policy.caps.is_empty();
    let read_by_another = |j: &Job| {
        book.jobs.iter().any(|other| {
            other
                .audience
                .exclude_if_sent
                .as_ref()
                .is_some_and(|(sent_by, _)| *sent_by == j.id)
        })
    };
    let kind = |j: &Job| {
        matches!(
            j.trigger,
            Trigger::Cron { .. } | Trigger::Event { .. } | Trigger::Anniversary { .. }
        )
    };
    book.jobs
        .iter()
        .filter(|j| j.enabled && kind(j))
        .filter(|j| !capped(j) && j.audience.exclude_if_sent.is_none() && !read_by_another(j))
        .cloned()
        .collect()
}

/// A contact as a claim reads it for one job: the row and its stop events.
struct Reader {
    id: Arc<str>,
    contact: Contact,
    stops: Vec<StopEvent>,
    suppressed: ContactSuppressions,
}

/// What the in-memory part decided: the sends, and what would not be sent, each in order.
/// Close to a million marks for a year of a frequent job, so each is small: the job and
/// contact by index, the address only when it is not the contact's own.
#[derive(Default)]
pub(super) struct Decided {
    jobs: Vec<Arc<str>>,
    readers: Vec<Arc<Reader>>,
    pub sent: Vec<Mark>,
    pub not_sent: Vec<Mark>,
}

/// One message made final.
pub(super) struct Mark {
    /// Sends: when sent; the others: when due as decided.
    pub at: DateTime<Utc>,
    /// When it was decided.
    pub decided: DateTime<Utc>,
    job: u32,
    reader: u32,
    step: u32,
    channel: Option<Channel>,
    /// When it is not the contact's address on `channel`.
    address: Option<Box<str>>,
    callback: bool,
    /// An event job's message: its event's `order_id`.
    order: Option<Box<str>>,
    state: MessageState,
    reason: Option<Box<str>>,
    /// For the messages not sent (the text output names them).
    id: Option<Box<str>>,
}

impl Decided {
    /// `mark` as the forecast prints it.
    pub(super) fn line(&self, mark: &Mark) -> Line {
        let reader = &self.readers[mark.reader as usize];
        let address = match (&mark.address, mark.channel) {
            (Some(a), _) => Some(a.to_string()),
            (None, Some(ch)) => reader.contact.address(ch).map(str::to_string),
            (None, None) => None,
        };
        let sent = mark.state == MessageState::Sent;
        Line {
            id: mark.id.as_deref().unwrap_or_default().to_string(),
            sent_at: sent.then_some(mark.at),
            due: mark.at,
            updated: mark.decided,
            job: self.jobs[mark.job as usize].clone(),
            step: i64::from(mark.step),
            contact: reader.id.clone(),
            order: mark.order.as_deref().map(str::to_string),
            channel: mark.channel.map(|c| c.as_str().to_string()),
            address,
            callback: mark.callback,
            reason: mark.reason.as_deref().map(str::to_string),
            state: mark.state,
        }
    }
}

/// Forecast `jobs` (from [`jobs`]) from `now` to `until` with `dispatcher` (a dry run on
/// `scratch`). Every pending message of the event jobs among `taken` (all of [`jobs`]) is
/// claimed out of the replay; those of `jobs` are decided.
pub(super) async fn forecast(
    scratch: &Store,
    scheduler: &Scheduler,
    dispatcher: &Dispatcher,
    taken: &[Arc<Job>],
    jobs: &[Arc<Job>],
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> anyhow::Result<Decided> {
    let book = &scheduler.book;
    let mut out = Decided::default();
    let cron = |j: &Job| matches!(j.trigger, Trigger::Cron { .. });
    // An anniversary job's greetings: those whose key the copy holds are upserted there
    // (and claimed below with the rest), the new ones decided from memory.
    let mut greetings: HashMap<&str, Vec<NewMessage>> = HashMap::new();
    for job in jobs {
        if matches!(job.trigger, Trigger::Anniversary { .. }) {
            let new = scheduler.plan_anniversaries(job, now).await?;
            greetings.insert(&job.id, new);
        }
    }
    // Event jobs' pending messages, and the greetings the copy holds (those just upserted
    // among them), due within the span.
    let stored: Vec<String> = taken
        .iter()
        .filter(|j| !cron(j))
        .map(|j| j.id.clone())
        .collect();
    let token = crate::values::new_id(now);
    scratch.claim_jobs(&token, &stored, now, until).await?;
    if jobs.is_empty() {
        return Ok(out);
    }
    dispatcher.read_brakes().await?;
    let suppressions = scratch.suppression_list().await?;
    // Every contact, read once, when some job's audience is not narrowed by an event.
    let everyone: Vec<Contact> = if jobs
        .iter()
        .any(|j| cron(j) && j.audience.had_event.is_none())
    {
        scratch.contacts(&scratch.all_contact_ids().await?).await?
    } else {
        Vec::new()
    };
    for job in jobs {
        let source = Source {
            scratch,
            suppressions: &suppressions,
            stop_types: job.stop_when.iter().map(|s| s.event.clone()).collect(),
        };
        // This job's readers (stop events are the job's own), by contact id.
        let mut mine: HashMap<String, u32> = HashMap::new();
        out.jobs.push(Arc::from(job.id.as_str()));
        let job_index = u32::try_from(out.jobs.len() - 1)?;
        let each = |reader| Each {
            dispatcher,
            job: job_index,
            reader,
            now,
            until,
        };
        if !cron(job) {
            // An event job's messages and an anniversary job's greetings stored already. A
            // page at a time: they can be many (and each carries its contact and event).
            for ids in scratch.claimed_ids(&token, &job.id).await?.chunks(2_000) {
                let page = scratch.claimed_of(&token, ids).await?;
                let mut rows: Vec<Contact> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for m in &page {
                    if !mine.contains_key(&m.contact.id) && seen.insert(&m.contact.id) {
                        rows.push(m.contact.clone());
                    }
                }
                source.read(&mut out, &mut mine, rows).await?;
                for m in page {
                    if let Some(reader) = mine.get(&m.contact.id).copied() {
                        each(reader).decide(m, &mut out).await;
                    }
                }
            }
            let new = greetings.remove(job.id.as_str()).unwrap_or_default();
            let ids = new.iter().map(|m| &m.contact_id);
            source.read_missing(&mut out, &mut mine, ids).await?;
            for m in new {
                let Some(reader) = mine.get(&m.contact_id).copied() else {
                    continue;
                };
                let each = each(reader);
                if let Some(m) = each.planned(m, now, &mut out) {
                    each.decide(m, &mut out).await;
                }
            }
            slim(&mut out, &mine);
            continue;
        }
        let occurrences =
            fired_occurrences(book, job, scratch.last_fire(&job.id).await?, now, until)?;
        // A `where` on the contact's and the job's fields only answers the same at every
        // occurrence: asked once per contact (the context is built anew for every question).
        let stable = job
            .audience
            .conditions
            .iter()
            .all(|c| c.path.starts_with("contact.") || c.path.starts_with("job."));
        let mut admitted: HashMap<u32, bool> = HashMap::new();
        // Without `had_event`, the audience is everyone at every occurrence: read once.
        let mut everyone_here: Vec<u32> = Vec::new();
        for occurrence in occurrences {
            let candidates: std::borrow::Cow<[u32]> = match &job.audience.had_event {
                None => {
                    if mine.is_empty() {
                        source.read(&mut out, &mut mine, everyone.clone()).await?;
                        everyone_here = everyone
                            .iter()
                            .filter_map(|c| mine.get(&c.id))
                            .copied()
                            .collect();
                    }
                    std::borrow::Cow::Borrowed(&everyone_here)
                }
                Some((kind, within)) => {
                    let from = occurrence - chrono::Duration::from_std(*within)?;
                    let ids = scratch.contacts_with_event(kind, from, occurrence).await?;
                    source.read_missing(&mut out, &mut mine, &ids).await?;
                    std::borrow::Cow::Owned(
                        ids.iter().filter_map(|i| mine.get(i)).copied().collect(),
                    )
                }
            };
            // The scheduler's audience (`occurrence_messages`), a reader at a time.
            let mut planned = Vec::new();
            for &r in candidates.iter() {
                let contact = &out.readers[r as usize].contact;
                let admit = if stable {
                    *admitted
                        .entry(r)
                        .or_insert_with(|| book.in_audience(job, contact, None, occurrence))
                } else {
                    book.in_audience(job, contact, None, occurrence)
                };
                if admit && let Some(m) = occurrence_message(book, job, &contact.id, occurrence) {
                    planned.push((r, m));
                }
            }
            for (reader, m) in planned {
                let each = each(reader);
                if let Some(m) = each.planned(m, occurrence.max(now), &mut out) {
                    each.decide(m, &mut out).await;
                }
            }
        }
        slim(&mut out, &mine);
    }
    out.sent
        .sort_unstable_by_key(|m| (m.at, m.job, m.reader, m.step));
    out.not_sent
        .sort_unstable_by_key(|m| (m.at, m.job, m.reader, m.step));
    Ok(out)
}

/// Once a job is decided, its readers keep only what the output shows (id, email, phone):
/// a job's readers are as many as its contacts.
fn slim(out: &mut Decided, mine: &HashMap<String, u32>) {
    for r in mine.values() {
        if let Some(reader) = out.readers.get_mut(*r as usize).and_then(Arc::get_mut) {
            reader.contact = Contact {
                id: std::mem::take(&mut reader.contact.id),
                email: reader.contact.email.take(),
                phone: reader.contact.phone.take(),
                ..Contact::default()
            };
            reader.stops = Vec::new();
        }
    }
}

/// Where one job's readers come from: the store copy, the suppression list, and the event
/// types the job stops on.
struct Source<'a> {
    scratch: &'a Store,
    suppressions: &'a SuppressionList,
    stop_types: Vec<String>,
}

impl Source<'_> {
    /// Add `rows` to `out`'s readers, and to `mine` by id, with their stop events and their
    /// suppressions.
    async fn read(
        &self,
        out: &mut Decided,
        mine: &mut HashMap<String, u32>,
        rows: Vec<Contact>,
    ) -> anyhow::Result<()> {
        let ids: Vec<String> = rows.iter().map(|c| c.id.clone()).collect();
        let mut stops = if self.stop_types.is_empty() {
            Default::default()
        } else {
            let mut tx = self.scratch.begin().await?;
            let found = tx
                .event_data_for(&ids, &Default::default(), &self.stop_types)
                .await?;
            tx.commit().await?;
            found
        };
        for contact in rows {
            let mut events = Vec::new();
            for kind in &self.stop_types {
                if let Some(found) = stops.remove(&(contact.id.clone(), kind.clone())) {
                    events.extend(found);
                }
            }
            mine.insert(contact.id.clone(), u32::try_from(out.readers.len())?);
            out.readers.push(Arc::new(Reader {
                id: Arc::from(contact.id.as_str()),
                suppressed: self.suppressions.of(&contact),
                contact,
                stops: events,
            }));
        }
        Ok(())
    }

    /// Add the contacts of `ids` not among `mine` yet, read from the copy a page at a time.
    async fn read_missing<'i>(
        &self,
        out: &mut Decided,
        mine: &mut HashMap<String, u32>,
        ids: impl IntoIterator<Item = &'i String>,
    ) -> anyhow::Result<()> {
        let mut missing: Vec<String> = ids
            .into_iter()
            .filter(|i| !mine.contains_key(*i))
            .cloned()
            .collect();
        missing.sort_unstable();
        missing.dedup();
        for page in missing.chunks(2_000) {
            let rows = self.scratch.contacts(page).await?;
            self.read(out, mine, rows).await?;
        }
        Ok(())
    }
}

/// The `order_id` of `m`'s trigger event, as the replay's output shows it.
fn order(m: &Claimed) -> Option<Box<str>> {
    m.event
        .as_ref()
        .and_then(Event::order_id)
        .map(String::into_boxed_str)
}

/// Decides the messages of one job to one contact.
struct Each<'a> {
    dispatcher: &'a Dispatcher,
    job: u32,
    reader: u32,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl Each<'_> {
    /// `m` (planned, never queued) as a claim would hand it over, with its trigger event.
    fn unqueued(&self, m: NewMessage, event: Option<Event>, out: &Decided) -> Claimed {
        let reader = &out.readers[self.reader as usize];
        Claimed::unqueued(
            m,
            reader.contact.clone(),
            event,
            reader.stops.clone(),
            Vec::new(),
        )
    }

    /// Follow `m` (and the reminders its sends plan) from its due time until each is sent,
    /// cancelled, failed, or still waiting at `until`, as the replay's steps would: a message
    /// is tried when it falls due (one due before `now` at `now`), a deferred one again at
    /// the time the gate gave.
    async fn decide(&self, m: Claimed, out: &mut Decided) {
        let reader = out.readers[self.reader as usize].clone();
        let mut queue = vec![m];
        while let Some(mut m) = queue.pop() {
            m.stop_events.clone_from(&reader.stops);
            let mut t = m.due_at.max(self.now);
            while t <= self.until {
                m.suppressed = reader.suppressed.at(t);
                let c = self.dispatcher.try_unqueued(&mut m, t).await;
                m.attempts += c.attempts.len() as i64;
                if !c.attempts.is_empty() && !c.uncounted {
                    m.tries += 1;
                }
                match (c.state, c.retry_at) {
                    (MessageState::Sent, _) => {
                        let mut mark =
                            self.mark(&reader, &m.id, m.step, c.at, c.channel, c.address);
                        mark.state = MessageState::Sent;
                        mark.callback = m.channel_plan.is_some();
                        mark.order = order(&m);
                        mark.reason = c.reason.map(String::into_boxed_str);
                        mark.id = None;
                        out.sent.push(mark);
                        if let Some(next) = c.next {
                            queue.push(self.unqueued(next, m.event.clone(), out));
                        }
                        break;
                    }
                    (MessageState::Scheduled | MessageState::Retrying, Some(at)) if at > t => {
                        m.due_at = at;
                        t = at;
                    }
                    (MessageState::Failed | MessageState::Cancelled, _) => {
                        let mut mark =
                            self.mark(&reader, &m.id, m.step, m.due_at, c.channel, c.address);
                        mark.decided = c.at;
                        mark.callback = m.channel_plan.is_some();
                        mark.order = order(&m);
                        mark.reason = c.reason.map(String::into_boxed_str);
                        mark.state = c.state;
                        out.not_sent.push(mark);
                        break;
                    }
                    // Open (a callback task with no webhook): not final, as in the replay. A
                    // retry not later than now cannot happen (the gate and the backoff move
                    // forward); were it to, stop rather than spin.
                    _ => break,
                }
            }
        }
    }

    /// `m`, planned at `planned_at` and never stored, as a claim would hand it over, for
    /// [`Each::decide`]; `None` when it is final already or never will be: one planned as
    /// cancelled is marked so (the replay stores it so), a held-out one is never final, so
    /// not in a forecast. (Not async itself: each level of future around `decide` was copied
    /// on every call, 1.7 times the instructions of a year's forecast.)
    fn planned(
        &self,
        m: NewMessage,
        planned_at: DateTime<Utc>,
        out: &mut Decided,
    ) -> Option<Claimed> {
        match m.state {
            MessageState::Scheduled => Some(self.unqueued(m, None, out)),
            MessageState::Cancelled => {
                let r = &out.readers[self.reader as usize];
                let mut mark = self.mark(r, &m.id, m.step, m.due_at, None, None);
                mark.decided = planned_at;
                mark.callback = m.channel_plan.is_some();
                mark.reason = m.reason.map(String::into_boxed_str);
                mark.state = MessageState::Cancelled;
                out.not_sent.push(mark);
                None
            }
            _ => None,
        }
    }

    /// A mark for message `id` to `reader` at `at`; the caller fills in what was decided.
    fn mark(
        &self,
        reader: &Reader,
        id: &str,
        step: i64,
        at: DateTime<Utc>,
        channel: Option<String>,
        address: Option<String>,
    ) -> Mark {
        let channel = channel.as_deref().and_then(Channel::parse);
        let own = channel.and_then(|ch| reader.contact.address(ch));
        Mark {
            at,
            decided: at,
            job: self.job,
            reader: self.reader,
            step: u32::try_from(step).unwrap_or(u32::MAX),
            channel,
            address: address
                .filter(|a| Some(a.as_str()) != own)
                .map(String::into_boxed_str),
            callback: false,
            order: None,
            state: MessageState::Scheduled,
            reason: None,
            id: Some(id.into()),
        }
    }
}
