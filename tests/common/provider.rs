//! A stand-in for an SMS provider's HTTP API (Twilio, Alibaba Cloud, a local provider): a
//! real HTTP server on a loopback port that records every request exactly as it arrived
//! (method, path, headers, body, time) and answers from a script, so tests check what went
//! over the wire and how each answer was handled. `start` serves on the test's own tokio
//! runtime; `spawn` brings its own, for tests that drive the `aftercare` binary.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The query string, without `?` (empty when there is none).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    pub fn form(&self) -> BTreeMap<String, String> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(&self.body).into_owned().collect();
        let map: BTreeMap<String, String> = pairs.iter().cloned().collect();
        assert_eq!(map.len(), pairs.len(), "a form field was sent twice");
        map
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

pub type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

struct StubState {
    seen: Mutex<Vec<Seen>>,
    script: Box<Script>,
}

pub struct Stub {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    state: Arc<StubState>,
    /// The runtime serving it, for stubs started outside one (`spawn`).
    _runtime: Option<Arc<tokio::runtime::Runtime>>,
}

impl Stub {
    /// A server on a free loopback port; `script(request, index)` decides each answer.
    pub async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Stub {
        let state = Arc::new(StubState {
            seen: Mutex::new(Vec::new()),
            script: Box::new(script),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Stub {
            url,
            state,
            _runtime: None,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(st): State<Arc<StubState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    };
    let index = {
        let mut all = st.seen.lock().unwrap();
        all.push(seen.clone());
        all.len() - 1
    };
    let reply = (st.script)(&seen, index);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut b = Response::builder().status(reply.status);
    for (k, v) in reply.headers {
        b = b.header(k, v);
    }
    b.body(Body::from(reply.body)).unwrap()
}

impl Stub {
    /// Like `start`, on a runtime of its own (for tests that are not async).
    pub fn spawn(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Stub {
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        );
        let mut stub = runtime.block_on(Stub::start(script));
        stub._runtime = Some(runtime);
        stub
    }

    /// The host and port, e.g. for a URL the binary is configured with.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        // A runtime must not be dropped inside another one's context (async tests).
        if let Some(rt) = self._runtime.take()
            && let Ok(rt) = Arc::try_unwrap(rt)
        {
            rt.shutdown_background();
        }
    }
}
