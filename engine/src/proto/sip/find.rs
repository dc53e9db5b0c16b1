//! Byte searches the parser and the writers share: one byte value found
//! many times over (the line ends of a message), and whether every byte
//! of a value is in a class.
//!
//! On x86-64, memchr's AVX2 searcher is made once and called directly
//! where the CPU has AVX2. `memchr::memchr()` picks its searcher through a
//! function pointer on every call, which costs about as much as the search
//! itself on the short runs a message is made of (a header line): about
//! 2,100 instructions of a park cycle, under callgrind. For one search,
//! `memchr()` is as cheap.

/// A searcher for one byte value, made once and used for many searches
/// (the line ends of a message).
#[derive(Debug, Clone, Copy)]
pub struct Byte {
    needle: u8,
    #[cfg(target_arch = "x86_64")]
    avx2: Option<memchr::arch::x86_64::avx2::memchr::One>,
}

impl Byte {
    #[inline]
    pub fn new(needle: u8) -> Byte {
        Byte {
            needle,
            #[cfg(target_arch = "x86_64")]
            avx2: memchr::arch::x86_64::avx2::memchr::One::new(needle),
        }
    }

    /// The index of the first `needle` in `hay`.
    #[inline]
    pub fn find(self, hay: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if let Some(one) = self.avx2 {
            return one.find(hay);
        }
        memchr::memchr(self.needle, hay)
    }
}

/// Are all bytes of `s` in `class`? Eight bytes a step without a branch
/// per byte: the values checked are short, and most are valid.
#[inline]
pub fn all_in(class: &[bool; 256], s: &[u8]) -> bool {
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        if !c.iter().fold(true, |ok, &b| ok & class[usize::from(b)]) {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| class[usize::from(b)])
}

/// Checks a scanner, `scan(s, from)`, against a byte-at-a-time search for
/// the first byte at or after `from` that `is_stop` takes (`s.len()` if
/// none), on every length below `max_len`: `fill` repeated, with each of
/// `stops` at every place and, `gap` bytes after it, `then` (two stops in
/// one chunk).
#[cfg(test)]
pub fn assert_finds_the_first_stop(
    max_len: usize,
    fill: &[u8],
    stops: &[u8],
    (then, gap): (u8, usize),
    scan: impl Fn(&[u8], usize) -> usize,
    is_stop: impl Fn(u8) -> bool,
) {
    for len in 0..max_len {
        for first in 0..=len {
            for &stop in stops {
                let mut s: Vec<u8> = (0..len).map(|i| fill[i % fill.len()]).collect();
                if first < len {
                    s[first] = stop;
                    if first + gap < len {
                        s[first + gap] = then;
                    }
                }
                for from in 0..=len {
                    let naive = (from..len).find(|&i| is_stop(s[i])).unwrap_or(len);
                    assert_eq!(scan(&s, from), naive, "{:?} from {from}", String::from_utf8_lossy(&s));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_memchr_finds_at_every_length_and_place() {
        // Lengths around the 16- and 32-byte vector widths, the needle at
        // every place, twice, or not at all.
        let find = |s: &[u8], from: usize| Byte::new(b'\n').find(&s[from..]).map_or(s.len(), |i| from + i);
        assert_finds_the_first_stop(100, b"a", b"\n", (b'\n', 17), find, |b| b == b'\n');
    }
}
