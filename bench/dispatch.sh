#!/usr/bin/env bash
# Dispatch throughput against postfix's smtp-sink on loopback, beside the ceiling that
# smtp-source reaches against the same sink just before it (again before each repeat).
#
#   bench/dispatch.sh [N...]     N due messages (default 50000)
#
# With several sizes (`bench/dispatch.sh 20000 100000 500000`) each round runs them in turn,
# so that all see the same minutes of the machine, and the summary prints each size's CPU
# per message against the first size's: the cost per message must not grow with the run
# (issue 16's goal: within 10%).
#
# Env: SESSIONS (SMTP connections, default 16), CONCURRENCY (default 2*SESSIONS),
#      BATCH (claim size, default 256), SYNC (sqlite synchronous: full|normal, default full),
#      REPEAT (rounds, each on a fresh store, default 1: with more, min/median/max),
#      AFTERCARE_BIN (a built binary to measure instead of building this tree).
# Prints both rates, our/ceiling, the daemon's CPU per message (user + system: other load on
# the machine disturbs it much less than the rate), the WAL's largest size during the run,
# the store's read and write calls per message (counts: does the work per message grow with
# the store?), peak RSS, and how much of the CPU the host took for its other guests during
# the ceiling and each run (steal: compare runs whose steal is alike). Every attempt is
# durably logged in SQLite.
set -euo pipefail
SIZES=("${@:-50000}")
SESSIONS=${SESSIONS:-16}
CONCURRENCY=${CONCURRENCY:-$((SESSIONS * 2))}
BATCH=${BATCH:-256}
SYNC=${SYNC:-full}
root=$(cd "$(dirname "$0")/.." && pwd)
for tool in smtp-sink smtp-source; do
  command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || { echo "needs $tool: apt-get install postfix" >&2; exit 2; }
done
export PATH=$PATH:/usr/sbin

. "$root/bench/common.sh"
bin=$(aftercare_bin)
work=$(mktemp -d)
trap 'kill $sink_pid 2>/dev/null || true; rm -rf "$work"' EXIT
start_sink

for N in "${SIZES[@]}"; do
  sink_workspace "$work/$N" "$N" "$SYNC" "$SESSIONS" "$BATCH" "$CONCURRENCY" 30s
  : > "$work/$N/figures"
done

secs() { python3 -c "import time; print(time.monotonic())"; }
rate() { python3 -c "print(f'{$1/($3-$2):,.0f}')"; }

# A message like ours in size: render one and measure it.
size=$("$bin" --config "$work/${SIZES[0]}/aftercare.yaml" preview review-request --event <(head -1 "$work/${SIZES[0]}/events.jsonl") | wc -c)
msg_len=$(( size * 2 ))   # text + html, base64-encoded, roughly

# One dispatch of N due messages in the workspace $work/N, on a fresh store.
one() {
  local N=$1 work=$work/$1
  rm -rf "$work/data"
  t0=$(secs)
  "$bin" --config "$work/aftercare.yaml" events import "$work/events.jsonl" >/dev/null
  t1=$(secs)
  echo "import:   $N events in $(python3 -c "print(f'{$t1-$t0:.2f}')") s = $(rate $N $t0 $t1) events/s (each plans one message)"

  # The ceiling just before each run, not once for all: the machine's speed drifts within
  # minutes, and a ratio against a ceiling measured three runs earlier reads the drift.
  mark=$(host_mark)
  t0=$(secs)
  smtp-source -d -s "$SESSIONS" -m "$N" -l "$msg_len" 127.0.0.1:$port
  t1=$(secs)
  ceiling=$(python3 -c "print($N/($t1-$t0))")
  echo "ceiling:  smtp-source -d -s $SESSIONS, $N x ${msg_len} B: $(rate $N $t0 $t1) msg/s (host steal $(host_steal "$mark"))"

  # The WAL's size, sampled while the run goes (SQLite removes it on a clean close).
  ( peak=0; while :; do
      s=$(stat -c %s "$work/data/aftercare.db-wal" 2>/dev/null || echo 0)
      [ "$s" -gt "$peak" ] && peak=$s && echo "$peak" > "$work/walpeak"
      sleep 0.2
    done ) &
  wal_pid=$!
  echo 0 > "$work/walpeak"
  mark=$(host_mark)
  t0=$(secs)
  python3 "$root/bench/measure.py" "$work/time" "$bin" --config "$work/aftercare.yaml" run --once --now 2026-11-24T00:00:00+08:00 > "$work/out"
  t1=$(secs)
  steal=$(host_steal "$mark")
  kill $wal_pid 2>/dev/null; wait $wal_pid 2>/dev/null || true
  grep -q "^$N sent" "$work/out" || { echo "not every message was sent" >&2; exit 1; }
  read -r rss user sys syscr syscw wchar < "$work/time"
  ours=$(python3 -c "print($N/($t1-$t0))")
  us=$(python3 -c "print(f'{($user+$sys)*1e6/$N:.0f}')")
  sys_us=$(python3 -c "print(f'{$sys*1e6/$N:.0f}')")
  wal=$(( $(cat "$work/walpeak") / 1048576 ))
  echo "aftercare: $(cat "$work/out") in $(python3 -c "print(f'{$t1-$t0:.2f}')") s = $(rate $N $t0 $t1) msg/s (sessions $SESSIONS, concurrency $CONCURRENCY, batch $BATCH, synchronous=$SYNC)"
  echo "ratio:    $(python3 -c "print(f'{$ours/$ceiling:.2f}')") of the ceiling"
  echo "cpu:      $us us per message ($sys_us us system)"
  echo "host:     steal $steal of the CPU during the run (the host's other guests; see bench/common.sh)"
  echo "wal:      largest $wal MiB during the run"
  # The store's calls (bench/measure.py): pages missing from SQLite's page cache, and WAL
  # frames and checkpoints (two calls a frame).
  python3 -c "n=$N; print(f'store io: {$syscr/n:.1f} reads, {$syscw/n:.1f} writes, {$wchar/n/1024:.1f} KiB written per message')"
  echo "peak RSS: $(( rss / 1024 )) MiB"
  attempts=$(python3 -c "
import sqlite3; c=sqlite3.connect('$work/data/aftercare.db'); print(c.execute('select count(*) from attempts').fetchone()[0])")
  echo "attempts logged: $attempts"
  echo "$(python3 -c "print($ours/$ceiling)") $us ${steal%\%}" >> "$work/figures"
}

for run in $(seq "${REPEAT:-1}"); do
  for N in "${SIZES[@]}"; do
    [ ${#SIZES[@]} -gt 1 ] && echo "--- $N"
    one "$N"
  done
done
python3 - "$work" "${REPEAT:-1}" "${SIZES[@]}" <<'PY'
import statistics, sys
work, repeat, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
medians = {}
for n in sizes:
    rows = [tuple(map(float, l.split())) for l in open(f"{work}/{n}/figures") if l.strip()]
    medians[n] = statistics.median(r[1] for r in rows)
    if repeat > 1:
        if len(sizes) > 1:
            print(f"{int(n):,}:")
        for i, name, fmt in ((0, "ratio", "{:.2f}"), (1, "cpu us/msg", "{:.0f}"), (2, "steal %", "{:.0f}")):
            v = sorted(r[i] for r in rows)
            print(f"{name:>11}: min {fmt.format(v[0])}  median {fmt.format(statistics.median(v))}  max {fmt.format(v[-1])}  ({len(v)} runs)")
first = sizes[0]
for n in sizes[1:]:
    print(f"cpu a message at {int(n):,} against {int(first):,}: {medians[n]:.0f} / {medians[first]:.0f} us = {medians[n] / medians[first]:.2f} (medians; goal: at most 1.10)")
PY
