#!/usr/bin/env bash
# HTTP load benchmark of POST /v1/mandates on Postgres, beside the raw ceiling of the same
# database: a plain loop of two-insert transactions (pgbench) at the same concurrency.
#
#   cargo install oha --locked      # the load tool (crates.io)
#   bench/load.sh                   # BENCH_PG, BENCH_SECONDS, BENCH_CONCURRENCY, BENCH_RATES
#
# Runs, each BENCH_SECONDS long (default 30) against a fresh database:
#   1. raw ceiling: pgbench at each client count of BENCH_CONCURRENCY (default "16 64"), one
#      transaction = two inserts shaped like an issuance row and its audit event,
#      synchronous_commit on; then the same transactions at the last of BENCH_RATES, for the
#      database's own latency at that rate (what mint's latency there cannot go below);
#   2. mint at each of those connection counts: oha, as fast as answers come. Saturation is the
#      best of them, set against the best raw figure (the ceiling);
#   3. mint open-loop at each of BENCH_RATES requests/s (default "250 500 1000"), with latency
#      correction (a request is timed from when it was due, not from when it was sent);
#   4. the last rate again for 60 s, sampling the server's resident memory every second.
# Then every 201 answered is cross-checked against the issuance rows and audit events stored.
set -euo pipefail
cd "$(dirname "$0")/.."
pg="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
seconds="${BENCH_SECONDS:-30}"
concurrency="${BENCH_CONCURRENCY:-16 64}"
rates="${BENCH_RATES:-250 500 1000}"
port="${BENCH_PORT:-8491}"
db="mandate_bench_$$"
work="$(mktemp -d)"
base="http://127.0.0.1:$port"
command -v oha > /dev/null || { echo "oha not found: cargo install oha --locked" >&2; exit 1; }
command -v pgbench > /dev/null || { echo "pgbench not found (postgresql client tools)" >&2; exit 1; }

cargo build --release --quiet --bin mandate
psql -q "$pg/postgres" -c "CREATE DATABASE $db"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2> /dev/null && wait "$server" 2> /dev/null || true
    psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db" || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores, $(psql -tA "$pg/$db" -c 'SHOW server_version'), synchronous_commit=$(psql -tA "$pg/$db" -c 'SHOW synchronous_commit')"

# 1. The raw ceiling.
psql -q "$pg/$db" <<'SQL'
CREATE TABLE raw_issuance (id uuid PRIMARY KEY, agent_id text, principal_subject text,
  principal_issuer text, task_id text, task_description text, task_digest bytea, scope jsonb,
  root_kid bigint, revocation_id bytea, issued_at timestamptz, expires_at timestamptz,
  request_meta jsonb);
CREATE TABLE raw_audit (seq bigserial PRIMARY KEY, id uuid, occurred_at timestamptz, actor text,
  action text, target text, outcome text, details jsonb, prev_hash bytea, hash bytea);
SQL
cat > "$work/raw.sql" <<'SQL'
BEGIN;
INSERT INTO raw_issuance VALUES (gen_random_uuid(), 'dev-orchestrator', 'alice',
  'http://127.0.0.1:8080/dev-idp', 'task-1', 'Summarise open CRM tickets',
  sha256('task'), '[{"tool": "crm", "operation": "read"}]', 1,
  decode(repeat('ab', 64), 'hex'), now(), now() + interval '15 minutes',
  '{"endpoint": "/v1/mandates", "request_id": "0194f3c2-6f1e-7c3a-9d2b-5e8f1a2b3c4d", "user_agent": "oha"}');
INSERT INTO raw_audit (id, occurred_at, actor, action, target, outcome, details, prev_hash, hash)
  VALUES (gen_random_uuid(), now(), 'agent:dev-orchestrator', 'mandate.issued',
  'mandate:0194f3c2-6f1e-7c3a-9d2b-5e8f1a2b3c4d', 'success',
  '{"principal": {"subject": "alice", "issuer": "http://127.0.0.1:8080/dev-idp", "groups": ["staff"]}, "agent": "dev-orchestrator", "task_id": "task-1", "scope": [{"tool": "crm", "operation": "read"}], "kid": 1}',
  sha256('prev'), sha256('hash'));
COMMIT;
SQL
raw_tps=0 # the best of the client counts: the ceiling
for clients in $concurrency; do
    psql -q "$pg/$db" -c "TRUNCATE raw_issuance, raw_audit"
    echo "== raw ceiling: pgbench -n -c $clients -j 2 -T $seconds -f raw.sql"
    pgbench -n -c "$clients" -j 2 -T "$seconds" -f "$work/raw.sql" "$pg/$db" 2>&1 \
        | grep -E "^(tps|latency average|number of failed)" | tee "$work/raw-$clients.txt"
    tps="$(awk '/^tps/ {print $3}' "$work/raw-$clients.txt")"
    raw_tps="$(python3 -c "print(max($raw_tps, $tps))")"
done
echo "raw ceiling: $raw_tps tx/s"
last="${rates##* }"
psql -q "$pg/$db" -c "TRUNCATE raw_issuance, raw_audit"
echo "== raw at $last tx/s: pgbench -n -c 16 -j 2 -R $last -T $seconds -f raw.sql"
pgbench -n -c 16 -j 2 -R "$last" -T "$seconds" -f "$work/raw.sql" --log \
    --log-prefix="$work/rawlog" "$pg/$db" > /dev/null
cat "$work"/rawlog.* | python3 -c "
import sys
# With --rate, a transaction's time runs from when it was due (its lag behind schedule
# included), as oha's latency correction times a request.
ms = sorted(int(f[2]) / 1000 for f in map(str.split, sys.stdin))
at = lambda q: ms[min(len(ms) - 1, int(len(ms) * q))]
print(f'raw at $last tx/s: p50 {at(.5):.1f} p90 {at(.9):.1f} p99 {at(.99):.1f} p99.9 {at(.999):.1f} ms, {len(ms)} transactions')"

# 2-4. mandate on the same database.
# One orchestrator minting for one principal: the per-caller rate limits and the cap on one
# orchestrator's live mandates are lifted.
(cd "$work" && MANDATE_DATABASE_URL="$pg/$db" MANDATE_LISTEN="127.0.0.1:$port" \
    MANDATE_DATA_DIR="$work/data" MANDATE_LOG=warn MANDATE_DATABASE_MAX_CONNECTIONS=32 \
    MANDATE_MINT_RATE_PER_AGENT=1000000 MANDATE_MINT_RATE_PER_PRINCIPAL=1000000 \
    MANDATE_MAX_LIVE_MANDATES_PER_AGENT=10000000 \
    exec "$OLDPWD/target/release/mandate" serve --dev) > "$work/server.out" 2> "$work/server.err" &
server=$!
for _ in $(seq 200); do curl -sf "$base/readyz" > /dev/null && break; sleep 0.1; done
secret="$(cat "$work/data/dev-orchestrator.secret")"
jwt="$(MANDATE_DATA_DIR="$work/data" MANDATE_LISTEN="127.0.0.1:$port" \
    target/release/mandate dev login alice --group staff --ttl 7200)"
printf '{"subject_token":"%s","task":{"description":"Summarise open CRM tickets"},"scope":[{"tool":"crm","operations":["read"]}]}' \
    "$jwt" > "$work/body.json"
mint() { # label, oha arguments...
    local label="$1"; shift
    oha --no-tui --output-format json -m POST -T application/json -D "$work/body.json" \
        -H "authorization: Bearer $secret" "$@" "$base/v1/mandates" > "$work/$label.json"
    python3 - "$work/$label.json" "$label" "$raw_tps" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); label = sys.argv[2]; raw = float(sys.argv[3])
s = r["summary"]; p = r["latencyPercentiles"]; codes = r.get("statusCodeDistribution", {})
kinds = dict(r.get("errorDistribution", {}))
kinds.update({f"HTTP {c}": n for c, n in codes.items() if c != "201"})
# Requests still in flight when the run's time is up are cut off by oha, not failed by mandate.
cut = sum(n for k, n in kinds.items() if "deadline" in k.lower())
errors = sum(kinds.values()) - cut
ms = lambda v: f"{v * 1000:.1f}" if v is not None else "-"
print(f"{label}: {s['requestsPerSec']:.0f} mints/s ({s['requestsPerSec'] / raw:.2f}x the raw ceiling), "
      f"p50 {ms(p['p50'])} p90 {ms(p['p90'])} p99 {ms(p['p99'])} p99.9 {ms(p['p99.9'])} ms, "
      f"201s {codes.get('201', 0)}, errors {errors}, cut off at the end {cut}"
      + (f" {kinds}" if errors else ""))
PY
}
mint warmup -z 5s -c "${concurrency%% *}" > /dev/null
for clients in $concurrency; do
    echo "== mint as fast as answers come: oha -z ${seconds}s -c $clients"
    server_before="$(awk '{print $14 + $15}' "/proc/$server/stat")"
    mint "saturation-$clients" -z "${seconds}s" -c "$clients"
    server_after="$(awk '{print $14 + $15}' "/proc/$server/stat")"
    python3 - "$work/saturation-$clients.json" "$server_before" "$server_after" \
        "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); before, after, hz = map(float, sys.argv[2:5])
minted = r.get("statusCodeDistribution", {}).get("201", 0)
cpu = (after - before) / hz
print(f"mandate's CPU: {cpu:.1f} s for {minted} mints, {cpu / max(minted, 1) * 1e6:.0f} µs a mint")
PY
done
python3 - "$raw_tps" "$work" $concurrency <<'PY'
import json, sys
raw, work = float(sys.argv[1]), sys.argv[2]
rates = {c: json.load(open(f"{work}/saturation-{c}.json"))["summary"]["requestsPerSec"]
         for c in sys.argv[3:]}
best = max(rates, key=rates.get)
print(f"mint at saturation: {rates[best]:.0f} mints/s at {best} connections, "
      f"{rates[best] / raw:.2f}x the raw ceiling of {raw:.0f} tx/s")
PY
for rate in $rates; do
    echo "== mint open-loop: oha -z ${seconds}s -q $rate --latency-correction -c 128"
    mint "rate-$rate" -z "${seconds}s" -q "$rate" --latency-correction -c 128
done
echo "== memory at $last mints/s for 60 s (resident set of the server, sampled every second)"
( for _ in $(seq 62); do awk '/VmRSS/ {print $2}' "/proc/$server/status"; sleep 1; done ) > "$work/rss.txt" &
sampler=$!
mint "memory-$last" -z 60s -q "$last" --latency-correction -c 128
wait "$sampler" || true
echo "peak RSS $(sort -n "$work/rss.txt" | tail -1) KiB, start $(head -1 "$work/rss.txt") KiB"

answered="$(python3 -c "
import json, glob
print(sum(json.load(open(f)).get('statusCodeDistribution', {}).get('201', 0) for f in glob.glob('$work/*.json')))")"
rows="$(psql -tA "$pg/$db" -c 'SELECT count(*) FROM mandates')"
events="$(psql -tA "$pg/$db" -c "SELECT count(*) FROM audit_events WHERE action = 'mandate.issued'")"
echo "== cross-check: $answered answered 201, $rows issuance rows, $events issuance audit events"
[ "$answered" -le "$rows" ] && [ "$rows" -eq "$events" ] || { echo "MISMATCH" >&2; exit 1; }
