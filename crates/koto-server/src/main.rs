//! The `kotodama` binary: `serve` (headless app) and `bench` (latency benchmark).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use koto_server::config::Config;
use koto_server::recovery::{self, StartProblem};

mod token_cli;

/// What the ready line says about audio: `kotodama serve` plays nothing itself (the panel or
/// the OBS overlay can).
const HEADLESS_AUDIO: &str = "none (headless)";

#[derive(Debug, Parser)]
#[command(
    name = "kotodama",
    version,
    about = "An AI co-host for live streams that answers out loud and stops when told."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine and its HTTP/WebSocket server without a window.
    Serve {
        /// Address to listen on (KOTODAMA_BIND); loopback unless you mean it.
        #[arg(long)]
        bind: Option<String>,
        /// Where the database and token live (KOTODAMA_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A TOML config file; environment variables override it, and it overrides the settings
        /// saved in <data-dir>/kotodama.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Start with the default settings: <data-dir>/kotodama.toml is set aside (renamed to
        /// kotodama.toml.bad) first.
        #[arg(long, conflicts_with = "restore_settings")]
        reset_settings: bool,
        /// Start with the settings that last worked (kotodama.toml.last-good, kept after every
        /// successful start); the current file is set aside as kotodama.toml.bad.
        #[arg(long)]
        restore_settings: bool,
    },
    /// Run event workers (LTM, analytics) against Redis, apart from the app (needs REDIS_URL and
    /// the app's database).
    Worker {
        /// Consumer groups to run (ltm-workers, analytics-workers); repeat the flag. Default: both.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Where the app's database lives (KOTODAMA_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A TOML config file; environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The access token: `kotodama token rotate` replaces it with a new one.
    Token {
        #[command(subcommand)]
        action: token_cli::TokenAction,
    },
    /// Measure TTFT and engine overhead against a loopback fake LLM; prints p50/p95/p99.
    #[cfg(feature = "bench")]
    Bench(Box<koto_server::bench::BenchArgs>),
    /// A live session compressed in time: random inputs, barge-ins on every stop path,
    /// settings changes, clients joining and leaving; reports faults, RSS, fds and delivery.
    #[cfg(feature = "bench")]
    Soak(Box<koto_server::bench::soak::SoakArgs>),
    /// Crash durability: SIGKILL `kotodama serve` at random points, restart, and count what
    /// was lost (committed turns, events), rows left open and the database's integrity.
    #[cfg(feature = "bench")]
    Crash(Box<koto_server::bench::crash::CrashArgs>),
    /// Not in this build: the benchmark needs `--features bench` (its fakes stay out of the
    /// binary streamers run).
    #[cfg(not(feature = "bench"))]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kotodama: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve {
            bind,
            data_dir,
            config,
            reset_settings,
            restore_settings,
        } => {
            let way_back = match (reset_settings, restore_settings) {
                (true, _) => Some(WayBack::Defaults),
                (_, true) => Some(WayBack::LastGood),
                _ => None,
            };
            runtime.block_on(serve(bind, data_dir, config, way_back))
        }
        Command::Worker {
            groups,
            data_dir,
            config,
        } => runtime.block_on(worker(groups, data_dir, config)),
        Command::Token { action } => token_cli::run(action),
        #[cfg(feature = "bench")]
        Command::Bench(args) => runtime.block_on(koto_server::bench::run(*args)),
        #[cfg(feature = "bench")]
        Command::Soak(args) => runtime.block_on(koto_server::bench::soak::run(*args)),
        #[cfg(feature = "bench")]
        Command::Crash(args) => runtime.block_on(koto_server::bench::crash::run(*args)),
        #[cfg(not(feature = "bench"))]
        Command::Bench { .. } => Err(anyhow::anyhow!(
            "this build has no benchmark; build it with: cargo build --release -p koto-server --features bench"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kotodama: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// A way out of a start that failed on its saved settings.
#[derive(Debug, Clone, Copy)]
enum WayBack {
    Defaults,
    LastGood,
}

async fn serve(
    bind: Option<String>,
    data_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
    way_back: Option<WayBack>,
) -> anyhow::Result<()> {
    let mut flags = Vec::new();
    if let Some(bind) = bind {
        flags.push(("bind", bind));
    }
    if let Some(dir) = data_dir {
        flags.push(("data_dir", dir.to_string_lossy().into_owned()));
    }
    let env = |name: &str| std::env::var(name).ok();
    let settings_file = Config::settings_file_for(config_file.as_deref(), &flags, env);
    if let Some(way_back) = way_back {
        let Some(file) = &settings_file else {
            anyhow::bail!(
                "the data folder cannot be found, so there are no saved settings to set aside"
            );
        };
        let recovered = match way_back {
            WayBack::Defaults => recovery::reset_to_defaults(file)?,
            WayBack::LastGood => recovery::restore_last_good(file)?,
        };
        eprintln!("kotodama: {}", recovered.message);
    }
    // defaults ← <data_dir>/kotodama.toml (saved by the settings page) ← --config ← env ← flags.
    let config = match Config::load_with(config_file.as_deref(), &flags, env) {
        Ok((config, _)) => config,
        Err(error) => {
            let problem = StartProblem::from_config(&error, settings_file.as_deref());
            return Err(explain(&problem));
        }
    };
    koto_server::logging::init(config.log_format);
    let server = match koto_server::start(config.clone()).await {
        Ok(server) => server,
        Err(error) => return Err(explain(&StartProblem::from_start(&error, &config))),
    };
    // Signal handlers are registered before the ready line, so a SIGTERM right after it is
    // already a clean shutdown.
    let signals = koto_server::platform::ShutdownSignals::register()?;
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        signals.wait().await;
        shutdown.cancel();
    });
    println!("{}", server.ready_line("kotodama", HEADLESS_AUDIO));
    server.wait().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// A failed start for the terminal: the sentence, what to do, and the ways out that would help.
fn explain(problem: &StartProblem) -> anyhow::Error {
    let mut text = format!("{}\n{}", problem.message, problem.hint);
    if problem.can_reset {
        text.push_str("\n  To start with the default settings: kotodama serve --reset-settings");
    }
    if problem.can_restore {
        text.push_str(
            "\n  To restore the settings that last worked: kotodama serve --restore-settings",
        );
    }
    anyhow::anyhow!(text)
}

async fn worker(
    groups: Vec<String>,
    data_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let flags: Vec<(&'static str, String)> = data_dir
        .map(|dir| ("data_dir", dir.to_string_lossy().into_owned()))
        .into_iter()
        .collect();
    let (config, _) = Config::load_with(config_file.as_deref(), &flags, |name| {
        std::env::var(name).ok()
    })?;
    koto_server::logging::init(config.log_format);
    let db_path = config.data_dir.join("kotodama.sqlite3");
    anyhow::ensure!(
        db_path.exists(),
        "no Kotodama database at {} (run the app once, or pass --data-dir)",
        db_path.display()
    );
    let store = koto_store::Store::open_shared(&db_path)?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let signals = koto_server::platform::ShutdownSignals::register()?;
    tokio::spawn(async move {
        signals.wait().await;
        stop.cancel();
    });
    println!(
        "kotodama worker: groups {groups:?} on {}",
        db_path.display()
    );
    koto_events::run_standalone_worker(store, config.events, groups, shutdown).await?;
    Ok(())
}
