//! AWS: S3 and KMS through the official SDK, with SDK errors mapped to `ProviderError`.

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{ObjectLockEnabled, ObjectLockLegalHoldStatus};
use aws_smithy_types::date_time::Format;

use crate::error::ProviderError;
use crate::model::{KmsKey, ObjectLock, S3Encryption};
use crate::providers::{
    BucketSettings, CopyInPlace, KeyRead, ListPage, ListedObject, ObjectHead, S3Read, Written,
};

/// The SDK clients for one account and region.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub kms: aws_sdk_kms::Client,
    pub sagemaker: aws_sdk_sagemaker::Client,
    pub region: String,
    pub list_page_size: i32,
}

impl AwsClients {
    /// Build clients from the SDK's default chain (profiles, environment, `AWS_ENDPOINT_URL`);
    /// `endpoint_url` from the campaign overrides the endpoint. Path-style addressing is
    /// used whenever an endpoint is overridden, as emulators and S3-compatible stores expect.
    pub async fn new(region: &str, endpoint_url: Option<&str>) -> AwsClients {
        Self::with_retries(region, endpoint_url, 5).await
    }

    /// The same with the SDK's own retries capped at `max_attempts` (1: none, for callers
    /// that retry themselves, so that retries live in one place).
    pub async fn with_retries(
        region: &str,
        endpoint_url: Option<&str>,
        max_attempts: u32,
    ) -> AwsClients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts),
            );
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let conf = loader.load().await;
        let custom_endpoint = endpoint_url.is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        Self::from_conf(&conf, custom_endpoint)
    }

    /// Clients for another account, reached by AssumeRole from the default credentials.
    pub async fn assume(
        region: &str,
        endpoint_url: Option<&str>,
        max_attempts: u32,
        role_arn: &str,
    ) -> AwsClients {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts),
            );
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let conf = loader.load().await;
        let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name("rekey")
            .configure(&conf)
            .build()
            .await;
        let conf = conf
            .into_builder()
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(provider))
            .build();
        let custom_endpoint = endpoint_url.is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        Self::from_conf(&conf, custom_endpoint)
    }

    /// Build clients from a loaded SDK configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig, path_style: bool) -> AwsClients {
        let s3_conf = aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(path_style)
            .build();
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3_conf),
            kms: aws_sdk_kms::Client::new(conf),
            sagemaker: aws_sdk_sagemaker::Client::new(conf),
            region: conf.region().map(|r| r.to_string()).unwrap_or_default(),
            list_page_size: 1000,
        }
    }
}

/// Map any SDK error into the shared error type, by error code first and HTTP status next.
pub fn map_sdk_error<E>(what: impl Into<String>, err: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let what = what.into();
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let detail = match (&code, err.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        (None, _) => match &err {
            SdkError::DispatchFailure(_) => "could not reach the endpoint".to_string(),
            SdkError::TimeoutError(_) => "timed out".to_string(),
            SdkError::ResponseError(_) => format!(
                "unreadable response (HTTP {}): {}",
                status.unwrap_or(0),
                aws_smithy_types::error::display::DisplayErrorContext(&err)
            ),
            _ => match status {
                Some(s) => format!("HTTP {s}"),
                None => format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
            },
        },
    };
    let code = code.as_deref().unwrap_or("");
    match (code, status) {
        ("NoSuchKey" | "NoSuchBucket" | "NotFound" | "NoSuchVersion" | "NotFoundException", _)
        | (_, Some(404)) => ProviderError::NotFound { what },
        ("PreconditionFailed", _) | (_, Some(412)) => ProviderError::Precondition { what },
        (
            "SlowDown"
            | "ThrottlingException"
            | "Throttling"
            | "RequestLimitExceeded"
            | "TooManyRequestsException",
            _,
        )
        | (_, Some(503)) => ProviderError::Throttled { what, detail },
        (c, _) if c.starts_with("KMS.") => ProviderError::KeyUnusable { key: what, detail },
        ("AccessDenied" | "AccessDeniedException", _) | (_, Some(403)) => {
            ProviderError::PermissionDenied { what, detail }
        }
        (_, Some(s)) if s >= 500 => ProviderError::Transient { what, detail },
        (_, None) => ProviderError::Transient { what, detail },
        (_, Some(_)) => ProviderError::Invalid { what, detail },
    }
}

fn fmt_time(t: Option<&aws_smithy_types::DateTime>) -> String {
    t.and_then(|t| t.fmt(Format::DateTime).ok())
        .unwrap_or_default()
}

impl S3Read for AwsClients {
    async fn list_buckets(&self) -> Result<Vec<String>, ProviderError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .s3
                .list_buckets()
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error("bucket list", e))?;
            names.extend(
                out.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_string)),
            );
            token = out.continuation_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        names.sort();
        Ok(names)
    }

    async fn bucket_settings(&self, bucket: &str) -> Result<BucketSettings, ProviderError> {
        let what = || format!("s3://{bucket}");
        let region = self
            .s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?
            .location_constraint()
            .map(|c| c.as_str().to_string())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "us-east-1".to_string());
        let default_encryption = self.bucket_settings_encryption(bucket).await?;
        let versioning = self
            .s3
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "Unversioned".to_string());
        let tags = match self.s3.get_bucket_tagging().bucket(bucket).send().await {
            Ok(out) => out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            Err(e) if e.code() == Some("NoSuchTagSet") || e.code() == Some("NoSuchTagSetError") => {
                BTreeMap::new()
            }
            Err(e) => return Err(map_sdk_error(what(), e)),
        };
        let object_lock = match self
            .s3
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => {
                out.object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled)
            }
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => false,
            Err(e) => return Err(map_sdk_error(what(), e)),
        };
        Ok(BucketSettings {
            region,
            default_encryption,
            versioning,
            object_lock,
            tags,
        })
    }

    async fn list_page(
        &self,
        bucket: &str,
        all_versions: bool,
        token: Option<String>,
    ) -> Result<ListPage, ProviderError> {
        let what = || format!("listing of s3://{bucket}");
        if !all_versions {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .max_keys(self.list_page_size)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            let objects = out
                .contents()
                .iter()
                .map(|o| ListedObject {
                    key: o.key().unwrap_or_default().to_string(),
                    version_id: None,
                    is_latest: true,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().to_string(),
                    storage_class: o
                        .storage_class()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "STANDARD".into()),
                    last_modified: fmt_time(o.last_modified()),
                })
                .collect();
            let next = if out.is_truncated() == Some(true) {
                out.next_continuation_token().map(str::to_string)
            } else {
                None
            };
            return Ok(ListPage { objects, next });
        }
        // Version listings page on two markers; carry both in one token.
        let (key_marker, version_marker) = match token.as_deref().and_then(|t| t.split_once('\n')) {
            Some((k, v)) => (
                Some(k.to_string()),
                Some(v.to_string()).filter(|v| !v.is_empty()),
            ),
            None => (None, None),
        };
        let out = self
            .s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(self.list_page_size)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        let objects = out
            .versions()
            .iter()
            .map(|o| ListedObject {
                key: o.key().unwrap_or_default().to_string(),
                version_id: o.version_id().map(str::to_string).filter(|v| v != "null"),
                is_latest: o.is_latest().unwrap_or(false),
                size: o.size().unwrap_or(0).max(0) as u64,
                etag: o.e_tag().unwrap_or_default().to_string(),
                storage_class: o
                    .storage_class()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "STANDARD".into()),
                last_modified: fmt_time(o.last_modified()),
            })
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_key_marker()
                .map(|k| format!("{k}\n{}", out.next_version_id_marker().unwrap_or_default()))
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectHead, ProviderError> {
        let res = self
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await;
        let out = match res {
            Ok(out) => out,
            // S3 answers HEAD on an SSE-C object with a bare 400 unless the customer key is
            // sent; for an object that was just listed, that is what a 400 means.
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(400) => {
                return Ok(ObjectHead {
                    etag: String::new(),
                    size: 0,
                    storage_class: String::new(),
                    archive_status: None,
                    encryption: S3Encryption {
                        algorithm: S3Encryption::SSE_C.to_string(),
                        ..Default::default()
                    },
                    lock: ObjectLock::default(),
                })
            }
            Err(e) => return Err(map_sdk_error(format!("s3://{bucket}/{key}"), e)),
        };
        let algorithm = if out.sse_customer_algorithm().is_some() {
            S3Encryption::SSE_C.to_string()
        } else {
            out.server_side_encryption()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| S3Encryption::NONE.to_string())
        };
        Ok(ObjectHead {
            etag: out.e_tag().unwrap_or_default().to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            storage_class: out
                .storage_class()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "STANDARD".into()),
            archive_status: out.archive_status().map(|a| a.as_str().to_string()),
            encryption: S3Encryption {
                algorithm,
                kms_key_arn: out.ssekms_key_id().map(str::to_string),
                key_manager: None,
                bucket_key: out.bucket_key_enabled().unwrap_or(false),
            },
            lock: ObjectLock {
                mode: out.object_lock_mode().map(|m| m.as_str().to_string()),
                retain_until: out
                    .object_lock_retain_until_date()
                    .and_then(|t| t.fmt(Format::DateTime).ok()),
                legal_hold: out.object_lock_legal_hold_status()
                    == Some(&ObjectLockLegalHoldStatus::On),
            },
        })
    }
}

impl KeyRead for AwsClients {
    async fn describe_key(&self, key_ref: &str) -> Result<Option<KmsKey>, ProviderError> {
        match self.kms.describe_key().key_id(key_ref).send().await {
            Ok(out) => {
                let Some(m) = out.key_metadata() else {
                    return Ok(None);
                };
                Ok(Some(KmsKey {
                    arn: m.arn().unwrap_or_default().to_string(),
                    key_id: m.key_id().to_string(),
                    manager: m
                        .key_manager()
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_else(|| "CUSTOMER".into()),
                    state: m
                        .key_state()
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_default(),
                    spec: m
                        .key_spec()
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_else(|| "SYMMETRIC_DEFAULT".into()),
                    usage: m
                        .key_usage()
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_else(|| "ENCRYPT_DECRYPT".into()),
                }))
            }
            Err(e) => match map_sdk_error(format!("KMS key {key_ref}"), e) {
                ProviderError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }
}

/// Percent-encode a copy source (`bucket/key[?versionId=v]`) as S3 expects it.
pub fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let mut s = String::with_capacity(bucket.len() + key.len() + 8);
    for part in [bucket, "/", key] {
        for b in part.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                    s.push(b as char)
                }
                _ => s.push_str(&format!("%{b:02X}")),
            }
        }
    }
    if let Some(v) = version_id {
        s.push_str("?versionId=");
        s.push_str(v);
    }
    s
}

fn sse_of(enc: &S3Encryption) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
    match enc.algorithm.as_str() {
        "AES256" => Some(aws_sdk_s3::types::ServerSideEncryption::Aes256),
        "aws:kms" => Some(aws_sdk_s3::types::ServerSideEncryption::AwsKms),
        _ => None,
    }
}

fn storage_of(class: &str) -> aws_sdk_s3::types::StorageClass {
    aws_sdk_s3::types::StorageClass::from(class)
}

impl crate::providers::S3Write for AwsClients {
    async fn bucket_default(&self, bucket: &str) -> Result<S3Encryption, ProviderError> {
        self.bucket_settings_encryption(bucket).await
    }

    async fn set_bucket_default(
        &self,
        bucket: &str,
        rule: &S3Encryption,
    ) -> Result<(), ProviderError> {
        use aws_sdk_s3::types::{
            ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
            ServerSideEncryptionRule,
        };
        let what = || format!("default encryption of s3://{bucket}");
        let Some(sse) = sse_of(rule).or_else(|| {
            (rule.algorithm == "aws:kms:dsse")
                .then_some(aws_sdk_s3::types::ServerSideEncryption::AwsKmsDsse)
        }) else {
            self.s3
                .delete_bucket_encryption()
                .bucket(bucket)
                .send()
                .await
                .map_err(|e| map_sdk_error(what(), e))?;
            return Ok(());
        };
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(sse)
            .set_kms_master_key_id(rule.kms_key_arn.clone())
            .build()
            .map_err(|e| ProviderError::Invalid {
                what: what(),
                detail: e.to_string(),
            })?;
        let conf = ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(default)
                    .bucket_key_enabled(rule.bucket_key)
                    .build(),
            )
            .build()
            .map_err(|e| ProviderError::Invalid {
                what: what(),
                detail: e.to_string(),
            })?;
        self.s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(conf)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        Ok(())
    }

    async fn copy_in_place(&self, req: &CopyInPlace<'_>) -> Result<Written, ProviderError> {
        let what = || format!("s3://{}/{}", req.bucket, req.key);
        let mut call = self
            .s3
            .copy_object()
            .bucket(req.bucket)
            .key(req.key)
            .copy_source(copy_source(req.bucket, req.key, req.version_id))
            .copy_source_if_match(req.if_match)
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Copy)
            .tagging_directive(aws_sdk_s3::types::TaggingDirective::Copy)
            .storage_class(storage_of(req.storage_class))
            .set_server_side_encryption(sse_of(req.target));
        if req.target.algorithm == "aws:kms" {
            call = call
                .set_ssekms_key_id(req.target.kms_key_arn.clone())
                .bucket_key_enabled(req.target.bucket_key);
        }
        let out = call.send().await.map_err(|e| map_sdk_error(what(), e))?;
        Ok(Written {
            etag: out
                .copy_object_result()
                .and_then(|r| r.e_tag())
                .unwrap_or_default()
                .to_string(),
            version_id: out.version_id().map(str::to_string).filter(|v| v != "null"),
        })
    }

    async fn multipart_copy_in_place(
        &self,
        req: &CopyInPlace<'_>,
        part_size: u64,
    ) -> Result<Written, ProviderError> {
        let what = || format!("s3://{}/{}", req.bucket, req.key);
        let head = self
            .s3
            .head_object()
            .bucket(req.bucket)
            .key(req.key)
            .set_version_id(req.version_id.map(str::to_string))
            .if_match(req.if_match)
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        let tags = self
            .s3
            .get_object_tagging()
            .bucket(req.bucket)
            .key(req.key)
            .set_version_id(req.version_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| map_sdk_error(what(), e))?;
        let tagging: Vec<String> = tags
            .tag_set()
            .iter()
            .map(|t| format!("{}={}", url_encode(t.key()), url_encode(t.value())))
            .collect();
        let mut create = self
            .s3
            .create_multipart_upload()
            .bucket(req.bucket)
            .key(req.key)
            .set_content_type(head.content_type().map(str::to_string))
            .set_cache_control(head.cache_control().map(str::to_string))
            .set_content_disposition(head.content_disposition().map(str::to_string))
            .set_content_encoding(head.content_encoding().map(str::to_string))
            .set_content_language(head.content_language().map(str::to_string))
            .set_metadata(head.metadata().cloned())
            .storage_class(storage_of(req.storage_class))
            .set_server_side_encryption(sse_of(req.target));
        if !tagging.is_empty() {
            create = create.tagging(tagging.join("&"));
        }
        if req.target.algorithm == "aws:kms" {
            create = create
                .set_ssekms_key_id(req.target.kms_key_arn.clone())
                .bucket_key_enabled(req.target.bucket_key);
        }
        let upload = create.send().await.map_err(|e| map_sdk_error(what(), e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let result = self.copy_parts(req, &upload_id, part_size).await;
        match result {
            Ok(parts) => {
                let done = self
                    .s3
                    .complete_multipart_upload()
                    .bucket(req.bucket)
                    .key(req.key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        aws_sdk_s3::types::CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await;
                match done {
                    Ok(out) => Ok(Written {
                        etag: out.e_tag().unwrap_or_default().to_string(),
                        version_id: out.version_id().map(str::to_string).filter(|v| v != "null"),
                    }),
                    Err(e) => {
                        self.abort(req, &upload_id).await;
                        Err(map_sdk_error(what(), e))
                    }
                }
            }
            Err(e) => {
                self.abort(req, &upload_id).await;
                Err(e)
            }
        }
    }

    async fn update_encryption(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        key_arn: &str,
        bucket_key: bool,
    ) -> Result<(), ProviderError> {
        use aws_sdk_s3::types::{ObjectEncryption, SsekmsEncryption};
        let enc = SsekmsEncryption::builder()
            .kms_key_arn(key_arn)
            .bucket_key_enabled(bucket_key)
            .build()
            .map_err(|e| ProviderError::Invalid {
                what: key.into(),
                detail: e.to_string(),
            })?;
        self.s3
            .update_object_encryption()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .object_encryption(ObjectEncryption::Ssekms(enc))
            .send()
            .await
            .map_err(|e| map_sdk_error(format!("s3://{bucket}/{key}"), e))?;
        Ok(())
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl AwsClients {
    async fn bucket_settings_encryption(
        &self,
        bucket: &str,
    ) -> Result<S3Encryption, ProviderError> {
        match self.s3.get_bucket_encryption().bucket(bucket).send().await {
            Ok(out) => {
                let rule = out
                    .server_side_encryption_configuration()
                    .and_then(|c| c.rules().first());
                let default = rule.and_then(|r| r.apply_server_side_encryption_by_default());
                Ok(S3Encryption {
                    algorithm: default
                        .map(|d| d.sse_algorithm().as_str().to_string())
                        .unwrap_or_else(|| S3Encryption::NONE.to_string()),
                    kms_key_arn: default.and_then(|d| d.kms_master_key_id().map(str::to_string)),
                    key_manager: None,
                    bucket_key: rule.and_then(|r| r.bucket_key_enabled()).unwrap_or(false),
                })
            }
            Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => {
                Ok(S3Encryption {
                    algorithm: S3Encryption::NONE.to_string(),
                    ..Default::default()
                })
            }
            Err(e) => Err(map_sdk_error(format!("s3://{bucket}"), e)),
        }
    }

    async fn copy_parts(
        &self,
        req: &CopyInPlace<'_>,
        upload_id: &str,
        part_size: u64,
    ) -> Result<Vec<aws_sdk_s3::types::CompletedPart>, ProviderError> {
        let mut parts = Vec::new();
        let part_size = part_size.max(1);
        let mut start = 0u64;
        let mut number = 1;
        while start < req.size.max(1) {
            let end = (start + part_size).min(req.size).saturating_sub(1);
            let out = self
                .s3
                .upload_part_copy()
                .bucket(req.bucket)
                .key(req.key)
                .upload_id(upload_id)
                .part_number(number)
                .copy_source(copy_source(req.bucket, req.key, req.version_id))
                .copy_source_if_match(req.if_match)
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| {
                    map_sdk_error(format!("s3://{}/{} part {number}", req.bucket, req.key), e)
                })?;
            parts.push(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(
                        out.copy_part_result()
                            .and_then(|r| r.e_tag())
                            .map(str::to_string),
                    )
                    .build(),
            );
            start = end + 1;
            number += 1;
            if req.size == 0 {
                break;
            }
        }
        Ok(parts)
    }

    async fn abort(&self, req: &CopyInPlace<'_>, upload_id: &str) {
        let _ = self
            .s3
            .abort_multipart_upload()
            .bucket(req.bucket)
            .key(req.key)
            .upload_id(upload_id)
            .send()
            .await;
    }
}
