//! Per-app and process metrics, served on the admin listener's `/metrics` in the format the
//! scraper asks for: OpenMetrics 1.0 or Prometheus' classic text format 0.0.4.
//!
//! Every family is present from the start, and every series of an app from the moment it
//! is served, at zero: a dashboard's `rate()` has something to work with on a quiet server.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::OnceLock;
use std::time::Duration;

/// The exposition formats `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
    /// Prometheus' classic text format (`text/plain; version=0.0.4`).
    Classic,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it rates
    /// `application/openmetrics-text` at least as high as any text format, as Prometheus
    /// does by default; the classic format otherwise, and when there is no header (what
    /// client_golang's handler does too).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Classic;
        };
        let (mut open, mut classic) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            for param in parts {
                if let Some((k, v)) = param.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => open = open.max(q),
                "text/plain" | "text/*" | "*/*" => classic = classic.max(q),
                _ => {}
            }
        }
        if open > 0.0 && open >= classic {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

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
struct KvLabels {
    app: String,
    store: String,
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KvBytesLabels {
    app: String,
    store: String,
    direction: &'static str,
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

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const KILLS: [&str; 3] = ["trap", "timeout", "memory_limit"];
const DEPLOY_RESULTS: [&str; 2] = ["ok", "rejected"];

/// Every metric the server exports.
pub struct Metrics {
    /// Tells this set of metrics from another (tests run several servers in a process), so
    /// [`AppMeters`] kept with an app count into the metrics that made them.
    id: u64,
    registry: Registry,
    apps: Gauge,
    requests: Family<StatusLabels, Counter>,
    latency: Family<AppLabel, Histogram>,
    instantiate: Family<AppLabel, Histogram>,
    kills: Family<KillLabels, Counter>,
    deploys: Family<DeployLabels, Counter>,
    kv_ops: Family<KvLabels, Counter>,
    kv_bytes: Family<KvBytesLabels, Counter>,
    connections: Gauge,
    connections_delayed: Counter,
    serving_since: Family<VersionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// The version label each app's `serving_since` series carries now.
    serving_version: std::sync::Mutex<std::collections::HashMap<String, String>>,
    store_up: Gauge,
    propagation: Histogram,
    cluster_changes: Family<ResultLabel, Counter>,
    reuse: ReuseMeters,
}

/// Counters of instances reset in place and kept between requests (`crate::reuse`).
#[derive(Clone, Default)]
pub struct ReuseMeters {
    /// Requests served on a kept instance.
    pub reused: Counter,
    /// Resets that kept the instance.
    pub kept: Counter,
    /// Resets that failed: the instance was dropped.
    pub failed: Counter,
    /// Resets whose instance differed from its state after instantiation
    /// (`--check-resets`): dropped.
    pub mismatched: Counter,
    /// Instances kept now.
    pub idle: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    app: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// An open client connection, counted in `edge_connections` until dropped.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn seconds_histogram() -> Histogram {
    // 1 µs to ~33 s in ×2 steps: instantiation lives at the bottom, timeouts at the top.
    Histogram::new(exponential_buckets(1e-6, 2.0, 26))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("edge");
        let apps = Gauge::default();
        registry.register("apps", "Apps being served", apps.clone());
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
        let resets = Family::<ResultLabel, Counter>::default();
        registry.register(
            "instance_resets",
            "Instances reset in place after a request, by result: kept (for a later request), \
             failed or mismatch (different from a fresh instance, under --check-resets): \
             dropped",
            resets.clone(),
        );
        let reset = |result| resets.get_or_create(&ResultLabel { result }).clone();
        let reuse = ReuseMeters {
            kept: reset("kept"),
            failed: reset("failed"),
            mismatched: reset("mismatch"),
            ..ReuseMeters::default()
        };
        registry.register(
            "instance_reuses",
            "Requests served on an instance reset in place, not instantiated",
            reuse.reused.clone(),
        );
        registry.register(
            "instances_kept",
            "Instances reset in place and kept for later requests",
            reuse.idle.clone(),
        );
        let kv_ops = Family::<KvLabels, Counter>::default();
        registry.register(
            "kv_operations",
            "Key-value operations by app, store, operation (get, set, delete, exists, list, \
             increment, swap, get_many, set_many, delete_many) and result (ok or error)",
            kv_ops.clone(),
        );
        let kv_bytes = Family::<KvBytesLabels, Counter>::default();
        registry.register_with_unit(
            "kv",
            "Bytes of keys and values read from and written to key-value stores, by app and store",
            prometheus_client::registry::Unit::Bytes,
            kv_bytes.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let connections_delayed = Counter::default();
        registry.register(
            "connections_delayed",
            "Times the server stopped accepting because --max-connections were open",
            connections_delayed.clone(),
        );
        let serving_since =
            Family::<VersionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "app_serving_since_seconds",
            "When this node started serving the app's current version (Unix time), by app \
             and version (`-` for an app placed in the directory by hand)",
            serving_since.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "cluster_store_up",
            "1 while this node is connected to its cluster's app store, 0 while it is not \
             (it keeps serving); 0 on a node without --store",
            store_up.clone(),
        );
        // 1 ms to ~65 s in ×2 steps.
        let propagation = Histogram::new(exponential_buckets(1e-3, 2.0, 17));
        registry.register(
            "cluster_propagation_seconds",
            "Time from a change committing to the cluster's app store to this node serving it",
            propagation.clone(),
        );
        let cluster_changes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "cluster_changes_applied",
            "Versions from the cluster's app store this node swapped in (ok) or refused \
             (refused: corrupt or invalid; the app keeps what it serves)",
            cluster_changes.clone(),
        );
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Metrics {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            serving_since,
            serving_version: Default::default(),
            store_up,
            propagation,
            cluster_changes,
            reuse,
            connections,
            connections_delayed,
            kv_ops,
            kv_bytes,
            registry: root,
            apps,
            requests,
            latency,
            instantiate,
            kills,
            deploys,
        }
    }
}

/// Which of [`CLASSES`] a status is in.
fn status_class(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// One app's request metrics, as [`Metrics::request`] and [`Metrics::instantiated`] record
/// them (the same series), held by the app: see [`Metrics::app_request`].
#[derive(Debug)]
pub struct AppMeters {
    owner: u64,
    requests: [Counter; 5],
    latency: Histogram,
    instantiate: Histogram,
}

impl AppMeters {
    /// Records an answered request.
    pub fn request(&self, status: u16, latency: Duration) {
        self.requests[status_class(status)].inc();
        self.latency.observe(latency.as_secs_f64());
    }

    /// Records one instantiation.
    pub fn instantiated(&self, took: Duration) {
        self.instantiate.observe(took.as_secs_f64());
    }
}

impl Metrics {
    /// Notes the apps now served: their series exist from now on, at zero until used.
    pub fn serving<'a>(&self, apps: impl ExactSizeIterator<Item = &'a str>) {
        self.set_app_count(apps.len());
        for app in apps {
            self.serve_app(app);
        }
    }

    /// Sets `edge_apps`.
    pub fn set_app_count(&self, n: usize) {
        self.apps.set(n as i64);
    }

    /// Notes one app now served (its series exist from now on, at zero until used) without
    /// touching the others': a start-up with thousands of apps registers each once.
    pub fn serve_app(&self, app: &str) {
        for class in CLASSES {
            drop(self.requests.get_or_create(&StatusLabels {
                app: app.to_string(),
                class,
            }));
        }
        for reason in KILLS {
            drop(self.kills.get_or_create(&KillLabels {
                app: app.to_string(),
                reason,
            }));
        }
        for result in DEPLOY_RESULTS {
            drop(self.deploys.get_or_create(&DeployLabels {
                app: app.to_string(),
                result,
            }));
        }
        let label = AppLabel { app: app.into() };
        drop(self.latency.get_or_create(&label));
        drop(self.instantiate.get_or_create(&label));
    }

    /// Records an answered request of the app `name` through its meters, kept in `kept`
    /// (the app's own): made on the app's first request, then used without label allocations
    /// or map lookups.
    pub fn app_request(&self, kept: &OnceLock<AppMeters>, name: &str, status: u16, took: Duration) {
        match self.app(kept, name) {
            Some(meters) => meters.request(status, took),
            None => self.request(name, status, took),
        }
    }

    /// Records one instantiation of the app `name`, as [`Metrics::app_request`] does.
    pub fn app_instantiated(&self, kept: &OnceLock<AppMeters>, name: &str, took: Duration) {
        match self.app(kept, name) {
            Some(meters) => meters.instantiated(took),
            None => self.instantiated(name, took),
        }
    }

    /// The per-request meters of the app `name`, kept in `kept` (the app's own): made on
    /// the app's first request, then used without label allocations or map lookups.
    /// `None` if `kept` holds another server's (the caller then records the slow way).
    fn app<'a>(&self, kept: &'a OnceLock<AppMeters>, name: &str) -> Option<&'a AppMeters> {
        let meters = kept.get_or_init(|| AppMeters {
            owner: self.id,
            requests: CLASSES.map(|class| {
                self.requests
                    .get_or_create(&StatusLabels {
                        app: name.to_string(),
                        class,
                    })
                    .clone()
            }),
            latency: self
                .latency
                .get_or_create(&AppLabel { app: name.into() })
                .clone(),
            instantiate: self
                .instantiate
                .get_or_create(&AppLabel { app: name.into() })
                .clone(),
        });
        (meters.owner == self.id).then_some(meters)
    }

    /// Records an answered request of `app`.
    pub fn request(&self, app: &str, status: u16, latency: Duration) {
        self.requests
            .get_or_create(&StatusLabels {
                app: app.to_string(),
                class: CLASSES[status_class(status)],
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
            Kill::Trap => KILLS[0],
            Kill::Timeout => KILLS[1],
            Kill::MemoryLimit => KILLS[2],
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
                result: DEPLOY_RESULTS[if ok { 0 } else { 1 }],
            })
            .inc();
    }

    /// Notes that this node serves `version` of `app` from now on (`None`: no longer
    /// serves the app).
    pub fn serving_since(&self, app: &str, version: Option<&str>) {
        let mut current = self.serving_version.lock().unwrap();
        if let Some(old) = current.remove(app) {
            self.serving_since.remove(&VersionLabels {
                app: app.into(),
                version: old,
            });
        }
        let Some(version) = version else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.serving_since
            .get_or_create(&VersionLabels {
                app: app.into(),
                version: version.into(),
            })
            .set(now);
        current.insert(app.into(), version.into());
    }

    /// Sets `edge_cluster_store_up` (`None`: not a cluster node).
    pub fn set_store_up(&self, up: Option<bool>) {
        self.store_up.set(i64::from(up == Some(true)));
    }

    /// Records that a change committed to the store at `committed` now serves here, and
    /// returns how long that took.
    pub fn propagated(&self, committed: std::time::SystemTime) -> Duration {
        let lag = committed.elapsed().unwrap_or_default();
        self.propagation.observe(lag.as_secs_f64());
        lag
    }

    /// Counts a version from the store swapped in (`true`) or refused.
    pub fn cluster_change(&self, ok: bool) {
        self.cluster_changes
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "refused" },
            })
            .inc();
    }

    /// Counts a connection open until the returned guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }

    /// The counters of instances kept between requests.
    pub fn reuse(&self) -> ReuseMeters {
        self.reuse.clone()
    }

    /// Counts one time the connection cap held accepting back.
    pub fn connection_delayed(&self) {
        self.connections_delayed.inc();
    }

    /// Records one key-value operation of `app` on `store`, and the bytes of keys and
    /// values it read and wrote.
    pub fn kv(&self, app: &str, store: &str, op: &'static str, ok: bool, read: u64, written: u64) {
        self.kv_ops
            .get_or_create(&KvLabels {
                app: app.into(),
                store: store.into(),
                op,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        for (direction, n) in [("read", read), ("written", written)] {
            if n > 0 {
                self.kv_bytes
                    .get_or_create(&KvBytesLabels {
                        app: app.into(),
                        store: store.into(),
                        direction,
                    })
                    .inc_by(n);
            }
        }
    }

    /// Every metric, in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            Format::Classic => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        }
        .expect("writing to a String cannot fail");
        out
    }
}

/// The process metrics every Prometheus client library exports (client_golang's names),
/// read from `/proc/self` at scrape time. A value that cannot be read is left out.
#[derive(Debug)]
struct ProcessCollector;

impl ProcessCollector {
    fn gauge(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        value: f64,
    ) -> Result<(), std::fmt::Error> {
        let metric = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
        ConstGauge::new(value).encode(metric)
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            ConstCounter::new((stat.utime + stat.stime) as f64 / ticks).encode(cpu)?;
            let page = procfs::page_size() as f64;
            Self::gauge(
                &mut encoder,
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(&Unit::Bytes),
                stat.rss as f64 * page,
            )?;
            Self::gauge(
                &mut encoder,
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(&Unit::Bytes),
                stat.vsize as f64,
            )?;
            Self::gauge(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process.",
                None,
                stat.num_threads as f64,
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                Self::gauge(
                    &mut encoder,
                    "process_start_time",
                    "Start time of the process since the Unix epoch in seconds.",
                    Some(&Unit::Seconds),
                    boot as f64 + stat.starttime as f64 / ticks,
                )?;
            }
        }
        if let Ok(fds) = me.fd_count() {
            Self::gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                fds as f64,
            )?;
        }
        if let Ok(limits) = me.limits()
            && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            Self::gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                max as f64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_default_accept_gets_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn anything_else_gets_the_classic_format() {
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain;version=0.0.4,application/openmetrics-text;q=0.5"),
            Some("application/openmetrics-text;q=0, text/plain"),
            Some("application/json"),
        ] {
            assert_eq!(Format::negotiate(accept), Format::Classic, "{accept:?}");
        }
    }

    #[test]
    fn every_series_of_a_served_app_exists_at_zero() {
        let metrics = Metrics::default();
        metrics.serving(["a"].into_iter());
        for format in [Format::OpenMetrics, Format::Classic] {
            let text = metrics.encode(format);
            for line in [
                "edge_apps 1",
                "edge_requests_total{app=\"a\",class=\"5xx\"} 0",
                "edge_guest_kills_total{app=\"a\",reason=\"memory_limit\"} 0",
                "edge_deploys_total{app=\"a\",result=\"rejected\"} 0",
                "edge_request_duration_seconds_count{app=\"a\"} 0",
                "edge_instantiate_duration_seconds_count{app=\"a\"} 0",
            ] {
                assert!(
                    text.lines().any(|l| l == line),
                    "{format:?}: no `{line}` in\n{text}"
                );
            }
            assert!(text.contains("process_resident_memory_bytes "), "{text}");
            assert!(text.contains("process_cpu_seconds_total "), "{text}");
            assert_eq!(text.ends_with("# EOF\n"), format == Format::OpenMetrics);
        }
    }

    #[test]
    fn meters_kept_with_an_app_count_into_the_metrics_that_made_them() {
        let (first, second) = (Metrics::default(), Metrics::default());
        let kept = OnceLock::new();
        let meters = first.app(&kept, "a").expect("made by `first`");
        meters.request(201, Duration::from_millis(2));
        meters.request(503, Duration::from_millis(1));
        meters.instantiated(Duration::from_micros(9));
        // Another server's metrics do not take them: they count the slow way.
        assert!(second.app(&kept, "a").is_none());
        second.request("a", 404, Duration::from_millis(1));
        let text = first.encode(Format::Classic);
        for line in [
            "edge_requests_total{app=\"a\",class=\"2xx\"} 1",
            "edge_requests_total{app=\"a\",class=\"5xx\"} 1",
            "edge_requests_total{app=\"a\",class=\"4xx\"} 0",
            "edge_request_duration_seconds_count{app=\"a\"} 2",
            "edge_instantiate_duration_seconds_count{app=\"a\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        let text = second.encode(Format::Classic);
        assert!(
            text.lines()
                .any(|l| l == "edge_requests_total{app=\"a\",class=\"4xx\"} 1"),
            "{text}"
        );
    }
}
