//! Reporters: render core events as indicatif progress bars on a terminal, plain lines
//! otherwise, or JSON lines for automation.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Reporter};
use crate::summary::bytes;

#[derive(Default)]
struct StageCounts {
    done: u64,
    bytes: u64,
    drifted: u64,
    vanished: u64,
    failed: u64,
    retries: u64,
}

/// Renders events: bars and lines on stderr; JSON lines on stdout or stderr.
pub struct StderrReporter {
    multi: Option<MultiProgress>,
    /// Created on the first inventory event, so that a prompt printed before it stays visible.
    spinner: std::sync::OnceLock<ProgressBar>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    counts: Mutex<HashMap<String, StageCounts>>,
    json: bool,
    json_to_stdout: bool,
}

impl StderrReporter {
    /// `json`: events as JSON lines (to stdout when `json_to_stdout`, else stderr).
    pub fn new(json: bool, json_to_stdout: bool) -> Self {
        let terminal = !json && std::io::stderr().is_terminal();
        let multi = terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        StderrReporter {
            multi,
            spinner: std::sync::OnceLock::new(),
            bars: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            json,
            json_to_stdout,
        }
    }

    fn line(&self, text: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => {
                let mut out = std::io::stderr().lock();
                let _ = writeln!(out, "{text}");
            }
        }
    }

    /// Clear bars and spinners before the command prints its result.
    pub fn finish(&self) {
        if let Some(s) = self.spinner.get() {
            s.finish_and_clear();
        }
        for b in self.bars.lock().expect("bars lock").values() {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }

    fn spinner(&self) -> Option<&ProgressBar> {
        let m = self.multi.as_ref()?;
        Some(self.spinner.get_or_init(|| {
            let b = m.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        }))
    }

    fn status(&self, text: String) {
        match self.spinner() {
            Some(s) => s.set_message(text),
            None => self.line(&text),
        }
    }
}

impl Reporter for StderrReporter {
    fn event(&self, event: &Event) {
        if self.json {
            if let Ok(s) = serde_json::to_string(event) {
                if self.json_to_stdout {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{s}");
                } else {
                    self.line(&s);
                }
            }
            return;
        }
        match event {
            Event::KeyResolved { key, alias, arn } => self.line(&format!("key {key}: {alias} -> {arn}")),
            Event::BucketsSelected { buckets } => self.line(&format!("{} buckets selected", buckets.len())),
            Event::BucketStarted { bucket, index, total } => self.status(format!("[{}/{}] {}", index + 1, total, url(bucket))),
            Event::BucketDone { bucket, objects, bytes: b, .. } => self.line(&format!("  {}: {objects} objects, {}", url(bucket), bytes(*b))),
            Event::Progress { objects, bytes: b } => {
                if let Some(s) = self.spinner() {
                    s.set_message(format!("{objects} objects, {}", bytes(*b)));
                }
            }
            Event::Warning { message } => self.line(&format!("warning: {message}")),
            Event::StageStarted { stage, steps, todo, bytes: b } => {
                self.counts.lock().expect("counts lock").insert(stage.clone(), StageCounts::default());
                match &self.multi {
                    Some(m) => {
                        let bar = m.add(ProgressBar::new(*todo));
                        bar.set_style(
                            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} steps {msg} eta {eta}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar())
                                .progress_chars("=> "),
                        );
                        bar.set_prefix(stage.clone());
                        self.bars.lock().expect("bars lock").insert(stage.clone(), bar);
                    }
                    None => self.line(&format!("stage {stage}: {todo} of {steps} steps to do, {}", bytes(*b))),
                }
            }
            Event::StepDone { stage, target, state, bytes: b, retries, reason, .. } => {
                let mut counts = self.counts.lock().expect("counts lock");
                let c = counts.entry(stage.clone()).or_default();
                c.done += 1;
                c.retries += *retries as u64;
                match state.as_str() {
                    "succeeded" => c.bytes += b,
                    "drifted" => c.drifted += 1,
                    "vanished" => c.vanished += 1,
                    _ => c.failed += 1,
                }
                let gone = if c.vanished > 0 { format!(", {} vanished", c.vanished) } else { String::new() };
                let msg = format!("{}, {} drifted{gone}, {} failed, {} retries", bytes(c.bytes), c.drifted, c.failed, c.retries);
                let done = c.done;
                drop(counts);
                if state != "succeeded" {
                    self.line(&format!("{state} {target}: {}", reason.as_deref().unwrap_or("")));
                }
                match self.bars.lock().expect("bars lock").get(stage) {
                    Some(bar) => {
                        bar.inc(1);
                        bar.set_message(format!("{msg}, {:.0} steps/s", bar.per_sec()));
                    }
                    None if done.is_multiple_of(500) => self.line(&format!("stage {stage}: {done} steps done, {msg}")),
                    None => {}
                }
            }
            Event::StageDone { stage, succeeded, drifted, failed, retries } => {
                if let Some(bar) = self.bars.lock().expect("bars lock").get(stage) {
                    bar.finish();
                }
                self.line(&format!("stage {stage}: {succeeded} succeeded, {drifted} drifted, {failed} failed, {retries} retries"));
            }
            Event::JobProgress { stage, job, bucket, job_id, status, succeeded, failed, total } => {
                let text = format!("{status}, {succeeded} succeeded, {failed} failed");
                match &self.multi {
                    Some(m) => {
                        let name = format!("job:{job}");
                        let mut bars = self.bars.lock().expect("bars lock");
                        let bar = bars.entry(name).or_insert_with(|| {
                            let bar = m.add(ProgressBar::new(*total));
                            bar.set_style(
                                ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} tasks {msg}")
                                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                                    .progress_chars("=> "),
                            );
                            bar.set_prefix(format!("{stage} job {job}"));
                            bar
                        });
                        bar.set_length(*total);
                        bar.set_position(succeeded + failed);
                        bar.set_message(format!("{} {job_id}: {text}", url(bucket)));
                    }
                    None => self.line(&format!("stage {stage}: batch job {job} ({job_id}, {}): {text} of {total} tasks", url(bucket))),
                }
            }
            Event::Stopping { reason } => self.line(&match reason.as_str() {
                "window" => "the maintenance window is closing: no new steps start; finishing those in flight".to_string(),
                "interrupt" => "interrupted: no new steps start; finishing those in flight (interrupt again to abandon them)".to_string(),
                _ => "abandoning steps in flight; they stay `started` in the journal and the next apply re-checks them".to_string(),
            }),
        }
    }
}

/// S3 bucket events carry a bare name; GCS ones their `gs://` URL.
fn url(bucket: &str) -> String {
    if bucket.contains("://") {
        bucket.to_string()
    } else {
        format!("s3://{bucket}")
    }
}
