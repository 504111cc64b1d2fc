//! JSON Schemas of what each command prints with `--output json`, generated from the types
//! that are serialised (schemars). `rekey schema COMMAND` prints one; the checked-in copies in
//! `docs/schemas/` are pinned to these by a test, and real outputs are validated against
//! them (docs/output.md).

use clap::ValueEnum;
use serde::Serialize;

/// The commands with a JSON output.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Command {
    /// Each JSON line of `inventory --output json` / `-o FILE`: the header, records, the end.
    Inventory,
    /// `plan --output json`: the plan's totals.
    Plan,
    /// `show --output json`: the whole plan.
    Show,
    /// Each JSON line of `apply --output json` (events on stdout).
    Apply,
    /// `status --output json`.
    Status,
    /// `verify --output json`.
    Verify,
    /// `rollback --output json` (its events go to stderr as JSON lines, as apply's).
    Rollback,
}

/// One line of an inventory file: the header, a record, or the end line.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)]
enum InventoryLine {
    Header(crate::inventory::file::Header),
    Record(crate::inventory::Record),
    Trailer(crate::inventory::file::Trailer),
}

/// What `rollback --output json` prints.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RollbackSummary {
    /// Steps put back to their checkpoint.
    pub undone: u64,
    /// Steps left as they are: changed by someone else since rekey changed them.
    pub left_alone: u64,
    pub failed: u64,
    /// Why the run stopped: `completed`, `window closed`, `interrupted`, or `stopped after a
    /// stage with failed steps`.
    pub stop: String,
    /// The exit code the command returns.
    pub exit_code: i32,
    /// The run report (Markdown) beside the journal.
    pub report: String,
}

impl Command {
    /// The file name of the checked-in schema.
    pub fn file_name(self) -> String {
        format!(
            "{}.schema.json",
            self.to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        )
    }
}

/// The JSON Schema (draft 2020-12) of a command's JSON output, as rekey writes it (a field
/// left out when empty is not required).
pub fn schema(command: Command) -> serde_json::Value {
    fn of<T: schemars::JsonSchema>() -> serde_json::Value {
        schemars::generate::SchemaSettings::draft2020_12()
            .for_serialize()
            .into_generator()
            .into_root_schema_for::<T>()
            .to_value()
    }
    match command {
        Command::Inventory => of::<InventoryLine>(),
        Command::Plan => of::<crate::plan::Totals>(),
        Command::Show => of::<crate::plan::PlanFile>(),
        Command::Apply => of::<crate::events::Event>(),
        Command::Status => of::<crate::apply::Status>(),
        Command::Verify => of::<crate::verify::Verification>(),
        Command::Rollback => of::<RollbackSummary>(),
    }
}

/// A schema as `rekey schema` prints it and `docs/schemas/` keeps it.
pub fn text(command: Command) -> String {
    let mut s = serde_json::to_string_pretty(&schema(command)).unwrap_or_default();
    s.push('\n');
    s
}
