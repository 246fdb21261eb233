//! The one door YAML comes in through (jobs and config).
//!
//! serde_yaml turns text into the raw structs and reports the first structural problem of a
//! document with its line and column. It cannot say where a *valid* value sits, and the
//! checks that come later (a bad duration, an unknown template) must point at the value too,
//! so a second, span-only pass with yaml-rust2 indexes every field path (`trigger.delay`,
//! `reminders[0].after`) to its location. serde_yaml is archived upstream: swapping it for a
//! fork is a change to this file only.
//!
//! Hostile input is stopped here, before either parser can misbehave on it:
//! - serde_yaml's multi-document iterator never ends after a syntax error (its loader keeps
//!   the failed libyaml parser, which returns the same error forever), and yaml-rust2 accepts
//!   text libyaml refuses (control characters; a leading byte order mark, which libyaml
//!   mis-scans on later lines), so an iteration driven by one parser's view of the text spun
//!   forever on the other's. Now the text is checked first (bounded size, UTF-8, no control
//!   characters, a leading BOM dropped), every loop over documents is bounded by a count
//!   known in advance, and the first error ends the walk.
//! - The span pass limits nesting depth, alias expansion (a "billion laughs" document is
//!   refused at the alias that crosses the limit), key length and the bytes of field paths
//!   it keeps, and finds duplicate keys itself so they are reported at the second key.

mod read;
mod spans;

pub(crate) use read::{MAX_FILE_BYTES, ReadError, location_at, read_file};
use read::{check_characters, check_flow_depth};
pub use spans::SpanIndex;
use spans::{Root, SpanError, index_spans};

use crate::diag::{Diagnostic, Location, did_you_mean};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use yaml_rust2::parser::{Event, Parser};

/// One parsed document and where its fields are.
#[derive(Debug)]
pub struct Document<T> {
    pub value: T,
    pub spans: SpanIndex,
}

/// Parse every document in `text` into `T`. Structural problems (syntax, wrong type, unknown
/// key) come back as diagnostics, one per document at most, with a hint where one helps. A
/// document holding only `~`/`null` is an error (nothing in it can be a job or a config); an
/// empty one (`---` and comments) is skipped, and the caller decides whether a file without
/// any document is acceptable.
pub fn parse_documents<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> (Vec<Document<T>>, Vec<Diagnostic>) {
    // Editors on Windows start UTF-8 files with a byte order mark; it is not content.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut out = Vec::new();
    let mut diags = Vec::new();
    if text.len() > MAX_FILE_BYTES {
        let d = Diagnostic::error(
            path,
            Some(location_at(text, MAX_FILE_BYTES)),
            format!("more than {} KiB of YAML", MAX_FILE_BYTES / 1024),
        );
        diags.push(d);
        return (out, diags);
    }
    if let Err(d) = check_characters(path, text).and_then(|()| check_flow_depth(path, text)) {
        diags.push(d);
        return (out, diags);
    }
    let spans = match index_spans(path, text) {
        Ok(s) => s,
        Err(SpanError::Found(d)) => {
            diags.push(d);
            return (out, diags);
        }
        Err(SpanError::Syntax) => {
            diags.push(syntax_error(path, text));
            return (out, diags);
        }
    };
    // libyaml reads every document first (its first error ends the walk), so the typed pass
    // below only ever sees well-formed documents and its iteration ends by itself.
    let docs = spans.docs.len().max(1);
    let mut count = 0;
    for de in serde_yaml::Deserializer::from_str(text).take(docs) {
        if let Err(e) = serde::de::IgnoredAny::deserialize(de) {
            diags.push(located(path, &e, spans.first_alias));
            return (out, diags);
        }
        count += 1;
    }
    let first_alias = spans.first_alias;
    let mut roots = spans.docs.into_iter();
    for de in serde_yaml::Deserializer::from_str(text).take(count) {
        let (span, root) = roots.next().unwrap_or((SpanIndex::default(), Root::Empty));
        match root {
            Root::Empty => continue,
            Root::Null(at) => {
                diags.push(
                    Diagnostic::error(path, Some(at), "this document is null, not a mapping")
                        .with_hint("write the fields here, or delete the document"),
                );
                continue;
            }
            Root::Value => {}
        }
        match T::deserialize(de) {
            Ok(value) => out.push(Document { value, spans: span }),
            Err(e) => diags.push(located(path, &e, first_alias)),
        }
    }
    (out, diags)
}

/// A serde_yaml error with a place: its own, or for the errors it gives without one (its
/// alias repetition limit), the document's first alias.
fn located(path: &Path, e: &serde_yaml::Error, first_alias: Option<Location>) -> Diagnostic {
    let mut d = error_to_diag(path, e);
    if d.location.is_none() {
        d.location = first_alias.or(Some(Location { line: 1, column: 1 }));
    }
    d
}

/// The syntax error of text yaml-rust2 refused, in serde_yaml's words (the first error of
/// its walk over the documents, which always ends: at that error, or at the end).
fn syntax_error(path: &Path, text: &str) -> Diagnostic {
    let bound = text.len().saturating_add(2);
    serde_yaml::Deserializer::from_str(text)
        .take(bound)
        .find_map(|doc| serde::de::IgnoredAny::deserialize(doc).err())
        .map(|e| error_to_diag(path, &e))
        .or_else(|| {
            // libyaml accepts what yaml-rust2 refused: yaml-rust2's own words, then.
            let mut p = Parser::new_from_str(text);
            for _ in 0..=bound.saturating_mul(4) {
                match p.next_token() {
                    Err(e) => {
                        let m = e.marker();
                        return Some(Diagnostic::error(
                            path,
                            Some(Location {
                                line: m.line(),
                                column: m.col() + 1,
                            }),
                            e.info().to_string(),
                        ));
                    }
                    Ok((Event::StreamEnd, _)) => break,
                    Ok(_) => {}
                }
            }
            None
        })
        .unwrap_or_else(|| {
            Diagnostic::error(
                path,
                Some(Location { line: 1, column: 1 }),
                "this file is not valid YAML",
            )
        })
}

/// Parse exactly one document (the daemon config).
pub(crate) fn parse_one<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<Document<T>, Vec<Diagnostic>> {
    let (mut docs, diags) = parse_documents::<T>(path, text);
    if !diags.is_empty() {
        return Err(diags);
    }
    match docs.len() {
        1 => Ok(docs.remove(0)),
        0 => Err(vec![Diagnostic::error(
            path,
            Some(Location { line: 1, column: 1 }),
            "the file is empty",
        )]),
        n => Err(vec![
            Diagnostic::error(path, None, format!("expected one YAML document, found {n}"))
                .with_hint("remove the `---` separators"),
        ]),
    }
}

/// A serde_yaml error as a diagnostic: location split out, "did you mean" added for
/// unknown keys and variants. An unclosed quote is reported where it opened (libyaml's
/// "while scanning a quoted scalar at …"), not at the end of the file where the scan gave up.
pub(crate) fn error_to_diag(path: &Path, e: &serde_yaml::Error) -> Diagnostic {
    let mut location = e.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    });
    let mut msg = e.to_string();
    let unclosed = msg.starts_with("found unexpected end of stream")
        || msg.starts_with("found unexpected document indicator");
    if unclosed
        && let Some(i) = msg.find(", while scanning a quoted scalar at ")
        && let Some(opened) =
            parse_line_col(&msg[i + ", while scanning a quoted scalar at ".len()..])
    {
        location = Some(opened);
        msg = format!("this quoted value is not closed ({})", &msg[..i]);
    }
    // The location is reported separately: cut " at line N column M" out of the text.
    if let Some(i) = msg.rfind(" at line ") {
        let rest = &msg[i + " at line ".len()..];
        let end = rest
            .find(" column ")
            .map(|c| {
                c + " column ".len()
                    + rest[c + " column ".len()..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .count()
            })
            .unwrap_or(rest.len());
        msg = format!("{}{}", &msg[..i], &rest[end..]);
    }
    let hint = unknown_name_hint(&msg);
    Diagnostic::error(path, location, msg).with_hint_opt(hint)
}

/// `line 3 column 7…` → that location.
fn parse_line_col(s: &str) -> Option<Location> {
    let rest = s.strip_prefix("line ")?;
    let (line, rest) = rest.split_once(" column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Location {
        line: line.parse().ok()?,
        column: column.parse().ok()?,
    })
}

/// serde says "unknown field `dealy`, expected one of `event`, `delay`"; turn that into a
/// suggestion (or the list of what is allowed when nothing is close).
fn unknown_name_hint(msg: &str) -> Option<String> {
    let kind = if msg.contains("unknown field") {
        "keys"
    } else if msg.contains("unknown variant") {
        "values"
    } else {
        return None;
    };
    let ticked: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();
    let (word, expected) = ticked.split_first()?;
    if expected.is_empty() {
        return Some(format!("this mapping takes no {kind}"));
    }
    did_you_mean(word, expected.iter().copied())
        .or_else(|| Some(format!("allowed {kind}: {}", expected.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        id: String,
        trigger: Trig,
        #[serde(default)]
        reminders: Vec<Trig>,
    }
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Trig {
        event: Option<String>,
        delay: Option<String>,
    }

    #[test]
    fn indexes_nested_paths_with_one_based_positions() {
        let text = "id: a\ntrigger:\n  event: x\n  delay: 3d\nreminders:\n  - delay: 4d\n";
        let (docs, diags) = parse_documents::<T>(Path::new("a.yaml"), text);
        assert!(diags.is_empty(), "{diags:?}");
        let s = &docs[0].spans;
        assert_eq!(
            s.locate("trigger.delay"),
            Some(Location {
                line: 4,
                column: 10
            })
        );
        assert_eq!(
            s.key("trigger.delay"),
            Some(Location { line: 4, column: 3 })
        );
        assert_eq!(
            s.locate("reminders[0].delay"),
            Some(Location {
                line: 6,
                column: 12
            })
        );
        assert_eq!(s.locate("reminders[0].nope").map(|l| l.line), Some(6));
    }

    #[test]
    fn unknown_key_has_location_and_suggestion() {
        let text = "id: a\ntrigger:\n  event: x\n  dealy: 3d\n";
        let (_, diags) = parse_documents::<T>(Path::new("a.yaml"), text);
        assert_eq!(diags.len(), 1);
        let d = &diags[0];
        assert_eq!(d.location, Some(Location { line: 4, column: 3 }));
        assert!(d.message.contains("unknown field `dealy`"), "{}", d.message);
        assert_eq!(d.hint.as_deref(), Some("did you mean `delay`?"));
    }

    #[test]
    fn several_documents_each_checked() {
        let text =
            "id: a\ntrigger: {event: x}\n---\nid: b\ntrigger: {evnt: y}\n---\n# only a comment\n";
        let (docs, diags) = parse_documents::<T>(Path::new("a.yaml"), text);
        assert_eq!(docs.len(), 1);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].location.map(|l| l.line), Some(5));
    }

    #[test]
    fn syntax_error_in_a_later_document_is_located() {
        let text = "id: a\ntrigger: {event: x}\n---\nid: b\ntrigger: {event: y\n";
        let (docs, diags) = parse_documents::<T>(Path::new("a.yaml"), text);
        assert!(docs.is_empty());
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(
            diags[0].location.is_some_and(|l| l.line >= 5),
            "{:?}",
            diags[0]
        );
    }

    #[test]
    fn text_libyaml_refuses_ends_the_walk_with_one_located_error() {
        // yaml-rust2 takes these; libyaml's document iterator repeated its error forever.
        for text in [
            "\u{feff}id: a\ntrigger: {event: x}\n",
            "id: a\u{1}\ntrigger: {event: x}\n",
            "id: a\ntrigger: {event: x}\n---\nid: b\u{7f}\n",
        ] {
            let (docs, diags) = parse_documents::<T>(Path::new("a.yaml"), text);
            if text.starts_with('\u{feff}') {
                assert!(diags.is_empty(), "{diags:?}");
                assert_eq!(docs.len(), 1);
                assert_eq!(
                    docs[0].spans.key("id"),
                    Some(Location { line: 1, column: 1 })
                );
            } else {
                assert_eq!(diags.len(), 1, "{diags:?}");
                assert!(diags[0].location.is_some());
            }
        }
    }

    #[test]
    fn duplicates_bombs_and_nesting_are_found_at_their_place() {
        let at = |text: &str| {
            let (_, d) = parse_documents::<serde_yaml::Value>(Path::new("a.yaml"), text);
            d.first()
                .and_then(|d| d.location)
                .map(|l| (l.line, l.column))
        };
        assert_eq!(at("a: 1\nb:\n  c: 1\n  c: 2\n"), Some((4, 3)));
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n";
        assert_eq!(at(bomb).map(|(l, _)| l), Some(5));
        assert_eq!(at(&format!("a: {}", "[".repeat(100))), Some((1, 68)));
        assert_eq!(at("a: 'it''s [[[ fine'\nb: \"[[[\"\n# [[[[\n"), None);
    }

    #[test]
    fn syntax_error_is_located() {
        let text = "id: a\ntrigger: [unclosed\n";
        let (docs, diags) = parse_documents::<T>(Path::new("a.yaml"), text);
        assert!(docs.is_empty());
        assert_eq!(diags.len(), 1);
        assert!(diags[0].location.is_some(), "{:?}", diags[0]);
    }
}
