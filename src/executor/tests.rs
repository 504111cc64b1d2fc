//! The executor against the journal at page scale, from the invariants (written by an
//! independent review): every step of an interrupted and resumed apply reaches one outcome,
//! rollback keeps its order and barriers across pages, the tally follows every transition,
//! and the queries that must not scan the journal use their index.
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use rusqlite::Connection;

use crate::error::ProviderError;
use crate::events::Silent;
use crate::executor::{self, ExecConfig, Stop};
use crate::journal::{state, undo_state, Journal, NewStep, Recorded};
use crate::model::{EncryptionClass, S3Encryption};
use crate::steps::{ObjectStep, RunCtx, StepOutcome, StepRunner, StepSpec, UndoCtx, UndoOutcome};

fn obj(stage: &str, bucket: &str, key: &str) -> NewStep {
    let spec = StepSpec::Object(ObjectStep {
        account: "default".into(),
        bucket: bucket.into(),
        key: key.into(),
        version_id: None,
        latest: true,
        etag: "\"e\"".into(),
        size: 7,
        storage_class: "STANDARD".into(),
        from: EncryptionClass::SseS3,
        from_key_arn: None,
        from_bucket_key: false,
        to_key_arn: "arn:k".into(),
        engine: "copy".into(),
        part_size: 1,
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
        bucket: bucket.into(),
        key: key.into(),
        version_id: None,
        bytes: 7,
        state: state::PENDING,
        spec: serde_json::to_string(&spec).unwrap(),
        reason: None,
        job: None,
    }
}

fn default_step(stage: &str, bucket: &str, gcs: bool) -> NewStep {
    let spec = if gcs {
        StepSpec::GcsBucketDefault {
            account: "default".into(),
            bucket: bucket.into(),
            key: "k".into(),
        }
    } else {
        StepSpec::BucketDefault {
            account: "default".into(),
            bucket: bucket.into(),
            target: S3Encryption::default(),
        }
    };
    NewStep {
        stage: stage.into(),
        kind: if gcs {
            "gcs-bucket-default"
        } else {
            "bucket-default"
        }
        .into(),
        account: "default".into(),
        bucket: bucket.into(),
        key: String::new(),
        version_id: None,
        bytes: 0,
        state: state::PENDING,
        spec: serde_json::to_string(&spec).unwrap(),
        reason: None,
        job: None,
    }
}

fn endpoint(stage: &str, name: &str) -> NewStep {
    let spec = StepSpec::Endpoint {
        account: "default".into(),
        name: name.into(),
        from_config: "a".into(),
        to_config: "b".into(),
        key_arn: "k".into(),
        volume_key: Default::default(),
        deployment_config: None,
        source_sha256: None,
    };
    NewStep {
        stage: stage.into(),
        kind: "endpoint".into(),
        account: "default".into(),
        bucket: "sagemaker".into(),
        key: name.into(),
        version_id: None,
        bytes: 0,
        state: state::PENDING,
        spec: serde_json::to_string(&spec).unwrap(),
        reason: None,
        job: None,
    }
}

fn name_of(spec: &StepSpec) -> String {
    match spec {
        StepSpec::Object(o) => format!("{}/{}", o.bucket, o.key),
        StepSpec::BucketDefault { bucket, .. } | StepSpec::GcsBucketDefault { bucket, .. } => {
            format!("default:{bucket}")
        }
        StepSpec::Endpoint { name, .. } => format!("endpoint:{name}"),
        StepSpec::BatchJob(j) => format!("job:{}", j.job),
    }
}

/// A runner that logs every call; fails names in `fail`; sends an interrupt after the
/// `interrupt_at`-th call (and a second one `abort_after` calls later).
struct Fake {
    log: Mutex<Vec<(String, &'static str)>>,
    fail: Vec<String>,
    calls: Mutex<usize>,
    interrupts: Mutex<Vec<(usize, tokio::sync::mpsc::UnboundedSender<()>)>>,
}

impl Fake {
    fn new(fail: Vec<String>) -> Fake {
        Fake {
            log: Mutex::new(Vec::new()),
            fail,
            calls: Mutex::new(0),
            interrupts: Mutex::new(Vec::new()),
        }
    }
    async fn tick(&self, name: String, what: &'static str) {
        self.log.lock().unwrap().push((name.clone(), what));
        let n = {
            let mut c = self.calls.lock().unwrap();
            *c += 1;
            *c
        };
        for (at, tx) in self.interrupts.lock().unwrap().iter() {
            if *at == n {
                let _ = tx.send(());
            }
        }
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
    }
}

impl StepRunner for Fake {
    async fn prepare(&self, _spec: &StepSpec) -> Result<Option<String>, ProviderError> {
        Ok(Some("{}".into()))
    }
    async fn run(&self, spec: &StepSpec, _ctx: RunCtx<'_>) -> (StepOutcome, u32) {
        let n = name_of(spec);
        self.tick(n.clone(), "run").await;
        if self.fail.contains(&n) {
            return (
                StepOutcome::Failed {
                    reason: "nope".into(),
                },
                0,
            );
        }
        (
            StepOutcome::Succeeded {
                result: None,
                note: None,
            },
            0,
        )
    }
    async fn undo(&self, spec: &StepSpec, _ctx: UndoCtx<'_>) -> UndoOutcome {
        let n = name_of(spec);
        self.tick(n.clone(), "undo-start").await;
        self.log.lock().unwrap().push((n, "undo-end"));
        UndoOutcome::Undone { note: None }
    }
    async fn key_usable(&self, _s: &StepSpec, _k: &str) -> Result<Option<String>, ProviderError> {
        Ok(None)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cfg(c: usize) -> ExecConfig {
    ExecConfig {
        concurrency: c,
        ..Default::default()
    }
}

/// The tally must equal a GROUP BY over the steps.
fn tally_matches(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    let q = |sql: &str| -> BTreeMap<(String, String, String), (i64, i64)> {
        let mut st = conn.prepare(sql).unwrap();
        st.query_map([], |r| {
            Ok(((r.get(0)?, r.get(1)?, r.get(2)?), (r.get(3)?, r.get(4)?)))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
    };
    let real = q("SELECT stage, state, coalesce(undo_state,''), count(*), sum(bytes) FROM steps GROUP BY 1,2,3");
    let tally = q(
        "SELECT stage, state, undo_state, steps, bytes FROM tally WHERE steps <> 0 OR bytes <> 0",
    );
    assert_eq!(real, tally, "tally drifted");
}

/// A plan of two stages (S3 defaults, objects over several pages, a held bucket, endpoints)
/// plus a GCS stage.
fn plan() -> Vec<NewStep> {
    let mut s = vec![
        default_step("a", "b1", false),
        default_step("a", "b2", false),
        default_step("a", "bad", false),
    ];
    for i in 0..1500 {
        s.push(obj("a", ["b1", "b2", "bad"][i % 3], &format!("o{i}")));
    }
    s.push(endpoint("a", "e1"));
    s.push(endpoint("a", "e2"));
    s.push(default_step("g", "gb", true));
    for i in 0..1200 {
        s.push(obj("g", "gb", &format!("g{i}")));
    }
    for i in 0..2100 {
        s.push(obj("c", "b3", &format!("c{i}")));
    }
    s.push(endpoint("c", "e3"));
    s
}

#[test]
fn interrupted_apply_runs_every_step_to_an_outcome_once() {
    for (conc, first, second) in [
        (1usize, 3usize, 0usize),
        (8, 700, 5),
        (64, 1500, 0),
        (32, 333, 40),
        (5, 2999, 1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let mut j = Journal::open(&path, "p").unwrap();
        j.initialize(plan().into_iter().map(Ok)).unwrap();
        let runner = Fake::new(vec!["default:bad".into(), "b1/o3".into()]);
        let mut runs = 0;
        loop {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            {
                let mut ints = runner.interrupts.lock().unwrap();
                ints.clear();
                let base = *runner.calls.lock().unwrap();
                if runs < 4 {
                    ints.push((base + first, tx.clone()));
                    if second > 0 {
                        ints.push((base + first + second, tx.clone()));
                    }
                }
            }
            let stop = rt()
                .block_on(crate::apply::run_stages(
                    &mut j,
                    &runner,
                    &["a", "g", "c"],
                    &ExecConfig {
                        continue_on_failure: true,
                        ..cfg(conc)
                    },
                    &mut rx,
                    &Silent,
                ))
                .unwrap();
            tally_matches(&path);
            runs += 1;
            if stop == Stop::Completed {
                break;
            }
            assert!(runs < 20);
        }
        // Every step has an outcome; only the held bucket's objects stay pending.
        let rows = j.steps_from(0).unwrap();
        let mut by: HashMap<String, u64> = HashMap::new();
        for r in &rows {
            *by.entry(r.state.clone()).or_default() += 1;
            if r.state == state::PENDING {
                assert_eq!(r.bucket, "bad", "{r:?}");
            }
            assert_ne!(r.state, state::STARTED, "{r:?}");
        }
        assert_eq!(by.get("pending").copied(), Some(500), "{by:?}");
        // A step ran twice only if a second interrupt abandoned it in flight.
        let log = runner.log.lock().unwrap();
        let mut n: HashMap<&str, usize> = HashMap::new();
        for (k, _) in log.iter() {
            *n.entry(k.as_str()).or_default() += 1;
        }
        let twice = n.values().filter(|&&c| c > 1).count();
        if second == 0 {
            // failed steps are retried on each run: b1/o3 and default:bad
            let extra: Vec<_> = n
                .iter()
                .filter(|(k, &c)| c > 1 && **k != "b1/o3" && **k != "default:bad")
                .collect();
            assert!(
                extra.is_empty(),
                "conc {conc}: run twice without an abort: {extra:?}"
            );
        } else {
            assert!(twice <= 4 * conc + 2, "{twice}");
        }
        let counts = j.counts().unwrap();
        let total: u64 = counts.iter().map(|c| c.3).sum();
        assert_eq!(total, rows.len() as u64);
    }
}

#[test]
fn rollback_keeps_barriers_and_order_across_pages() {
    for conc in [1usize, 7, 64] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let mut j = Journal::open(&path, "p").unwrap();
        j.initialize(plan().into_iter().map(Ok)).unwrap();
        let runner = Fake::new(vec![]);
        let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = rt()
            .block_on(crate::apply::run_stages(
                &mut j,
                &runner,
                &["a", "g", "c"],
                &cfg(conc),
                &mut rx,
                &Silent,
            ))
            .unwrap();
        assert_eq!(stop, Stop::Completed);
        let ids: HashMap<String, (i64, String)> = j
            .steps_from(0)
            .unwrap()
            .into_iter()
            .map(|r| {
                let spec: StepSpec = serde_json::from_str(&r.spec).unwrap();
                (name_of(&spec), (r.id, r.kind.clone()))
            })
            .collect();
        let undo_runner = Fake::new(vec![]);
        // Interrupt the rollback twice, then resume.
        let mut passes = 0;
        loop {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            if passes < 2 {
                let base = *undo_runner.calls.lock().unwrap();
                undo_runner
                    .interrupts
                    .lock()
                    .unwrap()
                    .push((base + 1100 + passes * 900, tx.clone()));
            }
            let (stop, _) = rt()
                .block_on(executor::undo_from(
                    &mut j,
                    &undo_runner,
                    1,
                    &cfg(conc),
                    &mut rx,
                    &Silent,
                ))
                .unwrap();
            tally_matches(&path);
            passes += 1;
            if stop == Stop::Completed {
                break;
            }
        }
        let log = undo_runner.log.lock().unwrap();
        // Each step undone once.
        let starts: Vec<&String> = log
            .iter()
            .filter(|(_, w)| *w == "undo-start")
            .map(|(k, _)| k)
            .collect();
        assert_eq!(starts.len(), ids.len(), "every step undone once");
        // Order: GCS defaults first; then, a barrier starts only after every newer step ended
        // and every older step starts after the barrier ended.
        let mut ended: std::collections::HashSet<i64> = Default::default();
        let mut started: std::collections::HashSet<i64> = Default::default();
        let mut open: std::collections::HashSet<i64> = Default::default();
        let mut gcs_done = false;
        for (k, w) in log.iter() {
            let (id, kind) = &ids[k];
            if *w == "undo-start" {
                if kind == "gcs-bucket-default" {
                    assert!(!gcs_done && started.is_empty(), "GCS default first");
                } else {
                    gcs_done = true;
                }
                let barrier = kind == "bucket-default" || kind == "endpoint";
                if barrier {
                    assert!(open.is_empty(), "{k} starts alone");
                    for (_, (other, okind)) in ids.iter() {
                        if other > id && okind != "gcs-bucket-default" {
                            assert!(ended.contains(other), "{k} before newer {other} ended");
                        }
                    }
                }
                for o in &open {
                    let (_, ok) = ids.iter().find(|(_, (i, _))| i == o).unwrap().1;
                    assert!(
                        ok != "bucket-default" && ok != "endpoint",
                        "{k} overlaps a barrier"
                    );
                }
                // no older step ran while a newer one has not started, across barriers
                started.insert(*id);
                open.insert(*id);
            } else {
                open.remove(id);
                ended.insert(*id);
            }
        }
    }
}

#[test]
fn tally_follows_every_transition() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let mut j = Journal::open(&path, "p").unwrap();
    let mut steps = vec![];
    for i in 0..40 {
        let mut s = obj(if i < 20 { "a" } else { "b" }, "b", &format!("k{i}"));
        s.bytes = i as u64 + 1;
        if i % 7 == 0 {
            s.state = state::BLOCKED;
        }
        steps.push(s);
    }
    j.initialize(steps.into_iter().map(Ok)).unwrap();
    let mut seed = 12345u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..5000 {
        let id = rnd(40) as i64 + 1;
        let _ = match rnd(9) {
            0 => j.mark_started(&[(id, Some("{}".into()))]),
            1 => j.mark_sent(&[id]),
            2 => j.record(&[Recorded {
                id,
                state: [
                    state::SUCCEEDED,
                    state::FAILED,
                    state::DRIFTED,
                    state::VANISHED,
                ][rnd(4) as usize],
                result: None,
                reason: None,
                retries: 0,
            }]),
            3 => j.unstart(&[id]),
            4 => j.mark_undo_started(&[id]),
            5 => j.record_undos(&[(
                id,
                [undo_state::UNDONE, undo_state::CONFLICT, undo_state::FAILED][rnd(3) as usize],
                None,
            )]),
            6 => j.unstart_undo(&[(
                id,
                [
                    None,
                    Some("conflict".to_string()),
                    Some("failed".to_string()),
                ][rnd(3) as usize]
                    .clone(),
            )]),
            7 => j.reset_undone(if rnd(2) == 0 { "a" } else { "b" }),
            _ => j.save_progress(id, "{}"),
        };
        tally_matches(&path);
    }
}

#[test]
fn paging_queries_use_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let mut j = Journal::open(&path, "p").unwrap();
    j.initialize((0..5000).map(|i| Ok(obj("a", "b", &format!("k{i}")))))
        .unwrap();
    drop(j);
    let conn = Connection::open(&path).unwrap();
    let plan = |sql: &str| -> String {
        let mut q = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        q.query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(|r| r.unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    };
    for sql in [
        "SELECT count(*), coalesce(sum(bytes), 0) FROM steps INDEXED BY steps_todo WHERE state IN ('pending', 'started', 'failed') AND id BETWEEN 1 AND 5000",
        "SELECT id FROM steps INDEXED BY steps_todo WHERE state IN ('pending', 'started', 'failed') AND id > 1 AND id <= 5000 ORDER BY id LIMIT 10",
    ] {
        let p = plan(sql);
        assert!(p.contains("steps_todo") && !p.contains("TEMP B-TREE"), "{sql}: {p}");
    }
    let p = plan("SELECT id FROM steps INDEXED BY steps_notable WHERE state IN ('failed', 'drifted', 'vanished', 'blocked') OR undo_state IN ('conflict', 'failed') ORDER BY id");
    assert!(p.contains("steps_notable"), "{p}");
    let p = plan("UPDATE steps SET state = 'pending' WHERE id BETWEEN 1 AND 3 AND state IN ('succeeded', 'started', 'failed') AND undo_state = 'undone'");
    assert!(p.contains("INTEGER PRIMARY KEY"), "a range of ids: {p}");
}

/// A job runner that tells each member of its job: `fail` ones failed, the others succeeded;
/// it logs the jobs it ran.
struct FakeJobs {
    ran: Mutex<Vec<u32>>,
    fail: Vec<String>,
}

impl executor::JobRunner for FakeJobs {
    async fn run_job(
        &self,
        journal: &mut Journal,
        row: &crate::journal::StepRow,
        _: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
        _: &dyn crate::events::Reporter,
        tally: &mut executor::Tally,
    ) -> Result<Stop, crate::error::RekeyError> {
        let job = row.job.unwrap();
        self.ran.lock().unwrap().push(job);
        journal.mark_started(&[(row.id, None)])?;
        let members = journal.untold_members(job, 0, 100)?;
        journal.start_members(
            &members
                .iter()
                .map(|m| (m.id, Some("{}".to_string())))
                .collect::<Vec<_>>(),
        )?;
        let told: Vec<Recorded> = members
            .iter()
            .map(|m| {
                let failed = self.fail.contains(&m.key);
                if failed {
                    tally.failed += 1;
                } else {
                    tally.succeeded += 1;
                }
                Recorded {
                    id: m.id,
                    state: if failed {
                        state::FAILED
                    } else {
                        state::SUCCEEDED
                    },
                    result: None,
                    reason: None,
                    retries: 0,
                }
            })
            .collect();
        journal.record(&told)?;
        journal.record(&[Recorded {
            id: row.id,
            state: state::SUCCEEDED,
            result: None,
            reason: None,
            retries: 0,
        }])?;
        Ok(Stop::Completed)
    }
}

fn member(stage: &str, bucket: &str, key: &str, job: u32) -> NewStep {
    let mut s = obj(stage, bucket, key);
    s.job = Some(job);
    s
}

fn job_step(stage: &str, bucket: &str, job: u32) -> NewStep {
    let spec = StepSpec::BatchJob(crate::steps::JobSpec {
        account: "default".into(),
        bucket: bucket.into(),
        job,
        operation: "update-encryption".into(),
        storage_class: "STANDARD".into(),
        kms_key_arn: "arn:k".into(),
        versioned: true,
        unmodified_since: None,
    });
    NewStep {
        stage: stage.into(),
        kind: "batch-job".into(),
        account: "default".into(),
        bucket: bucket.into(),
        key: String::new(),
        version_id: None,
        bytes: 0,
        state: state::PENDING,
        spec: serde_json::to_string(&spec).unwrap(),
        reason: None,
        job: Some(job),
    }
}

#[test]
fn a_jobs_members_run_in_its_job_and_locally_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let mut j = Journal::open(&path, "p").unwrap();
    let steps = vec![
        job_step("s", "b", 7),
        obj("s", "b", "local"),
        member("s", "b", "m1", 7),
        member("s", "b", "m2", 7),
        member("s", "b", "m3", 7),
    ];
    j.initialize(steps.into_iter().map(Ok)).unwrap();
    let runner = Fake::new(Vec::new());
    let jobs = FakeJobs {
        ran: Mutex::new(Vec::new()),
        fail: vec!["m2".into()],
    };
    let run = |j: &mut Journal, cfg: ExecConfig| {
        let (_tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        rt().block_on(crate::apply::run_stages_with(
            j,
            &runner,
            &jobs,
            &["s"],
            &cfg,
            &mut rx,
            &Silent,
        ))
        .unwrap()
    };
    // The job runs its members; rekey's own runner sees only the step outside it.
    let stop = run(&mut j, cfg(4));
    assert_eq!(stop, Stop::Completed, "one stage: nothing after it to gate");
    assert_eq!(*jobs.ran.lock().unwrap(), vec![7]);
    let local: Vec<String> = runner
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(local, vec!["b/local".to_string()]);
    tally_matches(&path);
    assert!(j.any_failed().unwrap(), "the failed task is a failed step");
    // Applied again: a failed task is not retried by anyone...
    run(&mut j, cfg(4));
    assert_eq!(runner.log.lock().unwrap().len(), 1);
    assert_eq!(
        *jobs.ran.lock().unwrap(),
        vec![7],
        "a finished job is not run again"
    );
    // ...until the operator asks for rekey's own engine.
    run(
        &mut j,
        ExecConfig {
            retry_failed_locally: true,
            ..cfg(4)
        },
    );
    let local: Vec<String> = runner
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(local, vec!["b/local".to_string(), "b/m2".to_string()]);
    assert!(!j.any_failed().unwrap());
    tally_matches(&path);
}
