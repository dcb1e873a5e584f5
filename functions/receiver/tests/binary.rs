//! The receiver binary as it deploys: a bad setting is one line naming the variable
//! (before any connection is tried), and with the stack's settings it serves pushes —
//! an unknown destination is refused 401 without reading the body.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn receiver() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rainlogs-receiver"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RAINLOGS_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn env_file() -> String {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join(".rainlogs/env"))
        .find(|p| p.is_file())
        .expect("run `bash infra/local/stack.sh up` first")
        .display()
        .to_string()
}

fn one_line_error(out: std::process::Output, names: &[&str]) {
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for name in names {
        assert!(stderr.contains(name), "{name} not in: {stderr}");
    }
}

#[test]
fn half_a_tls_configuration_is_refused_naming_both_variables() {
    let out = receiver()
        .env("RAINLOGS_ENV_FILE", env_file())
        .env("RAINLOGS_RECEIVER_TLS_CERT", "/nonexistent/cert.pem")
        .output()
        .unwrap();
    one_line_error(
        out,
        &["RAINLOGS_RECEIVER_TLS_CERT", "RAINLOGS_RECEIVER_TLS_KEY"],
    );
}

#[test]
fn a_bad_limit_is_refused_before_connecting() {
    // No database configured at all: the limit is what gets reported.
    let empty = std::env::temp_dir().join(format!("rl-receiver-empty-{}", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    let out = receiver()
        .env("RAINLOGS_ENV_FILE", &empty)
        .env("RAINLOGS_RECEIVER_MAX_IN_FLIGHT", "0")
        .output()
        .unwrap();
    std::fs::remove_file(&empty).ok();
    one_line_error(out, &["RAINLOGS_RECEIVER_MAX_IN_FLIGHT"]);
}

#[tokio::test]
async fn it_serves_and_refuses_an_unknown_destination() {
    // The stack's database with the schema, as `rainlogs migrate` leaves it.
    let file = env_file();
    let src = rainlogs_core::config::ConfigSource::from_pairs(
        dotenvy::from_path_iter(&file)
            .unwrap()
            .filter_map(Result::ok),
    );
    let db = rainlogs_core::config::DatabaseConfig::from_source(&src).unwrap();
    let pool = rainlogs_core::db::connect(&db).await.unwrap();
    rainlogs_core::db::migrate(&pool).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = receiver()
        .env("RAINLOGS_ENV_FILE", &file)
        .env("RAINLOGS_RECEIVER_LISTEN", format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/push/00000000-0000-0000-0000-000000000000");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        // A plain HTTP/1.1 request over a socket: no client library needed here.
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let req = format!(
                "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                url.trim_start_matches(&format!("http://127.0.0.1:{port}"))
            );
            s.write_all(req.as_bytes()).unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).ok();
            if let Some(line) = answer.lines().next() {
                break line.to_owned();
            }
        }
        assert!(Instant::now() < deadline, "receiver did not serve");
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
}
