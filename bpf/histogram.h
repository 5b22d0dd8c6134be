/* Latency histogram layout, shared by the BPF programs and the agent (C and
 * C++). Buckets are those of Prometheus native histograms: 2^schema buckets
 * per power of two, bucket i ending at 2^(i / 2^schema) seconds. Bounds are
 * exact in seconds, so they cannot be bit tricks on nanoseconds: the agent
 * computes floor(bound * 1e9) for each bucket into a table before the
 * program loads, and the program finds a latency's bucket by binary search
 * of that table (9 steps). */
#ifndef NODEPERF_BPF_HISTOGRAM_H
#define NODEPERF_BPF_HISTOGRAM_H

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define NP_HIST_TABLE 512      /* thresholds, padded with ~0: a power of two */
#define NP_HIST_MIN_LOG2 (-23) /* bucket 0 is (0, 2^-23 s], about 119 ns */
#define NP_HIST_MAX_LOG2 8     /* the last finite bucket ends at 2^8 s = 256 s */
#define NP_HIST_MAX_SCHEMA 4   /* 31 octaves x 16 = 496 buckets fit the table */
#define NP_HIST_DEFAULT_SCHEMA 3

/* Per bucket: how many events, and their summed latency (for _sum). */
struct np_hist_value {
	__u64 count;
	__u64 sum_ns;
};

/* The bucket of ns: the smallest i with ns <= thresholds[i]. Past the last
 * finite bucket, the first padding entry (~0) catches it: the overflow. */
static __always_inline __u32 np_bucket_index(const volatile __u64 *thresholds, __u64 ns)
{
	__u32 lo = 0;
	for (__u32 step = NP_HIST_TABLE / 2; step > 0; step >>= 1) {
		if (thresholds[(lo + step - 1) & (NP_HIST_TABLE - 1)] < ns)
			lo += step;
	}
	return lo;
}

#endif
