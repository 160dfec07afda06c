//! Parsers for the primitive value syntaxes upstream uses. Each returns the parsed value or
//! a reason (the caller adds the variable name and raw value to the message).

use std::collections::BTreeMap;

use ipnet::{Ipv4Net, Ipv6Net};

/// Go `strconv.ParseBool`: `1 t T TRUE true True` / `0 f F FALSE false False`.
pub fn parse_go_bool(raw: &str) -> Result<bool, String> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("not a boolean (expected one of 1, t, T, TRUE, true, True, \
                  0, f, F, FALSE, false, False)"
            .to_owned()),
    }
}

/// A decimal integer as Go `strconv.Atoi` reads it (optional sign), as `i64`.
fn parse_decimal(raw: &str) -> Result<i64, String> {
    raw.parse::<i64>()
        .map_err(|_| "not an integer (decimal digits expected)".to_owned())
}

/// A non-negative decimal integer that fits in `u32` (targets, seconds, MTUs).
pub fn parse_u32(raw: &str) -> Result<u32, String> {
    let n = parse_decimal(raw).map_err(|_| "not a non-negative integer".to_owned())?;
    if n < 0 {
        return Err("must not be negative".to_owned());
    }
    u32::try_from(n).map_err(|_| format!("too large (at most {})", u32::MAX))
}

/// Go `strconv.ParseInt(s, 0, 64)`: optional sign, then `0x`/`0o`/`0b` prefixes, a bare
/// leading `0` meaning octal, and `_` separators between digits.
pub fn parse_go_int_base0(raw: &str) -> Result<i64, String> {
    let bad = || "not an integer (decimal, 0x…, 0o…, 0… octal or 0b… expected)".to_owned();
    let (negative, body) = match raw.as_bytes().first() {
        Some(b'+') => (false, &raw[1..]),
        Some(b'-') => (true, &raw[1..]),
        _ => (false, raw),
    };
    if body.is_empty() || !underscores_ok(body) {
        return Err(bad());
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    let magnitude = i128::from_str_radix(&digits, radix).map_err(|_| bad())?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| "out of the 64-bit integer range".to_owned())
}

/// Go's rule for `_` in base-0 literals: each underscore sits between digits (the base
/// prefix counts as a digit) and the literal does not end with one.
fn underscores_ok(body: &str) -> bool {
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut hex = false;
    // 'd' = last was a digit or base prefix, '_' = underscore, '^' = start, '!' = other.
    let mut saw = b'^';
    if bytes.len() >= 2 && bytes[0] == b'0' {
        let p = bytes[1].to_ascii_lowercase();
        if p == b'x' || p == b'o' || p == b'b' {
            i = 2;
            saw = b'd';
            hex = p == b'x';
        }
    }
    for &c in &bytes[i..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'd';
        } else if c == b'_' {
            if saw != b'd' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// `AWS_VPC_K8S_CNI_CONNMARK`: a base-0 integer in `1..=2^32-1`.
pub fn parse_connmark(raw: &str) -> Result<u32, String> {
    let n = parse_go_int_base0(raw)?;
    if n <= 0 || n > i64::from(u32::MAX) {
        return Err(format!(
            "out of range (must be between 1 and {:#x})",
            u32::MAX
        ));
    }
    u32::try_from(n).map_err(|_| "out of range".to_owned())
}

/// A comma-separated list of IPv4 CIDRs. Entries are trimmed; empty entries (a trailing
/// comma) are skipped; host bits are cleared as Go's `net.ParseCIDR` does.
pub fn parse_ipv4_cidr_list(raw: &str) -> Result<Vec<Ipv4Net>, String> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.parse::<Ipv4Net>() {
            Ok(net) => out.push(net.trunc()),
            Err(_) if entry.parse::<Ipv6Net>().is_ok() => problems.push(format!(
                "entry {entry:?} is an IPv6 CIDR, only IPv4 CIDRs are allowed"
            )),
            Err(_) => problems.push(format!(
                "entry {entry:?} is not an IPv4 CIDR (expected a.b.c.d/len)"
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

/// Substring that marks tag keys reserved for the CNI itself.
pub const RESERVED_TAG_MARKER: &str = "k8s.amazonaws.com";

/// `ADDITIONAL_ENI_TAGS`: a JSON object of string values. Returns the kept tags and the
/// reserved keys that were dropped.
pub fn parse_eni_tags(raw: &str) -> Result<(BTreeMap<String, String>, Vec<String>), String> {
    let parsed: BTreeMap<String, String> = serde_json::from_str(raw)
        .map_err(|e| format!("not a JSON object of string values: {e}"))?;
    let (reserved, kept): (BTreeMap<_, _>, BTreeMap<_, _>) = parsed
        .into_iter()
        .partition(|(k, _)| k.contains(RESERVED_TAG_MARKER));
    Ok((kept, reserved.into_keys().collect()))
}

/// Maximum length of the host-side veth prefix (interface names are 15 bytes; the rest
/// is the hash suffix).
pub const MAX_VETH_PREFIX_LEN: usize = 4;

/// `AWS_VPC_K8S_CNI_VETHPREFIX`: at most 4 bytes, not `eth`/`lo`/`vlan`, and made of
/// characters that are safe in interface names and firewall interface matches.
pub fn validate_veth_prefix(raw: &str) -> Result<(), String> {
    if raw.len() > MAX_VETH_PREFIX_LEN {
        return Err(format!("longer than {MAX_VETH_PREFIX_LEN} characters"));
    }
    if matches!(raw, "eth" | "lo" | "vlan") {
        return Err("reserved (eth, lo and vlan are not allowed)".to_owned());
    }
    if !raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may only contain ASCII letters, digits, '-', '_' and '.'".to_owned());
    }
    Ok(())
}

/// Valid MTU range for the address family: 576–9001 (IPv4) or 1280–9001 (IPv6).
pub fn mtu_range(ipv6: bool) -> std::ops::RangeInclusive<u32> {
    if ipv6 { 1280..=9001 } else { 576..=9001 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_base0_integers_match_strconv() {
        assert_eq!(parse_go_int_base0("-0x80"), Ok(-128));
        assert_eq!(parse_go_int_base0("0_200"), Ok(128));
        assert_eq!(parse_go_int_base0("0"), Ok(0));
        assert_eq!(parse_go_int_base0("0B1_0"), Ok(2));
        assert_eq!(parse_go_int_base0("9223372036854775807"), Ok(i64::MAX));
        assert!(parse_go_int_base0("9223372036854775808").is_err());
        assert!(parse_go_int_base0("0x_").is_err());
        assert!(parse_go_int_base0("+").is_err());
        assert!(parse_go_int_base0("0o8").is_err());
    }

    #[test]
    fn u32_rejects_what_atoi_rejects_and_negatives() {
        assert_eq!(parse_u32("007"), Ok(7));
        assert!(parse_u32(" 7").is_err());
        assert!(parse_u32("7.0").is_err());
        assert_eq!(parse_u32("-0"), Ok(0));
        assert_eq!(parse_u32("-5"), Err("must not be negative".to_owned()));
    }
}
