//! Notification bodies for phones that do not understand park-info
//! (docs/park-info.md §10–§12): a BroadWorks-style call park body and an
//! RFC 4235 dialog-info document for a BLF key.
//!
//! Same inputs as [`super::park::write_park_info`]: the extension, the
//! retrieve feature code and the calls to list (parked calls oldest first,
//! then at most one call that just left). Every writer appends to `out` and
//! allocates nothing else.
//!
//! Text from SIP headers (URIs, display names) is escaped for XML, control
//! characters become spaces, and bytes that are not UTF-8 become U+FFFD, so
//! that every document is well-formed UTF-8 whatever a peer sent.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use serde::Deserialize;

use super::park::{CallView, Extension, LeaveReason, Party, write_park_info, write_token};

/// Which document a NOTIFY carries; configured per tenant and per
/// User-Agent pattern (`notify = ["park-info", "dialog-info"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum BodyKind {
    /// sipark's own `application/park-info+xml` (docs/park-info.md §4).
    ParkInfo,
    /// BroadWorks-style `application/x-broadworks-callpark-info+xml`.
    BroadWorks,
    /// RFC 4235 `application/dialog-info+xml`, for a BLF key.
    DialogInfo,
}

impl BodyKind {
    /// Every kind, in the order the configuration documents them.
    pub const ALL: [BodyKind; 3] = [BodyKind::ParkInfo, BodyKind::BroadWorks, BodyKind::DialogInfo];

    /// The `Content-Type` of the NOTIFY.
    pub fn content_type(self) -> &'static str {
        match self {
            BodyKind::ParkInfo => "application/park-info+xml",
            BodyKind::BroadWorks => "application/x-broadworks-callpark-info+xml",
            BodyKind::DialogInfo => "application/dialog-info+xml",
        }
    }

    /// The `Event` header of the NOTIFY.
    ///
    /// BroadWorks carries its call park body in the NOTIFYs of the shared
    /// call appearance package `call-info`; there is no separate event
    /// package for it (docs/park-info.md §11.1).
    pub fn event(self) -> &'static str {
        match self {
            BodyKind::ParkInfo => "park-info",
            BodyKind::BroadWorks => "call-info",
            BodyKind::DialogInfo => "dialog",
        }
    }

    /// The name used in the tenants file.
    pub fn name(self) -> &'static str {
        match self {
            BodyKind::ParkInfo => "park-info",
            BodyKind::BroadWorks => "broadworks",
            BodyKind::DialogInfo => "dialog-info",
        }
    }

    /// Writes this kind's document for `ext`.
    pub fn write<'a>(
        self,
        out: &mut Vec<u8>,
        ext: &Extension,
        retrieve_fac: &str,
        calls: impl Iterator<Item = CallView<'a>>,
    ) {
        match self {
            BodyKind::ParkInfo => write_park_info(out, ext, retrieve_fac, calls),
            BodyKind::BroadWorks => write_broadworks_callpark(out, ext, retrieve_fac, calls),
            BodyKind::DialogInfo => write_dialog_info(out, ext, retrieve_fac, calls),
        }
    }
}

impl fmt::Display for BodyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A body kind name that is not one of [`BodyKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBodyKind(pub String);

impl fmt::Display for UnknownBodyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The name came from a config file: show at most 64 characters of it.
        let shown: String = self.0.chars().take(64).collect();
        write!(f, "unknown notify body {shown:?} (expected \"park-info\", \"broadworks\" or \"dialog-info\")")
    }
}

impl std::error::Error for UnknownBodyKind {}

impl FromStr for BodyKind {
    type Err = UnknownBodyKind;

    /// Accepts the tenants-file names, in any ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BodyKind::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(s)).ok_or_else(|| UnknownBodyKind(s.into()))
    }
}

impl TryFrom<String> for BodyKind {
    type Error = UnknownBodyKind;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Appends `text` escaped for XML ([`xml_escape`]), with every byte
/// sequence that is not UTF-8, and the non-characters U+FFFE and U+FFFF
/// that XML forbids, replaced by U+FFFD: the result is always well-formed
/// UTF-8 attribute or element text, whatever bytes a peer sent.
pub fn xml_text(out: &mut Vec<u8>, text: &[u8]) {
    for chunk in text.utf8_chunks() {
        let mut valid = chunk.valid();
        while let Some(i) = valid.find(['\u{FFFE}', '\u{FFFF}']) {
            xml_escape(out, &valid.as_bytes()[..i]);
            out.extend_from_slice("\u{FFFD}".as_bytes());
            valid = &valid[i + '\u{FFFE}'.len_utf8()..];
        }
        xml_escape(out, valid.as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'` for an XML attribute, and replaces
/// control characters with spaces. Runs of plain bytes are copied whole.
fn xml_escape(out: &mut Vec<u8>, mut text: &[u8]) {
    while let Some(i) = text.iter().position(|&b| matches!(b, b'&' | b'<' | b'>' | b'"' | b'\'') || b < 0x20) {
        out.extend_from_slice(&text[..i]);
        match text[i] {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&apos;"),
            _ => out.push(b' '),
        }
        text = &text[i + 1..];
    }
    out.extend_from_slice(text);
}

/// Appends `sip:<fac><ext>@<domain>;call=<token>`, escaped for XML.
fn write_retrieve_uri(out: &mut Vec<u8>, ext: &Extension, retrieve_fac: &str, id: u64) {
    out.extend_from_slice(b"sip:");
    xml_text(out, retrieve_fac.as_bytes());
    xml_text(out, ext.ext.as_bytes());
    out.push(b'@');
    xml_text(out, ext.tenant.as_bytes());
    out.extend_from_slice(b";call=");
    write_token(out, id);
}

/// Appends `<element display="..">uri</element>` (an RFC 4235 `nameaddr`,
/// also the BroadWorks `identity`), indented by `indent` spaces.
fn write_nameaddr(out: &mut Vec<u8>, indent: usize, element: &str, who: Party<'_>) {
    out.extend(std::iter::repeat_n(b' ', indent));
    out.push(b'<');
    out.extend_from_slice(element.as_bytes());
    if let Some(d) = who.display {
        out.extend_from_slice(b" display=\"");
        xml_text(out, d);
        out.push(b'"');
    }
    out.push(b'>');
    xml_text(out, who.uri);
    out.extend_from_slice(b"</");
    out.extend_from_slice(element.as_bytes());
    out.extend_from_slice(b">\n");
}

/// Writes the BroadWorks-style call park document for `ext`.
///
/// BroadWorks parks one call per user, so the document names at most one:
/// the oldest call still parked (the one that dialling the retrieve code
/// followed by the extension picks up, docs/park-info.md §6.3). With
/// nothing parked, `callpark` is empty. A call that just left is not
/// listed; the document simply no longer names it. `retrieve_fac` is not
/// used: a BroadWorks phone dials its own configured retrieve code.
pub fn write_broadworks_callpark<'a>(
    out: &mut Vec<u8>,
    _ext: &Extension,
    _retrieve_fac: &str,
    mut calls: impl Iterator<Item = CallView<'a>>,
) {
    out.extend_from_slice(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
          <x-broadworks-callpark-info xmlns=\"http://schema.broadsoft.com/callpark\">\n",
    );
    match calls.find(|v| v.left.is_none()) {
        Some(view) => {
            out.extend_from_slice(b"  <callpark>\n    <parked>\n");
            write_nameaddr(out, 6, "identity", view.call.parked());
            out.extend_from_slice(b"    </parked>\n  </callpark>\n");
        }
        None => out.extend_from_slice(b"  <callpark/>\n"),
    }
    out.extend_from_slice(b"</x-broadworks-callpark-info>\n");
}

/// The RFC 4235 `event` attribute of a departed call's `terminated` state.
fn dialog_event(reason: LeaveReason) -> &'static str {
    match reason {
        // The parked dialog continues as another party's call.
        LeaveReason::Retrieved | LeaveReason::Recalled => "replaced",
        LeaveReason::Hangup => "remote-bye",
        // sipark sent the BYE.
        LeaveReason::Timeout | LeaveReason::Shutdown => "local-bye",
    }
}

/// Writes the RFC 4235 dialog-info document for `ext`, full state, with
/// `entity="sip:<ext>@<domain>"` and `version` the extension's park-info
/// version.
///
/// Each parked call is one `dialog` (id: the call's retrieve token,
/// `direction="recipient"`) in state `confirmed`, so a BLF key watching the
/// extension is lit while anything is parked on it and dark when the
/// document has no confirmed dialog. The parked party is the remote
/// identity, the parker the `referred-by`, and the one-touch retrieve URI
/// is both the local and the remote target (docs/park-info.md §12.2). The
/// call that just left is listed as `terminated`, without targets.
pub fn write_dialog_info<'a>(
    out: &mut Vec<u8>,
    ext: &Extension,
    retrieve_fac: &str,
    calls: impl Iterator<Item = CallView<'a>>,
) {
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{}\" state=\"full\" entity=\"sip:",
        ext.version
    );
    xml_text(out, ext.ext.as_bytes());
    out.push(b'@');
    xml_text(out, ext.tenant.as_bytes());
    out.extend_from_slice(b"\">\n");
    for view in calls {
        let c = view.call;
        out.extend_from_slice(b"  <dialog id=\"");
        write_token(out, c.id);
        // The parked leg's dialog as sipark holds it, so that a BLF
        // pickup can name it in `Replaces` (to-tag = local-tag).
        out.extend_from_slice(b"\" call-id=\"");
        xml_text(out, &c.a.call_id);
        out.extend_from_slice(b"\" local-tag=\"");
        xml_text(out, &c.a.local_tag);
        if let Some(tag) = super::sip::parse::NameAddr::parse(&c.a.remote).ok().and_then(|n| n.tag()) {
            out.extend_from_slice(b"\" remote-tag=\"");
            xml_text(out, tag);
        }
        out.extend_from_slice(b"\" direction=\"recipient\">\n");
        match view.left {
            None => out.extend_from_slice(b"    <state>confirmed</state>\n"),
            Some(r) => {
                let _ = writeln!(out, "    <state event=\"{}\">terminated</state>", dialog_event(r));
            }
        }
        if let Some(p) = &c.parker {
            write_nameaddr(out, 4, "referred-by", p.as_party());
        }
        out.extend_from_slice(b"    <local>\n      <identity>sip:");
        xml_text(out, ext.ext.as_bytes());
        out.push(b'@');
        xml_text(out, ext.tenant.as_bytes());
        out.extend_from_slice(b"</identity>\n");
        if view.left.is_none() {
            out.extend_from_slice(b"      <target uri=\"");
            write_retrieve_uri(out, ext, retrieve_fac, c.id);
            out.extend_from_slice(b"\"/>\n");
        }
        out.extend_from_slice(b"    </local>\n    <remote>\n");
        write_nameaddr(out, 6, "identity", c.parked());
        if view.left.is_none() {
            out.extend_from_slice(b"      <target uri=\"");
            write_retrieve_uri(out, ext, retrieve_fac, c.id);
            out.extend_from_slice(b"\"/>\n");
        }
        out.extend_from_slice(b"    </remote>\n  </dialog>\n");
    }
    out.extend_from_slice(b"</dialog-info>\n");
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn xml_text_escapes_specials_and_controls_only() {
        let mut out = Vec::new();
        xml_text(&mut out, b"Al & \"Bo\" <x> 'y'\x01\tz");
        assert_eq!(out, b"Al &amp; &quot;Bo&quot; &lt;x&gt; &apos;y&apos;  z".to_vec());
        out.clear();
        xml_text(&mut out, b"sip:*88103@acme.example");
        assert_eq!(out, b"sip:*88103@acme.example".to_vec());
    }
    use crate::proto::park::{Call, CallState, Identity, Leg};
    use crate::proto::sip::Peer;
    use crate::proto::sip::sdp::Origin;

    fn ext(version: u64) -> Extension {
        Extension {
            tenant: "acme.example".into(),
            ext: "103".into(),
            bindings: Vec::new(),
            calls: Vec::new(),
            version,
            timer_at: None,
        }
    }

    /// A parked call whose park INVITE's From was `from`.
    fn call(id: u64, from: &[u8], parker: Option<(&[u8], Option<&[u8]>)>) -> Call {
        let peer: SocketAddr = "127.0.0.1:5062".parse().expect("addr");
        Call {
            id,
            ext: 1,
            parker: parker.map(|(uri, display)| Identity { uri: uri.into(), display: display.map(Into::into) }),
            parked_at: 1_795_546_681,
            timeout_secs: 300,
            a: Leg {
                call_id: b"c1@192.0.2.10".as_slice().into(),
                local_tag: b"lt".as_slice().into(),
                local: b"<sip:*68103@acme.example>".as_slice().into(),
                remote: from.into(),
                remote_target: b"sip:101@192.0.2.10".as_slice().into(),
                route_set: Box::new([]),
                local_cseq: 1,
                remote_cseq: 1,
                peer: Peer::udp(peer),
                origin: Origin::new(7),
                last_sdp: Box::new([]),
                remote_sdp: Box::new([]),
                pending_ack: None,
            },
            state: CallState::Parked,
            deadline: None,
        }
    }

    fn alice() -> Call {
        call(
            0x1b_2d_8a_0c_5f,
            b"\"Alice\" <sip:101@acme.example>;tag=a1",
            Some((b"sip:102@acme.example", Some(b"Bob"))),
        )
    }

    fn render(kind: BodyKind, e: &Extension, views: Vec<CallView<'_>>) -> String {
        let mut out = Vec::new();
        kind.write(&mut out, e, "*88", views.into_iter());
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(err) => panic!("{kind} body is not UTF-8: {err}"),
        }
    }

    fn token(id: u64) -> String {
        let mut t = Vec::new();
        write_token(&mut t, id);
        String::from_utf8(t).expect("ascii token")
    }

    #[test]
    fn dialog_info_one_parked_call_exact_bytes() {
        let a = alice();
        let t = token(a.id);
        let got = render(BodyKind::DialogInfo, &ext(59_857_077), vec![CallView { call: &a, left: None }]);
        let want = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"59857077\" state=\"full\" entity=\"sip:103@acme.example\">\n\
             \x20 <dialog id=\"{t}\" call-id=\"c1@192.0.2.10\" local-tag=\"lt\" remote-tag=\"a1\" direction=\"recipient\">\n\
             \x20   <state>confirmed</state>\n\
             \x20   <referred-by display=\"Bob\">sip:102@acme.example</referred-by>\n\
             \x20   <local>\n\
             \x20     <identity>sip:103@acme.example</identity>\n\
             \x20     <target uri=\"sip:*88103@acme.example;call={t}\"/>\n\
             \x20   </local>\n\
             \x20   <remote>\n\
             \x20     <identity display=\"Alice\">sip:101@acme.example</identity>\n\
             \x20     <target uri=\"sip:*88103@acme.example;call={t}\"/>\n\
             \x20   </remote>\n\
             \x20 </dialog>\n\
             </dialog-info>\n"
        );
        assert_eq!(got, want, "dialog-info for one parked call");
    }

    #[test]
    fn dialog_info_empty_is_full_state_without_dialogs() {
        let got = render(BodyKind::DialogInfo, &ext(7), Vec::new());
        assert_eq!(
            got,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"7\" state=\"full\" entity=\"sip:103@acme.example\">\n\
             </dialog-info>\n",
            "nothing parked: BLF idle"
        );
    }

    #[test]
    fn dialog_info_terminated_call_has_event_and_no_targets() {
        let a = alice();
        let b = call(5, b"<sip:+15551230000@acme.example>;tag=b", None);
        let got = render(
            BodyKind::DialogInfo,
            &ext(8),
            vec![CallView { call: &b, left: None }, CallView { call: &a, left: Some(LeaveReason::Retrieved) }],
        );
        let t = token(a.id);
        let departed = format!(
            "  <dialog id=\"{t}\" call-id=\"c1@192.0.2.10\" local-tag=\"lt\" remote-tag=\"a1\" direction=\"recipient\">\n\
             \x20   <state event=\"replaced\">terminated</state>\n\
             \x20   <referred-by display=\"Bob\">sip:102@acme.example</referred-by>\n\
             \x20   <local>\n\
             \x20     <identity>sip:103@acme.example</identity>\n\
             \x20   </local>\n\
             \x20   <remote>\n\
             \x20     <identity display=\"Alice\">sip:101@acme.example</identity>\n\
             \x20   </remote>\n\
             \x20 </dialog>\n\
             </dialog-info>\n"
        );
        assert!(got.ends_with(&departed), "terminated dialog last, without targets:\n{got}");
        let still = "  <dialog id=\"5\" call-id=\"c1@192.0.2.10\" local-tag=\"lt\" remote-tag=\"b\" direction=\"recipient\">\n    <state>confirmed</state>\n    <local>\n      \
                     <identity>sip:103@acme.example</identity>\n      \
                     <target uri=\"sip:*88103@acme.example;call=5\"/>\n    </local>\n    <remote>\n      \
                     <identity>sip:+15551230000@acme.example</identity>\n      \
                     <target uri=\"sip:*88103@acme.example;call=5\"/>\n    </remote>\n  </dialog>\n";
        assert!(got.contains(still), "still-parked call first, no referred-by, no display:\n{got}");
        assert_eq!(got.matches("<dialog ").count(), 2, "{got}");
    }

    #[test]
    fn dialog_events_per_reason() {
        let cases = [
            (LeaveReason::Retrieved, "replaced"),
            (LeaveReason::Recalled, "replaced"),
            (LeaveReason::Hangup, "remote-bye"),
            (LeaveReason::Timeout, "local-bye"),
            (LeaveReason::Shutdown, "local-bye"),
        ];
        let a = alice();
        for (reason, event) in cases {
            let got = render(BodyKind::DialogInfo, &ext(1), vec![CallView { call: &a, left: Some(reason) }]);
            let want = format!("<state event=\"{event}\">terminated</state>");
            assert!(got.contains(&want), "{reason:?}: want {want} in\n{got}");
        }
    }

    #[test]
    fn display_names_and_uris_are_escaped() {
        let c = call(
            1,
            b"\"A<b>&\\\"c\\\"\" <sip:101@acme.example;x=a&b>;tag=z",
            Some((b"sip:1&2@acme.example", Some(b"P<&>\"'"))),
        );
        let views = || vec![CallView { call: &c, left: None }];
        let di = render(BodyKind::DialogInfo, &ext(1), views());
        assert!(
            di.contains(
                "<identity display=\"A&lt;b&gt;&amp;\\&quot;c\\&quot;\">sip:101@acme.example;x=a&amp;b</identity>"
            ),
            "parked party escaped in dialog-info:\n{di}"
        );
        assert!(
            di.contains("<referred-by display=\"P&lt;&amp;&gt;&quot;&apos;\">sip:1&amp;2@acme.example</referred-by>"),
            "parker escaped in dialog-info:\n{di}"
        );
        let bw = render(BodyKind::BroadWorks, &ext(1), views());
        assert!(
            bw.contains(
                "<identity display=\"A&lt;b&gt;&amp;\\&quot;c\\&quot;\">sip:101@acme.example;x=a&amp;b</identity>"
            ),
            "parked party escaped in BroadWorks body:\n{bw}"
        );
    }

    #[test]
    fn non_utf8_and_controls_become_well_formed_text() {
        let c = call(2, b"\"Jos\xe9\x01\xef\xbf\xbf\" <sip:101@acme.example>;tag=q", None);
        let got = render(BodyKind::DialogInfo, &ext(1), vec![CallView { call: &c, left: None }]);
        assert!(
            got.contains("<identity display=\"Jos\u{FFFD} \u{FFFD}\">sip:101@acme.example</identity>"),
            "latin-1 byte, control and U+FFFF replaced:\n{got}"
        );
        let mut out = Vec::new();
        xml_text(&mut out, b"a\xff\xfeb\xef\xbf\xbe<");
        assert_eq!(String::from_utf8(out).expect("utf-8"), "a\u{FFFD}\u{FFFD}b\u{FFFD}&lt;");
    }

    #[test]
    fn broadworks_one_call_exact_bytes() {
        let a = alice();
        let b = call(9, b"<sip:+15551230000@acme.example>;tag=b", None);
        let got = render(
            BodyKind::BroadWorks,
            &ext(3),
            vec![CallView { call: &a, left: None }, CallView { call: &b, left: None }],
        );
        assert_eq!(
            got,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <x-broadworks-callpark-info xmlns=\"http://schema.broadsoft.com/callpark\">\n\
             \x20 <callpark>\n\
             \x20   <parked>\n\
             \x20     <identity display=\"Alice\">sip:101@acme.example</identity>\n\
             \x20   </parked>\n\
             \x20 </callpark>\n\
             </x-broadworks-callpark-info>\n",
            "only the oldest parked call"
        );
    }

    #[test]
    fn broadworks_empty_and_departures() {
        let empty = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                     <x-broadworks-callpark-info xmlns=\"http://schema.broadsoft.com/callpark\">\n\
                     \x20 <callpark/>\n\
                     </x-broadworks-callpark-info>\n";
        assert_eq!(render(BodyKind::BroadWorks, &ext(1), Vec::new()), empty, "nothing parked");
        let a = alice();
        let got = render(BodyKind::BroadWorks, &ext(2), vec![CallView { call: &a, left: Some(LeaveReason::Hangup) }]);
        assert_eq!(got, empty, "the last call left: nothing parked");
        let b = call(9, b"<sip:+15551230000@acme.example>;tag=b", None);
        let got = render(
            BodyKind::BroadWorks,
            &ext(2),
            vec![CallView { call: &b, left: None }, CallView { call: &a, left: Some(LeaveReason::Retrieved) }],
        );
        assert!(
            got.contains("<identity>sip:+15551230000@acme.example</identity>") && !got.contains("Alice"),
            "the remaining call, not the departed one:\n{got}"
        );
    }

    #[test]
    fn park_info_kind_is_write_park_info() {
        let a = alice();
        let mut direct = Vec::new();
        write_park_info(&mut direct, &ext(4), "*88", [CallView { call: &a, left: None }].into_iter());
        let via = render(BodyKind::ParkInfo, &ext(4), vec![CallView { call: &a, left: None }]);
        assert_eq!(via.as_bytes(), direct.as_slice());
    }

    #[test]
    fn kinds_names_headers_and_parsing() {
        let table = [
            (BodyKind::ParkInfo, "park-info", "application/park-info+xml", "park-info"),
            (BodyKind::BroadWorks, "broadworks", "application/x-broadworks-callpark-info+xml", "call-info"),
            (BodyKind::DialogInfo, "dialog-info", "application/dialog-info+xml", "dialog"),
        ];
        for (kind, name, ctype, event) in table {
            assert_eq!(kind.name(), name);
            assert_eq!(kind.to_string(), name);
            assert_eq!(kind.content_type(), ctype);
            assert_eq!(kind.event(), event);
            assert_eq!(name.parse::<BodyKind>(), Ok(kind));
            assert_eq!(name.to_ascii_uppercase().parse::<BodyKind>(), Ok(kind));
        }
        for bad in ["", "parkinfo", "dialog", "broadworks ", "x-broadworks-callpark"] {
            match bad.parse::<BodyKind>() {
                Ok(k) => panic!("{bad:?} parsed as {k:?}"),
                Err(e) => assert!(e.to_string().contains("expected \"park-info\""), "{e}"),
            }
        }
        let long = "x".repeat(10_000);
        let msg = long.parse::<BodyKind>().expect_err("unknown").to_string();
        assert!(msg.len() < 200, "error message is bounded: {} bytes", msg.len());
    }

    #[test]
    fn kinds_deserialize_from_toml() {
        #[derive(Deserialize)]
        struct T {
            notify: Vec<BodyKind>,
        }
        let t: T = toml::from_str("notify = [\"park-info\", \"dialog-info\", \"broadworks\"]").expect("parses");
        assert_eq!(t.notify, vec![BodyKind::ParkInfo, BodyKind::DialogInfo, BodyKind::BroadWorks]);
        let err = toml::from_str::<T>("notify = [\"blf\"]").err().expect("unknown kind refused");
        assert!(err.to_string().contains("unknown notify body \"blf\""), "{err}");
    }
}
