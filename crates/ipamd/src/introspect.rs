//! Introspection HTTP (upstream `pkg/ipamd/introspect.go`) on `127.0.0.1:61679`: upstream's
//! paths and JSON shapes, scrubbed as upstream v1.23 does (no container IDs or interface
//! names: they would let a local caller forge DelNetwork requests).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use ipam::{Datastore, Timestamp};
use serde_json::{Map, Value, json};

use crate::pool::{self, SharedDatastore};

/// What the endpoints read.
#[derive(Clone)]
pub struct Introspection {
    /// Datastores by network card.
    pub datastores: Vec<(u32, SharedDatastore)>,
    /// `/v1/ipamd-env-settings` body.
    pub ipamd_env: Value,
    /// `/v1/networkutils-env-settings` body.
    pub networkutils_env: Value,
    /// The API whose cache holds the Node (which ENIConfig it selects).
    pub cluster: Option<Arc<dyn k8s::Cluster>>,
}

const COMMANDS: [&str; 4] = [
    "/v1/enis",
    "/v1/eni-configs",
    "/v1/networkutils-env-settings",
    "/v1/ipamd-env-settings",
];

fn time(t: Option<Timestamp>) -> Value {
    Value::String(match t {
        Some(t) => t.to_rfc3339(),
        None => "0001-01-01T00:00:00Z".to_string(),
    })
}

/// `ENIInfos` of one datastore, scrubbed. `TotalIPs` counts the IPv6 prefixes' addresses
/// too (2^48 per /80, as upstream's `total`); `AddressFamily` is `""` for IPv4 CIDRs (upstream's
/// copy drops it) and `"6"` for IPv6 prefixes (ours keeps it: the family is the one fact that
/// tells the two maps' entries apart).
pub fn eni_infos(ds: &Datastore, now: Timestamp) -> Value {
    let stats = ds.stats(now);
    let mut enis = Map::new();
    for eni in ds.enis() {
        let v4: Map<String, Value> = eni
            .ipv4_cidrs
            .iter()
            .map(|(net, entry)| {
                let cidr = json!({"IP": net.network().to_string(), "Mask": base64(&net.netmask().octets())});
                (net.to_string(), cidr_json(cidr, entry, ""))
            })
            .collect();
        let v6: Map<String, Value> = eni
            .ipv6_cidrs
            .iter()
            .map(|(net, entry)| {
                let cidr = json!({"IP": net.network().to_string(), "Mask": base64(&net.netmask().octets())});
                (net.to_string(), cidr_json(cidr, entry, "6"))
            })
            .collect();
        enis.insert(
            eni.id.clone(),
            json!({
                "ID": eni.id,
                "IsPrimary": eni.is_primary,
                "IsTrunk": eni.is_trunk,
                "IsEFA": eni.is_efa,
                "DeviceNumber": eni.device_number,
                "AvailableIPv4Cidrs": v4,
                "IPv6Cidrs": v6,
                "IsExcludedForPodIPs": eni.excluded,
                "RouteTableID": eni.route_table_id,
                "SubnetID": eni.subnet_id,
            }),
        );
    }
    let v6_total = u64::try_from(ds.ipv6_total_addresses()).unwrap_or(u64::MAX);
    let total = u64::from(stats.total_ips).saturating_add(v6_total);
    let assigned = stats.assigned_ips + ds.ipv6_assigned();
    json!({"TotalIPs": total, "AssignedIPs": assigned, "ENIs": enis})
}

/// `IPAMMetadata` as upstream's JSON tags have it (`interfacesCount` omitted when 0).
fn pod_metadata(m: &ipam::IpamMetadata) -> Value {
    let mut meta = json!({"k8sPodNamespace": m.k8s_pod_namespace, "k8sPodName": m.k8s_pod_name});
    if m.interfaces_count > 0 {
        meta["interfacesCount"] = json!(m.interfaces_count);
    }
    meta
}

/// One `CidrInfo`: the CIDR, the addresses used at least once (scrubbed), the kind.
fn cidr_json<N: ipam::PodNet>(cidr: Value, entry: &ipam::CidrEntry<N>, family: &str) -> Value {
    let mut addresses = Map::new();
    for (ip, info) in &entry.addresses {
        let (key, meta, assigned) = match &info.assignment {
            Some(a) => (
                json!({"networkName": a.key.network_name, "containerID": "", "ifName": ""}),
                pod_metadata(&a.metadata),
                Some(a.assigned_time),
            ),
            None => (
                json!({"networkName": "", "containerID": "", "ifName": ""}),
                json!({}),
                None,
            ),
        };
        addresses.insert(
            ip.to_string(),
            json!({
                "Address": ip.to_string(),
                "IPAMKey": key,
                "IPAMMetadata": meta,
                "AssignedTime": time(assigned),
                "UnassignedTime": time(info.unassigned_time),
            }),
        );
    }
    json!({
        "Cidr": cidr,
        "IPAddresses": addresses,
        "IsPrefix": entry.is_prefix,
        "AddressFamily": family,
    })
}

/// Go's `[]byte` JSON encoding: standard base64.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn enis(State(s): State<Arc<Introspection>>) -> Response {
    let now = pool::now();
    let mut body = Map::new();
    for (card, ds) in &s.datastores {
        body.insert(card.to_string(), eni_infos(&pool::lock(ds), now));
    }
    axum::Json(Value::Object(body)).into_response()
}

/// The name of the ENIConfig the node selects, as a JSON string (upstream's
/// `eniConfigRequestHandler`); 404 when the Node cannot be read.
async fn eni_configs(State(s): State<Arc<Introspection>>) -> Response {
    match s.cluster.as_ref().and_then(|c| c.node_eni_config_name()) {
        Some(name) => axum::Json(Value::String(name)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "the Node is not known (no API server or MY_NODE_NAME)",
        )
            .into_response(),
    }
}

async fn index() -> Response {
    axum::Json(json!({"AvailableCommands": COMMANDS})).into_response()
}

/// The introspection router.
pub fn router(state: Introspection) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/v1/enis", any(enis))
        .route("/v1/eni-configs", any(eni_configs))
        .route(
            "/v1/networkutils-env-settings",
            any(|State(s): State<Arc<Introspection>>| async move { axum::Json(s.networkutils_env.clone()) }),
        )
        .route(
            "/v1/ipamd-env-settings",
            any(|State(s): State<Arc<Introspection>>| async move { axum::Json(s.ipamd_env.clone()) }),
        )
        .fallback(index)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam::{DatastoreConfig, IpamKey, IpamMetadata, NewEni, NullSink};

    #[test]
    fn go_byte_slices_are_base64() {
        assert_eq!(base64(&[255, 255, 255, 255]), "/////w==");
        assert_eq!(base64(&[255, 255, 255, 240]), "////8A==");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn enis_are_scrubbed_but_keep_ids_and_ips() {
        let mut ds = ipam::Datastore::new(DatastoreConfig::default(), Box::new(NullSink));
        let now = Timestamp::from_unix_secs(1_700_000_000);
        ds.add_eni(
            NewEni {
                id: "eni-0abc".into(),
                device_number: 0,
                is_primary: true,
                is_trunk: false,
                is_efa: false,
                excluded: false,
                route_table_id: 254,
                subnet_id: "subnet-abc".into(),
            },
            now,
        )
        .unwrap();
        ds.add_ipv4_cidr("eni-0abc", "10.0.0.5/32".parse().unwrap())
            .unwrap();
        ds.assign_pod_ipv4(
            &IpamKey::new("aws-cni", "secret-container", "eth0"),
            &IpamMetadata::new("default", "my-pod", 1),
            now,
        )
        .unwrap();
        let text = eni_infos(&ds, now).to_string();
        assert!(!text.contains("secret-container"), "{text}");
        assert!(!text.contains(r#""ifName":"eth0""#), "{text}");
        assert!(
            text.contains("eni-0abc") && text.contains("10.0.0.5"),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["TotalIPs"], 1);
        assert_eq!(v["AssignedIPs"], 1);
        let cidr = &v["ENIs"]["eni-0abc"]["AvailableIPv4Cidrs"]["10.0.0.5/32"];
        assert_eq!(cidr["Cidr"]["Mask"], "/////w==");
        assert_eq!(
            cidr["IPAddresses"]["10.0.0.5"]["IPAMMetadata"]["k8sPodName"],
            "my-pod"
        );
        assert_eq!(
            cidr["IPAddresses"]["10.0.0.5"]["UnassignedTime"],
            "0001-01-01T00:00:00Z"
        );
        assert_eq!(v["ENIs"]["eni-0abc"]["RouteTableID"], 254);
    }

    #[test]
    fn ipv6_prefixes_show_under_ipv6_cidrs_with_family_6() {
        let cfg = DatastoreConfig {
            prefix_delegation: true,
            ..DatastoreConfig::default()
        };
        let mut ds = ipam::Datastore::new(cfg, Box::new(NullSink));
        let now = Timestamp::from_unix_secs(1_700_000_000);
        let eni = NewEni {
            id: "eni-0abc".into(),
            is_primary: true,
            route_table_id: 254,
            ..NewEni::default()
        };
        ds.add_eni(eni, now).unwrap();
        ds.add_ipv6_cidr("eni-0abc", "2600:1f13::/80".parse().unwrap())
            .unwrap();
        ds.assign_pod_ipv6(
            &IpamKey::new("aws-cni", "secret-container", "eth0"),
            &IpamMetadata::new("default", "v6-pod", 1),
            now,
        )
        .unwrap();
        let v = eni_infos(&ds, now);
        assert!(!v.to_string().contains("secret-container"));
        assert_eq!(v["TotalIPs"], 1u64 << 48);
        assert_eq!(v["AssignedIPs"], 1);
        let eni = &v["ENIs"]["eni-0abc"];
        assert_eq!(eni["AvailableIPv4Cidrs"], json!({}));
        let cidr = &eni["IPv6Cidrs"]["2600:1f13::/80"];
        assert_eq!(cidr["AddressFamily"], "6");
        assert_eq!(cidr["IsPrefix"], true);
        assert_eq!(cidr["Cidr"]["IP"], "2600:1f13::");
        assert_eq!(cidr["Cidr"]["Mask"], "/////////////wAAAAAAAA==");
        assert_eq!(
            cidr["IPAddresses"]["2600:1f13::"]["IPAMMetadata"]["k8sPodName"],
            "v6-pod"
        );
    }
}
