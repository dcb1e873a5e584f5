#!/usr/bin/env bash
# Local stack for Rainlogs: PostgreSQL, Redis and Garage (S3) on this machine.
#
#   bash infra/local/stack.sh up       start what is missing, wait until all answer, write the env file
#   bash infra/local/stack.sh down     stop only what `up` started
#   bash infra/local/stack.sh status   show each service and who runs it
#   bash infra/local/stack.sh env      print the endpoints as shell exports
#   bash infra/local/stack.sh garage-bin   build Garage once (if not cached) and print its path
#
# Settings (all optional): RAINLOGS_DATABASE_URL or RAINLOGS_PG_SERVER_URL, RAINLOGS_REDIS_URL,
# RAINLOGS_S3_BUCKET, RAINLOGS_GARAGE_{S3,RPC,ADMIN}_PORT, RAINLOGS_GARAGE_EXTERNAL=1 (use a
# Garage someone else runs), RAINLOGS_STATE_DIR (default .rainlogs/), RAINLOGS_CACHE_DIR
# (default ~/.cache/rainlogs, where the Garage binary is built once).
#
# Every step is safe to repeat. Postgres and Redis: a configured URL that answers is used
# as it is; otherwise a private instance is started under .rainlogs/ (installing the
# Debian package when absent). Garage 2.5.0 is built once with `cargo install` into a
# cache outside the checkout (~8 min the first time) and started as a single node whose
# data, layout, key and bucket survive restarts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${RAINLOGS_STATE_DIR:-$ROOT/.rainlogs}"
CACHE="${RAINLOGS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rainlogs}"
RUN="$STATE/run"
ENV_FILE="$STATE/env"

GARAGE_VERSION="2.5.0"
GARAGE_BIN="$CACHE/garage-$GARAGE_VERSION/bin/garage"
GARAGE_DIR="$STATE/garage"
GARAGE_CONF="$GARAGE_DIR/garage.toml"
GARAGE_S3_PORT="${RAINLOGS_GARAGE_S3_PORT:-3900}"
GARAGE_RPC_PORT="${RAINLOGS_GARAGE_RPC_PORT:-3901}"
GARAGE_ADMIN_PORT="${RAINLOGS_GARAGE_ADMIN_PORT:-3903}"
BUCKET="${RAINLOGS_S3_BUCKET:-rainlogs}"
# A fixed development key, imported into the local Garage only. Never use it elsewhere.
DEV_KEY_NAME="rainlogs-dev"
DEV_KEY_ID="GK0123456789abcdef01234567"
DEV_KEY_SECRET="5ecdeb6e1d2f0c3b4a59687766554433221100ffeeddccbbaa99887766554433"
# The landing bucket S3-compatible Logpush destinations write to (docs/INGEST.md), and a
# fixed development key that may only write there: what Cloudflare would be given. The
# tests use both; Rainlogs' own key reads and empties the bucket. Local Garage only.
LANDING_BUCKET="${RAINLOGS_DEV_LANDING_BUCKET:-rainlogs-landing}"
LANDING_KEY_NAME="rainlogs-dev-landing-writer"
LANDING_KEY_ID="GK76543210fedcba9876543210"
LANDING_KEY_SECRET="1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"

PG_DB="${RAINLOGS_PG_DATABASE:-rainlogs}"
PG_SERVER_DEFAULT="postgres://postgres@127.0.0.1:5432"
PG_PRIVATE_PORT="${RAINLOGS_PG_PRIVATE_PORT:-54329}"
REDIS_DEFAULT="redis://127.0.0.1:6379/0"
REDIS_PRIVATE_PORT="${RAINLOGS_REDIS_PRIVATE_PORT:-63790}"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# wait_until DESCRIPTION SECONDS COMMAND...: polls COMMAND until it succeeds or time runs out.
wait_until() {
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then die "$what did not answer within ${secs}s"; fi
    sleep 0.2
  done
}

apt_install() {
  log "installing Debian packages: $*"
  if [[ $(id -u) -ne 0 ]]; then die "need root to apt-get install $* (or install them yourself)"; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# A killed daemon may linger as a zombie when nothing reaps it: that is not alive.
pid_alive() {
  [[ -f "$1" ]] || return 1
  local pid state; pid="$(cat "$1")"
  kill -0 "$pid" 2>/dev/null || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo ?)"
  [[ "$state" != Z && "$state" != X ]]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- env file
saved() { # saved VAR: the value recorded in the env file by a previous `up`
  [[ -f "$ENV_FILE" ]] && sed -n "s/^$1='\(.*\)'$/\1/p" "$ENV_FILE" | tail -1
}

# ---------------------------------------------------------------- PostgreSQL
pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do [[ -x "$dir/initdb" ]] && { echo "$dir"; return; }; done
  return 1
}

pg_answers() { psql "$1/postgres" -qtAc 'select 1' >/dev/null 2>&1; }

pg_up() {
  command -v psql >/dev/null || apt_install postgresql-client
  local server="${RAINLOGS_PG_SERVER_URL:-}"
  if [[ -z "$server" && -n "${RAINLOGS_DATABASE_URL:-}" ]]; then
    server="${RAINLOGS_DATABASE_URL%/*}"
    PG_DB="${RAINLOGS_DATABASE_URL##*/}"; PG_DB="${PG_DB%%\?*}"
  fi
  server="${server:-$PG_SERVER_DEFAULT}"
  if pg_answers "$server"; then
    log "postgres: using $server"
  else
    pg_private_up
    server="postgres://postgres@127.0.0.1:$PG_PRIVATE_PORT"
  fi
  local exists; exists="$(psql "$server/postgres" -qtAc "select 1 from pg_database where datname = '$PG_DB'")"
  if [[ "$exists" != 1 ]]; then
    psql "$server/postgres" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null
    log "postgres: created database $PG_DB"
  fi
  PG_URL="$server/$PG_DB"
}

pg_private_up() {
  local bin data="$STATE/postgres" user
  bin="$(pg_bin)" || { apt_install postgresql; bin="$(pg_bin)"; }
  # PostgreSQL refuses to run as root: run the private cluster as the postgres user.
  user="$(id -un)"; [[ $(id -u) -eq 0 ]] && user=postgres
  as_pg() { if [[ "$user" == "$(id -un)" ]]; then "$@"; else runuser -u "$user" -- "$@"; fi; }
  # Only the data directory: the state directory holds the env file, which the
  # binaries trust only when every directory above it is ours (config::find_env_file).
  mkdir -p "$data" && chown "$user" "$data" 2>/dev/null || true
  if [[ ! -f "$data/PG_VERSION" ]]; then
    log "postgres: initialising a private cluster in $data"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "postgres: starting private cluster on 127.0.0.1:$PG_PRIVATE_PORT"
    as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PRIVATE_PORT -k /tmp" start >/dev/null
    touch "$RUN/postgres.started"
  fi
  wait_until "postgres (private)" 30 pg_answers "postgres://postgres@127.0.0.1:$PG_PRIVATE_PORT"
}

pg_down() {
  [[ -f "$RUN/postgres.started" ]] || return 0
  local bin user; bin="$(pg_bin)" || return 0
  user="$(id -un)"; [[ $(id -u) -eq 0 ]] && user=postgres
  log "postgres: stopping private cluster"
  if [[ "$user" == "$(id -un)" ]]; then "$bin/pg_ctl" -D "$STATE/postgres" -m fast stop >/dev/null || true
  else runuser -u "$user" -- "$bin/pg_ctl" -D "$STATE/postgres" -m fast stop >/dev/null || true; fi
  rm -f "$RUN/postgres.started"
}

# ---------------------------------------------------------------- Redis
redis_answers() { # redis_answers HOST PORT
  if command -v redis-cli >/dev/null; then
    [[ "$(redis-cli -h "$1" -p "$2" ping 2>/dev/null)" == PONG ]]
  else
    exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || return 1
    printf 'PING\r\n' >&3; local reply; read -r -t 2 reply <&3; exec 3>&-
    [[ "$reply" == +PONG* ]]
  fi
}

redis_up() {
  local url="${RAINLOGS_REDIS_URL:-$REDIS_DEFAULT}" hostport host port
  hostport="${url#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
  host="${hostport%%:*}"; port="${hostport##*:}"; [[ "$port" == "$hostport" ]] && port=6379
  if redis_answers "$host" "$port"; then
    log "redis: using $url"; REDIS_URL="$url"; return
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$STATE/redis"
  if ! pid_alive "$RUN/redis.pid"; then
    log "redis: starting private server on 127.0.0.1:$REDIS_PRIVATE_PORT"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PRIVATE_PORT" \
      --save "" --appendonly no --dir "$STATE/redis" \
      --pidfile "$RUN/redis.pid" --logfile "$STATE/redis/redis.log" >/dev/null
  fi
  wait_until "redis (private)" 20 redis_answers 127.0.0.1 "$REDIS_PRIVATE_PORT"
  REDIS_URL="redis://127.0.0.1:$REDIS_PRIVATE_PORT/0"
}

redis_down() {
  pid_alive "$RUN/redis.pid" || return 0
  log "redis: stopping private server"
  kill "$(cat "$RUN/redis.pid")" 2>/dev/null || true
  rm -f "$RUN/redis.pid"
}

# ---------------------------------------------------------------- Garage
garage_install() {
  [[ -x "$GARAGE_BIN" ]] && return 0
  command -v cargo >/dev/null || die "cargo is needed to build Garage (install Rust with rustup)"
  log "garage: building $GARAGE_VERSION into $CACHE (first time only, ~8 min on 2 cores)"
  cargo install garage --locked --version "$GARAGE_VERSION" --root "$CACHE/garage-$GARAGE_VERSION" --quiet
}

garage() { "$GARAGE_BIN" -c "$GARAGE_CONF" "$@"; }

garage_config() {
  mkdir -p "$GARAGE_DIR/meta" "$GARAGE_DIR/data"
  chmod 700 "$GARAGE_DIR"
  # Secrets are generated once and kept, so a restarted node keeps its identity.
  [[ -f "$GARAGE_DIR/rpc_secret" ]] || (umask 077; openssl rand -hex 32 > "$GARAGE_DIR/rpc_secret")
  [[ -f "$GARAGE_DIR/admin_token" ]] || (umask 077; openssl rand -hex 32 > "$GARAGE_DIR/admin_token")
  (umask 077; cat > "$GARAGE_CONF" <<EOF
metadata_dir = "$GARAGE_DIR/meta"
data_dir = "$GARAGE_DIR/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_public_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_secret = "$(cat "$GARAGE_DIR/rpc_secret")"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$GARAGE_S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$GARAGE_ADMIN_PORT"
admin_token = "$(cat "$GARAGE_DIR/admin_token")"
EOF
  )
}

garage_up() {
  if [[ "${RAINLOGS_GARAGE_EXTERNAL:-}" == 1 ]]; then
    # Someone else runs Garage (compose, a shared node): only check it serves the bucket.
    wait_until "external garage at 127.0.0.1:$GARAGE_S3_PORT" 30 s3_answers
    log "garage: using external node on 127.0.0.1:$GARAGE_S3_PORT"
    return
  fi
  garage_install
  garage_config
  if ! pid_alive "$RUN/garage.pid"; then
    if port_open "$GARAGE_S3_PORT" || port_open "$GARAGE_RPC_PORT"; then
      die "garage: port $GARAGE_S3_PORT or $GARAGE_RPC_PORT is taken by a process this stack did not start; stop it or set RAINLOGS_GARAGE_S3_PORT / RAINLOGS_GARAGE_RPC_PORT / RAINLOGS_GARAGE_ADMIN_PORT"
    fi
    log "garage: starting node (data in $GARAGE_DIR)"
    setsid nohup "$GARAGE_BIN" -c "$GARAGE_CONF" server >>"$GARAGE_DIR/garage.log" 2>&1 < /dev/null &
    echo $! > "$RUN/garage.pid"
  fi
  wait_until "garage rpc" 30 garage status
  # Layout: assign this node once; a node that already has a role keeps it.
  # Read the whole output first: `cmd | grep -q` under pipefail fails at random when grep
  # exits early and cmd dies of SIGPIPE.
  local layout; layout="$(garage layout show 2>/dev/null || true)"
  if grep -q "No nodes currently have a role" <<<"$layout"; then
    local node; node="$(garage node id -q)"; node="${node%@*}"
    garage layout assign -z dc1 -c 1G "$node" >/dev/null
    local staged version
    staged="$(garage layout show 2>/dev/null || true)"
    version="$(awk 'match($0, /apply --version [0-9]+/) { print substr($0, RSTART + 16, RLENGTH - 16); exit }' <<<"$staged")"
    garage layout apply --version "${version:-1}" >/dev/null
    log "garage: layout applied"
  fi
  wait_until "garage s3 api" 30 curl -sf -o /dev/null -w '' "http://127.0.0.1:$GARAGE_ADMIN_PORT/health"
  if ! garage key info "$DEV_KEY_ID" >/dev/null 2>&1; then
    garage key import --yes -n "$DEV_KEY_NAME" "$DEV_KEY_ID" "$DEV_KEY_SECRET" >/dev/null
    log "garage: imported development key $DEV_KEY_NAME"
  fi
  if ! garage bucket info "$BUCKET" >/dev/null 2>&1; then
    garage bucket create "$BUCKET" >/dev/null
    log "garage: created bucket $BUCKET"
  fi
  garage bucket allow --read --write --owner "$BUCKET" --key "$DEV_KEY_ID" >/dev/null
  if ! garage key info "$LANDING_KEY_ID" >/dev/null 2>&1; then
    garage key import --yes -n "$LANDING_KEY_NAME" "$LANDING_KEY_ID" "$LANDING_KEY_SECRET" >/dev/null
    log "garage: imported the landing writer key $LANDING_KEY_NAME"
  fi
  if ! garage bucket info "$LANDING_BUCKET" >/dev/null 2>&1; then
    garage bucket create "$LANDING_BUCKET" >/dev/null
    log "garage: created landing bucket $LANDING_BUCKET"
  fi
  garage bucket allow --read --write --owner "$LANDING_BUCKET" --key "$DEV_KEY_ID" >/dev/null
  # Write only: Cloudflare's key can put objects and nothing that reads them back.
  garage bucket deny --read --owner "$LANDING_BUCKET" --key "$LANDING_KEY_ID" >/dev/null
  garage bucket allow --write "$LANDING_BUCKET" --key "$LANDING_KEY_ID" >/dev/null
  wait_until "garage bucket $BUCKET" 30 s3_answers
}

s3_answers() { # an unsigned request to the bucket: 403 means the API serves it
  local code; code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GARAGE_S3_PORT/$BUCKET")"
  [[ "$code" == 403 || "$code" == 200 ]]
}

garage_down() {
  pid_alive "$RUN/garage.pid" || { rm -f "$RUN/garage.pid"; return 0; }
  log "garage: stopping node"
  local pid; pid="$(cat "$RUN/garage.pid")"
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while pid_alive "$RUN/garage.pid" && ((SECONDS < deadline)); do sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$RUN/garage.pid"
}

# ---------------------------------------------------------------- commands
write_env() {
  mkdir -p "$STATE"
  # A development master keyring for the kms, made once and kept (losing it makes every
  # object sealed locally unreadable — which is the point of a KMS).
  [[ -s "$STATE/master_keys" ]] || (umask 077; printf '1:%s\n' "$(openssl rand -hex 32)" > "$STATE/master_keys")
  (umask 077; cat > "$ENV_FILE.tmp" <<EOF
# Written by infra/local/stack.sh; read by the rainlogs binaries and tests.
RAINLOGS_DATABASE_URL='$PG_URL'
RAINLOGS_REDIS_URL='$REDIS_URL'
RAINLOGS_S3_ENDPOINT='http://127.0.0.1:$GARAGE_S3_PORT'
RAINLOGS_S3_REGION='garage'
RAINLOGS_S3_BUCKET='$BUCKET'
RAINLOGS_S3_ACCESS_KEY_ID='$DEV_KEY_ID'
RAINLOGS_S3_SECRET_ACCESS_KEY='$DEV_KEY_SECRET'
RAINLOGS_S3_FORCE_PATH_STYLE='true'
RAINLOGS_MASTER_KEYS_FILE='$STATE/master_keys'
# Development only (tests): the landing bucket and the key that may only write to it.
# Setting RAINLOGS_LANDING_BUCKET to it turns landing ingest on (docs/INGEST.md).
RAINLOGS_DEV_LANDING_BUCKET='$LANDING_BUCKET'
RAINLOGS_DEV_LANDING_WRITER_KEY_ID='$LANDING_KEY_ID'
RAINLOGS_DEV_LANDING_WRITER_SECRET='$LANDING_KEY_SECRET'
EOF
  )
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

cmd_up() {
  local t0=$SECONDS
  mkdir -p "$RUN"
  pg_up
  redis_up
  garage_up
  write_env
  log "stack is up in $((SECONDS - t0))s; env file: $ENV_FILE"
}

cmd_env() {
  if [[ ! -f "$ENV_FILE" ]]; then die "no env file yet: run 'bash infra/local/stack.sh up' first"; fi
  sed -n "s/^\(RAINLOGS_[A-Z0-9_]*=.*\)$/export \1/p" "$ENV_FILE"
}

cmd_status() {
  local url
  url="$(saved RAINLOGS_DATABASE_URL)"
  if [[ -n "$url" ]] && pg_answers "${url%/*}"; then
    printf 'postgres  up    %s%s\n' "$url" "$([[ -f "$RUN/postgres.started" ]] && echo ' (started by stack)')"
  else printf 'postgres  down  %s\n' "${url:-not configured}"; fi
  url="$(saved RAINLOGS_REDIS_URL)"
  local hp="${url#*://}"; hp="${hp%%/*}"
  if [[ -n "$url" ]] && redis_answers "${hp%%:*}" "${hp##*:}"; then
    printf 'redis     up    %s%s\n' "$url" "$(pid_alive "$RUN/redis.pid" && echo ' (started by stack)')"
  else printf 'redis     down  %s\n' "${url:-not configured}"; fi
  if pid_alive "$RUN/garage.pid" && s3_answers; then
    printf 'garage    up    http://127.0.0.1:%s bucket %s (started by stack, pid %s)\n' "$GARAGE_S3_PORT" "$BUCKET" "$(cat "$RUN/garage.pid")"
  else printf 'garage    down  %s\n' "$([[ -x "$GARAGE_BIN" ]] && echo "binary cached at $GARAGE_BIN" || echo 'not installed')"; fi
}

cmd_down() {
  garage_down
  redis_down
  pg_down
  log "stopped what this stack started"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  garage-bin) garage_install; echo "$GARAGE_BIN" ;;
  *) echo "usage: $0 up|down|status|env|garage-bin" >&2; exit 2 ;;
esac
