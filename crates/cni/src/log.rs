//! The plugin's log: the conflist's `pluginLogFile` at `pluginLogLevel`, as upstream.
//!
//! stdout is the CNI result channel, so nothing is ever logged there: `stdout` as the log
//! file is treated as `stderr` (upstream's entrypoint refuses it). An empty value means
//! `stderr`, as upstream. A log file that cannot be opened (read-only directory, ...) falls
//! back to stderr with one warning line: logging never fails a command.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::Level;

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    File(PathBuf),
}

/// `pluginLogFile` → destination (pure).
pub fn destination(value: &str) -> Destination {
    match value.trim() {
        "" | "stderr" | "stdout" => Destination::Stderr,
        path => Destination::File(PathBuf::from(path)),
    }
}

/// `pluginLogLevel` → level; case-insensitive, unknown or empty → debug (upstream's default).
pub fn level(value: &str) -> Level {
    match value.trim().to_ascii_lowercase().as_str() {
        "trace" => Level::TRACE,
        "info" => Level::INFO,
        "warn" | "warning" => Level::WARN,
        "error" | "fatal" | "panic" => Level::ERROR,
        _ => Level::DEBUG,
    }
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Installs the global logger. Returns a warning when the file could not be opened (the
/// logger then writes to stderr).
pub fn init(file: &str, level_name: &str) -> Option<String> {
    let max = level(level_name);
    // Our own events at the configured level; the gRPC/HTTP2 stack's only from warn up.
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,cni={max},aws_cni={max}"));
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(filter);
    let (result, warning) = match destination(file) {
        Destination::Stderr => (builder.with_writer(std::io::stderr).try_init(), None),
        Destination::File(path) => match open(&path) {
            Ok(f) => (builder.with_writer(Mutex::new(f)).try_init(), None),
            Err(e) => (
                builder.with_writer(std::io::stderr).try_init(),
                Some(format!(
                    "aws-cni: cannot open log file {}: {e}; logging to stderr",
                    path.display()
                )),
            ),
        },
    };
    // A logger already installed (tests calling twice) is not an error worth reporting.
    let _ = result;
    if let Some(w) = &warning {
        tracing::warn!("{w}");
    }
    warning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_and_levels() {
        assert_eq!(destination(""), Destination::Stderr);
        assert_eq!(destination("stdout"), Destination::Stderr, "never stdout");
        assert_eq!(
            destination("/var/log/aws-routed-eni/plugin.log"),
            Destination::File("/var/log/aws-routed-eni/plugin.log".into())
        );
        assert_eq!(level("Debug"), Level::DEBUG);
        assert_eq!(level("INFO"), Level::INFO);
        assert_eq!(level("warn"), Level::WARN);
        assert_eq!(level("Error"), Level::ERROR);
        assert_eq!(level("nonsense"), Level::DEBUG);
    }
}
