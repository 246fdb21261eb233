#!/usr/bin/env bash
# How long `aftercare forecast` takes to answer (issue 16, goal 3).
#
#   bench/forecast.sh [year [N]]      # a year of a `*/15 9-17 * * MON-FRI` job for N contacts
#                                     # (default 100); goal: <= 5 s
#   bench/forecast.sh week [N [P]]    # 7 days of the shipped jobs on a store of N contacts
#                                     # (default 1,000,000) and P pending messages (default
#                                     # 100,000); goal: <= 10 s
#
# Prints the sends, wall and CPU seconds (user + sys: read CPU, the machine is shared), and
# peak RSS, for the forecast alone (the setup is not timed). Runs it REPEAT times (default 3)
# and prints each, so the spread shows.
# AFTERCARE_BIN=path measures a given build instead of building this tree.
set -euo pipefail
mode=${1:-year}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/common.sh"
bin=$(aftercare_bin)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file_workspace "$work"
ac() { "$bin" --config "$work/aftercare.yaml" "$@"; }

case $mode in
year)
  N=${2:-100}
  now=2027-03-01T00:00:00Z until=2028-03-01T00:00:00Z
  year_job "$work" "$N"
  echo "a year ($now to $until) of */15 9-17 * * MON-FRI for $N contacts"
  goal=5 # seconds, for 100 contacts
  ;;
week)
  N=${2:-1000000} P=${3:-100000}
  now=2026-11-23T00:00:00Z until=2026-11-30T00:00:00Z
  cp "$root"/jobs/*.yaml "$work/jobs/"
  # Contacts with birthdays spread over the year, in six zones; P deliveries whose review
  # requests are pending (due over the coming weeks), some rentals for the survey.
  awk -v n="$N" -v p="$P" 'BEGIN {
    split("Asia/Shanghai Asia/Tokyo Europe/Berlin Europe/London America/New_York America/Los_Angeles", tz, " ");
    srand(42);
    split("31 28 31 30 31 30 31 31 30 31 30 31", dl, " ");
    for (i = 1; i <= n; i++) {
      d = int(rand() * 365); m = 1;
      while (d >= dl[m]) { d -= dl[m]; m++ }
      printf "{\"id\":\"u-%d\",\"type\":\"contact.updated\",\"occurred_at\":\"2026-01-01T00:00:00Z\",\"contact\":{\"id\":\"c-%d\",\"email\":\"c%d@example.com\",\"timezone\":\"%s\",\"birthday\":\"19%02d-%02d-%02d\"}}\n", i, i, i, tz[1 + i % 6], 50 + i % 50, m, d + 1
    }
    for (i = 1; i <= p; i++) {
      day = 20 + int(rand() * 30); h = int(rand() * 24);
      printf "{\"id\":\"d-%d\",\"type\":\"order.delivered\",\"occurred_at\":\"2026-11-%02dT%02d:00:00Z\",\"contact\":{\"id\":\"c-%d\",\"email\":\"c%d@example.com\"},\"data\":{\"order_id\":\"SO-%d\"}}\n", i, (day > 30 ? 30 : day), h, i, i, i
    }
    for (i = 1; i <= 1000; i++)
      printf "{\"id\":\"r-%d\",\"type\":\"rental.completed\",\"occurred_at\":\"2026-11-15T08:00:00Z\",\"contact\":{\"id\":\"c-%d\",\"email\":\"c%d@example.com\"}}\n", i, i * 7, i * 7
  }' > "$work/events.jsonl"
  echo "7 days ($now to $until) of the shipped jobs, $N contacts, $P deliveries"
  goal=10 # seconds, for 1,000,000 contacts and 100,000 deliveries
  ;;
*) echo "usage: bench/forecast.sh [year [N] | week [N [P]]]" >&2; exit 2 ;;
esac

ac events import "$work/events.jsonl" >/dev/null
for run in $(seq 1 "${REPEAT:-3}"); do
  mark=$(host_mark)
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" \
    "$bin" --config "$work/aftercare.yaml" forecast --now "$now" --until "$until" > "$work/out"
  read -r wall user sys rss < "$work/time"
  steal=$(host_steal "$mark")
  sends=$(tail -n 3 "$work/out" | grep -o '^[0-9]* message(s) would be sent' | cut -d' ' -f1 || true)
  python3 -c "print(f'run $run: {int(\"${sends:-0}\"):,} sends in $wall s wall, {$user + $sys:.1f} s CPU (user $user, sys $sys), peak RSS {$rss // 1024} MiB; {$wall / $goal:.2f} of the $goal s goal (set for the default sizes); host steal $steal')"
done
