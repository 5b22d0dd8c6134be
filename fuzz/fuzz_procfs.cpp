// The /proc parsers. The first byte picks the file, the rest is its text:
// 0 stat, 1 diskstats, 2 meminfo, 3 net/dev, 4 net/snmp and net/netstat,
// 5 pressure/*, 6 loadavg, 7 <pid>/stat, 8 vmstat. vmstat has no parser of
// its own (the collector reads it in place), so that case runs the real
// collector over a scratch host root holding the input as proc/vmstat.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "agent/config.h"
#include "collectors/cpu.h"
#include "collectors/diskstats.h"
#include "collectors/loadavg.h"
#include "collectors/meminfo.h"
#include "collectors/netdev.h"
#include "collectors/netstat.h"
#include "collectors/pressure.h"
#include "collectors/process.h"
#include "collectors/vmstat.h"

namespace {

using namespace nodeperf;

struct VmstatRoot {
  std::string root, file;
  std::unique_ptr<Collector> collector;
  VmstatRoot() {
    char dir[] = "/tmp/nodeperf-fuzz-procfs.XXXXXX";
    if (!mkdtemp(dir)) abort();
    root = dir;
    file = root + "/proc/vmstat";
    if (mkdir((root + "/proc").c_str(), 0700) != 0) abort();
    write("");
    Config config;
    config.host_root = root;
    collector = kVmstatCollector.make(config);
  }
  ~VmstatRoot() {
    unlink(file.c_str());
    rmdir((root + "/proc").c_str());
    rmdir(root.c_str());
  }
  // Rewrites the file in place: the collector keeps one descriptor open and
  // reads from offset 0, as it does on procfs.
  void write(std::string_view text) {
    int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) abort();
    close(fd);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  Problems problems("fuzz");
  switch (data[0] % 9) {
    case 0: parse_proc_stat(text, problems); break;
    case 1: parse_diskstats(text, problems); break;
    case 2: parse_meminfo(text, problems); break;
    case 3: parse_netdev(text, problems); break;
    case 4: parse_snmp(text, "/proc/net/snmp", problems); break;
    case 5: parse_pressure(text); break;
    case 6: parse_loadavg(text); break;
    case 7: parse_process_stat(text); break;
    case 8: {
      static VmstatRoot vmstat;
      vmstat.write(text);
      SampleSink sink;
      vmstat.collector->collect(sink);
      break;
    }
  }
  problems.status();
  return 0;
}
