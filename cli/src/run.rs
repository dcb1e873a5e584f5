//! `rainlogs run`: the dispatcher process — configuration, invoker, metrics endpoint,
//! signal handling, the window scheduler/reconciler ([`rainlogs_dispatcher::reconcile`]) and the
//! worker, until SIGTERM/SIGINT and a graceful shutdown.

use std::process::ExitCode;

use anyhow::Context;
use rainlogs_core::config::ConfigSource;
use tokio::sync::watch;

use rainlogs_dispatcher::app::App;
use rainlogs_dispatcher::config::DispatcherConfig;
use rainlogs_dispatcher::metrics::Metrics;

pub(crate) async fn run(src: &ConfigSource, queues: Vec<String>) -> anyhow::Result<ExitCode> {
    let mut cfg = DispatcherConfig::from_source(src)?;
    if !queues.is_empty() {
        cfg.queues =
            rainlogs_dispatcher::config::parse_queues(&queues.join(","), cfg.queues[0].concurrency)
                .map_err(|e| anyhow::anyhow!("--queues: {e}"))?;
    }
    let scheduler = rainlogs_dispatcher::reconcile::SchedulerConfig::from_source(src)?;
    let checkpoint_interval = rainlogs_archive::checkpoint::interval_from(src)?;
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
    rainlogs_core::db::migrate(&app.pool).await?;
    // Catalog rows from before migration 0019 get their bucket prefix (docs/VERIFY.md).
    let completed =
        rainlogs_archive::pipeline::complete_catalog_keys(&app.pool, app.store.prefix()).await?;
    if completed > 0 {
        tracing::info!(completed, "catalog keys completed with the bucket prefix");
    }
    let invoker = app.invoker(&cfg.invoker, rx.clone()).await?;
    let metrics = Metrics::new().watch_archive(app.pool.clone(), app.landing.clone());
    if let Some(addr) = cfg.metrics_addr {
        let bound = metrics
            .clone()
            .serve(app.queue.clone(), addr, rx.clone())
            .await
            .with_context(|| format!("metrics endpoint on {addr}"))?;
        tracing::info!(%bound, "metrics at http://{bound}/metrics");
    }
    // Without a keyring the window stages here refuse every window: do not plan or
    // re-send windows only to have them refused — say so, loudly, and run the rest.
    let scheduler = match app.pipeline_off_reason(&cfg.invoker) {
        Some(reason) => {
            tracing::error!(
                "archive pipeline OFF: {reason}. No window is planned, re-sent, fetched, \
                 sealed or uploaded by this process (a window task it takes anyway is \
                 refused as kind.unsupported); probes, queue, prune and kms tasks that need \
                 no keys still run. Configure the keyring to archive."
            );
            rainlogs_dispatcher::reconcile::SchedulerConfig {
                interval: std::time::Duration::ZERO,
                ..scheduler
            }
        }
        None => scheduler,
    };
    let planner = tokio::spawn(rainlogs_dispatcher::reconcile::run_loop(
        app.clone(),
        scheduler,
        rx.clone(),
    ));
    // Chain tips MACed into the bucket (docs/CHAIN.md "Checkpoints"); needs the kms.
    let checkpoints = app.kms.clone().map(|kms| {
        tokio::spawn(rainlogs_archive::checkpoint::run_loop(
            app.pool.clone(),
            app.store.clone(),
            std::sync::Arc::new(kms),
            checkpoint_interval,
            rx.clone(),
        ))
    });
    let names: Vec<&str> = cfg.queues.iter().map(|q| q.name.as_str()).collect();
    tracing::info!(queues = ?names, invoker = ?cfg.invoker, "dispatcher running");
    app.worker_with(cfg, invoker)
        .with_metrics(metrics)
        .run(rx)
        .await
        .context("dispatcher")?;
    planner.await.context("scheduler task panicked")?;
    if let Some(c) = checkpoints {
        c.await.context("checkpoint task panicked")?;
    }
    tracing::info!("dispatcher stopped");
    Ok(ExitCode::SUCCESS)
}
