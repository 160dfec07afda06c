//! EC2 and IMDS misbehaving under a working node, and load: throttling storms, 5xx,
//! `InsufficientFreeAddressesInSubnet`, `AttachmentLimitExceeded`, attach latency of 10 s and
//! more, IMDS lagging EC2, IMDS 5xx and empty lists; pod churn at concurrency with the pool
//! growing and shrinking underneath, and the checkpoint's disk full or read-only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ec2_emulator::faults::{FailNext, ImdsAnswer, ImdsFault, Throttle};
use ec2_emulator::model::ErrorCode;
use ec2_emulator::server;

use super::super::Rng;
use super::super::pods::{Added, Kubelet};
use super::{Outcome, Suite};

const ACTIONS: &[&str] = &[
    "CreateNetworkInterface",
    "AttachNetworkInterface",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "DescribeNetworkInterfaces",
    "DescribeInstances",
    "DescribeSubnets",
    "DetachNetworkInterface",
    "DeleteNetworkInterface",
    "CreateTags",
    "ModifyNetworkInterfaceAttribute",
];

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Arms one random EC2 fault.
fn arm_ec2_fault(s: &Suite, rng: &mut Rng) {
    let mut emu = server::lock(s.node.emu());
    let f = &mut emu.faults;
    match rng.range(0, 5) {
        0 => f.throttles.push(Throttle::new(
            "*",
            rng.range(1, 4) as f64 / 2.0,
            rng.range(1, 4) as f64,
            now(),
        )),
        1 => f.fail_next.push(FailNext {
            action: rng.pick(ACTIONS).to_string(),
            code: ErrorCode::InternalError,
            remaining: rng.range(1, 6) as u32,
        }),
        2 => f.fail_next.push(FailNext {
            action: "AssignPrivateIpAddresses".into(),
            code: ErrorCode::InsufficientFreeAddressesInSubnet,
            remaining: rng.range(1, 6) as u32,
        }),
        3 => f.fail_next.push(FailNext {
            action: "AttachNetworkInterface".into(),
            code: ErrorCode::AttachmentLimitExceeded,
            remaining: rng.range(1, 4) as u32,
        }),
        _ => f.fail_next.push(FailNext {
            action: "*".into(),
            code: ErrorCode::RequestLimitExceeded,
            remaining: rng.range(5, 40) as u32,
        }),
    }
}

/// Churn (growth and shrink) while EC2 misbehaves; then EC2 recovers.
pub async fn ec2_faults(s: &mut Suite, rng: &mut Rng) -> Outcome {
    s.trim_pods(4).await;
    for _ in 0..rng.range(1, 4) {
        arm_ec2_fault(s, rng);
    }
    let grow = rng.range(4, 10) as usize;
    s.add_pods(grow).await;
    tokio::time::sleep(rng.millis(0, 4000)).await;
    s.del_pods(rng.range(2, 8) as usize).await;
    tokio::time::sleep(rng.millis(0, 3000)).await;
    Vec::new()
}

/// Arms one random IMDS fault (lag, 5xx, empty list).
fn arm_imds_fault(s: &Suite, rng: &mut Rng, long: bool) {
    let mut emu = server::lock(s.node.emu());
    let f = &mut emu.faults;
    let path = *rng.pick(&[
        "network/interfaces/macs",
        "local-ipv4s",
        "/",
        "instance-id",
        "mac",
    ]);
    match rng.range(0, 3) {
        0 => {
            f.imds_lag_secs = if long {
                rng.range(5, 60)
            } else {
                rng.range(3, 10)
            }
        }
        1 => f.imds_faults.push(ImdsFault {
            path_contains: path.into(),
            answer: ImdsAnswer::Status(*rng.pick(&[500, 503, 404])),
            remaining: rng.range(1, 6) as u32,
        }),
        _ => f.imds_faults.push(ImdsFault {
            path_contains: path.into(),
            answer: ImdsAnswer::Empty,
            remaining: rng.range(1, 6) as u32,
        }),
    }
}

/// IMDS misbehaves while the agent restarts and the pool grows (new ENIs are read from
/// IMDS); the agent must serve from EC2's truth and never lose or double an address.
pub async fn imds_faults(s: &mut Suite, rng: &mut Rng) -> Outcome {
    s.trim_pods(3).await;
    let long = s.mode == super::super::Mode::Long;
    for _ in 0..rng.range(1, 4) {
        arm_imds_fault(s, rng, long);
    }
    let mut out = Outcome::new();
    if rng.chance(50) {
        s.kill_agent();
        out.push(("restart under IMDS faults".into(), s.restart().await));
    }
    s.add_pods(rng.range(4, 10) as usize).await;
    tokio::time::sleep(rng.millis(0, 3000)).await;
    s.del_pods(rng.range(2, 6) as usize).await;
    out
}

/// `AttachNetworkInterface` takes 10 s or more while pods wait for the new ENI.
pub async fn slow_attach(s: &mut Suite, rng: &mut Rng) -> Outcome {
    s.trim_pods(3).await;
    let Some(grow) = s.pods_to_grow() else {
        return Vec::new();
    };
    // `grow` pods make the agent attach (the warm target) but still fit on the attached
    // ENIs; the WARM_IP_TARGET + 1 after them need the new ENI's addresses, so they wait.
    let grow = grow + super::super::node::WARM_IP_TARGET as usize + 1;
    let latency = rng.range(10_000, 13_000);
    server::lock(s.node.emu()).faults.attach_latency_ms = latency;
    s.tally.emulator += 1;
    let got = s.add_pods(grow).await;
    server::lock(s.node.emu()).faults.attach_latency_ms = 0;
    vec![(
        "pods wait for a slow attach".into(),
        if got == grow {
            Ok(())
        } else {
            Err(format!("{got} of {grow} pods got an address"))
        },
    )]
}

/// Workers doing ADD then DEL, `cycles` in all, `concurrency` at once.
async fn churn(k: &Arc<Kubelet>, cycles: usize, concurrency: usize) -> u64 {
    let left = Arc::new(AtomicU64::new(cycles as u64));
    let failed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (k, left, failed) = (k.clone(), left.clone(), failed.clone());
            tokio::task::spawn_blocking(move || {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    match k.add_retrying(Duration::from_secs(30)) {
                        Added::Ok(ip) => {
                            if let Some(cid) = k.cid_of(ip) {
                                k.del(&cid, None);
                            }
                        }
                        Added::Failed => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    failed.load(Ordering::Relaxed)
}

/// ADDs under a full (or read-only) disk must fail cleanly: no address handed out.
async fn adds_fail_on_a_broken_disk(s: &mut Suite, rng: &mut Rng, read_only: bool) -> Outcome {
    if read_only {
        s.node.set_read_only(true);
    } else {
        s.node.fill_disk();
    }
    let n = rng.range(2, 6) as usize;
    let mut got = 0;
    for _ in 0..n {
        let k = s.kubelet.clone();
        if let Added::Ok(_) = super::blocking(move || k.add(None)).await {
            got += 1;
        }
    }
    s.tally.hostile += n as u64;
    if read_only {
        s.node.set_read_only(false);
    } else {
        s.node.free_disk();
    }
    let what = if read_only { "read-only" } else { "full" };
    vec![(
        format!("ADD fails on a {what} disk"),
        if got == 0 {
            Ok(())
        } else {
            Err(format!(
                "{got} of {n} ADDs succeeded with the checkpoint {what}"
            ))
        },
    )]
}

/// Pod churn on one node with the pool growing and shrinking underneath; the checkpoint's
/// disk full and read-only in the middle.
pub async fn load(s: &mut Suite, rng: &mut Rng) -> Outcome {
    let (cycles, concurrency) = s.mode.churn();
    s.trim_pods(2).await;
    let half = cycles / 2;
    if s.mode == super::super::Mode::Long {
        // Throttling storms under the churn: every EC2 call fails until they are spent.
        let mut emu = server::lock(s.node.emu());
        for _ in 0..3 {
            emu.faults.fail_next.push(FailNext {
                action: "*".into(),
                code: ErrorCode::RequestLimitExceeded,
                remaining: rng.range(100, 300) as u32,
            });
        }
    }
    churn(&s.kubelet, half, concurrency).await;
    let mut out = adds_fail_on_a_broken_disk(s, rng, false).await;
    out.extend(adds_fail_on_a_broken_disk(s, rng, true).await);
    churn(&s.kubelet, cycles - half, concurrency).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    out
}
