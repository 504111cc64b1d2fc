//! rekey's integration tests: one binary, emulators started by `harness`.

mod accounts;
mod apply;
mod batch;
mod batch_engine;
mod consumers;
mod gcs;
mod gcs_batch;
mod golden;
mod guard;
mod harness;
mod interleave;
mod inventory;
mod keys;
mod outputs;
mod overlay;
mod plan;
mod reports;
mod safety;
mod sagemaker;
mod scale;
mod steps;
