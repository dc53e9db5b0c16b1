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
		return XDP_DROP;
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
	__u32 payload_off;
	__u32 plen;
	__u64 buff_len;
	__u32 rate;
	__u32 burst;
	__u32 h;
	__u16 proto;
	__u16 dport;
	__u16 ulen;
	int more_frags = 0;
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

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		__u32 ihl;
		__u16 frag;

		if ((void *)(ip + 1) > data_end)
			return verdict(SIPARK_PASS_NOT_OURS);
		if (ip->version != 4 || ip->ihl < 5 || ip->protocol != IPPROTO_UDP)
			return verdict(SIPARK_PASS_NOT_OURS);
		frag = bpf_ntohs(ip->frag_off);
		/* A later fragment has no UDP header. */
		if (frag & 0x1fff)
			return verdict(SIPARK_PASS_UNPARSED);
		more_frags = (frag & 0x2000) != 0;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip->saddr, 4);
		ihl = (__u32)ip->ihl * 4;
		off += ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;

		if ((void *)(ip6 + 1) > data_end)
			return verdict(SIPARK_PASS_NOT_OURS);
		if (ip6->nexthdr != IPPROTO_UDP)
			return verdict(ipv6_ext(ip6->nexthdr) ? SIPARK_PASS_UNPARSED : SIPARK_PASS_NOT_OURS);
		__builtin_memcpy(key.addr, &ip6->saddr, 16);
		v6 = 1;
		off += sizeof(*ip6);
	} else {
		return verdict(SIPARK_PASS_NOT_OURS);
	}

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
	if ((start == 4 && sipark_at(s, 0) == 'A') || (start == 7 && sipark_at(s, 0) == 'C'))
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
	return verdict(SIPARK_PASS);
}
