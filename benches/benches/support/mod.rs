//! Shared by the benches: the components they measure, built from source.

use std::path::PathBuf;
use std::process::Command;

/// Builds `examples/apps` for wasm32-wasip2 (a no-op when it is up to date).
pub(crate) fn hello_wasm() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target/wasm");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(root.join("examples/apps"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("running cargo");
    assert!(status.success(), "building examples/apps failed");
    target.join("wasm32-wasip2/release/hello.wasm")
}
