#!/usr/bin/env bash
# Batching on vs off: /generate n=1 on digits-cvae under wrk, one server worker, 127.0.0.1 only.
# Usage: bench/batching.sh [connections=64] [seconds=10]. Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-64}
seconds=${2:-10}
python=${PYTHON:-.venv/bin/python}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }

run() {  # $1 = on|off
  local port
  port=$($python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  GENSERVE_PORT=$port GENSERVE_BATCHING=$1 GENSERVE_LOG_LEVEL=warning $python -m app &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  wrk -t1 -c"$connections" -d2s -s bench/generate.lua "http://127.0.0.1:$port" >/dev/null  # warm-up
  local out rps p99 batch
  out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency -s bench/generate.lua "http://127.0.0.1:$port")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  batch=$(curl -s "http://127.0.0.1:$port/metrics" | awk '
    /^genserve_batch_size_rows_sum\{graph="decoder",model="digits-cvae"\}/ {s=$2}
    /^genserve_batch_size_rows_count\{graph="decoder",model="digits-cvae"\}/ {c=$2}
    END {printf "%.1f", s/c}')
  printf "| %-8s | %12s | %8s | %15s | %s\n" "$1" "$rps" "$p99" "$batch" "${errors:-no errors}"
  kill $pid; wait $pid 2>/dev/null || true
}

echo "/generate n=1, digits-cvae, $connections connections, ${seconds}s, 1 worker"
printf "| %-8s | %12s | %8s | %15s |\n" batching "requests/s" "p99" "mean batch rows"
run on
run off
