//! How many SMS a text costs: GSM-7 or UCS-2, and the number of segments.
//!
//! Carriers bill per segment, and one character outside the GSM 03.38 alphabet (an emoji, a
//! curly quote, any Chinese) switches the whole message to UCS-2, which cuts a segment from 160
//! characters to 70. Marketing wants to see that before a campaign goes out, and support wants
//! to know why a customer got three messages. The counting follows 3GPP TS 23.038: the basic
//! table costs one septet per character, the extension table two (escape + character); a
//! single message holds 160 septets or 70 UTF-16 units, a concatenated one loses 7 septets or 3
//! units per segment to the user data header (153 / 67). An escape pair or a surrogate pair is
//! never split across two segments, as handsets could not reassemble it, so a long text can
//! need one segment more than a plain division says.

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use std::fmt;

/// GSM 03.38 basic character set, in code order (0x1B, the escape to the extension table, is
/// not a character of its own and is left out).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// GSM 03.38 extension table: each costs an escape septet plus its own.
const EXTENSION: &str = "\u{0C}^{}\\[~]|€";

const GSM_SINGLE: usize = 160;
const GSM_PART: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_PART: usize = 67;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
}

/// What a text costs on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Septets for GSM-7, UTF-16 code units for UCS-2.
    pub units: usize,
    /// Messages the carrier sends (and bills); 0 for an empty text.
    pub segments: usize,
}

impl fmt::Display for Segments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.segments == 1 { "" } else { "s" };
        write!(
            f,
            "{} segment{s}, {}",
            self.segments,
            self.encoding.as_str()
        )
    }
}

/// Septets a character takes in GSM-7, or `None` when it is outside the alphabet.
fn gsm_septets(c: char) -> Option<usize> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding, units and segment count of `text`.
pub fn segments(text: &str) -> Segments {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm_septets).collect();
    let (encoding, widths, single, part) = match gsm {
        Some(w) => (Encoding::Gsm7, w, GSM_SINGLE, GSM_PART),
        None => (
            Encoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            UCS2_SINGLE,
            UCS2_PART,
        ),
    };
    let units: usize = widths.iter().sum();
    let segments = if units == 0 {
        0
    } else if units <= single {
        1
    } else {
        // Fill each part greedily; a character that does not fit whole starts the next one.
        let mut count = 1;
        let mut used = 0;
        for w in widths {
            if used + w > part {
                count += 1;
                used = 0;
            }
            used += w;
        }
        count
    };
    Segments {
        encoding,
        units,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    #[test]
    fn table() {
        let a = |n: usize| "a".repeat(n);
        let cases: Vec<(String, Encoding, usize, usize)> = vec![
            ("".into(), Gsm7, 0, 0),
            ("Hello".into(), Gsm7, 5, 1),
            (a(160), Gsm7, 160, 1),
            (a(161), Gsm7, 161, 2),
            (a(306), Gsm7, 306, 2),
            (a(307), Gsm7, 307, 3),
            // Extension characters cost two septets.
            ("€".into(), Gsm7, 2, 1),
            ("{}[]~|^\\".into(), Gsm7, 16, 1),
            (format!("{}€", a(158)), Gsm7, 160, 1),
            (format!("{}€", a(159)), Gsm7, 161, 2),
            // An escape pair is not split: 152 + € does not fit in 153, so € opens part 2.
            (format!("{}€{}", a(152), a(10)), Gsm7, 164, 2),
            (format!("{}€{}", a(152), a(152)), Gsm7, 306, 3),
            // The whole basic table is GSM-7, including the accented letters and Greek.
            (BASIC.into(), Gsm7, BASIC.chars().count(), 1),
            ("Ça coûte 5 £ @ Åse".into(), Ucs2, 18, 1), // û is not in GSM 03.38
            ("Ça va, Åse? 5£ @ ΔΦ".into(), Gsm7, 19, 1),
            // Anything outside the tables switches the whole text to UCS-2.
            ("Hello ç".into(), Ucs2, 7, 1), // lower-case ç is not in the table, only Ç
            ("It’s".into(), Ucs2, 4, 1),    // curly apostrophe
            ("`".into(), Ucs2, 1, 1),
            ("您的订单已送达".into(), Ucs2, 7, 1),
            ("好".repeat(70), Ucs2, 70, 1),
            ("好".repeat(71), Ucs2, 71, 2),
            ("好".repeat(134), Ucs2, 134, 2),
            ("好".repeat(135), Ucs2, 135, 3),
            // Emoji outside the BMP are two UTF-16 units.
            ("👍".into(), Ucs2, 2, 1),
            (format!("{}👍", "好".repeat(68)), Ucs2, 70, 1),
            (format!("{}👍", "好".repeat(69)), Ucs2, 71, 2),
            // A surrogate pair is not split: 66 + 2 does not fit in 67.
            (
                format!("{}👍{}", "好".repeat(66), "好".repeat(10)),
                Ucs2,
                78,
                2,
            ),
            (
                format!("{}👍{}", "好".repeat(66), "好".repeat(66)),
                Ucs2,
                134,
                3,
            ),
        ];
        for (text, encoding, units, segs) in cases {
            let got = segments(&text);
            assert_eq!(
                got,
                Segments {
                    encoding,
                    units,
                    segments: segs
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn tables_are_complete_and_disjoint() {
        assert_eq!(BASIC.chars().count(), 127); // 128 codes less the escape
        assert_eq!(EXTENSION.chars().count(), 10);
        assert!(EXTENSION.chars().all(|c| !BASIC.contains(c)));
    }

    #[test]
    fn display_is_what_support_reads() {
        assert_eq!(segments("hi").to_string(), "1 segment, GSM-7");
        assert_eq!(segments(&"好".repeat(71)).to_string(), "2 segments, UCS-2");
    }
}
