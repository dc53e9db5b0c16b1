//! Names for the things a shard keeps in its tables, and where they and
//! every other random-looking value come from.
//!
//! Every id is a `NonZeroU64` newtype, so `Option<Id>` costs nothing and no
//! id value means "none". All ids of a shard come from one counter
//! ([`Ids`]), which starts from the wall clock at start-up so that the
//! public ones (a call's `call=` token, the transaction id in a branch)
//! differ across restarts.
//!
//! Entropy comes in from the caller as a [`Seed`] (as quinn's
//! `EndpointConfig::rng_seed` does): the I/O layer draws it from the
//! operating system, a simulation passes a fixed one and gets the same run
//! bit for bit. [`Seed::hasher`] keys the SipHash of every map whose keys a
//! peer chooses (Call-IDs, branches, AORs), so that collisions cannot be
//! forced; [`Rng`] makes tags and Call-IDs, which must be unique, not
//! secret.

use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU64;

use siphasher::sip::SipHasher13;

macro_rules! ids {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {$(
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(NonZeroU64);

        impl $name {
            /// The number behind the id (never 0).
            pub fn get(self) -> u64 {
                self.0.get()
            }

            /// The id with number `n`, if `n` is not 0.
            pub fn new(n: u64) -> Option<$name> {
                NonZeroU64::new(n).map($name)
            }
        }
    )*};
}

ids! {
    /// A call that entered the park; its number is the `call=` token of
    /// the retrieve URI ([`super::park::write_token`]).
    CallId,
    /// A server transaction.
    ServerId,
    /// A client transaction; its number is written in the branch.
    ClientId,
    /// An extension of a tenant (`ext@tenant`), as the park or the
    /// registrar knows it.
    ExtId,
}

impl CallId {
    /// Writes the `call=` token of the retrieve URI: base 36 of the id.
    pub fn write_token(self, out: &mut Vec<u8>) {
        let mut id = self.get();
        let mut digits = [0u8; 13];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdefghijklmnopqrstuvwxyz"[(id % 36) as usize];
            id /= 36;
            if id == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[i..]);
    }

    /// Reads a `call=` token (any case).
    pub fn from_token(token: &[u8]) -> Option<CallId> {
        if token.is_empty() || token.len() > 13 {
            return None;
        }
        let n = token.iter().try_fold(0u64, |acc, &c| {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'z' => c - b'a' + 10,
                b'A'..=b'Z' => c - b'A' + 10,
                _ => return None,
            };
            acc.checked_mul(36)?.checked_add(u64::from(d))
        })?;
        CallId::new(n)
    }

    /// The token as text, for logs.
    pub fn token(self) -> String {
        let mut out = Vec::with_capacity(13);
        self.write_token(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The shard's id counter.
#[derive(Debug)]
pub struct Ids(u64);

impl Ids {
    /// Ids starting after `start` (0 is never handed out).
    pub fn starting_at(start: u64) -> Ids {
        Ids(start)
    }

    /// Ids stay below 2^63, so a table may keep a flag in an id's top bit
    /// (the dialog index keeps a leg's side there). Wrapping would take
    /// 2^63 ids; it skips 0 all the same.
    fn next(&mut self) -> NonZeroU64 {
        self.0 = (self.0.wrapping_add(1) & (u64::MAX >> 1)).max(1);
        NonZeroU64::new(self.0).unwrap_or(NonZeroU64::MIN)
    }

    pub fn call(&mut self) -> CallId {
        CallId(self.next())
    }

    pub fn server(&mut self) -> ServerId {
        ServerId(self.next())
    }

    pub fn client(&mut self) -> ClientId {
        ClientId(self.next())
    }

    pub fn ext(&mut self) -> ExtId {
        ExtId(self.next())
    }
}

/// The hasher of maps keyed by a shard's own ids: a multiply and a
/// rotate (ids come from a counter, so no peer can choose them, and a
/// keyed hash would buy nothing). The same ids land in the same buckets
/// every run.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHash;

/// [`IdHash`]'s state.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHasher(u64);

impl BuildHasher for IdHash {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing spreads consecutive ids over the high bits,
        // which hashbrown uses for its control bytes.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// A map keyed by a shard's own ids.
pub type IdMap<K, V> = hashbrown::HashMap<K, V, IdHash>;

/// The entropy a shard is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 32]);

impl Seed {
    /// A seed spread from one number (tests and simulations).
    pub fn from_u64(n: u64) -> Seed {
        let mut out = [0u8; 32];
        let mut x = n ^ 0x9e37_79b9_7f4a_7c15;
        for chunk in out.chunks_exact_mut(8) {
            x = splitmix(&mut x);
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        Seed(out)
    }

    fn word(&self, i: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    }

    /// The keyed hasher for maps keyed by bytes a peer chooses. `salt`
    /// gives each table its own keys.
    pub fn hasher(&self, salt: u64) -> Keyed {
        Keyed { k0: self.word(0) ^ salt, k1: self.word(1).rotate_left(17) ^ salt }
    }

    /// The generator for tags, Call-IDs and SDP session ids.
    pub fn rng(&self) -> Rng {
        Rng::new(self.word(2) ^ self.word(3).rotate_left(32))
    }
}

/// SipHash-1-3 with the keys of a [`Seed`] (the algorithm and rounds of
/// the standard library's `RandomState`, with keys the caller chose).
#[derive(Debug, Clone, Copy)]
pub struct Keyed {
    k0: u64,
    k1: u64,
}

impl Keyed {
    /// The hash of a key of bytes, in one pass. No length prefix is
    /// written (a table hashes keys of one kind, and SipHash's last block
    /// carries the length), which `hash_one(&[u8])` would add.
    pub fn bytes(&self, key: &[u8]) -> u64 {
        SipHasher13::new_with_keys(self.k0, self.k1).hash(key)
    }

    /// The hash of the key `a` then `b`. `b`'s length closes the input,
    /// so `(a, b)` and `(a', b')` hash alike only if `a‖b = a'‖b'` and the
    /// lengths of `b` agree (mod 256): the pairs a table holds are told
    /// apart.
    pub fn pair(&self, a: &[u8], b: &[u8]) -> u64 {
        // Usually hashed in one pass from a copy on the stack (a Call-ID
        // and a tag fit): the same bytes as the three writes below.
        let mut joined = [0u8; 96];
        let n = a.len() + b.len();
        if let Some(dst) = joined.get_mut(..n + 1) {
            dst[..a.len()].copy_from_slice(a);
            dst[a.len()..n].copy_from_slice(b);
            dst[n] = b.len() as u8;
            return self.bytes(dst);
        }
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(a);
        h.write(b);
        h.write_u8(b.len() as u8);
        h.finish()
    }
}

impl BuildHasher for Keyed {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

/// xorshift64*: tags and Call-IDs need to be unique, not secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_zero_and_increase() {
        let mut ids = Ids::starting_at(0);
        let a = ids.call();
        let b = ids.client();
        assert_eq!((a.get(), b.get()), (1, 2));
        let mut wrap = Ids::starting_at((1 << 63) - 2);
        assert_eq!(wrap.ext().get(), (1 << 63) - 1);
        assert_eq!(wrap.ext().get(), 1, "ids stay below 2^63, and the counter skips 0 when it wraps");
        assert_eq!(size_of::<Option<CallId>>(), 8);
    }

    #[test]
    fn tokens_round_trip() {
        for n in [1u64, 35, 36, 123_456_789, u64::MAX] {
            let id = CallId::new(n).expect("non-zero");
            let mut out = Vec::new();
            id.write_token(&mut out);
            assert_eq!(CallId::from_token(&out), Some(id), "{}", String::from_utf8_lossy(&out));
            assert_eq!(CallId::from_token(&out.to_ascii_uppercase()), Some(id));
        }
        assert_eq!(CallId::from_token(b""), None);
        assert_eq!(CallId::from_token(b"0"), None, "0 names no call");
        assert_eq!(CallId::from_token(b"k3x-9"), None);
        assert_eq!(CallId::from_token(b"zzzzzzzzzzzzz"), None, "overflow");
    }

    #[test]
    fn a_seed_gives_the_same_keys_and_numbers_every_time() {
        let (a, b) = (Seed::from_u64(7), Seed::from_u64(7));
        assert_eq!(a, b);
        assert_ne!(a, Seed::from_u64(8));
        assert_eq!(a.hasher(1).hash_one(b"x"), b.hasher(1).hash_one(b"x"));
        assert_ne!(a.hasher(1).hash_one(b"x"), a.hasher(2).hash_one(b"x"), "each table has its own keys");
        assert_ne!(a.hasher(1).hash_one(b"x"), Seed::from_u64(8).hasher(1).hash_one(b"x"));
        let (mut r, mut s) = (a.rng(), b.rng());
        assert_eq!((r.next_u64(), r.next_u64()), (s.next_u64(), s.next_u64()));
    }

    #[test]
    fn one_pass_hashes_are_keyed_and_tell_pairs_apart() {
        let (k, other) = (Seed::from_u64(7).hasher(1), Seed::from_u64(7).hasher(2));
        assert_eq!(k.bytes(b"a@example.com"), Seed::from_u64(7).hasher(1).bytes(b"a@example.com"));
        assert_ne!(k.bytes(b"a@example.com"), other.bytes(b"a@example.com"));
        assert_ne!(k.bytes(b"a@example.com"), k.bytes(b"b@example.com"));
        // SipHash-1-3 with these keys over the same bytes: what a
        // `Hasher` fed one `write` gives.
        let mut h = k.build_hasher();
        h.write(b"a@example.com");
        assert_eq!(k.bytes(b"a@example.com"), h.finish());
        assert_eq!(k.pair(b"call", b"tag"), k.pair(b"call", b"tag"));
        assert_ne!(k.pair(b"ab", b"c"), k.pair(b"a", b"bc"), "the split of a pair counts");
        assert_ne!(k.pair(b"call", b"tag"), k.bytes(b"calltag"));
        // Short pairs are hashed from a copy, long ones by parts: the same.
        let long = [b'x'; 200];
        let mut h = k.build_hasher();
        h.write(&long);
        h.write(b"tag");
        h.write_u8(3);
        assert_eq!(k.pair(&long, b"tag"), h.finish());
        let mut h = k.build_hasher();
        h.write(b"call");
        h.write(b"tag");
        h.write_u8(3);
        assert_eq!(k.pair(b"call", b"tag"), h.finish());
        assert_eq!(k.pair(b"call", b"tag"), k.bytes(b"calltag\x03"));
    }
}
