//! `rollback`: undo applied steps in reverse order back to a checkpoint, from the journal.
//!
//! Every step that may have taken effect is undone: succeeded ones, and started or failed
//! ones (a crash or an abandoned step may have changed the cloud before the journal could say
//! so), each re-checked against the cloud first. Every undo is conditional on the resource
//! still being what rekey made it; anything changed since is a reported conflict, left alone.
//! Before anything is touched, every key objects return to must still be usable.

use std::collections::BTreeMap;
use std::path::Path;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::apply::{plan_id, runners, write_report, Accounts};
use crate::error::RekeyError;
use crate::events::{Event, Reporter};
use crate::executor::{self, ExecConfig, Stop, UndoTally};
use crate::journal::Journal;
use crate::plan::PlanFile;
use crate::providers::gcs::GcsClient;
use crate::providers::sagemaker::SageMakerApi;
use crate::providers::{KeyRead, S3Write};
use crate::steps::{self, StepRunner, StepSpec};

#[derive(Debug, Clone)]
pub struct RollbackOptions {
    /// The checkpoint (a stage name) to return to; none: the first.
    pub to: Option<String>,
    pub concurrency: usize,
    pub requests_per_second: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackOutcome {
    pub tally: UndoTally,
    pub stop: Stop,
}

/// Refuse to start when a key some undo returns things to cannot be used: a half rollback
/// would leave objects on the team key with no way back.
/// Returns the steps to undo and their bytes: the journal is read once, a step at a time, and
/// only the distinct keys are kept (with one step of each, to ask its runner).
async fn check_keys<R: StepRunner>(
    runner: &R,
    journal: &Journal,
    first: i64,
) -> Result<(u64, u64), RekeyError> {
    let mut keys: BTreeMap<(String, String), StepSpec> = BTreeMap::new();
    let (mut steps, mut bytes) = (0u64, 0u64);
    journal.each_undoable(first, |r| {
        steps += 1;
        bytes += r.bytes;
        let Ok(spec) = serde_json::from_str::<StepSpec>(&r.spec) else {
            return Ok(());
        };
        for key in steps::undo_keys(&spec, r.undo.as_deref()) {
            keys.entry((r.account.clone(), key))
                .or_insert_with(|| spec.clone());
        }
        Ok(())
    })?;
    let mut unusable = Vec::new();
    for ((account, key), spec) in &keys {
        if let Some(why) = runner.key_usable(spec, key).await? {
            unusable.push(format!("{why} (account {account})"));
        }
    }
    if unusable.is_empty() {
        return Ok((steps, bytes));
    }
    Err(RekeyError::KeysUnusable {
        message: format!(
            "rollback would return objects or bucket rules to keys that cannot be used:\n  {}",
            unusable.join("\n  ")
        ),
        fix: "enable those keys again (or cancel their scheduled deletion), then roll back; never disable or delete an original key until the campaign is closed".into(),
    })
}

/// Roll back from a checkpoint (default: the first).
#[allow(clippy::too_many_arguments)]
pub async fn rollback<S: S3Write + KeyRead + SageMakerApi + crate::providers::S3Batch>(
    p: &PlanFile,
    plan_path: &Path,
    journal_path: &Path,
    opts: &RollbackOptions,
    aws: &Accounts<S>,
    gcs: Option<&GcsClient>,
    reporter: &dyn Reporter,
    interrupts: &mut UnboundedReceiver<()>,
) -> Result<RollbackOutcome, RekeyError> {
    let mut journal = Journal::open_writer(journal_path, &plan_id(plan_path)?)?;
    let checkpoints = journal.checkpoints()?;
    let first = match &opts.to {
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
    let pacer = crate::retry::Pacer::new(opts.requests_per_second);
    let part_slots = tokio::sync::Semaphore::new(opts.concurrency.max(1));
    let runner = runners(aws, gcs, &pacer, &part_slots);
    let (steps, bytes) = check_keys(&runner, &journal, first).await?;
    if let Some(b) = &p.settings.batch {
        let jobs = crate::batch::BatchEngine::new(
            aws.iter()
                .map(|(n, c)| (n.clone(), c))
                .collect::<BTreeMap<String, &S>>(),
            b.clone(),
            crate::apply::job_namespace(plan_path, &journal)?,
            None,
        );
        jobs.stop_jobs(&mut journal, first, reporter).await?;
    }
    if let (Some(b), Some(g)) = (&p.settings.gcs_batch, gcs) {
        let jobs = crate::batch::GcsJobs::new(
            g,
            b.clone(),
            crate::apply::job_namespace(plan_path, &journal)?,
            None,
        );
        jobs.stop_jobs(&mut journal, first, reporter).await?;
    }
    reporter.event(&Event::StageStarted {
        stage: "rollback".into(),
        steps,
        todo: steps,
        bytes,
    });
    let cfg = ExecConfig {
        concurrency: opts.concurrency.max(1),
        ..Default::default()
    };
    journal.begin_run("rollback")?;
    let started = crate::journal::now();
    let (stop, tally) =
        executor::undo_from(&mut journal, &runner, first, &cfg, interrupts, reporter).await?;
    journal.stage_ran(
        "rollback",
        &started,
        &executor::Tally {
            succeeded: tally.undone,
            drifted: tally.conflicts,
            failed: tally.failed,
            ..Default::default()
        },
    )?;
    journal.end_run(crate::apply::stop_name(stop))?;
    reporter.event(&Event::StageDone {
        stage: "rollback".into(),
        succeeded: tally.undone,
        drifted: tally.conflicts,
        failed: tally.failed,
        retries: 0,
    });
    write_report(p, &journal, journal_path, pacer.throttled())?;
    Ok(RollbackOutcome { tally, stop })
}
