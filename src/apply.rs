//! Apply and status of a saved plan, and its run report: the orchestration around the
//! executor (`verify` and `rollback` live in their own modules).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::error::RekeyError;
use crate::events::Reporter;
use crate::executor::{self, ExecConfig, Stop};
use crate::exit_codes;
use crate::inventory::check_target_key;
use crate::journal::{self, state, Journal, NewStep};
use crate::plan::{self, Action, ManifestEntry, PlanFile};
use crate::providers::gcs::GcsClient;
use crate::providers::sagemaker::SageMakerApi;
use crate::providers::{KeyRead, S3Write};
use crate::steps::{AccountRunners, AnyRunner, GcsSteps, ObjectStep, S3Steps, StepKind, StepSpec};
use crate::window::{WindowSpec, WindowState};

pub use crate::rollback::{rollback, RollbackOptions};
pub use crate::verify::{render_verification, verify_plan, Finding, Verification, VerifyOptions};

/// Every AWS verdict the plan recorded as allowed (endpoints, whatever their action; the
/// consumers and bucket graphs), evaluated again now, as (what, planned, now). Apply refuses
/// a worse one; verify reports it.
pub(crate) async fn recheck_verdicts<K: crate::providers::iam::AccessRead>(
    p: &PlanFile,
    accounts: &Accounts<K>,
) -> Result<Vec<(String, crate::access::Verdict, crate::access::Verdict)>, RekeyError> {
    let mut caches = BTreeMap::new();
    let planned = p
        .stages
        .iter()
        // Every endpoint's verdicts, whatever its action: its artifacts move in any case.
        .flat_map(|st| st.sagemaker.iter())
        .flat_map(|sm| {
            sm.access
                .iter()
                .map(move |v| (format!("endpoint {}", sm.name), v))
        })
        .chain(p.access.iter().map(|v| ("consumer".to_string(), v)))
        .filter(|(_, v)| {
            v.allowed() && crate::preflight::rechecked(v) && !v.key_arn.starts_with("projects/")
        });
    let mut out = Vec::new();
    for (what, v) in planned {
        let Some(account) = p
            .keys
            .iter()
            .find(|(_, k)| k.arn == v.key_arn)
            .map(|(id, _)| crate::inventory::split_pin(id).1.to_string())
        else {
            continue;
        };
        let aws = client(accounts, &account)?;
        let cache = caches.entry(account.clone()).or_insert_with(|| {
            crate::preflight::AccessCache::new(aws, p.settings.accept_unverified.clone())
        });
        let now = cache.again(v, &p.settings.region).await?;
        out.push((what, v.clone(), now));
    }
    Ok(out)
}

/// Preflight: every pinned key still exists, is enabled, symmetric, in the plan's region,
/// and is still what its alias points at. A moved alias makes the plan stale.
pub async fn preflight<
    K: KeyRead + SageMakerApi + crate::providers::iam::AccessRead + crate::providers::S3Read,
>(
    p: &PlanFile,
    accounts: &Accounts<K>,
    gcs: Option<&GcsClient>,
) -> Result<(), RekeyError> {
    // Every principal the plan found allowed to use a team key (execution roles, consumers,
    // rekey itself) must still be: a key or IAM policy changed since planning makes the plan
    // stale rather than break an endpoint or an application (I5).
    // Cloud KMS keys: evaluated again the same way (existence, state, service agent binding).
    if let (Some(gcs), true) = (
        gcs,
        p.access.iter().any(|v| v.key_arn.starts_with("projects/")),
    ) {
        let mut keys = p.keys.clone();
        let now =
            crate::preflight::gcp_key_verdicts_with(&p.settings.accept_unverified, gcs, &mut keys)
                .await?;
        for planned in p
            .access
            .iter()
            .filter(|v| v.key_arn.starts_with("projects/"))
        {
            if let Some(n) = now.iter().find(|n| n.key_arn == planned.key_arn) {
                if let Some(why) = crate::preflight::worse(planned, n) {
                    return Err(RekeyError::StalePlan {
                        reason: format!(
                            "Cloud KMS: {why} — the key or its IAM policy changed since planning{}",
                            n.add
                                .as_deref()
                                .map(|a| format!("; {a}"))
                                .unwrap_or_default()
                        ),
                    });
                }
            }
        }
    }
    // What surrounds each S3 bucket (policy, replication, notifications) is what the plan
    // judged: a reader added since, or a rule changed, makes the plan stale.
    let mut seen = std::collections::BTreeSet::new();
    for st in &p.stages {
        for b in &st.buckets {
            if b.provider != crate::model::Provider::Aws
                || b.actions.is_empty()
                || !seen.insert(b.bucket.clone())
            {
                continue;
            }
            let Some(planned) = &b.surroundings_sha256 else {
                return Err(RekeyError::StalePlan {
                    reason: format!(
                        "s3://{}: the plan does not record the bucket's policy, replication and notifications (made by an older rekey): plan again so that its readers and hazards are judged",
                        b.bucket
                    ),
                });
            };
            let aws = client(accounts, &b.account)?;
            let now = crate::retry::retried(
                &crate::retry::RetryPolicy::default(),
                &crate::retry::Pacer::new(p.settings.requests_per_second),
                || aws.surroundings(&b.bucket),
            )
            .await
            .0?
            .fingerprint();
            if &now != planned {
                return Err(RekeyError::StalePlan {
                    reason: format!(
                        "s3://{}: its bucket policy, replication or event notifications changed since planning (its readers and hazards were judged on what it was): plan again",
                        b.bucket
                    ),
                });
            }
        }
    }
    for (what, planned, now) in recheck_verdicts(p, accounts).await? {
        if let Some(why) = crate::preflight::worse(&planned, &now) {
            return Err(RekeyError::StalePlan {
                reason: format!(
                    "{what}: {why} — a key or IAM policy changed since planning{}",
                    now.add
                        .as_deref()
                        .map(|a| format!("; add to the key policy: {a}"))
                        .unwrap_or_default()
                ),
            });
        }
    }
    for (name, pinned) in &p.keys {
        let (_, account) = crate::inventory::split_pin(name);
        if account.starts_with("gcp:") {
            // Cloud KMS keys are named in full; rekey has no Cloud KMS client yet to check them.
            continue;
        }
        let kms = client(accounts, account)?;
        let now = kms.describe_key(&pinned.alias).await?;
        let Some(now) = now else {
            return Err(RekeyError::StalePlan {
                reason: format!("team key {name:?}: {} no longer exists", pinned.alias),
            });
        };
        if now.arn != pinned.arn {
            return Err(RekeyError::StalePlan {
                reason: format!(
                    "team key {name:?}: {} now points at {}, the plan pinned {}",
                    pinned.alias, now.arn, pinned.arn
                ),
            });
        }
        check_target_key(name, &pinned.alias, &now).map_err(|(m, f)| RekeyError::usage(m, f))?;
        if now.region() != Some(p.settings.region.as_str()) {
            return Err(RekeyError::usage(
                format!("team key {name:?} ({}) is not in the plan's region {}", now.arn, p.settings.region),
                "S3 needs a key in the bucket's region: point the alias at a key there and plan again",
            ));
        }
    }
    Ok(())
}

/// Clients by account name (`default` for the caller's own account).
pub type Accounts<S> = BTreeMap<String, S>;

/// The clients of the caller's own account alone.
pub fn single<S>(clients: S) -> Accounts<S> {
    [(crate::inventory::DEFAULT_ACCOUNT.to_string(), clients)].into()
}

pub(crate) fn client<'a, S>(accounts: &'a Accounts<S>, account: &str) -> Result<&'a S, RekeyError> {
    accounts.get(account).ok_or_else(|| {
        RekeyError::usage(
            format!("the plan names account {account:?}, which has no credentials here"),
            "keep the plan's aws.accounts as they were when it was made, or plan again",
        )
    })
}

/// The step runners of every account (and Cloud Storage), sharing one pacer and one bound on
/// part copies in flight.
pub fn runners<'a, S>(
    accounts: &'a Accounts<S>,
    gcs: Option<&'a GcsClient>,
    pacer: &'a crate::retry::Pacer,
    part_slots: &'a tokio::sync::Semaphore,
) -> AccountRunners<AnyRunner<'a, S>> {
    let mut runners: BTreeMap<String, AnyRunner<'a, S>> = accounts
        .iter()
        .map(|(name, s3)| {
            (
                name.clone(),
                AnyRunner::Aws(S3Steps::new(s3, pacer, part_slots)),
            )
        })
        .collect();
    if let Some(gcs) = gcs {
        runners.insert(
            crate::inventory::gcp_account(&gcs.project),
            AnyRunner::Gcs(GcsSteps {
                gcs,
                policy: crate::retry::RetryPolicy::default(),
                pacer,
            }),
        );
    }
    AccountRunners { runners }
}

/// Before `plan -o PATH` writes over a plan: a journal beside it that holds applied work not
/// rolled back would lose its plan (and with it any rollback), so that is refused. A journal
/// with nothing to undo is set aside (renamed, never deleted) so the new plan starts a new
/// one; returns where it went.
pub fn guard_replan(plan_path: &Path) -> Result<Option<PathBuf>, RekeyError> {
    guard_replan_check(plan_path)?;
    let journal = journal::default_path(plan_path);
    if !journal.exists() {
        return Ok(None);
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let aside = journal.with_file_name(format!(
        "{}.superseded-{stamp}",
        journal
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("journal")
    ));
    std::fs::rename(&journal, &aside)
        .map_err(|e| RekeyError::io(format!("setting {} aside", journal.display()), e))?;
    Ok(Some(aside))
}

/// The refusal of `guard_replan` alone, setting nothing aside: `plan` checks it before the
/// inventory, and again (with `guard_replan`) just before it writes.
pub fn guard_replan_check(plan_path: &Path) -> Result<(), RekeyError> {
    let journal = journal::default_path(plan_path);
    if !journal.exists() {
        return Ok(());
    }
    // An apply or rollback holding the journal is work in progress.
    if let Ok(lock) = std::fs::File::open(journal::lock_path(&journal)) {
        if let Err(std::fs::TryLockError::WouldBlock) = lock.try_lock() {
            return Err(RekeyError::usage(
                format!(
                    "{} is being applied or rolled back right now (its journal is locked)",
                    plan_path.display()
                ),
                "wait for it to finish; plan again under another name meanwhile (-o plans/NAME-2.plan.yaml)",
            ));
        }
    }
    let (owner, applied, undone) = Journal::inspect(&journal)?;
    let current = if plan_path.exists() {
        plan_id(plan_path)?
    } else {
        String::new()
    };
    if applied > undone {
        let whose = if owner == current {
            format!("{}'s journal", plan_path.display())
        } else {
            format!(
                "{} (the journal of an earlier plan, {})",
                journal.display(),
                &owner[..owner.len().min(12)]
            )
        };
        return Err(RekeyError::usage(
            format!(
                "{whose} holds {} applied steps that are not rolled back: writing a new plan over it would cut that work off from its rollback",
                applied - undone
            ),
            format!(
                "write the new plan under another name (-o {}), or roll this one back first (rekey rollback {} --yes)",
                plan_path
                    .to_string_lossy()
                    .replace(".plan.yaml", "-2.plan.yaml"),
                plan_path.display()
            ),
        ));
    }
    Ok(())
}

/// Before `plan -o PATH` writes over an existing plan: keep the old plan and its manifest as
/// a generation (`NAME.generations/TIME/`, same file names), so a journal kept elsewhere
/// (`--journal`) still has its plan: `rekey rollback NAME.generations/TIME/NAME.plan.yaml
/// --journal …`. Returns where it went.
pub fn keep_generation(plan_path: &Path) -> Result<Option<PathBuf>, RekeyError> {
    if !plan_path.exists() {
        return Ok(None);
    }
    let name = plan_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("plan.yaml");
    let stem = name.strip_suffix(".plan.yaml").unwrap_or(name);
    let dir = plan_path.with_file_name(format!(
        "{stem}.generations/{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| RekeyError::io(format!("creating {}", dir.display()), e))?;
    let manifest = plan_path.with_file_name(plan::manifest_file_name(plan_path));
    for f in [plan_path, manifest.as_path()] {
        if f.exists() {
            let to = dir.join(f.file_name().unwrap_or_default());
            std::fs::rename(f, &to)
                .map_err(|e| RekeyError::io(format!("keeping {}", f.display()), e))?;
        }
    }
    Ok(Some(dir))
}

/// The plan's identity, which its journal records: the sha256 of the plan file.
pub fn plan_id(plan_path: &Path) -> Result<String, RekeyError> {
    plan::file_sha256(plan_path)
        .map_err(|e| RekeyError::io(format!("reading {}", plan_path.display()), e))
}

fn part_size(threshold: u64, size: u64) -> u64 {
    threshold
        .max(size.div_ceil(10_000))
        .min(5 * 1024 * 1024 * 1024)
}

/// The steps of a plan, in order: per stage, bucket defaults, then objects from the manifest
/// (read a line at a time), then endpoints. An iterator: a plan of 10^8 objects is never held.
pub fn plan_steps<'a>(p: &'a PlanFile, plan_path: &Path) -> Result<PlanSteps<'a>, RekeyError> {
    let manifest = plan_path.with_file_name(&p.manifest.file);
    let f = std::fs::File::open(&manifest)
        .map_err(|e| RekeyError::io(format!("reading {}", manifest.display()), e))?;
    Ok(PlanSteps {
        p,
        lines: std::io::BufReader::new(f).lines().peekable(),
        manifest,
        // A plan narrowed to some stages (verify --stage) skips the manifest lines of the
        // others.
        wanted: p.stages.iter().map(|s| s.name.as_str()).collect(),
        stage: 0,
        phase: 0,
        queue: std::collections::VecDeque::new(),
        buckets: Default::default(),
    })
}

/// The iterator of `plan_steps`.
pub struct PlanSteps<'a> {
    p: &'a PlanFile,
    lines: std::iter::Peekable<std::io::Lines<std::io::BufReader<std::fs::File>>>,
    manifest: PathBuf,
    wanted: std::collections::BTreeSet<&'a str>,
    stage: usize,
    /// 0: the stage's bucket defaults next; 1: its objects; 2: its endpoints.
    phase: u8,
    queue: std::collections::VecDeque<NewStep>,
    /// The stage's buckets by name: an object's account and whether it keeps object ACLs.
    buckets: std::collections::HashMap<&'a str, &'a plan::BucketPlan>,
}

impl Iterator for PlanSteps<'_> {
    type Item = Result<NewStep, RekeyError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(s) = self.queue.pop_front() {
                return Some(Ok(s));
            }
            let stage = self.p.stages.get(self.stage)?;
            match self.phase {
                0 => {
                    self.buckets = stage
                        .buckets
                        .iter()
                        .map(|b| (b.bucket.as_str(), b))
                        .collect();
                    match default_steps(stage) {
                        Ok(steps) => self.queue.extend(steps),
                        Err(e) => return Some(Err(e)),
                    }
                    match job_steps(stage) {
                        Ok(steps) => self.queue.extend(steps),
                        Err(e) => return Some(Err(e)),
                    }
                    self.phase = 1;
                }
                1 => {
                    let line = match self.lines.peek() {
                        None => {
                            self.phase = 2;
                            continue;
                        }
                        Some(Err(_)) => {
                            let Some(Err(e)) = self.lines.next() else {
                                unreachable!()
                            };
                            return Some(Err(RekeyError::io(
                                format!("reading {}", self.manifest.display()),
                                e,
                            )));
                        }
                        Some(Ok(line)) => line,
                    };
                    let e: ManifestEntry = match serde_json::from_str(line) {
                        Ok(e) => e,
                        Err(err) => {
                            return Some(Err(RekeyError::Internal(format!(
                                "manifest {}: {err}",
                                self.manifest.display()
                            ))))
                        }
                    };
                    if !self.wanted.contains(e.stage.as_str()) {
                        self.lines.next();
                        continue;
                    }
                    if e.stage != stage.name {
                        self.phase = 2;
                        continue;
                    }
                    self.lines.next();
                    return Some(object_step(self.p, &stage.name, &self.buckets, e));
                }
                _ => {
                    match endpoint_steps(stage) {
                        Ok(steps) => self.queue.extend(steps),
                        Err(e) => return Some(Err(e)),
                    }
                    self.phase = 0;
                    self.stage += 1;
                }
            }
        }
    }
}

fn spec_json(spec: &StepSpec) -> Result<String, RekeyError> {
    serde_json::to_string(spec).map_err(|e| RekeyError::Internal(e.to_string()))
}

/// A stage's bucket default steps.
fn default_steps(stage: &plan::Stage) -> Result<Vec<NewStep>, RekeyError> {
    let mut steps = Vec::new();
    for b in &stage.buckets {
        for a in &b.actions {
            if let Action::SetBucketDefault { to, .. } = a {
                let gcs = b.provider == crate::model::Provider::Gcp;
                let spec = if gcs {
                    StepSpec::GcsBucketDefault {
                        account: b.account.clone(),
                        bucket: b.bucket.clone(),
                        key: to.kms_key_arn.clone().unwrap_or_default(),
                    }
                } else {
                    StepSpec::BucketDefault {
                        account: b.account.clone(),
                        bucket: b.bucket.clone(),
                        target: to.clone(),
                    }
                };
                steps.push(NewStep {
                    stage: stage.name.clone(),
                    kind: if gcs {
                        StepKind::GcsBucketDefault
                    } else {
                        StepKind::BucketDefault
                    }
                    .as_str()
                    .into(),
                    account: b.account.clone(),
                    bucket: b.bucket.clone(),
                    key: String::new(),
                    version_id: None,
                    bytes: 0,
                    state: state::PENDING,
                    spec: spec_json(&spec)?,
                    reason: None,
                    job: None,
                });
            }
        }
    }
    Ok(steps)
}

/// A stage's batch job steps: first in its objects phase.
fn job_steps(stage: &plan::Stage) -> Result<Vec<NewStep>, RekeyError> {
    let mut steps = Vec::new();
    for b in &stage.buckets {
        for j in &b.jobs {
            let spec = StepSpec::BatchJob(crate::steps::JobSpec {
                account: b.account.clone(),
                bucket: b.bucket.clone(),
                job: j.job,
                operation: j.operation.clone(),
                storage_class: j.storage_class.clone(),
                kms_key_arn: j.kms_key_arn.clone(),
                versioned: j.versioned,
                unmodified_since: j.unmodified_since.clone(),
            });
            steps.push(NewStep {
                stage: stage.name.clone(),
                kind: StepKind::BatchJob.as_str().into(),
                account: b.account.clone(),
                bucket: b.bucket.clone(),
                key: String::new(),
                version_id: None,
                bytes: 0,
                state: state::PENDING,
                spec: spec_json(&spec)?,
                reason: None,
                job: Some(j.job),
            });
        }
    }
    Ok(steps)
}

/// The step of one manifest entry.
fn object_step(
    p: &PlanFile,
    stage: &str,
    buckets: &std::collections::HashMap<&str, &plan::BucketPlan>,
    e: ManifestEntry,
) -> Result<NewStep, RekeyError> {
    let bucket = buckets.get(e.bucket.as_str());
    let account = bucket.map(|b| b.account.clone()).unwrap_or_default();
    let blocked = e.step == "blocked";
    let job = e.job;
    let spec = StepSpec::Object(ObjectStep {
        account: account.clone(),
        part_size: part_size(p.settings.multipart_threshold, e.size),
        acls: bucket.is_some_and(|b| b.acls),
        recheck: bucket.is_some_and(|b| b.recheck),
        bucket: e.bucket.clone(),
        key: e.key.clone(),
        version_id: e.version_id.clone(),
        latest: e.latest,
        etag: e.etag,
        size: e.size,
        storage_class: e.storage_class,
        from: e.from,
        from_key_arn: e.from_key_arn,
        from_bucket_key: e.from_bucket_key,
        to_key_arn: e.to_key_arn,
        engine: e.step.clone(),
        website_redirect: e.website_redirect,
        content_hash: e.content_hash,
        job: e.job,
    });
    Ok(NewStep {
        stage: stage.to_string(),
        kind: e.step,
        account,
        bucket: e.bucket,
        key: e.key,
        version_id: e.version_id,
        bytes: e.size,
        state: if blocked {
            state::BLOCKED
        } else {
            state::PENDING
        },
        spec: spec_json(&spec)?,
        reason: e.reason,
        job,
    })
}

/// A stage's endpoint steps: last in their stage, as their artifacts are in this stage or an
/// earlier one.
fn endpoint_steps(stage: &plan::Stage) -> Result<Vec<NewStep>, RekeyError> {
    let mut steps = Vec::new();
    for sm in stage
        .sagemaker
        .iter()
        .filter(|s| s.kind == crate::model::ResourceKind::SagemakerEndpoint)
    {
        if sm.action == "not-applicable" {
            // Nothing a key covers: reported in the plan, no step.
            continue;
        }
        let blocked = sm.action != "rekey-endpoint";
        let spec = StepSpec::Endpoint {
            account: sm.account.clone(),
            name: sm.name.clone(),
            from_config: sm.from_config.clone().unwrap_or_default(),
            to_config: sm.new_config.clone().unwrap_or_default(),
            key_arn: sm.kms_key_arn.clone(),
            volume_key: sm.volume_key.clone(),
            deployment_config: sm.deployment_config.clone(),
            source_sha256: sm.source_sha256.clone(),
        };
        steps.push(NewStep {
            stage: stage.name.clone(),
            kind: StepKind::Endpoint.as_str().into(),
            account: sm.account.clone(),
            bucket: "sagemaker".into(),
            key: sm.name.clone(),
            version_id: None,
            bytes: 0,
            state: if blocked {
                state::BLOCKED
            } else {
                state::PENDING
            },
            spec: spec_json(&spec)?,
            reason: sm.reason.clone(),
            job: None,
        });
    }
    Ok(steps)
}

pub struct ApplyOptions {
    pub journal: PathBuf,
    pub stage: Option<String>,
    pub concurrency: usize,
    pub requests_per_second: u32,
    pub window: Option<WindowSpec>,
    /// Go on to later stages when a stage ends with failed or drifted steps.
    pub continue_on_failure: bool,
    /// Run what batch jobs left with the local engine.
    pub retry_failed_locally: bool,
}

/// Open the plan's journal as its one writer, creating its steps the first time.
pub fn open_journal(
    p: &PlanFile,
    plan_path: &Path,
    journal_path: &Path,
) -> Result<Journal, RekeyError> {
    let mut j = Journal::open_writer(journal_path, &plan_id(plan_path)?)?;
    if !j.is_initialized()? {
        j.initialize(plan_steps(p, plan_path)?)?;
    }
    Ok(j)
}

/// How a run ended, as the journal's `runs` table says it.
pub fn stop_name(stop: Stop) -> &'static str {
    match stop {
        Stop::Completed => "completed",
        Stop::WindowClosed => "window closed",
        Stop::Interrupted => "interrupted",
        Stop::Gated => "stopped after a stage with failed steps",
    }
}

/// What a plan's batch jobs are named after (with stage, bucket, job and part): the plan and
/// the journal, so that no other journal's job is ever taken for this one's.
pub fn job_namespace(plan_path: &Path, journal: &Journal) -> Result<String, RekeyError> {
    Ok(format!("{}:{}", plan_id(plan_path)?, journal.instance()?))
}

/// Batch copy jobs can overwrite a concurrent write (no ETag condition): refused before any
/// write unless the campaign says the buckets' writers are frozen for the window.
pub fn refuse_unguarded(p: &PlanFile, stages: &[&str]) -> Result<(), RekeyError> {
    let accepted_s3 = p
        .settings
        .batch
        .as_ref()
        .is_some_and(|b| b.accept_unguarded);
    let accepted_gcs = p
        .settings
        .gcs_batch
        .as_ref()
        .is_some_and(|b| b.accept_unguarded);
    let unguarded = |gcs: bool| -> Vec<String> {
        p.stages
            .iter()
            .filter(|s| stages.contains(&s.name.as_str()))
            .flat_map(|s| {
                s.buckets.iter().flat_map(move |b| {
                    b.jobs
                        .iter()
                        .filter(move |j| {
                            j.unguarded && (j.operation == crate::batch::gcs::OPERATION) == gcs
                        })
                        .map(move |j| {
                            format!(
                                "stage {} {} job {} ({} objects)",
                                s.name,
                                b.url(),
                                j.job,
                                j.objects
                            )
                        })
                })
            })
            .collect()
    };
    let s3 = if accepted_s3 {
        Vec::new()
    } else {
        unguarded(false)
    };
    if !s3.is_empty() {
        return Err(RekeyError::usage(
            format!(
                "the plan has unguarded batch copy jobs: S3PutObjectCopy has no ETag condition, so a write made while the job runs can be overwritten by the copy of the object before it ({}); nothing was started",
                s3.join("; ")
            ),
            "freeze the buckets' writers for the window and say so with `aws.s3.batch.accept_unguarded: true` (then plan again), or use engine batch-update-encryption or copy",
        ));
    }
    let gcs = if accepted_gcs {
        Vec::new()
    } else {
        unguarded(true)
    };
    if !gcs.is_empty() {
        return Err(RekeyError::usage(
            format!(
                "the plan has unguarded Cloud Storage batch jobs: a batch rewrite takes no generation condition, so a write made while an object is rewritten can be lost under the rewrite, and a write made since the plan is put on the team key ({}); nothing was started",
                gcs.join("; ")
            ),
            "freeze the buckets' writers for the window and say so with `gcp.gcs.batch.accept_unguarded: true` (then plan again), or use the default engine (rewrite)",
        ));
    }
    Ok(())
}

/// Apply a plan (or one stage of it); returns the exit code.
pub async fn apply<
    S: S3Write
        + KeyRead
        + SageMakerApi
        + crate::providers::iam::AccessRead
        + crate::providers::S3Batch,
>(
    p: &PlanFile,
    plan_path: &Path,
    aws: &Accounts<S>,
    gcs: Option<&GcsClient>,
    opts: &ApplyOptions,
    reporter: &dyn Reporter,
    interrupts: &mut UnboundedReceiver<()>,
) -> Result<i32, RekeyError> {
    let stages: Vec<&str> = match &opts.stage {
        Some(s) => {
            if !p.stages.iter().any(|st| &st.name == s) {
                return Err(RekeyError::usage(
                    format!("the plan has no stage {s:?}"),
                    format!(
                        "use one of: {}",
                        p.stages
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            vec![s.as_str()]
        }
        None => p.stages.iter().map(|s| s.name.as_str()).collect(),
    };
    if let Some(w) = &opts.window {
        if let WindowState::Closed { opens } = w.state_at(chrono::Utc::now()) {
            let when = opens
                .map(|t| {
                    let local = w
                        .local_text(t)
                        .map(|l| format!(" ({l})"))
                        .unwrap_or_default();
                    format!(
                        "; it opens next at {}{local}",
                        t.format("%Y-%m-%d %H:%M UTC")
                    )
                })
                .unwrap_or_default();
            eprintln!("the maintenance window is closed{when}: nothing was started");
            return Ok(exit_codes::WINDOW_CLOSED);
        }
    }
    refuse_unguarded(p, &stages)?;
    preflight(p, aws, gcs).await?;
    if let Some(b) = &p.settings.gcs_batch {
        let jobs = p
            .stages
            .iter()
            .filter(|s| stages.contains(&s.name.as_str()))
            .any(|s| {
                s.buckets
                    .iter()
                    .any(|b| !b.jobs.is_empty() && b.provider == crate::model::Provider::Gcp)
            });
        if let (true, Some(g)) = (jobs, gcs) {
            crate::preflight::storage_intelligence(g).await?;
            let jobs: Vec<(&str, &str)> = p
                .stages
                .iter()
                .filter(|s| stages.contains(&s.name.as_str()))
                .flat_map(|s| &s.buckets)
                .filter(|bp| bp.provider == crate::model::Provider::Gcp)
                .flat_map(|bp| {
                    bp.jobs
                        .iter()
                        .map(|j| (bp.bucket.as_str(), j.storage_class.as_str()))
                })
                .collect();
            crate::preflight::gcs_batch(g, &b.manifest_bucket, &jobs).await?;
        }
    }
    if let Some(b) = &p.settings.batch {
        // Each account's jobs run as the campaign's job role, checked from that account.
        type Needs = (
            std::collections::BTreeSet<String>,
            std::collections::BTreeSet<(&'static str, String)>,
        );
        let mut by_account: BTreeMap<&str, Needs> = BTreeMap::new();
        let prefix = |p: &str| {
            let p = p.trim_matches('/');
            if p.is_empty() {
                "rekey".to_string()
            } else {
                p.to_string()
            }
        };
        for st in p
            .stages
            .iter()
            .filter(|s| stages.contains(&s.name.as_str()))
        {
            for bp in &st.buckets {
                for j in bp
                    .jobs
                    .iter()
                    .filter(|j| j.operation != crate::batch::gcs::OPERATION)
                {
                    let (keys, s3) = by_account.entry(bp.account.as_str()).or_default();
                    keys.insert(j.kms_key_arn.clone());
                    let objects = format!("arn:aws:s3:::{}/*", bp.bucket);
                    let actions: &[&'static str] = if j.operation == "copy" {
                        &[
                            "s3:GetObject",
                            "s3:GetObjectTagging",
                            "s3:PutObject",
                            "s3:PutObjectTagging",
                        ]
                    } else {
                        &["s3:PutObject", "s3:UpdateObjectEncryption"]
                    };
                    for a in actions {
                        s3.insert((a, objects.clone()));
                    }
                    // A manifest and a report of the job (keys as the engine names them).
                    // Its manifests and reports, as the engine names them.
                    s3.insert((
                        "s3:GetObject",
                        format!(
                            "arn:aws:s3:::{}/{}/manifests/*",
                            b.manifest_bucket,
                            prefix(&b.manifest_prefix)
                        ),
                    ));
                    s3.insert((
                        "s3:PutObject",
                        format!(
                            "arn:aws:s3:::{}/{}/*",
                            b.report_bucket,
                            prefix(&b.report_prefix)
                        ),
                    ));
                }
            }
        }
        for (account, (mut keys, s3)) in by_account {
            for (what, bucket) in [
                ("manifest_bucket", &b.manifest_bucket),
                ("report_bucket", &b.report_bucket),
            ] {
                let c = client(aws, account)?;
                match c.bucket_default(bucket).await {
                    Err(crate::error::ProviderError::NotFound { .. }) => {
                        return Err(RekeyError::usage(
                            format!("aws.s3.batch.{what} s3://{bucket} does not exist (account {account}): nothing was started"),
                            "create it (in the jobs' account and region), or name one that exists, then plan again",
                        ));
                    }
                    // The job reads its manifest and writes its report under the bucket's
                    // default key: the role must be able to use it too.
                    Ok(rule) if rule.algorithm.starts_with("aws:kms") => {
                        if let Some(k) = rule.kms_key_arn {
                            // Named by id or alias in the rule: its ARN when rekey may read it.
                            let arn = match c.describe_key(&k).await {
                                Ok(Some(key)) => key.arn,
                                _ => k,
                            };
                            keys.insert(arn);
                        }
                    }
                    _ => {}
                }
            }
            let keys: Vec<String> = keys.into_iter().collect();
            let s3: Vec<(&str, String)> = s3.into_iter().collect();
            crate::preflight::batch_role(
                client(aws, account)?,
                p.settings.accept_unverified.clone(),
                &b.role_arn,
                &keys,
                &s3,
            )
            .await?;
        }
    }
    let mut journal = open_journal(p, plan_path, &opts.journal)?;
    let pacer = crate::retry::Pacer::new(opts.requests_per_second);
    let part_slots = tokio::sync::Semaphore::new(opts.concurrency.max(1));
    let runner = runners(aws, gcs, &pacer, &part_slots);
    let cfg = ExecConfig {
        concurrency: opts.concurrency,
        window: opts.window.clone(),
        continue_on_failure: opts.continue_on_failure,
        retry_failed_locally: opts.retry_failed_locally,
        ..Default::default()
    };
    let s3_jobs = match p.settings.batch.clone() {
        Some(b) => {
            let mut e = crate::batch::BatchEngine::new(
                aws.iter().map(|(n, c)| (n.clone(), c)).collect(),
                b,
                job_namespace(plan_path, &journal)?,
                opts.window.clone(),
            );
            e.no_new_jobs = opts.retry_failed_locally;
            Some(e)
        }
        None => None,
    };
    let gcs_jobs = match (p.settings.gcs_batch.clone(), gcs) {
        (Some(b), Some(g)) => {
            let mut e = crate::batch::GcsJobs::new(
                g,
                b,
                job_namespace(plan_path, &journal)?,
                opts.window.clone(),
            );
            e.no_new_jobs = opts.retry_failed_locally;
            Some(e)
        }
        _ => None,
    };
    let jobs = (s3_jobs.is_some() || gcs_jobs.is_some()).then_some(crate::batch::Jobs {
        s3: s3_jobs,
        gcs: gcs_jobs,
    });
    if let Some(only) = &opts.stage {
        // Applying a later stage before an earlier one is finished is allowed, but said.
        let earlier: Vec<&str> = p
            .stages
            .iter()
            .map(|s| s.name.as_str())
            .take_while(|s| s != only)
            .collect();
        let unfinished: std::collections::BTreeSet<String> = journal
            .counts()?
            .into_iter()
            .filter(|(stage, st, _, _, _)| {
                earlier.contains(&stage.as_str()) && executor::is_todo_state(st)
            })
            .map(|(stage, ..)| stage)
            .collect();
        if !unfinished.is_empty() {
            reporter.event(&crate::events::Event::Warning {
                message: format!(
                    "stage {only} runs before earlier stages are finished ({}); their checkpoints still come first in a rollback",
                    unfinished.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    journal.begin_run("apply")?;
    let stop = match &jobs {
        Some(jobs) => {
            run_stages_with(
                &mut journal,
                &runner,
                jobs,
                &stages,
                &cfg,
                interrupts,
                reporter,
            )
            .await?
        }
        None => run_stages(&mut journal, &runner, &stages, &cfg, interrupts, reporter).await?,
    };
    journal.end_run(stop_name(stop))?;
    write_report(p, &journal, &opts.journal, pacer.throttled())?;
    let failed = journal.any_failed()?;
    Ok(match stop {
        Stop::Interrupted => exit_codes::INTERRUPTED,
        Stop::WindowClosed => exit_codes::WINDOW_CLOSED,
        Stop::Gated => exit_codes::STEPS_FAILED,
        Stop::Completed if failed => exit_codes::STEPS_FAILED,
        Stop::Completed => exit_codes::OK,
    })
}

/// Run stages in order with any step runner; stops at the first stage that does not
/// complete, and (unless `continue_on_failure`) after a stage that ends with failed or
/// drifted steps: a canary that went wrong stops the campaign.
pub async fn run_stages<R: crate::steps::StepRunner>(
    journal: &mut Journal,
    runner: &R,
    stages: &[&str],
    cfg: &ExecConfig,
    interrupts: &mut UnboundedReceiver<()>,
    reporter: &dyn Reporter,
) -> Result<Stop, RekeyError> {
    run_stages_with(
        journal,
        runner,
        &executor::NoJobs,
        stages,
        cfg,
        interrupts,
        reporter,
    )
    .await
}

/// `run_stages`, with the stages' batch jobs run by `jobs`.
pub async fn run_stages_with<R: crate::steps::StepRunner, J: executor::JobRunner>(
    journal: &mut Journal,
    runner: &R,
    jobs: &J,
    stages: &[&str],
    cfg: &ExecConfig,
    interrupts: &mut UnboundedReceiver<()>,
    reporter: &dyn Reporter,
) -> Result<Stop, RekeyError> {
    for (i, stage) in stages.iter().enumerate() {
        journal.reset_undone(stage)?;
        journal.checkpoint(stage)?;
        let started = crate::journal::now();
        let (stop, tally) =
            executor::run_stage_with(journal, runner, jobs, stage, cfg, interrupts, reporter)
                .await?;
        journal.stage_ran(stage, &started, &tally)?;
        if stop != Stop::Completed {
            return Ok(stop);
        }
        let unfinished = journal.unfinished(stage)?;
        if unfinished > 0 && !cfg.continue_on_failure && i + 1 < stages.len() {
            reporter.event(&crate::events::Event::Warning {
                message: format!(
                    "stage {stage} ended with {unfinished} steps failed, drifted or not started: later stages were not started; read the run report, fix, and apply again (or pass --continue-on-failure)"
                ),
            });
            return Ok(Stop::Gated);
        }
    }
    Ok(Stop::Completed)
}

/// Progress of a plan from its journal.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Status {
    pub journal: String,
    pub checkpoints: Vec<String>,
    pub stages: Vec<StageStatus>,
}

#[derive(Debug, Serialize, Default, schemars::JsonSchema)]
pub struct StageStatus {
    pub stage: String,
    pub steps: u64,
    pub bytes: u64,
    pub by_state: std::collections::BTreeMap<String, u64>,
}

pub fn status(p: &PlanFile, journal: &Journal) -> Result<Status, RekeyError> {
    let counts = journal.counts()?;
    let mut stages: Vec<StageStatus> = p
        .stages
        .iter()
        .map(|s| StageStatus {
            stage: s.name.clone(),
            ..Default::default()
        })
        .collect();
    for (stage, st, undo, n, bytes) in counts {
        if let Some(s) = stages.iter_mut().find(|s| s.stage == stage) {
            s.steps += n;
            s.bytes += bytes;
            let label = match undo.as_deref() {
                Some(u) => format!("{st}, undo {u}"),
                None => st,
            };
            *s.by_state.entry(label).or_default() += n;
        }
    }
    Ok(Status {
        journal: journal.path().display().to_string(),
        checkpoints: journal.checkpoints()?.into_iter().map(|(n, _)| n).collect(),
        stages,
    })
}

/// What to run next, from a plan's status: the first stage with work left (or failed steps)
/// is applied next; a stage that was rolled back is said as such; when everything is done,
/// verify.
pub fn next_step(s: &Status, plan: &str) -> String {
    for st in &s.stages {
        let count = |f: &dyn Fn(&str, Option<&str>) -> bool| -> u64 {
            st.by_state
                .iter()
                .filter(|(k, _)| {
                    let (state, undo) = match k.split_once(", undo ") {
                        Some((a, b)) => (a, Some(b)),
                        None => (k.as_str(), None),
                    };
                    f(state, undo)
                })
                .map(|(_, n)| *n)
                .sum()
        };
        let undone = count(&|_, u| u == Some("undone"));
        let undo_open = count(&|_, u| matches!(u, Some("started" | "conflict" | "failed")));
        let failed = count(&|st, u| u.is_none() && matches!(st, "failed" | "drifted"));
        let todo = count(&|st, u| u.is_none() && matches!(st, "pending" | "started"));
        let stage = &st.stage;
        if undo_open > 0 {
            return format!(
                "next: stage {stage} has {undo_open} undos left alone, failed or interrupted: read the run report, then `rekey rollback {plan} --to {stage} --yes` again"
            );
        }
        if undone > 0 {
            return format!(
                "next: stage {stage} was rolled back ({undone} steps undone); apply it again when ready: `rekey apply {plan} --stage {stage}`"
            );
        }
        if failed > 0 {
            return format!(
                "next: stage {stage} has {failed} failed or drifted steps: read the run report, fix what it says, then `rekey apply {plan} --stage {stage}` (failed steps are retried; drifted ones were left as written)"
            );
        }
        if todo > 0 {
            return format!("next: `rekey apply {plan} --stage {stage}` ({todo} steps to do)");
        }
    }
    format!("next: every stage is done: `rekey verify {plan}`")
}

pub fn render_status(s: &Status) -> String {
    let mut out = format!(
        "journal {}\ncheckpoints: {}\n",
        s.journal,
        if s.checkpoints.is_empty() {
            "none yet".to_string()
        } else {
            s.checkpoints.join(", ")
        }
    );
    for st in &s.stages {
        let parts: Vec<String> = st
            .by_state
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!(
            "  {:<12} {:>7} steps {:>11}  {}\n",
            st.stage,
            st.steps,
            crate::summary::bytes(st.bytes),
            if parts.is_empty() {
                "not in the journal".into()
            } else {
                parts.join(", ")
            }
        ));
    }
    out
}

/// Write the run report (Markdown and JSON) beside the journal.
pub fn write_report(
    p: &PlanFile,
    journal: &Journal,
    journal_path: &Path,
    throttled: u64,
) -> Result<(), RekeyError> {
    use std::io::Write;
    let s = status(p, journal)?;
    // Every notable step goes to a JSON-lines file beside the report, as it is read; the
    // report groups them by state and reason, with the first few as examples, so that its
    // size follows the number of reasons, not of steps.
    #[derive(Serialize, schemars::JsonSchema)]
    struct Item<'a> {
        stage: &'a str,
        step: &'a str,
        target: String,
        state: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        undo_state: Option<&'a str>,
        reason: Option<&'a str>,
    }
    #[derive(Serialize, schemars::JsonSchema)]
    struct Group {
        section: String,
        state: String,
        reason: String,
        steps: u64,
        examples: Vec<serde_json::Value>,
    }
    const EXAMPLES: usize = 3;
    const GROUPS: usize = 200;
    let steps_path = report_path(journal_path, "steps.jsonl");
    let mut lines = std::io::BufWriter::new(open_private(&steps_path)?);
    let mut groups: Vec<Group> = Vec::new();
    let mut index: std::collections::HashMap<(String, String), usize> = Default::default();
    journal.each_notable(|r| {
        let target = r.target();
        let reason = r.undo_reason.as_deref().or(r.reason.as_deref());
        let item = Item {
            stage: &r.stage,
            step: &r.kind,
            target: target.clone(),
            state: &r.state,
            undo_state: r.undo_state.as_deref(),
            reason,
        };
        serde_json::to_writer(&mut lines, &item)
            .map_err(|e| RekeyError::io("writing the report's step list", e.into()))?;
        lines
            .write_all(b"\n")
            .map_err(|e| RekeyError::io("writing the report's step list", e))?;
        let section = match r.undo_state.as_deref() {
            Some("conflict") => "rollback left alone".to_string(),
            Some("failed") => "rollback failed".to_string(),
            _ => r.state.clone(),
        };
        // The reason without what names this one step (its target, what follows the
        // first ": "), so that steps with the same cause share a group.
        let label = reason
            .unwrap_or("")
            .replace(&target, "…")
            .split(": ")
            .next()
            .unwrap_or("")
            .to_string();
        let key = (section.clone(), label.clone());
        let at = match index.get(&key) {
            Some(&at) => at,
            None if groups.len() < GROUPS => {
                groups.push(Group {
                    section,
                    state: r.state.clone(),
                    reason: label,
                    steps: 0,
                    examples: Vec::new(),
                });
                index.insert(key, groups.len() - 1);
                groups.len() - 1
            }
            None => {
                let other = (section.clone(), "(other reasons)".to_string());
                match index.get(&other) {
                    Some(&at) => at,
                    None => {
                        groups.push(Group {
                            section,
                            state: r.state.clone(),
                            reason: other.1.clone(),
                            steps: 0,
                            examples: Vec::new(),
                        });
                        index.insert(other, groups.len() - 1);
                        groups.len() - 1
                    }
                }
            }
        };
        let g = &mut groups[at];
        g.steps += 1;
        if g.examples.len() < EXAMPLES {
            g.examples.push(serde_json::json!({
                "stage": r.stage, "target": target, "reason": reason
            }));
        }
        Ok(())
    })?;
    lines
        .flush()
        .map_err(|e| RekeyError::io("writing the report's step list", e))?;
    let steps_file = steps_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let runs = journal.runs()?;
    let per_second = journal.succeeded_by_second()?;
    let points = crate::chart::cumulative(&per_second);
    let chart_path = report_path(journal_path, "svg");
    let chart_file = chart_path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let svg = crate::chart::steps_svg(&format!("{}: steps done over time", p.campaign), &points)
        .map_err(|e| RekeyError::Internal(format!("drawing the run report's chart: {e}")))?;
    write_private(&chart_path, svg.as_bytes())?;
    let json = serde_json::json!({
        "campaign": p.campaign,
        "status": s,
        "throttled_responses": throttled,
        "groups": groups,
        "steps_file": steps_file,
        "runs": runs,
        "steps_done_by_second": per_second,
        "chart_file": chart_file,
    });
    write_private(
        &report_path(journal_path, "json"),
        serde_json::to_string_pretty(&json)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let mut md = format!(
        "# rekey run report: {}\n\n```\n{}```\n\nThrottled responses retried: {throttled}\n",
        p.campaign,
        render_status(&s)
    );
    md.push_str(&runs_markdown(&runs));
    md.push_str(&format!("\n![steps done over time]({chart_file})\n"));
    let mut sections: Vec<&str> = groups.iter().map(|g| g.section.as_str()).collect();
    sections.sort();
    sections.dedup();
    for section in sections {
        let of: Vec<&Group> = groups.iter().filter(|g| g.section == section).collect();
        let total: u64 = of.iter().map(|g| g.steps).sum();
        md.push_str(&format!(
            "\n## {section} ({total})\n\n| reason | steps | examples |\n|---|---|---|\n"
        ));
        for g in of {
            let examples: Vec<String> = g
                .examples
                .iter()
                .map(|e| {
                    format!(
                        "{} ({})",
                        e["target"].as_str().unwrap_or(""),
                        e["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            md.push_str(&format!(
                "| {} | {} | {} |\n",
                g.reason.replace('|', "\\|"),
                g.steps,
                examples.join("; ").replace('|', "\\|")
            ));
        }
    }
    md.push_str(&format!(
        "\nEvery step listed above, one JSON object per line: `{steps_file}`\n"
    ));
    write_private(&report_path(journal_path, "md"), md.as_bytes())
}

/// The run report's tables: each stage across every run of the journal (time taken,
/// throughput, retries), then the runs themselves.
pub fn runs_markdown(runs: &[crate::journal::RunRow]) -> String {
    let secs = |a: &str, b: &str| {
        let t = |x: &str| chrono::DateTime::parse_from_rfc3339(x).ok();
        match (t(a), t(b)) {
            (Some(a), Some(b)) => (b - a).num_milliseconds().max(0) as f64 / 1000.0,
            _ => 0.0,
        }
    };
    // Stage → (runs, seconds, steps, bytes, retries), in the order stages first ran.
    let mut order: Vec<String> = Vec::new();
    let mut by: std::collections::HashMap<String, (u64, f64, u64, u64, u64)> = Default::default();
    for r in runs {
        for st in &r.stages {
            if !by.contains_key(&st.stage) {
                order.push(st.stage.clone());
            }
            let e = by.entry(st.stage.clone()).or_default();
            e.0 += 1;
            e.1 += secs(&st.started_at, &st.ended_at);
            e.2 += st.succeeded + st.drifted + st.failed;
            e.3 += st.bytes;
            e.4 += st.retries;
        }
    }
    if runs.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n## Stages across runs\n\n| stage | runs | time taken | steps | steps/s | bytes | MiB/s | retries |\n|---|---|---|---|---|---|---|---|\n",
    );
    for stage in &order {
        let (n, t, steps, bytes, retries) = by[stage];
        let rate = |x: f64| {
            if t > 0.0 {
                format!("{:.1}", x / t)
            } else {
                "-".into()
            }
        };
        md.push_str(&format!(
            "| {stage} | {n} | {} | {steps} | {} | {} | {} | {retries} |\n",
            crate::summary::duration(t),
            rate(steps as f64),
            crate::summary::bytes(bytes),
            rate(bytes as f64 / (1024.0 * 1024.0)),
        ));
    }
    md.push_str("\n## Runs\n\n| run | command | started | ended | how |\n|---|---|---|---|---|\n");
    for r in runs {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.id,
            r.command,
            r.started_at,
            r.ended_at.as_deref().unwrap_or("(did not end: killed)"),
            r.stop.as_deref().unwrap_or("-")
        ));
    }
    md
}

/// Write a file only its owner can read (reports name every object and why it failed).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), RekeyError> {
    use std::io::Write;
    let mut f = open_private(path)?;
    f.write_all(data)
        .map_err(|e| RekeyError::io(format!("writing {}", path.display()), e))
}

/// Create (or truncate) a file only its owner may read.
pub fn open_private(path: &Path) -> Result<std::fs::File, RekeyError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let f = o
        .open(path)
        .map_err(|e| RekeyError::io(format!("writing {}", path.display()), e))?;
    #[cfg(unix)]
    {
        // A report written by an older rekey may already exist world-readable.
        use std::os::unix::fs::PermissionsExt;
        let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
    }
    Ok(f)
}

/// The run report beside the journal: `plans/NAME.journal.sqlite` → `plans/NAME.report.EXT`.
pub fn report_path(journal_path: &Path, ext: &str) -> PathBuf {
    let name = journal_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("rekey");
    let stem = name
        .strip_suffix(".journal.sqlite")
        .or_else(|| name.split('.').next())
        .unwrap_or(name);
    journal_path.with_file_name(format!("{stem}.report.{ext}"))
}

/// The journal path for a plan: `--journal` or beside the plan.
pub fn journal_path(plan_path: &Path, given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| journal::default_path(plan_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, states: &[(&str, u64)]) -> StageStatus {
        StageStatus {
            stage: name.into(),
            steps: states.iter().map(|(_, n)| n).sum(),
            bytes: 0,
            by_state: states.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        }
    }

    fn status(stages: Vec<StageStatus>) -> Status {
        Status {
            journal: "j".into(),
            checkpoints: Vec::new(),
            stages,
        }
    }

    #[test]
    fn status_says_what_to_run_next() {
        let p = "plans/x.plan.yaml";
        let s = status(vec![
            stage("canary", &[("succeeded", 3)]),
            stage("rest", &[("pending", 5), ("succeeded", 1)]),
        ]);
        assert_eq!(
            next_step(&s, p),
            "next: `rekey apply plans/x.plan.yaml --stage rest` (5 steps to do)"
        );
        let s = status(vec![stage("canary", &[("succeeded", 2), ("failed", 1)])]);
        assert!(next_step(&s, p).contains("1 failed or drifted steps"));
        let s = status(vec![stage("canary", &[("succeeded, undo undone", 3)])]);
        assert!(next_step(&s, p).contains("was rolled back (3 steps undone)"));
        let s = status(vec![stage("canary", &[("succeeded, undo conflict", 1)])]);
        assert!(next_step(&s, p).contains("rekey rollback plans/x.plan.yaml --to canary"));
        let s = status(vec![
            stage("canary", &[("succeeded", 3), ("blocked", 2)]),
            stage("rest", &[("vanished", 1)]),
        ]);
        assert_eq!(
            next_step(&s, p),
            "next: every stage is done: `rekey verify plans/x.plan.yaml`"
        );
    }
}
