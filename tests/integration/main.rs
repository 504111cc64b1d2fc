//! rekey's integration tests: one binary, emulators started by `harness`.

mod harness;
mod overlay;
mod inventory;
mod plan;
mod golden;
