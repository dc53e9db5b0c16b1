//! Scripted SIP user agents.
//!
//! A phone keeps its own client transactions (retransmitting requests on
//! T1 doubling until a final response, giving up after 64·T1), ACKs 2xx
//! responses (and again for every retransmitted 2xx), answers requests and
//! re-sends the same response for retransmitted requests, retransmits its
//! final INVITE responses until the ACK, and records everything it hears.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipark::proto::sip::parse::{Contact, HeaderName, Method, NameAddr, SipMessage};

use crate::parkinfo::{self, ParkInfo};
use crate::wire::Msg;

/// How a phone answers park-info NOTIFYs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyPolicy {
    /// Answer with this status code.
    Answer(u16),
    /// Never answer.
    Ignore,
}

/// A call as the phone sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallState {
    /// INVITE sent, nothing heard.
    Calling,
    /// INVITE sent/received, provisional stage.
    Ringing,
    /// Incoming call answered 200, ACK not yet received.
    Answered,
    /// Dialog confirmed.
    Confirmed,
    /// Outgoing INVITE got this final non-2xx (408: no answer at all).
    Failed(u16),
    /// Incoming INVITE was CANCELled.
    Cancelled,
    /// BYE sent and answered, or BYE received.
    Ended,
}

/// One call (dialog) of a phone.
#[derive(Debug, Clone)]
pub struct Call {
    pub incoming: bool,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Our party, name-addr without tag.
    pub local_party: String,
    /// The peer's party, name-addr without tag.
    pub remote_party: String,
    pub remote_target: Option<String>,
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub state: CallState,
    /// The SDP this phone sends (its media).
    pub local_sdp: String,
    /// The last SDP received from the peer.
    pub remote_sdp: Option<String>,
    /// Our INVITE's client transaction (outgoing calls).
    pub invite_txn: Option<usize>,
    /// The INVITE that created the call (incoming calls).
    pub invite: Option<Msg>,
    invite_branch: String,
    /// In-dialog INVITEs received.
    pub reinvites: Vec<Msg>,
    /// ACKs received (for our 2xx answers).
    pub acks: Vec<Msg>,
    /// BYEs received (first copies).
    pub byes: Vec<Msg>,
    /// CANCELs received (first copies).
    pub cancels: Vec<Msg>,
    /// In-dialog INFO and UPDATE requests received.
    pub in_dialog: Vec<Msg>,
    pub ended_by_remote: bool,
    /// When the call reached Confirmed.
    pub confirmed_at: Option<Duration>,
}

/// One request this phone sent.
#[derive(Debug, Clone)]
pub struct ClientTxn {
    pub method: String,
    pub branch: String,
    pub cseq: u32,
    pub request: Vec<u8>,
    pub call: Option<usize>,
    /// Every response received, retransmissions included.
    pub responses: Vec<Msg>,
    pub final_code: Option<u16>,
    pub timed_out: bool,
    pub retransmissions: u32,
    invite: bool,
    next: Option<Instant>,
    interval: Duration,
    give_up: Option<Instant>,
    ack: Option<Vec<u8>>,
    twoxx_seen: u32,
}

impl ClientTxn {
    /// The first final response.
    pub fn final_response(&self) -> Option<&Msg> {
        self.responses.iter().find(|r| r.code().is_some_and(|c| c >= 200))
    }

    /// Status codes of the provisional responses received.
    pub fn provisional(&self) -> Vec<u16> {
        self.responses.iter().filter_map(Msg::code).filter(|c| *c < 200).collect()
    }

    /// Has this request had its final answer (or given up)?
    pub fn done(&self) -> bool {
        self.final_code.is_some() || self.timed_out
    }
}

struct ServerTxn {
    dst: SocketAddr,
    request: Vec<u8>,
    response: Option<Vec<u8>>,
    final_code: u16,
    call: Option<usize>,
    cseq: u32,
    awaiting_ack: bool,
    next: Option<Instant>,
    interval: Duration,
    give_up: Option<Instant>,
}

/// A NOTIFY received (first copy).
#[derive(Debug, Clone)]
pub struct Notify {
    pub msg: Msg,
    pub info: Option<ParkInfo>,
}

impl Notify {
    /// The park-info body; panics if it did not parse.
    pub fn info(&self) -> &ParkInfo {
        self.info.as_ref().unwrap_or_else(|| panic!("NOTIFY body is not park-info:\n{:?}", self.msg))
    }
}

/// Most datagrams a phone keeps in `received`.
const KEEP_RECEIVED: usize = 50_000;
/// How long an INVITE waits once something provisional came back.
const TIMER_C: Duration = Duration::from_secs(180);

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A name-addr without its header parameters.
fn strip_params(na: &NameAddr<'_>) -> String {
    lossy(&na.raw[..na.raw.len() - na.params.len()]).trim_end().to_owned()
}

pub struct Phone {
    pub id: usize,
    pub addr: SocketAddr,
    pub user: String,
    pub domain: String,
    pub display: Option<String>,
    pub server: SocketAddr,
    pub rtp_port: u16,
    /// Replaces the media part of this phone's SDP (everything after
    /// `t=0 0`; `{port}` becomes `rtp_port`).
    pub media_override: Option<String>,
    pub notify_policy: NotifyPolicy,
    /// Answer incoming INVITEs at once (else they ring until `answer`).
    pub auto_answer: bool,
    /// Send 180 Ringing for incoming INVITEs.
    pub ring: bool,
    /// How in-dialog INVITEs are answered: `Some(code)`, or `None` to
    /// never answer.
    pub reinvite_answer: Option<u16>,
    /// Ignore this many 2xx receptions (first and retransmissions) per
    /// INVITE before sending the ACK; `u32::MAX` never ACKs.
    pub acks_to_skip: u32,
    /// Answer an offer that came in a 2xx (the INVITE had none) in the
    /// ACK; false sends a bare ACK, as a broken phone would.
    pub answer_in_ack: bool,
    /// Status answered to in-dialog INFO and UPDATE.
    pub info_answer: u16,
    /// Answers to the next re-INVITEs, before `reinvite_answer` applies.
    pub reinvite_script: VecDeque<u16>,
    /// Answer incoming INVITEs with a 200 that has no Contact (a broken
    /// phone; RFC 3261 §12.1.1 requires one).
    pub omit_contact: bool,
    t1: Duration,
    t2: Duration,
    start: Instant,
    counter: u64,
    reg_call_id: String,
    reg_cseq: u32,
    sdp_version: u64,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    pub txns: Vec<ClientTxn>,
    txn_index: HashMap<(String, String), usize>,
    server_txns: HashMap<(String, String), ServerTxn>,
    pub calls: Vec<Call>,
    pub notifies: Vec<Notify>,
    /// Every datagram received (bounded).
    pub received: Vec<Msg>,
    /// Retransmitted requests absorbed.
    pub request_retransmissions: u32,
    /// Responses that matched no request of this phone.
    pub stray_responses: u32,
}

impl Phone {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        addr: SocketAddr,
        user: &str,
        domain: &str,
        display: Option<&str>,
        server: SocketAddr,
        t1: Duration,
        t2: Duration,
        start: Instant,
    ) -> Phone {
        Phone {
            id,
            addr,
            user: user.to_owned(),
            domain: domain.to_owned(),
            display: display.map(str::to_owned),
            server,
            rtp_port: 20_000 + 2 * id as u16,
            media_override: None,
            notify_policy: NotifyPolicy::Answer(200),
            auto_answer: true,
            ring: true,
            reinvite_answer: Some(200),
            acks_to_skip: 0,
            answer_in_ack: true,
            info_answer: 200,
            reinvite_script: VecDeque::new(),
            omit_contact: false,
            t1,
            t2,
            start,
            counter: 0,
            reg_call_id: format!("reg-{id}@{}", addr.ip()),
            reg_cseq: 0,
            sdp_version: 1,
            out: VecDeque::new(),
            txns: Vec::new(),
            txn_index: HashMap::new(),
            server_txns: HashMap::new(),
            calls: Vec::new(),
            notifies: Vec::new(),
            received: Vec::new(),
            request_retransmissions: 0,
            stray_responses: 0,
        }
    }

    // ----- identity ---------------------------------------------------------

    /// This device's Contact URI.
    pub fn contact_uri(&self) -> String {
        format!("sip:{}@{}", self.user, self.addr)
    }

    /// The address-of-record URI.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.user, self.domain)
    }

    /// The party as it goes in From (without tag).
    pub fn party(&self) -> String {
        match &self.display {
            Some(d) => format!("\"{d}\" <{}>", self.aor()),
            None => format!("<{}>", self.aor()),
        }
    }

    pub fn ip(&self) -> String {
        self.addr.ip().to_string()
    }

    /// The SDP origin user this phone writes (`o=<this> ...`).
    pub fn origin_user(&self) -> String {
        format!("{}-{}", self.user, self.id)
    }

    /// Markers that identify this phone's media in an SDP body.
    pub fn media_markers(&self) -> [String; 2] {
        [format!("c=IN IP4 {}", self.ip()), format!("m=audio {} RTP/AVP", self.rtp_port)]
    }

    fn sdp(&mut self) -> String {
        self.sdp_version += 1;
        let ip = self.ip();
        let media = match &self.media_override {
            Some(m) => m.replace("{port}", &self.rtp_port.to_string()),
            None => format!("m=audio {} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", self.rtp_port),
        };
        format!(
            "v=0\r\no={} {} {} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n{media}",
            self.origin_user(),
            1000 + self.id,
            self.sdp_version,
        )
    }

    fn unique(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn new_branch(&mut self) -> String {
        let n = self.unique();
        format!("z9hG4bK-p{}-{n}", self.id)
    }

    fn new_tag(&mut self) -> String {
        let n = self.unique();
        format!("t{}x{n}", self.id)
    }

    fn new_call_id(&mut self) -> String {
        let n = self.unique();
        format!("c{}x{n}@{}", self.id, self.addr.ip())
    }

    fn at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    // ----- plumbing -----------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// Sends raw bytes to sipark.
    pub fn send_raw(&mut self, data: Vec<u8>) {
        self.out.push_back((self.server, data));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = self.txns.iter().flat_map(|t| [t.next, t.give_up]).flatten().min();
        let s = self.server_txns.values().filter(|s| s.awaiting_ack).flat_map(|s| [s.next, s.give_up]).flatten().min();
        [c, s].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let (t1, t2) = (self.t1, self.t2);
        let mut resend = Vec::new();
        let mut failed_calls = Vec::new();
        for t in &mut self.txns {
            if t.give_up.is_some_and(|g| g <= now) {
                t.give_up = None;
                t.next = None;
                if t.final_code.is_none() {
                    t.timed_out = true;
                    if let (true, Some(c)) = (t.invite, t.call) {
                        failed_calls.push(c);
                    }
                }
                continue;
            }
            if t.next.is_some_and(|n| n <= now) {
                t.retransmissions += 1;
                t.interval = if t.invite { t.interval * 2 } else { (t.interval * 2).min(t2) };
                t.next = Some(now + t.interval);
                resend.push((self.server, t.request.clone()));
            }
        }
        for c in failed_calls {
            if matches!(self.calls[c].state, CallState::Calling | CallState::Ringing) {
                self.calls[c].state = CallState::Failed(408);
            }
        }
        for s in self.server_txns.values_mut().filter(|s| s.awaiting_ack) {
            if s.give_up.is_some_and(|g| g <= now) {
                s.awaiting_ack = false;
                s.next = None;
                s.give_up = None;
                continue;
            }
            if s.next.is_some_and(|n| n <= now) {
                s.interval = (s.interval * 2).min(t2);
                s.next = Some(now + s.interval);
                if let Some(r) = &s.response {
                    resend.push((s.dst, r.clone()));
                }
            }
        }
        let _ = t1;
        self.out.extend(resend);
    }

    // ----- sending requests -------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn build_request(
        &self,
        method: &str,
        ruri: &str,
        branch: &str,
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        routes: &[String],
        extra: &[String],
        body: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let mut m = format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            self.addr
        );
        for r in routes {
            m.push_str(&format!("Route: {r}\r\n"));
        }
        m.push_str(&format!("From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"));
        if method == "INVITE" {
            m.push_str(&format!("Contact: <{}>\r\n", self.contact_uri()));
        }
        for e in extra {
            m.push_str(e);
            m.push_str("\r\n");
        }
        match body {
            Some((ctype, b)) => m.push_str(&format!("Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{b}", b.len())),
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        m.into_bytes()
    }

    fn start_txn(
        &mut self,
        now: Instant,
        method: &str,
        branch: String,
        cseq: u32,
        request: Vec<u8>,
        call: Option<usize>,
    ) -> usize {
        let invite = method == "INVITE";
        let idx = self.txns.len();
        self.txn_index.insert((branch.clone(), method.to_owned()), idx);
        self.out.push_back((self.server, request.clone()));
        self.txns.push(ClientTxn {
            method: method.to_owned(),
            branch,
            cseq,
            request,
            call,
            responses: Vec::new(),
            final_code: None,
            timed_out: false,
            retransmissions: 0,
            invite,
            next: Some(now + self.t1),
            interval: self.t1,
            give_up: Some(now + 64 * self.t1),
            ack: None,
            twoxx_seen: 0,
        });
        idx
    }

    /// Sends an out-of-dialog request (new Call-ID, To = `<ruri>`).
    pub fn request(
        &mut self,
        now: Instant,
        method: &str,
        ruri: &str,
        extra: &[String],
        body: Option<(&str, &str)>,
    ) -> usize {
        let (branch, tag, call_id) = (self.new_branch(), self.new_tag(), self.new_call_id());
        let from = format!("{};tag={tag}", self.party());
        let req = self.build_request(method, ruri, &branch, &from, &format!("<{ruri}>"), &call_id, 1, &[], extra, body);
        self.start_txn(now, method, branch, 1, req, None)
    }

    /// Sends a REGISTER for this phone's AOR with the given Contact values.
    pub fn register(&mut self, now: Instant, contacts: &[String], extra: &[String]) -> usize {
        self.reg_cseq += 1;
        let branch = self.new_branch();
        let aor = format!("<{}>", self.aor());
        let from = format!("{aor};tag=reg{}", self.id);
        let mut headers: Vec<String> = contacts.iter().map(|c| format!("Contact: {c}")).collect();
        headers.extend(extra.iter().cloned());
        let (call_id, cseq) = (self.reg_call_id.clone(), self.reg_cseq);
        let ruri = format!("sip:{}", self.domain);
        let req = self.build_request("REGISTER", &ruri, &branch, &from, &aor, &call_id, cseq, &[], &headers, None);
        self.start_txn(now, "REGISTER", branch, cseq, req, None)
    }

    /// Registers this device's own contact for `expires` seconds.
    pub fn register_self(&mut self, now: Instant, expires: u32) -> usize {
        let c = format!("<{}>;expires={expires}", self.contact_uri());
        self.register(now, &[c], &[])
    }

    /// Places a call to `ruri` (To = `<ruri>`); returns the call index.
    pub fn invite(&mut self, now: Instant, ruri: &str, extra: &[String], with_sdp: bool) -> usize {
        let (branch, tag, call_id) = (self.new_branch(), self.new_tag(), self.new_call_id());
        let sdp = self.sdp();
        let party = self.party();
        let to = format!("<{ruri}>");
        let from = format!("{party};tag={tag}");
        let body = with_sdp.then_some(("application/sdp", sdp.as_str()));
        let req = self.build_request("INVITE", ruri, &branch, &from, &to, &call_id, 1, &[], extra, body);
        let idx = self.calls.len();
        self.calls.push(Call {
            incoming: false,
            call_id,
            local_tag: tag,
            remote_tag: None,
            local_party: party,
            remote_party: to,
            remote_target: None,
            route_set: Vec::new(),
            local_cseq: 1,
            state: CallState::Calling,
            local_sdp: sdp,
            remote_sdp: None,
            invite_txn: None,
            invite: None,
            invite_branch: branch.clone(),
            reinvites: Vec::new(),
            acks: Vec::new(),
            byes: Vec::new(),
            cancels: Vec::new(),
            in_dialog: Vec::new(),
            ended_by_remote: false,
            confirmed_at: None,
        });
        let txn = self.start_txn(now, "INVITE", branch, 1, req, Some(idx));
        self.calls[idx].invite_txn = Some(txn);
        idx
    }

    /// Sends an in-dialog request on `call`.
    pub fn in_dialog(&mut self, now: Instant, call: usize, method: &str, extra: &[String]) -> usize {
        self.in_dialog_with(now, call, method, extra, None)
    }

    /// Sends a re-INVITE on `call` with fresh SDP (same media).
    pub fn reinvite(&mut self, now: Instant, call: usize) -> usize {
        let sdp = self.sdp();
        self.calls[call].local_sdp = sdp.clone();
        self.in_dialog_with(now, call, "INVITE", &[], Some(("application/sdp", &sdp)))
    }

    /// Sends an in-dialog `method` on `call` with this body (content type,
    /// text).
    pub fn in_dialog_with(
        &mut self,
        now: Instant,
        call: usize,
        method: &str,
        extra: &[String],
        body: Option<(&str, &str)>,
    ) -> usize {
        let branch = self.new_branch();
        let c = &mut self.calls[call];
        c.local_cseq += 1;
        let cseq = c.local_cseq;
        let c = &self.calls[call];
        let ruri = c.remote_target.clone().unwrap_or_else(|| panic!("call {call} has no remote target: {c:?}"));
        let from = format!("{};tag={}", c.local_party, c.local_tag);
        let to = match &c.remote_tag {
            Some(t) => format!("{};tag={t}", c.remote_party),
            None => c.remote_party.clone(),
        };
        let (call_id, routes) = (c.call_id.clone(), c.route_set.clone());
        let req = self.build_request(method, &ruri, &branch, &from, &to, &call_id, cseq, &routes, extra, body);
        self.start_txn(now, method, branch, cseq, req, Some(call))
    }

    /// Hangs up `call`.
    pub fn bye(&mut self, now: Instant, call: usize) -> usize {
        self.in_dialog(now, call, "BYE", &[])
    }

    /// CANCELs the INVITE of outgoing `call`.
    pub fn cancel(&mut self, now: Instant, call: usize) -> usize {
        let txn = self.calls[call].invite_txn.unwrap_or_else(|| panic!("call {call} has no INVITE"));
        let req = self.txns[txn].request.clone();
        let branch = self.txns[txn].branch.clone();
        let msg = SipMessage::parse(&req).unwrap_or_else(|e| panic!("own INVITE unparseable: {e:?}"));
        let get = |h: HeaderName| msg.header(h).map(lossy).unwrap_or_default();
        let cancel = format!(
            "CANCEL {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} CANCEL\r\nContent-Length: 0\r\n\r\n",
            lossy(msg.request_uri().unwrap_or_default()),
            get(HeaderName::Via),
            get(HeaderName::From),
            get(HeaderName::To),
            get(HeaderName::CallId),
            self.txns[txn].cseq
        );
        let cseq = self.txns[txn].cseq;
        self.start_txn(now, "CANCEL", branch, cseq, cancel.into_bytes(), Some(call))
    }

    /// Sends the request of `txn` again right now (a forced retransmission).
    pub fn retransmit(&mut self, txn: usize) {
        let req = self.txns[txn].request.clone();
        self.out.push_back((self.server, req));
    }

    /// Answers ringing incoming `call` with 200 and this phone's SDP.
    /// Returns false if the INVITE already had a final answer.
    pub fn answer(&mut self, now: Instant, call: usize) -> bool {
        let key = (self.calls[call].invite_branch.clone(), "INVITE".to_owned());
        let Some(st) = self.server_txns.get(&key) else { return false };
        if st.final_code >= 200 {
            return false;
        }
        let req = st.request.clone();
        let sdp = self.calls[call].local_sdp.clone();
        let tag = self.calls[call].local_tag.clone();
        let contact = format!("Contact: <{}>", self.contact_uri());
        let contact: &[String] = if self.omit_contact { &[] } else { std::slice::from_ref(&contact) };
        let Ok(msg) = SipMessage::parse(&req) else { return false };
        self.respond(now, &key, &msg, 200, "OK", Some(&tag), contact, Some(&sdp));
        self.calls[call].state = CallState::Answered;
        true
    }

    /// Refuses ringing incoming `call` with `code`.
    pub fn reject(&mut self, now: Instant, call: usize, code: u16) -> bool {
        let key = (self.calls[call].invite_branch.clone(), "INVITE".to_owned());
        let Some(st) = self.server_txns.get(&key) else { return false };
        if st.final_code >= 200 {
            return false;
        }
        let req = st.request.clone();
        let tag = self.calls[call].local_tag.clone();
        let Ok(msg) = SipMessage::parse(&req) else { return false };
        self.respond(now, &key, &msg, code, "Refused", Some(&tag), &[], None);
        self.calls[call].state = CallState::Failed(code);
        true
    }

    // ----- receiving ----------------------------------------------------------

    pub fn handle(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        let msg = Msg::new(data.to_vec(), self.at(now));
        if self.received.len() < KEEP_RECEIVED {
            self.received.push(msg.clone());
        }
        let Ok(parsed) = SipMessage::parse(data) else { return };
        match parsed.method() {
            None => self.on_response(now, &msg, &parsed),
            Some(m) => self.on_request(now, src, &msg, &parsed, m),
        }
    }

    /// Requests received with this method, every copy.
    pub fn requests(&self, method: &str) -> Vec<&Msg> {
        self.received.iter().filter(|m| m.method().as_deref() == Some(method)).collect()
    }

    /// Responses received with this status code, every copy.
    pub fn responses(&self, code: u16) -> Vec<&Msg> {
        self.received.iter().filter(|m| m.code() == Some(code)).collect()
    }

    /// The last NOTIFY received (first copies only).
    pub fn last_notify(&self) -> Option<&Notify> {
        self.notifies.last()
    }

    /// Incoming calls (created by an INVITE from sipark).
    pub fn incoming(&self) -> Vec<usize> {
        (0..self.calls.len()).filter(|&i| self.calls[i].incoming).collect()
    }

    fn find_call(&self, call_id: &str, local_tag: &str) -> Option<usize> {
        self.calls.iter().position(|c| c.call_id == call_id && c.local_tag == local_tag)
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        now: Instant,
        key: &(String, String),
        req: &SipMessage<'_>,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: &[String],
        body: Option<&str>,
    ) {
        let mut r = format!("SIP/2.0 {code} {reason}\r\n");
        for h in req.headers().iter().filter(|h| h.name == HeaderName::Via) {
            r.push_str(&format!("Via: {}\r\n", lossy(h.value)));
        }
        let get = |h: HeaderName| req.header(h).map(lossy).unwrap_or_default();
        r.push_str(&format!("From: {}\r\n", get(HeaderName::From)));
        let to = get(HeaderName::To);
        let has_tag = req.to_hdr().ok().and_then(|t| t.tag()).is_some();
        match (has_tag, to_tag) {
            (false, Some(t)) => r.push_str(&format!("To: {to};tag={t}\r\n")),
            _ => r.push_str(&format!("To: {to}\r\n")),
        }
        r.push_str(&format!("Call-ID: {}\r\nCSeq: {}\r\n", get(HeaderName::CallId), get(HeaderName::CSeq)));
        for e in extra {
            r.push_str(e);
            r.push_str("\r\n");
        }
        match body {
            Some(b) => r.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}", b.len())),
            None => r.push_str("Content-Length: 0\r\n\r\n"),
        }
        let bytes = r.into_bytes();
        let (t1, t2) = (self.t1, self.t2);
        let _ = t2;
        let Some(st) = self.server_txns.get_mut(key) else { return };
        st.response = Some(bytes.clone());
        if code >= 200 {
            st.final_code = code;
            if key.1 == "INVITE" {
                st.awaiting_ack = true;
                st.interval = t1;
                st.next = Some(now + t1);
                st.give_up = Some(now + 64 * t1);
            }
        }
        self.out.push_back((st.dst, bytes));
    }

    fn on_request(&mut self, now: Instant, src: SocketAddr, msg: &Msg, req: &SipMessage<'_>, method: Method<'_>) {
        let branch = req.top_via().ok().and_then(|v| v.branch).map(lossy).unwrap_or_default();
        let call_id = req.call_id().map(lossy).unwrap_or_default();
        let to_tag = req.to_hdr().ok().and_then(|t| t.tag()).map(lossy);
        let cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
        if method == Method::Ack {
            self.on_ack(msg, &branch, &call_id, to_tag.as_deref(), cseq);
            return;
        }
        let class = if method == Method::Invite { "INVITE".to_owned() } else { lossy(method.as_bytes()) };
        let key = (branch, class);
        if let Some(st) = self.server_txns.get(&key) {
            self.request_retransmissions += 1;
            if let Some(r) = st.response.clone() {
                self.out.push_back((st.dst, r));
            }
            return;
        }
        self.server_txns.insert(
            key.clone(),
            ServerTxn {
                dst: src,
                request: msg.raw.clone(),
                response: None,
                final_code: 0,
                call: None,
                cseq,
                awaiting_ack: false,
                next: None,
                interval: self.t1,
                give_up: None,
            },
        );
        match method {
            Method::Cancel => self.on_cancel(now, msg, req, &key),
            Method::Invite if to_tag.is_some() => {
                self.on_reinvite(now, msg, req, &key, &call_id, to_tag.as_deref().unwrap_or_default());
            }
            Method::Invite => self.on_invite(now, msg, req, &key, call_id),
            Method::Bye => match to_tag.as_deref().and_then(|t| self.find_call(&call_id, t)) {
                Some(c) => {
                    self.respond(now, &key, req, 200, "OK", None, &[], None);
                    let call = &mut self.calls[c];
                    call.byes.push(msg.clone());
                    call.state = CallState::Ended;
                    call.ended_by_remote = true;
                }
                None => self.respond(now, &key, req, 481, "Call/Transaction Does Not Exist", None, &[], None),
            },
            Method::Notify => {
                let body = lossy(req.body());
                self.notifies.push(Notify { msg: msg.clone(), info: parkinfo::parse(&body) });
                if let NotifyPolicy::Answer(code) = self.notify_policy {
                    let tag = self.new_tag();
                    let reason = if code < 300 { "OK" } else { "Refused" };
                    self.respond(now, &key, req, code, reason, Some(&tag), &[], None);
                }
            }
            Method::Options => self.respond(now, &key, req, 200, "OK", None, &[], None),
            Method::Info | Method::Update | Method::Refer if to_tag.is_some() => {
                match to_tag.as_deref().and_then(|t| self.find_call(&call_id, t)) {
                    Some(c) => {
                        self.calls[c].in_dialog.push(msg.clone());
                        // An UPDATE offer is answered with this phone's media.
                        let sdp = (method == Method::Update && !req.body().is_empty()).then(|| self.sdp());
                        let code = if method == Method::Refer { 202 } else { self.info_answer };
                        self.respond(now, &key, req, code, "Answered", None, &[], sdp.as_deref());
                    }
                    None => self.respond(now, &key, req, 481, "Call/Transaction Does Not Exist", None, &[], None),
                }
            }
            _ => self.respond(
                now,
                &key,
                req,
                405,
                "Method Not Allowed",
                None,
                &["Allow: INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS".to_owned()],
                None,
            ),
        }
    }

    fn on_invite(&mut self, now: Instant, msg: &Msg, req: &SipMessage<'_>, key: &(String, String), call_id: String) {
        let (Ok(from), Ok(to)) = (req.from_hdr(), req.to_hdr()) else {
            self.respond(now, key, req, 400, "Bad From/To", None, &[], None);
            return;
        };
        let target = req.contacts().find_map(|c| match c {
            Ok(Contact::Addr(na)) => Some(lossy(na.uri.raw)),
            _ => None,
        });
        let local_tag = self.new_tag();
        let sdp = self.sdp();
        let body = req.body();
        let idx = self.calls.len();
        self.calls.push(Call {
            incoming: true,
            call_id,
            local_tag: local_tag.clone(),
            remote_tag: from.tag().map(lossy),
            local_party: strip_params(&to),
            remote_party: strip_params(&from),
            remote_target: target,
            route_set: req.record_routes().filter_map(Result::ok).map(|r| lossy(r.raw)).collect(),
            local_cseq: 0,
            state: CallState::Ringing,
            local_sdp: sdp,
            remote_sdp: (!body.is_empty()).then(|| lossy(body)),
            invite_txn: None,
            invite: Some(msg.clone()),
            invite_branch: key.0.clone(),
            reinvites: Vec::new(),
            acks: Vec::new(),
            byes: Vec::new(),
            cancels: Vec::new(),
            in_dialog: Vec::new(),
            ended_by_remote: false,
            confirmed_at: None,
        });
        if let Some(st) = self.server_txns.get_mut(key) {
            st.call = Some(idx);
        }
        if self.ring {
            let contact = format!("Contact: <{}>", self.contact_uri());
            self.respond(now, key, req, 180, "Ringing", Some(&local_tag), &[contact], None);
        }
        if self.auto_answer {
            self.answer(now, idx);
        }
    }

    fn on_reinvite(
        &mut self,
        now: Instant,
        msg: &Msg,
        req: &SipMessage<'_>,
        key: &(String, String),
        call_id: &str,
        tag: &str,
    ) {
        let Some(c) = self.find_call(call_id, tag) else {
            self.respond(now, key, req, 481, "Call/Transaction Does Not Exist", None, &[], None);
            return;
        };
        if let Some(st) = self.server_txns.get_mut(key) {
            st.call = Some(c);
        }
        let sdp = self.sdp();
        let call = &mut self.calls[c];
        call.reinvites.push(msg.clone());
        let body = req.body();
        if !body.is_empty() {
            call.remote_sdp = Some(lossy(body));
        }
        if let Some(t) = req.contacts().find_map(|c| match c {
            Ok(Contact::Addr(na)) => Some(lossy(na.uri.raw)),
            _ => None,
        }) {
            call.remote_target = Some(t);
        }
        let answer = self.reinvite_script.pop_front().map_or(self.reinvite_answer, Some);
        match answer {
            Some(code) if (200..300).contains(&code) => {
                // Keep our media, with a fresh origin version.
                call.local_sdp = sdp.clone();
                let contact = format!("Contact: <{}>", self.contact_uri());
                self.respond(now, key, req, code, "OK", None, &[contact], Some(&sdp));
            }
            Some(code) => self.respond(now, key, req, code, "Refused", None, &[], None),
            None => {}
        }
    }

    fn on_cancel(&mut self, now: Instant, msg: &Msg, req: &SipMessage<'_>, key: &(String, String)) {
        self.respond(now, key, req, 200, "OK", None, &[], None);
        let ikey = (key.0.clone(), "INVITE".to_owned());
        let Some(st) = self.server_txns.get(&ikey) else { return };
        let call = st.call;
        let pending = st.final_code < 200;
        let invite = st.request.clone();
        if let Some(c) = call {
            self.calls[c].cancels.push(msg.clone());
        }
        if pending {
            let tag = call.map(|c| self.calls[c].local_tag.clone());
            if let Ok(inv) = SipMessage::parse(&invite) {
                self.respond(now, &ikey, &inv, 487, "Request Terminated", tag.as_deref(), &[], None);
            }
            if let Some(c) = call {
                self.calls[c].state = CallState::Cancelled;
            }
        }
    }

    fn on_ack(&mut self, msg: &Msg, branch: &str, call_id: &str, to_tag: Option<&str>, cseq: u32) {
        if let Some(st) = self.server_txns.get_mut(&(branch.to_owned(), "INVITE".to_owned()))
            && st.final_code >= 300
        {
            st.awaiting_ack = false;
            st.next = None;
            st.give_up = None;
        }
        let Some(c) = to_tag.and_then(|t| self.find_call(call_id, t)) else { return };
        let at = msg.at;
        let call = &mut self.calls[c];
        call.acks.push(msg.clone());
        if call.state == CallState::Answered {
            call.state = CallState::Confirmed;
            call.confirmed_at = Some(at);
        }
        let body = SipMessage::parse(&msg.raw).map(|m| m.body().to_vec()).unwrap_or_default();
        if !body.is_empty() {
            call.remote_sdp = Some(lossy(&body));
        }
        for st in self.server_txns.values_mut() {
            if st.call == Some(c) && st.cseq == cseq && st.awaiting_ack {
                st.awaiting_ack = false;
                st.next = None;
                st.give_up = None;
            }
        }
    }

    fn on_response(&mut self, now: Instant, msg: &Msg, resp: &SipMessage<'_>) {
        let branch = resp.top_via().ok().and_then(|v| v.branch).map(lossy).unwrap_or_default();
        let Ok(cseq) = resp.cseq() else {
            self.stray_responses += 1;
            return;
        };
        let key = (branch, lossy(cseq.method.as_bytes()));
        let Some(&ti) = self.txn_index.get(&key) else {
            self.stray_responses += 1;
            return;
        };
        let Some(code) = resp.status() else { return };
        let t1 = self.t1;
        let txn = &mut self.txns[ti];
        txn.responses.push(msg.clone());
        let call = txn.call;
        if !txn.invite {
            if code < 200 {
                txn.interval = self.t2;
                return;
            }
            if txn.final_code.is_none() {
                txn.final_code = Some(code);
                txn.next = None;
                txn.give_up = None;
                if txn.method == "BYE"
                    && let Some(c) = call
                {
                    self.calls[c].state = CallState::Ended;
                }
            }
            return;
        }
        if code < 200 {
            if txn.final_code.is_none() {
                txn.next = None;
                txn.give_up = Some(now + TIMER_C);
                if code > 100
                    && let Some(c) = call
                    && self.calls[c].state == CallState::Calling
                {
                    self.calls[c].state = CallState::Ringing;
                }
            }
            return;
        }
        let first = txn.final_code.is_none();
        if first {
            txn.final_code = Some(code);
            txn.next = None;
            txn.give_up = Some(now + 64 * t1);
        }
        if (200..300).contains(&code) {
            txn.twoxx_seen += 1;
            let skip = txn.twoxx_seen <= self.acks_to_skip;
            if first && let Some(c) = call {
                let call = &mut self.calls[c];
                call.remote_tag = resp.to_hdr().ok().and_then(|t| t.tag()).map(lossy);
                call.remote_target = resp.contacts().find_map(|c| match c {
                    Ok(Contact::Addr(na)) => Some(lossy(na.uri.raw)),
                    _ => None,
                });
                call.route_set = resp.record_routes().filter_map(Result::ok).map(|r| lossy(r.raw)).collect();
                call.route_set.reverse();
                let body = resp.body();
                if !body.is_empty() {
                    call.remote_sdp = Some(lossy(body));
                }
                if matches!(call.state, CallState::Calling | CallState::Ringing) {
                    call.state = CallState::Confirmed;
                    call.confirmed_at = Some(msg.at);
                }
            }
            if skip {
                return;
            }
            if self.txns[ti].ack.is_none()
                && let Some(c) = call
            {
                let branch = self.new_branch();
                let cl = &self.calls[c];
                let ruri = cl.remote_target.clone().unwrap_or_default();
                let from = format!("{};tag={}", cl.local_party, cl.local_tag);
                let to = format!("{};tag={}", cl.remote_party, cl.remote_tag.clone().unwrap_or_default());
                let (cid, routes) = (cl.call_id.clone(), cl.route_set.clone());
                let cseq = self.txns[ti].cseq;
                // Delayed offer: an INVITE without SDP got the offer in the
                // 2xx, and the ACK carries the answer (RFC 3261 §13.2.2.4).
                let offered_in_2xx = SipMessage::parse(&self.txns[ti].request).is_ok_and(|r| r.body().is_empty())
                    && !resp.body().is_empty();
                let sdp = cl.local_sdp.clone();
                let body = (offered_in_2xx && self.answer_in_ack).then_some(("application/sdp", sdp.as_str()));
                let ack = self.build_request("ACK", &ruri, &branch, &from, &to, &cid, cseq, &routes, &[], body);
                self.txns[ti].ack = Some(ack);
            }
        } else if first {
            if let Some(c) = call
                && matches!(self.calls[c].state, CallState::Calling | CallState::Ringing)
            {
                self.calls[c].state = CallState::Failed(code);
            }
            let inv = self.txns[ti].request.clone();
            if let Ok(req) = SipMessage::parse(&inv) {
                let get = |h: HeaderName| req.header(h).map(lossy).unwrap_or_default();
                let ack = format!(
                    "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
                    lossy(req.request_uri().unwrap_or_default()),
                    get(HeaderName::Via),
                    get(HeaderName::From),
                    resp.header(HeaderName::To).map(lossy).unwrap_or_default(),
                    get(HeaderName::CallId),
                    self.txns[ti].cseq
                );
                self.txns[ti].ack = Some(ack.into_bytes());
            }
        }
        if let Some(ack) = self.txns[ti].ack.clone() {
            self.out.push_back((self.server, ack));
        }
    }
}
