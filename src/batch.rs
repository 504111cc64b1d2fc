//! S3 Batch Operations (issue 12), the parts that do not depend on the engine around them:
//! what a job is asked to do, the manifest it reads, the deterministic token and description
//! that let a resumed apply find its job instead of creating a second one, and the completion
//! report that tells each task's outcome.
//!
//! AWS sources: S3 Control API reference (CreateJob, DescribeJob, ListJobs, UpdateJobStatus,
//! JobManifest, JobReport); Amazon S3 user guide, "Specifying a manifest" (CSV
//! `bucket,key[,versionId]`, keys URL-encoded, versions for all rows or none) and "Completion
//! reports" (`PREFIX/job-JOBID/manifest.json`, results CSV files with the schema below).

use std::io::Write;

mod engine;
pub mod gcs;
pub use engine::{BatchEngine, JobProgress};
pub use gcs::GcsJobs;

/// The job runner of a run: S3 Batch Operations jobs and Cloud Storage batch operations
/// jobs, each step to the engine of its operation.
pub struct Jobs<'a, S> {
    pub s3: Option<BatchEngine<'a, S>>,
    pub gcs: Option<GcsJobs<'a>>,
}

impl<S: crate::providers::S3Batch + crate::providers::S3Read> crate::executor::JobRunner
    for Jobs<'_, S>
{
    async fn run_job(
        &self,
        journal: &mut crate::journal::Journal,
        row: &crate::journal::StepRow,
        interrupts: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
        reporter: &dyn crate::events::Reporter,
        tally: &mut crate::executor::Tally,
    ) -> Result<crate::executor::Stop, crate::error::RekeyError> {
        let gcs_job = engine::job_spec(row)?.operation == gcs::OPERATION;
        match (gcs_job, &self.s3, &self.gcs) {
            (true, _, Some(g)) => g.run_job(journal, row, interrupts, reporter, tally).await,
            (false, Some(e), _) => e.run_job(journal, row, interrupts, reporter, tally).await,
            _ => Err(crate::error::RekeyError::usage(
                format!(
                    "step {} is a {} batch job, and this run has no such engine",
                    row.id,
                    if gcs_job { "Cloud Storage" } else { "S3" }
                ),
                "apply with the plan's settings as they were when it was made",
            )),
        }
    }
}

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a job does to every object of its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOperation {
    /// `S3UpdateObjectEncryption`: re-key in place (no data rewritten).
    UpdateEncryption { key_arn: String, bucket_key: bool },
    /// `S3PutObjectCopy` onto the same bucket and key: a new version with the key, the
    /// metadata copied (`MetadataDirective COPY`), the storage class kept. Batch copy has no
    /// ETag condition: `unmodified_since` (the plan's time) narrows what it can overwrite, and
    /// only for current versions (the constraint is checked on the source version: a copy of
    /// an old version would pass it and make old bytes current), so a copy job never lists
    /// version ids (`JobRequest::check`).
    Copy {
        key_arn: String,
        bucket_key: bool,
        storage_class: String,
        unmodified_since: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// Everything CreateJob needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    /// Deterministic (see `token`): the same job is never created twice.
    pub token: String,
    /// Deterministic too: a resumed run finds its job by it (ListJobs).
    pub description: String,
    pub bucket: String,
    pub operation: JobOperation,
    /// Where the manifest was written, and the ETag it was written with.
    pub manifest_bucket: String,
    pub manifest_key: String,
    pub manifest_etag: String,
    /// The manifest lists version ids.
    pub versioned: bool,
    pub report_bucket: String,
    pub report_prefix: String,
    pub role_arn: String,
    pub priority: i32,
    pub confirm: bool,
}

impl JobRequest {
    /// What a job must not be asked to do.
    pub fn check(&self) -> Result<(), String> {
        if self.versioned && matches!(self.operation, JobOperation::Copy { .. }) {
            return Err(format!(
                "batch job {}: a copy job of listed versions would make an old version current over a newer write (UnModifiedSinceConstraint checks only the source version): copy jobs take current objects only",
                self.description
            ));
        }
        if self.token.is_empty() || self.token.len() > 64 {
            return Err(format!(
                "batch job {}: a ClientRequestToken has 1 to 64 characters",
                self.description
            ));
        }
        Ok(())
    }
}

/// A job as DescribeJob or ListJobs tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobInfo {
    pub id: String,
    pub description: String,
    /// `New`, `Preparing`, `Suspended`, `Ready`, `Active`, `Complete`, `Failed`, `Cancelled`, …
    pub status: String,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// (code, reason) when the job failed as a whole.
    pub failure_reasons: Vec<(String, String)>,
}

impl JobInfo {
    /// The job will not run any more tasks.
    pub fn is_over(&self) -> bool {
        matches!(self.status.as_str(), "Complete" | "Failed" | "Cancelled")
    }
}

/// The job's ClientRequestToken: a hash of what identifies it (plan, stage, bucket, the plan's
/// job number and the part), so that a resumed apply asks for the same job (1–64 characters).
pub fn token(plan_sha256: &str, stage: &str, bucket: &str, job: u32, part: u32) -> String {
    let mut h = Sha256::new();
    for field in [
        plan_sha256,
        stage,
        bucket,
        &job.to_string(),
        &part.to_string(),
    ] {
        h.update(field.as_bytes());
        h.update([0]);
    }
    format!("rekey-{}", &hex::encode(h.finalize())[..58])
}

/// The job's description (at most 256 characters): readable, and unique to the job — it
/// ends with the whole token, so a job found by its description is this plan's job.
pub fn description(plan_sha256: &str, stage: &str, bucket: &str, job: u32, part: u32) -> String {
    let token = token(plan_sha256, stage, bucket, job, part);
    let d = format!("rekey stage {stage} s3://{bucket} job {job} part {part} {token}");
    if d.len() <= 256 {
        return d;
    }
    // A long stage name: the token alone identifies the job.
    format!("rekey {token}")
}

/// Write a job manifest: `bucket,key[,versionId]` per line, keys URL-encoded (as S3 Batch
/// Operations reads them); every row has a version id or none does.
pub fn write_manifest<'a>(
    out: &mut impl Write,
    bucket: &str,
    objects: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    versioned: bool,
) -> std::io::Result<u64> {
    let mut n = 0;
    for (key, version) in objects {
        let key = encode_key(key);
        match (versioned, version) {
            (true, Some(v)) => writeln!(out, "{bucket},{key},{v}")?,
            (true, None) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("s3://{bucket}/{key}: a versioned manifest needs every version id"),
                ))
            }
            (false, _) => writeln!(out, "{bucket},{key}")?,
        }
        n += 1;
    }
    Ok(n)
}

/// URL-encode a key for a manifest or report: every byte but unreserved characters and `/`.
pub fn encode_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, KEEP).to_string()
}

/// A completion report's `manifest.json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ReportManifest {
    pub format: String,
    #[serde(default)]
    pub report_creation_date: String,
    pub results: Vec<ReportFile>,
    pub report_schema: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ReportFile {
    #[serde(rename = "TaskExecutionStatus")]
    pub status: String,
    #[serde(rename = "Bucket")]
    pub bucket: String,
    #[serde(rename = "MD5Checksum")]
    pub md5: String,
    #[serde(rename = "Key")]
    pub key: String,
}

/// Where a job's completion report's manifest is.
pub fn report_manifest_key(prefix: &str, job_id: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("job-{job_id}/manifest.json")
    } else {
        format!("{prefix}/job-{job_id}/manifest.json")
    }
}

/// One task's outcome, from a results file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub succeeded: bool,
    pub error_code: Option<String>,
    pub http_status: Option<u16>,
    pub message: String,
}

/// A problem with a completion report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReportProblem(pub String);

/// Parse a completion report's manifest: its format and schema must be the ones rekey reads.
pub fn parse_report_manifest(json: &[u8]) -> Result<ReportManifest, ReportProblem> {
    let m: ReportManifest = serde_json::from_slice(json)
        .map_err(|e| ReportProblem(format!("not a completion report manifest: {e}")))?;
    if m.format != "Report_CSV_20180820" {
        return Err(ReportProblem(format!("report format {}", m.format)));
    }
    let schema: Vec<&str> = m.report_schema.split(',').map(str::trim).collect();
    if schema
        != [
            "Bucket",
            "Key",
            "VersionId",
            "TaskStatus",
            "ErrorCode",
            "HTTPStatusCode",
            "ResultMessage",
        ]
    {
        return Err(ReportProblem(format!(
            "report schema {:?}",
            m.report_schema
        )));
    }
    Ok(m)
}

/// The tasks of one results file, checked against its MD5 from the report's manifest.
pub fn parse_results(data: &[u8], md5: &str) -> Result<Vec<TaskResult>, ReportProblem> {
    use md5::Md5;
    let got = hex::encode(Md5::digest(data));
    if !got.eq_ignore_ascii_case(md5) {
        return Err(ReportProblem(format!(
            "a results file's MD5 is {got}, its report says {md5}"
        )));
    }
    let mut out = Vec::new();
    each_result(data, |t| {
        out.push(t);
        Ok(())
    })?;
    Ok(out)
}

/// Each task of a results file, as it is read (a job of 10^8 tasks is never held).
pub fn each_result(
    data: impl std::io::Read,
    mut f: impl FnMut(TaskResult) -> Result<(), ReportProblem>,
) -> Result<(), ReportProblem> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    for rec in r.records() {
        let rec = rec.map_err(|e| ReportProblem(format!("a results file is not CSV: {e}")))?;
        let get = |i: usize| rec.get(i).unwrap_or("").to_string();
        let key = percent_encoding::percent_decode_str(&get(1).replace('+', " "))
            .decode_utf8()
            .map_err(|e| ReportProblem(format!("a results key is not URL-encoded UTF-8: {e}")))?
            .into_owned();
        let status = get(3);
        // The schema puts ErrorCode before HTTPStatusCode, the user guide's example rows put
        // the status first (`failed,200,PermanentFailure,…`): a three-digit number is the
        // status, wherever it is.
        let is_status = |v: &str| v.len() == 3 && v.bytes().all(|b| b.is_ascii_digit());
        let (code, http) = match (get(4), get(5)) {
            (a, b) if is_status(&a) && !is_status(&b) => (b, a),
            (a, b) => (a, b),
        };
        f(TaskResult {
            bucket: get(0),
            key,
            version_id: Some(get(2)).filter(|v| !v.is_empty()),
            succeeded: status.eq_ignore_ascii_case("succeeded"),
            error_code: Some(code).filter(|c| !c.is_empty()),
            http_status: http.parse().ok(),
            message: get(6),
        })?;
    }
    Ok(())
}

/// How a watched job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// The job is over (Complete, Failed, or Cancelled by someone); its report was read.
    Over(JobInfo),
    /// The window closed: the job was cancelled and its report read (`cancelled`), or left
    /// to finish (the next apply re-attaches and reads it).
    WindowClosed { job: JobInfo, cancelled: bool },
    /// Interrupted (Ctrl-C): the job keeps running; the next apply re-attaches to it.
    Interrupted(JobInfo),
}

/// How a job is watched.
#[derive(Debug, Clone)]
pub struct Watch {
    pub window: Option<crate::window::WindowSpec>,
    /// At the window's end: cancel the job (default), or leave it to finish.
    pub cancel_at_window_end: bool,
    /// DescribeJob every `poll_first`, doubling up to `poll_max`.
    pub poll_first: std::time::Duration,
    pub poll_max: std::time::Duration,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            window: None,
            cancel_at_window_end: true,
            poll_first: std::time::Duration::from_secs(1),
            poll_max: std::time::Duration::from_secs(30),
        }
    }
}

/// Whether the window is closed, or closes before `within` has passed.
pub(crate) fn closing(
    window: Option<&crate::window::WindowSpec>,
    within: std::time::Duration,
) -> bool {
    use crate::window::WindowState;
    let Some(w) = window else { return false };
    let now = chrono::Utc::now();
    match w.state_at(now) {
        WindowState::Open { closes } => {
            now + chrono::Duration::from_std(within).unwrap_or_default() >= closes
        }
        WindowState::Closed { .. } => true,
    }
}

/// Run one job to its end: re-attach to it (`known_id`, journaled by an earlier run, or found
/// by its description), or create it (never while the window is closing); watch it with
/// backoff, telling `on_job` every state (the first call journals its id); at the window's
/// end cancel it or leave it; on an interrupt leave it running. When it is over, every task
/// of its completion report goes to `on_task` (also for a cancelled job: tasks that ran
/// changed objects).
pub async fn run_job<S: crate::providers::S3Batch + crate::providers::S3Read>(
    s3: &S,
    req: &JobRequest,
    known_id: Option<&str>,
    watch: &Watch,
    interrupts: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    on_job: &mut (dyn FnMut(&JobInfo) -> Result<(), crate::error::RekeyError> + Send),
    on_task: &mut (dyn FnMut(TaskResult) -> Result<(), crate::error::RekeyError> + Send),
) -> Result<JobEnd, crate::error::RekeyError> {
    use crate::error::{ProviderError, RekeyError};
    use crate::retry::{retried, Pacer, RetryPolicy};
    req.check().map_err(RekeyError::Internal)?;
    let policy = RetryPolicy::default();
    let pacer = Pacer::new(20);
    let describe = |id: String| {
        let (policy, pacer) = (&policy, &pacer);
        async move { retried(policy, pacer, || s3.describe_job(&id)).await.0 }
    };
    // Re-attach before anything is created: one job per token, whatever happened before.
    let mut job = match known_id {
        Some(id) => match describe(id.to_string()).await {
            Ok(j) => Some(j),
            Err(ProviderError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    if job.is_none() {
        job = retried(&policy, &pacer, || s3.find_job(&req.description))
            .await
            .0?;
    }
    let mut job = match job {
        Some(j) => j,
        None => {
            if closing(watch.window.as_ref(), watch.poll_first) {
                return Err(RekeyError::usage(
                    format!(
                        "the maintenance window is closing: batch job {} was not created",
                        req.description
                    ),
                    "apply again in the next window",
                ));
            }
            // The token makes a retried CreateJob answer the same job.
            let id = retried(&policy, &pacer, || s3.create_job(req)).await.0?;
            // Journaled before anything else can fail: a job rekey does not know of would
            // run on after a rollback.
            on_job(&JobInfo {
                id: id.clone(),
                description: req.description.clone(),
                status: "New".into(),
                ..Default::default()
            })?;
            describe(id).await?
        }
    };
    on_job(&job)?;
    let mut delay = watch.poll_first;
    loop {
        if job.is_over() {
            // A job that ran no task (its manifest refused, cancelled at once) may have no
            // report: nothing to tell.
            if job.succeeded + job.failed > 0 {
                read_report(s3, req, &job, on_task).await?;
            }
            return Ok(JobEnd::Over(job));
        }
        if closing(watch.window.as_ref(), delay) {
            if !watch.cancel_at_window_end {
                return Ok(JobEnd::WindowClosed {
                    job,
                    cancelled: false,
                });
            }
            let cancelled = retried(&policy, &pacer, || {
                s3.cancel_job(&job.id, "the maintenance window closed")
            })
            .await
            .0;
            if let Err(e) = cancelled {
                // A job that ended meanwhile cannot be cancelled: read it as it ended.
                job = describe(job.id.clone()).await?;
                if !job.is_over() {
                    return Err(e.into());
                }
            }
            // Cancelling ends in Cancelled, or Complete when the last task beat it.
            let mut wait = watch.poll_first;
            for _ in 0..200 {
                job = describe(job.id.clone()).await?;
                on_job(&job)?;
                if job.is_over() {
                    break;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(watch.poll_max);
            }
            if !job.is_over() {
                return Err(RekeyError::Internal(format!(
                    "batch job {} did not end after it was cancelled (status {})",
                    job.id, job.status
                )));
            }
            // A job that ran no task may have no report: nothing to tell.
            if job.succeeded + job.failed > 0 {
                read_report(s3, req, &job, on_task).await?;
            }
            return Ok(JobEnd::WindowClosed {
                job,
                cancelled: true,
            });
        }
        tokio::select! {
            Some(()) = interrupts.recv() => return Ok(JobEnd::Interrupted(job)),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(watch.poll_max);
        job = describe(job.id.clone()).await?;
        on_job(&job)?;
    }
}

/// Read a job's completion report, every results file checked against its MD5 and streamed
/// from a temporary copy; it must tell every task the job ran (a report of failed tasks only,
/// or one cut short, would lose outcomes).
async fn read_report<S: crate::providers::S3Read>(
    s3: &S,
    req: &JobRequest,
    job: &JobInfo,
    on_task: &mut (dyn FnMut(TaskResult) -> Result<(), crate::error::RekeyError> + Send),
) -> Result<(), crate::error::RekeyError> {
    use crate::error::RekeyError;
    use std::io::Seek;
    let id = job.id.as_str();
    let key = report_manifest_key(&req.report_prefix, id);
    let mut told = 0u64;
    let raw = s3
        .read_small(&req.report_bucket, &key, 64 * 1024 * 1024)
        .await
        .map_err(|e| {
            RekeyError::Internal(format!(
                "batch job {id}: its completion report s3://{}/{key} cannot be read ({e}): the job's tasks are not known; check the job role may write the report bucket",
                req.report_bucket
            ))
        })?;
    let bad = |e: ReportProblem| {
        RekeyError::Internal(format!(
            "batch job {id}: completion report s3://{}/{key}: {e}",
            req.report_bucket
        ))
    };
    let m = parse_report_manifest(&raw).map_err(bad)?;
    for f in &m.results {
        let mut tmp = tempfile::tempfile()
            .map_err(|e| RekeyError::io("creating a temporary file for a job report", e))?;
        let md5 = s3.download(&f.bucket, &f.key, &mut tmp).await?;
        if !md5.eq_ignore_ascii_case(&f.md5) {
            return Err(bad(ReportProblem(format!(
                "results file s3://{}/{} has MD5 {md5}, the report says {}",
                f.bucket, f.key, f.md5
            ))));
        }
        tmp.rewind()
            .map_err(|e| RekeyError::io("reading a job report's temporary copy", e))?;
        let mut failure: Option<RekeyError> = None;
        each_result(std::io::BufReader::new(tmp), |t| {
            told += 1;
            on_task(t).map_err(|e| {
                let m = e.to_string();
                failure = Some(e);
                ReportProblem(m)
            })
        })
        .map_err(|e| failure.take().unwrap_or_else(|| bad(e)))?;
    }
    if told != job.succeeded + job.failed {
        return Err(RekeyError::Internal(format!(
            "batch job {id}: its completion report tells {told} tasks, the job ran {} ({} succeeded, {} failed): outcomes would be lost (a report of failed tasks only, or another job's?)",
            job.succeeded + job.failed,
            job.succeeded,
            job.failed
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_descriptions_are_deterministic_and_bounded() {
        let plan = "ab".repeat(32);
        let t = token(&plan, "canary", "ml-a", 1, 0);
        assert_eq!(t, token(&plan, "canary", "ml-a", 1, 0));
        assert!(t.len() <= 64 && !t.is_empty(), "{t}");
        assert_ne!(t, token(&plan, "canary", "ml-a", 1, 1));
        assert_ne!(t, token(&plan, "canary", "ml-b", 1, 0));
        // Fields are separated: ("ab","c") is not ("a","bc").
        assert_ne!(token(&plan, "ab", "c", 1, 0), token(&plan, "a", "bc", 1, 0));
        let d = description(&plan, "canary", "ml-a", 1, 3);
        assert_eq!(
            d,
            format!(
                "rekey stage canary s3://ml-a job 1 part 3 {}",
                token(&plan, "canary", "ml-a", 1, 3)
            )
        );
        assert!(description(&plan, &"s".repeat(300), "b", 1, 0).len() <= 256);
        // Two plans whose hashes share a prefix never share a description.
        let a = format!("0123456789ab{}", "0".repeat(52));
        let b = format!("0123456789ab{}", "f".repeat(52));
        assert_ne!(
            description(&a, "canary", "ml-a", 1, 0),
            description(&b, "canary", "ml-a", 1, 0)
        );
    }

    #[test]
    fn manifests_are_url_encoded_and_all_or_no_versions() {
        let mut out = Vec::new();
        let n = write_manifest(
            &mut out,
            "b",
            [("a b/données+1.bin", Some("v1")), ("c,d", Some("v2"))],
            true,
        )
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "b,a%20b/donn%C3%A9es%2B1.bin,v1\nb,c%2Cd,v2\n"
        );
        let mut out = Vec::new();
        assert!(write_manifest(&mut out, "b", [("k", None)], true).is_err());
        let mut out = Vec::new();
        write_manifest(&mut out, "b", [("k", Some("v"))], false).unwrap();
        assert_eq!(out, b"b,k\n");
    }

    #[test]
    fn completion_reports_are_read_and_checked() {
        let m = br#"{"Format":"Report_CSV_20180820","ReportCreationDate":"2026-11-26T00:00:00Z",
            "Results":[{"TaskExecutionStatus":"failed","Bucket":"r","MD5Checksum":"x","Key":"p/job-1/results/a.csv"}],
            "ReportSchema":"Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"}"#;
        let parsed = parse_report_manifest(m).unwrap();
        assert_eq!(parsed.results[0].status, "failed");
        assert_eq!(report_manifest_key("p/", "1"), "p/job-1/manifest.json");
        assert_eq!(report_manifest_key("", "1"), "job-1/manifest.json");
        let other = String::from_utf8_lossy(m).replace("Report_CSV_20180820", "Report_X");
        assert!(parse_report_manifest(other.as_bytes()).is_err());
        let rows = b"b,a%20b/donn%C3%A9es.bin,v1,failed,NoSuchKey,404,The specified key does not exist.\nb,k,,succeeded,,200,Successful\n";
        let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(rows));
        let tasks = parse_results(rows, &md5).unwrap();
        assert_eq!(tasks[0].key, "a b/données.bin");
        assert_eq!(tasks[0].version_id.as_deref(), Some("v1"));
        assert!(!tasks[0].succeeded);
        assert_eq!(tasks[0].error_code.as_deref(), Some("NoSuchKey"));
        assert_eq!(tasks[0].http_status, Some(404));
        assert!(tasks[1].succeeded && tasks[1].version_id.is_none());
        assert!(parse_results(rows, "00").is_err(), "a damaged results file");
        // The user guide's example rows: the HTTP status before the error code.
        let rows = b"b,k,,failed,200,PermanentFailure,\"Lambda returned function error\"\nb,j,,succeeded,200,,\"{}\"\n";
        let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(rows));
        let tasks = parse_results(rows, &md5).unwrap();
        assert_eq!(
            (tasks[0].error_code.as_deref(), tasks[0].http_status),
            (Some("PermanentFailure"), Some(200))
        );
        assert_eq!(
            (tasks[1].error_code.as_deref(), tasks[1].http_status),
            (None, Some(200))
        );
    }
}
