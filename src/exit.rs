//! Exit codes, documented in the man page, and the one error type that carries one.
//!
//! Every command returns [`Result`], whose error is a [`Failure`]: what went wrong and the exit
//! status it means. Library errors become a `Failure` through `?`, each with the status its own
//! type declares ([`Coded`], implemented next to the type: a schedule that does not parse is bad
//! input, a database that cannot be opened is not), so no list of "bad input" types lives here.

use std::fmt;
use std::io;

/// Every exit status cronmgr uses. Scripts may rely on these values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// A runtime error: I/O, the database, the system.
    Error = 1,
    /// Bad usage or bad input: nothing was changed.
    Usage = 2,
    /// The job ran and failed.
    JobFailed = 3,
    /// The job ran and timed out.
    JobTimeout = 4,
    /// Not allowed: a critical job needs an admin (the attempt is in the audit log).
    Forbidden = 5,
    /// Interrupted by a signal.
    Interrupted = 130,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// A command's result: its exit status on success, a [`Failure`] otherwise.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// Why a command failed, and the exit status that says so.
pub struct Failure {
    code: ExitCode,
    error: anyhow::Error,
}

impl Failure {
    /// A failure with an explicit status.
    pub fn new(code: ExitCode, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code,
            error: error.into(),
        }
    }

    /// Input the user gave that cronmgr refuses: exit status 2, database untouched.
    pub fn usage(message: impl fmt::Display) -> Self {
        Self::new(ExitCode::Usage, anyhow::anyhow!("{message}"))
    }

    /// Refused for lack of permission: exit status 5, database untouched but for the audit row.
    pub fn forbidden(message: impl fmt::Display) -> Self {
        Self::new(ExitCode::Forbidden, anyhow::anyhow!("{message}"))
    }

    /// A runtime error: exit status 1.
    pub fn runtime(message: impl fmt::Display) -> Self {
        Self::new(ExitCode::Error, anyhow::anyhow!("{message}"))
    }

    pub fn code(&self) -> ExitCode {
        self.code
    }

    /// The first error of type `E` among the causes.
    pub fn find<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.error.chain().find_map(|c| c.downcast_ref::<E>())
    }

    /// The same failure, its message prefixed with what was being done.
    pub fn context(self, context: impl fmt::Display + Send + Sync + 'static) -> Self {
        Failure {
            code: self.code,
            error: self.error.context(context),
        }
    }

    /// The status an error means: that of the first [`Failure`] in its chain, else a runtime error.
    /// For errors that crossed code returning `anyhow::Result` (the web server's handlers).
    pub fn code_of(err: &anyhow::Error) -> ExitCode {
        err.chain()
            .find_map(|c| c.downcast_ref::<Failure>())
            .map_or(ExitCode::Error, Failure::code)
    }

    /// True when the error is a closed stdout pipe (`cronmgr list | head`): that is not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        self.error.chain().any(|c| {
            c.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
        })
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?})", self.error, self.code)
    }
}

/// The message with its causes, `what: why: because`.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// A `Failure` inside an `anyhow::Error` keeps its status ([`Failure::code_of`]); its causes show
/// in its own message, so it reports none.
impl std::error::Error for Failure {}

/// An `anyhow::Error` keeps the status of a `Failure` it holds, else is a runtime error.
impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        // Not `downcast`: under a context it would return the inner failure without the context.
        Failure {
            code: Failure::code_of(&error),
            error,
        }
    }
}

/// An error type that knows which exit status it means. Implemented next to each library error
/// (bad input is exit 2); runtime errors of other crates take the default, exit 1.
pub trait Coded: std::error::Error + Send + Sync + 'static {
    fn exit_code(&self) -> ExitCode {
        ExitCode::Error
    }
}

impl<E: Coded> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            code: error.exit_code(),
            error: anyhow::Error::new(error),
        }
    }
}

impl Coded for io::Error {}
impl Coded for serde_json::Error {}
impl Coded for std::fmt::Error {}

/// `.context(..)` for code that ends a command (the CLI, the runner's start): like anyhow's, but the failure keeps the status its error means (a
/// job that is not there stays bad input under "editing job x").
pub trait Context<T> {
    fn context<C: fmt::Display + Send + Sync + 'static>(self, context: C) -> Result<T>;
    fn with_context<C: fmt::Display + Send + Sync + 'static>(
        self,
        context: impl FnOnce() -> C,
    ) -> Result<T>;
}

impl<T, E: Into<Failure>> Context<T> for std::result::Result<T, E> {
    fn context<C: fmt::Display + Send + Sync + 'static>(self, context: C) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: fmt::Display + Send + Sync + 'static>(
        self,
        context: impl FnOnce() -> C,
    ) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context<C: fmt::Display + Send + Sync + 'static>(self, context: C) -> Result<T> {
        self.ok_or_else(|| Failure::runtime(context))
    }

    fn with_context<C: fmt::Display + Send + Sync + 'static>(
        self,
        context: impl FnOnce() -> C,
    ) -> Result<T> {
        self.ok_or_else(|| Failure::runtime(context()))
    }
}

/// `return Err(Failure::usage(format!(..)))`: refuse bad input with exit status 2.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::exit::Failure::usage(format!($($arg)*)))
    };
}

/// `return Err(Failure::runtime(format!(..)))`: fail with exit status 1.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::exit::Failure::runtime(format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_its_status_through_anyhow_and_its_context() {
        let inner = anyhow::Error::new(Failure::usage("no job named x"))
            .context("editing")
            .context("applying jobs.d");
        assert_eq!(Failure::code_of(&inner), ExitCode::Usage);
        let back = Failure::from(inner);
        assert_eq!(back.code(), ExitCode::Usage);
        assert_eq!(back.to_string(), "applying jobs.d: editing: no job named x");
        let plain = Failure::from(anyhow::anyhow!("disk on fire"));
        assert_eq!(plain.code(), ExitCode::Error);
    }

    #[test]
    fn a_closed_pipe_is_recognised_under_context() {
        let pipe = Failure::from(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing");
        assert!(pipe.is_broken_pipe());
        assert!(!Failure::runtime("x").is_broken_pipe());
    }
}
