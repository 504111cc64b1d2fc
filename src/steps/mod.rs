//! Steps: what one unit of work does, how it is checked, and how it is undone. Every step is
//! idempotent: running it again when it already took effect finds it done and changes nothing.
//! Every write is conditional on the state the step expects, and every undo on the state the
//! step left (DESIGN.md §1a): what changed in between is reported and left alone.
//!
//! One file per provider's step kinds: `s3` (bucket default, object copy, multipart copy,
//! UpdateObjectEncryption), `endpoint` (SageMaker), `gcs` (Cloud Storage).

mod endpoint;
mod gcs;
mod s3;

use std::future::Future;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use gcs::GcsSteps;
pub use s3::S3Steps;

use crate::error::ProviderError;
use crate::model::{EncryptionClass, S3Encryption};
use crate::providers::sagemaker::SageMakerApi;
use crate::providers::{KeyRead, S3Write, Written};

/// The step kinds, as the journal names them (`kind`) and the executor orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    BucketDefault,
    GcsBucketDefault,
    Copy,
    MultipartCopy,
    UpdateEncryption,
    GcsRewrite,
    Endpoint,
    Blocked,
    /// An S3 Batch Operations job: its objects are steps of their own, told by its report.
    BatchJob,
}

impl StepKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            StepKind::BucketDefault => "bucket-default",
            StepKind::GcsBucketDefault => "gcs-bucket-default",
            StepKind::Copy => "copy",
            StepKind::MultipartCopy => "multipart-copy",
            StepKind::UpdateEncryption => "update-encryption",
            StepKind::GcsRewrite => "gcs-rewrite",
            StepKind::Endpoint => "endpoint",
            StepKind::Blocked => "blocked",
            StepKind::BatchJob => "batch-job",
        }
    }

    pub fn parse(s: &str) -> Option<StepKind> {
        Some(match s {
            "bucket-default" => StepKind::BucketDefault,
            "gcs-bucket-default" => StepKind::GcsBucketDefault,
            "copy" => StepKind::Copy,
            "multipart-copy" => StepKind::MultipartCopy,
            "update-encryption" => StepKind::UpdateEncryption,
            "gcs-rewrite" => StepKind::GcsRewrite,
            "endpoint" => StepKind::Endpoint,
            "blocked" => StepKind::Blocked,
            "batch-job" => StepKind::BatchJob,
            _ => return None,
        })
    }

    /// A bucket's default rule: set before the bucket's objects, restored after them.
    pub fn is_bucket_default(&self) -> bool {
        matches!(self, StepKind::BucketDefault | StepKind::GcsBucketDefault)
    }
}

/// A step as planned, stored in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum StepSpec {
    /// Set the bucket's default rule to `target` (its blocked encryption types are kept).
    BucketDefault {
        #[serde(
            default = "default_account",
            skip_serializing_if = "is_default_account"
        )]
        account: String,
        bucket: String,
        target: S3Encryption,
    },
    /// Re-encrypt one object version onto its team key.
    Object(ObjectStep),
    /// Set a Cloud Storage bucket's default key (a patch of that field alone).
    GcsBucketDefault {
        account: String,
        bucket: String,
        key: String,
    },
    /// Move a SageMaker endpoint to a clone of its config with the team key.
    Endpoint {
        #[serde(
            default = "default_account",
            skip_serializing_if = "is_default_account"
        )]
        account: String,
        name: String,
        from_config: String,
        to_config: String,
        key_arn: String,
        /// What the KmsKeyId covers; absent: covered (the key is required, the careful value).
        #[serde(
            default,
            skip_serializing_if = "crate::providers::sagemaker::VolumeKey::is_covered"
        )]
        volume_key: crate::providers::sagemaker::VolumeKey,
        /// UpdateEndpoint's DeploymentConfig; none: the endpoint's own is retained.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deployment_config: Option<serde_json::Value>,
        /// The fingerprint of the source config and models the plan checked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_sha256: Option<String>,
    },
    /// Run one S3 Batch Operations job over its member steps (`ObjectStep::job`).
    BatchJob(JobSpec),
}

/// A batch job as planned (`plan::JobPlan`), with what identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobSpec {
    #[serde(
        default = "default_account",
        skip_serializing_if = "is_default_account"
    )]
    pub account: String,
    pub bucket: String,
    pub job: u32,
    /// `update-encryption` or `copy`.
    pub operation: String,
    pub storage_class: String,
    pub kms_key_arn: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versioned: bool,
    /// A copy job's `UnModifiedSinceConstraint` (`plan::JobPlan::unmodified_since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmodified_since: Option<String>,
}

fn default_account() -> String {
    crate::inventory::DEFAULT_ACCOUNT.to_string()
}

fn is_default_account(a: &String) -> bool {
    a == crate::inventory::DEFAULT_ACCOUNT
}

pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn is_true(b: &bool) -> bool {
    *b
}

impl StepSpec {
    /// The account (as the campaign names it) whose clients run this step.
    pub fn account(&self) -> &str {
        match self {
            StepSpec::BucketDefault { account, .. }
            | StepSpec::Endpoint { account, .. }
            | StepSpec::GcsBucketDefault { account, .. } => account,
            StepSpec::Object(o) => &o.account,
            StepSpec::BatchJob(j) => &j.account,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ObjectStep {
    #[serde(
        default = "default_account",
        skip_serializing_if = "is_default_account"
    )]
    pub account: String,
    pub bucket: String,
    pub key: String,
    /// The version the plan saw. UpdateObjectEncryption is pinned to it; a copy never is
    /// (its source is the current version, held to `etag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Whether the planned version was the current one.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub latest: bool,
    /// The ETag the plan saw: a write happens only if the object still has it.
    pub etag: String,
    pub size: u64,
    pub storage_class: String,
    pub from: EncryptionClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_key_arn: Option<String>,
    /// The object's Bucket Key setting before: undo restores it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_bucket_key: bool,
    pub to_key_arn: String,
    /// `copy`, `multipart-copy`, `update-encryption` or `gcs-rewrite`.
    pub engine: String,
    pub part_size: u64,
    /// The website redirect the plan saw (a copy does not carry it by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_redirect: Option<String>,
    /// The bucket keeps object ACLs: each copy re-applies the object's grants. Absent (a
    /// journal of an older rekey): assumed, so nothing is skipped.
    #[serde(default = "yes")]
    pub acls: bool,
    /// Something can change the object's class or redirect without changing its ETag (a
    /// lifecycle transition, a website): the copy reads the object first. Absent: assumed.
    #[serde(default = "yes")]
    pub recheck: bool,
    /// A content hash a rewrite keeps (Cloud Storage's MD5): after a crash it tells rekey's
    /// rewrite from another writer's object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// The batch job that runs this step (none: rekey runs it). Its outcome comes from the
    /// job's completion report; `apply --retry-failed-locally` runs it as `engine` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<u32>,
}

impl ObjectStep {
    pub fn kind(&self) -> StepKind {
        StepKind::parse(&self.engine).unwrap_or(StepKind::Copy)
    }

    fn target(&self) -> S3Encryption {
        S3Encryption {
            algorithm: "aws:kms".into(),
            kms_key_arn: Some(self.to_key_arn.clone()),
            bucket_key: true,
            ..Default::default()
        }
    }

    /// The encryption the object had before: what undo restores. An unencrypted object is
    /// restored to SSE-S3, the least S3 writes today.
    pub fn original(&self) -> S3Encryption {
        match self.from {
            EncryptionClass::AwsManagedKms | EncryptionClass::ForeignCmk => S3Encryption {
                algorithm: "aws:kms".into(),
                kms_key_arn: if self.from == EncryptionClass::ForeignCmk {
                    self.from_key_arn.clone()
                } else {
                    None
                },
                bucket_key: self.from_bucket_key,
                ..Default::default()
            },
            _ => S3Encryption {
                algorithm: "AES256".into(),
                ..Default::default()
            },
        }
    }

    /// The undo data journaled with the step's intent: what it returns the object to.
    pub fn undo_data(&self) -> Option<String> {
        json(&serde_json::json!({
            "original": self.original(),
            "etag": self.etag,
            "version_id": self.version_id,
        }))
    }

    /// The version a read or UpdateObjectEncryption addresses: the pinned one for
    /// UpdateObjectEncryption, the current one for a copy.
    fn addressed_version(&self) -> Option<&str> {
        if self.kind() == StepKind::UpdateEncryption {
            self.version_id.as_deref()
        } else {
            None
        }
    }

    /// `s3://bucket/key` (with the version when one is addressed).
    pub fn url(&self) -> String {
        match self.addressed_version() {
            Some(v) if !self.latest => format!("s3://{}/{} (version {v})", self.bucket, self.key),
            _ => format!("s3://{}/{}", self.bucket, self.key),
        }
    }
}

/// What an object step wrote (or found), journaled after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ObjectResult {
    pub written: Written,
    /// Whether rekey made this state. False when a guarded write was refused because another
    /// writer had already put the object on the team key: rollback leaves such an object
    /// alone (it is not rekey's to undo).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub by_rekey: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Succeeded {
        result: Option<String>,
        note: Option<String>,
    },
    Drifted {
        reason: String,
    },
    /// The resource is gone (deleted since it was planned): nothing to do, not a failure.
    Vanished {
        reason: String,
    },
    Failed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum UndoOutcome {
    Undone { note: Option<String> },
    Conflict { reason: String },
    Failed { reason: String },
}

/// A message from a running step to the executor: journal this, then answer.
pub type ProgressMsg = (i64, String, oneshot::Sender<Result<(), String>>);

/// What a running step uses to journal its progress (a multipart copy's upload id) durably
/// before it goes on, through the executor that owns the journal.
#[derive(Clone, Debug, Default)]
pub struct ProgressHandle {
    id: i64,
    tx: Option<mpsc::UnboundedSender<ProgressMsg>>,
}

impl ProgressHandle {
    pub fn new(id: i64, tx: mpsc::UnboundedSender<ProgressMsg>) -> ProgressHandle {
        ProgressHandle { id, tx: Some(tx) }
    }

    /// A handle that journals nothing (steps run outside an executor, in tests).
    pub fn none() -> ProgressHandle {
        ProgressHandle::default()
    }

    /// Journal `data` as the step's progress; returns once it is durable.
    pub async fn save(&self, data: String) -> Result<(), String> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let (ack, done) = oneshot::channel();
        tx.send((self.id, data, ack))
            .map_err(|_| "the journal is gone".to_string())?;
        done.await.map_err(|_| "the journal is gone".to_string())?
    }
}

/// How a step runs: first time, or again after it was started (and may have taken effect).
#[derive(Debug, Clone, Copy)]
pub struct RunCtx<'a> {
    pub resumed: bool,
    /// What the step journaled as it ran before (a multipart copy's upload id).
    pub progress: Option<&'a str>,
    /// The undo data journaled with its intent (a bucket's rule as it was).
    pub undo: Option<&'a str>,
    pub saver: &'a ProgressHandle,
}

/// How an undo runs: from the step's journaled undo data and result.
#[derive(Debug, Clone, Copy)]
pub struct UndoCtx<'a> {
    pub undo: Option<&'a str>,
    pub result: Option<&'a str>,
    /// The step is journaled `succeeded`; otherwise it was started (or failed) and may or may
    /// not have taken effect, and the cloud decides.
    pub succeeded: bool,
    pub progress: Option<&'a str>,
    pub saver: &'a ProgressHandle,
}

/// Runs steps against a provider. The executor sees only this.
pub trait StepRunner: Send + Sync {
    /// Read what undo needs, before intent is journaled (`None`: the spec is enough).
    fn prepare(
        &self,
        spec: &StepSpec,
    ) -> impl Future<Output = Result<Option<String>, ProviderError>> + Send;
    /// Do the step.
    fn run(
        &self,
        spec: &StepSpec,
        ctx: RunCtx<'_>,
    ) -> impl Future<Output = (StepOutcome, u32)> + Send;
    /// Undo a step that succeeded, or re-check and undo one that was started or failed.
    fn undo(&self, spec: &StepSpec, ctx: UndoCtx<'_>) -> impl Future<Output = UndoOutcome> + Send;
    /// Why a key (ARN or alias) in the step's account cannot be used for an undo (missing,
    /// disabled, pending deletion); `None` when it can.
    fn key_usable(
        &self,
        spec: &StepSpec,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, ProviderError>> + Send;
}

/// Keys (ARNs or aliases) an undo returns objects or rules to: rollback checks each is still
/// usable before it starts. None for Cloud Storage (rekey has no Cloud KMS client yet).
pub fn undo_keys(spec: &StepSpec, undo: Option<&str>) -> Vec<String> {
    match spec {
        StepSpec::Object(o) if o.engine != "gcs-rewrite" => match o.from {
            EncryptionClass::ForeignCmk => o.from_key_arn.clone().into_iter().collect(),
            EncryptionClass::AwsManagedKms => vec!["alias/aws/s3".to_string()],
            _ => Vec::new(),
        },
        StepSpec::BucketDefault { .. } => undo
            .and_then(|u| serde_json::from_str::<s3::BucketUndo>(u).ok())
            .filter(|u| u.previous.algorithm.starts_with("aws:kms"))
            .map(|u| {
                vec![u
                    .previous
                    .kms_key_arn
                    .unwrap_or_else(|| "alias/aws/s3".into())]
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn same_key(enc: &S3Encryption, want: &S3Encryption) -> bool {
    enc.algorithm == want.algorithm
        && (want.algorithm != "aws:kms"
            || want.kms_key_arn.is_none()
            || enc.kms_key_arn == want.kms_key_arn)
}

fn json<T: Serialize>(v: &T) -> Option<String> {
    serde_json::to_string(v).ok()
}

/// Runs each step with the runner of its account (multi-account campaigns).
pub struct AccountRunners<R> {
    pub runners: std::collections::BTreeMap<String, R>,
}

impl<R: StepRunner> AccountRunners<R> {
    fn runner(&self, spec: &StepSpec) -> Result<&R, String> {
        self.runners.get(spec.account()).ok_or_else(|| {
            format!(
                "no credentials for account {:?}: is it still in the plan's accounts?",
                spec.account()
            )
        })
    }
}

impl<R: StepRunner> StepRunner for AccountRunners<R> {
    async fn prepare(&self, spec: &StepSpec) -> Result<Option<String>, ProviderError> {
        match self.runner(spec) {
            Ok(r) => r.prepare(spec).await,
            Err(detail) => Err(ProviderError::Other {
                what: "step".into(),
                detail,
            }),
        }
    }

    async fn run(&self, spec: &StepSpec, ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        match self.runner(spec) {
            Ok(r) => r.run(spec, ctx).await,
            Err(reason) => (StepOutcome::Failed { reason }, 0),
        }
    }

    async fn undo(&self, spec: &StepSpec, ctx: UndoCtx<'_>) -> UndoOutcome {
        match self.runner(spec) {
            Ok(r) => r.undo(spec, ctx).await,
            Err(reason) => UndoOutcome::Failed { reason },
        }
    }

    async fn key_usable(
        &self,
        spec: &StepSpec,
        key: &str,
    ) -> Result<Option<String>, ProviderError> {
        match self.runner(spec) {
            Ok(r) => r.key_usable(spec, key).await,
            Err(detail) => Ok(Some(detail)),
        }
    }
}

/// An AWS or a Cloud Storage runner, so that one plan can hold both providers.
pub enum AnyRunner<'a, S> {
    Aws(S3Steps<'a, S>),
    Gcs(GcsSteps<'a>),
}

impl<S: S3Write + KeyRead + SageMakerApi> StepRunner for AnyRunner<'_, S> {
    async fn prepare(&self, spec: &StepSpec) -> Result<Option<String>, ProviderError> {
        match self {
            AnyRunner::Aws(r) => r.prepare(spec).await,
            AnyRunner::Gcs(r) => r.prepare(spec).await,
        }
    }

    async fn run(&self, spec: &StepSpec, ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        match self {
            AnyRunner::Aws(r) => r.run(spec, ctx).await,
            AnyRunner::Gcs(r) => r.run(spec, ctx).await,
        }
    }

    async fn undo(&self, spec: &StepSpec, ctx: UndoCtx<'_>) -> UndoOutcome {
        match self {
            AnyRunner::Aws(r) => r.undo(spec, ctx).await,
            AnyRunner::Gcs(r) => r.undo(spec, ctx).await,
        }
    }

    async fn key_usable(
        &self,
        spec: &StepSpec,
        key: &str,
    ) -> Result<Option<String>, ProviderError> {
        match self {
            AnyRunner::Aws(r) => r.key_usable(spec, key).await,
            AnyRunner::Gcs(r) => r.key_usable(spec, key).await,
        }
    }
}
