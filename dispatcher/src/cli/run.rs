//! `rainlogs run`: the dispatcher process — configuration, invoker, metrics endpoint,
//! signal handling, the window scheduler/reconciler ([`crate::reconcile`]) and the
//! worker, until SIGTERM/SIGINT and a graceful shutdown.

use std::process::ExitCode;

use anyhow::Context;
use rainlogs_shared::config::ConfigSource;
use tokio::sync::watch;

use crate::app::App;
use crate::config::DispatcherConfig;
use crate::metrics::Metrics;

pub(crate) async fn run(src: &ConfigSource, queues: Vec<String>) -> anyhow::Result<ExitCode> {
    let mut cfg = DispatcherConfig::from_source(src)?;
    if !queues.is_empty() {
        cfg.queues = crate::config::parse_queues(&queues.join(","), cfg.queues[0].concurrency)
            .map_err(|e| anyhow::anyhow!("--queues: {e}"))?;
    }
    let scheduler = crate::reconcile::SchedulerConfig::from_source(src)?;
    // Listen for SIGTERM/SIGINT before connecting: a stop requested while start-up is
    // still connecting or migrating ends the process cleanly once it is up, instead of
    // killing it with the signal's default action.
    let (tx, rx) = watch::channel(false);
    let grace = cfg.shutdown_grace;
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!(?grace, "shutdown requested; finishing in-flight tasks");
        let _ = tx.send(true);
    });
    tokio::task::yield_now().await;
    let app = App::connect(src).await?;
    rainlogs_shared::db::migrate(&app.pool).await?;
    let invoker = app.invoker(&cfg.invoker, rx.clone()).await?;
    let metrics = Metrics::new();
    if let Some(addr) = cfg.metrics_addr {
        let bound = metrics
            .clone()
            .serve(app.queue.clone(), addr, rx.clone())
            .await
            .with_context(|| format!("metrics endpoint on {addr}"))?;
        tracing::info!(%bound, "metrics at http://{bound}/metrics");
    }
    let planner = tokio::spawn(crate::reconcile::run_loop(
        app.clone(),
        scheduler,
        rx.clone(),
    ));
    let names: Vec<&str> = cfg.queues.iter().map(|q| q.name.as_str()).collect();
    tracing::info!(queues = ?names, invoker = ?cfg.invoker, "dispatcher running");
    app.worker_with(cfg, invoker)
        .with_metrics(metrics)
        .run(rx)
        .await
        .context("dispatcher")?;
    planner.await.context("scheduler task panicked")?;
    tracing::info!("dispatcher stopped");
    Ok(ExitCode::SUCCESS)
}
