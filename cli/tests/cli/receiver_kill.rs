//! `kill -9` of the real receiver process (`rainlogs-receiver`, the binary that deploys)
//! at random points while pushers keep delivering, as Cloudflare does: each pusher
//! sends its batches in order and re-sends a batch until it gets a 2xx (a connection
//! cut mid-body, a refused connection, a 5xx). Then `rainlogs run` archives what was
//! accepted, and the archive is checked from outside: every acknowledged batch is
//! archived exactly once (one row, one window, one link, its records restored once),
//! nothing is archived that was not sent, and whatever a kill left in staging is a
//! sealed object no row points to (never plaintext, never acknowledged).
//!
//! 20 kills by default; `RAINLOGS_PUSH_KILLS` raises it (the long suite,
//! docs/TESTING.md). The seed of the kill points is printed, and `RAINLOGS_PUSH_SEED`
//! replays it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use rainlogs_archive::chain;
use rainlogs_archive::push;
use rainlogs_archive::restore::{self, Observer, Request, Source};
use rainlogs_integration_tests::{wait_for, TestEnv};
use rainlogs_kms::{KmsService, MasterKeyring};
use rainlogs_sealed::kms::Kms;
use rand::{Rng, SeedableRng};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

const MASTER: &str = "1:6767676767676767676767676767676767676767676767676767676767676767";
const PUSHERS: usize = 3;
const RECORDS_PER_BATCH: usize = 1500;
/// How long a pusher keeps re-sending one batch before the test fails.
const RESEND_FOR: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(240);

fn sibling(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_rainlogs")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`)",
        path.display()
    );
    path
}

/// A child process killed (SIGKILL) when dropped.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(bin: &PathBuf, args: &[&str], env_file: &PathBuf, log: &PathBuf) -> Self {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RAINLOGS_ENV_FILE", env_file)
            .env("RAINLOGS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("process starts");
        Self(Some(child))
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Batch `i` of pusher `p`: records one second apart, tagged so each is traceable.
fn batch(p: usize, i: usize, start: DateTime<Utc>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in 0..RECORDS_PER_BATCH {
        let t = start + TimeDelta::milliseconds((r * 40) as i64);
        writeln!(
            out,
            r#"{{"RayID":"p{p}b{i}r{r}","EdgeStartTimestamp":{},"EdgeEndTimestamp":{},"ClientRequestHost":"kill.example","ClientRequestURI":"/{}","EdgeResponseStatus":200}}"#,
            t.timestamp_nanos_opt().unwrap(),
            t.timestamp_nanos_opt().unwrap() + 1_000_000,
            "x".repeat(r % 97)
        )
        .unwrap();
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(6));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// What the pushers saw: per batch tag, its NDJSON and how many 2xx it got.
#[derive(Default)]
struct Sent {
    batches: BTreeMap<String, (Vec<u8>, u32)>,
    failures: u64,
}

#[derive(Default)]
struct Quiet;
impl Observer for Quiet {
    fn warn(&mut self, _message: &str) {}
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);
impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receiver_killed_at_random_points_loses_and_doubles_no_batch() {
    let kills: usize = std::env::var("RAINLOGS_PUSH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("RAINLOGS_PUSH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("receiver kill campaign: {kills} kills, RAINLOGS_PUSH_SEED={seed}");

    let mut env = TestEnv::new().await;
    env.src.set("RAINLOGS_MASTER_KEYS", MASTER);
    let zone = env.insert_zone(60, Utc::now()).await;
    rainlogs_archive::catalog::zone::set_mode(
        &env.app.pool,
        &zone.to_string(),
        rainlogs_archive::catalog::zone::ZoneMode::Push,
        "test",
    )
    .await
    .unwrap();
    let created = push::create_destination(&env.app.pool, zone, "http_requests")
        .await
        .unwrap();
    let secret = created.secret.expose_secret().to_owned();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut settings = env.src.clone();
    for (k, v) in [
        ("RAINLOGS_RECEIVER_LISTEN", format!("127.0.0.1:{port}")),
        ("RAINLOGS_SCHEDULER_INTERVAL_MS", "250".into()),
        ("RAINLOGS_RECONCILE_AFTER_MS", "3000".into()),
        ("RAINLOGS_LEASE_MS", "4000".into()),
        ("RAINLOGS_IDLE_WAIT_MS", "200".into()),
    ] {
        settings.set(k, v);
    }
    let dir = std::env::temp_dir().join(format!("rainlogs-push-kill-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("env");
    rainlogs_integration_tests::write_env_file(&settings, &env_file);
    let log = dir.join("receiver.log");
    let receiver_bin = sibling("rainlogs-receiver");
    let url = format!("http://127.0.0.1:{port}/push/{}", created.destination.id);
    let up = |url: String| async move {
        // Any HTTP answer means the process is serving (an empty POST is refused 401).
        reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .ok()
            .map(|_| ())
    };
    let mut receiver = Proc::spawn(&receiver_bin, &[], &env_file, &log);
    wait_for("the receiver to serve", SETTLE, || up(url.clone())).await;

    // Pushers: each re-sends its current batch until a 2xx, like Cloudflare.
    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = DateTime::parse_from_rfc3339("2026-12-02T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let (sent, stop, url, secret) = (sent.clone(), stop.clone(), url.clone(), secret.clone());
        pushers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let start = t0 + TimeDelta::minutes((i * PUSHERS + p) as i64);
                let plain = batch(p, i, start);
                let body = gzip(&plain);
                let tag = format!("p{p}b{i}");
                sent.lock().unwrap().batches.insert(tag.clone(), (plain, 0));
                let deadline = tokio::time::Instant::now() + RESEND_FOR;
                loop {
                    let resp = client
                        .post(&url)
                        .header("authorization", format!("Bearer {secret}"))
                        .header("content-encoding", "gzip")
                        .body(body.clone())
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status().is_success() => {
                            sent.lock().unwrap().batches.get_mut(&tag).unwrap().1 += 1;
                            break;
                        }
                        Ok(r) => assert!(
                            r.status().is_server_error() || r.status() == 429,
                            "{tag}: unexpected {}",
                            r.status()
                        ),
                        Err(_) => {}
                    }
                    sent.lock().unwrap().failures += 1;
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{tag} not accepted within {RESEND_FOR:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                i += 1;
            }
        }));
    }

    // The kill points: random pauses while pushes flow, so kills land mid-body,
    // mid-seal, between the staging PUT and the commit, and between batches.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..700))).await;
        receiver.kill9();
        receiver = Proc::spawn(&receiver_bin, &[], &env_file, &log);
        wait_for("the receiver to serve again", SETTLE, || up(url.clone())).await;
    }
    // Let the last batches through, then stop pushing and drain every pusher.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for p in pushers {
        p.await.expect("pusher ends without a failed assertion");
    }
    receiver.kill9();
    let (batches, failures) = {
        let s = sent.lock().unwrap();
        (s.batches.clone(), s.failures)
    };
    eprintln!(
        "{} batches acknowledged, {failures} deliveries cut or refused and re-sent",
        batches.len()
    );
    assert!(batches.len() >= PUSHERS, "pushers made progress");
    assert!(failures > 0, "the kills cut some deliveries");
    assert!(batches.values().all(|(_, acks)| *acks == 1));

    // Exactly one row per sent batch, matched by content.
    let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
        "SELECT content_sha256, record_count FROM push_batches WHERE destination_id = $1",
    )
    .bind(created.destination.id)
    .fetch_all(&env.app.pool)
    .await
    .unwrap();
    let expected: BTreeSet<Vec<u8>> = batches
        .values()
        .map(|(plain, _)| Sha256::digest(plain).to_vec())
        .collect();
    let stored: BTreeSet<Vec<u8>> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(rows.len(), batches.len(), "one row per batch, none twice");
    assert_eq!(
        stored, expected,
        "every stored batch was sent, every sent one stored"
    );

    // `rainlogs run` archives them: one window, one link each.
    let run_log = dir.join("run.log");
    let _run = Proc::spawn(&sibling("rainlogs"), &["run"], &env_file, &run_log);
    let total = batches.len() as i64;
    wait_for("every batch archived", SETTLE, || {
        let pool = env.app.pool.clone();
        async move {
            let archived: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM windows WHERE zone_id = $1 AND batch_id IS NOT NULL
                   AND state = 'archived'",
            )
            .bind(zone)
            .fetch_one(&pool)
            .await
            .ok()?;
            (archived == total).then_some(())
        }
    })
    .await;
    let chain_kms = KmsService::new(
        env.app.pool.clone(),
        MasterKeyring::parse(MASTER, None).unwrap(),
        "test",
    );
    let report = chain::verify_zone(&env.app.pool, &chain_kms, zone)
        .await
        .unwrap();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.links_checked, batches.len() as u64);

    // Restore: every record of every acknowledged batch, once.
    let keyring = MasterKeyring::parse(MASTER, None).unwrap();
    let kms: Arc<dyn Kms> = Arc::new(KmsService::new(env.app.pool.clone(), keyring, "test"));
    let out = SharedBuf::default();
    let req = Request {
        zone: zone.to_string(),
        tenant: None,
        from: t0 - TimeDelta::hours(1),
        to: t0 + TimeDelta::days(2),
        filters: Vec::new(),
        match_any: false,
        max_window_bytes: 64 << 20,
        dataset: "http_requests".into(),
    };
    let source = Source::Catalog {
        pool: env.app.pool.clone(),
        store: env.app.store.clone(),
        kms,
    };
    restore::restore(&source, &req, Box::new(out.clone()), &mut Quiet)
        .await
        .expect("restore");
    let mut restored: Vec<String> = String::from_utf8(out.0.lock().unwrap().clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut wanted: Vec<String> = batches
        .values()
        .flat_map(|(plain, _)| {
            String::from_utf8(plain.clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    restored.sort();
    wanted.sort();
    assert_eq!(restored.len(), wanted.len());
    assert!(
        restored == wanted,
        "restored records differ from the acknowledged ones"
    );

    // What a kill left in staging: sealed objects that no batch row names.
    let staged = env.app.store.list_all("staging/").await.unwrap();
    for o in &staged {
        let named: i64 =
            sqlx::query_scalar("SELECT count(*) FROM push_batches WHERE staging_key = $1")
                .bind(&o.key)
                .fetch_one(&env.app.pool)
                .await
                .unwrap();
        assert_eq!(named, 0, "{} is still staged for an archived batch", o.key);
        let head = env.app.store.get(&o.key).await.unwrap();
        assert!(head.starts_with(b"RLSEALED"), "{} is not sealed", o.key);
    }
    eprintln!(
        "{} stray staged objects (never acknowledged) for the sweep",
        staged.len()
    );
    drop(_run);
    let _ = std::fs::remove_dir_all(&dir);
    env.teardown().await;
}
