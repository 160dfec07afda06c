//! Which files are backups of a log file, and which of them to remove or compress: the pure
//! half of lumberjack's `backupName`, `oldLogFiles` and `millRunOnce`.

use crate::time::{self, UnixMillis};

/// Suffix of a compressed backup (lumberjack's `compressSuffix`).
pub const GZ: &str = ".gz";

/// How a log file rotates. [`Rotation::UPSTREAM`] is what upstream's `getLogWriter` gives
/// lumberjack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate when a write would make the file larger than this.
    pub max_bytes: u64,
    /// Backups kept (0: all).
    pub max_backups: usize,
    /// Backups older than this many days are removed (0: never).
    pub max_age_days: u32,
    /// gzip backups.
    pub compress: bool,
}

/// Test-only knob: a positive byte count replaces the 100 MB maximum size, so the rotation
/// tests of the binaries need not write 100 MB. Not a setting for nodes.
pub const TEST_MAX_BYTES_ENV: &str = "VPC_CNI_TEST_LOG_MAX_BYTES";

impl Rotation {
    /// `MaxSize: 100` (MB of 1024 * 1024 bytes), `MaxBackups: 5`, `MaxAge: 30`,
    /// `Compress: true` (upstream `pkg/utils/logger/zaplogger.go`, `getLogWriter`).
    pub const UPSTREAM: Rotation = Rotation {
        max_bytes: 100 * 1024 * 1024,
        max_backups: 5,
        max_age_days: 30,
        compress: true,
    };

    /// [`Rotation::UPSTREAM`], with the maximum size from [`TEST_MAX_BYTES_ENV`] when that
    /// holds a positive number.
    pub fn upstream_or_test_override(lookup: impl Fn(&str) -> Option<String>) -> Rotation {
        let max = lookup(TEST_MAX_BYTES_ENV)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > 0);
        Rotation {
            max_bytes: max.unwrap_or(Self::UPSTREAM.max_bytes),
            ..Self::UPSTREAM
        }
    }
}

/// How the backups of one log file are named: `ipamd.log` → `ipamd-<stamp>.log`, and
/// `ipamd-<stamp>.log.gz` once compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    prefix: String,
    ext: String,
}

/// One backup found in the log file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    pub name: String,
    /// The rotation time its name carries.
    pub time: UnixMillis,
}

impl Backup {
    pub fn is_compressed(&self) -> bool {
        self.name.ends_with(GZ)
    }

    /// The name without [`GZ`]: a backup and its compressed copy count once.
    fn base(&self) -> &str {
        self.name.strip_suffix(GZ).unwrap_or(&self.name)
    }
}

/// What a mill pass does: files (names in the log's directory) to remove and to compress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub remove: Vec<String>,
    pub compress: Vec<String>,
}

impl Naming {
    /// From the log file's name (no directory). The extension is Go's `filepath.Ext`: from
    /// the last dot on, or empty.
    pub fn new(file_name: &str) -> Naming {
        let ext = file_name.rfind('.').map_or("", |i| &file_name[i..]);
        let stem = &file_name[..file_name.len() - ext.len()];
        Naming {
            prefix: format!("{stem}-"),
            ext: ext.to_owned(),
        }
    }

    /// The name the log file gets when it is rotated at `now`.
    pub fn backup_name(&self, now: UnixMillis) -> String {
        format!("{}{}{}", self.prefix, time::backup_stamp(now), self.ext)
    }

    /// `name` as a backup of this log file (compressed or not), or `None`.
    pub fn parse(&self, name: &str) -> Option<Backup> {
        let stamp_of = |n: &str| {
            time::parse_backup_stamp(n.strip_prefix(&self.prefix)?.strip_suffix(&self.ext)?)
        };
        // Plain first, then compressed (lumberjack's `oldLogFiles`).
        let time = stamp_of(name).or_else(|| stamp_of(name.strip_suffix(GZ)?))?;
        Some(Backup {
            name: name.to_owned(),
            time,
        })
    }
}

/// lumberjack's `millRunOnce` decision: newest first, keep `max_backups` distinct backups
/// (a backup and its `.gz` count once), remove those older than `max_age_days`, compress
/// the uncompressed survivors when `compress` is on.
pub fn plan(mut backups: Vec<Backup>, now: UnixMillis, rotation: &Rotation) -> Plan {
    let mut plan = Plan::default();
    if rotation.max_backups == 0 && rotation.max_age_days == 0 && !rotation.compress {
        return plan;
    }
    backups.sort_by_key(|b| std::cmp::Reverse(b.time));
    if rotation.max_backups > 0 {
        let mut seen: Vec<&str> = Vec::new();
        let mut keep = Vec::new();
        for b in &backups {
            if !seen.contains(&b.base()) {
                seen.push(b.base());
            }
            if seen.len() > rotation.max_backups {
                plan.remove.push(b.name.clone());
            } else {
                keep.push(b.clone());
            }
        }
        backups = keep;
    }
    if rotation.max_age_days > 0 {
        let cutoff = now.saturating_sub(i64::from(rotation.max_age_days) * 86_400_000);
        let (old, young): (Vec<_>, Vec<_>) = backups.into_iter().partition(|b| b.time < cutoff);
        plan.remove.extend(old.into_iter().map(|b| b.name));
        backups = young;
    }
    if rotation.compress {
        plan.compress = backups
            .into_iter()
            .filter(|b| !b.is_compressed())
            .map(|b| b.name)
            .collect();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_715_890_011_404;

    fn naming() -> Naming {
        Naming::new("ipamd.log")
    }

    #[test]
    fn backup_names_are_lumberjacks() {
        assert_eq!(
            naming().backup_name(NOW),
            "ipamd-2024-05-16T20-06-51.404.log"
        );
        assert_eq!(
            Naming::new("plain").backup_name(0),
            "plain-1970-01-01T00-00-00.000"
        );
        assert_eq!(
            Naming::new("a.b.log").backup_name(0),
            "a.b-1970-01-01T00-00-00.000.log"
        );
        let b = naming()
            .parse("ipamd-2024-05-16T20-06-51.404.log.gz")
            .unwrap();
        assert_eq!(b.time, NOW);
        assert!(b.is_compressed());
        for other in [
            "ipamd.log",
            "plugin-2024-05-16T20-06-51.404.log",
            "ipamd-2024-05-16T20-06-51.404.txt",
            "ipamd-yesterday.log",
            "ipamd-2024-05-16T20-06-51.404.log.gz.gz",
        ] {
            assert_eq!(naming().parse(other), None, "{other}");
        }
    }

    fn backup(ms: i64, gz: bool) -> Backup {
        let mut name = naming().backup_name(ms);
        if gz {
            name.push_str(GZ);
        }
        Backup { name, time: ms }
    }

    #[test]
    fn the_oldest_beyond_five_go_and_the_rest_are_compressed() {
        let all: Vec<Backup> = (0..8).map(|i| backup(NOW - i * 1000, i % 2 == 0)).collect();
        let p = plan(all.clone(), NOW, &Rotation::UPSTREAM);
        let names =
            |r: std::ops::Range<usize>| all[r].iter().map(|b| b.name.clone()).collect::<Vec<_>>();
        assert_eq!(p.remove, names(5..8));
        assert_eq!(p.compress, vec![all[1].name.clone(), all[3].name.clone()]);
    }

    #[test]
    fn a_backup_and_its_gz_count_once_and_old_ones_go() {
        let mut all = vec![backup(NOW, false), backup(NOW, true)];
        all.push(backup(NOW - 31 * DAY, true));
        let p = plan(all.clone(), NOW, &Rotation::UPSTREAM);
        assert_eq!(p.remove, vec![all[2].name.clone()]);
        assert_eq!(p.compress, vec![all[0].name.clone()]);
        let off = Rotation {
            max_backups: 0,
            max_age_days: 0,
            compress: false,
            ..Rotation::UPSTREAM
        };
        assert_eq!(plan(all, NOW, &off), Plan::default());
    }

    #[test]
    fn the_test_knob_only_changes_the_size() {
        let r = Rotation::upstream_or_test_override(|_| Some("4096".into()));
        assert_eq!(r.max_bytes, 4096);
        assert_eq!(r.max_backups, 5);
        for bad in ["", "0", "-1", "lots"] {
            let r = Rotation::upstream_or_test_override(|_| Some(bad.into()));
            assert_eq!(r, Rotation::UPSTREAM, "{bad:?}");
        }
        assert_eq!(
            Rotation::upstream_or_test_override(|_| None),
            Rotation::UPSTREAM
        );
    }

    proptest! {
        #[test]
        fn at_most_max_backups_survive_and_the_newest_do(
            times in proptest::collection::vec(NOW - 40 * DAY..NOW, 0..20),
            max in 1usize..8,
        ) {
            let all: Vec<Backup> = times.iter().map(|&t| backup(t, t % 3 == 0)).collect();
            let r = Rotation { max_backups: max, ..Rotation::UPSTREAM };
            let p = plan(all.clone(), NOW, &r);
            let survivors: Vec<&Backup> = all.iter().filter(|b| !p.remove.contains(&b.name)).collect();
            let mut bases: Vec<&str> = survivors.iter().map(|b| b.base()).collect();
            bases.sort();
            bases.dedup();
            prop_assert!(bases.len() <= max);
            for s in &survivors {
                prop_assert!(s.time >= NOW - 30 * DAY);
                let newer_removed = all.iter().any(|b| b.time > s.time && p.remove.contains(&b.name) && b.time >= NOW - 30 * DAY);
                prop_assert!(!newer_removed, "a newer backup was removed while {} was kept", s.name);
                prop_assert_eq!(p.compress.contains(&s.name), !s.is_compressed());
            }
            for c in &p.compress {
                prop_assert!(!p.remove.contains(c));
            }
        }
    }
}
