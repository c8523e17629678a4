//! The floor `benches/ws.sh` measures loadrig against: the least a WebSocket echo flood
//! can do with tokio-tungstenite. One current-thread runtime, N connections, each sending
//! a message and awaiting its echo in a loop, round trips into one HDR histogram; no
//! schedule, no metrics beyond that, no error handling beyond stopping.
//!
//! ```text
//! ws-floor ws://127.0.0.1:8080/ws CONNECTIONS SECONDS SIZE
//! → messages/s p50_us p99_us
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, conns, secs, size] = &args[..] else {
        eprintln!("usage: ws-floor URL CONNECTIONS SECONDS SIZE");
        std::process::exit(2);
    };
    let conns: usize = conns.parse().expect("connections");
    let secs: f64 = secs.parse().expect("seconds");
    let size: usize = size.parse().expect("size");
    let addr = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .expect("a ws:// URL")
        .to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hist = Rc::new(RefCell::new(Histogram::<u64>::new(3).unwrap()));
    let local = tokio::task::LocalSet::new();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    for _ in 0..conns {
        let (url, addr, hist) = (url.clone(), addr.clone(), hist.clone());
        local.spawn_local(async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
                .await
                .unwrap();
            let msg = Message::text("x".repeat(size));
            while Instant::now() < end {
                let t = Instant::now();
                if ws.send(msg.clone()).await.is_err() {
                    return;
                }
                match ws.next().await {
                    Some(Ok(_)) => {
                        let us = t.elapsed().as_micros() as u64;
                        hist.borrow_mut().record(us.max(1)).unwrap();
                    }
                    _ => return,
                }
            }
            let _ = ws.close(None).await;
        });
    }
    rt.block_on(local);
    let h = hist.borrow();
    let elapsed = end.duration_since(start).as_secs_f64();
    println!(
        "{:.0} {} {}",
        h.len() as f64 / elapsed,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99)
    );
}
