//! The checkpoint on disk (std::fs only): read, atomic write, quarantine of a bad file,
//! the per-network-card path, and [`FileSink`].

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointSink};

/// Default checkpoint path of network card 0 (`AWS_VPC_K8S_CNI_BACKING_STORE`).
pub const DEFAULT_CHECKPOINT_PATH: &str = "/var/run/aws-node/ipam.json";

/// Attempts at finding a free temp or quarantine name before giving up.
const NAME_ATTEMPTS: u32 = 1000;

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> CheckpointError + use<> {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io { path, op, source }
}

/// The checkpoint path of a network card: card 0 → `base`; card N > 0 → `base` without a
/// trailing `.json`, plus `-nic-N.json` (`/var/run/aws-node/ipam-nic-1.json`).
pub fn checkpoint_path_for_card(base: &Path, card: u32) -> PathBuf {
    if card == 0 {
        return base.to_path_buf();
    }
    let bytes = base.as_os_str().as_bytes();
    let stem = bytes.strip_suffix(b".json").unwrap_or(bytes);
    let mut out = stem.to_vec();
    out.extend_from_slice(format!("-nic-{card}.json").as_bytes());
    PathBuf::from(OsString::from_vec(out))
}

/// Reads a checkpoint file. A missing file is `Ok(None)` (fresh node); unreadable bytes,
/// corrupt or truncated JSON give an error naming the file; a wrong version is
/// [`CheckpointError::UnsupportedVersion`].
pub fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "read")(e)),
    };
    match Checkpoint::from_json(&bytes) {
        Ok(doc) => Ok(Some(doc)),
        Err(CheckpointError::Parse(source)) => Err(CheckpointError::Corrupt {
            path: path.to_path_buf(),
            source,
        }),
        Err(other) => Err(other),
    }
}

/// Encodes `doc` (see [`Checkpoint::to_json`]) and writes it atomically to `path`.
pub fn write_checkpoint(path: &Path, doc: &Checkpoint) -> Result<(), CheckpointError> {
    write_atomic(path, &doc.to_json()?)
}

/// Atomically replaces `path` with `bytes`: a temp file `<name>.tmp<n>` (mode 0600) in the
/// same directory is written and fdatasynced, then renamed over the target, as upstream's
/// `JSONFile.Checkpoint` does (`pkg/ipamd/datastore/checkpoint.go`: `Sync`, `Rename`). The
/// rename is atomic against a crash of the agent, which is what the checkpoint is for; the
/// directory is not fsynced (upstream does not either): only a crash of the whole node could
/// lose the rename, and such a node restarts every pod. On an EKS node the file lives on a
/// tmpfs (`/var/run`) anyway. On any failure the temp file is removed and the target is
/// left untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let (tmp_path, mut file) = create_temp(path)?;
    let result = (|| {
        file.write_all(bytes).map_err(io_err(&tmp_path, "write"))?;
        file.sync_data().map_err(io_err(&tmp_path, "fdatasync"))?;
        drop(file);
        fs::rename(&tmp_path, path).map_err(io_err(path, "rename"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn create_temp(path: &Path) -> Result<(PathBuf, File), CheckpointError> {
    let pid = std::process::id();
    for n in 0..NAME_ATTEMPTS {
        let candidate = with_suffix(path, &format!(".tmp{pid}-{n}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)
        {
            Ok(f) => return Ok((candidate, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&candidate, "create temp")(e)),
        }
    }
    Err(io_err(path, "create temp")(io::Error::from(
        io::ErrorKind::AlreadyExists,
    )))
}

/// Moves a bad checkpoint aside to `<path>.corrupt-<suffix>` (or `…-<suffix>.<n>` when that
/// exists) and returns the new path. Never overwrites an existing file: the new name is
/// created as a hard link (which fails if it exists) before the original is unlinked.
pub fn quarantine(path: &Path, suffix: &str) -> Result<PathBuf, CheckpointError> {
    for n in 0..NAME_ATTEMPTS {
        let name = if n == 0 {
            format!(".corrupt-{suffix}")
        } else {
            format!(".corrupt-{suffix}.{n}")
        };
        let target = with_suffix(path, &name);
        match fs::hard_link(path, &target) {
            Ok(()) => {
                fs::remove_file(path).map_err(io_err(path, "remove after quarantine"))?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(path, "quarantine")(e)),
        }
    }
    Err(io_err(path, "quarantine")(io::Error::from(
        io::ErrorKind::AlreadyExists,
    )))
}

/// A [`CheckpointSink`] writing atomically to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    /// A sink for this path.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl CheckpointSink for FileSink {
    fn persist(&mut self, doc: &Checkpoint) -> Result<(), CheckpointError> {
        write_checkpoint(&self.path, doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_card_paths() {
        let base = Path::new(DEFAULT_CHECKPOINT_PATH);
        assert_eq!(checkpoint_path_for_card(base, 0), base);
        assert_eq!(
            checkpoint_path_for_card(base, 1),
            Path::new("/var/run/aws-node/ipam-nic-1.json")
        );
        assert_eq!(
            checkpoint_path_for_card(Path::new("/tmp/state"), 3),
            Path::new("/tmp/state-nic-3.json")
        );
    }
}
