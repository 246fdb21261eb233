//! Text from outside (event data, server replies, file contents, command-line values) on its
//! way to a person: a terminal, a log, an error message.
//!
//! Why one module: such text can carry control characters. An ESC sequence in an `order_id`
//! repaints support's terminal when `aftercare logs` prints it; a CR or LF in a server's reply
//! forges a log line; a bidi override reorders what a reader sees. Every human-readable output
//! passes outside text through [`printable`] (one line) or [`printable_lines`] (a block that
//! keeps its line breaks), so the rule is written once. JSON output needs neither: serde
//! escapes control characters itself.
//!
//! [`redact_credentials`] hides the password of any `scheme://user:password@host` URL in a
//! text: error messages quote URLs (a store URL given on the command line, a connection
//! string in a driver's error), and a password must never reach a terminal or a log.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls and DEL (ESC starts
/// terminal sequences; CR and LF forge lines), Unicode line and paragraph separators, and the
/// bidirectional controls that reorder what a reader sees ("Trojan Source").
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Where `s` holds its first control character (Unicode's Cc: C0, DEL, C1), as an error
/// says it: `U+000A at character 3`. For values refused rather than escaped: ids, which are
/// compared exactly, and one-line reasons that are kept.
pub(crate) fn first_control(s: &str) -> Option<String> {
    s.chars()
        .enumerate()
        .find(|(_, c)| c.is_control())
        .map(|(i, c)| format!("U+{:04X} at character {}", c as u32, i + 1))
}

/// `s` on one line with every unsafe character written as an escape (`\n`, `\r`, `\x1b`,
/// `\u{202e}`); borrowed when there is nothing to escape (the usual case). Tabs stay.
pub(crate) fn printable(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Like [`printable`], but line feeds stay: for blocks of text (a rendered preview, an error
/// that lists several problems). A CR is still escaped: it would return to the start of the
/// line and overwrite it.
pub(crate) fn printable_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_lf: bool) -> Cow<'_, str> {
    let needs = |c: char| c != '\t' && !(keep_lf && c == '\n') && is_unsafe(c);
    // Printable ASCII, the usual text, is safe byte by byte (a forecast prints a million
    // lines of ids and addresses); anything else is asked a character at a time.
    let plain = |b: u8| matches!(b, b' '..=b'~' | b'\t');
    if s.bytes().all(plain) || !s.chars().any(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// `s` with the password of every `scheme://user:password@…` URL replaced by `***`
/// (`postgres://u:***@db/x`), and the value of a `password=` query parameter too
/// (`postgres://db/x?password=***`, which libpq and sqlx read); a URL without a password is
/// left as it is.
pub(crate) fn redact_credentials(s: &str) -> Cow<'_, str> {
    if !s.contains("://") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first character a URL authority cannot hold.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || is_quote(c))
            .unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        match authority.rfind('@') {
            Some(at) => {
                let (userinfo, host) = authority.split_at(at);
                match userinfo.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push_str(":***");
                        changed = true;
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        // The rest of this URL: its query's `password=` values.
        let end = after
            .find(|c: char| c.is_whitespace() || is_quote(c))
            .unwrap_or(after.len());
        let (url_rest, remainder) = after.split_at(end);
        match url_rest.split_once('?') {
            Some((path, query)) => {
                out.push_str(path);
                out.push('?');
                let (query, fragment) = match query.split_once('#') {
                    Some((q, f)) => (q, Some(f)),
                    None => (query, None),
                };
                for (i, param) in query.split('&').enumerate() {
                    if i > 0 {
                        out.push('&');
                    }
                    match param.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                            out.push_str(k);
                            out.push_str("=***");
                            changed = true;
                        }
                        _ => out.push_str(param),
                    }
                }
                if let Some(f) = fragment {
                    out.push('#');
                    out.push_str(f);
                }
            }
            None => out.push_str(url_rest),
        }
        rest = remainder;
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

fn is_quote(c: char) -> bool {
    matches!(c, '`' | '\'' | '"' | '<' | '>')
}

/// For terminal output of text that may hold both: credentials redacted, then one line.
pub(crate) fn for_terminal(s: &str) -> String {
    printable(&redact_credentials(s)).into_owned()
}

/// [`for_terminal`] for a block: line feeds kept.
pub(crate) fn for_terminal_lines(s: &str) -> String {
    printable_lines(&redact_credentials(s)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(printable("SO-1001 王芳"), Cow::Borrowed(_)));
        assert_eq!(
            printable("SO-1\x1b[2J\r\nattempt 9  sent"),
            "SO-1\\x1b[2J\\r\\nattempt 9  sent"
        );
        assert_eq!(printable("a\tb\u{7f}\u{9b}"), "a\tb\\x7f\\u{9b}");
        assert_eq!(printable("abc\u{202e}def"), "abc\\u{202e}def");
        assert_eq!(printable_lines("one\ntwo\r3"), "one\ntwo\\r3");
        assert_eq!(printable("x\u{2028}y"), "x\\u{2028}y");
    }

    #[test]
    fn url_passwords_are_redacted_anywhere_in_a_text() {
        assert_eq!(
            redact_credentials("cannot connect to postgres://u:PW@db:5432/x: refused"),
            "cannot connect to postgres://u:***@db:5432/x: refused"
        );
        assert_eq!(
            redact_credentials("`postgres://u:p@ss:w@h/db` and https://a:b@c?d"),
            "`postgres://u:***@h/db` and https://a:***@c?d"
        );
        assert!(matches!(
            redact_credentials("postgres://u@h/db https://h/x?a=b@c"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(redact_credentials("no url"), Cow::Borrowed(_)));
        assert_eq!(
            redact_credentials("at postgres://h/db?sslmode=require&PASSWORD=hunter2#x: no"),
            "at postgres://h/db?sslmode=require&PASSWORD=***#x: no"
        );
        assert!(matches!(
            redact_credentials("postgres://h/db?sslmode=require&passwords=1"),
            Cow::Borrowed(_)
        ));
        assert_eq!(for_terminal("x://u:p@h\n"), "x://u:***@h\\n");
    }
}
