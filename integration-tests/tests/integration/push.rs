//! The Logpush receiver over real HTTP against real Postgres and Garage: a batch is
//! acknowledged only once its sealed object is staged and its row committed (and the
//! object opens to exactly the pushed NDJSON); re-deliveries are stored once; a wrong
//! secret, bad gzip, a bomb or an oversized body are refused with nothing stored; the
//! validation upload is recorded, not archived; Postgres or Garage trouble is a 5xx
//! with nothing acknowledged, and the same batch is accepted after recovery; a full
//! receiver answers 429 with Retry-After; `/healthz` follows Postgres.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use rainlogs_archive::push;
use rainlogs_core::config::S3Config;
use rainlogs_core::storage::ObjectStore;
use rainlogs_integration_tests::{wait_for, TestEnv};
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_receiver::{Receiver, ReceiverLimits};
use rainlogs_sealed::kms::Kms;
use rainlogs_sealed::{open_with_kms, SealContext};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

const MASTER: &str = "1:3232323232323232323232323232323232323232323232323232323232323232";

pub(crate) struct Setup {
    pub(crate) env: TestEnv,
    pub(crate) kms: Arc<dyn Kms>,
    pub(crate) zone: Uuid,
    pub(crate) destination: Uuid,
    pub(crate) secret: String,
}

impl Setup {
    pub(crate) async fn new() -> Self {
        let env = TestEnv::new().await;
        let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
        let kms: Arc<dyn Kms> = Arc::new(KmsService::new(env.app.pool.clone(), keyring, "test"));
        let zone = env.insert_zone(60, Utc::now()).await;
        let created = push::create_destination(&env.app.pool, zone, "http_requests")
            .await
            .expect("destination");
        Self {
            kms,
            zone,
            destination: created.destination.id,
            secret: created.secret.expose_secret().to_owned(),
            env,
        }
    }

    pub(crate) fn receiver(&self, limits: ReceiverLimits) -> Receiver {
        self.receiver_with(
            self.env.app.pool.clone(),
            self.env.app.store.clone(),
            limits,
        )
    }

    pub(crate) fn receiver_with(
        &self,
        pool: PgPool,
        store: ObjectStore,
        limits: ReceiverLimits,
    ) -> Receiver {
        Receiver::new(pool, store, self.kms.clone(), limits)
    }

    pub(crate) fn url(&self, server: &Server) -> String {
        format!("{}/push/{}", server.base, self.destination)
    }

    pub(crate) async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM push_batches")
            .fetch_one(&self.env.app.pool)
            .await
            .unwrap()
    }

    pub(crate) async fn staged(&self) -> Vec<String> {
        self.env
            .app
            .store
            .list_all("staging/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    }
}

/// The receiver on an ephemeral local port, stopped when dropped.
pub(crate) struct Server {
    pub(crate) base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn serve(receiver: Receiver) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = rainlogs_receiver::serve(listener, receiver).await;
    });
    Server { base, task }
}

pub(crate) fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Cloudflare-like http_requests NDJSON, `n` records from `start`, one a second.
pub(crate) fn ndjson(n: usize, start: DateTime<Utc>, tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let t = start + TimeDelta::seconds(i as i64);
        writeln!(
            out,
            r#"{{"RayID":"{tag}{i:08x}","EdgeStartTimestamp":"{}","EdgeEndTimestamp":"{}","ClientRequestHost":"example.com","EdgeResponseStatus":200}}"#,
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            (t + TimeDelta::milliseconds(20)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
        .unwrap();
    }
    out
}

pub(crate) async fn post(
    url: &str,
    auth: Option<(&str, String)>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip");
    if let Some((name, value)) = auth {
        req = req.header(name, value);
    }
    req.body(body).send().await.expect("request sent")
}

pub(crate) fn bearer(secret: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {secret}")))
}

pub(crate) async fn json(resp: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&resp.bytes().await.expect("answer body")).expect("json answer")
}

/// record_count, malformed_lines, first/last edge, received_at, staging_key, content hash.
type BatchRow = (
    i64,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
    String,
    Vec<u8>,
);

#[tokio::test]
async fn batch_is_sealed_and_recorded_before_2xx() {
    let s = Setup::new().await;
    let server = serve(s.receiver(ReceiverLimits::default())).await;
    let start = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let plain = ndjson(500, start, "a");
    let resp = post(&s.url(&server), bearer(&s.secret), gzip(&plain, 6)).await;
    assert_eq!(resp.status(), 200);
    let answer = json(resp).await;
    assert_eq!(answer["records"], 500);
    assert_eq!(answer["duplicate"], false);
    let batch: Uuid = answer["batch_id"].as_str().unwrap().parse().unwrap();

    // The row was committed before the answer.
    let (records, malformed, first, last, received, key, sha): BatchRow = sqlx::query_as(
        "SELECT b.record_count, b.malformed_lines, b.first_edge_at, b.last_edge_at,
                b.received_at, b.staging_key, b.content_sha256
         FROM push_batches b JOIN windows w ON w.batch_id = b.id
         WHERE b.id = $1 AND w.state = 'staged' AND w.start_at = b.first_edge_at",
    )
    .bind(batch)
    .fetch_one(&s.env.app.pool)
    .await
    .expect("row committed before 2xx");
    assert_eq!((records, malformed), (500, 0));
    assert_eq!(first, start);
    assert_eq!(
        last,
        start + TimeDelta::seconds(499) + TimeDelta::milliseconds(20)
    );
    assert_eq!(sha, <sha2::Sha256 as sha2::Digest>::digest(&plain).to_vec());
    assert_eq!(key, push::staging_key(s.zone, batch));

    // The staged object is sealed (no plaintext at rest) and opens to exactly the batch.
    let object = s.env.app.store.get(&key).await.expect("staged object");
    assert!(object.starts_with(b"RLSEALED"));
    assert!(!object.windows(9).any(|w| w == b"RayID\":\"a"));
    let tenant: Uuid = sqlx::query_scalar("SELECT tenant_id FROM zones WHERE id = $1")
        .bind(s.zone)
        .fetch_one(&s.env.app.pool)
        .await
        .unwrap();
    let context = SealContext {
        tenant,
        zone: s.zone,
        window_start: received,
        window_end: received + TimeDelta::microseconds(1),
    };
    let (_, opener) = open_with_kms(s.kms.as_ref(), &object[..], Some(&context))
        .await
        .expect("staged object opens under the row's context");
    let mut out = Vec::new();
    let summary = opener.copy_to(&mut out).unwrap();
    assert_eq!(out, plain);
    assert_eq!(summary.record_count, 500);
    assert_eq!(s.staged().await, vec![key]);
    drop(server);
    s.env.teardown().await;
}

#[tokio::test]
async fn redelivered_batch_is_stored_once() {
    let s = Setup::new().await;
    let server = serve(s.receiver(ReceiverLimits::default())).await;
    let plain = ndjson(50, Utc::now() - TimeDelta::minutes(3), "d");
    let first = json(post(&s.url(&server), bearer(&s.secret), gzip(&plain, 6)).await).await;
    let id = first["batch_id"].clone();
    assert_eq!(first["duplicate"], false);
    // Same bytes again, then the same NDJSON compressed differently, then via the other header.
    for (body, auth) in [
        (gzip(&plain, 6), bearer(&s.secret)),
        (gzip(&plain, 1), bearer(&s.secret)),
        (
            gzip(&plain, 9),
            Some(("x-rainlogs-secret", s.secret.clone())),
        ),
    ] {
        let resp = post(&s.url(&server), auth, body).await;
        assert_eq!(resp.status(), 200);
        let again = json(resp).await;
        assert_eq!(again["duplicate"], true);
        assert_eq!(again["batch_id"], id);
    }
    assert_eq!(s.rows().await, 1);
    assert_eq!(s.staged().await.len(), 1);
    drop(server);
    s.env.teardown().await;
}

#[tokio::test]
async fn wrong_secret_is_401_and_stores_nothing() {
    let s = Setup::new().await;
    let server = serve(s.receiver(ReceiverLimits::default())).await;
    let body = gzip(&ndjson(10, Utc::now(), "w"), 6);
    let other = push::create_destination(&s.env.app.pool, s.zone, "firewall_events")
        .await
        .unwrap();
    let cases = [
        (s.url(&server), None),
        (s.url(&server), bearer("0123")),
        (s.url(&server), bearer(&format!("{}0", s.secret))),
        (s.url(&server), Some(("authorization", s.secret.clone()))),
        // Another destination's secret does not open this one.
        (s.url(&server), bearer(other.secret.expose_secret())),
        (
            format!("{}/push/{}", server.base, Uuid::new_v4()),
            bearer(&s.secret),
        ),
        (
            format!("{}/push/not-a-uuid", server.base),
            bearer(&s.secret),
        ),
    ];
    for (url, auth) in cases {
        let resp = post(&url, auth, body.clone()).await;
        assert_eq!(resp.status(), 401, "{url}");
    }
    // A disabled destination refuses its own secret.
    assert!(push::disable_destination(&s.env.app.pool, s.destination)
        .await
        .unwrap());
    let resp = post(&s.url(&server), bearer(&s.secret), body).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(s.rows().await, 0);
    assert!(s.staged().await.is_empty());
    drop(server);
    s.env.teardown().await;
}

#[tokio::test]
async fn bad_gzip_is_400() {
    let s = Setup::new().await;
    let server = serve(s.receiver(ReceiverLimits::default())).await;
    let good = gzip(&ndjson(100, Utc::now(), "g"), 6);
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let truncated = good[..good.len() - 20].to_vec();
    for body in [b"{\"not\":\"gzip\"}\n".to_vec(), corrupt, truncated] {
        let resp = post(&s.url(&server), bearer(&s.secret), body).await;
        assert_eq!(resp.status(), 400);
        assert_eq!(json(resp).await["error"], "push.bad_body");
    }
    assert_eq!(s.rows().await, 0);
    assert!(s.staged().await.is_empty());
    drop(server);
    s.env.teardown().await;
}

#[tokio::test]
async fn bomb_and_oversized_body_are_413_and_store_nothing() {
    let s = Setup::new().await;
    let limits = ReceiverLimits {
        max_ndjson_bytes: 1 << 20,
        max_body_bytes: 256 << 10,
        ..ReceiverLimits::default()
    };
    let server = serve(s.receiver(limits)).await;
    // 64 MiB of one repeated line compresses to ~64 KiB: far over the decompressed limit.
    let line = ndjson(1, Utc::now(), "b");
    let bomb = {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        for _ in 0..(64 << 20) / line.len() {
            enc.write_all(&line).unwrap();
        }
        enc.finish().unwrap()
    };
    assert!(bomb.len() < limits.max_body_bytes as usize);
    let resp = post(&s.url(&server), bearer(&s.secret), bomb).await;
    assert_eq!(resp.status(), 413);
    assert!(resp.headers().contains_key("retry-after"));
    // A body over the compressed limit: refused by its Content-Length.
    let noise: Vec<u8> = (0..(300u32 << 10))
        .map(|i| (i * 7919 % 251) as u8)
        .collect();
    let resp = post(&s.url(&server), bearer(&s.secret), gzip(&noise, 0)).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(s.rows().await, 0);
    assert!(s.staged().await.is_empty());
    drop(server);
    s.env.teardown().await;
}

#[tokio::test]
async fn validation_upload_is_recorded_not_archived() {
    let s = Setup::new().await;
    let server = serve(s.receiver(ReceiverLimits::default())).await;
    let resp = post(
        &s.url(&server),
        bearer(&s.secret),
        gzip(br#"{"content":"tests"}"#, 6),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["validation"], true);
    let validated: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT validated_at FROM push_destinations WHERE id = $1")
            .bind(s.destination)
            .fetch_one(&s.env.app.pool)
            .await
            .unwrap();
    assert!(validated.is_some());
    assert_eq!(s.rows().await, 0);
    assert!(s.staged().await.is_empty());
    drop(server);
    s.env.teardown().await;
}

/// A pool whose server is gone: every query fails as Postgres down does.
fn dead_pool() -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap()
}

#[tokio::test]
async fn postgres_down_is_503_and_nothing_acknowledged() {
    let s = Setup::new().await;
    let server = serve(s.receiver_with(
        dead_pool(),
        s.env.app.store.clone(),
        ReceiverLimits::default(),
    ))
    .await;
    let body = gzip(&ndjson(20, Utc::now(), "p"), 6);
    let resp = post(&s.url(&server), bearer(&s.secret), body.clone()).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(s.rows().await, 0);
    assert!(s.staged().await.is_empty());

    // The commit itself fails (after staging): still no acknowledgement, no row.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'simulated commit failure'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON push_batches FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&s.env.app.pool)
    .await
    .unwrap();
    let live = serve(s.receiver(ReceiverLimits::default())).await;
    let resp = post(&s.url(&live), bearer(&s.secret), body.clone()).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    assert_eq!(s.rows().await, 0);
    assert!(
        s.staged().await.is_empty(),
        "an unrecorded batch is not left staged"
    );

    // Recovered: the retry is accepted once.
    sqlx::raw_sql("DROP TRIGGER refuse ON push_batches")
        .execute(&s.env.app.pool)
        .await
        .unwrap();
    let resp = post(&s.url(&live), bearer(&s.secret), body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(s.rows().await, 1);
    drop((server, live));
    s.env.teardown().await;
}

#[tokio::test]
async fn garage_down_is_503_then_accepted_after_recovery() {
    let s = Setup::new().await;
    let mut src = s.env.src.clone();
    src.set(S3Config::ENDPOINT, "http://127.0.0.1:1");
    src.set(S3Config::TIMEOUT_MS, "2000");
    let dead_store = ObjectStore::connect(&S3Config::from_source(&src).unwrap()).await;
    let down = serve(s.receiver_with(
        s.env.app.pool.clone(),
        dead_store,
        ReceiverLimits::default(),
    ))
    .await;
    let body = gzip(&ndjson(30, Utc::now(), "s"), 6);
    let resp = post(&s.url(&down), bearer(&s.secret), body.clone()).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(s.rows().await, 0);

    let up = serve(s.receiver(ReceiverLimits::default())).await;
    let resp = post(&s.url(&up), bearer(&s.secret), body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["duplicate"], false);
    assert_eq!(s.rows().await, 1);
    drop((down, up));
    s.env.teardown().await;
}

#[tokio::test]
async fn full_receiver_is_429_with_retry_after() {
    let s = Setup::new().await;
    let limits = ReceiverLimits {
        max_in_flight_per_destination: 1,
        ..ReceiverLimits::default()
    };
    let receiver = s.receiver(limits);
    let server = serve(receiver.clone()).await;
    // Batch A streams slowly: its body stays open until the test sends the rest.
    let plain = ndjson(200, Utc::now(), "c");
    let body = gzip(&plain, 6);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let half = body.len() / 2;
    tx.send(Ok(body[..half].to_vec())).await.unwrap();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let a = tokio::spawn({
        let url = s.url(&server);
        let secret = s.secret.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(secret)
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .expect("batch A sent")
        }
    });
    // Once A holds the destination's only permit, others are told to come back later.
    // (Probing before A is admitted would race A for the permit.)
    wait_for("batch A to be admitted", Duration::from_secs(30), || {
        let n = receiver.in_flight();
        async move { (n == 1).then_some(()) }
    })
    .await;
    let validation = gzip(br#"{"content":"tests"}"#, 6);
    let busy = post(&s.url(&server), bearer(&s.secret), validation).await;
    assert_eq!(busy.status(), 429);
    assert!(busy.headers().contains_key("retry-after"));
    tx.send(Ok(body[half..].to_vec())).await.unwrap();
    drop(tx);
    let resp = a.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(s.rows().await, 1);
    drop(server);
    s.env.teardown().await;
}

#[tokio::test]
async fn https_push_with_a_configured_certificate() {
    let s = Setup::new().await;
    let (server, port, cert) = serve_tls(s.receiver(ReceiverLimits::default())).await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let resp = client
        .post(s.url(&server))
        .bearer_auth(&s.secret)
        .body(gzip(&ndjson(40, Utc::now(), "t"), 6))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(resp.status(), 200);
    assert_eq!(s.rows().await, 1);
    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/push/{}", s.destination))
        .bearer_auth(&s.secret)
        .body(gzip(&ndjson(40, Utc::now(), "u"), 6))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    assert_eq!(s.rows().await, 1);
    drop(server);
    s.env.teardown().await;
}

#[tokio::test]
async fn concurrent_redeliveries_leave_one_row_and_one_object() {
    let s = Setup::new().await;
    let limits = ReceiverLimits {
        max_in_flight: 16,
        max_in_flight_per_destination: 16,
        ..ReceiverLimits::default()
    };
    let server = serve(s.receiver(limits)).await;
    let body = gzip(&ndjson(300, Utc::now(), "r"), 6);
    let url = s.url(&server);
    let sends = (0..8).map(|_| post(&url, bearer(&s.secret), body.clone()));
    let answers = futures::future::join_all(sends).await;
    let mut ids = Vec::new();
    for resp in answers {
        assert_eq!(resp.status(), 200);
        ids.push(json(resp).await["batch_id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every delivery names the one batch: {ids:?}");
    assert_eq!(s.rows().await, 1);
    // Losers of the race delete what they staged: one object, the row's.
    let key: String = sqlx::query_scalar("SELECT staging_key FROM push_batches")
        .fetch_one(&s.env.app.pool)
        .await
        .unwrap();
    assert_eq!(s.staged().await, vec![key]);
    drop(server);
    s.env.teardown().await;
}

#[tokio::test]
async fn stalled_body_is_408_and_frees_its_permit() {
    let s = Setup::new().await;
    let limits = ReceiverLimits {
        max_in_flight_per_destination: 1,
        body_idle: Duration::from_secs(1),
        ..ReceiverLimits::default()
    };
    let server = serve(s.receiver(limits)).await;
    let body = gzip(&ndjson(100, Utc::now(), "z"), 6);
    // Half a body, then nothing: the sender stays connected but silent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(body[..body.len() / 2].to_vec())).await.unwrap();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let resp = reqwest::Client::new()
        .post(s.url(&server))
        .bearer_auth(&s.secret)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("an answer while the body is still open");
    assert_eq!(resp.status(), 408);
    assert_eq!(s.rows().await, 0);
    // The destination's only permit is free again: the full batch is accepted.
    let resp = post(&s.url(&server), bearer(&s.secret), body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(s.rows().await, 1);
    drop(tx);
    drop(server);
    s.env.teardown().await;
}

#[tokio::test]
async fn push_and_hybrid_zones_are_not_planned_for_logpull() {
    let env = TestEnv::new().await;
    let now = Utc::now();
    let mut zones = Vec::new();
    use rainlogs_archive::catalog::zone::{set_mode, ZoneMode};
    for mode in [ZoneMode::Pull, ZoneMode::Push, ZoneMode::Hybrid] {
        let zone = env.insert_zone(60, now - TimeDelta::minutes(10)).await;
        let old = set_mode(&env.app.pool, &zone.to_string(), mode, "test")
            .await
            .unwrap();
        assert_eq!(old, ZoneMode::Pull, "zones start as pull zones");
        zones.push((mode.as_str(), zone));
        // The planner refuses the zone itself, not only the scheduler's zone list.
        let policy = rainlogs_archive::ledger::PlanPolicy::default();
        let planned = rainlogs_archive::ledger::plan_zone(&env.app.pool, zone, now, &policy)
            .await
            .unwrap();
        assert_eq!(planned > 0, mode == ZoneMode::Pull, "{mode}");
    }
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE operation = 'zone.mode'")
            .fetch_one(&env.app.pool)
            .await
            .unwrap();
    assert_eq!(audited, 3);
    rainlogs_dispatcher::reconcile::plan_and_enqueue(&env.app, now)
        .await
        .unwrap();
    for (mode, zone) in zones {
        let windows: i64 = sqlx::query_scalar("SELECT count(*) FROM windows WHERE zone_id = $1")
            .bind(zone)
            .fetch_one(&env.app.pool)
            .await
            .unwrap();
        assert_eq!(
            windows > 0,
            mode == "pull",
            "{mode} zone: {windows} windows"
        );
    }
    env.teardown().await;
}

/// The receiver over HTTPS with the test certificate, on an ephemeral port.
async fn serve_tls(receiver: Receiver) -> (Server, u16, std::path::PathBuf) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/receiver/tests/tls");
    let config = rainlogs_receiver::tls::server_config(&dir.join("cert.pem"), &dir.join("key.pem"))
        .expect("test certificate loads");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server {
        base: format!("https://localhost:{port}"),
        task: tokio::spawn(async move {
            let _ = rainlogs_receiver::tls::serve_tls(listener, receiver, config).await;
        }),
    };
    (server, port, dir.join("cert.pem"))
}

/// Runs docs/tools/logpush_client.py (a client written from Cloudflare's documentation
/// alone, standard-library Python) with `args`; returns its exit code and answers.
async fn independent_client(args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tools/logpush_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .await
        .expect("python3 runs");
    let answers = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON answer per line"))
        .collect();
    (out.status.code().unwrap_or(-1), answers)
}

#[tokio::test]
async fn a_client_written_from_cloudflares_documentation_pushes_to_the_receiver() {
    let s = Setup::new().await;
    let (server, _port, ca) = serve_tls(s.receiver(ReceiverLimits::default())).await;
    // The destination exactly as an operator gives it to a Logpush job: the secret in a
    // header_ parameter, and another parameter the client must leave in the URL.
    let destination = format!(
        "{}?header_Authorization=Bearer%20{}&tags=dataset:http_requests",
        s.url(&server),
        s.secret
    );
    let ca = ca.to_string_lossy().into_owned();
    let (code, answers) =
        independent_client(&["--destination", &destination, "--cafile", &ca, "--validate"]).await;
    assert_eq!(code, 0, "{answers:?}");
    assert_eq!(answers[0]["status"], 200);
    let validated: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT validated_at FROM push_destinations WHERE id = $1")
            .bind(s.destination)
            .fetch_one(&s.env.app.pool)
            .await
            .unwrap();
    assert!(validated.is_some(), "the validation upload is recorded");
    assert_eq!(s.rows().await, 0, "and not archived");

    let file = std::env::temp_dir().join(format!("rainlogs-client-{}.ndjson", s.env.id));
    std::fs::write(&file, ndjson(250, Utc::now() - TimeDelta::minutes(2), "i")).unwrap();
    let file_arg = file.to_string_lossy().into_owned();
    let (code, answers) =
        independent_client(&["--destination", &destination, "--cafile", &ca, &file_arg]).await;
    assert_eq!(code, 0, "{answers:?}");
    let answer: serde_json::Value =
        serde_json::from_str(answers[0]["answer"].as_str().unwrap()).unwrap();
    assert_eq!(answer["records"], 250);
    assert_eq!(s.rows().await, 1);

    // A wrong secret is final (401, no retries) and stores nothing.
    let wrong = destination.replace(&s.secret, "0123");
    let (code, answers) =
        independent_client(&["--destination", &wrong, "--cafile", &ca, &file_arg]).await;
    assert_eq!((code, answers[0]["status"].as_u64()), (1, Some(401)));
    assert_eq!(s.rows().await, 1);
    let _ = std::fs::remove_file(&file);
    drop(server);
    s.env.teardown().await;
}

/// `GET /healthz` (the Kubernetes readiness probe, infra/k8s/receiver.yaml) says whether
/// a batch could be acknowledged now: 200 with Postgres answering, 503 naming Postgres
/// without it — and it needs no secret.
#[tokio::test]
async fn healthz_is_ok_only_while_postgres_answers() {
    let s = Setup::new().await;
    let live = serve(s.receiver(ReceiverLimits::default())).await;
    let resp = reqwest::get(format!("{}/healthz", live.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok\n");

    let down = serve(s.receiver_with(
        dead_pool(),
        s.env.app.store.clone(),
        ReceiverLimits::default(),
    ))
    .await;
    let resp = reqwest::get(format!("{}/healthz", down.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.unwrap().starts_with("postgres:"));
    drop((live, down));
    s.env.teardown().await;
}
