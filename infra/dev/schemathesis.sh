#!/usr/bin/env bash
# The HTTP API against its committed OpenAPI document (docs/openapi.json), property-based
# with schemathesis: a real `rainlogs-api` on the local stack (its own database, Redis
# and bucket prefixes, removed afterwards), called with a provider-wide admin key on
# every operation. Fails on any 5xx, any answer outside the document (status, content
# type, schema), or a crash. Bounded: SCHEMATHESIS_MAX_EXAMPLES examples per operation
# (default 20) and SCHEMATHESIS_MAX_TIME seconds in all (default 240).
# Run by infra/test.sh; needs the stack up (`infra/local/stack.sh up`).
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=4.32.5
if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$VERSION')" 2>/dev/null; then
  python3 -m pip install --quiet "schemathesis==$VERSION"
fi
source <(bash infra/local/stack.sh env)
export SQLX_OFFLINE=true
# The binaries as infra/test.sh's test build makes them (the same invocation: nothing is
# rebuilt there); `cargo build --bin …` alone would resolve other features and rebuild.
cargo test --quiet --workspace --features rainlogs-integration-tests/containers --no-run 2>/dev/null
bin="${CARGO_TARGET_DIR:-target}/debug"

run_id="st_$$_$(date +%s)"
server="${RAINLOGS_DATABASE_URL%/*}"
export RAINLOGS_DATABASE_URL="$server/rl_$run_id"
export RAINLOGS_REDIS_PREFIX="rl:$run_id:"
export RAINLOGS_S3_PREFIX="$run_id/"
export RAINLOGS_API_RATE_PER_SEC=100000 RAINLOGS_API_RATE_BURST=100000
export RAINLOGS_API_KEY_ENV=test
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export RAINLOGS_API_ADDR="127.0.0.1:$port"
log="$(mktemp -t rainlogs-api-st.XXXXXX.log)"
api_pid=""
cleanup() {
  [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null || true
  psql "$server/postgres" -qc "DROP DATABASE IF EXISTS \"rl_$run_id\" WITH (FORCE)" >/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

psql "$server/postgres" -qc "CREATE DATABASE \"rl_$run_id\"" >/dev/null
"$bin/rainlogs" migrate >/dev/null
"$bin/rainlogs" tenant add acme >/dev/null
"$bin/rainlogs" user add root --provider --role admin >/dev/null
key="$("$bin/rainlogs" key create --user root --name schemathesis 2>/dev/null)"

"$bin/rainlogs-api" >"$log" 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://$RAINLOGS_API_ADDR/v1/health" >/dev/null 2>&1 && break
  kill -0 "$api_pid" 2>/dev/null || { echo "rainlogs-api did not start:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done

status=0
schemathesis --no-color --config-file infra/dev/schemathesis.toml run docs/openapi.json \
  --url "http://$RAINLOGS_API_ADDR" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-20}" \
  --max-time "${SCHEMATHESIS_MAX_TIME:-240}" \
  --workers 2 \
  --seed 42 \
  --suppress-health-check all \
  || status=$?
if ! kill -0 "$api_pid" 2>/dev/null; then
  echo "rainlogs-api crashed during the run:" >&2; tail -50 "$log" >&2; exit 1
fi
if grep -q "panicked" "$log"; then
  echo "rainlogs-api panicked during the run:" >&2; grep -B2 -A8 "panicked" "$log" >&2; exit 1
fi
exit "$status"
