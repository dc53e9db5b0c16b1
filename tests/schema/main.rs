//! Notification bodies checked against their XML schemas (docs/schemas/).
//!
//! `cargo test -p sipark --test schema`
//!
//! Every body sipark can send in a NOTIFY (park-info, BroadWorks call park,
//! RFC 4235 dialog-info) is generated through the public API for a set of
//! cases and validated with `xmllint --nonet --noout --schema <xsd> -`;
//! park-info documents are also validated with `--relaxng`
//! docs/schemas/park-info.rng, which states the rules XSD 1.0 cannot.
//! Negative cases check that each schema rejects broken documents, so a
//! validator that accepted anything would fail the suite.
//!
//! xmllint is in Debian's libxml2-utils; scripts/install-deps.sh installs it
//! (CI runs that script). Without it every test here fails and says so.
//! `--nonet` keeps xmllint off the network (dialog-info.xsd imports the W3C
//! xml.xsd by URL; the import is skipped with a warning).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use sipark::proto::config::BodyKind;
use sipark::proto::env::Tag;
use sipark::proto::ids::CallId;
use sipark::proto::notify::bodies::{LeaveReason, Party, Shown, Spot, write};
use sipark::proto::sip::parse::NameAddr;

// ----- xmllint ----------------------------------------------------------------

fn schema_path(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schemas")).join(file)
}

/// The XSD that describes `kind`'s documents.
fn xsd_of(kind: BodyKind) -> PathBuf {
    schema_path(match kind {
        BodyKind::ParkInfo => "park-info.xsd",
        BodyKind::BroadWorks => "broadworks-callpark-info.xsd",
        BodyKind::DialogInfo => "dialog-info.xsd",
    })
}

/// Fails the test, with instructions, if xmllint cannot be run.
fn require_xmllint() {
    match Command::new("xmllint").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`xmllint --version` failed ({}): {}; run scripts/install-deps.sh (installs libxml2-utils)",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "xmllint is needed to check notification bodies against docs/schemas/ and could not be run ({e}); \
             run scripts/install-deps.sh, which installs libxml2-utils (CI runs it)"
        ),
    }
}

/// Validates `doc` (given on stdin) with `xmllint --nonet --noout <mode> <schema> -`.
/// `mode` is `--schema` or `--relaxng`. Err carries xmllint's diagnostics.
fn validate(mode: &str, schema: &PathBuf, doc: &[u8]) -> Result<(), String> {
    require_xmllint();
    assert!(schema.is_file(), "schema {} is missing", schema.display());
    let mut child = Command::new("xmllint")
        .args(["--nonet", "--noout", mode])
        .arg(schema)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning xmllint: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let out = std::thread::scope(|s| {
        // Feed stdin from another thread so that a large document cannot
        // deadlock against xmllint's output.
        let writer = s.spawn(move || {
            let r = stdin.write_all(doc);
            drop(stdin);
            r
        });
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("waiting for xmllint: {e}"));
        let written = writer.join().expect("stdin writer thread");
        (out, written)
    });
    let (out, written) = out;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Err(e) = written {
        return Err(format!("could not write the document to xmllint ({e}): {stderr}"));
    }
    match out.status.code() {
        Some(0) => Ok(()),
        _ => Err(format!("xmllint {}: {}", out.status, stderr.trim())),
    }
}

fn must_validate(kind: BodyKind, case: &str, doc: &str) {
    if let Err(e) = validate("--schema", &xsd_of(kind), doc.as_bytes()) {
        panic!(
            "{kind} body for case {case:?} does not validate against {}:\n{e}\n--- document ---\n{doc}",
            xsd_of(kind).display()
        );
    }
    if kind == BodyKind::ParkInfo {
        let rng = schema_path("park-info.rng");
        if let Err(e) = validate("--relaxng", &rng, doc.as_bytes()) {
            panic!(
                "park-info body for case {case:?} does not validate against park-info.rng:\n{e}\n--- document ---\n{doc}"
            );
        }
    }
}

fn must_reject(mode: &str, schema: &str, what: &str, doc: &str) {
    if validate(mode, &schema_path(schema), doc.as_bytes()).is_ok() {
        panic!("{schema} accepted a broken document ({what}):\n{doc}");
    }
}

// ----- building bodies through the public API -------------------------------

/// The extension a document is about.
struct Extension {
    ext: String,
    version: u64,
}

fn extension(ext: &str, version: u64) -> Extension {
    Extension { ext: ext.into(), version }
}

/// A parked call whose park INVITE's From value was `from`.
struct Call {
    id: u64,
    from: Vec<u8>,
    parker: Option<(Vec<u8>, Option<Vec<u8>>)>,
    parked_at: u64,
    timeout_secs: u64,
}

fn call(id: u64, from: &[u8], parker: Option<(&[u8], Option<&[u8]>)>) -> Call {
    Call {
        id,
        from: from.to_vec(),
        parker: parker.map(|(uri, display)| (uri.to_vec(), display.map(<[u8]>::to_vec))),
        parked_at: 1_795_546_681,
        timeout_secs: 300,
    }
}

impl Call {
    /// What a document shows of this call, as the park shows a parked call.
    fn shown(&self, left: Option<LeaveReason>) -> Shown<'_> {
        let na = NameAddr::parse(&self.from).unwrap_or_else(|e| panic!("From of call {}: {e:?}", self.id));
        Shown {
            call: CallId::new(self.id).unwrap_or_else(|| panic!("call ids are not 0")),
            left,
            parked_at: self.parked_at,
            timeout_secs: self.timeout_secs,
            parked: Party { uri: na.uri.raw, display: na.display.filter(|d| !d.is_empty()) },
            parker: self.parker.as_ref().map(|(uri, display)| Party { uri, display: display.as_deref() }),
            call_id: b"c1@127.0.0.1",
            local_tag: Tag::parse(b"0123456789abcdef").expect("a tag"),
            remote_tag: na.tag(),
        }
    }
}

fn alice(id: u64) -> Call {
    call(id, b"\"Alice\" <sip:101@acme.example>;tag=a1", Some((b"sip:102@acme.example", Some(b"Bob"))))
}

fn bare(id: u64) -> Call {
    call(id, b"<sip:+15551230000@acme.example;user=phone>;tag=b2", None)
}

/// One situation to notify: the calls still parked (oldest first) and the
/// call that just left, if any.
struct Case {
    name: String,
    ext: Extension,
    parked: Vec<Call>,
    departed: Option<(Call, LeaveReason)>,
}

impl Case {
    fn new(name: &str, ext: Extension, parked: Vec<Call>, departed: Option<(Call, LeaveReason)>) -> Case {
        Case { name: name.into(), ext, parked, departed }
    }

    fn render(&self, kind: BodyKind) -> String {
        let views = self
            .parked
            .iter()
            .map(|call| call.shown(None))
            .chain(self.departed.as_ref().map(|(call, r)| call.shown(Some(*r))));
        let spot = Spot { ext: self.ext.ext.as_bytes(), tenant: b"acme.example", version: self.ext.version };
        let mut out = Vec::new();
        write(kind, &mut out, &spot, "*88", views);
        String::from_utf8(out).unwrap_or_else(|e| panic!("{kind} body for {:?} is not UTF-8: {e}", self.name))
    }
}

const REASONS: [LeaveReason; 5] =
    [LeaveReason::Retrieved, LeaveReason::Hangup, LeaveReason::Recalled, LeaveReason::Timeout, LeaveReason::Shutdown];

/// Cases every body kind must turn into a valid document.
fn cases() -> Vec<Case> {
    let mut v = vec![
        Case::new("nothing parked", extension("103", 59_857_081), Vec::new(), None),
        Case::new("one call, parker with display", extension("103", 59_857_077), vec![alice(0x1b_2d_8a_0c)], None),
        Case::new("two calls, second bare", extension("103", 59_857_078), vec![alice(10), bare(11)], None),
        Case::new("last call left", extension("103", 59_857_080), Vec::new(), Some((bare(11), LeaveReason::Hangup))),
        Case::new(
            "escaping",
            extension("103", 5),
            vec![call(
                3,
                b"\"Al <&> \\\"Q\\\" 'x'\tJos\xc3\xa9 \xe6\x9d\xb1\" <sip:a&b@acme.example;x=1&y=2>;tag=e",
                Some((b"sip:p&q@acme.example", Some(b"<P> & \"Q\" '\x01'"))),
            )],
            None,
        ),
        Case::new(
            "limits",
            extension(&"A-z_0.9+".repeat(8), u64::MAX),
            (0..8).map(|i| if i % 2 == 0 { alice(u64::MAX - i) } else { bare(u64::MAX - i) }).collect(),
            Some((alice(1), LeaveReason::Timeout)),
        ),
    ];
    for r in REASONS {
        v.push(Case::new(
            &format!("departure {r:?}"),
            extension("103", 59_857_079),
            vec![bare(11)],
            Some((alice(10), r)),
        ));
    }
    let mut far = alice(42);
    far.parked_at = 4_102_444_799;
    far.timeout_secs = 86_400;
    v.push(Case::new("late date, long timeout", extension("7", 1), vec![far], None));
    v
}

// ----- tests --------------------------------------------------------------

#[test]
fn xmllint_is_installed() {
    require_xmllint();
}

#[test]
fn every_kind_has_a_schema() {
    for kind in BodyKind::ALL {
        assert!(xsd_of(kind).is_file(), "{kind}: {} is missing", xsd_of(kind).display());
    }
    assert!(schema_path("park-info.rng").is_file(), "park-info.rng is missing");
}

#[test]
fn park_info_bodies_validate() {
    for case in cases() {
        let doc = case.render(BodyKind::ParkInfo);
        must_validate(BodyKind::ParkInfo, &case.name, &doc);
    }
}

#[test]
fn broadworks_bodies_validate() {
    for case in cases() {
        let doc = case.render(BodyKind::BroadWorks);
        must_validate(BodyKind::BroadWorks, &case.name, &doc);
        // What the schema cannot say: the one parked call named is the
        // oldest still parked, and an empty callpark means nothing is.
        match case.parked.first() {
            Some(oldest) => {
                let uri = String::from_utf8_lossy(oldest.shown(None).parked.uri).replace('&', "&amp;");
                assert!(
                    doc.contains(&format!(">{uri}</identity>")),
                    "{}: oldest call {uri} not named:\n{doc}",
                    case.name
                );
                assert_eq!(doc.matches("<parked>").count(), 1, "{}:\n{doc}", case.name);
            }
            None => assert!(doc.contains("<callpark/>"), "{}: nothing parked must be <callpark/>:\n{doc}", case.name),
        }
    }
}

#[test]
fn dialog_info_bodies_validate() {
    for case in cases() {
        let doc = case.render(BodyKind::DialogInfo);
        must_validate(BodyKind::DialogInfo, &case.name, &doc);
        // What RFC 4235's schema leaves open and a BLF key relies on.
        let head = format!(
            "<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{}\" state=\"full\" entity=\"sip:{}@acme.example\">",
            case.ext.version, case.ext.ext
        );
        assert!(doc.contains(&head), "{}: root element; want {head}\n{doc}", case.name);
        assert_eq!(
            doc.matches("<state>confirmed</state>").count(),
            case.parked.len(),
            "{}: one confirmed dialog per parked call:\n{doc}",
            case.name
        );
        assert_eq!(
            doc.matches(">terminated</state>").count(),
            usize::from(case.departed.is_some()),
            "{}: one terminated dialog for the call that left:\n{doc}",
            case.name
        );
        assert_eq!(
            doc.matches("<target uri=\"sip:*88").count(),
            2 * case.parked.len(),
            "{}: local and remote target of every parked call are the retrieve URI:\n{doc}",
            case.name
        );
    }
}

#[test]
fn bodies_with_bytes_that_are_not_utf8_validate() {
    // A peer's From can carry Latin-1 or broken UTF-8 and U+FFFF, none of
    // which may appear in an XML document.
    let c = call(
        4,
        b"\"Jos\xe9 \xef\xbf\xbf\xff\" <sip:101@acme.example>;tag=n",
        Some((b"sip:102@acme.example", Some(b"M\xfcller"))),
    );
    let case = Case::new("not UTF-8", extension("103", 9), vec![c], None);
    for kind in [BodyKind::BroadWorks, BodyKind::DialogInfo] {
        let doc = case.render(kind);
        must_validate(kind, &case.name, &doc);
        assert!(doc.contains("Jos\u{FFFD} \u{FFFD}\u{FFFD}"), "{kind}: replacement characters expected:\n{doc}");
    }
}

#[test]
fn schemas_reject_broken_documents() {
    let two = Case::new("two", extension("103", 2), vec![alice(10), bare(11)], None);
    let left = Case::new("left", extension("103", 3), vec![bare(11)], Some((alice(10), LeaveReason::Retrieved)));

    // park-info
    let pi = two.render(BodyKind::ParkInfo);
    let bad_state = pi.replacen("state=\"parked\"", "state=\"gone\"", 1);
    must_reject("--schema", "park-info.xsd", "unknown state", &bad_state);
    must_reject("--relaxng", "park-info.rng", "unknown state", &bad_state);
    let bad_ext = pi.replacen("extension=\"103\"", "extension=\"1 3\"", 1);
    must_reject("--schema", "park-info.xsd", "space in extension", &bad_ext);
    let bad_id = pi.replacen("id=\"a\"", "id=\"A\"", 1);
    assert_ne!(bad_id, pi, "Alice's token is \"a\"");
    must_reject("--schema", "park-info.xsd", "upper-case call id", &bad_id);
    let no_retrieve = pi.lines().filter(|l| !l.contains("<retrieve ")).collect::<Vec<_>>().join("\n");
    must_reject("--relaxng", "park-info.rng", "parked call without retrieve", &no_retrieve);
    let pi_left = left.render(BodyKind::ParkInfo);
    let no_reason = pi_left.replacen(" reason=\"retrieved\"", "", 1);
    assert_ne!(no_reason, pi_left);
    must_reject("--relaxng", "park-info.rng", "terminated call without reason", &no_reason);
    let not_well_formed = pi.replacen("display=\"Alice\"", "display=\"A<ice\"", 1);
    must_reject("--schema", "park-info.xsd", "not well-formed", &not_well_formed);

    // BroadWorks
    let bw = two.render(BodyKind::BroadWorks);
    let start = bw.find("    <parked>").expect("parked element");
    let end = bw.find("    </parked>\n").expect("end of parked") + "    </parked>\n".len();
    let doubled = format!("{}{}{}", &bw[..end], &bw[start..end], &bw[end..]);
    must_reject("--schema", "broadworks-callpark-info.xsd", "two parked elements", &doubled);
    let wrong_ns = bw.replacen("http://schema.broadsoft.com/callpark", "urn:other", 1);
    must_reject("--schema", "broadworks-callpark-info.xsd", "wrong namespace", &wrong_ns);

    // dialog-info
    let di = left.render(BodyKind::DialogInfo);
    let no_state = di.replacen("    <state>confirmed</state>\n", "", 1);
    assert_ne!(no_state, di);
    must_reject("--schema", "dialog-info.xsd", "dialog without state", &no_state);
    let bad_doc_state = di.replacen("state=\"full\"", "state=\"whole\"", 1);
    must_reject("--schema", "dialog-info.xsd", "unknown document state", &bad_doc_state);
    let bad_event = di.replacen("event=\"replaced\"", "event=\"retrieved\"", 1);
    assert_ne!(bad_event, di);
    must_reject("--schema", "dialog-info.xsd", "unknown state event", &bad_event);
}
