//! The malformed-input corpus (tests/corpus/, written by tests/corpus/make.py), run through
//! the real binary: every broken job file through `validate`, every bad event through
//! `events import` (alone, and all in one file between good ones) and `POST /v1/events`.
//! For each: the exit code or status, a place that points at the right line, no panic, and a
//! bounded time. The cases too large to commit are made here.

mod common;

use common::Workspace;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Generous for a debug build on a busy machine; a hang is what this catches.
const BOUND: Duration = Duration::from_secs(10);

fn corpus(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(rel)
}

/// Run `validate` with `bytes` as `jobs/<name>` and check the first error at `where_`
/// (`line` or `line:col`, or `line:` for a line with any column) holds `piece`.
fn check_job(ws: &Workspace, name: &str, bytes: &[u8], where_: &str, piece: &str) {
    let path = ws.path(&format!("jobs/{name}"));
    std::fs::write(&path, bytes).unwrap();
    let started = Instant::now();
    let r = ws.run(&["validate"]);
    let took = started.elapsed();
    std::fs::remove_file(&path).unwrap();
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(r.code, 1, "{name}: exit {}\n{all}", r.code);
    assert!(!all.contains("panicked"), "{name}: {all}");
    assert!(took < BOUND, "{name}: took {took:?}");
    let at = if where_.contains(':') {
        format!("jobs/{name}:{where_}")
    } else {
        format!("jobs/{name}:{where_}:")
    };
    let found = r
        .stdout
        .lines()
        .any(|l| l.starts_with(&at) && l.contains(": error: ") && l.contains(piece));
    assert!(
        found,
        "{name}: want an error at {at} with {piece:?} in\n{all}"
    );
}

#[test]
fn every_broken_job_file_is_an_error_at_its_line() {
    let ws = Workspace::new(None);
    let manifest = std::fs::read_to_string(corpus("jobs/MANIFEST")).unwrap();
    let mut n = 0;
    for line in manifest.lines().filter(|l| !l.is_empty()) {
        let mut f = line.splitn(3, '\t');
        let (name, where_, piece) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap_or(""));
        let bytes = std::fs::read(corpus(&format!("jobs/{name}"))).unwrap();
        check_job(&ws, name, &bytes, where_, piece);
        n += 1;
    }

    // Too large to commit: a file past the size limit (refused where it crosses it), nesting
    // thousands deep in both styles, a flood of empty documents, a wide alias.
    let limit = 1024 * 1024;
    let mut huge = String::from("id: huge\n");
    while huge.len() <= limit + 4096 {
        huge.push_str("# a comment line that makes this file larger than any job should be\n");
    }
    let line = huge.as_bytes()[..limit]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1;
    check_job(
        &ws,
        "huge.yaml",
        huge.as_bytes(),
        &format!("{line}:"),
        "larger than 1024 KiB",
    );
    let one_line = format!("id: a\ndescription: {}\n", "x".repeat(3 * limit));
    check_job(
        &ws,
        "huge-line.yaml",
        one_line.as_bytes(),
        &format!("2:{}", limit - "id: a\n".len() + 1),
        "larger than",
    );
    let flow = format!("id: a\nd: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
    check_job(
        &ws,
        "deep-flow.yaml",
        flow.as_bytes(),
        "2:68",
        "nesting deeper than 64",
    );
    let mut block = String::from("id: a\n");
    for depth in 0..500 {
        block.push_str(&format!("{}k{depth}:\n", "  ".repeat(depth)));
    }
    check_job(
        &ws,
        "deep-block.yaml",
        block.as_bytes(),
        "66:",
        "nesting deeper than 64",
    );
    let seqs = format!(
        "id: a\nd:\n{}",
        (0..300)
            .map(|i| format!("{}- \n", "  ".repeat(i)))
            .collect::<String>()
    );
    check_job(
        &ws,
        "deep-dashes.yaml",
        seqs.as_bytes(),
        "66:",
        "nesting deeper than 64",
    );
    check_job(
        &ws,
        "documents.yaml",
        "---\n".repeat(100_000).as_bytes(),
        "1:1",
        "holds no job",
    );
    let wide = format!(
        "a: &a [{}]\nb: [{}]\n",
        vec!["x"; 1000].join(", "),
        vec!["*a"; 1000].join(", ")
    );
    check_job(&ws, "alias-flood.yaml", wide.as_bytes(), "2:", "alias bomb");
    n += 7;
    assert!(
        n >= 40,
        "the corpus has {n} job files; it should have at least 40"
    );
}

/// `(line, field, piece)` of the events manifest; field `-` is a line-level problem.
fn event_cases() -> Vec<(usize, String, String)> {
    std::fs::read_to_string(corpus("events/MANIFEST"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            (
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap().to_string(),
                f.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The report `events import` gives for line `line` of `file`: `FILE:LINE: field: …`.
fn reported(stderr: &str, file: &str, line: usize, field: &str, piece: &str) -> bool {
    let at = if field == "-" {
        format!("{file}:{line}: ")
    } else {
        format!("{file}:{line}: {field}: ")
    };
    stderr
        .lines()
        .any(|l| l.starts_with(&at) && l.contains(piece))
}

#[test]
fn every_bad_event_is_refused_at_its_line_and_field() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    let cases = event_cases();
    let all = std::fs::read(corpus("events/bad.jsonl")).unwrap();
    let lines: Vec<&[u8]> = all.split(|b| *b == b'\n').collect();

    // All in one file, each bad line between good ones.
    std::fs::write(ws.path("bad.jsonl"), &all).unwrap();
    let started = Instant::now();
    let r = ws.run(&["events", "import", "bad.jsonl"]);
    assert!(started.elapsed() < BOUND * 3);
    assert_eq!(r.code, 1);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    for (line, field, piece) in &cases {
        assert!(
            reported(&r.stderr, "bad.jsonl", *line, field, piece),
            "line {line}: want {field}: …{piece}… in\n{}",
            r.stderr
        );
    }
    assert!(
        r.stdout.starts_with(&format!(
            "bad.jsonl: {} accepted, 0 duplicate, {} rejected",
            cases.len(),
            cases.len()
        )),
        "{}",
        r.stdout
    );

    // Each alone, after one good line (a byte order mark is only taken on line 1).
    for (line, field, piece) in &cases {
        let good = lines[line - 2];
        std::fs::write(
            ws.path("one.jsonl"),
            [good, b"\n", lines[line - 1], b"\n"].concat(),
        )
        .unwrap();
        let started = Instant::now();
        let r = ws.run(&["events", "import", "one.jsonl"]);
        assert!(started.elapsed() < BOUND, "line {line}");
        assert_eq!(r.code, 1, "line {line}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(
            reported(&r.stderr, "one.jsonl", 2, field, piece),
            "line {line}: {}",
            r.stderr
        );
    }

    // Too large to commit: a 10 MiB line (skipped unread past the limit) and data nested
    // far past serde_json's recursion limit, between good lines.
    let mut big = Vec::new();
    big.extend_from_slice(lines[0]);
    big.push(b'\n');
    big.extend_from_slice(b"{\"id\":\"");
    big.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    big.extend_from_slice(b"\"}\n");
    big.extend_from_slice(b"{\"id\":\"e\",\"data\":");
    big.extend(std::iter::repeat_n(b'[', 100_000));
    big.extend(std::iter::repeat_n(b']', 100_000));
    big.extend_from_slice(b"}\n");
    std::fs::write(ws.path("big.jsonl"), &big).unwrap();
    let started = Instant::now();
    let r = ws.run(&["events", "import", "big.jsonl"]);
    assert!(started.elapsed() < BOUND);
    assert_eq!(r.code, 1);
    assert!(
        reported(&r.stderr, "big.jsonl", 2, "-", "longer than 1 MiB"),
        "{}",
        r.stderr
    );
    assert!(
        reported(&r.stderr, "big.jsonl", 3, "-", "recursion limit"),
        "{}",
        r.stderr
    );
    assert!(cases.len() + 2 >= 40);
}

#[test]
fn the_api_refuses_every_bad_event_with_400_and_its_field() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    let port = common::free_port();
    ws.write_config(
        None,
        &format!(
            "api:\n  listen: 127.0.0.1:{port}\n  max_body: 1MiB\n  tokens: [{{name: shop, scope: ingest, token_env: T}}]\n"
        ),
    );
    let mut child = ws
        .command(&["run"])
        .env("T", "ingest-token-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/events");
    common::wait_for_api(
        &mut child,
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(30),
        "the API did not come up",
    );
    let all = std::fs::read(corpus("events/bad.jsonl")).unwrap();
    let lines: Vec<&[u8]> = all.split(|b| *b == b'\n').collect();
    for (line, field, piece) in event_cases() {
        let started = Instant::now();
        let r = client
            .post(&url)
            .bearer_auth("ingest-token-0123456789")
            .body(lines[line - 1].to_vec())
            .send()
            .unwrap();
        assert!(started.elapsed() < BOUND);
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(status, 400, "line {line}: {body}");
        if field != "-" {
            let detail = body["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains(&format!("{field}: ")) && detail.contains(&piece),
                "line {line}: want {field}: …{piece}… in {body}"
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
