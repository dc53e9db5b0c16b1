//! Overload control at the front door (docs/decisions/0021-overload-control.md).
//! The queueing delay the I/O layer measures goes to the shard's
//! [`Controller`] ([`Shard::handle_load`]); a new out-of-dialog request the
//! controller does not admit, or a retransmission of one refused before,
//! is answered `503 Service Unavailable` with a `Retry-After`, statelessly
//! ([`Shard::shed`]). In-dialog requests, ACK, CANCEL, responses and
//! retransmissions of admitted requests never come here: they finish work
//! already admitted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::info;

use super::Shard;
use crate::proto::overload::{Change, Work, admission_hash};
use crate::proto::reject::Intent;
use crate::proto::sip::parse::{Method, SipMessage};
use crate::proto::sip::{Peer, Transport};
use crate::proto::txn::RequestKey;

/// The source address as bytes (address, then port), to key a refusal
/// by: a retransmission comes from where the request came from.
fn peer_bytes(addr: SocketAddr, out: &mut [u8; 18]) -> &[u8] {
    let n = match addr {
        SocketAddr::V4(a) => {
            out[..4].copy_from_slice(&a.ip().octets());
            4
        }
        SocketAddr::V6(a) => {
            out[..16].copy_from_slice(&a.ip().octets());
            16
        }
    };
    out[n..n + 2].copy_from_slice(&addr.port().to_be_bytes());
    &out[..n + 2]
}

/// `n` in decimal, written into `out` (no allocation per refusal).
fn decimal(mut n: u32, out: &mut [u8; 10]) -> &[u8] {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &out[at..];
        }
    }
}

/// Microseconds in `d`, saturated.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Shard {
    /// The receive path's queueing delay, measured by the I/O layer at
    /// `now`: how long the oldest datagram of the batch it is about to
    /// hand over waited in the kernel and the ring (zero when nothing
    /// waited). Overload control decides from it which new requests are
    /// admitted.
    pub fn handle_load(&mut self, now: Instant, delay: Duration) {
        let change = self.overload.on_delay(now, delay);
        let s = &self.env.stats;
        s.queue_delay_us.set(micros(delay));
        s.overload_refused_share.set(u64::from(self.overload.refused_share()));
        s.overloaded_us.set(micros(self.overload.overloaded_for()));
        match change {
            Some(Change::Entered) => {
                s.overload_entered.inc();
                s.overloaded.set(1);
                info!(shard = self.env.shard, delay_us = micros(delay), "overloaded: new requests get 503");
            }
            Some(Change::Left) => {
                s.overloaded.set(0);
                info!(shard = self.env.shard, "no longer overloaded");
            }
            None => {}
        }
    }

    /// Whether overload control refuses `msg`, a new out-of-dialog request
    /// (no transaction matched it, no To tag) whose transaction key is `key`.
    /// When it does, the request has been answered 503 and counted.
    ///
    /// OPTIONS is never refused: it is how proxies probe whether sipark is
    /// up, it holds no state past its lingering transaction, and a 503
    /// would take the whole node out of their rotation, in-dialog traffic
    /// and retrieves of calls parked here included.
    pub(super) fn shed(
        &mut self,
        now: Instant,
        src: Peer,
        msg: &SipMessage<'_>,
        method: Method<'_>,
        key: &RequestKey<'_>,
    ) -> bool {
        if method == Method::Options || (!self.overload.is_overloaded() && !self.refused.any(now)) {
            return false;
        }
        // Keyed by branch (or Call-ID) and source: a client that reuses
        // another's branch is not refused for it.
        let mut peer = [0u8; 18];
        let fp = self.refused_keys.pair(key.id(), peer_bytes(src.addr, &mut peer));
        let cseq = msg.cseq().map_or(0, |c| c.seq);
        let hash = admission_hash(self.admission_key, msg.call_id().unwrap_or_default(), cseq);
        if self.refused.contains(now, fp) {
            self.env.stats.shed_again.inc();
        } else {
            let work = match method {
                Method::Invite if self.is_retrieve(msg) => Work::Finishing,
                // What XDP refuses by the share itself (ADR 0022): a new
                // INVITE over UDP that is not a retrieve. REGISTERs are not
                // counted in: XDP takes only those whose Request-URI host is
                // in its tenant map, which the shard cannot see.
                Method::Invite if self.nic_screens && src.transport == Transport::Udp => Work::Screened,
                _ => Work::New,
            };
            if self.overload.admits(work, hash) {
                return false;
            }
        }
        // A client retransmits a request it got no final answer to for at
        // most 64·T1 (Timers B and F).
        let keep = 64 * self.env.cfg.timers.t1;
        if self.refused.insert(now, fp, keep) {
            self.env.stats.shed_forgotten.inc();
        }
        self.env.stats.requests_shed.inc();
        let (lo, hi) = self.overload.bounds().map_or((1, 1), |b| b.retry_after);
        let spread = u64::from(hi.saturating_sub(lo)) + 1;
        let secs = lo.saturating_add(u32::try_from(self.env.rng.next_u64() % spread).unwrap_or(0));
        let mut digits = [0u8; 10];
        let retry_after = decimal(secs, &mut digits);
        let tag = shed_tag(hash);
        self.reply_stateless_tagged(src, msg, 503, "Service Unavailable", &tag, &[("Retry-After", retry_after)]);
        true
    }

    /// Tells the shard whether the XDP program applies its refused share
    /// to new INVITEs over UDP ([`Shard::poll_shed`] goes to it): those the
    /// shard then refuses only over the high bound, as it does retrieves.
    pub fn set_nic_screening(&mut self, on: bool) {
        self.nic_screens = on;
    }

    /// What the I/O layer publishes to the XDP program for this shard
    /// (docs/decisions/0022-overload-503-in-xdp.md), when it changed or
    /// must be renewed: the share of new requests refused
    /// ([`Controller::refused_share`]), and for how long from `now` the
    /// ACKs of overload 503s may still come (64·T1 after the last share
    /// that refused anything). `None` when the last one still holds.
    pub fn poll_shed(&mut self, now: Instant) -> Option<ShedShare> {
        let refuse = self.overload.refused_share();
        let keep = 64 * self.env.cfg.timers.t1;
        let renew = match self.published {
            None => refuse > 0,
            Some(p) => p.refuse != refuse || (refuse > 0 && now.saturating_duration_since(p.at) >= keep / 2),
        };
        if !renew {
            return None;
        }
        self.published = Some(Published { refuse, at: now });
        Some(ShedShare { refuse, ack_for: keep })
    }

    /// Whether the INVITE `msg` is a retrieve (the retrieve feature code,
    /// or Replaces).
    fn is_retrieve(&self, msg: &SipMessage<'_>) -> bool {
        let replaces = msg.header_raw(b"Replaces").is_some();
        let user = msg.request_uri_parsed().and_then(|u| u.user).unwrap_or_default();
        self.intent(user, replaces) == Intent::Retrieve
    }
}

/// The refused share a shard last handed out for XDP, and when.
#[derive(Debug, Clone, Copy)]
pub(super) struct Published {
    refuse: u32,
    at: Instant,
}

/// A shard's refusals as the XDP program applies them ([`Shard::poll_shed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShedShare {
    /// New requests whose admission hash has its top 16 bits under this
    /// are refused (of [`crate::proto::overload::SHARE_ONE`]).
    pub refuse: u32,
    /// How long from now ACKs of overload 503s are dropped.
    pub ack_for: Duration,
}

/// The To tag of an overload 503: `ovl-` and the request's admission hash
/// in hex, as the XDP program writes it, so that the ACK of either is
/// recognised (and dropped) there.
fn shed_tag(hash: u32) -> [u8; 12] {
    let mut tag = *b"ovl-00000000";
    for (i, d) in tag[4..].iter_mut().enumerate() {
        let v = (hash >> (28 - 4 * i)) & 15;
        *d = if v < 10 { b'0' + v as u8 } else { b'a' + (v - 10) as u8 };
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_peers_are_written_in_place() {
        let mut d = [0u8; 10];
        assert_eq!(decimal(0, &mut d), b"0");
        assert_eq!(decimal(8, &mut d), b"8");
        assert_eq!(decimal(3600, &mut d), b"3600");
        assert_eq!(decimal(u32::MAX, &mut d), b"4294967295");
        let mut p = [0u8; 18];
        let v4: SocketAddr = "192.0.2.1:5060".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(peer_bytes(v4, &mut p), [192, 0, 2, 1, 0x13, 0xc4]);
        let v6: SocketAddr = "[2001:db8::1]:5061".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(peer_bytes(v6, &mut p).len(), 18);
        assert_eq!(&shed_tag(0x0a1b_2c3d), b"ovl-0a1b2c3d");
    }
}
