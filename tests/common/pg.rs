//! A real PostgreSQL server for the tests, started by the harness itself from the binaries
//! on the machine (`initdb` and `postgres` of the newest `/usr/lib/postgresql/<v>/bin`, or
//! `$AFTERCARE_PG_BIN`), so that every store test runs against the database we ship for,
//! not a mock and not a server somebody has to remember to start.
//!
//! One server per test process, started on first use in a temporary folder on a free port
//! and shared through a `OnceLock`; one fresh database per test ([`fresh_database`]).
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user
//! (std's `Command::uid`/`gid`, which also drops root's supplementary groups). The server is
//! a direct child in our process group (not daemonised by `pg_ctl`), stopped by an `atexit`
//! hook when the test process exits (fast shutdown, then the folder is removed); a Ctrl-C
//! reaches it through the process group.
//!
//! Fsync is off: these databases are thrown away, and durability is SQLite's and
//! PostgreSQL's business, not what these tests check.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const INSTALL: &str = "the PostgreSQL tests need the server binaries (initdb, postgres, psql): \
     apt-get install postgresql (see .ci/run), or set AFTERCARE_PG_BIN to the folder holding initdb";

/// The running server of this test process.
struct Server {
    bin: PathBuf,
    port: u16,
    /// The temporary folder holding the data directory, the socket and the log.
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A new, empty database on this process's server: `postgres://postgres@127.0.0.1:PORT/tN`.
/// Starts the server on first use.
pub fn fresh_database() -> String {
    let s = server();
    let name = format!("t{}", NEXT_DB.fetch_add(1, Ordering::Relaxed));
    s.psql("postgres", &format!("CREATE DATABASE {name}"));
    s.url(&name)
}

/// Run SQL on a database of the test server (superuser); returns psql's unaligned output.
pub fn psql(url: &str, sql: &str) -> String {
    let db = url.rsplit('/').next().expect("a database in the URL");
    server().psql(db, sql)
}

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let s = Server::start();
        // SAFETY: `stop_at_exit` is a plain `extern "C" fn` without arguments, as atexit
        // expects; it only touches the `SERVER` static, which outlives it.
        let registered = unsafe { atexit(stop_at_exit) };
        assert_eq!(registered, 0, "atexit failed");
        s
    })
}

impl Server {
    fn start() -> Server {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("aftercare-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL")
            .keep();
        let owner = if super::is_root() {
            let owner = (id("-u"), id("-g"));
            std::os::unix::fs::chown(&dir, Some(owner.0), Some(owner.1))
                .expect("chown the PostgreSQL folder to postgres");
            Some(owner)
        } else {
            None
        };
        let as_owner = |program: &str| {
            let mut c = Command::new(bin.join(program));
            c.current_dir(&dir);
            if let Some((uid, gid)) = owner {
                c.uid(uid).gid(gid);
            }
            c
        };
        let data = dir.join("data");
        let out = as_owner("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb in {}: {e}", bin.display()));
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A free port can be taken between our probe and the server's bind: try a few.
        for _ in 0..5 {
            let port = super::free_port();
            let log = dir.join(format!("server-{port}.log"));
            let child = as_owner("postgres")
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(&dir)
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=400"])
                .stdin(Stdio::null())
                .stdout(File::create(&log).expect("server log"))
                .stderr(File::create(&log).expect("server log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start postgres in {}: {e}", bin.display()));
            let server = Server {
                bin: bin.clone(),
                port,
                dir: dir.clone(),
                child: Mutex::new(Some(child)),
            };
            if server.wait_ready(&log) {
                return server;
            }
        }
        panic!(
            "PostgreSQL did not start; see the logs in {}",
            dir.display()
        );
    }

    /// Wait until the server accepts queries; `false` if it exited (port taken).
    fn wait_ready(&self, log: &Path) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            let mut child = self.child.lock().unwrap();
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                *child = None;
                eprintln!(
                    "postgres exited ({status}) on port {}:\n{}",
                    self.port,
                    std::fs::read_to_string(log).unwrap_or_default()
                );
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not accept connections within 30s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg(self.url(db))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}\n{INSTALL}"));
        assert!(
            out.status.success(),
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Fast shutdown (open sessions are ended), then the folder goes.
    fn stop(&self) {
        let taken = self
            .child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(mut child) = taken else {
            return;
        };
        let pid = i32::try_from(child.id()).expect("a pid fits in i32");
        // SAFETY: kill has no memory preconditions; the pid is our own child, not yet reaped.
        unsafe { kill(pid, SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

extern "C" fn stop_at_exit() {
    if let Some(s) = SERVER.get() {
        s.stop();
    }
}

const SIGINT: i32 = 2;

unsafe extern "C" {
    fn atexit(cb: extern "C" fn()) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}

/// The folder with `initdb`: `$AFTERCARE_PG_BIN`, else the newest installed major version.
/// The folder of the PostgreSQL binaries the tests use (pg_dump, pg_restore, ...).
pub fn bin() -> PathBuf {
    bin_dir()
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AFTERCARE_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").exists(),
            "AFTERCARE_PG_BIN={} holds no initdb; {INSTALL}",
            dir.display()
        );
        return dir;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!("no /usr/lib/postgresql/*/bin/initdb: {INSTALL}"),
    }
}

/// `id -u postgres` / `id -g postgres`: the user the server runs as when we are root.
fn id(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("run id");
    assert!(
        out.status.success(),
        "running as root, the PostgreSQL tests need a `postgres` user to run the server as \
         (PostgreSQL refuses root); it comes with the postgresql package: {INSTALL}"
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a numeric id")
}
