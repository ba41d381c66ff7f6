//! The files the runner trusts: its config (reloaded on SIGHUP), the database and everything kept
//! next to it (live logs, claims journal, lock), the folders above them, and where the database
//! is when none is named.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{at, signal, soon, stop, Env};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// `<db><suffix>`: the files the runner keeps beside the database.
fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn wait_log(env: &Env, needle: &str, limit: Duration) -> bool {
    env.wait_for(limit, || env.runner_log().contains(needle).then_some(()))
        .is_some()
}

/// Every file in `dir`, recursively, with its size: to prove a command created or changed nothing.
fn tree(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let meta = e.path().symlink_metadata().expect("lstat");
            if meta.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path(), meta.len()));
        }
    }
    out.sort();
    out
}

/// `cronmgr --db DB ARGS` (with the env's config) under umask 0, as a careless service manager
/// or shell might start it.
fn cmd_umask0(env: &Env, db: &Path) -> StdCommand {
    let mut c = StdCommand::new(assert_cmd::cargo::cargo_bin("cronmgr"));
    c.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", env.dir.path())
        .env("TZ", "UTC")
        .env("CRONMGR_CONFIG", &env.config)
        .arg("--db")
        .arg(db);
    // SAFETY: umask is async-signal-safe and touches no memory.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    c
}

fn run_out(mut c: StdCommand) -> Output {
    c.stdin(Stdio::null()).output().expect("run cronmgr")
}

fn add_echo(env: &Env, name: &str, schedule: &str) {
    env.ok(&[
        "add",
        name,
        "--schedule",
        schedule,
        "--",
        "/usr/bin/echo",
        name,
    ]);
}

// ---- 4. SIGHUP reload ------------------------------------------------------------------------

#[test]
fn sighup_keeps_the_old_config_when_the_new_one_is_writable_by_others() {
    let env = Env::new();
    let mut runner = env.spawn_runner(&[]);
    assert!(
        wait_log(&env, "runner ready", Duration::from_secs(20)),
        "{}",
        env.runner_log()
    );
    // Anyone may now write the config: they allow everything.
    chmod(&env.config, 0o666);
    std::fs::write(
        &env.config,
        "[executors]\nenabled = [\"shell\"]\n[executors.shell]\nallow = [\"/**\"]\n",
    )
    .unwrap();
    signal(&runner, libc::SIGHUP);
    let kept = wait_log(&env, "keeping the old config", Duration::from_secs(10));
    // A job the tampered config would allow (the CLI, reading it, accepts it)…
    env.ok(&[
        "add",
        "whoami",
        "--schedule",
        "* * * * * *",
        "--",
        "/usr/bin/id",
    ]);
    let row = env.wait_for(Duration::from_secs(15), || {
        env.history("whoami")
            .into_iter()
            .find(|r| r["status"] != "running")
    });
    stop(&mut runner);
    let log = env.runner_log();
    assert!(kept, "no warning about the refused config; log:\n{log}");
    assert!(!log.contains("config reloaded"), "{log}");
    assert!(
        log.contains("writable by") && log.contains("chmod go-w"),
        "the log should say why and how to fix it:\n{log}"
    );
    // …is still refused by the runner, which kept the old allowlist.
    let row = row.unwrap_or_else(|| panic!("never tried; log:\n{log}"));
    assert_eq!(row["status"], "failed", "{row}");
    assert!(
        row["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("not allowlisted"),
        "{row}"
    );
}

#[test]
fn sighup_keeps_the_old_config_when_the_new_one_does_not_parse_or_sits_in_an_open_folder() {
    let env = Env::new();
    let mut runner = env.spawn_runner(&[]);
    assert!(
        wait_log(&env, "runner ready", Duration::from_secs(20)),
        "{}",
        env.runner_log()
    );
    std::fs::write(&env.config, "[executors\nthis is not toml").unwrap();
    signal(&runner, libc::SIGHUP);
    assert!(
        wait_log(&env, "keeping the old config", Duration::from_secs(10)),
        "{}",
        env.runner_log()
    );
    // Now a good file, but the folder it is in lets anyone replace it.
    std::fs::write(
        &env.config,
        "[executors]\nenabled = [\"shell\"]\n[executors.shell]\nallow = [\"/**\"]\n",
    )
    .unwrap();
    chmod(env.dir.path(), 0o777);
    signal(&runner, libc::SIGHUP);
    let refused = env.wait_for(Duration::from_secs(10), || {
        let log = env.runner_log();
        (log.matches("keeping the old config").count() >= 2).then_some(log)
    });
    chmod(env.dir.path(), 0o700);
    stop(&mut runner);
    let log = refused.unwrap_or_else(|| panic!("reloaded anyway:\n{}", env.runner_log()));
    assert!(!log.contains("config reloaded"), "{log}");
    assert!(log.contains("writable by its group and everyone"), "{log}");
    // With the folder fixed, a reload is taken.
    let mut runner = env.spawn_runner(&[]);
    assert!(wait_log(&env, "runner ready", Duration::from_secs(20)));
    signal(&runner, libc::SIGHUP);
    let ok = wait_log(&env, "config reloaded", Duration::from_secs(10));
    stop(&mut runner);
    assert!(ok, "{}", env.runner_log());
}

// ---- 5. live logs and the files beside the database ------------------------------------------

#[test]
fn a_live_log_planted_as_a_symlink_is_not_followed() {
    let env = Env::new();
    if crate::harness::sqlite_only(
        "the live logs of a PostgreSQL database live elsewhere; same code path",
    ) {
        return;
    }
    let victim = env.dir.path().join("victim");
    std::fs::write(&victim, "root's secret\n").unwrap();
    chmod(&victim, 0o600);
    let t = soon(4);
    env.ok(&[
        "add",
        "talker",
        "--schedule",
        &at(t),
        "--",
        "/usr/bin/sh",
        "-c",
        "echo planted-output; sleep 1",
    ]);
    let mut runner = env.spawn_runner(&[]);
    assert!(
        wait_log(&env, "runner ready", Duration::from_secs(20)),
        "{}",
        env.runner_log()
    );
    // After the start-up checks, someone plants the next executions' log names.
    let logs = beside(&env.db, ".logs");
    std::fs::create_dir_all(&logs).unwrap();
    for id in 1..=5 {
        std::os::unix::fs::symlink(&victim, logs.join(format!("{id}.log"))).unwrap();
    }
    let row = env.wait_for(Duration::from_secs(20), || {
        env.history("talker")
            .into_iter()
            .find(|r| r["status"] == "success")
    });
    stop(&mut runner);
    let row = row.unwrap_or_else(|| panic!("never ran; log:\n{}", env.runner_log()));
    assert_eq!(row["output"], "planted-output\n");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root's secret\n",
        "the job's output went through the planted link"
    );
}

#[test]
fn live_logs_are_0640_in_a_0750_folder_whatever_the_umask() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads the files beside the SQLite database") {
        return;
    }
    let t = soon(3);
    env.ok(&[
        "add",
        "slowtalker",
        "--schedule",
        &at(t),
        "--",
        "/usr/bin/sh",
        "-c",
        "echo hi; sleep 3",
    ]);
    let mut c = cmd_umask0(&env, &env.db);
    c.env("RUST_LOG", "cronmgr=debug")
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.path().join("runner.log")).unwrap());
    let mut runner: Child = c.spawn().expect("spawn runner");
    let logs = beside(&env.db, ".logs");
    let seen = env.wait_for(Duration::from_secs(20), || {
        let file = std::fs::read_dir(&logs)
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().ends_with(".log"))?;
        Some((mode(&logs), mode(&file.path())))
    });
    stop(&mut runner);
    let (dir_mode, file_mode) =
        seen.unwrap_or_else(|| panic!("no live log seen; log:\n{}", env.runner_log()));
    assert_eq!(dir_mode, 0o750, "logs folder mode {dir_mode:o}");
    assert_eq!(file_mode, 0o640, "live log mode {file_mode:o}");
}

#[test]
fn logs_do_not_read_through_a_planted_symlink() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads the files beside the SQLite database") {
        return;
    }
    let t = soon(3);
    env.ok(&[
        "add",
        "sleeper",
        "--schedule",
        &at(t),
        "--",
        "/usr/bin/sleep",
        "4",
    ]);
    let mut runner = env.spawn_runner(&[]);
    let row = env.wait_for(Duration::from_secs(20), || {
        env.history("sleeper")
            .into_iter()
            .find(|r| r["status"] == "running")
    });
    let row = row.unwrap_or_else(|| panic!("never started; log:\n{}", env.runner_log()));
    let id = row["id"].as_i64().unwrap();
    // The silent job's live log appears after a moment; replace it with a link to a secret.
    let logs = beside(&env.db, ".logs");
    let log = logs.join(format!("{id}.log"));
    env.wait_for(Duration::from_secs(5), || log.exists().then_some(()));
    let secret = env.dir.path().join("secret");
    std::fs::write(&secret, "TOP-SECRET\n").unwrap();
    chmod(&secret, 0o600);
    let _ = std::fs::remove_file(&log);
    std::os::unix::fs::symlink(&secret, &log).unwrap();
    let plain = env.cmd().args(["logs", &id.to_string()]).output().unwrap();
    let out = env
        .cmd()
        .args(["logs", "--follow", &id.to_string()])
        .output()
        .unwrap();
    stop(&mut runner);
    for (how, out) in [("logs", plain), ("logs --follow", out)] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains("TOP-SECRET"),
            "{how} printed the link's target: {stdout}"
        );
    }
}

#[test]
fn the_runner_refuses_files_beside_the_database_that_others_can_write() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    add_echo(&env, "j", "0 0 1 1 *");
    let before = env.dump();
    let logs = beside(&env.db, ".logs");
    std::fs::create_dir(&logs).unwrap();
    chmod(&logs, 0o777);
    let err = env.fails(1, &["run", "--once"]);
    assert!(
        err.contains("logs folder") && err.contains("chmod go-w"),
        "{err}"
    );
    chmod(&logs, 0o750);
    let claims = beside(&env.db, ".claims");
    std::fs::write(&claims, "").unwrap();
    chmod(&claims, 0o666);
    let err = env.fails(1, &["run", "--once"]);
    assert!(
        err.contains("claims journal") && err.contains("writable by its group and everyone"),
        "{err}"
    );
    chmod(&claims, 0o640);
    let wal = beside(&env.db, "-wal");
    if !wal.exists() {
        std::fs::write(&wal, "").unwrap();
    }
    chmod(&wal, 0o664);
    let err = env.fails(1, &["run", "--once"]);
    assert!(
        err.contains("-wal") && err.contains("writable by its group"),
        "{err}"
    );
    chmod(&wal, 0o640);
    assert_eq!(env.dump(), before);
    env.ok(&["run", "--once"]);
}

#[test]
fn a_lock_file_planted_as_a_symlink_is_refused_and_its_target_untouched() {
    let env = Env::new();
    if crate::harness::sqlite_only("no lock file on a shared database") {
        return;
    }
    add_echo(&env, "j", "0 0 1 1 *");
    let victim = env.dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, beside(&env.db, ".lock")).unwrap();
    let err = env.fails(1, &["run", "--once"]);
    assert!(
        err.contains("lock file") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

// ---- ancestors -------------------------------------------------------------------------------

#[test]
fn the_runner_refuses_a_folder_above_the_database_that_others_can_write() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    let open = env.dir.path().join("open");
    let db = open.join("inner").join("cronmgr.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    env.cmd_with_db(&db)
        .args(["add", "j", "--schedule", "0 0 1 1 *", "--", "/usr/bin/echo"])
        .assert()
        .success();
    chmod(&open, 0o777);
    let out = env
        .cmd_with_db(&db)
        .args(["run", "--once"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&open.display().to_string())
            && err.contains("writable by its group and everyone"),
        "{err}"
    );
    // Sticky and root's (as /tmp): others cannot replace what is in it.
    chmod(&open, 0o1777);
    env.cmd_with_db(&db)
        .args(["run", "--once"])
        .assert()
        .success();
}

#[test]
fn the_runner_refuses_a_config_in_a_folder_others_can_write() {
    let env = Env::new();
    let open = env.dir.path().join("etc");
    std::fs::create_dir(&open).unwrap();
    let config = open.join("config.toml");
    std::fs::copy(&env.config, &config).unwrap();
    chmod(&open, 0o777);
    let out = env
        .cmd()
        .env("CRONMGR_CONFIG", &config)
        .args(["run", "--once"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("config file") && err.contains("writable by its group and everyone"),
        "{err}"
    );
}

// ---- refused databases stay untouched; new ones get their modes ----------------------------

#[test]
fn a_corrupt_database_is_refused_before_anything_is_written() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    add_echo(&env, "j", "0 0 1 1 *");
    // Make sure everything is in the main file, then wreck the jobs table's root page.
    {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let (page, size): (i64, i64) = conn
            .query_row(
                "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master WHERE name = 'jobs'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        drop(conn);
        let mut bytes = std::fs::read(&env.db).unwrap();
        let start = ((page - 1) * size) as usize;
        bytes[start..start + size as usize].fill(0x55);
        std::fs::write(&env.db, bytes).unwrap();
    }
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(beside(&env.db, side));
    }
    let before = std::fs::read(&env.db).unwrap();
    let out = env.cmd().args(["run", "--once"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("is damaged") && err.contains(".recover"),
        "{err}"
    );
    assert_eq!(std::fs::read(&env.db).unwrap(), before, "the file changed");
    for side in ["-wal", "-shm", ".lock"] {
        let p = beside(&env.db, side);
        assert!(
            std::fs::metadata(&p).map_or(true, |m| m.len() == 0),
            "{} was written",
            p.display()
        );
    }
}

#[test]
fn an_empty_file_becomes_a_database_readable_only_by_its_group() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    std::fs::write(&env.db, "").unwrap();
    chmod(&env.db, 0o644);
    add_echo(&env, "j", "0 0 1 1 *");
    assert_eq!(mode(&env.db), 0o640);
}

#[test]
fn a_new_database_is_0640_in_a_0750_folder_whatever_the_umask() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    let db = env.dir.path().join("new").join("cronmgr.db");
    let mut c = cmd_umask0(&env, &db);
    c.args(["add", "j", "--schedule", "0 0 1 1 *", "--", "/usr/bin/echo"]);
    let out = run_out(c);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&db), 0o640);
    assert_eq!(mode(db.parent().unwrap()), 0o750);
    for side in ["-wal", "-shm"] {
        let p = beside(&db, side);
        if p.exists() {
            assert_eq!(mode(&p) & 0o022, 0, "{}", p.display());
        }
    }
}

// ---- issue #17: read-only commands, the default path, edits behind cronmgr's back ------------

#[test]
fn read_only_commands_on_a_missing_database_say_so_and_create_nothing() {
    let env = Env::new();
    if crate::harness::sqlite_only("a PostgreSQL database is never missing in this sense") {
        return;
    }
    let db = env.dir.path().join("nonexistent").join("dir").join("x.db");
    let jobs = env.dir.path().join("jobs.toml");
    std::fs::write(
        &jobs,
        "[[job]]\nname = \"j\"\nschedule = \"0 0 1 1 *\"\ncommand = \"shell\"\n[job.params]\nargv = [\"/usr/bin/echo\"]\n",
    )
    .unwrap();
    let jobs = jobs.to_string_lossy().into_owned();
    let before = tree(env.dir.path());
    let commands: &[&[&str]] = &[
        &["list"],
        &["show", "j"],
        &["history"],
        &["logs", "1"],
        &["status"],
        &["stats"],
        &["settings"],
        &["settings", "get", "timezone"],
        &["export"],
        &["metrics"],
        &["alerts"],
        &["audit"],
        &["runners"],
        &["apply", "--dry-run", &jobs],
        &["next", "* * * * *"],
    ];
    for args in commands {
        let out = env.cmd_with_db(&db).args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if args[0] == "next" {
            // Needs no database: the schedule alone, in the host's zone.
            assert!(out.status.success(), "{args:?}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(
                err.contains("no database at") && err.contains("cronmgr add"),
                "{args:?}: {err}"
            );
        }
        assert_eq!(tree(env.dir.path()), before, "{args:?} created something");
    }
    // A writing command creates it.
    env.cmd_with_db(&db)
        .args(["add", "j", "--schedule", "0 0 1 1 *", "--", "/usr/bin/echo"])
        .assert()
        .success();
    assert!(db.exists());
    let list: Value = serde_json::from_slice(
        &env.cmd_with_db(&db)
            .args(["--json", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
}

#[test]
fn without_home_the_database_is_not_put_in_the_current_folder() {
    let Some(crate::harness::TestUser { uid, gid, home }) = crate::harness::test_user() else {
        return;
    };
    let env = Env::new();
    let cwd = env.dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    std::os::unix::fs::chown(&cwd, Some(uid), Some(gid)).unwrap();
    chmod(env.dir.path(), 0o755);
    let out = StdCommand::new(assert_cmd::cargo::cargo_bin("cronmgr"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CRONMGR_CONFIG", &env.config)
        .current_dir(&cwd)
        .arg("list")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    chmod(env.dir.path(), 0o700);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        std::fs::read_dir(&cwd).unwrap().next().is_none(),
        "created something in the current folder: {err}"
    );
    let expected = format!("{home}/.local/share/cronmgr/cronmgr.db");
    assert!(
        err.contains(&expected) || home.is_empty() || !home.starts_with('/'),
        "expected the passwd home's database {expected}: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
}

