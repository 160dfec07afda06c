//! `egress-cni` entry point: CNI result or CNI error JSON on stdout, exit 1 on error.

use std::io::{Read, Write};

use cni::conf::CniEnv;

fn main() {
    let env = CniEnv::from_lookup(|k| std::env::var(k).ok());
    let mut stdin = Vec::new();
    if env.command != "VERSION" {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    let mut out = std::io::stdout();
    match egress_cni::run(&env, &stdin) {
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
