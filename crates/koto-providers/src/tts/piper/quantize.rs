//! The 8-bit copy of a Piper voice for the in-process runtime (`PIPER_QUANTIZE=int8`).
//!
//! ONNX Runtime's own dynamic quantizer (`onnxruntime.quantization.quantize_dynamic`, 8-bit
//! weights, float activations) is run once per voice by the configured Python, into the cache
//! directory, beside a copy of the voice's `.onnx.json`. Measured on two cores with the joe
//! voice: 63 MB → 19 MB on disk, the process 109 → 70 MB after a long sentence, a first clause
//! in ~100–120 ms against ~100–150 ms, and faster-whisper transcribed both versions' audio to the
//! same words. A copy is reused while it is newer than its voice; it is made in a work folder of
//! the cache and renamed into place, so a crash never leaves half a model behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use koto_core::ProviderError;
use tokio::process::Command;

use super::{PiperConfig, VoiceFile};

/// Quantizing a medium voice takes ~3 s; a busy machine gets ten times that.
const QUANTIZE_TIMEOUT: Duration = Duration::from_secs(120);

/// Source and target are arguments; exit 3 = the quantizer (the `onnx` package) is missing.
const QUANTIZE: &str = r#"
import sys
try:
    from onnxruntime.quantization import QuantType, quantize_dynamic
except ImportError as error:
    sys.stderr.write("kotodama-piper-quantize: %s\n" % error)
    sys.exit(3)
quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QUInt8)
"#;

/// Where the copy of `file` lives: `<cache>/<stem>.int8.onnx` (next to the voice without a cache).
pub fn copy_path(config: &PiperConfig, file: &VoiceFile) -> PathBuf {
    let stem = file.model.file_stem().map_or_else(
        || "voice".into(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let directory = config
        .cache_dir
        .clone()
        .or_else(|| file.model.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    directory.join(format!("{stem}.int8.onnx"))
}

/// The 8-bit copy of `file`, made now if there is none newer than the voice. One at a time per
/// process (voices start concurrently; the second finds the first's copy).
pub async fn int8_copy(config: &PiperConfig, file: &VoiceFile) -> Result<PathBuf, ProviderError> {
    static MAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let target = copy_path(config, file);
    if is_fresh(&target, &file.model).await {
        return Ok(target);
    }
    let _making = MAKING.lock().await;
    if is_fresh(&target, &file.model).await {
        return Ok(target);
    }
    let Some(directory) = target.parent().map(Path::to_path_buf) else {
        return Err(failed(&file.model, "the copy has no directory"));
    };
    tokio::fs::create_dir_all(&directory)
        .await
        .map_err(|error| {
            failed(
                &file.model,
                &format!("cannot create {directory:?}: {error}"),
            )
        })?;
    // The quantizer writes a shape-inferred copy of its input beside the input: it works on a
    // copy of the voice in the cache, so the voice's own folder may be read-only.
    let work = directory.join(format!(".quantizing-{}", std::process::id()));
    let _ = tokio::fs::remove_dir_all(&work).await;
    tokio::fs::create_dir_all(&work)
        .await
        .map_err(|error| failed(&file.model, &format!("cannot create {work:?}: {error}")))?;
    let made = quantize_into(config, file, &work, &target).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    made?;
    Ok(target)
}

async fn quantize_into(
    config: &PiperConfig,
    file: &VoiceFile,
    work: &Path,
    target: &Path,
) -> Result<(), ProviderError> {
    let source = work.join("voice.onnx");
    let partial = work.join("voice.int8.onnx");
    tokio::fs::copy(&file.model, &source)
        .await
        .map_err(|error| failed(&file.model, &format!("cannot copy it to {work:?}: {error}")))?;
    let started = std::time::Instant::now();
    let output = run_python(
        config,
        QUANTIZE,
        &[source.as_os_str(), partial.as_os_str()],
        QUANTIZE_TIMEOUT,
    )
    .await
    .map_err(|why| failed(&file.model, &why))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let why = match output.status.code() {
            Some(3) => format!(
                "the quantizer needs the `onnx` package (`{} -m pip install onnx`; \
                 scripts/test.sh installs it)",
                config.python.display()
            ),
            _ => format!(
                "the quantizer failed ({}): {}",
                output.status,
                tail(&stderr)
            ),
        };
        return Err(failed(&file.model, &why));
    }
    // The config first, then the model by rename: a model in the cache always has its config.
    let config_copy = PathBuf::from(format!("{}.json", target.display()));
    tokio::fs::copy(&file.config_path, &config_copy)
        .await
        .map_err(|error| failed(&file.model, &format!("cannot copy its config: {error}")))?;
    tokio::fs::rename(&partial, target)
        .await
        .map_err(|error| failed(&file.model, &format!("cannot keep {target:?}: {error}")))?;
    tracing::info!(
        voice = %file.model.display(),
        copy = %target.display(),
        took_ms = started.elapsed().as_millis() as u64,
        "made the 8-bit copy of the Piper voice (once)"
    );
    Ok(())
}

/// Runs `script` on the configured Python with `args`, its output kept, killed after `timeout`.
pub(super) async fn run_python(
    config: &PiperConfig,
    script: &str,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
) -> Result<std::process::Output, String> {
    let run = Command::new(&config.python)
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| format!("it took over {timeout:?}"))?
        .map_err(|error| format!("cannot run {:?}: {error}", config.python))
}

/// True when `copy` exists and is newer than `source` (a voice replaced in place is redone).
pub(super) async fn is_fresh(copy: &Path, source: &Path) -> bool {
    let modified = |path: &Path| {
        let path = path.to_path_buf();
        async move {
            tokio::fs::metadata(path)
                .await
                .and_then(|m| m.modified())
                .ok()
        }
    };
    match (modified(copy).await, modified(source).await) {
        (Some(copy), Some(source)) => copy >= source,
        _ => false,
    }
}

fn failed(model: &Path, why: &str) -> ProviderError {
    ProviderError::Unavailable(format!(
        "cannot make the 8-bit copy of the Piper voice {model:?}: {why}; or set PIPER_QUANTIZE=off"
    ))
}

pub(super) fn tail(text: &str) -> &str {
    let text = text.trim();
    let start = text.len().saturating_sub(600);
    let start = (start..text.len())
        .find(|&at| text.is_char_boundary(at))
        .unwrap_or(0);
    &text[start..]
}
