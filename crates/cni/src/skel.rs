//! The CNI skeleton both plugins (`aws-cni`, `egress-cni`) share, as containernetworking's
//! `skel.PluginMain` is for upstream's: read `CNI_*` from the environment and the network
//! configuration from stdin (not for VERSION or the bare "about" call), run the command,
//! print the result or the CNI error JSON on stdout, exit 1 on error.

use std::io::{Read, Write};

use crate::conf::CniEnv;
use crate::error::CniError;

/// What a command returns: the result to print (if any), or the configuration's
/// `cniVersion` with the error.
pub type Outcome = Result<Option<String>, (String, CniError)>;

/// Whether `command` reads a network configuration on stdin.
pub fn reads_stdin(command: &str) -> bool {
    !matches!(command, "VERSION" | "")
}

/// Writes `outcome` as a runtime reads it; returns the exit code (0, or 1 on error).
pub fn emit(outcome: Outcome, out: &mut impl Write) -> i32 {
    let (line, code) = match outcome {
        Ok(Some(result)) => (Some(result), 0),
        Ok(None) => (None, 0),
        Err((version, e)) => (Some(e.to_json(&version)), 1),
    };
    if let Some(line) = line {
        // A closed stdout leaves nothing to report to.
        let _ = writeln!(out, "{line}");
    }
    code
}

/// A plugin's `main`: runs `run` on this process' environment and stdin, then exits.
pub fn plugin_main(run: impl FnOnce(&CniEnv, &[u8]) -> Outcome) -> ! {
    let env = CniEnv::from_lookup(|k| std::env::var(k).ok());
    let mut stdin = Vec::new();
    if reads_stdin(&env.command) {
        // An unreadable stdin is an empty configuration: the command reports it.
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let code = emit(run(&env, &stdin), &mut std::io::stdout());
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_errors_and_silence_are_written_as_a_runtime_reads_them() {
        let mut out = Vec::new();
        assert_eq!(emit(Ok(Some("{\"a\":1}".into())), &mut out), 0);
        assert_eq!(emit(Ok(None), &mut out), 0);
        assert_eq!(String::from_utf8(out).unwrap(), "{\"a\":1}\n");
        let mut out = Vec::new();
        let e = CniError::invalid_env("CNI_NETNS is missing");
        assert_eq!(emit(Err(("0.4.0".into(), e)), &mut out), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["msg"], "CNI_NETNS is missing");
    }

    #[test]
    fn only_real_commands_read_stdin() {
        assert!(reads_stdin("ADD") && reads_stdin("DEL") && reads_stdin("CHECK"));
        assert!(!reads_stdin("VERSION") && !reads_stdin(""));
    }
}
