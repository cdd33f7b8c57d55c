//! `Range` header parts, merged before the WebDAV layer serves them.
//!
//! dav-server answers every part of a multi-part `Range` with its own
//! seek, read and multipart header; a GET asking for thousands of tiny
//! parts cost ~170 times a whole download. Overlapping and adjacent parts
//! are merged here (RFC 9110, 14.2 allows a server to), and a request that
//! still has more than `limits.range_parts` parts is refused by the caller
//! with 416. A header that is not a valid `bytes=` list is left alone: the
//! WebDAV layer ignores such a header and serves the whole file.

/// What became of a `Range` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Merged {
    /// Nothing to merge, within the cap (or not a header this module reads).
    Unchanged,
    /// Parts were merged; the new header value.
    Rewritten(String),
    /// More parts than allowed remain after merging.
    TooMany(usize),
}

/// One part: `first-last`, `first-` (to the end) or `-suffix` (last bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Span { first: u64, last: Option<u64> },
    Suffix(u64),
}

/// Merges the parts of `value` and checks their count against `max`.
pub fn merge(value: &str, max: usize) -> Merged {
    let Some(parts) = parse(value) else {
        return Merged::Unchanged;
    };
    let original = parts.len();
    let merged = merge_parts(parts);
    if merged.len() > max {
        return Merged::TooMany(merged.len());
    }
    if merged.len() == original {
        return Merged::Unchanged;
    }
    Merged::Rewritten(render(&merged))
}

fn parse(value: &str) -> Option<Vec<Part>> {
    let list = value.trim().strip_prefix("bytes=")?;
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_part)
        .collect()
}

fn parse_part(spec: &str) -> Option<Part> {
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return last.parse().ok().map(Part::Suffix);
    }
    let first: u64 = first.parse().ok()?;
    if last.is_empty() {
        return Some(Part::Span { first, last: None });
    }
    let last: u64 = last.parse().ok()?;
    (last >= first).then_some(Part::Span {
        first,
        last: Some(last),
    })
}

/// Sorted spans with overlapping or adjacent ones joined, plus the largest
/// suffix part (suffixes cannot be placed without the file's size, and the
/// largest contains the others).
fn merge_parts(parts: Vec<Part>) -> Vec<Part> {
    let mut spans: Vec<(u64, Option<u64>)> = Vec::new();
    let mut suffix: Option<u64> = None;
    for p in parts {
        match p {
            Part::Span { first, last } => spans.push((first, last)),
            Part::Suffix(n) => suffix = Some(suffix.map_or(n, |s| s.max(n))),
        }
    }
    spans.sort_unstable_by_key(|s| s.0);
    let mut out: Vec<(u64, Option<u64>)> = Vec::with_capacity(spans.len());
    for (first, last) in spans {
        match out.last_mut() {
            Some((_, prev_last)) if touches(*prev_last, first) => {
                *prev_last = match (*prev_last, last) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => out.push((first, last)),
        }
    }
    let mut merged: Vec<Part> = out
        .into_iter()
        .map(|(first, last)| Part::Span { first, last })
        .collect();
    merged.extend(suffix.map(Part::Suffix));
    merged
}

/// Whether a span ending at `prev_last` (None: the end of the file) reaches
/// or adjoins one starting at `first`.
fn touches(prev_last: Option<u64>, first: u64) -> bool {
    prev_last.is_none_or(|l| first <= l.saturating_add(1))
}

fn render(parts: &[Part]) -> String {
    let specs: Vec<String> = parts
        .iter()
        .map(|p| match p {
            Part::Span {
                first,
                last: Some(l),
            } => format!("{first}-{l}"),
            Part::Span { first, last: None } => format!("{first}-"),
            Part::Suffix(n) => format!("-{n}"),
        })
        .collect();
    format!("bytes={}", specs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_ordinary_ranges_alone() {
        assert_eq!(merge("bytes=0-99", 4), Merged::Unchanged);
        assert_eq!(merge("bytes=0-9,20-29,-5", 4), Merged::Unchanged);
        assert_eq!(merge("items=0-9", 4), Merged::Unchanged);
        assert_eq!(merge("bytes=9-0", 4), Merged::Unchanged);
    }

    #[test]
    fn merges_overlapping_and_adjacent_parts() {
        assert_eq!(
            merge("bytes=10-19,0-9,5-12,30-", 4),
            Merged::Rewritten("bytes=0-19,30-".into())
        );
        assert_eq!(
            merge("bytes=100-,0-0,1-1,150-200,-10,-20", 4),
            Merged::Rewritten("bytes=0-1,100-,-20".into())
        );
    }

    #[test]
    fn thousands_of_tiny_parts_merge_or_are_refused() {
        let adjacent: Vec<String> = (0..5000).map(|i| format!("{i}-{i}")).collect();
        assert_eq!(
            merge(&format!("bytes={}", adjacent.join(",")), 64),
            Merged::Rewritten("bytes=0-4999".into())
        );
        let apart: Vec<String> = (0..5000).map(|i| format!("{}-{}", i * 3, i * 3)).collect();
        assert_eq!(
            merge(&format!("bytes={}", apart.join(",")), 64),
            Merged::TooMany(5000)
        );
    }
}
