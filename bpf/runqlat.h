/* Wire layout of the run-queue latency probe, shared with the agent. */
#ifndef NODEPERF_BPF_RUNQLAT_H
#define NODEPERF_BPF_RUNQLAT_H

/* Key of the per-CPU histogram: one bucket of one cgroup. */
struct np_runq_key {
	__u64 cgroup_id; /* v2 cgroup id of the task that waited */
	__u32 bucket;    /* np_bucket_index() of the wait */
	__u32 pad;
};

#endif
