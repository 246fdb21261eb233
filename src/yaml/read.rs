//! Reading YAML text safely: a bounded read (size, UTF-8, a leading BOM dropped), characters
//! YAML forbids refused at their line and column, and flow nesting bounded before any parser
//! sees it (both parsers are quadratic in open brackets).

use crate::diag::{Diagnostic, Location};
use std::io::Read;
use std::path::Path;

/// The largest YAML file read (jobs, config), and template file. Real ones are a few
/// kilobytes (and mail clients clip a message past about 100 KiB).
pub(crate) const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Deepest nesting of mappings and sequences (serde_yaml's own limit is 128).
pub(crate) const MAX_DEPTH: usize = 64;

/// Nodes a document may hold once its aliases are expanded.
pub(crate) const MAX_EXPANDED_NODES: u64 = 100_000;

/// Longest mapping key (no key of a job or the config comes near it).
pub(crate) const MAX_KEY_CHARS: usize = 1024;

/// Bytes of field paths the span index may keep (a bound on its memory).
pub(super) const MAX_PATH_BYTES: usize = 32 * 1024 * 1024;

/// Why a YAML file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file cannot be opened or read (missing, a folder, no permission).
    Io(std::io::Error),
    /// It was read, and is not text this module accepts (too large, not UTF-8).
    Invalid(Diagnostic),
}

/// Read a YAML (or template) file as text, reading at most [`MAX_FILE_BYTES`] (plus one, to know it is
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
                    "the file is larger than {} KiB; a job, config or template file is a few kilobytes",
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
pub(super) fn valid_prefix(bytes: &[u8]) -> &str {
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
pub(super) fn allowed_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r' | ' '..='~' | '\u{A0}'..='\u{D7FF}' | '\u{10000}'..)
        || (('\u{E000}'..='\u{FFFD}').contains(&c) && c != '\u{FEFF}')
}

/// The first character YAML does not allow, as a diagnostic at its line and column.
pub(super) fn check_characters(path: &Path, text: &str) -> Result<(), Diagnostic> {
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
pub(super) fn check_flow_depth(path: &Path, text: &str) -> Result<(), Diagnostic> {
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
