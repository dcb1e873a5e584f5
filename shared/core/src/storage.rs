//! S3 access (Garage in production and tests) through aws-sdk-s3.
//!
//! [`ObjectStore`] wraps one bucket and one key prefix. Every key the rest of the code
//! passes is relative to that prefix, which is how tests share a bucket without
//! touching each other's objects. Failures become [`StorageError`]s classified
//! retryable (the service is down or slow) or permanent (bad credentials, no bucket).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use secrecy::ExposeSecret;

use crate::config::S3Config;
use crate::error::{error_chain, Classify, ErrorClass, TaskError};

/// The smallest part S3 accepts in a multipart upload (except the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// A storage failure, naming the operation and the key.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("s3 {op} {key}: service unreachable at {endpoint}: {reason}")]
    Unreachable {
        op: &'static str,
        key: String,
        endpoint: String,
        reason: String,
    },
    #[error("s3 {op} {key}: access denied ({code}); check RAINLOGS_S3_ACCESS_KEY_ID and RAINLOGS_S3_SECRET_ACCESS_KEY")]
    AccessDenied {
        op: &'static str,
        key: String,
        code: String,
    },
    #[error("s3 {op}: bucket {bucket} does not exist")]
    NoSuchBucket { op: &'static str, bucket: String },
    #[error("s3 {op} {key}: no such object")]
    NotFound { op: &'static str, key: String },
    #[error("s3 {op} {key}: {code}: {reason}")]
    Service {
        op: &'static str,
        key: String,
        code: String,
        reason: String,
        retryable: bool,
    },
    #[error("s3 {op} {key}: reading the body failed: {reason}")]
    Body {
        op: &'static str,
        key: String,
        reason: String,
    },
}

impl Classify for StorageError {
    fn class(&self) -> ErrorClass {
        match self {
            StorageError::Unreachable { .. } | StorageError::Body { .. } => ErrorClass::Retryable,
            StorageError::Service {
                retryable: true, ..
            } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StorageError::Unreachable { .. } => "s3.unreachable",
            StorageError::AccessDenied { .. } => "s3.access_denied",
            StorageError::NoSuchBucket { .. } => "s3.no_such_bucket",
            StorageError::NotFound { .. } => "s3.not_found",
            StorageError::Service { .. } => "s3.service",
            StorageError::Body { .. } => "s3.body",
        }
    }
}

impl From<StorageError> for TaskError {
    fn from(e: StorageError) -> Self {
        TaskError::classified(&e)
    }
}

/// Metadata of one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store's prefix.
    pub key: String,
    pub size: u64,
    /// When the object was last written, as the listing reports it (age checks: the
    /// prune sweeps leave objects younger than their grace period alone).
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// One bucket under one key prefix.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: String,
    /// Requests sent, per S3 operation (shared by clones of this store).
    ops: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>>,
}

impl ObjectStore {
    /// Builds the client with aws-config: static credentials, endpoint override,
    /// path-style addressing and the configured region. Does no I/O.
    pub async fn connect(cfg: &S3Config) -> Self {
        let credentials = Credentials::new(
            cfg.access_key_id.clone(),
            cfg.secret_access_key.expose_secret().to_owned(),
            None,
            None,
            "rainlogs-config",
        );
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(credentials)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(cfg.timeout)
                    .build(),
            );
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(cfg.force_path_style)
            // Garage does not implement every flexible-checksum algorithm; we verify
            // content with our own SHA-256 instead.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Self {
            client: Client::from_conf(s3_config),
            bucket: cfg.bucket.clone(),
            prefix: cfg.key_prefix.clone(),
            endpoint: cfg
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("aws region {}", cfg.region)),
            ops: Default::default(),
        }
    }

    /// How many requests of each S3 operation this store (and its clones) sent so far:
    /// what the pipeline costs per window (docs/BENCHMARKS.md, "Scale").
    pub fn operations(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.ops.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn count(&self, op: &'static str) {
        if let Ok(mut m) = self.ops.lock() {
            *m.entry(op).or_default() += 1;
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The raw SDK client, for operations this wrapper does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The key of `key` in the bucket: the store's prefix and the key. What the
    /// catalog records (`archived_objects.object_key`), so that any process reads the
    /// object through [`ObjectStore::root`] whatever prefix it is configured with.
    pub fn full_key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    /// This bucket with no prefix: keys are full bucket keys ([`ObjectStore::full_key`],
    /// the catalog's). Shares the client and the operation counts.
    pub fn root(&self) -> ObjectStore {
        ObjectStore {
            prefix: String::new(),
            ..self.clone()
        }
    }

    fn classify<E>(&self, op: &'static str, key: &str, err: SdkError<E>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let key = key.to_owned();
        match &err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => StorageError::Unreachable {
                op,
                key,
                endpoint: self.endpoint.clone(),
                reason: error_chain(&err),
            },
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = err.code().unwrap_or("").to_owned();
                match (status, code.as_str()) {
                    (_, "NoSuchBucket") => StorageError::NoSuchBucket {
                        op,
                        bucket: self.bucket.clone(),
                    },
                    (_, "NoSuchKey") | (404, "NotFound") | (404, "") => {
                        StorageError::NotFound { op, key }
                    }
                    (403, _)
                    | (_, "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
                        StorageError::AccessDenied {
                            op,
                            key,
                            code: if code.is_empty() {
                                status.to_string()
                            } else {
                                code
                            },
                        }
                    }
                    _ => StorageError::Service {
                        op,
                        key,
                        reason: err.message().unwrap_or("no message").to_owned(),
                        code: if code.is_empty() {
                            status.to_string()
                        } else {
                            code
                        },
                        retryable: status >= 500 || status == 429,
                    },
                }
            }
            _ => StorageError::Service {
                op,
                key,
                code: "sdk".into(),
                reason: error_chain(&err),
                retryable: matches!(err, SdkError::ResponseError(_)),
            },
        }
    }

    /// Checks that the bucket answers with these credentials (HeadBucket).
    pub async fn check(&self) -> Result<(), StorageError> {
        self.count("HeadBucket");
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match self.classify("HeadBucket", "", e) {
                // HeadBucket has no body, so a missing bucket shows up as a bare 404.
                StorageError::NotFound { op, .. } => StorageError::NoSuchBucket {
                    op,
                    bucket: self.bucket.clone(),
                },
                other => other,
            })
    }

    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        self.count("PutObject");
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify("PutObject", key, e))
    }

    /// Reads a whole object into memory. For small objects only; large ones stream
    /// through [`ObjectStore::get_stream`].
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.count("GetObject");
        let body = self.get_stream(key).await?;
        body.collect()
            .await
            .map(|data| data.into_bytes())
            .map_err(|e| StorageError::Body {
                op: "GetObject",
                key: key.to_owned(),
                reason: e.to_string(),
            })
    }

    pub async fn get_stream(&self, key: &str) -> Result<ByteStream, StorageError> {
        self.count("GetObject");
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map(|out| out.body)
            .map_err(|e| self.classify("GetObject", key, e))
    }

    /// Size of the object, or `None` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<u64>, StorageError> {
        self.count("HeadObject");
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) => match self.classify("HeadObject", key, e) {
                StorageError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Copies `from` to `to` inside this bucket (CopyObject, server side: the bytes
    /// never pass through this process).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.count("CopyObject");
        // The copy source is `bucket/key`, URL-encoded except for the separators.
        let source: String = format!("{}/{}", self.bucket, self.full_key(from))
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(source)
            .key(self.full_key(to))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify("CopyObject", from, e))
    }

    /// Deletes one object; deleting a missing object succeeds (S3 semantics).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.count("DeleteObject");
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.classify("DeleteObject", key, e))
    }

    /// Deletes up to 1000 objects in one DeleteObjects call; returns the keys that failed.
    pub async fn delete_many(&self, keys: &[String]) -> Result<Vec<String>, StorageError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.count("DeleteObjects");
        let objects = keys
            .iter()
            .map(|k| {
                ObjectIdentifier::builder()
                    .key(self.full_key(k))
                    .build()
                    .expect("key is set")
            })
            .collect::<Vec<_>>();
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .expect("objects are set");
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| self.classify("DeleteObjects", &format!("{} keys", keys.len()), e))?;
        Ok(out
            .errors()
            .iter()
            .filter_map(|e| e.key())
            .map(|k| k.strip_prefix(&self.prefix).unwrap_or(k).to_owned())
            .collect())
    }

    /// One page of keys under `prefix` (relative), starting after `continuation`.
    pub async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<(Vec<ObjectInfo>, Option<String>), StorageError> {
        self.list_page_after(prefix, None, continuation, max_keys)
            .await
    }

    /// [`ObjectStore::list_page`] beginning after the (relative) key `start_after`:
    /// keys sort in UTF-8 binary order, so a listing can skip to where a range begins.
    pub async fn list_page_after(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<(Vec<ObjectInfo>, Option<String>), StorageError> {
        self.count("ListObjectsV2");
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .max_keys(max_keys)
            .set_start_after(start_after.map(|k| self.full_key(k)))
            .set_continuation_token(continuation)
            .send()
            .await
            .map_err(|e| self.classify("ListObjectsV2", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?;
                Some(ObjectInfo {
                    key: key.strip_prefix(&self.prefix).unwrap_or(key).to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified: o
                        .last_modified()
                        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                })
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok((objects, next))
    }

    /// Every key under `prefix`. Holds the whole listing: for bounded memory over
    /// millions of keys, page with [`ObjectStore::list_page`].
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = self.list_page(prefix, token, 1000).await?;
            all.extend(page);
            match next {
                Some(t) => token = Some(t),
                None => return Ok(all),
            }
        }
    }

    /// Starts a multipart upload; parts are sent with [`MultipartUpload::put_part`].
    pub async fn start_multipart(&self, key: &str) -> Result<MultipartUpload<'_>, StorageError> {
        self.count("CreateMultipartUpload");
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.classify("CreateMultipartUpload", key, e))?;
        let upload_id = out.upload_id().unwrap_or_default().to_owned();
        Ok(MultipartUpload {
            store: self,
            key: key.to_owned(),
            upload_id,
            parts: Vec::new(),
        })
    }
}

/// An open multipart upload. Dropped without `complete`, it should be `abort`ed; an
/// abandoned upload is also reaped by the bucket's lifecycle rule.
pub struct MultipartUpload<'a> {
    store: &'a ObjectStore,
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
}

impl MultipartUpload<'_> {
    /// Uploads the next part (at least [`MIN_PART_SIZE`] unless it is the last).
    pub async fn put_part(&mut self, body: Bytes) -> Result<(), StorageError> {
        self.store.count("UploadPart");
        let number = self.parts.len() as i32 + 1;
        let out = self
            .store
            .client
            .upload_part()
            .bucket(&self.store.bucket)
            .key(self.store.full_key(&self.key))
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.store.classify("UploadPart", &self.key, e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    pub async fn complete(self) -> Result<(), StorageError> {
        self.store.count("CompleteMultipartUpload");
        self.store
            .client
            .complete_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.store.full_key(&self.key))
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(self.parts))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.store.classify("CompleteMultipartUpload", &self.key, e))
    }

    pub async fn abort(self) -> Result<(), StorageError> {
        self.store.count("AbortMultipartUpload");
        self.store
            .client
            .abort_multipart_upload()
            .bucket(&self.store.bucket)
            .key(self.store.full_key(&self.key))
            .upload_id(&self.upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.store.classify("AbortMultipartUpload", &self.key, e))
    }
}
