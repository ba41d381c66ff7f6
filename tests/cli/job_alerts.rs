//! A job's own Slack and webhook targets: its alerts go there instead of the system's, other
//! jobs' alerts do not, and the URLs (secrets) are never shown in full.

use std::time::Duration;

use serde_json::Value;

use crate::alerts::{alerts, all_sent, http_server};
use crate::harness::{stop, Env};

const JOB_SLACK_SECRET: &str = "T0JOB/B0JOB/jobslacksecret";
const JOB_HOOK_SECRET: &str = "jobhooksecret";

fn add_failing(env: &Env, name: &str, extra: &[&str]) {
    let mut args = vec![
        "add",
        name,
        "--schedule",
        "* * * * * *",
        "--disable-after",
        "1",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/sh", "-c", "echo boom; exit 3"]);
    env.ok(&args);
}

/// The job an HTTP alert was about: the webhook's `job`, or the Slack text naming it.
fn about(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if let Some(job) = v["job"].as_str() {
        return job.to_string();
    }
    let text = v.to_string();
    ["own", "plain"]
        .iter()
        .find(|j| text.contains(&format!("*{j}*")) || text.contains(&format!("\"{j}\"")))
        .map(|j| j.to_string())
        .unwrap_or_else(|| text)
}

#[test]
fn a_jobs_own_slack_and_webhook_get_its_alerts_instead_of_the_systems() {
    let env = Env::new();
    env.ignore_host_disk();
    let http = http_server();
    let base = format!("http://127.0.0.1:{}", http.port);
    env.ok(&[
        "settings",
        "set",
        "slack_webhook",
        &format!("{base}/system-slack/x"),
    ]);
    env.ok(&[
        "settings",
        "set",
        "webhook_url",
        &format!("{base}/system-hook/x"),
    ]);
    let job_slack = format!("{base}/job-slack/{JOB_SLACK_SECRET}");
    let job_hook = format!("{base}/job-hook/{JOB_HOOK_SECRET}");
    add_failing(
        &env,
        "own",
        &["--alert-slack", &job_slack, "--alert-webhook", &job_hook],
    );
    add_failing(&env, "plain", &[]);

    let mut runner = env.spawn_runner(&[]);
    let fired = env.wait_for(Duration::from_secs(40), || {
        let a = alerts(&env);
        let done = |job: &str| a.iter().any(|a| a["job"] == job && all_sent(a));
        (done("own") && done("plain") && a.iter().all(all_sent)).then_some(a)
    });
    stop(&mut runner);
    let fired = fired.unwrap_or_else(|| panic!("no alerts sent; log:\n{}", env.runner_log()));

    let reqs = http.seen();
    let to = |prefix: &str| -> Vec<String> {
        reqs.iter()
            .filter(|r| r.path.starts_with(prefix))
            .map(|r| about(&r.body))
            .collect()
    };
    let (job_slack_got, job_hook_got) = (to("/job-slack/"), to("/job-hook/"));
    let (sys_slack_got, sys_hook_got) = (to("/system-slack/"), to("/system-hook/"));
    // Every alert of `own` went to its own targets, and only there.
    let own_alerts = fired.iter().filter(|a| a["job"] == "own").count();
    assert!(own_alerts >= 1, "{fired:?}");
    assert_eq!(job_slack_got.len(), own_alerts, "{reqs:?}");
    assert_eq!(job_hook_got.len(), own_alerts, "{reqs:?}");
    assert!(
        job_slack_got
            .iter()
            .chain(&job_hook_got)
            .all(|j| j == "own"),
        "{reqs:?}"
    );
    // `plain` has none of its own: the system's targets, which never saw `own`.
    assert!(
        !sys_hook_got.is_empty() && !sys_slack_got.is_empty(),
        "{reqs:?}"
    );
    assert!(
        sys_slack_got
            .iter()
            .chain(&sys_hook_got)
            .all(|j| j == "plain"),
        "{reqs:?}"
    );
    // The deliveries name the job's URL redacted.
    let own = fired.iter().find(|a| a["job"] == "own").unwrap();
    let targets = own["deliveries"].to_string();
    assert!(targets.contains("127.0.0.1"), "{targets}");

    // Nothing shows the job's URLs in full.
    let mut all = env.runner_log();
    for args in [
        vec!["show", "own"],
        vec!["--json", "show", "own"],
        vec!["--json", "list"],
        vec!["export"],
        vec!["audit"],
        vec!["--json", "audit"],
        vec!["--json", "alerts"],
    ] {
        let out = env.cmd().args(&args).output().unwrap();
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        all.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    for secret in [JOB_SLACK_SECRET, JOB_HOOK_SECRET, "jobslacksecret"] {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
    let shown = env.ok(&["show", "own"]);
    assert!(
        shown.contains("slack http://127.0.0.1") && shown.contains("webhook http://127.0.0.1"),
        "{shown}"
    );
    assert!(!shown.contains("(system)"), "{shown}");
    let plain = env.ok(&["show", "plain"]);
    assert!(plain.contains("slack http://127.0.0.1:"), "{plain}");
    assert!(plain.contains("(system)"), "{plain}");
}

#[test]
fn job_targets_validate_clear_and_survive_export_and_apply() {
    let env = Env::new();
    let slack = format!("https://hooks.slack.com/services/{JOB_SLACK_SECRET}");
    env.create_db();
    let before = env.dump();
    for bad in [
        vec!["--alert-slack", "hooks.slack.com/services/x"],
        vec!["--alert-webhook", "ftp://example.com/x"],
        vec!["--alert-webhook", "https:///nohost"],
        vec!["--cpu-quota", "0"],
        vec!["--cpu-quota", "half"],
        vec!["--cpu-quota", "100001%"],
    ] {
        let mut args = vec!["add", "j", "--schedule", "@daily"];
        args.extend_from_slice(&bad);
        args.extend_from_slice(&["--", "/usr/bin/true"]);
        let err = env.fails(2, &args);
        assert!(err.contains(bad[0]), "{bad:?}: {err}");
    }
    assert_eq!(env.dump(), before, "a refused add changed the database");

    let job = env.json(&[
        "add",
        "j",
        "--schedule",
        "@daily",
        "--alert-slack",
        &slack,
        "--alert-webhook",
        "http://127.0.0.1:9/hook",
        "--cpu-quota",
        "0.25",
        "--",
        "/usr/bin/true",
    ]);
    assert_eq!(job["alert_slack"], "https://hooks.slack.com/…(redacted)");
    assert_eq!(job["alert_webhook"], "http://127.0.0.1:9/…(redacted)");
    assert_eq!(job["cpu_quota"], 25);

    // Export writes the keep marker; applying it back changes nothing and keeps the URLs.
    let file = env.dir.path().join("jobs.toml");
    let exported = env.ok(&["export"]);
    assert!(
        exported.contains("alert_slack = \"(stored)\""),
        "{exported}"
    );
    assert!(exported.contains("cpu_quota = \"25%\""), "{exported}");
    std::fs::write(&file, &exported).unwrap();
    let dumped = env.dump();
    let out = env.ok(&["apply", file.to_str().unwrap()]);
    assert!(out.contains("1 unchanged"), "{out}");
    assert_eq!(env.dump(), dumped);
    assert!(
        dumped.iter().any(|row| row.contains(JOB_SLACK_SECRET)),
        "the stored URL is the full one"
    );

    // A file giving a new URL and a quota in CPUs.
    std::fs::write(
        &file,
        "[[job]]\nname = \"j\"\nschedule = \"@daily\"\nargv = [\"/usr/bin/true\"]\n\
         alert_webhook = \"https://hooks.example.com/new\"\ncpu_quota = 2\n",
    )
    .unwrap();
    env.ok(&["apply", file.to_str().unwrap()]);
    let job = env.json(&["show", "j"]);
    assert_eq!(
        job["alert_slack"],
        Value::Null,
        "left out of a file: cleared"
    );
    assert_eq!(
        job["alert_webhook"],
        "https://hooks.example.com/…(redacted)"
    );
    assert_eq!(job["cpu_quota"], 200);
    // A keep marker with nothing stored, and a bad URL, are refused.
    for (body, needle) in [
        ("alert_slack = \"(stored)\"", "alert_slack"),
        ("alert_webhook = \"mailto:x\"", "alert_webhook"),
        ("cpu_quota = \"lots\"", "cpu_quota"),
    ] {
        std::fs::write(
            &file,
            format!("[[job]]\nname = \"j\"\nschedule = \"@daily\"\nargv = [\"/usr/bin/true\"]\n{body}\n"),
        )
        .unwrap();
        let before = env.dump();
        let err = env.fails(2, &["apply", file.to_str().unwrap()]);
        assert!(err.contains(needle), "{err}");
        assert_eq!(env.dump(), before);
    }

    // Edit clears with none.
    let job = env.json(&[
        "edit",
        "j",
        "--alert-webhook",
        "none",
        "--cpu-quota",
        "none",
    ]);
    assert_eq!(job["alert_webhook"], Value::Null);
    assert_eq!(job["cpu_quota"], Value::Null);
}
