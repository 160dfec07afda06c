//! The IPAM delegate (upstream: `ipam.ExecAdd`/`ExecDel` of the conflist's `ipam.type`,
//! `host-local`): the plugin binary is looked up in `CNI_PATH` and run with our stdin, with
//! the runtime's `CNI_*` environment and `CNI_COMMAND` set to ADD or DEL. host-local keeps its
//! allocations under `ipam.dataDir`, serialised by its own lock file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cni::error::CniError;
use ipnet::IpNet;
use serde_json::Value;

/// Error code for a failure to run the delegate at all (plugin-specific range).
pub const DELEGATE_FAILED: u32 = 102;

/// The delegate's binary: the first `CNI_PATH` entry holding `ipam_type`.
pub fn find_plugin(cni_path: &str, ipam_type: &str) -> Result<PathBuf, CniError> {
    if ipam_type.is_empty() || ipam_type.contains('/') {
        return Err(CniError::invalid_config(format!(
            "egress-cni: ipam.type {ipam_type:?} is not a plugin name"
        )));
    }
    cni_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(ipam_type))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::invalid_env(format!(
                "egress-cni: IPAM plugin {ipam_type:?} not found in CNI_PATH {cni_path:?}"
            ))
        })
}

/// Runs the delegate with `command` (`ADD`/`DEL`); returns its stdout. A failing delegate's
/// CNI error is passed on with its own code and message.
pub fn exec(plugin: &Path, command: &str, stdin: &[u8]) -> Result<String, CniError> {
    let fail = |e: std::io::Error| {
        CniError::io(format!(
            "egress-cni: running IPAM plugin {}: {e}",
            plugin.display()
        ))
    };
    let mut child = Command::new(plugin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(fail)?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).map_err(fail)?;
    }
    let out = child.wait_with_output().map_err(fail)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    Err(delegate_error(plugin, command, &stdout, &out.stderr))
}

/// The delegate's CNI error JSON (`code`, `msg`, `details`), or a generic error around its
/// output when it printed none.
fn delegate_error(plugin: &Path, command: &str, stdout: &str, stderr: &[u8]) -> CniError {
    let name = plugin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match serde_json::from_str::<Value>(stdout) {
        Ok(v) if v.get("code").and_then(Value::as_u64).is_some() => CniError {
            code: v["code"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(DELEGATE_FAILED),
            msg: format!(
                "egress-cni: IPAM {name} {command}: {}",
                v.get("msg").and_then(Value::as_str).unwrap_or_default()
            ),
            details: v
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        },
        _ => CniError {
            code: DELEGATE_FAILED,
            msg: format!(
                "egress-cni: IPAM {name} {command} failed: {} {}",
                stdout.trim(),
                String::from_utf8_lossy(stderr).trim()
            ),
            details: String::new(),
        },
    }
}

/// The single address of an IPAM ADD result (upstream: exactly one IP must be returned).
pub fn single_address(result: &str) -> Result<IpNet, CniError> {
    let v: Value = serde_json::from_str(result)
        .map_err(|e| CniError::decode(format!("egress-cni: IPAM result is not valid JSON: {e}")))?;
    let ips = v.get("ips").and_then(Value::as_array).ok_or_else(|| {
        CniError::decode(format!("egress-cni: IPAM result without \"ips\": {result}"))
    })?;
    let [ip] = ips.as_slice() else {
        return Err(CniError::invalid_config(format!(
            "egress-cni: expected exactly one IP from IPAM, got {}",
            ips.len()
        )));
    };
    let text = ip
        .get("address")
        .and_then(Value::as_str)
        .unwrap_or_default();
    text.parse().map_err(|_| {
        CniError::decode(format!(
            "egress-cni: IPAM returned address {text:?}, not an address/prefix"
        ))
    })
}

/// The `gateway` of the single IP of an IPAM ADD result (host-local's default: the range's
/// first address), if it gave one.
pub fn single_gateway(result: &str) -> Option<std::net::IpAddr> {
    let v: Value = serde_json::from_str(result).ok()?;
    v.get("ips")?
        .as_array()?
        .first()?
        .get("gateway")?
        .as_str()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_exactly() {
        let one =
            r#"{"cniVersion":"1.0.0","ips":[{"address":"fd00::ac:2/118","gateway":"fd00::ac:1"}]}"#;
        assert_eq!(single_address(one).unwrap().to_string(), "fd00::ac:2/118");
        assert_eq!(single_gateway(one).unwrap().to_string(), "fd00::ac:1");
        assert_eq!(
            single_gateway(r#"{"ips":[{"address":"169.254.172.2/22"}]}"#),
            None
        );
        let two = r#"{"ips":[{"address":"fd00::ac:2/118"},{"address":"fd00::ac:3/118"}]}"#;
        assert_eq!(single_address(two).unwrap_err().code, 7);
        assert_eq!(single_address(r#"{"ips":[]}"#).unwrap_err().code, 7);
        assert_eq!(single_address("{").unwrap_err().code, 6);
        assert!(find_plugin("/nonexistent", "host-local").is_err());
        assert_eq!(find_plugin("/bin", "../sh").unwrap_err().code, 7);
    }

    #[test]
    fn delegate_errors_keep_their_code() {
        let e = delegate_error(
            Path::new("/opt/cni/bin/host-local"),
            "ADD",
            r#"{"code":11,"msg":"no IP addresses available in range set"}"#,
            b"",
        );
        assert_eq!(e.code, 11);
        assert!(e.msg.contains("no IP addresses available"), "{}", e.msg);
        let e = delegate_error(Path::new("x"), "DEL", "", b"boom");
        assert_eq!(e.code, DELEGATE_FAILED);
        assert!(e.msg.contains("boom"));
    }
}
