//! ipamd's log as upstream's `logger.Setup` places it: `AWS_VPC_K8S_CNI_LOG_FILE` (`stdout`,
//! `stderr` or a file, default `/host/var/log/aws-routed-eni/ipamd.log`) at
//! `AWS_VPC_K8S_CNI_LOGLEVEL` for the agent's own crates; libraries log from `warn` up.
//! `RUST_LOG`, when set, replaces the level filter. Lines are zap's JSON on every
//! destination; a file rotates as lumberjack's (100 MB, 5 gzipped backups, 30 days: the
//! `logfile` crate, docs/configuration.md "Logs"). A file that cannot be opened falls back
//! to stderr with a warning: logging never stops the agent.

use config::{LogDestination, LogLevel};

/// Crates whose events the configured level applies to (the agent's own code).
const OWN_CRATES: [&str; 8] = [
    "ipamd",
    "aws_k8s_agent",
    "aws",
    "ipam",
    "net",
    "k8s",
    "planner",
    "config",
];

/// Libraries whose names start with one of [`OWN_CRATES`]: a directive's target matches by
/// prefix (`aws=debug` would enable `aws_smithy_runtime` and `aws_sdk_ec2` too, `net=debug`
/// the netlink crates), and the longer, more specific directive wins, so these stay at warn.
const LIBRARY_PREFIXES: [&str; 3] = ["aws_", "netlink", "k8s_openapi"];

/// The tracing filter for `level` (pure).
pub fn filter_directives(level: LogLevel) -> String {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error | LogLevel::Fatal => "error",
    };
    let own = OWN_CRATES.iter().map(|c| format!("{c}={level}"));
    let libraries = LIBRARY_PREFIXES.iter().map(|c| format!("{c}=warn"));
    let directives: Vec<String> = own.chain(libraries).collect();
    format!("warn,{}", directives.join(","))
}

/// Installs the global logger; returns a warning when the file could not be opened.
pub fn init(destination: &LogDestination, level: LogLevel) -> Option<String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter_directives(level)));
    let sink = match destination {
        LogDestination::Stdout => logfile::Sink::Stdout,
        LogDestination::Stderr => logfile::Sink::Stderr,
        LogDestination::File(path) => logfile::Sink::File(path),
    };
    let warning = logfile::install(sink, filter, logfile::Mill::Background);
    if let Some(w) = &warning {
        tracing::warn!("{w}");
    }
    warning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_applies_to_our_crates_and_libraries_stay_at_warn() {
        let f = filter_directives(LogLevel::Info);
        assert!(f.starts_with("warn,"), "{f}");
        assert!(f.contains("ipamd=info") && f.contains("aws=info"), "{f}");
        assert!(filter_directives(LogLevel::Fatal).contains("ipamd=error"));
        assert!(filter_directives(LogLevel::Debug).contains("net=debug"));
    }

    /// Events through the real filter: at DEBUG our `aws` and `net` crates log, the AWS SDK's
    /// and netlink's crates (same name prefixes) do not.
    #[test]
    fn debug_for_our_crates_does_not_enable_libraries_sharing_their_prefix() {
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = seen.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter_directives(
                LogLevel::Debug,
            )))
            .with_ansi(false)
            .with_writer(move || SharedBuf(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "aws::ec2", "ours-aws");
            tracing::debug!(target: "net::host", "ours-net");
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "sdk-debug");
            tracing::debug!(target: "aws_sdk_ec2::operation", "sdk-ec2-debug");
            tracing::debug!(target: "netlink_proto::connection", "netlink-debug");
            tracing::warn!(target: "aws_smithy_runtime::client", "sdk-warn");
        });
        let text = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        for want in ["ours-aws", "ours-net", "sdk-warn"] {
            assert!(text.contains(want), "{want} missing: {text}");
        }
        for noise in ["sdk-debug", "sdk-ec2-debug", "netlink-debug"] {
            assert!(!text.contains(noise), "{noise} logged: {text}");
        }
    }

    struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
