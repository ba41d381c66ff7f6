//! Jobs as files: apply, export, edit in an editor, the shipped jobs.d examples, import-crontab.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::harness::{Env, ALLOW};

fn write(env: &Env, rel: &str, text: &str) -> PathBuf {
    let path = env.dir.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `(name, action)` of every change an apply reports.
fn actions(v: &Value) -> Vec<(String, String)> {
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const A: &str = r#"
[[job]]
name = "hello"
description = "says hello"
schedule = "*/5 * * * *"
argv = ["/bin/echo", "hello"]
category = "demo"
priority = 3
timeout = "5m"

[[job]]
name = "stamp"
schedule = "@daily"
timezone = "Europe/Madrid"
argv = ["date", "+%s"]
retries = 2
retry_delay = 30
backoff = "exponential"

[job.params.env]
TZ = "UTC"
"#;

const B: &str = r#"
[[job]]
name = "nightly"
schedule = "0 3 * * *"
argv = ["/usr/bin/true"]
enabled = false
"#;

#[test]
fn apply_creates_updates_keeps_and_prunes() {
    let env = Env::new();
    env.create_db();
    let dir = env.dir.path().join("jobs.d");
    write(&env, "jobs.d/a.toml", A);
    let b = write(&env, "jobs.d/b.toml", B);
    write(&env, "jobs.d/notes.txt", "not a job file");

    // A dry run shows the plan and writes nothing.
    let plan = env.json(&["apply", s(&dir), "--dry-run"]);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        actions(&plan),
        pairs(&[
            ("hello", "created"),
            ("stamp", "created"),
            ("nightly", "created")
        ])
    );
    assert_eq!(env.json(&["list"]), json!([]));

    let out = env.json(&["apply", s(&dir)]);
    assert_eq!(out["summary"]["created"], 3);
    let hello = env.json(&["show", "hello"]);
    assert_eq!(hello["category"], "DEMO");
    assert_eq!(hello["priority"], 3);
    assert_eq!(hello["timeout"], 300);
    assert_eq!(hello["params"]["argv"], json!(["/bin/echo", "hello"]));
    let stamp = env.json(&["show", "stamp"]);
    assert_eq!(stamp["timezone"], "Europe/Madrid");
    assert_eq!(stamp["retry_delay"], 30);
    assert_eq!(stamp["backoff"], "exponential");
    assert_eq!(stamp["params"]["env"], json!({"TZ": "UTC"}));
    let nightly = env.json(&["show", "nightly"]);
    assert_eq!(nightly["is_active"], false);
    assert!(nightly["next_run_at"].is_null());

    // Applying again changes nothing at all: not even updated_at.
    env.ok(&["run-now", "hello"]);
    let before = env.dump();
    let again = env.json(&["apply", s(&dir)]);
    assert_eq!(again["summary"]["unchanged"], 3, "{again}");
    assert_eq!(env.dump(), before);

    // An edit updates in place: same id, created_at, last run and history; next run recomputed.
    let old = env.json(&["show", "hello"]);
    write(
        &env,
        "jobs.d/a.toml",
        &A.replace("priority = 3\ntimeout = \"5m\"\n", "priority = 2\n")
            .replace("*/5 * * * *", "*/10 * * * *"),
    );
    let out = env.json(&["apply", s(&dir)]);
    let hello_change = &out["changes"][0];
    assert_eq!(hello_change["action"], "updated");
    assert_eq!(
        hello_change["fields"],
        json!(["priority", "schedule", "timeout"])
    );
    assert!(hello_change["source"]
        .as_str()
        .unwrap()
        .ends_with("a.toml:2"));
    let new = env.json(&["show", "hello"]);
    assert_eq!(new["id"], old["id"]);
    assert_eq!(new["created_at"], old["created_at"]);
    assert_eq!(new["last_run_at"], old["last_run_at"]);
    assert!(
        new["timeout"].is_null(),
        "an omitted field takes its default"
    );
    assert_eq!(new["priority"], 2);
    assert_ne!(new["updated_at"], old["updated_at"]);
    assert_eq!(env.history("hello").len(), 1);

    // A job no file declares stays, listed, until --prune.
    std::fs::remove_file(&b).unwrap();
    let out = env.json(&["apply", s(&dir)]);
    assert_eq!(out["summary"]["not_in_any_file"], 1);
    assert_eq!(env.json(&["show", "nightly"])["name"], "nightly");
    let table = env.ok(&["apply", s(&dir)]);
    assert!(
        table.contains("not in any file") && table.contains("--prune"),
        "{table}"
    );
    let out = env.json(&["apply", s(&dir), "--prune", "--dry-run"]);
    assert_eq!(out["summary"]["removed"], 1);
    env.json(&["show", "nightly"]);
    let out = env.json(&["apply", s(&dir), "--prune"]);
    assert_eq!(out["summary"]["removed"], 1);
    env.fails(2, &["show", "nightly"]);

    // Other systems are not touched.
    env.ok(&[
        "--system",
        "other",
        "add",
        "x",
        "--schedule",
        "@daily",
        "--",
        "/bin/true",
    ]);
    env.json(&["apply", s(&dir), "--prune"]);
    assert_eq!(env.json(&["--system", "other", "show", "x"])["name"], "x");
}

#[test]
fn default_folder_comes_from_the_config() {
    let env = Env::new();
    let dir = env.dir.path().join("conf.d");
    write(&env, "conf.d/b.toml", B);
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, format!("jobs_dir = {:?}\n{config}", s(&dir))).unwrap();
    let out = env.json(&["apply"]);
    assert_eq!(actions(&out), pairs(&[("nightly", "created")]));
    // No file at all, and --prune: refused rather than removing everything.
    std::fs::remove_file(dir.join("b.toml")).unwrap();
    let err = env.fails(2, &["apply", "--prune"]);
    assert!(err.contains("refusing"), "{err}");
    env.json(&["show", "nightly"]);
}

#[test]
fn check_validates_without_a_database() {
    let env = Env::new();
    let a = write(&env, "a.toml", A);
    let db = env.dir.path().join("never.db");
    let out = env
        .cmd_with_db(&db)
        .args(["apply", "--check", s(&a)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 2 jobs in 1 file"));
    let bad = write(&env, "bad.toml", &A.replace("*/5 * * * *", "*/5 * * *"));
    let out = env
        .cmd_with_db(&db)
        .args(["apply", "--check", s(&bad)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!db.exists(), "--check must not create the database");
}

#[test]
fn invalid_files_change_nothing_and_name_file_and_line() {
    let env = Env::new();
    let good = write(&env, "good/a.toml", A);
    env.json(&["apply", s(&good)]);
    let before = env.dump();

    let bad_toml = write(
        &env,
        "bad/1-syntax.toml",
        "[[job]]\nname = \"x\"\nschedule = @daily\n",
    );
    let unknown = write(
        &env,
        "bad/2-unknown.toml",
        "# comment\n[[job]]\nname = \"y\"\nschedule = \"@daily\"\nargv = [\"/bin/true\"]\nprioity = 2\n",
    );
    let schedule = write(
        &env,
        "bad/3-schedule.toml",
        "[[job]]\nname = \"z\"\nschedule = \"0 25 * * *\"\nargv = [\"/bin/true\"]\n",
    );
    let not_allowed = write(
        &env,
        "bad/4-allow.toml",
        "\n\n[[job]]\nname = \"w\"\nschedule = \"@daily\"\nargv = [\"/usr/bin/id\"]\n",
    );
    // One valid file among them: still nothing is applied.
    write(&env, "bad/5-fine.toml", B);
    let err = env.fails(2, &["apply", s(bad_toml.parent().unwrap())]);
    for (file, line, needle) in [
        (&bad_toml, 3, "string"),
        (&unknown, 6, "unknown field `prioity`"),
        (&schedule, 1, "hour field"),
        (&not_allowed, 3, "not allowlisted"),
    ] {
        let prefix = format!("{}:{line}: ", file.display());
        let found = err.lines().find(|l| l.trim_start().starts_with(&prefix));
        let found = found.unwrap_or_else(|| panic!("no line starting {prefix:?} in {err}"));
        assert!(found.contains(needle), "{found}");
    }
    assert!(err.contains("4 problems"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(env.dump(), before);
}

#[test]
fn duplicate_names_across_files_are_refused() {
    let env = Env::new();
    let a = write(&env, "d/a.toml", B);
    let b = write(&env, "d/b.toml", &format!("# same name\n{B}"));
    let err = env.fails(2, &["apply", s(a.parent().unwrap())]);
    assert!(err.contains(&format!("{}:3", b.display())), "{err}");
    assert!(
        err.contains(&format!("already declared at {}:2", a.display())),
        "{err}"
    );
    assert_eq!(env.json(&["list"]), json!([]));
}

#[test]
fn export_then_apply_is_all_unchanged() {
    let env = Env::new();
    env.ok(&[
        "add",
        "backup",
        "--schedule",
        "0 3 * * *",
        "--category",
        "backup",
        "--priority",
        "2",
        "--timeout",
        "30m",
        "--retries",
        "2",
        "--retry-delay",
        "5m",
        "--backoff",
        "exponential",
        "--max-runtime",
        "2h",
        "--timezone",
        "America/New_York",
        "--catch-up",
        "latest",
        "--starting-deadline",
        "1h",
        "--description",
        "nightly \"dump\"\nwith a newline",
        "--param",
        "env={\"PGHOST\":\"db\",\"N\":\"1\"}",
        "--param",
        "cwd=/tmp",
        "--",
        "/bin/echo",
        "it's",
        "a \"quoted\" arg",
    ]);
    env.ok(&[
        "add",
        "zero-delay",
        "--schedule",
        "*/10 * * * * *",
        "--retry-delay",
        "0",
        "--allow-concurrent",
        "--disabled",
        "--",
        "/bin/true",
    ]);
    env.ok(&["add", "plain", "--schedule", "@reboot", "--", "/bin/true"]);
    let text = env.ok(&["export"]);
    assert!(text.contains("[[job]]"), "{text}");
    assert!(
        !text.contains("priority = 5"),
        "defaults are left out: {text}"
    );
    let file = write(&env, "export.toml", &text);
    let before = env.dump();
    let out = env.json(&["apply", s(&file)]);
    assert_eq!(out["summary"]["unchanged"], 3, "{out}\n{text}");
    assert_eq!(env.dump(), before);

    // Named jobs only; an unknown name is an error.
    let one = env.ok(&["export", "plain"]);
    assert_eq!(one.matches("[[job]]").count(), 1);
    env.fails(2, &["export", "ghost"]);
}

fn editor_script(env: &Env, name: &str, body: &str) -> PathBuf {
    let path = write(env, name, &format!("#!/bin/sh\n{body}\n"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn edit_opens_the_job_in_the_editor() {
    let env = Env::new();
    env.ok(&[
        "add",
        "report",
        "--schedule",
        "0 9 * * 1",
        "--priority",
        "5",
        "--",
        "/bin/echo",
        "hi",
    ]);
    let old = env.json(&["show", "report"]);

    // Saved with a change: applied.
    let raise = editor_script(
        &env,
        "raise.sh",
        r#"sed -i 's/^schedule = .*/&\npriority = 2/' "$1""#,
    );
    let out = env
        .cmd()
        .env("EDITOR", format!("{} ", raise.display()))
        .args(["edit", "report"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("priority"));
    let new = env.json(&["show", "report"]);
    assert_eq!(new["priority"], 2);
    assert_eq!(new["id"], old["id"]);

    // VISUAL wins over EDITOR, and a rename in the file renames the job.
    let rename = editor_script(
        &env,
        "rename.sh",
        r#"sed -i 's/^name = "report"/name = "weekly-report"/' "$1""#,
    );
    env.cmd()
        .env("EDITOR", "/bin/false")
        .env("VISUAL", &rename)
        .args(["edit", "report"])
        .assert()
        .success();
    assert_eq!(env.json(&["show", "weekly-report"])["id"], old["id"]);
    env.fails(2, &["show", "report"]);

    // Saved unchanged, or emptied: nothing happens, exit 0.
    let before = env.dump();
    for script in ["true", ": > \"$1\""] {
        let ed = editor_script(&env, "noop.sh", script);
        let out = env
            .cmd()
            .env("EDITOR", &ed)
            .args(["edit", "weekly-report"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("nothing changed"));
    }
    assert_eq!(env.dump(), before);

    // An invalid edit with no terminal to ask on: exit 2, the problem named, nothing changed.
    let bad = editor_script(
        &env,
        "bad.sh",
        r#"sed -i 's/^schedule = .*/schedule = "0 9 * *"/' "$1""#,
    );
    let out = env
        .cmd()
        .env("EDITOR", &bad)
        .args(["edit", "weekly-report"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid schedule") && err.contains(".toml:"),
        "{err}"
    );
    assert_eq!(env.dump(), before);

    // A failing editor changes nothing.
    env.cmd()
        .env("EDITOR", "false")
        .args(["edit", "weekly-report"])
        .assert()
        .failure();
    assert_eq!(env.dump(), before);
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn shipped_examples_are_valid() {
    let env = Env::new();
    // The sqlite example's database must exist to be checked: a stand-in, at its path's place.
    let app_db = env.dir.path().join("app.db");
    rusqlite::Connection::open(&app_db)
        .unwrap()
        .execute_batch("CREATE TABLE sessions (id INTEGER PRIMARY KEY, expires_at INTEGER);")
        .unwrap();
    let stand_in = |text: &str| text.replace("/var/lib/app/app.db", s(&app_db));
    let config = env.dir.path().join("example-config.toml");
    let example = std::fs::read_to_string(repo("packaging/config.toml")).unwrap();
    std::fs::write(&config, stand_in(&example)).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("jobs.d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let jobs = cronmgr::jobfile::parse(s(file), &text).unwrap();
        assert!(!jobs.is_empty(), "{}", file.display());
        for j in &jobs {
            let spec = &j.spec;
            assert!(
                spec.description.is_some() && spec.category.is_some() && spec.priority.is_some(),
                "{}: every example has a description, category and priority",
                j.source()
            );
        }
        let checked = env.dir.path().join(file.file_name().unwrap());
        std::fs::write(&checked, stand_in(&text)).unwrap();
        let out = env
            .cmd()
            .args(["--config", s(&config), "apply", "--check", s(&checked)])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {err}", file.display());
    }
    // The set the tool was designed around, each with its own executor.
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for executor in [
        "cleanup",
        "http",
        "sqlite",
        "backup",
        "report",
        "healthcheck",
    ] {
        assert!(
            all.contains(&format!("command = \"{executor}\"")),
            "no {executor} example"
        );
    }
}

/// A realistic user crontab: 20 lines.
const CRONTAB: &str = r#"# Edit this file to introduce tasks to be run by cron.
#
SHELL=/bin/sh
PATH=/usr/local/bin:/usr/bin:/bin
MAILTO=ops@example.com
CRON_TZ=Europe/Madrid
APP_ENV=production

# m h  dom mon dow   command
0 3 * * * /usr/bin/echo nightly backup
*/5 * * * * echo sync
@hourly date +\%Y-\%m-\%dT\%H
@daily cd /tmp && /usr/bin/true
15 4 * * 1 printf '\%s\n' report | /usr/bin/true
0 9 * * mon-fri cat%Dear team,%the report is ready%
@reboot nice -n 10 /usr/bin/sleep 1
30 2 1 * * echo monthly >> /dev/null 2>&1
CRON_TZ=UTC
0 0 * * 0 /usr/bin/false
@weekly ionice -c3 /usr/bin/echo weekly
"#;

fn import_env() -> Env {
    let mut allow = ALLOW.to_vec();
    allow.extend(["/usr/bin/nice", "/usr/bin/ionice", "/usr/bin/cat"]);
    Env::with_allow(&allow)
}

#[test]
fn import_a_user_crontab() {
    assert_eq!(CRONTAB.lines().count(), 20);
    let env = import_env();
    env.create_db();
    let tab = write(&env, "crontab", CRONTAB);

    // The dry run shows the jobs and the job file, and writes nothing.
    let dry = env.ok(&["import-crontab", s(&tab), "--dry-run"]);
    assert!(
        dry.contains("[[job]]") && dry.contains("alert_email = \"ops@example.com\""),
        "{dry}"
    );
    // The shell is allowlisted (else the import would be refused): no note that it must be.
    assert!(!dry.contains("must be allowlisted"), "{dry}");
    assert!(dry.contains("-c (allowlisted)"), "{dry}");
    assert_eq!(env.json(&["list"]), json!([]));

    let out = env.json(&["import-crontab", s(&tab)]);
    let jobs = out["jobs"].as_array().unwrap();
    let got: Vec<(u64, &str, &str, &str)> = jobs
        .iter()
        .map(|j| {
            (
                j["line"].as_u64().unwrap(),
                j["name"].as_str().unwrap(),
                j["schedule"].as_str().unwrap(),
                j["timezone"].as_str().unwrap(),
            )
        })
        .collect();
    let madrid = "Europe/Madrid";
    assert_eq!(
        got,
        [
            (10, "echo", "0 3 * * *", madrid),
            (11, "echo-2", "*/5 * * * *", madrid),
            (12, "date", "@hourly", madrid),
            (13, "true", "@daily", madrid),
            (14, "printf", "15 4 * * 1", madrid),
            (15, "cat", "0 9 * * mon-fri", madrid),
            (16, "sleep", "@reboot", madrid),
            (17, "echo-3", "30 2 1 * *", madrid),
            (19, "false", "0 0 * * 0", "UTC"),
            (20, "echo-4", "@weekly", "UTC"),
        ]
    );
    let show = |name: &str| env.json(&["show", name]);
    let echo = show("echo");
    assert_eq!(
        echo["params"]["argv"],
        json!(["/usr/bin/echo", "nightly", "backup"])
    );
    assert_eq!(
        echo["params"]["env"],
        json!({"PATH": "/usr/local/bin:/usr/bin:/bin", "APP_ENV": "production"})
    );
    assert_eq!(echo["timezone"], madrid);
    assert_eq!(show("echo-2")["params"]["argv"], json!(["echo", "sync"]));
    assert_eq!(
        show("date")["params"]["argv"],
        json!(["date", "+%Y-%m-%dT%H"])
    );
    assert_eq!(
        show("true")["params"]["argv"],
        json!(["/bin/sh", "-c", "cd /tmp && /usr/bin/true"])
    );
    assert_eq!(
        show("printf")["params"]["argv"],
        json!(["/bin/sh", "-c", "printf '%s\\n' report | /usr/bin/true"])
    );
    assert_eq!(
        show("sleep")["params"]["argv"],
        json!(["nice", "-n", "10", "/usr/bin/sleep", "1"])
    );
    assert_eq!(
        show("echo-4")["params"]["argv"],
        json!(["ionice", "-c3", "/usr/bin/echo", "weekly"])
    );
    // MAILTO is carried over: each job's alert_email.
    assert_eq!(out["not_carried_over"], json!([]));
    assert_eq!(echo["alert_email"], "ops@example.com");

    // `%` input reaches the command as cron would feed it.
    let run = env.ok(&["run-now", "cat"]);
    assert!(run.contains("Dear team,\nthe report is ready"), "{run}");
    let run = env.ok(&["run-now", "date"]);
    assert!(run.trim().len() >= 13 && !run.contains('%'), "{run}");

    // The export of the imported jobs applies as all unchanged.
    let file = write(&env, "export.toml", &env.ok(&["export"]));
    let before = env.dump();
    let out = env.json(&["apply", s(&file)]);
    assert_eq!(out["summary"]["unchanged"], 10, "{out}");
    assert_eq!(env.dump(), before);

    // Importing again does not clash: new names.
    let again = env.json(&["import-crontab", s(&tab), "--dry-run"]);
    assert_eq!(again["jobs"][0]["name"], "echo-5");
}

#[test]
fn import_a_system_crontab_with_its_user_column() {
    let env = import_env();
    let me = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let me = String::from_utf8_lossy(&me.stdout).trim().to_string();
    let other = if me == "nobody" { "daemon" } else { "nobody" };
    let tab = write(
        &env,
        "system-crontab",
        &format!(
            "SHELL=/bin/bash\n17 * * * * {me} cd / && /usr/bin/true\n25 6 * * * {other} /usr/bin/date\n"
        ),
    );
    let out = env.json(&["import-crontab", "--user-column", s(&tab)]);
    let jobs = out["jobs"].as_array().unwrap();
    assert_eq!(
        jobs[0]["argv"],
        json!(["/bin/bash", "-c", "cd / && /usr/bin/true"])
    );
    assert_eq!(jobs[1]["argv"], json!(["/usr/bin/date"]));
    let notes = out["not_carried_over"].as_array().unwrap();
    if me == "root" {
        // Root carries the user column over: the job runs as that user.
        assert!(notes.is_empty(), "{notes:?}");
        let job = env.json(&["show", "date"]);
        assert_eq!(job["run_user"], other, "{job}");
    } else {
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0]["line"], 3);
        assert!(notes[0]["text"]
            .as_str()
            .unwrap()
            .contains("only root can run jobs as another user"));
    }
    // Stdin works too.
    let out = env
        .cmd()
        .args(["--json", "import-crontab", "-", "--dry-run"])
        .write_stdin("@daily /usr/bin/true\n")
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["jobs"][0]["name"], "true-2");
}

#[test]
fn import_is_all_or_nothing() {
    let env = import_env();
    let tab = write(
        &env,
        "crontab",
        "0 3 * * * /usr/bin/echo fine\n61 * * * * /usr/bin/true\n@daily /usr/bin/id\n0 0 * *\nCRON_TZ=Mars/Base\n@daily /usr/bin/true\n",
    );
    let err = env.fails(2, &["import-crontab", s(&tab)]);
    for line in [2, 3, 4, 6] {
        assert!(
            err.contains(&format!("{}:{line}: ", tab.display())),
            "line {line}: {err}"
        );
    }
    assert!(err.contains("not allowlisted"), "{err}");
    assert_eq!(env.json(&["list"]), json!([]));
}

#[test]
fn alert_settings_round_trip_through_export_and_apply() {
    let env = Env::new();
    env.ok(&[
        "add",
        "watched",
        "--schedule",
        "@daily",
        "--alert-email",
        "ops@example.com",
        "--disable-after",
        "3",
        "--escalate-after",
        "2",
        "--max-silence",
        "26h",
        "--",
        "/bin/true",
    ]);
    env.ok(&[
        "add",
        "quiet",
        "--schedule",
        "@daily",
        "--no-alerts",
        "--",
        "/bin/true",
    ]);
    let exported = env.ok(&["export"]);
    assert!(
        exported.contains("max_silence = \"1d2h\"") || exported.contains("max_silence"),
        "{exported}"
    );
    assert!(exported.contains("alerts = false"), "{exported}");
    let file = env.dir.path().join("export.toml");
    std::fs::write(&file, &exported).unwrap();
    let before = env.dump();
    let plan = env.json(&["apply", file.to_str().unwrap()]);
    assert_eq!(plan["summary"]["unchanged"], 2, "{plan}");
    assert_eq!(env.dump(), before);
    let w = env.json(&["show", "watched"]);
    assert_eq!(w["alert_email"], "ops@example.com");
    assert_eq!(w["disable_after"], 3);
    assert_eq!(w["max_silence"], 93600);
    // A bad value in a file is refused with the file and line.
    std::fs::write(&file, "[[job]]\nname = \"x\"\nschedule = \"@daily\"\nargv = [\"/bin/true\"]\nalert_email = \"nope\"\n").unwrap();
    let err = env.fails(2, &["apply", file.to_str().unwrap()]);
    assert!(
        err.contains("export.toml") && err.contains("alert_email"),
        "{err}"
    );
}
