//! `audience.where` conditions: a value, a list of accepted values, or comparisons
//! (`{lte: 6}`, `{gte: 2026-01-01}`, `{not: [a, b]}`, `{in: [...]}`), checked when the job
//! is compiled and evaluated against a render context when a message is planned.
//!
//! Numbers compare as numbers (a field holding `"7"` is 7), dates as dates (a field holding
//! an RFC 3339 time compares by its date against a `YYYY-MM-DD` bound, by its instant
//! against an RFC 3339 bound). A field that is missing, or not a number (date) where the
//! bound is one, fails a comparison: a filter never lets through what it cannot read.

use super::job::loosely_equal;
use crate::check::Checker;
use crate::diag::did_you_mean;
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde_json::Value;

/// `contact.attributes.tier: gold`, `event.data.score: {lte: 6}`: every check must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub path: String,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// One of these values (a plain value, a list, or `in:`).
    In(Vec<Value>),
    /// None of these values (`not:`).
    NotIn(Vec<Value>),
    Compare(Op, Bound),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Op {
    const KEYS: [(&'static str, Op); 4] = [
        ("lt", Op::Lt),
        ("lte", Op::Lte),
        ("gt", Op::Gt),
        ("gte", Op::Gte),
    ];

    fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Lt => o == Less,
            Op::Lte => o != Greater,
            Op::Gt => o == Greater,
            Op::Gte => o != Less,
        }
    }
}

/// What a comparison compares against.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Number(f64),
    Date(NaiveDate),
    Instant(DateTime<FixedOffset>),
}

const KEYS: &[&str] = &["lt", "lte", "gt", "gte", "in", "not"];

impl Condition {
    /// Whether the value at `path` in a render context passes.
    pub fn holds(&self, ctx: &Value) -> bool {
        let found = self.path.split('.').try_fold(ctx, |v, k| v.get(k));
        self.holds_value(found)
    }

    /// Whether `v` (the field's value; `None` when missing) passes every check.
    pub fn holds_value(&self, v: Option<&Value>) -> bool {
        let v = v.filter(|v| !v.is_null());
        self.checks.iter().all(|c| match c {
            Check::In(list) => in_list(v, list),
            Check::NotIn(list) => !in_list(v, list),
            Check::Compare(op, bound) => compare(v, bound).is_some_and(|o| op.holds(o)),
        })
    }

    /// Whether this condition lets a high score through and keeps a low one out (on either
    /// scale: 10 or 5 in, 0 and 1 out): the shape of review gating.
    pub fn selects_high_scores(&self) -> bool {
        let at = |n: i64| self.holds_value(Some(&Value::from(n)));
        (at(10) || at(5)) && !(at(0) || at(1))
    }
}

fn in_list(v: Option<&Value>, list: &[Value]) -> bool {
    match v {
        None => list.iter().any(Value::is_null),
        Some(v) => list.iter().any(|want| loosely_equal(v, want)),
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn compare(v: Option<&Value>, bound: &Bound) -> Option<std::cmp::Ordering> {
    let v = v?;
    match bound {
        Bound::Number(b) => as_number(v)?.partial_cmp(b),
        Bound::Date(b) => {
            let s = v.as_str()?.trim();
            let d = match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                Ok(d) => d,
                Err(_) => DateTime::parse_from_rfc3339(s).ok()?.date_naive(),
            };
            Some(d.cmp(b))
        }
        Bound::Instant(b) => {
            let s = v.as_str()?.trim();
            let t = match DateTime::parse_from_rfc3339(s) {
                Ok(t) => t,
                Err(_) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()?
                    .and_hms_opt(0, 0, 0)?
                    .and_utc()
                    .fixed_offset(),
            };
            Some(t.cmp(b))
        }
    }
}

fn bound(v: &Value) -> Option<Bound> {
    match v {
        Value::Number(n) => n.as_f64().map(Bound::Number),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                Some(Bound::Date(d))
            } else {
                DateTime::parse_from_rfc3339(s).ok().map(Bound::Instant)
            }
        }
        _ => None,
    }
}

fn list_of(v: Value) -> Vec<Value> {
    match v {
        Value::Array(list) => list,
        one => vec![one],
    }
}

/// Check one `where` entry (its value as written) into a [`Condition`]; errors go to `c`
/// at `field`.
pub(super) fn parse(
    c: &mut Checker,
    field: &str,
    path: &str,
    raw: &serde_yaml::Value,
) -> Option<Condition> {
    let value = match serde_json::to_value(raw) {
        Ok(v) => v,
        Err(e) => {
            c.err(field, format!("not a value: {e}"), None);
            return None;
        }
    };
    let map = match value {
        Value::Object(map) => map,
        other => {
            return Some(Condition {
                path: path.to_string(),
                checks: vec![Check::In(list_of(other))],
            });
        }
    };
    if map.is_empty() {
        c.err(
            field,
            "an empty comparison",
            Some(
                "e.g. {lte: 6}, {gte: 2026-01-01}, {not: [silver]}, {in: [gold, platinum]}".into(),
            ),
        );
        return None;
    }
    let mut checks = Vec::new();
    let mut ok = true;
    for (k, v) in map {
        let at = format!("{field}.{k}");
        if let Some((_, op)) = Op::KEYS.iter().find(|(name, _)| *name == k) {
            match bound(&v) {
                Some(b) => checks.push(Check::Compare(*op, b)),
                None => {
                    c.err(
                        &at,
                        format!("`{k}` compares numbers or dates; `{v}` is neither"),
                        Some(format!("e.g. {k}: 6, or {k}: 2026-01-01")),
                    );
                    ok = false;
                }
            }
            continue;
        }
        match k.as_str() {
            "in" => match v {
                Value::Array(list) if !list.is_empty() => checks.push(Check::In(list)),
                _ => {
                    c.err(
                        &at,
                        "`in` takes a list of values",
                        Some("e.g. in: [gold, platinum]".into()),
                    );
                    ok = false;
                }
            },
            "not" => {
                if v.is_object() {
                    c.err(
                        &at,
                        "`not` takes a value or a list of values",
                        Some("e.g. not: [silver, bronze]".into()),
                    );
                    ok = false;
                } else {
                    checks.push(Check::NotIn(list_of(v)));
                }
            }
            other => {
                let hint = did_you_mean(other, KEYS.iter().copied())
                    .unwrap_or_else(|| format!("comparisons: {}", KEYS.join(", ")));
                c.err(&at, format!("unknown comparison `{other}`"), Some(hint));
                ok = false;
            }
        }
    }
    ok.then(|| Condition {
        path: path.to_string(),
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(checks: Vec<Check>) -> Condition {
        Condition {
            path: "event.data.v".into(),
            checks,
        }
    }

    fn at(c: &Condition, v: Value) -> bool {
        c.holds(&json!({"event": {"data": {"v": v}}}))
    }

    #[test]
    fn values_lists_and_nulls_match_loosely() {
        let ctx = json!({"contact": {"attributes": {"tier": "gold", "visits": 5, "vip": true}, "locale": null}});
        let one = |path: &str, v: Value| Condition {
            path: path.into(),
            checks: vec![Check::In(vec![v])],
        };
        assert!(one("contact.attributes.tier", json!("gold")).holds(&ctx));
        assert!(!one("contact.attributes.tier", json!("silver")).holds(&ctx));
        assert!(one("contact.attributes.visits", json!("5")).holds(&ctx));
        assert!(one("contact.attributes.vip", json!(true)).holds(&ctx));
        assert!(one("contact.locale", Value::Null).holds(&ctx));
        assert!(!one("contact.attributes.missing", json!("x")).holds(&ctx));
        let any = Condition {
            path: "contact.attributes.tier".into(),
            checks: vec![Check::In(vec![json!("silver"), json!("gold")])],
        };
        assert!(any.holds(&ctx));
    }

    #[test]
    fn comparisons_table() {
        let lte6 = cond(vec![Check::Compare(Op::Lte, Bound::Number(6.0))]);
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let since = cond(vec![Check::Compare(Op::Gte, Bound::Date(d("2026-01-01")))]);
        let before = cond(vec![Check::Compare(
            Op::Lt,
            Bound::Instant(DateTime::parse_from_rfc3339("2026-01-01T08:00:00+08:00").unwrap()),
        )]);
        let between = cond(vec![
            Check::Compare(Op::Gt, Bound::Number(6.0)),
            Check::Compare(Op::Lt, Bound::Number(9.0)),
        ]);
        let not = cond(vec![Check::NotIn(vec![json!("silver"), json!("bronze")])]);
        let cases: Vec<(&Condition, Value, bool)> = vec![
            (&lte6, json!(6), true),
            (&lte6, json!(3), true),
            (&lte6, json!(7), false),
            (&lte6, json!("6"), true),
            // 10 > 6 as numbers, though "10" < "6" as text.
            (&lte6, json!("10"), false),
            (&lte6, json!(6.5), false),
            (&lte6, json!("six"), false),
            (&lte6, Value::Null, false),
            (&since, json!("2026-01-01"), true),
            (&since, json!("2025-12-31"), false),
            (&since, json!("2026-03-04T23:00:00-05:00"), true),
            (&since, json!(20260101), false),
            (&before, json!("2025-12-31T23:59:59Z"), true),
            // 00:00Z is 08:00 in Shanghai: not before it.
            (&before, json!("2026-01-01T00:00:00Z"), false),
            (&before, json!("2025-12-31"), true),
            (&between, json!(7), true),
            (&between, json!(9), false),
            (&not, json!("gold"), true),
            (&not, json!("silver"), false),
            (&not, Value::Null, true),
        ];
        for (c, v, want) in cases {
            assert_eq!(at(c, v.clone()), want, "{c:?} at {v}");
        }
        assert!(!lte6.selects_high_scores());
        assert!(cond(vec![Check::Compare(Op::Gte, Bound::Number(9.0))]).selects_high_scores());
        assert!(cond(vec![Check::In(vec![json!(9), json!(10)])]).selects_high_scores());
        assert!(cond(vec![Check::NotIn((0..=6).map(Value::from).collect())]).selects_high_scores());
        assert!(!not.selects_high_scores());
    }
}
