// SPDX-License-Identifier: GPL-2.0
/* File-system latency of reads, writes and fsyncs, per super block, for
 * volumes without a block device (NFS, CIFS, FUSE): the time of the system
 * call, from the raw_syscalls tracepoints (sys_enter, sys_exit), which
 * kernels in lockdown allow where fentry on the VFS is refused.
 *
 * sys_enter runs for every system call of every task: it returns at once
 * unless the call is one of the dozen that read, write or sync a file
 * descriptor, and that descriptor's file is on a watched file system (a
 * small map the agent fills from the volume table). Only then is the
 * start kept, per thread, for sys_exit. The agent attaches the programs
 * only while a volume needs them. */
#include "bpf/kernel_types.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/fslatency.h"
#include "bpf/histogram.h"

const volatile __u64 np_thresholds[NP_HIST_TABLE]; /* set by the agent before load */

/* System call numbers (arch/<arch>/entry/syscalls). */
#if defined(__TARGET_ARCH_x86)
enum { NR_read = 0, NR_write = 1, NR_pread64 = 17, NR_pwrite64 = 18, NR_readv = 19, NR_writev = 20,
       NR_fsync = 74, NR_fdatasync = 75, NR_preadv = 295, NR_pwritev = 296, NR_preadv2 = 327,
       NR_pwritev2 = 328 };
#elif defined(__TARGET_ARCH_arm64)
enum { NR_read = 63, NR_write = 64, NR_readv = 65, NR_writev = 66, NR_pread64 = 67, NR_pwrite64 = 68,
       NR_preadv = 69, NR_pwritev = 70, NR_fsync = 82, NR_fdatasync = 83, NR_preadv2 = 286,
       NR_pwritev2 = 287 };
#else
#error "fslatency: no system call numbers for this architecture"
#endif

struct call {
	__u64 start_ns;
	__u64 cgroup_id;
	__u32 dev;
	__u8 op;
};

/* File systems to time: s_dev -> 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} watched SEC(".maps");

/* Calls in progress, per thread; LRU so that threads killed in a call that
 * never returns cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct call);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct np_fs_key);
	__type(value, struct np_hist_value);
} fs_hist SEC(".maps");

/* Calls lost because fs_hist was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} fs_drops SEC(".maps");

static __always_inline int fs_op(long id)
{
	switch (id) {
	case NR_read: case NR_pread64: case NR_readv: case NR_preadv: case NR_preadv2:
		return NP_FS_READ;
	case NR_write: case NR_pwrite64: case NR_writev: case NR_pwritev: case NR_pwritev2:
		return NP_FS_WRITE;
	case NR_fsync: case NR_fdatasync:
		return NP_FS_FSYNC;
	default:
		return -1;
	}
}

/* The s_dev of the file behind a descriptor of the current task, 0 if none. */
static __always_inline __u32 fd_dev(unsigned long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	if (!file)
		return 0;
	return BPF_CORE_READ(file, f_inode, i_sb, s_dev);
}

static __always_inline void on_enter(struct pt_regs *regs, long id)
{
	int op = fs_op(id);
	if (op < 0)
		return;
	__u32 dev = fd_dev(NP_SYSCALL_ARG0(regs));
	if (!dev || !bpf_map_lookup_elem(&watched, &dev))
		return;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct call c = {.start_ns = bpf_ktime_get_ns(), .cgroup_id = bpf_get_current_cgroup_id(), .dev = dev,
			 .op = (__u8)op};
	bpf_map_update_elem(&calls, &tid, &c, BPF_ANY);
}

static __always_inline void on_exit(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct call *c = bpf_map_lookup_elem(&calls, &tid);
	if (!c)
		return;
	__u64 ns = bpf_ktime_get_ns() - c->start_ns;
	struct np_fs_key key = {.cgroup_id = c->cgroup_id, .dev = c->dev, .op = c->op,
				.bucket = np_bucket_index(np_thresholds, ns)};
	bpf_map_delete_elem(&calls, &tid);
	struct np_hist_value *v = bpf_map_lookup_elem(&fs_hist, &key);
	if (!v) {
		struct np_hist_value zero = {};
		bpf_map_update_elem(&fs_hist, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&fs_hist, &key);
		if (!v) {
			__u32 slot = 0;
			__u64 *n = bpf_map_lookup_elem(&fs_drops, &slot);
			if (n)
				(*n)++;
			return;
		}
	}
	v->count++;
	v->sum_ns += ns;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(btf_sys_enter, struct pt_regs *regs, long id)
{
	on_enter(regs, id);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(btf_sys_exit, struct pt_regs *regs, long ret)
{
	on_exit();
	return 0;
}

SEC("raw_tp/sys_enter")
int BPF_PROG(raw_sys_enter, struct pt_regs *regs, long id)
{
	on_enter(regs, id);
	return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(raw_sys_exit, struct pt_regs *regs, long ret)
{
	on_exit();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
