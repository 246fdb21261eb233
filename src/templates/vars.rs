//! The variable checker: which `{{…}}` paths a template may use for a job, found by walking
//! handlebars' own AST (blocks included, since strict mode does not cover `{{#if x}}`,
//! handlebars #579), so a typo is a `validate` error at its line, not a failed send.

use crate::diag::{Location, did_you_mean};
use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};

use super::context::OUR_HELPERS;

pub(super) const BUILTIN_HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];

/// Block helpers that change the context: paths inside them are relative to an item we
/// cannot type, so only their argument is checked.
pub(super) const CONTEXT_CHANGING: &[&str] = &["each", "with"];

/// What a job's messages can see. Fields marked open take any key below them.
pub struct Root {
    pub name: &'static str,
    pub fields: &'static [&'static str],
    pub open: &'static [&'static str],
}

pub(super) const CONTACT: Root = Root {
    name: "contact",
    fields: &[
        "id", "name", "email", "phone", "locale", "timezone", "birthday",
    ],
    open: &["attributes", "consent"],
};

pub(super) const EVENT: Root = Root {
    name: "event",
    fields: &["id", "type", "occurred_at"],
    open: &["data"],
};

pub(super) const JOB: Root = Root {
    name: "job",
    fields: &["id", "description"],
    open: &[],
};

pub(super) const MESSAGE: Root = Root {
    name: "message",
    fields: &["id", "step", "send_at", "locale", "timezone", "token"],
    open: &[],
};

pub(super) const UNSUBSCRIBE: Root = Root {
    name: "unsubscribe",
    fields: &["url", "mailto"],
    open: &[],
};

pub(super) const SURVEY: Root = Root {
    name: "survey",
    fields: &["url", "scale", "links"],
    open: &[],
};

/// The variables available to one use of a template (a job with an event trigger sees
/// `event`; a birthday job does not).
pub struct Scope {
    pub roots: Vec<&'static Root>,
    /// Said in the error when a root is missing, e.g. "this job is not triggered by an event".
    pub missing_root_note: Vec<(&'static str, &'static str)>,
}

impl Scope {
    pub fn event_job() -> Scope {
        Scope {
            roots: vec![&CONTACT, &EVENT, &JOB, &MESSAGE, &UNSUBSCRIBE],
            missing_root_note: vec![],
        }
    }

    /// Anniversary and cron jobs: no triggering event; `why` says so in the error.
    pub fn without_event(why: &'static str) -> Scope {
        Scope {
            roots: vec![&CONTACT, &JOB, &MESSAGE, &UNSUBSCRIBE],
            missing_root_note: vec![("event", why)],
        }
    }
}

impl Scope {
    /// A survey job's messages also see `survey` (the answer page's link); other jobs are
    /// told how to become one.
    pub fn with_survey(mut self, survey: bool) -> Scope {
        if survey {
            self.roots.push(&SURVEY);
        } else {
            self.missing_root_note.push((
                "survey",
                "this job is not a survey: add `survey: nps` (or csat) to it",
            ));
        }
        self
    }
}

/// One `{{path}}` read by a template.
#[derive(Debug, Clone)]
pub(super) struct VarUse {
    pub path: String,
    pub location: Location,
}

/// Collects variable paths and helper names from a compiled template.
#[derive(Default)]
pub(super) struct Walk {
    pub(super) uses: Vec<VarUse>,
    pub(super) helpers: Vec<(String, Location)>,
    pub(super) problems: Vec<(String, Location)>,
}

impl Walk {
    pub(super) fn template(&mut self, t: &Template, in_context_block: bool) {
        for (i, el) in t.elements.iter().enumerate() {
            let loc = t
                .mapping
                .get(i)
                .map(|m| Location {
                    line: m.0,
                    column: m.1,
                })
                .unwrap_or(Location { line: 1, column: 1 });
            match el {
                TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                    self.helper_template(h, loc, in_context_block, false)
                }
                TemplateElement::HelperBlock(h) => {
                    self.helper_template(h, loc, in_context_block, true)
                }
                TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
                    self.problems.push((
                        "partials are not supported; put shared text in each template".into(),
                        loc,
                    ))
                }
                TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
                    self.problems
                        .push(("decorators are not supported".into(), loc))
                }
                _ => {} // raw text and comments
            }
        }
    }

    fn helper_template(&mut self, h: &HelperTemplate, loc: Location, in_ctx: bool, block: bool) {
        let helper_name = match &h.name {
            Parameter::Name(n) => Some(n.clone()),
            _ => None,
        };
        let is_helper = block
            || !h.params.is_empty()
            || !h.hash.is_empty()
            || helper_name
                .as_deref()
                .is_some_and(|n| OUR_HELPERS.contains(&n) || BUILTIN_HELPERS.contains(&n));
        if is_helper {
            if let Some(n) = &helper_name {
                self.helpers.push((n.clone(), loc));
            }
            for p in h.params.iter().chain(h.hash.values()) {
                self.parameter(p, loc, in_ctx);
            }
        } else {
            self.parameter(&h.name, loc, in_ctx);
        }
        let changes = helper_name
            .as_deref()
            .is_some_and(|n| CONTEXT_CHANGING.contains(&n))
            || h.block_param.is_some();
        if let Some(t) = &h.template {
            self.template(t, in_ctx || changes);
        }
        if let Some(t) = &h.inverse {
            self.template(t, in_ctx);
        }
    }

    fn parameter(&mut self, p: &Parameter, loc: Location, in_ctx: bool) {
        match p {
            Parameter::Name(n) => self.path(n, loc, in_ctx),
            Parameter::Path(path) => {
                let raw = match path {
                    handlebars::Path::Relative((_, raw)) => raw.clone(),
                    handlebars::Path::Local((_, _, raw)) => raw.clone(),
                };
                self.path(&raw, loc, in_ctx)
            }
            Parameter::Subexpression(sub) => {
                if let TemplateElement::Expression(h) | TemplateElement::HelperBlock(h) =
                    sub.as_element()
                {
                    // A subexpression always calls a helper.
                    if let Parameter::Name(n) = &h.name {
                        self.helpers.push((n.clone(), loc));
                    }
                    for p in h.params.iter().chain(h.hash.values()) {
                        self.parameter(p, loc, in_ctx);
                    }
                }
            }
            _ => {} // literals
        }
    }

    fn path(&mut self, raw: &str, loc: Location, in_ctx: bool) {
        if raw.starts_with('@') && !raw.starts_with("@root") {
            return; // @index, @key, @first, @last
        }
        let (path, absolute) = match raw.strip_prefix("@root") {
            Some(rest) => (rest.trim_start_matches(['.', '/']).to_string(), true),
            None => {
                let mut r = raw;
                let mut up = false;
                while let Some(rest) = r.strip_prefix("../") {
                    r = rest;
                    up = true;
                }
                (r.to_string(), up)
            }
        };
        if path.is_empty() || path == "this" || path == "." || path.starts_with("this.") && in_ctx {
            return;
        }
        if in_ctx && !absolute {
            return; // relative to an `each`/`with` item: not checkable
        }
        let path = path
            .strip_prefix("this.")
            .unwrap_or(&path)
            .replace('/', ".");
        self.uses.push(VarUse {
            path,
            location: loc,
        });
    }
}

/// (message, location, hint) for every use the scope cannot satisfy.
pub(super) fn check_uses(
    uses: &[VarUse],
    scope: &Scope,
) -> Vec<(String, Location, Option<String>)> {
    let mut out = Vec::new();
    for u in uses {
        // `[0]` / `.[0]` index segments are fine below open fields; strip them for the check.
        let segs: Vec<&str> = u.path.split('.').filter(|s| !s.is_empty()).collect();
        let Some(first) = segs.first() else { continue };
        let Some(root) = scope.roots.iter().find(|r| r.name == *first) else {
            let note = scope
                .missing_root_note
                .iter()
                .find(|(r, _)| r == first)
                .map(|(_, n)| n.to_string());
            let hint = note
                .or_else(|| did_you_mean(first, scope.roots.iter().map(|r| r.name)))
                .unwrap_or_else(|| {
                    format!(
                        "variables start with {}",
                        scope
                            .roots
                            .iter()
                            .map(|r| r.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            out.push((
                format!("`{}`: this job cannot provide `{first}`", u.path),
                u.location,
                Some(hint),
            ));
            continue;
        };
        let Some(second) = segs.get(1) else {
            out.push((
                format!(
                    "`{}` is an object; name a field, e.g. `{}.{}`",
                    u.path,
                    root.name,
                    root.fields.first().unwrap_or(&"id")
                ),
                u.location,
                None,
            ));
            continue;
        };
        if root.open.contains(second) {
            continue;
        }
        if !root.fields.contains(second) {
            let all = root.fields.iter().chain(root.open).copied();
            let hint = did_you_mean(second, all).unwrap_or_else(|| {
                format!(
                    "{} has: {}",
                    root.name,
                    root.fields
                        .iter()
                        .chain(root.open)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
            out.push((
                format!("`{}`: {} has no field `{second}`", u.path, root.name),
                u.location,
                Some(hint),
            ));
            continue;
        }
        if segs.len() > 2 {
            out.push((
                format!(
                    "`{}`: `{}.{second}` is text, it has no fields",
                    u.path, root.name
                ),
                u.location,
                None,
            ));
        }
    }
    out
}
