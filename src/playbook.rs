//! The playbook: the loaded jobs and templates, and how to speak to a contact.
//!
//! One generation of what marketing wrote (jobs, templates) with the settings that decide how
//! a message sounds to its reader: the contact's zone and locale (or the defaults), the
//! render context, unsubscribe links. Planning reads it to decide what to send, dispatch to
//! render what it sends, the scheduler for audiences and zones; a reload swaps the whole
//! playbook. It sits below both `plan` and `dispatch`, so a message travels down the house.

use crate::jobs::{Job, JobSet};
use crate::model::{Channel, Contact, Event};
use crate::policy::PolicyConfig;
use crate::templates::{
    self, MessageInfo, RenderedEmail, RenderedSms, SurveyInfo, TemplateRenderError, TemplateSet,
};
use crate::unsubscribe::Unsubscriber;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use handlebars::Context;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The current jobs and templates, and the defaults for speaking to a contact.
#[derive(Clone)]
pub struct Playbook {
    pub jobs: Arc<JobSet>,
    pub templates: Arc<TemplateSet>,
    pub default_timezone: Tz,
    pub default_locale: String,
    /// The config's `dispatch.expire_after`; a job may override it.
    pub expire_after: Option<Duration>,
    pub policy: PolicyConfig,
    pub unsubscribe: Option<Arc<Unsubscriber>>,
    /// Callback tasks go to a webhook; without one they wait open for agents.
    pub webhook_enabled: bool,
    /// Where the API's public side is reached (`api.public_url`): survey links are
    /// `<this>/s/<token>`. `None`: `{{survey.url}}` renders empty (and `validate` warns).
    pub public_url: Option<String>,
}

/// Facts about one message for its render context.
pub struct MessageFacts<'a> {
    pub id: &'a str,
    pub step: i64,
    pub token: Option<&'a str>,
    pub send_at: DateTime<Utc>,
}

impl Playbook {
    pub fn zone_of(&self, c: &Contact) -> Tz {
        c.timezone
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(self.default_timezone)
    }

    pub fn locale_of(&self, c: &Contact) -> String {
        c.locale
            .clone()
            .unwrap_or_else(|| self.default_locale.clone())
    }

    /// The render context for a message of `job` to `contact` (by email).
    pub fn context(
        &self,
        job: &Job,
        contact: &Contact,
        event: Option<&Event>,
        m: &MessageFacts,
    ) -> Context {
        self.context_on(job, contact, event, m, Channel::Email)
    }

    /// The render context for a message going out on `channel`: `unsubscribe.url` is the
    /// link for the address on that channel (an SMS link unsubscribes the phone number).
    pub fn context_on(
        &self,
        job: &Job,
        contact: &Contact,
        event: Option<&Event>,
        m: &MessageFacts,
        channel: Channel,
    ) -> Context {
        // `From`, not `Context::wraps`: that serializes the value into a copy of itself.
        Context::from(self.context_value(job, contact, event, m, channel))
    }

    fn context_value(
        &self,
        job: &Job,
        contact: &Contact,
        event: Option<&Event>,
        m: &MessageFacts,
        channel: Channel,
    ) -> Value {
        let locale = self.locale_of(contact);
        let links = match (&self.unsubscribe, contact.address(channel)) {
            (Some(u), Some(a)) => Some((u.url(channel.as_str(), a), u.mailto(channel.as_str(), a))),
            _ => None,
        };
        let survey = job.survey.map(|s| {
            let (lo, hi) = s.scale.range();
            SurveyInfo {
                url: m.token.and_then(|t| self.survey_url(t)),
                scale: s.scale.as_str(),
                scores: lo..=hi,
            }
        });
        let info = MessageInfo {
            id: m.id,
            step: m.step,
            send_at: m.send_at,
            locale: &locale,
            timezone: self.zone_of(contact),
            token: m.token,
            unsubscribe: links.as_ref().map(|(u, m)| (u.as_str(), m.as_deref())),
            survey,
        };
        templates::context(contact, event, &job.id, &job.description, &info)
    }

    /// The answer page of the message with this token, when the API has a public URL.
    pub fn survey_url(&self, token: &str) -> Option<String> {
        self.public_url
            .as_deref()
            .map(|base| format!("{}/s/{token}", base.trim_end_matches('/')))
    }

    /// The render context of a message as a JSON value (the answer page renders the survey
    /// question with it).
    pub fn context_json(
        &self,
        job: &Job,
        contact: &Contact,
        event: Option<&Event>,
        m: &MessageFacts,
    ) -> Value {
        self.context_value(job, contact, event, m, Channel::Email)
    }

    /// Whether the contact (and event) pass the job's `audience.where` conditions.
    pub fn in_audience(
        &self,
        job: &Job,
        contact: &Contact,
        event: Option<&Event>,
        now: DateTime<Utc>,
    ) -> bool {
        if job.audience.conditions.is_empty() {
            return true;
        }
        let ctx = self.context_value(
            job,
            contact,
            event,
            &MessageFacts {
                id: "",
                step: 0,
                token: None,
                send_at: now,
            },
            Channel::Email,
        );
        job.audience.conditions.iter().all(|c| c.holds(&ctx))
    }

    /// The email a claimed message becomes: its template rendered in the contact's locale
    /// with the context for email. One call, so dispatch need not know how a context is made.
    pub fn render_email(
        &self,
        job: &Job,
        contact: &Contact,
        event: Option<&Event>,
        m: &MessageFacts,
        template: &str,
    ) -> Result<RenderedEmail, TemplateRenderError> {
        let ctx = self.context_on(job, contact, event, m, Channel::Email);
        self.templates
            .render_email(template, &self.locale_of(contact), &ctx)
    }

    /// The SMS a claimed message becomes (text, and the provider template's parameters).
    pub fn render_sms(
        &self,
        job: &Job,
        contact: &Contact,
        event: Option<&Event>,
        m: &MessageFacts,
        template: &str,
    ) -> Result<RenderedSms, TemplateRenderError> {
        let ctx = self.context_on(job, contact, event, m, Channel::Sms);
        self.templates
            .render_sms(template, &self.locale_of(contact), &ctx)
    }
}
