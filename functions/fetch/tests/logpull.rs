//! The Logpull client against the in-process simulator: every parameter, every fault,
//! every validation rule, gzip and plain.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rainlogs_core::error::Classify;
use rainlogs_core::{ErrorClass, TaskError};
use rainlogs_fetch::logpull::{
    Credentials, LogpullClient, LogpullConfig, LogpullError, MalformedPolicy, RequestError,
    RetryPolicy, Timestamps, WindowRequest, WindowSummary, ZoneId,
};
use rainlogs_logpull_sim::{
    Fault, FaultRule, Field, Selection, SimConfig, Simulator, TimestampFormat, ZoneVolume,
    DEFAULT_FIELDS,
};
use sha2::{Digest, Sha256};

const ZONE: &str = "0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-token-0f9e8d";

fn zone() -> ZoneId {
    ZoneId::parse(ZONE).expect("zone id")
}

async fn sim_with(rpm: u64) -> Simulator {
    let config = SimConfig {
        seed: 42,
        default_volume: ZoneVolume {
            records_per_minute: rpm,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        },
        tokens: vec![TOKEN.to_owned()],
        api_keys: vec![("ops@example.com".to_owned(), "legacy-key-123".to_owned())],
        ..SimConfig::default()
    };
    Simulator::start_local(config)
        .await
        .expect("simulator starts")
}

fn config(sim: &Simulator) -> LogpullConfig {
    LogpullConfig {
        base_url: sim.base_url(),
        retry: RetryPolicy::none(),
        ..LogpullConfig::default()
    }
}

fn client(sim: &Simulator) -> LogpullClient {
    LogpullClient::new(config(sim), &Credentials::token(TOKEN)).expect("client")
}

/// A one-minute window that ended five minutes ago.
fn recent_window() -> (DateTime<Utc>, DateTime<Utc>) {
    let end = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc")
        - TimeDelta::minutes(5);
    (end - TimeDelta::minutes(1), end)
}

fn request() -> WindowRequest {
    let (start, end) = recent_window();
    WindowRequest::new(zone(), start, end)
}

async fn fetch(
    client: &LogpullClient,
    req: &WindowRequest,
) -> Result<(Vec<u8>, WindowSummary), LogpullError> {
    let mut out = Vec::new();
    let summary = client.fetch_into(req, &mut out).await?;
    Ok((out, summary))
}

/// What the simulator's generator produces for `req`, computed without HTTP.
fn expected(sim: &Simulator, req: &WindowRequest) -> Vec<u8> {
    let fields = match &req.fields {
        Some(names) => names
            .iter()
            .map(|n| Field::parse(n).expect("known field"))
            .collect(),
        None => DEFAULT_FIELDS.to_vec(),
    };
    let sel = Selection {
        start_ns: req.start.timestamp_nanos_opt().expect("ns"),
        end_ns: req.end.timestamp_nanos_opt().expect("ns"),
        fields,
        timestamps: match req.timestamps {
            Timestamps::UnixNano => TimestampFormat::UnixNano,
            Timestamps::Unix => TimestampFormat::Unix,
            Timestamps::Rfc3339 => TimestampFormat::Rfc3339,
        },
        count: req.count,
        sample: req.sample,
        by_received: false,
    };
    sim.generator().window_body(ZONE, sim.volume(ZONE), &sel)
}

fn all_fields() -> Vec<String> {
    Field::ALL.iter().map(|f| f.name().to_owned()).collect()
}

#[tokio::test]
async fn a_gzip_window_arrives_complete_counted_and_hashed() {
    let sim = sim_with(300).await;
    let req = request().fields(all_fields());
    let (out, s) = fetch(&client(&sim), &req).await.expect("window");
    let want = expected(&sim, &req);
    assert_eq!(out, want);
    assert!(s.gzip);
    assert_eq!(s.records, 300);
    assert_eq!(s.malformed_lines, 0);
    assert_eq!(s.raw_bytes, want.len() as u64);
    assert!(
        s.wire_bytes > 0 && s.wire_bytes < s.raw_bytes,
        "gzip: {} wire of {} raw",
        s.wire_bytes,
        s.raw_bytes
    );
    assert_eq!(s.sha256, <[u8; 32]>::from(Sha256::digest(&want)));
}

#[tokio::test]
async fn a_plain_window_gives_the_same_bytes_as_gzip() {
    let sim = sim_with(120).await;
    let req = request();
    let (gz, gz_sum) = fetch(&client(&sim), &req).await.expect("gzip");
    let plain_client = LogpullClient::new(
        LogpullConfig {
            gzip: false,
            ..config(&sim)
        },
        &Credentials::token(TOKEN),
    )
    .expect("client");
    let (plain, plain_sum) = fetch(&plain_client, &req).await.expect("plain");
    assert_eq!(gz, plain);
    assert!(!plain_sum.gzip);
    assert_eq!(plain_sum.wire_bytes, plain_sum.raw_bytes);
    assert_eq!(gz_sum.sha256, plain_sum.sha256);
}

#[tokio::test]
async fn the_same_query_gives_the_same_records_and_another_seed_does_not() {
    let sim = sim_with(100).await;
    let req = request().fields(all_fields());
    let (_, a) = fetch(&client(&sim), &req).await.expect("first");
    let (_, b) = fetch(&client(&sim), &req).await.expect("second");
    assert_eq!(a.sha256, b.sha256);
    let other = Simulator::start_local(SimConfig {
        seed: 43,
        default_volume: ZoneVolume {
            records_per_minute: 100,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        },
        tokens: vec![TOKEN.to_owned()],
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let (_, c) = fetch(&client(&other), &req).await.expect("other seed");
    assert_eq!(c.records, a.records);
    assert_ne!(c.sha256, a.sha256);
}

#[tokio::test]
async fn all_three_timestamp_formats_render_inside_the_window() {
    let sim = sim_with(60).await;
    let base = request().fields(["RayID", "EdgeStartTimestamp", "EdgeEndTimestamp"]);
    let (start, end) = (base.start, base.end);
    for ts in [Timestamps::UnixNano, Timestamps::Unix, Timestamps::Rfc3339] {
        let req = base.clone().timestamps(ts);
        let (out, s) = fetch(&client(&sim), &req).await.expect("window");
        assert_eq!(out, expected(&sim, &req), "{ts:?}");
        assert_eq!(s.records, 60);
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).expect("json");
            let t = &v["EdgeEndTimestamp"];
            let at = match ts {
                Timestamps::UnixNano => {
                    DateTime::from_timestamp_nanos(t.as_i64().expect("integer ns"))
                }
                Timestamps::Unix => {
                    DateTime::from_timestamp(t.as_i64().expect("integer s"), 0).expect("time")
                }
                Timestamps::Rfc3339 => DateTime::parse_from_rfc3339(t.as_str().expect("string"))
                    .expect("rfc3339")
                    .with_timezone(&Utc),
            };
            assert!(
                at >= start && at < end,
                "{ts:?}: {at} outside [{start}, {end})"
            );
        }
    }
}

#[tokio::test]
async fn records_carry_nested_objects_arrays_and_unicode_hosts() {
    let sim = sim_with(400).await;
    let (out, _) = fetch(&client(&sim), &request().fields(all_fields()))
        .await
        .expect("window");
    let (mut objects, mut arrays, mut unicode) = (0, 0, 0);
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).expect("json");
        objects += usize::from(v["RequestHeaders"].is_object() && v["Cookies"].is_object());
        arrays += usize::from(v["SecurityActions"].is_array() && v["BotTags"].is_array());
        unicode += usize::from(!v["ClientRequestHost"].as_str().expect("host").is_ascii());
        assert!(
            v["BotScore"].is_u64()
                && v["WAFAttackScore"].is_u64()
                && v["SecurityLevel"].is_string()
        );
    }
    assert_eq!((objects, arrays), (400, 400));
    // The zone's apex is chosen by its ID; this zone's is non-ASCII or, failing that, another zone's is.
    let other = "fedcba9876543210fedcba9876543210";
    let req = WindowRequest::new(
        ZoneId::parse(other).expect("zone"),
        request().start,
        request().end,
    )
    .fields(["ClientRequestHost"]);
    let (more, _) = fetch(&client(&sim), &req).await.expect("window");
    unicode += usize::from(!more.is_ascii());
    assert!(unicode > 0, "no unicode host in either zone");
}

#[tokio::test]
async fn count_and_sample_limit_the_records() {
    let sim = sim_with(500).await;
    let req = request().count(7);
    let (out, s) = fetch(&client(&sim), &req).await.expect("count");
    assert_eq!(s.records, 7);
    assert_eq!(out, expected(&sim, &req));
    let req = request().sample(0.1);
    let (out, s) = fetch(&client(&sim), &req).await.expect("sample");
    assert!(
        (20..100).contains(&s.records),
        "sample 0.1 of 500 gave {}",
        s.records
    );
    assert_eq!(out, expected(&sim, &req));
}

#[tokio::test]
async fn an_empty_window_is_complete_with_zero_records() {
    let sim = sim_with(0).await;
    let (out, s) = fetch(&client(&sim), &request()).await.expect("empty");
    assert!(out.is_empty());
    assert_eq!(s.records, 0);
    assert_eq!(s.sha256, <[u8; 32]>::from(Sha256::digest(b"")));
}

#[tokio::test]
async fn the_legacy_key_pair_authenticates_and_a_bad_token_is_permanent() {
    let sim = sim_with(10).await;
    let key = LogpullClient::new(
        config(&sim),
        &Credentials::api_key("ops@example.com", "legacy-key-123"),
    )
    .expect("client");
    assert_eq!(
        fetch(&key, &request()).await.expect("key pair").1.records,
        10
    );

    let bad = LogpullClient::new(config(&sim), &Credentials::token("wrong-secret-token"))
        .expect("client");
    let err = fetch(&bad, &request()).await.expect_err("bad token");
    assert!(
        matches!(&err, LogpullError::Forbidden { status: 403, reason, .. } if reason.contains("Authentication error")),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    let shown = format!("{err} {err:?}");
    let text = format!("{shown} {}", TaskError::from(err).message);
    assert!(!text.contains("wrong-secret-token"), "{text}");
}

#[tokio::test]
async fn a_revoked_token_fault_is_a_permanent_403() {
    let sim = sim_with(10).await;
    sim.faults()
        .add(FaultRule::zone(ZONE, Fault::BadToken).times(1));
    let err = fetch(&client(&sim), &request()).await.expect_err("403");
    assert!(matches!(err, LogpullError::Forbidden { .. }), "{err}");
    assert_eq!(
        fetch(&client(&sim), &request())
            .await
            .expect("fault spent")
            .1
            .records,
        10
    );
}

#[tokio::test]
async fn windows_breaking_cloudflare_rules_fail_before_any_request() {
    let sim = sim_with(10).await;
    let c = client(&sim);
    let now = Utc::now();
    let cases = [
        (now - TimeDelta::minutes(10), now - TimeDelta::minutes(10)),
        (
            now - TimeDelta::days(7) - TimeDelta::minutes(1),
            now - TimeDelta::days(7) + TimeDelta::minutes(1),
        ),
        (now - TimeDelta::minutes(70), now - TimeDelta::minutes(9)),
    ];
    for (start, end) in cases {
        let err = fetch(&c, &WindowRequest::new(zone(), start, end))
            .await
            .expect_err("invalid");
        assert!(matches!(err, LogpullError::InvalidRequest(_)), "{err}");
        assert_eq!(err.class(), ErrorClass::Permanent);
    }
    // Only too recent: not wrong, early. Retryable once the end is a minute old.
    let err = fetch(
        &c,
        &WindowRequest::new(
            zone(),
            now - TimeDelta::minutes(2),
            now - TimeDelta::seconds(30),
        ),
    )
    .await
    .expect_err("too recent");
    assert!(
        matches!(
            err,
            LogpullError::InvalidRequest(RequestError::TooLate { .. })
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Retryable);
    let hint = err.retry_after().expect("a delay");
    assert!(
        (Duration::from_secs(30)..=Duration::from_secs(40)).contains(&hint),
        "{hint:?}"
    );
    assert_eq!(TaskError::from(err).code, "logpull.too_recent");
    let err = fetch(&c, &request().count(0)).await.expect_err("count 0");
    assert!(matches!(
        err,
        LogpullError::InvalidRequest(RequestError::Count)
    ));
    let err = fetch(&c, &request().sample(2.0))
        .await
        .expect_err("sample 2");
    assert!(matches!(
        err,
        LogpullError::InvalidRequest(RequestError::Sample(_))
    ));
    assert_eq!(sim.received_requests(ZONE), 0, "nothing reached the server");
}

#[tokio::test]
async fn a_window_too_recent_for_cloudflares_clock_is_retryable_with_a_delay() {
    // Issue 11 item 2: a host a little ahead of Cloudflare's clock got 400 "too late"
    // for a window it thought a minute old, and the window failed for good.
    let sim = Simulator::start_local(SimConfig {
        tokens: vec![TOKEN.to_owned()],
        clock_lag: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let c = client(&sim);
    // Fine by our clock (ends 70 s ago), 40 s old by the simulated Cloudflare's.
    let end = Utc::now() - TimeDelta::seconds(70);
    let req = WindowRequest::new(zone(), end - TimeDelta::minutes(1), end);
    let err = fetch(&c, &req)
        .await
        .expect_err("too recent for Cloudflare");
    assert!(matches!(err, LogpullError::TooRecent { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    let task = TaskError::from(err);
    assert_eq!(task.code, "logpull.too_recent");
    assert_eq!(task.retry_after_ms, Some(65_000));
    assert_eq!(sim.received_requests(ZONE), 1);
}

#[tokio::test]
async fn cloudflare_400s_are_permanent_with_the_reason() {
    let sim = sim_with(10).await;
    let err = fetch(&client(&sim), &request().fields(["RayID", "NoSuchField"]))
        .await
        .expect_err("400");
    assert!(
        matches!(&err, LogpullError::BadRequest { reason, .. } if reason.contains("NoSuchField")),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(TaskError::from(err).code, "logpull.bad_request");
}

#[tokio::test]
async fn the_fields_endpoint_validates_a_configured_field_list() {
    let sim = sim_with(10).await;
    let c = client(&sim);
    let offered = c.fields(&zone()).await.expect("fields");
    assert!(offered.iter().any(|f| f == "ClientRequestHost"));
    assert_eq!(offered.len(), Field::ALL.len());
    c.validate_fields(&zone(), &["RayID".into(), "BotScore".into()])
        .await
        .expect("known fields");
    let err = c
        .validate_fields(&zone(), &["RayID".into(), "ClientIp".into()])
        .await
        .expect_err("unknown field");
    assert!(
        matches!(&err, LogpullError::UnknownField { field, .. } if field == "ClientIp"),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn the_retention_flag_can_be_read_and_set_and_is_enforced() {
    let sim = sim_with(10).await;
    let c = client(&sim);
    assert!(c.retention(&zone()).await.expect("get"));
    assert!(!c.set_retention(&zone(), false).await.expect("set"));
    assert!(!c.retention(&zone()).await.expect("get"));
    let err = fetch(&c, &request()).await.expect_err("retention off");
    assert!(
        matches!(&err, LogpullError::BadRequest { reason, .. } if reason.contains("retention")),
        "{err}"
    );
    assert!(c.set_retention(&zone(), true).await.expect("set"));
    assert_eq!(fetch(&c, &request()).await.expect("on again").1.records, 10);
}

#[tokio::test]
async fn a_429_surfaces_retry_after_for_the_dispatcher() {
    let sim = sim_with(10).await;
    sim.faults().add(FaultRule::zone(
        ZONE,
        Fault::RateLimited {
            retry_after_secs: 17,
        },
    ));
    let err = fetch(&client(&sim), &request()).await.expect_err("429");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(17)));
    assert_eq!(err.class(), ErrorClass::Retryable);
    let task = TaskError::from(err);
    assert_eq!(
        (task.code.as_str(), task.retry_after_ms),
        ("logpull.rate_limited", Some(17_000))
    );
}

#[tokio::test]
async fn a_429_within_the_retry_budget_is_waited_out_in_the_client() {
    let sim = sim_with(10).await;
    sim.faults().add(
        FaultRule::zone(
            ZONE,
            Fault::RateLimited {
                retry_after_secs: 1,
            },
        )
        .times(1),
    );
    let retrying = LogpullConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(10),
            max_wait: Duration::from_secs(5),
        },
        ..config(&sim)
    };
    let c = LogpullClient::new(retrying, &Credentials::token(TOKEN)).expect("client");
    assert_eq!(
        fetch(&c, &request()).await.expect("after retry").1.records,
        10
    );
    assert_eq!(sim.received_requests(ZONE), 2);
}

#[tokio::test]
async fn a_429_longer_than_the_client_may_wait_goes_back_to_the_caller() {
    let sim = sim_with(10).await;
    sim.faults().add(
        FaultRule::zone(
            ZONE,
            Fault::RateLimited {
                retry_after_secs: 600,
            },
        )
        .times(1),
    );
    let retrying = LogpullConfig {
        retry: RetryPolicy::default(),
        ..config(&sim)
    };
    let c = LogpullClient::new(retrying, &Credentials::token(TOKEN)).expect("client");
    let err = fetch(&c, &request()).await.expect_err("429");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(600)));
    assert_eq!(sim.received_requests(ZONE), 1);
}

#[tokio::test]
async fn server_errors_are_retryable_and_retried_within_the_budget() {
    let sim = sim_with(10).await;
    sim.faults()
        .add(FaultRule::zone(ZONE, Fault::ServerError { status: 503 }).times(1));
    let err = fetch(&client(&sim), &request()).await.expect_err("503");
    assert!(
        matches!(err, LogpullError::Server { status: 503, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Retryable);

    sim.faults()
        .add(FaultRule::zone(ZONE, Fault::ServerError { status: 502 }).times(2));
    let retrying = LogpullConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(10),
            max_wait: Duration::from_secs(1),
        },
        ..config(&sim)
    };
    let c = LogpullClient::new(retrying, &Credentials::token(TOKEN)).expect("client");
    assert_eq!(
        fetch(&c, &request())
            .await
            .expect("third attempt")
            .1
            .records,
        10
    );
    assert_eq!(sim.received_requests(ZONE), 4);
}

#[tokio::test]
async fn a_connection_reset_mid_body_is_retryable_never_complete() {
    let sim = sim_with(2000).await;
    for gzip in [true, false] {
        sim.faults().add(
            FaultRule::zone(
                ZONE,
                Fault::ResetMidBody {
                    after_bytes: 100_000,
                },
            )
            .times(1),
        );
        let c = LogpullClient::new(
            LogpullConfig {
                gzip,
                ..config(&sim)
            },
            &Credentials::token(TOKEN),
        )
        .expect("client");
        let err = fetch(&c, &request()).await.expect_err("reset");
        assert!(
            matches!(err, LogpullError::BodyInterrupted { .. }),
            "gzip={gzip}: {err}"
        );
        assert_eq!(err.class(), ErrorClass::Retryable);
    }
}

#[tokio::test]
async fn a_truncated_body_is_retryable_never_complete() {
    let sim = sim_with(2000).await;
    for gzip in [true, false] {
        sim.faults().add(
            FaultRule::zone(
                ZONE,
                Fault::Truncated {
                    after_bytes: 50_000,
                },
            )
            .times(1),
        );
        let c = LogpullClient::new(
            LogpullConfig {
                gzip,
                ..config(&sim)
            },
            &Credentials::token(TOKEN),
        )
        .expect("client");
        let err = fetch(&c, &request()).await.expect_err("truncated");
        assert!(
            matches!(err, LogpullError::Truncated { .. }),
            "gzip={gzip}: {err}"
        );
        assert_eq!(err.class(), ErrorClass::Retryable);
        assert_eq!(TaskError::from(err).code, "logpull.truncated");
    }
}

#[tokio::test]
async fn a_malformed_line_is_quarantined_by_default_and_counted() {
    let sim = sim_with(50).await;
    sim.faults()
        .add(FaultRule::zone(ZONE, Fault::MalformedLine { line: 3 }).times(1));
    let req = request();
    let (out, s) = fetch(&client(&sim), &req).await.expect("window completes");
    assert_eq!((s.records, s.malformed_lines), (49, 1));
    let first_two: usize = out
        .split_inclusive(|&b| b == b'\n')
        .take(2)
        .map(<[u8]>::len)
        .sum();
    assert_eq!(
        (s.malformed[0].line, s.malformed[0].offset),
        (3, first_two as u64)
    );
    // Kept verbatim: the payload is what was served, and its hash covers it.
    assert_eq!(
        out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(),
        50
    );
    assert_eq!(s.sha256, <[u8; 32]>::from(Sha256::digest(&out)));
}

#[tokio::test]
async fn a_malformed_line_fails_the_window_permanently_under_reject() {
    let sim = sim_with(50).await;
    sim.faults()
        .add(FaultRule::zone(ZONE, Fault::MalformedLine { line: 3 }).times(1));
    let c = LogpullClient::new(
        LogpullConfig {
            malformed: MalformedPolicy::Reject,
            ..config(&sim)
        },
        &Credentials::token(TOKEN),
    )
    .expect("client");
    let err = fetch(&c, &request()).await.expect_err("rejected");
    assert!(
        matches!(err, LogpullError::MalformedLine { line: 3, .. }),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn a_slow_first_byte_times_out_retryably_and_a_patient_client_gets_the_window() {
    let sim = sim_with(10).await;
    sim.faults()
        .add(FaultRule::zone(ZONE, Fault::SlowFirstByte { delay_ms: 5_000 }).times(1));
    let impatient = LogpullConfig {
        first_byte_timeout: Duration::from_millis(200),
        ..config(&sim)
    };
    let c = LogpullClient::new(impatient, &Credentials::token(TOKEN)).expect("client");
    let err = fetch(&c, &request()).await.expect_err("timeout");
    assert!(matches!(err, LogpullError::Timeout { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Retryable);

    sim.faults()
        .add(FaultRule::zone(ZONE, Fault::SlowFirstByte { delay_ms: 300 }).times(1));
    assert_eq!(
        fetch(&client(&sim), &request())
            .await
            .expect("patient")
            .1
            .records,
        10
    );
}

#[tokio::test]
async fn an_unreachable_api_is_retryable() {
    let sim = sim_with(10).await;
    let cfg = config(&sim);
    sim.shutdown().await.expect("shutdown");
    let c = LogpullClient::new(cfg, &Credentials::token(TOKEN)).expect("client");
    let err = fetch(&c, &request()).await.expect_err("unreachable");
    assert!(matches!(err, LogpullError::Unreachable { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Retryable);
}

#[tokio::test]
async fn sub_minute_windows_cover_the_minute_exactly() {
    let sim = sim_with(240).await;
    let whole = request();
    let (all, _) = fetch(&client(&sim), &whole).await.expect("minute");
    let mut parts = Vec::new();
    for q in 0..4 {
        let start = whole.start + TimeDelta::seconds(15 * q);
        let req = WindowRequest::new(zone(), start, start + TimeDelta::seconds(15));
        parts.extend(fetch(&client(&sim), &req).await.expect("quarter").0);
    }
    assert_eq!(all, parts);
}

#[tokio::test]
async fn the_simulator_finds_a_record_again_by_its_ray_id() {
    let sim = sim_with(30).await;
    let req = request().fields(["RayID", "ClientIP", "EdgeEndTimestamp"]);
    let (out, _) = fetch(&client(&sim), &req).await.expect("window");
    let line = out.split(|&b| b == b'\n').nth(4).expect("fifth line");
    let v: serde_json::Value = serde_json::from_slice(line).expect("json");
    let ray = v["RayID"].as_str().expect("ray id");
    let url = format!(
        "{}/client/v4/zones/{ZONE}/logs/rayids/{ray}?fields=RayID,ClientIP,EdgeEndTimestamp",
        sim.base_url()
    );
    let http = reqwest::Client::new();
    let resp = http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("rayids");
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.expect("body");
    assert_eq!(&body[..body.len() - 1], line);
    let missing = http
        .get(format!(
            "{}/client/v4/zones/{ZONE}/logs/rayids/00000000deadbeef",
            sim.base_url()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("rayids");
    assert_eq!(missing.status(), 404);
    let unauthorised = http.get(&url).send().await.expect("rayids");
    assert_eq!(unauthorised.status(), 403);
}

#[tokio::test]
async fn a_stalled_body_times_out_retryably() {
    let sim = sim_with(2000).await;
    sim.faults().add(
        FaultRule::zone(
            ZONE,
            Fault::StallMidBody {
                after_bytes: 50_000,
                stall_ms: 10_000,
            },
        )
        .times(1),
    );
    let impatient = LogpullConfig {
        idle_timeout: Duration::from_millis(300),
        ..config(&sim)
    };
    let c = LogpullClient::new(impatient, &Credentials::token(TOKEN)).expect("client");
    let err = fetch(&c, &request()).await.expect_err("stalled");
    assert!(
        matches!(
            err,
            LogpullError::Timeout {
                phase: "body data",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Retryable);
}
