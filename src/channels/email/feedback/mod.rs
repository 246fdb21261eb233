//! Bounces and complaints that come back after the SMTP conversation: delivery status
//! notifications (RFC 3464), feedback reports (ARF, RFC 5965) and the providers' webhook
//! events (`ses`, `sendgrid`, `mailgun`, `postmark`), each read into [`Report`]s.
//!
//! The MIME structure is mail-parser's; what is ours is finding, in each kind of report, the
//! recipient, the status and the words, and what ties it to our message: the VERP return
//! path (`bounces+<outbox id>@…`), our Message-ID (`<outbox id@…>`), or the provider's id.
//! Nothing here touches the store (the top-level `feedback` module records and decides).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

pub mod dsn;
pub mod providers;

use super::bounce::BounceKind;

/// One bounce or complaint about one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub kind: BounceKind,
    /// dsn, arf, ses, sendgrid, mailgun, postmark.
    pub source: &'static str,
    /// The recipient it is about (the complainer, the bounced address).
    pub address: String,
    pub status: Option<String>,
    pub code: Option<i64>,
    /// The server's words, or the feedback type.
    pub detail: String,
    /// Our outbox id, from the VERP address or our Message-ID.
    pub outbox_id: Option<String>,
    /// An id the attempt was recorded under (our Message-ID as sent, `<…>`).
    pub provider_id: Option<String>,
    /// The report's own id: a report delivered twice is kept once.
    pub report_id: Option<String>,
    /// The report as received.
    pub raw: String,
}

/// How our envelope sender and Message-IDs carry the outbox id.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// The return path around `{id}`: (`bounces+`, `@example.com`), lower case.
    verp: Option<(String, String)>,
    /// Our Message-IDs' domain.
    message_id_domain: String,
}

impl Matcher {
    pub fn new(return_path: Option<&str>, message_id_domain: &str) -> Matcher {
        Matcher {
            verp: return_path.and_then(|p| {
                p.split_once("{id}")
                    .map(|(a, b)| (a.to_ascii_lowercase(), b.to_ascii_lowercase()))
            }),
            message_id_domain: message_id_domain.to_ascii_lowercase(),
        }
    }

    /// The outbox id in a VERP address (`bounces+01jabc@example.com`).
    pub fn from_verp(&self, address: &str) -> Option<String> {
        let (pre, post) = self.verp.as_ref()?;
        let a = address.trim().trim_matches(['<', '>']).to_ascii_lowercase();
        let id = a.strip_prefix(pre.as_str())?.strip_suffix(post.as_str())?;
        valid_id(id).then(|| id.to_string())
    }

    /// The outbox id in one of our Message-IDs (`<01jabc@example.com>`).
    pub fn from_message_id(&self, message_id: &str) -> Option<String> {
        let m = message_id
            .trim()
            .trim_matches(['<', '>'])
            .to_ascii_lowercase();
        let (id, domain) = m.rsplit_once('@')?;
        (domain == self.message_id_domain && valid_id(id)).then(|| id.to_string())
    }

    /// Our Message-ID as the attempt recorded it.
    pub fn provider_id(message_id: &str) -> String {
        format!("<{}>", message_id.trim().trim_matches(['<', '>']))
    }
}

/// Whether a feedback report's type (RFC 5965 `Feedback-Type`, SES's
/// `complaintFeedbackType`) is a recipient complaining: `not-spam` says the opposite, and
/// `auth-failure` (RFC 6591) is about our authentication, not the recipient's wishes.
pub(crate) fn complains(feedback_type: &str) -> bool {
    !matches!(
        feedback_type.trim().to_ascii_lowercase().as_str(),
        "not-spam" | "auth-failure"
    )
}

/// Outbox ids are ULIDs in lower case, and ids from elsewhere (tests, imports) are short
/// tokens: letters, digits, `-`, `_`, `.`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
