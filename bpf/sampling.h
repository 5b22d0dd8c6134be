/* Sampling of a probe's high-rate events, for the agent's overhead budget
 * (agent/budget.h). The agent writes np_sample_mask at run time through the
 * skeleton's .bss: 2^k - 1 makes the program count 1 event in 2^k, picked
 * at random, and the agent multiplies what it drains by 2^k; 0 (the start)
 * counts every event. A random pick per event keeps every key's expected
 * count exact, whatever the key (cgroup, device, op) and however the events
 * are spread over time. BPF programs only. */
#ifndef NODEPERF_BPF_SAMPLING_H
#define NODEPERF_BPF_SAMPLING_H

#include <bpf/bpf_helpers.h>

__u32 np_sample_mask = 0;

/* True if this event is one the sampling leaves out. */
static __always_inline bool np_sampled_out(void)
{
	__u32 mask = np_sample_mask;
	return mask && (bpf_get_prandom_u32() & mask);
}

/* The same, decided by a key instead of at random: the same answer for the
 * same key, at every event of one object's life (a request's insert, issue
 * and completion), so that it is followed whole or not at all. The key's
 * low bits must vary between objects (a time stamp in ns does): bits 48 and
 * up of its Fibonacci hash pick, and they depend on key bits 0 to 50 only. */
static __always_inline bool np_sampled_out_by(__u64 key)
{
	__u32 mask = np_sample_mask;
	return mask && (((key * 0x9E3779B97F4A7C15ull) >> 48) & mask);
}

#endif
