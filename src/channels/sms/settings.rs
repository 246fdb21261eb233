//! The `sms:` section of the daemon config: the default route, the breaker, and the
//! gateways, each checked by its own kind (`twilio/settings.rs`, `aliyun/settings.rs`,
//! `generic/settings.rs`).
//!
//! A gateway is one flat mapping whose `kind` says which keys apply. The keys every kind
//! takes (`kind`, `rate`, `timeout`, `base_url`) are read here; the rest of the mapping goes
//! to the kind, whose raw struct is the one list of its keys: the "belongs to another kind"
//! message and "did you mean" are derived from those structs, so a key is written once.
//! Secrets are only ever named (`*_env`, `*_file`): `auth_token: ...` is an unknown key, and a
//! generic gateway's credential header must come from `{{secret}}`.
//!
//! Over 600 lines with its tests (about 200, every problem a user can write, located).

use super::{aliyun, generic, twilio};
use crate::check::{Checker, RawScalar};
use crate::diag::did_you_mean;
use crate::values::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::Duration;

/// `sms:` as written. Gateways stay YAML until their `kind` says how to read them.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawSmsConfig {
    /// Default gateway order for jobs that name none.
    #[serde(default)]
    route: Vec<String>,
    #[serde(default)]
    gateways: BTreeMap<String, serde_yaml::Value>,
    breaker: Option<RawBreaker>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failures: Option<u32>,
    cooldown: Option<String>,
}

/// The keys every kind of gateway takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommon {
    kind: Kind,
    /// `10/s`, `600/m`, `3600/h`.
    rate: Option<RawScalar>,
    /// Per request, connecting included (default 10s).
    timeout: Option<String>,
    base_url: Option<String>,
    /// The token an unsigned provider's pushes (receipts, replies) must carry in the URL
    /// they call (`?token=`).
    push_token_env: Option<String>,
    push_token_file: Option<String>,
}

/// The kinds of gateway, each with its own file.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Twilio,
    Aliyun,
    Http,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Twilio, Kind::Aliyun, Kind::Http];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Twilio => "twilio",
            Kind::Aliyun => "aliyun",
            Kind::Http => "http",
        }
    }

    /// The kind's own keys, read off its raw struct.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Twilio => fields::<twilio::settings::Raw>(),
            Kind::Aliyun => fields::<aliyun::settings::Raw>(),
            Kind::Http => fields::<generic::settings::Raw>(),
        }
    }
}

/// The field names a `deny_unknown_fields` struct accepts, as serde sees them.
fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    serde_aux::serde_introspection::serde_introspect::<T>()
}

/// The checked `sms:` section.
#[derive(Debug, Clone)]
pub struct SmsConfig {
    /// Default route: gateway names in order of preference.
    pub route: Vec<String>,
    /// In name order.
    pub gateways: Vec<GatewayConfig>,
    pub breaker: BreakerConfig,
}

impl SmsConfig {
    pub fn gateway(&self, name: &str) -> Option<&GatewayConfig> {
        self.gateways.iter().find(|g| g.name == name)
    }

    /// Check a job's route (at `at` in the job's file) against the configured gateways.
    pub fn check_route(&self, c: &mut Checker, at: &str, route: &[String]) {
        let names = self.gateways.iter().map(|g| g.name.as_str());
        for (i, name) in route.iter().enumerate() {
            if self.gateway(name).is_none() {
                let hint = did_you_mean(name, names.clone()).or_else(|| {
                    Some(format!(
                        "configured gateways: {}",
                        names.clone().collect::<Vec<_>>().join(", ")
                    ))
                });
                c.err(
                    &format!("{at}[{i}]"),
                    format!("no SMS gateway named `{name}`"),
                    hint,
                );
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive transient failures that mark a gateway down.
    pub failures: u32,
    /// How long a down gateway is skipped before one send probes it again.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// At most `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub const DEFAULT: Rate = Rate {
        count: 10,
        per: Duration::from_secs(1),
    };

    /// `10/s`, `600/m`, `3600/h`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let (n, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a rate"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{text}`: `{}` is not a whole number", n.trim()))?;
        if count == 0 {
            return Err(format!("`{text}`: the rate must be at least 1"));
        }
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => return Err(format!("`{text}`: unknown unit `{other}` (s, m or h)")),
        };
        Ok(Rate { count, per })
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub name: String,
    pub rate: Rate,
    pub timeout: Duration,
    /// What an Aliyun or http gateway's pushes must carry as `?token=` in the URL they call
    /// ([`Secret::None`]: nothing, the path is to be kept private). Twilio signs its own.
    pub push_token: Secret,
    pub settings: GatewaySettings,
}

#[derive(Debug, Clone)]
pub enum GatewaySettings {
    Twilio(twilio::settings::TwilioConfig),
    Aliyun(aliyun::settings::AliyunConfig),
    // Boxed: templates, success rule, receipt and reply mappings make it twice the others.
    Http(Box<generic::settings::HttpConfig>),
}

impl GatewaySettings {
    pub fn kind(&self) -> &'static str {
        match self {
            GatewaySettings::Twilio(_) => "twilio",
            GatewaySettings::Aliyun(_) => "aliyun",
            GatewaySettings::Http(_) => "http",
        }
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const COMMON_KEYS: [&str; 6] = [
    "kind",
    "rate",
    "timeout",
    "base_url",
    "push_token_env",
    "push_token_file",
];

/// The `sms:` section alone, from YAML text (`route`, `gateways`, `breaker` at the top):
/// for a channel built without a whole daemon config, as the tests do.
pub fn from_yaml(
    path: &std::path::Path,
    text: &str,
) -> Result<SmsConfig, crate::diag::Diagnostics> {
    let doc = crate::yaml::parse_one::<RawSmsConfig>(path, text)
        .map_err(|items| crate::diag::Diagnostics { items })?;
    // Field paths are `sms.…`; the spans of a bare section are rooted one level up.
    let spans = doc.spans.nested_under("sms");
    let mut c = Checker::new(path, &spans);
    let cfg = check(&mut c, &doc.value);
    if c.has_errors() {
        Err(c.into_diagnostics())
    } else {
        Ok(cfg)
    }
}

/// Check `sms:`. Every problem is reported at its place in the config, not just the first.
pub fn check(c: &mut Checker, raw: &RawSmsConfig) -> SmsConfig {
    let mut gateways = Vec::new();
    for (name, g) in &raw.gateways {
        if let Some(gw) = gateway(c, name, g) {
            gateways.push(gw);
        }
    }
    SmsConfig {
        breaker: breaker(c, raw.breaker.as_ref()),
        route: route(c, raw),
        gateways,
    }
}

fn route(c: &mut Checker, raw: &RawSmsConfig) -> Vec<String> {
    let names: Vec<&str> = raw.gateways.keys().map(String::as_str).collect();
    if raw.route.is_empty() {
        return match names.as_slice() {
            [] => Vec::new(),
            [one] => vec![one.to_string()],
            _ => {
                c.err(
                    "sms.route",
                    "several gateways but no default route",
                    Some(format!(
                        "name them in order of preference, e.g. route: [{}]",
                        names.join(", ")
                    )),
                );
                Vec::new()
            }
        };
    }
    for (i, name) in raw.route.iter().enumerate() {
        if !raw.gateways.contains_key(name) {
            let hint = did_you_mean(name, names.iter().copied()).or_else(|| {
                Some(if names.is_empty() {
                    "define it under sms.gateways".into()
                } else {
                    format!("configured gateways: {}", names.join(", "))
                })
            });
            c.err(
                &format!("sms.route[{i}]"),
                format!("no gateway named `{name}`"),
                hint,
            );
        }
        if raw.route.iter().take(i).any(|r| r == name) {
            c.err(
                &format!("sms.route[{i}]"),
                format!("`{name}` appears twice"),
                None,
            );
        }
    }
    raw.route.clone()
}

fn breaker(c: &mut Checker, raw: Option<&RawBreaker>) -> BreakerConfig {
    let d = BreakerConfig::default();
    let Some(raw) = raw else { return d };
    let failures = raw.failures.unwrap_or(d.failures);
    if failures == 0 {
        c.err(
            "sms.breaker.failures",
            "must be at least 1",
            Some("the number of transient failures in a row that mark a gateway down".into()),
        );
    }
    BreakerConfig {
        failures: failures.max(1),
        cooldown: c.positive_duration_or(
            "sms.breaker.cooldown",
            raw.cooldown.as_deref(),
            d.cooldown,
        ),
    }
}

fn gateway(c: &mut Checker, name: &str, g: &serde_yaml::Value) -> Option<GatewayConfig> {
    let at = format!("sms.gateways.{name}");
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        c.err(
            &at,
            format!("`{name}` is not a gateway name"),
            Some("use lowercase letters, digits, `-` and `_`".into()),
        );
    }
    let Some(map) = g.as_mapping() else {
        c.err(
            &at,
            "a gateway is a mapping of settings",
            Some("e.g. {kind: twilio, account_sid: AC…, auth_token_env: TWILIO_AUTH_TOKEN, from: \"+15005550006\"}".into()),
        );
        return None;
    };
    let (common, own) = split(map);
    let common: RawCommon = read(c, &at, common)?;
    let kind = common.kind;
    foreign_keys(c, &at, kind, &own);
    let rate = match &common.rate {
        None => Rate::DEFAULT,
        Some(RawScalar::Text(t)) => Rate::parse(t).unwrap_or_else(|e| {
            c.err(
                &format!("{at}.rate"),
                e,
                Some("messages per second, minute or hour: 10/s, 600/m".into()),
            );
            Rate::DEFAULT
        }),
        Some(other) => {
            c.err(
                &format!("{at}.rate"),
                format!("`{}` has no unit", other.text()),
                Some(format!("write {}/s for per second", other.text())),
            );
            Rate::DEFAULT
        }
    };
    let timeout = c.positive_duration_or(
        &format!("{at}.timeout"),
        common.timeout.as_deref(),
        DEFAULT_TIMEOUT,
    );
    let base_url = common.base_url.as_deref();
    let push_token = c.secret(
        &at,
        "push_token",
        common.push_token_env.as_deref(),
        common.push_token_file.as_deref(),
    );
    if kind == Kind::Twilio && !matches!(push_token, Secret::None) {
        c.err(
            &format!("{at}.push_token_env"),
            "Twilio signs its requests (X-Twilio-Signature); a push token is for aliyun and http gateways",
            Some("remove it: Twilio's callbacks are checked against auth_token".into()),
        );
    }
    let settings = match kind {
        Kind::Twilio => {
            let raw = read(c, &at, own)?;
            GatewaySettings::Twilio(twilio::settings::check(c, &at, base_url, raw))
        }
        Kind::Aliyun => {
            let raw = read(c, &at, own)?;
            GatewaySettings::Aliyun(aliyun::settings::check(c, &at, base_url, raw))
        }
        Kind::Http => {
            if base_url.is_some() {
                c.err(
                    &format!("{at}.base_url"),
                    "an http gateway has no base_url",
                    Some("write the whole address in `url`".into()),
                );
            }
            let raw = read(c, &at, own)?;
            GatewaySettings::Http(Box::new(generic::settings::check(c, &at, raw)?))
        }
    };
    Some(GatewayConfig {
        name: name.to_string(),
        rate,
        timeout,
        push_token,
        settings,
    })
}

/// The keys every kind takes, and the gateway's own.
fn split(map: &serde_yaml::Mapping) -> (serde_yaml::Mapping, serde_yaml::Mapping) {
    map.iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| k.as_str().is_some_and(|k| COMMON_KEYS.contains(&k)))
}

/// Keys that are not the kind's: one that belongs to another kind says so; any other is
/// unknown, with the nearest real key. They are then left out, so that the kind's own
/// reading reports only real problems.
fn foreign_keys(c: &mut Checker, at: &str, kind: Kind, own: &serde_yaml::Mapping) {
    let mine = kind.keys();
    for key in own.keys() {
        let Some(key) = key.as_str() else { continue };
        if mine.contains(&key) {
            continue;
        }
        let field = format!("{at}.{key}");
        let owners: Vec<&str> = Kind::ALL
            .into_iter()
            .filter(|k| k.keys().contains(&key))
            .map(Kind::as_str)
            .collect();
        if owners.is_empty() {
            let hint = did_you_mean(key, mine.iter().chain(&COMMON_KEYS).copied())
                .unwrap_or_else(|| format!("{} gateways take: {}", kind.as_str(), mine.join(", ")));
            c.err_at_key(
                &field,
                format!("unknown field `{key}`"),
                Some(if key.ends_with("secret") || key.ends_with("token") || key == "password" {
                    format!("{hint}; secrets are never written here: name a variable (*_env) or a file (*_file)")
                } else {
                    hint
                }),
            );
        } else {
            c.err_at_key(
                &field,
                format!("`{key}` is not a setting of {} gateways", kind.as_str()),
                Some(format!(
                    "it belongs to {} gateways; remove it or change `kind`",
                    owners.join(" and ")
                )),
            );
        }
    }
}

/// Read a mapping into a kind's raw struct, keys the kind does not know left out (they
/// were reported); a wrong type is reported at the field that has it.
fn read<T: DeserializeOwned>(c: &mut Checker, at: &str, map: serde_yaml::Mapping) -> Option<T> {
    let known = fields::<T>();
    let map: serde_yaml::Mapping = map
        .into_iter()
        .filter(|(k, _)| k.as_str().is_some_and(|k| known.contains(&k)))
        .collect();
    serde_path_to_error::deserialize(serde_yaml::Value::Mapping(map))
        .map_err(|e| {
            let field = match e.path().to_string().as_str() {
                "." | "" => at.to_string(),
                p => format!("{at}.{p}"),
            };
            let hint = e
                .inner()
                .to_string()
                .contains("unknown variant")
                .then(|| "see the README's SMS section for the allowed values".to_string());
            c.err(&field, e.inner().to_string(), hint);
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::channels::sms::aliyun::settings::AliyunConfig;
    use crate::channels::sms::twilio::settings::TwilioSender;
    use crate::values::Secret;
    use std::path::Path;

    /// Each problem as `field: message (hint: …)`.
    fn parse(yaml: &str) -> Result<SmsConfig, Vec<String>> {
        from_yaml(Path::new("/etc/aftercare/aftercare.yaml"), yaml).map_err(|d| {
            d.items
                .iter()
                .map(|d| match &d.hint {
                    Some(h) => format!("{} (hint: {h})", d.message),
                    None => d.message.clone(),
                })
                .collect()
        })
    }

    fn route_problems(c: &SmsConfig, route: &[&str]) -> Vec<String> {
        let spans = crate::yaml::SpanIndex::default();
        let mut ch = Checker::new(Path::new("jobs/a.yaml"), &spans);
        let route: Vec<String> = route.iter().map(|s| s.to_string()).collect();
        c.check_route(&mut ch, "sms.route", &route);
        ch.into_diagnostics()
            .items
            .into_iter()
            .map(|d| format!("{} (hint: {})", d.message, d.hint.unwrap_or_default()))
            .collect()
    }

    const EXAMPLE: &str = r#"
route: [aliyun, http-backup]
gateways:
  twilio-us: {kind: twilio, account_sid: AC123, auth_token_env: TWILIO_AUTH_TOKEN, from: "+15005550006", status_callback: "https://example.com/sms/status", rate: 10/s, base_url: "https://api.twilio.com"}
  aliyun: {kind: aliyun, access_key_id: LTAI5t, access_key_secret_env: ALIYUN_SECRET, sign_name: 示例商店, rate: 50/s}
  http-backup: {kind: http, method: POST, url: "https://sms.example.cn/send", headers: {Authorization: "Bearer {{secret}}"}, secret_file: secrets/sms, body: '{"to":"{{to}}","text":"{{body}}"}', format: json, success: {status: 200, pointer: /code, equals: "0"}, id_pointer: /data/id, rate: 20/s}
breaker: {failures: 3, cooldown: 1m}
"#;

    /// An unsigned gateway's pushes can be held to a token; Twilio signs its own.
    #[test]
    fn a_push_token_is_for_unsigned_gateways() {
        let c = parse(
            "gateways:\n  ali: {kind: aliyun, access_key_id: L, access_key_secret_env: S, sign_name: 店, push_token_env: ALI_PUSH}\n",
        )
        .unwrap();
        assert!(matches!(&c.gateway("ali").unwrap().push_token, Secret::Env(v) if v == "ALI_PUSH"));
        let e = parse(
            "gateways:\n  tw: {kind: twilio, account_sid: AC1, auth_token_env: T, from: \"+15005550006\", push_token_env: P}\n",
        )
        .unwrap_err();
        assert!(
            e.iter().any(|m| m.contains("Twilio signs its requests")),
            "{e:?}"
        );
    }

    #[test]
    fn the_documented_example_compiles() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.route, ["aliyun", "http-backup"]);
        assert_eq!(
            c.breaker,
            BreakerConfig {
                failures: 3,
                cooldown: Duration::from_secs(60)
            }
        );
        let names: Vec<_> = c.gateways.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["aliyun", "http-backup", "twilio-us"]);
        let a = c.gateway("aliyun").unwrap();
        assert_eq!(
            a.rate,
            Rate {
                count: 50,
                per: Duration::from_secs(1)
            }
        );
        assert_eq!(a.timeout, Duration::from_secs(10));
        let GatewaySettings::Aliyun(al) = &a.settings else {
            panic!()
        };
        let _: &AliyunConfig = al;
        assert_eq!(al.region, "cn-hangzhou");
        assert_eq!(al.base_url.as_str(), "https://dysmsapi.aliyuncs.com/");
        assert!(matches!(&al.access_key_secret, Secret::Env(v) if v == "ALIYUN_SECRET"));
        let GatewaySettings::Http(h) = &c.gateway("http-backup").unwrap().settings else {
            panic!()
        };
        assert!(
            matches!(&h.secret, Secret::File(p) if p == Path::new("/etc/aftercare/secrets/sms"))
        );
        assert_eq!(h.success.status, [200]);
        assert_eq!(h.success.equals.as_deref(), Some("0"));
        let GatewaySettings::Twilio(t) = &c.gateway("twilio-us").unwrap().settings else {
            panic!()
        };
        assert_eq!(t.sender, TwilioSender::From("+15005550006".into()));
        assert!(route_problems(&c, &["twilio-us"]).is_empty());
        assert_eq!(
            route_problems(&c, &["aliyun", "twilio_us"]),
            ["sms.route[1]: no SMS gateway named `twilio_us` (hint: did you mean `twilio-us`?)"]
        );
    }

    #[test]
    fn a_literal_secret_is_an_unknown_key() {
        for (yaml, key) in [
            (
                "gateways: {t: {kind: twilio, account_sid: AC1, auth_token: abc, from: \"+15005550006\"}}",
                "auth_token",
            ),
            (
                "gateways: {a: {kind: aliyun, access_key_id: L, access_key_secret: abc, sign_name: s}}",
                "access_key_secret",
            ),
            (
                "gateways: {h: {kind: http, url: \"http://x\", secret: abc}}",
                "secret",
            ),
        ] {
            let err = parse(yaml).unwrap_err().join("\n");
            assert!(err.contains(&format!("unknown field `{key}`")), "{err}");
            assert!(err.contains("secrets are never written here"), "{err}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let yaml = r#"
route: [aliyn, tw]
gateways:
  tw: {kind: twilio, account_sid: AC1, from: "+1", rate: 10, sign_name: x, timeout: 5x}
  aliyun: {kind: aliyun, access_key_id: L, access_key_secret_env: A, access_key_secret_file: B, sign_name: s, rate: 5/d}
  Bad.Name: {kind: http, url: "http://x/{{to}}", headers: {Authorization: "Bearer abc123"}, success: {status: 404, pointer: code}, body: "{{nope"}
breaker: {failures: 0, cooldown: 0s}
"#;
        let all = parse(yaml).unwrap_err().join("\n");
        for want in [
            "sms.route[0]: no gateway named `aliyn` (hint: did you mean `aliyun`?)",
            "sms.gateways.tw.auth_token_env: no auth token",
            "sms.gateways.tw.from: `+1`",
            "sms.gateways.tw.rate: `10` has no unit (hint: write 10/s for per second)",
            "sms.gateways.tw.sign_name: `sign_name` is not a setting of twilio gateways (hint: it belongs to aliyun gateways",
            "sms.gateways.tw.timeout: `5x` has an unknown unit",
            "sms.gateways.aliyun.access_key_secret_env: give access_key_secret_env or access_key_secret_file, not both",
            "sms.gateways.aliyun.rate: `5/d`: unknown unit `d`",
            "sms.gateways.Bad.Name: `Bad.Name` is not a gateway name",
            "sms.gateways.Bad.Name.headers.Authorization: `Authorization` looks like a credential",
            "sms.gateways.Bad.Name.success.status: 404 is not a 2xx status",
            "sms.gateways.Bad.Name.success.pointer: `code` is not a JSON pointer (hint: pointers start with `/`, e.g. /code)",
            "sms.gateways.Bad.Name.success: `pointer` and `equals` go together",
            "sms.gateways.Bad.Name.body:",
            "sms.breaker.failures: must be at least 1",
            "sms.breaker.cooldown: must be longer than 0s",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
    }

    #[test]
    fn defaults_and_single_gateway_route() {
        let c = parse("gateways: {only: {kind: aliyun, access_key_id: L, access_key_secret_file: /run/s, sign_name: s}}").unwrap();
        assert_eq!(c.route, ["only"]);
        assert_eq!(c.breaker, BreakerConfig::default());
        assert_eq!(c.gateways[0].rate, Rate::DEFAULT);
        let err = parse("gateways: {a: {kind: aliyun, access_key_id: L, access_key_secret_env: S, sign_name: s}, b: {kind: aliyun, access_key_id: L, access_key_secret_env: S, sign_name: s}}").unwrap_err();
        assert!(err[0].starts_with("sms.route: "), "{err:?}");
        assert!(parse("{}").unwrap().gateways.is_empty());
    }

    #[test]
    fn http_templates_are_checked_at_load() {
        let base = "gateways: {h: {kind: http, url: \"http://x/send\"";
        let ok = format!("{base}, body: '{{\"to\":\"{{{{to}}}}\",\"text\":\"{{{{body}}}}\"}}'}}}}");
        assert!(parse(&ok).is_ok(), "{:?}", parse(&ok));
        let not_json = format!("{base}, body: '{{\"to\": {{{{to}}}}}}'}}}}");
        let e = parse(&not_json).unwrap_err();
        assert!(e[0].starts_with("sms.gateways.h.body: "), "{e:?}");
        assert!(e[0].contains("JSON"), "{e:?}");
        let unknown = format!("{base}, body: '{{\"to\":\"{{{{phone}}}}\"}}'}}}}");
        let e = parse(&unknown).unwrap_err();
        assert!(e[0].contains("phone"), "{e:?}");
        let params = format!(
            "{base}, body: '{{\"tpl\":\"{{{{template_code}}}}\",\"n\":\"{{{{template_params.name}}}}\"}}'}}}}"
        );
        assert!(parse(&params).is_ok(), "{:?}", parse(&params));
        let unused = format!("{base}, secret_env: X}}}}");
        assert!(parse(&unused).unwrap_err()[0].contains("no template uses"));
    }

    #[test]
    fn rates() {
        assert_eq!(
            Rate::parse("10/s"),
            Ok(Rate {
                count: 10,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            Rate::parse(" 600 / m"),
            Ok(Rate {
                count: 600,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(
            Rate::parse("1/h"),
            Ok(Rate {
                count: 1,
                per: Duration::from_secs(3600)
            })
        );
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("ten/s").is_err());
        assert!(Rate::parse("10").is_err());
    }
}
