#!/usr/bin/env bash
# HTTP ingest rate: concurrent clients POST single events to /v1/events on a running daemon
# (SQLite, synchronous=full: every accepted event is durable before the 202).
#
#   bench/ingest.sh [SECONDS] [CONNECTIONS]     defaults: 15 s, 64 connections
#
# Needs wrk (apt-get install wrk). Prints events/s and latency percentiles (p50, p99).
set -euo pipefail
SECS=${1:-15}
CONNS=${2:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 2; }
(cd "$root" && cargo build --release --quiet)
bin=$root/target/release/aftercare
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cp -r "$root/jobs" "$root/message_templates" "$work/"
cat > "$work/aftercare.yaml" <<YAML
store: {url: "sqlite://data/aftercare.db", sqlite_synchronous: ${SYNC:-full}}
jobs_dir: jobs
templates_dir: message_templates
defaults: {timezone: Asia/Shanghai, locale: zh-CN}
email: {from: "Example Shop <care@example.com>", transport: file, file: {dir: data/outbox}}
api:
  listen: 127.0.0.1:$port
  tokens: [{name: bench, scope: ingest, token_env: BENCH_TOKEN}]
YAML
export BENCH_TOKEN=bench-token-0123456789
AFTERCARE_LOG=warn "$bin" --config "$work/aftercare.yaml" run &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
# Each request: one order.delivered event with a unique id (thread number + counter), which
# plans one review request, like a shop's webhook would.
cat > "$work/post.lua" <<'LUA'
local counter = 0
local thread_id = 0
function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end
function request()
  counter = counter + 1
  local id = tid .. "-" .. counter
  local body = '{"id":"evt-' .. id .. '","type":"order.delivered","occurred_at":"2026-11-20T10:00:00+08:00",' ..
    '"contact":{"id":"c-' .. id .. '","email":"c' .. id .. '@example.com","locale":"zh-CN"},"data":{"order_id":"SO-' .. id .. '"}}'
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer bench-token-0123456789"}, body)
end
function done(summary, latency, requests)
  io.write(string.format("bench: %d requests, %d non-2xx/errors\n", summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  io.write(string.format("bench: %.0f events/s, p50 %.1f ms, p99 %.1f ms\n", summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency -s "$work/post.lua" "http://127.0.0.1:$port/v1/events" | grep -E "^bench:|Latency|Requests/sec"
stored=$(python3 -c "import sqlite3; c=sqlite3.connect('$work/data/aftercare.db'); print(c.execute('select count(*) from events').fetchone()[0], c.execute('select count(*) from messages').fetchone()[0])")
echo "stored:   events, messages = $stored (synchronous=${SYNC:-full})"
