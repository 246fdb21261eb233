//! `kill -9` of `aftercare run` on SQLite, at random moments mid-dispatch, several times in a
//! row, then a clean finish: nothing is lost, and every message the mail server received
//! twice is explained in `aftercare logs` by a "lease expired … may have been sent" attempt.
//! (tests/nodes.rs does the same for several daemons on PostgreSQL.)
//!
//! The real binary, a real SQLite file (WAL, `synchronous=full`), and postfix's `smtp-sink`
//! dumping every message it accepts, so "received" is what a mail server really got.

mod common;

use chrono::{Duration as Span, SecondsFormat, Utc};
use common::{Backend, SmtpSink, Workspace};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const N: usize = 4_000;
const KILLS: usize = 5;

fn dump_count(sink: &SmtpSink) -> usize {
    std::fs::read_dir(sink.dump.path()).unwrap().count()
}

fn start(ws: &Workspace, round: usize) -> Child {
    let log = std::fs::File::create(ws.path(&format!("run-{round}.log"))).unwrap();
    ws.command(&["run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

#[test]
fn kill_dash_nine_mid_dispatch_loses_nothing_and_every_duplicate_is_explained() {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::on(Backend::Sqlite, Some(sink.port));
    ws.keep_jobs(&[]);
    ws.write(
        "jobs/review.yaml",
        "id: review-request\ntrigger: {event: order.delivered, delay: 3d}\ntemplate: review_request\n\
         channels: [email]\ndedupe: \"{{event.data.order_id}}\"\n",
    );
    // A short lease, so a killed daemon's claims come back within the test; enough tries
    // that a message held by several of the killed daemons still goes (each reap counts).
    ws.write_config(
        Some(sink.port),
        "dispatch:\n  batch_size: 64\n  concurrency: 8\n  lease: 2s\n  poll_interval: 1s\n  \
         retry: {max_attempts: 20, initial: 1m, max: 1h}\n",
    );
    let at =
        (Utc::now() - Span::days(3) - Span::minutes(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    ws.import(&common::deliveries(N, &at)).ok();

    let seed = fastrand::u64(..);
    eprintln!("seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut killed_mid_dispatch = 0;
    for round in 0..KILLS {
        let before = dump_count(&sink);
        let mut child = start(&ws, round);
        // Mid-dispatch: once this daemon has sent something, at a random moment after.
        common::wait_for("the daemon to send", Duration::from_secs(60), || {
            dump_count(&sink) > before || child.try_wait().unwrap().is_some()
        });
        std::thread::sleep(Duration::from_millis(rng.u64(0..400)));
        child.kill().unwrap(); // SIGKILL: no handler, no hand-back, no last commit
        child.wait().unwrap();
        let unique = sink.received().len();
        eprintln!(
            "round {round}: killed after {} deliveries ({unique} distinct of {N})",
            dump_count(&sink)
        );
        if unique < N {
            killed_mid_dispatch += 1;
        }
    }
    assert!(
        killed_mid_dispatch >= 3,
        "the daemons were mostly killed after the work was done: make N larger"
    );

    // A clean finish: the last daemon sends the rest (the killed ones' claims come back
    // through its reaper once their leases end) and stops on SIGTERM.
    let mut last = start(&ws, KILLS);
    common::wait_for("every message delivered", Duration::from_secs(180), || {
        sink.received().len() == N
    });
    // Delivered is not yet recorded: wait for the last completions to be committed.
    common::wait_for(
        "every message recorded as sent",
        Duration::from_secs(30),
        || {
            ws.logs_json(&[
                "--status",
                "scheduled,claimed,retrying",
                "--limit",
                "100000",
            ])
            .as_array()
            .unwrap()
            .is_empty()
        },
    );
    let ok = Command::new("kill")
        .args(["-TERM", &last.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = last.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the last daemon stops cleanly");
    for round in 0..=KILLS {
        let text = std::fs::read_to_string(ws.path(&format!("run-{round}.log"))).unwrap();
        assert!(!text.contains("panic"), "round {round}:\n{text}");
    }

    let log = ws.logs_json(&["--limit", "100000"]);
    let messages = log.as_array().unwrap();
    let by_id: HashMap<String, &Value> = messages
        .iter()
        .map(|m| (format!("{}@example.com", m["id"].as_str().unwrap()), m))
        .collect();
    // Lost: none. Every first send is in the outbox as sent, and the server has it.
    let first_sends: HashSet<String> = messages
        .iter()
        .filter(|m| m["step"] == 0)
        .map(|m| format!("{}@example.com", m["id"].as_str().unwrap()))
        .collect();
    assert_eq!(first_sends.len(), N);
    let seen = sink.received();
    let ids: HashSet<String> = seen.keys().cloned().collect();
    assert_eq!(ids, first_sends, "every message delivered, and only those");
    let unsent: Vec<_> = messages
        .iter()
        .filter(|m| m["step"] == 0 && m["state"] != "sent")
        .map(|m| format!("{} {}", m["id"], m["state"]))
        .collect();
    assert!(unsent.is_empty(), "{unsent:?}");

    // Duplicates: each explained by as many expired leases in the attempt log.
    let mut duplicates = 0;
    let mut reaped_total = 0;
    for (id, n) in &seen {
        let attempts = by_id[id]["attempt_log"].as_array().unwrap();
        let reaped = attempts
            .iter()
            .filter(|a| {
                a["outcome"] == "transient"
                    && a["detail"].as_str().is_some_and(|d| {
                        d.starts_with("lease expired on node") && d.contains("may have been sent")
                    })
            })
            .count();
        reaped_total += reaped;
        if *n > 1 {
            duplicates += n - 1;
            assert!(
                reaped >= n - 1,
                "{id} was received {n} times with {reaped} expired lease(s) in its log: {attempts:#?}"
            );
        }
        assert_eq!(
            attempts.last().unwrap()["outcome"],
            "sent",
            "{id}: {attempts:#?}"
        );
    }
    eprintln!(
        "{KILLS} kills ({killed_mid_dispatch} mid-dispatch): {reaped_total} claims reaped, {duplicates} duplicate deliveries, all explained"
    );
    assert!(
        reaped_total > 0,
        "the daemons were killed holding claims: some must have been reaped"
    );
}
