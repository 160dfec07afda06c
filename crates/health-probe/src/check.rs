//! One `grpc.health.v1.Health/Check` call and its outcome.

use std::time::Duration;

use rpc::health::{HealthCheckRequest, HealthClient, WireServingStatus};
use tonic::transport::{Channel, Endpoint};

use crate::flags::ProbeArgs;

/// What the probe found, with the exit code of grpc-ecosystem's `grpc_health_probe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service reported `SERVING` (exit 0).
    Serving,
    /// The command line was unusable (exit 1).
    InvalidArguments(String),
    /// Nothing answered at the address within the connect timeout (exit 2).
    ConnectionFailure(String),
    /// Connected, but the RPC failed: timeout, `Unimplemented`, unknown service... (exit 3).
    RpcFailure(String),
    /// The service answered with a status other than `SERVING` (exit 4).
    Unhealthy(String),
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Serving => 0,
            Outcome::InvalidArguments(_) => 1,
            Outcome::ConnectionFailure(_) => 2,
            Outcome::RpcFailure(_) => 3,
            Outcome::Unhealthy(_) => 4,
        }
    }

    /// The line printed for this outcome (stdout for `Serving`, stderr otherwise).
    pub fn message(&self) -> String {
        match self {
            Outcome::Serving => "status: SERVING".to_owned(),
            Outcome::InvalidArguments(m) => format!("error: {m}"),
            Outcome::ConnectionFailure(m) => format!("error: {m}"),
            Outcome::RpcFailure(m) => format!("error: health rpc failed: {m}"),
            Outcome::Unhealthy(status) => format!("service unhealthy (responded with {status:?})"),
        }
    }
}

/// `unix:` targets, as gRPC spells them (`unix:///abs`, `unix:/abs`, `unix:rel`).
fn unix_target(addr: &str) -> Option<&str> {
    addr.strip_prefix("unix:")
}

async fn connect(args: &ProbeArgs) -> Result<Channel, Outcome> {
    let fail = |e: &dyn std::fmt::Display| {
        Outcome::ConnectionFailure(format!("failed to connect service at {:?}: {e}", args.addr))
    };
    let attempt = async {
        if unix_target(&args.addr).is_some() {
            rpc::client::connect(&args.addr, Some(args.connect_timeout))
                .await
                .map_err(|e| fail(&e))
        } else {
            let uri = format!("http://{}", args.addr);
            let ep = Endpoint::from_shared(uri)
                .map_err(|e| Outcome::InvalidArguments(format!("-addr {:?}: {e}", args.addr)))?
                .connect_timeout(args.connect_timeout)
                .user_agent(args.user_agent.clone())
                .map_err(|e| {
                    Outcome::InvalidArguments(format!("-user-agent {:?}: {e}", args.user_agent))
                })?;
            ep.connect().await.map_err(|e| fail(&e))
        }
    };
    match tokio::time::timeout(args.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(fail(&format!("timed out after {:?}", args.connect_timeout))),
    }
}

fn status_name(raw: i32) -> String {
    WireServingStatus::try_from(raw)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("UNRECOGNIZED({raw})"))
}

/// Connects (within `connect_timeout`) and calls Check (within `rpc_timeout`).
pub async fn check(args: &ProbeArgs) -> Outcome {
    let channel = match connect(args).await {
        Ok(c) => c,
        Err(o) => return o,
    };
    let mut client = HealthClient::new(channel);
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: args.service.clone(),
    });
    req.set_timeout(args.rpc_timeout);
    let call = client.check(req);
    let reply = match tokio::time::timeout(args.rpc_timeout + Duration::from_millis(50), call).await
    {
        Err(_) => {
            return Outcome::RpcFailure(format!("timed out after {:?}", args.rpc_timeout));
        }
        Ok(Err(status)) => {
            return Outcome::RpcFailure(format!("{:?}: {}", status.code(), status.message()));
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    if reply.status == WireServingStatus::Serving as i32 {
        Outcome::Serving
    } else {
        Outcome::Unhealthy(status_name(reply.status))
    }
}
