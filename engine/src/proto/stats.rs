//! Per-shard counters.
//!
//! Each counter has one writer (the shard's own thread) and is read by the
//! metrics thread at scrape time, so an increment is a relaxed load and
//! store, not a locked read-modify-write.

use std::sync::atomic::{AtomicU64, Ordering};

/// A single-writer counter or gauge.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one. Only the owning shard's thread may call this.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`. Only the owning shard's thread may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }
    /// Sets a gauge. Only the owning shard's thread may call this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Reads the value (any thread).
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! stats {
    ($($(#[doc = $doc:literal])* $kind:ident $name:ident,)*) => {
        /// Counters and gauges of one shard (and its worker's I/O).
        #[derive(Debug, Default)]
        pub struct ShardStats {
            $($(#[doc = $doc])* pub $name: Counter,)*
        }

        impl ShardStats {
            /// `(name, kind, help, value)` for every field, for exporters.
            pub fn each(&self, mut f: impl FnMut(&'static str, Kind, &'static str, u64)) {
                $(f(stringify!($name), Kind::$kind, concat!($($doc),*).trim(), self.$name.get());)*
            }
        }
    };
}

/// Whether a field only goes up or may go down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

stats! {
    /// Datagrams received by this worker's socket.
    Counter datagrams_in,
    /// Datagrams sent by this worker's socket.
    Counter datagrams_out,
    /// Sends the kernel refused (logged at debug level).
    Counter send_errors,
    /// Messages that did not parse, and requests refused at the front door
    /// as malformed (answered 400, 416 or 505 when possible).
    Counter parse_errors,
    /// Datagrams dropped without an answer (unreadable, or responses nobody waits for).
    Counter dropped,
    /// Datagrams handed to another shard's worker.
    Counter handoffs_out,
    /// Datagrams received from another shard's worker.
    Counter handoffs_in,
    /// Hand-offs lost because the owner's inbox was full.
    Counter handoffs_dropped,
    /// Calls parked (ACK received).
    Counter parks,
    /// Parks refused (a park INVITE, `*58` or a park REFER answered with an
    /// error other than a shard limit), and parks cancelled or left without
    /// an answer in their ACK.
    Counter parks_rejected,
    /// Calls retrieved and bridged.
    Counter retrieves,
    /// Retrieves refused or failed (nothing parked, a bad request, the
    /// parked leg refused, never answered or hung up meanwhile).
    Counter retrieves_failed,
    /// Recalls started after a park timeout.
    Counter recalls,
    /// Recalls answered and bridged.
    Counter recalls_answered,
    /// Parked calls hung up after an unanswered or impossible recall.
    Counter park_timeouts,
    /// Parked calls that ended because the parked party hung up.
    Counter hangups,
    /// Park-lifecycle events dropped because nobody polled them (at most
    /// 65,536 wait).
    Counter park_events_dropped,
    /// park-info NOTIFY requests sent (first transmissions).
    Counter notifies_sent,
    /// park-info NOTIFY retransmissions (Timer E).
    Counter notifies_retransmitted,
    /// park-info NOTIFYs that failed (error response or Timer F).
    Counter notifies_failed,
    /// REGISTER requests accepted.
    Counter registrations,
    /// Retransmissions sent by any client or server transaction.
    Counter retransmissions,
    /// 401 challenges sent (digest authentication, stale ones included).
    Counter auth_challenges,
    /// Requests refused 403 for wrong credentials, a user that may not act
    /// as the From (To) user, or a source outside the trusted peers.
    Counter auth_failures,
    /// Credentials answered with a fresh challenge without being checked:
    /// their nonce already had a wrong response, their nonce count was not
    /// above the last one, or the nonce was forgotten under pressure (ADR 0019).
    Counter auth_nonce_reuses,
    /// Nonce-count entries evicted because the table was full.
    Counter auth_nonce_evictions,
    /// Sources this shard banned after too many failed digest responses.
    Counter auth_bans,
    /// Bans decided by another worker and applied here too.
    Counter auth_bans_shared,
    /// Datagrams dropped unread because their source is banned.
    Counter auth_banned_drops,
    /// Users locked after too many failed digest responses.
    Counter auth_user_locks,
    /// Credentials of a locked user refused (403) without being checked.
    Counter auth_locked_refusals,
    /// Sources or users not tracked (or bans not reported) because a
    /// guard table was full.
    Counter auth_guard_full,
    /// Bans the worker could not write to the XDP ban map.
    Counter auth_xdp_ban_errors,
    /// Sources banned now (this shard's bans and those it was told of).
    Gauge auth_bans_active,
    /// Requests refused because a per-shard limit was reached (transactions,
    /// parked calls, dialogs, bindings); overload control's refusals count
    /// in `requests_shed`.
    Counter overload_rejects,
    /// New out-of-dialog requests refused 503 by overload control: the
    /// worker's receive path was queueing past its bound.
    Counter requests_shed,
    /// Of `requests_shed`: retransmissions of a request refused before,
    /// refused again after admission had opened.
    Counter shed_again,
    /// Refusals forgotten before their time because a newer one took their
    /// slot (a retransmission of one may then be admitted).
    Counter shed_forgotten,
    /// Times the worker became overloaded (its queueing delay reached
    /// `--overload-delay-ms`).
    Counter overload_entered,
    /// Microseconds the worker spent overloaded.
    Counter overloaded_us,
    /// 1 while the worker is overloaded, else 0.
    Gauge overloaded,
    /// The share of new requests refused now, in 1/65536 (what the XDP
    /// program applies with `--xdp`; ADR 0022).
    Gauge overload_refused_share,
    /// Times the worker could not write its refused share to the XDP map.
    Counter overload_xdp_errors,
    /// The receive path's queueing delay last measured: how long the
    /// oldest datagram of the last batch waited, microseconds.
    Gauge queue_delay_us,
    /// Bindings currently registered.
    Gauge bindings,
    /// Calls currently parked (including ones being recalled).
    Gauge parked,
    /// Calls currently bridged through sipark.
    Gauge bridged,
    /// Transactions still at work (waiting for an answer or retransmitting
    /// one); these count against the transaction limit.
    Gauge transactions,
    /// Finished transactions kept only to absorb retransmissions (RFC 3261
    /// Timers D, I, J, K; RFC 6026 Timers L and M).
    Gauge transactions_lingering,
    /// Lingering transactions ended early to stay under the lingering limit.
    Counter transactions_evicted,
    /// Music-on-hold streams running (one per parked call hearing music).
    Gauge moh_streams,
    /// Music-on-hold streams started.
    Counter moh_streams_started,
    /// Parked calls that got silence instead of music: the worker ran its
    /// most streams (`--moh-max-streams`).
    Counter moh_refused,
    /// RTP packets of music on hold handed to the media socket.
    Counter moh_packets,
    /// Music-on-hold packets whose time had passed when the worker got to
    /// them (it was late by more than a packet time): skipped, not sent late.
    Counter moh_packets_skipped,
    /// Music-on-hold packets due to a stream with nowhere to send yet (its
    /// SDP gave no usable address, and no RTP from its phone latched it).
    Counter moh_packets_unaddressed,
    /// Streams latched to the address their phone's RTP came from
    /// (symmetric RTP).
    Counter moh_latched,
    /// Datagrams on the media socket that latched nothing: RTCP, RTP from
    /// an unknown or ambiguous source, or not RTP at all.
    Counter media_dropped,
    /// Music-on-hold packets the kernel refused to send.
    Counter moh_send_errors,
}
