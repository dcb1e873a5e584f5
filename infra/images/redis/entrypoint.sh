#!/bin/bash
# `redis-server [args]` runs as the redis user, on every interface, protected mode off
# (later arguments may override both); any other command runs as given.
set -euo pipefail
if [[ "${1:-}" == redis-server ]]; then
  shift
  exec setpriv --reuid=redis --regid=redis --init-groups -- \
    redis-server --bind '* -::*' --protected-mode no --dir /data "$@"
fi
exec "$@"
