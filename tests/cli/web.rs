//! `cronmgr web`: the real server on a free port (or a unix socket) against the test database,
//! spoken to with plain HTTP/1.1 over a socket, and a headless Chromium for the pages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{self, Env};

const TOKEN: &str = "test-token-0123456789abcdef";
pub(crate) const PASSWORD: &str = "correct horse battery";

/// A running `cronmgr web`; killed on drop.
pub(crate) struct Web {
    child: Child,
    pub(crate) addr: String,
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command line of `cronmgr web` for this test's database and config.
fn web_cmd(env: &Env, extra: &[&str]) -> StdCommand {
    let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("cronmgr"));
    c.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", env.dir.path())
        .env("TZ", "UTC")
        .env("CRONMGR_CONFIG", &env.config)
        .env("CRONMGR_WEB_TOKEN", TOKEN)
        .arg("--db")
        .arg(&env.db)
        .arg("web")
        .args(extra);
    c
}

/// Start the server and wait for its "listening on" line.
pub(crate) fn start(env: &Env, extra: &[&str]) -> Web {
    let mut args = extra.to_vec();
    if !args.contains(&"--listen") {
        args.extend(["--listen", "127.0.0.1:0"]); // a free port: tests run in parallel
    }
    let mut child = web_cmd(env, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cronmgr web");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.split(' ').next().unwrap_or("").to_string());
                }
            }
            eprintln!("web: {line}");
        }
    });
    let shown = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("cronmgr web did not say where it listens");
    let addr = shown
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string();
    Web { child, addr }
}

/// A config with the test allowlist and a `[web]` section.
pub(crate) fn with_web_config(env: &Env, web: &str) {
    let mut text = std::fs::read_to_string(&env.config).unwrap();
    text.push_str("[web]\n");
    text.push_str(web);
    std::fs::write(&env.config, text).unwrap();
}

pub(crate) fn password_hash(env: &Env) -> String {
    let mut c = web_cmd(env, &["--hash-password"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request, raw: `headers` are full lines.
fn request(addr: &str, method: &str, path: &str, headers: &[String], body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let _ = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn bearer() -> Vec<String> {
    vec![format!("Authorization: Bearer {TOKEN}")]
}

fn get(web: &Web, path: &str) -> Reply {
    request(&web.addr, "GET", path, &bearer(), "")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Log in with the password: the session cookie.
fn login(web: &Web) -> String {
    let r = request(
        &web.addr,
        "POST",
        "/login",
        &[],
        &form(&[("user", "web"), ("password", PASSWORD), ("next", "/")]),
    );
    assert_eq!(r.status, 303, "{}{}", r.head, r.body);
    let cookie = r.header("set-cookie").expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

fn add_echo(env: &Env, name: &str, extra: &[&str]) {
    let mut args = vec!["add", name, "--schedule", "0 3 * * *"];
    args.extend_from_slice(extra);
    args.extend(["--", "/usr/bin/echo", "hi"]);
    env.ok(&args);
}

#[test]
fn every_page_needs_authentication_and_a_token_or_session_opens_it() {
    let env = Env::new();
    add_echo(&env, "j", &[]);
    let hash = password_hash(&env);
    with_web_config(&env, &format!("password_hash = {hash:?}\n"));
    let web = start(&env, &["--listen", "127.0.0.1:0"]);
    for path in [
        "/",
        "/jobs",
        "/jobs/j",
        "/api/jobs",
        "/metrics",
        "/audit",
        "/executions/1/stream",
    ] {
        let r = request(&web.addr, "GET", path, &[], "");
        assert_eq!(r.status, 401, "{path} without credentials: {}", r.head);
        assert!(!r.body.contains("/usr/bin/echo"), "{path}");
    }
    // A browser is sent to the login form.
    let r = request(&web.addr, "GET", "/jobs", &["Accept: text/html".into()], "");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location").as_deref(), Some("/login?next=%2Fjobs"));
    let wrong = request(
        &web.addr,
        "GET",
        "/",
        &["Authorization: Bearer not-the-token-at-all".into()],
        "",
    );
    assert_eq!(wrong.status, 401);
    let r = get(&web, "/api/jobs");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["name"], "j");
    let bad = request(
        &web.addr,
        "POST",
        "/login",
        &[],
        &form(&[("user", "web"), ("password", "nope")]),
    );
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_none());
    let cookie = login(&web);
    let r = request(
        &web.addr,
        "GET",
        "/jobs/j",
        &[format!("Cookie: {cookie}")],
        "",
    );
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("At 03:00"),
        "the schedule in words: {}",
        r.body
    );
}

#[test]
fn markup_in_job_fields_is_escaped_and_every_page_carries_the_csp() {
    let env = Env::new();
    add_echo(
        &env,
        "x",
        &[
            "--description",
            "<script>alert(1)</script>",
            "--category",
            "BACKUP",
        ],
    );
    let web = start(&env, &[]);
    for path in [
        "/",
        "/jobs",
        "/jobs/x",
        "/timeline",
        "/audit",
        "/settings",
        "/runners",
        "/alerts",
    ] {
        let r = get(&web, path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(
            !r.body.contains("<script>alert"),
            "{path} has the raw markup"
        );
        let csp = r.header("content-security-policy").expect("a CSP");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
        // No inline script anywhere: every <script> has a src.
        assert!(!r.body.contains("<script>"), "{path}");
    }
    assert!(get(&web, "/jobs/x")
        .body
        .contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn a_read_only_dashboard_refuses_every_post() {
    let env = Env::new();
    add_echo(&env, "j", &[]);
    let web = start(&env, &[]);
    let before = env.dump();
    for path in [
        "/jobs/j/disable",
        "/jobs/j/run",
        "/jobs/new",
        "/jobs/j/edit",
    ] {
        let r = request(
            &web.addr,
            "POST",
            path,
            &bearer(),
            &form(&[("schedule", "@hourly")]),
        );
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("--allow-actions"), "{}", r.body);
    }
    assert_eq!(env.dump(), before, "a refused post changed the database");
}

#[test]
fn a_form_without_its_csrf_token_is_refused() {
    let env = Env::new();
    add_echo(&env, "j", &[]);
    let hash = password_hash(&env);
    with_web_config(&env, &format!("password_hash = {hash:?}\n"));
    let web = start(&env, &["--allow-actions"]);
    let cookie = format!("Cookie: {}", login(&web));
    let before = env.dump();
    for body in [String::new(), form(&[("csrf", "0000")])] {
        let r = request(
            &web.addr,
            "POST",
            "/jobs/j/disable",
            std::slice::from_ref(&cookie),
            &body,
        );
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("CSRF"));
    }
    assert_eq!(env.dump(), before);
    let page = request(
        &web.addr,
        "GET",
        "/jobs/j",
        std::slice::from_ref(&cookie),
        "",
    )
    .body;
    let r = request(
        &web.addr,
        "POST",
        "/jobs/j/disable",
        &[cookie],
        &form(&[("csrf", &csrf_of(&page))]),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(env.json(&["show", "j"])["is_active"], false);
}

/// The audit rows of an action on a job, as `audit --json` prints them.
pub(crate) fn audit_rows(env: &Env, action: &str) -> Vec<Value> {
    env.json(&["audit"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action)
        .cloned()
        .collect()
}

#[test]
fn an_edit_through_the_form_writes_the_audit_row_the_cli_writes() {
    let env = Env::new();
    add_echo(&env, "web-edited", &["--timeout", "5m"]);
    add_echo(&env, "cli-edited", &["--timeout", "5m"]);
    let web = start(&env, &["--allow-actions"]);
    let page = get(&web, "/jobs/web-edited/edit");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("value=\"0 3 * * *\""),
        "the form holds the job"
    );
    let edit = |schedule: &str| {
        request(
            &web.addr,
            "POST",
            "/jobs/web-edited/edit",
            &bearer(),
            &form(&[
                ("name", "web-edited"),
                ("schedule", schedule),
                ("description", ""),
                ("category", ""),
                ("priority", "5"),
                ("timeout", "5m"),
                ("retries", "0"),
                ("retry_delay", "1m"),
                ("timezone", ""),
                ("command", "shell"),
                ("argv", "/usr/bin/echo\nhi"),
                ("params", ""),
            ]),
        )
    };
    // Refused next to its field, nothing written.
    let before = env.dump();
    let r = edit("61 * * * *");
    assert_eq!(r.status, 422, "{}", r.body);
    let at = r
        .body
        .find("name=\"schedule\"")
        .expect("the schedule field");
    assert!(
        r.body[at..].contains("class=\"error\""),
        "no error next to the field: {}",
        r.body
    );
    assert!(r.body.contains("61"), "{}", r.body);
    assert_eq!(env.dump(), before);
    let r = edit("30 4 * * *");
    assert_eq!(r.status, 303, "{}", r.body);
    env.ok(&["edit", "cli-edited", "--schedule", "30 4 * * *"]);
    let rows = audit_rows(&env, "edit");
    let web_row = rows
        .iter()
        .find(|r| r["target"] == "web-edited")
        .expect("the web's row");
    let cli_row = rows
        .iter()
        .find(|r| r["target"] == "cli-edited")
        .expect("the CLI's row");
    assert_eq!(web_row["user"], "web-token");
    assert_eq!(
        web_row["diff"], cli_row["diff"],
        "the same change, the same diff"
    );
    assert_eq!(web_row["outcome"], cli_row["outcome"]);
    assert_eq!(web_row["diff"]["schedule"]["after"], "30 4 * * *");
}

#[test]
fn the_editor_creates_a_job_the_cli_then_lists() {
    let env = Env::new();
    env.ok(&["settings", "set", "timezone", "UTC"]);
    let web = start(&env, &["--allow-actions"]);
    let add = |name: &str, schedule: &str| {
        request(
            &web.addr,
            "POST",
            "/jobs/new",
            &bearer(),
            &form(&[
                ("name", name),
                ("schedule", schedule),
                ("priority", "3"),
                ("argv", "/usr/bin/echo\nhello"),
                ("active", "1"),
            ]),
        )
    };
    assert_eq!(add("bad name", "@daily").status, 422);
    let r = add("fresh", "*/7 * * * *");
    assert_eq!(r.status, 303, "{}", r.body);
    let listed = env.json(&["list"]);
    assert_eq!(listed[0]["name"], "fresh");
    assert_eq!(listed[0]["priority"], 3);
    assert_eq!(audit_rows(&env, "add")[0]["user"], "web-token");
    // The describe endpoint the editor calls as you type.
    let d = get(&web, "/api/describe?schedule=0+3+*+*+*");
    assert_eq!(d.status, 200);
    assert_eq!(d.json()["valid"], true);
    assert_eq!(d.json()["next"].as_array().unwrap().len(), 5);
    let d = get(&web, "/api/describe?schedule=61+*+*+*+*");
    assert_eq!(d.status, 422);
    assert_eq!(d.json()["field"], "schedule");
}

#[test]
fn a_non_admin_web_user_cannot_touch_a_critical_job() {
    let env = Env::new();
    if !harness::root_for("adding a critical job") {
        return;
    }
    add_echo(&env, "crit", &["--critical"]);
    let web = start(&env, &["--allow-actions"]);
    for path in ["/jobs/crit/disable", "/jobs/crit/run"] {
        let r = request(&web.addr, "POST", path, &bearer(), "");
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("critical"), "{}", r.body);
    }
    assert_eq!(env.json(&["show", "crit"])["is_active"], true);
    assert!(env.history("crit").is_empty(), "a refused run-now ran");
    let refused: Vec<Value> = env
        .json(&["audit"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "refused" && r["user"] == "web-token")
        .cloned()
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
}

#[test]
fn a_secret_never_appears_in_a_page_or_the_api() {
    let env = Env::new();
    env.ok(&[
        "add",
        "s",
        "--schedule",
        "0 3 * * *",
        "--param",
        r#"env={"TOKEN": {"secret": "hunter2-very-secret"}}"#,
        "--",
        "/usr/bin/echo",
        "hi",
    ]);
    let web = start(&env, &["--allow-actions"]);
    for path in [
        "/",
        "/jobs",
        "/jobs/s",
        "/jobs/s/edit",
        "/api/jobs",
        "/api/jobs/s",
        "/audit",
        "/api/audit",
        "/api/status",
    ] {
        let r = get(&web, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.body.contains("hunter2"), "{path} shows the secret");
    }
}

#[test]
fn oversized_and_malformed_requests_are_refused() {
    let env = Env::new();
    env.create_db();
    let web = start(&env, &[]);
    let long = format!("X-Filler: {}", "a".repeat(20 * 1024));
    assert_eq!(request(&web.addr, "GET", "/", &[long], "").status, 431);
    let many: Vec<String> = (0..200).map(|i| format!("X-{i}: 1")).collect();
    assert_eq!(request(&web.addr, "GET", "/", &many, "").status, 431);
    let body = "a".repeat(100 * 1024);
    assert_eq!(request(&web.addr, "POST", "/login", &[], &body).status, 413);
    assert_eq!(
        request(
            &web.addr,
            "POST",
            "/login",
            &["Transfer-Encoding: chunked".into()],
            ""
        )
        .status,
        411
    );
    // The server is still there.
    assert_eq!(get(&web, "/api/jobs").status, 200);
}

#[test]
fn a_non_loopback_address_needs_tls_or_the_explicit_flag() {
    let env = Env::new();
    env.create_db();
    let out = web_cmd(&env, &["--listen", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without TLS") && err.contains("--insecure-listen"),
        "{err}"
    );
    // No login configured at all: refused too, before listening.
    let mut c = web_cmd(&env, &[]);
    c.env_remove("CRONMGR_WEB_TOKEN");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no way to log in"));
    let web = start(&env, &["--listen", "0.0.0.0:0", "--insecure-listen"]);
    let port = web.addr.rsplit(':').next().unwrap();
    assert_eq!(
        request(
            &format!("127.0.0.1:{port}"),
            "GET",
            "/api/jobs",
            &bearer(),
            ""
        )
        .status,
        200
    );
}

#[test]
fn run_now_from_the_page_records_a_manual_run_and_the_web_user() {
    let env = Env::new();
    add_echo(&env, "j", &[]);
    let web = start(&env, &["--allow-actions"]);
    let r = request(&web.addr, "POST", "/jobs/j/run", &bearer(), "");
    assert_eq!(r.status, 303, "{}", r.body);
    let run = env
        .wait_for(Duration::from_secs(30), || {
            env.history("j")
                .into_iter()
                .find(|e| e["status"] == "success")
        })
        .expect("the run finished");
    assert_eq!(run["triggered_by"], "manual");
    // One row, in the web user's name, as `cronmgr run-now` from a shell writes one.
    let rows = audit_rows(&env, "run-now");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["user"], "web-token", "{rows:?}");
    assert_eq!(rows[0]["target"], "j");
    let e = get(&web, &format!("/api/executions/{}", run["id"]));
    assert_eq!(e.json()["output"], "hi\n");
}

#[test]
fn the_hidden_audited_flag_needs_the_web_users_row() {
    let env = Env::new();
    add_echo(&env, "j", &[]);
    // No dashboard row to stand for this run: refused, nothing run, nothing recorded.
    let before = env.dump();
    let err = env.fails(2, &["run-now", "--audited", "1", "j"]);
    assert!(
        err.contains("no recent run-now of j by a web user"),
        "{err}"
    );
    assert_eq!(env.dump(), before);
    // A shell's own run-now row does not stand in either.
    env.ok(&["run-now", "j"]);
    let id = audit_rows(&env, "run-now")[0]["id"].as_i64().unwrap();
    env.fails(2, &["run-now", "--audited", &id.to_string(), "j"]);
    assert_eq!(env.history("j").len(), 1);
}

#[test]
fn a_running_execution_streams_its_output_as_server_sent_events() {
    let env = Env::new();
    env.ok(&[
        "add",
        "slow",
        "--schedule",
        "0 3 * * *",
        "--",
        "/usr/bin/sh",
        "-c",
        "echo one; sleep 1; echo two; sleep 1; echo three",
    ]);
    let web = start(&env, &[]);
    let mut runner = env.cmd();
    runner
        .args(["run-now", "slow"])
        .timeout(Duration::from_secs(60));
    let handle = std::thread::spawn(move || runner.output());
    let id = env
        .wait_for(Duration::from_secs(20), || {
            env.history("slow")
                .into_iter()
                .find(|e| e["status"] == "running")
                .map(|e| e["id"].clone())
        })
        .expect("it started");
    let mut s = TcpStream::connect(&web.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /executions/{id}/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("text/event-stream"), "{text}");
    for line in [
        "data: one",
        "data: two",
        "data: three",
        "event: end\ndata: success",
    ] {
        assert!(text.contains(line), "{line:?} missing from {text}");
    }
    let _ = handle.join();
}

/// A self-signed certificate for localhost and 127.0.0.1 (EC P-256, valid until 2126), made with
/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
/// -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext
/// basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=serverAuth`. Only for this test.
const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBrTCCAVSgAwIBAgIUeQqnbhkRxWCEVSQeNYeMVtJw0sYwCgYIKoZIzj0EAwIw\nFDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNDE5MDMxOFoYDzIxMjYxMTEw\nMTkwMzE4WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO\nPQMBBwNCAARMX/Eb/WcwloTQC3euWB1qnbDUMd6JEdM7cqpqcyCuobLhJporrLFF\nBttoiDuwB5Eth1GKdC0h3nEIKrkyHCCSo4GBMH8wHQYDVR0OBBYEFFw5Y81fvbNq\nDuyjeIBJmV6Dmj8rMB8GA1UdIwQYMBaAFFw5Y81fvbNqDuyjeIBJmV6Dmj8rMBoG\nA1UdEQQTMBGCCWxvY2FsaG9zdIcEfwAAATAMBgNVHRMBAf8EAjAAMBMGA1UdJQQM\nMAoGCCsGAQUFBwMBMAoGCCqGSM49BAMCA0cAMEQCIBwNzph+Y3atPjx0HAUSAvvb\n4RPJAKcUoPcVqn1hDigkAiAG62btOtBiWz7/hhx+R4tgQ1gavj4dPjV+LKISph/I\n7A==\n-----END CERTIFICATE-----\n";
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgsIBdlG/AnAUMtuDN\nQnSbtnY9lOi547pRDghohu0yQ9ahRANCAARMX/Eb/WcwloTQC3euWB1qnbDUMd6J\nEdM7cqpqcyCuobLhJporrLFFBttoiDuwB5Eth1GKdC0h3nEIKrkyHCCS\n-----END PRIVATE KEY-----\n";

/// One request over TLS, trusting only [`TEST_CERT`].
fn tls_request(addr: &str, method: &str, path: &str, headers: &[String], body: &str) -> Reply {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    for h in headers {
        req.push_str(&format!("{h}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_reply(&raw)
}

#[test]
fn with_tls_any_address_is_allowed_and_the_session_cookie_is_secure() {
    let env = Env::new();
    add_echo(&env, "j", &[]);
    let hash = password_hash(&env);
    with_web_config(&env, &format!("password_hash = {hash:?}\n"));
    let cert = env.dir.path().join("cert.pem");
    let key = env.dir.path().join("key.pem");
    std::fs::write(&cert, TEST_CERT).unwrap();
    std::fs::write(&key, TEST_KEY).unwrap();
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let web = start(
        &env,
        &["--listen", "0.0.0.0:0", "--tls-cert", &c, "--tls-key", &k],
    );
    let port = web.addr.rsplit(':').next().unwrap().to_string();
    let addr = format!("127.0.0.1:{port}");
    let r = tls_request(
        &addr,
        "POST",
        "/login",
        &[],
        &form(&[("user", "web"), ("password", PASSWORD)]),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let page = tls_request(&addr, "GET", "/jobs/j", &[format!("Cookie: {session}")], "");
    assert_eq!(page.status, 200);
}

#[test]
fn kill_from_the_page_cancels_the_run_in_the_web_users_name() {
    let env = Env::new();
    env.ok(&[
        "add",
        "long",
        "--schedule",
        "0 3 * * *",
        "--",
        "/usr/bin/sleep",
        "30",
    ]);
    let web = start(&env, &["--allow-actions"]);
    let mut run = env.cmd();
    run.args(["run-now", "long"])
        .timeout(Duration::from_secs(60));
    let handle = std::thread::spawn(move || run.output());
    let id = env
        .wait_for(Duration::from_secs(20), || {
            env.history("long")
                .into_iter()
                .find(|e| e["status"] == "running" && !e["pid"].is_null())
                .map(|e| e["id"].clone())
        })
        .expect("it started");
    // The page offers the button; a read of the page does not kill anything.
    assert!(get(&web, &format!("/executions/{id}"))
        .body
        .contains("/kill"));
    let r = request(
        &web.addr,
        "POST",
        &format!("/executions/{id}/kill"),
        &bearer(),
        "",
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let _ = handle.join();
    let e = get(&web, &format!("/api/executions/{id}")).json();
    assert_eq!(e["status"], "cancelled", "{e}");
    assert_eq!(e["cancelled_by"], "web-token");
    assert!(audit_rows(&env, "kill")
        .iter()
        .any(|r| r["user"] == "web-token"));
    // Killing it again: it is not running.
    let again = request(
        &web.addr,
        "POST",
        &format!("/executions/{id}/kill"),
        &bearer(),
        "",
    );
    assert_eq!(again.status, 422, "{}", again.body);
}
