//! The embedded instance-limits table: row types, the TSV parser and the lookups.

use std::fmt;
use std::sync::OnceLock;

/// The generated table, embedded verbatim (see `scripts/gen-limits.py`).
pub const TABLE_TSV: &str = include_str!("../data/instance-limits.tsv");

/// The column header line every table must carry (after its `#` comments).
const HEADER: &str = "type\teni_limit_default_card\tipv4_per_eni\tdefault_card_index\tcards\thypervisor\tbare_metal\tvcpus\tsource\ttrunking\tbranch_enis";

/// Hypervisor of an instance type, as DescribeInstanceTypes reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hypervisor {
    /// AWS Nitro.
    Nitro,
    /// Xen (previous generations).
    Xen,
    /// Not reported (bare-metal types have no hypervisor).
    Unknown,
}

impl Hypervisor {
    /// The lower-case name used in the table and by EC2.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nitro => "nitro",
            Self::Xen => "xen",
            Self::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "nitro" => Some(Self::Nitro),
            "xen" => Some(Self::Xen),
            "unknown" => Some(Self::Unknown),
            _ => None,
        }
    }
}

impl fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a row's facts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// moto's DescribeInstanceTypes snapshot (has vCPUs).
    Moto,
    /// Upstream's generated `vpc_ip_resource_limit.go` (no vCPUs).
    Upstream,
}

/// One network card of an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkCard {
    /// `NetworkCardIndex`.
    pub index: u32,
    /// `MaximumNetworkInterfaces` on this card.
    pub max_enis: u32,
}

/// Networking limits of one EC2 instance type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLimits {
    /// The instance type, e.g. `m5.large`.
    pub instance_type: String,
    /// Maximum ENIs on the default network card (upstream's `ENILimit`).
    pub eni_limit: u32,
    /// IPv4 addresses per ENI, primary included (upstream's `IPv4Limit`).
    pub ipv4_per_eni: u32,
    /// `DefaultNetworkCardIndex`.
    pub default_card_index: u32,
    /// Every network card, sorted by index; empty when the source listed none.
    pub network_cards: Vec<NetworkCard>,
    /// Hypervisor.
    pub hypervisor: Hypervisor,
    /// Whether the type is bare metal.
    pub bare_metal: bool,
    /// Default vCPUs, when a source knows them.
    pub vcpus: Option<u32>,
    /// Which source the row came from.
    pub source: Source,
    /// Whether the type supports a trunk ENI (security groups for pods), per the VPC
    /// Resource Controller's limits table; `None` when that table has no entry.
    pub trunking_compatible: Option<bool>,
    /// Maximum branch ENIs (the controller's `BranchInterface`); `None` when unknown.
    pub branch_enis: Option<u32>,
}

impl InstanceLimits {
    /// Trunking compatibility as ipamd decides it: types the table does not know are
    /// treated as compatible (the VPC Resource Controller has the final word).
    pub fn is_trunking_compatible(&self) -> bool {
        self.trunking_compatible.unwrap_or(true)
    }

    /// Prefix delegation support as ipamd decides it: Nitro hypervisor or bare metal.
    pub fn supports_prefix_delegation(&self) -> bool {
        self.hypervisor == Hypervisor::Nitro || self.bare_metal
    }

    /// The network cards, or (when none are listed) just the default card with
    /// [`eni_limit`](Self::eni_limit) interfaces.
    pub fn cards_or_default(&self) -> Vec<NetworkCard> {
        if self.network_cards.is_empty() {
            vec![NetworkCard {
                index: self.default_card_index,
                max_enis: self.eni_limit,
            }]
        } else {
            self.network_cards.clone()
        }
    }

    /// Upstream's `eni-max-pods.txt` value: `ENIs × (IPv4 per ENI − 1) + 2`.
    pub fn eni_max_pods(&self) -> u32 {
        self.eni_limit
            .saturating_mul(self.ipv4_per_eni.saturating_sub(1))
            .saturating_add(2)
    }
}

/// A parse or validation failure of an instance-limits table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The column header line is missing or different.
    #[error("instance-limits table: missing or unexpected column header (want {HEADER:?})")]
    Header,
    /// A data line is malformed or fails a sanity check.
    #[error("instance-limits table line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The same instance type appears twice.
    #[error("instance-limits table line {line}: duplicate instance type {instance_type}")]
    Duplicate {
        /// 1-based line number of the second occurrence.
        line: usize,
        /// The repeated type.
        instance_type: String,
    },
}

/// A parsed table, sorted by instance type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    rows: Vec<InstanceLimits>,
}

impl Table {
    /// Limits for `instance_type` (exact match).
    pub fn get(&self, instance_type: &str) -> Option<&InstanceLimits> {
        self.rows
            .binary_search_by(|r| r.instance_type.as_str().cmp(instance_type))
            .ok()
            .and_then(|i| self.rows.get(i))
    }

    /// Every row, sorted by instance type.
    pub fn iter(&self) -> std::slice::Iter<'_, InstanceLimits> {
        self.rows.iter()
    }

    /// Number of instance types.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

fn line_err(line: usize, reason: impl Into<String>) -> TableError {
    TableError::Line {
        line,
        reason: reason.into(),
    }
}

fn parse_u32(line: usize, column: &str, value: &str) -> Result<u32, TableError> {
    value
        .parse::<u32>()
        .map_err(|_| line_err(line, format!("{column}: not a number: {value:?}")))
}

fn parse_cards(line: usize, value: &str) -> Result<Vec<NetworkCard>, TableError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let mut cards = value
        .split(',')
        .map(|item| {
            let (index, max) = item.split_once(':').ok_or_else(|| {
                line_err(line, format!("cards: expected index:max, got {item:?}"))
            })?;
            Ok(NetworkCard {
                index: parse_u32(line, "cards index", index)?,
                max_enis: parse_u32(line, "cards max", max)?,
            })
        })
        .collect::<Result<Vec<_>, TableError>>()?;
    cards.sort_by_key(|c| c.index);
    Ok(cards)
}

fn parse_row(line: usize, text: &str) -> Result<InstanceLimits, TableError> {
    let fields: Vec<&str> = text.split('\t').collect();
    let [
        name,
        eni,
        ips,
        default_card,
        cards,
        hypervisor,
        bare_metal,
        vcpus,
        source,
        trunking,
        branch_enis,
    ] = fields.as_slice()
    else {
        return Err(line_err(
            line,
            format!("expected 11 tab-separated fields, got {}", fields.len()),
        ));
    };
    if name.is_empty() {
        return Err(line_err(line, "empty instance type"));
    }
    let row = InstanceLimits {
        instance_type: (*name).to_string(),
        eni_limit: parse_u32(line, "eni_limit_default_card", eni)?,
        ipv4_per_eni: parse_u32(line, "ipv4_per_eni", ips)?,
        default_card_index: parse_u32(line, "default_card_index", default_card)?,
        network_cards: parse_cards(line, cards)?,
        hypervisor: Hypervisor::parse(hypervisor)
            .ok_or_else(|| line_err(line, format!("hypervisor: unknown value {hypervisor:?}")))?,
        bare_metal: match *bare_metal {
            "true" => true,
            "false" => false,
            other => return Err(line_err(line, format!("bare_metal: {other:?}"))),
        },
        vcpus: if vcpus.is_empty() {
            None
        } else {
            Some(parse_u32(line, "vcpus", vcpus)?)
        },
        source: match *source {
            "moto" => Source::Moto,
            "upstream" => Source::Upstream,
            other => return Err(line_err(line, format!("source: {other:?}"))),
        },
        trunking_compatible: match *trunking {
            "" => None,
            "true" => Some(true),
            "false" => Some(false),
            other => return Err(line_err(line, format!("trunking: {other:?}"))),
        },
        branch_enis: if branch_enis.is_empty() {
            None
        } else {
            Some(parse_u32(line, "branch_enis", branch_enis)?)
        },
    };
    check_row(line, &row)?;
    Ok(row)
}

fn check_row(line: usize, row: &InstanceLimits) -> Result<(), TableError> {
    if row.eni_limit == 0 {
        return Err(line_err(line, "eni_limit_default_card must be at least 1"));
    }
    if row.ipv4_per_eni == 0 {
        return Err(line_err(line, "ipv4_per_eni must be at least 1"));
    }
    match (row.trunking_compatible, row.branch_enis) {
        (None, None) | (Some(true), Some(_)) | (Some(false), Some(0)) => {}
        (Some(false), Some(_)) => {
            return Err(line_err(
                line,
                "branch_enis must be 0 when trunking is false",
            ));
        }
        _ => {
            return Err(line_err(
                line,
                "trunking and branch_enis must both be set or both be empty",
            ));
        }
    }
    if !row.network_cards.is_empty() {
        match row
            .network_cards
            .iter()
            .find(|c| c.index == row.default_card_index)
        {
            None => return Err(line_err(line, "default card is not among the cards")),
            Some(card) if card.max_enis != row.eni_limit => {
                return Err(line_err(
                    line,
                    "eni_limit_default_card differs from the default card's max",
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Parses a table in the `instance-limits.tsv` format (comments, header, rows).
pub fn parse_table(text: &str) -> Result<Table, TableError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header == HEADER => {}
        _ => return Err(TableError::Header),
    }
    let mut rows = lines
        .map(|(line, text)| parse_row(line, text).map(|row| (line, row)))
        .collect::<Result<Vec<_>, TableError>>()?;
    rows.sort_by(|a, b| a.1.instance_type.cmp(&b.1.instance_type));
    if let Some(pair) = rows
        .windows(2)
        .find(|w| w[0].1.instance_type == w[1].1.instance_type)
    {
        return Err(TableError::Duplicate {
            line: pair[0].0.max(pair[1].0),
            instance_type: pair[1].1.instance_type.clone(),
        });
    }
    Ok(Table {
        rows: rows.into_iter().map(|(_, row)| row).collect(),
    })
}

/// The embedded table, parsed on first use.
pub fn table() -> Result<&'static Table, TableError> {
    static TABLE: OnceLock<Result<Table, TableError>> = OnceLock::new();
    TABLE
        .get_or_init(|| parse_table(TABLE_TSV))
        .as_ref()
        .map_err(Clone::clone)
}

/// Limits for `instance_type`, or an error if the embedded table does not parse.
pub fn try_lookup(instance_type: &str) -> Result<Option<&'static InstanceLimits>, TableError> {
    Ok(table()?.get(instance_type))
}

/// Limits for `instance_type`; `None` when unknown (or when the embedded table is broken,
/// which a unit test rules out).
pub fn lookup(instance_type: &str) -> Option<&'static InstanceLimits> {
    table().ok()?.get(instance_type)
}

/// Every instance type in the embedded table, sorted by name.
pub fn all() -> impl Iterator<Item = &'static InstanceLimits> {
    table().ok().into_iter().flat_map(Table::iter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(rows: &[&str]) -> String {
        let mut text = format!("# comment\n{HEADER}\n");
        for r in rows {
            text.push_str(r);
            text.push('\n');
        }
        text
    }

    #[test]
    fn embedded_table_parses() {
        let t = parse_table(TABLE_TSV).expect("embedded table must parse");
        assert!(t.len() >= 1290, "only {} types", t.len());
        assert_eq!(table().map(Table::len), Ok(t.len()));
    }

    #[test]
    fn parses_a_multi_card_row() {
        let t = parse_table(&doc(&[
            "x.big\t2\t50\t0\t1:2,0:2\tnitro\tfalse\t\tupstream\t\t",
        ]))
        .expect("parses");
        let r = t.get("x.big").expect("present");
        assert_eq!(r.network_cards.len(), 2);
        assert_eq!(
            r.network_cards[0],
            NetworkCard {
                index: 0,
                max_enis: 2
            }
        );
        assert_eq!(r.vcpus, None);
        assert_eq!(r.source, Source::Upstream);
        assert_eq!(r.eni_max_pods(), 100);
    }

    #[test]
    fn rejects_bad_rows() {
        let cases = [
            ("x.a\t0\t10\t0\t\tnitro\tfalse\t2\tmoto\t\t", "at least 1"),
            ("x.a\t3\t0\t0\t\tnitro\tfalse\t2\tmoto\t\t", "at least 1"),
            (
                "x.a\t3\t10\t1\t0:3\tnitro\tfalse\t2\tmoto\t\t",
                "default card",
            ),
            ("x.a\t3\t10\t0\t0:4\tnitro\tfalse\t2\tmoto\t\t", "differs"),
            ("x.a\t3\t10\t0\t0:3\tkvm\tfalse\t2\tmoto\t\t", "hypervisor"),
            (
                "x.a\tthree\t10\t0\t0:3\tnitro\tfalse\t2\tmoto\t\t",
                "not a number",
            ),
            (
                "x.a\t3\t10\t0\t0:3\tnitro\tfalse\t2\tmoto",
                "11 tab-separated",
            ),
            (
                "x.a\t3\t10\t0\t0:3\tnitro\tfalse\t2\tmoto\tyes\t9",
                "trunking",
            ),
            (
                "x.a\t3\t10\t0\t0:3\tnitro\tfalse\t2\tmoto\ttrue\tnine",
                "branch_enis: not a number",
            ),
            (
                "x.a\t3\t10\t0\t0:3\tnitro\tfalse\t2\tmoto\tfalse\t4",
                "must be 0",
            ),
            (
                "x.a\t3\t10\t0\t0:3\tnitro\tfalse\t2\tmoto\ttrue\t",
                "both be set",
            ),
            (
                "x.a\t3\t10\t0\t0:3\tnitro\tfalse\t2\tmoto\t\t9",
                "both be set",
            ),
        ];
        for (row, want) in cases {
            let err = parse_table(&doc(&[row])).expect_err(row);
            assert!(err.to_string().contains(want), "{row}: {err}");
            assert!(matches!(err, TableError::Line { line: 3, .. }), "{err:?}");
        }
    }

    #[test]
    fn rejects_missing_header_and_duplicates() {
        assert_eq!(parse_table("# only comments\n"), Err(TableError::Header));
        let row = "x.a\t3\t10\t0\t0:3\tnitro\tfalse\t2\tmoto\ttrue\t9";
        let err = parse_table(&doc(&[row, row])).expect_err("duplicate");
        assert!(
            matches!(err, TableError::Duplicate { line: 4, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn cards_or_default_fills_in_the_default_card() {
        let t = parse_table(&doc(&["x.m\t15\t50\t0\t\tunknown\ttrue\t\tupstream\t\t"]))
            .expect("parses");
        let r = t.get("x.m").expect("present");
        assert_eq!(
            r.cards_or_default(),
            vec![NetworkCard {
                index: 0,
                max_enis: 15
            }]
        );
        assert!(
            r.supports_prefix_delegation(),
            "bare metal supports PD in ipamd"
        );
    }

    #[test]
    fn parses_the_branch_eni_columns() {
        let t = parse_table(&doc(&[
            "x.trunk\t3\t10\t0\t0:3\tnitro\tfalse\t2\tmoto\ttrue\t9",
            "x.plain\t2\t2\t0\t0:2\tnitro\tfalse\t2\tmoto\tfalse\t0",
            "x.new\t2\t4\t0\t0:2\tnitro\tfalse\t1\tmoto\t\t",
        ]))
        .expect("parses");

        let trunk = t.get("x.trunk").expect("present");
        assert_eq!(
            (trunk.trunking_compatible, trunk.branch_enis),
            (Some(true), Some(9))
        );
        assert!(trunk.is_trunking_compatible());

        let plain = t.get("x.plain").expect("present");
        assert_eq!(
            (plain.trunking_compatible, plain.branch_enis),
            (Some(false), Some(0))
        );
        assert!(!plain.is_trunking_compatible());

        let new = t.get("x.new").expect("present");
        assert_eq!((new.trunking_compatible, new.branch_enis), (None, None));
        assert!(
            new.is_trunking_compatible(),
            "unknown types are trunking-compatible, as in ipamd"
        );
    }
}
