//! The park's state transitions, driven through its methods with
//! hand-written requests: no phones, no shard, no network.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::proto::config::Config;
use crate::proto::env::{Env, Tag, Transmit};
use crate::proto::ids::Seed;
use crate::proto::ids::ServerId;
use crate::proto::media::streams::Streams;
use crate::proto::notify::Notifier;
use crate::proto::registrar::Registrar;
use crate::proto::reject::Reject;
use crate::proto::sip::Peer;
use crate::proto::sip::parse::{Method, SipMessage, Uri};
use crate::proto::tu::Incoming;
use crate::proto::txn::{RequestKey, Transactions};

struct Rig {
    env: Env,
    txns: Transactions<Owner>,
    registrar: Registrar,
    notifier: Notifier,
    park: Park,
    media: Streams,
    now: Instant,
    n: u32,
}

const SDP: &str = "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

impl Rig {
    fn new() -> Rig {
        let now = Instant::now();
        let wall = WallClock { at: now, unix: Duration::from_secs(1_795_543_200) };
        let cfg = Arc::new(Config::default());
        let seed = Seed::from_u64(3);
        Rig {
            txns: Transactions::new(seed.hasher(1)),
            registrar: Registrar::new(&cfg, seed.hasher(2)),
            notifier: Notifier::default(),
            park: Park::new(wall, &seed),
            media: Streams::new(16),
            env: Env::new(0, cfg, wall, &seed),
            now,
            n: 0,
        }
    }

    fn cx(&mut self) -> (Ctx<'_>, &mut Park) {
        let cx = Ctx {
            now: self.now,
            env: &mut self.env,
            txns: &mut self.txns,
            registrar: &mut self.registrar,
            notifier: &mut self.notifier,
            media: &mut self.media,
        };
        (cx, &mut self.park)
    }

    fn peer() -> Peer {
        Peer::udp("10.0.0.1:5062".parse().expect("addr"))
    }

    /// An out-of-dialog INVITE to `ruri` from 101; returns its server
    /// transaction and whether the park took it.
    fn invite(&mut self, ruri: &str, extra: &str) -> (ServerId, Result<(), Reject>) {
        self.n += 1;
        let n = self.n;
        let text = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKi{n}\r\n\
             From: \"Alice\" <sip:101@acme.example>;tag=a{n}\r\nTo: <{ruri}>\r\nCall-ID: c{n}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:101@10.0.0.1:5062>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        );
        let msg = SipMessage::parse(text.as_bytes()).expect("parse");
        let branch = format!("z9hG4bKi{n}");
        let now = self.now;
        let server = self.txns.create(
            &mut self.env,
            now,
            Self::peer(),
            Method::Invite,
            &RequestKey::Branch { branch: branch.as_bytes(), host: b"10.0.0.1", port: Some(5062) },
        );
        let ruri = Uri::parse(msg.request_uri().expect("ruri")).expect("uri");
        let cfg = Arc::clone(&self.env.cfg);
        let policy = cfg.defaults.clone();
        let (mut cx, park) = self.cx();
        let r = park.invite(&mut cx, Incoming { src: Self::peer(), msg: &msg, server }, &ruri, &policy, false);
        (server, r)
    }

    /// ACKs the 200 of the park whose INVITE was number `n`.
    fn ack(&mut self, n: u32, local_tag: &[u8]) {
        let text = format!(
            "ACK sip:sp0.sipark@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa{n}\r\n\
             From: \"Alice\" <sip:101@acme.example>;tag=a{n}\r\nTo: <sip:*68103@acme.example>;tag={}\r\n\
             Call-ID: c{n}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            String::from_utf8_lossy(local_tag)
        );
        let msg = SipMessage::parse(text.as_bytes()).expect("parse");
        let (mut cx, park) = self.cx();
        park.on_ack(&mut cx, Self::peer(), &msg, format!("c{n}").as_bytes(), Some(local_tag), 1);
    }

    fn sent(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Transmit { payload, .. }) = self.env.out.pop() {
            out.push(String::from_utf8_lossy(&payload).into_owned());
        }
        out
    }

    fn events(&mut self) -> Vec<Lifecycle> {
        std::iter::from_fn(|| self.park.poll_event()).map(|e| e.what).collect()
    }

    fn only_call(&self) -> &Call {
        assert_eq!(self.park.len(), 1);
        self.park.calls.values().next().expect("a call")
    }

    /// Runs the park's timers up to `at`.
    fn run_until(&mut self, at: Instant) {
        while let Some(t) = self.park.next_timeout().filter(|t| *t <= at) {
            self.now = t;
            let (mut cx, park) = self.cx();
            park.handle_timer(&mut cx);
        }
        self.now = at;
    }
}

#[test]
fn a_park_answers_then_parks_at_the_ack_and_times_out_without_a_parker() {
    let mut rig = Rig::new();
    let (_, r) = rig.invite("sip:*68103@acme.example", "Referred-By: <sip:102@acme.example>\r\n");
    assert_eq!(r, Ok(()));
    let sent = rig.sent();
    assert!(sent[0].starts_with("SIP/2.0 200 OK\r\n") && sent[0].contains("a=inactive"), "{sent:?}");
    assert_eq!(rig.only_call().phase(), Phase::Answering);
    assert_eq!((rig.park.listed(), rig.events()), (0, vec![]), "answered is not parked");
    assert_eq!(rig.park.list_of(b"acme.example", b"103").len(), 1, "but it holds its place on 103");

    let tag = rig.only_call().a.local_tag();
    rig.ack(1, &tag);
    assert_eq!(rig.only_call().phase(), Phase::Parked);
    assert_eq!((rig.park.listed(), rig.events()), (1, vec![Lifecycle::Parked]));
    assert_eq!(rig.env.stats.parks.get(), 1);
    let parked_at = rig.now;
    assert_eq!(rig.park.next_timeout(), Some(parked_at + Duration::from_secs(300)), "the park timeout is its timer");

    // Nobody to recall (102 has no device): the call ends at the timeout.
    rig.run_until(parked_at + Duration::from_secs(301));
    assert!(rig.park.is_empty());
    assert_eq!(rig.events(), [Lifecycle::TimedOut]);
    assert_eq!((rig.park.listed(), rig.env.stats.park_timeouts.get()), (0, 1));
    assert!(rig.park.list_of(b"acme.example", b"103").is_empty(), "the list is gone with its last call");
    assert!(rig.sent().iter().any(|m| m.starts_with("BYE sip:101@10.0.0.1:5062 ")), "the parked party gets BYE");
    assert_eq!(rig.park.dialogs(), 0, "its dialog left the index");
}

#[test]
fn refusals_leave_no_call_behind() {
    let mut rig = Rig::new();
    let cases = [
        ("sip:*68@acme.example", "", Reject::SelfParkNeedsReferredBy),
        ("sip:*68@acme.example", "Referred-By: <sip:102@other.example>\r\n", Reject::NotOfTenant),
        ("sip:*68no%20ext@acme.example", "", Reject::NotFound),
        ("sip:*69103@acme.example", "", Reject::NotFound),
        ("sip:*88103@acme.example", "", Reject::NoParkedCall),
        ("sip:*58@acme.example", "Referred-By: <sip:102@acme.example>\r\n", Reject::NoParkGroup),
    ];
    for (ruri, extra, want) in cases {
        let (_, r) = rig.invite(ruri, extra);
        assert_eq!(r, Err(want), "{ruri} {extra}");
    }
    assert!(rig.park.is_empty());
    assert!(rig.events().is_empty());
    for n in 0..8 {
        let (_, r) = rig.invite("sip:*68103@acme.example", "");
        assert_eq!(r, Ok(()), "park {n}");
    }
    let (_, r) = rig.invite("sip:*68103@acme.example", "");
    assert_eq!(r, Err(Reject::ExtensionParkFull), "--max-parks-per-ext counts answering calls too");
}

#[test]
fn the_lifecycle_follows_the_pair_of_states() {
    use Phase::*;
    let p = |x| Some(x);
    assert_eq!(lifecycle(None, p(Parked), None), Some(Lifecycle::Parked), "a REFER park");
    assert_eq!(lifecycle(p(Answering), p(Parked), None), Some(Lifecycle::Parked));
    assert_eq!(lifecycle(p(Recalling), p(Retrieving), None), Some(Lifecycle::RetrieveStarted));
    assert_eq!(lifecycle(p(Retrieving), p(Parked), None), Some(Lifecycle::RetrieveFailed));
    assert_eq!(lifecycle(p(Retrieving), p(Bridged), None), Some(Lifecycle::Retrieved));
    assert_eq!(lifecycle(p(Recalling), p(RecallBridging), None), Some(Lifecycle::RecallAnswered));
    assert_eq!(lifecycle(p(Retrieving), None, Some(End::Hangup)), Some(Lifecycle::HungUp));
    assert_eq!(lifecycle(p(Recalling), None, Some(End::Timeout)), Some(Lifecycle::TimedOut));
    assert_eq!(lifecycle(p(Parked), None, Some(End::Shutdown)), Some(Lifecycle::Shutdown));
    assert_eq!(lifecycle(p(Answering), None, Some(End::Gone)), None, "never parked");
    assert_eq!(lifecycle(p(Bridged), None, Some(End::Gone)), None, "already out of the park");
    assert_eq!(lifecycle(p(Recalling), p(Recalling), None), None, "the group joining is no new state");
    assert_eq!(leave_reason(p(RecallBridging), None), LeaveReason::Recalled);
    assert_eq!(leave_reason(p(Bridged), None), LeaveReason::Retrieved);
    assert_eq!(leave_reason(None, Some(End::Timeout)), LeaveReason::Timeout);
    for phase in [Answering, Parked, Recalling, Retrieving, RecallBridging, Bridged, Referrer] {
        assert!(!phase.listed() || phase.on_list(), "{phase:?}: listed calls are on the list");
        assert!(!phase.retrievable() || phase.listed(), "{phase:?}: retrievable calls are listed");
    }
}

#[test]
fn the_tables_give_back_what_a_burst_of_parked_calls_left() {
    use crate::proto::timers::MIN_SHRINK;
    let mut rig = Rig::new();
    let burst = 3000;
    for i in 0..burst {
        let (_, r) = rig.invite(&format!("sip:*68{}@acme.example", 1000 + i), "");
        assert_eq!(r, Ok(()));
    }
    rig.sent();
    let tags: Vec<(u32, Tag)> = rig
        .park
        .calls
        .values()
        .map(|c| {
            let n = std::str::from_utf8(&c.a.call_id()[1..]).expect("c<n>").parse().expect("n");
            (n, c.a.local_tag())
        })
        .collect();
    for (n, tag) in tags {
        rig.ack(n, &tag);
    }
    assert_eq!((rig.park.len(), rig.park.listed()), (burst as usize, burst as u64));
    let peak = (rig.park.calls.capacity(), rig.park.exts.capacity(), rig.park.dialogs.capacity());
    assert!(peak.0 >= burst as usize && peak.1 >= burst as usize && peak.2 >= burst as usize, "{peak:?}");

    // All time out with nobody to recall; one parked later stays.
    let later = rig.now + Duration::from_secs(10);
    rig.now = later;
    let (_, r) = rig.invite("sip:*68999@acme.example", "");
    assert_eq!(r, Ok(()));
    let last = rig.park.list_of(b"acme.example", b"999")[0];
    let tag = rig.park.call(last).expect("the last call").a.local_tag();
    rig.ack(rig.n, &tag);
    rig.run_until(later + Duration::from_secs(300) - Duration::from_millis(1));
    assert_eq!(rig.park.len(), 1, "the burst timed out, the last call is parked");
    let left = (rig.park.calls.capacity(), rig.park.exts.capacity(), rig.park.dialogs.capacity());
    assert!(left.0 <= MIN_SHRINK && left.1 <= MIN_SHRINK && left.2 <= MIN_SHRINK, "{left:?} after {peak:?}");
    assert_eq!(rig.park.list_of(b"acme.example", b"999"), vec![last], "and is still found");
}
