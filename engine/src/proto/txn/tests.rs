use super::*;
use crate::proto::config::Timers;

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
    let mut tx = ClientTxn::new(Kind::Invite, addr(), b"INVITE".to_vec(), Head::default(), now, &t);
    let cell = std::cell::RefCell::new(&mut tx);
    let (retrans, end, timed_out) = drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
    assert_eq!(retrans, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(end, 32_000);
    assert!(timed_out);
}

#[test]
fn timer_e_caps_at_t2_and_timer_f_ends() {
    let t = Timers::default();
    let now = Instant::now();
    let mut tx = ClientTxn::new(Kind::NonInvite, addr(), b"NOTIFY".to_vec(), Head::default(), now, &t);
    let cell = std::cell::RefCell::new(&mut tx);
    let (retrans, end, timed_out) = drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
    assert_eq!(&retrans[..5], &[500, 1500, 3500, 7500, 11500]);
    assert!(retrans.windows(2).skip(3).all(|w| w[1] - w[0] == 4000), "{retrans:?}");
    assert_eq!(end, 32_000);
    assert!(timed_out);
}

#[test]
fn provisional_moves_timer_e_to_t2_and_final_starts_timer_k() {
    let t = Timers::default();
    let now = Instant::now();
    let mut tx = ClientTxn::new(Kind::NonInvite, addr(), b"NOTIFY".to_vec(), Head::default(), now, &t);
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
    let mut tx = ClientTxn::new(Kind::Invite, addr(), Vec::new(), Head::default(), now, &t);
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
    let (retrans, end, timed_out) = drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
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
    let t = Timers { t1: Duration::from_millis(100), t2: Duration::from_millis(400), t4: Duration::from_millis(1000) };
    let now = Instant::now();
    let mut tx = ClientTxn::new(Kind::NonInvite, addr(), Vec::new(), Head::default(), now, &t);
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
        let mut tx = ClientTxn::new(kind, tcp, b"REQ".to_vec(), Head::default(), now, &t);
        let cell = std::cell::RefCell::new(&mut tx);
        let (retrans, end, timed_out) =
            drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
        assert!(retrans.is_empty(), "{kind:?} over TCP retransmitted at {retrans:?}");
        assert_eq!((end, timed_out), (32_000, true), "{kind:?}: Timer B/F still ends it");
    }
    let mut tx = ServerTxn::new(Kind::Invite, tcp, now, &t);
    tx.sent(now, 486, b"SIP/2.0 486 Busy Here", &t);
    let cell = std::cell::RefCell::new(&mut tx);
    let (retrans, end, timed_out) = drive(now, |at| cell.borrow_mut().on_timer(at, &t), || cell.borrow().deadline());
    assert!(retrans.is_empty(), "486 over TCP retransmitted at {retrans:?}");
    assert_eq!((end, timed_out), (32_000, true), "Timer H still ends it");
}

// ----- the transaction table, through a real `Env` ---------------------

use std::sync::Arc;

use crate::proto::config::Config;
use crate::proto::env::{Transmit, WallClock};
use crate::proto::ids::Seed;
use crate::proto::sip::Transport;
use crate::proto::sip::write::{Request, Routes, write_branch, write_request};

fn env() -> Env {
    let wall = WallClock { at: Instant::now(), unix: Duration::from_secs(1_795_543_200) };
    Env::new(0, Arc::new(Config::default()), wall, &Seed::from_u64(9))
}

fn sent(env: &mut Env) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(Transmit { payload, .. }) = env.out.pop() {
        out.push(String::from_utf8_lossy(&payload).into_owned());
    }
    out
}

fn table() -> Transactions<u8> {
    Transactions::new(Seed::from_u64(9).hasher(1))
}

/// Starts an INVITE client transaction, as a recall branch would, through
/// a Route, and returns its id.
fn invite(env: &mut Env, txns: &mut Transactions<u8>, now: Instant) -> ClientId {
    let id = env.ids.client();
    let mut branch = Vec::new();
    write_branch(&mut branch, 0, id.get());
    let mut out = Vec::new();
    let head = write_request(
        &mut out,
        &Request {
            method: "INVITE",
            uri: b"sip:101@10.0.0.1:5062",
            transport: Transport::Udp,
            advertise: "127.0.0.1:5060",
            branch: &branch,
            routes: Routes::One(b"<sip:10.0.0.9;lr>"),
            from: b"<sip:200@acme.example>",
            from_tag: b"f1",
            to: b"<sip:101@acme.example>",
            call_id: b"c1@sipark",
            cseq: 7,
            contact: Some(b"<sip:sp0.sipark@127.0.0.1:5060>"),
            allow: true,
            headers: &[("Subject", b"Park recall")],
            body: None,
        },
    );
    txns.start(env, now, id, Kind::Invite, addr(), out, head, 1);
    id
}

fn response(id: ClientId, code: u16, reason: &str, to_tag: &str) -> Vec<u8> {
    let mut branch = Vec::new();
    write_branch(&mut branch, 0, id.get());
    format!(
        "SIP/2.0 {code} {reason}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={}\r\nFrom: <sip:200@acme.example>;tag=f1\r\n\
         To: <sip:101@acme.example>;tag={to_tag}\r\nCall-ID: c1@sipark\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(&branch)
    )
    .into_bytes()
}

#[test]
fn cancel_waits_for_a_provisional_and_copies_the_invites_fields() {
    let (mut env, mut txns, now) = (env(), table(), Instant::now());
    let id = invite(&mut env, &mut txns, now);
    assert_eq!(sent(&mut env).len(), 1, "the INVITE");
    txns.cancel(&mut env, id);
    assert!(sent(&mut env).is_empty(), "no CANCEL before a provisional response (§9.1)");
    let ringing = response(id, 180, "Ringing", "r1");
    let ev = txns.on_response(&mut env, now, &SipMessage::parse(&ringing).expect("parse"));
    assert!(matches!(ev, Some(ClientEvent { reply: Reply::Provisional(180), owner: 1, .. })));
    let out = sent(&mut env);
    assert_eq!(out.len(), 1, "{out:?}");
    let via = format!("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsp0.{:x};rport", id.get());
    assert_eq!(
        out[0],
        format!(
            "CANCEL sip:101@10.0.0.1:5062 SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nRoute: <sip:10.0.0.9;lr>\r\n\
             From: <sip:200@acme.example>;tag=f1\r\nTo: <sip:101@acme.example>\r\nCall-ID: c1@sipark\r\n\
             CSeq: 7 CANCEL\r\nContent-Length: 0\r\n\r\n"
        )
    );
}

#[test]
fn a_non_2xx_final_is_acked_with_its_to_tag_and_the_ack_repeats_for_retransmissions() {
    let (mut env, mut txns, now) = (env(), table(), Instant::now());
    let id = invite(&mut env, &mut txns, now);
    sent(&mut env);
    let busy = response(id, 486, "Busy Here", "b7");
    let ev = txns.on_response(&mut env, now, &SipMessage::parse(&busy).expect("parse"));
    assert!(matches!(ev, Some(ClientEvent { reply: Reply::Final(486), .. })));
    let out = sent(&mut env);
    assert_eq!(out.len(), 1);
    assert!(out[0].starts_with("ACK sip:101@10.0.0.1:5062 SIP/2.0\r\n"), "{}", out[0]);
    assert!(out[0].contains("\r\nTo: <sip:101@acme.example>;tag=b7\r\n"), "{}", out[0]);
    assert!(out[0].contains("\r\nCSeq: 7 ACK\r\n") && out[0].contains("\r\nRoute: <sip:10.0.0.9;lr>\r\n"));
    assert!(txns.on_response(&mut env, now, &SipMessage::parse(&busy).expect("parse")).is_none());
    assert_eq!(sent(&mut env), out, "a retransmitted 486 gets the same ACK, and the owner hears nothing");
    assert_eq!(txns.cseq(id), Some(7));
}

#[test]
fn timer_b_reports_the_timeout_to_the_owner_once() {
    let (mut env, mut txns, now) = (env(), table(), Instant::now());
    let id = invite(&mut env, &mut txns, now);
    let mut events = Vec::new();
    let mut at = now;
    while let Some(next) = txns.next_timeout() {
        at = next;
        if let Some(ev) = txns.handle_timer(&mut env, at) {
            events.push(ev);
        }
    }
    assert_eq!(at - now, 64 * Timers::default().t1);
    let retransmits = events.iter().filter(|e| matches!(e, TxnEvent::Retransmitted { owner: 1 })).count();
    assert_eq!(retransmits, 6, "Timer A at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s");
    assert_eq!(events.last(), Some(&TxnEvent::TimedOut { id, owner: 1 }));
    assert_eq!(sent(&mut env).len(), 7, "the INVITE and six retransmissions");
    assert_eq!(txns.live(), 0);
}

/// The key of a request from 10.0.0.1:5062 with `branch`.
fn key_of(branch: &[u8]) -> RequestKey<'_> {
    RequestKey::Branch { branch, host: b"10.0.0.1", port: Some(5062) }
}

fn request(branch: &str, method: &str) -> Vec<u8> {
    format!(
        "{method} sip:*68103@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch={branch}\r\n\
         From: <sip:101@acme.example>;tag=a\r\nTo: <sip:*68103@acme.example>\r\nCall-ID: x1\r\n\
         CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn a_2xx_never_acked_is_retransmitted_then_reported_to_its_call() {
    let (mut env, mut txns, now) = (env(), table(), Instant::now());
    let req = request("z9hG4bKa1", "INVITE");
    let msg = SipMessage::parse(&req).expect("parse");
    assert_eq!(txns.on_request(&mut env, now, Method::Invite, &key_of(b"z9hG4bKa1")), Match::New);
    let id = txns.create(&mut env, now, addr(), Method::Invite, &key_of(b"z9hG4bKa1"));
    let call = CallId::new(42).expect("non-zero");
    txns.set_call(id, call);
    txns.respond(&mut env, now, id, &msg, &Response::new(200, "OK").tag(b"t1"));
    assert!(sent(&mut env)[0].starts_with("SIP/2.0 200 OK\r\n"));
    assert_eq!(txns.on_request(&mut env, now, Method::Invite, &key_of(b"z9hG4bKa1")), Match::Retransmission);
    assert_eq!(sent(&mut env).len(), 1, "a retransmitted INVITE gets the 200 again");
    let mut events = Vec::new();
    while let Some(at) = txns.next_timeout() {
        events.extend(txns.handle_timer(&mut env, at));
    }
    assert_eq!(events, vec![TxnEvent::NotAcked { server: id, call }]);
    assert_eq!(sent(&mut env).len(), 10, "Timer G at 0.5, 1.5, 3.5, 7.5 s, then every T2 until 64·T1");
}

#[test]
fn lingering_transactions_past_the_cap_end_oldest_first() {
    let mut env = env();
    let mut cfg = Config::default();
    cfg.limits.max_lingering = 2;
    env.cfg = Arc::new(cfg);
    let (mut txns, now) = (table(), Instant::now());
    for i in 0..3 {
        let branch = format!("z9hG4bKo{i}");
        let req = request(&branch, "OPTIONS");
        let msg = SipMessage::parse(&req).expect("parse");
        let id = txns.create(&mut env, now, addr(), Method::Options, &key_of(branch.as_bytes()));
        txns.respond(&mut env, now, id, &msg, &Response::new(200, "OK"));
    }
    assert_eq!((txns.lingering(), txns.live()), (2, 0));
    assert_eq!(env.stats.transactions_evicted.get(), 1);
    assert_eq!(
        txns.on_request(&mut env, now, Method::Options, &key_of(b"z9hG4bKo0")),
        Match::New,
        "the oldest is gone"
    );
    assert_eq!(txns.on_request(&mut env, now, Method::Options, &key_of(b"z9hG4bKo2")), Match::Retransmission);
}

#[test]
fn tables_give_back_what_a_burst_left_once_it_has_passed() {
    use crate::proto::timers::MIN_SHRINK;
    let (mut env, mut txns, now) = (env(), table(), Instant::now());
    let burst = 5000;
    for i in 0..burst {
        let branch = format!("z9hG4bKb{i}");
        let req = request(&branch, "OPTIONS");
        let msg = SipMessage::parse(&req).expect("parse");
        let id = txns.create(&mut env, now, addr(), Method::Options, &key_of(branch.as_bytes()));
        txns.respond(&mut env, now, id, &msg, &Response::new(200, "OK"));
    }
    let peak = (txns.server.capacity(), txns.index.capacity(), txns.timers.capacity());
    assert!(peak.0 >= burst && peak.1 >= burst && peak.2 >= burst, "{peak:?}");
    // One transaction outlives the burst by starting later.
    let later = now + Duration::from_secs(1);
    let req = request("z9hG4bKlast", "OPTIONS");
    let msg = SipMessage::parse(&req).expect("parse");
    let last = txns.create(&mut env, later, addr(), Method::Options, &key_of(b"z9hG4bKlast"));
    txns.respond(&mut env, later, last, &msg, &Response::new(200, "OK"));
    while txns.lingering() > 1 {
        let at = txns.next_timeout().expect("a lingering transaction has a deadline");
        txns.handle_timer(&mut env, at);
    }
    assert_eq!(txns.lingering(), 1, "the burst has ended, the last one lingers");
    let left = (txns.server.capacity(), txns.index.capacity(), txns.timers.capacity());
    assert!(left.0 <= MIN_SHRINK && left.1 <= MIN_SHRINK, "{left:?} after a peak of {peak:?}");
    assert!(left.2 <= MIN_SHRINK, "{left:?}");
    assert_eq!(txns.on_request(&mut env, later, Method::Options, &key_of(b"z9hG4bKlast")), Match::Retransmission);
}
