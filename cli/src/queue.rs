//! `rainlogs queue`: look at and repair the task queues (stats, dead letters, pause).
//!
//! Needs only Redis, so it works while Postgres or Garage are down — which is when an
//! operator most wants to see what piled up.

use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use rainlogs_core::config::{ConfigSource, RedisConfig};

use rainlogs_dispatcher::app::DEFAULT_QUEUE;
use rainlogs_dispatcher::queue::{AdminError, Queue, QueueStats};

#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub command: QueueCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum QueueCommand {
    /// Depth, state and counters of every queue (or the named ones).
    Stats {
        queues: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also read a dispatcher's metrics endpoint (e.g. http://127.0.0.1:9464/metrics)
        /// and print its in-flight tasks and enqueue-to-start latency.
        #[arg(long)]
        from: Option<String>,
    },
    /// List a queue's dead letters, newest first.
    List {
        #[arg(default_value = DEFAULT_QUEUE)]
        queue: String,
        /// At most this many (0 = all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead letter in full: envelope, last error, attempts, times.
    Inspect { queue: String, id: String },
    /// Put dead letters back as fresh first attempts (the given ids, or --all).
    Redrive {
        queue: String,
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete dead letters (the given ids, or --all).
    Purge {
        queue: String,
        ids: Vec<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Stop every dispatcher taking tasks from a queue (running tasks finish).
    Pause { queue: String },
    /// Let dispatchers take tasks from a paused queue again.
    Resume { queue: String },
}

/// Connects to Redis only.
async fn connect(src: &ConfigSource) -> anyhow::Result<Queue> {
    let redis = RedisConfig::from_source(src)?;
    let conn = rainlogs_core::redis_client::connect(&redis).await?;
    Ok(Queue::new(conn, redis.key_prefix))
}

pub(crate) async fn run(src: &ConfigSource, args: QueueArgs) -> anyhow::Result<ExitCode> {
    let queue = connect(src).await?;
    match args.command {
        QueueCommand::Stats { queues, json, from } => {
            let names = if queues.is_empty() {
                queue.known_queues().await?
            } else {
                queues
            };
            let mut all = Vec::new();
            for q in &names {
                all.push(queue.stats(q).await?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print!("{}", stats_table(&all));
            }
            if let Some(url) = from {
                let text = fetch_text(&url).await?;
                print!("{}", process_view(&text));
            }
        }
        QueueCommand::List { queue: q, limit } => {
            let letters = queue.dead_letters_limit(&q, limit).await?;
            if letters.is_empty() {
                println!("queue {q:?} has no dead letters");
            }
            for l in letters {
                let kind = serde_json::from_str::<serde_json::Value>(&l.raw)
                    .ok()
                    .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| "<unparseable>".into());
                println!(
                    "{}  {}  {:<20} attempts {:>2}  {}",
                    l.id,
                    l.dead_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    kind,
                    l.attempts,
                    l.error
                );
            }
        }
        QueueCommand::Inspect { queue: q, id } => {
            let letter = queue
                .dead_letter(&q, &id)
                .await?
                .ok_or(AdminError::NoSuchDeadLetter { queue: q, id })?;
            let envelope = serde_json::from_str::<serde_json::Value>(&letter.raw)
                .unwrap_or_else(|_| serde_json::Value::String(letter.raw.clone()));
            let view = serde_json::json!({
                "id": letter.id,
                "queue": letter.queue,
                "error": letter.error,
                "attempts": letter.attempts,
                "enqueued_at": letter.enqueued_at,
                "last_attempt_at": letter.last_attempt_at,
                "dead_at": letter.dead_at,
                "envelope": envelope,
            });
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
        QueueCommand::Redrive { queue: q, ids, all } => {
            let ids = select_ids(&queue, &q, ids, all).await?;
            let mut failed = 0;
            for id in &ids {
                match queue.redrive(&q, id).await {
                    Ok(env) => println!("re-driven {} ({}) to queue {q:?}", env.id, env.kind),
                    Err(e) => {
                        failed += 1;
                        eprintln!("error: {e}");
                    }
                }
            }
            println!(
                "{} of {} dead letters re-driven",
                ids.len() - failed,
                ids.len()
            );
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        QueueCommand::Purge { queue: q, ids, all } => {
            if ids.is_empty() && !all {
                anyhow::bail!("name dead letter ids to purge, or pass --all");
            }
            let n = queue.purge_dead(&q, &ids).await?;
            println!("purged {n} dead letters from queue {q:?}");
        }
        QueueCommand::Pause { queue: q } => {
            queue.set_paused(&q, true).await?;
            println!("queue {q:?} paused: dispatchers take no new tasks from it");
        }
        QueueCommand::Resume { queue: q } => {
            queue.set_paused(&q, false).await?;
            println!("queue {q:?} resumed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn select_ids(
    queue: &Queue,
    q: &str,
    ids: Vec<String>,
    all: bool,
) -> anyhow::Result<Vec<String>> {
    if !ids.is_empty() {
        return Ok(ids);
    }
    if !all {
        anyhow::bail!("name dead letter ids, or pass --all");
    }
    Ok(queue
        .dead_letters(q)
        .await
        .context("list dead letters")?
        .into_iter()
        .map(|l| l.id)
        .collect())
}

/// The stats as an aligned table (what `rainlogs queue stats` prints).
pub fn stats_table(all: &[QueueStats]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>7} {:>8} {:>7} {:>8} {:>6} {:>9} {:>10} {:>10} {:>8} {:>8} {:>6} {:>8}",
        "QUEUE",
        "STATE",
        "READY",
        "ACTIVE",
        "DELAYED",
        "DEAD",
        "IN-FLIGHT",
        "ENQUEUED",
        "PROCESSED",
        "FAILED",
        "RETRIED",
        "DEAD#",
        "DROPPED"
    );
    for s in all {
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>8} {:>7} {:>8} {:>6} {:>9} {:>10} {:>10} {:>8} {:>8} {:>6} {:>8}",
            s.queue,
            if s.paused { "paused" } else { "running" },
            s.depth.ready,
            s.depth.active,
            s.depth.delayed,
            s.depth.dead,
            s.in_flight,
            s.enqueued,
            s.processed,
            s.failed,
            s.retried,
            s.dead_lettered,
            s.dead_dropped
        );
        // Lanes with anything in them, in serving order (docs/QUEUE.md).
        for l in s.lanes.iter().filter(|l| l.pending > 0) {
            let _ = writeln!(
                out,
                "  {:<14} ready {:>8}  running {:>6}  pending {:>8}",
                l.lane.name(),
                l.ready,
                l.running,
                l.pending
            );
        }
    }
    let _ = writeln!(
        out,
        "(counters are cluster-wide since the queue was created; at {}; latency histograms: GET /metrics on a dispatcher)",
        Utc::now().format("%H:%M:%SZ")
    );
    out
}

/// GETs a dispatcher's endpoint over plain HTTP (`queue stats --from`, `rainlogs health`).
pub(crate) async fn fetch_text(url: &str) -> anyhow::Result<String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.get(uri))
        .await
        .with_context(|| format!("{url}: no answer within 10 s"))?
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        anyhow::bail!("GET {url}: HTTP {}", resp.status());
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("GET {url}: body"))?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// In-flight tasks and latency quantiles (bucket upper bounds) per queue, from the
/// Prometheus text of one dispatcher.
pub fn process_view(text: &str) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let label = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_owned())
    };
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let mut in_flight: BTreeMap<String, f64> = BTreeMap::new();
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("rainlogs_tasks_in_flight{") {
            if let (Some(q), Some(v)) = (label(line, "queue"), value(line)) {
                in_flight.insert(q, v);
            }
        } else if line.starts_with("rainlogs_task_start_latency_seconds_bucket{") {
            let le = label(line, "le").and_then(|l| {
                if l == "+Inf" {
                    Some(f64::INFINITY)
                } else {
                    l.parse().ok()
                }
            });
            if let (Some(q), Some(le), Some(v)) = (label(line, "queue"), le, value(line)) {
                buckets.entry(q).or_default().push((le, v));
            }
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>9} {:>10} {:>12} {:>12}",
        "QUEUE", "IN-FLIGHT", "STARTED", "P50 <=", "P99 <="
    );
    let quantile = |b: &[(f64, f64)], q: f64| -> String {
        let total = b.last().map(|x| x.1).unwrap_or(0.0);
        if total == 0.0 {
            return "-".into();
        }
        b.iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(le, _)| {
                if le.is_infinite() {
                    "+Inf".into()
                } else {
                    format!("{:.1} ms", le * 1000.0)
                }
            })
            .unwrap_or_else(|| "-".into())
    };
    let queues: std::collections::BTreeSet<&String> =
        in_flight.keys().chain(buckets.keys()).collect();
    for q in queues {
        let mut b = buckets.get(q).cloned().unwrap_or_default();
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>10} {:>12} {:>12}",
            q,
            in_flight.get(q).copied().unwrap_or(0.0),
            b.last().map(|x| x.1).unwrap_or(0.0),
            quantile(&b, 0.5),
            quantile(&b, 0.99)
        );
    }
    out
}
