// The JavaScript engine's build, shared by the build scripts of edge (runtime/build.rs:
// the `wasi:http/proxy` engine behind `edge build`) and loadrig (loadrig/build.rs: the
// `k6` VU engine behind `loadrig run script.js`), each of which `include!`s this file.
//
// The engine is a separate cargo project (its own target, C toolchain and profile), built
// with a nested `cargo build` into the repository's `target/`, where the test harness
// builds the other guests.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One build of the engine.
struct EngineBuild {
    /// Cargo features of `sdk-js/engine` (`k6` for loadrig's VU).
    features: &'static str,
    /// The target directory under the repository's `target/`.
    target_dir: &'static str,
    /// The file written in `OUT_DIR` (empty when the toolchain is missing).
    out_name: &'static str,
    /// An environment variable naming a prebuilt engine to embed instead.
    prebuilt_env: &'static str,
    /// What goes missing without the toolchain, for the warning.
    what: &'static str,
}

impl EngineBuild {
    fn run(&self) {
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let embedded = out.join(self.out_name);
        println!("cargo:rerun-if-env-changed={}", self.prebuilt_env);
        if let Some(prebuilt) = env::var_os(self.prebuilt_env) {
            let prebuilt = PathBuf::from(prebuilt);
            println!("cargo:rerun-if-changed={}", prebuilt.display());
            copy(&prebuilt, &embedded);
            return;
        }
        let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
        let repo = manifest.parent().expect("a crate of the repository").to_path_buf();
        let project = repo.join("sdk-js/engine");
        for input in [
            "sdk-js/engine/src",
            "sdk-js/engine/Cargo.toml",
            "sdk-js/engine/Cargo.lock",
            "sdk-js/engine/.cargo/config.toml",
            "sdk-js/js",
            "loadrig/wit",
            "vendor/rquickjs-sys",
        ] {
            println!("cargo:rerun-if-changed={}", repo.join(input).display());
        }
        // Without the toolchain the crate still builds, without this engine (it says so
        // when run); the check reruns on every build until the toolchain is there.
        if let Some(missing) = missing_toolchain() {
            println!(
                "cargo:warning=building without {}: {missing} is missing \
                 (run `bash sdk-js/setup.sh`, then rebuild)",
                self.what
            );
            std::fs::write(&embedded, b"").expect("writing OUT_DIR");
            return;
        }
        let target_dir = repo.join("target").join(self.target_dir);
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&project)
            .args(["build", "--release", "--locked", "--target", "wasm32-wasip2"])
            .arg("--target-dir")
            .arg(&target_dir);
        if !self.features.is_empty() {
            cmd.args(["--features", self.features]);
        }
        let status = cmd
            // The host build's flags and target are not the guest's.
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .status();
        match status {
            Ok(status) if status.success() => {}
            other => panic!(
                "building the JavaScript engine (sdk-js/engine) for wasm32-wasip2 failed ({other:?}).\n\
                 It needs `rustup target add wasm32-wasip2` and a C toolchain for wasm: \
                 `apt-get install clang-16 llvm-16 wasi-libc` (see the README's set-up).\n\
                 Or set {} to a prebuilt engine.",
                self.prebuilt_env
            ),
        }
        copy(
            &target_dir.join("wasm32-wasip2/release/edge_js_engine.wasm"),
            &embedded,
        );
    }
}

/// What the engine's build needs and this machine lacks, if anything. Each probe path is
/// also a rerun trigger: cargo reruns a build script whose trigger path does not exist.
fn missing_toolchain() -> Option<String> {
    let clang = env::var("CC_wasm32_wasip2").unwrap_or_else(|_| "clang-16".into());
    println!("cargo:rerun-if-env-changed=CC_wasm32_wasip2");
    let clang_path = which(&clang);
    let wasi_libc = Path::new("/usr/lib/wasm32-wasi/libc.a");
    let sysroot = Command::new(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    println!(
        "cargo:rerun-if-changed={}",
        clang_path
            .clone()
            .unwrap_or_else(|| PathBuf::from("/usr/bin").join(&clang))
            .display()
    );
    println!("cargo:rerun-if-changed={}", wasi_libc.display());
    if let Some(sysroot) = &sysroot {
        println!("cargo:rerun-if-changed={}", sysroot.display());
    }
    let missing = if clang_path.is_none() {
        Some(clang)
    } else if !wasi_libc.exists() {
        Some("wasi-libc".into())
    } else if !sysroot.as_ref().is_some_and(|p| p.is_dir()) {
        Some("the wasm32-wasip2 Rust target".into())
    } else {
        None
    };
    if missing.is_some() {
        // A missing trigger path reruns the script on every build, but once a package
        // installs it, the file carries the package's (older) modification time and cargo
        // would take it as unchanged, keeping the engine-less build. What an install does
        // change is the directory the compiler lands in, dpkg's database and rustup's
        // target list: watch those too while something is missing.
        for dir in env::split_paths(&env::var_os("PATH").unwrap_or_default()) {
            if dir.is_dir() {
                println!("cargo:rerun-if-changed={}", dir.display());
            }
        }
        println!("cargo:rerun-if-changed=/var/lib/dpkg/status");
        if let Some(rustlib) = sysroot.as_ref().and_then(|p| p.ancestors().nth(2)) {
            println!("cargo:rerun-if-changed={}", rustlib.display());
        }
    }
    missing
}

fn which(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.is_absolute() {
        return path.exists().then(|| path.to_path_buf());
    }
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn copy(from: &Path, to: &Path) {
    if let Err(err) = std::fs::copy(from, to) {
        panic!("cannot copy {} to {}: {err}", from.display(), to.display());
    }
}
