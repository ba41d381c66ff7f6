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
A runtime error: I/O, the database, the system.
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
    let man = clap_mangen::Man::new(cmd)
        .date("")
        .manual("cronmgr manual")
        .source(format!("cronmgr {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    out.extend_from_slice(EXTRA.as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

pub fn run(args: Args, _ctx: &Ctx) -> anyhow::Result<ExitCode> {
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
