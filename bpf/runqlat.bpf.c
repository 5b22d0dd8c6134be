// SPDX-License-Identifier: GPL-2.0
/* Run-queue latency: from the moment a task becomes runnable (woken up, or
 * preempted while still runnable) to the moment it runs, per v2 cgroup. */
#include "bpf/kernel_types.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/histogram.h"
#include "bpf/runqlat.h"

const volatile __u64 np_thresholds[NP_HIST_TABLE]; /* set by the agent before load */

/* When each task became runnable. tp_btf programs keep it in task-local
 * storage; raw_tp programs (no trusted task pointer) in a pid-keyed map. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} runnable_since SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} runnable_since_by_pid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct np_runq_key);
	__type(value, struct np_hist_value);
} runq_hist SEC(".maps");

/* Events lost because runq_hist was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} runq_drops SEC(".maps");

static __always_inline bool still_runnable(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state) == TASK_RUNNING;
	return BPF_CORE_READ((struct task_struct___pre_5_14 *)t, state) == TASK_RUNNING;
}

static __always_inline void record(struct task_struct *t, __u64 wait_ns)
{
	struct np_runq_key key = {
		.cgroup_id = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id),
		.bucket = np_bucket_index(np_thresholds, wait_ns),
	};
	struct np_hist_value *v = bpf_map_lookup_elem(&runq_hist, &key);
	if (!v) {
		struct np_hist_value zero = {};
		bpf_map_update_elem(&runq_hist, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&runq_hist, &key);
		if (!v) {
			__u32 slot = 0;
			__u64 *drops = bpf_map_lookup_elem(&runq_drops, &slot);
			if (drops)
				(*drops)++;
			return;
		}
	}
	/* Per-CPU values: no other CPU writes this slot, no atomics needed. */
	v->count++;
	v->sum_ns += wait_ns;
}

/* tp_btf: trusted task pointers, task-local storage. */

static __always_inline void mark_runnable(struct task_struct *t)
{
	if (!BPF_CORE_READ(t, pid))
		return; /* the idle task */
	__u64 *since = bpf_task_storage_get(&runnable_since, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (since)
		*since = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(btf_wakeup, struct task_struct *p)
{
	mark_runnable(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(btf_wakeup_new, struct task_struct *p)
{
	mark_runnable(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(btf_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	if (still_runnable(prev))
		mark_runnable(prev);
	__u64 *since = bpf_task_storage_get(&runnable_since, next, 0, 0);
	if (since && *since) {
		record(next, bpf_ktime_get_ns() - *since);
		*since = 0;
	}
	return 0;
}

/* raw_tp: the same, where tp_btf cannot attach; a pid-keyed map instead. */

static __always_inline void mark_runnable_pid(struct task_struct *t)
{
	__u32 pid = BPF_CORE_READ(t, pid);
	if (!pid)
		return;
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&runnable_since_by_pid, &pid, &now, BPF_ANY);
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(raw_wakeup, struct task_struct *p)
{
	mark_runnable_pid(p);
	return 0;
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(raw_wakeup_new, struct task_struct *p)
{
	mark_runnable_pid(p);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(raw_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	if (still_runnable(prev))
		mark_runnable_pid(prev);
	__u32 pid = BPF_CORE_READ(next, pid);
	__u64 *since = bpf_map_lookup_elem(&runnable_since_by_pid, &pid);
	if (since) {
		record(next, bpf_ktime_get_ns() - *since);
		bpf_map_delete_elem(&runnable_since_by_pid, &pid);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
