//! Data-subject requests (GDPR) as recorded operations (docs/GDPR.md): an access search
//! (Art. 15) finds every record of a data subject by field values across a tenant's
//! zones and time, streamed with progress; an erasure (Art. 17) crypto-shreds a tenant
//! and deletes its objects with receipts, in two steps (request → confirm with a
//! one-time token) and never under a legal hold. Each request is a `gdpr_requests` row
//! (who, when, what, outcome) and audit rows; the front ends (HTTP API) only parse and
//! render.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rainlogs_core::db::DbError;
use rainlogs_core::error::{Classify, ErrorClass};
use rainlogs_core::storage::ObjectStore;
use rainlogs_sealed::kms::Kms;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::restore::{self, Filter, Observer, RestoreError, Source, Stats};

/// How long an erasure's confirmation token may be used.
pub const CONFIRM_TTL: TimeDelta = TimeDelta::minutes(30);
/// Most field values one search matches (each record is compared with every one).
pub const MAX_MATCHES: usize = 32;
/// Objects deleted per erasure page (one DeleteObjects call, one transaction).
const ERASE_PAGE: i64 = 1000;
/// Largest window output a search holds until its object verifies (matches only: a
/// search's output is small).
const SEARCH_WINDOW_BYTES: usize = 64 << 20;
/// How often a search reports progress (and at the end of each zone).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why a data-subject request was refused or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GdprError {
    #[error("{0}")]
    Input(String),
    #[error("no data-subject request {0} of this tenant")]
    UnknownRequest(Uuid),
    #[error(
        "tenant {tenant} is under a legal hold{}: nothing of it may be erased until the hold is lifted",
        if zones.is_empty() { String::new() } else { format!(" (zones {})", zones.join(", ")) }
    )]
    LegalHold { tenant: String, zones: Vec<String> },
    #[error("the confirmation token does not match erasure request {0}")]
    BadToken(Uuid),
    #[error("erasure request {id} expired at {at}: request a new one")]
    Expired { id: Uuid, at: DateTime<Utc> },
    #[error("erasure request {id} is {state}, not awaiting confirmation")]
    NotPending { id: Uuid, state: String },
    #[error("tenant {tenant} was erased by request {request} ({at}): its keys are destroyed and its objects deleted")]
    Erased {
        tenant: String,
        request: Uuid,
        at: DateTime<Utc>,
    },
    #[error("the kms could not shred tenant {tenant}: {reason}")]
    Shred {
        tenant: Uuid,
        reason: String,
        retryable: bool,
    },
    #[error("{0}")]
    Restore(#[from] RestoreError),
    #[error("erasure {request}: {failed} objects could not be deleted ({first}); confirm again to retry — the keys are already destroyed")]
    Incomplete {
        request: Uuid,
        failed: u64,
        first: String,
    },
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Classify for GdprError {
    fn class(&self) -> ErrorClass {
        match self {
            GdprError::Db(e) => e.class(),
            GdprError::Shred {
                retryable: true, ..
            }
            | GdprError::Storage(_)
            | GdprError::Incomplete { .. } => ErrorClass::Retryable,
            GdprError::Restore(RestoreError::Operational(_)) => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            GdprError::Input(_) => "gdpr.invalid",
            GdprError::UnknownRequest(_) => "gdpr.unknown",
            GdprError::LegalHold { .. } => "gdpr.legal_hold",
            GdprError::BadToken(_) => "gdpr.bad_token",
            GdprError::Expired { .. } => "gdpr.expired",
            GdprError::NotPending { .. } => "gdpr.not_pending",
            GdprError::Erased { .. } => "gdpr.erased",
            GdprError::Shred { .. } => "kms.shred_failed",
            GdprError::Restore(RestoreError::Verification { .. }) => "gdpr.verification",
            GdprError::Restore(RestoreError::Input(_)) => "gdpr.invalid",
            GdprError::Restore(RestoreError::Operational(_)) => "storage.search_failed",
            GdprError::Restore(RestoreError::Erased { .. }) => "gdpr.erased",
            GdprError::Incomplete { .. } => "storage.erasure_incomplete",
            GdprError::Storage(_) => "storage.erasure_failed",
            GdprError::Db(e) => e.code(),
        }
    }
}

fn db(what: &'static str) -> impl Fn(sqlx::Error) -> GdprError {
    move |e| GdprError::Db(DbError::query(what, e))
}

/// The erasure that destroyed `tenant`'s archive, if one did (state erasing or done):
/// `(request, confirmed_at)`.
pub async fn erasure_of_tenant(
    pool: &PgPool,
    tenant: Uuid,
) -> Result<Option<(Uuid, DateTime<Utc>)>, DbError> {
    let row = sqlx::query!(
        r#"SELECT id, confirmed_at AS "confirmed_at!" FROM gdpr_requests
           WHERE tenant_id = $1 AND kind = 'erasure' AND state IN ('erasing', 'done')
             AND confirmed_at IS NOT NULL
           ORDER BY confirmed_at LIMIT 1"#,
        tenant
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("look for a tenant's erasure", e))?;
    Ok(row.map(|r| (r.id, r.confirmed_at)))
}

/// The erasure of the tenant owning `zone`, if one destroyed it: `(tenant, request,
/// confirmed_at)`.
pub async fn erasure_of_zone(
    pool: &PgPool,
    zone: Uuid,
) -> Result<Option<(Uuid, Uuid, DateTime<Utc>)>, DbError> {
    let row = sqlx::query!(
        r#"SELECT g.tenant_id, g.id, g.confirmed_at AS "confirmed_at!" FROM gdpr_requests g
           JOIN zones z ON z.tenant_id = g.tenant_id
           WHERE z.id = $1 AND g.kind = 'erasure' AND g.state IN ('erasing', 'done')
             AND g.confirmed_at IS NOT NULL
           ORDER BY g.confirmed_at LIMIT 1"#,
        zone
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| DbError::query("look for a zone's erasure", e))?;
    Ok(row.map(|r| (r.tenant_id, r.id, r.confirmed_at)))
}

/// One data-subject request, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: String,
    pub state: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub criteria: serde_json::Value,
    pub confirm_expires_at: Option<DateTime<Utc>>,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub result: serde_json::Value,
}

/// A tenant's requests, newest first, after the keyset cursor `before`
/// (`(requested_at, id)` of the previous page's last row).
pub async fn list_requests(
    pool: &PgPool,
    tenant: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<RequestRow>, DbError> {
    let (at, id) = before.unzip();
    sqlx::query_as!(
        RequestRow,
        r#"SELECT id, tenant_id, kind, state, requested_by, requested_at, criteria,
                  confirm_expires_at, confirmed_by, confirmed_at, finished_at, result
           FROM gdpr_requests
           WHERE tenant_id = $1
             AND ($2::timestamptz IS NULL OR (requested_at, id) < ($2, $3::uuid))
           ORDER BY requested_at DESC, id DESC
           LIMIT $4"#,
        tenant,
        at,
        id,
        limit
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::query("list data-subject requests", e))
}

// ---------------------------------------------------------------------------------
// Access (Art. 15): search

/// What a data-subject search looks for.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Records matching any of these (`ClientIP=192.0.2.1`, `Cookies.session=…`,
    /// `RequestHeaders.x-user=…`).
    pub matches: Vec<Filter>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Only these zones (Rainlogs ids) of the tenant; empty: every zone.
    pub zones: Vec<Uuid>,
    /// The dataset (`http_requests` unless a Logpush job delivers another).
    pub dataset: String,
}

/// What a search did (also its request row's `result`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SearchProgress {
    pub zones_total: u64,
    pub zones_done: u64,
    pub windows_scanned: u64,
    pub bytes_scanned: u64,
    pub records_scanned: u64,
    pub records_found: u64,
    /// Stretches of the range without restorable logs (gaps, as restore reports them).
    pub gaps: u64,
}

impl SearchProgress {
    fn add(&mut self, s: &Stats) {
        self.windows_scanned += s.windows_restored;
        self.bytes_scanned += s.object_bytes;
        self.records_scanned += s.records_read;
        self.records_found += s.records_out;
        self.gaps += s.gaps;
    }
}

/// The search's output: NDJSON envelopes, one per line —
/// `{"type":"record","zone_id":…,"cf_zone_id":…,"record":{…}}`,
/// `{"type":"progress",…}`, `{"type":"warning","zone_id":…,"message":…}`, and last
/// `{"type":"done",…}` (or `{"type":"error","code":…,"detail":…}`).
type Shared = Arc<Mutex<Box<dyn Write + Send>>>;

fn emit(out: &Shared, value: &serde_json::Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.lock()
        .unwrap_or_else(|p| p.into_inner())
        .write_all(&line)
}

/// Wraps each record line restore writes in a `record` envelope.
struct RecordWriter {
    out: Shared,
    prefix: Vec<u8>,
    partial: Vec<u8>,
}

impl Write for RecordWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut wrapped = Vec::with_capacity(buf.len() + 128);
        let mut rest = buf;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let line = if self.partial.is_empty() {
                &rest[..i]
            } else {
                self.partial.extend_from_slice(&rest[..i]);
                self.partial.as_slice()
            };
            if !line.is_empty() {
                wrapped.extend_from_slice(&self.prefix);
                wrapped.extend_from_slice(line);
                wrapped.extend_from_slice(b"}\n");
            }
            self.partial.clear();
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        if !wrapped.is_empty() {
            self.out
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_all(&wrapped)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// Turns restore's progress and gap warnings into envelopes, at most once a second.
struct SearchObserver<'a> {
    out: Shared,
    zone_id: Uuid,
    done: &'a SearchProgress,
    last: Instant,
    progress: &'a mut (dyn FnMut(&SearchProgress) + Send),
}

impl Observer for SearchObserver<'_> {
    fn warn(&mut self, message: &str) {
        // A broken output is noticed by the next record write, which stops the search.
        let _ = emit(
            &self.out,
            &json!({"type": "warning", "zone_id": self.zone_id, "message": message}),
        );
    }

    fn progress(&mut self, stats: &Stats) {
        if self.last.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last = Instant::now();
        let mut now = self.done.clone();
        now.add(stats);
        (self.progress)(&now);
        let _ = emit(
            &self.out,
            &json!({"type": "progress", "zone_id": self.zone_id, "progress": now}),
        );
    }
}

/// Searches `tenant`'s archive for a data subject's records, writing envelopes (see
/// [`Shared`]) to `out`; `progress` sees the running counts. Recorded as an `access`
/// request (and audited) before the first object is read, finished with its counts or
/// its error. Every object is verified before a record of it is written (restore's
/// guarantee).
#[allow(clippy::too_many_arguments)]
pub async fn search(
    pool: &PgPool,
    store: &ObjectStore,
    kms: Arc<dyn Kms>,
    tenant: Uuid,
    req: &SearchRequest,
    actor: &str,
    out: Box<dyn Write + Send>,
    progress: &mut (dyn FnMut(&SearchProgress) + Send),
) -> Result<(Uuid, SearchProgress), GdprError> {
    if req.matches.is_empty() || req.matches.len() > MAX_MATCHES {
        return Err(GdprError::Input(format!(
            "a search needs 1 to {MAX_MATCHES} FIELD=VALUE matches, got {}",
            req.matches.len()
        )));
    }
    if req.from >= req.to {
        return Err(GdprError::Input(
            "empty range: from must be before to".into(),
        ));
    }
    if let Some((request, at)) = erasure_of_tenant(pool, tenant).await? {
        return Err(GdprError::Erased {
            tenant: tenant.to_string(),
            request,
            at,
        });
    }
    let all = crate::catalog::zone::list_of(pool, Some(tenant))
        .await
        .map_err(|e| GdprError::Input(e.to_string()))?;
    let zones: Vec<_> = if req.zones.is_empty() {
        all
    } else {
        for z in &req.zones {
            if !all.iter().any(|row| row.id == *z) {
                return Err(GdprError::Input(format!("no zone {z} in this tenant")));
            }
        }
        all.into_iter()
            .filter(|z| req.zones.contains(&z.id))
            .collect()
    };
    let criteria = json!({
        "matches": req.matches.iter().map(|f| format!("{}={}", f.field, f.value)).collect::<Vec<_>>(),
        "from": req.from, "to": req.to, "dataset": req.dataset,
        "zones": zones.iter().map(|z| z.id).collect::<Vec<_>>(),
    });
    let id = Uuid::new_v4();
    let mut tx = pool.begin().await.map_err(db("begin access request"))?;
    sqlx::query!(
        "INSERT INTO gdpr_requests (id, tenant_id, kind, state, requested_by, criteria)
         VALUES ($1, $2, 'access', 'running', $3, $4)",
        id,
        tenant,
        actor,
        criteria
    )
    .execute(&mut *tx)
    .await
    .map_err(db("record access request"))?;
    let event = AuditEvent {
        tenant: Some(tenant),
        detail: json!({"request": id, "criteria": criteria}),
        ..AuditEvent::new(actor, "gdpr.access", "started")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(db("audit access request"))?;
    tx.commit().await.map_err(db("commit access request"))?;

    let out: Shared = Arc::new(Mutex::new(out));
    let mut done = SearchProgress {
        zones_total: zones.len() as u64,
        ..SearchProgress::default()
    };
    let source = Source::Catalog {
        pool: pool.clone(),
        store: store.clone(),
        kms,
    };
    let mut outcome = Ok(());
    for zone in &zones {
        let restore_req = restore::Request {
            zone: zone.id.to_string(),
            tenant: Some(tenant.to_string()),
            from: req.from,
            to: req.to,
            filters: req.matches.clone(),
            match_any: true,
            max_window_bytes: SEARCH_WINDOW_BYTES,
            dataset: req.dataset.clone(),
        };
        let prefix = format!(
            "{{\"type\":\"record\",\"zone_id\":\"{}\",\"cf_zone_id\":{},\"record\":",
            zone.id,
            serde_json::Value::String(zone.cf_zone_id.clone())
        );
        let writer = RecordWriter {
            out: out.clone(),
            prefix: prefix.into_bytes(),
            partial: Vec::new(),
        };
        let snapshot = done.clone();
        let mut observer = SearchObserver {
            out: out.clone(),
            zone_id: zone.id,
            done: &snapshot,
            last: Instant::now(),
            progress,
        };
        match restore::restore(&source, &restore_req, Box::new(writer), &mut observer).await {
            Ok((_, stats)) => {
                done.add(&stats);
                done.zones_done += 1;
                progress(&done);
                if let Err(e) = emit(
                    &out,
                    &json!({"type": "progress", "zone_id": zone.id, "progress": done}),
                ) {
                    outcome = Err(GdprError::Restore(RestoreError::operational(format!(
                        "write output: {e}"
                    ))));
                    break;
                }
            }
            Err(e) => {
                outcome = Err(GdprError::Restore(e));
                break;
            }
        }
    }
    let (state, result) = match &outcome {
        Ok(()) => ("done", serde_json::to_value(&done).unwrap_or_default()),
        Err(e) => (
            "failed",
            json!({"progress": done, "error": {"code": e.code(), "detail": e.to_string()}}),
        ),
    };
    // The last line tells a reader the stream is whole (or why it is not).
    let last = match &outcome {
        Ok(()) => json!({"type": "done", "request_id": id, "progress": done}),
        Err(e) => {
            json!({"type": "error", "request_id": id, "code": e.code(), "detail": e.to_string()})
        }
    };
    let _ = emit(&out, &last);
    let _ = out.lock().unwrap_or_else(|p| p.into_inner()).flush();
    let mut tx = pool.begin().await.map_err(db("begin access result"))?;
    sqlx::query!(
        "UPDATE gdpr_requests SET state = $2, finished_at = now(), result = $3 WHERE id = $1",
        id,
        state,
        result
    )
    .execute(&mut *tx)
    .await
    .map_err(db("record access result"))?;
    let event = AuditEvent {
        tenant: Some(tenant),
        detail: json!({"request": id, "result": result}),
        ..AuditEvent::new(
            actor,
            "gdpr.access",
            if outcome.is_ok() { "ok" } else { "error" },
        )
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(db("audit access result"))?;
    tx.commit().await.map_err(db("commit access result"))?;
    outcome.map(|()| (id, done))
}

// ---------------------------------------------------------------------------------
// Erasure (Art. 17)

/// What an erasure request answers: the token is shown once, to the requester.
#[derive(Debug)]
pub struct ErasureTicket {
    pub id: Uuid,
    pub confirm_token: SecretString,
    pub expires_at: DateTime<Utc>,
    pub zones: u64,
    pub objects: u64,
    pub bytes: u64,
}

/// What a confirmed erasure did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErasureReport {
    pub request_id: Uuid,
    pub tenant_id: Uuid,
    pub keys_shredded: u64,
    pub objects_deleted: u64,
    pub bytes_deleted: u64,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The legal holds that forbid erasing `tenant` (its own, or its zones'), read under
/// the caller's transaction.
async fn holds(
    tx: &mut sqlx::PgConnection,
    tenant: Uuid,
) -> Result<Option<(String, Vec<String>)>, GdprError> {
    let t = sqlx::query!(
        "SELECT name, legal_hold FROM tenants WHERE id = $1 FOR UPDATE",
        tenant
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db("lock tenant"))?
    .ok_or_else(|| GdprError::Input(format!("no tenant {tenant}")))?;
    let zones: Vec<String> = sqlx::query_scalar!(
        "SELECT cf_zone_id FROM zones WHERE tenant_id = $1 AND legal_hold ORDER BY cf_zone_id",
        tenant
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db("read zone holds"))?;
    Ok((t.legal_hold || !zones.is_empty()).then_some((t.name, zones)))
}

/// Asks to erase `tenant`: refused (and recorded as refused) under a legal hold or
/// when the tenant is already erased; otherwise recorded as `requested` with a one-time
/// confirmation token valid for [`CONFIRM_TTL`].
pub async fn request_erasure(
    pool: &PgPool,
    tenant: Uuid,
    actor: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<ErasureTicket, GdprError> {
    if reason.trim().is_empty() || reason.len() > 2000 {
        return Err(GdprError::Input(
            "an erasure needs a reason of 1-2000 characters (the data subject's request, a ticket)"
                .into(),
        ));
    }
    let mut tx = pool.begin().await.map_err(db("begin erasure request"))?;
    let held = holds(&mut tx, tenant).await?;
    if let Some((request, at)) = erasure_of_tenant(pool, tenant).await? {
        return Err(GdprError::Erased {
            tenant: tenant.to_string(),
            request,
            at,
        });
    }
    let counts = sqlx::query!(
        r#"SELECT count(DISTINCT z.id) AS "zones!", count(a.window_id) AS "objects!",
                  COALESCE(sum(a.size_bytes), 0)::bigint AS "bytes!"
           FROM zones z
           LEFT JOIN windows w ON w.zone_id = z.id AND w.state = 'archived'
           LEFT JOIN archived_objects a ON a.window_id = w.id
           WHERE z.tenant_id = $1"#,
        tenant
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db("count the tenant's objects"))?;
    let id = Uuid::new_v4();
    let expires_at = now + CONFIRM_TTL;
    let criteria = json!({
        "scope": "tenant", "reason": reason,
        "zones": counts.zones, "objects": counts.objects, "bytes": counts.bytes,
    });
    let mut random = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(random.as_mut());
    let token = SecretString::from(format!("rle_{}", hex::encode(random.as_ref())));
    let (state, hash) = match &held {
        Some(_) => ("refused", None),
        None => (
            "requested",
            Some(token_hash(token.expose_secret()).to_vec()),
        ),
    };
    sqlx::query!(
        "INSERT INTO gdpr_requests
           (id, tenant_id, kind, state, requested_by, requested_at, criteria,
            confirm_token_sha256, confirm_expires_at, finished_at, result)
         VALUES ($1, $2, 'erasure', $3, $4, $5, $6, $7, $8, $9, $10)",
        id,
        tenant,
        state,
        actor,
        now,
        criteria,
        hash,
        held.is_none().then_some(expires_at),
        held.is_some().then_some(now),
        match &held {
            Some((_, zones)) => json!({"error": "legal hold", "held_zones": zones}),
            None => json!({}),
        },
    )
    .execute(&mut *tx)
    .await
    .map_err(db("record erasure request"))?;
    let event = AuditEvent {
        tenant: Some(tenant),
        detail: json!({"request": id, "criteria": criteria, "expires_at": expires_at}),
        ..AuditEvent::new(
            actor,
            "gdpr.erasure.request",
            if held.is_some() { "legal_hold" } else { "ok" },
        )
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(db("audit erasure request"))?;
    tx.commit().await.map_err(db("commit erasure request"))?;
    if let Some((name, zones)) = held {
        return Err(GdprError::LegalHold {
            tenant: name,
            zones,
        });
    }
    Ok(ErasureTicket {
        id,
        confirm_token: token,
        expires_at,
        zones: counts.zones as u64,
        objects: counts.objects as u64,
        bytes: counts.bytes as u64,
    })
}

/// Confirms erasure `id` of `tenant` with its token: checks it (constant time), its
/// expiry and the legal holds again, records the confirmation, then `shred`s the
/// tenant's keys (the kms: from then on nothing of it can be read, in any copy) and
/// deletes its objects a page at a time — windows `pruned`, a receipt per object
/// (`erasure:<id>`). A confirmation interrupted after the shred (S3 down) is resumed by
/// confirming again with the same token; a finished one answers its report again.
#[allow(clippy::too_many_arguments)]
pub async fn confirm_erasure<F, Fut>(
    pool: &PgPool,
    store: &ObjectStore,
    tenant: Uuid,
    id: Uuid,
    token: &str,
    actor: &str,
    now: DateTime<Utc>,
    shred: F,
) -> Result<ErasureReport, GdprError>
where
    F: FnOnce(Uuid) -> Fut,
    Fut: std::future::Future<Output = Result<u64, GdprError>>,
{
    let mut tx = pool
        .begin()
        .await
        .map_err(db("begin erasure confirmation"))?;
    let row = sqlx::query!(
        "SELECT state, confirm_token_sha256, confirm_expires_at, result FROM gdpr_requests
         WHERE id = $1 AND tenant_id = $2 AND kind = 'erasure' FOR UPDATE",
        id,
        tenant
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db("lock erasure request"))?
    .ok_or(GdprError::UnknownRequest(id))?;
    let matches = row
        .confirm_token_sha256
        .as_deref()
        .is_some_and(|h| bool::from(h.ct_eq(&token_hash(token))));
    if !matches {
        return Err(GdprError::BadToken(id));
    }
    match row.state.as_str() {
        "requested" => {
            if let Some(at) = row.confirm_expires_at.filter(|at| *at <= now) {
                sqlx::query!(
                    "UPDATE gdpr_requests SET state = 'expired', finished_at = $2 WHERE id = $1",
                    id,
                    now
                )
                .execute(&mut *tx)
                .await
                .map_err(db("expire erasure request"))?;
                tx.commit().await.map_err(db("commit expiry"))?;
                return Err(GdprError::Expired { id, at });
            }
            if let Some((name, zones)) = holds(&mut tx, tenant).await? {
                return Err(GdprError::LegalHold {
                    tenant: name,
                    zones,
                });
            }
            sqlx::query!(
                "UPDATE gdpr_requests SET state = 'erasing', confirmed_by = $2, confirmed_at = $3
                 WHERE id = $1",
                id,
                actor,
                now
            )
            .execute(&mut *tx)
            .await
            .map_err(db("confirm erasure request"))?;
            let event = AuditEvent {
                tenant: Some(tenant),
                detail: json!({"request": id}),
                ..AuditEvent::new(actor, "gdpr.erasure.confirm", "ok")
            };
            audit::record(&mut *tx, &event)
                .await
                .map_err(db("audit erasure confirmation"))?;
            tx.commit()
                .await
                .map_err(db("commit erasure confirmation"))?;
        }
        "erasing" => drop(tx),
        "done" => {
            return serde_json::from_value(row.result)
                .map_err(|e| GdprError::Input(format!("erasure {id}: stored report: {e}")));
        }
        other => {
            return Err(GdprError::NotPending {
                id,
                state: other.to_owned(),
            })
        }
    }

    let keys_shredded = shred(tenant).await?;
    let (objects_deleted, bytes_deleted) = erase_objects(pool, store, tenant, id).await?;
    let report = ErasureReport {
        request_id: id,
        tenant_id: tenant,
        keys_shredded,
        objects_deleted,
        bytes_deleted,
    };
    let result = serde_json::to_value(&report).unwrap_or_default();
    let mut tx = pool.begin().await.map_err(db("begin erasure result"))?;
    sqlx::query!(
        "UPDATE gdpr_requests SET state = 'done', finished_at = now(), result = $2 WHERE id = $1",
        id,
        result
    )
    .execute(&mut *tx)
    .await
    .map_err(db("record erasure result"))?;
    let event = AuditEvent {
        tenant: Some(tenant),
        detail: result,
        ..AuditEvent::new(actor, "gdpr.erasure.done", "ok")
    };
    audit::record(&mut *tx, &event)
        .await
        .map_err(db("audit erasure result"))?;
    tx.commit().await.map_err(db("commit erasure result"))?;
    Ok(report)
}

/// Deletes every archived object of `tenant` (all its windows, pulled and pushed), a
/// page at a time: one DeleteObjects call, then in one transaction the windows marked
/// `pruned` and a receipt each (`erasure:<request>`). Counts include earlier attempts'
/// deletions. Objects S3 refused stay archived and make the erasure incomplete.
async fn erase_objects(
    pool: &PgPool,
    store: &ObjectStore,
    tenant: Uuid,
    request: Uuid,
) -> Result<(u64, u64), GdprError> {
    let rule = format!("erasure:{request}");
    let mut cursor = 0i64;
    let (mut failed, mut first_failed) = (0u64, String::new());
    loop {
        let mut tx = pool.begin().await.map_err(db("begin erasure page"))?;
        let page = sqlx::query!(
            "SELECT w.id, a.object_key FROM windows w
             JOIN archived_objects a ON a.window_id = w.id
             JOIN zones z ON z.id = w.zone_id
             WHERE z.tenant_id = $1 AND w.state = 'archived' AND w.id > $2
             ORDER BY w.id LIMIT $3
             FOR UPDATE OF w",
            tenant,
            cursor,
            ERASE_PAGE
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db("read erasure page"))?;
        let Some(last) = page.last() else { break };
        cursor = last.id;
        let keys: Vec<String> = page.iter().map(|r| r.object_key.clone()).collect();
        // Catalog keys are full bucket keys: deleted from the bucket's root.
        let refused: HashSet<String> = store
            .root()
            .delete_many(&keys)
            .await
            .map_err(|e| GdprError::Storage(format!("delete objects of erasure {request}: {e}")))?
            .into_iter()
            .collect();
        if let Some(k) = refused.iter().next() {
            if first_failed.is_empty() {
                first_failed = k.clone();
            }
            failed += refused.len() as u64;
        }
        let ids: Vec<i64> = page
            .iter()
            .filter(|r| !refused.contains(&r.object_key))
            .map(|r| r.id)
            .collect();
        sqlx::query!(
            "UPDATE windows SET state = 'pruned', state_since = now(), last_error = NULL
             WHERE id = ANY($1) AND state = 'archived'",
            &ids
        )
        .execute(&mut *tx)
        .await
        .map_err(db("mark erased windows pruned"))?;
        sqlx::query!(
            "INSERT INTO deletion_receipts
               (run_id, rule, window_id, zone_id, tenant_id, object_key, object_sha256, size_bytes)
             SELECT $1, $2, w.id, w.zone_id, z.tenant_id, a.object_key, a.object_sha256, a.size_bytes
             FROM windows w
             JOIN archived_objects a ON a.window_id = w.id
             JOIN zones z ON z.id = w.zone_id
             WHERE w.id = ANY($3)
             ON CONFLICT (window_id) WHERE rule LIKE 'erasure:%' DO NOTHING",
            request,
            rule,
            &ids
        )
        .execute(&mut *tx)
        .await
        .map_err(db("write erasure receipts"))?;
        tx.commit().await.map_err(db("commit erasure page"))?;
    }
    if failed > 0 {
        return Err(GdprError::Incomplete {
            request,
            failed,
            first: first_failed,
        });
    }
    let done = sqlx::query!(
        r#"SELECT count(*) AS "objects!", COALESCE(sum(size_bytes), 0)::bigint AS "bytes!"
           FROM deletion_receipts WHERE rule = $1"#,
        rule
    )
    .fetch_one(pool)
    .await
    .map_err(db("count erasure receipts"))?;
    Ok((done.objects as u64, done.bytes as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn record_lines_are_wrapped_whole_across_writes() {
        let collected = Collect::default();
        let mut w = RecordWriter {
            out: Arc::new(Mutex::new(Box::new(collected.clone()))),
            prefix: b"{\"type\":\"record\",\"record\":".to_vec(),
            partial: Vec::new(),
        };
        w.write_all(b"{\"a\":1}\n{\"a\"").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&collected.0.lock().unwrap()),
            "{\"type\":\"record\",\"record\":{\"a\":1}}\n",
            "a partial line waits for its end"
        );
        w.write_all(b":2}\n\n").unwrap();
        let text = String::from_utf8(collected.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[1]["record"]["a"], 2);
    }
}
