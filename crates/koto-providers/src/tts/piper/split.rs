//! A Piper voice in two halves, so a sentence's audio streams as it is decoded
//! (`PIPER_STREAM=on`, the default for the in-process runtime).
//!
//! A Piper voice is VITS: the *encoder* (text encoder, duration predictor and flow) turns phoneme
//! ids into a latent of `frames` × 192, and the *decoder* (HiFi-GAN, from `dec/conv_pre`) turns
//! the latent into audio, 256 samples a frame. The decoder is convolutional with a short reach,
//! so a window of the latent with 8 frames of context each side decodes to the same samples as
//! the whole (measured on the joe voice: RMS error 6e-5 of full scale at 16-frame windows).
//! Decoding the first 16 frames (~190 ms of speech) takes ~12 ms against ~50–80 ms for a whole
//! first clause, and the encoder half runs once, so the first clause is heard ~40 ms sooner.
//!
//! The halves are cut out of the weights the session runs (the voice or its 8-bit copy) by the
//! `onnx` package's extractor, run once per voice by the configured Python into the cache, like
//! the 8-bit copy ([`super::quantize`]). A voice whose graph has no `dec/conv_pre` (not exported
//! by Piper's own script) is run whole, which its log line says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use koto_core::ProviderError;

use super::PiperConfig;
use super::quantize::{is_fresh, run_python};

/// Cutting a medium voice takes ~2 s; a busy machine gets ten times that.
const SPLIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments: the model, the encoder's and the decoder's target. Prints the latent's tensor name.
/// Exit 3: the `onnx` package is missing; 4: the graph has no decoder to cut at; 5: the file is
/// not an ONNX model.
const SPLIT: &str = r#"
import sys
try:
    import onnx
    from onnx.utils import Extractor
except ImportError as error:
    sys.stderr.write("kotodama-piper-split: %s\n" % error)
    sys.exit(3)
try:
    model = onnx.load(sys.argv[1])
except Exception as error:
    sys.stderr.write("%s: %s\n" % (type(error).__name__, error))
    sys.exit(5)
nodes = model.graph.node
made_by = {output: node for node in nodes for output in node.output}
latent = None
for node in nodes:
    if node.name.endswith("dec/conv_pre/Conv") and node.op_type == "Conv":
        latent = node.input[0]
    elif node.name.endswith("dec/conv_pre/Conv_quant") and node.op_type == "ConvInteger":
        # The 8-bit copy quantizes the latent first: cut before that.
        quantizer = made_by.get(node.input[0])
        if quantizer is not None and quantizer.op_type == "DynamicQuantizeLinear":
            latent = quantizer.input[0]
if latent is None:
    sys.stderr.write("kotodama-piper-split: no dec/conv_pre node in this voice\n")
    sys.exit(4)
inputs = [value.name for value in model.graph.input]
outputs = [value.name for value in model.graph.output]
extractor = Extractor(model)
onnx.save(extractor.extract_model(inputs, [latent]), sys.argv[2])
decoder_inputs = [latent] + [name for name in inputs if name == "sid"]
onnx.save(extractor.extract_model(decoder_inputs, outputs), sys.argv[3])
print(latent)
"#;

/// The two halves of a voice's weights, and the decoder's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Halves {
    pub encoder: PathBuf,
    pub decoder: PathBuf,
    /// The latent tensor: the encoder's output, the decoder's input.
    pub latent: String,
}

/// Why a voice runs whole.
#[derive(Debug)]
pub enum NotSplit {
    /// The graph has nothing to cut at (a voice Piper's exporter did not write).
    NoDecoder,
    /// Cutting failed; the voice still runs whole.
    Failed(ProviderError),
}

/// Where the halves of `weights` live: `<cache>/<stem>.encoder.onnx` and `.decoder.onnx`.
fn paths(config: &PiperConfig, weights: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let stem = weights.file_stem().map_or_else(
        || "voice".into(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let directory = config
        .cache_dir
        .clone()
        .or_else(|| weights.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    (
        directory.join(format!("{stem}.encoder.onnx")),
        directory.join(format!("{stem}.decoder.onnx")),
        directory.join(format!("{stem}.latent")),
    )
}

/// The halves of `weights`, cut now if there are none newer than it. One at a time per process.
pub async fn halves(config: &PiperConfig, weights: &Path) -> Result<Halves, NotSplit> {
    static CUTTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let (encoder, decoder, latent_file) = paths(config, weights);
    let _cutting = CUTTING.lock().await;
    // The latent's name is written last, so its freshness means both halves are whole.
    if is_fresh(&latent_file, weights).await
        && is_fresh(&encoder, weights).await
        && is_fresh(&decoder, weights).await
        && let Ok(latent) = tokio::fs::read_to_string(&latent_file).await
        && !latent.trim().is_empty()
    {
        return Ok(Halves {
            encoder,
            decoder,
            latent: latent.trim().to_owned(),
        });
    }
    let failed = |why: String| {
        NotSplit::Failed(ProviderError::Unavailable(format!(
            "cannot cut the Piper voice {weights:?} in two for streaming: {why}; \
             or set PIPER_STREAM=off"
        )))
    };
    let Some(directory) = encoder.parent().map(Path::to_path_buf) else {
        return Err(failed("its halves have no directory".into()));
    };
    tokio::fs::create_dir_all(&directory)
        .await
        .map_err(|error| failed(format!("cannot create {directory:?}: {error}")))?;
    let partial = |path: &Path| PathBuf::from(format!("{}.partial", path.display()));
    let started = std::time::Instant::now();
    let output = run_python(
        config,
        SPLIT,
        &[
            weights.as_os_str(),
            partial(&encoder).as_os_str(),
            partial(&decoder).as_os_str(),
        ],
        SPLIT_TIMEOUT,
    )
    .await
    .map_err(failed)?;
    if !output.status.success() {
        let _ = tokio::fs::remove_file(partial(&encoder)).await;
        let _ = tokio::fs::remove_file(partial(&decoder)).await;
        return Err(match output.status.code() {
            Some(4) => NotSplit::NoDecoder,
            Some(5) => NotSplit::Failed(ProviderError::Unavailable(format!(
                "cannot load the Piper voice {weights:?}: it is not an ONNX model ({})",
                super::quantize::tail(&String::from_utf8_lossy(&output.stderr))
            ))),
            Some(3) => failed(format!(
                "it needs the `onnx` package (`{} -m pip install onnx`; scripts/test.sh installs it)",
                config.python.display()
            )),
            _ => failed(format!(
                "the extractor failed ({}): {}",
                output.status,
                super::quantize::tail(&String::from_utf8_lossy(&output.stderr))
            )),
        });
    }
    let latent = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    for path in [&encoder, &decoder] {
        tokio::fs::rename(partial(path), path)
            .await
            .map_err(|error| failed(format!("cannot keep {path:?}: {error}")))?;
    }
    tokio::fs::write(&latent_file, &latent)
        .await
        .map_err(|error| failed(format!("cannot keep {latent_file:?}: {error}")))?;
    tracing::info!(
        weights = %weights.display(),
        encoder = %encoder.display(),
        decoder = %decoder.display(),
        took_ms = started.elapsed().as_millis() as u64,
        "cut the Piper voice in two for streaming (once)"
    );
    Ok(Halves {
        encoder,
        decoder,
        latent,
    })
}
