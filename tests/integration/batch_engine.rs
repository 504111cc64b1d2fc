//! The batch engines end to end through the CLI (issue 12): a stage's objects run as S3 Batch
//! Operations jobs on the emulator overlay (behaviour 20), journaled like rekey's own steps,
//! verified, rolled back; unguarded copy jobs refused; failed tasks failed and retried
//! locally; a killed apply re-attaches to its job; a closing window cancels it.

use std::process::Stdio;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use futures::StreamExt;

use crate::apply::{body_of, code, journal_steps, planned, stderr, Ctx};
use crate::harness;

/// The bucket every batch test's manifests and reports go to (keys are unique per job).
const OPS: &str = "rekey-batch-ops";

/// The job role every batch test uses (made by `job_role`).
const ROLE: &str = "rekey-batch";

fn batch_extra(engine: &str, extra: &str) -> String {
    batch_extra_as(engine, ROLE, extra)
}

fn batch_extra_as(engine: &str, role: &str, extra: &str) -> String {
    format!(
        ", engine: {engine}, batch: {{ manifest_bucket: {OPS}, report_bucket: {OPS}, role_arn: \"arn:aws:iam::123456789012:role/{role}\"{extra} }}"
    )
}

/// A role trusting `service`, whose inline policy allows KMS and S3 (idempotent).
pub async fn job_role(endpoint: &str, name: &str, service: &str) {
    let iam = aws_sdk_iam::Client::new(&harness::sdk_config(endpoint).await);
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
    });
    if let Err(e) = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
    {
        let e = e.into_service_error();
        assert!(e.is_entity_already_exists_exception(), "{e:?}");
        return;
    }
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["kms:*", "s3:*"], "Resource": "*"}]
    });
    iam.put_role_policy()
        .role_name(name)
        .policy_name("jobs")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
}

/// The demo estate (one shard) plus `n` SSE-S3 objects in the versioned bucket
/// `ml-fraud-bulk` (batch jobs take versioned buckets only), planned with `s3_extra`; returns
/// the bulk bucket, the fraud key and each object's version id.
async fn planned_batch(
    tag: &str,
    n: usize,
    s3_extra: &str,
) -> (Ctx, String, String, Vec<Option<String>>) {
    let versions = std::sync::Arc::new(std::sync::Mutex::new(vec![None; n]));
    let v2 = versions.clone();
    let (ctx, seeded) = planned(
        tag,
        1,
        s3_extra,
        "limits: { concurrency: 8, requests_per_second: 200 }",
        |s3, prefix| async move {
            job_role(
                &harness::overlay().endpoint,
                ROLE,
                "batchoperations.s3.amazonaws.com",
            )
            .await;
            match s3.create_bucket().bucket(OPS).send().await {
                Ok(_) => {}
                Err(e) => {
                    let e = e.into_service_error();
                    assert!(
                        e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists(),
                        "{e:?}"
                    );
                }
            }
            let bucket = format!("{prefix}ml-fraud-bulk");
            s3.create_bucket().bucket(&bucket).send().await.unwrap();
            harness::enable_versioning(&s3, &bucket).await;
            futures::stream::iter(0..n)
                .map(|i| {
                    let (s3, bucket, v2) = (s3.clone(), bucket.clone(), v2.clone());
                    async move {
                        let out = s3
                            .put_object()
                            .bucket(&bucket)
                            .key(format!("part-{i:04}"))
                            .body(ByteStream::from(body_of(i, 0)))
                            .server_side_encryption(ServerSideEncryption::Aes256)
                            .send()
                            .await
                            .unwrap();
                        v2.lock().unwrap()[i] = out.version_id().map(str::to_string);
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await;
        },
    )
    .await;
    let bucket = ctx.bucket("ml-fraud-bulk");
    let fraud = seeded["keys"]["fraud"].as_str().unwrap().to_string();
    let v = versions.lock().unwrap().clone();
    (ctx, bucket, fraud, v)
}

/// Every bulk object has its body and is on `key` (`None`: not on a KMS key).
async fn bulk_on(ctx: &Ctx, bucket: &str, n: usize, key: Option<&str>) {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let k = format!("part-{i:04}");
            assert_eq!(ctx.kms_key(bucket, &k).await.as_deref(), key, "{k}");
            assert_eq!(ctx.body(bucket, &k).await, body_of(i, 0), "{k} body");
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
}

/// The batch jobs the emulator holds over `bucket` (by the description rekey gives them).
async fn jobs_over(endpoint: &str, bucket: &str) -> Vec<(String, String)> {
    let aws = harness::clients(endpoint).await;
    let out = aws
        .s3control
        .list_jobs()
        .account_id("123456789012")
        .send()
        .await
        .unwrap();
    let mut jobs: Vec<(String, String)> = out
        .jobs()
        .iter()
        .filter(|j| {
            j.description()
                .is_some_and(|d| d.contains(&format!("s3://{bucket} ")))
        })
        .map(|j| {
            (
                j.description().unwrap_or_default().to_string(),
                j.status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    jobs.sort();
    jobs
}

/// Change the test's campaign (`from` → `to`, which must occur) and plan again over the plan.
fn replan(ctx: &Ctx, from: &str, to: &str) {
    let campaign = ctx
        .plan
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("campaign.yaml");
    let text = std::fs::read_to_string(&campaign).unwrap();
    assert!(text.contains(from), "{from:?} is in the campaign");
    std::fs::write(&campaign, text.replace(from, to)).unwrap();
    let out = harness::rekey(&ctx.endpoint)
        .args(["plan", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&ctx.plan)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "plan: {}", stderr(&out));
}

/// An apply whose job over `bucket` runs slowly, SIGKILLed `after_ms` after the job id is
/// journaled: the job keeps running.
async fn killed_mid_job(ctx: &Ctx, bucket: &str, after_ms: u64) {
    slow_tasks(&ctx.endpoint, bucket, 0.1).await;
    let mut child = harness::rekey(&ctx.endpoint)
        .args(["apply", ctx.plan_str(), "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_job(ctx, bucket).await;
    tokio::time::sleep(Duration::from_millis(after_ms)).await;
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

/// Until the job over `bucket` is journaled with its id.
async fn wait_for_job(ctx: &Ctx, bucket: &str) {
    let path = rekey::journal::default_path(&ctx.plan);
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Read-only, errors taken as "not yet": the apply may be creating the journal.
        let seen = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|c| {
            c.query_row(
                "SELECT count(*) FROM steps WHERE kind = 'batch-job' AND bucket = ?1 AND progress LIKE '%job_id%'",
                [bucket],
                |r| r.get::<_, i64>(0),
            )
        })
        .unwrap_or(0);
        if seen > 0 {
            return;
        }
    }
    panic!("the job id over {bucket} was never journaled");
}

pub async fn slow_tasks(endpoint: &str, bucket: &str, seconds: f64) {
    let r = reqwest::Client::new()
        .post(format!("{endpoint}/_rekey/batch"))
        .json(&serde_json::json!({"task_seconds": seconds, "bucket": bucket}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// The states of the journal's batch jobs, and how many members of jobs over `bucket` are in
/// each state.
fn batch_rows(ctx: &Ctx, bucket: &str) -> (Vec<String>, std::collections::BTreeMap<String, usize>) {
    let rows = journal_steps(&ctx.plan);
    let jobs = rows
        .iter()
        .filter(|r| r.kind == "batch-job")
        .map(|r| r.state.clone())
        .collect();
    let mut members = std::collections::BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.is_job_member() && r.bucket == bucket)
    {
        *members.entry(r.state.clone()).or_default() += 1;
    }
    (jobs, members)
}

#[tokio::test]
async fn batch_update_encryption_runs_the_stage_as_jobs_and_rolls_back() {
    let n = 60;
    let (ctx, bucket, fraud, versions) =
        planned_batch("bue", n, &batch_extra("batch-update-encryption", "")).await;
    let plan: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&ctx.plan).unwrap()).unwrap();
    let bulk_jobs: Vec<serde_yaml::Value> = plan["stages"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|s| s["buckets"].as_sequence().unwrap())
        .filter(|b| b["bucket"].as_str() == Some(bucket.as_str()))
        .flat_map(|b| b["jobs"].as_sequence().cloned().unwrap_or_default())
        .collect();
    assert_eq!(bulk_jobs.len(), 1, "one job for the bucket, class and key");
    assert_eq!(
        bulk_jobs[0]["operation"].as_str(),
        Some("update-encryption")
    );
    assert_eq!(bulk_jobs[0]["objects"].as_u64(), Some(n as u64));

    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "apply: {}", stderr(&out));
    bulk_on(&ctx, &bucket, n, Some(&fraud)).await;
    let (jobs, members) = batch_rows(&ctx, &bucket);
    assert!(
        !jobs.is_empty() && jobs.iter().all(|s| s == "succeeded"),
        "{jobs:?}"
    );
    assert_eq!(
        members.keys().collect::<Vec<_>>(),
        vec!["succeeded"],
        "{members:?}"
    );
    let created = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0].1, "Complete");
    let out = ctx.rekey(&["verify", ctx.plan_str(), "--ignore-blocked"]);
    assert_eq!(
        code(&out),
        0,
        "verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Applying again sends nothing: no second job.
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(jobs_over(&ctx.endpoint, &bucket).await, created);

    // Everything comes back but the archived object the plan flagged one-way (SSE-S3 cannot
    // be asked of UpdateObjectEncryption, and a copy needs a restore).
    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    assert_eq!(code(&out), 3, "rollback: {}", stderr(&out));
    let failed: Vec<rekey::journal::StepRow> = journal_steps(&ctx.plan)
        .into_iter()
        .filter(|r| r.undo_state.as_deref() == Some("failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].key, "archive/2019.tar");
    assert!(failed[0]
        .undo_reason
        .as_deref()
        .unwrap_or_default()
        .contains("archived (GLACIER)"));
    bulk_on(&ctx, &bucket, n, None).await;
    let (_, members) = batch_rows(&ctx, &bucket);
    assert_eq!(members.get("succeeded"), Some(&n));

    // The rollback copied each object back as a new current version; the planned versions
    // stay on the team key (UpdateObjectEncryption cannot return a version to SSE-S3).
    for (i, v) in versions.iter().enumerate() {
        assert_eq!(
            version_key(&ctx, &bucket, i, v).await.as_deref(),
            Some(fraud.as_str())
        );
    }

    // Applied again after the rollback: a new part (a new job), never the old job's report.
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "re-apply: {}", stderr(&out));
    let jobs = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(
        jobs.iter()
            .any(|j| j.0.contains(" part 2 ") && j.1 == "Complete"),
        "{jobs:?}"
    );
}

/// The KMS key of version `v` of bulk object `i`.
async fn version_key(ctx: &Ctx, bucket: &str, i: usize, v: &Option<String>) -> Option<String> {
    ctx.s3
        .head_object()
        .bucket(bucket)
        .key(format!("part-{i:04}"))
        .set_version_id(v.clone())
        .send()
        .await
        .unwrap()
        .ssekms_key_id()
        .map(str::to_string)
}

#[tokio::test]
async fn a_rollback_stops_a_running_job_before_it_undoes() {
    let n = 60;
    let (ctx, bucket, _, _) =
        planned_batch("brb", n, &batch_extra("batch-update-encryption", "")).await;
    killed_mid_job(&ctx, &bucket, 800).await;
    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    let jobs = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].1,
        "Cancelled",
        "stopped before the undo: {}",
        stderr(&out)
    );
    assert!(matches!(code(&out), 0 | 3), "rollback: {}", stderr(&out));
    bulk_on(&ctx, &bucket, n, None).await;
    // Nothing of the job runs after the rollback.
    tokio::time::sleep(Duration::from_millis(500)).await;
    bulk_on(&ctx, &bucket, n, None).await;
}

#[tokio::test]
async fn batch_copy_is_refused_unguarded_and_runs_once_accepted() {
    let n = 40;
    let (ctx, bucket, fraud, _) = planned_batch(
        "bcp",
        n,
        &batch_extra("batch-copy", ", accept_unguarded: false"),
    )
    .await;
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 2, "refused: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("unguarded") && err.contains("accept_unguarded: true"),
        "{err}"
    );
    assert!(
        !rekey::journal::default_path(&ctx.plan).exists(),
        "nothing was started"
    );
    bulk_on(&ctx, &bucket, n, None).await;

    // The operator freezes the writers and says so: plan again, apply.
    replan(&ctx, "accept_unguarded: false", "accept_unguarded: true");
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "apply: {}", stderr(&out));
    bulk_on(&ctx, &bucket, n, Some(&fraud)).await;
    let (jobs, members) = batch_rows(&ctx, &bucket);
    assert!(jobs.iter().all(|s| s == "succeeded"), "{jobs:?}");
    assert_eq!(members.get("succeeded"), Some(&n), "{members:?}");
    let out = ctx.rekey(&["verify", ctx.plan_str(), "--ignore-blocked"]);
    assert_eq!(
        code(&out),
        0,
        "verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes", "--output", "json"]);
    assert_eq!(
        code(&out),
        0,
        "rollback: {} {}",
        stderr(&out),
        String::from_utf8_lossy(&out.stdout)
    );
    let told: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(told["failed"], 0, "{told}");
    assert_eq!(told["left_alone"], 0, "{told}");
    assert!(told["undone"].as_u64().unwrap() >= n as u64, "{told}");
    assert_eq!(told["stop"], "completed");
    bulk_on(&ctx, &bucket, n, None).await;
}

#[tokio::test]
async fn failed_tasks_fail_their_steps_and_run_locally_on_request() {
    let n = 30;
    let (ctx, bucket, fraud, versions) =
        planned_batch("bft", n, &batch_extra("batch-update-encryption", "")).await;
    // Three planned versions are deleted after planning (by someone else): their tasks fail.
    for i in [3, 11, 27] {
        ctx.s3
            .delete_object()
            .bucket(&bucket)
            .key(format!("part-{i:04}"))
            .version_id(versions[i].clone().unwrap())
            .send()
            .await
            .unwrap();
    }
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 3, "failed tasks: {}", stderr(&out));
    let failed: Vec<rekey::journal::StepRow> = journal_steps(&ctx.plan)
        .into_iter()
        .filter(|r| r.is_job_member() && r.state == "failed")
        .collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    for r in &failed {
        let why = r.reason.as_deref().unwrap_or_default();
        assert!(why.contains("NoSuchKey") && why.contains("404"), "{why}");
    }
    let out = ctx.rekey(&["status", ctx.plan_str()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--retry-failed-locally"),
        "status says how to retry: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ctx.apply(&["--retry-failed-locally"]);
    assert_eq!(code(&out), 0, "retried locally: {}", stderr(&out));
    let rows = journal_steps(&ctx.plan);
    let vanished = rows
        .iter()
        .filter(|r| r.is_job_member() && r.state == "vanished")
        .count();
    assert_eq!(vanished, 3, "the local engine finds them gone");
    assert!(rows
        .iter()
        .filter(|r| r.kind == "batch-job")
        .all(|r| r.state == "succeeded"));
    for i in (0..n).filter(|i| ![3, 11, 27].contains(i)) {
        let k = format!("part-{i:04}");
        assert_eq!(
            ctx.kms_key(&bucket, &k).await.as_deref(),
            Some(fraud.as_str())
        );
    }
    assert_eq!(jobs_over(&ctx.endpoint, &bucket).await.len(), 1);
}

#[tokio::test]
async fn a_killed_apply_re_attaches_to_its_job() {
    let n = 60;
    let (ctx, bucket, fraud, _) =
        planned_batch("bkill", n, &batch_extra("batch-update-encryption", "")).await;
    killed_mid_job(&ctx, &bucket, 0).await;
    let running = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(running.len(), 1);
    assert_ne!(running[0].1, "Complete", "killed while the job ran");
    slow_tasks(&ctx.endpoint, &bucket, 0.002).await;
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "resumed: {}", stderr(&out));
    let jobs = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(jobs.len(), 1, "re-attached, no second job: {jobs:?}");
    assert_eq!(jobs[0].1, "Complete");
    bulk_on(&ctx, &bucket, n, Some(&fraud)).await;
    let (_, members) = batch_rows(&ctx, &bucket);
    assert_eq!(members.get("succeeded"), Some(&n), "{members:?}");
}

#[tokio::test]
async fn a_closing_window_cancels_the_job_and_the_next_apply_finishes() {
    let n = 80;
    let (ctx, bucket, fraud, _) =
        planned_batch("bwin", n, &batch_extra("batch-update-encryption", "")).await;
    slow_tasks(&ctx.endpoint, &bucket, 0.15).await;
    let until = (chrono::Utc::now() + chrono::Duration::seconds(6))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let out = ctx.apply(&["--window", &format!("until={until}")]);
    assert_eq!(code(&out), 5, "window closed: {}", stderr(&out));
    let jobs = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].1, "Cancelled");
    let (_, members) = batch_rows(&ctx, &bucket);
    let told = members.get("succeeded").copied().unwrap_or(0);
    assert!(
        told > 0 && told < n,
        "some tasks ran before the cancel: {members:?}"
    );
    slow_tasks(&ctx.endpoint, &bucket, 0.002).await;
    let out = ctx.apply(&["--window", "none"]);
    assert_eq!(code(&out), 0, "the next apply finishes: {}", stderr(&out));
    let jobs = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(
        jobs.len(),
        2,
        "a second part for what the first left: {jobs:?}"
    );
    assert!(
        jobs.iter()
            .any(|j| j.0.contains(" part 2 ") && j.1 == "Complete"),
        "{jobs:?}"
    );
    bulk_on(&ctx, &bucket, n, Some(&fraud)).await;
    let (_, members) = batch_rows(&ctx, &bucket);
    assert_eq!(members.get("succeeded"), Some(&n), "{members:?}");
}

#[tokio::test]
async fn a_job_role_that_cannot_run_the_jobs_is_refused_before_any_write() {
    let n = 5;
    let endpoint = harness::overlay().endpoint.clone();
    job_role(&endpoint, "rekey-batch-ec2", "ec2.amazonaws.com").await;
    let (ctx, bucket, _, _) = planned_batch(
        "brole",
        n,
        &batch_extra_as("batch-update-encryption", "rekey-batch-ec2", ""),
    )
    .await;
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not let batchoperations.s3.amazonaws.com assume it"),
        "{}",
        stderr(&out)
    );
    bulk_on(&ctx, &bucket, n, None).await;

    replan(&ctx, "role/rekey-batch-ec2", "role/rekey-batch-gone");
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rekey-batch-gone does not exist"),
        "{}",
        stderr(&out)
    );
    bulk_on(&ctx, &bucket, n, None).await;
    assert!(
        jobs_over(&ctx.endpoint, &bucket).await.is_empty(),
        "no job was created"
    );
}

/// A role of its own (trusting S3 Batch Operations) with `policy` as its only inline policy.
async fn role_with_policy(endpoint: &str, name: &str, policy: serde_json::Value) {
    let iam = aws_sdk_iam::Client::new(&harness::sdk_config(endpoint).await);
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "batchoperations.s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    });
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name(name)
        .policy_name("jobs")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
}

/// The job role's S3 permissions are evaluated before any write: the objects' operation, the
/// manifest read and the report write, each named with the statement to add; a Deny wins.
#[tokio::test]
async fn a_job_role_without_the_s3_permissions_is_refused_before_any_write() {
    let n = 3;
    let endpoint = harness::overlay().endpoint.clone();
    let tag = harness::unique("s3perm").trim_end_matches('-').to_string();
    let (kms_only, deny_report) = (format!("{tag}-kms"), format!("{tag}-deny"));
    role_with_policy(
        &endpoint,
        &kms_only,
        serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}
        ]}),
    )
    .await;
    role_with_policy(
        &endpoint,
        &deny_report,
        serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["kms:*", "s3:*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:PutObject", "Resource": format!("arn:aws:s3:::{OPS}/*")}
        ]}),
    )
    .await;
    let (ctx, bucket, _, _) = planned_batch(
        "bs3perm",
        n,
        &batch_extra_as("batch-update-encryption", &kms_only, ""),
    )
    .await;
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("s3:PutObject on arn:aws:s3:::{bucket}/* (no statement of its IAM policies allows"))
            && stderr(&out).contains(&format!("s3:UpdateObjectEncryption on arn:aws:s3:::{bucket}/*"))
            && stderr(&out).contains(&format!("s3:PutObject on arn:aws:s3:::{OPS}/rekey/*"))
            && !stderr(&out).contains("s3:GetObject on")
            && stderr(&out).contains(&format!("{{\"Effect\": \"Allow\", \"Action\": \"s3:UpdateObjectEncryption\", \"Resource\": \"arn:aws:s3:::{bucket}/*\"}}")),
        "{}",
        stderr(&out)
    );
    bulk_on(&ctx, &bucket, n, None).await;
    replan(
        &ctx,
        &format!("role/{kms_only}"),
        &format!("role/{deny_report}"),
    );
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("s3:PutObject on arn:aws:s3:::{OPS}/rekey/* ("))
            && stderr(&out).contains("denies s3:PutObject")
            && !stderr(&out).contains("s3:UpdateObjectEncryption on"),
        "{}",
        stderr(&out)
    );
    bulk_on(&ctx, &bucket, n, None).await;
    assert!(
        jobs_over(&ctx.endpoint, &bucket).await.is_empty(),
        "no job was created"
    );
}

// ---------------------------------------------------------------------------------------
// From the break-it review of issue 12 (each failed before its fix; adapted to the rule that
// batch jobs take versioned buckets only).
// ---------------------------------------------------------------------------------------

/// The member step of `bucket/key` in the plan's default journal.
fn member(ctx: &Ctx, bucket: &str, key: &str) -> rekey::journal::StepRow {
    journal_steps(&ctx.plan)
        .into_iter()
        .find(|r| r.is_job_member() && r.bucket == bucket && r.key == key)
        .unwrap_or_else(|| panic!("no member step for s3://{bucket}/{key}"))
}

async fn put_foreign(ctx: &Ctx, bucket: &str, key: &str, body: &[u8], kms: Option<&str>) {
    let put = ctx
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()));
    let put = match kms {
        Some(k) => put
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(k),
        None => put.server_side_encryption(ServerSideEncryption::Aes256),
    };
    put.send().await.unwrap();
}

/// I3: the journal a crash between CreateJob's answer and the journaling of its id leaves
/// (members started, manifest ETag journaled, no job id). The rollback finds the job by its
/// description and stops it before it undoes anything.
#[tokio::test]
async fn a_rollback_finds_and_stops_a_job_whose_id_was_never_journaled() {
    let n = 60;
    let (ctx, bucket, _, _) =
        planned_batch("bnoid", n, &batch_extra("batch-update-encryption", "")).await;
    killed_mid_job(&ctx, &bucket, 0).await;
    let path = rekey::journal::default_path(&ctx.plan);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (id, progress): (i64, String) = conn
        .query_row(
            "SELECT id, progress FROM steps WHERE kind = 'batch-job' AND bucket = ?1",
            [&bucket],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut p: serde_json::Value = serde_json::from_str(&progress).unwrap();
    assert!(p["manifest_etag"].is_string(), "{p}");
    p.as_object_mut().unwrap().remove("job_id");
    conn.execute(
        "UPDATE steps SET progress = ?2 WHERE id = ?1",
        rusqlite::params![id, p.to_string()],
    )
    .unwrap();
    drop(conn);

    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    assert!(matches!(code(&out), 0 | 3), "rollback: {}", stderr(&out));
    let jobs = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].1,
        "Cancelled",
        "stopped before the undo: {}",
        stderr(&out)
    );
    bulk_on(&ctx, &bucket, n, None).await;
}

/// I1/I2: a write made after the plan (a new current version) is not re-keyed: the job is
/// pinned to the planned version, and the journal's claim (that version) holds.
#[tokio::test]
async fn batch_update_encryption_leaves_a_write_made_after_the_plan_alone() {
    let n = 10;
    let (ctx, bucket, fraud, versions) =
        planned_batch("bnew", n, &batch_extra("batch-update-encryption", "")).await;
    let foreign = b"another writer's object, written after the plan".to_vec();
    put_foreign(&ctx, &bucket, "part-0004", &foreign, None).await;
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(ctx.body(&bucket, "part-0004").await, foreign);
    assert_eq!(
        ctx.kms_key(&bucket, "part-0004").await,
        None,
        "left as written"
    );
    let m = member(&ctx, &bucket, "part-0004");
    assert_eq!(m.state, "succeeded");
    assert_eq!(
        version_key(&ctx, &bucket, 4, &versions[4]).await.as_deref(),
        Some(fraud.as_str()),
        "the planned version is what the journal says"
    );
    // Rolled back: the foreign write stays as written, reported.
    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    assert!(matches!(code(&out), 0 | 3), "{}", stderr(&out));
    assert_eq!(ctx.body(&bucket, "part-0004").await, foreign);
    assert_eq!(
        member(&ctx, &bucket, "part-0004").undo_state.as_deref(),
        Some("conflict")
    );
}

/// I3: a batch copy member has no ETag from the report; a write made on the team key after
/// the plan (its task refused with 412: drifted, never undone) or after the job (a newer
/// version than rekey's copy) is left alone by the rollback and reported.
#[tokio::test]
async fn batch_copy_rollback_leaves_foreign_writes_on_the_team_key_alone() {
    let n = 10;
    let (ctx, bucket, fraud, _) = planned_batch(
        "bfw",
        n,
        &batch_extra("batch-copy", ", accept_unguarded: true"),
    )
    .await;
    // After the plan's time (UnModifiedSinceConstraint has second granularity).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = b"written after the plan, before the job".to_vec();
    put_foreign(&ctx, &bucket, "part-0003", &before, Some(&fraud)).await;
    let out = ctx.apply(&[]);
    assert_eq!(
        code(&out),
        3,
        "a drifted step gates the stage: {}",
        stderr(&out)
    );
    let m3 = member(&ctx, &bucket, "part-0003");
    assert_eq!(m3.state, "drifted", "{:?}", m3.reason);
    assert!(
        m3.reason
            .as_deref()
            .unwrap_or_default()
            .contains("UnModifiedSinceConstraint"),
        "{:?}",
        m3.reason
    );
    let after = b"written after the job".to_vec();
    put_foreign(&ctx, &bucket, "part-0004", &after, Some(&fraud)).await;

    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    assert!(matches!(code(&out), 0 | 3), "rollback: {}", stderr(&out));
    for (k, body) in [("part-0003", &before), ("part-0004", &after)] {
        assert_eq!(&ctx.body(&bucket, k).await, body, "{k}: bytes kept");
        assert_eq!(
            ctx.kms_key(&bucket, k).await.as_deref(),
            Some(fraud.as_str()),
            "{k}: another writer's object left as written"
        );
    }
    assert_eq!(
        member(&ctx, &bucket, "part-0003").undo_state,
        None,
        "never undone"
    );
    assert_eq!(
        member(&ctx, &bucket, "part-0004").undo_state.as_deref(),
        Some("conflict")
    );
    // The others went back.
    for i in [0usize, 1, 2, 5, 9] {
        assert_eq!(ctx.kms_key(&bucket, &format!("part-{i:04}")).await, None);
    }
}

/// I2: a second journal of the same plan (`--journal`) names its jobs after itself: it never
/// re-attaches to the first journal's job (rolled back) nor takes its report.
#[tokio::test]
async fn a_new_journal_never_takes_an_old_jobs_report() {
    let n = 10;
    let (ctx, bucket, _, _) =
        planned_batch("bj2", n, &batch_extra("batch-update-encryption", "")).await;
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "apply: {}", stderr(&out));
    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    assert!(matches!(code(&out), 0 | 3), "rollback: {}", stderr(&out));
    let first = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(first.len(), 1);

    let other = ctx.plan.with_file_name("second.journal.sqlite");
    let out = ctx.apply(&["--journal", other.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let jobs = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(jobs.len(), 2, "its own job: {jobs:?}");
    assert!(jobs.iter().all(|j| j.1 == "Complete"), "{jobs:?}");
}

/// A stage may name its own engine: the bulk of a campaign as batch jobs, one stage run by
/// rekey itself.
#[tokio::test]
async fn a_stage_names_its_own_engine() {
    let n = 6;
    let (ctx, bucket, _, _) =
        planned_batch("bstage", n, &batch_extra("batch-update-encryption", "")).await;
    let jobs_of = |plan: &std::path::Path| -> usize {
        rekey::plan::load(plan)
            .unwrap()
            .stages
            .iter()
            .flat_map(|s| &s.buckets)
            .filter(|b| b.bucket == bucket)
            .map(|b| b.jobs.len())
            .sum()
    };
    assert_eq!(jobs_of(&ctx.plan), 1);
    replan(
        &ctx,
        "{ name: fraud,  match: { key: fraud } }",
        "{ name: fraud,  match: { key: fraud }, engine: update-encryption }",
    );
    assert_eq!(jobs_of(&ctx.plan), 0, "the fraud stage runs locally");
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(jobs_over(&ctx.endpoint, &bucket).await.is_empty());
    let rows = journal_steps(&ctx.plan);
    assert!(rows
        .iter()
        .filter(|r| r.bucket == bucket && r.kind == "update-encryption")
        .all(|r| r.job.is_none() && r.state == "succeeded"));
}

/// From the second review of issue 12 (I2): a copy job's guard would refuse rekey's own
/// copies back; after a rollback the re-apply runs what is left with rekey's guarded copy.
#[tokio::test]
async fn batch_copy_applies_again_after_a_rollback() {
    let n = 10;
    let (ctx, bucket, fraud, _) = planned_batch(
        "bagain",
        n,
        &batch_extra("batch-copy", ", accept_unguarded: true"),
    )
    .await;
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "apply: {}", stderr(&out));
    bulk_on(&ctx, &bucket, n, Some(&fraud)).await;
    // A second passes (Last-Modified has second precision).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    assert!(matches!(code(&out), 0 | 3), "rollback: {}", stderr(&out));
    bulk_on(&ctx, &bucket, n, None).await;
    let out = ctx.apply(&[]);
    assert_eq!(
        code(&out),
        0,
        "re-apply after the rollback: {}",
        stderr(&out)
    );
    bulk_on(&ctx, &bucket, n, Some(&fraud)).await;
    assert_eq!(
        jobs_over(&ctx.endpoint, &bucket).await.len(),
        1,
        "no second copy job"
    );
    let out = ctx.rekey(&["rollback", ctx.plan_str(), "--yes"]);
    assert!(matches!(code(&out), 0 | 3), "rollback: {}", stderr(&out));
    bulk_on(&ctx, &bucket, n, None).await;
}

/// A job lists at most `max_objects_per_job` objects (rekey builds its manifest in memory):
/// more make more jobs, each run and told like the first.
#[tokio::test]
async fn a_large_bucket_is_cut_into_jobs_of_bounded_size() {
    let n = 60;
    let (ctx, bucket, fraud, _) = planned_batch(
        "bcut",
        n,
        &batch_extra("batch-update-encryption", ", max_objects_per_job: 25"),
    )
    .await;
    let plan = rekey::plan::load(&ctx.plan).unwrap();
    let sizes: Vec<u64> = plan
        .stages
        .iter()
        .flat_map(|s| &s.buckets)
        .filter(|b| b.bucket == bucket)
        .flat_map(|b| b.jobs.iter().map(|j| j.objects))
        .collect();
    assert_eq!(sizes, vec![25, 25, 10]);
    let out = ctx.apply(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    bulk_on(&ctx, &bucket, n, Some(&fraud)).await;
    let jobs = jobs_over(&ctx.endpoint, &bucket).await;
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    assert!(jobs.iter().all(|j| j.1 == "Complete"), "{jobs:?}");
    let (_, members) = batch_rows(&ctx, &bucket);
    assert_eq!(members.get("succeeded"), Some(&n), "{members:?}");
}

// ---------------------------------------------------------------------------------------
// Review 2 (break-it, from the invariants).
// ---------------------------------------------------------------------------------------

/// Review 2 (I5): a job role whose IAM policy denies the job's operation on one of its objects
/// (IAM evaluates each task's object ARN) is accepted: the preflight asks about the literal
/// pattern `arn:aws:s3:::BUCKET/*`, which the Deny's resource does not match.
#[tokio::test]
async fn review2_a_deny_on_one_of_the_jobs_objects_is_refused() {
    let n = 3;
    let endpoint = harness::overlay().endpoint.clone();
    let tag = harness::unique("r2deny").trim_end_matches('-').to_string();
    let role = format!("{tag}-part");
    role_with_policy(
        &endpoint,
        &role,
        serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["kms:*", "s3:*"], "Resource": "*"},
            {"Effect": "Deny", "Action": ["s3:PutObject", "s3:UpdateObjectEncryption"],
             "Resource": "arn:aws:s3:::*ml-fraud-bulk/part-0001"}
        ]}),
    )
    .await;
    let (ctx, bucket, _, _) = planned_batch(
        "br2deny",
        n,
        &batch_extra_as("batch-update-encryption", &role, ""),
    )
    .await;
    let out = ctx.apply(&[]);
    let jobs = jobs_over(&ctx.endpoint, &bucket).await;
    eprintln!(
        "apply exit {}: {}\njobs: {jobs:?}",
        code(&out),
        stderr(&out)
    );
    assert_eq!(
        code(&out),
        2,
        "I5: the role may not update s3://{bucket}/part-0001: refused before any write"
    );
    assert!(jobs.is_empty(), "no job was created");
    bulk_on(&ctx, &bucket, n, None).await;
}

/// Review 2 (functional; nothing unsafe): a campaign with S3 batch jobs *and* Cloud
/// Storage batch jobs. `preflight::gcs_batch` is given every job of the stages, the S3 ones
/// too, and reads each job's bucket from Cloud Storage.
#[tokio::test]
async fn review2_a_campaign_with_s3_and_gcs_batch_jobs_applies() {
    use crate::apply::body_of;
    let n = 3;
    let (ctx, bucket, _, _) =
        planned_batch("br2mix", n, &batch_extra("batch-update-encryption", "")).await;
    let gep = harness::gcs_server().endpoint.clone();
    let project = format!("{}proj", ctx.prefix);
    let key = |k: &str| format!("projects/{project}/locations/us/keyRings/ml/cryptoKeys/{k}");
    let (team, legacy) = (key("team"), key("legacy"));
    harness::gcp_key(&gep, &team, "");
    harness::gcp_key(&gep, &legacy, "");
    let gcs = rekey::providers::gcs::GcsClient::new(&project, Some(&gep));
    let gbucket = format!("{}ml-fraud-gcs", ctx.prefix);
    let ops = format!("{}gops", ctx.prefix);
    gcs.create_bucket(
        serde_json::json!({ "name": gbucket, "storageClass": "STANDARD",
        "encryption": { "defaultKmsKeyName": legacy } }),
    )
    .await
    .unwrap();
    gcs.create_bucket(serde_json::json!({ "name": ops }))
        .await
        .unwrap();
    for i in 0..n {
        gcs.upload(&gbucket, &format!("g-{i}"), body_of(i, 0), None)
            .await
            .unwrap();
    }
    crate::interleave::http(
        &gep,
        "PATCH",
        &format!("/v2/projects/{project}/locations/global/storageIntelligenceConfig"),
        "{\"editionConfig\": \"STANDARD\"}",
    );
    let campaign = ctx
        .plan
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("campaign.yaml");
    let text = std::fs::read_to_string(&campaign).unwrap();
    let fraud = format!("fraud:  {{ aws: alias/{}ml-fraud }}", ctx.prefix);
    assert!(text.contains(&fraud), "{text}");
    let text = text
        .replace(
            &fraud,
            &format!("fraud:  {{ aws: alias/{}ml-fraud, gcp: {team} }}", ctx.prefix),
        )
        .replacen(
            "keys:\n",
            &format!("gcp:\n  project: {project}\n  endpoint: {gep}\n  gcs: {{ buckets: [\"{gbucket}\"], engine: batch-rewrite, batch: {{ manifest_bucket: {ops}, accept_unguarded: true }} }}\nkeys:\n"),
            1,
        );
    std::fs::write(&campaign, &text).unwrap();
    let out = harness::rekey(&ctx.endpoint)
        .args(["plan", "-c"])
        .arg(&campaign)
        .arg("-o")
        .arg(&ctx.plan)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "plan: {}", stderr(&out));
    let pf = rekey::plan::load(&ctx.plan).unwrap();
    let jobs: Vec<(String, String)> = pf
        .stages
        .iter()
        .flat_map(|s| &s.buckets)
        .flat_map(|b| {
            b.jobs
                .iter()
                .map(move |j| (b.bucket.clone(), j.operation.clone()))
        })
        .collect();
    eprintln!("planned jobs: {jobs:?}");
    assert!(jobs.iter().any(|j| j.0 == bucket) && jobs.iter().any(|j| j.0 == gbucket));
    let out = ctx.apply(&[]);
    eprintln!("apply exit {}: {}", code(&out), stderr(&out));
    assert_eq!(code(&out), 0, "a mixed campaign applies: {}", stderr(&out));
}

/// Review 2 (I5): the job role reads its manifest and writes its report as objects of the
/// manifest/report bucket, which rekey puts with that bucket's default encryption. With an
/// SSE-KMS default whose key policy denies the job role the key (rekey's operator may use
/// it), S3 cannot read the manifest: the job fails. The preflight checks the role's
/// S3 permissions on the manifest and report, and its KMS use of the *objects'* keys only.
#[tokio::test]
async fn review2_a_manifest_bucket_on_a_key_the_job_role_cannot_use_is_refused() {
    let n = 3;
    let endpoint = harness::overlay().endpoint.clone();
    let aws = harness::clients(&endpoint).await;
    let kms = aws_sdk_kms::Client::new(&harness::sdk_config(&endpoint).await);
    let ops = format!("{}kmsops", harness::unique("r2ops"));
    // A key the account (rekey's operator) may use through IAM, denied to the job role.
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "NotTheJobRole", "Effect": "Deny",
         "Principal": {"AWS": format!("arn:aws:iam::123456789012:role/{ROLE}")},
         "Action": "kms:*", "Resource": "*"}]});
    let key = kms
        .create_key()
        .policy(policy.to_string())
        .bypass_policy_lockout_safety_check(true)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    aws.s3.create_bucket().bucket(&ops).send().await.unwrap();
    harness::set_kms_default(&aws.s3, &ops, &key, false).await;
    let extra = format!(
        ", engine: batch-update-encryption, batch: {{ manifest_bucket: {ops}, report_bucket: {ops}, role_arn: \"arn:aws:iam::123456789012:role/{ROLE}\" }}"
    );
    let (ctx, bucket, _, _) = planned_batch("br2kops", n, &extra).await;
    let out = ctx.apply(&[]);
    let jobs = jobs_over(&ctx.endpoint, &bucket).await;
    eprintln!(
        "apply exit {}: {}\njobs: {jobs:?}",
        code(&out),
        stderr(&out)
    );
    assert_eq!(
        code(&out),
        2,
        "I5: the job role cannot decrypt its manifest (s3://{ops}, default key {key})"
    );
    assert!(jobs.is_empty(), "no job was created");
}
