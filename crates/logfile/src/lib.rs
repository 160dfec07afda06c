//! Log files where operators and the EKS log collector look for them, written as upstream's
//! `pkg/utils/logger` writes them: JSON lines with zap's field names ([`ZapJson`]) into a
//! file that rotates by size with capped, gzip-compressed backups ([`RotatingFile`],
//! lumberjack's behaviour with upstream's settings, [`Rotation::UPSTREAM`]). See
//! `docs/configuration.md` ("Logs").

pub mod backups;
pub mod json;
pub mod time;
pub mod writer;

use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

pub use backups::{Rotation, TEST_MAX_BYTES_ENV};
pub use json::ZapJson;
pub use writer::{Mill, RotatingFile};

/// Where a program's log goes (upstream's `getPluginLogFilePath`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink<'a> {
    Stdout,
    Stderr,
    File(&'a Path),
}

/// A writer for `sink`, and a warning when the file could not be opened (the writer then
/// goes to stderr: logging never stops the program).
pub fn make_writer(
    sink: Sink<'_>,
    rotation: Rotation,
    mill: Mill,
) -> (BoxMakeWriter, Option<String>) {
    match sink {
        Sink::Stdout => (BoxMakeWriter::new(std::io::stdout), None),
        Sink::Stderr => (BoxMakeWriter::new(std::io::stderr), None),
        Sink::File(path) => match RotatingFile::open(path, rotation, mill) {
            Ok(f) => (BoxMakeWriter::new(f), None),
            Err(e) => (
                BoxMakeWriter::new(std::io::stderr),
                Some(format!(
                    "cannot open log file {}: {e}; logging to stderr",
                    path.display()
                )),
            ),
        },
    }
}

/// Installs the global logger: `filter`'s events as zap JSON lines into `sink`, rotated as
/// upstream (or as [`TEST_MAX_BYTES_ENV`] says, in tests). A logger already installed (tests
/// starting a program twice in one process) is kept. Returns [`make_writer`]'s warning, for
/// the caller to log once the logger is up.
pub fn install(sink: Sink<'_>, filter: EnvFilter, mill: Mill) -> Option<String> {
    let rotation = Rotation::upstream_or_test_override(|k| std::env::var(k).ok());
    let (writer, warning) = make_writer(sink, rotation, mill);
    let _ = tracing_subscriber::fmt()
        .event_format(ZapJson)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
    warning
}
