//! The messages of Edge's read-aloud WebSocket protocol: what the client sends (`speech.config`,
//! `ssml`) and how to read what the server answers (`turn.start`, `audio.metadata`, `turn.end`
//! text frames; binary `Path:audio` frames with a 2-byte big-endian header length).
//!
//! Pure functions over strings and bytes: no IO, no tokens (see `token`), no MP3 decoding.

/// Edge refuses WebSocket messages above 64 KiB.
pub(crate) const MAX_MESSAGE_BYTES: usize = 65_536;

/// The browser extension's origin Edge expects on the handshake.
pub(crate) const EXTENSION_ORIGIN: &str = "chrome-extension://jdiccldimpdaibmpdkjnbmckianbfold";

/// A fresh id in the form Edge uses for `ConnectionId` and `X-RequestId` (UUID v4, no dashes).
pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The first message: asks for `output_format` (e.g. `audio-24khz-48kbitrate-mono-mp3`).
pub(crate) fn speech_config_message(timestamp: &str, output_format: &str) -> String {
    let config = serde_json::json!({
        "context": {"synthesis": {"audio": {
            "metadataoptions": {"sentenceBoundaryEnabled": false, "wordBoundaryEnabled": true},
            "outputFormat": output_format,
        }}}
    });
    format!(
        "X-Timestamp:{timestamp}\r\nContent-Type:application/json; charset=utf-8\r\nPath:speech.config\r\n\r\n{config}\r\n"
    )
}

/// The second message: the SSML to speak.
pub(crate) fn ssml_message(request_id: &str, timestamp: &str, ssml: &str) -> String {
    // The trailing `Z` after a JavaScript date is what Edge itself sends; kept for fidelity.
    format!(
        "X-RequestId:{request_id}\r\nContent-Type:application/ssml+xml\r\nX-Timestamp:{timestamp}Z\r\nPath:ssml\r\n\r\n{ssml}"
    )
}

/// Voice and prosody for one request; values are validated by the config before they get here.
pub(crate) struct Prosody<'a> {
    pub voice: &'a str,
    pub rate: &'a str,
    pub volume: &'a str,
    pub pitch: &'a str,
}

/// The SSML document Edge accepts: one `<voice>` holding one `<prosody>` holding escaped text.
pub(crate) fn ssml(text: &str, prosody: &Prosody<'_>) -> String {
    format!(
        "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'>\
         <voice name='{}'><prosody pitch='{}' rate='{}' volume='{}'>{}</prosody></voice></speak>",
        escape_xml(&long_voice_name(prosody.voice)),
        escape_xml(prosody.pitch),
        escape_xml(prosody.rate),
        escape_xml(prosody.volume),
        escape_xml(&replace_forbidden_controls(text)),
    )
}

/// `zh-CN-XiaoxiaoNeural` → `Microsoft Server Speech Text to Speech Voice (zh-CN, XiaoxiaoNeural)`,
/// the form Edge itself sends; a name with a region suffix (`zh-CN-liaoning-XiaobeiNeural`) keeps
/// it with the region. Anything else (already long, or unknown) passes through unchanged.
pub(crate) fn long_voice_name(voice: &str) -> String {
    let mut parts = voice.splitn(3, '-');
    let (Some(lang), Some(region), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return voice.to_owned();
    };
    let is_lang = lang.len() == 2 && lang.bytes().all(|b| b.is_ascii_lowercase());
    let is_region = region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase());
    if !is_lang || !is_region || !rest.ends_with("Neural") {
        return voice.to_owned();
    }
    match rest.split_once('-') {
        Some((sub_region, name)) => {
            format!(
                "Microsoft Server Speech Text to Speech Voice ({lang}-{region}-{sub_region}, {name})"
            )
        }
        None => format!("Microsoft Server Speech Text to Speech Voice ({lang}-{region}, {rest})"),
    }
}

/// XML 1.0 cannot carry most C0 controls (and Edge errors on them, e.g. vertical tabs from OCR'd
/// text): they become spaces.
fn replace_forbidden_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

pub(crate) fn escape_xml(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '\'' => escaped.push_str("&apos;"),
            '"' => escaped.push_str("&quot;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A message from the server, by its `Path` header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServerMessage<'a> {
    TurnStart,
    AudioMetadata,
    Response,
    TurnEnd,
    /// MP3 bytes (may be empty: Edge ends with a header-only audio frame).
    Audio(&'a [u8]),
    /// A path this client does not use; ignored so new server messages do not break speech.
    Other(String),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("a binary frame shorter than its 2-byte header length")]
    MissingHeaderLength,
    #[error("a binary frame whose header length {header_len} exceeds its size {frame_len}")]
    HeaderOverrun { header_len: usize, frame_len: usize },
    #[error("a message without a Path header")]
    MissingPath,
}

/// Text frames: `Name:value` header lines, a blank line, then a body.
pub(crate) fn parse_text_frame(text: &str) -> Result<ServerMessage<'static>, FrameError> {
    let head = text.split_once("\r\n\r\n").map_or(text, |(head, _)| head);
    match path_of(head.as_bytes()).ok_or(FrameError::MissingPath)? {
        "turn.start" => Ok(ServerMessage::TurnStart),
        "audio.metadata" => Ok(ServerMessage::AudioMetadata),
        "response" => Ok(ServerMessage::Response),
        "turn.end" => Ok(ServerMessage::TurnEnd),
        other => Ok(ServerMessage::Other(other.to_owned())),
    }
}

/// Binary frames: a big-endian `u16` header length, that many bytes of header lines, then data.
pub(crate) fn parse_binary_frame(frame: &[u8]) -> Result<ServerMessage<'_>, FrameError> {
    let Some((len_bytes, rest)) = frame.split_first_chunk::<2>() else {
        return Err(FrameError::MissingHeaderLength);
    };
    let header_len = usize::from(u16::from_be_bytes(*len_bytes));
    if header_len > rest.len() {
        return Err(FrameError::HeaderOverrun {
            header_len,
            frame_len: frame.len(),
        });
    }
    let (head, body) = rest.split_at(header_len);
    match path_of(head).ok_or(FrameError::MissingPath)? {
        "audio" => Ok(ServerMessage::Audio(body)),
        other => Ok(ServerMessage::Other(other.to_owned())),
    }
}

fn path_of(head: &[u8]) -> Option<&str> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("path")
            .then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const PROSODY: Prosody<'static> = Prosody {
        voice: "en-US-AriaNeural",
        rate: "+10%",
        volume: "+0%",
        pitch: "+0Hz",
    };

    #[test]
    fn ssml_escapes_text_and_expands_the_voice_name() {
        let ssml = ssml("Tom & Jerry <3 \"quotes\" 'apos'\u{0B}end", &PROSODY);
        assert_eq!(
            ssml,
            "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'>\
             <voice name='Microsoft Server Speech Text to Speech Voice (en-US, AriaNeural)'>\
             <prosody pitch='+0Hz' rate='+10%' volume='+0%'>\
             Tom &amp; Jerry &lt;3 &quot;quotes&quot; &apos;apos&apos; end</prosody></voice></speak>",
            "markup characters are escaped, the vertical tab becomes a space"
        );
    }

    #[test]
    fn voice_names_expand_like_edge_sends_them() {
        for (short, long) in [
            (
                "zh-CN-XiaoxiaoNeural",
                "Microsoft Server Speech Text to Speech Voice (zh-CN, XiaoxiaoNeural)",
            ),
            (
                "zh-CN-liaoning-XiaobeiNeural",
                "Microsoft Server Speech Text to Speech Voice (zh-CN-liaoning, XiaobeiNeural)",
            ),
            (
                "Microsoft Server Speech Text to Speech Voice (ja-JP, NanamiNeural)",
                "Microsoft Server Speech Text to Speech Voice (ja-JP, NanamiNeural)",
            ),
            ("custom", "custom"),
        ] {
            assert_eq!(
                long_voice_name(short),
                long,
                "{short} must expand to Edge's long form"
            );
        }
    }

    #[test]
    fn client_messages_carry_the_headers_edge_requires() {
        let config = speech_config_message("T", "audio-24khz-48kbitrate-mono-mp3");
        let (head, body) = config.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            "X-Timestamp:T\r\nContent-Type:application/json; charset=utf-8\r\nPath:speech.config"
        );
        let json: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
        assert_eq!(
            json["context"]["synthesis"]["audio"]["outputFormat"],
            "audio-24khz-48kbitrate-mono-mp3",
            "the body asks for the configured format"
        );
        let message = ssml_message("abc", "T", "<speak/>");
        assert_eq!(
            message,
            "X-RequestId:abc\r\nContent-Type:application/ssml+xml\r\nX-Timestamp:TZ\r\nPath:ssml\r\n\r\n<speak/>",
            "the ssml message has the four headers then the document"
        );
        assert_eq!(request_id().len(), 32, "a dashless UUID");
    }

    #[test]
    fn server_frames_are_read_by_path() {
        let turn_start = "X-RequestId:abc\r\nContent-Type:application/json; charset=utf-8\r\nPath:turn.start\r\n\r\n{}";
        assert_eq!(parse_text_frame(turn_start), Ok(ServerMessage::TurnStart));
        assert_eq!(
            parse_text_frame("Path:turn.end\r\n\r\n{}"),
            Ok(ServerMessage::TurnEnd)
        );
        assert_eq!(
            parse_text_frame("Path: audio.metadata\r\n\r\n{}"),
            Ok(ServerMessage::AudioMetadata)
        );
        assert_eq!(
            parse_text_frame("Path:new.thing\r\n\r\n"),
            Ok(ServerMessage::Other("new.thing".into()))
        );
        assert_eq!(
            parse_text_frame("X-RequestId:abc\r\n\r\n"),
            Err(FrameError::MissingPath)
        );

        let head = b"X-RequestId:abc\r\nContent-Type:audio/mpeg\r\nPath:audio\r\n";
        let mut frame = (head.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(head);
        frame.extend_from_slice(b"\xFF\xF3mp3");
        assert_eq!(
            parse_binary_frame(&frame),
            Ok(ServerMessage::Audio(b"\xFF\xF3mp3")),
            "data follows the header"
        );
        assert_eq!(
            parse_binary_frame(&[0]),
            Err(FrameError::MissingHeaderLength)
        );
        assert_eq!(
            parse_binary_frame(&[0, 200, b'P']),
            Err(FrameError::HeaderOverrun {
                header_len: 200,
                frame_len: 3
            }),
            "a lying header length is an error, not a panic"
        );
    }
}
