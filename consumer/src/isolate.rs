//! Finding the entries of a batch that ClickHouse refuses, by splitting the batch in
//! halves until each refused part is a single entry.
//!
//! A permanent error names no row, so the only way to keep the good entries of a batch
//! flowing is to retry smaller parts: a batch of n entries with k bad ones costs about
//! 2·k·log2(n) inserts, paid only when ClickHouse refuses data.

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

#[cfg(test)]
mod tests {
    use super::*;

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
