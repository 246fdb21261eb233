//! `aftercare events import FILE|-`: JSON lines in, messages planned.
//!
//! Each line is checked on its own and a bad line is reported with its number and field,
//! storing nothing; good lines are written in batches of one transaction each.

use super::{App, Exit};
use crate::ingest::{Incoming, parse_event};
use crate::plan::IngestOutcome;
use crate::values::parse_time;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

const BATCH: usize = 500;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSON-lines file, or - for standard input
    file: PathBuf,
    /// Pretend it is this time (RFC 3339), for tests and backfills
    #[arg(long, value_parser = parse_time)]
    now: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    duplicate: u64,
    conflicting: u64,
    rejected: u64,
    planned: u64,
    already: u64,
    stopped: u64,
}

pub async fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    let app = App::load_valid(config_path)?;
    let store = app.open_store().await?;
    let book = app.playbook();
    let clock = crate::clock::from_option(a.now);
    let name = a.file.display().to_string();
    let (reader, size): (Box<dyn Read>, Option<u64>) = if name == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(&a.file)
            .map_err(|e| Exit::invalid(format!("cannot open {name}: {e}")))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let bar = progress(size);
    let mut tally = Tally::default();
    let mut batch: Vec<(usize, Incoming)> = Vec::with_capacity(BATCH);
    let mut lines = BufReader::new(reader);
    let mut buf = String::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = lines
            .read_line(&mut buf)
            .map_err(|e| Exit::invalid(format!("{name}:{}: cannot read: {e}", line_no + 1)))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if let Some(b) = &bar {
            b.inc(n as u64);
        }
        let line = buf.trim();
        if line.is_empty() {
            continue;
        }
        match parse_event(line) {
            Ok(inc) => batch.push((line_no, inc)),
            Err(errs) => {
                tally.rejected += 1;
                report(&bar, &name, line_no, &errs);
            }
        }
        if batch.len() >= BATCH {
            flush(&book, &store, &mut batch, &clock, &name, &mut tally, &bar).await?;
        }
    }
    flush(&book, &store, &mut batch, &clock, &name, &mut tally, &bar).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    store.close().await;
    let mut dup = format!("{} duplicate", tally.duplicate);
    if tally.conflicting > 0 {
        dup.push_str(&format!(
            " ({} with a reused id and different content)",
            tally.conflicting
        ));
    }
    println!(
        "{name}: {} accepted, {dup}, {} rejected; {} message(s) planned, {} already planned, {} stopped",
        tally.accepted, tally.rejected, tally.planned, tally.already, tally.stopped
    );
    if tally.rejected > 0 {
        return Err(Exit::silent(1));
    }
    Ok(())
}

async fn flush(
    book: &crate::playbook::Playbook,
    store: &crate::store::Store,
    batch: &mut Vec<(usize, Incoming)>,
    clock: &crate::clock::SharedClock,
    name: &str,
    tally: &mut Tally,
    bar: &Option<ProgressBar>,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let items: Vec<Incoming> = batch.iter().map(|(_, i)| i.clone()).collect();
    let outcomes = crate::plan::ingest(book, store, &items, clock.now()).await?;
    for ((line, _), o) in batch.iter().zip(outcomes) {
        match o {
            IngestOutcome::Accepted {
                planned,
                already_planned,
                stopped,
            } => {
                tally.accepted += 1;
                tally.planned += planned as u64;
                tally.already += already_planned as u64;
                tally.stopped += stopped as u64;
            }
            IngestOutcome::Duplicate { same } => {
                tally.duplicate += 1;
                if !same {
                    tally.conflicting += 1;
                    let msg = format!(
                        "{name}:{line}: warning: event id seen before with different content; kept the first"
                    );
                    say(bar, &msg);
                }
            }
            IngestOutcome::Rejected(errs) => {
                tally.rejected += 1;
                report(bar, name, *line, &errs);
            }
        }
    }
    batch.clear();
    Ok(())
}

fn report(bar: &Option<ProgressBar>, name: &str, line: usize, errs: &[crate::ingest::FieldError]) {
    for e in errs {
        say(bar, &format!("{name}:{line}: {e}"));
    }
}

fn say(bar: &Option<ProgressBar>, msg: &str) {
    // A rejected line is quoted back: its control characters must not reach the terminal.
    let msg = crate::text::for_terminal(msg);
    match bar {
        Some(b) => b.suspend(|| eprintln!("{msg}")),
        None => eprintln!("{msg}"),
    }
}

fn progress(size: Option<u64>) -> Option<ProgressBar> {
    let size = size?;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {eta}") {
        bar.set_style(style);
    }
    Some(bar)
}
