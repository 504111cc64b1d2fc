//! The Cloud Storage batch engine (`gcp.gcs.engine: batch-rewrite`): a stage's objects of a
//! bucket rewritten onto their key by a storage batch operations job (`rewriteObject.kmsKey`),
//! journaled like the S3 jobs (docs/batch.md, "Cloud Storage").
//!
//! A job step's life: its members no job has told are journaled `started` with their undo
//! data and read (a ranged listing, 1,000 per request); those whose live object is no longer
//! the planned generation are told at once and left out; the rest are written to a manifest
//! (`bucket,name,generation`, the generation left empty: the live object) named by its content
//! and put where no object is (`ifGenerationMatch=0`); the job id is a hash of the plan,
//! journal, stage, bucket, job and part, so a resumed apply finds the job by its id and never
//! creates a second one (the API's `requestId` is kept for 60 minutes only). A job tells
//! counters and a few sample errors, not each object: when it is over, rekey reads the members
//! again and decides each outcome the way its own rewrite does after a lost answer
//! (`GcsSteps`): on the team key with the planned bytes and class → succeeded (rekey's, undone
//! by rollback); on the team key otherwise → another writer's (left alone); the planned
//! generation untouched → failed (or, for a job cut short, left for the next part); another
//! generation off the key → drifted.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::engine::progress_json;
use super::{JobProgress, Watch};
use crate::campaign::{AtWindowEnd, GcsBatchSection};
use crate::error::{ProviderError, RekeyError};
use crate::events::{Event, Reporter};
use crate::executor::{Stop, Tally};
use crate::journal::{state, Journal, Recorded, StepRow};
use crate::providers::gcs::{GcsClient, GcsObjectInfo};
use crate::providers::Written;
use crate::retry::{retried, Pacer, RetryPolicy};
use crate::steps::{JobSpec, ObjectResult, ObjectStep, StepSpec};

/// The operation name of a Cloud Storage job in the plan and the journal.
pub const OPERATION: &str = "gcs-rewrite";

/// Members read (and journaled as started) at a time.
const PAGE: usize = 1_000;

/// Runs storage batch operations jobs with the campaign's Cloud Storage client.
pub struct GcsJobs<'a> {
    pub gcs: &'a GcsClient,
    pub settings: GcsBatchSection,
    /// `apply --retry-failed-locally`: a job in flight is watched to its end, none is created.
    pub no_new_jobs: bool,
    /// The plan and journal (`apply::job_namespace`).
    pub namespace: String,
    pub watch: Watch,
}

/// A job as rekey reads it.
#[derive(Debug, Clone, Default)]
struct GcsJob {
    state: String,
    total: u64,
    succeeded: u64,
    failed: u64,
    /// Sample errors: `gs://bucket/name` → "CODE: detail".
    errors: BTreeMap<String, String>,
    summary: Vec<String>,
}

impl GcsJob {
    fn of(v: &Value) -> GcsJob {
        let n = |k: &str| {
            v["counters"][k]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| v["counters"][k].as_u64())
                .unwrap_or(0)
        };
        let mut errors = BTreeMap::new();
        let mut summary = Vec::new();
        for s in v["errorSummaries"].as_array().into_iter().flatten() {
            let code = s["errorCode"].as_str().unwrap_or("UNKNOWN");
            summary.push(format!(
                "{code} × {}",
                s["errorCount"].as_str().unwrap_or("?")
            ));
            for e in s["errorLogEntries"].as_array().into_iter().flatten() {
                if let Some(uri) = e["objectUri"].as_str() {
                    let detail = e["errorDetails"][0].as_str().unwrap_or_default();
                    errors.insert(uri.to_string(), format!("{code}: {detail}"));
                }
            }
        }
        GcsJob {
            state: v["state"]
                .as_str()
                .unwrap_or("STATE_UNSPECIFIED")
                .to_string(),
            total: n("totalObjectCount"),
            succeeded: n("succeededObjectCount"),
            failed: n("failedObjectCount"),
            errors,
            summary,
        }
    }

    fn is_over(&self) -> bool {
        matches!(self.state.as_str(), "SUCCEEDED" | "FAILED" | "CANCELED")
    }
}

/// The job id of a part: a DNS label (RFC 1123, at most 63 characters) from the job's token.
pub fn job_id(namespace: &str, stage: &str, bucket: &str, job: u32, part: u32) -> String {
    let t = super::token(namespace, stage, bucket, job, part);
    t[..t.len().min(46)].to_string()
}

fn object_spec(r: &StepRow) -> Result<ObjectStep, RekeyError> {
    match serde_json::from_str::<StepSpec>(&r.spec) {
        Ok(StepSpec::Object(o)) => Ok(o),
        _ => Err(RekeyError::Internal(format!(
            "journal step {} is not an object step",
            r.id
        ))),
    }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// What a member's live object says about the job's work on it; `None`: untouched (the
/// planned generation, off the key).
fn member_outcome(
    o: &ObjectStep,
    live: Result<&GcsObjectInfo, &ProviderError>,
    job: &str,
    never_sent: bool,
    bucket_class: Option<&str>,
) -> Option<(&'static str, Option<String>, Option<String>)> {
    let c = match live {
        Ok(c) => c,
        Err(ProviderError::NotFound { .. }) => {
            return Some((
                state::VANISHED,
                None,
                Some("the object no longer exists: nothing to re-key".into()),
            ))
        }
        Err(e) => return Some((state::FAILED, None, Some(e.to_string()))),
    };
    let on_key = c.kms_key.as_deref() == Some(o.to_key_arn.as_str());
    if on_key {
        // A rewrite keeps the bytes and (the job's class being the planned one) the class:
        // the planned content and class on the key are the job's work. Another writer's
        // write of the same bytes and class while the job ran cannot be told from it.
        let ours = o
            .content_hash
            .as_ref()
            .is_none_or(|h| c.content_hash.as_ref() == Some(h))
            // The job's rewrite takes the bucket's default class: the planned one, or one the
            // bucket was given after the last check (rollback restores the planned class).
            && (c.storage_class == o.storage_class || Some(c.storage_class.as_str()) == bucket_class)
            // Not yet in any job: another writer's, whatever its bytes.
            && !never_sent;
        let result = serde_json::to_string(&ObjectResult {
            written: Written {
                etag: c.generation.to_string(),
                version_id: Some(c.generation.to_string()),
            },
            by_rekey: ours,
            note: (!ours).then(|| "another writer's object, already on the team key".into()),
        })
        .ok();
        return Some((state::SUCCEEDED, result, None));
    }
    if c.generation.to_string() == o.etag {
        return None;
    }
    Some((
        state::DRIFTED,
        None,
        Some(format!(
            "batch job {job}: written since the plan (generation {}, planned {}) and not on the team key; left as written",
            c.generation, o.etag
        )),
    ))
}

impl GcsJobs<'_> {
    pub fn new(
        gcs: &GcsClient,
        settings: GcsBatchSection,
        namespace: String,
        window: Option<crate::window::WindowSpec>,
    ) -> GcsJobs<'_> {
        let watch = Watch {
            window,
            cancel_at_window_end: settings.at_window_end == AtWindowEnd::Cancel,
            ..Watch::default()
        };
        GcsJobs {
            gcs,
            settings,
            no_new_jobs: false,
            namespace,
            watch,
        }
    }

    /// Where a manifest goes: named by its job and its content, so a manifest found there
    /// (an earlier run's, put before it could journal it) lists exactly these members.
    fn manifest_key(&self, id: &str, body: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        let p = self.settings.manifest_prefix.trim_matches('/');
        let sum = hex::encode(Sha256::digest(body));
        format!(
            "{}/manifests/{id}-{}.csv",
            if p.is_empty() { "rekey" } else { p },
            &sum[..16]
        )
    }

    /// The live objects of `names` in `bucket` (absent: none), read by listing their range
    /// (1,000 per request) rather than one read each; names the listing did not reach within
    /// a few pages per 1,000 (members sparse in a large bucket) are read one by one.
    async fn live_of(
        &self,
        bucket: &str,
        names: &[&str],
    ) -> Result<std::collections::HashMap<String, Result<GcsObjectInfo, ProviderError>>, RekeyError>
    {
        use std::collections::{HashMap, HashSet};
        let (policy, pacer) = (RetryPolicy::default(), Pacer::new(50));
        let wanted: HashSet<&str> = names.iter().copied().collect();
        let mut out: HashMap<String, Result<GcsObjectInfo, ProviderError>> = HashMap::new();
        let (Some(first), Some(last)) = (names.iter().min(), names.iter().max()) else {
            return Ok(out);
        };
        let end = format!("{last}\u{0}");
        let mut token = None;
        let mut reached: Option<String> = None;
        let mut pages = 0usize;
        let budget = 4 * (names.len() / 1000 + 1);
        loop {
            let (items, next) = retried(&policy, &pacer, || {
                self.gcs.list_range(
                    bucket,
                    false,
                    1000,
                    Some((first, end.as_str())),
                    token.clone(),
                )
            })
            .await
            .0?;
            pages += 1;
            for o in items {
                reached = Some(o.name.clone());
                if wanted.contains(o.name.as_str()) {
                    out.insert(o.name.clone(), Ok(o));
                }
            }
            match next {
                Some(t) if pages < budget => token = Some(t),
                Some(_) => break,
                None => {
                    reached = Some(end.clone());
                    break;
                }
            }
        }
        for n in names {
            if out.contains_key(*n) {
                continue;
            }
            let listed = reached.as_deref().is_some_and(|r| *n <= r);
            let live = if listed {
                Err(ProviderError::NotFound {
                    what: format!("gs://{bucket}/{n}"),
                })
            } else {
                retried(&policy, &pacer, || self.gcs.get_object(bucket, n, None))
                    .await
                    .0
            };
            out.insert(n.to_string(), live);
        }
        Ok(out)
    }

    async fn get(&self, id: &str) -> Result<Option<GcsJob>, RekeyError> {
        let (policy, pacer) = (RetryPolicy::default(), Pacer::new(20));
        match retried(&policy, &pacer, || self.gcs.get_batch_job(id))
            .await
            .0
        {
            Ok(v) => Ok(Some(GcsJob::of(&v))),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Journal the untold members `started` and write their manifest; the number of objects
    /// and the manifest's generation (0 objects: nothing left).
    /// Members whose live object is no longer the planned generation (written since the
    /// plan, gone, already on the key) are told at once and left out: a batch rewrite acts on
    /// the live object, so this narrows what it can take from another writer to what is
    /// written between this read and its task.
    async fn send_manifest(
        &self,
        journal: &mut Journal,
        row: &StepRow,
        spec: &JobSpec,
        id: &str,
        reporter: &dyn Reporter,
        tally: &mut Tally,
    ) -> Result<(u64, String, String), RekeyError> {
        let mut body = b"bucket,name,generation\n".to_vec();
        let (mut after, mut n) = (0i64, 0u64);
        loop {
            let page = journal.untold_members(spec.job, after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            let mut intents = Vec::with_capacity(page.len());
            let mut objects = Vec::with_capacity(page.len());
            for r in &page {
                let o = object_spec(r)?;
                intents.push((r.id, o.undo_data()));
                objects.push(o);
            }
            journal.start_members(&intents)?;
            let names: Vec<&str> = page.iter().map(|r| r.key.as_str()).collect();
            let live = self.live_of(&spec.bucket, &names).await?;
            let mut told = Vec::new();
            for (r, o) in page.iter().zip(&objects) {
                let l = live.get(&r.key).map(|x| x.as_ref());
                let not_found = ProviderError::NotFound { what: r.target() };
                // No job of rekey's has rewritten an untold member (a job's members are told
                // when it ends): one already on the key is another writer's.
                match member_outcome(
                    o,
                    l.unwrap_or(Err(&not_found)),
                    "(before its job)",
                    true,
                    None,
                ) {
                    None => {
                        body.extend_from_slice(
                            format!("{},{},\n", csv_field(&spec.bucket), csv_field(&r.key))
                                .as_bytes(),
                        );
                        n += 1;
                    }
                    Some(t) => told.push((r, t)),
                }
            }
            let out = told
                .into_iter()
                .map(|(r, t)| self.told(row, r, t, reporter, tally))
                .collect::<Vec<_>>();
            journal.record(&out)?;
        }
        if n == 0 {
            return Ok((0, String::new(), String::new()));
        }
        let key = self.manifest_key(id, &body);
        let (policy, pacer) = (RetryPolicy::default(), Pacer::new(20));
        let bucket = &self.settings.manifest_bucket;
        let put = retried(&policy, &pacer, || {
            self.gcs.put_new(bucket, &key, body.clone())
        })
        .await
        .0;
        let generation = match put {
            Ok(o) => o.generation,
            // Put by an earlier run that stopped before journaling it: the same members (none
            // was told since), so the same manifest.
            Err(ProviderError::Precondition { .. }) => {
                retried(&policy, &pacer, || self.gcs.get_object(bucket, &key, None))
                    .await
                    .0?
                    .generation
            }
            Err(e) => return Err(e.into()),
        };
        Ok((n, generation.to_string(), key))
    }

    /// A member's outcome: counted, told, and what to record.
    fn told(
        &self,
        row: &StepRow,
        r: &StepRow,
        t: (&'static str, Option<String>, Option<String>),
        reporter: &dyn Reporter,
        tally: &mut Tally,
    ) -> Recorded {
        match t.0 {
            state::SUCCEEDED => {
                tally.succeeded += 1;
                tally.bytes += r.bytes;
            }
            state::DRIFTED => tally.drifted += 1,
            state::FAILED => tally.failed += 1,
            _ => {}
        }
        reporter.event(&Event::StepDone {
            stage: row.stage.clone(),
            step: r.kind.clone(),
            target: r.target(),
            state: t.0.to_string(),
            bytes: r.bytes,
            retries: 0,
            reason: t.2.clone(),
        });
        Recorded {
            id: r.id,
            state: t.0,
            result: t.1,
            reason: t.2,
            retries: 0,
        }
    }

    /// Each untold member's outcome from its live object, once the job is over. Members the
    /// job did not touch are failed when it ran to its end, left for the next part otherwise.
    async fn tell(
        &self,
        journal: &mut Journal,
        row: &StepRow,
        id: &str,
        job: &GcsJob,
        reporter: &dyn Reporter,
        tally: &mut Tally,
    ) -> Result<(), RekeyError> {
        let spec = super::engine::job_spec(row)?;
        let ran_to_end = job.state == "SUCCEEDED";
        let (policy, pacer) = (RetryPolicy::default(), Pacer::new(20));
        let bucket_class = retried(&policy, &pacer, || self.gcs.get_bucket(&spec.bucket))
            .await
            .0?
            .storage_class;
        let mut after = 0i64;
        loop {
            let page = journal.untold_members(spec.job, after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            let names: Vec<&str> = page.iter().map(|r| r.key.as_str()).collect();
            let live = self.live_of(&spec.bucket, &names).await?;
            let mut out = Vec::new();
            for r in &page {
                let o = object_spec(r)?;
                let not_found = ProviderError::NotFound { what: r.target() };
                let l = live.get(&r.key).map(|x| x.as_ref());
                let told = match member_outcome(
                    &o,
                    l.unwrap_or(Err(&not_found)),
                    id,
                    false,
                    Some(&bucket_class),
                ) {
                    Some(t) => t,
                    None if ran_to_end => {
                        let uri = format!("gs://{}/{}", o.bucket, o.key);
                        let why = job
                            .errors
                            .get(&uri)
                            .cloned()
                            .unwrap_or_else(|| "not rewritten by the job".into());
                        (
                            state::FAILED,
                            None,
                            Some(format!(
                                "batch job {id}: {why}; apply --retry-failed-locally runs it with rekey's own engine"
                            )),
                        )
                    }
                    None => continue,
                };
                out.push(self.told(row, r, told, reporter, tally));
            }
            journal.record(&out)?;
        }
        Ok(())
    }

    /// Run (or re-attach to) the job of step `row` to its end, the window's, or an interrupt.
    pub async fn run_job(
        &self,
        journal: &mut Journal,
        row: &StepRow,
        interrupts: &mut UnboundedReceiver<()>,
        reporter: &dyn Reporter,
        tally: &mut Tally,
    ) -> Result<Stop, RekeyError> {
        let spec = super::engine::job_spec(row)?;
        let prev: Option<JobProgress> = row
            .progress
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok());
        let in_flight = matches!(&prev, Some(p) if row.state == state::STARTED && p.ended.is_none() && p.manifest_etag.is_some());
        if self.no_new_jobs && !in_flight {
            return Ok(Stop::Completed);
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
        let mut id = job_id(
            &self.namespace,
            &row.stage,
            &spec.bucket,
            spec.job,
            prog.part,
        );
        let mut job = self.get(&id).await?;
        if job.is_none()
            && prog.manifest_etag.is_some()
            && journal
                .member_states(spec.job)?
                .iter()
                .any(|(s, n)| s == state::PENDING && *n > 0)
        {
            // A manifest was put for this part but no job was made from it, and members were
            // reset since (a rollback): what it lists is not what is left. A new part.
            prog = JobProgress {
                part: prog.part + 1,
                ..Default::default()
            };
            id = job_id(
                &self.namespace,
                &row.stage,
                &spec.bucket,
                spec.job,
                prog.part,
            );
            job = self.get(&id).await?;
        }
        if self.no_new_jobs && job.is_none() {
            // Never created: its members run locally.
            return Ok(Stop::Completed);
        }
        // Undoable (its undo changes nothing): a rollback then ends it with its members, so
        // a plan can be written over the journal and the next apply sends a new part.
        journal.mark_started(&[(row.id, Some("{}".into()))])?;
        journal.mark_sent(&[row.id])?;
        if job.is_none() && super::closing(self.watch.window.as_ref(), self.watch.poll_first) {
            reporter.event(&Event::Stopping {
                reason: "window".into(),
            });
            return Ok(Stop::WindowClosed);
        }
        if prog.manifest_etag.is_none() {
            let (n, generation, key) = self
                .send_manifest(journal, row, &spec, &id, reporter, tally)
                .await?;
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
            prog.manifest_key = Some(key);
            prog.manifest_etag = Some(generation);
            prog.objects = n;
            journal.save_progress(row.id, &progress_json(&prog))?;
        }
        if job.is_none() {
            let (policy, pacer) = (RetryPolicy::default(), Pacer::new(20));
            // The preflight read the bucket's default class; read it again at the last moment:
            // a job over a bucket whose default changed would move its objects to it.
            let now = retried(&policy, &pacer, || self.gcs.get_bucket(&spec.bucket))
                .await
                .0?;
            if now.storage_class != spec.storage_class {
                return Err(RekeyError::usage(
                    format!(
                        "gs://{}'s default storage class is {} now, {} when it was planned: batch job {id} was not created",
                        spec.bucket, now.storage_class, spec.storage_class
                    ),
                    "roll back (nothing was rewritten by a job), then plan again",
                ));
            }
            let body = json!({
                "description": super::description(&self.namespace, &row.stage, &spec.bucket, spec.job, prog.part)
                    .replace("s3://", "gs://"),
                "bucketList": { "buckets": [{
                    "bucket": spec.bucket,
                    "manifest": { "manifestLocation": format!(
                        "gs://{}/{}",
                        self.settings.manifest_bucket,
                        prog.manifest_key.clone().unwrap_or_default()
                    ) },
                }] },
                "rewriteObject": { "kmsKey": spec.kms_key_arn },
                // Failed transformations in Cloud Logging: the job itself keeps 5 per code.
                "loggingConfig": { "logActions": ["TRANSFORM"], "logActionStates": ["FAILED"] },
            });
            // Created, or (a retry whose first answer was lost) found by its id.
            retried(&policy, &pacer, || {
                self.gcs.create_batch_job(&id, body.clone())
            })
            .await
            .0?;
        }
        if prog.job_id.as_deref() != Some(id.as_str()) {
            prog.job_id = Some(id.clone());
            journal.save_progress(row.id, &progress_json(&prog))?;
        }
        let mut delay = self.watch.poll_first;
        // Cancelled here because the window is closing (the run then ends with exit 5).
        let mut window_cancelled = false;
        let job = loop {
            let j = match self.get(&id).await? {
                Some(j) => j,
                None => {
                    return Err(RekeyError::Internal(format!(
                        "batch operations job {id} was created but cannot be read"
                    )))
                }
            };
            reporter.event(&Event::JobProgress {
                stage: row.stage.clone(),
                job: spec.job,
                bucket: format!("gs://{}", spec.bucket),
                job_id: id.clone(),
                status: j.state.clone(),
                succeeded: j.succeeded,
                failed: j.failed,
                total: j.total.max(prog.objects),
            });
            if j.is_over() {
                break j;
            }
            if super::closing(self.watch.window.as_ref(), delay) {
                if !self.watch.cancel_at_window_end {
                    reporter.event(&Event::Warning {
                        message: format!(
                            "the maintenance window closed: batch job {id} is left running (gcp.gcs.batch.at_window_end: leave); the next apply reads it"
                        ),
                    });
                    return Ok(Stop::WindowClosed);
                }
                self.cancel_and_wait(&id).await?;
                window_cancelled = true;
                continue;
            }
            tokio::select! {
                Some(()) = interrupts.recv() => {
                    reporter.event(&Event::Warning {
                        message: format!("interrupted: batch job {id} keeps running; the next apply re-attaches to it"),
                    });
                    return Ok(Stop::Interrupted);
                }
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(self.watch.poll_max);
        };
        self.tell(journal, row, &id, &job, reporter, tally).await?;
        prog.ended = Some(job.state.clone());
        let untold: u64 = journal
            .member_states(spec.job)?
            .iter()
            .filter(|(s, _)| s == state::PENDING || s == state::STARTED)
            .map(|(_, n)| n)
            .sum();
        let (st, reason) = if job.state == "SUCCEEDED" && untold == 0 {
            (
                state::SUCCEEDED,
                (job.failed > 0).then(|| {
                    format!(
                        "batch job {id}: {} of {} objects failed ({}; their steps say why)",
                        job.failed,
                        job.total,
                        job.summary.join(", ")
                    )
                }),
            )
        } else {
            (
                state::FAILED,
                Some(format!(
                    "batch job {id} ended {}{}; the {untold} objects it did not rewrite go in a new job at the next apply",
                    job.state,
                    if job.summary.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", job.summary.join(", "))
                    }
                )),
            )
        };
        let target = format!("gs://{} (batch job {})", spec.bucket, spec.job);
        super::engine::end_job_step(journal, row, &prog, st, reason, target, tally, reporter)?;
        Ok(if window_cancelled && job.state == "CANCELED" {
            Stop::WindowClosed
        } else {
            Stop::Completed
        })
    }

    /// Cancel a job and wait until it is over.
    async fn cancel_and_wait(&self, id: &str) -> Result<GcsJob, RekeyError> {
        let (policy, pacer) = (RetryPolicy::default(), Pacer::new(20));
        if let Err(e) = retried(&policy, &pacer, || self.gcs.cancel_batch_job(id))
            .await
            .0
        {
            // A job that ended meanwhile cannot be cancelled.
            if !self.get(id).await?.is_some_and(|j| j.is_over()) {
                return Err(e.into());
            }
        }
        let mut wait = std::time::Duration::from_millis(200);
        for _ in 0..60 {
            if let Some(j) = self.get(id).await?.filter(GcsJob::is_over) {
                return Ok(j);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(10));
        }
        Err(RekeyError::usage(
            format!("batch operations job {id} did not end after it was cancelled"),
            "wait for the job to end (Cloud console, Storage batch operations), then run again",
        ))
    }

    /// Before a rollback from step `first`: every Cloud Storage job it would undo that may
    /// still run is cancelled and waited for (found by its id, journaled or not).
    pub async fn stop_jobs(
        &self,
        journal: &mut Journal,
        first: i64,
        reporter: &dyn Reporter,
    ) -> Result<(), RekeyError> {
        for row in journal.job_steps(first, i64::MAX)? {
            let spec = super::engine::job_spec(&row)?;
            if spec.operation != OPERATION {
                continue;
            }
            let Some(mut prog) = row
                .progress
                .as_deref()
                .and_then(|p| serde_json::from_str::<JobProgress>(p).ok())
            else {
                continue;
            };
            if prog.ended.is_some() || prog.manifest_etag.is_none() {
                continue;
            }
            let id = job_id(
                &self.namespace,
                &row.stage,
                &spec.bucket,
                spec.job,
                prog.part,
            );
            let Some(mut job) = self.get(&id).await? else {
                // Its manifest was put, its job never made: the part is over (the next apply
                // sends what is left in a new one). A step no longer running (its members run
                // locally since) has nothing to end.
                if row.state == state::STARTED {
                    prog.ended = Some("NOT_CREATED".into());
                    journal.save_progress(row.id, &progress_json(&prog))?;
                }
                continue;
            };
            if !job.is_over() {
                reporter.event(&Event::Warning {
                    message: format!(
                        "batch job {id} is {}: cancelling it before the rollback",
                        job.state
                    ),
                });
                job = self.cancel_and_wait(&id).await?;
            }
            prog.job_id = Some(id);
            prog.ended = Some(job.state.clone());
            journal.save_progress(row.id, &progress_json(&prog))?;
        }
        Ok(())
    }
}
