//! Test harness: a temporary workspace that runs the real `aftercare` binary, and a real
//! SMTP server process (postfix's `smtp-sink`) that keeps every message it accepts.
//! `pg` starts a real PostgreSQL server for the tests that run on both stores; `provider`
//! stands in for SMS providers' HTTP APIs.
#![allow(dead_code)]

pub mod http;
pub mod pg;
pub mod provider;
pub mod smtp_script;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_aftercare");

/// One finished command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// What a finished command said (for one built by [`Workspace::command`] with more set).
    pub fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// The store a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// For workspaces: SQLite unless `AFTERCARE_TEST_STORE=postgres`, which runs the whole
    /// binary-level suite on PostgreSQL.
    pub fn from_env() -> Backend {
        match std::env::var("AFTERCARE_TEST_STORE").as_deref() {
            Err(_) | Ok("" | "sqlite") => Backend::Sqlite,
            Ok("postgres") => Backend::Postgres,
            Ok(other) => panic!("AFTERCARE_TEST_STORE={other}: use sqlite or postgres"),
        }
    }
}

/// The migrations of `backend`'s `migrations/` folder as `aftercare migrate` prints them
/// (`0001 init`), oldest first, so tests hold when a migration is added.
/// A folder holding the shipped migrations of `backend` before `version` (`"0010"`): the
/// same files, so the same checksums, for `sqlx::migrate::Migrator::new` to leave a store
/// as an older release did.
pub fn migrations_before(backend: Backend, version: &str) -> tempfile::TempDir {
    let old = tempfile::tempdir().expect("a temp folder");
    for e in std::fs::read_dir(migrations_dir(backend)).expect("the migrations folder") {
        let p = e.expect("a migration").path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if name.as_str() < version {
            std::fs::copy(&p, old.path().join(name)).expect("copy a migration");
        }
    }
    old
}

/// `migrations/sqlite` or `migrations/postgres`.
fn migrations_dir(backend: Backend) -> PathBuf {
    let dir = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dir)
}

pub fn migrations(backend: Backend) -> Vec<String> {
    let dir = migrations_dir(backend);
    let mut out: Vec<(i64, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let (version, rest) = name.split_once('_')?;
            let desc = rest
                .strip_suffix(".up.sql")
                .or_else(|| rest.strip_suffix(".sql"))
                .filter(|_| !rest.ends_with(".down.sql"))?;
            Some((version.parse().ok()?, desc.replace('_', " ")))
        })
        .collect();
    out.sort();
    out.iter().map(|(v, d)| format!("{v:04} {d}")).collect()
}

/// The newest schema version the binary knows (the same for both backends).
pub fn schema_version() -> i64 {
    let last = migrations(Backend::Sqlite).pop().expect("a migration");
    last[..4].parse().expect("a version")
}

/// A folder with the shipped jobs and templates, a config, and a store (a SQLite file in
/// the folder, or a fresh PostgreSQL database).
pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// `store.url` of the config; change it and call `write_config` to switch stores.
    pub store_url: String,
}

impl Workspace {
    /// Shipped jobs and templates; email to the SMTP server on `smtp_port`, or to files; the
    /// store of [`Backend::from_env`].
    pub fn new(smtp_port: Option<u16>) -> Workspace {
        Workspace::on(Backend::from_env(), smtp_port)
    }

    /// Like `new`, on the given store. A PostgreSQL store is migrated (`aftercare migrate`),
    /// as an operator does before the first start.
    pub fn on(backend: Backend, smtp_port: Option<u16>) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_dir(&root.join("jobs"), &dir.path().join("jobs"));
        copy_dir(
            &root.join("message_templates"),
            &dir.path().join("message_templates"),
        );
        let store_url = match backend {
            Backend::Sqlite => "sqlite://data/aftercare.db".to_string(),
            Backend::Postgres => pg::fresh_database(),
        };
        let ws = Workspace { dir, store_url };
        ws.write_config(smtp_port, "");
        if backend == Backend::Postgres {
            ws.run(&["migrate"]).ok();
        }
        ws
    }

    /// Run `sqlite` on the workspace's SQLite store, or `postgres` on its PostgreSQL
    /// database: what a test does to the store behind the binary's back (a fault to inject).
    pub fn store_sql(&self, sqlite: &str, postgres: &str) {
        if self.store_url.starts_with("sqlite:") {
            let db = self.path("data/aftercare.db");
            let sql = sqlite.to_string();
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async move {
                    use sqlx::Connection;
                    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&db);
                    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
                    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut c)
                        .await
                        .unwrap();
                });
        } else {
            pg::psql(&self.store_url, postgres);
        }
    }

    /// (Re)write the config; `extra` is appended (e.g. a `dispatch:` section).
    pub fn write_config(&self, smtp_port: Option<u16>, extra: &str) {
        let email = match smtp_port {
            Some(port) => format!(
                "  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, tls: none, pool_size: 4, timeout: 10s}}\n"
            ),
            None => "  transport: file\n  file: {dir: data/outbox}\n".into(),
        };
        let dispatch = if extra.contains("dispatch:") {
            String::new()
        } else {
            "dispatch:\n  retry: {max_attempts: 3, initial: 1m, max: 1h}\n".into()
        };
        // The pipeline tests are about the pipeline: no quiet hours, no caps, opt-out consent.
        // Policy tests pass their own `policy:` section.
        let policy = if extra.contains("policy:") {
            String::new()
        } else {
            "policy:\n  consent: opt_out\n  caps: []\n  send_window: {start: \"00:00\", end: \"24:00\"}\n".into()
        };
        self.write(
            "aftercare.yaml",
            &format!(
                "store: {{url: \"{}\"}}\njobs_dir: jobs\ntemplates_dir: message_templates\n\
                 defaults: {{timezone: Asia/Shanghai, locale: zh-CN}}\nemail:\n  from: \"Example Shop <care@example.com>\"\n{email}{dispatch}{policy}{extra}",
                self.store_url
            ),
        );
    }

    /// Keep only these shipped jobs (the others would plan messages of their own).
    pub fn keep_jobs(&self, ids: &[&str]) {
        for e in std::fs::read_dir(self.path("jobs")).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap_or_default()
                .trim()
                .to_string();
            if !ids.contains(&id.as_str()) {
                std::fs::remove_file(p).unwrap();
            }
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, content).unwrap();
    }

    /// Add `text` at the end of the file `rel` (a key to a shipped job, say).
    pub fn append(&self, rel: &str, text: &str) {
        let before = std::fs::read_to_string(self.path(rel)).unwrap();
        self.write(rel, &format!("{before}{text}"));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.dir.path())
            .arg("--config")
            .arg(self.path("aftercare.yaml"))
            .args(args)
            .env_remove("AFTERCARE_CONFIG")
            .env("AFTERCARE_LOG", "warn");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run aftercare"))
    }

    /// `forecast --json` from `now` to `until` with `extra` arguments, which must succeed:
    /// what it printed, parsed, and what it logged (at `info`: which jobs it worked out in
    /// memory).
    #[track_caller]
    pub fn forecast(&self, now: &str, until: &str, extra: &[&str]) -> (serde_json::Value, String) {
        let mut args = vec!["forecast", "--now", now, "--until", until, "--json"];
        args.extend(extra);
        let run = Run::from(
            self.command(&args)
                .env("AFTERCARE_LOG", "info")
                .output()
                .expect("run aftercare"),
        )
        .ok();
        let f = serde_json::from_str(&run.stdout).expect("forecast --json prints JSON");
        (f, run.stderr)
    }

    /// Write `lines` to `events.jsonl` and import them.
    pub fn import(&self, lines: &[String]) -> Run {
        self.write("events.jsonl", &(lines.join("\n") + "\n"));
        self.run(&["events", "import", "events.jsonl"])
    }

    /// `run --once --now <now>`.
    pub fn once(&self, now: &str) -> Run {
        self.run(&["run", "--once", "--now", now]).ok()
    }

    pub fn logs_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["logs", "--format", "json"];
        a.extend_from_slice(args);
        let r = self.run(&a).ok();
        serde_json::from_str(&r.stdout).expect("logs --format json prints JSON")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// An order.delivered event line, as the README documents it.
pub fn delivered(id: &str, contact: &str, email: &str, order: &str, at: &str) -> String {
    serde_json::json!({
        "id": id, "type": "order.delivered", "occurred_at": at,
        "contact": {"id": contact, "name": "王芳", "email": email, "locale": "zh-CN", "timezone": "Asia/Shanghai"},
        "data": {"order_id": order}
    })
    .to_string()
}

/// `n` deliveries at `at`: events `evt-<i>` of contacts `c-<i>` (`c<i>@example.com`),
/// orders `SO-<i>`.
pub fn deliveries(n: usize, at: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            delivered(
                &format!("evt-{i}"),
                &format!("c-{i}"),
                &format!("c{i}@example.com"),
                &format!("SO-{i}"),
                at,
            )
        })
        .collect()
}

/// A contact update carrying a birthday (no job is triggered by it).
pub fn birthday(
    id: &str,
    contact: &str,
    name: &str,
    email: &str,
    tz: &str,
    locale: &str,
    date: &str,
) -> String {
    serde_json::json!({
        "id": id, "type": "contact.updated", "occurred_at": "2026-01-01T00:00:00Z",
        "contact": {"id": contact, "name": name, "email": email, "timezone": tz, "locale": locale, "birthday": date},
    })
    .to_string()
}

/// Any event for a contact with attributes.
pub fn event(
    id: &str,
    kind: &str,
    contact: &str,
    email: &str,
    at: &str,
    attributes: serde_json::Value,
    data: serde_json::Value,
) -> String {
    serde_json::json!({
        "id": id, "type": kind, "occurred_at": at,
        "contact": {"id": contact, "email": email, "attributes": attributes}, "data": data,
    })
    .to_string()
}

pub fn reviewed(id: &str, contact: &str, order: &str, at: &str) -> String {
    serde_json::json!({
        "id": id, "type": "review.submitted", "occurred_at": at,
        "contact": {"id": contact}, "data": {"order_id": order, "rating": 5}
    })
    .to_string()
}

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// A real SMTP server: postfix's `smtp-sink`, dumping each accepted message to a file.
pub struct SmtpSink {
    pub port: u16,
    pub dump: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    /// Start on a free port. `flags` are smtp-sink options, e.g. `["-r", "data"]` for 4xx.
    pub fn start(flags: &[&str]) -> SmtpSink {
        let port = free_port();
        SmtpSink::start_on(port, flags)
    }

    pub fn start_on(port: u16, flags: &[&str]) -> SmtpSink {
        assert!(
            Path::new(SMTP_SINK).exists(),
            "these tests need postfix's smtp-sink at {SMTP_SINK}: apt-get install postfix (see .ci/run)"
        );
        let dump = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(SMTP_SINK);
        if is_root() {
            // smtp-sink refuses to run as root; it drops to nobody, who must write the dumps.
            set_mode(dump.path(), 0o777);
            cmd.args(["-u", "nobody"]);
        }
        cmd.args(flags)
            .arg("-d")
            .arg(format!("{}/%Y%m%d%H%M%S.", dump.path().display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("128")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start smtp-sink");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "smtp-sink did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        SmtpSink { port, dump, child }
    }

    /// Message-ID (without angle brackets) → how many times the sink received it. Only the
    /// header block is read: thousands of full MIME parses would dominate a test. smtp-sink
    /// removes a half-received file when the client dies mid-DATA, so a file gone between
    /// the listing and the read was never received.
    pub fn received(&self) -> std::collections::HashMap<String, usize> {
        let mut seen = std::collections::HashMap::new();
        for e in std::fs::read_dir(self.dump.path()).unwrap() {
            let raw = match std::fs::read(e.unwrap().path()) {
                Ok(raw) => raw,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => panic!("reading smtp-sink's dump: {err}"),
            };
            let text = String::from_utf8_lossy(&raw);
            let id = text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("message-id")
                    .then(|| value.trim().trim_matches(['<', '>']).to_string())
            });
            if let Some(id) = id {
                *seen.entry(id).or_insert(0) += 1;
            }
        }
        seen
    }

    /// Every message received so far, parsed.
    pub fn messages(&self) -> Vec<Received> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dump.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        // Names carry the second and a random suffix; the write time orders within a second.
        files.sort_by_key(|p| {
            (
                std::fs::metadata(p).and_then(|m| m.modified()).ok(),
                p.clone(),
            )
        });
        files
            .into_iter()
            .filter_map(|p| {
                let raw = std::fs::read(&p).ok()?;
                let msg = mail_parser::MessageParser::default().parse(&raw)?;
                let message_id = msg.message_id()?.to_string();
                let header = |name: &str| msg.header_raw(name).map(|v| v.trim().to_string());
                let text = String::from_utf8_lossy(&raw);
                let headers = text
                    .lines()
                    .take_while(|l| !l.trim_end_matches('\r').is_empty())
                    .collect::<Vec<_>>()
                    .join("\n");
                Some(Received {
                    to_name: msg
                        .to()
                        .and_then(|a| a.first())
                        .and_then(|a| a.name())
                        .map(str::to_string),
                    headers,
                    list_unsubscribe: header("List-Unsubscribe"),
                    list_unsubscribe_post: header("List-Unsubscribe-Post"),
                    message_id,
                    subject: msg.subject().unwrap_or_default().to_string(),
                    to: msg
                        .to()
                        .and_then(|a| a.first())
                        .and_then(|a| a.address())
                        .unwrap_or_default()
                        .to_string(),
                    text: msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
                    html: msg.body_html(0).map(|t| t.into_owned()),
                })
            })
            .collect()
    }

    pub fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

/// A process ended when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    /// Without angle brackets.
    pub message_id: String,
    /// The recipient's display name, decoded.
    pub to_name: Option<String>,
    /// The header block as the server received it (smtp-sink's dump line prefix included).
    pub headers: String,
    pub list_unsubscribe: Option<String>,
    pub list_unsubscribe_post: Option<String>,
    pub subject: String,
    pub to: String,
    pub text: String,
    pub html: Option<String>,
}

/// Whether `f` came to hold within `within`, asked again at a growing interval (10 ms,
/// doubling up to 200 ms: a quick answer is seen at once, a slow one is not asked hundreds
/// of times). For a test that must see what a process has done rather than guess it from
/// time; [`wait_for`] when a plain message says enough, this when the failure should show
/// what the test saw (a log, a page).
pub fn until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    let mut pauses = pauses();
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pauses.next().unwrap_or(MAX_PAUSE));
    }
    true
}

const MAX_PAUSE: Duration = Duration::from_millis(200);

/// The pauses between asks of [`until`] and [`until_async`]: 10 ms, doubling up to 200 ms.
fn pauses() -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(Duration::from_millis(10)), |p| {
        Some((*p * 2).min(MAX_PAUSE))
    })
}

/// [`until`] for a question asked with `.await` (a browser, a database), sleeping on the
/// test's runtime between asks.
pub async fn until_async<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    let mut pauses = pauses();
    while !f().await {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pauses.next().unwrap_or(MAX_PAUSE)).await;
    }
    true
}

/// Wait until `f` holds; panics naming `what` after `within`.
#[track_caller]
pub fn wait_for(what: &str, within: Duration, f: impl FnMut() -> bool) {
    assert!(until(within, f), "timed out waiting for {what}");
}

/// Wait for `child` to exit; its exit code (-1 for a signal). Panics after `within`.
#[track_caller]
pub fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let mut status = None;
    wait_for("the process to exit", within, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.and_then(|s| s.code()).unwrap_or(-1)
}

/// Wait until the daemon `child` serves its API at `base`: `/readyz` answers 200 with its own
/// `ready` (a port taken by something else must not pass for it), and fails at once if the
/// daemon has exited. Panics with `what` after `within`.
pub fn wait_for_api(child: &mut Child, base: &str, within: Duration, what: &str) {
    let client = reqwest::blocking::Client::new();
    wait_for(what, within, || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the daemon exited before it was ready: {status}");
        }
        client
            .get(format!("{base}/readyz"))
            .send()
            .is_ok_and(|r| r.status() == 200 && r.text().is_ok_and(|t| t.starts_with("ready")))
    });
}

/// A port for a process the test starts (a daemon, smtp-sink, PostgreSQL), which must be
/// named before that process binds it. Not a port-0 bind's port: those come from the
/// kernel's ephemeral range, which every in-process stub also draws from, so a port found
/// free there could be handed to another test's stub before the daemon bound it (it
/// happened: a daemon lost its port to an SMS gateway stub, and the stub answered the
/// test's readiness probe and page requests). Ports come from just below the ephemeral
/// range instead, from one counter per test process offset by its pid, each checked free
/// on 127.0.0.1 before it is handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    // Stay above the registered services people run on a development machine (PostgreSQL's
    // 5432, 8080 and friends); a range too narrow to pick from falls back to the kernel.
    let low = ephemeral_low.saturating_sub(12_000).max(10_000);
    let span = ephemeral_low.saturating_sub(low);
    if span < 1_000 {
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    let offset = std::process::id().wrapping_mul(97) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(low + (offset + n) % span).expect("below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{ephemeral_low}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The shipped jobs and templates as a `Playbook`, for tests that plan through the library
/// rather than the binary.
pub fn shipped_playbook() -> aftercare::playbook::Playbook {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (templates, _) =
        aftercare::templates::TemplateSet::load(&root.join("message_templates"), "zh-CN");
    let (jobs, diags) = aftercare::jobs::load(&root.join("jobs"), &templates, None);
    assert!(!diags.has_errors(), "{diags}");
    aftercare::playbook::Playbook {
        jobs: std::sync::Arc::new(jobs),
        templates: std::sync::Arc::new(templates),
        default_timezone: chrono_tz::Asia::Shanghai,
        default_locale: "zh-CN".into(),
        expire_after: None,
        policy: aftercare::policy::PolicyConfig::default(),
        unsubscribe: None,
        webhook_enabled: false,
        public_url: None,
    }
}

/// `mod sqlite { #[test] fn NAME() }` and `mod postgres { … }` for each `fn NAME(Backend)`:
/// one body, both stores.
#[allow(unused_macros)]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(super::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(super::Backend::Postgres) })*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both;

/// [`on_both`] for `async fn NAME(Backend)` bodies (`#[tokio::test]`).
#[allow(unused_macros)]
macro_rules! on_both_async {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_async;

/// A fresh, migrated store on `b`: a SQLite file in a temporary folder (dropped with the
/// returned `TempDir`) or a new PostgreSQL database on the harness's server.
pub async fn open_store(
    b: Backend,
) -> (
    aftercare::store::Store,
    aftercare::store::StoreConfig,
    Option<tempfile::TempDir>,
) {
    use aftercare::store::{SqliteSync, Store, StoreConfig};
    let (cfg, dir) = match b {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            (
                StoreConfig::Sqlite {
                    path: dir.path().join("aftercare.db"),
                    synchronous: SqliteSync::Normal,
                },
                Some(dir),
            )
        }
        Backend::Postgres => (
            StoreConfig::Postgres {
                url: pg::fresh_database(),
                password: aftercare::values::Secret::None,
            },
            None,
        ),
    };
    let s = Store::connect(&cfg).await.unwrap();
    s.migrate().await.unwrap();
    (s, cfg, dir)
}

/// The queue PostgreSQL's triggers keep (`message_queue`, migrations/*/0010) holds exactly
/// the scheduled, retrying and claimed messages, as `store check` counts it.
pub async fn assert_queue_whole(store: &aftercare::store::Store) {
    let r = store.check().await.expect("store check");
    let queue = r
        .references
        .iter()
        .find(|(what, _)| what.starts_with("message_queue"));
    assert_eq!(queue.map(|(_, n)| *n), Some(0), "{:?}", r.references);
}

/// The changes to an address's suppression, oldest first: (change, reason, actor).
pub async fn history(
    store: &aftercare::store::Store,
    channel: &str,
    address: &str,
) -> Vec<(String, String, String)> {
    store
        .suppression_changes(channel, address)
        .await
        .expect("the history")
        .into_iter()
        .map(|(change, reason, actor, _)| (change, reason, actor))
        .collect()
}

/// A process's stderr, line by line, as a thread reads it.
pub type Log = Arc<Mutex<Vec<String>>>;

/// Spawn `cmd` (stdout discarded) with its stderr read into a [`Log`] on a thread, so the pipe
/// never fills: for a test that must see what the daemon has done, not guess it from time.
/// The caller sets `AFTERCARE_LOG` (info, debug) and anything else the command needs.
pub fn spawn_logged(cmd: &mut Command) -> (Child, Log) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the aftercare binary");
    let log: Log = Arc::default();
    let stderr = child.stderr.take().expect("piped stderr");
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
        }
    });
    (child, log)
}
