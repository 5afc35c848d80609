//! One desktop shell on the mock runtime over a freshly started server.

use std::time::Duration;

use koto_audio::Player;
use koto_server::config::RawConfig;
use kotodama_desktop::shell::Shell;
use kotodama_desktop::{commands, window};
use serde_json::Value;
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder};
use tauri::webview::InvokeRequest;
use tauri::{App, Manager, Url, WebviewUrl, WebviewWindow, WebviewWindowBuilder};
use tempfile::TempDir;

pub struct Harness {
    pub app: App<MockRuntime>,
    pub window: WebviewWindow<MockRuntime>,
    /// `http://127.0.0.1:<port>`: the server's (and the panel's) origin.
    pub origin: Url,
    _data_dir: TempDir,
}

impl Harness {
    /// A shell over a server whose mock LLM takes `token_ms` per token; no local playback.
    pub fn start(token_ms: u64) -> Harness {
        Harness::with_player(token_ms, None)
    }

    /// As [`Harness::start`], playing the relay's audio on `player`.
    pub fn with_player(token_ms: u64, player: Option<Player>) -> Harness {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let mut raw = RawConfig::default();
        raw.set("bind", "127.0.0.1:0");
        raw.set("data_dir", data_dir.path().to_string_lossy());
        // A tone, not espeak-ng: these tests are about commands, not voices.
        raw.set("tts_provider", "mock");
        raw.set("mock_llm_token_ms", token_ms.to_string());
        let config = raw.build().expect("test config is valid");
        let server = tauri::async_runtime::block_on(koto_server::start(config))
            .expect("the server starts on a free loopback port");
        let shell = Shell::new(server, player);
        let origin = shell.origin().clone();
        let panel_url = shell.panel_url();
        let app = mock_builder()
            .manage(shell)
            .invoke_handler(commands::handler())
            .build(kotodama_desktop::context())
            .expect("the app builds on the mock runtime");
        app.add_capability(window::panel_capability(&origin))
            .expect("the panel capability is valid");
        let window = WebviewWindowBuilder::new(&app, window::MAIN, WebviewUrl::External(panel_url))
            .build()
            .expect("a mock window");
        Harness {
            app,
            window,
            origin,
            _data_dir: data_dir,
        }
    }

    pub fn shell(&self) -> tauri::State<'_, Shell> {
        self.app.state::<Shell>()
    }

    /// Invokes `command` as the page at `page_url` would; `Err` is the rejection's JSON.
    pub fn invoke_from(&self, page_url: &str, command: &str, args: Value) -> Result<Value, Value> {
        let request = InvokeRequest {
            cmd: command.to_owned(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: page_url.parse().expect("page URL"),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_owned(),
        };
        get_ipc_response(&self.window, request)
            .map(|body| body.deserialize::<Value>().expect("JSON answer"))
    }

    /// Invokes `command` from the control panel's page.
    pub fn invoke(&self, command: &str, args: Value) -> Result<Value, Value> {
        let page = format!("{}?token=x", self.origin);
        self.invoke_from(&page, command, args)
    }

    /// Waits (bounded) until `check` holds; for state another task updates.
    pub fn wait_until(&self, what: &str, check: impl Fn(&Harness) -> bool) {
        tauri::async_runtime::block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while !check(self) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out waiting for {what}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let shell = self.app.state::<Shell>();
        tauri::async_runtime::block_on(shell.shutdown());
    }
}
