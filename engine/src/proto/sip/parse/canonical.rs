//! The canonical readers: the forms of a Via, a URI and a name-addr that
//! nearly every element writes, each read in one pass. A canonical reader
//! either declines (`None`), and the general reader in `header` decides,
//! or returns what the general reader would (tests in `tests.rs` hold
//! them together). See ADR 0002's addendum.

use super::*;

/// A hostname or IPv4 address from `h` (an IPv6 reference declines) and
/// an optional `:port` right after it; the end of both.
#[inline(always)]
fn host_port(s: &[u8], h: usize) -> Option<(&[u8], Option<u16>, usize)> {
    let h_end = run(&HOST_CHAR, s, h);
    if h_end == h {
        return None;
    }
    if s.get(h_end) != Some(&b':') {
        return Some((&s[h..h_end], None, h_end));
    }
    let (port, n) = parse_port(&s[h_end + 1..])?;
    Some((&s[h..h_end], Some(port), h_end + 1 + n))
}

/// Parameter value characters but `;`: an unquoted value up to the next
/// parameter.
static PARAM_VALUE_RUN: [bool; 256] = {
    let mut t = PARAM_CHAR;
    t[b';' as usize] = false;
    t
};

/// URI characters but `@ : ; ? % =`: the user or host of a canonical URI.
static USER_RUN: [bool; 256] = {
    let mut t = URI_CHAR;
    t[b'@' as usize] = false;
    t[b':' as usize] = false;
    t[b';' as usize] = false;
    t[b'?' as usize] = false;
    t[b'%' as usize] = false;
    t[b'=' as usize] = false;
    t
};

/// URI characters but `@ ; ? % =`: a URI parameter's name or value.
static URI_PARAM_RUN: [bool; 256] = {
    let mut t = USER_RUN;
    t[b':' as usize] = true;
    t
};

/// One canonical parameter, `;name[=value]` with a non-empty name of
/// `name` bytes and, after `=`, a non-empty value of `value` bytes, read
/// from `*i` (moved past it). `Ok(None)` at the end of `s`; `Err(())` when
/// what follows is anything else (white space, quotes, an empty name...),
/// which only the general reader may decide on.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn canonical_param<'a>(
    s: &'a [u8],
    i: &mut usize,
    name: &[bool; 256],
    value: &[bool; 256],
) -> Result<Option<(&'a [u8], Option<&'a [u8]>)>, ()> {
    if *i >= s.len() {
        return Ok(None);
    }
    if s[*i] != b';' {
        return Err(());
    }
    let n = *i + 1;
    let n_end = run(name, s, n);
    if n_end == n {
        return Err(());
    }
    let (v, end) = if s.get(n_end) == Some(&b'=') {
        let v = n_end + 1;
        let v_end = run(value, s, v);
        if v_end == v {
            return Err(());
        }
        (Some(&s[v..v_end]), v_end)
    } else {
        (None, n_end)
    };
    if end < s.len() && s[end] != b';' {
        return Err(());
    }
    *i = end;
    Ok(Some((&s[n..n_end], v)))
}

/// Header parameters in the canonical form (token names, unquoted values,
/// no white space) from `i` to the end of `s`: `None` when they are
/// anything else (the general reader decides then).
fn canonical_params(s: &[u8], mut i: usize) -> Option<()> {
    while canonical_param(s, &mut i, &TOKEN, &PARAM_VALUE_RUN).ok()?.is_some() {}
    Some(())
}

/// A `sip:`/`sips:` URI in the form nearly every element writes, read in
/// one pass: `[user@]host[:port][;name[=value]]...` with no escapes, no
/// password, no IPv6 reference and no `?headers`. `None` for anything
/// else, which [`uri_general`] then reads; what this accepts, it reads as
/// that does (a test holds them together).
pub(super) fn uri_canonical(raw: &[u8]) -> Option<Uri<'_>> {
    let colon = match raw.get(..5)? {
        [s, i, p, b':', _] if [*s, *i, *p].eq_ignore_ascii_case(b"sip") => 3,
        [s, i, p, ss, b':'] if [*s, *i, *p, *ss].eq_ignore_ascii_case(b"sips") => 4,
        _ => return None,
    };
    let start = colon + 1;
    let a = run(&USER_RUN, raw, start);
    let (user, h) = if raw.get(a) == Some(&b'@') {
        if a == start {
            return None;
        }
        (Some(&raw[start..a]), a + 1)
    } else {
        (None, start)
    };
    let (host, port, mut i) = host_port(raw, h)?;
    let params = &raw[i..];
    while canonical_param(raw, &mut i, &URI_PARAM_RUN, &URI_PARAM_RUN).ok()?.is_some() {}
    Some(Uri { scheme: &raw[..colon], user, host, port, params, headers: None, raw })
}

/// A name-addr in the form nearly every element writes, read in one pass:
/// `<uri>` or `"display" <uri>` (no escapes in the display name), then
/// canonical header parameters, with a canonical URI ([`uri_canonical`])
/// and no white space but the one space. `None` for anything else, which
/// [`name_addr_general`] then reads; what this accepts, it reads as that
/// does (a test holds them together).
pub(super) fn name_addr_canonical(s: &[u8]) -> Option<NameAddr<'_>> {
    let (display, lt) = match s.first()? {
        b'<' => (None, 0),
        b'"' => {
            let close = 1 + memchr2(b'"', b'\\', &s[1..])?;
            if s[close] != b'"' {
                return None;
            }
            let lt = match s.get(close + 1..close + 3)? {
                [b'<', _] => close + 1,
                [b' ', b'<'] => close + 2,
                _ => return None,
            };
            (Some(trim(&s[1..close])), lt)
        }
        _ => return None,
    };
    let gt = run(&URI_CHAR, s, lt + 1);
    if s.get(gt) != Some(&b'>') {
        return None;
    }
    let uri = uri_canonical(&s[lt + 1..gt])?;
    canonical_params(s, gt + 1)?;
    Some(NameAddr { display: display.filter(|d| !d.is_empty()), uri, params: &s[gt + 1..], raw: s })
}

/// A Via in the form nearly every element writes, read in one pass:
/// `SIP/2.0/<transport> <host>[:<port>]` and `;name[=value]` parameters,
/// with no white space beyond the one space, no quoted strings and no IPv6
/// reference. `None` for anything else, which [`via_general`] then reads;
/// what this accepts, it reads as that does (a test holds them together).
pub(super) fn via_canonical(s: &[u8]) -> Option<Via<'_>> {
    let prefix = s.get(..8)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(prefix);
    // The three letters lowercased, the rest compared as they are.
    if u64::from_le_bytes(word) | 0x20_2020 != u64::from_le_bytes(*b"sip/2.0/") {
        return None;
    }
    let t_end = run(&TOKEN, s, 8);
    if t_end == 8 || s.get(t_end) != Some(&b' ') {
        return None;
    }
    let (host, port, mut i) = host_port(s, t_end + 1)?;
    let (mut branch, mut received, mut rport) = (None, None, None);
    while let Some((name, value)) = canonical_param(s, &mut i, &TOKEN, &PARAM_VALUE_RUN).ok()? {
        match name.len() {
            6 if branch.is_none() && name.eq_ignore_ascii_case(b"branch") => branch = Some(value?),
            8 if received.is_none() && name.eq_ignore_ascii_case(b"received") => received = Some(value?),
            5 if rport.is_none() && name.eq_ignore_ascii_case(b"rport") => {
                rport = Some(match value {
                    None => None,
                    Some(v) => match parse_port(v)? {
                        (p, n) if n == v.len() => Some(p),
                        _ => return None,
                    },
                });
            }
            _ => {}
        }
    }
    let transport = &s[8..t_end];
    Some(Via { transport, host, port, branch, received, rport, raw: s })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sip::find::assert_finds_the_first_stop;

    #[test]
    fn name_end_finds_the_first_control_space_or_colon_from_every_offset() {
        // Next to the stops, the bytes just below and above them, and high
        // bytes (0x80+, which stay in the name for the token check).
        let stops = [0u8, b'\t', b'\n', b'\r', 0x1f, b' ', b':'];
        let is_stop = |b: u8| b <= b' ' || b == b':';
        assert_finds_the_first_stop(40, b"Ab-!~\x80\xa1\xff;9", &stops, (b':', 2), name_end, is_stop);
    }

    #[test]
    fn param_stop_finds_the_first_separator_from_every_offset() {
        // Next to bytes one bit away from the separators (`:`, `<`, `>`,
        // `#`, 0x80+).
        let is_stop = |b: u8| matches!(b, b';' | b'=' | b'"');
        assert_finds_the_first_stop(40, b"ab:<>#\xbb\xbd\xa2z", b";=\"", (b';', 3), param_stop, is_stop);
    }

    #[test]
    fn all_in_and_run_agree_with_a_byte_at_a_time_check() {
        for len in 0..30 {
            for bad in 0..=len {
                let mut s = vec![b'a'; len];
                if bad < len {
                    s[bad] = b'<';
                }
                for class in [&TOKEN, &URI_CHAR, &PARAM_CHAR] {
                    assert_eq!(all_in(class, &s), s.iter().all(|&b| class[usize::from(b)]), "{len} {bad}");
                    for from in 0..=len {
                        let naive = (from..len).find(|&i| !class[usize::from(s[i])]).unwrap_or(len);
                        assert_eq!(run(class, &s, from), naive, "{len} {bad} {from}");
                    }
                }
            }
        }
    }

    /// Every one-byte insertion into and deletion from each of `bases`.
    fn mutations(bases: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for base in bases {
            cases.push(base.to_vec());
            for i in 0..=base.len() {
                for b in [
                    b' ', b'\t', b';', b'=', b'"', b':', b'@', b'?', b'%', b'[', b'<', b'>', b'\\', b',', b'A', b'0',
                    0x80,
                ] {
                    let mut v = base.to_vec();
                    v.insert(i, b);
                    cases.push(v);
                }
                if i < base.len() {
                    let mut v = base.to_vec();
                    v.remove(i);
                    cases.push(v);
                }
            }
        }
        cases
    }

    /// Reads every mutation of `bases` both ways: `same` gives `None` where
    /// the canonical reader declines, else whether the general reader gave
    /// the same, which it must. Returns how many were accepted, and of how
    /// many.
    fn agree(bases: &[&[u8]], same: impl Fn(&[u8]) -> Option<bool>) -> (usize, usize) {
        let cases = mutations(bases);
        let mut accepted = 0;
        for c in &cases {
            if let Some(same) = same(c) {
                accepted += 1;
                assert!(same, "{:?}", String::from_utf8_lossy(c));
            }
        }
        (accepted, cases.len())
    }

    #[test]
    fn a_canonical_via_reads_as_the_general_reader_reads_it() {
        let vias: &[&[u8]] = &[
            b"SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-p0.1;rport",
            b"sip/2.0/tcp host.example;branch=z9hG4bKa;received=192.0.2.7;rport=6000",
            b"SIP/2.0/TLS h:5061;rport=1;branch=z9hG4bKb;branch=x;rport=2;received=a;received=b",
            b"SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKx;received=2001:db8::7;rport=1;ttl=16",
            b"SIP/2.0/UDP h;maddr=a=b;x;branch=\"q;x\"",
            b"SIP / 2.0 / UDP h ; branch = z9hG4bK1",
            b"SIP/2.0/UDP h:65536;branch=z9hG4bK2",
            b"SIP/2.0/UDP h;rport=x",
            b"SIP/2.0/UDP h;branch",
        ];
        let (accepted, of) = agree(vias, |c| via_canonical(c).map(|v| Some(v) == via_general(c)));
        assert!(accepted > of / 10, "{accepted} of {of} read the canonical way");
        assert!(vias[..3].iter().all(|v| via_canonical(v).is_some()));
    }

    #[test]
    fn a_canonical_uri_reads_as_the_general_reader_reads_it() {
        let uris: &[&[u8]] = &[
            b"sip:101@acme.example",
            b"SIPS:alice@10.0.0.1:5061;transport=tls;lr",
            b"sip:proxy.example;lr;maddr=192.0.2.1:5060",
            b"sip:host;x=a@b",
            b"sip:a%20b@h",
            b"sip:u:pw@h;a=b=c;;d",
            b"sip:[2001:db8::1]:5060",
            b"sip:h?subject=x",
            b"tel:+1-201-555-0123;phone-context=x",
            b"sip:*68103@t63.load.example",
        ];
        let (accepted, of) = agree(uris, |c| uri_canonical(c).map(|u| Some(u) == uri_general(c)));
        assert!(accepted > of / 10, "{accepted} of {of}");
        assert!(uris[..3].iter().all(|u| uri_canonical(u).is_some()));
    }

    #[test]
    fn a_canonical_name_addr_reads_as_the_general_reader_reads_it() {
        let name_addrs: &[&[u8]] = &[
            b"<sip:pk0@t63.load.example>;tag=p0.1",
            b"\"Alice\" <sip:alice@acme.example;user=phone>;tag=a1;x",
            b"\"\"<sip:a@h>",
            b"\"A \\\"q\\\"\" <sip:a@h>",
            b"Bob <sip:bob@h>;tag=b",
            b"sip:bare@h;tag=t",
            b"<sip:a@h>;p=\"quoted;value\"",
            b"  <sip:a@h> ; tag = 1 ",
            b"<sip:a@h;lr>;expires=3600;q=0.5;+sip.instance=\"<urn:uuid:1>\"",
        ];
        let (accepted, of) = agree(name_addrs, |c| name_addr_canonical(c).map(|n| Some(n) == name_addr_general(c)));
        assert!(accepted > of / 10, "{accepted} of {of}");
        assert!(name_addrs[..2].iter().all(|n| name_addr_canonical(n).is_some()));
    }
}
