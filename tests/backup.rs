//! Backups and restores, end to end: `store backup` copies a SQLite store while a daemon
//! takes events as fast as it can, and every copy restores to a store that `store check`
//! finds whole; a PostgreSQL store goes through `pg_dump` and `pg_restore` as the README
//! says, and checks the same.

mod common;

use common::{Backend, Workspace, delivered, pg};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const TOKEN: &str = "ingest-token-0123456789";

/// The `rows:` line of `store check`, and whether it said `ok`.
fn check(ws: &Workspace, url: &str) -> String {
    let r = ws.run(&["store", "check", "--store", url]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("references: 8 checked, 0 broken"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.trim_end().ends_with("ok"), "{}", r.stdout);
    r.stdout
        .lines()
        .find(|l| l.starts_with("rows: "))
        .unwrap()
        .to_string()
}

fn rows(line: &str, table: &str) -> i64 {
    line.trim_start_matches("rows: ")
        .split(", ")
        .find_map(|p| p.strip_prefix(&format!("{table} ")))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_backup_under_write_load_restores_to_a_whole_store() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ws = Workspace::on(Backend::Sqlite, None);
    ws.keep_jobs(&["review-request"]);
    let port = common::free_port();
    ws.write_config(
        None,
        &format!(
            "api:\n  listen: 127.0.0.1:{port}\n  tokens: [{{name: shop, scope: ingest, token_env: T}}]\n"
        ),
    );
    let mut daemon = ws
        .command(&["run"])
        .env("T", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    common::wait_for_api(
        &mut daemon,
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(20),
        "the API did not come up",
    );
    // Deliveries of now: their review requests are due in 3 days, so the running daemon
    // sends none of them (it would, under load, before a backup, for a delivery in the
    // past), and the restored store sends them all.
    let delivered_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let due = (chrono::Utc::now() + chrono::Duration::days(3) + chrono::Duration::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // Four writers post batches of 20 events until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, posted, client) = (stop.clone(), posted.clone(), client.clone());
            let delivered_at = delivered_at.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<serde_json::Value> = (0..20)
                        .map(|i| {
                            let id = format!("w{w}-{n}-{i}");
                            serde_json::from_str(&delivered(
                                &id,
                                &format!("c-{id}"),
                                &format!("{id}@example.com"),
                                &format!("SO-{id}"),
                                &delivered_at,
                            ))
                            .unwrap()
                        })
                        .collect();
                    let r = client
                        .post(format!("http://127.0.0.1:{port}/v1/events"))
                        .bearer_auth(TOKEN)
                        .json(&batch)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    posted.fetch_add(20, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    let mut backups = Vec::new();
    for i in 0..3 {
        // Let some writes land between copies.
        let before = posted.load(Ordering::Relaxed);
        while posted.load(Ordering::Relaxed) < before + 200 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let file = format!("backup-{i}.db");
        let r = ws.run(&["store", "backup", &file]).ok();
        assert!(r.stdout.starts_with("backed up "), "{}", r.stdout);
        backups.push(file);
    }
    // A backup never overwrites.
    let again = ws.run(&["store", "backup", "backup-0.db"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let total = posted.load(Ordering::Relaxed) as i64;
    let mut last = 0;
    for b in &backups {
        let line = check(&ws, &format!("sqlite://{b}"));
        let (events, messages) = (rows(&line, "events"), rows(&line, "messages"));
        // Each copy is one instant: every event with its message, more in each later copy.
        assert_eq!(events, messages, "{line}");
        assert!(events > last && events < total, "{line} ({total} posted)");
        last = events;
    }
    let _ = daemon.kill();
    let _ = daemon.wait();

    // Restore: the daemon stopped, the backup replaces the store file (and its WAL).
    for f in ["aftercare.db", "aftercare.db-wal", "aftercare.db-shm"] {
        let _ = std::fs::remove_file(ws.path(&format!("data/{f}")));
    }
    std::fs::copy(ws.path("backup-2.db"), ws.path("data/aftercare.db")).unwrap();
    let r = ws.run(&["store", "check"]).ok();
    assert!(
        r.stdout.contains(&format!("events {last},")),
        "{}",
        r.stdout
    );
    // And it runs: the restored messages go out.
    let sent = ws.once(&due);
    assert!(
        sent.stdout.starts_with(&format!("{last} sent")),
        "{}",
        sent.stdout
    );
}

#[test]
fn a_postgres_store_goes_through_pg_dump_and_pg_restore() {
    let ws = Workspace::on(Backend::Postgres, None);
    ws.run(&[
        "events",
        "import",
        &format!("{}/examples/events/demo.jsonl", env!("CARGO_MANIFEST_DIR")),
    ])
    .ok();
    ws.once("2026-11-23T10:00:00+08:00");
    let url = ws.store_url.clone();
    let original = check(&ws, &url);
    assert!(rows(&original, "messages") > 0, "{original}");
    // The README's commands: pg_dump -Fc, then pg_restore into an empty database.
    let dump = ws.path("aftercare.dump");
    let out = Command::new(pg::bin().join("pg_dump"))
        .args(["-Fc", "-f"])
        .arg(&dump)
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = pg::fresh_database();
    let out = Command::new(pg::bin().join("pg_restore"))
        .args(["--no-owner", "-d", &restored])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(check(&ws, &restored), original);
    // A broken reference is found: the check can fail.
    pg::psql(
        &restored,
        "DELETE FROM contacts WHERE id IN (SELECT contact_id FROM messages LIMIT 1)",
    );
    let r = ws.run(&["store", "check", "--store", &restored]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("break messages.contact_id → contacts"),
        "{}",
        r.stderr
    );
}
