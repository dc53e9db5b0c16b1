//! Transactions (RFC 3261 §17) for UDP, with the 2xx handling of RFC 6026.
//!
//! A transaction here is state plus deadlines; it never sends anything
//! itself. The shard asks it what a timer or a retransmitted message means
//! ([`ServerTxn::on_timer`], [`ClientTxn::on_timer`], …) and does the
//! sending. All times come from the caller, so every timer runs on a
//! virtual clock in tests.
//!
//! | timer | transaction | value (UDP) | meaning |
//! |---|---|---|---|
//! | A | INVITE client | T1, doubling | retransmit the request |
//! | B | INVITE client | 64·T1 | give up |
//! | D | INVITE client | 32 s | absorb final-response retransmissions |
//! | E | non-INVITE client | T1, doubling up to T2 | retransmit the request |
//! | F | non-INVITE client | 64·T1 | give up |
//! | K | non-INVITE client | T4 | absorb response retransmissions |
//! | G | INVITE server | T1, doubling up to T2 | retransmit the final response (also 2xx, §13.3.1.4) |
//! | H | INVITE server | 64·T1 | give up waiting for the ACK |
//! | I | INVITE server | T4 | absorb ACK retransmissions |
//! | J | non-INVITE server | 64·T1 | absorb request retransmissions |
//! | L/M | INVITE server/client | 64·T1 | RFC 6026 Accepted state |

use super::sip::Peer;
use std::time::{Duration, Instant};

use super::config::Timers;

/// What a timer asks the owner to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// Nothing is due (a stale timer entry).
    Nothing,
    /// Send the stored message again.
    Retransmit,
    /// The transaction is over; `timed_out` if it ended without the answer
    /// it was waiting for (Timer B, F, H, or no ACK for a 2xx).
    Terminate { timed_out: bool },
}

/// INVITE or not: the two families of §17.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invite,
    NonInvite,
}

/// Server transaction states (§17.2, RFC 6026 `Accepted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// No final response yet.
    Proceeding,
    /// A final non-2xx (INVITE) or any final (non-INVITE) response was sent.
    Completed,
    /// A 2xx to an INVITE was sent; retransmitted until the ACK.
    Accepted { acked: bool },
    /// The ACK for a non-2xx final response arrived.
    Confirmed,
}

/// A server transaction.
#[derive(Debug)]
pub struct ServerTxn {
    pub kind: Kind,
    pub state: ServerState,
    /// Where responses go (the request's source, RFC 3581; over a stream,
    /// its connection).
    pub dst: Peer,
    /// The last response sent, for retransmissions.
    pub response: Vec<u8>,
    pub final_code: u16,
    retransmit_at: Option<Instant>,
    interval: Duration,
    end_at: Option<Instant>,
}

impl ServerTxn {
    /// A transaction for a request received at `now`. Until a final
    /// response is sent it lives at most [`SERVER_GUARD`] past `now` plus
    /// 64·T1, so a request nobody answers cannot pin state forever.
    pub fn new(kind: Kind, dst: Peer, now: Instant, t: &Timers) -> Self {
        ServerTxn {
            kind,
            state: ServerState::Proceeding,
            dst,
            response: Vec::new(),
            final_code: 0,
            retransmit_at: None,
            interval: Duration::ZERO,
            end_at: Some(now + SERVER_GUARD + 64 * t.t1),
        }
    }

    /// The next instant this transaction needs attention.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.retransmit_at, self.end_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records that `response` (status `code`) was sent at `now`.
    pub fn sent(&mut self, now: Instant, code: u16, response: &[u8], t: &Timers) {
        self.response.clear();
        self.response.extend_from_slice(response);
        if code < 200 {
            return;
        }
        self.final_code = code;
        match (self.kind, code) {
            (Kind::Invite, 200..=299) => {
                self.state = ServerState::Accepted { acked: false };
                self.retransmit_at = Some(now + t.t1);
                self.interval = t.t1;
                self.end_at = Some(now + 64 * t.t1);
            }
            (Kind::Invite, _) => {
                self.state = ServerState::Completed;
                // Timer G runs only over UDP (§17.2.1).
                self.retransmit_at = (!self.dst.transport.reliable()).then(|| now + t.t1);
                self.interval = t.t1;
                self.end_at = Some(now + 64 * t.t1);
            }
            (Kind::NonInvite, _) => {
                self.state = ServerState::Completed;
                self.retransmit_at = None;
                self.end_at = Some(now + 64 * t.t1);
            }
        }
    }

    /// Has a final response been sent?
    pub fn is_final(&self) -> bool {
        self.final_code >= 200
    }

    /// An ACK arrived for this INVITE transaction (for a 2xx it is matched
    /// by dialog, for a non-2xx by branch). Returns true the first time.
    pub fn ack(&mut self, now: Instant, t: &Timers) -> bool {
        match self.state {
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                self.retransmit_at = None;
                self.end_at = Some(now + t.t4);
                true
            }
            ServerState::Accepted { acked: false } => {
                // Timer L restarts at the ACK, so every lingering
                // transaction ends a fixed span after its last change
                // (timers.rs); RFC 6026 absorbs INVITE retransmissions
                // from here on without answering them, so the 2xx is freed.
                self.state = ServerState::Accepted { acked: true };
                self.retransmit_at = None;
                self.end_at = Some(now + 64 * t.t1);
                self.response = Vec::new();
                true
            }
            _ => false,
        }
    }

    /// Is the transaction finished, waiting only for its end timer to
    /// absorb retransmissions? Its deadline is then a fixed span after the
    /// change that made it so, and it sends nothing more on its own.
    pub fn lingering(&self) -> bool {
        self.retransmit_at.is_none()
            && matches!(
                (self.kind, self.state),
                (Kind::NonInvite, ServerState::Completed)
                    | (_, ServerState::Confirmed)
                    | (_, ServerState::Accepted { acked: true })
            )
    }

    /// What the timer at `now` means.
    pub fn on_timer(&mut self, now: Instant, t: &Timers) -> TimerAction {
        if self.end_at.is_some_and(|e| now >= e) {
            self.retransmit_at = None;
            self.end_at = None;
            let timed_out = matches!(
                (self.kind, self.state),
                (Kind::Invite, ServerState::Completed) | (_, ServerState::Accepted { acked: false })
            );
            return TimerAction::Terminate { timed_out };
        }
        match self.retransmit_at {
            Some(at) if now >= at => {
                self.interval = (self.interval * 2).min(t.t2);
                self.retransmit_at = Some(now + self.interval);
                TimerAction::Retransmit
            }
            _ => TimerAction::Nothing,
        }
    }
}

/// Client transaction states (§17.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Request sent, nothing heard (Calling / Trying).
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A final (non-2xx for INVITE) response arrived; absorbing retransmissions.
    Completed,
    /// A 2xx to an INVITE arrived (RFC 6026); 2xx retransmissions get the ACK again.
    Accepted,
}

/// A client transaction.
#[derive(Debug)]
pub struct ClientTxn {
    pub kind: Kind,
    pub state: ClientState,
    pub dst: Peer,
    /// The request, for retransmissions and for building ACK and CANCEL.
    pub request: Vec<u8>,
    /// The ACK sent for the final response, resent on its retransmissions.
    pub ack: Vec<u8>,
    pub final_code: u16,
    retransmit_at: Option<Instant>,
    interval: Duration,
    end_at: Option<Instant>,
}

/// Longest a server transaction waits for its final response: long enough
/// for sipark's own INVITE to another leg to run its Timer C.
pub const SERVER_GUARD: Duration = TIMER_C;

/// How long an INVITE client waits in Proceeding before giving up (Timer C
/// of §16.6, used here for sipark's own INVITEs).
pub const TIMER_C: Duration = Duration::from_secs(180);
/// Timer D for UDP.
pub const TIMER_D: Duration = Duration::from_secs(32);

/// What a response means to a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseEffect {
    /// A provisional response; the TU may care (e.g. CANCEL becomes possible).
    Provisional { first: bool },
    /// The first final response: hand it to the TU.
    Final,
    /// A retransmitted final response: resend the ACK if there is one.
    Retransmission,
}

impl ClientTxn {
    /// A transaction whose request was just sent at `now`.
    pub fn new(kind: Kind, dst: Peer, request: Vec<u8>, now: Instant, t: &Timers) -> Self {
        ClientTxn {
            kind,
            state: ClientState::Calling,
            dst,
            request,
            ack: Vec::new(),
            final_code: 0,
            // Timers A and E run only over UDP (§17.1.1.2, §17.1.2.2).
            retransmit_at: (!dst.transport.reliable()).then(|| now + t.t1),
            interval: t.t1,
            end_at: Some(now + 64 * t.t1),
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match (self.retransmit_at, self.end_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Is the transaction still waiting for its final response?
    pub fn pending(&self) -> bool {
        matches!(self.state, ClientState::Calling | ClientState::Proceeding)
    }

    /// A response with status `code` arrived at `now`.
    pub fn on_response(&mut self, now: Instant, code: u16, t: &Timers) -> ResponseEffect {
        match self.state {
            ClientState::Calling | ClientState::Proceeding if code < 200 => {
                let first = self.state == ClientState::Calling;
                self.state = ClientState::Proceeding;
                match self.kind {
                    Kind::Invite => {
                        self.retransmit_at = None;
                        if first {
                            self.end_at = Some(now + TIMER_C);
                        }
                    }
                    Kind::NonInvite => {
                        self.interval = t.t2;
                        if let Some(at) = self.retransmit_at.as_mut() {
                            *at = (*at).max(now + t.t2);
                        }
                    }
                }
                ResponseEffect::Provisional { first }
            }
            ClientState::Calling | ClientState::Proceeding => {
                self.final_code = code;
                self.retransmit_at = None;
                match (self.kind, code) {
                    (Kind::Invite, 200..=299) => {
                        self.state = ClientState::Accepted;
                        self.end_at = Some(now + 64 * t.t1);
                    }
                    (Kind::Invite, _) => {
                        self.state = ClientState::Completed;
                        self.end_at = Some(now + TIMER_D);
                    }
                    (Kind::NonInvite, _) => {
                        // Nothing is sent again for a non-INVITE (there is
                        // no ACK), so the request is no longer needed.
                        self.state = ClientState::Completed;
                        self.end_at = Some(now + t.t4);
                        self.request = Vec::new();
                    }
                }
                ResponseEffect::Final
            }
            ClientState::Accepted if (200..300).contains(&code) && self.final_code != code => {
                // A 2xx from another fork of a forked INVITE: new final.
                ResponseEffect::Final
            }
            _ => ResponseEffect::Retransmission,
        }
    }

    /// Is the transaction finished, waiting only for its end timer (Timer
    /// D, K or M) to absorb response retransmissions?
    pub fn lingering(&self) -> bool {
        self.retransmit_at.is_none() && matches!(self.state, ClientState::Completed | ClientState::Accepted)
    }

    /// What the timer at `now` means.
    pub fn on_timer(&mut self, now: Instant, t: &Timers) -> TimerAction {
        if self.end_at.is_some_and(|e| now >= e) {
            self.retransmit_at = None;
            self.end_at = None;
            return TimerAction::Terminate { timed_out: self.pending() };
        }
        match self.retransmit_at {
            Some(at) if now >= at => {
                self.interval = match self.kind {
                    Kind::Invite => self.interval * 2,
                    Kind::NonInvite => (self.interval * 2).min(t.t2),
                };
                self.retransmit_at = Some(now + self.interval);
                TimerAction::Retransmit
            }
            _ => TimerAction::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Peer {
        Peer::udp("127.0.0.1:5060".parse().expect("addr"))
    }

    /// Runs the timers of `deadline`/`on_timer` to completion, returning the
    /// offsets (ms) of each retransmission and the termination.
    fn drive<F, D>(start: Instant, mut on_timer: F, mut deadline: D) -> (Vec<u128>, u128, bool)
    where
        F: FnMut(Instant) -> TimerAction,
        D: FnMut() -> Option<Instant>,
    {
        let mut retrans = Vec::new();
        for _ in 0..1000 {
            let at = deadline().expect("a deadline until terminated");
            match on_timer(at) {
                TimerAction::Retransmit => retrans.push((at - start).as_millis()),
                TimerAction::Terminate { timed_out } => return (retrans, (at - start).as_millis(), timed_out),
                TimerAction::Nothing => panic!("deadline {at:?} fired with nothing to do"),
            }
        }
        panic!("timers never terminated");
    }

    #[test]
    fn timer_a_doubles_and_timer_b_ends_at_64_t1() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ClientTxn::new(Kind::Invite, addr(), b"INVITE".to_vec(), now, &t);
        let cell = std::cell::RefCell::new(&mut tx);
        let (retrans, end, timed_out) =
            drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
        assert_eq!(retrans, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(end, 32_000);
        assert!(timed_out);
    }

    #[test]
    fn timer_e_caps_at_t2_and_timer_f_ends() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ClientTxn::new(Kind::NonInvite, addr(), b"NOTIFY".to_vec(), now, &t);
        let cell = std::cell::RefCell::new(&mut tx);
        let (retrans, end, timed_out) =
            drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
        assert_eq!(&retrans[..5], &[500, 1500, 3500, 7500, 11500]);
        assert!(retrans.windows(2).skip(3).all(|w| w[1] - w[0] == 4000), "{retrans:?}");
        assert_eq!(end, 32_000);
        assert!(timed_out);
    }

    #[test]
    fn provisional_moves_timer_e_to_t2_and_final_starts_timer_k() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ClientTxn::new(Kind::NonInvite, addr(), b"NOTIFY".to_vec(), now, &t);
        assert_eq!(tx.on_response(now, 100, &t), ResponseEffect::Provisional { first: true });
        assert_eq!(tx.deadline(), Some(now + t.t2));
        assert!(!tx.lingering());
        assert_eq!(tx.on_response(now, 200, &t), ResponseEffect::Final);
        assert!(tx.lingering() && tx.request.is_empty(), "Timer K only absorbs; the request is freed");
        assert_eq!(tx.on_response(now, 200, &t), ResponseEffect::Retransmission);
        assert_eq!(tx.deadline(), Some(now + t.t4));
        assert_eq!(tx.on_timer(now + t.t4, &t), TimerAction::Terminate { timed_out: false });
    }

    #[test]
    fn invite_provisional_stops_timer_a_and_starts_timer_c() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ClientTxn::new(Kind::Invite, addr(), Vec::new(), now, &t);
        tx.on_response(now, 180, &t);
        assert_eq!(tx.deadline(), Some(now + TIMER_C));
        assert_eq!(tx.on_response(now, 486, &t), ResponseEffect::Final);
        assert_eq!(tx.deadline(), Some(now + TIMER_D));
    }

    #[test]
    fn timer_g_retransmits_2xx_until_ack_then_stops() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTxn::new(Kind::Invite, addr(), now, &t);
        tx.sent(now, 200, b"SIP/2.0 200 OK", &t);
        assert_eq!(tx.deadline(), Some(now + t.t1));
        assert_eq!(tx.on_timer(now + t.t1, &t), TimerAction::Retransmit);
        assert_eq!(tx.deadline(), Some(now + t.t1 + 2 * t.t1));
        assert!(!tx.lingering());
        assert!(tx.ack(now + t.t1, &t));
        assert!(!tx.ack(now + t.t1, &t), "second ACK is a retransmission");
        assert!(tx.lingering());
        assert!(tx.response.is_empty(), "INVITE retransmissions are absorbed after the ACK");
        assert_eq!(tx.deadline(), Some(now + t.t1 + 64 * t.t1), "Timer L from the ACK");
        assert_eq!(tx.on_timer(now + t.t1 + 64 * t.t1, &t), TimerAction::Terminate { timed_out: false });
    }

    #[test]
    fn timer_g_caps_at_t2_and_timer_h_times_out() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTxn::new(Kind::Invite, addr(), now, &t);
        tx.sent(now, 486, b"SIP/2.0 486 Busy Here", &t);
        let cell = std::cell::RefCell::new(&mut tx);
        let (retrans, end, timed_out) =
            drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
        assert_eq!(&retrans[..4], &[500, 1500, 3500, 7500]);
        assert!(retrans.windows(2).skip(3).all(|w| w[1] - w[0] == 4000), "{retrans:?}");
        assert_eq!(end, 32_000);
        assert!(timed_out, "Timer H without ACK");
    }

    #[test]
    fn timer_i_after_ack_and_timer_j_for_non_invite() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTxn::new(Kind::Invite, addr(), now, &t);
        tx.sent(now, 404, b"x", &t);
        assert!(!tx.lingering(), "Timer G still retransmits the 404");
        assert!(tx.ack(now, &t));
        assert_eq!(tx.state, ServerState::Confirmed);
        assert!(tx.lingering());
        assert_eq!(tx.deadline(), Some(now + t.t4));
        assert_eq!(tx.on_timer(now + t.t4, &t), TimerAction::Terminate { timed_out: false });

        let mut nx = ServerTxn::new(Kind::NonInvite, addr(), now, &t);
        nx.sent(now, 200, b"x", &t);
        assert!(nx.lingering());
        assert_eq!(nx.response, b"x", "kept to answer retransmitted requests");
        assert_eq!(nx.deadline(), Some(now + 64 * t.t1));
        assert_eq!(nx.on_timer(now + 64 * t.t1, &t), TimerAction::Terminate { timed_out: false });
    }

    #[test]
    fn unanswered_server_transaction_ends_at_the_guard() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTxn::new(Kind::Invite, addr(), now, &t);
        tx.sent(now, 100, b"SIP/2.0 100 Trying", &t);
        let end = now + SERVER_GUARD + 64 * t.t1;
        assert_eq!(tx.deadline(), Some(end));
        assert_eq!(tx.on_timer(end, &t), TimerAction::Terminate { timed_out: false });
    }

    #[test]
    fn custom_t1_t2_scale_the_timers() {
        let t =
            Timers { t1: Duration::from_millis(100), t2: Duration::from_millis(400), t4: Duration::from_millis(1000) };
        let now = Instant::now();
        let mut tx = ClientTxn::new(Kind::NonInvite, addr(), Vec::new(), now, &t);
        let cell = std::cell::RefCell::new(&mut tx);
        let (retrans, end, _) = drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
        assert_eq!(&retrans[..4], &[100, 300, 700, 1100]);
        assert_eq!(end, 6400);
    }

    #[test]
    fn stream_transports_skip_timers_a_e_and_g() {
        let t = Timers::default();
        let now = Instant::now();
        let tcp = Peer { addr: addr().addr, transport: crate::proto::sip::Transport::Tcp };
        for kind in [Kind::Invite, Kind::NonInvite] {
            let mut tx = ClientTxn::new(kind, tcp, b"REQ".to_vec(), now, &t);
            let cell = std::cell::RefCell::new(&mut tx);
            let (retrans, end, timed_out) =
                drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
            assert!(retrans.is_empty(), "{kind:?} over TCP retransmitted at {retrans:?}");
            assert_eq!((end, timed_out), (32_000, true), "{kind:?}: Timer B/F still ends it");
        }
        let mut tx = ServerTxn::new(Kind::Invite, tcp, now, &t);
        tx.sent(now, 486, b"SIP/2.0 486 Busy Here", &t);
        let cell = std::cell::RefCell::new(&mut tx);
        let (retrans, end, timed_out) =
            drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
        assert!(retrans.is_empty(), "486 over TCP retransmitted at {retrans:?}");
        assert_eq!((end, timed_out), (32_000, true), "Timer H still ends it");
    }
}
