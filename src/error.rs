//! The error types the core acts on, and the one mapping from errors to exit codes.

use std::path::PathBuf;

use crate::exit_codes;

/// What went wrong in a provider call, in terms the core can act on. Providers map their
/// SDK errors into these; nothing above the provider layer sees an SDK type.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("precondition failed on {what}: it changed since it was read")]
    Precondition { what: String },
    /// S3's 409 ConditionalRequestConflict: a conditional write raced another write. A guarded
    /// CopyObject may be sent again (its condition still holds or fails); a
    /// CompleteMultipartUpload must not be: the upload starts over (AWS's guidance).
    #[error("conditional write on {what} raced another write")]
    Conflict { what: String },
    #[error("permission denied on {what}: {detail}")]
    PermissionDenied { what: String, detail: String },
    #[error("throttled by the provider on {what}: {detail}")]
    Throttled { what: String, detail: String },
    #[error("KMS key {key} cannot be used: {detail}")]
    KeyUnusable { key: String, detail: String },
    #[error("the provider refused the request on {what}: {detail}")]
    Invalid { what: String, detail: String },
    #[error("transient failure on {what}: {detail}")]
    Transient { what: String, detail: String },
    #[error("{what}: {detail}")]
    Other { what: String, detail: String },
}

impl ProviderError {
    /// Whether the same call may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Throttled { .. } | ProviderError::Transient { .. }
        )
    }
}

/// A campaign or plan file problem, located in its file, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}\n  fix: {fix}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct FileError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{message}\n  fix: {fix}")]
    Usage { message: String, fix: String },
    #[error("stale plan: {reason}\n  fix: run `rekey plan` again and review the new plan")]
    StalePlan { reason: String },
    /// A key rollback would return objects to cannot be used (exit 4, like a stale plan).
    #[error("{message}\n  fix: {fix}")]
    KeysUnusable { message: String, fix: String },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl RekeyError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RekeyError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn usage(message: impl Into<String>, fix: impl Into<String>) -> Self {
        RekeyError::Usage {
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// The one place errors become exit codes.
    pub fn exit_code(&self) -> i32 {
        match self {
            RekeyError::File(_) | RekeyError::Usage { .. } => exit_codes::BAD_INPUT,
            RekeyError::StalePlan { .. } | RekeyError::KeysUnusable { .. } => {
                exit_codes::STALE_PLAN
            }
            RekeyError::Provider(_) | RekeyError::Io { .. } | RekeyError::Internal(_) => {
                exit_codes::INTERNAL
            }
        }
    }
}

pub type Result<T, E = RekeyError> = std::result::Result<T, E>;
