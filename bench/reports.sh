#!/usr/bin/env bash
# Reports on a big store: N messages (default 1,000,000) of a review request with two
# variants and a 10% holdout, a reminder step, reviews for ~15% of the orders (some before
# the send, some after the window), and an NPS survey job with ~30% answered. Times
# `report conversions` (plain, by variant, by week) and `report nps` (by week) on SQLite, and
# prints the query plans, which must read `messages (job_id, due_at)`, `events (type,
# occurred_at)` and `messages (contact_id, job_id)`, never scan the tables. Then times
# `/metrics` of a daemon on that store, scraped every second.
#
#   bench/reports.sh [N]            AFTERCARE_BIN=path measures a given build
#
# Then the same store is copied into a PostgreSQL it starts (`aftercare store copy`) and the
# same reports are timed there (PG=0 skips it; AFTERCARE_PG_BIN as for bench/nodes.sh).
#
# The store is filled with SQL (python3's sqlite3), not through the daemon: this measures the
# reports, not ingest (bench/ingest.sh) or dispatch (bench/dispatch.sh).
set -euo pipefail
N=${1:-1000000}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/common.sh"
bin=$(aftercare_bin)
work=$(mktemp -d)
cleanup() {
  local pm; pm=$(head -1 "$work/pgdir/pg/postmaster.pid" 2>/dev/null || true)
  if [ -n "$pm" ]; then
    kill -INT "$pm" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pm" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/jobs"
cp -r "$root/message_templates" "$work/"
cat > "$work/jobs/ab.yaml" <<'YAML'
id: ab
trigger: {event: order.delivered, delay: 3d}
channels: [email]
dedupe: "{{event.data.order_id}}"
variants:
  - {name: a, template: review_request, weight: 50}
  - {name: b, template: review_reminder, weight: 50}
holdout: 10%
reminders: [{after: 4d, template: review_reminder}]
stop_when: {event: review.submitted, match: [order_id]}
YAML
cp "$root/jobs/nps-survey.yaml" "$work/jobs/"
cat > "$work/aftercare.yaml" <<'YAML'
store: {url: "sqlite://data/aftercare.db", sqlite_synchronous: normal}
jobs_dir: jobs
templates_dir: message_templates
defaults: {timezone: Asia/Shanghai, locale: zh-CN}
email: {from: "Example Shop <care@example.com>", transport: file, file: {dir: data/outbox}}
YAML
cfg=(--config "$work/aftercare.yaml")
# Opening the store migrates it.
"$bin" "${cfg[@]}" logs --limit 1 >/dev/null
secs() { python3 -c "import time; print(time.monotonic())"; }
t0=$(secs)
python3 - "$work/data/aftercare.db" "$N" <<'PY'
import random, sqlite3, sys
db, n = sys.argv[1], int(sys.argv[2])
random.seed(42)
con = sqlite3.connect(db)
con.execute("PRAGMA synchronous = OFF")
con.execute("PRAGMA journal_mode = MEMORY")
DAY = 86_400_000
start = 1_780_000_000_000 - 365 * DAY          # a year of history ending mid 2026
threads = n * 10 // 22                          # ~1.2 messages per thread (reminders), the rest NPS
nps = n - threads * 12 // 10
contacts = max(1, threads // 3)
con.executemany(
    "INSERT INTO contacts (id, email, email_key, locale, attributes, consent, created_at, updated_at) VALUES (?, ?, ?, ?, ?, '{}', 0, 0)",
    ((f"c-{i}", f"c{i}@example.com", f"c{i}@example.com", random.choice(["zh-CN", "en", None]),
      '{"tier": "%s"}' % random.choice(["gold", "silver", "bronze"])) for i in range(contacts)))
events, messages, answers = [], [], []
mid = 0
def flush():
    con.executemany("INSERT INTO events (id, type, contact_id, occurred_at, occurred_offset, received_at, order_id, data, digest) VALUES (?, ?, ?, ?, 28800, ?, ?, ?, '')", events)
    con.executemany("INSERT INTO messages (id, job_id, contact_id, event_id, step, dedupe_key, template, state, due_at, created_at, updated_at, sent_at, class, token, variant, channel, reason) VALUES (?, ?, ?, ?, ?, ?, 'review_request', ?, ?, 0, 0, ?, 'marketing', ?, ?, ?, ?)", messages)
    con.executemany("INSERT INTO answers (message_id, job_id, contact_id, scale, score, comment, channel, answered_at, updated_at) VALUES (?, 'nps-survey', ?, 'nps', ?, NULL, 'web', ?, ?)", answers)
    events.clear(); messages.clear(); answers.clear()
made = 0
for t in range(threads):
    c = f"c-{random.randrange(contacts)}"
    order = f"SO-{t}"
    delivered = start + random.randrange(360 * DAY)
    events.append((f"d-{t}", "order.delivered", c, delivered, delivered, order, '{"order_id": "%s"}' % order))
    due = delivered + 3 * DAY
    arm = random.random()
    if arm < 0.1:
        messages.append((f"m{mid:09d}", "ab", c, f"d-{t}", 0, order, "held_out", due, None, None, None, None, "held out"))
        mid += 1; made += 1
        sent1 = due
    else:
        variant = "a" if arm < 0.55 else "b"
        state = "sent" if random.random() < 0.95 else random.choice(["failed", "cancelled"])
        reason = "stopped: review.submitted received for order_id=x (event e)" if state == "cancelled" else None
        messages.append((f"m{mid:09d}", "ab", c, f"d-{t}", 0, order, state, due, due if state == "sent" else None, f"t{mid}", variant, "email", reason))
        mid += 1; made += 1
        sent1 = due
        if state == "sent" and random.random() < 0.8:
            due2 = due + 4 * DAY
            messages.append((f"m{mid:09d}", "ab", c, f"d-{t}", 1, order, "sent", due2, due2, f"t{mid}", variant, "email", None))
            mid += 1; made += 1
    r = random.random()
    if r < 0.15:    # a review: mostly within the window, some before the send, some late
        at = sent1 + random.choice([-DAY, DAY, 2 * DAY, 5 * DAY, 20 * DAY])
        events.append((f"r-{t}", "review.submitted", c, at, at, order, '{"order_id": "%s", "rating": 5}' % order))
    if len(messages) > 50_000:
        flush()
for k in range(max(0, n - made)):
    c = f"c-{random.randrange(contacts)}"
    due = start + random.randrange(360 * DAY)
    messages.append((f"m{mid:09d}", "nps-survey", c, None, 0, f"{c}:{k}", "sent", due, due, f"t{mid}", None, "email", None))
    if random.random() < 0.3:
        answers.append((f"m{mid:09d}", c, random.choice([0, 3, 5, 6, 7, 8, 9, 9, 10, 10]), due + DAY, due + DAY))
    mid += 1
    if len(messages) > 50_000:
        flush()
flush()
con.commit()
# No ANALYZE: nothing runs it on a store in use, so the plans measured are the ones it gets.
print(f"{mid} messages, {contacts} contacts")
PY
t1=$(secs)
echo "filled in $(python3 -c "print(round($t1 - $t0, 1))") s"
range=(--since 2025-06-01 --until 2026-06-01)
run() {
  local label=$1; shift
  local a b
  a=$(secs)
  "$bin" "${cfg[@]}" report "$@" "${range[@]}" --format json >/dev/null
  b=$(secs)
  printf '%-50s %6.2f s\n' "$label" "$(python3 -c "print($b - $a)")"
}
echo "SQLite:"
run "report conversions --job ab" conversions --job ab
run "report conversions --job ab --by variant" conversions --job ab --by variant
run "report conversions --job ab --by week" conversions --job ab --by week
run "report nps --job nps-survey --by week" nps --job nps-survey --by week
"$bin" "${cfg[@]}" report conversions --job ab "${range[@]}" --by variant | tail -n 8
echo "query plans:"
sqlite3 "$work/data/aftercare.db" "EXPLAIN QUERY PLAN SELECT m.state, COUNT(*) FROM messages m WHERE m.job_id = 'ab' AND m.due_at >= 0 AND m.due_at < 1 AND m.channel_plan IS NULL GROUP BY 1" | sed 's/^/  /'
sqlite3 "$work/data/aftercare.db" "EXPLAIN QUERY PLAN SELECT e.id, m.id FROM events e JOIN messages m ON m.contact_id = e.contact_id AND m.job_id = 'ab' WHERE e.type = 'review.submitted' AND e.occurred_at >= 0" | sed 's/^/  /'

# /metrics on the same store: a daemon scraped every second for SCRAPE_SECS (default 30),
# each scrape timed, and the daemon's CPU over the whole while (retention off: the purge
# would remove this history, which ends months ago). Before the counts were kept between
# scrapes, each scrape read every message and suppression.
scrape_secs=${SCRAPE_SECS:-30}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat "$work/aftercare.yaml" - > "$work/scrape.yaml" <<YAML
api: {listen: "127.0.0.1:$port"}
retention: {events: never, messages: never, attempts: never, content: never, replies: never}
YAML
"$bin" --config "$work/scrape.yaml" run >"$work/scrape.log" 2>&1 &
daemon=$!
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  kill -0 "$daemon" 2>/dev/null || { cat "$work/scrape.log"; exit 1; }
  sleep 0.1
done
python3 - "$daemon" "$port" "$scrape_secs" <<'PY'
import os, statistics, sys, time, urllib.request
pid, port, secs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
took, ages, c0, start = [], [], cpu(), time.monotonic()
while time.monotonic() - start < secs:
    t = time.monotonic()
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    took.append(time.monotonic() - t)
    ages += [float(l.split()[1]) for l in text.splitlines() if l.startswith("aftercare_store_counts_age_seconds ")]
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
wall, used = time.monotonic() - start, cpu() - c0
print(f"/metrics, {len(took)} scrapes a second apart: first {took[0]:.3f} s, then "
      f"min {min(took[1:]):.3f} / median {statistics.median(took[1:]):.3f} / max {max(took[1:]):.3f} s; "
      f"daemon CPU {used:.1f} s in {wall:.0f} s ({used / wall:.0%} of a core)"
      + (f"; counts served up to {max(ages):.1f} s old" if ages else ""))
PY
kill -TERM "$daemon"; wait "$daemon" || true

[ "${PG:-1}" = 0 ] && exit 0
pg_bin=${AFTERCARE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "${pg_bin:-}/initdb" ] || { echo "no PostgreSQL binaries: PostgreSQL skipped"; exit 0; }
mkdir -p "$work/pgdir"
chmod 755 "$work"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$work/pgdir"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pgdir/pg" -U postgres -A trust -E UTF8 --locale=C --no-instructions >/dev/null
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$pg_bin/postgres" -D "$work/pgdir/pg" -h 127.0.0.1 -p "$pg_port" -k "$work/pgdir" \
  -c shared_buffers=256MB -c work_mem=64MB >"$work/pg.log" 2>&1 &
for _ in $(seq 100); do "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U postgres && break; sleep 0.1; done
"$pg_bin/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE bench"
url="postgres://postgres@127.0.0.1:$pg_port/bench"
sed "s|sqlite://data/aftercare.db\", sqlite_synchronous: normal|$url\"|" "$work/aftercare.yaml" > "$work/pg.yaml"
t0=$(secs)
"$bin" store copy --from "sqlite://$work/data/aftercare.db" --to "$url" >/dev/null
"$pg_bin/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d bench -c "VACUUM ANALYZE"
t1=$(secs)
echo "copied to PostgreSQL in $(python3 -c "print(round($t1 - $t0, 1))") s"
cfg=(--config "$work/pg.yaml")
echo "PostgreSQL:"
run "report conversions --job ab" conversions --job ab
run "report conversions --job ab --by variant" conversions --job ab --by variant
run "report conversions --job ab --by week" conversions --job ab --by week
run "report nps --job nps-survey --by week" nps --job nps-survey --by week
