//! The frame every page shares (navigation, language switch, sign-out) and the small
//! helpers pages use to show times and addresses to a particular viewer.
//!
//! Everything goes through maud, which escapes every value it is given; nothing here builds
//! HTML from strings. Times are shown in the viewer's zone (the browser tells it through a
//! cookie, see `static/console.js`), with the customer's local time beside them when the
//! zones differ. Addresses are masked for roles that may not see them.

use super::Viewer;
use super::i18n::Lang;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, html};

/// A whole page: head, navigation, `body`.
pub(super) fn frame(v: &Viewer, title: &str, body: Markup) -> Markup {
    let l = v.lang;
    let other = match l {
        Lang::Zh => "en",
        Lang::En => "zh-CN",
    };
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (l.t("title")) }
                link rel="stylesheet" href="/console/static/console.css";
                link rel="icon" type="image/svg+xml" href="/console/static/favicon.svg";
                script src="/console/static/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/console/search" { "aftercare" }
                    nav {
                        a href="/console/search" { (l.t("nav.search")) }
                        @if v.role.acts() { a href="/console/tasks" { (l.t("nav.tasks")) } }
                        @if v.role.sees_campaigns() { a href="/console/campaigns" { (l.t("nav.campaigns")) } }
                        @if v.role.sees_health() { a href="/console/health" { (l.t("nav.health")) } }
                    }
                    div.who {
                        span.zone { (l.t("viewer_zone")) " " (v.tz.name()) }
                        a.lang id="lang-switch" href={ "/console/lang/" (other) "?back=" (v.path) } { (l.t("lang.switch")) }
                        span.user { (v.user) " (" (v.role.as_str()) ")" }
                        form.inline method="post" action="/console/signout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { (l.t("signout")) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page for someone not signed in (sign-in, errors before a session).
pub(super) fn bare(l: Lang, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (l.t("title")) }
                link rel="stylesheet" href="/console/static/console.css";
                link rel="icon" type="image/svg+xml" href="/console/static/favicon.svg";
            }
            body.bare { main { (body) } }
        }
    }
}

/// A notice above a page's content (`?ok=retry` after an action).
pub(super) fn notice(text: &str) -> Markup {
    html! { p.notice role="status" { (text) } }
}

pub(super) fn problem(text: &str) -> Markup {
    html! { p.problem role="alert" { (text) } }
}

/// `2026-11-23 10:00 CST` in `tz`.
pub(super) fn at(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// A time for the viewer, with the customer's local time beside it when their zone differs.
pub(super) fn when(v: &Viewer, t: DateTime<Utc>, customer: Option<Tz>) -> Markup {
    let mine = at(t, v.tz);
    html! {
        time datetime=(t.to_rfc3339()) { (mine) }
        @if let Some(z) = customer.filter(|z| *z != v.tz) {
            " " span.local title=(z.name()) { "(" (t.with_timezone(&z).format("%H:%M %Z")) ")" }
        }
    }
}

/// An address as this viewer may see it.
pub(super) fn address(v: &Viewer, a: &str) -> String {
    if v.role.sees_addresses() {
        a.to_string()
    } else {
        crate::logging::mask(a)
    }
}

/// Free text (a server's reply, a message's body) as this viewer may see it: for roles that
/// may not see addresses, every word that looks like an email address or a phone number is
/// masked.
pub(super) fn text(v: &Viewer, s: &str) -> String {
    let s = crate::text::printable_lines(s).into_owned();
    if v.role.sees_addresses() {
        return s;
    }
    mask_in_text(&s)
}

pub(super) fn mask_in_text(s: &str) -> String {
    let pieces = words(s);
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(p) = pieces.get(i) {
        // A number written in groups (`138 0013 8000`, `+86 138-0013-8000`, `(555) 123 4567`)
        // is masked whole: each group alone is too short to look like a number.
        if let Some(end) = spaced_number(&pieces, i) {
            let joined: String = pieces
                .get(i..end)
                .unwrap_or_default()
                .iter()
                .filter_map(|p| match p {
                    Piece::Word(w) => Some(w.as_str()),
                    Piece::Sep(_) => None,
                })
                .collect();
            out.push_str(&crate::logging::mask(&joined));
            i = end;
            continue;
        }
        match p {
            Piece::Word(w) if looks_like_address(w) => out.push_str(&crate::logging::mask(w)),
            Piece::Word(w) => out.push_str(w),
            Piece::Sep(c) => out.push(*c),
        }
        i += 1;
    }
    out
}

enum Piece {
    Word(String),
    Sep(char),
}

/// `s` cut into words and the characters between them.
fn words(s: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut word = String::new();
    for ch in s.chars() {
        // Words end at white space and punctuation around addresses in prose and in JSON
        // (`{"tel":8613800138000}`, `tel:+86…`, `[…]`), and where a script changes
        // (`电话13800138000`): a number glued to its label was one word, and not masked.
        let script_changes = word
            .chars()
            .last()
            .is_some_and(|last| last.is_ascii() != ch.is_ascii());
        let sep = ch.is_whitespace()
            || matches!(
                ch,
                '<' | '>'
                    | '('
                    | ')'
                    | ','
                    | ';'
                    | '"'
                    | '\''
                    | ':'
                    | '='
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '|'
                    | '：'
                    | '，'
                    | '。'
                    | '、'
                    | '（'
                    | '）'
                    | '【'
                    | '】'
            );
        if (sep || script_changes) && !word.is_empty() {
            pieces.push(Piece::Word(std::mem::take(&mut word)));
        }
        if sep {
            pieces.push(Piece::Sep(ch));
        } else {
            word.push(ch);
        }
    }
    if !word.is_empty() {
        pieces.push(Piece::Word(word));
    }
    pieces
}

/// Where a number written in groups that starts at `pieces[i]` ends (exclusive): two groups
/// or more (digits, a leading `+`, hyphens inside), each apart from the next by at most three
/// spaces or brackets, with seven digits or more in all.
fn spaced_number(pieces: &[Piece], i: usize) -> Option<usize> {
    let group = |p: Option<&Piece>| match p {
        Some(Piece::Word(w)) => {
            let digits = w.strip_prefix('+').unwrap_or(w);
            (!digits.is_empty()
                && !digits.starts_with('-')
                && !digits.ends_with('-')
                && digits.chars().all(|c| c.is_ascii_digit() || c == '-'))
            .then(|| digits.chars().filter(char::is_ascii_digit).count())
        }
        _ => None,
    };
    let mut digits = group(pieces.get(i))?;
    let (mut end, mut groups) = (i + 1, 1);
    loop {
        let mut k = end;
        while k < end + 3 && matches!(pieces.get(k), Some(Piece::Sep(' ' | '(' | ')'))) {
            k += 1;
        }
        match group(pieces.get(k)).filter(|_| k > end) {
            Some(n) => {
                digits += n;
                groups += 1;
                end = k + 1;
            }
            None => break,
        }
    }
    (groups >= 2 && digits >= 7).then_some(end)
}

fn looks_like_address(w: &str) -> bool {
    let digits = w.chars().filter(char::is_ascii_digit).count();
    let date = chrono::NaiveDate::parse_from_str(w, "%Y-%m-%d").is_ok();
    let phone = digits >= 7
        && !date
        && w.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    (w.contains('@') && w.len() > 2) || phone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_text_are_masked() {
        assert_eq!(
            mask_in_text("550 5.1.1 <wang.fang@example.com>: user unknown"),
            "550 5.1.1 <w***g@example.com>: user unknown"
        );
        assert_eq!(
            mask_in_text("sent to +8613800138000 ok, 3 segments"),
            "sent to +86*******8000 ok, 3 segments"
        );
        assert_eq!(
            mask_in_text("order SO-1001 code 250"),
            "order SO-1001 code 250"
        );
        // Glued to a label, in JSON, in brackets, after a label in another script: masked,
        // the label kept.
        for (text, secret, kept) in [
            (r#"{"tel":8613800138000}"#, "8613800138000", r#"{"tel":"#),
            ("tel:+8613800138000", "8613800138000", "tel:+"),
            ("[13800138000]", "13800138000", "["),
            (
                "电话13800138000，邮箱wang.fang@example.com",
                "13800138000",
                "电话",
            ),
            (
                "电话13800138000，邮箱wang.fang@example.com",
                "wang.fang",
                "，邮箱",
            ),
            ("mailto=wang.fang@example.com|x", "wang.fang", "mailto="),
        ] {
            let shown = mask_in_text(text);
            assert!(
                !shown.contains(secret) && shown.contains('*') && shown.contains(kept),
                "{text} → {shown}"
            );
        }
        // Numbers written in groups, masked whole; SMTP codes and counts stay.
        for (text, secret) in [
            ("call me on 138 0013 8000 after six", "0013"),
            ("+86 138-0013-8000", "0013"),
            ("(555) 123 4567 or 555-123-4567", "123"),
            ("我的电话是 138 0013 8000，谢谢", "0013"),
        ] {
            let shown = mask_in_text(text);
            assert!(
                !shown.contains(secret) && shown.contains('*'),
                "{text} → {shown}"
            );
        }
        assert_eq!(
            mask_in_text("550 5.1.1 user unknown, 3 of 12 tries, 2 segments"),
            "550 5.1.1 user unknown, 3 of 12 tries, 2 segments"
        );
        assert_eq!(
            mask_in_text("call me on 138 0013 8000 after six"),
            "call me on 1******8000 after six"
        );
        // Dates and short codes stay.
        assert_eq!(
            mask_in_text("due 2026-11-20, code 1234"),
            "due 2026-11-20, code 1234"
        );
    }
}
