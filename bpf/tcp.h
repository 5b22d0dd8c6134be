/* Wire layout of the TCP probe, shared with the agent. */
#ifndef NODEPERF_BPF_TCP_H
#define NODEPERF_BPF_TCP_H

enum np_tcp_kind {
	NP_TCP_RTT,            /* smoothed RTT at each received segment, ns: np_bucket_index() */
	NP_TCP_CONNECT,        /* SYN sent to established, ns: np_bucket_index() */
	NP_TCP_RETRANSMIT,     /* counter: bucket 0 */
	NP_TCP_RESET_SENT,     /* counter: bucket 0 */
	NP_TCP_RESET_RECEIVED, /* counter: bucket 0 */
	NP_TCP_KINDS,
};

/* Key of the per-CPU histogram: one bucket of one (socket cgroup, kind). */
struct np_tcp_key {
	__u64 cgroup_id; /* v2 cgroup of the socket's owner (sk_cgrp_data) */
	__u32 kind;      /* enum np_tcp_kind */
	__u32 bucket;
};

#endif
