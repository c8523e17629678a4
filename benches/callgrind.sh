#!/usr/bin/env bash
# Instructions per hello request, in process (no HTTP), counted by callgrind: the same
# program (benches/examples/requests.rs) runs N1 and N2 requests, and the difference of
# the two profiles divided by N2 - N1 is one request, with start-up and loading gone.
# Instruction counts do not move with the machine's load, unlike times. Prints the total
# and the functions that take the most of it (inclusive). The pooling allocator cannot
# reserve its memory under valgrind, so the instances come from the on-demand allocator.
#
#   bash benches/callgrind.sh          # N1=200 N2=1200 TOP=40
#   WASM=/tmp/js.wasm bash benches/callgrind.sh   # another app (e.g. `edge build examples/js/hello.js -o /tmp/js.wasm`)
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-200}
N2=${N2:-1200}
TOP=${TOP:-40}
unset RUST_BACKTRACE
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --quiet -p edge-benches --example requests
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=target/release/examples/requests
# Under valgrind the CPU looks different, so the engine's code is another cache entry:
# compile it once here, outside the profiles.
app=(${WASM:+"$WASM"})
valgrind --tool=none "$bin" 1 on-demand "${app[@]}" >/dev/null 2>&1
for n in "$N1" "$N2"; do
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$n" "$bin" "$n" on-demand "${app[@]}" >/dev/null 2>&1
  callgrind_annotate --inclusive=yes --threshold=100 "$work/cg.$n" >"$work/inc.$n" 2>/dev/null
done
python3 - "$work/inc.$N1" "$work/inc.$N2" "$((N2 - N1))" "$TOP" <<'PY'
import re, sys
def load(path):
    costs = {}
    for line in open(path):
        m = re.match(r"^\s*([\d,]+) \([^)]*\)\s+(.*)$", line)
        if not m or m.group(2).startswith("=>"):
            continue
        name = re.sub(r" \[[^\]]*\]$", "", m.group(2))
        name = re.sub(r"^.*?\.(rs|c|h|S):", "", name)
        costs[name] = max(costs.get(name, 0), int(m.group(1).replace(",", "")))
    return costs
a, b, n, top = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
per = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}
total = per.pop("PROGRAM TOTALS")
# The frames every request runs under (main, block_on) say nothing.
per = {k: v for k, v in per.items() if v < 0.99 * total and k != "events annotated"}
print(f"{total:,.0f} instructions per request ({n} requests between the two runs)\n")
print(f"{'per request':>12} {'share':>6}  function (inclusive)")
for name, v in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
    print(f"{v:>12,.0f} {v / total:>6.1%}  {name[:110]}")
PY
