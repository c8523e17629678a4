//! Finding, building and starting what a comparison needs: the repository's example apps
//! (native and wasm builds of the same handlers), the `native` server and `edge serve`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// How long a server may take to print its startup line.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository checkout the examples are built from.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
}

/// Everything built.
#[derive(Debug, Clone)]
pub struct Built {
    /// The `edge` binary.
    pub edge: PathBuf,
    /// The `native` examples server.
    pub native: PathBuf,
    /// The app's component.
    pub component: PathBuf,
}

impl Repo {
    /// Finds the checkout: `dir` if given, else the nearest ancestor of the current
    /// directory (or of this executable) holding `examples/apps`.
    pub fn find(dir: Option<&Path>) -> anyhow::Result<Repo> {
        let is_repo = |d: &Path| d.join("examples/apps/Cargo.toml").is_file();
        if let Some(d) = dir {
            ensure!(
                is_repo(d),
                "`{}` is not an edge checkout (no examples/apps)",
                d.display()
            );
            return Ok(Repo { root: d.to_owned() });
        }
        let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
        for start in starts.into_iter().flatten() {
            if let Some(root) = start.ancestors().find(|d| is_repo(d)) {
                return Ok(Repo {
                    root: root.to_owned(),
                });
            }
        }
        bail!(
            "cannot find the edge checkout: run from inside it, or pass --repo DIR, or compare running servers with native=URL wasm=URL"
        )
    }

    /// Builds the servers and the app's component (cargo makes this a no-op when they are up
    /// to date), reporting on stderr.
    pub fn build(&self, app: &str) -> anyhow::Result<Built> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("target"));
        eprintln!(
            "loadrig: building edge, native and the `{app}` component (release; the first build takes minutes)"
        );
        // Set-up on demand, like every step here: the component target and the JavaScript
        // engine's C toolchain (edge's build script embeds the engine only when that
        // toolchain is present, so a first build without it would give an incomplete edge).
        run(Command::new("bash")
            .arg(self.root.join("sdk-js/setup.sh"))
            .current_dir(&self.root))?;
        run(Command::new("cargo")
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "edge",
                "-p",
                "edge-native",
            ])
            .current_dir(&self.root))?;
        run(Command::new("cargo")
            .args(["build", "--release", "--quiet", "--bin", app])
            .current_dir(self.root.join("examples/apps")))?;
        let built = Built {
            edge: target.join("release/edge"),
            native: target.join("release/native"),
            component: self
                .root
                .join("target/wasm/wasm32-wasip2/release")
                .join(format!("{app}.wasm")),
        };
        for p in [&built.edge, &built.native, &built.component] {
            ensure!(p.is_file(), "the build did not produce `{}`", p.display());
        }
        Ok(built)
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

/// A server process, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Its HTTP address, from its startup line.
    pub url: String,
    /// Its admin API, if it has one.
    pub admin: Option<String>,
    /// When it was spawned.
    pub spawned: Instant,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The CPU time the server's process has used so far: all its threads, user and
    /// kernel (`utime + stime` of `/proc/PID/stat`); `None` where that cannot be read.
    pub fn cpu_time(&self) -> Option<Duration> {
        let pid = i32::try_from(self.child.id()).ok()?;
        let stat = procfs::process::Process::new(pid).ok()?.stat().ok()?;
        let ticks = stat.utime + stat.stime;
        Some(Duration::from_secs_f64(
            ticks as f64 / procfs::ticks_per_second() as f64,
        ))
    }

    /// Spawns `cmd` (pinned to `cpu` with taskset when given) and waits for its
    /// `Serving HTTP on http://ADDR/` line (and `Admin API … on http://ADDR` before it, if
    /// `admin`).
    pub fn start(mut cmd: Command, cpu: Option<usize>, admin: bool) -> anyhow::Result<Server> {
        if let Some(cpu) = cpu {
            let program = cmd.get_program().to_owned();
            let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
            let envs: Vec<_> = cmd
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
                .collect();
            let mut pinned = Command::new("taskset");
            pinned
                .arg("-c")
                .arg(cpu.to_string())
                .arg(program)
                .args(args);
            for (k, v) in envs {
                match v {
                    Some(v) => pinned.env(k, v),
                    None => pinned.env_remove(k),
                };
            }
            cmd = pinned;
        }
        let spawned = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut admin_url = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Admin API").nth(1)
                    && let Some(url) = rest.split_whitespace().find(|w| w.starts_with("http://"))
                {
                    admin_url = Some(url.trim_end_matches('/').to_owned());
                }
                if let Some(url) = line.strip_prefix("Serving HTTP on ") {
                    let _ = tx.send((
                        url.trim().trim_end_matches('/').to_owned(),
                        admin_url.take(),
                    ));
                }
            }
        });
        let mut server = Server {
            child,
            url: String::new(),
            admin: None,
            spawned,
        };
        let (url, admin_url) = rx.recv_timeout(START_TIMEOUT).map_err(|_| {
            anyhow::anyhow!("{cmd:?} did not print `Serving HTTP on …` within {START_TIMEOUT:?}")
        })?;
        ensure!(
            !admin || admin_url.is_some(),
            "{cmd:?} did not print its admin address"
        );
        server.url = url;
        server.admin = admin_url;
        Ok(server)
    }
}
