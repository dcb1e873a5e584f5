//! Log content and the archive itself: `GET /v1/zones/{zone}/logs` streams a verified
//! restore (`restore::restore`, the engine of `rainlogs logs get`) as NDJSON;
//! `GET /v1/zones/{zone}/windows/{window}/object` hands out a sealed object as stored;
//! `POST /v1/tenants/{tenant}/key-export` gives the tenant's keys as key files for
//! offline decryption (`rainlogs decrypt --key-file`, docs/FORMAT.md). Every read of
//! content, every download and every key export is audited.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use rainlogs_archive::restore::{self, Filter, ObjectError, Observer, RestoreError, Source};
use rainlogs_archive::verify;
use rainlogs_core::error::{Classify, ErrorClass};
use rainlogs_sealed::kms::KeyError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{tenant_of, zone_of, Body as JsonBody, Path};
use crate::auth::Principal;
use crate::problem::{Problem, ProblemBody};
use crate::stream::{self, NDJSON};
use crate::Api;

/// Largest window output held until its object verifies; larger windows are verified,
/// then streamed in a second pass.
const WINDOW_BYTES: usize = 64 << 20;

/// How long an answer waits for its first bytes before streaming anyway.
pub(crate) fn first_wait(api: &Api) -> Duration {
    (api.config().timeout / 2).min(Duration::from_secs(15))
}

/// The query of a restore (`filter` repeats).
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Start (RFC 3339, inclusive).
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339, exclusive).
    pub to: Option<DateTime<Utc>>,
    /// `FIELD=VALUE`; dotted names reach nested fields. Repeatable.
    pub filter: Vec<String>,
    /// `all` (default): every filter must match; `any`: one is enough.
    #[serde(rename = "match")]
    pub matching: Option<String>,
    /// The dataset (default `http_requests`).
    pub dataset: Option<String>,
}

impl LogsQuery {
    /// Parses the raw query: repeated `filter`s, unknown parameters refused.
    fn parse(raw: Option<&str>) -> Result<Self, Problem> {
        let bad = |detail: String| Problem::bad_request("request.invalid_query", detail);
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| bad(format!("the query does not parse: {e}")))?;
        let mut q = LogsQuery::default();
        let time = |name: &str, v: &str| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| bad(format!("{name}={v:?} is not an RFC 3339 time: {e}")))
        };
        for (k, v) in pairs {
            match k.as_str() {
                "from" => q.from = Some(time("from", &v)?),
                "to" => q.to = Some(time("to", &v)?),
                "filter" => q.filter.push(v),
                "match" => q.matching = Some(v),
                "dataset" => q.dataset = Some(v),
                other => {
                    return Err(bad(format!(
                        "unknown query parameter {other:?} (from, to, filter, match, dataset)"
                    )))
                }
            }
        }
        Ok(q)
    }
}

/// An observer that keeps nothing: gaps are counted in the restore's stats (and the
/// audit row), coverage says where they are.
struct Quiet;

impl Observer for Quiet {
    fn warn(&mut self, _message: &str) {}
}

/// A restore's error as a problem.
pub(crate) fn restore_problem(e: &RestoreError) -> Problem {
    let status = match e {
        RestoreError::Verification { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        RestoreError::Erased { .. } => StatusCode::GONE,
        RestoreError::Input(_) => StatusCode::BAD_REQUEST,
        RestoreError::Operational(m) => {
            return Problem::internal(e.code(), ErrorClass::Retryable, m)
        }
    };
    Problem::new(status, e.code(), e.to_string())
}

fn no_kms(what: &str) -> Problem {
    Problem::unavailable(
        "kms.unavailable",
        format!("{what} needs the kms: this API runs without a master keyring"),
    )
}

/// Restores the zone's logs for `[from, to)` as NDJSON (operators, auditors, admins):
/// every object verified before a byte of it is sent, windows in time order, records
/// trimmed to the range and filtered; gzip when `Accept-Encoding` takes it. The same
/// records as `rainlogs logs get`. A failure after the first byte aborts the response
/// (no terminating chunk): a cut-off export never looks complete.
#[utoipa::path(get, path = "/v1/zones/{zone}/logs", tag = "logs",
    params(("zone" = String, Path, description = "Rainlogs id or Cloudflare zone id"), LogsQuery),
    responses((status = 200, description = "The records, one JSON object per line", content_type = "application/x-ndjson"),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json"),
              (status = "5XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn get(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(zone): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let z = zone_of(&api, &p, &zone).await?;
    let q = LogsQuery::parse(raw.as_deref())?;
    let (Some(from), Some(to)) = (q.from, q.to) else {
        return Err(Problem::bad_request(
            "request.invalid_query",
            "from and to (RFC 3339) are required",
        ));
    };
    let filters = q
        .filter
        .iter()
        .map(|f| f.parse::<Filter>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem::bad_request("request.invalid_query", e.to_string()))?;
    let match_any = match q.matching.as_deref() {
        None | Some("all") => false,
        Some("any") => true,
        Some(other) => {
            return Err(Problem::bad_request(
                "request.invalid_query",
                format!("match={other:?}: expected all or any"),
            ))
        }
    };
    let kms = api.opener().ok_or_else(|| no_kms("restoring"))?;
    let req = restore::Request {
        zone: z.id.to_string(),
        tenant: Some(z.tenant_id.to_string()),
        from,
        to,
        filters,
        match_any,
        max_window_bytes: WINDOW_BYTES,
        dataset: q
            .dataset
            .clone()
            .unwrap_or_else(|| verify::PULL_DATASET.to_owned()),
    };
    let services = api.services();
    let source = Source::Catalog {
        pool: services.pool.clone(),
        store: services.store.clone(),
        kms,
    };
    let pool = services.pool.clone();
    let actor = p.actor();
    let (tenant_id, zone_id) = (z.tenant_id, z.id);
    let asked = json!({"from": from, "to": to, "filter": q.filter, "match": q.matching, "dataset": req.dataset});
    let gzip = stream::wants_gzip(&headers);
    let rx = stream::spawn(gzip, move |out| async move {
        let result = restore::restore(&source, &req, Box::new(out), &mut Quiet).await;
        let outcome = result.as_ref().map(|(_, stats)| stats);
        // The read happened: a failed audit write is the server's error to report.
        restore::record_read(&pool, &actor, Some(tenant_id), zone_id, asked, outcome)
            .await
            .map_err(|e| Problem::of(&e))?;
        result.map(|_| ()).map_err(|e| restore_problem(&e))
    });
    Ok(stream::respond(rx, NDJSON, gzip, first_wait(&api), HeaderMap::new()).await)
}

/// Downloads a window's sealed object as stored (auditors, admins) — for offline
/// checking and decryption with the tenant's exported keys (docs/FORMAT.md). The
/// catalog's SHA-256 comes in `X-Rainlogs-Object-Sha256`. Audited.
#[utoipa::path(get, path = "/v1/zones/{zone}/windows/{window}/object", tag = "logs",
    params(("zone" = String, Path, description = "Rainlogs id or Cloudflare zone id"),
           ("window" = i64, Path, description = "window id (from the zone's windows)")),
    responses((status = 200, description = "The sealed object", content_type = "application/octet-stream"),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn object(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path((zone, window)): Path<(String, i64)>,
) -> Result<Response, Problem> {
    let z = zone_of(&api, &p, &zone).await?;
    let object = restore::object_for_download(&api.services().pool, z.id, window, &p.actor())
        .await
        .map_err(|e| match e {
            ObjectError::UnknownWindow { .. } => {
                Problem::not_found("window.unknown", e.to_string())
            }
            ObjectError::Deleted { .. } => {
                Problem::new(StatusCode::GONE, "object.deleted", e.to_string())
            }
            ObjectError::NoObject { .. } => Problem::not_found("object.none", e.to_string()),
            ObjectError::Db(d) => Problem::of(&d),
        })?;
    let (key, sha, size) = (object.key, object.sha256, object.size);
    let mut body = Box::pin(
        api.services()
            .store
            .root()
            .get_stream(&key)
            .await
            .map_err(|e| Problem::internal(e.code(), e.class(), &e))?,
    );
    let stream = futures::stream::poll_fn(move |cx| {
        // ByteStream yields its chunks through `poll_next` (a Stream in all but name).
        body.as_mut()
            .poll_next(cx)
            .map(|c| c.map(|r| r.map_err(std::io::Error::other)))
    });
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&size.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&hex::encode(&sha)) {
        h.insert("x-rainlogs-object-sha256", v);
    }
    let file = key.rsplit('/').next().unwrap_or("object.sealed").to_owned();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{window}-{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// Which key versions to export.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyExportRequest {
    /// One version; default: every version not shredded.
    pub version: Option<u32>,
}

/// One exported key version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportedKey {
    pub version: u32,
    pub state: String,
    /// The key file (`rainlogs decrypt --key-file`, `rainlogs logs get --key-file`,
    /// docs/FORMAT.md): the key in the clear — keep it like the key itself.
    pub key_file: String,
}

/// The exported keys of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyExport {
    pub tenant_id: Uuid,
    pub keys: Vec<ExportedKey>,
}

/// Exports the tenant's keys for offline decryption (auditors, admins): the keys in the
/// clear, in key files. Each export is audited by the kms with the caller as actor.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/key-export", tag = "logs", request_body = KeyExportRequest,
    params(("tenant" = String, Path, description = "tenant name or id")),
    responses((status = 200, body = KeyExport),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn key_export(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    JsonBody(req): JsonBody<KeyExportRequest>,
) -> Result<Response, Problem> {
    let t = tenant_of(&api, &p, &tenant).await?;
    let kms = api
        .services()
        .kms
        .as_ref()
        .ok_or_else(|| no_kms("exporting keys"))?
        .with_actor(p.actor());
    let exported = kms
        .export_tenant_keys(t.id, req.version)
        .await
        .map_err(|e| match e {
            KeyError::UnknownKeyVersion { version, .. } => Problem::not_found(
                "key.unknown",
                format!("tenant {} has no key version {version}", t.name),
            ),
            other => Problem::of(&other),
        })?;
    let keys = exported
        .into_iter()
        .map(|(row, key)| ExportedKey {
            version: row.version,
            state: row.state,
            key_file: key.to_key_file().as_str().to_owned(),
        })
        .collect();
    let mut resp = Json(KeyExport {
        tenant_id: t.id,
        keys,
    })
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
