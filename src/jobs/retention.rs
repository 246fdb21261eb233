//! Whether `retention:` keeps what the jobs look back at.
//!
//! The purge removes records past their retention, and several rules read old records: a
//! frequency cap counts last week's sends, `exclude_if_sent` last quarter's, an anniversary
//! job's one-greeting-a-year holds by the year's message, `had_event` reads the events of
//! its window, and `stop_when` looks for stop events over the whole life of a job's
//! messages. A retention shorter than such a window would quietly change what is sent, so
//! it is an error at the retention key, naming the job and its key.

use super::{JobSet, Trigger};
use crate::diag::{Diagnostic, Diagnostics};
use crate::duration;
use crate::policy::PolicyConfig;
use crate::store::{Kept, Retention};
use std::path::Path;
use std::time::Duration;

/// A year that may be a leap year, and the day a zone's offset can move a local date.
const YEAR_AND_A_DAY: Duration = Duration::from_secs(367 * 86_400);

/// One window that needs records of a kind kept at least this long.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// `job `id`` or `policy`.
    pub owner: String,
    /// The key that sets the window, in the owner's file.
    pub key: String,
    pub kept: Kept,
    pub needs: Duration,
}

/// Every window the jobs and the policy look back over.
pub fn windows(jobs: &JobSet, policy: &PolicyConfig) -> Vec<Window> {
    let mut out = Vec::new();
    for (i, cap) in policy.caps.iter().enumerate() {
        out.push(Window {
            owner: "policy".into(),
            key: format!("policy.caps[{i}].per"),
            kept: Kept::Messages,
            needs: cap.per,
        });
    }
    for job in jobs.iter() {
        let mut add = |key: &str, kept: Kept, needs: Duration| {
            out.push(Window {
                owner: format!("job `{}`", job.id),
                key: key.into(),
                kept,
                needs,
            })
        };
        if let Some((_, within)) = &job.audience.had_event {
            add("audience.had_event.within", Kept::Events, *within);
        }
        if let Some((_, within)) = &job.audience.exclude_if_sent {
            add("audience.exclude_if_sent.within", Kept::Messages, *within);
        }
        match &job.trigger {
            Trigger::Anniversary { .. } => add(
                "trigger.anniversary (one greeting a year)",
                Kept::Messages,
                YEAR_AND_A_DAY + policy.anniversary_grace,
            ),
            Trigger::Event { delay, .. } => {
                // From the trigger to the job's last message: the delay and every reminder.
                let span = job
                    .steps
                    .iter()
                    .skip(1)
                    .fold(*delay, |acc, s| acc.saturating_add(s.after));
                // `report conversions` compares the trigger's data with a goal event's
                // (order_id aside, a column of its own) up to the goal window after the last
                // message: emptied by the content purge before, nothing converts.
                if job
                    .goal
                    .events
                    .iter()
                    .any(|g| g.match_fields.iter().any(|f| f != "order_id"))
                {
                    add(
                        "goal.match (compares event data, over the messages and goal_window)",
                        Kept::Content,
                        span.saturating_add(job.goal.window),
                    );
                }
                if !job.stop_when.is_empty() {
                    // A stop event must still be stored when the job's last message is
                    // checked before sending.
                    let key = if job.steps.len() > 1 {
                        "stop_when (over trigger.delay and the reminders)"
                    } else {
                        "stop_when (over trigger.delay)"
                    };
                    add(key, Kept::Events, span);
                    if job.stop_when.iter().any(|s| !s.match_fields.is_empty()) {
                        add("stop_when.match (compares event data)", Kept::Content, span);
                    }
                }
            }
            Trigger::Cron { .. } => {}
        }
        if let Some(survey) = &job.survey {
            // An answer is taken this long after its message was sent: the message (the
            // token's row) must still be there.
            add(
                "survey.window (answers taken)",
                Kept::Messages,
                survey.window,
            );
        }
    }
    out
}

/// An error at `retention.<kind>` of the config for each window longer than its kind is
/// kept.
pub fn check(
    jobs: &JobSet,
    retention: &Retention,
    policy: &PolicyConfig,
    config: &Path,
) -> Diagnostics {
    let mut d = Diagnostics::default();
    for w in windows(jobs, policy) {
        let Some(kept) = retention.of(w.kept) else {
            continue;
        };
        if kept >= w.needs {
            continue;
        }
        let key = w.kept.key();
        let (have, needs) = (days(kept), days(w.needs));
        let set = if retention.written_at(w.kept).is_some() {
            ""
        } else {
            " (the default)"
        };
        d.push(
            Diagnostic::error(
                config,
                retention.written_at(w.kept),
                format!(
                    "retention.{key}: {have}{set} is shorter than the {needs} that {} looks back over ({})",
                    w.owner, w.key
                ),
            )
            .with_hint(format!(
                "keep {key} at least {needs} (retention.{key}: {needs}), or shorten that window"
            )),
        );
    }
    d
}

/// Whole days as days (`180d`, not `25w5d`): retention is thought of in days.
fn days(d: Duration) -> String {
    if d.as_secs().is_multiple_of(86_400) {
        format!("{}d", d.as_secs() / 86_400)
    } else {
        duration::format(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{Audience, Job, Step};
    use crate::policy::Cap;

    fn job(id: &str, trigger: Trigger, audience: Audience) -> Job {
        Job {
            id: id.into(),
            description: String::new(),
            enabled: true,
            trigger,
            steps: vec![Step {
                template: "t".into(),
                after: Duration::ZERO,
            }],
            channels: vec![crate::model::Channel::Email],
            webhook: false,
            class: crate::jobs::Class::Marketing,
            dedupe: None,
            stop_when: Vec::new(),
            goal: Default::default(),
            survey: None,
            experiment: Default::default(),
            expire_after: None,
            send_window: None,
            over_cap: crate::jobs::OverCap::Defer,
            audience,
            sms: Default::default(),
        }
    }

    const DAY: u64 = 86_400;

    #[test]
    fn windows_longer_than_retention_are_errors_naming_job_and_key() {
        let survey = job(
            "nps-survey",
            Trigger::Event {
                event: "rental.completed".into(),
                delay: Duration::ZERO,
            },
            Audience {
                had_event: Some(("rental.completed".into(), Duration::from_secs(30 * DAY))),
                conditions: vec![],
                exclude_if_sent: Some(("nps-survey".into(), Duration::from_secs(180 * DAY))),
            },
        );
        let birthday = job(
            "birthday-greeting",
            Trigger::Anniversary {
                field: crate::jobs::DateField::Birthday,
                at: chrono::NaiveTime::MIN,
                leap_day: None,
            },
            Audience::default(),
        );
        let jobs = JobSet::from_jobs(vec![survey, birthday]);
        let policy = PolicyConfig {
            caps: vec![Cap {
                max: 2,
                per: Duration::from_secs(7 * DAY),
            }],
            ..PolicyConfig::default()
        };
        let path = Path::new("/etc/aftercare/aftercare.yaml");
        // The defaults hold every window here.
        assert!(
            check(&jobs, &Retention::default(), &policy, path)
                .items
                .is_empty()
        );

        let short = Retention::default()
            .with(Kept::Messages, Some(Duration::from_secs(90 * DAY)))
            .with(Kept::Events, Some(Duration::from_secs(20 * DAY)));
        let d = check(&jobs, &short, &policy, path);
        let text: Vec<String> = d.items.iter().map(|i| i.to_string()).collect();
        assert_eq!(text.len(), 3, "{text:#?}");
        let all = text.join("\n");
        for want in [
            "retention.events: 20d (the default) is shorter than the 30d that job `nps-survey` looks back over (audience.had_event.within)",
            "retention.messages: 90d (the default) is shorter than the 180d that job `nps-survey` looks back over (audience.exclude_if_sent.within)",
            "retention.messages: 90d (the default) is shorter than the 368d that job `birthday-greeting` looks back over (trigger.anniversary (one greeting a year))",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
        // `never` keeps everything: nothing to refuse.
        let forever = short.with(Kept::Messages, None).with(Kept::Events, None);
        assert!(check(&jobs, &forever, &policy, path).items.is_empty());
    }

    #[test]
    fn a_goal_matched_on_event_data_keeps_the_content_over_its_window() {
        let mut review = job(
            "review",
            Trigger::Event {
                event: "order.delivered".into(),
                delay: Duration::from_secs(120 * DAY),
            },
            Audience::default(),
        );
        let goal = |fields: &[&str]| crate::jobs::Goal {
            events: vec![crate::jobs::StopWhen {
                event: "review.submitted".into(),
                match_fields: fields.iter().map(|f| f.to_string()).collect(),
            }],
            window: Duration::from_secs(5 * DAY),
        };
        let path = Path::new("aftercare.yaml");
        let policy = PolicyConfig::default();
        // order_id is a column of its own: the content purge does not take it.
        review.goal = goal(&["order_id"]);
        let jobs = JobSet::from_jobs(vec![review.clone()]);
        assert!(
            check(&jobs, &Retention::default(), &policy, path)
                .items
                .is_empty()
        );
        review.goal = goal(&["sku"]);
        let jobs = JobSet::from_jobs(vec![review]);
        let d = check(&jobs, &Retention::default(), &policy, path);
        let text: Vec<String> = d.items.iter().map(|i| i.to_string()).collect();
        assert_eq!(text.len(), 1, "{text:#?}");
        assert!(
            text[0].contains("retention.content: 90d (the default) is shorter than the 125d that job `review` looks back over (goal.match"),
            "{text:#?}"
        );
    }
}
