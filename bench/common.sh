# Sourced by the benches (after they set `root`, the checkout): what each one starts with.

# The binary to measure: AFTERCARE_BIN, to compare two builds without rebuilding either, or
# else this tree's release build (built now; CARGO_TARGET_DIR is honoured).
aftercare_bin() {
  if [ -n "${AFTERCARE_BIN:-}" ]; then
    echo "$AFTERCARE_BIN"
  else
    (cd "$root" && cargo build --release --quiet) >&2 || return 1
    echo "${CARGO_TARGET_DIR:-$root/target}/release/aftercare"
  fi
}

# postfix's smtp-sink on a free loopback port (as nobody when root), ready to take mail: sets
# `port` and `sink_pid` (the caller's trap kills it).
start_sink() {
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local user=()
  [ "$(id -u)" = 0 ] && user=(-u nobody)
  smtp-sink "${user[@]}" -m 1024 127.0.0.1:$port 1024 >/dev/null 2>&1 &
  sink_pid=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
}

# A workspace in DIR whose mail goes to files (for what sends nothing: a forecast, a scan):
# its config, the templates, jobs/ to fill.
file_workspace() {
  mkdir -p "$1/jobs"
  cp -r "$root/message_templates" "$1/"
  cat > "$1/aftercare.yaml" <<YAML
store: {url: "sqlite://data/aftercare.db", sqlite_synchronous: normal}
jobs_dir: jobs
templates_dir: message_templates
defaults: {timezone: Asia/Shanghai, locale: zh-CN}
email: {from: "Example Shop <care@example.com>", transport: file, file: {dir: data/outbox}}
policy: {consent: opt_out, caps: []}
YAML
}

# The year forecast's job in DIR: `*/15 9-17 * * MON-FRI` in Shanghai for the contacts of
# team ops, and N of them in DIR/events.jsonl.
year_job() {
  cat > "$1/jobs/business-hours.yaml" <<YAML
id: business-hours
trigger: {cron: "*/15 9-17 * * MON-FRI", timezone: Asia/Shanghai}
audience: {where: {contact.attributes.team: ops}}
template: nps_survey
survey: nps
channels: [email]
YAML
  for i in $(seq 1 "$2"); do
    printf '{"id":"u-%d","type":"contact.updated","occurred_at":"2027-01-01T00:00:00Z","contact":{"id":"c-%d","email":"c%d@example.com","attributes":{"team":"ops"}}}\n' "$i" "$i" "$i"
  done > "$1/events.jsonl"
}

# A workspace in DIR that sends to the sink on `port` (start_sink): the review request job,
# the templates, its config (SQLite synchronous SYNC, SESSIONS SMTP connections, claims of
# BATCH, CONCURRENCY sends at once, the SMTP timeout TIMEOUT) and N deliveries in
# DIR/events.jsonl, each planning one review request.
sink_workspace() {
  local dir=$1 n=$2 sync=$3 sessions=$4 batch=$5 concurrency=$6 timeout=$7
  mkdir -p "$dir/jobs"
  cp "$root/jobs/review-request.yaml" "$dir/jobs/"
  cp -r "$root/message_templates" "$dir/"
  cat > "$dir/aftercare.yaml" <<YAML
store: {url: "sqlite://data/aftercare.db", sqlite_synchronous: $sync}
jobs_dir: jobs
templates_dir: message_templates
defaults: {timezone: Asia/Shanghai, locale: zh-CN}
email:
  from: "Example Shop <care@example.com>"
  transport: smtp
  smtp: {host: 127.0.0.1, port: $port, tls: none, pool_size: $sessions, timeout: $timeout}
dispatch: {batch_size: $batch, concurrency: $concurrency, expire_after: never}
policy: {consent: opt_out, caps: [], send_window: {start: "00:00", end: "24:00"}}
YAML
  awk -v n="$n" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"id\":\"evt-%d\",\"type\":\"order.delivered\",\"occurred_at\":\"2026-11-20T10:00:00+08:00\",\"contact\":{\"id\":\"c-%d\",\"name\":\"王芳\",\"email\":\"customer%d@example.com\",\"locale\":\"zh-CN\",\"timezone\":\"Asia/Shanghai\"},\"data\":{\"order_id\":\"SO-%d\",\"review_url\":\"https://shop.example.com/review/SO-%d\"}}\n", i, i, i, i, i }' > "$dir/events.jsonl"
}

# The share of this machine's CPU its host gave to its other guests (steal, from /proc/stat)
# between `mark=$(host_mark)` and `host_steal "$mark"`. On this shared virtual machine it
# went from 0 to above half within an hour, and a run under it is slower in every figure.
# Low steal does not make an hour quiet (the same build's import took 25 µs of CPU an event
# in one hour and 41 in another at 1% steal): compare builds by alternating them
# (AFTERCARE_BIN), and set runs with much steal aside.
host_mark() { awk '/^cpu / { print $2+$3+$4+$5+$6+$7+$8+$9, $9; exit }' /proc/stat; }
host_steal() {
  local now
  now=$(host_mark)
  awk -v a="$1" -v b="$now" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    t = y[1] - x[1]; printf "%.0f%%", (t > 0 ? 100 * (y[2] - x[2]) / t : 0) }'
}
