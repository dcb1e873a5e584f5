//! `fetch.window`: pulls one window from Logpull and stages it sealed.
//!
//! The zone's Cloudflare token is decrypted by the kms for this call only (bound to
//! tenant, zone and purpose). The response streams through the Logpull client's checks
//! straight into a [`Sealer`] under a fresh data key bound to the window's context, so
//! plaintext never lands anywhere: the sealed bytes are spooled to a temporary file and
//! uploaded to `staging/{zone}/{window_id}.sealed`. A window with no lines at all becomes
//! `empty` with its Empty chain link in one transaction; otherwise it becomes `staged`
//! and hands on to `encrypt.window`. Cloudflare's permanent refusals of the window
//! (400) mark it `failed_permanent` and record the reason on the window and the zone;
//! a refused credential (401/403), a missing or unreadable token or tenant key parks
//! the zone instead (`pipeline::finish_attempt`): the window goes back to `planned`.
//!
//! A window too large (more raw bytes than [`SplitPolicy::max_raw_bytes`]) or too slow
//! (not done within [`SplitPolicy::max_duration`], first byte included) is abandoned
//! mid-stream and split in halves (`ledger::split`): the halves are fetched instead,
//! recursively, down to [`SplitPolicy::min_width`]; a window that cannot be halved any
//! further fails permanently with the reason. Nothing of the abandoned attempt is kept.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rainlogs_archive::chain::{LinkContent, LinkInput};
use rainlogs_archive::ledger::{self, StageAction, WindowState};
use rainlogs_archive::pipeline::{
    self, blocking, put_file, spool_error, Spool, WindowFacts, WindowTask, CLOUDFLARE_TOKEN_PURPOSE,
};
use rainlogs_core::config::{ConfigError, ConfigSource};
use rainlogs_core::db::DbError;
use rainlogs_core::error::Classify;
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::task::kinds;
use rainlogs_core::{ErrorClass, HandlerOutput, TaskEnvelope, TaskError};
use rainlogs_sealed::kms::{KeyError, Kms, SecretBinding};
use rainlogs_sealed::{SealParams, Sealer};
use sqlx::PgPool;

use crate::endpoint::CloudflareApi;
use crate::logpull::{
    Credentials, LogpullClient, LogpullConfig, LogpullError, WindowRequest, WindowSummary, ZoneId,
};

/// When a window is too big or too slow for one request, and how far halving goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitPolicy {
    /// Raw (decompressed) NDJSON bytes one request may bring; beyond, split.
    pub max_raw_bytes: u64,
    /// Wall time one request may take, first byte included; beyond, split.
    pub max_duration: Duration,
    /// The narrowest window a split may produce.
    pub min_width: Duration,
}

/// Raw byte limit per request (`RAINLOGS_FETCH_SPLIT_BYTES`).
pub const SPLIT_BYTES_VAR: &str = "RAINLOGS_FETCH_SPLIT_BYTES";
/// Time limit per request in seconds (`RAINLOGS_FETCH_SPLIT_AFTER_SECS`).
pub const SPLIT_AFTER_VAR: &str = "RAINLOGS_FETCH_SPLIT_AFTER_SECS";
/// Narrowest window in seconds (`RAINLOGS_FETCH_MIN_WINDOW_SECS`).
pub const MIN_WINDOW_VAR: &str = "RAINLOGS_FETCH_MIN_WINDOW_SECS";

impl Default for SplitPolicy {
    fn default() -> Self {
        // 2 GiB raw seals to ~200 MiB of spool (measured ~10 %: docs/BENCHMARKS.md),
        // inside a Lambda's default 512 MiB /tmp; an hour of a busy zone stays whole;
        // 10 minutes leaves a Lambda's 15-minute limit room for staging the result.
        Self {
            max_raw_bytes: 2 << 30,
            max_duration: Duration::from_secs(600),
            min_width: Duration::from_secs(1),
        }
    }
}

impl SplitPolicy {
    /// The policy from configuration; unset variables keep the defaults.
    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let d = Self::default();
        let positive = |var: &str, v: u64| {
            if v == 0 {
                Err(ConfigError::Invalid {
                    var: var.to_owned(),
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(v)
            }
        };
        Ok(Self {
            max_raw_bytes: positive(
                SPLIT_BYTES_VAR,
                src.parsed_or(SPLIT_BYTES_VAR, d.max_raw_bytes)?,
            )?,
            max_duration: Duration::from_secs(positive(
                SPLIT_AFTER_VAR,
                src.parsed_or(SPLIT_AFTER_VAR, d.max_duration.as_secs())?,
            )?),
            min_width: Duration::from_secs(positive(
                MIN_WINDOW_VAR,
                src.parsed_or(MIN_WINDOW_VAR, d.min_width.as_secs())?,
            )?),
        })
    }
}

pub(crate) async fn run(
    pool: &PgPool,
    store: &ObjectStore,
    kms: Arc<dyn Kms>,
    logpull: &LogpullConfig,
    cloudflare: &CloudflareApi,
    policy: &SplitPolicy,
    task: &TaskEnvelope,
) -> Result<HandlerOutput, TaskError> {
    let payload: WindowTask = task.payload_as()?;
    let window = WindowFacts::load(pool, payload.window_id).await?;
    if let Some(out) = settled(pool, &window).await? {
        return Ok(out);
    }
    // A parked zone (bad token, shredded tenant, …): do not ask Cloudflare with what is
    // known not to work; the window waits, `planned`, until the zone is resumed.
    if let Some(reason) = &window.parked {
        return pipeline::park_window(pool, window.id, reason, crate::NAME).await;
    }
    // planned → fetching, or a replay of a fetch that never finished.
    if !ledger::transition(
        pool,
        window.id,
        &[WindowState::Planned, WindowState::Fetching],
        WindowState::Fetching,
        None,
    )
    .await?
    {
        return resettle(pool, window.id).await;
    }

    // The zone decides where its token goes: its own simulator, or the allow-listed
    // Cloudflare API base — never whatever this process was pointed at.
    let logpull = LogpullConfig {
        base_url: cloudflare.base_for(&window.endpoint).to_owned(),
        ..logpull.clone()
    };
    let pulled = match pull(kms.clone(), &logpull, policy, &window).await {
        Ok(pulled) => pulled,
        Err(Failure::TooBig(reason)) => return split(pool, &window, policy, &reason).await,
        // 401/403: the zone's credential, not this window. `finish_attempt` parks the
        // zone and puts the window back to `planned` instead of failing it.
        Err(Failure::Logpull(e @ LogpullError::Forbidden { .. })) => return Err(e.into()),
        Err(Failure::Logpull(e)) if e.class() == ErrorClass::Permanent => {
            let reason = e.to_string();
            record_permanent_failure(pool, &window, &reason).await?;
            return Err(e.into());
        }
        Err(Failure::Logpull(e)) => return Err(e.into()),
        Err(Failure::Task(e)) => return Err(e),
    };

    let Some(spool) = pulled.spool else {
        return mark_empty(pool, kms.as_ref(), &window).await;
    };
    put_file(store, &window.staging_key(), spool.path()).await?;
    // `staged`, with the quarantined lines' count and first positions on the window.
    let sample = (!pulled.summary.malformed.is_empty()).then(|| {
        serde_json::Value::Array(
            pulled
                .summary
                .malformed
                .iter()
                .map(
                    |m| serde_json::json!({"line": m.line, "offset": m.offset, "reason": m.reason}),
                )
                .collect(),
        )
    });
    // The records' own time span: restore's selection by record time (late records).
    // Only when every line is a record with a time: otherwise restore assumes the
    // documented lag and keeps untimed records and quarantined lines with the window's
    // time, as for a window staged before spans were recorded.
    let span = (pulled.summary.untimed == 0 && pulled.summary.malformed_lines == 0)
        .then(|| pulled.summary.span.instants())
        .flatten();
    let staged = sqlx::query!(
        "UPDATE windows SET state = 'staged', state_since = now(), last_error = NULL,
                            malformed_lines = $2, malformed_sample = $3,
                            first_record_at = $4, last_record_at = $5
         WHERE id = $1 AND state = 'fetching'",
        window.id,
        pulled.summary.malformed_lines as i64,
        sample,
        span.map(|s| s.0),
        span.map(|s| s.1),
    )
    .execute(pool)
    .await
    .map_err(|e| TaskError::from(DbError::query("mark window staged", e)))?
    .rows_affected()
        == 1;
    if !staged {
        // A concurrent fetch got there first. If the window is already past upload,
        // nobody will delete what this run just staged: do it here. (While the window
        // is staged or sealed, upload's cleanup still comes after this put.)
        let now = WindowFacts::load(pool, window.id).await?;
        if now.state.is_final() {
            store.delete(&window.staging_key()).await?;
        }
        return resettle(pool, window.id).await;
    }
    tracing::info!(
        window = window.id,
        records = pulled.summary.records,
        raw_bytes = pulled.summary.raw_bytes,
        "window staged"
    );
    Ok(HandlerOutput {
        result: serde_json::json!({
            "window_id": window.id,
            "state": "staged",
            "records": pulled.summary.records,
            "malformed_lines": pulled.summary.malformed_lines,
            "raw_bytes": pulled.summary.raw_bytes,
        }),
        next: vec![payload.spec(kinds::ENCRYPT_WINDOW)],
    })
}

enum Failure {
    Logpull(LogpullError),
    Task(TaskError),
    /// Over the split policy's size or time limit: the reason.
    TooBig(String),
}

/// Splits `window` in halves and hands them on, or fails it permanently when it is
/// already as narrow as the policy allows.
async fn split(
    pool: &PgPool,
    window: &WindowFacts,
    policy: &SplitPolicy,
    reason: &str,
) -> Result<HandlerOutput, TaskError> {
    let min_width = chrono::TimeDelta::from_std(policy.min_width).unwrap_or(chrono::TimeDelta::MAX);
    let Some(mid) = ledger::split_point(window.start_at, window.end_at, min_width) else {
        let reason = format!(
            "{reason}; the window cannot be split below {} s",
            policy.min_width.as_secs()
        );
        record_permanent_failure(pool, window, &reason).await?;
        return Err(TaskError::permanent("fetch.window_too_large", reason));
    };
    match ledger::split(pool, window.id, mid, reason).await? {
        ledger::SplitOutcome::Split { halves } => {
            tracing::warn!(window = window.id, ?halves, %reason, "window split in halves");
            Ok(split_output(window.id, halves, "split"))
        }
        ledger::SplitOutcome::NotFetching => resettle(pool, window.id).await,
    }
}

fn split_output(window_id: i64, halves: [i64; 2], note: &str) -> HandlerOutput {
    HandlerOutput {
        result: serde_json::json!({
            "window_id": window_id, "state": "split", "halves": halves, "note": note,
        }),
        next: halves
            .iter()
            .map(|&id| WindowTask { window_id: id }.spec(kinds::FETCH_WINDOW))
            .collect(),
    }
}

impl From<TaskError> for Failure {
    fn from(e: TaskError) -> Self {
        Failure::Task(e)
    }
}

struct Pulled {
    summary: WindowSummary,
    /// The sealed payload, `None` when Cloudflare returned no lines at all.
    spool: Option<Spool>,
}

async fn pull(
    kms: Arc<dyn Kms>,
    logpull: &LogpullConfig,
    policy: &SplitPolicy,
    window: &WindowFacts,
) -> Result<Pulled, Failure> {
    let started = Instant::now();
    let too_slow = || {
        Failure::TooBig(format!(
            "fetch took longer than {} s",
            policy.max_duration.as_secs()
        ))
    };
    // Read with the window (`WindowFacts::load`): no round trip of its own.
    let blob = window.token_ciphertext.as_deref().ok_or_else(|| {
        TaskError::permanent(
            "zone.no_token",
            format!("zone {} has no Cloudflare token stored", window.zone_id),
        )
    })?;
    let binding = SecretBinding {
        tenant: window.tenant_id,
        zone: window.zone_id,
        purpose: CLOUDFLARE_TOKEN_PURPOSE.to_owned(),
    };
    let token = kms
        .decrypt_secret(&binding, blob)
        .await
        .map_err(|e| match e {
            // The stored token does not open under its own binding: no retry helps.
            KeyError::Unwrap { .. } => TaskError::permanent(
                "zone.bad_token",
                format!(
                    "zone {}: the stored Cloudflare token cannot be opened: {e}",
                    window.zone_id
                ),
            ),
            e => TaskError::from(e),
        })?;
    let token = std::str::from_utf8(&token).map_err(|_| {
        TaskError::permanent(
            "zone.bad_token",
            format!(
                "zone {}: stored Cloudflare token is not UTF-8",
                window.zone_id
            ),
        )
    })?;
    let client = LogpullClient::new(logpull.clone(), &Credentials::token(token))
        .map_err(Failure::Logpull)?;
    let zone = ZoneId::parse(&window.cf_zone_id)
        .map_err(|e| Failure::Logpull(LogpullError::InvalidRequest(e)))?;
    let mut req = WindowRequest::new(zone, window.start_at, window.end_at);
    if !window.fields.is_empty() {
        req = req.fields(window.fields.iter().cloned());
    }
    let mut body = tokio::time::timeout(policy.max_duration, client.open(&req))
        .await
        .map_err(|_| too_slow())?
        .map_err(Failure::Logpull)?;

    let context = window.context();
    let data_key = kms
        .generate_data_key(&context)
        .await
        .map_err(TaskError::from)?;
    let (spool, file) = Spool::create().map_err(spool_error)?;
    let sealer = Sealer::new(
        io::BufWriter::new(file),
        SealParams::new(context, &data_key),
    )
    .map_err(TaskError::from)?;
    drop(data_key);
    let handle = tokio::runtime::Handle::current();
    let (max_bytes, deadline) = (policy.max_raw_bytes, started + policy.max_duration);
    // Reading and sealing run on a blocking thread: zstd and AES are CPU work.
    let result = blocking("seal window", move || {
        let mut sealer = sealer;
        let mut raw = 0u64;
        loop {
            let next = handle.block_on(async {
                tokio::time::timeout_at(deadline.into(), body.next_chunk()).await
            });
            match next {
                Ok(Ok(Some(chunk))) => {
                    raw += chunk.len() as u64;
                    if raw > max_bytes {
                        return Ok(Err(Over::Bytes(raw)));
                    }
                    sealer.write_all(&chunk).map_err(spool_error)?
                }
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Ok(Err(Over::Logpull(e))),
                Err(_) => return Ok(Err(Over::Time)),
            }
        }
        let (writer, _) = sealer.finish()?;
        writer
            .into_inner()
            .map_err(|e| spool_error(e.into_error()))?
            .sync_all()
            .map_err(spool_error)?;
        Ok(Ok(body.summary()))
    })
    .await?;
    let summary = result.map_err(|over| match over {
        Over::Logpull(e) => Failure::Logpull(e),
        Over::Time => too_slow(),
        Over::Bytes(n) => Failure::TooBig(format!(
            "window holds more than {max_bytes} raw bytes (stopped at {n})"
        )),
    })?;
    let empty = summary.records == 0 && summary.malformed_lines == 0;
    Ok(Pulled {
        spool: (!empty).then_some(spool),
        summary,
    })
}

/// Why the streaming loop stopped early.
enum Over {
    Logpull(LogpullError),
    Time,
    Bytes(u64),
}

/// Marks the window empty and appends its Empty link in one transaction.
async fn mark_empty(
    pool: &PgPool,
    kms: &dyn Kms,
    window: &WindowFacts,
) -> Result<HandlerOutput, TaskError> {
    // The link is MACed under the tenant's chain key (docs/CHAIN.md version 2).
    let chain_key = kms.chain_key(window.tenant_id, None).await?;
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::query("begin empty-window transaction", e))?;
    let link = ledger::settle(
        &mut tx,
        window.id,
        WindowState::Fetching,
        WindowState::Empty,
        &LinkInput {
            zone_id: window.zone_id,
            window_start: window.start_at,
            window_end: window.end_at,
            content: LinkContent::Empty,
        },
        &chain_key,
    )
    .await?;
    let Some(link) = link else {
        // Another run settled the window first; its transaction holds the truth.
        drop(tx);
        return resettle(pool, window.id).await;
    };
    tx.commit()
        .await
        .map_err(|e| DbError::query("commit empty-window transaction", e))?;
    tracing::info!(window = window.id, seq = link.seq, "window empty");
    Ok(HandlerOutput::done(serde_json::json!({
        "window_id": window.id,
        "state": "empty",
        "seq": link.seq,
    })))
}

/// Records a permanent Cloudflare refusal on the window and the zone.
async fn record_permanent_failure(
    pool: &PgPool,
    window: &WindowFacts,
    reason: &str,
) -> Result<(), TaskError> {
    ledger::transition(
        pool,
        window.id,
        &[WindowState::Fetching],
        WindowState::FailedPermanent,
        Some(reason),
    )
    .await?;
    sqlx::query!(
        "UPDATE zones SET last_error = $2 WHERE id = $1",
        window.zone_id,
        reason
    )
    .execute(pool)
    .await
    .map_err(|e| DbError::query("record zone error", e))?;
    tracing::warn!(window = window.id, %reason, "window failed permanently");
    Ok(())
}

/// Re-reads the window after losing a race and answers for its current state.
async fn resettle(pool: &PgPool, window_id: i64) -> Result<HandlerOutput, TaskError> {
    let now = WindowFacts::load(pool, window_id).await?;
    Ok(settled(pool, &now).await?.unwrap_or_else(|| nothing(&now)))
}

/// What to answer when the window is not waiting for a fetch; `None` when it is.
async fn settled(pool: &PgPool, window: &WindowFacts) -> Result<Option<HandlerOutput>, TaskError> {
    let result = serde_json::json!({ "window_id": window.id, "state": window.state, "note": "already fetched" });
    let task = WindowTask {
        window_id: window.id,
    };
    Ok(match window.state.for_stage(kinds::FETCH_WINDOW) {
        // Hand the halves on again: the run that split may have died before they left.
        StageAction::Nothing if window.state == WindowState::Split => {
            let halves = ledger::split_halves(pool, window.id).await?;
            Some(split_output(window.id, halves, "already split"))
        }
        action => task.answer(action, result),
    })
}

fn nothing(window: &WindowFacts) -> HandlerOutput {
    HandlerOutput::done(serde_json::json!({ "window_id": window.id, "state": window.state }))
}
