//! `fetch.window`: pulls one window from Logpull and stages it sealed.
//!
//! The zone's Cloudflare token is decrypted by the kms for this call only (bound to
//! tenant, zone and purpose). The response streams through the Logpull client's checks
//! straight into a [`Sealer`] under a fresh data key bound to the window's context, so
//! plaintext never lands anywhere: the sealed bytes are spooled to a temporary file and
//! uploaded to `staging/{zone}/{window_id}.sealed`. A window with no lines at all becomes
//! `empty` with its Empty chain link in one transaction; otherwise it becomes `staged`
//! and hands on to `encrypt.window`. Cloudflare's permanent refusals (400, 403) mark the
//! window `failed_permanent` and record the reason on the window and the zone.

use std::io::{self, Write};
use std::sync::Arc;

use rainlogs_shared::chain::{self, LinkContent, LinkInput};
use rainlogs_shared::db::DbError;
use rainlogs_shared::error::Classify;
use rainlogs_shared::kms::{Kms, SecretBinding};
use rainlogs_shared::ledger::{self, WindowState};
use rainlogs_shared::pipeline::{
    blocking, put_file, spool_error, Spool, WindowFacts, WindowTask, CLOUDFLARE_TOKEN_PURPOSE,
};
use rainlogs_shared::sealed::{SealParams, Sealer};
use rainlogs_shared::storage::ObjectStore;
use rainlogs_shared::task::kinds;
use rainlogs_shared::{ErrorClass, HandlerOutput, TaskEnvelope, TaskError};
use sqlx::PgPool;

use crate::logpull::{
    Credentials, LogpullClient, LogpullConfig, LogpullError, WindowRequest, WindowSummary, ZoneId,
};

pub(crate) async fn run(
    pool: &PgPool,
    store: &ObjectStore,
    kms: Arc<dyn Kms>,
    logpull: &LogpullConfig,
    task: &TaskEnvelope,
) -> Result<HandlerOutput, TaskError> {
    let payload: WindowTask = task.payload_as()?;
    let window = WindowFacts::load(pool, payload.window_id).await?;
    if let Some(out) = settled(&window, window.state) {
        return Ok(out);
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
        let now = WindowFacts::load(pool, window.id).await?;
        return Ok(settled(&now, now.state).unwrap_or_else(|| nothing(&now)));
    }

    let pulled = match pull(pool, kms, logpull, &window).await {
        Ok(pulled) => pulled,
        Err(Failure::Logpull(e)) if e.class() == ErrorClass::Permanent => {
            let reason = e.to_string();
            record_permanent_failure(pool, &window, &reason).await?;
            return Err(e.into());
        }
        Err(Failure::Logpull(e)) => return Err(e.into()),
        Err(Failure::Task(e)) => return Err(e),
    };

    let Some(spool) = pulled.spool else {
        return mark_empty(pool, &window).await;
    };
    put_file(store, &window.staging_key(), spool.path()).await?;
    if !ledger::transition(
        pool,
        window.id,
        &[WindowState::Fetching],
        WindowState::Staged,
        None,
    )
    .await?
    {
        // A concurrent fetch got there first. If the window is already past upload,
        // nobody will delete what this run just staged: do it here. (While the window
        // is staged or sealed, upload's cleanup still comes after this put.)
        let now = WindowFacts::load(pool, window.id).await?;
        if now.state.is_final() {
            store.delete(&window.staging_key()).await?;
        }
        return Ok(settled(&now, now.state).unwrap_or_else(|| nothing(&now)));
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
    pool: &PgPool,
    kms: Arc<dyn Kms>,
    logpull: &LogpullConfig,
    window: &WindowFacts,
) -> Result<Pulled, Failure> {
    let blob = sqlx::query_scalar!(
        "SELECT token_ciphertext FROM zones WHERE id = $1",
        window.zone_id
    )
    .fetch_one(pool)
    .await
    .map_err(|e| TaskError::from(DbError::query("read zone token", e)))?
    .ok_or_else(|| {
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
        .decrypt_secret(&binding, &blob)
        .await
        .map_err(TaskError::from)?;
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
    let mut body = client.open(&req).await.map_err(Failure::Logpull)?;

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
    // Reading and sealing run on a blocking thread: zstd and AES are CPU work.
    let result = blocking("seal window", move || {
        let mut sealer = sealer;
        loop {
            match handle.block_on(body.next_chunk()) {
                Ok(Some(chunk)) => sealer.write_all(&chunk).map_err(spool_error)?,
                Ok(None) => break,
                Err(e) => return Ok(Err(e)),
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
    let summary = result.map_err(Failure::Logpull)?;
    let empty = summary.records == 0 && summary.malformed_lines == 0;
    Ok(Pulled {
        spool: (!empty).then_some(spool),
        summary,
    })
}

/// Marks the window empty and appends its Empty link in one transaction.
async fn mark_empty(pool: &PgPool, window: &WindowFacts) -> Result<HandlerOutput, TaskError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::query("begin empty-window transaction", e))?;
    let moved = sqlx::query!(
        "UPDATE windows SET state = 'empty', state_since = now(), last_error = NULL
         WHERE id = $1 AND state = 'fetching'",
        window.id
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| DbError::query("mark window empty", e))?;
    if moved.rows_affected() != 1 {
        // Another run settled the window first; its transaction holds the truth.
        drop(tx);
        let now = WindowFacts::load(pool, window.id).await?;
        return Ok(settled(&now, now.state).unwrap_or_else(|| nothing(&now)));
    }
    let link = chain::append(
        &mut tx,
        window.id,
        &LinkInput {
            zone_id: window.zone_id,
            window_start: window.start_at,
            window_end: window.end_at,
            content: LinkContent::Empty,
        },
    )
    .await?;
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

/// What to answer when the window is past this stage; `None` when there is work.
fn settled(window: &WindowFacts, state: WindowState) -> Option<HandlerOutput> {
    let task = WindowTask {
        window_id: window.id,
    };
    let result =
        serde_json::json!({ "window_id": window.id, "state": state, "note": "already fetched" });
    match state {
        WindowState::Planned | WindowState::Fetching => None,
        WindowState::Staged => Some(HandlerOutput {
            result,
            next: vec![task.spec(kinds::ENCRYPT_WINDOW)],
        }),
        WindowState::Sealed => Some(HandlerOutput {
            result,
            next: vec![task.spec(kinds::UPLOAD_WINDOW)],
        }),
        _ => Some(HandlerOutput::done(result)),
    }
}

fn nothing(window: &WindowFacts) -> HandlerOutput {
    HandlerOutput::done(serde_json::json!({ "window_id": window.id, "state": window.state }))
}
