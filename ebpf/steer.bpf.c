// SPDX-License-Identifier: Apache-2.0
/*
 * steer.bpf.c - sipark_steer, the sk_reuseport program of sipark's
 * SO_REUSEPORT group: it picks the socket of the shard that owns each
 * datagram, the same choice engine/src/proto/route.rs makes.
 *
 *  - responses: the shard in the first "branch=z9hG4bKsp<digits>." (the
 *    top Via of a response to one of sipark's requests);
 *  - requests to one of sipark's Contacts (R-URI user "sp<digits>."): that
 *    shard;
 *  - other requests: reduce(tenant_hash(R-URI host), n_shards).
 *
 * Anything else keeps the kernel's own choice (SK_PASS without selecting),
 * as does a failed bpf_sk_select_reuseport. Counted in sipark_sstats.
 *
 * Kernel: sk_reuseport programs, REUSEPORT_SOCKARRAY and
 * bpf_sk_select_reuseport 4.19; bpf_skb_load_bytes in sk_reuseport 4.19;
 * per-CPU array 4.6; bounded loops 5.3; global functions with pointer
 * arguments 5.12.
 */
#define SIPARK_SIP_PARSE
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sipark.h"

char LICENSE[] SEC("license") = "GPL";

/* Only n_shards is read here. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sipark_cfg);
} sipark_cfg SEC(".maps");

/* Index = shard, value = socket (user space writes the fd). */
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, SIPARK_MAX_SOCKS);
	__type(key, __u32);
	__type(value, __u32);
} sipark_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SIPARK_N_STEER);
	__type(key, __u32);
	__type(value, __u64);
} sipark_sstats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sipark_scratch);
} sipark_scratch SEC(".maps");

/* UDP header length: in an sk_reuseport program the data starts at the
 * UDP header, so the payload starts here. */
#define SIPARK_UDP_HLEN 8

static __always_inline int outcome(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&sipark_sstats, &which);

	if (n)
		*n += 1;
	return SK_PASS;
}

/* route::shard_in_branch at s[p..len): "z9hG4bKsp" (case-sensitive, as
 * the magic cookie is compared in route.rs), 1 to 5 digits, '.'. */
__noinline int sipark_branch_value(const struct sipark_scratch *s, __u32 p, __u32 len)
{
	if (!s || p > SIPARK_MAX_PAYLOAD || len > SIPARK_MAX_PAYLOAD)
		return -1;
	if (sipark_at(s, p) != 'z' || sipark_at(s, p + 1) != '9' || sipark_at(s, p + 2) != 'h' ||
	    sipark_at(s, p + 3) != 'G' || sipark_at(s, p + 4) != '4' || sipark_at(s, p + 5) != 'b' ||
	    sipark_at(s, p + 6) != 'K' || sipark_at(s, p + 7) != 's' || sipark_at(s, p + 8) != 'p')
		return -1;
	return sipark_shard_digits(s, p + 9, len);
}

/* At s[i], "branch=" (name case-insensitive)? Then the shard in its value
 * (-1 when it is not one of ours), else -2. One compare of a word, letters
 * lowercased by OR-ing 0x20 into their bytes only. */
__noinline int sipark_branch_at(const struct sipark_scratch *s, __u32 i, __u32 len)
{
	const __u64 m = SIPARK_LE8(0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0, 0);
	const __u64 p = SIPARK_LE8('b', 'r', 'a', 'n', 'c', 'h', '=', 0);

	if (!s || i > SIPARK_MAX_PAYLOAD || len > SIPARK_MAX_PAYLOAD)
		return -1;
	if ((((sipark_load8(s, i) | m) ^ p) & 0x00ffffffffffffffull) != 0)
		return -2;
	return sipark_branch_value(s, i + 7, len);
}

/* The shard in the first "branch=" of s[0..len), or -1. In a response
 * sipark receives, the first Via is sipark's own. */
__noinline int sipark_branch_shard(const struct sipark_scratch *s, __u32 len)
{
	if (!s || len > SIPARK_MAX_PAYLOAD)
		return -1;
	for (__u32 i = 0; i < SIPARK_MAX_PAYLOAD; i++) {
		int r;

		if (i + 7 > len)
			return -1;
		if ((sipark_at(s, i) | 0x20) != 'b')
			continue;
		r = sipark_branch_at(s, i, len);
		if (r != -2)
			return r;
	}
	return -1;
}

SEC("sk_reuseport")
int sipark_steer(struct sk_reuseport_md *md)
{
	const struct sipark_cfg *cfg;
	struct sipark_scratch *s;
	__u32 zero = 0;
	__u32 plen;
	__u32 n_shards;
	__u32 shard;
	int start;
	long long route;

	cfg = bpf_map_lookup_elem(&sipark_cfg, &zero);
	if (!cfg)
		return outcome(SIPARK_FALLBACK);
	n_shards = cfg->n_shards;
	if (md->len <= SIPARK_UDP_HLEN || n_shards == 0)
		return outcome(SIPARK_FALLBACK);
	plen = md->len - SIPARK_UDP_HLEN;
	if (plen > SIPARK_MAX_PAYLOAD)
		plen = SIPARK_MAX_PAYLOAD;
	if (plen == 0)
		return outcome(SIPARK_FALLBACK);
	s = bpf_map_lookup_elem(&sipark_scratch, &zero);
	if (!s)
		return outcome(SIPARK_FALLBACK);
	if (bpf_skb_load_bytes(md, SIPARK_UDP_HLEN, s->buf, plen) < 0)
		return outcome(SIPARK_FALLBACK);
	s->buf[plen & SIPARK_SCRATCH_MASK] = 0;

	start = sipark_start_line(s);
	if (start == SIPARK_START_NOT_SIP)
		return outcome(SIPARK_FALLBACK);
	if (start == SIPARK_START_RESPONSE) {
		int b = sipark_branch_shard(s, plen);

		if (b < 0)
			return outcome(SIPARK_FALLBACK);
		shard = (__u32)b;
	} else {
		route = sipark_ruri_route(s, (__u32)start, plen);
		if (route == SIPARK_RURI_INVALID)
			return outcome(SIPARK_FALLBACK);
		if (SIPARK_RURI_KIND(route) == SIPARK_RURI_DIALOG)
			shard = SIPARK_RURI_VALUE(route);
		else
			shard = sipark_reduce(SIPARK_RURI_VALUE(route), n_shards);
	}
	if (shard >= n_shards)
		return outcome(SIPARK_FALLBACK);
	/* On failure (no socket at that index, or one from another group) the
	 * kernel falls back to its own hash. */
	if (bpf_sk_select_reuseport(md, &sipark_socks, &shard, 0) != 0)
		return outcome(SIPARK_FALLBACK);
	return outcome(SIPARK_STEERED);
}
