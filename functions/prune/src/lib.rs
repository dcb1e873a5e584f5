//! The prune stage: deletes archived objects past their retention, writes deletion
//! receipts and sweeps orphaned objects; scheduled daily.
//!
//! Walking skeleton: the function is wired (library handler, Lambda binary, dispatcher
//! registration) but serves no task kind yet, so every task is refused with a permanent
//! `kind.unsupported` error rather than a pretended success.

use async_trait::async_trait;
use rainlogs_shared::function::Function;
use rainlogs_shared::{HandlerOutput, TaskEnvelope, TaskError};

/// The function's name, the first segment of the task kinds it serves.
pub const NAME: &str = "prune";

/// The prune function. Stateless: holds only clients built at start-up.
#[derive(Debug, Default, Clone)]
pub struct PruneFunction;

impl PruneFunction {
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Function for PruneFunction {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        Err(rainlogs_shared::function::unsupported_kind(NAME, &task))
    }
}
