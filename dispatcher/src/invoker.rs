//! How a task reaches its function.
//!
//! Every invoker takes the function's name and the event (the task envelope as JSON)
//! and returns the function's JSON output or its [`TaskError`]; a handler therefore
//! sees the same event whichever invoker runs it. The walking skeleton has the
//! in-process invoker; the runtime shim and the remote Lambda invoker plug in here.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use rainlogs_core::function::Function;
use rainlogs_core::TaskError;

/// Delivers an event to a named function.
#[async_trait]
pub trait Invoker: Send + Sync {
    async fn invoke(
        &self,
        function: &str,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, TaskError>;

    /// The functions this invoker can reach.
    fn functions(&self) -> Vec<String>;
}

/// Calls handler libraries linked into this process.
#[derive(Default, Clone)]
pub struct InProcess {
    functions: BTreeMap<&'static str, Arc<dyn Function>>,
}

impl InProcess {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a function under its own name.
    pub fn with(mut self, function: impl Function) -> Self {
        self.functions.insert(function.name(), Arc::new(function));
        self
    }
}

#[async_trait]
impl Invoker for InProcess {
    async fn invoke(
        &self,
        function: &str,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, TaskError> {
        let Some(f) = self.functions.get(function) else {
            return Err(TaskError::permanent(
                "function.unknown",
                format!(
                    "no function {function:?} in this dispatcher (has: {})",
                    self.functions().join(", ")
                ),
            ));
        };
        f.invoke_json(event).await
    }

    fn functions(&self) -> Vec<String> {
        self.functions.keys().map(|k| (*k).to_owned()).collect()
    }
}
