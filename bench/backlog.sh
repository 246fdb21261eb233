#!/usr/bin/env bash
# A big backlog: import N order deliveries in slices (each slice's rate, CPU and store calls
# an event show whether ingest stays flat as the store grows), then start the daemon on the
# N pending, not-yet-due messages and measure how long it takes to be ready and how much
# memory it holds once it has looked at the backlog (a few dispatch turns and a metrics
# scrape).
#
#   bench/backlog.sh [N] [SLICES]      defaults: 1,000,000 events in 10 slices
#
# Env: AFTERCARE_BIN (a built binary to measure instead of building this tree),
#      SYNC (sqlite synchronous: full|normal, default full).
# Goals (issue 16): import >= 50,000 events/s and flat; with 1,000,000 pending, `run` ready
# in <= 1 s and RSS <= 100 MiB.
set -euo pipefail
N=${1:-1000000}
SLICES=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/common.sh"
bin=$(aftercare_bin)
work=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/jobs"
cp "$root/jobs/review-request.yaml" "$work/jobs/"
cp -r "$root/message_templates" "$work/"
cat > "$work/aftercare.yaml" <<YAML
store: {url: "sqlite://data/aftercare.db", sqlite_synchronous: ${SYNC:-full}}
jobs_dir: jobs
templates_dir: message_templates
defaults: {timezone: Asia/Shanghai, locale: zh-CN}
email: {from: "Example Shop <care@example.com>", transport: file, file: {dir: data/outbox}}
api: {listen: "127.0.0.1:$port"}
YAML

secs() { python3 -c "import time; print(time.monotonic())"; }
per=$(( N / SLICES ))
# Deliveries happen now, so every review request is due in 3 days: a backlog, not work.
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for s in $(seq 0 $(( SLICES - 1 ))); do
  from=$(( s * per + 1 )); to=$(( (s + 1) * per ))
  awk -v a="$from" -v b="$to" -v at="$now" 'BEGIN { for (i = a; i <= b; i++) printf "{\"id\":\"evt-%d\",\"type\":\"order.delivered\",\"occurred_at\":\"%s\",\"contact\":{\"id\":\"c-%d\",\"email\":\"customer%d@example.com\",\"locale\":\"zh-CN\"},\"data\":{\"order_id\":\"SO-%d\"}}\n", i, at, i, i, i }' > "$work/slice.jsonl"
  mark=$(host_mark)
  t0=$(secs)
  python3 "$root/bench/measure.py" "$work/time" "$bin" --config "$work/aftercare.yaml" events import "$work/slice.jsonl" >/dev/null
  t1=$(secs)
  steal=$(host_steal "$mark")
  read -r _ user sys syscr syscw wchar < "$work/time"
  # CPU and the store's calls (bench/measure.py) an event: reads are pages missing from
  # SQLite's page cache (do they grow with the store?), writes WAL frames (two calls a frame)
  # and checkpoints.
  python3 -c "print(f'import {$from:>9,}..{$to:>9,}: {$per/($t1-$t0):>8,.0f} events/s ({$per/($t1-$t0)/50000:.2f} of the 50,000 goal), {($user+$sys)*1e6/$per:.0f} us CPU, {$syscr/$per:.2f} reads, {$syscw/$per:.2f} writes, {$wchar/$per/1024:.2f} KiB written per event; host steal $steal')"
done

AFTERCARE_LOG=warn "$bin" --config "$work/aftercare.yaml" run &
pid=$!
t0=$(secs)
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  kill -0 "$pid" 2>/dev/null || { echo "the daemon exited" >&2; exit 1; }
  sleep 0.02
done
t1=$(secs)
python3 -c "print(f'ready:    {$t1-$t0:.2f} s after start with $N pending (goal <= 1 s)')"
# Let it do a few dispatch turns over the backlog, and scrape the metrics (store figures).
curl -sf "http://127.0.0.1:$port/metrics" | grep -E '^aftercare_outbox' | head -5 || true
sleep 5
rss=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status")
echo "rss:      $rss MiB now, $hwm MiB peak, with $N pending (goal <= 100 MiB)"
echo "store:    $(du -sh "$work/data" | cut -f1)"
