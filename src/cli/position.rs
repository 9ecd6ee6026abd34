//! A position in a topic as a person writes it: `earliest`, `latest`, an offset, an RFC 3339 time
//! or `@<unix_ns>`; used by `consume --from` and `groups reset --to`.

use std::fmt;
use std::str::FromStr;

use crate::proto as pb;

/// Where to start reading, or where to move a group: the broker's own type, parsed and printed
/// here for people.
pub use crate::broker::Position;

impl FromStr for Position {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            _ if s.starts_with('@') => s[1..]
                .parse()
                .map(Self::Timestamp)
                .map_err(|_| format!("{s:?}: after '@' comes a Unix time in nanoseconds")),
            _ if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse()
                .map(Self::Offset)
                .map_err(|_| format!("{s:?} is too large for an offset")),
            _ if s.contains('-') => super::time::parse_rfc3339(s).map(Self::Timestamp),
            _ => Err(format!(
                "{s:?}: expected earliest, latest, an offset, a time like 2026-01-01T00:00:00Z, \
                 or @<unix_ns>"
            )),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Latest => f.write_str("latest"),
            Self::Offset(o) => write!(f, "offset {o}"),
            Self::Timestamp(ns) => write!(f, "{}", super::time::format_rfc3339(*ns)),
        }
    }
}

impl Position {
    /// The protobuf form.
    pub fn to_proto(self) -> pb::Position {
        use pb::position::Target;
        let target = match self {
            Self::Earliest => Target::Earliest(true),
            Self::Latest => Target::Latest(true),
            Self::Offset(o) => Target::Offset(o),
            Self::Timestamp(ns) => Target::TimestampNs(ns),
        };
        pb::Position {
            target: Some(target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn parses_every_form() {
        assert_eq!("earliest".parse(), Ok(Position::Earliest));
        assert_eq!("latest".parse(), Ok(Position::Latest));
        assert_eq!("42".parse(), Ok(Position::Offset(42)));
        assert_eq!("@-5".parse(), Ok(Position::Timestamp(-5)));
        assert_eq!(
            "2026-01-01T00:00:00Z".parse(),
            Ok(Position::Timestamp(1_767_225_600_000_000_000))
        );
        for bad in [
            "",
            "first",
            "-1",
            "@x",
            "2026-99-01",
            "99999999999999999999999",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }
}
