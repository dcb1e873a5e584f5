#!/bin/bash
# Initialises PGDATA on first start (like the upstream image: POSTGRES_USER, POSTGRES_PASSWORD
# or POSTGRES_HOST_AUTH_METHOD=trust, POSTGRES_DB), then runs the server as `postgres`.
# The first-start server listens on its Unix socket only and logs to a file, so
# "database system is ready to accept connections" on stderr means the real server.
set -euo pipefail
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

if [[ "${1:-}" != postgres ]]; then exec "$@"; fi
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  method="${POSTGRES_HOST_AUTH_METHOD:-}"
  if [[ -z "${POSTGRES_PASSWORD:-}" && "$method" != trust ]]; then
    echo "error: set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust for a development server" >&2
    exit 1
  fi
  method="${method:-scram-sha-256}"
  pwfile=()
  if [[ -n "${POSTGRES_PASSWORD:-}" ]]; then
    (umask 077; printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pwfile); chown postgres /tmp/pwfile
    pwfile=(--pwfile=/tmp/pwfile)
  fi
  as_postgres initdb -D "$PGDATA" -U "$user" -E UTF8 --auth-local=trust --auth-host="$method" "${pwfile[@]}" >/dev/null
  rm -f /tmp/pwfile
  printf 'host all all all %s\n' "$method" >> "$PGDATA/pg_hba.conf"
  if [[ "$db" != postgres ]]; then
    as_postgres pg_ctl -D "$PGDATA" -w -l /tmp/first-start.log -o "-c listen_addresses=''" start >/dev/null
    as_postgres psql -q -v ON_ERROR_STOP=1 -U "$user" -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
    as_postgres pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
  fi
fi
shift
exec setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -D "$PGDATA" -c listen_addresses='*' "$@"
