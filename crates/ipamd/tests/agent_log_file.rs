//! The `aws-k8s-agent` binary's log as upstream's zap + lumberjack write it
//! (`pkg/utils/logger`): JSON lines with zap's keys in `AWS_VPC_K8S_CNI_LOG_FILE`, rotated by
//! size into at most five gzipped `ipamd-<time>.log.gz` backups, and `stdout` honoured.
//! The 100 MB maximum is lowered through the test-only `VPC_CNI_TEST_LOG_MAX_BYTES`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ec2_emulator::testing::EmulatedNode;

fn agent(node: &EmulatedNode, dir: &Path, log: &str, extra: &[(&str, &str)]) -> Child {
    let free = || ipamd::testing::free_port().to_string();
    Command::new(env!("CARGO_BIN_EXE_aws-k8s-agent"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_EC2_ENDPOINT", &node.ec2_endpoint)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &node.imds_endpoint)
        .env("AWS_VPC_K8S_CNI_LOG_FILE", log)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("IPAMD_GRPC_SOCKET", dir.join("ipamd.sock"))
        .env("METRICS_BIND_ADDRESS", free())
        .env("INTROSPECTION_BIND_ADDRESS", free())
        .env("AWS_VPC_K8S_CNI_BACKING_STORE", dir.join("ipam.json"))
        .env("IPAMD_SKIP_HOST_NETWORKING", "true")
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// Checks one line is zap's JSON: `level`, `ts`, `caller`, `msg` first, in that order.
fn assert_zap_line(line: &str) {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert!(keys.len() >= 4, "{line}");
    assert!(line.starts_with(r#"{"level":""#), "{line}");
    let level = v["level"].as_str().unwrap();
    assert!(
        ["debug", "info", "warn", "error"].contains(&level),
        "{line}"
    );
    let ts = v["ts"].as_str().unwrap();
    // 2024-05-16T20:06:51.404Z
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && &ts[10..11] == "T",
        "{line}"
    );
    let caller = v["caller"].as_str().unwrap();
    assert!(caller.contains(".rs:"), "{line}");
    let order: Vec<usize> = ["\"ts\":", "\"caller\":", "\"msg\":"]
        .iter()
        .map(|k| line.find(k).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "zap's key order: {line}"
    );
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    let bytes = std::fs::read(path).unwrap();
    // gzip magic, then the text: decompressed with the system's gzip.
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{}", path.display());
    let out = Command::new("gzip")
        .args(["-dc"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", path.display());
    s.push_str(&String::from_utf8_lossy(&out.stdout));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_file_is_zap_json_rotated_into_five_gzipped_backups() {
    let node = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let dir = tempfile_dir("agent-log");
    let log = dir.join("aws-routed-eni/ipamd.log");
    let child = agent(
        &node,
        &dir,
        log.to_str().unwrap(),
        &[
            ("AWS_VPC_K8S_CNI_LOGLEVEL", "DEBUG"),
            // Every crate at debug (the AWS SDK's too): enough lines for many rotations.
            ("RUST_LOG", "debug"),
            ("VPC_CNI_TEST_LOG_MAX_BYTES", "2048"),
            ("WARM_IP_TARGET", "3"),
        ],
    );
    let logs = dir.join("aws-routed-eni");
    let backups = |gz_only: bool| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&logs)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "ipamd.log" && (!gz_only || n.ends_with(".gz")))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    // More than five rotations' worth of lines: the oldest backups are removed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 7 || backups(true).len() < 5 {
        seen.extend(
            backups(false)
                .into_iter()
                .map(|n| n.trim_end_matches(".gz").to_owned()),
        );
        assert!(Instant::now() < deadline, "rotations seen: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = stop(child);
    let current = std::fs::read_to_string(&log).unwrap();
    assert!(current.len() <= 2048, "{current}");
    for line in current.lines() {
        assert_zap_line(line);
    }
    // The agent is gone: a rotation in its last moments may still be uncompressed (or half
    // compressed, its plain twin still there) and not yet milled, as with lumberjack, whose
    // next start finishes the job. So: at most five backups plus that one.
    let kept = backups(false);
    let mut bases: Vec<&str> = kept.iter().map(|n| n.trim_end_matches(".gz")).collect();
    bases.dedup();
    assert!(
        bases.len() <= 6,
        "five backups kept (+1 in flight): {kept:?}"
    );
    assert!(
        seen.len() > bases.len(),
        "older backups were removed: {seen:?} {kept:?}"
    );
    for b in &kept {
        let plain = b.trim_end_matches(".gz");
        let stamp = plain
            .strip_prefix("ipamd-")
            .and_then(|r| r.strip_suffix(".log"))
            .unwrap_or_else(|| panic!("ipamd-<time>.log[.gz]: {b}"));
        // 2006-01-02T15-04-05.000
        assert!(
            stamp.len() == 23 && &stamp[10..11] == "T" && &stamp[19..20] == ".",
            "{b}"
        );
        let text = if b.ends_with(".gz") {
            if kept.iter().any(|k| k == plain) {
                continue; // being compressed when the agent exited
            }
            gunzip(&logs.join(b))
        } else {
            std::fs::read_to_string(logs.join(b)).unwrap()
        };
        assert!(!text.is_empty() && text.len() <= 2048, "{b}: {text}");
        text.lines().for_each(assert_zap_line);
    }
    assert!(
        !err.contains("Unable to write"),
        "no line was refused: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_is_honoured_with_the_same_json_lines() {
    let node = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let dir = tempfile_dir("agent-log-stdout");
    let mut child = agent(
        &node,
        &dir,
        "stdout",
        &[("AWS_VPC_K8S_CNI_LOGLEVEL", "info")],
    );
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Lines up to "ipamd serving" (signals handled from then on), then the rest up to the
    // exit on SIGTERM.
    let (mut lines, rx) = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_secs(60)) {
            let serving = l.contains("ipamd serving");
            lines.push(l);
            if serving {
                break;
            }
        }
        (lines, rx)
    })
    .await
    .unwrap();
    assert!(
        lines.last().is_some_and(|l| l.contains("ipamd serving")),
        "{lines:?}"
    );
    stop(child);
    let _ = reader.join();
    lines.extend(rx.try_iter());
    for l in &lines {
        assert_zap_line(l);
        assert!(!l.contains(r#""level":"debug""#), "info and up: {l}");
    }
    let serving = lines.iter().find(|l| l.contains("ipamd serving")).unwrap();
    let serving: serde_json::Value = serde_json::from_str(serving).unwrap();
    assert!(
        serving["instance"].as_str().unwrap().starts_with("i-"),
        "fields as keys"
    );
    assert!(
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".log")),
        "no log file written"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
