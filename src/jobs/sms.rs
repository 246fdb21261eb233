//! A job's `sms:` keys, checked against the config's gateways and the job's templates:
//! routes, provider template codes, segment limits, and the opt-out words a marketing SMS
//! must carry.

use super::job::*;
use super::spec::Class;
use super::spec::{CompileEnv, RawJobSms};
use crate::channels::sms::segments;
use crate::check::Checker;
use crate::diag::{Diagnostic, did_you_mean};
use std::collections::BTreeMap;

/// Words a marketing SMS shows so the customer knows how to opt out ("回T退订", "Reply STOP").
pub(super) const SMS_OPT_OUT_WORDS: &[&str] = &["退订", "STOP", "UNSUBSCRIBE"];

/// The job's `sms:` keys, checked against the config's gateways and the job's templates.
pub(super) fn sms_settings(
    c: &mut Checker,
    raw: Option<&RawJobSms>,
    uses_sms: bool,
    class: Class,
    templates: &[String],
    env: &CompileEnv,
) -> SmsSettings {
    if !uses_sms {
        if raw.is_some() {
            c.warn(
                "sms",
                "SMS settings, but `channels` does not list sms: they are unused",
                Some("add sms to channels, e.g. channels: [sms, email]".into()),
            );
        }
        return SmsSettings::default();
    }
    // Without gateways, `channels` has said so already.
    let Some(cfg) = env.sms.filter(|s| !s.gateways.is_empty()) else {
        return SmsSettings::default();
    };
    let empty = RawJobSms {
        gateways: None,
        template_codes: BTreeMap::new(),
        max_segments: None,
    };
    let raw = raw.unwrap_or(&empty);
    // The route.
    let route = raw.gateways.clone().unwrap_or_default();
    if raw.gateways.as_ref().is_some_and(Vec::is_empty) {
        c.err(
            "sms.gateways",
            "no gateway",
            Some(format!(
                "name at least one, or leave gateways out for the config's route ({})",
                cfg.route.join(", ")
            )),
        );
    }
    cfg.check_route(c, "sms.gateways", &route);
    for (i, g) in route.iter().enumerate() {
        if route[..i].contains(g) {
            c.err(
                &format!("sms.gateways[{i}]"),
                format!("`{g}` is listed twice"),
                None,
            );
        }
    }
    let effective: Vec<&str> = if route.is_empty() {
        cfg.route.iter().map(String::as_str).collect()
    } else {
        route.iter().map(String::as_str).collect()
    };
    let kind = |g: &str| cfg.gateway(g).map(|g| g.settings.kind());
    // Provider template codes.
    for (tpl, code) in &raw.template_codes {
        let field = format!("sms.template_codes.{tpl}");
        if !templates.iter().any(|t| t == tpl) {
            let hint = did_you_mean(tpl, templates.iter().map(String::as_str))
                .unwrap_or_else(|| format!("this job's templates: {}", templates.join(", ")));
            // At the key: it is the name that is wrong.
            c.err_at_key(
                &field,
                format!("`{tpl}` is not a template of this job"),
                Some(hint),
            );
        }
        if code.trim().is_empty() {
            c.err(
                &field,
                "empty template code",
                Some("the code of the template your provider approved, e.g. SMS_123456789".into()),
            );
        }
    }
    let template_only: Vec<&str> = effective
        .iter()
        .copied()
        .filter(|g| kind(g) == Some("aliyun"))
        .collect();
    if !template_only.is_empty() {
        for tpl in templates
            .iter()
            .filter(|t| !raw.template_codes.contains_key(*t))
        {
            let hint = Some(format!(
                "map it to the code your provider approved: sms: {{template_codes: {{{tpl}: SMS_123456789}}}}"
            ));
            let field = if c.has("sms.template_codes") {
                "sms.template_codes"
            } else {
                "channels"
            };
            if template_only.len() == effective.len() {
                c.err(
                    field,
                    format!(
                        "no template code for `{tpl}`, and {} send(s) approved templates only",
                        template_only.join(", ")
                    ),
                    hint,
                );
            } else {
                c.warn(
                    field,
                    format!(
                        "no template code for `{tpl}`: {} will be passed over for it",
                        template_only.join(", ")
                    ),
                    hint,
                );
            }
        }
    }
    // Length.
    let max_segments = raw.max_segments.map(|m| m as usize);
    if max_segments == Some(0) {
        c.err(
            "sms.max_segments",
            "must be at least 1",
            Some("one segment is 160 GSM-7 characters or 70 UCS-2 (Chinese) ones".into()),
        );
    }
    let sms_files: Vec<&crate::templates::TemplateFile> = templates
        .iter()
        .flat_map(|t| env.templates.files(t))
        .filter(|f| f.kind == "sms")
        .collect();
    if let Some(max) = max_segments.filter(|m| *m > 0) {
        for f in &sms_files {
            let file = crate::diag::display_path(&f.path);
            let fixed = segments(f.static_text.trim());
            if fixed.segments > max {
                c.warn(
                    "sms.max_segments",
                    format!(
                        "{file} is {} before any value is filled in, more than max_segments {max}: its messages will be refused on SMS",
                        fixed
                    ),
                    Some("shorten the text, or raise max_segments".into()),
                );
            } else if f.has_expressions && fixed.encoding == crate::channels::sms::Encoding::Gsm7 {
                // One character outside GSM-7 in a value (a Chinese name, an emoji) makes the
                // whole text UCS-2, 70 characters a segment instead of 160.
                let wide = segments(&format!("{}好", f.static_text.trim()));
                if wide.segments > max {
                    c.warn(
                        "sms.max_segments",
                        format!(
                            "{file} can exceed max_segments {max}: a value outside GSM-7 (a Chinese name, an emoji) makes the text UCS-2, and the fixed text alone is then {} segments",
                            wide.segments
                        ),
                        Some("shorten the text, or raise max_segments".into()),
                    );
                }
            }
        }
    }
    // Marketing SMS say how to opt out (China's rules for marketing SMS, and Twilio's).
    if class == Class::Marketing {
        for f in &sms_files {
            let upper = f.static_text.to_uppercase();
            if !SMS_OPT_OUT_WORDS.iter().any(|w| upper.contains(w))
                && !f.uses_path("unsubscribe.url")
            {
                let d = Diagnostic::warning(
                    &f.path,
                    None,
                    "a marketing SMS that does not say how to opt out",
                )
                .with_hint("end it with e.g. 回T退订 or \"Reply STOP to opt out\": such replies put the number on the suppression list");
                c.push(d);
            }
        }
    }
    SmsSettings {
        route,
        template_codes: raw.template_codes.clone(),
        max_segments: max_segments.filter(|m| *m > 0),
    }
}
