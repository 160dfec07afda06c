//! `aws-vpc-cni-init`: the aws-node init container (see the `entrypoint` crate).

use entrypoint::init::{self, InitConfig};
use entrypoint::settings::Settings;

fn main() {
    entrypoint::init_logging();
    let lookup = |k: &str| std::env::var(k).ok();
    let (cfg, settings) = match (
        InitConfig::from_lookup(lookup),
        Settings::from_lookup(lookup),
    ) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) => {
            eprintln!("aws-vpc-cni-init: invalid configuration: {e}");
            std::process::exit(1);
        }
        (_, Err(e)) => {
            eprintln!("aws-vpc-cni-init: invalid setting: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aws-vpc-cni-init: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(init::run(&settings, &cfg)) {
        eprintln!("aws-vpc-cni-init: {e}");
        std::process::exit(1);
    }
}
