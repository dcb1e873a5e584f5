//! The dispatch loop: take a task, invoke its function, then acknowledge, retry or
//! dead-letter it according to the outcome.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rainlogs_shared::task::{HandlerOutput, TaskEnvelope};
use rainlogs_shared::TaskError;
use rand::Rng;
use tokio::sync::watch;

use crate::invoker::Invoker;
use crate::queue::{Delivery, Queue, QueueError};

/// Retry timing: exponential backoff with full jitter, capped.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// Delay before attempt `attempt + 1`: uniform in [0, min(cap, base·2^(attempt-1))].
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
        let ceiling = exp.min(self.cap);
        let ms = rand::thread_rng().gen_range(0..=ceiling.as_millis() as u64);
        Duration::from_millis(ms)
    }
}

/// What happened to one delivery (for logs, metrics and tests).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(serde_json::Value),
    Retrying { attempt: u32, delay: Duration },
    Dead(TaskError),
}

/// Consumes queues and runs tasks through an invoker.
pub struct Worker {
    queue: Queue,
    invoker: Arc<dyn Invoker>,
    queues: Vec<String>,
    backoff: Backoff,
    poll: Duration,
}

impl Worker {
    pub fn new(queue: Queue, invoker: Arc<dyn Invoker>, queues: Vec<String>) -> Self {
        Self {
            queue,
            invoker,
            queues,
            backoff: Backoff::default(),
            poll: Duration::from_millis(200),
        }
    }

    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Runs until `shutdown` turns true; the task in hand is finished first.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), QueueError> {
        while !*shutdown.borrow() {
            let mut idle = true;
            for q in &self.queues {
                self.queue.promote_due(q).await?;
                if let Some(delivery) = self.queue.reserve(q, Duration::ZERO).await? {
                    idle = false;
                    self.process(delivery).await?;
                }
            }
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(self.poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        Ok(())
    }

    /// Handles one delivery to its end state in the queue.
    pub async fn process(&self, delivery: Delivery) -> Result<Outcome, QueueError> {
        let envelope = match &delivery.envelope {
            Ok(env) => env.clone(),
            Err(e) => {
                let err = TaskError::from(e.clone());
                tracing::warn!(queue = %delivery.queue, error = %err, "poison message dead-lettered");
                self.queue.dead_letter(&delivery, err.clone()).await?;
                return Ok(Outcome::Dead(err));
            }
        };
        let result = match envelope.function() {
            Some(function) => {
                let event = serde_json::to_value(&envelope).expect("envelopes serialise");
                self.invoker.invoke(function, event).await
            }
            None => Err(TaskError::permanent(
                "envelope.invalid",
                "kind names no function",
            )),
        };
        let result = result.and_then(|value| {
            serde_json::from_value::<HandlerOutput>(value).map_err(|e| {
                TaskError::permanent(
                    "output.invalid",
                    format!("function output does not parse: {e}"),
                )
            })
        });
        match result {
            Ok(output) => {
                let now = Utc::now();
                let next: Vec<TaskEnvelope> = output
                    .next
                    .into_iter()
                    .map(|mut spec| {
                        spec.trace_id
                            .get_or_insert_with(|| envelope.trace_id.clone());
                        TaskEnvelope::new(spec, now)
                    })
                    .collect();
                self.queue.ack(&delivery, &next).await?;
                tracing::info!(task = %envelope.id, kind = %envelope.kind, attempt = envelope.attempt, "task done");
                Ok(Outcome::Done(output.result))
            }
            Err(err) if err.is_retryable() && envelope.attempt < envelope.max_attempts => {
                let hinted = err.retry_after_ms.map(Duration::from_millis);
                let delay = hinted
                    .unwrap_or_default()
                    .max(self.backoff.delay(envelope.attempt));
                tracing::warn!(task = %envelope.id, kind = %envelope.kind, attempt = envelope.attempt, error = %err, ?delay, "task failed, will retry");
                self.queue.retry(&delivery, &envelope, delay).await?;
                Ok(Outcome::Retrying {
                    attempt: envelope.attempt + 1,
                    delay,
                })
            }
            Err(err) => {
                tracing::warn!(task = %envelope.id, kind = %envelope.kind, attempt = envelope.attempt, error = %err, "task dead-lettered");
                self.queue.dead_letter(&delivery, err.clone()).await?;
                Ok(Outcome::Dead(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_exponential_ceiling_and_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for attempt in 1..40 {
            let ceiling = Duration::from_millis(100 * 2u64.pow((attempt - 1).min(20)))
                .min(Duration::from_secs(1));
            for _ in 0..50 {
                assert!(b.delay(attempt) <= ceiling);
            }
        }
    }
}
