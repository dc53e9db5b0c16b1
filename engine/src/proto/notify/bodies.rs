//! The documents a park-info NOTIFY carries (docs/park-info.md):
//! sipark's own park-info (§4), a BroadWorks-style call park body (§11)
//! and an RFC 4235 dialog-info document for a BLF key (§12).
//!
//! Every writer takes the same inputs: the extension ([`Spot`]), the
//! retrieve feature code and the calls to list ([`Shown`]: parked calls
//! oldest first, then at most one call that just left). Every writer
//! appends to `out` and allocates nothing else.
//!
//! Text from SIP headers (URIs, display names) goes through the one XML
//! escaper, [`xml_text`]: escaped for XML, control characters become
//! spaces, and bytes that are not UTF-8 become U+FFFD, so that every
//! document is well-formed UTF-8 whatever a peer sent.

use std::io::Write;

use crate::proto::config::BodyKind;
use crate::proto::env::Tag;
use crate::proto::ids::CallId;
use crate::proto::sip::find::all_in;

/// Why a call left the park, as written in `reason=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    Retrieved,
    Hangup,
    Recalled,
    Timeout,
    Shutdown,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Retrieved => "retrieved",
            LeaveReason::Hangup => "hangup",
            LeaveReason::Recalled => "recalled",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Shutdown => "shutdown",
        }
    }
}

/// A party as shown: URI and display name (without its quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Party<'a> {
    pub uri: &'a [u8],
    pub display: Option<&'a [u8]>,
}

/// The extension a document is about.
#[derive(Debug, Clone, Copy)]
pub struct Spot<'a> {
    pub ext: &'a [u8],
    /// Lowercase.
    pub tenant: &'a [u8],
    /// The park-info version of this document.
    pub version: u64,
}

/// What a document shows of one call.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a> {
    pub call: CallId,
    /// `Some` for the call that just left, shown once as terminated.
    pub left: Option<LeaveReason>,
    /// Unix seconds.
    pub parked_at: u64,
    pub timeout_secs: u64,
    pub parked: Party<'a>,
    pub parker: Option<Party<'a>>,
    /// The parked leg's dialog as sipark holds it, so that a BLF pickup can
    /// name it in `Replaces`: Call-ID, sipark's tag, the parked party's tag.
    pub call_id: &'a [u8],
    pub local_tag: Tag,
    pub remote_tag: Option<&'a [u8]>,
}

/// Writes the `kind` document for `spot`.
pub fn write<'a>(
    kind: BodyKind,
    out: &mut Vec<u8>,
    spot: &Spot<'_>,
    retrieve_fac: &str,
    calls: impl Iterator<Item = Shown<'a>>,
) {
    match kind {
        BodyKind::ParkInfo => write_park_info(out, spot, retrieve_fac, calls),
        BodyKind::BroadWorks => write_broadworks_callpark(out, spot, retrieve_fac, calls),
        BodyKind::DialogInfo => write_dialog_info(out, spot, retrieve_fac, calls),
    }
}

/// Writes a Unix time as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian).
pub fn write_utc(out: &mut Vec<u8>, unix: u64) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (H. Hinnant), valid far beyond any clock we will see.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let two = |out: &mut Vec<u8>, n: u64, end: u8| {
        out.push(b'0' + (n / 10 % 10) as u8);
        out.push(b'0' + (n % 10) as u8);
        out.push(end);
    };
    if (0..10_000).contains(&year) {
        let y = year as u64;
        out.extend_from_slice(&[b'0' + (y / 1000) as u8, b'0' + (y / 100 % 10) as u8]);
        two(out, y % 100, b'-');
    } else {
        let _ = write!(out, "{year:04}-");
    }
    two(out, month as u64, b'-');
    two(out, day as u64, b'T');
    two(out, secs / 3600, b':');
    two(out, secs % 3600 / 60, b':');
    two(out, secs % 60, b'Z');
}

fn write_party(out: &mut Vec<u8>, element: &str, who: Party<'_>) {
    out.extend_from_slice(b"    <");
    out.extend_from_slice(element.as_bytes());
    out.extend_from_slice(b" uri=\"");
    xml_text(out, who.uri);
    out.push(b'"');
    if let Some(d) = who.display {
        out.extend_from_slice(b" display=\"");
        xml_text(out, d);
        out.push(b'"');
    }
    out.extend_from_slice(b"/>\n");
}

/// Writes the park-info document for `spot` listing `calls`.
pub fn write_park_info<'a>(
    out: &mut Vec<u8>,
    spot: &Spot<'_>,
    retrieve_fac: &str,
    calls: impl Iterator<Item = Shown<'a>>,
) {
    out.extend_from_slice(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<park-info xmlns=\"urn:sipark:park-info\" version=\"",
    );
    crate::proto::sip::write::push_dec(out, spot.version);
    out.extend_from_slice(b"\" extension=\"");
    xml_text(out, spot.ext);
    out.extend_from_slice(b"\" domain=\"");
    xml_text(out, spot.tenant);
    out.extend_from_slice(b"\">\n");
    for view in calls {
        out.extend_from_slice(b"  <call id=\"");
        view.call.write_token(out);
        match view.left {
            None => out.extend_from_slice(b"\" state=\"parked\""),
            Some(r) => {
                out.extend_from_slice(b"\" state=\"terminated\" reason=\"");
                out.extend_from_slice(r.as_str().as_bytes());
                out.push(b'"');
            }
        }
        out.extend_from_slice(b" parked-at=\"");
        write_utc(out, view.parked_at);
        out.extend_from_slice(b"\" timeout=\"");
        crate::proto::sip::write::push_dec(out, view.timeout_secs);
        out.extend_from_slice(b"\">\n");
        write_party(out, "parked", view.parked);
        if let Some(p) = view.parker {
            write_party(out, "parker", p);
        }
        if view.left.is_none() {
            out.extend_from_slice(b"    <retrieve uri=\"");
            write_retrieve_uri(out, spot, retrieve_fac, view.call);
            out.extend_from_slice(b"\"/>\n");
        }
        out.extend_from_slice(b"  </call>\n");
    }
    out.extend_from_slice(b"</park-info>\n");
}

/// Appends `text` escaped for XML: `&`, `<`, `>`, `"` and `'` become
/// entities and control characters spaces (the one XML escaper), with every byte
/// sequence that is not UTF-8, and the non-characters U+FFFE and U+FFFF
/// that XML forbids, replaced by U+FFFD: the result is always well-formed
/// UTF-8 attribute or element text, whatever bytes a peer sent.
pub fn xml_text(out: &mut Vec<u8>, text: &[u8]) {
    // The common case, a URI or a plain name: nothing to escape or
    // replace.
    if all_in(&XML_PLAIN, text) {
        out.extend_from_slice(text);
        return;
    }
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

/// Bytes [`xml_text`] copies as they are: printable ASCII but the five
/// that XML escapes.
static XML_PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x20;
    while i < 0x7f {
        t[i] = !matches!(i as u8, b'&' | b'<' | b'>' | b'"' | b'\'');
        i += 1;
    }
    t
};

/// [`xml_text`]'s escaping of text already known to be UTF-8. Runs of
/// plain bytes are copied whole.
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
fn write_retrieve_uri(out: &mut Vec<u8>, spot: &Spot<'_>, retrieve_fac: &str, id: CallId) {
    out.extend_from_slice(b"sip:");
    xml_text(out, retrieve_fac.as_bytes());
    xml_text(out, spot.ext);
    out.push(b'@');
    xml_text(out, spot.tenant);
    out.extend_from_slice(b";call=");
    id.write_token(out);
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
    _spot: &Spot<'_>,
    _retrieve_fac: &str,
    mut calls: impl Iterator<Item = Shown<'a>>,
) {
    out.extend_from_slice(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
          <x-broadworks-callpark-info xmlns=\"http://schema.broadsoft.com/callpark\">\n",
    );
    match calls.find(|v| v.left.is_none()) {
        Some(view) => {
            out.extend_from_slice(b"  <callpark>\n    <parked>\n");
            write_nameaddr(out, 6, "identity", view.parked);
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
    spot: &Spot<'_>,
    retrieve_fac: &str,
    calls: impl Iterator<Item = Shown<'a>>,
) {
    out.extend_from_slice(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"",
    );
    crate::proto::sip::write::push_dec(out, spot.version);
    out.extend_from_slice(b"\" state=\"full\" entity=\"sip:");
    xml_text(out, spot.ext);
    out.push(b'@');
    xml_text(out, spot.tenant);
    out.extend_from_slice(b"\">\n");
    for view in calls {
        out.extend_from_slice(b"  <dialog id=\"");
        view.call.write_token(out);
        // The parked leg's dialog as sipark holds it, so that a BLF
        // pickup can name it in `Replaces` (to-tag = local-tag).
        out.extend_from_slice(b"\" call-id=\"");
        xml_text(out, view.call_id);
        out.extend_from_slice(b"\" local-tag=\"");
        xml_text(out, &view.local_tag);
        if let Some(tag) = view.remote_tag {
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
        if let Some(p) = view.parker {
            write_nameaddr(out, 4, "referred-by", p);
        }
        out.extend_from_slice(b"    <local>\n      <identity>sip:");
        xml_text(out, spot.ext);
        out.push(b'@');
        xml_text(out, spot.tenant);
        out.extend_from_slice(b"</identity>\n");
        if view.left.is_none() {
            out.extend_from_slice(b"      <target uri=\"");
            write_retrieve_uri(out, spot, retrieve_fac, view.call);
            out.extend_from_slice(b"\"/>\n");
        }
        out.extend_from_slice(b"    </local>\n    <remote>\n");
        write_nameaddr(out, 6, "identity", view.parked);
        if view.left.is_none() {
            out.extend_from_slice(b"      <target uri=\"");
            write_retrieve_uri(out, spot, retrieve_fac, view.call);
            out.extend_from_slice(b"\"/>\n");
        }
        out.extend_from_slice(b"    </remote>\n  </dialog>\n");
    }
    out.extend_from_slice(b"</dialog-info>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_escapes_specials_and_controls_only() {
        let mut out = Vec::new();
        xml_text(&mut out, b"Al & \"Bo\" <x> 'y'\x01\tz");
        assert_eq!(out, b"Al &amp; &quot;Bo&quot; &lt;x&gt; &apos;y&apos;  z".to_vec());
        out.clear();
        xml_text(&mut out, b"sip:*88103@acme.example");
        assert_eq!(out, b"sip:*88103@acme.example".to_vec());
        // A byte to escape or replace in every place of a longer text
        // (the plain check goes eight bytes a step).
        for at in 0..20 {
            for (bad, want) in
                [(b'<', &b"&lt;"[..]), (b'\'', b"&apos;"), (0x7f, b"\x7f"), (0x0a, b" "), (0xff, "\u{FFFD}".as_bytes())]
            {
                let mut text = b"abcdefghijklmnopqrst".to_vec();
                text[at] = bad;
                out.clear();
                xml_text(&mut out, &text);
                let mut expect = text[..at].to_vec();
                expect.extend_from_slice(want);
                expect.extend_from_slice(&text[at + 1..]);
                assert_eq!(out, expect, "{bad:#x} at {at}");
            }
        }
    }
    use crate::proto::sip::parse::NameAddr;

    fn ext(version: u64) -> Spot<'static> {
        Spot { ext: b"103", tenant: b"acme.example", version }
    }

    /// A parked call whose park INVITE's From was `from`.
    struct Call {
        id: u64,
        from: Vec<u8>,
        parker: Option<(Vec<u8>, Option<Vec<u8>>)>,
    }

    impl Call {
        fn shown(&self, left: Option<LeaveReason>) -> Shown<'_> {
            let na = NameAddr::parse(&self.from).expect("From parses");
            Shown {
                call: CallId::new(self.id).expect("non-zero id"),
                left,
                parked_at: 1_795_546_681,
                timeout_secs: 300,
                parked: Party { uri: na.uri.raw, display: na.display.filter(|d| !d.is_empty()) },
                parker: self.parker.as_ref().map(|(uri, display)| Party { uri, display: display.as_deref() }),
                call_id: b"c1@192.0.2.10",
                local_tag: Tag::parse(b"0123456789abcdef").expect("a tag"),
                remote_tag: na.tag(),
            }
        }
    }

    fn call(id: u64, from: &[u8], parker: Option<(&[u8], Option<&[u8]>)>) -> Call {
        Call { id, from: from.to_vec(), parker: parker.map(|(u, d)| (u.to_vec(), d.map(<[u8]>::to_vec))) }
    }

    fn alice() -> Call {
        call(
            0x1b_2d_8a_0c_5f,
            b"\"Alice\" <sip:101@acme.example>;tag=a1",
            Some((b"sip:102@acme.example", Some(b"Bob"))),
        )
    }

    fn render(kind: BodyKind, e: &Spot<'_>, views: Vec<Shown<'_>>) -> String {
        let mut out = Vec::new();
        write(kind, &mut out, e, "*88", views.into_iter());
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(err) => panic!("{kind} body is not UTF-8: {err}"),
        }
    }

    fn token(id: u64) -> String {
        let mut t = Vec::new();
        CallId::new(id).expect("non-zero id").write_token(&mut t);
        String::from_utf8(t).expect("ascii token")
    }

    #[test]
    fn dialog_info_one_parked_call_exact_bytes() {
        let a = alice();
        let t = token(a.id);
        let got = render(BodyKind::DialogInfo, &ext(59_857_077), vec![a.shown(None)]);
        let want = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"59857077\" state=\"full\" entity=\"sip:103@acme.example\">\n\
             \x20 <dialog id=\"{t}\" call-id=\"c1@192.0.2.10\" local-tag=\"0123456789abcdef\" remote-tag=\"a1\" direction=\"recipient\">\n\
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
        let got = render(BodyKind::DialogInfo, &ext(8), vec![b.shown(None), a.shown(Some(LeaveReason::Retrieved))]);
        let t = token(a.id);
        let departed = format!(
            "  <dialog id=\"{t}\" call-id=\"c1@192.0.2.10\" local-tag=\"0123456789abcdef\" remote-tag=\"a1\" direction=\"recipient\">\n\
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
        let still = "  <dialog id=\"5\" call-id=\"c1@192.0.2.10\" local-tag=\"0123456789abcdef\" remote-tag=\"b\" direction=\"recipient\">\n    <state>confirmed</state>\n    <local>\n      \
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
            let got = render(BodyKind::DialogInfo, &ext(1), vec![a.shown(Some(reason))]);
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
        let views = || vec![c.shown(None)];
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
        let got = render(BodyKind::DialogInfo, &ext(1), vec![c.shown(None)]);
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
        let got = render(BodyKind::BroadWorks, &ext(3), vec![a.shown(None), b.shown(None)]);
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
        let got = render(BodyKind::BroadWorks, &ext(2), vec![a.shown(Some(LeaveReason::Hangup))]);
        assert_eq!(got, empty, "the last call left: nothing parked");
        let b = call(9, b"<sip:+15551230000@acme.example>;tag=b", None);
        let got = render(BodyKind::BroadWorks, &ext(2), vec![b.shown(None), a.shown(Some(LeaveReason::Retrieved))]);
        assert!(
            got.contains("<identity>sip:+15551230000@acme.example</identity>") && !got.contains("Alice"),
            "the remaining call, not the departed one:\n{got}"
        );
    }

    #[test]
    fn park_info_kind_is_write_park_info() {
        let a = alice();
        let mut direct = Vec::new();
        write_park_info(&mut direct, &ext(4), "*88", [a.shown(None)].into_iter());
        let via = render(BodyKind::ParkInfo, &ext(4), vec![a.shown(None)]);
        assert_eq!(via.as_bytes(), direct.as_slice());
    }

    #[test]
    fn utc_dates() {
        let cases = [
            (0u64, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_795_543_200, "2026-11-24T18:00:00Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ];
        for (unix, want) in cases {
            let mut out = Vec::new();
            write_utc(&mut out, unix);
            assert_eq!(String::from_utf8(out).expect("ascii"), want);
        }
    }
}
