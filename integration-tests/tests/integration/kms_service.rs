//! The kms against real Postgres: tenant keys, rotation, shredding, secrets and the
//! audit trail, with sealed objects opened through it.

use std::io::Write;

use chrono::{TimeZone, Utc};
use rainlogs_core::function::Function;
use rainlogs_core::task::{TaskEnvelope, TaskSpec};
use rainlogs_integration_tests::TestEnv;
use rainlogs_kms::{KmsFunction, KmsService, MasterKeyring};
use rainlogs_sealed::kms::{KeyError, Kms, SecretBinding};
use rainlogs_sealed::{open_with_kms, SealContext, SealError, SealParams, Sealer};
use uuid::Uuid;

const M1: &str = "1:1111111111111111111111111111111111111111111111111111111111111111";
const M2: &str = "2:2222222222222222222222222222222222222222222222222222222222222222";

fn ring(spec: &str) -> MasterKeyring {
    MasterKeyring::parse(spec, None).unwrap()
}

async fn tenant(env: &TestEnv) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(format!("t-{id}"))
        .execute(&env.app.pool)
        .await
        .unwrap();
    id
}

fn context(tenant: Uuid) -> SealContext {
    SealContext {
        tenant,
        zone: Uuid::from_u128(77),
        window_start: Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap(),
        window_end: Utc.with_ymd_and_hms(2026, 11, 30, 9, 1, 0).unwrap(),
    }
}

async fn seal(kms: &dyn Kms, ctx: &SealContext, plain: &[u8]) -> (Vec<u8>, u32) {
    let dk = kms.generate_data_key(ctx).await.unwrap();
    let mut sealer = Sealer::new(Vec::new(), SealParams::new(*ctx, &dk)).unwrap();
    sealer.write_all(plain).unwrap();
    (sealer.finish().unwrap().0, dk.tenant_key_version)
}

async fn open(kms: &dyn Kms, ctx: &SealContext, object: &[u8]) -> Result<Vec<u8>, SealError> {
    let (_, opener) = open_with_kms(kms, object, Some(ctx)).await?;
    let mut out = Vec::new();
    opener.copy_to(&mut out)?;
    Ok(out)
}

async fn audit_ops(env: &TestEnv, tenant: Uuid) -> Vec<(String, String, Option<i32>, String)> {
    sqlx::query_as(
        "SELECT operation, result, key_version, actor FROM audit_events WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(tenant)
    .fetch_all(&env.app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn kms_seals_and_opens_and_audits_without_key_material() {
    let env = TestEnv::new().await;
    let kms = KmsService::new(env.app.pool.clone(), ring(M1), "test");
    let t = tenant(&env).await;
    let ctx = context(t);
    let (object, version) = seal(&kms, &ctx, b"{\"a\":1}\n").await;
    assert_eq!(version, 1);
    assert_eq!(open(&kms, &ctx, &object).await.unwrap(), b"{\"a\":1}\n");

    let ops = audit_ops(&env, t).await;
    let names: Vec<_> = ops
        .iter()
        .map(|o| (o.0.as_str(), o.1.as_str(), o.2))
        .collect();
    assert_eq!(
        names,
        vec![
            ("generate_data_key", "ok", Some(1)),
            ("decrypt_data_key", "ok", Some(1))
        ]
    );
    // The audit detail holds only the window, never key material.
    let details: Vec<(serde_json::Value,)> =
        sqlx::query_as("SELECT detail FROM audit_events WHERE tenant_id = $1")
            .bind(t)
            .fetch_all(&env.app.pool)
            .await
            .unwrap();
    for (d,) in details {
        let keys: Vec<_> = d.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            vec!["window_end".to_string(), "window_start".to_string()]
        );
    }
    env.teardown().await;
}

#[tokio::test]
async fn tenant_rotation_keeps_old_objects_readable() {
    let env = TestEnv::new().await;
    let kms = KmsService::new(env.app.pool.clone(), ring(M1), "test");
    let t = tenant(&env).await;
    let ctx = context(t);
    let (old, v1) = seal(&kms, &ctx, b"old\n").await;
    assert_eq!(kms.rotate_tenant(t).await.unwrap(), 2);
    let (new, v2) = seal(&kms, &ctx, b"new\n").await;
    assert_eq!((v1, v2), (1, 2));
    assert_eq!(open(&kms, &ctx, &old).await.unwrap(), b"old\n");
    assert_eq!(open(&kms, &ctx, &new).await.unwrap(), b"new\n");
    let states: Vec<_> = kms
        .tenant_keys(Some(t))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.version, r.state))
        .collect();
    assert_eq!(states, vec![(1, "retired".into()), (2, "active".into())]);
    env.teardown().await;
}

#[tokio::test]
async fn master_rotation_rewraps_without_touching_objects() {
    let env = TestEnv::new().await;
    let t = tenant(&env).await;
    let ctx = context(t);
    let before = KmsService::new(env.app.pool.clone(), ring(M1), "test");
    let (object, _) = seal(&before, &ctx, b"x\n").await;

    let both = KmsService::new(env.app.pool.clone(), ring(&format!("{M1},{M2}")), "test");
    let report = both.rotate_master().await.unwrap();
    assert_eq!((report.to_master_version, report.rewrapped), (2, 1));

    // Master 1 retired from the keyring: the object still opens under master 2 alone…
    let after = KmsService::new(env.app.pool.clone(), ring(M2), "test");
    assert_eq!(open(&after, &ctx, &object).await.unwrap(), b"x\n");
    assert_eq!(after.status().await.unwrap().unreadable_tenant_keys, 0);
    // …and a kms still configured with only the retired master cannot read the key.
    assert!(matches!(
        open(&before, &ctx, &object).await,
        Err(SealError::Key(KeyError::MasterKeyUnavailable {
            master_version: 2
        }))
    ));
    env.teardown().await;
}

#[tokio::test]
async fn shredded_tenant_objects_and_secrets_become_unreadable() {
    let env = TestEnv::new().await;
    let kms = KmsService::new(env.app.pool.clone(), ring(M1), "test");
    let t = tenant(&env).await;
    let ctx = context(t);
    let (object, _) = seal(&kms, &ctx, b"personal data\n").await;
    kms.rotate_tenant(t).await.unwrap();
    let binding = SecretBinding {
        tenant: t,
        zone: ctx.zone,
        purpose: "cloudflare-api-token".into(),
    };
    let blob = kms.encrypt_secret(&binding, b"cf-token").await.unwrap();

    let zone: Uuid = sqlx::query_scalar(
        "INSERT INTO zones (id, tenant_id, cf_zone_id, name, cadence_seconds, backfill_from)
         VALUES ($3, $1, $2, 'shred.example', 60, now()) RETURNING id",
    )
    .bind(t)
    .bind(Uuid::new_v4().simple().to_string())
    .bind(Uuid::new_v4())
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(kms.shred_tenant(t).await.unwrap(), 2);
    // Issue 11 item 4: shredding parks the tenant's zones, with the reason.
    let (paused, why): (bool, Option<String>) =
        sqlx::query_as("SELECT paused, paused_reason FROM zones WHERE id = $1")
            .bind(zone)
            .fetch_one(&env.app.pool)
            .await
            .unwrap();
    assert!(paused, "a shredded tenant's zone is paused");
    assert!(why.unwrap_or_default().contains("crypto-shredded"));
    assert!(matches!(
        open(&kms, &ctx, &object).await,
        Err(SealError::Key(KeyError::Shredded { version: 1, .. }))
    ));
    assert!(matches!(
        kms.decrypt_secret(&binding, &blob).await,
        Err(KeyError::Shredded { version: 2, .. })
    ));
    assert!(matches!(
        kms.generate_data_key(&ctx).await,
        Err(KeyError::Shredded { .. })
    ));
    let wrapped: Vec<(Option<Vec<u8>>,)> =
        sqlx::query_as("SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1")
            .bind(t)
            .fetch_all(&env.app.pool)
            .await
            .unwrap();
    assert_eq!(wrapped.len(), 2);
    assert!(wrapped.iter().all(|(w,)| w.is_none()));
    let ops = audit_ops(&env, t).await;
    assert!(ops.iter().any(|o| o.0 == "shred_tenant" && o.1 == "ok"));
    assert!(ops
        .iter()
        .any(|o| o.0 == "decrypt_data_key" && o.1 == "kms.shredded"));
    env.teardown().await;
}

#[tokio::test]
async fn secrets_open_only_for_their_tenant_zone_and_purpose() {
    let env = TestEnv::new().await;
    let kms = KmsService::new(env.app.pool.clone(), ring(M1), "test");
    let t = tenant(&env).await;
    let binding = SecretBinding {
        tenant: t,
        zone: Uuid::from_u128(1),
        purpose: "cloudflare-api-token".into(),
    };
    let blob = kms.encrypt_secret(&binding, b"cf-token-123").await.unwrap();
    assert_eq!(
        &kms.decrypt_secret(&binding, &blob).await.unwrap()[..],
        b"cf-token-123"
    );
    let mut other_zone = binding.clone();
    other_zone.zone = Uuid::from_u128(2);
    let mut other_purpose = binding.clone();
    other_purpose.purpose = "webhook".into();
    for b in [other_zone, other_purpose] {
        assert!(matches!(
            kms.decrypt_secret(&b, &blob).await,
            Err(KeyError::Unwrap { what: "secret", .. })
        ));
    }
    // After a rotation the old blob still opens (it names its version).
    kms.rotate_tenant(t).await.unwrap();
    assert_eq!(
        &kms.decrypt_secret(&binding, &blob).await.unwrap()[..],
        b"cf-token-123"
    );
    env.teardown().await;
}

#[tokio::test]
async fn unknown_tenant_is_refused_and_audited() {
    let env = TestEnv::new().await;
    let kms = KmsService::new(env.app.pool.clone(), ring(M1), "test");
    let ghost = Uuid::new_v4();
    assert!(matches!(
        kms.generate_data_key(&context(ghost)).await,
        Err(KeyError::UnknownTenant { .. })
    ));
    assert!(matches!(
        kms.rotate_tenant(ghost).await,
        Err(KeyError::UnknownTenant { .. })
    ));
    let ops = audit_ops(&env, ghost).await;
    assert_eq!(ops.len(), 2);
    assert!(ops.iter().all(|o| o.1 == "kms.unknown_tenant"));
    env.teardown().await;
}

#[tokio::test]
async fn kms_function_serves_rotation_tasks() {
    let env = TestEnv::new().await;
    let kms = KmsService::new(env.app.pool.clone(), ring(M1), "test");
    let t = tenant(&env).await;
    let function = KmsFunction::with_service(kms.clone());
    let task = TaskEnvelope::new(
        TaskSpec::new(
            "default",
            rainlogs_kms::kinds::ROTATE_TENANT,
            serde_json::json!({ "tenant": t }),
        ),
        Utc::now(),
    );
    let out = function
        .invoke_json(serde_json::to_value(&task).unwrap())
        .await
        .unwrap();
    assert_eq!(out["result"]["active_version"], 1);
    let ops = audit_ops(&env, t).await;
    assert_eq!(ops[0].3, format!("task:{}", task.id));

    let bad = TaskEnvelope::new(
        TaskSpec::new("default", "kms.generate_data_key", serde_json::json!({})),
        Utc::now(),
    );
    let err = function
        .invoke_json(serde_json::to_value(&bad).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code, "kind.unsupported");
    let unconfigured = KmsFunction::new();
    let err = unconfigured
        .invoke_json(serde_json::to_value(&task).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code, "kms.not_configured");
    env.teardown().await;
}

#[tokio::test]
async fn a_queued_shred_needs_an_operators_unused_unexpired_approval_for_that_tenant() {
    let env = TestEnv::new().await;
    let kms = KmsService::new(env.app.pool.clone(), ring(M1), "test");
    let t = tenant(&env).await;
    let other = tenant(&env).await;
    kms.rotate_tenant(t).await.unwrap();
    let function = KmsFunction::with_service(kms.clone());
    let shred = |payload: serde_json::Value| {
        let function = function.clone();
        async move {
            let task = TaskEnvelope::new(
                TaskSpec::new("default", rainlogs_kms::kinds::SHRED_TENANT, payload),
                Utc::now(),
            );
            function
                .invoke_json(serde_json::to_value(&task).unwrap())
                .await
        }
    };
    let live_keys = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM tenant_keys WHERE tenant_id = $1 AND state <> 'shredded'",
        )
        .bind(t)
        .fetch_one(&env.app.pool)
        .await
        .unwrap()
    };

    // A message planted in Redis: no approval, a made-up one, another tenant's one.
    let err = shred(serde_json::json!({ "tenant": t })).await.unwrap_err();
    assert_eq!(err.code, "kms.approval_required");
    let err = shred(serde_json::json!({ "tenant": t, "approval": Uuid::new_v4() }))
        .await
        .unwrap_err();
    assert_eq!(err.code, "kms.approval_unknown");
    let for_other = rainlogs_kms::approval::approve(
        &env.app.pool,
        rainlogs_kms::kinds::SHRED_TENANT,
        other,
        "cli:test:kms-approve",
        chrono::TimeDelta::minutes(5),
    )
    .await
    .unwrap();
    let err = shred(serde_json::json!({ "tenant": t, "approval": for_other }))
        .await
        .unwrap_err();
    assert_eq!(err.code, "kms.approval_unknown");
    assert!(!err.is_retryable());
    assert_eq!(live_keys().await, 1, "nothing shredded without an approval");

    // An operator's approval for this tenant: used once.
    let approval = rainlogs_kms::approval::approve(
        &env.app.pool,
        rainlogs_kms::kinds::SHRED_TENANT,
        t,
        "cli:test:kms-approve",
        chrono::TimeDelta::minutes(5),
    )
    .await
    .unwrap();
    let out = shred(serde_json::json!({ "tenant": t, "approval": approval }))
        .await
        .unwrap();
    assert_eq!(out["result"]["versions_shredded"], 1);
    assert_eq!(live_keys().await, 0);
    let err = shred(serde_json::json!({ "tenant": t, "approval": approval }))
        .await
        .unwrap_err();
    assert_eq!(err.code, "kms.approval_used");
    env.teardown().await;
}

async fn wraps(env: &TestEnv, t: Uuid) -> Vec<(i32, String, i64)> {
    sqlx::query_as(
        "SELECT version, state::text, wraps FROM tenant_keys WHERE tenant_id = $1 ORDER BY version",
    )
    .bind(t)
    .fetch_all(&env.app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn tenant_key_rotates_by_itself_at_its_wrap_threshold() {
    // Issue 11 item 12: nothing counted wraps per tenant key; a key could encrypt past
    // NIST SP 800-38D's 2^32 random-nonce limit. Here the threshold is 3.
    let env = TestEnv::new().await;
    let kms = KmsService::new(env.app.pool.clone(), ring(M1), "test").with_rotate_after_wraps(3);
    let t = tenant(&env).await;
    let ctx = context(t);
    let mut objects = Vec::new();
    for i in 0..7 {
        let plain = format!("{{\"n\":{i}}}\n");
        let (object, version) = seal(&kms, &ctx, plain.as_bytes()).await;
        objects.push((object, version, plain));
    }
    let versions: Vec<u32> = objects.iter().map(|o| o.1).collect();
    assert_eq!(versions, vec![1, 1, 1, 2, 2, 2, 3]);
    assert_eq!(
        wraps(&env, t).await,
        vec![
            (1, "retired".into(), 3),
            (2, "retired".into(), 3),
            (3, "active".into(), 1)
        ]
    );
    // A secret is an encryption under the tenant key too: counted.
    let binding = SecretBinding {
        tenant: t,
        zone: ctx.zone,
        purpose: "cloudflare-api-token".into(),
    };
    let blob = kms.encrypt_secret(&binding, b"cf-token").await.unwrap();
    assert_eq!(wraps(&env, t).await[2].2, 2);
    assert_eq!(
        &kms.decrypt_secret(&binding, &blob).await.unwrap()[..],
        b"cf-token"
    );
    for (object, _, plain) in &objects {
        assert_eq!(open(&kms, &ctx, object).await.unwrap(), plain.as_bytes());
    }
    let rotations: Vec<(serde_json::Value,)> = sqlx::query_as(
        "SELECT detail FROM audit_events WHERE tenant_id = $1 AND operation = 'rotate_tenant'
         AND result = 'ok' ORDER BY id",
    )
    .bind(t)
    .fetch_all(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(
        rotations.len(),
        2,
        "one audited rotation per used-up version"
    );
    assert_eq!(rotations[0].0["automatic"], true);
    assert_eq!(rotations[0].0["reason"], "wrap_limit");
    assert_eq!(rotations[1].0["from_version"], 2);
    let rows = kms.tenant_keys(Some(t)).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.wraps).collect::<Vec<_>>(),
        vec![3, 3, 2]
    );
    env.teardown().await;
}

#[tokio::test]
async fn concurrent_encryptions_never_use_a_key_version_past_its_threshold() {
    let env = TestEnv::new().await;
    let kms = KmsService::new(env.app.pool.clone(), ring(M1), "test").with_rotate_after_wraps(4);
    let t = tenant(&env).await;
    let ctx = context(t);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let kms = kms.clone();
        tasks.spawn(async move {
            kms.generate_data_key(&ctx)
                .await
                .map(|k| k.tenant_key_version)
        });
    }
    let mut uses = std::collections::BTreeMap::<u32, u64>::new();
    while let Some(r) = tasks.join_next().await {
        *uses.entry(r.unwrap().unwrap()).or_default() += 1;
    }
    assert_eq!(uses.values().sum::<u64>(), 40);
    for (version, n) in &uses {
        assert!(*n <= 4, "version {version} used {n} times, threshold 4");
    }
    // The counter is an upper bound on the uses of each version.
    for (version, _, counted) in wraps(&env, t).await {
        let used = uses.get(&(version as u32)).copied().unwrap_or(0);
        assert!(
            counted as u64 >= used,
            "v{version}: counted {counted} < used {used}"
        );
    }
    env.teardown().await;
}
