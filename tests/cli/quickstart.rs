//! The README's quick start, run verbatim as a new user would: an unprivileged user with a fresh
//! `HOME`, the commands of its first code block in order, each one's exit code checked.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

const README: &str = include_str!("../../README.md");
const CONFIG: &str = include_str!("../../packaging/config.toml");

/// The first ```sh block under "## Quick start".
fn quick_start() -> Vec<String> {
    let section = &README[README
        .find("## Quick start")
        .expect("a Quick start section")..];
    let block = &section[section.find("```sh\n").expect("a sh block") + 6..];
    let block = &block[..block.find("```").expect("the block's end")];
    block.lines().map(str::to_string).collect()
}

#[test]
fn the_readme_quick_start_works_for_a_new_user() {
    let lines = quick_start();
    let build = "cargo build --release && ";
    assert!(
        lines[0].starts_with(build),
        "the quick start no longer starts by building: update this test: {}",
        lines[0]
    );
    let Some(crate::harness::TestUser { uid, gid, .. }) = crate::harness::test_user() else {
        return;
    };
    if crate::harness::sqlite_only("the quick start uses the default SQLite database") {
        return;
    }
    // A checkout as the README assumes it: the binary where `cargo build --release` puts it, the
    // example config beside it; the user's own fresh HOME.
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("cronmgr");
    let home = dir.path().join("home");
    std::fs::create_dir_all(checkout.join("target/release")).unwrap();
    std::fs::create_dir_all(checkout.join("packaging")).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    // Copied by `cp`, not by this process: a write descriptor open here would be inherited by a
    // child another test forks meanwhile, and exec of the copy would fail "Text file busy".
    let copied = std::process::Command::new("cp")
        .arg(assert_cmd::cargo::cargo_bin("cronmgr"))
        .arg(checkout.join("target/release/cronmgr"))
        .status()
        .unwrap();
    assert!(copied.success(), "cp the binary: {copied}");
    std::fs::write(checkout.join("packaging/config.toml"), CONFIG).unwrap();
    for p in [dir.path(), checkout.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();

    // Every line as written, but the build (done already: it built the binary under test), each
    // followed by its exit code on a line of its own.
    let mut script = format!("cd {}\n{}\n", checkout.display(), &lines[0][build.len()..]);
    for line in &lines[1..] {
        script.push_str(&format!("{line}\necho \"exit=$?\"\n"));
    }
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .env("TZ", "UTC")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let codes: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("exit="))
        .collect();
    assert_eq!(codes.len(), lines.len() - 1, "{stdout}\n{stderr}");
    assert!(
        codes.iter().all(|c| *c == "0"),
        "every quick start command exits 0: {codes:?}\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("hello"), "{stdout}");
    // The database is the user's own, where the README says, private to them.
    let db = home.join(".local/share/cronmgr/cronmgr.db");
    let mode = std::fs::metadata(&db)
        .expect("the default database")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "{}", db.display());
    assert_eq!(
        std::fs::metadata(db.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o750
    );
    // history: the run-now and at least two scheduled executions of the 12 s run.
    let history = Command::new(checkout.join("target/release/cronmgr"))
        .args(["--db", db.to_str().unwrap(), "--json", "history", "hello"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let triggers = |t: &str| {
        rows.iter()
            .filter(|r| r["triggered_by"] == t && r["status"] == "success")
            .count()
    };
    assert_eq!(triggers("manual"), 1, "{rows:#?}");
    assert!(triggers("schedule") >= 2, "{rows:#?}");
    assert!(Path::new(&home).join(".local/share/cronmgr").is_dir());
}
