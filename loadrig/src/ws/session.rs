//! One connection: open it at its slot, run sessions on it until the message phase is
//! over (reopening after a failure or a close by the server, with a growing pause), and
//! classify everything that goes wrong by kind.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, WebSocketConfig};

use crate::plan::Arrivals;
use crate::record::LATE_AFTER;

use super::{Slot, Traffic, Worker, bump};

/// The first pause before reopening a connection; it doubles up to [`MAX_BACKOFF`] while
/// attempts keep failing.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the closing handshake may take at the end of a session.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// The close code recorded when a session ends without a close frame (RFC 6455 §7.1.5).
const ABNORMAL: u16 = 1006;

/// A TCP stream that counts the bytes through it.
pub(super) struct Counted {
    inner: TcpStream,
    read: u64,
    written: u64,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        poll
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.written += n as u64;
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type Ws = WebSocketStream<Counted>;

/// Why the upgrade failed, as a kind for `ws_errors{kind:…}`.
fn handshake_kind(e: &WsError) -> String {
    match e {
        WsError::Http(resp) => format!("handshake_status_{}", resp.status().as_u16()),
        WsError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => "handshake_closed".into(),
        WsError::Io(e) if is_reset(e) => "reset".into(),
        WsError::Protocol(ProtocolError::HandshakeIncomplete)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => "handshake_closed".into(),
        WsError::Protocol(_) | WsError::HttpFormat(_) | WsError::Utf8(_) | WsError::Capacity(_) => {
            "handshake_invalid".into()
        }
        _ => "other".into(),
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Why an open session failed.
fn session_kind(e: &WsError) -> &'static str {
    match e {
        WsError::Io(e) if is_reset(e) => "reset",
        WsError::Io(_) => "io",
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => "oversized",
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => "closed_abruptly",
        WsError::Protocol(_) => "protocol",
        WsError::Utf8(_) => "invalid_utf8",
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed",
        _ => "other",
    }
}

/// Opens a connection and upgrades it, within the connect timeout.
async fn open(w: &Worker) -> Result<Ws, String> {
    let cfg = &w.cfg;
    let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(cfg.target.addr)).await {
        Err(_) => return Err("connect_timeout".into()),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err("connect_refused".into());
        }
        Ok(Err(_)) => return Err("connect".into()),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    w.stats.borrow_mut().tcp_connected();
    let mut request = cfg
        .target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad_request: {e}"))?;
    for (name, value) in &cfg.headers {
        request.headers_mut().insert(name, value.clone());
    }
    // Small read buffers: ten thousand idle connections should cost little; the buffer
    // grows for larger messages.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(cfg.max_message_size))
        .max_frame_size(Some(cfg.max_message_size));
    let stream = Counted {
        inner: tcp,
        read: 0,
        written: 0,
    };
    match tokio::time::timeout_at(
        deadline,
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)),
    )
    .await
    {
        Err(_) => Err("handshake_timeout".into()),
        Ok(Err(e)) => Err(handshake_kind(&e)),
        Ok(Ok((ws, _response))) => Ok(ws),
    }
}

/// One connection for the whole run.
pub(super) async fn connection(w: Rc<Worker>, local: usize, global: u64) {
    let slot = w.slots[local].clone();
    tokio::time::sleep_until((w.clock.start + w.connect_slot(global)).into()).await;
    let mut first = true;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let t0 = w.clock.now();
        let opened = open(&w).await;
        if first {
            first = false;
            w.global.first_attempt_done(w.clock);
        }
        match opened {
            Ok(ws) => {
                backoff = FIRST_BACKOFF;
                w.open.set(w.open.get() + 1);
                w.stats
                    .borrow_mut()
                    .opened(w.open.get(), w.clock.now() - t0);
                bump(&w.live.connected, 1);
                let (code, bytes, done) = Session::new(&w, &slot).run(ws).await;
                w.open.set(w.open.get() - 1);
                w.stats.borrow_mut().ended(w.clock.now() - t0, code, bytes);
                if done {
                    break;
                }
            }
            Err(kind) => w.fail(&kind),
        }
        if w.over.get() || !pause(&w, backoff).await {
            break;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    // Messages due on this connection that never went out (it was down).
    let unsent = slot.due.borrow_mut().drain(..).count() as u64;
    w.stats.borrow_mut().errors_by("unsent", unsent);
}

/// Waits `d` before reopening; false if the message phase ended meanwhile.
async fn pause(w: &Worker, d: Duration) -> bool {
    let until = tokio::time::Instant::now() + d;
    loop {
        if w.over.get() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return !w.over.get(),
            _ = w.phase_change() => {}
        }
    }
}

/// A message sent and not yet answered.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// When it was due (open model) or ready to go (closed model).
    intended: u64,
    sent: u64,
    /// Pings: the sequence number in the payload.
    seq: u64,
}

/// One session on an open connection.
struct Session<'a> {
    w: &'a Worker,
    slot: &'a Slot,
    pending: VecDeque<Pending>,
    seq: u64,
    /// The message every send carries (pings carry their sequence number instead).
    message: Option<Message>,
    payload: Bytes,
    /// Messages handed to the connection and not yet flushed to the socket.
    unflushed: bool,
}

enum Event {
    Frame(Option<Result<Message, WsError>>),
    Failed(WsError),
    Wake,
    TimedOut,
}

impl<'a> Session<'a> {
    fn new(w: &'a Worker, slot: &'a Slot) -> Self {
        let (message, payload) = match &w.cfg.traffic {
            Traffic::Messages { payload, binary } => {
                let m = if *binary {
                    Message::Binary(payload.clone())
                } else {
                    Message::Text(
                        payload
                            .clone()
                            .try_into()
                            .expect("text payloads are checked to be UTF-8"),
                    )
                };
                (Some(m), payload.clone())
            }
            Traffic::Pings => (None, Bytes::new()),
        };
        Session {
            w,
            slot,
            pending: VecDeque::new(),
            seq: 0,
            message,
            payload,
            unflushed: false,
        }
    }

    /// Runs the session; returns the close code, the bytes read and written, and whether
    /// the run is over for this connection (false: reopen it).
    async fn run(mut self, mut ws: Ws) -> (u16, (u64, u64), bool) {
        let (code, done) = match self.exchange(&mut ws).await {
            Ok(()) => (self.close(&mut ws).await, true),
            Err(code) => (code, false),
        };
        let lost = self.pending.len() as u64;
        self.w.stats.borrow_mut().errors_by("lost", lost);
        if lost > 0 {
            bump(&self.w.live.failed, lost);
        }
        let io = ws.get_ref();
        (code, (io.read, io.written), done)
    }

    /// Whether a new message may go out now.
    fn may_send(&self) -> bool {
        let w = self.w;
        if w.start.get().is_none() {
            return false;
        }
        let cap = match (&w.cfg.arrivals, w.cfg.in_flight) {
            // Closed model: the end of the phase stops sending; open model: it stops the
            // releases, and what was released still goes out.
            (Arrivals::Closed, _) if w.over.get() => return false,
            (Arrivals::Closed, k) => k.unwrap_or(1),
            (Arrivals::Open(_), Some(k)) => k,
            (Arrivals::Open(_), None) => u64::MAX,
        };
        !w.cfg.expect_reply || (self.pending.len() as u64) < cap
    }

    /// The next message to send now, if one is due and allowed, with its record.
    fn take_next(&mut self) -> Option<(Message, Pending)> {
        if !self.may_send() {
            return None;
        }
        let w = self.w;
        let now = w.clock.now();
        let intended = match w.cfg.arrivals {
            Arrivals::Closed => now,
            Arrivals::Open(_) => self.slot.due.borrow_mut().pop_front()?,
        };
        let msg = match &self.message {
            Some(m) => m.clone(),
            None => Message::Ping(Bytes::copy_from_slice(&self.seq.to_be_bytes())),
        };
        let p = Pending {
            intended,
            sent: now,
            seq: self.seq,
        };
        self.seq += 1;
        Some((msg, p))
    }

    /// Hands what is due to the connection, as far as it takes without waiting, and
    /// pushes it out. Reading goes on meanwhile (the caller polls it in the same turn),
    /// so a server that writes while it reads never deadlocks against us.
    fn poll_send(&mut self, ws: &mut Ws, cx: &mut TaskContext<'_>) -> Poll<Result<(), WsError>> {
        let w = self.w;
        // Closed model without replies: at most a batch per turn, then the reads.
        let batch = match (&w.cfg.arrivals, w.cfg.expect_reply) {
            (Arrivals::Closed, false) => w.cfg.in_flight.unwrap_or(1).max(1),
            _ => u64::MAX,
        };
        let mut fed = 0u64;
        while fed < batch && self.may_send() {
            match Pin::new(&mut *ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
            let Some((msg, p)) = self.take_next() else {
                break;
            };
            Pin::new(&mut *ws).start_send(msg)?;
            let late = p.sent.saturating_sub(p.intended) > LATE_AFTER.as_nanos() as u64;
            w.stats.borrow_mut().sent(late, self.message.is_none());
            if w.cfg.expect_reply {
                self.pending.push_back(p);
            }
            fed += 1;
            self.unflushed = true;
        }
        if fed > 0 {
            bump(&w.live.sent, fed);
        }
        if self.unflushed {
            match Pin::new(&mut *ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The message phase: send, match replies, until the phase is over and every reply
    /// owed has come. `Err` carries the close code of a session that ended early.
    async fn exchange(&mut self, ws: &mut Ws) -> Result<(), u16> {
        let (w, slot) = (self.w, self.slot);
        let timeout = w.cfg.timeout;
        let mut watchdog = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
        let flood = matches!(w.cfg.arrivals, Arrivals::Closed) && !w.cfg.expect_reply;
        loop {
            let released = slot.due.borrow().is_empty();
            let owed = w.cfg.expect_reply && !self.pending.is_empty();
            if w.over.get() && released && !owed && !self.unflushed {
                return Ok(());
            }
            let mut wake = std::pin::pin!(slot.wake.notified());
            let mut phase = std::pin::pin!(w.phase_change());
            let event = std::future::poll_fn(|cx| {
                if let Poll::Ready(Err(e)) = self.poll_send(ws, cx) {
                    return Poll::Ready(Event::Failed(e));
                }
                if let Poll::Ready(m) = Pin::new(&mut *ws).poll_next(cx) {
                    return Poll::Ready(Event::Frame(m));
                }
                // A flood goes round again while the connection takes more.
                if flood && !self.unflushed && self.may_send() {
                    return Poll::Ready(Event::Wake);
                }
                if wake.as_mut().poll(cx).is_ready() || phase.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Wake);
                }
                // The oldest reply owed has until its send + timeout.
                if let Some(p) = self.pending.front() {
                    let deadline = w.clock.start + Duration::from_nanos(p.sent) + timeout;
                    if watchdog.deadline() != deadline.into() {
                        watchdog.as_mut().reset(deadline.into());
                    }
                    if watchdog.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::TimedOut);
                    }
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Wake => {}
                Event::TimedOut => {
                    self.pending.pop_front();
                    w.fail("timeout");
                    return Err(ABNORMAL);
                }
                Event::Failed(e) | Event::Frame(Some(Err(e))) => {
                    w.fail(session_kind(&e));
                    return Err(ABNORMAL);
                }
                Event::Frame(None) => {
                    w.fail("closed_abruptly");
                    return Err(ABNORMAL);
                }
                Event::Frame(Some(Ok(m))) => {
                    if let Some(code) = self.on_message(m) {
                        return Err(code);
                    }
                }
            }
        }
    }

    /// Handles a message from the server; `Some(code)` when it closed the session.
    fn on_message(&mut self, m: Message) -> Option<u16> {
        let w = self.w;
        let now = w.clock.now();
        let mut stats = w.stats.borrow_mut();
        match m {
            Message::Text(t) => {
                stats.received();
                self.match_echo(t.as_bytes(), now, &mut stats);
            }
            Message::Binary(b) => {
                stats.received();
                self.match_echo(&b, now, &mut stats);
            }
            Message::Pong(p) => {
                if let Some(front) = self.pending.front()
                    && self.message.is_none()
                    && p[..] == front.seq.to_be_bytes()
                {
                    stats.round_trip(front.intended, front.sent, now);
                    self.pending.pop_front();
                    bump(&w.live.received, 1);
                }
            }
            Message::Ping(_) | Message::Frame(_) => {}
            Message::Close(frame) => {
                return Some(frame.map_or(1005, |f| u16::from(f.code)));
            }
        }
        None
    }

    fn match_echo(&mut self, data: &[u8], now: u64, stats: &mut super::stats::Stats) {
        let w = self.w;
        if !w.cfg.expect_reply || self.message.is_none() {
            bump(&w.live.received, 1);
            return;
        }
        match self.pending.front() {
            Some(front) if data == &self.payload[..] => {
                stats.round_trip(front.intended, front.sent, now);
                self.pending.pop_front();
                bump(&w.live.received, 1);
            }
            _ => {
                stats.error("not_echo");
                bump(&w.live.failed, 1);
            }
        }
    }

    /// The closing handshake: send 1000, wait for the server's close; its code, or 1006
    /// when it does not answer in time.
    async fn close(&mut self, ws: &mut Ws) -> u16 {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let wait = async {
            if ws.close(Some(frame)).await.is_err() {
                return ABNORMAL;
            }
            while let Some(m) = ws.next().await {
                match m {
                    Ok(Message::Close(f)) => return f.map_or(1005, |f| u16::from(f.code)),
                    Ok(Message::Text(_) | Message::Binary(_)) => {
                        self.w.stats.borrow_mut().received()
                    }
                    Ok(_) => {}
                    Err(_) => return ABNORMAL,
                }
            }
            ABNORMAL
        };
        tokio::time::timeout(CLOSE_WAIT, wait)
            .await
            .unwrap_or(ABNORMAL)
    }
}
