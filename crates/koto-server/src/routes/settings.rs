//! `GET /settings` and `PUT /settings`: the configuration keys as the control panel edits them,
//! saved to `<data_dir>/kotodama.toml` (mode 0600: it may hold API keys).
//!
//! It validates a change by building the whole configuration the next start would build, and
//! reports every failing key. Then it applies what it can to the running app (`crate::live`):
//! persona, memory window, LLM and voice keys swap the engine's profile for the next turns (a
//! provider that cannot start refuses the change before anything is saved), and the desktop
//! shell applies output device, volume and stop hotkey. Every other key says "restart to apply"
//! and keeps its running value until then, also in a profile rebuilt for a later live change.

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
use crate::live_settings::{Effect, LiveTargets, rebuild_profile, running_after};
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

/// The settings file, the raw configuration the running app uses, and what a save reaches.
#[derive(Debug)]
pub struct Settings {
    path: PathBuf,
    /// What the app started with, updated as keys are applied live. Never held across an
    /// `.await`.
    running: Mutex<RawConfig>,
    live: Option<LiveTargets>,
    /// One change at a time, from reading the file to applying the change (it spans the
    /// awaits of rebuilding a provider).
    change_lock: tokio::sync::Mutex<()>,
}

/// A validated change, not yet written.
#[derive(Debug)]
struct Plan {
    table: toml::Table,
    saved: Vec<String>,
    /// What the next start builds (validated).
    next: RawConfig,
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
    /// Saved keys that take effect only after a restart.
    pub restart_required: Vec<String>,
    /// Saved keys in effect now (turns submitted from now on use them).
    pub applied_now: Vec<String>,
    /// Per key, how it took effect when that is not simply "as asked" (a fallback device, a
    /// hotkey that could not be grabbed, a key only the desktop app uses).
    pub notes: BTreeMap<String, String>,
    /// Saved keys that a higher layer (env, `--config`, a flag) overrides: they will not take
    /// effect while that override stays.
    pub overridden: BTreeMap<String, String>,
    pub message: String,
}

impl Settings {
    /// Settings that are saved for the next start only (tests, tools).
    pub fn new(data_dir: &Path, running: RawConfig) -> Settings {
        Settings {
            path: data_dir.join(SETTINGS_FILE),
            running: Mutex::new(running),
            live: None,
            change_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Settings whose live keys reach `targets` when saved.
    pub fn with_live(mut self, targets: LiveTargets) -> Settings {
        self.live = Some(targets);
        self
    }

    fn has_desktop(&self) -> bool {
        self.desktop().is_some()
    }

    fn running(&self) -> RawConfig {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A key's running value (`""` when unset); for routes that act on the running settings
    /// (setup's connection test uses the running API key).
    pub fn running_value(&self, key: &str) -> Option<String> {
        self.running().value(key).map(str::to_owned)
    }

    /// The desktop shell's hook, when the app runs inside it.
    pub fn desktop(&self) -> Option<&Arc<dyn crate::live_settings::DesktopSettings>> {
        self.live.as_ref().and_then(|live| live.desktop.as_ref())
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
        let running_config = self.running();
        let next = self.next_start(&running_config, &file);
        let desktop = self.desktop();
        let mut keys = Vec::new();
        let mut pending = Vec::new();
        for spec in KEYS {
            if NOT_EDITABLE.iter().any(|(key, _)| *key == spec.key) {
                continue;
            }
            let effect = Effect::of(spec.key);
            let running = running_config.value(spec.key).unwrap_or_default();
            if next.value(spec.key) != Some(running) && self.takes_effect_here(effect) {
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
            let (group, label) = crate::settings_words::words(spec.key);
            keys.push(json!({
                "key": spec.key,
                "group": group,
                "label": label,
                "env": spec.env,
                "doc": spec.doc,
                "default": spec.default,
                "value": shown(running),
                "saved": saved.as_deref().map(shown),
                "source": self.source_name(&running_config.source(spec.key)),
                "overriddenBy": self.override_of(&running_config, spec.key),
                "secret": secret,
                "restartRequired": !effect.is_live(desktop.is_some()),
                "desktopOnly": effect == Effect::Desktop,
                "choices": desktop.as_ref().and_then(|desktop| desktop.choices(spec.key)),
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
    /// next start would build, then writes the file; applies nothing to the running app (see
    /// [`Settings::change`]). On any error nothing is written.
    pub fn update(
        &self,
        changes: &serde_json::Map<String, Value>,
    ) -> Result<SettingsSaved, SettingsRefused> {
        let plan = self.plan(changes)?;
        self.commit(&plan)?;
        Ok(self.report(plan.saved, Vec::new(), BTreeMap::new()))
    }

    /// A PUT: validate, check what the running app must accept (a device that exists, a voice
    /// that starts), write the file, then apply the live keys. On any refusal nothing is written
    /// and nothing changes.
    pub async fn change(
        self: Arc<Self>,
        changes: serde_json::Map<String, Value>,
    ) -> Result<SettingsSaved, SettingsRefused> {
        let _one_change = self.change_lock.lock().await;
        let Some(live) = self.live.clone() else {
            let saver = self.clone();
            return tokio::task::spawn_blocking(move || saver.update(&changes))
                .await
                .map_err(|error| SettingsRefused::File(error.to_string()))?;
        };
        let planner = self.clone();
        let plan = tokio::task::spawn_blocking(move || planner.plan(&changes))
            .await
            .map_err(|error| SettingsRefused::File(error.to_string()))??;

        let running = self.running();
        let changed: Vec<&'static str> = KEYS
            .iter()
            .map(|spec| spec.key)
            .filter(|key| plan.next.value(key) != running.value(key))
            .collect();
        let mut fields = BTreeMap::new();
        // What the running app applies: live keys from the plan, restart-only keys as running.
        let live_config = match running_after(&running, &plan.next).build() {
            Ok(config) => config,
            Err(ConfigError::Invalid { key, reason, .. }) => {
                fields.insert(key.to_owned(), reason);
                return Err(SettingsRefused::Fields(fields));
            }
            Err(other) => return Err(SettingsRefused::File(other.to_string())),
        };
        let desktop_changed: Vec<&'static str> = changed
            .iter()
            .copied()
            .filter(|key| Effect::of(key) == Effect::Desktop)
            .collect();
        if let Some(desktop) = &live.desktop {
            for key in &desktop_changed {
                if let Err(reason) = desktop.check(key, &live_config.desktop) {
                    fields.insert((*key).to_owned(), reason);
                }
            }
        }
        let profile_changed = changed.iter().any(|key| Effect::of(key).is_profile());
        let profile = if profile_changed && fields.is_empty() {
            match rebuild_profile(&live.engine, &live_config, &changed).await {
                Ok(profile) => Some(profile),
                Err(failures) => {
                    for (key, reason) in failures {
                        fields.insert(key.to_owned(), reason);
                    }
                    None
                }
            }
        } else {
            None
        };
        if !fields.is_empty() {
            return Err(SettingsRefused::Fields(fields));
        }
        let committer = self.clone();
        let plan = tokio::task::spawn_blocking(move || committer.commit(&plan).map(|()| plan))
            .await
            .map_err(|error| SettingsRefused::File(error.to_string()))??;

        let mut applied: Vec<&'static str> = Vec::new();
        let mut notes = BTreeMap::new();
        if let Some(profile) = profile {
            live.engine.reconfigure(profile);
            applied.extend(
                changed
                    .iter()
                    .copied()
                    .filter(|key| Effect::of(key).is_profile()),
            );
        }
        match &live.desktop {
            Some(desktop) => {
                for key in desktop_changed {
                    match desktop.apply(key, &live_config.desktop) {
                        Ok(note) => {
                            applied.push(key);
                            if let Some(note) = note {
                                notes.insert(key.to_owned(), note);
                            }
                        }
                        Err(reason) => {
                            tracing::warn!(key, %reason, "saved setting not applied");
                            notes.insert(key.to_owned(), reason);
                        }
                    }
                }
            }
            None => {
                for key in desktop_changed {
                    notes.insert(
                        key.to_owned(),
                        "saved for the desktop app; `kotodama serve` plays no audio and has no hotkey"
                            .to_owned(),
                    );
                }
            }
        }
        {
            let mut running = self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for key in &applied {
                let value = plan.next.value(key).unwrap_or_default().to_owned();
                running.set_from(key, value, plan.next.source(key));
            }
        }
        let applied = applied.into_iter().map(str::to_owned).collect();
        Ok(self.report(plan.saved, applied, notes))
    }

    /// Reads the file, merges `changes` and validates the result; writes nothing.
    fn plan(&self, changes: &serde_json::Map<String, Value>) -> Result<Plan, SettingsRefused> {
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
        let running = self.running();
        fields.extend(self.check(&running, &table));
        if !fields.is_empty() {
            return Err(SettingsRefused::Fields(fields));
        }
        let next = self.next_start(&running, &table);
        next.build().map_err(|error| {
            SettingsRefused::File(format!("the settings do not build: {error}"))
        })?;
        Ok(Plan { table, saved, next })
    }

    fn commit(&self, plan: &Plan) -> Result<(), SettingsRefused> {
        let text = toml::to_string(&plan.table).map_err(|error| {
            SettingsRefused::File(format!("cannot encode the settings: {error}"))
        })?;
        write_private(&self.path, &text)
            .map_err(|error| SettingsRefused::File(format!("cannot write the file: {error}")))
    }

    fn report(
        &self,
        saved: Vec<String>,
        applied_now: Vec<String>,
        notes: BTreeMap<String, String>,
    ) -> SettingsSaved {
        let running = self.running();
        let overridden: BTreeMap<String, String> = saved
            .iter()
            .filter_map(|key| Some((key.clone(), self.override_of(&running, key)?)))
            .collect();
        let desktop = self.has_desktop();
        let restart_required: Vec<String> = saved
            .iter()
            .filter(|key| {
                let effect = Effect::of(key);
                // Without a live target (tests, tools) nothing applies before a restart.
                !(self.live.is_some() && effect.is_live(desktop))
                    && self.takes_effect_here(effect)
                    && !overridden.contains_key(*key)
            })
            .cloned()
            .collect();
        let message = if saved.is_empty() {
            "nothing to save".to_owned()
        } else if restart_required.is_empty() && overridden.is_empty() {
            "saved and applied".to_owned()
        } else {
            let mut message = "saved".to_owned();
            if !restart_required.is_empty() {
                message.push_str("; restart Kotodama to apply: ");
                message.push_str(&restart_required.join(", "));
            }
            // "applied" would be untrue: a higher layer keeps its own value, now and after a
            // restart.
            if !overridden.is_empty() {
                let keys: Vec<&str> = overridden.keys().map(String::as_str).collect();
                message.push_str("; overridden, so not in effect: ");
                message.push_str(&keys.join(", "));
            }
            message
        };
        SettingsSaved {
            ok: true,
            path: self.path.clone(),
            saved,
            restart_required,
            applied_now,
            notes,
            overridden,
            message,
        }
    }

    /// Whether a key of this kind does anything in this process at all (desktop keys do
    /// nothing in `kotodama serve`).
    fn takes_effect_here(&self, effect: Effect) -> bool {
        effect != Effect::Desktop || self.live.is_none() || self.has_desktop()
    }

    /// Every key that makes the next start fail with `file` as the settings file. `build` stops
    /// at the first error, so each failing key is set back to its default and the build re-run
    /// until it passes (or stops making progress).
    fn check(&self, running: &RawConfig, file: &toml::Table) -> BTreeMap<String, String> {
        let mut fields = BTreeMap::new();
        let mut candidate = self.next_start(running, file);
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
    fn next_start(&self, running: &RawConfig, file: &toml::Table) -> RawConfig {
        let mut next = RawConfig::default();
        for spec in KEYS {
            if let Some(value) = file.get(spec.key) {
                next.set_from(spec.key, toml_text(value), Source::File(self.path.clone()));
            }
        }
        for spec in KEYS {
            if self.is_upper(&running.source(spec.key)) {
                let value = running.value(spec.key).unwrap_or_default();
                next.set_from(spec.key, value, running.source(spec.key));
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
    fn override_of(&self, running: &RawConfig, key: &str) -> Option<String> {
        let env = KEYS.iter().find(|spec| spec.key == key)?.env;
        match running.source(key) {
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
    match settings.change(changes).await {
        Ok(saved) => Json(saved).into_response(),
        Err(SettingsRefused::Fields(fields)) => {
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
        Err(SettingsRefused::File(message)) => {
            tracing::error!(%message, "settings not saved");
            AppError::new(
                StatusCode::CONFLICT,
                ErrorCode::InvalidRequest,
                format!("nothing was saved: {message}"),
            )
            .into_response()
        }
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
            saved.restart_required,
            ["openai_api_key", "tts_rate"],
            "without a running app nothing applies before a restart; the env's llm_model \
             will not apply even then"
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
