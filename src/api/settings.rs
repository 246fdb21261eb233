//! The `api:` section: where the HTTP API listens, who may call it, and how much it takes.

use crate::check::Checker;
use crate::values::{Secret, parse_size};
use serde::Deserialize;

/// `api:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    listen: Option<String>,
    #[serde(default)]
    tokens: Vec<RawToken>,
    max_events: Option<usize>,
    max_body: Option<String>,
    /// How many events one shared transaction takes at most (group commit).
    group_commit: Option<usize>,
    /// The URL the outside world reaches this API at (providers sign the URL they call).
    public_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    scope: Scope,
    token_env: Option<String>,
    token_file: Option<String>,
}

/// What a bearer token may do. `admin` may do everything, `read` only reads, `ingest` only
/// posts events.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    Admin,
}

impl Scope {
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// The HTTP API: where it listens and who may call it.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: std::net::SocketAddr,
    pub tokens: Vec<TokenConfig>,
    /// Events per `POST /v1/events` at most.
    pub max_events: usize,
    /// Request body size at most, in bytes.
    pub max_body: usize,
    pub group_commit: usize,
    pub public_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub name: String,
    pub scope: Scope,
    pub secret: Secret,
}

pub fn check(c: &mut Checker, raw: RawApi) -> ApiConfig {
    let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = listen_text.parse().unwrap_or_else(|_| {
        c.err(
            "api.listen",
            format!("`{listen_text}` is not an address:port"),
            Some("e.g. 127.0.0.1:8080 or 0.0.0.0:8080".into()),
        );
        std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let mut tokens = Vec::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        let at = format!("api.tokens[{i}]");
        let secret = c.required_secret(
            &at,
            "token",
            (t.token_env.as_deref(), t.token_file.as_deref()),
            "token",
            "tokens never live in this file: name an environment variable or a file",
        );
        if raw.tokens[..i].iter().any(|o| o.name == t.name) {
            c.err(
                &format!("{at}.name"),
                format!("token name `{}` is used twice", t.name),
                None,
            );
        }
        if secret.is_set() {
            tokens.push(TokenConfig {
                name: t.name.clone(),
                scope: t.scope,
                secret,
            });
        }
    }
    let max_body = match raw.max_body.as_deref().map(parse_size) {
        None => 1 << 20,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            c.err("api.max_body", e, Some("e.g. 1MiB, 512KiB".into()));
            1 << 20
        }
    };
    if let Some(u) = &raw.public_url {
        c.url("api.public_url", u, "https://care.example.com");
    }
    ApiConfig {
        listen,
        tokens,
        max_events: raw.max_events.unwrap_or(1000).max(1),
        max_body,
        group_commit: raw.group_commit.unwrap_or(2000).max(1),
        public_url: raw.public_url,
    }
}
