//! The web console in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driven through WebDriver by fantoccini, against the real daemon on a SQLite store: an
//! agent signs in, finds a customer by a phone number typed another way, reads what a sent
//! message said, retries a failed one and sees its new attempt, closes a callback task and
//! switches to English; a marketing user sees masked addresses and cannot retry; a POST
//! without the CSRF token is refused; five wrong passwords slow a name down. Every page is
//! checked for loads from anywhere but the daemon and for console errors, and each step
//! leaves a screenshot in `target/console-shots/` for a human look. Beside it, without a
//! browser: a flood of sign-ins runs a few password checks at a time; the Done tab lists the
//! newest closed tasks first; the Campaigns page's forecast is not counted as sends.

mod common;

use chrono::{Duration as Days, SecondsFormat, Utc};
use common::{Killed, SmtpSink, Workspace};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const ADMIN_TOKEN: &str = "admin-token-0123456789ab";
const SUPPORT_PW: &str = "correct horse battery";
const MARKETING_PW: &str = "marketing staple 42";
const LEAD_PW: &str = "lead lighthouse 7";
const EMAIL: &str = "wang.fang@example.com";
const PHONE: &str = "+8613800138000";

fn ago(d: Days) -> String {
    (Utc::now() - d).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Wang Fang's delivery of `order`, `d` ago, with her phone number.
fn delivery(id: &str, order: &str, d: Days) -> String {
    json!({
        "id": id, "type": "order.delivered", "occurred_at": ago(d),
        "contact": {"id": "c-wf", "name": "王芳", "email": EMAIL, "phone": PHONE,
                    "locale": "zh-CN", "timezone": "Asia/Shanghai"},
        "data": {"order_id": order}
    })
    .to_string()
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-shots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn passwd(ws: &Workspace, name: &str, password: &str) {
    let mut child = ws
        .command(&["console", "passwd", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hash = std::fs::read_to_string(ws.path(&format!("console/{name}"))).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(password));
}

/// chromedriver's log of the page's console (the legacy endpoint chromedriver keeps).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &reqwest::Url,
        session: Option<&str>,
    ) -> Result<reqwest::Url, UrlError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// `url::ParseError`, named through reqwest's re-export of `url::Url`.
type UrlError = <reqwest::Url as std::str::FromStr>::Err;

struct Browser {
    c: Client,
    base: String,
    shot: usize,
    http: reqwest::Client,
}

impl Browser {
    async fn open(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
        self.checked(path).await;
    }

    /// Nothing on the page came from anywhere but the daemon, and the console is quiet.
    async fn checked(&self, what: &str) {
        let loaded = self
            .c
            .execute(
                "return performance.getEntriesByType('resource').map(e => e.name)",
                vec![],
            )
            .await
            .unwrap();
        let loaded: Vec<String> = serde_json::from_value(loaded).unwrap();
        for url in &loaded {
            assert!(
                url.starts_with(&format!("{}/console/", self.base)),
                "{what}: loaded {url} from outside the daemon's console"
            );
        }
        let log = self.c.issue_cmd(BrowserLog).await.unwrap();
        // The document's own status (a refused sign-in is a 401, a slowed one a 429) is
        // asserted where it matters; anything else the console says is an error. Chromium
        // can log a refused sign-in's status after the next page has loaded (seen once in
        // CI: the 429 of the slowed sign-in, read after the admin token's went through).
        let here = self.c.current_url().await.unwrap().to_string();
        let refused = |url: &str| {
            format!("{url} - Failed to load resource: the server responded with a status of")
        };
        let (document, signin) = (
            refused(&here),
            refused(&format!("{}/console/signin", self.base)),
        );
        let errors: Vec<&Value> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
            .filter(|e| {
                let said = e["message"].as_str().unwrap_or_default();
                !said.starts_with(&document) && !said.starts_with(&signin)
            })
            .collect();
        assert!(errors.is_empty(), "{what}: console says {errors:#?}");
    }

    async fn shot(&mut self, name: &str) {
        self.shot += 1;
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(shots().join(format!("{:02}-{name}.png", self.shot)), png).unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_string()
    }

    async fn sign_in(&self, name: &str, password: &str) {
        if self.path().await != "/console/signin" {
            self.open("/console/signin").await;
        }
        let form = self.c.form(Locator::Css("form.signin")).await.unwrap();
        form.set_by_name("name", name).await.unwrap();
        form.set_by_name("password", password).await.unwrap();
        let button = self.c.find(Locator::Id("signin")).await.unwrap();
        // A refusal is a new page at the same path.
        Self::click_to_new_page(button, "signing in").await;
        self.checked("after signing in").await;
    }

    async fn sign_out(&self) {
        self.c
            .find(Locator::Css("form[action='/console/signout'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let landed = common::until_async(Duration::from_secs(10), || async {
            self.path().await == "/console/signin"
        })
        .await;
        assert!(landed, "sign-out did not land on the sign-in page");
    }

    /// Click a link or a form's button: every one in the console loads a new page.
    async fn click(&self, css: &str) {
        let element = self
            .c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        Self::click_to_new_page(element, css).await;
        self.checked(css).await;
    }

    /// Click, then wait until the page that held `element` is gone: reading at once would
    /// find the old page's elements (the old task list, the old refusal), which the new
    /// page then makes stale or leaves unread.
    async fn click_to_new_page(element: fantoccini::elements::Element, what: &str) {
        element.click().await.unwrap();
        let gone = common::until_async(Duration::from_secs(10), || async {
            element.tag_name().await.is_err()
        })
        .await;
        assert!(gone, "{what}: no new page loaded");
    }

    /// The session cookie and this page's CSRF token, for requests the browser cannot make
    /// (a form without its token).
    async fn session(&self) -> (String, String) {
        let cookie = self.c.get_named_cookie("aftercare_session").await.unwrap();
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
        let csrf = self
            .c
            .find(Locator::Css("input[name=csrf]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        (format!("aftercare_session={}", cookie.value()), csrf)
    }

    async fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> u16 {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&"),
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A refusing relay first: Wang Fang's first request fails for good (one attempt).
    let refusing = SmtpSink::start(&["-r", "rcpt"]);
    let ws = Workspace::new(Some(refusing.port));
    ws.keep_jobs(&["review-request", "complaint-callback"]);
    ws.write_config(
        Some(refusing.port),
        "dispatch:\n  retry: {max_attempts: 1, initial: 1m, max: 1h}\n",
    );
    ws.import(&[delivery("evt-1", "SO-1", Days::days(3) + Days::minutes(5))])
        .ok();
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    assert!(ws.once(&now).stdout.contains("1 failed"));

    // Then a working relay, the API with the console, and three console users.
    let sink = SmtpSink::start(&[]);
    let port = common::free_port();
    ws.write_config(
        Some(sink.port),
        &format!(
            "dispatch:\n  retry: {{max_attempts: 3, initial: 1m, max: 1h}}\n\
             api:\n  listen: 127.0.0.1:{port}\n  tokens:\n    - {{name: ops, scope: admin, token_env: T_ADMIN}}\n\
             console:\n  users:\n\
             \x20   - {{name: li.na, role: support, password_file: console/li.na}}\n\
             \x20   - {{name: mk, role: marketing, password_file: console/mk}}\n\
             \x20   - {{name: ops.lead, role: admin, password_file: console/ops.lead}}\n"
        ),
    );
    passwd(&ws, "li.na", SUPPORT_PW);
    passwd(&ws, "mk", MARKETING_PW);
    passwd(&ws, "ops.lead", LEAD_PW);
    ws.import(&[
        delivery("evt-2", "SO-2", Days::days(3) + Days::minutes(5)),
        json!({"id": "evt-3", "type": "complaint.resolved", "occurred_at": ago(Days::days(2) + Days::minutes(5)),
               "contact": {"id": "c-wf"}, "data": {"complaint_id": "CP-7"}})
        .to_string(),
    ])
    .ok();
    ws.once(&now);
    let log = ws.logs_json(&[]);
    let id_of = |order: &str, state: &str| -> String {
        log.as_array()
            .unwrap()
            .iter()
            .find(|m| m["order_id"] == order && m["state"] == state)
            .unwrap_or_else(|| panic!("no {state} message for {order}: {log:#}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let failed = id_of("SO-1", "failed");
    let sent = id_of("SO-2", "sent");
    let reminder = id_of("SO-2", "scheduled");

    // A customer with a long history: 5,001 deliveries in the last two hours, each planning
    // a request days ahead (nothing is due while the test runs).
    let many: Vec<String> = (0..=5000)
        .map(|i| {
            json!({"id": format!("evt-m-{i}"), "type": "order.delivered",
                   "occurred_at": ago(Days::seconds(7000 - i)),
                   "contact": {"id": "c-many", "email": "many@example.com"},
                   "data": {"order_id": format!("M-{i}")}})
            .to_string()
        })
        .collect();
    ws.import(&many).ok();
    // A shop that keys its customers by phone number.
    ws.import(&[
        json!({"id": "evt-k", "type": "order.delivered", "occurred_at": ago(Days::hours(1)),
               "contact": {"id": "13900139000", "email": "keyed@example.com"},
               "data": {"order_id": "K-1"}})
        .to_string(),
    ])
    .ok();
    let latest = ws.logs_json(&["--order", "M-5000"]);
    let latest_request = latest[0]["id"].as_str().unwrap().to_string();

    let daemon = Killed(
        ws.command(&["run"])
            .env("T_ADMIN", ADMIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let up = common::until_async(Duration::from_secs(30), || async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(up, "the daemon did not come up");
    let wd_port = common::free_port();
    let _driver = Killed(
        Command::new("chromedriver")
            .arg(format!("--port={wd_port}"))
            // The viewer is in Berlin, the customers in Shanghai: the console shows times in
            // the browser's zone, with the customer's beside them.
            .env("TZ", "Europe/Berlin")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver)"),
    );
    common::wait_for("chromedriver", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", wd_port)).is_ok()
    });
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1280,1000", "--lang=zh-CN",
                        format!("--user-data-dir={}", profile.path().display())],
               "prefs": {"intl.accept_languages": "zh-CN,zh"}}),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{wd_port}"))
        .await
        .expect("a chromedriver session");
    let mut b = Browser {
        c,
        base: base.clone(),
        shot: 0,
        http,
    };

    // Not signed in: every page sends to the sign-in form, in Chinese (Accept-Language).
    b.open("/console/customer/c-wf").await;
    assert_eq!(b.path().await, "/console/signin");
    assert!(b.c.source().await.unwrap().contains("lang=\"zh-CN\""));
    b.sign_in("li.na", SUPPORT_PW).await;
    assert_eq!(
        b.path().await,
        "/console/customer/c-wf",
        "back where it was sent from"
    );

    // Search by the phone number as an agent would type it from a call.
    b.open("/console/search").await;
    b.shot("search").await;
    b.c.find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys("138 0013 8000")
        .await
        .unwrap();
    b.click("#find").await;
    assert_eq!(
        b.path().await,
        "/console/customer/c-wf",
        "one match opens it"
    );
    let page = b.c.source().await.unwrap();
    assert!(page.contains("王芳") && page.contains(EMAIL) && page.contains(PHONE));
    assert!(
        page.contains("时间为 Europe/Berlin") && page.contains("class=\"local\""),
        "times in the browser's zone, the customer's beside them"
    );
    b.shot("customer").await;

    // What the customer got: the sent message's subject and text as sent.
    b.click(&format!("a.open[href='/console/message/{sent}']"))
        .await;
    let body = b.text("pre.body").await;
    assert!(
        body.contains("王芳，您好") && body.contains("SO-2"),
        "{body}"
    );
    let mail = sink
        .messages()
        .into_iter()
        .find(|m| m.text.contains("SO-2"))
        .expect("SO-2 reached the relay");
    // Exactly what the relay got (line ends and blank lines aside).
    let lines = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(lines(&body), lines(&mail.text));
    assert_eq!(b.text("span.subject-text").await, mail.subject);
    b.shot("message").await;

    // The long history: its latest messages are on the page, and it says the rest are not.
    b.open("/console/customer/c-many").await;
    let page = b.c.source().await.unwrap();
    assert!(
        page.contains(&format!("/console/message/{latest_request}")),
        "the newest message is not on the customer's page"
    );
    assert_eq!(
        b.c.find_all(Locator::Css("#timeline > li"))
            .await
            .unwrap()
            .len(),
        500
    );

    // Retry the failed one; the running daemon sends it, and its new attempt shows.
    b.open(&format!("/console/message/{failed}")).await;
    assert_eq!(b.text("#state").await, "failed");
    b.click("button.retry").await;
    let sent = common::until_async(Duration::from_secs(30), || async {
        b.c.refresh().await.unwrap();
        let rows =
            b.c.find_all(Locator::Css("#attempts tr"))
                .await
                .unwrap()
                .len();
        rows == 2 && b.text("#state").await.starts_with("sent")
    })
    .await;
    assert!(sent, "the retry was not sent");
    b.checked("the retried message").await;
    assert!(b.text("#attempts").await.contains("#2"));
    b.shot("retried").await;
    b.open("/console/customer/c-wf").await;
    let actions = b.text("#timeline").await;
    assert!(actions.contains("li.na retry"), "{actions}");

    // The callback task: claim it, close it with a note.
    b.open("/console/tasks").await;
    b.click("li.task button.claim").await;
    assert!(b.text("li.task p.claimed").await.contains("li.na"));
    b.c.find(Locator::Css("li.task form.done input[name=note]"))
        .await
        .unwrap()
        .send_keys("回访完成，客户满意")
        .await
        .unwrap();
    b.click("li.task button.done").await;
    b.open("/console/tasks?show=done").await;
    let done = b.text("#tasks").await;
    assert!(done.contains("回访完成，客户满意"), "{done}");
    b.shot("tasks").await;

    // A POST without the session's CSRF token is refused; with it, the same kind of POST works.
    b.open(&format!("/console/message/{reminder}")).await;
    let (cookie, csrf) = b.session().await;
    let path = format!("/console/message/{reminder}/cancel");
    assert_eq!(b.post(&path, &cookie, &[]).await, 403);
    assert_eq!(b.post(&path, &cookie, &[("csrf", "forged")]).await, 403);
    b.c.refresh().await.unwrap();
    assert_eq!(b.text("#state").await, "scheduled", "nothing changed");
    assert_eq!(b.post(&path, &cookie, &[("csrf", &csrf)]).await, 303);
    b.c.refresh().await.unwrap();
    assert_eq!(b.text("#state").await, "cancelled");

    // Switch to English: the page comes back in English, and stays so.
    b.open("/console/customer/c-wf").await;
    b.click("#lang-switch").await;
    assert_eq!(b.path().await, "/console/customer/c-wf");
    assert!(b.c.source().await.unwrap().contains("lang=\"en\""));
    assert_eq!(b.text("header.top nav a").await, "Search");
    b.open("/console/tasks").await;
    assert!(b.c.source().await.unwrap().contains("lang=\"en\""));
    b.open("/console/customer/c-wf").await;
    b.shot("english").await;
    b.sign_out().await;

    // Marketing: masked addresses, no actions, and a retry it forges is refused.
    b.sign_in("mk", MARKETING_PW).await;
    b.open(&format!("/console/search?q={EMAIL}")).await;
    assert_eq!(b.path().await, "/console/customer/c-wf");
    let page = b.c.source().await.unwrap();
    for full in [EMAIL, PHONE, "13800138000"] {
        assert!(!page.contains(full), "marketing sees {full}");
    }
    assert!(page.contains("@example.com"), "the masked address is there");
    assert!(
        b.c.find_all(Locator::Css("button.retry, button.cancel"))
            .await
            .unwrap()
            .is_empty()
    );
    b.shot("marketing").await;
    // A customer whose id is a phone number: neither marketing's page nor its address shows
    // it; the link is sealed, and one that does not open says so.
    b.open("/console/search?q=keyed%40example.com").await;
    let path = b.path().await;
    assert!(path.starts_with("/console/c/"), "{path}");
    let page = b.c.source().await.unwrap();
    assert!(
        !page.contains("13900139000"),
        "marketing sees the id: {page}"
    );
    assert!(b.text("h1").await.ends_with("9000"), "{page}");
    b.open(&format!("{path}x")).await;
    assert!(b.text(".problem").await.contains("no longer valid"));
    b.open(&format!("/console/message/{sent}")).await;
    assert!(!b.c.source().await.unwrap().contains(EMAIL));
    let (cookie, csrf) = b.session().await;
    assert_eq!(
        b.post(
            &format!("/console/message/{failed}/retry"),
            &cookie,
            &[("csrf", &csrf)]
        )
        .await,
        403
    );
    b.open("/console/campaigns").await;
    assert!(
        b.text("#job-review-request")
            .await
            .contains("order.delivered")
    );
    b.shot("campaigns").await;
    b.sign_out().await;

    // Five wrong passwords slow the name down: then even the right one waits.
    for i in 1..=5 {
        b.sign_in("ops.lead", "not the password").await;
        assert_eq!(b.path().await, "/console/signin");
        let said = b.text(".problem").await;
        assert_eq!(said.contains("30"), i == 5, "try {i}: {said}");
    }
    b.sign_in("ops.lead", LEAD_PW).await;
    assert_eq!(b.path().await, "/console/signin", "slowed down");
    b.shot("slowed").await;
    // Another name is not slowed; an admin API token signs in (a single-person install).
    b.sign_in("", ADMIN_TOKEN).await;
    assert_eq!(b.path().await, "/console/search");
    b.open("/console/health").await;
    assert!(b.text("#depth").await.chars().any(|c| c.is_ascii_digit()));
    b.shot("health").await;
    b.open("/console/nowhere").await;

    b.c.close().await.unwrap();
    drop(daemon);
}

/// A daemon with the console on `port` and one support user, li.na; the API and console
/// without a browser.
fn console_daemon(ws: &Workspace) -> (Killed, String) {
    console_daemon_for(ws, &[("li.na", "support", SUPPORT_PW)])
}

/// [`console_daemon`] with these users: (name, role, password).
fn console_daemon_for(ws: &Workspace, users: &[(&str, &str, &str)]) -> (Killed, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = common::free_port();
    let listed: String = users
        .iter()
        .map(|(name, role, _)| {
            format!("    - {{name: {name}, role: {role}, password_file: console/{name}}}\n")
        })
        .collect();
    ws.write_config(
        None,
        &format!("api:\n  listen: 127.0.0.1:{port}\nconsole:\n  users:\n{listed}"),
    );
    for (name, _, password) in users {
        passwd(ws, name, password);
    }
    let mut child = ws
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_for_api(&mut child, &base, Duration::from_secs(30), "the daemon");
    (Killed(child), base)
}

/// The cookie `name` a response sets, as `name=value`.
fn set_cookie(r: &reqwest::blocking::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// A sign-in form's client: its pre-session cookie and the token doubled in it, and a
/// function posting a name and password with them (the status).
struct SignIn {
    client: reqwest::blocking::Client,
    base: String,
    cookie: String,
}

impl SignIn {
    fn new(base: &str) -> SignIn {
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let form = client.get(format!("{base}/console/signin")).send().unwrap();
        let cookie = set_cookie(&form, "aftercare_signin").expect("the sign-in cookie");
        SignIn {
            client,
            base: base.to_string(),
            cookie,
        }
    }

    /// The session cookie (`name=value`) of a sign-in that must succeed.
    fn session(&self, name: &str, password: &str) -> String {
        let signed = self.post(name, password);
        assert_eq!(signed.status().as_u16(), 303, "{name} signs in");
        set_cookie(&signed, "aftercare_session").expect("the session cookie")
    }

    /// `path` as the holder of cookie `session` sees it (redirects not followed).
    fn get(&self, path: &str, session: &str) -> reqwest::blocking::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", session)
            .send()
            .unwrap()
    }

    /// The response to a sign-in with `name` and `password`.
    fn post(&self, name: &str, password: &str) -> reqwest::blocking::Response {
        self.post_from(name, password, None)
    }

    /// [`SignIn::post`] from a browser holding `device` (`aftercare_device=…`) too.
    fn post_from(
        &self,
        name: &str,
        password: &str,
        device: Option<&str>,
    ) -> reqwest::blocking::Response {
        let csrf = self.cookie.trim_start_matches("aftercare_signin=");
        let cookies = match device {
            Some(d) => format!("{}; {d}", self.cookie),
            None => self.cookie.clone(),
        };
        self.client
            .post(format!("{}/console/signin", self.base))
            .header("cookie", cookies)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([("csrf", csrf), ("name", name), ("password", password)])
                    .finish(),
            )
            .send()
            .unwrap()
    }
}

/// A flood of sign-ins under invented names (which the per-name brake does not slow) runs a
/// few password checks at a time, not one per request: argon2 holds 19 MiB a check, and the
/// blocking pool would run hundreds at once. The daemon's peak memory stays flat; callers
/// beyond the queue are asked to come back (503); a real user still gets in afterwards.
#[test]
fn a_flood_of_sign_ins_runs_a_few_password_checks_at_a_time() {
    let ws = Workspace::new(None);
    let (daemon, base) = console_daemon(&ws);
    let peak = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            / 1024
    };
    let form = SignIn::new(&base);
    let before = peak();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..48)
            .map(|i| {
                let form = &form;
                s.spawn(move || form.post(&format!("nobody-{i}"), "guess").status().as_u16())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let grown = peak().saturating_sub(before);
    assert!(
        statuses.iter().all(|s| [401, 503].contains(s)),
        "{statuses:?}"
    );
    // Two checks at a time hold ~40 MiB; one a request held ~900.
    assert!(grown < 200, "peak memory grew by {grown} MiB: {statuses:?}");
    assert_eq!(form.post("li.na", SUPPORT_PW).status().as_u16(), 303);
}

/// A NUL in a console path (`%00`) is a page that does not exist, on either store: on
/// PostgreSQL, which refuses the character in text, it was a 503 and a store error logged.
#[test]
fn a_nul_in_a_console_path_is_not_found() {
    let ws = Workspace::new(None);
    let (_daemon, base) = console_daemon(&ws);
    let form = SignIn::new(&base);
    let session = form.session("li.na", SUPPORT_PW);
    for path in ["/console/customer/%00", "/console/message/a%00b"] {
        assert_eq!(form.get(path, &session).status().as_u16(), 404, "{path}");
    }
}

/// `console passwd` ends the sessions opened with the old password, at their next request:
/// a cookie left on a shared desk, or stolen, no longer outlives the change.
#[test]
fn a_changed_password_ends_the_sessions_opened_with_the_old_one() {
    let ws = Workspace::new(None);
    let (_daemon, base) = console_daemon(&ws);
    let form = SignIn::new(&base);
    let session = form.session("li.na", SUPPORT_PW);
    let search = || {
        let r = form.get("/console/search", &session);
        let to = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        (r.status().as_u16(), to)
    };
    assert_eq!(search(), (200, None));
    passwd(&ws, "li.na", "a new password 9");
    let (status, to) = search();
    assert_eq!(status, 303);
    assert!(to.is_some_and(|t| t.starts_with("/console/signin")));
    // Signed out for good, not only for that request; the new password signs in.
    assert_eq!(search().0, 303);
    assert_eq!(form.post("li.na", SUPPORT_PW).status().as_u16(), 401);
    assert_eq!(
        form.post("li.na", "a new password 9").status().as_u16(),
        303
    );
}

/// Five wrong guesses close a name for a while, the right password too: a stranger could keep
/// its owner out. A browser that has signed in as the name (its device cookie) has a brake of
/// its own and still gets in.
#[test]
fn a_strangers_guesses_do_not_lock_out_a_browser_that_signed_in_before() {
    let ws = Workspace::new(None);
    let (_daemon, base) = console_daemon(&ws);
    let mine = SignIn::new(&base);
    let signed = mine.post("li.na", SUPPORT_PW);
    assert_eq!(signed.status().as_u16(), 303);
    let device = set_cookie(&signed, "aftercare_device").expect("a device cookie");
    let lasting = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("aftercare_device="))
        .unwrap();
    assert!(lasting.contains("Max-Age=2592000"), "{lasting}");
    assert!(lasting.contains("HttpOnly"), "{lasting}");

    let stranger = SignIn::new(&base);
    let tries: Vec<u16> = (0..6)
        .map(|_| stranger.post("li.na", "guess").status().as_u16())
        .collect();
    assert_eq!(tries, [401, 401, 401, 401, 429, 429]);
    assert_eq!(stranger.post("li.na", SUPPORT_PW).status().as_u16(), 429);
    assert_eq!(mine.post("li.na", SUPPORT_PW).status().as_u16(), 429);
    let back = mine.post_from("li.na", SUPPORT_PW, Some(&device));
    assert_eq!(back.status().as_u16(), 303, "the owner's browser gets in");
    assert!(set_cookie(&back, "aftercare_session").is_some());
}

/// The Done tab lists what was closed last first: a long history of closed tasks must not
/// push the last days' off the page (it showed the oldest first, up to 100,000 of them).
#[test]
fn the_done_tab_shows_the_newest_tasks_first() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["complaint-callback"]);
    let complaints: Vec<String> = [("k-1", "21"), ("k-2", "22"), ("k-3", "23")]
        .iter()
        .map(|(id, day)| {
            json!({"id": id, "type": "complaint.resolved",
                   "occurred_at": format!("2026-11-{day}T10:00:00+08:00"),
                   "contact": {"id": format!("c-{id}"), "email": format!("{id}@example.com")},
                   "data": {"complaint_id": id}})
            .to_string()
        })
        .collect();
    ws.import(&complaints).ok();
    ws.once("2026-11-30T10:00:00+08:00");
    let open: Value = serde_json::from_str(&ws.run(&["callbacks", "--json"]).ok().stdout).unwrap();
    let open = open.as_array().unwrap();
    assert_eq!(open.len(), 3, "{open:?}");
    for t in open {
        ws.run(&["callbacks", "done", t["task"]["id"].as_str().unwrap()])
            .ok();
    }
    let (_daemon, base) = console_daemon(&ws);
    let form = SignIn::new(&base);
    let session = form.session("li.na", SUPPORT_PW);
    let page = form
        .get("/console/tasks?show=done", &session)
        .text()
        .unwrap();
    let at = |who: &str| {
        page.find(&format!("/console/customer/c-{who}\""))
            .unwrap_or_else(|| panic!("{who} is not under Done: {page}"))
    };
    assert!(at("k-3") < at("k-2") && at("k-2") < at("k-1"), "{page}");
}

/// The Campaigns page's forecast replays the next week inside the daemon, with channels that
/// only pretend: its sends are not the daemon's. Before and after the page drew a forecast
/// of several sends, `/metrics` counts none (an operator's send rate and latency are what
/// went out).
#[test]
fn the_consoles_forecast_is_not_counted_as_sends() {
    let ws = Workspace::new(None);
    ws.keep_jobs(&["review-request"]);
    // Delivered a day ago: each review request is due in two days, its reminder in six.
    let deliveries: Vec<String> = (1..=3)
        .map(|i| {
            json!({"id": format!("d-{i}"), "type": "order.delivered", "occurred_at": ago(Days::days(1)),
                   "contact": {"id": format!("c-{i}"), "email": format!("c{i}@example.com")},
                   "data": {"order_id": format!("SO-{i}")}})
            .to_string()
        })
        .collect();
    ws.import(&deliveries).ok();
    let (_daemon, base) = console_daemon_for(&ws, &[("mk", "marketing", MARKETING_PW)]);
    // The send-latency histogram's counts, over every channel and outcome.
    let sends = || {
        let text = reqwest::blocking::get(format!("{base}/metrics"))
            .unwrap()
            .text()
            .unwrap();
        let counted: f64 = text
            .lines()
            .filter(|l| l.starts_with("aftercare_send_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (counted, text)
    };
    assert_eq!(sends().0, 0.0, "nothing is due: {}", sends().1);
    let form = SignIn::new(&base);
    let session = form.session("mk", MARKETING_PW);
    let page = form.get("/console/campaigns", &session).text().unwrap();
    // The forecast's row for the job: a count a day, their sum the week's sends.
    let row = page
        .split("<table class=\"forecast\">")
        .nth(1)
        .and_then(|t| t.split("<th>review-request</th>").nth(1))
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no forecast row for review-request: {page}"));
    let forecast: u64 = row
        .split("<td>")
        .skip(1)
        .filter_map(|c| c.split("</td>").next()?.parse::<u64>().ok())
        .sum();
    assert!(forecast >= 3, "the forecast sends {forecast}: {row}");
    let (after, text) = sends();
    assert_eq!(
        after, 0.0,
        "the forecast's {forecast} pretend sends were counted: {text}"
    );
}
