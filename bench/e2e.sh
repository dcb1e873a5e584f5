#!/usr/bin/env bash
# End-to-end benchmark (issue 5, item 7): one large zone, ≥ 1 GiB of raw NDJSON, from the
# Logpull simulator to Garage through Rainlogs and, in the same run, through
# `curl | gzip -d | zstd -3 | age | aws s3 cp -`. Prints raw/stored bytes, wall time,
# MB/s, peak RSS, windows archived and chain status per pipeline (bench/benches/e2e.rs).
#
#   bash bench/e2e.sh                          # cadences 60 s and 3600 s, tools sequential
#   E2E_CADENCES=60 E2E_TOOLS_PARALLEL=2 bash bench/e2e.sh
#
# Knobs (see the bench's doc): E2E_CADENCES ("60 3600"), E2E_MINUTES (60), E2E_RPM (9000),
# E2E_SEED, E2E_PHASES, E2E_TOOLS_PARALLEL (1), E2E_TIMEOUT, E2E_KEEP.
# Uses the stack's environment when RAINLOGS_DATABASE_URL is already set; otherwise
# brings the local stack up (infra/local/stack.sh up) and loads its env file.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[e2e] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- tools (idempotent)
missing=()
for cmd in curl gzip zstd age age-keygen; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if ((${#missing[@]})); then
  pkgs=()
  for cmd in "${missing[@]}"; do
    case "$cmd" in age|age-keygen) pkgs+=(age) ;; *) pkgs+=("$cmd") ;; esac
  done
  log "installing Debian packages: ${pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
if ! aws --version >/dev/null 2>&1; then
  log "installing the aws CLI from PyPI (awscli)"
  python3 -m pip install --quiet awscli
fi

# ---------------------------------------------------------------- stack
if [[ -z "${RAINLOGS_DATABASE_URL:-}" ]]; then
  bash infra/local/stack.sh up
  source <(bash infra/local/stack.sh env)
fi
: "${RAINLOGS_MASTER_KEYS_FILE:?the stack env must name the master keyring}"

# ---------------------------------------------------------------- build
export SQLX_OFFLINE="${SQLX_OFFLINE:-true}"
log "building the simulator and the bench (release)"
cargo build --quiet --release -p rainlogs-logpull-sim
cargo bench --quiet -p rainlogs-bench --bench e2e --no-run

# ---------------------------------------------------------------- run
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "commit:  $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (modified)')"
echo "tools:   $(curl --version | head -1 | cut -d' ' -f1-2), gzip $(gzip --version | head -1 | awk '{print $NF}'), zstd $(zstd --version | grep -o 'v[0-9.]*'), age $(age --version), $(aws --version 2>&1 | cut -d' ' -f1)"
for cadence in ${E2E_CADENCES:-60 3600}; do
  E2E_CADENCE="$cadence" cargo bench --quiet -p rainlogs-bench --bench e2e
done
