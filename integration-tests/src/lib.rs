//! Test harness: real Postgres, Redis and Garage, isolated per test.
//!
//! Endpoints come from the `RAINLOGS_*` variables or the env file written by
//! `infra/local/stack.sh env` (found by walking up from the crate). With the
//! `containers` feature, testcontainers starts the three services instead when
//! `RAINLOGS_TEST_SERVICES=containers` or no endpoints are configured (see [`containers`]).
//!
//! Every [`TestEnv`] gets its own database (created fresh and migrated), its own Redis
//! key prefix and its own object-key prefix in the bucket, so tests run in parallel
//! without seeing each other.

#[cfg(feature = "containers")]
pub mod containers;
pub mod dispatch;

use std::future::Future;
use std::time::{Duration, Instant};

use rainlogs_core::config::{ConfigSource, DatabaseConfig, RedisConfig, S3Config};
use rainlogs_dispatcher::app::App;
use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use uuid::Uuid;

/// Prefix of every per-test database name; `infra/test.sh` drops leftovers.
pub const TEST_DB_PREFIX: &str = "rl_test_";

/// Base configuration for tests: the environment / env file, or containers (with the
/// `containers` feature: when `RAINLOGS_TEST_SERVICES=containers`, or when nothing is
/// configured).
pub async fn base_source() -> ConfigSource {
    let src = ConfigSource::from_env().expect("env file readable");
    #[cfg(feature = "containers")]
    if containers::forced() || src.get(DatabaseConfig::URL).is_none() {
        return containers::services(src)
            .await
            .unwrap_or_else(|e| panic!("test services in containers: {e}"));
    }
    if src.get(DatabaseConfig::URL).is_some() {
        return src;
    }
    panic!(
        "no test services configured: run `bash infra/local/stack.sh up` (writes .rainlogs/env), \
         set RAINLOGS_* variables, or build with --features containers where Docker runs"
    );
}

/// One test's isolated slice of the real services.
pub struct TestEnv {
    pub id: String,
    pub src: ConfigSource,
    pub app: App,
    db_name: String,
    admin_url: String,
}

impl TestEnv {
    /// A fresh database (migrated), Redis prefix and bucket prefix.
    pub async fn new() -> Self {
        Self::with_migrations(true).await
    }

    /// Like [`TestEnv::new`], optionally leaving the database empty (migration tests).
    pub async fn with_migrations(migrate: bool) -> Self {
        Self::build(migrate, &[]).await
    }

    /// Like [`TestEnv::new`], with some settings replaced before connecting — e.g. the
    /// S3 endpoint of a Garage cluster a test runs itself.
    pub async fn with_overrides(overrides: &[(&str, String)]) -> Self {
        Self::build(true, overrides).await
    }

    async fn build(migrate: bool, overrides: &[(&str, String)]) -> Self {
        let mut base = base_source().await;
        for (key, value) in overrides {
            base.set(*key, value.clone());
        }
        let id = Uuid::new_v4().simple().to_string();
        let admin_url = base
            .get(DatabaseConfig::URL)
            .expect("database url")
            .to_owned();
        let db_name = format!("{TEST_DB_PREFIX}{id}");
        let admin = admin_options(&admin_url);
        let mut conn = admin.connect().await.expect("connect to postgres as admin");
        sqlx::query(&format!("CREATE DATABASE \"{db_name}\""))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();

        let mut src = base.clone();
        // Each test chooses its own master keyring; the stack's development one is not theirs.
        src.remove("RAINLOGS_MASTER_KEYS");
        src.remove("RAINLOGS_MASTER_KEYS_FILE");
        src.set(DatabaseConfig::URL, with_database(&admin_url, &db_name));
        src.set(RedisConfig::KEY_PREFIX, format!("rltest:{id}"));
        src.set(S3Config::KEY_PREFIX, format!("tests/{id}/"));
        src.set(DatabaseConfig::MAX_CONNECTIONS, "5");
        // Planner, fetcher and simulator share this host's clock: no skew to absorb, so
        // tests plan up to Logpull's minute (the default margin has its own tests).
        if src
            .get(rainlogs_archive::ledger::PlanPolicy::MARGIN_VAR)
            .is_none()
        {
            src.set(rainlogs_archive::ledger::PlanPolicy::MARGIN_VAR, "60");
        }
        let app = App::connect(&src).await.expect("connect test services");
        if migrate {
            rainlogs_core::db::migrate(&app.pool)
                .await
                .expect("migrate test database");
        }
        Self {
            id,
            src,
            app,
            db_name,
            admin_url,
        }
    }

    /// Inserts a tenant and one zone of it; returns the zone id.
    pub async fn insert_zone(
        &self,
        cadence_seconds: i32,
        backfill_from: chrono::DateTime<chrono::Utc>,
    ) -> Uuid {
        let tenant = Uuid::new_v4();
        let zone = Uuid::new_v4();
        sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, $2)")
            .bind(tenant)
            .bind(format!("tenant-{tenant}"))
            .execute(&self.app.pool)
            .await
            .expect("insert tenant");
        sqlx::query(
            "INSERT INTO zones (id, tenant_id, cf_zone_id, name, cadence_seconds, backfill_from)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(zone)
        .bind(tenant)
        .bind(zone.simple().to_string())
        .bind(format!("zone-{zone}.example"))
        .bind(cadence_seconds)
        .bind(backfill_from)
        .execute(&self.app.pool)
        .await
        .expect("insert zone");
        zone
    }

    pub fn database_name(&self) -> &str {
        &self.db_name
    }

    /// The per-test database URL.
    /// A Redis connection to the test's server (keys under its own prefix only).
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let cfg = RedisConfig::from_source(&self.src).expect("redis config");
        redis::Client::open(cfg.url.expose_secret().to_owned())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connects")
    }

    pub fn database_url(&self) -> String {
        DatabaseConfig::from_source(&self.src)
            .expect("valid")
            .url
            .expose_secret()
            .to_owned()
    }

    /// Drops the database, the Redis keys and the objects this test made.
    pub async fn teardown(self) {
        let TestEnv {
            app,
            db_name,
            admin_url,
            src,
            ..
        } = self;
        app.pool.close().await;
        let prefix = RedisConfig::from_source(&src).unwrap().key_prefix;
        if let Ok(client) = redis::Client::open(
            RedisConfig::from_source(&src)
                .unwrap()
                .url
                .expose_secret()
                .to_owned(),
        ) {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}:*"))
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                }
            }
        }
        // The archive bucket's and (when configured) the landing bucket's objects of
        // this test: both under its own prefix.
        let landing = app.landing.as_ref().map(|l| &l.store);
        for store in std::iter::once(&app.store).chain(landing) {
            if let Ok(objects) = store.list_all("").await {
                let keys: Vec<String> = objects.into_iter().map(|o| o.key).collect();
                for chunk in keys.chunks(1000) {
                    let _ = store.delete_many(chunk).await;
                }
            }
        }
        if let Ok(mut conn) = admin_options(&admin_url).connect().await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

fn admin_options(url: &str) -> PgConnectOptions {
    url.parse::<PgConnectOptions>()
        .expect("valid postgres url")
        .disable_statement_logging()
}

/// The same URL pointing at another database.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A Logpull simulator standing in for Cloudflare's API, accepting `tokens`, and the
/// token probe (`zone add`, `zone set --token-env`) aimed at it for real (`cloudflare`)
/// zones — so tests probe tokens like production does, and no test token is ever sent
/// to api.cloudflare.com. Simulated zones are probed at their own simulator.
pub async fn cloudflare_stand_in(
    tokens: &[&str],
) -> (
    rainlogs_logpull_sim::Simulator,
    rainlogs_fetch::LogpullProbe,
) {
    let sim = rainlogs_logpull_sim::Simulator::start_local(rainlogs_logpull_sim::SimConfig {
        tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
        ..rainlogs_logpull_sim::SimConfig::default()
    })
    .await
    .expect("stand-in simulator starts");
    let api = rainlogs_fetch::CloudflareApi::new(&sim.base_url(), &[sim.base_url()])
        .expect("the stand-in is allowed");
    let probe =
        rainlogs_fetch::LogpullProbe::new(rainlogs_fetch::logpull::LogpullConfig::default(), api);
    (sim, probe)
}

/// Writes `settings` as an env file at `path`, for a child process of the test
/// (`RAINLOGS_ENV_FILE`): one `KEY='value'` line each.
pub fn write_env_file(settings: &ConfigSource, path: &std::path::Path) {
    let body: String = settings
        .pairs()
        .map(|(k, v)| format!("{k}='{}'\n", v.replace('\'', "")))
        .collect();
    std::fs::write(path, body).expect("write env file");
}

/// Polls `check` until it yields `Some`, failing the test at `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The value of the Prometheus sample `name` in a text exposition `body` whose labels
/// include `label` (e.g. `destination="…"`); `None` when there is none.
pub fn metric_value(body: &str, name: &str, label: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?.strip_prefix('{')?;
            labels.contains(label).then(|| value.parse().ok())?
        })
        .next()
}

/// What `rainlogs run`'s metrics endpoint would answer now for `env`'s services,
/// with the push and landing gauges.
pub async fn archive_metrics(env: &TestEnv) -> String {
    rainlogs_dispatcher::metrics::Metrics::new()
        .watch_archive(env.app.pool.clone(), env.app.landing.clone())
        .render(&env.app.queue)
        .await
}

/// A kms holding one fixed key for `tenant` (derived from its id, so every call agrees):
/// what tests that append chain links by hand MAC them with (docs/CHAIN.md §Keys).
pub fn test_kms(tenant: Uuid) -> rainlogs_sealed::kms::StaticKms {
    use sha2::Digest;
    let bytes: [u8; 32] = sha2::Sha256::digest(tenant.as_bytes()).into();
    rainlogs_sealed::kms::StaticKms::new().with_key(rainlogs_sealed::kms::TenantKey::new(
        tenant,
        1,
        rainlogs_sealed::kms::SecretKey::from_bytes(bytes),
    ))
}

/// The chain key [`test_kms`] gives `tenant`.
pub fn test_chain_key(tenant: Uuid) -> rainlogs_sealed::kms::ChainKey {
    use sha2::Digest;
    let bytes: [u8; 32] = sha2::Sha256::digest(tenant.as_bytes()).into();
    rainlogs_sealed::kms::ChainKey::derive(&rainlogs_sealed::kms::TenantKey::new(
        tenant,
        1,
        rainlogs_sealed::kms::SecretKey::from_bytes(bytes),
    ))
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn swaps_database_name() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:1?sslmode=disable", "x"),
            "postgres://u@h:1/x?sslmode=disable"
        );
    }
}
