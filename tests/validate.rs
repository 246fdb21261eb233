//! `validate`, `preview` and config errors: what marketing sees when a file is wrong.

mod common;

use common::Workspace;

/// A workspace whose config has an `unsubscribe:` section, as the shipped one does: without
/// it, `validate` warns about every marketing email job (see below).
fn with_unsubscribe() -> Workspace {
    let ws = Workspace::new(None);
    ws.write_config(None, UNSUBSCRIBE);
    ws
}

const UNSUBSCRIBE: &str = "unsubscribe: {url: \"https://shop.example.com/u/{token}\", mailto: unsubscribe@example.com, key_file: data/unsubscribe.key}\n";

#[test]
fn marketing_email_without_unsubscribe_is_warned() {
    let ws = Workspace::new(None);
    let r = ws.run(&["validate"]).ok();
    assert!(
        r.stdout.contains("aftercare.yaml: warning: job `birthday-greeting` sends marketing email, but unsubscribe: is not set: no List-Unsubscribe header"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 warning(s)"), "{}", r.stdout);
    ws.write_config(None, UNSUBSCRIBE);
    let r = ws.run(&["validate"]).ok();
    assert!(r.stdout.contains("0 warning(s)"), "{}", r.stdout);
}

#[test]
fn shipped_jobs_and_templates_are_valid() {
    let ws = with_unsubscribe();
    let r = ws.run(&["validate"]).ok();
    assert_eq!(
        r.stdout.trim(),
        "5 job(s) valid: birthday-greeting, complaint-callback, detractor-callback, nps-survey, review-request; 0 error(s), 0 warning(s)"
    );
    // And the config the README tells a newcomer to use.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/aftercare.yaml");
    let out = std::process::Command::new(common::BIN)
        .args(["--config", shipped, "validate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn malformed_jobs_are_reported_at_path_line_column_with_hints() {
    let ws = with_unsubscribe();
    ws.write(
        "jobs/bad-keys.yaml",
        "id: bad-keys\ntrigger:\n  event: order.delivered\n  dealy: 3d\ntemplate: review_request\n",
    );
    ws.write(
        "jobs/bad-values.yaml",
        "id: bad-values\ntrigger:\n  event: order.delivered\n  delay: 3x\ntemplate: review_requst\nreminders:\n  - after: 4\n    template: review_reminder\nstop_when: review.submited\ndedupe: \"{{event.data.order_id}}-{{contact.nmae}}\"\n",
    );
    ws.write(
        "jobs/dup.yaml",
        "id: review-request\ntrigger: {event: order.delivered}\ntemplate: review_request\n",
    );
    ws.write(
        "jobs/syntax.yaml",
        "id: syntax\ntrigger: {event: order.delivered\ntemplate: x\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let want = [
        "jobs/bad-keys.yaml:4:3: error: trigger: unknown field `dealy`, expected one of",
        "  hint: did you mean `delay`?",
        "jobs/bad-values.yaml:4:10: error: trigger.delay: `3x` has an unknown unit `x`: units are s, m, h, d and w",
        "jobs/bad-values.yaml:5:11: error: template: unknown template `review_requst`\n  hint: did you mean `review_request`?",
        "jobs/bad-values.yaml:7:12: error: reminders[0].after: `4` has a number without a unit (s, m, h, d or w)",
        "jobs/bad-values.yaml:9:12: warning: stop_when: `review.submited` is not a known event type and no job is triggered by it\n  hint: did you mean `review.submitted`?",
        "jobs/bad-values.yaml:10:9: error: dedupe: `contact.nmae`: contact has no field `nmae`\n  hint: did you mean `name`?",
        "jobs/review-request.yaml:1:5: error: duplicate job id `review-request`, first defined at jobs/dup.yaml:1:5",
        "jobs/syntax.yaml:3:9: error: did not find expected ',' or '}'",
        "5 job(s) valid: birthday-greeting, complaint-callback, detractor-callback, nps-survey, review-request; 7 error(s), 1 warning(s)",
    ];
    for w in want {
        assert!(r.stdout.contains(w), "missing:\n{w}\nin:\n{}", r.stdout);
    }
    // Every problem is reported, not only the first: one line per diagnostic.
    assert_eq!(
        r.stdout.lines().filter(|l| l.contains(": error: ")).count(),
        7,
        "{}",
        r.stdout
    );
}

#[test]
fn template_problems_are_reported_in_the_template_file() {
    let ws = Workspace::new(None);
    ws.write(
        "message_templates/broken/email.subject.hbs",
        "Hello {{contact.name}}\n{{#if contact.vip}}VIP{{/if}} {{#if event.data.x}}{{ordr.id}}{{/if}}\n",
    );
    ws.write(
        "message_templates/broken/email.txt.hbs",
        "Body {{#if event.data.x}}\n",
    );
    ws.write(
        "message_templates/broken/email.html.hbs",
        "<p>{{frobnicate contact.name}}</p>\n",
    );
    ws.write("message_templates/broken/email.subjekt.hbs", "x");
    ws.write(
        "jobs/uses-broken.yaml",
        "id: uses-broken\ntrigger: {event: order.delivered, delay: 1d}\ntemplate: broken\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1);
    let want = [
        // Inside {{#if}}: handlebars' strict mode would not catch these at render time.
        "message_templates/broken/email.subject.hbs:2:1: error: `contact.vip`: contact has no field `vip`",
        "message_templates/broken/email.subject.hbs:2:51: error: `ordr.id`: this job cannot provide `ordr`",
        "message_templates/broken/email.txt.hbs:2:1: error: template syntax: invalid handlebars syntax",
        "message_templates/broken/email.html.hbs:1:4: error: unknown helper `frobnicate`",
        "message_templates/broken/email.subjekt.hbs: warning: `email.subjekt.hbs` is not a template file this program reads; ignored\n  hint: did you mean `email.subject`?",
    ];
    for w in want {
        assert!(r.stdout.contains(w), "missing:\n{w}\nin:\n{}", r.stdout);
    }
}

/// A template that is not UTF-8 is refused at the byte's line and column, as YAML is (it
/// said "stream did not contain valid UTF-8", nowhere), and one over 1 MiB is refused
/// without being read whole.
#[test]
fn a_template_that_is_not_text_is_refused_at_its_place() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&[]);
    ws.write(
        "jobs/latin.yaml",
        "id: latin\ntrigger: {event: order.delivered, delay: 1d}\ntemplate: latin\nclass: service\nchannels: [email]\n",
    );
    ws.write("message_templates/latin/email.subject.hbs", "Hello\n");
    std::fs::write(
        ws.path("message_templates/latin/email.txt.hbs"),
        b"Dear customer,\nGr\xfc\xdfe\n",
    )
    .unwrap();
    std::fs::write(
        ws.path("message_templates/latin/email.html.hbs"),
        format!("<p>{}</p>\n", "x".repeat(2 * 1024 * 1024)),
    )
    .unwrap();
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    for want in [
        "message_templates/latin/email.txt.hbs:2:3: error: byte 0xFC is not UTF-8 text\n  hint: save the file as UTF-8",
        "message_templates/latin/email.html.hbs:1:1048577: error: the file is larger than 1024 KiB",
    ] {
        assert!(
            r.stdout.contains(want),
            "missing:\n{want}\nin:\n{}",
            r.stdout
        );
    }
}

#[test]
fn a_locale_without_its_own_body_is_warned() {
    let ws = Workspace::new(None);
    ws.write(
        "message_templates/review_request/email.subject.ja.hbs",
        "ご注文 {{event.data.order_id}}\n",
    );
    let r = ws.run(&["validate"]).ok();
    assert!(r.stdout.contains("email.subject.ja.hbs: warning: locale ja has a subject but no email.txt/email.html of its own"), "{}", r.stdout);
    assert_eq!(ws.run(&["validate", "--deny-warnings"]).code, 1);
}

#[test]
fn validate_json_is_machine_readable() {
    let ws = with_unsubscribe();
    ws.write(
        "jobs/bad.yaml",
        "id: bad\ntrigger: {event: order.delivered, delay: soon}\ntemplate: review_request\n",
    );
    let r = ws.run(&["validate", "--format", "json"]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["errors"], 1);
    assert_eq!(v["diagnostics"][0]["location"]["line"], 2);
    assert_eq!(v["diagnostics"][0]["severity"], "error");
}

#[test]
fn config_errors_name_the_key_and_the_fix() {
    let ws = Workspace::new(None);
    ws.write(
        "aftercare.yaml",
        "store: {url: \"sqlite://data/a.db\"}\nemail:\n  from: \"Shop <care@example.com>\"\n  transport: smtp\n  smtp: {host: h, password: hunter2}\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("aftercare.yaml:5:19: error: email.smtp: unknown field `password`"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("did you mean `password_env`?"),
        "{}",
        r.stderr
    );
    let missing = std::process::Command::new(common::BIN)
        .current_dir(ws.dir.path())
        .args(["--config", "nope.yaml", "validate"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("cannot read config file nope.yaml"),
        "{stderr}"
    );
    let usage = ws.run(&["frobnicate"]);
    assert_eq!(usage.code, 2);
    // SES's hook takes only named topics: SNS signs any topic's messages alike.
    ws.write(
        "aftercare.yaml",
        "store: {url: \"sqlite://data/a.db\"}\nemail:\n  from: \"Shop <care@example.com>\"\n  transport: smtp\n  smtp: {host: h}\n  webhooks:\n    ses: {}\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("error: email.webhooks.ses.topic_arns: name the SNS topics"),
        "{}",
        r.stderr
    );
}

#[test]
fn config_is_found_through_the_environment() {
    let ws = Workspace::new(None);
    let out = std::process::Command::new(common::BIN)
        .current_dir(ws.dir.path())
        .env("AFTERCARE_CONFIG", ws.path("aftercare.yaml"))
        .arg("validate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn preview_renders_subject_text_and_html_without_storing() {
    let ws = Workspace::new(None);
    let event = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/events/order-delivered.json"
    );
    let r = ws
        .run(&["preview", "review-request", "--event", event])
        .ok();
    for w in [
        "due:      2026-11-23T10:00:00+08:00 (Asia/Shanghai)",
        "to:       王芳 <wang.fang@example.com>",
        "subject:  王芳，您的订单 SO-1001 还满意吗？",
        "您的订单 SO-1001 已于 2026年11月20日 送达。",
        "<strong>SO-1001</strong>",
    ] {
        assert!(r.stdout.contains(w), "missing {w} in\n{}", r.stdout);
    }
    let en = ws
        .run(&[
            "preview",
            "review-request",
            "--event",
            event,
            "--locale",
            "en",
            "--step",
            "1",
        ])
        .ok();
    assert!(
        en.stdout
            .contains("subject:  A quick reminder about your order SO-1001"),
        "{}",
        en.stdout
    );
    assert!(
        !ws.path("data/aftercare.db").exists(),
        "preview must not create the store"
    );
    let unknown = ws.run(&["preview", "review-requst", "--event", event]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("did you mean `review-request`?"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn review_gating_is_refused_and_missing_unsubscribe_links_are_warned() {
    let ws = Workspace::new(None);
    ws.append(
        "jobs/review-request.yaml",
        "audience:\n  where:\n    event.data.rating: [4, 5]\n    contact.attributes.tier: gold\n",
    );
    ws.write("message_templates/plain/email.subject.hbs", "Hi\n");
    ws.write("message_templates/plain/email.txt.hbs", "No link here\n");
    ws.write("jobs/promo.yaml", "id: promo\ntrigger: {event: order.delivered, delay: 1d}\ntemplate: plain\ndedupe: \"{{event.id}}-promo\"\n");
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1);
    for want in [
        "jobs/review-request.yaml:17:24: error: audience.where.event.data.rating: review gating: a review request must go to every customer, not only satisfied ones",
        "16 CFR Part 465",
        "jobs/promo.yaml:3:11: warning: template: marketing template `plain` has no unsubscribe link",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?} in\n{}", r.stdout);
    }
    // A condition on the tier alone is fine.
    assert!(
        !r.stdout.contains("audience.where.contact.attributes.tier"),
        "{}",
        r.stdout
    );
}

#[test]
fn clock_triggers_are_checked() {
    let ws = Workspace::new(None);
    ws.write("jobs/a.yaml", "id: a\ntrigger: {anniversary: contact.birthdate, at: \"9am\"}\ntemplate: birthday_greeting\n");
    ws.write("jobs/b.yaml", "id: b\ntrigger: {cron: \"0 10 * * FUNDAY\", timezone: Asia/Shangai}\ntemplate: nps_survey\n");
    ws.write(
        "jobs/c.yaml",
        "id: c\ntrigger: {cron: \"0 10 * * MON\", missed: sometimes}\ntemplate: nps_survey\n",
    );
    ws.write(
        "jobs/d.yaml",
        "id: d\ntrigger: {anniversary: contact.birthday}\ntemplate: review_request\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1);
    for want in [
        "jobs/a.yaml:2:24: error: trigger.anniversary: `contact.birthdate` is not a contact date field",
        "jobs/b.yaml:2:17: error: trigger.cron: `0 10 * * FUNDAY` is not a cron expression",
        "jobs/c.yaml:2:",
        "unknown variant `sometimes`, expected `run_once` or `skip`",
        // A birthday job has no event: the review template cannot be used by it.
        "`event.data.order_id`: this job cannot provide `event`",
        "hint: an anniversary job is not triggered by an event",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?} in\n{}", r.stdout);
    }
}

#[test]
fn comparisons_list_stops_surveys_and_experiments_are_checked() {
    let ws = Workspace::new(None);
    ws.write(
        "jobs/bad-where.yaml",
        "id: bad-where\ntrigger: {event: survey.answered}\nclass: service\nchannels: [webhook]\n\
         audience:\n  where:\n    event.data.score: {lte: six}\n    event.data.channel: {betwen: [a, b]}\n\
         stop_when: [order.returned, {event: complaint.opend}]\n",
    );
    ws.write(
        "jobs/coupon.yaml",
        "id: promoter-coupon\ndescription: A coupon for our fans\ntrigger: {event: survey.answered}\n\
         template: plain\naudience:\n  where:\n    event.data.score: {gte: 9}\n",
    );
    ws.write(
        "jobs/ask.yaml",
        "id: ask-promoters\ntrigger: {event: survey.answered}\ntemplate: review_request\n\
         audience:\n  where:\n    event.data.score: {in: [9, 10]}\n",
    );
    ws.write(
        "jobs/ab.yaml",
        "id: ab\ntrigger: {event: order.delivered}\nchannels: [email]\n\
         variants: [{name: a, template: review_request}, {name: B, template: review_requst}]\nholdout: 120%\n\
         survey: {scale: stars}\n",
    );
    ws.write("message_templates/plain/email.subject.hbs", "Hi\n");
    ws.write(
        "message_templates/plain/email.txt.hbs",
        "Your coupon {{unsubscribe.url}}\n",
    );
    ws.write(
        "jobs/no-survey.yaml",
        "id: no-survey\ntrigger: {event: rental.completed}\ntemplate: nps_survey\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1);
    for want in [
        "error: audience.where.event.data.score.lte: `lte` compares numbers or dates; `\"six\"` is neither",
        "unknown comparison `betwen`",
        "warning: stop_when[1].event: `complaint.opend` is not a known event type",
        "did you mean `complaint.opened`?",
        "review gating: this job gives an incentive only to customers who scored us high",
        "review gating: a review request must go to every customer, not only satisfied ones",
        "16 CFR Part 465",
        "Trustpilot",
        "error: variants[1].name: `B` is not a variant name",
        "error: variants[1].template: unknown template `review_requst`",
        "error: holdout: a holdout is a share of contacts above 0% and below 100%",
        "unknown survey scale `stars`",
        "`survey.url`: this job cannot provide `survey`",
        "this job is not a survey: add `survey: nps` (or csat) to it",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?} in\n{}", r.stdout);
    }
}

/// An incentive is found in what the messages say, not only in names: a job called
/// `thanks` whose email offers a 优惠券, sent only to promoters, is review gating.
#[test]
fn an_incentive_in_a_templates_words_is_review_gating_too() {
    let ws = with_unsubscribe();
    ws.write(
        "message_templates/thanks/email.subject.hbs",
        "谢谢您的好评\n",
    );
    ws.write(
        "message_templates/thanks/email.txt.hbs",
        "{{#if contact.name}}{{contact.name}}，{{/if}}送您一张优惠券。退订：{{unsubscribe.url}}\n",
    );
    ws.write(
        "jobs/thanks.yaml",
        "id: thanks\ntrigger: {event: survey.answered}\ntemplate: thanks\n\
         audience:\n  where:\n    event.data.score: {gte: 9}\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("jobs/thanks.yaml:6:") && r.stdout.contains(
            "error: audience.where.event.data.score: review gating: this job gives an incentive only to customers who scored us high"
        ),
        "{}",
        r.stdout
    );
    // The same words for every customer who answered: fine.
    ws.write(
        "jobs/thanks.yaml",
        "id: thanks\ntrigger: {event: survey.answered}\ntemplate: thanks\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

/// `exclude_if_sent` is a cron audience's: an event job given one is refused, not run as if
/// it had none.
#[test]
fn exclude_if_sent_outside_a_cron_job_is_refused() {
    let ws = with_unsubscribe();
    ws.append(
        "jobs/review-request.yaml",
        "audience:\n  exclude_if_sent: {job: nps-survey, within: 30d}\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "error: audience.exclude_if_sent: only cron jobs leave out contacts another job sent to"
        ),
        "{}",
        r.stdout
    );
}

/// A duration past 100 years is refused where it is written. `99999999999w` used to pass
/// validate, and the first import (a due time) or `run` (a cap's window) panicked on the
/// overflow; a heartbeat that long panicked validate itself.
#[test]
fn durations_past_a_hundred_years_are_refused_at_their_key() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&[]);
    ws.write_config(
        None,
        "policy:\n  caps: [{max: 1, per: 20000000w}]\ndispatch: {heartbeat: 20000000000000w}\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    for want in [
        "error: policy.caps[0].per: `20000000w` is longer than 100 years",
        "error: dispatch.heartbeat: `20000000000000w` is longer than 100 years",
        "hint: durations go up to 36525d (100 years)",
    ] {
        assert!(r.stderr.contains(want), "missing {want} in\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);

    ws.write_config(None, "");
    ws.write(
        "jobs/far.yaml",
        "id: far\ntrigger: {event: order.delivered, delay: 99999999999w}\ntemplate: review_request\n\
         channels: [email]\nclass: service\nexpire_after: 20000000w\n",
    );
    let r = ws.run(&["validate"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    for want in [
        "jobs/far.yaml:2:42: error: trigger.delay: `99999999999w` is longer than 100 years",
        "jobs/far.yaml:6:15: error: expire_after: `20000000w` is longer than 100 years",
    ] {
        assert!(
            r.stdout.contains(want),
            "missing {want} in\n{}{}",
            r.stdout,
            r.stderr
        );
    }
}
