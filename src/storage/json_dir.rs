//! A directory of one JSON file per name (`<name>.json`): committed offsets, group membership,
//! shared groups. Loading it sets aside a file that does not parse as `<name>.json.damaged`
//! (kept for a look) instead of stopping the broker; writes go through
//! [`super::write_atomically`].

use std::path::Path;

use serde::de::DeserializeOwned;

use super::StorageError;
use super::error::IoContext;

/// What [`load`] read: the files that parsed, and the names set aside with why.
pub type Loaded<T> = (Vec<(String, T)>, Vec<(String, String)>);

/// Reads every `<name>.json` under `dir` (creating it); `what` names the content in the log
/// line of a file set aside ("a group's committed offsets"), `then` says what follows.
///
/// # Errors
/// I/O errors creating, listing or reading the directory, or setting a file aside.
pub fn load<T: DeserializeOwned>(
    dir: &Path,
    what: &str,
    then: &str,
) -> Result<Loaded<T>, StorageError> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let (mut out, mut damaged) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .context(|| format!("listing {}", dir.display()))?
            .path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let bytes = std::fs::read(&path).context(|| format!("reading {}", path.display()))?;
        match serde_json::from_slice::<T>(&bytes) {
            Ok(v) => out.push((name.to_string(), v)),
            Err(e) => {
                let aside = path.with_extension("json.damaged");
                tracing::error!(file = %path.display(), error = %e, aside = %aside.display(), "{what} does not parse; set aside, {then}");
                std::fs::rename(&path, &aside)
                    .context(|| format!("setting aside {}", path.display()))?;
                damaged.push((name.to_string(), e.to_string()));
            }
        }
    }
    Ok((out, damaged))
}
