//! `aftercare run` as a long-running process: it sends what falls due on the real clock and
//! stops cleanly on SIGTERM without losing or half-recording a message.

mod common;

use chrono::{Duration as Days, SecondsFormat, Utc};
use common::smtp_script::{Script, ScriptedSmtp};
use common::{SmtpSink, Workspace, delivered};
use std::process::{Child, Stdio};
use std::time::Duration;

fn spawn(ws: &Workspace) -> Child {
    ws.command(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn ago(d: Days) -> String {
    (Utc::now() - d).to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[test]
fn daemon_sends_what_falls_due_and_exits_zero_on_sigterm() {
    let sink = SmtpSink::start(&[]);
    let ws = Workspace::new(Some(sink.port));
    ws.import(&[delivered(
        "evt-1",
        "c-1",
        "a@example.com",
        "SO-1",
        &ago(Days::days(3) + Days::minutes(1)),
    )])
    .ok();
    let mut child = spawn(&ws);
    common::wait_for("the first message", Duration::from_secs(20), || {
        sink.messages().len() == 1
    });
    // Imported while the daemon runs: picked up by polling, without a restart.
    ws.import(&[delivered(
        "evt-2",
        "c-2",
        "b@example.com",
        "SO-2",
        &ago(Days::days(3) + Days::seconds(5)),
    )])
    .ok();
    common::wait_for("the second message", Duration::from_secs(20), || {
        sink.messages().len() == 2
    });
    signal(&child, "-TERM");
    assert_eq!(common::wait_exit(&mut child, Duration::from_secs(10)), 0);
    let log = ws.logs_json(&["--status", "sent"]);
    assert_eq!(log.as_array().unwrap().len(), 2);
}

/// The states of the `n` review requests' first steps once the daemon has stopped; none may
/// still be claimed (a stop hands back what it has not started).
fn first_steps_after_stop(ws: &Workspace, n: usize) -> Vec<String> {
    let log = ws.logs_json(&["--job", "review-request"]);
    let states: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["step"] == 0)
        .map(|m| m["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states.len(), n);
    assert!(
        !states.iter().any(|s| s == "claimed"),
        "a claim was left behind: {states:?}"
    );
    states
}

/// The relay received `n` messages, each once: `n` Message-IDs, all different.
fn each_once(mut ids: Vec<String>, n: usize) {
    assert_eq!(ids.len(), n);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[test]
fn sigterm_mid_dispatch_loses_nothing_and_sends_nothing_twice() {
    // A server that takes a second to accept each message, so SIGTERM lands mid-batch.
    let sink = SmtpSink::start(&["-w", "1"]);
    let ws = Workspace::new(Some(sink.port));
    ws.write_config(
        Some(sink.port),
        "dispatch:\n  batch_size: 4\n  concurrency: 2\n  retry: {max_attempts: 3, initial: 1m, max: 1h}\n",
    );
    let at = ago(Days::days(3) + Days::minutes(1));
    let events = common::deliveries(12, &at);
    ws.import(&events).ok();
    let mut child = spawn(&ws);
    common::wait_for("a first delivery", Duration::from_secs(20), || {
        !sink.messages().is_empty()
    });
    signal(&child, "-TERM");
    assert_eq!(common::wait_exit(&mut child, Duration::from_secs(20)), 0);

    let states = first_steps_after_stop(&ws, 12);
    let sent_before = states.iter().filter(|s| *s == "sent").count();
    assert_eq!(
        sent_before,
        sink.messages().len(),
        "every accepted message is recorded as sent"
    );
    assert!(sent_before < 12, "SIGTERM should have landed mid-run");

    // The rest goes out on the next run; nothing twice.
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    ws.once(&now);
    each_once(
        sink.messages().into_iter().map(|m| m.message_id).collect(),
        12,
    );
}

#[test]
fn sigterm_hands_back_the_batch_claimed_ahead_of_the_sends() {
    // Claims of 4 (concurrency = batch size: the pace cannot change it); the next claim is
    // asked for when 2 of a batch are left to start. The relay takes 6 messages, then holds
    // every reply: 4 sends hang (all the slots), 10 messages were handed out, and the 11th,
    // the third of the batch 9-12, waits for a slot with the batch 13-16 claimed ahead.
    let relay = ScriptedSmtp::start(Script {
        hold_after: Some(6),
        ..Script::default()
    });
    let ws = Workspace::new(Some(relay.port));
    ws.write_config(
        Some(relay.port),
        "dispatch:\n  batch_size: 4\n  concurrency: 4\n  retry: {max_attempts: 3, initial: 1m, max: 1h}\n",
    );
    let at = ago(Days::days(3) + Days::minutes(1));
    ws.import(&common::deliveries(16, &at)).ok();
    let (mut child, log) = common::spawn_logged(ws.command(&["run"]).env("AFTERCARE_LOG", "info"));
    common::wait_for(
        "four sends held by the relay",
        Duration::from_secs(20),
        || relay.holding() == 4,
    );
    signal(&child, "-TERM");
    // The relay answers again only once the daemon has taken the signal: answered before,
    // a slot could free and the 11th send start ahead of the stop (seen once in CI: 11 sent).
    common::wait_for(
        "the daemon to begin stopping",
        Duration::from_secs(20),
        || {
            log.lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("stopping: finishing in-flight sends"))
        },
    );
    relay.set(|s| s.hold_after = None);
    assert_eq!(common::wait_exit(&mut child, Duration::from_secs(20)), 0);

    let states = first_steps_after_stop(&ws, 16);
    let sent = states.iter().filter(|s| *s == "sent").count();
    assert_eq!(sent, 10, "{states:?}");
    assert_eq!(relay.messages().len(), 10);

    // The six handed back go out on the next run; nothing twice.
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    ws.once(&now);
    let ids = relay
        .messages()
        .iter()
        .filter_map(|m| {
            let msg = mail_parser::MessageParser::default().parse(m.as_bytes())?;
            msg.message_id().map(str::to_string)
        })
        .collect();
    each_once(ids, 16);
}
