//! The order of the event tables' sort key, `(toDate(occurred_at), event_id, store_id)`, as
//! ClickHouse compares it, and the sort that puts an insert's rows in it (#19).
//!
//! Why: an insert whose rows arrive in the key's order is written as it is. Otherwise
//! ClickHouse sorts every part it writes by comparing values column by column (a virtual
//! call per comparison) and then permutes every column: on 18.16 that was about half of the
//! server's insert CPU with random ids (docs/BENCHMARKS.md, "Inserts sent in the key's
//! order"). Here the key is three integers, and the ids are spread evenly, so a counting
//! sort by the id's leading bits leaves buckets of a few rows each.

use std::cmp::Ordering;

/// The event tables' sort key without the store: the day, then the id as ClickHouse
/// compares a `UUID`, by its last eight bytes, then its first eight, each as a big-endian
/// number (on 18.16 and on current servers alike, and tested against the server), not in
/// the order of its text or of its 16 bytes. Two rows of one key (copies of an event, or
/// two stores' events of one id) are put in order by their store (`Order::sort`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey {
    day: u16,
    last: u64,
    first: u64,
}

impl EventKey {
    /// The key of an event that occurred at `occurred_at` (seconds since the epoch, the
    /// `DateTime('UTC')` of the tables) with id `event_id`.
    pub fn new(occurred_at: u32, event_id: &uuid::Uuid) -> EventKey {
        let (first, last) = event_id.as_u64_pair();
        EventKey {
            // toDate of a DateTime('UTC'): days since the epoch, which fit 16 bits until 2149
            day: (occurred_at / 86_400) as u16,
            last,
            first,
        }
    }
}

/// One row's key and where its record starts among the rows appended, which grows with
/// the order they were appended in.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Slot {
    last: u64,
    first: u64,
    day: u16,
    row: u32,
}

impl Slot {
    /// The order of slots: the key, then the row, so that one set of rows has one order
    /// (a retry's block is then the same block, which a replicated table deduplicates).
    fn order(&self) -> (u16, u64, u64, u32) {
        (self.day, self.last, self.first, self.row)
    }

    /// The row's key, as [`EventKey`] orders it.
    fn key(&self) -> (u16, u64, u64) {
        (self.day, self.last, self.first)
    }

    /// Where the row's record starts ([`Order::push`]).
    pub(super) fn record(&self) -> u32 {
        self.row
    }

    fn same_key(&self, other: &Slot) -> bool {
        self.key() == other.key()
    }
}

/// Days an insert's rows may span before [`Order::sort`] sorts them as a whole rather than
/// by buckets per day: late events add a day or two to a batch.
const BUCKETED_DAYS: usize = 8;

/// Rows per bucket that [`Order::sort`] aims at: buckets this small sort in a few
/// comparisons, and their counts (4 bytes a bucket) stay a fraction of the keys' memory.
const ROWS_PER_BUCKET: usize = 2;

/// The keys of a block's rows in the order they were appended, and, once sorted, in the
/// key's order. Every buffer is kept from one block to the next.
#[derive(Default)]
pub(super) struct Order {
    appended: Vec<Slot>,
    sorted: Vec<Slot>,
    /// Rows per bucket, then where each bucket ends.
    counts: Vec<u32>,
    /// [`Order::sort`] found the rows appended in order: `appended` is the order.
    in_place: bool,
}

impl Order {
    /// Adds a row of key `key` whose record starts at `record`, after every record pushed
    /// before.
    pub(super) fn push(&mut self, key: EventKey, record: u32) {
        debug_assert!(self.appended.last().is_none_or(|s| s.row < record));
        self.appended.push(Slot {
            last: key.last,
            first: key.first,
            day: key.day,
            row: record,
        });
    }

    pub(super) fn len(&self) -> usize {
        self.appended.len()
    }

    pub(super) fn clear(&mut self) {
        self.appended.clear();
        self.sorted.clear();
        self.in_place = false;
    }

    /// The rows in the key's order, after [`Order::sort`].
    pub(super) fn sorted(&self) -> &[Slot] {
        if self.in_place {
            &self.appended
        } else {
            &self.sorted
        }
    }

    /// Puts the rows in the key's order, rows of one key by their store (`store`, which
    /// compares the stores of two rows, named by where their records start, as ClickHouse
    /// compares strings), then in the order they were appended.
    ///
    /// By a counting sort: the distinct days are ranked (at most [`BUCKETED_DAYS`]), and
    /// within a day the id's last eight bytes, less the smallest of them, choose a bucket by
    /// their leading bits; each bucket is then sorted on its own. Random ids (version 4 or
    /// 7, whose last eight bytes are random but for two bits) fill the buckets evenly. Ids
    /// that are not spread (sequential, or all in a narrow range) fill few buckets, which
    /// `sort_unstable` then sorts: never worse than sorting all rows at once, which is what
    /// rows of more days get.
    pub(super) fn sort(&mut self, store: impl Fn(u32, u32) -> Ordering) {
        self.sorted.clear();
        self.in_place = false;
        let rows = self.appended.len();
        let Some(first) = self.appended.first() else {
            self.in_place = true;
            return;
        };
        let mut days = [first.day; BUCKETED_DAYS];
        let mut distinct = 1;
        let (mut low, mut high) = (first.last, first.last);
        let mut ascending = true;
        let mut last_day = first.day;
        for pair in self.appended.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            // strictly: equal keys are ordered by store below
            ascending &= a.key() < b.key();
            low = low.min(b.last);
            high = high.max(b.last);
            if b.day != last_day {
                last_day = b.day;
                if !days[..distinct.min(BUCKETED_DAYS)].contains(&b.day) {
                    if distinct < BUCKETED_DAYS {
                        days[distinct] = b.day;
                    }
                    distinct += 1;
                }
            }
        }
        if ascending {
            self.in_place = true;
            return;
        }
        if distinct > BUCKETED_DAYS {
            self.sorted.extend_from_slice(&self.appended);
            self.sorted.sort_unstable_by_key(Slot::order);
        } else {
            let days = &mut days[..distinct];
            days.sort_unstable();
            let per_day = (rows / ROWS_PER_BUCKET).next_power_of_two();
            let bits = per_day.trailing_zeros();
            let range_bits = 64 - (high - low).leading_zeros();
            let shift = range_bits.saturating_sub(bits);
            let bucket = |slot: &Slot| -> usize {
                let day = days.iter().position(|d| *d == slot.day).unwrap_or(0);
                day * per_day + (slot.last - low).checked_shr(shift).unwrap_or(0) as usize
            };
            let buckets = distinct * per_day;
            self.counts.clear();
            self.counts.resize(buckets, 0);
            for slot in &self.appended {
                self.counts[bucket(slot)] += 1;
            }
            // each bucket's start
            let mut start = 0;
            for count in &mut self.counts {
                let len = *count;
                *count = start;
                start += len;
            }
            self.sorted.resize(rows, Slot::default());
            for slot in &self.appended {
                let at = &mut self.counts[bucket(slot)];
                self.sorted[*at as usize] = *slot;
                *at += 1;
            }
            // each count is now its bucket's end
            let mut start = 0;
            for &end in &self.counts {
                let end = end as usize;
                if end - start > 1 {
                    self.sorted[start..end].sort_unstable_by_key(Slot::order);
                }
                start = end;
            }
        }
        // rows of one key: by store where their stores differ (two stores' events of one
        // id), which is rare; copies of one event keep the order of their rows
        let mut at = 0;
        while at + 1 < rows {
            let mut end = at + 1;
            while end < rows && self.sorted[end].same_key(&self.sorted[at]) {
                end += 1;
            }
            if end - at > 1 {
                self.sorted[at..end].sort_by(|a, b| store(a.row, b.row).then(a.row.cmp(&b.row)));
            }
            at = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order ClickHouse sorts by, found independently of [`EventKey`]: the day, the id's
    /// last eight bytes, then its first eight, as bytes.
    fn clickhouse_key(occurred_at: u32, id: &uuid::Uuid) -> (u32, Vec<u8>, Vec<u8>) {
        let bytes = id.as_bytes();
        (
            occurred_at / 86_400,
            bytes[8..].to_vec(),
            bytes[..8].to_vec(),
        )
    }

    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// Sorts `rows` (time, id, store) with [`Order`] and checks the order against sorting
    /// by [`clickhouse_key`], the store and the row.
    fn check(rows: &[(u32, uuid::Uuid, &str)]) {
        let mut order = Order::default();
        for (i, (at, id, _)) in rows.iter().enumerate() {
            order.push(EventKey::new(*at, id), i as u32);
        }
        order.sort(|a, b| rows[a as usize].2.cmp(rows[b as usize].2));
        let got: Vec<u32> = order.sorted().iter().map(Slot::record).collect();
        let mut expected: Vec<u32> = (0..rows.len() as u32).collect();
        expected.sort_by_key(|&i| {
            let (at, id, store) = rows[i as usize];
            (clickhouse_key(at, &id), store, i)
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn random_ids_over_days_sort_as_clickhouse_sorts() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let stores = ["store-b", "store-a", "", "store-a0"];
        let mut rows = Vec::new();
        for i in 0..5000 {
            let id = uuid::Builder::from_random_bytes(
                (u128::from(next()) << 64 | u128::from(next())).to_be_bytes(),
            )
            .into_uuid();
            let at = 1_769_731_200 + (next() % (3 * 86_400)) as u32;
            rows.push((at, id, stores[i % 3]));
            if i % 50 == 0 {
                // the same id from other stores, and the very same event again
                rows.push((at, id, stores[3]));
                rows.push((at, id, stores[i % 3]));
                rows.push((at, id, stores[(i + 1) % 3]));
            }
        }
        check(&rows);
        rows.reverse();
        check(&rows);
    }

    #[test]
    fn ids_that_are_not_spread_sort_too() {
        let sequential: Vec<_> = (0..3000u128)
            .rev()
            .map(|i| (86_400 * 20_000, uuid::Uuid::from_u128(i), "s"))
            .collect();
        check(&sequential);
        // ids that differ only in their first eight bytes: one bucket
        let first_half: Vec<_> = (0..3000u64)
            .map(|i| {
                let id = uuid::Uuid::from_u64_pair(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), 7);
                (86_400 * 20_000, id, "s")
            })
            .collect();
        check(&first_half);
        // every row the same key: by store, then by row
        let same: Vec<_> = (0..100)
            .map(|i| (0, uuid::Uuid::max(), ["b", "a", "c"][i % 3]))
            .collect();
        check(&same);
        // ids at the ends of the range, where `last - low` spans all 64 bits
        let ends: Vec<_> = [u128::MAX, 0, 1 << 64, u128::MAX - 1, 5]
            .map(|i| (0, uuid::Uuid::from_u128(i), "s"))
            .to_vec();
        check(&ends);
    }

    #[test]
    fn rows_of_many_days_sort_as_a_whole() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let rows: Vec<_> = (0..4000)
            .map(|_| {
                let id = uuid::Uuid::from_u64_pair(next(), next());
                (((next() % 40) * 86_400) as u32 + 86_400 * 20_000, id, "s")
            })
            .collect();
        check(&rows);
    }

    #[test]
    fn sorted_rows_stay_where_they_are() {
        let rows: Vec<_> = (0..100u64)
            .map(|i| (0, uuid::Uuid::from_u64_pair(0, i), "s"))
            .collect();
        let mut order = Order::default();
        for (i, (at, id, _)) in rows.iter().enumerate() {
            order.push(EventKey::new(*at, id), 10 * i as u32);
        }
        order.sort(|_, _| unreachable!("no two rows share a key"));
        assert!(order.in_place);
        check(&rows);
        check(&[]);
        check(&rows[..1]);
    }

    #[test]
    fn event_keys_order_ids_as_clickhouse_does() {
        // the order of `ORDER BY` on a UUID column on 18.16 and on 26.9 (chdb), 2026-12-04
        let ids = [
            "01000000-0000-0000-0000-000000000000",
            "00000000-0000-0001-0000-000000000001",
            "00000000-0000-0000-0000-000000000002",
            "00000000-0000-0000-0000-000000000003",
            "00000000-0000-0000-0000-000000000100",
            "00000000-0000-0000-0100-000000000000",
        ]
        .map(|id| EventKey::new(0, &uuid::Uuid::parse_str(id).unwrap()));
        assert!(ids.is_sorted() && ids.windows(2).all(|w| w[0] != w[1]));
        // the day first
        let max = uuid::Uuid::max();
        assert!(EventKey::new(86_399, &max) < EventKey::new(86_400, &uuid::Uuid::nil()));
        assert_eq!(EventKey::new(0, &max), EventKey::new(86_399, &max));
    }
}
