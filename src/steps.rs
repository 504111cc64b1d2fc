//! Steps: what one unit of work does, how it is checked, and how it is undone. Every step is
//! idempotent: running it again when it already took effect finds it done and changes nothing.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::ProviderError;
use crate::model::{EncryptionClass, S3Encryption};
use crate::providers::sagemaker::SageMakerApi;
use crate::providers::{CopyInPlace, ObjectHead, S3Write, Written};
use crate::retry::{retried, Pacer, RetryPolicy};

/// A step as planned, stored in the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum StepSpec {
    /// Set the bucket's default rule to `target`.
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
    },
}

fn default_account() -> String {
    crate::inventory::DEFAULT_ACCOUNT.to_string()
}

fn is_default_account(a: &String) -> bool {
    a == crate::inventory::DEFAULT_ACCOUNT
}

impl StepSpec {
    /// The account (as the campaign names it) whose clients run this step.
    pub fn account(&self) -> &str {
        match self {
            StepSpec::BucketDefault { account, .. }
            | StepSpec::Endpoint { account, .. }
            | StepSpec::GcsBucketDefault { account, .. } => account,
            StepSpec::Object(o) => &o.account,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectStep {
    #[serde(
        default = "default_account",
        skip_serializing_if = "is_default_account"
    )]
    pub account: String,
    pub bucket: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The ETag the plan saw: the copy happens only if the object still has it.
    pub etag: String,
    pub size: u64,
    pub storage_class: String,
    pub from: EncryptionClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_key_arn: Option<String>,
    pub to_key_arn: String,
    /// `copy`, `multipart-copy` or `update-encryption`.
    pub engine: String,
    pub part_size: u64,
}

impl ObjectStep {
    fn target(&self) -> S3Encryption {
        S3Encryption {
            algorithm: "aws:kms".into(),
            kms_key_arn: Some(self.to_key_arn.clone()),
            key_manager: None,
            bucket_key: true,
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
                key_manager: None,
                bucket_key: false,
            },
            _ => S3Encryption {
                algorithm: "AES256".into(),
                ..Default::default()
            },
        }
    }
}

/// Undo data of a bucket step, journaled before the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketUndo {
    pub previous: S3Encryption,
}

/// What an object step wrote, journaled after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectResult {
    pub written: Written,
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

/// Runs steps against a provider. The executor sees only this.
pub trait StepRunner: Send + Sync {
    /// Read what undo needs, before intent is journaled (`None`: the spec is enough).
    fn prepare(
        &self,
        spec: &StepSpec,
    ) -> impl Future<Output = Result<Option<String>, ProviderError>> + Send;
    /// Do the step. `resumed`: it was started before and may have taken effect.
    fn run(
        &self,
        spec: &StepSpec,
        resumed: bool,
    ) -> impl Future<Output = (StepOutcome, u32)> + Send;
    /// Undo a succeeded step from its journaled undo data and result.
    fn undo(
        &self,
        spec: &StepSpec,
        undo: Option<&str>,
        result: Option<&str>,
    ) -> impl Future<Output = UndoOutcome> + Send;
}

/// Steps on S3, through any `S3Write` provider.
pub struct S3Steps<'a, S> {
    pub s3: &'a S,
    pub policy: RetryPolicy,
    pub pacer: &'a Pacer,
}

fn same_key(enc: &S3Encryption, want: &S3Encryption) -> bool {
    enc.algorithm == want.algorithm
        && (want.algorithm != "aws:kms"
            || want.kms_key_arn.is_none()
            || enc.kms_key_arn == want.kms_key_arn)
}

/// A step with nothing to record: done, or failed with the provider's reason.
fn done_or_failed(r: Result<(), ProviderError>) -> StepOutcome {
    match r {
        Ok(()) => StepOutcome::Succeeded {
            result: None,
            note: None,
        },
        Err(e) => StepOutcome::Failed {
            reason: e.to_string(),
        },
    }
}

fn json<T: Serialize>(v: &T) -> Option<String> {
    serde_json::to_string(v).ok()
}

/// How long an endpoint may take to come back InService.
const ENDPOINT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

impl<S: S3Write + SageMakerApi> S3Steps<'_, S> {
    /// Wait until the endpoint is InService on `config`, polling with backoff.
    async fn wait_in_service(&self, name: &str, config: &str) -> Result<(), String> {
        let start = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(250);
        loop {
            let (_, status, current) =
                retried(&self.policy, self.pacer, || self.s3.describe_endpoint(name))
                    .await
                    .0
                    .map_err(|e| e.to_string())?;
            match status.as_str() {
                "InService" if current == config => return Ok(()),
                "Failed" | "OutOfService" => {
                    return Err(format!("endpoint {name} is {status} (config {current})"))
                }
                _ => {}
            }
            if start.elapsed() > ENDPOINT_TIMEOUT {
                return Err(format!(
                    "endpoint {name} still {status} after {} minutes",
                    ENDPOINT_TIMEOUT.as_secs() / 60
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(10));
        }
    }

    /// Point an endpoint at `config` (already existing) and wait for it.
    async fn move_endpoint(&self, name: &str, config: &str) -> Result<(), String> {
        let (_, status, current) =
            retried(&self.policy, self.pacer, || self.s3.describe_endpoint(name))
                .await
                .0
                .map_err(|e| e.to_string())?;
        if current != config {
            if status == "Updating" || status == "Creating" {
                self.wait_in_service(name, &current).await?;
            }
            retried(&self.policy, self.pacer, || {
                self.s3.update_endpoint(name, config)
            })
            .await
            .0
            .map_err(|e| e.to_string())?;
        }
        self.wait_in_service(name, config).await
    }

    async fn run_endpoint(&self, name: &str, from: &str, to: &str, key_arn: &str) -> StepOutcome {
        let current = match retried(&self.policy, self.pacer, || self.s3.describe_endpoint(name))
            .await
            .0
        {
            Ok((_, _, c)) => c,
            Err(ProviderError::NotFound { .. }) => {
                return StepOutcome::Drifted {
                    reason: format!("endpoint {name} no longer exists"),
                }
            }
            Err(e) => {
                return StepOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        if current != from && current != to {
            return StepOutcome::Drifted {
                reason: format!(
                    "endpoint {name} now uses config {current}, not the planned {from}; left as is"
                ),
            };
        }
        if current != to {
            if let Err(e) = retried(&self.policy, self.pacer, || {
                self.s3.clone_endpoint_config(from, to, key_arn)
            })
            .await
            .0
            {
                return StepOutcome::Failed {
                    reason: e.to_string(),
                };
            }
        }
        match self.move_endpoint(name, to).await {
            Ok(()) => StepOutcome::Succeeded {
                result: json(&serde_json::json!({ "config": to })),
                note: None,
            },
            Err(reason) => StepOutcome::Failed { reason },
        }
    }

    async fn head(
        &self,
        o: &ObjectStep,
        version: Option<&str>,
    ) -> Result<ObjectHead, ProviderError> {
        retried(&self.policy, self.pacer, || {
            self.s3.head_object(&o.bucket, &o.key, version)
        })
        .await
        .0
    }

    /// After a refused copy: a newer write that is already on the team key is done; anything
    /// else is drift, left as the writer left it.
    async fn settle_drift(&self, o: &ObjectStep, why: &str) -> StepOutcome {
        match self.head(o, None).await {
            Ok(h) if same_key(&h.encryption, &o.target()) => StepOutcome::Succeeded {
                result: json(&ObjectResult {
                    written: Written {
                        etag: h.etag.clone(),
                        version_id: None,
                    },
                    note: Some(format!("{why}; the newer write is already on the team key")),
                }),
                note: Some("already on the team key".into()),
            },
            Ok(h) => StepOutcome::Drifted {
                reason: format!(
                    "{why}: ETag is now {} (planned {}), encryption {}; left as written",
                    h.etag, o.etag, h.encryption.algorithm
                ),
            },
            Err(ProviderError::NotFound { .. }) => StepOutcome::Drifted {
                reason: "the object no longer exists".into(),
            },
            Err(e) => StepOutcome::Failed {
                reason: e.to_string(),
            },
        }
    }

    async fn run_object(&self, o: &ObjectStep, resumed: bool) -> (StepOutcome, u32) {
        let target = o.target();
        if resumed {
            // The step may have taken effect before the crash: check before doing it again.
            if let Ok(h) = self.head(o, o.version_id.as_deref()).await {
                if same_key(&h.encryption, &target) {
                    let result = json(&ObjectResult {
                        written: Written {
                            etag: h.etag,
                            version_id: None,
                        },
                        note: Some("found done on resume".into()),
                    });
                    return (
                        StepOutcome::Succeeded {
                            result,
                            note: Some("found done on resume".into()),
                        },
                        0,
                    );
                }
            }
        }
        let req = CopyInPlace {
            bucket: &o.bucket,
            key: &o.key,
            version_id: o.version_id.as_deref(),
            if_match: &o.etag,
            target: &target,
            storage_class: &o.storage_class,
            size: o.size,
        };
        let (res, attempts) = match o.engine.as_str() {
            "update-encryption" => {
                let (r, a) = retried(&self.policy, self.pacer, || {
                    self.s3.update_encryption(
                        &o.bucket,
                        &o.key,
                        o.version_id.as_deref(),
                        &o.to_key_arn,
                        true,
                    )
                })
                .await;
                (
                    r.map(|()| Written {
                        etag: o.etag.clone(),
                        version_id: o.version_id.clone(),
                    }),
                    a,
                )
            }
            "multipart-copy" => {
                retried(&self.policy, self.pacer, || {
                    self.s3.multipart_copy_in_place(&req, o.part_size)
                })
                .await
            }
            _ => retried(&self.policy, self.pacer, || self.s3.copy_in_place(&req)).await,
        };
        let outcome = match res {
            Ok(written) => StepOutcome::Succeeded {
                result: json(&ObjectResult {
                    written,
                    note: None,
                }),
                note: None,
            },
            Err(ProviderError::Precondition { .. }) => {
                self.settle_drift(o, "changed since planned").await
            }
            Err(ProviderError::NotFound { .. }) => {
                self.settle_drift(o, "changed since planned").await
            }
            // S3 refuses to copy an object onto itself when nothing changes: when a step
            // runs again after it took effect, that refusal means it is done.
            Err(e @ ProviderError::Invalid { .. }) => match self.head(o, None).await {
                Ok(h) if same_key(&h.encryption, &target) => StepOutcome::Succeeded {
                    result: json(&ObjectResult {
                        written: Written {
                            etag: h.etag,
                            version_id: None,
                        },
                        note: Some("already on the team key".into()),
                    }),
                    note: Some("already on the team key".into()),
                },
                _ => StepOutcome::Failed {
                    reason: e.to_string(),
                },
            },
            Err(e) => StepOutcome::Failed {
                reason: e.to_string(),
            },
        };
        (outcome, attempts.retries)
    }

    async fn undo_object(&self, o: &ObjectStep, result: Option<&str>) -> UndoOutcome {
        let original = o.original();
        let ours: Option<ObjectResult> = result.and_then(|r| serde_json::from_str(r).ok());
        let head = match self.head(o, None).await {
            Ok(h) => h,
            Err(ProviderError::NotFound { .. }) => {
                return UndoOutcome::Conflict {
                    reason: "the object no longer exists".into(),
                }
            }
            Err(e) => {
                return UndoOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        let already_original = head.encryption.algorithm == original.algorithm
            && (original.algorithm != "aws:kms" || head.encryption.kms_key_arn == o.from_key_arn);
        if already_original {
            return UndoOutcome::Undone {
                note: Some("already on its original encryption".into()),
            };
        }
        let Some(ours) = ours else {
            return UndoOutcome::Failed {
                reason: "the journal holds no result for this step".into(),
            };
        };
        if head.etag != ours.written.etag {
            return UndoOutcome::Conflict {
                reason: format!(
                    "written since apply (ETag {} , apply wrote {}); left alone",
                    head.etag, ours.written.etag
                ),
            };
        }
        let archived = matches!(head.storage_class.as_str(), "GLACIER" | "DEEP_ARCHIVE")
            || matches!(
                head.archive_status.as_deref(),
                Some("ARCHIVE_ACCESS" | "DEEP_ARCHIVE_ACCESS")
            );
        if archived && original.algorithm != "aws:kms" {
            return UndoOutcome::Failed {
                reason: format!(
                    "archived ({}): UpdateObjectEncryption cannot return it to SSE-S3 and a copy needs a restore; restore it, then roll back again",
                    head.archive_status.as_deref().unwrap_or(&head.storage_class)
                ),
            };
        }
        let res = if o.engine == "update-encryption"
            && original.algorithm == "aws:kms"
            && o.from_key_arn.is_some()
        {
            let arn = o.from_key_arn.clone().unwrap_or_default();
            retried(&self.policy, self.pacer, || {
                self.s3
                    .update_encryption(&o.bucket, &o.key, None, &arn, false)
            })
            .await
            .0
            .map(|_| ())
        } else {
            let req = CopyInPlace {
                bucket: &o.bucket,
                key: &o.key,
                version_id: None,
                if_match: &ours.written.etag,
                target: &original,
                storage_class: &head.storage_class,
                size: head.size,
            };
            if head.size > o.part_size && o.engine == "multipart-copy" {
                retried(&self.policy, self.pacer, || {
                    self.s3.multipart_copy_in_place(&req, o.part_size)
                })
                .await
                .0
                .map(|_| ())
            } else {
                retried(&self.policy, self.pacer, || self.s3.copy_in_place(&req))
                    .await
                    .0
                    .map(|_| ())
            }
        };
        match res {
            Ok(()) => UndoOutcome::Undone { note: None },
            Err(ProviderError::Precondition { .. }) => UndoOutcome::Conflict {
                reason: "written since apply; left alone".into(),
            },
            Err(e) => UndoOutcome::Failed {
                reason: e.to_string(),
            },
        }
    }
}

impl<S: S3Write + SageMakerApi> StepRunner for S3Steps<'_, S> {
    async fn prepare(&self, spec: &StepSpec) -> Result<Option<String>, ProviderError> {
        match spec {
            StepSpec::BucketDefault { bucket, .. } => {
                let previous = retried(&self.policy, self.pacer, || self.s3.bucket_default(bucket))
                    .await
                    .0?;
                Ok(json(&BucketUndo { previous }))
            }
            StepSpec::Object(o) => Ok(json(&serde_json::json!({
                "original": o.original(),
                "etag": o.etag,
                "version_id": o.version_id,
            }))),
            StepSpec::Endpoint { name, .. } => {
                let (_, _, current) =
                    retried(&self.policy, self.pacer, || self.s3.describe_endpoint(name))
                        .await
                        .0?;
                Ok(json(&serde_json::json!({ "previous_config": current })))
            }
            StepSpec::GcsBucketDefault { .. } => Err(ProviderError::Other {
                what: "step".into(),
                detail: "a Cloud Storage step reached the AWS runner".into(),
            }),
        }
    }

    async fn run(&self, spec: &StepSpec, resumed: bool) -> (StepOutcome, u32) {
        match spec {
            StepSpec::BucketDefault { bucket, target, .. } => {
                let (r, a) = retried(&self.policy, self.pacer, || {
                    self.s3.set_bucket_default(bucket, target)
                })
                .await;
                (done_or_failed(r), a.retries)
            }
            StepSpec::Object(o) => self.run_object(o, resumed).await,
            StepSpec::Endpoint {
                name,
                from_config,
                to_config,
                key_arn,
                ..
            } => (
                self.run_endpoint(name, from_config, to_config, key_arn)
                    .await,
                0,
            ),
            StepSpec::GcsBucketDefault { .. } => (
                StepOutcome::Failed {
                    reason: "a Cloud Storage step reached the AWS runner".into(),
                },
                0,
            ),
        }
    }

    async fn undo(&self, spec: &StepSpec, undo: Option<&str>, result: Option<&str>) -> UndoOutcome {
        match spec {
            StepSpec::BucketDefault { bucket, .. } => {
                let Some(u) = undo.and_then(|u| serde_json::from_str::<BucketUndo>(u).ok()) else {
                    return UndoOutcome::Failed {
                        reason: "the journal holds no previous rule for this bucket".into(),
                    };
                };
                match retried(&self.policy, self.pacer, || {
                    self.s3.set_bucket_default(bucket, &u.previous)
                })
                .await
                .0
                {
                    Ok(()) => UndoOutcome::Undone { note: None },
                    Err(e) => UndoOutcome::Failed {
                        reason: e.to_string(),
                    },
                }
            }
            StepSpec::Object(o) => self.undo_object(o, result).await,
            StepSpec::Endpoint {
                name, from_config, ..
            } => match self.move_endpoint(name, from_config).await {
                Ok(()) => UndoOutcome::Undone { note: None },
                Err(reason) => UndoOutcome::Failed { reason },
            },
            StepSpec::GcsBucketDefault { .. } => UndoOutcome::Failed {
                reason: "a Cloud Storage step reached the AWS runner".into(),
            },
        }
    }
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

    async fn run(&self, spec: &StepSpec, resumed: bool) -> (StepOutcome, u32) {
        match self.runner(spec) {
            Ok(r) => r.run(spec, resumed).await,
            Err(reason) => (StepOutcome::Failed { reason }, 0),
        }
    }

    async fn undo(&self, spec: &StepSpec, undo: Option<&str>, result: Option<&str>) -> UndoOutcome {
        match self.runner(spec) {
            Ok(r) => r.undo(spec, undo, result).await,
            Err(reason) => UndoOutcome::Failed { reason },
        }
    }
}

/// Steps on Cloud Storage. Objects use `ObjectStep` with engine `gcs-rewrite`: the planned
/// generation is in `etag` (and `version_id`), the key names in the `*_key_arn` fields.
pub struct GcsSteps<'a> {
    pub gcs: &'a crate::providers::gcs::GcsClient,
    pub policy: RetryPolicy,
    pub pacer: &'a Pacer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GcsBucketUndo {
    previous: Option<String>,
}

impl GcsSteps<'_> {
    async fn current(
        &self,
        o: &ObjectStep,
    ) -> Result<crate::providers::gcs::GcsObjectInfo, ProviderError> {
        retried(&self.policy, self.pacer, || {
            self.gcs.get_object(&o.bucket, &o.key, None)
        })
        .await
        .0
    }

    fn done(generation: i64, note: Option<String>) -> StepOutcome {
        StepOutcome::Succeeded {
            result: json(&ObjectResult {
                written: Written {
                    etag: generation.to_string(),
                    version_id: Some(generation.to_string()),
                },
                note: note.clone(),
            }),
            note,
        }
    }

    async fn run_object(&self, o: &ObjectStep, resumed: bool) -> (StepOutcome, u32) {
        let planned: i64 = o.etag.parse().unwrap_or(0);
        if resumed {
            if let Ok(c) = self.current(o).await {
                if c.kms_key.as_deref() == Some(o.to_key_arn.as_str()) {
                    return (
                        Self::done(c.generation, Some("found done on resume".into())),
                        0,
                    );
                }
            }
        }
        let (r, a) = retried(&self.policy, self.pacer, || {
            self.gcs
                .rewrite_in_place(&o.bucket, &o.key, planned, Some(&o.to_key_arn))
        })
        .await;
        let outcome = match r {
            Ok((obj, calls)) => Self::done(obj.generation, (calls > 1).then(|| format!("rewritten in {calls} calls"))),
            Err(ProviderError::Precondition { .. }) | Err(ProviderError::NotFound { .. }) => match self.current(o).await {
                Ok(c) if c.kms_key.as_deref() == Some(o.to_key_arn.as_str()) => {
                    Self::done(c.generation, Some("already on the team key".into()))
                }
                Ok(c) => StepOutcome::Drifted {
                    reason: format!("changed since planned: generation is now {} (planned {}); left as written", c.generation, o.etag),
                },
                Err(ProviderError::NotFound { .. }) => StepOutcome::Drifted { reason: "the object no longer exists".into() },
                Err(e) => StepOutcome::Failed { reason: e.to_string() },
            },
            Err(e) => StepOutcome::Failed { reason: e.to_string() },
        };
        (outcome, a.retries)
    }

    async fn undo_object(&self, o: &ObjectStep, result: Option<&str>) -> UndoOutcome {
        let original = o.from_key_arn.clone();
        let c = match self.current(o).await {
            Ok(c) => c,
            Err(ProviderError::NotFound { .. }) => {
                return UndoOutcome::Conflict {
                    reason: "the object no longer exists".into(),
                }
            }
            Err(e) => {
                return UndoOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        if c.kms_key == original {
            return UndoOutcome::Undone {
                note: Some("already on its original key".into()),
            };
        }
        let ours: Option<ObjectResult> = result.and_then(|r| serde_json::from_str(r).ok());
        if ours.as_ref().map(|r| r.written.etag.as_str()) != Some(c.generation.to_string().as_str())
        {
            return UndoOutcome::Conflict {
                reason: format!(
                    "written since apply (generation {}); left alone",
                    c.generation
                ),
            };
        }
        match retried(&self.policy, self.pacer, || self.gcs.rewrite_in_place(&o.bucket, &o.key, c.generation, original.as_deref())).await.0 {
            Ok((obj, _)) if obj.kms_key == original => UndoOutcome::Undone { note: None },
            Ok((obj, _)) => UndoOutcome::Failed {
                reason: format!(
                    "rewritten, but it took {} (the bucket default) instead of Google-managed encryption: restore the bucket default first",
                    obj.kms_key.unwrap_or_default()
                ),
            },
            Err(ProviderError::Precondition { .. }) => UndoOutcome::Conflict { reason: "written since apply; left alone".into() },
            Err(e) => UndoOutcome::Failed { reason: e.to_string() },
        }
    }
}

impl StepRunner for GcsSteps<'_> {
    async fn prepare(&self, spec: &StepSpec) -> Result<Option<String>, ProviderError> {
        match spec {
            StepSpec::GcsBucketDefault { bucket, .. } => {
                let b = retried(&self.policy, self.pacer, || self.gcs.get_bucket(bucket))
                    .await
                    .0?;
                Ok(json(&GcsBucketUndo {
                    previous: b.default_kms_key,
                }))
            }
            StepSpec::Object(o) => Ok(json(
                &serde_json::json!({ "original_key": o.from_key_arn, "generation": o.etag }),
            )),
            _ => Err(ProviderError::Other {
                what: "step".into(),
                detail: "not a Cloud Storage step".into(),
            }),
        }
    }

    async fn run(&self, spec: &StepSpec, resumed: bool) -> (StepOutcome, u32) {
        match spec {
            StepSpec::GcsBucketDefault { bucket, key, .. } => {
                let (r, a) = retried(&self.policy, self.pacer, || {
                    self.gcs.set_default_key(bucket, Some(key))
                })
                .await;
                (done_or_failed(r), a.retries)
            }
            StepSpec::Object(o) => self.run_object(o, resumed).await,
            _ => (
                StepOutcome::Failed {
                    reason: "not a Cloud Storage step".into(),
                },
                0,
            ),
        }
    }

    async fn undo(&self, spec: &StepSpec, undo: Option<&str>, result: Option<&str>) -> UndoOutcome {
        match spec {
            StepSpec::GcsBucketDefault { bucket, .. } => {
                let Some(u) = undo.and_then(|u| serde_json::from_str::<GcsBucketUndo>(u).ok())
                else {
                    return UndoOutcome::Failed {
                        reason: "the journal holds no previous default key for this bucket".into(),
                    };
                };
                match retried(&self.policy, self.pacer, || {
                    self.gcs.set_default_key(bucket, u.previous.as_deref())
                })
                .await
                .0
                {
                    Ok(()) => UndoOutcome::Undone { note: None },
                    Err(e) => UndoOutcome::Failed {
                        reason: e.to_string(),
                    },
                }
            }
            StepSpec::Object(o) => self.undo_object(o, result).await,
            _ => UndoOutcome::Failed {
                reason: "not a Cloud Storage step".into(),
            },
        }
    }
}

/// An AWS or a Cloud Storage runner, so that one plan can hold both providers.
pub enum AnyRunner<'a, S> {
    Aws(S3Steps<'a, S>),
    Gcs(GcsSteps<'a>),
}

impl<S: S3Write + SageMakerApi> StepRunner for AnyRunner<'_, S> {
    async fn prepare(&self, spec: &StepSpec) -> Result<Option<String>, ProviderError> {
        match self {
            AnyRunner::Aws(r) => r.prepare(spec).await,
            AnyRunner::Gcs(r) => r.prepare(spec).await,
        }
    }

    async fn run(&self, spec: &StepSpec, resumed: bool) -> (StepOutcome, u32) {
        match self {
            AnyRunner::Aws(r) => r.run(spec, resumed).await,
            AnyRunner::Gcs(r) => r.run(spec, resumed).await,
        }
    }

    async fn undo(&self, spec: &StepSpec, undo: Option<&str>, result: Option<&str>) -> UndoOutcome {
        match self {
            AnyRunner::Aws(r) => r.undo(spec, undo, result).await,
            AnyRunner::Gcs(r) => r.undo(spec, undo, result).await,
        }
    }
}
