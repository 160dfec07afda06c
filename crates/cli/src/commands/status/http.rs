//! A minimal blocking HTTP/1.1 GET over `std::net::TcpStream` (or a Unix socket, as
//! `INTROSPECTION_BIND_ADDRESS=unix:<path>` allows): enough for ipamd's two local endpoints
//! without pulling an HTTP client into a binary that ships in the image.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Largest response body accepted (a node's `/v1/enis` is a few hundred KiB at most).
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// Why a GET failed.
#[derive(Debug)]
pub enum HttpError {
    /// The address is not `host:port`, `http://host:port` or `unix:<path>`.
    BadAddress(String),
    /// Could not connect, send or receive.
    Io(String, std::io::Error),
    /// The reply is not HTTP/1.x.
    Malformed(String),
    /// A status other than 200.
    Status(u16, String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadAddress(a) => write!(
                f,
                "bad address {a:?}: expected host:port, http://host:port or unix:<path>"
            ),
            Self::Io(what, e) => write!(f, "{what}: {e}"),
            Self::Malformed(why) => write!(f, "not an HTTP/1.1 reply: {why}"),
            Self::Status(code, body) => write!(f, "HTTP {code}: {}", body.trim()),
        }
    }
}

impl std::error::Error for HttpError {}

/// Where an endpoint lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port`.
    Tcp(String),
    /// A Unix socket path.
    Unix(String),
}

impl Target {
    /// Parses `host:port`, `http://host:port[/]` or `unix:<path>`.
    pub fn parse(raw: &str) -> Result<Self, HttpError> {
        let raw = raw.trim();
        if let Some(path) = raw.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(HttpError::BadAddress(raw.to_string()));
            }
            return Ok(Self::Unix(path.to_string()));
        }
        let hostport = raw
            .strip_prefix("http://")
            .unwrap_or(raw)
            .trim_end_matches('/');
        let ok = hostport
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok || hostport.contains('/') {
            return Err(HttpError::BadAddress(raw.to_string()));
        }
        Ok(Self::Tcp(hostport.to_string()))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => f.write_str(a),
            Self::Unix(p) => write!(f, "unix:{p}"),
        }
    }
}

fn exchange<S: Read + Write>(mut s: S, host: &str, path: &str) -> Result<Vec<u8>, HttpError> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vpc-cni\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| HttpError::Io("sending the request".into(), e))?;
    let mut buf = Vec::new();
    s.take(MAX_RESPONSE)
        .read_to_end(&mut buf)
        .map_err(|e| HttpError::Io("reading the reply".into(), e))?;
    Ok(buf)
}

/// `GET path` and the body of a 200 reply.
pub fn get(target: &Target, path: &str, timeout: Duration) -> Result<String, HttpError> {
    let raw = match target {
        Target::Unix(p) => {
            let s = UnixStream::connect(p)
                .map_err(|e| HttpError::Io(format!("connecting to unix:{p}"), e))?;
            s.set_read_timeout(Some(timeout))
                .and_then(|()| s.set_write_timeout(Some(timeout)))
                .map_err(|e| HttpError::Io("setting timeouts".into(), e))?;
            exchange(s, "localhost", path)?
        }
        Target::Tcp(a) => {
            let addrs: Vec<_> = a
                .to_socket_addrs()
                .map_err(|e| HttpError::Io(format!("resolving {a}"), e))?
                .collect();
            let mut last = None;
            let mut stream = None;
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, timeout) {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let s = stream.ok_or_else(|| {
                HttpError::Io(
                    format!("connecting to {a}"),
                    last.unwrap_or_else(|| std::io::Error::other("no address")),
                )
            })?;
            s.set_read_timeout(Some(timeout))
                .and_then(|()| s.set_write_timeout(Some(timeout)))
                .map_err(|e| HttpError::Io("setting timeouts".into(), e))?;
            exchange(s, a, path)?
        }
    };
    parse_response(&raw)
}

/// Splits a raw HTTP/1.x reply; returns the body of a 200 (chunked or not).
pub fn parse_response(raw: &[u8]) -> Result<String, HttpError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| HttpError::Malformed("no end of headers".into()))?;
    let head = std::str::from_utf8(&raw[..split])
        .map_err(|_| HttpError::Malformed("headers are not UTF-8".into()))?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("status line {status_line:?}")));
    }
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| HttpError::Malformed(format!("status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length = None;
    for h in lines {
        let Some((k, v)) = h.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else {
        match length {
            Some(n) if n <= body.len() => body[..n].to_vec(),
            Some(n) => {
                return Err(HttpError::Malformed(format!(
                    "body has {} of {n} bytes",
                    body.len()
                )));
            }
            None => body.to_vec(),
        }
    };
    let text =
        String::from_utf8(body).map_err(|_| HttpError::Malformed("body is not UTF-8".into()))?;
    if code != 200 {
        return Err(HttpError::Status(code, text));
    }
    Ok(text)
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| HttpError::Malformed("truncated chunk size".into()))?;
        let size_line = std::str::from_utf8(&body[..eol])
            .map_err(|_| HttpError::Malformed("bad chunk size".into()))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::Malformed(format!("bad chunk size {size_hex:?}")))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err(HttpError::Malformed("truncated chunk".into()));
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(r).unwrap(), "hello");
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), "hello");
        let r = b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope";
        assert!(matches!(parse_response(r), Err(HttpError::Status(404, _))));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("http://127.0.0.1:61679/").unwrap(),
            Target::Tcp("127.0.0.1:61679".into())
        );
        assert_eq!(
            Target::parse("unix:/run/x.sock").unwrap(),
            Target::Unix("/run/x.sock".into())
        );
        assert!(Target::parse("127.0.0.1").is_err());
        assert!(Target::parse("http://h:1/x").is_err());
    }
}
