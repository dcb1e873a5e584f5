//! `rainlogs probe` and the skeleton `demo`: send probe tasks end to end and check,
//! from outside the function, that each left its object in S3 and its row in Postgres.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rainlogs_core::task::{kinds, TaskSpec};
use rainlogs_upload::{ProbePayload, ProbeResult};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use rainlogs_dispatcher::app::{App, DEFAULT_QUEUE};

#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// How many probe tasks to send.
    #[arg(long, default_value_t = 3)]
    pub count: u32,
    /// Queue to send them to.
    #[arg(long, default_value = DEFAULT_QUEUE)]
    pub queue: String,
    /// How long to wait for all of them, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

pub(crate) async fn probe(app: &App, args: &ProbeArgs) -> anyhow::Result<ExitCode> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let started = Instant::now();
    let mut pending = Vec::new();
    for i in 0..args.count {
        let payload = ProbePayload {
            note: Some(format!("rainlogs probe {}/{}", i + 1, args.count)),
        };
        let spec = TaskSpec::new(
            args.queue.clone(),
            kinds::UPLOAD_PROBE,
            serde_json::to_value(payload)?,
        );
        let envelope = app.queue.enqueue(spec).await.context("enqueue probe")?;
        println!("enqueued  probe {} on queue {:?}", envelope.id, args.queue);
        pending.push(envelope.id);
    }

    let deadline = started + Duration::from_secs(args.timeout);
    let mut done: Vec<(Uuid, ProbeResult, Duration)> = Vec::new();
    while !pending.is_empty() {
        let rows = sqlx::query!(
            "SELECT task_id, object_key, sha256, size_bytes, attempt FROM probe_runs WHERE task_id = ANY($1)",
            &pending
        )
        .fetch_all(&app.pool)
        .await
        .context("read probe_runs")?;
        for row in rows {
            pending.retain(|id| *id != row.task_id);
            done.push((
                row.task_id,
                ProbeResult {
                    object_key: row.object_key,
                    sha256: hex::encode(row.sha256),
                    size_bytes: row.size_bytes,
                    recorded_attempt: row.attempt,
                },
                started.elapsed(),
            ));
        }
        if pending.is_empty() {
            break;
        }
        if let Some(dead) = dead_probe(app, &args.queue, &pending).await? {
            bail!("probe {} was dead-lettered: {}", dead.0, dead.1);
        }
        if Instant::now() >= deadline {
            bail!(
                "{} of {} probes not completed after {} s; is a dispatcher running on queue {:?}? (`rainlogs run`)",
                pending.len(),
                args.count,
                args.timeout,
                args.queue
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Check from outside: the object is there and its bytes hash to the recorded value.
    for (id, result, latency) in &done {
        let body = app
            .store
            .get(&result.object_key)
            .await
            .with_context(|| format!("probe {id}: read back {}", result.object_key))?;
        let actual = hex::encode(Sha256::digest(&body));
        if actual != result.sha256 {
            bail!(
                "probe {id}: object {} hashes to {actual}, Postgres recorded {}",
                result.object_key,
                result.sha256
            );
        }
        println!(
            "completed probe {id} in {:>5} ms: s3://{}/{}{} ({} bytes, sha256 {}…) + probe_runs row (attempt {})",
            latency.as_millis(),
            app.store.bucket(),
            app.store.prefix(),
            result.object_key,
            result.size_bytes,
            &result.sha256[..16],
            result.recorded_attempt
        );
    }
    println!(
        "{} probes travelled Redis → dispatcher → upload function → Garage + Postgres in {} ms; objects verified",
        done.len(),
        started.elapsed().as_millis()
    );
    Ok(ExitCode::SUCCESS)
}

async fn dead_probe(
    app: &App,
    queue: &str,
    pending: &[Uuid],
) -> anyhow::Result<Option<(Uuid, String)>> {
    let letters = app.queue.dead_letters(queue).await?;
    for letter in letters {
        if let Ok(env) = serde_json::from_str::<rainlogs_core::TaskEnvelope>(&letter.raw) {
            if pending.contains(&env.id) {
                return Ok(Some((env.id, letter.error.to_string())));
            }
        }
    }
    Ok(None)
}
