//! `GET /ws` on every app: a WebSocket echo endpoint, the stand-in target of
//! `loadrig ws`. Text and binary messages come back as they were sent; pings are answered
//! with pongs (tungstenite does that while reading); a close is answered with a close.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Message, Role, WebSocketConfig};

/// The path the echo endpoint answers on.
pub(crate) const PATH: &str = "/ws";

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Answers an upgrade request with `101 Switching Protocols` and echoes on the upgraded
/// connection; anything that is not a WebSocket upgrade gets `400` with the reason.
pub(crate) fn upgrade(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let refuse = |why: &'static str| {
        Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::from_static(why.as_bytes())))
            .expect("a valid response")
    };
    let upgrade = header(&req, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return refuse("/ws is a WebSocket endpoint: send Upgrade: websocket\n");
    }
    if header(&req, "sec-websocket-version") != Some("13") {
        return refuse("only WebSocket version 13 is spoken here\n");
    }
    let Some(key) = header(&req, "sec-websocket-key") else {
        return refuse("Sec-WebSocket-Key is missing\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            // Small buffers: the endpoint exists to hold many connections with small
            // messages; larger messages still work, the buffer grows for them.
            let config = WebSocketConfig::default().read_buffer_size(4096);
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            echo(ws).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-accept", accept)
        .body(Full::new(Bytes::new()))
        .expect("a valid response")
}

async fn echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        // Pings are answered and a close acknowledged by tungstenite on the next read.
        if let Message::Text(_) | Message::Binary(_) = msg
            && ws.send(msg).await.is_err()
        {
            return;
        }
    }
}
