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
    /// Why a turn was not saved, in words a streamer can act on where they can (a full disk, a
    /// database another program holds locked).
    pub(crate) fn not_saved(&self) -> String {
        match self {
            EngineError::Storage(StoreError::DiskFull) => "The turn was not saved: the disk holding Kotodama's database is full. Free some space on it (or start with another --data-dir); everything stored before is kept.".to_owned(),
            EngineError::Storage(StoreError::Busy) => "The turn was not saved: Kotodama's database is locked by another program (a backup or a database viewer?). Close it; everything stored before is kept.".to_owned(),
            other => format!("the turn was not saved: {other}"),
        }
    }

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
