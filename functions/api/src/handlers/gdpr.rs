//! Data-subject requests (docs/GDPR.md) over `rainlogs_archive::gdpr`: an access search
//! streamed as NDJSON envelopes with progress (Art. 15), the record of requests
//! (evidence), and a tenant's erasure in two steps — request (a one-time token), then
//! confirm with it (Art. 17).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use rainlogs_archive::gdpr::{self, ErasureReport, GdprError, SearchRequest};
use rainlogs_archive::restore::Filter;
use rainlogs_archive::verify;
use rainlogs_core::error::{Classify, ErrorClass};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::logs::first_wait;
use super::{tenant_of, zone_of, Body, Path, Query};
use crate::auth::Principal;
use crate::page::PageRequest;
use crate::problem::{Problem, ProblemBody};
use crate::stream::{self, NDJSON};
use crate::Api;

impl From<GdprError> for Problem {
    fn from(e: GdprError) -> Self {
        match e.code() {
            "gdpr.verification" => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "gdpr.verification",
                e.to_string(),
            ),
            "gdpr.erased" | "gdpr.expired" => {
                Problem::new(StatusCode::GONE, e.code(), e.to_string())
            }
            "gdpr.legal_hold" | "gdpr.not_pending" => {
                Problem::new(StatusCode::CONFLICT, e.code(), e.to_string())
            }
            _ => Problem::of(&e),
        }
    }
}

/// Whom to look for, where and when.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// `FIELD=VALUE`s; a record matching any of them is the data subject's
    /// (`ClientIP=192.0.2.1`, `Cookies.session=…`, `RequestHeaders.x-user-id=…`).
    pub matches: Vec<String>,
    /// Start (RFC 3339, inclusive).
    pub from: DateTime<Utc>,
    /// End (RFC 3339, exclusive).
    pub to: DateTime<Utc>,
    /// Only these zones (Rainlogs or Cloudflare zone ids); default: every zone.
    #[serde(default)]
    pub zones: Vec<String>,
    /// The dataset (default `http_requests`).
    pub dataset: Option<String>,
}

/// Searches the tenant's archive for a data subject's records (auditors, admins): an
/// `access` request is recorded, then NDJSON envelopes stream — `record` (with its
/// zone), `progress` (about once a second and after each zone), `warning` (gaps), and
/// last `done` with the counts or `error`. Every object is verified before a record of
/// it is sent.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/gdpr/search", tag = "gdpr", request_body = SearchBody,
    params(("tenant" = String, Path, description = "tenant name or id")),
    responses((status = 200, description = "NDJSON envelopes: record, progress, warning, then done or error", content_type = "application/x-ndjson"),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn search(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Body(body): Body<SearchBody>,
) -> Result<Response, Problem> {
    let t = tenant_of(&api, &p, &tenant).await?;
    let mut zones = Vec::with_capacity(body.zones.len());
    for z in &body.zones {
        let row = zone_of(&api, &p, z).await?;
        if row.tenant_id != t.id {
            return Err(Problem::not_found(
                "zone.unknown",
                format!("no zone {z:?} in tenant {:?}", t.name),
            ));
        }
        zones.push(row.id);
    }
    let matches = body
        .matches
        .iter()
        .map(|m| m.parse::<Filter>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem::unprocessable("gdpr.invalid", e.to_string()))?;
    let req = SearchRequest {
        matches,
        from: body.from,
        to: body.to,
        zones,
        dataset: body
            .dataset
            .unwrap_or_else(|| verify::PULL_DATASET.to_owned()),
    };
    let kms = api.opener().ok_or_else(|| {
        Problem::unavailable(
            "kms.unavailable",
            "searching needs the kms: this API runs without a master keyring",
        )
    })?;
    let services = api.services();
    let (pool, store) = (services.pool.clone(), services.store.clone());
    let actor = p.actor();
    let tenant_id = t.id;
    let gzip = stream::wants_gzip(&headers);
    let rx = stream::spawn(gzip, move |out| async move {
        let written = out.clone();
        let result = gdpr::search(
            &pool,
            &store,
            kms,
            tenant_id,
            &req,
            &actor,
            Box::new(out),
            &mut |_| {},
        )
        .await;
        match result {
            Ok(_) => Ok(()),
            // Once envelopes flow, the last one (`error`) tells the reader; the stream
            // itself ends cleanly.
            Err(_) if written.written() > 0 => Ok(()),
            Err(e) => Err(e.into()),
        }
    });
    Ok(stream::respond(rx, NDJSON, gzip, first_wait(&api), HeaderMap::new()).await)
}

/// Paging of the requests list.
#[derive(Debug, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestsQuery {
    /// Items per page (default 50, at most 500).
    pub page_size: Option<i64>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// One data-subject request: who asked, when, what, and what came of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSubjectRequest {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `access` or `erasure`.
    pub kind: String,
    /// access: running, done, failed; erasure: requested, erasing, done, expired, refused.
    pub state: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub criteria: serde_json::Value,
    pub confirm_expires_at: Option<DateTime<Utc>>,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
}

impl From<gdpr::RequestRow> for DataSubjectRequest {
    fn from(r: gdpr::RequestRow) -> Self {
        Self {
            id: r.id,
            tenant_id: r.tenant_id,
            kind: r.kind,
            state: r.state,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            criteria: r.criteria,
            confirm_expires_at: r.confirm_expires_at,
            confirmed_by: r.confirmed_by,
            confirmed_at: r.confirmed_at,
            finished_at: r.finished_at,
            result: r.result,
        }
    }
}

/// A page of requests, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestsPage {
    pub requests: Vec<DataSubjectRequest>,
    /// The next page's `page_token`; empty on the last page.
    pub next_page_token: String,
}

/// The tenant's data-subject requests, newest first (auditors, admins): the evidence
/// of who asked for what, when, and what was done.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/gdpr/requests", tag = "gdpr",
    params(("tenant" = String, Path, description = "tenant name or id"), RequestsQuery),
    responses((status = 200, body = RequestsPage),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn requests(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    Query(q): Query<RequestsQuery>,
) -> Result<Json<RequestsPage>, Problem> {
    let t = tenant_of(&api, &p, &tenant).await?;
    let req = PageRequest::<(DateTime<Utc>, Uuid)>::parse(
        "gdpr-requests",
        &t.id,
        q.page_size,
        q.page_token.as_deref(),
    )?;
    let mut rows =
        gdpr::list_requests(&api.services().pool, t.id, req.after, req.size as i64 + 1).await?;
    let more = rows.len() > req.size;
    rows.truncate(req.size);
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => req.token_after((last.requested_at, last.id)),
        _ => String::new(),
    };
    Ok(Json(RequestsPage {
        requests: rows.into_iter().map(Into::into).collect(),
        next_page_token,
    }))
}

/// Why the tenant is to be erased.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureBody {
    /// The data subject's request, a ticket, a contract's end (1-2000 characters).
    pub reason: String,
}

/// An erasure awaiting its confirmation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureTicket {
    pub id: Uuid,
    /// Shown once: send it to `…/erasures/{id}/confirm` before `expires_at`.
    pub confirm_token: String,
    pub expires_at: DateTime<Utc>,
    /// What confirming destroys: the tenant's zones, archived objects and bytes.
    pub zones: u64,
    pub objects: u64,
    pub bytes: u64,
}

/// Asks to erase the tenant (admins): refused under a legal hold (409, recorded as
/// refused); otherwise recorded, with a one-time confirmation token valid 30 minutes.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/gdpr/erasures", tag = "gdpr", request_body = ErasureBody,
    params(("tenant" = String, Path, description = "tenant name or id")),
    responses((status = 201, body = ErasureTicket),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn request_erasure(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(tenant): Path<String>,
    Body(body): Body<ErasureBody>,
) -> Result<Response, Problem> {
    let t = tenant_of(&api, &p, &tenant).await?;
    let ticket = gdpr::request_erasure(
        &api.services().pool,
        t.id,
        &p.actor(),
        &body.reason,
        Utc::now(),
    )
    .await?;
    let mut resp = (
        StatusCode::CREATED,
        Json(ErasureTicket {
            id: ticket.id,
            confirm_token: ticket.confirm_token.expose_secret().to_owned(),
            expires_at: ticket.expires_at,
            zones: ticket.zones,
            objects: ticket.objects,
            bytes: ticket.bytes,
        }),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The confirmation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    pub confirm_token: String,
}

/// What the erasure did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureDone {
    pub request_id: Uuid,
    pub tenant_id: Uuid,
    /// Key versions destroyed: every copy of every object is unreadable from now on.
    pub keys_shredded: u64,
    /// Objects deleted, each with a deletion receipt naming the request.
    pub objects_deleted: u64,
    pub bytes_deleted: u64,
}

impl From<ErasureReport> for ErasureDone {
    fn from(r: ErasureReport) -> Self {
        Self {
            request_id: r.request_id,
            tenant_id: r.tenant_id,
            keys_shredded: r.keys_shredded,
            objects_deleted: r.objects_deleted,
            bytes_deleted: r.bytes_deleted,
        }
    }
}

/// Confirms an erasure with its token (admins): legal holds checked again, then the
/// tenant's keys are shredded and its objects deleted with receipts. Irreversible.
/// Confirming again resumes an interrupted erasure, or answers a finished one's report.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/gdpr/erasures/{request}/confirm", tag = "gdpr", request_body = ConfirmBody,
    params(("tenant" = String, Path, description = "tenant name or id"),
           ("request" = Uuid, Path, description = "the erasure request's id")),
    responses((status = 200, body = ErasureDone),
              (status = "4XX", body = ProblemBody, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn confirm_erasure(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path((tenant, request)): Path<(String, Uuid)>,
    Body(body): Body<ConfirmBody>,
) -> Result<Json<ErasureDone>, Problem> {
    let t = tenant_of(&api, &p, &tenant).await?;
    let services = api.services();
    let kms = services
        .kms
        .as_ref()
        .ok_or_else(|| {
            Problem::unavailable(
                "kms.unavailable",
                "erasing needs the kms: this API runs without a master keyring",
            )
        })?
        .with_actor(p.actor());
    let report = gdpr::confirm_erasure(
        &services.pool,
        &services.store,
        t.id,
        request,
        &body.confirm_token,
        &p.actor(),
        Utc::now(),
        |tenant| async move {
            kms.shred_tenant(tenant)
                .await
                .map_err(|e| GdprError::Shred {
                    tenant,
                    reason: e.to_string(),
                    retryable: e.class() == ErrorClass::Retryable,
                })
        },
    )
    .await?;
    Ok(Json(report.into()))
}
