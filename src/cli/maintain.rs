//! `aftercare store purge|backup|check`: the store's upkeep by hand.
//!
//! - `purge` removes what is past `retention:` now (the daemon does it daily by itself);
//!   `--now` replays it at another instant, as `run --once --now` does for sending.
//! - `backup PATH` copies a live SQLite store into a new file while daemons keep writing
//!   (`VACUUM INTO`: one consistent snapshot). PostgreSQL is backed up with `pg_dump`.
//! - `check` opens a store (a restored backup, say) and checks it: schema version, every
//!   reference between tables, and the row count of each table.

use super::{App, Exit};
use crate::store::{PURGE_BATCH, Store};
use crate::values::When;
use std::path::Path;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub(super) struct PurgeArgs {
    /// Purge as of this time instead of now (RFC 3339, or a date: its midnight in defaults.timezone)
    #[arg(long, value_parser = When::parse)]
    now: Option<When>,
    /// Rows per transaction
    #[arg(long, default_value_t = PURGE_BATCH as u32, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
}

pub(super) async fn purge(config_path: &Path, a: PurgeArgs) -> anyhow::Result<()> {
    // Refused as `run` refuses: a retention shorter than a job's window would delete, for
    // good, what the job still reads.
    let app = App::load_valid(config_path)?;
    let store = app.open_store().await?;
    let now = crate::clock::from_option(app.at(a.now)).now();
    let purged = store
        .purge(&app.config.retention, now, a.batch as usize, Duration::ZERO)
        .await?;
    store.close().await;
    tracing::info!("retention purge: removed {purged}");
    println!("removed {purged}");
    Ok(())
}

#[derive(clap::Args, Debug)]
pub(super) struct BackupArgs {
    /// The new file to write the copy into (refused if it exists)
    path: std::path::PathBuf,
}

/// `store backup PATH`: a consistent copy of the config's SQLite store, daemons running.
pub(super) async fn backup(config_path: &Path, a: BackupArgs) -> anyhow::Result<()> {
    let app = App::load(config_path)?;
    let store = app.open_store().await?;
    let started = std::time::Instant::now();
    let done = store.backup_to(&a.path).await;
    store.close().await;
    done.map_err(|e| Exit::invalid(e.to_string()))?;
    let size = std::fs::metadata(&a.path).map(|m| m.len()).unwrap_or(0);
    println!(
        "backed up {} to {} ({} bytes, {} ms); check it with: aftercare store check --store sqlite://{}",
        store.target(),
        a.path.display(),
        size,
        started.elapsed().as_millis(),
        a.path.display()
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub(super) struct CheckArgs {
    /// Check this store instead of the config's: sqlite://FILE (a backup) or
    /// postgres://USER@HOST/DB
    // Read by `store_arg` in `check`, not by clap, which repeats a refused value (a URL may
    // hold a password).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
}

/// `store check`: schema version, references between tables, counts; exit 1 on a problem.
pub(super) async fn check(config_path: &Path, a: CheckArgs) -> anyhow::Result<()> {
    let cfg = match a.store {
        Some(url) => super::store_copy::store_arg("--store", &url)?,
        None => App::load(config_path)?.config.store,
    };
    if let crate::store::StoreConfig::Sqlite { path, .. } = &cfg
        && !path.exists()
    {
        return Err(Exit::invalid(format!("no store at {}", path.display())));
    }
    // Connect without migrating: a check changes nothing.
    let store = Store::connect(&cfg).await.map_err(|e| Exit {
        code: 3,
        message: e.to_string(),
    })?;
    let report = store.check().await;
    store.close().await;
    let report = report?;
    println!(
        "{}: schema version {} (this aftercare: {})",
        store.target(),
        report
            .version
            .map_or_else(|| "none".to_string(), |v| v.to_string()),
        report.known
    );
    if let Some(i) = &report.integrity {
        println!("integrity: {i}");
    }
    let broken: i64 = report.references.iter().map(|(_, n)| n).sum();
    println!(
        "references: {} checked, {broken} broken",
        report.references.len()
    );
    let counts: Vec<String> = report
        .counts
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    println!("rows: {}", counts.join(", "));
    let problems = report.problems();
    if problems.is_empty() {
        println!("ok");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("problem: {p}");
        }
        Err(Exit::invalid(format!(
            "{} problem(s) in the store",
            problems.len()
        )))
    }
}
