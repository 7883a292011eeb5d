#!/usr/bin/env bash
# Property-based contract test: schemathesis (PyPI) generates requests from the served
# /openapi.json and checks every answer against it: no 5xx, documented status codes, response
# bodies that match their schemas. Runs against a fresh development server on the embedded store.
# (The form-encoded token endpoint's constraints make the generator discard many candidates;
# its filter_too_much health check is about generation, not the API, and is suppressed.)
#
#   python3 -m pip install schemathesis && tests/contract/schemathesis.sh [MAX_EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/../.."
examples="${1:-20}"
work="$(mktemp -d)"
port="${SCHEMATHESIS_PORT:-8391}"
token="mnd_adm_schemathesis-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
cargo build -q --bin mandate
(cd "$work" && MANDATE_LISTEN="127.0.0.1:$port" MANDATE_ADMIN_TOKEN="$token" MANDATE_LOG=warn \
    exec "$OLDPWD/target/debug/mandate" serve --dev) > "$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" > /dev/null && break; sleep 0.1; done
schemathesis run "http://127.0.0.1:$port/openapi.json" --url "http://127.0.0.1:$port" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance \
    --max-examples "$examples" --workers 2 \
    --suppress-health-check=filter_too_much
