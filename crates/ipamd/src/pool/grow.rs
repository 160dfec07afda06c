//! Growing the pool (upstream's `increaseDatastorePool`): addresses or prefixes on an ENI
//! that has room, else a new ENI in the right subnet (`createENI`: node subnet, discovered
//! subnets or the node's ENIConfig), attached, tagged, wired on the host, then recorded.

use aws::{AwsError, CreateEniRequest, Ec2, ErrorKind};
use ipam::DatastoreError;
use ipnet::Ipv4Net;
use planner::{Action, CidrKind};

use super::{EniConfigSource, PoolError, PoolManager, lock, now};
use crate::node::{self, ENI_DESCRIPTION_PREFIX, tags};

impl<E: Ec2, K: net::kernel::Kernel> PoolManager<E, K> {
    /// Adds what EC2 granted to the datastore.
    fn record(
        &self,
        eni: &str,
        ips: &[std::net::Ipv4Addr],
        prefixes: &[Ipv4Net],
    ) -> Result<u32, PoolError> {
        let mut ds = lock(&self.ds);
        let mut added = 0;
        for cidr in ips
            .iter()
            .map(|ip| Ipv4Net::from(*ip))
            .chain(prefixes.iter().copied())
        {
            match ds.add_ipv4_cidr(eni, cidr) {
                Ok(()) => added += 1,
                Err(DatastoreError::IpAlreadyInStore) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(added)
    }

    pub(super) async fn grow(&mut self, action: &Action) -> Result<u32, PoolError> {
        match action {
            Action::AssignIps { eni, count } => {
                let got = match self.ec2.assign_ips(eni, *count).await {
                    Err(e) if e.kind != ErrorKind::LimitExceeded && *count > 1 => {
                        self.ec2.assign_ips(eni, 1).await?
                    }
                    Err(e) if e.kind == ErrorKind::LimitExceeded => {
                        // Datastore out of sync with EC2: take EC2's word for it.
                        return self.resync_eni(eni).await;
                    }
                    other => other?,
                };
                if got.ips.len() as u32 > *count {
                    // More than asked for (moto lists every address of the ENI, the
                    // ENI's own primary among them): take the ENI's secondaries from EC2.
                    return self.resync_eni(eni).await;
                }
                self.record(eni, &got.ips, &[])
            }
            Action::AssignPrefixes { eni, count } => {
                let got = match self.ec2.assign_prefixes(eni, *count).await {
                    Err(e) if e.kind == ErrorKind::LimitExceeded => {
                        return self.resync_eni(eni).await;
                    }
                    other => other?,
                };
                self.record(eni, &[], &got.prefixes)
            }
            Action::AllocateEni { kind, count } => self.allocate_eni(*kind, *count).await,
            _ => Ok(0),
        }
    }

    /// Re-reads one ENI from EC2 and adds whatever the datastore is missing.
    async fn resync_eni(&self, eni: &str) -> Result<u32, PoolError> {
        let truth = self.ec2.describe_enis(&[eni.to_string()]).await?;
        let Some(d) = truth.first() else { return Ok(0) };
        self.record(eni, &d.secondary_ips, &d.prefixes)
    }

    /// A new ENI: created in the first subnet with room, attached at a free device index,
    /// `DeleteOnTermination` set, wired on the host, then recorded from EC2's description.
    async fn allocate_eni(&mut self, kind: CidrKind, count: u32) -> Result<u32, PoolError> {
        let mut req = self.create_request(kind, count);
        let candidates = self.subnets_for_new_eni(&mut req).await?;
        let (created, subnet_cidr) = self.create_in_first_subnet(&mut req, candidates).await?;
        let (device, attachment) = self.attach(&created.id).await?;
        if let Err(e) = self
            .ec2
            .set_delete_on_termination(&created.id, &attachment)
            .await
        {
            let _ = self.ec2.detach_eni(&attachment, true).await;
            let counter = "ENICleanupUponModifyNetworkErr";
            return Err(self.undo_create_as(&created.id, e, counter).await.into());
        }
        let truth = self
            .ec2
            .describe_enis(std::slice::from_ref(&created.id))
            .await?;
        let Some(eni) = truth.first() else {
            return Ok(0);
        };
        if let (Some(host), Some(ip), Some(subnet)) = (&self.host, eni.primary_ip, subnet_cidr) {
            let table = net::route_table::route_table_id(self.network_card, device);
            host.setup_secondary(&eni.mac, ip, subnet, table, eni.interface_type == "trunk")
                .await?;
        }
        let mut ds = lock(&self.ds);
        node::add_eni_from_ec2(&mut ds, eni, now())?;
        Ok((eni.secondary_ips.len() + eni.prefixes.len()) as u32)
    }

    /// `CreateNetworkInterface` for the node's subnet and groups, tagged (with `createdAt`).
    fn create_request(&self, kind: CidrKind, count: u32) -> CreateEniRequest {
        let mut tags = node::eni_tags(
            &self.facts.instance_id,
            &self.facts.cluster_name,
            &self.facts.additional_tags,
        );
        tags.insert(tags::CREATED_AT.to_string(), now().to_rfc3339());
        CreateEniRequest {
            subnet_id: self.facts.subnet_id.clone(),
            security_groups: self.facts.security_groups.clone(),
            description: format!("{ENI_DESCRIPTION_PREFIX}{}", self.facts.instance_id),
            secondary_ips: if kind == CidrKind::Ip { count } else { 0 },
            prefixes: if kind == CidrKind::Prefix { count } else { 0 },
            ipv6_addresses: 0,
            tags,
            conntrack: self.conntrack,
        }
    }

    /// Candidate subnets (with their CIDRs); with custom networking the ENIConfig's subnet,
    /// and its security groups go into `req`.
    async fn subnets_for_new_eni(
        &self,
        req: &mut CreateEniRequest,
    ) -> Result<Vec<(String, Option<Ipv4Net>)>, PoolError> {
        let cluster = match &self.eni_configs {
            EniConfigSource::NotUsed => return Ok(self.subnet_candidates().await),
            EniConfigSource::Unavailable(why) => return Err(PoolError::EniConfig(why.clone())),
            EniConfigSource::Cluster(cluster) => cluster,
        };
        let resolved = cluster
            .node_eni_config()
            .map_err(|e| PoolError::EniConfig(e.to_string()))?;
        if !resolved.spec.security_groups.is_empty() {
            req.security_groups = resolved.spec.security_groups.clone();
        }
        let subnets = self
            .ec2
            .describe_subnets(&self.facts.vpc_id, &self.facts.availability_zone)
            .await?;
        let Some(cidr) = crate::subnets::cidr_of(&subnets, &resolved.spec.subnet) else {
            return Err(PoolError::EniConfig(format!(
                "ENIConfig {} names subnet {}, which is not in the node's VPC and zone {}",
                resolved.name, resolved.spec.subnet, self.facts.availability_zone
            )));
        };
        Ok(vec![(resolved.spec.subnet.clone(), Some(cidr))])
    }

    /// Creates the ENI in the first candidate subnet that has room.
    async fn create_in_first_subnet(
        &mut self,
        req: &mut CreateEniRequest,
        candidates: Vec<(String, Option<Ipv4Net>)>,
    ) -> Result<(aws::EniDescription, Option<Ipv4Net>), PoolError> {
        let mut last_error = None;
        for (subnet, cidr) in candidates {
            self.last_subnet = subnet.clone();
            req.subnet_id = subnet;
            match self.ec2.create_eni(req).await {
                Ok(eni) => return Ok((eni, cidr)),
                // Exhausted here: the next subnet may have room.
                Err(e) if e.kind == ErrorKind::InsufficientAddresses => last_error = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_error.map_or(PoolError::NoSubnet, PoolError::Aws))
    }

    /// Attaches a created ENI at the first free device index of the manager's card; deletes it when
    /// that fails. Returns the device index and the attachment id.
    async fn attach(&self, eni: &str) -> Result<(u32, String), PoolError> {
        let instance = match self.ec2.describe_instance(&self.facts.instance_id).await {
            Ok(i) => i,
            Err(e) => return Err(self.undo_create(eni, e).await.into()),
        };
        let card = self.network_card;
        let Some(device) = instance.free_device_index(card) else {
            let e = AwsError::new(
                ErrorKind::LimitExceeded,
                "AttachNetworkInterface",
                None,
                "no free device index",
            );
            return Err(self.undo_create(eni, e).await.into());
        };
        match self
            .ec2
            .attach_eni(eni, &self.facts.instance_id, device, card)
            .await
        {
            Ok(a) => Ok((device, a)),
            Err(e) => Err(self.undo_create(eni, e).await.into()),
        }
    }

    /// Subnets to create a new ENI in, in order (`createENI`, `isSubnetValidForENICreation`). Without discovery, or when
    /// `DescribeSubnets` fails, the node's own subnet.
    async fn subnet_candidates(&self) -> Vec<(String, Option<Ipv4Net>)> {
        let own = vec![(self.facts.subnet_id.clone(), self.facts.subnet_cidr)];
        if !self.facts.subnet_discovery {
            return own;
        }
        match self
            .ec2
            .describe_subnets(&self.facts.vpc_id, &self.facts.availability_zone)
            .await
        {
            Ok(subnets) => crate::subnets::candidates(
                &subnets,
                &self.facts.subnet_id,
                &self.facts.cluster_name,
            ),
            Err(e) => {
                tracing::warn!("subnet discovery: {e}; using the node's subnet");
                own
            }
        }
    }

    /// Deletes an ENI whose create succeeded but whose attach failed; returns the cause.
    async fn undo_create(&self, eni: &str, cause: AwsError) -> AwsError {
        self.undo_create_as(eni, cause, "AllocENIDeleteErr").await
    }

    /// [`Self::undo_create`], counting a failed delete as `awscni_aws_utils_error_count{fn}`.
    async fn undo_create_as(&self, eni: &str, cause: AwsError, counter: &str) -> AwsError {
        if let Err(e) = self.ec2.delete_eni(eni).await {
            tracing::warn!(
                eni,
                "could not delete the unattached ENI after {cause}: {e}"
            );
            if let Some(m) = &self.metrics {
                m.aws_utils_error_count
                    .with_label_values(&[counter, &e.to_string()])
                    .inc();
            }
        }
        cause
    }
}
