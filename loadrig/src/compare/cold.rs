//! Cold start, as separate numbers, each forced by an explicit action and repeated: deploy →
//! first byte with an empty compile cache and with the code already compiled, `edge serve`
//! process start → first byte, and the native process start → first byte.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use super::servers::{Built, Server};

/// Give up on one cold start after this long.
const COLD_TIMEOUT: Duration = Duration::from_secs(60);

/// One kind of cold start and its samples.
#[derive(Debug, Clone)]
pub struct ColdStart {
    /// What was measured.
    pub name: &'static str,
    /// How it was forced.
    pub how: &'static str,
    /// The samples, in milliseconds.
    pub samples_ms: Vec<f64>,
}

impl ColdStart {
    /// A percentile (nearest rank) of the samples.
    pub fn percentile(&self, p: f64) -> f64 {
        let mut v = self.samples_ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        v[rank.min(v.len()) - 1]
    }
}

/// A one-shot HTTP/1.1 exchange on a fresh connection: returns the status, when the first
/// byte of the response arrived, and the body.
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, Instant, Vec<u8>)> {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(COLD_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    stream.write_all(body)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk)?;
    let first = Instant::now();
    ensure!(n > 0, "{addr} closed the connection without answering");
    buf.extend_from_slice(&chunk[..n]);
    stream.read_to_end(&mut buf)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(&buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => bail!("{addr} answered something that is not HTTP"),
    };
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && h.value.to_ascii_lowercase().ends_with(b"chunked")
    });
    let body = &buf[head..];
    let body = if chunked {
        dechunk(body).with_context(|| format!("{addr} sent a malformed chunked body"))?
    } else {
        body.to_vec()
    };
    Ok((resp.code.unwrap_or(0), first, body))
}

/// Decodes a complete chunked body (trailers are dropped).
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Appends a custom section (`edge-cold-start` = `nonce`) to a component: a different
/// digest, so the compile cache misses, and the same code.
pub fn with_nonce(component: &[u8], nonce: u64) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"edge-cold-start";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(&nonce.to_le_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// Deploys `component` as `app` and returns deploy → first byte of the first `200` from it,
/// and the compile time edge reported for the deploy (`None`: the code was not compiled).
fn deploy_to_first_byte(
    edge: &Server,
    token: &str,
    app: &str,
    component: &[u8],
) -> anyhow::Result<(f64, Option<f64>)> {
    let admin = edge.admin.as_deref().context("edge has no admin API")?;
    let auth = format!("Bearer {token}");
    let host = format!("{app}.localhost");
    let start = Instant::now();
    let (status, _, body) = http(
        admin,
        "PUT",
        &format!("/apps/{app}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/wasm"),
        ],
        component,
    )?;
    ensure!(
        status == 200,
        "deploy answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&body).context("the deploy's answer is not JSON")?;
    let compile_ms = report["compile_ms"].as_f64();
    loop {
        let (status, first, _) = http(&edge.url, "GET", "/", &[("host", &host)], b"")?;
        if status != 404 {
            ensure!(status < 500, "the deployed app answered {status}");
            return Ok(((first - start).as_secs_f64() * 1000.0, compile_ms));
        }
        ensure!(
            start.elapsed() < COLD_TIMEOUT,
            "the deployed app never answered"
        );
    }
}

/// Removes `app` from edge.
fn delete_app(edge: &Server, token: &str, app: &str) -> anyhow::Result<()> {
    let admin = edge.admin.as_deref().context("edge has no admin API")?;
    let auth = format!("Bearer {token}");
    let (status, _, body) = http(
        admin,
        "DELETE",
        &format!("/apps/{app}"),
        &[("authorization", &auth)],
        b"",
    )?;
    ensure!(
        status < 300,
        "DELETE /apps/{app} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// Waits until edge serves `app` from optimized (Cranelift) code, so the next
/// measurement starts with nothing compiling in the background.
fn wait_optimized(edge: &Server, token: &str, app: &str) -> anyhow::Result<()> {
    let admin = edge.admin.as_deref().context("edge has no admin API")?;
    let auth = format!("Bearer {token}");
    let start = Instant::now();
    loop {
        let (status, _, body) = http(admin, "GET", "/apps", &[("authorization", &auth)], b"")?;
        ensure!(status == 200, "GET /apps answered {status}");
        let apps: serde_json::Value =
            serde_json::from_slice(&body).context("GET /apps is not JSON")?;
        let tier = apps
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == app))
            .and_then(|x| x["tier"].as_str().map(str::to_owned));
        if tier.as_deref() != Some("baseline") {
            return Ok(());
        }
        ensure!(
            start.elapsed() < COLD_TIMEOUT,
            "`{app}` was never optimized"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Spawns a server and returns process start → first byte of its first response.
fn start_to_first_byte(cmd: Command, host: &str) -> anyhow::Result<f64> {
    let server = Server::start(cmd, None, false)?;
    let (status, first, _) = http(&server.url, "GET", "/", &[("host", host)], b"")?;
    ensure!(status < 500, "the server answered {status}");
    Ok((first - server.spawned).as_secs_f64() * 1000.0)
}

/// `edge serve APPS` on free loopback ports, with its cache in `cache` and the plan's token.
fn edge_serve(plan: &ColdPlan<'_>, apps: &std::path::Path, cache: &std::path::Path) -> Command {
    let mut c = Command::new(&plan.built.edge);
    c.arg("serve")
        .arg(apps)
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(cache)
        .env("EDGE_ADMIN_TOKEN", plan.token)
        .env_remove("RUST_BACKTRACE");
    c
}

/// Everything needed to force cold starts.
pub struct ColdPlan<'a> {
    /// The builds.
    pub built: &'a Built,
    /// The admin token the edge servers started here accept.
    pub token: &'a str,
    /// The app under test.
    pub app: &'a str,
    /// A directory to create apps directories and caches in.
    pub scratch: &'a std::path::Path,
    /// Repetitions of each.
    pub repeat: usize,
}

/// Measures every kind of cold start, reporting progress on stderr.
///
/// The servers here are started for it, unpinned and with edge's default threads: nothing
/// else runs while they are measured, so a deploy compiles and a process starts with every
/// CPU, as they would on a server that is not under a load test.
pub fn measure(plan: &ColdPlan<'_>) -> anyhow::Result<Vec<ColdStart>> {
    let component = std::fs::read(&plan.built.component)?;
    let deploy_apps = plan.scratch.join("cold-deploy-apps");
    std::fs::create_dir_all(&deploy_apps)?;
    let c = edge_serve(plan, &deploy_apps, &plan.scratch.join("cold-deploy-cache"));
    let edge = &Server::start(c, None, true)?;
    let name = "cold";
    let nonce0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut empty = ColdStart {
        name: "deploy → first byte, empty compile cache",
        how: "PUT /apps/cold with a component no cache has seen (a fresh custom section); edge serves it from the baseline tier (Winch) while Cranelift compiles in the background",
        samples_ms: Vec::new(),
    };
    let mut compiling = ColdStart {
        name: "empty cache: of it, compiling (edge's report)",
        how: "compile_ms of each empty-cache deploy's answer: the part of it spent compiling",
        samples_ms: Vec::new(),
    };
    let mut warm = ColdStart {
        name: "deploy → first byte, code already compiled",
        how: "DELETE /apps/cold, then PUT the bytes just deployed again: their code comes from the compile cache (code still live would be reused without even that)",
        samples_ms: Vec::new(),
    };
    for i in 0..plan.repeat {
        eprint!(
            "\rloadrig: cold start: deploys {}/{}   ",
            i + 1,
            plan.repeat
        );
        let bytes = with_nonce(&component, nonce0 + i as u64);
        let (ms, compile_ms) = deploy_to_first_byte(edge, plan.token, name, &bytes)?;
        empty.samples_ms.push(ms);
        compiling.samples_ms.push(
            compile_ms.context("edge reported no compile for a component no cache has seen")?,
        );
        // That deploy served baseline code; let Cranelift's finish (and reach the cache)
        // so the next one measures a deploy of code already compiled. The app goes first:
        // edge reuses the code of the same bytes while they serve, and this measures the
        // cache.
        wait_optimized(edge, plan.token, name)?;
        delete_app(edge, plan.token, name)?;
        warm.samples_ms
            .push(deploy_to_first_byte(edge, plan.token, name, &bytes)?.0);
    }
    // Process starts: edge with its cache warm (the code compiled above), native as is.
    let apps = plan.scratch.join("cold-apps");
    std::fs::create_dir_all(&apps)?;
    std::fs::copy(
        &plan.built.component,
        apps.join(format!("{}.wasm", plan.app)),
    )?;
    let cache = plan.scratch.join("cold-cache");
    let host = format!("{}.localhost", plan.app);
    let edge_cmd = || edge_serve(plan, &apps, &cache);
    // Fill the cache once, unmeasured. A cache miss at start-up serves from the baseline
    // tier, and Cranelift's code reaches the cache only when its background compile ends:
    // wait for that, or every measured start would be a miss too.
    {
        let edge = Server::start(edge_cmd(), None, true)?;
        let (status, _, _) = http(&edge.url, "GET", "/", &[("host", &host)], b"")?;
        ensure!(status < 500, "the server answered {status}");
        wait_optimized(&edge, plan.token, plan.app)?;
    }
    let mut serve = ColdStart {
        name: "edge serve process start → first byte",
        how: "spawn `edge serve` (compile cache warm), GET /",
        samples_ms: Vec::new(),
    };
    let mut native = ColdStart {
        name: "native process start → first byte",
        how: "spawn `native --app APP`, GET /",
        samples_ms: Vec::new(),
    };
    for i in 0..plan.repeat {
        eprint!(
            "\rloadrig: cold start: process starts {}/{}   ",
            i + 1,
            plan.repeat
        );
        serve
            .samples_ms
            .push(start_to_first_byte(edge_cmd(), &host)?);
        let mut n = Command::new(&plan.built.native);
        n.args(["--app", plan.app, "--listen", "127.0.0.1:0"]);
        native.samples_ms.push(start_to_first_byte(n, &host)?);
    }
    eprint!("\r\x1b[2K");
    Ok(vec![empty, compiling, warm, serve, native])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_append_a_well_formed_custom_section() {
        let out = with_nonce(b"\0asm\x0d\0\x01\0", 7);
        let tail = &out[8..];
        assert_eq!(tail[0], 0);
        assert_eq!(tail[1] as usize, tail.len() - 2);
        assert_eq!(tail[2] as usize, "edge-cold-start".len());
        assert_ne!(with_nonce(b"x", 1), with_nonce(b"x", 2));
        let c = ColdStart {
            name: "",
            how: "",
            samples_ms: vec![5.0, 1.0, 3.0, 2.0, 4.0],
        };
        assert_eq!(
            (c.percentile(50.0), c.percentile(90.0), c.percentile(100.0)),
            (3.0, 5.0, 5.0)
        );
    }
}
