//! The HTTP/1.1 client on the hot path: the request is encoded once, each exchange is one
//! `write` and as few `read`s as the response needs, and the response head is parsed with
//! `httparse` (the parser hyper uses) without allocating.
//!
//! Why not hyper's client here: profiled against a native hyper server on one core, hyper's
//! client spent ~6 µs of user time per request (request building, header maps, the
//! dispatch channel between the caller and the connection task) where wrk spends ~1.5 µs,
//! so a generator built on it is the bottleneck long before the server (oha, which uses
//! it, reaches ~0.88× wrk). HTTP/2 still goes through hyper.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::HOST;
use http::{HeaderMap, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::record::ErrorKind;

/// Response heads larger than this are refused as a protocol error.
const MAX_HEAD: usize = 1 << 20;
/// Read buffer per connection; grown only for responses whose head does not fit.
const READ_BUF: usize = 32 * 1024;
/// Headers parsed per response.
const MAX_HEADERS: usize = 64;

/// Encodes a request once, for every exchange of a run.
pub fn encode_request(
    method: &Method,
    path: &str,
    authority: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Bytes {
    let mut out = BytesMut::with_capacity(256 + body.len());
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(HOST) {
        out.put_slice(b"host: ");
        out.put_slice(authority.as_bytes());
        out.put_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    let has_length = headers.contains_key(http::header::CONTENT_LENGTH);
    if !body.is_empty() && !has_length {
        out.put_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.freeze()
}

/// One HTTP/1.1 connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` holding data not yet consumed.
    filled: usize,
    start: usize,
    /// The server asked to close (or the response was delimited by closing).
    closing: bool,
    /// Bytes read and written.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

/// What one exchange observed; times are from the `now` function passed in.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Server-Timing` header values, if any.
    pub server_timing: Vec<String>,
    /// When the request was fully written.
    pub sent: u64,
    /// When the first byte of the response arrived.
    pub first_byte: u64,
    /// When the response was complete.
    pub ended: u64,
}

/// A response's head and body, as [`Conn::exchange_capture`] keeps them.
#[derive(Debug, Default)]
pub struct Captured {
    /// The minor HTTP version (`1` for HTTP/1.1).
    pub version: u8,
    /// Header names as sent and their values, packed `name\0value\0name\0value` (one
    /// allocation; neither can hold a NUL, which httparse refuses), `Transfer-Encoding`
    /// left out: the body is de-chunked. [`header_pairs`] splits them.
    pub headers: Vec<u8>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Headers packed as [`Captured::headers`] are, name and value.
pub fn header_pairs(packed: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut parts = packed.split(|&b| b == 0);
    std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
}

/// A parsed response head: its length, status, framing (if it says), whether the
/// connection closes after it, and its `Server-Timing` values.
struct Head {
    len: usize,
    code: u16,
    framing: Option<Framing>,
    close: bool,
    server_timing: Vec<String>,
}

enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: vec![0; READ_BUF],
            filled: 0,
            start: 0,
            closing: false,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Whether the connection can carry another request.
    pub fn reusable(&self) -> bool {
        !self.closing
    }

    async fn fill(&mut self) -> Result<usize, ErrorKind> {
        if self.start > 0 && self.start == self.filled {
            self.start = 0;
            self.filled = 0;
        }
        if self.filled == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.filled, 0);
                self.filled -= self.start;
                self.start = 0;
            } else {
                if self.buf.len() >= MAX_HEAD {
                    return Err(ErrorKind::Protocol);
                }
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        // `read` (not `try_read`): tokio clears read readiness after a short read, which
        // saves an EAGAIN `recvfrom` per response.
        let n = self
            .stream
            .read(&mut self.buf[self.filled..])
            .await
            .map_err(|e| io_kind(&e))?;
        self.filled += n;
        self.bytes_in += n as u64;
        Ok(n)
    }

    /// Sends the request and reads the whole response.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head_only: bool,
        now: impl Fn() -> u64,
    ) -> Result<Response, ErrorKind> {
        self.exchange_into(request, head_only, now, None).await
    }

    /// As [`exchange`](Conn::exchange), keeping the response's headers and body in `out`
    /// (scenarios read them; the plain URL load does not pay for copying them).
    pub async fn exchange_capture(
        &mut self,
        request: &[u8],
        head_only: bool,
        now: impl Fn() -> u64,
        out: &mut Captured,
    ) -> Result<Response, ErrorKind> {
        self.exchange_into(request, head_only, now, Some(out)).await
    }

    async fn exchange_into(
        &mut self,
        request: &[u8],
        head_only: bool,
        now: impl Fn() -> u64,
        mut out: Option<&mut Captured>,
    ) -> Result<Response, ErrorKind> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| io_kind(&e))?;
        self.bytes_out += request.len() as u64;
        let sent = now();
        let mut first_byte = None;
        loop {
            // Parse a head from what is buffered; read more while it is incomplete.
            let Some(head) = self.parse_head(out.as_deref_mut())? else {
                if self.fill().await? == 0 {
                    return Err(ErrorKind::Closed);
                }
                first_byte.get_or_insert_with(&now);
                continue;
            };
            let first_byte = *first_byte.get_or_insert_with(&now);
            let Head {
                len: head_len,
                code,
                framing,
                close,
                server_timing,
            } = head;
            self.start += head_len;
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            if (100..200).contains(&code) && code != 101 {
                continue;
            }
            let framing = if head_only || code == 204 || code == 304 {
                Framing::Length(0)
            } else {
                framing.unwrap_or(Framing::UntilClose)
            };
            self.closing = close || matches!(framing, Framing::UntilClose);
            self.read_body(framing, out.map(|o| &mut o.body)).await?;
            return Ok(Response {
                status: code,
                server_timing,
                sent,
                first_byte,
                ended: now(),
            });
        }
    }

    /// Parses the response head buffered at `start`, if it is complete (`None`: read more),
    /// keeping its headers in `out`. A function of its own, so that httparse's header array
    /// is not part of the exchange's future (which is moved as a whole).
    fn parse_head(&self, out: Option<&mut Captured>) -> Result<Option<Head>, ErrorKind> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let len = match parsed.parse(&self.buf[self.start..self.filled]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ErrorKind::Protocol),
        };
        let code = parsed.code.unwrap_or(0);
        let version = parsed.version.unwrap_or(1);
        let mut framing = None;
        let mut close = version == 0;
        let mut server_timing = Vec::new();
        if let Some(out) = out {
            out.headers.clear();
            out.body.clear();
            out.version = version;
            for h in parsed.headers.iter() {
                if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    continue;
                }
                if !out.headers.is_empty() {
                    out.headers.push(0);
                }
                out.headers.extend_from_slice(h.name.as_bytes());
                out.headers.push(0);
                out.headers.extend_from_slice(h.value);
            }
        }
        for h in parsed.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or(ErrorKind::Protocol)?;
                framing = Some(Framing::Length(n));
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if h.value.to_ascii_lowercase().ends_with(b"chunked") {
                    framing = Some(Framing::Chunked);
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = h.value.to_ascii_lowercase();
                if v == b"close" {
                    close = true;
                } else if v == b"keep-alive" {
                    close = false;
                }
            } else if h.name.eq_ignore_ascii_case("server-timing")
                && let Ok(v) = std::str::from_utf8(h.value)
            {
                server_timing.push(v.to_owned());
            }
        }
        Ok(Some(Head {
            len,
            code,
            framing,
            close,
            server_timing,
        }))
    }

    async fn read_body(
        &mut self,
        framing: Framing,
        mut sink: Option<&mut Vec<u8>>,
    ) -> Result<(), ErrorKind> {
        match framing {
            Framing::Length(mut left) => loop {
                let have = (self.filled - self.start) as u64;
                let take = have.min(left);
                if let Some(sink) = sink.as_deref_mut() {
                    sink.extend_from_slice(&self.buf[self.start..self.start + take as usize]);
                }
                self.start += take as usize;
                left -= take;
                if left == 0 {
                    return Ok(());
                }
                if self.fill().await? == 0 {
                    return Err(ErrorKind::Closed);
                }
            },
            Framing::UntilClose => loop {
                if let Some(sink) = sink.as_deref_mut() {
                    sink.extend_from_slice(&self.buf[self.start..self.filled]);
                }
                self.start = self.filled;
                if self.fill().await? == 0 {
                    return Ok(());
                }
            },
            Framing::Chunked => {
                let mut state = Chunked::Size(0, false);
                loop {
                    let data = &self.buf[self.start..self.filled];
                    let (used, done) = state.advance(data, sink.as_deref_mut())?;
                    self.start += used;
                    if done {
                        return Ok(());
                    }
                    if self.fill().await? == 0 {
                        return Err(ErrorKind::Closed);
                    }
                }
            }
        }
    }
}

/// The chunked-encoding decoder's state.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunked {
    /// Reading a size line: the size so far, and whether an extension (`;…`) started.
    Size(u64, bool),
    /// Expecting `\n` after the size line's `\r`.
    SizeLf(u64),
    /// Inside chunk data: bytes left.
    Data(u64),
    /// Expecting the `\r\n` after chunk data (how many of the two bytes seen).
    DataEnd(u8),
    /// Reading trailers: bytes on the current line so far.
    Trailer(usize),
}

impl Chunked {
    /// Consumes from `data`; returns bytes used and whether the body is complete.
    fn advance(
        &mut self,
        data: &[u8],
        mut sink: Option<&mut Vec<u8>>,
    ) -> Result<(usize, bool), ErrorKind> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match *self {
                Chunked::Size(n, ext) => match b {
                    b'\r' => *self = Chunked::SizeLf(n),
                    b'\n' => *self = Chunked::from_size(n),
                    _ if ext => {}
                    b';' | b' ' | b'\t' => *self = Chunked::Size(n, true),
                    _ => {
                        let d = (b as char).to_digit(16).ok_or(ErrorKind::Protocol)? as u64;
                        let n = n
                            .checked_mul(16)
                            .and_then(|n| n.checked_add(d))
                            .ok_or(ErrorKind::Protocol)?;
                        *self = Chunked::Size(n, false);
                    }
                },
                Chunked::SizeLf(n) => {
                    if b != b'\n' {
                        return Err(ErrorKind::Protocol);
                    }
                    *self = Chunked::from_size(n);
                }
                Chunked::Data(left) => {
                    let take = (left as usize).min(data.len() - i);
                    if let Some(sink) = sink.as_deref_mut() {
                        sink.extend_from_slice(&data[i..i + take]);
                    }
                    i += take;
                    *self = if left - take as u64 == 0 {
                        Chunked::DataEnd(0)
                    } else {
                        Chunked::Data(left - take as u64)
                    };
                    continue;
                }
                Chunked::DataEnd(seen) => match (seen, b) {
                    (0, b'\r') => *self = Chunked::DataEnd(1),
                    (_, b'\n') => *self = Chunked::Size(0, false),
                    _ => return Err(ErrorKind::Protocol),
                },
                Chunked::Trailer(len) => match b {
                    b'\r' => {}
                    b'\n' if len == 0 => return Ok((i + 1, true)),
                    b'\n' => *self = Chunked::Trailer(0),
                    _ => *self = Chunked::Trailer(len + 1),
                },
            }
            i += 1;
        }
        Ok((i, false))
    }

    fn from_size(n: u64) -> Chunked {
        if n == 0 {
            Chunked::Trailer(0)
        } else {
            Chunked::Data(n)
        }
    }
}

/// Maps an I/O error to the kind of failure it reports.
pub fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset | K::ConnectionAborted => ErrorKind::Reset,
        K::BrokenPipe | K::UnexpectedEof | K::WriteZero => ErrorKind::Closed,
        K::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Result<(usize, bool), ErrorKind> {
        let mut s = Chunked::Size(0, false);
        let mut total = 0;
        for c in chunks {
            let (used, done) = s.advance(c, None)?;
            total += used;
            if done {
                return Ok((total, true));
            }
        }
        Ok((total, false))
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let body = b"5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            let (used, done) = decode(&[a, b]).unwrap();
            assert!(done, "split at {split}");
            assert_eq!(used, end, "split at {split}");
        }
        assert_eq!(decode(&[b"5\r\nhel"]).unwrap(), (6, false));
        assert_eq!(decode(&[b"zz\r\n"]), Err(ErrorKind::Protocol));
        assert_eq!(decode(&[b"1\r\naXY"]), Err(ErrorKind::Protocol));
    }

    #[test]
    fn requests_are_encoded_once() {
        let mut h = HeaderMap::new();
        h.insert("x-a", "1".parse().unwrap());
        let r = encode_request(
            &Method::POST,
            "/p?q",
            "h:1",
            &h,
            &Bytes::from_static(b"abc"),
        );
        assert_eq!(
            &r[..],
            b"POST /p?q HTTP/1.1\r\nhost: h:1\r\nx-a: 1\r\ncontent-length: 3\r\n\r\nabc"
        );
        h.insert(HOST, "other".parse().unwrap());
        let r = encode_request(&Method::GET, "/", "h:1", &h, &Bytes::new());
        assert_eq!(&r[..], b"GET / HTTP/1.1\r\nx-a: 1\r\nhost: other\r\n\r\n");
    }
}
