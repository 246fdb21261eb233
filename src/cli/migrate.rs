//! `aftercare migrate`: bring the store's schema up to this binary's version, explicitly,
//! and print what was applied.
//!
//! SQLite stores also migrate when any verb opens them; PostgreSQL stores only here, so that
//! an upgrade changes the shared schema once, when the operator says so, and not whenever
//! the first upgraded node starts (see `store/schema.rs`).

use super::{App, Exit};
use crate::store::{Store, StoreError};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub(super) struct Args {}

pub(super) async fn run(config_path: &Path, _a: Args) -> anyhow::Result<()> {
    // Broken job files do not stop a migration: only the config's store matters here.
    let app = App::load(config_path)?;
    let store = Store::connect(&app.config.store)
        .await
        .map_err(unreachable)?;
    let applied = store.migrate().await.map_err(|e| match e {
        e @ StoreError::SchemaTooNew { .. } => unreachable(e),
        e => anyhow::Error::new(e).context(format!("migrating {}", store.target())),
    })?;
    for m in &applied {
        println!("applied {m}");
    }
    let status = store.schema().await?;
    store.close().await;
    let version = status.version().unwrap_or(0);
    if applied.is_empty() {
        println!(
            "{}: schema version {version}, nothing to apply",
            store.target()
        );
    } else {
        println!("{}: schema version {version}", store.target());
    }
    Ok(())
}

/// Exit 3, like every verb that cannot use the store.
fn unreachable(e: StoreError) -> anyhow::Error {
    Exit {
        code: 3,
        message: e.to_string(),
    }
    .into()
}
