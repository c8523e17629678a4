//! A cluster of edge nodes on one PostgreSQL app store (`--store`), with haproxy in front:
//! deploys, rollbacks and deletes through any node reach every node; a node killed under
//! load costs no request; a database restart, concurrent deploys and a corrupt blob all
//! converge on one version everywhere. Real PostgreSQL and haproxy, on loopback.

use crate::support::{Apps, Edge, Postgres, admin, get, guest, serve_to_exit};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "cluster-test-token";
/// How long a change may take to reach every node before a test fails: generous, the
/// machine is shared; the benchmark measures the real figure.
const CONVERGE: Duration = Duration::from_secs(15);

/// Nodes of one cluster, each with its own apps directory (its copy of the store).
struct Cluster {
    nodes: Vec<(Apps, Edge)>,
    url: String,
}

impl Cluster {
    fn start(pg: &Postgres, n: usize) -> Cluster {
        let url = pg.url();
        let nodes = (0..n)
            .map(|_| {
                let apps = Apps::new();
                let edge = node(apps.path(), &url, &[]);
                (apps, edge)
            })
            .collect();
        Cluster { nodes, url }
    }

    fn edge(&self, i: usize) -> &Edge {
        &self.nodes[i].1
    }

    /// Stops node `i` (SIGKILL with `kill`, else SIGTERM), runs `meanwhile`, and starts
    /// the node again on the same directory.
    async fn restart(&mut self, i: usize, kill: bool, meanwhile: impl AsyncFnOnce(&Cluster)) {
        {
            let edge = &mut self.nodes[i].1;
            edge.signal(if kill { "KILL" } else { "TERM" });
            let _ = edge.wait_exit(Duration::from_secs(10));
        }
        meanwhile(self).await;
        let (apps, edge) = &mut self.nodes[i];
        *edge = node(apps.path(), &self.url, &[]);
    }

    /// Waits until every node answers `host` with `want` (`None`: 404).
    async fn converge(&self, host: &str, want: Option<&str>) {
        let deadline = Instant::now() + CONVERGE;
        for (i, (_, edge)) in self.nodes.iter().enumerate() {
            loop {
                let r = get(edge.addr, host, "/").await;
                let ok = match want {
                    Some(body) => r.status == 200 && r.body == body,
                    None => r.status == 404,
                };
                if ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {i} answers {} {:?} for {host}, want {want:?}:\n{}",
                    r.status,
                    r.body,
                    edge.log()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Every node's `GET /apps` entry for `name`: (version, digest, versions).
    async fn listing(&self, name: &str) -> Vec<Option<(String, String, Vec<String>)>> {
        let mut out = Vec::new();
        for (_, edge) in &self.nodes {
            let r = admin(edge.admin, "GET", "/apps", TOKEN, None, vec![]).await;
            let apps: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            out.push(
                apps.as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["name"] == name)
                    .map(|a| {
                        (
                            a["version"].as_str().unwrap_or("").to_string(),
                            a["digest"].as_str().unwrap().to_string(),
                            a["versions"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|v| v.as_str().unwrap().to_string())
                                .collect(),
                        )
                    }),
            );
        }
        out
    }
}

fn node(dir: &Path, url: &str, args: &[&str]) -> Edge {
    let mut all = vec!["--store", url];
    all.extend_from_slice(args);
    Edge::start_with_token(dir, &all, TOKEN)
}

async fn deploy(edge: &Edge, name: &str, wasm: Vec<u8>) -> crate::support::Resp {
    admin(
        edge.admin,
        "PUT",
        &format!("/apps/{name}"),
        TOKEN,
        Some("application/wasm"),
        wasm,
    )
    .await
}

fn component(guest_name: &str) -> Vec<u8> {
    std::fs::read(guest(guest_name)).unwrap()
}

/// `wasm` with a custom section appended: the same app, other bytes (a cache miss).
fn variant(wasm: &[u8], tag: &str) -> Vec<u8> {
    let name = b"edge-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

async fn metric(edge: &Edge, name: &str) -> f64 {
    let r = admin(edge.admin, "GET", "/metrics", TOKEN, None, vec![]).await;
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// `/healthz`'s status: `ok` or `degraded`.
async fn healthz(edge: &Edge) -> String {
    let r = admin(edge.admin, "GET", "/healthz", "", None, vec![]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    body["status"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_rollbacks_and_deletes_through_any_node_reach_every_node() {
    let pg = Postgres::start();
    let mut cluster = Cluster::start(&pg, 3);
    let (a, b, c) = (cluster.edge(0), cluster.edge(1), cluster.edge(2));
    let host = "app.localhost";

    // Deploy through A: B and C serve it.
    let r = deploy(a, "app", component("hello")).await;
    assert_eq!(r.status, 200, "{r:?}\n{}", a.log());
    let report: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(report["version"], "v1");
    let committed = report["committed_at"].as_str().expect("committed_at");
    humantime::parse_rfc3339(committed).expect("RFC 3339");
    cluster.converge(host, Some("Hello from edge!\n")).await;

    // A second version through C, then a rollback through B.
    let r = deploy(c, "app", component("counter")).await;
    assert_eq!(r.status, 200, "{r:?}");
    cluster.converge(host, Some("1")).await;
    let r = admin(b.admin, "POST", "/apps/app/rollback", TOKEN, None, vec![]).await;
    assert_eq!(r.status, 200, "{r:?}\n{}", b.log());
    assert!(r.body.contains("\"v1\""), "{}", r.body);
    cluster.converge(host, Some("Hello from edge!\n")).await;
    let listing = cluster.listing("app").await;
    for entry in &listing {
        let (version, _, versions) = entry.as_ref().expect("every node lists the app");
        assert_eq!(version, "v1");
        assert_eq!(versions, &["v1", "v2"]);
    }
    assert!(listing.windows(2).all(|w| w[0] == w[1]), "{listing:?}");

    // Each follower measured its propagation, says since when it serves v1 (and no longer
    // v2), and knows it is connected.
    for edge in [b, c] {
        let since = metric(
            edge,
            "edge_app_serving_since_seconds{app=\"app\",version=\"v1\"}",
        )
        .await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - 30.0..=now).contains(&since), "{since} vs {now}");
        let all = admin(edge.admin, "GET", "/metrics", TOKEN, None, vec![])
            .await
            .body;
        assert!(!all.contains("version=\"v2\""), "{all}");
        assert!(metric(edge, "edge_cluster_propagation_seconds_count").await >= 3.0);
        assert_eq!(metric(edge, "edge_cluster_store_up").await, 1.0);
        assert!(edge.log().contains("from the app store"), "{}", edge.log());
    }
    assert_eq!(healthz(a).await, "ok");

    // A node down while an app is deployed fetches it from the store when it comes back.
    // (This deploy goes through the CLI, which says where it committed.)
    cluster
        .restart(2, false, async |cluster: &Cluster| {
            let counter = guest("counter");
            let (ok, stdout, stderr) = crate::support::cli(
                cluster.edge(0),
                TOKEN,
                &["deploy", counter.to_str().unwrap(), "--name", "other"],
            );
            assert!(ok, "{stderr}");
            assert!(
                stdout.contains("committed to the cluster's app store at 20"),
                "{stdout}"
            );
        })
        .await;
    cluster.converge("other.localhost", Some("1")).await;
    let c = cluster.edge(2);
    assert!(c.log().contains("1 fetched"), "{}", c.log());
    assert_eq!(get(c.addr, host, "/").await.body, "Hello from edge!\n");

    // Delete through B: gone everywhere, from every directory too.
    let b = cluster.edge(1);
    let r = admin(b.admin, "DELETE", "/apps/other", TOKEN, None, vec![]).await;
    assert_eq!(r.status, 200, "{r:?}");
    cluster.converge("other.localhost", None).await;
    for (apps, _) in &cluster.nodes {
        assert!(!apps.path().join("other.wasm").exists());
        assert!(apps.path().join("app.wasm").exists());
    }
    // Unknown apps and versions are 404 from any node.
    let c = cluster.edge(2);
    let r = admin(c.admin, "POST", "/apps/other/rollback", TOKEN, None, vec![]).await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = admin(
        c.admin,
        "POST",
        "/apps/app/rollback?to=v9",
        TOKEN,
        None,
        vec![],
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deploys_one_wins_and_every_node_converges_on_it() {
    let pg = Postgres::start();
    let cluster = Cluster::start(&pg, 3);
    let (a, b) = (cluster.edge(0), cluster.edge(1));
    let r = deploy(a, "app", component("hello")).await;
    assert_eq!(r.status, 200, "{r:?}");
    cluster
        .converge("app.localhost", Some("Hello from edge!\n"))
        .await;
    // Both start from v1. The test holds the app's row locked, so both reach their commit
    // before either can make it; then the first to commit wins and the other finds v2
    // current and gets 409, however the machine schedules them.
    let (client, connection) = tokio_postgres::connect(&cluster.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("BEGIN; SELECT 1 FROM edge_apps WHERE name = 'app' FOR UPDATE")
        .await
        .unwrap();
    let hello = component("hello");
    let (a_admin, b_admin) = (a.admin, b.admin);
    let put = |admin, wasm| {
        tokio::spawn(async move {
            crate::support::admin(admin, "PUT", "/apps/app", TOKEN, None, wasm).await
        })
    };
    let (ta, tb) = (
        put(a_admin, variant(&hello, "from-a")),
        put(b_admin, variant(&hello, "from-b")),
    );
    let deadline = Instant::now() + CONVERGE;
    loop {
        let waiting: i64 = client
            .query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[])
            .await
            .unwrap()
            .get(0);
        if waiting >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deploys never reached their commit"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.batch_execute("COMMIT").await.unwrap();
    let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{ra:?}\n{rb:?}");
    let (winner, loser) = if ra.status == 200 {
        (&ra, &rb)
    } else {
        (&rb, &ra)
    };
    assert!(loser.body.contains("another node"), "{}", loser.body);
    let digest = serde_json::from_str::<serde_json::Value>(&winner.body).unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + CONVERGE;
    loop {
        let listing = cluster.listing("app").await;
        if listing.iter().all(|e| {
            e.as_ref()
                .is_some_and(|(v, d, _)| v == "v2" && *d == digest)
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "no convergence: {listing:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A corrupt blob in the store (digest mismatch) is refused by every node, which keeps
    // serving v2.
    let bad = variant(&hello, "tampered");
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO edge_app_versions (app, number, digest, manifest, component, deployed_at)
               VALUES ('app', 3, '{digest}', NULL, '\\x{}', 0);
             UPDATE edge_apps SET current = 3, last_version = 3 WHERE name = 'app';
             INSERT INTO edge_app_changes (app, kind, version) VALUES ('app', 'deploy', 3);
             SELECT pg_notify('edge_app_changes', '999');
             COMMIT;",
            hex::encode(&bad)
        ))
        .await
        .unwrap();
    for (_, edge) in &cluster.nodes {
        assert!(
            edge.wait_log("is corrupt in the store", CONVERGE),
            "{}",
            edge.log()
        );
        assert_eq!(
            get(edge.addr, "app.localhost", "/").await.body,
            "Hello from edge!\n"
        );
        assert_eq!(
            metric(
                edge,
                "edge_cluster_changes_applied_total{result=\"refused\"}"
            )
            .await,
            1.0
        );
    }
    let listing = cluster.listing("app").await;
    assert!(
        listing.iter().all(|e| e.as_ref().unwrap().1 == digest),
        "{listing:?}"
    );
}

/// haproxy in front of the nodes, with active health checks on each node's `/healthz`.
struct Haproxy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(nodes: &[&Edge]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, e)| {
                format!(
                    "    server node{i} {} check port {} inter 200ms fall 2 rise 2\n",
                    e.addr,
                    e.admin.port()
                )
            })
            .collect();
        let config = format!(
            "global\n    maxconn 512\ndefaults\n    mode http\n    timeout connect 1s\n    \
             timeout client 10s\n    timeout server 10s\n    retries 3\n    option redispatch 1\n    \
             retry-on conn-failure empty-response response-timeout\nfrontend edge\n    bind \
             127.0.0.1:{port}\n    default_backend nodes\nbackend nodes\n    balance roundrobin\n    \
             option httpchk GET /healthz\n    http-check expect status 200\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (apt install haproxy)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `clients` loops of requests through `addr` until `stop`: (answered 200, failed).
async fn load(
    addr: SocketAddr,
    clients: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (u64, Vec<String>) {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !*stop.borrow() {
                match crate::support::send(addr, "GET", "app.localhost", "/", vec![]).await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    let mut total = (0, Vec::new());
    for t in tasks {
        let (ok, failed) = t.await.unwrap();
        total.0 += ok;
        total.1.extend(failed);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_costs_no_request_and_a_database_restart_converges() {
    let mut pg = Postgres::start();
    let mut cluster = Cluster::start(&pg, 3);
    let r = deploy(cluster.edge(0), "app", component("hello")).await;
    assert_eq!(r.status, 200, "{r:?}");
    cluster
        .converge("app.localhost", Some("Hello from edge!\n"))
        .await;
    let haproxy = Haproxy::start(&[cluster.edge(0), cluster.edge(1), cluster.edge(2)]);

    // kill -9 node B under load through haproxy: every request still succeeds.
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let loader = tokio::spawn(load(haproxy.addr, 4, stop_rx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart(1, true, async |_: &Cluster| {}).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    let (ok, failed) = loader.await.unwrap();
    assert!(ok > 100, "only {ok} requests");
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok,
        &failed[..failed.len().min(5)]
    );
    // The restarted node serves the current version from its copy of the store.
    assert_eq!(
        get(cluster.edge(1).addr, "app.localhost", "/").await.body,
        "Hello from edge!\n"
    );

    // The database goes away: nodes keep serving and say they are degraded; a deploy gets
    // 503 and changes nothing.
    pg.stop();
    let a = cluster.edge(0);
    let deadline = Instant::now() + CONVERGE;
    while healthz(a).await != "degraded" {
        assert!(Instant::now() < deadline, "{}", a.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = deploy(a, "app", component("counter")).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("unavailable"), "{}", r.body);
    assert_eq!(metric(a, "edge_cluster_store_up").await, 0.0);
    let readyz = a.readyz();
    assert_eq!(readyz.0, 200);
    let readyz: serde_json::Value = serde_json::from_str(&readyz.1).unwrap();
    assert_eq!(readyz["degraded"], true, "{readyz}");
    cluster
        .converge("app.localhost", Some("Hello from edge!\n"))
        .await;

    // It returns: nodes reconnect, and a deploy reaches all of them.
    pg.resume();
    let deadline = Instant::now() + CONVERGE;
    for (_, edge) in &cluster.nodes {
        while healthz(edge).await != "ok" {
            assert!(Instant::now() < deadline, "{}", edge.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let r = deploy(cluster.edge(2), "app", component("counter")).await;
    assert_eq!(r.status, 200, "{r:?}");
    cluster.converge("app.localhost", Some("1")).await;
    drop(haproxy);
}

#[test]
fn a_wrong_store_url_is_a_clear_error_before_listening() {
    let apps = Apps::new();
    // Nothing listens on port 1.
    let out = serve_to_exit(
        apps.path(),
        &[
            "--store".as_ref(),
            "postgres://edge:secret@127.0.0.1:1/edge".as_ref(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot use the cluster app store `postgres://edge:***@127.0.0.1:1/edge`"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Serving"));
    let out = serve_to_exit(apps.path(), &["--store".as_ref(), "mysql://x".as_ref()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--store takes a PostgreSQL URL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = serve_to_exit(
        apps.path(),
        &[
            "--store".as_ref(),
            "postgres://x@127.0.0.1:1/e".as_ref(),
            "--watch".as_ref(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kubernetes-validate` from the suite's Python tools (tests/run.sh), else from PATH.
fn kubernetes_validate() -> Command {
    let venv = crate::support::repo_root().join("target/py/bin/kubernetes-validate");
    Command::new(if venv.exists() {
        venv.into_os_string()
    } else {
        "kubernetes-validate".into()
    })
}

/// The Kubernetes version the manifests are validated against (the kubectl of the machine
/// they were written on renders them).
const KUBERNETES_VERSION: &str = "1.32.0";

#[test]
fn kubernetes_manifests_render_validate_and_use_flags_the_binaries_accept() {
    let root = crate::support::repo_root().join("deploy/kubernetes");
    let help = |args: &[&str]| {
        let bin = match args[0] {
            "edge" => env!("CARGO_BIN_EXE_edge").to_string(),
            // loadrig is another package of the workspace, built by the same build.
            _ => crate::support::repo_root()
                .join("target/release/loadrig")
                .to_string_lossy()
                .into_owned(),
        };
        let out = Command::new(bin).args(&args[1..]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let edge_help = help(&["edge", "serve", "--help"]);
    let loadrig_run = help(&["loadrig", "run", "--help"]);
    let loadrig_merge = help(&["loadrig", "merge", "--help"]);
    for dir in [
        "edge",
        "loadrig",
        "loadrig-merge",
        "overlays/dev",
        "overlays/production",
    ] {
        let out = Command::new("kubectl")
            .args(["kustomize"])
            .arg(root.join(dir))
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = String::from_utf8(out.stdout).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &rendered).unwrap();
        let v = kubernetes_validate()
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(file.path())
            .output()
            .expect("kubernetes-validate (pip install kubernetes-validate)");
        let report =
            String::from_utf8_lossy(&v.stdout).into_owned() + &String::from_utf8_lossy(&v.stderr);
        assert!(v.status.success(), "{dir} does not validate:\n{report}");
        assert!(!report.contains("ERROR"), "{dir}:\n{report}");
        let kinds = rendered.matches("\nkind: ").count() + rendered.starts_with("kind: ") as usize;
        assert_eq!(report.matches("passed").count(), kinds, "{dir}:\n{report}");

        // Every flag the manifests pass exists in the binary they run.
        for flag in rendered
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- ").map(|a| a.trim_matches('"')))
            .filter(|a| a.starts_with("--"))
            .map(|a| a.split('=').next().unwrap())
        {
            let help = if rendered.contains("- merge") {
                &loadrig_merge
            } else if rendered.contains("command:\n        - loadrig") {
                &loadrig_run
            } else {
                &edge_help
            };
            assert!(
                help.contains(flag),
                "{dir} passes {flag}, which the binary lacks"
            );
        }
        // Non-root everywhere.
        assert!(rendered.contains("runAsNonRoot: true"), "{dir}");
    }
    let job = std::fs::read_to_string(root.join("loadrig/job.yaml")).unwrap();
    assert!(job.contains("completionMode: Indexed"));
    let n = |key: &str| {
        job.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.trim().parse::<u32>().ok())
            .unwrap()
    };
    let segments = job
        .split("--segment=JOB_COMPLETION_INDEX/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok())
        .expect("the Job reads its segment from JOB_COMPLETION_INDEX");
    assert_eq!((n("completions:"), n("parallelism:")), (segments, segments));
    let edge = std::fs::read_to_string(root.join("edge/deployment.yaml")).unwrap();
    assert!(edge.contains("path: /readyz") && edge.contains("emptyDir"));
    assert!(edge.contains("name: edge-admin") && edge.contains("name: edge-store"));

    // The image: multi-stage, a non-root runtime user, both binaries.
    let dockerfile =
        std::fs::read_to_string(crate::support::repo_root().join("Dockerfile")).unwrap();
    assert_eq!(dockerfile.matches("\nFROM ").count(), 2, "two stages");
    assert!(dockerfile.contains("USER 10001"));
    assert!(dockerfile.contains("target/release/edge target/release/loadrig"));
}

/// A port base `b` such that `b+1..=b+3` and `b+101..=b+103` are free now.
fn free_port_base() -> u16 {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let seed = std::process::id() as u16;
    (0..200u16)
        .map(|i| 20000 + (seed.wrapping_mul(7).wrapping_add(i * 211)) % 30000)
        .find(|&b| [1, 2, 3, 101, 102, 103].iter().all(|o| free(b + o)))
        .expect("free ports")
}

#[test]
fn the_local_cluster_script_serves_a_deploy_through_haproxy_and_every_node() {
    let state = tempfile::tempdir().unwrap();
    // PostgreSQL runs as `postgres` when the suite runs as root: it must reach the state.
    let _ = Command::new("chmod").arg("755").arg(state.path()).status();
    let base = free_port_base();
    let free = |_: ()| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let out = Command::new("bash")
        .arg(crate::support::repo_root().join("deploy/local-cluster.sh"))
        .arg("--smoke")
        .arg(guest("hello"))
        .env("EDGE_BIN", env!("CARGO_BIN_EXE_edge"))
        .env("EDGE_CLUSTER_DIR", state.path())
        .env("EDGE_NODE_PORT", base.to_string())
        .env("EDGE_PORT", free(()).to_string())
        .env("EDGE_PG_PORT", free(()).to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("local cluster up: 3 edge nodes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every node and haproxy serve hello"),
        "{stdout}"
    );
    // The followers took the deploy from the store.
    let followed = (2..=3)
        .filter(|i| {
            std::fs::read_to_string(state.path().join(format!("node{i}/log")))
                .unwrap_or_default()
                .contains("serving `hello` v1 from the app store")
        })
        .count();
    assert_eq!(followed, 2, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_store_is_seeded_from_the_first_node_and_strangers_are_set_aside_not_lost() {
    let pg = Postgres::start();
    let url = pg.url();
    // The first node of a new cluster brings its apps: each becomes v1 in the store.
    let first = Apps::new();
    first
        .add_as("hello", "app")
        .manifest("app", "timeout = \"5s\"\n");
    let a = node(first.path(), &url, &[]);
    assert_eq!(
        get(a.addr, "app.localhost", "/").await.body,
        "Hello from edge!\n"
    );
    assert!(
        a.log().contains("seeded the empty app store with `app`"),
        "{}",
        a.log()
    );
    // A second node whose directory holds an app the store has never heard of serves the
    // store's apps; the stranger is not served, and its files are moved aside, not deleted.
    let second = Apps::new();
    second
        .add_as("counter", "stranger")
        .manifest("stranger", "");
    let b = node(second.path(), &url, &[]);
    assert_eq!(
        get(b.addr, "app.localhost", "/").await.body,
        "Hello from edge!\n"
    );
    assert_eq!(get(b.addr, "stranger.localhost", "/").await.status, 404);
    let aside = second.path().join(".edge/unclaimed/stranger");
    assert_eq!(
        std::fs::read(aside.join("stranger.wasm")).unwrap(),
        std::fs::read(guest("counter")).unwrap()
    );
    assert!(aside.join("stranger.toml").exists());
    assert!(b.log().contains("not serving `stranger`"), "{}", b.log());
    for edge in [&a, &b] {
        let r = admin(edge.admin, "GET", "/apps", TOKEN, None, vec![]).await;
        let apps: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let names: Vec<&str> = apps
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["app"]);
        assert_eq!(apps[0]["version"], "v1");
    }
}
