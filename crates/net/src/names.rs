//! Link names compatible with upstream (and Calico): the host-side veth is the prefix plus
//! the first 11 hex digits of SHA-1 of `"<namespace>.<pod>"` (`".<i>"` appended for the
//! i-th extra interface of a multi-NIC pod).

/// Linux interface names are at most 15 bytes.
pub const MAX_IFNAME_LEN: usize = 15;

/// The 11-hex-digit suffix of a pod's host-side links.
pub fn pod_hash(namespace: &str, pod: &str, index: u32) -> String {
    let key = if index == 0 {
        format!("{namespace}.{pod}")
    } else {
        format!("{namespace}.{pod}.{index}")
    };
    let digest = sha1_smol::Sha1::from(key.as_bytes()).digest().to_string();
    digest[..11].to_string()
}

/// Host-side veth name: `<prefix><hash>`.
pub fn host_veth_name(prefix: &str, namespace: &str, pod: &str, index: u32) -> String {
    format!("{prefix}{}", pod_hash(namespace, pod, index))
}

/// Container-side interface name: `CNI_IFNAME` for the first, `mNicIf<i>` after.
pub fn container_if_name(cni_ifname: &str, index: u32) -> String {
    if index == 0 {
        cni_ifname.to_string()
    } else {
        format!("mNicIf{index}")
    }
}

/// The "dummy" interface recorded in CNI results (never created): `dummy<hash>`.
pub fn dummy_if_name(namespace: &str, pod: &str) -> String {
    format!("dummy{}", pod_hash(namespace, pod, 0))
}

/// The VLAN link of a branch-ENI pod: `vlan.eth.<id>`.
pub fn vlan_link_name(vlan_id: u32) -> String {
    format!("vlan.eth.{vlan_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_vectors() {
        assert_eq!(
            host_veth_name("eni", "kube-system", "coredns-57ff979f67-qqbdh", 0),
            "enib5faff8a083"
        );
        assert_eq!(
            host_veth_name("vlan", "kube-system", "coredns-57ff979f67-qqbdh", 0),
            "vlanb5faff8a083"
        );
        assert_eq!(
            pod_hash("kube-system", "coredns-57ff979f67-8ns9b", 0),
            "9571956a6cc"
        );
        assert_eq!(pod_hash("default", "sample-pod", 0), "cc21c2d7785");
        assert_eq!(pod_hash("", "", 0), "3a52ce78095");
        assert_eq!(pod_hash("", "", 1), "ce799470a46");
        assert_eq!(dummy_if_name("default", "sample-pod"), "dummycc21c2d7785");
        assert_eq!(container_if_name("eth0", 0), "eth0");
        assert_eq!(container_if_name("eth0", 1), "mNicIf1");
        assert_eq!(vlan_link_name(1), "vlan.eth.1");
        assert!(host_veth_name("eni", "ns", "p", 0).len() <= MAX_IFNAME_LEN);
    }
}
