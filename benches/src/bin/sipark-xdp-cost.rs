//! `sipark-xdp-cost`: what the XDP program costs per frame, in the kernel
//! (`BPF_PROG_TEST_RUN`, the kernel's own timing of each run: the program,
//! JIT compiled, without a driver or a transmit), for the cases of overload
//! control in XDP (docs/decisions/0022-overload-503-in-xdp.md): a park
//! INVITE passed as today, passed after the admission hash was read, turned
//! into a 503 and sent back, and an ACK of an overload 503 dropped. Needs
//! root. Prints one line per case: nanoseconds per frame, and the frame's
//! size in and out.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sipark::bpf::abi::SHED_ONE;
use sipark::bpf::{DEFAULT_SCANNERS, XdpConfig, XdpMode, XdpShed, XdpTester, monotonic_ns};
use sipark::proto::overload::admission_hash;

/// Times the XDP program on park INVITEs and ACKs, refused and not.
#[derive(Debug, Parser)]
#[command(name = "sipark-xdp-cost", version, about)]
struct Args {
    /// Runs of each case, one `BPF_PROG_TEST_RUN` each (the kernel times
    /// each run; the mean is printed).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    repeat: u32,
    /// Rounds of all the cases, each printed (to see the spread).
    #[arg(long, value_name = "N", default_value_t = 3)]
    rounds: u32,
}

const KEY: u32 = 0x0bad_cafe;

/// A park INVITE as sipark-load sends it (SDP included), over IPv4.
fn frame(method: &str, call_id: &str, to_tag: &str) -> Vec<u8> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\n\
               a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n";
    let body = if method == "INVITE" { sdp } else { "" };
    let sip = format!(
        "{method} sip:*68103@acme.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:40000;branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:101@acme.example>;tag=a1b2c3\r\n\
         To: <sip:*68103@acme.example>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:101@192.0.2.1:40000>\r\n\
         Referred-By: <sip:102@acme.example>\r\n\
         User-Agent: Load/1.0\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let udp_len = 8 + sip.len();
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1]);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&5060u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(sip.as_bytes());
    f
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = XdpConfig {
        ifaces: Vec::new(),
        mode: XdpMode::Auto,
        ports: vec![5060],
        strict: true,
        tenants: vec![("acme.example".to_owned(), None)],
        default_rate: None,
        block: Vec::new(),
        scanners: DEFAULT_SCANNERS.iter().map(|s| (*s).to_owned()).collect(),
        shards: 1,
        shed: Some(XdpShed { key: KEY, retry_after: (4, 8), retrieve_fac: "*88".to_owned() }),
    };
    let (mut t, mut shed) = match XdpTester::load(&cfg).and_then(|t| t.shed().map(|s| (t, s))) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("sipark-xdp-cost: loading the XDP program: {e}");
            return ExitCode::from(2);
        }
    };
    // A Call-ID whose hash is in the upper half: admitted at a half share.
    let admitted = (0..)
        .map(|i| format!("{i}-cost@192.0.2.1"))
        .find(|c| admission_hash(KEY, c.as_bytes(), 1) >> 16 >= SHED_ONE / 2)
        .unwrap_or_default();
    let invite = frame("INVITE", &admitted, "");
    let ack = frame("ACK", &admitted, ";tag=ovl-0a1b2c3d");
    let far = monotonic_ns() + 3_600_000_000_000;
    // (name, frame, refused share, ACK window until, expected action)
    let cases: [(&str, &[u8], u32, u64, u32); 5] = [
        ("invite_pass", &invite, 0, 0, 2),
        ("invite_pass_hashed", &invite, SHED_ONE / 2, far, 2),
        ("invite_shed_503", &invite, SHED_ONE, far, 3),
        ("ack_pass", &ack, 0, 0, 2),
        ("ack_shed_drop", &ack, 0, far, 1),
    ];
    println!("case                   ns/frame  bytes in  bytes out  ({} runs each)", args.repeat);
    for round in 0..args.rounds {
        for (name, f, refuse, until, want) in &cases {
            if let Err(e) = shed.set(0, *refuse, *until) {
                eprintln!("sipark-xdp-cost: the shed map: {e}");
                return ExitCode::from(2);
            }
            // One run per call: with a repeat count the kernel runs the
            // program again on the frame the last run left, which for the
            // 503 is no longer the INVITE. The kernel times each run.
            let mut total = Duration::ZERO;
            let mut out_len = 0;
            for _ in 0..args.repeat {
                match t.run_repeat(f, 1) {
                    Ok((action, out, took)) if action == *want => {
                        total += took;
                        out_len = out.len();
                    }
                    Ok((action, ..)) => {
                        eprintln!("sipark-xdp-cost: {name}: XDP action {action}, expected {want}");
                        return ExitCode::from(2);
                    }
                    Err(e) => {
                        eprintln!("sipark-xdp-cost: {name}: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            let mean = total.as_nanos() / u128::from(args.repeat.max(1));
            println!("{name:<22} {mean:>8}  {:>8}  {out_len:>9}  (round {round})", f.len());
        }
    }
    ExitCode::SUCCESS
}
