//! `BERTH_<SECTION>_<KEY>` environment variables (see [`Key::env_var`]). Values are text and take
//! the same spellings as the file; a list is comma-separated (`BERTH_ACL_DENIED_FILTERS=a/#,b/+`).

use std::ffi::OsString;

use super::value::Input;
use super::{ConfigError, Key, Origin, Overrides, Reader};

/// `BERTH_*` variables that are not configuration keys but are known all the same.
pub const NOT_KEYS: [&str; 1] = [
    // Read by the command line (`--config`).
    "BERTH_CONFIG",
];

const PREFIX: &str = "BERTH_";

/// The `BERTH_*` variables of this process. A non-UTF-8 value is refused, naming the variable.
pub fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            name.starts_with(PREFIX).then_some((name, value))
        })
        .map(
            |(name, value): (String, OsString)| match value.into_string() {
                Ok(value) => Ok((name, value)),
                Err(_) => Err(ConfigError::EnvNotUnicode { var: name }),
            },
        )
        .collect()
}

/// The values the environment sets, and a warning for each `BERTH_*` name that is no key.
pub(super) fn overrides(
    vars: &[(String, String)],
) -> Result<(Overrides, Vec<String>), ConfigError> {
    // The last occurrence wins, as with a real environment built by appending.
    let get = |key: Key| {
        vars.iter()
            .rev()
            .find(|(name, _)| name == key.env_var())
            .map(|(_, value)| Input::Text(value))
    };
    let overrides = Overrides::read(&Reader {
        get: &get,
        origin: |key| Origin::Env { key },
    })?;
    let warnings = vars
        .iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with(PREFIX))
        .filter(|name| !NOT_KEYS.contains(&name.as_str()))
        .filter(|name| !Key::ALL.iter().any(|key| key.env_var() == name.as_str()))
        .map(|name| format!("ignoring environment variable {name}: it names no configuration key"))
        .collect();
    Ok((overrides, warnings))
}
