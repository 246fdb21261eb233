//! `aftercare events import FILE|-`: JSON lines in, messages planned.
//!
//! Each line is checked on its own and a bad line is reported with its number and field,
//! storing nothing; good lines are written in batches of one transaction each.

use super::{App, Exit, Format, FormatArg};
use crate::ingest::{FieldError, Incoming, parse_event};
use crate::plan::IngestOutcome;
use crate::values::When;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

/// Events per transaction: one 1,024-row statement a table (`store::sql::ROWS`), and the
/// write lock held for some 25 ms at a time (a running daemon's writers wait that long at
/// most). 4,096 (a quarter of the commits and their `fsync`s) was measured against it, six
/// pairs of 500,000 alternating, three in each order: faster in all six slices of the first
/// three pairs, slower in four of six in the other three, following the host's steal each
/// time; not worth four times the wait it makes.
const BATCH: usize = 1024;

/// The longest line read (an event is a few hundred bytes; the API's default body limit is
/// 1 MiB too). A longer line is skipped without being held in memory, and reported.
pub(super) const MAX_LINE_BYTES: usize = 1024 * 1024;

/// One line from [`read_line_bounded`].
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// The end of the input.
    End,
    /// A line (in the buffer, without its newline); the bytes consumed.
    Text(usize),
    /// A line longer than the limit, skipped; the bytes consumed.
    TooLong(usize),
}

/// Read one line into `buf` (cleared first), keeping at most `limit` bytes: the rest of a
/// longer line is consumed and dropped as it streams by, so memory stays bounded whatever
/// the input.
fn read_line_bounded(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut consumed = 0usize;
    let mut too_long = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (consumed, too_long) {
                (0, _) => Line::End,
                (n, true) => Line::TooLong(n),
                (n, false) => Line::Text(n),
            });
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            let body = if done {
                &chunk[..take - 1]
            } else {
                &chunk[..take]
            };
            if buf.len() + body.len() > limit {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(body);
            }
        }
        r.consume(take);
        consumed += take;
        if done {
            return Ok(if too_long {
                Line::TooLong(consumed)
            } else {
                Line::Text(consumed)
            });
        }
    }
}

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// JSON-lines file, or - for standard input
    file: PathBuf,
    /// Pretend it is this time (RFC 3339, or a date: its midnight in defaults.timezone), for tests and backfills
    #[arg(long, value_parser = When::parse)]
    now: Option<When>,
    #[command(flatten)]
    format: FormatArg,
}

#[derive(Default, serde::Serialize)]
struct Tally {
    accepted: u64,
    duplicate: u64,
    conflicting: u64,
    rejected: u64,
    planned: u64,
    already: u64,
    stopped: u64,
}

pub(super) async fn run(config_path: &Path, a: Args) -> anyhow::Result<()> {
    let app = App::load_valid(config_path)?;
    // Every batch on one connection of its own (see `Store::own_writer`): through the pool,
    // batches took turns on two connections, and each found the other's writes and dropped
    // its page cache, reading the pages back from the file.
    let store = app.open_store().await?.own_writer();
    let book = app.playbook();
    let clock = crate::clock::from_option(app.at(a.now));
    let name = a.file.display().to_string();
    let (reader, size): (Box<dyn Read + Send>, Option<u64>) = if name == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(&a.file)
            .map_err(|e| Exit::invalid(format!("cannot open {name}: {e}")))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let bar = progress(size);
    let mut tally = Tally::default();
    // Two batches in flight: the reader checks the next while this one is stored.
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let reader = {
        let (name, bar) = (name.clone(), bar.clone());
        std::thread::Builder::new()
            .name("import-reader".into())
            .spawn(move || read_batches(reader, &name, bar.as_ref(), &tx))?
    };
    while let Some(batch) = rx.recv().await {
        store_batch(&book, &store, batch?, &clock, &name, &mut tally, &bar).await?;
    }
    // The channel closed: the reader has returned (its errors came through the channel).
    let _ = reader.join();
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
    match a.format.get() {
        Format::Json => println!("{}", serde_json::to_string_pretty(&tally)?),
        Format::Text => println!(
            "{name}: {} accepted, {dup}, {} rejected; {} message(s) planned, {} already planned, {} stopped",
            tally.accepted, tally.rejected, tally.planned, tally.already, tally.stopped
        ),
    }
    if tally.rejected > 0 {
        return Err(Exit::silent(1));
    }
    Ok(())
}

/// One line as the reader left it: a checked event, or why it was refused.
// Nearly every line is an event: boxing it to shrink the rare refusal would allocate per line.
#[allow(clippy::large_enum_variant)]
enum Item {
    Event(usize, Incoming),
    Refused(usize, Vec<FieldError>),
}

/// The reader thread: lines read, checked and parsed into batches of [`BATCH`] lines, events
/// and refused lines in line order (so the report reads in line order; counted by events
/// alone, a file of refused lines was held whole until its end: 4 GB for 5 million).
/// Reading and parsing are about a tenth of an import's CPU; on their own thread they
/// overlap with storing the batch before (measured: within the noise, 0–8% faster, as
/// SQLite's thread is the one that limits). Ends when the input ends, a read fails (sent
/// on), or the writer stops listening.
fn read_batches(
    reader: Box<dyn Read + Send>,
    name: &str,
    bar: Option<&ProgressBar>,
    tx: &tokio::sync::mpsc::Sender<anyhow::Result<Vec<Item>>>,
) {
    let mut lines = BufReader::new(reader);
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut batch: Vec<Item> = Vec::with_capacity(BATCH);
    loop {
        let read = match read_line_bounded(&mut lines, &mut buf, MAX_LINE_BYTES) {
            Ok(r) => r,
            Err(e) => {
                let e = Exit::invalid(format!("{name}:{}: cannot read: {e}", line_no + 1));
                // The lines before the failure are stored, all of them, then the import stops.
                if !batch.is_empty() && tx.blocking_send(Ok(batch)).is_err() {
                    return;
                }
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let n = match read {
            Line::End => break,
            Line::Text(n) | Line::TooLong(n) => n,
        };
        line_no += 1;
        if let Some(b) = bar {
            b.inc(n as u64);
        }
        match check_line(&read, &buf, line_no) {
            Some(Ok(inc)) => batch.push(Item::Event(line_no, inc)),
            Some(Err(errs)) => batch.push(Item::Refused(line_no, errs)),
            None => {}
        }
        if batch.len() >= BATCH && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(batch));
    }
}

/// One line's event, or why it is refused; `None` for a blank line.
fn check_line(
    read: &Line,
    buf: &[u8],
    line_no: usize,
) -> Option<Result<Incoming, Vec<FieldError>>> {
    let refused = |message: String| {
        Some(Err(vec![FieldError {
            field: String::new(),
            message,
        }]))
    };
    if matches!(read, Line::TooLong(_)) {
        return refused(format!(
            "the line is longer than {} MiB; one event per line, a few KiB at most",
            MAX_LINE_BYTES / (1024 * 1024)
        ));
    }
    let line = match std::str::from_utf8(buf) {
        // A byte order mark (Windows exports) is not part of the first event.
        Ok(l) if line_no == 1 => l.trim_start_matches('\u{FEFF}').trim(),
        Ok(l) => l.trim(),
        Err(e) => {
            let column = String::from_utf8_lossy(&buf[..e.valid_up_to()])
                .chars()
                .count()
                + 1;
            return refused(format!(
                "not UTF-8 text at column {column}; save the file as UTF-8"
            ));
        }
    };
    if line.is_empty() {
        return None;
    }
    Some(parse_event(line))
}

/// Store one batch's events in one transaction and report its lines in order.
async fn store_batch(
    book: &crate::playbook::Playbook,
    store: &crate::store::Store,
    batch: Vec<Item>,
    clock: &crate::clock::SharedClock,
    name: &str,
    tally: &mut Tally,
    bar: &Option<ProgressBar>,
) -> anyhow::Result<()> {
    let mut lines = Vec::with_capacity(batch.len());
    let mut items = Vec::with_capacity(batch.len());
    for item in batch {
        match item {
            Item::Event(line, inc) => {
                lines.push(Ok(line));
                items.push(inc);
            }
            Item::Refused(line, errs) => lines.push(Err((line, errs))),
        }
    }
    let mut outcomes = if items.is_empty() {
        Vec::new()
    } else {
        crate::plan::ingest(book, store, &items, clock.now()).await?
    }
    .into_iter();
    for line in lines {
        let (line, o) = match line {
            Err((line, errs)) => (line, IngestOutcome::Rejected(errs)),
            Ok(line) => match outcomes.next() {
                Some(o) => (line, o),
                None => anyhow::bail!("{name}:{line}: the store returned no outcome for this line"),
            },
        };
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
                report(bar, name, line, &errs);
            }
            // Each line is a request of its own: a line is never withdrawn for another's sake.
            IngestOutcome::Withdrawn => tally.rejected += 1,
        }
    }
    Ok(())
}

fn report(bar: &Option<ProgressBar>, name: &str, line: usize, errs: &[FieldError]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_lines_are_sent_on_in_batches_too() {
        let text = "x\n".repeat(3 * BATCH + 5);
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let reader = std::thread::spawn(move || {
            read_batches(Box::new(std::io::Cursor::new(text)), "x", None, &tx)
        });
        let mut sizes = Vec::new();
        while let Some(b) = rx.blocking_recv() {
            sizes.push(b.map(|b| b.len()).unwrap_or(0));
        }
        reader.join().expect("the reader thread");
        assert_eq!(sizes, [BATCH, BATCH, BATCH, 5]);
    }

    #[test]
    fn a_long_line_is_skipped_without_being_held() {
        let text = format!("{{\"a\":1}}\n{}\nlast", "x".repeat(100_000));
        // A small buffer size, so the long line streams through many chunks.
        let mut r = BufReader::with_capacity(64, text.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 1000).unwrap(),
            Line::Text(8)
        );
        assert_eq!(buf, b"{\"a\":1}");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 1000).unwrap(),
            Line::TooLong(100_001)
        );
        assert!(buf.capacity() <= 1000 + 64, "held {} bytes", buf.capacity());
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 1000).unwrap(),
            Line::Text(4)
        );
        assert_eq!(buf, b"last");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 1000).unwrap(),
            Line::End
        );
    }
}
