//! The map keeps the code: what ARCHITECTURE.md claims about the house, checked against the
//! source, the two migration folders and the running API.
//!
//! - every `crate::` path in a module points down the code map's order (no module uses one
//!   listed above it), and every module under `src/` is on the map;
//! - the invariants that a reader could break without noticing: channels never touch the
//!   store, the store knows nothing of jobs, templates or channels, the clock is injected;
//! - lookups by email address compare `contacts.email_key`, never SQL's `LOWER(email)`;
//! - the SQLite and PostgreSQL migrations define the same tables and columns;
//! - the router serves exactly the routes the API lists once (`api::route_list`).

mod common;

use common::{Backend, Workspace, pg};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The code map's modules, top to bottom, as ARCHITECTURE.md lists them (`cli/`, `daemon.rs`
/// → `cli`, `daemon`).
fn code_map() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("\n## Code map")
        .nth(1)
        .expect("a `## Code map` section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1))
        .map(|m| m.trim_end_matches('/').trim_end_matches(".rs").to_string())
        .collect()
}

/// Every `.rs` file under `src/` with the top-level module it belongs to.
fn sources() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src/").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = root().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&src).ok()?.to_string_lossy().into_owned();
            let top = rel.split('/').next()?.trim_end_matches(".rs").to_string();
            (top != "lib").then_some((top, p))
        })
        .collect()
}

/// The code of a file without its unit tests (a test may reach for whatever it needs).
fn code(p: &Path) -> String {
    let text = std::fs::read_to_string(p).expect("a source file");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The top-level modules a file names through `crate::` (paths and `use crate::{a, b}`).
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Architecture invariant: a module uses only modules listed below it on the code map, so
/// data flows one way, down the house.
#[test]
fn imports_point_down_the_code_map() {
    let map = code_map();
    assert!(
        map.len() > 10,
        "the code map lists too few modules: {map:?}"
    );
    let rank: BTreeMap<&str, usize> = map
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let files = sources();
    let mut problems = Vec::new();
    let on_disk: BTreeSet<&str> = files.iter().map(|(m, _)| m.as_str()).collect();
    for m in &on_disk {
        if !rank.contains_key(m) {
            problems.push(format!("src/{m} is not on ARCHITECTURE.md's code map"));
        }
    }
    for m in &map {
        if !on_disk.contains(m.as_str()) {
            problems.push(format!("the code map lists `{m}`, which is not in src/"));
        }
    }
    for (module, path) in &files {
        let Some(&mine) = rank.get(module.as_str()) else {
            continue;
        };
        for used in crate_refs(&code(path)) {
            if used == *module {
                continue;
            }
            match rank.get(used.as_str()) {
                Some(&theirs) if theirs < mine => problems.push(format!(
                    "{}: `{module}` uses `{used}`, which the code map lists above it",
                    path.strip_prefix(root()).unwrap_or(path).display()
                )),
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Architecture invariant: channels never touch the store, and the store knows nothing of
/// jobs, templates, channels or the playbook. (The order alone would allow a module to use
/// any module below it; these pairs are ruled out on purpose.)
#[test]
fn channels_and_the_store_stay_apart() {
    let forbidden: &[(&str, &[&str])] = &[
        (
            "channels",
            &["store", "jobs", "plan", "dispatch", "playbook"],
        ),
        (
            "store",
            &[
                "jobs",
                "templates",
                "channels",
                "playbook",
                "plan",
                "dispatch",
            ],
        ),
        ("templates", &["store", "channels", "jobs"]),
    ];
    let mut problems = Vec::new();
    for (module, path) in sources() {
        for (owner, banned) in forbidden {
            if module != *owner {
                continue;
            }
            for used in crate_refs(&code(&path)) {
                if banned.contains(&used.as_str()) {
                    problems.push(format!(
                        "{}: `{module}` uses `{used}`",
                        path.strip_prefix(root()).unwrap_or(&path).display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Architecture invariant: the clock is injected. Reading the wall clock is left to the
/// clock itself and to the few places that talk to people or providers about real time.
#[test]
fn only_the_clock_reads_the_wall_clock() {
    let allowed = [
        "src/clock.rs",
        // Signatures and HTTP dates are about the provider's clock, not the schedule's.
        "src/channels/sms/aliyun/mod.rs",
        "src/channels/webhook.rs",
        // Commands that show a person "now": a preview, open tasks, a suppression's date.
        "src/cli/preview.rs",
        "src/cli/callbacks.rs",
        "src/cli/suppress.rs",
    ];
    let problems = lines_where(&allowed, |line| {
        line.contains("Utc::now()") || line.contains("Local::now()")
    });
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// `file:line: text` of each line of the code (unit tests left out) that `hit` picks, in
/// every source file but the `allowed` ones.
fn lines_where(allowed: &[&str], hit: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for (_, path) in sources() {
        let rel = path
            .strip_prefix(root())
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if allowed.contains(&rel.as_str()) {
            continue;
        }
        for (n, line) in code(&path).lines().enumerate() {
            if hit(line) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

/// SQL's `LOWER()` lowers ASCII only on SQLite and follows the database's locale on
/// PostgreSQL; a contact's address is compared by `email_key`, which the binary writes
/// lowered by Unicode's rules with every contact (migrations/*/0014).
#[test]
fn addresses_are_compared_by_their_key_not_by_sql_lower() {
    let problems = lines_where(&[], |line| {
        line.to_ascii_lowercase().contains("lower(email")
    });
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The columns of every table and view of a migrated store, by table (`message_queue` is a
/// table on PostgreSQL, a view on SQLite).
async fn columns(backend: Backend) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temp folder");
            let store = aftercare::store::Store::open(&aftercare::store::StoreConfig::Sqlite {
                path: dir.path().join("a.db"),
                synchronous: aftercare::store::SqliteSync::Normal,
            })
            .await
            .expect("open and migrate SQLite");
            store.close().await;
            let url = format!("sqlite://{}", dir.path().join("a.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.expect("connect");
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                 WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
            )
            .fetch_all(&pool)
            .await
            .expect("catalog");
            for (t, c) in rows {
                out.entry(t).or_default().insert(c);
            }
            pool.close().await;
        }
        Backend::Postgres => {
            let url = pg::fresh_database();
            let store =
                aftercare::store::Store::connect(&aftercare::store::StoreConfig::Postgres {
                    url: url.clone(),
                    password: aftercare::values::Secret::None,
                })
                .await
                .expect("connect PostgreSQL");
            store.migrate().await.expect("migrate PostgreSQL");
            store.close().await;
            let pool = sqlx::PgPool::connect(&url).await.expect("connect");
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
            )
            .fetch_all(&pool)
            .await
            .expect("catalog");
            for (t, c) in rows {
                out.entry(t).or_default().insert(c);
            }
            pool.close().await;
        }
    }
    out
}

/// Architecture invariant: the migrations of the two backends stay in step: after the
/// last one, both define the same tables with the same columns.
#[tokio::test]
async fn both_migration_folders_define_the_same_tables_and_columns() {
    let names = |b: Backend| -> Vec<String> {
        common::migrations(b)
            .iter()
            .map(|f| f.split('/').next_back().unwrap_or(f).to_string())
            .collect()
    };
    assert_eq!(
        names(Backend::Sqlite),
        names(Backend::Postgres),
        "migrations/sqlite and migrations/postgres hold the same files"
    );
    let sqlite = columns(Backend::Sqlite).await;
    let postgres = columns(Backend::Postgres).await;
    assert!(sqlite.contains_key("messages"), "{sqlite:?}");
    assert_eq!(sqlite, postgres);
}

/// The API lists its routes once (`api::routes`, from each handler's `#[utoipa::path]`); the
/// router and the OpenAPI document are both built from that list. Here the running router is
/// asked for every listed route (a path that is not routed gets the fallback's "no such
/// route", a method that is not gets 405).
#[test]
fn the_router_serves_exactly_the_listed_routes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ws = Workspace::new(None);
    let port = common::free_port();
    ws.write_config(None, &format!("api:\n  listen: 127.0.0.1:{port}\n"));
    let mut child = ws
        .command(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("aftercare run");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::new();
    common::wait_for("the API", std::time::Duration::from_secs(30), || {
        client.get(format!("{base}/healthz")).send().is_ok()
    });
    let unrouted = |method: &str, path: &str| -> bool {
        let url = format!("{base}{path}");
        let r = match method {
            "get" => client.get(&url),
            "post" => client.post(&url),
            "delete" => client.delete(&url),
            other => panic!("a method the test does not know: {other}"),
        }
        .send()
        .expect("a response");
        let status = r.status().as_u16();
        let body = r.text().unwrap_or_default();
        status == 405 || body.contains("no such route")
    };
    let mut problems = Vec::new();
    for (method, path) in aftercare::api::route_list() {
        let concrete = path
            .replace("{id}", "x1")
            .replace("{gateway}", "gw")
            .replace("{token}", "t1");
        if unrouted(&method, &concrete) {
            problems.push(format!("{method} {path} is listed but not routed"));
        }
    }
    for (method, path) in [("get", "/v1/nothing"), ("delete", "/v1/messages/x1")] {
        if !unrouted(method, path) {
            problems.push(format!("{method} {path} is routed but not listed"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
