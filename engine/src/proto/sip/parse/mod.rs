//! Zero-copy SIP message parser (RFC 3261 §7, §20, §25).
//!
//! [`SipMessage`] borrows the datagram; header lines are located with
//! `memchr`, and typed values (Via, From/To, CSeq, Contact, …) are parsed
//! only when asked for. Nothing here allocates.

use std::cell::OnceCell;
use std::fmt;

use arrayvec::ArrayVec;
use memchr::{memchr, memchr2};

use super::find::{Byte, all_in};

/// Most header lines a message may carry; more is [`ParseError::TooManyHeaders`].
pub const MAX_HEADERS: usize = 64;

/// The headers that may appear once ([`HeaderName::duplicate_reason`]), a
/// bit per name.
const SINGLE: u32 = {
    let mut bits = 0u32;
    let mut i = 0;
    while i < HeaderName::ALL.len() {
        if HeaderName::ALL[i].duplicate_reason().is_some() {
            bits |= 1 << (HeaderName::ALL[i] as u32);
        }
        i += 1;
    }
    bits
};
// A bit per name in a `u32`.
const _: () = assert!((HeaderName::Other as u32) < 32);

/// What was wrong with a message. Each variant names the bad part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The start line is neither a request line nor a status line.
    StartLine,
    /// The Request-URI could not be parsed.
    RequestUri,
    /// The SIP version is not `SIP/2.0` (a request is answered 505).
    Version,
    /// The status code is not three digits.
    StatusCode,
    /// A header line has no colon or an invalid name.
    HeaderLine,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// No blank line ends the header section.
    Incomplete,
    /// A mandatory header is missing; names it.
    Missing(HeaderName),
    /// A header value could not be parsed; names the header.
    Invalid(HeaderName),
    /// Content-Length is larger than the bytes that follow the headers.
    BodyTruncated,
    /// A header that may appear once appears again (for Content-Length:
    /// with another value); names it.
    Duplicate(HeaderName),
}

/// Header names the engine knows, including their compact forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    ContentLength,
    ContentType,
    RecordRoute,
    Route,
    ReferredBy,
    ReferTo,
    Event,
    Expires,
    MinExpires,
    UserAgent,
    Allow,
    Supported,
    Require,
    SubscriptionState,
    Reason,
    Other,
}

/// A request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Notify,
    Subscribe,
    Refer,
    Info,
    Update,
    Prack,
    Message,
    Publish,
    Other(&'a [u8]),
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: Method<'a>, uri: &'a [u8] },
    Response { code: u16, reason: &'a [u8] },
}

/// One header line: its name and its raw value (trimmed, folding kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: HeaderName,
    pub raw_name: &'a [u8],
    pub value: &'a [u8],
}

/// A parsed URI, borrowing its bytes: SIP, SIPS and tel URIs in parts,
/// any other scheme whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: &'a [u8],
    pub user: Option<&'a [u8]>,
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// `;name=value` parameters, raw, including the leading `;` (may be empty).
    pub params: &'a [u8],
    /// `?headers`, raw, without the `?`.
    pub headers: Option<&'a [u8]>,
    pub raw: &'a [u8],
}

/// `name-addr` or `addr-spec` with header parameters (From, To, Contact,
/// Route, Record-Route, Referred-By, Refer-To).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name without quotes, if any.
    pub display: Option<&'a [u8]>,
    pub uri: Uri<'a>,
    /// Header parameters after the URI, raw, including the leading `;`.
    pub params: &'a [u8],
    /// The whole value as it appeared.
    pub raw: &'a [u8],
}

/// One Contact value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    Star,
    Addr(NameAddr<'a>),
}

/// One Via value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// `UDP`, `TCP`, …
    pub transport: &'a [u8],
    pub host: &'a [u8],
    pub port: Option<u16>,
    pub branch: Option<&'a [u8]>,
    pub received: Option<&'a [u8]>,
    /// `None`: no rport; `Some(None)`: `;rport` without value; `Some(Some(p))`.
    pub rport: Option<Option<u16>>,
    pub raw: &'a [u8],
}

/// The CSeq header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: Method<'a>,
}

/// A parsed message borrowing its datagram.
///
/// The typed values every layer reads (the top Via, From, To, CSeq) are
/// parsed the first time they are asked for and kept, so that a message
/// read by the front door, the transaction layer, a transaction user and
/// the response writer is parsed once.
#[derive(Clone)]
pub struct SipMessage<'a> {
    buf: &'a [u8],
    start: StartLine<'a>,
    /// Not initialised beyond the lines read (an array of 64 slots set
    /// up front cost more than reading a message's dozen lines).
    headers: ArrayVec<Header<'a>, MAX_HEADERS>,
    body: &'a [u8],
    top_via: OnceCell<Result<Via<'a>, ParseError>>,
    from: OnceCell<Result<NameAddr<'a>, ParseError>>,
    to: OnceCell<Result<NameAddr<'a>, ParseError>>,
    cseq: OnceCell<Result<CSeq<'a>, ParseError>>,
    ruri: OnceCell<Option<Uri<'a>>>,
}

// API CONTRACT (filled in by the parser work; signatures are fixed):
impl<'a> SipMessage<'a> {
    /// Parses one whole datagram. The body is the `Content-Length` bytes after
    /// the blank line (all remaining bytes if there is no Content-Length).
    ///
    /// Only the framing is checked here: the start line, that every header
    /// line has a name and a colon, the blank line and Content-Length. Typed
    /// header values are parsed on demand by the accessors. Leading empty
    /// lines (keep-alive CRLFs) are skipped. Line ends are CRLF or bare LF.
    pub fn parse(buf: &'a [u8]) -> Result<SipMessage<'a>, ParseError> {
        let mut slot = None;
        SipMessage::parse_in(buf, &mut slot)?;
        slot.ok_or(ParseError::Incomplete)
    }

    /// [`SipMessage::parse`] into `slot`, for a caller that keeps the
    /// message where it is: the header slots are most of a message's size
    /// (2.5 KiB), and a message returned by value is copied on the way
    /// out.
    ///
    /// After an error found once the whole header section was read (a
    /// request line with an unsupported SIP version or a Request-URI with
    /// white space in it, a duplicated header, a Content-Length that cannot
    /// be read or is larger than the bytes that follow), `slot` holds the
    /// message, without a body, so that a request can be answered with the
    /// error ([`ParseError::answer`]). After any other error it is `None`.
    pub fn parse_in<'s>(buf: &'a [u8], slot: &'s mut Option<SipMessage<'a>>) -> Result<&'s SipMessage<'a>, ParseError> {
        let len = buf.len();
        let mut pos = 0;
        while pos < len && matches!(buf[pos], b'\r' | b'\n') {
            pos += 1;
        }
        let Some(off) = Byte::new(b'\n').find(&buf[pos..]) else {
            return Err(ParseError::Incomplete);
        };
        let nl = pos + off;
        let (start, start_defect) = parse_start_line(&buf[pos..nl])?;
        // Filled in place as the lines are read (only the slots used are
        // written).
        let read = slot
            .insert(SipMessage {
                buf,
                start,
                headers: ArrayVec::new(),
                body: &[],
                top_via: OnceCell::new(),
                from: OnceCell::new(),
                to: OnceCell::new(),
                cseq: OnceCell::new(),
                ruri: OnceCell::new(),
            })
            .read_headers(nl + 1);
        match read {
            Err(e) => {
                *slot = None;
                Err(e)
            }
            Ok(defect) => match start_defect.or(defect) {
                None => slot.as_ref().ok_or(ParseError::Incomplete),
                Some(e) => {
                    if let Some(m) = slot {
                        m.body = &[];
                    }
                    Err(e)
                }
            },
        }
    }

    /// Reads the header lines from `pos` on, and the body after them.
    /// `Ok(Some(defect))`: the header section was read, but the message is
    /// not well formed (a duplicated header, a bad Content-Length), and
    /// has no body.
    fn read_headers(&mut self, mut pos: usize) -> Result<Option<ParseError>, ParseError> {
        let buf = self.buf;
        let len = buf.len();
        let mut content_length: Option<&'a [u8]> = None;
        // The names seen so far (a bit each), and the first header that may
        // appear once seen again.
        let mut seen = 0u32;
        let mut duplicate = None;
        let line_ends = Byte::new(b'\n');
        loop {
            // Blank line: end of the header section.
            match buf.get(pos) {
                None => return Err(ParseError::Incomplete),
                Some(b'\n') => {
                    pos += 1;
                    break;
                }
                Some(b'\r') => match buf.get(pos + 1) {
                    Some(b'\n') => {
                        pos += 2;
                        break;
                    }
                    None => return Err(ParseError::Incomplete),
                    Some(_) => return Err(ParseError::HeaderLine),
                },
                Some(_) => {}
            }
            // Header name, optional SP/HT, colon. A name the table knows is
            // made of token characters (the comparison tells them apart);
            // any other is checked here.
            let name_start = pos;
            pos = name_end(buf, pos);
            let raw_name = &buf[name_start..pos];
            let name = HeaderName::from_bytes(raw_name);
            if name == HeaderName::Other && !all_in(&TOKEN, raw_name) {
                return Err(ParseError::HeaderLine);
            }
            while pos < len && matches!(buf[pos], b' ' | b'\t') {
                pos += 1;
            }
            match buf.get(pos) {
                None => return Err(ParseError::Incomplete),
                Some(b':') if !raw_name.is_empty() => pos += 1,
                Some(_) => return Err(ParseError::HeaderLine),
            }
            // Value up to the line end; a next line starting with SP/HT
            // continues it (folding).
            let value_start = pos;
            let value_end = loop {
                let Some(off) = line_ends.find(&buf[pos..]) else {
                    return Err(ParseError::Incomplete);
                };
                let end = pos + off;
                pos = end + 1;
                if !matches!(buf.get(pos), Some(b' ' | b'\t')) {
                    break end;
                }
            };
            let value = trim(&buf[value_start..value_end]);
            let bit = 1u32 << (name as u32);
            if seen & bit & SINGLE != 0 {
                let same_length =
                    name == HeaderName::ContentLength && content_length.map(parse_u32) == Some(parse_u32(value));
                if !same_length && duplicate.is_none() {
                    duplicate = Some(ParseError::Duplicate(name));
                }
            }
            seen |= bit;
            if name == HeaderName::ContentLength && content_length.is_none() {
                content_length = Some(value);
            }
            self.headers.try_push(Header { name, raw_name, value }).map_err(|_| ParseError::TooManyHeaders)?;
        }

        if duplicate.is_some() {
            return Ok(duplicate);
        }
        let rest = &buf[pos..];
        let body = match content_length {
            None => Some(rest),
            Some(v) => match parse_u32(v).and_then(|cl| usize::try_from(cl).ok()) {
                None => return Ok(Some(ParseError::Invalid(HeaderName::ContentLength))),
                Some(cl) => rest.get(..cl),
            },
        };
        match body {
            Some(body) => {
                self.body = body;
                Ok(None)
            }
            None => Ok(Some(ParseError::BodyTruncated)),
        }
    }
    /// The whole datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    pub fn start_line(&self) -> StartLine<'a> {
        self.start
    }
    /// `true` for a request, `false` for a response.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
    /// `Some(method)` for a request.
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }
    /// Raw Request-URI for a request.
    /// The Request-URI, parsed (once): `None` for a response or a
    /// Request-URI that does not parse.
    pub fn request_uri_parsed(&self) -> Option<Uri<'a>> {
        *self.ruri.get_or_init(|| self.request_uri().and_then(|u| Uri::parse(u).ok()))
    }

    pub fn request_uri(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }
    /// Status code for a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }
    /// Reason phrase for a response (may be empty).
    pub fn reason_phrase(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }
    pub fn headers(&self) -> &[Header<'a>] {
        &self.headers
    }
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Writes the message back as the parser saw it: start line, each header
    /// line as `name: value` (name as received), blank line, body. Parsing
    /// the result gives the same fields (the fuzz targets check this).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(method.as_bytes());
                out.push(b' ');
                out.extend_from_slice(uri);
                out.extend_from_slice(b" SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let mut digits = [b'0'; 3];
                for (i, d) in digits.iter_mut().enumerate() {
                    *d = b'0' + (code / 10u16.pow(2 - i as u32) % 10) as u8;
                }
                out.extend_from_slice(b"SIP/2.0 ");
                out.extend_from_slice(&digits);
                out.push(b' ');
                out.extend_from_slice(reason);
                out.extend_from_slice(b"\r\n");
            }
        }
        for h in self.headers() {
            out.extend_from_slice(h.raw_name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
    }

    /// Trimmed value of the first header called `name`. For
    /// [`HeaderName::Other`] use [`SipMessage::header_raw`].
    pub fn header(&self, name: HeaderName) -> Option<&'a [u8]> {
        self.headers().iter().find(|h| h.name == name).map(|h| h.value)
    }

    /// Trimmed values of every header called `name`, in order.
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.headers().iter().filter(move |h| h.name == name).map(|h| h.value)
    }

    /// Value of the first header whose name is `name` (case-insensitive).
    /// Compact forms match their long names both ways, also those that
    /// map to [`HeaderName::Other`] (`e`, `s`, `u`, `x`).
    pub fn header_raw(&self, name: &[u8]) -> Option<&'a [u8]> {
        let known = HeaderName::from_bytes(name);
        if known != HeaderName::Other {
            return self.header(known);
        }
        let want = expand_other_compact(name);
        self.headers()
            .iter()
            .find(|h| h.name == HeaderName::Other && expand_other_compact(h.raw_name).eq_ignore_ascii_case(want))
            .map(|h| h.value)
    }

    /// Every comma-separated value of every header called `name`, in order.
    fn list(&self, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.header_values(name).flat_map(CommaSplit::new)
    }

    /// The Call-ID (`word [@ word]`, visible ASCII only).
    pub fn call_id(&self) -> Result<&'a [u8], ParseError> {
        let v = self.header(HeaderName::CallId).ok_or(ParseError::Missing(HeaderName::CallId))?;
        if v.is_empty() || !all_in(&VISIBLE, v) {
            return Err(ParseError::Invalid(HeaderName::CallId));
        }
        Ok(v)
    }
    pub fn cseq(&self) -> Result<CSeq<'a>, ParseError> {
        *self
            .cseq
            .get_or_init(|| CSeq::parse(self.header(HeaderName::CSeq).ok_or(ParseError::Missing(HeaderName::CSeq))?))
    }
    /// The first value of the first Via header.
    pub fn top_via(&self) -> Result<Via<'a>, ParseError> {
        *self.top_via.get_or_init(|| self.vias().next().unwrap_or(Err(ParseError::Missing(HeaderName::Via))))
    }
    /// Every Via value of every Via header, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        self.list(HeaderName::Via).map(Via::parse)
    }
    /// The Via values under the top one, which is not parsed again here
    /// ([`SipMessage::top_via`] keeps it).
    pub fn lower_vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        self.list(HeaderName::Via).skip(1).map(Via::parse)
    }
    pub fn from_hdr(&self) -> Result<NameAddr<'a>, ParseError> {
        *self.from.get_or_init(|| {
            let v = self.header(HeaderName::From).ok_or(ParseError::Missing(HeaderName::From))?;
            NameAddr::parse(v).map_err(|_| ParseError::Invalid(HeaderName::From))
        })
    }
    pub fn to_hdr(&self) -> Result<NameAddr<'a>, ParseError> {
        *self.to.get_or_init(|| {
            let v = self.header(HeaderName::To).ok_or(ParseError::Missing(HeaderName::To))?;
            NameAddr::parse(v).map_err(|_| ParseError::Invalid(HeaderName::To))
        })
    }
    /// Every Contact value of every Contact header, in order.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'a>, ParseError>> + '_ {
        self.list(HeaderName::Contact).map(Contact::parse)
    }
    /// Every Record-Route value, in order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.list(HeaderName::RecordRoute)
            .map(|v| NameAddr::parse(v).map_err(|_| ParseError::Invalid(HeaderName::RecordRoute)))
    }
    /// Every Route value, in order.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.list(HeaderName::Route).map(|v| NameAddr::parse(v).map_err(|_| ParseError::Invalid(HeaderName::Route)))
    }
    pub fn referred_by(&self) -> Option<Result<NameAddr<'a>, ParseError>> {
        self.name_addr_opt(HeaderName::ReferredBy)
    }
    pub fn refer_to(&self) -> Option<Result<NameAddr<'a>, ParseError>> {
        self.name_addr_opt(HeaderName::ReferTo)
    }
    fn name_addr_opt(&self, name: HeaderName) -> Option<Result<NameAddr<'a>, ParseError>> {
        self.header(name).map(|v| NameAddr::parse(v).map_err(|_| ParseError::Invalid(name)))
    }
    pub fn max_forwards(&self) -> Option<Result<u32, ParseError>> {
        self.u32_opt(HeaderName::MaxForwards)
    }
    pub fn expires(&self) -> Option<Result<u32, ParseError>> {
        self.u32_opt(HeaderName::Expires)
    }
    pub fn content_length(&self) -> Option<Result<u32, ParseError>> {
        self.u32_opt(HeaderName::ContentLength)
    }
    fn u32_opt(&self, name: HeaderName) -> Option<Result<u32, ParseError>> {
        self.header(name).map(|v| parse_u32(v).ok_or(ParseError::Invalid(name)))
    }
    /// The whole Content-Type value (media type and its parameters).
    pub fn content_type(&self) -> Option<&'a [u8]> {
        self.header(HeaderName::ContentType)
    }
    /// The event-type token of the Event header (before any `;`); `None`
    /// when the header is absent or the token is empty.
    pub fn event(&self) -> Option<&'a [u8]> {
        let v = self.header(HeaderName::Event)?;
        let tok = trim(&v[..memchr(b';', v).unwrap_or(v.len())]);
        (!tok.is_empty()).then_some(tok)
    }
    /// A parameter of the Event header (`id` for REFER subscriptions).
    pub fn event_param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        let v = self.header(HeaderName::Event)?;
        let semi = memchr(b';', v)?;
        find_param(&v[semi..], name)
    }
}

impl fmt::Debug for SipMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipMessage")
            .field("start", &self.start)
            .field("headers", &self.headers())
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl ParseError {
    /// A short phrase for the reason phrase of a 400 response.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::StartLine => "Bad Request Line",
            ParseError::RequestUri => "Bad Request-URI",
            ParseError::Version => "Bad SIP Version",
            ParseError::StatusCode => "Bad Status Code",
            ParseError::HeaderLine => "Bad Header Line",
            ParseError::TooManyHeaders => "Too Many Headers",
            ParseError::Incomplete => "Incomplete Message",
            ParseError::Missing(h) => h.missing_reason(),
            ParseError::Invalid(h) => h.invalid_reason(),
            ParseError::BodyTruncated => "Body shorter than Content-Length",
            ParseError::Duplicate(h) => h.duplicate_reason().unwrap_or("Duplicate header"),
        }
    }

    /// The status and reason phrase a request that failed to parse with
    /// this error is answered with, when [`SipMessage::parse_in`] kept it:
    /// 505 for an unsupported SIP version (RFC 3261 §21.5.5),
    /// else 400 naming the bad part (§8.1.3.2, §18.3 for a datagram shorter
    /// than its Content-Length).
    pub fn answer(&self) -> (u16, &'static str) {
        match self {
            ParseError::Version => (505, "Version Not Supported"),
            e => (400, e.reason()),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ParseError {}

impl<'a> CSeq<'a> {
    /// `1*DIGIT LWS Method`.
    pub fn parse(raw: &'a [u8]) -> Result<CSeq<'a>, ParseError> {
        let err = ParseError::Invalid(HeaderName::CSeq);
        let s = trim(raw);
        let (seq, n) = parse_digits_u32(s).ok_or(err)?;
        let i = skip_lws(s, n);
        if i == n {
            return Err(err);
        }
        let method = &s[i..];
        if method.is_empty() || !method.iter().all(|&b| TOKEN[usize::from(b)]) {
            return Err(err);
        }
        Ok(CSeq { seq, method: Method::from_bytes(method) })
    }
}

impl<'a> Uri<'a> {
    /// Parses a `sip:`, `sips:` or `tel:` URI (scheme case-insensitive), or
    /// any other absolute URI (RFC 3261 §19.1.1, `isbn:…`, `http://…`).
    ///
    /// For `tel:` the number is in `user`, `host` is empty and `params` are
    /// the tel parameters. Another scheme has only `scheme` and `raw`; its
    /// `host` is empty ([`Uri::is_sip`] tells the schemes apart). An IPv6
    /// host keeps its brackets.
    pub fn parse(raw: &'a [u8]) -> Result<Uri<'a>, ParseError> {
        parse_uri(raw).ok_or(ParseError::RequestUri)
    }
    /// A `;name[=value]` URI parameter, name case-insensitive;
    /// `Some(None)` when it has no value.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }
    /// A `sip:` or `sips:` URI.
    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"sip") || self.scheme.eq_ignore_ascii_case(b"sips")
    }
    /// A scheme sipark can serve a request for: SIP, SIPS or tel (§8.2.2.1:
    /// any other is answered 416).
    pub fn is_supported(&self) -> bool {
        self.is_sip() || self.scheme.eq_ignore_ascii_case(b"tel")
    }
}

impl<'a> NameAddr<'a> {
    /// Parses `"Display" <uri>;params`, `Display <uri>;params`, `<uri>` or a
    /// bare `addr-spec;params` (whose parameters are header parameters,
    /// RFC 3261 §20.10). The error names [`HeaderName::Other`]; the
    /// message accessors name the header instead.
    pub fn parse(raw: &'a [u8]) -> Result<NameAddr<'a>, ParseError> {
        parse_name_addr(raw).ok_or(ParseError::Invalid(HeaderName::Other))
    }
    /// The `tag` header parameter.
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.param(b"tag").flatten()
    }
    /// A header parameter, name case-insensitive; `Some(None)` when it has
    /// no value. Quoted values keep their quotes.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        find_param(self.params, name)
    }
}

impl<'a> Contact<'a> {
    /// `*` or a name-addr / addr-spec with parameters.
    pub fn parse(raw: &'a [u8]) -> Result<Contact<'a>, ParseError> {
        let s = trim(raw);
        if s == b"*" {
            return Ok(Contact::Star);
        }
        parse_name_addr(s).map(Contact::Addr).ok_or(ParseError::Invalid(HeaderName::Contact))
    }
}

impl<'a> Via<'a> {
    /// Parses one Via value: `SIP / 2.0 / transport sent-by *(; param)`.
    pub fn parse(raw: &'a [u8]) -> Result<Via<'a>, ParseError> {
        parse_via(raw).ok_or(ParseError::Invalid(HeaderName::Via))
    }
    /// Any Via parameter, name case-insensitive; `Some(None)` when it has
    /// no value.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        // The sent-by cannot hold a ';', so the first one starts the params.
        let semi = memchr(b';', self.raw)?;
        find_param(&self.raw[semi..], name)
    }
}

mod canonical;
mod header;
mod names;
use canonical::*;
use header::*;
use names::expand_other_compact;

#[cfg(test)]
mod tests;
