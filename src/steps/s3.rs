//! S3 steps: a bucket's default rule, and an object re-encrypted in place by CopyObject, by a
//! multipart copy (UploadPartCopy), or by UpdateObjectEncryption; with their undo.
//!
//! Guards (DESIGN.md I1): a copy's source and destination are both held to the ETag the plan
//! saw (`x-amz-copy-source-if-match` and `If-Match`), and so is CompleteMultipartUpload; a
//! copy always reads the current version, never a pinned version id. UpdateObjectEncryption
//! takes no condition: it is pinned to the planned version id in a versioned bucket, and
//! preceded by a read of the ETag in an unversioned one (it rewrites no data, so the race that
//! remains can re-key a newer write but never lose it). An undo is held to what the apply
//! wrote: the ETag (and version) it recorded, or the rule it set.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{
    json, same_key, ObjectResult, ObjectStep, ProgressHandle, RunCtx, StepKind, StepOutcome,
    StepRunner, StepSpec, UndoCtx, UndoOutcome,
};
use crate::error::ProviderError;
use crate::model::S3Encryption;
use crate::providers::sagemaker::SageMakerApi;
use crate::providers::{CopiedPart, CopyInPlace, Grants, KeyRead, ObjectHead, S3Write, Written};
use crate::retry::{retried, retried_guarded, Pacer, RetryPolicy};

/// CopyObject copies at most 5 GiB; larger objects go by parts.
pub const COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// Part copies one multipart step keeps in flight (the run's `part_slots` bound them all).
const PARTS_PER_STEP: usize = 8;

/// How often a multipart copy starts over after CompleteMultipartUpload raced (409).
const MAX_RESTARTS: u32 = 2;

/// Steps on S3 (and SageMaker endpoints), through one account's clients.
pub struct S3Steps<'a, S> {
    pub s3: &'a S,
    pub policy: RetryPolicy,
    pub pacer: &'a Pacer,
    /// Part copies in flight across every multipart step of the run.
    pub part_slots: &'a Semaphore,
}

impl<'a, S> S3Steps<'a, S> {
    pub fn new(s3: &'a S, pacer: &'a Pacer, part_slots: &'a Semaphore) -> Self {
        S3Steps {
            s3,
            policy: RetryPolicy::default(),
            pacer,
            part_slots,
        }
    }
}

/// Undo data of a bucket step, journaled before the change: the whole rule as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BucketUndo {
    pub previous: S3Encryption,
}

/// What a bucket step set, journaled after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct BucketResult {
    rule: S3Encryption,
    /// False when another writer had already set this rule: rollback leaves it alone.
    #[serde(default = "super::yes", skip_serializing_if = "super::is_true")]
    by_rekey: bool,
}

/// A multipart copy under way, journaled as soon as its upload exists (so that a crash
/// leaves an upload rekey can finish or abort, never one it forgets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct MultipartProgress {
    upload_id: String,
    /// An upload of the undo (a copy back), not of the apply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    undo: bool,
    /// The ETag the completed upload will have (from its parts' ETags), journaled before
    /// CompleteMultipartUpload: after a crash it tells rekey's object from another writer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expected_etag: Option<String>,
    /// The tag set the upload was created with: a change of tags (which keeps the ETag)
    /// during the copy must not be overwritten by the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tags: Option<String>,
}

/// The ETag S3 gives a completed multipart upload: the MD5 of its parts' binary MD5s, then
/// `-` and the number of parts. None when a part's ETag is not an MD5.
fn multipart_etag(parts: &[CopiedPart]) -> Option<String> {
    use md5::{Digest, Md5};
    let mut sorted: Vec<&CopiedPart> = parts.iter().collect();
    sorted.sort_by_key(|p| p.number);
    let mut all = Md5::new();
    for p in &sorted {
        let raw = hex::decode(p.etag.trim_matches('"')).ok()?;
        if raw.len() != 16 {
            return None;
        }
        all.update(&raw);
    }
    Some(format!(
        "\"{}-{}\"",
        hex::encode(all.finalize()),
        sorted.len()
    ))
}

/// A copy back over a version re-keyed in place, journaled before it is sent: after a crash
/// the version it wrote is told from another writer's (`S3Steps::own_copy_back`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct CopyBack {
    copy_back_over: String,
}

/// The object is on the step's original encryption (not on the team key).
fn on_original(o: &ObjectStep, h: &ObjectHead) -> bool {
    let original = o.original();
    h.encryption.algorithm == original.algorithm
        && !same_key(&h.encryption, &o.target())
        && (original.algorithm != "aws:kms"
            || o.from_key_arn.is_none()
            || h.encryption.kms_key_arn == o.from_key_arn)
}

fn upload_of(progress: Option<&str>) -> Option<MultipartProgress> {
    progress.and_then(|p| serde_json::from_str(p).ok())
}

/// Two bucket rules are the same rule: algorithm, key as written, Bucket Key, blocked types.
fn same_rule(a: &S3Encryption, b: &S3Encryption) -> bool {
    let blocked = |e: &S3Encryption| {
        let mut v = e.blocked_types.clone();
        v.sort();
        v
    };
    a.algorithm == b.algorithm
        && a.kms_key_arn == b.kms_key_arn
        && a.bucket_key == b.bucket_key
        && blocked(a) == blocked(b)
}

/// The rule a bucket step sets: the team key, keeping the rule's blocked encryption types.
fn bucket_target(target: &S3Encryption, previous: &S3Encryption) -> S3Encryption {
    S3Encryption {
        blocked_types: previous.blocked_types.clone(),
        key_manager: None,
        ..target.clone()
    }
}

pub fn describe_rule(e: &S3Encryption) -> String {
    let mut s = match &e.kms_key_arn {
        Some(k) => format!("{} {k}", e.algorithm),
        None => e.algorithm.clone(),
    };
    if e.bucket_key {
        s.push_str(", Bucket Key on");
    }
    if !e.blocked_types.is_empty() {
        s.push_str(&format!(", blocking {}", e.blocked_types.join(", ")));
    }
    s
}

/// Byte ranges (first, last) of each part.
fn part_ranges(size: u64, part_size: u64) -> Vec<(i32, u64, u64)> {
    let part = part_size.max(5 * 1024 * 1024).max(size.div_ceil(10_000));
    let mut out = Vec::new();
    let mut first = 0;
    let mut n = 1;
    while first < size {
        let last = (first + part).min(size) - 1;
        out.push((n, first, last));
        first = last + 1;
        n += 1;
    }
    out
}

fn written_of(h: &ObjectHead) -> Written {
    Written {
        etag: h.etag.clone(),
        version_id: h.version_id.clone(),
    }
}

/// A step that found the object on its team key rather than writing it.
fn found(h: &ObjectHead, by_rekey: bool, note: &str) -> StepOutcome {
    StepOutcome::Succeeded {
        result: json(&ObjectResult {
            written: written_of(h),
            by_rekey,
            note: Some(note.to_string()),
        }),
        note: Some(note.to_string()),
    }
}

/// The object is gone (deleted since it was planned): nothing to re-key, and not a failure.
fn vanished() -> StepOutcome {
    StepOutcome::Vanished {
        reason: "the object no longer exists: nothing to re-key".into(),
    }
}

fn failed(e: impl std::fmt::Display) -> StepOutcome {
    StepOutcome::Failed {
        reason: e.to_string(),
    }
}

impl<S: S3Write + KeyRead + SageMakerApi> S3Steps<'_, S> {
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

    /// The object's ACL (grants and owner), when its bucket keeps ACLs (a copy would reset
    /// the grants and change the owner).
    async fn acl_of(&self, o: &ObjectStep) -> Result<Option<Grants>, ProviderError> {
        if !o.acls {
            return Ok(None);
        }
        retried(&self.policy, self.pacer, || {
            self.s3.object_grants(&o.bucket, &o.key)
        })
        .await
        .0
        .map(Some)
    }

    /// Whether the object (whose ACL `acl` is) is owned by another account than its bucket:
    /// an in-place copy would make the copier its owner and take it from them.
    async fn foreign_owner(
        &self,
        o: &ObjectStep,
        acl: &Grants,
    ) -> Result<Option<String>, ProviderError> {
        let bucket = retried(&self.policy, self.pacer, || self.s3.bucket_owner(&o.bucket))
            .await
            .0?;
        Ok(acl
            .owner
            .clone()
            .filter(|owner| bucket.as_ref() != Some(owner)))
    }

    /// Abort an upload this step journaled and no longer needs (it holds no object).
    async fn abort_upload(&self, o: &ObjectStep, upload: Option<&MultipartProgress>) {
        if let Some(u) = upload {
            let _ = retried(&self.policy, self.pacer, || {
                self.s3.abort_multipart(&o.bucket, &o.key, &u.upload_id)
            })
            .await;
        }
    }

    // ---- bucket default --------------------------------------------------------------

    async fn run_bucket(
        &self,
        bucket: &str,
        target: &S3Encryption,
        ctx: RunCtx<'_>,
    ) -> StepOutcome {
        let current = match retried(&self.policy, self.pacer, || self.s3.bucket_default(bucket))
            .await
            .0
        {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        // The rule as it was when the intent was journaled (what undo restores).
        let previous = ctx
            .undo
            .and_then(|u| serde_json::from_str::<BucketUndo>(u).ok())
            .map(|u| u.previous);
        let want = bucket_target(target, previous.as_ref().unwrap_or(&current));
        if same_rule(&current, &want) {
            // Set by rekey's own earlier attempt (a resumed step), or by another writer.
            return StepOutcome::Succeeded {
                result: json(&BucketResult {
                    rule: want,
                    by_rekey: ctx.resumed,
                }),
                note: Some("the rule was already set".into()),
            };
        }
        if let Some(previous) = previous.filter(|p| !same_rule(&current, p)) {
            return StepOutcome::Drifted {
                reason: format!(
                    "the default rule changed since rekey read it (now {}, was {}): left as it is; plan again",
                    describe_rule(&current),
                    describe_rule(&previous)
                ),
            };
        }
        let result = json(&BucketResult {
            rule: want.clone(),
            by_rekey: true,
        });
        // PutBucketEncryption takes no condition: before sending it again after a lost
        // answer, read the rule; another writer's change since is not overwritten.
        let first = std::sync::atomic::AtomicBool::new(true);
        let seen = current.clone();
        let r = retried(&self.policy, self.pacer, || async {
            if !first.swap(false, std::sync::atomic::Ordering::Relaxed) {
                let now = self.s3.bucket_default(bucket).await?;
                if same_rule(&now, &want) {
                    return Ok(true);
                }
                if !same_rule(&now, &seen) {
                    return Ok(false);
                }
            }
            self.s3
                .set_bucket_default(bucket, &want)
                .await
                .map(|()| true)
        })
        .await
        .0;
        match r {
            Ok(true) => StepOutcome::Succeeded { result, note: None },
            Ok(false) => StepOutcome::Drifted {
                reason: "the default rule changed while rekey set it: left as it is; plan again"
                    .into(),
            },
            Err(e) => failed(e),
        }
    }

    async fn undo_bucket(
        &self,
        bucket: &str,
        target: &S3Encryption,
        ctx: UndoCtx<'_>,
    ) -> UndoOutcome {
        let Some(u) = ctx
            .undo
            .and_then(|u| serde_json::from_str::<BucketUndo>(u).ok())
        else {
            return UndoOutcome::Failed {
                reason: "the journal holds no previous rule for this bucket".into(),
            };
        };
        let recorded = ctx
            .result
            .and_then(|r| serde_json::from_str::<BucketResult>(r).ok());
        let by_rekey = recorded.as_ref().is_none_or(|r| r.by_rekey);
        let ours = recorded
            .map(|r| r.rule)
            .unwrap_or_else(|| bucket_target(target, &u.previous));
        let current = match retried(&self.policy, self.pacer, || self.s3.bucket_default(bucket))
            .await
            .0
        {
            Ok(c) => c,
            Err(e) => {
                return UndoOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        if same_rule(&current, &u.previous) {
            return UndoOutcome::Undone {
                note: Some(
                    if ctx.succeeded {
                        "already on its previous rule"
                    } else {
                        "the step had not taken effect"
                    }
                    .into(),
                ),
            };
        }
        if !by_rekey {
            return UndoOutcome::Conflict {
                reason: "another writer set this rule, not rekey: left alone".into(),
            };
        }
        if !same_rule(&current, &ours) {
            return UndoOutcome::Conflict {
                reason: format!(
                    "the default rule changed since apply (now {}; apply set {}): left alone",
                    describe_rule(&current),
                    describe_rule(&ours)
                ),
            };
        }
        let first = std::sync::atomic::AtomicBool::new(true);
        let r = retried(&self.policy, self.pacer, || async {
            if !first.swap(false, std::sync::atomic::Ordering::Relaxed) {
                let now = self.s3.bucket_default(bucket).await?;
                if same_rule(&now, &u.previous) {
                    return Ok(true);
                }
                if !same_rule(&now, &ours) {
                    return Ok(false);
                }
            }
            self.s3
                .set_bucket_default(bucket, &u.previous)
                .await
                .map(|()| true)
        })
        .await
        .0;
        match r {
            Ok(true) => UndoOutcome::Undone { note: None },
            Ok(false) => UndoOutcome::Conflict {
                reason: "the default rule changed while rekey restored it: left alone".into(),
            },
            Err(e) => UndoOutcome::Failed {
                reason: e.to_string(),
            },
        }
    }

    // ---- objects -----------------------------------------------------------------------

    /// Which version of the object rekey's write made, when a write may have landed unseen (a
    /// crash, a lost answer) and the object is on the team key; `None`: not rekey's, so
    /// rollback leaves it alone (docs/apply-engine.md, "Whose write is it?").
    /// - A multipart copy: its completed ETag is known in advance (`expected`).
    /// - UpdateObjectEncryption keeps the ETag: the planned ETag means the planned content.
    /// - A copy in a versioned bucket: the version right after the newest version not on the
    ///   team key (the planned one, or the copy a rollback made), if it has that version's
    ///   content (ETag, else a comparable checksum, else the size).
    /// - A copy in an unversioned bucket keeps no history: taken as rekey's (its bytes are
    ///   the same either way).
    async fn attribute(
        &self,
        o: &ObjectStep,
        current: &ObjectHead,
        expected: Option<&str>,
    ) -> Result<Option<Written>, ProviderError> {
        let target = o.target();
        if o.kind() == StepKind::UpdateEncryption {
            return Ok((current.etag == o.etag).then(|| written_of(current)));
        }
        if expected == Some(current.etag.as_str()) {
            return Ok(Some(written_of(current)));
        }
        if o.version_id.is_none() {
            if expected.is_some() {
                // The completion's ETag is known, and this is not it.
                return Ok(None);
            }
            return Ok(Some(written_of(current)));
        }
        let versions = retried(&self.policy, self.pacer, || {
            self.s3.key_versions(&o.bucket, &o.key)
        })
        .await
        .0?;
        // Newest first: rekey's copy sits right after the newest version not on the team key.
        let mut heads: Vec<(String, String, ObjectHead)> = Vec::new();
        let mut base = None;
        for (vid, etag) in versions.iter().take(16) {
            let h = self.head(o, Some(vid)).await?;
            if !same_key(&h.encryption, &target) {
                base = Some((vid.clone(), etag.clone(), h));
                break;
            }
            heads.push((vid.clone(), etag.clone(), h));
        }
        let (Some((base_vid, base_etag, _)), Some((vid, etag, _))) = (base, heads.last()) else {
            return Ok(None);
        };
        let same_content = if let Some(e) = expected {
            etag == e
        } else if *etag == base_etag || *etag == o.etag {
            true
        } else {
            let sum = |v: String| async move {
                retried(&self.policy, self.pacer, || {
                    self.s3.content_checksum(&o.bucket, &o.key, Some(&v))
                })
                .await
                .0
            };
            let comparable = |c: &Option<String>| c.as_ref().is_some_and(|c| !c.contains('-'));
            let (a, b) = (sum(base_vid).await?, sum(vid.clone()).await?);
            if comparable(&a)
                && comparable(&b)
                && a.as_ref().map(|x| x.split(':').next())
                    == b.as_ref().map(|x| x.split(':').next())
            {
                a == b
            } else {
                // Nothing to tell them apart by (no comparable checksum, an ETag S3 does not
                // keep): not taken as rekey's. Rollback then leaves it and says so (I1 before
                // I3: a reported conflict, never another writer's version made non-current).
                false
            }
        };
        Ok(same_content.then(|| Written {
            etag: etag.clone(),
            version_id: Some(vid.clone()),
        }))
    }

    /// Whether `current`, the current version of a key whose version `planned` was re-keyed
    /// in place, is the copy back an earlier rollback sent and journaled (`CopyBack`, or a
    /// multipart upload of the undo) but could not journal the end of: it sits right above
    /// `planned`, on the original encryption, with the ETag that copy gives (the planned
    /// ETag, or the undo upload's). Anything else is another writer's, left alone.
    async fn own_copy_back(
        &self,
        o: &ObjectStep,
        current: &ObjectHead,
        planned: &str,
        progress: Option<&str>,
    ) -> Result<bool, ProviderError> {
        let marked = progress
            .and_then(|p| serde_json::from_str::<CopyBack>(p).ok())
            .is_some_and(|m| m.copy_back_over == planned);
        let expected = match upload_of(progress).filter(|u| u.undo) {
            Some(u) => u.expected_etag,
            None if marked => Some(o.etag.clone()),
            None => None,
        };
        if expected.as_deref() != Some(current.etag.as_str()) || !on_original(o, current) {
            return Ok(false);
        }
        let versions = retried(&self.policy, self.pacer, || {
            self.s3.key_versions(&o.bucket, &o.key)
        })
        .await
        .0?;
        Ok(matches!(
            versions.as_slice(),
            [(top, _), (below, _), ..]
                if Some(top.as_str()) == current.version_id.as_deref() && below == planned
        ))
    }

    /// The outcome when rekey's write may have landed unseen and the object is on the team
    /// key: rekey's own version if it can tell it, else another writer's (left alone).
    async fn found_after(
        &self,
        o: &ObjectStep,
        h: &ObjectHead,
        note: &str,
        expected: Option<&str>,
    ) -> StepOutcome {
        match self.attribute(o, h, expected).await {
            Ok(Some(w)) => StepOutcome::Succeeded {
                result: json(&ObjectResult {
                    by_rekey: true,
                    note: (w.version_id != h.version_id)
                        .then(|| "a newer write followed rekey's".to_string()),
                    written: w,
                }),
                note: Some(note.to_string()),
            },
            Ok(None) => found(h, false, "already on the team key"),
            Err(e) => failed(e),
        }
    }

    /// After a refused or uncertain write: the object on the team key is done; anything else
    /// is drift, left as the writer left it. `uncertain`: an earlier attempt of rekey's own
    /// write may have landed (a lost answer, a crash).
    async fn settle(&self, o: &ObjectStep, uncertain: bool, why: &str) -> StepOutcome {
        match self.head(o, o.addressed_version()).await {
            Ok(h) if same_key(&h.encryption, &o.target()) => {
                if uncertain {
                    self.found_after(o, &h, "on the team key after a retried write", None)
                        .await
                } else {
                    found(&h, false, "already on the team key")
                }
            }
            Ok(h) => StepOutcome::Drifted {
                reason: format!(
                    "{why}: ETag is now {} (planned {}), encryption {}; left as written",
                    h.etag,
                    o.etag,
                    describe_rule(&h.encryption)
                ),
            },
            Err(ProviderError::NotFound { .. }) => vanished(),
            Err(e) => failed(e),
        }
    }

    async fn run_object(&self, o: &ObjectStep, ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        match o.kind() {
            StepKind::UpdateEncryption => self.run_update(o, ctx).await,
            _ => self.run_copy(o, ctx).await,
        }
    }

    async fn run_copy(&self, o: &ObjectStep, ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        let target = o.target();
        // An upload an interrupted rollback's copy back left behind holds no object: abort it.
        if let Some(u) = upload_of(ctx.progress).filter(|u| u.undo) {
            self.abort_upload(o, Some(&u)).await;
        }
        let upload = upload_of(ctx.progress).filter(|u| !u.undo);
        if ctx.resumed {
            // The step may have taken effect before the crash: check before doing it again.
            match self.head(o, None).await {
                Ok(h) if same_key(&h.encryption, &target) => {
                    self.abort_upload(o, upload.as_ref()).await;
                    let expected = upload.as_ref().and_then(|u| u.expected_etag.clone());
                    return (
                        self.found_after(o, &h, "found done on resume", expected.as_deref())
                            .await,
                        0,
                    );
                }
                Err(ProviderError::NotFound { .. }) => {
                    self.abort_upload(o, upload.as_ref()).await;
                    return (vanished(), 0);
                }
                _ => {}
            }
        }
        // Where something can change the object without changing its ETag (a lifecycle
        // transition of its storage class, a website's redirect), the object is read first:
        // the copy names both, and must not revert such a change. A newer write (another ETag)
        // is settled without a copy. Elsewhere the plan's values stand, and the guards cover
        // every change that moves the ETag.
        let planned = ObjectHead {
            etag: o.etag.clone(),
            storage_class: o.storage_class.clone(),
            website_redirect: o.website_redirect.clone(),
            ..Default::default()
        };
        let read = if o.recheck || o.kind() == StepKind::MultipartCopy {
            self.head(o, None).await
        } else {
            Ok(planned)
        };
        let now = match read {
            Ok(h) if h.etag != o.etag || same_key(&h.encryption, &target) => {
                return (
                    self.settle(o, ctx.resumed, "changed since planned").await,
                    0,
                )
            }
            Ok(h) => h,
            Err(ProviderError::NotFound { .. }) => return (vanished(), 0),
            Err(e) => return (failed(e), 0),
        };
        let archived = matches!(now.storage_class.as_str(), "GLACIER" | "DEEP_ARCHIVE")
            || matches!(
                now.archive_status.as_deref(),
                Some("ARCHIVE_ACCESS" | "DEEP_ARCHIVE_ACCESS")
            );
        if archived {
            return (
                StepOutcome::Drifted {
                    reason: format!(
                        "archived since planned ({}): a copy needs a restore; left as it is",
                        now.archive_status.as_deref().unwrap_or(&now.storage_class)
                    ),
                },
                0,
            );
        }
        let acl = match self.acl_of(o).await {
            Ok(a) => a,
            Err(ProviderError::NotFound { .. }) => {
                return (
                    self.settle(o, ctx.resumed, "changed since planned").await,
                    0,
                )
            }
            Err(e) => return (failed(e), 0),
        };
        let owner = match &acl {
            Some(a) => self.foreign_owner(o, a).await,
            None => Ok(None),
        };
        match owner {
            Ok(None) => {}
            Ok(Some(owner)) => {
                return (
                    StepOutcome::Drifted {
                        reason: format!(
                            "owned by another account (canonical id {owner}) than the bucket's: an in-place copy would take the object from it; left as it is (its owner can re-key it)"
                        ),
                    },
                    0,
                )
            }
            Err(ProviderError::NotFound { .. }) => {
                return (
                    self.settle(o, ctx.resumed, "changed since planned").await,
                    0,
                )
            }
            Err(e) => return (failed(e), 0),
        }
        let grants = acl.filter(|g| !g.is_empty());
        let req = CopyInPlace {
            bucket: &o.bucket,
            key: &o.key,
            if_match: &o.etag,
            target: &target,
            storage_class: &now.storage_class,
            size: o.size,
            website_redirect: now.website_redirect.as_deref(),
            grants: grants.as_ref(),
        };
        let (res, uncertain, retries) = if o.kind() == StepKind::MultipartCopy {
            self.multipart(o, &req, upload, ctx.saver, false).await
        } else {
            let (r, a) = self
                .once(o, &req, false, || self.s3.copy_in_place(&req))
                .await;
            (r, a.retries > 0, a.retries)
        };
        let uncertain = uncertain || ctx.resumed;
        let outcome = match res {
            Ok(written) => StepOutcome::Succeeded {
                result: json(&ObjectResult {
                    written,
                    by_rekey: true,
                    note: None,
                }),
                note: None,
            },
            Err(
                ProviderError::Precondition { .. }
                | ProviderError::NotFound { .. }
                | ProviderError::Conflict { .. },
            ) => self.settle(o, uncertain, "changed since planned").await,
            // S3 refuses to copy an object onto itself when nothing changes: when a step
            // runs again after it took effect, that refusal means it is done.
            Err(e @ ProviderError::Invalid { .. }) => match self.head(o, None).await {
                Ok(h) if same_key(&h.encryption, &target) => {
                    found(&h, uncertain, "already on the team key")
                }
                _ => failed(e),
            },
            Err(e) => failed(e),
        };
        (outcome, retries)
    }

    /// Send a write (guarded; a race may be sent again) with retries, but never twice once it
    /// landed: before each retry the object is read, and if it is already on the target
    /// encryption (an earlier attempt whose answer was lost, or another writer), the write
    /// stops there and the caller settles whose it is.
    async fn once<F, Fut>(
        &self,
        o: &ObjectStep,
        req: &CopyInPlace<'_>,
        undo: bool,
        write: F,
    ) -> (Result<Written, ProviderError>, crate::retry::Attempts)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Written, ProviderError>>,
    {
        let first = std::sync::atomic::AtomicBool::new(true);
        retried_guarded(&self.policy, self.pacer, || async {
            if !first.swap(false, std::sync::atomic::Ordering::Relaxed) {
                // Grants change without changing the ETag: a retry must not apply stale ones.
                if o.acls {
                    let now = self.s3.object_grants(&o.bucket, &o.key).await?;
                    let same = match req.grants {
                        Some(g) => now.same_grants(g),
                        None => now.is_empty(),
                    };
                    if !same {
                        return Err(ProviderError::Precondition { what: o.url() });
                    }
                }
                if let Ok(h) = self.s3.head_object(&o.bucket, &o.key, None).await {
                    if undo
                        && h.encryption.algorithm == req.target.algorithm
                        && !same_key(&h.encryption, &o.target())
                    {
                        // The copy back landed, its answer lost.
                        return Ok(written_of(&h));
                    }
                    if !undo && same_key(&h.encryption, req.target) {
                        // Settled by the caller, which tells whose version it is.
                        return Err(ProviderError::Precondition { what: o.url() });
                    }
                }
            }
            write().await
        })
        .await
    }

    /// A multipart copy onto itself: resume the journaled upload part-wise or start one,
    /// copy the missing parts concurrently (each with its own retries), then complete it
    /// guarded by `If-Match`. Returns the result, whether an earlier attempt of the completion
    /// may have landed, and the retries.
    async fn multipart(
        &self,
        o: &ObjectStep,
        req: &CopyInPlace<'_>,
        journaled: Option<MultipartProgress>,
        saver: &ProgressHandle,
        undo: bool,
    ) -> (Result<Written, ProviderError>, bool, u32) {
        let mut journaled = journaled;
        let mut retries = 0;
        let mut restarts = 0;
        let mut tags: Option<String> = None;
        loop {
            // The upload: the journaled one if it still exists, else a new one, journaled
            // before any part is copied into it.
            let resumed = match journaled.take() {
                Some(u) => match retried(&self.policy, self.pacer, || {
                    self.s3.list_parts(req.bucket, req.key, &u.upload_id)
                })
                .await
                .0
                {
                    Ok(parts) => {
                        tags = u.tags.clone();
                        Some((u.upload_id, parts))
                    }
                    Err(ProviderError::NotFound { .. }) => None,
                    Err(e) => return (Err(e), false, retries),
                },
                None => None,
            };
            let (upload_id, mut parts) = match resumed {
                Some(r) => r,
                None => {
                    let (t, a) = retried(&self.policy, self.pacer, || {
                        self.s3.object_tagging(req.bucket, req.key)
                    })
                    .await;
                    retries += a.retries;
                    tags = match t {
                        Ok(t) => Some(t),
                        Err(e) => return (Err(e), false, retries),
                    };
                    let (r, a) =
                        retried(&self.policy, self.pacer, || self.s3.start_multipart(req)).await;
                    retries += a.retries;
                    let id = match r {
                        Ok(id) => id,
                        Err(e) => return (Err(e), false, retries),
                    };
                    let progress = json(&MultipartProgress {
                        upload_id: id.clone(),
                        undo,
                        expected_etag: None,
                        tags: tags.clone(),
                    })
                    .unwrap_or_default();
                    if let Err(e) = saver.save(progress).await {
                        let _ = self.s3.abort_multipart(req.bucket, req.key, &id).await;
                        return (
                            Err(ProviderError::Other {
                                what: o.url(),
                                detail: format!("could not journal the upload: {e}"),
                            }),
                            false,
                            retries,
                        );
                    }
                    (id, Vec::new())
                }
            };
            let missing: Vec<(i32, u64, u64)> = part_ranges(req.size, o.part_size)
                .into_iter()
                .filter(|(n, _, _)| !parts.iter().any(|p| p.number == *n))
                .collect();
            let copied: Vec<(Result<CopiedPart, ProviderError>, u32)> =
                futures::stream::iter(missing)
                    .map(|(n, first, last)| {
                        let upload_id = &upload_id;
                        async move {
                            let _slot = self.part_slots.acquire().await;
                            let (r, a) = retried(&self.policy, self.pacer, || {
                                self.s3.copy_part(req, upload_id, n, first, last)
                            })
                            .await;
                            (r, a.retries)
                        }
                    })
                    .buffer_unordered(PARTS_PER_STEP)
                    .collect()
                    .await;
            let mut changed = false;
            let mut gone = false;
            for (r, a) in copied {
                retries += a;
                match r {
                    Ok(p) => parts.push(p),
                    Err(ProviderError::Precondition { .. }) => changed = true,
                    Err(ProviderError::NotFound { .. }) => gone = true,
                    // The upload stays journaled: the next run copies the parts still missing.
                    Err(e) => return (Err(e), false, retries),
                }
            }
            if gone && !changed {
                // The object, or the upload (a lifecycle rule aborts incomplete uploads): the
                // object still on the planned ETag means the upload went; start over.
                match self.head(o, None).await {
                    Ok(h) if h.etag == req.if_match && restarts < MAX_RESTARTS => {
                        let _ = self
                            .s3
                            .abort_multipart(req.bucket, req.key, &upload_id)
                            .await;
                        restarts += 1;
                        continue;
                    }
                    _ => changed = true,
                }
            }
            if changed {
                let _ = self
                    .s3
                    .abort_multipart(req.bucket, req.key, &upload_id)
                    .await;
                return (
                    Err(ProviderError::Precondition { what: o.url() }),
                    false,
                    retries,
                );
            }
            // Tags and ACL grants change without changing the ETag: a change made while the
            // parts were copied would be overwritten by the completion. Left as written.
            let tags_now = retried(&self.policy, self.pacer, || {
                self.s3.object_tagging(req.bucket, req.key)
            })
            .await
            .0;
            let grants_now = if o.acls {
                Some(
                    retried(&self.policy, self.pacer, || {
                        self.s3.object_grants(req.bucket, req.key)
                    })
                    .await
                    .0,
                )
            } else {
                None
            };
            let tags_moved = match (&tags_now, &tags) {
                (Ok(now), Some(then)) => now != then,
                (Err(_), _) => true,
                (Ok(_), None) => false,
            };
            let grants_moved = match grants_now {
                Some(Ok(g)) => match req.grants {
                    Some(r) => !g.same_grants(r),
                    None => !g.is_empty(),
                },
                Some(Err(_)) => true,
                None => false,
            };
            // A lifecycle transition (or a new redirect) keeps the ETag too.
            let class_moved = match self.head(o, None).await {
                Ok(h) => {
                    h.etag != req.if_match
                        || h.storage_class != req.storage_class
                        || h.website_redirect.as_deref() != req.website_redirect
                }
                Err(_) => true,
            };
            if tags_moved || grants_moved || class_moved {
                let _ = self
                    .s3
                    .abort_multipart(req.bucket, req.key, &upload_id)
                    .await;
                return (
                    Err(ProviderError::Precondition { what: o.url() }),
                    false,
                    retries,
                );
            }
            // What the completed object's ETag will be, journaled first: after a crash it tells
            // rekey's object from another writer's.
            let expected = multipart_etag(&parts);
            if expected.is_some() {
                let progress = json(&MultipartProgress {
                    upload_id: upload_id.clone(),
                    undo,
                    expected_etag: expected.clone(),
                    tags: tags.clone(),
                })
                .unwrap_or_default();
                if let Err(e) = saver.save(progress).await {
                    return (
                        Err(ProviderError::Other {
                            what: o.url(),
                            detail: format!("could not journal the upload: {e}"),
                        }),
                        false,
                        retries,
                    );
                }
            }
            // Complete is not sent again on a race (409), only after a lost answer, and only
            // if the object shows it did not land.
            let first = std::sync::atomic::AtomicBool::new(true);
            let (r, a) = retried(&self.policy, self.pacer, || async {
                if !first.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(h) = self.s3.head_object(req.bucket, req.key, None).await {
                        if same_key(&h.encryption, req.target) {
                            if expected.as_deref() == Some(h.etag.as_str()) {
                                return Ok(written_of(&h));
                            }
                            // Settled by the caller, which tells whose version it is.
                            return Err(ProviderError::Precondition { what: o.url() });
                        }
                    }
                }
                self.s3.complete_multipart(req, &upload_id, &parts).await
            })
            .await;
            retries += a.retries;
            let uncertain = a.retries > 0;
            match r {
                Ok(w) => return (Ok(w), uncertain, retries),
                // A race with another write: never send Complete again; start over, held to
                // the same ETag (a changed object then fails the first guard).
                Err(ProviderError::Conflict { .. }) if restarts < MAX_RESTARTS => {
                    let _ = self
                        .s3
                        .abort_multipart(req.bucket, req.key, &upload_id)
                        .await;
                    restarts += 1;
                }
                Err(e @ ProviderError::Precondition { .. }) => {
                    let _ = self
                        .s3
                        .abort_multipart(req.bucket, req.key, &upload_id)
                        .await;
                    return (Err(e), uncertain, retries);
                }
                Err(e) => return (Err(e), uncertain, retries),
            }
        }
    }

    async fn run_update(&self, o: &ObjectStep, ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        let target = o.target();
        let version = o.version_id.as_deref();
        // Unversioned: UpdateObjectEncryption takes no condition, so read the ETag first and
        // re-key only the planned write. Versioned: the call is pinned to the planned version.
        if ctx.resumed || version.is_none() {
            match self.head(o, version).await {
                Ok(h) if same_key(&h.encryption, &target) => {
                    // UpdateObjectEncryption keeps the ETag: on a resume, the planned ETag
                    // on the team key is rekey's re-key; any other ETag is another write.
                    let ours = ctx.resumed && h.etag == o.etag;
                    let note = if ours {
                        "found done on resume"
                    } else {
                        "already on the team key"
                    };
                    return (found(&h, ours, note), 0);
                }
                Ok(h) if version.is_none() && h.etag != o.etag => {
                    return (
                        StepOutcome::Drifted {
                            reason: format!(
                            "changed since planned: ETag is now {} (planned {}); left as written",
                            h.etag, o.etag
                        ),
                        },
                        0,
                    )
                }
                Err(ProviderError::NotFound { .. }) => {
                    return (
                        StepOutcome::Vanished {
                            reason: "the object (or its planned version) no longer exists: nothing to re-key".into(),
                        },
                        0,
                    )
                }
                Err(e) => return (failed(e), 0),
                Ok(_) => {}
            }
        }
        let (r, a) = retried(&self.policy, self.pacer, || {
            self.s3
                .update_encryption(&o.bucket, &o.key, version, &o.to_key_arn, true)
        })
        .await;
        let outcome = match r {
            Ok(()) => StepOutcome::Succeeded {
                result: json(&ObjectResult {
                    written: Written {
                        etag: o.etag.clone(),
                        version_id: o.version_id.clone(),
                    },
                    by_rekey: true,
                    note: None,
                }),
                note: None,
            },
            Err(ProviderError::NotFound { .. }) => StepOutcome::Vanished {
                reason: "the object (or its planned version) no longer exists: nothing to re-key"
                    .into(),
            },
            Err(e @ ProviderError::Invalid { .. }) => match self.head(o, version).await {
                Ok(h) if same_key(&h.encryption, &target) => {
                    found(&h, a.retries > 0 || ctx.resumed, "already on the team key")
                }
                _ => failed(e),
            },
            Err(e) => failed(e),
        };
        (outcome, a.retries)
    }

    async fn undo_object(&self, o: &ObjectStep, ctx: UndoCtx<'_>) -> UndoOutcome {
        // An upload an interrupted apply left behind holds no object: abort it.
        let upload = upload_of(ctx.progress);
        if let Some(u) = upload.as_ref().filter(|u| !u.undo) {
            self.abort_upload(o, Some(u)).await;
        }
        let original = o.original();
        let version = o.addressed_version();
        let head = match self.head(o, version).await {
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
        if on_original(o, &head) {
            return UndoOutcome::Undone {
                note: Some(
                    if ctx.succeeded {
                        "already on its original encryption"
                    } else {
                        "the step had not taken effect"
                    }
                    .into(),
                ),
            };
        }
        let ours: Option<ObjectResult> = ctx.result.and_then(|r| serde_json::from_str(r).ok());
        if ours.as_ref().is_some_and(|r| !r.by_rekey) {
            return UndoOutcome::Conflict {
                reason: "another writer put it on the team key, not rekey: left alone".into(),
            };
        }
        if !same_key(&head.encryption, &o.target()) {
            return UndoOutcome::Conflict {
                reason: format!(
                    "changed since apply (now {}): left alone",
                    describe_rule(&head.encryption)
                ),
            };
        }
        match &ours {
            Some(r) => {
                let other_version = r.written.version_id.is_some()
                    && head.version_id.is_some()
                    && head.version_id != r.written.version_id;
                if head.etag != r.written.etag || other_version {
                    return UndoOutcome::Conflict {
                        reason: format!(
                            "written since apply (ETag {}, apply wrote {}): left alone",
                            head.etag, r.written.etag
                        ),
                    };
                }
            }
            None if ctx.succeeded && o.job.is_none() => {
                return UndoOutcome::Failed {
                    reason: "the journal holds no result for this step".into(),
                }
            }
            // Started or failed, and found on the team key: rekey's write landed before the
            // journal could say so, if the version is rekey's (another writer's is left
            // alone). A batch copy's report tells no ETag: the same question. The copy back
            // below is still held to the ETag just read.
            None => match self
                .attribute(
                    o,
                    &head,
                    upload
                        .as_ref()
                        .filter(|u| !u.undo)
                        .and_then(|u| u.expected_etag.as_deref()),
                )
                .await
            {
                Ok(Some(w)) if w.version_id == head.version_id || w.version_id.is_none() => {}
                Ok(_) => {
                    return UndoOutcome::Conflict {
                        reason: "written since by another writer: left alone".into(),
                    }
                }
                Err(e) => {
                    return UndoOutcome::Failed {
                        reason: e.to_string(),
                    }
                }
            },
        }
        let archived = matches!(head.storage_class.as_str(), "GLACIER" | "DEEP_ARCHIVE")
            || matches!(
                head.archive_status.as_deref(),
                Some("ARCHIVE_ACCESS" | "DEEP_ARCHIVE_ACCESS")
            );
        let update_back = o.kind() == StepKind::UpdateEncryption
            && original.algorithm == "aws:kms"
            && o.from_key_arn.is_some();
        if update_back {
            let arn = o.from_key_arn.clone().unwrap_or_default();
            return match retried(&self.policy, self.pacer, || {
                self.s3
                    .update_encryption(&o.bucket, &o.key, version, &arn, o.from_bucket_key)
            })
            .await
            .0
            {
                Ok(()) => UndoOutcome::Undone { note: None },
                Err(e) => UndoOutcome::Failed {
                    reason: e.to_string(),
                },
            };
        }
        if archived {
            return UndoOutcome::Failed {
                reason: format!(
                    "archived ({}): UpdateObjectEncryption cannot return it to SSE-S3 and a copy needs a restore; restore it, then roll back again",
                    head.archive_status.as_deref().unwrap_or(&head.storage_class)
                ),
            };
        }
        if o.kind() == StepKind::UpdateEncryption && !o.latest {
            return UndoOutcome::Failed {
                reason: "noncurrent version: UpdateObjectEncryption cannot return it to SSE-S3, and a copy would make it current; it stays on the team key".into(),
            };
        }
        if let Some(planned) = version {
            // The copy back writes the current version: only if it is still the one re-keyed.
            match self.head(o, None).await {
                Ok(c) if c.version_id.as_deref() == version => {}
                Ok(c) => {
                    match self.own_copy_back(o, &c, planned, ctx.progress).await {
                        Ok(true) => {
                            return UndoOutcome::Undone {
                                note: Some(format!(
                                    "the copy back landed before the journal could say so; version {planned} itself stays on the team key"
                                )),
                            }
                        }
                        Ok(false) => {}
                        Err(e) => {
                            return UndoOutcome::Failed {
                                reason: e.to_string(),
                            }
                        }
                    }
                    return UndoOutcome::Conflict {
                        reason: format!(
                            "a newer version ({}) was written since apply: left alone",
                            c.version_id.unwrap_or_default()
                        ),
                    };
                }
                Err(e) => {
                    return UndoOutcome::Failed {
                        reason: e.to_string(),
                    }
                }
            }
            let mark = json(&CopyBack {
                copy_back_over: planned.to_string(),
            });
            if let Err(e) = ctx.saver.save(mark.unwrap_or_default()).await {
                return UndoOutcome::Failed { reason: e };
            }
        }
        let acl = match self.acl_of(o).await {
            Ok(a) => a,
            Err(e) => {
                return UndoOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        if let Some(a) = &acl {
            match self.foreign_owner(o, a).await {
                Ok(None) => {}
                Ok(Some(owner)) => {
                    return UndoOutcome::Conflict {
                        reason: format!(
                            "owned by another account (canonical id {owner}): a copy back would take the object from it; left on the team key"
                        ),
                    }
                }
                Err(e) => {
                    return UndoOutcome::Failed {
                        reason: e.to_string(),
                    }
                }
            }
        }
        let grants = acl.filter(|g| !g.is_empty());
        let req = CopyInPlace {
            bucket: &o.bucket,
            key: &o.key,
            if_match: &head.etag,
            target: &original,
            storage_class: &head.storage_class,
            size: head.size,
            website_redirect: head.website_redirect.as_deref(),
            grants: grants.as_ref(),
        };
        let res = if head.size > COPY_LIMIT || o.kind() == StepKind::MultipartCopy {
            let journaled = upload.filter(|u| u.undo);
            self.multipart(o, &req, journaled, ctx.saver, true).await.0
        } else {
            self.once(o, &req, true, || self.s3.copy_in_place(&req))
                .await
                .0
        };
        match res {
            Ok(_) if version.is_some() => UndoOutcome::Undone {
                note: Some(format!(
                    "copied back as a new current version on {}; version {} itself stays on the team key (UpdateObjectEncryption cannot return a version to SSE-S3)",
                    original.algorithm,
                    version.unwrap_or_default()
                )),
            },
            Ok(_) => UndoOutcome::Undone { note: None },
            Err(
                ProviderError::Precondition { .. }
                | ProviderError::Conflict { .. }
                | ProviderError::NotFound { .. },
            ) => UndoOutcome::Conflict {
                reason: "written since apply: left alone".into(),
            },
            Err(e) => UndoOutcome::Failed {
                reason: e.to_string(),
            },
        }
    }
}

impl<S: S3Write + KeyRead + SageMakerApi> StepRunner for S3Steps<'_, S> {
    async fn prepare(&self, spec: &StepSpec) -> Result<Option<String>, ProviderError> {
        match spec {
            StepSpec::BucketDefault { bucket, .. } => {
                let previous = retried(&self.policy, self.pacer, || self.s3.bucket_default(bucket))
                    .await
                    .0?;
                Ok(json(&BucketUndo { previous }))
            }
            StepSpec::Object(o) => Ok(o.undo_data()),
            StepSpec::Endpoint { name, .. } => self.prepare_endpoint(name).await,
            StepSpec::BatchJob(_) => Ok(None),
            StepSpec::GcsBucketDefault { .. } => Err(ProviderError::Other {
                what: "step".into(),
                detail: "a Cloud Storage step reached the AWS runner".into(),
            }),
        }
    }

    async fn run(&self, spec: &StepSpec, ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        match spec {
            StepSpec::BucketDefault { bucket, target, .. } => {
                (self.run_bucket(bucket, target, ctx).await, 0)
            }
            StepSpec::Object(o) => self.run_object(o, ctx).await,
            StepSpec::Endpoint {
                name,
                from_config,
                to_config,
                key_arn,
                volume_key,
                deployment_config,
                source_sha256,
                ..
            } => (
                self.run_endpoint(super::endpoint::EndpointMove {
                    name,
                    from: from_config,
                    to: to_config,
                    key_arn,
                    volume_key,
                    deployment: deployment_config.as_ref(),
                    source_sha256: source_sha256.as_deref(),
                })
                .await,
                0,
            ),
            StepSpec::GcsBucketDefault { .. } => (
                StepOutcome::Failed {
                    reason: "a Cloud Storage step reached the AWS runner".into(),
                },
                0,
            ),
            StepSpec::BatchJob(_) => (
                StepOutcome::Failed {
                    reason: "a batch job runs in its stage's job phase, not as a step".into(),
                },
                0,
            ),
        }
    }

    async fn undo(&self, spec: &StepSpec, ctx: UndoCtx<'_>) -> UndoOutcome {
        match spec {
            StepSpec::BucketDefault { bucket, target, .. } => {
                self.undo_bucket(bucket, target, ctx).await
            }
            StepSpec::Object(o) => self.undo_object(o, ctx).await,
            StepSpec::Endpoint {
                name,
                from_config,
                to_config,
                deployment_config,
                ..
            } => {
                self.undo_endpoint(
                    name,
                    from_config,
                    to_config,
                    deployment_config.as_ref(),
                    ctx,
                )
                .await
            }
            StepSpec::GcsBucketDefault { .. } => UndoOutcome::Failed {
                reason: "a Cloud Storage step reached the AWS runner".into(),
            },
            // What a job changed is its member steps': each is undone on its own.
            StepSpec::BatchJob(_) => UndoOutcome::Undone {
                note: Some("its objects are undone one by one".into()),
            },
        }
    }

    async fn key_usable(
        &self,
        _spec: &StepSpec,
        key: &str,
    ) -> Result<Option<String>, ProviderError> {
        let k = retried(&self.policy, self.pacer, || self.s3.describe_key(key))
            .await
            .0?;
        Ok(match k {
            // The AWS-managed key appears at its first use; S3 makes it when it needs it.
            None if key == "alias/aws/s3" => None,
            None => Some(format!("{key} does not exist")),
            Some(k) if k.state != "Enabled" => Some(format!("{} is {}", k.arn, k.state)),
            Some(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_byte_once() {
        let mib = 1024 * 1024;
        let r = part_ranges(12 * mib + 1, 5 * mib);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], (1, 0, 5 * mib - 1));
        assert_eq!(r[2], (3, 10 * mib, 12 * mib));
        // Never more than 10,000 parts.
        let big = 100 * 1024 * mib * 1024;
        assert!(part_ranges(big, 5 * mib).len() <= 10_000);
    }

    #[test]
    fn a_multipart_etag_comes_from_its_parts() {
        use md5::{Digest, Md5};
        let md5 = |b: &[u8]| hex::encode(Md5::digest(b));
        let parts = [
            CopiedPart {
                number: 2,
                etag: format!("\"{}\"", md5(b"b")),
                checksum: None,
            },
            CopiedPart {
                number: 1,
                etag: format!("\"{}\"", md5(b"a")),
                checksum: None,
            },
        ];
        let mut joined = Md5::digest(b"a").to_vec();
        joined.extend(Md5::digest(b"b"));
        assert_eq!(
            multipart_etag(&parts),
            Some(format!("\"{}-2\"", md5(&joined))),
            "in part order"
        );
        let odd = [CopiedPart {
            number: 1,
            etag: "\"not-md5\"".into(),
            checksum: None,
        }];
        assert_eq!(multipart_etag(&odd), None);
    }

    #[test]
    fn a_rule_is_compared_whole() {
        let a = S3Encryption {
            algorithm: "aws:kms".into(),
            kms_key_arn: Some("arn:k".into()),
            bucket_key: true,
            blocked_types: vec!["SSE-C".into()],
            ..Default::default()
        };
        let mut b = a.clone();
        assert!(same_rule(&a, &b));
        b.blocked_types.clear();
        assert!(!same_rule(&a, &b), "blocked types are part of the rule");
        let t = bucket_target(&b, &a);
        assert_eq!(
            t.blocked_types,
            vec!["SSE-C".to_string()],
            "kept from the old rule"
        );
    }
}
