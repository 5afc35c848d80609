//! Why the engine refused a request. A turn that *started* never errors: it ends with an outcome.

use koto_core::TurnNo;
use koto_protocol::ErrorCode;
use koto_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{message}")]
    InvalidInput { code: ErrorCode, message: String },
    #[error("turn {turn} already exists for this session")]
    TurnExists { turn: TurnNo },
    #[error("unknown command {0:?}; known commands: stop, reset, say <text>")]
    UnknownCommand(String),
    #[error("{0}")]
    NotAvailable(String),
    #[error("barge-in is disabled (SYNC_TTS_BARGE_IN=false)")]
    BargeInDisabled,
    #[error("the sync core is disabled (ENABLE_SYNC_CORE=false)")]
    SyncCoreDisabled,
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("storage failed: {0}")]
    Storage(#[from] StoreError),
}

impl EngineError {
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::InvalidInput { code, .. } => *code,
            EngineError::TurnExists { .. } => ErrorCode::TurnExists,
            EngineError::UnknownCommand(_) => ErrorCode::UnknownCommand,
            EngineError::NotAvailable(_) => ErrorCode::NotAvailable,
            EngineError::BargeInDisabled => ErrorCode::BargeInDisabled,
            EngineError::SyncCoreDisabled => ErrorCode::SyncCoreDisabled,
            EngineError::ShuttingDown => ErrorCode::ShuttingDown,
            EngineError::Storage(_) => ErrorCode::StorageError,
        }
    }

    pub(crate) fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        EngineError::InvalidInput {
            code,
            message: message.into(),
        }
    }
}
