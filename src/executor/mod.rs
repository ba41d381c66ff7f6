//! The executor whitelist: name -> parameter check -> how to run it.

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);
