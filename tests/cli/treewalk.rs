//! Tree walks that cannot be raced (issue #16 item 2), and the sqlite executor's paths and
//! statements: the real binary, through `add` and `run-now` (the `cronmgr __exec` child).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::harness::Env;

const DAY: Duration = Duration::from_secs(86_400);

/// The test config with the file executors enabled and `sections` appended.
fn configure(env: &Env, sections: &str) {
    std::fs::write(
        &env.config,
        format!("[executors]\nenabled = [\"cleanup\", \"backup\", \"sqlite\"]\n{sections}"),
    )
    .unwrap();
}

fn real(p: &Path) -> PathBuf {
    p.canonicalize().unwrap()
}

fn touch(path: &Path, modified: SystemTime) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"0123456789").unwrap();
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
}

/// The attacker's run: 20,000 old files under `a/` and an old `z/victim.log`; once the deletion
/// has started, the owner of the root swaps `z` for a symlink to another folder. Before, the file
/// of that name in the other folder was deleted (the walk had collected the path
/// `z/victim.log`); now `z` was listed as a folder and is reached only through its descriptor,
/// so the swapped-in symlink is never followed.
#[test]
fn cleanup_a_folder_swapped_for_a_symlink_during_the_run_is_not_followed() {
    let env = Env::new();
    let base = real(env.dir.path());
    let root = base.join("data");
    let outside = base.join("outside");
    // All as old as each other: a folder's files go in name order, a/0.log first.
    let old = SystemTime::now() - 30 * DAY;
    touch(&outside.join("victim.log"), old);
    for i in 0..20_000 {
        touch(&root.join(format!("a/{i}.log")), old);
    }
    touch(&root.join("z/victim.log"), old);
    configure(
        &env,
        &format!("[executors.cleanup]\nroots = [{:?}]\n", s(&root)),
    );
    env.ok(&[
        "add",
        "logs",
        "--schedule",
        "@daily",
        "--command",
        "cleanup",
        "--param",
        &format!("root={}", root.display()),
        "--param",
        "patterns=[\"**/*.log\"]",
        "--param",
        "older_than=1d",
    ]);
    // The attacker: as soon as the first file of a/ is gone, swap z.
    let first = root.join("a/0.log");
    let (z, z_old, target) = (root.join("z"), root.join("z.old"), outside.clone());
    let swapper = std::thread::spawn(move || {
        let start = Instant::now();
        while first.exists() {
            if start.elapsed() > Duration::from_secs(60) {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        std::fs::rename(&z, &z_old).unwrap();
        std::os::unix::fs::symlink(&target, &z).unwrap();
        true
    });
    let (e, code) = env.run_now_json("logs");
    assert!(swapper.join().unwrap(), "the run never started deleting");
    assert!(
        outside.join("victim.log").exists(),
        "the file outside the root was deleted: {e}"
    );
    assert!(std::fs::symlink_metadata(root.join("z"))
        .unwrap()
        .is_symlink());
    // The run noticed: z changed under it and was not entered.
    let out = e["output"].as_str().unwrap_or_default();
    assert_eq!(code, 3, "{e}");
    assert!(out.contains("removed 20000 file(s)"), "{out}");
    assert!(out.contains("z: Not a directory"), "{out}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An application database with a sessions table, and the config naming it.
fn app(env: &Env) -> PathBuf {
    let app = real(env.dir.path()).join("app.db");
    rusqlite::Connection::open(&app)
        .unwrap()
        .execute_batch(
            "CREATE TABLE sessions (id INTEGER PRIMARY KEY, expires_at TEXT NOT NULL);
             INSERT INTO sessions (expires_at) VALUES (datetime('now', '-1 day'));",
        )
        .unwrap();
    configure(
        env,
        &format!("[executors.sqlite]\ndatabases = [{:?}]\n", s(&app)),
    );
    app
}

fn add_sqlite(name: &str, database: &Path, statements: &[&str]) -> Vec<String> {
    let statements = serde_json::to_string(statements).unwrap();
    vec![
        "add".into(),
        name.into(),
        "--schedule".into(),
        "@hourly".into(),
        "--command".into(),
        "sqlite".into(),
        "--param".into(),
        format!("database={}", database.display()),
        "--param".into(),
        format!("statements={statements}"),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn sessions(app: &Path) -> i64 {
    rusqlite::Connection::open(app)
        .unwrap()
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn sqlite_add_refuses_the_statements_the_run_refuses() {
    let env = Env::new();
    let app = app(&env);
    let copy = real(env.dir.path()).join("copy.db");
    env.create_db();
    let before = env.dump();
    for (sql, needle) in [
        (
            format!("ATTACH DATABASE '{}' AS x", copy.display()),
            "ATTACH",
        ),
        (format!("VACUUM INTO '{}'", copy.display()), "VACUUM"),
        (
            "SELECT load_extension('/tmp/x.so')".into(),
            "load_extension",
        ),
        ("COMMIT".into(), "transaction"),
        ("SELECT * FROM sessions".into(), "returns rows"),
    ] {
        let a = add_sqlite("bad", &app, &["DELETE FROM sessions", &sql]);
        let err = env.fails(2, &args(&a));
        assert!(err.contains("statements[1]"), "{sql}: {err}");
        assert!(err.contains(needle), "{sql}: {err}");
    }
    assert_eq!(env.dump(), before, "a refused add changed the database");
    assert_eq!(sessions(&app), 1);
    assert!(!copy.exists());
    // What it accepts still runs.
    env.ok(&args(&add_sqlite(
        "expire",
        &app,
        &[
            "DELETE FROM sessions WHERE expires_at < datetime('now')",
            "PRAGMA optimize",
        ],
    )));
    let (e, code) = env.run_now_json("expire");
    assert_eq!(code, 0, "{e}");
    assert_eq!(sessions(&app), 0);
}

#[test]
fn sqlite_add_refuses_a_database_that_does_not_exist() {
    let env = Env::new();
    let missing = real(env.dir.path()).join("later.db");
    configure(
        &env,
        &format!("[executors.sqlite]\ndatabases = [{:?}]\n", s(&missing)),
    );
    env.create_db();
    let before = env.dump();
    let err = env.fails(2, &args(&add_sqlite("later", &missing, &["DELETE FROM t"])));
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains(s(&missing)), "{err}");
    assert_eq!(env.dump(), before);
    assert!(!missing.exists());
}

#[test]
fn sqlite_add_refuses_a_symlinked_path_unless_the_config_names_the_real_file() {
    let env = Env::new();
    let app = app(&env);
    let base = real(env.dir.path());
    std::os::unix::fs::symlink(&base, base.join("current")).unwrap();
    let via_link = base.join("current/app.db");
    // A glob that matches the real file does not make a symlinked path acceptable.
    configure(
        &env,
        &format!(
            "[executors.sqlite]\ndatabases = [{:?}]\n",
            format!("{}/*.db", base.display())
        ),
    );
    env.create_db();
    let before = env.dump();
    let err = env.fails(
        2,
        &args(&add_sqlite("linked", &via_link, &["DELETE FROM sessions"])),
    );
    assert!(err.contains("symlink"), "{err}");
    assert!(err.contains(s(&base.join("current"))), "{err}");
    assert!(
        err.contains(&format!("real path {}", app.display())),
        "{err}"
    );
    assert_eq!(env.dump(), before);
    // The real path passes; so does the link once the config names the file.
    env.ok(&args(&add_sqlite(
        "direct",
        &app,
        &["DELETE FROM sessions"],
    )));
    configure(
        &env,
        &format!("[executors.sqlite]\ndatabases = [{:?}]\n", s(&app)),
    );
    env.ok(&args(&add_sqlite(
        "linked",
        &via_link,
        &["DELETE FROM sessions"],
    )));
    let (e, code) = env.run_now_json("linked");
    assert_eq!(code, 0, "{e}");
    assert_eq!(sessions(&app), 0);
}

/// Opening the root through descriptors needs no more than a path did: an unprivileged user
/// whose root lies under a folder it may only search (mode 0711) still cleans it.
#[test]
fn cleanup_as_a_user_that_may_only_search_the_folders_above_its_root() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let Some(crate::harness::TestUser { uid, gid, .. }) = crate::harness::test_user() else {
        return;
    };
    let env = Env::new();
    let base = real(env.dir.path());
    let root = base.join("data");
    touch(&root.join("old.log"), SystemTime::now() - 30 * DAY);
    configure(
        &env,
        &format!("[executors.cleanup]\nroots = [{:?}]\n", s(&root)),
    );
    std::os::unix::fs::chown(&root, Some(uid), Some(gid)).unwrap();
    std::os::unix::fs::chown(root.join("old.log"), Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711)).unwrap();
    let params = serde_json::json!({"root": root, "patterns": ["*.log"], "older_than": "1d"});
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("cronmgr"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CRONMGR_CONFIG", &env.config)
        .env("CRONMGR_EXEC_PARAMS", params.to_string())
        .args(["__exec", "cleanup"])
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("removed 1 file(s)"), "{text}");
    assert!(!root.join("old.log").exists());
}
