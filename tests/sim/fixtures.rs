//! Common casts of phones and the steps every scenario repeats.

use std::time::Duration;

use crate::harness::{Sim, ms, secs};
use crate::phone::{CallState, Notify};
use crate::wire::Msg;

pub const ACME: &str = "acme.example";
pub const BETA: &str = "beta.example";

/// The usual cast of one tenant.
#[derive(Debug, Clone, Copy)]
pub struct Office {
    /// 101 "Alice": the party that gets parked.
    pub alice: usize,
    /// 102 "Bob": the parker, two devices.
    pub bob: [usize; 2],
    /// 103: the extension calls are parked on, two devices.
    pub watch: [usize; 2],
    /// 104 "Carol": retrieves.
    pub carol: usize,
    /// 105 "Dave": another party to park, or a second retriever.
    pub dave: usize,
}

impl Sim {
    /// Adds the usual cast for `domain` and registers Bob's and 103's
    /// devices (one hour).
    pub fn office(&mut self, domain: &str) -> Office {
        let o = Office {
            alice: self.add_phone("101", domain, Some("Alice")),
            bob: [self.add_phone("102", domain, Some("Bob")), self.add_phone("102", domain, Some("Bob"))],
            watch: [self.add_phone("103", domain, None), self.add_phone("103", domain, None)],
            carol: self.add_phone("104", domain, Some("Carol")),
            dave: self.add_phone("105", domain, Some("Dave")),
        };
        for p in [o.bob[0], o.bob[1], o.watch[0], o.watch[1]] {
            let r = self.register_ok(p, 3600);
            assert_eq!(r.code(), Some(200), "REGISTER of phone {p}: {r:?}");
        }
        o
    }

    /// Waits for the final response of `phone`'s transaction `txn`.
    pub fn final_of(&mut self, phone: usize, txn: usize, max: Duration) -> Msg {
        let ok = self.run_until(max, |s| s.phones[phone].txns[txn].done());
        let t = &self.phones[phone].txns[txn];
        match (ok, t.final_response()) {
            (true, Some(m)) => m.clone(),
            _ => panic!(
                "phone {phone} {} got no final response within {max:?} (timed_out={}, responses={:?})\n{}",
                t.method,
                t.timed_out,
                t.responses,
                self.trace()
            ),
        }
    }

    /// Registers `phone`'s own contact and returns the final response.
    pub fn register_ok(&mut self, phone: usize, expires: u32) -> Msg {
        let now = self.now;
        let txn = self.phones[phone].register_self(now, expires);
        self.final_of(phone, txn, secs(40))
    }

    /// Sends a REGISTER with these Contact values and extra headers.
    pub fn register_with(&mut self, phone: usize, contacts: &[&str], extra: &[&str]) -> Msg {
        let now = self.now;
        let c: Vec<String> = contacts.iter().map(|s| (*s).to_owned()).collect();
        let e: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let txn = self.phones[phone].register(now, &c, &e);
        self.final_of(phone, txn, secs(40))
    }

    /// Starts a park of `phone`'s call on `ext@domain`, Referred-By `parker`.
    pub fn start_park(&mut self, phone: usize, domain: &str, ext: &str, parker: Option<&str>) -> usize {
        let now = self.now;
        let extra: Vec<String> = parker.map(|p| format!("Referred-By: {p}")).into_iter().collect();
        self.phones[phone].invite(now, &format!("sip:*68{ext}@{domain}"), &extra, true)
    }

    /// Parks `phone`'s call on `ext@domain` and waits until it is
    /// confirmed (ACK sent) and the ACK has arrived; returns the call.
    pub fn park(&mut self, phone: usize, domain: &str, ext: &str, parker: Option<&str>) -> usize {
        let call = self.start_park(phone, domain, ext, parker);
        let txn = self.phones[phone].calls[call].invite_txn.unwrap_or_default();
        let r = self.final_of(phone, txn, secs(40));
        assert_eq!(r.code(), Some(200), "park of {ext}@{domain} refused: {r:?}");
        // Let the ACK arrive and the NOTIFYs go out and be answered.
        self.run_for(ms(200));
        call
    }

    /// Parks with the office's Bob as parker.
    pub fn park_by_bob(&mut self, o: &Office, phone: usize) -> usize {
        let bob = self.phones[o.bob[0]].party();
        self.park(phone, &self.phones[o.bob[0]].domain.clone(), "103", Some(&bob))
    }

    /// Sends a retrieve INVITE to `ruri` from `phone` and waits for its
    /// final response; returns the call.
    pub fn retrieve(&mut self, phone: usize, ruri: &str) -> (usize, Msg) {
        let now = self.now;
        let call = self.phones[phone].invite(now, ruri, &[], true);
        let txn = self.phones[phone].calls[call].invite_txn.unwrap_or_default();
        let r = self.final_of(phone, txn, secs(60));
        self.run_for(ms(200));
        (call, r)
    }

    /// Hangs up `call` of `phone` and waits for the BYE's final response.
    pub fn hangup(&mut self, phone: usize, call: usize) -> Msg {
        let now = self.now;
        let txn = self.phones[phone].bye(now, call);
        let r = self.final_of(phone, txn, secs(40));
        self.run_for(ms(200));
        r
    }

    /// Waits until `phone` has received at least `n` NOTIFYs.
    pub fn wait_notifies(&mut self, phone: usize, n: usize, max: Duration) {
        let ok = self.run_until(max, |s| s.phones[phone].notifies.len() >= n);
        if !ok {
            panic!(
                "phone {phone} got {} NOTIFYs, wanted {n}: {:?}\n{}",
                self.phones[phone].notifies.len(),
                self.phones[phone].notifies,
                self.trace()
            );
        }
    }

    /// Waits until `phone`'s `call` has received a BYE.
    pub fn wait_bye(&mut self, phone: usize, call: usize, max: Duration) {
        let ok = self.run_until(max, |s| !s.phones[phone].calls[call].byes.is_empty());
        if !ok {
            panic!("phone {phone} call {call} never got a BYE: {:?}\n{}", self.phones[phone].calls[call], self.trace());
        }
    }

    /// The last NOTIFY `phone` received; panics if none.
    pub fn last_notify(&self, phone: usize) -> &Notify {
        self.phones[phone].last_notify().unwrap_or_else(|| panic!("phone {phone} got no NOTIFY\n{}", self.trace()))
    }

    /// Asserts `phone`'s `call` is in `state`.
    pub fn assert_call_state(&self, phone: usize, call: usize, state: CallState) {
        let c = &self.phones[phone].calls[call];
        assert_eq!(c.state, state, "phone {phone} call {call}: {c:?}\n{}", self.trace());
    }
}

/// The `o=` line of an SDP body: (user, session, version).
pub fn origin(sdp: &str) -> (String, String, u64) {
    let line = sdp.lines().find(|l| l.starts_with("o=")).unwrap_or_else(|| panic!("no o= line in {sdp:?}"));
    let mut parts = line[2..].split(' ');
    let user = parts.next().unwrap_or_default().to_owned();
    let sess = parts.next().unwrap_or_default().to_owned();
    let ver = parts.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad o= line {line:?}"));
    (user, sess, ver)
}

/// Asserts `sdp` carries `phone`'s media, under sipark's origin.
pub fn assert_media_of(sim: &Sim, sdp: &str, phone: usize, what: &str) {
    let p = &sim.phones[phone];
    for m in p.media_markers() {
        assert!(sdp.contains(&m), "{what}: expected {m:?} (phone {phone}'s media) in SDP:\n{sdp}");
    }
    let (user, _, _) = origin(sdp);
    assert_eq!(user, "sipark", "{what}: o= must be sipark's origin, SDP:\n{sdp}");
    assert!(!sdp.contains(&format!("o={} ", p.origin_user())), "{what}: phone's own o= leaked:\n{sdp}");
}
