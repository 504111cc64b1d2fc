//! Reporters: render core events on a terminal (indicatif), as plain lines, or as JSON lines.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::events::{Event, Reporter};

/// Renders events on stderr, so that stdout carries only the command's output.
pub struct StderrReporter {
    bar: Option<ProgressBar>,
    json: bool,
    out: Mutex<std::io::Stderr>,
}

impl StderrReporter {
    pub fn new(json: bool) -> Self {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        StderrReporter {
            bar,
            json,
            out: Mutex::new(std::io::stderr()),
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => {
                let mut out = self.out.lock().expect("stderr lock");
                let _ = writeln!(out, "{text}");
            }
        }
    }

    /// Clear the spinner before the command prints its result.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Reporter for StderrReporter {
    fn event(&self, event: &Event) {
        if self.json {
            if let Ok(s) = serde_json::to_string(event) {
                self.line(&s);
            }
            return;
        }
        match event {
            Event::KeyResolved { key, alias, arn } => {
                self.line(&format!("key {key}: {alias} -> {arn}"))
            }
            Event::BucketsSelected { buckets } => {
                self.line(&format!("{} buckets selected", buckets.len()))
            }
            Event::BucketStarted {
                bucket,
                index,
                total,
            } => match &self.bar {
                Some(b) => b.set_message(format!("[{}/{}] s3://{bucket}", index + 1, total)),
                None => self.line(&format!("[{}/{}] s3://{bucket}", index + 1, total)),
            },
            Event::BucketDone {
                bucket,
                objects,
                bytes,
                ..
            } => self.line(&format!(
                "  s3://{bucket}: {objects} objects, {}",
                crate::summary::bytes(*bytes)
            )),
            Event::Progress { objects, bytes } => {
                if let Some(b) = &self.bar {
                    b.set_message(format!(
                        "{objects} objects, {}",
                        crate::summary::bytes(*bytes)
                    ));
                }
            }
            Event::Warning { message } => self.line(&format!("warning: {message}")),
        }
    }
}
