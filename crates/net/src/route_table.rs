//! Policy-routing numbers: per-ENI route tables and rule priorities (upstream's
//! `CalculateRouteTableId` and `SetupHostNetwork` in `pkg/networkutils/network.go`).

/// The kernel's main routing table.
pub const MAIN_TABLE: u32 = 254;
/// The kernel's `local` table.
pub const LOCAL_TABLE: u32 = 255;
/// Base of route tables on network cards > 0 (amazon-ec2-net-utils numbering).
pub const MULTI_CARD_BASE: u32 = 10_000;

/// Rule priorities, as upstream installs them.
pub mod priority {
    /// Inside a multi-NIC pod's netns: `from <podIP> lookup <i>`.
    pub const POD_MULTI_NIC: u32 = 1;
    /// Branch-ENI pods, strict mode: `iif … lookup <vlan+100>`.
    pub const BRANCH_IIF: u32 = 10;
    /// `from all lookup local` moved here in strict SGP mode.
    pub const LOCAL_STRICT: u32 = 20;
    /// `to <podIP> lookup main`.
    pub const TO_POD: u32 = 512;
    /// `fwmark <mark>/<mark> lookup main` (main-ENI rule).
    pub const MAIN_ENI_FWMARK: u32 = 1024;
    /// `to <external service CIDR> lookup main`.
    pub const EXTERNAL_SERVICE: u32 = 1535;
    /// `from <podIP> lookup <ENI table>`.
    pub const FROM_POD: u32 = 1536;
    /// `from <ENI primary IP> lookup <ENI table>`.
    pub const ENI_PRIMARY: u32 = 32765;
}

/// The route table of the ENI at `device` on `card`: main for the primary ENI, `d + 1` on
/// card 0, `10000 + d + 100·c` on other cards.
pub fn route_table_id(card: u32, device: u32) -> u32 {
    match (card, device) {
        (0, 0) => MAIN_TABLE,
        (0, d) => d + 1,
        (c, d) => MULTI_CARD_BASE + d + 100 * c,
    }
}

/// Offset of a branch-ENI pod's route table from its VLAN id.
pub const BRANCH_TABLE_OFFSET: u32 = 100;

/// The route table of a branch-ENI pod on VLAN `vlan_id`: `vlan_id + 100` (upstream
/// `SetupBranchENIPodNetwork`).
pub fn branch_table(vlan_id: u32) -> u32 {
    vlan_id.saturating_add(BRANCH_TABLE_OFFSET)
}

/// Upstream's legacy numbering for cards > 0 (`d + 1 + c·maxENIsPerCard`), recognised when
/// migrating existing rules.
pub fn legacy_route_table_id(card: u32, device: u32, max_enis_per_card: u32) -> u32 {
    device + 1 + card * max_enis_per_card
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_numbering() {
        assert_eq!(route_table_id(0, 0), 254);
        assert_eq!(route_table_id(0, 1), 2);
        assert_eq!(route_table_id(0, 14), 15);
        assert_eq!(route_table_id(1, 0), 10_100);
        assert_eq!(route_table_id(3, 2), 10_302);
        assert_eq!(legacy_route_table_id(1, 0, 4), 5);
        assert_eq!(legacy_route_table_id(0, 3, 4), 4);
        assert_eq!(branch_table(1), 101);
        assert_eq!(branch_table(4094), 4194);
    }
}
