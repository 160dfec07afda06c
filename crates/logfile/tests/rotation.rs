//! The rotating writer on a temporary directory with small sizes: lumberjack's behaviour
//! (rotate before a write that would overflow, timestamped backups, at most N kept, gzip,
//! age limit, modes) and the JSON lines through a real tracing subscriber.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use logfile::backups::Naming;
use logfile::{Mill, RotatingFile, Rotation, Sink, ZapJson};

fn small(max_bytes: u64) -> Rotation {
    Rotation {
        max_bytes,
        ..Rotation::UPSTREAM
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// A 100-byte record numbered `i`.
fn record(i: usize) -> String {
    format!("{:<99}\n", format!("record {i:05}"))
}

#[test]
fn rotates_before_overflow_keeps_five_gzipped_backups_and_loses_no_recent_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs/ipamd.log");
    let f = RotatingFile::open(&path, small(1000), Mill::Inline).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600,
        "a new log file is 0600, as lumberjack's"
    );
    for i in 0..95 {
        assert_eq!(f.write_record(record(i).as_bytes()).unwrap(), 100);
    }
    let current = std::fs::read_to_string(&path).unwrap();
    // 10 records per file: 0-9, 10-19, ... 90-94 in the current file.
    assert_eq!(current, (90..95).map(record).collect::<String>());
    let logs = dir.path().join("logs");
    let all = names(&logs);
    let naming = Naming::new("ipamd.log");
    let backups: Vec<&String> = all.iter().filter(|n| *n != "ipamd.log").collect();
    assert_eq!(backups.len(), 5, "{all:?}");
    for b in &backups {
        assert!(b.starts_with("ipamd-") && b.ends_with(".log.gz"), "{b}");
        assert!(naming.parse(b).is_some(), "{b}");
        let text = gunzip(&logs.join(b));
        assert_eq!(text.len(), 1000, "full files of whole records: {b}");
    }
    // The newest backup holds the records just before the current file's (rotations within
    // one millisecond take the next free millisecond's name).
    for (k, b) in backups.iter().enumerate() {
        let first = 40 + 10 * k;
        assert_eq!(
            gunzip(&logs.join(b)),
            (first..first + 10).map(record).collect::<String>(),
            "the five newest backups, oldest first by name: {b}"
        );
    }
}

#[test]
fn a_full_existing_file_is_rotated_on_open_and_a_smaller_one_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugin.log");
    std::fs::write(&path, "x".repeat(600)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let no_gzip = Rotation {
        compress: false,
        ..small(1000)
    };
    let f = RotatingFile::open(&path, no_gzip, Mill::Inline).unwrap();
    f.write_record(b"appended\n").unwrap();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("xappended\n")
    );
    drop(f);
    std::fs::write(&path, "y".repeat(1000)).unwrap();
    let f = RotatingFile::open(&path, no_gzip, Mill::Inline).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "",
        "rotated on open"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644,
        "the new file keeps the old one's mode"
    );
    let all = names(dir.path());
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all[0].starts_with("plugin-") && all[0].ends_with(".log"),
        "{all:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&all[0])).unwrap(),
        "y".repeat(1000)
    );
    // A record larger than the maximum is refused, as lumberjack's, without a panic.
    let err = f.write_record(&[b'z'; 1001]).unwrap_err();
    assert!(
        err.to_string().contains("exceeds maximum file size 1000"),
        "{err}"
    );
    f.write_record(b"still logging\n").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "still logging\n");
}

#[test]
fn backups_older_than_30_days_are_removed_and_strangers_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let old = "ipamd-2001-01-01T00-00-00.000.log.gz";
    let stranger = "ipamd-notes.log";
    for n in [old, stranger, "other-2001-01-01T00-00-00.000.log"] {
        std::fs::write(dir.path().join(n), "old").unwrap();
    }
    let _f = RotatingFile::open(&dir.path().join("ipamd.log"), small(1000), Mill::Inline).unwrap();
    let all = names(dir.path());
    assert!(!all.contains(&old.to_owned()), "{all:?}");
    assert!(all.contains(&stranger.to_owned()), "{all:?}");
    assert_eq!(all.len(), 3, "{all:?}");
}

#[test]
fn concurrent_writers_never_tear_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipamd.log");
    let keep_all = Rotation {
        max_bytes: 2000,
        max_backups: 0,
        max_age_days: 0,
        compress: false,
    };
    let f = RotatingFile::open(&path, keep_all, Mill::Background).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let f = f.clone();
            s.spawn(move || {
                for i in 0..100 {
                    f.write_record(record(t * 1000 + i).as_bytes()).unwrap();
                }
            });
        }
    });
    let mut lines = Vec::new();
    for n in names(dir.path()) {
        let text = std::fs::read_to_string(dir.path().join(&n)).unwrap();
        assert!(text.len() <= 2000, "{n}");
        lines.extend(text.lines().map(str::to_owned));
    }
    assert_eq!(lines.len(), 400);
    assert!(
        lines
            .iter()
            .all(|l| l.len() == 99 && l.starts_with("record "))
    );
}

#[test]
fn a_background_mill_compresses_backups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipamd.log");
    let f = RotatingFile::open(&path, small(300), Mill::Background).unwrap();
    for i in 0..4 {
        f.write_record(record(i).as_bytes()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = names(dir.path());
        if all.len() == 2 && all[0].ends_with(".log.gz") {
            assert_eq!(
                gunzip(&dir.path().join(&all[0])),
                (0..3).map(record).collect::<String>()
            );
            break;
        }
        assert!(Instant::now() < deadline, "not compressed: {all:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_unwritable_path_falls_back_to_stderr_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let path = blocker.join("ipamd.log");
    let (_w, warning) = logfile::make_writer(Sink::File(&path), Rotation::UPSTREAM, Mill::Inline);
    let warning = warning.unwrap();
    assert!(
        warning.contains("cannot open log file") && warning.contains("logging to stderr"),
        "{warning}"
    );
    let (_w, none) = logfile::make_writer(Sink::Stderr, Rotation::UPSTREAM, Mill::Inline);
    assert_eq!(none, None);
}

#[test]
fn tracing_events_become_zap_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipamd.log");
    let f = RotatingFile::open(&path, Rotation::UPSTREAM, Mill::Inline).unwrap();
    let subscriber = tracing_subscriber::fmt()
        .event_format(ZapJson)
        .with_writer(f)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(container = "c0", code = 7, ok = true, "ADD ok");
        tracing::trace!("fine detail");
        let e = std::io::Error::other("boom");
        tracing::error!(error = &e as &dyn std::error::Error, "failed: {}", 42);
    });
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let first = text.lines().next().unwrap();
    assert!(first.starts_with(r#"{"level":"info","ts":""#), "{first}");
    let keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in ["level", "ts", "caller", "msg", "container", "code", "ok"] {
        assert!(keys.contains(&k), "{k} in {first}");
    }
    assert_eq!(lines[0]["msg"], "ADD ok");
    assert_eq!(lines[0]["container"], "c0");
    assert_eq!(lines[0]["code"], 7);
    assert!(
        lines[0]["caller"]
            .as_str()
            .unwrap()
            .starts_with("tests/rotation.rs:")
    );
    let ts = lines[0]["ts"].as_str().unwrap();
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(
        ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.',
        "{ts}"
    );
    assert_eq!(lines[1]["level"], "debug", "zap has no trace level");
    assert_eq!(lines[2]["level"], "error");
    assert_eq!(lines[2]["msg"], "failed: 42");
    assert_eq!(lines[2]["error"], "boom");
}
