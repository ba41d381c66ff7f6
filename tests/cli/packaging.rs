//! The man page and completions, generated from the CLI definition.

use crate::harness::Env;

#[test]
fn the_checked_in_man_page_is_current() {
    let env = Env::new();
    let generated = env.ok(&["generate", "man"]);
    let checked_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/cronmgr.1"))
        .expect("man/cronmgr.1");
    assert!(
        generated == checked_in,
        "man/cronmgr.1 is stale: run `cargo run -- generate man > man/cronmgr.1`"
    );
    assert!(
        checked_in.contains("EXIT STATUS")
            && checked_in.contains("ENVIRONMENT")
            && checked_in.contains("FILES")
    );
    // Every command is described on this page; SEE ALSO names only pages that exist.
    assert!(!checked_in.contains("cronmgr\\-add(1)"));
    let see_also = &checked_in[checked_in.find(".SH \"SEE ALSO\"").expect("SEE ALSO")..];
    assert!(!see_also.contains("cronmgr\\-"), "{see_also}");
    for command in ["add", "run\\-now", "import\\-crontab", "settings"] {
        assert!(
            checked_in.contains(&format!(".SS \"cronmgr {command}\"")),
            "no section for {command}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        assert!(env
            .ok(&["generate", "completions", shell])
            .contains("cronmgr"));
    }
}
