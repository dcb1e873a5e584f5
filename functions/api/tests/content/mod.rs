//! Log content through the API against the real stack, end to end: a zone added by
//! API and archived through the pipeline (simulator → fetch → encrypt → upload) is
//! restored by API exactly as `rainlogs logs get` restores it (plain and gzip); a
//! downloaded object and the exported key restore offline to the same bytes; a
//! data-subject search finds exactly one person's records; an erasure is refused under
//! legal hold, needs its token, shreds and deletes with receipts — after which restore
//! and search say the tenant was erased.

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rainlogs_archive::catalog::account::Role;
use rainlogs_cli::logs::GetArgs;
use rainlogs_integration_tests::TestEnv;
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{SimConfig, Simulator, ZoneVolume};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{test_config, user_key, Server, CF_TOKEN, MASTER};

/// A GET's status, headers and raw body.
async fn get_raw(
    server: &Server,
    key: &str,
    path: &str,
    gzip: bool,
) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let mut req = server
        .client
        .get(format!("{}{path}", server.base))
        .bearer_auth(key);
    if gzip {
        req = req.header(header::ACCEPT_ENCODING, "gzip");
    }
    let resp = req.send().await.expect("answered");
    let (status, headers) = (resp.status(), resp.headers().clone());
    (
        status,
        headers,
        resp.bytes().await.expect("whole body").to_vec(),
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rl-api-content-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn get_args(zone: &str, from: DateTime<Utc>, to: DateTime<Utc>, out: &std::path::Path) -> GetArgs {
    GetArgs {
        zone: zone.to_owned(),
        from,
        to,
        filters: Vec::new(),
        match_any: false,
        out: Some(out.to_path_buf()),
        tenant: None,
        key_file: Vec::new(),
        max_window_mib: 256,
        dataset: "http_requests".into(),
    }
}

#[tokio::test]
async fn restore_download_search_and_erasure_through_the_api() {
    let mut env = TestEnv::new().await;
    let kms = KmsService::new(
        env.app.pool.clone(),
        MasterKeyring::parse(MASTER, None).unwrap(),
        "test",
    );
    env.app.kms = Some(kms);
    env.src.set("RAINLOGS_MASTER_KEYS", MASTER);
    let server = Server::start(&env, test_config()).await;
    let cf = Uuid::new_v4().simple().to_string();
    let sim = Simulator::start_local(SimConfig {
        tokens: vec![CF_TOKEN.to_owned()],
        zones: [(cf.clone(), ZoneVolume::steady(40))].into_iter().collect(),
        ..SimConfig::default()
    })
    .await
    .unwrap();

    // Bootstrap, a tenant, its data-protection officer (an auditor), a zone.
    let (_, root) = user_key(&env, None, "root", Role::Admin).await;
    let (status, t) = server
        .call(
            Some(&root),
            Method::POST,
            "/v1/tenants",
            Some(json!({"name": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let tenant: Uuid = t["id"].as_str().unwrap().parse().unwrap();
    let (_, dpo) = user_key(&env, Some("acme"), "dpo", Role::Auditor).await;
    let (_, viewer) = user_key(&env, Some("acme"), "viewer", Role::Viewer).await;
    let (status, zone) = server
        .call(
            Some(&root),
            Method::POST,
            "/v1/tenants/acme/zones",
            Some(
                json!({"cf_zone_id": cf, "name": "acme.example", "token": CF_TOKEN,
                        "simulator_url": sim.base_url(), "backfill_minutes": 8}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{zone}");
    let zone_id: Uuid = zone["id"].as_str().unwrap().parse().unwrap();

    // The pipeline archives its windows (the scheduler's part done here directly).
    let now = Utc::now();
    rainlogs_archive::ledger::plan_zone(
        &env.app.pool,
        zone_id,
        now,
        &rainlogs_archive::ledger::PlanPolicy::same_clock(),
    )
    .await
    .unwrap();
    let invoker = Arc::new(env.app.in_process_functions());
    let (_, timed_out) =
        rainlogs_cli::demo::archive(&env.app, invoker, &[zone_id], Duration::from_secs(180))
            .await
            .unwrap();
    assert!(!timed_out, "the zone's windows are archived in time");
    let (from, to, archived): (DateTime<Utc>, DateTime<Utc>, i64) = sqlx::query_as(
        "SELECT min(start_at), max(end_at), count(*) FILTER (WHERE state = 'archived')
         FROM windows WHERE zone_id = $1",
    )
    .bind(zone_id)
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    assert!(archived >= 5, "{archived} windows archived");
    let range = format!(
        "from={}&to={}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
    .replace('+', "%2B");

    // Restore by API = `rainlogs logs get`, byte for byte; gzip when asked.
    let logs = format!("/v1/zones/{cf}/logs?{range}");
    let (status, headers, body) = get_raw(&server, &dpo, &logs, false).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
    let out = tmp("cli.ndjson");
    rainlogs_cli::logs::get(&env.src, &get_args(&zone_id.to_string(), from, to, &out))
        .await
        .unwrap();
    let cli = std::fs::read(&out).unwrap();
    assert!(cli.len() > 10_000, "{} bytes restored", cli.len());
    assert!(body == cli, "the API's restore equals the CLI's");
    let (status, headers, gz) = get_raw(&server, &dpo, &logs, true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert!(unzipped == cli, "gzip carries the same bytes");
    assert!(gz.len() < cli.len() / 2, "and compresses");
    // A filter, and bad queries answered as problems.
    let records: Vec<Value> = cli
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let ip = records[0]["ClientIP"].as_str().unwrap().to_owned();
    let ip2 = records
        .iter()
        .map(|r| r["ClientIP"].as_str().unwrap())
        .find(|i| *i != ip)
        .unwrap()
        .to_owned();
    let of_subject: BTreeSet<String> = records
        .iter()
        .filter(|r| r["ClientIP"] == json!(ip) || r["ClientIP"] == json!(ip2))
        .map(Value::to_string)
        .collect();
    let (_, _, filtered) = get_raw(
        &server,
        &dpo,
        &format!("{logs}&filter=ClientIP%3D{ip}"),
        false,
    )
    .await;
    let n = filtered
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(
        n,
        records
            .iter()
            .filter(|r| r["ClientIP"] == json!(ip))
            .count()
    );
    for (query, code) in [
        (format!("/v1/zones/{cf}/logs"), "request.invalid_query"),
        (format!("{logs}&filter=nofield"), "request.invalid_query"),
        (format!("{logs}&match=some"), "request.invalid_query"),
        (format!("{logs}&bogus=1"), "request.invalid_query"),
        (
            format!("/v1/zones/{cf}/logs?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"),
            "logs.invalid",
        ),
    ] {
        let (status, problem) = server.call(Some(&dpo), Method::GET, &query, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert_eq!(problem["code"], code, "{query}");
    }
    let (status, _) = server.call(Some(&viewer), Method::GET, &logs, None).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a viewer reads metadata, not logs"
    );

    // Coverage: a pull zone's has no push part; a push zone's says what push delivered
    // and how its destinations are.
    let (status, pulled) = server
        .call(
            Some(&dpo),
            Method::GET,
            &format!("/v1/zones/{cf}/coverage"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pulled}");
    assert!(pulled["push"].is_null(), "{pulled}");
    let push_cf = Uuid::new_v4().simple().to_string();
    let (status, pz) = server
        .call(
            Some(&root),
            Method::POST,
            "/v1/tenants/acme/zones",
            Some(
                json!({"cf_zone_id": push_cf, "name": "push.acme.example", "token": CF_TOKEN,
                        "simulator_url": sim.base_url(), "mode": "push"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pz}");
    let (status, pushed) = server
        .call(
            Some(&dpo),
            Method::GET,
            &format!("/v1/zones/{push_cf}/coverage"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pushed}");
    assert!(pushed["push"]["datasets"].is_array(), "{pushed}");
    assert!(pushed["push"]["destinations"].is_array(), "{pushed}");
    assert!(pushed["push"]["failed"].is_array(), "{pushed}");

    // Download an object and export the key: offline, they restore the same records.
    let (window, object_key, sha): (i64, String, Vec<u8>) = sqlx::query_as(
        "SELECT w.id, a.object_key, a.object_sha256 FROM windows w
         JOIN archived_objects a ON a.window_id = w.id
         WHERE w.zone_id = $1 ORDER BY w.start_at LIMIT 1",
    )
    .bind(zone_id)
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    let (status, headers, object) = get_raw(
        &server,
        &dpo,
        &format!("/v1/zones/{cf}/windows/{window}/object"),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(Sha256::digest(&object).to_vec(), sha);
    assert_eq!(headers["x-rainlogs-object-sha256"], hex::encode(&sha));
    let (status, export) = server
        .call(
            Some(&dpo),
            Method::POST,
            "/v1/tenants/acme/key-export",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{export}");
    let key_file = tmp("tenant.key");
    std::fs::write(&key_file, export["keys"][0]["key_file"].as_str().unwrap()).unwrap();
    let mut offline_src = env.src.clone();
    offline_src.set(
        "RAINLOGS_DATABASE_URL",
        "postgres://rainlogs@127.0.0.1:1/nothing",
    );
    let offline = tmp("offline.ndjson");
    let mut args = get_args(&zone_id.to_string(), from, to, &offline);
    args.tenant = Some(tenant.to_string());
    args.key_file = vec![key_file];
    rainlogs_cli::logs::get(&offline_src, &args).await.unwrap();
    assert!(
        std::fs::read(&offline).unwrap() == cli,
        "the exported key opens the archive offline"
    );
    let (status, _) = server
        .call(
            Some(&viewer),
            Method::POST,
            "/v1/tenants/acme/key-export",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A data-subject search: exactly the records of the subject's two addresses.
    let search = json!({"matches": [format!("ClientIP={ip}"), format!("ClientIP={ip2}")],
                        "from": from, "to": to});
    let resp = server
        .client
        .post(format!("{}/v1/tenants/acme/gdpr/search", server.base))
        .bearer_auth(&dpo)
        .json(&search)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let found: BTreeSet<String> = lines
        .iter()
        .filter(|l| l["type"] == "record")
        .map(|l| {
            assert_eq!(l["cf_zone_id"], json!(cf));
            l["record"].to_string()
        })
        .collect();
    assert_eq!(
        found, of_subject,
        "the search finds exactly the subject's records"
    );
    assert!(lines.iter().any(|l| l["type"] == "progress"), "{text}");
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "done", "{last}");
    assert_eq!(last["progress"]["records_found"], json!(of_subject.len()));
    assert_eq!(last["progress"]["windows_scanned"], json!(archived));
    let (status, problem) = server
        .call(
            Some(&dpo),
            Method::POST,
            "/v1/tenants/acme/gdpr/search",
            Some(json!({"matches": [], "from": from, "to": to})),
        )
        .await;
    assert_eq!(
        (status, &problem["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("gdpr.invalid"))
    );
    // The same refusals to a client accepting gzip: problems, not a 200 cut short
    // after the compressor's header (found by schemathesis).
    let resp = server
        .client
        .post(format!("{}/v1/tenants/acme/gdpr/search", server.base))
        .bearer_auth(&dpo)
        .header(header::ACCEPT_ENCODING, "gzip, deflate")
        .json(&json!({"matches": [], "from": from, "to": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let (status, headers, _) = get_raw(
        &server,
        &dpo,
        &format!("/v1/zones/{cf}/logs?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");

    // An erasure: refused under a legal hold (and recorded), then requested, confirmed.
    let (status, _) = server
        .call(
            Some(&root),
            Method::PATCH,
            "/v1/tenants/acme",
            Some(json!({"legal_hold": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ask = json!({"reason": "data subject request DSR-42"});
    let (status, problem) = server
        .call(
            Some(&root),
            Method::POST,
            "/v1/tenants/acme/gdpr/erasures",
            Some(ask.clone()),
        )
        .await;
    assert_eq!(
        (status, &problem["code"]),
        (StatusCode::CONFLICT, &json!("gdpr.legal_hold"))
    );
    server
        .call(
            Some(&root),
            Method::PATCH,
            "/v1/tenants/acme",
            Some(json!({"legal_hold": false})),
        )
        .await;
    let (status, ticket) = server
        .call(
            Some(&root),
            Method::POST,
            "/v1/tenants/acme/gdpr/erasures",
            Some(ask),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    assert_eq!(ticket["objects"], json!(archived));
    let id = ticket["id"].as_str().unwrap();
    let token = ticket["confirm_token"].as_str().unwrap();
    let confirm = format!("/v1/tenants/acme/gdpr/erasures/{id}/confirm");
    let (status, problem) = server
        .call(
            Some(&root),
            Method::POST,
            &confirm,
            Some(json!({"confirm_token": "rle_wrong"})),
        )
        .await;
    assert_eq!(
        (status, &problem["code"]),
        (StatusCode::UNPROCESSABLE_ENTITY, &json!("gdpr.bad_token"))
    );
    let (status, done) = server
        .call(
            Some(&root),
            Method::POST,
            &confirm,
            Some(json!({"confirm_token": token})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(done["keys_shredded"].as_u64().unwrap() >= 1, "{done}");
    assert_eq!(done["objects_deleted"], json!(archived));
    let (status, again) = server
        .call(
            Some(&root),
            Method::POST,
            &confirm,
            Some(json!({"confirm_token": token})),
        )
        .await;
    assert_eq!(
        (status, &again),
        (StatusCode::OK, &done),
        "confirming again answers the report"
    );

    // After: the objects are gone with a receipt each; restore and search say why.
    assert_eq!(env.app.store.root().head(&object_key).await.unwrap(), None);
    let receipts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deletion_receipts WHERE rule = 'erasure:' || $1")
            .bind(id)
            .fetch_one(&env.app.pool)
            .await
            .unwrap();
    assert_eq!(receipts, archived);
    let (status, problem) = server.call(Some(&dpo), Method::GET, &logs, None).await;
    assert_eq!(
        (status, &problem["code"]),
        (StatusCode::GONE, &json!("gdpr.erased")),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains(id),
        "{problem}"
    );
    let (status, problem) = server
        .call(
            Some(&dpo),
            Method::POST,
            "/v1/tenants/acme/gdpr/search",
            Some(search),
        )
        .await;
    assert_eq!(
        (status, &problem["code"]),
        (StatusCode::GONE, &json!("gdpr.erased"))
    );

    // The record of requests: the search, the refused and the done erasure, with who.
    let (status, record) = server
        .call(
            Some(&dpo),
            Method::GET,
            "/v1/tenants/acme/gdpr/requests",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{record}");
    let kinds: Vec<(String, String)> = record["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("erasure", "done"),
            ("erasure", "refused"),
            ("access", "done")
        ]
        .map(|(k, s)| (k.to_owned(), s.to_owned())),
        "newest first"
    );
    assert_eq!(
        record["requests"][2]["requested_by"],
        "api:dpo@acme:auditor"
    );
    let (_, log) = server
        .call(
            Some(&root),
            Method::GET,
            "/v1/tenants/acme/audit-events?operation=logs.*",
            None,
        )
        .await;
    assert!(
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["operation"] == "logs.read"),
        "{log}"
    );
    assert!(
        log["events"].as_array().unwrap().len() >= 4,
        "every read is audited: {log}"
    );
    assert!(
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"].as_str().unwrap().starts_with("cli:")),
        "the CLI's restores are audited too: {log}"
    );

    drop(server);
    sim.shutdown().await.unwrap();
    env.teardown().await;
}
