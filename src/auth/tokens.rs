//! Bearer tokens: a file of SHA-256 digests, each with the principal it belongs to. The broker
//! never stores a token itself; a presented token is hashed and compared with every digest in
//! constant time (no early exit, no comparison that stops at the first differing byte).
//!
//! The file has one token per line: `sha256:<64 hex digits> <principal>`; blank lines and lines
//! starting with `#` are ignored. `obelisk token new PRINCIPAL` makes a token and its line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::acl::MAX_PRINCIPAL_LEN;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {path}, line {line}: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Each token's digest and the principal it belongs to.
type Entries = Vec<(Digest, Arc<str>)>;

/// The digests in force, reloadable from their file.
pub struct TokenFile {
    path: PathBuf,
    entries: RwLock<Arc<Entries>>,
}

impl TokenFile {
    /// Reads `path`.
    ///
    /// # Errors
    /// The file cannot be read, or a line is not `sha256:<hex> <principal>`.
    pub fn open(path: &Path) -> Result<Self, TokenFileError> {
        let entries = read(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            entries: RwLock::new(Arc::new(entries)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file again; on an error the tokens in force stay. Returns how many tokens it
    /// holds.
    ///
    /// # Errors
    /// As [`TokenFile::open`].
    pub fn reload(&self) -> Result<usize, TokenFileError> {
        let entries = read(&self.path)?;
        let n = entries.len();
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(entries);
        Ok(n)
    }

    /// The principal `token` belongs to. Every digest is compared, in constant time.
    pub fn principal(&self, token: &str) -> Option<Arc<str>> {
        let digest = sha256(token.as_bytes());
        let entries = Arc::clone(&self.entries.read().unwrap_or_else(|e| e.into_inner()));
        let mut found = None;
        for (d, principal) in entries.iter() {
            if constant_time_eq(d, &digest) && found.is_none() {
                found = Some(Arc::clone(principal));
            }
        }
        found
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equality of two digests that takes the same time wherever they differ.
pub fn constant_time_eq(a: &Digest, b: &Digest) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A new random token (32 bytes, URL-safe base64) and its token-file line for `principal`.
pub fn generate(principal: &str) -> (String, String) {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!(
        "obk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let line = line_for(&token, principal);
    (token, line)
}

/// The token-file line of `token` for `principal`.
pub fn line_for(token: &str, principal: &str) -> String {
    format!("sha256:{} {principal}", hex(&sha256(token.as_bytes())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: &Path) -> Result<Entries, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let invalid = |reason: &str| TokenFileError::Invalid {
            path: path.to_path_buf(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let (digest, principal) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| invalid("expected `sha256:<64 hex digits> <principal>`"))?;
        let principal = principal.trim();
        if principal.is_empty() || principal.len() > MAX_PRINCIPAL_LEN || principal == "*" {
            return Err(invalid(
                "the principal must be 1 to 255 bytes and not \"*\"",
            ));
        }
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| invalid("the digest must start with `sha256:`"))?;
        let digest = parse_hex(hex).ok_or_else(|| invalid("the digest must be 64 hex digits"))?;
        out.push((digest, Arc::from(principal)));
    }
    Ok(out)
}

fn parse_hex(s: &str) -> Option<Digest> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_maps_to_its_principal_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let (alice, line_a) = generate("alice");
        let (bob, line_b) = generate("bob");
        std::fs::write(&path, format!("# comment\n{line_a}\n\n{line_b}\n")).unwrap();
        let file = TokenFile::open(&path).unwrap();
        assert_eq!(file.principal(&alice).as_deref(), Some("alice"));
        assert_eq!(file.principal(&bob).as_deref(), Some("bob"));
        assert_eq!(file.principal("obk_wrong"), None);
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&alice));
    }

    #[test]
    fn reload_picks_up_new_tokens_and_keeps_the_old_ones_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, line_for("one", "a")).unwrap();
        let file = TokenFile::open(&path).unwrap();
        std::fs::write(&path, line_for("two", "b")).unwrap();
        assert_eq!(file.reload().unwrap(), 1);
        assert_eq!(file.principal("one"), None);
        assert_eq!(file.principal("two").as_deref(), Some("b"));
        std::fs::write(&path, "garbage").unwrap();
        let err = file.reload().unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert_eq!(file.principal("two").as_deref(), Some("b"));
    }

    #[test]
    fn digests_are_sha256() {
        // The SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(constant_time_eq(&sha256(b"x"), &sha256(b"x")));
        assert!(!constant_time_eq(&sha256(b"x"), &sha256(b"y")));
    }
}
