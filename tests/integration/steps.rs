//! Every step kind, against the emulator: run twice (idempotent); a failure injected before
//! and after its provider call resumes cleanly and unwinds cleanly.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use rekey::apply;
use rekey::events::Silent;
use rekey::executor::{ExecConfig, Stop};
use rekey::journal::Journal;
use rekey::plan;
use rekey::providers::S3Write;
use rekey::retry::{Pacer, RetryPolicy};
use rekey::steps::{
    ProgressHandle, RunCtx, S3Steps, StepOutcome, StepRunner, StepSpec, UndoCtx, UndoOutcome,
};

use crate::apply::{planned, Ctx};
use crate::harness;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Inject {
    Before,
    After,
}

/// Fails the first step of one kind, before or after the real provider call.
struct Faulty<'a, R> {
    inner: &'a R,
    kind: &'static str,
    inject: Inject,
    fired: AtomicBool,
}

fn kind_of(spec: &StepSpec) -> &str {
    match spec {
        StepSpec::BucketDefault { .. } => "bucket-default",
        StepSpec::Object(o) => &o.engine,
        StepSpec::Endpoint { .. } => "endpoint",
        StepSpec::GcsBucketDefault { .. } => "gcs-bucket-default",
        StepSpec::BatchJob(_) => "batch-job",
    }
}

impl<R: StepRunner> StepRunner for Faulty<'_, R> {
    async fn prepare(
        &self,
        spec: &StepSpec,
    ) -> Result<Option<String>, rekey::error::ProviderError> {
        self.inner.prepare(spec).await
    }

    async fn run(&self, spec: &StepSpec, ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        if kind_of(spec) == self.kind && !self.fired.swap(true, Ordering::SeqCst) {
            if self.inject == Inject::After {
                let _ = self.inner.run(spec, ctx).await;
            }
            return (
                StepOutcome::Failed {
                    reason: format!("injected {:?} the call", self.inject),
                },
                0,
            );
        }
        self.inner.run(spec, ctx).await
    }

    async fn undo(&self, spec: &StepSpec, ctx: UndoCtx<'_>) -> UndoOutcome {
        self.inner.undo(spec, ctx).await
    }

    async fn key_usable(
        &self,
        spec: &StepSpec,
        key: &str,
    ) -> Result<Option<String>, rekey::error::ProviderError> {
        self.inner.key_usable(spec, key).await
    }
}

async fn estate(tag: &str, engine: &str) -> Ctx {
    let extra = format!(", multipart_threshold: 5242880, engine: {engine}");
    let (ctx, _) = planned(
        tag,
        1,
        &extra,
        "limits: { concurrency: 4, requests_per_second: 200 }",
        |s3, prefix| async move {
            let bucket = format!("{prefix}ml-fraud-steps");
            s3.create_bucket().bucket(&bucket).send().await.unwrap();
            harness::set_kms_default(&s3, &bucket, &format!("alias/{prefix}legacy"), false).await;
            for (key, size) in [
                ("small-a", 100usize),
                ("small-b", 200),
                ("large", 6 * 1024 * 1024),
            ] {
                s3.put_object()
                    .bucket(&bucket)
                    .key(key)
                    .body(ByteStream::from(vec![b'z'; size]))
                    .server_side_encryption(ServerSideEncryption::Aes256)
                    .send()
                    .await
                    .unwrap();
            }
        },
    )
    .await;
    ctx
}

async fn run_all<R: StepRunner>(plan_path: &Path, runner: &R) -> Stop {
    let p = plan::load(plan_path).unwrap();
    let mut journal =
        apply::open_journal(&p, plan_path, &rekey::journal::default_path(plan_path)).unwrap();
    let stages: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
    let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Every stage runs even after the injected failure: this test is about the one step.
    let cfg = ExecConfig {
        concurrency: 4,
        continue_on_failure: true,
        ..Default::default()
    };
    apply::run_stages(&mut journal, runner, &stages, &cfg, &mut rx, &Silent)
        .await
        .unwrap()
}

fn states(plan_path: &Path) -> Vec<(String, String)> {
    let j = Journal::open(
        &rekey::journal::default_path(plan_path),
        &apply::plan_id(plan_path).unwrap(),
    )
    .unwrap();
    j.steps_from(0)
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.state))
        .collect()
}

fn verify_opts() -> apply::VerifyOptions {
    apply::VerifyOptions {
        concurrency: 4,
        requests_per_second: 500,
        ignore_blocked: true,
        findings: None,
    }
}

/// Roll the whole plan back in-process: (undone, conflicts, failed).
async fn roll_back(
    p: &plan::PlanFile,
    plan_path: &Path,
    aws: &rekey::providers::aws::AwsClients,
) -> (u64, u64, u64) {
    let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = apply::rollback(
        p,
        plan_path,
        &rekey::journal::default_path(plan_path),
        &apply::RollbackOptions {
            to: None,
            concurrency: 4,
            requests_per_second: 500,
        },
        &apply::single(aws.clone()),
        None,
        &Silent,
        &mut rx,
    )
    .await
    .unwrap();
    (out.tally.undone, out.tally.conflicts, out.tally.failed)
}

async fn check_kind(kind: &'static str, engine: &str, inject: Inject) {
    let ctx = estate(
        &format!(
            "{}{}",
            &kind[..4],
            if inject == Inject::Before { "b" } else { "a" }
        ),
        engine,
    )
    .await;
    let aws = harness::clients(&ctx.endpoint).await;
    let pacer = Pacer::new(500);
    let slots = tokio::sync::Semaphore::new(4);
    let real = S3Steps {
        s3: &aws,
        policy: RetryPolicy::default(),
        pacer: &pacer,
        part_slots: &slots,
    };
    let bucket = ctx.bucket("ml-fraud-steps");
    let original_default = aws.bucket_default(&bucket).await.unwrap();

    // A failure at the step: the run completes with that step failed, nothing else lost.
    let faulty = Faulty {
        inner: &real,
        kind,
        inject,
        fired: AtomicBool::new(false),
    };
    assert_eq!(run_all(&ctx.plan, &faulty).await, Stop::Completed);
    assert!(
        faulty.fired.load(Ordering::SeqCst),
        "{kind}: the fault fired"
    );
    let failed: Vec<_> = states(&ctx.plan)
        .into_iter()
        .filter(|(_, s)| s == "failed")
        .collect();
    assert_eq!(
        failed,
        vec![(kind.to_string(), "failed".to_string())],
        "{kind} {inject:?}"
    );

    // Resume: the failed step is re-checked and finished.
    assert_eq!(run_all(&ctx.plan, &real).await, Stop::Completed);
    assert!(
        states(&ctx.plan)
            .iter()
            .all(|(_, s)| s == "succeeded" || s == "blocked"),
        "{kind} {inject:?}: {:?}",
        states(&ctx.plan)
    );
    let p = plan::load(&ctx.plan).unwrap();
    let v = apply::verify_plan(
        &p,
        &ctx.plan,
        &apply::single(aws.clone()),
        None,
        &verify_opts(),
    )
    .await
    .unwrap();
    assert!(
        v.non_compliant.is_empty(),
        "{kind} {inject:?}: {:?}",
        v.non_compliant
    );

    // Idempotent: every step run again finds its work done and changes nothing.
    let j = Journal::open(
        &rekey::journal::default_path(&ctx.plan),
        &apply::plan_id(&ctx.plan).unwrap(),
    )
    .unwrap();
    for row in j
        .steps_from(0)
        .unwrap()
        .iter()
        .filter(|r| r.state == "succeeded")
    {
        let spec: StepSpec = serde_json::from_str(&row.spec).unwrap();
        // A step runs again only as a replay (resumed: the journal says it may have taken
        // effect), twice in a row here; a first run never follows its own success.
        for _ in 0..2 {
            let resumed = true;
            let saver = ProgressHandle::none();
            let ctx = RunCtx {
                resumed,
                progress: None,
                undo: None,
                saver: &saver,
            };
            let (o, _) = real.run(&spec, ctx).await;
            assert!(
                matches!(o, StepOutcome::Succeeded { .. }),
                "{} run again: {o:?}",
                row.kind
            );
        }
    }
    drop(j);
    let v = apply::verify_plan(
        &p,
        &ctx.plan,
        &apply::single(aws.clone()),
        None,
        &verify_opts(),
    )
    .await
    .unwrap();
    assert!(v.non_compliant.is_empty());

    // Unwind: the bucket rule and every object return to what they were before the fault.
    let journal_path = rekey::journal::default_path(&ctx.plan);
    let (undone, conflicts, failed) = roll_back(&p, &ctx.plan, &aws).await;
    let reasons: Vec<_> = Journal::open(&journal_path, &apply::plan_id(&ctx.plan).unwrap())
        .unwrap()
        .steps_from(0)
        .unwrap()
        .into_iter()
        .filter_map(|r| r.undo_reason.map(|u| format!("{} {}: {u}", r.kind, r.key)))
        .collect();
    // The one thing that cannot unwind without a restore: an archived object that
    // UpdateObjectEncryption moved off SSE-S3 (a copy back needs the data). It says so.
    let archived_one_way = reasons
        .iter()
        .filter(|r| r.contains("archived (GLACIER)") && r.contains("restore it"))
        .count() as u64;
    assert_eq!(
        archived_one_way,
        if engine == "update-encryption" { 1 } else { 0 },
        "{reasons:?}"
    );
    assert_eq!(
        (conflicts, failed - archived_one_way),
        (0, 0),
        "{kind} {inject:?}: {reasons:?}"
    );
    assert!(undone >= 4);
    assert_eq!(
        aws.bucket_default(&bucket).await.unwrap(),
        original_default,
        "{kind} {inject:?}: the undo data is the rule before the first attempt"
    );
    for key in ["small-a", "small-b", "large"] {
        let h = ctx
            .s3
            .head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            h.server_side_encryption(),
            Some(&ServerSideEncryption::Aes256),
            "{kind} {inject:?} {key}"
        );
    }
    // A rollback run twice is a no-op the second time.
    let again = roll_back(&p, &ctx.plan, &aws).await;
    assert_eq!(
        again,
        (0, 0, archived_one_way),
        "only the archived object is tried again"
    );
}

#[tokio::test]
async fn bucket_default_step_resumes_and_unwinds() {
    for inject in [Inject::Before, Inject::After] {
        check_kind("bucket-default", "copy", inject).await;
    }
}

#[tokio::test]
async fn copy_step_resumes_and_unwinds() {
    for inject in [Inject::Before, Inject::After] {
        check_kind("copy", "copy", inject).await;
    }
}

#[tokio::test]
async fn multipart_copy_step_resumes_and_unwinds() {
    for inject in [Inject::Before, Inject::After] {
        check_kind("multipart-copy", "copy", inject).await;
    }
}

#[tokio::test]
async fn update_encryption_step_resumes_and_unwinds() {
    for inject in [Inject::Before, Inject::After] {
        check_kind("update-encryption", "update-encryption", inject).await;
    }
}
