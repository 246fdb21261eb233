//! Who is signed in: argon2 passwords, sessions, CSRF tokens, and the brake on guessing.
//!
//! - A password is checked against the argon2 hash in the user's `password_file`, read at
//!   each sign-in. An API token with the `admin` scope signs in too (a single-person
//!   install), as `admin` under the token's name.
//! - A session is a random id in an HttpOnly, `SameSite=Strict` cookie (`Secure` when the
//!   console is reached over HTTPS) and lives in this process's memory: a restart signs
//!   everyone out, and several daemons behind one address need sticky sessions. It ends after
//!   `console.idle_timeout` without a request, `console.session_lifetime` after signing in
//!   however busy, at sign-out, or when the user's password file changes (`console passwd`),
//!   at the next request.
//! - Every form carries the session's CSRF token, compared in constant time on each POST;
//!   `SameSite=Strict` is the second wall.
//! - Five wrong passwords for a name (known or not, so the brake does not tell which names
//!   exist) close that name for 30 seconds, doubling with each further failure up to 15
//!   minutes; the right password inside the pause is refused too. Only a success resets it.
//! - A browser that has signed in as a name is a known device for it (a random id in a
//!   30-day cookie): its sign-ins under that name have a brake of their own, so a stranger's
//!   guesses, which close the name, do not lock its owner out (OWASP's device cookies).
//! - At most [`CHECKS_AT_ONCE`] password checks run at once; a sign-in that cannot start its
//!   check within [`CHECK_WAIT`] is answered 503, so a flood of sign-ins costs time, not memory.
//!
//! Real time, like network timeouts: sessions and the brake are about people at keyboards
//! now, not about the schedule.

use super::settings::{ConsoleConfig, Role};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong passwords for one name before it is slowed down.
pub(super) const FREE_TRIES: u32 = 5;
/// The first pause after [`FREE_TRIES`]; it doubles with each further failure.
const FIRST_PAUSE: Duration = Duration::from_secs(30);
const LONGEST_PAUSE: Duration = Duration::from_secs(15 * 60);
/// Sessions held at most: past this the idlest are dropped first.
const MAX_SESSIONS: usize = 10_000;
/// Names the brake remembers at most (a flood of invented names cannot grow it unbounded).
const MAX_BRAKES: usize = 100_000;
/// How long a browser stays a known device for the name it signed in as.
pub(super) const DEVICE_LIFETIME: Duration = Duration::from_secs(30 * 86_400);
/// Known devices held at most: past this the oldest are forgotten first.
const MAX_DEVICES: usize = 10_000;
/// Password checks that run at once. Each argon2 check holds 19 MiB and tens of milliseconds
/// of CPU; the brake slows a name, not a caller, so sign-ins under invented names ran as many
/// checks at once as the blocking pool has threads (512: gigabytes).
pub(super) const CHECKS_AT_ONCE: usize = 2;
/// How long a sign-in waits for its check before it is asked to come back (503).
pub(super) const CHECK_WAIT: Duration = Duration::from_secs(5);

/// The hash `aftercare console passwd` writes: argon2id with the crate's default cost, a
/// random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash.trim()) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// An API token that may sign in to the console (admin scope).
#[derive(Clone)]
pub struct TokenLogin {
    pub name: String,
    pub secret: String,
}

impl std::fmt::Debug for TokenLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenLogin")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    /// The password hash it was opened with (`None` for an API token): a session outlives
    /// no `console passwd`, checked at each request ([`Session::password_changed`]).
    pub hash: Option<String>,
    opened: Instant,
    last_seen: Instant,
}

impl Session {
    /// Whether the user's password file no longer holds the hash this session was opened
    /// with: the password was changed (or the file removed), so whoever holds the cookie
    /// signs in again. A read per request of a file of ~100 bytes.
    pub(super) async fn password_changed(&self, cfg: &ConsoleConfig) -> bool {
        let Some(hash) = &self.hash else {
            return false;
        };
        let Some(user) = cfg.user(&self.user) else {
            return true;
        };
        match tokio::fs::read_to_string(&user.password_file).await {
            Ok(now) => now.trim() != hash,
            Err(_) => true,
        }
    }
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    /// Unknown name, wrong password, or a user whose hash cannot be read (logged).
    Wrong,
    /// Too many wrong passwords for this name: try again after this long.
    Slowed(Duration),
}

#[derive(Default)]
struct Brake {
    failures: u32,
    until: Option<Instant>,
}

/// A browser that signed in: the brake key it signed in under, and until when it is known.
struct Device {
    key: String,
    until: Instant,
}

/// A sign-in that succeeded: the session's id for its cookie, the session, and the device id
/// for the browser's device cookie.
#[derive(Debug)]
pub(super) struct SignedIn {
    pub id: String,
    pub session: Session,
    pub device: String,
}

/// Sessions, the guessing brake, the known devices and the password checks' turns of one
/// daemon.
pub(super) struct Auth {
    sessions: Mutex<HashMap<String, Session>>,
    brakes: Mutex<HashMap<String, Brake>>,
    devices: Mutex<HashMap<String, Device>>,
    /// [`CHECKS_AT_ONCE`] permits; a sign-in holds one while its check runs.
    pub(super) checks: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            sessions: Mutex::default(),
            brakes: Mutex::default(),
            devices: Mutex::default(),
            checks: std::sync::Arc::new(tokio::sync::Semaphore::new(CHECKS_AT_ONCE)),
        }
    }
}

impl Auth {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // Plain maps, valid after any panic: poisoning carries no meaning here.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn brakes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Brake>> {
        self.brakes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, HashMap<String, Device>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Check a name and password (or, with an empty name, an admin API token) and open a
    /// session. `device` is the browser's device cookie: when it is known for this name, the
    /// sign-in is braked by it rather than by the name.
    pub(super) fn sign_in(
        &self,
        cfg: &ConsoleConfig,
        tokens: &[TokenLogin],
        name: &str,
        password: &str,
        device: Option<&str>,
        now: Instant,
    ) -> Result<SignedIn, Refused> {
        let name_key = if name.is_empty() {
            "(api token)".to_string()
        } else {
            name.to_lowercase()
        };
        let known = device.filter(|d| {
            self.devices()
                .get(*d)
                .is_some_and(|k| k.until > now && k.key == name_key)
        });
        let key = match known {
            Some(d) => format!("device:{d}"),
            None => name_key.clone(),
        };
        if let Some(until) = self.brakes().get(&key).and_then(|b| b.until)
            && until > now
        {
            return Err(Refused::Slowed(until - now));
        }
        let who = if name.is_empty() {
            tokens
                .iter()
                .find(|t| crate::values::same_secret(t.secret.as_bytes(), password.as_bytes()))
                .map(|t| (format!("token:{}", t.name), Role::Admin, None))
        } else {
            match cfg.user(name) {
                Some(u) => match std::fs::read_to_string(&u.password_file) {
                    Ok(hash) => verify_password(password, &hash)
                        .then(|| (u.name.clone(), u.role, Some(hash.trim().to_string()))),
                    Err(e) => {
                        tracing::warn!(user = %u.name, file = %u.password_file.display(), "console user cannot sign in: cannot read the password file ({e}); write it with `aftercare console passwd {}`", u.name);
                        None
                    }
                },
                None => {
                    // As slow as a real check, so a name's existence does not show in timing.
                    let _ = verify_password(password, DUMMY_HASH);
                    None
                }
            }
        };
        let Some((user, role, hash)) = who else {
            let mut brakes = self.brakes();
            if brakes.len() >= MAX_BRAKES && !brakes.contains_key(&key) {
                brakes.retain(|_, b| b.until.is_some_and(|u| u > now));
            }
            let b = brakes.entry(key).or_default();
            b.failures = b.failures.saturating_add(1);
            if b.failures >= FREE_TRIES {
                let doublings = (b.failures - FREE_TRIES).min(10);
                let pause = (FIRST_PAUSE * 2u32.pow(doublings)).min(LONGEST_PAUSE);
                b.until = Some(now + pause);
                return Err(Refused::Slowed(pause));
            }
            return Err(Refused::Wrong);
        };
        self.brakes().remove(&key);
        let device = known.map_or_else(random_token, str::to_string);
        {
            let mut devices = self.devices();
            if !devices.contains_key(&device) {
                make_room(&mut devices, MAX_DEVICES, |d| d.until > now, |d| d.until);
            }
            devices.insert(
                device.clone(),
                Device {
                    key: name_key,
                    until: now + DEVICE_LIFETIME,
                },
            );
        }
        let session = Session {
            user,
            role,
            csrf: random_token(),
            hash,
            opened: now,
            last_seen: now,
        };
        let id = random_token();
        let mut sessions = self.sessions();
        make_room(
            &mut sessions,
            MAX_SESSIONS,
            |s| now.duration_since(s.last_seen) < cfg.idle_timeout,
            |s| s.last_seen,
        );
        sessions.insert(id.clone(), session.clone());
        Ok(SignedIn {
            id,
            session,
            device,
        })
    }

    /// The session of cookie value `id`, touched; `None` when unknown, idle too long or past
    /// its lifetime (then it is forgotten).
    pub(super) fn session(&self, id: &str, cfg: &ConsoleConfig, now: Instant) -> Option<Session> {
        let mut sessions = self.sessions();
        let s = sessions.get_mut(id)?;
        if now.duration_since(s.last_seen) >= cfg.idle_timeout
            || now.duration_since(s.opened) >= cfg.session_lifetime
        {
            sessions.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    /// The session of cookie value `id` if it still holds: [`Auth::session`], and opened
    /// with the password the user's file holds now (a changed password signs it out).
    pub(super) async fn current(
        &self,
        id: &str,
        cfg: &ConsoleConfig,
        now: Instant,
    ) -> Option<Session> {
        let s = self.session(id, cfg, now)?;
        if s.password_changed(cfg).await {
            tracing::info!(user = %s.user, "console session ended: the password changed");
            self.sign_out(id);
            return None;
        }
        Some(s)
    }

    pub(super) fn sign_out(&self, id: &str) {
        self.sessions().remove(id);
    }
}

/// Room for one more entry in a map held to `max`: when full, the entries `live` says are
/// over go, then the one `age` says is oldest.
fn make_room<V>(
    map: &mut HashMap<String, V>,
    max: usize,
    live: impl Fn(&V) -> bool,
    age: impl Fn(&V) -> Instant,
) {
    if map.len() < max {
        return;
    }
    map.retain(|_, v| live(v));
    if map.len() >= max
        && let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| age(v))
            .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

/// A real argon2 hash of nothing anyone types, for timing parity on unknown names.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Xq1mQ2kHX1hO7n6bW8m0S6n0mZxF2Jv3tJ7j3cJk1bQ";

/// 256 random bits, URL-safe: session ids and CSRF tokens.
pub(super) fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    // getrandom fails only without an OS random source; then no session can be safe.
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("no random source: {e}"));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::settings::UserConfig;

    fn cfg(dir: &std::path::Path) -> ConsoleConfig {
        std::fs::write(dir.join("li"), hash_password("correct horse").unwrap()).unwrap();
        ConsoleConfig {
            enabled: true,
            users: vec![UserConfig {
                name: "li".into(),
                role: Role::Support,
                password_file: dir.join("li"),
            }],
            idle_timeout: Duration::from_secs(60),
            session_lifetime: Duration::from_secs(600),
            public_url: None,
        }
    }

    #[test]
    fn passwords_sessions_and_the_brake() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg(dir.path());
        let auth = Auth::default();
        let t0 = Instant::now();
        let tokens = vec![TokenLogin {
            name: "ops".into(),
            secret: "0123456789abcdef-ops".into(),
        }];
        let SignedIn { id, session: s, .. } = auth
            .sign_in(&cfg, &tokens, "li", "correct horse", None, t0)
            .unwrap();
        assert_eq!((s.user.as_str(), s.role), ("li", Role::Support));
        assert!(
            auth.session(&id, &cfg, t0 + Duration::from_secs(59))
                .is_some()
        );
        // Each request renews the idle period; a minute without one ends the session.
        assert!(
            auth.session(&id, &cfg, t0 + Duration::from_secs(118))
                .is_some()
        );
        assert!(
            auth.session(&id, &cfg, t0 + Duration::from_secs(178))
                .is_none()
        );
        assert!(auth.session(&id, &cfg, t0).is_none(), "forgotten");
        // Busy all along, but ten minutes after signing in (the lifetime) it is over.
        let id = auth
            .sign_in(&cfg, &tokens, "li", "correct horse", None, t0)
            .unwrap()
            .id;
        for step in 1..=11 {
            let at = t0 + Duration::from_secs(step * 50);
            assert!(auth.session(&id, &cfg, at).is_some(), "{} s", step * 50);
        }
        assert!(
            auth.session(&id, &cfg, t0 + Duration::from_secs(600))
                .is_none()
        );

        let s = auth
            .sign_in(&cfg, &tokens, "", "0123456789abcdef-ops", None, t0)
            .unwrap()
            .session;
        assert_eq!((s.user.as_str(), s.role), ("token:ops", Role::Admin));
        assert_eq!(
            auth.sign_in(&cfg, &tokens, "", "nope", None, t0)
                .unwrap_err(),
            Refused::Wrong
        );

        for _ in 1..FREE_TRIES {
            assert_eq!(
                auth.sign_in(&cfg, &tokens, "li", "guess", None, t0)
                    .unwrap_err(),
                Refused::Wrong
            );
        }
        assert_eq!(
            auth.sign_in(&cfg, &tokens, "li", "guess", None, t0)
                .unwrap_err(),
            Refused::Slowed(Duration::from_secs(30))
        );
        // Inside the pause even the right password is refused; after it, it works.
        assert!(matches!(
            auth.sign_in(
                &cfg,
                &tokens,
                "LI",
                "correct horse",
                None,
                t0 + Duration::from_secs(10)
            ),
            Err(Refused::Slowed(_))
        ));
        assert!(
            auth.sign_in(
                &cfg,
                &tokens,
                "li",
                "correct horse",
                None,
                t0 + Duration::from_secs(31)
            )
            .is_ok()
        );
        // Unknown names are braked the same way.
        for _ in 0..FREE_TRIES {
            let _ = auth.sign_in(&cfg, &tokens, "nobody", "x", None, t0);
        }
        assert!(matches!(
            auth.sign_in(&cfg, &tokens, "nobody", "x", None, t0),
            Err(Refused::Slowed(_))
        ));
    }

    /// A stranger's guesses close the name, not its owner's browser: a device that signed in
    /// as the name has a brake of its own (which its own wrong guesses use up).
    #[test]
    fn a_known_device_is_not_locked_out_by_a_strangers_guesses() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg(dir.path());
        let auth = Auth::default();
        let t0 = Instant::now();
        let mine = auth
            .sign_in(&cfg, &[], "li", "correct horse", None, t0)
            .unwrap()
            .device;
        for _ in 0..=FREE_TRIES {
            let _ = auth.sign_in(&cfg, &[], "li", "guess", Some("made-up"), t0);
        }
        let later = t0 + Duration::from_secs(5);
        assert!(matches!(
            auth.sign_in(&cfg, &[], "li", "correct horse", None, later),
            Err(Refused::Slowed(_))
        ));
        let again = auth
            .sign_in(&cfg, &[], "li", "correct horse", Some(&mine), later)
            .unwrap();
        assert_eq!(again.device, mine, "the device stays the same");
        // Known for `li` only.
        for _ in 0..FREE_TRIES {
            let _ = auth.sign_in(&cfg, &[], "nobody", "x", None, t0);
        }
        assert!(matches!(
            auth.sign_in(&cfg, &[], "nobody", "x", Some(&mine), later),
            Err(Refused::Slowed(_))
        ));
        // Its own wrong guesses brake the device.
        for _ in 1..FREE_TRIES {
            assert_eq!(
                auth.sign_in(&cfg, &[], "li", "guess", Some(&mine), later)
                    .unwrap_err(),
                Refused::Wrong
            );
        }
        assert_eq!(
            auth.sign_in(&cfg, &[], "li", "guess", Some(&mine), later)
                .unwrap_err(),
            Refused::Slowed(Duration::from_secs(30))
        );
        assert!(matches!(
            auth.sign_in(&cfg, &[], "li", "correct horse", Some(&mine), later),
            Err(Refused::Slowed(_))
        ));
        // Thirty days after its last sign-in it is a stranger again (a new device).
        let month = later + DEVICE_LIFETIME;
        let fresh = auth
            .sign_in(&cfg, &[], "li", "correct horse", Some(&mine), month)
            .unwrap();
        assert_ne!(fresh.device, mine);
    }

    #[test]
    fn hashes_verify_and_the_dummy_is_a_hash() {
        let h = hash_password("pw").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("pw", &format!("{h}\n")));
        assert!(!verify_password("pW", &h));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
