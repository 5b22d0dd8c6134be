/* Wire layout of the file-system latency probe, shared with the agent. */
#ifndef NODEPERF_BPF_FSLATENCY_H
#define NODEPERF_BPF_FSLATENCY_H

enum np_fs_op { NP_FS_READ, NP_FS_WRITE, NP_FS_FSYNC, NP_FS_OP_COUNT };

/* Key of the per-CPU histogram: one bucket of one (cgroup, file system, op). */
struct np_fs_key {
	__u64 cgroup_id; /* v2 cgroup of the calling task */
	__u32 dev;       /* the file's super block: s_dev, kernel encoding (major << 20 | minor) */
	__u8 op;         /* enum np_fs_op */
	__u8 pad;
	__u16 bucket;    /* np_bucket_index() of the call's time */
};

#endif
