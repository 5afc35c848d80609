//! `GET /settings` and `PUT /settings`: the configuration keys as the control panel edits them,
//! saved to `<data_dir>/kotodama.toml` (mode 0600: it may hold API keys).
//!
//! It never saves a file the app could not start with: a change is validated by building the
//! whole configuration the next start would build (under today's env vars and flags) and the
//! file on its own (an override must not hide a broken value), and a new `bind` must be free to
//! listen on. Every failing key is reported at once, as `{code, key, message}` sentences the
//! panel shows as they are. Then it applies what it can to the running app (`crate::live`):
//! persona, memory window, LLM and voice keys swap the engine's profile for the next turns (a
//! provider that cannot start refuses the change before anything is saved), the recognizer is
//! rebuilt, the upload limits apply to the next upload, the microphone's keys reach its running
//! pipeline (`VoiceIn::reconfigure`), and the desktop shell applies output device, volume and
//! stop hotkey. Every other key says "restart to apply"
//! and keeps its running value until then, also in a profile rebuilt for a later live change.

use std::collections::BTreeMap;
use std::net::SocketAddr;
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
use crate::config::{
    ConfigError, KEYS, RawConfig, SETTINGS_FILE, Source, io_reason, is_secret, parse_bind,
};
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
    /// The address the running app listens on: saving it again is fine, it is ours.
    bound: Option<SocketAddr>,
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
    Fields(BTreeMap<String, Refusal>),
    /// The file cannot be read, parsed or written: a sentence.
    File {
        code: &'static str,
        message: String,
    },
}

/// Why one key of a change is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `invalid_value`, `unknown_setting`, `not_editable`, `port_in_use`,
    /// `address_unavailable`, `cannot_apply`.
    pub code: &'static str,
    /// What is accepted, short (`expected 0 to 2`): the `fields` map.
    pub reason: String,
    /// A sentence about the setting, shown as it is: the `errors` list.
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A value the configuration refuses, said about the value typed.
    fn invalid(key: &str, value: &str, reason: &str) -> Refusal {
        let message = if value.trim().is_empty() {
            format!("{key} cannot be empty: {reason}.")
        } else {
            format!("{key} cannot be {value:?}: {reason}.")
        };
        Refusal::new("invalid_value", reason, message)
    }

    fn from_config(error: &ConfigError, raw: &RawConfig, settings_path: &Path) -> Refusal {
        match error {
            ConfigError::Invalid {
                key,
                reason,
                origin,
                ..
            } if *origin == Source::File(settings_path.to_owned())
                || *origin == Source::Default =>
            {
                let value = if is_secret(key) {
                    "***"
                } else {
                    raw.value(key).unwrap_or_default()
                };
                Refusal::invalid(key, value, reason)
            }
            // The value came from an env var, flag or --config file: the sentence says so.
            ConfigError::Invalid { reason, .. } => {
                Refusal::new("invalid_value", reason.clone(), error.to_string())
            }
            other => Refusal::new("invalid_value", other.to_string(), other.to_string()),
        }
    }
}

impl SettingsRefused {
    fn file(code: &'static str, message: impl Into<String>) -> SettingsRefused {
        SettingsRefused::File {
            code,
            message: message.into(),
        }
    }

    /// A background task that ended without an answer (it panicked or was cancelled).
    fn lost(error: &tokio::task::JoinError) -> SettingsRefused {
        tracing::error!(%error, "settings task failed");
        SettingsRefused::file(
            "internal",
            "The settings could not be handled (see the log); nothing was saved.",
        )
    }
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
            bound: None,
            change_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Settings whose live keys reach `targets` when saved.
    pub fn with_live(mut self, targets: LiveTargets) -> Settings {
        self.live = Some(targets);
        self
    }

    /// The address the running app is bound to (port availability is checked against it).
    pub fn with_bound(mut self, addr: SocketAddr) -> Settings {
        self.bound = Some(addr);
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
            Err(SettingsRefused::File { message, .. }) => (toml::Table::new(), Some(message)),
            Err(SettingsRefused::Fields(_)) => (toml::Table::new(), None),
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
                "inEffect": self.in_effect(&running_config, spec.key, saved.as_deref()),
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
                .map_err(|error| SettingsRefused::lost(&error))?;
        };
        let planner = self.clone();
        let plan = tokio::task::spawn_blocking(move || planner.plan(&changes))
            .await
            .map_err(|error| SettingsRefused::lost(&error))??;

        let running = self.running();
        let changed: Vec<&'static str> = KEYS
            .iter()
            .map(|spec| spec.key)
            .filter(|key| plan.next.value(key) != running.value(key))
            .collect();
        let mut fields = BTreeMap::new();
        // What the running app applies: live keys from the plan, restart-only keys as running.
        let after = running_after(&running, &plan.next);
        let live_config = match after.build() {
            Ok(config) => config,
            Err(error) => {
                let key = error.key().unwrap_or("_file");
                fields.insert(
                    key.to_owned(),
                    Refusal::from_config(&error, &after, &self.path),
                );
                return Err(SettingsRefused::Fields(fields));
            }
        };
        let desktop_changed: Vec<&'static str> = changed
            .iter()
            .copied()
            .filter(|key| Effect::of(key) == Effect::Desktop)
            .collect();
        if let Some(desktop) = &live.desktop {
            for key in &desktop_changed {
                if let Err(reason) = desktop.check(key, &live_config.desktop) {
                    let message = format!("{key} cannot be used here: {reason}.");
                    fields.insert(
                        (*key).to_owned(),
                        Refusal::new("cannot_apply", reason, message),
                    );
                }
            }
        }
        let profile_changed = changed.iter().any(|key| Effect::of(key).is_profile());
        let profile = if profile_changed && fields.is_empty() {
            match rebuild_profile(&live.engine, &live_config, &changed).await {
                Ok(profile) => Some(profile),
                Err(failures) => {
                    for (key, reason) in failures {
                        let message = format!("{key} cannot be used now: {reason}.");
                        fields.insert(
                            key.to_owned(),
                            Refusal::new("cannot_apply", reason, message),
                        );
                    }
                    None
                }
            }
        } else {
            None
        };
        // A new recognizer is built before anything is saved: one that cannot start refuses
        // the change, and the running one stays.
        let asr_changed: Vec<&'static str> = changed
            .iter()
            .copied()
            .filter(|key| Effect::of(key) == Effect::Asr)
            .collect();
        let asr = if asr_changed.is_empty() || !fields.is_empty() {
            None
        } else {
            match crate::providers::build_asr(&live_config.asr) {
                Ok(asr) => Some(asr),
                Err(error) => {
                    let reason = error.to_string();
                    for key in &asr_changed {
                        let message = format!("{key} cannot be used now: {reason}.");
                        fields.insert(
                            (*key).to_owned(),
                            Refusal::new("cannot_apply", reason.clone(), message),
                        );
                    }
                    None
                }
            }
        };
        if !fields.is_empty() {
            return Err(SettingsRefused::Fields(fields));
        }
        let committer = self.clone();
        let plan = tokio::task::spawn_blocking(move || committer.commit(&plan).map(|()| plan))
            .await
            .map_err(|error| SettingsRefused::lost(&error))??;

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
        if let Some(asr) = asr {
            live.asr.replace(asr);
            applied.extend(asr_changed);
        }
        let uploads_changed = changed_with(&changed, Effect::Uploads);
        if !uploads_changed.is_empty() {
            live.asr.set_limits(live_config.asr.limits);
            applied.extend(uploads_changed);
        }
        let mic_changed = changed_with(&changed, Effect::Mic);
        if !mic_changed.is_empty() {
            apply_mic(&live, &live_config, &mic_changed, &mut applied, &mut notes).await;
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

    /// Reads the file, merges `changes` and validates the result; writes nothing. The file is
    /// checked twice: as the next start reads it (under today's env vars and flags), and on its
    /// own, so a value hidden by an override (`--bind`) can never be saved broken. A new `bind`
    /// must also be free to listen on.
    fn plan(&self, changes: &serde_json::Map<String, Value>) -> Result<Plan, SettingsRefused> {
        let mut table = read_table(&self.path)?;
        let mut fields = BTreeMap::new();
        let mut saved = Vec::new();
        for (name, value) in changes {
            let Some(spec) = KEYS.iter().find(|spec| spec.key == name.as_str()) else {
                let message = format!("Kotodama has no setting called {name:?}.");
                fields.insert(
                    name.clone(),
                    Refusal::new("unknown_setting", "unknown setting", message),
                );
                continue;
            };
            if let Some((_, why)) = NOT_EDITABLE.iter().find(|(key, _)| *key == spec.key) {
                let message = format!("{name} cannot be changed here: {why}.");
                fields.insert(
                    name.clone(),
                    Refusal::new("not_editable", format!("not editable here: {why}"), message),
                );
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
                    let message =
                        format!("{name} must be {}.", reason.trim_start_matches("expected "));
                    fields.insert(name.clone(), Refusal::new("invalid_value", reason, message));
                    continue;
                }
            }
            saved.push(spec.key.to_owned());
        }
        let running = self.running();
        let next = self.next_start(&running, &table);
        let alone = self.file_alone(&table);
        for candidate in [&next, &alone] {
            for (key, refusal) in self.check(candidate) {
                fields.entry(key).or_insert(refusal);
            }
        }
        if saved.iter().any(|key| key == "bind")
            && !fields.contains_key("bind")
            && let Ok(addr) = parse_bind(alone.value("bind").unwrap_or_default())
            && let Err(refusal) = self.probe(addr)
        {
            fields.insert("bind".to_owned(), refusal);
        }
        if !fields.is_empty() {
            return Err(SettingsRefused::Fields(fields));
        }
        Ok(Plan { table, saved, next })
    }

    /// Whether the next start could listen on `addr`: free, or the one this app holds.
    fn probe(&self, addr: SocketAddr) -> Result<(), Refusal> {
        let ours = self
            .bound
            .is_some_and(|bound| bound.port() == addr.port() && bound.port() != 0);
        if addr.port() == 0 || ours {
            return Ok(());
        }
        let error = match std::net::TcpListener::bind(addr) {
            Ok(_free) => return Ok(()),
            Err(error) => error,
        };
        use std::io::ErrorKind;
        let (code, reason) = match error.kind() {
            ErrorKind::AddrInUse => (
                "port_in_use",
                format!("port {} is already used by another program", addr.port()),
            ),
            ErrorKind::AddrNotAvailable => (
                "address_unavailable",
                format!("{} is not an address of this computer", addr.ip()),
            ),
            ErrorKind::PermissionDenied => (
                "address_unavailable",
                format!(
                    "port {} needs administrator rights; use a port from 1024 to 65535",
                    addr.port()
                ),
            ),
            _ => (
                "address_unavailable",
                format!("Kotodama could not listen there ({})", io_reason(&error)),
            ),
        };
        let message = format!("bind cannot be {:?}: {reason}.", addr.to_string());
        Err(Refusal::new(code, reason, message))
    }

    fn commit(&self, plan: &Plan) -> Result<(), SettingsRefused> {
        let text = toml::to_string(&plan.table).map_err(|error| {
            tracing::error!(%error, "cannot encode the settings");
            SettingsRefused::file(
                "internal",
                "The settings could not be encoded (see the log); nothing was saved.",
            )
        })?;
        let contents = format!("{SETTINGS_HEADER}{text}");
        crate::platform::write_owner_only(&self.path, contents.as_bytes()).map_err(|error| {
            let folder = self.path.parent().unwrap_or(&self.path);
            SettingsRefused::file(
                "file_unwritable",
                format!(
                    "Kotodama could not save your settings in {} ({}). Nothing changed: the app keeps running with its current settings. Make the folder writable (not read-only, not full) and save again.",
                    folder.display(),
                    io_reason(&error)
                ),
            )
        })
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

    /// Every key that makes `candidate` fail to build. `build` stops at the first error, so
    /// each failing key is set back to its default and the build re-run until it passes (or
    /// stops making progress).
    fn check(&self, candidate: &RawConfig) -> BTreeMap<String, Refusal> {
        let mut fields = BTreeMap::new();
        let mut candidate = candidate.clone();
        for _ in 0..=KEYS.len() {
            let error = match candidate.build() {
                Ok(_) => break,
                Err(error) => error,
            };
            let Some(key) = error.key() else {
                fields.insert(
                    "_file".to_owned(),
                    Refusal::from_config(&error, &candidate, &self.path),
                );
                break;
            };
            if fields.contains_key(key) {
                break;
            }
            fields.insert(
                key.to_owned(),
                Refusal::from_config(&error, &candidate, &self.path),
            );
            let default = KEYS
                .iter()
                .find(|spec| spec.key == key)
                .map(|spec| spec.default)
                .unwrap_or_default();
            candidate.set_from(key, default, Source::Default);
        }
        fields
    }

    /// The settings file on its own: defaults ← `file`, what a start without any env var or
    /// flag builds.
    fn file_alone(&self, file: &toml::Table) -> RawConfig {
        let mut alone = RawConfig::default();
        for spec in KEYS {
            if let Some(value) = file.get(spec.key) {
                alone.set_from(spec.key, toml_text(value), Source::File(self.path.clone()));
            }
        }
        alone
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

    /// Which value is in effect and why, when the saved one is not (an override, or a restart
    /// not done yet): a sentence for the form.
    fn in_effect(&self, running: &RawConfig, key: &str, saved: Option<&str>) -> Option<String> {
        let value = running.value(key).unwrap_or_default();
        let shown = |text: &str| {
            if is_secret(key) && !text.is_empty() {
                "a key".to_owned()
            } else {
                format!("{text:?}")
            }
        };
        if let Some(by) = self.override_of(running, key) {
            let saved = saved
                .map(|saved| {
                    format!(
                        "; the saved {} applies when Kotodama starts without it",
                        shown(saved)
                    )
                })
                .unwrap_or_default();
            return Some(format!("In effect: {} from {by}{saved}.", shown(value)));
        }
        match saved {
            Some(saved) if saved != value && !Effect::of(key).is_live(self.has_desktop()) => {
                Some(format!(
                    "In effect: {} until Kotodama restarts; then the saved {}.",
                    shown(value),
                    shown(saved)
                ))
            }
            _ => None,
        }
    }

    /// What keeps a value saved in the settings file from taking effect, in words.
    fn override_of(&self, running: &RawConfig, key: &str) -> Option<String> {
        let env = KEYS.iter().find(|spec| spec.key == key)?.env;
        match running.source(key) {
            Source::Env => Some(format!("the environment variable {env}")),
            Source::Set => Some(match key {
                "playback" => "the command-line flag --no-playback".to_owned(),
                "bind" | "data_dir" | "stop_hotkey" => {
                    format!("the command-line flag --{}", key.replace('_', "-"))
                }
                _ => "the program that started Kotodama".to_owned(),
            }),
            Source::File(path) if path != self.path => {
                Some(format!("the config file {}", path.display()))
            }
            _ => None,
        }
    }
}

/// A JSON value as the raw text of a key; `None` for `null` (remove from the file).
/// The keys among `changed` that take effect as `effect`.
fn changed_with(changed: &[&'static str], effect: Effect) -> Vec<&'static str> {
    changed
        .iter()
        .copied()
        .filter(|key| Effect::of(key) == effect)
        .collect()
}

/// The microphone's keys to its running pipeline. A device that cannot be opened is not a
/// refusal (as at start: a warning, the app keeps working with text, the device is tried again
/// by itself), so it is said in `notes`.
async fn apply_mic(
    live: &LiveTargets,
    config: &crate::config::Config,
    mic_changed: &[&'static str],
    applied: &mut Vec<&'static str>,
    notes: &mut BTreeMap<String, String>,
) {
    match live.voice.reconfigure(&config.voice).await {
        Ok(warning) => {
            applied.extend(mic_changed);
            if let Some(warning) = warning {
                notes.insert("mic_device".to_owned(), warning);
            }
        }
        Err(error) => {
            tracing::warn!(%error, "saved voice settings not applied");
            for key in mic_changed {
                notes.insert((*key).to_owned(), error.to_string());
            }
        }
    }
}

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
        toml::Value::Array(items) if items.iter().any(toml::Value::is_table) => {
            serde_json::to_string(items).unwrap_or_default()
        }
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

/// The first line of every saved settings file.
const SETTINGS_HEADER: &str = "# Saved by Kotodama's settings page (PUT /settings). Env vars, --config and flags\n\
     # override these values. May hold API keys: keep it private (mode 0600).\n";

/// The settings file as a table; a missing file is an empty one.
fn read_table(path: &Path) -> Result<toml::Table, SettingsRefused> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.parse::<toml::Table>().map_err(|error| {
            let error = ConfigError::toml(path, &text, &error);
            SettingsRefused::file("file_invalid", error.to_string())
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(error) => Err(SettingsRefused::file(
            "file_unreadable",
            format!(
                "Kotodama cannot read the settings file {} ({}); nothing was saved.",
                path.display(),
                io_reason(&error)
            ),
        )),
    }
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
            let errors: Vec<Value> = fields
                .iter()
                .map(|(key, refusal)| {
                    let key = (key != "_file").then_some(key);
                    json!({"code": refusal.code, "key": key, "message": refusal.message})
                })
                .collect();
            let reasons: BTreeMap<&String, &String> = fields
                .iter()
                .map(|(key, refusal)| (key, &refusal.reason))
                .collect();
            let body = json!({
                "error": { "code": ErrorCode::InvalidRequest, "message": message },
                "fields": reasons,
                "errors": errors,
            });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        Err(SettingsRefused::File { code, message }) => {
            tracing::error!(%message, "settings not saved");
            let body = json!({
                "error": { "code": ErrorCode::InvalidRequest, "message": message },
                "errors": [{"code": code, "key": null, "message": message}],
            });
            (StatusCode::CONFLICT, Json(body)).into_response()
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

    pub(super) fn settings(dir: &Path, env: &[(&str, &str)]) -> Settings {
        let mut raw = RawConfig::default();
        raw.merge_env(|name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        });
        Settings::new(dir, raw)
    }

    pub(super) fn changes(value: Value) -> serde_json::Map<String, Value> {
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
        assert_eq!(fields["llm_temperature"].reason, "expected 0 to 2");
        assert_eq!(
            fields["llm_temperature"].message, "llm_temperature cannot be \"9\": expected 0 to 2.",
            "a sentence about the value typed"
        );
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

    #[test]
    fn a_port_typed_wrong_is_a_sentence_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), &[("KOTODAMA_BIND", "127.0.0.1:0")]);
        let SettingsRefused::Fields(fields) = settings
            .update(&changes(json!({"bind": "127.0.0.1:8x00"})))
            .unwrap_err()
        else {
            panic!("a field error expected")
        };
        assert_eq!(
            fields["bind"].message,
            "bind cannot be \"127.0.0.1:8x00\": expected an address and a port, such as \
             127.0.0.1:8000 (the port must be a number from 1 to 65535).",
            "hidden by KOTODAMA_BIND, and still checked as the next start without it reads it"
        );
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::tests::{changes, settings};
    use super::*;
    use crate::config::Config;

    /// What a person or a script might type into any field.
    fn garbage() -> impl Strategy<Value = Value> {
        prop_oneof![
            ".{0,24}".prop_map(Value::String),
            "[0-9:.a-z -]{0,16}".prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|n| json!(n)),
            any::<bool>().prop_map(Value::Bool),
            prop::sample::select(vec![
                json!(""),
                json!(" "),
                json!("nonsense"),
                json!("127.0.0.1:99999"),
                json!("-1"),
                json!("1e300"),
                json!("NaN"),
                json!("= ="),
                json!("\"quoted\""),
                json!("[1, 2"),
                json!("zh=,=cmn"),
                json!(["a", "b"]),
                json!([1]),
                json!({"nested": 1}),
                Value::Null,
            ]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        /// Driven by [`KEYS`]: garbage in any field is either saved as a file the next start
        /// can use — with the env's override and without it — or refused naming that field in
        /// a sentence, with the file left as it was.
        #[test]
        fn garbage_in_any_field_is_saved_startable_or_refused_naming_it(
            index in any::<Index>(),
            value in garbage(),
        ) {
            let spec = index.get(KEYS);
            let dir = tempfile::tempdir().unwrap();
            let settings = settings(dir.path(), &[("KOTODAMA_BIND", "127.0.0.1:0")]);
            let before = "llm_model = \"kept\"\n";
            std::fs::write(settings.path(), before).unwrap();
            let data_dir = [("data_dir", dir.path().to_string_lossy().into_owned())];
            match settings.update(&changes(json!({ spec.key: value.clone() }))) {
                Ok(_) => {
                    let with_override = [
                        data_dir[0].clone(),
                        ("bind", "127.0.0.1:0".to_owned()),
                    ];
                    for flags in [&data_dir[..], &with_override[..]] {
                        let loaded = Config::load_with(None, flags, |_: &str| None);
                        prop_assert!(
                            loaded.is_ok(),
                            "{} = {:?} was saved but the next start fails: {:?}",
                            spec.key, value, loaded.err()
                        );
                    }
                }
                Err(SettingsRefused::Fields(fields)) => {
                    let refusal = fields.get(spec.key);
                    prop_assert!(
                        refusal.is_some(),
                        "{} = {:?}: refused without naming it: {:?}", spec.key, value, fields
                    );
                    let message = &refusal.unwrap().message;
                    prop_assert!(
                        message.contains(spec.key) && message.ends_with('.'),
                        "{} = {:?}: a sentence naming the setting: {}", spec.key, value, message
                    );
                    for raw in ["invalid socket address", "invalid digit", "TOML parse error"] {
                        prop_assert!(!message.contains(raw), "{}", message);
                    }
                    prop_assert_eq!(
                        std::fs::read_to_string(settings.path()).unwrap(),
                        before,
                        "a refused change leaves the file as it was"
                    );
                }
                Err(SettingsRefused::File { code, message }) => {
                    prop_assert!(false, "{} = {:?}: a file error {}: {}", spec.key, value, code, message);
                }
            }
        }
    }
}
