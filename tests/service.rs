//! The daemon as a systemd service: notifications on a real NOTIFY_SOCKET, hot reload that
//! refuses a broken job set, removed jobs, JSON logs that mask addresses, completions.

mod common;

use chrono::{Duration as Days, SecondsFormat, Utc};
use common::{Workspace, delivered};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::Duration;

fn signal(child: &Child, sig: &str) {
    assert!(
        std::process::Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let ws = Workspace::new(None);
    let socket_path = ws.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut child = ws
        .command(&["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "900000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut heard: Vec<String> = Vec::new();
    let read_until = |want: &str, heard: &mut Vec<String>| {
        let mut buf = [0u8; 4096];
        loop {
            if heard.iter().any(|h| h.contains(want)) {
                return;
            }
            let n = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {want}: {e}; heard {heard:?}"));
            heard.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    };
    read_until("READY=1", &mut heard);
    let ready = heard.iter().find(|h| h.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=running 5 job(s); store "), "{ready}");
    // The watchdog is pinged from the dispatch loop, every third of the period.
    heard.clear();
    read_until("WATCHDOG=1", &mut heard);
    signal(&child, "-HUP");
    heard.clear();
    read_until("RELOADING=1", &mut heard);
    let reloading = heard.iter().find(|h| h.contains("RELOADING=1")).unwrap();
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    heard.clear();
    read_until("READY=1", &mut heard);
    assert!(
        heard
            .iter()
            .any(|h| h.contains("STATUS=reloaded: running 5 job(s)")),
        "{heard:?}"
    );
    signal(&child, "-TERM");
    heard.clear();
    read_until("STOPPING=1", &mut heard);
    assert_eq!(common::wait_exit(&mut child, Duration::from_secs(20)), 0);
}

fn recent(id: &str, contact: &str, order: &str, days: i64) -> String {
    let at = (Utc::now() - Days::days(days)).to_rfc3339_opts(SecondsFormat::Secs, true);
    delivered(id, contact, &format!("{contact}@example.com"), order, &at)
}

const INGEST: &str = "ingest-token-0123456789";

/// A daemon with the review request and an API taking [`INGEST`], started and listening:
/// its workspace, port, process and info log.
fn with_api() -> (Workspace, u16, Child, common::Log) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    let port = common::free_port();
    ws.write_config(None, &format!("api:\n  listen: 127.0.0.1:{port}\n  tokens: [{{name: shop, scope: ingest, token_env: T}}]\n"));
    let (child, log) = common::spawn_logged(
        ws.command(&["run"])
            .env("AFTERCARE_LOG", "info")
            .env("T", INGEST),
    );
    common::wait_for("start", Duration::from_secs(20), || {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("api listening"))
    });
    (ws, port, child, log)
}

#[test]
fn a_broken_job_is_refused_and_the_old_set_keeps_running_then_a_fix_is_taken() {
    let (ws, port, mut child, log) = with_api();
    let token = INGEST;
    let has = |needle: &str| log.lock().unwrap().iter().any(|l| l.contains(needle));
    let post = |event: String| -> serde_json::Value {
        let r = reqwest::blocking::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/events"))
            .bearer_auth(token)
            .body(event)
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json().unwrap()
    };

    // A broken job arrives (file watcher): refused, every problem at path:line:col.
    ws.write("jobs/shipped.yaml", "id: shipped-note\ntrigger: {event: order.shipped, delay: soon}\ntemplate: review_request\n");
    common::wait_for("the refusal", Duration::from_secs(20), || {
        has("reload refused: 1 error(s); still running the previous jobs")
    });
    assert!(
        has("jobs/shipped.yaml:2:40: error: trigger.delay: `soon`"),
        "{:?}",
        log.lock().unwrap()
    );
    // The old set still plans.
    assert_eq!(
        post(recent("e1", "c1", "SO-1", 1))["results"][0]["planned"],
        1
    );
    let shipped = recent("e2", "c2", "SO-2", 1).replace("order.delivered", "order.shipped");
    assert_eq!(post(shipped.clone())["results"][0]["planned"], 0);

    // Fixed: taken, and the new job plans too.
    ws.write(
        "jobs/shipped.yaml",
        "id: shipped-note\ntrigger: {event: order.shipped, delay: 1d}\ntemplate: review_request\n",
    );
    common::wait_for("the reload", Duration::from_secs(20), || has("reloaded"));
    assert_eq!(
        post(shipped.replace("\"e2\"", "\"e3\""))["results"][0]["planned"],
        1
    );
    signal(&child, "-TERM");
    assert_eq!(common::wait_exit(&mut child, Duration::from_secs(20)), 0);
}

/// The config file is read at start only: a reload (here a new job file) compiles the jobs
/// with the config the daemon started with, so a config being edited (caught half-written,
/// or with a new policy) neither blocks it nor half applies.
#[test]
fn a_reload_keeps_the_config_the_daemon_started_with() {
    let (ws, port, mut child, log) = with_api();
    let token = INGEST;
    let has = |needle: &str| log.lock().unwrap().iter().any(|l| l.contains(needle));

    let config = std::fs::read_to_string(ws.path("aftercare.yaml")).unwrap();
    ws.write("aftercare.yaml", &config[..config.len() / 2]);
    ws.write(
        "jobs/shipped.yaml",
        "id: shipped-note\ntrigger: {event: order.shipped, delay: 1d}\ntemplate: review_request\n",
    );
    common::wait_for("the reload", Duration::from_secs(20), || {
        has("reloaded") || has("reload refused")
    });
    assert!(
        has("reloaded") && !has("reload refused"),
        "{:?}",
        log.lock().unwrap()
    );
    let shipped = recent("e1", "c1", "SO-1", 1).replace("order.delivered", "order.shipped");
    let r: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/events"))
        .bearer_auth(token)
        .body(shipped)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["results"][0]["planned"], 1, "{r}");
    signal(&child, "-TERM");
    assert_eq!(common::wait_exit(&mut child, Duration::from_secs(20)), 0);
}

#[test]
fn a_removed_job_has_its_pending_messages_cancelled_with_a_reason() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    // Delivered yesterday: the request is due in two days.
    ws.import(&[recent("e1", "c1", "SO-1", 1)]).ok();
    let (mut child, log) = common::spawn_logged(ws.command(&["run"]).env("AFTERCARE_LOG", "info"));
    let has = |needle: &str| log.lock().unwrap().iter().any(|l| l.contains(needle));
    common::wait_for("start", Duration::from_secs(20), || {
        has("aftercare running")
    });
    std::fs::remove_file(ws.path("jobs/review-request.yaml")).unwrap();
    common::wait_for("the reload", Duration::from_secs(20), || has("reloaded"));
    assert!(
        has("job removed: its pending messages are cancelled"),
        "{:?}",
        log.lock().unwrap()
    );
    signal(&child, "-TERM");
    assert_eq!(common::wait_exit(&mut child, Duration::from_secs(20)), 0);
    let m = ws.logs_json(&[]);
    assert_eq!(m[0]["state"], "cancelled");
    assert_eq!(
        m[0]["reason"],
        "job `review-request` was removed from the jobs folder"
    );
}

#[test]
fn json_logs_mask_customer_addresses() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    ws.import(&[delivered(
        "e1",
        "c1",
        "wang.fang@example.com",
        "SO-1",
        &(Utc::now() - Days::days(3) - Days::minutes(1)).to_rfc3339(),
    )])
    .ok();
    let (mut child, log) = common::spawn_logged(
        ws.command(&["--log-format", "json", "run"])
            .env("AFTERCARE_LOG", "debug"),
    );
    common::wait_for("a delivery attempt", Duration::from_secs(20), || {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("delivery attempt"))
    });
    signal(&child, "-TERM");
    assert_eq!(common::wait_exit(&mut child, Duration::from_secs(20)), 0);
    let lines = log.lock().unwrap().clone();
    let attempt = lines
        .iter()
        .find(|l| l.contains("delivery attempt"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(attempt).expect("one JSON object per line");
    assert_eq!(v["fields"]["to"], "w***g@example.com");
    assert!(
        lines.iter().all(|l| !l.contains("wang.fang@example.com")),
        "a full address in the logs"
    );
}

#[test]
fn shell_completions() {
    let ws = Workspace::new(None);
    let out = ws.run(&["completions", "bash"]).ok().stdout;
    assert!(
        out.contains("_aftercare()") && out.contains("forecast"),
        "{}",
        &out[..200.min(out.len())]
    );
    assert_eq!(ws.run(&["completions", "tcsh"]).code, 2);
}
