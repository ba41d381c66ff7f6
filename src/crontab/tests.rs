use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

const USER_TAB: &str = r#"# Edit this file to introduce tasks to be run by cron.
SHELL=/bin/bash
PATH = /usr/local/bin:/usr/bin:/bin
MAILTO="ops@example.com"
APP_ENV='production'

# m h  dom mon dow   command
0 3 * * * /usr/bin/pg_dump -f /backup/db.sql app
*/5 * * * *	curl -fsS http://devices.internal/sync >/dev/null 2>&1
CRON_TZ=Europe/Madrid
@daily cd /opt/app && ./bin/cleanup.sh --old
0 9 * * 1 mail -s "weekly" ops@example.com%Hello,%see you\% later%
15 * * * * date +\%Y-\%m-\%d
  # indented comment
RANDOM_DELAY=5
@reboot nice -n 10 ionice -c3 /usr/local/bin/warm-cache
"#;

#[test]
fn reads_a_user_crontab_as_cron_does() {
    let tab = parse(USER_TAB, false);
    assert!(tab.errors.is_empty(), "{:?}", tab.errors);
    let lines: Vec<usize> = tab.entries.iter().map(|e| e.line).collect();
    assert_eq!(lines, [8, 9, 11, 12, 13, 16]);

    let dump = &tab.entries[0];
    assert_eq!(dump.schedule, "0 3 * * *");
    assert_eq!(dump.command, "/usr/bin/pg_dump -f /backup/db.sql app");
    assert_eq!(dump.stdin, None);
    assert_eq!(dump.shell.as_deref(), Some("/bin/bash"));
    assert_eq!(dump.timezone, None);
    assert_eq!(
        dump.env,
        [
            (
                "PATH".to_string(),
                "/usr/local/bin:/usr/bin:/bin".to_string()
            ),
            ("APP_ENV".to_string(), "production".to_string())
        ]
    );

    let sync = &tab.entries[1];
    assert_eq!(sync.schedule, "*/5 * * * *");
    assert!(needs_shell(&sync.command));

    let cleanup = &tab.entries[2];
    assert_eq!(cleanup.schedule, "@daily");
    assert_eq!(cleanup.timezone.as_deref(), Some("Europe/Madrid"));
    assert_eq!(name_for(&cleanup.command), "cleanup");

    let mail = &tab.entries[3];
    assert_eq!(mail.command, "mail -s \"weekly\" ops@example.com");
    assert_eq!(mail.stdin.as_deref(), Some("Hello,\nsee you% later\n"));

    let date = &tab.entries[4];
    assert_eq!(date.command, "date +%Y-%m-%d");
    assert_eq!(date.stdin, None);

    let warm = &tab.entries[5];
    assert_eq!(warm.schedule, "@reboot");
    assert_eq!(name_for(&warm.command), "warm-cache");

    let notes: Vec<(usize, &str)> = tab
        .notes
        .iter()
        .map(|n| (n.line, n.text.split(':').next().unwrap()))
        .collect();
    assert_eq!(notes, [(15, "RANDOM_DELAY=5")]);
    // MAILTO reaches every line below it, for the import to carry over as alert_email.
    assert!(tab
        .entries
        .iter()
        .all(|e| e.mailto.as_deref() == Some("ops@example.com")));
}

#[test]
fn mailto_becomes_an_alert_email_when_it_names_addresses() {
    assert_eq!(alert_email(None), Ok(None));
    assert_eq!(alert_email(Some("")), Ok(None));
    assert_eq!(
        alert_email(Some("ops@example.com")),
        Ok(Some("ops@example.com".into()))
    );
    assert_eq!(
        alert_email(Some("a@example.com, b@example.org")),
        Ok(Some("a@example.com,b@example.org".into()))
    );
    for local in ["root", "ops@example.com,root"] {
        let why = alert_email(Some(local)).unwrap_err();
        assert!(why.contains("not carried over"), "{why}");
    }
}

#[test]
fn system_crontabs_have_a_user_column() {
    let text = "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n@weekly www-data /usr/bin/php /var/www/artisan schedule:run\n";
    let tab = parse(text, true);
    assert!(tab.errors.is_empty(), "{:?}", tab.errors);
    assert_eq!(tab.entries[0].user.as_deref(), Some("root"));
    assert_eq!(
        tab.entries[0].command,
        "cd / && run-parts --report /etc/cron.hourly"
    );
    assert_eq!(name_for(&tab.entries[0].command), "run-parts");
    assert_eq!(tab.entries[1].user.as_deref(), Some("www-data"));
    assert_eq!(name_for(&tab.entries[1].command), "artisan");
    assert!(is_system_crontab(std::path::Path::new("/etc/crontab")));
    assert!(is_system_crontab(std::path::Path::new("/etc/cron.d/app")));
    assert!(!is_system_crontab(std::path::Path::new(
        "/var/spool/cron/crontabs/root"
    )));
}

#[test]
fn bad_lines_are_errors_with_their_numbers() {
    let text = "0 3 * *\n61 * * * * /bin/true\n@fortnightly /bin/true\n* * * * *\n%x\n0 0 * * * %only input\n";
    let tab = parse(text, false);
    let lines: Vec<usize> = tab.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [1, 2, 3, 4, 5, 6], "{:?}", tab.errors);
    assert!(tab.errors[1].message.contains("minute"), "{:?}", tab.errors);
    assert!(tab.entries.is_empty());
    // A system crontab line without its user.
    let tab = parse("@daily\n", true);
    assert_eq!(tab.errors.len(), 1);
}

#[test]
fn percent_rules() {
    assert_eq!(split_percent("a b"), ("a b".into(), None));
    assert_eq!(split_percent("a\\%b"), ("a%b".into(), None));
    assert_eq!(
        split_percent("cat%x%y"),
        ("cat".into(), Some("x\ny\n".into()))
    );
    assert_eq!(split_percent("cat%x%"), ("cat".into(), Some("x\n".into())));
    assert_eq!(split_percent("cat%"), ("cat".into(), Some("\n".into())));
    assert_eq!(
        split_percent("cat%50\\% off"),
        ("cat".into(), Some("50% off\n".into()))
    );
    assert_eq!(split_percent("a\\b"), ("a\\b".into(), None));
}

#[test]
fn shell_detection() {
    for simple in [
        "/usr/bin/true",
        "echo hello world",
        "date +%s",
        "backup.sh --full",
    ] {
        assert!(!needs_shell(simple), "{simple}");
    }
    for shell in [
        "a | b",
        "a > /dev/null",
        "a && b",
        "a; b",
        "echo $HOME",
        "echo 'x'",
        "ls *.log",
        "echo `date`",
        "FOO=1 prog",
        "a 2>&1",
        "rm ~/x",
    ] {
        assert!(needs_shell(shell), "{shell}");
    }
}

#[test]
fn names() {
    for (command, name) in [
        ("/usr/bin/pg_dump -f x", "pg_dump"),
        ("cd /opt/app && ./bin/cleanup.sh", "cleanup"),
        ("nice -n 19 ionice -c 3 /usr/bin/rsync -a x y", "rsync"),
        ("ionice -c3 nice /usr/local/bin/Warm_Cache", "warm_cache"),
        ("python3 -u /opt/reports/weekly.py --mail", "weekly"),
        ("/usr/bin/python3.11 /opt/x/report.py", "report"),
        ("perl5.36 /opt/x/rotate.pl", "rotate"),
        ("/usr/local/bin/pythonic /opt/x/y", "pythonic"),
        ("python3.x /opt/x/y", "python3.x"),
        ("/bin/sh -c 'echo hi'", "sh"),
        ("timeout 30m /usr/bin/backup", "backup"),
        ("flock -n /tmp/x.lock /usr/bin/sync-devices", "sync-devices"),
        ("FOO=bar /usr/bin/env", "env"),
        ("curl -fsS http://x >/dev/null", "curl"),
        ("/usr/bin/true>/dev/null", "true"),
        ("$HOME/bin/x", "x"),
        ("&& ;", "job"),
    ] {
        assert_eq!(name_for(command), name, "{command}");
    }
    let mut taken = HashSet::from(["echo".to_string()]);
    assert_eq!(unique_name("echo", &mut taken), "echo-2");
    assert_eq!(unique_name("echo", &mut taken), "echo-3");
    assert_eq!(unique_name("date", &mut taken), "date");
}

#[test]
fn environment_lines() {
    assert_eq!(env_line("A=b"), Some(("A".into(), "b".into())));
    assert_eq!(env_line("A = \"b c\" "), Some(("A".into(), "b c".into())));
    assert_eq!(env_line("MAILTO=\"\""), Some(("MAILTO".into(), "".into())));
    assert_eq!(env_line("0 * * * * x=1"), None);
    assert_eq!(env_line("*/5 * * * * a"), None);
    // A later value replaces an earlier one; entries see what was set above them only.
    let tab = parse("A=1\n@daily /bin/true\nA=2\n@daily /bin/false\n", false);
    assert_eq!(tab.entries[0].env, [("A".into(), "1".into())]);
    assert_eq!(tab.entries[1].env, [("A".into(), "2".into())]);
}

proptest! {
    #[test]
    fn never_panics(text in "([ -~\t]{0,40}\n){0,10}", user_column: bool) {
        let tab = parse(&text, user_column);
        for e in &tab.entries {
            prop_assert!(!e.command.is_empty());
            let _ = name_for(&e.command);
            let _ = needs_shell(&e.command);
        }
    }

    #[test]
    fn names_are_valid(command in "[ -~]{0,40}") {
        let name = name_for(&command);
        prop_assert!(!name.is_empty() && name.len() <= 100);
        prop_assert!(!name.starts_with(['-', '.']));
        prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{}", name);
    }
}
