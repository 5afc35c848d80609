//! `GET /settings` and `PUT /settings`: the configuration keys as the control panel edits them,
//! saved to `<data_dir>/kotodama.toml` (mode 0600: it may hold API keys).
//!
//! It validates a change by building the whole configuration the next start would build, and
//! reports every failing key. It does not apply anything to the running app: the engine,
//! providers, limiter and listener are built once at start, so every saved key says "restart to
//! apply" (no key is hot today; [`applies_live`] is where one would become so).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use koto_protocol::ErrorCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::config::{ConfigError, KEYS, RawConfig, SETTINGS_FILE, Source, is_secret};
use crate::error::AppError;
use crate::routes::read_json;

/// Keys the settings API does not edit, and why.
const NOT_EDITABLE: &[(&str, &str)] = &[
    (
        "data_dir",
        "the settings file lives in the data directory; move it with --data-dir or KOTODAMA_DATA_DIR",
    ),
    (
        "token",
        "the access token is kept in <data_dir>/token; set KOTODAMA_TOKEN to replace it",
    ),
];

/// Whether a saved key takes effect in the running app. None does yet: everything a key
/// configures is built once at start-up.
fn applies_live(_key: &str) -> bool {
    false
}

/// The settings file and the raw configuration the running app was built from.
#[derive(Debug)]
pub struct Settings {
    path: PathBuf,
    running: RawConfig,
    /// One writer at a time: a PUT reads, merges and replaces the file under it. Only held
    /// inside `spawn_blocking`, never across an `.await`.
    write_lock: Mutex<()>,
}

/// A refused change: every failing key with its reason, or a problem with the file itself.
#[derive(Debug)]
pub enum SettingsRefused {
    Fields(BTreeMap<String, String>),
    File(String),
}

/// What a successful `PUT` did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsSaved {
    pub ok: bool,
    pub path: PathBuf,
    pub saved: Vec<String>,
    /// Saved keys that take effect only after a restart (today: all of them).
    pub restart_required: Vec<String>,
    pub applied_now: Vec<String>,
    /// Saved keys that a higher layer (env, `--config`, a flag) overrides: they will not take
    /// effect while that override stays.
    pub overridden: BTreeMap<String, String>,
    pub message: String,
}

impl Settings {
    pub fn new(data_dir: &Path, running: RawConfig) -> Settings {
        Settings {
            path: data_dir.join(SETTINGS_FILE),
            running,
            write_lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every editable key: its running value, what the file holds, where the running value
    /// came from and what overrides the file. Secrets are `"set"` or `""`.
    pub fn view(&self) -> Value {
        let (file, file_error) = match read_table(&self.path) {
            Ok(table) => (table, None),
            Err(message) => (toml::Table::new(), Some(message)),
        };
        let next = self.next_start(&file);
        let mut keys = Vec::new();
        let mut pending = Vec::new();
        for spec in KEYS {
            if NOT_EDITABLE.iter().any(|(key, _)| *key == spec.key) {
                continue;
            }
            let running = self.running.value(spec.key).unwrap_or_default();
            if next.value(spec.key) != Some(running) {
                pending.push(spec.key);
            }
            let saved = file.get(spec.key).map(toml_text);
            let secret = is_secret(spec.key);
            let shown = |text: &str| {
                if secret && !text.is_empty() {
                    "set".to_owned()
                } else {
                    text.to_owned()
                }
            };
            keys.push(json!({
                "key": spec.key,
                "env": spec.env,
                "doc": spec.doc,
                "default": spec.default,
                "value": shown(running),
                "saved": saved.as_deref().map(shown),
                "source": self.source_name(&self.running.source(spec.key)),
                "overriddenBy": self.override_of(spec.key),
                "secret": secret,
                "restartRequired": !applies_live(spec.key),
            }));
        }
        json!({
            "path": self.path,
            "fileExists": self.path.is_file(),
            "fileError": file_error,
            "pendingRestart": pending,
            "keys": keys,
        })
    }

    /// Validates `changes` (`null` removes a key from the file) against the configuration the
    /// next start would build, then writes the file. On any error nothing is written.
    pub fn update(
        &self,
        changes: &serde_json::Map<String, Value>,
    ) -> Result<SettingsSaved, SettingsRefused> {
        let _writer = self
            .write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut table = read_table(&self.path).map_err(SettingsRefused::File)?;
        let mut fields = BTreeMap::new();
        let mut saved = Vec::new();
        for (name, value) in changes {
            let Some(spec) = KEYS.iter().find(|spec| spec.key == name.as_str()) else {
                fields.insert(name.clone(), "unknown setting".to_owned());
                continue;
            };
            if let Some((_, why)) = NOT_EDITABLE.iter().find(|(key, _)| *key == spec.key) {
                fields.insert(name.clone(), format!("not editable here: {why}"));
                continue;
            }
            match json_text(value) {
                Ok(None) => {
                    table.remove(spec.key);
                }
                Ok(Some(text)) => {
                    table.insert(spec.key.to_owned(), toml::Value::String(text));
                }
                Err(reason) => {
                    fields.insert(name.clone(), reason);
                    continue;
                }
            }
            saved.push(spec.key.to_owned());
        }
        fields.extend(self.check(&table));
        if !fields.is_empty() {
            return Err(SettingsRefused::Fields(fields));
        }
        let text = toml::to_string(&table).map_err(|error| {
            SettingsRefused::File(format!("cannot encode the settings: {error}"))
        })?;
        write_private(&self.path, &text)
            .map_err(|error| SettingsRefused::File(format!("cannot write the file: {error}")))?;
        let overridden: BTreeMap<String, String> = saved
            .iter()
            .filter_map(|key| Some((key.clone(), self.override_of(key)?)))
            .collect();
        let restart_required: Vec<String> = saved
            .iter()
            .filter(|key| !applies_live(key))
            .cloned()
            .collect();
        let message = if saved.is_empty() {
            "nothing to save".to_owned()
        } else if restart_required.is_empty() {
            "saved and applied".to_owned()
        } else {
            format!(
                "saved; restart Kotodama to apply: {}",
                restart_required.join(", ")
            )
        };
        Ok(SettingsSaved {
            ok: true,
            path: self.path.clone(),
            saved,
            restart_required,
            applied_now: Vec::new(),
            overridden,
            message,
        })
    }

    /// Every key that makes the next start fail with `file` as the settings file. `build` stops
    /// at the first error, so each failing key is set back to its default and the build re-run
    /// until it passes (or stops making progress).
    fn check(&self, file: &toml::Table) -> BTreeMap<String, String> {
        let mut fields = BTreeMap::new();
        let mut candidate = self.next_start(file);
        for _ in 0..=KEYS.len() {
            match candidate.build() {
                Ok(_) => break,
                Err(ConfigError::Invalid { key, reason, .. }) => {
                    if fields.contains_key(key) {
                        break;
                    }
                    fields.insert(key.to_owned(), reason);
                    let default = KEYS
                        .iter()
                        .find(|spec| spec.key == key)
                        .map(|spec| spec.default)
                        .unwrap_or_default();
                    candidate.set_from(key, default, Source::Default);
                }
                Err(other) => {
                    fields.insert("_file".to_owned(), other.to_string());
                    break;
                }
            }
        }
        fields
    }

    /// The raw configuration the next start would build: defaults ← `file` ← every value the
    /// running app took from a layer above the settings file (`--config`, env, flags).
    fn next_start(&self, file: &toml::Table) -> RawConfig {
        let mut next = RawConfig::default();
        for spec in KEYS {
            if let Some(value) = file.get(spec.key) {
                next.set_from(spec.key, toml_text(value), Source::File(self.path.clone()));
            }
        }
        for spec in KEYS {
            if self.is_upper(&self.running.source(spec.key)) {
                let value = self.running.value(spec.key).unwrap_or_default();
                next.set_from(spec.key, value, self.running.source(spec.key));
            }
        }
        next
    }

    fn is_upper(&self, source: &Source) -> bool {
        match source {
            Source::Default => false,
            Source::File(path) => path != &self.path,
            Source::Env | Source::Set => true,
        }
    }

    fn source_name(&self, source: &Source) -> &'static str {
        match source {
            Source::Default => "default",
            Source::File(path) if path == &self.path => "settings",
            Source::File(_) => "config_file",
            Source::Env => "env",
            Source::Set => "flag",
        }
    }

    /// What keeps a value saved in the settings file from taking effect, in words.
    fn override_of(&self, key: &str) -> Option<String> {
        let env = KEYS.iter().find(|spec| spec.key == key)?.env;
        match self.running.source(key) {
            Source::Env => Some(format!("the environment variable {env}")),
            Source::Set => Some("a command-line flag".to_owned()),
            Source::File(path) if path != self.path => {
                Some(format!("the config file {}", path.display()))
            }
            _ => None,
        }
    }
}

/// A JSON value as the raw text of a key; `None` for `null` (remove from the file).
fn json_text(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        Value::Bool(flag) => Ok(Some(flag.to_string())),
        Value::Number(number) => Ok(Some(number.to_string())),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err("expected a list of strings".to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| Some(items.join(","))),
        Value::Object(_) => Err("expected a string, number or boolean".to_owned()),
    }
}

/// A TOML value as raw text, the way `RawConfig::merge_toml_str` reads it.
fn toml_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| item.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// The settings file as a table; a missing file is an empty one.
fn read_table(path: &Path) -> Result<toml::Table, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.parse::<toml::Table>().map_err(|error| {
            format!(
                "{} is not valid TOML ({error}); fix or delete it",
                path.display()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(error) => Err(format!("cannot read {}: {error}", path.display())),
    }
}

/// Replaces `path` atomically with `contents`, readable by its owner only (it may hold keys).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("toml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary)?;
    // A leftover temporary file from a crash may have other permissions; `mode` only applies
    // to files it creates.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(
        b"# Saved by Kotodama's settings page (PUT /settings). Env vars, --config and flags\n\
          # override these values. May hold API keys: keep it private (mode 0600).\n",
    )?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

pub async fn get_settings(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let settings = state.settings.clone();
    let view = tokio::task::spawn_blocking(move || settings.view())
        .await
        .map_err(|error| internal(&error.to_string()))?;
    Ok(Json(view))
}

pub async fn put_settings(State(state): State<AppState>, request: Request) -> Response {
    let changes: Value = match read_json(request.into_body(), state.max_body_bytes).await {
        Ok(changes) => changes,
        Err(error) => return error.into_response(),
    };
    let Value::Object(changes) = changes else {
        return AppError::bad_request(
            ErrorCode::InvalidRequest,
            "expected a JSON object of {\"key\": value}",
        )
        .into_response();
    };
    let settings: Arc<Settings> = state.settings.clone();
    let outcome = tokio::task::spawn_blocking(move || settings.update(&changes)).await;
    match outcome {
        Ok(Ok(saved)) => Json(saved).into_response(),
        Ok(Err(SettingsRefused::Fields(fields))) => {
            let message = match fields.len() {
                1 => "1 setting is invalid; nothing was saved".to_owned(),
                n => format!("{n} settings are invalid; nothing was saved"),
            };
            let body = json!({
                "error": { "code": ErrorCode::InvalidRequest, "message": message },
                "fields": fields,
            });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Ok(Err(SettingsRefused::File(message))) => {
            tracing::error!(%message, "settings not saved");
            AppError::new(
                StatusCode::CONFLICT,
                ErrorCode::InvalidRequest,
                format!("nothing was saved: {message}"),
            )
            .into_response()
        }
        Err(error) => internal(&error.to_string()).into_response(),
    }
}

fn internal(detail: &str) -> AppError {
    tracing::error!(%detail, "settings task failed");
    AppError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::StorageError,
        "the settings could not be handled; see the server log",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn settings(dir: &Path, env: &[(&str, &str)]) -> Settings {
        let mut raw = RawConfig::default();
        raw.merge_env(|name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        });
        Settings::new(dir, raw)
    }

    fn changes(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn every_failing_key_is_named_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), &[]);
        let refused = settings
            .update(&changes(json!({
                "llm_temperature": "9",
                "tts_rate": 7,
                "stm_context_turns": "many",
                "llm_model": "fine",
                "nonsense": 1,
            })))
            .unwrap_err();
        let SettingsRefused::Fields(fields) = refused else {
            panic!("field errors expected")
        };
        let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "llm_temperature",
                "nonsense",
                "stm_context_turns",
                "tts_rate"
            ],
            "each bad key, not only the first; the good one is not blamed"
        );
        assert_eq!(fields["llm_temperature"], "expected 0 to 2");
        assert!(!settings.path().exists(), "a refused change writes nothing");
    }

    #[test]
    fn saved_file_is_private_and_reports_restart_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), &[("LLM_MODEL", "from-env")]);
        let saved = settings
            .update(&changes(
                json!({"llm_model": "qwen", "tts_rate": 1.5, "openai_api_key": "sk-x"}),
            ))
            .unwrap();
        assert_eq!(
            saved.restart_required, saved.saved,
            "nothing is hot: every saved key needs a restart"
        );
        assert!(
            saved.overridden["llm_model"].contains("LLM_MODEL"),
            "the env var that wins is named: {:?}",
            saved.overridden
        );
        let text = std::fs::read_to_string(settings.path()).unwrap();
        assert!(
            text.contains("tts_rate = \"1.5\""),
            "numbers are kept as text: {text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(settings.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "it holds an API key: owner only");
        }
        let view = settings.view();
        let key = |name: &str| {
            view["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|entry| entry["key"] == name)
                .cloned()
                .unwrap()
        };
        assert_eq!(key("openai_api_key")["saved"], "set", "secrets are masked");
        assert_eq!(key("llm_model")["value"], "from-env", "the running value");
        assert_eq!(key("llm_model")["saved"], "qwen", "the saved value");
        let pending: Vec<&str> = view["pendingRestart"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            pending.contains(&"tts_rate") && !pending.contains(&"llm_model"),
            "tts_rate changes at the next start; llm_model stays the env's: {pending:?}"
        );
        assert!(
            view["keys"]
                .as_array()
                .unwrap()
                .iter()
                .all(|entry| entry["key"] != "token" && entry["key"] != "data_dir"),
            "token and data_dir are not edited here"
        );
    }

    #[test]
    fn null_removes_a_key_and_other_keys_survive() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), &[]);
        settings
            .update(&changes(
                json!({"llm_model": "a", "stm_context_turns": "5"}),
            ))
            .unwrap();
        settings
            .update(&changes(json!({"llm_model": null})))
            .unwrap();
        let table = read_table(settings.path()).unwrap();
        assert!(
            table.get("llm_model").is_none(),
            "null goes back to the default"
        );
        assert_eq!(
            table.get("stm_context_turns").map(toml_text).as_deref(),
            Some("5"),
            "keys not in the change stay"
        );
    }
}
