//! The journal: an embedded SQLite write-ahead log of every step of a plan's runs. Intent
//! (`started`, with the undo data) is committed before the provider call; the outcome after.
//! State transitions are checked in the UPDATE itself, so an illegal one is an error, not a
//! silent overwrite. Outcomes are committed in batches so the journal is never the bottleneck.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::RekeyError;

/// The journal schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

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
  updated_at TEXT NOT NULL
);
CREATE INDEX steps_stage ON steps(stage, state);
CREATE TABLE checkpoints (name TEXT PRIMARY KEY, first_step INTEGER NOT NULL, created_at TEXT NOT NULL);
";

/// Step states. `pending → started → succeeded | failed | drifted`; `failed` and `started`
/// may start again (retry, resume); `blocked` never changes.
pub mod state {
    pub const PENDING: &str = "pending";
    pub const STARTED: &str = "started";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const DRIFTED: &str = "drifted";
    pub const BLOCKED: &str = "blocked";
}

/// Undo states of a succeeded step. `started → undone | conflict | failed`; `conflict` and
/// `failed` may start again.
pub mod undo_state {
    pub const STARTED: &str = "started";
    pub const UNDONE: &str = "undone";
    pub const CONFLICT: &str = "conflict";
    pub const FAILED: &str = "failed";
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
}

/// A step as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

/// (stage, state, undo state, steps, bytes).
pub type StateCount = (String, String, Option<String>, u64, u64);

impl StepRow {
    /// What the step changes, as an operator names it.
    pub fn target(&self) -> String {
        match (self.kind.as_str(), self.key.is_empty()) {
            ("endpoint", _) => format!("sagemaker:endpoint/{}", self.key),
            (_, true) => format!("s3://{}", self.bucket),
            _ => format!("s3://{}/{}", self.bucket, self.key),
        }
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
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> RekeyError + '_ {
    move |e| RekeyError::Internal(format!("journal {}: {e}", path.display()))
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
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
        let conn = Connection::open(path).map_err(&e)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&e)?;
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
            conn.execute_batch(SCHEMA).map_err(&e)?;
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('plan_id', ?2), ('created_at', ?3)",
                params![SCHEMA_VERSION.to_string(), plan_id, now()],
            )
            .map_err(&e)?;
        }
        let get = |k: &str| -> Result<Option<String>, RekeyError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()
                .map_err(&e)
        };
        let version = get("schema_version")?.unwrap_or_default();
        if version != SCHEMA_VERSION.to_string() {
            return Err(RekeyError::usage(
                format!("journal {} has schema version {version}, which this rekey does not know (it knows {SCHEMA_VERSION})", path.display()),
                "use the rekey release that wrote the journal",
            ));
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
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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

    /// Insert every step of the plan, in plan order, in one transaction.
    pub fn initialize(
        &mut self,
        steps: impl IntoIterator<Item = NewStep>,
    ) -> Result<u64, RekeyError> {
        let e = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        let mut n = 0;
        {
            let mut ins = tx
                .prepare(
                    "INSERT INTO steps (stage, kind, account, bucket, key, version_id, bytes, state, spec, reason, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(&e)?;
            let t = now();
            for s in steps {
                ins.execute(params![
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
                    t
                ])
                .map_err(&e)?;
                n += 1;
            }
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('initialized', ?1)",
            [now()],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(n)
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
        })
    }

    const COLUMNS: &'static str = "id, stage, kind, account, bucket, key, version_id, bytes, state, spec, undo, result, reason, attempts, retries, undo_state, undo_reason";

    /// Steps matching `condition` (with one parameter), in plan order.
    fn select(
        &self,
        condition: &str,
        param: impl rusqlite::ToSql,
    ) -> Result<Vec<StepRow>, RekeyError> {
        let e = db_err(&self.path);
        let sql = format!(
            "SELECT {} FROM steps WHERE {condition} ORDER BY id",
            Self::COLUMNS
        );
        let mut q = self.conn.prepare(&sql).map_err(&e)?;
        let rows = q.query_map([param], Self::row).map_err(&e)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&e)
    }

    /// Every step of a stage, in plan order.
    pub fn stage_steps(&self, stage: &str) -> Result<Vec<StepRow>, RekeyError> {
        self.select("stage = ?1", stage)
    }

    /// Every step from `first_id` on, in plan order.
    pub fn steps_from(&self, first_id: i64) -> Result<Vec<StepRow>, RekeyError> {
        self.select("id >= ?1", first_id)
    }

    /// Record intent: the steps are about to call the provider. Undo data goes with it.
    pub fn mark_started(&mut self, steps: &[(i64, Option<String>)]) -> Result<(), RekeyError> {
        let e = db_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut up = tx
                .prepare_cached(
                    "UPDATE steps SET state = 'started', undo = coalesce(?2, undo), attempts = attempts + 1, updated_at = ?3
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
                    state::SUCCEEDED | state::FAILED | state::DRIFTED
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
            .query_row("SELECT min(id) FROM steps WHERE stage = ?1", [stage], |r| {
                r.get(0)
            })
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

    /// Record intent to undo a succeeded step.
    pub fn mark_undo_started(&mut self, id: i64) -> Result<(), RekeyError> {
        let e = db_err(&self.path);
        let n = self
            .conn
            .execute(
                "UPDATE steps SET undo_state = 'started', updated_at = ?2
                 WHERE id = ?1 AND state = 'succeeded' AND (undo_state IS NULL OR undo_state IN ('started', 'conflict', 'failed'))",
                params![id, now()],
            )
            .map_err(&e)?;
        if n != 1 {
            return Err(RekeyError::Internal(format!(
                "journal: step {id} cannot be undone from its current state"
            )));
        }
        Ok(())
    }

    /// Record the outcome of an undo.
    pub fn record_undo(
        &mut self,
        id: i64,
        undo_state: &'static str,
        reason: Option<&str>,
    ) -> Result<(), RekeyError> {
        let e = db_err(&self.path);
        let n = self
            .conn
            .execute(
                "UPDATE steps SET undo_state = ?2, undo_reason = ?3, updated_at = ?4 WHERE id = ?1 AND undo_state = 'started'",
                params![id, undo_state, reason, now()],
            )
            .map_err(&e)?;
        if n != 1 {
            return Err(RekeyError::Internal(format!(
                "journal: step {id} was not being undone"
            )));
        }
        Ok(())
    }

    /// A step applied again after a rollback starts from a clean slate.
    pub fn reset_undone(&mut self, stage: &str) -> Result<(), RekeyError> {
        self.conn
            .execute(
                "UPDATE steps SET state = 'pending', undo_state = NULL, undo_reason = NULL, result = NULL, reason = NULL, updated_at = ?2
                 WHERE stage = ?1 AND state = 'succeeded' AND undo_state = 'undone'",
                params![stage, now()],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    /// Step counts by stage and state, in plan order of stages.
    pub fn counts(&self) -> Result<Vec<StateCount>, RekeyError> {
        let e = db_err(&self.path);
        let mut q = self
            .conn
            .prepare(
                "SELECT stage, state, undo_state, count(*), sum(bytes) FROM steps GROUP BY stage, state, undo_state ORDER BY min(id), state, undo_state",
            )
            .map_err(&e)?;
        let rows = q
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, i64>(4)? as u64,
                ))
            })
            .map_err(&e)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&e)
    }

    /// Steps in one of `states`, for reports.
    pub fn steps_in_states(&self, states: &[&str]) -> Result<Vec<StepRow>, RekeyError> {
        let e = db_err(&self.path);
        let list = states
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        let mut q = self
            .conn
            .prepare(&format!("SELECT {} FROM steps WHERE state IN ({list}) OR undo_state IN ('conflict', 'failed') ORDER BY id", Self::COLUMNS))
            .map_err(&e)?;
        let rows = q.query_map([], Self::row).map_err(&e)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&e)
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
        }
    }

    #[test]
    fn transitions_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite");
        let mut j = Journal::open(&path, "plan-a").unwrap();
        assert!(!j.is_initialized().unwrap());
        j.initialize([step("s1", "a"), step("s1", "b"), step("s2", "c")])
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
        j.mark_undo_started(1).unwrap();
        j.record_undo(1, undo_state::UNDONE, None).unwrap();
        assert!(j.mark_undo_started(1).is_err());
        assert!(
            j.mark_undo_started(2).is_err(),
            "a pending step has nothing to undo"
        );
        let rows = j.stage_steps("s1").unwrap();
        assert_eq!(rows[0].undo.as_deref(), Some("{\"undo\":1}"));
        assert_eq!(rows[0].attempts, 1);
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
        j.initialize([step("s1", "a"), step("s2", "b")]).unwrap();
        j.checkpoint("s2").unwrap();
        j.checkpoint("s1").unwrap();
        j.checkpoint("s1").unwrap();
        assert_eq!(
            j.checkpoints().unwrap(),
            vec![("s1".to_string(), 1), ("s2".to_string(), 2)]
        );
    }
}
