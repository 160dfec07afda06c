//! Hostile input (gRPC, CNI, checkpoint file, environment) and security (socket mode, a
//! non-root peer, introspection scrubbed, no secrets in logs).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use super::super::Rng;
use super::super::hostile::{self, GrpcAnswer, PodCall};
use super::super::node::SECRET_MARK;
use super::{Outcome, Suite, blocking};
use crate::TestNetns;

fn ok_if(cond: bool, err: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(err()) }
}

pub async fn hostile_grpc(s: &mut Suite, rng: &mut Rng) -> Outcome {
    let n = s.mode.hostile().0;
    let mut out = Outcome::new();
    for i in 0..n {
        let req = hostile::hostile_request(rng, i);
        s.tally.hostile += 1;
        let answer = hostile::grpc_call(&s.node.socket, PodCall::AddNetwork, &req).await;
        if let Ok(GrpcAnswer::Answered(true)) = answer {
            // Accepted (an unusual but valid request): the runtime's DEL gives it back.
            let del = hostile::grpc_call(&s.node.socket, PodCall::DelNetwork, &req).await;
            if !matches!(del, Ok(GrpcAnswer::Answered(true))) {
                out.push((
                    "DEL of an accepted odd request".into(),
                    Err(format!("{del:?}")),
                ));
            }
        }
        if let Err(e) = answer {
            out.push(("hostile gRPC gets an answer".into(), Err(e)));
        }
    }
    out.push((
        "agent alive after hostile gRPC".into(),
        ok_if(s.node.agent_running(), || "the agent died".into()),
    ));
    out
}

pub async fn hostile_cni(s: &mut Suite, rng: &mut Rng) -> Outcome {
    let n = s.mode.hostile().1;
    let k = s.kubelet.clone();
    let mut out = Outcome::new();
    for i in 0..n {
        let ns = TestNetns::new("faults-hostile");
        let cid = format!("hostile-cni-{i}-{}", rng.next_u64() % 100_000);
        let path = ns.path();
        let stdin = hostile::hostile_stdin(rng, &k.plugin_log);
        let args = hostile::hostile_cni_args(rng);
        let command = *rng.pick(&["ADD", "DEL", "CHECK"]);
        let kk = k.clone();
        // Two sandboxes: a second ADD of an already wired container is another matter
        // (docs/reliability.md, "Known behaviour").
        let ns2 = TestNetns::new("faults-hostile");
        let (cid2, path2) = (format!("{cid}-args"), ns2.path());
        let (r1, r2) = blocking(move || {
            let r1 = hostile::plugin_with_stdin(&kk, &cid, &path, &stdin, command);
            let good = super::super::pods::conf(&kk.plugin_log, None);
            let (rc, so, se) =
                hostile::plugin_with_raw_args(&kk, "ADD", &cid2, &path2, args, &good);
            let r2 = hostile::judge_plugin("ADD with hostile CNI_ARGS", rc, &so, &se);
            // The runtime's DEL after whatever happened.
            kk.del_until_ok("hostile", &cid, &path, None);
            kk.del_until_ok("hostile", &cid2, &path2, None);
            kk.remove_netns(ns, "hostile");
            drop(ns2);
            (r1, r2)
        })
        .await;
        s.tally.hostile += 2;
        out.push(("hostile CNI stdin".into(), r1));
        out.push(("hostile CNI_ARGS".into(), r2));
    }
    out
}

pub async fn hostile_checkpoint(s: &mut Suite, rng: &mut Rng) -> Outcome {
    let mut out = Outcome::new();
    s.kill_agent();
    let good = s.node.checkpoint_text();
    for _ in 0..rng.range(1, 4) {
        let (bad, kind) = hostile::damaged_checkpoint(rng, &good);
        if serde_json::from_str::<serde_json::Value>(&bad).is_ok() && kind != "future version" {
            continue; // the damage happened to leave valid JSON: not a damaged file.
        }
        std::fs::write(&s.node.store, &bad).expect("write the damaged checkpoint");
        s.tally.hostile += 1;
        let node = &s.node;
        let (code, err) = node.agent_exit(&[], Duration::from_secs(20));
        let kept = std::fs::read_to_string(&node.store).unwrap_or_default() == bad;
        out.push((
            format!("{kind} checkpoint refused"),
            ok_if(
                // A damaged file is named; another version keeps upstream's message.
                code == Some(1)
                    && !err.contains("panicked")
                    && (err.contains("ipam.json")
                        || (kind == "future version" && err.contains("checkpointVersion"))),
                || {
                    format!(
                        "exit {code:?}: {}",
                        err.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                    )
                },
            ),
        ));
        out.push((
            format!("{kind} checkpoint left as it was"),
            ok_if(kept, || "the file was changed".into()),
        ));
    }
    std::fs::write(&s.node.store, &good).expect("restore the checkpoint");
    out.push(("restart on the good checkpoint".into(), s.restart().await));
    out
}

pub async fn hostile_env(s: &mut Suite, rng: &mut Rng) -> Outcome {
    let mut out = Outcome::new();
    s.kill_agent();
    for _ in 0..rng.range(2, 5) {
        let (var, value) = *rng.pick(hostile::BAD_ENV);
        s.tally.hostile += 1;
        let (code, err) = s.node.agent_exit(&[(var, value)], Duration::from_secs(10));
        out.push((
            format!("{var}={value} refused"),
            ok_if(
                code == Some(1) && err.contains(var) && !err.contains("panicked"),
                || {
                    format!(
                        "exit {code:?}: {}",
                        err.lines().take(3).collect::<Vec<_>>().join(" | ")
                    )
                },
            ),
        ));
    }
    out.push(("restart after bad environments".into(), s.restart().await));
    out
}

/// An HTTP GET on loopback (introspection): the body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(text)
}

pub async fn security(s: &mut Suite, _rng: &mut Rng) -> Outcome {
    let mut out = Outcome::new();
    if s.kubelet.live_ids().is_empty() {
        s.add_pods(2).await;
    }
    let mode = std::fs::metadata(&s.node.socket).map(|m| m.permissions().mode() & 0o777);
    out.push((
        "socket is 0660".into(),
        ok_if(matches!(mode, Ok(0o660)), || format!("{mode:?}")),
    ));
    // A non-root peer cannot connect (the socket is root's, 0660).
    let socket = s.node.socket.display().to_string();
    let script = format!("import socket\ns=socket.socket(socket.AF_UNIX)\ns.connect({socket:?})");
    let probe = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "python3",
            "-c",
            &script,
        ])
        .output();
    if let Ok(o) = probe {
        let err = String::from_utf8_lossy(&o.stderr);
        out.push((
            "a non-root peer is refused".into(),
            ok_if(
                !o.status.success() && err.contains("Permission denied"),
                || format!("{}: {err}", o.status),
            ),
        ));
    }
    let cfg = config::Config::from_vars(Vec::<(String, String)>::new())
        .map(|c| c.observability.introspection_bind_address.to_string());
    out.push((
        "introspection binds loopback by default".into(),
        ok_if(
            cfg.as_ref().is_ok_and(|a| a.starts_with("127.0.0.1:")),
            || format!("{cfg:?}"),
        ),
    ));
    let intro = s.node.introspection;
    let enis = blocking(move || http_get(intro, "/v1/enis")).await;
    let ids = s.kubelet.live_ids();
    out.push((
        "introspection scrubs container IDs".into(),
        match &enis {
            Ok(body) if body.contains("200 OK") => {
                ok_if(!ids.iter().any(|c| body.contains(c.as_str())), || {
                    "a container ID is served".into()
                })
            }
            other => Err(format!("GET /v1/enis: {other:?}")),
        },
    ));
    let logs = [
        std::fs::read_to_string(&s.node.agent_log).unwrap_or_default(),
        std::fs::read_to_string(&s.kubelet.plugin_log).unwrap_or_default(),
    ];
    out.push((
        "no secrets in logs".into(),
        ok_if(!logs.iter().any(|l| l.contains(SECRET_MARK)), || {
            "the secret key is in a log".into()
        }),
    ));
    out
}
