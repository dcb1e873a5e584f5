#!/usr/bin/env bash
# Installs the browser the monitor's browser tests drive (docs/MONITOR.md): Debian's
# `chromium` and its WebDriver, `chromium-driver`. Idempotent and quiet: does nothing
# when both are already there. Needs root (or sudo) and Debian's package sources.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
command -v chromedriver >/dev/null || { echo "error: chromedriver not found after install" >&2; exit 1; }
