//! The operator functions behind `rainlogs tenant …` and `rainlogs zone …` against real
//! Postgres and the kms: tenants and zones are added and listed, bad input is refused
//! with its reason, the Cloudflare token is stored only sealed and opens for its own
//! binding, pause/resume steer the scheduler, and coverage reports archived, empty,
//! failed, in-flight, missing and lost minute ranges; windows close to Logpull's 7-day
//! edge are an alert on the metrics endpoint.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rainlogs_archive::catalog::tenant::{self, TenantError};
use rainlogs_archive::catalog::zone::{self, NewZone, ZoneError};
use rainlogs_archive::coverage::Cover;
use rainlogs_archive::endpoint::ZoneEndpoint;
use rainlogs_archive::pipeline::CLOUDFLARE_TOKEN_PURPOSE;
use rainlogs_dispatcher::reconcile;
use rainlogs_integration_tests::{cloudflare_stand_in, TestEnv};
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_sealed::kms::{Kms, SecretBinding};
use secrecy::SecretString;
use uuid::Uuid;

const MASTER: &str = "1:3232323232323232323232323232323232323232323232323232323232323232";
const TOKEN: &str = "zone-cli-secret-token-value";
const CF: &str = "0123456789abcdef0123456789abcdef";

fn kms(env: &TestEnv) -> KmsService {
    KmsService::new(
        env.app.pool.clone(),
        MasterKeyring::parse(MASTER, None).expect("keyring"),
        "test",
    )
}

fn new_zone<'a>(tenant: &'a str, cf: &'a str) -> NewZone<'a> {
    NewZone {
        tenant,
        cf_zone_id: cf,
        name: "example.com",
        cadence_seconds: 60,
        backfill_minutes: 30,
        endpoint: ZoneEndpoint::Cloudflare,
        demo: false,
        fields: None,
    }
}

/// Issue 11 item 5: a zone archives every field its Logpull offers unless narrowed,
/// and a narrowed list is checked against the offer before anything is stored.
#[tokio::test]
async fn zone_add_stores_every_offered_field_or_the_checked_narrowed_list() {
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    let kms = kms(&env);
    let token = SecretString::from(TOKEN);
    let (_cloudflare, probe) = cloudflare_stand_in(&[TOKEN]).await;
    tenant::add(pool, "acme", 400).await.unwrap();
    let stored = |id: Uuid| async move {
        sqlx::query_scalar::<_, Vec<String>>("SELECT fields FROM zones WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let all = zone::add(
        pool,
        &kms,
        &probe,
        &new_zone("acme", CF),
        &token,
        Utc::now(),
    )
    .await
    .unwrap();
    let offered: Vec<String> = rainlogs_logpull_sim::Field::ALL
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let mut got = stored(all).await;
    got.sort();
    let mut want = offered.clone();
    want.sort();
    assert_eq!(
        got, want,
        "every offered field, not Cloudflare's default nine"
    );
    assert!(got.iter().any(|f| f == "ClientRequestUserAgent"));

    let narrow: Vec<String> = vec!["RayID".into(), "ClientRequestUserAgent".into()];
    let cf2 = CF.replace('0', "9");
    let narrowed = zone::add(
        pool,
        &kms,
        &probe,
        &NewZone {
            fields: Some(&narrow),
            ..new_zone("acme", &cf2)
        },
        &token,
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(stored(narrowed).await, narrow);

    let cf3 = CF.replace('0', "8");
    let bad: Vec<String> = vec!["RayID".into(), "ClientUserAgent".into()];
    let err = zone::add(
        pool,
        &kms,
        &probe,
        &NewZone {
            fields: Some(&bad),
            ..new_zone("acme", &cf3)
        },
        &token,
        Utc::now(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ZoneError::UnknownFields { unknown, .. } if unknown == &["ClientUserAgent"]),
        "{err:?}"
    );
    let zones: i64 = sqlx::query_scalar("SELECT count(*) FROM zones")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(zones, 2, "the refused zone was not stored");
    env.teardown().await;
}

#[tokio::test]
async fn tenants_and_zones_are_added_listed_and_validated() {
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    let kms = kms(&env);
    let token = SecretString::from(TOKEN);
    let now = Utc::now();
    let (_cloudflare, probe) = cloudflare_stand_in(&[TOKEN]).await;

    let acme = tenant::add(pool, "acme", 30).await.unwrap();
    assert!(matches!(
        tenant::add(pool, "acme", 30).await,
        Err(TenantError::Exists(_))
    ));
    assert!(matches!(
        tenant::add(pool, "zero", 0).await,
        Err(TenantError::InvalidRetention(0))
    ));
    assert!(matches!(
        tenant::add(pool, "  ", 30).await,
        Err(TenantError::InvalidName)
    ));

    let id = zone::add(pool, &kms, &probe, &new_zone("acme", CF), &token, now)
        .await
        .unwrap();
    for (bad, want) in [
        (
            zone::add(pool, &kms, &probe, &new_zone("acme", "0123"), &token, now).await,
            "InvalidZoneId",
        ),
        (
            zone::add(
                pool,
                &kms,
                &probe,
                &new_zone("nobody", &CF.replace('0', "1")),
                &token,
                now,
            )
            .await,
            "UnknownTenant",
        ),
        (
            zone::add(pool, &kms, &probe, &new_zone("acme", CF), &token, now).await,
            "Exists",
        ),
        (
            zone::add(
                pool,
                &kms,
                &probe,
                &NewZone {
                    backfill_minutes: 7 * 24 * 60 + 1,
                    ..new_zone("acme", &CF.replace('1', "2"))
                },
                &token,
                now,
            )
            .await,
            "InvalidBackfill",
        ),
        (
            zone::add(
                pool,
                &kms,
                &probe,
                &new_zone("acme", &CF.replace('1', "3")),
                &SecretString::from(" "),
                now,
            )
            .await,
            "EmptyToken",
        ),
        (
            zone::add(
                pool,
                &kms,
                &probe,
                &NewZone {
                    demo: true,
                    ..new_zone("acme", &CF.replace('1', "4"))
                },
                &token,
                now,
            )
            .await,
            "DemoNotSimulated",
        ),
        (
            zone::add(
                pool,
                &kms,
                &probe,
                &NewZone {
                    endpoint: ZoneEndpoint::Simulator {
                        url: "ftp://127.0.0.1:1".into(),
                    },
                    ..new_zone("acme", &CF.replace('1', "5"))
                },
                &token,
                now,
            )
            .await,
            "InvalidSimulatorUrl",
        ),
    ] {
        let err = bad.expect_err(want);
        assert!(
            format!("{err:?}").starts_with(want),
            "{err:?} is not {want}"
        );
    }

    // The token is stored sealed, opens for its binding and for no other zone.
    let (blob, backfill): (Vec<u8>, DateTime<Utc>) =
        sqlx::query_as("SELECT token_ciphertext, backfill_from FROM zones WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
    // Postgres keeps microseconds.
    let want = (now - TimeDelta::minutes(30))
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap();
    assert_eq!(backfill, want);
    assert!(!blob.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
    let mut binding = SecretBinding {
        tenant: acme,
        zone: id,
        purpose: CLOUDFLARE_TOKEN_PURPOSE.to_owned(),
    };
    let opened = kms.decrypt_secret(&binding, &blob).await.unwrap();
    assert_eq!(&opened[..], TOKEN.as_bytes());
    binding.zone = Uuid::new_v4();
    assert!(kms.decrypt_secret(&binding, &blob).await.is_err());

    let tenants = tenant::list(pool).await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(
        (tenants[0].id, tenants[0].zones, tenants[0].retention_days),
        (acme, 1, 30)
    );
    let zones = zone::list(pool).await.unwrap();
    assert_eq!(zones.len(), 1);
    assert_eq!(zones[0].id, id);
    assert_eq!(zones[0].tenant, "acme");
    assert!(zones[0].has_token && !zones[0].paused);

    env.teardown().await;
}

#[tokio::test]
async fn pause_resume_steer_the_scheduler() {
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    let (_cloudflare, probe) = cloudflare_stand_in(&[TOKEN]).await;
    tenant::add(pool, "acme", 30).await.unwrap();
    let id = zone::add(
        pool,
        &kms(&env),
        &probe,
        &new_zone("acme", CF),
        &SecretString::from(TOKEN),
        Utc::now(),
    )
    .await
    .unwrap();

    assert_eq!(zone::set_paused(pool, CF, true).await.unwrap(), id);
    assert!(zone::list(pool).await.unwrap()[0].paused);
    let r = reconcile::plan_and_enqueue(&env.app, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        (r.planned, r.enqueued),
        (0, 0),
        "a paused zone is left alone"
    );

    // Resume by Rainlogs id works as well as by Cloudflare id.
    assert_eq!(
        zone::set_paused(pool, &id.to_string(), false)
            .await
            .unwrap(),
        id
    );
    let r = reconcile::plan_and_enqueue(&env.app, Utc::now())
        .await
        .unwrap();
    assert!(r.planned >= 28 && r.enqueued == r.planned, "{r:?}");
    assert!(matches!(
        zone::set_paused(pool, "ffffffffffffffffffffffffffffffff", true).await,
        Err(ZoneError::UnknownZone(_))
    ));
    env.teardown().await;
}

#[tokio::test]
async fn coverage_reports_every_kind_of_minute() {
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    let now = Utc::now();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(20)).await;
    rainlogs_archive::ledger::plan_zone(pool, zone, now, &env.app.plan)
        .await
        .unwrap();
    let windows: Vec<(i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, start_at FROM windows WHERE zone_id = $1 ORDER BY start_at")
            .bind(zone)
            .fetch_all(pool)
            .await
            .unwrap();
    assert!(windows.len() >= 12);
    let t0 = windows[0].1;
    let set = |i: usize, state: &'static str| {
        let id = windows[i].0;
        async move {
            let sql = if state == "missing" {
                "DELETE FROM windows WHERE id = $1".to_owned()
            } else {
                format!("UPDATE windows SET state = '{state}' WHERE id = $1")
            };
            sqlx::query(&sql).bind(id).execute(pool).await.unwrap();
        }
    };
    // 0-2 archived, 3 empty, 4 archived, 5 missing, 6 failed, 7.. in flight (planned).
    for i in 0..3 {
        set(i, "archived").await;
    }
    set(3, "empty").await;
    set(4, "archived").await;
    set(5, "missing").await;
    set(6, "failed_permanent").await;
    set(7, "staged").await;

    let to = t0 + TimeDelta::minutes(10);
    let c = zone::coverage(pool, &zone.simple().to_string(), Some(t0), Some(to), now)
        .await
        .unwrap();
    let m = |n: i64| t0 + TimeDelta::minutes(n);
    assert_eq!(
        c.spans,
        vec![
            (Cover::Archived, m(0), m(3)),
            (Cover::Empty, m(3), m(4)),
            (Cover::Archived, m(4), m(5)),
            (Cover::Missing, m(5), m(6)),
            (Cover::Failed, m(6), m(7)),
            (Cover::InFlight, m(7), m(10)),
        ]
    );
    let counts: Vec<(&str, u64)> = c.states.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        counts,
        vec![
            ("archived", 4),
            ("empty", 1),
            ("failed_permanent", 1),
            ("planned", 2),
            ("staged", 1)
        ]
    );

    // Beyond the planned horizon is missing; an empty range is refused.
    let later = now.duration_trunc(TimeDelta::minutes(1)).unwrap() + TimeDelta::minutes(5);
    let tail = zone::coverage(pool, &zone.to_string(), Some(m(8)), Some(later), now)
        .await
        .unwrap();
    assert_eq!(tail.spans.last().map(|s| s.0), Some(Cover::Missing));
    assert_eq!(tail.spans.last().map(|s| s.2), Some(later));
    assert!(matches!(
        zone::coverage(pool, &zone.to_string(), Some(m(5)), Some(m(5)), now).await,
        Err(ZoneError::EmptyRange)
    ));

    // Paused for 8 days: Logpull serves 7, so the first day after the last window is
    // lost for good, and says so; the rest can still be planned, so it is missing.
    let resumed = now + TimeDelta::days(8);
    let paused = zone::coverage(pool, &zone.to_string(), Some(m(8)), Some(resumed), resumed)
        .await
        .unwrap();
    let last_end: DateTime<Utc> =
        sqlx::query_scalar("SELECT max(end_at) FROM windows WHERE zone_id = $1")
            .bind(zone)
            .fetch_one(pool)
            .await
            .unwrap();
    let horizon = resumed - rainlogs_archive::ledger::LOGPULL_MAX_AGE;
    assert_eq!(
        paused.spans[paused.spans.len() - 2..],
        [
            (Cover::Lost, last_end, horizon),
            (Cover::Missing, horizon, resumed)
        ]
    );
    env.teardown().await;
}

async fn insert_window(
    env: &TestEnv,
    zone: Uuid,
    start: DateTime<Utc>,
    state: &str,
    error: Option<&str>,
) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO windows (zone_id, start_at, end_at, state, last_error)
         VALUES ($1, $2, $2 + interval '1 minute', $3::window_state, $4) RETURNING id",
    )
    .bind(zone)
    .bind(start)
    .bind(state)
    .bind(error)
    .fetch_one(&env.app.pool)
    .await
    .expect("insert window")
}

async fn state_of(env: &TestEnv, id: i64) -> (String, Option<String>) {
    sqlx::query_as("SELECT state::text, last_error FROM windows WHERE id = $1")
        .bind(id)
        .fetch_one(&env.app.pool)
        .await
        .expect("window")
}

#[tokio::test]
async fn retry_failed_replans_failed_windows_inside_seven_days_and_refuses_beyond() {
    // Issue 11 item 2: nothing ever moved a window out of failed_permanent.
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    let now = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let zone = env.insert_zone(60, now - TimeDelta::days(8)).await;
    let too_late = "logpull: Cloudflare rejected the request (400): too late";
    let lost = insert_window(
        &env,
        zone,
        now - TimeDelta::days(8),
        "failed_permanent",
        Some(too_late),
    )
    .await;
    let old = insert_window(
        &env,
        zone,
        now - TimeDelta::days(2),
        "failed_permanent",
        Some(too_late),
    )
    .await;
    let recent = insert_window(
        &env,
        zone,
        now - TimeDelta::hours(1),
        "failed_permanent",
        Some(too_late),
    )
    .await;
    let fine = insert_window(&env, zone, now - TimeDelta::minutes(30), "empty", None).await;

    // Beyond Cloudflare's 7 days: refused, with the reason and the earliest usable start.
    let err = zone::retry_failed(
        pool,
        &zone.to_string(),
        Some(now - TimeDelta::days(8)),
        None,
        now,
        "test",
    )
    .await
    .expect_err("beyond 7 days");
    assert!(matches!(err, ZoneError::BeyondLogpull { .. }), "{err}");
    assert_eq!(
        rainlogs_core::error::Classify::code(&err),
        "zone.beyond_logpull"
    );
    assert!(err.to_string().contains("7 days"), "{err}");
    assert_eq!(
        state_of(&env, old).await.0,
        "failed_permanent",
        "nothing moved"
    );

    // A narrower range moves only what is in it.
    let r = zone::retry_failed(
        pool,
        &zone.to_string(),
        Some(now - TimeDelta::hours(2)),
        Some(now),
        now,
        "test",
    )
    .await
    .expect("retry the last two hours");
    assert_eq!(r.replanned, vec![recent]);
    assert_eq!(r.unrecoverable, 1);
    assert!(!r.paused);
    // Default range: everything still inside the 7 days.
    let r = zone::retry_failed(pool, &zone.to_string(), None, None, now, "test")
        .await
        .expect("retry all");
    assert_eq!(r.replanned, vec![old]);
    assert_eq!(
        r.unrecoverable, 1,
        "the 8-day-old window is reported, not moved"
    );

    let (state, error) = state_of(&env, recent).await;
    assert_eq!(state, "planned");
    assert!(
        error.unwrap().contains("too late"),
        "the old reason is kept"
    );
    assert_eq!(state_of(&env, old).await.0, "planned");
    assert_eq!(state_of(&env, lost).await.0, "failed_permanent");
    assert_eq!(state_of(&env, fine).await.0, "empty");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE operation = 'zone.retry_failed' AND zone_id = $1",
    )
    .bind(zone)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(audited, 2);

    // Re-planned windows are picked up by the pipeline: the fetch tasks can be sent now.
    let report = reconcile::enqueue_fetches(&env.app.queue, r.tenant, &[old, recent])
        .await
        .expect("enqueue");
    assert_eq!(report.enqueued, 2);
    env.teardown().await;
}

#[tokio::test]
async fn zone_add_and_set_token_probe_the_token_and_the_retention_flag() {
    // Issue 11 item 3: a wrong or under-privileged token was stored without a word and
    // found out window by window.
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    let kms = kms(&env);
    tenant::add(pool, "acme", 30).await.unwrap();
    let (_cloudflare, probe) = cloudflare_stand_in(&[TOKEN]).await;

    let err = zone::add(
        pool,
        &kms,
        &probe,
        &new_zone("acme", CF),
        &SecretString::from("a-revoked-token"),
        Utc::now(),
    )
    .await
    .expect_err("Cloudflare refuses the token");
    assert!(matches!(err, ZoneError::TokenRefused { .. }), "{err}");
    assert!(
        err.to_string().contains(CF) && err.to_string().contains("403"),
        "{err}"
    );
    assert!(!err.to_string().contains("a-revoked-token"));
    assert!(zone::list(pool).await.unwrap().is_empty(), "nothing stored");

    // Retention off at the zone: refused with the fix, or switched on when asked.
    let sim = rainlogs_logpull_sim::Simulator::start_local(rainlogs_logpull_sim::SimConfig {
        tokens: vec![TOKEN.to_owned()],
        retention_default: false,
        ..rainlogs_logpull_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let simulated = NewZone {
        endpoint: ZoneEndpoint::Simulator {
            url: sim.base_url(),
        },
        ..new_zone("acme", CF)
    };
    let at_sim = rainlogs_fetch::LogpullProbe::new(
        rainlogs_fetch::logpull::LogpullConfig::default(),
        rainlogs_fetch::CloudflareApi::default(),
    );
    let err = zone::add(
        pool,
        &kms,
        &at_sim,
        &simulated,
        &SecretString::from(TOKEN),
        Utc::now(),
    )
    .await
    .expect_err("retention off");
    assert!(matches!(err, ZoneError::RetentionOff { .. }), "{err}");
    assert!(err.to_string().contains("retention/flag"), "{err}");
    let id = zone::add(
        pool,
        &kms,
        &at_sim.clone().enabling_retention(true),
        &simulated,
        &SecretString::from(TOKEN),
        Utc::now(),
    )
    .await
    .expect("retention switched on");

    // set_token probes too; an unreachable endpoint is a retryable refusal.
    let err = zone::set_token(
        pool,
        &kms,
        &at_sim,
        &id.to_string(),
        &SecretString::from("nope"),
        "test",
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, ZoneError::TokenRefused { .. }), "{err}");
    sim.shutdown().await.unwrap();
    let err = zone::set_token(
        pool,
        &kms,
        &at_sim,
        &id.to_string(),
        &SecretString::from(TOKEN),
        "test",
    )
    .await
    .expect_err("simulator gone");
    assert!(
        matches!(
            err,
            ZoneError::ProbeFailed {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    env.teardown().await;
}

#[tokio::test]
async fn retention_below_the_legal_minimum_needs_explicit_confirmation() {
    // Issue 11 item 13: `tenant set --retention-days 30` was accepted silently, and the
    // next prune deleted 12 months of logs the law may still require.
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    tenant::add(pool, "acme", 395).await.unwrap();
    assert_eq!(tenant::LEGAL_MIN_RETENTION_DAYS, 395);
    let short = tenant::RetentionChange {
        retention_days: Some(30),
        ..Default::default()
    };
    let err = tenant::set(pool, "acme", short, "test").await.unwrap_err();
    assert!(
        matches!(
            err,
            TenantError::ShortRetention {
                days: 30,
                minimum: 395
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("--confirm-short-retention"),
        "{err}"
    );
    assert_eq!(
        tenant::list(pool).await.unwrap()[0].retention_days,
        395,
        "unchanged"
    );
    // At the minimum and above: no confirmation needed. Below, with it: accepted, audited.
    for days in [395, 730] {
        let change = tenant::RetentionChange {
            retention_days: Some(days),
            ..Default::default()
        };
        tenant::set(pool, "acme", change, "test").await.unwrap();
    }
    let confirmed = tenant::RetentionChange {
        confirm_short_retention: true,
        ..short
    };
    tenant::set(pool, "acme", confirmed, "test").await.unwrap();
    assert_eq!(tenant::list(pool).await.unwrap()[0].retention_days, 30);
    let detail: serde_json::Value = sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE operation = 'tenant.set' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(detail["confirmed_short_retention"], true);

    // A zone override follows the same rule.
    let zone_id = env.insert_zone(60, Utc::now()).await;
    let err = zone::set_retention(
        pool,
        &zone_id.to_string(),
        zone::ZoneRetentionChange {
            retention_days: Some(Some(90)),
            ..Default::default()
        },
        "test",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ZoneError::ShortRetention { days: 90, .. }),
        "{err}"
    );
    zone::set_retention(
        pool,
        &zone_id.to_string(),
        zone::ZoneRetentionChange {
            retention_days: Some(Some(90)),
            confirm_short_retention: true,
            ..Default::default()
        },
        "test",
    )
    .await
    .unwrap();
    env.teardown().await;
}

/// Issue 11 item 13: a window not fetched a day before Logpull's 7-day edge (a long
/// outage, a Retry-After, a pause) is an alert on the metrics endpoint, per zone, until
/// it is fetched.
#[tokio::test]
async fn a_window_close_to_logpulls_edge_is_an_alert_until_fetched() {
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    let now = Utc::now();
    let zone = env.insert_zone(60, now - TimeDelta::minutes(10)).await;
    rainlogs_archive::ledger::plan_zone(pool, zone, now, &env.app.plan)
        .await
        .unwrap();
    let label = format!("zone_id=\"{zone}\"");
    let near = |body: &str| {
        rainlogs_integration_tests::metric_value(body, "rainlogs_windows_near_logpull_edge", &label)
    };
    let body = rainlogs_integration_tests::archive_metrics(&env).await;
    assert_eq!(near(&body), None, "fresh windows are no risk:\n{body}");

    // Two windows 6 days 12 hours old, still planned.
    let old = (now - TimeDelta::days(6) - TimeDelta::hours(12))
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM windows WHERE zone_id = $1 AND state = 'planned' ORDER BY start_at LIMIT 2",
    )
    .bind(zone)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(ids.len(), 2);
    for (i, id) in ids.iter().enumerate() {
        let start = old + TimeDelta::minutes(i as i64);
        sqlx::query("UPDATE windows SET start_at = $2, end_at = $3 WHERE id = $1")
            .bind(id)
            .bind(start)
            .bind(start + TimeDelta::minutes(1))
            .execute(pool)
            .await
            .unwrap();
    }
    let body = rainlogs_integration_tests::archive_metrics(&env).await;
    assert_eq!(near(&body), Some(2.0), "{body}");
    let age = rainlogs_integration_tests::metric_value(
        &body,
        "rainlogs_oldest_unfetched_window_age_seconds",
        &label,
    )
    .expect("age reported");
    let want = (Utc::now() - old).num_seconds() as f64;
    assert!((age - want).abs() < 120.0, "age {age}, want about {want}");

    // Fetched (staged): no longer at risk, the alert clears.
    sqlx::query("UPDATE windows SET state = 'staged' WHERE id = ANY($1)")
        .bind(&ids)
        .execute(pool)
        .await
        .unwrap();
    let body = rainlogs_integration_tests::archive_metrics(&env).await;
    assert_eq!(near(&body), None, "{body}");
    env.teardown().await;
}
