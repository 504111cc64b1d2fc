//! `rollback`: undo applied steps in reverse order back to a checkpoint, from the journal.
//!
//! Every step that may have taken effect is undone: succeeded ones, and started or failed
//! ones (a crash or an abandoned step may have changed the cloud before the journal could say
//! so), each re-checked against the cloud first. Every undo is conditional on the resource
//! still being what rekey made it; anything changed since is a reported conflict, left alone.
//! Before anything is touched, every key objects return to must still be usable.

use std::collections::BTreeSet;
use std::path::Path;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::apply::{plan_id, runners, write_report, Accounts};
use crate::error::RekeyError;
use crate::events::{Event, Reporter};
use crate::executor::{self, ExecConfig, Stop, UndoTally};
use crate::journal::{state, undo_state, Journal, StepRow};
use crate::plan::PlanFile;
use crate::providers::gcs::GcsClient;
use crate::providers::sagemaker::SageMakerApi;
use crate::providers::{KeyRead, S3Write};
use crate::steps::{self, StepKind, StepRunner, StepSpec};

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

/// Steps from `first` on that may have changed the cloud and are not undone yet, in the
/// order to undo them: reverse step order, Cloud Storage bucket defaults first (an object
/// cannot go back to Google-managed encryption while its bucket has a default key).
fn to_undo(journal: &Journal, first: i64) -> Result<Vec<StepRow>, RekeyError> {
    let mut rows: Vec<StepRow> = journal
        .steps_from(first)?
        .into_iter()
        .filter(|r| {
            matches!(
                r.state.as_str(),
                state::SUCCEEDED | state::STARTED | state::FAILED
            )
        })
        .filter(|r| r.undo_state.as_deref() != Some(undo_state::UNDONE))
        // A step never sent (journaled ahead, or whose undo data could not even be read)
        // cannot have changed the cloud.
        .filter(|r| r.state == state::SUCCEEDED || (r.undo.is_some() && r.attempts > 0))
        .collect();
    rows.reverse();
    rows.sort_by_key(|r| r.kind != StepKind::GcsBucketDefault.as_str());
    Ok(rows)
}

/// Cut the rows into segments: runs of object steps go concurrently; a bucket default or an
/// endpoint waits for everything undone before it, alone.
fn segments(rows: Vec<StepRow>) -> Vec<Vec<StepRow>> {
    let barrier = |r: &StepRow| {
        StepKind::parse(&r.kind).is_some_and(|k| k.is_bucket_default() || k == StepKind::Endpoint)
    };
    let mut out: Vec<Vec<StepRow>> = Vec::new();
    for r in rows {
        let alone = barrier(&r);
        match out.last_mut() {
            Some(last) if !alone && !last.iter().any(barrier) => last.push(r),
            _ => out.push(vec![r]),
        }
    }
    out
}

/// Refuse to start when a key some undo returns things to cannot be used: a half rollback
/// would leave objects on the team key with no way back.
async fn check_keys<R: StepRunner>(runner: &R, rows: &[StepRow]) -> Result<(), RekeyError> {
    let mut seen = BTreeSet::new();
    let mut unusable = Vec::new();
    for r in rows {
        let Ok(spec) = serde_json::from_str::<StepSpec>(&r.spec) else {
            continue;
        };
        for key in steps::undo_keys(&spec, r.undo.as_deref()) {
            if !seen.insert((r.account.clone(), key.clone())) {
                continue;
            }
            if let Some(why) = runner.key_usable(&spec, &key).await? {
                unusable.push(format!("{why} (account {})", r.account));
            }
        }
    }
    if unusable.is_empty() {
        return Ok(());
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
pub async fn rollback<S: S3Write + KeyRead + SageMakerApi>(
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
    let rows = to_undo(&journal, first)?;
    let pacer = crate::retry::Pacer::new(opts.requests_per_second);
    let part_slots = tokio::sync::Semaphore::new(opts.concurrency.max(1));
    let runner = runners(aws, gcs, &pacer, &part_slots);
    check_keys(&runner, &rows).await?;
    reporter.event(&Event::StageStarted {
        stage: "rollback".into(),
        steps: rows.len() as u64,
        todo: rows.len() as u64,
        bytes: rows.iter().map(|r| r.bytes).sum(),
    });
    let cfg = ExecConfig {
        concurrency: opts.concurrency.max(1),
        ..Default::default()
    };
    let (stop, tally) = executor::undo_segments(
        &mut journal,
        &runner,
        segments(rows),
        &cfg,
        interrupts,
        reporter,
    )
    .await?;
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
