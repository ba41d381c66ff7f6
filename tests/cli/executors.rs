//! The built-in executors end to end: added with `--command`, run through `run-now` (the
//! `cronmgr __exec` child), refused at `add` and again at run time when a row is edited.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use assert_cmd::Command;

use serde_json::Value;

use crate::harness::Env;

const DAY: Duration = Duration::from_secs(86_400);

/// The test config with every built-in enabled and `sections` appended.
fn configure(env: &Env, sections: &str) {
    std::fs::write(
        &env.config,
        format!(
            "[executors]\nenabled = [\"shell\", \"http\", \"cleanup\", \"backup\", \"sqlite\", \"healthcheck\", \"report\"]\n\
             [executors.shell]\nallow = [\"/usr/bin/echo\", \"/usr/bin/false\"]\n{sections}"
        ),
    )
    .unwrap();
}

/// An HTTP server on 127.0.0.1 answering `status` and `body`; counts the requests it gets.
fn serve(status: u16, body: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut buf = vec![0; len];
            let _ = reader.read_exact(&mut buf);
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

fn output(e: &Value) -> String {
    e["output"].as_str().unwrap_or_default().to_string()
}

fn touch(path: &Path, age: Duration) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"0123456789").unwrap();
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

fn real(p: &Path) -> PathBuf {
    p.canonicalize().unwrap()
}

#[test]
fn the_exec_subcommand_is_hidden() {
    let env = Env::new();
    let help = env.ok(&["--help"]);
    assert!(!help.contains("__exec"), "{help}");
    for shell in ["bash", "zsh", "fish"] {
        let completions = env.ok(&["generate", "completions", shell]);
        assert!(!completions.contains("__exec"), "{shell}: {completions}");
    }
    // Run by hand without its environment (as the runner starts it: `__exec` first), it refuses.
    let out = Command::cargo_bin("cronmgr")
        .unwrap()
        .env_clear()
        .env("CRONMGR_DB", &env.db)
        .env("CRONMGR_CONFIG", &env.config)
        .args(["__exec", "http"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CRONMGR_EXEC_PARAMS"), "{err}");
    // Anywhere else it is no command at all.
    let err = env.fails(2, &["__exec", "http"]);
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

#[test]
fn http_records_status_and_body_and_fails_on_a_wrong_status() {
    let env = Env::new();
    let (ok_port, _) = serve(200, "device synced");
    let (bad_port, _) = serve(500, "boom");
    configure(
        &env,
        &format!(
            "[executors.http]\nallow_hosts = [\"127.0.0.1:{ok_port}\", \"127.0.0.1:{bad_port}\"]\n"
        ),
    );
    env.ok(&[
        "add",
        "sync",
        "--schedule",
        "@daily",
        "--command",
        "http",
        "--param",
        &format!("url=http://127.0.0.1:{ok_port}/sync"),
        "--param",
        "headers={\"Authorization\": \"Bearer secret\"}",
    ]);
    let (e, code) = env.run_now_json("sync");
    assert_eq!(code, 0, "{e}");
    assert_eq!(e["status"], "success");
    assert_eq!(e["exit_code"], 0);
    let out = output(&e);
    assert!(
        out.contains("GET http://127.0.0.1:") && out.contains("status 200"),
        "{out}"
    );
    assert!(out.contains("device synced"), "{out}");
    assert!(!out.contains("secret"), "headers must not be echoed: {out}");

    env.ok(&[
        "add",
        "broken",
        "--schedule",
        "@daily",
        "--command",
        "http",
        "--param",
        &format!("url=http://127.0.0.1:{bad_port}/"),
    ]);
    let (e, code) = env.run_now_json("broken");
    assert_eq!(code, 3, "{e}");
    assert_eq!(e["status"], "failed");
    assert_eq!(e["exit_code"], 1);
    let out = output(&e);
    assert!(out.contains("status 500") && out.contains("boom"), "{out}");
    assert!(out.contains("1 of 1 request(s) failed"), "{out}");
}

#[test]
fn http_refuses_hosts_off_the_allowlist_at_add_and_at_run() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    let (port, hits) = serve(200, "ok");
    let (other, other_hits) = serve(200, "should not be called");
    configure(
        &env,
        &format!("[executors.http]\nallow_hosts = [\"127.0.0.1:{port}\"]\n"),
    );
    env.ok(&["add", "x", "--schedule", "@daily", "--", "/bin/echo", "x"]);
    let before = env.dump();
    let err = env.fails(
        2,
        &[
            "add",
            "evil",
            "--schedule",
            "@daily",
            "--command",
            "http",
            "--param",
            &format!("url=http://127.0.0.1:{other}/"),
        ],
    );
    assert!(
        err.contains("not allowed by [executors.http] allow_hosts"),
        "{err}"
    );
    assert_eq!(env.dump(), before, "a refused add changed the database");

    env.ok(&[
        "add",
        "ping",
        "--schedule",
        "@daily",
        "--command",
        "http",
        "--param",
        &format!("url=http://127.0.0.1:{port}/"),
    ]);
    env.set_params(
        "ping",
        &serde_json::json!({"url": format!("http://127.0.0.1:{other}/")}),
    );
    let (e, code) = env.run_now_json("ping");
    assert_eq!(code, 3, "{e}");
    assert_eq!(e["status"], "failed");
    assert!(
        e["pid"].is_null(),
        "a refused execution must not be spawned"
    );
    assert!(
        e["error_message"].as_str().unwrap().contains("not allowed"),
        "{e}"
    );
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[test]
fn cleanup_deletes_old_files_keeps_the_newest_and_never_follows_symlinks() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    let base = real(env.dir.path());
    let root = base.join("data");
    let outside = base.join("outside/precious.log");
    touch(&outside, 30 * DAY);
    for conn in ["conn1", "conn2"] {
        for i in 1..=4u32 {
            touch(&root.join(format!("logs/{conn}/{i}.log")), DAY * (i * 3));
        }
    }
    touch(&root.join("logs/conn1/notes.txt"), 30 * DAY);
    std::os::unix::fs::symlink(&outside, root.join("logs/conn1/link.log")).unwrap();
    std::os::unix::fs::symlink(outside.parent().unwrap(), root.join("logs/outdir")).unwrap();
    configure(
        &env,
        &format!(
            "[executors.cleanup]\nroots = [{:?}]\n",
            root.display().to_string()
        ),
    );
    let add = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "add".to_string(),
            name.to_string(),
            "--schedule".into(),
            "@daily".into(),
            "--command".into(),
            "cleanup".into(),
            "--param".into(),
            format!("root={}", root.display()),
            "--param".into(),
            "patterns=[\"logs/**/*.log\"]".into(),
        ];
        for e in extra {
            args.push("--param".into());
            args.push(e.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.ok(&args);
    };
    // Files are 3, 6, 9 and 12 days old in each folder.
    add("dry", &["older_than=7d", "dry_run=true"]);
    let (e, code) = env.run_now_json("dry");
    assert_eq!(code, 0, "{e}");
    let out = output(&e);
    assert!(out.contains("would remove 4 file(s)"), "{out}");
    assert_eq!(
        std::fs::read_dir(root.join("logs/conn2")).unwrap().count(),
        4
    );

    add("trim", &["older_than=5d", "keep_newest=3"]);
    let (e, code) = env.run_now_json("trim");
    assert_eq!(code, 0, "{e}");
    let out = output(&e);
    assert!(out.contains("removed 2 file(s), 20 B"), "{out}");
    assert!(out.contains("skipped 1 symlink"), "{out}");
    for conn in ["conn1", "conn2"] {
        assert!(!root.join(format!("logs/{conn}/4.log")).exists(), "{out}");
        for i in 1..=3 {
            assert!(root.join(format!("logs/{conn}/{i}.log")).exists(), "{out}");
        }
    }
    assert!(outside.exists(), "the symlink's target was deleted");
    assert!(std::fs::symlink_metadata(root.join("logs/conn1/link.log")).is_ok());
    assert!(root.join("logs/conn1/notes.txt").exists());

    // A root off the allowlist is refused at add…
    let err = env.fails(
        2,
        &[
            "add",
            "wide",
            "--schedule",
            "@daily",
            "--command",
            "cleanup",
            "--param",
            &format!("root={}", base.join("outside").display()),
            "--param",
            "patterns=[\"*\"]",
            "--param",
            "older_than=1d",
        ],
    );
    assert!(err.contains("[executors.cleanup] roots"), "{err}");
    // …and at run time when the row is edited.
    env.set_params(
        "trim",
        &serde_json::json!({"root": base.join("outside"), "patterns": ["*"], "older_than": "1d"}),
    );
    let (e, code) = env.run_now_json("trim");
    assert_eq!(code, 3, "{e}");
    assert!(
        e["error_message"].as_str().unwrap().contains("roots"),
        "{e}"
    );
    assert!(outside.exists());
}

#[test]
fn backup_writes_an_archive_tar_can_list_and_keeps_the_newest() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    let base = real(env.dir.path());
    let src = base.join("etc/app");
    let dest = base.join("backups");
    std::fs::create_dir_all(src.join("conf.d")).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(src.join("app.toml"), "a = 1\n").unwrap();
    std::fs::write(src.join("conf.d/db.toml"), "b = 2\n").unwrap();
    configure(
        &env,
        &format!(
            "[executors.backup]\nsources = [{:?}]\ndestinations = [{:?}]\n",
            src.display().to_string(),
            dest.display().to_string()
        ),
    );
    env.ok(&[
        "add",
        "conf",
        "--schedule",
        "@daily",
        "--command",
        "backup",
        "--param",
        &format!("paths=[{:?}]", src.display().to_string()),
        "--param",
        &format!("dest={}", dest.display()),
        "--param",
        "name=app-config",
        "--param",
        "keep=2",
    ]);
    for _ in 0..3 {
        let (e, code) = env.run_now_json("conf");
        assert_eq!(code, 0, "{e}");
        assert!(output(&e).contains("verified"), "{e}");
    }
    let mut archives: Vec<PathBuf> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    archives.sort();
    assert_eq!(archives.len(), 2, "{archives:?}");
    for a in &archives {
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("app-config-") && name.ends_with("Z.tar.gz"),
            "{name}"
        );
        let out = std::process::Command::new("tar")
            .arg("-tzf")
            .arg(a)
            .output()
            .unwrap();
        assert!(out.status.success());
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(list.contains("etc/app/conf.d/db.toml"), "{list}");
        assert!(list.contains("etc/app/app.toml"), "{list}");
    }
    // A source off the allowlist is refused at add.
    let err = env.fails(
        2,
        &[
            "add",
            "passwd",
            "--schedule",
            "@daily",
            "--command",
            "backup",
            "--param",
            "paths=[\"/etc/passwd\"]",
            "--param",
            &format!("dest={}", dest.display()),
            "--param",
            "name=x",
        ],
    );
    assert!(err.contains("[executors.backup] sources"), "{err}");
    // …and a destination edited in behind cronmgr's back at run time.
    env.set_params(
        "conf",
        &serde_json::json!({"paths": [src], "dest": base, "name": "app-config"}),
    );
    let (e, code) = env.run_now_json("conf");
    assert_eq!(code, 3, "{e}");
    assert!(
        e["error_message"]
            .as_str()
            .unwrap()
            .contains("destinations"),
        "{e}"
    );
}

#[test]
fn sqlite_expires_sessions_in_one_transaction() {
    let env = Env::new();
    if crate::harness::sqlite_only("reads or changes the SQLite file itself") {
        return;
    }
    let base = real(env.dir.path());
    let app = base.join("app.db");
    let conn = rusqlite::Connection::open(&app).unwrap();
    conn.execute_batch(
        "CREATE TABLE sessions (id INTEGER PRIMARY KEY, expires_at TEXT NOT NULL);
         INSERT INTO sessions (expires_at) VALUES
           (datetime('now', '-1 day')), (datetime('now', '-1 hour')), (datetime('now', '+1 day'));
         CREATE TABLE seen (x INTEGER UNIQUE); INSERT INTO seen VALUES (1);",
    )
    .unwrap();
    drop(conn);
    configure(
        &env,
        &format!(
            "[executors.sqlite]\ndatabases = [{:?}]\n",
            app.display().to_string()
        ),
    );
    let count = || -> i64 {
        rusqlite::Connection::open(&app)
            .unwrap()
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap()
    };
    env.ok(&[
        "add",
        "expire",
        "--schedule",
        "@hourly",
        "--command",
        "sqlite",
        "--param",
        &format!("database={}", app.display()),
        "--param",
        "statements=[\"DELETE FROM sessions WHERE expires_at < datetime('now')\"]",
    ]);
    let (e, code) = env.run_now_json("expire");
    assert_eq!(code, 0, "{e}");
    assert!(output(&e).contains("2 row(s) changed in total"), "{e}");
    assert_eq!(count(), 1);

    // The second statement fails: the first is rolled back.
    env.ok(&[
        "add",
        "bad",
        "--schedule",
        "@hourly",
        "--command",
        "sqlite",
        "--param",
        &format!("database={}", app.display()),
        "--param",
        "statements=[\"DELETE FROM sessions\", \"INSERT INTO seen VALUES (1)\"]",
    ]);
    let (e, code) = env.run_now_json("bad");
    assert_eq!(code, 3, "{e}");
    assert!(output(&e).contains("rolled back"), "{e}");
    assert_eq!(count(), 1);

    // Refused at add: a typo, and a database off the allowlist.
    let err = env.fails(
        2,
        &[
            "add",
            "typo",
            "--schedule",
            "@hourly",
            "--command",
            "sqlite",
            "--param",
            &format!("database={}", app.display()),
            "--param",
            "statements=[\"DELETE FROM sesions\"]",
        ],
    );
    assert!(err.contains("no such table"), "{err}");
    let other = base.join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x);")
        .unwrap();
    let err = env.fails(
        2,
        &[
            "add",
            "other",
            "--schedule",
            "@hourly",
            "--command",
            "sqlite",
            "--param",
            &format!("database={}", other.display()),
            "--param",
            "statements=[\"DELETE FROM t\"]",
        ],
    );
    assert!(err.contains("[executors.sqlite] databases"), "{err}");
    // Refused at run time when edited in.
    env.set_params(
        "expire",
        &serde_json::json!({"database": other, "statements": ["DELETE FROM t"]}),
    );
    let (e, code) = env.run_now_json("expire");
    assert_eq!(code, 3, "{e}");
    assert!(
        e["error_message"].as_str().unwrap().contains("databases"),
        "{e}"
    );
}

#[test]
fn healthcheck_passes_and_fails_on_its_thresholds() {
    let env = Env::new();
    let (port, _) = serve(200, "healthy");
    configure(
        &env,
        &format!("[executors.http]\nallow_hosts = [\"127.0.0.1:{port}\"]\n"),
    );
    env.ok(&[
        "add",
        "fine",
        "--schedule",
        "*/5 * * * *",
        "--command",
        "healthcheck",
        "--param",
        "disks=[{\"path\": \"/\", \"min_free\": \"0%\"}]",
        "--param",
        "min_available_memory=1MiB",
        "--param",
        "max_load_per_core=100000",
        "--param",
        &format!("http=[{{\"url\": \"http://127.0.0.1:{port}/health\"}}]"),
    ]);
    let (e, code) = env.run_now_json("fine");
    assert_eq!(code, 0, "{e}");
    let out = output(&e);
    assert!(
        out.contains("disk /") && out.contains("http http://127.0.0.1"),
        "{out}"
    );
    assert!(!out.contains("FAIL"), "{out}");

    env.ok(&[
        "add",
        "full",
        "--schedule",
        "*/5 * * * *",
        "--command",
        "healthcheck",
        "--param",
        "disks=[{\"path\": \"/\", \"min_free\": \"100%\"}]",
        "--param",
        "min_available_memory=1000TiB",
    ]);
    let (e, code) = env.run_now_json("full");
    assert_eq!(code, 3, "{e}");
    let out = output(&e);
    assert!(
        out.contains("FAIL") && out.contains("2 of 2 check(s) failed"),
        "{out}"
    );

    let err = env.fails(
        2,
        &[
            "add",
            "probe",
            "--schedule",
            "@daily",
            "--command",
            "healthcheck",
            "--param",
            "http=[{\"url\": \"http://example.com/\"}]",
        ],
    );
    assert!(err.contains("allow_hosts"), "{err}");
}

#[test]
fn report_summarises_executions_of_jobs_that_ran() {
    let env = Env::new();
    configure(&env, "");
    env.ok(&[
        "add",
        "good",
        "--schedule",
        "@daily",
        "--",
        "/bin/echo",
        "hi",
    ]);
    env.ok(&["add", "bad", "--schedule", "@daily", "--", "/bin/false"]);
    for _ in 0..3 {
        env.ok(&["run-now", "good"]);
    }
    env.fails(3, &["run-now", "bad"]);
    env.ok(&[
        "add",
        "weekly",
        "--schedule",
        "0 8 * * mon",
        "--command",
        "report",
        "--param",
        "period=7d",
        "--param",
        "format=json",
    ]);
    let (e, code) = env.run_now_json("weekly");
    assert_eq!(code, 0, "{e}");
    let report: Value =
        serde_json::from_str(&output(&e)).unwrap_or_else(|err| panic!("{err}: {e}"));
    let job = |name: &str| {
        report["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {report}"))
            .clone()
    };
    let good = job("good");
    assert_eq!(good["runs"], 3);
    assert_eq!(good["success_rate"], 1.0);
    assert!(good["p95_duration_ms"].is_number());
    let bad = job("bad");
    assert_eq!(bad["failures"], 1);
    assert_eq!(bad["success_rate"], 0.0);
    assert_eq!(bad["latest_errors"][0]["message"], "exited with status 1");

    env.ok(&["add", "text", "--schedule", "@daily", "--command", "report"]);
    let (e, code) = env.run_now_json("text");
    assert_eq!(code, 0, "{e}");
    let out = output(&e);
    assert!(out.contains("good") && out.contains("100.0%"), "{out}");
    assert!(out.contains("latest errors of bad"), "{out}");
}

#[test]
fn a_disabled_builtin_is_refused() {
    let env = Env::new();
    let err = env.fails(
        2,
        &["add", "r", "--schedule", "@daily", "--command", "report"],
    );
    assert!(err.contains("not enabled"), "{err}");
}
