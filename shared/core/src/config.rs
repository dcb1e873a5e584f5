//! Typed configuration, parsed once at start-up.
//!
//! Every setting is an environment variable with the `RAINLOGS_` prefix. Values may
//! also come from an env file (`KEY=value` lines): the one named by
//! `RAINLOGS_ENV_FILE`, or else the `.rainlogs/env` that `infra/local/stack.sh env`
//! writes, found by walking up from the current directory. A variable set in the
//! process environment wins over the file. On AWS, `RAINLOGS_SECRETS_ID` adds the
//! settings of one Secrets Manager secret (the master keyring, passwords) between the
//! two ([`crate::secrets`]).
//!
//! Each binary loads only the sections it needs (`DatabaseConfig`, `RedisConfig`,
//! `S3Config`, ...), so a function that never talks to Redis does not demand its URL.
//! A missing or invalid value is a [`ConfigError`] whose one-line message names the
//! variable and what is wrong with it — never the secret value itself.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// The prefix every Rainlogs variable carries.
pub const PREFIX: &str = "RAINLOGS_";
/// Names the env file explicitly.
pub const ENV_FILE_VAR: &str = "RAINLOGS_ENV_FILE";
/// Where `infra/local/stack.sh env` writes the env file, relative to the repository root.
pub const DEFAULT_ENV_FILE: &str = ".rainlogs/env";

/// A configuration problem, naming the variable at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {var} is not set ({hint})")]
    Missing { var: String, hint: &'static str },
    #[error("configuration: {var} is invalid: {reason}")]
    Invalid { var: String, reason: String },
    #[error("configuration: cannot read env file {path}: {reason}")]
    EnvFile { path: PathBuf, reason: String },
}

impl ConfigError {
    /// The variable (or file) this error is about.
    pub fn subject(&self) -> String {
        match self {
            ConfigError::Missing { var, .. } | ConfigError::Invalid { var, .. } => var.clone(),
            ConfigError::EnvFile { path, .. } => path.display().to_string(),
        }
    }
}

/// Where configuration values come from: the process environment over an optional env file.
///
/// Built once in `main` and handed to each section's `from_source`; tests build one
/// from a map so they never mutate the process environment.
#[derive(Clone, Default)]
pub struct ConfigSource {
    values: BTreeMap<String, String>,
    file: Option<PathBuf>,
}

impl fmt::Debug for ConfigSource {
    // Values may be secrets: show only which keys are present.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigSource")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .field("file", &self.file)
            .finish()
    }
}

impl ConfigSource {
    /// Process environment over the env file (explicit, or found upwards from the cwd
    /// through directories the running user or root owns: [`find_env_file`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        let explicit = std::env::var_os(ENV_FILE_VAR).map(PathBuf::from);
        let file = match explicit {
            Some(path) => Some(path),
            None => std::env::current_dir()
                .ok()
                .and_then(|cwd| find_env_file(&cwd, DEFAULT_ENV_FILE, current_uid())),
        };
        let mut values = BTreeMap::new();
        if let Some(path) = &file {
            values.extend(read_env_file(path)?);
        }
        let mut process = BTreeMap::new();
        for (key, value) in std::env::vars_os() {
            if let (Some(key), Some(value)) = (key.to_str(), value.to_str()) {
                if key.starts_with(PREFIX) || key == "AWS_LAMBDA_RUNTIME_API" {
                    process.insert(key.to_owned(), value.to_owned());
                }
            }
        }
        // Settings from Secrets Manager (AWS deployments: crate::secrets) rank between
        // the file and the process environment.
        let secret_id = process
            .get(crate::secrets::SECRETS_ID_VAR)
            .or_else(|| values.get(crate::secrets::SECRETS_ID_VAR))
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty());
        if let Some(id) = secret_id {
            values.extend(crate::secrets::fetch_blocking(&id)?);
        }
        values.extend(process);
        Ok(Self { values, file })
    }

    /// A source made of exactly these pairs (tests, embedding).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            file: None,
        }
    }

    /// Sets one value, replacing what was there.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.values.insert(key.into(), value.into());
    }

    /// Unsets one value.
    pub fn remove(&mut self, key: &str) {
        self.values.remove(key);
    }

    /// Every set value, by name (e.g. to hand the same settings to a child process).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The env file the values were read from, if any.
    pub fn env_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The raw value; empty strings count as unset.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.values
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, var: &str, hint: &'static str) -> Result<String, ConfigError> {
        self.get(var)
            .map(str::to_owned)
            .ok_or_else(|| ConfigError::Missing {
                var: var.to_owned(),
                hint,
            })
    }

    pub fn secret(&self, var: &str, hint: &'static str) -> Result<SecretString, ConfigError> {
        self.required(var, hint).map(SecretString::from)
    }

    pub fn parsed_or<T>(&self, var: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    var: var.to_owned(),
                    reason: format!("{e} (got {raw:?})"),
                }),
        }
    }

    pub fn bool_or(&self, var: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Invalid {
                    var: var.to_owned(),
                    reason: format!("expected true or false, got {v:?}"),
                }),
            },
        }
    }

    pub fn duration_ms_or(&self, var: &str, default: Duration) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parsed_or(var, default.as_millis() as u64)?;
        Ok(Duration::from_millis(ms))
    }
}

/// The effective user id of this process (`None` off Unix).
pub fn current_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        Some(unsafe { libc::geteuid() })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Looks for `relative` (`.rainlogs/env`) in `start` and its ancestors, but only
/// through directories owned by user `me` or root: the search stops at the first
/// directory owned by anyone else, and a file found is used only if it and the
/// directories between it and that ancestor are owned by `me` or root too. So a
/// `.rainlogs/env` another user planted above the working directory (a shared `/tmp`,
/// a colleague's checkout) is never read — it could point the CLI at their database or
/// bucket, or at a Cloudflare proxy that collects tokens. An explicit
/// `RAINLOGS_ENV_FILE` is read wherever it is (a deliberate choice). Without a user id
/// (not Unix) every directory counts.
pub fn find_env_file(start: &Path, relative: &str, me: Option<u32>) -> Option<PathBuf> {
    let trusted = |p: &Path| -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            match me {
                Some(me) => std::fs::metadata(p)
                    .map(|m| m.uid() == me || m.uid() == 0)
                    .unwrap_or(false),
                None => true,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (p, me);
            true
        }
    };
    for dir in start.ancestors() {
        if !trusted(dir) {
            return None;
        }
        let candidate = dir.join(relative);
        if candidate.is_file() {
            let owned = candidate.ancestors().take_while(|a| *a != dir).all(trusted);
            return owned.then_some(candidate);
        }
    }
    None
}

fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let iter = dotenvy::from_path_iter(path).map_err(|e| ConfigError::EnvFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let mut values = BTreeMap::new();
    for item in iter {
        let (key, value) = item.map_err(|e| ConfigError::EnvFile {
            path: path.to_owned(),
            // dotenvy's parse errors quote the offending line, which may hold a
            // secret: report only its position.
            reason: redact_dotenv_error(&e),
        })?;
        values.insert(key, value);
    }
    Ok(values)
}

fn redact_dotenv_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, index) => format!("cannot parse at byte {index}"),
        dotenvy::Error::Io(io) => io.to_string(),
        _ => "cannot parse".to_owned(),
    }
}

fn parse_url(var: &str, raw: &str, schemes: &[&str]) -> Result<String, ConfigError> {
    let scheme = raw.split_once("://").map(|(s, _)| s);
    match scheme {
        Some(s) if schemes.contains(&s) => Ok(raw.to_owned()),
        _ => Err(ConfigError::Invalid {
            var: var.to_owned(),
            reason: format!(
                "expected a URL starting with {}://",
                schemes.join(":// or ")
            ),
        }),
    }
}

/// PostgreSQL connection settings.
#[derive(Clone)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(self.url.expose_secret()))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl DatabaseConfig {
    pub const URL: &'static str = "RAINLOGS_DATABASE_URL";
    pub const MAX_CONNECTIONS: &'static str = "RAINLOGS_DATABASE_MAX_CONNECTIONS";
    pub const CONNECT_TIMEOUT_MS: &'static str = "RAINLOGS_DATABASE_CONNECT_TIMEOUT_MS";

    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let raw = src.required(
            Self::URL,
            "e.g. postgres://user@127.0.0.1:5432/rainlogs; `infra/local/stack.sh env` writes it",
        )?;
        let url = parse_url(Self::URL, &raw, &["postgres", "postgresql"])?;
        let max_connections = src.parsed_or(Self::MAX_CONNECTIONS, 10u32)?;
        if max_connections == 0 {
            return Err(ConfigError::Invalid {
                var: Self::MAX_CONNECTIONS.into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            url: SecretString::from(url),
            max_connections,
            connect_timeout: src
                .duration_ms_or(Self::CONNECT_TIMEOUT_MS, Duration::from_secs(5))?,
        })
    }
}

/// Redis connection settings and the key prefix that isolates one deployment (or test).
#[derive(Clone)]
pub struct RedisConfig {
    pub url: SecretString,
    pub key_prefix: String,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(self.url.expose_secret()))
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

impl RedisConfig {
    pub const URL: &'static str = "RAINLOGS_REDIS_URL";
    pub const KEY_PREFIX: &'static str = "RAINLOGS_REDIS_PREFIX";

    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let raw = src.required(Self::URL, "e.g. redis://127.0.0.1:6379/0")?;
        let url = parse_url(Self::URL, &raw, &["redis", "rediss", "unix"])?;
        let key_prefix = src
            .get(Self::KEY_PREFIX)
            .unwrap_or("rainlogs")
            .trim()
            .to_owned();
        if key_prefix.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                var: Self::KEY_PREFIX.into(),
                reason: "must not contain whitespace".into(),
            });
        }
        Ok(Self {
            url: SecretString::from(url),
            key_prefix,
        })
    }
}

/// S3 (Garage) endpoint, bucket and credentials.
#[derive(Clone)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// Prepended to every object key; isolates tests sharing one bucket.
    pub key_prefix: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub force_path_style: bool,
    pub timeout: Duration,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("key_prefix", &self.key_prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl S3Config {
    pub const ENDPOINT: &'static str = "RAINLOGS_S3_ENDPOINT";
    pub const REGION: &'static str = "RAINLOGS_S3_REGION";
    pub const BUCKET: &'static str = "RAINLOGS_S3_BUCKET";
    pub const KEY_PREFIX: &'static str = "RAINLOGS_S3_PREFIX";
    pub const ACCESS_KEY_ID: &'static str = "RAINLOGS_S3_ACCESS_KEY_ID";
    pub const SECRET_ACCESS_KEY: &'static str = "RAINLOGS_S3_SECRET_ACCESS_KEY";
    pub const FORCE_PATH_STYLE: &'static str = "RAINLOGS_S3_FORCE_PATH_STYLE";
    pub const TIMEOUT_MS: &'static str = "RAINLOGS_S3_TIMEOUT_MS";

    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let endpoint = match src.get(Self::ENDPOINT) {
            Some(raw) => Some(parse_url(Self::ENDPOINT, raw.trim(), &["http", "https"])?),
            None => None,
        };
        let bucket = src.required(Self::BUCKET, "the bucket holding the archive")?;
        if !valid_bucket_name(&bucket) {
            return Err(ConfigError::Invalid {
                var: Self::BUCKET.into(),
                reason: format!(
                    "{bucket:?} is not a valid bucket name (3-63 chars of a-z, 0-9, '.', '-')"
                ),
            });
        }
        let mut key_prefix = src.get(Self::KEY_PREFIX).unwrap_or("").trim().to_owned();
        if !key_prefix.is_empty() && !key_prefix.ends_with('/') {
            key_prefix.push('/');
        }
        Ok(Self {
            endpoint,
            region: src.get(Self::REGION).unwrap_or("garage").to_owned(),
            bucket,
            key_prefix,
            access_key_id: src.required(Self::ACCESS_KEY_ID, "the S3 access key id")?,
            secret_access_key: src.secret(Self::SECRET_ACCESS_KEY, "the S3 secret key")?,
            force_path_style: src.bool_or(Self::FORCE_PATH_STYLE, true)?,
            timeout: src.duration_ms_or(Self::TIMEOUT_MS, Duration::from_secs(30))?,
        })
    }
}

/// The landing bucket Logpush S3-compatible destinations write to
/// (`RAINLOGS_LANDING_BUCKET`, docs/INGEST.md): Rainlogs reads and empties it with its
/// own S3 credentials, endpoint and key prefix; Cloudflare gets a write-only key.
pub const LANDING_BUCKET: &str = "RAINLOGS_LANDING_BUCKET";

impl S3Config {
    /// The store of the landing bucket: this configuration with the bucket replaced,
    /// or `None` when `RAINLOGS_LANDING_BUCKET` is not set (no landing ingest).
    pub fn landing(&self, src: &ConfigSource) -> Result<Option<S3Config>, ConfigError> {
        let Some(bucket) = src.get(LANDING_BUCKET).map(str::trim) else {
            return Ok(None);
        };
        if !valid_bucket_name(bucket) {
            return Err(ConfigError::Invalid {
                var: LANDING_BUCKET.into(),
                reason: format!(
                    "{bucket:?} is not a valid bucket name (3-63 chars of a-z, 0-9, '.', '-')"
                ),
            });
        }
        Ok(Some(S3Config {
            bucket: bucket.to_owned(),
            ..self.clone()
        }))
    }
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// Replaces the secrets of a URL with `***`: the password of `scheme://user:password@host`
/// and the value of every query parameter whose name holds `password`, `secret` or
/// `token` (any case: libpq's `?password=`, `sslpassword=`, `?auth_token=` …).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparseable url>".to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

/// `path?query#fragment` with secret-looking query values replaced by `***`.
fn redact_query(tail: &str) -> String {
    let Some((path, rest)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            let lower = name.to_ascii_lowercase();
            if pair.contains('=')
                && ["password", "secret", "token"]
                    .iter()
                    .any(|s| lower.contains(s))
            {
                format!("{name}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    match fragment {
        Some(f) => format!("{path}?{}#{f}", query.join("&")),
        None => format!("{path}?{}", query.join("&")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_pairs() -> Vec<(&'static str, &'static str)> {
        vec![
            (S3Config::ENDPOINT, "http://127.0.0.1:3900"),
            (S3Config::BUCKET, "rainlogs"),
            (S3Config::ACCESS_KEY_ID, "GK1234"),
            (S3Config::SECRET_ACCESS_KEY, "topsecret"),
        ]
    }

    #[test]
    fn the_landing_bucket_is_the_archive_store_with_another_bucket() {
        let mut src = ConfigSource::from_pairs(s3_pairs());
        src.set(S3Config::KEY_PREFIX, "tests/x");
        let s3 = S3Config::from_source(&src).unwrap();
        assert!(s3.landing(&src).unwrap().is_none(), "off unless set");
        src.set(LANDING_BUCKET, "rainlogs-landing");
        let landing = s3.landing(&src).unwrap().unwrap();
        assert_eq!(landing.bucket, "rainlogs-landing");
        assert_eq!(
            (
                landing.key_prefix.as_str(),
                landing.endpoint,
                landing.access_key_id
            ),
            ("tests/x/", s3.endpoint.clone(), s3.access_key_id.clone())
        );
        src.set(LANDING_BUCKET, "Not A Bucket");
        assert_eq!(s3.landing(&src).unwrap_err().subject(), LANDING_BUCKET);
    }

    #[test]
    fn missing_database_url_names_the_variable() {
        let err = DatabaseConfig::from_source(&ConfigSource::default()).unwrap_err();
        assert_eq!(err.subject(), "RAINLOGS_DATABASE_URL");
        assert!(err.to_string().contains("is not set"), "{err}");
    }

    #[test]
    fn database_url_with_wrong_scheme_is_invalid() {
        let src = ConfigSource::from_pairs([(DatabaseConfig::URL, "mysql://x@y/z")]);
        let err = DatabaseConfig::from_source(&src).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { ref var, .. } if var == DatabaseConfig::URL));
    }

    #[test]
    fn invalid_number_names_variable_and_value() {
        let src = ConfigSource::from_pairs([
            (DatabaseConfig::URL, "postgres://u@h/db"),
            (DatabaseConfig::MAX_CONNECTIONS, "many"),
        ]);
        let err = DatabaseConfig::from_source(&src).unwrap_err().to_string();
        assert!(err.contains("RAINLOGS_DATABASE_MAX_CONNECTIONS"), "{err}");
        assert!(err.contains("\"many\""), "{err}");
    }

    #[test]
    fn s3_config_defaults_and_prefix_normalisation() {
        let mut src = ConfigSource::from_pairs(s3_pairs());
        src.set(S3Config::KEY_PREFIX, "tests/abc");
        let cfg = S3Config::from_source(&src).unwrap();
        assert_eq!(cfg.region, "garage");
        assert!(cfg.force_path_style);
        assert_eq!(cfg.key_prefix, "tests/abc/");
    }

    #[test]
    fn s3_secret_never_appears_in_debug_or_errors() {
        let cfg = S3Config::from_source(&ConfigSource::from_pairs(s3_pairs())).unwrap();
        assert!(!format!("{cfg:?}").contains("topsecret"));
        let mut src = ConfigSource::from_pairs(s3_pairs());
        src.set(S3Config::FORCE_PATH_STYLE, "perhaps");
        let err = S3Config::from_source(&src).unwrap_err().to_string();
        assert!(err.contains("RAINLOGS_S3_FORCE_PATH_STYLE"), "{err}");
        assert!(!err.contains("topsecret"));
    }

    #[test]
    fn bad_bucket_name_is_rejected() {
        let mut src = ConfigSource::from_pairs(s3_pairs());
        src.set(S3Config::BUCKET, "Not_A_Bucket");
        let err = S3Config::from_source(&src).unwrap_err();
        assert_eq!(err.subject(), S3Config::BUCKET);
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://bob:hunter2@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn redacts_password_query_parameters() {
        // Issue 11 item 13: `?password=` went into logs and error messages verbatim.
        assert_eq!(
            redact_url("postgres://db:5432/x?sslmode=require&password=hunter2"),
            "postgres://db:5432/x?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://bob@db/x?PASSWORD=hunter2&sslpassword=k3y#frag"),
            "postgres://bob@db/x?PASSWORD=***&sslpassword=***#frag"
        );
        assert_eq!(
            redact_url("redis://h:6379/0?auth_token=abc&db=1"),
            "redis://h:6379/0?auth_token=***&db=1"
        );
        // An '@' in the query is not userinfo.
        assert_eq!(
            redact_url("postgres://db/x?user=a@b&password=p"),
            "postgres://db/x?user=a@b&password=***"
        );
        assert_eq!(
            redact_url("postgres://bob:pw@db/x?password=p"),
            "postgres://bob:***@db/x?password=***"
        );
    }

    #[cfg(unix)]
    #[test]
    fn env_file_is_not_taken_from_another_users_directory() {
        // Issue 11 item 13: `.rainlogs/env` was searched upwards from the working
        // directory into directories anyone could control (a shared /tmp, …).
        let root = std::env::temp_dir().join(format!("rainlogs-own-{}", uuid::Uuid::new_v4()));
        let work = root.join("a").join("b");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(root.join(".rainlogs")).unwrap();
        std::fs::write(root.join(".rainlogs/env"), "RAINLOGS_REDIS_URL=redis://x\n").unwrap();
        let me = current_uid().unwrap();
        // Ours: found from two levels down.
        assert_eq!(
            find_env_file(&work, DEFAULT_ENV_FILE, Some(me)),
            Some(root.join(".rainlogs/env"))
        );
        // As root the test can make the directories another user's; otherwise it asks
        // as another user would (whose files these then are not).
        let asking = if me == 0 {
            std::os::unix::fs::chown(root.join(".rainlogs"), Some(65534), None).unwrap();
            std::os::unix::fs::chown(root.join(".rainlogs/env"), Some(65534), None).unwrap();
            me
        } else {
            me + 1
        };
        assert_eq!(
            find_env_file(&work, DEFAULT_ENV_FILE, Some(asking)),
            None,
            "another user's env file is not read"
        );
        if me == 0 {
            // A directory on the way owned by another user stops the search there.
            std::os::unix::fs::chown(root.join(".rainlogs"), Some(0), None).unwrap();
            std::os::unix::fs::chown(root.join(".rainlogs/env"), Some(0), None).unwrap();
            assert!(find_env_file(&work, DEFAULT_ENV_FILE, Some(0)).is_some());
            std::os::unix::fs::chown(root.join("a"), Some(65534), None).unwrap();
            assert_eq!(find_env_file(&work, DEFAULT_ENV_FILE, Some(0)), None);
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn env_file_parse_error_does_not_leak_the_line() {
        let dir = std::env::temp_dir().join(format!("rainlogs-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("env");
        std::fs::write(&path, "RAINLOGS_S3_SECRET_ACCESS_KEY='supersecret\n").unwrap();
        let err = read_env_file(&path).unwrap_err().to_string();
        assert!(!err.contains("supersecret"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
