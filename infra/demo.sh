#!/usr/bin/env bash
# Quick start, command 1: bring up the local stack (installing what is missing) and run
# the main job: `rainlogs demo`, three simulated zones archived end to end and verified.
# The demo needs the `demo` feature (production builds do not link the simulator).
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/local/stack.sh up
# The endpoints the stack settled on (a private server replaces a URL that did not answer).
source <(bash infra/local/stack.sh env)
cargo build --quiet --bin rainlogs --features demo
# The report is on stdout; keep the logs to warnings unless asked.
RAINLOGS_LOG="${RAINLOGS_LOG:-warn}" "${CARGO_TARGET_DIR:-target}/debug/rainlogs" demo "$@"
