//! libFuzzer target `upload`: see `checks/upload.rs` for what it checks.
#![no_main]

#[allow(dead_code)] // each target uses one module of the shared checks
#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::upload::run(data));
