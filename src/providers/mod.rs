//! Cloud providers behind small traits. The core sees only these traits and the shared
//! `ProviderError`; each provider maps its SDK's errors and types into them.
//!
//! Contract for every method: it makes the calls it names and nothing else, never writes
//! unless its name says so, and returns `ProviderError::NotFound` (not an SDK error) for a
//! missing resource.

pub mod aws;
pub mod gcs;
pub mod iam;
pub mod memory;
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectHead {
    pub etag: String,
    /// The version HEAD answered for (none in an unversioned bucket).
    pub version_id: Option<String>,
    pub size: u64,
    pub storage_class: String,
    pub archive_status: Option<String>,
    /// Encryption as reported; the KMS key id is as S3 returned it (not yet resolved).
    pub encryption: S3Encryption,
    pub lock: ObjectLock,
    /// `x-amz-website-redirect-location`, which a copy does not carry over by itself.
    pub website_redirect: Option<String>,
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
    /// Whether object ACLs are in force (Object Ownership is not BucketOwnerEnforced).
    pub acls: bool,
    /// Whether something changes objects without changing their ETag: a lifecycle rule that
    /// transitions storage classes, or a website configuration (redirects matter).
    pub changes_in_place: bool,
}

/// Read-only S3 calls the inventory needs.
pub trait S3Read: Send + Sync {
    /// Bucket names visible to the caller, sorted.
    fn list_buckets(&self) -> impl Future<Output = Result<Vec<String>, ProviderError>> + Send;
    fn bucket_settings(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<BucketSettings, ProviderError>> + Send;
    /// The bucket's policy, replication and event notification configuration.
    fn surroundings(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<crate::model::Surroundings, ProviderError>> + Send;
    /// The bucket's S3 Inventory configurations (every page).
    fn inventory_configurations(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Vec<crate::s3report::InventoryConfig>, ProviderError>> + Send;
    /// The folders (common prefixes, ending in `/`) directly under `prefix`, sorted.
    fn folders(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, ProviderError>> + Send;
    /// A small object's bytes (a manifest); larger than `limit` bytes is an error.
    fn read_small(
        &self,
        bucket: &str,
        key: &str,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<u8>, ProviderError>> + Send;
    /// Stream an object into `to` and return the MD5 (hex) of what was written.
    fn download(
        &self,
        bucket: &str,
        key: &str,
        to: &mut std::fs::File,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;
    /// One page of current objects (`all_versions` false) or of every version; delete
    /// markers are left out (they hold no data to encrypt).
    fn list_page(
        &self,
        bucket: &str,
        all_versions: bool,
        token: Option<String>,
    ) -> impl Future<Output = Result<ListPage, ProviderError>> + Send;
    /// HEAD one object version. An SSE-C object, whose HEAD S3 refuses with 400 without
    /// the customer key, comes back with algorithm `sse-c`. `object_lock`: the bucket has
    /// Object Lock, so the version's retention and legal hold are read explicitly (HEAD omits
    /// them without the permissions), `unreadable` when they cannot be.
    fn head_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<ObjectHead, ProviderError>> + Send;
    /// The Object Lock state of a version (GetObjectRetention, GetObjectLegalHold).
    fn object_lock(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<ObjectLock, ProviderError>> + Send;
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
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Written {
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// An object's ACL grants beyond its owner's own FULL_CONTROL, as `x-amz-grant-*` header
/// values (`id="…"`, `uri="…"`, `emailAddress="…"`, comma-separated). An in-place copy
/// resets the ACL to the owner's alone unless the copy carries them.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Grants {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_acp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_acp: Option<String>,
    /// The object's owner (canonical user id): an in-place copy makes the copier its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl Grants {
    /// No grant beyond the owner's own.
    pub fn is_empty(&self) -> bool {
        self.full_control.is_none()
            && self.read.is_none()
            && self.read_acp.is_none()
            && self.write_acp.is_none()
    }

    /// The same grants (whoever owns the object).
    pub fn same_grants(&self, other: &Grants) -> bool {
        (
            &self.full_control,
            &self.read,
            &self.read_acp,
            &self.write_acp,
        ) == (
            &other.full_control,
            &other.read,
            &other.read_acp,
            &other.write_acp,
        )
    }
}

/// An in-place re-encryption by copy: the object is copied onto itself with new encryption,
/// only if its ETag is still `if_match`, which guards both the copy source
/// (`x-amz-copy-source-if-match`) and the destination (`If-Match`), so that a write landing
/// at any moment is never overwritten. The source is always the current version, never a
/// pinned version id (a copy from a version id would make old bytes current). Metadata,
/// Content-Type, Cache-Control, Expires, tags, checksum algorithm and storage class are kept;
/// the website redirect and ACL grants are carried by the request.
#[derive(Debug, Clone)]
pub struct CopyInPlace<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub if_match: &'a str,
    /// The encryption to write: `AES256` or `aws:kms` (with or without a key).
    pub target: &'a S3Encryption,
    pub storage_class: &'a str,
    pub size: u64,
    pub website_redirect: Option<&'a str>,
    /// ACL grants to re-apply (buckets that do not enforce bucket-owner ownership).
    pub grants: Option<&'a Grants>,
}

/// One part of a multipart copy, as CompleteMultipartUpload needs it.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct CopiedPart {
    pub number: i32,
    pub etag: String,
    /// The part's checksum, when the upload has a checksum algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// S3 writes the apply engine makes. None of them deletes an object or a version.
pub trait S3Write: S3Read {
    /// The bucket's default encryption rule as configured (the key as written in the rule),
    /// with its Bucket Key and blocked encryption types.
    fn bucket_default(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<S3Encryption, ProviderError>> + Send;
    /// Set the bucket's default rule, field for field; `algorithm: none` removes it.
    fn set_bucket_default(
        &self,
        bucket: &str,
        rule: &S3Encryption,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// CopyObject onto itself, guarded by `if_match` at the source and the destination.
    /// `Precondition` when the object changed, `Conflict` on a race (safe to send again:
    /// the same guards hold).
    fn copy_in_place(
        &self,
        req: &CopyInPlace<'_>,
    ) -> impl Future<Output = Result<Written, ProviderError>> + Send;
    /// Start a multipart copy of the object onto itself: HEAD (guarded by `if_match`) for
    /// the fields to keep, its tags, then CreateMultipartUpload. Returns the upload id.
    fn start_multipart(
        &self,
        req: &CopyInPlace<'_>,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;
    /// UploadPartCopy of bytes `first..=last` as part `number`, guarded by `if_match`.
    fn copy_part(
        &self,
        req: &CopyInPlace<'_>,
        upload_id: &str,
        number: i32,
        first: u64,
        last: u64,
    ) -> impl Future<Output = Result<CopiedPart, ProviderError>> + Send;
    /// Parts already copied into an upload; `NotFound` when the upload is gone (completed or
    /// aborted).
    fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<Vec<CopiedPart>, ProviderError>> + Send;
    /// CompleteMultipartUpload guarded by `If-Match: if_match` on the destination.
    /// `Precondition` when the object changed; `Conflict` on a race: never send it again,
    /// start over.
    fn complete_multipart(
        &self,
        req: &CopyInPlace<'_>,
        upload_id: &str,
        parts: &[CopiedPart],
    ) -> impl Future<Output = Result<Written, ProviderError>> + Send;
    /// Abort an upload rekey started (it deletes no object; an unknown upload is not an error).
    fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// UpdateObjectEncryption to a KMS key ARN, in place, no copy (a version, when given).
    fn update_encryption(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        key_arn: &str,
        bucket_key: bool,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// Every version of one key, newest first: (version id, ETag). Delete markers are left
    /// out. Used to tell, after a crash, which version rekey's own write made.
    fn key_versions(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, ProviderError>> + Send;
    /// The content checksum of a version (`ALGORITHM:value`), if the object has one: a copy
    /// keeps it, a different write does not have it.
    fn content_checksum(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<Option<String>, ProviderError>> + Send;
    /// The object's tag set, as one canonical string (`k=v&…`, sorted).
    fn object_tagging(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;
    /// The bucket owner's canonical user id (GetBucketAcl).
    fn bucket_owner(
        &self,
        bucket: &str,
    ) -> impl Future<Output = Result<Option<String>, ProviderError>> + Send;
    /// The object's ACL grants beyond its owner's FULL_CONTROL, and its owner (GetObjectAcl).
    fn object_grants(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Grants, ProviderError>> + Send;
}

/// S3 Batch Operations calls (S3 Control) and the one object write they need: the job's
/// manifest, put only where no object is (`If-None-Match: *`), never over one.
pub trait S3Batch: Send + Sync {
    /// Put a job manifest; returns its ETag. `Precondition` when an object is already there.
    fn put_manifest(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;
    /// CreateJob; returns the job id (the same one for the same token).
    fn create_job(
        &self,
        req: &crate::batch::JobRequest,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;
    /// The newest job with this description, whatever its status (ListJobs, every page).
    fn find_job(
        &self,
        description: &str,
    ) -> impl Future<Output = Result<Option<crate::batch::JobInfo>, ProviderError>> + Send;
    fn describe_job(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<crate::batch::JobInfo, ProviderError>> + Send;
    /// UpdateJobStatus Cancelled.
    fn cancel_job(
        &self,
        id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
}
