//! ipamd's log as upstream's `logger.Setup` places it: `AWS_VPC_K8S_CNI_LOG_FILE` (`stdout`,
//! `stderr` or a file, default `/host/var/log/aws-routed-eni/ipamd.log`, appended; not
//! rotated by us) at `AWS_VPC_K8S_CNI_LOGLEVEL` for the agent's own crates; libraries log
//! from `warn` up. `RUST_LOG`, when set, replaces the level filter. A file that cannot be
//! opened falls back to stderr with a warning: logging never stops the agent.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

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

/// The tracing filter for `level` (pure).
pub fn filter_directives(level: LogLevel) -> String {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error | LogLevel::Fatal => "error",
    };
    let own: Vec<String> = OWN_CRATES.iter().map(|c| format!("{c}={level}")).collect();
    format!("warn,{}", own.join(","))
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Installs the global logger; returns a warning when the file could not be opened.
pub fn init(destination: &LogDestination, level: LogLevel) -> Option<String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter_directives(level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let mut warning = None;
    let _already_installed = match destination {
        LogDestination::Stdout => builder.with_writer(std::io::stdout).try_init(),
        LogDestination::Stderr => builder.with_writer(std::io::stderr).try_init(),
        LogDestination::File(path) => match open(path) {
            Ok(f) => builder
                .with_ansi(false)
                .with_writer(Mutex::new(f))
                .try_init(),
            Err(e) => {
                warning = Some(format!(
                    "cannot open the log file {}: {e}; logging to stderr",
                    path.display()
                ));
                builder.with_writer(std::io::stderr).try_init()
            }
        },
    };
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
}
