/* Wire layout of the block IO probe, shared with the agent. */
#ifndef NODEPERF_BPF_BLOCKIO_H
#define NODEPERF_BPF_BLOCKIO_H

enum np_block_op { NP_OP_READ, NP_OP_WRITE, NP_OP_FLUSH, NP_OP_DISCARD, NP_OP_OTHER, NP_OP_COUNT };

enum np_block_kind {
	NP_BLOCK_LATENCY, /* issue to completion, ns: np_bucket_index() */
	NP_BLOCK_QUEUE,   /* insert to issue, ns: np_bucket_index() */
	NP_BLOCK_SIZE,    /* bytes: bucket b holds sizes in (2^(b-1), 2^b] */
};

/* Key of the per-CPU histogram: one bucket of one (cgroup, device, op, kind). */
struct np_block_key {
	__u64 cgroup_id; /* v2 cgroup of the task that submitted the request */
	__u32 dev;       /* the partition, or the whole disk: kernel dev_t, major << 20 | minor */
	__u8 op;         /* enum np_block_op */
	__u8 kind;       /* enum np_block_kind */
	__u16 bucket;
};

#define NP_SIZE_BUCKETS 32

#endif
