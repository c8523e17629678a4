#!/usr/bin/env bash
# How fast could a served request be without instantiation and teardown? An experiment, not
# a feature: this tree's `edge serve` (A, which resets instances in place and keeps them:
# docs/instance-reset.md) against REV (default 1d24ecf, the last main that made a fresh
# instance per request) with benches/experiments/reuse-instances.patch applied (B), whose
# requests run on instances kept from earlier requests with nothing reset, interleaved by
# benches/ab-serve.sh on the hello. B/A is what the reset still costs: B is the ceiling.
#
#   bash benches/reuse-ceiling.sh            # ROUNDS=6 DURATION=4s, passed on to ab-serve.sh
#
# B is built in a worktree of REV with its own target
# directory, target/reuse-ceiling: the first build compiles wasmtime (~10 minutes). B gives
# every request whatever the previous ones left in memory and in the host state, and it
# does not tell apps apart: only ever serve it one app, on loopback. Needs wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
export ROUNDS=${ROUNDS:-6} DURATION=${DURATION:-4s}
root=$PWD
work=$(mktemp -d)
trap 'git worktree remove --force "$work/tree" 2>/dev/null || true; rm -rf "$work"' EXIT

git worktree add --detach --quiet "$work/tree" "${REV:-1d24ecf}"
git -C "$work/tree" apply "$root/benches/experiments/reuse-instances.patch" || {
  echo "benches/experiments/reuse-instances.patch no longer applies to runtime/src/handle.rs:" >&2
  echo "redo its four changes by hand (keep, take, skip instantiation, put back) and regenerate it" >&2
  exit 1
}
echo "building B (kept instances) in target/reuse-ceiling ..." >&2
(cd "$work/tree" && CARGO_TARGET_DIR="$root/target/reuse-ceiling" cargo build --release --quiet -p edge)
cp target/reuse-ceiling/release/edge "$work/edge-reuse"
cargo build --release --quiet -p edge
A=target/release/edge B="$work/edge-reuse" APP=hello bash benches/ab-serve.sh
