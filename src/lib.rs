//! rekey: move an ML estate from service-managed encryption to customer-managed KMS keys,
//! as plan and apply. See DESIGN.md for the shape; `cli` is the only part that prints.

pub mod access;
pub mod apply;
pub mod batch;
pub mod campaign;
pub mod chart;
pub mod cli;
pub mod error;
pub mod events;
pub mod executor;
pub mod exit_codes;
pub mod guard;
pub mod inventory;
pub mod journal;
pub mod keys;
pub mod matching;
pub mod model;
pub mod plan;
pub mod preflight;
pub mod pricing;
pub mod providers;
pub mod report;
pub mod retry;
pub mod rollback;
pub mod runbook;
pub mod s3report;
pub mod schema;
pub mod steps;
pub mod summary;
pub mod verify;
pub mod window;
