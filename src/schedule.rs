//! Clock-driven triggers: anniversaries (birthdays, membership days) and cron jobs (surveys).
//!
//! Neither keeps a timer per contact or per occurrence. A tick (every minute in the daemon,
//! once per `run --once`) asks the store for the contacts whose date field falls on the
//! candidate days (by a month-day index: a day's share of a million contacts, not all of
//! them) and plans each greeting at its local time, deduplicated by job + contact + year.
//! Cron occurrences are computed in the job's time zone by [`crate::cron_tz`] (croner for the
//! calendar, our own DST rules), so 10:00 stays 10:00 across DST (tokio-cron-scheduler keeps
//! a fixed UTC offset, its issue #107, so it is only used to wake the daemon every minute);
//! the last fired occurrence is kept in the store, so a daemon that was down catches up once
//! and several daemons fire an occurrence once.

use crate::cron_tz::{self, CronTzError};
use crate::jobs::{Job, Missed, Trigger};
use crate::playbook::Playbook;
use crate::policy::{LeapDay, anniversary_days, anniversary_in};
use crate::store::{Store, StoreError};
use crate::values::local_instant;
use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

/// Anniversaries are planned this far ahead of their local time.
pub(crate) const HORIZON: Span = Span::hours(1);
/// A cron occurrence processed later than this counts as missed (the daemon was down).
pub(crate) const LATE_AFTER: Span = Span::minutes(10);

/// A greeting planned: (job, contact, when).
type PlannedKey = (String, String, DateTime<Utc>);

/// The time each greeting was last planned for by this process, by (job, contact), so a
/// tick every minute does not write today's greetings again. Keyed without the time: a
/// contact whose zone changes and changes back is planned at the first time again (a set of
/// (job, contact, time) remembered the first time as done and left the greeting at the
/// second, where the send-time check cancelled it).
#[derive(Default)]
struct PlannedCache(HashMap<(String, String), DateTime<Utc>>);

impl PlannedCache {
    /// Whether the greeting `key` names was the last one planned for its job and contact.
    fn holds(&self, (job, contact, at): &PlannedKey) -> bool {
        self.0.get(&(job.clone(), contact.clone())) == Some(at)
    }

    fn remember(&mut self, planned: impl IntoIterator<Item = PlannedKey>) {
        if self.0.len() > 1_000_000 {
            self.0.clear();
        }
        self.0.extend(
            planned
                .into_iter()
                .map(|(job, contact, at)| ((job, contact), at)),
        );
    }
}

pub(crate) struct Scheduler {
    pub store: Store,
    pub book: Playbook,
    /// The greetings this process planned last ([`PlannedCache`]).
    planned: Mutex<PlannedCache>,
    /// How far ahead greetings are planned ([`HORIZON`]; the forecast looks further).
    pub horizon: Span,
    /// The occurrence each recurring job was last seen fired for. The store's row only moves
    /// forward, so while no occurrence falls after this one, a tick asks the store nothing
    /// (the forecast ticks at every due time of every job).
    fired: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Jobs planned elsewhere: the forecast works out those nothing else reads in memory
    /// (cron jobs from [`fired_occurrences`], anniversary jobs from
    /// [`Scheduler::plan_anniversaries`]), so the replay neither plans nor steps to them.
    pub elsewhere: HashSet<String>,
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TickStats {
    pub anniversary_candidates: usize,
    pub greetings_planned: usize,
    pub occurrences_fired: usize,
    pub occurrences_skipped: usize,
    pub occurrence_messages: usize,
}

impl Scheduler {
    pub(crate) fn new(store: Store, book: Playbook) -> Scheduler {
        Scheduler {
            store,
            book,
            planned: Mutex::new(PlannedCache::default()),
            horizon: HORIZON,
            fired: Mutex::new(HashMap::new()),
            elsewhere: HashSet::new(),
        }
    }

    pub(crate) async fn tick(&self, now: DateTime<Utc>) -> Result<TickStats, StoreError> {
        let mut stats = TickStats::default();
        let jobs: Vec<_> = self
            .book
            .jobs
            .anniversaries()
            .filter(|j| !self.elsewhere.contains(&j.id))
            .cloned()
            .collect();
        for job in jobs {
            self.anniversaries(&job, now, &mut stats).await?;
        }
        self.recurring_into(now, &mut stats).await?;
        Ok(stats)
    }

    /// Only the cron jobs' part of [`Scheduler::tick`]: the forecast plans every greeting
    /// of its span in its first tick (its horizon is the span) and no contact changes
    /// during it, so later steps need only this.
    pub(crate) async fn tick_recurring(&self, now: DateTime<Utc>) -> Result<TickStats, StoreError> {
        let mut stats = TickStats::default();
        self.recurring_into(now, &mut stats).await?;
        Ok(stats)
    }

    async fn recurring_into(
        &self,
        now: DateTime<Utc>,
        stats: &mut TickStats,
    ) -> Result<(), StoreError> {
        let jobs: Vec<_> = self.replayed_recurring().cloned().collect();
        for job in jobs {
            self.recurring(&job, now, stats).await?;
        }
        let off: Vec<_> = self
            .book
            .jobs
            .iter()
            .filter(|j| !j.enabled && matches!(j.trigger, Trigger::Cron { .. }))
            .cloned()
            .collect();
        for job in off {
            self.pass_disabled(&job, now, stats).await?;
        }
        Ok(())
    }

    /// Record a disabled cron job's occurrences as they pass, planning nothing: enabled
    /// again, it fires from its next occurrence on. The catch-up of `missed: run_once` is
    /// for a daemon that was down; a job marketing switched off would otherwise send the
    /// latest occurrence of the time it was off the moment it is switched back on. A job
    /// never fired has nothing to record (enabled, it starts from then, as any new job).
    async fn pass_disabled(
        &self,
        job: &Job,
        now: DateTime<Utc>,
        stats: &mut TickStats,
    ) -> Result<(), StoreError> {
        let Trigger::Cron { cron, timezone, .. } = &job.trigger else {
            return Ok(());
        };
        let tz = timezone.unwrap_or(self.book.default_timezone);
        if self.nothing_passed(&job.id, cron, tz, now) {
            return Ok(());
        }
        let Some(last) = self.store.last_fire(&job.id).await? else {
            return Ok(());
        };
        self.remember_fired(&job.id, last);
        let latest = match cron_tz::latest_in(cron, tz, last, now) {
            Ok(Some(at)) => at,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::error!(job = %job.id, "recurring occurrence not computed: {e}");
                return Ok(());
            }
        };
        self.pass_occurrence(
            &job.id,
            latest,
            now,
            stats,
            "passed an occurrence of a disabled job",
        )
        .await
    }

    /// Record `occurrence` of `job` as fired, planning nothing (skipped, or passed while the
    /// job was off); logged with `what` when this process recorded it.
    async fn pass_occurrence(
        &self,
        job: &str,
        occurrence: DateTime<Utc>,
        now: DateTime<Utc>,
        stats: &mut TickStats,
        what: &str,
    ) -> Result<(), StoreError> {
        if self
            .store
            .fire_occurrence(job, occurrence, &[], now)
            .await?
            .is_some()
        {
            self.remember_fired(job, occurrence);
            stats.occurrences_skipped += 1;
            tracing::info!(job = %job, occurrence = %occurrence, "{what}");
        }
        Ok(())
    }

    /// The enabled cron jobs this scheduler fires.
    fn replayed_recurring(&self) -> impl Iterator<Item = &std::sync::Arc<Job>> {
        self.book
            .jobs
            .recurring()
            .filter(|j| !self.elsewhere.contains(&j.id))
    }

    /// Whether no occurrence of `job` falls after the one last seen fired and by `now`: the
    /// store need not be asked.
    fn nothing_passed(&self, job: &str, cron: &croner::Cron, tz: Tz, now: DateTime<Utc>) -> bool {
        let known = self.fired.lock().expect("fired lock").get(job).copied();
        known.is_some_and(|known| {
            cron_tz::next_after(cron, tz, known).is_ok_and(|next| next.is_none_or(|n| n > now))
        })
    }

    fn remember_fired(&self, job: &str, at: DateTime<Utc>) {
        let mut fired = self.fired.lock().expect("fired lock");
        let known = fired.entry(job.to_string()).or_insert(at);
        *known = (*known).max(at);
    }

    async fn anniversaries(
        &self,
        job: &Job,
        now: DateTime<Utc>,
        stats: &mut TickStats,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let before = stats.anniversary_candidates;
        let planned = self.greetings(job, now, stats).await?;
        let messages: Vec<_> = planned.iter().map(|(_, m)| m.clone()).collect();
        let n = self.store.upsert_anniversaries(&messages, now).await?;
        stats.greetings_planned += n;
        self.planned
            .lock()
            .expect("planned lock")
            .remember(planned.into_iter().map(|(k, _)| k));
        tracing::debug!(job = %job.id, candidates = stats.anniversary_candidates - before, planned = n, ms = started.elapsed().as_millis() as u64, "anniversary scan");
        Ok(())
    }

    /// The greetings of anniversary `job` from `now` − the grace to the horizon that this
    /// scheduler has not planned yet, each with its key in [`Scheduler::planned`].
    async fn greetings(
        &self,
        job: &Job,
        now: DateTime<Utc>,
        stats: &mut TickStats,
    ) -> Result<Vec<(PlannedKey, crate::store::NewMessage)>, StoreError> {
        let Trigger::Anniversary {
            field,
            at,
            leap_day,
        } = &job.trigger
        else {
            return Ok(Vec::new());
        };
        let leap = leap_day.unwrap_or(self.book.policy.leap_day);
        let grace = Span::from_std(self.book.policy.anniversary_grace).unwrap_or(Span::days(1));
        let (from, to) = (now - grace, now + self.horizon);
        let days = candidate_days(from, to);
        let month_days: BTreeSet<String> = days
            .iter()
            .flat_map(|d| anniversary_days(*d, leap))
            .collect();
        let rows = self
            .store
            .anniversary_candidates(&field.key(), &month_days.into_iter().collect::<Vec<_>>())
            .await?;
        stats.anniversary_candidates += rows.len();
        // `audience.where` on the contact, asked of each candidate as an event job asks it
        // of the event's contact (their data read only when the job has conditions).
        let admitted: Option<HashSet<String>> = if job.audience.conditions.is_empty() {
            None
        } else {
            let ids: BTreeSet<String> = rows.iter().map(|r| r.contact_id.clone()).collect();
            let contacts = self
                .store
                .contacts(&ids.into_iter().collect::<Vec<_>>())
                .await?;
            Some(
                contacts
                    .iter()
                    .filter(|c| self.book.in_audience(job, c, None, now))
                    .map(|c| c.id.clone())
                    .collect(),
            )
        };
        let mut planned = Vec::new();
        for row in &rows {
            if admitted
                .as_ref()
                .is_some_and(|a| !a.contains(&row.contact_id))
            {
                continue;
            }
            let Ok(date) = NaiveDate::parse_from_str(&row.date, "%Y-%m-%d") else {
                continue;
            };
            let tz: Tz = row
                .timezone
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(self.book.default_timezone);
            for day in &days {
                if let Some(fire_at) = fire_time(date, *day, *at, tz, leap)
                    && fire_at >= from
                    && fire_at <= to
                {
                    let key = (job.id.clone(), row.contact_id.clone(), fire_at);
                    if self.planned.lock().expect("planned lock").holds(&key) {
                        continue;
                    }
                    let year = chrono::Datelike::year(day);
                    if let Some(m) = crate::plan::anniversary_message(
                        &self.book,
                        job,
                        &row.contact_id,
                        year,
                        fire_at,
                    ) {
                        planned.push((key, m));
                    }
                }
            }
        }
        Ok(planned)
    }

    /// Plan anniversary `job`'s greetings up to the horizon as a tick at `now` does, for the
    /// forecast's copy of the store: a greeting whose key the store holds already is upserted
    /// there (the store's rules decide which one moves and which stays the only one); the
    /// others, plain inserts, are returned instead of written, for the forecast to decide in
    /// memory.
    pub(crate) async fn plan_anniversaries(
        &self,
        job: &Job,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::store::NewMessage>, StoreError> {
        let mut stats = TickStats::default();
        let planned: Vec<_> = self
            .greetings(job, now, &mut stats)
            .await?
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let keys: Vec<String> = planned.iter().map(|m| m.dedupe_key.clone()).collect();
        let stored = self.store.stored_keys(&job.id, &keys).await?;
        let (known, new): (Vec<_>, Vec<_>) = planned
            .into_iter()
            .partition(|m| stored.contains(&m.dedupe_key));
        self.store.upsert_anniversaries(&known, now).await?;
        Ok(new)
    }

    async fn recurring(
        &self,
        job: &Job,
        now: DateTime<Utc>,
        stats: &mut TickStats,
    ) -> Result<(), StoreError> {
        let Trigger::Cron {
            cron,
            timezone,
            missed,
            ..
        } = &job.trigger
        else {
            return Ok(());
        };
        let tz = timezone.unwrap_or(self.book.default_timezone);
        if self.nothing_passed(&job.id, cron, tz, now) {
            return Ok(());
        }
        let last = match self.store.last_fire(&job.id).await? {
            Some(t) => t,
            None => {
                // First sight of this job: occurrences from before it existed are not owed.
                let baseline = now - LATE_AFTER;
                let mut tx = self.store.begin().await?;
                tx.advance_recurring(&job.id, baseline, now).await?;
                tx.commit().await?;
                baseline
            }
        };
        self.remember_fired(&job.id, last);
        let (latest, late) = match owed(cron, tz, *missed, last, now) {
            Ok(None) => return Ok(()),
            Ok(Some(Owed::Fire { at, late })) => (at, late),
            Ok(Some(Owed::Skip(latest))) => {
                return self
                    .pass_occurrence(
                        &job.id,
                        latest,
                        now,
                        stats,
                        "skipped a missed occurrence (missed: skip)",
                    )
                    .await;
            }
            // One job's expression must not stop the others' occurrences or the sends.
            Err(e) => {
                tracing::error!(job = %job.id, "recurring occurrence not computed: {e}");
                return Ok(());
            }
        };
        let messages = self.audience_messages(job, latest).await?;
        if let Some(n) = self
            .store
            .fire_occurrence(&job.id, latest, &messages, now)
            .await?
        {
            self.remember_fired(&job.id, latest);
            stats.occurrences_fired += 1;
            stats.occurrence_messages += n;
            tracing::info!(job = %job.id, occurrence = %latest, planned = n, late, "recurring occurrence fired");
        }
        Ok(())
    }

    /// The first cron occurrence of any recurring job strictly after `t` (the forecast steps
    /// to it).
    pub(crate) fn next_occurrence_after(
        &self,
        t: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, CronTzError> {
        let mut next: Option<DateTime<Utc>> = None;
        for job in self.replayed_recurring() {
            if let Trigger::Cron { cron, timezone, .. } = &job.trigger {
                let tz = timezone.unwrap_or(self.book.default_timezone);
                if let Some(o) = cron_tz::next_after(cron, tz, t)? {
                    next = Some(next.map_or(o, |n| n.min(o)));
                }
            }
        }
        Ok(next)
    }

    /// One message per contact of the job's audience at `occurrence`.
    async fn audience_messages(
        &self,
        job: &Job,
        occurrence: DateTime<Utc>,
    ) -> Result<Vec<crate::store::NewMessage>, StoreError> {
        let a = &job.audience;
        let ids = match &a.had_event {
            Some((kind, within)) => {
                let from = occurrence - Span::from_std(*within).unwrap_or(Span::MAX);
                self.store
                    .contacts_with_event(kind, from, occurrence)
                    .await?
            }
            None => self.store.all_contact_ids().await?,
        };
        let excluded: HashSet<String> = match &a.exclude_if_sent {
            Some((other, within)) => {
                let since = occurrence - Span::from_std(*within).unwrap_or(Span::MAX);
                self.store
                    .contacts_sent_by(other, since)
                    .await?
                    .into_iter()
                    .collect()
            }
            None => HashSet::new(),
        };
        let ids: Vec<String> = ids.into_iter().filter(|i| !excluded.contains(i)).collect();
        let contacts = self.store.contacts(&ids).await?;
        Ok(occurrence_messages(&self.book, job, &contacts, occurrence))
    }
}

/// The messages of `job`'s occurrence for those of `contacts` its `where` lets in (the
/// candidates `had_event` and `exclude_if_sent` leave).
fn occurrence_messages<'c>(
    book: &Playbook,
    job: &Job,
    contacts: impl IntoIterator<Item = &'c crate::model::Contact>,
    occurrence: DateTime<Utc>,
) -> Vec<crate::store::NewMessage> {
    contacts
        .into_iter()
        .filter(|c| book.in_audience(job, c, None, occurrence))
        .filter_map(|c| crate::plan::occurrence_message(book, job, &c.id, occurrence))
        .collect()
}

/// What a scheduler ticking at `now` owes a cron job whose last fired occurrence is `last`.
#[derive(Debug, PartialEq, Eq)]
enum Owed {
    /// The latest occurrence in (`last`, `now`]; `late`: more than [`LATE_AFTER`] ago.
    Fire { at: DateTime<Utc>, late: bool },
    /// That occurrence is late and the job says `missed: skip`: recorded, nothing planned.
    Skip(DateTime<Utc>),
}

/// The catch-up rule, in one place for the scheduler and the forecast: only the latest
/// missed occurrence fires (a daemon down for a week sends one survey, not seven), unless it
/// is late and the job says `missed: skip`.
fn owed(
    cron: &croner::Cron,
    tz: Tz,
    missed: Missed,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Owed>, CronTzError> {
    let Some(at) = cron_tz::latest_in(cron, tz, last, now)? else {
        return Ok(None);
    };
    let late = now - at > LATE_AFTER;
    Ok(Some(if late && missed == Missed::Skip {
        Owed::Skip(at)
    } else {
        Owed::Fire { at, late }
    }))
}

/// The occurrences of cron `job` that a scheduler started at `now` and ticked at each one
/// up to `until` fires, as [`Scheduler::recurring`] decides ([`owed`] at `now`, from the
/// store's last fired occurrence `last`, or `now` − [`LATE_AFTER`] for a job seen the first
/// time), then every one after `now` and `last`. The forecast plans the jobs nothing else
/// reads from this list, in memory.
pub(crate) fn fired_occurrences(
    book: &Playbook,
    job: &Job,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, CronTzError> {
    let Trigger::Cron {
        cron,
        timezone,
        missed,
        ..
    } = &job.trigger
    else {
        return Ok(Vec::new());
    };
    let tz = timezone.unwrap_or(book.default_timezone);
    let last = last.unwrap_or(now - LATE_AFTER);
    let mut out = Vec::new();
    if let Some(Owed::Fire { at, .. }) = owed(cron, tz, *missed, last, now)? {
        out.push(at);
    }
    // A store that fired past `now` already (a forecast from an earlier time) fires again
    // only after that.
    out.extend(cron_tz::occurrences(cron, tz, now.max(last), until)?);
    Ok(out)
}

/// Every local calendar day that some time zone is on between `from` and `to`
/// (UTC−12 to UTC+14).
fn candidate_days(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<NaiveDate> {
    let first = (from - Span::hours(12)).date_naive();
    let last = (to + Span::hours(14)).date_naive();
    first.iter_days().take_while(|d| *d <= last).collect()
}

/// When the anniversary of `date` on local day `day` happens in `tz`, if it is that day.
/// The first anniversary is a year after the date: not the day itself (a member who joined
/// today), and none before a date still to come (a birthday typed in the future).
pub fn fire_time(
    date: NaiveDate,
    day: NaiveDate,
    at: chrono::NaiveTime,
    tz: Tz,
    leap: LeapDay,
) -> Option<DateTime<Utc>> {
    let year = chrono::Datelike::year(&day);
    (year > chrono::Datelike::year(&date) && anniversary_in(date, year, leap) == day)
        .then(|| local_instant(tz, day.and_time(at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(expr: &str) -> croner::Cron {
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .unwrap()
    }

    fn occurrences(
        c: &croner::Cron,
        tz: Tz,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        cron_tz::occurrences(c, tz, after, until).unwrap()
    }

    #[test]
    fn a_greeting_moved_and_moved_back_is_planned_again() {
        let key = |at: &str| ("bday".to_string(), "c-1".to_string(), t(at));
        let (shanghai, new_york) = ("2026-11-23T01:00:00Z", "2026-11-23T14:00:00Z");
        let mut cache = PlannedCache::default();
        assert!(!cache.holds(&key(shanghai)));
        cache.remember([key(shanghai)]);
        assert!(cache.holds(&key(shanghai)));
        // The contact moves to New York: the greeting is planned there, then back.
        assert!(!cache.holds(&key(new_york)));
        cache.remember([key(new_york)]);
        assert!(
            !cache.holds(&key(shanghai)),
            "moved back, not planned again"
        );
        cache.remember([key(shanghai)]);
        assert!(cache.holds(&key(shanghai)));
        assert!(!cache.holds(&("bday".to_string(), "c-2".to_string(), t(shanghai))));
    }

    #[test]
    fn only_the_latest_missed_occurrence_is_owed_and_skip_drops_a_late_one() {
        let daily = cron("0 10 * * *");
        let utc: Tz = "UTC".parse().unwrap();
        let last = t("2026-03-01T10:00:00Z");
        // Down for three days: one occurrence owed, the latest, late.
        let now = t("2026-03-04T12:00:00Z");
        let at = t("2026-03-04T10:00:00Z");
        assert_eq!(
            owed(&daily, utc, Missed::RunOnce, last, now).unwrap(),
            Some(Owed::Fire { at, late: true })
        );
        assert_eq!(
            owed(&daily, utc, Missed::Skip, last, now).unwrap(),
            Some(Owed::Skip(at))
        );
        // On time (within LATE_AFTER): fired whatever `missed` says.
        let now = at + LATE_AFTER;
        for missed in [Missed::RunOnce, Missed::Skip] {
            assert_eq!(
                owed(&daily, utc, missed, last, now).unwrap(),
                Some(Owed::Fire { at, late: false })
            );
        }
        // Nothing since `last`: nothing owed.
        assert_eq!(owed(&daily, utc, Missed::RunOnce, at, now).unwrap(), None);
    }

    #[test]
    fn weekly_survey_stays_at_ten_local_across_dst() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // New York leaves DST on Sunday 2026-11-01.
        let occ = occurrences(
            &cron("0 10 * * MON"),
            ny,
            t("2026-10-19T00:00:00Z"),
            t("2026-11-10T00:00:00Z"),
        );
        assert_eq!(
            occ,
            [
                t("2026-10-19T14:00:00Z"),
                t("2026-10-26T14:00:00Z"),
                t("2026-11-02T15:00:00Z"),
                t("2026-11-09T15:00:00Z")
            ]
        );
        // And enters it on 2027-03-14.
        let occ = occurrences(
            &cron("0 10 * * MON"),
            ny,
            t("2027-03-08T00:00:00Z"),
            t("2027-03-16T00:00:00Z"),
        );
        assert_eq!(occ, [t("2027-03-08T15:00:00Z"), t("2027-03-15T14:00:00Z")]);
    }

    #[test]
    fn occurrences_exclude_the_start_and_include_the_end() {
        let sh: Tz = "Asia/Shanghai".parse().unwrap();
        let c = cron("0 10 * * MON");
        assert!(
            occurrences(&c, sh, t("2026-11-23T02:00:00Z"), t("2026-11-23T02:00:00Z")).is_empty()
        );
        assert_eq!(
            occurrences(&c, sh, t("2026-11-23T01:59:59Z"), t("2026-11-23T02:00:00Z")),
            [t("2026-11-23T02:00:00Z")]
        );
    }

    #[test]
    fn birthday_fire_times_in_local_zones() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let nine = chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let sh: Tz = "Asia/Shanghai".parse().unwrap();
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            fire_time(d("1990-11-23"), d("2026-11-23"), nine, sh, LeapDay::Feb28),
            Some(t("2026-11-23T01:00:00Z"))
        );
        assert_eq!(
            fire_time(d("1990-11-23"), d("2026-11-23"), nine, ny, LeapDay::Feb28),
            Some(t("2026-11-23T14:00:00Z"))
        );
        assert_eq!(
            fire_time(d("1990-11-23"), d("2026-11-24"), nine, ny, LeapDay::Feb28),
            None
        );
        // The date itself, and a date to come, have no anniversary yet.
        assert_eq!(
            fire_time(d("2026-11-23"), d("2026-11-23"), nine, sh, LeapDay::Feb28),
            None
        );
        assert_eq!(
            fire_time(d("2030-11-23"), d("2026-11-23"), nine, sh, LeapDay::Feb28),
            None
        );
        assert_eq!(
            fire_time(d("2025-11-23"), d("2026-11-23"), nine, sh, LeapDay::Feb28),
            Some(t("2026-11-23T01:00:00Z"))
        );
        assert_eq!(
            fire_time(d("1992-02-29"), d("2027-02-28"), nine, sh, LeapDay::Feb28),
            Some(t("2027-02-28T01:00:00Z"))
        );
        assert_eq!(
            fire_time(d("1992-02-29"), d("2027-03-01"), nine, sh, LeapDay::Mar1),
            Some(t("2027-03-01T01:00:00Z"))
        );
        assert_eq!(
            fire_time(d("1992-02-29"), d("2028-02-29"), nine, sh, LeapDay::Feb28),
            Some(t("2028-02-29T01:00:00Z"))
        );
    }

    #[test]
    fn candidate_days_cover_every_zone() {
        let days = candidate_days(t("2026-11-23T00:30:00Z"), t("2026-11-23T01:30:00Z"));
        assert_eq!(
            days.first().map(|d| d.to_string()).as_deref(),
            Some("2026-11-22")
        );
        assert_eq!(
            days.last().map(|d| d.to_string()).as_deref(),
            Some("2026-11-23")
        );
    }
}
