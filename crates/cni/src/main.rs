//! `aws-cni` entry point: `CNI_COMMAND` dispatch. Errors are CNI error JSON on stdout and a
//! non-zero exit; stdout carries nothing else (logs go to `pluginLogFile`, never stdout).

use cni::conf::{CniEnv, NetConf, SUPPORTED_VERSIONS};
use cni::error::CniError;
use cni::{check, log, plugin, status, timing};

/// Printed when no command is set (as upstream's skel "about" string).
const ABOUT: &str = concat!("AWS CNI ", env!("CARGO_PKG_VERSION"));

fn run(env: &CniEnv, stdin: &[u8]) -> cni::skel::Outcome {
    match env.command.as_str() {
        "VERSION" => {
            let v =
                serde_json::json!({"cniVersion": "1.1.0", "supportedVersions": SUPPORTED_VERSIONS});
            return Ok(Some(v.to_string()));
        }
        "" => return Ok(Some(ABOUT.to_string())),
        _ => {}
    }
    let conf = NetConf::parse(stdin).map_err(|e| ("1.1.0".to_string(), e))?;
    timing::mark("conf");
    let version = conf.cni_version.clone();
    let fail = |e: CniError| {
        tracing::error!(command = %env.command, code = e.code, "{}", e.msg);
        (version.clone(), e)
    };
    log::init("aws-cni", &conf.plugin_log_file, &conf.plugin_log_level);
    timing::mark("log");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(CniError::io(format!("starting the runtime: {e}"))))?;
    let peers = cni::grant::Endpoints::from_lookup(|k| std::env::var(k).ok());
    timing::mark("runtime");
    match env.command.as_str() {
        "ADD" => runtime
            .block_on(plugin::add(&conf, env, &peers))
            .map(Some)
            .map_err(fail),
        "DEL" => runtime
            .block_on(plugin::del(&conf, env, &peers))
            .map(|()| None)
            .map_err(fail),
        "CHECK" => runtime
            .block_on(check::check(&conf, env))
            .map(|()| None)
            .map_err(fail),
        "STATUS" => runtime
            .block_on(status::status(&peers.ipamd))
            .map(|()| None)
            .map_err(fail),
        "GC" => status::gc(&conf).map(|()| None).map_err(fail),
        other => Err(fail(CniError::invalid_env(format!(
            "CNI_COMMAND {other:?} is not supported (ADD, DEL, CHECK, STATUS, GC, VERSION)"
        )))),
    }
}

fn main() {
    timing::start();
    cni::skel::plugin_main(run)
}
