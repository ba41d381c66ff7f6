use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::store::Job;

const FULL: &str = r#"
# a comment
[[job]]
name = "nightly-backup"
description = "dump the database"
schedule = " 0 3 * * * "
timezone = "Europe/Madrid"
argv = ["/usr/bin/pg_dump", "-f", "/backup/db.sql", "app"]
category = "backup"
priority = 2
timeout = "30m"
retries = 2
retry_delay = 90
backoff = "exponential"
max_runtime = "2h"
allow_concurrent = true
catch_up = "latest"
starting_deadline = "10m"
enabled = false

[job.params]
env = { PGHOST = "db" }

[[job]]
name = "sync"
schedule = "*/5 * * * *"
command = "http"
params = { requests = [{ method = "POST", url = "http://devices.internal/sync", expect_status = 200 }] }
"#;

#[test]
fn parses_every_field_and_applies_defaults() {
    let jobs = parse("a.toml", FULL).unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!((jobs[0].line, jobs[1].line), (3, 24));
    let job = jobs[0].spec.to_job("app").unwrap();
    assert_eq!(job.system, "app");
    assert_eq!(job.name, "nightly-backup");
    assert_eq!(job.schedule, "0 3 * * *");
    assert_eq!(job.timezone, "Europe/Madrid");
    assert_eq!(job.category.as_deref(), Some("BACKUP"));
    assert_eq!(job.priority, 2);
    assert_eq!(job.timeout, Some(1800));
    assert_eq!(job.retries, 2);
    assert_eq!(job.retry_delay, 90);
    assert_eq!(job.backoff, Backoff::Exponential);
    assert_eq!(job.max_runtime, Some(7200));
    assert!(job.allow_concurrent);
    assert_eq!(job.catch_up, CatchUp::Latest);
    assert_eq!(job.starting_deadline, Some(600));
    assert!(!job.is_active);
    assert_eq!(
        serde_json::Value::Object(job.params.clone()),
        json!({"argv": ["/usr/bin/pg_dump", "-f", "/backup/db.sql", "app"], "env": {"PGHOST": "db"}})
    );

    let sync = jobs[1].spec.to_job("app").unwrap();
    let defaults = Job::new("app", "sync", "*/5 * * * *", "http");
    assert_eq!(
        Job {
            params: serde_json::Map::new(),
            ..sync.clone()
        },
        defaults
    );
    assert_eq!(
        sync.params["requests"][0]["url"],
        json!("http://devices.internal/sync")
    );
}

#[test]
fn export_leaves_defaults_out_and_reads_back_the_same() {
    for located in parse("a.toml", FULL).unwrap() {
        let job = located.spec.to_job("app").unwrap();
        let text = render(vec![JobSpec::from_job(&job).unwrap()]).unwrap();
        let again = parse("b.toml", &text).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].spec.to_job("app").unwrap(), job, "{text}");
        assert!(changed_fields(&job, &again[0].spec.to_job("app").unwrap()).is_empty());
    }
    let minimal = Job {
        params: json!({"argv": ["/bin/true"]}).as_object().unwrap().clone(),
        ..Job::new("s", "t", "@daily", "shell")
    };
    let text = render(vec![JobSpec::from_job(&minimal).unwrap()]).unwrap();
    assert_eq!(
        text,
        "[[job]]\nname = \"t\"\nschedule = \"@daily\"\nargv = [\"/bin/true\"]\n"
    );
}

#[test]
fn errors_name_the_line() {
    let unknown =
        "[[job]]\nname = \"a\"\nschedule = \"@daily\"\nargv = [\"/bin/true\"]\nprioity = 3\n";
    let p = parse("x.toml", unknown).unwrap_err();
    assert_eq!(p.line, 5, "{p}");
    assert!(p.message.contains("prioity"), "{p}");
    assert!(p.to_string().starts_with("x.toml:5: "), "{p}");

    let bad_toml = "[[job]]\nname = \"a\"\nschedule = @daily\n";
    let p = parse("x.toml", bad_toml).unwrap_err();
    assert_eq!(p.line, 3, "{p}");

    let bad_duration = "[[job]]\nname = \"a\"\nschedule = \"@daily\"\ntimeout = \"5 parsecs\"\n";
    let p = parse("x.toml", bad_duration).unwrap_err();
    assert_eq!(p.line, 4, "{p}");
    assert!(p.message.contains("invalid duration"), "{p}");

    let top_level = "name = \"a\"\n";
    let p = parse("x.toml", top_level).unwrap_err();
    assert!(p.message.contains("unknown field `name`"), "{p}");

    let missing = "\n[[job]]\nname = \"a\"\n";
    let p = parse("x.toml", missing).unwrap_err();
    assert!(p.message.contains("schedule"), "{p}");
    assert!(p.line >= 2, "{p}");
}

#[test]
fn conversion_refuses_what_add_would() {
    let spec = |extra: &str| {
        let text = format!("[[job]]\nname = \"a\"\nschedule = \"@daily\"\n{extra}\n");
        parse("x.toml", &text).unwrap().remove(0).spec.to_job("s")
    };
    for (extra, needle) in [
        ("priority = 11", "priority must be 1"),
        ("priority = 0", "priority must be 1"),
        ("timeout = 0", "timeout must be more than zero"),
        ("timezone = \"Mars/Olympus\"", "unknown time zone"),
        ("category = \"a b\"", "invalid category"),
        (
            "command = \"http\"\nargv = [\"/bin/true\"]",
            "argv is for the shell executor",
        ),
        (
            "argv = [\"/bin/true\"]\nparams = { argv = [\"/bin/false\"] }",
            "argv is given twice",
        ),
        // Numbers past their ceilings, as integers and as text.
        ("retry_delay = 9223372036854775807", "retry_delay"),
        (
            "retry_delay = \"401d\"",
            "retry_delay 401d is too large (range 0s to 400d)",
        ),
        ("timeout = \"18446744073709551615s\"", "timeout"),
        ("retries = 101", "retries 101 is too large (range 0 to 100)"),
        ("max_runtime = 9223372036854775807", "max_runtime"),
        (
            "catch_up = \"latest\"\nstarting_deadline = \"500d\"",
            "starting_deadline",
        ),
        ("max_silence = \"999d\"", "max_silence"),
        ("cpu_limit = 9223372036854775807", "cpu_limit"),
        ("escalate_after = 4294967295", "escalate_after"),
        ("memory_limit = \"9999999T\"", "memory_limit"),
        ("nofile_limit = 9223372036854775807", "nofile_limit"),
        ("nproc_limit = 9223372036854775807", "nproc_limit"),
    ] {
        let err = spec(extra).unwrap_err();
        assert!(err.contains(needle), "{extra}: {err}");
    }
    assert_eq!(spec("retry_delay = 0").unwrap().retry_delay, 0);
    assert_eq!(
        spec("retry_delay = \"400d\"").unwrap().retry_delay,
        400 * 86_400
    );
    assert_eq!(spec("category = \"\"").unwrap().category, None);
}

#[test]
fn changed_fields_names_file_fields() {
    let a = Job::new("s", "a", "@daily", "shell");
    let mut b = a.clone();
    b.priority = 2;
    b.is_active = false;
    b.updated_at = chrono::Utc::now();
    b.id = 7;
    assert_eq!(changed_fields(&a, &b), ["enabled", "priority"]);
}

#[test]
fn json_toml_conversion() {
    let v = json!({"a": 1, "b": [1.5, "x", true], "c": {"d": -3}});
    assert_eq!(toml_to_json(&json_to_toml(&v).unwrap()), v);
    assert!(json_to_toml(&json!({"a": null})).is_none());
    assert!(json_to_toml(&json!(u64::MAX)).is_none());
}

fn tomlish() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("name"),
        Just("schedule"),
        Just("timeout"),
        Just("priority"),
        Just("argv"),
        Just("params"),
        Just("enabled"),
        Just("backoff"),
        Just("catch_up"),
        Just("retry_delay"),
        Just("nme"),
        Just("[[job]]"),
        Just("[job.params]"),
        Just("[job"),
    ];
    let value = prop_oneof![
        "\"[ -~]{0,12}\"",
        "-?[0-9]{1,20}",
        "\\[[ -~]{0,12}\\]",
        "\\{[ -~]{0,12}\\}",
        Just("true".to_string()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "[ -~]{0,6}",
    ];
    prop::collection::vec((key, value, 0..3u8), 0..12).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(k, v, form)| match form {
                0 => format!("{k} = {v}\n"),
                1 => format!("{k}\n"),
                _ => format!("[[job]]\n{k}={v}\n"),
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the text, loading gives jobs or a problem with a line inside the file, and
    /// converting gives a job or a message: never a panic.
    #[test]
    fn loader_never_panics(text in tomlish()) {
        match parse("p.toml", &text) {
            Ok(jobs) => {
                for located in jobs {
                    prop_assert!(located.line >= 1);
                    if let Ok(job) = located.spec.to_job("s") {
                        // What converts exports and reads back the same.
                        if let Ok(spec) = JobSpec::from_job(&job) {
                            let out = render(vec![spec]).unwrap();
                            let back = parse("q.toml", &out).unwrap().remove(0).spec.to_job("s").unwrap();
                            prop_assert_eq!(back, job);
                        }
                    }
                }
            }
            Err(p) => prop_assert!(p.line <= text.lines().count() + 1, "{}", p),
        }
    }

    #[test]
    fn random_bytes_never_panic(text in "\\PC{0,200}") {
        if let Ok(jobs) = parse("p.toml", &text) {
            for j in jobs {
                let _ = j.spec.to_job("s");
            }
        }
    }

    #[test]
    fn any_job_round_trips(
        priority in 1u8..=10,
        retries in 0u32..5,
        retry_delay in 0u64..100_000,
        timeout in prop::option::of(1u64..1_000_000),
        enabled: bool,
        concurrent: bool,
        description in prop::option::of("[ -~\n\"'\\\\]{1,20}"),
        argv in prop::collection::vec("[ -~]{0,10}", 1..4),
    ) {
        let mut job = Job::new("s", "j", "*/5 * * * *", "shell");
        job.priority = priority;
        job.retries = retries;
        job.retry_delay = retry_delay;
        job.timeout = timeout;
        job.is_active = enabled;
        job.allow_concurrent = concurrent;
        job.description = description;
        job.params.insert("argv".into(), json!(argv));
        let text = render(vec![JobSpec::from_job(&job).unwrap()]).unwrap();
        let back = parse("r.toml", &text).unwrap().remove(0).spec.to_job("s").unwrap();
        prop_assert_eq!(back, job, "{}", text);
    }
}

#[test]
fn every_job_is_located_at_its_header_line() {
    let text: String = (0..50)
        .map(|i| format!("\n# job {i}\n[[job]]\nname = \"j{i}\"\nschedule = \"@daily\"\nargv = [\"/bin/true\"]\n"))
        .collect();
    let jobs = parse("x.toml", &text).unwrap();
    let lines: Vec<usize> = jobs.iter().map(|j| j.line).collect();
    let expected: Vec<usize> = (0..50).map(|i| 3 + 6 * i).collect();
    assert_eq!(lines, expected);
}

#[test]
fn a_table_reports_every_field_problem_and_a_broken_table_hides_no_other() {
    let text = "[[job]]\nname = \"a\"\nschedule = \"@daily\"\npriority = 11\ntimeout = 0\n\
                alert_email = \"nobody\"\nnproc_limit = 0\n\n\
                [[job]]\nname = \"b\"\nschedule = @daily\n\n\
                [[job]]\nname = \"c\"\nschedule = \"@daily\"\nargv = [\"/bin/true\"]\n";
    let (jobs, problems) = parse_all("x.toml", text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, 11, "{problems:?}");
    let names: Vec<&str> = jobs.iter().map(|j| j.spec.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(jobs[1].line, 13);
    let (_, errs) = jobs[0].spec.to_job_all("s");
    assert_eq!(errs.len(), 4, "{errs:?}");
    for needle in ["priority", "timeout", "alert_email", "nproc_limit"] {
        assert!(
            errs.iter().any(|e| e.contains(needle)),
            "{needle}: {errs:?}"
        );
    }
    assert!(jobs[1].spec.to_job_all("s").1.is_empty());
}
