#!/usr/bin/env bash
# The admin API against its own OpenAPI document, from outside: the real
# binary on a temporary SQLite database (then on a fresh PostgreSQL schema,
# when $PORTCULLIS_TEST_POSTGRES_URL is set and psql reaches it), an admin
# token from the real token endpoint (client credentials, scope
# portcullis:admin), the document fetched without a token and checked by
# openapi-spec-validator, then schemathesis (PyPI) sending what the document
# allows and what it does not, failing on any 5xx, any response the document
# does not describe (status, content type, headers, body) and any error the
# server logs. Bounded and deterministic: a fixed seed, a fixed number of
# examples per operation, no example database; about 30 s per database on 2
# cores once the tools are installed.
#
# Run by .ci/run after `cargo test`; by hand: bash tests/interop/schemathesis.sh
# (SCHEMATHESIS_EXAMPLES=200 to look harder). Needs python3 with venv and
# cargo; installs its pinned tools into the ignored target/api-venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SCHEMATHESIS=4.32.5
SPEC_VALIDATOR=0.9.0
SEED=20261207
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-50}

venv=$PWD/target/api-venv
if [ ! -x "$venv/bin/schemathesis" ] || [ ! -x "$venv/bin/openapi-spec-validator" ] ||
  ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS" "openapi-spec-validator==$SPEC_VALIDATOR"
fi
py=$venv/bin/python

cargo build --locked --quiet --bin portcullis
bin=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/portcullis

work=$(mktemp -d)
pid=
schema=
stop() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  pid=
}
cleanup() {
  stop
  if [ -n "$schema" ]; then
    psql -q "$PORTCULLIS_TEST_POSTGRES_URL" -c "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

secret=$("$py" -c 'import secrets; print(secrets.token_urlsafe(24))')

# The proxy address of the `Listening` line of log $1 (of process $2).
listening() {
  "$py" - "$1" "$2" <<'PY'
import json, os, sys, time
log, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    with open(log) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("message") == "Listening":
                print("http://" + entry["proxy"])
                sys.exit(0)
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("portcullis exited before listening")
    time.sleep(0.1)
sys.exit("portcullis did not listen within 60 s")
PY
}

# An admin token from the token endpoint at $1.
admin_token() {
  ADMIN_SECRET=$secret "$py" - "$1" <<'PY'
import base64, json, os, sys, urllib.parse, urllib.request
basic = base64.b64encode(("schemathesis:" + os.environ["ADMIN_SECRET"]).encode()).decode()
body = urllib.parse.urlencode({
    "grant_type": "client_credentials",
    "resource": "http://issuer.test/admin/v1",
    "scope": "portcullis:admin",
}).encode()
req = urllib.request.Request(sys.argv[1] + "/oauth/token", data=body,
                             headers={"Authorization": "Basic " + basic})
print(json.load(urllib.request.urlopen(req))["access_token"])
PY
}

# The document at $1, fetched without a token, into file $2.
document() {
  "$py" - "$1" "$2" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/admin/v1/openapi.json") as resp:
    assert resp.status == 200, resp.status
    open(sys.argv[2], "wb").write(resp.read())
PY
}

# run LABEL DATABASE_URL: one portcullis on the database, schemathesis
# against it.
run() {
  local label=$1 database=$2
  local dir=$work/$label
  mkdir -p "$dir"
  # Webhooks that schemathesis creates must never reach anything: every
  # address is refused when an event would be delivered.
  cat >"$dir/gateway.yaml" <<YAML
server:
  listen: "127.0.0.1:0"
  shutdown_grace: 1s
issuer:
  url: "http://issuer.test"
  database: "$database"
  signing_algs: [ES256]
  access_token_ttl: 1h
  webhook_address_policy: { deny: ["0.0.0.0/0", "::/0"] }
  clients:
    - client_id: schemathesis
      client_secret: "\${ADMIN_SECRET}"
      grant_types: [client_credentials]
      scopes: { "http://issuer.test/admin/v1": ["portcullis:admin"] }
issuers:
  - id: local
    builtin: true
    audiences: ["http://issuer.test/admin/v1"]
YAML
  ADMIN_SECRET=$secret PORTCULLIS_LOG_FORMAT=json RUST_LOG=info \
    "$bin" run -c "$dir/gateway.yaml" >"$dir/log" 2>&1 &
  pid=$!

  local base token
  base=$(listening "$dir/log" "$pid") || {
    cat "$dir/log" >&2
    return 1
  }
  token=$(admin_token "$base")
  document "$base" "$dir/openapi.json"
  "$venv/bin/openapi-spec-validator" "$dir/openapi.json"

  # Every check but positive_data_acceptance: the API refuses, with a 400,
  # values the document cannot describe (a cursor it did not give, an id in
  # a body that does not exist, a URL that is not absolute), which that check
  # would count as failures. NUL characters are sent too (PostgreSQL refuses
  # them in text).
  local started=$SECONDS
  # From its directory, where schemathesis keeps its crash cache.
  (cd "$dir" && "$venv/bin/schemathesis" run "$dir/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks all --exclude-checks positive_data_acceptance \
    --max-examples "$EXAMPLES" --seed "$SEED" --workers 1 \
    --generation-database none --generation-allow-x00 true \
    --suppress-health-check all \
    --request-timeout 10 \
    --warnings off) || {
    echo "schemathesis ($label) found failures (above); portcullis log:" >&2
    grep -v '"level":"INFO"' "$dir/log" | tail -50 >&2
    return 1
  }
  if grep -q '"level":"ERROR"' "$dir/log"; then
    echo "portcullis ($label) logged errors during the run:" >&2
    grep '"level":"ERROR"' "$dir/log" >&2
    return 1
  fi
  stop
  echo "schemathesis ($label): no findings in $((SECONDS - started)) s"
}

run sqlite "sqlite://$work/sqlite/issuer.db"

url=${PORTCULLIS_TEST_POSTGRES_URL:-}
if [ -z "$url" ]; then
  echo "schemathesis on PostgreSQL: skipped (PORTCULLIS_TEST_POSTGRES_URL is unset)"
elif ! command -v psql >/dev/null 2>&1; then
  echo "schemathesis on PostgreSQL: skipped (psql is not installed)"
else
  schema="st_$("$py" -c 'import secrets; print(secrets.token_hex(8))')"
  psql -q "$url" -c "CREATE SCHEMA $schema" >/dev/null
  case $url in
    *\?*) sep='&' ;;
    *) sep='?' ;;
  esac
  run postgres "$url${sep}options=-c%20search_path%3D$schema"
fi
