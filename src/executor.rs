//! The executor: runs steps (apply) or their undo (rollback) with bounded concurrency,
//! journaling intent before each provider call and outcomes after, in one `select!` loop
//! over results, progress a running step asks to journal, a flush tick and interrupts. It
//! stops dispatching when the maintenance window closes or cannot fit the work in flight, and
//! on the first interrupt; it abandons in-flight work on the second (the steps stay `started`
//! in the journal, and the next run re-checks them).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc::{self, UnboundedReceiver};

use crate::error::RekeyError;
use crate::events::{Event, Reporter};
use crate::journal::{state, undo_state, Journal, Recorded, StepRow};
use crate::steps::{
    ProgressHandle, ProgressMsg, RunCtx, StepKind, StepOutcome, StepRunner, StepSpec, UndoCtx,
    UndoOutcome,
};
use crate::window::{WindowSpec, WindowState};

#[derive(Debug, Clone)]
pub struct ExecConfig {
    pub concurrency: usize,
    pub window: Option<WindowSpec>,
    /// Outcomes are committed at least this often.
    pub flush_every: Duration,
    /// ... or once this many are waiting.
    pub flush_batch: usize,
    /// Go on to the next stage even when a stage ends with failed or drifted steps.
    pub continue_on_failure: bool,
    /// Run the steps batch jobs left (failed tasks, objects no job told) with the local
    /// engine; jobs still running are watched to their end first.
    pub retry_failed_locally: bool,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            concurrency: 32,
            window: None,
            flush_every: Duration::from_millis(100),
            flush_batch: 256,
            continue_on_failure: false,
            retry_failed_locally: false,
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Completed,
    WindowClosed,
    Interrupted,
    /// A stage ended with failed or drifted steps: later stages were not started.
    Gated,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub succeeded: u64,
    pub drifted: u64,
    /// Steps whose resource was deleted since planning.
    pub vanished: u64,
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

fn kind_of(row: &StepRow) -> Option<StepKind> {
    StepKind::parse(&row.kind)
}

/// Steps a phase reads from the journal at a time: what is held in memory is bounded by this
/// and the concurrency, never by the number of steps.
const PAGE: usize = 1024;

/// Where a phase takes its steps from, a page at a time; an empty page ends it.
pub trait Pager: Send {
    fn next_page(&mut self, journal: &Journal) -> Result<Vec<StepRow>, RekeyError>;
}

/// Steps given at once (a stage's bucket defaults or endpoints, a rollback barrier).
struct Given(Vec<StepRow>);

impl Pager for Given {
    fn next_page(&mut self, _: &Journal) -> Result<Vec<StepRow>, RekeyError> {
        Ok(std::mem::take(&mut self.0))
    }
}

/// The steps with work left among ids `after+1..=last`, in order; those of buckets in `held`
/// are skipped and counted. Batch jobs' steps are their jobs' to run: skipped, and their
/// members too unless `members` (run them locally).
struct Todo<'a> {
    after: i64,
    last: i64,
    held: &'a HashSet<(String, String)>,
    skipped: HashMap<(String, String), u64>,
    members: bool,
}

impl Pager for Todo<'_> {
    fn next_page(&mut self, journal: &Journal) -> Result<Vec<StepRow>, RekeyError> {
        loop {
            let page = journal.todo_page(self.after, self.last, PAGE)?;
            let Some(last) = page.last() else {
                return Ok(page);
            };
            self.after = last.id;
            let members = self.members;
            let page: Vec<StepRow> = page
                .into_iter()
                .filter(|r| r.job.is_none() || (members && r.is_job_member()))
                .collect();
            if self.held.is_empty() {
                if page.is_empty() {
                    continue;
                }
                return Ok(page);
            }
            let page: Vec<StepRow> = page
                .into_iter()
                .filter(|r| {
                    let key = (r.account.clone(), r.bucket.clone());
                    if self.held.contains(&key) {
                        *self.skipped.entry(key).or_default() += 1;
                        false
                    } else {
                        true
                    }
                })
                .collect();
            if !page.is_empty() {
                return Ok(page);
            }
        }
    }
}

/// How a stage's batch jobs run: the first part of its objects phase.
pub trait JobRunner: Send + Sync {
    /// Run the job of step `row` (or re-attach to it) to its end, or until the window closes
    /// or an interrupt: journal the job, its members' intents and their outcomes from its
    /// report, and count them in `tally`.
    fn run_job(
        &self,
        journal: &mut Journal,
        row: &StepRow,
        interrupts: &mut UnboundedReceiver<()>,
        reporter: &dyn Reporter,
        tally: &mut Tally,
    ) -> impl std::future::Future<Output = Result<Stop, RekeyError>> + Send;
}

/// No batch engine: a plan with batch jobs needs one.
pub struct NoJobs;

impl JobRunner for NoJobs {
    async fn run_job(
        &self,
        _: &mut Journal,
        row: &StepRow,
        _: &mut UnboundedReceiver<()>,
        _: &dyn Reporter,
        _: &mut Tally,
    ) -> Result<Stop, RekeyError> {
        Err(RekeyError::Internal(format!(
            "step {} is a batch job, and this run has no batch engine",
            row.id
        )))
    }
}

/// Job steps among ids `first..=last` none of whose members has work left (run locally by
/// `--retry-failed-locally`): done.
fn settle_jobs(journal: &mut Journal, first: i64, last: i64) -> Result<(), RekeyError> {
    for row in journal.job_steps(first, last)? {
        let Some(job) = row.job.filter(|_| is_todo(&row)) else {
            continue;
        };
        let left = journal
            .member_states(job)?
            .iter()
            .any(|(s, n)| *n > 0 && is_todo_state(s));
        if !left {
            journal.mark_started(&[(row.id, None)])?;
            journal.record(&[Recorded {
                id: row.id,
                state: state::SUCCEEDED,
                result: None,
                reason: Some("what the job left was run locally".into()),
                retries: 0,
            }])?;
        }
    }
    Ok(())
}

/// Run the steps with work left of one stage: bucket defaults first (a barrier), then objects
/// of the buckets whose default is set, then endpoints. Steps are read from the journal a
/// page at a time.
pub async fn run_stage<R: StepRunner>(
    journal: &mut Journal,
    runner: &R,
    stage: &str,
    cfg: &ExecConfig,
    interrupts: &mut UnboundedReceiver<()>,
    reporter: &dyn Reporter,
) -> Result<(Stop, Tally), RekeyError> {
    run_stage_with(journal, runner, &NoJobs, stage, cfg, interrupts, reporter).await
}

/// `run_stage`, with the stage's batch jobs run by `jobs`.
pub async fn run_stage_with<R: StepRunner, J: JobRunner>(
    journal: &mut Journal,
    runner: &R,
    jobs: &J,
    stage: &str,
    cfg: &ExecConfig,
    interrupts: &mut UnboundedReceiver<()>,
    reporter: &dyn Reporter,
) -> Result<(Stop, Tally), RekeyError> {
    let range = journal.stage_range(stage)?;
    let (todo, bytes) = match range {
        Some(r) => journal.todo_count(r.first, r.last)?,
        None => (0, 0),
    };
    reporter.event(&Event::StageStarted {
        stage: stage.to_string(),
        steps: range.map(|r| r.steps()).unwrap_or(0),
        todo,
        bytes,
    });
    let mut run = Loop {
        journal,
        cfg,
        interrupts,
        reporter,
        stage,
        interrupted: false,
    };
    let mut tally = Tally::default();
    let mut stop = Stop::Completed;
    if let Some(r) = range {
        // Bucket defaults first, so that new writes land on the CMK; endpoints last, once
        // the artifacts they serve are on it.
        let no_hold = HashSet::new();
        let mut defaults = Todo {
            after: r.first - 1,
            last: r.objects_from - 1,
            held: &no_hold,
            skipped: HashMap::new(),
            members: false,
        };
        stop = run
            .phase(runner, &mut defaults, Mode::Apply, &mut tally)
            .await?;
        if stop == Stop::Completed {
            // A bucket whose default could not be set gets no object steps: its new writes
            // would not land on the team key, so moving its objects would leave it half done.
            let unset: Vec<StepRow> = run
                .journal
                .steps_between(r.first, r.objects_from - 1)?
                .into_iter()
                .filter(|r| kind_of(r).is_some_and(|k| k.is_bucket_default()))
                .filter(|r| r.state != state::SUCCEEDED)
                .collect();
            let held: HashSet<(String, String)> = unset
                .iter()
                .map(|r| (r.account.clone(), r.bucket.clone()))
                .collect();
            // Batch jobs first: each runs (or is re-attached to) to its end, its members'
            // outcomes journaled from its report. With `retry_failed_locally`, only jobs
            // already running are watched; what they leave runs locally below.
            for row in run
                .journal
                .job_steps(r.objects_from, r.endpoints_from - 1)?
            {
                if !is_todo(&row) || held.contains(&(row.account.clone(), row.bucket.clone())) {
                    continue;
                }
                if cfg.retry_failed_locally && row.state != state::STARTED {
                    continue;
                }
                stop = jobs
                    .run_job(run.journal, &row, run.interrupts, reporter, &mut tally)
                    .await?;
                if stop != Stop::Completed {
                    break;
                }
            }
            let mut objects = Todo {
                after: r.objects_from - 1,
                last: r.endpoints_from - 1,
                held: &held,
                skipped: HashMap::new(),
                members: cfg.retry_failed_locally,
            };
            if stop == Stop::Completed {
                stop = run
                    .phase(runner, &mut objects, Mode::Apply, &mut tally)
                    .await?;
            }
            if stop == Stop::Completed && cfg.retry_failed_locally {
                settle_jobs(run.journal, r.objects_from, r.endpoints_from - 1)?;
            }
            for row in &unset {
                let n = objects
                    .skipped
                    .get(&(row.account.clone(), row.bucket.clone()))
                    .copied()
                    .unwrap_or(0);
                if n > 0 {
                    reporter.event(&Event::Warning {
                        message: format!(
                            "{n} object steps of {} not started: its default rule could not be set (see the run report); apply again once it can",
                            row.target()
                        ),
                    });
                }
            }
        }
        if stop == Stop::Completed {
            let mut endpoints = Todo {
                after: r.endpoints_from - 1,
                last: r.last,
                held: &no_hold,
                skipped: HashMap::new(),
                members: false,
            };
            stop = run
                .phase(runner, &mut endpoints, Mode::Apply, &mut tally)
                .await?;
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

/// What an undo run counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UndoTally {
    pub undone: u64,
    pub conflicts: u64,
    pub failed: u64,
}

/// Whether a step is undone alone, once everything after it is undone: a bucket default or an
/// endpoint.
fn is_barrier(r: &StepRow) -> bool {
    kind_of(r).is_some_and(|k| k.is_bucket_default() || k == StepKind::Endpoint)
}

/// The steps a rollback to step `first` undoes, newest first, read a page at a time; a page
/// ends before a barrier, which is kept for the caller to undo alone.
struct Undoable {
    first: i64,
    before: i64,
    gcs_defaults: bool,
    barrier: Option<StepRow>,
    held: VecDeque<StepRow>,
    done: bool,
}

impl Pager for Undoable {
    fn next_page(&mut self, journal: &Journal) -> Result<Vec<StepRow>, RekeyError> {
        if self.barrier.is_some() {
            return Ok(Vec::new());
        }
        if self.held.is_empty() && !self.done {
            let page = journal.undo_page(self.first, self.before, self.gcs_defaults, PAGE)?;
            self.done = page.len() < PAGE;
            if let Some(last) = page.last() {
                self.before = last.id;
            }
            self.held.extend(page);
        }
        let mut out = Vec::new();
        while let Some(r) = self.held.pop_front() {
            if is_barrier(&r) {
                self.barrier = Some(r);
                break;
            }
            out.push(r);
        }
        Ok(out)
    }
}

/// Undo every step from step `first` on that may have changed the cloud and is not undone,
/// newest first: Cloud Storage bucket defaults before anything (an object cannot go back to
/// Google-managed encryption while its bucket has a default key), then the rest; objects go
/// concurrently, a bucket default or an endpoint waits for everything undone before it and
/// goes alone. Steps are read from the journal a page at a time.
pub async fn undo_from<R: StepRunner>(
    journal: &mut Journal,
    runner: &R,
    first: i64,
    cfg: &ExecConfig,
    interrupts: &mut UnboundedReceiver<()>,
    reporter: &dyn Reporter,
) -> Result<(Stop, UndoTally), RekeyError> {
    let mut run = Loop {
        journal,
        cfg,
        interrupts,
        reporter,
        stage: "rollback",
        interrupted: false,
    };
    let mut tally = Tally::default();
    let mut stop = Stop::Completed;
    'passes: for gcs_defaults in [true, false] {
        let mut pager = Undoable {
            first,
            before: i64::MAX,
            gcs_defaults,
            barrier: None,
            held: VecDeque::new(),
            done: false,
        };
        loop {
            stop = run
                .phase(runner, &mut pager, Mode::Undo, &mut tally)
                .await?;
            if stop != Stop::Completed {
                break 'passes;
            }
            match pager.barrier.take() {
                Some(b) => {
                    stop = run
                        .phase(runner, &mut Given(vec![b]), Mode::Undo, &mut tally)
                        .await?;
                    if stop != Stop::Completed {
                        break 'passes;
                    }
                }
                None => break,
            }
        }
    }
    Ok((
        stop,
        UndoTally {
            undone: tally.succeeded,
            conflicts: tally.drifted,
            failed: tally.failed,
        },
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    Undo,
}

enum Outcome {
    Step(StepOutcome, u32),
    Undo(UndoOutcome),
}

struct Loop<'a> {
    journal: &'a mut Journal,
    cfg: &'a ExecConfig,
    interrupts: &'a mut UnboundedReceiver<()>,
    reporter: &'a dyn Reporter,
    stage: &'a str,
    interrupted: bool,
}

/// An outcome waiting to be committed.
enum Done {
    Step(Recorded),
    Undo(i64, &'static str, Option<String>),
}

impl Loop<'_> {
    fn flush(&mut self, done: &mut Vec<Done>) -> Result<(), RekeyError> {
        let steps: Vec<Recorded> = done
            .iter()
            .filter_map(|d| match d {
                Done::Step(r) => Some(r.clone()),
                Done::Undo(..) => None,
            })
            .collect();
        let undos: Vec<(i64, &'static str, Option<String>)> = done
            .iter()
            .filter_map(|d| match d {
                Done::Undo(id, st, reason) => Some((*id, *st, reason.clone())),
                Done::Step(_) => None,
            })
            .collect();
        self.journal.record(&steps)?;
        self.journal.record_undos(&undos)?;
        done.clear();
        Ok(())
    }

    async fn phase<R: StepRunner>(
        &mut self,
        runner: &R,
        pager: &mut dyn Pager,
        mode: Mode,
        tally: &mut Tally,
    ) -> Result<Stop, RekeyError> {
        let mut queue: VecDeque<StepRow> = VecDeque::new();
        let mut exhausted = false;
        let mut ready: VecDeque<(StepRow, StepSpec)> = VecDeque::new();
        let ahead = (self.cfg.concurrency * 4).max(64);
        let refill_at = (self.cfg.concurrency / 4).max(1);
        let mut in_flight = FuturesUnordered::new();
        let mut done: Vec<Done> = Vec::new();
        let mut stopping: Option<Stop> = self.interrupted.then_some(Stop::Interrupted);
        let mut tick = tokio::time::interval(self.cfg.flush_every);
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<ProgressMsg>();
        // A running mean of step latency: a step is not started if it cannot end in the window.
        let mut mean_step = Duration::from_millis(200);
        let stage = self.stage.to_string();

        loop {
            if stopping.is_none() && mode == Mode::Apply {
                if let Some(w) = &self.cfg.window {
                    let now = chrono::Utc::now();
                    let closing = match w.state_at(now) {
                        WindowState::Open { closes } => {
                            let margin =
                                chrono::Duration::from_std(mean_step * 2).unwrap_or_default();
                            now + margin >= closes
                        }
                        WindowState::Closed { .. } => true,
                    };
                    if closing {
                        stopping = Some(Stop::WindowClosed);
                        self.reporter.event(&Event::Stopping {
                            reason: "window".into(),
                        });
                    }
                }
            }
            // The next page of steps, once the queue runs low.
            if stopping.is_none() && !exhausted && queue.len() < ahead {
                let page = pager.next_page(self.journal)?;
                exhausted = page.is_empty();
                queue.extend(page);
            }
            // Intent is journaled ahead of dispatch, many steps to one durable transaction
            // (a step journaled `started` that was never sent is re-checked like any other,
            // and an orderly stop puts it back).
            if stopping.is_none() && ready.is_empty() && !queue.is_empty() {
                let mut batch = Vec::new();
                let mut intents = Vec::new();
                while batch.len() < ahead {
                    let Some(mut row) = queue.pop_front() else {
                        break;
                    };
                    let spec: StepSpec = serde_json::from_str(&row.spec).map_err(|e| {
                        RekeyError::Internal(format!(
                            "journal step {} has an unreadable spec: {e}",
                            row.id
                        ))
                    })?;
                    if mode == Mode::Undo {
                        batch.push((row, spec));
                        continue;
                    }
                    // A step that was started before keeps the undo data it journaled then.
                    let undo = if row.undo.is_some() {
                        Ok(None)
                    } else {
                        runner.prepare(&spec).await
                    };
                    match undo {
                        Ok(u) => {
                            intents.push((row.id, u.clone()));
                            if row.undo.is_none() {
                                row.undo = u;
                            }
                            batch.push((row, spec));
                        }
                        Err(e) => {
                            self.journal.mark_started(&[(row.id, None)])?;
                            done.push(Done::Step(Recorded {
                                id: row.id,
                                state: state::FAILED,
                                result: None,
                                reason: Some(e.to_string()),
                                retries: 0,
                            }));
                            tally.failed += 1;
                        }
                    }
                }
                match mode {
                    Mode::Apply => self.journal.mark_started(&intents)?,
                    Mode::Undo => self
                        .journal
                        .mark_undo_started(&batch.iter().map(|(r, _)| r.id).collect::<Vec<_>>())?,
                }
                ready.extend(batch);
            }
            // Slots are refilled a few at a time: each refill journals its send marks in one
            // commit (a commit per step was a fifth of apply's CPU, scripts/bench-apply.sh).
            let free = self.cfg.concurrency.saturating_sub(in_flight.len());
            let refill =
                free >= refill_at || in_flight.is_empty() || (queue.is_empty() && exhausted);
            let mut sending = Vec::new();
            while refill
                && stopping.is_none()
                && in_flight.len() + sending.len() < self.cfg.concurrency
            {
                let Some(next) = ready.pop_front() else {
                    break;
                };
                sending.push(next);
            }
            // What is sent now is marked so first: a step never sent cannot have changed the
            // cloud, and a resumed one that was may have (its write is then re-checked).
            if mode == Mode::Apply {
                self.journal
                    .mark_sent(&sending.iter().map(|(r, _)| r.id).collect::<Vec<_>>())?;
            }
            for (row, spec) in sending {
                let saver = ProgressHandle::new(row.id, progress_tx.clone());
                in_flight.push(async move {
                    let t = Instant::now();
                    let outcome = match mode {
                        Mode::Apply => {
                            let ctx = RunCtx {
                                // Sent before (a crash, an abandoned step, a failure): it may
                                // have taken effect.
                                resumed: row.attempts > 0,
                                progress: row.progress.as_deref(),
                                undo: row.undo.as_deref(),
                                saver: &saver,
                            };
                            let (o, retries) = runner.run(&spec, ctx).await;
                            Outcome::Step(o, retries)
                        }
                        Mode::Undo => {
                            let ctx = UndoCtx {
                                undo: row.undo.as_deref(),
                                result: row.result.as_deref(),
                                succeeded: row.state == state::SUCCEEDED,
                                progress: row.progress.as_deref(),
                                saver: &saver,
                            };
                            Outcome::Undo(runner.undo(&spec, ctx).await)
                        }
                    };
                    (row, outcome, t.elapsed())
                });
            }
            if in_flight.is_empty()
                && (stopping.is_some() || (queue.is_empty() && ready.is_empty()))
            {
                if stopping.is_some() || exhausted {
                    break;
                }
                // The queue ran dry with more pages to read: read the next one.
                continue;
            }
            tokio::select! {
                biased;
                Some(()) = self.interrupts.recv() => {
                    if stopping == Some(Stop::Interrupted) {
                        // Second interrupt: abandon what is in flight; it stays `started`.
                        self.reporter.event(&Event::Stopping { reason: "abort".into() });
                        drop(in_flight);
                        self.flush(&mut done)?;
                        self.put_back(mode, &mut ready)?;
                        return Ok(Stop::Interrupted);
                    }
                    self.interrupted = true;
                    stopping = Some(Stop::Interrupted);
                    self.reporter.event(&Event::Stopping { reason: "interrupt".into() });
                }
                Some((id, data, ack)) = progress_rx.recv() => {
                    // Durable before the step goes on: the outcomes it depends on go first.
                    self.flush(&mut done)?;
                    let r = self.journal.save_progress(id, &data).map_err(|e| e.to_string());
                    let _ = ack.send(r);
                }
                Some((row, outcome, took)) = in_flight.next(), if !in_flight.is_empty() => {
                    mean_step = (mean_step * 7 + took) / 8;
                    let (st, reason, retries, record) = match outcome {
                        Outcome::Step(o, retries) => {
                            tally.retries += retries as u64;
                            let (st, result, reason) = match o {
                                StepOutcome::Succeeded { result, note } => {
                                    tally.succeeded += 1;
                                    tally.bytes += row.bytes;
                                    (state::SUCCEEDED, result, note)
                                }
                                StepOutcome::Drifted { reason } => {
                                    tally.drifted += 1;
                                    (state::DRIFTED, None, Some(reason))
                                }
                                StepOutcome::Vanished { reason } => {
                                    tally.vanished += 1;
                                    (state::VANISHED, None, Some(reason))
                                }
                                StepOutcome::Failed { reason } => {
                                    tally.failed += 1;
                                    (state::FAILED, None, Some(reason))
                                }
                            };
                            let record = Done::Step(Recorded { id: row.id, state: st, result, reason: reason.clone(), retries });
                            (st, reason, retries, record)
                        }
                        Outcome::Undo(o) => {
                            let (st, label, reason) = match o {
                                UndoOutcome::Undone { note } => {
                                    tally.succeeded += 1;
                                    tally.bytes += row.bytes;
                                    (undo_state::UNDONE, "undone", note)
                                }
                                UndoOutcome::Conflict { reason } => {
                                    tally.drifted += 1;
                                    (undo_state::CONFLICT, "conflict", Some(reason))
                                }
                                UndoOutcome::Failed { reason } => {
                                    tally.failed += 1;
                                    (undo_state::FAILED, "undo-failed", Some(reason))
                                }
                            };
                            (label, reason.clone(), 0, Done::Undo(row.id, st, reason))
                        }
                    };
                    let ok = matches!(st, "succeeded" | "undone" | "vanished");
                    self.reporter.event(&Event::StepDone {
                        stage: if mode == Mode::Undo { stage.clone() } else { row.stage.clone() },
                        step: row.kind.clone(),
                        target: row.target(),
                        state: st.to_string(),
                        bytes: row.bytes,
                        retries,
                        reason: if ok { None } else { reason },
                    });
                    done.push(record);
                    if done.len() >= self.cfg.flush_batch {
                        self.flush(&mut done)?;
                    }
                }
                _ = tick.tick() => {
                    self.flush(&mut done)?;
                }
            }
        }
        self.flush(&mut done)?;
        self.put_back(mode, &mut ready)?;
        Ok(stopping.unwrap_or(Stop::Completed))
    }

    /// Steps journaled `started` ahead of dispatch but never sent go back to what they were.
    fn put_back(
        &mut self,
        mode: Mode,
        ready: &mut VecDeque<(StepRow, StepSpec)>,
    ) -> Result<(), RekeyError> {
        let rows: Vec<StepRow> = ready.drain(..).map(|(r, _)| r).collect();
        match mode {
            Mode::Apply => self.journal.unstart(
                &rows
                    .iter()
                    .filter(|r| r.state == state::PENDING)
                    .map(|r| r.id)
                    .collect::<Vec<_>>(),
            ),
            Mode::Undo => self.journal.unstart_undo(
                &rows
                    .iter()
                    .map(|r| (r.id, r.undo_state.clone()))
                    .collect::<Vec<_>>(),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
