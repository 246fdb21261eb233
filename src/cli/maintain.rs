//! `aftercare store purge|backup|check`: the store's upkeep by hand.
//!
//! - `purge` removes what is past `retention:` now (the daemon does it daily by itself);
//!   `--now` replays it at another instant, as `run --once --now` does for sending.
//! - `backup PATH` copies a live SQLite store into a new file while daemons keep writing
//!   (`VACUUM INTO`: one consistent snapshot). PostgreSQL is backed up with `pg_dump`.
//! - `check` opens a store (a restored backup, say) and checks it: schema version, every
//!   reference between tables, and the row count of each table.

use super::App;
use crate::store::PURGE_BATCH;
use crate::values::parse_time;
use chrono::{DateTime, Utc};
use std::path::Path;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct PurgeArgs {
    /// Purge as of this instant (RFC 3339) instead of now
    #[arg(long, value_parser = parse_time)]
    now: Option<DateTime<Utc>>,
    /// Rows per transaction
    #[arg(long, default_value_t = PURGE_BATCH as u32, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
}

pub async fn purge(config_path: &Path, a: PurgeArgs) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let store = app.open_store().await?;
    let now = crate::clock::from_option(a.now).now();
    let purged = store
        .purge(&app.config.retention, now, a.batch as usize, Duration::ZERO)
        .await?;
    store.close().await;
    tracing::info!("retention purge: removed {purged}");
    println!("removed {purged}");
    Ok(())
}
