//! Tables fit the terminal (issue #17): with `COLUMNS=80` no line of any listing is wider than
//! 80 characters or ends in a space; on a wide terminal long text uses the room; piped output
//! (no COLUMNS) is never cut. And every command answers `--json` with JSON.

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{self, Env, ALLOW};

/// 90 characters: longer than any terminal row has room for next to the other columns.
const LONG_NAME: &str =
    "nightly-customer-database-backup-for-the-eu-west-region-with-a-deliberately-long-job-name";

const LONG_DESCRIPTION: &str = "Sauvegarde nocturne de la base « clients » — 顧客データベース \
    — dumps every schema, compresses it, copies it off-site and verifies the copy byte for byte";

const LONG_CATEGORY: &str = "BACKUPS-AND-DISASTER-RECOVERY-FOR-THE-CUSTOMER-FACING-SERVICES";

/// The script a job runs, removed before it runs: the execution fails with a message that names
/// this long path.
const SCRIPT: &str =
    "a-helper-script-whose-name-is-long-enough-to-make-any-error-message-about-it-long.sh";

/// Run `cronmgr ARGS` at `columns` (None: piped, COLUMNS unset); stdout, after checking it ran.
fn at(env: &Env, columns: Option<usize>, args: &[&str]) -> String {
    let mut cmd = env.cmd();
    if let Some(c) = columns {
        cmd.env("COLUMNS", c.to_string());
    }
    let out = cmd.args(args).output().expect("run");
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "cronmgr {args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every line within `columns` characters (by char count) and none ending in a space.
fn assert_fits(args: &[&str], text: &str, columns: usize) {
    assert!(!text.trim().is_empty(), "cronmgr {args:?} printed nothing");
    for line in text.lines() {
        let n = line.chars().count();
        assert!(
            n <= columns,
            "cronmgr {args:?}: a line of {n} characters at COLUMNS={columns}:\n{line}\n\n{text}"
        );
        assert!(
            !line.ends_with(' '),
            "cronmgr {args:?}: a line ends in a space:\n{line:?}\n\n{text}"
        );
    }
}

/// A database full of long things: long job names, descriptions, categories, error messages,
/// alert summaries, audit rows; a runner row; a job that fails with a long message.
fn long_env() -> Env {
    let env = Env::new();
    let script = env.dir.path().join(SCRIPT);
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut allow: Vec<String> = ALLOW.iter().map(|p| format!("{p:?}")).collect();
    allow.push(format!("{:?}", script.to_str().unwrap()));
    std::fs::write(
        &env.config,
        format!(
            "[executors]\nenabled = [\"shell\"]\n[executors.shell]\nallow = [{}]\n",
            allow.join(", ")
        ),
    )
    .unwrap();
    env.ignore_host_disk();
    env.ok(&[
        "add",
        LONG_NAME,
        "--schedule",
        "* * * * * *",
        "--description",
        LONG_DESCRIPTION,
        "--category",
        LONG_CATEGORY,
        "--",
        "/usr/bin/false",
    ]);
    env.ok(&[
        "add",
        "report",
        "--schedule",
        "* * * * * *",
        "--description",
        "the weekly report",
        "--",
        script.to_str().unwrap(),
        "--with-a-long-argument-that-makes-the-command-long",
    ]);
    env.ok(&[
        "add",
        "quiet",
        "--schedule",
        "0 3 * * *",
        "--",
        "/usr/bin/true",
    ]);
    std::fs::remove_file(&script).unwrap();
    env.fails(3, &["run-now", LONG_NAME]);
    env.fails(3, &["run-now", "report"]);
    env.ok(&["run-now", "quiet"]);
    env.ok(&[
        "edit",
        LONG_NAME,
        "--description",
        &format!("{LONG_DESCRIPTION}, now also every Sunday's full snapshot"),
    ]);
    // The runner fires the every-second jobs once: failed executions, alerts about them
    // (their summaries carry the long name and message), and a runner row.
    std::thread::sleep(Duration::from_millis(1100));
    env.cmd().args(["run", "--once"]).assert().code(3);
    env.ok(&[
        "settings",
        "set",
        "alert_email",
        "oncall-team-with-a-long-address@operations.example.com",
    ]);
    let history = env.history("report");
    let message = history[0]["error_message"].as_str().unwrap_or_default();
    assert!(message.contains(SCRIPT), "{message}");
    env
}

/// Every command that prints a table or key/value pairs, as a user would run it.
fn listings(env: &Env) -> Vec<Vec<String>> {
    let jobs_file = env.dir.path().join("jobs.toml");
    std::fs::write(
        &jobs_file,
        format!(
            "[[job]]\nname = \"{}-from-a-file\"\ndescription = \"{LONG_DESCRIPTION}\"\n\
             schedule = \"0 4 * * *\"\ncommand = \"shell\"\n[job.params]\nargv = [\"/usr/bin/true\"]\n",
            &LONG_NAME[..80]
        ),
    )
    .unwrap();
    let copy = env
        .dir
        .path()
        .join(format!("copy-{}.db", std::process::id()));
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        s(&["list"]),
        s(&["list", "--all-systems"]),
        s(&["status"]),
        s(&["history"]),
        s(&["history", LONG_NAME]),
        s(&["stats"]),
        s(&["settings"]),
        s(&["alerts"]),
        s(&["audit"]),
        s(&["runners", "--all"]),
        s(&["next", "0 3 * * mon-fri", "-n", "3"]),
        s(&["show", LONG_NAME]),
        s(&["show", "report"]),
        s(&["apply", "--dry-run", "--prune", jobs_file.to_str().unwrap()]),
        s(&["migrate", "--to", copy.to_str().unwrap()]),
    ]
}

#[test]
fn every_listing_fits_80_columns_and_no_line_ends_in_a_space() {
    let env = long_env();
    for args in listings(&env) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = at(&env, Some(80), &args);
        assert_fits(&args, &text, 80);
    }
    // A crontab line whose command is long, imported (a table, then one line).
    let out = env
        .cmd()
        .env("COLUMNS", "80")
        .args(["import-crontab", "-"])
        .write_stdin(
            "30 2 * * * /usr/bin/echo rotating the application logs of every service on this \
             host and compressing whatever is older than a week\n",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_fits(
        &["import-crontab"],
        &String::from_utf8_lossy(&out.stdout),
        80,
    );

    // The long text is cut with an ellipsis, not dropped: the name still starts the row.
    let list = at(&env, Some(80), &["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("nightly-customer") && l.contains('…')),
        "{list}"
    );
    // Narrower still, no line is longer either.
    for args in [&["history"][..], &["list"], &["audit"], &["show", "report"]] {
        assert_fits(args, &at(&env, Some(40), args), 40);
    }
}

#[test]
fn a_wide_terminal_shows_history_messages_whole_and_a_pipe_cuts_nothing() {
    let env = long_env();
    let message = env.history("report")[0]["error_message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.chars().count() > 100, "{message}");

    // At 200 columns the message takes the space the other columns leave: more than 60.
    let wide = at(&env, Some(200), &["history"]);
    assert_fits(&["history"], &wide, 200);
    let row = wide
        .lines()
        .find(|l| l.contains("refused, not run"))
        .unwrap_or_else(|| panic!("no row of report's execution:\n{wide}"));
    let shown = &row[row.find("refused, not run").unwrap()..];
    assert!(
        shown.chars().count() > 60,
        "the message is cut at {} characters on a 200-column terminal:\n{wide}",
        shown.chars().count()
    );

    // Piped, with COLUMNS unset: nothing is cut, so grep sees the whole message and name.
    let piped = at(&env, None, &["history"]);
    assert!(piped.contains(&message), "{piped}");
    assert!(piped.contains(LONG_NAME), "{piped}");
    assert!(piped.lines().all(|l| !l.ends_with(' ')), "{piped:?}");
    let show = at(&env, None, &["show", LONG_NAME]);
    assert!(show.contains(LONG_CATEGORY), "{show}");
    // COLUMNS=0 or garbage is no width: nothing is cut (stdout is a pipe here).
    let garbage = env
        .cmd()
        .env("COLUMNS", "wide")
        .args(["history"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&garbage.stdout).contains(&message));
}

/// The command names `cronmgr --help` lists.
fn subcommands(env: &Env) -> Vec<String> {
    let help = env.ok(&["--help"]);
    let commands = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a Commands: section");
    // A command's line starts two spaces in; a wrapped description further in.
    commands
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .filter(|c| c != "help")
        .collect()
}

/// Run with `--json`; stdout parsed, or a panic that says what it printed.
fn json_of(env: &Env, args: &[&str], stdin: Option<&str>) -> Value {
    let mut cmd = env.cmd();
    cmd.arg("--json").args(args);
    if let Some(input) = stdin {
        cmd.write_stdin(input.to_string());
    }
    let out = cmd.output().expect("run");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cronmgr --json {args:?} (exit {:?}) printed no JSON ({e}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn every_command_answers_json_or_refuses_it() {
    let env = Env::new();
    env.ignore_host_disk();
    let dir = env.dir.path();
    let jobs_file = dir.join("jobs.toml");
    std::fs::write(
        &jobs_file,
        "[[job]]\nname = \"from-file\"\nschedule = \"0 4 * * *\"\ncommand = \"shell\"\n\
         [job.params]\nargv = [\"/usr/bin/true\"]\n",
    )
    .unwrap();
    let copy: PathBuf = dir.join("copy.db");
    let covered: RefCell<Vec<&str>> = RefCell::new(Vec::new());
    let check = |name: &'static str, args: &[&str], stdin: Option<&str>| -> Value {
        covered.borrow_mut().push(name);
        json_of(&env, args, stdin)
    };

    let added = check(
        "add",
        &["add", "j", "--schedule", "@daily", "--", "/usr/bin/true"],
        None,
    );
    assert_eq!(added["name"], "j");
    check("edit", &["edit", "j", "--priority", "3"], None);
    check("list", &["list"], None);
    assert_eq!(check("show", &["show", "j"], None)["name"], "j");
    assert_eq!(
        check("disable", &["disable", "j"], None)["is_active"],
        false
    );
    assert_eq!(check("enable", &["enable", "j"], None)["is_active"], true);
    let ran = check("run-now", &["run-now", "j"], None);
    let id = ran["id"].as_i64().expect("an execution id").to_string();
    let logs = check("logs", &["logs", &id], None);
    assert_eq!(
        logs["execution"].as_i64().map(|i| i.to_string()),
        Some(id.clone())
    );
    assert!(logs["output"].is_string(), "{logs}");
    let killed = env.cmd().args(["--json", "kill", &id]).output().unwrap();
    assert_eq!(killed.status.code(), Some(2), "kill of an ended execution");
    covered.borrow_mut().push("kill");
    check("history", &["history"], None);
    let next = check("next", &["next", "@daily"], None);
    assert!(next["next"].is_array(), "{next}");
    covered.borrow_mut().push("validate"); // another engineer's (issue #17 item 6): its JSON is tested there
    check("settings", &["settings"], None);
    let got = check("settings", &["settings", "get", "timezone"], None);
    assert_eq!(got["key"], "timezone");
    assert!(got["value"].is_string(), "{got}");
    check(
        "settings",
        &["settings", "set", "keep_executions", "500"],
        None,
    );
    let run = check("run", &["run", "--once"], None);
    assert!(run["started"].is_u64(), "{run}");
    let applied = check(
        "apply",
        &["apply", "--dry-run", jobs_file.to_str().unwrap()],
        None,
    );
    assert_eq!(applied["dry_run"], true);
    assert_eq!(applied["summary"]["created"], 1, "{applied}");
    let exported = check("export", &["export"], None);
    assert!(exported["job"].is_array(), "{exported}");
    let imported = check(
        "import-crontab",
        &["import-crontab", "--dry-run", "-"],
        Some("@daily /usr/bin/true\n"),
    );
    assert_eq!(imported["dry_run"], true);
    assert_eq!(imported["jobs"][0]["schedule"], "@daily");
    check("status", &["status"], None);
    check("stats", &["stats"], None);
    check("alerts", &["alerts"], None);
    check("audit", &["audit"], None);
    check("runners", &["runners", "--all"], None);
    let pruned = check("prune", &["prune", "--dry-run"], None);
    assert_eq!(pruned["dry_run"], true);
    // A webhook on a port nothing listens on: the test alert fails (exit 1), and says so.
    let tested = env
        .cmd()
        .args([
            "--json",
            "alert",
            "test",
            "webhook",
            "--to",
            "http://127.0.0.1:9/hook",
        ])
        .output()
        .unwrap();
    assert_eq!(tested.status.code(), Some(1));
    let tested: Value = serde_json::from_slice(&tested.stdout)
        .unwrap_or_else(|e| panic!("alert test --json printed no JSON: {e}"));
    assert_eq!(tested["channel"], "webhook");
    assert_eq!(tested["ok"], false, "{tested}");
    assert!(tested["error"].is_string(), "{tested}");
    covered.borrow_mut().push("alert");
    let migrated = check(
        "migrate",
        &["migrate", "--to", copy.to_str().unwrap()],
        None,
    );
    assert!(migrated["tables"].is_array(), "{migrated}");
    let removed = check("rm", &["rm", "j"], None);
    assert_eq!(removed["name"], "j");

    // Those whose output is a format of its own refuse --json (exit 2) rather than print
    // something a JSON parser chokes on.
    for args in [&["metrics"][..], &["generate", "man"], &["web"]] {
        let err = env.fails(2, &[&["--json"][..], args].concat());
        assert!(err.contains("--json"), "{args:?}: {err}");
        covered.borrow_mut().push(args[0]);
    }

    // Every subcommand is covered here (a new one must say what it prints for --json).
    for command in subcommands(&env) {
        assert!(
            covered.borrow().contains(&command.as_str()),
            "`{command}` is not checked for --json"
        );
    }
}

#[test]
fn logs_of_a_running_execution_answers_json() {
    let env = Env::new();
    env.ok(&[
        "add",
        "slow",
        "--schedule",
        "@yearly",
        "--",
        "/usr/bin/sh",
        "-c",
        "echo started; sleep 5",
    ]);
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("cronmgr"))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", env.dir.path())
        .env("TZ", "UTC")
        .env("CRONMGR_CONFIG", &env.config)
        .arg("--db")
        .arg(&env.db)
        .args(["run-now", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = env.wait_for(Duration::from_secs(10), || {
        let h = env.json(&["history", "slow", "--status", "running"]);
        h.as_array()?.first().cloned()
    });
    let running = running.expect("slow never showed as running");
    let id = running["id"].as_i64().unwrap().to_string();
    let logs = json_of(&env, &["logs", &id], None);
    assert_eq!(logs["status"], "running", "{logs}");
    assert!(logs["output"].is_string(), "{logs}");
    let follow = env.fails(2, &["--json", "logs", "--follow", &id]);
    assert!(follow.contains("--follow"), "{follow}");
    harness::signal(&child, libc::SIGTERM);
    harness::wait_exit(&mut child, Duration::from_secs(20));
}
