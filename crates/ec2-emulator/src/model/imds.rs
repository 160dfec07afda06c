//! What the instance metadata service shows an instance, derived from the model, and a
//! history of those views so that IMDS can lag behind EC2 as it does after a real attach.

use std::collections::{BTreeMap, VecDeque};

use super::resources::{Eni, Instance};
use super::world::World;

/// IMDS content of one instance: leaf path (relative to `/latest/`) → value.
pub type ImdsView = BTreeMap<String, String>;

/// Builds the view of `instance_id` now. Paths follow the real service:
/// `meta-data/network/interfaces/macs/<mac>/local-ipv4s` etc.
pub fn view_of(world: &World, instance_id: &str, region: &str) -> Option<ImdsView> {
    let instance = world.instances.get(instance_id)?;
    let primary = world.enis.get(&instance.primary_eni)?;
    let vpc_cidrs = world
        .vpcs
        .get(&instance.vpc_id)
        .map(|v| join_lines(&v.cidrs))
        .unwrap_or_default();
    let vpc_ipv6_cidrs = world
        .vpcs
        .get(&instance.vpc_id)
        .map(|v| join_lines(&v.ipv6_cidrs))
        .unwrap_or_default();
    let mut view = ImdsView::new();
    put_instance_leaves(&mut view, instance, primary, region);
    for eni in world.attached_enis(instance_id) {
        put_interface_leaves(&mut view, world, eni, &vpc_cidrs);
        put_ipv6_leaves(&mut view, world, eni, &vpc_ipv6_cidrs);
    }
    Some(view)
}

/// The values one per line, as IMDS lists them.
fn join_lines<T: ToString>(values: impl IntoIterator<Item = T>) -> String {
    values
        .into_iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The instance's own leaves: ID, type, primary address, placement, identity document.
fn put_instance_leaves(view: &mut ImdsView, instance: &Instance, primary: &Eni, region: &str) {
    let mut put = |k: String, val: String| {
        view.insert(k, val);
    };
    let md = "meta-data";
    put(format!("{md}/instance-id"), instance.id.clone());
    put(
        format!("{md}/instance-type"),
        instance.instance_type.name.clone(),
    );
    put(format!("{md}/mac"), primary.mac.clone());
    put(format!("{md}/local-ipv4"), primary.primary_ip.to_string());
    if let Some(ipv6) = primary.ipv6_addresses.first() {
        put(format!("{md}/ipv6"), ipv6.to_string());
    }
    put(
        format!("{md}/local-hostname"),
        format!(
            "ip-{}.{region}.compute.internal",
            primary.primary_ip.to_string().replace('.', "-")
        ),
    );
    put(
        format!("{md}/placement/availability-zone"),
        instance.availability_zone.clone(),
    );
    put(format!("{md}/placement/region"), region.to_string());
    put(
        "dynamic/instance-identity/document".to_string(),
        format!(
            r#"{{"accountId":"{}","architecture":"x86_64","availabilityZone":"{}","imageId":"ami-00000000000000000","instanceId":"{}","instanceType":"{}","privateIp":"{}","region":"{region}","version":"2017-09-30"}}"#,
            crate::query::render::OWNER_ID,
            instance.availability_zone,
            instance.id,
            instance.instance_type.name,
            primary.primary_ip
        ),
    );
}

/// The leaves under `meta-data/network/interfaces/macs/<mac>/` of one attached ENI;
/// `vpc_cidrs` is the VPC's CIDRs one per line. An unattached ENI has none.
fn put_interface_leaves(view: &mut ImdsView, world: &World, eni: &Eni, vpc_cidrs: &str) {
    let Some(att) = &eni.attachment else { return };
    let mut put = |k: String, val: String| {
        view.insert(k, val);
    };
    let base = format!("meta-data/network/interfaces/macs/{}", eni.mac);
    let subnet_cidr = world
        .subnets
        .get(&eni.subnet_id)
        .map(|s| s.cidr().to_string())
        .unwrap_or_default();
    put(format!("{base}/mac"), eni.mac.clone());
    put(
        format!("{base}/device-number"),
        att.device_index.to_string(),
    );
    if att.network_card != 0 {
        put(format!("{base}/network-card"), att.network_card.to_string());
    }
    put(format!("{base}/interface-id"), eni.id.clone());
    put(
        format!("{base}/owner-id"),
        crate::query::render::OWNER_ID.to_string(),
    );
    put(format!("{base}/subnet-id"), eni.subnet_id.clone());
    put(format!("{base}/vpc-id"), eni.vpc_id.clone());
    put(format!("{base}/subnet-ipv4-cidr-block"), subnet_cidr);
    put(
        format!("{base}/vpc-ipv4-cidr-block"),
        vpc_cidrs.lines().next().unwrap_or_default().to_string(),
    );
    put(
        format!("{base}/vpc-ipv4-cidr-blocks"),
        vpc_cidrs.to_string(),
    );
    put(
        format!("{base}/security-group-ids"),
        eni.groups.iter().cloned().collect::<Vec<_>>().join("\n"),
    );
    put(format!("{base}/local-ipv4s"), join_lines(eni.private_ips()));
    if !eni.prefixes.is_empty() {
        put(format!("{base}/ipv4-prefix"), join_lines(&eni.prefixes));
    }
}

/// The IPv6 leaves of one attached ENI, each only when it has a value (a real IMDS answers
/// 404 for `ipv6s` of an ENI without IPv6, and so on); `vpc_ipv6_cidrs` one per line.
fn put_ipv6_leaves(view: &mut ImdsView, world: &World, eni: &Eni, vpc_ipv6_cidrs: &str) {
    if eni.attachment.is_none() {
        return;
    }
    let base = format!("meta-data/network/interfaces/macs/{}", eni.mac);
    let subnet_v6 = world
        .subnets
        .get(&eni.subnet_id)
        .and_then(|s| s.ipv6_cidr());
    let leaves = [
        ("ipv6s", join_lines(&eni.ipv6_addresses)),
        ("ipv6-prefix", join_lines(&eni.ipv6_prefixes)),
        ("subnet-ipv6-cidr-blocks", join_lines(subnet_v6)),
        ("vpc-ipv6-cidr-blocks", vpc_ipv6_cidrs.to_string()),
    ];
    for (leaf, value) in leaves {
        if !value.is_empty() {
            view.insert(format!("{base}/{leaf}"), value);
        }
    }
}

/// The answer to a GET of `path` (relative to `/latest/`) in `view`: a leaf's value, or a
/// directory listing (children one per line, sub-directories with a trailing `/`).
pub fn lookup(view: &ImdsView, path: &str) -> Option<String> {
    let path = path.trim_matches('/');
    if let Some(value) = view.get(path) {
        return Some(value.clone());
    }
    let dir = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let mut children: Vec<String> = view
        .keys()
        .filter_map(|k| k.strip_prefix(&dir))
        .map(|rest| match rest.split_once('/') {
            Some((child, _)) => format!("{child}/"),
            None => rest.to_string(),
        })
        .collect();
    children.dedup();
    (!children.is_empty()).then(|| children.join("\n"))
}

/// Views recorded over time; a reader with a lag sees the newest view at least `lag`
/// seconds old (or the oldest one kept).
#[derive(Debug, Clone, Default)]
pub struct ImdsHistory {
    snapshots: VecDeque<(u64, ImdsView)>,
}

impl ImdsHistory {
    /// Records the view at time `now` (skipped if unchanged); keeps at most `keep_secs` of
    /// history beyond the newest entry.
    pub fn record(&mut self, now: u64, view: ImdsView, keep_secs: u64) {
        if self.snapshots.back().is_some_and(|(_, v)| *v == view) {
            return;
        }
        self.snapshots.push_back((now, view));
        while self.snapshots.len() > 1
            && self
                .snapshots
                .get(1)
                .is_some_and(|(t, _)| now.saturating_sub(*t) > keep_secs)
        {
            self.snapshots.pop_front();
        }
    }

    /// The view a reader lagging `lag` seconds behind sees at `now`.
    pub fn view_at(&self, now: u64, lag: u64) -> Option<&ImdsView> {
        let cutoff = now.saturating_sub(lag);
        self.snapshots
            .iter()
            .rev()
            .find(|(t, _)| *t <= cutoff)
            .or_else(|| self.snapshots.front())
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AssignRequest, CreateEni, InstanceTypeInfo};

    fn world() -> (World, String, String) {
        let mut w = World::new();
        let vpc = w.create_vpc("10.0.0.0/16".parse().unwrap());
        let subnet = w
            .create_subnet(&vpc, "10.0.1.0/24".parse().unwrap(), "us-west-2a")
            .unwrap();
        let sg = w.create_security_group(&vpc, "nodes");
        let i = w
            .run_instance(
                InstanceTypeInfo::single_card("m5.large", 3, 10),
                &subnet,
                &[sg],
            )
            .unwrap();
        (w, i, subnet)
    }

    #[test]
    fn paths_and_listings_follow_the_real_service() {
        let (mut w, i, subnet) = world();
        let eni = w
            .create_network_interface(&CreateEni {
                subnet_id: subnet,
                secondary_ip_count: 2,
                ..Default::default()
            })
            .unwrap();
        w.attach_network_interface(&eni, &i, 1, 0).unwrap();
        let v = view_of(&w, &i, "us-west-2").unwrap();
        let primary_mac = lookup(&v, "meta-data/mac").unwrap();
        let macs = lookup(&v, "meta-data/network/interfaces/macs/").unwrap();
        assert_eq!(macs.lines().count(), 2);
        assert!(macs.lines().all(|l| l.ends_with('/')));
        assert!(macs.contains(&format!("{primary_mac}/")));
        let mac = w.eni(&eni).unwrap().mac.clone();
        let ips = lookup(
            &v,
            &format!("meta-data/network/interfaces/macs/{mac}/local-ipv4s"),
        )
        .unwrap();
        assert_eq!(
            ips.lines().count(),
            3,
            "primary first, then the secondaries"
        );
        assert_eq!(
            ips.lines().next().unwrap(),
            w.eni(&eni).unwrap().primary_ip.to_string()
        );
        assert_eq!(
            lookup(
                &v,
                &format!("meta-data/network/interfaces/macs/{mac}/device-number")
            )
            .unwrap(),
            "1"
        );
        assert_eq!(
            lookup(
                &v,
                &format!("meta-data/network/interfaces/macs/{mac}/subnet-ipv4-cidr-block")
            )
            .unwrap(),
            "10.0.1.0/24"
        );
        assert!(lookup(&v, "meta-data/nope").is_none());
        assert!(
            lookup(&v, "dynamic/instance-identity/document")
                .unwrap()
                .contains(r#""region":"us-west-2""#)
        );
    }

    #[test]
    fn a_lagging_reader_sees_the_old_view() {
        let (mut w, i, _) = world();
        let mut h = ImdsHistory::default();
        h.record(100, view_of(&w, &i, "r").unwrap(), 600);
        let primary = w.instances[&i].primary_eni.clone();
        w.assign_private_ip_addresses(&primary, &AssignRequest::Count(3))
            .unwrap();
        h.record(110, view_of(&w, &i, "r").unwrap(), 600);
        let mac = w.eni(&primary).unwrap().mac.clone();
        let path = format!("meta-data/network/interfaces/macs/{mac}/local-ipv4s");
        let count = |v: &ImdsView| lookup(v, &path).unwrap().lines().count();
        assert_eq!(count(h.view_at(111, 0).unwrap()), 4);
        assert_eq!(
            count(h.view_at(111, 30).unwrap()),
            1,
            "30 s of lag hides the new IPs"
        );
        assert_eq!(count(h.view_at(141, 30).unwrap()), 4);
    }
}
