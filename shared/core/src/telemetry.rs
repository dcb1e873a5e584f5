//! Logging set-up: `tracing` to stderr, filtered by `RAINLOGS_LOG` (default `info`).
//!
//! Log lines carry ids, keys, counts and error codes — never log records, tokens or
//! key material; types holding secrets redact themselves in `Debug`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops.
pub fn init() {
    let filter = EnvFilter::try_from_env("RAINLOGS_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("RAINLOGS_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
