//! Cloud providers behind small traits. The core sees only these traits and the shared
//! `ProviderError`; each provider maps its SDK's errors and types into them.
//!
//! Contract for every method: it makes the calls it names and nothing else, never writes
//! unless its name says so, and returns `ProviderError::NotFound` (not an SDK error) for a
//! missing resource.

pub mod aws;
pub mod gcs;
pub mod sagemaker;

use std::future::Future;

use crate::error::ProviderError;
use crate::model::{KmsKey, ObjectLock, S3Encryption};

/// One entry of a bucket listing (current versions, or every version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub version_id: Option<String>,
    pub is_latest: bool,
    pub size: u64,
    pub etag: String,
    pub storage_class: String,
    pub last_modified: String,
}

/// A page of a listing, with the token for the next one.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    pub next: Option<String>,
}

/// What HEAD tells about one object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub etag: String,
    pub size: u64,
    pub storage_class: String,
    pub archive_status: Option<String>,
    /// Encryption as reported; the KMS key id is as S3 returned it (not yet resolved).
    pub encryption: S3Encryption,
    pub lock: ObjectLock,
}

/// Bucket-level settings the inventory reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSettings {
    pub region: String,
    /// The default rule; the KMS key id is as configured (it may be an alias).
    pub default_encryption: S3Encryption,
    pub versioning: String,
    pub object_lock: bool,
    pub tags: std::collections::BTreeMap<String, String>,
}

/// Read-only S3 calls the inventory needs.
pub trait S3Read: Send + Sync {
    /// Bucket names visible to the caller, sorted.
    fn list_buckets(&self) -> impl Future<Output = Result<Vec<String>, ProviderError>> + Send;
    fn bucket_settings(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<BucketSettings, ProviderError>> + Send;
    /// One page of current objects (`all_versions` false) or of every version; delete
    /// markers are left out (they hold no data to encrypt).
    fn list_page(
        &self,
        bucket: &str,
        all_versions: bool,
        token: Option<String>,
    ) -> impl Future<Output = Result<ListPage, ProviderError>> + Send;
    /// HEAD one object version. An SSE-C object, whose HEAD S3 refuses with 400 without
    /// the customer key, comes back with algorithm `sse-c`.
    fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<ObjectHead, ProviderError>> + Send;
}

/// KMS key lookups.
pub trait KeyRead: Send + Sync {
    /// Describe a key by id, ARN, alias or alias ARN; `None` if it does not exist.
    fn describe_key(
        &self,
        key_ref: &str,
    ) -> impl Future<Output = Result<Option<KmsKey>, ProviderError>> + Send;
}

/// The result of a write that produced a new object version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Written {
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// An in-place re-encryption by copy: the object is copied onto itself with new encryption,
/// only if its ETag is still `if_match`. Metadata, Content-Type, Cache-Control, tags and
/// storage class are kept.
#[derive(Debug, Clone)]
pub struct CopyInPlace<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// The source version, when the planned version is known.
    pub version_id: Option<&'a str>,
    pub if_match: &'a str,
    /// The encryption to write: `AES256`, `aws:kms` (with or without a key), or `none`
    /// (take the bucket default).
    pub target: &'a S3Encryption,
    pub storage_class: &'a str,
    pub size: u64,
}

/// S3 writes the apply engine makes. None of them deletes an object or a version.
pub trait S3Write: S3Read {
    /// The bucket's default encryption rule as configured (the key as written in the rule).
    fn bucket_default(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<S3Encryption, ProviderError>> + Send;
    /// Set the bucket's default rule; `algorithm: none` removes it.
    fn set_bucket_default(
        &self,
        bucket: &str,
        rule: &S3Encryption,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// CopyObject onto itself, guarded by `if_match`.
    fn copy_in_place(
        &self,
        req: &CopyInPlace<'_>,
    ) -> impl Future<Output = Result<Written, ProviderError>> + Send;
    /// The same with UploadPartCopy in parts of `part_size`, every part guarded by
    /// `if_match`; an unfinished upload is aborted (which deletes no object).
    fn multipart_copy_in_place(
        &self,
        req: &CopyInPlace<'_>,
        part_size: u64,
    ) -> impl Future<Output = Result<Written, ProviderError>> + Send;
    /// UpdateObjectEncryption to a KMS key ARN, in place, no copy.
    fn update_encryption(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        key_arn: &str,
        bucket_key: bool,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}
