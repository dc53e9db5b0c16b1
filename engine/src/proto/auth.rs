//! SIP digest authentication, server side (RFC 3261 §22, RFC 7616, RFC 8760).
//!
//! Sans-IO: the caller passes the Unix time in seconds, the header values
//! and a random salt per challenge; nothing here reads a clock.
//!
//! * [`Authenticator::challenges`] makes the two challenge values a 401
//!   carries in `WWW-Authenticate` (or a 407 in `Proxy-Authenticate`):
//!   SHA-256 first, then MD5 (RFC 8760 §2.4), both `qop="auth"`.
//! * [`Authenticator::verify`] checks one `Authorization` (or
//!   `Proxy-Authorization`) value against a [`Request`] and answers a
//!   [`Verdict`].
//!
//! Nonces are stateless: `hex(issued || salt || HMAC-SHA256(secret, label
//! || issued || salt || realm)[..16])`, with `issued` the Unix seconds and
//! `salt` a random number, 8 big-endian bytes each, so that every challenge
//! has a nonce of its own. A nonce is accepted for
//! [`Authenticator::validity`] after it was issued, by any `Authenticator`
//! with the same secret. What a nonce was used for is kept apart, in the
//! caller's [`NonceCounts`] (ADR 0019): a nonce answers at most one wrong
//! response, and a nonce count is accepted once.
//!
//! Only `qop=auth` is accepted: no RFC 2069 answers without `qop`, no
//! `auth-int`, no `-sess` algorithms, no `userhash`, no `username*`.
//!
//! [`response`] and [`authorization`] compute the client side; the unit
//! tests and the shard's tests use them to answer challenges.

mod nonces;

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

pub use self::nonces::{NonceCounts, NonceId, Reuse};
use super::sip::parse::Uri;

/// Longest credentials value [`Authenticator::verify`] reads; longer is
/// [`Verdict::Malformed`].
pub const MAX_VALUE_LEN: usize = 4096;
/// Most `name=value` parameters in a credentials value.
pub const MAX_PARAMS: usize = 16;
/// How far in the future a nonce's issue time may be (clock steps, or
/// another node sharing the secret with a clock slightly ahead).
pub const FUTURE_SLACK_SECS: u64 = 5;

/// Domain separation for the nonce HMAC, so the secret may not be mistaken
/// for a key of anything else.
const NONCE_LABEL: &[u8] = b"sipark digest nonce v2\0";
/// Bytes of the HMAC kept in a nonce.
const NONCE_TAG_LEN: usize = 16;
/// Bytes of a nonce before it is written in hex: issue time, salt, tag.
const NONCE_RAW_LEN: usize = 8 + 8 + NONCE_TAG_LEN;
/// A nonce is `hex(8-byte issue time || 8-byte salt || tag)`.
pub const NONCE_HEX_LEN: usize = 2 * NONCE_RAW_LEN;
/// The longest digest output (SHA-256).
const MAX_HASH_LEN: usize = 32;

/// A digest algorithm (RFC 7616 §3.3, RFC 8760 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5`, the RFC 3261 default when `algorithm` is absent.
    Md5,
    /// `SHA-256` (RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token as written in headers.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm` token, case-insensitively. `-sess` variants and
    /// `SHA-512-256` are not supported and give `None`.
    pub fn from_token(token: &[u8]) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case(b"MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case(b"SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Length of the hash output in bytes.
    fn output_len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha256 => 32,
        }
    }
}

/// What [`Authenticator::verify`] decided, and what the shard does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are good; the username as sent (unescaped). The
    /// caller still checks that this user may act as the From user.
    Ok(Vec<u8>),
    /// The nonce expired (or was issued in the future): challenge again
    /// with `stale=true`, so the client retries without asking its user.
    /// The digest is not checked (RFC 7616 §3.3 asks only that the nonce
    /// be invalid), so an old nonce is no oracle for guessing.
    Stale,
    /// The nonce was not issued by this secret for this realm (forged,
    /// issued before a restart with a new secret, or another tenant's):
    /// challenge again without `stale`.
    UnknownNonce,
    /// The nonce is authentic and fresh but may not be used again
    /// ([`NonceCounts`]): challenge again without `stale`. Not checked.
    Reused(Reuse),
    /// `password_of` refused to look the user up ([`Lookup::Refused`]):
    /// nothing was checked and the nonce is untouched (403).
    Refused,
    /// The user exists but the response does not match: wrong password,
    /// or the credentials were computed for another method or URI (403).
    /// The username as sent.
    WrongPassword(Vec<u8>),
    /// `password_of` knows no such user (the shard answers as for
    /// [`Verdict::WrongPassword`], so users cannot be enumerated).
    UnknownUser,
    /// The credentials name another realm: challenge for this one.
    WrongRealm,
    /// The value cannot be used; the reason fits a 400 reason phrase.
    Malformed(&'static str),
}

/// What the caller of [`Authenticator::verify`] says about a username.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'p> {
    /// The user's password.
    Password(&'p [u8]),
    /// No such user.
    Unknown,
    /// Do not check credentials of this user now (it is locked out for
    /// this source, ADR 0019).
    Refused,
}

/// The request the credentials must be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method, e.g. `b"REGISTER"` (case-sensitive, as in the request line).
    pub method: &'a [u8],
    /// The Request-URI; the credentials' `uri` must name the same resource
    /// (same scheme, user, host and port; parameters are not compared).
    pub uri: &'a [u8],
    /// The protection realm: the tenant domain, byte for byte as challenged.
    pub realm: &'a [u8],
}

/// Issues and checks digest challenges with stateless HMAC nonces.
#[derive(Clone)]
pub struct Authenticator {
    /// HMAC-SHA256 keyed with the secret, cloned for each nonce.
    mac: Hmac<Sha256>,
    validity: Duration,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").field("validity", &self.validity).finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator whose nonces are keyed with `secret` and accepted
    /// for `validity` after they are issued (whole seconds count).
    ///
    /// Every shard of a process should share one secret; a new secret (a
    /// restart) turns outstanding nonces into [`Verdict::UnknownNonce`].
    pub fn new(secret: [u8; 32], validity: Duration) -> Authenticator {
        // HMAC takes keys of any length, so this never fails.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&secret).expect("HMAC accepts a 32-byte key");
        Authenticator { mac, validity }
    }

    /// How long a nonce is accepted after it is issued.
    pub fn validity(&self) -> Duration {
        self.validity
    }

    /// The two challenge values for `realm` at `now_unix` seconds, SHA-256
    /// first: `Digest realm="…", nonce="…", algorithm=SHA-256, qop="auth"`
    /// (then `, stale=true` when `stale`). Both carry the same nonce, made
    /// unique by `salt` (a random number from the caller). The caller
    /// writes each as its own `WWW-Authenticate` header (401) or
    /// `Proxy-Authenticate` header (407).
    pub fn challenges(&self, realm: &[u8], now_unix: u64, salt: u64, stale: bool) -> [Vec<u8>; 2] {
        let nonce = self.nonce(realm, NonceId { issued: now_unix, salt });
        [Algorithm::Sha256, Algorithm::Md5].map(|alg| {
            let mut v = Vec::with_capacity(100 + realm.len());
            v.extend_from_slice(b"Digest realm=");
            push_quoted(&mut v, realm);
            v.extend_from_slice(b", nonce=\"");
            v.extend_from_slice(&nonce);
            v.extend_from_slice(b"\", algorithm=");
            v.extend_from_slice(alg.token().as_bytes());
            v.extend_from_slice(b", qop=\"auth\"");
            if stale {
                v.extend_from_slice(b", stale=true");
            }
            v
        })
    }

    /// Checks one `Authorization` / `Proxy-Authorization` value for `req`
    /// at `now_unix` seconds, in this order: the form, the realm and `uri`,
    /// the nonce (authentic, then fresh: else [`Verdict::Stale`]), what
    /// `nonces` knows of it ([`Verdict::Reused`]), then the user
    /// (`password_of`, called at most once and only this far), and only
    /// then the digest. A wrong digest spends the nonce in `nonces`, a right
    /// one records its nonce count.
    ///
    /// A request may carry several credentials (one per realm); the caller
    /// tries each and skips those answering [`Verdict::WrongRealm`].
    pub fn verify<'p>(
        &self,
        value: &[u8],
        req: &Request<'_>,
        now_unix: u64,
        nonces: &mut NonceCounts,
        password_of: impl FnOnce(&[u8]) -> Lookup<'p>,
    ) -> Verdict {
        let creds = match Credentials::parse(value) {
            Ok(c) => c,
            Err(reason) => return Verdict::Malformed(reason),
        };
        if *creds.realm != *req.realm {
            return Verdict::WrongRealm;
        }
        if !same_resource(&creds.uri, req.uri) {
            return Verdict::Malformed("Digest uri is not the Request-URI");
        }
        let Some(id) = self.check_nonce(&creds.nonce, req.realm) else {
            return Verdict::UnknownNonce;
        };
        let age_ok = now_unix.saturating_sub(id.issued) <= self.validity.as_secs();
        let future_ok = id.issued <= now_unix.saturating_add(FUTURE_SLACK_SECS);
        if !(age_ok && future_ok) {
            return Verdict::Stale;
        }
        let mut nc = [0u8; 4];
        if !hex_decode(creds.nc, &mut nc) {
            return Verdict::Malformed("Digest nc must be 8 hex digits");
        }
        let nc = u32::from_be_bytes(nc);
        if let Err(r) = nonces.check(id, nc) {
            return Verdict::Reused(r);
        }
        let mut input = DigestInput {
            username: &creds.username,
            realm: req.realm,
            password: b"",
            method: req.method,
            uri: &creds.uri,
            nonce: &creds.nonce,
            nc: creds.nc,
            cnonce: &creds.cnonce,
            qop: creds.qop,
        };
        let password = match password_of(&creds.username) {
            Lookup::Password(p) => p,
            Lookup::Refused => return Verdict::Refused,
            Lookup::Unknown => {
                // Spend about the same work as for a known user.
                let _ = std::hint::black_box(digest(creds.algorithm, &input));
                nonces.failed(id, now_unix);
                return Verdict::UnknownUser;
            }
        };
        input.password = password;
        let expected = digest(creds.algorithm, &input);
        if !ct_eq(expected.as_slice(), creds.response.as_slice()) {
            nonces.failed(id, now_unix);
            return Verdict::WrongPassword(creds.username.into_owned());
        }
        nonces.accepted(id, nc, now_unix);
        Verdict::Ok(creds.username.into_owned())
    }

    /// The nonce `id` for `realm`: [`NONCE_HEX_LEN`] lowercase hex digits.
    fn nonce(&self, realm: &[u8], id: NonceId) -> [u8; NONCE_HEX_LEN] {
        let tag = self.nonce_mac(realm, id).finalize().into_bytes();
        let mut raw = [0u8; NONCE_RAW_LEN];
        raw[..8].copy_from_slice(&id.issued.to_be_bytes());
        raw[8..16].copy_from_slice(&id.salt.to_be_bytes());
        raw[16..].copy_from_slice(&tag[..NONCE_TAG_LEN]);
        let mut out = [0u8; NONCE_HEX_LEN];
        hex_into(&raw, &mut out);
        out
    }

    fn nonce_mac(&self, realm: &[u8], id: NonceId) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(NONCE_LABEL);
        mac.update(&id.issued.to_be_bytes());
        mac.update(&id.salt.to_be_bytes());
        mac.update(realm);
        mac
    }

    /// The issue time and salt of `nonce` if this secret made it for `realm`.
    fn check_nonce(&self, nonce: &[u8], realm: &[u8]) -> Option<NonceId> {
        if nonce.len() != NONCE_HEX_LEN || !nonce.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut raw = [0u8; NONCE_RAW_LEN];
        if !hex_decode(nonce, &mut raw) {
            return None;
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&raw[at..at + 8]);
            u64::from_be_bytes(w)
        };
        let id = NonceId { issued: word(0), salt: word(8) };
        // Constant-time comparison of the truncated tag.
        self.nonce_mac(realm, id).verify_truncated_left(&raw[16..]).ok()?;
        Some(id)
    }
}

/// The inputs of one digest response (RFC 7616 §3.4.1, `qop=auth`).
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    /// The username, unescaped.
    pub username: &'a [u8],
    /// The realm, unescaped.
    pub realm: &'a [u8],
    /// The password in clear.
    pub password: &'a [u8],
    /// The request method, e.g. `b"INVITE"`.
    pub method: &'a [u8],
    /// The `uri` parameter (digest-uri).
    pub uri: &'a [u8],
    /// The server's nonce.
    pub nonce: &'a [u8],
    /// The nonce count, 8 hex digits as sent, e.g. `b"00000001"`.
    pub nc: &'a [u8],
    /// The client's nonce, unescaped.
    pub cnonce: &'a [u8],
    /// `b"auth"` (as sent).
    pub qop: &'a [u8],
}

/// The `response` value for `input`, in lowercase hex:
/// `H(H(username:realm:password):nonce:nc:cnonce:qop:H(method:uri))`.
pub fn response(alg: Algorithm, input: &DigestInput<'_>) -> String {
    let h = digest(alg, input);
    let mut out = [0u8; 2 * MAX_HASH_LEN];
    let hex = hex_into(h.as_slice(), &mut out);
    hex.iter().map(|&b| char::from(b)).collect()
}

/// A client's `Authorization` value answering with `input` and `alg`
/// (`username`, `realm` and `uri` are quoted, `algorithm`, `qop` and `nc`
/// are tokens; `response` is last). For tests and tools; sipark itself is
/// never challenged.
pub fn authorization(alg: Algorithm, input: &DigestInput<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(b"Digest username=");
    push_quoted(&mut v, input.username);
    v.extend_from_slice(b", realm=");
    push_quoted(&mut v, input.realm);
    v.extend_from_slice(b", nonce=");
    push_quoted(&mut v, input.nonce);
    v.extend_from_slice(b", uri=");
    push_quoted(&mut v, input.uri);
    v.extend_from_slice(b", algorithm=");
    v.extend_from_slice(alg.token().as_bytes());
    v.extend_from_slice(b", qop=");
    v.extend_from_slice(input.qop);
    v.extend_from_slice(b", nc=");
    v.extend_from_slice(input.nc);
    v.extend_from_slice(b", cnonce=");
    push_quoted(&mut v, input.cnonce);
    v.extend_from_slice(b", response=\"");
    v.extend_from_slice(response(alg, input).as_bytes());
    v.push(b'"');
    v
}

/// A hash output, up to [`MAX_HASH_LEN`] bytes.
#[derive(Clone, Copy)]
struct Hash {
    buf: [u8; MAX_HASH_LEN],
    len: usize,
}

impl Hash {
    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// H over `parts` joined with `:`.
fn hash_joined<D: Digest>(parts: &[&[u8]]) -> Hash {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p);
    }
    let out = d.finalize();
    let mut h = Hash { buf: [0; MAX_HASH_LEN], len: out.len().min(MAX_HASH_LEN) };
    h.buf[..h.len].copy_from_slice(&out[..h.len]);
    h
}

fn digest_with<D: Digest>(i: &DigestInput<'_>) -> Hash {
    let mut ha1 = [0u8; 2 * MAX_HASH_LEN];
    let ha1 = hex_into(hash_joined::<D>(&[i.username, i.realm, i.password]).as_slice(), &mut ha1);
    let mut ha2 = [0u8; 2 * MAX_HASH_LEN];
    let ha2 = hex_into(hash_joined::<D>(&[i.method, i.uri]).as_slice(), &mut ha2);
    hash_joined::<D>(&[ha1, i.nonce, i.nc, i.cnonce, i.qop, ha2])
}

fn digest(alg: Algorithm, input: &DigestInput<'_>) -> Hash {
    match alg {
        Algorithm::Md5 => digest_with::<Md5>(input),
        Algorithm::Sha256 => digest_with::<Sha256>(input),
    }
}

/// Equality whose time does not depend on where the slices differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out` and returns the written part.
fn hex_into<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o [u8] {
    let n = bytes.len().min(out.len() / 2);
    for (i, b) in bytes[..n].iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    &out[..2 * n]
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex (either case) of exactly `2 * out.len()` digits.
fn hex_decode(hex: &[u8], out: &mut [u8]) -> bool {
    if hex.len() != 2 * out.len() {
        return false;
    }
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        match (hex_val(pair[0]), hex_val(pair[1])) {
            (Some(h), Some(l)) => *o = (h << 4) | l,
            _ => return false,
        }
    }
    true
}

/// Appends `s` as a quoted-string, escaping `"` and `\`.
fn push_quoted(v: &mut Vec<u8>, s: &[u8]) {
    v.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            v.push(b'\\');
        }
        v.push(b);
    }
    v.push(b'"');
}

/// Whether the credentials' `uri` names the Request-URI's resource: same
/// scheme, user, host and port for SIP/tel URIs, else the same bytes.
fn same_resource(digest_uri: &[u8], request_uri: &[u8]) -> bool {
    match (Uri::parse(digest_uri), Uri::parse(request_uri)) {
        (Ok(a), Ok(b)) => {
            a.scheme.eq_ignore_ascii_case(b.scheme)
                && a.user == b.user
                && a.host.eq_ignore_ascii_case(b.host)
                && a.port == b.port
        }
        _ => digest_uri == request_uri,
    }
}

/// The parameters of a `Digest` credentials value that [`Authenticator::verify`]
/// uses, checked for presence and form.
struct Credentials<'a> {
    username: Cow<'a, [u8]>,
    realm: Cow<'a, [u8]>,
    nonce: Cow<'a, [u8]>,
    uri: Cow<'a, [u8]>,
    response: Hash,
    algorithm: Algorithm,
    cnonce: Cow<'a, [u8]>,
    nc: &'a [u8],
    qop: &'a [u8],
}

/// One parsed parameter value: a token, or a quoted-string (unescaped).
struct Param<'a> {
    name: &'a [u8],
    value: Cow<'a, [u8]>,
    quoted: bool,
}

impl<'a> Credentials<'a> {
    fn parse(value: &'a [u8]) -> Result<Credentials<'a>, &'static str> {
        if value.len() > MAX_VALUE_LEN {
            return Err("Digest credentials too long");
        }
        let params = parse_params(value)?;
        let get = |name: &[u8]| params.iter().find(|p| p.name.eq_ignore_ascii_case(name));
        let need = |name: &[u8], reason: &'static str| get(name).map(|p| p.value.clone()).ok_or(reason);

        if get(b"userhash").is_some_and(|p| p.value.eq_ignore_ascii_case(b"true")) {
            return Err("Digest userhash is not supported");
        }
        let username = need(b"username", "Digest credentials lack a username")?;
        let realm = need(b"realm", "Digest credentials lack a realm")?;
        let nonce = need(b"nonce", "Digest credentials lack a nonce")?;
        let uri = need(b"uri", "Digest credentials lack a uri")?;
        let response = get(b"response").ok_or("Digest credentials lack a response")?;
        let qop = get(b"qop").ok_or("Digest qop=auth is required")?;
        // qop is a token in credentials; some clients quote it anyway.
        let qop = match &qop.value {
            Cow::Borrowed(q) if q.eq_ignore_ascii_case(b"auth") => *q,
            _ => return Err("Digest qop must be auth"),
        };
        let nc = match get(b"nc").map(|p| (&p.value, p.quoted)) {
            Some((Cow::Borrowed(nc), false)) if nc.len() == 8 && nc.iter().all(u8::is_ascii_hexdigit) => *nc,
            Some(_) => return Err("Digest nc must be 8 hex digits"),
            None => return Err("Digest credentials lack nc"),
        };
        let cnonce = need(b"cnonce", "Digest credentials lack a cnonce")?;
        if cnonce.is_empty() {
            return Err("Digest cnonce is empty");
        }
        let algorithm = match get(b"algorithm") {
            None => Algorithm::Md5,
            Some(p) => Algorithm::from_token(&p.value).ok_or("Digest algorithm not supported")?,
        };
        let mut hash = Hash { buf: [0; MAX_HASH_LEN], len: algorithm.output_len() };
        if !hex_decode(&response.value, &mut hash.buf[..hash.len]) {
            return Err("Digest response is not a hash");
        }
        Ok(Credentials { username, realm, nonce, uri, response: hash, algorithm, cnonce, nc, qop })
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 `token` characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while s.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// The auth-scheme token a credentials value starts with, and where it ends.
fn scheme(value: &[u8]) -> (&[u8], usize) {
    let start = skip_ws(value, 0);
    let end = start + value[start..].iter().take_while(|&&b| is_token(b)).count();
    (&value[start..end], end)
}

/// Whether an `Authorization` value is of the Digest scheme. Credentials of
/// another scheme are none to sipark: the request is challenged (RFC 4475
/// regaut01), where [`Authenticator::verify`] would call them malformed.
pub fn is_digest(value: &[u8]) -> bool {
    scheme(value).0.eq_ignore_ascii_case(b"Digest")
}

/// Parses `Digest name=value, …`: at most [`MAX_PARAMS`] parameters, no
/// name twice (case-insensitively), values tokens or quoted-strings.
fn parse_params(value: &[u8]) -> Result<Vec<Param<'_>>, &'static str> {
    let s = value;
    let (name, mut i) = scheme(s);
    if !name.eq_ignore_ascii_case(b"Digest") {
        return Err("Not Digest credentials");
    }
    if !s.get(i).copied().is_some_and(is_ws) {
        return Err("Digest credentials are empty");
    }
    let mut params: Vec<Param<'_>> = Vec::with_capacity(10);
    loop {
        // Empty list elements (`, ,`) are allowed, as in RFC 7230 §7.
        i = skip_ws(s, i);
        while s.get(i) == Some(&b',') {
            i = skip_ws(s, i + 1);
        }
        if i >= s.len() {
            break;
        }
        let name_start = i;
        while s.get(i).copied().is_some_and(is_token) {
            i += 1;
        }
        let name = &s[name_start..i];
        if name.is_empty() {
            return Err("Digest parameter name expected");
        }
        i = skip_ws(s, i);
        if s.get(i) != Some(&b'=') {
            return Err("Digest parameter without a value");
        }
        i = skip_ws(s, i + 1);
        let (value, quoted) = if s.get(i) == Some(&b'"') {
            let (v, next) = quoted_string(s, i + 1)?;
            i = next;
            (v, true)
        } else {
            let start = i;
            while s.get(i).copied().is_some_and(is_token) {
                i += 1;
            }
            if i == start {
                return Err("Digest parameter value expected");
            }
            (Cow::Borrowed(&s[start..i]), false)
        };
        if params.iter().any(|p| p.name.eq_ignore_ascii_case(name)) {
            return Err("Digest parameter repeated");
        }
        if params.len() == MAX_PARAMS {
            return Err("Too many Digest parameters");
        }
        params.push(Param { name, value, quoted });
        i = skip_ws(s, i);
        match s.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err("Digest parameters must be separated by commas"),
        }
    }
    Ok(params)
}

/// A quoted-string body starting at `i` (just after the opening quote):
/// its unescaped value and the index after the closing quote.
fn quoted_string(s: &[u8], start: usize) -> Result<(Cow<'_, [u8]>, usize), &'static str> {
    let mut i = start;
    let mut owned: Option<Vec<u8>> = None;
    loop {
        match s.get(i) {
            None => return Err("Digest quoted-string not closed"),
            Some(b'"') => {
                let v = match owned {
                    Some(v) => Cow::Owned(v),
                    None => Cow::Borrowed(&s[start..i]),
                };
                return Ok((v, i + 1));
            }
            Some(b'\\') => {
                let Some(&c) = s.get(i + 1) else {
                    return Err("Digest quoted-string not closed");
                };
                if c == b'\r' || c == b'\n' {
                    return Err("Digest quoted-string has a control character");
                }
                owned.get_or_insert_with(|| s[start..i].to_vec()).push(c);
                i += 2;
            }
            Some(&c) => {
                if (c < 0x20 && c != b'\t') || c == 0x7f {
                    return Err("Digest quoted-string has a control character");
                }
                if let Some(v) = owned.as_mut() {
                    v.push(c);
                }
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];
    const NOW: u64 = 1_750_000_000;
    const REALM: &[u8] = b"acme.example";

    fn auth() -> Authenticator {
        Authenticator::new(SECRET, Duration::from_secs(300))
    }

    fn req<'a>(method: &'a [u8], uri: &'a [u8]) -> Request<'a> {
        Request { method, uri, realm: REALM }
    }

    /// The `nonce` of a challenge value, as a client reads it.
    fn nonce_of(challenge: &[u8]) -> Vec<u8> {
        let params = parse_params(challenge).unwrap_or_else(|e| panic!("challenge does not parse: {e}"));
        let p = params.iter().find(|p| p.name == b"nonce").unwrap_or_else(|| panic!("no nonce in challenge"));
        p.value.to_vec()
    }

    fn input<'a>(nonce: &'a [u8], password: &'a [u8], method: &'a [u8], uri: &'a [u8]) -> DigestInput<'a> {
        DigestInput {
            username: b"103",
            realm: REALM,
            password,
            method,
            uri,
            nonce,
            nc: b"00000001",
            cnonce: b"0a4f113b",
            qop: b"auth",
        }
    }

    fn passwords(user: &[u8]) -> Lookup<'static> {
        match user {
            b"103" => Lookup::Password(b"s3cret"),
            b"104" => Lookup::Password(b"other"),
            b"105" => Lookup::Refused,
            _ => Lookup::Unknown,
        }
    }

    fn counts() -> NonceCounts {
        NonceCounts::new(100, Duration::from_secs(300), crate::proto::ids::Seed::from_u64(3).hasher(1))
    }

    /// A client answer to a fresh challenge from `a` at `issued`.
    fn answer(a: &Authenticator, alg: Algorithm, issued: u64, password: &[u8], method: &[u8]) -> Vec<u8> {
        let [sha, md5] = a.challenges(REALM, issued, 42, false);
        let nonce = nonce_of(if alg == Algorithm::Sha256 { &sha } else { &md5 });
        authorization(alg, &input(&nonce, password, method, b"sip:park@acme.example"))
    }

    /// `value` checked with a table of its own (no earlier use).
    fn check(a: &Authenticator, value: &[u8], method: &[u8], now: u64) -> Verdict {
        a.verify(value, &req(method, b"sip:park@acme.example"), now, &mut counts(), passwords)
    }

    fn wrong(user: &[u8]) -> Verdict {
        Verdict::WrongPassword(user.to_vec())
    }

    fn rfc7616(nonce: &'static [u8]) -> DigestInput<'static> {
        DigestInput {
            username: b"Mufasa",
            realm: b"http-auth@example.org",
            password: b"Circle of Life",
            method: b"GET",
            uri: b"/dir/index.html",
            nonce,
            nc: b"00000001",
            cnonce: b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            qop: b"auth",
        }
    }

    #[test]
    fn rfc7616_section_3_9_1_vectors() {
        let i = rfc7616(b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v");
        assert_eq!(response(Algorithm::Md5, &i), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(response(Algorithm::Sha256, &i), "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
    }

    #[test]
    fn rfc7616_header_parses() {
        // The SHA-256 Authorization of RFC 7616 §3.9.1, folded as printed.
        let v = b"Digest username=\"Mufasa\",\r\n realm=\"http-auth@example.org\",\r\n uri=\"/dir/index.html\",\r\n \
algorithm=SHA-256,\r\n nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n nc=00000001,\r\n \
cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n qop=auth,\r\n \
response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\",\r\n \
opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let c = Credentials::parse(v).unwrap_or_else(|e| panic!("RFC example refused: {e}"));
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(&*c.username, b"Mufasa");
        assert_eq!(c.nc, b"00000001");
        assert_eq!(&*c.uri, b"/dir/index.html");
        let i = DigestInput { nonce: &c.nonce, cnonce: &c.cnonce, ..rfc7616(b"") };
        assert!(ct_eq(digest(c.algorithm, &i).as_slice(), c.response.as_slice()), "RFC response does not match");
    }

    #[test]
    fn challenges_sha256_first_then_md5() {
        let a = auth();
        let [sha, md5] = a.challenges(REALM, NOW, 1, false);
        let sha = String::from_utf8(sha).unwrap_or_else(|e| panic!("not UTF-8: {e}"));
        let md5 = String::from_utf8(md5).unwrap_or_else(|e| panic!("not UTF-8: {e}"));
        let nonce = String::from_utf8(nonce_of(sha.as_bytes())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(nonce.len(), NONCE_HEX_LEN);
        assert_eq!(sha, format!("Digest realm=\"acme.example\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth\""));
        assert_eq!(md5, format!("Digest realm=\"acme.example\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\""));
        let [sha_stale, md5_stale] = a.challenges(REALM, NOW, 1, true);
        assert!(sha_stale.ends_with(b", qop=\"auth\", stale=true"), "{}", String::from_utf8_lossy(&sha_stale));
        assert!(md5_stale.ends_with(b", stale=true"), "{}", String::from_utf8_lossy(&md5_stale));
        // Another second, salt or realm: another nonce.
        assert_ne!(nonce_of(&a.challenges(REALM, NOW + 1, 1, false)[0]), nonce.as_bytes());
        assert_ne!(nonce_of(&a.challenges(REALM, NOW, 2, false)[0]), nonce.as_bytes());
        assert_ne!(nonce_of(&a.challenges(b"beta.example", NOW, 1, false)[0]), nonce.as_bytes());
        // A realm with quotes is escaped.
        let [odd, _] = a.challenges(b"a\"b\\c", NOW, 1, false);
        assert!(odd.starts_with(b"Digest realm=\"a\\\"b\\\\c\", nonce=\""), "{}", String::from_utf8_lossy(&odd));
    }

    #[test]
    fn round_trip_both_algorithms() {
        let a = auth();
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let v = answer(&a, alg, NOW, b"s3cret", b"REGISTER");
            assert_eq!(check(&a, &v, b"REGISTER", NOW), Verdict::Ok(b"103".to_vec()), "{alg:?}");
            assert_eq!(check(&a, &v, b"REGISTER", NOW + 300), Verdict::Ok(b"103".to_vec()), "{alg:?} at the edge");
            // Another Authenticator with the same secret accepts it too (another shard).
            let b = Authenticator::new(SECRET, Duration::from_secs(300));
            assert_eq!(check(&b, &v, b"REGISTER", NOW + 1), Verdict::Ok(b"103".to_vec()), "{alg:?}");
        }
    }

    #[test]
    fn wrong_password_user_method_uri() {
        let a = auth();
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let v = answer(&a, alg, NOW, b"wrong", b"INVITE");
            assert_eq!(check(&a, &v, b"INVITE", NOW), wrong(b"103"), "{alg:?}");
            // Computed for REGISTER, presented with an INVITE.
            let v = answer(&a, alg, NOW, b"s3cret", b"REGISTER");
            assert_eq!(check(&a, &v, b"INVITE", NOW), wrong(b"103"), "{alg:?}");
            // Another user's password.
            let v = answer(&a, alg, NOW, b"other", b"INVITE");
            assert_eq!(check(&a, &v, b"INVITE", NOW), wrong(b"103"), "{alg:?}");
            // Unknown user.
            let nonce = nonce_of(&a.challenges(REALM, NOW, 1, false)[0]);
            let i = DigestInput { username: b"999", ..input(&nonce, b"x", b"INVITE", b"sip:park@acme.example") };
            assert_eq!(check(&a, &authorization(alg, &i), b"INVITE", NOW), Verdict::UnknownUser, "{alg:?}");
            // A user the caller refuses to look up: nothing is checked.
            let i = DigestInput { username: b"105", ..input(&nonce, b"x", b"INVITE", b"sip:park@acme.example") };
            assert_eq!(check(&a, &authorization(alg, &i), b"INVITE", NOW), Verdict::Refused, "{alg:?}");
        }
        // The uri must be the Request-URI's resource; parameters do not count.
        let nonce = nonce_of(&a.challenges(REALM, NOW, 1, false)[0]);
        let v = authorization(Algorithm::Sha256, &input(&nonce, b"s3cret", b"INVITE", b"sip:park@acme.example"));
        let ok = Verdict::Ok(b"103".to_vec());
        let at = |uri: &'static [u8]| a.verify(&v, &req(b"INVITE", uri), NOW, &mut counts(), passwords);
        assert_eq!(at(b"sip:park@ACME.example;transport=udp"), ok);
        assert_eq!(at(b"sip:retrieve@acme.example"), Verdict::Malformed("Digest uri is not the Request-URI"));
        assert_eq!(at(b"sip:park@acme.example:5070"), Verdict::Malformed("Digest uri is not the Request-URI"));
    }

    #[test]
    fn nonces_from_elsewhere_are_unknown() {
        let a = auth();
        let other = Authenticator::new([8; 32], Duration::from_secs(300));
        let v = answer(&other, Algorithm::Sha256, NOW, b"s3cret", b"REGISTER");
        assert_eq!(check(&a, &v, b"REGISTER", NOW), Verdict::UnknownNonce);
        // Issued for another tenant's realm, presented with this realm.
        let foreign = nonce_of(&a.challenges(b"beta.example", NOW, 1, false)[0]);
        let v = authorization(Algorithm::Sha256, &input(&foreign, b"s3cret", b"REGISTER", b"sip:park@acme.example"));
        assert_eq!(check(&a, &v, b"REGISTER", NOW), Verdict::UnknownNonce);
        // A tampered issue time (to extend the validity), salt or tag.
        let good = nonce_of(&a.challenges(REALM, NOW, 1, false)[0]);
        for pos in [0, 15, 16, 31, 32, 63] {
            let mut n = good.clone();
            n[pos] = if n[pos] == b'0' { b'1' } else { b'0' };
            let v = authorization(Algorithm::Md5, &input(&n, b"s3cret", b"REGISTER", b"sip:park@acme.example"));
            assert_eq!(check(&a, &v, b"REGISTER", NOW), Verdict::UnknownNonce, "byte {pos}");
        }
        // Not hex, wrong length, uppercase.
        let upper = good.to_ascii_uppercase();
        for n in [&b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"[..], &good[..63], &good[..48], &upper] {
            let v = authorization(Algorithm::Md5, &input(n, b"s3cret", b"REGISTER", b"sip:park@acme.example"));
            assert_eq!(check(&a, &v, b"REGISTER", NOW), Verdict::UnknownNonce, "{}", String::from_utf8_lossy(n));
        }
    }

    #[test]
    fn expired_and_future_nonces_are_stale() {
        let a = auth();
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let v = answer(&a, alg, NOW, b"s3cret", b"INVITE");
            assert_eq!(check(&a, &v, b"INVITE", NOW + 301), Verdict::Stale, "{alg:?}");
            assert_eq!(check(&a, &v, b"INVITE", NOW + 1_000_000), Verdict::Stale, "{alg:?}");
            // Issued "in the future" beyond the slack (a clock stepped back).
            assert_eq!(check(&a, &v, b"INVITE", NOW - FUTURE_SLACK_SECS - 1), Verdict::Stale, "{alg:?}");
            assert_eq!(check(&a, &v, b"INVITE", NOW - FUTURE_SLACK_SECS), Verdict::Ok(b"103".to_vec()));
            // An expired nonce is stale whatever the digest: it is not
            // checked, so an old nonce is no oracle (ADR 0019).
            let bad = answer(&a, alg, NOW, b"wrong", b"INVITE");
            assert_eq!(check(&a, &bad, b"INVITE", NOW), wrong(b"103"), "{alg:?}");
            assert_eq!(check(&a, &bad, b"INVITE", NOW + 301), Verdict::Stale, "{alg:?}");
        }
        // Extremes of the clock do not overflow.
        let v = answer(&a, Algorithm::Sha256, u64::MAX, b"s3cret", b"INVITE");
        assert_eq!(check(&a, &v, b"INVITE", u64::MAX), Verdict::Ok(b"103".to_vec()));
        assert_eq!(check(&a, &v, b"INVITE", 0), Verdict::Stale);
        let v = answer(&a, Algorithm::Sha256, 0, b"s3cret", b"INVITE");
        assert_eq!(check(&a, &v, b"INVITE", u64::MAX), Verdict::Stale);
    }

    #[test]
    fn a_nonce_answers_one_wrong_response_and_each_count_once() {
        let a = auth();
        let mut counts = counts();
        let uri: &[u8] = b"sip:park@acme.example";
        let mut verify = |value: &[u8], lookups: &mut u32| {
            a.verify(value, &req(b"INVITE", uri), NOW, &mut counts, |u| {
                *lookups += 1;
                passwords(u)
            })
        };
        let nonce = nonce_of(&a.challenges(REALM, NOW, 7, false)[0]);
        let with = |nc: &'static [u8], pw: &'static [u8]| {
            authorization(Algorithm::Md5, &DigestInput { nc, ..input(&nonce, pw, b"INVITE", uri) })
        };
        let mut lookups = 0;
        assert_eq!(verify(&with(b"00000001", b"s3cret"), &mut lookups), Verdict::Ok(b"103".to_vec()));
        // The same count again (a replay), or a lower one: not checked.
        assert_eq!(verify(&with(b"00000001", b"s3cret"), &mut lookups), Verdict::Reused(Reuse::Replayed));
        assert_eq!(verify(&with(b"00000002", b"s3cret"), &mut lookups), Verdict::Ok(b"103".to_vec()));
        assert_eq!(lookups, 2, "a replay looks nothing up");
        // One wrong response spends the nonce, even for the right password.
        assert_eq!(verify(&with(b"00000003", b"guess"), &mut lookups), wrong(b"103"));
        assert_eq!(verify(&with(b"00000004", b"s3cret"), &mut lookups), Verdict::Reused(Reuse::Spent));
        assert_eq!(verify(&with(b"00000005", b"guess2"), &mut lookups), Verdict::Reused(Reuse::Spent));
        assert_eq!(lookups, 3);
        // An unknown user spends a nonce too; a refused one does not.
        let other = nonce_of(&a.challenges(REALM, NOW, 8, false)[0]);
        let as_user = |user: &'static [u8], nc: &'static [u8]| {
            authorization(
                Algorithm::Md5,
                &DigestInput { username: user, nc, ..input(&other, b"s3cret", b"INVITE", uri) },
            )
        };
        assert_eq!(verify(&as_user(b"105", b"00000001"), &mut lookups), Verdict::Refused);
        assert_eq!(verify(&as_user(b"103", b"00000001"), &mut lookups), Verdict::Ok(b"103".to_vec()));
        assert_eq!(verify(&as_user(b"999", b"00000002"), &mut lookups), Verdict::UnknownUser);
        assert_eq!(verify(&as_user(b"103", b"00000003"), &mut lookups), Verdict::Reused(Reuse::Spent));
        // A first use with count 0 is not a count.
        let third = nonce_of(&a.challenges(REALM, NOW, 9, false)[0]);
        let zero =
            authorization(Algorithm::Md5, &DigestInput { nc: b"00000000", ..input(&third, b"s3cret", b"INVITE", uri) });
        assert_eq!(verify(&zero, &mut lookups), Verdict::Reused(Reuse::Replayed));
    }

    #[test]
    fn realm_must_match() {
        let a = auth();
        let nonce = nonce_of(&a.challenges(REALM, NOW, 1, false)[0]);
        let i = DigestInput { realm: b"beta.example", ..input(&nonce, b"s3cret", b"INVITE", b"sip:park@acme.example") };
        let v = authorization(Algorithm::Sha256, &i);
        assert_eq!(check(&a, &v, b"INVITE", NOW), Verdict::WrongRealm);
        // Realms are compared byte for byte, as challenged.
        let i = DigestInput { realm: b"ACME.example", ..i };
        assert_eq!(check(&a, &authorization(Algorithm::Sha256, &i), b"INVITE", NOW), Verdict::WrongRealm);
    }

    /// A valid SHA-256 answer, hand-written so each parameter can be varied.
    fn valid_value(a: &Authenticator) -> (Vec<u8>, String) {
        let nonce = nonce_of(&a.challenges(REALM, NOW, 1, false)[0]);
        let i = input(&nonce, b"s3cret", b"INVITE", b"sip:park@acme.example");
        let resp = response(Algorithm::Sha256, &i);
        let nonce = String::from_utf8(nonce).unwrap_or_else(|e| panic!("{e}"));
        (nonce.into_bytes(), resp)
    }

    #[test]
    fn syntax_variants() {
        let a = auth();
        let (nonce, resp) = valid_value(&a);
        let nonce = String::from_utf8(nonce).unwrap_or_else(|e| panic!("{e}"));
        let ok = Verdict::Ok(b"103".to_vec());
        let v = |s: String| check(&a, s.as_bytes(), b"INVITE", NOW);
        // Case-insensitive scheme, names and algorithm; quoted qop; odd spacing; empty elements.
        let s = format!(
            "  dIgEsT  USERNAME = \"103\" ,, Realm=\"acme.example\",nonce=\"{nonce}\",\turi=\"sip:park@acme.example\", \
             algorithm=sha-256, qop=\"auth\", NC=00000001, cnonce=\"0a4f113b\", opaque=\"x\", \
             response=\"{}\", ",
            resp.to_ascii_uppercase()
        );
        assert_eq!(v(s), ok);
        // An escaped character in a quoted-string stands for itself.
        let s = format!(
            "Digest username=\"1\\03\", realm=\"acme.example\", nonce=\"{nonce}\", uri=\"sip:park@acme.example\", \
             algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"{resp}\""
        );
        assert_eq!(v(s), ok);
        let base = |extra: &str, alg: &str, qop: &str, nc: &str| {
            format!(
                "Digest username=\"103\", realm=\"acme.example\", nonce=\"{nonce}\", uri=\"sip:park@acme.example\"\
                 {alg}{qop}{nc}, cnonce=\"0a4f113b\", response=\"{resp}\"{extra}"
            )
        };
        let std_ = |extra: &str| base(extra, ", algorithm=SHA-256", ", qop=auth", ", nc=00000001");
        assert_eq!(v(std_("")), ok);
        let cases: &[(String, &str)] = &[
            (base("", ", algorithm=SHA-256", "", ", nc=00000001"), "Digest qop=auth is required"),
            (base("", ", algorithm=SHA-256", ", qop=auth-int", ", nc=00000001"), "Digest qop must be auth"),
            (base("", ", algorithm=SHA-256", ", qop=auth", ""), "Digest credentials lack nc"),
            (base("", ", algorithm=SHA-256", ", qop=auth", ", nc=1"), "Digest nc must be 8 hex digits"),
            (base("", ", algorithm=SHA-256", ", qop=auth", ", nc=\"00000001\""), "Digest nc must be 8 hex digits"),
            (base("", ", algorithm=SHA-256-sess", ", qop=auth", ", nc=00000001"), "Digest algorithm not supported"),
            (base("", ", algorithm=SHA-512-256", ", qop=auth", ", nc=00000001"), "Digest algorithm not supported"),
            // No algorithm means MD5, and a SHA-256 response is then the wrong length.
            (base("", "", ", qop=auth", ", nc=00000001"), "Digest response is not a hash"),
            (std_(", realm=\"acme.example\""), "Digest parameter repeated"),
            (std_(", USERNAME=\"103\""), "Digest parameter repeated"),
            (std_(", userhash=true"), "Digest userhash is not supported"),
            (std_(" x"), "Digest parameters must be separated by commas"),
            (std_(", x"), "Digest parameter without a value"),
            (std_(", x="), "Digest parameter value expected"),
            (std_(", =x"), "Digest parameter name expected"),
            (std_(", x=\"a\u{1}b\""), "Digest quoted-string has a control character"),
            (std_(", x=\"abc"), "Digest quoted-string not closed"),
            (std_(", x=\"abc\\"), "Digest quoted-string not closed"),
            (std_(", x1=1, x2=2, x3=3, x4=4, x5=5, x6=6, x7=7, x8=8"), "Too many Digest parameters"),
            (std_(&format!(", x=\"{}\"", "a".repeat(MAX_VALUE_LEN))), "Digest credentials too long"),
            (std_("").replacen("Digest", "Basic", 1), "Not Digest credentials"),
            (std_("").replacen("Digest ", "Digest", 1), "Not Digest credentials"),
            (std_("").replacen("Digest ", "Digest,", 1), "Digest credentials are empty"),
            ("Digest".to_string(), "Digest credentials are empty"),
            ("Digest ".to_string(), "Digest credentials lack a username"),
            (String::new(), "Not Digest credentials"),
        ];
        for (s, why) in cases {
            assert_eq!(v(s.clone()), Verdict::Malformed(why), "{s}");
        }
        // Sixteen parameters are fine (nine used plus seven unknown).
        assert_eq!(v(std_(", x1=1, x2=2, x3=3, x4=4, x5=5, x6=6, x7=7")), ok);
    }

    #[test]
    fn truncations_and_garbage_never_pass() {
        let a = auth();
        let (nonce, _) = valid_value(&a);
        let full = authorization(Algorithm::Sha256, &input(&nonce, b"s3cret", b"INVITE", b"sip:park@acme.example"));
        assert_eq!(check(&a, &full, b"INVITE", NOW), Verdict::Ok(b"103".to_vec()));
        // Every strict prefix is refused (the value ends in the quoted response).
        for n in 0..full.len() {
            let verdict = check(&a, &full[..n], b"INVITE", NOW);
            assert!(!matches!(verdict, Verdict::Ok(_)), "prefix of {n} bytes accepted: {verdict:?}");
        }
        // Every byte replaced by each of a few troublesome bytes: no panic, and
        // only replacements outside the signed parts (case, spacing) may pass.
        for pos in 0..full.len() {
            for b in [0u8, b'"', b'\\', b',', b'=', b' ', b'\r', 0xff, b'A'] {
                let mut m = full.clone();
                m[pos] = b;
                if let Verdict::Ok(user) = check(&a, &m, b"INVITE", NOW) {
                    let benign = m[pos].eq_ignore_ascii_case(&full[pos])
                        || (is_ws(b) && is_ws(full[pos]))
                        || (b == b',' && full[pos] == b' ');
                    assert!(benign && user == b"103", "byte {pos} -> {b:#04x} accepted");
                }
            }
        }
        // Pseudo-random bytes and pseudo-random splices of the valid value.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5_000 {
            let len = (next() % 200) as usize;
            let mut m: Vec<u8> = if next() % 2 == 0 { b"Digest ".to_vec() } else { Vec::new() };
            for _ in 0..len {
                let r = next();
                m.push(if r % 3 == 0 { full[(r >> 8) as usize % full.len()] } else { (r >> 16) as u8 });
            }
            let verdict = check(&a, &m, b"INVITE", NOW);
            assert!(!matches!(verdict, Verdict::Ok(_)), "garbage accepted: {m:?}");
        }
    }

    #[test]
    fn helpers() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert_eq!(Algorithm::from_token(b"md5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::from_token(b"SHA-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_token(b"MD5-sess"), None);
        let mut out = [0u8; 4];
        assert!(hex_decode(b"00fFa0B1", &mut out) && out == [0x00, 0xff, 0xa0, 0xb1]);
        assert!(!hex_decode(b"00fFa0B", &mut out));
        assert!(!hex_decode(b"00fFa0Bg", &mut out));
        // The secret is not printed.
        let dbg = format!("{:?}", auth());
        assert!(dbg.contains("validity") && !dbg.contains("mac"), "{dbg}");
    }
}
