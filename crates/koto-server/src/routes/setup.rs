//! The first-run setup's server side: `POST /settings/test/llm` (unsaved LLM values → the
//! server's model list, or what is wrong as a sentence), `GET /voices` (the voices a provider
//! offers: espeak-ng's `--voices`, Piper models found on disk, the mock tone, a short list for
//! Edge and OpenAI), and personas (`GET /personas`: ready co-host characters and the TOML files
//! under `<data_dir>/personas/`; `PUT /personas/{id}` saves one). Every failure a streamer can
//! see is a sentence about their setting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, Request, State};
use koto_protocol::ErrorCode;
use koto_providers::llm::models::{ModelsError, list_models};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::AppError;
use crate::persona::{Persona, parse_persona};
use crate::routes::read_json;

/// How long "Test connection" waits for the server.
const LLM_TEST_TIMEOUT: Duration = Duration::from_secs(8);
/// How long `espeak-ng --voices` may take.
const VOICE_LIST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LlmTest {
    base_url: String,
    /// `None`: the key the app runs with (the form never shows a saved key).
    api_key: Option<String>,
    model: Option<String>,
    /// Seconds to wait (1–30; default 8).
    timeout_secs: Option<f64>,
}

pub async fn test_llm(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<Value>, AppError> {
    let body: LlmTest = read_json(request.into_body(), state.max_body_bytes).await?;
    let saved_key = state.settings.running_value("openai_api_key");
    let key = body
        .api_key
        .filter(|key| !key.is_empty())
        .or(saved_key.filter(|key| !key.is_empty()));
    let timeout = body
        .timeout_secs
        .filter(|secs| secs.is_finite())
        .map_or(LLM_TEST_TIMEOUT, |secs| {
            Duration::from_secs_f64(secs.clamp(1.0, 30.0))
        });
    let answer = match list_models(&body.base_url, key.as_deref(), timeout).await {
        Ok(models) => {
            let wanted = body
                .model
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty());
            let listed = wanted.is_none_or(|model| models.iter().any(|m| m == model));
            let message = match (wanted, listed, models.len()) {
                (_, _, 0) => {
                    "Connected, but the server lists no models: load or pull one first.".to_owned()
                }
                (Some(model), true, n) => {
                    format!("Connected: {n} model(s); {model} is one of them.")
                }
                (Some(model), false, n) => {
                    format!("Connected: {n} model(s), but not {model}. Pick one from the list.")
                }
                (None, _, n) => format!("Connected: {n} model(s). Pick one."),
            };
            json!({ "ok": true, "models": models, "modelListed": listed, "message": message })
        }
        Err(error) => {
            json!({ "ok": false, "problem": problem_code(&error), "message": llm_sentence(&error) })
        }
    };
    Ok(Json(answer))
}

fn problem_code(error: &ModelsError) -> &'static str {
    match error {
        ModelsError::BadUrl(_) => "bad_url",
        ModelsError::Unreachable { .. } => "unreachable",
        ModelsError::Timeout { .. } => "timeout",
        ModelsError::Unauthorized { .. } => "unauthorized",
        ModelsError::Status { .. } => "http_error",
        ModelsError::NotOpenAi { .. } => "not_openai",
    }
}

/// What to tell the streamer, and what to do about it.
pub fn llm_sentence(error: &ModelsError) -> String {
    match error {
        ModelsError::BadUrl(url) => format!(
            "“{url}” is not a web address. It looks like http://127.0.0.1:11434/v1 (Ollama) or https://api.openai.com/v1."
        ),
        ModelsError::Unreachable { url, .. } => format!(
            "Nothing answers at {url}. Is the server running (Ollama: `ollama serve`; LM Studio: start its local server) and is the address right?"
        ),
        ModelsError::Timeout { url, secs } => format!(
            "{url} did not answer within {secs} s. Check the address, or wait until the server has loaded its model."
        ),
        ModelsError::Unauthorized { status, .. } => format!(
            "The server refused the API key (HTTP {status}). Paste the key again, or create a new one."
        ),
        ModelsError::Status { status, detail, .. } => {
            format!("The server answered with an error (HTTP {status}): {detail}")
        }
        ModelsError::NotOpenAi { url, detail } => format!(
            "{url} answered, but it is not an OpenAI-compatible API: {detail}. Check the base URL; it usually ends in /v1."
        ),
    }
}

#[derive(Debug, Deserialize)]
pub struct VoicesQuery {
    provider: Option<String>,
}

#[derive(Debug, Serialize)]
struct VoiceEntry {
    id: String,
    label: String,
    lang: String,
}

pub async fn voices(
    State(state): State<AppState>,
    Query(query): Query<VoicesQuery>,
) -> Json<Value> {
    let running = |key: &str| state.settings.running_value(key).unwrap_or_default();
    let mut provider = query
        .provider
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| running("tts_provider"));
    if provider == "auto" {
        // What `auto` picks at start (`espeak-ng --version` blocks for a moment: off the workers).
        let espeak = tokio::task::spawn_blocking(koto_providers::tts::espeak::EspeakTts::detect)
            .await
            .unwrap_or(false);
        provider = if espeak { "espeak" } else { "mock" }.to_owned();
    }
    let (voices, note) = match provider.as_str() {
        "mock" => (
            vec![VoiceEntry { id: String::new(), label: "Test tone (the demo voice)".into(), lang: String::new() }],
            Some("The demo voice is a tone, not speech. Install espeak-ng or Piper for a real voice.".to_owned()),
        ),
        "espeak" => match espeak_voices("espeak-ng").await {
            Ok(voices) => (
                voices,
                Some(
                    "espeak-ng reads Japanese kana only (kanji are skipped). For Japanese pick Edge (七海 Nanami) or OpenAI speech, or a Japanese Piper voice."
                        .to_owned(),
                ),
            ),
            Err(reason) => (Vec::new(), Some(reason)),
        },
        "piper" => {
            let mut dirs = vec![state.settings.path().parent().map(|d| d.join("voices")).unwrap_or_default()];
            let model = running("piper_model");
            if let Some(dir) = Path::new(&model).parent().filter(|d| !d.as_os_str().is_empty()) {
                dirs.push(dir.to_path_buf());
            }
            let voices = piper_models(&dirs);
            let note = voices.is_empty().then(|| {
                format!(
                    "No Piper voice (.onnx) found in {}. Download one (e.g. from huggingface.co/rhasspy/piper-voices) into that folder.",
                    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" or ")
                )
            });
            (voices, note)
        }
        "edge" => (static_voices(EDGE_VOICES), Some("Edge voices need the internet.".to_owned())),
        "openai" => (static_voices(OPENAI_VOICES), None),
        other => (Vec::new(), Some(format!("“{other}” is not a voice engine Kotodama knows."))),
    };
    Json(json!({ "provider": provider, "voices": voices, "note": note }))
}

const EDGE_VOICES: &[(&str, &str, &str)] = &[
    ("en-US-AriaNeural", "Aria (English, US)", "en"),
    ("en-US-GuyNeural", "Guy (English, US)", "en"),
    ("zh-CN-XiaoxiaoNeural", "晓晓 Xiaoxiao (中文)", "zh"),
    ("zh-CN-YunxiNeural", "云希 Yunxi (中文)", "zh"),
    ("ja-JP-NanamiNeural", "七海 Nanami (日本語)", "ja"),
    ("ja-JP-KeitaNeural", "圭太 Keita (日本語)", "ja"),
    ("ko-KR-SunHiNeural", "선히 SunHi (한국어)", "ko"),
];

const OPENAI_VOICES: &[(&str, &str, &str)] = &[
    ("alloy", "Alloy", ""),
    ("echo", "Echo", ""),
    ("fable", "Fable", ""),
    ("nova", "Nova", ""),
    ("onyx", "Onyx", ""),
    ("shimmer", "Shimmer", ""),
];

fn static_voices(list: &[(&str, &str, &str)]) -> Vec<VoiceEntry> {
    list.iter()
        .map(|(id, label, lang)| VoiceEntry {
            id: (*id).into(),
            label: (*label).into(),
            lang: (*lang).into(),
        })
        .collect()
}

/// `espeak-ng --voices`: one voice per line after a header.
async fn espeak_voices(program: &str) -> Result<Vec<VoiceEntry>, String> {
    let output = tokio::time::timeout(
        VOICE_LIST_TIMEOUT,
        tokio::process::Command::new(program)
            .arg("--voices")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "espeak-ng did not list its voices in time.".to_owned())?
    .map_err(|_| {
        "espeak-ng is not installed (on Debian/Ubuntu: sudo apt install espeak-ng).".to_owned()
    })?;
    Ok(parse_espeak_voices(&String::from_utf8_lossy(
        &output.stdout,
    )))
}

/// ` 5  en-us           --/M      English_(America)  gmw/en-US` → `en-us`, "English (America)".
fn parse_espeak_voices(text: &str) -> Vec<VoiceEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let (lang, name) = (columns.get(1)?, columns.get(3)?);
            Some(VoiceEntry {
                id: (*lang).to_owned(),
                label: name.replace('_', " "),
                lang: lang.split('-').next().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

fn piper_models(dirs: &[PathBuf]) -> Vec<VoiceEntry> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "onnx") {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                found.push(VoiceEntry {
                    id: path.to_string_lossy().into_owned(),
                    lang: stem.split(['_', '-']).next().unwrap_or_default().to_owned(),
                    label: stem,
                });
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

// ---- personas ------------------------------------------------------------------------------

const PRESETS: &[(&str, &str, &str, &str)] = &[
    (
        "hype",
        "Kira",
        "en",
        "Upbeat and playful: hypes the streamer, teases chat kindly, loves a good comeback.",
    ),
    (
        "calm",
        "Sora",
        "en",
        "Calm and thoughtful: explains things simply, never rushes, keeps the mood cosy.",
    ),
    (
        "xiaoyu",
        "小雨",
        "zh",
        "活泼可爱的直播搭档，爱接弹幕的梗，说话简短有趣。",
    ),
    (
        "hana",
        "ハナ",
        "ja",
        "明るくて優しい配信の相棒。リスナーのコメントに楽しく反応する。",
    ),
];

fn personas_dir(state: &AppState) -> PathBuf {
    state
        .settings
        .path()
        .parent()
        .map(|dir| dir.join("personas"))
        .unwrap_or_else(|| PathBuf::from("personas"))
}

pub async fn personas(State(state): State<AppState>) -> Json<Value> {
    let dir = personas_dir(&state);
    let presets: Vec<Value> = PRESETS
        .iter()
        .map(|(id, name, lang, style)| {
            let persona = Persona { name: (*name).into(), lang: (*lang).into(), style: (*style).into(), system_prompt: String::new(), quick_ack_ms: None };
            json!({ "id": id, "name": name, "lang": lang, "style": style, "systemPrompt": persona.prompt(), "preset": true })
        })
        .collect();
    let saved = tokio::task::spawn_blocking(move || read_personas(&dir))
        .await
        .unwrap_or_default();
    Json(json!({ "presets": presets, "saved": saved, "dir": personas_dir(&state) }))
}

/// Every `*.toml` under `dir`: a persona, or a sentence naming the file and line.
fn read_personas(dir: &Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let shown = format!("personas/{id}.toml");
            match std::fs::read_to_string(path)
                .map_err(|error| error.to_string())
                .and_then(|text| parse_persona(&text, &shown))
            {
                Ok(persona) => json!({
                    "id": id, "file": shown, "name": persona.name, "lang": persona.lang,
                    "style": persona.style, "systemPrompt": persona.prompt(),
                    "quickAckMs": persona.quick_ack_ms,
                }),
                Err(error) => json!({ "id": id, "file": shown, "error": error }),
            }
        })
        .collect()
}

pub async fn save_persona(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> Result<Json<Value>, AppError> {
    let persona: Persona = read_json(request.into_body(), state.max_body_bytes).await?;
    let valid_id = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_id {
        return Err(AppError::bad_request(
            ErrorCode::InvalidRequest,
            "a persona's id is 1–64 letters, digits, - or _ (it names its file)",
        ));
    }
    if persona.name.trim().is_empty() {
        return Err(AppError::bad_request(
            ErrorCode::InvalidRequest,
            "give the persona a name",
        ));
    }
    persona
        .check()
        .map_err(|reason| AppError::bad_request(ErrorCode::InvalidRequest, reason))?;
    let dir = personas_dir(&state);
    let text = toml::to_string(&persona).map_err(|error| {
        AppError::bad_request(
            ErrorCode::InvalidRequest,
            format!("cannot write this persona: {error}"),
        )
    })?;
    let path = dir.join(format!("{id}.toml"));
    let target = path.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&target, text)
    })
    .await
    .map_err(|error| AppError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, error.to_string()))?
    .map_err(|error| {
        AppError::new(
            axum::http::StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::NotAvailable,
            format!(
                "The persona was not saved: {} cannot be written ({error}). Make the data folder writable, or start Kotodama with another --data-dir.",
                path.display()
            ),
        )
    })?;
    Ok(Json(
        json!({ "ok": true, "file": format!("personas/{id}.toml"), "systemPrompt": persona.prompt() }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn espeak_voice_lines_become_ids_and_labels() {
        let text = "Pty Language       Age/Gender VoiceName          File                 Other Languages\n \
                    5  af              --/M      Afrikaans          gmw/af\n \
                    5  en-us           --/M      English_(America)  gmw/en-US            (en 3)\n";
        let voices = parse_espeak_voices(text);
        assert_eq!(voices.len(), 2);
        assert_eq!(voices[1].id, "en-us");
        assert_eq!(voices[1].label, "English (America)");
        assert_eq!(voices[1].lang, "en");
    }
}
