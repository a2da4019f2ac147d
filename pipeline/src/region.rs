//! Regions in their three spellings: protobuf enum, ClickHouse `Enum8` and configuration text.

use std::{fmt, str::FromStr};

use crate::proto::ingest::Region as PbRegion;

/// A served region. `Unspecified` is never valid on an event, but a rejected row may carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Region {
    Europe,
    America,
    Asia,
}

impl Region {
    /// Every region, in the order reports show them side by side.
    pub const ALL: [Region; 3] = [Region::Europe, Region::America, Region::Asia];

    /// The lowercase name used in configuration, ClickHouse and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Europe => "europe",
            Region::America => "america",
            Region::Asia => "asia",
        }
    }

    /// The value of the ClickHouse `Enum8` column (`region`); 0 means unspecified.
    pub fn ch_code(self) -> i8 {
        self.to_proto() as i8
    }

    pub fn to_proto(self) -> PbRegion {
        match self {
            Region::Europe => PbRegion::Europe,
            Region::America => PbRegion::America,
            Region::Asia => PbRegion::Asia,
        }
    }

    /// Converts the raw protobuf value; `None` for unspecified or unknown numbers.
    pub fn from_proto(value: i32) -> Option<Region> {
        match PbRegion::try_from(value).ok()? {
            PbRegion::Europe => Some(Region::Europe),
            PbRegion::America => Some(Region::America),
            PbRegion::Asia => Some(Region::Asia),
            PbRegion::Unspecified => None,
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a region name.
#[derive(Debug, thiserror::Error)]
#[error("unknown region {0:?}: expected europe, america or asia")]
pub struct UnknownRegion(String);

impl FromStr for Region {
    type Err = UnknownRegion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "europe" | "eu" => Ok(Region::Europe),
            "america" | "us" => Ok(Region::America),
            "asia" => Ok(Region::Asia),
            _ => Err(UnknownRegion(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for r in Region::ALL {
            assert_eq!(r.as_str().parse::<Region>().unwrap(), r);
            assert_eq!(Region::from_proto(r.to_proto() as i32), Some(r));
        }
        assert_eq!(Region::Europe.ch_code(), 1);
        assert_eq!(Region::Asia.ch_code(), 3);
        assert_eq!(Region::from_proto(0), None);
        assert_eq!(Region::from_proto(42), None);
        assert!("mars".parse::<Region>().is_err());
    }
}
