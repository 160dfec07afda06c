//! `grpc-health-probe`: exit 0 when the gRPC server at `-addr` reports SERVING; see the
//! crate documentation for the other exit codes.

use health_probe::{Outcome, check, flags::USAGE, parse_args};

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            std::process::exit(1);
        }
    };
    if args.help {
        println!("{USAGE}");
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            std::process::exit(3);
        }
    };
    if args.verbose {
        eprintln!(
            "probing {:?} (service {:?}, connect timeout {:?}, rpc timeout {:?})",
            args.addr, args.service, args.connect_timeout, args.rpc_timeout
        );
    }
    let outcome = runtime.block_on(check(&args));
    match &outcome {
        Outcome::Serving => println!("{}", outcome.message()),
        other => eprintln!("{}", other.message()),
    }
    std::process::exit(outcome.exit_code());
}
