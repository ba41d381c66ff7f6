//! Exit codes, documented in the man page, and how an error maps to one.

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

/// Input the user gave that cronmgr refuses: exit status 2, database untouched.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(msg: impl Into<String>) -> Self {
        Invalid(msg.into())
    }
}

/// Refused for lack of permission: exit status 5, database untouched but for the audit row.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Forbidden(pub String);

/// Shorthand for `Err(Invalid(..).into())` in CLI code.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::exit::Invalid(format!($($arg)*))))
    };
}

/// The exit code for an error: bad input anywhere in the chain is a usage error, else a runtime error.
pub fn classify(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if cause.is::<Forbidden>() {
            return ExitCode::Forbidden;
        }
        if cause.is::<Invalid>()
            || cause.is::<crate::schedule::ScheduleError>()
            || cause.is::<crate::duration::DurationError>()
            || cause.is::<crate::executor::ParamError>()
        {
            return ExitCode::Usage;
        }
        // A config file cronmgr cannot make sense of is bad input; one it cannot read is not.
        if let Some(crate::config::ConfigError::Parse { .. }) = cause.downcast_ref() {
            return ExitCode::Usage;
        }
        if let Some(e) = cause.downcast_ref::<crate::store::StoreError>() {
            return if e.is_bad_input() {
                ExitCode::Usage
            } else {
                ExitCode::Error
            };
        }
    }
    ExitCode::Error
}

/// True when the error is a closed stdout pipe (`cronmgr list | head`): that is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    #[test]
    fn a_config_that_does_not_parse_is_bad_input_and_one_that_cannot_be_read_is_not() {
        let parse = anyhow::Error::new(ConfigError::Parse {
            path: "c.toml".into(),
            message: "expected `]`".into(),
        });
        assert_eq!(
            classify(&parse.context("loading the config")),
            ExitCode::Usage
        );
        let read = anyhow::Error::new(ConfigError::Read {
            path: "c.toml".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        });
        assert_eq!(classify(&read), ExitCode::Error);
    }
}
