//! Jobs: the campaigns marketing writes in `jobs/*.yaml`.
//!
//! `spec` holds the raw YAML shapes, `compile` turns them into [`Job`]s and reports every
//! problem with its place. Like ripgrep's low-level and high-level arguments, only compiled
//! jobs leave this module.

mod compile;
mod condition;
mod job;
mod outcome;
pub mod retention;
mod sms;
mod spec;
mod trigger;

pub use job::{
    Audience, Bound, Check, Condition, DEFAULT_ANSWER_WINDOW, DEFAULT_GOAL_WINDOW, DateField,
    Experiment, Goal, Job, Op, Scale, SmsSettings, Step, StopWhen, Survey, Trigger, Variant,
};
pub use spec::{Class, Missed, OverCap};

use crate::diag::{Diagnostic, Diagnostics, display_path};
use crate::templates::TemplateSet;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Event types every after-sales team has; a `stop_when` naming something else is warned
/// about (it may be a typo that would never stop anything).
pub const KNOWN_EVENTS: &[&str] = &[
    "order.placed",
    "order.paid",
    "order.shipped",
    "order.delivered",
    "order.cancelled",
    "order.returned",
    "review.submitted",
    "complaint.opened",
    "complaint.resolved",
    "rental.started",
    "rental.completed",
    "service.completed",
    "survey.answered",
    "contact.updated",
];

/// The loaded, checked jobs.
#[derive(Debug, Default, Clone)]
pub struct JobSet {
    jobs: Vec<Arc<Job>>,
    by_id: HashMap<String, usize>,
}

impl JobSet {
    pub fn get(&self, id: &str) -> Option<&Arc<Job>> {
        self.by_id.get(id).map(|i| &self.jobs[*i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Job>> {
        self.jobs.iter()
    }

    pub fn count(&self) -> usize {
        self.jobs.len()
    }

    /// Enabled jobs started by events of type `kind`.
    pub fn triggered_by<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Arc<Job>> + 'a {
        self.jobs
            .iter()
            .filter(move |j| j.enabled && j.trigger.event() == Some(kind))
    }

    /// Jobs whose pending messages an event of type `kind` stops.
    pub fn stopped_by<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Arc<Job>> + 'a {
        self.jobs
            .iter()
            .filter(move |j| j.stop_when.iter().any(|s| s.event == kind))
    }

    /// Enabled jobs with an anniversary trigger.
    pub fn anniversaries(&self) -> impl Iterator<Item = &Arc<Job>> {
        self.jobs
            .iter()
            .filter(|j| j.enabled && matches!(j.trigger, Trigger::Anniversary { .. }))
    }

    /// Enabled jobs with a cron trigger.
    pub fn recurring(&self) -> impl Iterator<Item = &Arc<Job>> {
        self.jobs
            .iter()
            .filter(|j| j.enabled && matches!(j.trigger, Trigger::Cron { .. }))
    }

    /// Every event type some job's `stop_when` names.
    pub fn stop_types(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .jobs
            .iter()
            .flat_map(|j| j.stop_when.iter().map(|s| s.event.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn from_jobs(jobs: Vec<Job>) -> JobSet {
        let mut set = JobSet::default();
        for j in jobs {
            set.by_id.insert(j.id.clone(), set.jobs.len());
            set.jobs.push(Arc::new(j));
        }
        set
    }
}

/// Load and check every `*.yaml` / `*.yml` in `dir`. Jobs with errors are left out of the set;
/// the caller decides whether any error is fatal (`validate` and `run` say it is). `sms` is
/// the config's SMS section: jobs listing `sms` are checked against its gateways.
pub fn load(
    dir: &Path,
    templates: &TemplateSet,
    sms: Option<&crate::channels::sms::SmsConfig>,
) -> (JobSet, Diagnostics) {
    let mut diags = Diagnostics::default();
    let files = match job_files(dir) {
        Ok(f) => f,
        Err(e) => {
            diags.push(
                Diagnostic::error(dir, None, format!("cannot read the jobs folder: {e}"))
                    .with_hint("set jobs_dir in the config"),
            );
            return (JobSet::default(), diags);
        }
    };
    if files.is_empty() {
        diags.push(Diagnostic::warning(
            dir,
            None,
            "no job files (*.yaml) here; nothing will be planned",
        ));
    }
    let mut compiled: Vec<Job> = Vec::new();
    let mut raws = Vec::new();
    for path in files {
        let text = match crate::yaml::read_file(&path) {
            Ok(t) => t,
            Err(crate::yaml::ReadError::Io(e)) => {
                diags.push(Diagnostic::error(&path, None, format!("cannot read: {e}")));
                continue;
            }
            Err(crate::yaml::ReadError::Invalid(d)) => {
                diags.push(d);
                continue;
            }
        };
        let (docs, errs) = crate::yaml::parse_documents::<spec::RawJob>(&path, &text);
        // A file without a job is a mistake, never a way to remove jobs: an editor that
        // truncates a file mid-save (or a botched deploy) must not read as "job removed".
        if docs.is_empty() && errs.is_empty() {
            diags.push(
                Diagnostic::error(
                    &path,
                    Some(crate::diag::Location { line: 1, column: 1 }),
                    "this file holds no job (it is empty, or only comments)",
                )
                .with_hint("write a job here (id, trigger, template), or delete the file to remove its jobs"),
            );
        }
        diags.items.extend(errs);
        for doc in docs {
            raws.push((path.clone(), doc));
        }
    }
    let mut known_events: Vec<String> = KNOWN_EVENTS.iter().map(|s| s.to_string()).collect();
    known_events.extend(
        raws.iter()
            .filter_map(|(_, d)| d.value.trigger.event.clone()),
    );
    let job_ids: Vec<String> = raws.iter().map(|(_, d)| d.value.id.clone()).collect();
    let env = spec::CompileEnv {
        templates,
        known_events: &known_events,
        job_ids: &job_ids,
        sms,
    };
    let mut seen: HashMap<String, (PathBuf, Option<crate::diag::Location>)> = HashMap::new();
    for (path, doc) in raws {
        let id_loc = doc.spans.locate("id");
        let id = doc.value.id.clone();
        let (job, job_diags) = compile::compile(&path, doc, &env);
        diags.extend(job_diags);
        if let Some((first_path, first_loc)) = seen.get(&id) {
            let at = match first_loc {
                Some(l) => format!("{}:{}:{}", display_path(first_path), l.line, l.column),
                None => display_path(first_path),
            };
            diags.push(
                Diagnostic::error(
                    &path,
                    id_loc,
                    format!("duplicate job id `{id}`, first defined at {at}"),
                )
                .with_hint("job ids must be unique; rename one"),
            );
            continue;
        }
        seen.insert(id, (path.clone(), id_loc));
        if let Some(job) = job {
            compiled.push(job);
        }
    }
    (JobSet::from_jobs(compiled), diags)
}

fn job_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}
