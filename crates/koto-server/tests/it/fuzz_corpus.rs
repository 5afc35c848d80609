//! Every committed fuzz input (`fuzz/corpus/<target>/*`) replayed through the fuzz targets' own
//! checks (`fuzz/checks`, compiled in here by path), so CI keeps them passing without
//! cargo-fuzz or a nightly flag. Inputs that once crashed are in the corpora too.

use std::path::Path;

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../../../../fuzz/checks/mod.rs"]
mod checks;

#[test]
fn every_committed_fuzz_input_passes_its_targets_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut failures = Vec::new();
    for (target, run) in checks::TARGETS {
        let dir = root.join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| entry.expect("a readable corpus entry").path())
            .collect();
        inputs.sort();
        assert!(
            !inputs.is_empty(),
            "{target}'s corpus is committed (an empty one would check nothing)"
        );
        for input in inputs {
            let bytes = std::fs::read(&input).expect("a readable corpus file");
            if std::panic::catch_unwind(|| run(&bytes)).is_err() {
                failures.push(input.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "these committed fuzz inputs fail their target's checks again: {failures:#?}"
    );
}
