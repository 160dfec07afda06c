//! The real `egress-cni` binary's log (upstream `cmd/egress-cni-plugin`, `LoadConf`): the
//! conflist's `pluginLogFile` at `pluginLogLevel`, zap JSON lines with
//! "Received an Add request" / "Received a Del request" at debug, rotated by size into at
//! most five gzipped backups (`egress-v6-plugin-<time>.log.gz`). The 100 MB maximum is
//! lowered through the test-only `VPC_CNI_TEST_LOG_MAX_BYTES`.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::run_plugin;

const PREV: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/cni-1"}],"ips":[{"address":"10.0.0.23/32","interface":0}]}"#;

fn conf(log: &Path, level: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"aws-cni","type":"egress-cni","enabled":"false","nodeIP":"",
        "pluginLogFile":"{}","pluginLogLevel":"{level}","prevResult":{PREV}}}"#,
        log.display()
    )
}

fn plugin(command: &str, stdin: &str, max_bytes: &str) -> (i32, String) {
    let run = run_plugin(
        Command::new(env!("CARGO_BIN_EXE_egress-cni"))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", "c0ffee")
            .env("CNI_NETNS", "/var/run/netns/cni-1")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin")
            .env("VPC_CNI_TEST_LOG_MAX_BYTES", max_bytes),
        stdin,
    );
    assert_eq!(run.stderr, "", "no log on stderr");
    (run.code, run.stdout)
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            assert!(l.starts_with(r#"{"level":""#), "{l}");
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .collect()
}

#[test]
fn add_and_del_are_logged_as_zap_json_in_the_conflists_file() {
    let dir = temp("egress-log");
    let log = dir.join("aws-routed-eni/egress-v6-plugin.log");
    let (rc, out) = plugin("ADD", &conf(&log, "Debug"), "");
    assert_eq!(
        (rc, out.trim_end()),
        (0, PREV),
        "the result alone on stdout"
    );
    let (rc, _) = plugin("DEL", &conf(&log, "debug"), "");
    assert_eq!(rc, 0);
    let got = lines(&log);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["level"], "debug");
    assert_eq!(got[0]["msg"], "Received an Add request");
    assert_eq!(got[1]["msg"], "Received a Del request");
    assert_eq!(got[0]["container"], "c0ffee");
    assert_eq!(got[0]["netns"], "/var/run/netns/cni-1");
    assert!(
        got[0]["caller"]
            .as_str()
            .unwrap()
            .starts_with("egress-cni/plugin.rs:"),
        "{got:?}"
    );
    assert!(got[0]["ts"].as_str().unwrap().ends_with('Z'));

    // At Info the debug lines are not written.
    let quiet = dir.join("quiet.log");
    plugin("ADD", &conf(&quiet, "Info"), "");
    assert!(lines(&quiet).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn runs_rotate_the_log_into_five_gzipped_backups() {
    let dir = temp("egress-log-rotate");
    let log = dir.join("egress-v6-plugin.log");
    for _ in 0..20 {
        let (rc, _) = plugin("ADD", &conf(&log, "Debug"), "400");
        assert_eq!(rc, 0);
    }
    let mut backups: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "egress-v6-plugin.log")
        .collect();
    backups.sort();
    assert_eq!(backups.len(), 5, "{backups:?}");
    for b in &backups {
        assert!(
            b.starts_with("egress-v6-plugin-") && b.ends_with(".log.gz"),
            "{b}"
        );
        let ok = Command::new("gzip")
            .arg("-t")
            .arg(dir.join(b))
            .status()
            .unwrap();
        assert!(ok.success(), "{b}");
    }
    assert!(std::fs::metadata(&log).unwrap().len() <= 400);
    let _ = std::fs::remove_dir_all(&dir);
}
