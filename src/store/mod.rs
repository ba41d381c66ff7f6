//! The database.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    pub fn is_bad_input(&self) -> bool {
        matches!(self, StoreError::Invalid(_))
    }
}
