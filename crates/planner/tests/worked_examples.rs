//! Every row of the two worked-example tables of upstream's
//! `docs/eni-and-ip-target.md` and `docs/prefix-and-ip-target.md`), driven through the
//! simulator from 0 pods, one pod at a time, settling to a fixed point after each pod.

mod common;

use common::{grown, p3dn, prefix, secondary, t3_small};
use planner::NodeCapacity;

/// Max pods used for the tables: large enough never to cap them (t3.small's own
/// `eni-max-pods` value of 11 only matters in PD mode, where the doc assumes no cap).
const T3_MAX_PODS: u32 = 110;
const P3DN_MAX_PODS: u32 = 737;

/// Expected secondary-IP row: ENIs, secondary IPs, unused IPs, IPs per ENI (device order).
struct IpRow {
    pods: usize,
    enis: usize,
    ips: u32,
    unused: u32,
    per_eni: &'static [u32],
}

fn check_ip_rows(
    label: &str,
    cap: NodeCapacity,
    warm_eni: u32,
    warm_ip: u32,
    min_ip: u32,
    max_pods: u32,
    rows: &[IpRow],
) {
    for row in rows {
        let node = grown(
            secondary(warm_eni, warm_ip, min_ip, max_pods),
            cap,
            row.pods,
        );
        let ctx = format!("{label} pods={}", row.pods);
        assert_eq!(node.enis.len(), row.enis, "{ctx}: ENIs");
        assert_eq!(node.total_ips(), row.ips, "{ctx}: secondary IPs");
        assert_eq!(node.unused_ips(), row.unused, "{ctx}: unused");
        assert_eq!(node.ips_per_eni(), row.per_eni, "{ctx}: IPs per ENI");
        assert_eq!(node.pods().len(), row.pods, "{ctx}: pods placed");
    }
}

#[test]
fn t3_small_warm_eni_1() {
    check_ip_rows(
        "t3.small WARM_ENI=1",
        t3_small(),
        1,
        0,
        0,
        11,
        &[
            IpRow {
                pods: 0,
                enis: 1,
                ips: 3,
                unused: 3,
                per_eni: &[3],
            },
            IpRow {
                pods: 5,
                enis: 3,
                ips: 9,
                unused: 4,
                per_eni: &[3, 3, 3],
            },
            // Max ENIs reached.
            IpRow {
                pods: 9,
                enis: 3,
                ips: 9,
                unused: 0,
                per_eni: &[3, 3, 3],
            },
        ],
    );
}

#[test]
fn t3_small_warm_ip_1_min_1() {
    check_ip_rows(
        "t3.small WARM_IP=1 MIN_IP=1",
        t3_small(),
        1,
        1,
        1,
        11,
        &[
            IpRow {
                pods: 0,
                enis: 1,
                ips: 1,
                unused: 1,
                per_eni: &[1],
            },
            IpRow {
                pods: 5,
                enis: 2,
                ips: 6,
                unused: 1,
                per_eni: &[3, 3],
            },
            IpRow {
                pods: 9,
                enis: 3,
                ips: 9,
                unused: 0,
                per_eni: &[3, 3, 3],
            },
        ],
    );
}

#[test]
fn t3_small_warm_ip_2_min_5() {
    check_ip_rows(
        "t3.small WARM_IP=2 MIN_IP=5",
        t3_small(),
        1,
        2,
        5,
        11,
        &[
            // The doc lists "2,3" without an order: the primary fills first (3), the new ENI
            // gets min(short, 3) = 2.
            IpRow {
                pods: 0,
                enis: 2,
                ips: 5,
                unused: 5,
                per_eni: &[3, 2],
            },
            IpRow {
                pods: 5,
                enis: 3,
                ips: 7,
                unused: 2,
                per_eni: &[3, 3, 1],
            },
            IpRow {
                pods: 9,
                enis: 3,
                ips: 9,
                unused: 0,
                per_eni: &[3, 3, 3],
            },
        ],
    );
}

#[test]
fn p3dn_warm_eni_1() {
    check_ip_rows(
        "p3dn WARM_ENI=1",
        p3dn(),
        1,
        0,
        0,
        P3DN_MAX_PODS,
        &[
            IpRow {
                pods: 0,
                enis: 1,
                ips: 49,
                unused: 49,
                per_eni: &[49],
            },
            IpRow {
                pods: 3,
                enis: 2,
                ips: 98,
                unused: 95,
                per_eni: &[49, 49],
            },
            IpRow {
                pods: 95,
                enis: 3,
                ips: 147,
                unused: 52,
                per_eni: &[49, 49, 49],
            },
        ],
    );
}

#[test]
fn p3dn_warm_ip_5_min_10() {
    check_ip_rows(
        "p3dn WARM_IP=5 MIN_IP=10",
        p3dn(),
        1,
        5,
        10,
        P3DN_MAX_PODS,
        &[
            IpRow {
                pods: 0,
                enis: 1,
                ips: 10,
                unused: 10,
                per_eni: &[10],
            },
            IpRow {
                pods: 7,
                enis: 1,
                ips: 12,
                unused: 5,
                per_eni: &[12],
            },
            IpRow {
                pods: 15,
                enis: 1,
                ips: 20,
                unused: 5,
                per_eni: &[20],
            },
            IpRow {
                pods: 45,
                enis: 2,
                ips: 50,
                unused: 5,
                per_eni: &[49, 1],
            },
        ],
    );
}

/// Expected PD row: ENIs, prefixes, prefixes per ENI, pods per ENI, unused IPs, unused
/// (fully free) prefixes.
struct PdRow {
    pods: usize,
    enis: usize,
    prefixes: u32,
    per_eni: &'static [u32],
    pods_per_eni: &'static [u32],
    unused_ips: u32,
    free_prefixes: u32,
}

fn check_pd_rows(
    label: &str,
    cap: NodeCapacity,
    warm_prefix: u32,
    warm_ip: u32,
    min_ip: u32,
    max_pods: u32,
    rows: &[PdRow],
) {
    for row in rows {
        let node = grown(
            prefix(warm_prefix, warm_ip, min_ip, max_pods),
            cap,
            row.pods,
        );
        let ctx = format!("{label} pods={}", row.pods);
        let stats = node.snapshot().stats();
        assert_eq!(node.enis.len(), row.enis, "{ctx}: ENIs");
        assert_eq!(stats.total_prefixes, row.prefixes, "{ctx}: prefixes");
        assert_eq!(node.cidrs_per_eni(), row.per_eni, "{ctx}: prefixes per ENI");
        assert_eq!(node.pods_per_eni(), row.pods_per_eni, "{ctx}: pods per ENI");
        assert_eq!(node.unused_ips(), row.unused_ips, "{ctx}: unused IPs");
        assert_eq!(
            stats.free_prefixes, row.free_prefixes,
            "{ctx}: unused prefixes"
        );
    }
}

#[test]
fn pd_t3_small_warm_prefix_1() {
    check_pd_rows(
        "PD t3.small WARM_PREFIX=1",
        t3_small(),
        1,
        0,
        0,
        T3_MAX_PODS,
        &[
            PdRow {
                pods: 0,
                enis: 1,
                prefixes: 1,
                per_eni: &[1],
                pods_per_eni: &[0],
                unused_ips: 16,
                free_prefixes: 1,
            },
            PdRow {
                pods: 5,
                enis: 1,
                prefixes: 2,
                per_eni: &[2],
                pods_per_eni: &[5],
                unused_ips: 27,
                free_prefixes: 1,
            },
            PdRow {
                pods: 16,
                enis: 1,
                prefixes: 2,
                per_eni: &[2],
                pods_per_eni: &[16],
                unused_ips: 16,
                free_prefixes: 1,
            },
            PdRow {
                pods: 17,
                enis: 1,
                prefixes: 3,
                per_eni: &[3],
                pods_per_eni: &[17],
                unused_ips: 31,
                free_prefixes: 1,
            },
            PdRow {
                pods: 58,
                enis: 2,
                prefixes: 5,
                per_eni: &[3, 2],
                pods_per_eni: &[48, 10],
                unused_ips: 22,
                free_prefixes: 1,
            },
        ],
    );
}

#[test]
fn pd_t3_small_warm_ip_1_min_1() {
    check_pd_rows(
        "PD t3.small WARM_IP=1 MIN_IP=1",
        t3_small(),
        0,
        1,
        1,
        T3_MAX_PODS,
        &[
            PdRow {
                pods: 0,
                enis: 1,
                prefixes: 1,
                per_eni: &[1],
                pods_per_eni: &[0],
                unused_ips: 16,
                free_prefixes: 1,
            },
            PdRow {
                pods: 5,
                enis: 1,
                prefixes: 1,
                per_eni: &[1],
                pods_per_eni: &[5],
                unused_ips: 11,
                free_prefixes: 0,
            },
            PdRow {
                pods: 17,
                enis: 1,
                prefixes: 2,
                per_eni: &[2],
                pods_per_eni: &[17],
                unused_ips: 15,
                free_prefixes: 0,
            },
            PdRow {
                pods: 58,
                enis: 2,
                prefixes: 4,
                per_eni: &[3, 1],
                pods_per_eni: &[48, 10],
                unused_ips: 6,
                free_prefixes: 0,
            },
        ],
    );
}

#[test]
fn pd_t3_small_warm_ip_7_min_20() {
    check_pd_rows(
        "PD t3.small WARM_IP=7 MIN_IP=20",
        t3_small(),
        0,
        7,
        20,
        T3_MAX_PODS,
        &[
            // Doc row (0 pods) is wrong: it shows 1 prefix. The algorithm gives
            // short = max(7, 20) = 20 IPs -> 2 prefixes (32 unused IPs, both prefixes free).
            PdRow {
                pods: 0,
                enis: 1,
                prefixes: 2,
                per_eni: &[2],
                pods_per_eni: &[0],
                unused_ips: 32,
                free_prefixes: 2,
            },
            PdRow {
                pods: 5,
                enis: 1,
                prefixes: 2,
                per_eni: &[2],
                pods_per_eni: &[5],
                unused_ips: 27,
                free_prefixes: 1,
            },
            PdRow {
                pods: 17,
                enis: 1,
                prefixes: 2,
                per_eni: &[2],
                pods_per_eni: &[17],
                unused_ips: 15,
                free_prefixes: 0,
            },
            PdRow {
                pods: 58,
                enis: 2,
                prefixes: 5,
                per_eni: &[3, 2],
                pods_per_eni: &[48, 10],
                unused_ips: 22,
                free_prefixes: 1,
            },
        ],
    );
}

#[test]
fn pd_p3dn_warm_prefix_1() {
    check_pd_rows(
        "PD p3dn WARM_PREFIX=1",
        p3dn(),
        1,
        0,
        0,
        P3DN_MAX_PODS,
        &[
            PdRow {
                pods: 0,
                enis: 1,
                prefixes: 1,
                per_eni: &[1],
                pods_per_eni: &[0],
                unused_ips: 16,
                free_prefixes: 1,
            },
            // Doc row (3 pods) shows 2 ENIs ("2,0"): the algorithm adds the prefix to the primary
            // ENI, which has room for 49 prefixes, so 1 ENI with 2 prefixes.
            PdRow {
                pods: 3,
                enis: 1,
                prefixes: 2,
                per_eni: &[2],
                pods_per_eni: &[3],
                unused_ips: 29,
                free_prefixes: 1,
            },
            // Doc row (95 pods) shows 3 ENIs ("7,0,0"): same remark, 1 ENI with 7 prefixes.
            PdRow {
                pods: 95,
                enis: 1,
                prefixes: 7,
                per_eni: &[7],
                pods_per_eni: &[95],
                unused_ips: 17,
                free_prefixes: 1,
            },
        ],
    );
}

#[test]
fn pd_p3dn_warm_ip_5_min_10() {
    check_pd_rows(
        "PD p3dn WARM_IP=5 MIN_IP=10",
        p3dn(),
        0,
        5,
        10,
        P3DN_MAX_PODS,
        &[
            PdRow {
                pods: 0,
                enis: 1,
                prefixes: 1,
                per_eni: &[1],
                pods_per_eni: &[0],
                unused_ips: 16,
                free_prefixes: 1,
            },
            PdRow {
                pods: 7,
                enis: 1,
                prefixes: 1,
                per_eni: &[1],
                pods_per_eni: &[7],
                unused_ips: 9,
                free_prefixes: 0,
            },
            PdRow {
                pods: 15,
                enis: 1,
                prefixes: 2,
                per_eni: &[2],
                pods_per_eni: &[15],
                unused_ips: 17,
                free_prefixes: 1,
            },
            // Doc row (45 pods) shows 2 ENIs ("4,0"): the algorithm keeps all 4 prefixes on the
            // primary ENI.
            PdRow {
                pods: 45,
                enis: 1,
                prefixes: 4,
                per_eni: &[4],
                pods_per_eni: &[45],
                unused_ips: 19,
                free_prefixes: 1,
            },
        ],
    );
}
