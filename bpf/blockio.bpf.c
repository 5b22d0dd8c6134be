// SPDX-License-Identifier: GPL-2.0
/* Block IO: per request, time from insert to issue (queue) and from issue to
 * completion (device latency), and its size; per disk, op and the v2 cgroup
 * of the submitter. */
#include "bpf/kernel_types.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/blockio.h"
#include "bpf/histogram.h"
#include "bpf/sampling.h"

const volatile __u64 np_thresholds[NP_HIST_TABLE]; /* set by the agent before load */
/* 1 where block_rq_insert/issue still pass the queue first (before 5.11);
 * the agent reads it off the tracepoint's BTF, not a kernel version. */
const volatile bool rq_is_second_arg = false;
/* 1 where request->part is a block_device (5.11+, block: remove struct
 * hd_struct); read off the kernel's BTF by the agent: a CO-RE existence
 * check of the old type would search module BTF, which needs CAP_SYS_ADMIN. */
const volatile bool part_is_bdev = false;

struct request_state {
	__u64 inserted_ns;
	__u64 issued_ns;
	__u64 cgroup_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* the struct request pointer */
	__type(value, struct request_state);
} requests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct np_block_key);
	__type(value, struct np_hist_value);
} block_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2); /* 0: block_hist full, 1: requests full */
	__type(key, __u32);
	__type(value, __u64);
} block_drops SEC(".maps");

static __always_inline void drop(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&block_drops, &which);
	if (n)
		(*n)++;
}

static __always_inline void count(struct np_block_key *key, __u64 value)
{
	struct np_hist_value *v = bpf_map_lookup_elem(&block_hist, key);
	if (!v) {
		struct np_hist_value zero = {};
		bpf_map_update_elem(&block_hist, key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&block_hist, key);
		if (!v) {
			drop(0);
			return;
		}
	}
	v->count++;
	v->sum_ns += value;
}

/* tp_btf programs get a trusted request pointer and read it with plain
 * loads; raw_tp programs read it through bpf_probe_read_kernel. `trusted`
 * is a constant in each caller, so each program keeps one of the two. */
#define READ(trusted, p, field) ((trusted) ? (p)->field : BPF_CORE_READ(p, field))

static __always_inline __u32 disk_dev(struct request *rq, bool trusted)
{
	struct gendisk *disk;
	struct request___pre_5_17 *old = (void *)rq;
	struct request_queue *q = READ(trusted, rq, q);
	if (bpf_core_field_exists(old->rq_disk))
		disk = READ(trusted, old, rq_disk);
	else
		disk = READ(trusted, q, disk);
	if (!disk)
		return 0;
	return ((__u32)READ(trusted, disk, major) << MINORBITS) | (__u32)READ(trusted, disk, first_minor);
}

/* The device the request is for: its partition, so that volumes on two
 * partitions of one disk are told apart, else the whole disk (requests
 * without a partition, and kernels before 5.11, whose request->part is not
 * a block_device). The agent maps partitions to their disks for the
 * per-disk series. */
static __always_inline __u32 request_dev(struct request *rq, bool trusted)
{
	if (part_is_bdev) {
		struct block_device *part = READ(trusted, rq, part);
		if (part)
			return READ(trusted, part, bd_dev);
	}
	return disk_dev(rq, trusted);
}

static __always_inline __u8 request_op(struct request *rq, bool trusted)
{
	switch (READ(trusted, rq, cmd_flags) & REQ_OP_MASK) {
	case 0: return NP_OP_READ;
	case 1: return NP_OP_WRITE;
	case 2: return NP_OP_FLUSH;
	case 3: return NP_OP_DISCARD;
	default: return NP_OP_OTHER;
	}
}

/* ceil(log2(bytes)), at most NP_SIZE_BUCKETS - 1. */
static __always_inline __u16 size_bucket(__u64 bytes)
{
	__u16 b = 0;
	for (int i = 0; i < NP_SIZE_BUCKETS - 1; i++) {
		if (((__u64)1 << b) >= bytes)
			break;
		b++;
	}
	return b;
}

/* While sampling, a request is followed whole or not at all, decided by
 * who it is: its allocation time, tag and start sector, which stay the same
 * from insert to completion (but for a front merge while queued, which at
 * worst costs that request its queue time or its count). Where the kernel
 * takes no time stamps the sector and tag still tell requests apart.
 * A request left out costs no map update at issue, the most of what the
 * probe costs per IO, and no delete at completion. */
static __always_inline bool request_sampled_out(struct request *rq, bool trusted)
{
	if (!np_sample_mask)
		return false;
	return np_sampled_out_by(READ(trusted, rq, start_time_ns) ^ (READ(trusted, rq, __sector) << 16) ^
				 (__u32)READ(trusted, rq, tag));
}

static __always_inline void on_insert(struct request *rq, bool trusted)
{
	if (request_sampled_out(rq, trusted))
		return;
	__u64 key = (__u64)rq;
	struct request_state s = {.inserted_ns = bpf_ktime_get_ns(), .cgroup_id = bpf_get_current_cgroup_id()};
	if (bpf_map_update_elem(&requests, &key, &s, BPF_ANY))
		drop(1);
}

static __always_inline void on_issue(struct request *rq, bool trusted)
{
	if (request_sampled_out(rq, trusted))
		return;
	__u64 key = (__u64)rq;
	__u64 now = bpf_ktime_get_ns();
	/* Without an IO scheduler requests are issued directly, never inserted:
	 * no entry to look for. (Requests can pass the insert tracepoint even
	 * then, on a requeue, say: the fresh entry replaces theirs.) */
	struct request_queue *q = READ(trusted, rq, q);
	if (READ(trusted, q, elevator)) {
		struct request_state *s = bpf_map_lookup_elem(&requests, &key);
		if (s) {
			s->issued_ns = now;
			return;
		}
	}
	struct request_state fresh = {.issued_ns = now, .cgroup_id = bpf_get_current_cgroup_id()};
	if (bpf_map_update_elem(&requests, &key, &fresh, BPF_ANY))
		drop(1);
}

static __always_inline void on_complete(struct request *rq, unsigned int nr_bytes, bool trusted)
{
	/* First: the map work and the reads below (probe reads under raw_tp)
	 * would otherwise be added to every request's latency. */
	__u64 now = bpf_ktime_get_ns();
	__u64 key = (__u64)rq;
	struct request_state *s = bpf_map_lookup_elem(&requests, &key);
	if (!s)
		return; /* issued before we attached */
	struct request_state st = *s;
	bpf_map_delete_elem(&requests, &key);
	if (!st.issued_ns)
		return;
	struct np_block_key k = {.cgroup_id = st.cgroup_id, .dev = request_dev(rq, trusted), .op = request_op(rq, trusted)};
	__u64 latency = now - st.issued_ns;
	k.kind = NP_BLOCK_LATENCY;
	k.bucket = np_bucket_index(np_thresholds, latency);
	count(&k, latency);
	if (st.inserted_ns && st.issued_ns >= st.inserted_ns) {
		__u64 queued = st.issued_ns - st.inserted_ns;
		k.kind = NP_BLOCK_QUEUE;
		k.bucket = np_bucket_index(np_thresholds, queued);
		count(&k, queued);
	}
	if (nr_bytes) {
		k.kind = NP_BLOCK_SIZE;
		k.bucket = size_bucket(nr_bytes);
		count(&k, nr_bytes);
	}
}

SEC("tp_btf/block_rq_insert")
int btf_insert(__u64 *ctx)
{
	on_insert((void *)(rq_is_second_arg ? ctx[1] : ctx[0]), true);
	return 0;
}

SEC("tp_btf/block_rq_issue")
int btf_issue(__u64 *ctx)
{
	on_issue((void *)(rq_is_second_arg ? ctx[1] : ctx[0]), true);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(btf_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	on_complete(rq, nr_bytes, true);
	return 0;
}

SEC("raw_tp/block_rq_insert")
int raw_insert(__u64 *ctx)
{
	on_insert((void *)(rq_is_second_arg ? ctx[1] : ctx[0]), false);
	return 0;
}

SEC("raw_tp/block_rq_issue")
int raw_issue(__u64 *ctx)
{
	on_issue((void *)(rq_is_second_arg ? ctx[1] : ctx[0]), false);
	return 0;
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(raw_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	on_complete(rq, nr_bytes, false);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
