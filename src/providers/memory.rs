//! An in-process cloud for tests and benchmarks: S3 buckets whose objects keep every version,
//! their encryption, ETag, tags and checksum, and KMS keys with aliases. It answers every
//! provider trait the apply engine, rollback and verify use, with S3's semantics for what
//! they rely on (a guarded copy fails on a changed ETag, a copy makes a new version, a
//! deleted object is not found), so that a test of 10^5 objects checks real state without an
//! emulator's 150 requests a second. It is never the only test of a cloud call: the real
//! provider code is tested against moto.
//!
//! SageMaker is empty; IAM and key policies allow everything to the account.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::Value;

use crate::access::{Doc, Identity, IdentityView, KeyFacts};
use crate::error::ProviderError;
use crate::model::{KmsKey, ObjectLock, S3Encryption, Surroundings};
use crate::providers::sagemaker::{ModelInfo, NotebookInfo, SageMakerApi, TrainingJobInfo};
use crate::providers::{
    iam::AccessRead, BucketSettings, CopiedPart, CopyInPlace, Grants, KeyRead, ListPage,
    ListedObject, ObjectHead, S3Read, S3Write, Written,
};
use crate::s3report::InventoryConfig;

/// One version of an object (or a delete marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemVersion {
    pub version_id: Option<String>,
    pub etag: String,
    pub size: u64,
    pub storage_class: String,
    pub encryption: S3Encryption,
    pub tags: String,
    pub checksum: Option<String>,
    pub delete_marker: bool,
}

/// A bucket: its default rule and every object's versions, oldest first.
#[derive(Debug, Clone, Default)]
pub struct MemBucket {
    pub default: S3Encryption,
    pub versioned: bool,
    pub tags: BTreeMap<String, String>,
    pub objects: BTreeMap<String, Vec<MemVersion>>,
    /// A synthetic bucket (benchmarks): every key it does not hold HEADs as this version.
    pub every_key: Option<MemVersion>,
}

impl MemBucket {
    /// A version by its id, or the current one (unless it is a delete marker).
    pub fn version(&self, key: &str, version_id: Option<&str>) -> Option<&MemVersion> {
        match version_id {
            Some(id) => self
                .objects
                .get(key)
                .and_then(|vs| vs.iter().find(|v| v.version_id.as_deref() == Some(id))),
            None => self.current(key),
        }
    }

    /// The current version of a key, unless it is a delete marker.
    pub fn current(&self, key: &str) -> Option<&MemVersion> {
        self.objects
            .get(key)
            .and_then(|v| v.last())
            .filter(|v| !v.delete_marker)
    }
}

#[derive(Debug, Default)]
struct State {
    buckets: BTreeMap<String, MemBucket>,
    keys: BTreeMap<String, KmsKey>,
    aliases: BTreeMap<String, String>,
    uploads: HashMap<String, Upload>,
    next: u64,
}

impl State {
    fn bucket(&self, name: &str) -> Result<&MemBucket, ProviderError> {
        self.buckets
            .get(name)
            .ok_or_else(|| not_found(format!("s3://{name}")))
    }

    fn bucket_mut(&mut self, name: &str) -> Result<&mut MemBucket, ProviderError> {
        self.buckets
            .get_mut(name)
            .ok_or_else(|| not_found(format!("s3://{name}")))
    }
}

#[derive(Debug, Clone)]
struct Upload {
    bucket: String,
    key: String,
    if_match: String,
    target: S3Encryption,
    storage_class: String,
    parts: BTreeMap<i32, String>,
}

/// The in-process cloud.
#[derive(Debug)]
pub struct MemCloud {
    pub region: String,
    pub account: String,
    state: Mutex<State>,
    /// Requests answered, by every method.
    pub requests: AtomicU64,
}

fn not_found(what: impl Into<String>) -> ProviderError {
    ProviderError::NotFound { what: what.into() }
}

impl MemCloud {
    pub fn new(region: &str, account: &str) -> MemCloud {
        MemCloud {
            region: region.into(),
            account: account.into(),
            state: Mutex::new(State::default()),
            requests: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(st: &mut State) -> u64 {
        st.next += 1;
        st.next
    }

    /// Create a customer-managed key with an alias (`alias/NAME`); returns its ARN.
    pub fn create_key(&self, alias: &str) -> String {
        let mut st = self.state();
        let n = Self::fresh(&mut st);
        let id = format!("{n:08x}-0000-4000-8000-{n:012x}");
        let arn = format!("arn:aws:kms:{}:{}:key/{id}", self.region, self.account);
        st.keys.insert(
            arn.clone(),
            KmsKey {
                arn: arn.clone(),
                key_id: id,
                manager: "CUSTOMER".into(),
                state: "Enabled".into(),
                spec: "SYMMETRIC_DEFAULT".into(),
                usage: "ENCRYPT_DECRYPT".into(),
            },
        );
        st.aliases.insert(alias.to_string(), arn.clone());
        arn
    }

    /// Create a bucket (versioned or not) with a default rule.
    pub fn create_bucket(&self, name: &str, versioned: bool, default: S3Encryption) {
        self.state().buckets.insert(
            name.to_string(),
            MemBucket {
                default,
                versioned,
                ..Default::default()
            },
        );
    }

    /// Write an object (a new version in a versioned bucket); returns its ETag.
    pub fn put(&self, bucket: &str, key: &str, size: u64, encryption: S3Encryption) -> String {
        let mut st = self.state();
        let n = Self::fresh(&mut st);
        let etag = format!("\"{n:032x}\"");
        let Some(b) = st.buckets.get_mut(bucket) else {
            return etag;
        };
        let v = MemVersion {
            version_id: b.versioned.then(|| format!("v{n}")),
            etag: etag.clone(),
            size,
            storage_class: "STANDARD".into(),
            encryption,
            tags: String::new(),
            checksum: None,
            delete_marker: false,
        };
        let versions = b.objects.entry(key.to_string()).or_default();
        if !b.versioned {
            versions.clear();
        }
        versions.push(v);
        etag
    }

    /// Add a version as a report lists it (oldest first), keeping its id and ETag.
    pub fn put_version(&self, bucket: &str, key: &str, v: MemVersion) {
        if let Some(b) = self.state().buckets.get_mut(bucket) {
            b.objects.entry(key.to_string()).or_default().push(v);
        }
    }

    /// Make a bucket synthetic: every key it does not hold HEADs as `v`.
    pub fn answer_every_key(&self, bucket: &str, v: MemVersion) {
        if let Some(b) = self.state().buckets.get_mut(bucket) {
            b.every_key = Some(v);
        }
    }

    /// A copy of a bucket's state.
    pub fn bucket(&self, name: &str) -> Option<MemBucket> {
        self.state().buckets.get(name).cloned()
    }

    fn resolve(st: &State, key_ref: &str) -> Option<KmsKey> {
        let arn = if let Some(a) = st.aliases.get(key_ref) {
            a.clone()
        } else if let Some(alias) = key_ref
            .split(':')
            .nth(5)
            .filter(|r| r.starts_with("alias/"))
        {
            st.aliases.get(alias)?.clone()
        } else if key_ref.starts_with("arn:") {
            key_ref.to_string()
        } else {
            st.keys.values().find(|k| k.key_id == key_ref)?.arn.clone()
        };
        st.keys.get(&arn).cloned()
    }

    /// The encryption a write with `target` gives (a key named by alias is stored by ARN).
    fn written(st: &State, target: &S3Encryption) -> Result<S3Encryption, ProviderError> {
        let mut enc = S3Encryption {
            algorithm: target.algorithm.clone(),
            bucket_key: target.bucket_key,
            ..Default::default()
        };
        if target.algorithm.starts_with("aws:kms") {
            let k = match &target.kms_key_arn {
                Some(k) => Self::resolve(st, k).ok_or_else(|| ProviderError::KeyUnusable {
                    key: k.clone(),
                    detail: "not found".into(),
                })?,
                None => return Ok(enc),
            };
            if k.state != "Enabled" {
                return Err(ProviderError::KeyUnusable {
                    key: k.arn,
                    detail: k.state,
                });
            }
            enc.kms_key_arn = Some(k.arn);
            enc.key_manager = Some(k.manager);
        }
        Ok(enc)
    }

    /// Write a new current version with `enc`, copied from `from` (the copy of a version onto
    /// itself): a new ETag, the same bytes, tags and checksum.
    fn copy_over(
        st: &mut State,
        bucket: &str,
        key: &str,
        from: MemVersion,
        enc: S3Encryption,
        storage_class: &str,
    ) -> Written {
        let n = Self::fresh(st);
        let b = st.buckets.get_mut(bucket).expect("bucket checked");
        let v = MemVersion {
            version_id: b.versioned.then(|| format!("v{n}")),
            etag: format!("\"{n:032x}\""),
            encryption: enc,
            storage_class: storage_class.to_string(),
            ..from
        };
        let written = Written {
            etag: v.etag.clone(),
            version_id: v.version_id.clone(),
        };
        let versions = b.objects.entry(key.to_string()).or_default();
        if !b.versioned {
            versions.clear();
        }
        versions.push(v);
        written
    }

    fn current_guarded(
        st: &State,
        bucket: &str,
        key: &str,
        if_match: &str,
    ) -> Result<MemVersion, ProviderError> {
        let b = st.bucket(bucket)?;
        let v = b
            .current(key)
            .ok_or_else(|| not_found(format!("s3://{bucket}/{key}")))?;
        if v.etag != if_match {
            return Err(ProviderError::Precondition {
                what: format!("s3://{bucket}/{key}"),
            });
        }
        Ok(v.clone())
    }
}

impl KeyRead for MemCloud {
    async fn describe_key(&self, key_ref: &str) -> Result<Option<KmsKey>, ProviderError> {
        Ok(Self::resolve(&self.state(), key_ref))
    }
}

impl S3Read for MemCloud {
    async fn list_buckets(&self) -> Result<Vec<String>, ProviderError> {
        Ok(self.state().buckets.keys().cloned().collect())
    }

    async fn bucket_settings(&self, bucket: &str) -> Result<BucketSettings, ProviderError> {
        let st = self.state();
        let b = st.bucket(bucket)?;
        Ok(BucketSettings {
            region: self.region.clone(),
            default_encryption: b.default.clone(),
            versioning: if b.versioned { "Enabled" } else { "" }.into(),
            object_lock: false,
            tags: b.tags.clone(),
            acls: false,
            changes_in_place: false,
        })
    }

    async fn surroundings(&self, bucket: &str) -> Result<Surroundings, ProviderError> {
        self.state().bucket(bucket)?;
        Ok(Surroundings::default())
    }

    async fn inventory_configurations(
        &self,
        _bucket: &str,
    ) -> Result<Vec<InventoryConfig>, ProviderError> {
        Ok(Vec::new())
    }

    async fn folders(&self, _bucket: &str, _prefix: &str) -> Result<Vec<String>, ProviderError> {
        Ok(Vec::new())
    }

    async fn read_small(
        &self,
        bucket: &str,
        key: &str,
        _limit: u64,
    ) -> Result<Vec<u8>, ProviderError> {
        Err(not_found(format!(
            "s3://{bucket}/{key} (the memory cloud holds no bytes)"
        )))
    }

    async fn download(
        &self,
        bucket: &str,
        key: &str,
        _to: &mut std::fs::File,
    ) -> Result<String, ProviderError> {
        Err(not_found(format!(
            "s3://{bucket}/{key} (the memory cloud holds no bytes)"
        )))
    }

    async fn list_page(
        &self,
        bucket: &str,
        all_versions: bool,
        token: Option<String>,
    ) -> Result<ListPage, ProviderError> {
        const PAGE: usize = 1000;
        let st = self.state();
        let b = st.bucket(bucket)?;
        let mut out = ListPage::default();
        let from = match &token {
            Some(t) => std::ops::Bound::Excluded(t.clone()),
            None => std::ops::Bound::Unbounded,
        };
        for (key, versions) in b.objects.range((from, std::ops::Bound::Unbounded)) {
            if out.objects.len() >= PAGE {
                out.next = out.objects.last().map(|o| o.key.clone());
                break;
            }
            let n = versions.len();
            for (i, v) in versions.iter().enumerate().rev() {
                let latest = i + 1 == n;
                if v.delete_marker || (!all_versions && !latest) {
                    continue;
                }
                out.objects.push(ListedObject {
                    key: key.clone(),
                    version_id: v.version_id.clone(),
                    is_latest: latest,
                    size: v.size,
                    etag: v.etag.clone(),
                    storage_class: v.storage_class.clone(),
                    last_modified: "2026-11-26T00:00:00Z".into(),
                });
            }
        }
        Ok(out)
    }

    async fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectHead, ProviderError> {
        let st = self.state();
        let b = st.bucket(bucket)?;
        let v = b
            .version(key, version_id)
            .or(b.every_key.as_ref())
            .filter(|v| !v.delete_marker)
            .ok_or_else(|| not_found(format!("s3://{bucket}/{key}")))?;
        Ok(ObjectHead {
            etag: v.etag.clone(),
            version_id: v.version_id.clone(),
            size: v.size,
            storage_class: v.storage_class.clone(),
            archive_status: None,
            encryption: v.encryption.clone(),
            lock: ObjectLock::default(),
            website_redirect: None,
        })
    }

    async fn object_lock(
        &self,
        _bucket: &str,
        _key: &str,
        _version_id: Option<&str>,
    ) -> Result<ObjectLock, ProviderError> {
        Ok(ObjectLock::default())
    }
}

impl S3Write for MemCloud {
    async fn bucket_default(&self, bucket: &str) -> Result<S3Encryption, ProviderError> {
        Ok(self.state().bucket(bucket)?.default.clone())
    }

    async fn set_bucket_default(
        &self,
        bucket: &str,
        rule: &S3Encryption,
    ) -> Result<(), ProviderError> {
        let mut st = self.state();
        let b = st.bucket_mut(bucket)?;
        b.default = rule.clone();
        Ok(())
    }

    async fn copy_in_place(&self, req: &CopyInPlace<'_>) -> Result<Written, ProviderError> {
        let mut st = self.state();
        let from = Self::current_guarded(&st, req.bucket, req.key, req.if_match)?;
        let enc = Self::written(&st, req.target)?;
        if enc == from.encryption && req.storage_class == from.storage_class {
            return Err(ProviderError::Invalid {
                what: format!("s3://{}/{}", req.bucket, req.key),
                detail: "InvalidRequest: a copy onto itself must change something".into(),
            });
        }
        Ok(Self::copy_over(
            &mut st,
            req.bucket,
            req.key,
            from,
            enc,
            req.storage_class,
        ))
    }

    async fn start_multipart(&self, req: &CopyInPlace<'_>) -> Result<String, ProviderError> {
        let mut st = self.state();
        Self::current_guarded(&st, req.bucket, req.key, req.if_match)?;
        let n = Self::fresh(&mut st);
        let id = format!("upload-{n}");
        st.uploads.insert(
            id.clone(),
            Upload {
                bucket: req.bucket.into(),
                key: req.key.into(),
                if_match: req.if_match.into(),
                target: req.target.clone(),
                storage_class: req.storage_class.into(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn copy_part(
        &self,
        req: &CopyInPlace<'_>,
        upload_id: &str,
        number: i32,
        _first: u64,
        _last: u64,
    ) -> Result<CopiedPart, ProviderError> {
        let mut st = self.state();
        Self::current_guarded(&st, req.bucket, req.key, req.if_match)?;
        let n = Self::fresh(&mut st);
        let u = st
            .uploads
            .get_mut(upload_id)
            .ok_or_else(|| not_found(format!("upload {upload_id}")))?;
        let etag = format!("\"part{n}\"");
        u.parts.insert(number, etag.clone());
        Ok(CopiedPart {
            number,
            etag,
            checksum: None,
        })
    }

    async fn list_parts(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<Vec<CopiedPart>, ProviderError> {
        let st = self.state();
        let u = st
            .uploads
            .get(upload_id)
            .ok_or_else(|| not_found(format!("upload {upload_id}")))?;
        Ok(u.parts
            .iter()
            .map(|(n, e)| CopiedPart {
                number: *n,
                etag: e.clone(),
                checksum: None,
            })
            .collect())
    }

    async fn complete_multipart(
        &self,
        req: &CopyInPlace<'_>,
        upload_id: &str,
        _parts: &[CopiedPart],
    ) -> Result<Written, ProviderError> {
        let mut st = self.state();
        let u = st
            .uploads
            .get(upload_id)
            .cloned()
            .ok_or_else(|| not_found(format!("upload {upload_id}")))?;
        let from = Self::current_guarded(&st, &u.bucket, &u.key, req.if_match)?;
        if from.etag != u.if_match {
            return Err(ProviderError::Precondition {
                what: format!("s3://{}/{}", u.bucket, u.key),
            });
        }
        let enc = Self::written(&st, &u.target)?;
        st.uploads.remove(upload_id);
        Ok(Self::copy_over(
            &mut st,
            &u.bucket,
            &u.key,
            from,
            enc,
            &u.storage_class,
        ))
    }

    async fn abort_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<(), ProviderError> {
        self.state().uploads.remove(upload_id);
        Ok(())
    }

    async fn update_encryption(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        key_arn: &str,
        bucket_key: bool,
    ) -> Result<(), ProviderError> {
        let mut st = self.state();
        let enc = Self::written(
            &st,
            &S3Encryption {
                algorithm: "aws:kms".into(),
                kms_key_arn: Some(key_arn.into()),
                bucket_key,
                ..Default::default()
            },
        )?;
        let b = st.bucket_mut(bucket)?;
        let versions = b
            .objects
            .get_mut(key)
            .ok_or_else(|| not_found(format!("s3://{bucket}/{key}")))?;
        let v = match version_id {
            Some(id) => versions
                .iter_mut()
                .find(|v| v.version_id.as_deref() == Some(id)),
            None => versions.last_mut(),
        }
        .filter(|v| !v.delete_marker)
        .ok_or_else(|| not_found(format!("s3://{bucket}/{key}")))?;
        v.encryption = enc;
        Ok(())
    }

    async fn key_versions(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Vec<(String, String)>, ProviderError> {
        let st = self.state();
        let b = st.bucket(bucket)?;
        Ok(b.objects
            .get(key)
            .map(|vs| {
                vs.iter()
                    .rev()
                    .filter(|v| !v.delete_marker)
                    .map(|v| {
                        (
                            v.version_id.clone().unwrap_or_else(|| "null".into()),
                            v.etag.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn content_checksum(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<String>, ProviderError> {
        let st = self.state();
        let b = st.bucket(bucket)?;
        let v = b
            .version(key, version_id)
            .ok_or_else(|| not_found(format!("s3://{bucket}/{key}")))?;
        Ok(v.checksum.clone())
    }

    async fn object_tagging(&self, bucket: &str, key: &str) -> Result<String, ProviderError> {
        let st = self.state();
        st.buckets
            .get(bucket)
            .and_then(|b| b.current(key))
            .map(|v| v.tags.clone())
            .ok_or_else(|| not_found(format!("s3://{bucket}/{key}")))
    }

    async fn bucket_owner(&self, _bucket: &str) -> Result<Option<String>, ProviderError> {
        Ok(Some(format!("owner-{}", self.account)))
    }

    async fn object_grants(&self, _bucket: &str, _key: &str) -> Result<Grants, ProviderError> {
        Ok(Grants {
            owner: Some(format!("owner-{}", self.account)),
            ..Default::default()
        })
    }
}

impl SageMakerApi for MemCloud {
    async fn list_endpoints(&self) -> Result<Vec<String>, ProviderError> {
        Ok(Vec::new())
    }

    async fn describe_endpoint(
        &self,
        name: &str,
    ) -> Result<(String, String, String), ProviderError> {
        Err(not_found(format!("endpoint {name}")))
    }

    async fn endpoint_config_json(&self, name: &str) -> Result<Value, ProviderError> {
        Err(not_found(format!("endpoint config {name}")))
    }

    async fn describe_model(&self, name: &str) -> Result<ModelInfo, ProviderError> {
        Err(not_found(format!("model {name}")))
    }

    async fn tags(&self, _arn: &str) -> Result<BTreeMap<String, String>, ProviderError> {
        Ok(BTreeMap::new())
    }

    async fn list_notebooks(&self) -> Result<Vec<NotebookInfo>, ProviderError> {
        Ok(Vec::new())
    }

    async fn list_training_jobs(&self) -> Result<Vec<TrainingJobInfo>, ProviderError> {
        Ok(Vec::new())
    }

    async fn create_endpoint_config_json(&self, _request: &Value) -> Result<bool, ProviderError> {
        Err(ProviderError::Other {
            what: "sagemaker".into(),
            detail: "the memory cloud has no SageMaker".into(),
        })
    }

    async fn update_endpoint(
        &self,
        name: &str,
        _config: &str,
        _deployment: Option<&Value>,
    ) -> Result<(), ProviderError> {
        Err(not_found(format!("endpoint {name}")))
    }
}

impl AccessRead for MemCloud {
    async fn key_facts(&self, key_arn: &str) -> Result<KeyFacts, ProviderError> {
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{}:root", self.account)},
                "Action": "kms:*",
                "Resource": "*"
            }]
        });
        Ok(KeyFacts {
            key_arn: key_arn.to_string(),
            policy: Doc {
                source: format!("key policy of {key_arn}"),
                value: policy,
            },
            grants: Vec::new(),
        })
    }

    async fn identity(&self, principal_arn: &str) -> Result<IdentityView, ProviderError> {
        Ok(IdentityView::Seen(Identity {
            policies: vec![Doc {
                source: format!("inline policy of {principal_arn}"),
                value: serde_json::json!({
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
                }),
            }],
            boundary: None,
        }))
    }

    async fn caller(&self) -> Result<String, ProviderError> {
        Ok(format!("arn:aws:iam::{}:role/rekey", self.account))
    }

    async fn role_trust(
        &self,
        _role_arn: &str,
    ) -> Result<crate::providers::iam::Trust, ProviderError> {
        Ok(crate::providers::iam::Trust::Policy(serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "batchoperations.s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]
        })))
    }
}

/// The in-process cloud runs no S3 Batch Operations jobs (the emulator overlay does).
impl crate::providers::S3Batch for MemCloud {
    async fn put_manifest(&self, _: &str, _: &str, _: Vec<u8>) -> Result<String, ProviderError> {
        Err(no_batch())
    }

    async fn create_job(&self, _: &crate::batch::JobRequest) -> Result<String, ProviderError> {
        Err(no_batch())
    }

    async fn find_job(&self, _: &str) -> Result<Option<crate::batch::JobInfo>, ProviderError> {
        Err(no_batch())
    }

    async fn describe_job(&self, _: &str) -> Result<crate::batch::JobInfo, ProviderError> {
        Err(no_batch())
    }

    async fn cancel_job(&self, _: &str, _: &str) -> Result<(), ProviderError> {
        Err(no_batch())
    }
}

fn no_batch() -> ProviderError {
    ProviderError::Other {
        what: "S3 Batch Operations".into(),
        detail: "the in-process cloud runs no batch jobs".into(),
    }
}
