//! Fuzz target `config`: configuration loading (`src/config`) from a hostile
//! `--config` file and hostile `TIPWIRE_*` environment values. Both are
//! untrusted here: an operator's typo must get a clear refusal at start-up,
//! never a panic, and never a configuration that fails later.

use crate::config::Settings;

/// A config file and environment of at most this many bytes together.
const MAX_INPUT_BYTES: usize = 16 * 1024;
/// The shipped defaults (about 20 KB of TOML) parsed twice, the input parsed
/// twice, and the settings they make.
pub const CONFIG_MAX_ALLOC_BYTES: usize = 8 * 1024 * 1024;

/// Properties of `Settings::load`. Input: the TOML file's text, then
/// NUL-separated `NAME=VALUE` environment entries (each NAME gets the
/// `TIPWIRE_` prefix, so `SERVER__PORT=9443` is `TIPWIRE_SERVER__PORT`).
///
/// Loading the same sources twice gives the same verdict; a refusal says
/// what is wrong; a configuration that loads holds every value start-up
/// needs (addresses, limits, zones, durations, URLs) already typed, and
/// passes its own checks again.
pub fn config(data: &[u8]) {
    let data = data.get(..MAX_INPUT_BYTES).unwrap_or(data);
    let mut input = super::Input::new(data);
    let file = String::from_utf8_lossy(input.until(0)).into_owned();
    let mut env = config::Map::new();
    loop {
        let entry = input.until(0);
        if entry.is_empty() {
            break;
        }
        let entry = String::from_utf8_lossy(entry);
        let (name, value) = entry.split_once('=').unwrap_or((&entry, ""));
        env.insert(format!("TIPWIRE_{name}"), value.to_owned());
    }
    let load = || {
        Settings::load_sources(
            Some(config::File::from_str(&file, config::FileFormat::Toml)),
            Some(env.clone()),
        )
    };
    let verdict = load();
    let again = load();
    assert_eq!(
        verdict.as_ref().map(|_| ()).map_err(ToString::to_string),
        again.as_ref().map(|_| ()).map_err(ToString::to_string),
        "the same configuration loaded twice gave two verdicts"
    );
    match verdict {
        Ok(settings) => derived_values_hold(&settings),
        Err(error) => assert!(!error.to_string().trim().is_empty()),
    }
}

fn derived_values_hold(settings: &Settings) {
    // Every value start-up needs is a typed field, made at load; what is
    // left to hold is that the typed settings pass their own checks again.
    let later = settings.validate().err().map(|e| e.to_string());
    assert!(
        later.is_none(),
        "a validated configuration fails later: {later:?}"
    );
}
