//! A small synchronous HTTP/1.1 server: one accept loop, a fixed pool of worker threads, one
//! request per connection (`Connection: close`), hard limits on what a client may send.
//!
//! Kept to what the dashboard needs: GET and POST, `Content-Length` bodies (no chunked uploads),
//! and a streaming reply (Server-Sent Events) that moves the connection to a thread of its own so
//! a long stream never holds a worker.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything in front of the body: request line and headers together.
pub const MAX_HEAD: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;
/// The largest request body (a job form is a few KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// Connections waiting for a worker beyond this are answered 503 at once.
const QUEUE: usize = 64;
/// Streams (SSE) open at once, each on a thread of its own.
pub const MAX_STREAMS: usize = 256;
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// The whole request head and body, however slowly it trickles in.
const REQUEST_DEADLINE: Duration = Duration::from_secs(20);

/// A connection: TCP, TLS over TCP, or a unix socket.
pub trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// Who is on the other end.
#[derive(Debug, Clone)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A unix-socket client and its uid (SO_PEERCRED), when known.
    Unix(Option<u32>),
}

impl Peer {
    /// The key of the login rate limit.
    pub fn key(&self) -> String {
        match self {
            Peer::Tcp(a) => a.ip().to_string(),
            Peer::Unix(uid) => format!("uid {}", uid.map(|u| u.to_string()).unwrap_or_default()),
        }
    }
}

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path, percent-decoded, without the query.
    pub path: String,
    pub query: HashMap<String, String>,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub peer: Peer,
    pub tls: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.header("cookie")?.split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    }

    /// The body as an `application/x-www-form-urlencoded` form.
    pub fn form(&self) -> HashMap<String, String> {
        parse_query(&String::from_utf8_lossy(&self.body))
    }
}

/// A reply: a complete body, or a stream that writes until it is done.
pub enum Reply {
    Full(Response),
    Stream(StreamReply),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What writes a streamed reply's body.
pub type StreamBody = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// A streamed reply: its headers, then `write` runs on a thread of its own with the connection.
pub struct StreamReply {
    pub headers: Vec<(String, String)>,
    pub write: StreamBody,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body: String = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn html(status: u16, body: String) -> Response {
        Response::new(status, "text/html; charset=utf-8", body)
    }

    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        match serde_json::to_vec_pretty(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Response::new(status, "application/json", body)
            }
            Err(e) => Response::text(500, format!("cannot encode JSON: {e}")),
        }
    }

    pub fn redirect(to: &str) -> Response {
        let mut r = Response::new(303, "text/plain; charset=utf-8", format!("see {to}\n"));
        r.headers.push(("Location".into(), to.into()));
        r
    }

    pub fn with(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Percent-decoding (`+` as a space, as forms send it).
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("0");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encoding of a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// A reader that fails once its deadline has passed: the socket's timeout bounds each read, this
/// bounds them all (a client sending a byte every few seconds would otherwise hold a worker).
struct Due<'a> {
    inner: &'a mut dyn Conn,
    until: Instant,
}

impl Read for Due<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() > self.until {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request deadline"));
        }
        self.inner.read(buf)
    }
}

fn read_failed(e: &io::Error) -> Refused {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Refused(408, "request timeout"),
        _ => Refused(400, "could not read the request"),
    }
}

/// Why a request was not read: answered with this status and message, then closed.
#[derive(Debug)]
pub struct Refused(pub u16, pub &'static str);

/// Read one request within the limits.
pub fn read_request(conn: &mut dyn Conn, peer: Peer, tls: bool) -> Result<Request, Refused> {
    read_request_within(conn, peer, tls, REQUEST_DEADLINE)
}

/// [`read_request`] with the whole request due within `deadline`.
fn read_request_within(
    conn: &mut dyn Conn,
    peer: Peer,
    tls: bool,
    deadline: Duration,
) -> Result<Request, Refused> {
    let mut reader = BufReader::with_capacity(
        4096,
        Due {
            inner: conn,
            until: Instant::now() + deadline,
        },
    );
    let mut head = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    loop {
        let mut line = Vec::new();
        let limit = (MAX_HEAD + 1).saturating_sub(head.len()) as u64;
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(|e| read_failed(&e))?;
        if n == 0 {
            return Err(Refused(400, "the request ended early"));
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD {
            return Err(Refused(431, "request head too large"));
        }
        if !line.ends_with(b"\n") {
            return Err(Refused(400, "the request ended early"));
        }
        let text = String::from_utf8(line).map_err(|_| Refused(400, "the head is not UTF-8"))?;
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.is_empty() {
            if lines.is_empty() {
                continue; // a stray CRLF before the request line is allowed
            }
            break;
        }
        lines.push(text);
        if lines.len() > MAX_HEADERS + 1 {
            return Err(Refused(431, "too many header fields"));
        }
    }
    let mut first = lines[0].split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(Refused(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Refused(400, "only HTTP/1.x is spoken here"));
    }
    let mut headers = HashMap::new();
    for line in &lines[1..] {
        let Some((k, v)) = line.split_once(':') else {
            return Err(Refused(400, "malformed header field"));
        };
        if k.is_empty() || k.contains(' ') {
            return Err(Refused(400, "malformed header field"));
        }
        headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
    }
    if headers.contains_key("transfer-encoding") {
        return Err(Refused(411, "send a Content-Length, not a chunked body"));
    }
    let length = match headers.get("content-length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| Refused(400, "bad Content-Length"))?,
    };
    if length > MAX_BODY {
        return Err(Refused(413, "request body too large"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Refused(400, "the body ended early"),
        _ => read_failed(&e),
    })?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, parse_query(q)),
        None => (target, HashMap::new()),
    };
    if !path.starts_with('/') {
        return Err(Refused(400, "the target must be a path"));
    }
    Ok(Request {
        method: method.to_string(),
        path: decode(&path.replace('+', "%2B")),
        query,
        headers,
        body,
        peer,
        tls,
    })
}

fn write_head(
    out: &mut dyn Write,
    status: u16,
    headers: &[(String, String)],
    length: Option<usize>,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        // Header values are ours, but never let one carry a line break.
        let v = v.replace(['\r', '\n'], " ");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(n) = length {
        head.push_str(&format!("Content-Length: {n}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    out.write_all(head.as_bytes())
}

pub fn write_response(out: &mut dyn Write, r: &Response, head_only: bool) -> io::Result<()> {
    write_head(out, r.status, &r.headers, Some(r.body.len()))?;
    if !head_only {
        out.write_all(&r.body)?;
    }
    out.flush()
}

/// Where the server listens.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

type Accepted = (Box<dyn Conn>, Peer, bool);

/// What turns an accepted TCP stream into a connection (TLS, or the stream itself).
pub type Wrap = Arc<dyn Fn(TcpStream) -> io::Result<Box<dyn Conn>> + Send + Sync>;

/// Serve forever: `workers` threads call `handle` for each request.
pub fn serve(
    listener: Listener,
    workers: usize,
    wrap: Option<Wrap>,
    handle: Arc<dyn Fn(Request) -> Reply + Send + Sync>,
) -> io::Result<()> {
    let (tx, rx): (SyncSender<Accepted>, Receiver<Accepted>) = sync_channel(QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    let streams = Arc::new(AtomicUsize::new(0));
    for i in 0..workers.max(1) {
        let rx = Arc::clone(&rx);
        let handle = Arc::clone(&handle);
        let streams = Arc::clone(&streams);
        std::thread::Builder::new()
            .name(format!("web-{i}"))
            .spawn(move || loop {
                let next = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((conn, peer, tls)) = next else { return };
                one(conn, peer, tls, &*handle, &streams);
            })?;
    }
    loop {
        let accepted: io::Result<Accepted> = match &listener {
            Listener::Tcp(l) => l.accept().and_then(|(s, addr)| {
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                s.set_nodelay(true)?;
                Ok(match &wrap {
                    Some(w) => (w(s)?, Peer::Tcp(addr), true),
                    None => (Box::new(s) as Box<dyn Conn>, Peer::Tcp(addr), false),
                })
            }),
            Listener::Unix(l) => l.accept().and_then(|(s, _)| {
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                let uid = peer_uid(&s);
                Ok((Box::new(s) as Box<dyn Conn>, Peer::Unix(uid), false))
            }),
        };
        let item = match accepted {
            Ok(item) => item,
            Err(e) => {
                tracing::debug!("accept: {e}");
                // EMFILE and the like: do not spin.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full((mut conn, _, _))) => {
                let _ = write_response(&mut conn, &Response::text(503, "busy, try again"), false);
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(io::Error::other("every worker thread has stopped"))
            }
        }
    }
}

/// The uid of a unix-socket client.
fn peer_uid(s: &UnixStream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writes of the sizes given; the fd is open.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

fn one(
    mut conn: Box<dyn Conn>,
    peer: Peer,
    tls: bool,
    handle: &(dyn Fn(Request) -> Reply + Send + Sync),
    streams: &Arc<AtomicUsize>,
) {
    let req = match read_request(&mut *conn, peer, tls) {
        Ok(r) => r,
        Err(Refused(status, why)) => {
            let _ = write_response(&mut conn, &Response::text(status, why), false);
            return;
        }
    };
    let head_only = req.method == "HEAD";
    // A panic in a page is a 500, never a dead worker.
    let reply = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(req)))
        .unwrap_or_else(|_| Reply::Full(Response::text(500, "internal error")));
    match reply {
        Reply::Full(r) => {
            let _ = write_response(&mut conn, &r, head_only);
        }
        Reply::Stream(s) => {
            if streams.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
                streams.fetch_sub(1, Ordering::SeqCst);
                let _ = write_response(&mut conn, &Response::text(503, "too many streams"), false);
                return;
            }
            let streams = Arc::clone(streams);
            let spawned = std::thread::Builder::new()
                .name("web-stream".into())
                .spawn(move || {
                    if write_head(&mut conn, 200, &s.headers, None).is_ok() {
                        let _ = (s.write)(&mut conn);
                    }
                    streams.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                tracing::warn!("cannot start a stream thread");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    struct Fake(Cursor<Vec<u8>>, Vec<u8>);
    impl Read for Fake {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.0.read(b)
        }
    }
    impl Write for Fake {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.1.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn read(raw: &[u8]) -> Result<Request, Refused> {
        let mut f = Fake(Cursor::new(raw.to_vec()), Vec::new());
        read_request(&mut f, Peer::Unix(None), false)
    }

    #[test]
    fn parses_a_post_with_its_form() {
        let r = read(
            b"POST /jobs/a%20b?x=1&y=%3C HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nname=a+b&",
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/jobs/a b");
        assert_eq!(r.query["y"], "<");
        assert_eq!(r.form()["name"], "a b");
    }

    #[test]
    fn refuses_oversized_heads_bodies_and_chunks() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(read(big.as_bytes()).unwrap_err().0, 431);
        let many: String = (0..100).map(|i| format!("X{i}: 1\r\n")).collect();
        assert_eq!(
            read(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes())
                .unwrap_err()
                .0,
            431
        );
        let body = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(read(body.as_bytes()).unwrap_err().0, 413);
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap_err()
                .0,
            411
        );
        assert_eq!(read(b"GET /\r\n\r\n").unwrap_err().0, 400);
    }

    /// A client that sends one byte at a time, slowly.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(20));
            if self.1 >= self.0.len() || b.is_empty() {
                return Ok(0);
            }
            b[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }
    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_trickling_client_is_cut_off_at_the_deadline() {
        let raw = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(200));
        let mut slow = Trickle(raw.into_bytes(), 0);
        let start = std::time::Instant::now();
        let r = read_request_within(
            &mut slow,
            Peer::Unix(None),
            false,
            Duration::from_millis(300),
        );
        assert_eq!(r.unwrap_err().0, 408);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn decodes_and_encodes() {
        assert_eq!(decode("a%2Fb+c%"), "a/b c%");
        assert_eq!(encode("a b/<"), "a%20b%2F%3C");
        assert_eq!(decode(&encode("x y&z=é")), "x y&z=é");
    }
}
