// SPDX-License-Identifier: GPL-2.0
/* Test program: runs np_bucket_index() in the kernel on one input per run
 * (as the probes do: one search per event), so a test can compare the BPF
 * side with the agent's, value by value. */
#include "bpf/kernel_types.h"

#include <bpf/bpf_helpers.h>

#include "bpf/histogram.h"

const volatile __u64 np_thresholds[NP_HIST_TABLE];
__u64 input;
__u32 output;

SEC("raw_tp")
int bucket_check(void *ctx)
{
	output = np_bucket_index(np_thresholds, input);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
