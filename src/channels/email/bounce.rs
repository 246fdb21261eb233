//! What a mail server's refusal says about the address: hard (the mailbox or domain does not
//! exist), soft (full, or a passing trouble at the recipient's end), a rate limit (we send
//! too fast: nothing wrong with the address), or policy (our reputation or content: never
//! the recipient's fault, so it never suppresses the address).
//!
//! The RFC 3463 enhanced status code decides when there is one (`5.1.1`, `4.2.2`, `5.7.1`);
//! the words decide provider quirks that contradict their code, such as QQ Mail's
//! `550 Ip frequency limited` (a 5xx that means "slow down", not "no such mailbox") and
//! replies without an enhanced code. Unknown permanent refusals count as soft: a false hard
//! bounce suppresses a customer for good (listmonk #1334), a false soft one costs a retry.
//! A pure function, pinned by the table below; the same rules classify the status of an
//! asynchronous DSN and a provider's bounce event.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use serde::Serialize;

/// What a refusal says about the recipient's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceKind {
    /// The address cannot receive mail: suppress it at once.
    Hard,
    /// Full, or a passing trouble: counted; several in a row suppress for a while.
    Soft,
    /// The receiving system asks us to send more slowly: pace that domain, retry later.
    RateLimit,
    /// Our reputation or content (5.7.x, spam blocks): the address is fine.
    Policy,
    /// The recipient reported the message as spam (ARF, a provider's complaint event).
    Complaint,
}

impl BounceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceKind::Hard => "hard",
            BounceKind::Soft => "soft",
            BounceKind::RateLimit => "rate_limit",
            BounceKind::Policy => "policy",
            BounceKind::Complaint => "complaint",
        }
    }

    pub fn parse(s: &str) -> Option<BounceKind> {
        Some(match s {
            "hard" => BounceKind::Hard,
            "soft" => BounceKind::Soft,
            "rate_limit" => BounceKind::RateLimit,
            "policy" => BounceKind::Policy,
            "complaint" => BounceKind::Complaint,
            _ => return None,
        })
    }
}

/// A classified refusal: its kind and the enhanced status code it carried, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub kind: BounceKind,
    /// `5.1.1`: the RFC 3463 code in the reply or the DSN's `Status:`.
    pub status: Option<String>,
}

/// Words that mean "too fast" whatever the code (QQ, 163, Gmail, Yahoo, Outlook phrasing).
const RATE_WORDS: &[&str] = &[
    "frequency limited",
    "frequency limit",
    "rate limit",
    "ratelimit",
    "rate-limit",
    "too many messages",
    "too many connections",
    "too many recipients this",
    "too many emails",
    "throttl",
    "temporarily deferred",
    "sending rate",
    "rp:trc",
    "rp:qrc",
    "hl:icc",
    "hl:rep",
    "ts01",
    "ts02",
    "ts03",
];

/// Words that mean the mailbox or domain does not exist (replies without an enhanced code).
const HARD_WORDS: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "no such recipient",
    "unknown recipient",
    "recipient unknown",
    "no such mailbox",
    "mailbox not found",
    "mailbox does not exist",
    "does not exist",
    "invalid recipient",
    "invalid mailbox",
    "recipient address rejected: user unknown",
    "account has been disabled",
    "account disabled",
    "mailbox unavailable: no such",
    "host not found",
    "domain not found",
    "no mx",
];

const FULL_WORDS: &[&str] = &[
    "mailbox full",
    "mailbox is full",
    "over quota",
    "quota exceeded",
    "insufficient storage",
];

const POLICY_WORDS: &[&str] = &[
    "spam",
    "blocked",
    "blacklist",
    "blocklist",
    "reputation",
    "policy",
    "content denied",
    "dmarc",
    "spf",
    "dkim",
    "unauthenticated",
];

/// The first RFC 3463 code (`class.subject.detail`, class 2, 4 or 5) in `text`.
pub fn enhanced_status(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|w| w.trim_matches('.'))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts.first(), Some(&"2" | &"4" | &"5"))
                && parts
                    .iter()
                    .skip(1)
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

fn has_any(text: &str, words: &[&str]) -> bool {
    words.iter().any(|w| text.contains(w))
}

/// Classify a refusal: the SMTP reply code (when the server answered) and its text. `None`
/// for an acceptance (2xx) or an answer that says nothing about delivery (no code at all).
pub fn classify(code: Option<i64>, text: &str) -> Option<Bounce> {
    let lower = text.to_lowercase();
    let status = enhanced_status(text);
    let class = match (code, status.as_deref()) {
        (Some(c), _) if (200..300).contains(&c) => return None,
        (Some(c), _) if (400..500).contains(&c) => 4,
        (Some(c), _) if (500..600).contains(&c) => 5,
        (_, Some(s)) if s.starts_with('4') => 4,
        (_, Some(s)) if s.starts_with('5') => 5,
        _ => return None,
    };
    let kind = kind_of(class, code, status.as_deref(), &lower);
    Some(Bounce { kind, status })
}

fn kind_of(class: u8, code: Option<i64>, status: Option<&str>, lower: &str) -> BounceKind {
    // Provider quirks first: QQ's `550 Ip frequency limited` is a 5xx about our pace.
    if has_any(lower, RATE_WORDS) || status == Some("4.7.28") || status == Some("5.7.28") {
        return BounceKind::RateLimit;
    }
    if let Some(s) = status {
        let mut parts = s.splitn(3, '.');
        let _ = parts.next();
        let subject = parts.next().unwrap_or_default();
        let detail = parts.next().unwrap_or_default();
        match (class, subject, detail) {
            (_, "7", _) => return BounceKind::Policy,
            // 5.1.7 and 5.1.8 are about our sender address (its syntax, its domain): our
            // configuration, never the recipient's mailbox, whatever the words say.
            (5, "1", "7" | "8") => return BounceKind::Policy,
            (5, "2", "2") | (5, "2", "3") => return BounceKind::Soft,
            // Bad mailbox, bad domain, bad syntax, moved, null MX (RFC 7505); disabled mailbox.
            (5, "1", "1" | "2" | "3" | "6" | "10") | (5, "2", "1") => return BounceKind::Hard,
            (4, _, _) => return BounceKind::Soft,
            _ => {}
        }
    }
    if class == 4 {
        return BounceKind::Soft;
    }
    if has_any(lower, FULL_WORDS) || code == Some(552) {
        return BounceKind::Soft;
    }
    if has_any(lower, HARD_WORDS) {
        return BounceKind::Hard;
    }
    if has_any(lower, POLICY_WORDS) {
        return BounceKind::Policy;
    }
    BounceKind::Soft
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified_by_code_then_words() {
        use BounceKind::*;
        let cases: &[(i64, &str, Option<BounceKind>, Option<&str>)] = &[
            (250, "2.0.0 Ok: queued", None, Some("2.0.0")),
            (
                550,
                "5.1.1 <x@example.com>: Recipient address rejected: User unknown",
                Some(Hard),
                Some("5.1.1"),
            ),
            (
                550,
                "5.1.2 bad destination system address",
                Some(Hard),
                Some("5.1.2"),
            ),
            (
                550,
                "5.1.10 Recipient address has null MX",
                Some(Hard),
                Some("5.1.10"),
            ),
            (
                550,
                "5.2.1 The email account that you tried to reach is disabled",
                Some(Hard),
                Some("5.2.1"),
            ),
            (552, "5.2.2 Mailbox full", Some(Soft), Some("5.2.2")),
            // Postfix's reject_unknown_sender_domain: our VERP domain, not the recipient.
            (
                550,
                "5.1.8 <bounces+01jm1@shop.example>: Sender address rejected: Domain not found",
                Some(Policy),
                Some("5.1.8"),
            ),
            (
                452,
                "4.2.2 The email account that you tried to reach is over quota",
                Some(Soft),
                Some("4.2.2"),
            ),
            (
                451,
                "4.3.0 Temporary server error",
                Some(Soft),
                Some("4.3.0"),
            ),
            (
                421,
                "4.7.28 Our system has detected an unusual rate of unsolicited mail",
                Some(RateLimit),
                Some("4.7.28"),
            ),
            (550, "Ip frequency limited [xx]", Some(RateLimit), None),
            (
                550,
                "Connection frequency limited. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000722",
                Some(RateLimit),
                None,
            ),
            (
                451,
                "RP:TRC 163.com too many recipients",
                Some(RateLimit),
                None,
            ),
            (
                550,
                "5.7.1 Message rejected as spam",
                Some(Policy),
                Some("5.7.1"),
            ),
            (
                550,
                "5.7.26 Unauthenticated email from example.com is not accepted due to DMARC",
                Some(Policy),
                Some("5.7.26"),
            ),
            (
                554,
                "Message refused: your IP is on a blocklist",
                Some(Policy),
                None,
            ),
            (550, "Mailbox not found", Some(Hard), None),
            (550, "Requested action not taken", Some(Soft), None),
            (552, "Message size exceeds fixed limit", Some(Soft), None),
        ];
        for (code, text, kind, status) in cases {
            let got = classify(Some(*code), text);
            assert_eq!(got.as_ref().map(|b| b.kind), *kind, "{code} {text}");
            assert_eq!(enhanced_status(text).as_deref(), *status, "{text}");
        }
    }

    #[test]
    fn a_status_alone_is_enough() {
        assert_eq!(
            classify(None, "5.1.1").map(|b| b.kind),
            Some(BounceKind::Hard)
        );
        assert_eq!(classify(None, "connection reset"), None);
        assert_eq!(enhanced_status("v1.2.3.4 and 5.1.1."), Some("5.1.1".into()));
        assert_eq!(enhanced_status("version 10.1.1"), None);
    }
}
