//! Atomic installation of files into host directories that kubelet and the container
//! runtime read at any moment: the content is written to a temporary file in the same
//! directory, given its final mode, flushed to disk, then renamed over the target, and the
//! directory entry is flushed. A reader sees the old file or the new one, never a part.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// A failed installation (nothing is left behind).
#[derive(Debug, thiserror::Error)]
#[error("installing {target}: {what}: {source}")]
pub struct InstallError {
    pub target: PathBuf,
    pub what: String,
    #[source]
    pub source: io::Error,
}

fn err(target: &Path, what: impl Into<String>) -> impl FnOnce(io::Error) -> InstallError {
    let target = target.to_path_buf();
    let what = what.into();
    move |source| InstallError {
        target,
        what,
        source,
    }
}

/// The temporary name used while writing `name` (hidden, unique per process).
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp.{}", std::process::id())
}

/// Writes `bytes` to `dir/name` with `mode`, atomically.
pub fn install_bytes(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<PathBuf, InstallError> {
    let target = dir.join(name);
    fs::create_dir_all(dir).map_err(err(&target, format!("creating {}", dir.display())))?;
    let tmp = dir.join(temp_name(name));
    let result = write_and_rename(&tmp, &target, |f| f.write_all(bytes), mode);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| target)
}

/// Copies the regular file `src` to `dir/<file name of src>` atomically, keeping its mode.
pub fn install_file(src: &Path, dir: &Path) -> Result<PathBuf, InstallError> {
    let name = src
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| InstallError {
            target: src.to_path_buf(),
            what: "source has no usable file name".into(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
    let target = dir.join(name);
    let meta = fs::metadata(src).map_err(err(&target, format!("reading {}", src.display())))?;
    if !meta.is_file() {
        return Err(InstallError {
            target,
            what: format!("source {} is not a regular file", src.display()),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    let mut input = File::open(src).map_err(err(&target, format!("opening {}", src.display())))?;
    fs::create_dir_all(dir).map_err(err(&target, format!("creating {}", dir.display())))?;
    let tmp = dir.join(temp_name(name));
    let result = write_and_rename(&tmp, &target, |f| io::copy(&mut input, f).map(|_| ()), mode);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| target)
}

fn write_and_rename(
    tmp: &Path,
    target: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
    mode: u32,
) -> Result<(), InstallError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(tmp)
        .map_err(err(target, format!("creating {}", tmp.display())))?;
    fill(&mut f).map_err(err(target, "writing the content"))?;
    // The umask may have narrowed the mode given to open(2).
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err(target, "setting the mode"))?;
    f.sync_all().map_err(err(target, "flushing to disk"))?;
    drop(f);
    fs::rename(tmp, target).map_err(err(target, format!("renaming {}", tmp.display())))?;
    if let Some(dir) = target.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err(target, "flushing the directory"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_content_and_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("aws-cni");
        fs::write(&src, b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
        let out = dir.path().join("bin");
        let target = install_file(&src, &out).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"#!/bin/sh\necho hi\n");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // Replacing an existing file works and nothing else is left in the directory.
        fs::write(&src, b"v2").unwrap();
        install_file(&src, &out).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"v2");
        let names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["aws-cni"]);
        install_bytes(&out, "10-aws.conflist", b"{}", 0o644).unwrap();
        assert_eq!(
            fs::metadata(out.join("10-aws.conflist"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
    }

    #[test]
    fn refuses_missing_and_non_regular_sources() {
        let dir = tempfile::tempdir().unwrap();
        let e = install_file(&dir.path().join("nope"), dir.path()).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        fs::create_dir(dir.path().join("sub")).unwrap();
        let e = install_file(&dir.path().join("sub"), &dir.path().join("out")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
