//! A fleet against a PostgreSQL server that fails: restarted under three runners, a member's
//! write transaction that stalls while it holds the writers' lock, and TLS (verify-full with a
//! test CA, a wrong CA, plaintext against a server that requires TLS).
//!
//! Each test starts a PRIVATE server (initdb into a temporary folder, as the `postgres` user, on
//! a free port of 127.0.0.1): restarting the shared one would break the tests using it, and the
//! writers' advisory lock is per database. Without the server's binaries or root, it skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use serde_json::Value;

use crate::harness::{root_for, skip, stop, time, Env};

/// A PostgreSQL server of its own, in a temporary folder, stopped when dropped.
pub(crate) struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `-o` options of the postmaster (port, socket folder, TLS).
    opts: String,
}

impl PrivatePg {
    /// initdb + start; None (after saying why) where that cannot be done here.
    pub(crate) fn start(tls: Option<&Path>) -> Option<PrivatePg> {
        if !root_for("starting a private PostgreSQL as the postgres user") {
            return None;
        }
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            let mut v: Vec<PathBuf> = d.flatten().map(|e| e.path().join("bin")).collect();
            v.sort();
            v.into_iter().rev().find(|b| b.join("initdb").exists())
        });
        let Some(bin) = bin else {
            skip("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let path = dir.path().to_path_buf();
        chown_postgres(&path);
        as_postgres(&format!(
            "{}/initdb -D {}/data -A trust -U postgres >/dev/null",
            bin.display(),
            path.display()
        ));
        let mut opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            path.display()
        );
        if let Some(certs) = tls {
            for f in ["server.crt", "server.key"] {
                std::fs::copy(certs.join(f), path.join("data").join(f)).expect("copy cert");
            }
            chown_postgres(&path.join("data"));
            as_postgres(&format!("chmod 600 {}/data/server.key", path.display()));
            opts.push_str(" -c ssl=on");
            // Plaintext connections over TCP are refused: TLS or nothing.
            std::fs::write(
                path.join("data/pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .expect("pg_hba");
        }
        let pg = PrivatePg {
            dir,
            bin,
            port,
            opts,
        };
        pg.ctl("start");
        Some(pg)
    }

    pub(crate) fn ctl(&self, what: &str) {
        as_postgres(&format!(
            "{}/pg_ctl -D {dir}/data -o '{}' -l {dir}/server.log -w -m fast {what} >/dev/null",
            self.bin.display(),
            self.opts,
            dir = self.dir.path().display()
        ));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `psql` reading its statements from a pipe, as a member of the fleet would be
    /// (cronmgr's session settings).
    fn member_psql_stdin(&self) -> Child {
        StdCommand::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &self.url()])
            .env("PGOPTIONS", member_options())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("psql.log")).expect("log"))
            .spawn()
            .expect("psql")
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        as_postgres_quiet(&format!(
            "{}/pg_ctl -D {}/data -m immediate -w stop",
            self.bin.display(),
            self.dir.path().display()
        ));
    }
}

/// cronmgr's session settings as `PGOPTIONS`.
fn member_options() -> String {
    cronmgr::store::SESSION_SETTINGS
        .iter()
        .map(|(k, v)| format!("-c {k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn chown_postgres(path: &Path) {
    let ok = StdCommand::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .expect("chown");
    assert!(ok.success(), "chown postgres {}", path.display());
}

fn as_postgres(cmd: &str) {
    let out = StdCommand::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c", cmd])
        .output()
        .expect("su postgres");
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_postgres_quiet(cmd: &str) {
    let _ = StdCommand::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c", cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A test environment whose database is the private server's.
pub(crate) fn env_on(pg: &PrivatePg) -> Env {
    let mut env = Env::new();
    env.db = PathBuf::from(pg.url());
    env
}

fn every_second(env: &Env) {
    env.ok(&[
        "add",
        "tick",
        "--schedule",
        "*/1 * * * * *",
        "--",
        "/usr/bin/echo",
        "tick",
    ]);
}

fn runners_up(env: &Env, n: usize) {
    let up = env.wait_for(Duration::from_secs(20), || {
        let list = env.json(&["runners"]);
        (list.as_array().unwrap().len() >= n).then_some(())
    });
    assert!(up.is_some(), "{n} runners did not register");
}

fn logs(env: &Env, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("--- runner {n}\n{}", env.named_runner_log(n)))
        .collect()
}

/// Every whole second strictly inside (from, to).
fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut t = from.duration_trunc(Span::seconds(1)).unwrap() + Span::seconds(1);
    let mut out = Vec::new();
    while t < to {
        out.push(t);
        t += Span::seconds(1);
    }
    out
}

/// The scheduled rows (attempt 1) by slot; panics if a slot has two (it ran, or was
/// recorded, twice).
fn by_slot(rows: &[Value]) -> BTreeMap<DateTime<Utc>, Value> {
    let mut out = BTreeMap::new();
    for r in rows.iter().filter(|r| r["attempt"] == 1) {
        let slot = time(r, "scheduled_for");
        assert!(
            out.insert(slot, r.clone()).is_none(),
            "slot {slot} has two rows: {rows:#?}"
        );
    }
    out
}

/// Every second of the window ran or has a row saying why not (a `missed` row may cover a
/// range: "missed N slots from A to B"); none ran twice. The number that ran.
fn every_slot_accounted(
    rows: &[Value],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    log: &str,
) -> usize {
    let slots = by_slot(rows);
    let ranges: Vec<(DateTime<Utc>, DateTime<Utc>)> = rows
        .iter()
        .filter(|r| r["status"] == "missed")
        .filter_map(|r| {
            // "missed N slots from A to B: why"
            let m = r["error_message"].as_str()?;
            let rest = m.split(" from ").nth(1)?;
            let (a, b) = rest.split_once(" to ")?;
            let b = b.split_whitespace().next()?.trim_end_matches(':');
            Some((
                DateTime::parse_from_rfc3339(a).ok()?.with_timezone(&Utc),
                DateTime::parse_from_rfc3339(b).ok()?.with_timezone(&Utc),
            ))
        })
        .collect();
    let mut ran = 0;
    for second in seconds_between(from, to) {
        match slots.get(&second) {
            Some(row) if row["status"] == "success" => ran += 1,
            Some(row) => assert!(
                row["error_message"].as_str().is_some_and(|m| !m.is_empty()),
                "slot {second} is {} without a reason: {row:#}",
                row["status"]
            ),
            None => assert!(
                ranges.iter().any(|(a, b)| *a <= second && second <= *b),
                "slot {second} has no row\n{log}"
            ),
        }
    }
    ran
}

#[test]
fn three_runners_outlive_two_restarts_of_the_database_and_account_for_every_slot() {
    let Some(pg) = PrivatePg::start(None) else {
        return;
    };
    let env = env_on(&pg);
    every_second(&env);
    let names = ["a", "b", "c"];
    let mut runners: Vec<Child> = names
        .iter()
        .map(|n| env.spawn_named_runner(n, &[]))
        .collect();
    runners_up(&env, 3);
    let from = Utc::now();
    for _ in 0..2 {
        sleep(Duration::from_secs(4));
        pg.ctl("restart");
    }
    sleep(Duration::from_secs(5));
    let to = Utc::now();
    let log = logs(&env, &names);
    for (r, n) in runners.iter_mut().zip(names) {
        assert!(
            r.try_wait().expect("try_wait").is_none(),
            "runner {n} exited after the restarts\n{log}"
        );
    }
    for r in &mut runners {
        stop(r);
    }
    let log = logs(&env, &names);
    assert!(
        log.matches("reconnected to the database").count() >= 2,
        "the runners reconnected\n{log}"
    );
    let rows = env.history("tick");
    let ran = every_slot_accounted(&rows, from, to, &log);
    let expected = seconds_between(from, to).len();
    eprintln!("{ran} of {expected} slots ran across two restarts; the rest have rows saying why");
    // The restarts take about a second each: most slots ran, late or on time.
    assert!(ran + 6 >= expected, "{ran} of {expected} ran\n{log}");
    // The slots after the second restart ran: the fleet works again.
    let slots = by_slot(&rows);
    let last = seconds_between(to - Span::seconds(3), to);
    for s in &last {
        assert_eq!(
            slots.get(s).map(|r| &r["status"]),
            Some(&Value::from("success")),
            "{s}\n{log}"
        );
    }
}

/// Two runners sharing an every-second job that may overlap (slots that wait all start once
/// they can, none skipped for waiting), both registered and the job seen running.
fn two_runners_running(pg: &PrivatePg) -> (Env, Vec<Child>) {
    let env = env_on(pg);
    every_second(&env);
    env.ok(&["edit", "tick", "--allow-concurrent", "true"]);
    let runners = vec![
        env.spawn_named_runner("a", &[]),
        env.spawn_named_runner("b", &[]),
    ];
    runners_up(&env, 2);
    let seen = env.wait_for(Duration::from_secs(20), || {
        (env.history("tick").len() >= 2).then_some(())
    });
    assert!(
        seen.is_some(),
        "the job never ran\n{}",
        logs(&env, &["a", "b"])
    );
    (env, runners)
}

/// Every slot in (from, to) ran once; the latest start after its slot.
fn worst_start(env: &Env, from: DateTime<Utc>, to: DateTime<Utc>, log: &str) -> Duration {
    let rows = env.history("tick");
    every_slot_accounted(&rows, from, to, log);
    let slots = by_slot(&rows);
    let mut worst = Duration::ZERO;
    for s in seconds_between(from, to) {
        let row = &slots[&s];
        assert_eq!(row["status"], "success", "slot {s}: {row:#}\n{log}");
        let late = (time(row, "started_at") - s).to_std().unwrap_or_default();
        worst = worst.max(late);
    }
    worst
}

/// The line: a session takes the advisory lock every write of the fleet used to take
/// and holds it 20 s. The runners no longer take it: no start waits for it.
#[test]
fn a_session_holding_the_old_writers_lock_20s_delays_no_start() {
    let Some(pg) = PrivatePg::start(None) else {
        return;
    };
    let (env, mut runners) = two_runners_running(&pg);
    let from = Utc::now();
    let t0 = Instant::now();
    let status = StdCommand::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &pg.url(), "-c"])
        .arg(format!(
            "begin; select pg_advisory_xact_lock({}); select pg_sleep(20); commit;",
            cronmgr::store::APPLICATION_ID
        ))
        .stdout(Stdio::null())
        .status()
        .expect("psql");
    let held = t0.elapsed();
    let to = Utc::now();
    for r in &mut runners {
        stop(r);
    }
    let log = logs(&env, &["a", "b"]);
    assert!(
        status.success() && held >= Duration::from_secs(20),
        "the lock was held {held:?}"
    );
    let worst = worst_start(&env, from, to, &log);
    eprintln!("the old writers' lock held {held:?}; the latest start was {worst:?} after its slot");
    assert!(
        worst <= Duration::from_secs(2),
        "a start was {worst:?} late\n{log}"
    );
}

/// A member stalled inside its transaction (a runner paused or cut off mid-claim, the server
/// seeing its session idle in a transaction) while it holds what a claim locks now: the cap's
/// lock of the job's system and the job's row. The server ends that session after
/// `idle_in_transaction_session_timeout` (5 s); the others' starts wait no longer than that.
#[test]
fn a_member_stalled_inside_a_claim_delays_the_others_by_seconds() {
    let Some(pg) = PrivatePg::start(None) else {
        return;
    };
    let (env, mut runners) = two_runners_running(&pg);
    let from = Utc::now();
    let mut stalled = pg.member_psql_stdin();
    let stdin = stalled.stdin.as_mut().expect("stdin");
    use std::io::Write as _;
    writeln!(
        stdin,
        "BEGIN; SELECT pg_advisory_xact_lock({}, {}); SELECT id FROM jobs FOR UPDATE;",
        cronmgr::store::APPLICATION_ID,
        cronmgr::store::cap_key("default")
    )
    .expect("psql stdin");
    stdin.flush().expect("flush");
    // The session now sits idle in its transaction, as a SIGSTOPped member's would.
    sleep(Duration::from_secs(20));
    let _ = writeln!(stdin, "COMMIT;");
    drop(stalled.stdin.take());
    let ended = stalled.wait().expect("psql");
    let to = Utc::now();
    for r in &mut runners {
        stop(r);
    }
    let log = logs(&env, &["a", "b"]);
    assert!(!ended.success(), "the server ended the stalled session");
    let worst = worst_start(&env, from, to, &log);
    eprintln!(
        "a member stalled 20 s inside a claim; the latest start was {worst:?} after its slot"
    );
    assert!(
        worst <= Duration::from_secs(8),
        "a start was {worst:?} late\n{log}"
    );
}

/// A test CA, a server certificate it signed for 127.0.0.1 and localhost, and another CA.
fn certificates(dir: &Path) -> bool {
    let Some(openssl) = ["/usr/bin/openssl", "/bin/openssl"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        skip("no openssl to make the test certificates (apt-get install openssl)");
        return false;
    };
    let script = "set -e
        ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
        $O req -x509 $ec -keyout ca.key -out ca.crt -days 2 -subj /CN=cronmgr-test-ca 2>/dev/null
        $O req -x509 $ec -keyout other.key -out other.crt -days 2 -subj /CN=another-ca 2>/dev/null
        $O req $ec -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
        $O x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext 2>/dev/null";
    let out = StdCommand::new("/bin/sh")
        .args(["-c", script])
        .env("O", openssl)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[test]
fn tls_verify_full_connects_a_wrong_ca_or_plaintext_is_refused_with_a_clear_message() {
    let certs = tempfile::tempdir().expect("temp dir");
    if !certificates(certs.path()) {
        return;
    }
    let Some(pg) = PrivatePg::start(Some(certs.path())) else {
        return;
    };
    let env = env_on(&pg);
    let with = |query: String| PathBuf::from(format!("{}?{query}", pg.url()));
    let ca = certs.path().join("ca.crt");
    let good = with(format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    let out = env
        .cmd_with_db(&good)
        .args(["--json", "list"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "verify-full with the right CA: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server sees an encrypted session.
    let ssl = crate::harness::psql(
        &format!("{}?sslmode=require", pg.url()),
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.pid = pg_backend_pid()",
    );
    assert_eq!(ssl.trim(), "1");
    env.cmd_with_db(&good)
        .args([
            "add",
            "over-tls",
            "--schedule",
            "@daily",
            "--",
            "/usr/bin/true",
        ])
        .assert()
        .success();

    let other = certs.path().join("other.crt");
    let wrong = with(format!(
        "sslmode=verify-full&sslrootcert={}",
        other.display()
    ));
    let out = env
        .cmd_with_db(&wrong)
        .args(["list"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("TLS") && err.contains("certificate"), "{err}");
    assert!(
        err.contains(&other.display().to_string()),
        "names the CA file: {err}"
    );
    // verify-ca takes the right CA without looking at the name.
    let ca_only = PathBuf::from(format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=verify-ca&sslrootcert={}",
        pg.port,
        ca.display()
    ));
    env.cmd_with_db(&ca_only).args(["list"]).assert().success();

    let plain = with("sslmode=disable".into());
    let out = env
        .cmd_with_db(&plain)
        .args(["list"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("TLS") && err.contains("sslmode=disable"),
        "{err}"
    );

    let bad = with("sslmode=verify".into());
    let out = env.cmd_with_db(&bad).args(["list"]).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("sslmode"), "{err}");
}
