//! Runs the real `ec2-emulator` binary and talks HTTP/1.1 to it: the EC2 Query API, the
//! IMDSv2 token flow, IMDS lag and fault injection through the control API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use ec2_emulator::testing::TestNetns;
use serde_json::Value;

struct Emulator {
    child: Child,
    info: Value,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Emulator {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ec2-emulator"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    Emulator { child, info }
}

/// One HTTP/1.1 request; returns (status, body).
fn http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let host = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Undo chunked encoding if the server used it.
    let body = if raw
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body.as_str();
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body
    };
    (status, body)
}

fn ec2(emu: &Emulator, form: &str) -> (u16, String) {
    let ep = emu.info["ec2_endpoint"].as_str().unwrap();
    http(
        ep,
        "POST",
        "/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form,
    )
}

fn between<'a>(doc: &'a str, open: &str, close: &str) -> &'a str {
    let start = doc.find(open).unwrap() + open.len();
    let end = doc[start..].find(close).unwrap() + start;
    &doc[start..end]
}

#[test]
fn ec2_and_imds_over_http_with_lag_and_faults() {
    let emu = start(&[
        "--instance-type",
        "m5.large",
        "--subnet-cidr",
        "10.0.0.0/27",
    ]);
    let instance = emu.info["instances"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let imds = emu.info["instances"][0]["imds_endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let subnet = emu.info["subnets"][0]["id"].as_str().unwrap().to_string();
    let control = emu.info["ec2_endpoint"].as_str().unwrap().to_string();

    // IMDSv2: no token → 401; token → the real paths.
    assert_eq!(
        http(&imds, "GET", "/latest/meta-data/instance-id", &[], "").0,
        401
    );
    let (status, token) = http(
        &imds,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        "",
    );
    assert_eq!(status, 200);
    let auth = [("X-aws-ec2-metadata-token", token.as_str())];
    let (_, id) = http(&imds, "GET", "/latest/meta-data/instance-id", &auth, "");
    assert_eq!(id, instance);
    let (_, ty) = http(&imds, "GET", "/latest/meta-data/instance-type", &auth, "");
    assert_eq!(ty, "m5.large");

    // Make IMDS lag 30 s, then grow the primary ENI through EC2.
    let (s, _) = http(
        &control,
        "POST",
        "/control/imds-lag",
        &[("Content-Type", "application/json")],
        r#"{"seconds":30}"#,
    );
    assert_eq!(s, 200);
    let (s, doc) = ec2(
        &emu,
        &format!("Action=DescribeInstances&InstanceId.1={instance}"),
    );
    assert_eq!(s, 200, "{doc}");
    let primary = between(&doc, "<networkInterfaceId>", "</networkInterfaceId>").to_string();
    let mac = between(&doc, "<macAddress>", "</macAddress>").to_string();
    let (s, doc) = ec2(
        &emu,
        &format!(
            "Action=AssignPrivateIpAddresses&NetworkInterfaceId={primary}&SecondaryPrivateIpAddressCount=9"
        ),
    );
    assert_eq!(s, 200, "{doc}");
    let (_, ips) = http(
        &imds,
        "GET",
        &format!("/latest/meta-data/network/interfaces/macs/{mac}/local-ipv4s"),
        &auth,
        "",
    );
    assert_eq!(
        ips.lines().count(),
        1,
        "IMDS still shows the old view: {ips}"
    );

    // The eleventh address is refused with EC2's code and XML error shape.
    let (s, doc) = ec2(
        &emu,
        &format!(
            "Action=AssignPrivateIpAddresses&NetworkInterfaceId={primary}&SecondaryPrivateIpAddressCount=1"
        ),
    );
    assert_eq!(s, 400);
    assert!(
        doc.contains("<Code>PrivateIpAddressLimitExceeded</Code>"),
        "{doc}"
    );

    // A /27 runs out: 27 usable, 10 used by the primary ENI.
    let (s, doc) = ec2(
        &emu,
        &format!(
            "Action=CreateNetworkInterface&SubnetId={subnet}&SecondaryPrivateIpAddressCount=17"
        ),
    );
    assert_eq!(s, 400);
    assert!(
        doc.contains("<Code>InsufficientFreeAddressesInSubnet</Code>"),
        "{doc}"
    );

    // Fault injection: the next 2 calls are throttled, then calls pass again.
    let (s, _) = http(
        &control,
        "POST",
        "/control/fail-next",
        &[("Content-Type", "application/json")],
        r#"{"action":"*","code":"RequestLimitExceeded","count":2}"#,
    );
    assert_eq!(s, 200);
    for _ in 0..2 {
        let (s, doc) = ec2(
            &emu,
            &format!("Action=DescribeInstances&InstanceId.1={instance}"),
        );
        assert_eq!(s, 503);
        assert!(doc.contains("<Code>RequestLimitExceeded</Code>"));
    }
    assert_eq!(
        ec2(
            &emu,
            &format!("Action=DescribeInstances&InstanceId.1={instance}")
        )
        .0,
        200
    );
    ec2(&emu, "Action=DescribeNetworkInterfaces");
    let (_, counters) = http(&control, "GET", "/control/counters", &[], "");
    let counters: Value = serde_json::from_str(&counters).unwrap();
    assert_eq!(counters["calls"]["DescribeInstances"], 4);
    assert_eq!(counters["injected"]["DescribeInstances"], 2);
    assert_eq!(counters["unfiltered_describes"], 1);
    let (s, _) = http(
        &control,
        "POST",
        "/control/fail-next",
        &[("Content-Type", "application/json")],
        r#"{"code":"NoSuchCode"}"#,
    );
    assert_eq!(s, 400);
}

#[test]
fn attach_hot_plugs_a_link_with_the_enis_mac_and_detach_removes_it() {
    let ns = TestNetns::new("emu-hp");
    let emu = start(&["--node-netns", &ns.0]);
    let instance = emu.info["instances"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let subnet = emu.info["subnets"][0]["id"].as_str().unwrap().to_string();
    assert!(
        !ns.ip(&["-o", "link"]).contains("eth1"),
        "nothing hot-plugged yet"
    );

    let (_, doc) = ec2(
        &emu,
        &format!("Action=CreateNetworkInterface&SubnetId={subnet}"),
    );
    let eni = between(&doc, "<networkInterfaceId>", "</networkInterfaceId>").to_string();
    let mac = between(&doc, "<macAddress>", "</macAddress>").to_string();
    let (s, doc) = ec2(
        &emu,
        &format!(
            "Action=AttachNetworkInterface&NetworkInterfaceId={eni}&InstanceId={instance}&DeviceIndex=1"
        ),
    );
    assert_eq!(s, 200, "{doc}");
    let attachment = between(&doc, "<attachmentId>", "</attachmentId>").to_string();
    let links = ns.ip(&["-o", "link"]);
    assert!(links.contains("eth1") && links.contains(&mac), "{links}");

    let (s, _) = ec2(
        &emu,
        &format!("Action=DetachNetworkInterface&AttachmentId={attachment}"),
    );
    assert_eq!(s, 200);
    let links = ns.ip(&["-o", "link"]);
    assert!(!links.contains(&mac), "{links}");
}

#[test]
fn a_seed_file_shapes_the_region() {
    let dir = std::env::temp_dir().join(format!("emu-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.json");
    std::fs::write(
        &seed,
        r#"{"instance_type":"t3.small","instances":2,"subnet_cidr":"10.0.8.0/24",
            "extra_subnets":["10.0.9.0/24:kubernetes.io/role/cni=1"]}"#,
    )
    .unwrap();
    let emu = start(&["--seed", seed.to_str().unwrap()]);
    assert_eq!(emu.info["instance_type"], "t3.small");
    assert_eq!(emu.info["instances"].as_array().unwrap().len(), 2);
    assert_eq!(emu.info["subnets"][0]["cidr"], "10.0.8.0/24");
    let control = emu.info["ec2_endpoint"].as_str().unwrap().to_string();
    let (_, state) = http(&control, "GET", "/control/state", &[], "");
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["subnets"][1]["tags"]["kubernetes.io/role/cni"], "1");

    std::fs::write(&seed, r#"{"instance_typo":"x"}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ec2-emulator"))
        .args(["--seed", seed.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid seed file"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ipv6_enis_carry_their_address_on_the_hot_plugged_link() {
    let ns = TestNetns::new("emu-hp6");
    let emu = start(&["--ipv6", "--node-netns", &ns.0]);
    assert_eq!(emu.info["vpc_ipv6_cidr"], "2600:1f14:c0de::/56");
    assert_eq!(emu.info["subnets"][0]["ipv6_cidr"], "2600:1f14:c0de::/64");
    assert_eq!(
        emu.info["instances"][0]["primary_ipv6"],
        "2600:1f14:c0de::4"
    );
    let instance = emu.info["instances"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let subnet = emu.info["subnets"][0]["id"].as_str().unwrap().to_string();

    // The subnet assigns IPv6 on creation: the new ENI has one address.
    let (s, doc) = ec2(
        &emu,
        &format!("Action=CreateNetworkInterface&SubnetId={subnet}"),
    );
    assert_eq!(s, 200, "{doc}");
    let eni = between(&doc, "<networkInterfaceId>", "</networkInterfaceId>").to_string();
    let v6 = between(&doc, "<ipv6Address>", "</ipv6Address>").to_string();
    assert_eq!(v6, "2600:1f14:c0de::5");
    let (s, doc) = ec2(
        &emu,
        &format!(
            "Action=AttachNetworkInterface&NetworkInterfaceId={eni}&InstanceId={instance}&DeviceIndex=1"
        ),
    );
    assert_eq!(s, 200, "{doc}");
    let addrs = ns.ip(&["-6", "-o", "addr", "show", "dev", "eth1"]);
    assert!(addrs.contains(&format!("{v6}/128")), "{addrs}");

    // A /80 prefix over the wire, then the per-ENI limit (m5.large: 10).
    let (s, doc) = ec2(
        &emu,
        &format!("Action=AssignIpv6Addresses&NetworkInterfaceId={eni}&Ipv6PrefixCount=1"),
    );
    assert_eq!(s, 200, "{doc}");
    assert_eq!(
        between(&doc, "<assignedIpv6PrefixSet><item>", "</item>"),
        "2600:1f14:c0de:0:1::/80"
    );
    let (s, doc) = ec2(
        &emu,
        &format!("Action=AssignIpv6Addresses&NetworkInterfaceId={eni}&Ipv6AddressCount=9"),
    );
    assert_eq!(s, 400);
    assert!(doc.contains("exceeds the limit for m5.large"), "{doc}");
    let (_, doc) = ec2(&emu, &format!("Action=DescribeSubnets&SubnetId.1={subnet}"));
    assert!(
        doc.contains("<ipv6CidrBlock>2600:1f14:c0de::/64</ipv6CidrBlock>"),
        "{doc}"
    );
}

#[test]
fn control_branch_eni_plays_the_resource_controller_and_hot_plugs_the_trunk() {
    let ns = TestNetns::new("emu-trunk");
    let emu = start(&["--node-netns", &ns.0]);
    let control = emu.info["ec2_endpoint"].as_str().unwrap().to_string();
    let instance = emu.info["instances"][0]["instance_id"].as_str().unwrap();
    let subnet = emu.info["subnets"][0]["id"].as_str().unwrap();
    let body = format!(r#"{{"instance_id":"{instance}","subnet_id":"{subnet}"}}"#);
    let json = [("content-type", "application/json")];
    let (status, first) = http(&control, "POST", "/control/branch-eni", &json, &body);
    assert_eq!(status, 200, "{first}");
    let first: Value = serde_json::from_str(&first).unwrap();
    let (_, second) = http(&control, "POST", "/control/branch-eni", &json, &body);
    let second: Value = serde_json::from_str(&second).unwrap();
    assert_eq!(
        (first["vlan_id"].as_u64(), second["vlan_id"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(first["trunk_created"], true);
    assert_eq!(second["trunk_created"], false);
    let annotation: Value = serde_json::from_str(first["annotation"].as_str().unwrap()).unwrap();
    assert_eq!(annotation[0]["eniId"], first["eni_id"]);
    assert_eq!(annotation[0]["ifAddress"], first["mac"]);
    assert_eq!(annotation[0]["vlanID"], 1);

    // The trunk's link appears in the node namespace; branches get none.
    let (_, state) = http(&control, "GET", "/control/state", &[], "");
    let state: Value = serde_json::from_str(&state).unwrap();
    let trunk_mac = state["enis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == first["trunk_id"])
        .map(|e| e["mac"].as_str().unwrap().to_string())
        .unwrap();
    let links = ns.ip(&["-o", "link"]);
    assert!(links.contains(&trunk_mac), "{links}");
    assert!(!links.contains(first["mac"].as_str().unwrap()), "{links}");

    let bad = r#"{"instance_id":"i-nope","subnet_id":"subnet-nope"}"#;
    let (status, _) = http(&control, "POST", "/control/branch-eni", &json, bad);
    assert_eq!(status, 400);
}
