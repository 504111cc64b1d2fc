//! Apply, status, verify and rollback of a saved plan: the orchestration around the executor.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::error::{ProviderError, RekeyError};
use crate::events::Reporter;
use crate::executor::{self, ExecConfig, Stop};
use crate::exit_codes;
use crate::inventory::check_target_key;
use crate::journal::{self, state, undo_state, Journal, NewStep};
use crate::model::S3Encryption;
use crate::plan::{self, Action, ManifestEntry, PlanFile};
use crate::providers::gcs::GcsClient;
use crate::providers::sagemaker::SageMakerApi;
use crate::providers::{KeyRead, S3Read, S3Write};
use crate::steps::{
    AccountRunners, AnyRunner, GcsSteps, ObjectStep, S3Steps, StepRunner, StepSpec, UndoOutcome,
};
use crate::window::{WindowSpec, WindowState};

/// Preflight: every pinned key still exists, is enabled, symmetric, in the plan's region,
/// and is still what its alias points at. A moved alias makes the plan stale.
pub async fn preflight<K: KeyRead + SageMakerApi>(
    p: &PlanFile,
    accounts: &Accounts<K>,
) -> Result<(), RekeyError> {
    // The consumers of re-keyed model artifacts must still be able to use their key: a key
    // policy changed since planning makes the plan stale rather than break an endpoint.
    for st in &p.stages {
        for sm in st.sagemaker.iter().filter(|s| s.action == "rekey-endpoint") {
            let aws = client(accounts, &sm.account)?;
            let policy = aws.key_policy(&sm.kms_key_arn).await?;
            let grants = aws.key_grants(&sm.kms_key_arn).await?;
            for role in &sm.roles {
                if !crate::providers::sagemaker::role_may_decrypt(&policy, &grants, role) {
                    return Err(RekeyError::StalePlan {
                        reason: format!(
                            "endpoint {}: role {role} may no longer use {} (its key policy changed since planning); add: {}",
                            sm.name,
                            sm.kms_key_arn,
                            crate::providers::sagemaker::statement_for(role)
                        ),
                    });
                }
            }
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

fn client<'a, S>(accounts: &'a Accounts<S>, account: &str) -> Result<&'a S, RekeyError> {
    accounts.get(account).ok_or_else(|| {
        RekeyError::usage(
            format!("the plan names account {account:?}, which has no credentials here"),
            "keep the plan's aws.accounts as they were when it was made, or plan again",
        )
    })
}

fn runners<'a, S>(
    accounts: &'a Accounts<S>,
    gcs: Option<&'a GcsClient>,
    pacer: &'a crate::retry::Pacer,
) -> AccountRunners<AnyRunner<'a, S>> {
    let policy = crate::retry::RetryPolicy::default;
    let mut runners: BTreeMap<String, AnyRunner<'a, S>> = accounts
        .iter()
        .map(|(name, s3)| {
            (
                name.clone(),
                AnyRunner::Aws(S3Steps {
                    s3,
                    policy: policy(),
                    pacer,
                }),
            )
        })
        .collect();
    if let Some(gcs) = gcs {
        runners.insert(
            crate::inventory::gcp_account(&gcs.project),
            AnyRunner::Gcs(GcsSteps {
                gcs,
                policy: policy(),
                pacer,
            }),
        );
    }
    AccountRunners { runners }
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

/// The steps of a plan, in order: per stage, bucket defaults, then objects from the manifest.
pub fn plan_steps(p: &PlanFile, plan_path: &Path) -> Result<Vec<NewStep>, RekeyError> {
    let manifest = plan_path.with_file_name(&p.manifest.file);
    let f = std::fs::File::open(&manifest)
        .map_err(|e| RekeyError::io(format!("reading {}", manifest.display()), e))?;
    let mut entries = std::io::BufReader::new(f).lines().peekable();
    let mut steps = Vec::new();
    // A plan narrowed to some stages (verify --stage) skips the manifest lines of the others.
    let wanted: std::collections::BTreeSet<&str> =
        p.stages.iter().map(|s| s.name.as_str()).collect();
    for stage in &p.stages {
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
                            "gcs-bucket-default"
                        } else {
                            "bucket-default"
                        }
                        .into(),
                        account: b.account.clone(),
                        bucket: b.bucket.clone(),
                        key: String::new(),
                        version_id: None,
                        bytes: 0,
                        state: state::PENDING,
                        spec: serde_json::to_string(&spec)
                            .map_err(|e| RekeyError::Internal(e.to_string()))?,
                        reason: None,
                    });
                }
            }
        }
        while let Some(Ok(line)) = entries.peek() {
            let e: ManifestEntry = serde_json::from_str(line).map_err(|err| {
                RekeyError::Internal(format!("manifest {}: {err}", manifest.display()))
            })?;
            if !wanted.contains(e.stage.as_str()) {
                entries.next();
                continue;
            }
            if e.stage != stage.name {
                break;
            }
            entries.next();
            let account = stage
                .buckets
                .iter()
                .find(|b| b.bucket == e.bucket)
                .map(|b| b.account.clone())
                .unwrap_or_default();
            let spec = StepSpec::Object(ObjectStep {
                account: account.clone(),
                bucket: e.bucket.clone(),
                key: e.key.clone(),
                version_id: e.version_id.clone(),
                etag: e.etag.clone(),
                size: e.size,
                storage_class: e.storage_class.clone(),
                from: e.from,
                from_key_arn: e.from_key_arn.clone(),
                to_key_arn: e.to_key_arn.clone(),
                engine: e.step.clone(),
                part_size: part_size(p.settings.multipart_threshold, e.size),
            });
            let blocked = e.step == "blocked";
            steps.push(NewStep {
                stage: stage.name.clone(),
                kind: e.step.clone(),
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
                spec: serde_json::to_string(&spec)
                    .map_err(|e| RekeyError::Internal(e.to_string()))?,
                reason: e.reason,
            });
        }
        // Endpoints last in their stage: their artifacts are in this stage or an earlier one.
        for sm in stage
            .sagemaker
            .iter()
            .filter(|s| s.kind == crate::model::ResourceKind::SagemakerEndpoint)
        {
            let blocked = sm.action != "rekey-endpoint";
            let spec = StepSpec::Endpoint {
                account: sm.account.clone(),
                name: sm.name.clone(),
                from_config: sm.from_config.clone().unwrap_or_default(),
                to_config: sm.new_config.clone().unwrap_or_default(),
                key_arn: sm.kms_key_arn.clone(),
            };
            steps.push(NewStep {
                stage: stage.name.clone(),
                kind: "endpoint".into(),
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
                spec: serde_json::to_string(&spec)
                    .map_err(|e| RekeyError::Internal(e.to_string()))?,
                reason: sm.reason.clone(),
            });
        }
    }
    Ok(steps)
}

pub struct ApplyOptions {
    pub journal: PathBuf,
    pub stage: Option<String>,
    pub concurrency: usize,
    pub requests_per_second: u32,
    pub window: Option<WindowSpec>,
}

/// Open the plan's journal, creating its steps the first time.
pub fn open_journal(
    p: &PlanFile,
    plan_path: &Path,
    journal_path: &Path,
) -> Result<Journal, RekeyError> {
    let mut j = Journal::open(journal_path, &plan_id(plan_path)?)?;
    if !j.is_initialized()? {
        j.initialize(plan_steps(p, plan_path)?)?;
    }
    Ok(j)
}

/// Apply a plan (or one stage of it); returns the exit code.
pub async fn apply<S: S3Write + KeyRead + SageMakerApi>(
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
                .map(|t| format!("; it opens next at {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default();
            eprintln!("the maintenance window is closed{when}: nothing was started");
            return Ok(exit_codes::WINDOW_CLOSED);
        }
    }
    preflight(p, aws).await?;
    let mut journal = open_journal(p, plan_path, &opts.journal)?;
    let pacer = crate::retry::Pacer::new(opts.requests_per_second);
    let runner = runners(aws, gcs, &pacer);
    let cfg = ExecConfig {
        concurrency: opts.concurrency,
        window: opts.window.clone(),
        ..Default::default()
    };
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
    let stop = run_stages(&mut journal, &runner, &stages, &cfg, interrupts, reporter).await?;
    write_report(p, &journal, &opts.journal, pacer.throttled())?;
    let failed = journal
        .steps_in_states(&[state::FAILED, state::DRIFTED])?
        .iter()
        .any(|r| r.state != state::SUCCEEDED);
    Ok(match stop {
        Stop::Interrupted => exit_codes::INTERRUPTED,
        Stop::WindowClosed => exit_codes::WINDOW_CLOSED,
        Stop::Completed if failed => exit_codes::STEPS_FAILED,
        Stop::Completed => exit_codes::OK,
    })
}

/// Run stages in order with any step runner; stops at the first stage that does not complete.
pub async fn run_stages<R: StepRunner>(
    journal: &mut Journal,
    runner: &R,
    stages: &[&str],
    cfg: &ExecConfig,
    interrupts: &mut UnboundedReceiver<()>,
    reporter: &dyn Reporter,
) -> Result<Stop, RekeyError> {
    for stage in stages {
        journal.reset_undone(stage)?;
        journal.checkpoint(stage)?;
        let rows = journal.stage_steps(stage)?;
        let (stop, _) =
            executor::run_stage(journal, runner, stage, rows, cfg, interrupts, reporter).await?;
        if stop != Stop::Completed {
            return Ok(stop);
        }
    }
    Ok(Stop::Completed)
}

/// Progress of a plan from its journal.
#[derive(Debug, Serialize)]
pub struct Status {
    pub journal: String,
    pub checkpoints: Vec<String>,
    pub stages: Vec<StageStatus>,
}

#[derive(Debug, Serialize, Default)]
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
    let s = status(p, journal)?;
    let notable = journal.steps_in_states(&[state::FAILED, state::DRIFTED, state::BLOCKED])?;
    #[derive(Serialize)]
    struct Item<'a> {
        stage: &'a str,
        step: &'a str,
        target: String,
        state: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        undo_state: Option<&'a str>,
        reason: Option<&'a str>,
    }
    let items: Vec<Item<'_>> = notable
        .iter()
        .map(|r| Item {
            stage: &r.stage,
            step: &r.kind,
            target: r.target(),
            state: &r.state,
            undo_state: r.undo_state.as_deref(),
            reason: r.undo_reason.as_deref().or(r.reason.as_deref()),
        })
        .collect();
    let json = serde_json::json!({ "campaign": p.campaign, "status": s, "throttled_responses": throttled, "steps": items });
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text)
            .map_err(|e| RekeyError::io(format!("writing {}", path.display()), e))
    };
    write(
        report_path(journal_path, "json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )?;
    let mut md = format!(
        "# rekey run report: {}\n\n```\n{}```\n\nThrottled responses retried: {throttled}\n",
        p.campaign,
        render_status(&s)
    );
    for st in ["failed", "drifted", "blocked"] {
        let of: Vec<_> = items.iter().filter(|i| i.state == st).collect();
        if of.is_empty() {
            continue;
        }
        md.push_str(&format!(
            "\n## {st} ({})\n\n| stage | target | reason |\n|---|---|---|\n",
            of.len()
        ));
        for i in of.iter().take(1000) {
            md.push_str(&format!(
                "| {} | {} | {} |\n",
                i.stage,
                i.target,
                i.reason.unwrap_or("").replace('|', "\\|")
            ));
        }
        if of.len() > 1000 {
            md.push_str(&format!(
                "\n({} more in the JSON report)\n",
                of.len() - 1000
            ));
        }
    }
    let conflicts: Vec<_> = items
        .iter()
        .filter(|i| matches!(i.undo_state, Some("conflict" | "failed")))
        .collect();
    if !conflicts.is_empty() {
        md.push_str(&format!(
            "\n## rollback left alone ({})\n\n| stage | target | reason |\n|---|---|---|\n",
            conflicts.len()
        ));
        for i in conflicts {
            md.push_str(&format!(
                "| {} | {} | {} |\n",
                i.stage,
                i.target,
                i.reason.unwrap_or("")
            ));
        }
    }
    write(report_path(journal_path, "md"), md)
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

/// One resource that is not on its team key.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub target: String,
    pub expected_key_arn: String,
    pub found: String,
}

#[derive(Debug, Serialize)]
pub struct Verification {
    pub checked: u64,
    pub compliant: u64,
    pub blocked: u64,
    pub non_compliant: Vec<Finding>,
}

fn describe(enc: &S3Encryption) -> String {
    match &enc.kms_key_arn {
        Some(k) => format!("{} {k}", enc.algorithm),
        None => enc.algorithm.clone(),
    }
}

/// Verify a plan against the cloud: every bucket default and every planned object is on its
/// team key now (re-read, not taken from the journal). Blocked objects are counted apart.
pub async fn verify_plan<S: S3Read + S3Write + KeyRead + SageMakerApi>(
    p: &PlanFile,
    plan_path: &Path,
    accounts: &Accounts<S>,
    gcs: Option<&GcsClient>,
    concurrency: usize,
) -> Result<Verification, RekeyError> {
    let mut v = Verification {
        checked: 0,
        compliant: 0,
        blocked: 0,
        non_compliant: Vec::new(),
    };
    for st in &p.stages {
        for b in &st.buckets {
            for a in &b.actions {
                if let Action::SetBucketDefault { to, .. } = a {
                    v.checked += 1;
                    if b.provider == crate::model::Provider::Gcp {
                        let gcs = gcs.ok_or_else(|| {
                            RekeyError::usage(
                                "the plan has Cloud Storage buckets but no GCP project",
                                "plan again",
                            )
                        })?;
                        let now = gcs.get_bucket(&b.bucket).await?;
                        if now.default_kms_key == to.kms_key_arn {
                            v.compliant += 1;
                        } else {
                            v.non_compliant.push(Finding {
                                target: format!("gs://{} (bucket default)", b.bucket),
                                expected_key_arn: to.kms_key_arn.clone().unwrap_or_default(),
                                found: now
                                    .default_kms_key
                                    .unwrap_or_else(|| "google-managed".into()),
                            });
                        }
                        continue;
                    }
                    let aws = client(accounts, &b.account)?;
                    let mut now = aws.bucket_default(&b.bucket).await?;
                    if let Some(k) = &now.kms_key_arn {
                        if let Some(key) = aws.describe_key(k).await? {
                            now.kms_key_arn = Some(key.arn);
                        }
                    }
                    if now.algorithm == "aws:kms" && now.kms_key_arn == to.kms_key_arn {
                        v.compliant += 1;
                    } else {
                        v.non_compliant.push(Finding {
                            target: format!("s3://{} (bucket default)", b.bucket),
                            expected_key_arn: to.kms_key_arn.clone().unwrap_or_default(),
                            found: describe(&now),
                        });
                    }
                }
            }
        }
    }
    for st in &p.stages {
        for sm in st.sagemaker.iter().filter(|s| s.action == "rekey-endpoint") {
            v.checked += 1;
            let aws = client(accounts, &sm.account)?;
            let (_, _, config) = aws.describe_endpoint(&sm.name).await?;
            let c = aws.describe_endpoint_config(&config).await?;
            let resolve = |k: Option<String>| async move {
                match k {
                    Some(k) => Ok::<_, RekeyError>(Some(
                        aws.describe_key(&k).await?.map(|d| d.arn).unwrap_or(k),
                    )),
                    None => Ok(None),
                }
            };
            let key = resolve(c.kms_key_id.clone()).await?;
            let capture = resolve(c.data_capture_kms_key_id.clone()).await?;
            let on_target = key.as_deref() == Some(sm.kms_key_arn.as_str())
                && (!c.data_capture || capture.as_deref() == Some(sm.kms_key_arn.as_str()));
            if on_target {
                v.compliant += 1;
            } else {
                v.non_compliant.push(Finding {
                    target: format!("sagemaker:endpoint/{} (config {config})", sm.name),
                    expected_key_arn: sm.kms_key_arn.clone(),
                    found: key.unwrap_or_else(|| "service-managed".into()),
                });
            }
        }
    }
    let steps = plan_steps(p, plan_path)?;
    let objects: Vec<ObjectStep> = steps
        .iter()
        .filter(|s| s.kind != "bucket-default")
        .filter_map(|s| {
            if s.state == state::BLOCKED {
                return None;
            }
            match serde_json::from_str::<StepSpec>(&s.spec) {
                Ok(StepSpec::Object(o)) => Some(o),
                _ => None,
            }
        })
        .collect();
    v.blocked = steps.iter().filter(|s| s.state == state::BLOCKED).count() as u64;
    // (object, (on its team key, what was found))
    type Checked = (ObjectStep, Result<(bool, String), ProviderError>);
    let results: Vec<Checked> = futures::stream::iter(objects)
        .map(|o| async move {
            let h = if o.engine == "gcs-rewrite" {
                match gcs {
                    Some(g) => g.get_object(&o.bucket, &o.key, None).await.map(|c| {
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
                    Some(aws) => aws.head_object(&o.bucket, &o.key, None).await.map(|h| {
                        let ok = h.encryption.algorithm == "aws:kms"
                            && h.encryption.kms_key_arn.as_deref() == Some(o.to_key_arn.as_str());
                        (ok, describe(&h.encryption))
                    }),
                    None => Err(ProviderError::Other {
                        what: o.account.clone(),
                        detail: "no credentials for this account".into(),
                    }),
                }
            };
            (o, h)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut results = results;
    results.sort_by(|a, b| (&a.0.bucket, &a.0.key).cmp(&(&b.0.bucket, &b.0.key)));
    for (o, h) in results {
        v.checked += 1;
        let scheme = if o.engine == "gcs-rewrite" {
            "gs"
        } else {
            "s3"
        };
        match h {
            Ok((true, _)) => v.compliant += 1,
            Ok((false, found)) => v.non_compliant.push(Finding {
                target: format!("{scheme}://{}/{}", o.bucket, o.key),
                expected_key_arn: o.to_key_arn,
                found,
            }),
            Err(ProviderError::NotFound { .. }) => v.compliant += 1, // deleted since: nothing left to protect
            Err(e) => return Err(e.into()),
        }
    }
    Ok(v)
}

pub fn render_verification(v: &Verification) -> String {
    let mut out = format!(
        "verified {} resources: {} on their team key, {} not; {} blocked objects not checked\n",
        v.checked,
        v.compliant,
        v.non_compliant.len(),
        v.blocked
    );
    for f in &v.non_compliant {
        out.push_str(&format!(
            "  NOT ON TEAM KEY {}: found {}, expected {}\n",
            f.target, f.found, f.expected_key_arn
        ));
    }
    out
}

/// Roll back from a checkpoint (default: the first): undo succeeded steps in reverse order,
/// objects before their bucket's default. Returns (undone, conflicts, failed).
#[allow(clippy::too_many_arguments)]
pub async fn rollback<S: S3Write + SageMakerApi>(
    p: &PlanFile,
    plan_path: &Path,
    journal_path: &Path,
    to: Option<&str>,
    aws: &Accounts<S>,
    gcs: Option<&GcsClient>,
    concurrency: usize,
    requests_per_second: u32,
) -> Result<(u64, u64, u64), RekeyError> {
    let mut journal = Journal::open(journal_path, &plan_id(plan_path)?)?;
    let checkpoints = journal.checkpoints()?;
    let first = match to {
        Some(name) => checkpoints
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
            .ok_or_else(|| {
                RekeyError::usage(
                    format!("no checkpoint {name:?} in {}", journal_path.display()),
                    format!(
                        "use one of: {}",
                        if checkpoints.is_empty() {
                            "(none: nothing was applied)".into()
                        } else {
                            checkpoints
                                .iter()
                                .map(|(n, _)| n.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                )
            })?,
        None => checkpoints.first().map(|(_, id)| *id).unwrap_or(i64::MAX),
    };
    let mut rows: Vec<_> = journal
        .steps_from(first)?
        .into_iter()
        .filter(|r| {
            r.state == state::SUCCEEDED && r.undo_state.as_deref() != Some(undo_state::UNDONE)
        })
        .collect();
    rows.reverse();
    // Cloud Storage cannot rewrite an object back to Google-managed encryption while its bucket
    // has a default key: GCS bucket defaults are restored first, objects after.
    rows.sort_by_key(|r| r.kind != "gcs-bucket-default");
    let pacer = crate::retry::Pacer::new(requests_per_second);
    let runner = runners(aws, gcs, &pacer);
    let (mut undone, mut conflicts, mut failed) = (0, 0, 0);
    // Runs of object steps go concurrently; a bucket step waits for everything after it.
    let mut i = 0;
    while i < rows.len() {
        // Bucket defaults and endpoints are barriers: each waits for everything after it.
        let barrier = |r: &journal::StepRow| {
            matches!(
                r.kind.as_str(),
                "bucket-default" | "endpoint" | "gcs-bucket-default"
            )
        };
        let j = if barrier(&rows[i]) {
            i + 1
        } else {
            rows[i..]
                .iter()
                .position(barrier)
                .map(|k| i + k)
                .unwrap_or(rows.len())
        };
        let chunk = &rows[i..j];
        for r in chunk {
            journal.mark_undo_started(r.id)?;
        }
        let outcomes: Vec<(i64, UndoOutcome)> = futures::stream::iter(chunk.iter())
            .map(|r| {
                let runner = &runner;
                async move {
                    let spec: StepSpec = match serde_json::from_str(&r.spec) {
                        Ok(s) => s,
                        Err(e) => {
                            return (
                                r.id,
                                UndoOutcome::Failed {
                                    reason: e.to_string(),
                                },
                            )
                        }
                    };
                    (
                        r.id,
                        runner
                            .undo(&spec, r.undo.as_deref(), r.result.as_deref())
                            .await,
                    )
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (id, o) in outcomes {
            match o {
                UndoOutcome::Undone { note } => {
                    undone += 1;
                    journal.record_undo(id, undo_state::UNDONE, note.as_deref())?;
                }
                UndoOutcome::Conflict { reason } => {
                    conflicts += 1;
                    journal.record_undo(id, undo_state::CONFLICT, Some(&reason))?;
                }
                UndoOutcome::Failed { reason } => {
                    failed += 1;
                    journal.record_undo(id, undo_state::FAILED, Some(&reason))?;
                }
            }
        }
        i = j;
    }
    write_report(p, &journal, journal_path, pacer.throttled())?;
    Ok((undone, conflicts, failed))
}

/// The journal path for a plan: `--journal` or beside the plan.
pub fn journal_path(plan_path: &Path, given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| journal::default_path(plan_path))
}
