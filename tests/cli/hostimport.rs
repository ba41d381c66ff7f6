//! `import-crontab --system-wide` against a fake host under a temporary folder (`--root`): every
//! source kind (/etc/crontab, /etc/cron.d, Debian's and RHEL's spools, run-parts folders,
//! anacron), owners, MAILTO, what is skipped and why, the allowlist to paste, all or nothing,
//! and `--disable-sources`. The real /etc is never read or written.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{test_user, Env, TestUser, ALLOW, TEST_USER};

const ETC_CRONTAB: &str = "SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
MAILTO=ops@example.com

# m h dom mon dow user	command
17 *	* * *	root    cd / && run-parts --report /etc/cron.hourly
25 6	* * *	root	test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )
0 4 * * * cronmgr-test /usr/bin/echo system line
30 4 * * * nosuchuser-cronmgr /usr/bin/true
";

const ANACRONTAB: &str = "SHELL=/bin/sh
1\t5\tcron.daily\trun-parts --report /etc/cron.daily
7\t10\tcron.weekly\trun-parts --report /etc/cron.weekly
@monthly\t15\tcron.monthly\trun-parts --report /etc/cron.monthly
";

/// Write `text` at `rel` under `root` with `mode`, owned by `uid`.
fn put(root: &Path, rel: &str, text: &str, mode: u32, uid: u32, gid: u32) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    path
}

/// A host with every kind of source, and what cron would skip.
fn fake_host(root: &Path, user: &TestUser) {
    put(root, "etc/crontab", ETC_CRONTAB, 0o644, 0, 0);
    put(root, "etc/anacrontab", ANACRONTAB, 0o644, 0, 0);
    put(
        root,
        "etc/cron.d/app",
        "MAILTO=app@example.com\n*/10 * * * * cronmgr-test /usr/bin/date +%s\n",
        0o644,
        0,
        0,
    );
    put(
        root,
        "etc/cron.d/app.dpkg-old",
        "* * * * * root /usr/bin/true\n",
        0o644,
        0,
        0,
    );
    put(
        root,
        "etc/cron.d/loose",
        "* * * * * root /usr/bin/true\n",
        0o666,
        0,
        0,
    );
    // Debian's spool: owned by the user.
    put(
        root,
        &format!("var/spool/cron/crontabs/{TEST_USER}"),
        "MAILTO=root\n@daily /usr/bin/printf hi\n",
        0o600,
        user.uid,
        user.gid,
    );
    put(
        root,
        "var/spool/cron/crontabs/ghost-cronmgr",
        "@daily /usr/bin/true\n",
        0o600,
        0,
        0,
    );
    // RHEL's spool: files right in /var/spool/cron, owned by root.
    put(
        root,
        "var/spool/cron/root",
        "0 5 * * 1 /usr/bin/sleep 0\n",
        0o600,
        0,
        0,
    );
    // run-parts folders.
    put(
        root,
        "etc/cron.daily/backup-db",
        "#!/bin/sh\necho daily backup ran in $(pwd)\n",
        0o755,
        0,
        0,
    );
    put(root, "etc/cron.daily/README", "not a script\n", 0o644, 0, 0);
    put(root, "etc/cron.daily/old.sh", "#!/bin/sh\n", 0o755, 0, 0);
    std::fs::create_dir_all(root.join("etc/cron.hourly")).unwrap();
    put(
        root,
        "etc/cron.weekly/rotate",
        "#!/bin/sh\ntrue\n",
        0o755,
        0,
        0,
    );
}

fn import(env: &Env, root: &Path, extra: &[&str]) -> (Value, i32, String) {
    let out = env
        .cmd()
        .args(["--json", "import-crontab", "--system-wide", "--root"])
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        v,
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn why(report: &Value, source: &str, line: Option<u64>) -> String {
    report["not_imported"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == source && s["line"].as_u64() == line)
        .unwrap_or_else(|| panic!("{source}:{line:?} not in {}", report["not_imported"]))["why"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_whole_host_imports_under_its_owners_and_its_sources_are_disabled() {
    let Some(user) = test_user() else { return };
    let env = Env::new();
    env.create_db();
    let host = tempfile::tempdir().unwrap();
    let root = host.path();
    fake_host(root, &user);
    let daily = root.join("etc/cron.daily/backup-db").display().to_string();
    let weekly = root.join("etc/cron.weekly/rotate").display().to_string();

    // The dry run reports everything; the scripts are not allowlisted yet: exit 2, nothing done.
    let before = env.dump();
    let (plan, code, err) = import(&env, root, &["--dry-run"]);
    assert_eq!(code, 2, "{plan}\n{err}");
    assert!(
        err.contains("not allowlisted") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(env.dump(), before);
    let allow: Vec<String> = plan["allowlist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        allow,
        [
            format!("{{ program = \"{daily}\", args = [] }},"),
            format!("{{ program = \"{weekly}\", args = [] }},"),
        ]
    );

    // What is not imported, and why.
    assert!(why(&plan, "/etc/crontab", Some(6)).contains("runs /etc/cron.hourly"));
    assert!(why(&plan, "/etc/crontab", Some(7)).contains("runs /etc/cron.daily"));
    assert!(why(&plan, "/etc/crontab", Some(9)).contains("no user named"));
    assert!(why(&plan, "/etc/cron.d/app.dpkg-old", None).contains("cron skips file names"));
    assert!(why(&plan, "/etc/cron.d/loose", None).contains("writable by group or others"));
    assert!(why(&plan, "/var/spool/cron/crontabs/ghost-cronmgr", None).contains("no user named"));
    assert!(why(&plan, "/etc/cron.daily/README", None).contains("not executable"));
    assert!(why(&plan, "/etc/cron.daily/old.sh", None).contains("run-parts skips names"));
    assert!(why(&plan, "/etc/anacrontab", Some(2)).contains("anacron"));
    assert!(why(&plan, "/etc/anacrontab", Some(3)).contains("anacron"));
    let notes = plan["not_carried_over"].to_string();
    assert!(notes.contains("MAILTO=root"), "{notes}");
    assert!(
        notes.contains("no crontab line runs /etc/cron.weekly"),
        "{notes}"
    );

    // Paste the entries, as the report says.
    let list: Vec<String> = ALLOW.iter().map(|p| format!("{p:?},")).collect();
    std::fs::write(
        &env.config,
        format!(
            "[executors]\nenabled = [\"shell\"]\n[executors.shell]\nallow = [\n{}\n{}\n]\n",
            list.join("\n"),
            allow.join("\n")
        ),
    )
    .unwrap();
    let (plan, code, err) = import(&env, root, &["--dry-run", "--disable-sources"]);
    assert_eq!(code, 0, "{plan}\n{err}");
    assert_eq!(plan["allowlist"], serde_json::json!([]));
    assert!(plan["toml"].as_str().unwrap().contains("[[job]]"));
    assert_eq!(env.dump(), before, "a dry run changes nothing");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/crontab")).unwrap(),
        ETC_CRONTAB
    );

    // The import, and the sources disabled.
    let (done, code, err) = import(&env, root, &["--disable-sources"]);
    assert_eq!(code, 0, "{done}\n{err}");
    let mut got: Vec<(String, String, String, String)> = done["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["source"].as_str().unwrap().to_string(),
                j["name"].as_str().unwrap().to_string(),
                j["user"].as_str().unwrap().to_string(),
                j["schedule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let row = |s: &str, n: &str, u: &str, sc: &str| (s.into(), n.into(), u.into(), sc.into());
    assert_eq!(
        got,
        [
            row("/etc/cron.d/app", "date", TEST_USER, "*/10 * * * *"),
            row(
                "/etc/cron.daily/backup-db",
                "daily-backup-db",
                "root",
                "25 6 * * *"
            ),
            row(
                "/etc/cron.weekly/rotate",
                "weekly-rotate",
                "root",
                "47 6 * * 7"
            ),
            row("/etc/crontab", "echo", TEST_USER, "0 4 * * *"),
            row(
                "/var/spool/cron/crontabs/cronmgr-test",
                "printf",
                TEST_USER,
                "@daily"
            ),
            row("/var/spool/cron/root", "sleep", "root", "0 5 * * 1"),
        ]
    );
    let show = |name: &str| env.json(&["show", name]);
    let date = show("date");
    assert_eq!(date["run_user"], TEST_USER);
    assert_eq!(date["alert_email"], "app@example.com");
    let echo = show("echo");
    assert_eq!(echo["run_user"], TEST_USER);
    assert_eq!(echo["alert_email"], "ops@example.com");
    assert_eq!(show("printf")["alert_email"], Value::Null);
    assert_eq!(show("sleep")["run_user"], "root");
    let backup = show("daily-backup-db");
    assert_eq!(backup["run_user"], "root");
    assert_eq!(
        backup["alert_email"], "ops@example.com",
        "the MAILTO of the line that ran the folder"
    );
    assert_eq!(backup["params"]["argv"], serde_json::json!([daily]));
    assert_eq!(backup["params"]["cwd"], "/");
    // And it runs, as run-parts would have run it.
    let out = env.ok(&["run-now", "daily-backup-db"]);
    assert!(out.contains("daily backup ran in /"), "{out}");

    // The sources: imported lines commented out, backups kept as they were, owners kept.
    let crontab = std::fs::read_to_string(root.join("etc/crontab")).unwrap();
    let disabled: Vec<usize> = crontab
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("#cronmgr-migrated# "))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(disabled, [6, 7, 8], "{crontab}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/crontab.cronmgr-bak")).unwrap(),
        ETC_CRONTAB
    );
    let anacron = std::fs::read_to_string(root.join("etc/anacrontab")).unwrap();
    assert_eq!(
        anacron.matches("#cronmgr-migrated# ").count(),
        2,
        "daily and weekly, not monthly (nothing imported there): {anacron}"
    );
    let spool = root.join(format!("var/spool/cron/crontabs/{TEST_USER}"));
    assert!(std::fs::read_to_string(&spool)
        .unwrap()
        .contains("#cronmgr-migrated# @daily /usr/bin/printf hi"));
    let meta = std::fs::metadata(&spool).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (user.uid, 0o600));
    assert!(root.join("etc/cron.d/app.cronmgr-bak").exists());
    assert!(
        !root.join("etc/cron.d/loose.cronmgr-bak").exists(),
        "a skipped file is left alone"
    );

    // Nothing is left to import twice.
    let (again, code, err) = import(&env, root, &["--dry-run"]);
    assert_eq!(code, 0, "{again}\n{err}");
    assert_eq!(again["jobs"], serde_json::json!([]));
    // A second run finds nothing to import or disable, and keeps the first backups.
    let (again, code, err) = import(&env, root, &["--disable-sources"]);
    assert_eq!(code, 0, "{again}\n{err}");
    assert_eq!(again["jobs"], serde_json::json!([]));
    assert_eq!(again.get("disable_sources"), None, "{again}");
    assert!(why(&again, "/etc/cron.daily/backup-db", None).contains("already imported"));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/crontab.cronmgr-bak")).unwrap(),
        ETC_CRONTAB
    );
}

#[test]
fn a_bad_line_anywhere_imports_nothing() {
    let Some(user) = test_user() else { return };
    let env = Env::new();
    env.create_db();
    let host = tempfile::tempdir().unwrap();
    let root = host.path();
    put(
        root,
        "etc/crontab",
        "0 4 * * * root /usr/bin/true\n",
        0o644,
        0,
        0,
    );
    put(
        root,
        &format!("var/spool/cron/crontabs/{TEST_USER}"),
        "@daily /usr/bin/true\n61 * * * * /usr/bin/date\n",
        0o600,
        user.uid,
        user.gid,
    );
    let before = env.dump();
    let (report, code, err) = import(&env, root, &["--disable-sources"]);
    assert_eq!(code, 2, "{report}");
    assert!(
        err.contains(&format!("/var/spool/cron/crontabs/{TEST_USER}:2:")),
        "{err}"
    );
    assert_eq!(env.dump(), before);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/crontab")).unwrap(),
        "0 4 * * * root /usr/bin/true\n",
        "refused: no source touched"
    );
    assert!(!root.join("etc/crontab.cronmgr-bak").exists());

    // A --root that is not a folder: exit 2, naming it.
    let err = env.fails(
        2,
        &[
            "import-crontab",
            "--system-wide",
            "--root",
            "/nonexistent-cronmgr-root",
        ],
    );
    assert!(err.contains("--root"), "{err}");
    // --root and --disable-sources only make sense with --system-wide.
    env.fails(2, &["import-crontab", "--root", "/tmp"]);

    // The first step on a host with no database yet: the plan, and still no database.
    if crate::harness::sqlite_only("reads whether the SQLite file was created") {
        return;
    }
    let fresh = Env::new();
    let clean = tempfile::tempdir().unwrap();
    put(
        clean.path(),
        "etc/crontab",
        "0 4 * * * root /usr/bin/true\n",
        0o644,
        0,
        0,
    );
    let (plan, code, err) = import(&fresh, clean.path(), &["--dry-run"]);
    assert_eq!(code, 0, "{plan}\n{err}");
    assert_eq!(plan["jobs"][0]["name"], "true");
    assert!(!fresh.db.exists());
}
