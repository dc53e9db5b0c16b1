// SPDX-License-Identifier: Apache-2.0
/*
 * xdp.bpf.c - sipark_xdp, the XDP filter in front of sipark's SIP ports.
 *
 * Frames that are not UDP to one of sipark_cfg.ports pass untouched
 * (counted as not_ours). For SIP traffic, in order: source blocklist,
 * banned sources (sipark_bans: digest guessers, with an expiry), "is it
 * SIP at all", scanner User-Agents, then per-tenant admission
 * (strict mode: only known tenants) and a GCRA rate limit per tenant.
 * Every verdict is counted in sipark_counters (enum sipark_reason).
 *
 * Kernel: XDP 4.8; bpf_xdp_get_buff_len and bpf_xdp_load_bytes 5.18 (so
 * multi-buffer frames are read correctly); LPM trie 4.11; LRU hash 4.10;
 * per-CPU array 4.6; bpf_ktime_get_ns 4.1; atomic add 4.x (BPF_XADD);
 * bounded loops 5.3; global functions with pointer arguments 5.12. The
 * whole program therefore needs 5.18 or later.
 */
#define SIPARK_SIP_PARSE
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sipark.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sipark_cfg);
} sipark_cfg SEC(".maps");

/* Hash (3.19): user space owns the tenant set; present = served. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SIPARK_MAX_TENANTS);
	__type(key, __u32);
	__type(value, struct sipark_tenant);
} sipark_tenants SEC(".maps");

/* LRU hash (4.10): idle tenants' buckets are evicted first. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SIPARK_MAX_BUCKETS);
	__type(key, __u32);
	__type(value, struct sipark_bucket);
} sipark_buckets SEC(".maps");

/* LPM trie (4.11); it requires BPF_F_NO_PREALLOC. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SIPARK_MAX_BLOCK);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sipark_lpm_key);
	__type(value, __u8);
} sipark_block SEC(".maps");

/* Hash (3.19): bans user space writes, each with its end. A full map
 * refuses new bans (user space counts that); the shard still drops them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SIPARK_MAX_BANS);
	__type(key, struct sipark_ban_key);
	__type(value, struct sipark_ban);
} sipark_bans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SIPARK_N_SCANNERS);
	__type(key, __u32);
	__type(value, struct sipark_sig);
} sipark_scanners SEC(".maps");

/* Array (3.19): each shard's admission share and ACK window, written by
 * its worker (ADR 0022). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SIPARK_MAX_SOCKS);
	__type(key, __u32);
	__type(value, struct sipark_shed);
} sipark_shed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sipark_shed_cfg);
} sipark_shed_cfg SEC(".maps");

/* Per-CPU array (4.6): no atomics needed to count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SIPARK_N_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} sipark_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sipark_scratch);
} sipark_scratch SEC(".maps");

/* 802.1Q / 802.1ad tag after the MAC addresses. */
struct sipark_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

static __always_inline int verdict(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&sipark_counters, &reason);

	if (n)
		*n += 1;
	switch (reason) {
	case SIPARK_DROP_NOT_SIP:
	case SIPARK_DROP_UNKNOWN_TENANT:
	case SIPARK_DROP_RATE:
	case SIPARK_DROP_SCANNER:
	case SIPARK_DROP_BLOCKED:
	case SIPARK_DROP_BANNED:
	case SIPARK_DROP_SHED_ACK:
		return XDP_DROP;
	case SIPARK_TX_SHED:
		return XDP_TX;
	default:
		return XDP_PASS;
	}
}

/* IPv6 extension headers (and ESP/AH) that may stand between the fixed
 * header and UDP: such packets are passed as unparsed. */
static __always_inline int ipv6_ext(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0:   /* hop-by-hop */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 50:  /* ESP */
	case 51:  /* AH */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
		return 1;
	default:
		return 0;
	}
}

#define SIPARK_ONES8 0x0101010101010101ull
#define SIPARK_HIGH8 0x8080808080808080ull
#define SIPARK_LOW7 0x7f7f7f7f7f7f7f7full

/* ASCII-lowercases the eight bytes of x (SWAR, no branches): bit 7 of a
 * byte of `upper` is set when that byte is in 'A'..'Z'. */
static __always_inline __u64 sipark_lower8(__u64 x)
{
	__u64 t = x & SIPARK_LOW7;
	__u64 ge_a = t + (0x80 - 'A') * SIPARK_ONES8;
	__u64 gt_z = t + (0x80 - 'Z' - 1) * SIPARK_ONES8;
	__u64 upper = ge_a & ~gt_z & ~x & SIPARK_HIGH8;

	return x | (upper >> 2);
}

/* 0xff in every byte of x that is not zero, 0x00 elsewhere. */
static __always_inline __u64 sipark_nonzero8(__u64 x)
{
	__u64 t = (((x & SIPARK_LOW7) + SIPARK_LOW7) | x) & SIPARK_HIGH8;

	return (t >> 7) * 0xff;
}

/* A User-Agent signature from sipark_scanners at s[v..] (the value,
 * compared lowercased). The signature's unused bytes are zero (user space
 * writes them so, and signatures hold no NUL), which gives the compare
 * mask; a value shorter than a signature meets the 0 sentinel at buf[len]
 * and differs. Word-wise, one branch per signature. Global: verified
 * once with v unknown. */
__noinline int sipark_sig_match(const struct sipark_scratch *s, __u32 v, __u32 len)
{
	__u64 val[SIPARK_SIG_MAX / 8];

	if (!s || v > SIPARK_MAX_PAYLOAD || len > SIPARK_MAX_PAYLOAD)
		return 0;
	for (__u32 w = 0; w < SIPARK_SIG_MAX / 8; w++)
		val[w] = sipark_lower8(sipark_load8(s, v + w * 8));
	for (__u32 k = 0; k < SIPARK_N_SCANNERS; k++) {
		/* The key in an 8-byte aligned stack slot: there the verifier
		 * keeps tracking k's exact value across the helper call (in a
		 * 4-byte slot at an unaligned offset it loses it, and then has to
		 * walk this loop with k unknown). */
		union {
			__u64 align;
			__u32 k;
		} key = { .align = 0 };
		const struct sipark_sig *sig;
		__u64 diff = 0;

		key.k = k;
		sig = bpf_map_lookup_elem(&sipark_scanners, &key.k);
		if (!sig || sig->len == 0 || sig->len > SIPARK_SIG_MAX)
			continue;
		for (__u32 w = 0; w < SIPARK_SIG_MAX / 8; w++) {
			const __u8 *b = &sig->bytes[w * 8];
			__u64 sw = (__u64)b[0] | (__u64)b[1] << 8 | (__u64)b[2] << 16 | (__u64)b[3] << 24 |
				   (__u64)b[4] << 32 | (__u64)b[5] << 40 | (__u64)b[6] << 48 | (__u64)b[7] << 56;

			diff |= (val[w] ^ sw) & sipark_nonzero8(sw);
		}
		if (diff == 0)
			return 1;
	}
	return 0;
}

/* s[p..] follows a header name "User-Agent": optional SP/HTAB, ':',
 * optional SP/HTAB, then the value is matched. */
__noinline int sipark_ua_value(const struct sipark_scratch *s, __u32 p, __u32 len)
{
	__u32 i;

	if (!s || p > SIPARK_MAX_PAYLOAD || len > SIPARK_MAX_PAYLOAD)
		return 0;
	i = p;
	for (__u32 k = 0; k < 8; k++) {
		__u8 c = sipark_at(s, i);

		if (c != ' ' && c != '\t')
			break;
		i++;
	}
	if (i >= len || sipark_at(s, i) != ':')
		return 0;
	i++;
	for (__u32 k = 0; k < 16; k++) {
		__u8 c = sipark_at(s, i);

		if (c != ' ' && c != '\t')
			break;
		i++;
	}
	return sipark_sig_match(s, i, len);
}

/* What the line after the '\n' at s[i] is. */
#define SIPARK_LINE_OTHER 0   /* another header line */
#define SIPARK_LINE_END 1     /* the blank line that ends the headers */
#define SIPARK_LINE_UA 2      /* User-Agent, not a scanner */
#define SIPARK_LINE_SCANNER 3 /* User-Agent of a scanner */

/* Classifies the line after the '\n' at s[i]. "\nUser-Agent" is compared
 * as two words (no branch per byte), letters lowercased by OR-ing 0x20
 * into their bytes only. */
__noinline int sipark_line(const struct sipark_scratch *s, __u32 i, __u32 len)
{
	const __u64 m1 = SIPARK_LE8(0, 0x20, 0x20, 0x20, 0x20, 0, 0x20, 0x20);
	const __u64 p1 = SIPARK_LE8('\n', 'u', 's', 'e', 'r', '-', 'a', 'g');
	const __u64 m2 = SIPARK_LE8(0x20, 0x20, 0x20, 0, 0, 0, 0, 0);
	const __u64 p2 = SIPARK_LE8('e', 'n', 't', 0, 0, 0, 0, 0);
	__u64 ua;
	__u8 c1, c2;

	if (!s || i > SIPARK_MAX_PAYLOAD || len > SIPARK_MAX_PAYLOAD)
		return SIPARK_LINE_END;
	c1 = sipark_at(s, i + 1);
	c2 = sipark_at(s, i + 2);
	if (c1 == '\n' || (c1 == '\r' && c2 == '\n'))
		return SIPARK_LINE_END;
	ua = ((sipark_load8(s, i) | m1) ^ p1) | (((sipark_load8(s, i + 8) | m2) ^ p2) & 0xffffff);
	if (ua != 0)
		return SIPARK_LINE_OTHER;
	return sipark_ua_value(s, i + 11, len) ? SIPARK_LINE_SCANNER : SIPARK_LINE_UA;
}

/* True when the first User-Agent header line (name case-insensitive) in
 * the header section of s[0..len) starts with a scanner signature. The
 * search stops at the blank line that ends the headers. */
__noinline int sipark_is_scanner(const struct sipark_scratch *s, __u32 len)
{
	if (!s || len > SIPARK_MAX_PAYLOAD)
		return 0;
	for (__u32 i = 0; i < SIPARK_MAX_PAYLOAD; i++) {
		int line;

		if (i >= len)
			return 0;
		if (sipark_at(s, i) != '\n')
			continue;
		line = sipark_line(s, i, len);
		if (line != SIPARK_LINE_OTHER)
			return line == SIPARK_LINE_SCANNER;
	}
	return 0;
}

/*
 * GCRA admission for tenant h: interval = 1e9/rate ns, allowance =
 * (burst - 1) * interval, so that exactly `burst` requests pass back to
 * back. tat = max(bucket.tat, now); over allowance: refuse; else
 * tat += interval.
 *
 * Racy by design across CPUs (no spin lock): two CPUs may both read an
 * old tat, both store now, and both add their interval; at worst a few
 * extra packets are admitted per idle period, never fewer.
 */
static __always_inline int sipark_admit(__u32 h, __u32 rate, __u32 burst)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 interval = 1000000000ull / rate;
	__u64 allowance = burst ? (__u64)(burst - 1) * interval : 0;
	struct sipark_bucket *b = bpf_map_lookup_elem(&sipark_buckets, &h);
	__u64 tat;

	if (!b) {
		struct sipark_bucket fresh = { .tat_ns = now };

		bpf_map_update_elem(&sipark_buckets, &h, &fresh, BPF_NOEXIST);
		b = bpf_map_lookup_elem(&sipark_buckets, &h);
		if (!b)
			return 1; /* cannot track it: admit */
	}
	tat = b->tat_ns;
	if (tat < now) {
		b->tat_ns = now;
		tat = now;
	}
	if (tat - now > allowance)
		return 0;
	__sync_fetch_and_add(&b->tat_ns, interval);
	return 1;
}

/* Whether the source in key (an LPM key's address) is banned now. An
 * IPv6 source is looked up by its /64. An expired entry is deleted. */
static __always_inline int sipark_banned(const struct sipark_lpm_key *key, int v6)
{
	struct sipark_ban_key bk;
	const struct sipark_ban *ban;

	__builtin_memcpy(bk.addr, key->addr, 16);
	if (v6)
		__builtin_memset(&bk.addr[8], 0, 8);
	ban = bpf_map_lookup_elem(&sipark_bans, &bk);
	if (!ban)
		return 0;
	if (bpf_ktime_get_ns() < ban->until_ns)
		return 1;
	bpf_map_delete_elem(&sipark_bans, &bk);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Overload shedding (ADR 0022): a new INVITE or REGISTER that its shard's
 * admission share refuses is answered 503 here, with XDP_TX, so that the
 * refusal costs the worker nothing; so is the ACK of an overload 503.     */

/* Kinds of header line the 503 needs (or that stop it). */
#define SIPARK_K_OTHER 0
#define SIPARK_K_VIA 1
#define SIPARK_K_FROM 2
#define SIPARK_K_TO 3
#define SIPARK_K_CALLID 4
#define SIPARK_K_CSEQ 5
#define SIPARK_K_REPLACES 6
#define SIPARK_K_END 7  /* the blank line after the headers */
#define SIPARK_K_FOLD 8 /* a continuation line (starts with SP or HTAB) */

/* Where the header lines the 503 copies are in the payload: [start, end),
 * end one past the line's LF. line[] is indexed by kind - SIPARK_K_FROM. */
struct sipark_plan {
	__u32 kind;  /* kind of the line being read */
	__u32 start; /* its first byte */
	__u32 n_via;
	__u32 seen; /* bit (1 << kind) per kind met */
	__u32 via[SIPARK_MAX_VIA][2];
	__u32 line[4][2];
}; /* 96 bytes */

struct sipark_out {
	__u8 buf[SIPARK_OUT_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sipark_plan);
} sipark_plan SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sipark_out);
} sipark_out SEC(".maps");

#define SIPARK_NEEDED                                                                              \
	((1u << SIPARK_K_VIA) | (1u << SIPARK_K_FROM) | (1u << SIPARK_K_TO) | (1u << SIPARK_K_CALLID) | \
	 (1u << SIPARK_K_CSEQ))

/* Whether c may follow a header name: the colon, or white space before it. */
static __always_inline int sipark_name_end(__u8 c)
{
	return c == ':' || c == ' ' || c == '\t';
}

/* The low n bytes of a little-endian word (n < 8). */
#define SIPARK_LOW(n) ((1ull << (8 * (n))) - 1)

/* The kind of the line that starts at s[i]. Names in any case, compact
 * forms included (v f t i). */
__noinline int sipark_line_kind(const struct sipark_scratch *s, __u32 i, __u32 len)
{
	__u64 w;
	__u8 c0;

	if (!s || i > SIPARK_MAX_PAYLOAD || len > SIPARK_MAX_PAYLOAD || i >= len)
		return SIPARK_K_END;
	c0 = sipark_at(s, i);
	if (c0 == '\n' || (c0 == '\r' && sipark_at(s, i + 1) == '\n'))
		return SIPARK_K_END;
	if (c0 == ' ' || c0 == '\t')
		return SIPARK_K_FOLD;
	w = sipark_lower8(sipark_load8(s, i));
	if (sipark_name_end(sipark_at(s, i + 1))) {
		switch (w & 0xff) {
		case 'v':
			return SIPARK_K_VIA;
		case 'f':
			return SIPARK_K_FROM;
		case 't':
			return SIPARK_K_TO;
		case 'i':
			return SIPARK_K_CALLID;
		default:
			return SIPARK_K_OTHER;
		}
	}
	if ((w & SIPARK_LOW(2)) == SIPARK_LE8('t', 'o', 0, 0, 0, 0, 0, 0) && sipark_name_end(sipark_at(s, i + 2)))
		return SIPARK_K_TO;
	if ((w & SIPARK_LOW(3)) == SIPARK_LE8('v', 'i', 'a', 0, 0, 0, 0, 0) && sipark_name_end(sipark_at(s, i + 3)))
		return SIPARK_K_VIA;
	if (sipark_name_end(sipark_at(s, i + 4))) {
		if ((w & SIPARK_LOW(4)) == SIPARK_LE8('f', 'r', 'o', 'm', 0, 0, 0, 0))
			return SIPARK_K_FROM;
		if ((w & SIPARK_LOW(4)) == SIPARK_LE8('c', 's', 'e', 'q', 0, 0, 0, 0))
			return SIPARK_K_CSEQ;
		return SIPARK_K_OTHER;
	}
	if ((w & SIPARK_LOW(7)) == SIPARK_LE8('c', 'a', 'l', 'l', '-', 'i', 'd', 0) &&
	    sipark_name_end(sipark_at(s, i + 7)))
		return SIPARK_K_CALLID;
	if (w == SIPARK_LE8('r', 'e', 'p', 'l', 'a', 'c', 'e', 's') && sipark_name_end(sipark_at(s, i + 8)))
		return SIPARK_K_REPLACES;
	return SIPARK_K_OTHER;
}

/* The '\n' at s[i] ends a line: records it if the 503 copies it, and reads
 * the kind of the next. 0: go on; 1: the headers end here; -1: a request
 * the 503 is not built for (a folded line in a header it copies, more
 * than SIPARK_MAX_VIA Via lines, a repeated From, To, Call-ID or CSeq:
 * the worker answers those). */
__noinline int sipark_note_line(struct sipark_plan *pl, const struct sipark_scratch *s, __u32 i, __u32 len)
{
	__u32 kind;
	__u32 next;
	__u32 n;

	if (!pl || !s || i >= SIPARK_MAX_PAYLOAD || len > SIPARK_MAX_PAYLOAD)
		return -1;
	kind = pl->kind;
	next = sipark_line_kind(s, i + 1, len);
	if (next == SIPARK_K_FOLD)
		return kind == SIPARK_K_OTHER ? 0 : -1;
	if (kind == SIPARK_K_VIA) {
		n = pl->n_via;
		if (n >= SIPARK_MAX_VIA)
			return -1;
		pl->via[n & (SIPARK_MAX_VIA - 1)][0] = pl->start;
		pl->via[n & (SIPARK_MAX_VIA - 1)][1] = i + 1;
		pl->n_via = n + 1;
	} else if (kind >= SIPARK_K_FROM && kind <= SIPARK_K_CSEQ) {
		if (pl->seen & (1u << kind))
			return -1;
		pl->line[(kind - SIPARK_K_FROM) & 3][0] = pl->start;
		pl->line[(kind - SIPARK_K_FROM) & 3][1] = i + 1;
	}
	pl->seen |= 1u << (kind & 15);
	if (next == SIPARK_K_END)
		return 1;
	pl->kind = next;
	pl->start = i + 1;
	return 0;
}

/* The line ends ('\n') among the eight bytes s[base..base+8), each
 * handed to sipark_note_line in order; its result when it is not 0, -1
 * past len. */
__noinline int sipark_note_word(struct sipark_plan *pl, const struct sipark_scratch *s, __u32 base, __u32 len)
{
	if (!pl || !s || base > SIPARK_MAX_PAYLOAD || len > SIPARK_MAX_PAYLOAD)
		return -1;
	for (__u32 k = 0; k < 8; k++) {
		int r;

		if (base + k >= len)
			return -1;
		if (sipark_at(s, base + k) != '\n')
			continue;
		r = sipark_note_line(pl, s, base + k, len);
		if (r != 0)
			return r;
	}
	return 0;
}

/* Reads the header section of s[0..len) into pl. 1 when it ended within
 * len and the 503 can be built from it, else 0 or -1. Eight bytes at a
 * time: an aligned word of the scratch buffer is tested for a '\n' byte
 * without a branch per byte (bytes past len are stale, and
 * sipark_note_word stops at len). */
__noinline int sipark_scan(struct sipark_plan *pl, const struct sipark_scratch *s, __u32 len)
{
	if (!pl || !s || len > SIPARK_MAX_PAYLOAD)
		return -1;
	pl->kind = SIPARK_K_OTHER; /* the request line */
	pl->start = 0;
	pl->n_via = 0;
	pl->seen = 0;
	for (__u32 w = 0; w < (SIPARK_MAX_PAYLOAD + 7) / 8; w++) {
		__u32 base = w * 8;
		__u64 x;
		int r;

		if (base >= len)
			return -1;
		x = *(const __u64 *)&s->buf[base & (SIPARK_SCRATCH_MASK & ~7u)] ^ (SIPARK_ONES8 * '\n');
		if (((x - SIPARK_ONES8) & ~x & SIPARK_HIGH8) == 0)
			continue;
		r = sipark_note_word(pl, s, base, len);
		if (r != 0)
			return r;
	}
	return -1;
}

/* Longest To line whose tag XDP looks for; a longer one is left to the
 * worker (the loops below stay short for the verifier). */
#define SIPARK_TO_MAX 256

/* One past the last '>' of s[p..end), or p when there is none. Searched
 * backwards, so that the loop only exits (no state carried across
 * iterations for the verifier to tell apart). */
__noinline __u32 sipark_after_angle(const struct sipark_scratch *s, __u32 p, __u32 end)
{
	if (!s || p > SIPARK_MAX_PAYLOAD || end > SIPARK_MAX_PAYLOAD)
		return p;
	for (__u32 i = 1; i <= SIPARK_TO_MAX; i++) {
		if (end < p + i)
			return p;
		if (sipark_at(s, end - i) == '>')
			return end - i + 1;
	}
	return p;
}

/* Whether s[j..] is ";tag=" ("tag" in any case). */
__noinline int sipark_is_tag_param(const struct sipark_scratch *s, __u32 j)
{
	__u64 tag;

	if (!s || j > SIPARK_MAX_PAYLOAD)
		return 0;
	tag = (sipark_load8(s, j) | SIPARK_LE8(0, 0x20, 0x20, 0x20, 0, 0, 0, 0)) & SIPARK_LOW(5);
	return tag == SIPARK_LE8(';', 't', 'a', 'g', '=', 0, 0, 0);
}

/* The offset of the tag parameter's value in the To line s[p..end), -1
 * when it has none, -2 when the line is longer than SIPARK_TO_MAX. The
 * parameters of the header follow the last '>' (a name-addr), or the
 * start of the value (an addr-spec). */
__noinline int sipark_to_tag(const struct sipark_scratch *s, __u32 p, __u32 end)
{
	__u32 from;

	if (!s || p > SIPARK_MAX_PAYLOAD || end > SIPARK_MAX_PAYLOAD)
		return -1;
	if (end > p + SIPARK_TO_MAX)
		return -2;
	from = sipark_after_angle(s, p, end);
	if (from > SIPARK_MAX_PAYLOAD)
		return -1;
	for (__u32 i = 0; i < SIPARK_TO_MAX; i++) {
		__u32 j = from + i;

		if (j + 5 > end)
			return -1;
		if (sipark_at(s, j) == ';' && sipark_is_tag_param(s, j))
			return (int)(j + 5);
	}
	return -1;
}

/* Where the value of the header line s[p..end) starts: after the colon
 * (within the first 16 bytes) and white space; -1 when there is none. */
__noinline int sipark_value_start(const struct sipark_scratch *s, __u32 p, __u32 end)
{
	__u32 v = 0;

	if (!s || p > SIPARK_MAX_PAYLOAD || end > SIPARK_MAX_PAYLOAD)
		return -1;
	for (__u32 i = 0; i < 16; i++) {
		if (p + i >= end)
			return -1;
		if (sipark_at(s, p + i) == ':') {
			v = p + i + 1;
			break;
		}
	}
	if (v == 0)
		return -1;
	for (__u32 i = 0; i < 16; i++) {
		__u8 c = sipark_at(s, v + i);

		if (v + i >= end)
			return -1;
		if (c != ' ' && c != '\t')
			return (int)(v + i);
	}
	return -1;
}

/* The Call-ID's value in the line s[p..end): after the colon and white
 * space, up to trailing white space and the line end. Returns start << 16
 * | length, or -1 when it is empty. */
__noinline long long sipark_callid_value(const struct sipark_scratch *s, __u32 p, __u32 end)
{
	int v = sipark_value_start(s, p, end);

	if (!s || v < 0 || v > SIPARK_MAX_PAYLOAD || end > SIPARK_MAX_PAYLOAD)
		return -1;
	for (__u32 i = 0; i < 16; i++) {
		__u8 c;

		if (end <= (__u32)v)
			return -1;
		c = sipark_at(s, end - 1);
		if (c != '\r' && c != '\n' && c != ' ' && c != '\t')
			return ((long long)v << 16) | (end - (__u32)v);
		end--;
	}
	return -1;
}

/* sipark_admission_hash of the Call-ID s[p..p+n) (n clamped to 255) and
 * the CSeq number cseq. */
__noinline __u32 sipark_admission_hash_at(const struct sipark_scratch *s, __u32 p, __u32 n, __u32 key, __u32 cseq)
{
	if (!s || p > SIPARK_MAX_PAYLOAD)
		return 0;
	return sipark_admission_hash(&s->buf[p], n, key, cseq);
}

/* The CSeq number in the line s[p..end): 1 to 10 digits at the start of
 * the value, at most 2^32 - 1 (CSeq::parse). -1 otherwise. */
__noinline long long sipark_cseq_number(const struct sipark_scratch *s, __u32 p, __u32 end)
{
	int v = sipark_value_start(s, p, end);
	__u64 n = 0;
	__u32 digits = 0;

	__u32 at;

	if (!s || v < 0 || v > SIPARK_MAX_PAYLOAD || end > SIPARK_MAX_PAYLOAD)
		return -1;
	/* Bounds the verifier can see (clang would drop a mask it knows is a
	 * no-op without the barrier). */
	at = (__u32)v;
	asm volatile("" : "+r"(at));
	at &= SIPARK_SCRATCH_MASK;
	for (__u32 k = 0; k < 10; k++) {
		__u32 i = at + k;
		__u8 c = sipark_at(s, i);

		if (i >= end || c < '0' || c > '9')
			break;
		n = n * 10 + (c - '0');
		digits++;
	}
	if (digits == 0 || n > 0xffffffffull)
		return -1;
	return (long long)n;
}

/* Whether the Request-URI at s[p..len) has a user part that starts with
 * the retrieve feature code (front.rs intent(): a case-sensitive prefix
 * of the user as received). */
__noinline int sipark_is_retrieve_uri(const struct sipark_scratch *s, __u32 p, __u32 len,
				      const struct sipark_shed_cfg *sc)
{
	__u32 u;
	__u32 n;
	int rest;
	int at;

	if (!s || !sc || p > 16 || len > SIPARK_MAX_PAYLOAD)
		return 0;
	n = sc->retrieve_len;
	if (n == 0 || n > SIPARK_FAC_MAX)
		return 0;
	rest = sipark_sip_rest(s, p);
	if (rest < 0)
		return 0;
	u = (__u32)rest;
	at = sipark_find_at(s, u, len);
	if (at < 0 || (__u32)at < u + n)
		return 0;
	for (__u32 i = 0; i < SIPARK_FAC_MAX; i++) {
		if (i >= n)
			break;
		if (sipark_at(s, u + i) != sc->retrieve[i])
			return 0;
	}
	return 1;
}

/* The shed entry of the shard that owns tenant hash h, or NULL. */
static __always_inline const struct sipark_shed *sipark_shed_of(const struct sipark_cfg *cfg, __u32 h)
{
	__u32 shard = sipark_reduce(h, cfg->n_shards);

	return bpf_map_lookup_elem(&sipark_shed, &shard);
}

/* Whether the ACK in s[0..len) answers an overload 503: its To tag starts
 * with "ovl-". */
__noinline int sipark_is_shed_ack(const struct sipark_scratch *s, __u32 len)
{
	struct sipark_plan *pl;
	__u32 zero = 0;
	__u32 to_start;
	__u32 to_end;
	int tag;

	if (!s || len > SIPARK_MAX_PAYLOAD)
		return 0;
	pl = bpf_map_lookup_elem(&sipark_plan, &zero);
	if (!pl || sipark_scan(pl, s, len) != 1 || !(pl->seen & (1u << SIPARK_K_TO)))
		return 0;
	to_start = pl->line[SIPARK_K_TO - SIPARK_K_FROM][0];
	to_end = pl->line[SIPARK_K_TO - SIPARK_K_FROM][1];
	tag = sipark_to_tag(s, to_start, to_end);
	if (tag < 0 || (__u32)tag > SIPARK_MAX_PAYLOAD)
		return 0;
	return sipark_at(s, tag) == 'o' && sipark_at(s, tag + 1) == 'v' && sipark_at(s, tag + 2) == 'l' &&
	       sipark_at(s, tag + 3) == '-';
}

/* Appends payload bytes [from, from + n) of the frame to o at pos; returns
 * the position after them, or -1. Global: verified once, whatever the
 * caller's loop. */
__noinline int sipark_put_frame(struct xdp_md *ctx, struct sipark_out *o, __u32 pos, __u32 from, __u32 n)
{
	if (!ctx || !o || n == 0 || n > SIPARK_MAX_PAYLOAD || pos > SIPARK_MAX_PAYLOAD)
		return -1;
	if (bpf_xdp_load_bytes(ctx, from, &o->buf[pos & SIPARK_OUT_MASK], n) < 0)
		return -1;
	return (int)(pos + n);
}

/* pos = sipark_put_frame(...), or return 0 from the caller. */
#define SIPARK_PUT_FRAME(ctx, o, pos, from, n)                          \
	do {                                                            \
		int at_ = sipark_put_frame((ctx), (o), (pos), (from), (n)); \
		if (at_ < 0)                                            \
			return 0;                                       \
		(pos) = (__u32)at_ & SIPARK_OUT_MASK;                   \
	} while (0)

/* Appends the string literal lit (its bytes unrolled into stores). */
#define SIPARK_PUT(o, pos, lit)                                                  \
	do {                                                                     \
		const char sipark_lit_[] = lit;                                  \
		_Pragma("unroll") for (__u32 k_ = 0; k_ < sizeof(lit) - 1; k_++) \
			(o)->buf[((pos) + k_) & (SIPARK_OUT_SIZE - 1)] = sipark_lit_[k_]; \
		(pos) += sizeof(lit) - 1;                                        \
	} while (0)

static __always_inline __u8 sipark_hex(__u32 v)
{
	v &= 15;
	return v < 10 ? '0' + v : 'a' + v - 10;
}

/* Writes the 503 for the request in s (sipark_plan holds its lines, and
 * its To has no tag) into sipark_out, for the payload at payload_off in
 * the frame. Returns its length, or 0
 * when it cannot be built (the worker answers then). */
__noinline __u32 sipark_build_503(struct xdp_md *ctx, const struct sipark_scratch *s, __u32 payload_off, __u32 hash,
				  __u32 retry)
{
	const struct sipark_plan *pl;
	struct sipark_out *o;
	__u32 zero = 0;
	__u32 pos = 0;
	__u32 n_via;
	__u32 end;
	__u32 digits = 1;

	pl = bpf_map_lookup_elem(&sipark_plan, &zero);
	o = bpf_map_lookup_elem(&sipark_out, &zero);
	if (!ctx || !o || !pl || !s || payload_off > 128)
		return 0;
	SIPARK_PUT(o, pos, "SIP/2.0 503 Service Unavailable\r\n");
	n_via = pl->n_via;
	for (__u32 k = 0; k < SIPARK_MAX_VIA; k++) {
		__u32 a;
		__u32 b;

		if (k >= n_via)
			break;
		a = pl->via[k][0];
		b = pl->via[k][1];
		if (b <= a || b > SIPARK_MAX_PAYLOAD)
			return 0;
		SIPARK_PUT_FRAME(ctx, o, pos, payload_off + a, b - a);
	}
	for (__u32 k = 0; k < 4; k++) {
		__u32 a = pl->line[k][0];
		__u32 b = pl->line[k][1];

		if (b <= a || b > SIPARK_MAX_PAYLOAD)
			return 0;
		if (k != SIPARK_K_TO - SIPARK_K_FROM) {
			SIPARK_PUT_FRAME(ctx, o, pos, payload_off + a, b - a);
			continue;
		}
		/* The To line (the caller saw it has no tag) without its line
		 * end, then ";tag=ovl-<hash>". */
		end = b;
		for (__u32 i = 0; i < 2; i++) {
			__u8 c = sipark_at(s, end - 1);

			if (end > a && (c == '\n' || c == '\r'))
				end--;
		}
		if (end <= a)
			return 0;
		SIPARK_PUT_FRAME(ctx, o, pos, payload_off + a, end - a);
		if (pos > SIPARK_MAX_PAYLOAD)
			return 0;
		SIPARK_PUT(o, pos, ";tag=ovl-");
		for (__u32 i = 0; i < 8; i++)
			o->buf[(pos + i) & (SIPARK_OUT_SIZE - 1)] = sipark_hex(hash >> (28 - 4 * i));
		pos += 8;
		SIPARK_PUT(o, pos, "\r\n");
	}
	if (pos > SIPARK_MAX_PAYLOAD)
		return 0;
	SIPARK_PUT(o, pos, "Retry-After: ");
	for (__u32 v = retry; v >= 10 && digits < 5; v /= 10)
		digits++;
	for (__u32 i = 0; i < 5; i++) {
		if (i >= digits)
			break;
		o->buf[(pos + digits - 1 - i) & (SIPARK_OUT_SIZE - 1)] = '0' + retry % 10;
		retry /= 10;
	}
	pos += digits;
	SIPARK_PUT(o, pos, "\r\nServer: sipark\r\nContent-Length: 0\r\n\r\n");
	if (pos > SIPARK_MAX_PAYLOAD)
		return 0;
	return pos;
}

/* Whether the new request in s[0..len) is shed by the share refuse; if
 * so, sipark_out holds the 503 and its length is returned. at: the
 * Request-URI's offset (bits 0..15) and the payload's in the frame (bits
 * 16..31).
 * INVITEs and REGISTERs only; not a retrieve (feature code or Replaces),
 * not one with a To tag, not one the 503 cannot be built for. */
__noinline __u32 sipark_shed_request(struct xdp_md *ctx, const struct sipark_scratch *s, __u32 len, __u32 at,
				     __u32 refuse)
{
	const struct sipark_shed_cfg *sc;
	struct sipark_plan *pl;
	__u32 start = at & 0xffff;
	__u32 payload_off = at >> 16;
	__u32 zero = 0;
	__u32 a;
	__u32 b;
	__u32 hash;
	__u32 retry;
	long long cid;
	long long seq;
	int is_invite;

	if (!ctx || !s || len > SIPARK_MAX_PAYLOAD || start > 16)
		return 0;
	sc = bpf_map_lookup_elem(&sipark_shed_cfg, &zero);
	pl = bpf_map_lookup_elem(&sipark_plan, &zero);
	if (!sc || !pl)
		return 0;
	is_invite = start == 7 && sipark_at(s, 0) == 'I' && sipark_at(s, 2) == 'V';
	if (is_invite && sipark_is_retrieve_uri(s, start, len, sc))
		return 0;
	if (sipark_scan(pl, s, len) != 1)
		return 0;
	if ((pl->seen & SIPARK_NEEDED) != SIPARK_NEEDED || (pl->seen & (1u << SIPARK_K_REPLACES)))
		return 0;
	a = pl->line[SIPARK_K_TO - SIPARK_K_FROM][0];
	b = pl->line[SIPARK_K_TO - SIPARK_K_FROM][1];
	if (sipark_to_tag(s, a, b) != -1)
		return 0;
	a = pl->line[SIPARK_K_CALLID - SIPARK_K_FROM][0];
	b = pl->line[SIPARK_K_CALLID - SIPARK_K_FROM][1];
	cid = sipark_callid_value(s, a, b);
	if (cid < 0)
		return 0;
	a = pl->line[SIPARK_K_CSEQ - SIPARK_K_FROM][0];
	b = pl->line[SIPARK_K_CSEQ - SIPARK_K_FROM][1];
	seq = sipark_cseq_number(s, a, b);
	if (seq < 0)
		return 0;
	hash = sipark_admission_hash_at(s, (__u32)(cid >> 16), (__u32)(cid & 0xffff), sc->key, (__u32)seq);
	if ((hash >> 16) >= refuse)
		return 0;
	retry = sc->retry_min;
	if (sc->retry_max > sc->retry_min)
		retry += bpf_get_prandom_u32() % ((__u32)sc->retry_max - sc->retry_min + 1);
	return sipark_build_503(ctx, s, payload_off, hash, retry);
}

/* One's-complement sum folded to 16 bits, complemented (0 becomes 0xffff
 * for UDP, where 0 means "no checksum"). */
static __always_inline __u16 sipark_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Turns the frame into the 503 in sipark_out (out_len bytes): the payload
 * replaced, addresses and ports swapped, lengths and checksums set.
 * l3_off: the IP header's offset (14 or 18); v6: IPv6, else IPv4 with a
 * 20-byte header. Returns 0 when it is ready to be sent back, -1 when the
 * frame is untouched (it can be passed), -2 when it was changed part-way
 * (it must not be passed; it cannot happen once the bounds above hold).
 * Global, so verified once: it changes the packet's size, which the
 * verifier follows into its callers since 6.13 (the caller holds no packet
 * pointer across the call, so earlier kernels are safe too). */
__noinline int sipark_turn_around(struct xdp_md *ctx, __u32 l3_off, int v6, __u32 payload_off, __u32 out_len)
{
	struct sipark_out *o;
	struct ethhdr *eth;
	struct udphdr *udp;
	void *data;
	void *data_end;
	__u8 mac[ETH_ALEN];
	__u32 zero = 0;
	__u32 padded;
	__u16 ulen;
	__s64 sum;
	int delta;

	/* A global function's return value is an unknown 64-bit scalar to the
	 * verifier: the mask gives it bounds it can follow. */
	out_len &= SIPARK_OUT_MASK;
	o = bpf_map_lookup_elem(&sipark_out, &zero);
	if (!ctx || !o || out_len == 0 || out_len > SIPARK_MAX_PAYLOAD || l3_off < 14 || l3_off > 18 ||
	    payload_off > 128)
		return -1;
	delta = (int)(payload_off + out_len) - (int)bpf_xdp_get_buff_len(ctx);
	if (bpf_xdp_adjust_tail(ctx, delta) < 0)
		return -1;
	if (bpf_xdp_store_bytes(ctx, payload_off, o->buf, out_len) < 0)
		return -2;
	/* Zero padding to a multiple of 4 for bpf_csum_diff. */
	for (__u32 i = 0; i < 3; i++)
		o->buf[(out_len + i) & (SIPARK_OUT_SIZE - 1)] = 0;
	padded = (out_len + 3) & ~3u;
	sum = bpf_csum_diff(0, 0, (__be32 *)o->buf, padded > 512 ? 512 : padded, 0);
	if (sum >= 0 && padded > 512)
		sum = bpf_csum_diff(0, 0, (__be32 *)&o->buf[512], padded - 512 > 512 ? 512 : padded - 512, sum);
	if (sum >= 0 && padded > 1024)
		sum = bpf_csum_diff(0, 0, (__be32 *)&o->buf[1024], padded - 1024 > 512 ? 512 : padded - 1024, sum);
	if (sum < 0)
		return -2;
	ulen = bpf_htons((__u16)(sizeof(struct udphdr) + out_len));

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return -2;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	if (v6) {
		struct ipv6hdr *ip6 = data + l3_off;
		struct in6_addr a;

		if ((void *)(ip6 + 1) > data_end)
			return -2;
		udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > data_end)
			return -2;
		a = ip6->saddr;
		ip6->saddr = ip6->daddr;
		ip6->daddr = a;
		ip6->payload_len = ulen;
		ip6->hop_limit = 64;
		sum = bpf_csum_diff(0, 0, (__be32 *)&ip6->saddr, 32, sum);
		if (sum < 0)
			return -2;
		sum += (__u64)ulen + bpf_htons(IPPROTO_UDP);
	} else {
		struct iphdr *ip = data + l3_off;
		__be32 a;

		if ((void *)(ip + 1) > data_end)
			return -2;
		udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > data_end)
			return -2;
		a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		ip->tot_len = bpf_htons((__u16)(sizeof(struct iphdr) + sizeof(struct udphdr) + out_len));
		ip->ttl = 64;
		ip->check = 0;
		ip->check = sipark_fold((__u64)bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0));
		sum += (__u64)ip->saddr + (__u64)ip->daddr + (__u64)bpf_htons(IPPROTO_UDP) + (__u64)ulen;
	}
	{
		__be16 port = udp->source;

		udp->source = udp->dest;
		udp->dest = port;
	}
	udp->len = ulen;
	udp->check = 0;
	sum += (__u64)udp->source + (__u64)udp->dest + (__u64)ulen;
	udp->check = sipark_fold(sum) ? sipark_fold(sum) : 0xffff;
	return 0;
}

/* "xdp.frags" (5.18): the program reads the payload with
 * bpf_xdp_load_bytes, so it may be attached to multi-buffer (jumbo) devices. */
SEC("xdp.frags")
int sipark_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct sipark_lpm_key key = { .prefixlen = 128 };
	const struct sipark_tenant *tenant;
	const struct sipark_cfg *cfg;
	struct sipark_scratch *s;
	struct ethhdr *eth = data;
	struct udphdr *udp;
	__u32 zero = 0;
	__u32 off = sizeof(*eth);
	__u32 l3_off;
	__u32 payload_off;
	__u32 out_len;
	int ip_opts = 0;
	__u32 plen;
	__u64 buff_len;
	__u32 rate;
	__u32 burst;
	__u32 h;
	__u16 proto;
	__u16 dport;
	__u16 ulen;
	int more_frags = 0;
	int tcp = 0;
	int ours = 0;
	int v6 = 0;
	int start;
	long long route;

	if ((void *)(eth + 1) > data_end)
		return verdict(SIPARK_PASS_NOT_OURS);
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct sipark_vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return verdict(SIPARK_PASS_NOT_OURS);
		proto = vh->proto;
		off += sizeof(*vh);
		/* A second tag (QinQ): may be SIP, cannot be read here. */
		if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
			return verdict(SIPARK_PASS_UNPARSED);
	}

	l3_off = off;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		__u32 ihl;
		__u16 frag;

		if ((void *)(ip + 1) > data_end)
			return verdict(SIPARK_PASS_NOT_OURS);
		if (ip->version != 4 || ip->ihl < 5 || (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP))
			return verdict(SIPARK_PASS_NOT_OURS);
		tcp = ip->protocol == IPPROTO_TCP;
		frag = bpf_ntohs(ip->frag_off);
		/* A later fragment has no UDP header. */
		if (frag & 0x1fff)
			return verdict(SIPARK_PASS_UNPARSED);
		more_frags = (frag & 0x2000) != 0;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip->saddr, 4);
		ihl = (__u32)ip->ihl * 4;
		ip_opts = ihl != sizeof(*ip);
		off += ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return verdict(SIPARK_PASS_NOT_OURS);
		if (ip6->nexthdr != IPPROTO_UDP && ip6->nexthdr != IPPROTO_TCP)
			return verdict(ipv6_ext(ip6->nexthdr) ? SIPARK_PASS_UNPARSED : SIPARK_PASS_NOT_OURS);
		tcp = ip6->nexthdr == IPPROTO_TCP;
		__builtin_memcpy(key.addr, &ip6->saddr, 16);
		v6 = 1;
		off += sizeof(*ip6);
	} else {
		return verdict(SIPARK_PASS_NOT_OURS);
	}

	/* TCP's ports are where UDP's are: the first 8 bytes suffice for both. */
	udp = data + off;
	if ((void *)(udp + 1) > data_end)
		return verdict(SIPARK_PASS_NOT_OURS);
	cfg = bpf_map_lookup_elem(&sipark_cfg, &zero);
	if (!cfg)
		return verdict(SIPARK_PASS_NOT_OURS);
	dport = bpf_ntohs(udp->dest);
	for (__u32 i = 0; i < SIPARK_MAX_PORTS; i++) {
		if (i >= cfg->n_ports)
			break;
		if (cfg->ports[i] == dport) {
			ours = 1;
			break;
		}
	}
	if (!ours)
		return verdict(SIPARK_PASS_NOT_OURS);

	/* 1. Blocklist. */
	if (bpf_map_lookup_elem(&sipark_block, &key))
		return verdict(SIPARK_DROP_BLOCKED);
	/* 1b. Banned for failed digest responses (until the ban ends). */
	if (sipark_banned(&key, v6))
		return verdict(SIPARK_DROP_BANNED);
	/* TCP (and TLS) to our ports: only the two checks above; the stream
	 * thread frames what passes. A banned guesser's segments, handshake
	 * included, are dropped here. */
	if (tcp)
		return verdict(SIPARK_PASS_NOT_OURS);
	/* The first fragment of a larger datagram: the payload is incomplete. */
	if (more_frags)
		return verdict(SIPARK_PASS_UNPARSED);

	/* 2. Copy the payload; is it SIP? */
	ulen = bpf_ntohs(udp->len);
	if (ulen <= sizeof(*udp))
		return verdict(SIPARK_DROP_NOT_SIP);
	plen = ulen - sizeof(*udp);
	payload_off = off + sizeof(*udp);
	buff_len = bpf_xdp_get_buff_len(ctx);
	if (buff_len <= payload_off)
		return verdict(SIPARK_DROP_NOT_SIP);
	if (plen > buff_len - payload_off)
		plen = buff_len - payload_off;
	if (plen > SIPARK_MAX_PAYLOAD)
		plen = SIPARK_MAX_PAYLOAD;
	if (plen == 0)
		return verdict(SIPARK_DROP_NOT_SIP);
	s = bpf_map_lookup_elem(&sipark_scratch, &zero);
	if (!s)
		return verdict(SIPARK_PASS_UNPARSED);
	if (bpf_xdp_load_bytes(ctx, payload_off, s->buf, plen) < 0)
		return verdict(SIPARK_PASS_UNPARSED);
	s->buf[plen & SIPARK_SCRATCH_MASK] = 0;
	start = sipark_start_line(s);
	if (start == SIPARK_START_NOT_SIP)
		return verdict(SIPARK_DROP_NOT_SIP);

	/* 3. Scanners (requests and responses). */
	if (sipark_is_scanner(s, plen))
		return verdict(SIPARK_DROP_SCANNER);

	/* 4. Responses. */
	if (start < 0)
		return verdict(SIPARK_PASS);

	/* 5. Requests: the Request-URI names the tenant, or one of our dialogs.
	 * An unreadable Request-URI counts as the empty host (as a tel: URI
	 * does in route.rs), so it is refused in strict mode and rate-limited
	 * under the default rate otherwise. */
	route = sipark_ruri_route(s, (__u32)start, plen);
	if (route != SIPARK_RURI_INVALID && SIPARK_RURI_KIND(route) == SIPARK_RURI_DIALOG)
		return verdict(SIPARK_PASS);
	h = route == SIPARK_RURI_INVALID ? SIPARK_FNV_OFFSET : SIPARK_RURI_VALUE(route);
	tenant = bpf_map_lookup_elem(&sipark_tenants, &h);
	if (!tenant && start == 9 && sipark_at(s, 0) == 'R') {
		/* REGISTER: route.rs takes the tenant from the To host, and a
		 * phone may register to the registrar's own address. A REGISTER
		 * whose R-URI host is not a tenant is left to the shard (which
		 * answers 404 by its To host), through one shared bucket at the
		 * default rate so that such REGISTERs cannot flood it. */
		h = SIPARK_UNATTRIBUTED;
	} else if (!tenant && (cfg->flags & SIPARK_FLAG_STRICT)) {
		return verdict(SIPARK_DROP_UNKNOWN_TENANT);
	}
	/* ACK (of a non-2xx) and CANCEL belong to a transaction that already
	 * passed: limiting them would only make sipark retransmit its final
	 * response, or leave a cancelled INVITE ringing. */
	if (start == 4 && sipark_at(s, 0) == 'A') {
		/* 6a. The ACK of an overload 503 finishes nothing the worker
		 * holds (the 503 was stateless). */
		const struct sipark_shed *sh = sipark_shed_of(cfg, h);

		if (h != SIPARK_UNATTRIBUTED && sh && sh->ack_until_ns > bpf_ktime_get_ns() &&
		    sipark_is_shed_ack(s, plen))
			return verdict(SIPARK_DROP_SHED_ACK);
		return verdict(SIPARK_PASS);
	}
	if (start == 7 && sipark_at(s, 0) == 'C')
		return verdict(SIPARK_PASS);
	if (tenant && tenant->rate) {
		rate = tenant->rate;
		burst = tenant->burst;
	} else {
		rate = cfg->default_rate;
		burst = cfg->default_burst;
	}
	if (rate && !sipark_admit(h, rate, burst))
		return verdict(SIPARK_DROP_RATE);
	/* 6b. Overload: a new INVITE or REGISTER its shard's share refuses
	 * is answered 503 from here (IPv4 without options, or IPv6). */
	if (h != SIPARK_UNATTRIBUTED && !ip_opts &&
	    ((start == 7 && sipark_at(s, 0) == 'I' && sipark_at(s, 2) == 'V') || (start == 9 && sipark_at(s, 0) == 'R'))) {
		const struct sipark_shed *sh = sipark_shed_of(cfg, h);

		if (sh && sh->refuse) {
			out_len = sipark_shed_request(ctx, s, plen, (__u32)start | payload_off << 16, sh->refuse);
			if (out_len) {
				int r = sipark_turn_around(ctx, l3_off, v6, payload_off, out_len);

				if (r == 0)
					return verdict(SIPARK_TX_SHED);
				if (r < -1)
					return XDP_ABORTED;
			}
		}
	}
	return verdict(SIPARK_PASS);
}
