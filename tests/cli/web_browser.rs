//! The dashboard in a real headless Chromium, driven over the DevTools protocol: log in, every
//! page (with a screenshot of each, checked not to be blank), live output arriving in the DOM,
//! the editor refusing and then accepting a schedule, run-now from the job page.

use std::time::Duration;

use serde_json::Value;

use crate::browser::{self, Browser};
use crate::harness::{self, Env};
use crate::web::{audit_rows, password_hash, start, with_web_config, PASSWORD};

fn text_of(b: &mut Browser) -> String {
    b.eval("document.body.textContent")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn expect_text(b: &mut Browser, page: &str, words: &[&str]) {
    let text = text_of(b);
    for w in words {
        assert!(text.contains(w), "{page}: {w:?} not on the page:\n{text}");
    }
}

fn count(b: &mut Browser, selector: &str) -> u64 {
    b.eval(&format!(
        "document.querySelectorAll({}).length",
        serde_json::json!(selector)
    ))
    .as_u64()
    .unwrap()
}

#[test]
fn a_browser_drives_every_page_and_flow_of_the_dashboard() {
    let Some(chromium) = browser::chromium() else {
        return harness::skip("no chromium (apt-get install chromium; .ci/run installs it)");
    };
    let env = Env::new();
    env.ok(&[
        "add",
        "nightly-backup",
        "--schedule",
        "0 3 * * *",
        "--category",
        "BACKUP",
        "--timeout",
        "5s",
        "--description",
        "Dump the app database",
        "--",
        "/usr/bin/sh",
        "-c",
        "echo dumping; sleep 0.2; echo done",
    ]);
    env.ok(&[
        "add",
        "failing",
        "--schedule",
        "*/15 * * * *",
        "--priority",
        "2",
        "--",
        "/usr/bin/false",
    ]);
    env.ok(&[
        "add",
        "heartbeat",
        "--schedule",
        "*/5 * * * *",
        "--priority",
        "8",
        "--",
        "/usr/bin/true",
    ]);
    // Writes one line, then a second only once the test says the page is loaded.
    let go = env.dir.path().join("go");
    env.ok(&[
        "add",
        "live",
        "--schedule",
        "0 4 * * *",
        "--timeout",
        "60s",
        "--",
        "/usr/bin/sh",
        "-c",
        &format!(
            "echo before-the-page; while [ ! -e '{}' ]; do sleep 0.05; done; echo after-the-page-loaded",
            go.display()
        ),
    ]);
    for _ in 0..3 {
        env.cmd()
            .args(["run-now", "nightly-backup"])
            .assert()
            .success();
    }
    env.cmd().args(["run-now", "failing"]).assert().code(3);
    let hash = password_hash(&env);
    with_web_config(&env, &format!("password_hash = {hash:?}\n"));
    let web = start(&env, &["--allow-actions"]);
    let base = format!("http://{}", web.addr);
    let shots = browser::screenshot_dir();
    let mut b = Browser::launch(chromium, 1400);
    let shot = |b: &mut Browser, name: &str| {
        let png = shots.join(format!("{name}.png"));
        b.screenshot(&png);
        eprintln!("screenshot: {}", png.display());
    };

    // No session: the login form; the password gives one.
    b.goto(&format!("{base}/"));
    assert!(b.path().starts_with("/login"), "{}", b.path());
    shot(&mut b, "login");
    b.fill("input[name=password]", PASSWORD);
    b.submit("document.querySelector('form button').click()");
    assert_eq!(b.path(), "/");

    // The overview, the job list, the job page with its charts.
    expect_text(
        &mut b,
        "overview",
        &["Due in the next hour", "Last executions", "nightly-backup"],
    );
    shot(&mut b, "overview");
    b.goto(&format!("{base}/jobs"));
    expect_text(
        &mut b,
        "jobs",
        &["nightly-backup", "failing", "heartbeat", "live", "BACKUP"],
    );
    shot(&mut b, "jobs");
    b.goto(&format!("{base}/jobs/nightly-backup"));
    expect_text(
        &mut b,
        "job",
        &["At 03:00", "Duration per run", "Recent executions"],
    );
    assert!(count(&mut b, "svg") >= 2, "the job page's charts");
    assert!(count(&mut b, "svg .bar.success") >= 3, "a bar per run");
    let width = b.eval("document.querySelector('svg').getBoundingClientRect().width");
    assert!(
        width.as_f64().unwrap() > 200.0,
        "the chart is drawn: {width}"
    );
    shot(&mut b, "job");
    for (name, path, words) in [
        (
            "timeline",
            "/timeline",
            &["nightly-backup", "heartbeat"][..],
        ),
        ("alerts", "/alerts", &["Alerts"][..]),
        ("audit", "/audit", &["Audit", "add"][..]),
        ("settings", "/settings", &["Settings", "timezone"][..]),
        ("runners", "/runners", &["Runners"][..]),
    ] {
        b.goto(&format!("{base}{path}"));
        expect_text(&mut b, name, words);
        assert!(count(&mut b, "nav a") >= 5, "{name}: the navigation");
        shot(&mut b, name);
    }

    // Run now from the job page; its execution page shows lines written after it loaded.
    b.goto(&format!("{base}/jobs/live"));
    b.submit("document.querySelector('form[action$=\"/run\"] button').click()");
    assert_eq!(b.path(), "/jobs/live");
    let id = env
        .wait_for(Duration::from_secs(20), || {
            env.history("live")
                .into_iter()
                .find(|e| e["status"] == "running")
                .map(|e| e["id"].clone())
        })
        .expect("the run started");
    b.goto(&format!("{base}/executions/{id}"));
    let output = "document.getElementById('output').textContent";
    b.wait_until(
        &format!("{output}.includes('before-the-page')"),
        Duration::from_secs(10),
    );
    assert_eq!(
        b.eval(&format!("{output}.includes('after-the-page-loaded')")),
        false
    );
    assert_eq!(
        b.eval("document.getElementById('live-state').textContent"),
        "live"
    );
    shot(&mut b, "execution-live");
    std::fs::write(&go, "").unwrap();
    b.wait_until(
        &format!("{output}.includes('after-the-page-loaded')"),
        Duration::from_secs(20),
    );
    b.wait_until(
        "document.getElementById('live-state').textContent === 'success'",
        Duration::from_secs(20),
    );
    shot(&mut b, "execution");
    let run = env.history("live");
    assert_eq!(run.len(), 1);
    assert_eq!(run[0]["triggered_by"], "manual");
    assert_eq!(run[0]["status"], "success");
    let rows: Vec<Value> = audit_rows(&env, "run-now")
        .into_iter()
        .filter(|r| r["target"] == "live")
        .collect();
    assert_eq!(rows.len(), 1, "one audit row for one run-now: {rows:?}");
    assert_eq!(rows[0]["user"], "web:web");
    assert_eq!(rows[0]["target"], "live");

    // The editor: `61 * * * *` refused as you type and on save, next to the field.
    b.goto(&format!("{base}/jobs/new"));
    b.fill("input[name=name]", "made-in-browser");
    b.fill("textarea[name=argv]", "/usr/bin/echo\nhello");
    b.fill("input[name=schedule]", "61 * * * *");
    b.wait_until(
        "(e => e.className === 'error' && e.textContent.includes('61'))(document.getElementById('schedule-help'))",
        Duration::from_secs(10),
    );
    shot(&mut b, "editor-typing");
    let before = env.dump();
    b.submit("document.querySelector('form.editor button.primary').click()");
    let next_to_field = b.eval(
        "(() => { const l = document.querySelector('input[name=schedule]').closest('label'); \
         const e = l.querySelector('.error'); return l.classList.contains('bad') && e ? e.textContent : ''; })()",
    );
    assert!(
        next_to_field.as_str().unwrap_or("").contains("61"),
        "no error next to the schedule (HTTP {}, {}): {}",
        b.eval("performance.getEntriesByType('navigation')[0].responseStatus"),
        b.path(),
        b.html()
    );
    assert_eq!(env.dump(), before, "a refused form changed the database");
    shot(&mut b, "editor-refused");
    // A valid one: its description and next fire times appear, and the save creates the job.
    b.fill("input[name=schedule]", "*/10 * * * *");
    b.wait_until(
        "document.getElementById('schedule-help').className === 'hint' && \
         document.querySelectorAll('#schedule-next li').length >= 5",
        Duration::from_secs(10),
    );
    expect_text(&mut b, "editor", &["10 minutes"]);
    shot(&mut b, "editor");
    b.submit("document.querySelector('form.editor button.primary').click()");
    assert_eq!(b.path(), "/jobs/made-in-browser");
    let listed = env.json(&["list"]);
    let job = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "made-in-browser")
        .unwrap_or_else(|| panic!("not in `cronmgr list`: {listed}"));
    assert_eq!(job["schedule"], "*/10 * * * *");
    let added = audit_rows(&env, "add");
    assert!(
        added
            .iter()
            .any(|r| r["target"] == "made-in-browser" && r["user"] == "web:web"),
        "{added:?}"
    );
}
