//! `encrypt.window`: turns a window's staged payload into its archive object.
//!
//! Opens the staged object (sealed by fetch under a fresh data key; every chunk and the
//! trailer are authenticated), checks the records line by line, and streams them into a
//! new [`Sealer`] under a fresh data key from the tenant's active key, bound to the
//! window's context. The sealed bytes are spooled to a temporary file (memory stays
//! bounded), then written to the window's deterministic archive key while the window's
//! ledger row is locked and still `staged`, and the window moves to `sealed` in that
//! same transaction. So once a window is `sealed`, its archive object never changes
//! again, which is what lets upload verify it and commit without a race.

use std::io::{self, Write};
use std::sync::Arc;

use rainlogs_archive::ledger::WindowState;
use rainlogs_archive::pipeline::{
    blocking, open_object, put_file, spool_error, Spool, WindowFacts, WindowTask,
};
use rainlogs_core::db::DbError;
use rainlogs_core::storage::ObjectStore;
use rainlogs_core::task::kinds;
use rainlogs_core::{HandlerOutput, TaskEnvelope, TaskError};
use rainlogs_sealed::kms::Kms;
use rainlogs_sealed::{SealParams, Sealer};
use sqlx::PgPool;

pub(crate) async fn run(
    pool: &PgPool,
    store: &ObjectStore,
    kms: Arc<dyn Kms>,
    task: &TaskEnvelope,
) -> Result<HandlerOutput, TaskError> {
    let payload: WindowTask = task.payload_as()?;
    let window = WindowFacts::load(pool, payload.window_id).await?;
    if let Some(out) = settled(&window, window.state) {
        return Ok(out);
    }

    let context = window.context();
    let data_key = kms.generate_data_key(&context).await?;
    let (spool, file) = Spool::create().map_err(spool_error)?;
    let sealer = Sealer::new(
        io::BufWriter::new(file),
        SealParams::new(context, &data_key),
    )?;
    drop(data_key);
    let (staged, checker) = open_object(
        store,
        kms,
        &window.staging_key(),
        window.staging_context(),
        LineCheck::new(sealer),
    )
    .await?;
    let malformed = checker.malformed;
    let sealer = checker.inner;
    let summary = blocking("finish seal", move || {
        let (writer, summary) = sealer.finish()?;
        writer
            .into_inner()
            .map_err(|e| spool_error(e.into_error()))?
            .sync_all()
            .map_err(spool_error)?;
        Ok(summary)
    })
    .await?;
    if summary.plaintext_sha256 != staged.plaintext.plaintext_sha256
        || summary.record_count != staged.plaintext.record_count
    {
        return Err(TaskError::retryable(
            "encrypt.mismatch",
            format!(
                "window {}: resealed payload differs from the staged one",
                window.id
            ),
        ));
    }

    // Write the archive object only while the window is still staged, under its row
    // lock, and mark it sealed in the same transaction.
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::query("begin encrypt transaction", e))?;
    let state = sqlx::query_scalar!(
        r#"SELECT state AS "state: WindowState" FROM windows WHERE id = $1 FOR UPDATE"#,
        window.id
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| DbError::query("lock window", e))?;
    if let Some(out) = settled(&window, state) {
        return Ok(out);
    }
    let key = window.archive_key();
    put_file(store, &key, spool.path()).await?;
    sqlx::query!(
        "UPDATE windows SET state = 'sealed', state_since = now(), last_error = NULL,
                            sealed_sha256 = $2
         WHERE id = $1",
        window.id,
        &summary.object_sha256[..],
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| DbError::query("mark window sealed", e))?;
    tx.commit()
        .await
        .map_err(|e| DbError::query("commit encrypt transaction", e))?;
    tracing::info!(
        window = window.id,
        records = summary.record_count,
        bytes = summary.object_len,
        "window sealed"
    );
    Ok(HandlerOutput {
        result: serde_json::json!({
            "window_id": window.id,
            "state": "sealed",
            "object_key": key,
            "object_sha256": hex::encode(summary.object_sha256),
            "record_count": summary.record_count,
            "malformed_lines": malformed,
        }),
        next: vec![payload.spec(kinds::UPLOAD_WINDOW)],
    })
}

/// What to answer when the window is not waiting for encrypt: hand on to the stage it
/// waits for when it is past this one, nothing otherwise. `None` means "staged: do the
/// work".
fn settled(window: &WindowFacts, state: WindowState) -> Option<HandlerOutput> {
    let result =
        serde_json::json!({ "window_id": window.id, "state": state, "note": "nothing to encrypt" });
    WindowTask {
        window_id: window.id,
    }
    .answer(state.for_stage(kinds::ENCRYPT_WINDOW), result)
}

/// Passes NDJSON through while checking it line by line: counts the lines that do not
/// start a JSON object. Fetch quarantines such lines verbatim (docs/LOGPULL.md), so they
/// are reported, never dropped and never a reason to lose the window.
struct LineCheck<W> {
    inner: W,
    at_line_start: bool,
    malformed: u64,
}

impl<W: Write> LineCheck<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            at_line_start: true,
            malformed: 0,
        }
    }
}

impl<W: Write> Write for LineCheck<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        for &b in &data[..n] {
            if self.at_line_start && b != b'{' {
                self.malformed += 1;
            }
            self.at_line_start = b == b'\n';
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
