//! Typed events: the only interface between the core and whatever renders progress.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A team key alias resolved to the key it targets now.
    KeyResolved {
        key: String,
        alias: String,
        arn: String,
    },
    /// Buckets chosen by the campaign's globs.
    BucketsSelected { buckets: Vec<String> },
    /// Inventory of one bucket begins.
    BucketStarted {
        bucket: String,
        index: usize,
        total: usize,
    },
    /// Inventory of one bucket ended.
    BucketDone {
        bucket: String,
        objects: u64,
        bytes: u64,
        list_pages: u64,
    },
    /// Every so many objects.
    Progress { objects: u64, bytes: u64 },
    /// Something an operator should read; the run goes on.
    Warning { message: String },
    /// A stage of apply or rollback begins: `todo` of `steps` remain.
    StageStarted {
        stage: String,
        steps: u64,
        todo: u64,
        bytes: u64,
    },
    /// One step ended.
    StepDone {
        stage: String,
        step: String,
        target: String,
        state: String,
        bytes: u64,
        retries: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A stage ended (or stopped early).
    StageDone {
        stage: String,
        succeeded: u64,
        drifted: u64,
        failed: u64,
        retries: u64,
    },
    /// No new step will start: `reason` is `window`, `interrupt` or `abort`.
    Stopping { reason: String },
    /// An S3 Batch Operations job's state, as DescribeJob told it.
    JobProgress {
        stage: String,
        job: u32,
        bucket: String,
        job_id: String,
        status: String,
        succeeded: u64,
        failed: u64,
        total: u64,
    },
}

/// Receives the core's events. Implementations must be cheap: they run on the core's tasks.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event);
}

/// A reporter that drops everything (library use and tests).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &Event) {}
}

/// Collects events, for tests that assert on what the core reported.
#[derive(Default)]
pub struct Collect(pub std::sync::Mutex<Vec<Event>>);

impl Reporter for Collect {
    fn event(&self, event: &Event) {
        self.0.lock().expect("collector lock").push(event.clone());
    }
}
