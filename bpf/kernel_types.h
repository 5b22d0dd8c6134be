/* The kernel types nodeperf's probes read, declared here with only the
 * fields we use. preserve_access_index makes every access a CO-RE
 * relocation: libbpf finds each field's real offset in the running
 * kernel's BTF at load time, so these need not match any kernel's layout
 * and the build needs no BTF (a container image build has none).
 * Types with a ___suffix are older layouts, for bpf_core_field_exists(). */
#ifndef NODEPERF_BPF_KERNEL_TYPES_H
#define NODEPERF_BPF_KERNEL_TYPES_H

#include <linux/types.h>
#include <linux/bpf.h>

typedef __u64 u64;
typedef __u32 u32;
typedef _Bool bool;
#define true 1
#define false 0

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct kernfs_node {
	__u64 id; /* the cgroup id: the inode number of its cgroup2 directory (5.5+) */
};

struct cgroup {
	struct kernfs_node *kn;
};

struct css_set {
	struct cgroup *dfl_cgrp; /* the task's cgroup in the v2 (unified) hierarchy */
};

/* The scheduler's own run-queue accounting (CONFIG_SCHED_INFO, which
 * delay accounting and schedstats select): arrivals on a CPU after waiting,
 * and the time waited, in total. */
struct sched_info {
	unsigned long pcount;
	unsigned long long run_delay;
};

struct task_struct {
	int pid;
	int tgid;
	struct sched_info sched_info;
	struct css_set *cgroups;
	struct files_struct *files;
};

struct gendisk {
	int major;
	int first_minor;
};

struct elevator_queue;

struct request_queue {
	struct elevator_queue *elevator; /* the IO scheduler; NULL for "none" */
	struct gendisk *disk;            /* 5.15+ */
};

struct block_device {
	__u32 bd_dev; /* the kernel's dev_t: major << MINORBITS | minor */
};

struct request {
	struct request_queue *q;
	struct block_device *part; /* the partition (or whole disk) written to; may be NULL */
	unsigned int cmd_flags;    /* the op in the low REQ_OP_BITS bits */
	unsigned int __data_len;
	int tag;                   /* its slot in the hardware queue's tag set */
	__u64 __sector;            /* where it starts */
	__u64 start_time_ns;       /* when it was allocated; 0 where the kernel takes no time stamps */
};

struct request___pre_5_17 {
	struct gendisk *rq_disk; /* removed in 5.17 (block: remove rq_disk) */
};

struct sock_cgroup_data {
	struct cgroup *cgroup; /* 5.15+ (cgroup: remove cgroup v1 from sock_cgroup_data) */
};

struct sock_cgroup_data___pre_5_15 {
	__u64 val; /* a struct cgroup * when its low bit is clear */
};

struct sock_common {
	unsigned short skc_family;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	struct sock_cgroup_data sk_cgrp_data;
};

struct tcp_sock {
	__u32 srtt_us; /* smoothed RTT << 3, in microseconds */
};

/* A file descriptor's way to its file system. */
struct super_block {
	__u32 s_dev; /* kernel dev_t; 0:N for file systems without a block device */
};

struct inode {
	struct super_block *i_sb;
};

struct file {
	struct inode *f_inode;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

/* The registers a system call entered with: its first argument. */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long di;
};
#define NP_SYSCALL_ARG0(regs) BPF_CORE_READ(regs, di)
#elif defined(__TARGET_ARCH_arm64)
struct pt_regs {
	__u64 regs[31];
};
#define NP_SYSCALL_ARG0(regs) BPF_CORE_READ(regs, regs[0])
#endif

#pragma clang attribute pop

#define REQ_OP_MASK ((1 << 8) - 1)
#define MINORBITS 20
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2

#endif
