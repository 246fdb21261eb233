//! One-click unsubscribe links (RFC 8058) that cannot be forged and do not tell whom they
//! are for.
//!
//! A token is the sealed payload `<channel>|<address>`: ChaCha20-Poly1305 under a key derived
//! from the configured one, with a nonce derived from the payload (the same address always
//! gets the same token, and no nonce is ever used for two payloads),
//! `base64url(nonce ‖ ciphertext ‖ tag)`. Whoever holds it can unsubscribe exactly that
//! address from that channel and nothing else; changing one character fails; and the link
//! says nothing about the address to whoever sees it on the way (a proxy's log, browser
//! history, a forwarded email).
//!
//! Tokens of the first format (`v1`: `base64url("v1|<channel>|<address>") .
//! base64url(HMAC-SHA256(key, payload)[..16])`, the address readable by anyone) are still in
//! customers' mailboxes and are still honoured; new links are never minted in it. The HTTP
//! endpoints that accept tokens come with the API; `aftercare unsubscribe TOKEN` applies one
//! from the command line (e.g. for a mailto request).

// What these modules handle comes from outside (events, templates, servers' answers): no
// `unwrap`, and no indexing or slicing that could panic on it (issue 17). Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice)
)]

use crate::check::Checker;
use crate::values::{Seal, Secret, Unsealed};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;
/// The truncated HMAC of a v1 token.
const MAC_LEN: usize = 16;
/// Bound to every sealed token: a ciphertext made for something else never opens as one.
const AAD: &[u8] = b"aftercare unsubscribe v2";
/// The shortest sealed token, in characters: a nonce, a tag and `c|a` (the OpenAPI pattern
/// `api::schema::TOKEN` says the same).
pub const SEALED_MIN_LEN: usize = ((Seal::NONCE_LEN + Seal::TAG_LEN + 3) * 4).div_ceil(3);

/// `unsubscribe:` as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnsubscribe {
    /// `https://shop.example.com/u/{token}`
    url: String,
    mailto: Option<String>,
    key_env: Option<String>,
    key_file: Option<String>,
}

/// One-click unsubscribe links (RFC 8058) in every marketing email.
#[derive(Debug, Clone)]
pub struct UnsubscribeConfig {
    /// Holds `{token}`.
    pub url: String,
    pub mailto: Option<String>,
    /// The HMAC key; a `key_file` that does not exist is created with a fresh random key.
    pub key: Secret,
}

pub fn check(c: &mut Checker, raw: RawUnsubscribe) -> UnsubscribeConfig {
    if !raw.url.contains("{token}") {
        c.err(
            "unsubscribe.url",
            format!("`{}` has no {{token}} placeholder", raw.url),
            Some("e.g. https://shop.example.com/u/{token}".into()),
        );
    } else if !raw.url.starts_with("https://") {
        c.err(
            "unsubscribe.url",
            "must be an https:// link (mail providers ignore others)",
            None,
        );
    }
    if let Some(m) = &raw.mailto
        && m.parse::<lettre::Address>().is_err()
    {
        c.err(
            "unsubscribe.mailto",
            format!("`{m}` is not an email address"),
            None,
        );
    }
    let key = c.required_secret(
        "unsubscribe",
        "key",
        (raw.key_env.as_deref(), raw.key_file.as_deref()),
        "key",
        "set key_env or key_file (a missing key_file is created with a random key)",
    );
    UnsubscribeConfig {
        url: raw.url,
        mailto: raw.mailto,
        key,
    }
}

/// Mints and checks unsubscribe tokens with the configured key.
#[derive(Clone)]
pub struct Unsubscriber {
    key: Vec<u8>,
    url: String,
    mailto: Option<String>,
}

impl std::fmt::Debug for Unsubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsubscriber")
            .field("url", &self.url)
            .field("key", &"***")
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature does not match (forged or altered)")]
    BadSignature,
}

impl Unsubscriber {
    /// The key from env or file; a `key_file` that does not exist is created with 32 random
    /// bytes (hex), readable by the owner only.
    pub fn from_config(cfg: &UnsubscribeConfig) -> anyhow::Result<Unsubscriber> {
        if let Secret::File(path) = &cfg.key
            && !path.exists()
        {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes)
                .map_err(|e| anyhow::anyhow!("no randomness for the unsubscribe key: {e}"))?;
            let hex = hex::encode(bytes);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_private(path, &hex).map_err(|e| {
                anyhow::anyhow!(
                    "unsubscribe.key_file: cannot create {}: {e}",
                    path.display()
                )
            })?;
        }
        let key = cfg.key.read("unsubscribe.key")?.unwrap_or_default();
        if key.len() < 16 {
            anyhow::bail!("unsubscribe key: at least 16 characters are needed");
        }
        Ok(Unsubscriber {
            key: key.into_bytes(),
            url: cfg.url.clone(),
            mailto: cfg.mailto.clone(),
        })
    }

    pub fn with_key(key: &[u8], url: &str, mailto: Option<&str>) -> Unsubscriber {
        Unsubscriber {
            key: key.to_vec(),
            url: url.into(),
            mailto: mailto.map(str::to_string),
        }
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    /// A key of its own for sealing, so it never is the v1 signatures' key (the nonces are
    /// HMACs under the configured key with a label of their own).
    fn derived(&self, label: &[u8]) -> [u8; 32] {
        self.mac(label).finalize().into_bytes().into()
    }

    fn sealer(&self) -> Seal {
        Seal::new(
            &self.derived(b"aftercare unsubscribe v2 key"),
            &self.key,
            b"aftercare unsubscribe v2 nonce",
            AAD,
        )
    }

    /// The token for one address on one channel.
    pub fn token(&self, channel: &str, address: &str) -> String {
        self.sealer()
            .seal(format!("{channel}|{address}").as_bytes())
    }

    /// (channel, address) for a genuine token, of either format.
    pub fn verify(&self, token: &str) -> Result<(String, String), TokenError> {
        let token = token.trim();
        if token.contains('.') {
            return self.verify_v1(token);
        }
        let payload = self.sealer().open(token).map_err(|e| match e {
            Unsealed::Malformed => TokenError::Malformed,
            Unsealed::Forged => TokenError::BadSignature,
        })?;
        let text = std::str::from_utf8(&payload).map_err(|_| TokenError::Malformed)?;
        match text.split_once('|') {
            Some((channel, address)) if !channel.is_empty() && !address.is_empty() => {
                Ok((channel.to_string(), address.to_string()))
            }
            _ => Err(TokenError::Malformed),
        }
    }

    /// A token of the first format (the address in the clear, signed).
    fn verify_v1(&self, token: &str) -> Result<(String, String), TokenError> {
        let (p, s) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| TokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed)?;
        if sig.len() != MAC_LEN {
            return Err(TokenError::BadSignature);
        }
        self.mac(&payload)
            .verify_truncated_left(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let text = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
        let mut parts = text.splitn(3, '|');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("v1"), Some(channel), Some(address)) => {
                Ok((channel.to_string(), address.to_string()))
            }
            _ => Err(TokenError::Malformed),
        }
    }

    /// The https link for one address.
    pub fn url(&self, channel: &str, address: &str) -> String {
        self.url.replace("{token}", &self.token(channel, address))
    }

    /// `mailto:` with the token in the subject, so a mailbox handler can apply it.
    pub fn mailto(&self, channel: &str, address: &str) -> Option<String> {
        self.mailto.as_ref().map(|m| {
            format!(
                "mailto:{m}?subject=unsubscribe%20{}",
                self.token(channel, address)
            )
        })
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u() -> Unsubscriber {
        Unsubscriber::with_key(
            b"0123456789abcdef0123456789abcdef",
            "https://shop.example.com/u/{token}",
            Some("unsubscribe@example.com"),
        )
    }

    /// The scheme the module's doc describes, computed independently (python3's
    /// `cryptography` and `hmac`): links already in mailboxes stay the links we mint.
    #[test]
    fn a_token_is_the_documented_sealing_byte_for_byte() {
        let u = Unsubscriber::with_key(
            b"unsubscribe-key-for-the-golden-test",
            "https://x/{token}",
            None,
        );
        assert_eq!(
            u.token("email", "wang.fang@example.com"),
            "CCZMN54ObwcKJODpwehy7HuNq_iUxnUbX46iSK5KVGnAn0vk-wOVsdP-OoC18cligrPi4R7GAw"
        );
    }

    #[test]
    fn round_trip() {
        let t = u().token("email", "wang.fang@example.com");
        assert_eq!(
            u().verify(&t),
            Ok(("email".into(), "wang.fang@example.com".into()))
        );
        assert!(
            u().url("email", "a@b.c")
                .starts_with("https://shop.example.com/u/")
        );
    }

    /// A token as the first format minted it.
    fn v1(key: &[u8], channel: &str, address: &str) -> String {
        let payload = format!("v1|{channel}|{address}");
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(payload.as_bytes());
        let sig = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&sig[..MAC_LEN])
        )
    }

    #[test]
    fn a_token_does_not_reveal_its_address() {
        let t = u().token("email", "wang.fang@example.com");
        assert!(!t.contains('.'), "{t}");
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("wang"), "{text}");
        assert!(
            !t.contains(&URL_SAFE_NO_PAD.encode("wang.fang")[..8]),
            "{t}"
        );
        // Stable: the same link in every message to this address.
        assert_eq!(t, u().token("email", "wang.fang@example.com"));
        assert_ne!(t, u().token("sms", "wang.fang@example.com"));
    }

    #[test]
    fn the_shortest_token_is_as_long_as_the_api_pattern_says() {
        assert_eq!(SEALED_MIN_LEN, 42);
        assert_eq!(u().token("e", "a").len(), SEALED_MIN_LEN);
    }

    #[test]
    fn old_tokens_are_still_honoured() {
        let key = b"0123456789abcdef0123456789abcdef";
        let old = v1(key, "email", "li.lei@example.com");
        assert_eq!(
            u().verify(&old),
            Ok(("email".into(), "li.lei@example.com".into()))
        );
        let other_key = Unsubscriber::with_key(b"another key, 16+ chars", "x", None);
        assert_eq!(other_key.verify(&old), Err(TokenError::BadSignature));
    }

    #[test]
    fn forged_and_altered_tokens_fail() {
        let t = u().token("email", "wang.fang@example.com");
        for i in [0, 5, 20, t.len() - 1] {
            let mut bad = t.clone().into_bytes();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(bad).unwrap();
            assert!(u().verify(&bad).is_err(), "{bad}");
        }
        assert_eq!(u().verify(""), Err(TokenError::Malformed));
        assert_eq!(u().verify("AAAA"), Err(TokenError::Malformed));
        let t = v1(
            b"0123456789abcdef0123456789abcdef",
            "email",
            "wang.fang@example.com",
        );
        let (p, s) = t.split_once('.').unwrap();
        // Another address with the same signature.
        let other = URL_SAFE_NO_PAD.encode("v1|email|li.lei@example.com");
        assert_eq!(
            u().verify(&format!("{other}.{s}")),
            Err(TokenError::BadSignature)
        );
        // A flipped signature character.
        let mut bad = s.to_string();
        let c = if bad.starts_with('A') { "B" } else { "A" };
        bad.replace_range(0..1, c);
        assert_eq!(
            u().verify(&format!("{p}.{bad}")),
            Err(TokenError::BadSignature)
        );
        // A different key.
        let other_key =
            Unsubscriber::with_key(b"another key, 16+ chars", "https://x/{token}", None);
        assert_eq!(other_key.verify(&t), Err(TokenError::BadSignature));
        assert_eq!(u().verify("nonsense"), Err(TokenError::Malformed));
    }
}
