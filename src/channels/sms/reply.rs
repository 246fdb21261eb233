//! Inbound replies: is this an opt-out?
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
//! "stop please" is *not* an opt-out: Twilio documents that only single-word replies trigger
//! its block ("replying STOP PLEASE or PLEASE CANCEL will not"), and we follow the same
//! convention so our suppression list and the carrier's agree. A longer reply is a message
//! for a person to read, not a keyword.

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

/// Whether an inbound SMS asks us to stop sending (see the module doc for the rule).
pub fn is_stop_reply(text: &str) -> bool {
    let folded: String = text.chars().map(fold_width).collect();
    let word = folded.trim_matches(|c: char| !c.is_alphanumeric());
    let upper = word.to_uppercase();
    OPT_OUT.contains(&upper.as_str())
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
        for text in no {
            assert!(!is_stop_reply(text), "{text:?} should not be an opt-out");
        }
    }
}
