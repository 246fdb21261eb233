//! The OpenAPI document against the API it describes: schemathesis (PyPI; `.ci/run` installs
//! it) generates requests from the running daemon's `/openapi.json` and runs every check on
//! the answers: no 5xx, every status and content type documented, response bodies matching
//! their schemas, requests the schema calls valid accepted and the ones it calls invalid
//! refused, authentication honoured, unsupported methods refused with 405.
//!
//! Settings and hooks are in tests/schemathesis/ (a format strategy for phone numbers, and 413
//! counted as a refusal).

mod common;

use common::Workspace;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const ADMIN: &str = "admin-token-0123456789ab";

#[test]
fn schemathesis_finds_nothing_the_schema_and_the_api_disagree_on() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let st = Command::new("st").arg("--version").output();
    assert!(
        st.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs schemathesis' `st` on PATH: python3 -m pip install schemathesis (see .ci/run)"
    );
    let ws = Workspace::new(None);
    // A job that plans nothing at ingest: every event the schema allows is accepted (a dedupe
    // key an event cannot fill is a 400 the schema cannot foresee; tests/hostile.rs has it).
    ws.keep_jobs(&["birthday-greeting"]);
    let port = common::free_port();
    ws.write_config(
        None,
        &format!(
            "api:\n  listen: 127.0.0.1:{port}\n  max_events: 20\n  tokens: [{{name: ops, scope: admin, token_env: T}}]\n\
             unsubscribe:\n  url: \"https://shop.example.com/u/{{token}}\"\n  key_env: T_UNSUB\n"
        ),
    );
    let mut daemon = ws
        .command(&["run"])
        .env("T", ADMIN)
        .env("T_UNSUB", "unsubscribe-key-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_for_api(
        &mut daemon,
        &base,
        Duration::from_secs(30),
        "the API did not come up",
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let out = Command::new("st")
        .current_dir(&dir)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &dir)
        .args([
            "run",
            &format!("{base}/openapi.json"),
            "--checks",
            "all",
            "--max-examples",
            "60",
            "--header",
            &format!("Authorization: Bearer {ADMIN}"),
            "--no-color",
        ])
        .output()
        .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" passed"), "{text}");
}
