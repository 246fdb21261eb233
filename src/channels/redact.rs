//! Removing a channel's credentials from what the other side says, before it becomes an
//! attempt's detail or a log line.
//!
//! The details are built from servers' answers, and a server may echo what it was sent (an
//! SMTP relay quoting the login it refused, a misconfigured proxy reflecting headers, an error
//! page quoting the query string); so every detail is scrubbed of each credential in every
//! form it was sent in. SMS gateways (`sms::outcome`) and the SMTP pool (`smtp`) share this.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The credentials of one channel, in every form they travel in.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    /// Secrets shorter than 4 characters are not scrubbed (they would mangle ordinary words).
    pub fn new(secrets: &[&str]) -> Redactor {
        let mut needles: Vec<String> = Vec::new();
        for s in secrets.iter().filter(|s| s.len() >= 4) {
            needles.push(s.to_string());
            needles.push(STANDARD.encode(s));
            let encoded: String = form_urlencoded::byte_serialize(s.as_bytes()).collect();
            needles.push(encoded);
        }
        let mut r = Redactor { needles };
        r.sort();
        r
    }

    fn sort(&mut self) {
        // Longest first, so a secret inside a longer needle does not leave a tail behind.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        self.needles.dedup();
    }

    /// Add the `user:password` pair of HTTP basic auth, in the base64 form it travels in.
    pub fn with_basic(mut self, user: &str, password: &str) -> Redactor {
        self.needles
            .push(STANDARD.encode(format!("{user}:{password}")));
        self.sort();
        self
    }

    /// Add SMTP `AUTH PLAIN`'s initial response, base64 of `\0user\0password` (RFC 4616).
    /// (`AUTH LOGIN` sends the password alone in base64, which [`Redactor::new`] covers.)
    pub fn with_sasl_plain(mut self, user: &str, password: &str) -> Redactor {
        self.needles
            .push(STANDARD.encode(format!("\0{user}\0{password}")));
        self.sort();
        self
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), "[redacted]");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_removes_every_form_of_a_secret() {
        let r = Redactor::new(&["s3cr3t+/=key", "ab"]).with_basic("AC1", "tok3n-value");
        let text = "echo: s3cr3t+/=key, s3cr3t%2B%2F%3Dkey, czNjcjN0Ky89a2V5, Basic QUMxOnRvazNuLXZhbHVl, ab";
        let clean = r.scrub(text);
        assert!(!clean.contains("s3cr3t"), "{clean}");
        assert!(!clean.contains("czNjcjN0Ky89a2V5"), "{clean}");
        assert!(!clean.contains("QUMxOnRvazNuLXZhbHVl"), "{clean}");
        assert!(
            clean.ends_with(", ab"),
            "too-short secrets are not scrubbed: {clean}"
        );
    }

    #[test]
    fn smtp_logins_are_scrubbed_in_the_forms_they_travel_in() {
        let r = Redactor::new(&["hunter22"]).with_sasl_plain("care", "hunter22");
        // AUTH PLAIN AGNhcmUAaHVudGVyMjI= ; AUTH LOGIN: aHVudGVyMjI=
        let reply = "535 5.7.8 bad login AGNhcmUAaHVudGVyMjI= (aHVudGVyMjI=) care/hunter22";
        let clean = r.scrub(reply);
        assert_eq!(
            clean,
            "535 5.7.8 bad login [redacted] ([redacted]) care/[redacted]"
        );
    }
}
