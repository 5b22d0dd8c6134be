// SPDX-License-Identifier: GPL-2.0
/* Run-queue latency: how long tasks waited runnable (woken up, or preempted
 * while still runnable) before they ran, per v2 cgroup.
 *
 * The scheduler already measures this for delay accounting (sched_info):
 * at each arrival on a CPU it adds the wait to task->sched_info.run_delay
 * and counts the arrival in pcount. So one program on sched_switch does:
 * when a task leaves the CPU, the wait before the run that is ending is how
 * much run_delay grew since the task last left. No wakeup program, and no
 * timestamps of our own. The kernel's figure also keeps the wait a task
 * spent queued on another CPU before the load balancer moved it, which a
 * wakeup-to-switch timer splits in two. */
#include "bpf/kernel_types.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/histogram.h"
#include "bpf/runqlat.h"
#include "bpf/sampling.h"

const volatile __u64 np_thresholds[NP_HIST_TABLE]; /* set by the agent before load */

/* A task's sched_info when it last left a CPU. */
struct seen {
	__u64 pcount;
	__u64 run_delay;
};

/* tp_btf programs keep it in task-local storage; raw_tp programs, which
 * get no trusted task pointer, in a pid-keyed LRU map. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct seen);
} seen_by_task SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct seen);
} seen_by_pid SEC(".maps");

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

static __always_inline void record(__u64 wait_ns)
{
	/* At sched_switch the task leaving is still `current`. */
	struct np_runq_key key = {
		.cgroup_id = bpf_get_current_cgroup_id(),
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

/* The task leaving the CPU had pcount arrivals and waited run_delay in all.
 * One arrival since we last saw it leave: that arrival's wait is what
 * run_delay grew by. A task we never saw on its first arrival (pcount 1)
 * waited all of run_delay. Otherwise (first sight of an older task, or a
 * departure we missed) record nothing and start over from here. Sampling
 * leaves out the recording only: every departure still moves the task's
 * mark, or the next sampled one would span several waits. */
static __always_inline void departed(struct seen *s, __u64 pcount, __u64 run_delay)
{
	if (pcount - s->pcount == 1 && !np_sampled_out())
		record(run_delay - s->run_delay);
	s->pcount = pcount;
	s->run_delay = run_delay;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(btf_switch, bool preempt, struct task_struct *prev)
{
	if (!prev->pid)
		return 0; /* the idle task */
	struct seen *s = bpf_task_storage_get(&seen_by_task, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (s)
		departed(s, prev->sched_info.pcount, prev->sched_info.run_delay);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(raw_switch, bool preempt, struct task_struct *prev)
{
	__u32 pid = BPF_CORE_READ(prev, pid);
	if (!pid)
		return 0;
	__u64 pcount = BPF_CORE_READ(prev, sched_info.pcount);
	__u64 run_delay = BPF_CORE_READ(prev, sched_info.run_delay);
	struct seen *s = bpf_map_lookup_elem(&seen_by_pid, &pid);
	if (s) {
		departed(s, pcount, run_delay);
		return 0;
	}
	struct seen fresh = {};
	departed(&fresh, pcount, run_delay);
	bpf_map_update_elem(&seen_by_pid, &pid, &fresh, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
