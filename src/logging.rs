//! Logs for operators: human lines on a terminal, JSON lines with `--log-format json`,
//! journald fields when systemd runs us (JOURNAL_STREAM is set).
//!
//! Customer addresses in log messages go through [`mask`] (`w***g@example.com`,
//! `+86*******8000`): logs are kept longer and read by more people than the delivery log,
//! which keeps the full address for support. Secrets are never passed to a log call.
//!
//! Three rules hold for everything that reaches a log, whoever wrote the call:
//! - Other crates' debug and trace events are dropped, whatever `AFTERCARE_LOG` says:
//!   they quote our data unmasked (handlebars logs every helper's parameters: names, phone
//!   numbers, unsubscribe links). Their info and above pass.
//! - In human lines every field is written through `text::printable`: a CR, LF or ESC
//!   sequence from event data or a server's reply cannot forge a line or repaint the
//!   terminal (JSON escapes them itself).
//! - A URL's password is replaced by `***` in every line, whatever the format.
//!
//! A panic is logged as one error event (message, location, backtrace when
//! `RUST_BACKTRACE` asks for one), not as loose lines in the middle of a JSON stream.

use std::io::Write;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::{Writer, debug_fn};
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines (the default on a terminal)
    Text,
    /// One JSON object per line
    Json,
    /// Structured fields to the systemd journal (the default under systemd)
    Journald,
}

/// Set up tracing. `default_level` applies unless `AFTERCARE_LOG` says otherwise.
pub(crate) fn init(format: Option<LogFormat>, default_level: &str) {
    let filter = || {
        EnvFilter::try_from_env("AFTERCARE_LOG").unwrap_or_else(|_| EnvFilter::new(default_level))
    };
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let format = format.unwrap_or(if under_systemd {
        LogFormat::Journald
    } else {
        LogFormat::Text
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Global filters (not per-layer ones: with those, some of our events went missing on
    // PostgreSQL, whose driver logs through the same callsites' interest cache).
    let filtered = tracing_subscriber::registry()
        .with(filter())
        .with(filter_fn(|meta| {
            ours(meta.target()) || *meta.level() <= Level::INFO
        }));
    let layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(stderr)
            .with_target(false)
            .boxed(),
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => layer.boxed(),
            Err(_) => text_layer(false),
        },
        LogFormat::Text => text_layer(ansi),
    };
    let result = filtered.with(layer).try_init();
    if result.is_ok() {
        std::panic::set_hook(Box::new(log_panic));
    }
}

/// Our own events, which may log at debug (masking what they must).
fn ours(target: &str) -> bool {
    target == "aftercare" || target.starts_with("aftercare::")
}

fn text_layer<S>(ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let fields = debug_fn(|w: &mut Writer<'_>, field, value| {
        let name = field.name();
        if name.starts_with("log.") {
            // tracing-log's bookkeeping (target, file, line) of a `log` record.
            return Ok(());
        }
        let text = format!("{value:?}");
        let text = crate::text::printable(&text);
        if name == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{name}={text}")
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt::layer()
        .fmt_fields(fields)
        .with_writer(stderr)
        .with_ansi(ansi)
        .with_target(false)
        .boxed()
}

/// Standard error, with URL passwords redacted from every line (the formatter writes one
/// event per call).
fn stderr() -> Redacting {
    Redacting(std::io::stderr())
}

struct Redacting(std::io::Stderr);

impl Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self
                .0
                .write_all(crate::text::redact_credentials(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The panic hook: one error event instead of the default lines on standard error.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        tracing::error!(
            panic = %message,
            %location,
            backtrace = %backtrace,
            "internal error (a bug; please report it)"
        );
    } else {
        tracing::error!(panic = %message, %location, "internal error (a bug; please report it)");
    }
}

/// An email address or phone number as logs show it.
pub(crate) fn mask(address: &str) -> String {
    if let Some((local, domain)) = address.split_once('@') {
        let chars: Vec<char> = local.chars().collect();
        let shown = match chars.len() {
            0 => String::new(),
            1 | 2 => format!("{}***", chars[0]),
            n => format!("{}***{}", chars[0], chars[n - 1]),
        };
        return format!("{shown}@{domain}");
    }
    let chars: Vec<char> = address.chars().collect();
    let n = chars.len();
    if n <= 6 {
        return "***".into();
    }
    // At least half hidden, and the end shown (four, or two of a short number): enough to
    // tell two numbers apart, not enough to dial one. Showing the first six and last four
    // left a ten-digit number whole and 8 of an 11-digit one's.
    let tail = if n >= 10 { 4 } else { 2 };
    let head = n.saturating_sub(tail + n.div_ceil(2)).min(4);
    format!(
        "{}{}{}",
        chars[..head].iter().collect::<String>(),
        "*".repeat(n - head - tail),
        chars[n - tail..].iter().collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_the_issue_says() {
        assert_eq!(mask("wang.fang@example.com"), "w***g@example.com");
        assert_eq!(mask("+8613800138000"), "+86*******8000");
        assert_eq!(mask("+15005550006"), "+1******0006");
        assert_eq!(mask("5551234567"), "5*****4567");
        assert_eq!(mask("1234567"), "1****67");
        assert_eq!(mask("a@b.c"), "a***@b.c");
        assert_eq!(mask("123"), "***");
    }
}
