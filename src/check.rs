//! The one checker for what people write in YAML: the daemon config (each section checked
//! by the module that owns it), its SMS gateways, and the jobs.
//!
//! Raw serde structs come in (their shape already checked by `yaml`), typed settings go out,
//! and every problem on the way becomes a [`Diagnostic`] at the line and column of the value
//! that causes it, with a hint. Problems are collected, never thrown, so one run reports all
//! of them; an owner returns a usable default after reporting, and the caller looks at
//! [`Checker::has_errors`] once at the end.
//!
//! Keeping the shared rules here (durations, secrets by reference, URLs, required keys, time
//! zones, "did you mean") is what makes the same mistake read the same in every file.

use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::duration;
use crate::values::{Secret, check_locale, parse_tz};
use crate::yaml::SpanIndex;
use chrono_tz::Tz;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a duration is written, for every hint that asks for one.
pub(crate) const DURATION_HINT: &str =
    "write a number and a unit: 30s, 5m, 12h, 3d, 1w, or combined as 1d12h";

/// A number or a string in YAML, read as text (`equals: 0` and `equals: "0"` mean the same).
#[derive(Debug, serde::Deserialize, Clone, PartialEq)]
#[serde(untagged)]
pub(crate) enum RawScalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl RawScalar {
    pub(crate) fn text(&self) -> String {
        match self {
            RawScalar::Bool(b) => b.to_string(),
            RawScalar::Int(i) => i.to_string(),
            RawScalar::Float(f) => f.to_string(),
            RawScalar::Text(s) => s.clone(),
        }
    }
}

pub struct Checker<'a> {
    path: &'a Path,
    spans: &'a SpanIndex,
    /// The folder relative paths in this file are resolved against.
    base: PathBuf,
    diags: Diagnostics,
}

impl<'a> Checker<'a> {
    /// A checker for the document at `path` whose fields sit where `spans` says; relative
    /// paths resolve against the file's folder (the daemon behaves the same from any
    /// working directory).
    pub fn new(path: &'a Path, spans: &'a SpanIndex) -> Checker<'a> {
        Checker {
            path,
            spans,
            base: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            diags: Diagnostics::default(),
        }
    }

    /// Whether the document wrote a value at `field` (a key left out has none).
    pub fn has(&self, field: &str) -> bool {
        self.spans.has(field)
    }

    pub fn has_errors(&self) -> bool {
        self.diags.has_errors()
    }

    pub fn into_diagnostics(self) -> Diagnostics {
        self.diags
    }

    /// Where the key of `field` is written (for ordering keys as the file does).
    pub fn key_location(&self, field: &str) -> Option<Location> {
        self.spans.key(field)
    }

    fn at(&self, field: &str) -> Option<Location> {
        self.spans.locate(field)
    }

    /// An error at the value of `field`, the message prefixed with the field's path.
    pub fn err(&mut self, field: &str, msg: impl Into<String>, hint: Option<String>) {
        let d = Diagnostic::error(
            self.path,
            self.at(field),
            format!("{field}: {}", msg.into()),
        )
        .with_hint_opt(hint);
        self.diags.push(d);
    }

    /// An error at the *key* of `field`: for a name that is wrong, not its value.
    pub fn err_at_key(&mut self, field: &str, msg: impl Into<String>, hint: Option<String>) {
        let d = Diagnostic::error(
            self.path,
            self.spans.key(field),
            format!("{field}: {}", msg.into()),
        )
        .with_hint_opt(hint);
        self.diags.push(d);
    }

    pub fn warn(&mut self, field: &str, msg: impl Into<String>, hint: Option<String>) {
        let d = Diagnostic::warning(
            self.path,
            self.at(field),
            format!("{field}: {}", msg.into()),
        )
        .with_hint_opt(hint);
        self.diags.push(d);
    }

    /// A problem found by someone else (a template check) that already knows its place.
    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub fn extend(&mut self, d: Diagnostics) {
        self.diags.extend(d);
    }

    /// A duration such as `3d`; `None` (reported) when it does not parse.
    pub fn duration(&mut self, field: &str, text: &str) -> Option<Duration> {
        duration::parse(text)
            .map_err(|e| {
                let hint = match e {
                    duration::Error::Form(_) => DURATION_HINT,
                    duration::Error::TooLong(_) => "durations go up to 36525d (100 years)",
                };
                self.err(field, e.to_string(), Some(hint.into()))
            })
            .ok()
    }

    /// An optional duration key: `default` when left out or wrong (wrong is reported).
    pub fn duration_or(&mut self, field: &str, text: Option<&str>, default: Duration) -> Duration {
        text.and_then(|t| self.duration(field, t))
            .unwrap_or(default)
    }

    /// Like [`Checker::duration_or`], and `0s` is refused: a timeout or period of nothing.
    pub fn positive_duration_or(
        &mut self,
        field: &str,
        text: Option<&str>,
        default: Duration,
    ) -> Duration {
        match text.and_then(|t| self.duration(field, t)) {
            Some(d) if d.is_zero() => {
                self.err(field, "must be longer than 0s", None);
                default
            }
            Some(d) => d,
            None => default,
        }
    }

    /// `p` against the file's folder unless absolute, with `..` folded away (without
    /// touching the file system: the folder may not exist yet).
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        normalise(&if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        })
    }

    /// A secret named by `<at>.<stem>_env` or `<at>.<stem>_file`, at most one of them.
    /// Secrets never live in YAML; this only records where to read them later.
    pub fn secret(
        &mut self,
        at: &str,
        stem: &str,
        env: Option<&str>,
        file: Option<&str>,
    ) -> Secret {
        let key = |suffix: &str| join(at, &format!("{stem}_{suffix}"));
        match (env, file) {
            (Some(_), Some(_)) => {
                self.err(
                    &key("env"),
                    format!("give {stem}_env or {stem}_file, not both"),
                    None,
                );
                Secret::None
            }
            (Some(v), None) if v.trim().is_empty() => {
                self.err(&key("env"), "empty variable name", None);
                Secret::None
            }
            (Some(v), None) => Secret::Env(v.trim().to_string()),
            (None, Some(f)) if f.trim().is_empty() => {
                self.err(&key("file"), "empty file name", None);
                Secret::None
            }
            (None, Some(f)) => Secret::File(self.resolve(f)),
            (None, None) => Secret::None,
        }
    }

    /// Like [`Checker::secret`], and one of the two keys must be there: "no `what`".
    pub fn required_secret(
        &mut self,
        at: &str,
        stem: &str,
        (env, file): (Option<&str>, Option<&str>),
        what: &str,
        hint: &str,
    ) -> Secret {
        let s = self.secret(at, stem, env, file);
        if env.is_none() && file.is_none() {
            self.err(
                &join(at, &format!("{stem}_env")),
                format!("no {what}"),
                Some(hint.to_string()),
            );
        }
        s
    }

    /// A key that must be present and not blank; `""` (reported) otherwise.
    pub fn required<'v>(&mut self, at: &str, key: &str, v: Option<&'v str>, hint: &str) -> &'v str {
        match v {
            Some(s) if !s.trim().is_empty() => s,
            _ => {
                self.err(
                    &join(at, key),
                    format!("`{key}` is required"),
                    Some(hint.to_string()),
                );
                ""
            }
        }
    }

    /// An http(s) URL with a host; `example` shows the shape in the hint.
    pub fn url(&mut self, field: &str, text: &str, example: &str) -> Option<reqwest::Url> {
        match reqwest::Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) | Err(_) => {
                self.err(
                    field,
                    format!("`{text}` is not an http(s) URL"),
                    Some(format!("e.g. {example}")),
                );
                None
            }
        }
    }

    /// An IANA time zone, with "did you mean" for a misspelt one.
    pub fn tz(&mut self, field: &str, name: &str) -> Option<Tz> {
        parse_tz(name)
            .map_err(|hint| self.err(field, format!("unknown time zone `{name}`"), hint))
            .ok()
    }

    pub fn locale(&mut self, field: &str, tag: &str) {
        if let Err(e) = check_locale(tag) {
            self.err(
                field,
                e,
                Some("use a language tag such as zh-CN, en or en-US".into()),
            );
        }
    }
}

/// `a.b` + `c` → `a.b.c`; the root path is empty.
pub(crate) fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// `config/../data` → `data`.
fn normalise(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn check(text: &str, f: impl FnOnce(&mut Checker)) -> String {
        #[derive(serde::Deserialize)]
        struct Any(#[allow(dead_code)] serde_yaml::Value);
        let path = Path::new("/etc/aftercare/a.yaml");
        let doc = yaml::parse_one::<Any>(path, text).expect("valid YAML");
        let mut c = Checker::new(path, &doc.spans);
        f(&mut c);
        c.into_diagnostics().to_string()
    }

    #[test]
    fn secrets_name_their_own_keys() {
        let out = check("unsubscribe: {key_env: K, key_file: f}\n", |c| {
            c.secret("unsubscribe", "key", Some("K"), Some("f"));
        });
        assert!(
            out.contains(":1:24: error: unsubscribe.key_env: give key_env or key_file, not both"),
            "{out}"
        );
        let out = check("x: 1\n", |c| {
            let s = c.secret("store", "password", None, Some("../pw"));
            assert!(matches!(s, Secret::File(p) if p == Path::new("/etc/pw")));
        });
        assert_eq!(out, "");
    }

    #[test]
    fn durations_point_at_the_value() {
        let out = check("a:\n  b: 5x\n", |c| {
            assert_eq!(
                c.duration_or("a.b", Some("5x"), Duration::from_secs(1)),
                Duration::from_secs(1)
            );
        });
        assert!(
            out.contains(":2:6: error: a.b: `5x` has an unknown unit"),
            "{out}"
        );
        let out = check("t: 0s\n", |c| {
            c.positive_duration_or("t", Some("0s"), Duration::from_secs(9));
        });
        assert!(out.contains("t: must be longer than 0s"), "{out}");
    }
}
