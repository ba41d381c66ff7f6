//! Alerts end to end: real SMTP and HTTP listeners on 127.0.0.1 started by the test, the runner
//! delivering to them, auto-disable, missed runs, an unreachable channel, redaction, and the
//! status, stats and metrics commands.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::harness::{stop, Env};

const SLACK_SECRET: &str = "T0SLACK/B0SLACK/slacksecretpath";
const HOOK_SECRET: &str = "hooksecretpath";
const SIGNING_KEY: &str = "s1gning-k3y-do-not-print";

/// One HTTP request as the test server saw it.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub(super) path: String,
    headers: Vec<(String, String)>,
    pub(super) body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A listener in a thread that stops by itself after a while (or when dropped).
pub(super) struct Server<T> {
    pub(super) port: u16,
    seen: Arc<Mutex<Vec<T>>>,
    stop: Arc<AtomicBool>,
}

impl<T> Drop for Server<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl<T: Clone> Server<T> {
    pub(super) fn seen(&self) -> Vec<T> {
        self.seen.lock().unwrap().clone()
    }

    /// What it saw, once it saw at least `n` (or after 10 s): a message counts when its
    /// conversation ends, which may be just after the client already took the reply as sent.
    fn seen_at_least(&self, n: usize) -> Vec<T> {
        let until = Instant::now() + Duration::from_secs(10);
        while self.seen.lock().unwrap().len() < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.seen()
    }
}

fn serve<T: Send + 'static>(
    listener: TcpListener,
    handle: fn(TcpStream) -> Option<T>,
) -> Server<T> {
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (seen.clone(), stop.clone());
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    if let Some(v) = handle(stream) {
                        s.lock().unwrap().push(v);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Server { port, seen, stop }
}

fn http_server_on(listener: TcpListener) -> Server<Request> {
    serve(listener, |stream| {
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let path = line.split_whitespace().nth(1)?.to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':')?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .ok()?;
        Some(Request {
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    })
}

pub(super) fn http_server() -> Server<Request> {
    http_server_on(TcpListener::bind("127.0.0.1:0").unwrap())
}

/// A minimal plain-text SMTP server: records each message's DATA.
fn smtp_server() -> Server<String> {
    serve(TcpListener::bind("127.0.0.1:0").unwrap(), |stream| {
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut out = stream;
        out.write_all(b"220 localhost ESMTP test\r\n").ok()?;
        let mut data: Option<String> = None;
        let mut message = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                break;
            }
            if let Some(d) = data.as_mut() {
                if line == ".\r\n" {
                    message = data.take();
                    out.write_all(b"250 OK queued\r\n").ok()?;
                } else {
                    d.push_str(&line);
                }
                continue;
            }
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" | "HELO" => b"250 localhost\r\n",
                "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
                "DATA" => {
                    data = Some(String::new());
                    b"354 end with .\r\n"
                }
                "QUIT" => {
                    out.write_all(b"221 bye\r\n").ok()?;
                    break;
                }
                _ => b"502 not implemented\r\n",
            };
            out.write_all(reply).ok()?;
        }
        message
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn with_smtp(env: &Env, port: u16) {
    let mut cfg = std::fs::read_to_string(&env.config).unwrap();
    cfg.push_str(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"cronmgr@test.example\"\n"
    ));
    std::fs::write(&env.config, cfg).unwrap();
}

fn set(env: &Env, key: &str, value: &str) {
    env.ok(&["settings", "set", key, value]);
}

pub(super) fn alerts(env: &Env) -> Vec<Value> {
    env.json(&["alerts"]).as_array().unwrap().clone()
}

pub(super) fn all_sent(a: &Value) -> bool {
    let d = a["deliveries"].as_array().unwrap();
    !d.is_empty() && d.iter().all(|d| d["state"] == "sent")
}

fn verify(secret: &str, body: &str, header: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    expected == header
}

/// Everything a user or a log could show, as one string.
fn every_output(env: &Env) -> String {
    let mut all = String::new();
    for args in [
        vec!["settings"],
        vec!["--json", "settings"],
        vec!["settings", "get", "slack_webhook"],
        vec!["settings", "get", "webhook_url"],
        vec!["settings", "get", "webhook_secret"],
        vec!["--json", "settings", "get", "webhook_secret"],
        vec!["--json", "list"],
        vec!["list"],
        vec!["alerts"],
        vec!["--json", "alerts"],
        vec!["status"],
        vec!["--json", "status"],
    ] {
        let out = env.cmd().args(&args).output().unwrap();
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    all.push_str(&env.runner_log());
    all
}

fn assert_no_secrets(text: &str) {
    for secret in [SLACK_SECRET, "slacksecretpath", HOOK_SECRET, SIGNING_KEY] {
        assert!(!text.contains(secret), "secret {secret:?} leaked:\n{text}");
    }
}

#[test]
fn a_failing_job_alerts_by_email_slack_and_signed_webhook_then_is_disabled() {
    let env = Env::new();
    env.ignore_host_disk();
    let http = http_server();
    let smtp = smtp_server();
    with_smtp(&env, smtp.port);
    let base = format!("http://127.0.0.1:{}", http.port);
    set(&env, "alert_email", "ops@example.com");
    set(
        &env,
        "slack_webhook",
        &format!("{base}/slack/{SLACK_SECRET}"),
    );
    set(&env, "webhook_url", &format!("{base}/hook/{HOOK_SECRET}"));
    set(&env, "webhook_secret", SIGNING_KEY);
    env.ok(&[
        "add",
        "flaky",
        "--schedule",
        "* * * * * *",
        "--disable-after",
        "3",
        "--",
        "/bin/sh",
        "-c",
        "echo oops from flaky; exit 2",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let done = env.wait_for(Duration::from_secs(30), || {
        let job = env.json(&["show", "flaky"]);
        let a = alerts(&env);
        (job["is_active"] == false && a.len() == 2 && a.iter().all(all_sent)).then_some((job, a))
    });
    let (job, a) = done.unwrap_or_else(|| panic!("no alerts; log:\n{}", env.runner_log()));
    // Three failures, two state changes: failing, then disabled.
    let failed: Vec<_> = env
        .history("flaky")
        .into_iter()
        .filter(|r| r["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert_eq!(a[1]["kind"], "failed");
    assert_eq!(a[0]["kind"], "disabled");
    assert!(a.iter().all(|a| a["state"] == "firing"));
    let reason = job["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("3 consecutive failures"), "{reason}");
    assert_eq!(job["failure_streak"], 3);
    let listed = env.json(&["list"]);
    assert_eq!(listed[0]["disabled_reason"], reason);
    assert!(env.ok(&["show", "flaky"]).contains("consecutive failures"));

    // Email: two messages over a real SMTP conversation.
    let mails = smtp.seen_at_least(2);
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(
        mails[0].contains("Subject: [cronmgr] FIRING: flaky failed"),
        "{}",
        mails[0]
    );
    assert!(mails[0].contains("ops@example.com"));
    assert!(mails[0].contains("oops from flaky"));
    assert!(mails[1].contains("disabled"), "{}", mails[1]);

    // Slack and the webhook: two each; the webhook signed with HMAC-SHA256.
    let reqs = http.seen();
    let slack: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/slack/"))
        .collect();
    let hooks: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/hook/"))
        .collect();
    assert_eq!(slack.len(), 2, "{reqs:?}");
    assert_eq!(hooks.len(), 2, "{reqs:?}");
    let s: Value = serde_json::from_str(&slack[0].body).unwrap();
    let text = s.to_string();
    for needle in ["flaky", "default", "failed", "Attempt", "oops from flaky"] {
        assert!(text.contains(needle), "{needle} missing from slack {text}");
    }
    for h in &hooks {
        let sig = h.header("X-Cronmgr-Signature").expect("signature header");
        assert!(verify(SIGNING_KEY, &h.body, sig), "bad signature {sig}");
        assert!(!verify("wrong key", &h.body, sig));
    }
    let p: Value = serde_json::from_str(&hooks[0].body).unwrap();
    assert_eq!(p["version"], 1);
    assert_eq!(p["job"], "flaky");
    assert_eq!(p["kind"], "failed");
    assert_eq!(p["state"], "firing");
    assert_eq!(p["details"]["exit_code"], 2);
    assert_eq!(p["details"]["status"], "failed");
    assert!(p["details"]["output_tail"]
        .as_str()
        .unwrap()
        .contains("oops from flaky"));

    // Enable: reason cleared, streak reset, and one "resolved" message for the disabled condition.
    env.ok(&["edit", "flaky", "--schedule", "@yearly"]);
    env.ok(&["enable", "flaky"]);
    let job = env.json(&["show", "flaky"]);
    assert_eq!(job["disabled_reason"], Value::Null);
    assert_eq!(job["failure_streak"], 0);
    let resolved = env.wait_for(Duration::from_secs(10), || {
        let a = alerts(&env);
        (a.len() == 3 && all_sent(&a[0])).then_some(a)
    });
    let resolved =
        resolved.unwrap_or_else(|| panic!("no resolved alert; log:\n{}", env.runner_log()));
    assert_eq!(resolved[0]["state"], "resolved");
    assert_eq!(resolved[0]["kind"], "disabled");
    let active = env.json(&["alerts", "--active"]);
    assert_eq!(
        active.as_array().unwrap().len(),
        1,
        "the failing condition stays open until a success"
    );

    stop(&mut runner);
    assert_no_secrets(&every_output(&env));
}

#[test]
fn a_silent_job_alerts_when_the_runner_starts_and_recovers_on_success() {
    let env = Env::new();
    env.ignore_host_disk();
    let http = http_server();
    set(
        &env,
        "webhook_url",
        &format!("http://127.0.0.1:{}/hook/{HOOK_SECRET}", http.port),
    );
    env.ok(&[
        "add",
        "nightly",
        "--schedule",
        "@yearly",
        "--max-silence",
        "3s",
        "--",
        "/bin/true",
    ]);
    // The runner is down while the silence passes.
    std::thread::sleep(Duration::from_secs(4));
    let mut runner = env.spawn_runner(&[]);
    let got = env.wait_for(Duration::from_secs(15), || {
        let a = alerts(&env);
        a.iter()
            .find(|a| a["kind"] == "silent" && all_sent(a))
            .cloned()
    });
    let a = got.unwrap_or_else(|| panic!("no silent alert; log:\n{}", env.runner_log()));
    assert_eq!(a["job"], "nightly");
    assert!(a["summary"]
        .as_str()
        .unwrap()
        .contains("has not succeeded for 3s"));
    let hooks = http.seen();
    assert_eq!(hooks.len(), 1);
    let p: Value = serde_json::from_str(&hooks[0].body).unwrap();
    assert_eq!(p["kind"], "silent");
    // No signing key set: no signature header.
    assert!(hooks[0].header("X-Cronmgr-Signature").is_none());

    // A success clears it with one resolved message; then, while up, the runner's timer fires again.
    env.ok(&["edit", "nightly", "--schedule", "* * * * * *"]);
    let resolved = env.wait_for(Duration::from_secs(15), || {
        alerts(&env)
            .into_iter()
            .find(|a| a["state"] == "resolved" && a["kind"] == "silent")
    });
    assert!(
        resolved.is_some(),
        "no recovery; log:\n{}",
        env.runner_log()
    );
    env.ok(&["edit", "nightly", "--schedule", "@yearly"]);
    let again = env.wait_for(Duration::from_secs(15), || {
        let n = alerts(&env)
            .iter()
            .filter(|a| a["kind"] == "silent" && a["state"] == "firing")
            .count();
        (n == 2).then_some(())
    });
    stop(&mut runner);
    assert!(
        again.is_some(),
        "no second silent alert while up; log:\n{}",
        env.runner_log()
    );
}

#[test]
fn an_unreachable_channel_leaves_the_runner_on_time_and_delivers_later() {
    let env = Env::new();
    env.ignore_host_disk();
    let port = free_port();
    set(
        &env,
        "webhook_url",
        &format!("http://127.0.0.1:{port}/hook/{HOOK_SECRET}"),
    );
    env.ok(&[
        "add",
        "broken",
        "--schedule",
        "* * * * * *",
        "--",
        "/bin/false",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let pending = env.wait_for(Duration::from_secs(15), || {
        let a = alerts(&env);
        let d = a.first()?["deliveries"][0].clone();
        (d["state"] == "pending" && d["attempts"].as_u64()? >= 1).then_some(d)
    });
    let pending =
        pending.unwrap_or_else(|| panic!("no failed attempt; log:\n{}", env.runner_log()));
    let error = pending["last_error"].as_str().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(pending["next_attempt_at"].is_string());
    // Meanwhile the runner keeps firing on time (rows land within a moment of each end: wait
    // for three, rather than sleeping a fixed time on a loaded machine).
    let failed = || -> Vec<Value> {
        env.history("broken")
            .into_iter()
            .filter(|r| r["status"] == "failed")
            .collect()
    };
    let runs = env
        .wait_for(Duration::from_secs(10), || {
            let runs = failed();
            (runs.len() >= 3).then_some(runs)
        })
        .unwrap_or_else(|| panic!("fewer than 3 runs: {:?}", failed()));
    for r in &runs {
        let late = chrono::DateTime::parse_from_rfc3339(r["started_at"].as_str().unwrap()).unwrap()
            - chrono::DateTime::parse_from_rfc3339(r["scheduled_for"].as_str().unwrap()).unwrap();
        assert!(late < chrono::Duration::seconds(1), "started {late} late");
    }
    // The channel comes back: the pending delivery goes out on its next attempt.
    let http = http_server_on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let sent = env.wait_for(Duration::from_secs(30), || {
        let a = alerts(&env);
        all_sent(a.last()?).then_some(a)
    });
    stop(&mut runner);
    let a = sent.unwrap_or_else(|| panic!("never delivered; log:\n{}", env.runner_log()));
    assert_eq!(
        a.len(),
        1,
        "one alert for a failing job, not one per failure: {a:?}"
    );
    assert!(a[0]["deliveries"][0]["attempts"].as_u64().unwrap() >= 2);
    assert_eq!(http.seen().len(), 1);
    assert_no_secrets(&every_output(&env));
}

#[test]
fn alert_test_reports_delivery_and_failure() {
    let env = Env::new();
    let http = http_server();
    set(
        &env,
        "webhook_url",
        &format!("http://127.0.0.1:{}/hook/{HOOK_SECRET}", http.port),
    );
    set(&env, "webhook_secret", SIGNING_KEY);
    let out = env.ok(&["alert", "test", "webhook"]);
    assert!(out.contains("sent"), "{out}");
    assert_no_secrets(&out);
    let reqs = http.seen();
    assert_eq!(reqs.len(), 1);
    let sig = reqs[0].header("X-Cronmgr-Signature").unwrap();
    assert!(verify(SIGNING_KEY, &reqs[0].body, sig));

    let dead = format!("http://127.0.0.1:{}/slack/{SLACK_SECRET}", free_port());
    set(&env, "slack_webhook", &dead);
    let err = env.fails(1, &["alert", "test", "slack"]);
    assert!(err.contains("failed"), "{err}");
    assert_no_secrets(&err);
    env.fails(2, &["alert", "test", "email"]);
    env.fails(2, &["alert", "test", "pager"]);

    let smtp = smtp_server();
    with_smtp(&env, smtp.port);
    env.ok(&["alert", "test", "email", "--to", "someone@example.com"]);
    let mails = smtp.seen_at_least(1);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("test alert from cronmgr"));
}

#[test]
fn settings_and_job_flags_validate_and_redact() {
    let env = Env::new();
    set(
        &env,
        "slack_webhook",
        &format!("https://hooks.slack.com/services/{SLACK_SECRET}"),
    );
    set(&env, "webhook_secret", SIGNING_KEY);
    set(
        &env,
        "escalate_to",
        &format!("boss@example.com, https://pager.example.com/{HOOK_SECRET}"),
    );
    assert_eq!(
        env.ok(&["settings", "get", "slack_webhook"]).trim(),
        "https://hooks.slack.com/…(redacted)"
    );
    let shown = env.ok(&["settings", "get", "escalate_to"]);
    assert!(shown.contains("boss@example.com"), "{shown}");
    let before = env.dump();
    env.fails(2, &["settings", "set", "webhook_url", "ftp://nope"]);
    env.fails(2, &["settings", "set", "disable_after", "-1"]);
    env.fails(2, &["settings", "set", "cpu_threshold", "101"]);
    env.fails(2, &["settings", "set", "escalate_to", "not a target"]);
    assert_eq!(env.dump(), before);
    set(&env, "disable_after", "5");
    set(&env, "max_silence", "26h");
    assert_eq!(env.ok(&["settings", "get", "max_silence"]).trim(), "1d2h");

    env.fails(
        2,
        &[
            "add",
            "j",
            "--schedule",
            "@daily",
            "--disable-after",
            "0",
            "--",
            "/bin/true",
        ],
    );
    env.fails(
        2,
        &[
            "add",
            "j",
            "--schedule",
            "@daily",
            "--alert-email",
            "nope",
            "--",
            "/bin/true",
        ],
    );
    let job = env.json(&[
        "add",
        "j",
        "--schedule",
        "@daily",
        "--alert-email",
        "me@example.com",
        "--escalate-after",
        "2",
        "--max-silence",
        "26h",
        "--no-alerts",
        "--",
        "/bin/true",
    ]);
    assert_eq!(job["alert_email"], "me@example.com");
    assert_eq!(job["escalate_after"], 2);
    assert_eq!(job["max_silence"], 93600);
    assert_eq!(job["alerts_enabled"], false);
    let job = env.json(&["edit", "j", "--max-silence", "none", "--no-alerts", "false"]);
    assert_eq!(job["max_silence"], Value::Null);
    assert_eq!(job["alerts_enabled"], true);
    let text = env.ok(&["show", "j"]);
    assert!(text.contains("escalate after 2"), "{text}");
    assert!(text.contains("disable after 5 (system)"), "{text}");
    assert_no_secrets(&every_output(&env));
}

#[test]
fn status_stats_and_metrics_report_what_ran() {
    let env = Env::new();
    env.ignore_host_disk();
    env.ok(&[
        "add",
        "good",
        "--schedule",
        "@yearly",
        "--",
        "/bin/sh",
        "-c",
        "sleep 0.2",
    ]);
    env.ok(&["add", "bad", "--schedule", "@yearly", "--", "/bin/false"]);
    for _ in 0..3 {
        env.ok(&["run-now", "good"]);
    }
    env.fails(3, &["run-now", "bad"]);

    let s = env.json(&["status"]);
    assert_eq!(s["jobs"]["total"], 2);
    assert_eq!(s["jobs"]["active"], 2);
    assert_eq!(s["jobs"]["running"], 0);
    assert_eq!(s["jobs"]["failed_24h"], 1);
    assert_eq!(s["runner"]["up"], false);
    assert_eq!(s["last_executions"].as_array().unwrap().len(), 4);
    assert_eq!(s["last_executions"][0]["job"], "bad");
    assert!(s["last_executions"][0].get("output").is_none());
    assert_eq!(s["next_runs"].as_array().unwrap().len(), 2);
    assert!((s["success_rate"].as_f64().unwrap() - 0.75).abs() < 1e-9);
    assert!(s["mean_duration_ms"].as_f64().unwrap() > 100.0);
    // The failed run-now raised the alert a scheduled run would.
    assert_eq!(s["active_alerts"].as_array().unwrap().len(), 1);
    assert_eq!(s["active_alerts"][0]["kind"], "failed");
    assert!(env.ok(&["status"]).contains("next runs"));

    let st = env.json(&["stats", "--since", "1h"]);
    let good = st
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "good")
        .unwrap();
    assert_eq!(good["runs"], 3);
    assert_eq!(good["success_rate"], 1.0);
    assert!(good["p95_duration_ms"].as_i64().unwrap() >= 200);
    assert!(good["mean_memory_mb"].as_f64().unwrap() > 0.0);
    assert!(good["last_success_at"].is_string());
    let bad = env.json(&["stats", "bad"]);
    assert_eq!(bad[0]["success_rate"], 0.0);
    assert_eq!(bad[0]["last_success_at"], Value::Null);
    env.fails(2, &["stats", "nosuch"]);

    let m = env.ok(&["metrics"]);
    for needle in [
        "# TYPE cronmgr_job_runs_total counter",
        "cronmgr_job_runs_total{system=\"default\",job=\"good\",status=\"success\"} 3",
        "cronmgr_job_failures_total{system=\"default\",job=\"bad\"} 1",
        "cronmgr_job_last_success_timestamp_seconds{system=\"default\",job=\"good\"}",
        "cronmgr_job_last_duration_seconds{system=\"default\",job=\"bad\"}",
        "cronmgr_runner_up 0",
        "cronmgr_runner_queued 0",
    ] {
        assert!(m.contains(needle), "{needle} missing from:\n{m}");
    }

    // The runner's textfile, rewritten after every execution.
    let prom = env.dir.path().join("cronmgr.prom");
    env.ok(&["edit", "good", "--schedule", "* * * * * *"]);
    let mut runner = env.spawn_runner(&["--metrics-file", prom.to_str().unwrap()]);
    let file = env.wait_for(Duration::from_secs(15), || {
        let t = std::fs::read_to_string(&prom).ok()?;
        t.contains("cronmgr_job_runs_total{system=\"default\",job=\"good\",status=\"success\"} 4")
            .then_some(t)
    });
    let s = env.json(&["status"]);
    stop(&mut runner);
    let file = file.unwrap_or_else(|| panic!("no metrics file; log:\n{}", env.runner_log()));
    assert!(file.contains("cronmgr_runner_up 1"), "{file}");
    assert_eq!(s["runner"]["up"], true);
    assert_eq!(s["runner"]["pid"], runner.id());
    assert!(s["runner"]["started_at"].is_string());
    assert!(s["runner"]["memory_mb"].as_f64().unwrap() > 0.0);
    assert_eq!(s["runner"]["capacity"], 5);
    let after = std::fs::read_to_string(&prom).unwrap();
    assert!(after.contains("cronmgr_runner_up 0"), "{after}");
}
