//! Shared by the HTTP tests: a broker on a temp dir with its router, one-shot requests, and a
//! strict reading of the Prometheus text exposition (the `prometheus-parse` crate, plus checks
//! that no line is silently skipped).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use obelisk::broker::{Broker, BrokerConfig};
use obelisk::http::{HttpConfig, HttpState, router};
use obelisk::status::ServerStatus;
use prometheus_parse::{LineInfo, Scrape, Value as PromValue};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub broker: Broker,
    pub status: Arc<ServerStatus>,
    pub router: Router,
    /// The server's drain token, as `serve` would get it.
    pub shutdown: CancellationToken,
}

pub async fn harness() -> Harness {
    harness_with(|_| {}, HttpConfig::default()).await
}

pub async fn harness_with(tune: impl FnOnce(&mut BrokerConfig), http: HttpConfig) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..BrokerConfig::default()
    };
    tune(&mut config);
    let broker = Broker::open(config, &tokio::runtime::Handle::current()).expect("broker opens");
    let status = Arc::new(ServerStatus::new());
    let shutdown = CancellationToken::new();
    let state = HttpState::with_config(broker.clone(), Arc::clone(&status), http)
        .with_shutdown(shutdown.clone());
    Harness {
        dir,
        broker,
        status,
        router: router(state),
        shutdown,
    }
}

/// A response: status, headers, body as JSON (`Value::Null` when it is not JSON) and as text.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Reply {
    /// The `error.code` of a JSON error body, asserting the error shape.
    pub fn error_code(&self) -> &str {
        let err = &self.json["error"];
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {}",
            self.text
        );
        err["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text))
    }
}

impl Harness {
    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let body = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
        self.raw(method, uri, body, &[("content-type", "application/json")])
            .await
    }

    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }
}

/// A parsed metrics page.
pub struct Metrics {
    pub scrape: Scrape,
}

/// Parses a metrics page, failing on anything a Prometheus server would reject: a line the
/// parser does not recognise, a sample without a `# TYPE`, a value that is not a number, a label
/// name that is not `[a-zA-Z_][a-zA-Z0-9_]*`, a series given twice.
pub fn parse_metrics(text: &str) -> Metrics {
    let mut typed: HashSet<String> = HashSet::new();
    let mut seen: HashSet<String> = HashSet::new();
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Empty => {}
            LineInfo::Ignored => panic!("not valid exposition text: {line:?}"),
            LineInfo::Doc { .. } => {}
            LineInfo::Type {
                metric_name,
                metric_alias,
                ..
            } => {
                typed.insert(metric_alias.unwrap_or(metric_name));
            }
            LineInfo::Sample {
                metric_name,
                labels,
                value,
                timestamp,
            } => {
                assert!(timestamp.is_none(), "unexpected timestamp: {line}");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| metric_name.strip_suffix(s).filter(|f| typed.contains(*f)))
                    .unwrap_or(metric_name);
                assert!(typed.contains(family), "sample without # TYPE: {line}");
                assert!(
                    value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                    "bad value: {line}"
                );
                for pair in labels
                    .unwrap_or_default()
                    .split("\",")
                    .filter(|p| !p.is_empty())
                {
                    let (name, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label in {line}"));
                    let mut chars = name.chars();
                    assert!(
                        chars
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "bad label name {name:?} in {line}"
                    );
                    assert!(v.starts_with('"'), "unquoted label value in {line}");
                }
                assert!(
                    seen.insert(format!("{metric_name}{{{}}}", labels.unwrap_or_default())),
                    "series given twice: {line}"
                );
            }
        }
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");
    Metrics { scrape }
}

impl Metrics {
    /// Sum of the samples of `name` whose labels include `labels` (0 when there are none).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                PromValue::Counter(v) | PromValue::Gauge(v) | PromValue::Untyped(v) => *v,
                PromValue::Histogram(_) | PromValue::Summary(_) => {
                    panic!("{name} is a histogram: read {name}_count or {name}_sum")
                }
            })
            .sum()
    }

    /// How many series of `name` have labels including `labels`.
    pub fn series(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .count()
    }

    /// Whether any sample of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.scrape.samples.iter().any(|s| s.metric == name)
    }

    /// Every family name with its type, from the `# TYPE` lines.
    pub fn names(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for s in &self.scrape.samples {
            *out.entry(s.metric.clone()).or_default() += 1;
        }
        out
    }
}
