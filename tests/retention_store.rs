//! The purge in the store, on SQLite and on PostgreSQL: what goes and what stays by kind,
//! what pending messages still need, the daily counts that keep the figures, and the
//! once-a-day claim that lets one node of several purge.

mod common;

use aftercare::ingest::parse_event;
use aftercare::model::{MessageState, Outcome};
use aftercare::plan;
use aftercare::store::{
    Completion, Kept, NewAttempt, NewBounce, NewReceipt, Retention, SoftRule, Store,
};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::{Backend, delivered};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn open(b: Backend) -> (Store, Option<tempfile::TempDir>) {
    let (s, _, dir) = common::open_store(b).await;
    (s, dir)
}

fn attempt(at: DateTime<Utc>, outcome: Outcome, provider_id: Option<&str>) -> NewAttempt {
    NewAttempt {
        number: 1,
        at,
        channel: if provider_id.is_some() {
            "sms"
        } else {
            "email"
        }
        .into(),
        address: Some("x@example.com".into()),
        outcome,
        code: Some(250),
        detail: Some("ok".into()),
        provider_id: provider_id.map(str::to_string),
        node: "node-a".into(),
        duration_ms: 3,
        gateway: provider_id.map(|_| "twilio".to_string()),
        content: None,
    }
}

async fn count(store: &Store, table: &str) -> i64 {
    store
        .row_counts()
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| *t == table)
        .map(|(_, n)| n)
        .unwrap()
}

/// Six deliveries on 2025-01-10; on 2025-01-13 two first sends (their reminders stay
/// pending), one failure, one cancellation, one retry pending, one SMS sent with a
/// delivery receipt; a reply. Then a purge 500 days later with the default retention.
async fn purge_removes_by_kind_and_keeps_the_figures(b: Backend) {
    let (store, _dir) = open(b).await;
    let book = common::shipped_playbook();
    let t0 = t("2025-01-10T02:00:00Z");
    let lines: Vec<_> = (0..6)
        .map(|i| {
            parse_event(&delivered(
                &format!("evt-{i}"),
                &format!("c-{i}"),
                &format!("c{i}@example.com"),
                &format!("SO-{i}"),
                "2025-01-10T10:00:00+08:00",
            ))
            .unwrap()
        })
        .collect();
    plan::ingest(&book, &store, &lines, t0).await.unwrap();
    let at = t("2025-01-13T02:00:00Z");
    let claimed = store
        .claim(
            "node-a",
            "tok",
            at,
            at + Duration::minutes(5),
            100,
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 6);
    let job = book.jobs.get("review-request").unwrap().clone();
    let mut batch = Vec::new();
    for m in &claimed {
        let i: usize = m.contact.id.trim_start_matches("c-").parse().unwrap();
        let mut c = Completion {
            message_id: m.id.clone(),
            claim_token: m.claim_token.clone(),
            state: MessageState::Sent,
            attempts: vec![attempt(at, Outcome::Sent, None)],
            retry_at: None,
            reason: None,
            channel: Some("email".into()),
            address: Some(format!("c{i}@example.com")),
            at,
            next: None,
            uncounted: false,
        };
        match i {
            0 | 1 => c.next = plan::next_step(&book, &job, m, at),
            2 => {
                c.state = MessageState::Failed;
                c.attempts = vec![attempt(at, Outcome::Permanent, None)];
            }
            3 => {
                c.state = MessageState::Cancelled;
                c.attempts.clear();
                c.channel = None;
            }
            4 => {
                c.state = MessageState::Retrying;
                c.retry_at = Some(t("2027-01-01T00:00:00Z"));
                c.attempts = vec![attempt(at, Outcome::Transient, None)];
            }
            _ => {
                c.channel = Some("sms".into());
                c.attempts = vec![attempt(at, Outcome::Sent, Some("SM5"))];
            }
        }
        batch.push(c);
    }
    assert_eq!(store.complete(&batch).await.unwrap(), 0);
    store
        .apply_receipts(
            &[NewReceipt {
                gateway: "twilio".into(),
                provider_id: "SM5".into(),
                reference: None,
                status: "delivered".into(),
                code: None,
                text: None,
            }],
            at,
        )
        .await
        .unwrap();
    store
        .record_reply("r-1", "twilio", None, "+8613800138000", "谢谢", None, at)
        .await
        .unwrap();
    assert_eq!(count(&store, "receipts").await, 1, "{b:?}");
    // Two hard bounces then, one 450 days on (within retention.bounces at the purge below).
    for (i, when) in [(1, at), (2, at), (3, t0 + Duration::days(450))] {
        store
            .record_bounce(
                &NewBounce {
                    id: format!("b-{i}"),
                    kind: "hard".into(),
                    source: "dsn".into(),
                    address: format!("gone{i}@example.org"),
                    message_id: None,
                    attempt: None,
                    job_id: None,
                    status: Some("5.1.1".into()),
                    code: Some(550),
                    detail: "user unknown".into(),
                    report_id: Some(format!("r-{i}")),
                    raw: Some("Status: 5.1.1".into()),
                    at: when,
                },
                SoftRule {
                    count: 3,
                    within: Duration::days(15),
                    suppress_for: Duration::days(30),
                },
            )
            .await
            .unwrap();
    }

    let (from, to) = (
        NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2025, 12, 31).unwrap(),
    );
    let before = store.daily_counts(None, from, to).await.unwrap();
    let figures: Vec<(String, i64)> = before
        .iter()
        .map(|c| (format!("{} {} {}", c.day, c.channel, c.outcome), c.n))
        .collect();
    assert_eq!(
        figures,
        [
            ("2025-01-13  cancelled".to_string(), 1),
            ("2025-01-13 email failed".to_string(), 1),
            ("2025-01-13 email sent".to_string(), 2),
            ("2025-01-13 sms delivered".to_string(), 1),
            ("2025-01-13 sms sent".to_string(), 1),
        ],
        "{b:?}"
    );

    // 500 days on, everything finished is past the 400-day default.
    let now = t0 + Duration::days(500);
    let purged = store
        .purge(&Retention::default(), now, 2, std::time::Duration::ZERO)
        .await
        .unwrap();
    // Finished: 0, 1, 2, 3, 5 (their attempts and the receipt with them), and c-4's attempt
    // (past retention.attempts too); c-4's retry and the two reminders are pending, and keep their events (evt-0, evt-1, evt-4) and those
    // events' data, which their templates and stop_when still read.
    assert_eq!(
        (
            purged.messages,
            purged.attempts,
            purged.receipts,
            purged.events,
            purged.contents,
            purged.replies
        ),
        (5, 5, 1, 3, 0, 1),
        "{b:?}: {purged}"
    );
    assert_eq!(
        (purged.bounces, purged.suppression_changes),
        (2, 2),
        "{b:?}: {purged}"
    );
    assert_eq!(count(&store, "bounces").await, 1, "{b:?}");
    assert_eq!(count(&store, "suppression_changes").await, 1, "{b:?}");
    assert_eq!(
        store.suppressions(Some("email")).await.unwrap().len(),
        3,
        "the suppressions stay: {b:?}"
    );
    assert!(purged.batches > 6, "small batches: {purged}");
    assert_eq!(count(&store, "messages").await, 3, "{b:?}");
    assert_eq!(count(&store, "attempts").await, 0, "{b:?}");
    assert_eq!(count(&store, "events").await, 3, "{b:?}");
    let kept = store.events_of("c-4").await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].order_id().as_deref(), Some("SO-4"), "{b:?}");
    // The figures are the same: the purged messages are counted in daily_counts now.
    assert_eq!(store.daily_counts(None, from, to).await.unwrap(), before);
    assert_eq!(
        store
            .daily_counts(Some("review-request"), from, to)
            .await
            .unwrap(),
        before
    );
    assert!(
        store
            .daily_counts(Some("birthday-greeting"), from, to)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(count(&store, "daily_counts").await >= 5, "{b:?}");

    // Nothing more to do at the same instant.
    let again = store
        .purge(&Retention::default(), now, 2, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again.total(), 0, "{b:?}: {again}");

    // Once the pending work is done, its event data goes by retention.content while the
    // events stay (retention.events kept forever here).
    let cancel_all = store
        .cancel_job("review-request", "test over", now)
        .await
        .unwrap();
    assert_eq!(cancel_all, 3);
    let later = store
        .purge(
            &Retention::default()
                .with(Kept::Events, None)
                .with(Kept::Messages, None),
            now,
            100,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!((later.contents, later.events), (3, 0), "{b:?}: {later}");
    let emptied = store.events_of("c-4").await.unwrap();
    assert!(emptied[0].data.is_empty(), "{b:?}: {emptied:?}");
}

/// What a sent message said goes after `retention.content` (90 days by default); the
/// message and its attempt stay until their own retention.
async fn message_texts_go_after_retention_content(b: Backend) {
    let (store, _dir) = open(b).await;
    let book = common::shipped_playbook();
    let t0 = t("2025-01-10T02:00:00Z");
    let e = parse_event(&delivered(
        "evt-1",
        "c-1",
        "c1@example.com",
        "SO-1",
        "2025-01-10T10:00:00+08:00",
    ))
    .unwrap();
    plan::ingest(&book, &store, &[e], t0).await.unwrap();
    let at = t("2025-01-13T02:00:00Z");
    let claimed = store
        .claim(
            "node-a",
            "tok",
            at,
            at + Duration::minutes(5),
            10,
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let m = &claimed[0];
    let mut a = attempt(at, Outcome::Sent, None);
    a.content = Some(aftercare::store::pack_content(
        Some("订单已送达"),
        "王芳，您好！",
    ));
    let c = Completion {
        message_id: m.id.clone(),
        claim_token: m.claim_token.clone(),
        state: MessageState::Sent,
        attempts: vec![a],
        retry_at: None,
        reason: None,
        channel: Some("email".into()),
        address: Some("c1@example.com".into()),
        at,
        next: None,
        uncounted: false,
    };
    assert_eq!(store.complete(&[c]).await.unwrap(), 0);
    let stored = store.message_contents(&m.id).await.unwrap();
    assert_eq!(stored.len(), 1, "{b:?}");
    assert_eq!(
        (stored[0].subject.as_deref(), stored[0].text.as_str()),
        (Some("订单已送达"), "王芳，您好！")
    );
    let keep = Retention::default();
    let early = store
        .purge(
            &keep,
            at + Duration::days(89),
            100,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(early.texts, 0, "{b:?}: {early}");
    let later = store
        .purge(
            &keep,
            at + Duration::days(91),
            100,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(
        (later.texts, later.messages, later.attempts),
        (1, 0, 0),
        "{b:?}: {later}"
    );
    assert_eq!(store.message_contents(&m.id).await.unwrap(), [], "{b:?}");
    assert_eq!(count(&store, "attempts").await, 1, "{b:?}");
}

/// One caller a day wins the purge, whichever node it is.
async fn one_node_a_day_claims_the_purge(b: Backend) {
    let (store, _dir) = open(b).await;
    let now = t("2026-11-30T03:00:00Z");
    let day = std::time::Duration::from_secs(86_400);
    assert!(
        store
            .claim_housekeeping("purge", "a", now, day)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_housekeeping("purge", "b", now + Duration::hours(23), day)
            .await
            .unwrap()
    );
    // Several nodes at once: exactly one wins.
    let next = now + Duration::hours(24);
    let mut wins = 0;
    let tries: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                s.claim_housekeeping("purge", &format!("n{i}"), next, day)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tries {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "{b:?}");

    // A purge that failed gives its claim back: due again ten minutes on, not a day.
    let ten = std::time::Duration::from_secs(600);
    let later = next + Duration::hours(24);
    assert!(
        store
            .claim_housekeeping("purge", "a", later, day)
            .await
            .unwrap()
    );
    // Another node's claim is not given back by "b".
    store
        .retry_housekeeping("purge", "b", later, day, ten)
        .await
        .unwrap();
    assert!(
        !store
            .claim_housekeeping("purge", "c", later + Duration::minutes(10), day)
            .await
            .unwrap(),
        "{b:?}"
    );
    store
        .retry_housekeeping("purge", "a", later, day, ten)
        .await
        .unwrap();
    assert!(
        !store
            .claim_housekeeping("purge", "c", later + Duration::minutes(9), day)
            .await
            .unwrap(),
        "{b:?}"
    );
    assert!(
        store
            .claim_housekeeping("purge", "c", later + Duration::minutes(10), day)
            .await
            .unwrap(),
        "{b:?}"
    );
}

/// Old events go type by type (schema v19 reads them by `events_type_time`): every type's,
/// across several batches of one type and types that sort before and after the others, and
/// only the old ones.
async fn old_events_of_every_type_go(b: Backend) {
    let (store, _dir) = open(b).await;
    let book = common::shipped_playbook();
    let t0 = t("2025-01-10T02:00:00Z");
    // Types no shipped job plans from, so no pending message keeps one: 5 old events of
    // `a.seen`, 1 of `m.seen`, 2 of `z.seen`, and one recent event of each.
    let event = |i: usize, ty: &str, at: &str| {
        serde_json::json!({"id": format!("e-{i}"), "type": ty, "occurred_at": at,
            "contact": {"id": format!("c-{i}"), "email": format!("c{i}@example.com")},
            "data": {"n": i}})
        .to_string()
    };
    let mut lines = Vec::new();
    let old = "2025-01-10T00:00:00Z";
    let recent = "2026-05-01T00:00:00Z";
    for (ty, n) in [("a.seen", 5), ("m.seen", 1), ("z.seen", 2)] {
        for _ in 0..n {
            lines.push(event(lines.len(), ty, old));
        }
        lines.push(event(lines.len(), ty, recent));
    }
    let parsed: Vec<_> = lines.iter().map(|l| parse_event(l).unwrap()).collect();
    plan::ingest(&book, &store, &parsed, t0).await.unwrap();
    assert_eq!(count(&store, "events").await, 11, "{b:?}");
    let purged = store
        .purge(
            &Retention::default(),
            t0 + Duration::days(500),
            2,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(purged.events, 8, "{b:?}: {purged}");
    let mut kept: Vec<String> = Vec::new();
    for i in 0..lines.len() {
        for e in store.events_of(&format!("c-{i}")).await.unwrap() {
            kept.push(format!("{} {}", e.kind, e.occurred_at.format("%Y")));
        }
    }
    assert_eq!(kept, ["a.seen 2026", "m.seen 2026", "z.seen 2026"], "{b:?}");
}

use common::on_both_async as on_both;

on_both!(
    purge_removes_by_kind_and_keeps_the_figures,
    one_node_a_day_claims_the_purge,
    message_texts_go_after_retention_content,
    old_events_of_every_type_go,
);
