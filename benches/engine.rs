//! Engine benchmark (not a test; `scripts/bench-engine.sh` runs every mode and prints the
//! figures). Each mode runs in its own process so that its peak RSS is its own:
//!
//! - `apply N DIR`: a journal of N object steps in one stage, run by the executor against an
//!   in-process no-op runner (no HTTP, journal included): CPU per step.
//! - `rollback DIR`: the journal `apply` left, every step undone by the no-op runner, after
//!   the pre-pass rollback makes (keys to check): CPU per step, peak RSS.
//! - `journal N DIR`: a journal of N steps, the first half succeeded (a run cut short).
//! - `resume DIR`: open that journal as apply does and run until the first provider call:
//!   time to the first call.
//! - `status DIR`: open that journal and read what `rekey status` reads: time.
//! - `verify DIR`: plan DIR/campaign.yaml (an inventory report) against the in-process cloud,
//!   then verify it, every object answered as on its team key: time, peak RSS.
//!
//! Figures are printed as `name value unit` lines.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rekey::error::ProviderError;
use rekey::events::Silent;
use rekey::executor::{ExecConfig, Stop};
use rekey::journal::{state, Journal, NewStep};
use rekey::model::{EncryptionClass, S3Encryption};
use rekey::steps::{ObjectStep, RunCtx, StepOutcome, StepRunner, StepSpec, UndoCtx, UndoOutcome};

/// CPU seconds (user + system) of this process so far.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size so far, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// A step as a plan of an ML estate makes it (its spec is as large as a real one).
fn object_step(stage: &str, i: u64, st: &'static str) -> NewStep {
    let key = format!("datasets/train/2026/11/shard-{i:012}.parquet");
    let spec = StepSpec::Object(ObjectStep {
        account: "default".into(),
        bucket: "ml-bench".into(),
        key: key.clone(),
        version_id: Some(format!("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY{i:012}")),
        latest: true,
        etag: format!("\"{i:032x}\""),
        size: 1 << 20,
        storage_class: "STANDARD".into(),
        from: EncryptionClass::SseS3,
        from_key_arn: None,
        from_bucket_key: false,
        to_key_arn: KEY_ARN.into(),
        engine: "copy".into(),
        part_size: 64 << 20,
        website_redirect: None,
        acls: false,
        recheck: false,
        content_hash: None,
        job: None,
    });
    NewStep {
        stage: stage.into(),
        kind: "copy".into(),
        account: "default".into(),
        bucket: "ml-bench".into(),
        key,
        version_id: None,
        bytes: 1 << 20,
        state: st,
        spec: serde_json::to_string(&spec).unwrap(),
        reason: None,
        job: None,
    }
}

/// A runner that does nothing, as fast as it can, and notes when it was first called.
struct Noop {
    first: Mutex<Option<Instant>>,
    stop_at_first: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    stopped: AtomicBool,
}

impl Noop {
    fn new(stop_at_first: Option<tokio::sync::mpsc::UnboundedSender<()>>) -> Noop {
        Noop {
            first: Mutex::new(None),
            stop_at_first,
            stopped: AtomicBool::new(false),
        }
    }

    fn called(&self) {
        let mut first = self.first.lock().unwrap();
        if first.is_none() {
            *first = Some(Instant::now());
        }
        if let Some(tx) = &self.stop_at_first {
            if !self.stopped.swap(true, Ordering::Relaxed) {
                let _ = tx.send(());
            }
        }
    }
}

impl StepRunner for Noop {
    async fn prepare(&self, _spec: &StepSpec) -> Result<Option<String>, ProviderError> {
        self.called();
        Ok(None)
    }

    async fn run(&self, _spec: &StepSpec, _ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        self.called();
        (
            StepOutcome::Succeeded {
                result: Some(r#"{"written":{"etag":"\"0123456789abcdef0123456789abcdef\""},"by_rekey":true}"#.into()),
                note: None,
            },
            0,
        )
    }

    async fn undo(&self, _spec: &StepSpec, _ctx: UndoCtx<'_>) -> UndoOutcome {
        self.called();
        UndoOutcome::Undone { note: None }
    }

    async fn key_usable(
        &self,
        _spec: &StepSpec,
        _key: &str,
    ) -> Result<Option<String>, ProviderError> {
        Ok(None)
    }
}

fn journal_path(dir: &Path) -> PathBuf {
    dir.join("bench.journal.sqlite")
}

fn runtime() -> tokio::runtime::Runtime {
    // As `rekey` runs: one thread.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cfg() -> ExecConfig {
    ExecConfig {
        concurrency: 64,
        ..Default::default()
    }
}

fn apply(n: u64, dir: &Path) {
    let path = journal_path(dir);
    let _ = std::fs::remove_file(&path);
    let t = Instant::now();
    let c0 = cpu();
    let mut j = Journal::open_writer(&path, "bench").unwrap();
    j.initialize((0..n).map(|i| Ok(object_step("main", i, state::PENDING))))
        .unwrap();
    println!("journal_insert_seconds {:.2} s", t.elapsed().as_secs_f64());
    println!(
        "journal_insert_cpu_per_step {:.2} us",
        (cpu() - c0) * 1e6 / n as f64
    );
    let runner = Noop::new(None);
    let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let c0 = cpu();
    let t = Instant::now();
    let stop = runtime()
        .block_on(rekey::apply::run_stages(
            &mut j,
            &runner,
            &["main"],
            &cfg(),
            &mut rx,
            &Silent,
        ))
        .unwrap();
    assert_eq!(stop, Stop::Completed);
    let cpu_s = cpu() - c0;
    let done = j
        .counts()
        .unwrap()
        .into_iter()
        .filter(|c| c.1 == state::SUCCEEDED)
        .map(|c| c.3)
        .sum::<u64>();
    assert_eq!(done, n, "every step succeeded");
    println!("apply_steps {n} steps");
    println!("apply_seconds {:.2} s", t.elapsed().as_secs_f64());
    println!("apply_cpu_per_step {:.2} us", cpu_s * 1e6 / n as f64);
    println!("apply_peak_rss {:.1} MiB", peak_rss_mib());
}

fn rollback(dir: &Path) {
    let path = journal_path(dir);
    let mut j = Journal::open_writer(&path, "bench").unwrap();
    let runner = Noop::new(None);
    let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let c0 = cpu();
    let t = Instant::now();
    // The pre-pass rollback makes: every step read once for the keys it returns to.
    let mut steps = 0u64;
    j.each_undoable(1, |r| {
        let spec: StepSpec = serde_json::from_str(&r.spec).unwrap();
        std::hint::black_box(rekey::steps::undo_keys(&spec, r.undo.as_deref()));
        steps += 1;
        Ok(())
    })
    .unwrap();
    let (stop, tally) = runtime()
        .block_on(rekey::executor::undo_from(
            &mut j,
            &runner,
            1,
            &cfg(),
            &mut rx,
            &Silent,
        ))
        .unwrap();
    assert_eq!(stop, Stop::Completed);
    assert_eq!(tally.undone, steps, "every step undone");
    let cpu_s = cpu() - c0;
    println!("rollback_steps {steps} steps");
    println!("rollback_seconds {:.2} s", t.elapsed().as_secs_f64());
    println!("rollback_cpu_per_step {:.2} us", cpu_s * 1e6 / steps as f64);
    println!("rollback_peak_rss {:.1} MiB", peak_rss_mib());
}

fn big_journal(n: u64, dir: &Path) {
    let path = journal_path(dir);
    let _ = std::fs::remove_file(&path);
    let t = Instant::now();
    let mut j = Journal::open_writer(&path, "bench").unwrap();
    let half = n / 2;
    j.initialize((0..n).map(|i| {
        Ok(object_step(
            "main",
            i,
            if i < half {
                state::SUCCEEDED
            } else {
                state::PENDING
            },
        ))
    }))
    .unwrap();
    j.checkpoint("main").unwrap();
    drop(j);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("journal_steps {n} steps");
    println!("journal_seconds {:.1} s", t.elapsed().as_secs_f64());
    println!("journal_size {:.0} MiB", size as f64 / (1024.0 * 1024.0));
}

fn resume(dir: &Path) {
    let path = journal_path(dir);
    let t = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let runner = Noop::new(Some(tx));
    let mut j = Journal::open_writer(&path, "bench").unwrap();
    assert!(j.is_initialized().unwrap());
    let stop = runtime()
        .block_on(rekey::apply::run_stages(
            &mut j,
            &runner,
            &["main"],
            &cfg(),
            &mut rx,
            &Silent,
        ))
        .unwrap();
    assert_eq!(stop, Stop::Interrupted);
    let first = runner.first.lock().unwrap().expect("a provider call");
    println!(
        "resume_first_call {:.3} s",
        first.duration_since(t).as_secs_f64()
    );
    println!("resume_peak_rss {:.1} MiB", peak_rss_mib());
}

fn status(dir: &Path) {
    let path = journal_path(dir);
    let t = Instant::now();
    let j = Journal::open(&path, "bench").unwrap();
    let counts = j.counts().unwrap();
    let checkpoints = j.checkpoints().unwrap();
    let steps: u64 = counts.iter().map(|c| c.3).sum();
    std::hint::black_box(&checkpoints);
    println!("status_steps {steps} steps");
    println!("status_seconds {:.3} s", t.elapsed().as_secs_f64());
}

fn verify(dir: &Path) {
    use rekey::providers::memory::{MemCloud, MemVersion};
    let c = rekey::campaign::load(&dir.join("campaign.yaml")).unwrap();
    let cloud = MemCloud::new("us-east-1", "111122223333");
    let key = cloud.create_key("alias/ml-bench");
    cloud.create_bucket(
        "ml-bench",
        true,
        S3Encryption {
            algorithm: "AES256".into(),
            ..Default::default()
        },
    );
    let plan_path = dir.join("bench.plan.yaml");
    let t = Instant::now();
    let p = runtime()
        .block_on(rekey::plan::plan_account(
            &c,
            &cloud,
            &plan_path,
            "2026-11-26T00:00:00Z".into(),
            &Silent,
        ))
        .unwrap();
    println!("plan_seconds {:.2} s", t.elapsed().as_secs_f64());
    println!("plan_peak_rss {:.1} MiB", peak_rss_mib());
    // Every object HEADs as on the team key.
    cloud.answer_every_key(
        "ml-bench",
        MemVersion {
            version_id: None,
            etag: "\"x\"".into(),
            size: 1,
            storage_class: "STANDARD".into(),
            encryption: S3Encryption {
                algorithm: "aws:kms".into(),
                kms_key_arn: Some(key),
                ..Default::default()
            },
            tags: String::new(),
            checksum: None,
            delete_marker: false,
        },
    );
    let t = Instant::now();
    let c0 = cpu();
    let accounts = rekey::apply::single(cloud);
    let v = runtime()
        .block_on(rekey::apply::verify_plan(
            &p,
            &plan_path,
            &accounts,
            None,
            &rekey::apply::VerifyOptions {
                concurrency: 64,
                requests_per_second: 1_000_000,
                ignore_blocked: true,
                findings: None,
            },
        ))
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!("verify_checked {} resources", v.checked);
    println!("verify_not_compliant {} resources", v.not_compliant);
    println!("verify_seconds {secs:.2} s");
    println!(
        "verify_cpu_per_object {:.2} us",
        (cpu() - c0) * 1e6 / v.checked.max(1) as f64
    );
    println!("verify_peak_rss {:.1} MiB", peak_rss_mib());
}

fn main() {
    // `cargo bench` adds `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "apply" => apply(arg(1).parse().unwrap(), Path::new(&arg(2))),
        "rollback" => rollback(Path::new(&arg(1))),
        "journal" => big_journal(arg(1).parse().unwrap(), Path::new(&arg(2))),
        "resume" => resume(Path::new(&arg(1))),
        "status" => status(Path::new(&arg(1))),
        "verify" => verify(Path::new(&arg(1))),
        // `cargo test --all-targets` runs this binary too: nothing to do then.
        "" => eprintln!("usage: engine apply N DIR | rollback DIR | journal N DIR | resume DIR | status DIR | verify DIR (scripts/bench-engine.sh)"),
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}
