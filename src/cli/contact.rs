//! `aftercare contact erase|export`: a person's right to have their data erased, and to
//! see all of it (GDPR art. 17 and 15, PIPL art. 47 and 45). The work is in
//! `store/erasure.rs`; this resolves who is meant and prints the result.

use super::{App, Exit};
use crate::clock::{Clock, SystemClock};
use std::path::Path;

#[derive(clap::Subcommand, Debug)]
pub(super) enum Command {
    /// Erase everything held about a contact; its addresses stay suppressed as one-way hashes
    Erase {
        /// The contact's id, email address or phone number (every contact with it)
        contact: String,
        /// Why (kept on the hashed suppression entries and logged)
        #[arg(long, default_value = "erasure request")]
        reason: String,
    },
    /// Print everything held about a contact as one JSON document
    Export {
        /// The contact's id, email address or phone number
        contact: String,
    },
}

pub(super) async fn run(config_path: &Path, c: Command) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let store = app.open_store().await?;
    // Erasure and export are human requests, answered at the wall clock's time.
    let now = SystemClock.now();
    let result = match c {
        Command::Erase { contact, reason } => {
            let ids = store.contacts_named(&contact).await?;
            if ids.is_empty() {
                println!("nothing held for {contact} (already erased, or never stored)");
            }
            for id in ids {
                let e = store.erase_contact(&id, &reason, now).await?;
                let reference = e.reference.join(",");
                // Counts and a one-way reference only: never the id or an address.
                tracing::info!(
                    reference = %reference,
                    reason = %reason,
                    events = e.events,
                    messages = e.messages,
                    cancelled = e.cancelled,
                    attempts = e.attempts,
                    receipts = e.receipts,
                    replies = e.replies,
                    suppressed = e.suppressed,
                    "contact erased"
                );
                println!(
                    "erased contact (ref {reference}): {} event(s), {} message(s) ({} pending cancelled), {} attempt(s), {} receipt(s), {} reply(ies); {} address(es) kept suppressed as one-way hashes",
                    e.events,
                    e.messages,
                    e.cancelled,
                    e.attempts,
                    e.receipts,
                    e.replies,
                    e.suppressed
                );
            }
            Ok(())
        }
        Command::Export { contact } => {
            let ids = store.contacts_named(&contact).await?;
            match ids.as_slice() {
                [] => Err(Exit::invalid(format!("no contact {contact}"))),
                [id] => {
                    let doc = store
                        .export_contact(id, now)
                        .await?
                        .ok_or_else(|| Exit::invalid(format!("no contact {contact}")))?;
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                    Ok(())
                }
                many => Err(Exit::invalid(format!(
                    "{} contacts have {contact}; export them one by one, by id",
                    many.len()
                ))),
            }
        }
    };
    store.close().await;
    result
}
