#!/usr/bin/env bash
# Rolling restart of three park servers behind Kamailio, under load: the
# measurement of BENCHMARKS.md, "Issue 13", "Rolling restart of three nodes
# under load". Needs redis-server and kamailio (Debian packages); run from
# the repository's root:
#
#   examples/cluster/rolling-restart.sh [label]
#
# Two parkload runs go through Kamailio at once: 30 calls parked and held
# for 75 s, and park -> retrieve -> BYE cycles at RATE (100) per second for
# 60 s. At 15, 30 and 45 s one node after the other gets SIGTERM (it hands
# its parked calls to the others), exits, and is started again under its
# name. Then the node logs are counted. Every file is left in $OUT.
set -euo pipefail
label=${1:-roll}; rate=${RATE:-100}
OUT=${OUT:-/tmp/rolling-$label}
mkdir -p "$OUT"
go build -o "$OUT/parkserver" ./examples/parkserver
go build -o "$OUT/parkload" ./examples/parkload
redis-server --port 6391 --save '' --daemonize no > "$OUT/redis.log" 2>&1 &
redis=$!
sleep 0.5
declare -A pid
start() {
  local i=$1 lo=$((16000 + $1*4000))
  "$OUT/parkserver" -listen 127.0.0.1:517$i -rtp-ports $lo-$((lo+3999)) -timeout 10m \
    -orbits 701-799,10000-19999 -trust 127.0.0.1 -redis redis://127.0.0.1:6391/0 \
    -node n$i -drain 5s >> "$OUT/n$i.log" 2>&1 &
  pid[$i]=$!
}
for i in 1 2 3; do start $i; done
printf '1 sip:127.0.0.1:5171\n1 sip:127.0.0.1:5172\n1 sip:127.0.0.1:5173\n' > "$OUT/dispatcher.list"
kamailio -f examples/cluster/kamailio.cfg -DD -E -Y "$OUT" -A 'LISTEN=udp:127.0.0.1:5160' \
  -A "DISPATCHER_LIST=\"$OUT/dispatcher.list\"" > "$OUT/kamailio.log" 2>&1 &
kam=$!
sleep 3
"$OUT/parkload" -target 127.0.0.1:5160 -mode hold -calls 30 -hold 75s -rtp-ports 30000-30999 -json > "$OUT/hold.json" 2> "$OUT/hold.err" &
hold=$!
sleep 2
"$OUT/parkload" -target 127.0.0.1:5160 -workers 50 -duration 60s -cycle-rate "$rate" -rtp-ports 40000-59999 -json > "$OUT/load.json" 2> "$OUT/load.err" &
load=$!
for i in 1 2 3; do
  sleep 15
  t0=$(date +%s%N)
  kill -TERM "${pid[$i]}"; wait "${pid[$i]}" || true
  echo "node $i: SIGTERM to exit $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  start $i
done
wait $load $hold
kill "${pid[1]}" "${pid[2]}" "${pid[3]}"; wait "${pid[1]}" "${pid[2]}" "${pid[3]}" || true
kill $kam $redis; wait $kam $redis 2>/dev/null || true
python3 - "$OUT" <<'PY'
import json, sys, glob
out = sys.argv[1]
r = json.load(open(f"{out}/load.json"))
print("cycles", r.get('cycles'), "at", round(r['cycles_per_s'], 1), "/s; failures", r['failures'], r.get('failures_by'),
      "; park p99", r['park']['p99_ms'], "ms, retrieve p99", r['retrieve']['p99_ms'], "ms")
h = json.load(open(f"{out}/hold.json"))
rtp = h['rtp']
print("held calls", h.get('parked'), "; failures", h['failures'], h.get('failures_by'), "; ended by a server", h.get('ended_by_server', 0),
      "; music received", round(rtp['received_pct'], 2), "%, longest gap", rtp['max_gap_ms'], "ms")
logs = "".join(open(f).read() for f in sorted(glob.glob(f"{out}/n*.log")))
for what, needle in [("recalls rung", "msg=recall "), ("dropped", "msg=dropped"), ("lost", '"call lost"'),
                     ("taken over", '"call taken over"'), ("abandoned (hung up by the held parties)", '"hung up while parked"')]:
    print(what, logs.count(needle))
PY
