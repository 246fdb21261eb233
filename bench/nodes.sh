#!/usr/bin/env bash
# Scale-out: dispatch rate of 1 and of 2 daemons (`aftercare run`) sharing one PostgreSQL,
# sending to postfix's smtp-sink on loopback, and the ratio. Also where the CPU goes: each
# daemon, PostgreSQL (every backend), smtp-sink, and the rest of the machine, from /proc.
#
#   bench/nodes.sh [N]           N due messages per phase (default 20000)
#
# After each phase, what each daemon warned of (its log, counted by line).
#
# Two pairs of phases. CPU-bound: the sink answers at once, so the machine's cores are the
# limit. Latency-bound: the sink waits 1 s before accepting each message (`smtp-sink -w 1`,
# like a slow relay), SLOW messages (default 320), so a daemon's SMTP sessions are the limit.
#
# Env: SESSIONS (SMTP connections per daemon, default 8), CONCURRENCY (default 2*SESSIONS),
#      BATCH (claim size, default 256), FSYNC (PostgreSQL fsync: on|off, default on),
#      SLOW (messages per latency-bound phase, default 320; 0 skips them),
#      AFTERCARE_PG_BIN (folder with initdb; default the newest /usr/lib/postgresql/*/bin),
#      AFTERCARE_BIN (a built binary to measure instead of building this tree),
#      CARGO_TARGET_DIR (where the release binary is built).
# PostgreSQL is started by this script from its binaries in a temporary folder (as the
# `postgres` user when run as root, as PostgreSQL refuses root) and removed at the end.
set -euo pipefail
N=${1:-20000}
SESSIONS=${SESSIONS:-8}
CONCURRENCY=${CONCURRENCY:-$((SESSIONS * 2))}
BATCH=${BATCH:-256}
FSYNC=${FSYNC:-on}
SLOW=${SLOW:-320}
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$PATH:/usr/sbin
command -v smtp-sink >/dev/null || { echo "needs smtp-sink: apt-get install postfix" >&2; exit 2; }
pg_bin=${AFTERCARE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$pg_bin/initdb" ] || { echo "needs PostgreSQL's binaries: apt-get install postgresql (or set AFTERCARE_PG_BIN)" >&2; exit 2; }

. "$root/bench/common.sh"
bin=$(aftercare_bin)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The postmaster itself (its parent is runuser when we are root): fast shutdown.
  local pm; pm=$(head -1 "$work/pg/postmaster.pid" 2>/dev/null || true)
  if [ -n "$pm" ]; then
    kill -INT "$pm" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pm" 2>/dev/null || break; sleep 0.1; done
  fi
  for p in ${sink_pid:-} ${slow_pid:-}; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# PostgreSQL, as `postgres` when we are root.
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$work"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U postgres -A trust -E UTF8 --locale=C --no-instructions >/dev/null
pg_port=$(free_port)
"${as_pg[@]}" "$pg_bin/postgres" -D "$work/pg" -h 127.0.0.1 -p "$pg_port" -k "$work" \
  -c fsync="$FSYNC" -c max_connections=200 -c shared_buffers=256MB >"$work/pg.log" 2>&1 &
pg_pid=$!
for _ in $(seq 100); do "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U postgres && break; sleep 0.1; done
psql() { "$pg_bin/psql" -X -q -A -t -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }

sink_port=$(free_port)
user=(); [ "$(id -u)" = 0 ] && user=(-u nobody)
smtp-sink "${user[@]}" -m 1024 127.0.0.1:$sink_port 1024 >/dev/null 2>&1 &
sink_pid=$!
slow_port=$(free_port)
smtp-sink "${user[@]}" -m 1024 -w 1 127.0.0.1:$slow_port 1024 >/dev/null 2>&1 &
slow_pid=$!
for port in $sink_port $slow_port; do
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

cp -r "$root/message_templates" "$work/"
mkdir "$work/jobs"
cat > "$work/jobs/review.yaml" <<'YAML'
id: review-request
trigger: {event: order.delivered, delay: 3d}
template: review_request
channels: [email]
dedupe: "{{event.data.order_id}}"
YAML

config() { # DB NODE [SMTP_PORT]
  cat > "$work/$2.yaml" <<YAML
store: {url: "postgres://postgres@127.0.0.1:$pg_port/$1"}
jobs_dir: jobs
templates_dir: message_templates
defaults: {timezone: Asia/Shanghai, locale: zh-CN}
email:
  from: "Example Shop <care@example.com>"
  transport: smtp
  smtp: {host: 127.0.0.1, port: ${3:-$sink_port}, tls: none, pool_size: $SESSIONS, timeout: 30s}
dispatch: {batch_size: $BATCH, concurrency: $CONCURRENCY, expire_after: never}
policy: {consent: opt_out, caps: [], send_window: {start: "00:00", end: "24:00"}}
node_id: $2
YAML
}

# CPU seconds (user + system) of the given pids, and of every postgres process (the
# postmaster's reaped children included), and the machine's busy and total jiffies.
cpu_of() { python3 - "$@" <<'PY'
import os, sys
tck = os.sysconf("SC_CLK_TCK")
def stat(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return f
    except OSError:
        return None
out = []
for p in sys.argv[1:]:
    f = stat(p)
    out.append((int(f[11]) + int(f[12])) / tck if f else 0.0)
print(" ".join(f"{x:.2f}" for x in out))
PY
}
pg_cpu() { python3 - "$(head -1 "$work/pg/postmaster.pid")" <<'PY'
import os, sys
tck = os.sysconf("SC_CLK_TCK"); pm = sys.argv[1]; total = 0
for d in os.listdir("/proc"):
    if not d.isdigit(): continue
    try: f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
    except OSError: continue
    if d == pm: total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    elif f[1] == pm: total += int(f[11]) + int(f[12])
print(f"{total / tck:.2f}")
PY
}
machine() { awk '/^cpu /{busy=$2+$3+$4+$7+$8; print busy, busy+$5+$6}' /proc/stat; }
now() { python3 -c "import time; print(time.monotonic())"; }

cores=$(nproc)
declare -A rate cost
phase() { # DAEMONS N SMTP_PORT NAME
  local d=$1 N=$2 port=$3 db=bench_$4_$1
  psql -d postgres -c "CREATE DATABASE $db"
  config "$db" node-0
  "$bin" --config "$work/node-0.yaml" migrate >/dev/null
  # N order deliveries, due 3 days after 2026-11-20 (long past): four imports at once.
  local at; at=$(date -u -d '4 days ago' +%Y-%m-%dT%H:%M:%SZ)
  awk -v n="$N" -v at="$at" -v dir="$work" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"id\":\"evt-%d\",\"type\":\"order.delivered\",\"occurred_at\":\"%s\",\"contact\":{\"id\":\"c-%d\",\"name\":\"王芳\",\"email\":\"customer%d@example.com\",\"locale\":\"zh-CN\",\"timezone\":\"Asia/Shanghai\"},\"data\":{\"order_id\":\"SO-%d\",\"review_url\":\"https://shop.example.com/review/SO-%d\"}}\n", i, at, i, i, i, i > (dir "/events-" (i % 4) ".jsonl") }'
  local t0; t0=$(now)
  local imports=()
  for k in 0 1 2 3; do
    "$bin" --config "$work/node-0.yaml" events import "$work/events-$k.jsonl" >/dev/null &
    imports+=($!)
  done
  for p in "${imports[@]}"; do wait "$p"; done
  local t1; t1=$(now)
  python3 -c "print(f'  import: $N events in {$t1-$t0:.1f} s = {$N/($t1-$t0):,.0f} events/s (4 imports at once)')"
  rm -f "$work"/events-*.jsonl
  psql -d "$db" -c "VACUUM ANALYZE"

  local daemons=()
  local wal0; wal0=$(psql -d "$db" -c "SELECT wal_bytes FROM pg_stat_wal")
  read -r m0 mt0 < <(machine)
  local pg0; pg0=$(pg_cpu)
  local sink0; sink0=$(cpu_of "$sink_pid")
  t0=$(now)
  for i in $(seq "$d"); do
    config "$db" "node-$i" "$port"
    AFTERCARE_LOG=warn "$bin" --config "$work/node-$i.yaml" run 2>"$work/node-$i.log" &
    daemons+=($!); pids+=($!)
  done
  # One psql watching the count (a psql process per poll would cost a tenth of a core). Its
  # backend counts 20,000 rows ten times a second, about 10 us per message of PostgreSQL's
  # CPU that is the bench's, not the daemons': its pid comes first, its CPU is read before
  # it exits and taken out of PostgreSQL's figure.
  local watcher="" watched=0
  while read -r c; do
    [ -n "$c" ] || continue
    if [ -z "$watcher" ]; then watcher=$c; continue; fi
    if [ "$c" -ge "$N" ]; then watched=$(cpu_of "$watcher"); break; fi
  done < <(printf "SELECT pg_backend_pid();\nSELECT COUNT(*) FROM messages WHERE state = 'sent' \\watch 0.1\n" | psql -d "$db" 2>/dev/null)
  t1=$(now)
  read -r m1 mt1 < <(machine)
  local pg1; pg1=$(pg_cpu)
  local sink1; sink1=$(cpu_of "$sink_pid")
  local ours; ours=$(cpu_of "${daemons[@]}")
  for p in "${daemons[@]}"; do kill -TERM "$p"; done
  for p in "${daemons[@]}"; do wait "$p"; done
  # What each daemon warned of (they log at warn): a phase slower than it should be says why
  # here (claims handed back whose lease was in doubt, renewals that failed), before the
  # logs go with the bench's folder. The config's own warning (no unsubscribe:) is left out.
  for i in $(seq "$d"); do
    local said
    said=$(grep -v "unsubscribe: is not set" "$work/node-$i.log" | sed -E 's/^[0-9T:.+-]+Z? +//' |
      sort | uniq -c | sort -rn | head -5 || true)
    [ -z "$said" ] || printf '    node-%s warned:\n%s\n' "$i" "$(sed 's/^ */      /' <<< "$said")"
  done
  local wal1; wal1=$(psql -d "$db" -c "SELECT wal_bytes FROM pg_stat_wal")
  # What each message's state changes cost the table: updates, how many were HOT (no index
  # entry written), and the WAL written per message (the daemons' backends have exited, so
  # their statistics are flushed).
  # `message_queue` (PostgreSQL's copy of the queued rows, schema v10) separately.
  local upd; upd=$(psql -d "$db" -F ' ' -R ';' -c "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname IN ('messages', 'message_queue') ORDER BY relname DESC")
  local left; left=$(psql -d "$db" -c "SELECT COUNT(*) FROM messages WHERE state <> 'sent'")
  [ "$left" = 0 ] || { echo "$left messages not sent" >&2; exit 1; }
  rate[$4$d]=$(python3 -c "print($N/($t1-$t0))")
  # CPU seconds per message of the whole machine but the bench's count.
  cost[$4$d]=$(python3 -c "print(((($m1) - ($m0)) / 100.0 - $watched) / $N)")
  python3 - <<PY
wall = $t1 - $t0
ours = [float(x) for x in "$ours".split()]
watched = $watched
pg, sink = $pg1 - $pg0 - watched, $sink1 - $sink0
busy = ($m1 - $m0) / 100.0
total = ($mt1 - $mt0) / 100.0
other = max(busy - sum(ours) - pg - watched - sink, 0.0)
print(f"  {$d} daemon(s): {$N} sent in {wall:.2f} s = {$N / wall:,.0f} msg/s")
print(f"    CPU seconds: aftercare {' + '.join(f'{x:.1f}' for x in ours)}, PostgreSQL {pg:.1f} (and {watched:.1f} the bench's count), smtp-sink {sink:.1f}, everything else {other:.1f}")
print(f"    per message: aftercare {sum(ours) / $N * 1e6:,.0f} us, PostgreSQL {pg / $N * 1e6:,.0f} us, smtp-sink {sink / $N * 1e6:,.0f} us")
tables = []
for row in "$upd".split(";"):
    name, upd, hot = row.split()
    upd, hot = int(upd), int(hot)
    tables.append(f"{name} {upd:,} updates ({upd / $N:.1f} per message), {hot / max(upd, 1) * 100:.0f}% HOT")
print(f"    {'; '.join(tables)}; WAL {($wal1 - $wal0) / $N:,.0f} bytes per message")
print(f"    machine: {busy / total * 100:.0f}% busy of {$cores} cores ({busy / wall:.2f} cores), idle {max(total - busy, 0) / wall:.2f} cores")
PY
}

echo "aftercare on PostgreSQL ($("$pg_bin/postgres" --version | awk '{print $3}'), fsync=$FSYNC): $N messages per phase, batch $BATCH, concurrency $CONCURRENCY, $SESSIONS SMTP sessions per daemon, $cores cores"
echo "  load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU-bound (smtp-sink answers at once):"
phase 1 "$N" "$sink_port" cpu
phase 2 "$N" "$sink_port" cpu
# What the cores allow: at the 1-daemon phase's CPU per message (every process of the
# machine, the bench's count taken out), $cores busy cores send cores / cost a second.
python3 -c "
r1, r2, c1 = ${rate[cpu1]}, ${rate[cpu2]}, ${cost[cpu1]}
print(f'ratio, CPU-bound: 2 daemons / 1 daemon = {r2 / r1:.2f} (goal 1.6); the {$cores} cores allow {$cores / c1 / r1:.2f}'
      f' ({c1 * 1e6:,.0f} us of CPU per message with 1 daemon: at most {$cores / c1:,.0f} msg/s)')"
if [ "$SLOW" -gt 0 ]; then
  echo "latency-bound (smtp-sink -w 1: one second per message, $SESSIONS sessions per daemon):"
  phase 1 "$SLOW" "$slow_port" slow
  phase 2 "$SLOW" "$slow_port" slow
  python3 -c "print(f'ratio, latency-bound: 2 daemons / 1 daemon = {${rate[slow2]}/${rate[slow1]}:.2f}')"
fi
echo "  load after: $(cut -d' ' -f1-3 /proc/loadavg)"
