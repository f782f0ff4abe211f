#!/bin/bash
# idlecpu.sh BIN: the server's CPU over 25 s of holding 20,000 idle
# WebSockets (server on core 0, generator on core 1), and its RSS per socket.
# Used for docs/PERFORMANCE.md (tenth sitting). Works in ./idlecpu-work.
set -u
BIN=$1
W=${WORK:-$PWD/idlecpu-work}
rm -rf "$W" && mkdir -p "$W/data" && cd "$W"
printf '[limits]\nauth_per_minute = 1000000\nsends_per_second = 1000000\nmax_connections_per_ip = 1000000\none_time_claims_per_hour = 1000000\n' > bench.toml
# The previous run's TIME_WAIT sockets hold ports the generator needs.
for i in $(seq 120); do [ "$(ss -tan state time-wait | wc -l)" -lt 500 ] && break; sleep 1; done
taskset -c 0 "$BIN" server --config bench.toml --listen 127.0.0.1:18181 --data-dir data > server.log 2>&1 &
PID=$!
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18181/ && break; sleep 0.1; done
taskset -c 1 "$BIN" bench --server http://127.0.0.1:18181 --data-dir data --server-pid $PID \
  --scenario idle --clients 20000 --source-addrs 2 --duration 75 --json > ri.json 2> ei.err &
B=$!
sleep 35
c0=$(awk '{print $14+$15}' /proc/$PID/stat)
sleep 25
c1=$(awk '{print $14+$15}' /proc/$PID/stat)
wait $B
python3 -c "
import json; r=json.load(open('ri.json'))
print('hold CPU ms/s', round(($c1-$c0)*10/25,1), 'confirmed', r['connections'], 'KiB/socket', round(r['server_rss_per_socket_kib'],2))"
kill $PID; wait $PID 2>/dev/null
