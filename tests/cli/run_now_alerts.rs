//! `run-now` raises the alerts a scheduled run would (failure, streak, auto-disable) and delivers
//! them before it exits; `--no-alert` raises none.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::Env;

/// A webhook receiver on 127.0.0.1: the bodies it was sent, in order.
struct Hook {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    fn start() -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let mut out = stream;
                let _ = out.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
                if let Ok(v) = serde_json::from_slice(&body) {
                    seen.lock().unwrap().push(v);
                }
            }
        });
        Hook { port, bodies }
    }

    /// What it received; waits up to 2 s for the last one to land (the sender may take the
    /// reply as sent just before this thread records the body).
    fn bodies_at_least(&self, n: usize) -> Vec<Value> {
        let until = Instant::now() + Duration::from_secs(2);
        while self.bodies.lock().unwrap().len() < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.bodies.lock().unwrap().clone()
    }
}

fn setup() -> (Env, Hook) {
    let env = Env::new();
    env.ignore_host_disk();
    let hook = Hook::start();
    env.ok(&[
        "settings",
        "set",
        "webhook_url",
        &format!("http://127.0.0.1:{}/hook", hook.port),
    ]);
    env.ok(&[
        "add",
        "flaky",
        "--schedule",
        "@yearly",
        "--disable-after",
        "2",
        "--",
        "/usr/bin/sh",
        "-c",
        "echo broken pipe here; exit 4",
    ]);
    (env, hook)
}

#[test]
fn a_failing_run_now_alerts_and_its_streak_disables_the_job() {
    let (env, hook) = setup();
    env.fails(3, &["run-now", "flaky"]);
    // Delivered before run-now exited: no runner is up.
    let got = hook.bodies_at_least(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["job"], "flaky");
    assert_eq!(got[0]["kind"], "failed");
    assert_eq!(got[0]["details"]["exit_code"], 4);
    assert!(got[0]["details"]["output_tail"]
        .as_str()
        .unwrap()
        .contains("broken pipe here"));
    let alerts = env.json(&["alerts"]);
    assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(alerts[0]["deliveries"][0]["state"], "sent", "{alerts}");
    assert_eq!(env.json(&["show", "flaky"])["failure_streak"], 1);

    // The second failure in a row reaches --disable-after 2, as a scheduled one would.
    env.fails(3, &["run-now", "flaky"]);
    let job = env.json(&["show", "flaky"]);
    assert_eq!(job["is_active"], false, "{job}");
    assert!(job["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("2 consecutive failures"));
    let got = hook.bodies_at_least(2);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["kind"], "disabled");
}

#[test]
fn run_now_no_alert_raises_nothing_and_keeps_the_streak() {
    let (env, hook) = setup();
    env.fails(3, &["run-now", "flaky", "--no-alert"]);
    env.fails(3, &["run-now", "flaky", "--no-alert"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hook.bodies_at_least(0), Vec::<Value>::new());
    assert_eq!(env.json(&["alerts"]), serde_json::json!([]));
    let job = env.json(&["show", "flaky"]);
    assert_eq!(job["failure_streak"], 0, "{job}");
    assert_eq!(job["is_active"], true, "{job}");
    // The audit log says the run was asked not to alert.
    let audit = env.json(&["audit"]);
    assert!(audit.to_string().contains("--no-alert"), "{audit}");
}
