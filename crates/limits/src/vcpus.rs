//! vCPU counts and, where no source knows them, an inference from the size suffix.

/// What is known about an instance type's vCPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vcpus {
    /// From DescribeInstanceTypes (`VCpuInfo.DefaultVCpus`).
    Known(u32),
    /// Inferred from the size suffix (see [`infer_vcpus_from_size`]).
    Inferred(u32),
    /// Neither known nor inferable (e.g. a plain `.metal` type missing from moto).
    Unknown,
}

/// Infers vCPUs from the size suffix of an instance type, using the common EC2 ratio
/// (`large` = 2, `xlarge` = 4, `Nxlarge` = 4N, `metal-Nxl` = 4N; `nano`..`medium` = 2).
/// Returns `None` for sizes it cannot read, including plain `metal`.
///
/// This is an estimate: it only decides which max-pods ceiling applies (more than 30
/// vCPUs or not), and only for the few types whose vCPUs no source knows.
pub fn infer_vcpus_from_size(instance_type: &str) -> Option<u32> {
    let (_, size) = instance_type.split_once('.')?;
    match size {
        "nano" | "micro" | "small" | "medium" | "large" => return Some(2),
        "xlarge" => return Some(4),
        _ => {}
    }
    let n = size
        .strip_suffix("xlarge")
        .or_else(|| size.strip_prefix("metal-")?.strip_suffix("xl"))?;
    let n: u32 = n.parse().ok()?;
    n.checked_mul(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_from_common_sizes() {
        assert_eq!(infer_vcpus_from_size("t3.nano"), Some(2));
        assert_eq!(infer_vcpus_from_size("m5.large"), Some(2));
        assert_eq!(infer_vcpus_from_size("m5.xlarge"), Some(4));
        assert_eq!(infer_vcpus_from_size("p3.8xlarge"), Some(32));
        assert_eq!(infer_vcpus_from_size("u-9tb1.112xlarge"), Some(448));
        assert_eq!(infer_vcpus_from_size("m7i.metal-48xl"), Some(192));
    }

    #[test]
    fn gives_up_on_unreadable_sizes() {
        assert_eq!(infer_vcpus_from_size("i3.metal"), None);
        assert_eq!(infer_vcpus_from_size("nodot"), None);
        assert_eq!(infer_vcpus_from_size("x.hugexlarge"), None);
    }
}
