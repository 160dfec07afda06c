//! `ec2-emulator`: serves the EC2 Query API, a control API and IMDS for emulated instances.
//! Prints one JSON line with the IDs and endpoints, then serves until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::Parser;
use ec2_emulator::model::World;
use ec2_emulator::server::{self, Emulator, lock};
use ipnet::Ipv4Net;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "EC2 + IMDS emulator for vpc-cni tests (not shipped in the node image)"
)]
struct Args {
    /// EC2 Query API and control API listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// IMDS listen address of the first instance (others get ephemeral ports).
    #[arg(long, default_value = "127.0.0.1:0")]
    imds_listen: SocketAddr,
    /// Instance type of every emulated instance (limits from the instance-limits table).
    #[arg(long, default_value = "m5.large")]
    instance_type: String,
    /// How many instances to launch in the node subnet.
    #[arg(long, default_value_t = 1)]
    instances: u32,
    #[arg(long, default_value = "10.0.0.0/16")]
    vpc_cidr: Ipv4Net,
    /// The node subnet.
    #[arg(long, default_value = "10.0.0.0/24")]
    subnet_cidr: Ipv4Net,
    /// More subnets in the same AZ: `CIDR` or `CIDR:key=value,key=value` (tags).
    #[arg(long = "extra-subnet")]
    extra_subnets: Vec<String>,
    #[arg(long, default_value = "us-west-2")]
    region: String,
    #[arg(long, default_value = "us-west-2a")]
    availability_zone: String,
    /// Dual-stack VPC: an IPv6 /56 on the VPC, a /64 on every subnet with
    /// `AssignIpv6AddressOnCreation`, so instances and new ENIs get an IPv6 address.
    #[arg(long)]
    ipv6: bool,
    /// Hot-plug the first instance's ENIs as links into this network namespace.
    #[arg(long)]
    node_netns: Option<String>,
    /// Seed the region from a JSON file (keys as the long options, with `_`:
    /// `instance_type`, `instances`, `vpc_cidr`, `subnet_cidr`, `extra_subnets`, `region`,
    /// `availability_zone`, `ipv6`); values in the file override the command line.
    #[arg(long)]
    seed: Option<std::path::PathBuf>,
}

/// The seed file: every field optional.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Seed {
    instance_type: Option<String>,
    instances: Option<u32>,
    vpc_cidr: Option<Ipv4Net>,
    subnet_cidr: Option<Ipv4Net>,
    extra_subnets: Option<Vec<String>>,
    region: Option<String>,
    availability_zone: Option<String>,
    ipv6: Option<bool>,
}

impl Args {
    fn apply_seed(&mut self) -> anyhow::Result<()> {
        let Some(path) = &self.seed else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--seed {}: cannot read", path.display()))?;
        let seed: Seed = serde_json::from_str(&text)
            .with_context(|| format!("--seed {}: not a valid seed file", path.display()))?;
        if let Some(v) = seed.instance_type {
            self.instance_type = v;
        }
        if let Some(v) = seed.instances {
            self.instances = v;
        }
        if let Some(v) = seed.vpc_cidr {
            self.vpc_cidr = v;
        }
        if let Some(v) = seed.subnet_cidr {
            self.subnet_cidr = v;
        }
        if let Some(v) = seed.extra_subnets {
            self.extra_subnets = v;
        }
        if let Some(v) = seed.region {
            self.region = v;
        }
        if let Some(v) = seed.availability_zone {
            self.availability_zone = v;
        }
        if let Some(v) = seed.ipv6 {
            self.ipv6 = v;
        }
        Ok(())
    }
}

fn parse_extra_subnet(spec: &str) -> anyhow::Result<(Ipv4Net, Vec<(String, String)>)> {
    let (cidr, tags) = spec.split_once(':').unwrap_or((spec, ""));
    let cidr: Ipv4Net = cidr
        .parse()
        .with_context(|| format!("--extra-subnet {spec:?}: bad CIDR"))?;
    let mut out = Vec::new();
    for tag in tags.split(',').filter(|t| !t.is_empty()) {
        let Some((k, v)) = tag.split_once('=') else {
            bail!("--extra-subnet {spec:?}: tag {tag:?} is not key=value");
        };
        out.push((k.to_string(), v.to_string()));
    }
    Ok((cidr, out))
}

/// What `main` created in the emulated region before serving.
struct Seeded {
    world: World,
    vpc: String,
    /// `{"id", "cidr", "ipv6_cidr"}` of each subnet, the node subnet first.
    subnets: Vec<serde_json::Value>,
    /// The VPC's IPv6 /56 (`--ipv6`).
    vpc_ipv6: Option<ipnet::Ipv6Net>,
    security_group: String,
    instances: Vec<String>,
}

/// Creates the VPC, the node subnet and any extra subnets, a security group and the
/// instances.
fn seed_world(args: &Args) -> anyhow::Result<Seeded> {
    let ty = ec2_emulator::catalog::instance_type(&args.instance_type)
        .with_context(|| format!("unknown instance type {:?}", args.instance_type))?;
    let mut world = World::new();
    let vpc = world.create_vpc(args.vpc_cidr);
    let subnet = world
        .create_subnet(&vpc, args.subnet_cidr, &args.availability_zone)
        .context("node subnet")?;
    let mut subnets = vec![(subnet.clone(), args.subnet_cidr.to_string())];
    for spec in &args.extra_subnets {
        let (cidr, tags) = parse_extra_subnet(spec)?;
        let id = world
            .create_subnet(&vpc, cidr, &args.availability_zone)
            .with_context(|| format!("--extra-subnet {spec}"))?;
        world.create_tags(std::slice::from_ref(&id), &tags.into_iter().collect())?;
        subnets.push((id, cidr.to_string()));
    }
    let vpc_ipv6 = if args.ipv6 {
        Some(world.enable_ipv6(&vpc).context("IPv6 CIDRs")?)
    } else {
        None
    };
    let subnets = subnets
        .into_iter()
        .map(|(id, cidr)| {
            let v6 = world.subnets.get(&id).and_then(|s| s.ipv6_cidr());
            serde_json::json!({"id": id, "cidr": cidr, "ipv6_cidr": v6.map(|c| c.to_string())})
        })
        .collect();
    let sg = world.create_security_group(&vpc, "node");
    let mut instances = Vec::new();
    for _ in 0..args.instances.max(1) {
        instances.push(world.run_instance(ty.clone(), &subnet, std::slice::from_ref(&sg))?);
    }
    Ok(Seeded {
        world,
        vpc,
        subnets,
        vpc_ipv6,
        security_group: sg,
        instances,
    })
}

/// Starts one IMDS server per instance (the first on `--imds-listen`) and answers the
/// start-up line's entry of each.
async fn serve_imds(
    shared: &Arc<Mutex<Emulator>>,
    instances: &[String],
    first_listen: SocketAddr,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut imds_out = Vec::new();
    for (i, id) in instances.iter().enumerate() {
        let addr = if i == 0 {
            first_listen
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let router = server::imds_router(shared.clone(), id.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let (primary_ip, primary_mac, primary_ipv6) = {
            let emu = lock(shared);
            let eni = emu
                .world
                .instance(id)
                .ok()
                .and_then(|i| emu.world.enis.get(&i.primary_eni));
            eni.map(|e| {
                (
                    e.primary_ip.to_string(),
                    e.mac.clone(),
                    e.ipv6_addresses.first().map(|a| a.to_string()),
                )
            })
            .unwrap_or_default()
        };
        imds_out.push(serde_json::json!({
            "instance_id": id,
            "imds_endpoint": format!("http://{local}"),
            "primary_ip": primary_ip,
            "primary_mac": primary_mac,
            "primary_ipv6": primary_ipv6,
        }));
    }
    Ok(imds_out)
}

/// Resolves on SIGINT, or on SIGTERM when its handler could be installed.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = Args::parse();
    args.apply_seed()?;
    let Seeded {
        world,
        vpc,
        subnets,
        vpc_ipv6,
        security_group: sg,
        instances,
    } = seed_world(&args)?;

    let emu = Emulator::new(
        world,
        &args.region,
        Arc::new(ec2_emulator::catalog::instance_type),
    );
    let shared = Arc::new(Mutex::new(emu));
    if let (Some(ns), Some(first)) = (&args.node_netns, instances.first()) {
        lock(&shared).set_hotplug(first, ns);
    }

    let ec2 = tokio::net::TcpListener::bind(args.listen).await?;
    let ec2_addr = ec2.local_addr()?;
    let imds_out = serve_imds(&shared, &instances, args.imds_listen).await?;
    let info = serde_json::json!({
        "ec2_endpoint": format!("http://{ec2_addr}"),
        "control_endpoint": format!("http://{ec2_addr}/control"),
        "region": args.region,
        "availability_zone": args.availability_zone,
        "vpc_id": vpc,
        "vpc_ipv6_cidr": vpc_ipv6.map(|c| c.to_string()),
        "subnets": subnets,
        "security_group": sg,
        "instance_type": args.instance_type,
        "instances": imds_out,
    });
    println!("{info}");

    let router = server::ec2_router(shared);
    axum::serve(ec2, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
