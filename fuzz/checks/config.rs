//! Config parsing (koto-server `RawConfig`): a TOML file's text, then environment variables
//! over it, then `build()`. Refusals are the point; a panic is a bug. The input is the TOML
//! text, a 0x00 byte, then env lines `<k>value` where byte `k` picks a key of `KEYS` (random
//! env names would almost never be ours).

use std::collections::HashMap;
use std::path::Path;

use koto_server::config::{KEYS, RawConfig};

pub fn run(data: &[u8]) {
    let (toml_part, env_part) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let toml_text = String::from_utf8_lossy(toml_part);
    let env: HashMap<&str, String> = env_part
        .split(|b| *b == b'\n')
        .filter_map(|line| line.split_first())
        .map(|(key, value)| {
            (
                KEYS[usize::from(*key) % KEYS.len()].env,
                String::from_utf8_lossy(value).into_owned(),
            )
        })
        .collect();
    let mut raw = RawConfig::default();
    if raw
        .merge_toml_str(&toml_text, Path::new("kotodama.toml"))
        .is_err()
    {
        return;
    }
    raw.merge_env(|name| env.get(name).cloned());
    let _ = raw.build();
}
