//! The store verbs through the real binary: `migrate`, the schema check every verb makes,
//! and `store copy` from a SQLite store filled by the real flows to a real PostgreSQL.

mod common;

use common::{Backend, Run, Workspace, pg};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/events/demo.jsonl");

/// A workspace whose store has not been migrated (a fresh SQLite path or PG database).
fn unmigrated(b: Backend) -> Workspace {
    let mut ws = Workspace::on(Backend::Sqlite, None);
    if b == Backend::Postgres {
        ws.store_url = pg::fresh_database();
        ws.write_config(None, "");
    }
    ws
}

#[track_caller]
fn fails(r: Run, code: i32, needle: &str) -> Run {
    assert_eq!(r.code, code, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(needle),
        "{needle:?} not in:\n{}",
        r.stderr
    );
    r
}

fn import_demo(ws: &Workspace) -> Run {
    ws.run(&["events", "import", DEMO])
}

#[test]
fn migrate_prints_what_it_applied_then_nothing() {
    for b in [Backend::Sqlite, Backend::Postgres] {
        let ws = unmigrated(b);
        let version = common::schema_version();
        let r = ws.run(&["migrate"]).ok();
        let mut lines: Vec<&str> = r.stdout.lines().collect();
        let last = lines.pop().unwrap();
        let applied: Vec<String> = common::migrations(b)
            .iter()
            .map(|m| format!("applied {m}"))
            .collect();
        assert_eq!(lines, applied, "{b:?}: {}", r.stdout);
        assert!(
            last.ends_with(&format!(": schema version {version}")),
            "{last}"
        );
        let r = ws.run(&["migrate"]).ok();
        assert!(
            r.stdout
                .trim()
                .ends_with(&format!(": schema version {version}, nothing to apply")),
            "{b:?}: {}",
            r.stdout
        );
        // The URL is printed without a password, the file as a path.
        match b {
            Backend::Sqlite => assert!(r.stdout.contains("data/aftercare.db"), "{}", r.stdout),
            Backend::Postgres => assert!(r.stdout.starts_with("postgres://postgres@127.0.0.1:")),
        }
    }
}

#[test]
fn sqlite_migrates_on_start_postgres_waits_for_migrate() {
    let ws = unmigrated(Backend::Sqlite);
    let r = import_demo(&ws).ok();
    assert!(
        r.stdout.contains(&format!("{} accepted", demo_counts().1)),
        "{}",
        r.stdout
    );

    let ws = unmigrated(Backend::Postgres);
    let needs = format!(
        "has no schema yet, and this aftercare needs schema version {}: run `aftercare migrate` once",
        common::schema_version()
    );
    for args in [
        &["events", "import", DEMO][..],
        &["run", "--once"],
        &["logs"],
    ] {
        fails(ws.run(args), 3, &needs);
    }
    ws.run(&["migrate"]).ok();
    let r = import_demo(&ws).ok();
    assert!(
        r.stdout.contains(&format!("{} accepted", demo_counts().1)),
        "{}",
        r.stdout
    );
}

#[test]
fn a_schema_from_a_newer_release_is_refused_by_every_verb() {
    for b in [Backend::Sqlite, Backend::Postgres] {
        let ws = unmigrated(b);
        ws.run(&["migrate"]).ok();
        let future = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                      VALUES (9999, 'from the future', TRUE, X'00', 0)";
        match b {
            Backend::Sqlite => sqlite_exec(&ws.path("data/aftercare.db"), future),
            Backend::Postgres => {
                pg::psql(&ws.store_url, &future.replace("X'00'", "'\\x00'::bytea"));
            }
        }
        let refused = format!(
            "has schema version 9999, newer than this aftercare knows (up to {}): a newer aftercare migrated it",
            common::schema_version()
        );
        for args in [
            &["events", "import", DEMO][..],
            &["run", "--once"],
            &["logs"],
            &["migrate"],
        ] {
            fails(ws.run(args), 3, &refused);
        }
    }
}

#[test]
fn an_unreachable_store_exits_3() {
    let mut ws = Workspace::on(Backend::Sqlite, None);
    ws.store_url = format!("postgres://postgres@127.0.0.1:{}/gone", common::free_port());
    ws.write_config(None, "");
    // sqlx retries a refused connection for 10 s, so one verb is enough here.
    let r = fails(
        ws.run(&["logs"]),
        3,
        "cannot open the store at postgres://postgres@127.0.0.1:",
    );
    assert!(
        r.stderr
            .contains("no connection within 10s (refused or unanswered)"),
        "{}",
        r.stderr
    );
}

/// A business on SQLite moves to PostgreSQL: fill the store through the real flows, copy
/// it, point the config at PostgreSQL, and support reads the same history there; the
/// daemon carries on from it.
#[test]
fn store_copy_moves_the_whole_history_to_postgres() {
    let mut ws = Workspace::on(Backend::Sqlite, None);
    import_demo(&ws).ok();
    ws.once("2026-11-23T10:00:00+08:00");
    ws.once("2026-11-24T10:00:00+08:00");
    let before_json = ws.logs_json(&[]);
    let before_table = ws.run(&["logs"]).ok().stdout;
    let before_contact = ws.logs_json(&["--contact", "wang.fang@example.com"]);
    assert!(before_json.as_array().unwrap().len() >= 4, "{before_json}");
    assert!(before_table.contains("attempt 1"), "{before_table}");

    let target = pg::fresh_database();
    let copy = |extra: &[&str]| {
        let mut args = vec![
            "store",
            "copy",
            "--from",
            "sqlite://data/aftercare.db",
            "--to",
        ];
        args.push(&target);
        args.extend_from_slice(extra);
        ws.run(&args)
    };
    let r = copy(&[]).ok();
    for m in common::migrations(Backend::Postgres) {
        assert!(
            r.stdout.contains(&format!(": applied {m}\n")),
            "{}",
            r.stdout
        );
    }
    let (contacts, events) = demo_counts();
    assert!(
        r.stdout.contains(&format!("contacts {contacts:>14} rows")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("events {events:>16} rows")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("row counts match"), "{}", r.stdout);

    // Copying again would mix two histories: refused, unless --force replaces the rows.
    fails(
        copy(&[]),
        1,
        &format!("is not empty ({contacts} contacts, {events} events"),
    );
    fails(copy(&[]), 1, "pass --force to replace its rows");
    copy(&["--force", "--batch", "2"]).ok();

    ws.store_url = target.clone();
    ws.write_config(None, "");
    assert_eq!(ws.logs_json(&[]), before_json);
    assert_eq!(ws.run(&["logs"]).ok().stdout, before_table);
    assert_eq!(
        ws.logs_json(&["--contact", "wang.fang@example.com"]),
        before_contact,
        "the same answer for support on both stores"
    );

    // The daemon on PostgreSQL sends the two reminders the SQLite daemon planned.
    let r = ws.once("2026-11-28T10:00:00+08:00");
    assert_eq!(r.stdout.trim(), "2 sent, 0 retrying, 0 failed, 0 cancelled");
}

#[test]
fn store_copy_says_what_is_wrong_with_its_arguments() {
    let ws = Workspace::on(Backend::Sqlite, None);
    let to = "postgres://postgres@127.0.0.1:1/x";
    fails(
        ws.run(&[
            "store",
            "copy",
            "--from",
            "sqlite://nothing/here.db",
            "--to",
            to,
        ]),
        1,
        "--from: there is no SQLite store at",
    );
    fails(
        ws.run(&["store", "copy", "--from", "mysql://x", "--to", to]),
        2,
        "unsupported store URL `mysql://x`: use sqlite://FILE or postgres://USER@HOST/DB",
    );
    fails(
        ws.run(&[
            "store",
            "copy",
            "--from",
            "sqlite://a.db",
            "--to",
            "postgres://u:secret@h/db",
        ]),
        2,
        "the URL holds a password: remove it and set PGPASSWORD",
    );
    // `store check --store` too, and neither repeats the password (clap would, in its own
    // error about the value).
    let r = fails(
        ws.run(&["store", "check", "--store", "postgres://u:secret@h/db"]),
        2,
        "--store: the URL holds a password: remove it and set PGPASSWORD",
    );
    assert!(!r.stderr.contains("secret"), "{}", r.stderr);
    let r = fails(
        ws.run(&[
            "store",
            "check",
            "--store",
            "postgres://h/db?password=hunter2",
        ]),
        2,
        "--store: the URL holds a password",
    );
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    import_demo(&ws).ok();
    fails(
        ws.run(&[
            "store",
            "copy",
            "--from",
            "sqlite://data/aftercare.db",
            "--to",
            "sqlite://data/../data/aftercare.db",
        ]),
        1,
        "the source and the target are the same store",
    );
}

/// One statement on a SQLite file, through sqlx (no sqlite3 CLI needed).
fn sqlite_exec(path: &std::path::Path, sql: &'static str) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        });
}

/// (distinct contacts, events) in the demo file, so the assertions follow it.
fn demo_counts() -> (usize, usize) {
    let text = std::fs::read_to_string(DEMO).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut contacts: Vec<&str> = lines
        .iter()
        .map(|v| v["contact"]["id"].as_str().unwrap())
        .collect();
    contacts.sort();
    contacts.dedup();
    (contacts.len(), lines.len())
}
