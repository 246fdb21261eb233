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

use crate::diag::{Diagnostic, Location, did_you_mean};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use yaml_rust2::parser::{Event, Parser};

/// The largest YAML file read (jobs, config). Real ones are a few kilobytes.
pub(crate) const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Deepest nesting of mappings and sequences (serde_yaml's own limit is 128).
pub(crate) const MAX_DEPTH: usize = 64;
/// Nodes a document may hold once its aliases are expanded.
pub(crate) const MAX_EXPANDED_NODES: u64 = 100_000;
/// Longest mapping key (no key of a job or the config comes near it).
pub(crate) const MAX_KEY_CHARS: usize = 1024;
/// Bytes of field paths the span index may keep (a bound on its memory).
const MAX_PATH_BYTES: usize = 32 * 1024 * 1024;

/// Why a YAML file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file cannot be opened or read (missing, a folder, no permission).
    Io(std::io::Error),
    /// It was read, and is not text this module accepts (too large, not UTF-8).
    Invalid(Diagnostic),
}

/// Read a YAML file as text, reading at most [`MAX_FILE_BYTES`] (plus one, to know it is
/// longer): a huge file is refused at the line where it crosses the limit, and a byte that is
/// not UTF-8 at its line and column.
pub(crate) fn read_file(path: &Path) -> Result<String, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() > MAX_FILE_BYTES {
        let head = valid_prefix(&bytes[..MAX_FILE_BYTES]);
        return Err(ReadError::Invalid(
            Diagnostic::error(
                path,
                Some(location_at(head, head.len())),
                format!(
                    "the file is larger than {} KiB; a job or config file is a few kilobytes",
                    MAX_FILE_BYTES / 1024
                ),
            )
            .with_hint("split it into several files, or check that this is the file you meant"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let head = valid_prefix(&bytes[..good]);
        let bad = bytes.get(good).copied().unwrap_or_default();
        ReadError::Invalid(
            Diagnostic::error(
                path,
                Some(location_at(head, head.len())),
                format!("byte 0x{bad:02X} is not UTF-8 text"),
            )
            .with_hint("save the file as UTF-8 (an editor's \"encoding\" setting)"),
        )
    })
}

/// The longest prefix of `bytes` that is UTF-8 (everything when it all is).
fn valid_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn location_at(text: &str, offset: usize) -> Location {
    let mut head = text.get(..offset).unwrap_or(text);
    let mut line = 1;
    let mut line_start = 0;
    for (i, b) in head.bytes().enumerate() {
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
        }
    }
    head = &head[line_start..];
    Location {
        line,
        column: head.chars().count() + 1,
    }
}

/// Whether YAML allows `c` in a file: its `c-printable` set without a byte order mark past
/// the start, and without NEL (U+0085; libyaml counts it as a line break, yaml-rust2 does not,
/// so the two would disagree on line numbers). libyaml refuses the rest as "control characters
/// are not allowed", with an offset instead of a line; yaml-rust2 takes them into plain
/// scalars.
fn allowed_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r' | ' '..='~' | '\u{A0}'..='\u{D7FF}' | '\u{10000}'..)
        || (('\u{E000}'..='\u{FFFD}').contains(&c) && c != '\u{FEFF}')
}

/// The first character YAML does not allow, as a diagnostic at its line and column.
fn check_characters(path: &Path, text: &str) -> Result<(), Diagnostic> {
    let Some((at, c)) = text.char_indices().find(|(_, c)| !allowed_char(*c)) else {
        return Ok(());
    };
    let what = match c {
        '\u{FEFF}' => "a byte order mark (U+FEFF) past the start of the file".to_string(),
        '\u{0}' => "a NUL character (U+0000)".to_string(),
        c => format!("the control character U+{:04X}", c as u32),
    };
    Err(Diagnostic::error(
        path,
        Some(location_at(text, at)),
        format!("{what} is not allowed in YAML"),
    )
    .with_hint(
        "delete it; to put such a character in a value, write it as an escape in double quotes, e.g. \"\\x01\"",
    ))
}

/// Refuse flow nesting (`[[[…` / `{{{…`) deeper than [`MAX_DEPTH`] before any parser sees it:
/// both parsers keep one possible simple key per open flow level and re-check them all for
/// every token, and look ahead to the end of the nesting before they return a first event,
/// so 50,000 brackets cost minutes of CPU before the span pass could count to 64.
///
/// A linear scan with just enough of YAML's lexical rules to not count brackets inside
/// comments or quoted scalars: a quote opens a scalar only where a token can start (after
/// whitespace, `[`, `{`, `,`, `:`, `-`, `?` or at a line's start), so `it's` in a plain
/// scalar opens nothing. Brackets in plain and block scalars are counted; only a text with
/// more than 64 of them unclosed is refused, which no job or config has.
fn check_flow_depth(path: &Path, text: &str) -> Result<(), Diagnostic> {
    #[derive(PartialEq)]
    enum In {
        Text,
        Single,
        Double,
        Comment,
    }
    let mut state = In::Text;
    let mut depth = 0usize;
    let mut prev = '\n';
    let mut escaped = false;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let token_start = prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':' | '-' | '?');
        match state {
            In::Text => match c {
                '#' if prev.is_whitespace() => state = In::Comment,
                '\'' if token_start => state = In::Single,
                '"' if token_start => state = In::Double,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(Diagnostic::error(
                            path,
                            Some(location_at(text, i)),
                            format!("nesting deeper than {MAX_DEPTH} levels"),
                        )
                        .with_hint(
                            "jobs and the config nest a few levels; check for runaway brackets",
                        ));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
            In::Comment => {
                if c == '\n' || c == '\r' {
                    state = In::Text;
                }
            }
            In::Single => {
                if c == '\'' {
                    if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        chars.next(); // '' is a quote inside the scalar
                    } else {
                        state = In::Text;
                    }
                }
            }
            In::Double => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    state = In::Text;
                }
            }
        }
        prev = c;
    }
    Ok(())
}

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

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// What one document root holds, as the span pass saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    /// Nothing at all: `---` followed by comments only, or the end of the file.
    Empty,
    /// `~` or `null`: written, and not a mapping.
    Null(Location),
    Value,
}

/// The span pass over a whole file: one index per document.
struct Spans {
    docs: Vec<(SpanIndex, Root)>,
    /// The first alias of the file: serde_yaml's own repetition limit reports no place.
    first_alias: Option<Location>,
}

/// Why the span pass stopped.
enum SpanError {
    /// yaml-rust2 refuses the syntax: serde_yaml then names the spot in its own words.
    Syntax,
    /// A limit or a duplicate key, found and located here.
    Found(Diagnostic),
}

/// Index every document of `text`, within the limits above.
fn index_spans(path: &Path, text: &str) -> Result<Spans, SpanError> {
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

fn is_null(v: &str) -> bool {
    matches!(v, "~" | "null" | "Null" | "NULL")
}

/// A key as quoted in a message: long ones cut.
fn short(v: &str) -> String {
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
fn take_key(stack: &mut [Frame], text: &str, loc: Location) -> Result<Option<String>, Location> {
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
fn value_path(stack: &mut [Frame]) -> String {
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
