//! Reads OpenAI `chat.completion.chunk` SSE events into text, finish and done signals.
//! Deliberately untyped (`serde_json::Value`): "compatible" servers omit, add and reshape fields,
//! and a strict schema is what breaks on them. Does no IO and ignores tool calls; reasoning
//! (`reasoning_content`, DeepSeek/llama.cpp/vLLM; `reasoning`, Ollama/OpenRouter) is read apart.

use koto_core::ProviderError;
use serde_json::Value;

use super::sse::SseEvent;

/// What one SSE event means for the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Non-empty reply text.
    Text(String),
    /// Non-empty reasoning (thinking models): never reply text.
    Reasoning(String),
    /// `finish_reason` was set: the reply is complete, though `[DONE]` may still follow.
    Finished,
    /// `finish_reason: "length"`: complete because the server's token cap cut it.
    FinishedAtCap,
    /// `data: [DONE]`.
    Done,
}

/// Longest piece of an unreadable payload quoted in an error message.
const QUOTE_CHARS: usize = 120;

/// Appends the signals `event` carries to `out`; an `Err` means the stream is unusable.
pub(crate) fn read_event(event: &SseEvent, out: &mut Vec<Signal>) -> Result<(), ProviderError> {
    match event.event.as_deref() {
        None | Some("message") => {}
        Some("error") => {
            let message = serde_json::from_str::<Value>(&event.data)
                .ok()
                .and_then(|value| error_message(&value))
                .unwrap_or_else(|| quote(&event.data));
            return Err(ProviderError::Protocol(format!(
                "upstream error event: {message}"
            )));
        }
        // Named events the OpenAI protocol does not define (pings, progress notes): not ours.
        Some(_) => return Ok(()),
    }
    let data = event.data.trim();
    if data.is_empty() {
        return Ok(());
    }
    if data == "[DONE]" {
        out.push(Signal::Done);
        return Ok(());
    }
    match serde_json::from_str::<Value>(data) {
        Ok(value) => read_chunk(&value, out),
        // Some servers forget the blank line between frames, so two payloads arrive as one
        // multi-line `data`. Accept that when every line is a payload on its own.
        Err(_) if data.contains('\n') => {
            let mut lines = Vec::new();
            for line in data.lines().map(str::trim).filter(|line| !line.is_empty()) {
                let line = line
                    .strip_prefix("data:")
                    .map(str::trim_start)
                    .unwrap_or(line);
                if line == "[DONE]" {
                    lines.push(None);
                } else {
                    lines.push(Some(
                        serde_json::from_str::<Value>(line).map_err(|_| garbage(data))?,
                    ));
                }
            }
            for line in lines {
                match line {
                    Some(value) => read_chunk(&value, out)?,
                    None => out.push(Signal::Done),
                }
            }
            Ok(())
        }
        Err(_) => Err(garbage(data)),
    }
}

fn read_chunk(value: &Value, out: &mut Vec<Signal>) -> Result<(), ProviderError> {
    if let Some(message) = value.get("error").and_then(|_| error_message(value)) {
        return Err(ProviderError::Protocol(format!(
            "upstream error in stream: {message}"
        )));
    }
    // We ask for one choice; anything without `choices` (a usage chunk, a heartbeat) says nothing.
    let Some(choice) = value
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| {
            choices
                .iter()
                .find(|choice| choice.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        })
    else {
        return Ok(());
    };
    let reasoning = choice
        .get("delta")
        .and_then(|delta| {
            delta
                .get("reasoning_content")
                .or_else(|| delta.get("reasoning"))
        })
        .map(content_text)
        .unwrap_or_default();
    if !reasoning.is_empty() {
        out.push(Signal::Reasoning(reasoning));
    }
    // `delta.content` is the protocol; `text` is the legacy completions shape some servers
    // still use.
    let text = choice
        .get("delta")
        .and_then(|delta| delta.get("content"))
        .or_else(|| choice.get("text"))
        .map(content_text)
        .unwrap_or_default();
    if !text.is_empty() {
        out.push(Signal::Text(text));
    }
    match choice.get("finish_reason") {
        Some(Value::String(reason)) if reason == "length" => out.push(Signal::FinishedAtCap),
        Some(reason) if !reason.is_null() => out.push(Signal::Finished),
        _ => {}
    }
    Ok(())
}

/// The text of a `content` value: a string, or an array of `{type:"text", text}` parts.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// `error.message` (OpenAI), or `error` itself when it is a string (some proxies), or a
/// top-level `message` / `detail` (other servers' error bodies).
pub(crate) fn error_message(value: &Value) -> Option<String> {
    let error = value.get("error");
    error
        .and_then(|error| error.get("message"))
        .or_else(|| error.filter(|error| error.is_string()))
        .or_else(|| value.get("message"))
        .or_else(|| value.get("detail"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn garbage(data: &str) -> ProviderError {
    ProviderError::Protocol(format!(
        "upstream sent data that is not JSON: {}",
        quote(data)
    ))
}

/// At most [`QUOTE_CHARS`] characters of `text`, for error messages.
pub(crate) fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(QUOTE_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    format!("{quoted:?}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn signals(event: Option<&str>, data: &str) -> Result<Vec<Signal>, ProviderError> {
        let mut out = Vec::new();
        let event = SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
        };
        read_event(&event, &mut out).map(|()| out)
    }

    fn text(s: &str) -> Signal {
        Signal::Text(s.to_owned())
    }

    #[test]
    fn content_deltas_finish_and_done() {
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(
            signals(None, chunk).unwrap(),
            vec![text("Hi")],
            "plain content delta"
        );
        let last = r#"{"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}]}"#;
        assert_eq!(
            signals(None, last).unwrap(),
            vec![text("!"), Signal::Finished],
            "text before finish"
        );
        assert_eq!(
            signals(None, "[DONE]").unwrap(),
            vec![Signal::Done],
            "the sentinel"
        );
        assert_eq!(
            signals(Some("message"), " [DONE] ").unwrap(),
            vec![Signal::Done],
            "`message` is the default"
        );
    }

    #[test]
    fn chunks_without_text_say_nothing() {
        for data in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#,
            r#"{"usage":null}"#,
            r#"{"choices":[{"index":0,"delta":{"content":null}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"other choice"}}]}"#,
            "42",
            "",
        ] {
            assert_eq!(
                signals(None, data).unwrap(),
                vec![],
                "{data} carries no reply text"
            );
        }
    }

    #[test]
    fn reasoning_is_read_apart_from_the_reply() {
        for data in [
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"Let me think"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":null,"reasoning":"Let me think"}}]}"#,
        ] {
            assert_eq!(
                signals(None, data).unwrap(),
                vec![Signal::Reasoning("Let me think".to_owned())],
                "{data}"
            );
        }
        let capped =
            r#"{"choices":[{"index":0,"delta":{"content":"and so"},"finish_reason":"length"}]}"#;
        assert_eq!(
            signals(None, capped).unwrap(),
            vec![text("and so"), Signal::FinishedAtCap],
            "the token cap is told apart from a natural end"
        );
    }

    #[test]
    fn legacy_text_and_content_parts_are_read() {
        assert_eq!(
            signals(None, r#"{"choices":[{"text":"old"}]}"#).unwrap(),
            vec![text("old")],
            "legacy"
        );
        let parts = r#"{"choices":[{"delta":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        assert_eq!(
            signals(None, parts).unwrap(),
            vec![text("ab")],
            "content parts are concatenated"
        );
    }

    #[test]
    fn garbage_and_error_payloads_are_protocol_errors() {
        assert!(
            matches!(signals(None, "this is not json"), Err(ProviderError::Protocol(m)) if m.contains("not JSON")),
            "non-JSON data cannot be a chunk"
        );
        let err = signals(
            None,
            r#"{"error":{"message":"model overloaded","type":"server_error"}}"#,
        );
        assert!(
            matches!(err, Err(ProviderError::Protocol(m)) if m.contains("model overloaded")),
            "an error object mid-stream ends the stream with its message"
        );
        let err = signals(Some("error"), r#"{"error":{"message":"boom"}}"#);
        assert!(
            matches!(err, Err(ProviderError::Protocol(m)) if m.contains("boom")),
            "error event"
        );
    }

    #[test]
    fn unknown_named_events_are_ignored() {
        assert_eq!(
            signals(Some("ping"), "not json at all").unwrap(),
            vec![],
            "not an OpenAI event"
        );
    }

    #[test]
    fn frames_missing_their_blank_line_are_still_read() {
        let data = "{\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n[DONE]";
        assert_eq!(
            signals(None, data).unwrap(),
            vec![text("a"), text("b"), Signal::Done],
            "each line of a joined multi-line data is a payload of its own"
        );
        let pretty = "{\n\"choices\": [{\"delta\": {\"content\": \"x\"}}]\n}";
        assert_eq!(
            signals(None, pretty).unwrap(),
            vec![text("x")],
            "real multi-line JSON stays one payload"
        );
    }

    #[test]
    fn quotes_are_bounded() {
        let long = "x".repeat(1000);
        assert!(
            quote(&long).chars().count() < 130,
            "error messages must not carry whole bodies"
        );
    }
}
