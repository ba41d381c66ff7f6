//! Tables fit the terminal (issue #17): with `COLUMNS=80` no line of any listing is wider than
//! 80 characters or ends in a space; on a wide terminal long text uses the room; piped output
//! (no COLUMNS) is never cut.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::harness::{Env, ALLOW};

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
