//! Email that keeps landing in the inbox (issue 12): bounces and complaints from the SMTP
//! conversation and from reports, the suppressions they make and undo, the reputation
//! brake, and pacing per destination. The real binary, a scripted SMTP server that refuses
//! the recipients a test names, the store of `AFTERCARE_TEST_STORE`. Time moves only
//! through `--now`.

mod common;

use common::smtp_script::{Script, ScriptedSmtp};
use common::{Run, Workspace, delivered};
use serde_json::Value;

const DELIVERED_AT: &str = "2026-11-20T10:00:00+08:00";
const NOW: &str = "2026-11-23T10:00:00+08:00";

/// The review request only, email to the scripted relay on `port`, `email_extra` inside
/// the `email:` section and `extra` at the top level.
fn mail_workspace(port: u16, email_extra: &str, extra: &str) -> Workspace {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    let dispatch = if extra.contains("dispatch:") {
        ""
    } else {
        "dispatch:\n  retry: {max_attempts: 5, initial: 1m, max: 1h}\n"
    };
    ws.write(
        "aftercare.yaml",
        &format!(
            "store: {{url: \"{}\"}}\njobs_dir: jobs\ntemplates_dir: message_templates\n\
             defaults: {{timezone: Asia/Shanghai, locale: zh-CN}}\n\
             email:\n  from: \"Example Shop <care@example.com>\"\n  transport: smtp\n  \
             smtp: {{host: 127.0.0.1, port: {port}, tls: none, pool_size: 4, timeout: 10s}}\n{email_extra}\
             policy:\n  consent: opt_out\n  caps: []\n  send_window: {{start: \"00:00\", end: \"24:00\"}}\n{dispatch}{extra}",
            ws.store_url
        ),
    );
    ws
}

fn once(ws: &Workspace, now: &str) -> Run {
    ws.run(&["run", "--once", "--now", now]).ok()
}

fn summary(r: &Run) -> &str {
    r.stdout.lines().last().unwrap_or_default()
}

fn suppressions(ws: &Workspace) -> Vec<Value> {
    let r = ws.run(&["suppress", "list", "--format", "json"]).ok();
    serde_json::from_str::<Value>(&r.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn bounces(ws: &Workspace) -> Vec<Value> {
    let r = ws.run(&["bounces", "list", "--format", "json"]).ok();
    serde_json::from_str::<Value>(&r.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The first message of each contact, by contact id.
fn message_of(ws: &Workspace, contact: &str) -> Value {
    ws.logs_json(&["--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["contact_id"] == contact && m["step"] == 0)
        .cloned()
        .unwrap_or_else(|| panic!("no message for {contact}"))
}

fn rcpts(relay: &ScriptedSmtp, who: &str) -> usize {
    relay
        .commands()
        .iter()
        .filter(|c| c.starts_with("RCPT") && c.contains(who))
        .count()
}

#[test]
fn a_550_5_1_1_suppresses_the_address_and_the_next_message_to_it_is_not_sent() {
    let relay = ScriptedSmtp::start(Script {
        rcpt_for: vec![(
            "gone@".into(),
            "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown in virtual mailbox table".into(),
        )],
        ..Script::default()
    });
    let ws = mail_workspace(relay.port, "", "");
    ws.import(&[
        delivered("e1", "c-1", "ok@example.org", "SO-1", DELIVERED_AT),
        delivered("e2", "c-2", "gone@example.org", "SO-2", DELIVERED_AT),
    ])
    .ok();
    let r = once(&ws, NOW);
    assert_eq!(
        summary(&r),
        "1 sent, 0 retrying, 1 failed, 0 cancelled",
        "{}",
        r.stderr
    );

    // Every message goes out with a VERP return path naming it.
    let ok = message_of(&ws, "c-1");
    let id = ok["id"].as_str().unwrap();
    assert!(
        relay
            .commands()
            .contains(&format!("MAIL FROM:<bounces+{id}@example.com>")),
        "{:?}",
        relay.commands()
    );

    let s = suppressions(&ws);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0]["address"], "gone@example.org");
    assert_eq!(s[0]["source"], "smtp");
    assert!(s[0]["expires_at"].is_null());
    let reason = s[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "hard bounce 5.1.1: 550 5.1.1 <gone@example.org>: Recipient address rejected"
        ),
        "{reason}"
    );
    let gone = message_of(&ws, "c-2");
    let b = bounces(&ws);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["kind"], "hard");
    assert_eq!(b[0]["source"], "smtp");
    assert_eq!(b[0]["message_id"], gone["id"]);
    assert_eq!(b[0]["attempt"], 1);
    assert_eq!(b[0]["action"], "suppressed");
    let text = ws.run(&["suppress", "list"]).ok().stdout;
    assert!(
        text.contains("gone@example.org  hard bounce 5.1.1"),
        "{text}"
    );

    // The next job's message to that address is not sent.
    ws.import(&[delivered(
        "e3",
        "c-2",
        "gone@example.org",
        "SO-3",
        "2026-11-21T10:00:00+08:00",
    )])
    .ok();
    let r = once(&ws, "2026-11-24T10:00:00+08:00");
    assert_eq!(
        summary(&r),
        "0 sent, 0 retrying, 0 failed, 1 cancelled",
        "{}",
        r.stderr
    );
    assert_eq!(rcpts(&relay, "gone@"), 1, "asked once, never again");
    let logs = ws.run(&["logs", "--contact", "c-2"]).ok().stdout;
    assert!(
        logs.contains("email: gone@example.org is suppressed (hard bounce 5.1.1"),
        "{logs}"
    );

    // Support undoes it, and the record says who.
    ws.command(&[
        "suppress",
        "remove",
        "email",
        "gone@example.org",
        "--by",
        "agent-7",
    ])
    .output()
    .unwrap();
    assert!(suppressions(&ws).is_empty());
    let h = ws
        .run(&["suppress", "list", "--history", "gone@example.org"])
        .ok()
        .stdout;
    assert!(h.contains("added    by smtp  hard bounce 5.1.1"), "{h}");
    assert!(h.contains("removed  by agent-7  removed by support"), "{h}");
}

#[test]
fn three_452_4_2_2_suppress_for_thirty_days_then_the_address_is_tried_again() {
    let relay = ScriptedSmtp::start(Script {
        rcpt_for: vec![(
            "full@".into(),
            "452 4.2.2 The email account that you tried to reach is over quota".into(),
        )],
        ..Script::default()
    });
    let ws = mail_workspace(relay.port, "", "");
    ws.import(&[delivered(
        "e1",
        "c-1",
        "full@example.org",
        "SO-1",
        DELIVERED_AT,
    )])
    .ok();
    for (i, now) in [
        NOW,
        "2026-11-23T10:10:00+08:00",
        "2026-11-23T12:00:00+08:00",
    ]
    .iter()
    .enumerate()
    {
        let r = once(&ws, now);
        assert_eq!(
            summary(&r),
            "0 sent, 1 retrying, 0 failed, 0 cancelled",
            "try {}: {}",
            i + 1,
            r.stderr
        );
        let s = suppressions(&ws);
        assert_eq!(s.len(), usize::from(i == 2), "after try {}: {s:?}", i + 1);
    }
    let b = bounces(&ws);
    let actions: Vec<&str> = b
        .iter()
        .rev()
        .map(|b| b["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "counted (1 of 3)",
            "counted (2 of 3)",
            "suppressed until 2026-12-23 04:00:00Z"
        ]
    );
    let s = &suppressions(&ws)[0];
    assert_eq!(s["expires_at"], "2026-12-23T04:00:00Z");
    // The list tells a running suppression from an ended one as of the time it is given.
    for (now, shown) in [
        ("2026-12-13T10:00:00+08:00", "[until 2026-12-23 04:00:00Z]"),
        ("2026-12-24T10:00:00+08:00", "[ended 2026-12-23 04:00:00Z]"),
    ] {
        let text = ws.run(&["suppress", "list", "--now", now]).ok().stdout;
        assert!(text.contains(shown), "as of {now}: {text}");
    }
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .starts_with("3 soft bounces within 15d; last: soft bounce 4.2.2: 452 4.2.2"),
        "{s}"
    );

    // The message waiting to retry is not sent while suppressed.
    let r = once(&ws, "2026-11-23T14:00:00+08:00");
    assert_eq!(
        summary(&r),
        "0 sent, 0 retrying, 0 failed, 1 cancelled",
        "{}",
        r.stderr
    );

    // The mailbox is emptied; within the 30 days nothing goes, after them it does.
    relay.set(|s| s.rcpt_for.clear());
    ws.import(&[
        delivered(
            "e2",
            "c-1",
            "full@example.org",
            "SO-2",
            "2026-12-10T10:00:00+08:00",
        ),
        delivered(
            "e3",
            "c-1",
            "full@example.org",
            "SO-3",
            "2026-12-21T10:00:00+08:00",
        ),
    ])
    .ok();
    let r = once(&ws, "2026-12-13T10:00:00+08:00");
    assert_eq!(
        summary(&r),
        "0 sent, 0 retrying, 0 failed, 1 cancelled",
        "{}",
        r.stderr
    );
    let r = once(&ws, "2026-12-24T10:00:00+08:00");
    assert_eq!(
        summary(&r),
        "1 sent, 0 retrying, 0 failed, 0 cancelled",
        "{}",
        r.stderr
    );
    assert_eq!(relay.messages().len(), 1);
}

#[test]
fn qqs_550_frequency_limited_is_retried_later_and_suppresses_nothing() {
    let relay = ScriptedSmtp::start(Script {
        rcpt_for: vec![(
            "@qq.com".into(),
            "550 Ip frequency limited. http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000722".into(),
        )],
        ..Script::default()
    });
    let ws = mail_workspace(relay.port, "", "");
    ws.import(&[
        delivered("e1", "c-1", "10001@qq.com", "SO-1", DELIVERED_AT),
        delivered("e2", "c-2", "li@example.org", "SO-2", DELIVERED_AT),
    ])
    .ok();
    let r = once(&ws, NOW);
    assert_eq!(
        summary(&r),
        "1 sent, 1 retrying, 0 failed, 0 cancelled",
        "{}",
        r.stderr
    );
    assert!(suppressions(&ws).is_empty());
    let m = message_of(&ws, "c-1");
    assert_eq!(m["state"], "retrying");
    let reason = m["reason"].as_str().unwrap();
    assert!(reason.contains("550 Ip frequency limited"), "{reason}");
    // The domain backs off a minute: the retry is not before then.
    let due: chrono::DateTime<chrono::Utc> = m["due_at"].as_str().unwrap().parse().unwrap();
    let now: chrono::DateTime<chrono::Utc> = NOW.parse().unwrap();
    assert!(due >= now + chrono::Duration::minutes(1), "{due}");

    relay.set(|s| s.rcpt_for.clear());
    let r = once(&ws, "2026-11-23T11:00:00+08:00");
    assert_eq!(
        summary(&r),
        "1 sent, 0 retrying, 0 failed, 0 cancelled",
        "{}",
        r.stderr
    );
    assert!(suppressions(&ws).is_empty());
}

#[test]
fn a_throttled_domain_waits_and_the_others_are_not_delayed() {
    let relay = ScriptedSmtp::start(Script::default());
    let ws = mail_workspace(
        relay.port,
        "  destinations:\n    \"qq.com, foxmail.com\": {concurrency: 2, rate: 2/m}\n    default: {concurrency: 4}\n",
        "",
    );
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(delivered(
            &format!("q{i}"),
            &format!("q-{i}"),
            &format!("{i}@qq.com"),
            &format!("SQ-{i}"),
            DELIVERED_AT,
        ));
        events.push(delivered(
            &format!("f{i}"),
            &format!("f-{i}"),
            &format!("{i}@foxmail.com"),
            &format!("SF-{i}"),
            DELIVERED_AT,
        ));
        events.push(delivered(
            &format!("o{i}"),
            &format!("o-{i}"),
            &format!("{i}@example.org"),
            &format!("SO-{i}"),
            DELIVERED_AT,
        ));
    }
    ws.import(&events).ok();
    let r = once(&ws, NOW);
    assert_eq!(
        summary(&r),
        "5 sent, 0 retrying, 0 failed, 0 cancelled, 4 deferred",
        "{}",
        r.stderr
    );
    assert_eq!(
        rcpts(&relay, "@example.org"),
        3,
        "the other domain's mail all went: {:?}",
        relay.commands()
    );
    assert_eq!(
        rcpts(&relay, "@qq.com") + rcpts(&relay, "@foxmail.com"),
        2,
        "qq.com and foxmail.com share 2/m"
    );
    let held: Vec<Value> = ws
        .logs_json(&["--limit", "1000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "scheduled" && m["step"] == 0)
        .cloned()
        .collect();
    assert_eq!(held.len(), 4);
    for m in &held {
        let reason = m["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("deferred: pacing: qq.com, foxmail.com's rate 2/1m is used up"),
            "{reason}"
        );
    }
    let r = once(&ws, "2026-11-23T10:01:00+08:00");
    assert_eq!(
        summary(&r),
        "2 sent, 0 retrying, 0 failed, 0 cancelled, 2 deferred",
        "{}",
        r.stderr
    );
    let r = once(&ws, "2026-11-23T10:02:00+08:00");
    assert_eq!(
        summary(&r),
        "2 sent, 0 retrying, 0 failed, 0 cancelled",
        "{}",
        r.stderr
    );
}

/// A DSN as postfix writes one, for the message `id` to `to`.
fn dsn(id: &str, to: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n\
To: bounces+{id}@example.com\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <20261123021500.5C2A1@mx.example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"5C2A1.1763864100/mx.example.org\"\r\n\
\r\n\
--5C2A1.1763864100/mx.example.org\r\n\
Content-Description: Notification\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
This is the mail system at host mx.example.org.\r\n\
\r\n\
I'm sorry to have to inform you that your message could not\r\n\
be delivered to one or more recipients.\r\n\
\r\n\
--5C2A1.1763864100/mx.example.org\r\n\
Content-Description: Delivery report\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.org\r\n\
X-Postfix-Queue-ID: 5C2A1\r\n\
Arrival-Date: Mon, 23 Nov 2026 10:00:01 +0800 (CST)\r\n\
\r\n\
Final-Recipient: rfc822; {to}\r\n\
Original-Recipient: rfc822;{to}\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: x-unix; user unknown\r\n\
\r\n\
--5C2A1.1763864100/mx.example.org\r\n\
Content-Description: Undelivered Message Headers\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: Example Shop <care@example.com>\r\n\
To: {to}\r\n\
Message-ID: <{id}@example.com>\r\n\
Subject: review\r\n\
\r\n\
--5C2A1.1763864100/mx.example.org--\r\n"
    )
}

/// An ARF report (RFC 5965 §B.1's shape) about the message `id` to `to`.
fn arf(id: &str, to: &str) -> String {
    format!(
        "From: <abuse@mail.example.net>\r\n\
Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n\
Subject: FW: Earn money\r\n\
To: <abuse@example.com>\r\n\
Message-ID: <arf-20261123-1@mail.example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report;\r\n\
\tboundary=\"part1_13d.2e68ed54_boundary\"\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: text/plain; charset=\"US-ASCII\"\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
This is an email abuse report for an email message received from IP\r\n\
192.0.2.1 on Mon, 23 Nov 2026 10:00:00 +0800.\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: SomeGenerator/1.0\r\n\
Version: 1\r\n\
Original-Mail-From: <bounces+{id}@example.com>\r\n\
Original-Rcpt-To: <{to}>\r\n\
Arrival-Date: Mon, 23 Nov 2026 10:00:00 +0800\r\n\
Reporting-MTA: dns; mail.example.net\r\n\
Source-IP: 192.0.2.1\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: inline\r\n\
\r\n\
From: <care@example.com>\r\n\
Received: from mailserver.example.com by mail.example.net\r\n\
To: <{to}>\r\n\
Subject: review\r\n\
Message-ID: <{id}@example.com>\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0800\r\n\
\r\n\
Please review your order.\r\n\
--part1_13d.2e68ed54_boundary--\r\n"
    )
}

#[test]
fn a_dsn_and_an_arf_report_ingested_by_the_cli_suppress_their_addresses() {
    let relay = ScriptedSmtp::start(Script::default());
    let ws = mail_workspace(relay.port, "", "");
    ws.import(&[
        delivered("e1", "c-1", "late-bounce@example.org", "SO-1", DELIVERED_AT),
        delivered("e2", "c-2", "complainer@example.net", "SO-2", DELIVERED_AT),
    ])
    .ok();
    assert_eq!(
        summary(&once(&ws, NOW)),
        "2 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    let a = message_of(&ws, "c-1")["id"].as_str().unwrap().to_string();
    let b = message_of(&ws, "c-2")["id"].as_str().unwrap().to_string();

    ws.write("bounce.eml", &dsn(&a, "late-bounce@example.org"));
    let r = ws.run(&["bounces", "ingest", "bounce.eml"]).ok();
    assert!(
        r.stdout.contains(&format!(
            "dsn hard late-bounce@example.org (5.1.1): suppressed [message {a}]"
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.ends_with("1 recorded, 0 not a report\n"),
        "{}",
        r.stdout
    );

    // Through standard input, as a postfix pipe transport hands it over.
    let mut child = ws
        .command(&["bounces", "ingest", "-", "--to", "abuse@example.com"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(arf(&b, "complainer@example.net").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "arf complaint complainer@example.net: suppressed; consent.email = false [message {b}]"
        )),
        "{stdout}"
    );
    // The same report twice is kept once; an mbox with an auto-reply is read through.
    ws.write(
        "mbox",
        &format!(
            "From MAILER-DAEMON Mon Nov 23 12:00:00 2026\n{}\nFrom someone Mon Nov 23 12:00:01 2026\nFrom: a@b.example\nSubject: Out of office\n\nback Monday\n\n",
            arf(&b, "complainer@example.net").replace("\r\n", "\n")
        ),
    );
    let r = ws.run(&["bounces", "ingest", "mbox"]).ok();
    assert!(
        r.stdout
            .contains("arf complaint complainer@example.net: already recorded"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.ends_with("0 recorded, 1 not a report\n"),
        "{}",
        r.stdout
    );

    let s = suppressions(&ws);
    let addresses: Vec<&str> = s.iter().map(|s| s["address"].as_str().unwrap()).collect();
    assert_eq!(addresses.len(), 2, "{s:?}");
    assert!(addresses.contains(&"late-bounce@example.org"));
    assert!(addresses.contains(&"complainer@example.net"));
    let all = bounces(&ws);
    let complaint = all.iter().find(|x| x["kind"] == "complaint").unwrap();
    assert_eq!(complaint["message_id"], b.as_str());
    assert_eq!(complaint["report_id"], "arf-20261123-1@mail.example.net");
    // The raw report is kept for support.
    let raw = ws
        .run(&[
            "bounces",
            "list",
            "--raw",
            complaint["id"].as_str().unwrap(),
        ])
        .ok()
        .stdout;
    assert!(raw.contains("Feedback-Type: abuse"), "{raw}");
    // And the message's log shows it.
    let logs = ws.run(&["logs", "--contact", "c-2"]).ok().stdout;
    assert!(logs.contains("complaint (arf)"), "{logs}");
}

/// A mail over 64 MiB: in an mbox file it is said and skipped, and the report after it is
/// read; on standard input (one mail from the delivery agent) the whole input is refused,
/// exit 1, nothing recorded. Standard input used to be cut at 64 MiB without a word: the
/// report after the junk was lost and the agent was told the mail was taken.
#[test]
fn a_mail_over_64_mib_is_said_and_never_cuts_what_follows() {
    let ws = Workspace::new(None);
    let junk = format!(
        "From someone Mon Nov 23 12:00:00 2026\nFrom: a@b.example\nSubject: huge\n\n{}",
        format!("{}\n", "x".repeat(1023)).repeat(65 * 1024)
    );
    let with_report = |to: &str| {
        format!(
            "{junk}\nFrom MAILER-DAEMON Mon Nov 23 12:00:01 2026\n{}\n",
            dsn("m-none", to).replace("\r\n", "\n")
        )
    };
    ws.write("big.mbox", &with_report("gone@example.org"));
    let r = ws.run(&["bounces", "ingest", "big.mbox"]).ok();
    assert!(
        r.stdout
            .contains("mail 1: longer than 64 MiB: not read as a report"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("dsn hard gone@example.org (5.1.1): suppressed"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.ends_with("1 recorded, 1 not a report\n"),
        "{}",
        r.stdout
    );

    let mut child = ws
        .command(&["bounces", "ingest", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = with_report("lost@example.org");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // The reader stops at its limit; the rest may find the pipe closed.
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("standard input is longer than 64 MiB: nothing was recorded"),
        "{stderr}"
    );
    let s = suppressions(&ws);
    assert_eq!(s.len(), 1, "{s:?}");
}

/// A shipping notice's job: a service message, which the brake never holds.
fn shipping_notice(ws: &Workspace) {
    ws.write(
        "jobs/shipping-notice.yaml",
        "id: shipping-notice\ntrigger:\n  event: order.shipped\n  delay: 1h\nclass: service\n\
         template: review_request\nchannels: [email]\ndedupe: \"{{event.data.order_id}}\"\n",
    );
}

fn shipped(id: &str, contact: &str, email: &str, order: &str, at: &str) -> String {
    delivered(id, contact, email, order, at).replace("order.delivered", "order.shipped")
}

/// Five review requests sent and a sixth refused 550 5.1.1 by `relay`: the job's brake and
/// the sending domain's engaged (a bounce in 5 sends is over 10%).
fn braked(relay: &ScriptedSmtp, extra: &str) -> Workspace {
    let ws = mail_workspace(
        relay.port,
        "  reputation: {window: 5, min_sends: 5, hard_bounce_percent: 10}\n",
        extra,
    );
    shipping_notice(&ws);
    let mut first: Vec<String> = (1..=5)
        .map(|i| {
            delivered(
                &format!("e{i}"),
                &format!("c-{i}"),
                &format!("c{i}@example.org"),
                &format!("SO-{i}"),
                DELIVERED_AT,
            )
        })
        .collect();
    first.push(delivered(
        "e6",
        "c-6",
        "gone@example.org",
        "SO-6",
        "2026-11-20T11:00:00+08:00",
    ));
    ws.import(&first).ok();
    assert_eq!(
        summary(&once(&ws, NOW)),
        "5 sent, 0 retrying, 0 failed, 0 cancelled"
    );
    let r = once(&ws, "2026-11-23T11:00:00+08:00");
    assert_eq!(
        summary(&r),
        "0 sent, 0 retrying, 1 failed, 0 cancelled",
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("reputation brake engaged"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hard-bounce rate 20.00% (1 of the last 5 sends) is over 10%"),
        "{}",
        r.stderr
    );
    let brakes = ws.run(&["jobs", "brakes", "--format", "json"]).ok().stdout;
    let brakes: Value = serde_json::from_str(&brakes).unwrap();
    let scopes: Vec<&str> = brakes
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["domain:example.com", "job:review-request"]);
    ws
}

#[test]
fn the_brake_pauses_a_marketing_job_at_the_threshold_until_jobs_resume() {
    let relay = ScriptedSmtp::start(Script {
        rcpt_for: vec![("gone@".into(), "550 5.1.1 User unknown".into())],
        ..Script::default()
    });
    let ws = braked(&relay, "");

    // Marketing waits, service goes on.
    ws.import(&[
        delivered(
            "e7",
            "c-7",
            "c7@example.org",
            "SO-7",
            "2026-11-20T12:00:00+08:00",
        ),
        shipped(
            "s1",
            "c-1",
            "c1@example.org",
            "SO-1",
            "2026-11-23T11:00:00+08:00",
        ),
    ])
    .ok();
    let r = once(&ws, "2026-11-23T12:00:00+08:00");
    assert_eq!(
        summary(&r),
        "1 sent, 0 retrying, 0 failed, 0 cancelled, 1 deferred",
        "{}",
        r.stderr
    );
    let held = message_of(&ws, "c-7");
    assert_eq!(held["state"], "scheduled");
    assert!(
        held["reason"].as_str().unwrap().starts_with(
            "deferred: paused by the reputation brake (job:review-request: hard-bounce rate 20.00%"
        ),
        "{held}"
    );
    let r = ws
        .run(&[
            "jobs",
            "resume",
            "review-request",
            "--by",
            "ops-1",
            "--now",
            "2026-11-23T12:00:00+08:00",
        ])
        .ok();
    assert!(
        r.stdout.contains("resumed job:review-request"),
        "{}",
        r.stdout
    );
    // The sending domain's brake still holds it.
    let r = once(&ws, "2026-11-23T12:00:00+08:00");
    assert_eq!(
        summary(&r),
        "0 sent, 0 retrying, 0 failed, 0 cancelled, 1 deferred",
        "{}",
        r.stderr
    );
    assert!(
        message_of(&ws, "c-7")["reason"]
            .as_str()
            .unwrap()
            .contains("domain:example.com")
    );
    ws.run(&[
        "jobs",
        "resume",
        "--domain",
        "--now",
        "2026-11-23T12:00:00+08:00",
    ])
    .ok();
    let r = once(&ws, "2026-11-23T12:00:00+08:00");
    assert_eq!(
        summary(&r),
        "1 sent, 0 retrying, 0 failed, 0 cancelled",
        "{}",
        r.stderr
    );
    let all = ws.run(&["jobs", "brakes", "--all"]).ok().stdout;
    assert!(
        all.contains("released 2026-11-23 04:00:00Z by ops-1"),
        "{all}"
    );
    let r = ws.run(&["jobs", "resume", "review-request"]);
    assert_eq!(r.code, 1, "nothing to resume: {}", r.stdout);
}

#[test]
fn jobs_resume_reaches_a_drain_that_is_sending() {
    let relay = ScriptedSmtp::start(Script {
        rcpt_for: vec![("gone@".into(), "550 5.1.1 User unknown".into())],
        ..Script::default()
    });
    // One message at a time, claimed one by one: the drain is long enough to resume in.
    let ws = braked(
        &relay,
        "dispatch:\n  concurrency: 1\n  batch_size: 1\n  retry: {max_attempts: 5, initial: 1m, max: 1h}\n",
    );
    // Four shipping notices due an hour ago, before c-7's review request (due half an hour
    // ago: recent enough not to expire on the real clock); the relay holds the first.
    let ago = |m: i64| (chrono::Utc::now() - chrono::Duration::minutes(m)).to_rfc3339();
    let mut lines: Vec<String> = (1..=4)
        .map(|i| {
            shipped(
                &format!("s{i}"),
                &format!("c-{i}"),
                &format!("c{i}@example.org"),
                &format!("SO-{i}"),
                &ago(120),
            )
        })
        .collect();
    lines.push(delivered(
        "e7",
        "c-7",
        "c7@example.org",
        "SO-7",
        &ago(3 * 24 * 60 + 30),
    ));
    ws.import(&lines).ok();
    let accepted = relay.messages().len();
    relay.set(|s| s.hold_after = Some(accepted));
    let _daemon = common::Killed(
        ws.command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        common::wait_for(what, std::time::Duration::from_secs(30), f);
    };
    wait("the first notice reaches the relay", &|| {
        relay.holding() == 1
    });
    // Resumed while the drain waits on the relay; then the relay answers.
    ws.run(&["jobs", "resume", "review-request"]).ok();
    ws.run(&["jobs", "resume", "--domain"]).ok();
    relay.set(|s| s.hold_after = None);
    wait("c-7's request is sent by the same drain", &|| {
        message_of(&ws, "c-7")["state"] == "sent"
    });
    assert_eq!(rcpts(&relay, "c7@"), 1);
}
