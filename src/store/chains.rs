//! Chains in the history: which execution's end triggered which.

use super::sql::params;
use super::{Batch, Result};

impl Batch<'_> {
    /// Execution `id` was triggered by the end of execution `parent`.
    pub fn set_cause(&self, id: i64, parent: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE executions SET caused_by = ?2 WHERE id = ?1")?
            .execute(params![id, parent])?;
        Ok(())
    }
}
