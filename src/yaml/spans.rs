//! The span pass: where each field path of a document sits (`trigger.delay` → line:col),
//! with the checks serde_yaml cannot make with a place (duplicate keys, alias expansion,
//! nesting depth, key length).

use super::read::{MAX_DEPTH, MAX_EXPANDED_NODES, MAX_KEY_CHARS, MAX_PATH_BYTES};

use crate::diag::{Diagnostic, Location};
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

pub(super) fn parent(path: &str) -> &str {
    match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    }
}

pub(super) enum Frame {
    Map {
        path: String,
        key: Option<String>,
        /// Keys seen so far in this mapping, with where (for duplicates).
        seen: HashMap<String, Location>,
        /// Nodes inside, aliases expanded (for the alias bomb limit).
        nodes: u64,
        anchor: usize,
    },
    Seq {
        path: String,
        next: usize,
        nodes: u64,
        anchor: usize,
    },
}

impl Frame {
    fn nodes(&mut self) -> &mut u64 {
        match self {
            Frame::Map { nodes, .. } | Frame::Seq { nodes, .. } => nodes,
        }
    }
}

pub(super) fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// What one document root holds, as the span pass saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Root {
    /// Nothing at all: `---` followed by comments only, or the end of the file.
    Empty,
    /// `~` or `null`: written, and not a mapping.
    Null(Location),
    Value,
}

/// The span pass over a whole file: one index per document.
pub(super) struct Spans {
    pub(super) docs: Vec<(SpanIndex, Root)>,
    /// The first alias of the file: serde_yaml's own repetition limit reports no place.
    pub(super) first_alias: Option<Location>,
}

/// Why the span pass stopped.
pub(super) enum SpanError {
    /// yaml-rust2 refuses the syntax: serde_yaml then names the spot in its own words.
    Syntax,
    /// A limit or a duplicate key, found and located here.
    Found(Diagnostic),
}

/// Index every document of `text`, within the limits above.
pub(super) fn index_spans(path: &Path, text: &str) -> Result<Spans, SpanError> {
    let mut parser = Parser::new_from_str(text);
    let mut out = Spans {
        docs: Vec::new(),
        first_alias: None,
    };
    let mut stack: Vec<Frame> = Vec::new();
    // Expanded size of each anchor (yaml-rust2 numbers them from 1 per stream).
    let mut anchors: HashMap<usize, u64> = HashMap::new();
    let mut doc_nodes: u64 = 0;
    let mut path_bytes: usize = 0;
    let found = |loc: Location, msg: String, hint: &str| {
        SpanError::Found(Diagnostic::error(path, Some(loc), msg).with_hint(hint))
    };
    // yaml-rust2 ends every stream with StreamEnd or an error; this bound only guards against
    // a parser that would do neither (each event consumes input, so there are fewer events
    // than bytes, plus a few per document).
    for _ in 0..=text.len().saturating_mul(4).saturating_add(16) {
        let (event, mark) = parser.next_token().map_err(|_| SpanError::Syntax)?;
        let loc = Location {
            line: mark.line(),
            column: mark.col() + 1,
        };
        // The size of a node that ends here (scalars and aliases end where they start).
        let mut ended: Option<(u64, usize)> = None;
        match event {
            Event::StreamEnd => return Ok(out),
            Event::DocumentStart => {
                out.docs.push((SpanIndex::default(), Root::Empty));
                stack.clear();
                doc_nodes = 0;
            }
            Event::Scalar(ref v, style, anchor, ref tag) => {
                if stack.is_empty() {
                    // The document root.
                    if let Some((spans, root)) = out.docs.last_mut() {
                        let plain = style == yaml_rust2::scanner::TScalarStyle::Plain;
                        *root = if plain && tag.is_none() && v.is_empty() {
                            Root::Empty
                        } else if plain && tag.is_none() && is_null(v) {
                            Root::Null(loc)
                        } else {
                            spans.values.insert(String::new(), loc);
                            Root::Value
                        };
                    }
                } else if let Some(k) = take_key(&mut stack, v, loc).map_err(|first| {
                    found(
                        loc,
                        format!(
                            "duplicate key `{}`, first at line {} column {}",
                            short(v),
                            first.line,
                            first.column
                        ),
                        "a key appears once per mapping: remove or rename one",
                    )
                })? {
                    if v.chars().count() > MAX_KEY_CHARS {
                        return Err(found(
                            loc,
                            format!("a key of more than {MAX_KEY_CHARS} characters"),
                            "keys are short names such as `trigger` or `delay`",
                        ));
                    }
                    if let Some((spans, _)) = out.docs.last_mut() {
                        path_bytes += k.len();
                        spans.keys.insert(k, loc);
                    }
                } else {
                    let p = value_path(&mut stack);
                    path_bytes += p.len();
                    if let Some((spans, _)) = out.docs.last_mut() {
                        spans.values.insert(p, loc);
                    }
                }
                ended = Some((1, anchor));
            }
            Event::Alias(id) => {
                out.first_alias.get_or_insert(loc);
                let size = anchors.get(&id).copied().unwrap_or(1);
                if stack.is_empty() {
                    if let Some((spans, root)) = out.docs.last_mut() {
                        spans.values.insert(String::new(), loc);
                        *root = Root::Value;
                    }
                } else if take_key(&mut stack, "", loc).is_ok_and(|k| k.is_none()) {
                    let p = value_path(&mut stack);
                    path_bytes += p.len();
                    if let Some((spans, _)) = out.docs.last_mut() {
                        spans.values.insert(p, loc);
                    }
                }
                // Every node the alias stands for counts, and so does the alias itself.
                doc_nodes = doc_nodes.saturating_add(size);
                if doc_nodes > MAX_EXPANDED_NODES {
                    return Err(found(
                        loc,
                        format!(
                            "aliases expand this document to more than {MAX_EXPANDED_NODES} values (an alias bomb?)"
                        ),
                        "use fewer or smaller aliases; write the values out",
                    ));
                }
                ended = Some((size, 0));
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let is_map = matches!(event, Event::MappingStart(..));
                if stack.len() >= MAX_DEPTH {
                    return Err(found(
                        loc,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                        "jobs and the config nest a few levels; check for runaway brackets",
                    ));
                }
                let p = if stack.is_empty() {
                    if let Some((_, root)) = out.docs.last_mut() {
                        *root = Root::Value;
                    }
                    String::new()
                } else if take_key(&mut stack, "", loc).is_ok_and(|k| k.is_none()) {
                    value_path(&mut stack)
                } else {
                    "?".into() // a collection used as a key: no field path reaches it
                };
                path_bytes += p.len();
                if let Some((spans, _)) = out.docs.last_mut() {
                    spans.values.entry(p.clone()).or_insert(loc);
                }
                stack.push(if is_map {
                    Frame::Map {
                        path: p,
                        key: None,
                        seen: HashMap::new(),
                        nodes: 1,
                        anchor,
                    }
                } else {
                    Frame::Seq {
                        path: p,
                        next: 0,
                        nodes: 1,
                        anchor,
                    }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                ended = stack.pop().map(|f| match f {
                    Frame::Map { nodes, anchor, .. } | Frame::Seq { nodes, anchor, .. } => {
                        (nodes, anchor)
                    }
                });
            }
            _ => {}
        }
        if let Some((size, anchor)) = ended {
            if anchor > 0 {
                anchors.insert(anchor, size);
            }
            if let Some(parent) = stack.last_mut() {
                let n = parent.nodes();
                *n = n.saturating_add(size);
            }
            if !matches!(event, Event::Alias(_)) {
                doc_nodes = doc_nodes.saturating_add(1);
            }
        }
        if path_bytes > MAX_PATH_BYTES {
            return Err(found(
                loc,
                "this file is too large or too deeply nested to check".into(),
                "jobs and the config are a few kilobytes; split the file",
            ));
        }
    }
    Err(SpanError::Syntax)
}

pub(super) fn is_null(v: &str) -> bool {
    matches!(v, "~" | "null" | "Null" | "NULL")
}

/// A key as quoted in a message: long ones cut.
pub(super) fn short(v: &str) -> String {
    if v.chars().count() > 60 {
        format!("{}…", v.chars().take(60).collect::<String>())
    } else {
        v.to_string()
    }
}

/// If the innermost frame is a mapping waiting for a key, `text` is that key: returns its
/// full path (recorded, and remembered so the value gets it), or the first location when the
/// mapping already has it. `Ok(None)` when the node is a value, not a key. A non-scalar key
/// (`text` empty from a collection or alias) gets the placeholder `?`.
pub(super) fn take_key(
    stack: &mut [Frame],
    text: &str,
    loc: Location,
) -> Result<Option<String>, Location> {
    let Some(Frame::Map {
        path, key, seen, ..
    }) = stack.last_mut()
    else {
        return Ok(None);
    };
    if key.is_some() {
        return Ok(None);
    }
    if let Some(first) = seen.get(text) {
        if !text.is_empty() {
            return Err(*first);
        }
    } else {
        seen.insert(text.to_string(), loc);
    }
    let k = if text.is_empty() { "?" } else { text };
    *key = Some(k.to_string());
    Ok(Some(join(path, k)))
}

/// The path of a value node starting in the innermost frame (advancing a sequence's index or
/// consuming a mapping's pending key).
pub(super) fn value_path(stack: &mut [Frame]) -> String {
    match stack.last_mut() {
        None => String::new(),
        Some(Frame::Seq { path, next, .. }) => {
            let p = format!("{path}[{next}]");
            *next += 1;
            p
        }
        Some(Frame::Map { path, key, .. }) => join(path, &key.take().unwrap_or_default()),
    }
}
