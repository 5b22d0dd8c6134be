// SPDX-License-Identifier: GPL-2.0
/* TCP: smoothed RTT per received segment (tcp_probe), connect latency
 * (inet_sock_set_state SYN_SENT -> ESTABLISHED), retransmits and resets;
 * keyed by the v2 cgroup of the socket, never per connection. */
#include "bpf/kernel_types.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/histogram.h"
#include "bpf/tcp.h"
#include "bpf/sampling.h"

const volatile __u64 np_thresholds[NP_HIST_TABLE]; /* set by the agent before load */

/* Sockets in SYN_SENT: when the SYN left. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* the struct sock pointer */
	__type(value, __u64);
} connecting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct np_tcp_key);
	__type(value, struct np_hist_value);
} tcp_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* 0: tcp_hist full, 1: connecting full */
	__type(key, __u32);
	__type(value, __u64);
} tcp_drops SEC(".maps");

static __always_inline void drop(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&tcp_drops, &which);
	if (n)
		(*n)++;
}

static __always_inline __u64 socket_cgroup(struct sock *sk)
{
	struct cgroup *cg;
	if (bpf_core_field_exists(sk->sk_cgrp_data.cgroup)) {
		cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	} else {
		struct sock_cgroup_data___pre_5_15 *old = (void *)&sk->sk_cgrp_data;
		__u64 val = BPF_CORE_READ(old, val);
		cg = (val & 1) ? 0 : (struct cgroup *)val;
	}
	return cg ? BPF_CORE_READ(cg, kn, id) : 0;
}

static __always_inline void count(struct sock *sk, __u32 kind, __u32 bucket, __u64 value)
{
	struct np_tcp_key key = {.cgroup_id = socket_cgroup(sk), .kind = kind, .bucket = bucket};
	struct np_hist_value *v = bpf_map_lookup_elem(&tcp_hist, &key);
	if (!v) {
		struct np_hist_value zero = {};
		bpf_map_update_elem(&tcp_hist, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&tcp_hist, &key);
		if (!v) {
			drop(0);
			return;
		}
	}
	v->count++;
	v->sum_ns += value;
}

/* A segment's RTT sample is the one event here that sampling leaves out:
 * connects, retransmits and resets are counted exactly. */
static __always_inline void on_segment(struct sock *sk)
{
	if (np_sampled_out())
		return;
	__u64 srtt_ns = (__u64)(BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3) * 1000;
	if (srtt_ns)
		count(sk, NP_TCP_RTT, np_bucket_index(np_thresholds, srtt_ns), srtt_ns);
}

static __always_inline void on_state(struct sock *sk, int oldstate, int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	__u64 key = (__u64)sk;
	if (newstate == TCP_SYN_SENT) {
		__u64 now = bpf_ktime_get_ns();
		if (bpf_map_update_elem(&connecting, &key, &now, BPF_ANY))
			drop(1);
		return;
	}
	if (oldstate != TCP_SYN_SENT)
		return;
	__u64 *sent = bpf_map_lookup_elem(&connecting, &key);
	if (!sent)
		return;
	__u64 latency = bpf_ktime_get_ns() - *sent;
	bpf_map_delete_elem(&connecting, &key);
	if (newstate == TCP_ESTABLISHED)
		count(sk, NP_TCP_CONNECT, np_bucket_index(np_thresholds, latency), latency);
}

/* The socket is the first argument of each tracepoint: CO-RE reads serve
 * both flavours. */

SEC("tp_btf/tcp_probe")
int btf_tcp_probe(__u64 *ctx)
{
	on_segment((void *)ctx[0]);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int btf_set_state(__u64 *ctx)
{
	on_state((void *)ctx[0], (int)ctx[1], (int)ctx[2]);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int btf_retransmit(__u64 *ctx)
{
	count((void *)ctx[0], NP_TCP_RETRANSMIT, 0, 0);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int btf_send_reset(__u64 *ctx)
{
	struct sock *sk = (void *)ctx[0];
	if (sk) /* a reset may answer a segment that has no socket */
		count(sk, NP_TCP_RESET_SENT, 0, 0);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int btf_receive_reset(__u64 *ctx)
{
	count((void *)ctx[0], NP_TCP_RESET_RECEIVED, 0, 0);
	return 0;
}

SEC("raw_tp/tcp_probe")
int raw_tcp_probe(__u64 *ctx)
{
	on_segment((void *)ctx[0]);
	return 0;
}

SEC("raw_tp/inet_sock_set_state")
int raw_set_state(__u64 *ctx)
{
	on_state((void *)ctx[0], (int)ctx[1], (int)ctx[2]);
	return 0;
}

SEC("raw_tp/tcp_retransmit_skb")
int raw_retransmit(__u64 *ctx)
{
	count((void *)ctx[0], NP_TCP_RETRANSMIT, 0, 0);
	return 0;
}

SEC("raw_tp/tcp_send_reset")
int raw_send_reset(__u64 *ctx)
{
	struct sock *sk = (void *)ctx[0];
	if (sk)
		count(sk, NP_TCP_RESET_SENT, 0, 0);
	return 0;
}

SEC("raw_tp/tcp_receive_reset")
int raw_receive_reset(__u64 *ctx)
{
	count((void *)ctx[0], NP_TCP_RESET_RECEIVED, 0, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
