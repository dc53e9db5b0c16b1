// SPDX-License-Identifier: Apache-2.0
/*
 * parity.bpf.c - sipark_parity, a test-only XDP program run through
 * BPF_PROG_TEST_RUN (never attached). It hashes a domain with sipark.h's
 * sipark_tenant_hash and sipark_reduce, so that tests/bpf can compare the
 * kernel's results with engine/src/proto/route.rs.
 *
 * Input (the "packet"): a little-endian u16 length, then the domain bytes,
 * zero-padded by the caller to the 14 bytes BPF_PROG_TEST_RUN requires of
 * an XDP buffer. A length over SIPARK_PARITY_MAX or past the data is
 * rejected (XDP_ABORTED). Output: sipark_par_out[0].
 *
 * Kernel: bpf_xdp_load_bytes 5.18, bounded loops 5.3.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sipark.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sipark_parity_out);
} sipark_par_out SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sipark_scratch);
} sipark_scratch SEC(".maps");

#define SIPARK_PARITY_HDR 2

SEC("xdp")
int sipark_parity(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct sipark_parity_out *out;
	struct sipark_scratch *s;
	__u8 *hdr = data;
	__u32 zero = 0;
	__u32 len;
	__u32 h;

	if ((void *)(hdr + SIPARK_PARITY_HDR) > data_end)
		return XDP_ABORTED;
	len = (__u32)hdr[0] | ((__u32)hdr[1] << 8);
	if (len > SIPARK_PARITY_MAX || SIPARK_PARITY_HDR + len > bpf_xdp_get_buff_len(ctx))
		return XDP_ABORTED;
	s = bpf_map_lookup_elem(&sipark_scratch, &zero);
	out = bpf_map_lookup_elem(&sipark_par_out, &zero);
	if (!s || !out)
		return XDP_ABORTED;
	if (len > 0 && bpf_xdp_load_bytes(ctx, SIPARK_PARITY_HDR, s->buf, len) < 0)
		return XDP_ABORTED;
	h = sipark_tenant_hash(s->buf, len);
	out->hash = h;
	out->len = len < SIPARK_MAX_DOMAIN ? len : SIPARK_MAX_DOMAIN;
	out->shards[0] = sipark_reduce(h, 1);
	out->shards[1] = sipark_reduce(h, 2);
	out->shards[2] = sipark_reduce(h, 4);
	out->shards[3] = sipark_reduce(h, 16);
	out->shards[4] = sipark_reduce(h, 64);
	out->shards[5] = sipark_reduce(h, 1024);
	return XDP_PASS;
}
