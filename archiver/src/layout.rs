//! The lake's key layout: where each object of a segment goes, and what its name says.
//!
//! ```text
//! archive/commerce/date=YYYY-MM-DD/region=<region>/hour=HH/part-<first>-<last>.parquet
//! archive/probes/date=YYYY-MM-DD/region=<region>/hour=HH/part-<first>-<last>.parquet
//! archive/rejected/date=YYYY-MM-DD/hour=HH/part-<first>-<last>.parquet
//! archive/manifests/date=YYYY-MM-DD/manifest.json
//! ```
//!
//! Events are placed by `occurred_at` (UTC), the day and hour the reports and the event
//! tables' partitions use; rejected rows by `received_at`, since a refused event's time may
//! be anything. `<first>` and `<last>` are the stream ids of the segment's first and last
//! entries: a segment is a range of one consumer's entries, so two segments never share a
//! name, and rewriting a segment after a crash rewrites the same keys. With a sharded
//! stream the shard's index follows (`part-<first>-<last>-s<N>.parquet`), since the
//! shards' ids are independent.

use time::{Date, OffsetDateTime};

/// The top-level prefix of every archive object.
pub const ROOT: &str = "archive";

/// Which table an object's rows belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `commerce_events`
    Commerce,
    /// `probe_results`
    Probes,
    /// `rejected_events`: refused by the gateway or unloadable, kept for replay.
    Rejected,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Commerce, Kind::Probes, Kind::Rejected];

    /// The path segment after `archive/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Commerce => "commerce",
            Kind::Probes => "probes",
            Kind::Rejected => "rejected",
        }
    }

    /// The ClickHouse table whose columns the objects have.
    pub fn table(self) -> &'static str {
        match self {
            Kind::Commerce => pipeline::rows::COMMERCE_TABLE,
            Kind::Probes => pipeline::rows::PROBE_TABLE,
            Kind::Rejected => pipeline::rows::REJECTED_TABLE,
        }
    }
}

/// The directory an object goes to: kind, day, region (events only) and hour.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    pub kind: Kind,
    pub date: Date,
    /// The region's name; `None` for rejected rows.
    pub region: Option<&'static str>,
    pub hour: u8,
}

impl Partition {
    /// The partition of a row of `kind` at Unix second `at`, in `region`.
    pub fn at(kind: Kind, at: u32, region: Option<&'static str>) -> Partition {
        let t = OffsetDateTime::from_unix_timestamp(at as i64)
            .expect("a u32 of seconds is a valid time");
        Partition {
            kind,
            date: t.date(),
            region,
            hour: t.hour(),
        }
    }

    /// The object key of the segment `name` in this partition.
    pub fn key(&self, name: &SegmentName) -> String {
        let region = self
            .region
            .map(|r| format!("region={r}/"))
            .unwrap_or_default();
        format!(
            "{}hour={:02}/{}",
            date_prefix(self.kind, self.date).to_owned() + &region,
            self.hour,
            name.file_name()
        )
    }
}

/// `archive/<kind>/date=YYYY-MM-DD/`: every object of a kind and day is below it.
pub fn date_prefix(kind: Kind, date: Date) -> String {
    format!("{ROOT}/{}/date={date}/", kind.as_str())
}

/// The day's manifest.
pub fn manifest_key(date: Date) -> String {
    format!("{ROOT}/manifests/date={date}/manifest.json")
}

/// What names a segment: its first and last entry ids, and the shard when there are several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentName {
    pub first: String,
    pub last: String,
    /// The stream shard's index, when the stream is sharded.
    pub shard: Option<usize>,
}

impl SegmentName {
    pub fn file_name(&self) -> String {
        let shard = self.shard.map(|s| format!("-s{s}")).unwrap_or_default();
        format!("part-{}-{}{shard}.parquet", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout() {
        let name = SegmentName {
            first: "1700000000000-0".into(),
            last: "1700000005000-3".into(),
            shard: None,
        };
        // 2023-11-14 22:13:20 UTC
        let p = Partition::at(Kind::Commerce, 1_700_000_000, Some("europe"));
        assert_eq!(
            p.key(&name),
            "archive/commerce/date=2023-11-14/region=europe/hour=22/part-1700000000000-0-1700000005000-3.parquet"
        );
        let p = Partition::at(Kind::Rejected, 1_700_000_000, None);
        let sharded = SegmentName {
            shard: Some(2),
            ..name
        };
        assert_eq!(
            p.key(&sharded),
            "archive/rejected/date=2023-11-14/hour=22/part-1700000000000-0-1700000005000-3-s2.parquet"
        );
        assert_eq!(
            manifest_key(p.date),
            "archive/manifests/date=2023-11-14/manifest.json"
        );
    }
}
