//! What `vpc-cni status` reports, built from ipamd's `/v1/enis` document (upstream
//! `pkg/ipamd/introspect.go`) and its Prometheus exposition (docs/metrics.md). Pure parsing:
//! the caller does the HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use ipam::Timestamp;
use serde::Serialize;
use serde_json::Value;

/// One pod's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodAddress {
    /// Address.
    pub ip: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
}

/// One `/32` or `/28` on an ENI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CidrStatus {
    /// The CIDR.
    pub cidr: String,
    /// A delegated prefix (else a secondary /32).
    pub prefix: bool,
    /// Addresses ipamd tracks in it.
    pub ips: u32,
    /// Addresses bound to pods.
    pub assigned_ips: u32,
    /// Unassigned addresses still in `IP_COOLDOWN_PERIOD`.
    pub cooldown_ips: u32,
    /// The pods.
    pub pods: Vec<PodAddress>,
}

/// One ENI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniStatus {
    /// ENI id.
    pub id: String,
    /// Device number.
    pub device_number: u32,
    /// The instance's primary ENI.
    pub primary: bool,
    /// Trunk ENI.
    pub trunk: bool,
    /// EFA ENI.
    pub efa: bool,
    /// In an excluded subnet.
    pub excluded: bool,
    /// Subnet id.
    pub subnet_id: String,
    /// Route table.
    pub route_table_id: u64,
    /// Addresses.
    pub ips: u32,
    /// Assigned to pods.
    pub assigned_ips: u32,
    /// `ips - assigned_ips` (cooling ones included, as ipamd counts them).
    pub free_ips: u32,
    /// Unassigned and cooling down.
    pub cooldown_ips: u32,
    /// Prefix CIDRs.
    pub prefixes: u32,
    /// Secondary /32 CIDRs.
    pub secondary_ips: u32,
    /// Every CIDR, by address.
    pub cidrs: Vec<CidrStatus>,
}

/// One datastore (network card).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardStatus {
    /// Network card index.
    pub network_card: u32,
    /// `TotalIPs` as ipamd reports it.
    pub total_ips: u32,
    /// `AssignedIPs` as ipamd reports it.
    pub assigned_ips: u32,
    /// `total_ips - assigned_ips`.
    pub free_ips: u32,
    /// Unassigned addresses inside the cooldown.
    pub cooldown_ips: u32,
    /// Prefixes.
    pub prefixes: u32,
    /// ENIs by device number.
    pub enis: Vec<EniStatus>,
}

fn field<'a>(v: &'a Value, key: &str, ctx: &str) -> Result<&'a Value, String> {
    v.get(key)
        .ok_or_else(|| format!("unexpected /v1/enis document: {ctx} has no {key:?}"))
}

fn num(v: &Value, key: &str, ctx: &str) -> Result<u64, String> {
    field(v, key, ctx)?
        .as_u64()
        .ok_or_else(|| format!("unexpected /v1/enis document: {ctx}.{key} is not a number"))
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn cidr_sort_key(c: &str) -> (u32, u8) {
    c.parse::<ipnet::Ipv4Net>()
        .map(|n| (u32::from(n.network()), n.prefix_len()))
        .unwrap_or((u32::MAX, 0))
}

fn cidr(net: &str, v: &Value, now: Timestamp, cooldown: Duration) -> CidrStatus {
    // `IPAddresses` only lists addresses that have been handed out at some time (as
    // upstream's datastore): the CIDR's size is what the pool holds.
    let size = net
        .parse::<ipnet::Ipv4Net>()
        .map(|n| 1u32 << (32 - u32::from(n.prefix_len())))
        .unwrap_or(1);
    let mut c = CidrStatus {
        cidr: net.to_string(),
        prefix: flag(v, "IsPrefix"),
        ips: size,
        assigned_ips: 0,
        cooldown_ips: 0,
        pods: Vec::new(),
    };
    let Some(addrs) = v.get("IPAddresses").and_then(Value::as_object) else {
        return c;
    };
    for (ip, a) in addrs {
        let meta = a.get("IPAMMetadata");
        let name = meta.map(|m| text(m, "k8sPodName")).unwrap_or_default();
        let key_set = a
            .get("IPAMKey")
            .is_some_and(|k| !text(k, "networkName").is_empty());
        let assigned = key_set || !name.is_empty();
        if assigned {
            c.assigned_ips += 1;
            c.pods.push(PodAddress {
                ip: ip.clone(),
                namespace: meta.map(|m| text(m, "k8sPodNamespace")).unwrap_or_default(),
                name,
            });
        } else if a
            .get("UnassignedTime")
            .and_then(Value::as_str)
            .and_then(Timestamp::parse_rfc3339)
            .is_some_and(|t| t.unix_nanos() > 0 && t.within(now, cooldown))
        {
            c.cooldown_ips += 1;
        }
    }
    c.pods.sort_by_key(|p| {
        p.ip.parse::<std::net::Ipv4Addr>()
            .map(u32::from)
            .unwrap_or(0)
    });
    c
}

fn eni(id: &str, v: &Value, now: Timestamp, cooldown: Duration) -> Result<EniStatus, String> {
    let ctx = format!("ENI {id}");
    let mut cidrs: Vec<CidrStatus> = field(v, "AvailableIPv4Cidrs", &ctx)?
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(net, c)| cidr(net, c, now, cooldown))
                .collect()
        })
        .unwrap_or_default();
    cidrs.sort_by_key(|c| cidr_sort_key(&c.cidr));
    let ips = cidrs.iter().map(|c| c.ips).sum();
    let assigned_ips = cidrs.iter().map(|c| c.assigned_ips).sum();
    Ok(EniStatus {
        id: text(v, "ID"),
        device_number: num(v, "DeviceNumber", &ctx)? as u32,
        primary: flag(v, "IsPrimary"),
        trunk: flag(v, "IsTrunk"),
        efa: flag(v, "IsEFA"),
        excluded: flag(v, "IsExcludedForPodIPs"),
        subnet_id: text(v, "SubnetID"),
        route_table_id: v.get("RouteTableID").and_then(Value::as_u64).unwrap_or(0),
        ips,
        assigned_ips,
        free_ips: ips - assigned_ips,
        cooldown_ips: cidrs.iter().map(|c| c.cooldown_ips).sum(),
        prefixes: cidrs.iter().filter(|c| c.prefix).count() as u32,
        secondary_ips: cidrs.iter().filter(|c| !c.prefix).count() as u32,
        cidrs,
    })
}

/// Parses `/v1/enis`; `now` and `cooldown` decide which free addresses are cooling down.
pub fn parse_enis(
    body: &str,
    now: Timestamp,
    cooldown: Duration,
) -> Result<Vec<CardStatus>, String> {
    let doc: Value =
        serde_json::from_str(body).map_err(|e| format!("/v1/enis is not JSON: {e}"))?;
    let cards = doc
        .as_object()
        .ok_or("unexpected /v1/enis document: not an object keyed by network card")?;
    let mut out = Vec::new();
    for (card, infos) in cards {
        let network_card: u32 = card
            .parse()
            .map_err(|_| format!("unexpected /v1/enis document: card key {card:?}"))?;
        let ctx = format!("card {card}");
        let total_ips = num(infos, "TotalIPs", &ctx)? as u32;
        let assigned_ips = num(infos, "AssignedIPs", &ctx)? as u32;
        let mut enis = Vec::new();
        if let Some(map) = field(infos, "ENIs", &ctx)?.as_object() {
            for (id, v) in map {
                enis.push(eni(id, v, now, cooldown)?);
            }
        }
        enis.sort_by_key(|e| e.device_number);
        out.push(CardStatus {
            network_card,
            total_ips,
            assigned_ips,
            free_ips: total_ips.saturating_sub(assigned_ips),
            cooldown_ips: enis.iter().map(|e| e.cooldown_ips).sum(),
            prefixes: enis.iter().map(|e| e.prefixes).sum(),
            enis,
        });
    }
    out.sort_by_key(|c| c.network_card);
    Ok(out)
}

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// The metrics `status` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricsSummary {
    /// `awscni_build_info` version label.
    pub version: Option<String>,
    /// `awscni_eni_max`.
    pub eni_max: Option<f64>,
    /// `awscni_ip_max`.
    pub ip_max: Option<f64>,
    /// `awscni_eni_allocated`.
    pub eni_allocated: Option<f64>,
    /// `awscni_total_ip_addresses`.
    pub total_ip_addresses: Option<f64>,
    /// `awscni_assigned_ip_addresses`.
    pub assigned_ip_addresses: Option<f64>,
    /// `awscni_total_ipv4_prefixes`.
    pub total_ipv4_prefixes: Option<f64>,
    /// `awscni_add_ip_req_count`.
    pub add_ip_req_count: Option<f64>,
    /// `awscni_del_ip_req_count`, summed over reasons.
    pub del_ip_req_count: Option<f64>,
    /// `awscni_no_available_ip_addresses`.
    pub no_available_ip_addresses: Option<f64>,
    /// `awscni_force_removed_ips`.
    pub force_removed_ips: Option<f64>,
    /// `awscni_aws_api_error_count` samples (by `api`, `error`).
    pub aws_api_errors: Vec<Sample>,
    /// `awscni_ipamd_error_count` samples (by `fn`).
    pub ipamd_errors: Vec<Sample>,
    /// `awscni_ec2api_error_count` samples (by `fn`).
    pub ec2api_errors: Vec<Sample>,
}

/// `name{a="b",…} value` → (name, labels, value); `None` for comments and junk.
fn parse_line(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 1);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    // A quoted value with \\, \" and \n escapes.
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
        rest = &r[end?..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// Parses the exposition text.
pub fn parse_metrics(body: &str) -> MetricsSummary {
    let mut m = MetricsSummary::default();
    for (name, labels, value) in body.lines().filter_map(parse_line) {
        let sum = |slot: &mut Option<f64>| *slot = Some(slot.unwrap_or(0.0) + value);
        match name.as_str() {
            "awscni_build_info" => m.version = labels.get("version").cloned(),
            "awscni_eni_max" => m.eni_max = Some(value),
            "awscni_ip_max" => m.ip_max = Some(value),
            "awscni_eni_allocated" => m.eni_allocated = Some(value),
            "awscni_total_ip_addresses" => m.total_ip_addresses = Some(value),
            "awscni_assigned_ip_addresses" => m.assigned_ip_addresses = Some(value),
            "awscni_total_ipv4_prefixes" => m.total_ipv4_prefixes = Some(value),
            "awscni_add_ip_req_count" => sum(&mut m.add_ip_req_count),
            "awscni_del_ip_req_count" => sum(&mut m.del_ip_req_count),
            "awscni_no_available_ip_addresses" => sum(&mut m.no_available_ip_addresses),
            "awscni_force_removed_ips" => sum(&mut m.force_removed_ips),
            "awscni_aws_api_error_count" => m.aws_api_errors.push(Sample { labels, value }),
            "awscni_ipamd_error_count" => m.ipamd_errors.push(Sample { labels, value }),
            "awscni_ec2api_error_count" => m.ec2api_errors.push(Sample { labels, value }),
            _ => {}
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lines() {
        let (n, l, v) = parse_line(
            r#"awscni_aws_api_error_count{api="AssignPrivateIpAddresses",error="a\"b"} 3"#,
        )
        .unwrap();
        assert_eq!(n, "awscni_aws_api_error_count");
        assert_eq!(l["api"], "AssignPrivateIpAddresses");
        assert_eq!(l["error"], "a\"b");
        assert_eq!(v, 3.0);
        assert_eq!(parse_line("awscni_eni_max 3").unwrap().2, 3.0);
        assert!(parse_line("# TYPE x counter").is_none());
        let m = parse_metrics(
            "awscni_del_ip_req_count{reason=\"PodDeleted\"} 2\nawscni_del_ip_req_count{reason=\"SetupNSFailed\"} 1\n",
        );
        assert_eq!(m.del_ip_req_count, Some(3.0));
    }

    #[test]
    fn enis_with_cooldown() {
        let now = Timestamp::parse_rfc3339("2024-01-01T00:00:10Z").unwrap();
        let body = r#"{"0":{"TotalIPs":3,"AssignedIPs":1,"ENIs":{"eni-1":{"ID":"eni-1","IsPrimary":true,
          "DeviceNumber":0,"SubnetID":"subnet-1","RouteTableID":254,"AvailableIPv4Cidrs":{
          "10.0.0.5/32":{"IsPrefix":false,"IPAddresses":{"10.0.0.5":{"IPAMKey":{"networkName":"aws-cni"},
             "IPAMMetadata":{"k8sPodNamespace":"default","k8sPodName":"web"},
             "AssignedTime":"2024-01-01T00:00:00Z","UnassignedTime":"0001-01-01T00:00:00Z"}}},
          "10.0.0.6/32":{"IsPrefix":false,"IPAddresses":{"10.0.0.6":{"IPAMKey":{"networkName":""},
             "IPAMMetadata":{},"UnassignedTime":"2024-01-01T00:00:05Z"}}},
          "10.0.0.7/32":{"IsPrefix":false,"IPAddresses":{"10.0.0.7":{"IPAMKey":{"networkName":""},
             "IPAMMetadata":{},"UnassignedTime":"0001-01-01T00:00:00Z"}}}}}}}}"#;
        let cards = parse_enis(body, now, Duration::from_secs(30)).unwrap();
        let e = &cards[0].enis[0];
        assert_eq!(
            (e.ips, e.assigned_ips, e.free_ips, e.cooldown_ips),
            (3, 1, 2, 1)
        );
        assert_eq!(e.cidrs[0].pods[0].name, "web");
        assert!(parse_enis("[]", now, Duration::from_secs(30)).is_err());
    }
}
