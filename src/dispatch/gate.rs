//! The gate: whether a claimed message may go now, and on which channels.
//!
//! Planning records intent; this decides at send time, against the store as the claim read
//! it: the job still defined and enabled, the message not expired, no stop event, a birthday
//! not corrected since, then per channel an address, no suppression, consent (marketing),
//! then quiet hours in the contact's zone and frequency caps (marketing); last, an
//! experiment's holdout, drawn only for a first message that passed all of that, so the
//! held-out contacts are the ones that would have been messaged. A pure function of its
//! [`Gate`], so every rule is pinned by a table of cases below; dispatch only acts on the
//! [`Verdict`].

use super::{OnJobRemoved, SendMark};
use crate::jobs::{DateField, Job, OverCap, Trigger};
use crate::model::{Channel, Class};
use crate::plan::{Triggered, stop_reason};
use crate::policy::{PolicyConfig, anniversary_in, check_caps, has_consent};
use crate::store::Claimed;
use crate::values::local_instant;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use std::collections::HashMap;

/// Everything the decision depends on.
pub(super) struct Gate<'a> {
    /// `None`: the job is no longer defined.
    pub job: Option<&'a Job>,
    pub m: &'a Claimed,
    pub policy: &'a PolicyConfig,
    pub on_job_removed: OnJobRemoved,
    /// The contact's zone (or the default).
    pub zone: Tz,
    pub now: DateTime<Utc>,
    /// This run's marketing sends to the contact, not committed yet (the claim's history
    /// cannot see them); merged with the claim's by message id.
    pub in_run: &'a [SendMark],
    /// The reputation brake holding this job's marketing email (its scope and why), and
    /// how long a held message waits before it is looked at again.
    pub braked: Option<(&'a str, &'a str)>,
    pub recheck: chrono::Duration,
}

#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// A callback task: hand it to the webhook.
    Task,
    /// Go, on the first of these (channel, address) and fall back along them; `skipped` says
    /// why the job's other channels are out.
    Send {
        usable: Vec<(Channel, String)>,
        skipped: Vec<String>,
    },
    /// Back to the queue until `at`, without counting an attempt.
    Defer {
        at: DateTime<Utc>,
        reason: String,
    },
    Cancel(String),
    /// In the job's holdout: nothing is sent, the row is kept as `held_out` (why).
    HoldOut(String),
}

/// How long a message waits when another node is sending its contact a marketing message
/// (caps): a send takes seconds, and then the caps count it, or not.
const IN_FLIGHT_WAIT: chrono::Duration = chrono::Duration::minutes(1);

/// How a message the brake holds is explained; `store::release_brake` finds them by it.
pub(super) const BRAKE_REASON: &str = "paused by the reputation brake";

pub(super) fn decide(g: &Gate) -> Verdict {
    let m = g.m;
    let Some(job) = g.job else {
        return match g.on_job_removed {
            OnJobRemoved::Hold => Verdict::Defer {
                at: g.now + chrono::Duration::hours(1),
                reason: format!(
                    "job `{}` is not defined; held (dispatch.on_job_removed: hold)",
                    m.job_id
                ),
            },
            OnJobRemoved::Cancel => {
                Verdict::Cancel(format!("job `{}` is no longer defined", m.job_id))
            }
        };
    };
    if !job.enabled {
        return Verdict::Cancel(format!("job `{}` is disabled", job.id));
    }
    // A reminder taken out of the job is not sent (a callback task is no step of it).
    if m.channel_plan.is_none() && job.step(m.step).is_none() {
        return Verdict::Cancel(format!(
            "job `{}` no longer has step {} (its reminders changed)",
            job.id, m.step
        ));
    }
    if let Some(limit) = m.not_after
        && g.now > limit
    {
        return Verdict::Cancel(format!(
            "expired: due {}, not sent by {}",
            fmt_time(m.due_at),
            fmt_time(limit)
        ));
    }
    let no_data = serde_json::Map::new();
    let trigger = match &m.event {
        Some(e) => Triggered::of(e),
        None => Triggered {
            event: None,
            data: &no_data,
        },
    };
    for stop in &job.stop_when {
        if let Some(reason) = stop_reason(stop, &trigger, &m.stop_events) {
            return Verdict::Cancel(reason);
        }
    }
    if let Err(reason) = anniversary_still_holds(job, m, g.policy, g.zone) {
        return Verdict::Cancel(reason);
    }
    if m.channel_plan.as_deref() == Some(Channel::Webhook.as_str()) {
        return held_out(job, m).unwrap_or(Verdict::Task);
    }
    let (usable, skipped) = reachable(job, m, g.policy);
    if usable.is_empty() {
        return Verdict::Cancel(format!("not sent: {}", skipped.join("; ")));
    }
    // The reputation brake holds marketing email; it waits, nothing is dropped.
    if let Some((scope, why)) = g.braked
        && m.class == Class::Marketing
        && usable.first().is_some_and(|(ch, _)| *ch == Channel::Email)
    {
        let at = g.now + g.recheck;
        return Verdict::Defer {
            at,
            reason: format!(
                "{BRAKE_REASON} ({scope}: {why}); looked at again {}, or at once after `aftercare jobs resume {}`",
                fmt_time(at),
                scope.strip_prefix("job:").unwrap_or("--domain")
            ),
        };
    }
    // Quiet hours in the contact's local time.
    let window = job.effective_window(g.policy.send_window);
    let allowed = window.next_allowed(g.now, g.zone);
    if allowed > g.now {
        return Verdict::Defer {
            at: allowed,
            reason: format!(
                "quiet hours ({} {}); goes at {}",
                window.describe(),
                g.zone.name(),
                fmt_local(allowed, g.zone)
            ),
        };
    }
    // Frequency caps across marketing jobs.
    if m.class == Class::Marketing && !g.policy.caps.is_empty() {
        // Another node is sending the contact a marketing message right now: whether it
        // counts is known in a moment (sent, or not).
        if let Some((_, node)) = m.sending_elsewhere.first() {
            let at = g.now + IN_FLIGHT_WAIT;
            return Verdict::Defer {
                at,
                reason: format!(
                    "another marketing message to the contact is being sent (node {node}); the caps are looked at again at {}",
                    fmt_local(at, g.zone)
                ),
            };
        }
        let mut by_id: HashMap<&str, DateTime<Utc>> = m
            .recent_sends
            .iter()
            .map(|(id, t)| (id.as_str(), *t))
            .collect();
        by_id.extend(g.in_run.iter().map(|(id, t)| (id.as_str(), *t)));
        let all: Vec<DateTime<Utc>> = by_id.into_values().collect();
        if let Err((free_at, cap)) = check_caps(&g.policy.caps, &all, g.now) {
            let what = format!(
                "frequency cap {} per {}",
                cap.max,
                crate::duration::format(cap.per)
            );
            return match job.over_cap {
                OverCap::Drop => Verdict::Cancel(format!("dropped: {what} reached")),
                OverCap::Defer => {
                    let at = window.next_allowed(free_at, g.zone);
                    Verdict::Defer {
                        at,
                        reason: format!("{what} reached; goes at {}", fmt_local(at, g.zone)),
                    }
                }
            };
        }
    }
    held_out(job, m).unwrap_or(Verdict::Send { usable, skipped })
}

/// The holdout's verdict, when the message is a first message not tried yet and its contact
/// is in the job's holdout (reminders follow only a send; a message already tried was in
/// the messaged group when it went first).
fn held_out(job: &Job, m: &Claimed) -> Option<Verdict> {
    (m.step == 0 && m.attempts == 0 && job.experiment.held_out(&job.id, &m.contact.id)).then(|| {
        Verdict::HoldOut(format!(
            "held out: in the {} holdout of {}; nothing is sent",
            job.experiment.holdout_text(),
            job.id
        ))
    })
}

/// The job's channels the contact can and may be reached on, in order, and why not the rest.
fn reachable(
    job: &Job,
    m: &Claimed,
    policy: &PolicyConfig,
) -> (Vec<(Channel, String)>, Vec<String>) {
    let marketing = m.class == Class::Marketing;
    let mut skipped = Vec::new();
    let mut usable = Vec::new();
    for &ch in &job.channels {
        let Some(address) = m.contact.address(ch) else {
            skipped.push(format!(
                "{ch}: contact {} has no {}",
                m.contact.id,
                ch.address_noun()
            ));
            continue;
        };
        if let Some((_, why)) = m.suppressed.iter().find(|(sc, _)| sc == ch.as_str()) {
            skipped.push(format!("{ch}: {address} is suppressed ({why})"));
            continue;
        }
        if marketing && !has_consent(policy.consent, &m.contact.consent, ch.as_str()) {
            let why = match m.contact.consent.get(ch.as_str()) {
                Some(serde_json::Value::Bool(false)) => format!("consent.{ch} is false"),
                _ => format!("no consent.{ch} (consent mode opt_in)"),
            };
            skipped.push(format!("{ch}: {why}"));
            continue;
        }
        usable.push((ch, address.to_string()));
    }
    (usable, skipped)
}

/// A greeting planned for a date field's anniversary goes only if the field still has that
/// anniversary (a corrected birthday gets its own greeting on the new day). Judged by
/// instant, not by the local date it is due on: quiet hours or caps may have deferred it
/// into the next day (within the grace period), and a time a DST gap removed goes at the
/// gap's end, which can be the next day (23:30 in a 23:00-24:00 gap).
fn anniversary_still_holds(
    job: &Job,
    m: &Claimed,
    policy: &PolicyConfig,
    zone: Tz,
) -> Result<(), String> {
    let Trigger::Anniversary {
        field,
        at,
        leap_day,
    } = &job.trigger
    else {
        return Ok(());
    };
    let leap = leap_day.unwrap_or(policy.leap_day);
    let value = match field {
        DateField::Birthday => m.contact.birthday.clone(),
        DateField::Attribute(a) => m
            .contact
            .attributes
            .get(a)
            .and_then(|v| v.as_str())
            .map(str::to_string),
    };
    let Some(date) = value.and_then(|v| NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok()) else {
        return Err(format!(
            "contact {} no longer has {}",
            m.contact.id,
            field.key()
        ));
    };
    // Sent again by hand (a retry clears the window, `not_after`): support asked for it now,
    // past the day's grace or not.
    if m.not_after.is_none() {
        return Ok(());
    }
    // Planned for the year its dedupe key names (`{contact}:{year}`).
    let year = m
        .dedupe_key
        .rsplit(':')
        .next()
        .and_then(|y| y.parse().ok())
        .unwrap_or_else(|| m.due_at.with_timezone(&zone).year());
    if year <= date.year() {
        return Err(format!(
            "{} is {}: its first anniversary is in {}",
            field.key(),
            date,
            date.year() + 1
        ));
    }
    let day = anniversary_in(date, year, leap);
    let fire = local_instant(zone, day.and_time(*at));
    let grace =
        chrono::Duration::from_std(policy.anniversary_grace).unwrap_or(chrono::Duration::days(1));
    if m.due_at < fire || m.due_at > fire + grace {
        return Err(format!(
            "{} changed to {}; {}",
            field.key(),
            date.format("%m-%d"),
            crate::store::MOVED_TO_NEW_DAY
        ));
    }
    Ok(())
}

pub(super) fn fmt_local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

pub(super) fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::jobs::{Audience, Experiment, Goal, SmsSettings, Step, StopWhen};
    use crate::model::Contact;
    use crate::policy::{Cap, ConsentMode, LeapDay, SendWindow};
    use serde_json::json;
    use std::time::Duration;

    pub(in crate::dispatch) fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("an RFC 3339 time")
    }

    /// The job as the birthday greeting at 09:00.
    fn as_greeting(j: &mut Option<Job>) {
        if let Some(j) = j.as_mut() {
            j.trigger = Trigger::Anniversary {
                field: DateField::Birthday,
                at: chrono::NaiveTime::MIN + chrono::Duration::hours(9),
                leap_day: None,
            };
        }
    }

    /// Every contact in the job's holdout (validate refuses 100%; the gate does not care).
    fn all_held_out(j: &mut Option<Job>) {
        if let Some(j) = j.as_mut() {
            j.experiment.holdout_bp = 10_000;
        }
    }

    fn job() -> Job {
        Job {
            id: "review-request".into(),
            description: String::new(),
            enabled: true,
            trigger: Trigger::Event {
                event: "order.delivered".into(),
                delay: Duration::from_secs(3 * 86_400),
            },
            // The shipped review request's: the request, and a reminder 4 days after it.
            steps: vec![
                Step {
                    template: "review_request".into(),
                    after: Duration::ZERO,
                },
                Step {
                    template: "review_reminder".into(),
                    after: Duration::from_secs(4 * 86_400),
                },
            ],
            channels: vec![Channel::Email, Channel::Sms],
            webhook: false,
            class: Class::Marketing,
            dedupe: None,
            stop_when: vec![StopWhen {
                event: "review.submitted".into(),
                match_fields: vec!["order_id".into()],
            }],
            goal: Goal::default(),
            survey: None,
            experiment: Experiment::default(),
            expire_after: None,
            send_window: None,
            over_cap: OverCap::Defer,
            audience: Audience::default(),
            sms: SmsSettings::default(),
        }
    }

    pub(in crate::dispatch) fn claimed() -> Claimed {
        let consent = json!({"email": true, "sms": true});
        Claimed {
            id: "m1".into(),
            job_id: "review-request".into(),
            step: 0,
            dedupe_key: "SO-1".into(),
            template: "review_request".into(),
            due_at: t("2026-11-23T02:00:00Z"),
            not_after: Some(t("2026-11-30T02:00:00Z")),
            attempts: 0,
            tries: 0,
            class: Class::Marketing,
            token: None,
            channel_plan: None,
            variant: None,
            contact: Contact {
                id: "c1".into(),
                email: Some("li@example.com".into()),
                phone: Some("+8613800138000".into()),
                birthday: Some("1990-02-03".into()),
                consent: consent.as_object().cloned().unwrap_or_default(),
                ..Contact::default()
            },
            event: None,
            claim_token: "k".into(),
            stop_events: Vec::new(),
            suppressed: Vec::new(),
            recent_sends: Vec::new(),
            sending_elsewhere: Vec::new(),
        }
    }

    fn policy() -> PolicyConfig {
        PolicyConfig {
            consent: ConsentMode::OptIn,
            send_window: SendWindow {
                start: chrono::NaiveTime::MIN + chrono::Duration::hours(9),
                end: Some(chrono::NaiveTime::MIN + chrono::Duration::hours(21)),
            },
            caps: vec![Cap {
                max: 1,
                per: Duration::from_secs(86_400),
            }],
            leap_day: LeapDay::Feb28,
            anniversary_grace: Duration::from_secs(86_400),
        }
    }

    /// 10:00 in Shanghai.
    const NOON_ISH: &str = "2026-11-23T02:00:00Z";

    fn decide_with(
        f: impl FnOnce(&mut Option<Job>, &mut Claimed, &mut PolicyConfig),
        now: &str,
        in_run: &[SendMark],
    ) -> Verdict {
        let mut j = Some(job());
        let mut m = claimed();
        let mut p = policy();
        f(&mut j, &mut m, &mut p);
        decide(&Gate {
            job: j.as_ref(),
            m: &m,
            policy: &p,
            on_job_removed: OnJobRemoved::Cancel,
            zone: chrono_tz::Asia::Shanghai,
            now: t(now),
            in_run,
            braked: None,
            recheck: chrono::Duration::minutes(15),
        })
    }

    #[test]
    fn the_reputation_brake_holds_marketing_email_only() {
        let brake = Some(("job:review-request", "hard-bounce rate 5.00% is over 2%"));
        let with = |m: &Claimed, braked| {
            decide(&Gate {
                job: Some(&job()),
                m,
                policy: &policy(),
                on_job_removed: OnJobRemoved::Cancel,
                zone: chrono_tz::Asia::Shanghai,
                now: t(NOON_ISH),
                in_run: &[],
                braked,
                recheck: chrono::Duration::minutes(15),
            })
        };
        let m = claimed();
        match with(&m, brake) {
            Verdict::Defer { at, reason } => {
                assert_eq!(at, t(NOON_ISH) + chrono::Duration::minutes(15));
                assert!(reason.starts_with(BRAKE_REASON), "{reason}");
                assert!(
                    reason.contains("aftercare jobs resume review-request"),
                    "{reason}"
                );
            }
            other => panic!("marketing email under the brake: {other:?}"),
        }
        assert_eq!(with(&m, None), both(), "no brake, no hold");
        let mut service = claimed();
        service.class = Class::Service;
        assert_eq!(with(&service, brake), both(), "service messages go on");
        let mut sms_first = claimed();
        sms_first.contact.email = None;
        assert!(
            matches!(with(&sms_first, brake), Verdict::Send { .. }),
            "the brake is about email: SMS goes on"
        );
    }

    /// A review of `order`, a day after the gate tests' delivery.
    fn review(order: &str) -> crate::model::StopEvent {
        crate::model::StopEvent {
            kind: "review.submitted".into(),
            id: format!("r-{order}"),
            at: "2026-11-21T02:00:00Z".parse().unwrap(),
            data: json!({"order_id": order}).as_object().cloned().unwrap(),
        }
    }

    fn both() -> Verdict {
        Verdict::Send {
            usable: vec![
                (Channel::Email, "li@example.com".into()),
                (Channel::Sms, "+8613800138000".into()),
            ],
            skipped: vec![],
        }
    }

    type Case = (
        &'static str,
        fn(&mut Option<Job>, &mut Claimed, &mut PolicyConfig),
        &'static str,
        Verdict,
    );

    #[test]
    fn what_may_go_now() {
        let cases: Vec<Case> = vec![
            ("everything in order", |_, _, _| {}, NOON_ISH, both()),
            (
                "a removed job cancels",
                |j, _, _| *j = None,
                NOON_ISH,
                Verdict::Cancel("job `review-request` is no longer defined".into()),
            ),
            (
                "a disabled job cancels",
                |j, _, _| j.as_mut().unwrap().enabled = false,
                NOON_ISH,
                Verdict::Cancel("job `review-request` is disabled".into()),
            ),
            (
                "expired",
                |_, _, _| {},
                "2026-11-30T02:00:01Z",
                Verdict::Cancel(
                    "expired: due 2026-11-23 02:00:00Z, not sent by 2026-11-30 02:00:00Z".into(),
                ),
            ),
            (
                "a matching stop event cancels",
                |_, m, _| {
                    m.event = Some(crate::model::Event {
                        id: "e1".into(),
                        kind: "order.delivered".into(),
                        occurred_at: "2026-11-20T02:00:00Z".parse().unwrap(),
                        contact_id: "c1".into(),
                        data: json!({"order_id": "SO-1"}).as_object().cloned().unwrap(),
                    });
                    m.stop_events = vec![review("SO-1")];
                },
                NOON_ISH,
                Verdict::Cancel("stopped: review.submitted received for order_id=SO-1".into()),
            ),
            (
                "a stop event for another order does not",
                |_, m, _| {
                    m.stop_events = vec![review("SO-2")];
                },
                NOON_ISH,
                both(),
            ),
            (
                "a callback task goes to the webhook",
                |_, m, _| m.channel_plan = Some("webhook".into()),
                NOON_ISH,
                Verdict::Task,
            ),
            (
                "no phone: email only, and the log says why",
                |_, m, _| m.contact.phone = None,
                NOON_ISH,
                Verdict::Send {
                    usable: vec![(Channel::Email, "li@example.com".into())],
                    skipped: vec!["sms: contact c1 has no phone number".into()],
                },
            ),
            (
                "a suppressed address is passed over",
                |_, m, _| m.suppressed = vec![("email".into(), "bounced".into())],
                NOON_ISH,
                Verdict::Send {
                    usable: vec![(Channel::Sms, "+8613800138000".into())],
                    skipped: vec!["email: li@example.com is suppressed (bounced)".into()],
                },
            ),
            (
                "marketing without consent on any channel is cancelled",
                |_, m, _| m.contact.consent = serde_json::Map::new(),
                NOON_ISH,
                Verdict::Cancel(
                    "not sent: email: no consent.email (consent mode opt_in); sms: no consent.sms (consent mode opt_in)"
                        .into(),
                ),
            ),
            (
                "service needs no consent",
                |_, m, _| {
                    m.class = Class::Service;
                    m.contact.consent = serde_json::Map::new();
                },
                NOON_ISH,
                both(),
            ),
            (
                "quiet hours defer to 09:00 local",
                |_, _, _| {},
                "2026-11-22T23:30:00Z",
                Verdict::Defer {
                    at: t("2026-11-23T01:00:00Z"),
                    reason: "quiet hours (09:00–21:00 Asia/Shanghai); goes at 2026-11-23 09:00 CST"
                        .into(),
                },
            ),
            (
                "a job's own window wins",
                |j, _, _| {
                    j.as_mut().unwrap().send_window = Some(SendWindow {
                        start: chrono::NaiveTime::MIN + chrono::Duration::hours(11),
                        end: None,
                    })
                },
                NOON_ISH,
                Verdict::Defer {
                    at: t("2026-11-23T03:00:00Z"),
                    reason: "quiet hours (11:00–24:00 Asia/Shanghai); goes at 2026-11-23 11:00 CST"
                        .into(),
                },
            ),
            (
                "a cap reached defers until it frees up",
                |_, m, _| m.recent_sends = vec![("m0".into(), t("2026-11-22T04:00:00Z"))],
                NOON_ISH,
                Verdict::Defer {
                    at: t("2026-11-23T04:00:00Z"),
                    reason: "frequency cap 1 per 1d reached; goes at 2026-11-23 12:00 CST".into(),
                },
            ),
            (
                "and into the next window when it frees up at night",
                |_, m, _| m.recent_sends = vec![("m0".into(), t("2026-11-22T14:00:00Z"))],
                NOON_ISH,
                Verdict::Defer {
                    at: t("2026-11-24T01:00:00Z"),
                    reason: "frequency cap 1 per 1d reached; goes at 2026-11-24 09:00 CST".into(),
                },
            ),
            (
                "over_cap: drop",
                |j, m, _| {
                    j.as_mut().unwrap().over_cap = OverCap::Drop;
                    m.recent_sends = vec![("m0".into(), t("2026-11-22T04:00:00Z"))];
                },
                NOON_ISH,
                Verdict::Cancel("dropped: frequency cap 1 per 1d reached".into()),
            ),
            (
                "a send a day ago no longer counts",
                |_, m, _| m.recent_sends = vec![("m0".into(), t("2026-11-22T01:59:59Z"))],
                NOON_ISH,
                both(),
            ),
            (
                "a changed birthday cancels the old greeting",
                |j, m, _| {
                    as_greeting(j);
                    m.due_at = t("2027-02-03T01:00:00Z");
                    // Planned greetings carry their window: the time plus the grace.
                    m.not_after = Some(t("2027-02-04T01:00:00Z"));
                    m.contact.birthday = Some("1990-02-04".into());
                },
                "2027-02-03T01:00:00Z",
                Verdict::Cancel("birthday changed to 02-04; planned for the new day instead".into()),
            ),
            (
                "a greeting sent again by hand goes, days past its day",
                |j, m, _| {
                    as_greeting(j);
                    // A retry sets due_at to now and clears the window.
                    m.dedupe_key = "c-1:2027".into();
                    m.due_at = t("2027-02-09T03:00:00Z");
                    m.not_after = None;
                    m.contact.birthday = Some("1990-02-03".into());
                },
                "2027-02-09T03:00:00Z",
                both(),
            ),
            (
                "another node sending the contact a marketing message: wait a minute",
                |_, m, _| m.sending_elsewhere = vec![("m0".into(), "node-b".into())],
                NOON_ISH,
                Verdict::Defer {
                    at: t("2026-11-23T02:01:00Z"),
                    reason: "another marketing message to the contact is being sent (node node-b); the caps are looked at again at 2026-11-23 10:01 CST"
                        .into(),
                },
            ),
            (
                "a service message does not wait for another node's send",
                |_, m, _| {
                    m.class = Class::Service;
                    m.sending_elsewhere = vec![("m0".into(), "node-b".into())];
                },
                NOON_ISH,
                both(),
            ),
            (
                "without caps, another node's send is no concern",
                |_, m, p| {
                    p.caps.clear();
                    m.sending_elsewhere = vec![("m0".into(), "node-b".into())];
                },
                NOON_ISH,
                both(),
            ),
            (
                "a contact in the holdout is held out once everything else passes",
                |j, _, _| all_held_out(j),
                NOON_ISH,
                Verdict::HoldOut(
                    "held out: in the 100% holdout of review-request; nothing is sent".into(),
                ),
            ),
            (
                "a held-out contact who unsubscribed is cancelled like a messaged one",
                |j, m, _| {
                    all_held_out(j);
                    m.suppressed = vec![
                        ("email".into(), "unsubscribed".into()),
                        ("sms".into(), "replied STOP".into()),
                    ];
                },
                NOON_ISH,
                Verdict::Cancel(
                    "not sent: email: li@example.com is suppressed (unsubscribed); sms: +8613800138000 is suppressed (replied STOP)"
                        .into(),
                ),
            ),
            (
                "a held-out contact waits out quiet hours like a messaged one",
                |j, _, _| all_held_out(j),
                "2026-11-22T23:30:00Z",
                Verdict::Defer {
                    at: t("2026-11-23T01:00:00Z"),
                    reason: "quiet hours (09:00–21:00 Asia/Shanghai); goes at 2026-11-23 09:00 CST"
                        .into(),
                },
            ),
            (
                "a reminder is never held out (it follows a send)",
                |j, m, _| {
                    all_held_out(j);
                    m.step = 1;
                },
                NOON_ISH,
                both(),
            ),
            (
                "a first message tried before stays in the messaged group",
                |j, m, _| {
                    all_held_out(j);
                    m.attempts = 1;
                    m.tries = 1;
                },
                NOON_ISH,
                both(),
            ),
            (
                "a callback task in the holdout is held out",
                |j, m, _| {
                    all_held_out(j);
                    m.channel_plan = Some("webhook".into());
                },
                NOON_ISH,
                Verdict::HoldOut(
                    "held out: in the 100% holdout of review-request; nothing is sent".into(),
                ),
            ),
        ];
        for (name, setup, now, want) in cases {
            assert_eq!(decide_with(setup, now, &[]), want, "{name}");
        }
    }

    #[test]
    fn this_runs_own_sends_count_toward_caps() {
        let in_run = [("m9".to_string(), t("2026-11-23T01:00:00Z"))];
        assert!(matches!(
            decide_with(|_, _, _| {}, NOON_ISH, &in_run),
            Verdict::Defer { .. }
        ));
        // The same send in the claim's history and in this run counts once.
        let v = decide_with(
            |_, m, p| {
                p.caps[0].max = 2;
                m.recent_sends = vec![("m9".into(), t("2026-11-23T01:00:00Z"))];
            },
            NOON_ISH,
            &in_run,
        );
        assert_eq!(v, both());
    }

    #[test]
    fn a_removed_job_is_held_when_configured() {
        let (j, m, p) = (None, claimed(), policy());
        let v = decide(&Gate {
            job: j,
            m: &m,
            policy: &p,
            on_job_removed: OnJobRemoved::Hold,
            zone: chrono_tz::UTC,
            now: t(NOON_ISH),
            in_run: &[],
            braked: None,
            recheck: chrono::Duration::minutes(15),
        });
        assert_eq!(
            v,
            Verdict::Defer {
                at: t("2026-11-23T03:00:00Z"),
                reason: "job `review-request` is not defined; held (dispatch.on_job_removed: hold)"
                    .into()
            }
        );
    }
}
