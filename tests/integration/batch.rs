//! S3 Batch Operations through rekey's provider (issue 12, first part): a manifest written
//! once and never over another object, a job created once per token and found again by its
//! description, watched to its end, and its completion report read back task by task.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use rekey::batch::{self, JobOperation, JobRequest};
use rekey::providers::{S3Batch, S3Read};

use crate::harness::{self, overlay, unique};

async fn wait_over(aws: &rekey::providers::aws::AwsClients, id: &str) -> batch::JobInfo {
    for _ in 0..400 {
        let j = aws.describe_job(id).await.unwrap();
        if j.is_over() {
            return j;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("job {id} never ended");
}

#[tokio::test]
async fn a_job_is_created_once_found_again_and_its_report_read() {
    let endpoint = &overlay().endpoint;
    let aws = harness::clients(endpoint).await;
    let p = unique("bj");
    let bucket = format!("{p}data");
    aws.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    harness::enable_versioning(&aws.s3, &bucket).await;
    let kms = aws_sdk_kms::Client::new(&harness::sdk_config(endpoint).await);
    let key_arn = crate::interleave::kms_key(&kms, &format!("alias/{p}batch")).await;
    let mut objects = Vec::new();
    for k in ["models/a b.bin", "models/données.bin", "models/c+d.bin"] {
        let out = aws
            .s3
            .put_object()
            .bucket(&bucket)
            .key(k)
            .body(ByteStream::from_static(b"weights"))
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .unwrap();
        objects.push((k.to_string(), out.version_id().unwrap().to_string()));
    }
    // One row names a version that does not exist: its task fails.
    objects.push(("models/gone.bin".into(), "nope".into()));
    let mut manifest = Vec::new();
    batch::write_manifest(
        &mut manifest,
        &bucket,
        objects.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
        true,
    )
    .unwrap();
    let plan = "c0ffee".repeat(10);
    let manifest_key = format!(
        "rekey/jobs/{}.csv",
        batch::token(&plan, "canary", &bucket, 1, 0)
    );
    let etag = aws
        .put_manifest(&bucket, &manifest_key, manifest.clone())
        .await
        .unwrap();
    // Never written over: a second put of the same manifest is refused.
    let again = aws.put_manifest(&bucket, &manifest_key, manifest).await;
    assert!(
        matches!(again, Err(rekey::error::ProviderError::Precondition { .. })),
        "{again:?}"
    );
    let req = JobRequest {
        token: batch::token(&plan, "canary", &bucket, 1, 0),
        description: batch::description(&plan, "canary", &bucket, 1, 0),
        bucket: bucket.clone(),
        operation: JobOperation::UpdateEncryption {
            key_arn: key_arn.clone(),
            bucket_key: false,
        },
        manifest_bucket: bucket.clone(),
        manifest_key,
        manifest_etag: etag,
        versioned: true,
        report_bucket: bucket.clone(),
        report_prefix: "rekey/reports".into(),
        role_arn: "arn:aws:iam::123456789012:role/batch".into(),
        priority: 10,
        confirm: false,
    };
    // A resumed apply looks the job up before it creates one: none yet.
    assert_eq!(aws.find_job(&req.description).await.unwrap(), None);
    let id = aws.create_job(&req).await.unwrap();
    assert_eq!(aws.create_job(&req).await.unwrap(), id, "one job per token");
    let found = aws.find_job(&req.description).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    let job = wait_over(&aws, &id).await;
    assert_eq!(
        (job.status.as_str(), job.total, job.succeeded, job.failed),
        ("Complete", 4, 3, 1)
    );
    // The report, task by task.
    let m = aws
        .read_small(
            &bucket,
            &batch::report_manifest_key("rekey/reports", &id),
            1 << 20,
        )
        .await
        .unwrap();
    let m = batch::parse_report_manifest(&m).unwrap();
    let mut tasks = Vec::new();
    for f in &m.results {
        let data = aws.read_small(&f.bucket, &f.key, 1 << 20).await.unwrap();
        tasks.extend(batch::parse_results(&data, &f.md5).unwrap());
    }
    tasks.sort_by(|a, b| a.key.cmp(&b.key));
    let seen: Vec<(&str, Option<&str>, bool)> = tasks
        .iter()
        .map(|t| (t.key.as_str(), t.version_id.as_deref(), t.succeeded))
        .collect();
    assert_eq!(seen.len(), 4, "{tasks:?}");
    for (k, v) in &objects {
        let t = tasks.iter().find(|t| &t.key == k).unwrap();
        assert_eq!(t.version_id.as_deref(), Some(v.as_str()));
        assert_eq!(t.succeeded, k != "models/gone.bin", "{t:?}");
    }
    let gone = tasks.iter().find(|t| t.key == "models/gone.bin").unwrap();
    assert_eq!(
        (gone.error_code.as_deref(), gone.http_status),
        (Some("NoSuchKey"), Some(404))
    );
    // The versions were re-keyed in place.
    for (k, v) in objects.iter().take(3) {
        let h = aws.head_object(&bucket, k, Some(v)).await.unwrap();
        assert_eq!(
            h.encryption.kms_key_arn.as_deref(),
            Some(key_arn.as_str()),
            "{k}"
        );
    }
}

#[tokio::test]
async fn a_job_waiting_for_confirmation_can_be_cancelled() {
    let endpoint = &overlay().endpoint;
    let aws = harness::clients(endpoint).await;
    let p = unique("bc");
    let bucket = format!("{p}data");
    aws.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let mut manifest = Vec::new();
    batch::write_manifest(&mut manifest, &bucket, [("k", None)], false).unwrap();
    let etag = aws.put_manifest(&bucket, "m.csv", manifest).await.unwrap();
    let plan = "beef".repeat(16);
    let req = JobRequest {
        token: batch::token(&plan, "s", &bucket, 1, 0),
        description: batch::description(&plan, "s", &bucket, 1, 0),
        bucket: bucket.clone(),
        operation: JobOperation::Copy {
            key_arn: "arn:aws:kms:us-east-1:123456789012:key/none".into(),
            bucket_key: true,
            storage_class: "STANDARD".into(),
            unmodified_since: Some(chrono::Utc::now()),
        },
        manifest_bucket: bucket.clone(),
        manifest_key: "m.csv".into(),
        manifest_etag: etag,
        versioned: false,
        report_bucket: bucket.clone(),
        report_prefix: String::new(),
        role_arn: "arn:aws:iam::123456789012:role/batch".into(),
        priority: 5,
        confirm: true,
    };
    let id = aws.create_job(&req).await.unwrap();
    aws.cancel_job(&id, "the maintenance window closed")
        .await
        .unwrap();
    let job = wait_over(&aws, &id).await;
    assert_eq!(job.status, "Cancelled");
    assert_eq!(job.succeeded + job.failed, 0, "no task ran");
}

/// A bucket of `n` SSE-S3 objects, its job manifest written, and a request to re-key them.
async fn estate(
    aws: &rekey::providers::aws::AwsClients,
    endpoint: &str,
    tag: &str,
    n: usize,
) -> JobRequest {
    let p = unique(tag);
    let bucket = format!("{p}data");
    aws.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let kms = aws_sdk_kms::Client::new(&harness::sdk_config(endpoint).await);
    let key_arn = crate::interleave::kms_key(&kms, &format!("alias/{p}batch")).await;
    let keys: Vec<String> = (0..n).map(|i| format!("shards/{i:04}.bin")).collect();
    futures::future::join_all(keys.iter().map(|k| {
        aws.s3
            .put_object()
            .bucket(&bucket)
            .key(k)
            .body(ByteStream::from_static(b"x"))
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
    }))
    .await
    .into_iter()
    .for_each(|r| {
        r.unwrap();
    });
    let mut manifest = Vec::new();
    batch::write_manifest(
        &mut manifest,
        &bucket,
        keys.iter().map(|k| (k.as_str(), None)),
        false,
    )
    .unwrap();
    let etag = aws.put_manifest(&bucket, "m.csv", manifest).await.unwrap();
    let plan = "d00d".repeat(16);
    JobRequest {
        token: batch::token(&plan, tag, &bucket, 1, 0),
        description: batch::description(&plan, tag, &bucket, 1, 0),
        bucket: bucket.clone(),
        operation: JobOperation::UpdateEncryption {
            key_arn,
            bucket_key: true,
        },
        manifest_bucket: bucket.clone(),
        manifest_key: "m.csv".into(),
        manifest_etag: etag,
        versioned: false,
        report_bucket: bucket.clone(),
        report_prefix: "reports".into(),
        role_arn: "arn:aws:iam::123456789012:role/batch".into(),
        priority: 10,
        confirm: false,
    }
}

fn fast() -> batch::Watch {
    batch::Watch {
        poll_first: std::time::Duration::from_millis(20),
        poll_max: std::time::Duration::from_millis(100),
        ..Default::default()
    }
}

/// Jobs with this description, whatever their status.
async fn jobs_named(endpoint: &str, description: &str) -> usize {
    let aws = harness::clients(endpoint).await;
    aws.s3control
        .list_jobs()
        .account_id("123456789012")
        .send()
        .await
        .unwrap()
        .jobs()
        .iter()
        .filter(|j| j.description() == Some(description))
        .count()
}

#[tokio::test]
async fn an_interrupted_watch_re_attaches_to_the_same_job_and_reads_every_task() {
    let endpoint = &overlay().endpoint;
    let aws = harness::clients(endpoint).await;
    let req = estate(&aws, endpoint, "bri", 300).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ids = Vec::new();
    let end = batch::run_job(
        &aws,
        &req,
        None,
        &fast(),
        &mut rx,
        &mut |j| {
            ids.push(j.id.clone());
            // Ctrl-C as soon as the job id is journaled.
            let _ = tx.send(());
            Ok(())
        },
        &mut |_| panic!("no task is read before the job ends"),
    )
    .await
    .unwrap();
    let first = match end {
        batch::JobEnd::Interrupted(j) => j,
        other => panic!("{other:?}"),
    };
    assert!(!first.is_over(), "the job keeps running: {first:?}");
    // The next apply has lost the id (a crash before it was journaled): it finds the job
    // by its description, never creates a second one, and reads every task. (Its token is
    // changed here so that only the lookup by description can find the job: the emulator's
    // token idempotency would hide a run that skipped it.)
    let mut again = req.clone();
    again.token = format!("{}z", &req.token[..63]);
    let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    let end = batch::run_job(
        &aws,
        &again,
        None,
        &fast(),
        &mut rx,
        &mut |_| Ok(()),
        &mut |t| {
            tasks.push(t);
            Ok(())
        },
    )
    .await
    .unwrap();
    let job = match end {
        batch::JobEnd::Over(j) => j,
        other => panic!("{other:?}"),
    };
    assert_eq!(job.id, first.id);
    assert_eq!((job.status.as_str(), job.succeeded), ("Complete", 300));
    assert_eq!(jobs_named(endpoint, &req.description).await, 1);
    assert_eq!(tasks.len(), 300);
    assert!(tasks.iter().all(|t| t.succeeded && t.bucket == req.bucket));
}

#[tokio::test]
async fn the_window_closing_cancels_the_job_and_the_tasks_that_ran_are_told() {
    let endpoint = &overlay().endpoint;
    let aws = harness::clients(endpoint).await;
    let req = estate(&aws, endpoint, "brw", 300).await;
    let closes = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    let watch = batch::Watch {
        window: Some(rekey::window::WindowSpec::Until(closes)),
        ..fast()
    };
    let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    let end = batch::run_job(
        &aws,
        &req,
        None,
        &watch,
        &mut rx,
        &mut |_| Ok(()),
        &mut |t| {
            tasks.push(t);
            Ok(())
        },
    )
    .await
    .unwrap();
    let job = match end {
        batch::JobEnd::WindowClosed {
            job,
            cancelled: true,
        } => job,
        other => panic!("{other:?}"),
    };
    assert_eq!(job.status, "Cancelled", "{job:?}");
    assert!(job.succeeded < 300, "cancelled before the end: {job:?}");
    assert_eq!(
        tasks.len() as u64,
        job.succeeded + job.failed,
        "every task that ran is told"
    );
    // Re-keyed objects are exactly those the report says.
    let told: std::collections::BTreeSet<&str> = tasks.iter().map(|t| t.key.as_str()).collect();
    for i in 0..300 {
        let k = format!("shards/{i:04}.bin");
        let h = aws.head_object(&req.bucket, &k, None).await.unwrap();
        assert_eq!(
            h.encryption.algorithm == "aws:kms",
            told.contains(k.as_str()),
            "{k}: {h:?}"
        );
    }
    // With the window closed, no job is created.
    let mut other = req.clone();
    other.token = format!("{}x", &req.token[..60]);
    other.description = format!("{} (another)", req.description);
    let closed = batch::Watch {
        window: Some(rekey::window::WindowSpec::Until(chrono::Utc::now())),
        ..fast()
    };
    let err = batch::run_job(
        &aws,
        &other,
        None,
        &closed,
        &mut rx,
        &mut |_| Ok(()),
        &mut |_| Ok(()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("window is closing"), "{err}");
    assert_eq!(jobs_named(endpoint, &other.description).await, 0);
}

/// A job with this plan's description whose report tells only failed tasks (someone else's,
/// or made by hand): its succeeded tasks cannot be told, so the run fails rather than lose
/// them; and a copy job of listed versions is refused before anything is created.
#[tokio::test]
async fn a_report_that_does_not_tell_every_task_is_refused() {
    use aws_sdk_s3control::types::{
        JobManifest, JobManifestFieldName, JobManifestFormat, JobManifestLocation, JobManifestSpec,
        JobReport, JobReportFormat, JobReportScope, ObjectEncryption,
        S3UpdateObjectEncryptionOperation, S3UpdateObjectEncryptionSsekms,
    };
    let endpoint = &overlay().endpoint;
    let aws = harness::clients(endpoint).await;
    let req = estate(&aws, endpoint, "brf", 5).await;
    let JobOperation::UpdateEncryption { key_arn, .. } = &req.operation else {
        unreachable!()
    };
    aws.s3control
        .create_job()
        .account_id("123456789012")
        .client_request_token("someone-else")
        .description(&req.description)
        .operation(
            aws_sdk_s3control::types::JobOperation::builder()
                .s3_update_object_encryption(
                    S3UpdateObjectEncryptionOperation::builder()
                        .object_encryption(
                            ObjectEncryption::builder()
                                .ssekms(
                                    S3UpdateObjectEncryptionSsekms::builder()
                                        .kms_key_arn(key_arn)
                                        .build()
                                        .unwrap(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .manifest(
            JobManifest::builder()
                .spec(
                    JobManifestSpec::builder()
                        .format(JobManifestFormat::S3BatchOperationsCsv20180820)
                        .fields(JobManifestFieldName::Bucket)
                        .fields(JobManifestFieldName::Key)
                        .build()
                        .unwrap(),
                )
                .location(
                    JobManifestLocation::builder()
                        .object_arn(format!(
                            "arn:aws:s3:::{}/{}",
                            req.manifest_bucket, req.manifest_key
                        ))
                        .e_tag(req.manifest_etag.trim_matches('"'))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .report(
            JobReport::builder()
                .bucket(format!("arn:aws:s3:::{}", req.report_bucket))
                .format(JobReportFormat::ReportCsv20180820)
                .enabled(true)
                .prefix(&req.report_prefix)
                .report_scope(JobReportScope::FailedTasksOnly)
                .build(),
        )
        .priority(10)
        .role_arn(&req.role_arn)
        .confirmation_required(false)
        .send()
        .await
        .unwrap();
    let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let err = batch::run_job(
        &aws,
        &req,
        None,
        &fast(),
        &mut rx,
        &mut |_| Ok(()),
        &mut |_| Ok(()),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("tells 0 tasks, the job ran 5"),
        "{err}"
    );
    let mut copy = req.clone();
    copy.versioned = true;
    copy.operation = JobOperation::Copy {
        key_arn: key_arn.clone(),
        bucket_key: false,
        storage_class: "STANDARD".into(),
        unmodified_since: None,
    };
    copy.description = format!("{} copy", req.description);
    let err = aws.create_job(&copy).await.unwrap_err();
    assert!(err.to_string().contains("current objects only"), "{err}");
    assert_eq!(jobs_named(endpoint, &copy.description).await, 0);
}
