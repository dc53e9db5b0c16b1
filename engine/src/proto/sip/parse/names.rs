//! Header names and methods: the known names with their canonical
//! spellings and compact forms, and their classification a word at a time.

use super::*;

macro_rules! header_table {
    ($($v:ident => $s:literal),* $(,)?) => {
        /// `name` (made of RFC 3261 token characters, as the parser reads header
/// names) equals `known` (letters and `-`) in any ASCII case. Among token
/// characters only letters differ from another by the 0x20 bit, so an OR of
/// that bit into each byte compares them exactly.
///
/// Compared a word at a time: two loads that overlap cover a name of 4 to
/// 16 bytes (three, 24), and the loads of `known`, a literal, fold away.
#[inline(always)]
fn token_eq_ignore_case(known: &[u8], name: &[u8]) -> bool {
    fn w64(s: &[u8], i: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[i..i + 8]);
        u64::from_le_bytes(b) | 0x2020_2020_2020_2020
    }
    fn w32(s: &[u8], i: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&s[i..i + 4]);
        u32::from_le_bytes(b) | 0x2020_2020
    }
    let n = known.len();
    if name.len() != n {
        return false;
    }
    match n {
        0..4 => known.iter().zip(name).all(|(k, n)| k | 0x20 == n | 0x20),
        4..8 => w32(known, 0) == w32(name, 0) && w32(known, n - 4) == w32(name, n - 4),
        8..=16 => w64(known, 0) == w64(name, 0) && w64(known, n - 8) == w64(name, n - 8),
        17..=24 => {
            w64(known, 0) == w64(name, 0) && w64(known, 8) == w64(name, 8) && w64(known, n - 8) == w64(name, n - 8)
        }
        _ => known.iter().zip(name).all(|(k, n)| k | 0x20 == n | 0x20),
    }
}

impl HeaderName {
            /// Every known name (not [`HeaderName::Other`]).
            pub const ALL: &'static [HeaderName] = &[$(HeaderName::$v),*];
            /// The canonical spelling (`Call-ID`, `CSeq`, …); `""` for
            /// [`HeaderName::Other`].
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(HeaderName::$v => $s,)*
                    HeaderName::Other => "",
                }
            }
            pub(super) const fn missing_reason(self) -> &'static str {
                match self {
                    $(HeaderName::$v => concat!("Missing ", $s, " header"),)*
                    HeaderName::Other => "Missing header",
                }
            }
            pub(super) const fn invalid_reason(self) -> &'static str {
                match self {
                    $(HeaderName::$v => concat!("Bad ", $s, " header"),)*
                    HeaderName::Other => "Bad header",
                }
            }
        }
    };
}

header_table! {
    Via => "Via",
    From => "From",
    To => "To",
    CallId => "Call-ID",
    CSeq => "CSeq",
    Contact => "Contact",
    MaxForwards => "Max-Forwards",
    ContentLength => "Content-Length",
    ContentType => "Content-Type",
    RecordRoute => "Record-Route",
    Route => "Route",
    ReferredBy => "Referred-By",
    ReferTo => "Refer-To",
    Event => "Event",
    Expires => "Expires",
    MinExpires => "Min-Expires",
    UserAgent => "User-Agent",
    Allow => "Allow",
    Supported => "Supported",
    Require => "Require",
    SubscriptionState => "Subscription-State",
    Reason => "Reason",
}

impl HeaderName {
    /// Classifies a header name, case-insensitively, including the compact
    /// forms (RFC 3261 §7.3.3, RFC 3515, RFC 3892, RFC 6665).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        use HeaderName as H;
        if let [c] = name {
            return match c.to_ascii_lowercase() {
                b'v' => H::Via,
                b'f' => H::From,
                b't' => H::To,
                b'i' => H::CallId,
                b'm' => H::Contact,
                b'l' => H::ContentLength,
                b'c' => H::ContentType,
                b'k' => H::Supported,
                b'r' => H::ReferTo,
                b'b' => H::ReferredBy,
                b'o' => H::Event,
                _ => H::Other,
            };
        }
        // The length and first letter leave one candidate (two for
        // `Call-ID`/`Contact`), compared once.
        let first = name.first().map_or(0, u8::to_ascii_lowercase);
        let candidates: &[(&[u8], HeaderName)] = match (name.len(), first) {
            (2, b't') => &[(b"To", H::To)],
            (3, b'v') => &[(b"Via", H::Via)],
            (4, b'f') => &[(b"From", H::From)],
            (4, b'c') => &[(b"CSeq", H::CSeq)],
            (5, b'r') => &[(b"Route", H::Route)],
            (5, b'e') => &[(b"Event", H::Event)],
            (5, b'a') => &[(b"Allow", H::Allow)],
            (6, b'r') => &[(b"Reason", H::Reason)],
            (7, b'c') => &[(b"Call-ID", H::CallId), (b"Contact", H::Contact)],
            (7, b'e') => &[(b"Expires", H::Expires)],
            (7, b'r') => &[(b"Require", H::Require)],
            (8, b'r') => &[(b"Refer-To", H::ReferTo)],
            (9, b's') => &[(b"Supported", H::Supported)],
            (10, b'u') => &[(b"User-Agent", H::UserAgent)],
            (11, b'r') => &[(b"Referred-By", H::ReferredBy)],
            (11, b'm') => &[(b"Min-Expires", H::MinExpires)],
            (12, b'm') => &[(b"Max-Forwards", H::MaxForwards)],
            (12, b'c') => &[(b"Content-Type", H::ContentType)],
            (12, b'r') => &[(b"Record-Route", H::RecordRoute)],
            (14, b'c') => &[(b"Content-Length", H::ContentLength)],
            (18, b's') => &[(b"Subscription-State", H::SubscriptionState)],
            _ => return H::Other,
        };
        candidates.iter().find(|(n, _)| token_eq_ignore_case(n, name)).map_or(H::Other, |&(_, h)| h)
    }

    /// The reason phrase of a 400 for a second instance of a header that
    /// may appear once (RFC 3261 §7.3.1, §20; RFC 3515 §2.4.1 for
    /// Refer-To); `None` for a header that may repeat or that sipark does
    /// not read. Content-Length is only refused when the values differ.
    pub(super) const fn duplicate_reason(self) -> Option<&'static str> {
        use HeaderName as H;
        Some(match self {
            H::From => "Duplicate From header",
            H::To => "Duplicate To header",
            H::CallId => "Duplicate Call-ID header",
            H::CSeq => "Duplicate CSeq header",
            H::MaxForwards => "Duplicate Max-Forwards header",
            H::ContentLength => "Conflicting Content-Length headers",
            H::ContentType => "Duplicate Content-Type header",
            H::Expires => "Duplicate Expires header",
            H::Event => "Duplicate Event header",
            H::ReferTo => "Duplicate Refer-To header",
            H::ReferredBy => "Duplicate Referred-By header",
            _ => return None,
        })
    }
}

/// Long name of the compact forms that map to [`HeaderName::Other`];
/// anything else unchanged.
pub(super) fn expand_other_compact(name: &[u8]) -> &[u8] {
    match name {
        [c] => match c.to_ascii_lowercase() {
            b'e' => b"Content-Encoding",
            b's' => b"Subject",
            b'u' => b"Allow-Events",
            b'x' => b"Session-Expires",
            _ => name,
        },
        _ => name,
    }
}

impl<'a> Method<'a> {
    /// Case-sensitive (RFC 3261 §7.1); an unknown token is `Other`.
    pub fn from_bytes(b: &'a [u8]) -> Method<'a> {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"NOTIFY" => Method::Notify,
            b"SUBSCRIBE" => Method::Subscribe,
            b"REFER" => Method::Refer,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other(b),
        }
    }
    /// The method token as it is written on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Register => b"REGISTER",
            Method::Options => b"OPTIONS",
            Method::Notify => b"NOTIFY",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Refer => b"REFER",
            Method::Info => b"INFO",
            Method::Update => b"UPDATE",
            Method::Prack => b"PRACK",
            Method::Message => b"MESSAGE",
            Method::Publish => b"PUBLISH",
            Method::Other(b) => b,
        }
    }
}
