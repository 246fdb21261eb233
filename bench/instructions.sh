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
start_sink

# The dispatch workspace: one store of N due messages, copied for each count.
sink_workspace "$work/d" "$N" full 16 256 32 120s
(cd "$work/d" && "${bins[0]}" --config aftercare.yaml events import events.jsonl >/dev/null)
mv "$work/d/data" "$work/d/store"

# The forecast workspace.
file_workspace "$work/f"
year_job "$work/f" 100
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
