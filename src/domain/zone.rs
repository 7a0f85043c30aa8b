//! Zones: the coarse areas a tip is routed by. Ids come from configuration and
//! from tipsters (untrusted: a form field), so both go through [`Zone::parse`].

use std::fmt;

/// The value a tipster picks when they do not know the zone.
pub const UNSURE: &str = "unsure";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Zone(String);

#[derive(Debug, thiserror::Error)]
#[error("a zone id is 1 to 32 lowercase letters, digits or dashes, and not \"unsure\"")]
pub struct InvalidZone;

impl Zone {
    pub fn parse(s: &str) -> Result<Self, InvalidZone> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s != UNSURE
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidZone)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a tip is about: a configured zone, or "not sure".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneChoice {
    Known(Zone),
    Unsure,
}

impl ZoneChoice {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(z) => z.as_str(),
            Self::Unsure => UNSURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unsure_is_reserved() {
        assert!(Zone::parse("unsure").is_err());
        assert!(Zone::parse("north-2").is_ok());
        assert!(Zone::parse("North").is_err());
        assert!(Zone::parse("").is_err());
    }

    proptest! {
        #[test]
        fn a_parsed_zone_round_trips(s in "\\PC{0,40}") {
            if let Ok(z) = Zone::parse(&s) {
                prop_assert_eq!(z.as_str(), s.as_str());
                prop_assert!(s.len() <= 32);
            }
        }
    }
}
