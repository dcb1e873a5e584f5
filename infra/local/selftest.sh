#!/usr/bin/env bash
# Self-test of the local stack script, run by infra/test.sh after the Rust tests:
#  1. `up` on a running stack is harmless and quick;
#  2. Garage killed with SIGKILL comes back with `up`, keeping its data and credentials;
#  3. `down` then `up` does the same.
# A marker object written with the development key must read back identical each time.
set -euo pipefail
cd "$(dirname "$0")/../.."
STACK=infra/local/stack.sh
pass=0; fail=0
ok()   { pass=$((pass + 1)); printf '[selftest] ok: %s\n' "$*"; }
bad()  { fail=$((fail + 1)); printf '[selftest] FAILED: %s\n' "$*" >&2; }

bash "$STACK" up >/dev/null 2>&1
source <(bash "$STACK" env)
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
s3() { # s3 GET|PUT KEY [FILE]: a signed request with the development key
  local method="$1" key="$2" file="${3:-}"
  local url="$RAINLOGS_S3_ENDPOINT/$RAINLOGS_S3_BUCKET/$key"
  local auth=(--aws-sigv4 "aws:amz:garage:s3" --user "$RAINLOGS_S3_ACCESS_KEY_ID:$RAINLOGS_S3_SECRET_ACCESS_KEY")
  if [[ "$method" == PUT ]]; then
    curl -sf "${auth[@]}" -H "x-amz-content-sha256: $(sha256sum "$file" | cut -d' ' -f1)" -T "$file" "$url"
  else
    curl -sf "${auth[@]}" -H "x-amz-content-sha256: $EMPTY_SHA" "$url"
  fi
}

marker="$(mktemp)"; trap 'rm -f "$marker"' EXIT
printf 'rainlogs stack selftest %s\n' "$(date -u +%FT%TZ)" > "$marker"
key="selftest/marker-$$"
s3 PUT "$key" "$marker" && ok "marker written" || bad "marker write"

t0=$SECONDS
if bash "$STACK" up >/dev/null 2>&1 && ((SECONDS - t0 < 30)); then ok "second up harmless ($((SECONDS - t0))s)"; else bad "second up"; fi

node_before="$(cat .rainlogs/run/garage.pid)"
kill -9 "$node_before"
t0=$SECONDS
if bash "$STACK" up >/dev/null 2>&1; then ok "up after kill -9 of garage ($((SECONDS - t0))s)"; else bad "up after kill -9"; fi
[[ "$(cat .rainlogs/run/garage.pid)" != "$node_before" ]] && ok "garage restarted" || bad "garage not restarted"
[[ "$(s3 GET "$key")" == "$(cat "$marker")" ]] && ok "data and credentials survive a crash" || bad "marker lost after crash"

# `down` stops exactly what `up` started: a private Postgres/Redis (a fresh machine, as
# CI's is now) goes down with it, a server someone else runs stays up.
before="$(bash "$STACK" status)"
bash "$STACK" down >/dev/null 2>&1
status="$(bash "$STACK" status)"
grep -q '^garage    down' <<<"$status" && ok "down stops garage" || bad "down left garage running"
for svc in postgres redis; do
  pad="$(printf '%-9s' "$svc")"
  if grep -q "^${pad} up .*(started by stack)" <<<"$before"; then
    grep -q "^${pad} down" <<<"$status" && ok "down stops the $svc it started" || bad "down left its $svc running"
  else
    grep -q "^${pad} up" <<<"$status" && ok "down leaves a $svc it did not start" || bad "down stopped a $svc it did not start"
  fi
done
bash "$STACK" up >/dev/null 2>&1 && ok "up after down" || bad "up after down"
[[ "$(s3 GET "$key")" == "$(cat "$marker")" ]] && ok "data survives down/up" || bad "marker lost after down/up"

printf '[selftest] %d ok, %d failed\n' "$pass" "$fail"
((fail == 0))
