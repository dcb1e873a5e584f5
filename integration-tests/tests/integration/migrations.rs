//! The schema: migrations apply on an empty database, re-applying is a no-op, and the
//! forward-only policy (docs/MIGRATIONS.md) holds.

use rainlogs_core::db::{migrate, MIGRATOR};
use rainlogs_integration_tests::TestEnv;

#[tokio::test]
async fn migrations_apply_on_an_empty_database_and_reapply_as_a_no_op() {
    let env = TestEnv::with_migrations(false).await;
    let pool = &env.app.pool;
    let tables_before: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(tables_before, 0, "test database starts empty");

    migrate(pool).await.expect("first run applies");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count());

    for table in [
        "tenants",
        "zones",
        "windows",
        "archived_objects",
        "chain_links",
        "tenant_keys",
        "audit_events",
        "probe_runs",
    ] {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_name = $1)",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap();
        assert!(exists, "table {table} exists after migration");
    }

    migrate(pool).await.expect("second run is a no-op");
    let applied_again: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(applied_again, applied);
    env.teardown().await;
}

#[test]
fn migrations_are_forward_only_and_numbered_in_order() {
    let mut last = 0;
    for m in MIGRATOR.iter() {
        assert!(
            !m.migration_type.is_down_migration(),
            "migration {} is a down migration; the policy is forward-only",
            m.version
        );
        assert!(
            m.version > last,
            "versions increase: {} after {last}",
            m.version
        );
        last = m.version;
    }
    assert!(last >= 1, "at least one migration is embedded");
}

#[tokio::test]
async fn the_chain_cannot_fork_two_links_cannot_share_a_sequence_number() {
    let env = TestEnv::new().await;
    let pool = &env.app.pool;
    let tenant = uuid::Uuid::new_v4();
    let zone = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, 't')")
        .bind(tenant)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO zones (id, tenant_id, cf_zone_id, name, backfill_from)
         VALUES ($1, $2, '0123456789abcdef0123456789abcdef', 'example.com', now())",
    )
    .bind(zone)
    .bind(tenant)
    .execute(pool)
    .await
    .unwrap();
    let mut windows = Vec::new();
    for minute in 0..2 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO windows (zone_id, start_at, end_at)
             VALUES ($1, now() + make_interval(mins => $2), now() + make_interval(mins => $2 + 1))
             RETURNING id",
        )
        .bind(zone)
        .bind(minute)
        .fetch_one(pool)
        .await
        .unwrap();
        windows.push(id);
    }
    let link = |window: i64, hash: u8| {
        sqlx::query(
            "INSERT INTO chain_links (zone_id, seq, window_id, prev_hash, link_hash, record_count,
                                      version)
             VALUES ($1, 0, $2, $3, $4, 0, 1)",
        )
        .bind(zone)
        .bind(window)
        .bind(vec![0u8; 32])
        .bind(vec![hash; 32])
    };
    link(windows[0], 1).execute(pool).await.expect("first link");
    let err = link(windows[1], 2)
        .execute(pool)
        .await
        .expect_err("a second link with the same sequence number is refused");
    let code = err.as_database_error().and_then(|e| e.code()).unwrap();
    assert_eq!(code, "23505", "unique violation");
    env.teardown().await;
}
