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

/// The email feedback section's config block (bounces, reputation, pacing, DKIM,
/// webhooks) is valid in the shipped config's place of `email:`.
#[test]
fn the_email_feedback_example_is_valid() {
    let block = blocks("yaml")
        .into_iter()
        .find(|b| b.starts_with("email:") && b.contains("reputation:"))
        .expect("the email feedback example");
    let ws = common::Workspace::new(None);
    // With `unsubscribe:`, as shipped (without it `validate` warns of the missing header).
    ws.write_config(None, "unsubscribe: {url: \"https://shop.example.com/u/{token}\", mailto: unsubscribe@example.com, key_file: data/unsubscribe.key}\n");
    let config = std::fs::read_to_string(ws.path("aftercare.yaml")).unwrap();
    let (head, rest) = config.split_once("email:\n").unwrap();
    // The shipped workspace's own email lines (transport, file) follow its `email:` key.
    let tail: String = rest
        .lines()
        .skip_while(|l| l.starts_with("  "))
        .map(|l| format!("{l}\n"))
        .collect();
    ws.write("dkim.pem", "not read by validate");
    ws.write(
        "sendgrid-webhook.pub",
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
    );
    ws.write("aftercare.yaml", &format!("{head}{block}{tail}"));
    let r = ws.run(&["validate"]);
    assert!(
        r.code == 0 && r.stdout.contains("0 error(s), 0 warning(s)"),
        "{}{}",
        r.stdout,
        r.stderr
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
        &["answer", "--help"],
        &["report", "conversions", "--help"],
        &["report", "nps", "--help"],
        &["report", "csat", "--help"],
        &["report", "answers", "--help"],
        &["bounces", "ingest", "--help"],
        &["bounces", "list", "--help"],
        &["jobs", "brakes", "--help"],
        &["jobs", "resume", "--help"],
        &["console", "passwd", "--help"],
    ] {
        ws.run(cmd).ok();
    }
    let help = ws.run(&["--help"]).ok().stdout;
    assert!(
        help.contains("Exit codes: 0 ok, 1 invalid input, 2 usage error, 3 store unreachable.")
    );
}

/// The SMS section: its config block is the shipped config's `sms:` section, and its job
/// example validates against it.
#[test]
fn the_sms_examples_are_the_shipped_gateways_and_a_valid_job() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/aftercare.yaml"
    ))
    .unwrap();
    let sms = blocks("yaml")
        .into_iter()
        .find(|b| b.starts_with("sms:"))
        .expect("an sms: example");
    assert!(
        shipped.contains(&sms),
        "README's sms: block differs from the shipped config's"
    );
    let job = blocks("yaml")
        .into_iter()
        .find(|b| b.starts_with("id: review-request-sms"))
        .expect("an SMS job example");
    let ws = common::Workspace::new(None);
    ws.write("jobs/review-request-sms.yaml", &job);
    ws.write_config(None, &sms);
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("review-request-sms"), "{}", r.stdout);
}

/// The log excerpt of the SMS section is what `logs` prints for that story: Aliyun busy,
/// the backup gateway refusing the number, the email going out.
#[test]
fn the_sms_log_example_is_what_logs_prints() {
    use common::provider::{Reply, Stub};
    let aliyun = Stub::spawn(|_, _| Reply::status(503));
    let backup = Stub::spawn(|_, _| {
        Reply::json(
            400,
            serde_json::json!({"code": 40001, "msg": "invalid mobile"}),
        )
    });
    let sink = common::SmtpSink::start(&[]);
    let ws = common::Workspace::new(Some(sink.port));
    ws.keep_jobs(&[]);
    let job = blocks("yaml")
        .into_iter()
        .find(|b| b.starts_with("id: review-request-sms"))
        .unwrap();
    ws.write("jobs/review-request-sms.yaml", &job);
    ws.write("aliyun.secret", "s3cret-value");
    ws.write("backup.token", "t0ken-value");
    ws.write_config(
        Some(sink.port),
        &format!(
            "sms:\n  route: [aliyun, http-backup]\n  gateways:\n    \
             aliyun: {{kind: aliyun, access_key_id: LTAI, access_key_secret_file: aliyun.secret, sign_name: 示例商店, base_url: \"{}\"}}\n    \
             http-backup: {{kind: http, url: \"{}/send\", headers: {{Authorization: \"Bearer {{{{secret}}}}\"}}, secret_file: backup.token, \
             body: '{{\"to\":\"{{{{to}}}}\",\"text\":\"{{{{body}}}}\"}}', success: {{status: 200, pointer: /code, equals: \"0\"}}, message_pointer: /msg}}\n",
            aliyun.url, backup.url
        ),
    );
    let event = blocks("json").into_iter().next().unwrap();
    let one_line = event.lines().map(str::trim).collect::<Vec<_>>().join("");
    ws.import(&[one_line]).ok();
    ws.once("2026-11-23T10:00:00+08:00");
    let printed = normalise_ids(&ws.run(&["logs"]).ok().stdout);
    let example = blocks("")
        .into_iter()
        .find(|b| b.contains("review-request-sms  step 0"))
        .expect("the SMS log example");
    for line in example.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            printed.contains(line),
            "README line not printed by logs:\n{line}\nlogs:\n{printed}"
        );
    }
}

/// Message ids (ULIDs, 26 lower-case characters from `01`) as the README writes them, `01m83…`.
fn normalise_ids(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .count();
        if run == 26 && chars[i] == '0' && chars[i + 1] == '1' {
            out.push_str("01m83…");
            i += run;
        } else if run > 0 {
            out.extend(&chars[i..i + run]);
            i += run;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn the_detractor_callback_example_is_the_shipped_job() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/jobs/detractor-callback.yaml"
    ))
    .unwrap();
    assert!(
        blocks("yaml").contains(&shipped),
        "README's detractor-callback example differs from jobs/detractor-callback.yaml"
    );
}

/// The tour, on the shipped config, jobs, templates and demo events: the Monday survey goes
/// out, an answer of 3 plans the detractor callback, and the reports count it.
#[test]
fn the_tour_answers_a_survey_and_plans_a_detractor_callback() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for sub in ["config", "jobs", "message_templates", "examples"] {
        copy(&root.join(sub), &dir.path().join(sub));
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .current_dir(dir.path())
            .env("AFTERCARE_CONFIG", "config/aftercare.yaml")
            .env("AFTERCARE_LOG", "error")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    run(&["events", "import", "examples/events/demo.jsonl"]);
    run(&["run", "--once", "--now", "2026-11-23T10:00:00+08:00"]);
    let survey = run(&[
        "logs",
        "--contact",
        "chen.jing@example.com",
        "--format",
        "json",
    ]);
    assert!(
        survey.contains("\"nps-survey\"") && survey.contains("\"sent\""),
        "{survey}"
    );
    let answered = run(&[
        "answer",
        "--job",
        "nps-survey",
        "--contact",
        "chen.jing@example.com",
        "3",
        "--comment",
        "取车等了四十分钟",
        "--now",
        "2026-11-23T12:00:00+08:00",
    ]);
    assert!(
        answered.starts_with("recorded: contact c-99 answered 3 (nps) to nps-survey")
            && answered.ends_with("saying \"取车等了四十分钟\"; 1 message(s) planned\n"),
        "{answered}"
    );
    let tasks = run(&["callbacks"]);
    assert!(
        tasks.contains("detractor-callback  陈静 chen.jing@example.com"),
        "{tasks}"
    );
    let nps = run(&[
        "report",
        "nps",
        "--job",
        "nps-survey",
        "--since",
        "2026-11-01",
        "--until",
        "2026-12-01",
    ]);
    assert!(nps.contains("total               1        1"), "{nps}");
    let answers = run(&[
        "report",
        "answers",
        "--job",
        "nps-survey",
        "--score-lte",
        "6",
        "--since",
        "2026-11-01",
        "--until",
        "2026-12-01",
    ]);
    assert!(
        answers.contains("c-99 陈静  via cli  \"取车等了四十分钟\""),
        "{answers}"
    );
}

fn copy(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}
