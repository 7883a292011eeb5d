#!/usr/bin/env bash
# Verification per call in Rust, Python and TypeScript, in one run, on the same token: case
# `narrowed` of tests/vectors/mandate-v1.json (2 blocks), cold (a token seen for the first time)
# and cached (seen before: revocation and authorizer only). Prints one table; BENCHMARKS.md
# records it. Needs the clients installed (clients/python/README.md, clients/typescript/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --bench vector -- --noplot >/dev/null 2>&1 || { echo "cargo bench --bench vector failed" >&2; exit 1; }
rust() { # criterion's mean, in microseconds
    python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['mean']['point_estimate']/1000, 1))" \
        "target/criterion/vector/$1/new/estimates.json"
}
RUST_COLD=$(rust cold)
RUST_CACHED=$(rust cached)
PY=$(cd clients/python && "${PYTHON:-python3}" bench_verify.py | tail -n 1)
# biscuit-wasm prints a line of its own when it loads: the figures are the last line.
TS=$(cd clients/typescript && npx tsc -p . && node --experimental-wasm-modules --no-warnings bench/verify.mjs | tail -n 1)

python3 - "$RUST_COLD" "$RUST_CACHED" "$PY" "$TS" <<'PY'
import json, sys
rust = {"cold_us": float(sys.argv[1]), "cached_us": float(sys.argv[2])}
rows = [("Rust (mandate::token::verify)", rust), ("Python (mandate_client)", json.loads(sys.argv[3])),
        ("TypeScript (@mandate/client)", json.loads(sys.argv[4]))]
print("| verifier | cold | cached | cold ÷ Rust | cached ÷ Rust |")
print("| --- | --- | --- | --- | --- |")
for name, r in rows:
    print(f"| {name} | {r['cold_us']:.1f} µs | {r['cached_us']:.1f} µs | "
          f"{r['cold_us'] / rust['cold_us']:.2f}× | {r['cached_us'] / rust['cached_us']:.2f}× |")
PY
