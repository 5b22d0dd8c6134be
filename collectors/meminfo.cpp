#include "collectors/meminfo.h"

#include "agent/config.h"
#include "collectors/keyed_metrics.h"
#include "collectors/parse.h"
#include "collectors/proc_file.h"

namespace nodeperf {
namespace {

#define MEMINFO_BYTES(key, help) \
  MetricInfo { "nodeperf_memory_" key "_bytes", MetricType::gauge, "", "/proc/meminfo", help, true }
#define MEMINFO_COUNT(key, help) \
  MetricInfo { "nodeperf_memory_" key, MetricType::gauge, "", "/proc/meminfo", help, true }

// Fields of /proc/meminfo as of Linux 6.x; fields a kernel lacks are not
// exported, fields not listed here are skipped.
constexpr MetricInfo kMetrics[] = {
    MEMINFO_BYTES("MemTotal", "Usable RAM: physical memory less reserved and kernel code."),
    MEMINFO_BYTES("MemFree", "RAM not used at all."),
    MEMINFO_BYTES("MemAvailable", "Estimate of memory available for new work without swapping."),
    MEMINFO_BYTES("Buffers", "Raw block device cache."),
    MEMINFO_BYTES("Cached", "Page cache of files, less swap cache."),
    MEMINFO_BYTES("SwapCached", "Memory swapped out and back in, still in the swap file."),
    MEMINFO_BYTES("Active", "Memory used recently, not reclaimed unless needed."),
    MEMINFO_BYTES("Inactive", "Memory used less recently, first to be reclaimed."),
    MEMINFO_BYTES("Active_anon", "Active anonymous memory."),
    MEMINFO_BYTES("Inactive_anon", "Inactive anonymous memory."),
    MEMINFO_BYTES("Active_file", "Active file-backed memory."),
    MEMINFO_BYTES("Inactive_file", "Inactive file-backed memory."),
    MEMINFO_BYTES("Unevictable", "Memory that cannot be reclaimed (mlocked, ramfs)."),
    MEMINFO_BYTES("Mlocked", "Memory locked with mlock()."),
    MEMINFO_BYTES("SwapTotal", "Swap space in all."),
    MEMINFO_BYTES("SwapFree", "Swap space unused."),
    MEMINFO_BYTES("Zswap", "Memory used by the zswap compressed cache."),
    MEMINFO_BYTES("Zswapped", "Anonymous memory stored in zswap, uncompressed size."),
    MEMINFO_BYTES("Dirty", "Memory waiting to be written back to disk."),
    MEMINFO_BYTES("Writeback", "Memory being written back to disk now."),
    MEMINFO_BYTES("AnonPages", "Anonymous pages mapped into user page tables."),
    MEMINFO_BYTES("Mapped", "Files mapped into memory (mmap)."),
    MEMINFO_BYTES("Shmem", "Shared memory and tmpfs."),
    MEMINFO_BYTES("KReclaimable", "Kernel memory the kernel reclaims under pressure."),
    MEMINFO_BYTES("Slab", "In-kernel data structure cache."),
    MEMINFO_BYTES("SReclaimable", "Reclaimable part of Slab."),
    MEMINFO_BYTES("SUnreclaim", "Unreclaimable part of Slab."),
    MEMINFO_BYTES("KernelStack", "Kernel stacks of all tasks."),
    MEMINFO_BYTES("PageTables", "Page tables."),
    MEMINFO_BYTES("SecPageTables", "Secondary (KVM, IOMMU) page tables."),
    MEMINFO_BYTES("NFS_Unstable", "NFS pages sent to the server but not yet committed."),
    MEMINFO_BYTES("Bounce", "Block device bounce buffers."),
    MEMINFO_BYTES("WritebackTmp", "FUSE temporary writeback buffers."),
    MEMINFO_BYTES("CommitLimit", "Memory the kernel allows to be committed under strict overcommit."),
    MEMINFO_BYTES("Committed_AS", "Memory committed by all processes."),
    MEMINFO_BYTES("VmallocTotal", "Size of the vmalloc address space."),
    MEMINFO_BYTES("VmallocUsed", "vmalloc space in use."),
    MEMINFO_BYTES("VmallocChunk", "Largest free vmalloc chunk."),
    MEMINFO_BYTES("Percpu", "Memory of per-CPU allocations."),
    MEMINFO_BYTES("HardwareCorrupted", "Memory the kernel found corrupted and set aside."),
    MEMINFO_BYTES("AnonHugePages", "Anonymous transparent huge pages."),
    MEMINFO_BYTES("ShmemHugePages", "Shared memory in transparent huge pages."),
    MEMINFO_BYTES("ShmemPmdMapped", "Shared memory mapped with huge pages in user space."),
    MEMINFO_BYTES("FileHugePages", "Page cache in transparent huge pages."),
    MEMINFO_BYTES("FilePmdMapped", "Page cache mapped with huge pages in user space."),
    MEMINFO_BYTES("CmaTotal", "Contiguous memory allocator pool."),
    MEMINFO_BYTES("CmaFree", "Free part of the CMA pool."),
    MEMINFO_BYTES("Unaccepted", "Memory not yet accepted by a confidential-computing guest."),
    MEMINFO_BYTES("Balloon", "Memory returned to the hypervisor by the balloon driver."),
    MEMINFO_BYTES("Hugepagesize", "Default huge page size."),
    MEMINFO_BYTES("Hugetlb", "Memory in huge pages of all sizes."),
    MEMINFO_BYTES("DirectMap4k", "Kernel direct map in 4 KiB pages."),
    MEMINFO_BYTES("DirectMap2M", "Kernel direct map in 2 MiB pages."),
    MEMINFO_BYTES("DirectMap4M", "Kernel direct map in 4 MiB pages."),
    MEMINFO_BYTES("DirectMap1G", "Kernel direct map in 1 GiB pages."),
    MEMINFO_COUNT("HugePages_Total", "Huge pages in the pool."),
    MEMINFO_COUNT("HugePages_Free", "Huge pages in the pool not yet allocated."),
    MEMINFO_COUNT("HugePages_Rsvd", "Huge pages reserved but not yet faulted in."),
    MEMINFO_COUNT("HugePages_Surp", "Huge pages above the configured pool size."),
};
#undef MEMINFO_BYTES
#undef MEMINFO_COUNT

class MeminfoCollector final : public Collector {
 public:
  explicit MeminfoCollector(const Config& config)
      : file_(host_path(config.host_root, "proc/meminfo")), metrics_(kMetrics, "nodeperf_memory_") {}

  Status collect(SampleSink& out) override {
    std::string error;
    auto text = file_.read(&error);
    if (!text) return Status::failed(error);
    Problems problems(file_.path());
    size_t emitted = 0;
    for (const MeminfoField& f : parse_meminfo(*text, problems)) {
      const MetricInfo* m = metrics_.find(f.key);
      if (!m) continue;
      // A _bytes metric must come from a kB line, a count from a bare number:
      // anything else is a cut or changed line.
      if (m->name.ends_with("_bytes") != f.in_kb) {
        problems.add(f.key + ": unexpected unit");
        continue;
      }
      out.add(*m, f.value);
      ++emitted;
    }
    if (emitted == 0) return Status::failed(file_.path() + ": no known fields");
    return problems.status();
  }

 private:
  ProcFile file_;
  KeyedMetrics metrics_;
};

}  // namespace

std::vector<MeminfoField> parse_meminfo(std::string_view text, Problems& problems) {
  std::vector<MeminfoField> out;
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    if (trim(line).empty()) continue;
    size_t colon = line.find(':');
    Fields fields(colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1));
    std::string_view value, unit;
    if (colon == std::string_view::npos || !fields.next(value)) {
      problems.add("malformed line '" + std::string(line.substr(0, 60)) + "'");
      continue;
    }
    auto v = parse_u64(value);
    bool has_unit = fields.next(unit);
    if (!v || (has_unit && unit != "kB")) {
      problems.add("bad value in '" + std::string(line.substr(0, 60)) + "'");
      continue;
    }
    // "Active(anon)" becomes "Active_anon", as node_exporter names it.
    std::string key;
    for (char c : line.substr(0, colon)) {
      if (c == '(') {
        key += '_';
      } else if (c != ')') {
        key += c;
      }
    }
    out.push_back({std::move(key), static_cast<double>(*v) * (has_unit ? 1024.0 : 1.0), has_unit});
  }
  return out;
}

const CollectorFactory kMeminfoCollector{
    "meminfo", "Memory, swap, page cache, slab and huge page figures (/proc/meminfo)", kMetrics,
    [](const Config& c) -> std::unique_ptr<Collector> { return std::make_unique<MeminfoCollector>(c); }};

}  // namespace nodeperf
