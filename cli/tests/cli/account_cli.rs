//! `rainlogs user …` and `rainlogs key …`, the real binary, against real Postgres: the
//! first admin is bootstrapped, its key printed once (stdout, nothing else there) and
//! accepted by the API's authentication; keys list without secrets; a revoked key and a
//! disabled user's key are refused; each change is in the audit log.

use std::path::Path;

use chrono::Utc;
use rainlogs_archive::audit::{self, AuditFilter};
use rainlogs_archive::catalog::account::{self, AuthError, Role};
use rainlogs_integration_tests::{write_env_file, TestEnv};

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn rainlogs(env_file: &Path, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rainlogs"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RAINLOGS_ENV_FILE", env_file)
        .env("RAINLOGS_API_KEY_ENV", "test")
        .env("USER", "ops")
        .output()
        .await
        .expect("rainlogs runs");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn user_and_key_commands_bootstrap_the_first_admin() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    write_env_file(&env.src, &env_file);
    let pool = &env.app.pool;

    let r = rainlogs(
        &env_file,
        &["user", "add", "root", "--provider", "--role", "admin"],
    )
    .await;
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let r = rainlogs(
        &env_file,
        &["key", "create", "--user", "root", "--name", "bootstrap"],
    )
    .await;
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let key = r.stdout.trim().to_owned();
    assert!(
        key.starts_with("rl_test_") && !key.contains('\n'),
        "only the key on stdout: {key:?}"
    );
    let who = account::authenticate(pool, &key, Utc::now())
        .await
        .expect("the key works");
    assert_eq!(
        (who.role, who.tenant_id, who.user_name.as_str()),
        (Role::Admin, None, "root")
    );

    let r = rainlogs(&env_file, &["key", "list"]).await;
    assert!(
        r.ok && r.stdout.contains(&key[..16]) && !r.stdout.contains(&key),
        "{}",
        r.stdout
    );

    let r = rainlogs(
        &env_file,
        &["tenant", "add", "acme", "--retention-days", "400"],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let r = rainlogs(
        &env_file,
        &[
            "user", "add", "alice", "--tenant", "acme", "--role", "viewer",
        ],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let r = rainlogs(&env_file, &["user", "add", "bob", "--role", "viewer"]).await;
    assert!(
        !r.ok && r.stderr.contains("--tenant"),
        "a tenant or --provider: {}",
        r.stderr
    );
    let r = rainlogs(
        &env_file,
        &["user", "add", "eve", "--tenant", "acme", "--role", "root"],
    )
    .await;
    assert!(!r.ok && r.stderr.contains("root"), "{}", r.stderr);
    let r = rainlogs(&env_file, &["user", "list", "--tenant", "acme"]).await;
    assert!(
        r.ok && r.stdout.contains("alice") && !r.stdout.contains("root"),
        "{}",
        r.stdout
    );

    let r = rainlogs(
        &env_file,
        &[
            "key",
            "create",
            "--user",
            "alice",
            "--expires-in-days",
            "30",
        ],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let alice_key = r.stdout.trim().to_owned();
    let alice = account::authenticate(pool, &alice_key, Utc::now())
        .await
        .unwrap();
    assert_eq!(alice.tenant_name.as_deref(), Some("acme"));
    let r = rainlogs(&env_file, &["user", "disable", "alice"]).await;
    assert!(r.ok, "{}", r.stderr);
    assert!(matches!(
        account::authenticate(pool, &alice_key, Utc::now()).await,
        Err(AuthError::UserDisabled(_))
    ));

    let r = rainlogs(&env_file, &["key", "revoke", &who.key_id.to_string()]).await;
    assert!(r.ok, "{}", r.stderr);
    assert!(matches!(
        account::authenticate(pool, &key, Utc::now()).await,
        Err(AuthError::Revoked(_))
    ));

    let events = audit::list(pool, &AuditFilter::default(), None, 100)
        .await
        .unwrap();
    let mut ops: Vec<&str> = events.iter().map(|e| e.operation.as_str()).collect();
    ops.reverse();
    assert_eq!(
        ops,
        [
            "user.add",
            "key.create",
            "tenant.add",
            "user.add",
            "key.create",
            "user.disable",
            "key.revoke"
        ]
    );
    assert!(events.iter().all(|e| e.actor.starts_with("cli:ops:")));
    assert!(!events.iter().any(|e| e.detail.to_string().contains(&key)));
    env.teardown().await;
}
