#!/usr/bin/env bash
# The container suite, part of infra/test.sh (docs/TESTING.md): builds the images here
# (infra/images/build.sh, nothing pulled), then runs, with the integration tests' services
# in containers (RAINLOGS_TEST_SERVICES=containers):
#   - a selection of the integration tests: the pipeline end to end (simulator zones
#     archived, chains verified), a restore, a prune run with its receipts, kms rotations;
#   - the container-only tests (`containers::`): the rainlogs image, a three-node Garage
#     cluster losing nodes, the compose stack archiving the demo.
# Then checks that nothing is left: every container, network and volume that exists now
# and did not before the suite is a failure (the harness's reaper removes its own when
# the test process ends, also when a test fails; compose tests take their project down).
#
#   bash infra/containers-test.sh [EXTRA TEST FILTERS...]
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
command -v docker >/dev/null && docker info >/dev/null 2>&1 ||
  { echo "error: the container suite needs a Docker engine (docker info fails)" >&2; exit 1; }

objects() { { docker ps -aq --no-trunc; docker network ls -q --no-trunc; docker volume ls -q; } | sort; }
ours() { # objects made by our tests: the harness's session label, compose projects of it
  { docker ps -aq --filter label=org.rainlogs.test-session
    docker network ls -q --filter label=org.rainlogs.test-session
    docker volume ls -q --filter label=org.rainlogs.test-session; } 2>/dev/null
}
before="$(objects)"
# A run that fails half-way still leaves nothing behind.
cleanup() {
  docker ps -aq --filter label=org.rainlogs.test-session | xargs -r docker rm -f -v >/dev/null 2>&1 || true
  docker network ls -q --filter label=org.rainlogs.test-session | xargs -r docker network rm >/dev/null 2>&1 || true
  docker volume ls -q --filter label=org.rainlogs.test-session | xargs -r docker volume rm -f >/dev/null 2>&1 || true
}
trap cleanup EXIT

t1=$SECONDS
bash infra/images/build.sh
images=$((SECONDS - t1))

export SQLX_OFFLINE=true
t1=$SECONDS
RAINLOGS_TEST_SERVICES=containers cargo test -p rainlogs-integration-tests --features containers \
  --test integration --no-fail-fast -- \
  containers:: \
  demo::the_demo_archives_every_window_and_every_chain_verifies \
  verify_restore::restore_over_hours_equals_what_the_simulator_served \
  prune::retention_boundary_is_exact_to_the_second_and_receipts_keep_the_hash \
  kms_service::tenant_rotation_keeps_old_objects_readable \
  kms_service::master_rotation_rewraps_without_touching_objects \
  "$@"
tests=$((SECONDS - t1))

# The reaper works after the test process has exited: give it a moment, by condition.
deadline=$((SECONDS + 60))
while [[ -n "$(ours)" ]] && ((SECONDS < deadline)); do sleep 0.5; done
left="$(comm -13 <(echo "$before") <(objects))"
if [[ -n "$left" ]]; then
  echo "error: the container suite left Docker objects behind:" >&2
  echo "$left" >&2
  exit 1
fi
echo "container suite: images ${images}s, tests ${tests}s, total $((SECONDS - t0))s; nothing left behind"
