//! One mail a mailbox received about our mail: a delivery status notification (RFC 3464
//! `multipart/report; report-type=delivery-status`) or a feedback report (RFC 5965
//! `report-type=feedback-report`, the ARF that mailbox providers' complaint loops send).
//!
//! mail-parser reads the MIME structure; the report parts themselves are blocks of
//! `Field: value` lines (per message, then per recipient) that we read here. A DSN's
//! `Action: delayed` or `delivered` is no bounce; `failed` is classified by its `Status`
//! and `Diagnostic-Code` with the same rules as a synchronous refusal.

use super::super::bounce::{self, BounceKind};
use super::{Matcher, Report};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

/// What one received mail holds.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Reports(Vec<Report>),
    /// Not a DSN or feedback report (an auto-reply, a person's answer): why.
    NotAReport(String),
}

/// Read one mail (a DSN or an ARF report). `to` is the envelope recipient when the caller
/// knows it (postfix's `${recipient}`): the VERP address the bounce was sent to.
pub fn parse(raw: &[u8], to: Option<&str>, m: &Matcher) -> Parsed {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Parsed::NotAReport("not a mail message".into());
    };
    let raw_text = String::from_utf8_lossy(raw).into_owned();
    let report_id = msg.message_id().map(str::to_string);
    // The VERP address: the envelope recipient, else the headers a delivery agent adds.
    let verp_id = to
        .into_iter()
        .map(str::to_string)
        .chain(
            ["X-Original-To", "Delivered-To", "Envelope-To", "To"]
                .iter()
                .filter_map(|h| msg.header_raw(*h).map(str::to_string)),
        )
        .flat_map(|v| {
            v.split(',')
                .map(|a| {
                    let a = a.trim();
                    match (a.find('<'), a.rfind('>')) {
                        (Some(s), Some(e)) if s < e => a.get(s + 1..e).unwrap_or(a).to_string(),
                        _ => a.to_string(),
                    }
                })
                .collect::<Vec<_>>()
        })
        .find_map(|a| m.from_verp(&a));
    let mut status_part: Option<String> = None;
    let mut feedback_part: Option<String> = None;
    let mut original: Option<Vec<u8>> = None;
    for part in &msg.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let kind = format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase()
        );
        let body = match &part.body {
            PartType::Message(inner) => inner.raw_message().to_vec(),
            _ => part.contents().to_vec(),
        };
        match kind.as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                status_part = Some(String::from_utf8_lossy(&body).into_owned());
            }
            "message/feedback-report" => {
                feedback_part = Some(String::from_utf8_lossy(&body).into_owned());
            }
            "message/rfc822"
            | "text/rfc822-headers"
            | "message/global"
            | "message/global-headers" => {
                original.get_or_insert(body);
            }
            _ => {}
        }
    }
    let original = original
        .as_deref()
        .and_then(|o| MessageParser::default().parse(o));
    let original_id = original
        .as_ref()
        .and_then(|o| o.message_id().map(str::to_string));
    let outbox_from_original = original_id.as_deref().and_then(|i| m.from_message_id(i));
    if let Some(fields) = feedback_part {
        return Parsed::Reports(arf(
            &fields,
            original.as_ref(),
            verp_id.or(outbox_from_original),
            original_id,
            report_id,
            raw_text,
            m,
        ));
    }
    let Some(fields) = status_part else {
        return Parsed::NotAReport(
            "no message/delivery-status or message/feedback-report part".into(),
        );
    };
    let blocks = blocks(&fields);
    let envelope_id = blocks
        .first()
        .and_then(|b| field(b, "original-envelope-id"))
        .filter(|v| !v.eq_ignore_ascii_case("none"));
    let outbox_id = verp_id
        .or(outbox_from_original)
        .or_else(|| envelope_id.and_then(|e| m.from_message_id(&e).or(Some(e))));
    let mut out = Vec::new();
    for b in blocks.iter().skip(1) {
        let Some(recipient) =
            field(b, "final-recipient").or_else(|| field(b, "original-recipient"))
        else {
            continue;
        };
        let address = recipient
            .split_once(';')
            .map(|(_, a)| a.trim().to_string())
            .unwrap_or(recipient);
        let action = field(b, "action").unwrap_or_default().to_ascii_lowercase();
        if action != "failed" {
            continue;
        }
        let status = field(b, "status");
        let diagnostic = field(b, "diagnostic-code").map(|d| {
            d.split_once(';')
                .map(|(_, t)| t.trim().to_string())
                .unwrap_or(d)
        });
        let text = diagnostic.clone().unwrap_or_default();
        let code = text
            .split_whitespace()
            .next()
            .and_then(|w| w.trim_end_matches('-').parse::<i64>().ok())
            .filter(|c| (200..600).contains(c));
        let words = format!("{} {}", status.clone().unwrap_or_default(), text);
        let Some(b) = bounce::classify(code, &words) else {
            continue;
        };
        out.push(Report {
            kind: b.kind,
            source: "dsn",
            address,
            status: status.or(b.status),
            code,
            detail: if text.is_empty() {
                "failed (no diagnostic code)".into()
            } else {
                text
            },
            outbox_id: outbox_id.clone(),
            provider_id: original_id.as_deref().map(Matcher::provider_id),
            report_id: report_id.as_ref().map(|r| format!("{r}/{}", out.len() + 1)),
            raw: raw_text.clone(),
        });
    }
    if out.is_empty() {
        return Parsed::NotAReport(
            "a delivery status without a failed recipient (delayed or delivered)".into(),
        );
    }
    Parsed::Reports(out)
}

/// A feedback report: one complaint about the original recipient.
fn arf(
    fields: &str,
    original: Option<&Message>,
    outbox_id: Option<String>,
    original_id: Option<String>,
    report_id: Option<String>,
    raw: String,
    m: &Matcher,
) -> Vec<Report> {
    let blocks = blocks(fields);
    let Some(b) = blocks.first() else {
        return Vec::new();
    };
    let feedback_type = field(b, "feedback-type").unwrap_or_else(|| "abuse".into());
    if !super::complains(&feedback_type) {
        return Vec::new();
    }
    let address = field(b, "original-rcpt-to").or_else(|| {
        original
            .and_then(|o| o.to())
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(str::to_string)
    });
    let Some(address) = address else {
        return Vec::new();
    };
    let outbox_id =
        outbox_id.or_else(|| field(b, "original-mail-from").and_then(|f| m.from_verp(&f)));
    let agent = field(b, "user-agent").unwrap_or_default();
    vec![Report {
        kind: BounceKind::Complaint,
        source: "arf",
        address: address.trim_matches(['<', '>']).to_string(),
        status: None,
        code: None,
        detail: format!(
            "feedback-type {feedback_type}{}",
            if agent.is_empty() {
                String::new()
            } else {
                format!(" from {agent}")
            }
        ),
        outbox_id,
        provider_id: original_id.as_deref().map(Matcher::provider_id),
        report_id,
        raw,
    }]
}

/// Blocks of fields separated by blank lines, each as (lower-case name, value) with
/// continuation lines folded.
fn blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            cur.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn field(block: &[(String, String)], name: &str) -> Option<String> {
    block
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// The mails in an mbox file (`From ` lines between them) or a single mail.
pub fn split_mbox(bytes: &[u8]) -> Vec<Vec<u8>> {
    if !bytes.starts_with(b"From ") {
        return vec![bytes.to_vec()];
    }
    mail_parser::mailbox::mbox::MessageIterator::new(std::io::Cursor::new(bytes))
        .filter_map(|m| m.ok())
        .map(|m| m.contents().to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> Matcher {
        Matcher::new(Some("bounces+{id}@example.com"), "example.com")
    }

    const DSN: &str = "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n\
To: bounces+01jm1@example.com\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <20261123.ABC@mx.example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
\r\n\
--B\r\n\
Content-Type: text/plain\r\n\
\r\n\
I'm sorry to have to inform you that your message could not be delivered.\r\n\
--B\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.net\r\n\
Original-Envelope-Id: 01jm1\r\n\
\r\n\
Final-Recipient: rfc822; gone@example.org\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address\r\n\
\x20rejected: User unknown in virtual mailbox table\r\n\
\r\n\
Final-Recipient: rfc822; slow@example.org\r\n\
Action: delayed\r\n\
Status: 4.4.1\r\n\
\r\n\
--B\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: Shop <care@example.com>\r\n\
To: gone@example.org\r\n\
Message-ID: <01jm1@example.com>\r\n\
\r\n\
--B--\r\n";

    /// A feedback report of `kind` about care@'s mail to rcpt@example.org.
    fn feedback(kind: &str) -> String {
        format!(
            "From: <abuse@mail.example.net>\r\n\
To: <abuse@example.com>\r\n\
Subject: report\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"B\"\r\n\
\r\n\
--B\r\n\
Content-Type: text/plain\r\n\
\r\n\
A report.\r\n\
--B\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: {kind}\r\n\
Version: 1\r\n\
Original-Rcpt-To: <rcpt@example.org>\r\n\
\r\n\
--B--\r\n"
        )
    }

    #[test]
    fn only_feedback_that_complains_is_a_complaint() {
        let reports = |kind: &str| match parse(feedback(kind).as_bytes(), None, &matcher()) {
            Parsed::Reports(r) => r,
            _ => panic!("{kind}: not parsed"),
        };
        for kind in ["abuse", "fraud", "virus", "other"] {
            let r = reports(kind);
            assert_eq!(r.len(), 1, "{kind}: {r:?}");
            assert_eq!(r[0].kind, BounceKind::Complaint);
            assert_eq!(r[0].address, "rcpt@example.org");
        }
        // The recipient said it is not spam; a DMARC failure report is about us.
        for kind in ["not-spam", "auth-failure", "Not-Spam"] {
            assert!(reports(kind).is_empty(), "{kind} is no complaint");
        }
    }

    #[test]
    fn a_dsn_yields_its_failed_recipients_matched_by_verp() {
        let Parsed::Reports(r) = parse(DSN.as_bytes(), None, &matcher()) else {
            panic!("not parsed")
        };
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].kind, BounceKind::Hard);
        assert_eq!(r[0].address, "gone@example.org");
        assert_eq!(r[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(r[0].code, Some(550));
        assert!(
            r[0].detail
                .contains("User unknown in virtual mailbox table")
        );
        assert_eq!(r[0].outbox_id.as_deref(), Some("01jm1"));
        assert_eq!(r[0].provider_id.as_deref(), Some("<01jm1@example.com>"));
    }

    #[test]
    fn verp_and_message_ids_carry_the_outbox_id() {
        let m = matcher();
        assert_eq!(
            m.from_verp("<Bounces+01JX@Example.com>"),
            Some("01jx".into())
        );
        assert_eq!(m.from_verp("bounces+01jx@other.com"), None);
        assert_eq!(m.from_verp("bounces+a b@example.com"), None);
        assert_eq!(m.from_message_id("<01jx@example.com>"), Some("01jx".into()));
        assert_eq!(m.from_message_id("<01jx@elsewhere.com>"), None);
    }

    #[test]
    fn a_mail_that_is_no_report_is_said_to_be_so() {
        let p = parse(
            b"From: a@b\r\nSubject: hi\r\n\r\nout of office\r\n",
            None,
            &matcher(),
        );
        assert!(matches!(p, Parsed::NotAReport(_)), "{p:?}");
    }
}
