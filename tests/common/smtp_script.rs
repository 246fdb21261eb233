//! A scripted SMTP server for the tests that need a relay to refuse what `smtp-sink` cannot:
//! a login (AUTH 535, echoing the credentials it was sent), or a greeting. Each reply comes
//! from a [`Script`] the test can change while the daemon runs (fix the password, and the
//! relay accepts). It speaks just enough SMTP for lettre: EHLO/HELO, AUTH PLAIN, MAIL, RCPT,
//! DATA with dot-unstuffing, RSET, NOOP, QUIT; and keeps every message it accepts. RCPT
//! can be refused per recipient (`rcpt_for`), the MAIL and RCPT commands are kept, and past
//! a number of messages the reply to the final dot can wait (`hold_after`: a relay that
//! stalls, until the test lets it go).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The replies, one line each (a multi-line EHLO reply is built from `ehlo_lines`).
#[derive(Debug, Clone)]
pub struct Script {
    pub greeting: String,
    /// `None`: `250-` lines with AUTH PLAIN and PIPELINING; `Some(reply)`: that refusal.
    pub ehlo: Option<String>,
    pub auth: String,
    pub mail: String,
    pub rcpt: String,
    /// Replies to RCPT for recipients whose address contains the key (first match), e.g.
    /// `("gone@", "550 5.1.1 User unknown")`; the others get `rcpt`.
    pub rcpt_for: Vec<(String, String)>,
    pub dot: String,
    /// Once this many messages are accepted, the next ones wait for their reply to the final
    /// dot until the test sets this to `None`.
    pub hold_after: Option<usize>,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            greeting: "220 relay.test ESMTP".into(),
            ehlo: None,
            auth: "235 2.7.0 Authentication successful".into(),
            mail: "250 2.1.0 Ok".into(),
            rcpt: "250 2.1.5 Ok".into(),
            rcpt_for: Vec::new(),
            dot: "250 2.0.0 Ok: queued".into(),
            hold_after: None,
        }
    }
}

pub struct ScriptedSmtp {
    pub port: u16,
    script: Arc<Mutex<Script>>,
    /// Every message accepted (after the final dot), as sent.
    pub received: Arc<Mutex<Vec<String>>>,
    /// AUTH commands seen.
    pub logins: Arc<AtomicUsize>,
    /// Every MAIL FROM and RCPT TO command, as sent, in order.
    pub commands: Arc<Mutex<Vec<String>>>,
    /// Sessions waiting for their final dot's reply (`hold_after`).
    holding: Arc<AtomicUsize>,
}

impl ScriptedSmtp {
    pub fn start(script: Script) -> ScriptedSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(script));
        let received = Arc::new(Mutex::new(Vec::new()));
        let logins = Arc::new(AtomicUsize::new(0));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let holding = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            script: script.clone(),
            received: received.clone(),
            logins: logins.clone(),
            commands: commands.clone(),
            holding: holding.clone(),
        };
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = session(stream, &shared);
                });
            }
        });
        ScriptedSmtp {
            port,
            script,
            received,
            logins,
            commands,
            holding,
        }
    }

    /// Change the replies from now on (new sessions and commands).
    pub fn set(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.script.lock().unwrap());
    }

    pub fn messages(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// The MAIL FROM and RCPT TO commands seen so far.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }

    pub fn logins(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }

    /// Sessions waiting for their final dot's reply now (`hold_after`).
    pub fn holding(&self) -> usize {
        self.holding.load(Ordering::SeqCst)
    }
}

/// What every session shares with the server.
#[derive(Clone)]
struct Shared {
    script: Arc<Mutex<Script>>,
    received: Arc<Mutex<Vec<String>>>,
    logins: Arc<AtomicUsize>,
    commands: Arc<Mutex<Vec<String>>>,
    holding: Arc<AtomicUsize>,
}

fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let Shared {
        script,
        received,
        logins,
        commands,
        holding,
    } = shared;
    let now = || script.lock().unwrap().clone();
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut reply = |text: &str| out.write_all(format!("{text}\r\n").as_bytes());
    let greeting = now().greeting;
    reply(&greeting)?;
    if !greeting.starts_with('2') {
        return Ok(());
    }
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let s = now();
        match verb.as_str() {
            "EHLO" | "HELO" => match &s.ehlo {
                Some(refusal) => reply(refusal)?,
                None => {
                    reply("250-relay.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 AUTH PLAIN")?
                }
            },
            "AUTH" => {
                logins.fetch_add(1, Ordering::SeqCst);
                reply(&s.auth)?;
            }
            "MAIL" => {
                commands.lock().unwrap().push(command.clone());
                reply(&s.mail)?
            }
            "RCPT" => {
                commands.lock().unwrap().push(command.clone());
                let lower = command.to_ascii_lowercase();
                let answer = s
                    .rcpt_for
                    .iter()
                    .find(|(k, _)| lower.contains(&k.to_ascii_lowercase()))
                    .map(|(_, v)| v.clone())
                    .unwrap_or(s.rcpt.clone());
                reply(&answer)?
            }
            "DATA" => {
                reply("354 End data with <CR><LF>.<CR><LF>")?;
                let mut body = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    body.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                // Counted and kept under one lock: exactly `hold_after` pass before the hold.
                let mut kept = received.lock().unwrap();
                if now().hold_after.is_some_and(|k| kept.len() >= k) {
                    drop(kept);
                    holding.fetch_add(1, Ordering::SeqCst);
                    while now().hold_after.is_some() {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    holding.fetch_sub(1, Ordering::SeqCst);
                    kept = received.lock().unwrap();
                }
                let dot = now().dot;
                if dot.starts_with('2') {
                    kept.push(body);
                }
                drop(kept);
                reply(&dot)?;
            }
            "QUIT" => {
                reply("221 2.0.0 Bye")?;
                return Ok(());
            }
            "RSET" | "NOOP" => reply("250 2.0.0 Ok")?,
            _ => reply("502 5.5.2 Error: command not recognized")?,
        }
    }
}
