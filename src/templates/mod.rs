//! Message templates: `message_templates/<name>/<kind>[.<locale>].hbs`.
//!
//! Kinds are `email.subject`, `email.txt`, `email.html`, `sms`, `sms.params` and `survey`
//! (the question a survey job's answer page asks). Three
//! handlebars registries: HTML escaping happens only in `email.html`; subjects, plain text and
//! SMS are rendered verbatim (an escaped `&amp;` in a subject line is a bug customers see);
//! `sms.params` is the JSON object of a provider template's parameters (Aliyun's
//! `TemplateParam`), so values are escaped as JSON string content there (a quote in a name
//! cannot break the object). Strict mode makes
//! a missing variable a render error instead of an empty string, and because strict mode
//! does not look inside `{{#if}}` (handlebars-rust #579), [`TemplateSet::check_variables`]
//! walks the template AST and checks every path against what the job can provide.
//!
//! Over 600 lines with its tests (about 240): loading and rendering share the locale chain
//! and the registries; the checker (`vars.rs`) and the context (`context.rs`) live apart.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

mod context;
mod vars;

pub use context::{MessageInfo, SurveyInfo, context};
use context::{OUR_HELPERS, OurHelper};
pub use vars::Scope;
use vars::{BUILTIN_HELPERS, VarUse, Walk, check_uses};

use crate::diag::{Diagnostic, Diagnostics, Location, did_you_mean};
use crate::values::check_locale;
use handlebars::template::{Template, TemplateElement};
use handlebars::{Context, Handlebars, RenderError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The files a template set may hold.
/// (`sms.params` before `sms`: file names are matched by prefix.)
pub const KINDS: &[&str] = &[
    "email.subject",
    "email.txt",
    "email.html",
    "sms.params",
    "sms",
    "survey",
];

#[derive(Debug, Clone)]
pub struct TemplateFile {
    pub path: PathBuf,
    pub kind: &'static str,
    /// As written in the file name (`zh-CN`); `None` for the default file.
    pub locale: Option<String>,
    key: String,
    uses: Vec<VarUse>,
    helpers: Vec<(String, Location)>,
    /// The text outside any `{{...}}` at the top level (not inside blocks): what every
    /// rendering contains at least. SMS length checks start from it.
    pub static_text: String,
    /// Whether anything is substituted or conditional (the rendered text may be longer).
    pub has_expressions: bool,
}

/// One file of the set rendered, its failure naming the file.
fn render_file(
    reg: &Handlebars,
    f: &TemplateFile,
    ctx: &Context,
) -> Result<String, TemplateRenderError> {
    reg.render_with_context(&f.key, ctx)
        .map_err(|e| TemplateRenderError::Render {
            file: crate::diag::display_path(&f.path),
            source: Box::new(e),
        })
}

impl TemplateFile {
    /// Whether this file reads `path` (e.g. `unsubscribe.url`).
    pub fn uses_path(&self, path: &str) -> bool {
        self.uses.iter().any(|u| u.path == path)
    }

    /// Every variable path this file reads (`event.data.order_id`): the console fills them
    /// with placeholders to preview a template without a real customer's data.
    pub fn used_paths(&self) -> impl Iterator<Item = &str> {
        self.uses.iter().map(|u| u.path.as_str())
    }
}

/// All templates under `templates_dir`, compiled.
pub struct TemplateSet {
    pub dir: PathBuf,
    html: Handlebars<'static>,
    text: Handlebars<'static>,
    /// `sms.params`: values escaped as JSON string content.
    json: Handlebars<'static>,
    /// name → kind → lowercase locale ("" for the default file) → file.
    sets: BTreeMap<String, BTreeMap<&'static str, BTreeMap<String, TemplateFile>>>,
    default_locale: String,
    /// `default_locale` lowercased, as the files' locales are kept.
    default_tag: String,
}

/// A rendered SMS, ready for the SMS channel.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedSms {
    /// `sms[.<locale>].hbs`, trimmed (a file's final newline would cost a character).
    pub text: String,
    /// `sms.params[.<locale>].hbs`: the provider template's parameters, a JSON object.
    pub params: Option<String>,
    /// The locale of the text file actually used (after fallback).
    pub locale: String,
}

/// A rendered email, ready for a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    /// The locale of the files actually used (after fallback).
    pub locale: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateRenderError {
    #[error("template `{name}` has no {kind} file for locale {locale} (nor a fallback)")]
    Missing {
        name: String,
        kind: String,
        locale: String,
    },
    #[error("{file}: {source}")]
    Render {
        file: String,
        source: Box<RenderError>,
    },
}

/// How a registry escapes substituted values.
#[derive(Clone, Copy)]
enum Escape {
    Html,
    None,
    JsonString,
}

/// A value as the content of a JSON string (quotes, backslashes and control characters).
fn json_string_content(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_string()
}

/// HTML escaping that also disarms script URLs: a value that a browser would read as a
/// `javascript:`, `vbscript:` or `data:` URL becomes `unsafe:…` (as Angular does), so a link
/// built from event data (`<a href="{{event.data.review_url}}">`) cannot run anything.
/// Why here and not in a helper: the escape applies to every `{{value}}` of an HTML
/// template, so a template author cannot forget it; `{{{ }}}` opts out of all escaping, as
/// handlebars documents.
fn html_escape(value: &str) -> String {
    if is_script_url(value) {
        handlebars::html_escape(&format!("unsafe:{value}"))
    } else {
        handlebars::html_escape(value)
    }
}

/// Whether a URL parser would find a scripting scheme at the start of `value`: it strips
/// leading spaces and control characters and ignores tabs and line breaks anywhere (WHATWG
/// URL), and schemes are case-insensitive; so `  JaVa\tScRiPt:alert(1)` is one. Runs for
/// every value of an HTML template: the scheme is read into a buffer, not a string.
fn is_script_url(value: &str) -> bool {
    let mut scheme = [0u8; 16];
    let chars = value
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'));
    for (len, c) in chars.enumerate() {
        if c == ':' {
            return matches!(
                scheme.get(..len),
                Some(b"javascript" | b"vbscript" | b"data")
            );
        }
        // Past 16 characters, or a character no scheme has: not one of the three.
        match scheme.get_mut(len) {
            Some(b) if c.is_ascii() => *b = (c as u8).to_ascii_lowercase(),
            _ => return false,
        }
    }
    false
}

fn registry(escape: Escape) -> Handlebars<'static> {
    let mut h = Handlebars::new();
    h.set_strict_mode(true);
    match escape {
        Escape::Html => h.register_escape_fn(html_escape),
        Escape::None => h.register_escape_fn(handlebars::no_escape),
        Escape::JsonString => h.register_escape_fn(json_string_content),
    }
    h.register_helper("date", Box::new(OurHelper::Date));
    h.register_helper("datetime", Box::new(OurHelper::DateTime));
    h.register_helper("default", Box::new(OurHelper::Default));
    h
}

impl TemplateSet {
    /// Load every template set below `dir`. Problems come back as diagnostics; templates that
    /// did compile are usable either way.
    pub fn load(dir: &Path, default_locale: &str) -> (TemplateSet, Diagnostics) {
        let mut set = TemplateSet {
            dir: dir.to_path_buf(),
            html: registry(Escape::Html),
            text: registry(Escape::None),
            json: registry(Escape::JsonString),
            sets: BTreeMap::new(),
            default_locale: default_locale.to_string(),
            default_tag: default_locale.to_lowercase(),
        };
        let mut diags = Diagnostics::default();
        let entries = match read_dir_sorted(dir) {
            Ok(e) => e,
            Err(e) => {
                diags.push(
                    Diagnostic::error(dir, None, format!("cannot read the templates folder: {e}"))
                        .with_hint("set templates_dir in the config to the folder that holds message_templates"),
                );
                return (set, diags);
            }
        };
        for sub in entries.into_iter().filter(|p| p.is_dir()) {
            let name = sub
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if !valid_name(&name) {
                diags.push(Diagnostic::warning(
                    &sub,
                    None,
                    format!("`{name}` is not a template name (letters, digits, _ and -); skipped"),
                ));
                continue;
            }
            set.load_one(&name, &sub, &mut diags);
        }
        (set, diags)
    }

    fn load_one(&mut self, name: &str, dir: &Path, diags: &mut Diagnostics) {
        let files = match read_dir_sorted(dir) {
            Ok(f) => f,
            Err(e) => {
                diags.push(Diagnostic::error(dir, None, format!("cannot read: {e}")));
                return;
            }
        };
        let mut kinds: BTreeMap<&'static str, BTreeMap<String, TemplateFile>> = BTreeMap::new();
        for path in files {
            let file_name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let Some(stem) = file_name.strip_suffix(".hbs") else {
                continue;
            };
            let parsed = KINDS.iter().find_map(|k| {
                if stem == *k {
                    Some((*k, None))
                } else {
                    stem.strip_prefix(k)
                        .and_then(|r| r.strip_prefix('.'))
                        .map(|loc| (*k, Some(loc.to_string())))
                }
            });
            let Some((kind, locale)) = parsed else {
                let guess = stem.split('.').take(2).collect::<Vec<_>>().join(".");
                diags.push(
                    Diagnostic::warning(&path, None, format!("`{file_name}` is not a template file this program reads; ignored"))
                        .with_hint(did_you_mean(&guess, KINDS.iter().copied()).unwrap_or_else(|| {
                            "name files <kind>[.<locale>].hbs with kind email.subject, email.txt, email.html, sms, sms.params or survey".into()
                        })),
                );
                continue;
            };
            if let Some(l) = &locale
                && let Err(e) = check_locale(l)
            {
                diags.push(
                    Diagnostic::error(&path, None, format!("{e} in the file name"))
                        .with_hint("e.g. email.subject.zh-CN.hbs"),
                );
                continue;
            }
            // Bounded, and a byte that is not UTF-8 said at its line and column, as for YAML.
            let source = match crate::yaml::read_file(&path) {
                Ok(s) => s,
                Err(crate::yaml::ReadError::Io(e)) => {
                    diags.push(Diagnostic::error(&path, None, format!("cannot read: {e}")));
                    continue;
                }
                Err(crate::yaml::ReadError::Invalid(d)) => {
                    diags.push(d);
                    continue;
                }
            };
            let tpl = match Template::compile(&source) {
                Ok(t) => t,
                Err(e) => {
                    let location = e.pos().map(|(line, column)| Location { line, column });
                    diags.push(syntax_diag(&path, location, &e.reason().to_string()));
                    continue;
                }
            };
            let mut walk = Walk::default();
            walk.template(&tpl, false);
            for (msg, loc) in &walk.problems {
                diags.push(Diagnostic::error(&path, Some(*loc), msg.clone()));
            }
            let key = format!("{name}/{file_name}");
            let static_text: String = tpl
                .elements
                .iter()
                .filter_map(|e| match e {
                    TemplateElement::RawString(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            let has_expressions = tpl.elements.iter().any(|e| {
                !matches!(
                    e,
                    TemplateElement::RawString(_) | TemplateElement::Comment(_)
                )
            });
            let registry = match kind {
                // The survey question goes into the answer page's HTML.
                "email.html" | "survey" => &mut self.html,
                "sms.params" => &mut self.json,
                _ => &mut self.text,
            };
            registry.register_template(&key, tpl);
            let file = TemplateFile {
                path,
                kind,
                locale: locale.clone(),
                key,
                uses: walk.uses,
                helpers: walk.helpers,
                static_text,
                has_expressions,
            };
            kinds
                .entry(kind)
                .or_default()
                .insert(locale.unwrap_or_default().to_lowercase(), file);
        }
        self.sets.insert(name.to_string(), kinds);
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    pub fn has(&self, name: &str) -> bool {
        self.sets.contains_key(name)
    }

    /// Every file of template `name`.
    pub fn files(&self, name: &str) -> impl Iterator<Item = &TemplateFile> {
        self.sets
            .get(name)
            .into_iter()
            .flat_map(|k| k.values())
            .flat_map(|l| l.values())
    }

    /// Problems a job would hit using template `name` on `channel` with `scope`:
    /// missing files, variables it cannot provide, unknown helpers. `at` names the job field
    /// that refers to the template, for the message.
    pub fn check_for_job(
        &self,
        name: &str,
        channel: &str,
        scope: &Scope,
        used_by: &str,
    ) -> Diagnostics {
        let mut diags = Diagnostics::default();
        let Some(kinds) = self.sets.get(name) else {
            return diags;
        };
        let needed: &[&str] = match channel {
            "email" => &["email.subject"],
            "sms" => &["sms"],
            _ => &[],
        };
        let default_chain: Vec<&str> = self.fallback("").collect();
        for kind in needed {
            let ok = kinds
                .get(kind)
                .is_some_and(|l| default_chain.iter().any(|c| l.contains_key(*c)));
            if !ok {
                diags.push(
                    Diagnostic::error(
                        self.dir.join(name),
                        None,
                        format!(
                            "template `{name}` has no {kind} file for the default locale {}",
                            self.default_locale
                        ),
                    )
                    .with_hint(format!(
                        "add {name}/{kind}.hbs or {name}/{kind}.{}.hbs (needed by {used_by})",
                        self.default_locale
                    )),
                );
            }
        }
        if channel == "email" {
            let has_body = ["email.txt", "email.html"].iter().any(|k| {
                kinds
                    .get(k)
                    .is_some_and(|l| default_chain.iter().any(|c| l.contains_key(*c)))
            });
            if !has_body {
                diags.push(
                    Diagnostic::error(self.dir.join(name), None, format!("template `{name}` has no email body for the default locale {}", self.default_locale))
                        .with_hint(format!("add {name}/email.txt.hbs and/or {name}/email.html.hbs (needed by {used_by})")),
                );
            }
            // A locale with a subject but no body of its own would mix languages.
            if let Some(subjects) = kinds.get("email.subject") {
                for loc in subjects.keys().filter(|l| !l.is_empty()) {
                    let body = ["email.txt", "email.html"]
                        .iter()
                        .any(|k| kinds.get(k).is_some_and(|m| m.contains_key(loc)));
                    if !body {
                        let f = &subjects[loc];
                        diags.push(Diagnostic::warning(&f.path, None, format!(
                            "locale {} has a subject but no email.txt/email.html of its own: readers would get a body in another language",
                            f.locale.as_deref().unwrap_or_default()
                        )));
                    }
                }
            }
        }
        let relevant = |k: &str| match channel {
            "email" => k.starts_with("email."),
            "sms" => k.starts_with("sms"),
            "survey" => k == "survey",
            _ => true,
        };
        for (kind, locales) in kinds.iter().filter(|(k, _)| relevant(k)) {
            let _ = kind;
            for file in locales.values() {
                for (msg, loc, hint) in check_uses(&file.uses, scope) {
                    diags.push(Diagnostic::error(&file.path, Some(loc), msg).with_hint_opt(hint));
                }
                for (helper, loc) in &file.helpers {
                    if !OUR_HELPERS.contains(&helper.as_str())
                        && !BUILTIN_HELPERS.contains(&helper.as_str())
                    {
                        let all = OUR_HELPERS.iter().chain(BUILTIN_HELPERS).copied();
                        diags.push(
                            Diagnostic::error(
                                &file.path,
                                Some(*loc),
                                format!("unknown helper `{helper}`"),
                            )
                            .with_hint(
                                did_you_mean(helper, all).unwrap_or_else(|| {
                                    format!("helpers: {}", OUR_HELPERS.join(", "))
                                }),
                            ),
                        );
                    }
                }
            }
        }
        diags
    }

    /// Whether any file of template `name` whose kind starts with `kind_prefix` reads `path`.
    pub fn uses(&self, name: &str, kind_prefix: &str, path: &str) -> bool {
        self.files(name)
            .filter(|f| f.kind.starts_with(kind_prefix))
            .any(|f| f.uses.iter().any(|u| u.path == path))
    }

    /// Check an inline template (a job's `dedupe`) and return (message, location in the
    /// inline text, hint) for each problem.
    pub fn check_inline(
        source: &str,
        scope: &Scope,
    ) -> Result<Vec<(String, Location, Option<String>)>, String> {
        let tpl = Template::compile(source).map_err(|e| e.reason().to_string())?;
        let mut walk = Walk::default();
        walk.template(&tpl, false);
        let mut out: Vec<_> = walk
            .problems
            .into_iter()
            .map(|(m, l)| (m, l, None))
            .collect();
        out.extend(check_uses(&walk.uses, scope));
        Ok(out)
    }

    /// The file of `kind` for `tag` (a locale lowercased), by [`TemplateSet::fallback`].
    fn resolve(&self, name: &str, kind: &str, tag: &str) -> Option<&TemplateFile> {
        let locales = self.sets.get(name)?.get(kind)?;
        self.fallback(tag).find_map(|l| locales.get(l))
    }

    /// The locales tried for `tag` (lowercased), most specific first: README's order, the
    /// contact's locale and its language, the default locale and its language, then the file
    /// without a locale (`""`). Asked once a file: nothing is allocated.
    fn fallback<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a str> {
        tags(tag)
            .chain(tags(&self.default_tag))
            .chain(std::iter::once(""))
    }

    /// Render the email of template `name` for `locale`, falling back zh-CN → zh → the
    /// default locale → the file without a locale.
    pub fn render_email(
        &self,
        name: &str,
        locale: &str,
        ctx: &Context,
    ) -> Result<RenderedEmail, TemplateRenderError> {
        let tag = locale.to_lowercase();
        let subject_file = self.resolve(name, "email.subject", &tag).ok_or_else(|| {
            TemplateRenderError::Missing {
                name: name.into(),
                kind: "email.subject".into(),
                locale: locale.into(),
            }
        })?;
        let subject = render_file(&self.text, subject_file, ctx)?;
        let text = self
            .resolve(name, "email.txt", &tag)
            .map(|f| render_file(&self.text, f, ctx))
            .transpose()?;
        let html = self
            .resolve(name, "email.html", &tag)
            .map(|f| render_file(&self.html, f, ctx))
            .transpose()?;
        if text.is_none() && html.is_none() {
            return Err(TemplateRenderError::Missing {
                name: name.into(),
                kind: "email.txt or email.html".into(),
                locale: locale.into(),
            });
        }
        Ok(RenderedEmail {
            // A subject is one line: a template's trailing newline must not fold the header.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text,
            html,
            locale: subject_file
                .locale
                .clone()
                .unwrap_or_else(|| self.default_locale.clone()),
        })
    }

    /// The survey question of template `name` for `locale` (`survey[.<locale>].hbs`, same
    /// fallback as email), HTML-escaped; `None` when the set has no such file (the answer
    /// page then asks its built-in question). Also the locale of the file used.
    pub fn render_survey(
        &self,
        name: &str,
        locale: &str,
        ctx: &Context,
    ) -> Option<Result<(String, String), TemplateRenderError>> {
        let f = self.resolve(name, "survey", &locale.to_lowercase())?;
        let used = f
            .locale
            .clone()
            .unwrap_or_else(|| self.default_locale.clone());
        Some(render_file(&self.html, f, ctx).map(|text| (text, used)))
    }

    /// Render the SMS of template `name` for `locale` (same fallback as email): the text, and
    /// the provider template's parameters when the set has an `sms.params` file.
    pub fn render_sms(
        &self,
        name: &str,
        locale: &str,
        ctx: &Context,
    ) -> Result<RenderedSms, TemplateRenderError> {
        let tag = locale.to_lowercase();
        let file = self
            .resolve(name, "sms", &tag)
            .ok_or_else(|| TemplateRenderError::Missing {
                name: name.into(),
                kind: "sms".into(),
                locale: locale.into(),
            })?;
        let text = render_file(&self.text, file, ctx)?.trim().to_string();
        let params = self
            .resolve(name, "sms.params", &tag)
            .map(|f| render_file(&self.json, f, ctx))
            .transpose()?;
        Ok(RenderedSms {
            text,
            params,
            locale: file
                .locale
                .clone()
                .unwrap_or_else(|| self.default_locale.clone()),
        })
    }

    /// Render an inline text template (a job's dedupe key) without escaping.
    pub fn render_inline(&self, source: &str, ctx: &Context) -> Result<String, RenderError> {
        self.text.render_template_with_context(source, ctx)
    }
}

/// The useful part of a render error ("Variable \"event.data.order_id\" not found...").
pub fn render_reason(e: &handlebars::RenderError) -> String {
    match e.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(path)) => {
            format!("`{path}` is missing")
        }
        other => other.to_string(),
    }
}

/// Handlebars' grammar error lists every token it could have accepted; keep the first part.
fn syntax_diag(path: &Path, location: Option<Location>, reason: &str) -> Diagnostic {
    let short = reason.split(": expected").next().unwrap_or(reason);
    Diagnostic::error(path, location, format!("template syntax: {short}"))
        .with_hint("check that every {{#block}} has its {{/block}} and every {{ has its }}")
}

/// `zh-cn` → `zh-cn`, `zh`: a lowercased locale and its shorter prefixes, most specific
/// first.
fn tags(tag: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(tag), |t| t.rfind('-').and_then(|i| t.get(..i)))
        .filter(|t| !t.is_empty())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn read_dir_sorted(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::vars::{CONTACT, JOB, MESSAGE};
    use super::*;
    use crate::model::{Contact, Event};
    use chrono::{DateTime, Utc};
    use chrono_tz::Tz;
    use handlebars::template::Template;
    use serde_json::Map;

    fn uses(src: &str) -> Vec<(String, Location)> {
        let tpl = Template::compile(src).unwrap();
        let mut w = Walk::default();
        w.template(&tpl, false);
        w.uses.into_iter().map(|u| (u.path, u.location)).collect()
    }

    #[test]
    fn collects_paths_inside_if_blocks_with_locations() {
        let u = uses(
            "Hi {{contact.name}}\n{{#if contact.nmae}}x{{event.data.order_id}}{{/if}}\n{{date event.occurred_at}}",
        );
        let paths: Vec<&str> = u.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "contact.name",
                "contact.nmae",
                "event.data.order_id",
                "event.occurred_at"
            ]
        );
        assert_eq!(u[0].1, Location { line: 1, column: 4 });
        assert_eq!(u[1].1.line, 2);
    }

    #[test]
    fn each_items_are_not_checked_but_root_paths_are() {
        let u =
            uses("{{#each event.data.items}}{{name}}{{@root.contact.email}}{{../job.id}}{{/each}}");
        let paths: Vec<&str> = u.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["event.data.items", "contact.email", "job.id"]);
    }

    #[test]
    fn scope_check_table() {
        let scope = Scope {
            roots: vec![&CONTACT, &JOB, &MESSAGE],
            missing_root_note: vec![("event", "a birthday job has no event")],
        };
        let cases = [
            ("contact.name", None),
            ("contact.attributes.tier", None),
            ("event.data.order_id", Some("a birthday job has no event")),
            ("contact.nmae", Some("did you mean `name`?")),
            ("contact.name.first", None),
            ("ordr.id", None),
        ];
        for (path, hint) in cases {
            let probs = check_uses(
                &[VarUse {
                    path: path.into(),
                    location: Location { line: 1, column: 1 },
                }],
                &scope,
            );
            match path {
                "contact.name" | "contact.attributes.tier" => {
                    assert!(probs.is_empty(), "{path}: {probs:?}")
                }
                _ => {
                    assert_eq!(probs.len(), 1, "{path}");
                    if let Some(h) = hint {
                        assert_eq!(probs[0].2.as_deref(), Some(h), "{path}");
                    }
                }
            }
        }
    }

    #[test]
    fn locale_tags() {
        assert_eq!(
            tags("zh-hant-tw").collect::<Vec<_>>(),
            ["zh-hant-tw", "zh-hant", "zh"]
        );
        assert_eq!(tags("en").collect::<Vec<_>>(), ["en"]);
        assert_eq!(tags("").count(), 0);
        assert_eq!(tags("-x").collect::<Vec<_>>(), ["-x"]);
    }

    /// README: the contact's locale, its language, the default locale and its language,
    /// then the file without a locale.
    #[test]
    fn the_default_locale_comes_before_the_file_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        std::fs::create_dir(&t).unwrap();
        for (file, text) in [
            ("email.subject.hbs", "any"),
            ("email.subject.en.hbs", "english"),
            ("email.subject.fr.hbs", "français"),
            ("email.txt.hbs", "body"),
        ] {
            std::fs::write(t.join(file), text).unwrap();
        }
        let (set, _) = TemplateSet::load(dir.path(), "en-GB");
        let ctx = Context::wraps(serde_json::json!({})).unwrap();
        let subject = |locale| set.render_email("t", locale, &ctx).unwrap().subject;
        assert_eq!(subject("de-AT"), "english");
        assert_eq!(subject("FR-ca"), "français");
        assert_eq!(subject("en-US"), "english");
        let (set, _) = TemplateSet::load(dir.path(), "ja");
        assert_eq!(set.render_email("t", "de", &ctx).unwrap().subject, "any");
    }

    #[test]
    fn html_escaped_only_in_html_and_dates_in_contact_zone() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        std::fs::create_dir(&t).unwrap();
        std::fs::write(
            t.join("email.subject.hbs"),
            "Re {{event.data.order_id}} & {{contact.name}}\n",
        )
        .unwrap();
        std::fs::write(t.join("email.html.hbs"), "<p>{{contact.name}}</p>").unwrap();
        std::fs::write(
            t.join("email.txt.zh.hbs"),
            "{{date event.occurred_at}} {{datetime event.occurred_at}}",
        )
        .unwrap();
        let (set, diags) = TemplateSet::load(dir.path(), "en");
        assert!(diags.items.is_empty(), "{diags}");
        let contact = Contact {
            id: "c".into(),
            name: Some("A&B <x>".into()),
            ..Contact::default()
        };
        let event = Event {
            id: "e".into(),
            kind: "order.delivered".into(),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-20T23:30:00+00:00").unwrap(),
            contact_id: "c".into(),
            data: serde_json::from_str(r#"{"order_id":"SO-1"}"#).unwrap(),
        };
        let info = MessageInfo {
            id: "m",
            step: 0,
            send_at: Utc::now(),
            locale: "zh-CN",
            timezone: "Asia/Shanghai".parse().unwrap(),
            token: None,
            unsubscribe: None,
            survey: None,
        };
        let ctx = Context::wraps(context(&contact, Some(&event), "j", "", &info)).unwrap();
        let r = set.render_email("t", "zh-CN", &ctx).unwrap();
        assert_eq!(r.subject, "Re SO-1 & A&B <x>");
        assert_eq!(r.html.as_deref(), Some("<p>A&amp;B &lt;x&gt;</p>"));
        assert_eq!(
            r.text.as_deref(),
            Some("2026年11月21日 2026年11月21日 07:30")
        );
    }

    #[test]
    fn a_date_format_that_cannot_be_written_is_a_render_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        std::fs::create_dir(&t).unwrap();
        std::fs::write(t.join("email.subject.hbs"), "{{datetime contact.birthday}}").unwrap();
        std::fs::write(
            t.join("email.txt.hbs"),
            "{{date event.data.when event.data.fmt}}",
        )
        .unwrap();
        let (set, diags) = TemplateSet::load(dir.path(), "en");
        assert!(diags.items.is_empty(), "{diags}");
        let contact = Contact {
            id: "c".into(),
            birthday: Some("1990-02-03".into()),
            ..Contact::default()
        };
        let event = Event {
            id: "e".into(),
            kind: "a.b".into(),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-20T23:30:00+00:00").unwrap(),
            contact_id: "c".into(),
            data: serde_json::from_str(r#"{"when": "2026-11-20T23:30:00Z", "fmt": "%Q"}"#).unwrap(),
        };
        let info = MessageInfo {
            id: "m",
            step: 0,
            send_at: Utc::now(),
            locale: "en",
            timezone: Tz::UTC,
            token: None,
            unsubscribe: None,
            survey: None,
        };
        let ctx = Context::wraps(context(&contact, Some(&event), "j", "", &info)).unwrap();
        let err = set.render_email("t", "en", &ctx).unwrap_err().to_string();
        assert!(
            err.contains("datetime: the value cannot be written"),
            "{err}"
        );
        // The same value with a format it can be written in renders.
        std::fs::write(t.join("email.subject.hbs"), "{{date contact.birthday}}").unwrap();
        std::fs::write(t.join("email.txt.hbs"), "x").unwrap();
        let (set, _) = TemplateSet::load(dir.path(), "en");
        assert_eq!(
            set.render_email("t", "en", &ctx).unwrap().subject,
            "February 3, 1990"
        );
    }

    #[test]
    fn script_urls_are_disarmed_in_html_only() {
        for bad in [
            "javascript:alert(1)",
            "  JavaScript:alert(1)",
            "java\tscript:alert(1)",
            "\u{1}javascript:x",
            "VBScript:msgbox",
            "data:text/html;base64,PHNjcmlwdD4=",
        ] {
            assert!(is_script_url(bad), "{bad:?}");
            assert!(html_escape(bad).starts_with("unsafe:"), "{bad:?}");
        }
        for fine in [
            "https://shop.example.com/r?o=1",
            "mailto:care@example.com",
            "SO-1001",
            "java script",
            "a javascript: b",
        ] {
            assert!(!is_script_url(fine), "{fine:?}");
        }
        assert_eq!(html_escape("<b>&"), "&lt;b&gt;&amp;");
    }

    /// `is_script_url` as it was written first (collecting the scheme into a string), as
    /// the reference for the one that reads it into a buffer.
    fn script_url_by_string(value: &str) -> bool {
        let scheme: String = value
            .trim_start_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .take_while(|c| *c != ':')
            .take(16)
            .collect::<String>()
            .to_ascii_lowercase();
        value.contains(':') && matches!(scheme.as_str(), "javascript" | "vbscript" | "data")
    }

    #[test]
    fn a_script_url_is_found_as_the_string_reading_found_it() {
        let cases = [
            "javascript:alert(1)",
            "  JaVa\tScRiPt:alert(1)",
            "\u{1}\u{1f}data:x",
            "data",
            "data:",
            "DATA",
            "vbscript :x",
            "vb\nscript:x",
            "javascriptx:1",
            "javascriptjavascr:1",
            "javascript",
            "https://x/?a=javascript:1",
            "mailto:a@b",
            "",
            ":",
            " :",
            "dätä:x",
            "javascrİpt:x",
            "java\u{0}script:x",
            "\u{a0}javascript:x",
            "data\u{301}:x",
            "abcdefghijklmnop:x",
            "abcdefghijklmnopq:x",
            "javascript\r:x",
        ];
        for v in cases {
            assert_eq!(is_script_url(v), script_url_by_string(v), "{v:?}");
        }
    }

    #[test]
    fn strict_mode_fails_on_missing_event_data() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        std::fs::create_dir(&t).unwrap();
        std::fs::write(t.join("email.subject.hbs"), "{{event.data.nope}}").unwrap();
        std::fs::write(t.join("email.txt.hbs"), "x").unwrap();
        let (set, _) = TemplateSet::load(dir.path(), "en");
        let contact = Contact {
            id: "c".into(),
            ..Contact::default()
        };
        let event = Event {
            id: "e".into(),
            kind: "a.b".into(),
            occurred_at: DateTime::parse_from_rfc3339("2026-11-20T23:30:00+00:00").unwrap(),
            contact_id: "c".into(),
            data: Map::new(),
        };
        let info = MessageInfo {
            id: "m",
            step: 0,
            send_at: Utc::now(),
            locale: "en",
            timezone: Tz::UTC,
            token: None,
            unsubscribe: None,
            survey: None,
        };
        let ctx = Context::wraps(context(&contact, Some(&event), "j", "", &info)).unwrap();
        let err = set.render_email("t", "en", &ctx).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
