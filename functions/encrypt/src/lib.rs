//! The encrypt stage: opens a staged payload, checks its records, compresses it and seals
//! it in the archive format (docs/FORMAT.md) under the tenant's data key.
//!
//! Walking skeleton: the function is wired (library handler, Lambda binary, dispatcher
//! registration) but serves no task kind yet, so every task is refused with a permanent
//! `kind.unsupported` error rather than a pretended success.

use async_trait::async_trait;
use rainlogs_shared::function::Function;
use rainlogs_shared::{HandlerOutput, TaskEnvelope, TaskError};

/// The function's name, the first segment of the task kinds it serves.
pub const NAME: &str = "encrypt";

/// The encrypt function. Stateless: holds only clients built at start-up.
#[derive(Debug, Default, Clone)]
pub struct EncryptFunction;

impl EncryptFunction {
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Function for EncryptFunction {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        Err(rainlogs_shared::function::unsupported_kind(NAME, &task))
    }
}
