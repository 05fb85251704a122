#!/usr/bin/env bash
# Reads through two gateway replicas on one PostgreSQL against one replica
# alone, on this machine, in one run (BENCHMARKS.md, issue 15):
#   1. one `fhirgate serve` on a fresh schema, the 12 Synthea transaction
#      bundles loaded through it, then wrk -t2 -c32 on GET /Patient/{id}
#      (the largest patient) for $DURATION;
#   2. a second replica on the same database, then two wrk -t1 -c16 at once,
#      one per replica, for $DURATION: their sum is the two replicas' rate.
# During each step it reads the CPU time (user+system, /proc) the gateway
# processes, the PostgreSQL server processes and wrk used, to show how the
# two cores were shared. Every process it starts is stopped by pid at exit.
#
#   bench/replicas.sh                      # PG=postgres://postgres@127.0.0.1:5432/test
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
DURATION=${DURATION:-15s}
DATA=${DATA:-../shared/testdata/synthea-r4}
WORK=$(mktemp -d)
SCHEMA=bench_replicas_$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v wrk >/dev/null || { echo "bench/replicas.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }

go build -o "$WORK/fhirgate" ./cmd/fhirgate
psql -q "$PG" -c "CREATE SCHEMA $SCHEMA" >/dev/null
DB="$PG?search_path=$SCHEMA"
[[ "$PG" == *\?* ]] && DB="$PG&search_path=$SCHEMA"

start() { # start PORT -> pid in PIDS
  "$WORK/fhirgate" serve --auth=none --log-level=warn --db "$DB" --addr "127.0.0.1:$1" >"$WORK/serve-$1.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$1/readyz" && return; sleep 0.2; done
  echo "replica on $1 did not start:" >&2; cat "$WORK/serve-$1.log" >&2; exit 1
}
# cpu PID... -> total user+system clock ticks of the processes
# (a process may end between listing and reading: PostgreSQL backends do)
cpu() { local t=0 p v; for p in "$@"; do v=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null) && [ -n "$v" ] && t=$((t + v)); done; echo "$t"; }
pgpids() { pgrep -d' ' -x postgres || pgrep -d' ' postgres; }
machine() { awk '/^cpu /{print $2+$3+$4+$6+$7+$8}' /proc/stat; } # busy ticks, all cores

start 8301
largest="" most=0
for f in "$DATA"/*.json; do
  n=$(grep -o '"request"' "$f" | wc -l)
  resp=$(curl -fs -X POST -H 'Content-Type: application/fhir+json' --data-binary @"$f" -H 'Prefer: return=minimal' http://127.0.0.1:8301/)
  if [ "$n" -gt "$most" ]; then most=$n; largest=$(echo "$resp" | grep -o '"location":"Patient/[^/"]*' | head -1 | cut -d/ -f2); fi
done
URL_A="http://127.0.0.1:8301/Patient/$largest"
URL_B="http://127.0.0.1:8302/Patient/$largest"
wrk -t1 -c1 -d3s "$URL_A" >/dev/null # warm-up

measure() { # measure LABEL GATEWAY_PIDS -- WRK_COMMANDS...
  local label=$1 gw=$2; shift 2
  local g0 p0 m0 g1 p1 m1 w0 w1
  g0=$(cpu $gw); p0=$(cpu $(pgpids)); m0=$(machine)
  local outs=() wpids=() i=0
  for url in "$@"; do
    wrk -t"$T" -c"$C" -d"$DURATION" --latency "$url" >"$WORK/wrk-$label-$i.txt" &
    wpids+=("$!"); i=$((i + 1))
  done
  w0=0; w1=0
  for p in "${wpids[@]}"; do w1=$(cpu "$p"); wait "$p"; done
  g1=$(cpu $gw); p1=$(cpu $(pgpids)); m1=$(machine)
  local rps=0 f
  for f in "$WORK"/wrk-"$label"-*.txt; do rps=$(awk -v r="$rps" '/^Requests\/sec/{print r+$2}' "$f"); done
  local busy=$((m1 - m0)) served=$((g1 - g0 + p1 - p0)) hz
  hz=$(getconf CLK_TCK)
  printf '| %s | %.0f | %s%% | %s%% | %s%% | %.0f |\n' "$label" "$rps" \
    "$(( (g1 - g0) * 100 / (busy > 0 ? busy : 1) ))" "$(( (p1 - p0) * 100 / (busy > 0 ? busy : 1) ))" \
    "$(( (busy - served) * 100 / (busy > 0 ? busy : 1) ))" \
    "$(awk -v r="$rps" -v d="${DURATION%s}" -v s="$served" -v hz="$hz" 'BEGIN{print (s > 0 ? r * d / (s / hz) : 0)}')"
  echo "$rps" >"$WORK/rps-$label"
}

echo "largest patient: Patient/$largest ($most entries); $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| run | req/s | gateways' share of busy CPU | PostgreSQL's | everything else (wrk, other work) | requests per CPU-second of gateways + PostgreSQL |"
echo "|---|---:|---:|---:|---:|---:|"
T=2 C=32 measure "one replica" "${PIDS[0]}" "$URL_A"
start 8302
wrk -t1 -c1 -d3s "$URL_B" >/dev/null
T=1 C=16 measure "two replicas" "${PIDS[0]} ${PIDS[1]}" "$URL_A" "$URL_B"
one=$(cat "$WORK/rps-one replica"); two=$(cat "$WORK/rps-two replicas")
awk -v a="$one" -v b="$two" 'BEGIN{printf "two replicas / one replica: %.2f\n", b/a}'
