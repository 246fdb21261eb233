//! `aftercare store copy --from URL --to URL`: move every row of the store into another one,
//! typically from the embedded SQLite file to PostgreSQL when a business adds a second node.
//!
//! The source is only read (one snapshot; stop the daemons first so nothing is written after
//! it). The target is refused if it holds rows, unless `--force` replaces them; it is then
//! migrated and filled table by table, each table in one transaction, and the row counts
//! are checked against the source. The work is in `store/copy.rs`; this is the command line.

use super::Exit;
use crate::store::{CopyOptions, CopyProgress, Store};
use crate::store::{SqliteSync, StoreConfig};
use crate::values::Secret;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// The store to copy from: sqlite://FILE (relative to the current folder) or
    /// postgres://USER@HOST[:PORT]/DB
    // Checked in `run` (`store_arg`), not by clap: clap repeats a refused value in its
    // error, and a URL may hold a password.
    #[arg(long, value_name = "URL")]
    from: String,
    /// The store to copy into; migrated first. Passwords come from PGPASSWORD or ~/.pgpass
    #[arg(long, value_name = "URL")]
    to: String,
    /// Replace the rows of a target that is not empty (table by table)
    #[arg(long)]
    force: bool,
    /// Rows per batch
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
}

/// A store URL given as `flag`, read here rather than by clap, whose error would repeat the
/// value (a URL may hold a password); a usage error (exit 2) names the flag.
pub(super) fn store_arg(flag: &str, url: &str) -> anyhow::Result<StoreConfig> {
    store_url(url).map_err(|e| -> anyhow::Error {
        Exit {
            code: 2,
            message: format!("{flag}: {e}"),
        }
        .into()
    })
}

pub(super) async fn run(a: Args) -> anyhow::Result<()> {
    let from = store_arg("--from", &a.from)?;
    let to = store_arg("--to", &a.to)?;
    if let StoreConfig::Sqlite { path, .. } = &from
        && !path.is_file()
    {
        return Err(Exit::invalid(format!(
            "--from: there is no SQLite store at {}",
            path.display()
        )));
    }
    let from = open(&from).await?;
    let to = open(&to).await?;
    let bar = bar();
    let mut progress = |p: CopyProgress| {
        if let Some(b) = &bar {
            b.set_length(p.total);
            b.set_position(p.copied);
            b.set_message(p.table);
        }
    };
    let opts = CopyOptions {
        force: a.force,
        batch: a.batch as usize,
    };
    let result = from.copy_to(&to, opts, &mut progress).await;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    from.close().await;
    to.close().await;
    let report = result?;
    for m in &report.migrated {
        println!("{}: applied {m}", to.target());
    }
    let mut total = 0;
    for t in &report.tables {
        println!("{:<12} {:>10} rows", t.table, t.target);
        total += t.target;
    }
    println!(
        "copied {total} rows from {} to {}; row counts match",
        from.target(),
        to.target()
    );
    Ok(())
}

/// Connect without migrating (the source is never changed); exit 3 when unreachable.
async fn open(cfg: &StoreConfig) -> anyhow::Result<Store> {
    Store::connect(cfg).await.map_err(|e| {
        Exit {
            code: 3,
            message: e.to_string(),
        }
        .into()
    })
}

/// `sqlite://FILE` or `postgres://...`, as in the config's `store.url`.
fn store_url(url: &str) -> Result<StoreConfig, String> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = rest.split('?').next().unwrap_or(rest);
        if file.is_empty() {
            return Err("no file name after sqlite:// (e.g. sqlite://data/aftercare.db)".into());
        }
        let path = std::path::absolute(PathBuf::from(file)).map_err(|e| e.to_string())?;
        // The same file under two names must be recognised as one store.
        let path = path.canonicalize().unwrap_or(path);
        return Ok(StoreConfig::Sqlite {
            path,
            synchronous: SqliteSync::Full,
        });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if crate::store::url_password(url).is_some() {
            return Err(format!(
                "the URL holds a password: remove it and set PGPASSWORD (or use ~/.pgpass): {}",
                crate::text::for_terminal(url)
            ));
        }
        return Ok(StoreConfig::Postgres {
            url: url.to_string(),
            password: Secret::None,
        });
    }
    Err(format!(
        "unsupported store URL `{}`: use sqlite://FILE or postgres://USER@HOST/DB",
        crate::text::for_terminal(url)
    ))
}

fn bar() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{msg:>10} {bar:40} {pos}/{len} {eta}") {
        bar.set_style(style);
    }
    Some(bar)
}
