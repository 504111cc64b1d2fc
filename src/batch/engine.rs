//! The batch engine: runs a stage's `batch-job` steps as S3 Batch Operations jobs, journaled
//! like any step (docs/batch.md).
//!
//! A job step's life: its members that no job has told yet are written to a manifest, each
//! journaled `started` with its undo data (intent before CreateJob: a rollback after a crash
//! re-checks them in the cloud); the manifest is put where no object is; the job step's
//! progress holds the part, the manifest's ETag and, once CreateJob answers, the job id
//! (`run_job` re-attaches to it, or finds it by its description, before it would create
//! one). When the job is over, each task of its completion report becomes its member's
//! outcome. A job that ended `Failed` or was cancelled leaves its untold members for the next
//! part (a new token, a new job), sent by the next apply.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::Timelike;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{JobEnd, JobInfo, JobOperation, JobRequest, TaskResult, Watch};
use crate::campaign::{AtWindowEnd, BatchSection};
use crate::error::RekeyError;
use crate::events::{Event, Reporter};
use crate::executor::{JobRunner, Stop, Tally};
use crate::journal::{state, Journal, Recorded, StepRow};
use crate::providers::{S3Batch, S3Read, Written};
use crate::steps::{JobSpec, ObjectResult, StepSpec};

/// What a job step journals as it goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobProgress {
    /// 1 for the first job; one more for each job sent after one that ended early.
    pub part: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The objects the manifest lists.
    #[serde(default)]
    pub objects: u64,
    /// The job's last status, once it is over and its report is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

/// Members a manifest page reads (and journals as started) at a time.
const PAGE: usize = 10_000;
/// Outcomes committed at a time as a report streams.
const FLUSH: usize = 1_000;

/// Runs batch jobs with the S3 client of each job's account.
pub struct BatchEngine<'a, S> {
    pub clients: BTreeMap<String, &'a S>,
    pub settings: BatchSection,
    /// `apply --retry-failed-locally`: jobs in flight are watched to their end, no job is
    /// sent (what is left runs locally).
    pub no_new_jobs: bool,
    /// The plan and journal (`apply::job_namespace`): with the stage, bucket, job and part,
    /// the job's token.
    pub namespace: String,
    pub watch: Watch,
}

impl<'a, S> BatchEngine<'a, S> {
    pub fn new(
        clients: BTreeMap<String, &'a S>,
        settings: BatchSection,
        namespace: String,
        window: Option<crate::window::WindowSpec>,
    ) -> Self {
        let watch = Watch {
            window,
            cancel_at_window_end: settings.at_window_end == AtWindowEnd::Cancel,
            ..Watch::default()
        };
        BatchEngine {
            clients,
            settings,
            no_new_jobs: false,
            namespace,
            watch,
        }
    }

    fn prefix(p: &str) -> &str {
        let p = p.trim_matches('/');
        if p.is_empty() {
            "rekey"
        } else {
            p
        }
    }

    fn request(
        &self,
        row: &StepRow,
        spec: &JobSpec,
        prog: &JobProgress,
    ) -> Result<JobRequest, RekeyError> {
        let part = prog.part;
        let token = super::token(&self.namespace, &row.stage, &spec.bucket, spec.job, part);
        let operation = match spec.operation.as_str() {
            "update-encryption" => JobOperation::UpdateEncryption {
                key_arn: spec.kms_key_arn.clone(),
                bucket_key: true,
            },
            "copy" => JobOperation::Copy {
                key_arn: spec.kms_key_arn.clone(),
                bucket_key: true,
                storage_class: spec.storage_class.clone(),
                // Never without the constraint: a time that is missing or does not parse
                // stops the job.
                unmodified_since: Some({
                    let t = spec
                        .unmodified_since
                        .as_deref()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .ok_or_else(|| {
                            RekeyError::Internal(format!(
                                "batch job {}: no readable UnModifiedSinceConstraint ({:?}): a copy job is never sent without one",
                                spec.job, spec.unmodified_since
                            ))
                        })?
                        .with_timezone(&chrono::Utc);
                    // Read from a second-precision header (HEAD) or kept finer (a report):
                    // the end of its second either way.
                    t.with_nanosecond(0).unwrap_or(t) + chrono::Duration::seconds(1)
                }),
            },
            other => {
                return Err(RekeyError::Internal(format!(
                    "batch job {}: unknown operation {other:?}",
                    spec.job
                )))
            }
        };
        Ok(JobRequest {
            description: super::description(
                &self.namespace,
                &row.stage,
                &spec.bucket,
                spec.job,
                part,
            ),
            manifest_key: prog.manifest_key.clone().unwrap_or_else(|| {
                format!(
                    "{}/manifests/{token}.csv",
                    Self::prefix(&self.settings.manifest_prefix)
                )
            }),
            token,
            bucket: spec.bucket.clone(),
            operation,
            manifest_bucket: self.settings.manifest_bucket.clone(),
            manifest_etag: prog.manifest_etag.clone().unwrap_or_default(),
            versioned: spec.versioned,
            report_bucket: self.settings.report_bucket.clone(),
            report_prefix: Self::prefix(&self.settings.report_prefix).to_string(),
            role_arn: self.settings.role_arn.clone(),
            priority: self.settings.priority,
            confirm: self.settings.confirm,
        })
    }
}

pub(crate) fn job_spec(row: &StepRow) -> Result<JobSpec, RekeyError> {
    match serde_json::from_str::<StepSpec>(&row.spec) {
        Ok(StepSpec::BatchJob(j)) => Ok(j),
        _ => Err(RekeyError::Internal(format!(
            "journal step {} is not a readable batch job",
            row.id
        ))),
    }
}

pub(crate) fn progress_json(p: &JobProgress) -> String {
    serde_json::to_string(p).unwrap_or_default()
}

/// Why a job ended without telling every object, for the job step's reason.
fn job_failure(job: &JobInfo) -> String {
    let mut why = format!("batch job {} ended {}", job.id, job.status);
    if !job.failure_reasons.is_empty() {
        let r: Vec<String> = job
            .failure_reasons
            .iter()
            .map(|(c, m)| format!("{c}: {m}"))
            .collect();
        why.push_str(&format!(" ({})", r.join("; ")));
    }
    why.push_str("; the objects it did not tell go in a new job at the next apply");
    why
}

/// The report's tasks, turned into member outcomes a batch at a time.
struct Teller<'j> {
    journal: &'j mut Journal,
    job: u32,
    versioned: bool,
    job_id: String,
    stage: String,
    pending: Vec<Recorded>,
    events: Vec<Event>,
    tally: Tally,
    unknown: u64,
}

impl Teller<'_> {
    fn tell(&mut self, t: TaskResult) -> Result<(), RekeyError> {
        let version = if self.versioned {
            t.version_id.as_deref()
        } else {
            None
        };
        let Some(row) = self
            .journal
            .task_member(self.job, &t.key, version, self.versioned)?
        else {
            self.unknown += 1;
            return Ok(());
        };
        // Told before (a report read again after a crash): its outcome stands.
        if row.state != state::STARTED {
            return Ok(());
        }
        let spec = match serde_json::from_str::<StepSpec>(&row.spec) {
            Ok(StepSpec::Object(o)) => o,
            _ => {
                return Err(RekeyError::Internal(format!(
                    "journal step {} is not an object step",
                    row.id
                )))
            }
        };
        let (st, result, reason) = if t.succeeded {
            // UpdateObjectEncryption keeps the ETag and the version: what rollback checks.
            // A batch copy's report tells no new ETag: rollback works it out (it does so for
            // a copy whose answer was lost).
            let result = (spec.kind() == crate::steps::StepKind::UpdateEncryption).then(|| {
                serde_json::to_string(&ObjectResult {
                    written: Written {
                        etag: spec.etag.clone(),
                        version_id: spec.version_id.clone(),
                    },
                    by_rekey: true,
                    note: None,
                })
                .unwrap_or_default()
            });
            self.tally.succeeded += 1;
            self.tally.bytes += row.bytes;
            (state::SUCCEEDED, result, None)
        } else if t.http_status == Some(412) {
            // UnModifiedSinceConstraint refused it: written since the plan, by someone else.
            self.tally.drifted += 1;
            (
                state::DRIFTED,
                None,
                Some(format!(
                    "batch job {}: written since the plan (UnModifiedSinceConstraint refused the copy); left as written",
                    self.job_id
                )),
            )
        } else {
            self.tally.failed += 1;
            let code = t.error_code.as_deref().unwrap_or("error");
            let http = t.http_status.map(|h| format!(" ({h})")).unwrap_or_default();
            (
                state::FAILED,
                None,
                Some(format!(
                    "batch job {}: {code}{http}: {}; apply --retry-failed-locally runs it with rekey's own engine",
                    self.job_id, t.message
                )),
            )
        };
        self.events.push(Event::StepDone {
            stage: self.stage.clone(),
            step: row.kind.clone(),
            target: row.target(),
            state: st.to_string(),
            bytes: row.bytes,
            retries: 0,
            reason: reason.clone(),
        });
        self.pending.push(Recorded {
            id: row.id,
            state: st,
            result,
            reason,
            retries: 0,
        });
        if self.pending.len() >= FLUSH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RekeyError> {
        self.journal.record(&self.pending)?;
        self.pending.clear();
        Ok(())
    }
}

impl<S: S3Batch + S3Read> BatchEngine<'_, S> {
    /// Write the manifest of the members no job has told yet, journaling each `started` (with
    /// its undo data) first; returns the number of objects, 0 when none is left.
    async fn send_manifest(
        &self,
        s3: &S,
        journal: &mut Journal,
        spec: &JobSpec,
        req: &mut JobRequest,
    ) -> Result<(u64, String), RekeyError> {
        let mut body: Vec<u8> = Vec::new();
        let mut after = 0i64;
        let mut n = 0u64;
        loop {
            let page = journal.untold_members(spec.job, after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            let mut intents = Vec::with_capacity(page.len());
            let mut rows = Vec::with_capacity(page.len());
            for r in &page {
                let o = match serde_json::from_str::<StepSpec>(&r.spec) {
                    Ok(StepSpec::Object(o)) => o,
                    _ => {
                        return Err(RekeyError::Internal(format!(
                            "journal step {} is not an object step",
                            r.id
                        )))
                    }
                };
                intents.push((r.id, o.undo_data()));
                rows.push((r.key.as_str(), r.version_id.as_deref()));
            }
            super::write_manifest(&mut body, &spec.bucket, rows, spec.versioned)
                .map_err(|e| RekeyError::Internal(format!("batch job manifest: {e}")))?;
            journal.start_members(&intents)?;
            n += page.len() as u64;
        }
        if n == 0 {
            return Ok((0, String::new()));
        }
        // Named by its content too: a manifest found there (an earlier run's, put before it
        // could journal it) lists exactly these members, not those of before a local retry.
        {
            use sha2::{Digest, Sha256};
            let sum = hex::encode(Sha256::digest(&body));
            let base = req.manifest_key.trim_end_matches(".csv").to_string();
            req.manifest_key = format!("{base}-{}.csv", &sum[..16]);
        }
        use crate::error::ProviderError;
        let put = crate::retry::retried(
            &crate::retry::RetryPolicy::default(),
            &crate::retry::Pacer::new(20),
            || s3.put_manifest(&req.manifest_bucket, &req.manifest_key, body.clone()),
        )
        .await
        .0;
        let etag = match put {
            Ok(etag) => etag,
            // Written by an earlier run that stopped before journaling it: the same members
            // (none was told since), so the same manifest. Its ETag is what CreateJob needs.
            Err(ProviderError::Precondition { .. }) => {
                let h = s3
                    .head_object(&req.manifest_bucket, &req.manifest_key, None)
                    .await?;
                h.etag
            }
            Err(e) => return Err(e.into()),
        };
        Ok((n, etag))
    }
}

impl<S: S3Batch + S3Read> JobRunner for BatchEngine<'_, S> {
    async fn run_job(
        &self,
        journal: &mut Journal,
        row: &StepRow,
        interrupts: &mut UnboundedReceiver<()>,
        reporter: &dyn Reporter,
        tally: &mut Tally,
    ) -> Result<Stop, RekeyError> {
        let spec = job_spec(row)?;
        let s3 = *self.clients.get(&spec.account).ok_or_else(|| {
            RekeyError::usage(
                format!(
                    "batch job {} names account {:?}, which has no credentials here",
                    spec.job, spec.account
                ),
                "keep the plan's aws.accounts as they were when it was made",
            )
        })?;
        // A part is continued only while it is in flight (the step `started`, its job not
        // over); after one ended, failed, or was rolled back, what is left goes in a new part:
        // a new token and description, so an old job and its report are never taken again.
        let prev: Option<JobProgress> = row
            .progress
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok());
        let in_flight = matches!(&prev, Some(p) if row.state == state::STARTED && p.ended.is_none() && p.manifest_etag.is_some());
        if self.no_new_jobs && !in_flight {
            return Ok(Stop::Completed);
        }
        // `--retry-failed-locally` never creates a job: a job whose id was never journaled is
        // looked up by its description; if none exists, its members run locally.
        let mut found_id: Option<String> = None;
        if self.no_new_jobs {
            if let Some(p) = prev.as_ref().filter(|p| p.job_id.is_none()) {
                let req = self.request(row, &spec, p)?;
                match s3.find_job(&req.description).await? {
                    Some(j) => found_id = Some(j.id),
                    None => return Ok(Stop::Completed),
                }
            }
        }
        let mut prog = match prev {
            Some(p) if row.state == state::STARTED && p.ended.is_none() => p,
            Some(p) => JobProgress {
                part: p.part + 1,
                ..Default::default()
            },
            None => JobProgress {
                part: 1,
                ..Default::default()
            },
        };
        if let Some(id) = found_id {
            prog.job_id = Some(id);
            journal.save_progress(row.id, &progress_json(&prog))?;
        }
        // Undoable (its undo changes nothing): a rollback then ends it with its members, so
        // a plan can be written over the journal and the next apply sends a new part.
        journal.mark_started(&[(row.id, Some("{}".into()))])?;
        // Counted as sent. A rollback undoes a job step that succeeded (reset, its progress
        // kept: the next apply starts a new part); one left `started` is ended by the
        // rollback's `stop_jobs` when its part may have a job.
        journal.mark_sent(&[row.id])?;
        if row.progress.is_some() && prog.job_id.is_none() && prog.manifest_etag.is_none() {
            journal.save_progress(row.id, &progress_json(&prog))?;
        }
        let mut req = self.request(row, &spec, &prog)?;
        if prog.job_id.is_none()
            && super::closing(self.watch.window.as_ref(), self.watch.poll_first)
        {
            // No job is created in a window that is closing: the next apply sends it.
            reporter.event(&Event::Stopping {
                reason: "window".into(),
            });
            return Ok(Stop::WindowClosed);
        }
        // A copy job's guard (UnModifiedSinceConstraint) refuses any object written since
        // the plan, rekey's own writes included (an earlier part's copies, a rollback's copies
        // back): after the first part, what is left runs with rekey's ETag-guarded copy.
        if spec.operation == "copy" && prog.part > 1 && prog.manifest_etag.is_none() {
            let n = journal.release_members(spec.job)?;
            journal.record(&[Recorded {
                id: row.id,
                state: state::SUCCEEDED,
                result: Some(progress_json(&prog)),
                reason: Some(format!(
                    "the {n} objects an earlier copy job left run with rekey's own guarded copy"
                )),
                retries: 0,
            }])?;
            return Ok(Stop::Completed);
        }
        if prog.manifest_etag.is_none() {
            let (n, etag) = self.send_manifest(s3, journal, &spec, &mut req).await?;
            if n == 0 {
                journal.record(&[Recorded {
                    id: row.id,
                    state: state::SUCCEEDED,
                    result: Some(progress_json(&prog)),
                    reason: Some("no object left for a job".into()),
                    retries: 0,
                }])?;
                return Ok(Stop::Completed);
            }
            prog.manifest_key = Some(req.manifest_key.clone());
            prog.manifest_etag = Some(etag.clone());
            prog.objects = n;
            req.manifest_etag = etag;
            journal.save_progress(row.id, &progress_json(&prog))?;
        }
        let stage = row.stage.clone();
        let shared = Mutex::new(Teller {
            journal,
            job: spec.job,
            versioned: spec.versioned,
            job_id: prog.job_id.clone().unwrap_or_default(),
            stage: stage.clone(),
            pending: Vec::new(),
            events: Vec::new(),
            tally: Tally::default(),
            unknown: 0,
        });
        let known = prog.job_id.clone();
        let prog_cell = Mutex::new(prog);
        let mut on_job = |j: &JobInfo| -> Result<(), RekeyError> {
            let mut p = prog_cell.lock().expect("progress lock");
            let mut t = shared.lock().expect("teller lock");
            if p.job_id.as_deref() != Some(j.id.as_str()) {
                p.job_id = Some(j.id.clone());
                t.job_id = j.id.clone();
                t.journal.save_progress(row.id, &progress_json(&p))?;
            }
            reporter.event(&Event::JobProgress {
                stage: stage.clone(),
                job: spec.job,
                bucket: spec.bucket.clone(),
                job_id: j.id.clone(),
                status: j.status.clone(),
                succeeded: j.succeeded,
                failed: j.failed,
                total: j.total,
            });
            Ok(())
        };
        let mut on_task = |t: TaskResult| -> Result<(), RekeyError> {
            let mut teller = shared.lock().expect("teller lock");
            teller.tell(t)?;
            for e in teller.events.drain(..) {
                reporter.event(&e);
            }
            Ok(())
        };
        let end = super::run_job(
            s3,
            &req,
            known.as_deref(),
            &self.watch,
            interrupts,
            &mut on_job,
            &mut on_task,
        )
        .await;
        let mut teller = shared.into_inner().expect("teller lock");
        teller.flush()?;
        tally.succeeded += teller.tally.succeeded;
        tally.drifted += teller.tally.drifted;
        tally.failed += teller.tally.failed;
        tally.bytes += teller.tally.bytes;
        if teller.unknown > 0 {
            reporter.event(&Event::Warning {
                message: format!(
                    "batch job {}: {} tasks of its report name no object of the job: ignored",
                    teller.job_id, teller.unknown
                ),
            });
        }
        let journal = teller.journal;
        let mut prog = prog_cell.into_inner().expect("progress lock");
        let (job, stop) = match end? {
            JobEnd::Over(job) => (job, Stop::Completed),
            JobEnd::WindowClosed {
                job,
                cancelled: true,
            } => (job, Stop::WindowClosed),
            JobEnd::WindowClosed {
                cancelled: false, ..
            } => {
                reporter.event(&Event::Warning {
                    message: format!(
                        "the maintenance window closed: batch job {} is left running (aws.s3.batch.at_window_end: leave); the next apply reads its report",
                        prog.job_id.as_deref().unwrap_or("?")
                    ),
                });
                return Ok(Stop::WindowClosed);
            }
            JobEnd::Interrupted(job) => {
                reporter.event(&Event::Warning {
                    message: format!(
                        "interrupted: batch job {} keeps running; the next apply re-attaches to it",
                        job.id
                    ),
                });
                return Ok(Stop::Interrupted);
            }
        };
        prog.ended = Some(job.status.clone());
        let untold: u64 = journal
            .member_states(spec.job)?
            .iter()
            .filter(|(s, _)| s == state::PENDING || s == state::STARTED)
            .map(|(_, n)| n)
            .sum();
        let (st, reason) = if job.status == "Complete" && untold == 0 {
            (
                state::SUCCEEDED,
                (job.failed > 0).then(|| {
                    format!(
                        "batch job {}: {} of {} tasks failed (their steps say why)",
                        job.id,
                        job.failed,
                        job.total.max(job.succeeded + job.failed)
                    )
                }),
            )
        } else if job.status == "Complete" {
            (
                state::FAILED,
                Some(format!(
                    "batch job {} is complete but its report did not tell {untold} objects; the next apply sends them in a new job",
                    job.id
                )),
            )
        } else {
            (state::FAILED, Some(job_failure(&job)))
        };
        let target = format!("s3://{} (batch job {})", spec.bucket, spec.job);
        end_job_step(journal, row, &prog, st, reason, target, tally, reporter)?;
        Ok(stop)
    }
}

/// Journal how a job step ended (its progress kept as its result); a failed one is counted
/// and told.
#[allow(clippy::too_many_arguments)]
pub(crate) fn end_job_step(
    journal: &mut Journal,
    row: &StepRow,
    prog: &JobProgress,
    st: &'static str,
    reason: Option<String>,
    target: String,
    tally: &mut Tally,
    reporter: &dyn Reporter,
) -> Result<(), RekeyError> {
    journal.save_progress(row.id, &progress_json(prog))?;
    journal.record(&[Recorded {
        id: row.id,
        state: st,
        result: Some(progress_json(prog)),
        reason: reason.clone(),
        retries: 0,
    }])?;
    if st == state::FAILED {
        tally.failed += 1;
        reporter.event(&Event::StepDone {
            stage: row.stage.clone(),
            step: row.kind.clone(),
            target,
            state: st.to_string(),
            bytes: 0,
            retries: 0,
            reason,
        });
    }
    Ok(())
}

impl<S: S3Batch> BatchEngine<'_, S> {
    /// Before a rollback from step `first`: every batch job it would undo that may still be
    /// running is cancelled and waited for, so no task re-keys an object after its undo (a
    /// job whose id was never journaled is found by its description); the job step records
    /// how it ended, so the next apply sends what is left in a new part.
    pub async fn stop_jobs(
        &self,
        journal: &mut Journal,
        first: i64,
        reporter: &dyn Reporter,
    ) -> Result<(), RekeyError> {
        use crate::retry::{retried, Pacer, RetryPolicy};
        let (policy, pacer) = (RetryPolicy::default(), Pacer::new(20));
        for row in journal.job_steps(first, i64::MAX)? {
            let Some(mut prog) = row
                .progress
                .as_deref()
                .and_then(|p| serde_json::from_str::<JobProgress>(p).ok())
            else {
                continue;
            };
            if prog.ended.is_some() || prog.manifest_etag.is_none() {
                // Over, or no manifest was ever put: no job can be running.
                continue;
            }
            let spec = job_spec(&row)?;
            if spec.operation == super::gcs::OPERATION {
                // Cloud Storage's: `GcsJobs::stop_jobs`.
                continue;
            }
            let Some(s3) = self.clients.get(&spec.account) else {
                return Err(RekeyError::usage(
                    format!(
                        "batch job {} of s3://{} may still be running, and account {:?} has no credentials here to stop it",
                        spec.job, spec.bucket, spec.account
                    ),
                    "roll back with the plan's accounts reachable",
                ));
            };
            let id = match prog.job_id.clone() {
                Some(id) => id,
                // CreateJob may have answered after the last journal write: ask by name.
                None => {
                    let req = self.request(&row, &spec, &prog)?;
                    match retried(&policy, &pacer, || s3.find_job(&req.description))
                        .await
                        .0?
                    {
                        Some(j) => j.id,
                        None => {
                            // Its manifest was put, its job never made: the part is over
                            // (the next apply sends what is left in a new one). A step no
                            // longer running (its members run locally since) has nothing to end.
                            if row.state == state::STARTED {
                                prog.ended = Some("NotCreated".into());
                                journal.save_progress(row.id, &progress_json(&prog))?;
                            }
                            continue;
                        }
                    }
                }
            };
            let mut job = retried(&policy, &pacer, || s3.describe_job(&id)).await.0?;
            if !job.is_over() {
                reporter.event(&Event::Warning {
                    message: format!(
                        "batch job {id} is {}: cancelling it before the rollback",
                        job.status
                    ),
                });
                if let Err(e) = retried(&policy, &pacer, || s3.cancel_job(&id, "rekey rollback"))
                    .await
                    .0
                {
                    job = retried(&policy, &pacer, || s3.describe_job(&id)).await.0?;
                    if !job.is_over() {
                        return Err(e.into());
                    }
                }
                let mut wait = std::time::Duration::from_millis(200);
                for _ in 0..60 {
                    job = retried(&policy, &pacer, || s3.describe_job(&id)).await.0?;
                    if job.is_over() {
                        break;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(10));
                }
                if !job.is_over() {
                    return Err(RekeyError::usage(
                        format!(
                            "batch job {id} did not end after it was cancelled (status {}): nothing was rolled back",
                            job.status
                        ),
                        "wait for the job to end (S3 console, Batch Operations), then roll back again",
                    ));
                }
            }
            prog.job_id = Some(id);
            prog.ended = Some(job.status.clone());
            journal.save_progress(row.id, &progress_json(&prog))?;
        }
        Ok(())
    }
}
