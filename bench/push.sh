#!/usr/bin/env bash
# Push ingestion benchmark (issue 12): the release receiver binary against the local
# stack — acknowledgement throughput and latency (5 MB and 100 MB batches), the archive
# step, the standard-tools pipeline on the same bytes, peak RSS with a streamed 1 GB
# batch, 50 concurrent pushers. Figures in docs/BENCHMARKS.md ("Push ingestion").
#
#   bash bench/push.sh                      # PUSH_BENCH_BIG_MB=1024 PUSH_BENCH_PUSHERS=50
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for cmd in gzip zstd age age-keygen; do command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd"); done
if ((${#missing[@]})); then
  pkgs=(); for c in "${missing[@]}"; do case "$c" in age|age-keygen) pkgs+=(age) ;; *) pkgs+=("$c") ;; esac; done
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
aws --version >/dev/null 2>&1 || python3 -m pip install --quiet awscli
[[ -n "${RAINLOGS_DATABASE_URL:-}" ]] || bash infra/local/stack.sh up
export SQLX_OFFLINE="${SQLX_OFFLINE:-true}"
cargo build --quiet --release -p rainlogs-receiver
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (modified)')"
cargo bench --quiet -p rainlogs-bench --bench push
