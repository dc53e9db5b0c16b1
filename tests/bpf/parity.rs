//! The kernel's shard hash (ebpf/sipark.h, run by `sipark_parity`) against
//! `tests/vectors/shard_of.txt` and `sipark::proto::route`.

use sipark::bpf::abi::PARITY_SHARD_COUNTS;
use sipark::bpf::parity;
use sipark::proto::route::{shard_of, tenant_hash};

use crate::require_bpf;

const VECTORS: &str = include_str!("../vectors/shard_of.txt");

fn kernel(domain: &[u8]) -> (u32, [u16; 6]) {
    parity(domain).unwrap_or_else(|e| panic!("parity({:?}): {e}", String::from_utf8_lossy(domain)))
}

fn rust(domain: &[u8]) -> (u32, [u16; 6]) {
    let mut shards = [0u16; 6];
    for (s, n) in shards.iter_mut().zip(PARITY_SHARD_COUNTS) {
        *s = shard_of(domain, n);
    }
    (tenant_hash(domain), shards)
}

#[test]
fn shared_vectors_match_the_kernel() {
    require_bpf();
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
        let want_hash = u32::from_str_radix(hash, 16).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let mut want_shards = [0u16; 6];
        for (w, s) in want_shards.iter_mut().zip(shards.split(' ')) {
            *w = s.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
        let (h, s) = kernel(domain.as_bytes());
        assert_eq!(h, want_hash, "kernel hash of {name}: {h:08x}, file says {want_hash:08x}");
        assert_eq!(s, want_shards, "kernel shards of {name}");
        assert_eq!((h, s), rust(domain.as_bytes()), "kernel vs route.rs for {name}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} vectors in shard_of.txt");
}

/// xorshift64*, fixed seed: the same domains on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_domains_match_route_rs() {
    require_bpf();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._[]:";
    let mut rng = Rng(0x5eed_0f5b_a4c0_de01);
    for i in 0..400 {
        let len = match i % 4 {
            0 => rng.below(20),
            1 => rng.below(80),
            2 => 250 + rng.below(51), // around the 255-byte cut
            _ => rng.below(301),
        };
        let domain: Vec<u8> = (0..len)
            .map(|_| {
                if i % 5 == 0 {
                    // Any byte, to test that only ASCII A-Z is lowercased.
                    rng.next() as u8
                } else {
                    ALPHABET[rng.below(ALPHABET.len())]
                }
            })
            .collect();
        let got = kernel(&domain);
        let want = rust(&domain);
        assert_eq!(got, want, "domain #{i} ({len} bytes) {:?}: kernel vs route.rs", String::from_utf8_lossy(&domain));
    }
}

#[test]
fn parity_refuses_over_300_bytes() {
    require_bpf();
    match parity(&[b'a'; 301]) {
        Err(sipark::bpf::BpfError::Config(_)) => {}
        other => panic!("a 301-byte domain must be refused, got {other:?}"),
    }
}
