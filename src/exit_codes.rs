//! Every exit code rekey returns, in one place (DESIGN.md §2).
//!
//! Automation keys off these numbers, so they never change meaning; new codes are added at the end.

/// The command did what it was asked.
pub const OK: i32 = 0;
/// An internal error: a bug, or a cloud error that rekey could not classify.
pub const INTERNAL: i32 = 1;
/// Bad usage, campaign file or plan file. Nothing was written to the cloud.
pub const BAD_INPUT: i32 = 2;
/// The run finished, but some steps failed or drifted; the run report says which.
pub const STEPS_FAILED: i32 = 3;
/// The plan is stale: the inventory or a key alias changed since it was made. Plan again.
pub const STALE_PLAN: i32 = 4;
/// Stopped at the end of the maintenance window; `apply` again resumes.
pub const WINDOW_CLOSED: i32 = 5;
/// `verify` found resources that are not on their team's key.
pub const NON_COMPLIANT: i32 = 6;
/// Interrupted by a signal; `apply` again resumes.
pub const INTERRUPTED: i32 = 130;

/// (code, meaning) for `--help` text and the README.
pub const ALL: &[(i32, &str)] = &[
    (OK, "ok"),
    (INTERNAL, "internal error"),
    (
        BAD_INPUT,
        "bad usage, campaign or plan; nothing was written",
    ),
    (STEPS_FAILED, "finished with failed or drifted steps"),
    (STALE_PLAN, "stale plan: inventory or key aliases changed"),
    (
        WINDOW_CLOSED,
        "stopped at the end of the maintenance window (resumable)",
    ),
    (NON_COMPLIANT, "verify found non-compliant resources"),
    (INTERRUPTED, "interrupted by a signal (resumable)"),
];
