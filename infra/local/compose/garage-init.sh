#!/bin/bash
# compose.yaml's one-shot garage-init: run in the Garage node's network namespace with
# its configuration. Safe to repeat: layout, development key, bucket and keyring are
# made only when missing.
set -euo pipefail
g() { /garage -c /etc/garage.toml "$@"; }
deadline=$((SECONDS + 60))
until g status >/dev/null 2>&1; do
  ((SECONDS < deadline)) || { echo "garage-init: the node did not answer within 60 s" >&2; exit 1; }
  sleep 0.5
done
layout="$(g layout show)"
if grep -q "No nodes currently have a role" <<<"$layout"; then
  node="$(g node id -q)"
  g layout assign -z dc1 -c 1G "${node%@*}" >/dev/null
  g layout apply --version 1 >/dev/null
fi
g key info GK0123456789abcdef01234567 >/dev/null 2>&1 ||
  g key import --yes -n rainlogs-dev GK0123456789abcdef01234567 \
    5ecdeb6e1d2f0c3b4a59687766554433221100ffeeddccbbaa99887766554433 >/dev/null
g bucket info rainlogs >/dev/null 2>&1 || g bucket create rainlogs >/dev/null
g bucket allow --read --write --owner rainlogs --key GK0123456789abcdef01234567 >/dev/null
# A development master keyring, made once, readable by the rainlogs image's user only.
if [[ ! -s /keys/master_keys ]]; then
  (umask 077; printf '1:%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > /keys/master_keys)
  chown 10001:10001 /keys/master_keys
fi
echo "garage-init: layout, key, bucket and keyring ready"
