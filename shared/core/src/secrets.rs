//! Settings kept in AWS Secrets Manager instead of the environment.
//!
//! A deployment on AWS Lambda must not put the master keyring, the database password or
//! the bucket's secret key in a function's environment variables (they show in the
//! console and the API to anyone who may read the function's configuration). There,
//! `RAINLOGS_SECRETS_ID` names one Secrets Manager secret (name or ARN) whose
//! `SecretString` is a JSON object of `RAINLOGS_*` settings, e.g.
//! `{"RAINLOGS_MASTER_KEYS": "...", "RAINLOGS_DATABASE_URL": "postgres://..."}`;
//! [`ConfigSource::from_env`](crate::config::ConfigSource::from_env) reads it once at
//! start-up, through the AWS SDK (credentials and region from the standard chain: the
//! function's execution role), and its settings rank between the env file and the
//! process environment. Only `RAINLOGS_*` keys with string values are accepted, and no
//! error ever carries a value of the secret.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::config::{ConfigError, PREFIX};
use crate::error::error_chain;

/// Names the secret whose JSON object holds settings.
pub const SECRETS_ID_VAR: &str = "RAINLOGS_SECRETS_ID";

/// The settings in the secret `id`, read through `client`.
pub async fn fetch(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        var: SECRETS_ID_VAR.into(),
        reason,
    };
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            let why = match &e {
                SdkError::ServiceError(ctx) => format!(
                    "{}: {}",
                    ctx.err().code().unwrap_or("error"),
                    ctx.err().message().unwrap_or("")
                ),
                other => error_chain(other),
            };
            invalid(format!(
                "cannot read secret {id:?} from Secrets Manager: {why}"
            ))
        })?;
    let text = out.secret_string().ok_or_else(|| {
        invalid(format!(
            "secret {id:?} has no SecretString (binary secrets are not read)"
        ))
    })?;
    parse(text).map_err(|reason| invalid(format!("secret {id:?}: {reason}")))
}

/// The settings of a secret's JSON text: an object of `RAINLOGS_*` → string.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    // The serde error would quote the offending part of the text: say where only.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "not JSON (line {}, column {}); expected an object of RAINLOGS_* settings",
            e.line(),
            e.column()
        )
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err("expected a JSON object of RAINLOGS_* settings".into());
    };
    let mut out = BTreeMap::new();
    for (key, value) in map {
        if !key.starts_with(PREFIX) || key == SECRETS_ID_VAR {
            return Err(format!(
                "key {key:?} is not a setting (RAINLOGS_* other than {SECRETS_ID_VAR})"
            ));
        }
        let serde_json::Value::String(value) = value else {
            return Err(format!("the value of {key} is not a string"));
        };
        out.insert(key, value);
    }
    Ok(out)
}

/// [`fetch`] with a client from the standard chain, run to completion from synchronous
/// code (the config loader), on a thread of its own so it works inside or outside a
/// Tokio runtime. Bounded: 5 s to connect, 20 s in all.
pub fn fetch_blocking(id: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let id = id.to_owned();
    let failed = |reason: String| ConfigError::Invalid {
        var: SECRETS_ID_VAR.into(),
        reason,
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed(format!("cannot start a runtime to read the secret: {e}")))?;
        rt.block_on(async {
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_timeout(Duration::from_secs(20))
                        .build(),
                )
                .load()
                .await;
            fetch(&aws_sdk_secretsmanager::Client::new(&sdk), &id).await
        })
    })
    .join()
    .map_err(|_| failed("reading the secret panicked".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_an_object_of_rainlogs_strings() {
        let got =
            parse(r#"{"RAINLOGS_MASTER_KEYS":"k1","RAINLOGS_DATABASE_URL":"postgres://u:p@h/db"}"#)
                .unwrap();
        assert_eq!(got["RAINLOGS_MASTER_KEYS"], "k1");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn anything_else_is_refused_without_quoting_the_secret() {
        for (text, needle) in [
            (r#"["RAINLOGS_X"]"#, "object"),
            (r#"{"AWS_SECRET_ACCESS_KEY":"hunter2"}"#, "not a setting"),
            (r#"{"RAINLOGS_SECRETS_ID":"loop"}"#, "not a setting"),
            (r#"{"RAINLOGS_WORKERS":8}"#, "not a string"),
            (r#"{"RAINLOGS_MASTER_KEYS":"hunter2""#, "not JSON"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
