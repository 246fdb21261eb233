//! Values every layer reads the same way: secrets by reference, time zones, language tags,
//! phone numbers, times on the command line, sizes, and the ids the outbox hands out.
//!
//! They sit at the bottom of the house so that the config, the jobs, ingest and the API
//! agree on what a valid zone or number is without importing each other.

use crate::diag::did_you_mean;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::path::PathBuf;

/// Where a secret comes from; read only when a connection is made, so a config can be
/// checked (and the daemon started) on a machine that lacks some secrets.
#[derive(Debug, Clone, Default)]
pub enum Secret {
    #[default]
    None,
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// The secret's value; the error names the variable or file, never the value.
    pub fn read(&self, field: &str) -> anyhow::Result<Option<String>> {
        match self {
            Secret::None => Ok(None),
            Secret::Env(var) => std::env::var(var).map(Some).map_err(|_| {
                anyhow::anyhow!("{field}: environment variable {var} is not set (export it, or keep the secret in a file: the matching *_file key)")
            }),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| anyhow::anyhow!("{field}: cannot read {}: {e}", p.display())),
        }
    }

    pub fn is_set(&self) -> bool {
        !matches!(self, Secret::None)
    }
}

/// A time zone by IANA name, with a suggestion when it is misspelt.
pub fn parse_tz(name: &str) -> Result<Tz, Option<String>> {
    name.parse::<Tz>().map_err(|_| {
        did_you_mean(name, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()))
            .or_else(|| Some("use an IANA name such as Asia/Shanghai or America/New_York".into()))
    })
}

/// A BCP 47-shaped language tag (`zh-CN`, `en`, `pt-BR`); enough to pick template files.
pub fn check_locale(tag: &str) -> Result<(), String> {
    let mut parts = tag.split('-');
    let lang = parts.next().unwrap_or("");
    let lang_ok = (2..=3).contains(&lang.len()) && lang.chars().all(|c| c.is_ascii_alphabetic());
    let rest_ok =
        parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if lang_ok && rest_ok {
        Ok(())
    } else {
        Err(format!("`{tag}` is not a language tag"))
    }
}

/// Any written form of an international number → E.164 (`+8613800138000`).
pub fn normalise_phone(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if !trimmed.starts_with('+') {
        return Err(format!("`{raw}` needs a country code, e.g. +8613800138000"));
    }
    let n = phonenumber::parse(None, trimmed)
        .map_err(|e| format!("`{raw}` is not a phone number ({e})"))?;
    if !phonenumber::is_valid(&n) {
        return Err(format!("`{raw}` is not a valid number for its country"));
    }
    Ok(n.format().mode(phonenumber::Mode::E164).to_string())
}

/// `+` and 8 to 15 digits, the first not 0 (E.164's shape), without the number database:
/// what a config check can afford at every start.
pub fn is_e164_shaped(n: &str) -> bool {
    n.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// Whether a secret a request presented (a token, a signature, a CSRF token) is the one we
/// hold, in time that does not depend on where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// Text sealed into a link (an unsubscribe token, a customer's page for a viewer who may
/// not read addresses): ChaCha20-Poly1305, `base64url(nonce ‖ ciphertext ‖ tag)`, so the
/// link says nothing to whoever sees it, and a changed character does not open. The nonce is
/// derived from the payload under a key of its own (HMAC-SHA256 of `nonce_label ‖ payload`):
/// each payload gets one stable token, and no nonce is used for two payloads.
pub struct Seal {
    key: ring::aead::LessSafeKey,
    nonce_key: Vec<u8>,
    nonce_label: &'static [u8],
    /// Bound to every token: one sealed for another use never opens as this one.
    aad: &'static [u8],
}

/// Why a token did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsealed {
    /// Not base64url, or too short to hold a nonce and a tag.
    Malformed,
    /// Sealed under another key or for another use, or altered.
    Forged,
}

impl Seal {
    pub const NONCE_LEN: usize = ring::aead::NONCE_LEN;
    /// ChaCha20-Poly1305's tag.
    pub const TAG_LEN: usize = 16;

    pub fn new(
        key: &[u8; 32],
        nonce_key: &[u8],
        nonce_label: &'static [u8],
        aad: &'static [u8],
    ) -> Seal {
        use ring::aead::{CHACHA20_POLY1305, LessSafeKey, UnboundKey};
        #[allow(clippy::expect_used)]
        let key =
            UnboundKey::new(&CHACHA20_POLY1305, key).expect("ChaCha20-Poly1305 takes 32 bytes");
        Seal {
            key: LessSafeKey::new(key),
            nonce_key: nonce_key.to_vec(),
            nonce_label,
            aad,
        }
    }

    fn nonce(&self, payload: &[u8]) -> [u8; Seal::NONCE_LEN] {
        use hmac::{KeyInit, Mac};
        #[allow(clippy::expect_used)]
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.nonce_key)
            .expect("HMAC takes any key length");
        mac.update(self.nonce_label);
        mac.update(payload);
        let mut nonce = [0u8; Seal::NONCE_LEN];
        for (n, d) in nonce.iter_mut().zip(mac.finalize().into_bytes()) {
            *n = d;
        }
        nonce
    }

    pub fn seal(&self, payload: &[u8]) -> String {
        use base64::Engine;
        use ring::aead::{Aad, Nonce};
        let nonce = self.nonce(payload);
        let mut sealed = payload.to_vec();
        #[allow(clippy::expect_used)]
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad),
                &mut sealed,
            )
            .expect("sealing fails only for payloads of hundreds of GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, token: &str) -> Result<Vec<u8>, Unsealed> {
        use base64::Engine;
        use ring::aead::{Aad, Nonce};
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| Unsealed::Malformed)?;
        if raw.len() < Seal::NONCE_LEN + Seal::TAG_LEN {
            return Err(Unsealed::Malformed);
        }
        let (nonce, sealed) = raw.split_at(Seal::NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealed::Malformed)?;
        let mut sealed = sealed.to_vec();
        let len = self
            .key
            .open_in_place(nonce, Aad::from(self.aad), &mut sealed)
            .map_err(|_| Unsealed::Forged)?
            .len();
        sealed.truncate(len);
        Ok(sealed)
    }
}

/// A time as people give it on the command line or in a query (`--now`, `--since`,
/// `?until=`): an instant (RFC 3339), or a date meaning its midnight in the business's zone
/// (`defaults.timezone`), as a marketer means "the 24th". The zone is the config's, known only
/// once it is read, so a date waits here until [`When::in_zone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    At(DateTime<Utc>),
    Day(NaiveDate),
}

impl When {
    pub fn parse(s: &str) -> Result<When, String> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(When::At(t.with_timezone(&Utc)));
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(When::Day)
            .map_err(|_| {
                format!(
                    "`{s}` is not an RFC 3339 time (2026-11-23T10:00:00+08:00) or a date (2026-11-23)"
                )
            })
    }

    /// The instant: a date's first moment in `tz` (01:00 where a DST change skips midnight).
    pub fn in_zone(self, tz: Tz) -> DateTime<Utc> {
        match self {
            When::At(t) => t,
            When::Day(d) => local_instant(tz, d.and_time(NaiveTime::MIN)),
        }
    }
}

/// A local wall-clock time as an instant: the earlier of two in a DST overlap, and the first
/// minute that exists after a DST gap (09:00 that does not exist becomes 10:00).
pub fn local_instant(tz: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    let mut n = naive;
    for _ in 0..(24 * 60) {
        match tz.from_local_datetime(&n) {
            chrono::LocalResult::Single(t) => return t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(a, _) => return a.with_timezone(&Utc),
            chrono::LocalResult::None => n += chrono::Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&naive)
}

/// `1MiB`, `512KiB`, `2000000` (bytes).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: usize = n.parse().map_err(|_| format!("`{text}` is not a size"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "k" => 1024,
        "MiB" | "MB" | "M" => 1024 * 1024,
        other => {
            return Err(format!(
                "`{text}` has an unknown unit `{other}` (B, KiB, MiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Outbox ids: ULIDs, so they sort by the time they were made (the caller's `now`) and are
/// safe in a Message-ID. After the time come [`next_in_sequence`]'s 16 bits and 64 random
/// ones (a return path `bounces+{id}@` must not be guessable from another message's id).
pub fn new_id(now: DateTime<Utc>) -> String {
    use rand::RngCore;
    let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let random = (u128::from(next_in_sequence()) << 64) | u128::from(rand::rng().next_u64());
    let mut buf = [0u8; ulid::ULID_LEN];
    let id = ulid::Ulid::from_parts(ms, random).array_to_str(&mut buf);
    id.make_ascii_lowercase();
    id.to_string()
}

/// A per-message token for links (`{{message.token}}`): after `at` in milliseconds (48 bits;
/// when the message is planned) and [`next_in_sequence`] (16 bits), 112 random bits,
/// URL-safe. The prefix is for the store, not the reader: tokens of messages planned together
/// sort together, so the unique index on them grows at one place instead of taking a random
/// leaf per message (random tokens were 45% of the WAL frames an `events import` wrote).
pub fn new_token(at: DateTime<Utc>) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 22];
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6..8].copy_from_slice(&next_in_sequence().to_be_bytes());
    // The thread's ChaCha generator (seeded and reseeded from the OS), which `new_id` draws
    // from too: asking the OS each time was a `getrandom` system call per planned message,
    // 200,000 in an import of 200,000 events.
    rand::rng().fill_bytes(&mut b[8..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The next of a count this process keeps (wrapping at 65,536), put after the time in ids
/// and tokens. A millisecond says little about order when many are made at once: a dispatch
/// under a stopped clock (`run --once --now`) plans every reminder at the same instant, an
/// import a batch of messages, and with random bits after the time each one's id and token
/// went to a random leaf of the index over the run's ones so far: 2 of the 2.8 WAL frames a
/// message of a 200,000-message dispatch wrote, and a checkpointed page each. In the order
/// they are made, they grow at one place; once the count wraps, at one place of the previous
/// round's, which is still one leaf after another. Not `ulid::Generator`'s monotonic ids: it
/// adds one to the last id (the next would be guessable from one a customer sees in a return
/// path), and asked for an earlier time than the last it keeps the last one's.
fn next_in_sequence() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static SEQUENCE: AtomicU16 = AtomicU16::new(0);
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("2000"), Ok(2000));
        assert!(parse_size("2 GiB").is_err());
        assert!(parse_size("99999999999999999999MiB").is_err());
    }

    #[test]
    fn tokens_are_random_after_the_time_they_were_made() {
        use base64::Engine;
        let at = DateTime::parse_from_rfc3339("2026-11-23T09:00:00.123Z")
            .expect("a time")
            .with_timezone(&Utc);
        let (a, b) = (new_token(at), new_token(at));
        assert_ne!(a, b);
        // The first 8 characters are exactly the 6 bytes of the time.
        assert_eq!(a[..8], b[..8]);
        for t in [&a, &b] {
            assert_eq!(t.len(), 30, "{t}");
            assert!(
                t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            );
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .expect("base64url");
            let mut ms = [0u8; 8];
            ms[2..].copy_from_slice(&raw[..6]);
            assert_eq!(i64::from_be_bytes(ms), at.timestamp_millis());
        }
        let later = new_token(at + chrono::Duration::milliseconds(1));
        assert_ne!(a[..8], later[..8]);
    }

    /// Ids and tokens made at one instant (a stopped clock, a batch) follow each other in the
    /// order they were made, so the store's indexes on them grow at one place.
    #[test]
    fn ids_and_tokens_made_at_one_instant_sort_in_the_order_they_were_made() {
        use base64::Engine;
        let at = DateTime::parse_from_rfc3339("2026-11-24T00:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let ids: Vec<String> = (0..100).map(|_| new_id(at)).collect();
        let tokens: Vec<Vec<u8>> = (0..100)
            .map(|_| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(new_token(at))
                    .expect("base64url")
            })
            .collect();
        let id_count = |id: &String| {
            let u = ulid::Ulid::from_string(id).expect("a ULID");
            assert_eq!(u.timestamp_ms(), 1_795_478_400_000, "{id}");
            (u.random() >> 64) as u16
        };
        let token_count = |t: &Vec<u8>| u16::from_be_bytes([t[6], t[7]]);
        /// Each follows the one before: the count moves on by one or a few (other tests make
        /// ids meanwhile), and the value sorts after it unless the count wrapped.
        fn in_order<T: PartialOrd + std::fmt::Debug>(made: &[T], count: impl Fn(&T) -> u16) {
            for w in made.windows(2) {
                let (a, b) = (count(&w[0]), count(&w[1]));
                assert!((1..1000).contains(&b.wrapping_sub(a)), "{w:?}");
                assert!(b < a || w[0] < w[1], "{w:?}");
            }
        }
        in_order(&ids, id_count);
        in_order(&tokens, token_count);
        // The random bits still differ from one to the next.
        let low = |id: &str| ulid::Ulid::from_string(id).expect("a ULID").random() as u64;
        assert!(ids.windows(2).all(|w| low(&w[0]) != low(&w[1])));
        assert!(tokens.windows(2).all(|w| w[0][8..] != w[1][8..]));
    }

    #[test]
    fn times_and_dates() {
        let shanghai: Tz = "Asia/Shanghai".parse().expect("a zone");
        let at = |s: &str, tz: Tz| When::parse(s).map(|w| w.in_zone(tz).to_rfc3339());
        // A date is its midnight in the business's zone, not in UTC.
        assert_eq!(
            at("2026-11-23", shanghai),
            Ok("2026-11-22T16:00:00+00:00".into())
        );
        assert_eq!(
            at("2026-11-23", Tz::UTC),
            Ok("2026-11-23T00:00:00+00:00".into())
        );
        // An instant is itself, whatever the zone.
        assert_eq!(
            at("2026-11-23T10:00:00+08:00", Tz::America__New_York),
            Ok("2026-11-23T02:00:00+00:00".into())
        );
        // Where a DST change skips midnight (Santiago, 2026-09-06: 00:00 → 01:00), the day
        // starts at 01:00.
        assert_eq!(
            at("2026-09-06", Tz::America__Santiago),
            Ok("2026-09-06T04:00:00+00:00".into())
        );
        assert!(When::parse("23/11/2026").is_err());
        assert!(When::parse("2026-02-30").is_err());
    }

    #[test]
    fn zones_and_locales() {
        assert!(parse_tz("Asia/Shanghai").is_ok());
        assert_eq!(
            parse_tz("Asia/Shanghia").unwrap_err().as_deref(),
            Some("did you mean `Asia/Shanghai`?")
        );
        for ok in ["zh-CN", "en", "pt-BR", "zh-Hans-CN"] {
            assert!(check_locale(ok).is_ok(), "{ok}");
        }
        for bad in ["zh_CN", "", "e", "english-x"] {
            assert!(check_locale(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn e164_shape() {
        assert!(is_e164_shaped("+15005550006"));
        assert!(!is_e164_shaped("+0123456789"));
        assert!(!is_e164_shaped("15005550006"));
    }
}
