//! Finding the entries that break loading, so that the rest keeps flowing.
//!
//! - [`isolate`]: entries ClickHouse refuses, by splitting the batch in halves until each
//!   refused part is a single entry. A permanent error names no row, so the only way to
//!   keep the good entries of a batch flowing is to retry smaller parts: a batch of n
//!   entries with k bad ones costs about 2·k·log2(n) inserts, paid only when ClickHouse
//!   refuses data.
//! - [`crash_parts`]: entries during whose load the consumer died, by the same search
//!   spread over restarts: each interrupted load makes the parts of its entries four times
//!   smaller, so an entry that kills the consumer is alone in its part by its last attempt,
//!   and the healthy entries that shared its first parts load before reaching the limit.

use std::{future::Future, ops::Range};

/// What splitting found: results of the parts that loaded, and each refused entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Isolated<T, E> {
    /// Each part that loaded, with what writing it returned.
    pub loaded: Vec<(Range<usize>, T)>,
    /// Each single entry that was refused, with the error.
    pub refused: Vec<(usize, E)>,
}

/// Writes `0..len` with `write`; a part that fails with an error `permanent` accepts is
/// split in halves and each half written again, down to single entries. Any other error
/// stops the search and is returned: the caller retries the whole batch later.
pub async fn isolate<T, E, F, Fut>(
    len: usize,
    mut write: F,
    permanent: impl Fn(&E) -> bool,
) -> Result<Isolated<T, E>, E>
where
    F: FnMut(Range<usize>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut out = Isolated {
        loaded: Vec::new(),
        refused: Vec::new(),
    };
    // Last in, first out, with the right half pushed first: parts load in stream order.
    let mut parts: Vec<Range<usize>> = Vec::new();
    parts.push(0..len);
    while let Some(part) = parts.pop() {
        if part.is_empty() {
            continue;
        }
        match write(part.clone()).await {
            Ok(t) => out.loaded.push((part, t)),
            Err(e) if !permanent(&e) => return Err(e),
            Err(e) if part.len() == 1 => out.refused.push((part.start, e)),
            Err(_) => {
                let mid = part.start + part.len() / 2;
                parts.push(mid..part.end);
                parts.push(part.start..mid);
            }
        }
    }
    Ok(out)
}

/// How a batch whose entries are ordered most interrupted first (`attempts`, descending)
/// is flushed: consecutive parts, each loaded and acknowledged before the next begins.
///
/// Entries never interrupted form one part. An entry interrupted `a` times shares a part
/// with at most `4^(max - 1 - a)` others of the same count: with the default limit of 5,
/// parts of 64, 16, 4 and then 1. Entries at or over the limit form one part too; they are
/// dead-lettered, not loaded.
pub fn crash_parts(attempts: &[u64], max: u64) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < attempts.len() {
        let a = attempts[start];
        let same = attempts[start..].iter().take_while(|&&x| x == a).count();
        let size = if a == 0 || a >= max {
            same
        } else {
            let exponent = (max - 1 - a).min(15) as u32;
            4usize.pow(exponent).min(same)
        };
        parts.push(start..start + size);
        start += size;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_entries_get_smaller_parts() {
        let whole = crash_parts(&[0, 0, 0], 5);
        assert_eq!((whole.len(), whole[0].clone()), (1, 0..3));
        assert_eq!(crash_parts(&[], 5), Vec::<Range<usize>>::new());
        let mut attempts = vec![4, 4, 3, 3, 3, 3, 3];
        attempts.extend(std::iter::repeat_n(1, 100));
        attempts.extend([0, 0]);
        let parts = crash_parts(&attempts, 5);
        assert_eq!(&parts[..4], &[0..1, 1..2, 2..6, 6..7]);
        assert_eq!(&parts[4..], &[7..71, 71..107, 107..109]);
        assert_eq!(crash_parts(&[7, 5, 0], 5), [0..1, 1..2, 2..3]);
        let dead = crash_parts(&[1, 1, 1], 1);
        assert_eq!(
            (dead.len(), dead[0].clone()),
            (1, 0..3),
            "at the limit: one part"
        );
    }

    /// Restarts of a consumer that dies whenever the poison entry is in the part it loads:
    /// only the poison entry reaches the limit, whatever its place in the batch.
    #[test]
    fn a_poison_entry_is_the_only_one_to_reach_the_limit() {
        const MAX: u64 = 5;
        for (len, poison) in [(1, 0), (2, 1), (100, 37), (5_000, 4_999), (20_000, 12_345)] {
            // (entry, attempts) in stream order; loaded entries leave.
            let mut pending: Vec<(usize, u64)> = (0..len).map(|e| (e, 0)).collect();
            let mut dead = Vec::new();
            let mut restarts = 0;
            while !pending.is_empty() {
                pending.sort_by_key(|&(_, a)| std::cmp::Reverse(a));
                let attempts: Vec<u64> = pending.iter().map(|&(_, a)| a).collect();
                let mut done = 0;
                for part in crash_parts(&attempts, MAX) {
                    if pending[part.start].1 >= MAX {
                        dead.extend(pending[part.clone()].iter().map(|&(e, _)| e));
                        done = part.end;
                        continue;
                    }
                    if pending[part.clone()].iter().any(|&(e, _)| e == poison) {
                        for entry in &mut pending[part] {
                            entry.1 += 1;
                        }
                        restarts += 1;
                        break;
                    }
                    done = part.end;
                }
                pending.drain(..done);
            }
            assert_eq!(dead, [poison], "batch of {len}");
            assert_eq!(restarts, MAX, "batch of {len}");
        }
    }

    #[derive(Debug, PartialEq)]
    enum Fail {
        Bad,
        Down,
    }

    #[tokio::test]
    async fn bad_entries_are_isolated_and_the_rest_loads() {
        let bad = [3, 7, 8];
        let mut calls = 0;
        let got = isolate(
            10,
            |r: Range<usize>| {
                calls += 1;
                let fails = bad.iter().any(|b| r.contains(b));
                async move { if fails { Err(Fail::Bad) } else { Ok(r.len()) } }
            },
            |e| *e == Fail::Bad,
        )
        .await
        .unwrap();
        let refused: Vec<usize> = got.refused.iter().map(|(i, _)| *i).collect();
        assert_eq!(refused, [3, 7, 8]);
        let loaded: usize = got.loaded.iter().map(|(_, n)| n).sum();
        assert_eq!(loaded, 7, "every good entry loads exactly once");
        let starts: Vec<usize> = got.loaded.iter().map(|(r, _)| r.start).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "in stream order");
        assert!(calls <= 2 * 3 * 4 + 1, "{calls} inserts");
    }

    #[tokio::test]
    async fn a_retriable_error_stops_the_search() {
        let got = isolate(
            4,
            |r: Range<usize>| async move {
                if r.len() == 4 {
                    Err::<(), _>(Fail::Bad)
                } else {
                    Err(Fail::Down)
                }
            },
            |e| *e == Fail::Bad,
        )
        .await;
        assert_eq!(got, Err(Fail::Down));
        let all_good = isolate(
            5,
            |r: Range<usize>| async move { Ok::<_, Fail>(r) },
            |_| true,
        )
        .await
        .unwrap();
        assert_eq!(all_good.loaded.len(), 1);
        assert_eq!(all_good.loaded[0], (0..5, 0..5));
        assert!(all_good.refused.is_empty());
    }
}
