//! The fetch stage: pulls one window of a zone's logs from the Cloudflare Logpull API
//! and stages the payload, encrypted, for the encrypt stage.
//!
//! Walking skeleton: the function is wired (library handler, Lambda binary, dispatcher
//! registration) but serves no task kind yet, so every task is refused with a permanent
//! `kind.unsupported` error rather than a pretended success.
//!
//! [`logpull`] is the Cloudflare Logpull client the stage will use.

pub mod logpull;

use async_trait::async_trait;
use rainlogs_shared::function::Function;
use rainlogs_shared::{HandlerOutput, TaskEnvelope, TaskError};

/// The function's name, the first segment of the task kinds it serves.
pub const NAME: &str = "fetch";

/// The fetch function. Stateless: holds only clients built at start-up.
#[derive(Debug, Default, Clone)]
pub struct FetchFunction;

impl FetchFunction {
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Function for FetchFunction {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn handle(&self, task: TaskEnvelope) -> Result<HandlerOutput, TaskError> {
        Err(rainlogs_shared::function::unsupported_kind(NAME, &task))
    }
}
