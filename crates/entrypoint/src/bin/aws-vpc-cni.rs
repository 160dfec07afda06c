//! `aws-vpc-cni`: the aws-node container's entrypoint (see the `entrypoint` crate).

use config::Config;
use entrypoint::settings::Settings;

fn main() {
    entrypoint::init_logging();
    let cfg = match Config::from_env() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("aws-vpc-cni: invalid configuration:\n{e}");
            std::process::exit(1);
        }
    };
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let settings = match Settings::from_lookup(|k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("aws-vpc-cni: invalid setting: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aws-vpc-cni: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(entrypoint::supervise::run(&settings, &cfg)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("aws-vpc-cni: {e}");
            1
        }
    };
    std::process::exit(code);
}
