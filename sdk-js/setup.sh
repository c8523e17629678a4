#!/usr/bin/env bash
# Installs what building the JavaScript engine (sdk-js/engine) needs: the wasm32-wasip2
# Rust target, and a C toolchain for wasm, since QuickJS-NG is C: clang-16 and llvm-16
# (Debian/Ubuntu packages) with wasi-libc. Idempotent; run by tests/run.sh and .ci/run.
# The environment variables the build needs are in sdk-js/engine/.cargo/config.toml.
set -euo pipefail

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

missing=()
command -v clang-16 >/dev/null || missing+=(clang-16)
command -v llvm-ar-16 >/dev/null || missing+=(llvm-16)
[ -e /usr/lib/wasm32-wasi/libc.a ] || missing+=(wasi-libc)
if [ ${#missing[@]} -gt 0 ]; then
  echo "sdk-js/setup.sh: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
