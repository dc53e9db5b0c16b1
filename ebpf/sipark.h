/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sipark.h - the one header shared by sipark's BPF programs (xdp.bpf.c,
 * steer.bpf.c, parity.bpf.c) and mirrored, struct by struct, in
 * engine/src/bpf/abi.rs (which asserts every size at compile time).
 *
 * It holds the constants both sides agree on, the map key/value layouts,
 * the XDP reason codes (index of the per-CPU counters), the shard hash
 * (FNV-1a 32 + Lemire reduction, the same as engine/src/proto/route.rs),
 * and, when SIPARK_SIP_PARSE is defined, the SIP scanners the XDP and
 * sk_reuseport programs share.
 *
 * Kernel requirements of what is used here: bounded loops (5.3), global
 * (non-static) BPF functions verified on their own, with pointer-to-struct
 * arguments (5.12).
 */
#ifndef SIPARK_H
#define SIPARK_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* ---------------------------------------------------------------------- */
/* Constants shared with user space (engine/src/bpf/abi.rs).               */

#define SIPARK_MAX_PORTS 8
/* Payload bytes copied and inspected: the UDP payload of a 1500-byte IPv4
 * frame. Bytes past it are never looked at. */
#define SIPARK_MAX_PAYLOAD 1472
/* Size of the per-CPU scratch buffer; a power of two above
 * SIPARK_MAX_PAYLOAD so that every index can be masked into range. */
#define SIPARK_SCRATCH_SIZE 2048
#define SIPARK_SCRATCH_MASK (SIPARK_SCRATCH_SIZE - 1)
/* route::MAX_DOMAIN_HASHED */
#define SIPARK_MAX_DOMAIN 255
#define SIPARK_N_SCANNERS 16
#define SIPARK_SIG_MAX 32
#define SIPARK_MAX_TENANTS 65536
#define SIPARK_MAX_BUCKETS 65536
#define SIPARK_MAX_BLOCK 16384
#define SIPARK_MAX_BANS 65536
#define SIPARK_MAX_SOCKS 1024
/* Longest domain the parity program accepts. */
#define SIPARK_PARITY_MAX 300
#define SIPARK_PARITY_NS 6
/* Overload shedding in XDP (ADR 0022): admission shares are in
 * 1/SIPARK_SHED_ONE; the longest retrieve feature code; the most Via lines
 * a 503 built in XDP copies; the per-CPU buffer it is built in (positions
 * are masked with SIPARK_OUT_MASK, so that a position plus a copy of at
 * most SIPARK_MAX_PAYLOAD bytes stays inside it). */
#define SIPARK_SHED_ONE 65536u
#define SIPARK_FAC_MAX 16
#define SIPARK_MAX_VIA 8
#define SIPARK_OUT_SIZE 4096
#define SIPARK_OUT_MASK 2047

/* sipark_cfg.flags */
#define SIPARK_FLAG_STRICT 1u

/* Bucket key of REGISTERs whose Request-URI host is not a tenant. Not a
 * tenant hash of any served domain in practice (user space refuses a
 * tenants file whose domain hashes to it). */
#define SIPARK_UNATTRIBUTED 0u

#define SIPARK_FNV_OFFSET 0x811c9dc5u
#define SIPARK_FNV_PRIME 0x01000193u

/* XDP verdict reasons: index into the per-CPU array sipark_counters.
 * Rust: abi::REASON_NAMES (same order). */
enum sipark_reason {
	SIPARK_PASS = 0,                /* SIP to one of our ports, passed */
	SIPARK_DROP_NOT_SIP = 1,        /* to our port, but not SIP */
	SIPARK_DROP_UNKNOWN_TENANT = 2, /* strict mode, R-URI host not served */
	SIPARK_DROP_RATE = 3,           /* tenant over its rate */
	SIPARK_DROP_SCANNER = 4,        /* User-Agent of a known scanner */
	SIPARK_DROP_BLOCKED = 5,        /* source in sipark_block */
	SIPARK_PASS_NOT_OURS = 6,       /* not UDP to our ports: untouched */
	SIPARK_PASS_UNPARSED = 7,       /* fragments, IPv6 ext headers, QinQ */
	SIPARK_DROP_BANNED = 8,         /* source in sipark_bans, ban not over */
	SIPARK_TX_SHED = 9,             /* new request refused: 503 sent back (XDP_TX) */
	SIPARK_DROP_SHED_ACK = 10,      /* ACK of an overload 503 (To tag "ovl-") */
	SIPARK_N_REASONS = 11,
};

/* sk_reuseport outcomes: index into the per-CPU array sipark_sstats. */
enum sipark_steer_outcome {
	SIPARK_STEERED = 0,  /* bpf_sk_select_reuseport succeeded */
	SIPARK_FALLBACK = 1, /* not readable, no shard, or select failed */
	SIPARK_N_STEER = 2,
};

/* ---------------------------------------------------------------------- */
/* Map layouts.                                                           */

/* sipark_cfg: ARRAY[1]. Ports in host byte order, first n_ports used.
 * default_rate 0 = unlimited. n_shards is used by the steer program only. */
struct sipark_cfg {
	__u32 n_shards;
	__u32 flags;
	__u32 default_rate;  /* requests per second, 0 = unlimited */
	__u32 default_burst; /* extra requests admitted back-to-back */
	__u16 ports[SIPARK_MAX_PORTS];
	__u32 n_ports;
	__u32 _pad;
}; /* 40 bytes */

/* sipark_tenants: HASH, key = tenant hash (u32). Present = served.
 * rate 0 = use sipark_cfg.default_rate/default_burst. */
struct sipark_tenant {
	__u32 rate;
	__u32 burst;
}; /* 8 bytes */

/* sipark_buckets: LRU_HASH, key = tenant hash. GCRA theoretical arrival
 * time, CLOCK_MONOTONIC ns (bpf_ktime_get_ns). */
struct sipark_bucket {
	__u64 tat_ns;
}; /* 8 bytes */

/* sipark_block: LPM_TRIE key. IPv4 is stored as ::ffff:a.b.c.d with
 * prefixlen 96 + p, so one trie serves both families. */
struct sipark_lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
}; /* 20 bytes */

/* sipark_bans: HASH, key = the banned source: an IPv4 address as
 * ::ffff:a.b.c.d, or an IPv6 /64 (bytes 8..15 zero). Written by user space
 * when a shard bans a source for failed digest responses (ADR 0019);
 * until_ns is CLOCK_MONOTONIC (bpf_ktime_get_ns). The program drops the
 * source's datagrams until then, and deletes an entry it finds expired;
 * user space sweeps the others. */
struct sipark_ban_key {
	__u8 addr[16];
}; /* 16 bytes */

struct sipark_ban {
	__u64 until_ns;
}; /* 8 bytes */

/* sipark_shed: ARRAY[SIPARK_MAX_SOCKS], index = shard (reduce(tenant
 * hash, sipark_cfg.n_shards)). Written by the shard's worker whenever its
 * overload controller's admission share changes (ADR 0022). A new
 * out-of-dialog INVITE (not a retrieve) or REGISTER whose admission hash
 * has its top 16 bits under `refuse` is answered 503 in XDP; 0 (the
 * initial value) refuses nothing. While CLOCK_MONOTONIC is before
 * ack_until_ns, an ACK whose To tag starts with "ovl-" (the tag of every
 * overload 503, the worker's and XDP's) is dropped. */
struct sipark_shed {
	__u32 refuse;
	__u32 _pad;
	__u64 ack_until_ns;
}; /* 16 bytes */

/* sipark_shed_cfg: ARRAY[1]. key: the admission hash's key (shared with
 * every shard; see sipark_admission_hash). Retry-After is drawn from
 * retry_min..=retry_max seconds. retrieve: the retrieve feature code
 * (case-sensitive prefix of the Request-URI user), retrieve_len 0..=16. */
struct sipark_shed_cfg {
	__u32 key;
	__u16 retry_min;
	__u16 retry_max;
	__u32 retrieve_len;
	__u8 retrieve[SIPARK_FAC_MAX];
}; /* 28 bytes */

/* sipark_scanners: ARRAY[16]. Lowercase User-Agent prefix; len 0 = unused. */
struct sipark_sig {
	__u32 len;
	__u8 bytes[SIPARK_SIG_MAX];
}; /* 36 bytes */

/* sipark_scratch: PERCPU_ARRAY[1]. Holds the copied UDP payload, followed
 * by a 0 byte (sentinel) at index len. */
struct sipark_scratch {
	__u8 buf[SIPARK_SCRATCH_SIZE];
}; /* 2048 bytes */

/* sipark_par_out: ARRAY[1], written by parity.bpf.c. */
struct sipark_parity_out {
	__u32 hash;
	__u32 len;                       /* bytes hashed (<= 255) */
	__u16 shards[SIPARK_PARITY_NS];  /* reduce(hash, n), n = 1 2 4 16 64 1024 */
}; /* 20 bytes */

/* ---------------------------------------------------------------------- */
/* The shard hash (route::tenant_hash / route::reduce).                   */

static __always_inline __u8 sipark_lower(__u8 c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* FNV-1a 32 over the ASCII-lowercased bytes[0..min(len, 255)].
 * bytes must have SIPARK_MAX_DOMAIN readable bytes for the verifier;
 * only the first len are read. Bounded loop (5.3). */
static __always_inline __u32 sipark_tenant_hash(const __u8 *bytes, __u32 len)
{
	__u32 h = SIPARK_FNV_OFFSET;

	for (__u32 i = 0; i < SIPARK_MAX_DOMAIN; i++) {
		if (i >= len)
			break;
		h ^= sipark_lower(bytes[i]);
		h *= SIPARK_FNV_PRIME;
	}
	return h;
}

/* Lemire's multiply-shift reduction of hash to 0..n (n >= 1; 0 counts as 1). */
static __always_inline __u16 sipark_reduce(__u32 hash, __u32 n)
{
	if (n == 0)
		n = 1;
	return (__u16)(((__u64)hash * (__u64)n) >> 32);
}

/* The admission hash of overload control (overload::admission_hash in
 * Rust): FNV-1a 32 over the Call-ID value's first 255 bytes, as received,
 * started from SIPARK_FNV_OFFSET ^ key, then over the CSeq number's four
 * bytes (least significant first), then MurmurHash3's fmix32 so that the
 * top 16 bits, which the share is compared with, are well mixed. The CSeq
 * number makes each new request of a call (a REGISTER refresh) a new
 * draw, while a retransmission gets its first copy's. bytes must have 255
 * readable bytes for the verifier. */
static __always_inline __u32 sipark_admission_hash(const __u8 *bytes, __u32 len, __u32 key, __u32 cseq)
{
	__u32 h = SIPARK_FNV_OFFSET ^ key;

	for (__u32 i = 0; i < SIPARK_MAX_DOMAIN; i++) {
		if (i >= len)
			break;
		h ^= bytes[i];
		h *= SIPARK_FNV_PRIME;
	}
	for (__u32 i = 0; i < 4; i++) {
		h ^= (cseq >> (8 * i)) & 0xff;
		h *= SIPARK_FNV_PRIME;
	}
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* ---------------------------------------------------------------------- */
/* SIP scanning shared by xdp.bpf.c and steer.bpf.c.                      */
#ifdef SIPARK_SIP_PARSE

/* Byte i of the payload. Masked so the verifier sees every access in
 * bounds; callers keep i <= len (< SIPARK_SCRATCH_SIZE), and buf[len] is
 * the 0 sentinel, so the mask never changes what is read. */
static __always_inline __u8 sipark_at(const struct sipark_scratch *s, __u32 i)
{
	return s->buf[i & SIPARK_SCRATCH_MASK];
}

/* Start-line kinds returned by sipark_start_line (>= 0: a request whose
 * Request-URI starts at that offset). */
#define SIPARK_START_NOT_SIP (-1)
#define SIPARK_START_RESPONSE (-2)

#define SIPARK_IS(i, c) (sipark_at(s, (i)) == (__u8)(c))

/* Classifies the payload: "SIP/2.0 " is a response; one of the RFC 3261
 * (and extension) methods followed by a space is a request, and the
 * offset of its Request-URI is returned. Case-sensitive (methods are).
 * Needs the sentinel at buf[len]. */
static __always_inline int sipark_start_line(const struct sipark_scratch *s)
{
	switch (sipark_at(s, 0)) {
	case 'S':
		if (SIPARK_IS(1, 'I') && SIPARK_IS(2, 'P') && SIPARK_IS(3, '/') && SIPARK_IS(4, '2') &&
		    SIPARK_IS(5, '.') && SIPARK_IS(6, '0') && SIPARK_IS(7, ' '))
			return SIPARK_START_RESPONSE;
		if (SIPARK_IS(1, 'U') && SIPARK_IS(2, 'B') && SIPARK_IS(3, 'S') && SIPARK_IS(4, 'C') &&
		    SIPARK_IS(5, 'R') && SIPARK_IS(6, 'I') && SIPARK_IS(7, 'B') && SIPARK_IS(8, 'E') &&
		    SIPARK_IS(9, ' '))
			return 10;
		return SIPARK_START_NOT_SIP;
	case 'I':
		if (SIPARK_IS(1, 'N') && SIPARK_IS(2, 'V') && SIPARK_IS(3, 'I') && SIPARK_IS(4, 'T') &&
		    SIPARK_IS(5, 'E') && SIPARK_IS(6, ' '))
			return 7;
		if (SIPARK_IS(1, 'N') && SIPARK_IS(2, 'F') && SIPARK_IS(3, 'O') && SIPARK_IS(4, ' '))
			return 5;
		return SIPARK_START_NOT_SIP;
	case 'A':
		if (SIPARK_IS(1, 'C') && SIPARK_IS(2, 'K') && SIPARK_IS(3, ' '))
			return 4;
		return SIPARK_START_NOT_SIP;
	case 'B':
		if (SIPARK_IS(1, 'Y') && SIPARK_IS(2, 'E') && SIPARK_IS(3, ' '))
			return 4;
		return SIPARK_START_NOT_SIP;
	case 'C':
		if (SIPARK_IS(1, 'A') && SIPARK_IS(2, 'N') && SIPARK_IS(3, 'C') && SIPARK_IS(4, 'E') &&
		    SIPARK_IS(5, 'L') && SIPARK_IS(6, ' '))
			return 7;
		return SIPARK_START_NOT_SIP;
	case 'O':
		if (SIPARK_IS(1, 'P') && SIPARK_IS(2, 'T') && SIPARK_IS(3, 'I') && SIPARK_IS(4, 'O') &&
		    SIPARK_IS(5, 'N') && SIPARK_IS(6, 'S') && SIPARK_IS(7, ' '))
			return 8;
		return SIPARK_START_NOT_SIP;
	case 'R':
		if (SIPARK_IS(1, 'E') && SIPARK_IS(2, 'G') && SIPARK_IS(3, 'I') && SIPARK_IS(4, 'S') &&
		    SIPARK_IS(5, 'T') && SIPARK_IS(6, 'E') && SIPARK_IS(7, 'R') && SIPARK_IS(8, ' '))
			return 9;
		if (SIPARK_IS(1, 'E') && SIPARK_IS(2, 'F') && SIPARK_IS(3, 'E') && SIPARK_IS(4, 'R') &&
		    SIPARK_IS(5, ' '))
			return 6;
		return SIPARK_START_NOT_SIP;
	case 'N':
		if (SIPARK_IS(1, 'O') && SIPARK_IS(2, 'T') && SIPARK_IS(3, 'I') && SIPARK_IS(4, 'F') &&
		    SIPARK_IS(5, 'Y') && SIPARK_IS(6, ' '))
			return 7;
		return SIPARK_START_NOT_SIP;
	case 'U':
		if (SIPARK_IS(1, 'P') && SIPARK_IS(2, 'D') && SIPARK_IS(3, 'A') && SIPARK_IS(4, 'T') &&
		    SIPARK_IS(5, 'E') && SIPARK_IS(6, ' '))
			return 7;
		return SIPARK_START_NOT_SIP;
	case 'P':
		if (SIPARK_IS(1, 'R') && SIPARK_IS(2, 'A') && SIPARK_IS(3, 'C') && SIPARK_IS(4, 'K') &&
		    SIPARK_IS(5, ' '))
			return 6;
		if (SIPARK_IS(1, 'U') && SIPARK_IS(2, 'B') && SIPARK_IS(3, 'L') && SIPARK_IS(4, 'I') &&
		    SIPARK_IS(5, 'S') && SIPARK_IS(6, 'H') && SIPARK_IS(7, ' '))
			return 8;
		return SIPARK_START_NOT_SIP;
	case 'M':
		if (SIPARK_IS(1, 'E') && SIPARK_IS(2, 'S') && SIPARK_IS(3, 'S') && SIPARK_IS(4, 'A') &&
		    SIPARK_IS(5, 'G') && SIPARK_IS(6, 'E') && SIPARK_IS(7, ' '))
			return 8;
		return SIPARK_START_NOT_SIP;
	default:
		return SIPARK_START_NOT_SIP;
	}
}

/*
 * The functions below are global (non-static, never inlined): since 5.12
 * the verifier checks each one once, on its own, with its scalar arguments
 * unknown. Each scanning loop returns as soon as it finds its position, and
 * whatever uses that position is another global function, so the verifier
 * does not re-walk the rest of the program once per loop iteration.
 * Their pointer argument may be NULL as far as the verifier knows.
 */

/* Result of sipark_ruri_route: kind in bits 32..39, value in bits 0..31. */
#define SIPARK_RURI_INVALID (-1)
#define SIPARK_RURI_DIALOG 1ll /* value: the shard of an sp<digits>. user */
#define SIPARK_RURI_TENANT 2ll /* value: tenant_hash(host) */
#define SIPARK_RURI_KIND(r) ((int)(((r) >> 32) & 0xff))
#define SIPARK_RURI_VALUE(r) ((__u32)(r))

/*
 * Long scans (up to SIPARK_MAX_PAYLOAD iterations) keep one or two
 * conditional branches per iteration: the verifier walks a bounded loop
 * one iteration after another, keeps one pending state per branch it has
 * not followed yet, and refuses more than 8192 of them. So a scan only
 * looks for a candidate byte, and the multi-byte compare at a candidate is
 * a global function (or is folded into arithmetic with one branch on the
 * result).
 */

/* Bytes s[i..i+8) as a little-endian u64 (built with shifts, so on any
 * host byte order; no branches). */
static __always_inline __u64 sipark_load8(const struct sipark_scratch *s, __u32 i)
{
	return (__u64)sipark_at(s, i) | (__u64)sipark_at(s, i + 1) << 8 | (__u64)sipark_at(s, i + 2) << 16 |
	       (__u64)sipark_at(s, i + 3) << 24 | (__u64)sipark_at(s, i + 4) << 32 |
	       (__u64)sipark_at(s, i + 5) << 40 | (__u64)sipark_at(s, i + 6) << 48 |
	       (__u64)sipark_at(s, i + 7) << 56;
}

/* Eight characters as the little-endian u64 sipark_load8 returns. */
#define SIPARK_LE8(a, b, c, d, e, f, g, h)                                                             \
	((__u64)(__u8)(a) | (__u64)(__u8)(b) << 8 | (__u64)(__u8)(c) << 16 | (__u64)(__u8)(d) << 24 | \
	 (__u64)(__u8)(e) << 32 | (__u64)(__u8)(f) << 40 | (__u64)(__u8)(g) << 48 |                   \
	 (__u64)(__u8)(h) << 56)

/* The first '@' of the Request-URI at s[p..], or -1 when the URI ends
 * first at SP, HTAB, CR, LF or the end (Uri::parse splits userinfo at the
 * first '@' of the whole URI). */
__noinline int sipark_find_at(const struct sipark_scratch *s, __u32 p, __u32 len)
{
	if (!s || p > SIPARK_MAX_PAYLOAD || len > SIPARK_MAX_PAYLOAD)
		return -1;
	for (__u32 i = 0; i < SIPARK_MAX_PAYLOAD; i++) {
		__u32 j = p + i;
		__u64 c;
		__u64 stop;

		if (j >= len)
			return -1;
		c = sipark_at(s, j);
		/* Zero exactly when c is one of '@' SP CR LF HTAB NUL. */
		stop = (c ^ '@') * (c ^ ' ') * (c ^ '\r') * (c ^ '\n') * (c ^ '\t') * c;
		if (stop == 0)
			return c == '@' ? (int)j : -1;
	}
	return -1;
}

/* route::shard_in_contact_user over the user part s[p..end): "sp", then 1
 * to 5 digits, then '.', value <= 65535. Returns the shard or -1. The user
 * part ends at ':' (password) or '@', neither of which is a digit or '.',
 * so stopping at end is all that is needed. */
/* route::embedded_shard at s[p..end): 1 to 5 digits, then '.', at most
 * 65535; -1 otherwise. Shared by the Contact user ("sp") and the Via
 * branch ("z9hG4bKsp") parsers; callers bound p and end. */
static __always_inline int sipark_shard_digits(const struct sipark_scratch *s, __u32 p, __u32 end)
{
	__u32 v = 0;
	__u32 n = 0;

	for (__u32 i = 0; i < 6; i++) {
		__u32 j = p + i;
		__u8 c;

		if (j >= end)
			return -1;
		c = sipark_at(s, j);
		if (c == '.') {
			if (n == 0 || v > 65535)
				return -1;
			return (int)v;
		}
		if (c < '0' || c > '9' || n == 5)
			return -1;
		v = v * 10 + (c - '0');
		n++;
	}
	return -1;
}

__noinline int sipark_sp_shard(const struct sipark_scratch *s, __u32 p, __u32 end)
{
	if (!s || p > SIPARK_MAX_PAYLOAD || end > SIPARK_MAX_PAYLOAD)
		return -1;
	if (p + 2 >= end || sipark_at(s, p) != 's' || sipark_at(s, p + 1) != 'p')
		return -1;
	return sipark_shard_digits(s, p + 2, end);
}

static __always_inline int sipark_host_char(__u8 c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.' || c == '_';
}

/* tenant_hash(s[p..p+n]), n <= 255. A global function so that the hash
 * loop is verified once, whatever constant n the caller's path carries. */
__noinline __u32 sipark_hash_range(const struct sipark_scratch *s, __u32 p, __u32 n)
{
	if (!s || p > SIPARK_MAX_PAYLOAD)
		return SIPARK_FNV_OFFSET;
	return sipark_tenant_hash(&s->buf[p], n);
}

/* parse.rs parse_host over the host at s[p..]: "[" IPv6 "]" (brackets
 * kept; the inner part non-empty, with a ':', only hex digits ':' '.'),
 * else the longest run of [A-Za-z0-9._-] (non-empty). Returns
 * SIPARK_RURI_TENANT << 32 | tenant_hash(host), or -1 when there is no
 * valid host. Only the first 255 bytes of a longer host are hashed, as
 * route::tenant_hash does. */
__noinline long long sipark_host_hash(const struct sipark_scratch *s, __u32 p, __u32 len)
{
	__u32 n = 0;

	if (!s || p > SIPARK_MAX_PAYLOAD || len > SIPARK_MAX_PAYLOAD || p >= len)
		return SIPARK_RURI_INVALID;
	if (sipark_at(s, p) == '[') {
		int colon = 0;

		/* An IPv6 reference is at most 2 + 45 bytes long (parse.rs looks
		 * for the first ']' anywhere; a longer one is not an address). */
		for (__u32 i = 1; i < 64; i++) {
			__u32 j = p + i;
			__u8 c;

			if (j >= len)
				return SIPARK_RURI_INVALID;
			c = sipark_at(s, j);
			if (c == ']') {
				n = i + 1;
				break;
			}
			if (c == ':')
				colon = 1;
			else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
				   c == '.'))
				return SIPARK_RURI_INVALID;
		}
		if (n <= 2 || !colon)
			return SIPARK_RURI_INVALID;
	} else {
		for (__u32 i = 0; i < SIPARK_MAX_DOMAIN; i++) {
			if (p + i >= len || !sipark_host_char(sipark_at(s, p + i)))
				break;
			n = i + 1;
		}
		if (n == 0)
			return SIPARK_RURI_INVALID;
	}
	return (SIPARK_RURI_TENANT << 32) | sipark_hash_range(s, p, n);
}

/* Where the part after the scheme of a sip: or sips: URI (any case) at s[p..]
 * starts, or -1 for another scheme. */
static __always_inline int sipark_sip_rest(const struct sipark_scratch *s, __u32 p)
{
	if (sipark_lower(sipark_at(s, p)) != 's' || sipark_lower(sipark_at(s, p + 1)) != 'i' ||
	    sipark_lower(sipark_at(s, p + 2)) != 'p')
		return -1;
	if (sipark_at(s, p + 3) == ':')
		return (int)(p + 4);
	if (sipark_lower(sipark_at(s, p + 3)) == 's' && sipark_at(s, p + 4) == ':')
		return (int)(p + 5);
	return -1;
}

/* Routes a request by its Request-URI at s[p..len): the scheme is sip:,
 * sips: (case-insensitive) or tel: (whose host is empty, as in parse.rs).
 * A user part "sp<digits>." is one of sipark's own Contacts (in-dialog):
 * SIPARK_RURI_DIALOG << 32 | shard. Otherwise the host is hashed:
 * SIPARK_RURI_TENANT << 32 | tenant_hash(host). -1 when the URI cannot be
 * read (route.rs: Owner::Local). */
__noinline long long sipark_ruri_route(const struct sipark_scratch *s, __u32 p, __u32 len)
{
	__u32 h;
	int rest;
	int at;
	int shard;

	if (!s || p > 16 || len > SIPARK_MAX_PAYLOAD)
		return SIPARK_RURI_INVALID;
	if ((sipark_lower(sipark_at(s, p)) == 't') && (sipark_lower(sipark_at(s, p + 1)) == 'e') &&
	    (sipark_lower(sipark_at(s, p + 2)) == 'l') && sipark_at(s, p + 3) == ':')
		return (SIPARK_RURI_TENANT << 32) | SIPARK_FNV_OFFSET;
	rest = sipark_sip_rest(s, p);
	if (rest < 0)
		return SIPARK_RURI_INVALID;
	h = (__u32)rest;

	at = sipark_find_at(s, h, len);
	if (at >= 0) {
		if ((__u32)at == h || (__u32)at > SIPARK_MAX_PAYLOAD || sipark_at(s, h) == ':')
			return SIPARK_RURI_INVALID; /* empty user */
		shard = sipark_sp_shard(s, h, (__u32)at);
		if (shard >= 0)
			return (SIPARK_RURI_DIALOG << 32) | (__u32)shard;
		h = (__u32)at + 1;
	}
	return sipark_host_hash(s, h, len);
}

#endif /* SIPARK_SIP_PARSE */
#endif /* SIPARK_H */
