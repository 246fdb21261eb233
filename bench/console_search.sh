#!/usr/bin/env bash
# The console's search on a big store: N messages (default 1,000,000) for N/3 contacts, each
# with an email address and a phone number, one order event per thread. The daemon serves the
# console; an admin token signs in (curl, cookie jar); then each kind of key is searched the
# way an agent types it, and the time of the whole answer is printed: the search page with
# its redirect to the one customer found, and that customer's page (timeline included).
# Target: 200 ms per search on 1,000,000 messages.
#
#   bench/console_search.sh [N]      AFTERCARE_BIN=path measures a given build
#
# The store is filled with SQL (python3's sqlite3), not through the daemon: this measures
# the console, not ingest (bench/ingest.sh) or dispatch (bench/dispatch.sh). The query plans
# printed at the end must read indexes, never scan a table.
set -euo pipefail
N=${1:-1000000}
REPEAT=${REPEAT:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/common.sh"
bin=$(aftercare_bin)
work=$(mktemp -d)
daemon=""
trap '[ -n "$daemon" ] && kill "$daemon" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/jobs"
cp "$root/jobs/review-request.yaml" "$work/jobs/"
cp -r "$root/message_templates" "$work/"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/aftercare.yaml" <<YAML
store: {url: "sqlite://data/aftercare.db", sqlite_synchronous: normal}
jobs_dir: jobs
templates_dir: message_templates
defaults: {timezone: Asia/Shanghai, locale: zh-CN}
email: {from: "Example Shop <care@example.com>", transport: file, file: {dir: data/outbox}}
api:
  listen: 127.0.0.1:$port
  tokens: [{name: ops, scope: admin, token_env: BENCH_TOKEN}]
console: {enabled: true}
YAML
cfg=(--config "$work/aftercare.yaml")
"$bin" "${cfg[@]}" logs --limit 1 >/dev/null   # opening the store migrates it
secs() { python3 -c "import time; print(time.monotonic())"; }
t0=$(secs)
python3 - "$work/data/aftercare.db" "$N" <<'PY'
import random, sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
con = sqlite3.connect(db)
con.execute("PRAGMA synchronous = OFF")
con.execute("PRAGMA journal_mode = MEMORY")
DAY = 86_400_000
# A year of history ending a week ago: the daemon purges what is past retention (400 days
# by default) when it starts, so a fixed date would lose messages as the calendar moves.
start = int(time.time() * 1000) - 370 * DAY
contacts = max(1, n // 3)
con.executemany(
    "INSERT INTO contacts (id, name, email, email_key, phone, locale, attributes, consent, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'zh-CN', '{}', '{}', 0, 0)",
    ((f"c-{i}", f"顾客{i}", f"Customer{i}@Example.com", f"customer{i}@example.com", f"+86139{i:08d}") for i in range(contacts)))
events, messages, attempts = [], [], []
def flush():
    con.executemany("INSERT INTO events (id, type, contact_id, occurred_at, occurred_offset, received_at, order_id, data, digest) VALUES (?, 'order.delivered', ?, ?, 28800, ?, ?, ?, '')", events)
    con.executemany("INSERT INTO messages (id, job_id, contact_id, event_id, step, dedupe_key, template, state, due_at, created_at, updated_at, sent_at, class, channel, address, attempts) VALUES (?, 'review-request', ?, ?, ?, ?, 'review_request', ?, ?, ?, ?, ?, 'marketing', 'email', ?, 1)", messages)
    con.executemany("INSERT INTO attempts (message_id, attempt, at, channel, address, outcome, code, detail, node, duration_ms) VALUES (?, 1, ?, 'email', ?, ?, 250, '250 2.0.0 Ok', 'bench', 3)", attempts)
    events.clear(); messages.clear(); attempts.clear()
mid = 0
t = 0
while mid < n:
    i = random.randrange(contacts)
    c, email, order = f"c-{i}", f"customer{i}@example.com", f"SO-{t}"
    at = start + random.randrange(360 * DAY)
    events.append((f"d-{t}", c, at, at, order, '{"order_id": "%s"}' % order))
    for step in range(min(2, n - mid)):
        due = at + (3 + 4 * step) * DAY
        state = "sent" if random.random() < 0.95 else "failed"
        messages.append((f"m{mid:09d}", c, f"d-{t}", step, order, state, due, due, due, due if state == "sent" else None, email))
        attempts.append((f"m{mid:09d}", due, email, "sent" if state == "sent" else "permanent"))
        mid += 1
    t += 1
    if len(messages) > 50_000:
        flush()
flush()
con.commit()
# No ANALYZE: nothing runs it on a store in use, so the plans measured are the ones it gets.
con.commit()
print(f"{mid} messages, {t} orders, {contacts} contacts")
PY
t1=$(secs)
echo "filled in $(python3 -c "print(round($t1 - $t0, 1))") s"

BENCH_TOKEN=bench-admin-token-0123456789 "$bin" "${cfg[@]}" run >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port/console"
jar="$work/jar"
page=$(curl -s -c "$jar" "$base/signin")
csrf=$(printf '%s' "$page" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
curl -s -b "$jar" -c "$jar" -o /dev/null -w '' --data-urlencode "csrf=$csrf" --data-urlencode "name=" \
  --data-urlencode "password=bench-admin-token-0123456789" --data-urlencode "next=/console/search" "$base/signin"
grep -q aftercare_session "$jar" || { echo "could not sign in" >&2; exit 1; }

k=$(( (N / 3) / 2 ))
mid=$(printf 'm%09d' $(( N / 2 )))
worst=0
search() {
  local label=$1 q=$2 best=999 t
  for _ in $(seq "$REPEAT"); do
    # The search answers with a redirect to the one customer found; -L follows it, so this
    # is the agent's wait from Enter to the customer's page.
    t=$(curl -s -b "$jar" -L -o "$work/page" -w '%{time_total}' -G --data-urlencode "q=$q" "$base/search")
    best=$(python3 -c "print(min($best, $t))")
  done
  grep -q 'id="timeline"' "$work/page" || { echo "$label: no customer page for $q" >&2; exit 1; }
  worst=$(python3 -c "print(max($worst, $best))")
  printf '%-34s %-28s %6.1f ms\n' "$label" "$q" "$(python3 -c "print($best * 1000)")"
}
echo "search → customer page (best of $REPEAT):"
search "contact id" "c-$k"
search "email, other case" "CUSTOMER$k@example.com"
search "phone, E.164" "+86139$(printf '%08d' $k)"
search "phone, national with spaces" "139 $(printf '%04d %04d' $((k / 10000)) $((k % 10000)))"
search "phone, 0086 and dashes" "0086-139-$(printf '%04d-%04d' $((k / 10000)) $((k % 10000)))"
search "order id" "SO-$k"
search "message id" "$mid"
echo "slowest: $(python3 -c "print(round($worst * 1000, 1))") ms (target 200 ms) on $N messages"
echo "query plans:"
for q in "SELECT id FROM contacts WHERE email_key = 'x'" "SELECT id FROM contacts WHERE phone = 'x'" \
         "SELECT contact_id FROM events WHERE order_id = 'x'" "SELECT contact_id FROM messages WHERE id = 'x'" \
         "SELECT id FROM messages WHERE contact_id = 'x'"; do
  sqlite3 "$work/data/aftercare.db" "EXPLAIN QUERY PLAN $q" | sed "s|^|  $q: |"
done
