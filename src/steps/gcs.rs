//! Cloud Storage steps: a bucket's default key (a patch of that field alone), and an object
//! rewritten in place onto its key, guarded by its generation (`ifGenerationMatch` and
//! `ifSourceGenerationMatch`). Objects use `ObjectStep` with engine `gcs-rewrite`: the planned
//! generation is in `etag` (and `version_id`), the key names in the `*_key_arn` fields.

use serde::{Deserialize, Serialize};

use super::{
    json, ObjectResult, ObjectStep, RunCtx, StepOutcome, StepRunner, StepSpec, UndoCtx, UndoOutcome,
};
use crate::error::ProviderError;
use crate::providers::gcs::{GcsClient, GcsObjectInfo};
use crate::providers::Written;
use crate::retry::{retried, Pacer, RetryPolicy};

pub struct GcsSteps<'a> {
    pub gcs: &'a GcsClient,
    pub policy: RetryPolicy,
    pub pacer: &'a Pacer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct GcsBucketUndo {
    previous: Option<String>,
}

/// What a bucket step did, journaled after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct GcsBucketResult {
    /// False when another writer had already set the key: rollback leaves it alone.
    #[serde(default = "super::yes", skip_serializing_if = "super::is_true")]
    by_rekey: bool,
}

fn done(obj: &GcsObjectInfo, by_rekey: bool, note: Option<String>) -> StepOutcome {
    StepOutcome::Succeeded {
        result: json(&ObjectResult {
            written: Written {
                etag: obj.generation.to_string(),
                version_id: Some(obj.generation.to_string()),
            },
            by_rekey,
            note: note.clone(),
        }),
        note,
    }
}

/// Whether the live object is rekey's rewrite of the planned one: on the team key, with the
/// planned content (a rewrite keeps the bytes and their MD5; another write of other bytes
/// does not).
fn rewritten_by_rekey(o: &ObjectStep, c: &GcsObjectInfo) -> bool {
    c.kms_key.as_deref() == Some(o.to_key_arn.as_str())
        && o.content_hash
            .as_ref()
            .is_none_or(|h| c.content_hash.as_ref() == Some(h))
}

impl GcsSteps<'_> {
    async fn current(&self, o: &ObjectStep) -> Result<GcsObjectInfo, ProviderError> {
        retried(&self.policy, self.pacer, || {
            self.gcs.get_object(&o.bucket, &o.key, None)
        })
        .await
        .0
    }

    async fn run_object(&self, o: &ObjectStep, ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        let planned: i64 = o.etag.parse().unwrap_or(0);
        if ctx.resumed {
            if let Ok(c) = self.current(o).await {
                if c.kms_key.as_deref() == Some(o.to_key_arn.as_str()) {
                    // Rekey's rewrite, or another writer's object already on the team key.
                    let ours = rewritten_by_rekey(o, &c);
                    let note = if ours {
                        "found done on resume"
                    } else {
                        "already on the team key"
                    };
                    return (done(&c, ours, Some(note.into())), 0);
                }
            }
        }
        // The planned generation's metadata, written again field for field.
        let source = retried(&self.policy, self.pacer, || {
            self.gcs.raw_object(&o.bucket, &o.key, Some(planned))
        })
        .await
        .0;
        let (r, a) = match source {
            Ok(src) => {
                let metadata = GcsClient::rewrite_metadata(&src);
                retried(&self.policy, self.pacer, || {
                    self.gcs.rewrite_in_place(
                        &o.bucket,
                        &o.key,
                        planned,
                        Some(&o.to_key_arn),
                        &metadata,
                    )
                })
                .await
            }
            Err(e) => (Err(e), Default::default()),
        };
        let uncertain = ctx.resumed || a.retries > 0;
        let outcome = match r {
            Ok((obj, calls)) => done(
                &obj,
                true,
                (calls > 1).then(|| format!("rewritten in {calls} calls")),
            ),
            Err(ProviderError::Precondition { .. }) | Err(ProviderError::NotFound { .. }) => {
                match self.current(o).await {
                    Ok(c) if c.kms_key.as_deref() == Some(o.to_key_arn.as_str()) => done(
                        &c,
                        uncertain && rewritten_by_rekey(o, &c),
                        Some("already on the team key".into()),
                    ),
                    Ok(c) => StepOutcome::Drifted {
                        reason: format!(
                            "changed since planned: generation is now {} (planned {}); left as written",
                            c.generation, o.etag
                        ),
                    },
                    Err(ProviderError::NotFound { .. }) => StepOutcome::Vanished {
                        reason: "the object no longer exists: nothing to re-key".into(),
                    },
                    Err(e) => StepOutcome::Failed {
                        reason: e.to_string(),
                    },
                }
            }
            Err(e) => StepOutcome::Failed {
                reason: e.to_string(),
            },
        };
        (outcome, a.retries)
    }

    async fn undo_object(&self, o: &ObjectStep, ctx: UndoCtx<'_>) -> UndoOutcome {
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
                note: Some(
                    if ctx.succeeded {
                        "already on its original key"
                    } else {
                        "the step had not taken effect"
                    }
                    .into(),
                ),
            };
        }
        let ours: Option<ObjectResult> = ctx.result.and_then(|r| serde_json::from_str(r).ok());
        match &ours {
            Some(r) if !r.by_rekey => {
                return UndoOutcome::Conflict {
                    reason: "another writer put it on the team key, not rekey: left alone".into(),
                }
            }
            Some(r) if r.written.etag != c.generation.to_string() => {
                return UndoOutcome::Conflict {
                    reason: format!(
                        "written since apply (generation {}, apply wrote {}): left alone",
                        c.generation, r.written.etag
                    ),
                }
            }
            Some(_) => {}
            None if ctx.succeeded => {
                return UndoOutcome::Failed {
                    reason: "the journal holds no result for this step".into(),
                }
            }
            // Started or failed: rekey's rewrite landed if the object is on the team key with
            // the planned content.
            None if !rewritten_by_rekey(o, &c) => {
                return UndoOutcome::Conflict {
                    reason: format!(
                        "changed since apply (generation {}): left alone",
                        c.generation
                    ),
                }
            }
            None => {}
        }
        // Google-managed encryption cannot be asked for: a rewrite that names no key takes the
        // bucket's default key. While the bucket has one, the object cannot go back.
        if original.is_none() {
            match retried(&self.policy, self.pacer, || self.gcs.get_bucket(&o.bucket))
                .await
                .0
            {
                Ok(b) if b.default_kms_key.is_some() => {
                    return UndoOutcome::Failed {
                        reason: format!(
                            "its bucket's default key is {}: a rewrite would take it instead of Google-managed encryption; roll back to the checkpoint whose stage set the bucket's default (or clear it), then roll back again",
                            b.default_kms_key.unwrap_or_default()
                        ),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    return UndoOutcome::Failed {
                        reason: e.to_string(),
                    }
                }
            }
        }
        let metadata = match retried(&self.policy, self.pacer, || {
            self.gcs.raw_object(&o.bucket, &o.key, Some(c.generation))
        })
        .await
        .0
        {
            Ok(src) => {
                let mut m = GcsClient::rewrite_metadata(&src);
                // The original's class (a batch rewrite may have given it the bucket's).
                if !o.storage_class.is_empty() {
                    m["storageClass"] = serde_json::Value::String(o.storage_class.clone());
                }
                m
            }
            Err(e) => {
                return UndoOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        match retried(&self.policy, self.pacer, || {
            self.gcs.rewrite_in_place(
                &o.bucket,
                &o.key,
                c.generation,
                original.as_deref(),
                &metadata,
            )
        })
        .await
        .0
        {
            Ok((obj, _)) if obj.kms_key == original => UndoOutcome::Undone { note: None },
            Ok((obj, _)) => UndoOutcome::Failed {
                reason: format!(
                    "rewritten, but it took {} (the bucket default) instead of Google-managed encryption: restore the bucket default first",
                    obj.kms_key.unwrap_or_default()
                ),
            },
            Err(ProviderError::Precondition { .. }) => UndoOutcome::Conflict {
                reason: "written since apply: left alone".into(),
            },
            Err(e) => UndoOutcome::Failed {
                reason: e.to_string(),
            },
        }
    }

    async fn run_bucket(&self, bucket: &str, key: &str, ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        let (b, a) = retried(&self.policy, self.pacer, || self.gcs.get_bucket(bucket)).await;
        let b = match b {
            Ok(b) => b,
            Err(e) => {
                return (
                    StepOutcome::Failed {
                        reason: e.to_string(),
                    },
                    a.retries,
                )
            }
        };
        if b.default_kms_key.as_deref() == Some(key) {
            // Set by rekey's own earlier attempt (a resumed step), or by another writer.
            return (
                StepOutcome::Succeeded {
                    result: json(&GcsBucketResult {
                        by_rekey: ctx.resumed,
                    }),
                    note: Some("the default key was already set".into()),
                },
                a.retries,
            );
        }
        let previous = ctx
            .undo
            .and_then(|u| serde_json::from_str::<GcsBucketUndo>(u).ok());
        if let Some(p) = previous.filter(|p| p.previous != b.default_kms_key) {
            return (
                StepOutcome::Drifted {
                    reason: format!(
                        "the default key changed since rekey read it (now {}, was {}): left as it is; plan again",
                        b.default_kms_key.unwrap_or_else(|| "Google-managed".into()),
                        p.previous.unwrap_or_else(|| "Google-managed".into())
                    ),
                },
                a.retries,
            );
        }
        // Held to the bucket's metageneration: a change made since the read is not overwritten.
        let (r, a2) = retried(&self.policy, self.pacer, || {
            self.gcs
                .set_default_key(bucket, Some(key), Some(b.metageneration))
        })
        .await;
        let outcome = match r {
            Ok(()) => StepOutcome::Succeeded {
                result: json(&GcsBucketResult { by_rekey: true }),
                note: None,
            },
            // The bucket changed since the read: rekey's own patch whose answer was lost (a
            // retry), another writer's, or another change. Read it again.
            Err(ProviderError::Precondition { .. }) => {
                match retried(&self.policy, self.pacer, || self.gcs.get_bucket(bucket))
                    .await
                    .0
                {
                    Ok(now) if now.default_kms_key.as_deref() == Some(key) => {
                        StepOutcome::Succeeded {
                            result: json(&GcsBucketResult {
                                by_rekey: a2.retries > 0 || ctx.resumed,
                            }),
                            note: Some("the default key was already set".into()),
                        }
                    }
                    Ok(_) => StepOutcome::Drifted {
                        reason: "the bucket changed while rekey set its default key: left as it is; apply again".into(),
                    },
                    Err(e) => StepOutcome::Failed {
                        reason: e.to_string(),
                    },
                }
            }
            Err(e) => StepOutcome::Failed {
                reason: e.to_string(),
            },
        };
        (outcome, a.retries + a2.retries)
    }

    async fn undo_bucket(&self, bucket: &str, key: &str, ctx: UndoCtx<'_>) -> UndoOutcome {
        let Some(u) = ctx
            .undo
            .and_then(|u| serde_json::from_str::<GcsBucketUndo>(u).ok())
        else {
            return UndoOutcome::Failed {
                reason: "the journal holds no previous default key for this bucket".into(),
            };
        };
        let b = match retried(&self.policy, self.pacer, || self.gcs.get_bucket(bucket))
            .await
            .0
        {
            Ok(b) => b,
            Err(e) => {
                return UndoOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        };
        let now = b.default_kms_key.clone();
        if now == u.previous {
            return UndoOutcome::Undone {
                note: Some("already on its previous default key".into()),
            };
        }
        let by_rekey = ctx
            .result
            .and_then(|r| serde_json::from_str::<GcsBucketResult>(r).ok())
            .is_none_or(|r| r.by_rekey);
        if !by_rekey {
            return UndoOutcome::Conflict {
                reason: "another writer set this default key, not rekey: left alone".into(),
            };
        }
        if now.as_deref() != Some(key) {
            return UndoOutcome::Conflict {
                reason: format!(
                    "the default key changed since apply (now {}): left alone",
                    now.unwrap_or_else(|| "Google-managed".into())
                ),
            };
        }
        match retried(&self.policy, self.pacer, || {
            self.gcs
                .set_default_key(bucket, u.previous.as_deref(), Some(b.metageneration))
        })
        .await
        .0
        {
            Ok(()) => UndoOutcome::Undone { note: None },
            Err(ProviderError::Precondition { .. }) => UndoOutcome::Conflict {
                reason: "the bucket changed while rekey restored its default key: left alone"
                    .into(),
            },
            Err(e) => UndoOutcome::Failed {
                reason: e.to_string(),
            },
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
            StepSpec::BatchJob(_) => Ok(None),
            _ => Err(ProviderError::Other {
                what: "step".into(),
                detail: "not a Cloud Storage step".into(),
            }),
        }
    }

    async fn run(&self, spec: &StepSpec, ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        match spec {
            StepSpec::GcsBucketDefault { bucket, key, .. } => {
                self.run_bucket(bucket, key, ctx).await
            }
            StepSpec::Object(o) => self.run_object(o, ctx).await,
            _ => (
                StepOutcome::Failed {
                    reason: "not a Cloud Storage step".into(),
                },
                0,
            ),
        }
    }

    async fn undo(&self, spec: &StepSpec, ctx: UndoCtx<'_>) -> UndoOutcome {
        match spec {
            StepSpec::GcsBucketDefault { bucket, key, .. } => {
                self.undo_bucket(bucket, key, ctx).await
            }
            StepSpec::Object(o) => self.undo_object(o, ctx).await,
            // A job changes nothing of its own: its members are undone one by one (a job that
            // may still run was cancelled first, `GcsJobs::stop_jobs`).
            StepSpec::BatchJob(_) => UndoOutcome::Undone { note: None },
            _ => UndoOutcome::Failed {
                reason: "not a Cloud Storage step".into(),
            },
        }
    }

    async fn key_usable(
        &self,
        _spec: &StepSpec,
        _key: &str,
    ) -> Result<Option<String>, ProviderError> {
        // rekey has no Cloud KMS client yet: Cloud KMS keys are not checked.
        Ok(None)
    }
}
