//! Shard routing: one pure function from a datagram to the shard that owns it.
//!
//! * Out-of-dialog requests belong to the shard of their tenant:
//!   [`shard_of`] over the lowercase host of the Request-URI (REGISTER: the
//!   To URI, RFC 3261 §10.3 addresses the binding by To).
//! * Responses to sipark's own requests carry the shard in the top Via
//!   branch (`z9hG4bKsp<shard>.…`), and in-dialog requests carry it in the
//!   Request-URI user part, which is sipark's Contact (`sip:sp<shard>.…@…`).
//!   Neither needs a tenant lookup.
//!
//! The hash is 32-bit FNV-1a, and the reduction to `n` shards is Lemire's
//! multiply-shift, so the BPF programs can compute the same value with one
//! bounded loop and one 64-bit multiply. The test vectors live in
//! `tests/vectors/shard_of.txt` and are shared with the BPF side.

use super::sip::parse::{Method, SipMessage};
use super::sip::write::{BRANCH_PREFIX, CONTACT_PREFIX};

/// FNV-1a 32's offset basis and prime (`SIPARK_FNV_*` in ebpf/sipark.h).
pub const FNV_OFFSET: u32 = 0x811c_9dc5;
pub const FNV_PRIME: u32 = 0x0100_0193;

/// Longest domain that is hashed; bytes past it are ignored (the BPF side
/// must bound its loop, and no DNS name is longer than 253 bytes).
pub const MAX_DOMAIN_HASHED: usize = 255;

/// FNV-1a 32 over the ASCII-lowercased bytes of `domain` (at most
/// [`MAX_DOMAIN_HASHED`] of them).
pub fn tenant_hash(domain: &[u8]) -> u32 {
    let mut h = FNV_OFFSET;
    for &b in domain.iter().take(MAX_DOMAIN_HASHED) {
        h ^= u32::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The shard that owns `domain` among `n` shards (`n >= 1`).
pub fn shard_of(domain: &[u8], n: u16) -> u16 {
    reduce(tenant_hash(domain), n)
}

/// Lemire's multiply-shift reduction of a 32-bit hash to `0..n`.
pub fn reduce(hash: u32, n: u16) -> u16 {
    ((u64::from(hash) * u64::from(n.max(1))) >> 32) as u16
}

/// Parses `<digits>.` at the start of `s`, returning the shard number.
fn embedded_shard(s: &[u8]) -> Option<u16> {
    let dot = memchr::memchr(b'.', s)?;
    let digits = &s[..dot];
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, d| Some(acc * 10 + u32::from(d - b'0'))).and_then(|v| u16::try_from(v).ok())
}

/// Shard id embedded in one of sipark's Via branches, if it is one.
pub fn shard_in_branch(branch: &[u8]) -> Option<u16> {
    branch.strip_prefix(BRANCH_PREFIX).and_then(embedded_shard)
}

/// Shard id embedded in one of sipark's Contact user parts, if it is one.
pub fn shard_in_contact_user(user: &[u8]) -> Option<u16> {
    user.strip_prefix(CONTACT_PREFIX).and_then(embedded_shard)
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This shard owns it.
    Shard(u16),
    /// No shard can be named (the message is unreadable or names no
    /// tenant): the receiving shard answers or drops it itself.
    Local,
}

/// The shard that owns `msg` among `n` shards. Pure; allocates nothing.
pub fn owner(msg: &SipMessage<'_>, n: u16) -> Owner {
    let valid = |s: u16| if s < n { Owner::Shard(s) } else { Owner::Local };
    match msg.method() {
        None => match msg.top_via().ok().and_then(|v| v.branch) {
            Some(branch) => shard_in_branch(branch).map_or(Owner::Local, valid),
            None => Owner::Local,
        },
        Some(method) => {
            let Some(ruri) = msg.request_uri_parsed() else {
                return Owner::Local;
            };
            if let Some(s) = ruri.user.and_then(shard_in_contact_user) {
                return valid(s);
            }
            let host = if method == Method::Register {
                match msg.to_hdr() {
                    Ok(to) => to.uri.host,
                    Err(_) => return Owner::Local,
                }
            } else {
                ruri.host
            };
            Owner::Shard(shard_of(host, n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_case_insensitive() {
        assert_eq!(tenant_hash(b"Acme.Example"), tenant_hash(b"acme.example"));
    }

    #[test]
    fn reduce_stays_in_range() {
        for n in 1..=64u16 {
            for h in [0u32, 1, 0x7fff_ffff, u32::MAX, 0xdead_beef] {
                assert!(reduce(h, n) < n, "reduce({h}, {n})");
            }
        }
    }

    #[test]
    fn embedded_ids() {
        assert_eq!(shard_in_branch(b"z9hG4bKsp3.1f"), Some(3));
        assert_eq!(shard_in_branch(b"z9hG4bKsp.1f"), None);
        assert_eq!(shard_in_branch(b"z9hG4bK776asdhds"), None);
        assert_eq!(shard_in_contact_user(b"sp12.k3x9f2"), Some(12));
        assert_eq!(shard_in_contact_user(b"sp99999999.x"), None);
        assert_eq!(shard_in_contact_user(b"103"), None);
    }
}

/// The shared vectors in `tests/vectors/shard_of.txt`, checked here against
/// [`tenant_hash`] and [`shard_of`]; the BPF side checks the same file.
#[cfg(test)]
mod vectors {
    use super::*;

    const VECTORS: &str = include_str!("../../../tests/vectors/shard_of.txt");
    const SHARD_COUNTS: [u16; 6] = [1, 2, 4, 16, 64, 1024];

    #[test]
    fn shared_vectors_match() {
        let mut checked = 0;
        for line in VECTORS.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let mut cols = line.split('\t');
            let (Some(name), Some(hash), Some(shards)) = (cols.next(), cols.next(), cols.next()) else {
                panic!("malformed vector line {line:?}");
            };
            let domain = match name {
                "<empty>" => String::new(),
                "z*300" => "z".repeat(300),
                d => d.to_owned(),
            };
            let want = u32::from_str_radix(hash, 16).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(tenant_hash(domain.as_bytes()), want, "hash of {name}");
            for (n, s) in SHARD_COUNTS.iter().zip(shards.split(' ')) {
                let s: u16 = s.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
                assert_eq!(shard_of(domain.as_bytes(), *n), s, "shard_of({name}, {n})");
            }
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} vectors");
    }
}
