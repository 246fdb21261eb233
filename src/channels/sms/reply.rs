//! Inbound replies: who wrote, and is it an opt-out?
//!
//! Each gateway module parses its provider's inbound format into a [`Reply`] (Twilio's signed
//! form, Aliyun's SmsUp push, an http gateway's JSON through its `reply:` pointers); the
//! sender's number is normalised to E.164 so it matches the suppression list and contacts.
//!
//! A reply counts as an opt-out when, once full-width forms are folded to ASCII (a Chinese
//! keyboard types ＳＴＯＰ), case is ignored, and whitespace and punctuation around it are
//! dropped, it is exactly one of the keywords:
//!
//! - `STOP`, `STOPALL`, `UNSUBSCRIBE`, `CANCEL`, `END`, `QUIT`, `REVOKE`, `OPTOUT`: Twilio's
//!   default opt-out list (REVOKE and OPTOUT since May 2025, for the FCC rule). Twilio blocks
//!   these itself; we must too, or failover would reach the customer through another gateway.
//! - `TD`, `T`, `退订`: what Chinese carriers' and providers' notices ask for ("回T退订",
//!   "回TD退订").
//!
//! `START` and `UNSTOP` opt back in (see [`OPT_IN`]); what that lifts is the store's call
//! (only a suppression the customer's own STOP made).
//!
//! "stop please" is *not* an opt-out: Twilio documents that only single-word replies trigger
//! its block ("replying STOP PLEASE or PLEASE CANCEL will not"), and we follow the same
//! convention so our suppression list and the carrier's agree. A longer reply is a message
//! for a person to read, not a keyword.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

/// One inbound SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The configured gateway it came through.
    pub gateway: String,
    /// The sender, in E.164.
    pub from: String,
    pub text: String,
    /// The provider's id for it (Twilio's `MessageSid`, Aliyun's `sequence_id`), when it
    /// gives one: a repeated push of the same message is then recognised.
    pub provider_id: Option<String>,
}

/// A sender's number as providers write it, in E.164: `+8613800138000` as it is;
/// `8613800138000` with a `+`; a mainland mobile number without its country code
/// (`13800138000`, as Aliyun reports it) with `+86`.
pub fn sender_e164(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let digits = t.trim_start_matches('+');
    let candidate = if t.starts_with('+') {
        t.to_string()
    } else if digits.len() == 11
        && digits.starts_with('1')
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        format!("+86{digits}")
    } else {
        format!("+{digits}")
    };
    crate::values::normalise_phone(&candidate)
        .map_err(|_| format!("`{raw}` is not a phone number in international form"))
}

const OPT_OUT: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "TD",
    "T",
    "退订",
];

/// Full-width ASCII (U+FF01..U+FF5E) and the ideographic space to their ASCII forms.
fn fold_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

/// Opt-in keywords: Twilio's `START` and `UNSTOP`. Not its `YES`: a customer answering a
/// survey question with "yes" must not undo a STOP by accident; where Twilio lifts its own
/// block on YES, we stay the stricter of the two.
const OPT_IN: &[&str] = &["START", "UNSTOP"];

/// The reply as one keyword: full-width folded, trimmed of whitespace and punctuation,
/// upper case.
fn keyword(text: &str) -> String {
    let folded: String = text.chars().map(fold_width).collect();
    folded
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_uppercase()
}

/// Whether an inbound SMS asks us to stop sending (see the module doc for the rule).
pub fn is_stop_reply(text: &str) -> bool {
    OPT_OUT.contains(&keyword(text).as_str())
}

/// Whether an inbound SMS asks us to send again after a STOP (same rule, [`OPT_IN`] words).
pub fn is_start_reply(text: &str) -> bool {
    OPT_IN.contains(&keyword(text).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let yes = [
            "STOP",
            "stop",
            "Stop",
            " stop \n",
            "STOP.",
            "stop!!",
            "\"Stop\"",
            "ＳＴＯＰ",
            "ｓｔｏｐ",
            "\u{3000}ＳＴＯＰ！",
            "TD",
            "td",
            "ＴＤ",
            "T",
            "t",
            "ｔ",
            "退订",
            " 退订。",
            "【退订】",
            "退订！",
            "unsubscribe",
            "Cancel",
            "END",
            "quit",
            "StopAll",
            "revoke",
            "OPTOUT",
            "stop 🙏",
        ];
        for text in yes {
            assert!(is_stop_reply(text), "{text:?} should be an opt-out");
        }
        let no = [
            "",
            "   ",
            "!!!",
            "stop please",
            "please stop",
            "STOP ALL",
            "S T O P",
            "stopp",
            "tt",
            "thanks",
            "退订谢谢",
            "不要退订",
            "OPT OUT",
            "start",
            "好的",
            "t.d",
            "TD1",
        ];
        for text in ["START", "start", "Unstop", "ＳＴＡＲＴ", " start! "] {
            assert!(is_start_reply(text), "{text:?} should be an opt-in");
            assert!(!is_stop_reply(text));
        }
        for text in ["yes", "YES", "start please", "restart", "stop"] {
            assert!(!is_start_reply(text), "{text:?} should not be an opt-in");
        }
        for text in no {
            assert!(!is_stop_reply(text), "{text:?} should not be an opt-out");
        }
    }

    #[test]
    fn senders_in_every_provider_form() {
        for raw in [
            "+8613800138000",
            "8613800138000",
            "13800138000",
            " 13800138000 ",
        ] {
            assert_eq!(sender_e164(raw).as_deref(), Ok("+8613800138000"), "{raw}");
        }
        assert_eq!(sender_e164("+15005550006").as_deref(), Ok("+15005550006"));
        assert!(sender_e164("hello").is_err());
        assert!(sender_e164("1380013800").is_err());
    }
}
