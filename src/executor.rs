//! The executor: runs a stage's steps with bounded concurrency, journaling intent before each
//! provider call and outcomes after, in one `select!` loop over step results, a flush tick and
//! interrupts. It stops dispatching when the maintenance window closes or cannot fit the work
//! in flight, on the first interrupt; it abandons in-flight work on the second (the steps stay
//! `started` in the journal, and the next run re-checks them).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::error::RekeyError;
use crate::events::{Event, Reporter};
use crate::journal::{state, Journal, Recorded, StepRow};
use crate::steps::{StepOutcome, StepRunner, StepSpec};
use crate::window::{WindowSpec, WindowState};

#[derive(Debug, Clone)]
pub struct ExecConfig {
    pub concurrency: usize,
    pub window: Option<WindowSpec>,
    /// Outcomes are committed at least this often.
    pub flush_every: Duration,
    /// ... or once this many are waiting.
    pub flush_batch: usize,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            concurrency: 32,
            window: None,
            flush_every: Duration::from_millis(100),
            flush_batch: 256,
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Completed,
    WindowClosed,
    Interrupted,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub succeeded: u64,
    pub drifted: u64,
    pub failed: u64,
    pub retries: u64,
    pub bytes: u64,
}

/// Whether a step still has work: never run, started (resume), or failed (retry).
pub fn is_todo(row: &StepRow) -> bool {
    is_todo_state(&row.state)
}

/// Whether a step in this state still has work.
pub fn is_todo_state(s: &str) -> bool {
    matches!(s, state::PENDING | state::STARTED | state::FAILED)
}

/// Run the todo steps of one stage: bucket defaults first (a barrier), then objects.
pub async fn run_stage<R: StepRunner>(
    journal: &mut Journal,
    runner: &R,
    stage: &str,
    rows: Vec<StepRow>,
    cfg: &ExecConfig,
    interrupts: &mut UnboundedReceiver<()>,
    reporter: &dyn Reporter,
) -> Result<(Stop, Tally), RekeyError> {
    let todo: Vec<StepRow> = rows.iter().filter(|r| is_todo(r)).cloned().collect();
    reporter.event(&Event::StageStarted {
        stage: stage.to_string(),
        steps: rows.len() as u64,
        todo: todo.len() as u64,
        bytes: todo.iter().map(|r| r.bytes).sum(),
    });
    // Bucket defaults first, so that new writes land on the CMK; endpoints last, once the
    // artifacts they serve are on it.
    let (buckets, rest): (Vec<_>, Vec<_>) = todo
        .into_iter()
        .partition(|r| r.kind == "bucket-default" || r.kind == "gcs-bucket-default");
    let (endpoints, objects): (Vec<_>, Vec<_>) =
        rest.into_iter().partition(|r| r.kind == "endpoint");
    let mut tally = Tally::default();
    let mut stop = Stop::Completed;
    let mut interrupted = false;
    for phase in [buckets, objects, endpoints] {
        stop = run_phase(
            journal,
            runner,
            stage,
            phase,
            cfg,
            interrupts,
            reporter,
            &mut tally,
            &mut interrupted,
        )
        .await?;
        if stop != Stop::Completed {
            break;
        }
    }
    reporter.event(&Event::StageDone {
        stage: stage.to_string(),
        succeeded: tally.succeeded,
        drifted: tally.drifted,
        failed: tally.failed,
        retries: tally.retries,
    });
    Ok((stop, tally))
}

#[allow(clippy::too_many_arguments)]
async fn run_phase<R: StepRunner>(
    journal: &mut Journal,
    runner: &R,
    stage: &str,
    steps: Vec<StepRow>,
    cfg: &ExecConfig,
    interrupts: &mut UnboundedReceiver<()>,
    reporter: &dyn Reporter,
    tally: &mut Tally,
    interrupted: &mut bool,
) -> Result<Stop, RekeyError> {
    let mut queue: VecDeque<StepRow> = steps.into();
    let mut in_flight = FuturesUnordered::new();
    let mut done: Vec<Recorded> = Vec::new();
    let mut stopping: Option<Stop> = if *interrupted {
        Some(Stop::Interrupted)
    } else {
        None
    };
    let mut tick = tokio::time::interval(cfg.flush_every);
    // A running mean of step latency: a step is not started if it cannot end in the window.
    let mut mean_step = Duration::from_millis(200);

    let flush = |journal: &mut Journal, done: &mut Vec<Recorded>| -> Result<(), RekeyError> {
        journal.record(done)?;
        done.clear();
        Ok(())
    };

    loop {
        if stopping.is_none() {
            if let Some(w) = &cfg.window {
                let now = chrono::Utc::now();
                let closing = match w.state_at(now) {
                    WindowState::Open { closes } => {
                        let margin = chrono::Duration::from_std(mean_step * 2).unwrap_or_default();
                        now + margin >= closes
                    }
                    WindowState::Closed { .. } => true,
                };
                if closing {
                    stopping = Some(Stop::WindowClosed);
                    reporter.event(&Event::Stopping {
                        reason: "window".into(),
                    });
                }
            }
        }
        if stopping.is_none() && !queue.is_empty() && in_flight.len() < cfg.concurrency {
            let free = cfg.concurrency - in_flight.len();
            let mut batch = Vec::new();
            let mut intents = Vec::new();
            while batch.len() < free {
                let Some(row) = queue.pop_front() else { break };
                let spec: StepSpec = serde_json::from_str(&row.spec).map_err(|e| {
                    RekeyError::Internal(format!(
                        "journal step {} has an unreadable spec: {e}",
                        row.id
                    ))
                })?;
                // A step that was started before keeps the undo data it journaled then.
                let undo = if row.undo.is_some() {
                    Ok(None)
                } else {
                    runner.prepare(&spec).await
                };
                match undo {
                    Ok(u) => {
                        intents.push((row.id, u));
                        batch.push((row, spec));
                    }
                    Err(e) => {
                        journal.mark_started(&[(row.id, None)])?;
                        done.push(Recorded {
                            id: row.id,
                            state: state::FAILED,
                            result: None,
                            reason: Some(e.to_string()),
                            retries: 0,
                        });
                        tally.failed += 1;
                    }
                }
            }
            journal.mark_started(&intents)?;
            for (row, spec) in batch {
                let resumed = row.state != state::PENDING;
                in_flight.push(async move {
                    let t = Instant::now();
                    let (outcome, retries) = runner.run(&spec, resumed).await;
                    (row, outcome, retries, t.elapsed())
                });
            }
        }
        if in_flight.is_empty() && (stopping.is_some() || queue.is_empty()) {
            break;
        }
        tokio::select! {
            biased;
            Some(()) = interrupts.recv() => {
                if stopping == Some(Stop::Interrupted) {
                    // Second interrupt: abandon what is in flight; it stays `started`.
                    reporter.event(&Event::Stopping { reason: "abort".into() });
                    drop(in_flight);
                    flush(journal, &mut done)?;
                    return Ok(Stop::Interrupted);
                }
                *interrupted = true;
                stopping = Some(Stop::Interrupted);
                reporter.event(&Event::Stopping { reason: "interrupt".into() });
            }
            Some((row, outcome, retries, took)) = in_flight.next(), if !in_flight.is_empty() => {
                mean_step = (mean_step * 7 + took) / 8;
                tally.retries += retries as u64;
                let (st, result, reason) = match outcome {
                    StepOutcome::Succeeded { result, note } => {
                        tally.succeeded += 1;
                        tally.bytes += row.bytes;
                        (state::SUCCEEDED, result, note)
                    }
                    StepOutcome::Drifted { reason } => {
                        tally.drifted += 1;
                        (state::DRIFTED, None, Some(reason))
                    }
                    StepOutcome::Failed { reason } => {
                        tally.failed += 1;
                        (state::FAILED, None, Some(reason))
                    }
                };
                reporter.event(&Event::StepDone {
                    stage: stage.to_string(),
                    step: row.kind.clone(),
                    target: row.target(),
                    state: st.to_string(),
                    bytes: row.bytes,
                    retries,
                    reason: if st == state::SUCCEEDED { None } else { reason.clone() },
                });
                done.push(Recorded { id: row.id, state: st, result, reason, retries });
                if done.len() >= cfg.flush_batch {
                    flush(journal, &mut done)?;
                }
            }
            _ = tick.tick() => {
                flush(journal, &mut done)?;
            }
        }
    }
    flush(journal, &mut done)?;
    Ok(stopping.unwrap_or(Stop::Completed))
}
