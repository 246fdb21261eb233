//! What the customer got: the rendered subject and text body of each try, as sent.
//!
//! Support's first question on a call is "what did you send me?", and a template changed
//! since cannot answer it. So dispatch packs the subject and text it rendered (a small JSON
//! object, zstd-compressed from 1 KiB: most of a long message is its template's words, which
//! compress well) in the send task, and the recorder writes it in the row of the attempt it
//! went with (`attempts.content`: a table of its own cost dispatch three more B-tree inserts
//! per message, see migrations/sqlite/0009). A retention purge (`retention.content`) empties the
//! column and keeps the attempt.

use super::sql::{Bind, bind_vec, on_pool};
use super::{Result, Store};
use crate::clock::from_millis;
use chrono::{DateTime, Utc};
use sqlx::Row;

/// zstd's level for contents: level 3 (its default) compresses a 2 KB message about as well
/// as 19 would, in a few microseconds on the send task.
const LEVEL: i32 = 3;

/// Contents shorter than this are kept as their JSON: a zstd frame costs dispatch ~10 µs a
/// message (8% of its CPU) at any level and size, for a short message (an SMS, a 300-byte
/// email) a few per cent to 40% of a few hundred bytes; PostgreSQL draws its line for
/// compressing values at 2 KB for the same reason. [`unpack_content`] tells the two apart by
/// the first byte.
const COMPRESS_FROM: usize = 1024;

/// A message's content larger than this when unpacked is not believed (a corrupt row must not
/// make the console allocate without bound).
const MAX_UNPACKED: usize = 4 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
struct Packed {
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(rename = "t")]
    text: String,
}

/// The bytes `attempts.content` keeps for a rendered subject (email) and text.
pub fn pack_content(subject: Option<&str>, text: &str) -> Vec<u8> {
    let json = serde_json::to_vec(&Packed {
        subject: subject.map(str::to_string),
        text: text.to_string(),
    })
    .unwrap_or_else(|_| b"{\"t\":\"\"}".to_vec());
    if json.len() < COMPRESS_FROM {
        return json;
    }
    // One compression context per send thread: making a fresh one allocates and clears
    // zstd's tables on every message, which cost more than the compression itself.
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        match c.as_mut() {
            Some(z) => z.compress(&json).unwrap_or_default(),
            None => zstd::bulk::compress(&json, LEVEL).unwrap_or_default(),
        }
    })
}

/// The subject and text back from [`pack_content`]'s bytes; `None` for bytes it did not write.
pub fn unpack_content(body: &[u8]) -> Option<(Option<String>, String)> {
    let p: Packed = if body.first() == Some(&b'{') {
        serde_json::from_slice(body).ok()?
    } else {
        serde_json::from_slice(&zstd::bulk::decompress(body, MAX_UNPACKED).ok()?).ok()?
    };
    Some((p.subject, p.text))
}

/// What a message said, as support reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredContent {
    pub attempt: i64,
    pub channel: String,
    pub subject: Option<String>,
    pub text: String,
    pub at: DateTime<Utc>,
}

impl Store {
    /// Every stored content of a message, oldest try first. Empty when none was rendered (a
    /// callback task, a message not sent yet) or retention has removed it.
    pub async fn message_contents(&self, message_id: &str) -> Result<Vec<StoredContent>> {
        on_pool!(self, |pool, _b| {
            let rows = sqlx::query(
                "SELECT attempt, channel, content, at FROM attempts WHERE message_id = $1 AND content IS NOT NULL ORDER BY attempt",
            )
            .bind(message_id)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let body: Vec<u8> = r.try_get(2)?;
                let (subject, text) = unpack_content(&body).unwrap_or((
                    None,
                    "(this content could not be read back: the stored bytes are damaged)".into(),
                ));
                out.push(StoredContent {
                    attempt: r.try_get(0)?,
                    channel: r.try_get(1)?,
                    subject,
                    text,
                    at: from_millis(r.try_get(3)?),
                });
            }
            Ok(out)
        })
    }

    /// Ids among `ids` that have stored content (the timeline marks them).
    pub async fn with_content(&self, ids: &[String]) -> Result<std::collections::HashSet<String>> {
        let mut out = std::collections::HashSet::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT DISTINCT message_id FROM attempts WHERE message_id IN ({}) AND content IS NOT NULL",
                super::placeholders(1, chunk.len())
            );
            let binds: Vec<Bind> = chunk.iter().map(|i| Bind::Text(Some(i.clone()))).collect();
            on_pool!(self, |pool, _b| {
                for r in bind_vec!(sqlx::query(sqlx::AssertSqlSafe(sql)), binds)
                    .fetch_all(pool)
                    .await?
                {
                    out.insert(r.try_get::<String, _>(0)?);
                }
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_round_trip_and_shrink() {
        let text = "王芳，您好！\n\n感谢您在 Example Shop 购物。您的订单 SO-1001 已送达，欢迎写下评价：\nhttps://shop.example.com/review/SO-1001\n\n".repeat(8);
        let packed = pack_content(Some("您的订单已送达"), &text);
        assert!(
            packed.len() * 3 < text.len(),
            "{} vs {}",
            packed.len(),
            text.len()
        );
        assert_eq!(
            unpack_content(&packed),
            Some((Some("您的订单已送达".to_string()), text.clone()))
        );
        assert!(
            packed.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
            "a zstd frame"
        );
        // A short one is kept as its JSON (compressing it costs more than it saves).
        let sms = pack_content(None, "Reply STOP to opt out");
        assert_eq!(sms, br#"{"t":"Reply STOP to opt out"}"#);
        assert_eq!(
            unpack_content(&sms),
            Some((None, "Reply STOP to opt out".into()))
        );
        assert_eq!(unpack_content(b"not zstd"), None);
    }
}
