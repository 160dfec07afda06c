//! The real `aws-cni` binary's log as upstream's plugin writes it (`logger.New` with the
//! conflist's `pluginLogFile`/`pluginLogLevel`): zap JSON lines in the file, rotated by size
//! into at most five gzipped `plugin-<time>.log.gz` backups across plugin runs, `stderr`
//! and `stdout` both meaning stderr (stdout is the CNI result). The 100 MB maximum is
//! lowered through the test-only `VPC_CNI_TEST_LOG_MAX_BYTES`.

use std::path::{Path, PathBuf};
use std::process::Command;

use cni::testing::{Run, run_plugin};
use serde_json::Value;

fn conf(log: &str, level: &str) -> String {
    format!(
        r#"{{"cniVersion":"0.4.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001","pluginLogFile":"{log}","pluginLogLevel":"{level}"}}"#
    )
}

/// A command the plugin refuses at once (no ipamd, no netns needed), logging the error.
fn refused(log: &str, extra: &[(&str, &str)]) -> Run {
    let mut env = vec![
        ("CNI_COMMAND", "FROB"),
        ("CNI_CONTAINERID", "c0"),
        ("CNI_NETNS", "/var/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];
    env.extend_from_slice(extra);
    let r = run_plugin(
        Path::new(env!("CARGO_BIN_EXE_aws-cni")),
        None,
        &env,
        &conf(log, "Debug"),
    );
    assert_eq!(r.rc, 1, "{}", r.stderr);
    assert!(
        r.json()["msg"].as_str().unwrap().contains("FROB"),
        "{}",
        r.stdout
    );
    r
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn zap_line(line: &str) -> Value {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(line.starts_with(r#"{"level":""#), "{line}");
    let (ts, caller, msg) = (
        line.find(r#""ts":""#).unwrap(),
        line.find(r#""caller":""#).unwrap(),
        line.find(r#""msg":""#).unwrap(),
    );
    assert!(ts < caller && caller < msg, "zap's key order: {line}");
    let ts = v["ts"].as_str().unwrap();
    assert!(ts.len() == 24 && ts.ends_with('Z'), "{line}");
    v
}

#[test]
fn the_plugin_log_is_zap_json_in_the_conflists_file() {
    let dir = temp("cni-log");
    let log = dir.join("aws-routed-eni/plugin.log");
    let r = refused(log.to_str().unwrap(), &[]);
    assert_eq!(r.stderr, "", "nothing on stderr when the file works");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text.lines().map(zap_line).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let l = &lines[0];
    assert_eq!(l["level"], "error");
    assert!(l["msg"].as_str().unwrap().contains("FROB"), "{text}");
    assert_eq!(l["command"], "FROB");
    assert!(l["code"].is_u64(), "numbers stay numbers: {text}");
    assert!(
        l["caller"].as_str().unwrap().starts_with("cni/main.rs:"),
        "{text}"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "lumberjack's mode for a new file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plugin_runs_rotate_the_log_keeping_five_gzipped_backups() {
    let dir = temp("cni-log-rotate");
    let log = dir.join("plugin.log");
    // One error line is about 200 bytes: a new file every two or three runs.
    for _ in 0..30 {
        refused(
            log.to_str().unwrap(),
            &[("VPC_CNI_TEST_LOG_MAX_BYTES", "600")],
        );
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"plugin.log".to_owned()), "{names:?}");
    let backups: Vec<&String> = names.iter().filter(|n| *n != "plugin.log").collect();
    assert_eq!(
        backups.len(),
        5,
        "at most five, and more than five rotations: {names:?}"
    );
    for b in backups {
        let stamp = b
            .strip_prefix("plugin-")
            .and_then(|r| r.strip_suffix(".log.gz"))
            .unwrap_or_else(|| panic!("plugin-<time>.log.gz: {b}"));
        assert!(stamp.len() == 23 && &stamp[10..11] == "T", "{b}");
        let out = Command::new("gzip")
            .arg("-dc")
            .arg(dir.join(b))
            .output()
            .unwrap();
        assert!(out.status.success(), "a whole gzip file: {b}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.is_empty() && text.len() <= 600, "{b}: {text}");
        text.lines().for_each(|l| {
            zap_line(l);
        });
    }
    let current = std::fs::read_to_string(&log).unwrap();
    assert!(current.len() <= 600, "{current}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stderr_and_stdout_mean_stderr_and_the_result_stays_alone_on_stdout() {
    for dest in ["stderr", "stdout", ""] {
        let r = refused(dest, &[]);
        // `refused` parsed stdout as exactly one JSON document (the CNI error).
        let line = r
            .stderr
            .lines()
            .next()
            .unwrap_or_else(|| panic!("{dest:?}: no log"));
        let v = zap_line(line);
        assert_eq!(v["level"], "error", "{dest:?}");
    }
}

#[test]
fn an_unwritable_log_file_falls_back_to_stderr() {
    let dir = temp("cni-log-blocked");
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let r = refused(blocker.join("plugin.log").to_str().unwrap(), &[]);
    let lines: Vec<Value> = r.stderr.lines().map(zap_line).collect();
    assert!(
        lines.iter().any(|l| l["msg"]
            .as_str()
            .unwrap()
            .starts_with("aws-cni: cannot open log file")),
        "{}",
        r.stderr
    );
    assert!(lines.iter().any(|l| l["level"] == "error"), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
