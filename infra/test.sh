#!/usr/bin/env bash
# Quick start, command 2: bring up the local stack and run the whole test suite —
# formatting, lints, and every unit and integration test against real Postgres,
# Redis and Garage. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/local/stack.sh up
# Queries are checked at compile time against the committed .sqlx/ data, not a live DB.
export SQLX_OFFLINE=true
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p rainlogs-integration-tests --features containers --all-targets --quiet -- -D warnings
# The production binary does not link the Logpull simulator (only `--features demo` does).
if cargo tree -e normal -p rainlogs-cli --prefix none | grep -q '^rainlogs-logpull-sim '; then
  echo "error: the production rainlogs binary links the Logpull simulator" >&2; exit 1
fi
# Leftover per-test databases from interrupted runs.
source <(bash infra/local/stack.sh env)
psql "${RAINLOGS_DATABASE_URL%/*}/postgres" -qtAc \
  "SELECT datname FROM pg_database WHERE datname LIKE 'rl\_test\_%'" |
  while read -r db; do psql "${RAINLOGS_DATABASE_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done
# The monitor's browser tests drive Debian's chromium through chromedriver.
bash infra/dev/browser.sh
# The deployment definitions, offline (docs/DEPLOY.md): the AWS template (cfn-lint,
# checkov) and the Kubernetes manifests (kubernetes-validate, checkov). It also installs
# cargo-lambda, whose `watch` and `invoke` the cli tests drive (cargo_lambda::).
bash infra/dev/deploy-lint.sh
# One build serves both runs: the integration tests are built with the `containers`
# feature; its container-only tests (`containers::`) run in the container suite below.
cargo test --workspace --features rainlogs-integration-tests/containers --no-fail-fast -- --skip containers::
# The API against its committed OpenAPI document, property-based (schemathesis, bounded
# to SCHEMATHESIS_MAX_TIME seconds): no 5xx, no answer outside the document, no crash.
bash infra/dev/schemathesis.sh
# The fuzz targets (a separate crate, run with cargo-fuzz on nightly: docs/FORMAT.md) build.
cargo build --quiet --manifest-path fuzz/Cargo.toml
# An independent decryptor written from docs/FORMAT.md alone opens every test vector.
python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install --quiet cryptography
command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
python3 docs/tools/sealed_decrypt.py --check-vectors shared/sealed/tests/vectors
# An independent chain checker written from docs/CHAIN.md alone recomputes every chain
# vector and finds exactly the expected findings in every conformance bundle.
python3 docs/tools/chain_check.py --check-vectors docs/tools/chain_vectors
python3 docs/tools/chain_check.py --conformance docs/tools/chain_vectors/conformance
# The stack script itself: idempotent up, crash recovery, down/up keeping data.
bash infra/local/selftest.sh
# The container suite (docs/TESTING.md): images built here with nothing pulled, then the
# harness's services in containers (a selection of the integration tests), the rainlogs
# image, a three-node Garage cluster and the compose stack. It leaves no container,
# network or volume behind.
bash infra/containers-test.sh
