#!/usr/bin/env bash
# Builds examples/python/app.py (or the Python app given as APP) into a wasi:http/proxy
# component with componentize-py, the Bytecode Alliance's Python-to-component tool.
#
#   bash examples/python/build.sh [OUT.wasm]      # default: target/apps-py/py.wasm
#   APP=path/to/app.py bash examples/python/build.sh out.wasm
#
# componentize-py (PyPI) is installed once into target/py, a virtualenv. The wasi:http
# WIT it builds against is the one edge itself serves: the `wit/` directory of the
# wasmtime-wasi-http crate this workspace pins, found with `cargo metadata`, so the
# component imports exactly the interface versions edge provides (wasi:http@0.2.12).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
app=$(realpath "${APP:-$root/examples/python/app.py}")
out=$(realpath -m "${1:-$root/target/apps-py/py.wasm}")
version=0.25.1

venv=$root/target/py
if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q " $version\$"; then
  echo "installing componentize-py $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version"
fi

wit_dir() {
  (cd "$root" && cargo metadata --format-version 1 --locked --offline 2>/dev/null) | python3 -c '
import json, os, sys
pkgs = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "wasmtime-wasi-http"]
print(os.path.join(os.path.dirname(pkgs[0]["manifest_path"]), "wit") if pkgs else "")'
}
wit=$(wit_dir) || true
if [ -z "$wit" ] || [ ! -d "$wit" ]; then
  # Not downloaded yet (a fresh clone): let cargo fetch the pinned crates, then look again.
  (cd "$root" && cargo fetch --locked --quiet)
  wit=$(wit_dir)
fi

mkdir -p "$(dirname "$out")"
cd "$(dirname "$app")"
"$venv/bin/componentize-py" --quiet -d "$wit" -w wasi:http/proxy@0.2.12 \
  componentize "$(basename "$app" .py)" -o "$out"
echo "built $out ($(du -h "$out" | cut -f1))" >&2
