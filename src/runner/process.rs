//! One child process in its own process group: clean environment, captured output, timeout, rusage.
//!
//! PLACEHOLDER: replaced by the real implementation.
