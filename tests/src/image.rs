//! The aws-node image and the DaemonSet that runs it, for `tests/tests/image_container.rs`:
//! the image's name ([`ensure_image`]: built by `scripts/build-image.sh` when podman's store
//! lacks it), a [`Podman`] with the test's own `containers.conf`, the chart's DaemonSet as
//! helm renders it ([`chart_daemonset`]: commands, environment, host mounts, privileges,
//! probes) turned into `podman run` arguments ([`Container::run_args`]), and the
//! Dockerfile's layout as `scripts/image-plan.py` reads it ([`image_plan`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

use crate::bins::workspace_root;

/// The image `scripts/build-image.sh` builds unless told otherwise.
pub const DEFAULT_IMAGE: &str = "localhost/vpc-cni-rs:dev";

/// Why podman cannot run containers here at all, if it cannot (the only reason to skip).
pub fn podman_unusable() -> Option<String> {
    match Command::new("podman")
        .args(["info", "--format", "{{.Host.OCIRuntime.Name}}"])
        .output()
    {
        Err(e) => Some(format!("podman cannot be started: {e}")),
        Ok(out) if !out.status.success() => Some(format!(
            "`podman info` fails: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Ok(_) => None,
    }
}

/// podman as root, with default storage (where `scripts/build-image.sh` puts the image) and
/// the test's own `containers.conf` (ulimits this sandbox allows, cgroupfs, file events).
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Podman {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(
            dir.path().join("containers.conf"),
            r#"[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"#,
        )
        .expect("write containers.conf");
        Podman { dir }
    }

    /// `podman ARGS…`.
    pub fn run(&self, args: &[String]) -> Output {
        Command::new("podman")
            .args(args)
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .output()
            .expect("run podman")
    }

    /// `podman ARGS…`, asserting success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

static IMAGE_CHECKED: Mutex<bool> = Mutex::new(false);

/// The image's name (`VPC_CNI_IMAGE`, else [`DEFAULT_IMAGE`]); when podman's store lacks
/// it, builds it first with `scripts/build-image.sh` (once per process).
/// `scripts/test.sh` always rebuilds it before the tests, so it is current there.
pub fn ensure_image(podman: &Podman) -> String {
    let name = std::env::var("VPC_CNI_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
    let mut checked = IMAGE_CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if !*checked {
        let exists = podman.run(&["image".into(), "exists".into(), name.clone()]);
        if !exists.status.success() {
            eprintln!("{name} is not in podman's store: building it (scripts/build-image.sh)");
            let status = Command::new("bash")
                .arg(workspace_root().join("scripts/build-image.sh"))
                .args(["--image", &name])
                .status()
                .expect("run scripts/build-image.sh");
            assert!(status.success(), "scripts/build-image.sh failed ({status})");
        }
        *checked = true;
    }
    name
}

/// `python3 scripts/image-plan.py`: the Dockerfile's layout (see that script).
pub fn image_plan() -> Value {
    let out = Command::new("python3")
        .arg(workspace_root().join("scripts/image-plan.py"))
        .arg(workspace_root().join("Dockerfile"))
        .output()
        .expect("run scripts/image-plan.py");
    assert!(
        out.status.success(),
        "image-plan.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("image-plan.py prints JSON")
}

/// A hostPath volume mounted into a container.
#[derive(Debug, Clone)]
pub struct Mount {
    pub mount_path: String,
    pub host_path: String,
    /// `DirectoryOrCreate`, `FileOrCreate` or none.
    pub kind: Option<String>,
}

/// One container of the DaemonSet's pod.
#[derive(Debug, Clone)]
pub struct Container {
    pub command: Vec<String>,
    /// Plain values, and `valueFrom.fieldRef` paths as `@fieldRef:<path>`.
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub privileged: bool,
    pub capabilities: Vec<String>,
}

/// The chart's aws-node DaemonSet (default values).
#[derive(Debug, Clone)]
pub struct DaemonSet {
    pub host_network: bool,
    pub init: Container,
    pub main: Container,
    pub readiness: Vec<String>,
    pub liveness: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn container(c: &Value, volumes: &[Value]) -> Container {
    let env = c["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let name = e["name"].as_str().unwrap_or_default().to_owned();
                    let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                        Some(path) => format!("@fieldRef:{path}"),
                        None => e["value"].as_str().unwrap_or_default().to_owned(),
                    };
                    (name, value)
                })
                .collect()
        })
        .unwrap_or_default();
    let mounts = c["volumeMounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let volume = volumes
                        .iter()
                        .find(|v| v["name"] == m["name"])
                        .unwrap_or_else(|| panic!("no volume for mount {m}"));
                    Mount {
                        mount_path: m["mountPath"].as_str().unwrap_or_default().to_owned(),
                        host_path: volume["hostPath"]["path"]
                            .as_str()
                            .unwrap_or_else(|| panic!("not a hostPath volume: {volume}"))
                            .to_owned(),
                        kind: volume["hostPath"]["type"].as_str().map(str::to_owned),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Container {
        command: strings(&c["command"]),
        env,
        mounts,
        privileged: c["securityContext"]["privileged"] == true,
        capabilities: strings(&c["securityContext"]["capabilities"]["add"]),
    }
}

/// `helm template charts/aws-vpc-cni` (helm from `scripts/install-helm.sh`), its DaemonSet.
pub fn chart_daemonset() -> DaemonSet {
    let root = workspace_root();
    let helm = Command::new("bash")
        .arg(root.join("scripts/install-helm.sh"))
        .output()
        .expect("run scripts/install-helm.sh");
    assert!(helm.status.success(), "install-helm.sh: {helm:?}");
    let helm = String::from_utf8_lossy(&helm.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    let rendered = Command::new(&helm)
        .args(["template", "aws-vpc-cni"])
        .arg(root.join("charts/aws-vpc-cni"))
        .output()
        .expect("run helm template");
    assert!(rendered.status.success(), "helm template: {rendered:?}");
    let mut to_json = Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python3 (PyYAML)");
    std::io::Write::write_all(
        to_json.stdin.as_mut().expect("python's stdin"),
        &rendered.stdout,
    )
    .expect("pipe the render");
    drop(to_json.stdin.take());
    let out = to_json.wait_with_output().expect("python's output");
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("the render as JSON");
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("the chart renders a DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    let main = &spec["containers"][0];
    DaemonSet {
        host_network: spec["hostNetwork"] == true,
        init: container(&spec["initContainers"][0], &volumes),
        main: container(main, &volumes),
        readiness: strings(&main["readinessProbe"]["exec"]["command"]),
        liveness: strings(&main["livenessProbe"]["exec"]["command"]),
    }
}

/// Where a hostPath of the node lives in the test's "host" root: `<root>/<path>`.
pub fn on_host(root: &Path, host_path: &str) -> PathBuf {
    root.join(host_path.trim_start_matches('/'))
}

impl Container {
    /// `podman run` options that run this container as the kubelet would on the node whose
    /// network namespace is `netns` (host networking) and whose root is `host_root`: the
    /// privileges, the environment (fieldRefs from `field_refs`, then `overrides` replacing
    /// or adding variables), the hostPath mounts (created as their type asks), the command
    /// as the entrypoint. The image and the command's arguments follow.
    pub fn run_args(
        &self,
        netns: &str,
        host_root: &Path,
        field_refs: &[(&str, &str)],
        overrides: &[(&str, String)],
    ) -> Vec<String> {
        let mut args = vec!["--network".to_owned(), format!("ns:{netns}")];
        if self.privileged {
            args.push("--privileged".into());
        }
        for cap in &self.capabilities {
            args.extend(["--cap-add".into(), cap.clone()]);
        }
        for (name, value) in &self.env {
            if overrides.iter().any(|(k, _)| k == name) {
                continue;
            }
            let value = match value.strip_prefix("@fieldRef:") {
                Some(path) => field_refs
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_else(|| panic!("no value for fieldRef {path}")),
                None => value.clone(),
            };
            args.extend(["-e".into(), format!("{name}={value}")]);
        }
        for (name, value) in overrides {
            args.extend(["-e".into(), format!("{name}={value}")]);
        }
        for m in &self.mounts {
            let host = on_host(host_root, &m.host_path);
            if m.kind.as_deref() == Some("FileOrCreate") {
                std::fs::create_dir_all(host.parent().expect("a parent")).expect("mkdir");
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&host)
                    .expect("create the hostPath file");
            } else {
                std::fs::create_dir_all(&host).expect("create the hostPath directory");
            }
            args.extend(["-v".into(), format!("{}:{}", host.display(), m.mount_path)]);
        }
        if let Some(entry) = self.command.first() {
            args.extend(["--entrypoint".into(), entry.clone()]);
        }
        args
    }
}
