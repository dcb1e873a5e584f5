#!/usr/bin/env bash
# Regenerates .sqlx/ (the offline query data that lets `cargo build` check sqlx::query!
# macros without a database). Run after adding or changing a query or a migration.
#
# It rebuilds a scratch database from migrations/*.sql, then re-expands every query
# macro against it with SQLX_OFFLINE_DIR set, which makes sqlx write one JSON file
# per query. Needs a PostgreSQL server (RAINLOGS_DEV_PG, default the local one).
set -euo pipefail
cd "$(dirname "$0")/../.."
PG="${RAINLOGS_DEV_PG:-postgres://postgres@127.0.0.1:5432}"
DB="${RAINLOGS_DEV_DB:-rainlogs_dev}"
psql "$PG/postgres" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" -c "CREATE DATABASE \"$DB\""
for f in migrations/*.sql; do
  psql "$PG/$DB" -q -v ON_ERROR_STOP=1 -f "$f" >/dev/null
done
rm -rf .sqlx && mkdir -p .sqlx
# Touch sources so every query macro expands again.
find shared functions dispatcher cli integration-tests -name '*.rs' -exec touch {} +
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$PWD/.sqlx" DATABASE_URL="$PG/$DB" \
  cargo check --workspace --all-targets --quiet
echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
