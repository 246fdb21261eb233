#!/usr/bin/env bash
# How far `events import` is from the floor of the schema it writes. A store of BASE
# deliveries is imported first (not timed); then N more, timed; then the very rows that
# import wrote (events, contacts, messages) are inserted again into the store as it was
# before, by a plain loop: python3's sqlite3 (C underneath), prepared statements, the same
# transactions of 1,024 events, synchronous=full and the 16 MiB page cache the import's
# writer keeps. Once with the schema's indexes, once with only the tables' keys. Each
# round starts again from a copy of the same store.
#
#   bench/import_floor.sh [BASE] [N]      defaults: 200,000 then 100,000
#
# Env: AFTERCARE_BIN (a built binary to measure instead of building this tree), ROUNDS (3).
# Issue 16's goal 2 asks 50,000 events/s of the import, citing ~100,000 rows/s for a plain
# SQLite loop; an event is three rows (event, contact, message) and their index entries.
# The loop runs on the SQLite the binary bundles (libsqlite3-sys's amalgamation, built once
# into target/bench-sqlite with the flags of .cargo/config.toml), not Debian's older one:
# 3.40 took 26,000 events/s where 3.51 took 30,000.
set -euo pipefail
BASE=${1:-200000}
N=${2:-100000}
ROUNDS=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/common.sh"
bin=$(aftercare_bin)
# The bundled SQLite as a shared library for python3's sqlite3.
ver=$(awk '/^name = "libsqlite3-sys"/ { getline; gsub(/[^0-9.]/, ""); print }' "$root/Cargo.lock")
amalgamation=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"libsqlite3-sys-$ver"/sqlite3 | head -1)
lib=${CARGO_TARGET_DIR:-$root/target}/bench-sqlite
if [ ! -e "$lib/libsqlite3.so.0" ]; then
  mkdir -p "$lib"
  cc -O2 -shared -fPIC -DSQLITE_THREADSAFE=1 -DSQLITE_DEFAULT_MEMSTATUS=0 \
    -o "$lib/libsqlite3.so.0" "$amalgamation/sqlite3.c" -lpthread -lm
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/jobs"
cp "$root/jobs/review-request.yaml" "$work/jobs/"
cp -r "$root/message_templates" "$work/"
cat > "$work/aftercare.yaml" <<YAML
store: {url: "sqlite://data/aftercare.db", sqlite_synchronous: full}
jobs_dir: jobs
templates_dir: message_templates
defaults: {timezone: Asia/Shanghai, locale: zh-CN}
email: {from: "Example Shop <care@example.com>", transport: file, file: {dir: data/outbox}}
YAML
cd "$work"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
deliveries() {
  awk -v a="$1" -v b="$2" -v at="$now" 'BEGIN { for (i = a; i <= b; i++) printf "{\"id\":\"evt-%d\",\"type\":\"order.delivered\",\"occurred_at\":\"%s\",\"contact\":{\"id\":\"c-%d\",\"email\":\"customer%d@example.com\",\"locale\":\"zh-CN\"},\"data\":{\"order_id\":\"SO-%d\"}}\n", i, at, i, i, i }'
}
deliveries 1 "$BASE" > base.jsonl
deliveries $((BASE + 1)) $((BASE + N)) > measured.jsonl
"$bin" --config aftercare.yaml events import base.jsonl >/dev/null
mv data before
secs() { python3 -c "import time; print(time.monotonic())"; }
fresh() { rm -rf data && cp -a before data; }

# The plain loop: the rows the measured import wrote (read from `after` before the clock
# starts), inserted into `data`; prints events a second.
loop() {
  LD_LIBRARY_PATH=$lib python3 - after/aftercare.db data/aftercare.db "$BASE" "$N" <<'PY'
import sqlite3, sys, time
src, dst, base, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = sqlite3.connect(src)
ids = [f"evt-{i}" for i in range(base + 1, base + n + 1)]
def rows(table, key, keys):
    cols = [r[1] for r in s.execute(f"PRAGMA table_info({table})")]
    out = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        q = f"SELECT * FROM {table} WHERE {key} IN ({','.join('?' * len(chunk))})"
        for r in s.execute(q, chunk):
            out.setdefault(r[cols.index(key)], []).append(r)
    return cols, out
ecols, ev = rows("events", "id", ids)
assert len(ev) == n, f"{len(ev)} of {n} events in the imported store"
contact = {i: ev[i][0][ecols.index("contact_id")] for i in ids}
ccols, co = rows("contacts", "id", list(set(contact.values())))
mcols, me = rows("messages", "event_id", ids)
assert sum(map(len, me.values())) == n, "one message an event"
d = sqlite3.connect(dst, isolation_level=None)
d.execute("PRAGMA synchronous=full")
d.execute("PRAGMA cache_size=-16384")
def insert(table, cols, rs):
    d.executemany(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", rs)
t0 = time.monotonic()
for b in range(0, n, 1024):
    batch = ids[b:b + 1024]
    d.execute("BEGIN IMMEDIATE")
    insert("events", ecols, [ev[i][0] for i in batch])
    insert("contacts", ccols, [co[contact[i]][0] for i in batch])
    d.executemany("DELETE FROM contact_dates WHERE contact_id = ?", [(contact[i],) for i in batch])
    insert("messages", mcols, [m for i in batch for m in me[i]])
    d.execute("COMMIT")
print(round(n / (time.monotonic() - t0)))
PY
}

echo "store of $BASE, then $N events measured, $ROUNDS rounds (events/s; the loop on SQLite $(LD_LIBRARY_PATH=$lib python3 -c 'import sqlite3; print(sqlite3.sqlite_version)')):"
printf '%-6s %8s %9s %14s %11s %12s %6s\n' round import "of 50,000" "loop, indexed" "loop, bare" "import/loop" steal
for r in $(seq "$ROUNDS"); do
  mark=$(host_mark)
  fresh
  t0=$(secs)
  "$bin" --config aftercare.yaml events import measured.jsonl >/dev/null
  t1=$(secs)
  rm -rf after && mv data after
  import=$(python3 -c "print(round($N / ($t1 - $t0)))")
  fresh
  indexed=$(loop)
  fresh
  # Only the tables' keys: every secondary index of the four tables an import writes.
  sqlite3 data/aftercare.db "SELECT 'DROP INDEX ' || name || ';' FROM sqlite_master WHERE type = 'index' \
    AND sql IS NOT NULL AND tbl_name IN ('events', 'contacts', 'messages', 'contact_dates')" | sqlite3 data/aftercare.db
  bare=$(loop)
  printf '%-6s %8s %9s %14s %11s %12s %6s\n' "$r" "$import" "$(python3 -c "print(f'{$import / 50000:.2f}')")" \
    "$indexed" "$bare" "$(python3 -c "print(f'{$import / $indexed:.2f}')")" "$(host_steal "$mark")"
done
echo "of 50,000: issue 16's goal 2; import/loop: the import against a plain loop writing its rows;"
echo "steal: the CPU the host took for its other guests during the round (see bench/common.sh)"
