//! Rendering a summary: an aligned text table for the terminal and a self-contained HTML
//! page with charts. Nothing here computes statistics; it formats `summary`'s.

mod html;
mod text;

pub use html::{html, range_bars, rate_pair, spectrum_pair};
pub use text::text;

/// Formats milliseconds as k6 does: `512µs`, `12.34ms`, `1.5s`.
pub fn duration(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.2}µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.2}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

/// Formats a byte count: `512 B`, `1.2 kB`, `3.4 MB`.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[0])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Warnings a reader should see: when the generator, not the server, may have set the
/// numbers.
pub fn warnings(r: &crate::record::Results, open_model: bool) -> Vec<String> {
    use crate::record::Trend;
    let mut w = Vec::new();
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let used = r.cpu.as_secs_f64() / secs;
    if r.cpus > 0 && used >= 0.9 * r.cpus as f64 {
        w.push(format!(
            "the generator used {used:.2} of its {} CPU(s): it may be the bottleneck \
             (give it more cores, or split the run with --segment)",
            r.cpus
        ));
    }
    let lag = r.trend(Trend::SendLag);
    if open_model && !lag.is_empty() && lag.value_at_quantile(0.99) > 1000 {
        w.push(format!(
            "sends on free connections started up to {} late (p99): the generator could not keep \
             its schedule",
            duration(lag.value_at_quantile(0.99) as f64 / 1000.0)
        ));
    }
    if r.requests() > 0 && r.responses() == 0 {
        w.push("no request got a response: see errors".into());
    }
    let count = |name: &str| crate::summary::value(r, name, "count").unwrap_or(0.0);
    if r.metrics.metrics.contains_key("ws_sessions") && count("ws_sessions") == 0.0 {
        w.push("no WebSocket connection opened: see ws_errors".into());
    }
    w
}
