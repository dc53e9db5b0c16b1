//! The client transaction state machine (§17.1, with the 2xx handling of
//! RFC 6026): state and deadlines only; [`super::Transactions`] does the
//! sending.

use std::time::{Duration, Instant};

use super::{Kind, TIMER_C, TIMER_D, TimerAction};
use crate::proto::config::Timers;
use crate::proto::sip::Peer;
use crate::proto::sip::write::Head;

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
    /// The request, for retransmissions and for building the CANCEL and
    /// the ACK of a non-2xx response; dropped once a final response came.
    pub request: Vec<u8>,
    /// Where the request's fields are, as they were written.
    pub head: Head,
    /// The ACK sent for the final response, resent on its retransmissions.
    pub ack: Vec<u8>,
    pub final_code: u16,
    retransmit_at: Option<Instant>,
    interval: Duration,
    end_at: Option<Instant>,
}

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
    pub fn new(kind: Kind, dst: Peer, request: Vec<u8>, head: Head, now: Instant, t: &Timers) -> Self {
        ClientTxn {
            kind,
            state: ClientState::Calling,
            dst,
            request,
            head,
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
