//! The server transaction state machine (§17.2, with the 2xx handling of
//! RFC 6026): state and deadlines only; [`super::Transactions`] does the
//! sending.

use std::time::{Duration, Instant};

use super::{Kind, SERVER_GUARD, TimerAction};
use crate::proto::config::Timers;
use crate::proto::sip::Peer;

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
