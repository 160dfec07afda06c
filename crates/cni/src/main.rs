//! `aws-cni` entry point: `CNI_COMMAND` dispatch. Errors are CNI error JSON on stdout and a
//! non-zero exit; stdout carries nothing else (logs would go to the plugin log file).

use std::io::{Read, Write};

use cni::conf::{CniEnv, NetConf, SUPPORTED_VERSIONS};
use cni::error::CniError;
use cni::plugin;

fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<String>, (String, CniError)> {
    if env.command == "VERSION" {
        let v = serde_json::json!({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED_VERSIONS});
        return Ok(Some(v.to_string()));
    }
    let conf = NetConf::parse(stdin).map_err(|e| ("1.0.0".to_string(), e))?;
    let version = conf.cni_version.clone();
    let fail = |e: CniError| (version.clone(), e);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(CniError::io(format!("starting the runtime: {e}"))))?;
    let target = plugin::ipamd_target(|k| std::env::var(k).ok());
    match env.command.as_str() {
        "ADD" => runtime
            .block_on(plugin::add(&conf, env, &target))
            .map(Some)
            .map_err(fail),
        "DEL" => runtime
            .block_on(plugin::del(&conf, env, &target))
            .map(|()| None)
            .map_err(fail),
        other => Err(fail(CniError::invalid_env(format!(
            "CNI_COMMAND {other:?} is not supported (ADD, DEL, VERSION)"
        )))),
    }
}

fn main() {
    let env = CniEnv::from_lookup(|k| std::env::var(k).ok());
    let mut stdin = Vec::new();
    if env.command != "VERSION" {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let mut out = std::io::stdout();
    match run(&env, &stdin) {
        Ok(Some(json)) => {
            let _ = writeln!(out, "{json}");
        }
        Ok(None) => {}
        Err((version, e)) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            std::process::exit(1);
        }
    }
}
