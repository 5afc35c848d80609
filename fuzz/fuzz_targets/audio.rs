//! libFuzzer target `audio`: see `checks/audio.rs` for what it checks.
#![no_main]

use std::sync::Once;

#[allow(dead_code)] // each target uses one module of the shared checks
#[path = "../checks/mod.rs"]
mod checks;

/// libFuzzer's panic hook aborts before unwinding, so a run used to end at the first input that
/// reaches opus-decoder 0.1.1's `1u8 << i` overflow (`celt/vq.rs`), a panic `decode_upload`
/// catches and refuses as `Malformed` (corpus `regression-opus-shift-overflow`). Panics raised
/// inside opus-decoder are let unwind to that guard; any other panic still aborts the run.
fn let_upstream_opus_panics_unwind() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let aborting = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_opus_decoder = info
                .location()
                .is_some_and(|at| at.file().contains("opus-decoder"));
            if !in_opus_decoder {
                aborting(info);
            }
        }));
    });
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let_upstream_opus_panics_unwind();
    checks::audio::run(data)
});
