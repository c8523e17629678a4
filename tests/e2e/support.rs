use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::HeaderMap;
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a server may take to compile its apps and print its startup line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runtime/ has a parent")
        .to_path_buf()
}

/// Builds every guest component once per test process and returns the path of `name`.
pub fn guest(name: &str) -> PathBuf {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    let out = OUT.get_or_init(|| {
        let root = repo_root();
        let target = root.join("target").join("wasm");
        for crate_dir in ["examples/apps", "tests/guests"] {
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
                .arg("--target-dir")
                .arg(&target)
                .current_dir(root.join(crate_dir))
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_BUILD_TARGET")
                .status()
                .expect("running cargo to build guest components");
            assert!(status.success(), "building guests in {crate_dir} failed");
        }
        target.join("wasm32-wasip2").join("release")
    });
    let path = out.join(format!("{name}.wasm"));
    assert!(path.exists(), "no guest component {}", path.display());
    path
}

/// A temporary apps directory.
pub struct Apps {
    pub dir: tempfile::TempDir,
}

impl Apps {
    pub fn new() -> Apps {
        Apps {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Adds guest `guest` as app `name`.
    pub fn add_as(&self, guest_name: &str, name: &str) -> &Apps {
        std::fs::copy(guest(guest_name), self.path().join(format!("{name}.wasm")))
            .expect("copy guest");
        self
    }

    pub fn add(&self, guest_name: &str) -> &Apps {
        self.add_as(guest_name, guest_name)
    }

    pub fn manifest(&self, name: &str, toml: &str) -> &Apps {
        self.write(&format!("{name}.toml"), toml.as_bytes())
    }

    pub fn write(&self, file: &str, bytes: &[u8]) -> &Apps {
        std::fs::write(self.path().join(file), bytes).expect("write file");
        self
    }
}

/// Compiled code shared by the tests that are not about the cache, so each test does not
/// pay for Cranelift again.
pub fn shared_cache() -> PathBuf {
    repo_root().join("target").join("e2e-cache")
}

/// A running `edge serve`.
pub struct Edge {
    child: Child,
    pub addr: SocketAddr,
    /// The admin API's address.
    pub admin: SocketAddr,
    /// The HTTPS listener's address, with `--listen-tls`.
    pub tls: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
}

impl Edge {
    /// Starts `edge serve DIR --listen 127.0.0.1:0` plus `args`, using the shared cache
    /// unless `args` choose a cache, and waits for the startup line.
    pub fn start(dir: &Path, args: &[&str]) -> Edge {
        Edge::spawn(Edge::command(dir, args))
    }

    fn command(dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge"));
        cmd.arg("serve")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            // Every instance kept between requests in every test is compared with its
            // state after instantiation; `Drop` fails the test on a difference.
            .env("EDGE_CHECK_RESETS", "1");
        if !args
            .iter()
            .any(|a| *a == "--cache-dir" || *a == "--no-cache")
        {
            cmd.arg("--cache-dir").arg(shared_cache());
        }
        cmd.args(args);
        cmd
    }

    /// Like [`Edge::start`], without `EDGE_CHECK_RESETS`, whose check reads every byte of
    /// each reset instance's memory: for tests of what a request maps.
    pub fn start_without_reset_checks(dir: &Path, args: &[&str]) -> Edge {
        let mut cmd = Edge::command(dir, args);
        cmd.env("EDGE_CHECK_RESETS", "0");
        Edge::spawn(cmd)
    }

    /// Like [`Edge::start`], with the admin token `token` given through `EDGE_ADMIN_TOKEN`.
    pub fn start_with_token(dir: &Path, args: &[&str], token: &str) -> Edge {
        let mut cmd = Edge::command(dir, args);
        cmd.env("EDGE_ADMIN_TOKEN", token);
        Edge::spawn(cmd)
    }

    /// The process id, for `kill -9`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts a prepared command (for wrappers like `sh -c 'ulimit …; exec edge …'`) and
    /// waits until every app has loaded (`/readyz`), as most tests want.
    pub fn spawn(cmd: Command) -> Edge {
        let edge = Edge::spawn_listening(cmd);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while edge.readyz().0 != 200 {
            assert!(
                Instant::now() < deadline,
                "edge did not load its apps in time:\n{}",
                edge.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        edge
    }

    /// Starts `edge serve` like [`Edge::start`], returning as soon as it listens, while its
    /// apps may still be loading.
    pub fn start_listening(dir: &Path, args: &[&str]) -> Edge {
        Edge::spawn_listening(Edge::command(dir, args))
    }

    /// `GET /readyz` on the admin listener (no token): status and body.
    pub fn readyz(&self) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.admin).expect("admin listener");
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    /// Starts a prepared command and returns once it listens.
    pub fn spawn_listening(mut cmd: Command) -> Edge {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE");
        let mut child = cmd.spawn().expect("spawning edge");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let out_log = log.clone();
        std::thread::spawn(move || {
            let (mut admin, mut tls) = (None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let addr = line
                    .split("http://")
                    .nth(1)
                    .and_then(|rest| rest.split('/').next())
                    .map(String::from);
                if line.contains("admin") {
                    admin = addr;
                } else if line.starts_with("Serving HTTPS on") {
                    tls = line
                        .split("https://")
                        .nth(1)
                        .and_then(|rest| rest.split('/').next())
                        .map(String::from);
                } else if line.starts_with("Serving HTTP on") {
                    let _ = tx.send((
                        addr.expect("address"),
                        admin.take().expect("admin line first"),
                        tls.take(),
                    ));
                }
                out_log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let stderr = child.stderr.take().unwrap();
        let err_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                err_log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok((addr, admin, tls)) = rx.recv_timeout(Duration::from_millis(100)) {
                let addr = addr.parse().expect("startup line has IP:PORT");
                let admin = admin.parse().expect("admin line has IP:PORT");
                let tls = tls.map(|t| t.parse().expect("HTTPS line has IP:PORT"));
                return Edge {
                    child,
                    addr,
                    admin,
                    tls,
                    log,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "edge exited with {status} before listening:\n{}",
                    log.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "edge did not print its startup line in time:\n{}",
                log.lock().unwrap()
            );
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`; false on timeout.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits (up to 10 s: stderr is read on its own thread) until the log contains
    /// `needle`, and panics with the whole log otherwise.
    pub fn expect_log(&self, needle: &str) {
        assert!(
            self.wait_log(needle, Duration::from_secs(10)),
            "the log never contained {needle:?}:\n{}",
            self.log()
        );
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "edge did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What edge logs when a reset instance differs from a fresh one (`--check-resets`).
pub const RESET_MISMATCH: &str = "a reset instance differs from its state after instantiation";

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A reset that missed something is a leak between requests, whatever the test
        // was about.
        if !std::thread::panicking() && self.log().contains(RESET_MISMATCH) {
            panic!("an instance was not reset exactly:\n{}", self.log());
        }
    }
}

/// A response, body collected.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends one request on a new connection, with `host` as the Host header.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
    send_with(addr, method, host, path, &[], body).await
}

/// [`send`] with extra request headers.
pub async fn send_with(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `text` percent-encoded for a query value.
pub fn percent(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// An admin-API request with `Authorization: Bearer {token}` (none if `token` is empty).
pub async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| ("content-type", ct))
        .into_iter()
        .collect();
    admin_with(addr, method, path, token, &headers, body).await
}

/// An admin-API request with `token` (none if empty) and extra `headers`.
pub async fn admin_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if !token.is_empty() {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `PUT path` of a raw component, tolerating a server that dies mid-request.
pub async fn send_admin_raw(
    addr: SocketAddr,
    token: &str,
    path: &str,
    body: Vec<u8>,
) -> Option<u16> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("PUT")
        .uri(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body)))
        .ok()?;
    Some(sender.send_request(req).await.ok()?.status().as_u16())
}

/// Runs `edge ARGS…` (a client subcommand) against `edge`'s admin API with `token`, and
/// returns (success, stdout, stderr).
pub fn cli(edge: &Edge, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(args)
        .args(["--server", &format!("http://{}", edge.admin)])
        .env("EDGE_ADMIN_TOKEN", token)
        .output()
        .expect("running edge");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `edge serve DIR` on port 0 with `args` to its exit, for servers that must refuse
/// to start.
pub fn serve_to_exit(dir: &Path, args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("serve")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running edge serve")
}

/// [`cli`] with `stdin` as the command's standard input.
pub fn cli_with_stdin(
    edge: &Edge,
    token: &str,
    args: &[&str],
    stdin: &str,
) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(args)
        .args(["--server", &format!("http://{}", edge.admin)])
        .env("EDGE_ADMIN_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running edge");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `GET http://{host}{path}`, panicking on transport errors.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Resp {
    send(addr, "GET", host, path, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
}

/// A one-shot upstream on port 0 that answers every request with `upstream says hi`.
pub async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from("upstream says hi")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Runs `edge build SOURCE -o OUT` and returns (success, stderr).
pub fn edge_build(source: &Path, out: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("build")
        .arg(source)
        .arg("-o")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("running edge build");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Apps {
    /// Builds the JavaScript app at `file` (relative to the repository) with `edge build`
    /// as app `name`, and returns what the build printed.
    pub fn add_js(&self, file: &str, name: &str) -> String {
        let source = repo_root().join(file);
        let (ok, stderr) = edge_build(&source, &self.path().join(format!("{name}.wasm")));
        assert!(ok, "edge build {file} failed:\n{stderr}");
        stderr
    }
}

/// A throwaway PostgreSQL server on a free loopback port, for tests of the cluster store
/// (the server binaries of Debian's `postgresql` package; as root it runs as `postgres`,
/// since PostgreSQL refuses to run as root).
pub struct Postgres {
    dir: tempfile::TempDir,
    running: bool,
    bin: PathBuf,
    pub port: u16,
}

impl Postgres {
    fn bin_dir() -> PathBuf {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries in /usr/lib/postgresql (apt install postgresql)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("postgres").exists())
            .collect();
        dirs.sort();
        dirs.pop().expect("no /usr/lib/postgresql/*/bin/postgres")
    }

    fn as_owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        // PostgreSQL refuses to run as root.
        let root = std::fs::metadata("/proc/self").map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        });
        if root.unwrap_or(false) {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    /// initdb into a temporary directory, then start the server.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut pg = Postgres {
            bin: Postgres::bin_dir(),
            port: 0,
            running: false,
            dir,
        };
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(pg.dir.path())
            .status();
        let status = pg
            .as_owner("initdb")
            .arg("-D")
            .arg(pg.dir.path().join("data"))
            .args(["-A", "trust", "-U", "edge", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running initdb");
        assert!(status.success(), "initdb failed");
        pg.port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        pg.resume();
        pg
    }

    /// Starts the server again on the same port and data (after [`Postgres::stop`]),
    /// waiting until it accepts queries.
    pub fn resume(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let status = self
            .as_owner("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "-o", &options])
            .stdout(Stdio::null())
            .status()
            .expect("running pg_ctl start");
        assert!(status.success(), "PostgreSQL did not start");
        self.running = true;
    }

    /// Stops the server (a fast shutdown: sessions are cut), as a database that goes away.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = self
            .as_owner("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w"])
            .stdout(Stdio::null())
            .status();
        self.running = false;
    }

    /// The URL edge's `--state` takes.
    pub fn url(&self) -> String {
        format!("postgres://edge@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
