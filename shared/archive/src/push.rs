//! Push ingestion's ledger: Logpush destinations (one per zone and dataset, each with a
//! secret stored only as its SHA-256) and the batches they deliver (`push_batches`,
//! unique per destination by the SHA-256 of the batch's NDJSON).
//!
//! The receiver (`functions/receiver`) authenticates with [`Destination::accepts`] and
//! records an accepted batch with [`record_batch`], which also enters it in the window
//! ledger as a `staged` window of its zone; docs/INGEST.md is the contract.
//! Queries are runtime-checked (`sqlx::query`), covered by the `push` integration tests.

use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use rainlogs_core::db::DbError;

/// Dataset names Cloudflare uses (http_requests, firewall_events, dns_logs, …).
pub fn valid_dataset(dataset: &str) -> bool {
    let mut chars = dataset.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && dataset.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The digest stored for a destination secret: SHA-256 of its text as sent.
pub fn secret_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A Logpush destination as the receiver needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    pub id: Uuid,
    pub zone_id: Uuid,
    pub tenant_id: Uuid,
    pub dataset: String,
    secret_sha256: [u8; 32],
    pub disabled: bool,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("id", &self.id)
            .field("zone_id", &self.zone_id)
            .field("dataset", &self.dataset)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

impl Destination {
    /// Whether `presented` is this destination's secret (and the destination is on).
    /// The digests are compared in constant time.
    pub fn accepts(&self, presented: &str) -> bool {
        let ok: bool = secret_digest(presented).ct_eq(&self.secret_sha256).into();
        ok && !self.disabled
    }
}

/// A new destination and its secret, which is shown once and never stored.
pub struct CreatedDestination {
    pub destination: Destination,
    pub secret: SecretString,
}

/// Creates the destination of (`zone_id`, `dataset`) with a fresh 32-byte secret.
pub async fn create_destination(
    pool: &PgPool,
    zone_id: Uuid,
    dataset: &str,
) -> Result<CreatedDestination, DbError> {
    if !valid_dataset(dataset) {
        return Err(DbError::Query {
            op: "create push destination",
            reason: format!("{dataset:?} is not a dataset name"),
            retryable: false,
        });
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = hex::encode(raw);
    let digest = secret_digest(&secret);
    let id = Uuid::new_v4();
    let tenant_id: Uuid = sqlx::query_scalar(
        "INSERT INTO push_destinations (id, zone_id, dataset, secret_sha256)
         VALUES ($1, $2, $3, $4)
         RETURNING (SELECT tenant_id FROM zones WHERE id = $2)",
    )
    .bind(id)
    .bind(zone_id)
    .bind(dataset)
    .bind(&digest[..])
    .fetch_one(pool)
    .await
    .map_err(|e| DbError::query("create push destination", e))?;
    Ok(CreatedDestination {
        destination: Destination {
            id,
            zone_id,
            tenant_id,
            dataset: dataset.to_owned(),
            secret_sha256: digest,
            disabled: false,
        },
        secret: SecretString::from(secret),
    })
}

/// The destination `id`, if it exists.
pub async fn load_destination(pool: &PgPool, id: Uuid) -> Result<Option<Destination>, DbError> {
    let row: Option<(Uuid, Uuid, String, Vec<u8>, bool)> = sqlx::query_as(
        "SELECT d.zone_id, z.tenant_id, d.dataset, d.secret_sha256, d.disabled_at IS NOT NULL
         FROM push_destinations d JOIN zones z ON z.id = d.zone_id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("read push destination", e))?;
    row.map(|(zone_id, tenant_id, dataset, digest, disabled)| {
        Ok(Destination {
            id,
            zone_id,
            tenant_id,
            dataset,
            secret_sha256: digest.try_into().map_err(|_| DbError::Query {
                op: "read push destination",
                reason: "stored secret digest is not 32 bytes".into(),
                retryable: false,
            })?,
            disabled,
        })
    })
    .transpose()
}

/// Disables a destination: its pushes are refused (401) from now on.
pub async fn disable_destination(pool: &PgPool, id: Uuid) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE push_destinations SET disabled_at = now() WHERE id = $1 AND disabled_at IS NULL",
    )
    .bind(id)
    .execute(pool)
    .await
    .map_err(|e| DbError::query("disable push destination", e))?;
    Ok(done.rows_affected() == 1)
}

/// Records that Cloudflare's validation upload reached the destination.
pub async fn mark_validated(pool: &PgPool, id: Uuid) -> Result<(), DbError> {
    sqlx::query("UPDATE push_destinations SET validated_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(|e| DbError::query("record validation upload", e))?;
    Ok(())
}

/// An accepted batch, sealed in staging, about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    pub id: Uuid,
    pub destination_id: Uuid,
    pub zone_id: Uuid,
    /// SHA-256 of the decompressed NDJSON (the sealed trailer's plaintext hash).
    pub content_sha256: [u8; 32],
    pub record_count: u64,
    pub malformed_lines: u64,
    pub ndjson_bytes: u64,
    pub gzip_bytes: u64,
    pub edge_span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Microsecond precision: it is the staged object's encryption context.
    pub received_at: DateTime<Utc>,
    pub staging_key: String,
    /// Records per minute of edge time (minute start, records): push coverage.
    pub minute_counts: Vec<(DateTime<Utc>, u64)>,
}

impl NewBatch {
    /// The span of the window the batch becomes: its edge span `[first, last + 1 µs)`
    /// at microsecond precision (as Postgres and the sealed header keep time), or the
    /// receive instant when no line carried a timestamp. Every record's edge time lies
    /// inside it, so restore selects the batch by time exactly as a pulled window.
    pub fn window_span(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let micros = |t: DateTime<Utc>| DateTime::from_timestamp_micros(t.timestamp_micros());
        let (first, last) = self
            .edge_span
            .unwrap_or((self.received_at, self.received_at));
        let start = micros(first).unwrap_or(first);
        let last = micros(last).unwrap_or(last);
        (start, last + chrono::TimeDelta::microseconds(1))
    }
}

/// What [`record_batch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The batch is new: its row and its window (`staged`) are committed.
    New { window_id: i64 },
    /// The destination already has a batch with this content: that one's id.
    Duplicate(Uuid),
}

/// The batch of `destination` with this content hash, if one was accepted.
pub async fn find_batch(
    pool: &PgPool,
    destination: Uuid,
    content_sha256: &[u8; 32],
) -> Result<Option<Uuid>, DbError> {
    sqlx::query_scalar(
        "SELECT id FROM push_batches WHERE destination_id = $1 AND content_sha256 = $2",
    )
    .bind(destination)
    .bind(&content_sha256[..])
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("look up push batch", e))
}

/// Records an accepted batch in one transaction — the row, its window (state `staged`,
/// spanning [`NewBatch::window_span`]: from here the batch moves on through encrypt and
/// upload like a pulled window), and the destination's `last_batch_at` — or finds the
/// batch of the same content that won a race.
pub async fn record_batch(pool: &PgPool, batch: &NewBatch) -> Result<Recorded, DbError> {
    record_batch_from(pool, batch, None).await
}

/// [`record_batch`] for a batch read from the landing bucket: the same transaction also
/// records the object's key and when Cloudflare wrote it (`crate::landing`).
pub async fn record_batch_from(
    pool: &PgPool,
    batch: &NewBatch,
    landed: Option<&crate::landing::Landed>,
) -> Result<Recorded, DbError> {
    let q = |e| DbError::query("record push batch", e);
    let mut tx = pool.begin().await.map_err(q)?;
    let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO push_batches
           (id, destination_id, zone_id, content_sha256, record_count, malformed_lines,
            ndjson_bytes, gzip_bytes, first_edge_at, last_edge_at, received_at, staging_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (destination_id, content_sha256) DO NOTHING
         RETURNING id",
    )
    .bind(batch.id)
    .bind(batch.destination_id)
    .bind(batch.zone_id)
    .bind(&batch.content_sha256[..])
    .bind(count(batch.record_count))
    .bind(count(batch.malformed_lines))
    .bind(count(batch.ndjson_bytes))
    .bind(count(batch.gzip_bytes))
    .bind(batch.edge_span.map(|s| s.0))
    .bind(batch.edge_span.map(|s| s.1))
    .bind(batch.received_at)
    .bind(&batch.staging_key)
    .fetch_optional(&mut *tx)
    .await
    .map_err(q)?;
    sqlx::query("UPDATE push_destinations SET last_batch_at = now() WHERE id = $1")
        .bind(batch.destination_id)
        .execute(&mut *tx)
        .await
        .map_err(q)?;
    let outcome = match inserted {
        Some(_) => {
            let (start, end) = batch.window_span();
            let window_id = sqlx::query_scalar!(
                "INSERT INTO windows (zone_id, start_at, end_at, state, batch_id)
                 VALUES ($1, $2, $3, 'staged', $4) RETURNING id",
                batch.zone_id,
                start,
                end,
                batch.id,
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(q)?;
            let (minutes, records): (Vec<DateTime<Utc>>, Vec<i64>) = batch
                .minute_counts
                .iter()
                .map(|&(m, n)| (m, count(n)))
                .unzip();
            sqlx::query!(
                "INSERT INTO push_minutes (zone_id, dataset, minute, records, batches)
                 SELECT $1, d.dataset, m.minute, m.records, 1
                 FROM unnest($3::timestamptz[], $4::bigint[]) AS m(minute, records)
                 JOIN push_destinations d ON d.id = $2
                 ON CONFLICT (zone_id, dataset, minute) DO UPDATE
                 SET records = push_minutes.records + EXCLUDED.records,
                     batches = push_minutes.batches + 1",
                batch.zone_id,
                batch.destination_id,
                &minutes,
                &records,
            )
            .execute(&mut *tx)
            .await
            .map_err(q)?;
            if let Some(landed) = landed {
                sqlx::query!(
                    "UPDATE push_batches SET landing_key = $2, landed_at = $3 WHERE id = $1",
                    batch.id,
                    landed.key,
                    landed.at,
                )
                .execute(&mut *tx)
                .await
                .map_err(q)?;
            }
            Recorded::New { window_id }
        }
        None => {
            let other = sqlx::query_scalar(
                "SELECT id FROM push_batches WHERE destination_id = $1 AND content_sha256 = $2",
            )
            .bind(batch.destination_id)
            .bind(&batch.content_sha256[..])
            .fetch_one(&mut *tx)
            .await
            .map_err(q)?;
            Recorded::Duplicate(other)
        }
    };
    tx.commit().await.map_err(q)?;
    Ok(outcome)
}

/// Notes a re-delivered batch on its destination (delivery health).
pub async fn note_delivery(pool: &PgPool, destination: Uuid) -> Result<(), DbError> {
    sqlx::query("UPDATE push_destinations SET last_batch_at = now() WHERE id = $1")
        .bind(destination)
        .execute(pool)
        .await
        .map_err(|e| DbError::query("note push delivery", e))?;
    Ok(())
}

/// The longest a Logpush job waits before sending what it has
/// (`max_upload_interval_seconds` is 30–300).
pub const MAX_UPLOAD_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(300);
/// How long a destination may stay silent before it is an alert: two full upload
/// intervals and a minute for delivery.
pub const SILENCE_ALLOWED: chrono::TimeDelta = chrono::TimeDelta::seconds(660);
/// A stretch of edge time without a single pushed record worth listing.
pub const QUIET_LISTED: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// What push delivered for one dataset of a zone over a range.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatasetCoverage {
    pub dataset: String,
    /// Records whose edge start time is in the range.
    pub records: u64,
    /// Minutes of the range with at least one record.
    pub minutes_with_records: u64,
    /// Stretches of at least [`QUIET_LISTED`] without a record, in time order: no
    /// traffic, or logs Cloudflare did not deliver — push alone cannot tell which
    /// (a hybrid zone's Logpull repair can).
    pub quiet: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A destination's delivery health.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DestinationHealth {
    pub id: Uuid,
    pub dataset: String,
    pub disabled: bool,
    pub validated_at: Option<DateTime<Utc>>,
    pub last_batch_at: Option<DateTime<Utc>>,
    /// Set when the destination is silent past [`SILENCE_ALLOWED`] although its zone
    /// had traffic in the hour before the silence began.
    pub alert: Option<String>,
}

/// Push coverage of a zone over `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PushCoverage {
    pub zone_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub datasets: Vec<DatasetCoverage>,
    pub destinations: Vec<DestinationHealth>,
    /// Periods the zone's Logpush jobs were reported failing, as polled from
    /// Cloudflare's jobs API (`logpush::failed_periods`), overlapping the range.
    pub failed: Vec<crate::logpush::FailedPeriod>,
}

/// Push coverage of `zone_id` over `[from, to)` (minutes are whole: `from` is rounded
/// down, `to` up), and each destination's health at `now`.
pub async fn coverage(
    pool: &PgPool,
    zone_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<PushCoverage, DbError> {
    let q = |e| DbError::query("read push coverage", e);
    let minute = |t: DateTime<Utc>| {
        DateTime::from_timestamp(t.timestamp().div_euclid(60) * 60, 0).unwrap_or(t)
    };
    let from = minute(from);
    let to = {
        let m = minute(to);
        if m < to {
            m + chrono::TimeDelta::minutes(1)
        } else {
            m
        }
    };
    let destinations = sqlx::query!(
        r#"SELECT id, dataset, disabled_at IS NOT NULL AS "disabled!", validated_at, last_batch_at
           FROM push_destinations WHERE zone_id = $1 ORDER BY dataset, id"#,
        zone_id
    )
    .fetch_all(pool)
    .await
    .map_err(q)?;
    let mut datasets: Vec<String> = destinations.iter().map(|d| d.dataset.clone()).collect();
    datasets.dedup();
    let mut out = Vec::new();
    for dataset in &datasets {
        // Minutes in order; memory is one row per minute with records in the range.
        let rows = sqlx::query!(
            "SELECT minute, records FROM push_minutes
             WHERE zone_id = $1 AND dataset = $2 AND minute >= $3 AND minute < $4
             ORDER BY minute",
            zone_id,
            dataset,
            from,
            to
        )
        .fetch_all(pool)
        .await
        .map_err(q)?;
        let mut quiet = Vec::new();
        let mut cursor = from;
        for m in rows.iter().map(|r| r.minute).chain([to]) {
            if m - cursor >= QUIET_LISTED {
                quiet.push((cursor, m));
            }
            cursor = m + chrono::TimeDelta::minutes(1);
        }
        out.push(DatasetCoverage {
            dataset: dataset.clone(),
            records: rows.iter().map(|r| r.records.max(0) as u64).sum(),
            minutes_with_records: rows.len() as u64,
            quiet,
        });
    }
    let mut health = Vec::new();
    for d in destinations {
        let (id, dataset, disabled, validated_at, last_batch_at) =
            (d.id, d.dataset, d.disabled, d.validated_at, d.last_batch_at);
        let alert = if disabled {
            None
        } else {
            silence_alert(pool, zone_id, &dataset, last_batch_at.or(validated_at), now).await?
        };
        health.push(DestinationHealth {
            id,
            dataset,
            disabled,
            validated_at,
            last_batch_at,
            alert,
        });
    }
    let failed = crate::logpush::delivery_gaps(pool, zone_id, from, to)
        .await
        .map_err(history_error)?;
    Ok(PushCoverage {
        zone_id,
        from,
        to,
        datasets: out,
        destinations: health,
        failed,
    })
}

/// The alert of a destination last heard from at `since` (its last batch, else its
/// validation), if it is silent past [`SILENCE_ALLOWED`] at `now` although its zone had
/// traffic in the hour before the silence began (a zone without traffic sends nothing,
/// which is no fault).
async fn silence_alert(
    pool: &PgPool,
    zone_id: Uuid,
    dataset: &str,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<String>, DbError> {
    let Some(since) = since.filter(|s| now - *s > SILENCE_ALLOWED) else {
        return Ok(None);
    };
    let traffic = sqlx::query_scalar!(
        r#"SELECT coalesce(sum(records), 0)::bigint AS "traffic!" FROM push_minutes
           WHERE zone_id = $1 AND dataset = $2 AND minute >= $3 AND minute < $4"#,
        zone_id,
        dataset,
        since - chrono::TimeDelta::hours(1),
        since + chrono::TimeDelta::minutes(1)
    )
    .fetch_one(pool)
    .await
    .map_err(|e| DbError::query("read push coverage", e))?;
    Ok((traffic > 0).then(|| {
        format!(
            "no {dataset} batch for {} min although the zone had {traffic} records in the hour before: Logpush may be failing (check the job's status at Cloudflare)",
            (now - since).num_minutes()
        )
    }))
}

/// A job-history read's error as the database error it is at heart.
fn history_error(e: crate::logpush::LogpushError) -> DbError {
    match e {
        crate::logpush::LogpushError::Db(e) => e,
        other => DbError::Query {
            op: "read logpush job history",
            reason: other.to_string(),
            retryable: false,
        },
    }
}

/// How far back [`delivery_status`] counts a destination's failed periods.
pub const FAILED_PERIODS_LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// The delivery state of one enabled push destination, as the metrics endpoint and the
/// alerts report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryStatus {
    pub destination: Uuid,
    pub zone_id: Uuid,
    pub zone_name: String,
    pub dataset: String,
    /// `http` (the receiver) or `s3` (the landing bucket).
    pub kind: String,
    /// Its last batch, else its validation; `None`: never heard from.
    pub last_heard: Option<DateTime<Utc>>,
    /// [`silence_alert`]'s message when it is silent past what its zone's traffic allows.
    pub silent: Option<String>,
    /// Since when the zone's Logpush job for this dataset has been failing, when a
    /// failed period is open at the last poll.
    pub failing_since: Option<DateTime<Utc>>,
    /// Failed periods of the zone's jobs for this dataset overlapping the last
    /// [`FAILED_PERIODS_LOOKBACK`] (open or closed).
    pub failed_periods: usize,
}

/// Every enabled push destination of a non-demo zone, with its delivery state at `now`.
/// One row read per destination plus one history read per zone with destinations.
pub async fn delivery_status(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<Vec<DeliveryStatus>, DbError> {
    let rows = sqlx::query!(
        r#"SELECT d.id, d.zone_id, z.name AS zone_name, d.dataset, d.kind,
                  d.validated_at, d.last_batch_at
           FROM push_destinations d JOIN zones z ON z.id = d.zone_id
           WHERE d.disabled_at IS NULL AND NOT z.demo
           ORDER BY z.name, d.dataset, d.id"#,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list push destinations", e))?;
    let mut gaps: std::collections::HashMap<Uuid, Vec<crate::logpush::FailedPeriod>> =
        std::collections::HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if let std::collections::hash_map::Entry::Vacant(e) = gaps.entry(r.zone_id) {
            let found =
                crate::logpush::delivery_gaps(pool, r.zone_id, now - FAILED_PERIODS_LOOKBACK, now)
                    .await
                    .map_err(history_error)?;
            e.insert(found);
        }
        let periods: Vec<_> = gaps[&r.zone_id]
            .iter()
            .filter(|p| p.dataset == r.dataset)
            .collect();
        let last_heard = r.last_batch_at.or(r.validated_at);
        out.push(DeliveryStatus {
            destination: r.id,
            zone_id: r.zone_id,
            silent: silence_alert(pool, r.zone_id, &r.dataset, last_heard, now).await?,
            zone_name: r.zone_name,
            dataset: r.dataset,
            kind: r.kind,
            last_heard,
            failing_since: periods
                .iter()
                .filter(|p| p.to.is_none())
                .map(|p| p.from)
                .min(),
            failed_periods: periods.len(),
        });
    }
    Ok(out)
}

/// `staging/push/{zone}/{batch}.sealed`: where the receiver stages a batch, sealed.
pub fn staging_key(zone: Uuid, batch: Uuid) -> String {
    format!("staging/push/{zone}/{batch}.sealed")
}

/// The destination of (`zone_id`, `dataset`), if one was ever created (enabled or not).
pub async fn find_destination(
    pool: &PgPool,
    zone_id: Uuid,
    dataset: &str,
) -> Result<Option<Uuid>, DbError> {
    sqlx::query_scalar("SELECT id FROM push_destinations WHERE zone_id = $1 AND dataset = $2")
        .bind(zone_id)
        .bind(dataset)
        .fetch_optional(pool)
        .await
        .map_err(|e| DbError::query("find push destination", e))
}

/// Gives destination `id` a fresh secret and enables it again (a new Logpush job for the
/// same zone and dataset: one destination per pair); the old secret stops working, its
/// batches stay its own, and `validated_at` waits for the new job's validation upload.
pub async fn renew_destination(pool: &PgPool, id: Uuid) -> Result<CreatedDestination, DbError> {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let secret = hex::encode(raw);
    let digest = secret_digest(&secret);
    let (zone_id, tenant_id, dataset): (Uuid, Uuid, String) = sqlx::query_as(
        "UPDATE push_destinations d SET secret_sha256 = $2, disabled_at = NULL, validated_at = NULL
         FROM zones z WHERE d.id = $1 AND z.id = d.zone_id
         RETURNING d.zone_id, z.tenant_id, d.dataset",
    )
    .bind(id)
    .bind(&digest[..])
    .fetch_one(pool)
    .await
    .map_err(|e| DbError::query("renew push destination", e))?;
    Ok(CreatedDestination {
        destination: Destination {
            id,
            zone_id,
            tenant_id,
            dataset,
            secret_sha256: digest,
            disabled: false,
        },
        secret: SecretString::from(secret),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(secret: &str, disabled: bool) -> Destination {
        Destination {
            id: Uuid::from_u128(1),
            zone_id: Uuid::from_u128(2),
            tenant_id: Uuid::from_u128(3),
            dataset: "http_requests".into(),
            secret_sha256: secret_digest(secret),
            disabled,
        }
    }

    #[test]
    fn only_the_secret_opens_an_enabled_destination() {
        let d = destination("s3cret", false);
        assert!(d.accepts("s3cret"));
        assert!(!d.accepts("s3cret "));
        assert!(!d.accepts(""));
        assert!(!destination("s3cret", true).accepts("s3cret"));
        assert!(!format!("{d:?}").contains(&hex::encode(secret_digest("s3cret"))));
    }

    #[test]
    fn dataset_names() {
        for ok in ["http_requests", "firewall_events", "dns_logs", "a1"] {
            assert!(valid_dataset(ok), "{ok}");
        }
        for bad in ["", "HTTP", "1x", "a-b", "a/b", &"a".repeat(65)] {
            assert!(!valid_dataset(bad), "{bad}");
        }
    }

    #[test]
    fn staging_keys_are_apart_from_windows() {
        let key = staging_key(Uuid::from_u128(2), Uuid::from_u128(5));
        assert!(key.starts_with("staging/push/"));
        assert_eq!(crate::pipeline::parse_staging_key(&key), None);
    }
}
