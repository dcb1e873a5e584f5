//! The simulator's Logpush side over real HTTP: the jobs API (Cloudflare's envelope,
//! limits, authentication), the validation upload at creation and when enabling, and
//! the pusher against a small recording destination — batches are exactly the
//! generator's records, cut by the job's limits, delivered once each; faults duplicate,
//! cut, slow down or mis-authenticate deliveries; retries give up after their bound and
//! the dropped records are reported; job status follows.
//!
//! The push clock is manual: a test moves it and waits until what became due has been
//! delivered (`settled`), never on wall time.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use rainlogs_logpull_sim::{
    Generator, PushClock, PushConfig, PushFault, PushFaultRule, Selection, SimConfig, Simulator,
    TimestampFormat, ZoneVolume, DEFAULT_FIELDS,
};
use serde_json::{json, Value};

const TOKEN: &str = "push-sim-token";
const ZONE: &str = "0123456789abcdef0123456789abcdef";
const SECRET: &str = "the-destination-secret";

/// What the destination received: (authorization header, decompressed body), and how
/// it answers.
#[derive(Default)]
struct Inbox {
    posts: Vec<(Option<String>, Vec<u8>)>,
    /// Requests whose body could not be read to its end (a reset mid-body).
    broken: u64,
    /// Answer this status to everything, when set.
    status: Option<u16>,
}

#[derive(Clone, Default)]
struct Destination(Arc<Mutex<Inbox>>);

impl Destination {
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/push/{id}", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.0.lock().unwrap()
    }

    /// The NDJSON batches received with the right secret (validation uploads aside).
    fn batches(&self) -> Vec<Vec<u8>> {
        self.inbox()
            .posts
            .iter()
            .filter(|(auth, body)| {
                auth.as_deref() == Some(&format!("Bearer {SECRET}"))
                    && body != br#"{"content":"tests"}"#
            })
            .map(|(_, b)| b.clone())
            .collect()
    }
}

async fn receive(
    State(d): State<Destination>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> StatusCode {
    let Ok(body) = body else {
        d.inbox().broken += 1;
        return StatusCode::BAD_REQUEST;
    };
    assert_eq!(headers["content-encoding"], "gzip");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut plain)
        .expect("a complete gzip body");
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut inbox = d.inbox();
    inbox.posts.push((auth.clone(), plain));
    if let Some(s) = inbox.status {
        return StatusCode::from_u16(s).unwrap();
    }
    if auth.as_deref() == Some(&format!("Bearer {SECRET}")) {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// 2026-12-01T10:00:00Z: the manual push clock's start.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

const VOLUME: ZoneVolume = ZoneVolume {
    records_per_minute: 3000,
    empty_ratio: 0.0,
    late_ratio: 0.0,
    late_max_seconds: 0,
};

async fn simulator(push: PushConfig) -> Simulator {
    Simulator::start_local(SimConfig {
        seed: 42,
        tokens: vec![TOKEN.into()],
        default_volume: VOLUME,
        push: PushConfig {
            clock: PushClock::Manual { start: t0() },
            retry_base: Duration::from_millis(10),
            retry_cap: Duration::from_millis(40),
            give_up_after: Duration::from_millis(300),
            ..push
        },
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn jobs_url(sim: &Simulator) -> String {
    format!("{}/client/v4/zones/{ZONE}/logpush/jobs", sim.base_url())
}

fn conf(addr: SocketAddr) -> String {
    format!("http://{addr}/push/d1?header_Authorization=Bearer%20{SECRET}")
}

async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn create(sim: &Simulator, body: Value) -> (u16, Value) {
    call(reqwest::Method::POST, &jobs_url(sim), Some(body)).await
}

/// A running destination, a simulator, and an enabled job of 30-second intervals
/// pushing to it (`max_upload_records` 1000 unless `records` is `None`); the job's id.
async fn pushing(records: Option<u64>) -> (Destination, Simulator, u64) {
    let d = Destination::default();
    let addr = d.start().await;
    let sim = simulator(PushConfig::default()).await;
    let mut body = json!({"dataset": "http_requests", "enabled": true,
                          "destination_conf": conf(addr), "max_upload_interval_seconds": 30});
    if let Some(n) = records {
        body["max_upload_records"] = json!(n);
    }
    let (status, created) = create(&sim, body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["result"]["id"].as_u64().unwrap();
    (d, sim, id)
}

/// The generator's NDJSON lines for `[from, to)` with the default fields, unixnano.
fn expected(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let sel = Selection {
        start_ns: from.timestamp_nanos_opt().unwrap(),
        end_ns: to.timestamp_nanos_opt().unwrap(),
        fields: DEFAULT_FIELDS.to_vec(),
        timestamps: TimestampFormat::UnixNano,
        count: None,
        sample: None,
        by_received: false,
    };
    lines(&Generator::new(42).window_body(ZONE, VOLUME, &sel))
}

fn lines(ndjson: &[u8]) -> Vec<String> {
    String::from_utf8(ndjson.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn jobs_api_validates_like_cloudflare_and_refuses_a_destination_that_fails_validation() {
    let d = Destination::default();
    let addr = d.start().await;
    let sim = simulator(PushConfig::default()).await;

    // Without the zone's token: Cloudflare's authentication error.
    let resp = reqwest::Client::new()
        .get(jobs_url(&sim))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Limits out of Cloudflare's ranges are refused, naming the field.
    for (field, value) in [
        ("max_upload_bytes", 1_000),
        ("max_upload_records", 999),
        ("max_upload_interval_seconds", 301),
    ] {
        let (status, body) = create(
            &sim,
            json!({"dataset": "http_requests", "destination_conf": conf(addr), field: value}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["success"], false);
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(field),
            "{body}"
        );
    }
    assert!(
        d.inbox().posts.is_empty(),
        "nothing invalid reached the destination"
    );

    // A destination that refuses the validation upload: error 1002, no job.
    let (status, body) = create(
        &sim,
        json!({"dataset": "http_requests", "enabled": true,
               "destination_conf": format!("http://{addr}/push/d1?header_Authorization=Bearer%20wrong")}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["code"], 1002, "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("error validating destination"));
    let (_, list) = call(reqwest::Method::GET, &jobs_url(&sim), None).await;
    assert_eq!(list["result"], json!([]));

    // A good one: the validation upload is the gzip of {"content":"tests"} with the
    // header_* parameters as headers; the job comes back in Cloudflare's envelope.
    let (status, body) = create(
        &sim,
        json!({"dataset": "http_requests", "name": "rainlogs-http-requests", "enabled": false,
               "destination_conf": conf(addr), "max_upload_records": 1000,
               "output_options": {"field_names": ["RayID", "EdgeEndTimestamp"], "timestamp_format": "rfc3339"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let job = &body["result"];
    assert_eq!(
        d.inbox().posts.last().cloned(),
        Some((
            Some(format!("Bearer {SECRET}")),
            br#"{"content":"tests"}"#.to_vec()
        ))
    );
    assert_eq!(job["enabled"], false);
    assert_eq!(job["max_upload_records"], 1000);
    assert_eq!(job["last_complete"], Value::Null);
    let id = job["id"].as_u64().unwrap();
    let one = format!("{}/{id}", jobs_url(&sim));
    let (status, got) = call(reqwest::Method::GET, &one, None).await;
    assert_eq!((status, &got["result"]), (200, job));

    // Update: enabling validates again; a bad limit is refused and changes nothing.
    let (status, _) = call(
        reqwest::Method::PUT,
        &one,
        Some(json!({"max_upload_records": 5})),
    )
    .await;
    assert_eq!(status, 400);
    let validations = d.inbox().posts.len();
    let (status, upd) = call(reqwest::Method::PUT, &one, Some(json!({"enabled": true}))).await;
    assert_eq!((status, &upd["result"]["enabled"]), (200, &json!(true)));
    assert_eq!(
        d.inbox().posts.len(),
        validations + 1,
        "enabling re-validates"
    );

    // Delete, then it is gone (404 in the envelope).
    let (status, del) = call(reqwest::Method::DELETE, &one, None).await;
    assert_eq!((status, &del["result"]["id"]), (200, &json!(id)));
    let (status, gone) = call(reqwest::Method::GET, &one, None).await;
    assert_eq!((status, gone["success"].clone()), (404, json!(false)));
}

#[tokio::test]
async fn the_pusher_delivers_each_intervals_records_once_split_by_the_jobs_limits() {
    let d = Destination::default();
    let addr = d.start().await;
    let sim = simulator(PushConfig::default()).await;
    let (status, body) = create(
        &sim,
        json!({"dataset": "http_requests", "enabled": true, "destination_conf": conf(addr),
               "max_upload_records": 1000, "max_upload_bytes": 5_000_000,
               "max_upload_interval_seconds": 30}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["result"]["id"].as_u64().unwrap();

    // Nothing is due before the first interval ends.
    sim.logpush().advance(Duration::from_secs(29)).unwrap();
    sim.logpush().settled().await;
    assert!(d.batches().is_empty());

    // Four intervals of 30 s at 3000 records a minute: 1500 records each, two batches.
    sim.logpush().advance(Duration::from_secs(91)).unwrap();
    sim.logpush().settled().await;
    let batches = d.batches();
    assert_eq!(batches.len(), 8);
    assert!(batches.iter().all(|b| lines(b).len() <= 1000));
    let got: Vec<String> = batches.iter().flat_map(|b| lines(b)).collect();
    assert_eq!(got, expected(t0(), t0() + chrono::TimeDelta::seconds(120)));

    let stats = &sim.logpush().stats()[&id];
    assert_eq!(
        (stats.batches_delivered, stats.records_delivered),
        (8, 6000)
    );
    assert_eq!((stats.batches_dropped, stats.failed_attempts), (0, 0));
    let job = sim.logpush().job(ZONE, id).unwrap();
    assert_eq!(
        job.last_complete,
        Some(t0() + chrono::TimeDelta::seconds(120))
    );
    assert_eq!((job.last_error, job.error_message), (None, None));

    // Disabled: nothing more; enabled again: from now on (no backfill).
    let one = format!("{}/{id}", jobs_url(&sim));
    call(reqwest::Method::PUT, &one, Some(json!({"enabled": false}))).await;
    sim.logpush().advance(Duration::from_secs(60)).unwrap();
    sim.logpush().settled().await;
    assert_eq!(d.batches().len(), 8);
    call(reqwest::Method::PUT, &one, Some(json!({"enabled": true}))).await;
    sim.logpush().advance(Duration::from_secs(30)).unwrap();
    sim.logpush().settled().await;
    let later: Vec<String> = d.batches()[8..].iter().flat_map(|b| lines(b)).collect();
    let resumed = t0() + chrono::TimeDelta::seconds(180);
    assert_eq!(
        later,
        expected(resumed, resumed + chrono::TimeDelta::seconds(30))
    );
}

#[tokio::test]
async fn faults_duplicate_cut_and_slow_deliveries_and_every_record_still_arrives() {
    let (d, sim, id) = pushing(Some(1000)).await;
    let faults = sim.logpush().faults();
    faults.add(PushFaultRule::job(id, PushFault::Duplicate).times(1));
    faults.add(PushFaultRule::job(id, PushFault::ResetMidBody { after_bytes: 4096 }).times(2));
    faults.add(PushFaultRule::job(id, PushFault::SlowBody { chunk_delay_ms: 5 }).times(1));
    sim.logpush().advance(Duration::from_secs(60)).unwrap();
    sim.logpush().settled().await;

    let batches = d.batches();
    assert_eq!(batches.len(), 5, "four batches, one of them twice");
    assert_eq!(batches[0], batches[1], "the duplicate is the same batch");
    let mut unique: Vec<String> = batches[1..].iter().flat_map(|b| lines(b)).collect();
    unique.sort();
    let mut want = expected(t0(), t0() + chrono::TimeDelta::seconds(60));
    want.sort();
    assert_eq!(unique, want);
    assert_eq!(
        d.inbox().broken,
        2,
        "two bodies were cut mid-way and sent again"
    );
    let stats = &sim.logpush().stats()[&id];
    assert_eq!(
        (
            stats.duplicates_sent,
            stats.failed_attempts,
            stats.batches_dropped
        ),
        (1, 2, 0)
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_every_attempt_until_the_batch_is_dropped_and_reported() {
    let (d, sim, id) = pushing(None).await;
    sim.logpush()
        .faults()
        .add(PushFaultRule::job(id, PushFault::WrongSecret));
    sim.logpush().advance(Duration::from_secs(30)).unwrap();
    sim.logpush().settled().await;

    assert!(d.batches().is_empty());
    let attempts = d.inbox().posts.len() - 1;
    assert!(
        attempts >= 2,
        "retried before giving up ({attempts} attempts)"
    );
    let stats = sim.logpush().stats()[&id].clone();
    assert_eq!(stats.batches_dropped, 1);
    assert_eq!(
        stats.records_dropped, 1500,
        "the interval's records are lost"
    );
    assert!(
        stats.dropped[0].error.contains("401"),
        "{:?}",
        stats.dropped
    );
    let job = sim.logpush().job(ZONE, id).unwrap();
    assert!(job.error_message.as_deref().unwrap().contains("401"));
    assert!(job.last_error.is_some());
    assert_eq!(job.last_complete, None, "nothing was completed");

    // The fault is cleared: the next interval arrives and the error is cleared too.
    sim.logpush().faults().clear();
    sim.logpush().advance(Duration::from_secs(30)).unwrap();
    sim.logpush().settled().await;
    let job = sim.logpush().job(ZONE, id).unwrap();
    assert_eq!((job.last_error, job.error_message), (None, None));
    assert_eq!(
        job.last_complete,
        Some(t0() + chrono::TimeDelta::seconds(60))
    );
    assert_eq!(d.batches().len(), 1);
}

#[tokio::test]
async fn a_destination_that_keeps_failing_loses_batches_after_the_retry_bound() {
    let (d, sim, id) = pushing(Some(1000)).await;
    d.inbox().status = Some(503);
    sim.logpush().advance(Duration::from_secs(30)).unwrap();
    sim.logpush().settled().await;
    let stats = sim.logpush().stats()[&id].clone();
    assert_eq!((stats.batches_dropped, stats.records_dropped), (2, 1500));
    let dropped: u64 = stats.dropped.iter().map(|b| b.records).sum();
    assert_eq!(dropped, 1500);
    assert!(stats.dropped.iter().all(|b| b.error.contains("503")));

    // Through the HTTP steering endpoints, as a process would be driven.
    d.inbox().status = None;
    let clock = format!("{}/__sim/logpush/clock", sim.base_url());
    let resp = reqwest::Client::new()
        .post(&clock)
        .json(&json!({"advance_secs": 30}))
        .send()
        .await
        .unwrap();
    let now: Value = resp.json().await.unwrap();
    assert_eq!(now["now"], "2026-12-01T10:01:00Z");
    let stats: Value = reqwest::get(format!("{}/__sim/stats", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["logpush"][id.to_string()]["batches_delivered"], 2);
}

#[tokio::test]
async fn a_huge_batch_takes_the_following_records_and_none_is_delivered_twice() {
    let (d, sim, id) = pushing(Some(1000)).await;
    // 8 MB of NDJSON in one batch: past the record limit and past the interval's end.
    sim.logpush()
        .faults()
        .add(PushFaultRule::job(id, PushFault::HugeBatch { bytes: 8_000_000 }).times(1));
    sim.logpush().advance(Duration::from_secs(30)).unwrap();
    sim.logpush().settled().await;
    let batches = d.batches();
    assert_eq!(
        batches.len(),
        1,
        "the huge batch covers the interval and more"
    );
    assert!(batches[0].len() >= 8_000_000);
    let stats = sim.logpush().stats()[&id].clone();
    let until = DateTime::from_timestamp_nanos(stats.cursor_ns);
    assert!(until > t0() + chrono::TimeDelta::seconds(30), "{until}");
    // The job goes on from where the huge batch ended once the clock passes it.
    let ahead = (until - t0()).num_seconds() as u64;
    sim.logpush().advance(Duration::from_secs(ahead)).unwrap();
    sim.logpush().settled().await;
    let stats = sim.logpush().stats()[&id].clone();
    let end = DateTime::from_timestamp_nanos(stats.cursor_ns);
    let got: Vec<String> = d.batches().iter().flat_map(|b| lines(b)).collect();
    assert_eq!(got, expected(t0(), end), "every record once, in order");
    assert!(d.batches()[1..].iter().all(|b| lines(b).len() <= 1000));
}

/// The benchmark's batch: 1 GB of NDJSON pushed as one gzip body to a sink that counts
/// it, with the simulator's memory staying at a few chunks. Slow in a debug build, so
/// run on demand: `cargo test --release -p rainlogs-logpull-sim --test logpush -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn a_one_gigabyte_batch_streams_in_bounded_memory() {
    async fn sink(body: axum::body::Body) -> StatusCode {
        use futures::StreamExt;
        let mut stream = body.into_data_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => n += c.len() as u64,
                Err(_) => return StatusCode::BAD_REQUEST,
            }
        }
        assert!(n > 0);
        StatusCode::OK
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = Router::new().route("/push/{id}", post(|body: axum::body::Body| sink(body)));
        let _ = axum::serve(listener, app).await;
    });
    let sim = simulator(PushConfig::default()).await;
    let (status, body) = create(
        &sim,
        json!({"dataset": "http_requests", "enabled": true, "destination_conf": conf(addr),
               "max_upload_interval_seconds": 30}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["result"]["id"].as_u64().unwrap();
    sim.logpush().faults().add(
        PushFaultRule::job(
            id,
            PushFault::HugeBatch {
                bytes: 1_000_000_000,
            },
        )
        .times(1),
    );
    let started = std::time::Instant::now();
    sim.logpush().advance(Duration::from_secs(30)).unwrap();
    sim.logpush().settled().await;
    let secs = started.elapsed().as_secs_f64();
    let stats = sim.logpush().stats()[&id].clone();
    assert_eq!(
        (stats.batches_delivered, stats.batches_dropped),
        (1, 0),
        "{stats:?}"
    );
    assert!(stats.bytes_delivered >= 1_000_000_000);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?")
        .to_owned();
    eprintln!(
        "1 GB batch: {} records, {} B NDJSON in {secs:.1} s ({:.0} MB/s); {hwm}",
        stats.records_delivered,
        stats.bytes_delivered,
        stats.bytes_delivered as f64 / 1e6 / secs
    );
    assert!(
        hwm.split_whitespace()
            .nth(1)
            .and_then(|kb| kb.parse::<u64>().ok())
            .is_none_or(|kb| kb < 256 * 1024),
        "{hwm}"
    );
}
