#!/usr/bin/env bash
# Builds every Lambda function of the workspace with cargo-lambda (zig as the linker,
# glibc of Lambda's provided.al2023) into a zip a piece, for arm64 and x86_64, and
# prints their sizes. Slow (a release build of the workspace per architecture: ~15-25
# min each on 2 cores), so it is not part of infra/test.sh; `sam build` does the same
# for the template (infra/aws/template.yaml, BuildMethod rust-cargolambda).
#
#   bash infra/lambda/build.sh                # both architectures
#   bash infra/lambda/build.sh arm64          # or x86_64
#
# Output: target/lambda-zips/<arch>/<function>.zip (bootstrap inside), under
# CARGO_TARGET_DIR when set. The tools come pinned from PyPI (infra/dev/deploy-tools.sh);
# the Rust standard library for each target from rustup (`rustup target add`).
set -euo pipefail
cd "$(dirname "$0")/../.."
PATH="$(bash infra/dev/deploy-tools.sh):$PATH"
export SQLX_OFFLINE=true

# Every function binary the template deploys (the dispatcher `rainlogs` is a container).
FUNCTIONS=(rainlogs-fetch rainlogs-encrypt rainlogs-upload rainlogs-prune rainlogs-kms
           rainlogs-ingest rainlogs-receiver rainlogs-api)
ARCHES=("$@")
((${#ARCHES[@]})) || ARCHES=(arm64 x86_64)

TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
OUT="$TARGET_DIR/lambda-zips"
bins=()
for f in "${FUNCTIONS[@]}"; do bins+=(--bin "$f"); done

for arch in "${ARCHES[@]}"; do
  case "$arch" in
    arm64) triple=aarch64-unknown-linux-gnu flag=--arm64 ;;
    x86_64) triple=x86_64-unknown-linux-gnu flag=--x86-64 ;;
    *) echo "error: unknown architecture $arch (arm64 or x86_64)" >&2; exit 2 ;;
  esac
  rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
  t0=$SECONDS
  # One cargo invocation for all functions: dependencies are compiled once.
  cargo lambda build --release "$flag" --output-format zip \
    --lambda-dir "$TARGET_DIR/lambda/$arch" "${bins[@]}"
  mkdir -p "$OUT/$arch"
  for f in "${FUNCTIONS[@]}"; do
    cp "$TARGET_DIR/lambda/$arch/$f/bootstrap.zip" "$OUT/$arch/$f.zip"
  done
  echo "[lambda] $arch: built in $((SECONDS - t0))s"
done

echo
printf '%-20s %-8s %12s %12s\n' function arch zip bootstrap
for arch in "${ARCHES[@]}"; do
  for f in "${FUNCTIONS[@]}"; do
    zip="$OUT/$arch/$f.zip"
    raw="$(python3 -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).getinfo("bootstrap").file_size)' "$zip")"
    printf '%-20s %-8s %12s %12s\n' "$f" "$arch" "$(stat -c %s "$zip")" "$raw"
  done
done
