//! Garage as a three-container cluster (replication factor 3, on its own Docker network)
//! under the archive pipeline — the node-loss scenarios of a production cluster:
//!
//! - a node `docker kill`ed mid-archive: archiving and restore go on, nothing is lost;
//! - a node `docker network disconnect`ed while a zone is archived and connected again: after
//!   Garage's repair it holds what the others hold — with the other two killed, it alone
//!   restores every record and verifies clean;
//! - two nodes down: writes fail retryably (the reason on the window), nothing is marked
//!   archived, and everything completes once they are back.
//!
//! Node 0 is the S3 entry point (a production cluster puts a load balancer there); the
//! tests take the others away. Postgres and Redis are the harness's. Windows are
//! archived by the demo machinery (simulator → fetch → encrypt → upload), the archive
//! checked with `verify_restore`'s helpers: deep verification and a restore equal to
//! what the simulator served.

use std::time::Duration;

use rainlogs_cli::demo::run_demo;
use rainlogs_cli::logs;
use rainlogs_core::config::S3Config;
use rainlogs_core::storage::ObjectStore;
use rainlogs_integration_tests::containers::GarageCluster;
use rainlogs_integration_tests::{wait_for, TestEnv};

use crate::verify_restore::{lines, one_zone, tmp, with_keyring, Archive};

const RPM: u64 = 60;

async fn count(env: &TestEnv, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&env.app.pool)
        .await
        .expect("count")
}

/// A test database, Redis prefix and bucket prefix, with the cluster as S3.
async fn env_on(cluster: &GarageCluster) -> TestEnv {
    let endpoint = cluster.s3_endpoint().await.expect("cluster endpoint");
    TestEnv::with_overrides(&[(S3Config::ENDPOINT, endpoint)]).await
}

/// Every window archived with one verified link each, deep verification clean and the
/// whole stretch restored equal to what the simulator served.
async fn assert_whole(a: &Archive, windows: i64) {
    let archived = count(
        &a.env,
        "SELECT count(*) FROM windows w JOIN archived_objects o ON o.window_id = w.id \
         JOIN chain_links l ON l.window_id = w.id WHERE w.state = 'archived'",
    )
    .await;
    assert_eq!(
        archived, windows,
        "every window archived, catalogued, linked"
    );
    assert_eq!(
        a.verify(true).await,
        Vec::new(),
        "deep verification is clean"
    );
    let out = tmp("cluster.ndjson");
    let stats = logs::get(&a.env.src, &a.get_args(a.first, a.last, &out))
        .await
        .expect("restore");
    assert_eq!(stats.gaps, 0);
    assert_eq!(
        lines(&std::fs::read(&out).unwrap()),
        a.served(a.first, a.last),
        "record for record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_archive_loses_nothing_and_restore_goes_on() {
    let cluster = GarageCluster::start(3, "consistent")
        .await
        .expect("garage cluster");
    let mut env = env_on(&cluster).await;
    let kms = with_keyring(&mut env);
    let app = env.app.clone();
    let demo = tokio::spawn(async move { run_demo(&app, &one_zone(90, RPM)).await });

    wait_for("windows archiving", Duration::from_secs(120), || async {
        (count(
            &env,
            "SELECT count(*) FROM windows WHERE state = 'archived'",
        )
        .await
            >= 3)
            .then_some(())
    })
    .await;
    cluster.kill(2).await.expect("docker kill");
    let (done, all) = (
        count(
            &env,
            "SELECT count(*) FROM windows WHERE state = 'archived'",
        )
        .await,
        count(&env, "SELECT count(*) FROM windows").await,
    );
    assert!(
        done < all,
        "the kill landed after archiving ended ({done} of {all})"
    );

    let report = demo.await.unwrap().expect("archiving goes on");
    assert!(report.succeeded(), "{report:?}");
    cluster
        .wait_status("degraded", Duration::from_secs(120))
        .await
        .expect("the entry node counts the killed one out");
    let a = Archive::of(env, kms, &report, RPM).await;
    assert_whole(&a, all).await;
    a.env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_and_reconnected_catches_up_and_verifies_clean() {
    let cluster = GarageCluster::start(3, "degraded")
        .await
        .expect("garage cluster");
    let mut env = env_on(&cluster).await;
    let kms = with_keyring(&mut env);
    // A first zone archived with every node, then a second one while node 2 is cut off:
    // every write of the second reaches two replicas only.
    let first = run_demo(&env.app, &one_zone(10, RPM))
        .await
        .expect("archiving");
    assert!(first.succeeded(), "{first:?}");
    cluster
        .disconnect(2)
        .await
        .expect("docker network disconnect");
    let report = run_demo(&env.app, &one_zone(30, RPM))
        .await
        .expect("archiving goes on without the node");
    assert!(report.succeeded(), "{report:?}");

    cluster.connect(2).await.expect("docker network connect");
    cluster
        .wait_status("healthy", Duration::from_secs(120))
        .await
        .expect("the node rejoins");
    // Garage syncs its tables by itself every 10 minutes; an operator's repair starts
    // it now.
    cluster.nodes[0]
        .garage(&["repair", "--all-nodes", "--yes", "tables"])
        .await
        .expect("garage repair tables");
    let tables = |d: &rainlogs_integration_tests::containers::NodeData| {
        ["object", "version", "block_ref"].map(|t| d.tables.get(t).copied())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let (first, third) = (cluster.node_data(0).await, cluster.node_data(2).await);
        if let (Ok(first), Ok(third)) = (&first, &third) {
            if tables(first) == tables(third) {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rejoined node's tables do not catch up: node 0 {first:?}, node 2 {third:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Block data follows by resync, queued with delays; the operator's procedure makes
    // it now: recount references, queue every missing block, resync at full speed. The
    // wait is on the blocks on node 2's own disk, since the test below reads from it
    // alone. A repair re-run now and then covers blocks whose first fetch failed.
    for args in [
        &["worker", "set", "--all-nodes", "resync-tranquility", "0"][..],
        &["repair", "--all-nodes", "--yes", "block-rc"],
    ] {
        cluster.nodes[0]
            .garage(args)
            .await
            .unwrap_or_else(|e| panic!("garage {args:?}: {e}"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut next_repair = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_repair {
            cluster.nodes[0]
                .garage(&["repair", "--all-nodes", "--yes", "blocks"])
                .await
                .expect("garage repair blocks");
            next_repair = tokio::time::Instant::now() + Duration::from_secs(60);
        }
        let (first, third) = (
            cluster.nodes[0].stored_blocks().await,
            cluster.nodes[2].stored_blocks().await,
        );
        if let (Ok(first), Ok(third)) = (&first, &third) {
            if first > &0 && first == third {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rejoined node does not fetch its blocks: node 0 holds {first:?}, node 2 {third:?} ({:?})",
            cluster.node_data(2).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let a = Archive::of(env, kms, &report, RPM).await;
    let windows = count(&a.env, "SELECT count(*) FROM windows").await;
    assert_whole(&a, windows).await;

    // The proof it holds everything: the other two nodes go away and the rejoined node
    // alone serves every object (this cluster's reads need one node: `degraded`).
    cluster.kill(0).await.expect("docker kill");
    cluster.kill(1).await.expect("docker kill");
    let mut alone = a.env.src.clone();
    alone.set(
        S3Config::ENDPOINT,
        cluster.nodes[2].s3_endpoint().await.unwrap(),
    );
    let served = a.served(a.first, a.last);
    wait_for(
        "the rejoined node alone restoring everything",
        Duration::from_secs(180),
        || {
            let (alone, a, served) = (&alone, &a, &served);
            async move {
                let out = tmp("alone.ndjson");
                logs::get(alone, &a.get_args(a.first, a.last, &out))
                    .await
                    .ok()?;
                (lines(&std::fs::read(&out).ok()?) == *served).then_some(())
            }
        },
    )
    .await;
    let store = ObjectStore::connect(&S3Config::from_source(&alone).unwrap()).await;
    let (_, findings) = a.verify_through(store, &a.args(true)).await;
    assert_eq!(
        findings,
        Vec::new(),
        "deep verification through the rejoined node alone"
    );
    a.env.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_down_fail_writes_retryably_and_all_completes_after_recovery() {
    let cluster = GarageCluster::start(3, "consistent")
        .await
        .expect("garage cluster");
    // Garage notices a peer gone only after missed pings (about a minute); until then a
    // write waits for the dead replicas' answers: keep each S3 attempt short.
    let endpoint = cluster.s3_endpoint().await.expect("cluster endpoint");
    let mut env = TestEnv::with_overrides(&[
        (S3Config::ENDPOINT, endpoint),
        (S3Config::TIMEOUT_MS, "5000".to_owned()),
    ])
    .await;
    let kms = with_keyring(&mut env);
    cluster.kill(1).await.expect("docker kill");
    cluster.kill(2).await.expect("docker kill");

    let app = env.app.clone();
    let demo = tokio::spawn(async move { run_demo(&app, &one_zone(5, RPM)).await });
    // Every window's first stage writes to the bucket: each fails, is noted on its
    // window and retried — none fails for good, none is archived.
    let noted: String = wait_for(
        "a failed write noted on a window",
        Duration::from_secs(180),
        || async {
            sqlx::query_scalar(
                "SELECT last_error FROM windows WHERE last_error IS NOT NULL LIMIT 1",
            )
            .fetch_optional(&env.app.pool)
            .await
            .expect("windows")
        },
    )
    .await;
    assert!(noted.starts_with("attempt "), "{noted}");
    let nothing = [
        "SELECT count(*) FROM windows WHERE state IN ('archived', 'failed_permanent')",
        "SELECT count(*) FROM archived_objects",
        "SELECT count(*) FROM chain_links",
    ];
    for sql in nothing {
        assert_eq!(count(&env, sql).await, 0, "{sql} while two nodes are down");
    }

    cluster.restart(1).await.expect("node back");
    cluster.restart(2).await.expect("node back");
    cluster
        .wait_status("healthy", Duration::from_secs(120))
        .await
        .expect("the nodes rejoin");
    let report = demo.await.unwrap().expect("archiving completes");
    assert!(report.succeeded(), "{report:?}");
    let a = Archive::of(env, kms, &report, RPM).await;
    let windows = count(&a.env, "SELECT count(*) FROM windows").await;
    assert!(windows >= 4, "{windows}");
    assert_whole(&a, windows).await;
    a.env.teardown().await;
}
