#!/usr/bin/env bash
# One-time set-up of the compose stack's Garage (safe to repeat), then the env file.
set -euo pipefail
cd "$(dirname "$0")/.."
g() { docker compose -f compose.yaml exec -T garage /garage "$@"; }
until g status >/dev/null 2>&1; do sleep 1; done
layout="$(g layout show)"
if grep -q "No nodes currently have a role" <<<"$layout"; then
  node="$(g node id -q)"; g layout assign -z dc1 -c 1G "${node%@*}"; g layout apply --version 1
fi
g key info GK0123456789abcdef01234567 >/dev/null 2>&1 ||
  g key import --yes -n rainlogs-dev GK0123456789abcdef01234567 5ecdeb6e1d2f0c3b4a59687766554433221100ffeeddccbbaa99887766554433
g bucket info rainlogs >/dev/null 2>&1 || g bucket create rainlogs
g bucket allow --read --write --owner rainlogs --key GK0123456789abcdef01234567
# The stack script finds all three services answering and only writes the env file.
RAINLOGS_GARAGE_EXTERNAL=1 bash stack.sh up
