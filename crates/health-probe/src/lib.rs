//! `grpc-health-probe`: the standard gRPC health-check client the `aws-node` DaemonSet's
//! liveness and readiness probes exec (`/app/grpc-health-probe
//! -addr=unix:///var/run/aws-node/ipamd.sock -connect-timeout=5s -rpc-timeout=5s`), and the
//! entrypoint's readiness wait.
//!
//! * [`flags`]: Go `flag`-package command-line syntax (`-addr=…`, `--addr …`, `-v`) and Go
//!   durations (`5s`, `1m30s`, `250ms`). Pure.
//! * [`check`]: one `grpc.health.v1.Health/Check` call, mapped to an [`Outcome`] with the exit
//!   codes of grpc-ecosystem's `grpc_health_probe`: 0 SERVING, 1 invalid arguments,
//!   2 connection failure, 3 RPC failure, 4 not SERVING.

pub mod check;
pub mod flags;

pub use check::{Outcome, check};
pub use flags::{FlagError, ProbeArgs, parse_args, parse_go_duration};
