#!/usr/bin/env bash
# The hosted login page in a real browser (tests/browser/login.test.mjs).
#
#   tests/browser/run.sh path/to/portcullis
#
# Builds nothing: it is given the portcullis binary. It writes a gateway.yaml
# with the issuer on a temporary SQLite file, seeds an API, a role, two
# organizations, four users and a confidential client through the real
# `portcullis admin` CLI, starts `portcullis run` on 127.0.0.1, runs the
# Node tests (node's own test runner; Chromium driven by playwright-core, an
# openid-client relying party), stops the gateway and exits with the tests'
# status. Needs node >= 20, the packages of `npm ci --prefix tests/browser`,
# and Chromium (CHROMIUM, default /usr/bin/chromium: Debian's package
# `chromium`); .ci/run installs both. Prints the gateway's log on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${1:?usage: tests/browser/run.sh path/to/portcullis}"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

fail() {
  echo "tests/browser/run.sh: $*" >&2
  exit 1
}
[ -x "$bin" ] || fail "$bin is not an executable"
command -v node >/dev/null || fail "node is not installed"
[ -x "$CHROMIUM" ] || fail "no Chromium at $CHROMIUM (apt-get install chromium, or set CHROMIUM)"
[ -d "$here/node_modules/playwright-core" ] && [ -d "$here/node_modules/openid-client" ] ||
  fail "the npm packages are missing: npm ci --prefix tests/browser"

tmp="$(mktemp -d)"
pid=""
status=1
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ "$status" != 0 ] && [ -f "$tmp/portcullis.log" ]; then
    echo "---- portcullis log ----" >&2
    tail -n 80 "$tmp/portcullis.log" >&2
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Two free ports on 127.0.0.1: the issuer's URL (its `iss`) and the relying
# party's redirect URIs must be known before anything starts.
read -r gw_port rp_port < <(node -e '
  const net = require("node:net");
  const a = net.createServer().listen(0, "127.0.0.1", () => {
    const b = net.createServer().listen(0, "127.0.0.1", () => {
      console.log(a.address().port, b.address().port);
      a.close();
      b.close();
    });
  });')
[ -n "${rp_port:-}" ] || fail "could not find two free ports"
issuer="http://127.0.0.1:$gw_port"
rp="http://127.0.0.1:$rp_port"
api="https://api.example.test"
password="correct horse battery staple"

config="$tmp/gateway.yaml"
cat >"$config" <<EOF
server:
  listen: "127.0.0.1:$gw_port"
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "$issuer"
  database: "sqlite://$tmp/issuer.db"
  signing_algs: [ES256, RS256]
issuers:
  - id: local
    builtin: true
    audiences: ["$api"]
EOF

# `portcullis admin …` prints JSON; this reads one field of it.
admin() { "$bin" admin -c "$config" --log-format text "$@"; }
field() { node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => console.log(JSON.parse(s)[process.argv[1]]))' "$1"; }

admin api create --identifier "$api" --scope read:data >/dev/null
admin role create --name reader --api "$api" --scope read:data >/dev/null
acme="$(admin org create --name Acme | field id)"
beta="$(admin org create --name Beta | field id)"
user() { printf '%s' "$password" | admin user create --email "$1" --name "$2" --password-stdin | field id; }
alice="$(user alice@example.test "Alice")"
bob="$(user bob@example.test "Bob")"
carol="$(user carol@example.test "Carol")"
mallory="$(user mallory@example.test "Mallory")"
admin member add --org "$acme" --user "$alice" --role reader >/dev/null
admin member add --org "$acme" --user "$bob" --role reader >/dev/null
admin member add --org "$beta" --user "$bob" --role reader >/dev/null
admin member add --org "$acme" --user "$carol" --role reader >/dev/null
admin member add --org "$acme" --user "$mallory" --role reader >/dev/null
client="$(admin client create --name "Browser test RP" \
  --grant-type authorization_code refresh_token \
  --redirect-uri "$rp/callback" "$rp/logged-out" \
  --api "$api" --scope read:data)"
client_id="$(field client_id <<<"$client")"
client_secret="$(field client_secret <<<"$client")"

cat >"$tmp/seed.json" <<EOF
{
  "issuer": "$issuer",
  "rp_port": $rp_port,
  "client_id": "$client_id",
  "client_secret": "$client_secret",
  "password": "$password",
  "orgs": { "acme": "$acme", "beta": "$beta" },
  "users": {
    "alice": { "id": "$alice", "email": "alice@example.test" },
    "bob": { "id": "$bob", "email": "bob@example.test" },
    "carol": { "id": "$carol", "email": "carol@example.test" },
    "mallory": { "id": "$mallory", "email": "mallory@example.test" }
  }
}
EOF

"$bin" run -c "$config" --log-format json >"$tmp/portcullis.log" 2>&1 &
pid=$!
# Ready once it logs that it listens (it binds before it logs); a gateway
# that exits instead fails here at once. Bounded: 30 s.
for _ in $(seq 300); do
  grep -q "Listening" "$tmp/portcullis.log" && break
  kill -0 "$pid" 2>/dev/null || fail "portcullis exited before listening"
  sleep 0.1
done
grep -q "Listening" "$tmp/portcullis.log" || fail "portcullis did not start listening within 30 s"

echo "tests/browser: portcullis at $issuer, the relying party at $rp, Chromium at $CHROMIUM"
set +e
SEED="$tmp/seed.json" node --test --test-reporter=spec "$here/login.test.mjs"
status=$?
set -e
exit "$status"
