//! Per-app metrics, served in Prometheus text format on the admin listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabel {
    app: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    app: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KillLabels {
    app: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeployLabels {
    app: String,
    result: &'static str,
}

/// Why a guest was stopped.
#[derive(Debug, Clone, Copy)]
pub enum Kill {
    /// It trapped.
    Trap,
    /// It ran past its timeout.
    Timeout,
    /// It tried to grow past its memory limit.
    MemoryLimit,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    latency: Family<AppLabel, Histogram>,
    instantiate: Family<AppLabel, Histogram>,
    kills: Family<KillLabels, Counter>,
    deploys: Family<DeployLabels, Counter>,
}

fn seconds_histogram() -> Histogram {
    // 1 µs to ~33 s in ×2 steps: instantiation lives at the bottom, timeouts at the top.
    Histogram::new(exponential_buckets(1e-6, 2.0, 26))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("edge");
        let requests = Family::<StatusLabels, Counter>::default();
        let latency =
            Family::<AppLabel, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        let instantiate =
            Family::<AppLabel, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        let kills = Family::<KillLabels, Counter>::default();
        let deploys = Family::<DeployLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by app and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from admission to the response head, by app",
            latency.clone(),
        );
        registry.register(
            "instantiate_duration_seconds",
            "Time to instantiate a fresh instance for one request, by app",
            instantiate.clone(),
        );
        registry.register(
            "guest_kills",
            "Requests whose guest was stopped: trap, timeout or memory_limit",
            kills.clone(),
        );
        registry.register(
            "deploys",
            "Deploys by app and result (ok or rejected)",
            deploys.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            instantiate,
            kills,
            deploys,
        }
    }
}

impl Metrics {
    /// Records an answered request of `app`.
    pub fn request(&self, app: &str, status: u16, latency: Duration) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&StatusLabels {
                app: app.to_string(),
                class,
            })
            .inc();
        self.latency
            .get_or_create(&AppLabel { app: app.into() })
            .observe(latency.as_secs_f64());
    }

    /// Records one instantiation of `app`.
    pub fn instantiated(&self, app: &str, took: Duration) {
        self.instantiate
            .get_or_create(&AppLabel { app: app.into() })
            .observe(took.as_secs_f64());
    }

    /// Records a guest that was stopped.
    pub fn kill(&self, app: &str, kill: Kill) {
        let reason = match kill {
            Kill::Trap => "trap",
            Kill::Timeout => "timeout",
            Kill::MemoryLimit => "memory_limit",
        };
        self.kills
            .get_or_create(&KillLabels {
                app: app.into(),
                reason,
            })
            .inc();
    }

    /// Records a deploy attempt.
    pub fn deploy(&self, app: &str, ok: bool) {
        self.deploys
            .get_or_create(&DeployLabels {
                app: app.into(),
                result: if ok { "ok" } else { "rejected" },
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
