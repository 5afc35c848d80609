//! Turning fuzz bytes into a fixed header and fuzzer-chosen chunkings, so one input decides the
//! content and how it is split into deltas, body chunks or frames.

/// The first `N` bytes (zeros past the end) and the rest.
pub fn header<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut head = [0u8; N];
    let n = data.len().min(N);
    head[..n].copy_from_slice(&data[..n]);
    (head, &data[n..])
}

/// Piece lengths 0–31 taken in turn from `seed` (0 = an empty piece); all of `data` is covered.
fn lengths(seed: &[u8], total: usize) -> impl Iterator<Item = usize> + '_ {
    // An all-zero seed would never advance: after a bounded number of pieces, take the rest.
    let cycle = seed.iter().map(|b| usize::from(b % 32)).collect::<Vec<_>>();
    let cycle = if cycle.iter().all(|n| *n == 0) {
        vec![total.max(1)]
    } else {
        cycle
    };
    cycle.into_iter().cycle()
}

/// `data` cut into pieces whose byte lengths come from `seed`.
pub fn pieces<'a>(data: &'a [u8], seed: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    for len in lengths(seed, data.len()) {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(len.min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

/// `text` cut at char boundaries into pieces whose lengths in chars come from `seed`.
pub fn char_pieces<'a>(text: &'a str, seed: &[u8]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    for len in lengths(seed, text.len()) {
        if rest.is_empty() {
            break;
        }
        let end = rest
            .char_indices()
            .nth(len)
            .map_or(rest.len(), |(at, _)| at);
        out.push(&rest[..end]);
        rest = &rest[end..];
    }
    out
}
