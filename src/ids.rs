//! MTurk identifiers, parsed once at the boundary.
//!
//! MTurk's API allows up to 255 bytes for worker, HIT, assignment and
//! qualification type ids; real ones are upper-case letters and digits. We
//! accept any non-empty ASCII alphanumeric string of at most 255 bytes, and
//! nothing looser: a stricter rule could refuse a real id one day, a looser
//! one would let a typo or a forged value reach MTurk and the ledger.

use std::fmt;

/// The longest id MTurk's API accepts.
pub const MAX_ID_LEN: usize = 255;

/// Why a string is not a plausible MTurk id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {shown} is not valid: {problem} (expected 1 to 255 ASCII letters and digits, like {example})")]
pub struct InvalidId {
    pub kind: &'static str,
    /// The offending value, escaped and shortened so it is safe to print.
    pub shown: String,
    pub problem: &'static str,
    pub example: &'static str,
}

fn check(kind: &'static str, example: &'static str, raw: &str) -> Result<(), InvalidId> {
    let problem = if raw.is_empty() {
        Some("it is empty")
    } else if raw.len() > MAX_ID_LEN {
        Some("it is longer than 255 bytes")
    } else if !raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Some("it contains characters other than letters and digits")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(InvalidId {
            kind,
            shown: shown(raw),
            problem,
            example,
        }),
    }
}

/// A printable, bounded rendering of untrusted text for error messages and logs.
pub fn shown(raw: &str) -> String {
    // Bounded by what is printed, not by characters: one escaped character
    // can take ten bytes.
    const LIMIT: usize = 64;
    let mut out = String::from("\"");
    for c in raw.chars() {
        let escaped: String = c.escape_debug().collect();
        if out.len() + escaped.len() > LIMIT {
            out.push('\u{2026}');
            break;
        }
        out.push_str(&escaped);
    }
    out.push('"');
    out
}

macro_rules! mturk_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $example:literal) => {
        $(#[$doc])*
        ///
        /// Serialized as its bare string, so a report that carries it prints
        /// what a `String` would; deserialized through [`Self::parse`].
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                check($kind, $example, raw)?;
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(raw: &str) -> Result<Self, InvalidId> {
                Self::parse(raw)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

mturk_id!(
    /// A worker: a person. Treat as personal data (it identifies them elsewhere on Amazon).
    WorkerId, "worker id", "A1B2C3D4E5F6G7"
);
mturk_id!(
    /// One HIT (a posting of a study).
    HitId, "HIT id", "3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN"
);
mturk_id!(
    /// A HIT type: HITs sharing title, reward and requirements; notifications are set per HIT type.
    HitTypeId, "HIT type id", "3XJOUITW8URHJMX7F00H20LGRIAKAJ"
);
mturk_id!(
    /// One worker's work on one HIT.
    AssignmentId, "assignment id", "3X4JMASXCM8FCX94IM0KEMYGMD5B0E"
);
mturk_id!(
    /// The lab's "already took part" qualification.
    QualificationTypeId, "qualification type id", "3LB30G6JHY4JQ4T5QRCEBZ6B9YDKQD"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_looking_ids() {
        assert!(WorkerId::parse("A3RZ9WT1YTV8BY").is_ok());
        assert!(HitId::parse("3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN").is_ok());
        assert!(WorkerId::parse(&"A".repeat(255)).is_ok());
        // Lower case is not seen in practice but is allowed by the API: do not refuse it.
        assert!(WorkerId::parse("a3rz9wt1").is_ok());
    }

    #[test]
    fn refuses_implausible_ids_naming_the_problem() {
        let err = WorkerId::parse("").unwrap_err();
        assert_eq!(err.problem, "it is empty");
        let err = WorkerId::parse(&"A".repeat(256)).unwrap_err();
        assert_eq!(err.problem, "it is longer than 255 bytes");
        let err = WorkerId::parse("A3RZ 9WT").unwrap_err();
        assert!(err.to_string().contains("worker id \"A3RZ 9WT\""), "{err}");
        let err = AssignmentId::parse("ABC\u{0}\n").unwrap_err();
        assert!(err.to_string().contains("\\0\\n"), "{err}");
        // Non-ASCII letters are alphanumeric to Unicode but not to MTurk.
        assert!(HitId::parse("ÄBC").is_err());
    }

    #[test]
    fn ids_serialize_as_their_bare_string_and_deserialize_only_when_valid() {
        let hit = HitId::parse("3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN").unwrap();
        assert_eq!(
            serde_json::to_string(&hit).unwrap(),
            r#""3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN""#
        );
        let back: HitId = serde_json::from_str(r#""3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN""#).unwrap();
        assert_eq!(back, hit);
        let err = serde_json::from_str::<WorkerId>(r#""A1 B2""#).unwrap_err();
        assert!(err.to_string().contains("worker id"), "{err}");
    }

    #[test]
    fn shown_bounds_long_values() {
        let long = "x".repeat(10_000);
        assert!(shown(&long).len() < 80);
    }
}
