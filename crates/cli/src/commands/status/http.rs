//! One HTTP/1.1 GET to ipamd's local endpoints with hyper's connection-level client, over
//! TCP or a Unix socket (`INTROSPECTION_BIND_ADDRESS=unix:<path>`). No pool and no TLS:
//! `vpc-cni status` makes two requests to the node it runs on.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// Largest response body accepted (a node's `/v1/enis` is a few hundred KiB at most).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address is not `host:port`, `http://host:port` or `unix:<path>`.
    #[error("bad address {0:?}: expected host:port, http://host:port or unix:<path>")]
    BadAddress(String),
    /// Could not start the client runtime or connect.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The HTTP exchange failed (handshake, request, reply headers or body).
    #[error("{0}: {1}")]
    Http(&'static str, String),
    /// The reply is not usable text.
    #[error("unusable reply: {0}")]
    Malformed(String),
    /// No complete reply within the timeout.
    #[error("no reply within {secs}s", secs = .0.as_secs())]
    Timeout(Duration),
    /// A status other than 200.
    #[error("HTTP {code}: {body}", code = .0, body = .1.trim())]
    Status(u16, String),
}

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

    /// The `Host` header value.
    fn host(&self) -> &str {
        match self {
            Self::Tcp(a) => a,
            Self::Unix(_) => "localhost",
        }
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

/// `GET path` and the body of a 200 reply; connecting and reading all of it must finish
/// within `timeout`. Blocks the calling thread on a small current-thread runtime.
pub fn get(target: &Target, path: &str, timeout: Duration) -> Result<String, HttpError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| HttpError::Io("starting the HTTP client".into(), e))?;
    rt.block_on(async {
        tokio::time::timeout(timeout, get_async(target, path))
            .await
            .unwrap_or(Err(HttpError::Timeout(timeout)))
    })
}

async fn get_async(target: &Target, path: &str) -> Result<String, HttpError> {
    match target {
        Target::Tcp(a) => {
            let s = TcpStream::connect(a.as_str())
                .await
                .map_err(|e| HttpError::Io(format!("connecting to {a}"), e))?;
            exchange(s, target.host(), path).await
        }
        Target::Unix(p) => {
            let s = UnixStream::connect(p)
                .await
                .map_err(|e| HttpError::Io(format!("connecting to unix:{p}"), e))?;
            exchange(s, target.host(), path).await
        }
    }
}

/// Sends the request on a fresh connection and reads the whole reply.
async fn exchange<S>(stream: S, host: &str, path: &str) -> Result<String, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| HttpError::Http("HTTP handshake", e.to_string()))?;
    // Drives the connection; ends when the reply is read or the connection fails (the
    // failure then surfaces through `send_request` or the body).
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(header::HOST, host)
        .header(header::USER_AGENT, "vpc-cni")
        .header(header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| HttpError::Http("building the request", e.to_string()))?;
    let reply = sender
        .send_request(req)
        .await
        .map_err(|e| HttpError::Http("sending the request", e.to_string()))?;
    let status = reply.status();
    let body = Limited::new(reply.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| HttpError::Http("reading the reply", e.to_string()))?
        .to_bytes();
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| HttpError::Malformed("body is not UTF-8".into()))?;
    if status != StatusCode::OK {
        return Err(HttpError::Status(status.as_u16(), text));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Serves `reply` (raw bytes) to one connection on 127.0.0.1 and returns the target.
    fn serve_once(reply: &'static [u8]) -> Target {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
        });
        Target::Tcp(addr.to_string())
    }

    fn fetch(reply: &'static [u8]) -> Result<String, HttpError> {
        get(&serve_once(reply), "/x", Duration::from_secs(5))
    }

    #[test]
    fn plain_and_chunked_bodies() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(fetch(r).unwrap(), "hello");
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(fetch(r).unwrap(), "hello");
        let r = b"HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope";
        assert!(matches!(fetch(r), Err(HttpError::Status(404, _))));
        assert!(fetch(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn unix_socket_and_timeout() {
        let dir = std::env::temp_dir().join(format!("vpc-cni-http-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).contains("host: localhost"));
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
            // Second connection: accept and never answer.
            let (_s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_secs(3));
        });
        let t = Target::Unix(path.display().to_string());
        assert_eq!(get(&t, "/v1/enis", Duration::from_secs(5)).unwrap(), "ok");
        let e = get(&t, "/v1/enis", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, HttpError::Timeout(_)), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
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
