//! Serving gRPC clients that send an `:authority` the `http` crate refuses.
//!
//! Over a Unix socket the authority means nothing, and upstream's Go server accepts any.
//! Python's grpcio sends the socket path, percent-encoded (`tmp%2Fipamd.sock`); `h2` refuses
//! that as a malformed authority and resets every stream with `PROTOCOL_ERROR`. [`Rewriter`]
//! sits on the bytes a client sends and, inside each header block, replaces the bytes of an
//! invalid plain-text `:authority` value that `http` refuses with `x` — same length, so frame
//! lengths and both sides' HPACK dynamic tables stay exactly as the client computed them.
//! Everything else passes through untouched. A Huffman-coded invalid authority is left as it
//! is (no client known to us sends one).

/// HTTP/2 client connection preface.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// One frame of a header block still being collected: its bytes and where its fragment is.
struct BlockFrame {
    bytes: Vec<u8>,
    fragment: std::ops::Range<usize>,
}

/// The client-to-server byte stream transformer (pure; see the module docs).
#[derive(Default)]
pub struct Rewriter {
    preface_seen: usize,
    pending: Vec<u8>,
    block: Vec<BlockFrame>,
}

impl Rewriter {
    /// Takes bytes the client sent; appends to `out` what the server may read now.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut input = input;
        if self.preface_seen < PREFACE_LEN {
            let n = input.len().min(PREFACE_LEN - self.preface_seen);
            out.extend_from_slice(&input[..n]);
            self.preface_seen += n;
            input = &input[n..];
        }
        self.pending.extend_from_slice(input);
        while let Some(frame) = self.next_frame() {
            self.route(frame, out);
        }
    }

    /// Bytes held back (an incomplete frame or header block), for when the client goes away.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        for f in self.block.drain(..) {
            out.extend_from_slice(&f.bytes);
        }
        out.append(&mut self.pending);
    }

    fn next_frame(&mut self) -> Option<Vec<u8>> {
        let head = self.pending.get(..FRAME_HEADER_LEN)?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        if self.pending.len() < FRAME_HEADER_LEN + len {
            return None;
        }
        Some(self.pending.drain(..FRAME_HEADER_LEN + len).collect())
    }

    fn route(&mut self, frame: Vec<u8>, out: &mut Vec<u8>) {
        let (kind, flags) = (frame[3], frame[4]);
        let in_block = !self.block.is_empty();
        if kind == HEADERS || (kind == CONTINUATION && in_block) {
            let Some(fragment) = fragment_range(&frame) else {
                // Malformed: let the server's HTTP/2 stack say so.
                self.flush(out);
                out.extend_from_slice(&frame);
                return;
            };
            self.block.push(BlockFrame {
                bytes: frame,
                fragment,
            });
            if flags & END_HEADERS != 0 {
                self.finish_block(out);
            }
            return;
        }
        // Anything else inside a header block is a protocol error the server reports.
        self.flush_block(out);
        out.extend_from_slice(&frame);
    }

    fn flush_block(&mut self, out: &mut Vec<u8>) {
        for f in self.block.drain(..) {
            out.extend_from_slice(&f.bytes);
        }
    }

    fn finish_block(&mut self, out: &mut Vec<u8>) {
        let mut block: Vec<u8> = self
            .block
            .iter()
            .flat_map(|f| f.bytes[f.fragment.clone()].iter().copied())
            .collect();
        fix_authority(&mut block);
        let mut at = 0;
        for f in &mut self.block {
            let n = f.fragment.len();
            f.bytes[f.fragment.clone()].copy_from_slice(&block[at..at + n]);
            at += n;
        }
        self.flush_block(out);
    }
}

/// Where the header block fragment of a HEADERS or CONTINUATION frame is.
fn fragment_range(frame: &[u8]) -> Option<std::ops::Range<usize>> {
    let (kind, flags) = (frame[3], frame[4]);
    let mut start = FRAME_HEADER_LEN;
    let mut end = frame.len();
    if kind == HEADERS {
        if flags & PADDED != 0 {
            let pad = usize::from(*frame.get(start)?);
            start += 1;
            end = end.checked_sub(pad)?;
        }
        if flags & PRIORITY != 0 {
            start += 5;
        }
    }
    (start <= end).then_some(start..end)
}

/// An HPACK integer with an `n`-bit prefix at `block[*at]`; advances `at`.
fn read_int(block: &[u8], at: &mut usize, n: u32) -> Option<usize> {
    let mask = (1usize << n) - 1;
    let mut value = usize::from(*block.get(*at)?) & mask;
    *at += 1;
    if value < mask {
        return Some(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *block.get(*at)?;
        *at += 1;
        value = value.checked_add(usize::from(b & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// An HPACK string at `block[*at]`: (Huffman-coded, byte range); advances `at`.
fn read_string(block: &[u8], at: &mut usize) -> Option<(bool, std::ops::Range<usize>)> {
    let huffman = *block.get(*at)? & 0x80 != 0;
    let len = read_int(block, at, 7)?;
    let range = *at..at.checked_add(len)?;
    if range.end > block.len() {
        return None;
    }
    *at = range.end;
    Some((huffman, range))
}

/// Walks the representations of a header block and makes an invalid plain `:authority`
/// value valid in place. A block that does not parse is left as it is.
pub fn fix_authority(block: &mut [u8]) {
    let mut at = 0;
    while at < block.len() {
        let b = block[at];
        let prefix = match b {
            _ if b & 0x80 != 0 => {
                if read_int(block, &mut at, 7).is_none() {
                    return;
                }
                continue;
            }
            _ if b & 0xc0 == 0x40 => 6,
            _ if b & 0xe0 == 0x20 => {
                if read_int(block, &mut at, 5).is_none() {
                    return;
                }
                continue;
            }
            _ => 4,
        };
        let Some(name_index) = read_int(block, &mut at, prefix) else {
            return;
        };
        let is_authority = if name_index == 0 {
            match read_string(block, &mut at) {
                Some((false, name)) => &block[name] == b":authority",
                Some((true, _)) => false,
                None => return,
            }
        } else {
            name_index == 1
        };
        let Some((huffman, value)) = read_string(block, &mut at) else {
            return;
        };
        if is_authority && !huffman {
            make_valid(&mut block[value]);
        }
    }
}

/// Replaces every byte outside `[A-Za-z0-9.-]` with `x` when `http` refuses the authority.
fn make_valid(value: &mut [u8]) {
    if value.is_empty() || tonic::codegen::http::uri::Authority::try_from(&*value).is_ok() {
        return;
    }
    for b in value.iter_mut() {
        if !(b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-') {
            *b = b'x';
        }
    }
}

/// A server-side connection whose incoming bytes go through a [`Rewriter`].
#[cfg(feature = "server")]
pub struct FixedAuthority<S> {
    inner: S,
    rewriter: Rewriter,
    ready: Vec<u8>,
    read_at: usize,
    eof: bool,
}

#[cfg(feature = "server")]
impl<S> FixedAuthority<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            ready: Vec::new(),
            read_at: 0,
            eof: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

#[cfg(feature = "server")]
impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FixedAuthority<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if this.read_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.read_at);
                buf.put_slice(&this.ready[this.read_at..this.read_at + n]);
                this.read_at += n;
                if this.read_at == this.ready.len() {
                    this.ready.clear();
                    this.read_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut raw = tokio::io::ReadBuf::new(&mut chunk);
            match std::pin::Pin::new(&mut this.inner).poll_read(cx, &mut raw) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if raw.filled().is_empty() => {
                    this.eof = true;
                    this.rewriter.flush(&mut this.ready);
                }
                Poll::Ready(Ok(())) => this.rewriter.feed(raw.filled(), &mut this.ready),
            }
        }
    }
}

#[cfg(feature = "server")]
impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FixedAuthority<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(feature = "server")]
impl tonic::transport::server::Connected for FixedAuthority<tokio::net::UnixStream> {
    type ConnectInfo = <tokio::net::UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A HEADERS frame (stream 1) with `block`, optionally padded and with priority.
    fn headers(block: &[u8], flags: u8, padded: bool, priority: bool) -> Vec<u8> {
        let mut payload = Vec::new();
        let mut flags = flags;
        if padded {
            payload.push(3);
            flags |= PADDED;
        }
        if priority {
            payload.extend_from_slice(&[0, 0, 0, 0, 16]);
            flags |= PRIORITY;
        }
        payload.extend_from_slice(block);
        if padded {
            payload.extend_from_slice(&[0, 0, 0]);
        }
        frame(HEADERS, flags, &payload)
    }

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    /// grpcio's request headers: `:path`, then `:authority` as a new literal name with
    /// incremental indexing, then `:method POST` and `:scheme http` from the static table.
    fn grpcio_block(authority: &str) -> Vec<u8> {
        let mut b = vec![0x40, 5];
        b.extend_from_slice(b":path");
        b.push(28);
        b.extend_from_slice(b"/grpc.health.v1.Health/Check");
        b.extend_from_slice(&[0x40, 10]);
        b.extend_from_slice(b":authority");
        b.push(authority.len() as u8);
        b.extend_from_slice(authority.as_bytes());
        b.extend_from_slice(&[0x83, 0x86]);
        b
    }

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut r = Rewriter::default();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut out);
        }
        r.flush(&mut out);
        out
    }

    #[test]
    fn an_invalid_authority_becomes_valid_with_the_same_length() {
        let mut block = grpcio_block("tmp%2Fgrpc%2Fipamd.sock");
        fix_authority(&mut block);
        assert_eq!(block, grpcio_block("tmpx2Fgrpcx2Fipamd.sock"));
        // Static-table name (index 1), literal without indexing.
        let mut block = vec![0x01, 4];
        block.extend_from_slice(b"a/b%");
        fix_authority(&mut block);
        assert_eq!(&block[2..], b"axbx");
    }

    #[test]
    fn valid_authorities_and_other_headers_are_untouched() {
        for authority in ["localhost", "localhost:50051", "10.0.0.1:80", "[::1]:80"] {
            let block = grpcio_block(authority);
            let mut fixed = block.clone();
            fix_authority(&mut fixed);
            assert_eq!(fixed, block, "{authority}");
        }
        // A value named like the header elsewhere (here a user header) stays as it is.
        let mut block = vec![0x40, 4];
        block.extend_from_slice(b"x-id");
        block.push(3);
        block.extend_from_slice(b"a/b");
        let orig = block.clone();
        fix_authority(&mut block);
        assert_eq!(block, orig);
    }

    #[test]
    fn frames_split_anywhere_and_across_continuations_are_rewritten() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let settings = frame(0x4, 0, &[]);
        let block = grpcio_block("tmp%2Fipamd.sock");
        let (first, rest) = block.split_at(40);
        let mut stream = preface.to_vec();
        stream.extend_from_slice(&settings);
        stream.extend_from_slice(&headers(first, 0x1, true, true));
        stream.extend_from_slice(&frame(CONTINUATION, END_HEADERS, rest));
        stream.extend_from_slice(&frame(0x0, 0x1, b"\0\0\0\0\0"));
        let want_block = grpcio_block("tmpx2Fipamd.sock");
        let (wf, wr) = want_block.split_at(40);
        let mut want = preface.to_vec();
        want.extend_from_slice(&settings);
        want.extend_from_slice(&headers(wf, 0x1, true, true));
        want.extend_from_slice(&frame(CONTINUATION, END_HEADERS, wr));
        want.extend_from_slice(&frame(0x0, 0x1, b"\0\0\0\0\0"));
        assert_eq!(run(&[&stream]), want, "in one read");
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytes), want, "one byte at a time");
    }

    #[test]
    fn malformed_input_passes_through_unchanged() {
        for block in [
            vec![0x40, 0x7f],
            vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0x00],
        ] {
            let mut fixed = block.clone();
            fix_authority(&mut fixed);
            assert_eq!(fixed, block);
        }
        // A truncated stream comes out as it went in.
        let stream = headers(&grpcio_block("a%2F"), END_HEADERS, false, false);
        let cut = &stream[..stream.len() - 2];
        let mut with_preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        with_preface.extend_from_slice(cut);
        assert_eq!(run(&[&with_preface]), with_preface);
    }
}
