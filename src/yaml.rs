//! The one door YAML comes in through (jobs and config).
//!
//! serde_yaml turns text into the raw structs and reports the first structural problem of a
//! document with its line and column. It cannot say where a *valid* value sits, and the
//! checks that come later (a bad duration, an unknown template) must point at the value too,
//! so a second, span-only pass with yaml-rust2 indexes every field path (`trigger.delay`,
//! `reminders[0].after`) to its location. serde_yaml is archived upstream: swapping it for a
//! fork is a change to this file only.

use crate::diag::{Diagnostic, Location, did_you_mean};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::Path;
use yaml_rust2::parser::{Event, Parser};

/// Where each field path of one YAML document sits.
#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    values: HashMap<String, Location>,
    keys: HashMap<String, Location>,
}

impl SpanIndex {
    /// The location of the value at `path`, or of the closest ancestor that has one.
    pub fn locate(&self, path: &str) -> Option<Location> {
        let mut p = path;
        loop {
            if let Some(l) = self.values.get(p) {
                return Some(*l);
            }
            if p.is_empty() {
                return None;
            }
            p = parent(p);
        }
    }

    /// The location of the key that introduces `path` (for "unknown key" style errors).
    pub fn key(&self, path: &str) -> Option<Location> {
        self.keys.get(path).copied().or_else(|| self.locate(path))
    }

    pub fn has(&self, path: &str) -> bool {
        self.values.contains_key(path)
    }

    /// The same places with every path put under `prefix`: a section read on its own
    /// (`route: …` as `sms.route`) locates its fields by the paths it has in the config.
    pub fn nested_under(&self, prefix: &str) -> SpanIndex {
        let re_root = |m: &HashMap<String, Location>| -> HashMap<String, Location> {
            m.iter()
                .map(|(k, v)| (join(prefix, k).trim_end_matches('.').to_string(), *v))
                .collect()
        };
        SpanIndex {
            values: re_root(&self.values),
            keys: re_root(&self.keys),
        }
    }
}

fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// Index every document of `text`; `None` when the text is not well-formed YAML
/// (serde_yaml then reports the syntax error itself).
fn index_spans(text: &str) -> Option<Vec<SpanIndex>> {
    let mut parser = Parser::new_from_str(text);
    let mut docs: Vec<SpanIndex> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        let (event, mark) = parser.next_token().ok()?;
        let loc = Location {
            line: mark.line(),
            column: mark.col() + 1,
        };
        // The path of a node that starts here, and whether it is a mapping key.
        let mut node_path =
            |stack: &mut Vec<Frame>, is_scalar: bool, text: Option<&str>| -> Option<String> {
                match stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Seq { path, next }) => {
                        let p = format!("{path}[{next}]");
                        *next += 1;
                        Some(p)
                    }
                    Some(Frame::Map { path, key }) => match key.take() {
                        Some(k) => Some(join(path, &k)),
                        None => {
                            // This node is a key.
                            if is_scalar {
                                let k = text.unwrap_or_default().to_string();
                                let full = join(path, &k);
                                docs.last_mut()?.keys.insert(full, loc);
                                *key = Some(k);
                            } else {
                                *key = Some("?".into());
                            }
                            None
                        }
                    },
                }
            };
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                docs.push(SpanIndex::default());
                stack.clear();
            }
            Event::Scalar(ref v, ..) => {
                if let Some(p) = node_path(&mut stack, true, Some(v)) {
                    if p.is_empty() && (v.is_empty() || v == "~" || v == "null") {
                        continue; // an empty document: `---` followed by comments only
                    }
                    docs.last_mut()?.values.insert(p, loc);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = node_path(&mut stack, true, None) {
                    docs.last_mut()?.values.insert(p, loc);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                let p = node_path(&mut stack, false, None).unwrap_or_else(|| "?".into());
                docs.last_mut()?.values.entry(p.clone()).or_insert(loc);
                stack.push(if is_map {
                    Frame::Map { path: p, key: None }
                } else {
                    Frame::Seq { path: p, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    Some(docs)
}

/// One parsed document and where its fields are.
#[derive(Debug)]
pub struct Document<T> {
    pub value: T,
    pub spans: SpanIndex,
}

/// Parse every document in `text` into `T`. Structural problems (syntax, wrong type, unknown
/// key) come back as diagnostics, one per document at most, with a hint where one helps.
pub fn parse_documents<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> (Vec<Document<T>>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut diags = Vec::new();
    let Some(spans) = index_spans(text) else {
        // Not well-formed: serde_yaml's own error names the spot (in whichever document).
        let err = serde_yaml::Deserializer::from_str(text)
            .find_map(|doc| serde_yaml::Value::deserialize(doc).err())
            .map(|e| error_to_diag(path, &e))
            .unwrap_or_else(|| Diagnostic::error(path, None, "this file is not valid YAML"));
        diags.push(err);
        return (out, diags);
    };
    let non_empty: Vec<bool> = spans.iter().map(|s| s.has("")).collect();
    let mut spans = spans.into_iter();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let span = spans.next().unwrap_or_default();
        if !non_empty.get(i).copied().unwrap_or(false) {
            continue; // an empty document (only comments or `---`)
        }
        match T::deserialize(de) {
            Ok(value) => out.push(Document { value, spans: span }),
            Err(e) => diags.push(error_to_diag(path, &e)),
        }
    }
    (out, diags)
}

/// Parse exactly one document (the daemon config).
pub fn parse_one<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<Document<T>, Vec<Diagnostic>> {
    let (mut docs, diags) = parse_documents::<T>(path, text);
    if !diags.is_empty() {
        return Err(diags);
    }
    match docs.len() {
        1 => Ok(docs.remove(0)),
        0 => Err(vec![Diagnostic::error(path, None, "the file is empty")]),
        n => Err(vec![
            Diagnostic::error(path, None, format!("expected one YAML document, found {n}"))
                .with_hint("remove the `---` separators"),
        ]),
    }
}

/// A serde_yaml error as a diagnostic: location split out, "did you mean" added for
/// unknown keys and variants.
pub fn error_to_diag(path: &Path, e: &serde_yaml::Error) -> Diagnostic {
    let location = e.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    });
    let mut msg = e.to_string();
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
    fn syntax_error_is_located() {
        let text = "id: a\ntrigger: [unclosed\n";
        let (docs, diags) = parse_documents::<T>(Path::new("a.yaml"), text);
        assert!(docs.is_empty());
        assert_eq!(diags.len(), 1);
        assert!(diags[0].location.is_some(), "{:?}", diags[0]);
    }
}
