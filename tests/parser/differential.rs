//! Differential test against rsip 0.4.
//!
//! For every corpus file both parsers extract the same eight fields
//! ([`Field`]). Where rsip cannot read a file, `expect::EXPECT` says so per
//! file (`Rsip::Only` / `Rsip::Unparseable`, with the reason); the sipark side
//! of those files is still checked against the hand-written values in
//! `corpus::corpus_parses_to_expected_fields`. The allow-list is kept honest:
//! a field left out must really disagree, and an "unparseable" file must
//! really be rejected by rsip.

use crate::expect::{EXPECT, Expect, Field, Rsip, load_corpus};
use crate::util::parse_ok;
use rsip::prelude::*;
use sipark::proto::sip::parse::SipMessage;

type Got = Result<Option<String>, String>;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sipark_field(m: &SipMessage<'_>, f: Field) -> Got {
    let e = |e: sipark::proto::sip::parse::ParseError| format!("{e:?}");
    Ok(match f {
        Field::Method => m.method().map(|x| text(x.as_bytes())),
        Field::RequestUri => m.request_uri().map(text),
        Field::Status => m.status().map(|s| s.to_string()),
        Field::CallId => Some(text(m.call_id().map_err(e)?)),
        Field::CSeq => {
            let c = m.cseq().map_err(e)?;
            Some(format!("{} {}", c.seq, text(c.method.as_bytes())))
        }
        Field::FromTag => m.from_hdr().map_err(e)?.tag().map(text),
        Field::ToTag => m.to_hdr().map_err(e)?.tag().map(text),
        Field::TopBranch => m.top_via().map_err(e)?.branch.map(text),
    })
}

fn rsip_field(m: &rsip::SipMessage, f: Field) -> Got {
    let e = |e: rsip::Error| e.to_string();
    Ok(match f {
        Field::Method => match m {
            rsip::SipMessage::Request(r) => Some(r.method().to_string()),
            rsip::SipMessage::Response(_) => None,
        },
        Field::RequestUri => match m {
            rsip::SipMessage::Request(r) => Some(r.uri().to_string()),
            rsip::SipMessage::Response(_) => None,
        },
        Field::Status => match m {
            rsip::SipMessage::Request(_) => None,
            rsip::SipMessage::Response(r) => Some(r.status_code().code().to_string()),
        },
        Field::CallId => Some(m.call_id_header().map_err(e)?.value().to_string()),
        Field::CSeq => {
            let c = m.cseq_header().map_err(e)?;
            Some(format!("{} {}", c.seq().map_err(e)?, c.method().map_err(e)?))
        }
        Field::FromTag => m.from_header().map_err(e)?.tag().map_err(e)?.map(|t| t.to_string()),
        Field::ToTag => m.to_header().map_err(e)?.tag().map_err(e)?.map(|t| t.to_string()),
        Field::TopBranch => m.via_header().map_err(e)?.typed().map_err(e)?.branch().map(|b| b.to_string()),
    })
}

fn compared(e: &Expect) -> &'static [Field] {
    match e.rsip {
        Rsip::All => &Field::ALL,
        Rsip::Only { fields, .. } => fields,
        Rsip::Unparseable { .. } => &[],
    }
}

#[test]
fn sipark_agrees_with_rsip() {
    let mut compared_fields = 0usize;
    for f in load_corpus() {
        let name = f.name.as_str();
        let e = crate::expect::expect_for(name);
        let ours = parse_ok(name, &f.bytes);
        let theirs = rsip::SipMessage::try_from(&f.bytes[..]);
        let theirs = match (e.rsip, theirs) {
            (Rsip::Unparseable { .. }, Err(_)) => continue,
            (Rsip::Unparseable { why }, Ok(_)) => panic!(
                "{name}: listed as unparseable by rsip ({why}) but rsip now parses it; \
                 compare its fields instead"
            ),
            (_, Err(err)) => panic!("{name}: rsip failed to parse it: {err}"),
            (_, Ok(m)) => m,
        };
        let fields = compared(e);
        for field in Field::ALL {
            let a = sipark_field(&ours, field);
            let b = rsip_field(&theirs, field);
            if fields.contains(&field) {
                assert!(a.is_ok(), "{name}: sipark failed on {field:?}: {a:?}");
                assert_eq!(a, b, "{name}: {field:?} differs (left: sipark, right: rsip)");
                compared_fields += 1;
            } else {
                let Rsip::Only { why, .. } = e.rsip else { unreachable!("Rsip::All compares every field") };
                assert_ne!(
                    a, b,
                    "{name}: {field:?} is excluded from the rsip comparison ({why}) but \
                     both parsers agree now; compare it"
                );
            }
        }
    }
    // Guard against an allow-list that quietly swallows everything.
    let full = EXPECT.iter().filter(|e| matches!(e.rsip, Rsip::All)).count();
    assert!(full >= 35, "only {full} corpus files are fully compared with rsip");
    assert!(compared_fields >= full * Field::ALL.len());
}

/// The differential test would be worthless if rsip accepted anything:
/// check it on one message where we know the answers.
#[test]
fn rsip_reference_sanity() {
    let m = rsip::SipMessage::try_from(&crate::expect::corpus_file("07_invite_park.sip")[..])
        .unwrap_or_else(|e| panic!("rsip on 07_invite_park.sip: {e}"));
    assert_eq!(rsip_field(&m, Field::RequestUri), Ok(Some("sip:*68103@acme.example".to_string())));
    assert_eq!(rsip_field(&m, Field::FromTag), Ok(Some("pk7f3a".to_string())));
    assert_eq!(rsip_field(&m, Field::ToTag), Ok(None));
    assert_eq!(rsip_field(&m, Field::CSeq), Ok(Some("2 INVITE".to_string())));
}
