#!/usr/bin/env bash
# After `docker compose -f infra/local/compose.yaml up -d`: waits until garage-init has
# set Garage up, then writes the env file (.rainlogs/env) so the host's rainlogs CLI and
# tests use the compose stack's Postgres, Redis and Garage on their default ports.
# Objects the compose dispatcher seals use the keyring in the compose `keys` volume, not
# .rainlogs/master_keys: run commands that open them in the dispatcher container
# (`docker compose -f infra/local/compose.yaml exec dispatcher rainlogs ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
compose() { if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi; }
deadline=$((SECONDS + 120))
until [[ "$(compose -f compose.yaml ps -q garage-init | xargs -r docker inspect --format '{{.State.Status}} {{.State.ExitCode}}' 2>/dev/null)" == "exited 0" ]]; do
  ((SECONDS < deadline)) || { echo "garage-init did not finish within 120 s: compose -f infra/local/compose.yaml logs garage-init" >&2; exit 1; }
  sleep 0.5
done
# The stack script finds all three services answering and only writes the env file.
RAINLOGS_GARAGE_EXTERNAL=1 bash stack.sh up
