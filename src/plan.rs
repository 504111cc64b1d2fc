//! Planning: a pure function from inventory records to a staged, versioned plan file and its
//! per-object manifest. No cloud calls happen here.
//!
//! Records arrive bucket by bucket (the bucket, then its objects). Manifest lines are
//! streamed to one temporary file per stage and joined in stage order at the end, so memory
//! holds one bucket's counters, never the estate.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::campaign::{LoadedCampaign, S3Engine, Versions};
use crate::error::{FileError, RekeyError};
use crate::inventory::{pin_id, target_of, PinnedKeys, Record};
use crate::model::{EncryptionClass, Resource, S3Bucket, S3Encryption, S3Object};
use crate::pricing::{self, Assumptions};

/// The plan file format versions this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    pub format_version: u32,
    pub campaign: String,
    pub created_at: String,
    pub rekey_version: String,
    /// sha256 of the campaign file the plan was made from.
    pub campaign_sha256: String,
    /// sha256 over the inventory records the plan was made from, in order.
    pub inventory_fingerprint: String,
    pub keys: PinnedKeys,
    pub settings: Settings,
    pub manifest: ManifestRef,
    pub stages: Vec<Stage>,
    pub unmatched: Vec<Unmatched>,
    pub summary: Totals,
    pub assumptions: Assumptions,
    /// Key-access verdicts of the campaign's `consumers:` and of the Cloud KMS checks (DESIGN
    /// §5): a team key with a verdict that is not `allowed` blocks what would move onto it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<crate::access::Verdict>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub region: String,
    pub engine: S3Engine,
    pub versions: Versions,
    pub multipart_threshold: u64,
    pub concurrency: usize,
    pub requests_per_second: u32,
    /// The campaign's endpoint override, if any (apply talks to the same place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// The GCP project of the plan's Cloud Storage buckets, its endpoint override, and the
    /// rewrite step size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs_max_bytes_per_call: Option<u64>,
    /// The accounts reached by AssumeRole (multi-account campaigns); apply reaches the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<crate::campaign::AwsAccount>,
    /// The campaign's maintenance window, if any; `apply --window` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::campaign::Window>,
    /// What the key-access preflight takes on the operator's word (apply re-checks with it).
    #[serde(default, skip_serializing_if = "is_default")]
    pub accept_unverified: crate::access::Acceptance,
    /// The batch engine's buckets, role and acceptances (`aws.s3.batch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<crate::campaign::BatchSection>,
    /// The Cloud Storage batch engine's manifest bucket and acceptances (`gcp.gcs.batch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs_batch: Option<crate::campaign::GcsBatchSection>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestRef {
    /// File name, beside the plan.
    pub file: String,
    pub sha256: String,
    pub entries: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    /// The checkpoint taken when the stage starts; `rollback --to` names it.
    pub checkpoint: String,
    pub buckets: Vec<BucketPlan>,
    /// SageMaker resources of this stage: endpoints to re-key, notebooks (manual) and
    /// training jobs (reported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sagemaker: Vec<SmPlan>,
    pub summary: Totals,
}

/// What the plan does with one SageMaker resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmPlan {
    pub kind: crate::model::ResourceKind,
    pub name: String,
    pub account: String,
    pub region: String,
    pub key: String,
    pub kms_key_arn: String,
    /// `rekey-endpoint`, `blocked`, `manual` (notebook instances) or `report` (training jobs).
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Model artifacts (`s3://...`) the endpoint serves: planned in this stage or earlier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// Steps an operator takes by hand (notebook instances).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manual_steps: Vec<String>,
    /// Execution roles of the endpoint's models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Every principal that uses the endpoint's team keys, with its verdict; apply evaluates
    /// them again and refuses a plan whose allowed verdicts no longer hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<crate::access::Verdict>,
    /// What the config's KmsKeyId covers (local NVMe storage and serverless variants are not).
    #[serde(
        default,
        skip_serializing_if = "crate::providers::sagemaker::VolumeKey::is_covered"
    )]
    pub volume_key: crate::providers::sagemaker::VolumeKey,
    /// UpdateEndpoint's DeploymentConfig from the campaign; none: the endpoint's own is kept
    /// (`RetainDeploymentConfig`), and always `RetainAllVariantProperties`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_config: Option<serde_json::Value>,
    /// The fingerprint of the source config and models the preflight checked: apply clones
    /// only that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
}

/// The deterministic name of an endpoint config cloned onto `key_arn`.
pub fn rekeyed_config_name(old: &str, key_arn: &str) -> String {
    let h = hex::encode(Sha256::digest(format!("{old}\n{key_arn}").as_bytes()));
    let suffix = format!("-rekey-{}", &h[..8]);
    let keep = 63usize.saturating_sub(suffix.len()).min(old.len());
    format!("{}{suffix}", &old[..keep])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketPlan {
    /// `aws` (S3) or `gcp` (Cloud Storage).
    #[serde(default = "aws_provider", skip_serializing_if = "is_aws")]
    pub provider: crate::model::Provider,
    pub account: String,
    pub region: String,
    pub bucket: String,
    /// The bucket's own team key; objects may map to others by prefix or tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub actions: Vec<Action>,
    /// Planned objects with a cost a reviewer should see (cold GCS storage classes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flagged: Vec<Blocked>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<Blocked>,
    /// Objects already on their team key.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped_on_target: u64,
    /// Lines of the manifest (1-based, inclusive) that hold this bucket's objects in this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_lines: Option<[u64; 2]>,
    /// The bucket keeps object ACLs (Object Ownership is not BucketOwnerEnforced): every copy
    /// reads the object's grants and re-applies them (one more request per object).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub acls: bool,
    /// A lifecycle transition or a website configuration can change an object's class or
    /// redirect without changing its ETag: every copy reads the object first (one more
    /// request per object), so such a change is not reverted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recheck: bool,
    /// What the stage's re-encryption sets off around the bucket.
    #[serde(default, skip_serializing_if = "SideEffects::is_empty")]
    pub side_effects: SideEffects,
    /// Hazards around the bucket (blocking unless accepted), each with its fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hazards: Vec<String>,
    /// The fingerprint of the bucket's policy, replication and notifications the plan judged
    /// (S3): apply refuses the plan, and verify reports the bucket, if they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surroundings_sha256: Option<String>,
    /// The S3 Inventory report the bucket's objects came from (none: LIST + HEAD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PlannedReport>,
    /// S3 Batch Operations jobs of this bucket and stage (a batch engine).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobPlan>,
}

/// One S3 Batch Operations job: the objects of one bucket, stage, storage class and key (all
/// three are job-wide in CreateJob), listed in the manifest with `job: N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobPlan {
    /// Unique in the plan.
    pub job: u32,
    /// `update-encryption` (S3UpdateObjectEncryption) or `copy` (S3PutObjectCopy).
    pub operation: String,
    pub storage_class: String,
    pub kms_key_arn: String,
    /// The manifest lists version ids (UpdateObjectEncryption of versions).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versioned: bool,
    pub objects: u64,
    pub bytes: u64,
    /// The job can overwrite a concurrent write (batch copy has no ETag condition): apply
    /// refuses it unless `aws.s3.batch.accept_unguarded` says the writers are frozen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unguarded: bool,
    /// A copy job's `UnModifiedSinceConstraint`: the newest Last-Modified of its objects as
    /// the inventory read them (S3 keeps it to the second: apply takes the end of that
    /// second). An object written since fails its task (412) instead of being copied over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmodified_since: Option<String>,
}

impl JobPlan {
    /// The service and operation that run the job, as an operator names them.
    pub fn engine_name(&self) -> &'static str {
        match self.operation.as_str() {
            "copy" => "S3 Batch Operations S3PutObjectCopy",
            "gcs-rewrite" => "Cloud Storage batch operations rewriteObject",
            _ => "S3 Batch Operations S3UpdateObjectEncryption",
        }
    }

    /// Why an unguarded job needs the writers frozen.
    pub fn unguarded_why(&self) -> &'static str {
        if self.operation == "gcs-rewrite" {
            "a batch rewrite takes no generation condition"
        } else {
            "a copy job has no ETag condition (its time guard is job-wide)"
        }
    }
}

/// A report a bucket was planned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedReport {
    /// `s3://…/manifest.json`.
    pub manifest: String,
    /// When the report's scan began: objects written after it are not planned.
    pub created: String,
    /// HEAD requests the plan took for the bucket (SSE-KMS and DSSE-KMS objects, for their key).
    pub heads: u64,
}

/// Events and copies a stage's re-encryption causes around a bucket. Every in-place copy is
/// an `s3:ObjectCreated:Copy` event and a new object version, which replication replicates;
/// for UpdateObjectEncryption the S3 documentation does not say whether it emits events or
/// replicates, so rekey counts it the same (the careful reading).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SideEffects {
    /// Notification deliveries (objects × SNS/SQS/Lambda destinations subscribed to copies).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notification_events: u64,
    /// Events sent to EventBridge (one per object when it is on).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub eventbridge_events: u64,
    /// Objects replication copies again (objects under an enabled rule's prefix).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replicated_copies: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replicated_bytes: u64,
    /// Estimated extra cost: EventBridge $1.00 per million events, replication PUTs at
    /// $0.005 per 1,000 (destination STANDARD), transfer not included (region unknown).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub estimated_cost_usd: f64,
}

impl SideEffects {
    pub fn is_empty(&self) -> bool {
        *self == SideEffects::default()
    }
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn aws_provider() -> crate::model::Provider {
    crate::model::Provider::Aws
}

fn is_aws(p: &crate::model::Provider) -> bool {
    *p == crate::model::Provider::Aws
}

impl BucketPlan {
    /// `s3://bucket` or `gs://bucket`.
    pub fn url(&self) -> String {
        match self.provider {
            crate::model::Provider::Aws => format!("s3://{}", self.bucket),
            crate::model::Provider::Gcp => format!("gs://{}", self.bucket),
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Set the bucket's default encryption to SSE-KMS with the team key and Bucket Key on.
    /// Always a bucket's first action, so that new writes land on the CMK.
    SetBucketDefault {
        key: String,
        from: S3Encryption,
        to: S3Encryption,
    },
    /// Re-encrypt the objects listed in the manifest for this bucket, stage and key.
    ReencryptObjects {
        key: String,
        kms_key_arn: String,
        engine: S3Engine,
        objects: u64,
        bytes: u64,
        #[serde(default, skip_serializing_if = "is_zero")]
        multipart_objects: u64,
        from: BTreeMap<EncryptionClass, u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Blocked {
    pub reason: String,
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Unmatched {
    pub bucket: String,
    /// Why: no mapping rule, or no stage, matches.
    pub reason: String,
    /// Whether the bucket itself (its default encryption) is unmatched.
    pub bucket_itself: bool,
    pub objects: u64,
    pub bytes: u64,
}

/// Counts and estimates for a stage, a team key within a stage, or the whole plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub buckets: u64,
    pub objects: u64,
    pub bytes: u64,
    pub blocked_objects: u64,
    pub skipped_objects: u64,
    /// Bytes whose old copy stays as a noncurrent version (versioned buckets, `copy` engine).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub noncurrent_bytes_added: u64,
    /// SageMaker endpoints re-keyed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub endpoints: u64,
    pub requests: BTreeMap<String, u64>,
    pub estimated_cost_usd: f64,
    pub estimated_seconds: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_key: BTreeMap<String, KeyTotals>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyTotals {
    pub buckets: u64,
    pub objects: u64,
    pub bytes: u64,
    pub requests: BTreeMap<String, u64>,
    pub estimated_cost_usd: f64,
    pub estimated_seconds: f64,
}

/// One line of the manifest: an object to re-encrypt, or one that is blocked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub stage: String,
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    pub etag: String,
    pub size: u64,
    pub storage_class: String,
    pub from: EncryptionClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_key_arn: Option<String>,
    /// The object's Bucket Key setting (undo restores it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_bucket_key: bool,
    /// False for a noncurrent version (`versions: all`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub latest: bool,
    /// The object's website redirect (an in-place copy must carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_redirect: Option<String>,
    /// A content hash a rewrite keeps (Cloud Storage's MD5): after a crash it tells rekey's
    /// rewrite from another writer's object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    pub team_key: String,
    pub to_key_arn: String,
    /// `copy`, `multipart-copy`, `update-encryption`, or `blocked`.
    pub step: String,
    /// The batch job (`JobPlan::job`) that runs the step; none: rekey runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Why an object cannot be planned, if it cannot.
fn blocked_reason(o: &S3Object, class: EncryptionClass, engine: S3Engine) -> Option<String> {
    let engine = engine.local();
    match class {
        EncryptionClass::SseC => {
            return Some(
                "sse-c: encrypted with a customer-provided key, which rekey never holds".into(),
            )
        }
        EncryptionClass::DsseKms => {
            return Some("dsse-kms: dual-layer SSE-KMS objects are reported, never touched".into())
        }
        EncryptionClass::Unknown => {
            return Some(format!(
            "unknown encryption {:?}: rekey does not know how to return it, so it is not planned",
            o.encryption.algorithm
        ))
        }
        _ => {}
    }
    if o.lock.unreadable {
        return Some(
            "object lock: its retention and legal hold could not be read (grant s3:GetObjectRetention and s3:GetObjectLegalHold, then plan again)".into(),
        );
    }
    if o.lock.is_locked() {
        return Some(
            "object lock: a retention or legal hold keeps the locked version on its old key".into(),
        );
    }
    let archived = matches!(o.storage_class.as_str(), "GLACIER" | "DEEP_ARCHIVE")
        || matches!(
            o.archive_status.as_deref(),
            Some("ARCHIVE_ACCESS" | "DEEP_ARCHIVE_ACCESS")
        );
    if archived && engine == S3Engine::Copy {
        return Some(format!(
            "archived ({}): a copy needs a restore first; use engine update-encryption or auto",
            o.archive_status.as_deref().unwrap_or(&o.storage_class)
        ));
    }
    // Copying a noncurrent version would make its old bytes current: never. Only
    // UpdateObjectEncryption re-keys a noncurrent version in place (by version id).
    if !o.is_latest && (engine == S3Engine::Copy || class == EncryptionClass::Unencrypted) {
        return Some(
            "noncurrent version: a copy would make it current; only engine update-encryption or auto re-keys it in place".into(),
        );
    }
    if class == EncryptionClass::Unencrypted && engine == S3Engine::UpdateEncryption {
        return Some(
            "unencrypted: UpdateObjectEncryption refuses unencrypted objects; use engine auto or copy".into(),
        );
    }
    None
}

/// The step that re-encrypts an object that is not blocked.
fn step_for(
    o: &S3Object,
    class: EncryptionClass,
    engine: S3Engine,
    threshold: u64,
) -> &'static str {
    let copy = if o.size > threshold {
        "multipart-copy"
    } else {
        "copy"
    };
    match engine.local() {
        S3Engine::Copy => copy,
        S3Engine::UpdateEncryption => "update-encryption",
        S3Engine::Auto if class == EncryptionClass::Unencrypted => copy,
        _ => "update-encryption",
    }
}

/// The largest object S3 Batch Operations copies (`S3PutObjectCopy` uses CopyObject: "objects
/// up to 5 GB"; S3 user guide, "Copy objects" batch operation).
pub const BATCH_COPY_LIMIT: u64 = 5 * 1000 * 1000 * 1000;

/// What a batch job needs of an object's bucket.
#[derive(Debug, Clone, Copy, Default)]
struct BatchBucket {
    versioned: bool,
    /// The bucket keeps object ACLs (a copy must re-apply the grants).
    acls: bool,
    /// Something changes objects' class or redirect without changing their ETag.
    changes_in_place: bool,
}

/// Whether a batch job of `engine` can run an object's `step`, or why it stays with rekey.
/// A job takes no ETag condition: only in a versioned bucket can its work be told from a
/// write made since the plan (UpdateObjectEncryption is pinned to the planned version; a
/// copy's output is the version right after the planned one), so unversioned buckets stay
/// with rekey's own guarded engine. A copy job re-applies no ACL grant and no website
/// redirect, so objects that need them stay with rekey too.
fn batch_fit(
    engine: S3Engine,
    step: &str,
    o: &S3Object,
    to_key_arn: &str,
    bucket: BatchBucket,
) -> Result<&'static str, String> {
    let account_of = |arn: &str| arn.split(':').nth(4).map(str::to_string);
    if engine.is_batch() && (!bucket.versioned || o.version_id.is_none()) {
        return Err(
            "batch: the bucket is not versioned, so a job (which takes no ETag condition) could not be told from a write made since the plan; rekey re-keys it, guarded by its ETag".into(),
        );
    }
    match engine {
        S3Engine::BatchUpdateEncryption => {
            if step != "update-encryption" {
                return Err(format!(
                    "batch: UpdateObjectEncryption refuses {} objects; rekey copies it",
                    if o.encryption.algorithm.is_empty() {
                        "unencrypted"
                    } else {
                        "these"
                    }
                ));
            }
            // UpdateObjectEncryption takes only keys of the bucket owner's account; the
            // object's key (the rollback key) must be one too, or the job could not undo it.
            if let (Some(a), Some(b)) = (
                o.encryption.kms_key_arn.as_deref().and_then(account_of),
                account_of(to_key_arn),
            ) {
                if a != b {
                    return Err(format!(
                        "batch: its key is in account {a}, the team key in {b}: UpdateObjectEncryption takes keys of the bucket owner's account only; rekey re-keys it locally"
                    ));
                }
            }
            Ok("update-encryption")
        }
        S3Engine::BatchCopy => {
            if step == "update-encryption" || !o.is_latest {
                return Err("batch: a copy job takes current objects only".into());
            }
            if bucket.acls {
                return Err("batch: the bucket keeps object ACLs, which a copy job does not re-apply; rekey copies it with its grants".into());
            }
            if o.website_redirect.is_some() || bucket.changes_in_place {
                return Err("batch: a website redirect (or a class that changes in place) a copy job does not carry; rekey copies it, reading it first".into());
            }
            if chrono::DateTime::parse_from_rfc3339(&o.last_modified).is_err() {
                return Err("batch: its Last-Modified time is unknown, which a copy job's guard (UnModifiedSinceConstraint) needs; rekey copies it, guarded by its ETag".into());
            }
            if o.etag.contains('-') {
                return Err("batch: a multipart upload's ETag, which a copy job's single-part copy cannot be told by at rollback; rekey copies it, recording what it wrote".into());
            }
            if o.size > BATCH_COPY_LIMIT {
                return Err(
                    "batch: over 5 GB, which S3PutObjectCopy cannot copy; rekey copies it in parts"
                        .into(),
                );
            }
            Ok("copy")
        }
        _ => Err(String::new()),
    }
}

/// Requests one object's step makes, by kind.
fn object_requests(
    step: &str,
    o: &S3Object,
    class: EncryptionClass,
    threshold: u64,
) -> Vec<(&'static str, u64)> {
    let mut r = Vec::new();
    let source_kms = matches!(
        class,
        EncryptionClass::AwsManagedKms | EncryptionClass::ForeignCmk
    );
    match step {
        "copy" => r.push(("s3:CopyObject", 1)),
        "multipart-copy" => {
            let part = threshold.max(o.size.div_ceil(10_000)).max(1);
            r.push(("s3:HeadObject", 1));
            r.push(("s3:GetObjectTagging", 1));
            r.push(("s3:CreateMultipartUpload", 1));
            r.push(("s3:UploadPartCopy", o.size.div_ceil(part)));
            r.push(("s3:CompleteMultipartUpload", 1));
        }
        _ => r.push(("s3:UpdateObjectEncryption", 1)),
    }
    // An upper bound: with Bucket Key on, S3 asks KMS far less often.
    r.push(("kms:GenerateDataKey", 1));
    if source_kms {
        r.push(("kms:Decrypt", 1));
    }
    r
}

#[derive(Default)]
struct GroupAcc {
    objects: u64,
    bytes: u64,
    multipart: u64,
    from: BTreeMap<EncryptionClass, u64>,
    requests: BTreeMap<String, u64>,
    retrieval_usd: f64,
    noncurrent_bytes: u64,
}

/// How a GCS key reads in the plan's S3-shaped encryption.
fn gcs_encryption(key: Option<&str>, customer_supplied: bool) -> S3Encryption {
    S3Encryption {
        algorithm: if customer_supplied {
            "customer-supplied"
        } else if key.is_some() {
            "cmek"
        } else {
            "google-managed"
        }
        .into(),
        kms_key_arn: key.map(str::to_string),
        ..Default::default()
    }
}

/// Cold GCS storage classes: a rewrite reads the data (retrieval fee) and replaces the object
/// (early-deletion fee under the class's minimum duration).
fn gcs_cold_flag(class: &str) -> Option<String> {
    let (fee, days) = match class {
        "NEARLINE" => ("$0.01/GB", 30),
        "COLDLINE" => ("$0.02/GB", 90),
        "ARCHIVE" => ("$0.05/GB", 365),
        _ => return None,
    };
    Some(format!(
        "{class}: a rewrite pays retrieval ({fee}) and early deletion for objects younger than {days} days"
    ))
}

/// Requests a GCS rewrite makes: one call per GiB rewritten (the service's step), KMS to
/// encrypt (and decrypt a CMEK source).
fn gcs_requests(o: &S3Object, class: EncryptionClass) -> Vec<(&'static str, u64)> {
    let mut r = vec![
        ("gcs:RewriteObject", 1 + o.size / (1 << 30)),
        ("kms:Encrypt", 1),
    ];
    if class == EncryptionClass::Cmek {
        r.push(("kms:Decrypt", 1));
    }
    r
}

/// What makes a batch job: one bucket and stage, and (job-wide in CreateJob) the operation,
/// storage class, key and whether versions are listed.
type JobBase = (&'static str, String, String, bool);
/// A job: its base and which chunk of it (a job lists at most `max_objects_per_job`).
type JobKey = (&'static str, String, String, bool, u32);
/// A job's number, objects, bytes and the newest Last-Modified of its objects.
type JobAcc = (u32, u64, u64, Option<chrono::DateTime<chrono::Utc>>);

#[derive(Default)]
struct StageBucketAcc {
    side_effects: SideEffects,
    groups: BTreeMap<(String, S3Engine), GroupAcc>,
    /// Batch jobs: (number, objects, bytes, newest Last-Modified of its objects).
    jobs: BTreeMap<JobKey, JobAcc>,
    /// The chunk each job base is filling.
    job_chunks: BTreeMap<JobBase, u32>,
    blocked: BTreeMap<String, (u64, u64)>,
    flagged: BTreeMap<String, (u64, u64)>,
    skipped: u64,
    lines: Option<[u64; 2]>,
}

struct BucketAcc {
    provider: crate::model::Provider,
    bucket: S3Bucket,
    team_key: Option<String>,
    class: EncryptionClass,
    own_stage: Option<usize>,
    stages: BTreeMap<usize, StageBucketAcc>,
    unmatched: BTreeMap<&'static str, (u64, u64)>,
    /// Key ARN → why nothing may move onto it here (its graph and hazards): judged once per
    /// key, not per object.
    surroundings_blocks: HashMap<String, Option<String>>,
    /// Objects of a report-planned bucket that took a HEAD (their KMS key).
    report_heads: u64,
    /// A Cloud Storage bucket's default storage class.
    default_class: Option<String>,
}

/// Builds a plan from inventory records.
pub struct Planner<'c> {
    campaign: &'c LoadedCampaign,
    keys: PinnedKeys,
    engine: S3Engine,
    threshold: u64,
    assumptions: Assumptions,
    stage_files: Vec<(PathBuf, BufWriter<File>, u64)>,
    current: Option<BucketAcc>,
    stages: Vec<Vec<BucketPlan>>,
    stage_groups: Vec<Vec<(String, GroupAcc, u64)>>,
    unmatched: Vec<Unmatched>,
    endpoints: Vec<EndpointAcc>,
    /// The last batch job number given.
    jobs: u32,
    /// Which objects are whose model artifacts, by bucket: (key or prefix, endpoint index,
    /// execution role reading it), looked up by the key's prefixes of the lengths that occur
    /// (a lookup per distinct length, not a scan of every artifact per object).
    artifact_index: HashMap<String, ArtifactIndex>,
    sagemaker_other: Vec<(usize, SmPlan)>,
    /// Key ARN → why what would move onto it is blocked (a consumer that may not use it).
    key_blocks: HashMap<String, String>,
    access: Vec<crate::access::Verdict>,
    fingerprint: Sha256,
    /// The buffer each record is serialised into for the fingerprint.
    line: Vec<u8>,
    _dir: tempfile::TempDir,
}

struct EndpointAcc {
    rec: crate::model::SmEndpoint,
    team_key: Option<String>,
    class: EncryptionClass,
    own_stage: Option<usize>,
    blocked: Option<String>,
    artifact_stage: Option<usize>,
}

const NO_MAPPING: &str = "no mapping rule matches";
const NO_STAGE: &str = "no stage matches";

impl<'c> Planner<'c> {
    /// The key-access verdicts of consumers and Cloud KMS checks (before any record): a key
    /// with one that is not `allowed` blocks every bucket, object and endpoint moving onto it.
    pub fn set_access(&mut self, verdicts: Vec<crate::access::Verdict>) {
        self.key_blocks.clear();
        for v in verdicts.iter().filter(|v| !v.allowed()) {
            let r = self.key_blocks.entry(v.key_arn.clone()).or_default();
            if !r.is_empty() {
                r.push_str(" | ");
            }
            r.push_str(&format!("key-access preflight: {}", v.summary()));
        }
        self.access = verdicts;
    }

    /// Why nothing of the current bucket may move onto `key_arn`: a principal of its consumer
    /// graph that may not use the key, or a hazard around it the campaign does not accept.
    fn cached_surroundings_block(&mut self, key_arn: &str) -> Option<String> {
        if let Some(hit) = self
            .current
            .as_ref()
            .and_then(|a| a.surroundings_blocks.get(key_arn))
        {
            return hit.clone();
        }
        let r = self.surroundings_block_of(&self.current.as_ref()?.bucket, key_arn);
        if let Some(a) = self.current.as_mut() {
            a.surroundings_blocks.insert(key_arn.to_string(), r.clone());
        }
        r
    }

    fn surroundings_block_of(&self, b: &S3Bucket, key_arn: &str) -> Option<String> {
        let mut why: Vec<String> = b
            .access
            .iter()
            .filter(|v| v.key_arn == key_arn && !v.allowed())
            .map(|v| format!("consumer graph: {}", v.summary()))
            .collect();
        let preflight = &self.campaign.spec.preflight;
        for h in crate::preflight::bucket_hazards(&b.bucket, &b.surroundings, key_arn) {
            if !preflight.accepts(&b.bucket, h.hazard) {
                why.push(format!(
                    "hazard {}: {}; fix: {} (or accept it: preflight.accept_hazards: [{{ bucket: {}, accept: [{}] }}])",
                    h.hazard.as_str(),
                    h.detail,
                    h.fix,
                    b.bucket,
                    h.hazard.as_str()
                ));
            }
        }
        (!why.is_empty()).then(|| why.join(" | "))
    }

    /// Why nothing may move onto `key_arn` in this bucket: a consumer or service agent that
    /// may not use the key, or (Cloud Storage) a key outside the bucket's location.
    fn key_block(&self, key_arn: &str, gcs: bool, bucket_location: &str) -> Option<String> {
        if let Some(r) = self.key_blocks.get(key_arn) {
            return Some(r.clone());
        }
        let key_location = crate::preflight::gcp_key_location(key_arn).unwrap_or_default();
        (gcs && !crate::preflight::gcs_location_fits(bucket_location, key_location)).then(|| {
            format!(
                "Cloud KMS key {key_arn} is in location {key_location}, the bucket in {bucket_location}: Cloud Storage needs a key in the bucket's location"
            )
        })
    }

    pub fn new(campaign: &'c LoadedCampaign, keys: PinnedKeys) -> Result<Self, RekeyError> {
        let dir =
            tempfile::tempdir().map_err(|e| RekeyError::io("creating a scratch directory", e))?;
        let mut stage_files = Vec::new();
        for i in 0..campaign.stages.len() {
            let path = dir.path().join(format!("stage-{i}.jsonl"));
            let f =
                File::create(&path).map_err(|e| RekeyError::io("creating a scratch file", e))?;
            stage_files.push((path, BufWriter::new(f), 0));
        }
        let s3 = campaign.s3();
        Ok(Planner {
            key_blocks: Default::default(),
            access: Vec::new(),
            campaign,
            keys,
            engine: s3.map(|s| s.engine).unwrap_or_default(),
            threshold: s3
                .map(|s| s.multipart_threshold)
                .unwrap_or(crate::campaign::DEFAULT_MULTIPART_THRESHOLD),
            assumptions: Assumptions::default(),
            stage_files,
            current: None,
            stages: vec![Vec::new(); campaign.stages.len()],
            stage_groups: (0..campaign.stages.len()).map(|_| Vec::new()).collect(),
            unmatched: Vec::new(),
            endpoints: Vec::new(),
            jobs: 0,
            artifact_index: HashMap::new(),
            sagemaker_other: Vec::new(),
            fingerprint: Sha256::new(),
            line: Vec::with_capacity(1024),
            _dir: dir,
        })
    }

    fn stage_of(&self, record: &Record, tags: &BTreeMap<String, String>) -> Option<usize> {
        let target = target_of(&record.resource, tags, record.team_key.as_deref());
        self.campaign
            .stages
            .iter()
            .position(|(_, m)| m.as_ref().is_none_or(|m| m.matches(&target)))
    }

    /// Take the next inventory record.
    pub fn add(&mut self, record: &Record) -> Result<(), RekeyError> {
        // One reused buffer: the record as serialised, then hashed in one piece.
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)
            .map_err(|e| RekeyError::Internal(e.to_string()))?;
        self.line.push(b'\n');
        self.fingerprint.update(&self.line);
        match &record.resource {
            Resource::S3Bucket(b) => {
                self.finish_bucket()?;
                let own_stage = match record.team_key {
                    Some(_) => self.stage_of(record, &b.tags),
                    None => None,
                };
                self.current = Some(BucketAcc {
                    provider: crate::model::Provider::Aws,
                    bucket: b.clone(),
                    team_key: record.team_key.clone(),
                    class: record.class,
                    own_stage,
                    stages: BTreeMap::new(),
                    unmatched: BTreeMap::new(),
                    surroundings_blocks: HashMap::new(),
                    report_heads: 0,
                    default_class: None,
                });
                Ok(())
            }
            Resource::S3Object(o) => self.add_object(record, o),
            // GCS buckets and objects go through the same planning as S3's, in S3's shape:
            // the generation is the precondition (ETag and version id), the key the "ARN".
            Resource::GcsBucket(g) => {
                self.finish_bucket()?;
                let own_stage = match record.team_key {
                    Some(_) => self.stage_of(record, &g.labels),
                    None => None,
                };
                self.current = Some(BucketAcc {
                    provider: crate::model::Provider::Gcp,
                    bucket: S3Bucket {
                        account: g.account.clone(),
                        region: g.location.clone(),
                        bucket: g.bucket.clone(),
                        default_encryption: gcs_encryption(g.default_kms_key.as_deref(), false),
                        versioning: if g.versioning {
                            "Enabled"
                        } else {
                            "Unversioned"
                        }
                        .into(),
                        object_lock: false,
                        tags: g.labels.clone(),
                        acls: false,
                        changes_in_place: false,
                        report: None,
                        surroundings: Default::default(),
                        access: Vec::new(),
                    },
                    team_key: record.team_key.clone(),
                    class: record.class,
                    own_stage,
                    stages: BTreeMap::new(),
                    unmatched: BTreeMap::new(),
                    surroundings_blocks: HashMap::new(),
                    report_heads: 0,
                    default_class: g.storage_class.clone(),
                });
                Ok(())
            }
            Resource::GcsObject(g) => {
                let o = S3Object {
                    account: g.account.clone(),
                    region: String::new(),
                    bucket: g.bucket.clone(),
                    key: g.name.clone(),
                    version_id: Some(g.generation.to_string()),
                    is_latest: true,
                    size: g.size,
                    etag: g.generation.to_string(),
                    storage_class: g.storage_class.clone(),
                    archive_status: None,
                    last_modified: String::new(),
                    encryption: gcs_encryption(g.kms_key.as_deref(), g.customer_supplied),
                    lock: Default::default(),
                    website_redirect: None,
                    content_hash: g.content_hash.clone(),
                };
                self.add_object(record, &o)
            }
            Resource::SagemakerEndpoint(e) => {
                let own_stage = match record.team_key {
                    Some(_) => self.stage_of(record, &e.tags),
                    None => None,
                };
                let blocked = crate::preflight::blocking(&e.access).or_else(|| {
                    e.models.iter().find_map(|m| {
                        m.artifacts.iter().find_map(|a| {
                            a.key_access.as_ref().map(|r| {
                                format!("model {} ({}): {r}", m.name, m.execution_role_arn)
                            })
                        })
                    })
                });
                let idx = self.endpoints.len();
                for m in &e.models {
                    for a in &m.artifacts {
                        if let Some((bucket, key)) =
                            a.url.strip_prefix("s3://").and_then(|p| p.split_once('/'))
                        {
                            self.artifact_index
                                .entry(bucket.to_string())
                                .or_default()
                                .add(key, idx, &m.execution_role_arn);
                        }
                    }
                }
                self.endpoints.push(EndpointAcc {
                    rec: e.clone(),
                    team_key: record.team_key.clone(),
                    class: record.class,
                    own_stage,
                    blocked,
                    artifact_stage: None,
                });
                Ok(())
            }
            Resource::SagemakerNotebookInstance(o) | Resource::SagemakerTrainingJob(o) => {
                let name = record.resource.display_name();
                let Some(key) = record.team_key.clone() else {
                    self.unmatched.push(Unmatched {
                        bucket: name,
                        reason: NO_MAPPING.into(),
                        bucket_itself: true,
                        objects: 0,
                        bytes: 0,
                    });
                    return Ok(());
                };
                let Some(stage) = self.stage_of(record, &o.tags) else {
                    self.unmatched.push(Unmatched {
                        bucket: name,
                        reason: NO_STAGE.into(),
                        bucket_itself: true,
                        objects: 0,
                        bytes: 0,
                    });
                    return Ok(());
                };
                if record.class == EncryptionClass::TargetCmk {
                    return Ok(());
                }
                let arn = self.key_arn(&key, &o.account, &name)?;
                let notebook = matches!(record.resource, Resource::SagemakerNotebookInstance(_));
                let plan = SmPlan {
                    kind: record.resource.kind(),
                    name: o.name.clone(),
                    account: o.account.clone(),
                    region: o.region.clone(),
                    key,
                    kms_key_arn: arn.clone(),
                    action: if notebook { "manual" } else { "report" }.into(),
                    from_config: None,
                    new_config: None,
                    reason: Some(if notebook {
                        "a notebook instance's storage volume key cannot change in place"
                            .to_string()
                    } else {
                        format!(
                            "training jobs are immutable: their outputs{} are re-encrypted as S3 objects; new jobs must set OutputDataConfig.KmsKeyId and ResourceConfig.VolumeKmsKeyId",
                            o.output_path.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
                        )
                    }),
                    artifacts: Vec::new(),
                    access: Vec::new(),
                    volume_key: Default::default(),
                    deployment_config: None,
                    source_sha256: None,
                    manual_steps: if notebook {
                        vec![
                            format!("stop it: aws sagemaker stop-notebook-instance --notebook-instance-name {}", o.name),
                            "copy /home/ec2-user/SageMaker (the ML storage volume) to S3, into a bucket this campaign re-encrypts".into(),
                            format!("create a new instance with --kms-key-id {arn} and the same role, instance type, subnet, security groups and lifecycle config"),
                            "restore the volume data, reattach the lifecycle config, check the kernels, then delete the old instance".into(),
                        ]
                    } else {
                        Vec::new()
                    },
                    roles: Vec::new(),
                };
                self.sagemaker_other.push((stage, plan));
                Ok(())
            }
        }
    }

    fn add_object(&mut self, record: &Record, o: &S3Object) -> Result<(), RekeyError> {
        let Some(acc) = self.current.as_ref() else {
            return Err(RekeyError::Internal(format!(
                "object s3://{}/{} arrived before its bucket",
                o.bucket, o.key
            )));
        };
        if acc.bucket.bucket != o.bucket {
            return Err(RekeyError::Internal(format!(
                "object s3://{}/{} arrived inside bucket {}",
                o.bucket, o.key, acc.bucket.bucket
            )));
        }
        let headed = acc.bucket.report.is_some() && o.encryption.algorithm.starts_with("aws:kms");
        // A copy that reads the object first (see BucketPlan::recheck) makes one more HEAD.
        let reads_first = acc.bucket.changes_in_place || acc.bucket.report.is_some();
        let versioned = acc.bucket.versioning == "Enabled";
        let keeps_acls = acc.bucket.acls;
        let object_lock = acc.bucket.object_lock;
        let acc_default_key = acc.bucket.default_encryption.kms_key_arn.clone();
        let gcs = acc.provider == crate::model::Provider::Gcp;
        let bucket_location = acc.bucket.region.clone();
        let default_class = acc.default_class.clone();
        // The bucket's tags, borrowed out of it for the stage match (put back below).
        let tags = std::mem::take(&mut self.current.as_mut().expect("bucket").bucket.tags);
        if headed {
            self.current.as_mut().expect("bucket").report_heads += 1;
        }
        let Some(team_key) = record.team_key.clone() else {
            let acc = self.current.as_mut().expect("bucket");
            acc.bucket.tags = tags;
            let u = acc.unmatched.entry(NO_MAPPING).or_default();
            u.0 += 1;
            u.1 += o.size;
            return Ok(());
        };
        let stage = self.stage_of(record, &tags);
        self.current.as_mut().expect("bucket").bucket.tags = tags;
        let Some(stage) = stage else {
            let u = self
                .current
                .as_mut()
                .expect("bucket")
                .unmatched
                .entry(NO_STAGE)
                .or_default();
            u.0 += 1;
            u.1 += o.size;
            return Ok(());
        };
        let to_key_arn = match self.keys.get(&pin_id(&team_key, &o.account)) {
            Some(p) => p.arn.clone(),
            None => self.key_arn(
                &team_key,
                &o.account,
                &format!("s3://{}/{}", o.bucket, o.key),
            )?,
        };
        let class = record.class;
        let artifact_block = self.note_artifact(o, stage, &to_key_arn);
        let key_block = match self.key_block(&to_key_arn, gcs, &bucket_location) {
            Some(r) => Some(r),
            None => self.cached_surroundings_block(&to_key_arn),
        };
        // What one re-encrypted object sets off around the bucket.
        let effects = self.current.as_ref().map(|a| {
            let s = &a.bucket.surroundings;
            let replicated = s.replication.as_ref().is_some_and(|r| {
                r.rules
                    .iter()
                    .any(|x| x.enabled && o.key.starts_with(x.prefix.as_str()))
            });
            (
                s.notifications.on_create.len() as u64,
                s.notifications.eventbridge,
                replicated,
            )
        });
        let engine = self
            .campaign
            .spec
            .stages
            .get(stage)
            .and_then(|st| st.engine)
            .unwrap_or(self.engine);
        let threshold = self.threshold;
        let gcs_batch = self.campaign.gcs_batch().cloned();
        let max_per_job = if gcs {
            gcs_batch.as_ref().map(|b| b.max_objects_per_job)
        } else {
            self.campaign
                .s3()
                .and_then(|s| s.batch.as_ref())
                .map(|b| b.max_objects_per_job)
        }
        .unwrap_or(1_000_000);
        let mut job_key: Option<JobKey> = None;
        let sa = self
            .current
            .as_mut()
            .expect("bucket")
            .stages
            .entry(stage)
            .or_default();
        if class == EncryptionClass::TargetCmk {
            sa.skipped += 1;
            return Ok(());
        }
        let gcs_hold = match &record.resource {
            Resource::GcsObject(g) => g.hold.clone(),
            _ => None,
        };
        let reason = if gcs {
            if class == EncryptionClass::SseC {
                Some(
                    "customer-supplied key: rekey never holds it, so it cannot rewrite the object"
                        .to_string(),
                )
            } else {
                gcs_hold.map(|h| {
                    format!("{h}: the object cannot be replaced in place until it is released")
                })
            }
        } else {
            artifact_block.or_else(|| blocked_reason(o, class, engine))
        };
        let reason = reason.or(key_block);
        let (step, reason) = match reason {
            Some(r) => ("blocked", Some(r)),
            None if gcs => ("gcs-rewrite", None),
            None => (step_for(o, class, engine, threshold), None),
        };
        // Object Lock: every copy is a new version under the bucket's default retention (the
        // old version stays, retained): more storage, for as long as the retention runs.
        let lock_flag = (object_lock && matches!(step, "copy" | "multipart-copy")).then(|| {
            "object lock: each copy makes a new version under the bucket's default retention, and the old version stays retained".to_string()
        });
        // UpdateObjectEncryption cannot target SSE-S3: what it moves off SSE-S3 in a versioned
        // bucket (or an archived object) cannot come back by itself.
        let archived = matches!(o.storage_class.as_str(), "GLACIER" | "DEEP_ARCHIVE")
            || o.archive_status.is_some();
        let one_way = (!gcs
            && step == "update-encryption"
            && class == EncryptionClass::SseS3
            && (versioned || archived))
            .then(|| {
                if archived {
                    "one-way: an archived object UpdateObjectEncryption moves off SSE-S3 cannot go back without a restore".to_string()
                } else {
                    "one-way: UpdateObjectEncryption cannot return a version to SSE-S3; a rollback copies the current object back as a new version and leaves the re-keyed versions on the team key".to_string()
                }
            });
        // Cloud Storage cannot be asked for Google-managed encryption: a rewrite without a key
        // takes the bucket's default. An object on Google-managed keys in a bucket that
        // already had a default key cannot come back to them.
        let gcs_one_way = (gcs
            && class == EncryptionClass::GoogleManaged
            && acc_default_key.is_some())
        .then(|| {
            "one-way: a Google-managed object in a bucket with a default key cannot return to Google-managed encryption".to_string()
        });
        // A batch engine: the job this object goes to, or why rekey runs it itself.
        let (job_of, batch_flag) = if reason.is_none() && !gcs && engine.is_batch() {
            let bucket = BatchBucket {
                versioned,
                acls: keeps_acls,
                changes_in_place: reads_first,
            };
            match batch_fit(engine, step, o, &to_key_arn, bucket) {
                Ok(op) => (
                    Some((
                        op,
                        o.storage_class.clone(),
                        to_key_arn.clone(),
                        op == "update-encryption" && o.version_id.is_some(),
                    )),
                    None,
                ),
                Err(why) => (None, Some(why)),
            }
        } else if reason.is_none() && gcs && gcs_batch.is_some() {
            // A storage batch operations rewrite names no storage class: taken as the
            // bucket's default (what a rewrite without one gives), so only objects already in
            // that class go to a job.
            match &default_class {
                Some(c) if *c == o.storage_class => (
                    Some(("gcs-rewrite", c.clone(), to_key_arn.clone(), false)),
                    None,
                ),
                _ => (
                    None,
                    Some(format!(
                        "rewritten by rekey, not by a batch job: its storage class {} is not the bucket's default ({}), and a batch rewrite names none",
                        o.storage_class,
                        default_class.as_deref().unwrap_or("unknown")
                    )),
                ),
            }
        } else {
            (None, None)
        };
        let lock_flag = lock_flag.or(one_way).or(gcs_one_way).or(batch_flag);
        if let Some(flag) = gcs
            .then(|| gcs_cold_flag(&o.storage_class))
            .flatten()
            .or(lock_flag)
        {
            if reason.is_none() {
                let f = sa.flagged.entry(flag).or_default();
                f.0 += 1;
                f.1 += o.size;
            }
        }
        if let Some(r) = &reason {
            let b = sa.blocked.entry(r.clone()).or_default();
            b.0 += 1;
            b.1 += o.size;
        } else {
            if let Some((destinations, eventbridge, replicated)) = effects {
                let e = &mut sa.side_effects;
                e.notification_events += destinations;
                e.eventbridge_events += u64::from(eventbridge);
                if replicated {
                    e.replicated_copies += 1;
                    e.replicated_bytes += o.size;
                }
            }
            let g = sa.groups.entry((team_key.clone(), engine)).or_default();
            if let Some(base) = &job_of {
                let chunk = sa.job_chunks.entry(base.clone()).or_insert(0);
                let mut k: JobKey = (base.0, base.1.clone(), base.2.clone(), base.3, *chunk);
                if sa.jobs.get(&k).is_some_and(|j| j.1 >= max_per_job) {
                    *chunk += 1;
                    k.4 = *chunk;
                }
                job_key = Some(k.clone());
                let next = &mut self.jobs;
                let j = sa.jobs.entry(k).or_insert_with(|| {
                    *next += 1;
                    g.requests
                        .entry(
                            if gcs {
                                "gcs:BatchOperationsJob"
                            } else {
                                "s3:BatchOperationsJob"
                            }
                            .into(),
                        )
                        .and_modify(|n| *n += 1)
                        .or_insert(1);
                    (*next, 0, 0, None)
                });
                j.1 += 1;
                j.2 += o.size;
                let modified = chrono::DateTime::parse_from_rfc3339(&o.last_modified)
                    .ok()
                    .map(|t| t.with_timezone(&chrono::Utc));
                j.3 = j.3.max(modified);
                *g.requests
                    .entry(
                        if gcs {
                            "gcs:BatchOperationsObject"
                        } else {
                            "s3:BatchOperationsObject"
                        }
                        .into(),
                    )
                    .or_default() += 1;
            }
            g.objects += 1;
            g.bytes += o.size;
            if step == "multipart-copy" {
                g.multipart += 1;
            }
            *g.from.entry(class).or_default() += 1;
            let requests = if gcs {
                gcs_requests(o, class)
            } else {
                let mut r = object_requests(step, o, class, threshold);
                if reads_first && step == "copy" {
                    r.push(("s3:HeadObject", 1));
                }
                r
            };
            for (kind, n) in requests {
                match g.requests.get_mut(kind) {
                    Some(c) => *c += n,
                    None => {
                        g.requests.insert(kind.to_string(), n);
                    }
                }
            }
            if step != "update-encryption" {
                g.retrieval_usd += o.size as f64
                    * pricing::retrieval_per_byte(&self.assumptions, &o.storage_class);
                if versioned {
                    g.noncurrent_bytes += o.size;
                }
            }
        }
        let entry = ManifestEntry {
            stage: self.campaign.stages[stage].0.clone(),
            bucket: o.bucket.clone(),
            key: o.key.clone(),
            version_id: o.version_id.clone(),
            etag: o.etag.clone(),
            size: o.size,
            storage_class: o.storage_class.clone(),
            from: class,
            from_key_arn: o.encryption.kms_key_arn.clone(),
            from_bucket_key: o.encryption.bucket_key,
            latest: o.is_latest,
            website_redirect: o.website_redirect.clone(),
            content_hash: o.content_hash.clone(),
            team_key,
            to_key_arn,
            step: step.to_string(),
            job: job_key.and_then(|k| sa.jobs.get(&k)).map(|j| j.0),
            reason,
        };
        let (_, w, n) = &mut self.stage_files[stage];
        serde_json::to_writer(&mut *w, &entry)
            .map_err(|e| RekeyError::io("writing the manifest", e.into()))?;
        w.write_all(b"\n")
            .map_err(|e| RekeyError::io("writing the manifest", e))?;
        *n += 1;
        let n = *n;
        let lines = &mut sa.lines;
        *lines = Some(match lines {
            Some([first, _]) => [*first, n],
            None => [n, n],
        });
        Ok(())
    }

    /// The key ARN a resource of `account` mapped to `team` goes to; none is a mapping that
    /// would cross accounts (the team key does not resolve in that account): refused.
    fn key_arn(&self, team: &str, account: &str, what: &str) -> Result<String, RekeyError> {
        if let Some(p) = self.keys.get(&pin_id(team, account)) {
            return Ok(p.arn.clone());
        }
        let alias = self
            .campaign
            .spec
            .keys
            .get(team)
            .and_then(|k| k.aws.clone())
            .unwrap_or_else(|| "(no aws key)".into());
        Err(RekeyError::usage(
            if account == crate::inventory::DEFAULT_ACCOUNT {
                format!("{what} maps to team key {team:?}, which has no AWS key")
            } else {
                format!(
                    "{what} in account {account} maps to team key {team:?}, whose {alias} does not resolve in {account}: a resource is never planned under another account's key"
                )
            },
            format!("map {account}'s resources to a key that account defines, or create {alias} in {account}"),
        ))
    }

    /// Record that `o` (planned in `stage`) is a model artifact of the endpoints it belongs to;
    /// an endpoint whose role cannot use the team key blocks its artifacts.
    /// An object an endpoint's model reads (its artifact URL, or under its prefix: any key
    /// that starts with it, the S3Prefix rule, a superset of the folder): the endpoint goes no
    /// earlier than it; it is blocked with a blocked endpoint, and unless each execution role
    /// reading it was found allowed to decrypt with the very key it moves to (an object under
    /// a prefix may map to another key, or be another account's, than the URL itself).
    fn note_artifact(&mut self, o: &S3Object, stage: usize, to_key_arn: &str) -> Option<String> {
        let mut block = None;
        let Planner {
            artifact_index,
            endpoints,
            ..
        } = self;
        let bucket = &o.bucket;
        let found = artifact_index
            .get(bucket)
            .map(|i| i.matching(&o.key))
            .unwrap_or_default();
        for (prefix, idx, role) in found {
            let ep = &mut endpoints[idx];
            ep.artifact_stage = Some(ep.artifact_stage.map_or(stage, |s| s.max(stage)));
            if let Some(r) = &ep.blocked {
                block = Some(format!("model artifact of endpoint {}: {r}", ep.rec.name));
                continue;
            }
            let checked = ep.rec.access.iter().any(|v| {
                v.principal == *role
                    && v.key_arn == to_key_arn
                    && v.allowed()
                    && v.actions
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case("kms:Decrypt"))
            });
            if !checked {
                block = Some(format!(
                    "model artifact of endpoint {}: its execution role {role} was not found allowed to decrypt with {to_key_arn}, the key this object moves to (the preflight checked the key of s3://{bucket}/{prefix}); map the whole artifact location to one key, or plan again once the role may use this key",
                    ep.rec.name
                ));
            }
        }
        block
    }

    fn finish_endpoints(&mut self) -> Result<(), RekeyError> {
        for ep in std::mem::take(&mut self.endpoints) {
            let e = &ep.rec;
            let name = format!("sagemaker:endpoint/{}", e.name);
            // An endpoint that is not planned itself (unmatched, or already on its key) still
            // has artifacts that move: its allowed verdicts go to the plan's list, for apply to
            // evaluate again.
            let dropped = ep.team_key.is_none()
                || (ep.class == EncryptionClass::TargetCmk && ep.blocked.is_none());
            if dropped {
                self.access
                    .extend(e.access.iter().filter(|v| v.allowed()).cloned());
            }
            let Some(key) = ep.team_key.clone() else {
                self.unmatched.push(Unmatched {
                    bucket: name,
                    reason: NO_MAPPING.into(),
                    bucket_itself: true,
                    objects: 0,
                    bytes: 0,
                });
                continue;
            };
            // The endpoint goes no earlier than its artifacts, so that it is re-keyed once the
            // data it serves is on the team key.
            let stage = match (ep.own_stage, ep.artifact_stage) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let Some(stage) = stage else {
                if !dropped {
                    self.access
                        .extend(e.access.iter().filter(|v| v.allowed()).cloned());
                }
                self.unmatched.push(Unmatched {
                    bucket: name,
                    reason: NO_STAGE.into(),
                    bucket_itself: true,
                    objects: 0,
                    bytes: 0,
                });
                continue;
            };
            if ep.class == EncryptionClass::TargetCmk && ep.blocked.is_none() {
                continue;
            }
            let arn = self.key_arn(&key, &e.account, &name)?;
            let key_block = self.key_blocks.get(&arn).cloned();
            let blocked_reason = ep.blocked.clone().or(key_block);
            let blocked = blocked_reason.is_some();
            let volume_key = crate::providers::sagemaker::volume_key(&e.variants);
            // Nothing for the key to cover: every variant's storage is local NVMe or none, and
            // there is no capture or async output to re-key.
            let not_applicable = e.nothing_to_cover();
            let action = if blocked {
                "blocked"
            } else if not_applicable {
                "not-applicable"
            } else {
                "rekey-endpoint"
            };
            let deployment_config = self
                .campaign
                .spec
                .aws
                .as_ref()
                .and_then(|a| a.sagemaker.as_ref())
                .and_then(|s| s.deployment_config.clone());
            self.sagemaker_other.push((
                stage,
                SmPlan {
                    kind: crate::model::ResourceKind::SagemakerEndpoint,
                    name: e.name.clone(),
                    account: e.account.clone(),
                    region: e.region.clone(),
                    key,
                    kms_key_arn: arn.clone(),
                    action: action.into(),
                    from_config: Some(e.config.clone()),
                    new_config: (action == "rekey-endpoint")
                        .then(|| rekeyed_config_name(&e.config, &arn)),
                    reason: blocked_reason.or_else(|| {
                        not_applicable.then(|| {
                            volume_key.reason.clone().unwrap_or_default()
                                + "; no data capture or async output to re-key"
                        })
                    }),
                    access: e.access.clone(),
                    source_sha256: Some(e.source_sha256.clone()).filter(|s| !s.is_empty()),
                    deployment_config: (action == "rekey-endpoint")
                        .then_some(deployment_config)
                        .flatten(),
                    volume_key,
                    artifacts: e
                        .models
                        .iter()
                        .flat_map(|m| m.artifacts.iter().map(|a| a.url.clone()))
                        .collect(),
                    manual_steps: Vec::new(),
                    roles: {
                        let mut r: Vec<String> = e
                            .models
                            .iter()
                            .map(|m| m.execution_role_arn.clone())
                            .collect();
                        r.sort();
                        r.dedup();
                        r
                    },
                },
            ));
        }
        Ok(())
    }

    fn finish_bucket(&mut self) -> Result<(), RekeyError> {
        let Some(acc) = self.current.take() else {
            return Ok(());
        };
        let b = &acc.bucket;
        // The bucket action goes to the earliest stage that touches the bucket, so that new
        // writes land on the CMK before any object is re-encrypted.
        let first_object_stage = acc.stages.keys().next().copied();
        let bucket_stage = match (acc.own_stage, first_object_stage) {
            (Some(a), Some(o)) => Some(a.min(o)),
            (a, o) => a.or(o),
        };
        let mut unmatched = acc.unmatched.clone();
        let bucket_itself_unmatched = acc.team_key.is_none() || acc.own_stage.is_none();
        if bucket_itself_unmatched {
            let reason = if acc.team_key.is_none() {
                NO_MAPPING
            } else {
                NO_STAGE
            };
            unmatched.entry(reason).or_default();
        }
        for (reason, (objects, bytes)) in &unmatched {
            let itself = bucket_itself_unmatched
                && ((acc.team_key.is_none() && *reason == NO_MAPPING)
                    || (acc.team_key.is_some() && *reason == NO_STAGE));
            self.unmatched.push(Unmatched {
                bucket: b.bucket.clone(),
                reason: reason.to_string(),
                bucket_itself: itself,
                objects: *objects,
                bytes: *bytes,
            });
        }
        let mut stages = acc.stages;
        if let Some(s) = bucket_stage {
            stages.entry(s).or_default();
        }
        for (stage, sa) in stages {
            let mut actions = Vec::new();
            let mut blocked = Vec::new();
            if Some(stage) == bucket_stage && acc.own_stage.is_some() {
                if let Some(team_key) = &acc.team_key {
                    let arn = self.key_arn(team_key, &b.account, &format!("s3://{}", b.bucket))?;
                    {
                        let gcs = acc.provider == crate::model::Provider::Gcp;
                        let on_target = acc.class == EncryptionClass::TargetCmk
                            && (gcs || b.default_encryption.bucket_key);
                        if acc.class == EncryptionClass::DsseKms {
                            blocked.push(Blocked {
                                reason: "bucket default is dsse-kms: reported, never changed"
                                    .into(),
                                objects: 0,
                                bytes: 0,
                            });
                        } else if let (false, Some(r)) = (
                            on_target,
                            self.key_block(&arn, gcs, &b.region)
                                .or_else(|| self.surroundings_block_of(&acc.bucket, &arn)),
                        ) {
                            blocked.push(Blocked {
                                reason: format!("bucket default: {r}"),
                                objects: 0,
                                bytes: 0,
                            });
                        } else if !on_target {
                            actions.push(Action::SetBucketDefault {
                                key: team_key.clone(),
                                from: b.default_encryption.clone(),
                                to: S3Encryption {
                                    algorithm: if gcs { "cmek" } else { "aws:kms" }.into(),
                                    kms_key_arn: Some(arn.clone()),
                                    bucket_key: !gcs,
                                    ..Default::default()
                                },
                            });
                            let mut g = GroupAcc::default();
                            let (get, put) = if gcs {
                                ("gcs:GetBucket", "gcs:PatchBucket")
                            } else {
                                ("s3:GetBucketEncryption", "s3:PutBucketEncryption")
                            };
                            g.requests.insert(get.into(), 1);
                            g.requests.insert(put.into(), 1);
                            self.stage_groups[stage].push((team_key.clone(), g, 1));
                        }
                    }
                }
            }
            for ((key, engine), g) in sa.groups {
                let arn = self.key_arn(&key, &b.account, &format!("s3://{}", b.bucket))?;
                actions.push(Action::ReencryptObjects {
                    key: key.clone(),
                    kms_key_arn: arn,
                    engine,
                    objects: g.objects,
                    bytes: g.bytes,
                    multipart_objects: g.multipart,
                    from: g.from.clone(),
                });
                self.stage_groups[stage].push((key, g, 0));
            }
            blocked.extend(
                sa.blocked
                    .into_iter()
                    .map(|(reason, (objects, bytes))| Blocked {
                        reason,
                        objects,
                        bytes,
                    }),
            );
            let flagged = sa
                .flagged
                .into_iter()
                .map(|(reason, (objects, bytes))| Blocked {
                    reason,
                    objects,
                    bytes,
                })
                .collect();
            let side_effects = {
                let mut e = sa.side_effects.clone();
                e.estimated_cost_usd =
                    e.eventbridge_events as f64 * 1.0e-6 + e.replicated_copies as f64 * 0.005e-3;
                e
            };
            let hazards: Vec<String> = acc
                .team_key
                .as_ref()
                .and_then(|k| self.keys.get(&crate::inventory::pin_id(k, &b.account)))
                .map(|k| {
                    crate::preflight::bucket_hazards(&b.bucket, &b.surroundings, &k.arn)
                        .into_iter()
                        .map(|h| {
                            let accepted =
                                self.campaign.spec.preflight.accepts(&b.bucket, h.hazard);
                            format!(
                                "{}{}: {}; fix: {}",
                                h.hazard.as_str(),
                                if accepted {
                                    " (accepted by the campaign)"
                                } else {
                                    ""
                                },
                                h.detail,
                                h.fix
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            // The consumer graph's allowed verdicts for the keys this bucket moves onto: apply
            // evaluates them again.
            for action in &actions {
                let key = match action {
                    Action::ReencryptObjects { kms_key_arn, .. } => Some(kms_key_arn.clone()),
                    Action::SetBucketDefault { to, .. } => to.kms_key_arn.clone(),
                };
                for v in acc.bucket.access.iter().filter(|v| {
                    v.allowed()
                        && crate::preflight::rechecked(v)
                        && Some(&v.key_arn) == key.as_ref()
                }) {
                    if !self.access.contains(v) {
                        self.access.push(v.clone());
                    }
                }
            }
            let mut jobs: Vec<JobPlan> = sa
                .jobs
                .into_iter()
                .map(
                    |(
                        (op, storage_class, kms_key_arn, versioned, _),
                        (job, objects, bytes, newest),
                    )| {
                        JobPlan {
                            job,
                            unmodified_since: (op == "copy").then(|| {
                                newest
                                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                                    .unwrap_or_default()
                            }),
                            operation: op.to_string(),
                            storage_class,
                            kms_key_arn,
                            versioned,
                            objects,
                            bytes,
                            // A batch rewrite takes no generation condition either.
                            unguarded: op == "copy" || op == "gcs-rewrite",
                        }
                    },
                )
                .collect();
            jobs.sort_by_key(|j| j.job);
            self.stages[stage].push(BucketPlan {
                jobs,
                flagged,
                provider: acc.provider,
                account: b.account.clone(),
                region: b.region.clone(),
                bucket: b.bucket.clone(),
                key: acc.team_key.clone(),
                actions,
                blocked,
                skipped_on_target: sa.skipped,
                manifest_lines: sa.lines,
                side_effects,
                hazards,
                surroundings_sha256: (acc.provider == crate::model::Provider::Aws)
                    .then(|| b.surroundings.fingerprint()),
                acls: b.acls,
                // A report does not tell an object's website redirect: each copy reads the
                // object first, as where something changes objects in place.
                recheck: b.changes_in_place || b.report.is_some(),
                report: b.report.as_ref().map(|r| PlannedReport {
                    manifest: r.manifest.clone(),
                    created: r.created.clone(),
                    heads: acc.report_heads,
                }),
            });
        }
        Ok(())
    }

    /// Finish: write the manifest beside `plan_path` and return the plan.
    pub fn finish(
        mut self,
        plan_path: &Path,
        created_at: String,
        campaign_sha256: String,
    ) -> Result<PlanFile, RekeyError> {
        self.finish_bucket()?;
        self.finish_endpoints()?;
        let manifest_name = manifest_file_name(plan_path);
        let manifest_path = plan_path.with_file_name(&manifest_name);
        let out = File::create(&manifest_path)
            .map_err(|e| RekeyError::io(format!("creating {}", manifest_path.display()), e))?;
        let mut out = BufWriter::new(out);
        let mut hash = Sha256::new();
        let mut offsets = Vec::new();
        let mut total = 0u64;
        for (path, w, n) in std::mem::take(&mut self.stage_files) {
            drop(
                w.into_inner()
                    .map_err(|e| RekeyError::io("flushing the manifest", e.into_error()))?,
            );
            offsets.push(total);
            total += n;
            // Whole lines, each ending in a newline (JSON escapes any in a value): copied and
            // hashed in blocks.
            let mut r =
                File::open(&path).map_err(|e| RekeyError::io("reading a scratch file", e))?;
            let mut block = vec![0u8; 1 << 16];
            loop {
                let n = r
                    .read(&mut block)
                    .map_err(|e| RekeyError::io("reading a scratch file", e))?;
                if n == 0 {
                    break;
                }
                hash.update(&block[..n]);
                out.write_all(&block[..n])
                    .map_err(|e| RekeyError::io("writing the manifest", e))?;
            }
        }
        out.flush()
            .map_err(|e| RekeyError::io("writing the manifest", e))?;

        let s = self.campaign.spec.limits.clone();
        let a = self.assumptions.clone();
        let mut stages = Vec::new();
        let mut grand = Totals::default();
        for (i, (name, _)) in self.campaign.stages.iter().enumerate() {
            let mut buckets = std::mem::take(&mut self.stages[i]);
            for b in &mut buckets {
                if let Some([first, last]) = b.manifest_lines {
                    b.manifest_lines = Some([first + offsets[i], last + offsets[i]]);
                }
            }
            let mut t = Totals::default();
            for b in &buckets {
                t.blocked_objects += b.blocked.iter().map(|x| x.objects).sum::<u64>();
                t.skipped_objects += b.skipped_on_target;
            }
            for (key, g, bucket_actions) in &self.stage_groups[i] {
                let kt = t.by_key.entry(key.clone()).or_default();
                kt.buckets += bucket_actions;
                kt.objects += g.objects;
                kt.bytes += g.bytes;
                for (r, n) in &g.requests {
                    *kt.requests.entry(r.clone()).or_default() += n;
                }
                kt.estimated_cost_usd += g.retrieval_usd;
                t.noncurrent_bytes_added += g.noncurrent_bytes;
            }
            for kt in t.by_key.values_mut() {
                kt.estimated_cost_usd += kt
                    .requests
                    .iter()
                    .map(|(r, n)| pricing::price_of(&a, r) * *n as f64)
                    .sum::<f64>();
                let reqs = kt
                    .requests
                    .iter()
                    .filter(|(r, _)| r.starts_with("s3:"))
                    .map(|(_, n)| n)
                    .sum();
                kt.estimated_seconds =
                    pricing::duration_s(&a, reqs, kt.bytes, s.concurrency, s.requests_per_second);
                t.buckets += kt.buckets;
                t.objects += kt.objects;
                t.bytes += kt.bytes;
                for (r, n) in &kt.requests {
                    *t.requests.entry(r.clone()).or_default() += n;
                }
                t.estimated_cost_usd += kt.estimated_cost_usd;
            }
            let reqs = t
                .requests
                .iter()
                .filter(|(r, _)| r.starts_with("s3:"))
                .map(|(_, n)| n)
                .sum();
            t.estimated_seconds =
                pricing::duration_s(&a, reqs, t.bytes, s.concurrency, s.requests_per_second);
            let sagemaker: Vec<SmPlan> = self
                .sagemaker_other
                .iter()
                .filter(|(st, _)| *st == i)
                .map(|(_, p)| p.clone())
                .collect();
            let rekeyed = sagemaker
                .iter()
                .filter(|p| p.action == "rekey-endpoint")
                .count() as u64;
            if rekeyed > 0 {
                t.endpoints = rekeyed;
                for (r, n) in [
                    ("sagemaker:CreateEndpointConfig", 1),
                    ("sagemaker:UpdateEndpoint", 1),
                    ("sagemaker:DescribeEndpoint", 60),
                ] {
                    *t.requests.entry(r.to_string()).or_default() += n * rekeyed;
                }
                // Endpoints update in parallel; one update takes minutes.
                t.estimated_seconds += a.endpoint_update_s;
            }
            t.blocked_objects += sagemaker.iter().filter(|p| p.action == "blocked").count() as u64;
            add_totals(&mut grand, &t);
            stages.push(Stage {
                name: name.clone(),
                checkpoint: name.clone(),
                buckets,
                sagemaker,
                summary: round_totals(t),
            });
        }
        grand.estimated_seconds = stages.iter().map(|s| s.summary.estimated_seconds).sum();
        let s3 = self.campaign.s3();
        Ok(PlanFile {
            format_version: FORMAT_VERSION,
            campaign: self.campaign.spec.campaign.clone(),
            created_at,
            rekey_version: env!("CARGO_PKG_VERSION").to_string(),
            campaign_sha256,
            inventory_fingerprint: format!("sha256:{}", hex::encode(self.fingerprint.finalize())),
            keys: self.keys,
            access: self.access,
            settings: Settings {
                region: self.campaign.region().to_string(),
                engine: self.engine,
                versions: s3.map(|s| s.versions).unwrap_or_default(),
                multipart_threshold: self.threshold,
                concurrency: s.concurrency,
                requests_per_second: s.requests_per_second,
                endpoint_url: self
                    .campaign
                    .spec
                    .aws
                    .as_ref()
                    .and_then(|a| a.endpoint_url.clone()),
                window: self.campaign.spec.window.clone(),
                accept_unverified: self.campaign.spec.preflight.accept_unverified.clone(),
                batch: s3
                    .filter(|_| self.campaign.uses_s3_batch())
                    .and_then(|s| s.batch.clone()),
                gcs_batch: self.campaign.gcs_batch().cloned(),
                accounts: self
                    .campaign
                    .spec
                    .aws
                    .as_ref()
                    .map(|a| a.accounts.clone())
                    .unwrap_or_default(),
                gcp_project: self.campaign.spec.gcp.as_ref().map(|g| g.project.clone()),
                gcp_endpoint: self
                    .campaign
                    .spec
                    .gcp
                    .as_ref()
                    .and_then(|g| g.endpoint.clone()),
                gcs_max_bytes_per_call: self
                    .campaign
                    .spec
                    .gcp
                    .as_ref()
                    .and_then(|g| g.gcs.as_ref())
                    .and_then(|s| s.max_bytes_rewritten_per_call),
            },
            manifest: ManifestRef {
                file: manifest_name,
                sha256: format!("sha256:{}", hex::encode(hash.finalize())),
                entries: total,
            },
            stages,
            unmatched: self.unmatched,
            summary: round_totals(grand),
            assumptions: a,
        })
    }
}

fn add_totals(into: &mut Totals, t: &Totals) {
    into.buckets += t.buckets;
    into.objects += t.objects;
    into.bytes += t.bytes;
    into.blocked_objects += t.blocked_objects;
    into.skipped_objects += t.skipped_objects;
    into.noncurrent_bytes_added += t.noncurrent_bytes_added;
    into.endpoints += t.endpoints;
    for (r, n) in &t.requests {
        *into.requests.entry(r.clone()).or_default() += n;
    }
    into.estimated_cost_usd += t.estimated_cost_usd;
    for (k, kt) in &t.by_key {
        let e = into.by_key.entry(k.clone()).or_default();
        e.buckets += kt.buckets;
        e.objects += kt.objects;
        e.bytes += kt.bytes;
        for (r, n) in &kt.requests {
            *e.requests.entry(r.clone()).or_default() += n;
        }
        e.estimated_cost_usd += kt.estimated_cost_usd;
        e.estimated_seconds += kt.estimated_seconds;
    }
}

/// Round estimates so that plan files stay stable and readable.
fn round_totals(mut t: Totals) -> Totals {
    let r = |x: f64, p: f64| (x * p).round() / p;
    t.estimated_cost_usd = r(t.estimated_cost_usd, 1e6);
    t.estimated_seconds = r(t.estimated_seconds, 1000.0);
    for kt in t.by_key.values_mut() {
        kt.estimated_cost_usd = r(kt.estimated_cost_usd, 1e6);
        kt.estimated_seconds = r(kt.estimated_seconds, 1000.0);
    }
    t
}

/// `plans/NAME.plan.yaml` → `NAME.manifest.jsonl`.
pub fn manifest_file_name(plan_path: &Path) -> String {
    let name = plan_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("plan");
    let stem = name
        .strip_suffix(".plan.yaml")
        .or_else(|| name.strip_suffix(".yaml"))
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name);
    format!("{stem}.manifest.jsonl")
}

/// sha256 of a file's bytes, as `sha256:HEX`.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Write a plan as YAML.
pub fn write(path: &Path, plan: &PlanFile) -> Result<(), RekeyError> {
    let text = serde_yaml::to_string(plan).map_err(|e| RekeyError::Internal(e.to_string()))?;
    let header = "# rekey plan: review it, then `rekey apply` it. Generated; do not edit by hand\n# (the manifest hash and inventory fingerprint pin what was reviewed).\n";
    std::fs::write(path, format!("{header}{text}"))
        .map_err(|e| RekeyError::io(format!("writing {}", path.display()), e))
}

/// Read a plan file, refusing unknown format versions, and check its manifest hash.
pub fn load(path: &Path) -> Result<PlanFile, RekeyError> {
    let ferr = |line: Option<usize>, message: String, fix: &str| {
        RekeyError::File(FileError {
            path: path.to_path_buf(),
            line,
            message,
            fix: fix.into(),
        })
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ferr(
            None,
            format!("cannot read the plan: {e}"),
            "pass the plan file that `rekey plan -o` wrote",
        )
    })?;
    let value: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
        ferr(
            e.location().map(|l| l.line()),
            format!("not a plan file: {e}"),
            "pass the plan file that `rekey plan -o` wrote",
        )
    })?;
    match value.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v == FORMAT_VERSION as u64 => {}
        Some(v) => {
            return Err(ferr(
                crate::campaign::locate_key(&text, &["format_version"]),
                format!(
                "plan format_version {v} is not known to this rekey (it reads {FORMAT_VERSION})"
            ),
                "use the rekey release that wrote the plan, or plan again with this one",
            ))
        }
        None => {
            return Err(ferr(
                None,
                "the file has no format_version: it is not a rekey plan".into(),
                "pass the plan file that `rekey plan -o` wrote",
            ))
        }
    }
    let plan: PlanFile = serde_yaml::from_str(&text).map_err(|e| {
        ferr(
            e.location().map(|l| l.line()),
            format!("the plan does not parse: {e}"),
            "plan again; plan files are not edited by hand",
        )
    })?;
    let manifest = path.with_file_name(&plan.manifest.file);
    let actual = file_sha256(&manifest).map_err(|e| {
        ferr(
            None,
            format!(
                "cannot read the plan's manifest {}: {e}",
                manifest.display()
            ),
            "keep the manifest beside the plan, or plan again",
        )
    })?;
    if actual != plan.manifest.sha256 {
        return Err(ferr(
            None,
            format!(
                "the manifest {} does not match the plan (expected {}, found {actual})",
                manifest.display(),
                plan.manifest.sha256
            ),
            "the manifest was changed after planning: restore it, or plan again",
        ));
    }
    Ok(plan)
}

/// The model artifacts of one bucket, by key or prefix.
#[derive(Debug, Default)]
struct ArtifactIndex {
    by_prefix: HashMap<String, Vec<(usize, String)>>,
    /// The lengths of the prefixes, each once.
    lengths: Vec<usize>,
}

impl ArtifactIndex {
    fn add(&mut self, prefix: &str, endpoint: usize, role: &str) {
        self.by_prefix
            .entry(prefix.to_string())
            .or_default()
            .push((endpoint, role.to_string()));
        if !self.lengths.contains(&prefix.len()) {
            self.lengths.push(prefix.len());
            self.lengths.sort_unstable();
        }
    }

    /// Every (prefix, endpoint, role) whose prefix the key starts with.
    fn matching(&self, key: &str) -> Vec<(String, usize, String)> {
        let mut out = Vec::new();
        for &l in self.lengths.iter().take_while(|&&l| l <= key.len()) {
            if !key.is_char_boundary(l) {
                continue;
            }
            if let Some(hits) = self.by_prefix.get(&key[..l]) {
                out.extend(
                    hits.iter()
                        .map(|(i, r)| (key[..l].to_string(), *i, r.clone())),
                );
            }
        }
        out
    }
}

/// Plan a campaign in the caller's own account with any clients: the in-process cloud of
/// tests and benchmarks (`rekey plan` itself reaches every account of the campaign, and keeps
/// the plan it replaces).
pub async fn plan_account<S>(
    c: &LoadedCampaign,
    clients: &S,
    out: &Path,
    created: String,
    reporter: &dyn crate::events::Reporter,
) -> Result<PlanFile, RekeyError>
where
    S: crate::providers::S3Read
        + crate::providers::KeyRead
        + crate::providers::sagemaker::SageMakerApi
        + crate::providers::iam::AccessRead,
{
    use crate::inventory::DEFAULT_ACCOUNT;
    let pinned =
        crate::inventory::resolve_keys_in(c, clients, DEFAULT_ACCOUNT, None, reporter).await?;
    let access = crate::preflight::consumer_verdicts(c, DEFAULT_ACCOUNT, clients, &pinned).await?;
    let mut planner = Planner::new(c, pinned.clone())?;
    planner.set_access(access);
    crate::inventory::run_sagemaker(c, DEFAULT_ACCOUNT, clients, &pinned, |r| planner.add(&r))
        .await?;
    crate::inventory::run(
        c,
        DEFAULT_ACCOUNT,
        clients,
        clients,
        &pinned,
        reporter,
        |r| planner.add(&r),
    )
    .await?;
    let sha = file_sha256(&c.path)
        .map_err(|e| RekeyError::io(format!("reading {}", c.path.display()), e))?;
    let p = planner.finish(out, created, sha)?;
    write(out, &p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::{batch_fit, step_for, ArtifactIndex, BatchBucket, BATCH_COPY_LIMIT};
    use crate::campaign::S3Engine;
    use crate::model::{EncryptionClass, S3Encryption, S3Object};

    fn object(size: u64, latest: bool, algorithm: &str, key: Option<&str>) -> S3Object {
        S3Object {
            account: "default".into(),
            region: "us-east-1".into(),
            bucket: "b".into(),
            key: "k".into(),
            version_id: Some("v1".into()),
            is_latest: latest,
            size,
            etag: "\"e\"".into(),
            storage_class: "STANDARD".into(),
            archive_status: None,
            last_modified: "2025-01-02T03:04:05.000Z".into(),
            encryption: S3Encryption {
                algorithm: algorithm.into(),
                kms_key_arn: key.map(str::to_string),
                ..Default::default()
            },
            lock: Default::default(),
            website_redirect: None,
            content_hash: None,
        }
    }

    const TEAM: &str = "arn:aws:kms:us-east-1:111111111111:key/team";

    #[test]
    fn a_batch_job_takes_what_it_can_and_says_why_not_for_the_rest() {
        let v = BatchBucket {
            versioned: true,
            ..Default::default()
        };
        let batch_fit = |e, s, o: &S3Object, k| batch_fit(e, s, o, k, v);
        let ue = S3Engine::BatchUpdateEncryption;
        let cp = S3Engine::BatchCopy;
        let step = |o: &S3Object, class, engine| step_for(o, class, engine, 1 << 30);
        // SSE-S3 and a same-account key: UpdateObjectEncryption, current or not.
        let o = object(10, true, "AES256", None);
        assert_eq!(
            batch_fit(ue, step(&o, EncryptionClass::SseS3, ue), &o, TEAM),
            Ok("update-encryption")
        );
        let o = object(10, false, "AES256", None);
        assert_eq!(
            batch_fit(ue, step(&o, EncryptionClass::SseS3, ue), &o, TEAM),
            Ok("update-encryption")
        );
        let o = object(
            10,
            true,
            "aws:kms",
            Some("arn:aws:kms:us-east-1:111111111111:key/old"),
        );
        assert_eq!(
            batch_fit(ue, step(&o, EncryptionClass::ForeignCmk, ue), &o, TEAM),
            Ok("update-encryption")
        );
        // A key in another account (the rollback key): the job could not undo it.
        let o = object(
            10,
            true,
            "aws:kms",
            Some("arn:aws:kms:us-east-1:222222222222:key/old"),
        );
        let why = batch_fit(ue, step(&o, EncryptionClass::ForeignCmk, ue), &o, TEAM).unwrap_err();
        assert!(why.contains("account 222222222222"), "{why}");
        // Unencrypted: UpdateObjectEncryption refuses it; rekey copies it locally.
        let o = object(10, true, "", None);
        let s = step(&o, EncryptionClass::Unencrypted, ue);
        assert_eq!(s, "copy");
        assert!(batch_fit(ue, s, &o, TEAM)
            .unwrap_err()
            .contains("unencrypted"));
        // Copy jobs: current objects up to 5 GB.
        let o = object(BATCH_COPY_LIMIT, true, "AES256", None);
        assert_eq!(
            batch_fit(cp, step(&o, EncryptionClass::SseS3, cp), &o, TEAM),
            Ok("copy")
        );
        let o = object(BATCH_COPY_LIMIT + 1, true, "AES256", None);
        let why = batch_fit(cp, step(&o, EncryptionClass::SseS3, cp), &o, TEAM).unwrap_err();
        assert!(why.contains("over 5 GB"), "{why}");
        let o = object(10, false, "AES256", None);
        assert!(batch_fit(cp, "copy", &o, TEAM)
            .unwrap_err()
            .contains("current objects only"));
    }

    #[test]
    fn artifacts_are_found_by_every_prefix_of_a_key() {
        let mut i = ArtifactIndex::default();
        i.add("models/a/model.tar.gz", 0, "role-a");
        i.add("models/b/", 1, "role-b");
        i.add("models/", 2, "role-c");
        i.add("données/é", 3, "role-d");
        let hits = |k: &str| {
            let mut h: Vec<usize> = i.matching(k).into_iter().map(|(_, e, _)| e).collect();
            h.sort();
            h
        };
        assert_eq!(hits("models/a/model.tar.gz"), [0, 2]);
        assert_eq!(hits("models/b/weights/1.bin"), [1, 2]);
        assert_eq!(hits("models/c"), [2]);
        assert_eq!(hits("model"), Vec::<usize>::new());
        assert_eq!(hits("données/éa"), [3]);
        // A prefix length that falls inside a multi-byte character of the key is skipped.
        assert_eq!(hits("donnéeséé"), Vec::<usize>::new());
        assert_eq!(
            i.matching("models/b/x")
                .into_iter()
                .find(|(_, e, _)| *e == 1)
                .map(|(p, _, r)| (p, r)),
            Some(("models/b/".to_string(), "role-b".to_string()))
        );
    }
}
