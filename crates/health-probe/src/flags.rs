//! Command-line flags in Go `flag`-package syntax, as upstream's probe takes them.

use std::time::Duration;

/// Parsed flags of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeArgs {
    /// `-addr`: `unix:///path`, `unix:/path`, `unix:path` or TCP `host:port`.
    pub addr: String,
    /// `-service` (default `""`: the server as a whole).
    pub service: String,
    /// `-user-agent` (default `grpc-health-probe`).
    pub user_agent: String,
    /// `-connect-timeout` (default 1 s).
    pub connect_timeout: Duration,
    /// `-rpc-timeout` (default 1 s).
    pub rpc_timeout: Duration,
    /// `-v`: print what happens to stderr.
    pub verbose: bool,
    /// `-h` / `-help`: print usage and exit 0.
    pub help: bool,
}

impl Default for ProbeArgs {
    fn default() -> Self {
        Self {
            addr: String::new(),
            service: String::new(),
            user_agent: "grpc-health-probe".to_owned(),
            connect_timeout: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(1),
            verbose: false,
            help: false,
        }
    }
}

/// A command line the probe cannot run with (exit code 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("flag provided but not defined: {0}")]
    Unknown(String),
    #[error("flag needs an argument: {0}")]
    MissingValue(String),
    #[error("invalid value {value:?} for flag -{flag}: {reason}")]
    BadValue {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("unexpected argument {0:?} (flags are -name=value)")]
    Positional(String),
    #[error("-addr not specified")]
    NoAddr,
}

/// Usage text.
pub const USAGE: &str = "usage: grpc-health-probe -addr=<unix:///path.sock | host:port> \
[-service=NAME] [-connect-timeout=1s] [-rpc-timeout=1s] [-user-agent=grpc-health-probe] [-v]";

/// Parses a Go duration (`300ms`, `1.5s`, `2m`, `1h2m3s`, `0`). Units: ns, us, µs, ms, s, m, h.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if s.starts_with('-') {
        return Err("negative duration".to_owned());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        if num_len == 0 {
            return Err(format!("invalid duration {text:?}"));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid number in duration {text:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?} in duration {text:?}")),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("duration {text:?}: {e}"))
}

fn parse_bool(flag: &'static str, value: &str) -> Result<bool, FlagError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(FlagError::BadValue {
            flag,
            value: value.to_owned(),
            reason: "not a boolean".to_owned(),
        }),
    }
}

fn positive(flag: &'static str, value: &str) -> Result<Duration, FlagError> {
    let bad = |reason: String| FlagError::BadValue {
        flag,
        value: value.to_owned(),
        reason,
    };
    let d = parse_go_duration(value).map_err(bad)?;
    if d.is_zero() {
        return Err(bad("must be greater than zero".to_owned()));
    }
    Ok(d)
}

/// Parses the arguments after the program name.
pub fn parse_args<I, S>(args: I) -> Result<ProbeArgs, FlagError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = ProbeArgs::default();
    let args: Vec<String> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            if let Some(extra) = args.get(i) {
                return Err(FlagError::Positional(extra.clone()));
            }
            break;
        }
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty())
        else {
            return Err(FlagError::Positional(arg.clone()));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        match name {
            "v" => out.verbose = inline.map_or(Ok(true), |v| parse_bool("v", &v))?,
            "h" | "help" => out.help = true,
            "addr" | "service" | "user-agent" | "connect-timeout" | "rpc-timeout" => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| FlagError::MissingValue(format!("-{name}")))?;
                        i += 1;
                        v
                    }
                };
                match name {
                    "addr" => out.addr = value,
                    "service" => out.service = value,
                    "user-agent" => out.user_agent = value,
                    "connect-timeout" => out.connect_timeout = positive("connect-timeout", &value)?,
                    _ => out.rpc_timeout = positive("rpc-timeout", &value)?,
                }
            }
            other => return Err(FlagError::Unknown(format!("-{other}"))),
        }
    }
    if out.addr.is_empty() && !out.help {
        return Err(FlagError::NoAddr);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_probe_line_parses() {
        let a = parse_args([
            "-addr=unix:///var/run/aws-node/ipamd.sock",
            "-connect-timeout=5s",
            "-rpc-timeout=5s",
        ])
        .unwrap();
        assert_eq!(a.addr, "unix:///var/run/aws-node/ipamd.sock");
        assert_eq!(a.connect_timeout, Duration::from_secs(5));
        assert_eq!(a.rpc_timeout, Duration::from_secs(5));
        assert_eq!(a.service, "");
        assert!(!a.verbose);
    }

    #[test]
    fn separate_values_double_dashes_and_bools() {
        let a = parse_args(["--addr", "127.0.0.1:50051", "-service", "x", "-v"]).unwrap();
        assert_eq!(
            (a.addr.as_str(), a.service.as_str(), a.verbose),
            ("127.0.0.1:50051", "x", true)
        );
        assert!(!parse_args(["-addr=a", "-v=false"]).unwrap().verbose);
    }

    #[test]
    fn bad_command_lines() {
        assert_eq!(parse_args::<[&str; 0], &str>([]), Err(FlagError::NoAddr));
        assert!(matches!(
            parse_args(["-addr=a", "-tls"]),
            Err(FlagError::Unknown(_))
        ));
        assert!(matches!(
            parse_args(["-addr"]),
            Err(FlagError::MissingValue(_))
        ));
        assert!(matches!(
            parse_args(["-addr=a", "-rpc-timeout=0s"]),
            Err(FlagError::BadValue { .. })
        ));
        assert!(matches!(
            parse_args(["-addr=a", "-connect-timeout=5"]),
            Err(FlagError::BadValue { .. })
        ));
        assert!(matches!(
            parse_args(["-addr=a", "extra"]),
            Err(FlagError::Positional(_))
        ));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("5 parsecs").is_err());
        assert!(parse_go_duration("s").is_err());
    }
}
