//! A temporary database and config for each test, and helpers to run the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

pub struct Env {
    pub dir: TempDir,
    pub db: PathBuf,
    pub config: PathBuf,
}

/// Programs the tests' config allows.
pub const ALLOW: &[&str] = &[
    "/usr/bin/echo",
    "/usr/bin/true",
    "/usr/bin/false",
    "/usr/bin/sleep",
    "/usr/bin/sh",
    "/usr/bin/dash",
    "/usr/bin/bash",
    "/usr/bin/printf",
    "/usr/bin/date",
];

impl Env {
    pub fn new() -> Env {
        Env::with_allow(ALLOW)
    }

    pub fn with_allow(allow: &[&str]) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("cronmgr.db");
        let config = dir.path().join("config.toml");
        let list: Vec<String> = allow.iter().map(|p| format!("{p:?}")).collect();
        std::fs::write(
            &config,
            format!(
                "[executors]\nenabled = [\"shell\"]\n[executors.shell]\nallow = [{}]\n",
                list.join(", ")
            ),
        )
        .expect("write config");
        // Exploration aid: the whole suite against PostgreSQL (tests that read the SQLite file
        // itself, or its lock and journal, fail by design).
        let db = match std::env::var("CRONMGR_E2E_ON_POSTGRES") {
            Ok(url) if !url.is_empty() => PathBuf::from(scratch_schema(&url)),
            _ => db,
        };
        Env { dir, db, config }
    }

    /// The same, with the database in a fresh schema of the PostgreSQL server that
    /// `CRONMGR_TEST_POSTGRES` names (a URL). None, after saying so, when it is unset: the
    /// PostgreSQL tests then have nothing to run against (`.ci/run` sets it).
    pub fn postgres() -> Option<Env> {
        let url = postgres_url()?;
        let mut env = Env::new();
        env.db = PathBuf::from(scratch_schema(&url));
        Some(env)
    }

    /// `cronmgr --db <tmp> ...` with the test config and a clean environment.
    /// Turn off the low-disk check (`disk_min_free = 0`) for a test that counts alerts. The disk
    /// of the machine running the tests is not under test: a build machine short of space would
    /// add a `disk` alert, and its deliveries, to whatever the test counts.
    pub fn ignore_host_disk(&self) {
        self.ok(&["settings", "set", "disk_min_free", "0"]);
    }

    pub fn cmd(&self) -> Command {
        self.cmd_with_db(&self.db)
    }

    /// The same against another database file.
    pub fn cmd_with_db(&self, db: &Path) -> Command {
        let mut c = Command::cargo_bin("cronmgr").expect("binary");
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .env("TZ", "UTC")
            .env("CRONMGR_CONFIG", &self.config)
            .arg("--db")
            .arg(db)
            .timeout(Duration::from_secs(120));
        c
    }

    /// Run with `--json` and parse stdout; panics unless it exits 0.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd().arg("--json").args(args).output().expect("run");
        assert!(
            out.status.success(),
            "cronmgr {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "cronmgr {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Change a job's params behind cronmgr's back (the SQLite file or the PostgreSQL schema).
    pub fn set_params(&self, job: &str, params: &Value) {
        let db = self.db.to_string_lossy().into_owned();
        if db.starts_with("postgres://") {
            let text = params.to_string().replace('\'', "''");
            psql(
                &db,
                &format!("UPDATE jobs SET params = '{text}' WHERE name = '{job}'"),
            );
            return;
        }
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        let n = conn
            .execute(
                "UPDATE jobs SET params = ?1 WHERE name = ?2",
                [params.to_string(), job.to_string()],
            )
            .unwrap();
        assert_eq!(n, 1, "no job {job}");
    }

    /// `run-now NAME --json`: the execution, and the exit code.
    pub fn run_now_json(&self, name: &str) -> (Value, i32) {
        let out = self
            .cmd()
            .args(["--json", "run-now", name])
            .output()
            .expect("run");
        let e: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
            panic!(
                "run-now {name} printed no JSON ({err}): {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (e, out.status.code().expect("an exit code"))
    }

    /// Run and expect success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run");
        assert!(
            out.status.success(),
            "cronmgr {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run and expect exit status `code`; returns stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run");
        assert_eq!(
            out.status.code(),
            Some(code),
            "cronmgr {args:?}: expected exit {code}, stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Every row of every table, as text: to prove a refused command changed nothing.
    pub fn dump(&self) -> Vec<String> {
        dump(&self.db)
    }

    /// Start `cronmgr run` in the background.
    pub fn spawn_runner(&self, extra: &[&str]) -> Child {
        self.spawn_runner_env(extra, &[])
    }

    /// Start one of several `cronmgr run`s, logging to `runner-<name>.log`.
    pub fn spawn_named_runner(&self, name: &str, extra: &[&str]) -> Child {
        self.spawn_runner_logged(extra, &[], &format!("runner-{name}.log"))
    }

    pub fn named_runner_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("runner-{name}.log")))
            .unwrap_or_default()
    }

    /// Start `cronmgr run` with extra environment variables.
    pub fn spawn_runner_env(&self, extra: &[&str], vars: &[(&str, &str)]) -> Child {
        self.spawn_runner_logged(extra, vars, "runner.log")
    }

    /// Start one of several `cronmgr run`s as if on another machine named `host`: in a UTS
    /// namespace of its own (`unshare --uts`, root only) whose hostname is `host`, so the
    /// `runners` table and start-up recovery see a host of its own; logs to
    /// `runner-<name>.log`. None (after [`skip`]) where such a namespace cannot be made. The
    /// child is the runner itself (unshare and sh exec it), so signals reach it.
    pub fn spawn_runner_on_host(&self, name: &str, host: &str, extra: &[&str]) -> Option<Child> {
        if !root_for("a runner on a fake host (a UTS namespace of its own)") {
            return None;
        }
        let works = StdCommand::new("unshare")
            .args(["--uts", "/bin/true"])
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            skip("`unshare --uts` fails here: no fake hosts");
            return None;
        }
        let mut c = StdCommand::new("unshare");
        c.args([
            "--uts",
            "--",
            "/bin/sh",
            "-c",
            "hostname \"$0\" && exec \"$@\"",
            host,
        ])
        .arg(assert_cmd::cargo::cargo_bin("cronmgr"));
        Some(self.spawn_logged(c, extra, &[], &format!("runner-{name}.log")))
    }

    fn spawn_runner_logged(&self, extra: &[&str], vars: &[(&str, &str)], log: &str) -> Child {
        let c = StdCommand::new(assert_cmd::cargo::cargo_bin("cronmgr"));
        self.spawn_logged(c, extra, vars, log)
    }

    fn spawn_logged(
        &self,
        mut c: StdCommand,
        extra: &[&str],
        vars: &[(&str, &str)],
        log: &str,
    ) -> Child {
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .env("TZ", "UTC")
            .envs(vars.iter().copied())
            .env("CRONMGR_CONFIG", &self.config)
            .env("RUST_LOG", "cronmgr=debug")
            .arg("--db")
            .arg(&self.db)
            .arg("run")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join(log)).expect("log"))
            .spawn()
            .expect("spawn runner")
    }

    pub fn runner_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("runner.log")).unwrap_or_default()
    }

    /// Executions of a job (all statuses), oldest first.
    pub fn history(&self, job: &str) -> Vec<Value> {
        let mut v = self.json(&["history", job, "--limit", "100000"]);
        let arr = v.as_array_mut().expect("array").clone();
        arr.into_iter().rev().collect()
    }

    /// Poll `f` every 100 ms until it returns Some or `limit` passes.
    pub fn wait_for<T>(&self, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(v) = f() {
                return Some(v);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

/// True when the suite runs against PostgreSQL (CRONMGR_E2E_ON_POSTGRES): tests of the SQLite
/// file itself (its lock, its journal, its modes, editing it behind cronmgr's back) return early.
pub fn on_postgres() -> bool {
    std::env::var("CRONMGR_E2E_ON_POSTGRES").is_ok_and(|v| !v.is_empty())
}

/// The PostgreSQL server for the fleet tests, or None (after [`skip`]) when
/// `CRONMGR_TEST_POSTGRES` is unset.
pub fn postgres_url() -> Option<String> {
    match std::env::var("CRONMGR_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CRONMGR_REQUIRE_POSTGRES").is_none(),
                "CRONMGR_REQUIRE_POSTGRES is set but CRONMGR_TEST_POSTGRES is not"
            );
            skip("no PostgreSQL: set CRONMGR_TEST_POSTGRES=postgres://… to run it");
            None
        }
    }
}

/// Create an empty schema on the server `url` names; a URL whose connections use it. The
/// schema goes when its [`Env`] does; the first call of a test process also drops what runs
/// that died left behind ([`sweep_stale_schemas`]).
pub fn scratch_schema(url: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| sweep_stale_schemas(url));
    let schema = format!(
        "e2e_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        Utc::now().timestamp_micros()
    );
    psql(url, &format!("CREATE SCHEMA {schema}"));
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

/// The schema name and the server's URL of a [`scratch_schema`] URL; None for anything else.
fn scratch_parts(db: &str) -> Option<(&str, &str)> {
    let (base, options) = db.split_once("options=-csearch_path%3D")?;
    let schema = options.split('&').next()?;
    let schema_ok = schema.starts_with("e2e_")
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    schema_ok.then(|| (base.trim_end_matches(['?', '&']), schema))
}

/// Best effort: drop a scratch schema (a runner a test left behind may still hold a lock on
/// it: then give up after 3 s; the next sweep takes it).
fn drop_schema(url: &str, schema: &str) {
    let _ = StdCommand::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c"])
        .arg(format!(
            "SET lock_timeout = '3s'; DROP SCHEMA IF EXISTS {schema} CASCADE"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Drop the scratch schemas of test runs that ended more than 6 hours ago without dropping
/// them (killed, or crashed); at most 300 per call, one transaction each (a drop of every
/// leftover at once would outgrow the server's lock table). The age comes from the name.
fn sweep_stale_schemas(url: &str) {
    let cutoff = Utc::now().timestamp_micros() - 6 * 3600 * 1_000_000;
    let names = psql(
        url,
        &format!(
            "SELECT nspname FROM pg_namespace WHERE nspname ~ '^e2e_[0-9]+_[0-9]+_[0-9]+$' \
             AND split_part(nspname, '_', 4)::bigint < {cutoff} LIMIT 300"
        ),
    );
    for schema in names.lines().filter(|l| !l.is_empty()) {
        drop_schema(url, schema);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let db = self.db.to_string_lossy();
        if let Some((url, schema)) = scratch_parts(&db) {
            drop_schema(url, schema);
        }
    }
}

/// Run SQL with psql against `url`; its output (tuples only, `|`-separated). Panics on failure.
pub fn psql(url: &str, sql: &str) -> String {
    let out = StdCommand::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn dump(db: &Path) -> Vec<String> {
    let text = db.to_string_lossy();
    if text.starts_with("postgres://") {
        return ["settings", "jobs", "executions"]
            .iter()
            .flat_map(|table| {
                psql(&text, &format!("SELECT * FROM {table} ORDER BY 1"))
                    .lines()
                    .map(|l| format!("{table}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect();
    }
    let conn = rusqlite::Connection::open(db).expect("open db");
    let mut out = Vec::new();
    for table in ["settings", "jobs", "executions"] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1"))
            .expect("prepare");
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut cols = Vec::new();
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    cols.push(format!("{v:?}"));
                }
                Ok(format!("{table}: {}", cols.join(" | ")))
            })
            .expect("query");
        for r in rows {
            out.push(r.expect("row"));
        }
    }
    out
}

/// Send a signal to a child process.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill with a valid pid and signal.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Stop a runner with SIGTERM and check it drains and exits 0 within 20 s.
pub fn stop(runner: &mut Child) {
    signal(runner, libc::SIGTERM);
    assert_eq!(
        wait_exit(runner, Duration::from_secs(20)),
        Some(0),
        "the runner did not exit 0 after SIGTERM"
    );
}

/// Wait for a child to exit, up to `limit`; returns its exit code.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A 6-field expression that fires once, at `t` (UTC), to the second.
pub fn at(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{} {} {} {} {} *",
        t.second(),
        t.minute(),
        t.hour(),
        t.day(),
        t.month()
    )
}

/// A whole second at least `secs` seconds from now.
pub fn soon(secs: i64) -> DateTime<Utc> {
    use chrono::Timelike;
    // On PostgreSQL (the whole suite at once, in CI) a test's `add`s and the runner's start
    // can take over a second: a slot meant to come after the runner is up would pass before it
    // and be recorded missed. Future slots get two more seconds there; past ones stay exact.
    let secs = if secs > 0 && on_postgres() {
        secs + 2
    } else {
        secs
    };
    let t = Utc::now() + chrono::Duration::seconds(secs);
    t.with_nanosecond(0).unwrap() + chrono::Duration::seconds(1)
}

pub fn time(v: &Value, key: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

pub fn statuses(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

impl Env {
    /// Create the empty database, as the first command that adds to it would: commands that
    /// only read refuse a missing one.
    pub fn create_db(&self) {
        cronmgr::store::Store::open(&self.db).expect("create the database");
    }
}

// ---- skips --------------------------------------------------------------------------------

/// The switch under which any skip fails: `.ci/run` sets it, so a CI machine that lacks what a
/// test needs (root, the test user, python3, a tmpfs, PostgreSQL) fails loudly instead of
/// passing a test that never ran.
pub const NO_SKIP: &str = "CRONMGR_TEST_NO_SKIP";

/// The running test's name (libtest names each test's thread after it).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("(unnamed test)")
        .to_string()
}

/// The one way a test gives up for want of something this machine lacks: prints
/// `skipped: TEST: WHY` to stderr, or, when `CRONMGR_TEST_NO_SKIP=1`, panics (the caller then
/// `return`s; `return skip(…)` reads well).
pub fn skip(why: &str) {
    let required = std::env::var(NO_SKIP).is_ok_and(|v| v == "1");
    skip_or_fail(&current_test(), why, required);
}

/// [`skip`]'s decision, apart from the environment (unit-tested below).
pub fn skip_or_fail(test: &str, why: &str, required: bool) {
    if required {
        panic!("{test}: would be skipped: {why}; this run requires every test ({NO_SKIP}=1)");
    }
    eprintln!("skipped: {test}: {why}");
}

/// True (after saying so) when the suite runs against PostgreSQL (`CRONMGR_E2E_ON_POSTGRES`)
/// and this test is about the SQLite file itself (its lock, journal, modes, edits behind
/// cronmgr's back): the caller returns. Not a [`skip`]: nothing is missing, the test has no
/// meaning on that engine and runs in the main (SQLite) pass, so `CRONMGR_TEST_NO_SKIP` does
/// not make it fail.
pub fn sqlite_only(why: &str) -> bool {
    if !on_postgres() {
        return false;
    }
    eprintln!(
        "sqlite only: {}: not run on PostgreSQL: {why}",
        current_test()
    );
    true
}

/// True when the tests run as root; otherwise false after [`skip`] (`why`: what needs root).
pub fn root_for(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip(&format!(
            "{why} needs root (run the tests as root, as CI does)"
        ));
    }
    root
}

/// The unprivileged user the permission and limit tests act as (`.ci/run` creates it).
pub const TEST_USER: &str = "cronmgr-test";

/// The test user as `getent passwd` has it.
pub struct TestUser {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// The test user, created with `useradd` if missing; None after [`skip`] when the tests are
/// not root (they could not switch to it) or it cannot be had.
pub fn test_user() -> Option<TestUser> {
    if !root_for(&format!("acting as {TEST_USER}")) {
        return None;
    }
    let lookup = || {
        let out = StdCommand::new("getent")
            .args(["passwd", TEST_USER])
            .output()
            .ok()?;
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        let f: Vec<&str> = line.trim().split(':').collect();
        (f.len() >= 6).then_some(())?;
        Some(TestUser {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_string(),
        })
    };
    if let Some(user) = lookup() {
        return Some(user);
    }
    let created = StdCommand::new("useradd")
        .args(["--system", "--no-create-home", TEST_USER])
        .output();
    // Another test may have created it meanwhile: look again either way.
    let user = lookup();
    if user.is_none() {
        skip(&format!(
            "no user {TEST_USER} and useradd could not create it: {created:?}"
        ));
    }
    user
}

/// `path` when that program exists; None after [`skip`] otherwise.
pub fn program(path: &'static str) -> Option<&'static str> {
    if Path::new(path).exists() {
        return Some(path);
    }
    skip(&format!("{path} is missing"));
    None
}

// ---- add → run → wait → stop --------------------------------------------------------------

impl Env {
    /// Start a runner, poll `job`'s history (oldest first) until `done` returns Some or `limit`
    /// passes, stop the runner (SIGTERM, exit 0 checked) and return what `done` returned; panics
    /// with the history and the runner's log when `limit` passed first.
    pub fn run_until<T>(
        &self,
        job: &str,
        limit: Duration,
        mut done: impl FnMut(Vec<Value>) -> Option<T>,
    ) -> T {
        let mut runner = self.spawn_runner(&[]);
        let got = self.wait_for(limit, || done(self.history(job)));
        stop(&mut runner);
        got.unwrap_or_else(|| {
            panic!(
                "{job}: not there within {limit:?}; history: {:?}\nrunner log:\n{}",
                statuses(&self.history(job)),
                self.runner_log()
            )
        })
    }

    /// [`Env::run_until`] `job` has `n` executions with status `status`: those, oldest first.
    pub fn run_until_n(&self, job: &str, status: &str, n: usize, limit: Duration) -> Vec<Value> {
        self.run_until(job, limit, |rows| {
            let rows: Vec<Value> = rows.into_iter().filter(|r| r["status"] == status).collect();
            (rows.len() >= n).then_some(rows)
        })
    }

    /// [`Env::run_until`] `job` has an execution with status `status`: the first one.
    pub fn run_until_first(&self, job: &str, status: &str, limit: Duration) -> Value {
        self.run_until_n(job, status, 1, limit).remove(0)
    }
}
