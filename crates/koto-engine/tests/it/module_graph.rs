//! Architecture invariant, checked as a test: below `engine.rs` no module names `Engine` or
//! `crate::engine`. A turn reaches what it needs through `TurnServices`; holding the whole
//! `Engine` again would bring back the engine ↔ job ↔ turn cycle.

use std::path::Path;

/// The engine itself, the crate root that re-exports it, and `history.rs` (more methods of
/// `Engine`, above it).
const MAY_NAME_ENGINE: &[&str] = &["engine.rs", "history.rs", "lib.rs"];

fn names_engine(code_line: &str) -> bool {
    code_line.contains("crate::engine")
        || code_line
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|word| word == "Engine")
}

#[test]
fn no_module_below_the_engine_names_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".rs") || MAY_NAME_ENGINE.contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            // Comments may mention the engine; only code makes a dependency.
            let code = line.split("//").next().unwrap_or_default();
            if names_engine(code) {
                offenders.push(format!("{name}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "these lines reach up to the Engine (use TurnServices instead):\n{}",
        offenders.join("\n")
    );
}
