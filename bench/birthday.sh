#!/usr/bin/env bash
# The birthday scan with N contacts (default 1,000,000): how long one scheduler tick takes to
# find and plan today's greetings, and that it reads one day's contacts by index.
#
#   bench/birthday.sh [N]
#
# Prints the import rate, the scan's candidate count and time (from the daemon's own debug
# log line), the whole `run --once` time and peak RSS, and the query plan.
set -euo pipefail
N=${1:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/common.sh"
bin=$(aftercare_bin)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file_workspace "$work"
cp "$root/jobs/birthday.yaml" "$work/jobs/"
# Birthdays spread over the year, time zones from Shanghai to Los Angeles.
awk -v n="$N" 'BEGIN {
  split("Asia/Shanghai Asia/Tokyo Europe/Berlin Europe/London America/New_York America/Los_Angeles", tz, " ");
  srand(42);
  for (i = 1; i <= n; i++) {
    d = int(rand() * 365); m = 1; dl[1]=31; dl[2]=28; dl[3]=31; dl[4]=30; dl[5]=31; dl[6]=30; dl[7]=31; dl[8]=31; dl[9]=30; dl[10]=31; dl[11]=30; dl[12]=31;
    while (d >= dl[m]) { d -= dl[m]; m++ }
    printf "{\"id\":\"u-%d\",\"type\":\"contact.updated\",\"occurred_at\":\"2026-01-01T00:00:00Z\",\"contact\":{\"id\":\"c-%d\",\"email\":\"c%d@example.com\",\"timezone\":\"%s\",\"birthday\":\"19%02d-%02d-%02d\"}}\n", i, i, i, tz[1 + i % 6], 50 + i % 50, m, d + 1
  }
}' > "$work/contacts.jsonl"
secs() { python3 -c "import time; print(time.monotonic())"; }
t0=$(secs)
"$bin" --config "$work/aftercare.yaml" events import "$work/contacts.jsonl" >/dev/null
t1=$(secs)
echo "import:    $N contacts in $(python3 -c "print(f'{$t1-$t0:.1f}')") s = $(python3 -c "print(f'{$N/($t1-$t0):,.0f}')") contacts/s"
t0=$(secs)
AFTERCARE_LOG=aftercare=debug,warn /usr/bin/time -f "%M" -o "$work/rss" "$bin" --config "$work/aftercare.yaml" run --once --now 2026-11-23T01:00:00Z 2> "$work/log" > "$work/out"
t1=$(secs)
scan=$(grep "anniversary scan" "$work/log" | sed 's/\x1b\[[0-9;]*m//g' | tail -1)
echo "scan:      ${scan#*anniversary scan}"
echo "run once:  $(cat "$work/out") in $(python3 -c "print(f'{$t1-$t0:.2f}')") s, peak RSS $(( $(cat "$work/rss") / 1024 )) MiB"
python3 - "$work/data/aftercare.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
n = c.execute("select count(*) from contact_dates").fetchone()[0]
plan = c.execute("explain query plan select d.contact_id, c.timezone, d.date from contact_dates d join contacts c on c.id = d.contact_id where d.field = 'birthday' and d.month_day in ('11-22','11-23','11-24')").fetchall()
print(f"index:     {n:,} contact dates; plan: " + "; ".join(r[3] for r in plan))
PY
