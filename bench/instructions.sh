#!/usr/bin/env bash
# Instructions a message, counted by valgrind's cachegrind: a figure other load on the
# machine does not move. The other benches time the work, and on a shared 2-core machine
# their CPU figures moved by a quarter from one hour to the next, for the same binary; this
# one says whether a change does less work, to the instruction, not how long it takes.
#
#   bench/instructions.sh [N] [DAYS]      defaults: 2,000 messages, 14 days
#
# Two counts, each made twice (the work, then the same run with nothing to do, subtracted so
# that start-up is not in the figure):
#   dispatch  `run --once` of N due review requests to postfix's smtp-sink (the store as
#             bench/dispatch.sh makes it, synchronous=full), per message sent;
#   forecast  `forecast` of DAYS of bench/forecast.sh's `*/15 9-17 * * MON-FRI` job for 100
#             contacts, per send.
# Env: AFTERCARE_BIN (a built binary to count instead of building this tree), VS (a second
# built binary: counted the same way, and A/VS printed).
# Under valgrind glibc copies with its AVX2 routines (valgrind has no AVX-512), 32 bytes an
# instruction: copying weighs more here than in the time of a native run. Needs valgrind
# (apt-get install valgrind) and postfix's smtp-sink.
set -euo pipefail
N=${1:-2000}
DAYS=${2:-14}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v valgrind >/dev/null || { echo "needs valgrind: apt-get install valgrind" >&2; exit 2; }
[ -x /usr/sbin/smtp-sink ] || command -v smtp-sink >/dev/null || { echo "needs smtp-sink: apt-get install postfix" >&2; exit 2; }
export PATH=$PATH:/usr/sbin
. "$root/bench/common.sh"
bins=("$(aftercare_bin)")
[ -n "${VS:-}" ] && bins+=("$VS")

work=$(mktemp -d)
trap 'kill $sink_pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=(); [ "$(id -u)" = 0 ] && user=(-u nobody)
smtp-sink "${user[@]}" -m 1024 127.0.0.1:$port 1024 >/dev/null 2>&1 &
sink_pid=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

# The dispatch workspace: one store of N due messages, copied for each count.
mkdir -p "$work/d/jobs" "$work/f/jobs"
cp "$root/jobs/review-request.yaml" "$work/d/jobs/"
cp -r "$root/message_templates" "$work/d/"
cp -r "$root/message_templates" "$work/f/"
cat > "$work/d/aftercare.yaml" <<YAML
store: {url: "sqlite://data/aftercare.db", sqlite_synchronous: full}
jobs_dir: jobs
templates_dir: message_templates
defaults: {timezone: Asia/Shanghai, locale: zh-CN}
email:
  from: "Example Shop <care@example.com>"
  transport: smtp
  smtp: {host: 127.0.0.1, port: $port, tls: none, pool_size: 16, timeout: 120s}
dispatch: {batch_size: 256, concurrency: 32, expire_after: never}
policy: {consent: opt_out, caps: [], send_window: {start: "00:00", end: "24:00"}}
YAML
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"id\":\"evt-%d\",\"type\":\"order.delivered\",\"occurred_at\":\"2026-11-20T10:00:00+08:00\",\"contact\":{\"id\":\"c-%d\",\"name\":\"王芳\",\"email\":\"customer%d@example.com\",\"locale\":\"zh-CN\",\"timezone\":\"Asia/Shanghai\"},\"data\":{\"order_id\":\"SO-%d\",\"review_url\":\"https://shop.example.com/review/SO-%d\"}}\n", i, i, i, i, i }' > "$work/d/events.jsonl"
(cd "$work/d" && "${bins[0]}" --config aftercare.yaml events import events.jsonl >/dev/null)
mv "$work/d/data" "$work/d/store"

# The forecast workspace.
cat > "$work/f/aftercare.yaml" <<YAML
store: {url: "sqlite://data/aftercare.db", sqlite_synchronous: normal}
jobs_dir: jobs
templates_dir: message_templates
defaults: {timezone: Asia/Shanghai, locale: zh-CN}
email: {from: "Example Shop <care@example.com>", transport: file, file: {dir: data/outbox}}
policy: {consent: opt_out, caps: []}
YAML
cat > "$work/f/jobs/business-hours.yaml" <<YAML
id: business-hours
trigger: {cron: "*/15 9-17 * * MON-FRI", timezone: Asia/Shanghai}
audience: {where: {contact.attributes.team: ops}}
template: nps_survey
survey: nps
channels: [email]
YAML
for i in $(seq 1 100); do
  printf '{"id":"u-%d","type":"contact.updated","occurred_at":"2027-01-01T00:00:00Z","contact":{"id":"c-%d","email":"c%d@example.com","attributes":{"team":"ops"}}}\n' "$i" "$i" "$i"
done > "$work/f/events.jsonl"
(cd "$work/f" && "${bins[0]}" --config aftercare.yaml events import events.jsonl >/dev/null)
until=$(python3 -c "import datetime as d; print((d.datetime(2027, 3, 1) + d.timedelta(days=$DAYS)).strftime('%Y-%m-%dT%H:%M:%SZ'))")

# Instructions of one run of BIN in DIR with ARGS; the run's output in $work/out.
count() {
  local dir=$1 bin=$2; shift 2
  (cd "$dir" && valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    "$bin" --config aftercare.yaml "$@" > "$work/out" 2> "$work/vg") || { cat "$work/vg" >&2; exit 1; }
  grep -o 'I *refs: *[0-9,]*' "$work/vg" | tr -dc '0-9'
}
fresh() { rm -rf "$work/d/data" && cp -a "$work/d/store" "$work/d/data"; }

declare -A per
for bin in "${bins[@]}"; do
  fresh
  busy=$(count "$work/d" "$bin" run --once --now 2026-11-24T00:00:00+08:00)
  grep -q "^$N sent" "$work/out" || { echo "$bin: not every message was sent: $(cat "$work/out")" >&2; exit 1; }
  fresh
  idle=$(count "$work/d" "$bin" run --once --now 2026-11-20T00:00:00+08:00)
  d=$(( (busy - idle) / N ))
  busy=$(count "$work/f" "$bin" forecast --now 2027-03-01T00:00:00Z --until "$until")
  sends=$(grep -o '^[0-9]* message(s) would be sent' "$work/out" | cut -d' ' -f1)
  # A minute at 08:00 Shanghai: the job first fires at 09:00.
  idle=$(count "$work/f" "$bin" forecast --now 2027-03-01T00:00:00Z --until 2027-03-01T00:01:00Z)
  f=$(( (busy - idle) / sends ))
  per[$bin]="$d $f"
  python3 -c "print(f'$bin\n  dispatch: {$d:,} instructions a message ({$N:,} sent)\n  forecast: {$f:,} instructions a send ({$sends:,} sends in $DAYS days)')"
done
if [ -n "${VS:-}" ]; then
  read -r ad af <<< "${per[${bins[0]}]}"
  read -r bd bf <<< "${per[$VS]}"
  python3 -c "print(f'A/VS: dispatch {$ad / $bd:.3f}, forecast {$af / $bf:.3f}')"
fi
