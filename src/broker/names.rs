//! Topic and group names: 1–249 bytes of `[A-Za-z0-9._-]`, not `.` or `..`.
//!
//! These rules make every valid name a safe single path component, so no name can reach outside
//! the data directory.

use super::error::{BrokerError, NameKind};

pub const MAX_NAME_LEN: usize = 249;

/// Checks a topic or group name.
///
/// # Errors
/// `InvalidName` saying which rule the name breaks.
pub fn validate(kind: NameKind, name: &str) -> Result<(), BrokerError> {
    let reason = if name.is_empty() {
        Some("a name must not be empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("a name must be at most 249 bytes")
    } else if name == "." || name == ".." {
        Some("\".\" and \"..\" are reserved")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(BrokerError::InvalidName {
            kind,
            name: name.chars().take(300).collect(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["a", "orders", "Orders.v1_x-2", "...", &"x".repeat(249)] {
            assert!(validate(NameKind::Topic, ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a b",
            "ü",
            "a\0",
            &"x".repeat(250),
        ] {
            let err = validate(NameKind::Topic, bad).unwrap_err();
            assert!(err.to_string().starts_with("invalid topic name"), "{err}");
        }
    }
}
