#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) from the checked-in seeds, on the stable
# toolchain (no sanitizer: `-s none`), and prints each target's execution count. Any crash,
# failed assertion, hang (over 10 s for one input) or memory blow-up fails the run; libFuzzer
# leaves the input under fuzz/artifacts/TARGET/ to reproduce it with
# `cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-…`.
#   fuzz/run.sh [SECONDS] [TARGET…]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(token_verify attenuate_verify block_vocabulary jwt api_json revocation_feed dpop_proof)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
cargo fuzz build -s none
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="$(mktemp)"
    if ! cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED" >&2
        exit 1
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
    echo "fuzz: $target ran ${runs:-?} executions in ${seconds}s without a failure"
    rm -f "$log"
done
