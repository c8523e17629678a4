//! What a WebSocket worker measures, kept in plain fields on the per-message path and
//! turned into named metrics (k6's `ws_*` names) at the end.

use std::collections::BTreeMap;

use crate::metrics::Metric;
use crate::record::Results;
use crate::summary::MetricType;

use super::{Traffic, WsConfig};

/// The trends of a WebSocket run (milliseconds).
pub const TRENDS: [&str; 5] = [
    "ws_connecting",
    "ws_session_duration",
    "ws_ping",
    "ws_rtt",
    "ws_rtt_uncorrected",
];

/// The counters of a WebSocket run (`ws_pings`: PINGs sent); `ws_errors` and `ws_closes` also have one submetric
/// per kind and per close code (`ws_errors{kind:timeout}`, `ws_closes{code:1000}`).
pub const COUNTERS: [&str; 6] = [
    "ws_sessions",
    "ws_pings",
    "ws_msgs_sent",
    "ws_msgs_received",
    "ws_errors",
    "ws_closes",
];

fn trend() -> Metric {
    Metric::new(MetricType::Trend, true)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// One worker's tallies.
pub(super) struct Stats {
    results: Results,
    connecting: Metric,
    session: Metric,
    /// Round trips: `ws_ping` for pings, `ws_rtt` for messages.
    rtt: Metric,
    rtt_uncorrected: Metric,
    pings: bool,
    /// Replies are expected (round trips are measured).
    replies: bool,
    sessions: u64,
    sent: u64,
    pings_sent: u64,
    received: u64,
    errors: BTreeMap<String, u64>,
    closes: BTreeMap<u16, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            results: Results::default(),
            connecting: trend(),
            session: trend(),
            rtt: trend(),
            rtt_uncorrected: trend(),
            pings: false,
            replies: true,
            sessions: 0,
            sent: 0,
            pings_sent: 0,
            received: 0,
            errors: BTreeMap::new(),
            closes: BTreeMap::new(),
        }
    }
}

impl Stats {
    pub(super) fn new(cfg: &WsConfig) -> Stats {
        Stats {
            pings: cfg.traffic == Traffic::Pings,
            replies: cfg.expect_reply,
            ..Stats::default()
        }
    }

    pub(super) fn opened(&mut self, open_now: u64, connecting_ns: u64) {
        self.sessions += 1;
        self.connecting.add(ms(connecting_ns));
        self.results.connections_peak = self.results.connections_peak.max(open_now);
    }

    pub(super) fn tcp_connected(&mut self) {
        self.results.connections_opened += 1;
    }

    pub(super) fn ended(&mut self, session_ns: u64, close_code: u16, bytes: (u64, u64)) {
        self.session.add(ms(session_ns));
        *self.closes.entry(close_code).or_default() += 1;
        self.results.bytes_received += bytes.0;
        self.results.bytes_sent += bytes.1;
    }

    pub(super) fn sent(&mut self, late: bool, ping: bool) {
        if ping {
            self.pings_sent += 1;
        } else {
            self.sent += 1;
        }
        self.results.late_sends += late as u64;
    }

    pub(super) fn received(&mut self) {
        self.received += 1;
    }

    /// A reply matched to its message: `intended` is when it was due (or ready, closed
    /// model), `sent` when it went out, `now` when the reply arrived.
    pub(super) fn round_trip(&mut self, intended: u64, sent: u64, now: u64) {
        let corrected = now.saturating_sub(intended);
        self.rtt.add(ms(corrected));
        self.rtt_uncorrected.add(ms(now.saturating_sub(sent)));
        self.results
            .record_point(now, false, Some(corrected / 1000));
    }

    pub(super) fn error(&mut self, kind: &str) {
        match self.errors.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(kind.to_owned(), 1);
            }
        }
    }

    pub(super) fn errors_by(&mut self, kind: &str, n: u64) {
        if n > 0 {
            *self.errors.entry(kind.to_owned()).or_default() += n;
        }
    }

    /// The results, with every `ws_*` metric named as k6 names it.
    pub(super) fn into_results(self) -> Results {
        let counter = |n: u64| {
            let mut c = Metric::new(MetricType::Counter, false);
            c.add(n as f64);
            c
        };
        let mut r = self.results;
        let m = &mut r.metrics.metrics;
        m.insert("ws_connecting".into(), self.connecting);
        m.insert("ws_session_duration".into(), self.session);
        if self.pings {
            m.insert("ws_ping".into(), self.rtt);
            m.insert("ws_pings".into(), counter(self.pings_sent));
        } else if self.replies {
            m.insert("ws_rtt".into(), self.rtt);
            m.insert("ws_rtt_uncorrected".into(), self.rtt_uncorrected);
        }
        m.insert("ws_sessions".into(), counter(self.sessions));
        m.insert("ws_msgs_sent".into(), counter(self.sent));
        m.insert("ws_msgs_received".into(), counter(self.received));
        m.insert("ws_errors".into(), counter(self.errors.values().sum()));
        m.insert("ws_closes".into(), counter(self.closes.values().sum()));
        let subs = &mut r.metrics.submetrics;
        for (kind, n) in self.errors {
            subs.insert(format!("ws_errors{{kind:{kind}}}"), counter(n));
        }
        for (code, n) in self.closes {
            subs.insert(format!("ws_closes{{code:{code}}}"), counter(n));
        }
        r
    }
}
