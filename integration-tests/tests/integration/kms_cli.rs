//! `rainlogs decrypt` and `rainlogs kms …` against real Postgres: an object sealed by the
//! kms opens offline through the keyring or an exported key file, and is refused when
//! tampered, misattributed or shredded.

use std::io::Write;
use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use rainlogs_cli::decrypt::{decrypt_to, DecryptArgs};
use rainlogs_cli::kms::{run as kms_run, KmsCommand};
use rainlogs_core::config::ConfigSource;
use rainlogs_integration_tests::TestEnv;
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_sealed::kms::{KeyError, Kms};
use rainlogs_sealed::{SealContext, SealError, SealParams, Sealer};
use uuid::Uuid;

const M1: &str = "1:1111111111111111111111111111111111111111111111111111111111111111";

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rainlogs-{}-{name}", Uuid::new_v4()))
}

fn args(file: PathBuf) -> DecryptArgs {
    DecryptArgs {
        file,
        key_file: None,
        tenant: None,
        zone: None,
        window_start: None,
        window_end: None,
    }
}

fn seal_error(e: anyhow::Error) -> SealError {
    e.downcast::<SealError>()
        .expect("a typed sealed-object error")
}

async fn decrypt(src: &ConfigSource, a: &DecryptArgs) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    decrypt_to(src, a, &mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn decrypt_opens_through_keyring_or_key_file_and_refuses_damage() {
    let env = TestEnv::new().await;
    let mut src = env.src.clone();
    src.set(MasterKeyring::KEYS, M1);
    let kms = KmsService::new(
        env.app.pool.clone(),
        MasterKeyring::parse(M1, None).unwrap(),
        "test",
    );
    let tenant = Uuid::new_v4();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, 'cli')")
        .bind(tenant)
        .execute(&env.app.pool)
        .await
        .unwrap();
    let ctx = SealContext {
        tenant,
        zone: Uuid::from_u128(5),
        window_start: Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap(),
        window_end: Utc.with_ymd_and_hms(2026, 11, 30, 10, 1, 0).unwrap(),
    };
    let plain: Vec<u8> = (0..2000)
        .flat_map(|i| {
            format!("{{\"RayID\":\"{i:016x}\",\"EdgeResponseStatus\":200}}\n").into_bytes()
        })
        .collect();
    let dk = kms.generate_data_key(&ctx).await.unwrap();
    let mut sealer = Sealer::new(Vec::new(), SealParams::new(ctx, &dk)).unwrap();
    sealer.write_all(&plain).unwrap();
    let object = sealer.finish().unwrap().0;
    let file = temp_path("object.sealed");
    std::fs::write(&file, &object).unwrap();

    // Through the keyring and Postgres.
    assert_eq!(decrypt(&src, &args(file.clone())).await.unwrap(), plain);

    // Through an exported key file.
    let key_file = temp_path("tenant-key.json");
    kms_run(
        &src,
        KmsCommand::ExportTenantKey {
            tenant,
            version: 1,
            out: key_file.clone(),
        },
    )
    .await
    .unwrap();
    let mut with_key = args(file.clone());
    with_key.key_file = Some(key_file.clone());
    assert_eq!(decrypt(&src, &with_key).await.unwrap(), plain);

    // Presented as another zone's object.
    let mut wrong_zone = with_key.clone();
    wrong_zone.zone = Some(Uuid::from_u128(6));
    assert!(matches!(
        seal_error(decrypt(&src, &wrong_zone).await.unwrap_err()),
        SealError::WrongZone { .. }
    ));

    // A flipped bit in the body.
    let mut damaged = object.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 1;
    let damaged_file = temp_path("damaged.sealed");
    std::fs::write(&damaged_file, &damaged).unwrap();
    let mut d = with_key.clone();
    d.file = damaged_file.clone();
    assert!(matches!(
        seal_error(decrypt(&src, &d).await.unwrap_err()),
        SealError::ChunkTampered { .. } | SealError::ChunksReordered { .. }
    ));

    // Rotation via the CLI keeps the object readable; shredding ends it for the kms.
    kms_run(&src, KmsCommand::RotateTenant { tenant })
        .await
        .unwrap();
    assert_eq!(decrypt(&src, &args(file.clone())).await.unwrap(), plain);
    assert!(kms_run(
        &src,
        KmsCommand::ShredTenant {
            tenant,
            yes_destroy_all_data: false
        }
    )
    .await
    .is_err());
    kms_run(
        &src,
        KmsCommand::ShredTenant {
            tenant,
            yes_destroy_all_data: true,
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        seal_error(decrypt(&src, &args(file.clone())).await.unwrap_err()),
        SealError::Key(KeyError::Shredded { version: 1, .. })
    ));
    // An exported key file is a copy outside the kms: shredding cannot reach it, which
    // is why export is audited and the file must be destroyed with the tenant.
    assert_eq!(decrypt(&src, &with_key).await.unwrap(), plain);
    let exports: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND operation = 'export_tenant_key' AND result = 'ok'",
    )
    .bind(tenant)
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(exports.0, 1);

    for f in [file, key_file, damaged_file] {
        let _ = std::fs::remove_file(f);
    }
    env.teardown().await;
}

#[tokio::test]
async fn decrypt_opens_the_committed_vectors_offline() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/sealed/tests/vectors");
    let src = ConfigSource::from_pairs(Vec::<(String, String)>::new());
    for name in ["empty", "one-record", "multi-chunk", "unterminated"] {
        let mut a = args(dir.join(format!("{name}.sealed")));
        a.key_file = Some(dir.join("tenant-key.json"));
        let out = decrypt(&src, &a).await.unwrap();
        assert_eq!(
            out,
            std::fs::read(dir.join(format!("{name}.ndjson"))).unwrap(),
            "{name}"
        );
    }
    let mut a = args(dir.join("neg-swapped.sealed"));
    a.key_file = Some(dir.join("tenant-key.json"));
    assert!(matches!(
        seal_error(decrypt(&src, &a).await.unwrap_err()),
        SealError::ChunksReordered { .. }
    ));
}
