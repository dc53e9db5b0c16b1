//! BPF tests: the XDP filter's verdicts (BPF_PROG_TEST_RUN on hand-built
//! frames), hash parity between the kernel and route.rs, and SO_REUSEPORT
//! steering on loopback sockets.
//!
//! They need the objects built (clang-19 + libbpf-dev at build time) and
//! root (or CAP_BPF + CAP_NET_ADMIN); without either they fail, saying why.

mod attach;
mod frame;
mod parity;
mod shed;
mod steer;
mod xdp;

/// Fails the calling test unless the BPF objects were compiled in.
pub fn require_bpf() {
    if let Err(e) = sipark::bpf::objects_built() {
        panic!("the BPF tests need the BPF objects, which were not built: {e}");
    }
}

#[test]
fn programs_load_within_verifier_limits() {
    require_bpf();
    let counts = sipark::bpf::verified_instructions().unwrap_or_else(|e| panic!("loading the programs: {e}"));
    assert_eq!(counts.len(), 3, "three programs: {counts:?}");
    for (name, n) in &counts {
        let n = n.unwrap_or_else(|| panic!("{name}: the kernel reported no verified instruction count"));
        println!("{name}: {n} instructions verified");
        assert!(n > 0 && n < 1_000_000, "{name}: {n} verified instructions");
    }
}
