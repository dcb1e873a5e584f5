//! Serving an axum router on a bound listener until the shutdown signal turns true —
//! shared by the runtime shim's per-child listeners and the metrics endpoint.

use tokio::net::TcpListener;
use tokio::sync::watch;

/// Spawns the server; a server error is logged under `what`, never silently dropped.
pub fn spawn_until_shutdown(
    listener: TcpListener,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
) {
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "{what} stopped");
        }
    });
}
