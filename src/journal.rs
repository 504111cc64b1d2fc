//! The journal: an embedded SQLite write-ahead log of every step of a plan's runs. Intent
//! (`started`, with the undo data) is committed before the provider call; the outcome after.
//! State transitions are checked in the UPDATE itself, so an illegal one is an error, not a
//! silent overwrite. Outcomes are committed in batches so the journal is never the bottleneck.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::RekeyError;

/// The journal schema this build reads and writes (1 lacked `progress`, 2 the stage ranges,
/// the tally and the partial indexes, 3 the batch job of a step; all are brought up to date
/// on open).
pub const SCHEMA_VERSION: u32 = 4;

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE steps (
  id INTEGER PRIMARY KEY,
  stage TEXT NOT NULL,
  kind TEXT NOT NULL,
  account TEXT NOT NULL,
  bucket TEXT NOT NULL,
  key TEXT NOT NULL DEFAULT '',
  version_id TEXT,
  bytes INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  spec TEXT NOT NULL,
  undo TEXT,
  result TEXT,
  reason TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  retries INTEGER NOT NULL DEFAULT 0,
  undo_state TEXT,
  undo_reason TEXT,
  updated_at TEXT NOT NULL,
  progress TEXT
);
CREATE TABLE checkpoints (name TEXT PRIMARY KEY, first_step INTEGER NOT NULL, created_at TEXT NOT NULL);
";

/// What schema 3 adds, so that no command reads more of the journal than it needs (a journal
/// of 10^7 steps holds gigabytes):
/// - `stages`: each stage's id range, cut into its phases (bucket defaults, objects from
///   `objects_from`, endpoints from `endpoints_from`), written once when the steps are;
/// - `tally`: steps and bytes by stage, state and undo state, kept by a trigger in the same
///   transaction as every change of state (status reads it, not the steps);
/// - `steps_todo`: the steps that still have work, with their bytes (apply pages through it:
///   a resumed run finds its first step at once however much is done);
/// - `steps_notable`: the steps a report lists.
const SCHEMA_V3: &str = "
CREATE TABLE stages (name TEXT PRIMARY KEY, first_step INTEGER NOT NULL, objects_from INTEGER NOT NULL, endpoints_from INTEGER NOT NULL, last_step INTEGER NOT NULL);
CREATE TABLE tally (stage TEXT NOT NULL, state TEXT NOT NULL, undo_state TEXT NOT NULL, steps INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (stage, state, undo_state)) WITHOUT ROWID;
CREATE INDEX steps_todo ON steps(id, bytes) WHERE state IN ('pending', 'started', 'failed');
CREATE INDEX steps_notable ON steps(id) WHERE state IN ('failed', 'drifted', 'vanished', 'blocked') OR undo_state IN ('conflict', 'failed');
CREATE TRIGGER steps_tally AFTER UPDATE OF state, undo_state ON steps
WHEN OLD.state IS NOT NEW.state OR OLD.undo_state IS NOT NEW.undo_state
BEGIN
  UPDATE tally SET steps = steps - 1, bytes = bytes - OLD.bytes
   WHERE stage = OLD.stage AND state = OLD.state AND undo_state = coalesce(OLD.undo_state, '');
  INSERT INTO tally (stage, state, undo_state, steps, bytes)
   VALUES (NEW.stage, NEW.state, coalesce(NEW.undo_state, ''), 1, NEW.bytes)
   ON CONFLICT (stage, state, undo_state) DO UPDATE SET steps = steps + 1, bytes = bytes + excluded.bytes;
END;
";

/// What schema 4 adds: the S3 Batch Operations job a step belongs to (the job's own step and
/// its members carry the plan's job number), and two indexes over them: a job's members in
/// order (its manifest), and a member by its key and version (a report's task); and each run
/// (apply, rollback) with what it did stage by stage, for the run report.
const SCHEMA_V4: &str = "
ALTER TABLE steps ADD COLUMN job INTEGER;
CREATE INDEX steps_job ON steps(job, id) WHERE job IS NOT NULL;
CREATE INDEX steps_task ON steps(job, key, version_id) WHERE job IS NOT NULL;
CREATE TABLE runs (id INTEGER PRIMARY KEY, command TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT, stop TEXT);
CREATE TABLE run_stages (run INTEGER NOT NULL, stage TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT NOT NULL, succeeded INTEGER NOT NULL, drifted INTEGER NOT NULL, failed INTEGER NOT NULL, retries INTEGER NOT NULL, bytes INTEGER NOT NULL);
";

/// The condition `steps_todo` is built on (a query must say it the same way to use it).
const TODO: &str = "state IN ('pending', 'started', 'failed')";
/// The condition `steps_notable` is built on.
const NOTABLE: &str =
    "state IN ('failed', 'drifted', 'vanished', 'blocked') OR undo_state IN ('conflict', 'failed')";
/// Steps that may have changed the cloud and are not undone: what a rollback undoes. A step
/// never sent (journaled ahead, or whose undo data could not even be read) cannot have.
const UNDOABLE: &str = "state IN ('succeeded', 'started', 'failed') AND (undo_state IS NULL OR undo_state <> 'undone') AND (state = 'succeeded' OR (undo IS NOT NULL AND attempts > 0))";

/// Step kinds by phase of a stage: bucket defaults run first, endpoints last.
fn phase_of(kind: &str) -> u8 {
    match kind {
        "bucket-default" | "gcs-bucket-default" => 0,
        "endpoint" => 2,
        _ => 1,
    }
}

/// A stage's steps: ids `first..=last`, bucket defaults before `objects_from`, endpoints from
/// `endpoints_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageRange {
    pub first: i64,
    pub objects_from: i64,
    pub endpoints_from: i64,
    pub last: i64,
}

impl StageRange {
    pub fn steps(&self) -> u64 {
        (self.last - self.first + 1).max(0) as u64
    }
}

/// Step states. `pending → started → succeeded | failed | drifted | vanished`; `failed` and
/// `started` may start again (retry, resume); `blocked` never changes. `vanished`: the
/// resource was deleted since it was planned (nothing to do, nothing to undo).
pub mod state {
    pub const PENDING: &str = "pending";
    pub const STARTED: &str = "started";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const DRIFTED: &str = "drifted";
    pub const VANISHED: &str = "vanished";
    pub const BLOCKED: &str = "blocked";
}

/// Undo states of a step that succeeded, or was started or failed (it may have taken effect:
/// its undo re-checks the cloud). `started → undone | conflict | failed`; `started`,
/// `conflict` and `failed` may start again.
pub mod undo_state {
    pub const STARTED: &str = "started";
    pub const UNDONE: &str = "undone";
    pub const CONFLICT: &str = "conflict";
    pub const FAILED: &str = "failed";
}

/// A run of apply or rollback, with what it did stage by stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RunRow {
    pub id: i64,
    pub command: String,
    pub started_at: String,
    /// None: the run did not end (killed).
    pub ended_at: Option<String>,
    pub stop: Option<String>,
    pub stages: Vec<RunStage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RunStage {
    pub stage: String,
    pub started_at: String,
    pub ended_at: String,
    pub succeeded: u64,
    pub drifted: u64,
    pub failed: u64,
    pub retries: u64,
    pub bytes: u64,
}

/// A step to insert when a journal is first created.
#[derive(Debug, Clone)]
pub struct NewStep {
    pub stage: String,
    pub kind: String,
    pub account: String,
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub bytes: u64,
    pub state: &'static str,
    pub spec: String,
    pub reason: Option<String>,
    /// The batch job that runs it (or that it is).
    pub job: Option<u32>,
}

/// A step as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct StepRow {
    pub id: i64,
    pub stage: String,
    pub kind: String,
    pub account: String,
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub bytes: u64,
    pub state: String,
    pub spec: String,
    pub undo: Option<String>,
    pub result: Option<String>,
    pub reason: Option<String>,
    pub attempts: i64,
    pub retries: i64,
    pub undo_state: Option<String>,
    pub undo_reason: Option<String>,
    /// What a step journaled while it ran (a multipart copy's upload id).
    pub progress: Option<String>,
    /// The batch job that runs it (or that it is).
    pub job: Option<u32>,
}

impl StepRow {
    /// A step a batch job runs (not the job's own step).
    pub fn is_job_member(&self) -> bool {
        self.job.is_some() && self.kind != "batch-job"
    }
}

/// (stage, state, undo state, steps, bytes).
pub type StateCount = (String, String, Option<String>, u64, u64);

impl StepRow {
    /// What the step changes, as an operator names it.
    pub fn target(&self) -> String {
        let scheme = if self.kind.starts_with("gcs-") || self.account.starts_with("gcp:") {
            "gs"
        } else {
            "s3"
        };
        match (self.kind.as_str(), self.key.is_empty()) {
            ("endpoint", _) => format!("sagemaker:endpoint/{}", self.key),
            (_, true) => format!("{scheme}://{}", self.bucket),
            _ => format!("{scheme}://{}/{}", self.bucket, self.key),
        }
    }
}

/// `s3://bucket` (bucket names of Cloud Storage steps arrive as they are).
pub fn url_of(bucket: &str) -> String {
    if bucket.contains("://") {
        bucket.to_string()
    } else {
        format!("s3://{bucket}")
    }
}

/// The outcome of one step, to record.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub id: i64,
    pub state: &'static str,
    pub result: Option<String>,
    pub reason: Option<String>,
    pub retries: u32,
}

pub struct Journal {
    conn: Connection,
    path: PathBuf,
    /// The run (apply, rollback) this writer records, once `begin_run` is called.
    run: Option<i64>,
    /// The writer's lock (apply, rollback): held while the journal is open.
    _lock: Option<std::fs::File>,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> RekeyError + '_ {
    move |e| RekeyError::Internal(format!("journal {}: {e}", path.display()))
}

pub(crate) fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The writer's lock file beside a journal.
pub fn lock_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The journal path beside a plan: `plans/NAME.plan.yaml` → `plans/NAME.journal.sqlite`.
pub fn default_path(plan: &Path) -> PathBuf {
    let name = plan.file_name().and_then(|n| n.to_str()).unwrap_or("plan");
    let stem = name.strip_suffix(".plan.yaml").unwrap_or(name);
    plan.with_file_name(format!("{stem}.journal.sqlite"))
}

impl Journal {
    /// Open (or create) the journal of the plan identified by `plan_id`; refuse a journal
    /// that belongs to another plan or has an unknown schema.
    pub fn open(path: &Path, plan_id: &str) -> Result<Journal, RekeyError> {
        let e = db_err(path);
        // The journal names every object and why it failed: readable by its owner alone.
        // (SQLite gives the -wal and -shm files the database file's permissions.)
        if !path.exists() {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            if let Err(err) = o.open(path) {
                if err.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(RekeyError::io(format!("creating {}", path.display()), err));
                }
            }
        }
        let mut conn = Connection::open(path).map_err(&e)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&e)?;
        // NORMAL by default; intents, undo intents and progress are committed FULL (see
        // `full_sync`): on disk before the provider call they announce, power loss included.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&e)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&e)?;
        let has_meta: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(&e)?
            > 0;
        if !has_meta {
            // One transaction: a crash leaves either no schema or a whole one.
            let tx = conn.transaction().map_err(&e)?;
            tx.execute_batch(SCHEMA).map_err(&e)?;
            tx.execute_batch(SCHEMA_V3).map_err(&e)?;
            tx.execute_batch(SCHEMA_V4).map_err(&e)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('plan_id', ?2), ('created_at', ?3)",
                params![SCHEMA_VERSION.to_string(), plan_id, now()],
            )
            .map_err(&e)?;
            tx.commit().map_err(&e)?;
        }
        Journal::finish_open(conn, path, plan_id)
    }

    fn finish_open(conn: Connection, path: &Path, plan_id: &str) -> Result<Journal, RekeyError> {
        let e = db_err(path);
        let get = |k: &str| -> Result<Option<String>, RekeyError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()
                .map_err(&e)
        };
        let mut version = get("schema_version")?.unwrap_or_default();
        if version == "1" {
            conn.execute_batch(
                "BEGIN; ALTER TABLE steps ADD COLUMN progress TEXT;
                 UPDATE meta SET value = '2' WHERE key = 'schema_version'; COMMIT;",
            )
            .map_err(&e)?;
            version = "2".into();
        }
        if version == "2" {
            // Once: the tally and the stage ranges from the steps as they are.
            conn.execute_batch(&format!(
                "BEGIN; DROP INDEX IF EXISTS steps_stage; {SCHEMA_V3}
                 INSERT INTO tally SELECT stage, state, coalesce(undo_state, ''), count(*), coalesce(sum(bytes), 0) FROM steps GROUP BY 1, 2, 3;
                 INSERT INTO stages SELECT stage, min(id),
                   coalesce(min(CASE WHEN kind NOT IN ('bucket-default', 'gcs-bucket-default') THEN id END), max(id) + 1),
                   coalesce(min(CASE WHEN kind = 'endpoint' THEN id END), max(id) + 1), max(id)
                   FROM steps GROUP BY stage;
                 UPDATE meta SET value = '3' WHERE key = 'schema_version'; COMMIT;"
            ))
            .map_err(&e)?;
            version = "3".into();
        }
        if version == "3" {
            conn.execute_batch(&format!(
                "BEGIN; {SCHEMA_V4} UPDATE meta SET value = '4' WHERE key = 'schema_version'; COMMIT;"
            ))
            .map_err(&e)?;
            version = "4".into();
        }
        if version != SCHEMA_VERSION.to_string() {
            return Err(RekeyError::usage(
                format!("journal {} has schema version {version}, which this rekey does not know (it knows {SCHEMA_VERSION})", path.display()),
                "use the rekey release that wrote the journal",
            ));
        }
        // This journal's own name: batch jobs are named after it too, so that a new journal
        // of the same plan (`--journal`, or one set aside by `plan`) never takes an old job.
        if get("instance")?.is_none() {
            let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?1)",
                [id],
            )
            .map_err(&e)?;
        }
        let owner = get("plan_id")?.unwrap_or_default();
        if owner != plan_id {
            return Err(RekeyError::usage(
                format!(
                    "journal {} belongs to another plan ({owner}), not this one ({plan_id})",
                    path.display()
                ),
                "pass the plan that journal was made for, or --journal a new path for this plan",
            ));
        }
        Ok(Journal {
            conn,
            path: path.to_path_buf(),
            run: None,
            _lock: None,
        })
    }

    /// Open the journal to change the cloud (apply, rollback): one writer at a time. A
    /// second writer fails at once, naming the process that holds the journal.
    pub fn open_writer(path: &Path, plan_id: &str) -> Result<Journal, RekeyError> {
        let lock_path = lock_path(path);
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut lock = o
            .open(&lock_path)
            .map_err(|err| RekeyError::io(format!("opening {}", lock_path.display()), err))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = std::io::Read::read_to_string(&mut lock, &mut holder);
                let holder = holder.trim();
                return Err(RekeyError::usage(
                    format!(
                        "journal {} is in use by another rekey (pid {}): one apply or rollback at a time",
                        path.display(),
                        if holder.is_empty() { "unknown" } else { holder }
                    ),
                    "wait for it to finish (or stop it with Ctrl-C), then run this again",
                ));
            }
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(RekeyError::io(
                    format!("locking {}", lock_path.display()),
                    err,
                ))
            }
        }
        use std::io::{Seek, Write};
        let _ = lock.set_len(0);
        let _ = lock.seek(std::io::SeekFrom::Start(0));
        let _ = write!(lock, "{}", std::process::id());
        let _ = lock.flush();
        let mut j = Journal::open(path, plan_id)?;
        j._lock = Some(lock);
        Ok(j)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This journal's random name (made when it was first opened).
    pub fn instance(&self) -> Result<String, RekeyError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
                r.get(0)
            })
            .map_err(db_err(&self.path))
    }

    /// What a journal holds, whatever plan it belongs to: (plan id, steps that may have
    /// changed the cloud, those of them rolled back). Closing it checkpoints its WAL.
    pub fn inspect(path: &Path) -> Result<(String, u64, u64), RekeyError> {
        let e = db_err(path);
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(&e)?;
        let plan_id: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'plan_id'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&e)?
            .unwrap_or_default();
        let has_steps: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'steps'",
                [],
                |r| r.get(0),
            )
            .map_err(&e)?;
        if has_steps == 0 {
            return Ok((plan_id, 0, 0));
        }
        let has_tally: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'tally'",
                [],
                |r| r.get(0),
            )
            .map_err(&e)?;
        let sql = if has_tally > 0 {
            "SELECT coalesce(sum(steps), 0), coalesce(sum(CASE WHEN undo_state = 'undone' THEN steps END), 0) FROM tally WHERE state IN ('succeeded', 'started', 'failed')"
        } else {
            "SELECT count(*), coalesce(sum(undo_state = 'undone'), 0) FROM steps WHERE state IN ('succeeded', 'started', 'failed')"
        };
        let (applied, undone): (i64, i64) = conn
            .query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&e)?;
        Ok((plan_id, applied as u64, undone as u64))
    }

    /// Whether the steps were already inserted.
    pub fn is_initialized(&self) -> Result<bool, RekeyError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM meta WHERE key = 'initialized'",
                [],
                |r| r.get(0),
            )
            .map_err(db_err(&self.path))?;
        Ok(n > 0)
    }

    /// Insert every step of the plan, in plan order (per stage: bucket defaults, objects,
    /// endpoints), a batch per transaction so that no transaction holds millions of rows. The
    /// journal counts as initialized only once the last batch is in; steps left by an
    /// initialization that was cut short are dropped first (none of them can have started).
    pub fn initialize(
        &mut self,
        steps: impl IntoIterator<Item = Result<NewStep, RekeyError>>,
    ) -> Result<u64, RekeyError> {
        const BATCH: usize = 20_000;
        let e = db_err(&self.path);
        self.conn.execute("DELETE FROM steps", []).map_err(&e)?;
        let t = now();
        let mut tally: std::collections::HashMap<(String, &'static str), (u64, u64)> =
            Default::default();
        // (name, first, objects_from, endpoints_from, last) in plan order.
        let mut stages: Vec<(String, StageRange)> = Vec::new();
        let mut phase = 0u8;
        let mut id: i64 = 0;
        let mut steps = steps.into_iter().peekable();
        while steps.peek().is_some() {
            let tx = self.conn.transaction().map_err(&e)?;
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO steps (id, stage, kind, account, bucket, key, version_id, bytes, state, spec, reason, updated_at, job)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    )
                    .map_err(&e)?;
                for s in steps.by_ref().take(BATCH) {
                    let s = s?;
                    id += 1;
                    let p = phase_of(&s.kind);
                    match stages.last_mut() {
                        Some((name, r)) if *name == s.stage => {
                            if p < phase {
                                return Err(RekeyError::Internal(format!(
                                    "journal: step {id} ({}) of stage {} comes after a later phase",
                                    s.kind, s.stage
                                )));
                            }
                            r.last = id;
                        }
                        _ => {
                            if stages.iter().any(|(n, _)| *n == s.stage) {
                                return Err(RekeyError::Internal(format!(
                                    "journal: the steps of stage {} are not together",
                                    s.stage
                                )));
                            }
                            stages.push((
                                s.stage.clone(),
                                StageRange {
                                    first: id,
                                    objects_from: i64::MAX,
                                    endpoints_from: i64::MAX,
                                    last: id,
                                },
                            ));
                        }
                    }
                    if let Some((_, r)) = stages.last_mut() {
                        if p >= 1 && r.objects_from == i64::MAX {
                            r.objects_from = id;
                        }
                        if p >= 2 && r.endpoints_from == i64::MAX {
                            r.endpoints_from = id;
                        }
                    }
                    phase = p;
                    let entry = tally.entry((s.stage.clone(), s.state)).or_default();
                    entry.0 += 1;
                    entry.1 += s.bytes;
                    ins.execute(params![
                        id,
                        s.stage,
                        s.kind,
                        s.account,
                        s.bucket,
                        s.key,
                        s.version_id,
                        s.bytes as i64,
                        s.state,
                        s.spec,
                        s.reason,
                        t,
                        s.job
                    ])
                    .map_err(&e)?;
                }
            }
            tx.commit().map_err(&e)?;
        }
        let tx = self.conn.transaction().map_err(&e)?;
        tx.execute_batch("DELETE FROM tally; DELETE FROM stages;")
            .map_err(&e)?;
        for ((stage, st), (n, bytes)) in &tally {
            tx.execute(
                "INSERT INTO tally (stage, state, undo_state, steps, bytes) VALUES (?1, ?2, '', ?3, ?4)",
                params![stage, st, *n as i64, *bytes as i64],
            )
            .map_err(&e)?;
        }
        for (name, r) in &stages {
            tx.execute(
                "INSERT INTO stages (name, first_step, objects_from, endpoints_from, last_step) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    name,
                    r.first,
                    r.objects_from.min(r.last + 1),
                    r.endpoints_from.min(r.last + 1),
                    r.last
                ],
            )
            .map_err(&e)?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('initialized', ?1)",
            [now()],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(id as u64)
    }

    /// A stage's id range and phases; `None` for a stage with no steps.
    pub fn stage_range(&self, stage: &str) -> Result<Option<StageRange>, RekeyError> {
        self.conn
            .query_row(
                "SELECT first_step, objects_from, endpoints_from, last_step FROM stages WHERE name = ?1",
                [stage],
                |r| {
                    Ok(StageRange {
                        first: r.get(0)?,
                        objects_from: r.get(1)?,
                        endpoints_from: r.get(2)?,
                        last: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db_err(&self.path))
    }

    /// Steps with work left (pending, started, failed) among ids `first..=last`, and their
    /// bytes: read from `steps_todo` alone.
    pub fn todo_count(&self, first: i64, last: i64) -> Result<(u64, u64), RekeyError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT count(*), coalesce(sum(bytes), 0) FROM steps INDEXED BY steps_todo WHERE {TODO} AND id BETWEEN ?1 AND ?2"
            ))
            .and_then(|mut q| {
                q.query_row(params![first, last], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                })
            })
            .map_err(db_err(&self.path))
    }

    /// The next `limit` steps with work left after id `after`, up to id `last`, in order.
    pub fn todo_page(
        &self,
        after: i64,
        last: i64,
        limit: usize,
    ) -> Result<Vec<StepRow>, RekeyError> {
        self.rows(
            &format!(
                "INDEXED BY steps_todo WHERE {TODO} AND id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3"
            ),
            params![after, last, limit as i64],
        )
    }

    /// Every step with ids `first..=last`, in order (a stage's bucket defaults or endpoints).
    pub fn steps_between(&self, first: i64, last: i64) -> Result<Vec<StepRow>, RekeyError> {
        self.rows(
            "WHERE id BETWEEN ?1 AND ?2 ORDER BY id",
            params![first, last],
        )
    }

    /// Up to `limit` steps a rollback to step `first` still has to undo, below id `before`,
    /// newest first; Cloud Storage bucket defaults alone (`gcs_defaults`) or all but them.
    pub fn undo_page(
        &self,
        first: i64,
        before: i64,
        gcs_defaults: bool,
        limit: usize,
    ) -> Result<Vec<StepRow>, RekeyError> {
        let kind = if gcs_defaults { "=" } else { "<>" };
        self.rows(
            &format!("WHERE id >= ?1 AND id < ?2 AND kind {kind} 'gcs-bucket-default' AND {UNDOABLE} ORDER BY id DESC LIMIT ?3"),
            params![first, before, limit as i64],
        )
    }

    /// Each step a rollback to step `first` has to undo, one at a time, in id order.
    pub fn each_undoable(
        &self,
        first: i64,
        f: impl FnMut(StepRow) -> Result<(), RekeyError>,
    ) -> Result<(), RekeyError> {
        self.each(
            &format!("WHERE id >= ?1 AND {UNDOABLE} ORDER BY id"),
            [first],
            f,
        )
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StepRow> {
        Ok(StepRow {
            id: r.get(0)?,
            stage: r.get(1)?,
            kind: r.get(2)?,
            account: r.get(3)?,
            bucket: r.get(4)?,
            key: r.get(5)?,
            version_id: r.get(6)?,
            bytes: r.get::<_, i64>(7)? as u64,
            state: r.get(8)?,
            spec: r.get(9)?,
            undo: r.get(10)?,
            result: r.get(11)?,
            reason: r.get(12)?,
            attempts: r.get(13)?,
            retries: r.get(14)?,
            undo_state: r.get(15)?,
            undo_reason: r.get(16)?,
            progress: r.get(17)?,
            job: r.get(18)?,
        })
    }

    const COLUMNS: &'static str = "id, stage, kind, account, bucket, key, version_id, bytes, state, spec, undo, result, reason, attempts, retries, undo_state, undo_reason, progress, job";

    /// The steps of `SELECT COLUMNS FROM steps {tail}`, one at a time.
    fn each(
        &self,
        tail: &str,
        params: impl rusqlite::Params,
        mut f: impl FnMut(StepRow) -> Result<(), RekeyError>,
    ) -> Result<(), RekeyError> {
        let e = db_err(&self.path);
        let mut q = self
            .conn
            .prepare_cached(&format!("SELECT {} FROM steps {tail}", Self::COLUMNS))
            .map_err(&e)?;
        let rows = q.query_map(params, Self::row).map_err(&e)?;
        for r in rows {
            f(r.map_err(&e)?)?;
        }
        Ok(())
    }

    /// The steps of `SELECT COLUMNS FROM steps {tail}`, collected (pages and small sets).
    fn rows(&self, tail: &str, params: impl rusqlite::Params) -> Result<Vec<StepRow>, RekeyError> {
        let mut out = Vec::new();
        self.each(tail, params, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Steps matching `condition` (with one parameter), in plan order.
    fn select(
        &self,
        condition: &str,
        param: impl rusqlite::ToSql,
    ) -> Result<Vec<StepRow>, RekeyError> {
        self.rows(&format!("WHERE {condition} ORDER BY id"), [param])
    }

    /// Every step of a stage, in plan order.
    pub fn stage_steps(&self, stage: &str) -> Result<Vec<StepRow>, RekeyError> {
        self.select("stage = ?1", stage)
    }

    /// Every step from `first_id` on, in plan order.
    pub fn steps_from(&self, first_id: i64) -> Result<Vec<StepRow>, RekeyError> {
        self.select("id >= ?1", first_id)
    }

    /// Commit what follows with an fsync (`synchronous=FULL`): intents and progress must be on
    /// disk before the calls they announce, power loss included. Outcomes and send marks are
    /// committed with `synchronous=NORMAL` (WAL: durable across a crash of rekey, and on
    /// power loss the last ones may be lost: their steps are then re-checked).
    fn full_sync(&self, on: bool) -> Result<(), RekeyError> {
        self.conn
            .pragma_update(None, "synchronous", if on { "FULL" } else { "NORMAL" })
            .map_err(db_err(&self.path))
    }

    /// Record that steps are being sent to their provider now (`attempts` counts sends): a
    /// step journaled `started` but never sent cannot have changed the cloud.
    pub fn mark_sent(&mut self, ids: &[i64]) -> Result<(), RekeyError> {
        if ids.is_empty() {
            return Ok(());
        }
        let e = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE steps SET attempts = attempts + 1 WHERE id = ?1 AND state = 'started'",
                )
                .map_err(&e)?;
            for id in ids {
                up.execute([id]).map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// Record intent: the steps are about to call the provider. Undo data goes with it.
    pub fn mark_started(&mut self, steps: &[(i64, Option<String>)]) -> Result<(), RekeyError> {
        self.full_sync(true)?;
        let r = self.mark_started_inner(steps);
        self.full_sync(false)?;
        r
    }

    fn mark_started_inner(&mut self, steps: &[(i64, Option<String>)]) -> Result<(), RekeyError> {
        let e = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE steps SET state = 'started', undo = coalesce(?2, undo), updated_at = ?3
                     WHERE id = ?1 AND state IN ('pending', 'started', 'failed')",
                )
                .map_err(&e)?;
            let t = now();
            for (id, undo) in steps {
                if up.execute(params![id, undo, t]).map_err(&e)? != 1 {
                    return Err(RekeyError::Internal(format!(
                        "journal: step {id} cannot start from its current state"
                    )));
                }
            }
        }
        tx.commit().map_err(&e)
    }

    /// Record outcomes of started steps, in one transaction.
    pub fn record(&mut self, outcomes: &[Recorded]) -> Result<(), RekeyError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let e = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE steps SET state = ?2, result = coalesce(?3, result), reason = ?4, retries = retries + ?5, updated_at = ?6
                     WHERE id = ?1 AND state = 'started'",
                )
                .map_err(&e)?;
            let t = now();
            for o in outcomes {
                debug_assert!(matches!(
                    o.state,
                    state::SUCCEEDED | state::FAILED | state::DRIFTED | state::VANISHED
                ));
                if up
                    .execute(params![o.id, o.state, o.result, o.reason, o.retries, t])
                    .map_err(&e)?
                    != 1
                {
                    return Err(RekeyError::Internal(format!(
                        "journal: step {} was not started, cannot become {}",
                        o.id, o.state
                    )));
                }
            }
        }
        tx.commit().map_err(&e)
    }

    /// Take a stage's checkpoint (once: the first time the stage starts).
    pub fn checkpoint(&mut self, stage: &str) -> Result<(), RekeyError> {
        let e = db_err(&self.path);
        let first: Option<i64> = self
            .conn
            .query_row(
                "SELECT first_step FROM stages WHERE name = ?1",
                [stage],
                |r| r.get(0),
            )
            .optional()
            .map_err(&e)?;
        self.conn
            .execute(
                "INSERT OR IGNORE INTO checkpoints (name, first_step, created_at) VALUES (?1, ?2, ?3)",
                params![stage, first.unwrap_or(i64::MAX), now()],
            )
            .map_err(&e)?;
        Ok(())
    }

    /// Checkpoints taken, in step order: (name, first step id).
    pub fn checkpoints(&self) -> Result<Vec<(String, i64)>, RekeyError> {
        let e = db_err(&self.path);
        let mut q = self
            .conn
            .prepare("SELECT name, first_step FROM checkpoints ORDER BY first_step")
            .map_err(&e)?;
        let rows = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&e)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&e)
    }

    /// Steps journaled `started` that were never sent: back to `pending`, their undo data
    /// dropped (it is read again when they start).
    pub fn unstart(&mut self, ids: &[i64]) -> Result<(), RekeyError> {
        if ids.is_empty() {
            return Ok(());
        }
        let e = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE steps SET state = 'pending', undo = NULL, updated_at = ?2
                     WHERE id = ?1 AND state = 'started' AND progress IS NULL",
                )
                .map_err(&e)?;
            let t = now();
            for id in ids {
                up.execute(params![id, t]).map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// Undos journaled `started` that were never sent: back to their undo state before.
    pub fn unstart_undo(&mut self, rows: &[(i64, Option<String>)]) -> Result<(), RekeyError> {
        if rows.is_empty() {
            return Ok(());
        }
        let e = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE steps SET undo_state = ?2, updated_at = ?3 WHERE id = ?1 AND undo_state = 'started'",
                )
                .map_err(&e)?;
            let t = now();
            for (id, before) in rows {
                // An undo left `started` by a crash stays so: it may have taken effect.
                if before.as_deref() == Some("started") {
                    continue;
                }
                up.execute(params![id, before, t]).map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)
    }

    /// Journal what a running step did so far (a multipart copy's upload id).
    pub fn save_progress(&mut self, id: i64, progress: &str) -> Result<(), RekeyError> {
        self.full_sync(true)?;
        let r = self.save_progress_inner(id, progress);
        self.full_sync(false)?;
        r
    }

    fn save_progress_inner(&mut self, id: i64, progress: &str) -> Result<(), RekeyError> {
        let n = self
            .conn
            .execute(
                "UPDATE steps SET progress = ?2, updated_at = ?3 WHERE id = ?1 AND (state = 'started' OR undo_state = 'started')",
                params![id, progress, now()],
            )
            .map_err(db_err(&self.path))?;
        if n != 1 {
            return Err(RekeyError::Internal(format!(
                "journal: step {id} is not running"
            )));
        }
        Ok(())
    }

    /// Record intent to undo steps: succeeded ones, and started or failed ones (which may
    /// have taken effect; their undo re-checks the cloud).
    pub fn mark_undo_started(&mut self, ids: &[i64]) -> Result<(), RekeyError> {
        self.full_sync(true)?;
        let r = self.mark_undo_started_inner(ids);
        self.full_sync(false)?;
        r
    }

    fn mark_undo_started_inner(&mut self, ids: &[i64]) -> Result<(), RekeyError> {
        let e = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE steps SET undo_state = 'started', updated_at = ?2
                     WHERE id = ?1 AND state IN ('succeeded', 'started', 'failed')
                       AND (undo_state IS NULL OR undo_state IN ('started', 'conflict', 'failed'))",
                )
                .map_err(&e)?;
            let t = now();
            for id in ids {
                if up.execute(params![id, t]).map_err(&e)? != 1 {
                    return Err(RekeyError::Internal(format!(
                        "journal: step {id} cannot be undone from its current state"
                    )));
                }
            }
        }
        tx.commit().map_err(&e)
    }

    /// Record the outcome of an undo.
    pub fn record_undo(
        &mut self,
        id: i64,
        undo_state: &'static str,
        reason: Option<&str>,
    ) -> Result<(), RekeyError> {
        self.record_undos(&[(id, undo_state, reason.map(str::to_string))])
    }

    /// Record outcomes of undos, in one transaction.
    pub fn record_undos(
        &mut self,
        outcomes: &[(i64, &'static str, Option<String>)],
    ) -> Result<(), RekeyError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let e = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE steps SET undo_state = ?2, undo_reason = ?3, updated_at = ?4 WHERE id = ?1 AND undo_state = 'started'",
                )
                .map_err(&e)?;
            let t = now();
            for (id, st, reason) in outcomes {
                if up.execute(params![id, st, reason, t]).map_err(&e)? != 1 {
                    return Err(RekeyError::Internal(format!(
                        "journal: step {id} was not being undone"
                    )));
                }
            }
        }
        tx.commit().map_err(&e)
    }

    /// A step applied again after a rollback starts from a clean slate (its undo data is
    /// read again: the rollback may have changed what it recorded). A batch job step keeps
    /// its progress: its next job is a new part, never the old job found again.
    pub fn reset_undone(&mut self, stage: &str) -> Result<(), RekeyError> {
        let e = db_err(&self.path);
        // The tally says whether there is anything to reset: most runs read no step here.
        let undone: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(sum(steps), 0) FROM tally WHERE stage = ?1 AND undo_state = 'undone' AND state IN ('succeeded', 'started', 'failed')",
                [stage],
                |r| r.get(0),
            )
            .map_err(&e)?;
        let Some(range) = self.stage_range(stage)? else {
            return Ok(());
        };
        if undone == 0 {
            return Ok(());
        }
        self.conn
            .execute(
                "UPDATE steps SET state = 'pending', undo_state = NULL, undo_reason = NULL, result = NULL, reason = NULL, undo = NULL, progress = CASE WHEN kind = 'batch-job' THEN progress END, updated_at = ?3
                 WHERE id BETWEEN ?1 AND ?2 AND state IN ('succeeded', 'started', 'failed') AND undo_state = 'undone'",
                params![range.first, range.last, now()],
            )
            .map_err(&e)?;
        Ok(())
    }

    /// Step counts by stage and state, in plan order of stages (from the tally: no step is
    /// read).
    pub fn counts(&self) -> Result<Vec<StateCount>, RekeyError> {
        let e = db_err(&self.path);
        let mut q = self
            .conn
            .prepare(
                "SELECT t.stage, t.state, t.undo_state, t.steps, t.bytes FROM tally t LEFT JOIN stages s ON s.name = t.stage
                 WHERE t.steps > 0 ORDER BY s.first_step, t.state, t.undo_state",
            )
            .map_err(&e)?;
        let rows = q
            .query_map([], |r| {
                let undo: String = r.get(2)?;
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    (!undo.is_empty()).then_some(undo),
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, i64>(4)? as u64,
                ))
            })
            .map_err(&e)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&e)
    }

    /// Steps of a stage that are not done: failed, drifted, started or pending.
    pub fn unfinished(&self, stage: &str) -> Result<u64, RekeyError> {
        Ok(self
            .counts()?
            .into_iter()
            .filter(|(s, st, ..)| {
                s == stage
                    && matches!(
                        st.as_str(),
                        state::FAILED | state::DRIFTED | state::STARTED | state::PENDING
                    )
            })
            .map(|(.., n, _)| n)
            .sum())
    }

    /// Whether any step failed or drifted, or has an undo that was left alone or failed
    /// without having succeeded.
    pub fn any_failed(&self) -> Result<bool, RekeyError> {
        Ok(self.counts()?.into_iter().any(|(_, st, undo, ..)| {
            matches!(st.as_str(), state::FAILED | state::DRIFTED)
                || (st != state::SUCCEEDED
                    && matches!(
                        undo.as_deref(),
                        Some(undo_state::CONFLICT | undo_state::FAILED)
                    ))
        }))
    }

    /// The batch job steps among ids `first..=last` (a stage's objects phase), in order.
    pub fn job_steps(&self, first: i64, last: i64) -> Result<Vec<StepRow>, RekeyError> {
        self.rows(
            "INDEXED BY steps_job WHERE job IS NOT NULL AND kind = 'batch-job' AND id BETWEEN ?1 AND ?2 ORDER BY id",
            params![first, last],
        )
    }

    /// Up to `limit` members of batch job `job` after id `after` whose job has not told their
    /// outcome (pending, or started and not told), in order: the next part's manifest.
    pub fn untold_members(
        &self,
        job: u32,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StepRow>, RekeyError> {
        self.rows(
            "INDEXED BY steps_job WHERE job = ?1 AND id > ?2 AND kind <> 'batch-job' AND state IN ('pending', 'started') ORDER BY id LIMIT ?3",
            params![job, after, limit as i64],
        )
    }

    /// Members of job `job` by state: (state, steps).
    pub fn member_states(&self, job: u32) -> Result<Vec<(String, u64)>, RekeyError> {
        let e = db_err(&self.path);
        let mut q = self
            .conn
            .prepare_cached(
                "SELECT state, count(*) FROM steps INDEXED BY steps_job WHERE job = ?1 AND kind <> 'batch-job' GROUP BY state",
            )
            .map_err(&e)?;
        let rows = q
            .query_map([job], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(&e)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&e)
    }

    /// The member of job `job` a report's task names: by key and version (`versioned`), or
    /// by key alone (a job of current objects lists no versions).
    pub fn task_member(
        &self,
        job: u32,
        key: &str,
        version_id: Option<&str>,
        versioned: bool,
    ) -> Result<Option<StepRow>, RekeyError> {
        let mut rows = if versioned {
            self.rows(
                "INDEXED BY steps_task WHERE job = ?1 AND key = ?2 AND version_id IS ?3 AND kind <> 'batch-job' ORDER BY id LIMIT 1",
                params![job, key, version_id],
            )?
        } else {
            self.rows(
                "INDEXED BY steps_task WHERE job = ?1 AND key = ?2 AND kind <> 'batch-job' ORDER BY id LIMIT 1",
                params![job, key],
            )?
        };
        Ok(rows.pop())
    }

    /// Members of job `job` that no job has told (pending, or started and not told) leave the
    /// job: rekey's own engine runs them (they keep their state: a started one is re-checked).
    pub fn release_members(&mut self, job: u32) -> Result<u64, RekeyError> {
        let n = self
            .conn
            .execute(
                "UPDATE steps SET job = NULL, updated_at = ?2 WHERE job = ?1 AND kind <> 'batch-job' AND state IN ('pending', 'started')",
                params![job, now()],
            )
            .map_err(db_err(&self.path))?;
        Ok(n as u64)
    }

    /// Record that members are sent to a batch job (intent before CreateJob, committed with an
    /// fsync): each becomes `started`, with its undo data, one more attempt.
    pub fn start_members(&mut self, steps: &[(i64, Option<String>)]) -> Result<(), RekeyError> {
        self.full_sync(true)?;
        let r = (|| {
            let e = db_err(&self.path);
            let tx = self.conn.transaction().map_err(&e)?;
            {
                let mut up = tx
                    .prepare_cached(
                        "UPDATE steps SET state = 'started', undo = coalesce(?2, undo), attempts = attempts + 1, updated_at = ?3
                         WHERE id = ?1 AND state IN ('pending', 'started')",
                    )
                    .map_err(&e)?;
                let t = now();
                for (id, undo) in steps {
                    if up.execute(params![id, undo, t]).map_err(&e)? != 1 {
                        return Err(RekeyError::Internal(format!(
                            "journal: step {id} cannot go to a batch job from its current state"
                        )));
                    }
                }
            }
            tx.commit().map_err(&e)
        })();
        self.full_sync(false)?;
        r
    }

    /// A run (`apply`, `rollback`) begins: what it does stage by stage is recorded under it.
    pub fn begin_run(&mut self, command: &str) -> Result<(), RekeyError> {
        let e = db_err(&self.path);
        self.conn
            .execute(
                "INSERT INTO runs (command, started_at) VALUES (?1, ?2)",
                params![command, now()],
            )
            .map_err(&e)?;
        self.run = Some(self.conn.last_insert_rowid());
        Ok(())
    }

    /// What the current run did in one stage, from `started_at` to now.
    pub fn stage_ran(
        &mut self,
        stage: &str,
        started_at: &str,
        t: &crate::executor::Tally,
    ) -> Result<(), RekeyError> {
        let Some(run) = self.run else { return Ok(()) };
        self.conn
            .execute(
                "INSERT INTO run_stages (run, stage, started_at, ended_at, succeeded, drifted, failed, retries, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    run,
                    stage,
                    started_at,
                    now(),
                    t.succeeded as i64,
                    t.drifted as i64,
                    t.failed as i64,
                    t.retries as i64,
                    t.bytes as i64
                ],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    /// The current run ends (`stop`: how).
    pub fn end_run(&mut self, stop: &str) -> Result<(), RekeyError> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        self.conn
            .execute(
                "UPDATE runs SET ended_at = ?2, stop = ?3 WHERE id = ?1",
                params![run, now(), stop],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    /// Every run, in order.
    pub fn runs(&self) -> Result<Vec<RunRow>, RekeyError> {
        let e = db_err(&self.path);
        let mut q = self
            .conn
            .prepare("SELECT id, command, started_at, ended_at, stop FROM runs ORDER BY id")
            .map_err(&e)?;
        let rows = q
            .query_map([], |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    command: r.get(1)?,
                    started_at: r.get(2)?,
                    ended_at: r.get(3)?,
                    stop: r.get(4)?,
                    stages: Vec::new(),
                })
            })
            .map_err(&e)?;
        let mut runs = rows.collect::<Result<Vec<_>, _>>().map_err(&e)?;
        let mut q = self
            .conn
            .prepare("SELECT run, stage, started_at, ended_at, succeeded, drifted, failed, retries, bytes FROM run_stages ORDER BY rowid")
            .map_err(&e)?;
        let rows = q
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    RunStage {
                        stage: r.get(1)?,
                        started_at: r.get(2)?,
                        ended_at: r.get(3)?,
                        succeeded: r.get::<_, i64>(4)? as u64,
                        drifted: r.get::<_, i64>(5)? as u64,
                        failed: r.get::<_, i64>(6)? as u64,
                        retries: r.get::<_, i64>(7)? as u64,
                        bytes: r.get::<_, i64>(8)? as u64,
                    },
                ))
            })
            .map_err(&e)?;
        for row in rows {
            let (run, st) = row.map_err(&e)?;
            if let Some(r) = runs.iter_mut().find(|r| r.id == run) {
                r.stages.push(st);
            }
        }
        Ok(runs)
    }

    /// Steps that succeeded, by the second their outcome was journaled (`YYYY-MM-DDTHH:MM:SS`),
    /// in order: the run report's chart. One pass over the steps, grouped in SQLite.
    pub fn succeeded_by_second(&self) -> Result<Vec<(String, u64)>, RekeyError> {
        let e = db_err(&self.path);
        let mut q = self
            .conn
            .prepare(
                "SELECT substr(updated_at, 1, 19), count(*) FROM steps WHERE state = 'succeeded' GROUP BY 1 ORDER BY 1",
            )
            .map_err(&e)?;
        let rows = q
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(&e)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&e)
    }

    /// Each step a report lists (failed, drifted, vanished, blocked, or whose undo was left
    /// alone or failed), in order, one at a time: a report of millions of steps holds none
    /// of them, and reads no other step.
    pub fn each_notable(
        &self,
        f: impl FnMut(StepRow) -> Result<(), RekeyError>,
    ) -> Result<(), RekeyError> {
        self.each(
            &format!("INDEXED BY steps_notable WHERE {NOTABLE} ORDER BY id"),
            [],
            f,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(stage: &str, key: &str) -> NewStep {
        NewStep {
            stage: stage.into(),
            kind: "copy".into(),
            account: "default".into(),
            bucket: "b".into(),
            key: key.into(),
            version_id: None,
            bytes: 10,
            state: state::PENDING,
            spec: "{}".into(),
            reason: None,
            job: None,
        }
    }

    #[test]
    fn transitions_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let mut j = Journal::open(&path, "plan-a").unwrap();
        assert!(!j.is_initialized().unwrap());
        j.initialize([step("s1", "a"), step("s1", "b"), step("s2", "c")].map(Ok))
            .unwrap();
        assert!(j.is_initialized().unwrap());
        let rec = |id, st| Recorded {
            id,
            state: st,
            result: None,
            reason: None,
            retries: 0,
        };
        // Not started: cannot succeed.
        assert!(j.record(&[rec(1, state::SUCCEEDED)]).is_err());
        j.mark_started(&[(1, Some("{\"undo\":1}".into()))]).unwrap();
        j.record(&[rec(1, state::SUCCEEDED)]).unwrap();
        // Succeeded: cannot start again.
        assert!(j.mark_started(&[(1, None)]).is_err());
        // Undo only from succeeded; twice is refused once undone.
        j.mark_undo_started(&[1]).unwrap();
        j.record_undo(1, undo_state::UNDONE, None).unwrap();
        assert!(j.mark_undo_started(&[1]).is_err());
        assert!(
            j.mark_undo_started(&[2]).is_err(),
            "a pending step has nothing to undo"
        );
        // A started step (it may have taken effect) can be undone; progress is journaled.
        j.mark_started(&[(3, None)]).unwrap();
        j.save_progress(3, "{\"upload_id\":\"u\"}").unwrap();
        j.mark_undo_started(&[3]).unwrap();
        j.record_undos(&[(3, undo_state::UNDONE, None)]).unwrap();
        assert_eq!(
            j.steps_from(3).unwrap()[0].progress.as_deref(),
            Some("{\"upload_id\":\"u\"}")
        );
        // Undone steps start again from a clean slate.
        j.reset_undone("s2").unwrap();
        let row = &j.steps_from(3).unwrap()[0];
        assert_eq!(
            (row.state.as_str(), row.progress.as_deref()),
            ("pending", None)
        );
        let rows = j.stage_steps("s1").unwrap();
        assert_eq!(rows[0].undo.as_deref(), Some("{\"undo\":1}"));
        assert_eq!(rows[0].attempts, 0, "journaled, never sent");
    }

    #[test]
    fn one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let first = Journal::open_writer(&path, "p").unwrap();
        let err = Journal::open_writer(&path, "p").err().unwrap().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "the message names the holder: {err}"
        );
        // Readers (status) are never locked out.
        assert!(Journal::open(&path, "p").is_ok());
        drop(first);
        assert!(Journal::open_writer(&path, "p").is_ok(), "released on drop");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the journal is private: {mode:o}");
        }
    }

    #[test]
    fn a_journal_belongs_to_one_plan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        drop(Journal::open(&path, "plan-a").unwrap());
        assert!(Journal::open(&path, "plan-a").is_ok());
        let err = Journal::open(&path, "plan-b").err().unwrap().to_string();
        assert!(err.contains("belongs to another plan"), "{err}");
    }

    #[test]
    fn checkpoints_are_taken_once_in_step_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite"), "p").unwrap();
        j.initialize([step("s1", "a"), step("s2", "b")].map(Ok))
            .unwrap();
        j.checkpoint("s2").unwrap();
        j.checkpoint("s1").unwrap();
        j.checkpoint("s1").unwrap();
        assert_eq!(
            j.checkpoints().unwrap(),
            vec![("s1".to_string(), 1), ("s2".to_string(), 2)]
        );
    }

    fn kind_step(stage: &str, kind: &str, key: &str, bytes: u64) -> NewStep {
        NewStep {
            kind: kind.into(),
            bytes,
            ..step(stage, key)
        }
    }

    #[test]
    fn stages_are_cut_into_phases_and_paged() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite"), "p").unwrap();
        let mut steps = vec![kind_step("canary", "bucket-default", "", 0)];
        steps.extend((0..5).map(|i| kind_step("canary", "copy", &format!("o{i}"), 10)));
        steps.push(kind_step("canary", "endpoint", "ep", 0));
        steps.extend((0..3).map(|i| kind_step("rest", "copy", &format!("r{i}"), 1)));
        assert_eq!(j.initialize(steps.into_iter().map(Ok)).unwrap(), 10);
        let c = j.stage_range("canary").unwrap().unwrap();
        assert_eq!(
            (c.first, c.objects_from, c.endpoints_from, c.last),
            (1, 2, 7, 7)
        );
        let r = j.stage_range("rest").unwrap().unwrap();
        assert_eq!(
            (r.first, r.objects_from, r.endpoints_from, r.last),
            (8, 8, 11, 10),
            "a stage without bucket defaults or endpoints has empty phases"
        );
        assert_eq!(j.stage_range("none").unwrap(), None);
        assert_eq!(j.todo_count(2, 6).unwrap(), (5, 50));
        // Pages follow the cursor and skip what is done.
        j.mark_started(&[(3, None)]).unwrap();
        j.record(&[Recorded {
            id: 3,
            state: state::SUCCEEDED,
            result: None,
            reason: None,
            retries: 0,
        }])
        .unwrap();
        let ids = |rows: Vec<StepRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(j.todo_page(1, 6, 2).unwrap()), vec![2, 4]);
        assert_eq!(ids(j.todo_page(4, 6, 2).unwrap()), vec![5, 6]);
        assert_eq!(ids(j.todo_page(6, 6, 2).unwrap()), Vec::<i64>::new());
        assert_eq!(j.todo_count(2, 6).unwrap(), (4, 40));
        // The tally follows every change of state, undo states included.
        let count = |j: &Journal, st: &str, undo: Option<&str>| {
            j.counts()
                .unwrap()
                .into_iter()
                .find(|(s, t, u, ..)| s == "canary" && t == st && u.as_deref() == undo)
                .map(|(.., n, b)| (n, b))
        };
        assert_eq!(count(&j, "succeeded", None), Some((1, 10)));
        assert_eq!(count(&j, "pending", None), Some((6, 40)));
        j.mark_undo_started(&[3]).unwrap();
        j.record_undo(3, undo_state::UNDONE, None).unwrap();
        assert_eq!(
            count(&j, "succeeded", None),
            None,
            "empty rows are left out"
        );
        assert_eq!(count(&j, "succeeded", Some("undone")), Some((1, 10)));
        j.reset_undone("canary").unwrap();
        assert_eq!(count(&j, "pending", None), Some((7, 50)));
        assert_eq!(j.unfinished("canary").unwrap(), 7);
        // Stages in plan order.
        let stages: Vec<String> = j.counts().unwrap().into_iter().map(|c| c.0).collect();
        assert_eq!(stages.first().map(String::as_str), Some("canary"));
        assert_eq!(stages.last().map(String::as_str), Some("rest"));
    }

    #[test]
    fn an_initialization_cut_short_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite"), "p").unwrap();
        let bad = [Ok(step("s1", "a")), Err(RekeyError::Internal("cut".into()))];
        assert!(j.initialize(bad).is_err());
        assert!(!j.is_initialized().unwrap());
        j.initialize([step("s1", "a"), step("s1", "b")].map(Ok))
            .unwrap();
        assert_eq!(j.steps_from(0).unwrap().len(), 2, "no step twice");
        // Steps of a stage that are not together, or a bucket default after an object.
        let mut k = Journal::open(&dir.path().join("k.sqlite"), "p").unwrap();
        let err = k
            .initialize(
                [
                    kind_step("s1", "copy", "a", 1),
                    kind_step("s1", "bucket-default", "", 0),
                ]
                .map(Ok),
            )
            .unwrap_err();
        assert!(err.to_string().contains("later phase"), "{err}");
    }

    #[test]
    fn undo_pages_go_newest_first_with_gcs_defaults_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("j.sqlite"), "p").unwrap();
        j.initialize(
            [
                kind_step("s1", "gcs-bucket-default", "", 0),
                kind_step("s1", "copy", "a", 1),
                kind_step("s1", "copy", "b", 1),
                kind_step("s1", "copy", "c", 1),
            ]
            .map(Ok),
        )
        .unwrap();
        // 1, 2 and 4 succeed; 3 is journaled but never sent (nothing to undo).
        j.mark_started(&[(1, None), (2, None), (3, None), (4, None)])
            .unwrap();
        let done = |id| Recorded {
            id,
            state: state::SUCCEEDED,
            result: None,
            reason: None,
            retries: 0,
        };
        j.record(&[done(1), done(2), done(4)]).unwrap();
        let ids = |rows: Vec<StepRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(j.undo_page(1, i64::MAX, true, 10).unwrap()), vec![1]);
        assert_eq!(
            ids(j.undo_page(1, i64::MAX, false, 10).unwrap()),
            vec![4, 2]
        );
        assert_eq!(ids(j.undo_page(1, 4, false, 10).unwrap()), vec![2]);
        assert_eq!(ids(j.undo_page(3, i64::MAX, false, 10).unwrap()), vec![4]);
        let mut all = Vec::new();
        j.each_undoable(1, |r| {
            all.push(r.id);
            Ok(())
        })
        .unwrap();
        assert_eq!(all, vec![1, 2, 4]);
    }

    #[test]
    fn a_schema_2_journal_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(
                "CREATE INDEX steps_stage ON steps(stage, state);
                 INSERT INTO meta VALUES ('schema_version', '2'), ('plan_id', 'p'), ('initialized', 'x');
                 INSERT INTO steps (id, stage, kind, account, bucket, bytes, state, spec, updated_at, undo_state) VALUES
                   (1, 'a', 'bucket-default', 'd', 'b', 0, 'succeeded', '{}', 't', NULL),
                   (2, 'a', 'copy', 'd', 'b', 5, 'succeeded', '{}', 't', 'undone'),
                   (3, 'a', 'copy', 'd', 'b', 7, 'failed', '{}', 't', NULL),
                   (4, 'b', 'copy', 'd', 'b', 9, 'pending', '{}', 't', NULL),
                   (5, 'b', 'endpoint', 'd', 'sagemaker', 0, 'blocked', '{}', 't', NULL);",
            )
            .unwrap();
        }
        let j = Journal::open(&path, "p").unwrap();
        let a = j.stage_range("a").unwrap().unwrap();
        assert_eq!(
            (a.first, a.objects_from, a.endpoints_from, a.last),
            (1, 2, 4, 3)
        );
        let b = j.stage_range("b").unwrap().unwrap();
        assert_eq!(
            (b.first, b.objects_from, b.endpoints_from, b.last),
            (4, 4, 5, 5)
        );
        let counts = j.counts().unwrap();
        assert!(counts.contains(&("a".into(), "succeeded".into(), Some("undone".into()), 1, 5)));
        assert!(counts.contains(&("a".into(), "failed".into(), None, 1, 7)));
        assert_eq!(j.todo_count(1, 5).unwrap(), (2, 16));
        let mut notable = Vec::new();
        j.each_notable(|r| {
            notable.push(r.id);
            Ok(())
        })
        .unwrap();
        assert_eq!(notable, vec![3, 5]);
    }
}
