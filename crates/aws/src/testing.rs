//! Test support (feature `testing`): moto in server mode on loopback, seeded with one node
//! through the plain SDK. Shared by this crate's contract suite and ipamd's moto node test.
//! Panics on failure: test support only.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The region and zone the seeded node lives in.
pub const MOTO_REGION: &str = "us-east-1";
pub const MOTO_AZ: &str = "us-east-1a";
/// The VPC CIDR of [`Moto::seed_node`].
pub const MOTO_VPC_CIDR: &str = "10.1.0.0/16";

/// A `moto_server` process, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

/// What [`Moto::seed_node`] created.
#[derive(Debug, Clone)]
pub struct MotoNode {
    pub vpc_id: String,
    pub subnet_id: String,
    /// The subnet's IPv6 /64 ([`Moto::seed_dual_stack_node`]).
    pub subnet_ipv6: Option<ipnet::Ipv6Net>,
    pub security_group: String,
    pub instance_id: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts `moto_server` on a free loopback port and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto_server must be installed (scripts/install-deps.sh installs moto[server])",
            );
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A VPC [`MOTO_VPC_CIDR`] with one subnet `subnet_cidr` in [`MOTO_AZ`], a security
    /// group and a running m5.large, created with the plain SDK.
    pub async fn seed_node(&self, subnet_cidr: &str) -> MotoNode {
        self.seed(subnet_cidr, false).await
    }

    /// [`Moto::seed_node`] dual-stack: the VPC with an Amazon-provided IPv6 /56, the subnet
    /// with its first /64 and `AssignIpv6AddressOnCreation`.
    pub async fn seed_dual_stack_node(&self, subnet_cidr: &str) -> MotoNode {
        self.seed(subnet_cidr, true).await
    }

    async fn seed(&self, subnet_cidr: &str, ipv6: bool) -> MotoNode {
        let creds =
            aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "static");
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(crate::connect::https_client())
            .region(aws_sdk_ec2::config::Region::new(MOTO_REGION))
            .credentials_provider(creds)
            .endpoint_url(&self.endpoint)
            .load()
            .await;
        let raw = aws_sdk_ec2::Client::new(&conf);
        let vpc = raw
            .create_vpc()
            .cidr_block(MOTO_VPC_CIDR)
            .amazon_provided_ipv6_cidr_block(ipv6)
            .send()
            .await
            .expect("CreateVpc");
        let vpc_id = vpc
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("VPC id")
            .to_string();
        let subnet_ipv6 = vpc
            .vpc()
            .and_then(|v| v.ipv6_cidr_block_association_set().first())
            .and_then(|a| a.ipv6_cidr_block())
            .map(first_slash_64);
        let subnet_ipv6 = subnet_ipv6.as_deref().and_then(|c| c.parse().ok());
        let subnet = raw
            .create_subnet()
            .vpc_id(&vpc_id)
            .cidr_block(subnet_cidr)
            .set_ipv6_cidr_block(subnet_ipv6.map(|c: ipnet::Ipv6Net| c.to_string()))
            .availability_zone(MOTO_AZ)
            .send()
            .await
            .expect("CreateSubnet");
        let subnet_id = subnet
            .subnet()
            .and_then(|s| s.subnet_id())
            .expect("subnet id")
            .to_string();
        if ipv6 {
            raw.modify_subnet_attribute()
                .subnet_id(&subnet_id)
                .assign_ipv6_address_on_creation(
                    aws_sdk_ec2::types::AttributeBooleanValue::builder()
                        .value(true)
                        .build(),
                )
                .send()
                .await
                .expect("ModifySubnetAttribute");
        }
        let sg = raw
            .create_security_group()
            .group_name("node")
            .description("node")
            .vpc_id(&vpc_id)
            .send()
            .await
            .expect("CreateSecurityGroup");
        let security_group = sg.group_id().expect("group id").to_string();
        let run = raw
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
            .subnet_id(&subnet_id)
            .security_group_ids(&security_group)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .expect("RunInstances");
        let instance_id = run.instances()[0]
            .instance_id()
            .expect("instance id")
            .to_string();
        MotoNode {
            vpc_id,
            subnet_id,
            subnet_ipv6,
            security_group,
            instance_id,
        }
    }
}

/// The first /64 of a VPC's IPv6 block (`2600:1f14:1:100::/56` → `2600:1f14:1:100::/64`).
fn first_slash_64(block: &str) -> String {
    let net: ipnet::Ipv6Net = block.parse().expect("an IPv6 CIDR from CreateVpc");
    format!("{}/64", net.network())
}
