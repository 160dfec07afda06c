//! A log file that rotates by size, as lumberjack's `Logger` does for upstream: when a write
//! would take the file past the maximum size, the file is renamed to a timestamped backup
//! (`ipamd-2024-05-16T20-06-51.404.log`), a new one is started, and a "mill" pass removes
//! backups beyond the count or age limits and gzips the rest.
//!
//! Failures never panic and never stop the program: a write that cannot reach the file
//! returns the error (tracing-subscriber then reports it on stderr) and the next write tries
//! again; mill failures are ignored, as lumberjack's.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::backups::{self, GZ, Naming, Rotation};
use crate::time;

/// Where a mill pass (removing and compressing backups) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mill {
    /// On a thread of its own (long-lived processes: ipamd). lumberjack's goroutine.
    Background,
    /// In the writing thread, before the write returns (short-lived processes: the CNI
    /// plugins exit right after their command, which would cut a background pass short).
    Inline,
}

/// A size-rotating log file; cheap to clone (clones share the file).
#[derive(Clone)]
pub struct RotatingFile {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    dir: PathBuf,
    naming: Naming,
    rotation: Rotation,
    mill: Mill,
    state: Mutex<State>,
    job: Arc<MillJob>,
}

#[derive(Default)]
struct State {
    file: Option<File>,
    size: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RotatingFile {
    /// A rotating file at `path`, opened (directories created) before returning so that an
    /// unwritable path is known up front.
    pub fn open(path: &Path, rotation: Rotation, mill: Mill) -> io::Result<RotatingFile> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let f = RotatingFile {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                naming: Naming::new(&name),
                rotation,
                mill,
                state: Mutex::new(State::default()),
                job: Arc::new(MillJob {
                    dir: dir.clone(),
                    naming: Naming::new(&name),
                    rotation,
                    one_at_a_time: Mutex::new(()),
                }),
                dir,
            }),
        };
        f.inner.open_existing_or_new(&mut lock(&f.inner.state), 0)?;
        Ok(f)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes `buf` whole to the current file, rotating first when it would not fit. A
    /// record larger than the maximum size is refused (lumberjack's error).
    pub fn write_record(&self, buf: &[u8]) -> io::Result<usize> {
        let inner = &self.inner;
        let len = buf.len() as u64;
        if len > inner.rotation.max_bytes {
            return Err(io::Error::other(format!(
                "write length {len} exceeds maximum file size {}",
                inner.rotation.max_bytes
            )));
        }
        let mut state = lock(&inner.state);
        if state.file.is_none() {
            inner.open_existing_or_new(&mut state, len)?;
        }
        if state.size + len > inner.rotation.max_bytes {
            inner.rotate(&mut state)?;
        }
        let file = state
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("log file not open"))?;
        let written = file.write_all(buf);
        if written.is_err() {
            // Reopen on the next write (the directory may have been removed).
            state.file = None;
        }
        written?;
        state.size += len;
        Ok(buf.len())
    }
}

impl Inner {
    /// lumberjack's `openExistingOrNew`: append to the file unless this write would fill it.
    fn open_existing_or_new(&self, state: &mut State, len: u64) -> io::Result<()> {
        self.mill();
        let meta = match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.open_new(state),
            Err(e) => return Err(e),
            Ok(m) => m,
        };
        if meta.len() + len >= self.rotation.max_bytes {
            return self.rotate(state);
        }
        match OpenOptions::new().append(true).open(&self.path) {
            Ok(f) => {
                state.file = Some(f);
                state.size = meta.len();
                Ok(())
            }
            // As lumberjack: an existing file that cannot be opened is moved aside.
            Err(_) => self.open_new(state),
        }
    }

    fn rotate(&self, state: &mut State) -> io::Result<()> {
        state.file = None;
        self.open_new(state)?;
        self.mill();
        Ok(())
    }

    /// lumberjack's `openNew`: move the current file to its backup name (keeping its mode and
    /// owner for the new one) and start an empty file (mode 0600 when there was none).
    fn open_new(&self, state: &mut State) -> io::Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)?;
        let old = std::fs::metadata(&self.path).ok();
        if old.is_some() {
            std::fs::rename(&self.path, self.free_backup_path())?;
        }
        let mode = old
            .as_ref()
            .map_or(0o600, |m| m.permissions().mode() & 0o7777);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .truncate(false)
            .mode(mode)
            .open(&self.path)?;
        if let Some(m) = &old {
            // Best effort, as the owner only matters when the agent is not root.
            let _ = std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()));
        }
        state.file = Some(file);
        state.size = 0;
        Ok(())
    }

    /// The backup name for now, kept later than every backup already there: when rotations
    /// come faster than one a millisecond, or the clock has not passed the newest backup's
    /// stamp (a name freed by pruning would otherwise come back and sort as the oldest), the
    /// millisecond after the newest backup's (lumberjack would overwrite the earlier one).
    /// A name another process took meanwhile is skipped.
    fn free_backup_path(&self) -> PathBuf {
        let now = time::now_millis();
        let newest = existing_backups(&self.dir, &self.naming)
            .iter()
            .map(|b| b.time)
            .max();
        let start = newest.map_or(now, |t| now.max(t + 1));
        let candidate = |ms| self.dir.join(self.naming.backup_name(ms));
        (start..start + 1_000)
            .map(candidate)
            .find(|p| std::fs::symlink_metadata(p).is_err())
            .unwrap_or_else(|| candidate(start))
    }

    fn mill(&self) {
        let r = &self.rotation;
        if r.max_backups == 0 && r.max_age_days == 0 && !r.compress {
            return;
        }
        match self.mill {
            Mill::Inline => self.job.run(),
            Mill::Background => {
                let job = Arc::clone(&self.job);
                if std::thread::Builder::new()
                    .name("log-mill".into())
                    .spawn(move || job.run())
                    .is_err()
                {
                    self.job.run();
                }
            }
        }
    }
}

/// The backups of a log file in `dir` (plain and compressed; none when `dir` cannot be read).
fn existing_backups(dir: &Path, naming: &Naming) -> Vec<backups::Backup> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .filter_map(|e| naming.parse(&e.file_name().to_string_lossy()))
        .collect()
}

/// One mill pass over a log file's directory.
struct MillJob {
    dir: PathBuf,
    naming: Naming,
    rotation: Rotation,
    one_at_a_time: Mutex<()>,
}

impl MillJob {
    fn run(&self) {
        let _one = lock(&self.one_at_a_time);
        let found = existing_backups(&self.dir, &self.naming);
        let plan = backups::plan(found, time::now_millis(), &self.rotation);
        for name in &plan.remove {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
        for name in &plan.compress {
            let src = self.dir.join(name);
            let dst = self.dir.join(format!("{name}{GZ}"));
            if gzip(&src, &dst).is_ok() {
                let _ = std::fs::remove_file(&src);
            } else {
                let _ = std::fs::remove_file(&dst);
            }
        }
    }
}

/// lumberjack's `compressLogFile`: `dst` gets `src` gzipped, with `src`'s mode.
fn gzip(src: &Path, dst: &Path) -> io::Result<()> {
    let mut input = File::open(src)?;
    let mode = input.metadata()?.permissions().mode() & 0o7777;
    let out = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(dst)?;
    let mut gz = GzEncoder::new(out, Compression::fast());
    io::copy(&mut input, &mut gz)?;
    gz.finish()?.sync_all()
}

impl io::Write for &RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_record(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = &'a RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}
