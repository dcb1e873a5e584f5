//! The OpenAPI 3.1 document, generated from the handlers' annotations (utoipa): served
//! at `GET /v1/openapi.json` and committed as docs/openapi.json — a test fails when the
//! two differ (`RAINLOGS_BLESS_OPENAPI=1` rewrites the committed file).

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers::{audit, gdpr, health, logs, tenants, users, verify, zones};
use crate::problem::ProblemBody;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("rl_<env>_<random><checksum>")
                    .description(Some(
                        "A Rainlogs API key (`rainlogs key create`, or POST /v1/users/{user}/keys)",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rainlogs API",
        description = "Tenants, zones, windows, coverage, restore, downloads and key export, verify, data-subject requests, the audit log, users and API keys of a Rainlogs archive (docs/API.md). Errors are RFC 9457 problem details (application/problem+json) with a stable `code`; lists are paginated AIP-158-style (page_size, page_token → next_page_token).",
        license(name = "Apache-2.0"),
        version = "1"
    ),
    paths(
        health::live, health::pipeline,
        users::me,
        tenants::list, tenants::create, tenants::get, tenants::update,
        zones::list, zones::add, zones::get, zones::update, zones::pause, zones::resume, zones::set_mode, zones::set_token,
        zones::retry_failed, zones::coverage, zones::windows,
        logs::get, logs::object, logs::key_export,
        gdpr::search, gdpr::requests, gdpr::request_erasure, gdpr::confirm_erasure,
        audit::list,
        verify::run,
        users::list, users::add, users::disable, users::keys, users::create_key, users::revoke_key,
        serve,
    ),
    components(schemas(ProblemBody)),
    modifiers(&BearerKey),
    tags(
        (name = "tenants", description = "Customers, their retention and legal hold"),
        (name = "zones", description = "Cloudflare zones, their windows and coverage"),
        (name = "logs", description = "Log content and the archive: restore, object download, key export (audited)"),
        (name = "gdpr", description = "Data-subject requests: access search, erasure (audited)"),
        (name = "audit", description = "The audit log"),
        (name = "verify", description = "Integrity verification"),
        (name = "users", description = "Users and API keys"),
        (name = "health", description = "Liveness, queues and stuck windows"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON, ending in a newline (as committed).
pub fn document() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    json.push('\n');
    json
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed docs/openapi.json is what the code generates.
    #[test]
    fn committed_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let generated = document();
        if std::env::var_os("RAINLOGS_BLESS_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the document the code generates: run \
             `RAINLOGS_BLESS_OPENAPI=1 cargo test -p rainlogs-api --lib openapi` and commit it"
        );
        let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    }
}
