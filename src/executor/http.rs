//! `http`: one request or a list of them, to hosts in `[executors.http] allow_hosts`.
//!
//! Params: `url`, `method` (GET), `headers`, `body`, `expect_status` (any 2xx; a code, a list, or
//! text like "200-299" or "200,204"), `timeout` (30s); or `requests = [{...}, ...]` with the same
//! keys each (the top-level `method`, `headers`, `expect_status`, `timeout` are their defaults).
//! Redirects are not followed (a 3xx is the response), so a redirect cannot leave the allowlist.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde::{de, Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::common::{check_url, typed, Dur};
use super::{Executor, ParamError, RunContext, RunError};
use crate::config::Config;

/// Response bytes kept in the output, per request.
pub const BODY_CAP: usize = 64 * 1024;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const KEY: &str = "[executors.http] allow_hosts";

pub struct Http;

/// Which statuses count as success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect(Vec<(u16, u16)>);

impl Default for Expect {
    fn default() -> Self {
        Expect(vec![(200, 299)])
    }
}

impl Expect {
    pub fn parse(text: &str) -> Result<Expect, String> {
        let bad = || format!("invalid status {text:?} (e.g. 200, \"200-299\", \"200,204\")");
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let a: u16 = a.trim().parse().map_err(|_| bad())?;
            let b: u16 = b.trim().parse().map_err(|_| bad())?;
            if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
                return Err(bad());
            }
            ranges.push((a, b));
        }
        Ok(Expect(ranges))
    }

    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&status))
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(u16),
            Many(Vec<u16>),
            Text(String),
        }
        let text = match Raw::deserialize(d).map_err(|_| {
            de::Error::custom("expected a status code, a list of codes, or text like \"200-299\"")
        })? {
            Raw::One(c) => c.to_string(),
            Raw::Many(cs) if !cs.is_empty() => {
                cs.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
            }
            Raw::Many(_) => return Err(de::Error::custom("the list of statuses is empty")),
            Raw::Text(t) => t,
        };
        Expect::parse(&text).map_err(de::Error::custom)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestParams {
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    expect_status: Option<Expect>,
    timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    url: Option<String>,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    expect_status: Option<Expect>,
    timeout: Option<Dur>,
    requests: Option<Vec<RequestParams>>,
}

/// One request, with its defaults filled in.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub expect: Expect,
    pub timeout: Duration,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub elapsed: Duration,
    pub body: Vec<u8>,
    /// The body was longer than what is kept.
    pub truncated: bool,
}

fn requests(params: &Map<String, Value>) -> Result<Vec<Request>, ParamError> {
    let p: Params = typed("http", params)?;
    let list = match (p.url, p.requests) {
        (Some(_), Some(_)) => {
            return Err(ParamError::new(
                "http: give either url (one request) or requests (a list), not both",
            ))
        }
        (None, None) => {
            return Err(ParamError::new(
                "http: url is required (or requests = [{url = ...}, ...])",
            ))
        }
        (None, Some(list)) if list.is_empty() => {
            return Err(ParamError::new("http: requests is empty"))
        }
        (None, Some(list)) => {
            if p.body.is_some() {
                return Err(ParamError::new(
                    "http: with requests, give each request its own body",
                ));
            }
            list
        }
        (Some(url), None) => vec![RequestParams {
            url,
            body: p.body,
            ..RequestParams::default()
        }],
    };
    list.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let mut headers: BTreeMap<String, String> = p.headers.clone();
            headers.extend(r.headers);
            let method = r
                .method
                .or_else(|| p.method.clone())
                .unwrap_or_else(|| "GET".to_string())
                .to_ascii_uppercase();
            if !METHODS.contains(&method.as_str()) {
                return Err(ParamError(format!(
                    "http: request {}: method {method:?} is not one of {}",
                    i + 1,
                    METHODS.join(", ")
                )));
            }
            for (k, v) in &headers {
                if ureq::http::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || ureq::http::HeaderValue::from_str(v).is_err()
                {
                    return Err(ParamError(format!(
                        "http: request {}: invalid header {k:?}",
                        i + 1
                    )));
                }
            }
            Ok(Request {
                method,
                url: r.url,
                headers: headers.into_iter().collect(),
                body: r.body,
                expect: r
                    .expect_status
                    .or_else(|| p.expect_status.clone())
                    .unwrap_or_default(),
                timeout: r.timeout.or(p.timeout).map_or(DEFAULT_TIMEOUT, |d| d.0),
            })
        })
        .collect()
}

fn checked(params: &Map<String, Value>, config: &Config) -> Result<Vec<Request>, ParamError> {
    let list = requests(params)?;
    for r in &list {
        check_url("http", "url", &r.url, &config.http.allow_hosts, KEY)?;
        if r.timeout.is_zero() {
            return Err(ParamError::new("http: timeout must be more than 0"));
        }
    }
    Ok(list)
}

/// An agent that follows no redirects, uses no proxy, and treats every status as a response.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(None)
        .user_agent(concat!("cronmgr/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Send one request; an error is a transport failure (no response).
pub fn send(req: &Request) -> Result<Response, String> {
    let mut builder = ureq::http::Request::builder()
        .method(req.method.as_str())
        .uri(req.url.as_str());
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let body = req.body.clone().unwrap_or_default().into_bytes();
    let request = builder.body(body).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut resp = agent(req.timeout).run(request).map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut kept = Vec::new();
    let mut reader = resp.body_mut().as_reader();
    (&mut reader)
        .take(BODY_CAP as u64 + 1)
        .read_to_end(&mut kept)
        .map_err(|e| format!("reading the response body: {e}"))?;
    let truncated = kept.len() > BODY_CAP;
    kept.truncate(BODY_CAP);
    Ok(Response {
        status,
        elapsed: start.elapsed(),
        body: kept,
        truncated,
    })
}

fn write_report(out: &mut dyn Write, text: &str) -> Result<(), RunError> {
    out.write_all(text.as_bytes())
        .map_err(|e| RunError::io("writing the report", e))
}

impl Executor for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn summary(&self) -> &'static str {
        "HTTP requests to allowlisted hosts: url or requests, method, headers, body, expect_status, timeout"
    }

    fn check(&self, params: &Map<String, Value>, config: &Config) -> Result<(), ParamError> {
        checked(params, config).map(|_| ())
    }

    fn run(
        &self,
        params: &Map<String, Value>,
        config: &Config,
        _ctx: &RunContext,
        out: &mut dyn Write,
    ) -> Result<(), RunError> {
        let list = checked(params, config)?;
        let mut failed = 0;
        for (i, req) in list.iter().enumerate() {
            let head = format!("[{}/{}] {} {}", i + 1, list.len(), req.method, req.url);
            match send(req) {
                Ok(resp) => {
                    let ok = req.expect.matches(resp.status);
                    if !ok {
                        failed += 1;
                    }
                    write_report(
                        out,
                        &format!(
                            "{head}: status {} in {} ms{}\n",
                            resp.status,
                            resp.elapsed.as_millis(),
                            if ok {
                                String::new()
                            } else {
                                format!(" (FAIL: expected {})", req.expect)
                            }
                        ),
                    )?;
                    if !resp.body.is_empty() {
                        let mut text = String::from_utf8_lossy(&resp.body).into_owned();
                        if !text.ends_with('\n') {
                            text.push('\n');
                        }
                        write_report(out, &text)?;
                    }
                    if resp.truncated {
                        write_report(out, &format!("[body cut at {} KiB]\n", BODY_CAP / 1024))?;
                    }
                }
                Err(e) => {
                    failed += 1;
                    write_report(out, &format!("{head}: FAIL: {e}\n"))?;
                }
            }
        }
        if failed > 0 {
            return Err(RunError::Failed(format!(
                "{failed} of {} request(s) failed",
                list.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// A one-thread HTTP server answering every request with `status` and `body`; returns its port.
    pub fn serve(status: u16, body: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut buf = vec![0; len];
                let _ = reader.read_exact(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        port
    }

    fn config(hosts: &[&str]) -> Config {
        let mut c = Config::defaults("/nonexistent".into());
        c.http.allow_hosts = hosts.iter().map(|s| s.to_string()).collect();
        c
    }

    fn p(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn ctx() -> RunContext {
        RunContext {
            db: "/nonexistent".into(),
        }
    }

    #[test]
    fn expect_status_forms() {
        assert!(Expect::default().matches(204));
        assert!(!Expect::default().matches(301));
        let e = Expect::parse("200, 300-302").unwrap();
        assert!(e.matches(301) && e.matches(200) && !e.matches(201));
        assert!(Expect::parse("299-200").is_err());
        assert!(Expect::parse("abc").is_err());
        let r = requests(&p(json!({"url": "http://x/", "expect_status": [200, 404]}))).unwrap();
        assert!(r[0].expect.matches(404));
        let r = requests(&p(json!({"url": "http://x/", "expect_status": "500-599"}))).unwrap();
        assert!(r[0].expect.matches(503));
    }

    #[test]
    fn params_are_checked() {
        let c = config(&["api.example.com"]);
        for (v, needle) in [
            (json!({}), "url is required"),
            (json!({"url": "http://a/", "requests": []}), "not both"),
            (json!({"requests": []}), "requests is empty"),
            (
                json!({"url": "http://api.example.com/", "method": "BREW"}),
                "method \"BREW\"",
            ),
            (
                json!({"url": "http://evil.com/"}),
                "not allowed by [executors.http] allow_hosts",
            ),
            (
                json!({"url": "http://api.example.com/", "timeout": "soon"}),
                "timeout",
            ),
            (
                json!({"url": "http://api.example.com/", "verb": "GET"}),
                "unknown field `verb`",
            ),
            (
                json!({"requests": [{"url": "http://api.example.com/", "expect": 200}]}),
                "requests[0]",
            ),
        ] {
            let err = Http.check(&p(v.clone()), &c).unwrap_err();
            assert!(err.0.contains(needle), "{v}: {err}");
        }
        let err = Http
            .check(&p(json!({"url": "http://api.example.com/"})), &config(&[]))
            .unwrap_err();
        assert!(err.0.contains("every host is refused"), "{err}");
        // Top-level fields are defaults for each request.
        let r = requests(&p(json!({
            "headers": {"Authorization": "Bearer x"}, "timeout": 5,
            "requests": [{"url": "http://a/1"}, {"url": "http://a/2", "method": "post", "timeout": "1m"}]
        })))
        .unwrap();
        assert_eq!(
            r[0].headers,
            vec![("Authorization".into(), "Bearer x".into())]
        );
        assert_eq!((r[0].timeout.as_secs(), r[1].timeout.as_secs()), (5, 60));
        assert_eq!(r[1].method, "POST");
    }

    #[test]
    fn requests_run_against_a_real_server() {
        let port = serve(200, "all good");
        let c = config(&[&format!("127.0.0.1:{port}")]);
        let mut out = Vec::new();
        Http.run(
            &p(json!({"requests": [
                {"url": format!("http://127.0.0.1:{port}/a")},
                {"url": format!("http://127.0.0.1:{port}/b"), "method": "POST", "body": "x=1"}
            ]})),
            &c,
            &ctx(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("[1/2] GET"), "{text}");
        assert!(text.contains("[2/2] POST"), "{text}");
        assert!(text.contains("status 200"), "{text}");
        assert!(text.contains("all good"), "{text}");

        let port = serve(503, "down");
        let c = config(&[&format!("127.0.0.1:{port}")]);
        let mut out = Vec::new();
        let err = Http
            .run(
                &p(json!({"url": format!("http://127.0.0.1:{port}/")})),
                &c,
                &ctx(),
                &mut out,
            )
            .unwrap_err();
        assert!(err.to_string().contains("1 of 1"), "{err}");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("status 503") && text.contains("FAIL: expected 200-299"),
            "{text}"
        );
        // A wrong status may be the expected one.
        Http.run(
            &p(json!({"url": format!("http://127.0.0.1:{port}/"), "expect_status": 503})),
            &c,
            &ctx(),
            &mut Vec::new(),
        )
        .unwrap();
    }

    #[test]
    fn a_long_body_is_cut() {
        let big: &'static str = Box::leak("y".repeat(BODY_CAP + 100).into_boxed_str());
        let port = serve(200, big);
        let resp = send(&Request {
            method: "GET".into(),
            url: format!("http://127.0.0.1:{port}/"),
            headers: vec![],
            body: None,
            expect: Expect::default(),
            timeout: Duration::from_secs(5),
        })
        .unwrap();
        assert_eq!(resp.body.len(), BODY_CAP);
        assert!(resp.truncated);
    }

    #[test]
    fn a_closed_port_fails() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = config(&["127.0.0.1"]);
        let mut out = Vec::new();
        assert!(Http
            .run(
                &p(json!({"url": format!("http://127.0.0.1:{port}/"), "timeout": 2})),
                &c,
                &ctx(),
                &mut out
            )
            .is_err());
        assert!(String::from_utf8(out).unwrap().contains("FAIL"));
    }
}
