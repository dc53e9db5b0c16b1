//! Character classes, lexing helpers and the typed header parsers behind
//! [`super::SipMessage`]'s accessors (URI, name-addr, Via, parameters).

use super::*;

// ---------------------------------------------------------------------------
// Character classes.

/// RFC 3261 `token` characters.
pub(super) static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        i += 1;
    }
    t
};

/// Bytes that may appear unescaped somewhere in a SIP/tel URI (visible
/// ASCII except the delimiters that never do; `#` is tolerated in the user
/// part as many phones send it).
pub(super) static URI_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 0x7f {
        t[i] = !matches!(i as u8, b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}');
        i += 1;
    }
    t
};

/// Bytes of a Request-URI as the start line delimits it: above space, but
/// DEL.
static REQUEST_URI_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 256 {
        t[i] = i != 0x7f;
        i += 1;
    }
    t
};

/// Visible ASCII (0x21 to 0x7e): the bytes of a Call-ID.
pub(super) static VISIBLE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 0x7f {
        t[i] = true;
        i += 1;
    }
    t
};

/// Characters of a hostname or IPv4 address.
pub(super) static HOST_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        i += 1;
    }
    t
};

/// Characters of an unquoted parameter value: visible ASCII but the
/// delimiters `"`, `,`, `<` and `>`.
pub(super) static PARAM_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x21;
    while i < 0x7f {
        t[i] = !matches!(i as u8, b'"' | b',' | b'<' | b'>');
        i += 1;
    }
    t
};

/// Linear white space as typed parsers see it (folding included).
#[inline]
pub(super) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[inline]
pub(super) fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b, rest @ ..] = s
        && is_lws(*b)
    {
        s = rest;
    }
    s
}

#[inline]
pub(super) fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b] = s
        && is_lws(*b)
    {
        s = rest;
    }
    s
}

#[inline]
pub(super) fn trim(s: &[u8]) -> &[u8] {
    trim_end(trim_start(s))
}

/// First index at or after `i` that is not LWS.
#[inline]
pub(super) fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    i
}

/// A non-empty run of token characters starting at `*i`.
pub(super) fn take_token<'a>(s: &'a [u8], i: &mut usize) -> Option<&'a [u8]> {
    let start = *i;
    while *i < s.len() && TOKEN[usize::from(s[*i])] {
        *i += 1;
    }
    (*i > start).then(|| &s[start..*i])
}

/// Index of the `"` closing a quoted string whose body starts at `from`
/// (`\` escapes the next byte).
pub(super) fn quote_end(s: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let i = from + memchr2(b'"', b'\\', s.get(from..)?)?;
        if s[i] == b'"' {
            return Some(i);
        }
        from = i + 2;
    }
}

/// Leading decimal digits of `s` as a u32 (overflow is `None`), with the
/// number of digits consumed.
pub(super) fn parse_digits_u32(s: &[u8]) -> Option<(u32, usize)> {
    let mut v: u32 = 0;
    let mut n = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// A whole (LWS-trimmed) value that is a decimal u32.
pub(super) fn parse_u32(s: &[u8]) -> Option<u32> {
    let s = trim(s);
    match parse_digits_u32(s)? {
        (v, n) if n == s.len() => Some(v),
        _ => None,
    }
}

/// Leading port number of `s` (1 to 5 digits, at most 65535).
pub(super) fn parse_port(s: &[u8]) -> Option<(u16, usize)> {
    let mut v: u32 = 0;
    let mut n = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            break;
        }
        if n == 5 {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
        n += 1;
    }
    if n == 0 {
        return None;
    }
    Some((u16::try_from(v).ok()?, n))
}

/// Leading host of `s`: `[IPv6]` (brackets kept) or a hostname / IPv4
/// address. Returns the host and its length.
pub(super) fn parse_host(s: &[u8]) -> Option<(&[u8], usize)> {
    if s.first() == Some(&b'[') {
        let close = memchr(b']', s)?;
        let inner = &s[1..close];
        if inner.is_empty()
            || !inner.contains(&b':')
            || !inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        return Some((&s[..=close], close + 1));
    }
    let n = s.iter().position(|&b| !HOST_CHAR[usize::from(b)]).unwrap_or(s.len());
    (n > 0).then(|| (&s[..n], n))
}

// ---------------------------------------------------------------------------
// Start line.

/// The start line, and what is wrong with a request line that can still be
/// read (the request is answered with it once its headers are read): an
/// unsupported SIP version, a Request-URI with white space in it (RFC 4475
/// lwsruri, lwsstart) or none.
pub(super) fn parse_start_line(line: &[u8]) -> Result<(StartLine<'_>, Option<ParseError>), ParseError> {
    let line = trim_end(line);
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let sp = memchr(b' ', line).unwrap_or(line.len());
        if !line[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::Version);
        }
        let rest = line.get(sp + 1..).unwrap_or(b"");
        let code = rest.get(..3).ok_or(ParseError::StatusCode)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::StatusCode);
        }
        let reason = match rest.get(3) {
            None => &rest[3..],
            Some(b' ') => &rest[4..],
            Some(_) => return Err(ParseError::StatusCode),
        };
        let code = code.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&code) {
            return Err(ParseError::StatusCode);
        }
        return Ok((StartLine::Response { code, reason }, None));
    }
    let sp1 = memchr(b' ', line).ok_or(ParseError::StartLine)?;
    let method = &line[..sp1];
    if method.is_empty() || !all_in(&TOKEN, method) {
        return Err(ParseError::StartLine);
    }
    // The version is the last word; the Request-URI is what lies between.
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memrchr(b' ', rest).ok_or(ParseError::StartLine)?;
    let (uri, version) = (&rest[..sp2], &rest[sp2 + 1..]);
    let defect = if version.eq_ignore_ascii_case(b"SIP/2.0") {
        None
    } else if version.len() > 4
        && version[..4].eq_ignore_ascii_case(b"SIP/")
        && version[4..].iter().all(|&b| b.is_ascii_digit() || b == b'.')
    {
        Some(ParseError::Version)
    } else {
        return Err(ParseError::Version);
    };
    // A space, a control byte or DEL spoils the Request-URI.
    let defect = defect.or((uri.is_empty() || !all_in(&REQUEST_URI_CHAR, uri)).then_some(ParseError::RequestUri));
    Ok((StartLine::Request { method: Method::from_bytes(method), uri }, defect))
}

// ---------------------------------------------------------------------------
// Lists and parameters.

/// Splits a header value at commas that are outside quoted strings and
/// `<...>`; yields trimmed elements (an empty value yields one empty
/// element, which the element parsers reject).
pub(super) struct CommaSplit<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> CommaSplit<'a> {
    pub(super) fn new(value: &'a [u8]) -> Self {
        CommaSplit { rest: Some(value) }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        // Most values are one element: with no comma at all there is
        // nothing to split, whatever quotes or brackets they hold.
        if memchr(b',', s).is_none() {
            self.rest = None;
            return Some(trim(s));
        }
        let mut i = 0;
        let mut in_angle = false;
        while i < s.len() {
            match s[i] {
                b'"' if !in_angle => match quote_end(s, i + 1) {
                    Some(q) => i = q,
                    None => i = s.len(),
                },
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(trim(&s[..i]));
                }
                _ => {}
            }
            i += 1;
        }
        self.rest = None;
        Some(trim(s))
    }
}

/// Iterates `;name[=value]` parameters (names and values trimmed; empty
/// segments skipped; `;` inside quoted strings does not split).
pub(super) struct Params<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Params<'a> {
    fn new(s: &'a [u8]) -> Self {
        Params { s, i: 0 }
    }
}

/// Bits 7 of each byte of `x` that equals `b`, and possibly of bytes
/// after the first such byte (the lowest one set is always exact).
#[inline]
fn bytes_eq(x: u64, b: u8) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let y = x ^ (ONES * u64::from(b));
    y.wrapping_sub(ONES) & !y & (ONES << 7)
}

/// The end of a header name from `i`: the first control character, SP or
/// `:` (none is a token character), eight bytes a step. Any other byte
/// that is not a token character is left in the name, for its
/// classification to find ([`SipMessage::parse`]).
#[inline]
pub(super) fn name_end(s: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    while let Some(chunk) = s.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Bytes below 0x21 (exact up to the first: a borrow only reaches
        // the bytes above it), and colons.
        let hit = (x.wrapping_sub(ONES * 0x21) & !x & (ONES << 7)) | bytes_eq(x, b':');
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < s.len() && s[i] > b' ' && s[i] != b':' {
        i += 1;
    }
    i
}

/// The first index at or after `j` of a `;`, `=` or `"` in `s`, or its
/// length: eight bytes a step, as parameters are short and a call into a
/// SIMD search costs more than it saves.
#[inline]
pub(super) fn param_stop(s: &[u8], mut j: usize) -> usize {
    while let Some(chunk) = s.get(j..j + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let hit = bytes_eq(x, b';') | bytes_eq(x, b'=') | bytes_eq(x, b'"');
        if hit != 0 {
            return j + (hit.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    while j < s.len() && !matches!(s[j], b';' | b'=' | b'"') {
        j += 1;
    }
    j
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s;
        loop {
            if self.i >= s.len() {
                return None;
            }
            // One pass to the segment's end, noting its first `=` (a `;` or
            // `=` inside a quoted string does not count).
            let start = self.i;
            let mut j = start;
            let mut eq = None;
            let end = loop {
                j = param_stop(s, j);
                match s.get(j) {
                    None => break s.len(),
                    Some(b'=') => {
                        eq.get_or_insert(j);
                        j += 1;
                    }
                    Some(b'"') => match quote_end(s, j + 1) {
                        Some(q) => j = q + 1,
                        None => break s.len(),
                    },
                    Some(_) => break j,
                }
            };
            self.i = end + 1;
            let seg = trim(&s[start..end]);
            if seg.is_empty() {
                continue;
            }
            return Some(match eq {
                Some(e) => (trim(&s[start..e]), Some(trim(&s[e + 1..end]))),
                None => (seg, None),
            });
        }
    }
}

pub(super) fn find_param<'a>(params: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    Params::new(params).find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// A parameter value: a complete quoted string, or a non-empty run of
/// visible ASCII without delimiters.
pub(super) fn param_value_ok(v: &[u8]) -> bool {
    match v.first() {
        None => false,
        Some(b'"') => quote_end(v, 1) == Some(v.len() - 1),
        Some(_) => all_in(&PARAM_CHAR, v),
    }
}

/// Header parameters: empty, or starting with `;`, with token names and
/// valid values.
pub(super) fn header_params_ok(s: &[u8]) -> bool {
    if !s.is_empty() && s[0] != b';' {
        return false;
    }
    Params::new(s).all(|(n, v)| param_ok(n, v))
}

/// One header parameter: a token name and an optional valid value.
pub(super) fn param_ok(name: &[u8], value: Option<&[u8]>) -> bool {
    !name.is_empty() && all_in(&TOKEN, name) && value.is_none_or(param_value_ok)
}

// ---------------------------------------------------------------------------
// URI, name-addr, Via.

pub(super) fn parse_uri(raw: &[u8]) -> Option<Uri<'_>> {
    uri_canonical(raw).or_else(|| uri_general(raw))
}

/// Any SIP, SIPS or tel URI, or any other absolute URI (its scheme and
/// its whole text only).
pub(super) fn uri_general(raw: &[u8]) -> Option<Uri<'_>> {
    if raw.is_empty() || !all_in(&URI_CHAR, raw) {
        return None;
    }
    // Every escape is `%` HEX HEX.
    for p in memchr::memchr_iter(b'%', raw) {
        match raw.get(p + 1..p + 3) {
            Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {}
            _ => return None,
        }
    }
    let colon = memchr(b':', raw)?;
    let scheme = &raw[..colon];
    let rest = &raw[colon + 1..];
    if scheme.eq_ignore_ascii_case(b"tel") {
        let semi = memchr(b';', rest).unwrap_or(rest.len());
        let number = &rest[..semi];
        let digits = number.strip_prefix(b"+").unwrap_or(number);
        if digits.is_empty()
            || !digits
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || matches!(b, b'*' | b'#' | b'-' | b'.' | b'(' | b')' | b'%'))
        {
            return None;
        }
        let params = &rest[semi..];
        if !uri_params_ok(params) {
            return None;
        }
        return Some(Uri { scheme, user: Some(number), host: &rest[..0], port: None, params, headers: None, raw });
    }
    if !(scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips")) {
        // Another scheme (RFC 3261 §19.1.1 absoluteURI): kept whole, for a
        // layer to refuse (416 in a Request-URI, §8.2.2.1) or to carry.
        let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok || rest.is_empty() {
            return None;
        }
        return Some(Uri { scheme, user: None, host: &rest[..0], port: None, params: &rest[..0], headers: None, raw });
    }
    let (user, hp) = match memchr(b'@', rest) {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = &userinfo[..memchr(b':', userinfo).unwrap_or(userinfo.len())];
            if user.is_empty() {
                return None;
            }
            (Some(user), &rest[at + 1..])
        }
        None => (None, rest),
    };
    let (host, mut i) = parse_host(hp)?;
    let mut port = None;
    if hp.get(i) == Some(&b':') {
        let (p, n) = parse_port(&hp[i + 1..])?;
        port = Some(p);
        i += 1 + n;
    }
    let tail = &hp[i..];
    let (params, headers) = match tail.first() {
        None => (tail, None),
        Some(b';') => match memchr(b'?', tail) {
            Some(q) => (&tail[..q], Some(&tail[q + 1..])),
            None => (tail, None),
        },
        Some(b'?') => (&tail[..0], Some(&tail[1..])),
        Some(_) => return None,
    };
    if !uri_params_ok(params) {
        return None;
    }
    Some(Uri { scheme, user, host, port, params, headers, raw })
}

/// URI parameters (characters already checked): non-empty names, and a
/// non-empty value after any `=`.
pub(super) fn uri_params_ok(s: &[u8]) -> bool {
    Params::new(s).all(|(n, v)| !n.is_empty() && v.is_none_or(|v| !v.is_empty()))
}

pub(super) fn parse_name_addr(raw: &[u8]) -> Option<NameAddr<'_>> {
    name_addr_canonical(raw).or_else(|| name_addr_general(raw))
}

/// Any name-addr or addr-spec with header parameters.
pub(super) fn name_addr_general(raw: &[u8]) -> Option<NameAddr<'_>> {
    let s = trim(raw);
    let (display, lt) = if s.first() == Some(&b'"') {
        let close = quote_end(s, 1)?;
        let lt = skip_lws(s, close + 1);
        if s.get(lt) != Some(&b'<') {
            return None;
        }
        (Some(trim(&s[1..close])), Some(lt))
    } else {
        match memchr2(b'<', b':', s) {
            Some(i) if s[i] == b'<' => {
                let d = trim(&s[..i]);
                if d.iter().any(|&b| (b < 0x20 && !is_lws(b)) || b == 0x7f) {
                    return None;
                }
                (Some(d), Some(i))
            }
            _ => (None, None),
        }
    };
    let (uri, params) = match lt {
        Some(lt) => {
            let gt = lt + 1 + memchr(b'>', &s[lt + 1..])?;
            (trim(&s[lt + 1..gt]), trim(&s[gt + 1..]))
        }
        None => {
            let semi = memchr(b';', s).unwrap_or(s.len());
            (trim(&s[..semi]), &s[semi..])
        }
    };
    if !header_params_ok(params) {
        return None;
    }
    Some(NameAddr { display: display.filter(|d| !d.is_empty()), uri: parse_uri(uri)?, params, raw: s })
}

pub(super) fn parse_via(raw: &[u8]) -> Option<Via<'_>> {
    via_canonical(raw).or_else(|| via_general(raw))
}

/// The end of the run of `class` bytes in `s` from `i`: eight bytes a
/// step while all eight are in it (as [`all_in`]), then a byte at a time.
#[inline]
pub(super) fn run(class: &[bool; 256], s: &[u8], mut i: usize) -> usize {
    while let Some(c) = s.get(i..i + 8)
        && c.iter().fold(true, |ok, &b| ok & class[usize::from(b)])
    {
        i += 8;
    }
    while i < s.len() && class[usize::from(s[i])] {
        i += 1;
    }
    i
}

/// Any Via (RFC 3261 §20.42, white space and quoted values included).
pub(super) fn via_general(raw: &[u8]) -> Option<Via<'_>> {
    let s = trim(raw);
    let mut i = 0;
    let proto = take_token(s, &mut i)?;
    if !proto.eq_ignore_ascii_case(b"SIP") {
        return None;
    }
    let slash = |i: &mut usize| -> Option<()> {
        let j = skip_lws(s, *i);
        (s.get(j) == Some(&b'/')).then(|| *i = skip_lws(s, j + 1))
    };
    slash(&mut i)?;
    if take_token(s, &mut i)? != b"2.0" {
        return None;
    }
    slash(&mut i)?;
    let transport = take_token(s, &mut i)?;
    let j = skip_lws(s, i);
    if j == i {
        return None;
    }
    let (host, n) = parse_host(&s[j..])?;
    i = j + n;
    let mut port = None;
    let j = skip_lws(s, i);
    if s.get(j) == Some(&b':') {
        let k = skip_lws(s, j + 1);
        let (p, n) = parse_port(&s[k..])?;
        port = Some(p);
        i = k + n;
    }
    let params = trim_start(&s[i..]);
    if !params.is_empty() && params[0] != b';' {
        return None;
    }
    let (mut branch, mut received, mut rport) = (None, None, None);
    for (name, value) in Params::new(params) {
        if !param_ok(name, value) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"branch") {
            if branch.is_none() {
                branch = Some(value?);
            }
        } else if name.eq_ignore_ascii_case(b"received") {
            if received.is_none() {
                received = Some(value?);
            }
        } else if name.eq_ignore_ascii_case(b"rport") && rport.is_none() {
            rport = Some(match value {
                None => None,
                Some(v) => match parse_port(v)? {
                    (p, n) if n == v.len() => Some(p),
                    _ => return None,
                },
            });
        }
    }
    Some(Via { transport, host, port, branch, received, rport, raw: s })
}
