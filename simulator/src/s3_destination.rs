//! The simulated Logpush's S3-compatible destination (the source of issue 12's landing
//! ingest): `s3://BUCKET/PATH?region=R&access-key-id=K&secret-access-key=S&endpoint=HOST`,
//! as Cloudflare documents it for S3-compatible storage (R2, Garage, MinIO…).
//!
//! Each batch becomes one gzip NDJSON object
//! `PATH/{first}_{last}_{suffix}.log.gz` — `first`/`last` the batch's first and last
//! record times (`YYYYMMDDTHHMMSSZ`), `suffix` 8 hex digits unique per write, as in
//! Cloudflare's object names — with `{DATE}` in PATH replaced by the batch's day
//! (`YYYYMMDD`). A write that is retried, or delivered twice, is a second object with
//! the same content: the landing ingest must recognise it. The validation upload is
//! `PATH/test.txt.gz` (the gzip of `{"content":"tests"}`, `{DATE}` as today), left
//! in the bucket as Cloudflare leaves it.
//!
//! Bodies stream: up to 8 MiB of gzip is sent with one PutObject, anything larger as a
//! multipart upload of 8 MiB parts (aborted on any failure), so a 1 GB batch is never
//! held in memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};

/// Size of a multipart part (and the most sent with a single PutObject).
pub const PART_BYTES: usize = 8 << 20;

/// An S3-compatible destination. `Debug` leaves the secret key out.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Destination {
    pub bucket: String,
    /// Object key prefix, without leading or trailing `/`; may hold `{DATE}`.
    pub path: String,
    pub region: String,
    pub access_key_id: String,
    secret_access_key: String,
    /// `https://host[:port]` (or `http://` to a loopback host); `None`: AWS.
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for S3Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Destination")
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Parses an `s3://` destination; `url` is already parsed, `allow_http` as for HTTP.
pub fn parse(url: &reqwest::Url, allow_http: bool) -> Result<S3Destination, String> {
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or("s3 destination_conf needs a bucket: s3://BUCKET/PATH?…")?
        .to_owned();
    let mut region = None;
    let mut key = None;
    let mut secret = None;
    let mut endpoint = None;
    for (name, value) in url.query_pairs() {
        match name.as_ref() {
            "region" => region = Some(value.into_owned()),
            "access-key-id" => key = Some(value.into_owned()),
            "secret-access-key" => secret = Some(value.into_owned()),
            "endpoint" => endpoint = Some(value.into_owned()),
            _ => {}
        }
    }
    let need = |v: Option<String>, what: &str| {
        v.filter(|v| !v.is_empty())
            .ok_or_else(|| format!("s3 destination_conf needs {what}="))
    };
    let endpoint = match endpoint {
        None => None,
        Some(e) => {
            let e = if e.contains("://") {
                e
            } else {
                format!("https://{e}")
            };
            let parsed = reqwest::Url::parse(&e).map_err(|err| format!("endpoint {e:?}: {err}"))?;
            let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            if parsed.scheme() == "http" && !(allow_http || loopback) {
                return Err("the s3 endpoint must be https".into());
            }
            Some(e.trim_end_matches('/').to_owned())
        }
    };
    Ok(S3Destination {
        bucket,
        path: percent_encoding::percent_decode_str(url.path())
            .decode_utf8()
            .map_err(|_| "the s3 destination's path is not UTF-8")?
            .trim_matches('/')
            .to_owned(),
        region: need(region, "region")?,
        access_key_id: need(key, "access-key-id")?,
        secret_access_key: need(secret, "secret-access-key")?,
        endpoint,
    })
}

/// Unique object-name suffixes within this process.
static WRITES: AtomicU64 = AtomicU64::new(1);

fn stamp(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns)
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

impl S3Destination {
    /// The prefix with `{DATE}` as the day of `ns`, and a `/` after it when not empty.
    fn dir(&self, ns: i64) -> String {
        let day = DateTime::from_timestamp_nanos(ns)
            .format("%Y%m%d")
            .to_string();
        let path = self.path.replace("{DATE}", &day);
        if path.is_empty() {
            path
        } else {
            format!("{path}/")
        }
    }

    /// Where a batch of records from `first_ns` to `last_ns` is written (a new name on
    /// every call).
    pub fn batch_key(&self, first_ns: i64, last_ns: i64) -> String {
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        // A mixed counter: names look random, yet never repeat in a process.
        let suffix = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32;
        format!(
            "{}{}_{}_{suffix:08x}.log.gz",
            self.dir(first_ns),
            stamp(first_ns),
            stamp(last_ns)
        )
    }

    /// Where the validation upload goes.
    pub fn validation_key(&self, now: DateTime<Utc>) -> String {
        format!(
            "{}test.txt.gz",
            self.dir(now.timestamp_nanos_opt().unwrap_or_default())
        )
    }

    /// A client with the destination's credentials (or a wrong secret, for the fault).
    pub fn client(&self, wrong_secret: bool, timeout: Duration) -> aws_sdk_s3::Client {
        let secret = if wrong_secret {
            format!("{}-not-the-secret", self.secret_access_key)
        } else {
            self.secret_access_key.clone()
        };
        let credentials = Credentials::new(
            &self.access_key_id,
            secret,
            None,
            None,
            "logpush-destination",
        );
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(true)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(timeout)
                    .build(),
            )
            // S3-compatible stores do not all implement the newer checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &self.endpoint {
            config = config.endpoint_url(endpoint);
        }
        aws_sdk_s3::Client::from_conf(config.build())
    }
}

fn failed(what: &str, e: impl std::error::Error) -> String {
    format!("error writing object: {what}: {}", crate::pusher::chain(&e))
}

/// Writes the gzip `body` to `key`: one PutObject up to [`PART_BYTES`], else a
/// multipart upload (aborted if anything fails, so no partial object appears).
pub async fn write(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: impl Stream<Item = Result<Bytes, std::io::Error>>,
) -> Result<(), String> {
    let mut body = std::pin::pin!(body);
    let mut part = Vec::with_capacity(PART_BYTES);
    if fill(&mut part, body.as_mut()).await? {
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/gzip")
            .body(ByteStream::from(part))
            .send()
            .await
            .map_err(|e| failed("PutObject", e))?;
        return Ok(());
    }
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type("application/gzip")
        .send()
        .await
        .map_err(|e| failed("CreateMultipartUpload", e))?;
    let id = upload
        .upload_id()
        .ok_or("error writing object: no upload id")?
        .to_owned();
    let uploaded = upload_parts(client, bucket, key, &id, part, body).await;
    match uploaded {
        Ok(parts) => client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| failed("CompleteMultipartUpload", e)),
        Err(e) => {
            let _ = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .send()
                .await;
            Err(e)
        }
    }
}

/// Tops `part` up to [`PART_BYTES`] from `body`; `true` when the body has ended.
async fn fill(
    part: &mut Vec<u8>,
    mut body: std::pin::Pin<&mut impl Stream<Item = Result<Bytes, std::io::Error>>>,
) -> Result<bool, String> {
    while part.len() < PART_BYTES {
        match body.next().await {
            Some(chunk) => part.extend_from_slice(&chunk.map_err(|e| failed("body", e))?),
            None => return Ok(true),
        }
    }
    Ok(false)
}

async fn upload_parts(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    id: &str,
    first: Vec<u8>,
    mut body: std::pin::Pin<&mut impl Stream<Item = Result<Bytes, std::io::Error>>>,
) -> Result<Vec<CompletedPart>, String> {
    let mut parts = Vec::new();
    let mut part = first;
    loop {
        let ended = fill(&mut part, body.as_mut()).await?;
        if !part.is_empty() {
            let number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
            let done = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(std::mem::take(&mut part)))
                .send()
                .await
                .map_err(|e| failed("UploadPart", e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(done.e_tag().map(str::to_owned))
                    .build(),
            );
        }
        if ended {
            return Ok(parts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(conf: &str) -> Result<S3Destination, String> {
        parse(&reqwest::Url::parse(conf).unwrap(), false)
    }

    #[test]
    fn cloudflares_s3_form_parses_and_debug_hides_the_secret() {
        let d = dest("s3://landing/cf/{DATE}?region=garage&access-key-id=GK1&secret-access-key=s3cr3t&endpoint=http://127.0.0.1:3900").unwrap();
        assert_eq!(
            (d.bucket.as_str(), d.path.as_str()),
            ("landing", "cf/{DATE}")
        );
        assert_eq!(d.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert!(!format!("{d:?}").contains("s3cr3t"));
        let no_scheme =
            dest("s3://b/p?region=r&access-key-id=k&secret-access-key=s&endpoint=r2.example.com")
                .unwrap();
        assert_eq!(
            no_scheme.endpoint.as_deref(),
            Some("https://r2.example.com")
        );
        assert!(dest("s3://b/p?region=r&access-key-id=k")
            .unwrap_err()
            .contains("secret-access-key"));
        assert!(dest(
            "s3://b/p?region=r&access-key-id=k&secret-access-key=s&endpoint=http://h.example"
        )
        .is_err());
    }

    #[test]
    fn object_names_follow_cloudflares_and_never_repeat() {
        let d = dest("s3://b/logs/{DATE}/x?region=r&access-key-id=k&secret-access-key=s").unwrap();
        let t = DateTime::parse_from_rfc3339("2026-12-01T10:00:05Z").unwrap();
        let ns = t.timestamp_nanos_opt().unwrap();
        let a = d.batch_key(ns, ns + 30_000_000_000);
        let b = d.batch_key(ns, ns + 30_000_000_000);
        assert!(
            a.starts_with("logs/20261201/x/20261201T100005Z_20261201T100035Z_"),
            "{a}"
        );
        assert!(a.ends_with(".log.gz") && a != b);
        let root = dest("s3://b?region=r&access-key-id=k&secret-access-key=s").unwrap();
        assert_eq!(root.validation_key(t.with_timezone(&Utc)), "test.txt.gz");
    }
}
