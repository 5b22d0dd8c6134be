#include "agent/doctor.h"

#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

using V = Check::Verdict;

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

Check kernel_check() {
  utsname u{};
  uname(&u);
  int major = 0, minor = 0;
  std::sscanf(u.release, "%d.%d", &major, &minor);
  bool ok = major > 5 || (major == 5 && minor >= 8);
  return {ok ? V::ok : V::missing, "kernel",
          std::string(u.release) + (ok ? ": 5.8 or newer, as the eBPF probes need"
                                       : ": older than 5.8; eBPF probes will be off (fix: a 5.8+ kernel)")};
}

Check btf_check(const std::string& root) {
  std::string path = host_path(root, "sys/kernel/btf/vmlinux");
  if (access(path.c_str(), R_OK) == 0) return {V::ok, "btf", path + " is readable (CO-RE relocations work)"};
  return {V::missing, "btf",
          path + ": " + std::strerror(errno) + " (fix: a kernel built with CONFIG_DEBUG_INFO_BTF=y; in a container, mount /sys/kernel/btf)"};
}

Check capability_check() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0) return {V::missing, "capabilities", std::string("capget: ") + std::strerror(errno)};
  auto has = [&](int cap) { return (data[cap / 32].effective >> (cap % 32)) & 1u; };
  bool bpf = has(CAP_BPF) && has(CAP_PERFMON);
  bool admin = has(CAP_SYS_ADMIN);
  std::string found = std::string("CAP_BPF ") + (has(CAP_BPF) ? "yes" : "no") + ", CAP_PERFMON " +
                      (has(CAP_PERFMON) ? "yes" : "no") + ", CAP_SYS_ADMIN " + (admin ? "yes" : "no") +
                      ", CAP_SYS_RESOURCE " + (has(CAP_SYS_RESOURCE) ? "yes" : "no (not needed on 5.11+)");
  if (bpf || admin) return {V::ok, "capabilities", found};
  return {V::missing, "capabilities", found + " (fix: run as root, or grant CAP_BPF and CAP_PERFMON)"};
}

Check bpf_syscall_check() {
  bpf_attr attr{};
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = 4;
  attr.value_size = 8;
  attr.max_entries = 1;
  int fd = static_cast<int>(syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
  if (fd >= 0) {
    close(fd);
    return {V::ok, "bpf", "bpf(BPF_MAP_CREATE) works"};
  }
  return {V::missing, "bpf", std::string("bpf(BPF_MAP_CREATE): ") + std::strerror(errno) +
                                 " (fix: CAP_BPF, and kernel.unprivileged_bpf_disabled does not apply to it; "
                                 "in a container, allow the bpf syscall in seccomp)"};
}

Check cgroup_check(const std::string& root) {
  struct statfs fs{};
  std::string path = host_path(root, "sys/fs/cgroup");
  if (statfs(path.c_str(), &fs) != 0) {
    return {V::missing, "cgroups", path + ": " + std::strerror(errno) + " (fix: mount the host's /sys/fs/cgroup)"};
  }
  if (fs.f_type == CGROUP2_SUPER_MAGIC) return {V::ok, "cgroups", "pure v2 (unified) at " + path};
  struct statfs unified{};
  std::string upath = host_path(root, "sys/fs/cgroup/unified");
  if (statfs(upath.c_str(), &unified) == 0 && unified.f_type == CGROUP2_SUPER_MAGIC) {
    return {V::ok, "cgroups", "hybrid: v1 controllers at " + path + ", v2 at " + upath};
  }
  return {V::warn, "cgroups", "pure v1 at " + path + ": no v2 hierarchy, so eBPF per-cgroup figures cannot be "
                              "joined to containers (fix: boot with systemd.unified_cgroup_hierarchy=1)"};
}

Check tracefs_check(const std::string& root) {
  struct statfs fs{};
  std::string path = host_path(root, "sys/kernel/tracing");
  if (statfs(path.c_str(), &fs) == 0 && fs.f_type == TRACEFS_MAGIC) return {V::ok, "tracefs", "mounted at " + path};
  return {V::warn, "tracefs", "not mounted at " + path + "; nodeperf's tp_btf and raw_tp probes do not need it, "
                              "classic tracepoints and bpftrace do (fix: mount -t tracefs tracefs /sys/kernel/tracing)"};
}

Check psi_check(const std::string& root) {
  std::string path = host_path(root, "proc/pressure/cpu");
  if (access(path.c_str(), R_OK) == 0) return {V::ok, "psi", path + " is readable"};
  return {V::warn, "psi", path + ": " + std::strerror(errno) +
                              " (fix: a kernel with CONFIG_PSI=y, and psi=1 on its command line where it is off by default)"};
}

Check lockdown_check(const std::string& root) {
  std::string path = host_path(root, "sys/kernel/security/lockdown");
  std::string line = first_line(path);
  if (line.empty()) return {V::ok, "lockdown", "not reported (" + path + " unreadable); assume none"};
  bool locked = line.find("[none]") == std::string::npos;
  return {locked ? V::warn : V::ok, "lockdown",
          line + (locked ? ": fentry and kprobes are refused; nodeperf's probes use tracepoints and keep working"
                         : ": fentry and kprobe extras are allowed")};
}

Check bpf_stats_check(const std::string& root) {
  std::string path = host_path(root, "proc/sys/kernel/bpf_stats_enabled");
  std::string value = first_line(path);
  if (value == "1") return {V::ok, "bpf_stats", "enabled: per-probe run time is measured"};
  return {V::warn, "bpf_stats", (value.empty() ? path + " unreadable" : "off") +
                                    std::string(": per-probe run time reads 0 (fix, costs ~20ns per event: "
                                                "sysctl kernel.bpf_stats_enabled=1)")};
}

}  // namespace

std::vector<Check> run_checks(const std::string& host_root) {
  return {kernel_check(),           btf_check(host_root),     capability_check(),
          bpf_syscall_check(),      cgroup_check(host_root),  tracefs_check(host_root),
          psi_check(host_root),     lockdown_check(host_root), bpf_stats_check(host_root)};
}

int print_doctor(const std::vector<Check>& checks, std::ostream& out) {
  int rc = 0;
  for (const Check& c : checks) {
    const char* verdict = c.verdict == V::ok ? "OK     " : c.verdict == V::warn ? "WARN   " : "MISSING";
    if (c.verdict == V::missing) rc = 1;
    out << verdict << "  " << c.name << std::string(c.name.size() < 13 ? 13 - c.name.size() : 1, ' ') << c.detail
        << "\n";
  }
  return rc;
}

}  // namespace nodeperf
