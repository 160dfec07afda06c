//! The plugins' log (`aws-cni`, `egress-cni`): the conflist's `pluginLogFile` at
//! `pluginLogLevel`, as upstream's `logger.New` in `LoadNetConf`: zap's JSON lines, a file
//! rotating as lumberjack's (the `logfile` crate; docs/configuration.md "Logs").
//!
//! stdout is the CNI result channel, so nothing is ever logged there: `stdout` as the log
//! file is treated as `stderr` (upstream's entrypoint refuses it). An empty value means
//! `stderr`, as upstream. A log file that cannot be opened (read-only directory, ...) falls
//! back to stderr with one warning line: logging never fails a command.

use std::path::PathBuf;

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

/// Crates whose events the configured level applies to; the gRPC/HTTP2 stack's and the
/// netlink helpers' are logged from warn up.
const OWN_CRATES: [&str; 3] = ["cni", "aws_cni", "egress_cni"];

/// Installs the global logger for `program` (the name the warning starts with). Returns a
/// warning when the file could not be opened (the logger then writes to stderr).
pub fn init(program: &str, file: &str, level_name: &str) -> Option<String> {
    let max = level(level_name);
    let own: Vec<String> = OWN_CRATES.iter().map(|c| format!("{c}={max}")).collect();
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,{}", own.join(",")));
    let dest = destination(file);
    let sink = match &dest {
        Destination::Stderr => logfile::Sink::Stderr,
        Destination::File(path) => logfile::Sink::File(path),
    };
    // Inline: the plugin exits right after its command, which would cut a background mill
    // pass short.
    let warning = logfile::install(sink, filter, logfile::Mill::Inline);
    let warning = warning.map(|w| format!("{program}: {w}"));
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
