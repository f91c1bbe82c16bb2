#!/bin/bash
# cg.sh BIN TAG PATH [TOKEN]: instructions per request of BIN (callgrind).
# Runs BIN under callgrind twice (1,000 and 3,000 sequential keep-alive
# requests to PATH, with TOKEN as a bearer token if given) and prints the
# difference per request, so start-up and shutdown cancel out. Needs the
# upstream of nginx.conf (nginx -c "$PWD/nginx.conf") and, for a token, the
# demo issuer (cargo run --release --example demo). Outputs in $OUT.
set -u
BIN=$1; TAG=$2; P=$3; TOK=${4:-}
RIG=$(cd "$(dirname "$0")" && pwd); OUT=${OUT:-/tmp/perf}; mkdir -p "$OUT"
for N in 1000 3000; do
  MALLOC_MMAP_THRESHOLD_=1048576 valgrind --tool=callgrind --callgrind-out-file="$OUT/cg-$TAG-$N.out" \
    "$BIN" run -c "$RIG/gw.yaml" >"$OUT/cg-$TAG-$N.log" 2>&1 &
  VP=$!
  for _ in $(seq 1 300); do curl -sf http://127.0.0.1:18091/healthz >/dev/null && break; sleep 0.2; done
  python3 "$RIG/client.py" 127.0.0.1 18090 "$P" "$N" $TOK || echo "client failed"
  kill -INT $VP; wait $VP
done
A=$(grep -m1 "^summary:\|^totals:" "$OUT/cg-$TAG-1000.out" | awk '{print $2}')
B=$(grep -m1 "^summary:\|^totals:" "$OUT/cg-$TAG-3000.out" | awk '{print $2}')
echo "$TAG Ir/request: $(( (B - A) / 2000 ))"
