//! The README's examples are the shipped files and real commands, so they cannot rot.

mod common;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The fenced blocks of one language.
fn blocks(lang: &str) -> Vec<String> {
    let text = readme();
    let fence = format!("```{lang}\n");
    text.split(&fence)
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

#[test]
fn the_job_example_is_the_shipped_job() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/jobs/review-request.yaml"
    ))
    .unwrap();
    assert!(
        blocks("yaml").contains(&shipped),
        "README's job example differs from jobs/review-request.yaml"
    );
}

#[test]
fn the_config_example_is_a_valid_config() {
    let ws = common::Workspace::new(None);
    let config = blocks("yaml")
        .into_iter()
        .find(|b| b.starts_with("store:"))
        .expect("a config example");
    ws.write("config/aftercare.yaml", &config);
    // Like the shipped config, the example lives in config/ and points at ../jobs.
    let out = std::process::Command::new(common::BIN)
        .current_dir(ws.dir.path())
        .args(["--config", "config/aftercare.yaml", "validate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_event_example_is_accepted() {
    let json = blocks("json").into_iter().next().expect("an event example");
    let one_line = json.lines().map(str::trim).collect::<Vec<_>>().join("");
    let ws = common::Workspace::new(None);
    let r = ws.import(&[one_line]).ok();
    assert!(r.stdout.contains("1 accepted"), "{}", r.stdout);
}

#[test]
fn the_documented_commands_exist() {
    let ws = common::Workspace::new(None);
    for cmd in [
        &["run", "--help"][..],
        &["validate", "--help"],
        &["preview", "--help"],
        &["events", "import", "--help"],
        &["logs", "--help"],
        &["migrate", "--help"],
        &["store", "copy", "--help"],
    ] {
        ws.run(cmd).ok();
    }
    let help = ws.run(&["--help"]).ok().stdout;
    assert!(
        help.contains("Exit codes: 0 ok, 1 invalid input, 2 usage error, 3 store unreachable.")
    );
}
