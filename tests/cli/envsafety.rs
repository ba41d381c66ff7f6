//! Job environments and the shell allowlist: code-loading variables, NUL bytes, pinned
//! arguments, `..` in program paths, `edit -- PROG` keeping env and cwd, secret references, and
//! config files that are bad input.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::harness::{self, Env, ALLOW};

/// The test config with `extra` lines appended under `[executors.shell]` and `sections` after.
fn configure(env: &Env, shell_extra: &str, sections: &str) {
    let list: Vec<String> = ALLOW.iter().map(|p| format!("{p:?}")).collect();
    std::fs::write(
        &env.config,
        format!(
            "[executors]\nenabled = [\"shell\"]\n[executors.shell]\nallow = [{}]\n{shell_extra}\n{sections}",
            list.join(", ")
        ),
    )
    .unwrap();
}

fn add_env(name: &str, env_json: &str) -> Vec<String> {
    [
        "add",
        name,
        "--schedule",
        "@daily",
        "--param",
        &format!("env={env_json}"),
        "--",
        "/usr/bin/echo",
        "hi",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn code_loading_variables_are_refused_at_add_edit_apply_and_import() {
    let env = Env::new();
    env.ok(&[
        "add",
        "plain",
        "--schedule",
        "@daily",
        "--",
        "/usr/bin/echo",
        "x",
    ]);
    let before = env.dump();
    for (var, value) in [
        ("LD_PRELOAD", "/tmp/evil.so"),
        ("LD_LIBRARY_PATH", "/tmp"),
        ("LD_BIND_NOW", "1"),
        ("MALLOC_ARENA_MAX", "2"),
        ("GCONV_PATH", "/tmp"),
        ("GLIBC_TUNABLES", "x"),
        ("BASH_ENV", "/tmp/evil.sh"),
        ("BASH_FUNC_echo%%", "() { id; }"),
        ("PYTHONPATH", "/tmp"),
        ("PERL5OPT", "-Mevil"),
        ("NODE_OPTIONS", "--require /tmp/evil.js"),
        ("GIT_SSH_COMMAND", "sh"),
        ("PATH", "/tmp/bin:/usr/bin"),
        ("CRONMGR_CONFIG", "/tmp/evil.toml"),
    ] {
        let env_json = json!({ var: value }).to_string();
        let err = env.fails(2, &args(&add_env("pl", &env_json)));
        assert!(err.contains(var) && err.contains("refused"), "{var}: {err}");
        let err = env.fails(2, &["edit", "plain", "--param", &format!("env={env_json}")]);
        assert!(err.contains(var), "edit {var}: {err}");
    }
    // apply (a job file) and import-crontab (env lines) go through the same check.
    let file = env.dir.path().join("job.toml");
    std::fs::write(
        &file,
        "[[job]]\nname = \"filed\"\nschedule = \"@daily\"\nargv = [\"/usr/bin/echo\"]\n\
         [job.params.env]\nLD_AUDIT = \"/tmp/a.so\"\n",
    )
    .unwrap();
    let err = env.fails(2, &["apply", file.to_str().unwrap()]);
    assert!(err.contains("LD_AUDIT"), "{err}");
    let tab = env.dir.path().join("crontab");
    std::fs::write(
        &tab,
        "LD_PRELOAD=/tmp/evil.so\n* * * * * /usr/bin/echo hi\n",
    )
    .unwrap();
    let err = env.fails(2, &["import-crontab", tab.to_str().unwrap()]);
    assert!(err.contains("LD_PRELOAD"), "{err}");
    assert_eq!(env.dump(), before, "a refused command changed the database");
    // TMPDIR is in glibc's secure-mode list but chooses no code: accepted.
    env.ok(&args(&add_env("tmpdir", r#"{"TMPDIR": "/var/tmp"}"#)));
}

#[test]
fn a_code_loading_variable_edited_into_the_database_is_never_spawned() {
    let env = Env::new();
    let marker = env.dir.path().join("spawned");
    env.ok(&[
        "add",
        "j",
        "--schedule",
        "* * * * * *",
        "--",
        "/usr/bin/sh",
        "-c",
        &format!("echo spawned > {}", marker.display()),
    ]);
    let argv = json!([
        "/usr/bin/sh",
        "-c",
        format!("echo spawned > {}", marker.display())
    ]);
    env.set_params(
        "j",
        &json!({"argv": argv, "env": {"LD_PRELOAD": "/nonexistent/evil.so"}}),
    );
    let (e, code) = env.run_now_json("j");
    assert_eq!(code, 3, "{e}");
    assert_eq!(e["status"], "failed");
    assert!(
        e["pid"].is_null(),
        "a refused execution must not be spawned"
    );
    let msg = e["error_message"].as_str().unwrap();
    assert!(
        msg.contains("refused") && msg.contains("LD_PRELOAD"),
        "{msg}"
    );
    assert!(!marker.exists());

    // The runner refuses it the same way.
    env.set_params("j", &json!({"argv": argv, "env": {"PYTHONPATH": "/tmp"}}));
    let row = env.run_until("j", Duration::from_secs(15), |rows| {
        rows.into_iter().find(|r| {
            r["triggered_by"] == "schedule"
                && ["failed", "success"].contains(&r["status"].as_str().unwrap_or(""))
        })
    });
    assert_eq!(row["status"], "failed", "{row}");
    assert!(
        row["error_message"]
            .as_str()
            .unwrap()
            .contains("PYTHONPATH"),
        "{row}"
    );
    assert!(!marker.exists(), "the job was spawned");
}

#[test]
fn an_operator_may_allow_a_variable_by_name_in_a_root_owned_config() {
    let env = Env::new();
    if !harness::root_for("a root-owned config") {
        return;
    }
    configure(&env, "allow_env = [\"LD_LIBRARY_PATH\"]", "");
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.ok(&args(&add_env("lib", r#"{"LD_LIBRARY_PATH": "/opt/lib"}"#)));
    // Others stay refused.
    env.fails(2, &args(&add_env("pre", r#"{"LD_PRELOAD": "/opt/x.so"}"#)));
    // A config others may write does not count.
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = env.fails(
        2,
        &args(&add_env("lib2", r#"{"LD_LIBRARY_PATH": "/opt/lib"}"#)),
    );
    assert!(err.contains("LD_LIBRARY_PATH"), "{err}");
}

#[test]
fn nul_bytes_and_bad_names_are_refused_without_showing_the_value() {
    let env = Env::new();
    env.create_db();
    let before = env.dump();
    for (env_json, needle) in [
        (
            r#"{"PGPASSWORD": {"secret": "SeCrEt\u0000B"}}"#,
            "PGPASSWORD",
        ),
        (r#"{"PLAIN": "SeCrEt\u0000B"}"#, "PLAIN"),
        (r#"{"A=B": "SeCrEt"}"#, "A=B"),
        (r#"{"": "SeCrEt"}"#, "empty"),
    ] {
        let err = env.fails(2, &args(&add_env("n", env_json)));
        assert!(err.contains(needle), "{env_json}: {err}");
        assert!(!err.contains("SeCrEt"), "the value leaked: {err}");
    }
    assert_eq!(env.dump(), before);

    // Edited in behind cronmgr's back: refused before the spawn, the value in no message.
    if crate::harness::sqlite_only(
        "PostgreSQL's jsonb cannot hold a NUL byte, so no row can carry one",
    ) {
        return;
    }
    env.ok(&args(&add_env("n", r#"{"PGPASSWORD": {"secret": "ok"}}"#)));
    env.set_params(
        "n",
        &json!({"argv": ["/usr/bin/echo"], "env": {"PGPASSWORD": {"secret": "SeCrEt\u{0}B"}}}),
    );
    let (e, code) = env.run_now_json("n");
    assert_eq!(code, 3, "{e}");
    assert!(e["pid"].is_null());
    let text = e.to_string();
    assert!(text.contains("PGPASSWORD"), "{text}");
    assert!(!text.contains("SeCrEt"), "the value leaked: {text}");
    let history = serde_json::to_string(&env.history("n")).unwrap();
    assert!(!history.contains("SeCrEt"), "{history}");
}

#[test]
fn edit_with_a_new_program_keeps_env_and_cwd() {
    let env = Env::new();
    env.ok(&[
        "add",
        "keep",
        "--schedule",
        "@daily",
        "--param",
        r#"env={"PLAIN": "p", "TOKEN": {"secret": "tok-secret"}}"#,
        "--param",
        "cwd=/tmp",
        "--",
        "/usr/bin/echo",
        "old",
    ]);
    env.ok(&[
        "edit",
        "keep",
        "--",
        "/usr/bin/sh",
        "-c",
        "test \"$TOKEN\" = tok-secret && test \"$PLAIN\" = p && test \"$(pwd)\" = /tmp",
    ]);
    let shown = env.json(&["show", "keep"]);
    assert_eq!(shown["params"]["cwd"], "/tmp", "{shown}");
    assert_eq!(shown["params"]["env"]["PLAIN"], "p", "{shown}");
    assert_eq!(shown["params"]["argv"][0], "/usr/bin/sh", "{shown}");
    let (e, code) = env.run_now_json("keep");
    assert_eq!(code, 0, "{e}");
}

#[test]
fn dot_dot_in_a_program_path_is_refused() {
    let env = Env::new();
    env.create_db();
    let before = env.dump();
    let err = env.fails(
        2,
        &[
            "add",
            "dd",
            "--schedule",
            "@daily",
            "--",
            "/usr/bin/../bin/echo",
            "hi",
        ],
    );
    assert!(err.contains(".."), "{err}");
    assert_eq!(env.dump(), before);
}

#[test]
fn an_allowlist_entry_may_pin_the_arguments() {
    let env = Env::new();
    std::fs::write(
        &env.config,
        "[executors]\nenabled = [\"shell\"]\n[executors.shell]\nallow = [\n\
         \"/usr/bin/true\",\n\
         { program = \"/usr/bin/date\", args = [\"-u\"] },\n\
         { program = \"/usr/bin/echo\", args_prefix = [\"--\", \"safe\"] },\n]\n",
    )
    .unwrap();
    env.ok(&[
        "add",
        "d",
        "--schedule",
        "@daily",
        "--",
        "/usr/bin/date",
        "-u",
    ]);
    env.ok(&[
        "add",
        "t",
        "--schedule",
        "@daily",
        "--",
        "/usr/bin/true",
        "any",
        "thing",
    ]);
    env.ok(&[
        "add",
        "e",
        "--schedule",
        "@daily",
        "--",
        "/usr/bin/echo",
        "--",
        "safe",
        "x",
    ]);
    let before = env.dump();
    let err = env.fails(
        2,
        &[
            "add",
            "x",
            "--schedule",
            "@daily",
            "--",
            "/usr/bin/date",
            "-f",
            "/etc/shadow",
        ],
    );
    assert!(err.contains("/usr/bin/date") && err.contains("-u"), "{err}");
    env.fails(
        2,
        &["add", "x", "--schedule", "@daily", "--", "/usr/bin/date"],
    );
    env.fails(
        2,
        &[
            "add",
            "x",
            "--schedule",
            "@daily",
            "--",
            "/usr/bin/echo",
            "safe",
        ],
    );
    assert_eq!(env.dump(), before);
    // Checked again before the run.
    env.set_params(
        "d",
        &json!({"argv": ["/usr/bin/date", "-f", "/etc/shadow"]}),
    );
    let (e, code) = env.run_now_json("d");
    assert_eq!(code, 3, "{e}");
    assert!(e["pid"].is_null());
}

#[test]
fn the_shipped_config_allows_no_program_that_runs_code_or_reads_files() {
    let env = Env::new();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.toml");
    let config = config.to_str().unwrap();
    for (i, argv) in [
        &[
            "/usr/bin/apt-get",
            "-o",
            "APT::Update::Pre-Invoke::=/bin/sh",
            "update",
        ][..],
        &[
            "/usr/bin/apt-get",
            "--simulate",
            "--quiet",
            "upgrade",
            "-o",
            "x=y",
        ],
        &["/usr/bin/date", "-f", "/etc/shadow"],
        &["/usr/bin/date", "--file=/etc/shadow"],
        &["/usr/bin/sh", "-c", "id"],
        &["/usr/bin/env", "id"],
    ]
    .iter()
    .enumerate()
    {
        let name = format!("x{i}");
        let out = env
            .cmd()
            .args([
                "--config",
                config,
                "add",
                &name,
                "--schedule",
                "@daily",
                "--",
            ])
            .args(*argv)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{argv:?} was accepted: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = env
        .cmd()
        .args(["--config", config, "add", "e", "--schedule", "@daily", "--"])
        .args(["/usr/bin/echo", "hello"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_files_with_mistakes_are_bad_input() {
    let env = Env::new();
    let add = ["add", "x", "--schedule", "@daily", "--", "/usr/bin/echo"];
    std::fs::write(
        &env.config,
        "[executors]\nenabled = [\"shell\", \"teleport\"]\n",
    )
    .unwrap();
    let err = env.fails(2, &add);
    assert!(
        err.contains("teleport") && err.contains("shell, http"),
        "{err}"
    );
    std::fs::write(&env.config, "[executors\nenabled = [\"shell\"]\n").unwrap();
    let err = env.fails(2, &add);
    assert!(err.contains("config"), "{err}");
    std::fs::write(
        &env.config,
        "[executors.shell]\nallow = [{ program = \"/usr/bin/echo\", args = [], args_prefix = [] }]\n",
    )
    .unwrap();
    let err = env.fails(2, &add);
    assert!(err.contains("args_prefix"), "{err}");
}

/// A secret file: `mode`, owned by whoever runs the test (root in CI).
fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn secret_references_resolve_at_spawn_from_credentials_or_the_secrets_dir() {
    let env = Env::new();
    let secrets = env.dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    configure(
        &env,
        "",
        &format!("[secrets]\ndir = {:?}\n", secrets.to_str().unwrap()),
    );
    secret_file(&secrets, "db-pass", "from-dir-value\n", 0o600);
    env.ok(&[
        "add",
        "s",
        "--schedule",
        "@daily",
        "--param",
        r#"env={"PGPASSWORD": {"secret_ref": "db-pass"}}"#,
        "--",
        "/usr/bin/sh",
        "-c",
        "test \"$PGPASSWORD\" = from-dir-$0",
        "value",
    ]);
    let (e, code) = env.run_now_json("s");
    assert_eq!(code, 0, "{e}");
    // Listings show the reference, never a value.
    let shown = env.ok(&["--json", "show", "s"]) + &env.ok(&["export"]);
    assert!(
        shown.contains("db-pass") && !shown.contains("from-dir-value"),
        "{shown}"
    );

    // Unsafe files are refused, naming the secret and the path, never the value.
    secret_file(&secrets, "db-pass", "from-dir-value\n", 0o640);
    let (e, code) = env.run_now_json("s");
    assert_eq!(code, 3, "{e}");
    let msg = e["error_message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("db-pass") && msg.contains(secrets.to_str().unwrap()),
        "{msg}"
    );
    assert!(!e.to_string().contains("from-dir-value"));
    assert!(e["pid"].is_null());
    secret_file(&secrets, "db-pass", "from-dir\0value\n", 0o600);
    let (e, code) = env.run_now_json("s");
    assert_eq!(code, 3, "{e}");
    assert!(!e.to_string().contains("from-dir"), "{e}");
    std::fs::remove_file(secrets.join("db-pass")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", secrets.join("db-pass")).unwrap();
    let (e, code) = env.run_now_json("s");
    assert_eq!(code, 3, "a symlink was followed: {e}");
    std::fs::remove_file(secrets.join("db-pass")).unwrap();
    let (e, code) = env.run_now_json("s");
    assert_eq!(code, 3, "{e}");
    assert!(
        e["error_message"].as_str().unwrap().contains("db-pass"),
        "{e}"
    );

    // $CREDENTIALS_DIRECTORY (systemd LoadCredential=) comes first.
    let creds = env.dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    secret_file(&creds, "db-pass", "from-creds\n", 0o400);
    env.ok(&[
        "edit",
        "s",
        "--schedule",
        "* * * * * *",
        "--",
        "/usr/bin/sh",
        "-c",
        "test \"$PGPASSWORD\" = from-creds",
    ]);
    let mut runner =
        env.spawn_runner_env(&[], &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())]);
    let row = env.wait_for(Duration::from_secs(15), || {
        env.history("s").into_iter().find(|r| {
            r["triggered_by"] == "schedule"
                && ["failed", "success"].contains(&r["status"].as_str().unwrap_or(""))
        })
    });
    harness::stop(&mut runner);
    let row = row.expect("the runner recorded no execution");
    assert_eq!(row["status"], "success", "{row}");

    // Names are checked at add.
    for bad in [".hidden", "a/b", "../x", ""] {
        let err = env.fails(
            2,
            &args(&add_env(
                "b",
                &json!({"T": {"secret_ref": bad}}).to_string(),
            )),
        );
        assert!(err.contains("secret_ref"), "{bad}: {err}");
    }
}
