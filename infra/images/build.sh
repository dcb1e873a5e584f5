#!/usr/bin/env bash
# Builds every container image the tests and a deployment need, here, with nothing pulled
# from a registry (our machines have a Docker engine and no registry):
#
#   rainlogs-local/debian:bookworm     Debian's minbase from Debian's packages (mmdebstrap), `docker import`ed
#   rainlogs-local/postgres:15         PostgreSQL 15 (Debian's package) on that base
#   rainlogs-local/redis:7             Redis 7 (Debian's package) on that base
#   rainlogs-local/garage:v2.5.0       the Garage binary infra/local/stack.sh builds and caches
#   rainlogs-local/rainlogs:latest     the `rainlogs` binary alone, non-root, with a health check
#   rainlogs-local/logpull-sim:latest  the Logpull simulator alone (demos and tests)
#   rainlogs-local/rainlogs-functions:latest  `rainlogs` and every function binary (receiver, api,
#                                      stages, ingest): the Kubernetes manifests' image (infra/k8s/);
#                                      on request only, not in the default set
#
#   bash infra/images/build.sh [NAME...]    NAME: base postgres redis garage rainlogs logpull-sim
#                                           (the default set) or rainlogs-functions
#
# Settings: RAINLOGS_IMAGES_PROFILE=debug|release (default debug: the binaries `cargo test`
# already built, stripped; release for a deployment), RAINLOGS_IMAGES_REBUILD=1 (build
# even when unchanged), CARGO_TARGET_DIR.
#
# Idempotent: each image carries a label with the hash of its inputs (its Dockerfile and
# files, its parent's hash, the binary it packs); an image whose label matches is kept.
# Needs root for mmdebstrap (installed with apt-get when absent) and docker.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/infra/images"
NS=rainlogs-local
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
LABEL=org.rainlogs.inputs
PROFILE="${RAINLOGS_IMAGES_PROFILE:-debug}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export DOCKER_BUILDKIT=0 # the classic builder: no buildx plugin on our machines
WORK="$(mktemp -d)" # build contexts
trap 'rm -rf "$WORK"' EXIT

BASE_TAG="$NS/debian:$SUITE"
PG_TAG="$NS/postgres:15"
REDIS_TAG="$NS/redis:7"
GARAGE_TAG="$NS/garage:v2.5.0"
RAINLOGS_TAG="$NS/rainlogs:latest"
SIM_TAG="$NS/logpull-sim:latest"
FUNCTIONS_TAG="$NS/rainlogs-functions:latest"

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

# The inputs hash an image was built from ("" when there is no such image).
built_hash() { docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }

# hash_of WORDS... FILES...: one sha256 over strings and file contents, in order.
hash_of() {
  local item
  for item in "$@"; do
    if [[ -f "$item" ]]; then printf 'file %s\n' "$(basename "$item")"; sha256sum < "$item"
    else printf 'word %s\n' "$item"; fi
  done | sha256sum | cut -c1-32
}

# fresh TAG HASH: true (and says so) when TAG exists with HASH and no rebuild is forced.
fresh() {
  if [[ "${RAINLOGS_IMAGES_REBUILD:-}" != 1 && "$(built_hash "$1")" == "$2" ]]; then
    log "$1: up to date ($2)"
    return 0
  fi
  return 1
}

# docker_build TAG HASH CONTEXT [--build-arg ...]: builds CONTEXT/Dockerfile, labelled.
docker_build() {
  local tag="$1" hash="$2" ctx="$3"; shift 3
  local t0=$SECONDS
  # The classic builder's deprecation notice would bury real errors: show stderr on failure.
  if ! docker build --quiet --label "$LABEL=$hash" --label org.rainlogs.image=1 -t "$tag" "$@" "$ctx" \
      >/dev/null 2>"$WORK/build.err"; then
    cat "$WORK/build.err" >&2
    die "$tag: docker build failed"
  fi
  log "$tag: built in $((SECONDS - t0))s"
}

base_hash() {
  hash_of "mmdebstrap $SUITE $MIRROR security updates" "$(mmdebstrap_args)"
}

mmdebstrap_args() {
  # No documentation, manual pages or translations in images; no package recommends.
  printf '%s\n' --variant=minbase --quiet \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --aptopt='APT::Install-Recommends "false"'
}

BASE_DONE=
build_base() {
  [[ -z "$BASE_DONE" ]] || return 0
  BASE_DONE=1
  local hash; hash="$(base_hash)"
  fresh "$BASE_TAG" "$hash" && return 0
  if ! command -v mmdebstrap >/dev/null; then
    [[ $(id -u) -eq 0 ]] || die "mmdebstrap is missing and installing it needs root"
    log "installing mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
  fi
  local t0=$SECONDS args
  mapfile -t args < <(mmdebstrap_args)
  # The root filesystem streams as a tarball straight into `docker import`.
  mmdebstrap "${args[@]}" "$SUITE" - \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
    "deb http://deb.debian.org/debian-security $SUITE-security main" |
    docker import --change "LABEL $LABEL=$hash" --change 'LABEL org.rainlogs.image=1' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV DEBIAN_FRONTEND=noninteractive' --change 'CMD ["/bin/bash"]' \
      - "$BASE_TAG" >/dev/null
  log "$BASE_TAG: built in $((SECONDS - t0))s"
}

# build_on_base NAME TAG: an image from infra/images/NAME/ on the base.
build_on_base() {
  local name="$1" tag="$2" hash
  hash="$(hash_of "$(built_hash "$BASE_TAG")" "$HERE/$name"/*)"
  fresh "$tag" "$hash" && return 0
  docker_build "$tag" "$hash" "$HERE/$name" --build-arg "BASE=$BASE_TAG"
}

build_garage() {
  local bin hash ctx
  # The stack script builds Garage once into ~/.cache/rainlogs (or finds it there).
  bin="$(bash "$ROOT/infra/local/stack.sh" garage-bin)"
  hash="$(hash_of "$(built_hash "$BASE_TAG")" "$HERE/garage/Dockerfile" "$bin")"
  fresh "$GARAGE_TAG" "$hash" && return 0
  ctx="$WORK/garage"; mkdir -p "$ctx"
  cp "$HERE/garage/Dockerfile" "$ctx/"
  cp "$bin" "$ctx/garage"
  docker_build "$GARAGE_TAG" "$hash" "$ctx" --build-arg "BASE=$BASE_TAG"
}

# build_binary TAG TAIL PACKAGE:BIN...: a minimal image of workspace binaries.
build_binary() {
  local tag="$1" tail="$2" hash ctx item package bin; shift 2
  local flags=(--quiet) bins=()
  for item in "$@"; do
    package="${item%%:*}" bin="${item#*:}"
    flags+=(-p "$package" --bin "$bin"); bins+=("$bin")
  done
  [[ "$PROFILE" == release ]] && flags+=(--release)
  [[ "$PROFILE" == debug || "$PROFILE" == release ]] || die "RAINLOGS_IMAGES_PROFILE must be debug or release"
  (cd "$ROOT" && SQLX_OFFLINE=true cargo build "${flags[@]}")
  ctx="$WORK/${bins[0]}"; mkdir -p "$ctx/bin"
  # Debug symbols stay in target/; the image gets the code (a debug build keeps its
  # assertions and unoptimised crates, dependencies are optimised: Cargo.toml).
  for bin in "${bins[@]}"; do
    strip --strip-debug -o "$ctx/bin/$bin" "$TARGET/$PROFILE/$bin"
  done
  cat "$HERE/rainlogs/minimal.Dockerfile" "$HERE/rainlogs/$tail" > "$ctx/Dockerfile"
  hash="$(hash_of "$(built_hash "$BASE_TAG")" "$PROFILE" "$ctx/Dockerfile" "${bins[@]/#/$ctx/bin/}")"
  fresh "$tag" "$hash" && return 0
  docker_build "$tag" "$hash" "$ctx" --build-arg "BASE=$BASE_TAG"
}

# Each image runs on this machine's kernel and the base's C library: a quick start of
# each proves the binaries link (a binary built on a newer Debian would not).
smoke() {
  case "$1" in
    garage) docker run --rm "$GARAGE_TAG" /garage --version >/dev/null ;;
    rainlogs) docker run --rm "$RAINLOGS_TAG" --version >/dev/null ;;
    rainlogs-functions) # every function binary starts and stops on its missing settings
      docker run --rm "$FUNCTIONS_TAG" rainlogs --version >/dev/null || return 1
      local bin out
      for bin in fetch encrypt upload prune kms ingest receiver api; do
        out="$(docker run --rm "$FUNCTIONS_TAG" "rainlogs-$bin" 2>&1 || true)"
        grep -q 'configuration' <<<"$out" || { echo "$out" >&2; return 1; }
      done ;;
    logpull-sim) docker run --rm "$SIM_TAG" --version >/dev/null ;;
    postgres) docker run --rm --entrypoint postgres "$PG_TAG" --version >/dev/null ;;
    redis) docker run --rm --entrypoint redis-server "$REDIS_TAG" --version >/dev/null ;;
  esac
}

main() {
  command -v docker >/dev/null || die "docker is not installed"
  docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info)"
  local names=("$@") t0=$SECONDS name
  ((${#names[@]})) || names=(base postgres redis garage rainlogs logpull-sim)
  for name in "${names[@]}"; do
    case "$name" in
      base) build_base ;;
      postgres) build_base; build_on_base postgres "$PG_TAG" ;;
      redis) build_base; build_on_base redis "$REDIS_TAG" ;;
      garage) build_base; build_garage ;;
      rainlogs) build_base; build_binary "$RAINLOGS_TAG" rainlogs.tail rainlogs-cli:rainlogs ;;
      rainlogs-functions) build_base; build_binary "$FUNCTIONS_TAG" functions.tail rainlogs-cli:rainlogs \
        rainlogs-fetch:rainlogs-fetch rainlogs-encrypt:rainlogs-encrypt rainlogs-upload:rainlogs-upload \
        rainlogs-prune:rainlogs-prune rainlogs-kms:rainlogs-kms rainlogs-receiver:rainlogs-receiver \
        rainlogs-receiver:rainlogs-ingest rainlogs-api:rainlogs-api ;;
      logpull-sim) build_base; build_binary "$SIM_TAG" logpull-sim.tail rainlogs-logpull-sim:rainlogs-logpull-sim ;;
      *) die "unknown image $name (base postgres redis garage rainlogs rainlogs-functions logpull-sim)" ;;
    esac
    smoke "$name" || die "image $name does not start (see the docker run above)"
  done
  # Images replaced by a rebuild lose their tag: drop them, not anyone else's.
  docker image prune -f --filter label=org.rainlogs.image=1 >/dev/null
  log "images ready in $((SECONDS - t0))s"
}

main "$@"
