//! Bad configuration ends the `rainlogs` binary with a non-zero exit and one clear line
//! naming what is wrong — never a panic, a backtrace or a secret.
//!
//! These run the real binary against the real services from the stack's env file,
//! overriding one setting at a time.

use std::path::PathBuf;
use std::process::{Command, Output};

fn env_file() -> PathBuf {
    if let Some(explicit) = std::env::var_os("RAINLOGS_ENV_FILE") {
        return explicit.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join(".rainlogs/env"))
        .find(|p| p.is_file())
        .expect("run `bash infra/local/stack.sh up` first (writes .rainlogs/env)")
}

/// Runs `rainlogs ARGS` with only the env file's settings plus `overrides`.
fn rainlogs(args: &[&str], env_file: &std::path::Path, overrides: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rainlogs"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RAINLOGS_ENV_FILE", env_file)
        .env("RUST_BACKTRACE", "1");
    for (k, v) in overrides {
        cmd.env(k, v);
    }
    cmd.output().expect("rainlogs runs")
}

/// The failure is exactly one line starting `error:` and containing every `needle`.
fn assert_one_clear_line(out: &Output, needles: &[&str]) -> String {
    assert!(!out.status.success(), "must fail: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{needle:?} missing from: {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    stderr
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn empty_env_file() -> tempfile_path::TempPath {
    tempfile_path::TempPath::new("")
}

mod tempfile_path {
    /// A file under the temp dir removed on drop.
    pub struct TempPath(std::path::PathBuf);
    impl TempPath {
        pub fn new(content: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "rainlogs-cli-test-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            std::fs::write(&path, content).unwrap();
            Self(path)
        }
    }
    impl std::ops::Deref for TempPath {
        type Target = std::path::Path;
        fn deref(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn check_succeeds_with_the_stack_configuration() {
    let out = rainlogs(&["check"], &env_file(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_variable_is_named() {
    let empty = empty_env_file();
    let out = rainlogs(&["check"], &empty, &[]);
    assert_one_clear_line(&out, &["RAINLOGS_DATABASE_URL", "is not set"]);
}

#[test]
fn an_invalid_value_is_named_with_what_is_wrong() {
    let out = rainlogs(
        &["check"],
        &env_file(),
        &[("RAINLOGS_S3_FORCE_PATH_STYLE", "sometimes")],
    );
    assert_one_clear_line(
        &out,
        &["RAINLOGS_S3_FORCE_PATH_STYLE", "expected true or false"],
    );
}

#[test]
fn wrong_s3_credentials_say_access_denied_without_the_secret() {
    let secret = "wrongwrongwrongwrongwrongwrongwrongwrong";
    let out = rainlogs(
        &["check"],
        &env_file(),
        &[("RAINLOGS_S3_SECRET_ACCESS_KEY", secret)],
    );
    let stderr = assert_one_clear_line(&out, &["access denied", "RAINLOGS_S3_SECRET_ACCESS_KEY"]);
    assert!(!stderr.contains(secret));
}

#[test]
fn garage_stopped_says_s3_is_unreachable_and_where() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let out = rainlogs(
        &["check"],
        &env_file(),
        &[("RAINLOGS_S3_ENDPOINT", &endpoint)],
    );
    assert_one_clear_line(&out, &["s3", "unreachable", &endpoint]);
}

#[test]
fn postgres_unreachable_says_so_without_the_password() {
    let url = format!(
        "postgres://rainlogs:hunter2secret@127.0.0.1:{}/rainlogs",
        closed_port()
    );
    let out = rainlogs(&["check"], &env_file(), &[("RAINLOGS_DATABASE_URL", &url)]);
    let stderr = assert_one_clear_line(&out, &["postgres: cannot connect", "127.0.0.1"]);
    assert!(!stderr.contains("hunter2secret"), "{stderr}");
}

#[test]
fn redis_unreachable_says_so() {
    let url = format!("redis://127.0.0.1:{}/0", closed_port());
    let out = rainlogs(&["check"], &env_file(), &[("RAINLOGS_REDIS_URL", &url)]);
    assert_one_clear_line(&out, &["redis: cannot connect", &url]);
}

#[test]
fn an_unreadable_env_file_is_named() {
    let out = rainlogs(
        &["check"],
        std::path::Path::new("/nonexistent/rainlogs/env"),
        &[],
    );
    assert_one_clear_line(&out, &["/nonexistent/rainlogs/env"]);
}

/// Every subcommand of today (and each nested one) still parses and explains itself:
/// the command surface did not shrink when the CLI moved into its own crate.
#[test]
fn every_subcommand_answers_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["check"],
        &["migrate"],
        &["run"],
        &["queue"],
        &["queue", "stats"],
        &["queue", "list"],
        &["queue", "inspect"],
        &["queue", "redrive"],
        &["queue", "purge"],
        &["queue", "pause"],
        &["queue", "resume"],
        &["probe"],
        &["self-test"],
        &["demo"],
        &["kms"],
        &["kms", "status"],
        &["kms", "rotate-master"],
        &["kms", "rotate-tenant"],
        &["kms", "shred-tenant"],
        &["kms", "approve"],
        &["kms", "export-tenant-key"],
        &["tenant", "add"],
        &["tenant", "list"],
        &["tenant", "set"],
        &["zone", "add"],
        &["zone", "list"],
        &["zone", "pause"],
        &["zone", "resume"],
        &["zone", "set"],
        &["zone", "coverage"],
        &["zone", "retry-failed"],
        &["zone", "mode"],
        &["logpush"],
        &["logpush", "create"],
        &["logpush", "list"],
        &["logpush", "status"],
        &["logpush", "disable"],
        &["logpush", "delete"],
        &["decrypt"],
        &["verify"],
        &["logs", "get"],
        &["prune"],
        &["user", "add"],
        &["user", "list"],
        &["user", "disable"],
        &["key", "create"],
        &["key", "list"],
        &["key", "revoke"],
    ];
    for path in commands {
        let mut args: Vec<&str> = path.to_vec();
        args.push("--help");
        let out = Command::new(env!("CARGO_BIN_EXE_rainlogs"))
            .args(&args)
            .env_clear()
            .output()
            .expect("rainlogs runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "rainlogs {args:?}: {out:?}");
        assert!(
            stdout.contains("Usage: rainlogs"),
            "rainlogs {args:?}:\n{stdout}"
        );
        if let Some(last) = path.last() {
            assert!(
                stdout.contains(last),
                "rainlogs {args:?} names itself:\n{stdout}"
            );
        }
    }
}
