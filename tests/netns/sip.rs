//! SIP clients in namespace B: request builders, UDP sockets, and waiting
//! for the answers to a batch of requests (matched by Call-ID).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use crate::topo::Topo;

/// A UDP socket created in namespace B (non-blocking).
pub struct Client {
    pub sock: UdpSocket,
    pub local: SocketAddr,
}

/// What came back for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered(u16),
    Silent,
}

impl Client {
    /// Binds 10.S.T.`host`:0 in namespace B.
    pub fn bind(topo: &Topo, host: u8) -> Client {
        let ip = topo.host(host);
        let sock = topo
            .in_b(|| UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind UDP {ip}:0 in namespace B: {e}")));
        sock.set_nonblocking(true).expect("non-blocking client socket");
        let local = sock.local_addr().expect("client local address");
        Client { sock, local }
    }

    /// `count` clients on 10.S.T.`host`, each with its own port.
    pub fn many(topo: &Topo, host: u8, count: usize) -> Vec<Client> {
        let ip = topo.host(host);
        let socks = topo.in_b(|| {
            (0..count)
                .map(|_| UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind UDP {ip}:0 in B: {e}")))
                .collect::<Vec<_>>()
        });
        socks
            .into_iter()
            .map(|sock| {
                sock.set_nonblocking(true).expect("non-blocking client socket");
                let local = sock.local_addr().expect("client local address");
                Client { sock, local }
            })
            .collect()
    }

    pub fn send(&self, dst: SocketAddr, data: &[u8]) {
        // A full send buffer is retried briefly: every datagram counted as
        // sent must really have left.
        for _ in 0..1000 {
            match self.sock.send_to(data, dst) {
                Ok(n) if n == data.len() => return,
                Ok(n) => panic!("short send to {dst}: {n} of {}", data.len()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("send from {} to {dst}: {e}", self.local),
            }
        }
        panic!("send from {} to {dst}: socket stayed full for 1 s", self.local);
    }

    /// Every datagram waiting on the socket now.
    pub fn recv_all(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65_536];
        // Bounded: a socket buffer holds far fewer datagrams than this.
        for _ in 0..100_000 {
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => out.push(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("recv on {}: {e}", self.local),
            }
        }
        out
    }

    /// Sends `req` once and waits up to `timeout` for the answer with
    /// Call-ID `call_id` (other datagrams are ignored).
    pub fn exchange(&self, dst: SocketAddr, req: &[u8], call_id: &str, timeout: Duration) -> Outcome {
        self.send(dst, req);
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            for d in self.recv_all() {
                let r = Response::parse(&d);
                if r.call_id == call_id && r.status >= 200 {
                    return Outcome::Answered(r.status);
                }
            }
            thread::sleep(Duration::from_millis(2));
        }
        Outcome::Silent
    }
}

/// The parts of a response the tests look at.
pub struct Response {
    pub status: u16,
    pub call_id: String,
}

impl Response {
    /// Parses a datagram that must be a SIP response with a Call-ID.
    pub fn parse(d: &[u8]) -> Response {
        let text = String::from_utf8_lossy(d);
        let status = text
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not a SIP response:\n{text}"));
        let call_id = text
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim();
                (n.eq_ignore_ascii_case("call-id") || n.eq_ignore_ascii_case("i")).then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no Call-ID in response:\n{text}"));
        Response { status, call_id }
    }
}

/// A request in a batch: who sends it, and what came back.
pub struct Req {
    pub client: usize,
    pub call_id: String,
    pub bytes: Vec<u8>,
    pub sends: u32,
    pub status: Option<u16>,
}

impl Req {
    pub fn new(client: usize, call_id: String, bytes: Vec<u8>) -> Req {
        Req { client, call_id, bytes, sends: 0, status: None }
    }
}

/// Sends `req` from its client.
pub fn send(clients: &[Client], dst: SocketAddr, req: &mut Req) {
    clients[req.client].send(dst, &req.bytes);
    req.sends += 1;
}

/// Reads every waiting answer into `reqs` (final responses only); panics on
/// an answer to nothing in the batch. Returns how many are still unanswered.
pub fn collect(clients: &[Client], reqs: &mut [Req]) -> usize {
    let index: HashMap<String, usize> = reqs.iter().enumerate().map(|(i, r)| (r.call_id.clone(), i)).collect();
    for (ci, c) in clients.iter().enumerate() {
        for d in c.recv_all() {
            let r = Response::parse(&d);
            if r.status < 200 {
                continue;
            }
            let i = *index.get(&r.call_id).unwrap_or_else(|| {
                panic!("client {} got an answer to a request it never sent:\n{}", c.local, String::from_utf8_lossy(&d))
            });
            assert_eq!(reqs[i].client, ci, "answer for {} arrived on another socket", r.call_id);
            if let Some(old) = reqs[i].status {
                assert_eq!(old, r.status, "two different final answers for {}", r.call_id);
            }
            reqs[i].status = Some(r.status);
        }
    }
    reqs.iter().filter(|r| r.status.is_none()).count()
}

/// Waits up to `timeout` until every request of the batch is answered,
/// re-sending the unanswered ones every `resend` (None: never). Returns the
/// number still unanswered at the end.
pub fn settle(
    clients: &[Client],
    dst: SocketAddr,
    reqs: &mut [Req],
    timeout: Duration,
    resend: Option<Duration>,
) -> usize {
    let end = Instant::now() + timeout;
    let mut resend_at = resend.map(|r| Instant::now() + r);
    loop {
        let missing = collect(clients, reqs);
        let now = Instant::now();
        if missing == 0 || now >= end {
            return missing;
        }
        if let (Some(at), Some(every)) = (resend_at, resend)
            && now >= at
        {
            for r in reqs.iter_mut().filter(|r| r.status.is_none()) {
                send(clients, dst, r);
            }
            resend_at = Some(now + every);
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// A branch parameter for a Call-ID (RFC 3261 magic cookie + the id's
/// token characters).
fn branch(call_id: &str) -> String {
    let tail: String = call_id.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("z9hG4bK{tail}")
}

/// OPTIONS sip:`domain`, optionally with a User-Agent.
pub fn options(domain: &str, local: SocketAddr, call_id: &str, ua: Option<&str>) -> Vec<u8> {
    let ua = ua.map(|u| format!("User-Agent: {u}\r\n")).unwrap_or_default();
    format!(
        "OPTIONS sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{domain}>;tag=netns\r\n\
         To: <sip:{domain}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         {ua}\
         Content-Length: 0\r\n\r\n",
        branch(call_id)
    )
    .into_bytes()
}

/// INVITE sip:100@`domain` with a minimal SDP offer.
pub fn invite(domain: &str, local: SocketAddr, call_id: &str) -> Vec<u8> {
    let ip = local.ip();
    let sdp = format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n");
    format!(
        "INVITE sip:100@{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:101@{domain}>;tag=netns\r\n\
         To: <sip:100@{domain}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:101@{local}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        branch(call_id),
        sdp.len()
    )
    .into_bytes()
}

/// REGISTER sip:`domain` for `user`, binding the client's address for 60 s.
pub fn register(domain: &str, user: &str, local: SocketAddr, call_id: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{domain}>;tag=netns\r\n\
         To: <sip:{user}@{domain}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@{local}>;expires=60\r\n\
         Expires: 60\r\n\
         Content-Length: 0\r\n\r\n",
        branch(call_id)
    )
    .into_bytes()
}

/// `count` datagrams that are not SIP: deterministic random bytes, an
/// HTTP request, a CRLF keep-alive and an empty datagram.
pub fn garbage(count: usize) -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let fixed: [&[u8]; 4] =
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n", b"", b"\x00\x01\x00\x00\x21\x12\xa4\x42"];
    (0..count)
        .map(|i| match fixed.get(i) {
            Some(f) => f.to_vec(),
            None => {
                let len = 16 + (next() % 300) as usize;
                // Bytes >= 0x80 first: never a method or "SIP/2.0".
                let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                d[0] |= 0x80;
                d
            }
        })
        .collect()
}
