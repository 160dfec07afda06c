//! Reading every variable into a [`Config`] and the cross-variable checks.

use crate::Config;
use crate::env::Reader;
use crate::error::ConfigError;
use crate::names as n;
use crate::sections::{
    AwsSettings, DEFAULT_BACKING_STORE, DEFAULT_CONNMARK, DEFAULT_EGRESS_V4_PLUGIN_LOG_FILE,
    DEFAULT_EGRESS_V6_PLUGIN_LOG_FILE, DEFAULT_ENI_CONFIG_KEY, DEFAULT_HOST_CNI_BIN_PATH,
    DEFAULT_HOST_CNI_CONFDIR_PATH, DEFAULT_IPAMD_LOG_FILE, DEFAULT_MTU, DEFAULT_PLUGIN_LOG_FILE,
    DEFAULT_VETH_PREFIX, EniSettings, Kubernetes, Logging, MIN_HTTP_TIMEOUT, Networking,
    Observability, Paths, PluginChain, PoolTargets,
};
use crate::types::{
    BindAddress, IpFamily, LogDestination, LogLevel, NetworkPolicyMode, PodSgEnforcingMode,
    RandomizeSnat,
};
use crate::values::{
    mtu_range, parse_connmark, parse_eni_tags, parse_go_bool, parse_ipv4_cidr_list, parse_u32,
    validate_veth_prefix,
};
use std::time::Duration;

/// Builds the configuration; every problem found ends up in the returned error.
pub(crate) fn load(mut r: Reader) -> Result<Config, ConfigError> {
    let ip_family = ip_family(&mut r);
    let pool = pool_targets(&mut r);
    let eni = eni_settings(&mut r);
    let networking = networking(&mut r, ip_family);
    let chain = PluginChain {
        bandwidth_plugin: r.bool(n::ENABLE_BANDWIDTH_PLUGIN, false),
        disable_pod_v6: r.bool(n::DISABLE_POD_V6, false),
        v4_egress: r.bool(n::ENABLE_V4_EGRESS, true),
        v6_egress: r.bool(n::ENABLE_V6_EGRESS, false),
    };
    let logging = logging(&mut r);
    let observability = Observability {
        disable_metrics: r.bool(n::DISABLE_METRICS, false),
        disable_introspection: r.bool(n::DISABLE_INTROSPECTION, false),
        introspection_bind_address: r
            .parse_with(n::INTROSPECTION_BIND_ADDRESS, |raw| {
                BindAddress::parse(raw)
                    .ok_or_else(|| "expected host:port, [ipv6]:port or unix:<path>".to_owned())
            })
            .unwrap_or_else(|| Observability::default().introspection_bind_address),
    };
    let kubernetes = Kubernetes {
        cluster_endpoint: r.opt_string(n::CLUSTER_ENDPOINT),
        kubeconfig: r.opt_string(n::KUBECONFIG).map(Into::into),
        node_name: r.opt_string(n::MY_NODE_NAME),
        pod_name: r.opt_string(n::MY_POD_NAME),
        annotate_pod_ip: r.bool(n::ANNOTATE_POD_IP, false),
    };
    let aws = aws_settings(&mut r);
    let paths = Paths {
        backing_store: r
            .string(n::AWS_VPC_K8S_CNI_BACKING_STORE, DEFAULT_BACKING_STORE)
            .into(),
        host_cni_bin_path: r
            .string(n::HOST_CNI_BIN_PATH, DEFAULT_HOST_CNI_BIN_PATH)
            .into(),
        host_cni_confdir_path: r
            .string(n::HOST_CNI_CONFDIR_PATH, DEFAULT_HOST_CNI_CONFDIR_PATH)
            .into(),
    };

    let local = crate::local::local_overrides(&mut r);

    cross_checks(&mut r, ip_family, &pool, &eni, &networking);
    for deprecated in [n::AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER, n::ENABLE_NFTABLES] {
        if let Some(v) = r.get(deprecated) {
            let msg = format!("{deprecated}={v:?} is deprecated upstream and has no effect");
            r.warnings.push(msg);
        }
    }

    if !r.errors.is_empty() {
        return Err(ConfigError { errors: r.errors });
    }
    Ok(Config {
        ip_family: ip_family.unwrap_or(IpFamily::V4),
        pool,
        eni,
        networking,
        chain,
        logging,
        observability,
        kubernetes,
        aws,
        paths,
        local,
        warnings: r.warnings,
    })
}

/// `ENABLE_IPv4` / `ENABLE_IPv6`. Unset `ENABLE_IPv4` means "IPv4 unless IPv6 is on";
/// explicit contradictions are errors. `None` when the pair is invalid.
fn ip_family(r: &mut Reader) -> Option<IpFamily> {
    let v6_set = r.get(n::ENABLE_IPV6).is_some();
    let v6 = r.parse_with(n::ENABLE_IPV6, parse_go_bool);
    let v4_set = r.get(n::ENABLE_IPV4).is_some();
    let v4 = r.parse_with(n::ENABLE_IPV4, parse_go_bool);
    if (v6_set && v6.is_none()) || (v4_set && v4.is_none()) {
        return None;
    }
    let v6 = v6.unwrap_or(false);
    match (v4, v6) {
        (None, false) | (Some(true), false) => Some(IpFamily::V4),
        (None, true) | (Some(false), true) => Some(IpFamily::V6),
        (Some(true), true) => {
            let v6_raw = r.get(n::ENABLE_IPV6).unwrap_or_default().to_owned();
            r.error(
                n::ENABLE_IPV4,
                format!(
                    "contradicts ENABLE_IPv6={v6_raw:?}: exactly one of IPv4 and IPv6 mode \
                     can be enabled"
                ),
            );
            None
        }
        (Some(false), false) => {
            r.error(
                n::ENABLE_IPV4,
                "IPv4 is disabled but ENABLE_IPv6 is not true: exactly one of IPv4 and IPv6 \
                 mode must be enabled",
            );
            None
        }
    }
}

fn pool_targets(r: &mut Reader) -> PoolTargets {
    let d = PoolTargets::default();
    PoolTargets {
        warm_eni_target: r.u32(n::WARM_ENI_TARGET, d.warm_eni_target),
        warm_ip_target: r.u32(n::WARM_IP_TARGET, d.warm_ip_target),
        minimum_ip_target: r.u32(n::MINIMUM_IP_TARGET, d.minimum_ip_target),
        warm_prefix_target: r.u32(n::WARM_PREFIX_TARGET, d.warm_prefix_target),
        prefix_delegation: r.bool(n::ENABLE_PREFIX_DELEGATION, false),
        max_eni: r
            .parse_with(n::MAX_ENI, |raw| {
                // `-1` is upstream's own "unset" sentinel: accept it as such.
                if raw == "-1" {
                    Ok(None)
                } else {
                    parse_u32(raw).map(Some)
                }
            })
            .flatten(),
        ip_cooldown_period: r
            .parse_with(n::IP_COOLDOWN_PERIOD, parse_u32)
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(d.ip_cooldown_period),
    }
}

fn eni_settings(r: &mut Reader) -> EniSettings {
    let tags = r
        .parse_with(n::ADDITIONAL_ENI_TAGS, parse_eni_tags)
        .unwrap_or_default();
    let (additional_eni_tags, reserved) = tags;
    for key in reserved {
        r.warnings.push(format!(
            "ADDITIONAL_ENI_TAGS: key {key:?} contains the reserved {:?} and is ignored",
            crate::values::RESERVED_TAG_MARKER
        ));
    }
    EniSettings {
        custom_networking: r.bool(n::AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG, false),
        eni_config_annotation_def: r.string(n::ENI_CONFIG_ANNOTATION_DEF, DEFAULT_ENI_CONFIG_KEY),
        eni_config_label_def: r.string(n::ENI_CONFIG_LABEL_DEF, DEFAULT_ENI_CONFIG_KEY),
        additional_eni_tags,
        cluster_name: r.string(n::CLUSTER_NAME, ""),
        manage_untagged_eni: r.bool(n::MANAGE_UNTAGGED_ENI, true),
        manage_enis_non_schedulable: r.bool(n::AWS_MANAGE_ENIS_NON_SCHEDULABLE, false),
        disable_network_resource_provisioning: r
            .bool(n::DISABLE_NETWORK_RESOURCE_PROVISIONING, false),
        disable_leaked_eni_cleanup: r.bool(n::DISABLE_LEAKED_ENI_CLEANUP, false),
        imds_only_mode: r.bool(n::ENABLE_IMDS_ONLY_MODE, false),
        subnet_discovery: r.bool(n::ENABLE_SUBNET_DISCOVERY, true),
        multi_nic: r.bool(n::ENABLE_MULTI_NIC, false),
        pod_eni: r.bool(n::ENABLE_POD_ENI, false),
        pod_sg_enforcing_mode: r
            .choice(
                n::POD_SECURITY_GROUP_ENFORCING_MODE,
                PodSgEnforcingMode::CHOICES,
            )
            .unwrap_or(PodSgEnforcingMode::Strict),
    }
}

fn networking(r: &mut Reader, family: Option<IpFamily>) -> Networking {
    // The MTU range depends on the family; when the family itself is invalid, check
    // against the IPv4 range (the wider one) so no spurious error is added.
    let range = mtu_range(family == Some(IpFamily::V6));
    let mtu = |r: &mut Reader, name: &'static str| {
        r.parse_with(name, |raw| {
            let v = parse_u32(raw)?;
            if range.contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "MTU out of range (must be {}–{} in {} mode)",
                    range.start(),
                    range.end(),
                    if family == Some(IpFamily::V6) {
                        "IPv6"
                    } else {
                        "IPv4"
                    }
                ))
            }
        })
    };
    let eni_mtu = mtu(r, n::AWS_VPC_ENI_MTU).unwrap_or(DEFAULT_MTU);
    let pod_mtu = mtu(r, n::POD_MTU).unwrap_or(eni_mtu);
    let veth_prefix = r
        .parse_with(n::AWS_VPC_K8S_CNI_VETHPREFIX, |raw| {
            validate_veth_prefix(raw).map(|()| raw.to_owned())
        })
        .unwrap_or_else(|| DEFAULT_VETH_PREFIX.to_owned());
    Networking {
        eni_mtu,
        pod_mtu,
        veth_prefix,
        external_snat: r.bool(n::AWS_VPC_K8S_CNI_EXTERNALSNAT, false),
        exclude_snat_cidrs: r
            .parse_with(n::AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS, parse_ipv4_cidr_list)
            .unwrap_or_default(),
        external_service_cidrs: r
            .parse_with(n::AWS_EXTERNAL_SERVICE_CIDRS, parse_ipv4_cidr_list)
            .unwrap_or_default(),
        randomize_snat: r
            .choice(n::AWS_VPC_K8S_CNI_RANDOMIZESNAT, RandomizeSnat::CHOICES)
            .unwrap_or(RandomizeSnat::Prng),
        connmark: r
            .parse_with(n::AWS_VPC_K8S_CNI_CONNMARK, parse_connmark)
            .unwrap_or(DEFAULT_CONNMARK),
        node_port_support: r.bool(n::AWS_VPC_CNI_NODE_PORT_SUPPORT, true),
        network_policy_mode: r.choice(n::NETWORK_POLICY_ENFORCING_MODE, NetworkPolicyMode::CHOICES),
        disable_tcp_early_demux: r.bool(n::DISABLE_TCP_EARLY_DEMUX, false),
    }
}

/// A plugin log destination: anything but stdout, which carries the CNI result.
fn plugin_log(r: &mut Reader, name: &'static str, default: &str) -> LogDestination {
    r.parse_with(name, |raw| match LogDestination::parse(raw) {
        LogDestination::Stdout => {
            Err("stdout is reserved for the CNI result; use stderr or a file path".to_owned())
        }
        other => Ok(other),
    })
    .unwrap_or_else(|| LogDestination::File(default.into()))
}

fn logging(r: &mut Reader) -> Logging {
    Logging {
        ipamd_log_file: r
            .get(n::AWS_VPC_K8S_CNI_LOG_FILE)
            .map(LogDestination::parse)
            .unwrap_or_else(|| LogDestination::File(DEFAULT_IPAMD_LOG_FILE.into())),
        ipamd_log_level: r
            .choice(n::AWS_VPC_K8S_CNI_LOGLEVEL, LogLevel::CHOICES)
            .unwrap_or(LogLevel::Debug),
        plugin_log_file: plugin_log(r, n::AWS_VPC_K8S_PLUGIN_LOG_FILE, DEFAULT_PLUGIN_LOG_FILE),
        plugin_log_level: r
            .choice(n::AWS_VPC_K8S_PLUGIN_LOG_LEVEL, LogLevel::CHOICES)
            .unwrap_or(LogLevel::Debug),
        egress_v4_plugin_log_file: plugin_log(
            r,
            n::AWS_VPC_K8S_EGRESS_V4_PLUGIN_LOG_FILE,
            DEFAULT_EGRESS_V4_PLUGIN_LOG_FILE,
        ),
        egress_v6_plugin_log_file: plugin_log(
            r,
            n::AWS_VPC_K8S_EGRESS_V6_PLUGIN_LOG_FILE,
            DEFAULT_EGRESS_V6_PLUGIN_LOG_FILE,
        ),
    }
}

fn aws_settings(r: &mut Reader) -> AwsSettings {
    AwsSettings {
        ec2_endpoint: r.parse_with(n::AWS_EC2_ENDPOINT, |raw| {
            let rest = raw
                .strip_prefix("https://")
                .or_else(|| raw.strip_prefix("http://"))
                .ok_or_else(|| "not a URL (expected https://host[:port][/path])".to_owned())?;
            if rest.is_empty() || rest.starts_with('/') || rest.chars().any(char::is_whitespace) {
                return Err("not a URL (expected https://host[:port][/path])".to_owned());
            }
            Ok(raw.to_owned())
        }),
        http_timeout: r
            .parse_with(n::HTTP_TIMEOUT, |raw| {
                let secs = parse_u32(raw)?;
                let d = Duration::from_secs(u64::from(secs));
                if d < MIN_HTTP_TIMEOUT {
                    Err(format!(
                        "must be at least {} seconds",
                        MIN_HTTP_TIMEOUT.as_secs()
                    ))
                } else {
                    Ok(d)
                }
            })
            .unwrap_or(MIN_HTTP_TIMEOUT),
        vpc_cni_version: r.string(n::VPC_CNI_VERSION, ""),
    }
}

/// Checks that involve more than one variable.
fn cross_checks(
    r: &mut Reader,
    family: Option<IpFamily>,
    pool: &PoolTargets,
    eni: &EniSettings,
    net: &Networking,
) {
    let pd_parsed = !r
        .errors
        .iter()
        .any(|e| e.variable == n::ENABLE_PREFIX_DELEGATION);
    if family == Some(IpFamily::V6) && pd_parsed && !pool.prefix_delegation {
        let pd = r.get(n::ENABLE_PREFIX_DELEGATION).map(str::to_owned);
        r.error(
            n::ENABLE_IPV6,
            format!(
                "IPv6 mode requires ENABLE_PREFIX_DELEGATION=true (it is {})",
                pd.map_or("unset".to_owned(), |v| format!("{v:?}"))
            ),
        );
    }
    if family == Some(IpFamily::V6) && eni.custom_networking {
        r.error(
            n::AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG,
            "custom networking is not supported in IPv6 mode (ENABLE_IPv6=true)",
        );
    }
    let target_names = [
        n::WARM_IP_TARGET,
        n::WARM_PREFIX_TARGET,
        n::MINIMUM_IP_TARGET,
    ];
    let targets_parsed = !r.errors.iter().any(|e| target_names.contains(&e.variable));
    if family == Some(IpFamily::V4)
        && pool.prefix_delegation
        && targets_parsed
        && pool.warm_ip_target == 0
        && pool.warm_prefix_target == 0
        && pool.minimum_ip_target == 0
    {
        r.error(
            n::WARM_PREFIX_TARGET,
            "with ENABLE_PREFIX_DELEGATION=true, at least one of WARM_PREFIX_TARGET, \
             WARM_IP_TARGET or MINIMUM_IP_TARGET must be greater than 0",
        );
    }
    if net.external_snat && !net.exclude_snat_cidrs.is_empty() {
        r.warnings.push(
            "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS has no effect while \
             AWS_VPC_K8S_CNI_EXTERNALSNAT=true"
                .to_owned(),
        );
    }
}
