//! The nftables connmark backend (upstream's `nftConnmark`,
//! `pkg/networkutils/nftables_connmark.go`; docs/metrics.md): the table
//!
//! ```text
//! table ip aws-cni {
//!     chain nat-prerouting {
//!         type nat hook prerouting priority -90; policy accept;  # dstnat + 10: after kube-proxy's DNAT
//!         fib daddr type local return
//!         iifname "eni*" counter jump snat-mark
//!         ct mark & 0x80 == 0x0 counter meta mark set meta mark & 0xffffff7f   # per bit of the mark:
//!         ct mark & 0x80 == 0x80 counter meta mark set meta mark | 0x80        # a masked restore
//!     }
//!     chain snat-mark {
//!         counter ip daddr <exempt CIDR> return                 # one per VPC / excluded CIDR
//!         counter ct mark set ct mark | 0x80
//!     }
//! }
//! ```
//!
//! as a desired state ([`NftConnmark`]), what `nft -j list table ip aws-cni` shows of it
//! ([`parse_table`], rules recognised by shape as upstream's `isJumpRule` & co. do), and the
//! one `nft -f` batch that takes the kernel there ([`setup_batch`]). Upstream edits the
//! table rule by rule over netlink; here a change rewrites the whole table in one atomic
//! transaction (`add table`, `delete table`, then everything), so no packet ever sees a
//! half-built table and nothing left over survives. A converged table gets no batch at all.
//! The rules are the ones upstream's netlink calls build, so either agent recognises the
//! other's table, with one deliberate difference: upstream v1.23's restore rule, `counter
//! meta mark set ct mark & 0x80`, overwrites the whole packet mark, clearing bits other
//! components own (kube-proxy's 0x4000 masquerade bit, set at dstnat just before this
//! chain; Calico eBPF's 0x01000000: upstream issue #3872). Here the restore keeps them, as
//! iptables' `CONNMARK --restore-mark --nfmask M --ctmask M` does, with the two rules per
//! mark bit of upstream's fix (pull request #3875). A table with upstream's rule is
//! recognised ([`NftRule::ClobberingRestore`]) and rewritten.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::Value;

/// `aws-cni`, in family `ip`.
pub const TABLE: &str = "aws-cni";
/// The base chain.
pub const BASE_CHAIN: &str = "nat-prerouting";
/// The marking chain.
pub const MARK_CHAIN: &str = "snat-mark";
/// The base chain's priority: `dstnat` (-100) + 10.
pub const BASE_PRIORITY: i64 = -90;

/// Why a connmark table cannot be rendered or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NftError {
    /// Upstream's Setup refuses an empty exempt list (it would mark VPC traffic too).
    #[error("connmark: the exempt CIDR list cannot be empty")]
    NoExemptCidrs,
    /// The veth prefix cannot be written as an nft interface-name match.
    #[error("connmark: veth prefix {0:?} is not usable in an nft iifname match")]
    BadPrefix(String),
    /// `nft -j` printed something else than its JSON schema.
    #[error("unreadable nft JSON: {0}")]
    Json(String),
}

/// The desired connmark table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftConnmark {
    /// `AWS_VPC_K8S_CNI_VETHPREFIX` (`eni`).
    pub veth_prefix: String,
    /// `AWS_VPC_K8S_CNI_CONNMARK` (`0x80`).
    pub mark: u32,
    /// VPC CIDRs then excluded CIDRs: network addresses, duplicates dropped, order kept.
    pub exempt: Vec<Ipv4Net>,
}

/// One rule of the table, recognised by its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NftRule {
    /// `fib daddr type local return`.
    FibLocalReturn,
    /// `iifname "<match>" counter jump <target>`.
    Jump { iifname: String, target: String },
    /// One bit of the masked restore: `ct mark & <bit> == 0x0 counter meta mark set meta
    /// mark & ~<bit>` (`set: false`) or `ct mark & <bit> == <bit> counter meta mark set meta
    /// mark | <bit>` (`set: true`).
    RestoreBit { bit: u32, set: bool },
    /// Upstream v1.23's `counter meta mark set ct mark & <mark>` (replaced: it clears every
    /// other bit of the packet mark).
    ClobberingRestore(u32),
    /// `counter ip daddr <cidr> return`.
    ExemptReturn(Ipv4Net),
    /// `counter ct mark set ct mark | <mark>`.
    SetMark(u32),
    /// Anything else (its JSON).
    Other(String),
}

impl NftRule {
    /// The rule as `nft` syntax (`None` for [`NftRule::Other`]).
    pub fn render(&self) -> Option<String> {
        Some(match self {
            NftRule::FibLocalReturn => "fib daddr type local return".to_owned(),
            NftRule::Jump { iifname, target } => {
                format!("iifname \"{iifname}\" counter jump {target}")
            }
            NftRule::RestoreBit { bit, set: false } => format!(
                "ct mark & {bit:#x} == 0x0 counter meta mark set meta mark & {:#x}",
                !bit
            ),
            NftRule::RestoreBit { bit, set: true } => {
                format!("ct mark & {bit:#x} == {bit:#x} counter meta mark set meta mark | {bit:#x}")
            }
            NftRule::ClobberingRestore(m) => format!("counter meta mark set ct mark & {m:#x}"),
            NftRule::ExemptReturn(cidr) => format!("counter ip daddr {cidr} return"),
            NftRule::SetMark(m) => format!("counter ct mark set ct mark | {m:#x}"),
            NftRule::Other(_) => return None,
        })
    }
}

/// A base chain's `type`, `hook`, `priority` and `policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub kind: String,
    pub hook: String,
    pub prio: i64,
    pub policy: String,
}

impl BaseChain {
    /// `type nat hook prerouting priority -90; policy accept;`.
    pub fn wanted() -> Self {
        BaseChain {
            kind: "nat".into(),
            hook: "prerouting".into(),
            prio: BASE_PRIORITY,
            policy: "accept".into(),
        }
    }
}

/// What the kernel holds in table `ip aws-cni`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// Chain name → its base-chain settings (`None`: a regular chain).
    pub chains: BTreeMap<String, Option<BaseChain>>,
    /// Chain name → its rules in kernel order.
    pub rules: BTreeMap<String, Vec<NftRule>>,
    /// Sets, maps, flowtables and other objects (we make none).
    pub other_objects: usize,
}

impl NftConnmark {
    /// The desired table for `exempt` (VPC CIDRs, then excluded CIDRs).
    pub fn new(
        veth_prefix: &str,
        mark: u32,
        exempt: impl IntoIterator<Item = Ipv4Net>,
    ) -> Result<Self, NftError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if veth_prefix.is_empty() || !veth_prefix.chars().all(ok) {
            return Err(NftError::BadPrefix(veth_prefix.to_owned()));
        }
        let mut seen = BTreeSet::new();
        let exempt: Vec<Ipv4Net> = exempt
            .into_iter()
            .map(|c| c.trunc())
            .filter(|c| seen.insert(*c))
            .collect();
        if exempt.is_empty() {
            return Err(NftError::NoExemptCidrs);
        }
        Ok(NftConnmark {
            veth_prefix: veth_prefix.to_owned(),
            mark,
            exempt,
        })
    }

    /// The base chain's rules, in order (upstream's `ensureBaseChainRules`, with the masked
    /// restore: two rules per bit of the mark, lowest bit first).
    pub fn base_rules(&self) -> Vec<NftRule> {
        let mut rules = vec![
            NftRule::FibLocalReturn,
            NftRule::Jump {
                iifname: format!("{}*", self.veth_prefix),
                target: MARK_CHAIN.to_owned(),
            },
        ];
        for bit in (0..32).map(|i| 1u32 << i).filter(|b| self.mark & b != 0) {
            rules.push(NftRule::RestoreBit { bit, set: false });
            rules.push(NftRule::RestoreBit { bit, set: true });
        }
        rules
    }

    /// The marking chain's rules: one `return` per exempt CIDR, then the set-mark rule.
    pub fn mark_rules(&self) -> Vec<NftRule> {
        let mut rules: Vec<NftRule> = self
            .exempt
            .iter()
            .map(|c| NftRule::ExemptReturn(*c))
            .collect();
        rules.push(NftRule::SetMark(self.mark));
        rules
    }

    /// Whether `state` is this table: the base chain's settings and its rules in order, the marking chain with exactly the exempt CIDRs (in any order: they are all
    /// `return`s) before the set-mark rule, and nothing else.
    pub fn is_converged(&self, state: &TableState) -> bool {
        let chains_ok = state.chains.len() == 2
            && state.chains.get(BASE_CHAIN) == Some(&Some(BaseChain::wanted()))
            && state.chains.get(MARK_CHAIN) == Some(&None);
        let no_rules = Vec::new();
        let base = state.rules.get(BASE_CHAIN).unwrap_or(&no_rules);
        let mark = state.rules.get(MARK_CHAIN).unwrap_or(&no_rules);
        let Some((last, cidr_rules)) = mark.split_last() else {
            return false;
        };
        let mut have = BTreeSet::new();
        let cidrs_ok = cidr_rules.iter().all(|r| match r {
            NftRule::ExemptReturn(c) => have.insert(*c),
            _ => false,
        }) && have == self.exempt.iter().copied().collect::<BTreeSet<_>>();
        chains_ok
            && state.other_objects == 0
            && *base == self.base_rules()
            && *last == NftRule::SetMark(self.mark)
            && cidrs_ok
    }

    /// The whole table as one `nft -f` transaction: the table is made (so that the delete
    /// cannot fail), deleted with whatever it held, and built again.
    pub fn render(&self) -> String {
        let mut out = format!(
            "add table ip {TABLE}\ndelete table ip {TABLE}\nadd table ip {TABLE}\n\
             add chain ip {TABLE} {BASE_CHAIN} {{ type nat hook prerouting priority {BASE_PRIORITY}; policy accept; }}\n\
             add chain ip {TABLE} {MARK_CHAIN}\n"
        );
        let rules = self
            .base_rules()
            .into_iter()
            .map(|r| (BASE_CHAIN, r))
            .chain(self.mark_rules().into_iter().map(|r| (MARK_CHAIN, r)));
        for (chain, rule) in rules {
            if let Some(text) = rule.render() {
                out.push_str(&format!("add rule ip {TABLE} {chain} {text}\n"));
            }
        }
        out
    }
}

/// The batch that takes `current` (`None`: no table) to `want`, or `None` when converged.
pub fn setup_batch(current: Option<&TableState>, want: &NftConnmark) -> Option<String> {
    match current {
        Some(state) if want.is_converged(state) => None,
        _ => Some(want.render()),
    }
}

/// The batch that removes the table (upstream's Cleanup: `nft delete table ip aws-cni`).
pub fn delete_batch() -> String {
    format!("delete table ip {TABLE}\n")
}

/// The `nftables` array of `nft -j` output.
fn items(json: &str) -> Result<Vec<Value>, NftError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: Value = serde_json::from_str(json).map_err(|e| NftError::Json(e.to_string()))?;
    match v.get("nftables") {
        Some(Value::Array(a)) => Ok(a.clone()),
        _ => Err(NftError::Json("no \"nftables\" array".into())),
    }
}

/// Whether `nft -j list tables` output lists table `family name`.
pub fn lists_table(json: &str, family: &str, name: &str) -> Result<bool, NftError> {
    Ok(items(json)?.iter().filter_map(|i| i.get("table")).any(|t| {
        t.get("family").and_then(Value::as_str) == Some(family)
            && t.get("name").and_then(Value::as_str) == Some(name)
    }))
}

/// `nft -j list table ip aws-cni` output as a [`TableState`].
pub fn parse_table(json: &str) -> Result<TableState, NftError> {
    let mut state = TableState::default();
    for item in items(json)? {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        match kind.as_str() {
            "metainfo" | "table" => {}
            "chain" => {
                let name =
                    text("name").ok_or_else(|| NftError::Json("chain without name".into()))?;
                let base = match (text("type"), text("hook")) {
                    (Some(kind), Some(hook)) => Some(BaseChain {
                        kind,
                        hook,
                        prio: body.get("prio").and_then(Value::as_i64).unwrap_or(i64::MIN),
                        policy: text("policy").unwrap_or_default(),
                    }),
                    _ => None,
                };
                state.chains.insert(name, base);
            }
            "rule" => {
                let chain =
                    text("chain").ok_or_else(|| NftError::Json("rule without chain".into()))?;
                let exprs = body
                    .get("expr")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                state.rules.entry(chain).or_default().push(classify(&exprs));
            }
            _ => state.other_objects += 1,
        }
    }
    Ok(state)
}

/// `{"match": {"op": "==", "left": <left>, "right": <right>}}` → (left, right).
fn eq_match(e: &Value) -> Option<(&Value, &Value)> {
    let m = e.get("match")?;
    if m.get("op").and_then(Value::as_str) != Some("==") {
        return None;
    }
    Some((m.get("left")?, m.get("right")?))
}

/// `{<obj>: {"key": "mark"}}` (`obj` is `ct` or `meta`) → `obj`.
fn mark_of(v: &Value) -> Option<&str> {
    let (obj, key) = v.as_object()?.iter().next()?;
    (key.get("key").and_then(Value::as_str) == Some("mark")).then_some(obj.as_str())
}

/// `{<op>: [<mark>, N]}` → (op, obj of the mark, N).
fn mark_op(v: &Value) -> Option<(&str, &str, u32)> {
    let (op, args) = v.as_object()?.iter().next()?;
    let args = args.as_array()?;
    let n = u32::try_from(args.get(1)?.as_u64()?).ok()?;
    (args.len() == 2).then_some((op.as_str(), mark_of(args.first()?)?, n))
}

/// `{"mangle": {"key": <mark>, "value": <mark op>}}` → (target obj, op, source obj, N).
fn mark_mangle(e: &Value) -> Option<(&str, &str, &str, u32)> {
    let m = e.get("mangle")?;
    let target = mark_of(m.get("key")?)?;
    let (op, source, n) = mark_op(m.get("value")?)?;
    Some((target, op, source, n))
}

/// `ct mark & B == R` then a packet-mark change: one bit of the masked restore.
fn restore_bit(m: &Value, g: &Value) -> Option<NftRule> {
    let (left, right) = eq_match(m)?;
    let ("&", "ct", bit) = mark_op(left)? else {
        return None;
    };
    let r = u32::try_from(right.as_u64()?).ok()?;
    if !bit.is_power_of_two() {
        return None;
    }
    match mark_mangle(g)? {
        ("meta", "&", "meta", n) if r == 0 && n == !bit => {
            Some(NftRule::RestoreBit { bit, set: false })
        }
        ("meta", "|", "meta", n) if r == bit && n == bit => {
            Some(NftRule::RestoreBit { bit, set: true })
        }
        _ => None,
    }
}

/// `ip daddr` compared with an address or a prefix.
fn daddr_match(e: &Value) -> Option<Ipv4Net> {
    let (left, right) = eq_match(e)?;
    let p = left.get("payload")?;
    if p.get("protocol").and_then(Value::as_str) != Some("ip")
        || p.get("field").and_then(Value::as_str) != Some("daddr")
    {
        return None;
    }
    if let Some(addr) = right.as_str() {
        return Ipv4Net::new(addr.parse::<Ipv4Addr>().ok()?, 32).ok();
    }
    let prefix = right.get("prefix")?;
    let addr: Ipv4Addr = prefix.get("addr")?.as_str()?.parse().ok()?;
    let len = u8::try_from(prefix.get("len")?.as_u64()?).ok()?;
    Ipv4Net::new(addr, len).ok()
}

/// Recognises one rule by its statements, counters set aside (upstream's
/// `isFibLocalReturnRule`, `isJumpRule`, `isRestoreRule`, `extractCIDRFromRule`,
/// `isSetMarkRule`).
pub fn classify(exprs: &[Value]) -> NftRule {
    let counted = exprs.iter().any(|e| e.get("counter").is_some());
    let rest: Vec<&Value> = exprs
        .iter()
        .filter(|e| e.get("counter").is_none())
        .collect();
    let is_return = |e: &Value| e.get("return").is_some();
    let other = || NftRule::Other(Value::Array(exprs.to_vec()).to_string());
    match rest.as_slice() {
        [m, r] if is_return(r) => {
            if let Some((left, right)) = eq_match(m)
                && let Some(fib) = left.get("fib")
                && fib.get("result").and_then(Value::as_str) == Some("type")
                && fib.get("flags") == Some(&Value::Array(vec!["daddr".into()]))
                && right.as_str() == Some("local")
            {
                return NftRule::FibLocalReturn;
            }
            match daddr_match(m) {
                Some(cidr) if counted => NftRule::ExemptReturn(cidr),
                _ => other(),
            }
        }
        [m, g] if counted && g.get("mangle").is_some() => restore_bit(m, g).unwrap_or_else(other),
        [m, j] if counted => {
            let target = j
                .get("jump")
                .and_then(|j| j.get("target"))
                .and_then(Value::as_str);
            match (eq_match(m), target) {
                (Some((left, Value::String(name))), Some(target))
                    if left
                        .get("meta")
                        .and_then(|m| m.get("key"))
                        .and_then(Value::as_str)
                        == Some("iifname") =>
                {
                    NftRule::Jump {
                        iifname: name.clone(),
                        target: target.to_owned(),
                    }
                }
                _ => other(),
            }
        }
        [m] if counted => match mark_mangle(m) {
            Some(("meta", "&", "ct", n)) => NftRule::ClobberingRestore(n),
            Some(("ct", "|", "ct", n)) => NftRule::SetMark(n),
            _ => other(),
        },
        _ => other(),
    }
}

#[cfg(test)]
#[path = "nft_connmark_tests.rs"]
mod tests;
