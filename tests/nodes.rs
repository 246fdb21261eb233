//! Several daemons on one PostgreSQL: the real binary (`aftercare run`, not `--once`), a real
//! PostgreSQL server started by the harness, and one real SMTP server (postfix's
//! `smtp-sink`) that dumps every message it accepts into a file, so "no message twice" is
//! checked on what a mail server actually received, by Message-ID.
//!
//! These are the promises for scaling out: every message goes out, none twice while
//! the nodes live; a node killed with `kill -9` loses nothing, and what it may have sent
//! before dying comes out again at most once per message it held, each such message marked
//! in the log ("lease expired ... may have been sent"); a heartbeat keeps a slow batch
//! from being taken by another node; a recurring occurrence and a birthday scan plan their
//! messages once however many daemons tick.
//!
//! The tests take turns (one lock): each runs several daemons on a 2-core machine, and their
//! leases are short, so they should not also compete with each other for the CPU.

mod common;

use chrono::{Duration as Span, SecondsFormat, Timelike, Utc};
use common::{Backend, SmtpSink, Workspace, pg};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A PostgreSQL workspace with only the jobs a test names (written by the test).
fn workspace(sink: &SmtpSink) -> Workspace {
    let ws = Workspace::on(Backend::Postgres, Some(sink.port));
    ws.keep_jobs(&[]);
    ws
}

/// Daemons of one test; killed (SIGKILL) if the test fails half-way.
struct Nodes<'a> {
    ws: &'a Workspace,
    port: u16,
    dispatch: String,
    running: Vec<(String, Child)>,
}

impl<'a> Nodes<'a> {
    fn new(ws: &'a Workspace, sink: &SmtpSink, dispatch: &str) -> Nodes<'a> {
        Nodes {
            ws,
            port: sink.port,
            dispatch: dispatch.to_string(),
            running: Vec::new(),
        }
    }

    /// `aftercare run` as node `name`, with its own config file (its `node_id`) and its log
    /// in `<name>.log`.
    fn start(&mut self, name: &str) {
        let config = format!(
            "store: {{url: \"{url}\"}}\njobs_dir: jobs\ntemplates_dir: message_templates\n\
             defaults: {{timezone: Asia/Shanghai, locale: zh-CN}}\n\
             email:\n  from: \"Example Shop <care@example.com>\"\n  transport: smtp\n  \
             smtp: {{host: 127.0.0.1, port: {port}, tls: none, pool_size: 8, timeout: 10s}}\n\
             dispatch:\n{dispatch}\
             policy:\n  consent: opt_out\n  caps: []\n  send_window: {{start: \"00:00\", end: \"24:00\"}}\n\
             node_id: {name}\n",
            url = self.ws.store_url,
            port = self.port,
            dispatch = self.dispatch,
        );
        self.ws.write(&format!("{name}.yaml"), &config);
        let log = std::fs::File::create(self.ws.path(&format!("{name}.log"))).unwrap();
        let child = Command::new(common::BIN)
            .current_dir(self.ws.dir.path())
            .args(["--config", &format!("{name}.yaml"), "run"])
            .env_remove("AFTERCARE_CONFIG")
            .env("AFTERCARE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start aftercare run");
        self.running.push((name.to_string(), child));
    }

    fn child(&mut self, name: &str) -> &mut Child {
        &mut self
            .running
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no node {name}"))
            .1
    }

    /// `kill -9`: no signal handler, no hand-back, no last commit.
    fn kill(&mut self, name: &str) {
        let c = self.child(name);
        c.kill().unwrap();
        c.wait().unwrap();
        self.running.retain(|(n, _)| n != name);
    }

    /// SIGTERM every node; each must exit 0 within 30 s.
    fn stop_all(&mut self) {
        for (_, c) in &self.running {
            let ok = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, c) in &mut self.running {
            loop {
                if let Some(status) = c.try_wait().unwrap() {
                    let log = std::fs::read_to_string(self.ws.path(&format!("{name}.log")))
                        .unwrap_or_default();
                    assert_eq!(status.code(), Some(0), "{name} exited {status}:\n{log}");
                    break;
                }
                assert!(Instant::now() < deadline, "{name} did not stop on SIGTERM");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.running.clear();
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.ws.path(&format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Nodes<'_> {
    fn drop(&mut self) {
        for (_, c) in &mut self.running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn dump_count(sink: &SmtpSink) -> usize {
    std::fs::read_dir(sink.dump.path()).unwrap().count()
}

/// `store check` on the shared store: every reference whole, the queue the triggers keep
/// (`message_queue`) equal to `messages`.
fn store_check_finds_nothing(ws: &Workspace) {
    let r = ws.run(&["store", "check"]);
    assert!(
        r.code == 0 && r.stdout.contains(", 0 broken"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}

/// A sink that takes a second per message, and a store with `n` review requests due.
fn slow_sink_and_due(n: usize) -> (SmtpSink, Workspace) {
    let sink = SmtpSink::start(&["-w", "1"]);
    let ws = workspace(&sink);
    review_job(&ws);
    import_due(&ws, n);
    (sink, ws)
}

/// Wait until `n` messages are sent, stop the nodes, and check the sink got each once. A
/// failure shows the nodes' logs: a node the machine stalled past its lease says so there
/// (a late heartbeat), which tells a stall from a fault of the leases.
fn all_sent_once(ws: &Workspace, sink: &SmtpSink, nodes: &mut Nodes, n: usize) {
    common::wait_for("every message sent", Duration::from_secs(60), || {
        count(ws, "SELECT COUNT(*) FROM messages WHERE state = 'sent'") == n as i64
    });
    let names: Vec<String> = nodes.running.iter().map(|(name, _)| name.clone()).collect();
    nodes.stop_all();
    let seen = sink.received();
    let logs = || {
        names
            .iter()
            .map(|name| format!("--- {name}.log\n{}", nodes.log(name)))
            .collect::<String>()
    };
    assert_eq!(seen.len(), n, "{}", logs());
    assert!(seen.values().all(|n| *n == 1), "{seen:?}\n{}", logs());
}

/// Batches of 6 sent 2 at a time to a sink that takes a second each: 3 s of work under a
/// 2 s lease, which only renewals keep.
const SLOW_BATCHES: &str = "  batch_size: 6\n  concurrency: 2\n  lease: 2s\n  retry: {max_attempts: 3, initial: 1m, max: 1h}\n";

fn count(ws: &Workspace, sql: &str) -> i64 {
    pg::psql(&ws.store_url, sql)
        .parse()
        .unwrap_or_else(|_| panic!("a count from `{sql}`"))
}

fn column(ws: &Workspace, sql: &str) -> Vec<String> {
    pg::psql(&ws.store_url, sql)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// `n` order deliveries whose review request is due now.
fn import_due(ws: &Workspace, n: usize) {
    let at =
        (Utc::now() - Span::days(3) - Span::minutes(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let events = common::deliveries(n, &at);
    // `events import` is one process per file; four files at once share the two cores with
    // PostgreSQL better than one file does (each import waits on its round trips).
    let started = Instant::now();
    let parts = 4;
    let imports: Vec<Child> = events
        .chunks(n.div_ceil(parts).max(1))
        .enumerate()
        .map(|(k, chunk)| {
            let file = format!("events-{k}.jsonl");
            ws.write(&file, &(chunk.join("\n") + "\n"));
            ws.command(&["events", "import", &file])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in imports {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "events import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "imported {n} events on PostgreSQL in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn review_job(ws: &Workspace) {
    ws.write(
        "jobs/review.yaml",
        "id: review-request\ntrigger: {event: order.delivered, delay: 3d}\ntemplate: review_request\n\
         channels: [email]\ndedupe: \"{{event.data.order_id}}\"\n",
    );
}

/// Ids of the first sends (step 0), which the Message-IDs name: `<id@example.com>`.
fn first_send_ids(ws: &Workspace) -> HashSet<String> {
    column(
        ws,
        "SELECT id || '@example.com' FROM messages WHERE step = 0",
    )
    .into_iter()
    .collect()
}

#[test]
fn two_daemons_deliver_twenty_thousand_messages_once_each() {
    let _turn = serial();
    const N: usize = 20_000;
    let sink = SmtpSink::start(&[]);
    let ws = workspace(&sink);
    review_job(&ws);
    import_due(&ws, N);
    // No node dies here, so the lease only has to outlast this shared 2-core machine's
    // stalls: with 5 s, two CI runs in about ten saw a live node's claims expire (a whole
    // node silent for 7-12 s, no statement slower than sqlx's 1 s warning; its own reaper or
    // the other node's took them back, nothing was delivered twice). The heartbeat itself
    // is held to a 2 s lease in `heartbeats_keep_a_slow_batch_from_being_taken_by_another_node`.
    let mut nodes = Nodes::new(
        &ws,
        &sink,
        "  batch_size: 128\n  concurrency: 16\n  lease: 20s\n  retry: {max_attempts: 3, initial: 1m, max: 1h}\n",
    );
    let started = Instant::now();
    nodes.start("node-a");
    nodes.start("node-b");
    common::wait_for("every message sent", Duration::from_secs(240), || {
        count(&ws, "SELECT COUNT(*) FROM messages WHERE state = 'sent'") == N as i64
    });
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "two daemons sent {N} in {secs:.1} s ({:.0} msg/s)",
        N as f64 / secs
    );
    nodes.stop_all();

    let seen = sink.received();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "received more than once: {twice:?}");
    let ids: HashSet<String> = seen.into_keys().collect();
    assert_eq!(ids.len(), N, "every message delivered");
    assert_eq!(
        ids,
        first_send_ids(&ws),
        "and they are the outbox's messages"
    );
    // Both nodes did their share, and no lease expired under a live node.
    let by_node = column(
        &ws,
        "SELECT node || ' ' || COUNT(*) FROM attempts GROUP BY node ORDER BY node",
    );
    eprintln!("attempts by node: {by_node:?}");
    assert_eq!(by_node.len(), 2, "{by_node:?}");
    let failed = column(
        &ws,
        "SELECT node || ': ' || outcome || ' ' || COALESCE(detail, '') FROM attempts WHERE outcome <> 'sent' LIMIT 20",
    );
    assert!(
        failed.is_empty(),
        "{failed:#?}\n{}{}",
        nodes.log("node-a"),
        nodes.log("node-b")
    );
    assert_eq!(
        count(&ws, "SELECT COUNT(*) FROM attempts"),
        N as i64,
        "one attempt per message"
    );
    // The queue the triggers keep followed every claim and completion of both nodes.
    assert_eq!(
        count(&ws, "SELECT COUNT(*) FROM message_queue"),
        0,
        "every message sent leaves the queue"
    );
    store_check_finds_nothing(&ws);
}

#[test]
fn a_killed_daemons_messages_go_out_once_its_lease_expires() {
    let _turn = serial();
    const N: usize = 6_000;
    const BATCH: usize = 64;
    const CONCURRENCY: usize = 8;
    let sink = SmtpSink::start(&[]);
    let ws = workspace(&sink);
    review_job(&ws);
    import_due(&ws, N);
    let mut nodes = Nodes::new(
        &ws,
        &sink,
        &format!(
            "  batch_size: {BATCH}\n  concurrency: {CONCURRENCY}\n  lease: 5s\n  retry: {{max_attempts: 3, initial: 1m, max: 1h}}\n"
        ),
    );
    nodes.start("node-a");
    nodes.start("node-b");
    // Killed while it holds claims: between two batches it holds none, and the kill would
    // show nothing (seen once in a full run: reaped nothing, held nothing).
    common::wait_for(
        "a quarter of the mail, node-a holding claims",
        Duration::from_secs(120),
        || {
            dump_count(&sink) >= N / 4
                && count(
                    &ws,
                    "SELECT COUNT(*) FROM messages WHERE state = 'claimed' AND locked_by = 'node-a'",
                ) > 0
        },
    );
    nodes.kill("node-a");
    let killed_at = Instant::now();
    // A commit node-a sent just before dying may still be landing.
    std::thread::sleep(Duration::from_millis(500));
    let held_by_a = count(
        &ws,
        "SELECT COUNT(*) FROM messages WHERE state = 'claimed' AND locked_by = 'node-a'",
    );
    eprintln!("node-a killed holding {held_by_a} claims");
    common::wait_for("every message sent", Duration::from_secs(120), || {
        count(&ws, "SELECT COUNT(*) FROM messages WHERE state = 'sent'") == N as i64
    });
    eprintln!(
        "the rest went out {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    nodes.stop_all();

    // Lost: none.
    let seen = sink.received();
    let ids: HashSet<String> = seen.keys().cloned().collect();
    assert_eq!(ids, first_send_ids(&ws), "every message delivered");
    assert_eq!(
        count(&ws, "SELECT COUNT(*) FROM messages WHERE state <> 'sent'"),
        0
    );

    // Duplicates: only messages node-a held when it died, each marked in the log.
    let reaped: HashSet<String> = column(
        &ws,
        "SELECT message_id || '@example.com' FROM attempts WHERE detail LIKE 'lease expired on node node-a %'",
    )
    .into_iter()
    .collect();
    assert_eq!(
        reaped.len() as i64,
        held_by_a,
        "every claim node-a held came back through the reaper"
    );
    assert!(
        !reaped.is_empty(),
        "node-a was killed mid-run: it held claims"
    );
    let duplicates: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    let extra: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "reaped {} of node-a's claims; {} duplicate deliveries",
        reaped.len(),
        extra
    );
    assert_eq!(extra, duplicates.len(), "nothing more than twice");
    for d in &duplicates {
        assert!(
            reaped.contains(*d),
            "{d} was delivered twice without a lease-expired attempt"
        );
    }
    // What node-a may have handed to the server without committing it: its in-flight sends
    // and the outcomes waiting for the recorder (one channel of 2 × concurrency + batch,
    // plus the group being committed) — never more than it held.
    assert!(
        extra <= 2 * BATCH + 3 * CONCURRENCY,
        "{extra} duplicates: more than node-a could have had in flight"
    );
    // Support sees it: `aftercare logs` shows the expired lease on each duplicate.
    let log = ws.logs_json(&["--job", "review-request", "--limit", "100000"]);
    let by_id: HashMap<String, &serde_json::Value> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (format!("{}@example.com", m["id"].as_str().unwrap()), m))
        .collect();
    for d in &duplicates {
        let attempts = by_id[*d]["attempt_log"].as_array().unwrap();
        let first = &attempts[0];
        assert_eq!(first["outcome"], "transient", "{d}: {attempts:?}");
        let detail = first["detail"].as_str().unwrap();
        assert!(
            detail.contains("lease expired on node node-a")
                && detail.contains("may have been sent"),
            "{detail}"
        );
        assert_eq!(attempts.last().unwrap()["outcome"], "sent");
        assert_eq!(attempts.last().unwrap()["node"], "node-b");
    }
    // The reaper's returns went through the queue's triggers too.
    store_check_finds_nothing(&ws);
}

#[test]
fn heartbeats_keep_a_slow_batch_from_being_taken_by_another_node() {
    let _turn = serial();
    // The sink takes a second per message; a node's batch of 6 at 2 at once takes 3 s, longer
    // than the 2 s lease: without renewals the other node would reap and resend it.
    let (sink, ws) = slow_sink_and_due(24);
    let mut nodes = Nodes::new(&ws, &sink, SLOW_BATCHES);
    nodes.start("node-a");
    nodes.start("node-b");
    all_sent_once(&ws, &sink, &mut nodes, 24);
    assert_eq!(
        count(&ws, "SELECT COUNT(*) FROM attempts WHERE outcome <> 'sent'"),
        0,
        "a lease expired under a live node:\n{}{}",
        nodes.log("node-a"),
        nodes.log("node-b")
    );
}

/// A node that stalls past its leases (SIGSTOP here: a paused VM, a suspended laptop) and
/// wakes up keeps its own claims: its reaper leaves them to its heartbeat, which renews
/// them, so no message gets a "lease expired, may have been sent" try and none goes twice.
/// (Before, whichever of the node's reaper and heartbeat ran first on waking decided.)
#[test]
fn a_node_that_stalls_past_its_leases_keeps_its_own_claims() {
    let _turn = serial();
    let (sink, ws) = slow_sink_and_due(12);
    let mut nodes = Nodes::new(&ws, &sink, SLOW_BATCHES);
    nodes.start("node-a");
    // Stalled as soon as a claim shows, wherever the node is then (sending, or claiming its
    // next batch): a claim is spared by its node's reaper from before it is made
    // (`Held::claiming` in src/dispatch/lease.rs). When it was spared only once the claim
    // returned, a stall there had the node's own reaper return the rows on waking, each
    // logged as "may have been sent" (CI hit it once).
    common::wait_for("a claim", Duration::from_secs(30), || {
        count(&ws, "SELECT COUNT(*) FROM messages WHERE state = 'claimed'") > 0
    });
    let pid = nodes.child("node-a").id().to_string();
    let signal = |s: &str| {
        let ok = Command::new("kill").args([s, &pid]).status().unwrap();
        assert!(ok.success(), "kill {s}");
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(5));
    signal("-CONT");
    all_sent_once(&ws, &sink, &mut nodes, 12);
    let tries = column(
        &ws,
        "SELECT outcome || ': ' || COALESCE(detail, '') FROM attempts WHERE outcome <> 'sent'",
    );
    assert!(tries.is_empty(), "{tries:#?}\n{}", nodes.log("node-a"));
    store_check_finds_nothing(&ws);
    // And the stall is in the node's log, for the operator who wonders why.
    let log = nodes.log("node-a");
    assert!(
        log.contains("heartbeat") && log.contains("this process was stalled"),
        "{log}"
    );
}

#[test]
fn a_survey_occurrence_and_a_birthday_scan_plan_once_with_three_daemons() {
    let _turn = serial();
    let sink = SmtpSink::start(&[]);
    let ws = workspace(&sink);
    // An occurrence two minutes ago (within catch-up reach, the next one a day away), and
    // birthdays today at a time five minutes ago, in UTC.
    let occurrence = Utc::now() - Span::minutes(2);
    let greet = Utc::now() - Span::minutes(5);
    ws.write(
        "jobs/survey.yaml",
        &format!(
            "id: pulse-survey\ntrigger: {{cron: \"{} {} * * *\", timezone: UTC, missed: run_once}}\n\
             template: nps_survey\nchannels: [email]\nsurvey: nps\n",
            occurrence.minute(),
            occurrence.hour()
        ),
    );
    ws.write(
        "jobs/birthday.yaml",
        &format!(
            "id: birthday-now\ntrigger: {{anniversary: contact.birthday, at: \"{}\"}}\n\
             template: birthday_greeting\nchannels: [email]\n",
            greet.format("%H:%M")
        ),
    );
    let today = greet.format("1992-%m-%d").to_string();
    let contacts: Vec<String> = (0..40)
        .map(|i| {
            let birthday = if i < 25 { today.as_str() } else { "1990-01-01" };
            common::birthday(
                &format!("u-{i}"),
                &format!("c-{i}"),
                "Ann",
                &format!("c{i}@example.com"),
                "UTC",
                "en",
                birthday,
            )
        })
        .collect();
    ws.import(&contacts).ok();
    if greet.format("%m-%d").to_string() == "01-01" {
        // The others' birthday is today too: everyone is greeted.
        eprintln!("January 1st: all 40 contacts have a birthday today");
    }
    let birthdays: i64 = if greet.format("%m-%d").to_string() == "01-01" {
        40
    } else {
        25
    };

    let mut nodes = Nodes::new(
        &ws,
        &sink,
        "  lease: 5s\n  retry: {max_attempts: 3, initial: 1m, max: 1h}\n",
    );
    // Started together: each ticks once at start, racing the others for the occurrence.
    for n in ["node-a", "node-b", "node-c"] {
        nodes.start(n);
    }
    let want = 40 + birthdays;
    common::wait_for(
        "the survey and the greetings",
        Duration::from_secs(60),
        || count(&ws, "SELECT COUNT(*) FROM messages WHERE state = 'sent'") >= want,
    );
    // Late duplicates would come now: give the nodes a moment more.
    std::thread::sleep(Duration::from_secs(3));
    nodes.stop_all();

    assert_eq!(
        count(
            &ws,
            "SELECT COUNT(*) FROM messages WHERE job_id = 'pulse-survey'"
        ),
        40,
        "one survey message per contact for the occurrence"
    );
    assert_eq!(
        count(
            &ws,
            "SELECT COUNT(*) FROM recurring WHERE job_id = 'pulse-survey'"
        ),
        1
    );
    assert_eq!(
        count(
            &ws,
            "SELECT COUNT(*) FROM messages WHERE job_id = 'birthday-now'"
        ),
        birthdays,
        "one greeting per birthday"
    );
    let seen = sink.received();
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert_eq!(seen.len() as i64, want);
    let mut per_contact: HashMap<String, usize> = HashMap::new();
    for to in column(&ws, "SELECT address FROM messages WHERE state = 'sent'") {
        *per_contact.entry(to).or_default() += 1;
    }
    for i in 0..40 {
        let expected = if (i as i64) < birthdays { 2 } else { 1 };
        assert_eq!(
            per_contact.get(&format!("c{i}@example.com")).copied(),
            Some(expected),
            "c{i}"
        );
    }
    // Three nodes' occurrence inserts and greeting upserts (INSERT ... ON CONFLICT DO
    // UPDATE fires the queue's update trigger) left the queue equal to the messages.
    store_check_finds_nothing(&ws);
}
