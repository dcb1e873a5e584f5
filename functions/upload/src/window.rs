//! `upload.window`: commits a sealed window to the archive.
//!
//! Encrypt has already written the window's object at its deterministic archive key
//! (under the window's row lock, only while the window was `staged`, so once the window
//! is `sealed` that object never changes). Upload reads it end to end — object SHA-256,
//! header context, every chunk, the trailer's record count and plaintext SHA-256 — and
//! then, in ONE Postgres transaction, records the object, appends the zone's chain link
//! and marks the window archived. Only then is the staged payload deleted. Every step
//! is safe to replay: a window already archived only gets its staging cleaned up.
//!
//! An archive object that fails verification (missing, corrupt, not this window's) is
//! never committed. The window goes back to `staged` — its staged payload is still
//! there, upload deletes it only after committing — and encrypt seals it again, once;
//! a second failure leaves the window `sealed` with the reason and the task in the dead
//! letters for an operator, rather than looping.

use std::sync::Arc;

use rainlogs_archive::chain::LinkInput;
use rainlogs_archive::ledger::{self, WindowState};
use rainlogs_archive::pipeline::{open_object, WindowFacts, WindowTask};
use rainlogs_core::db::DbError;
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::task::kinds;
use rainlogs_core::{ErrorClass, HandlerOutput, TaskEnvelope, TaskError};
use rainlogs_sealed::kms::Kms;

use sqlx::PgPool;

pub(crate) async fn run(
    pool: &PgPool,
    store: &ObjectStore,
    kms: Arc<dyn Kms>,
    task: &TaskEnvelope,
) -> Result<HandlerOutput, TaskError> {
    let WindowTask { window_id } = task.payload_as()?;
    let window = WindowFacts::load(pool, window_id).await?;
    match window.state {
        WindowState::Sealed => {}
        WindowState::Archived => {
            cleanup(store, &window).await?;
            return Ok(done(&window, "already archived"));
        }
        // Not sealed yet (a message ahead of its window) or settled otherwise (empty,
        // failed, pruned): the ledger and the reconciler drive the window, this message
        // has nothing to add.
        other => {
            return Ok(HandlerOutput::done(serde_json::json!({
                "window_id": window.id,
                "state": other,
                "note": "nothing to upload",
            })))
        }
    }

    let key = window.archive_key();
    let verified =
        match open_object(store, kms.clone(), &key, window.context(), std::io::sink()).await {
            Ok((verified, _)) => verified,
            Err(e) if e.class == ErrorClass::Permanent => return reseal(pool, &window, e).await,
            Err(e) => return Err(e),
        };

    // The link is MACed under the tenant's chain key (docs/CHAIN.md version 2), taken
    // before the transaction so no row lock waits on the kms.
    let chain_key = kms.chain_key(window.tenant_id, None).await?;
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::query("begin upload transaction", e))?;
    // The object read back must be the one encrypt recorded when it sealed the window
    // (under the row lock, taken here again): another object at the key means an
    // encrypt run that lost its lock overwrote it, so it is sealed again instead.
    let recorded = sqlx::query_scalar!(
        "SELECT sealed_sha256 FROM windows WHERE id = $1 FOR UPDATE",
        window.id
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| DbError::query("lock window for upload", e))?;
    if let Some(recorded) = recorded {
        if recorded[..] != verified.object_sha256[..] {
            drop(tx);
            let failure = TaskError::permanent(
                "upload.object_replaced",
                format!(
                    "archive object {key} has SHA-256 {}, but encrypt sealed {}",
                    hex::encode(verified.object_sha256),
                    hex::encode(&recorded)
                ),
            );
            return reseal(pool, &window, failure).await;
        }
    }
    // The catalog records the full bucket key, the store's prefix included, so a
    // reader finds the object whatever prefix it is configured with (migration 0019).
    let catalog_key = store.full_key(&key);
    verified.catalogue(&mut tx, window.id, &catalog_key).await?;
    let link = ledger::settle(
        &mut tx,
        window.id,
        WindowState::Sealed,
        WindowState::Archived,
        &LinkInput {
            zone_id: window.zone_id,
            window_start: window.start_at,
            window_end: window.end_at,
            content: verified.link_content(),
        },
        &chain_key,
    )
    .await?;
    let Some(link) = link else {
        // A concurrent upload committed first; its transaction holds the link.
        drop(tx);
        cleanup(store, &window).await?;
        return Ok(done(&window, "archived concurrently"));
    };
    // Commit and cleanup run to their end even when this task is aborted (its lease
    // lost, e.g. Redis emptied): aborted between the two, an archived window's staged
    // payload would stay behind with no task left to delete it.
    let (store_c, window_c) = (store.clone(), window.clone());
    tokio::spawn(async move {
        tx.commit()
            .await
            .map_err(|e| DbError::query("commit upload transaction", e))?;
        cleanup(&store_c, &window_c).await
    })
    .await
    .map_err(|e| TaskError::retryable("upload.commit_task", e.to_string()))??;
    tracing::info!(
        window = window.id,
        seq = link.seq,
        records = verified.plaintext.record_count,
        "window archived"
    );
    Ok(HandlerOutput::done(serde_json::json!({
        "window_id": window.id,
        "state": "archived",
        "object_key": catalog_key,
        "object_sha256": hex::encode(verified.object_sha256),
        "record_count": verified.plaintext.record_count,
        "seq": link.seq,
    })))
}

/// Sends a window whose archive object failed verification back to encrypt, once.
async fn reseal(
    pool: &PgPool,
    window: &WindowFacts,
    failure: TaskError,
) -> Result<HandlerOutput, TaskError> {
    let reason = format!(
        "{}: {} ({})",
        ledger::RESEAL_NOTE,
        failure.message,
        failure.code
    );
    if !ledger::reseal(pool, window.id, &reason).await? {
        return Err(failure);
    }
    tracing::warn!(window = window.id, %reason, "archive object rejected; sealing again");
    Ok(HandlerOutput {
        result: serde_json::json!({ "window_id": window.id, "state": "staged", "note": reason }),
        next: vec![WindowTask {
            window_id: window.id,
        }
        .spec(kinds::ENCRYPT_WINDOW)],
    })
}

/// Deletes the staged payload (S3 DeleteObject is idempotent).
async fn cleanup(store: &ObjectStore, window: &WindowFacts) -> Result<(), TaskError> {
    store.delete(&window.staging_key()).await?;
    Ok(())
}

fn done(window: &WindowFacts, note: &str) -> HandlerOutput {
    HandlerOutput::done(serde_json::json!({
        "window_id": window.id,
        "state": "archived",
        "note": note,
    }))
}
