//! `cronmgr generate man|completions SHELL`: the man page and shell completions, made from the
//! command-line definition itself so they never drift (CI checks the checked-in man page).

use std::io::Write;

use clap::{CommandFactory, Subcommand};

use super::{Cli, Ctx};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, Subcommand)]
pub enum What {
    /// The man page (roff) on stdout: `cronmgr generate man > cronmgr.1`
    Man,
    /// Completions for a shell on stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
A runtime error: I/O, the database, the system; \fBrun\fR when another runner already holds
the database's lock (the message names its pid).
.TP
\fB2\fR
Bad usage or bad input; nothing was changed.
.TP
\fB3\fR
The job ran and failed (\fBrun\-now\fR, \fBrun \-\-once\fR).
.TP
\fB4\fR
The job ran and timed out (\fBrun\-now\fR).
.TP
\fB5\fR
Not allowed: changing, removing, disabling, running or killing a critical job needs an admin
(root, or the \fB[admins]\fR of the root\-owned config file). The attempt is in the audit log.
.TP
\fB130\fR
Interrupted: by a signal; \fBrun\-now\fR whose execution was cancelled (\fBcronmgr kill\fR);
\fBrun \-\-once\fR stopped with executions still running (and none failed). A cancelled
execution is not a failure: \fBkill\fR of one already being cancelled exits 0.
.SH ENVIRONMENT
.TP
\fBCRONMGR_DB\fR
The database file, as \fB\-\-db\fR.
.TP
\fBCRONMGR_CONFIG\fR
The config file, as \fB\-\-config\fR.
.TP
\fBCRONMGR_SYSTEM\fR
The system (namespace), as \fB\-\-system\fR.
.TP
\fBCRONMGR_SYNCHRONOUS\fR
\fBfull\fR makes SQLite fsync every commit; the default, \fBnormal\fR, keeps every commit
across a crash of cronmgr and may lose only the last ones on power loss.
.TP
\fBTZ\fR
The host's time zone, the default zone of a new system.
.TP
\fBRUST_LOG\fR
Log filter for diagnostics on stderr, e.g. \fBcronmgr=debug\fR.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
Set by systemd: the runner reports READY, STATUS, WATCHDOG and STOPPING.
.TP
\fBVISUAL\fR, \fBEDITOR\fR
The editor of \fBcronmgr edit NAME\fR without flags.
.SH FILES
.TP
\fI/etc/cronmgr/config.toml\fR
The root-owned config file: enabled executors and their allowlists.
.TP
\fI/etc/cronmgr/jobs.d/\fR
Declarative job files for \fBcronmgr apply\fR.
.TP
\fI/var/lib/cronmgr/cronmgr.db\fR
The database when run as root; otherwise \fI$XDG_DATA_HOME/cronmgr/cronmgr.db\fR.
.TP
\fI<db>.lock\fR
Held by the running runner; holds its pid.
.TP
\fI<db>.logs/\fR
Output of running executions, for \fBcronmgr logs \-\-follow\fR.
.SH "SEE ALSO"
\fBcrontab\fR(5), \fBcron\fR(8), \fBsystemd.timer\fR(5)
"#;

/// The whole man page.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone())
        .date("")
        .manual("cronmgr manual")
        .source(format!("cronmgr {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    render_commands(&cmd_for_commands(), &mut out);
    out.extend_from_slice(EXTRA.as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// The command definition with its subcommands built, so each knows its full usage line.
fn cmd_for_commands() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

/// Every command on this one page (`cronmgr add …`), with its options: there are no separate
/// `cronmgr-add(1)` pages to point at.
fn render_commands(cmd: &clap::Command, out: &mut Vec<u8>) {
    out.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let usage = sub.clone().render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ").trim();
        out.extend_from_slice(format!(".SS \"cronmgr {}\"\n", roff(sub.get_name())).as_bytes());
        out.extend_from_slice(format!("\\fB{}\\fR\n.PP\n", roff(usage)).as_bytes());
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            out.extend_from_slice(format!("{}\n", roff(&about.to_string())).as_bytes());
        }
        let aliases: Vec<&str> = sub.get_visible_aliases().collect();
        if !aliases.is_empty() {
            out.extend_from_slice(
                format!(".PP\nAlias: {}\n", roff(&aliases.join(", "))).as_bytes(),
            );
        }
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set())
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        {
            out.extend_from_slice(format!(".TP\n{}\n", roff(&arg_label(arg))).as_bytes());
            if let Some(help) = arg.get_long_help().or(arg.get_help()) {
                out.extend_from_slice(format!("{}\n", roff(&help.to_string())).as_bytes());
            }
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            if !values.is_empty() && arg.get_action().takes_values() {
                out.extend_from_slice(
                    format!("[values: {}]\n", roff(&values.join(", "))).as_bytes(),
                );
            }
        }
        if sub.has_subcommands() {
            let names: Vec<&str> = sub
                .get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| s.get_name())
                .collect();
            out.extend_from_slice(
                format!(".PP\nSubcommands: {}\n", roff(&names.join(", "))).as_bytes(),
            );
        }
    }
}

/// `-s, --schedule <EXPR>`, or `<NAME>` for a positional argument.
fn arg_label(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    if arg.is_positional() {
        return value;
    }
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("-{short}"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("--{long}"));
    }
    let mut label = names.join(", ");
    if arg.get_action().takes_values() {
        label.push(' ');
        label.push_str(&value);
    }
    label
}

/// Text safe in a roff line: backslashes and hyphens escaped, no line starting with a control
/// character.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    escaped
        .lines()
        .map(|l| match l.starts_with(['.', '\'']) {
            true => format!("\\&{l}"),
            false => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    if ctx.global.json {
        crate::invalid!("--json: generate prints a man page or a completion script, not JSON");
    }
    let mut stdout = std::io::stdout().lock();
    match args.what {
        What::Man => stdout.write_all(&man_page()?)?,
        What::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "cronmgr", &mut stdout);
        }
    }
    stdout.flush()?;
    Ok(ExitCode::Ok)
}
