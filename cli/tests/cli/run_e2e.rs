//! End to end through the real `rainlogs run` process — scheduler, reconciler,
//! dispatcher and the fetch → encrypt → upload stages in one process — against real
//! Postgres, Redis and Garage, with the Logpull simulator (in this test process)
//! standing in for Cloudflare.
//!
//! Every scenario ends with the archive checked from outside the process
//! ([`Deployment::check`]): each zone's time is covered by exactly one leaf window per
//! instant, contiguously; every leaf window is archived or empty with exactly one chain
//! link (or, where the scenario revokes the token, the zone is parked with the reason
//! and its windows wait `planned`, unlinked); the bucket
//! holds exactly one object per archived window under its catalogued key and size, and
//! nothing in staging; the chain verifies; and the record counts in the chain add up to
//! what the simulator serves for the covered minutes — nothing lost, nothing twice.
//!
//! Scenarios: every simulator fault ends correctly (and oversized or slow windows are
//! split); `kill -9` at random points, 20 times (`RAINLOGS_E2E_KILLS` raises it: the
//! long suite, docs/TESTING.md); Redis emptied with FLUSHALL mid-run; Garage stopped
//! for 30 s mid-run. Redis and Garage for the last two are private instances this test
//! starts, so stopping or flushing them disturbs no other test.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rainlogs_archive::catalog::{tenant, zone};
use rainlogs_archive::chain;
use rainlogs_archive::endpoint::ZoneEndpoint;
use rainlogs_core::config::{RedisConfig, S3Config};
use rainlogs_core::storage::ObjectStore;
use rainlogs_integration_tests::{wait_for, TestEnv};
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_logpull_sim::{Fault, FaultRule, Generator, SimConfig, Simulator, ZoneVolume};
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

const TOKEN: &str = "e2e-cloudflare-token";
const MASTER: &str = "1:4545454545454545454545454545454545454545454545454545454545454545";
const SEED: u64 = 20261130;
/// How long a scenario may take to settle once its disturbance is over.
const SETTLE: Duration = Duration::from_secs(240);

/// A leaf window as checked: id, start, end, state, last error.
type LeafRow = (i64, DateTime<Utc>, DateTime<Utc>, String, Option<String>);

/// What a zone must look like at the end.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Every minute archived or empty; record counts equal the simulator's.
    Complete,
    /// Like `Complete`, but a fault rewrote a line: counts are not compared.
    CompleteAnyCount,
    /// Cloudflare refused the credential: the zone is parked (paused with a reason
    /// containing this text) and every window waits `planned`, none failed.
    Parked(&'static str),
}

struct ZoneUnderTest {
    id: Uuid,
    tenant: Uuid,
    cf: String,
    volume: ZoneVolume,
    expect: Expect,
}

/// One Rainlogs deployment: a test's slice of the services, the simulator, and the
/// `rainlogs run` process (restartable).
struct Deployment {
    env: TestEnv,
    sim: Simulator,
    /// Where the archive is (the test's Garage slice, or a private Garage).
    store: ObjectStore,
    dir: PathBuf,
    env_file: PathBuf,
    log: PathBuf,
    child: KillOnDrop,
    /// Length of the log when `rainlogs run` was last started.
    log_offset: usize,
    zones: Vec<ZoneUnderTest>,
}

impl Deployment {
    /// A deployment whose `rainlogs run` gets the test's settings plus `overrides`.
    async fn new(overrides: &[(&str, String)]) -> Self {
        let mut env = TestEnv::new().await;
        env.src.set("RAINLOGS_MASTER_KEYS", MASTER);
        let sim = Simulator::start_local(SimConfig {
            seed: SEED,
            tokens: vec![TOKEN.to_owned()],
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let mut settings = env.src.clone();
        for (k, v) in [
            ("RAINLOGS_SCHEDULER_INTERVAL_MS", String::from("250")),
            ("RAINLOGS_RECONCILE_AFTER_MS", "3000".into()),
            ("RAINLOGS_LEASE_MS", "2000".into()),
            ("RAINLOGS_REAP_INTERVAL_MS", "500".into()),
            ("RAINLOGS_RETRY_BASE_MS", "200".into()),
            ("RAINLOGS_RETRY_CAP_MS", "3000".into()),
            ("RAINLOGS_IDLE_WAIT_MS", "200".into()),
        ] {
            settings.set(k, v);
        }
        for (k, v) in overrides {
            settings.set(*k, v.clone());
        }
        let store =
            ObjectStore::connect(&S3Config::from_source(&settings).expect("s3 config")).await;
        let dir = std::env::temp_dir().join(format!("rainlogs-e2e-{}", env.id));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let env_file = dir.join("env");
        rainlogs_integration_tests::write_env_file(&settings, &env_file);
        let log = dir.join("rainlogs.log");
        Self {
            env,
            sim,
            store,
            dir,
            env_file,
            log,
            child: KillOnDrop::default(),
            log_offset: 0,
            zones: Vec::new(),
        }
    }

    fn pool(&self) -> &PgPool {
        &self.env.app.pool
    }

    /// Registers a zone through the operator commands (`tenant add`, `zone add`).
    async fn add_zone(
        &mut self,
        volume: ZoneVolume,
        backfill_minutes: i64,
        token: &str,
        faults: &[FaultRule],
        expect: Expect,
    ) -> Uuid {
        let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
        let kms = KmsService::new(self.pool().clone(), keyring, "e2e-test");
        let name = format!("tenant-{}", self.zones.len());
        let tenant = match tenant::add(self.pool(), &name, 395).await {
            Ok(id) => id,
            Err(e) => panic!("tenant add: {e}"),
        };
        let cf = Uuid::new_v4().simple().to_string();
        let probe = rainlogs_fetch::LogpullProbe::new(
            rainlogs_fetch::logpull::LogpullConfig::default(),
            rainlogs_fetch::CloudflareApi::default(),
        );
        let id = zone::add(
            self.pool(),
            &kms,
            &probe,
            &zone::NewZone {
                tenant: &name,
                cf_zone_id: &cf,
                name: &format!("z{}.example", self.zones.len()),
                cadence_seconds: 60,
                backfill_minutes,
                endpoint: ZoneEndpoint::Simulator {
                    url: self.sim.base_url(),
                },
                demo: false,
                fields: None,
            },
            &SecretString::from(token.to_owned()),
            Utc::now(),
        )
        .await
        .unwrap_or_else(|e| panic!("zone add: {e}"));
        self.sim.set_volume(&cf, volume);
        for rule in faults {
            let mut rule = rule.clone();
            rule.zone = Some(cf.clone());
            self.sim.faults().add(rule);
        }
        self.zones.push(ZoneUnderTest {
            id,
            tenant,
            cf,
            volume,
            expect,
        });
        id
    }

    /// `zone add` with a token the simulator refuses: refused, nothing stored.
    async fn add_zone_refused(&mut self, token: &str) {
        let keyring = MasterKeyring::parse(MASTER, None).expect("keyring");
        let kms = KmsService::new(self.pool().clone(), keyring, "e2e-test");
        let name = format!("refused-{}", Uuid::new_v4().simple());
        tenant::add(self.pool(), &name, 395)
            .await
            .expect("tenant add");
        let probe = rainlogs_fetch::LogpullProbe::new(
            rainlogs_fetch::logpull::LogpullConfig::default(),
            rainlogs_fetch::CloudflareApi::default(),
        );
        let cf = Uuid::new_v4().simple().to_string();
        let err = zone::add(
            self.pool(),
            &kms,
            &probe,
            &zone::NewZone {
                tenant: &name,
                cf_zone_id: &cf,
                name: "refused.example",
                cadence_seconds: 60,
                backfill_minutes: 8,
                endpoint: ZoneEndpoint::Simulator {
                    url: self.sim.base_url(),
                },
                demo: false,
                fields: None,
            },
            &SecretString::from(token.to_owned()),
            Utc::now(),
        )
        .await
        .expect_err("a refused token");
        assert!(matches!(err, zone::ZoneError::TokenRefused { .. }), "{err}");
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM zones WHERE cf_zone_id = $1")
            .bind(&cf)
            .fetch_one(self.pool())
            .await
            .expect("count");
        assert_eq!(stored, 0);
    }

    /// Starts `rainlogs run` (output appended to the scenario's log).
    fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        self.log_offset = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let child = Command::new(env!("CARGO_BIN_EXE_rainlogs"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RAINLOGS_ENV_FILE", &self.env_file)
            .env("RAINLOGS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("rainlogs run starts");
        self.child = KillOnDrop(Some(child));
    }

    /// `kill -9`: no shutdown, no cleanup, leases left to expire.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    /// SIGTERM and a graceful exit, within a deadline. Waits for the process to be up
    /// first (a signal in the first instants of a process, before any handler exists,
    /// takes the default action).
    async fn stop(&mut self) {
        let (log, from) = (self.log.clone(), self.log_offset);
        wait_for("rainlogs run to be up", SETTLE, || {
            // Only what the latest start wrote: earlier (killed) runs do not count.
            let text = std::fs::read(&log).unwrap_or_default();
            let up = text
                .get(from..)
                .is_some_and(|t| String::from_utf8_lossy(t).contains("dispatcher running"));
            async move { up.then_some(()) }
        })
        .await;
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let exited = wait_for(
            "rainlogs run to exit after SIGTERM",
            Duration::from_secs(60),
            || {
                let done = child.try_wait().expect("try_wait");
                async move { done }
            },
        )
        .await;
        assert!(
            exited.success(),
            "graceful exit, got {exited}; log: {}",
            self.log.display()
        );
    }

    /// Fails the test if the process died on its own.
    fn assert_alive(&mut self, when: &str) {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "rainlogs run exited {status} {when}; log:\n{}",
                    tail(&self.log)
                );
            }
        }
    }

    /// Counts of this deployment's windows: (leaf windows, in flight, archived).
    async fn progress(&self) -> (i64, i64, i64) {
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state <> 'split'),
                    count(*) FILTER (WHERE state IN ('planned','fetching','staged','sealed')
                                     AND z.paused_reason IS NULL),
                    count(*) FILTER (WHERE state = 'archived')
             FROM windows JOIN zones z ON z.id = windows.zone_id",
        )
        .fetch_one(self.pool())
        .await
        .expect("progress query")
    }

    /// Waits until at least `n` windows are archived (the run is under way).
    async fn wait_archived(&mut self, n: i64) {
        let deadline = Instant::now() + SETTLE;
        loop {
            self.assert_alive("while archiving");
            if self.progress().await.2 >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {n} windows archived in {SETTLE:?}; log:\n{}",
                tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every zone is planned up to its horizon and nothing is in flight,
    /// then pauses every zone (no new minutes), waits again, and stops the process.
    async fn settle_and_stop(&mut self) {
        self.settle("settling").await;
        sqlx::query("UPDATE zones SET paused = true")
            .execute(self.pool())
            .await
            .expect("pause zones");
        self.settle("settling after pause").await;
        self.stop().await;
    }

    async fn settle(&mut self, what: &str) {
        let deadline = Instant::now() + SETTLE;
        loop {
            self.assert_alive(what);
            let (leaves, in_flight, _) = self.progress().await;
            // Every zone is planned from its backfill start: at least this many leaves.
            // Upload removes a staged payload after committing, so an archived window's
            // cleanup may still be retrying (Garage just back): wait for it too.
            if in_flight == 0
                && leaves >= self.min_windows()
                && self
                    .store
                    .list_all("staging/")
                    .await
                    .is_ok_and(|s| s.is_empty())
            {
                return;
            }
            if Instant::now() >= deadline {
                let staged: Vec<String> = match self.store.list_all("staging/").await {
                    Ok(objects) => objects.into_iter().map(|o| o.key).collect(),
                    Err(e) => vec![format!("(listing failed: {e})")],
                };
                panic!(
                    "{what}: not settled after {SETTLE:?}: {in_flight} windows in flight, {leaves} \
                     windows planned (at least {} expected), staging holds {staged:?}; log:\n{}",
                    self.min_windows(),
                    tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn min_windows(&self) -> i64 {
        // Each zone was given `backfill` minutes; planning stops 1-2 minutes short of now.
        self.zones.len() as i64 * 5
    }

    /// The archive invariants, zone by zone (see the module docs).
    async fn check(&self) {
        for z in &self.zones {
            self.check_zone(z).await;
        }
        // Nothing staged is left behind by any zone.
        let staged = self.store.list_all("staging/").await.expect("list staging");
        assert!(
            staged.is_empty(),
            "staging not empty: {:?}",
            staged.iter().map(|o| &o.key).collect::<Vec<_>>()
        );
    }

    async fn check_zone(&self, z: &ZoneUnderTest) {
        let pool = self.pool();
        let leaves: Vec<LeafRow> = sqlx::query_as(
            "SELECT id, start_at, end_at, state::text, last_error FROM windows
             WHERE zone_id = $1 AND state <> 'split' ORDER BY start_at",
        )
        .bind(z.id)
        .fetch_all(pool)
        .await
        .expect("leaf windows");
        assert!(
            leaves.len() >= 5,
            "zone {} has only {} windows",
            z.cf,
            leaves.len()
        );
        // Contiguous, no overlap, no hole.
        for pair in leaves.windows(2) {
            assert_eq!(
                pair[0].2, pair[1].1,
                "zone {}: window {} ends at {} but the next ({}) starts at {}",
                z.cf, pair[0].0, pair[0].2, pair[1].0, pair[1].1
            );
        }
        // Every split window is exactly covered by its two halves.
        let bad_splits: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM windows p WHERE p.zone_id = $1 AND p.state = 'split' AND NOT EXISTS (
                 SELECT 1 FROM windows a JOIN windows b ON b.parent_id = p.id AND a.end_at = b.start_at
                 WHERE a.parent_id = p.id AND a.start_at = p.start_at AND b.end_at = p.end_at)",
        )
        .bind(z.id)
        .fetch_one(pool)
        .await
        .expect("split check");
        assert_eq!(
            bad_splits, 0,
            "zone {}: a split window is not covered by its halves",
            z.cf
        );

        match &z.expect {
            Expect::Parked(reason) => {
                for (id, _, _, state, _) in &leaves {
                    assert_eq!(state, "planned", "zone {} window {id}", z.cf);
                }
                let (paused, why, zone_err): (bool, Option<String>, Option<String>) =
                    sqlx::query_as(
                        "SELECT paused, paused_reason, last_error FROM zones WHERE id = $1",
                    )
                    .bind(z.id)
                    .fetch_one(pool)
                    .await
                    .expect("zone state");
                assert!(paused, "zone {} is paused", z.cf);
                let why = why.unwrap_or_default();
                assert!(why.contains(reason), "zone {} parked for {why:?}", z.cf);
                assert_eq!(zone_err.as_deref(), Some(why.as_str()));
            }
            Expect::Complete | Expect::CompleteAnyCount => {
                for (id, start, end, state, err) in &leaves {
                    assert!(
                        state == "archived" || state == "empty",
                        "zone {} window {id} [{start}, {end}) ended {state}: {err:?}",
                        z.cf
                    );
                }
                if z.expect == Expect::CompleteAnyCount {
                    // The quarantined line is recorded on its window, with its position.
                    let (lines, sample): (i64, Option<serde_json::Value>) = sqlx::query_as(
                        "SELECT malformed_lines, malformed_sample FROM windows
                         WHERE zone_id = $1 AND malformed_lines > 0",
                    )
                    .bind(z.id)
                    .fetch_one(pool)
                    .await
                    .expect("one window records its malformed line");
                    assert_eq!(lines, 1, "zone {}", z.cf);
                    assert_eq!(sample.expect("positions")[0]["line"], 3, "zone {}", z.cf);
                }
            }
        }

        // One link per archived/empty window, none for anything else.
        let (links, linked_ok, linked_other): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*),
                    count(*) FILTER (WHERE w.state IN ('archived','empty')),
                    count(*) FILTER (WHERE w.state NOT IN ('archived','empty'))
             FROM chain_links l JOIN windows w ON w.id = l.window_id WHERE l.zone_id = $1",
        )
        .bind(z.id)
        .fetch_one(pool)
        .await
        .expect("link counts");
        let settled = leaves
            .iter()
            .filter(|l| l.3 == "archived" || l.3 == "empty")
            .count() as i64;
        assert_eq!(linked_other, 0, "zone {}: links on unsettled windows", z.cf);
        assert_eq!(
            (links, linked_ok),
            (settled, settled),
            "zone {}: one link per settled window",
            z.cf
        );

        // The bucket holds exactly the catalogued objects, at their sizes.
        let catalog: BTreeSet<(String, i64)> = sqlx::query_as::<_, (String, i64)>(
            "SELECT o.object_key, o.size_bytes FROM archived_objects o
             JOIN windows w ON w.id = o.window_id WHERE w.zone_id = $1",
        )
        .bind(z.id)
        .fetch_all(pool)
        .await
        .expect("catalog")
        .into_iter()
        .collect();
        let archived = leaves.iter().filter(|l| l.3 == "archived").count();
        assert_eq!(
            catalog.len(),
            archived,
            "zone {}: one catalog row per archived window",
            z.cf
        );
        let stored: BTreeSet<(String, i64)> = self
            .store
            .list_all(&format!("archive/{}/{}/", z.tenant, z.id))
            .await
            .expect("list archive")
            .into_iter()
            // The catalog records full bucket keys (the store's prefix included).
            .map(|o| (self.store.full_key(&o.key), o.size as i64))
            .collect();
        assert_eq!(stored, catalog, "zone {}: bucket and catalog differ", z.cf);

        let kms = KmsService::new(
            pool.clone(),
            MasterKeyring::parse(MASTER, None).expect("keyring"),
            "e2e-test",
        );
        let report = chain::verify_zone(pool, &kms, z.id)
            .await
            .expect("verify chain");
        assert!(report.is_valid(), "zone {}: chain broken: {report:?}", z.cf);
        assert_eq!(report.links_checked as i64, links);

        if z.expect == Expect::Complete {
            let archived_records: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum(record_count), 0)::bigint FROM chain_links WHERE zone_id = $1",
            )
            .bind(z.id)
            .fetch_one(pool)
            .await
            .expect("record sum");
            let (first, last) = (leaves[0].1, leaves[leaves.len() - 1].2);
            let served = served_records(&self.sim.generator(), &z.cf, &z.volume, first, last);
            assert_eq!(
                archived_records as u64, served,
                "zone {}: records archived vs served",
                z.cf
            );
        }
    }

    async fn split_reasons(&self, zone: Uuid) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT coalesce(last_error, '') FROM windows WHERE zone_id = $1 AND state = 'split'",
        )
        .bind(zone)
        .fetch_all(self.pool())
        .await
        .expect("split windows")
    }

    async fn teardown(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        self.env.teardown().await;
    }
}

/// The `rainlogs run` child, killed when dropped: a failed assertion must not leave a
/// process behind.
#[derive(Default)]
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn take(&mut self) -> Option<Child> {
        self.0.take()
    }

    fn is_none(&self) -> bool {
        self.0.is_none()
    }

    fn as_mut(&mut self) -> Option<&mut Child> {
        self.0.as_mut()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Records the simulator serves for `cf` over whole minutes in `[from, to)`.
fn served_records(
    gen: &Generator,
    cf: &str,
    volume: &ZoneVolume,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> u64 {
    assert_eq!(
        from,
        from.duration_trunc(TimeDelta::minutes(1)).unwrap(),
        "minute-aligned"
    );
    let (a, b) = (from.timestamp() / 60, to.timestamp() / 60);
    (a..b).map(|m| gen.minute_count(cf, m, volume)).sum()
}

/// The last lines of a log, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn volume(records_per_minute: u64, empty_ratio: f64) -> ZoneVolume {
    ZoneVolume {
        records_per_minute,
        empty_ratio,
        late_ratio: 0.0,
        late_max_seconds: 0,
    }
}

/// A small deterministic generator for kill points (seed printed for replay).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_simulator_fault_ends_correctly_and_big_or_slow_windows_split() {
    let mut d = Deployment::new(&[
        // A window slower than 2 s or larger than 256 KiB raw is split.
        ("RAINLOGS_FETCH_SPLIT_AFTER_SECS", "2".into()),
        ("RAINLOGS_FETCH_SPLIT_BYTES", (256 * 1024).to_string()),
    ])
    .await;
    let once = |fault: Fault, n: u64| vec![FaultRule::zone("", fault).times(n)];
    // (records a minute, token, faults, what the zone must end as)
    let zones: Vec<(u64, &str, Vec<FaultRule>, Expect)> = vec![
        (100, TOKEN, vec![], Expect::Complete),
        (
            100,
            TOKEN,
            once(
                Fault::RateLimited {
                    retry_after_secs: 1,
                },
                3,
            ),
            Expect::Complete,
        ),
        (
            100,
            TOKEN,
            once(Fault::ServerError { status: 503 }, 3),
            Expect::Complete,
        ),
        (
            100,
            TOKEN,
            once(Fault::ResetMidBody { after_bytes: 2000 }, 2),
            Expect::Complete,
        ),
        (
            100,
            TOKEN,
            once(Fault::Truncated { after_bytes: 3000 }, 2),
            Expect::Complete,
        ),
        (
            100,
            TOKEN,
            once(Fault::MalformedLine { line: 3 }, 1),
            Expect::CompleteAnyCount,
        ),
        (
            100,
            TOKEN,
            once(
                Fault::StallMidBody {
                    after_bytes: 2000,
                    stall_ms: 500,
                },
                2,
            ),
            Expect::Complete,
        ),
        // Slow first byte: split for time.
        (
            100,
            TOKEN,
            once(Fault::SlowFirstByte { delay_ms: 4000 }, 1),
            Expect::Complete,
        ),
        // High volume: split for size.
        (2000, TOKEN, vec![], Expect::Complete),
        // The token is revoked after `zone add` checked it: the zone is parked.
        (
            100,
            TOKEN,
            vec![FaultRule::zone("", Fault::BadToken)],
            Expect::Parked("403"),
        ),
    ];
    // A token Cloudflare refuses is not even stored: `zone add` probes it.
    d.add_zone_refused("not-the-token").await;
    let mut ids = Vec::new();
    for (rpm, token, faults, expect) in zones {
        let empty_ratio = if ids.is_empty() { 0.2 } else { 0.0 };
        ids.push(
            d.add_zone(volume(rpm, empty_ratio), 8, token, &faults, expect)
                .await,
        );
    }
    let (slow, big) = (ids[7], ids[8]);

    d.start();
    d.settle_and_stop().await;
    d.check().await;

    let slow_splits = d.split_reasons(slow).await;
    assert!(
        slow_splits.iter().any(|r| r.contains("longer than 2 s")),
        "the slow window was split for time: {slow_splits:?}"
    );
    let big_splits = d.split_reasons(big).await;
    assert!(
        // On a loaded machine some of its halves may also be split for time.
        big_splits.iter().any(|r| r.contains("raw bytes")),
        "the big zone's windows were split for size: {big_splits:?}"
    );
    d.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_at_random_points_loses_and_duplicates_nothing() {
    let kills: u64 = std::env::var("RAINLOGS_E2E_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("RAINLOGS_E2E_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_micros() as u64 | 1);
    eprintln!("kill loop: {kills} kills, RAINLOGS_E2E_SEED={seed}");
    let mut rng = Rng(seed);
    let mut d = Deployment::new(&[]).await;
    let backfill = 15 + kills as i64 / 4;
    for rpm in [300, 120, 40] {
        d.add_zone(volume(rpm, 0.1), backfill, TOKEN, &[], Expect::Complete)
            .await;
    }
    let mut killed_with_work_in_flight = 0;
    for i in 0..kills {
        d.start();
        // Random points: from before start-up finishes to well into the work.
        let delay = Duration::from_millis(50 + rng.below(1500));
        tokio::time::sleep(delay).await;
        d.assert_alive(&format!("before kill {i}"));
        if d.progress().await.1 > 0 {
            killed_with_work_in_flight += 1;
        }
        d.kill9();
    }
    eprintln!("{killed_with_work_in_flight} of {kills} kills hit windows in flight");
    d.start();
    d.settle_and_stop().await;
    d.check().await;
    d.teardown().await;
}

/// A private `redis-server` on a free port that keeps nothing on disk.
struct PrivateRedis {
    child: Child,
    url: String,
}

impl PrivateRedis {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (infra/local/stack.sh installs it)");
        let url = format!("redis://127.0.0.1:{port}/0");
        let client = redis::Client::open(url.clone()).expect("redis url");
        wait_for("private redis to answer", Duration::from_secs(20), || {
            let client = client.clone();
            async move {
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
            }
        })
        .await;
        Self { child, url }
    }

    async fn flushall(&self) {
        let client = redis::Client::open(self.url.clone()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis connects");
        let keys: i64 = redis::cmd("DBSIZE")
            .query_async(&mut conn)
            .await
            .expect("DBSIZE");
        assert!(keys > 0, "the queue had keys to lose");
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut conn)
            .await
            .expect("FLUSHALL");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_flushall_mid_run_still_archives_everything() {
    let redis = PrivateRedis::start().await;
    let mut d = Deployment::new(&[(RedisConfig::URL, redis.url.clone())]).await;
    for rpm in [400, 150, 60] {
        d.add_zone(volume(rpm, 0.1), 20, TOKEN, &[], Expect::Complete)
            .await;
    }
    d.start();
    d.wait_archived(5).await;
    let (_, in_flight, _) = d.progress().await;
    redis.flushall().await;
    eprintln!("FLUSHALL with {in_flight} windows in flight");
    d.settle_and_stop().await;
    d.check().await;
    d.teardown().await;
}

/// A private Garage started by the project's stack script under its own state dir and
/// ports; `stop` and `start` are the script's `down` and `up`.
struct PrivateGarage {
    state: PathBuf,
    ports: [u16; 3],
}

impl PrivateGarage {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/local/stack.sh")
    }

    fn stack(&self, verb: &str, pg: &str, redis: &str) -> String {
        let out = Command::new("bash")
            .arg(Self::script())
            .arg(verb)
            .env("RAINLOGS_STATE_DIR", &self.state)
            .env("RAINLOGS_GARAGE_S3_PORT", self.ports[0].to_string())
            .env("RAINLOGS_GARAGE_RPC_PORT", self.ports[1].to_string())
            .env("RAINLOGS_GARAGE_ADMIN_PORT", self.ports[2].to_string())
            .env("RAINLOGS_DATABASE_URL", pg)
            .env("RAINLOGS_REDIS_URL", redis)
            .env_remove("RAINLOGS_GARAGE_EXTERNAL")
            .env_remove("RAINLOGS_ENV_FILE")
            .output()
            .expect("stack script runs");
        assert!(
            out.status.success(),
            "stack.sh {verb} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The S3 settings the script wrote for this Garage.
    fn s3_settings(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.state.join("env")).expect("private stack env file");
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_owned(),
                    v.trim().trim_matches('\'').trim_matches('"').to_owned(),
                )
            })
            .filter(|(k, _)| k.starts_with("RAINLOGS_S3_"))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_stopped_for_30_seconds_mid_run_the_backlog_drains() {
    let base = rainlogs_integration_tests::base_source().await;
    let pg = base
        .get("RAINLOGS_DATABASE_URL")
        .expect("database url")
        .to_owned();
    let redis = base.get(RedisConfig::URL).expect("redis url").to_owned();
    let garage = PrivateGarage {
        state: std::env::temp_dir()
            .join(format!("rainlogs-e2e-garage-{}", Uuid::new_v4().simple())),
        ports: [free_port(), free_port(), free_port()],
    };
    garage.stack("up", &pg, &redis);
    let mut overrides: Vec<(&str, String)> = Vec::new();
    let s3 = garage.s3_settings();
    for (k, v) in &s3 {
        overrides.push((k.as_str(), v.clone()));
    }
    // Retries back off up to 10 s (default 300 s): 25 attempts outlast the outage.
    overrides.push(("RAINLOGS_RETRY_CAP_MS", "10000".into()));
    let mut d = Deployment::new(&overrides).await;
    for rpm in [300, 200, 100] {
        d.add_zone(volume(rpm, 0.1), 60, TOKEN, &[], Expect::Complete)
            .await;
    }
    d.start();
    d.wait_archived(2).await;
    garage.stack("down", &pg, &redis);
    let (leaves, in_flight, archived) = d.progress().await;
    eprintln!("Garage stopped: {archived} of {leaves} windows archived, {in_flight} in flight");
    let down_at = Instant::now();
    // The outage itself is the scenario: 30 s without Garage while the process keeps
    // fetching and retrying. Nothing may fail permanently meanwhile.
    while down_at.elapsed() < Duration::from_secs(30) {
        d.assert_alive("while Garage is down");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM windows WHERE state = 'failed_permanent'")
            .fetch_one(d.pool())
            .await
            .expect("failed count");
    assert_eq!(failed, 0, "an outage is not a permanent failure");
    let (_, backlog, _) = d.progress().await;
    eprintln!("Garage back after 30 s with {backlog} windows in flight");
    garage.stack("up", &pg, &redis);
    d.settle_and_stop().await;
    d.check().await;
    d.teardown().await;
    garage.stack("down", &pg, &redis);
    let _ = std::fs::remove_dir_all(&garage.state);
}
