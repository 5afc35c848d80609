//! The original Vue front end's frames (CONTRACTS §4): what `/ws/input` answers and what
//! `/ws/output/{task_id}` streams.
//!
//! Shape only; `koto-server`'s `routes::legacy` decides when each one is sent. The inbound
//! `data_chunk` metadata is read field by field there, because each malformed field gets its
//! own plain-text answer, as in the original.

use serde::Serialize;

use crate::ErrorCode;

/// `{"type":"system","action":"task_id_assigned"|"upload_processed",…}` on `/ws/input`.
#[derive(Debug, Serialize)]
pub struct SystemFrame<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    pub task_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
}

/// `{"status":"success",…}`: the reply's full text, once.
#[derive(Debug, Serialize)]
pub struct ReplyFrame<'a> {
    pub status: &'static str,
    pub task_id: &'a str,
    pub content: &'a str,
    pub audio_present: bool,
}

/// `{"type":"audio_chunk",…}`, followed by one binary frame of s16le PCM.
#[derive(Debug, Serialize)]
pub struct AudioChunkFrame<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub task_id: &'a str,
    pub chunk_id: u64,
    /// Always `null`: the reply is streamed, its length is not known in advance.
    pub total_chunks: Option<u64>,
    pub sample_rate: u32,
}

/// `{"type":"control","action":"END"|"STOP_ACK",…}` and `{"type":"audio_complete",…}`.
#[derive(Debug, Serialize)]
pub struct ControlFrame<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    pub task_id: &'a str,
}

/// `{"status":"error",…}`: the LLM, TTS, storage or the upload failed.
#[derive(Debug, Serialize)]
pub struct ErrorFrame<'a> {
    pub status: &'static str,
    pub task_id: &'a str,
    pub error: &'a str,
    pub code: ErrorCode,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn system_frames_omit_what_they_do_not_carry() {
        let assigned = SystemFrame {
            kind: "system",
            action: "task_id_assigned",
            status: None,
            task_id: "id",
            error: None,
            code: None,
        };
        assert_eq!(
            serde_json::to_value(&assigned).unwrap(),
            serde_json::json!({"type":"system","action":"task_id_assigned","task_id":"id"})
        );
        let refused = SystemFrame {
            kind: "system",
            action: "upload_processed",
            status: Some("error"),
            task_id: "id",
            error: Some("no"),
            code: Some(ErrorCode::NotAvailable),
        };
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            serde_json::json!({"type":"system","action":"upload_processed","status":"error",
                "task_id":"id","error":"no","code":"not_available"})
        );
    }
}
