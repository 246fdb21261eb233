//! Hostile input (issue 17), each case through the real binary: YAML that used to spin a core,
//! job files caught empty mid-save, events the store cannot keep, a request the store refuses
//! inside a shared transaction, a batch the planner half-refuses, and the validation gaps. The
//! cases that touch the store run on SQLite and on PostgreSQL in the same test.

mod common;

use chrono::{Duration as Days, SecondsFormat, Utc};
use common::{Backend, Workspace, delivered};
use serde_json::{Value, json};
use std::process::Child;
use std::time::{Duration, Instant};

const TOKEN: &str = "ingest-token-0123456789";
const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

fn ago(d: Days) -> String {
    (Utc::now() - d).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A running `aftercare run` with its stderr collected line by line.
struct Daemon {
    child: Child,
    log: common::Log,
    port: u16,
}

impl Daemon {
    /// Start on `ws` with an API on a free port (ingest token [`TOKEN`]).
    fn start(ws: &Workspace, extra: &str) -> Daemon {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = common::free_port();
        ws.write_config(
            None,
            &format!(
                "api:\n  listen: 127.0.0.1:{port}\n  tokens: [{{name: shop, scope: ingest, token_env: T}}]\n{extra}"
            ),
        );
        let (child, log) = common::spawn_logged(
            ws.command(&["run"])
                .env("AFTERCARE_LOG", "info")
                .env("T", TOKEN),
        );
        let mut d = Daemon { child, log, port };
        // Generous: on a loaded 2-core CI machine a PostgreSQL-backed start can take a while.
        let mut exited = None;
        let started = common::until(Duration::from_secs(90), || {
            exited = d.child.try_wait().ok().flatten();
            exited.is_some() || d.has("api listening")
        });
        assert!(
            started && exited.is_none(),
            "the daemon did not start its API ({exited:?}); its log:\n{}",
            d.log.lock().unwrap().join("\n")
        );
        d
    }

    fn has(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn post(&self, body: &str) -> (u16, Value) {
        post(self.port, body)
    }

    /// SIGTERM, and the exit code (it must come within `within`).
    fn stop(mut self, within: Duration) -> i32 {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        common::wait_exit(&mut self.child, within)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(port: u16, body: &str) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/events"))
        .bearer_auth(TOKEN)
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The order ids of the stored messages, sorted.
fn orders(ws: &Workspace) -> Vec<String> {
    let mut orders: Vec<String> = messages(ws)
        .iter()
        .map(|m| m["order_id"].as_str().unwrap_or_default().to_string())
        .collect();
    orders.sort();
    orders
}

/// Each body POSTed from a thread of its own, all at once.
fn post_each(port: u16, bodies: Vec<String>) -> Vec<std::thread::JoinHandle<(u16, Value)>> {
    bodies
        .into_iter()
        .map(|b| std::thread::spawn(move || post(port, &b)))
        .collect()
}

/// A delivery of yesterday: its review request is due in two days (nothing is sent now).
fn yesterday(id: &str, contact: &str, order: &str) -> String {
    delivered(
        id,
        contact,
        &format!("{contact}@example.com"),
        order,
        &ago(Days::days(1)),
    )
}

/// The messages of the store, as `logs --format json` prints them.
fn messages(ws: &Workspace) -> Vec<Value> {
    ws.logs_json(&[]).as_array().cloned().unwrap_or_default()
}

/// Item 1. Every verb that loads jobs refused these in milliseconds; each used to spin
/// forever at 100% CPU (serde_yaml's document iterator repeats its error without end).
#[test]
fn yaml_that_used_to_spin_a_core_is_refused_in_milliseconds() {
    let ws = Workspace::new(None);
    let cases: [(&str, &[u8], &str); 6] = [
        ("NUL", b"id: t\ndescription: a\x00b\n", "2:15"),
        ("SOH", b"id: t\x01\ndescription: x\n", "1:6"),
        ("VT", b"id: t\ndescription: x\x0by\n", "2:15"),
        ("ESC", b"id: t\ndescription: x\x1b[31m\n", "2:15"),
        ("DEL", b"id: t\ndescription: x\x7f\n", "2:15"),
        ("U+FFFE", b"id: t\ndescription: \"x\xef\xbf\xbe\"\n", "2:16"),
    ];
    for (name, bytes, at) in cases {
        std::fs::write(ws.path("jobs/x.yaml"), bytes).unwrap();
        ws.write("events.jsonl", &(yesterday("e1", "c1", "SO-1") + "\n"));
        for verb in [
            &["validate"][..],
            &["run", "--once", "--now", "2026-11-23T10:00:00Z"],
            &["events", "import", "events.jsonl"],
        ] {
            let started = Instant::now();
            let r = ws.run(verb);
            let took = started.elapsed();
            let out = format!("{}{}", r.stdout, r.stderr);
            assert_eq!(r.code, 1, "{name} {verb:?}: {out}");
            assert!(
                out.contains(&format!("jobs/x.yaml:{at}: error: ")),
                "{name} {verb:?}: {out}"
            );
            assert!(!out.contains("panicked"), "{out}");
            assert!(took < Duration::from_secs(10), "{name} {verb:?}: {took:?}");
        }
    }
    // A byte order mark (Windows editors) is not content: the job is valid.
    let review = std::fs::read(ws.path("jobs/review-request.yaml")).unwrap();
    std::fs::remove_file(ws.path("jobs/x.yaml")).unwrap();
    std::fs::write(
        ws.path("jobs/review-request.yaml"),
        [b"\xef\xbb\xbf".as_slice(), &review].concat(),
    )
    .unwrap();
    // The config too.
    let config = std::fs::read(ws.path("aftercare.yaml")).unwrap();
    std::fs::write(
        ws.path("aftercare.yaml"),
        [b"\xef\xbb\xbf".as_slice(), &config].concat(),
    )
    .unwrap();
    let r = ws.run(&["validate"]).ok();
    assert!(r.stdout.contains("5 job(s) valid"), "{}", r.stdout);
    std::fs::write(
        ws.path("aftercare.yaml"),
        [config.as_slice(), b"node_id: a\x1bb\n"].concat(),
    )
    .unwrap();
    let r = ws.run(&["validate"]);
    let line = config.iter().filter(|b| **b == b'\n').count() + 1;
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "aftercare.yaml:{line}:11: error: the control character U+001B"
        )),
        "{}",
        r.stderr
    );
}

/// Item 1 in a running daemon: the reload of such a file is refused at once, and the first
/// SIGTERM still stops the process.
#[test]
fn a_daemon_refuses_a_hostile_job_file_and_stops_on_the_first_sigterm() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    let d = Daemon::start(&ws, "");
    std::fs::write(
        ws.path("jobs/bad.yaml"),
        b"\xef\xbb\xbfid: bad\ndescription: \x1b[2J\n",
    )
    .unwrap();
    common::wait_for("the refusal", Duration::from_secs(20), || {
        d.has("reload refused")
    });
    assert!(d.has("jobs/bad.yaml:2:14: error: the control character U+001B"));
    assert_eq!(d.stop(Duration::from_secs(10)), 0);
}

/// Item 4: an editor's truncation mid-save (or `~`) is an error, so the reload is refused and
/// the job's queue is kept; a file that parses and no longer defines the job removes it.
#[test]
fn a_truncated_job_file_cancels_nothing_and_a_rewritten_one_removes_its_job() {
    for backend in BOTH {
        let ws = Workspace::on(backend, None);
        ws.keep_jobs(&["review-request"]);
        ws.import(&[yesterday("e1", "c1", "SO-1")]).ok();
        let d = Daemon::start(&ws, "");
        let refusals = |n: usize| move |d: &Daemon| d.count("reload refused") >= n;
        std::fs::write(ws.path("jobs/review-request.yaml"), "").unwrap();
        common::wait_for("the refusal", Duration::from_secs(20), || refusals(1)(&d));
        assert!(
            d.has("jobs/review-request.yaml:1:1: error: this file holds no job"),
            "{backend:?}: {:?}",
            d.log.lock().unwrap()
        );
        std::fs::write(ws.path("jobs/review-request.yaml"), "~\n").unwrap();
        common::wait_for("the second refusal", Duration::from_secs(20), || {
            refusals(2)(&d)
        });
        assert!(!d.has("job removed"), "{backend:?}");
        // Still parses, and defines another job: review-request is gone.
        ws.write(
            "jobs/review-request.yaml",
            "id: shipped-note\ntrigger: {event: order.shipped, delay: 1d}\ntemplate: review_request\n",
        );
        common::wait_for("the reload", Duration::from_secs(20), || d.has("reloaded"));
        assert!(d.has("job removed: its pending messages are cancelled"));
        assert_eq!(d.stop(Duration::from_secs(10)), 0);
        let m = messages(&ws);
        assert_eq!(m.len(), 1, "{backend:?}: {m:?}");
        assert_eq!(m[0]["state"], "cancelled", "{backend:?}");
    }
}

/// Item 2: a NUL anywhere in an event is a field error at ingest, the same on both stores;
/// `events import` names the line and keeps the good ones, the API answers 400 and its
/// neighbours 202.
#[test]
fn a_nul_anywhere_in_an_event_is_refused_the_same_on_both_stores() {
    for backend in BOTH {
        let ws = Workspace::on(backend, None);
        ws.keep_jobs(&["review-request"]);
        let nul_note: Value = {
            let mut v: Value = serde_json::from_str(&yesterday("e2", "c2", "SO-2")).unwrap();
            v["data"]["note"] = json!("a\u{0}b");
            v
        };
        let r = ws.import(&[
            yesterday("e1", "c1", "SO-1"),
            nul_note.to_string(),
            yesterday("e3", "c3", "SO-3"),
        ]);
        assert_eq!(r.code, 1, "{backend:?}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("events.jsonl:2: data.note: the text holds a NUL character"),
            "{backend:?}: {}",
            r.stderr
        );
        assert!(r.stdout.contains("2 accepted"), "{}", r.stdout);
        assert_eq!(messages(&ws).len(), 2, "{backend:?}");

        let d = Daemon::start(&ws, "");
        let fields: [(&str, &str); 4] = [
            ("/id", "id"),
            ("/contact/name", "contact.name"),
            ("/type", "type"),
            ("/data/items", "data.items[1]"),
        ];
        for (i, (pointer, field)) in fields.iter().enumerate() {
            let mut v: Value =
                serde_json::from_str(&yesterday(&format!("n{i}"), "cn", "SO-N")).unwrap();
            let slot = v.pointer_mut(pointer.rsplit_once('/').unwrap().0).unwrap();
            let key = pointer.rsplit('/').next().unwrap();
            slot[key] = if key == "items" {
                json!(["ok", "bad\u{0}"])
            } else {
                json!("x\u{0}y")
            };
            let (s, body) = d.post(&v.to_string());
            assert_eq!(s, 400, "{backend:?} {pointer}: {body}");
            assert_eq!(body["field"], *field, "{backend:?}: {body}");
        }
        // A NUL in a key.
        let mut v: Value = serde_json::from_str(&yesterday("n9", "cn", "SO-N")).unwrap();
        v["contact"]["attributes"] = json!({"ti\u{0}er": "gold"});
        let (s, body) = d.post(&v.to_string());
        assert_eq!(s, 400, "{body}");
        assert_eq!(body["field"], "contact.attributes");
        // Concurrent neighbours of a bad request all land.
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let port = d.port;
                let body = if i == 5 {
                    nul_note.to_string().replace("\"e2\"", "\"bad\"")
                } else {
                    yesterday(&format!("p{i}"), &format!("cp{i}"), &format!("SO-P{i}"))
                };
                std::thread::spawn(move || post(port, &body).0)
            })
            .collect();
        let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (i, s) in statuses.iter().enumerate() {
            assert_eq!(
                *s,
                if i == 5 { 400 } else { 202 },
                "{backend:?}: {statuses:?}"
            );
        }
        assert_eq!(d.stop(Duration::from_secs(10)), 0);
        assert_eq!(messages(&ws).len(), 2 + 11, "{backend:?}");
    }
}

/// A lock on the events table, held from another connection until dropped: the ingest
/// writer's next transaction waits on it, so requests sent meanwhile queue up and share the
/// transaction after it (one group commit, for certain).
struct TableLock {
    release: std::sync::mpsc::Sender<()>,
    done: std::thread::JoinHandle<()>,
}

impl TableLock {
    fn take(ws: &Workspace, backend: Backend) -> TableLock {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (locked, is_locked) = std::sync::mpsc::channel::<()>();
        let url = ws.store_url.clone();
        let db = ws.path("data/aftercare.db");
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                match backend {
                    Backend::Postgres => {
                        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                        sqlx::raw_sql("BEGIN; LOCK TABLE events IN SHARE MODE")
                            .execute(&mut c)
                            .await
                            .unwrap();
                        locked.send(()).unwrap();
                        let _ = tokio::task::spawn_blocking(move || wait.recv()).await;
                        sqlx::raw_sql("COMMIT").execute(&mut c).await.unwrap();
                    }
                    Backend::Sqlite => {
                        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&db);
                        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
                        sqlx::raw_sql("BEGIN IMMEDIATE")
                            .execute(&mut c)
                            .await
                            .unwrap();
                        locked.send(()).unwrap();
                        let _ = tokio::task::spawn_blocking(move || wait.recv()).await;
                        sqlx::raw_sql("COMMIT").execute(&mut c).await.unwrap();
                    }
                }
            });
        });
        is_locked.recv().unwrap();
        TableLock { release, done }
    }

    fn release(self) {
        self.release.send(()).unwrap();
        self.done.join().unwrap();
    }
}

/// Make the store itself refuse to insert the event with id `poison` (a data exception on
/// PostgreSQL, an abort on SQLite): a fault the ingest checks cannot know about.
fn poison_the_store(ws: &Workspace) {
    ws.store_sql(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.id = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned value'); END",
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.id = 'poison' THEN RAISE EXCEPTION 'poisoned value' USING ERRCODE = '22023'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    );
}

/// The value of the counter or gauge `name` (with its labels) on the daemon's `/metrics`.
fn counter(port: u16, name: &str) -> u64 {
    let text = reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Waits until `/metrics` shows `name` at `want` (30 s at most).
fn wait_for_metric(port: u16, name: &str, want: u64) {
    common::wait_for(&format!("{name} {want}"), Duration::from_secs(30), || {
        counter(port, name) == want
    });
}

/// Requests that arrive while the writer decides and writes a group join that group's
/// transaction before it commits, in a round of their own that sees the rounds before it:
/// one commit (one fsync) for all of them, and an event sent again in the later round is a
/// duplicate of the one the earlier round wrote, not a second event.
#[test]
fn requests_arriving_while_a_group_is_written_join_its_commit() {
    for backend in BOTH {
        let ws = Workspace::on(backend, None);
        ws.keep_jobs(&["review-request"]);
        let d = Daemon::start(&ws, "");
        let before = counter(d.port, "aftercare_ingest_commits_total");
        // The writer takes the first request and waits for the lock (SQLite: to begin;
        // PostgreSQL: to insert the event), so the others arrive while it is writing.
        let lock = TableLock::take(&ws, backend);
        let first = {
            let port = d.port;
            std::thread::spawn(move || post(port, &yesterday("a0", "ca", "SO-A0")))
        };
        // The writer holds the first request (and waits for the lock) before the others
        // are sent, and all three are queued for it before the lock goes: a host that
        // stalls this test's threads cannot let a request arrive after the commit.
        wait_for_metric(d.port, "aftercare_ingest_requests{stage=\"writing\"}", 1);
        let later = post_each(
            d.port,
            vec![
                yesterday("a0", "ca", "SO-A0"),
                yesterday("a1", "ca", "SO-A1"),
                yesterday("b0", "cb", "SO-B0"),
            ],
        );
        wait_for_metric(d.port, "aftercare_ingest_requests{stage=\"queued\"}", 3);
        lock.release();
        let (s, body) = first.join().unwrap();
        assert_eq!(
            (s, body["accepted"].as_u64()),
            (202, Some(1)),
            "{backend:?}: {body}"
        );
        let answers: Vec<(u16, Value)> = later.into_iter().map(|h| h.join().unwrap()).collect();
        let counts: Vec<(u16, u64, u64)> = answers
            .iter()
            .map(|(s, b)| {
                let n = |k: &str| b[k].as_u64().unwrap_or(99);
                (*s, n("accepted"), n("duplicates"))
            })
            .collect();
        assert_eq!(
            counts,
            [(202, 0, 1), (202, 1, 0), (202, 1, 0)],
            "{backend:?}: {answers:?}"
        );
        assert_eq!(
            counter(d.port, "aftercare_ingest_commits_total") - before,
            1,
            "{backend:?}: the four requests did not share one commit"
        );
        assert_eq!(d.stop(Duration::from_secs(10)), 0);
        assert_eq!(orders(&ws), ["SO-A0", "SO-A1", "SO-B0"], "{backend:?}");
    }
}

/// Items 2 (second wall) and 7: in one group commit, a request the store refuses is written
/// again alone and fails alone; a request with an event the planner refuses is withdrawn
/// whole, before anything is written, and its neighbours land.
#[test]
fn one_bad_request_never_fails_another_in_a_shared_transaction() {
    for backend in BOTH {
        let ws = Workspace::on(backend, None);
        ws.keep_jobs(&["review-request"]);
        // The store exists (and is migrated) before the trigger goes in.
        ws.import(&[yesterday("e0", "c0", "SO-0")]).ok();
        poison_the_store(&ws);
        let d = Daemon::start(&ws, "");

        // Item 7 alone: [valid, planner-refused (no data.order_id for the dedupe key)].
        let mut no_order: Value = serde_json::from_str(&yesterday("r2", "cr", "x")).unwrap();
        no_order["data"] = json!({});
        let batch = format!("[{}, {no_order}]", yesterday("r1", "cr", "SO-R1"));
        let (s, body) = d.post(&batch);
        assert_eq!(s, 400, "{backend:?}: {body}");
        assert_eq!(body["error"], "invalid_event");
        assert_eq!(body["field"], "[1].data");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("dedupe `{{event.data.order_id}}` cannot be computed"),
            "{body}"
        );

        // A group: a blocker holds the writer while the others queue behind it.
        let lock = TableLock::take(&ws, backend);
        let blocker = {
            let port = d.port;
            std::thread::spawn(move || post(port, &yesterday("b0", "cb", "SO-B0")).0)
        };
        wait_for_metric(d.port, "aftercare_ingest_requests{stage=\"writing\"}", 1);
        let mut bodies: Vec<String> = (0..6)
            .map(|i| yesterday(&format!("g{i}"), &format!("cg{i}"), &format!("SO-G{i}")))
            .collect();
        bodies.push(yesterday("poison", "cz", "SO-Z"));
        bodies.push(format!(
            "[{}, {}]",
            yesterday("w1", "cw", "SO-W1"),
            no_order.to_string().replace("\"r2\"", "\"w2\"")
        ));
        let handles = post_each(d.port, bodies);
        wait_for_metric(d.port, "aftercare_ingest_requests{stage=\"queued\"}", 8);
        lock.release();
        assert_eq!(blocker.join().unwrap(), 202);
        let answers: Vec<(u16, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (i, (s, body)) in answers.iter().enumerate().take(6) {
            assert_eq!(*s, 202, "{backend:?} g{i}: {body}");
        }
        let (s, body) = &answers[6];
        let want = match backend {
            // The store's own data exception: the client must not retry.
            Backend::Postgres => 400,
            Backend::Sqlite => 503,
        };
        assert_eq!(*s, want, "{backend:?} poison: {body}");
        let (s, body) = &answers[7];
        assert_eq!(*s, 400, "{backend:?} withdrawn: {body}");
        assert_eq!(body["field"], "[1].data");
        assert!(
            d.has("a shared ingest transaction failed"),
            "{backend:?}: the requests did not share a transaction: {:?}",
            d.log.lock().unwrap()
        );
        assert_eq!(d.stop(Duration::from_secs(10)), 0);

        // Stored: e0, b0 and g0..g5; nothing of r1/w1 (their requests were refused).
        let orders = orders(&ws);
        let mut want: Vec<String> = ["SO-0", "SO-B0"]
            .iter()
            .map(|s| s.to_string())
            .chain((0..6).map(|i| format!("SO-G{i}")))
            .collect();
        want.sort();
        assert_eq!(orders, want, "{backend:?}");
        // r1 was not stored: importing it now is an acceptance, not a duplicate.
        let r = ws.import(&[yesterday("r1", "cr", "SO-R1")]).ok();
        assert!(r.stdout.contains("1 accepted, 0 duplicate"), "{}", r.stdout);
    }
}

/// An attribute that chrono's date parser takes (it skips any white space before a number)
/// but that is not a `YYYY-MM-DD` date: its month and day were cut at byte 5, inside the
/// no-break space, and the store's write panicked. `events import` died (exit 101); over
/// HTTP the writer task died with it and every later POST, good or not, got a 503 until a
/// restart. Now it is kept as text (no anniversary), and a real date beside it still counts.
#[test]
fn an_attribute_almost_a_date_is_text_and_the_intake_goes_on() {
    for backend in BOTH {
        let ws = Workspace::on(backend, None);
        ws.keep_jobs(&["review-request"]);
        let with_attributes = |id: &str, contact: &str, order: &str| {
            let mut v: Value = serde_json::from_str(&yesterday(id, contact, order)).unwrap();
            v["contact"]["attributes"] = json!({"since": "123-\u{a0}1-01", "wide": "12-\u{3000}1-01", "joined": "2026-02-03"});
            v.to_string()
        };
        let r = ws.import(&[with_attributes("i1", "ci", "SO-I")]);
        assert_eq!(r.code, 0, "{backend:?}: {}", r.stderr);
        assert!(r.stdout.contains("1 accepted"), "{}", r.stdout);

        let d = Daemon::start(&ws, "");
        let (s, body) = d.post(&with_attributes("h1", "ch", "SO-H"));
        assert_eq!(s, 202, "{backend:?}: {body}");
        let (s, body) = d.post(&yesterday("h2", "ch2", "SO-H2"));
        assert_eq!(s, 202, "{backend:?}: the next event: {body}");
        drop(d);

        let shown = ws.run(&["contact", "export", "ch"]).ok().stdout;
        let shown: Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(
            shown["contact"]["attributes"]["since"], "123-\u{a0}1-01",
            "{shown}"
        );
        assert_eq!(orders(&ws), ["SO-H", "SO-H2", "SO-I"]);
    }
}

/// Item 10: the validation gaps, each reported at its line and field by `events import`.
#[test]
fn validation_gaps_are_closed_at_their_line_and_field() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    let base: Value = serde_json::from_str(&yesterday("v", "cv", "SO-V")).unwrap();
    let with = |id: &str, f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        v["id"] = json!(id);
        f(&mut v);
        v.to_string()
    };
    let lines = vec![
        with("v1", &|v| v["contact"]["id"] = json!("c".repeat(100_000))),
        with("v2", &|v| v["contact"]["email"] = json!("a@b")),
        with("v3", &|v| v["contact"]["email"] = json!("")),
        with("v4", &|v| v["contact"]["locale"] = json!("")),
        with("v5", &|v| v["contact"]["birthday"] = json!("1990-2-3")),
        with("v6", &|v| v["contact"]["birthday"] = json!("+20000-01-01")),
        with("v7", &|v| v["occurred_at"] = json!("0000-01-01T00:00:00Z")),
        with("v8", &|v| v["occurred_at"] = json!("9999-12-31T00:00:00Z")),
        format!("{{\"id\": \"{}\"}}", "x".repeat(10 * 1024 * 1024)),
        with("v10", &|_| {}),
        with("v11", &|v| v["contact"]["id"] = json!("cv ")),
        with("v12", &|v| {
            v["contact"]["consent"] = json!({"Email": false})
        }),
        with("v13", &|v| v["data"]["order_id"] = json!("SO-V ")),
    ];
    let started = Instant::now();
    let r = ws.import(&lines);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(r.code, 1, "{}", r.stderr);
    let want = [
        "events.jsonl:1: contact.id: longer than 200 characters",
        "events.jsonl:2: contact.email: `a@b` is not a valid email address",
        "events.jsonl:3: contact.email: must not be empty",
        "events.jsonl:4: contact.locale: must not be empty",
        "events.jsonl:5: contact.birthday: `1990-2-3` is not a date as YYYY-MM-DD",
        "events.jsonl:6: contact.birthday: `+20000-01-01` is not a date as YYYY-MM-DD",
        "events.jsonl:7: occurred_at: `0000-01-01T00:00:00Z` is not in the years 1970 to 2199",
        "events.jsonl:8: occurred_at: `9999-12-31T00:00:00Z` is not in the years 1970 to 2199",
        "events.jsonl:9: the line is longer than 1 MiB",
        "events.jsonl:11: contact.id: \"cv \" has white space at its start or end; ids are compared exactly",
        "events.jsonl:12: contact.consent.Email: consent keys are exact: did you mean `email`?",
        "events.jsonl:13: data.order_id: \"SO-V \" has white space at its start or end",
    ];
    for w in want {
        assert!(
            r.stderr.contains(w),
            "missing {w} in\n{}",
            &r.stderr[..r.stderr.len().min(4000)]
        );
    }
    assert!(
        r.stdout
            .starts_with("events.jsonl: 1 accepted, 0 duplicate, 12 rejected"),
        "{}",
        r.stdout
    );
}

/// Item 9: diagnostics point at the place to fix.
#[test]
fn diagnostics_point_at_the_place_to_fix() {
    let ws = Workspace::new(None);
    let cases: [(&str, &[u8], &str); 6] = [
        (
            "duplicate key: the second one",
            b"id: a\ntrigger: {event: order.delivered}\ntemplate: review_request\nid: b\n",
            "4:1: error: duplicate key `id`, first at line 1 column 1",
        ),
        (
            "not UTF-8: the byte",
            b"id: a\ndescription: caf\xe9\ntrigger: {event: order.delivered}\n",
            "2:17: error: byte 0xE9 is not UTF-8 text",
        ),
        (
            "alias bomb: the alias that crosses the limit",
            b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e]\n",
            "5:36: error: aliases expand this document to more than 100000 values",
        ),
        (
            "unclosed quote: where it opened",
            b"id: a\ndescription: \"never closed\ntrigger: {event: order.delivered}\ntemplate: review_request\n",
            "2:14: error: this quoted value is not closed",
        ),
        (
            "event and cron: the second key",
            b"id: a\ntrigger:\n  event: order.delivered\n  cron: \"0 10 * * MON\"\ntemplate: review_request\n",
            "4:3: error: trigger.cron: given with `event`",
        ),
        (
            "empty file",
            b"# a job will go here\n",
            "1:1: error: this file holds no job",
        ),
    ];
    for (what, bytes, want) in cases {
        std::fs::write(ws.path("jobs/x.yaml"), bytes).unwrap();
        let r = ws.run(&["validate"]);
        assert_eq!(r.code, 1, "{what}");
        assert!(
            r.stdout.contains(&format!("jobs/x.yaml:{want}")),
            "{what}: want {want} in\n{}",
            r.stdout
        );
    }
}
