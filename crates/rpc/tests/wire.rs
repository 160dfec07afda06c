//! Wire compatibility with upstream's Go peers, independent of our own code generation: messages
//! are encoded by hand exactly as protobuf-go marshals them (tag = field << 3 | wire type, fields in
//! number order, proto3 zero values omitted, negative int32 sign-extended to a 10-byte varint),
//! then decoded with the generated prost types; and our encodings are compared byte for byte with
//! those hand-made ones and taken apart field by field.

use prost::Message as _;
use rpc::{
    AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest, DeleteNpRequest,
    EnforceNpRequest, IpAllocationMetadata, NetworkPolicyAgentConfigReply,
};

const VARINT: u8 = 0;
const LEN: u8 = 2;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A tiny hand-written protobuf writer, in the style of a Go peer.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn key(&mut self, field: u32, wt: u8) {
        varint(u64::from(field) << 3 | u64::from(wt), &mut self.0);
    }
    fn string(mut self, field: u32, s: &str) -> Self {
        self.key(field, LEN);
        varint(s.len() as u64, &mut self.0);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn boolean(mut self, field: u32, b: bool) -> Self {
        self.key(field, VARINT);
        self.0.push(u8::from(b));
        self
    }
    /// int32: Go sign-extends to 64 bits before varint-encoding.
    fn int32(mut self, field: u32, v: i32) -> Self {
        self.key(field, VARINT);
        varint(i64::from(v) as u64, &mut self.0);
        self
    }
    fn message(mut self, field: u32, m: W) -> Self {
        self.key(field, LEN);
        varint(m.0.len() as u64, &mut self.0);
        self.0.extend_from_slice(&m.0);
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.0
    }
}

#[derive(Debug, PartialEq, Eq)]
enum V {
    Varint(u64),
    Len(Vec<u8>),
}

/// Splits an encoded message into (field number, value) in wire order.
fn fields(mut b: &[u8]) -> Vec<(u32, V)> {
    fn read_varint(b: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = read_varint(&mut b);
        let (field, wt) = ((key >> 3) as u32, (key & 7) as u8);
        match wt {
            VARINT => out.push((field, V::Varint(read_varint(&mut b)))),
            LEN => {
                let n = read_varint(&mut b) as usize;
                out.push((field, V::Len(b[..n].to_vec())));
                b = &b[n..];
            }
            other => panic!("unexpected wire type {other} for field {field}"),
        }
    }
    out
}

fn s(v: &str) -> V {
    V::Len(v.as_bytes().to_vec())
}

#[test]
fn helper_matches_known_bytes() {
    // Sanity check of the hand encoder against bytes worked out on paper.
    assert_eq!(W::default().string(1, "a").bytes(), [0x0a, 0x01, b'a']);
    assert_eq!(
        W::default().string(8, "v1").bytes(),
        [0x42, 0x02, b'v', b'1']
    );
    assert_eq!(W::default().boolean(9, true).bytes(), [0x48, 0x01]);
    assert_eq!(W::default().string(12, "x").bytes(), [0x62, 0x01, b'x']);
    assert_eq!(
        W::default().int32(3, -1).bytes(),
        [
            0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ]
    );
}

fn go_add_request() -> Vec<u8> {
    W::default()
        .string(1, "nginx-7d9f")
        .string(2, "default")
        .string(3, "0123abcd")
        .string(4, "/var/run/netns/cni-1234")
        .string(5, "eth0")
        .string(6, "aws-cni")
        .string(7, "0123abcd")
        .string(8, "v1.19.2")
        .boolean(9, true)
        .bytes()
}

#[test]
fn add_network_request_from_go_peer() {
    let req = AddNetworkRequest::decode(go_add_request().as_slice()).unwrap();
    assert_eq!(
        req,
        AddNetworkRequest {
            client_version: "v1.19.2".into(),
            k8s_pod_name: "nginx-7d9f".into(),
            k8s_pod_namespace: "default".into(),
            k8s_pod_infra_container_id: "0123abcd".into(),
            container_id: "0123abcd".into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            netns: "/var/run/netns/cni-1234".into(),
            requires_multi_nic_attachment: true,
        }
    );
    // Our encoding is what a Go peer would produce, byte for byte.
    assert_eq!(req.encode_to_vec(), go_add_request());
    assert_eq!(
        fields(&req.encode_to_vec()),
        vec![
            (1, s("nginx-7d9f")),
            (2, s("default")),
            (3, s("0123abcd")),
            (4, s("/var/run/netns/cni-1234")),
            (5, s("eth0")),
            (6, s("aws-cni")),
            (7, s("0123abcd")),
            (8, s("v1.19.2")),
            (9, V::Varint(1)),
        ]
    );
}

#[test]
fn add_network_request_field_order_and_unknown_fields_do_not_matter() {
    // Fields out of order, plus a field from a hypothetical newer upstream (number 50): proto3
    // decoders must accept both.
    let b = W::default()
        .string(8, "")
        .boolean(9, false)
        .string(50, "future")
        .string(2, "kube-system")
        .string(1, "coredns-abc")
        .bytes();
    let req = AddNetworkRequest::decode(b.as_slice()).unwrap();
    assert_eq!(req.k8s_pod_name, "coredns-abc");
    assert_eq!(req.k8s_pod_namespace, "kube-system");
    assert_eq!(req.client_version, "");
    assert!(!req.requires_multi_nic_attachment);
    // Empty version (what upstream builds really send) and false are omitted on re-encode.
    assert_eq!(
        fields(&req.encode_to_vec()),
        vec![(1, s("coredns-abc")), (2, s("kube-system"))]
    );
}

fn go_add_reply() -> Vec<u8> {
    W::default()
        .boolean(1, true)
        .message(
            2,
            W::default().string(1, "10.0.1.23").int32(3, 1).int32(4, 2),
        )
        .message(
            2,
            W::default().string(1, "10.0.9.4").int32(3, 0).int32(4, 3),
        )
        .boolean(5, false)
        .string(6, "10.0.0.0/16")
        .string(6, "100.64.0.0/16")
        .int32(7, 0)
        .string(13, "standard")
        .bytes()
}

#[test]
fn add_network_reply_from_go_peer() {
    // .int32(3, 0) / .boolean(5, false) / .int32(7, 0) above: a Go peer would omit zero values,
    // but explicit zeros are still valid wire data and must decode.
    let reply = AddNetworkReply::decode(go_add_reply().as_slice()).unwrap();
    assert!(reply.success);
    assert_eq!(
        reply.ip_allocation_metadata,
        vec![
            IpAllocationMetadata {
                i_pv4_addr: "10.0.1.23".into(),
                i_pv6_addr: String::new(),
                device_number: 1,
                route_table_id: 2,
            },
            IpAllocationMetadata {
                i_pv4_addr: "10.0.9.4".into(),
                i_pv6_addr: String::new(),
                device_number: 0,
                route_table_id: 3,
            },
        ]
    );
    assert!(!reply.use_external_snat);
    assert_eq!(reply.vp_cv4_cid_rs, vec!["10.0.0.0/16", "100.64.0.0/16"]);
    assert!(reply.vp_cv6_cid_rs.is_empty());
    assert_eq!(reply.pod_vlan_id, 0);
    assert_eq!(reply.network_policy_mode, "standard");
}

#[test]
fn add_network_reply_branch_eni_encodes_like_go() {
    // Security-groups-for-pods reply: DeviceNumber -1 (10-byte varint), VLAN, MAC, gateway,
    // parent ifindex, IPv6 CIDRs at field 12.
    let ours = AddNetworkReply {
        success: true,
        ip_allocation_metadata: vec![IpAllocationMetadata {
            i_pv4_addr: String::new(),
            i_pv6_addr: "2600:1f14::5".into(),
            device_number: -1,
            route_table_id: 0,
        }],
        use_external_snat: true,
        vp_cv4_cid_rs: vec![],
        vp_cv6_cid_rs: vec!["2600:1f14::/56".into()],
        pod_vlan_id: 7,
        pod_enimac: "0a:1b:2c:3d:4e:5f".into(),
        pod_eni_subnet_gw: "fe80:ec2::1".into(),
        parent_if_index: 3,
        network_policy_mode: String::new(),
    };
    let go = W::default()
        .boolean(1, true)
        .message(2, W::default().string(2, "2600:1f14::5").int32(3, -1))
        .boolean(5, true)
        .int32(7, 7)
        .string(8, "0a:1b:2c:3d:4e:5f")
        .string(9, "fe80:ec2::1")
        .int32(10, 3)
        .string(12, "2600:1f14::/56")
        .bytes();
    assert_eq!(ours.encode_to_vec(), go);
    assert_eq!(AddNetworkReply::decode(go.as_slice()).unwrap(), ours);

    let f = fields(&go);
    let numbers: Vec<u32> = f.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [1, 2, 5, 7, 8, 9, 10, 12]);
    let V::Len(meta) = &f[1].1 else {
        panic!("field 2 is length-delimited")
    };
    assert_eq!(
        fields(meta),
        vec![(2, s("2600:1f14::5")), (3, V::Varint(u64::MAX))]
    );
}

#[test]
fn del_network_request_numbers_differ_from_add() {
    // In DelNetworkRequest ClientVersion is 9, ContainerID 8, IfName 6, NetworkName 7,
    // K8S_POD_UID 10 -- not the AddNetworkRequest numbers.
    let go = W::default()
        .string(1, "web-0")
        .string(2, "shop")
        .string(3, "cid")
        .string(5, "PodDeleted")
        .string(6, "eth0")
        .string(7, "aws-cni")
        .string(8, "cid")
        .string(9, "")
        .string(10, "3f1c-uid")
        .bytes();
    let req = DelNetworkRequest::decode(go.as_slice()).unwrap();
    assert_eq!(
        req,
        DelNetworkRequest {
            client_version: String::new(),
            k8s_pod_name: "web-0".into(),
            k8s_pod_namespace: "shop".into(),
            k8s_pod_infra_container_id: "cid".into(),
            reason: "PodDeleted".into(),
            container_id: "cid".into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            k8s_pod_uid: "3f1c-uid".into(),
        }
    );
    let numbers: Vec<u32> = fields(&req.encode_to_vec())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(numbers, [1, 2, 3, 5, 6, 7, 8, 10]);
}

#[test]
fn del_network_reply_from_go_peer() {
    let go = W::default()
        .boolean(1, true)
        .message(
            2,
            W::default().string(1, "10.0.1.23").int32(3, 2).int32(4, 3),
        )
        .int32(4, 12)
        .string(6, "strict")
        .bytes();
    let reply = DelNetworkReply::decode(go.as_slice()).unwrap();
    assert!(reply.success);
    assert_eq!(reply.ip_allocation_metadata.len(), 1);
    assert_eq!(reply.ip_allocation_metadata[0].i_pv4_addr, "10.0.1.23");
    assert_eq!(reply.ip_allocation_metadata[0].device_number, 2);
    assert_eq!(reply.ip_allocation_metadata[0].route_table_id, 3);
    assert_eq!(reply.pod_vlan_id, 12);
    assert_eq!(reply.network_policy_mode, "strict");
    assert_eq!(reply.encode_to_vec(), go);
}

#[test]
fn network_policy_messages_like_go() {
    let enforce = EnforceNpRequest {
        k8s_pod_name: "p".into(),
        k8s_pod_namespace: "ns".into(),
        network_policy_mode: "none".into(),
        interface_count: 2,
    };
    let go = W::default()
        .string(1, "p")
        .string(2, "ns")
        .string(3, "none")
        .int32(4, 2)
        .bytes();
    assert_eq!(enforce.encode_to_vec(), go);

    let del = DeleteNpRequest {
        k8s_pod_name: "p".into(),
        k8s_pod_namespace: "ns".into(),
    };
    assert_eq!(
        del.encode_to_vec(),
        W::default().string(1, "p").string(2, "ns").bytes()
    );

    let cfg = NetworkPolicyAgentConfigReply {
        network_policy_mode: "standard".into(),
        multi_nic_enabled: true,
        node_i_pv4: "10.0.0.10".into(),
        node_i_pv6: String::new(),
        instance_id: "i-0123456789abcdef0".into(),
        region: "us-west-2".into(),
    };
    let go = W::default()
        .string(1, "standard")
        .boolean(2, true)
        .string(3, "10.0.0.10")
        .string(5, "i-0123456789abcdef0")
        .string(6, "us-west-2")
        .bytes();
    assert_eq!(cfg.encode_to_vec(), go);
    assert_eq!(
        NetworkPolicyAgentConfigReply::decode(go.as_slice()).unwrap(),
        cfg
    );

    // Success = 1 for both reply types.
    assert_eq!(
        rpc::EnforceNpReply { success: true }.encode_to_vec(),
        [0x08, 0x01]
    );
    assert_eq!(
        rpc::DeleteNpReply { success: true }.encode_to_vec(),
        [0x08, 0x01]
    );
}
