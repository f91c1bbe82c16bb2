#!/bin/bash
# ab.sh BIN PATH [TOKEN]: user and kernel CPU µs per request of BIN (2
# workers) under `wrk -t1 -c50 -d5s`, read from /proc/PID/task/*/stat before
# and after. WRKS=pool.lua sends the tokens of $OUT/pool.txt (one per line)
# in turn instead of TOKEN.
set -u
BIN=$1; P=$2; TOK=${3:-}
RIG=$(cd "$(dirname "$0")" && pwd); OUT=${OUT:-/tmp/perf}; mkdir -p "$OUT"
sed 's/workers: 1/workers: 2/' "$RIG/gw.yaml" > "$OUT/gw2.yaml"
"$BIN" run -c "$OUT/gw2.yaml" >"$OUT/ab.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18091/healthz >/dev/null && break; sleep 0.1; done
H=(); [ -n "$TOK" ] && H=(-H "Authorization: Bearer $TOK")
S=(); [ -n "${WRKS:-}" ] && S=(-s "$RIG/$WRKS")
wrk -t1 -c50 -d1s "${H[@]}" "${S[@]}" "http://127.0.0.1:18090$P" >/dev/null
read -r U0 S0 < <(cat /proc/$PID/task/*/stat | awk '{u+=$14; s+=$15} END {print u, s}')
RUN=$(wrk -t1 -c50 -d5s "${H[@]}" "${S[@]}" "http://127.0.0.1:18090$P")
read -r U1 S1 < <(cat /proc/$PID/task/*/stat | awk '{u+=$14; s+=$15} END {print u, s}')
N=$(echo "$RUN" | awk '/requests in/ {print $1}')
RPS=$(echo "$RUN" | awk '/Requests\/sec/ {print $2}')
kill -INT $PID; wait $PID
TICK=$(getconf CLK_TCK)
python3 -c "
u=($U1-$U0)*1e6/$TICK/$N; s=($S1-$S0)*1e6/$TICK/$N
print(f'$(basename "$BIN") $P rps=$RPS user={u:.2f}us kernel={s:.2f}us total={u+s:.2f}us')"
