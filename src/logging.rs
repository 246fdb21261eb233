//! Logs for operators: human lines on a terminal, JSON lines with `--log-format json`,
//! journald fields when systemd runs us (JOURNAL_STREAM is set).
//!
//! Customer addresses in log messages go through [`mask`] (`w***g@example.com`,
//! `+86138****8000`): logs are kept longer and read by more people than the delivery log,
//! which keeps the full address for support. Secrets are never passed to a log call.

use tracing_subscriber::EnvFilter;
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
    let result = match format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init(),
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => tracing_subscriber::registry()
                .with(filter())
                .with(layer)
                .try_init()
                .map_err(Into::into),
            Err(_) => tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .try_init(),
        },
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_target(false)
            .try_init(),
    };
    let _ = result;
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
    if chars.len() <= 6 {
        return "***".into();
    }
    let head = (chars.len() - 4).min(6);
    let masked = chars.len() - head - 4;
    format!(
        "{}{}{}",
        chars[..head].iter().collect::<String>(),
        "*".repeat(masked),
        chars[chars.len() - 4..].iter().collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_the_issue_says() {
        assert_eq!(mask("wang.fang@example.com"), "w***g@example.com");
        assert_eq!(mask("+8613800138000"), "+86138****8000");
        assert_eq!(mask("+15005550006"), "+15005*0006".replace('*', "**"));
        assert_eq!(mask("a@b.c"), "a***@b.c");
        assert_eq!(mask("123"), "***");
    }
}
