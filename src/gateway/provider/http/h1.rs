//! One HTTP/1.1 connection to a plain-HTTP upstream, driven by the task of the request
//! that holds it: the request is written and its response read (head and body, parsed by
//! `httparse`) where they are awaited, with no connection task beside the request.
//!
//! hyper's client connection is a task of its own, and every exchange on it crosses
//! between two tasks three times (the request handed over, the response head handed back,
//! the body's frames passed through a channel), each a wake-up and a poll of both. Here a
//! connection is lent to one exchange at a time, so nothing needs handing over: the
//! request's future writes and reads the socket itself.
//!
//! Responses are framed as RFC 9112 says: no body for 1xx (skipped), 204 and 304; chunked
//! when `Transfer-Encoding` ends with it (any other coding reads to the close); else
//! `Content-Length`; else to the close. A connection is kept for another exchange only
//! after a whole HTTP/1.1 response with nothing after it and no `Connection: close`.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::header::{
    CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A response head (status line and headers) larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;

/// Headers a response (or its trailers) may have.
const MAX_HEADERS: usize = 128;

/// The least room a read is given.
const READ_ROOM: usize = 8 * 1024;

/// A request body up to this size is copied behind its head, so both leave in one write.
const INLINE_BODY: usize = 16 * 1024;

/// Why an exchange or its body failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("upstream connection: {0}")]
    Io(#[from] io::Error),
    #[error("the upstream closed the connection before it answered")]
    Closed,
    #[error("malformed response head: {0}")]
    Head(&'static str),
    #[error("the response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("the upstream closed the connection in the middle of the body")]
    Truncated,
    #[error("malformed chunked body")]
    Chunked,
}

/// An open connection, between exchanges or lent to one.
pub struct Conn {
    io: TcpStream,
    /// Read and not yet used: the rest of a response.
    buf: BytesMut,
}

/// How a response's body ends, and how much of it is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked, at this point of its grammar.
    Chunked(Chunk),
    /// The body ends when the upstream closes the connection.
    Eof,
    /// Read to its end.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of a chunk's data are left.
    Data(u64),
    /// The CRLF after a chunk's data is next.
    DataEnd,
    /// The trailer section (after the last chunk) is next.
    Trailers,
}

/// What decoding the buffer gave.
enum Step {
    Data(Bytes),
    /// More must be read first.
    More,
    Done,
}

impl Conn {
    pub fn new(io: TcpStream) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Whether an idle connection can carry another exchange: the upstream has not closed
    /// it and has sent nothing since. Does not wait: what the runtime has not yet seen of
    /// the socket is not looked for. Costs no system call when the runtime has seen nothing
    /// arrive since the last read drained the socket (`try_read` asks the socket only when
    /// it is marked readable), which is the common case.
    /// (A connection goes back only with nothing left in its buffer: see `Body::finish`.)
    pub fn reusable(&mut self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes `head` and `body`; `Err(None)` when nothing at all was written (the request
    /// may be sent again elsewhere), `Err(Some(_))` once any of it was.
    pub async fn write(&mut self, head: &[u8], body: &[u8]) -> Result<(), Option<Error>> {
        let mut slices = [IoSlice::new(head), IoSlice::new(body)];
        let mut parts = &mut slices[..];
        let mut written_any = false;
        while !parts.is_empty() {
            match self.io.write_vectored(parts).await {
                Ok(0) => return Err(written_any.then_some(Error::Closed)),
                Ok(n) => {
                    written_any = true;
                    IoSlice::advance_slices(&mut parts, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(written_any.then_some(Error::Io(e))),
            }
        }
        Ok(())
    }

    /// Reads the response's head; its body is then read through `Body`.
    pub async fn read_head(&mut self) -> Result<(Response<()>, Framing, bool), Error> {
        loop {
            if !self.buf.is_empty() {
                match parse_head(&mut self.buf)? {
                    Some(Parsed::Interim) => continue,
                    Some(Parsed::Final(response, framing, keep)) => {
                        return Ok((response, framing, keep));
                    }
                    None => {}
                }
            }
            let had = self.buf.len();
            if std::future::poll_fn(|cx| self.poll_fill(cx)).await? == 0 {
                return Err(match had {
                    0 => Error::Closed,
                    _ => Error::Truncated,
                });
            }
        }
    }

    /// Reads what the socket has into the buffer: `Ok(0)` at its end.
    ///
    /// Through the stream's `AsyncRead`, not `try_read_buf`: a read that leaves room in the
    /// buffer tells the runtime that the socket is drained, so neither the next read of a
    /// stream nor [`Conn::reusable`] at the next checkout spends a `recv` that can only
    /// answer "would block".
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(READ_ROOM);
        loop {
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.io),
                cx,
                &mut self.buf
            )) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
    }

    /// Decodes the next piece of the body from the buffer.
    fn step(&mut self, framing: &mut Framing) -> Result<Step, Error> {
        loop {
            match *framing {
                Framing::Done => return Ok(Step::Done),
                Framing::Length(0) => *framing = Framing::Done,
                Framing::Length(left) => {
                    let Some(data) = self.take(left) else {
                        return Ok(Step::More);
                    };
                    *framing = Framing::Length(left - data.len() as u64);
                    return Ok(Step::Data(data));
                }
                Framing::Eof => {
                    return Ok(match self.buf.is_empty() {
                        true => Step::More,
                        false => Step::Data(self.buf.split().freeze()),
                    });
                }
                Framing::Chunked(Chunk::Size) => match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.buf.advance(used);
                        *framing = Framing::Chunked(match size {
                            0 => Chunk::Trailers,
                            n => Chunk::Data(n),
                        });
                    }
                    Ok(httparse::Status::Partial) => return Ok(Step::More),
                    Err(_) => return Err(Error::Chunked),
                },
                Framing::Chunked(Chunk::Data(left)) => {
                    let Some(data) = self.take(left) else {
                        return Ok(Step::More);
                    };
                    let left = left - data.len() as u64;
                    *framing = Framing::Chunked(match left {
                        0 => Chunk::DataEnd,
                        n => Chunk::Data(n),
                    });
                    return Ok(Step::Data(data));
                }
                Framing::Chunked(Chunk::DataEnd) => match self.buf.get(..2) {
                    None => return Ok(Step::More),
                    Some(b"\r\n") => {
                        self.buf.advance(2);
                        *framing = Framing::Chunked(Chunk::Size);
                    }
                    Some(_) => return Err(Error::Chunked),
                },
                Framing::Chunked(Chunk::Trailers) => {
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    match httparse::parse_headers(&self.buf, &mut headers) {
                        Ok(httparse::Status::Complete((used, _))) => {
                            self.buf.advance(used);
                            *framing = Framing::Done;
                        }
                        Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                            return Err(Error::HeadTooLarge);
                        }
                        Ok(httparse::Status::Partial) => return Ok(Step::More),
                        Err(_) => return Err(Error::Chunked),
                    }
                }
            }
        }
    }

    /// Up to `left` buffered bytes, or `None` when none are buffered.
    fn take(&mut self, left: u64) -> Option<Bytes> {
        if self.buf.is_empty() {
            return None;
        }
        let n = usize::try_from(left).map_or(self.buf.len(), |left| left.min(self.buf.len()));
        Some(self.buf.split_to(n).freeze())
    }

    /// Reads and drops what is left of a body, as far as the socket already has it:
    /// `Ok(true)` when the body is then complete.
    pub fn drain(&mut self, framing: &mut Framing) -> Result<bool, Error> {
        loop {
            match self.step(framing)? {
                Step::Data(_) => {}
                Step::Done => return Ok(true),
                Step::More => {
                    if *framing == Framing::Eof {
                        return Ok(false);
                    }
                    self.buf.reserve(READ_ROOM);
                    match self.io.try_read_buf(&mut self.buf) {
                        Ok(0) => return Err(Error::Truncated),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) => return Err(Error::Io(e)),
                    }
                }
            }
        }
    }
}

/// A response head parsed from the front of a buffer.
enum Parsed {
    /// A 1xx response (no body), to be passed over.
    Interim,
    /// The response, how its body is framed, and whether the connection may be kept.
    Final(Response<()>, Framing, bool),
}

/// The response headers read beyond this module: the body's type and a refusal's
/// `Retry-After`. How the body is framed and whether the connection stays are read from
/// the head as parsed (`framing`), and no other is kept: an upstream's own (request ids,
/// rate-limit counters, cookies), or its framing headers, would each cost a copy of its
/// value and a place in the map, for nothing.
const KEPT: [(&str, HeaderName); 2] =
    [("content-type", CONTENT_TYPE), ("retry-after", RETRY_AFTER)];

/// The values of the parsed head's headers named `name` (any case), in order.
fn values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl DoubleEndedIterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Parses the head at the front of `buf` and takes it off; `None` while it is incomplete.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Parsed>, Error> {
    // Left uninitialized: httparse fills what it uses, so no 4 KiB of empty headers are
    // written first on every response (callgrind: parse_head 4.0 k -> 3.7 k instructions).
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let read = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        &mut headers,
    );
    let used = match read {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(Error::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::Head("too many headers")),
        Err(_) => return Err(Error::Head("not an HTTP/1.x response")),
    };
    let code = parsed.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| Error::Head("invalid status"))?;
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(Error::Head("an upgrade was not asked for"));
    }
    if status.is_informational() {
        buf.advance(used);
        return Ok(Some(Parsed::Interim));
    }
    let mut map = HeaderMap::with_capacity(KEPT.len());
    for h in parsed.headers.iter() {
        let Some((_, name)) = KEPT.iter().find(|(n, _)| h.name.eq_ignore_ascii_case(n)) else {
            continue;
        };
        let value = HeaderValue::from_bytes(h.value).map_err(|_| Error::Head("header value"))?;
        map.append(name.clone(), value);
    }
    let (framing, mut keep) = framing(status, parsed.headers)?;
    keep &= version == Version::HTTP_11 && !has_token(parsed.headers, "connection", "close");
    buf.advance(used);
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = map;
    Ok(Some(Parsed::Final(response, framing, keep)))
}

/// How the body of a response with `status` and `headers` is framed, and whether that
/// framing leaves the connection usable after it.
fn framing(status: StatusCode, headers: &[httparse::Header<'_>]) -> Result<(Framing, bool), Error> {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Done, true));
    }
    if values(headers, "transfer-encoding").next().is_some() {
        let last = values(headers, "transfer-encoding")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|coding| !coding.is_empty());
        // With a Content-Length beside it, the message may have been smuggled past
        // something: read it as chunked, then close.
        let alone = values(headers, "content-length").next().is_none();
        return Ok(match last {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => (Framing::Chunked(Chunk::Size), alone),
            _ => (Framing::Eof, false),
        });
    }
    let mut length = None;
    for value in values(headers, "content-length") {
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(Error::Head("invalid Content-Length"));
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Error::Head("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Head("conflicting Content-Length"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::Eof, false),
    })
}

/// Whether a comma-separated header has `token` (ASCII case-insensitive).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    values(headers, name).any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// What `Conn::write` sends for `request` (its URI origin-form, a path) and `body`: the
/// request line and headers, with a body up to `INLINE_BODY` copied behind them so that
/// both leave in one write; and the body left to follow them (empty when it went inline).
pub fn encode(request: &Request<()>, body: Bytes) -> (Vec<u8>, Bytes) {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let post = request.method() == axum::http::Method::POST;
    encode_head(
        (request.method().as_str(), path),
        b"",
        request.headers(),
        post,
        body,
    )
}

/// The header lines `headers` write in a request head (`name: value\r\n` each), the
/// framing headers left out: the head states the body's length itself. An upstream's
/// fixed headers are written so once (`HttpCore`), not for every request.
pub fn header_lines<'a>(
    headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    push_lines(&mut out, headers);
    out
}

fn push_lines<'a>(
    out: &mut Vec<u8>,
    headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
) {
    for (name, value) in headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// `encode` from parts: the request line of `method` and `path`, `lines` already written
/// (`header_lines`), then `headers`, the body's length (for a body, or any POST) and the
/// body itself when it goes inline.
pub fn encode_head<'a>(
    (method, path): (&str, &str),
    lines: &[u8],
    headers: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    post: bool,
    body: Bytes,
) -> (Vec<u8>, Bytes) {
    let inline = body.len() <= INLINE_BODY;
    let mut out =
        Vec::with_capacity(192 + path.len() + lines.len() + if inline { body.len() } else { 0 });
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(lines);
    push_lines(&mut out, headers);
    if !body.is_empty() || post {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    match inline {
        true => {
            out.extend_from_slice(&body);
            (out, Bytes::new())
        }
        false => (out, body),
    }
}

/// Where a connection goes when the exchange it was lent to is over (its pool).
pub trait Home: Unpin {
    fn take_back(self, conn: Conn);
}

/// A response body read from its connection as it is polled. When it is read to its end
/// (or dropped with the rest already in the socket), the connection goes home.
pub struct Body<H: Home> {
    conn: Option<Conn>,
    framing: Framing,
    keep: bool,
    home: Option<H>,
}

impl<H: Home> Body<H> {
    pub fn new(conn: Conn, framing: Framing, keep: bool, home: H) -> Self {
        let mut body = Self {
            conn: Some(conn),
            framing,
            keep,
            home: Some(home),
        };
        if framing == Framing::Done {
            body.finish();
        }
        body
    }

    /// The body is read: the connection goes back if it can carry another exchange.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let (Some(conn), Some(home)) = (self.conn.take(), self.home.take())
            && self.keep
            && conn.buf.is_empty()
        {
            home.take_back(conn);
        }
    }
}

impl<H: Home> Drop for Body<H> {
    /// Dropped before its end (a stream relayed up to its `[DONE]` before the closing
    /// chunk arrived, or one whose client left): what the socket already has of the rest
    /// is read, and the connection goes back if that was all of it; else it is closed.
    fn drop(&mut self) {
        if let Some(conn) = &mut self.conn
            && self.keep
            && self.framing != Framing::Done
            && matches!(conn.drain(&mut self.framing), Ok(true))
        {
            self.finish();
        }
    }
}

impl<H: Home> http_body::Body for Body<H> {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let step = match conn.step(&mut this.framing) {
                Ok(step) => step,
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            };
            match step {
                Step::Data(data) => {
                    if matches!(this.framing, Framing::Length(0)) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Step::More => match ready!(conn.poll_fill(cx)) {
                    Ok(0) if this.framing == Framing::Eof => {
                        this.framing = Framing::Done;
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    Ok(0) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(Error::Truncated)));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(Error::Io(e))));
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Option<Parsed>, Error> {
        parse_head(&mut BytesMut::from(raw))
    }

    fn final_of(raw: &[u8]) -> (StatusCode, Framing, bool) {
        match parse(raw) {
            Ok(Some(Parsed::Final(r, f, keep))) => (r.status(), f, keep),
            Ok(Some(Parsed::Interim)) => panic!("interim"),
            Ok(None) => panic!("partial"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_kept_headers_are_named_as_written() {
        for (name, header) in &KEPT {
            assert_eq!(*name, header.as_str());
        }
    }

    #[test]
    fn only_the_response_headers_read_here_are_kept() {
        let raw = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n\
            X-Request-Id: req_upstream\r\nSet-Cookie: a=b\r\nRetry-After: 7\r\n\
            anthropic-ratelimit-requests-remaining: 0\r\nContent-Length: 2\r\n\r\n{}";
        let Ok(Some(Parsed::Final(response, framing, keep))) = parse(raw) else {
            panic!("not a final response");
        };
        let mut kept: Vec<_> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            [("content-type", "application/json"), ("retry-after", "7")]
        );
        assert_eq!((framing, keep), (Framing::Length(2), true));
    }

    #[test]
    fn a_responses_body_is_framed_by_transfer_encoding_then_content_length_then_the_close() {
        let (s, f, keep) = final_of(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
        assert_eq!((s, f, keep), (StatusCode::OK, Framing::Length(12), true));
        let (_, f, keep) = final_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert_eq!((f, keep), (Framing::Chunked(Chunk::Size), true));
        // Chunked beside a length: read as chunked, and never reused.
        let (_, f, keep) =
            final_of(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n");
        assert_eq!((f, keep), (Framing::Chunked(Chunk::Size), false));
        let (_, f, keep) = final_of(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert_eq!((f, keep), (Framing::Eof, false));
        let (_, f, keep) = final_of(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((f, keep), (Framing::Eof, false));
        let (_, f, keep) = final_of(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n");
        assert_eq!((f, keep), (Framing::Done, true));
        let (_, f, _) = final_of(b"HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n");
        assert_eq!(f, Framing::Length(7));
    }

    #[test]
    fn a_connection_is_kept_only_after_an_http_1_1_response_without_connection_close() {
        let (_, _, keep) = final_of(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n",
        );
        assert!(!keep);
        let (_, _, keep) = final_of(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(!keep);
    }

    #[test]
    fn bad_heads_are_refused_with_their_reason() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 7, 8\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw), Err(Error::Head(_))),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut huge = b"HTTP/1.1 200 OK\r\nx: ".to_vec();
        huge.resize(MAX_HEAD + 10, b'a');
        assert!(matches!(parse(&huge), Err(Error::HeadTooLarge)));
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nx: 1\r\n"), Ok(None)));
        assert!(matches!(
            parse(b"HTTP/1.1 100 Continue\r\n\r\n"),
            Ok(Some(Parsed::Interim))
        ));
    }

    #[test]
    fn the_request_head_names_the_path_and_the_bodys_length_and_drops_framing_headers() {
        let mut request = Request::new(());
        *request.method_mut() = axum::http::Method::POST;
        *request.uri_mut() = axum::http::Uri::from_static("/v1/chat/completions?x=1");
        request
            .headers_mut()
            .insert("host", HeaderValue::from_static("engine:8000"));
        request
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
        let (head, rest) = encode(&request, Bytes::from_static(b"{}"));
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: engine:8000\r\ncontent-length: 2\r\n\r\n{}"
        );
        assert!(rest.is_empty());
        let mut get = Request::new(());
        *get.uri_mut() = axum::http::Uri::from_static("/health");
        assert_eq!(
            String::from_utf8(encode(&get, Bytes::new()).0).unwrap(),
            "GET /health HTTP/1.1\r\n\r\n"
        );
    }

    /// A connected pair: our end as a `Conn`, the upstream's as a plain stream.
    async fn pair() -> (Conn, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Conn::new(ours.unwrap()), theirs.unwrap().0)
    }

    /// Counts the connections given back.
    #[derive(Clone, Default)]
    struct Kept(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Home for Kept {
        fn take_back(self, _: Conn) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Kept {
        fn count(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    async fn collect<H: Home>(body: Body<H>) -> Result<Vec<u8>, Error> {
        use http_body_util::BodyExt;
        body.collect().await.map(|c| c.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn chunked_bodies_split_anywhere_decode_whole_and_give_the_connection_back() {
        let raw: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\ntrailer: x\r\n\r\n";
        for cut in [1, 7, 48, 50, 55, 61, raw.len() - 3, raw.len() - 1] {
            let (mut conn, mut upstream) = pair().await;
            let (first, rest) = raw.split_at(cut);
            let writer = async {
                upstream.write_all(first).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                upstream.write_all(rest).await.unwrap();
                upstream
            };
            let reader = async {
                let (response, framing, keep) = conn.read_head().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let kept = Kept::default();
                let body = Body::new(conn, framing, keep, kept.clone());
                let bytes = collect(body).await.unwrap();
                (bytes, kept.count() == 1)
            };
            let (_upstream, (bytes, back)) = tokio::join!(writer, reader);
            assert_eq!(bytes, b"hello 0123456789", "cut at {cut}");
            assert!(back, "cut at {cut}: the connection was not given back");
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error_and_its_connection_is_not_kept() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let (mut conn, mut upstream) = pair().await;
            upstream.write_all(raw).await.unwrap();
            upstream.shutdown().await.unwrap();
            let (_, framing, keep) = conn.read_head().await.unwrap();
            let kept = Kept::default();
            let body = Body::new(conn, framing, keep, kept.clone());
            assert!(collect(body).await.is_err());
            assert_eq!(kept.count(), 0);
        }
    }

    #[tokio::test]
    async fn a_body_read_to_the_close_ends_there_and_interim_responses_are_passed_over() {
        let (mut conn, mut upstream) = pair().await;
        upstream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nall of it")
            .await
            .unwrap();
        upstream.shutdown().await.unwrap();
        let (response, framing, keep) = conn.read_head().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!keep);
        let kept = Kept::default();
        let body = Body::new(conn, framing, keep, kept.clone());
        assert_eq!(collect(body).await.unwrap(), b"all of it");
        assert_eq!(kept.count(), 0);
    }

    #[tokio::test]
    async fn a_body_dropped_early_gives_its_connection_back_only_when_the_rest_is_there() {
        let head: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        for (rest_sent, kept_after) in [(true, 1), (false, 0)] {
            let (mut conn, mut upstream) = pair().await;
            upstream.write_all(head).await.unwrap();
            upstream.write_all(b"6\r\n[DONE]\r\n").await.unwrap();
            if rest_sent {
                upstream.write_all(b"0\r\n\r\n").await.unwrap();
            }
            let (_, framing, keep) = conn.read_head().await.unwrap();
            let kept = Kept::default();
            let mut body = Body::new(conn, framing, keep, kept.clone());
            use http_body_util::BodyExt;
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(&first[..], b"[DONE]");
            // Let the runtime see the rest arrive, as a relay's next turn would.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            drop(body);
            assert_eq!(kept.count(), kept_after, "rest sent: {rest_sent}");
        }
    }

    #[tokio::test]
    async fn a_large_body_leaves_whole_after_its_head_and_a_small_one_inside_it() {
        use tokio::io::AsyncReadExt;
        for len in [0, 300, INLINE_BODY, INLINE_BODY + 1, 3 * 1024 * 1024] {
            let (mut conn, mut upstream) = pair().await;
            let mut request = Request::new(());
            *request.method_mut() = axum::http::Method::POST;
            *request.uri_mut() = axum::http::Uri::from_static("/v1/embeddings");
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (head, rest) = encode(&request, Bytes::from(body.clone()));
            assert_eq!(rest.is_empty(), len <= INLINE_BODY, "{len}");
            let expected_head =
                format!("POST /v1/embeddings HTTP/1.1\r\ncontent-length: {len}\r\n\r\n");
            let total = expected_head.len() + len;
            let (written, received) = tokio::join!(conn.write(&head, &rest), async {
                let mut got = vec![0u8; total];
                upstream.read_exact(&mut got).await.unwrap();
                got
            });
            assert!(written.is_ok(), "{len}");
            assert_eq!(&received[..expected_head.len()], expected_head.as_bytes());
            assert!(received[expected_head.len()..] == body[..], "{len}");
        }
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_not_reusable() {
        let (mut conn, upstream) = pair().await;
        assert!(conn.reusable());
        drop(upstream);
        let mut seen = false;
        for _ in 0..100 {
            // The runtime learns of the close on its next turn.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            if !conn.reusable() {
                seen = true;
                break;
            }
        }
        assert!(seen);
        let (mut conn, mut upstream) = pair().await;
        upstream.write_all(b"unasked").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!conn.reusable());
    }
}
