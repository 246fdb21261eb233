//! Property tests of the parsers users feed: durations, cron expressions, YAML jobs, event
//! JSON, the templates' variable checker and unsubscribe tokens. Whatever the input, no
//! panic and no hang (each case is timed against a bound far above its real cost, which only
//! a runaway loop crosses); where a value round-trips, it does.

use aftercare::diag::Diagnostic;
use aftercare::ingest::{MAX_ID_CHARS, parse_event};
use aftercare::jobs::{self, Trigger};
use aftercare::templates::{Scope, TemplateSet};
use aftercare::unsubscribe::Unsubscriber;
use aftercare::{duration, yaml};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Far above what one case costs in a debug build; crossing it means a runaway loop.
const HANG: Duration = Duration::from_secs(5);

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    assert!(
        started.elapsed() < HANG,
        "{what} took {:?}",
        started.elapsed()
    );
    out
}

fn templates() -> &'static TemplateSet {
    static SET: OnceLock<TemplateSet> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("message_templates");
        TemplateSet::load(&dir, "zh-CN").0
    })
}

/// Load `text` as the only job file of a fresh folder.
fn load_job(text: &[u8]) -> (jobs::JobSet, Vec<Diagnostic>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.yaml"), text).unwrap();
    let (set, diags) = jobs::load(dir.path(), templates(), None);
    (set, diags.items)
}

/// Text made of the pieces YAML's syntax is built from, plus the characters that broke it:
/// the generator reaches deep nesting, anchors and aliases, quotes left open, tabs, BOMs and
/// control characters far more often than random text does.
fn yamlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("\t".to_string()),
        Just("- ".to_string()),
        Just(": ".to_string()),
        Just("? ".to_string()),
        Just("---\n".to_string()),
        Just("...\n".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(", ".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\\".to_string()),
        Just("# c\n".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("&b [*a, *a, *a] ".to_string()),
        Just("!!str ".to_string()),
        Just("|\n".to_string()),
        Just(">-\n".to_string()),
        Just("\u{feff}".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{1b}".to_string()),
        Just("\u{85}".to_string()),
        Just("\u{fffe}".to_string()),
        Just("~".to_string()),
        Just("id".to_string()),
        Just("trigger".to_string()),
        Just("event".to_string()),
        Just("cron".to_string()),
        Just("delay".to_string()),
        Just("template".to_string()),
        Just("reminders".to_string()),
        "[a-z0-9_.]{1,8}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..120).prop_map(|v| v.concat())
}

/// A duration as marketers write it: up to five unit groups.
fn duration_text() -> impl Strategy<Value = String> {
    // Up to four parts of under 1,000 units each: under 100 years, the longest duration read.
    proptest::collection::vec((0u64..1_000, prop_oneof!["w", "d", "h", "m", "s"]), 1..5)
        .prop_map(|parts| parts.iter().map(|(n, u)| format!("{n}{u}")).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn durations_never_panic(text in "\\PC{0,24}") {
        let _ = timed("duration::parse", || duration::parse(&text));
    }

    #[test]
    fn durations_round_trip(text in duration_text()) {
        let d = duration::parse(&text).unwrap();
        let shown = duration::format(d);
        prop_assert_eq!(duration::parse(&shown).unwrap(), d, "{} → {}", text, shown);
        prop_assert_eq!(duration::format(duration::parse(&shown).unwrap()), shown);
    }

    #[test]
    fn any_seconds_format_and_parse_back(secs in 0u64..=duration::MAX.as_secs()) {
        let d = Duration::from_secs(secs);
        prop_assert_eq!(duration::parse(&duration::format(d)).unwrap(), d);
    }

    #[test]
    fn longer_than_the_longest_is_refused(secs in (duration::MAX.as_secs() + 1)..(u64::MAX / 604_800)) {
        let text = duration::format(Duration::from_secs(secs));
        prop_assert!(matches!(duration::parse(&text), Err(duration::Error::TooLong(_))), "{}", text);
    }

    #[test]
    fn yamlish_text_never_panics_or_hangs(text in yamlish()) {
        let (_, diags) = timed("parse_documents", || {
            yaml::parse_documents::<serde_yaml::Value>(Path::new("x.yaml"), &text)
        });
        // Every problem says where it is.
        for d in diags {
            prop_assert!(d.location.is_some(), "no place: {} for {:?}", d, text);
        }
        let (_, diags) = timed("jobs::load", || load_job(text.as_bytes()));
        for d in diags.iter().filter(|d| d.is_error()) {
            prop_assert!(d.location.is_some(), "no place: {} for {:?}", d, text);
        }
    }

    #[test]
    fn any_bytes_as_a_job_file_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = timed("jobs::load", || load_job(&bytes));
    }

    #[test]
    fn cron_expressions_never_panic_and_valid_ones_load(
        fields in proptest::collection::vec(
            prop_oneof![
                Just("*".to_string()), Just("*/5".to_string()), Just("0".to_string()),
                Just("59".to_string()), Just("60".to_string()), Just("1-5".to_string()),
                Just("MON".to_string()), Just("L".to_string()), Just("#".to_string()),
                Just("31".to_string()), Just("2".to_string()), Just("?".to_string()),
                Just("1,2,3".to_string()), "[0-9A-Z*/,#L?-]{1,6}",
            ],
            0..8,
        )
    ) {
        let expr = fields.join(" ");
        let text = format!(
            "id: c\ntrigger:\n  cron: {}\n  timezone: Asia/Shanghai\ntemplate: nps_survey\nsurvey: nps\n",
            serde_json::to_string(&expr).unwrap()
        );
        let (set, diags) = timed("cron job", || load_job(text.as_bytes()));
        match set.get("c") {
            Some(job) => {
                let Trigger::Cron { expr: kept, .. } = &job.trigger else {
                    panic!("not a cron trigger");
                };
                prop_assert_eq!(kept, &expr);
            }
            None => prop_assert!(
                diags.iter().any(|d| d.is_error() && d.location.map(|l| l.line) == Some(3)),
                "{:?} refused without a place on line 3: {:?}", expr, diags
            ),
        }
    }

    #[test]
    fn a_written_job_loads_back_as_written(
        id in "[a-z][a-z0-9-]{0,20}",
        event in "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
        delay in duration_text(),
        // A reminder comes some time after (`0s` is refused, rightly): with under 1,000
        // units a part, an all-zero text is drawn often enough to matter.
        after in duration_text().prop_filter("a reminder after some time", |t| {
            duration::parse(t).is_ok_and(|d| !d.is_zero())
        }),
        description in "\\PC{0,40}",
        bom in any::<bool>(),
    ) {
        let text = format!(
            "{}id: {id}\ndescription: {}\ntrigger:\n  event: {event}\n  delay: {delay}\ntemplate: review_request\nreminders:\n  - after: {after}\n    template: review_reminder\n",
            if bom { "\u{feff}" } else { "" },
            serde_json::to_string(&description).unwrap(),
        );
        let (set, diags) = timed("job", || load_job(text.as_bytes()));
        let job = set.get(&id);
        prop_assert!(job.is_some(), "{:?}", diags);
        let job = job.unwrap();
        prop_assert_eq!(&job.description, &description);
        match &job.trigger {
            Trigger::Event { event: e, delay: d, .. } => {
                prop_assert_eq!(e, &event);
                prop_assert_eq!(*d, duration::parse(&delay).unwrap());
            }
            other => prop_assert!(false, "{:?}", other),
        }
        prop_assert_eq!(job.steps.len(), 2);
        prop_assert_eq!(job.steps[1].after, duration::parse(&after).unwrap());
    }

    #[test]
    fn any_json_value_is_checked_without_panic(v in json_value()) {
        let text = v.to_string();
        if let Ok(inc) = timed("parse_event", || parse_event(&text)) {
            // What is accepted can be stored: no NUL, ids within the limits.
            let nul = '\u{0}';
            prop_assert!(!inc.event.id.contains(nul), "a NUL was accepted");
            prop_assert!(inc.event.id.chars().count() <= MAX_ID_CHARS);
            prop_assert!(inc.contact.id.chars().count() <= MAX_ID_CHARS);
        }
        let wrapped = json!({"id": "e", "type": "order.delivered",
            "occurred_at": "2026-11-20T10:00:00+08:00", "contact": {"id": "c", "attributes": v.clone()},
            "data": {"x": v}});
        let _ = timed("parse_event", || parse_event(&wrapped.to_string()));
    }

    #[test]
    fn any_text_as_an_event_line_never_panics(text in "\\PC{0,200}") {
        let _ = timed("parse_event", || parse_event(&text));
    }

    #[test]
    fn a_valid_event_round_trips(
        id in "[A-Za-z0-9_-]{1,40}",
        contact in "[A-Za-z0-9_-]{1,40}",
        kind in "[a-z]{1,8}(\\.[a-z_]{1,8}){0,2}",
        user in "[a-z0-9]{1,20}",
        year in 1970i32..2200,
        day in 1u32..=28,
        order in "[A-Z0-9-]{1,30}",
        name in "\\PC{0,30}",
    ) {
        let at = format!("{year:04}-02-{day:02}T10:00:00+08:00");
        let v = json!({"id": id, "type": kind, "occurred_at": at,
            "contact": {"id": contact, "name": name, "email": format!("{user}@example.com")},
            "data": {"order_id": order}});
        let inc = parse_event(&v.to_string());
        prop_assert!(inc.is_ok(), "{:?}", inc);
        let inc = inc.unwrap();
        prop_assert_eq!(&inc.event.id, &id);
        prop_assert_eq!(&inc.event.kind, &kind);
        prop_assert_eq!(inc.event.order_id(), Some(order));
        prop_assert_eq!(inc.event.occurred_at.to_rfc3339(), at);
        // Parsing the same text twice gives the same event and digest.
        prop_assert_eq!(parse_event(&v.to_string()).unwrap(), inc);
    }

    #[test]
    fn the_template_checker_never_panics(source in template_text()) {
        let _ = timed("check_inline", || TemplateSet::check_inline(&source, &Scope::event_job()));
        let _ = timed("check_inline", || {
            TemplateSet::check_inline(&source, &Scope::without_event("no event here"))
        });
    }

    #[test]
    fn unsubscribe_tokens_round_trip(
        channel in prop_oneof!["email", "sms"],
        address in "\\PC{1,60}",
        key in proptest::collection::vec(any::<u8>(), 16..48),
    ) {
        let u = Unsubscriber::with_key(&key, "https://x/u/{token}", None);
        let token = u.token(&channel, &address);
        prop_assert_eq!(u.verify(&token), Ok((channel.clone(), address.clone())));
        // Another key does not accept it.
        let mut other = key.clone();
        other[0] ^= 1;
        let stranger = Unsubscriber::with_key(&other, "https://x/u/{token}", None);
        prop_assert!(stranger.verify(&token).is_err(), "another key took it");
    }

    #[test]
    fn an_altered_token_is_refused(
        address in "[a-z]{1,10}@example\\.com",
        at in any::<prop::sample::Index>(),
        with in prop_oneof![Just('A'), Just('z'), Just('0'), Just('-'), Just('_'), Just('.')],
    ) {
        let u = Unsubscriber::with_key(b"0123456789abcdef0123", "https://x/u/{token}", None);
        let token = u.token("email", &address);
        let i = at.index(token.len());
        let original = token.as_bytes()[i] as char;
        prop_assume!(original != with);
        let mut altered: Vec<char> = token.chars().collect();
        altered[i] = with;
        let altered: String = altered.into_iter().collect();
        prop_assert!(u.verify(&altered).is_err(), "{} accepted", altered);
    }

    #[test]
    fn any_text_as_a_token_never_panics(text in "\\PC{0,120}") {
        let u = Unsubscriber::with_key(b"0123456789abcdef0123", "https://x/u/{token}", None);
        let _ = timed("verify", || u.verify(&text));
    }
}

/// Any JSON value, nested a few levels, with the strings that matter (NUL, long, empty).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::String),
        Just(Value::String("a\u{0}b".into())),
        Just(Value::String("x".repeat(300))),
        Just(Value::String(String::new())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("type".to_string()),
                    Just("occurred_at".to_string()),
                    Just("contact".to_string()),
                    Just("data".to_string()),
                    Just("email".to_string()),
                    Just("birthday".to_string()),
                    Just("k\u{0}".to_string()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Handlebars-like text: expressions, blocks (closed or not), helpers, paths, partials.
fn template_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("{{{".to_string()),
        Just("}}}".to_string()),
        Just("{{#if ".to_string()),
        Just("{{/if}}".to_string()),
        Just("{{#each ".to_string()),
        Just("{{/each}}".to_string()),
        Just("{{else}}".to_string()),
        Just("{{> p}}".to_string()),
        Just("contact.name".to_string()),
        Just("event.data.order_id".to_string()),
        Just("contact.attributes.tier".to_string()),
        Just("../".to_string()),
        Just("this".to_string()),
        Just("@index".to_string()),
        Just("(default ".to_string()),
        Just(")".to_string()),
        Just(" ".to_string()),
        Just("\"".to_string()),
        "[a-z_.]{1,12}",
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}
