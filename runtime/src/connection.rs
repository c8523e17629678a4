//! One client connection's life: keep-alive idleness, graceful closing, and parking.
//!
//! An idle HTTP/1.1 keep-alive connection costs hyper about 16 KiB of buffers (8 KiB to
//! read, 8 KiB for response heads) for as long as it stays open, which with 10 000 idle
//! clients is most of the server's memory. So a plaintext HTTP/1.1 connection idle for
//! [`PARK_AFTER`] is *parked*: hyper's connection is ended without closing the socket
//! (`poll_without_shutdown`), the socket waits for its next bytes holding no buffer, and
//! when they come a new hyper connection takes over where the last one stopped (any bytes
//! hyper had read but not parsed go first). A parked connection is closed when the
//! keep-alive timeout passes or the server shuts down, as an unparked one would be.
//! HTTP/2 (prior knowledge) and TLS connections are not parked.

use bytes::{Buf, Bytes};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Idle time after which a plaintext HTTP/1.1 connection gives its buffers back. Short
/// enough that idle crowds cost little, long enough that a client sending every few
/// hundred milliseconds never pays for a new hyper connection.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// The client preface that opens an HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves a plaintext connection: HTTP/2 if it opens with the HTTP/2 preface (h2c), else
/// HTTP/1.1, parked whenever it idles for [`PARK_AFTER`]. `first_bytes` (the header-read
/// timeout) bounds the wait for the first bytes, and for the next request's.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_plain<S>(
    stream: TcpStream,
    service: S,
    h1: &http1::Builder,
    h2: &http2::Builder<TokioExecutor>,
    activity: Arc<Activity>,
    keep_alive: Duration,
    first_bytes: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    S: HttpService<Incoming> + Clone + Unpin,
    S::Future: Send + Unpin + 'static,
    S::ResBody: 'static + Send,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tokio::time::timeout(first_bytes, is_h2(&stream)).await {
        Ok(Ok(true)) => {
            let io = TokioIo::new(Watched::new(stream, activity.clone()));
            // Boxed, like the HTTP/1.1 connection below: the future of every connection,
            // parked ones included, is as large as its largest state.
            return Box::pin(async move {
                let conn = std::pin::pin!(h2.serve_connection(io, service));
                drive(
                    conn,
                    |c| c.graceful_shutdown(),
                    &activity,
                    keep_alive,
                    shutdown,
                )
                .await
            })
            .await;
        }
        Ok(Ok(false)) => {}
        // Gone, or silent for the whole header-read timeout.
        Ok(Err(_)) | Err(_) => return Ok(()),
    }
    let mut io = Watched::new(stream, activity.clone());
    loop {
        let mut conn = Box::new(h1.serve_connection(TokioIo::new(io), service.clone()));
        let park = {
            let mut closing = false;
            let mut parking = false;
            loop {
                let next = match activity.idle() {
                    Some(_) if closing || parking => keep_alive,
                    Some(idle) if idle >= keep_alive => {
                        Pin::new(&mut *conn).graceful_shutdown();
                        closing = true;
                        keep_alive
                    }
                    Some(idle) if idle >= PARK_AFTER => {
                        Pin::new(&mut *conn).graceful_shutdown();
                        parking = true;
                        keep_alive
                    }
                    Some(idle) => PARK_AFTER.min(keep_alive) - idle.min(PARK_AFTER.min(keep_alive)),
                    None => PARK_AFTER.min(keep_alive),
                };
                tokio::select! {
                    done = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                        done?;
                        break parking && !closing;
                    }
                    _ = tokio::time::sleep(next), if !closing && !parking => {}
                    _ = shutdown.wait_for(|stop| *stop), if !closing => {
                        Pin::new(&mut *conn).graceful_shutdown();
                        closing = true;
                    }
                }
            }
        };
        // Only the socket and the unparsed bytes outlive hyper's connection: whatever else
        // stayed in scope here would be held by every parked connection's future.
        let read_buf = {
            let parts = (*conn).into_parts();
            io = parts.io.into_inner();
            parts.read_buf
        };
        if !park {
            // Done: the client closed, or keep-alive ended, or the server is stopping.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
            return Ok(());
        }
        PARKED.fetch_add(1, Ordering::Relaxed);
        // Bytes hyper read but did not parse go first on the next connection.
        if !read_buf.is_empty() {
            io.prefix = read_buf;
            continue;
        }
        // hyper's 8 KiB read buffer: freed now, not when the client speaks again.
        drop(read_buf);
        // hyper's header-read timer also bounds an idle keep-alive; parked, it still does.
        let limit = keep_alive.min(first_bytes);
        let left = limit.saturating_sub(activity.idle().unwrap_or_default());
        tokio::select! {
            ready = io.inner.readable() => {
                if ready.is_err() {
                    return Ok(());
                }
                // A request (or the end) is arriving: no longer idle, so the next
                // connection reads it rather than parking again.
                activity.reading.store(true, Ordering::Relaxed);
            }
            _ = tokio::time::sleep(left) => return Ok(()),
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        }
    }
}

/// Connections parked since [`start_trimmer`] last looked.
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// How often the trimmer looks.
pub const TRIM_EVERY: Duration = Duration::from_secs(2);
/// How many parkings since it last looked make the trimmer trim.
pub const TRIM_AFTER_PARKED: usize = 256;

/// Starts a thread that gives the buffers parked connections freed back to the operating
/// system ([`crate::alloc::release_freed_memory`]). An allocator keeps freed memory inside
/// its heap, between the small allocations that stay live, so without this a crowd of
/// connections that came, asked once and went idle could keep the server's RSS at its
/// peak (measured with glibc's malloc: 10 000 idle connections kept 156 MiB resident; see
/// docs/benchmarks.md). It trims at most every
/// [`TRIM_EVERY`], and only after [`TRIM_AFTER_PARKED`] parkings, so a steady server never
/// pays for it.
pub fn start_trimmer() {
    let _ = std::thread::Builder::new()
        .name("edge-trim".into())
        .spawn(|| {
            loop {
                std::thread::sleep(TRIM_EVERY);
                if PARKED.swap(0, Ordering::Relaxed) >= TRIM_AFTER_PARKED {
                    crate::alloc::release_freed_memory();
                }
            }
        });
}

/// Whether a new connection opens with the HTTP/2 preface, looking without consuming.
async fn is_h2(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // Part of the preface so far: peek would return at once with the same bytes.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What one connection is doing, for its keep-alive timer: requests in flight, when the
/// last one ended, and whether a new request's bytes have started to arrive.
pub(crate) struct Activity {
    base: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds after `base` when the connection last went idle.
    idle_since: AtomicU64,
    /// Bytes arrived while idle: an HTTP/1.1 request head is on its way, which
    /// `--header-read-timeout` governs, not the keep-alive timer.
    reading: AtomicBool,
    /// The connection speaks HTTP/2, whose frames (pings, window updates) are not requests.
    h2: AtomicBool,
    first_read: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            reading: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            first_read: AtomicBool::new(true),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// A request started; the guard ends it.
    pub(crate) fn request(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.reading.store(false, Ordering::Relaxed);
        Busy(self.clone())
    }

    fn read(&self, bytes: &[u8]) {
        if self.first_read.swap(false, Ordering::Relaxed) && bytes.starts_with(b"PRI * HTTP/2") {
            self.h2.store(true, Ordering::Relaxed);
        }
        if !self.h2.load(Ordering::Relaxed) && self.in_flight.load(Ordering::Relaxed) == 0 {
            self.reading.store(true, Ordering::Relaxed);
        }
    }

    /// How long the connection has been idle: no request in flight and none arriving.
    fn idle(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 || self.reading.load(Ordering::Relaxed) {
            return None;
        }
        let since = self.idle_since.load(Ordering::Relaxed);
        Some(Duration::from_nanos(self.now().saturating_sub(since)))
    }
}

/// One request in flight on a connection.
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since.store(a.now(), Ordering::Relaxed);
        a.reading.store(false, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's byte stream, telling its [`Activity`] when bytes arrive. It also holds bytes read from it before, which it returns first: those a parked
/// connection's last hyper connection read but did not parse.
pub(crate) struct Watched<S> {
    inner: S,
    prefix: Bytes,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Watched<S> {
        Watched {
            inner,
            prefix: Bytes::new(),
            activity,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            // Seen (and told to the activity) when first read.
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs a connection to its end. It is closed gracefully (HTTP/1.1: after the response in
/// progress; HTTP/2: GOAWAY, streams finish) when the server shuts down, or when it has
/// been idle for `keep_alive`.
pub(crate) async fn drive<C, E>(
    mut conn: Pin<&mut C>,
    close: impl Fn(Pin<&mut C>),
    activity: &Activity,
    keep_alive: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut closing = false;
    loop {
        // The timer only wakes this loop every `keep_alive` or so, never per request.
        let next = match activity.idle() {
            Some(idle) if idle >= keep_alive => {
                close(conn.as_mut());
                closing = true;
                keep_alive
            }
            Some(idle) => keep_alive - idle,
            None => keep_alive,
        };
        tokio::select! {
            done = conn.as_mut() => return done,
            _ = tokio::time::sleep(next), if !closing => {}
            _ = shutdown.wait_for(|stop| *stop), if !closing => {
                close(conn.as_mut());
                closing = true;
            }
        }
    }
}
