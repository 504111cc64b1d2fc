//! `verify`: re-read the cloud and say whether every resource of a plan is on its team key.
//! Nothing is taken from the journal. Blocked and manual resources count as not compliant
//! (the campaign is not done while they stay on service-managed keys) unless the operator
//! asks for the planned-only view.

use std::path::Path;

use futures::StreamExt;
use serde::Serialize;

use crate::apply::{client, plan_steps, Accounts};
use crate::error::{ProviderError, RekeyError};
use crate::journal::state;
use crate::model::S3Encryption;
use crate::plan::{Action, PlanFile};
use crate::providers::gcs::GcsClient;
use crate::providers::sagemaker::SageMakerApi;
use crate::providers::{KeyRead, S3Read, S3Write};
use crate::retry::{retried, Pacer, RetryPolicy};
use crate::steps::{ObjectStep, StepKind, StepSpec};

/// One resource that is not on its team key.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Finding {
    pub target: String,
    pub expected_key_arn: String,
    pub found: String,
    /// Why rekey did not move it (blocked and manual resources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Verification {
    pub checked: u64,
    pub compliant: u64,
    /// Blocked or manual resources (counted as not compliant unless ignored).
    pub blocked: u64,
    /// Planned objects deleted since the plan: nothing left to protect.
    #[serde(skip_serializing_if = "is_zero")]
    pub vanished: u64,
    /// Resources not on their team key (blocked and manual ones included unless ignored).
    pub not_compliant: u64,
    /// How many of them are blocked or manual (they carry a reason).
    #[serde(skip)]
    pub not_compliant_blocked: u64,
    /// The first `LISTED` of them; every one goes to `findings` when it is set.
    pub non_compliant: Vec<Finding>,
    /// Where every finding is written, one JSON object per line (`verify --findings FILE`).
    #[serde(skip)]
    pub findings: Option<std::io::BufWriter<std::fs::File>>,
}

impl Verification {
    /// Findings listed in the result itself: a verification of 10^8 objects that are not
    /// moved yet must not hold them all.
    pub const LISTED: usize = 1000;

    /// A verification that writes every finding to `path` (owner-only: it names objects).
    pub fn with_findings(path: Option<&Path>) -> Result<Verification, RekeyError> {
        if let Some(p) = path {
            refuse_other_file(p)?;
        }
        Ok(Verification {
            findings: match path {
                Some(p) => Some(std::io::BufWriter::new(crate::apply::open_private(p)?)),
                None => None,
            },
            ..Default::default()
        })
    }

    /// Count a resource that is not on its team key.
    pub fn add(&mut self, f: Finding) -> Result<(), RekeyError> {
        self.not_compliant += 1;
        if f.reason.is_some() {
            self.not_compliant_blocked += 1;
        }
        if let Some(w) = self.findings.as_mut() {
            use std::io::Write;
            serde_json::to_writer(&mut *w, &f)
                .map_err(|e| RekeyError::io("writing the findings", e.into()))?;
            w.write_all(b"\n")
                .map_err(|e| RekeyError::io("writing the findings", e))?;
        }
        if self.non_compliant.len() < Self::LISTED {
            self.non_compliant.push(f);
        }
        Ok(())
    }

    /// Flush the findings file.
    pub fn finish(&mut self) -> Result<(), RekeyError> {
        use std::io::Write;
        if let Some(w) = self.findings.as_mut() {
            w.flush()
                .map_err(|e| RekeyError::io("writing the findings", e))?;
        }
        Ok(())
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The consumer graph after apply (issue 10): every principal the plan found allowed to use a
/// team key still is (evaluated again as apply does), and every replication rule of a planned
/// S3 bucket still replicates its SSE-KMS objects.
async fn verify_graph<S: S3Read + crate::providers::iam::AccessRead>(
    p: &PlanFile,
    accounts: &Accounts<S>,
    v: &mut Verification,
    (policy, pacer): (&RetryPolicy, &Pacer),
) -> Result<(), RekeyError> {
    for (_, x, now) in crate::apply::recheck_verdicts(p, accounts).await? {
        v.checked += 1;
        if now.allowed() {
            v.compliant += 1;
        } else {
            v.add(Finding {
                target: format!("key access of {} ({})", x.principal, x.role),
                expected_key_arn: x.key_arn.clone(),
                found: now.verdict.as_str().to_string(),
                reason: Some(now.summary()),
            })?;
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for st in &p.stages {
        for b in &st.buckets {
            if b.provider != crate::model::Provider::Aws
                || b.actions.is_empty()
                || !seen.insert(b.bucket.clone())
            {
                continue;
            }
            let aws = client(accounts, &b.account)?;
            let around = retried(policy, pacer, || aws.surroundings(&b.bucket))
                .await
                .0?;
            // What surrounds the bucket is what the plan judged (a plan without the
            // fingerprint judged nothing of it).
            if b.surroundings_sha256.as_deref() != Some(around.fingerprint().as_str()) {
                v.checked += 1;
                v.add(Finding {
                    target: format!("s3://{} (policy, replication or notifications)", b.bucket),
                    expected_key_arn: String::new(),
                    found: if b.surroundings_sha256.is_some() {
                        "changed since the plan"
                    } else {
                        "not judged by the plan"
                    }
                    .into(),
                    reason: Some("its readers and hazards were judged on what it was: plan again to judge what it is".into()),
                })?;
            }
            let Some(key) = b
                .key
                .as_ref()
                .and_then(|k| p.keys.get(&crate::inventory::pin_id(k, &b.account)))
            else {
                continue;
            };
            let accepted = p.stages.iter().flat_map(|s| &s.buckets).any(|x| {
                x.bucket == b.bucket
                    && x.hazards
                        .iter()
                        .any(|h| h.starts_with("replication-gap (accepted"))
            });
            if accepted {
                continue;
            }
            if around.replication.is_none() {
                continue;
            }
            v.checked += 1;
            let gaps: Vec<String> = crate::preflight::bucket_hazards(&b.bucket, &around, &key.arn)
                .into_iter()
                .filter(|h| h.hazard == crate::campaign::Hazard::ReplicationGap)
                .map(|h| h.detail)
                .collect();
            if gaps.is_empty() {
                v.compliant += 1;
            } else {
                v.add(Finding {
                    target: format!("s3://{} (replication)", b.bucket),
                    expected_key_arn: key.arn.clone(),
                    found: "replication-gap".into(),
                    reason: Some(gaps.join("; ")),
                })?;
            }
        }
    }
    Ok(())
}

/// The findings file is written over: refuse a file that is something else (a journal, a
/// plan, a manifest named by mistake), which would be lost.
fn refuse_other_file(path: &Path) -> Result<(), RekeyError> {
    use std::io::BufRead;
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut first = String::new();
    let _ = std::io::BufReader::new(f).read_line(&mut first);
    let is_findings = first.trim().is_empty()
        || serde_json::from_str::<serde_json::Value>(&first)
            .ok()
            .is_some_and(|v| v.get("target").is_some() && v.get("found").is_some());
    if is_findings {
        return Ok(());
    }
    Err(RekeyError::usage(
        format!(
            "{} exists and is not a findings file of rekey verify: writing the findings would destroy it",
            path.display()
        ),
        "name a new file (--findings plans/NAME.findings.jsonl)",
    ))
}

/// How verify reads the cloud.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub concurrency: usize,
    pub requests_per_second: u32,
    /// Count blocked and manual resources apart instead of as not compliant.
    pub ignore_blocked: bool,
    /// Write every finding here, one JSON object per line.
    pub findings: Option<std::path::PathBuf>,
}

pub fn describe(enc: &S3Encryption) -> String {
    match &enc.kms_key_arn {
        Some(k) => format!("{} {k}", enc.algorithm),
        None => enc.algorithm.clone(),
    }
}

/// Verify a plan against the cloud: every bucket default, endpoint and planned object is on
/// its team key now; blocked and manual resources are not compliant unless ignored.
pub async fn verify_plan<
    S: S3Read + S3Write + KeyRead + SageMakerApi + crate::providers::iam::AccessRead,
>(
    p: &PlanFile,
    plan_path: &Path,
    accounts: &Accounts<S>,
    gcs: Option<&GcsClient>,
    opts: &VerifyOptions,
) -> Result<Verification, RekeyError> {
    let policy = RetryPolicy::default();
    let pacer = Pacer::new(opts.requests_per_second);
    let (policy, pacer) = (&policy, &pacer);
    let mut v = Verification::with_findings(opts.findings.as_deref())?;
    let blocked = |v: &mut Verification, f: Finding| -> Result<(), RekeyError> {
        v.blocked += 1;
        if !opts.ignore_blocked {
            v.add(f)?;
        }
        Ok(())
    };
    for st in &p.stages {
        for b in &st.buckets {
            for a in &b.actions {
                let Action::SetBucketDefault { to, .. } = a else {
                    continue;
                };
                v.checked += 1;
                if b.provider == crate::model::Provider::Gcp {
                    let gcs = gcs.ok_or_else(|| {
                        RekeyError::usage(
                            "the plan has Cloud Storage buckets but no GCP project",
                            "plan again",
                        )
                    })?;
                    let now = retried(policy, pacer, || gcs.get_bucket(&b.bucket))
                        .await
                        .0?;
                    if now.default_kms_key == to.kms_key_arn {
                        v.compliant += 1;
                    } else {
                        v.add(Finding {
                            target: format!("gs://{} (bucket default)", b.bucket),
                            expected_key_arn: to.kms_key_arn.clone().unwrap_or_default(),
                            found: now
                                .default_kms_key
                                .unwrap_or_else(|| "google-managed".into()),
                            reason: None,
                        })?;
                    }
                    continue;
                }
                let aws = client(accounts, &b.account)?;
                let mut now = retried(policy, pacer, || aws.bucket_default(&b.bucket))
                    .await
                    .0?;
                if let Some(k) = now.kms_key_arn.clone() {
                    if let Some(key) = retried(policy, pacer, || aws.describe_key(&k)).await.0? {
                        now.kms_key_arn = Some(key.arn);
                    }
                }
                if now.algorithm == "aws:kms" && now.kms_key_arn == to.kms_key_arn {
                    v.compliant += 1;
                } else {
                    v.add(Finding {
                        target: format!("s3://{} (bucket default)", b.bucket),
                        expected_key_arn: to.kms_key_arn.clone().unwrap_or_default(),
                        found: describe(&now),
                        reason: None,
                    })?;
                }
            }
        }
    }
    for st in &p.stages {
        for sm in &st.sagemaker {
            match sm.action.as_str() {
                "rekey-endpoint" => {}
                // Immutable: their outputs are objects of the plan, checked below.
                "report" => continue,
                // Nothing a key covers (local NVMe or serverless storage, no outputs).
                "not-applicable" => continue,
                _ => {
                    v.checked += 1;
                    let found = if sm.kind == crate::model::ResourceKind::SagemakerNotebookInstance
                    {
                        let aws = client(accounts, &sm.account)?;
                        let all = retried(policy, pacer, || aws.list_notebooks()).await.0?;
                        match all.into_iter().find(|n| n.name == sm.name) {
                            None => {
                                // Recreated under another name and deleted, as the runbook says.
                                v.vanished += 1;
                                continue;
                            }
                            Some(n) => n.kms_key_id,
                        }
                    } else {
                        None
                    };
                    if found.as_deref() == Some(sm.kms_key_arn.as_str()) {
                        v.compliant += 1;
                        continue;
                    }
                    blocked(
                        &mut v,
                        Finding {
                            target: format!(
                                "sagemaker:{}/{}",
                                sm.kind.as_str().trim_start_matches("sagemaker-"),
                                sm.name
                            ),
                            expected_key_arn: sm.kms_key_arn.clone(),
                            found: found.unwrap_or_else(|| "service-managed".into()),
                            reason: Some(format!(
                                "{}: {}",
                                sm.action,
                                sm.reason.clone().unwrap_or_default()
                            )),
                        },
                    )?;
                    continue;
                }
            }
            v.checked += 1;
            let aws = client(accounts, &sm.account)?;
            let (_, _, config) = retried(policy, pacer, || aws.describe_endpoint(&sm.name))
                .await
                .0?;
            let c = retried(policy, pacer, || aws.describe_endpoint_config(&config))
                .await
                .0?;
            let resolve = |k: Option<String>| async move {
                match k {
                    Some(k) => Ok::<_, RekeyError>(Some(
                        retried(policy, pacer, || aws.describe_key(&k))
                            .await
                            .0?
                            .map(|d| d.arn)
                            .unwrap_or(k),
                    )),
                    None => Ok(None),
                }
            };
            let key = resolve(c.kms_key_id.clone()).await?;
            let capture = resolve(c.data_capture_kms_key_id.clone()).await?;
            let async_output = resolve(c.async_output_kms_key_id.clone()).await?;
            // A volume key is optional where the plan says it does not cover the storage
            // (the service may refuse one for local NVMe instance types).
            let volume_ok = key.as_deref() == Some(sm.kms_key_arn.as_str())
                || (key.is_none() && !sm.volume_key.is_covered());
            let on_target = volume_ok
                && (!c.data_capture || capture.as_deref() == Some(sm.kms_key_arn.as_str()))
                && async_output
                    .as_deref()
                    .is_none_or(|k| k == sm.kms_key_arn.as_str());
            if on_target {
                v.compliant += 1;
            } else {
                v.add(Finding {
                    target: format!("sagemaker:endpoint/{} (config {config})", sm.name),
                    expected_key_arn: sm.kms_key_arn.clone(),
                    found: key.unwrap_or_else(|| "service-managed".into()),
                    reason: None,
                })?;
            }
        }
    }
    verify_graph(p, accounts, &mut v, (policy, pacer)).await?;
    // The manifest is read a line at a time and checked `concurrency` objects at a time, in
    // plan order: nothing held grows with the number of objects.
    enum Item {
        Check(ObjectStep),
        Blocked(Finding),
        Skip,
    }
    let items = plan_steps(p, plan_path)?.map(|s| {
        let s = s?;
        let Ok(StepSpec::Object(o)) = serde_json::from_str::<StepSpec>(&s.spec) else {
            return Ok(Item::Skip);
        };
        if s.state == state::BLOCKED {
            let scheme = if o.engine == "gcs-rewrite" || o.account.starts_with("gcp:") {
                "gs"
            } else {
                "s3"
            };
            return Ok(Item::Blocked(Finding {
                target: format!("{scheme}://{}/{}", o.bucket, o.key),
                expected_key_arn: o.to_key_arn.clone(),
                found: o.from.as_str().to_string(),
                reason: s.reason.clone(),
            }));
        }
        Ok::<_, RekeyError>(Item::Check(o))
    });
    // (object, (on its team key, what was found))
    type Checked = (ObjectStep, Result<(bool, String), ProviderError>);
    let mut checked = futures::stream::iter(items)
        .map(|item| async move {
            let o = match item {
                Ok(Item::Check(o)) => o,
                other => return other.map(Err),
            };
            let h = if o.engine == "gcs-rewrite" {
                match gcs {
                    Some(g) => retried(policy, pacer, || g.get_object(&o.bucket, &o.key, None))
                        .await
                        .0
                        .map(|c| {
                            (
                                c.kms_key.as_deref() == Some(o.to_key_arn.as_str()),
                                c.kms_key.unwrap_or_else(|| "google-managed".into()),
                            )
                        }),
                    None => Err(ProviderError::Other {
                        what: o.bucket.clone(),
                        detail: "no GCP project in the plan".into(),
                    }),
                }
            } else {
                match accounts.get(&o.account) {
                    Some(aws) => {
                        // A copy wrote the current version. UpdateObjectEncryption re-keyed
                        // the planned version: that version is the resource (gone: vanished);
                        // a version written over it since is another writer's, judged by
                        // `verify -c` and the next plan (docs/apply-engine.md, "Verify").
                        let version = (o.kind() == StepKind::UpdateEncryption)
                            .then_some(o.version_id.as_deref())
                            .flatten();
                        retried(policy, pacer, || {
                            aws.head_object(&o.bucket, &o.key, version)
                        })
                        .await
                        .0
                        .map(|h| {
                            let ok = h.encryption.algorithm == "aws:kms"
                                && h.encryption.kms_key_arn.as_deref()
                                    == Some(o.to_key_arn.as_str());
                            (ok, describe(&h.encryption))
                        })
                    }
                    None => Err(ProviderError::Other {
                        what: o.account.clone(),
                        detail: "no credentials for this account".into(),
                    }),
                }
            };
            Ok(Ok::<Checked, Item>((o, h)))
        })
        .buffered(opts.concurrency.max(1));
    while let Some(c) = checked.next().await {
        v.checked += 1;
        let (o, h) = match c? {
            Ok(c) => c,
            Err(Item::Blocked(f)) => {
                blocked(&mut v, f)?;
                continue;
            }
            Err(_) => {
                v.checked -= 1;
                continue;
            }
        };
        let scheme = if o.engine == "gcs-rewrite" {
            "gs"
        } else {
            "s3"
        };
        match h {
            Ok((true, _)) => v.compliant += 1,
            Ok((false, found)) => v.add(Finding {
                target: format!("{scheme}://{}/{}", o.bucket, o.key),
                expected_key_arn: o.to_key_arn,
                found,
                reason: None,
            })?,
            Err(ProviderError::NotFound { .. }) => v.vanished += 1,
            Err(e) => return Err(e.into()),
        }
    }
    v.finish()?;
    Ok(v)
}

pub fn render_verification(v: &Verification) -> String {
    let mut out = format!(
        "verified {} resources: {} on their team key, {} not ({} of them blocked or manual){}\n",
        v.checked,
        v.compliant,
        v.not_compliant,
        v.not_compliant_blocked,
        if v.vanished > 0 {
            format!("; {} deleted since the plan", v.vanished)
        } else {
            String::new()
        }
    );
    for f in &v.non_compliant {
        match &f.reason {
            Some(r) => out.push_str(&format!(
                "  NOT ON TEAM KEY {}: {} ({r}), expected {}\n",
                f.target, f.found, f.expected_key_arn
            )),
            None => out.push_str(&format!(
                "  NOT ON TEAM KEY {}: found {}, expected {}\n",
                f.target, f.found, f.expected_key_arn
            )),
        }
    }
    if v.not_compliant > v.non_compliant.len() as u64 {
        out.push_str(&format!(
            "  (the first {} of {} listed: verify --findings FILE writes every one)\n",
            v.non_compliant.len(),
            v.not_compliant
        ));
    }
    if v.blocked > 0 && v.not_compliant_blocked == 0 {
        out.push_str(&format!(
            "  ({} blocked or manual resources left out: --ignore-blocked)\n",
            v.blocked
        ));
    }
    out
}
