//! What an operator sees: the Prometheus endpoint and the `rainlogs queue` commands,
//! against a real Redis.

use rainlogs_integration_tests::dispatch as common;

use std::process::Command;
use std::time::Duration;

use common::*;
use rainlogs_dispatcher::metrics::Metrics;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

// Multi-threaded: the CLI child blocks this thread while the endpoint must answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_depth_counters_and_latency() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let metrics = Metrics::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let addr = metrics
        .clone()
        .serve(r.queue.clone(), "127.0.0.1:0".parse().unwrap(), stop_rx)
        .await
        .unwrap();
    let worker = rec
        .worker(&r.queue, fast_config("m", 4))
        .with_metrics(metrics);
    let (tx, h) = spawn_worker(worker);
    for _ in 0..3 {
        r.queue.enqueue(spec("m", "t.ok", json!({}))).await.unwrap();
    }
    r.queue
        .enqueue(spec("m", "t.fail", json!({})))
        .await
        .unwrap();
    let mut s = spec("m", "t.retry", json!({"succeed_on": 2}));
    s.max_attempts = Some(3);
    r.queue.enqueue(s).await.unwrap();
    wait_for("settled", WAIT, || async {
        let s = r.queue.stats("m").await.unwrap();
        (s.processed == 4 && s.dead_lettered == 1).then_some(())
    })
    .await;
    stop(tx, h).await;
    let body = http_get(addr, "/metrics").await;
    for line in [
        r#"rainlogs_tasks_processed_total{queue="m"} 4"#,
        r#"rainlogs_tasks_dead_total{queue="m"} 1"#,
        r#"rainlogs_tasks_retried_total{queue="m"} 1"#,
        r#"rainlogs_tasks_failed_total{queue="m"} 2"#,
        r#"rainlogs_queue_depth{queue="m",state="dead"} 1"#,
        r#"rainlogs_queue_depth{queue="m",state="ready"} 0"#,
        r#"rainlogs_tasks_in_flight{queue="m"} 0"#,
        r#"rainlogs_task_start_latency_seconds_count{queue="m"} 6"#,
    ] {
        assert!(body.contains(line), "missing {line:?} in:\n{body}");
    }
    // `rainlogs queue stats --from` prints the same for a terminal.
    let url = format!("http://{addr}/metrics");
    let (ok, out, err) = rainlogs(&r, &["queue", "stats", "m", "--from", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("DEAD#") && out.contains("P99"), "{out}");
    let row = out
        .lines()
        .filter(|l| l.starts_with("m "))
        .nth(1)
        .unwrap_or_else(|| panic!("a latency row for queue m in:\n{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[1..3],
        &["0", "6"],
        "in-flight 0, 6 attempts started: {row}"
    );
    let _ = stop_tx.send(true);
    r.cleanup().await;
}

fn rainlogs(r: &TestRedis, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rainlogs"))
        .args(args)
        .env("RAINLOGS_ENV_FILE", "/dev/null")
        .env("RUST_LOG", "warn")
        .envs(r.child_env())
        .output()
        .expect("rainlogs runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn queue_cli_lists_inspects_redrives_purges_pauses_and_prints_stats() {
    let r = TestRedis::new().await;
    let rec = Recorder::new("w");
    let (tx, h) = spawn_worker(rec.worker(&r.queue, fast_config("ops", 4)));
    let bad = r
        .queue
        .enqueue(spec("ops", "t.fail", json!({"n": 1})))
        .await
        .unwrap();
    r.queue.push_raw("ops", b"garbage").await.unwrap();
    wait_for("two dead", WAIT, || async {
        (r.queue.stats("ops").await.unwrap().depth.dead == 2).then_some(())
    })
    .await;
    stop(tx, h).await;
    let id = bad.id.to_string();

    let (ok, out, err) = rainlogs(&r, &["queue", "list", "ops"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&id) && out.contains("t.refused") && out.contains("envelope.invalid"),
        "{out}"
    );

    let (ok, out, err) = rainlogs(&r, &["queue", "inspect", "ops", &id]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["error"]["code"], "t.refused");
    assert_eq!(v["envelope"]["payload"], json!({"n": 1}));

    let (ok, _, err) = rainlogs(&r, &["queue", "inspect", "ops", "no-such-id"]);
    assert!(!ok && err.contains("no dead letter"), "{err}");

    let (ok, out, err) = rainlogs(&r, &["queue", "pause", "ops"]);
    assert!(ok, "{err}: {out}");
    let (ok, out, err) = rainlogs(&r, &["queue", "redrive", "ops", &id]);
    assert!(ok, "{err}");
    assert!(out.contains("1 of 1"), "{out}");
    let (ok, out, _) = rainlogs(&r, &["queue", "stats", "ops", "--json"]);
    assert!(ok);
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats[0]["paused"], true);
    assert_eq!(stats[0]["depth"]["ready"], 1);
    assert_eq!(stats[0]["depth"]["dead"], 1);
    assert_eq!(stats[0]["dead_lettered"], 2);

    let (ok, out, _) = rainlogs(&r, &["queue", "stats"]);
    assert!(ok && out.contains("ops") && out.contains("paused"), "{out}");
    let (ok, _, _) = rainlogs(&r, &["queue", "resume", "ops"]);
    assert!(ok);
    assert!(!r.queue.stats("ops").await.unwrap().paused);

    let (ok, _, err) = rainlogs(&r, &["queue", "purge", "ops"]);
    assert!(
        !ok && err.contains("--all"),
        "purge needs ids or --all: {err}"
    );
    let (ok, out, _) = rainlogs(&r, &["queue", "purge", "ops", "--all"]);
    assert!(ok && out.contains("purged 1"), "{out}");
    assert_eq!(r.queue.stats("ops").await.unwrap().depth.dead, 0);
    r.cleanup().await;
}
