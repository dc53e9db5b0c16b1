//! The corpus and what every file in it must parse to.
//!
//! The expected values below are written by hand from the `.sip` files; the
//! differential test checks them against `rsip` as well, where rsip can read
//! the file (see [`Rsip`]).

use std::path::{Path, PathBuf};

/// A field the differential test can compare with rsip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Method,
    RequestUri,
    Status,
    CallId,
    CSeq,
    FromTag,
    ToTag,
    TopBranch,
}

impl Field {
    pub const ALL: [Field; 8] = [
        Field::Method,
        Field::RequestUri,
        Field::Status,
        Field::CallId,
        Field::CSeq,
        Field::FromTag,
        Field::ToTag,
        Field::TopBranch,
    ];
}

/// How far rsip 0.4 is trusted on a file.
#[derive(Debug, Clone, Copy)]
pub enum Rsip {
    /// rsip parses the file and must agree on every [`Field`].
    All,
    /// rsip parses the file but only `fields` are compared; every other field
    /// must *disagree* (or fail in rsip), so that the list cannot go stale.
    Only { fields: &'static [Field], why: &'static str },
    /// rsip rejects the whole message (it must keep rejecting it); sipark is
    /// checked against the hand-written values only.
    Unparseable { why: &'static str },
}

#[derive(Debug, Clone, Copy)]
pub enum Start {
    Req { method: &'static str, uri: &'static str },
    Resp(u16),
}

/// Hand-written expectations for one corpus file.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub file: &'static str,
    pub start: Start,
    pub call_id: &'static str,
    pub cseq: (u32, &'static str),
    pub from_tag: Option<&'static str>,
    pub to_tag: Option<&'static str>,
    pub branch: &'static str,
    /// Via values over all Via header lines.
    pub vias: usize,
    /// Contact values over all Contact header lines (`*` counts as one).
    pub contacts: usize,
    pub rsip: Rsip,
}

const fn req(method: &'static str, uri: &'static str) -> Start {
    Start::Req { method, uri }
}

/// Fields that survive compact header names in rsip: it does not know `v`,
/// `f`, `t`, `i` and files them as unknown headers.
const COMPACT_FIELDS: &[Field] = &[Field::Method, Field::RequestUri, Field::Status, Field::CSeq];

#[rustfmt::skip]
pub const EXPECT: &[Expect] = &[
    Expect { file: "01_invite_polycom.sip", start: req("INVITE", "sip:2001@acme.example;user=phone"),
        call_id: "8c7e1f2a-4b3d5e6f-a1b2c3d4@192.0.2.21", cseq: (1, "INVITE"),
        from_tag: Some("6A3F2C1D-8B4E7A90"), to_tag: None, branch: "z9hG4bK5d1c6b2a8E9F0A1B",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "02_invite_yealink.sip", start: req("INVITE", "sip:104@acme.example:5060"),
        call_id: "0_3829407718@192.0.2.34", cseq: (1, "INVITE"),
        from_tag: Some("2467823105"), to_tag: None, branch: "z9hG4bK1835425912",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "03_invite_cisco.sip", start: req("INVITE", "sip:+15555550142@acme.example:5060;transport=udp"),
        call_id: "7C4B2E10-C88A11F0-8001F3D2-5A0B7E21@198.51.100.7", cseq: (101, "INVITE"),
        from_tag: Some("5F2A8C-1E43"), to_tag: None, branch: "z9hG4bK3A1F22B4",
        vias: 1, contacts: 1,
        rsip: Rsip::Only {
            fields: &[Field::Method, Field::Status, Field::CallId, Field::CSeq, Field::FromTag, Field::ToTag, Field::TopBranch],
            why: "rsip re-renders the Request-URI with `transport=UDP` upper-cased; sipark keeps the raw bytes",
        } },
    Expect { file: "04_invite_asterisk.sip", start: req("INVITE", "sip:105@192.0.2.50:5060"),
        call_id: "3f1a9b2c-6d4e-4a8b-b1c2-9e8d7f6a5b4c", cseq: (18021, "INVITE"),
        from_tag: Some("0b7e5c9d-2a41-4f3e-9c8d-7e6f5a4b3c2d"), to_tag: None,
        branch: "z9hG4bKPj9f2c1e7a-3b4d-4c5e-8f60-1a2b3c4d5e6f",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "05_invite_freeswitch.sip", start: req("INVITE", "sip:107@acme.example"),
        call_id: "6b0e1d52-7f3a-123e-4c5d-0242ac110002", cseq: (104535512, "INVITE"),
        from_tag: Some("8r1QyB5cF6gUm"), to_tag: None, branch: "z9hG4bKSg3Kp8r6F2mvN",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "06_invite_kamailio_proxied.sip", start: req("INVITE", "sip:108@192.0.2.60:5062;ob"),
        call_id: "kX3bH9mQ2rT7vW1yZ5aC8eF0gJ4nP6sU", cseq: (30562, "INVITE"),
        from_tag: Some("Ds8Lm2Qp"), to_tag: None,
        branch: "z9hG4bK6f3e.8a1c4b2d0e9f7a6b5c4d3e2f1a0b9c8d.0",
        vias: 3, contacts: 1, rsip: Rsip::All },
    Expect { file: "07_invite_park.sip", start: req("INVITE", "sip:*68103@acme.example"),
        call_id: "park-0001-7f3a9c@192.0.2.21", cseq: (2, "INVITE"),
        from_tag: Some("pk7f3a"), to_tag: None, branch: "z9hG4bKpark0a1b2c3d",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "08_invite_retrieve.sip", start: req("INVITE", "sip:*88103@acme.example;call=k3x9f2"),
        call_id: "1_2890171444@192.0.2.34", cseq: (1, "INVITE"),
        from_tag: Some("rt55aa01"), to_tag: None, branch: "z9hG4bKret9e8d7c",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "09_register_basic.sip", start: req("REGISTER", "sip:acme.example"),
        call_id: "reg-102-5e6f7a@192.0.2.22", cseq: (1, "REGISTER"),
        from_tag: Some("rg01b2"), to_tag: None, branch: "z9hG4bKreg1a2b3c",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "10_register_contact_params.sip", start: req("REGISTER", "sip:acme.example:5060"),
        call_id: "0_2361284932@192.0.2.34", cseq: (2, "REGISTER"),
        from_tag: Some("1729433016"), to_tag: None, branch: "z9hG4bK2091830485",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "11_register_multi_contact.sip", start: req("REGISTER", "sip:acme.example"),
        call_id: "multi-contact-104@192.0.2.41", cseq: (7, "REGISTER"),
        from_tag: Some("mc104a"), to_tag: None, branch: "z9hG4bKmc41a9",
        vias: 1, contacts: 3, rsip: Rsip::All },
    Expect { file: "12_register_star.sip", start: req("REGISTER", "sip:acme.example"),
        call_id: "reg-102-5e6f7a@192.0.2.22", cseq: (9, "REGISTER"),
        from_tag: Some("rg01b2"), to_tag: None, branch: "z9hG4bKstar77",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "13_register_auth.sip", start: req("REGISTER", "sip:acme.example"),
        call_id: "2f9a8c7e-13b4d5e6@192.0.2.21", cseq: (2, "REGISTER"),
        from_tag: Some("A7C1E0F2-4B3D"), to_tag: None, branch: "z9hG4bK7e0c3a9b1d2f",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "14_notify_park_info.sip", start: req("NOTIFY", "sip:103@192.0.2.34:5062"),
        call_id: "sp2.9b7e31c05d2a4f88@192.0.2.5", cseq: (1, "NOTIFY"),
        from_tag: Some("sp2t9c41"), to_tag: None, branch: "z9hG4bKsp2.4f1a9c0e77d3b210",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "15_subscribe.sip", start: req("SUBSCRIBE", "sip:103@acme.example"),
        call_id: "0_1840294511@192.0.2.34", cseq: (1, "SUBSCRIBE"),
        from_tag: Some("3958234672"), to_tag: None, branch: "z9hG4bK3318765011",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "16_options_keepalive.sip", start: req("OPTIONS", "sip:acme.example"),
        call_id: "7a1c5e8a4b3f2d10-3184@198.51.100.2", cseq: (10, "OPTIONS"),
        from_tag: Some("8b6e3a8f7d5c1e22-1c1f"), to_tag: None,
        branch: "z9hG4bK0b2f.98e4ad05000000000000000000000000.0",
        vias: 1, contacts: 0, rsip: Rsip::All },
    Expect { file: "17_bye_to_sipark.sip", start: req("BYE", "sip:sp2.sipark@192.0.2.5:5060"),
        call_id: "park-0001-7f3a9c@192.0.2.21", cseq: (3, "BYE"),
        from_tag: Some("pk7f3a"), to_tag: Some("sp2d7e10a"), branch: "z9hG4bKbye19a2c",
        vias: 1, contacts: 0, rsip: Rsip::All },
    Expect { file: "18_cancel.sip", start: req("CANCEL", "sip:2001@acme.example;user=phone"),
        call_id: "8c7e1f2a-4b3d5e6f-a1b2c3d4@192.0.2.21", cseq: (1, "CANCEL"),
        from_tag: Some("6A3F2C1D-8B4E7A90"), to_tag: None, branch: "z9hG4bK5d1c6b2a8E9F0A1B",
        vias: 1, contacts: 0, rsip: Rsip::All },
    Expect { file: "19_ack_in_dialog.sip", start: req("ACK", "sip:sp1.sipark@192.0.2.5:5060"),
        call_id: "kX3bH9mQ2rT7vW1yZ5aC8eF0gJ4nP6sZ", cseq: (30562, "ACK"),
        from_tag: Some("Ds8Lm2Qp"), to_tag: Some("sp1a0b1c2"), branch: "z9hG4bKPjack90f1e2",
        vias: 1, contacts: 0, rsip: Rsip::All },
    Expect { file: "20_info_dtmf.sip", start: req("INFO", "sip:105@192.0.2.50:5060"),
        call_id: "3f1a9b2c-6d4e-4a8b-b1c2-9e8d7f6a5b4c", cseq: (18022, "INFO"),
        from_tag: Some("0b7e5c9d-2a41-4f3e-9c8d-7e6f5a4b3c2d"), to_tag: Some("as6c1d2e3f"),
        branch: "z9hG4bKPj1c2d3e4f-info", vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "21_update_sdp.sip", start: req("UPDATE", "sip:109@192.0.2.77:5060;ob"),
        call_id: "kX3bH9mQ2rT7vW1yZ5aC8eF0gJ4nP6sU", cseq: (1, "UPDATE"),
        from_tag: Some("up108x"), to_tag: Some("Ds8Lm2Qp"), branch: "z9hG4bKPjupd4455",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "22_refer_park.sip", start: req("REFER", "sip:101@192.0.2.21:5060"),
        call_id: "bob-alice-call-3a4b@192.0.2.22", cseq: (5, "REFER"),
        from_tag: Some("b0bcall1"), to_tag: Some("a11ce01"), branch: "z9hG4bKrefer5e6f",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "23_refer_replaces.sip", start: req("REFER", "sip:105@192.0.2.50:5060"),
        call_id: "0_1029384756@192.0.2.34", cseq: (3, "REFER"),
        from_tag: Some("1938475621"), to_tag: Some("as0f9e8d7c"), branch: "z9hG4bK4401928374",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "24_resp_100_trying.sip", start: Start::Resp(100),
        call_id: "kX3bH9mQ2rT7vW1yZ5aC8eF0gJ4nP6sU", cseq: (30562, "INVITE"),
        from_tag: Some("Ds8Lm2Qp"), to_tag: None,
        branch: "z9hG4bK6f3e.8a1c4b2d0e9f7a6b5c4d3e2f1a0b9c8d.0",
        vias: 3, contacts: 0, rsip: Rsip::All },
    Expect { file: "25_resp_180_ringing.sip", start: Start::Resp(180),
        call_id: "8c7e1f2a-4b3d5e6f-a1b2c3d4@192.0.2.21", cseq: (1, "INVITE"),
        from_tag: Some("6A3F2C1D-8B4E7A90"), to_tag: Some("3051798402"), branch: "z9hG4bK5d1c6b2a8E9F0A1B",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "26_resp_183_sdp.sip", start: Start::Resp(183),
        call_id: "7C4B2E10-C88A11F0-8001F3D2-5A0B7E21@198.51.100.7", cseq: (101, "INVITE"),
        from_tag: Some("5F2A8C-1E43"), to_tag: Some("9C3B5D-2A71"), branch: "z9hG4bK3A1F22B4",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "27_resp_200_invite_sdp.sip", start: Start::Resp(200),
        call_id: "8c7e1f2a-4b3d5e6f-a1b2c3d4@192.0.2.21", cseq: (1, "INVITE"),
        from_tag: Some("6A3F2C1D-8B4E7A90"), to_tag: Some("3051798402"), branch: "z9hG4bK5d1c6b2a8E9F0A1B",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "28_resp_401_challenge.sip", start: Start::Resp(401),
        call_id: "2f9a8c7e-13b4d5e6@192.0.2.21", cseq: (1, "REGISTER"),
        from_tag: Some("A7C1E0F2-4B3D"), to_tag: Some("8b3a9f0e1c2d"), branch: "z9hG4bK7e0c3a9b1d2e",
        vias: 1, contacts: 0, rsip: Rsip::All },
    Expect { file: "29_resp_404.sip", start: Start::Resp(404),
        call_id: "1_2890171999@192.0.2.34", cseq: (1, "INVITE"),
        from_tag: Some("rt55aa02"), to_tag: Some("sp0nf404"), branch: "z9hG4bKret0000aa",
        vias: 1, contacts: 0, rsip: Rsip::All },
    Expect { file: "30_resp_486_busy.sip", start: Start::Resp(486),
        call_id: "3f1a9b2c-6d4e-4a8b-b1c2-9e8d7f6a5b4c", cseq: (18021, "INVITE"),
        from_tag: Some("0b7e5c9d-2a41-4f3e-9c8d-7e6f5a4b3c2d"), to_tag: Some("1583002117"),
        branch: "z9hG4bKPj9f2c1e7a-3b4d-4c5e-8f60-1a2b3c4d5e6f", vias: 1, contacts: 0, rsip: Rsip::All },
    Expect { file: "31_resp_487_terminated.sip", start: Start::Resp(487),
        call_id: "8c7e1f2a-4b3d5e6f-a1b2c3d4@192.0.2.21", cseq: (1, "INVITE"),
        from_tag: Some("6A3F2C1D-8B4E7A90"), to_tag: Some("3051798402"), branch: "z9hG4bK5d1c6b2a8E9F0A1B",
        vias: 1, contacts: 0, rsip: Rsip::All },
    Expect { file: "32_resp_503_retry.sip", start: Start::Resp(503),
        call_id: "sp3.5d2e8f10aa44@192.0.2.5", cseq: (1, "INVITE"),
        from_tag: Some("sp3r0c4ll"), to_tag: Some("gw503x"), branch: "z9hG4bKsp3.77ab01cd",
        vias: 1, contacts: 0, rsip: Rsip::All },
    Expect { file: "33_resp_200_register.sip", start: Start::Resp(200),
        call_id: "multi-contact-104@192.0.2.41", cseq: (7, "REGISTER"),
        from_tag: Some("mc104a"), to_tag: Some("sp1reg9f"), branch: "z9hG4bKmc41a9",
        vias: 1, contacts: 3, rsip: Rsip::All },
    Expect { file: "34_resp_200_notify.sip", start: Start::Resp(200),
        call_id: "sp1.77e0a1c2b3d4@192.0.2.5", cseq: (1, "NOTIFY"),
        from_tag: Some("sp1t00aa"), to_tag: Some("4011956321"), branch: "z9hG4bKsp1.0f3e2d1c",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "35_compact_invite.sip", start: req("INVITE", "sip:110@acme.example"),
        call_id: "compact-5f4e3d2c@192.0.2.88", cseq: (7, "INVITE"),
        from_tag: Some("c0mp4ct"), to_tag: None, branch: "z9hG4bKcmp01x",
        vias: 1, contacts: 1,
        rsip: Rsip::Only { fields: COMPACT_FIELDS, why: "rsip does not know compact header names (v, f, t, i, m)" } },
    Expect { file: "36_compact_refer.sip", start: req("REFER", "sip:101@192.0.2.21:5060"),
        call_id: "compact-refer-0042@192.0.2.22", cseq: (8, "REFER"),
        from_tag: Some("cr102"), to_tag: Some("cr101"), branch: "z9hG4bKcref42",
        vias: 1, contacts: 1,
        rsip: Rsip::Only { fields: COMPACT_FIELDS, why: "rsip does not know compact header names (v, f, t, i, m, r, b, o)" } },
    Expect { file: "37_odd_spacing.sip", start: req("OPTIONS", "sip:acme.example"),
        call_id: "odd-spacing-1@192.0.2.99", cseq: (42, "OPTIONS"),
        from_tag: Some("sp4c3"), to_tag: None, branch: "z9hG4bKodd77",
        vias: 1, contacts: 0,
        rsip: Rsip::Unparseable { why: "rsip rejects whitespace before the header colon (`Via  :`), which RFC 3261 HCOLON allows" } },
    Expect { file: "38_lowercase_headers.sip", start: req("REGISTER", "sip:acme.example"),
        call_id: "lowercase-155@192.0.2.55", cseq: (3, "REGISTER"),
        from_tag: Some("lc155"), to_tag: None, branch: "z9hG4bKlc55",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "39_ipv6_invite.sip", start: req("INVITE", "sip:112@[2001:db8::50]:5060"),
        call_id: "ipv6-call-0001@2001:db8::10", cseq: (1, "INVITE"),
        from_tag: Some("v6judy"), to_tag: None, branch: "z9hG4bKv6a1b2",
        vias: 1, contacts: 1,
        rsip: Rsip::Unparseable { why: "rsip 0.4 cannot parse IPv6 references (`[2001:db8::50]:5060`) in the Request-URI" } },
    Expect { file: "40_display_quotes_commas.sip", start: req("INVITE", "sip:115@acme.example"),
        call_id: "quotes-commas-114@192.0.2.14", cseq: (1, "INVITE"),
        from_tag: Some("q1x"), to_tag: None, branch: "z9hG4bKq1q2q3",
        vias: 1, contacts: 1, rsip: Rsip::All },
    Expect { file: "41_multi_via_one_header.sip", start: Start::Resp(200),
        call_id: "multi-via-0001@192.0.2.77", cseq: (30563, "BYE"),
        from_tag: Some("Ds8Lm2Qp"), to_tag: Some("mv108"), branch: "z9hG4bKmv1.0",
        vias: 3, contacts: 0, rsip: Rsip::All },
    Expect { file: "42_folded_headers.sip", start: req("MESSAGE", "sip:117@acme.example"),
        call_id: "folded-117@192.0.2.17", cseq: (1, "MESSAGE"),
        from_tag: Some("fold118"), to_tag: None, branch: "z9hG4bKfold01",
        vias: 1, contacts: 0,
        rsip: Rsip::Unparseable { why: "rsip does not support header line folding (RFC 3261 7.3.1 LWS continuation lines)" } },
    Expect { file: "43_prack.sip", start: req("PRACK", "sip:+15555550142@198.51.100.9:5060"),
        call_id: "7C4B2E10-C88A11F0-8001F3D2-5A0B7E21@198.51.100.7", cseq: (102, "PRACK"),
        from_tag: Some("5F2A8C-1E43"), to_tag: Some("9C3B5D-2A71"), branch: "z9hG4bK3A1F2411",
        vias: 1, contacts: 0, rsip: Rsip::All },
    Expect { file: "44_notify_message_summary.sip", start: req("NOTIFY", "sip:101@192.0.2.21:5060"),
        call_id: "0c1d2e3f4a5b6c7d8e9f@192.0.2.21", cseq: (4802, "NOTIFY"),
        from_tag: Some("mwi7c0ffee"), to_tag: Some("4E5F6A7B-1C2D"), branch: "z9hG4bKPjmwi0c1d",
        vias: 1, contacts: 1, rsip: Rsip::All },
];

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/parser/corpus")
}

/// One corpus message, read from disk.
pub struct CorpusFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Every `.sip` file of the corpus, sorted by name.
pub fn load_corpus() -> Vec<CorpusFile> {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read corpus dir {}: {e}", dir.display()));
    let mut out: Vec<CorpusFile> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("corpus dir entry: {e}")).path())
        .filter(|p| p.extension().is_some_and(|x| x == "sip"))
        .map(|p| CorpusFile {
            name: p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            bytes: std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(out.len() >= 35, "corpus has only {} files", out.len());
    out
}

/// One corpus file by name.
pub fn corpus_file(name: &str) -> Vec<u8> {
    let p = corpus_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

pub fn expect_for(name: &str) -> &'static Expect {
    EXPECT
        .iter()
        .find(|e| e.file == name)
        .unwrap_or_else(|| panic!("corpus file {name} has no entry in expect::EXPECT"))
}
