//! DKIM signing checked by an independent verifier (issue 12): the real binary signs the
//! review request with an RSA-2048 key and with an Ed25519 key made by the `openssl`
//! command line, and dkimpy (Debian's `python3-dkim`, which `.ci/run` installs) verifies
//! the `.eml` files it wrote, given the public key as the DNS TXT record would publish it.
//! The same message with one byte of its body changed must fail, so the check can fail.

mod common;

use base64::Engine;
use common::{Workspace, delivered};
use std::path::{Path, PathBuf};
use std::process::Command;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// dkimpy, given the selector's TXT record instead of DNS. Exit 0: verified; 1: not.
const VERIFY: &str = r#"
import sys, dkim
msg = open(sys.argv[1], "rb").read()
txt = sys.argv[2].encode()
def dns(name, timeout=5):
    assert name == b"s2026._domainkey.example.com.", name
    return txt
ok = dkim.verify(msg, dnsfunc=dns)
print("verified" if ok else "not verified")
sys.exit(0 if ok else 1)
"#;

fn python() -> &'static str {
    // Debian's interpreter, where `python3-dkim` installs (a pyenv shim may come first on
    // PATH and lack it).
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// DER public key in `dir/pub.der` → the `p=` of the TXT record for `kind`.
fn public_p(dir: &Path, kind: &str) -> String {
    let der = std::fs::read(dir.join("pub.der")).unwrap();
    match kind {
        // RSA: the SubjectPublicKeyInfo, as `openssl rsa -pubout` gives it (RFC 6376 3.6.1).
        "rsa" => B64.encode(der),
        // Ed25519: the raw 32-byte key, the last 32 bytes of its SPKI (RFC 8463).
        _ => B64.encode(&der[der.len() - 32..]),
    }
}

/// Sign the review request with the key in `key_file` (relative to the workspace), and
/// return the `.eml` the file transport wrote.
fn signed_message(ws: &Workspace, key_file: &str) -> PathBuf {
    ws.keep_jobs(&["review-request"]);
    // With `unsubscribe:`, as shipped (without it `validate` warns of the missing header).
    ws.write_config(None, "unsubscribe: {url: \"https://shop.example.com/u/{token}\", mailto: unsubscribe@example.com, key_file: data/unsubscribe.key}\n");
    let config = std::fs::read_to_string(ws.path("aftercare.yaml")).unwrap();
    let config = config.replace(
        "  file: {dir: data/outbox}\n",
        &format!(
            "  file: {{dir: data/outbox}}\n  dkim: {{domain: example.com, selector: s2026, key_file: {key_file}}}\n"
        ),
    );
    assert!(config.contains("dkim:"), "{config}");
    ws.write("aftercare.yaml", &config);
    let r = ws.run(&["validate"]).ok();
    assert!(
        r.stdout.contains("0 error(s), 0 warning(s)"),
        "signing as the sender's domain draws no warning: {}",
        r.stdout
    );
    ws.import(&[delivered(
        "e-1",
        "c-1",
        "wang.fang@example.org",
        "SO-1",
        "2026-11-20T10:00:00+08:00",
    )])
    .ok();
    ws.once("2026-11-23T10:00:00+08:00");
    let files: Vec<PathBuf> = std::fs::read_dir(ws.path("data/outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

fn verify(eml: &Path, txt: &str) -> (bool, String) {
    let out = Command::new(python())
        .args(["-c", VERIFY])
        .arg(eml)
        .arg(txt)
        .output()
        .expect("python3 with dkimpy (apt-get install python3-dkim)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "the verifier failed to run: {said}"
    );
    (out.status.success(), said)
}

/// The signature holds, and a changed body breaks it.
fn holds_and_breaks(eml: &Path, txt: &str, algorithm: &str) {
    let text = std::fs::read_to_string(eml).unwrap();
    assert!(
        text.contains(&format!("a={algorithm}")) && text.contains("d=example.com"),
        "{text}"
    );
    assert!(text.contains("s=s2026"), "{text}");
    let (ok, said) = verify(eml, txt);
    assert!(ok, "dkimpy: {said}\n{text}");
    // One character of the text part changed after signing: dkimpy must refuse it.
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let at = body.find("base64\r\n\r\n").unwrap() + "base64\r\n\r\n".len();
    let flipped = if body[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let tampered_body = format!("{}{flipped}{}", &body[..at], &body[at + 1..]);
    assert_ne!(body, tampered_body);
    let tampered = eml.with_extension("tampered");
    std::fs::write(&tampered, format!("{head}\r\n\r\n{tampered_body}")).unwrap();
    let (ok, said) = verify(&tampered, txt);
    assert!(!ok, "a changed body still verified: {said}");
}

#[test]
fn an_rsa_2048_signed_message_verifies_with_dkimpy() {
    let ws = Workspace::new(None);
    let dir = ws.path("keys");
    std::fs::create_dir_all(&dir).unwrap();
    openssl(&dir, &["genrsa", "-traditional", "-out", "rsa.pem", "2048"]);
    openssl(
        &dir,
        &[
            "rsa", "-in", "rsa.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
        ],
    );
    let eml = signed_message(&ws, "keys/rsa.pem");
    let txt = format!("v=DKIM1; k=rsa; p={}", public_p(&dir, "rsa"));
    holds_and_breaks(&eml, &txt, "rsa-sha256");
}

#[test]
fn an_ed25519_signed_message_verifies_with_dkimpy() {
    let ws = Workspace::new(None);
    let dir = ws.path("keys");
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"],
    );
    openssl(
        &dir,
        &[
            "pkey", "-in", "ed.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
        ],
    );
    let eml = signed_message(&ws, "keys/ed.pem");
    let txt = format!("v=DKIM1; k=ed25519; p={}", public_p(&dir, "ed25519"));
    holds_and_breaks(&eml, &txt, "ed25519-sha256");
}

#[test]
fn validate_warns_when_the_dkim_domain_is_not_the_senders() {
    let ws = Workspace::new(None);
    let dir = ws.path("keys");
    std::fs::create_dir_all(&dir).unwrap();
    openssl(&dir, &["genrsa", "-traditional", "-out", "rsa.pem", "2048"]);
    ws.write_config(None, "");
    let config = std::fs::read_to_string(ws.path("aftercare.yaml"))
        .unwrap()
        .replace(
            "  file: {dir: data/outbox}\n",
            "  file: {dir: data/outbox}\n  dkim: {domain: mailer.example.net, selector: s1, key_file: keys/rsa.pem}\n",
        );
    ws.write("aftercare.yaml", &config);
    // A warning, not an error: `validate` passes and names the key and the fix.
    let r = ws.run(&["validate"]).ok();
    assert!(
        r.stdout.contains("aftercare.yaml:")
            && r.stdout.contains("warning: email.dkim.domain: DKIM domain `mailer.example.net` differs from email.from's domain `example.com`")
            && r.stdout.contains("hint: sign as example.com"),
        "{}",
        r.stdout
    );
}
