//! The host side of `loadrig:scenario/ws`: a VU's WebSocket sessions (k6's `k6/ws`),
//! opened and driven one event at a time, recorded with k6's `ws_*` metrics and the VU's
//! tags into the same results as its HTTP.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Message, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, http};

use super::vu::bindings::loadrig::scenario::ws::{Event, Host, Opened, Refused};
use super::vu::{VuState, pairs};
use crate::summary::MetricType;

/// The close code of a session that ended without a close frame.
const ABNORMAL: u16 = 1006;
/// The largest message a VU accepts.
const MAX_MESSAGE: usize = 16 << 20;

/// One open session.
struct Session {
    ws: WebSocketStream<TcpStream>,
    started: Instant,
    /// Pings sent and not yet answered: (sequence number, when).
    pings: VecDeque<(u64, Instant)>,
    seq: u64,
    tags: Vec<(String, String)>,
}

/// A VU's sessions, by handle.
#[derive(Default)]
pub(super) struct Sessions {
    next: u32,
    open: HashMap<u32, Session>,
}

impl VuState {
    fn ws_record(&self, name: &str, kind: MetricType, value: f64, tags: &[(String, String)]) {
        let time = kind == MetricType::Trend;
        let mut r = self.client.results.lock().expect("results lock");
        let _ = r.metrics.add(name, kind, time, value, tags);
    }

    /// Ends a session: its duration is recorded and it is forgotten.
    fn ws_end(&mut self, handle: u32) {
        if let Some(s) = self.ws.open.remove(&handle) {
            let ms = s.started.elapsed().as_secs_f64() * 1e3;
            self.ws_record("ws_session_duration", MetricType::Trend, ms, &s.tags);
        }
    }
}

fn refused(status: u16, error: impl Into<String>) -> wasmtime::Result<Result<Opened, Refused>> {
    Ok(Err(Refused {
        status,
        error: error.into(),
    }))
}

impl Host for VuState {
    async fn open(
        &mut self,
        url: String,
        headers: String,
        tags: String,
        timeout_ms: f64,
    ) -> wasmtime::Result<Result<Opened, Refused>> {
        let started = Instant::now();
        let target = match crate::ws::WsTarget::parse(&url) {
            Ok(t) => t,
            Err(e) => return refused(0, format!("{e:#}")),
        };
        let mut request = match url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => return refused(0, e.to_string()),
        };
        for (name, value) in pairs(&headers) {
            match (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => {
                    request.headers_mut().insert(n, v);
                }
                _ => return refused(0, format!("invalid header `{name}`")),
            }
        }
        let tags: Vec<(String, String)> = pairs(&tags)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut tags = self.client.tags(&tags);
        tags.push(("url".into(), url.clone()));
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs_f64((timeout_ms / 1e3).clamp(1e-3, 3600.0));
        let opened = async {
            let tcp = TcpStream::connect(target.addr)
                .await
                .map_err(|e| (0, format!("dial tcp {}: {e}", target.addr)))?;
            let _ = tcp.set_nodelay(true);
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .max_message_size(Some(MAX_MESSAGE))
                .max_frame_size(Some(MAX_MESSAGE));
            tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
                .await
                .map_err(|e| match e {
                    WsError::Http(resp) => (
                        resp.status().as_u16(),
                        "websocket: bad handshake".to_owned(),
                    ),
                    e => (0, e.to_string()),
                })
        };
        let (ws, response) = match tokio::time::timeout_at(deadline, opened).await {
            Err(_) => return refused(0, "websocket: timed out opening the connection"),
            Ok(Err((status, error))) => {
                let mut tags = tags;
                tags.push(("status".into(), status.to_string()));
                self.ws_record("ws_connecting", MetricType::Trend, ms(started), &tags);
                return refused(status, error);
            }
            Ok(Ok(x)) => x,
        };
        tags.push(("status".into(), response.status().as_u16().to_string()));
        self.ws_record("ws_connecting", MetricType::Trend, ms(started), &tags);
        self.ws_record("ws_sessions", MetricType::Counter, 1.0, &tags);
        let mut packed = String::new();
        for (name, value) in response.headers() {
            if !packed.is_empty() {
                packed.push('\0');
            }
            packed.push_str(name.as_str());
            packed.push('\0');
            packed.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        self.ws.next = self.ws.next.wrapping_add(1).max(1);
        let handle = self.ws.next;
        self.ws.open.insert(
            handle,
            Session {
                ws,
                started,
                pings: VecDeque::new(),
                seq: 0,
                tags,
            },
        );
        Ok(Ok(Opened {
            handle,
            status: response.status().as_u16(),
            headers: packed,
        }))
    }

    async fn send(
        &mut self,
        handle: u32,
        data: Vec<u8>,
        binary: bool,
    ) -> wasmtime::Result<Result<(), String>> {
        let Some(s) = self.ws.open.get_mut(&handle) else {
            return Ok(Err("the WebSocket is closed".into()));
        };
        let msg = if binary {
            Message::Binary(Bytes::from(data))
        } else {
            match String::from_utf8(data) {
                Ok(t) => Message::text(t),
                Err(_) => return Ok(Err("a text message must be UTF-8".into())),
            }
        };
        if let Err(e) = s.ws.send(msg).await {
            return Ok(Err(e.to_string()));
        }
        let tags = s.tags.clone();
        self.ws_record("ws_msgs_sent", MetricType::Counter, 1.0, &tags);
        Ok(Ok(()))
    }

    async fn ping(&mut self, handle: u32) -> wasmtime::Result<Result<(), String>> {
        let Some(s) = self.ws.open.get_mut(&handle) else {
            return Ok(Err("the WebSocket is closed".into()));
        };
        s.seq += 1;
        let payload = Bytes::copy_from_slice(&s.seq.to_be_bytes());
        if let Err(e) = s.ws.send(Message::Ping(payload)).await {
            return Ok(Err(e.to_string()));
        }
        s.pings.push_back((s.seq, Instant::now()));
        Ok(Ok(()))
    }

    async fn close(&mut self, handle: u32, code: u16) -> wasmtime::Result<()> {
        if let Some(s) = self.ws.open.get_mut(&handle) {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: "".into(),
            };
            let _ = s.ws.close(Some(frame)).await;
        }
        Ok(())
    }

    async fn next(&mut self, handle: u32, timeout_ms: f64) -> wasmtime::Result<Event> {
        let Some(s) = self.ws.open.get_mut(&handle) else {
            return Ok(Event::Close(ABNORMAL));
        };
        let got = if timeout_ms < 0.0 {
            Some(s.ws.next().await)
        } else {
            let wait = Duration::from_secs_f64((timeout_ms / 1e3).min(3600.0));
            tokio::time::timeout(wait, s.ws.next()).await.ok()
        };
        let tags = s.tags.clone();
        let event = match got {
            None => return Ok(Event::Timeout),
            Some(Some(Ok(Message::Text(t)))) => Event::Text(t.as_str().to_owned()),
            Some(Some(Ok(Message::Binary(b)))) => Event::Binary(b.to_vec()),
            Some(Some(Ok(Message::Ping(_)))) => return Ok(Event::Ping),
            Some(Some(Ok(Message::Pong(p)))) => {
                let matched = s
                    .pings
                    .iter()
                    .position(|(seq, _)| p[..] == seq.to_be_bytes());
                if let Some(i) = matched {
                    let (_, at) = s.pings.remove(i).expect("found above");
                    self.ws_record("ws_ping", MetricType::Trend, ms(at), &tags);
                }
                return Ok(Event::Pong);
            }
            Some(Some(Ok(Message::Frame(_)))) => return Ok(Event::Timeout),
            Some(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                self.ws_end(handle);
                return Ok(Event::Close(code));
            }
            Some(None) | Some(Some(Err(WsError::ConnectionClosed))) => {
                self.ws_end(handle);
                return Ok(Event::Close(ABNORMAL));
            }
            Some(Some(Err(e))) => {
                self.ws_end(handle);
                return Ok(Event::Error(e.to_string()));
            }
        };
        self.ws_record("ws_msgs_received", MetricType::Counter, 1.0, &tags);
        Ok(event)
    }

    async fn discard(&mut self, handle: u32) -> wasmtime::Result<()> {
        self.ws_end(handle);
        Ok(())
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
