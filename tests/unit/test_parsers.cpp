// The pure parsers of collectors/ over the checked-in fixture files
// (tests/fixtures/README.md describes them): exact values for good lines,
// bad lines skipped with one problem naming the file, never a crash.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "collectors/cpu.h"
#include "collectors/diskstats.h"
#include "collectors/loadavg.h"
#include "collectors/meminfo.h"
#include "collectors/netdev.h"
#include "collectors/netstat.h"
#include "collectors/parse.h"
#include "collectors/pressure.h"
#include "collectors/proc_file.h"
#include "collectors/process.h"

using namespace nodeperf;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

// The content of tests/fixtures/<relative>, byte for byte.
std::string read_fixture(const std::string& relative) {
  std::string path = std::string(NODEPERF_FIXTURES) + "/" + relative;
  std::ifstream in(path, std::ios::binary);
  INFO("fixture " << path);
  REQUIRE(in.good());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

const DiskStats* find_disk(const std::vector<DiskStats>& disks, std::string_view device) {
  auto it = std::find_if(disks.begin(), disks.end(), [&](const DiskStats& d) { return d.device == device; });
  return it == disks.end() ? nullptr : &*it;
}

const NetDevStats* find_netdev(const std::vector<NetDevStats>& devices, std::string_view device) {
  auto it = std::find_if(devices.begin(), devices.end(), [&](const NetDevStats& d) { return d.device == device; });
  return it == devices.end() ? nullptr : &*it;
}

template <typename T>
const T* find_key(const std::vector<T>& values, std::string_view key) {
  auto it = std::find_if(values.begin(), values.end(), [&](const T& v) { return v.key == key; });
  return it == values.end() ? nullptr : &*it;
}

template <typename T, size_t N>
std::vector<uint64_t> first(const std::array<T, N>& values, size_t n) {
  return std::vector<uint64_t>(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(n));
}

}  // namespace

// ---------------------------------------------------------------------------
// parse.h helpers

TEST_CASE("parse_u64 takes the whole field as an unsigned decimal", "[parsers][parse]") {
  CHECK(parse_u64("0") == uint64_t{0});
  CHECK(parse_u64("18446744073709551615") == std::numeric_limits<uint64_t>::max());
  CHECK_FALSE(parse_u64("18446744073709551616"));  // 2^64
  CHECK_FALSE(parse_u64("-1"));
  CHECK_FALSE(parse_u64("+1"));
  CHECK_FALSE(parse_u64("12x"));
  CHECK_FALSE(parse_u64(" 1"));
  CHECK_FALSE(parse_u64(""));
}

TEST_CASE("parse_double takes the whole field as a fixed decimal", "[parsers][parse]") {
  CHECK(parse_double("4.63") == 4.63);
  CHECK(parse_double("-1") == -1.0);
  CHECK(parse_double("0") == 0.0);
  CHECK_FALSE(parse_double("1e3"));
  CHECK_FALSE(parse_double("1.5x"));
  CHECK_FALSE(parse_double(""));
}

// Regression (fixed): collectors/parse.h parse_double promises "a finite decimal number",
// but std::from_chars accepts "nan", "inf" and "infinity" in every
// chars_format, so parse_double("nan") is NaN and parse_double("inf") is
// +Inf. Through it, parse_loadavg("nan 0.5 0.5 1/80 1") returns {NaN, 0.5,
// 0.5} (NaN passes the `< 0` check) and parse_snmp takes "inf" as a value:
// a malformed file exports NaN/+Inf instead of being reported.
TEST_CASE("parse_double refuses nan and inf", "[parsers][parse]") {
  CHECK_FALSE(parse_double("nan"));
  CHECK_FALSE(parse_double("inf"));
  CHECK_FALSE(parse_double("-infinity"));
  CHECK_FALSE(parse_loadavg("nan 0.5 0.5 1/80 1\n"));
}

TEST_CASE("Lines and Fields split procfs text", "[parsers][parse]") {
  SECTION("the last line may lack its newline") {
    Lines lines("a\nb c\n\nd");
    std::string_view line;
    std::vector<std::string> got;
    while (lines.next(line)) got.emplace_back(line);
    CHECK(got == std::vector<std::string>{"a", "b c", "", "d"});
  }
  SECTION("fields are separated by runs of spaces and tabs") {
    Fields fields("  8\t 0   sda 1 ");
    std::string_view f;
    std::vector<std::string> got;
    while (fields.next(f)) got.emplace_back(f);
    CHECK(got == std::vector<std::string>{"8", "0", "sda", "1"});
  }
  SECTION("trim") {
    CHECK(trim(" \t x y \t") == "x y");
    CHECK(trim(" \t ").empty());
  }
}

// ---------------------------------------------------------------------------
// proc_file.h

TEST_CASE("host_path joins the host root and a relative path", "[parsers][proc_file]") {
  CHECK(host_path("/", "proc/stat") == "/proc/stat");
  CHECK(host_path("/host", "proc/stat") == "/host/proc/stat");
  CHECK(host_path("/host/", "/proc/stat") == "/host/proc/stat");
  CHECK(host_path("", "proc") == "/proc");
}

TEST_CASE("ProcFile reads whole files and names the file when it cannot", "[parsers][proc_file]") {
  SECTION("a fixture, twice through the same descriptor") {
    ProcFile file(std::string(NODEPERF_FIXTURES) + "/hostroot-normal/proc/loadavg");
    std::string error;
    auto first_read = file.read(&error);
    REQUIRE(first_read);
    std::string copy(*first_read);
    CHECK(copy == read_fixture("hostroot-normal/proc/loadavg"));
    auto second_read = file.read(&error);
    REQUIRE(second_read);
    CHECK(*second_read == copy);
  }
  SECTION("a file larger than the first buffer") {
    auto path = std::filesystem::temp_directory_path() / ("nodeperf-procfile-" + std::to_string(getpid()));
    std::string big;
    for (int i = 0; i < 10000; ++i) big += "line " + std::to_string(i) + "\n";
    REQUIRE(big.size() > 3 * 16384);
    std::ofstream(path, std::ios::binary) << big;
    ProcFile file(path.string());
    auto text = file.read(nullptr);
    REQUIRE(text);
    CHECK(*text == big);
    std::filesystem::remove(path);
  }
  SECTION("an empty file is read as empty text") {
    ProcFile file(std::string(NODEPERF_FIXTURES) + "/hostroot-empty/proc/stat");
    auto text = file.read(nullptr);
    REQUIRE(text);
    CHECK(text->empty());
  }
  SECTION("a missing file") {
    std::string path = std::string(NODEPERF_FIXTURES) + "/hostroot-old-kernel/proc/pressure/cpu";
    ProcFile file(path);
    std::string error;
    CHECK_FALSE(file.read(&error));
    CHECK(error == path + ": open: No such file or directory");
    CHECK_FALSE(file.read(nullptr));  // no error out-parameter: still no crash
  }
}

// ---------------------------------------------------------------------------
// /proc/stat

TEST_CASE("parse_proc_stat: a real /proc/stat", "[parsers][cpu]") {
  Problems problems;
  ProcStat stat = parse_proc_stat(read_fixture("hostroot-normal/proc/stat"), problems);
  CHECK(problems.status().kind == Status::Kind::ok);
  REQUIRE(stat.cpus.size() == 2);  // the all-cpu "cpu" line is not one of them
  CHECK(stat.cpus[0].cpu == "0");
  CHECK(stat.cpus[0].columns == 10);
  CHECK(first(stat.cpus[0].ticks, 10) == std::vector<uint64_t>{15501, 0, 2134, 58886, 38, 0, 5, 19, 0, 0});
  CHECK(stat.cpus[1].cpu == "1");
  CHECK(first(stat.cpus[1].ticks, 10) == std::vector<uint64_t>{21760, 0, 2852, 51480, 383, 0, 63, 29, 0, 0});
  CHECK(stat.intr == uint64_t{265820});
  CHECK(stat.ctxt == uint64_t{390736});
  CHECK(stat.btime == uint64_t{1795890798});
  CHECK(stat.processes == uint64_t{5685});
  CHECK(stat.procs_running == uint64_t{6});
  CHECK(stat.procs_blocked == uint64_t{0});
}

TEST_CASE("parse_proc_stat: an old kernel's 7 cpu columns", "[parsers][cpu][old-kernel]") {
  Problems problems;
  ProcStat stat = parse_proc_stat(read_fixture("hostroot-old-kernel/proc/stat"), problems);
  CHECK(problems.status().kind == Status::Kind::ok);
  REQUIRE(stat.cpus.size() == 2);
  CHECK(stat.cpus[0].columns == 7);
  CHECK(first(stat.cpus[0].ticks, 10) == std::vector<uint64_t>{1132, 34, 1441, 11311718, 3675, 127, 438, 0, 0, 0});
  CHECK(stat.cpus[1].columns == 7);
  CHECK(stat.intr == uint64_t{114930548});
  CHECK(stat.btime == uint64_t{1062191376});
}

TEST_CASE("parse_proc_stat: malformed lines are skipped and reported", "[parsers][cpu][malformed]") {
  SECTION("the malformed fixture") {
    Problems problems;
    ProcStat stat = parse_proc_stat(read_fixture("hostroot-malformed/proc/stat"), problems);
    // cpu1 (non-number), cpu2 (negative), cpu3 (> 2^64), cpuX (bad name),
    // ctxt, btime (> 2^64), procs_blocked (negative), cpu4 (cut mid-line).
    Status status = problems.status();
    CHECK(status.kind == Status::Kind::partial);
    CHECK(status.error == "malformed line for cpu1 (and 7 more)");
    REQUIRE(stat.cpus.size() == 1);
    CHECK(stat.cpus[0].cpu == "0");
    CHECK(first(stat.cpus[0].ticks, 10) == std::vector<uint64_t>{50, 1, 60, 500, 5, 0, 3, 2, 7, 1});
    CHECK(stat.intr == uint64_t{12345});
    CHECK(stat.processes == uint64_t{777});
    CHECK(stat.procs_running == uint64_t{3});
    CHECK_FALSE(stat.ctxt);
    CHECK_FALSE(stat.btime);
    CHECK_FALSE(stat.procs_blocked);
  }
  SECTION("an empty file") {
    Problems problems;
    ProcStat stat = parse_proc_stat("", problems);
    CHECK(stat.cpus.empty());
    CHECK(problems.status().kind == Status::Kind::partial);
    CHECK(problems.status().error == "no per-cpu lines");
  }
  SECTION("fewer than 4 columns") {
    Problems problems;
    ProcStat stat = parse_proc_stat("cpu0 1 2 3\ncpu1 1 2 3 4\n", problems);
    REQUIRE(stat.cpus.size() == 1);
    CHECK(stat.cpus[0].cpu == "1");
    CHECK(problems.status().error == "malformed line for cpu0");
  }
  SECTION("more columns than known: the first 10 are kept") {
    Problems problems;
    ProcStat stat = parse_proc_stat("cpu0 1 2 3 4 5 6 7 8 9 10 11 12\n", problems);
    CHECK(problems.status().kind == Status::Kind::ok);
    REQUIRE(stat.cpus.size() == 1);
    CHECK(stat.cpus[0].columns == 10);
    CHECK(stat.cpus[0].ticks[9] == 10);
  }
  SECTION("a counter line without its value") {
    Problems problems;
    ProcStat stat = parse_proc_stat("cpu0 1 2 3 4\nctxt\n", problems);
    CHECK_FALSE(stat.ctxt);
    CHECK(problems.status().error == "line 'ctxt' has no value");
  }
}

// ---------------------------------------------------------------------------
// /proc/diskstats

TEST_CASE("parse_diskstats: a real /proc/diskstats (17 counters)", "[parsers][diskstats]") {
  Problems problems;
  auto disks = parse_diskstats(read_fixture("hostroot-normal/proc/diskstats"), problems);
  CHECK(problems.status().kind == Status::Kind::ok);
  CHECK(disks.size() == 11);  // loop0-7, vda, vda1, zram0: the parser filters nothing
  const DiskStats* vda = find_disk(disks, "vda");
  REQUIRE(vda);
  CHECK(vda->major == 254);
  CHECK(vda->minor == 0);
  CHECK(vda->columns == 17);
  CHECK(first(vda->stats, 17) == std::vector<uint64_t>{32238, 8683, 2762906, 12250, 19239, 8969, 3243896, 16066, 0,
                                                       7684, 29219, 4333, 58, 1604664, 872, 536, 30});
  const DiskStats* vda1 = find_disk(disks, "vda1");
  REQUIRE(vda1);
  CHECK(vda1->minor == 1);
  const DiskStats* loop0 = find_disk(disks, "loop0");
  REQUIRE(loop0);
  CHECK(loop0->major == 7);
  CHECK(loop0->columns == 17);
  CHECK(first(loop0->stats, 17) == std::vector<uint64_t>(17, 0));
}

TEST_CASE("parse_diskstats: an old kernel's 14 fields (11 counters)", "[parsers][diskstats][old-kernel]") {
  Problems problems;
  auto disks = parse_diskstats(read_fixture("hostroot-old-kernel/proc/diskstats"), problems);
  CHECK(problems.status().kind == Status::Kind::ok);
  REQUIRE(disks.size() == 4);
  for (const DiskStats& d : disks) CHECK(d.columns == 11);
  const DiskStats* sda = find_disk(disks, "sda");
  REQUIRE(sda);
  CHECK(first(sda->stats, 17) ==
        std::vector<uint64_t>{4217, 1037, 300874, 2860, 3421, 6370, 78288, 12050, 2, 5020, 14910, 0, 0, 0, 0, 0, 0});
  const DiskStats* dm = find_disk(disks, "dm-0");
  REQUIRE(dm);
  CHECK(dm->major == 253);
}

TEST_CASE("parse_diskstats: malformed lines are skipped and reported", "[parsers][diskstats][malformed]") {
  Problems problems;
  auto disks = parse_diskstats(read_fixture("hostroot-malformed/proc/diskstats"), problems);
  // sdb (non-number), sdc (negative), sdd (> 2^64), sdf (no counters),
  // sdg (bad major), sdh (cut mid-line); the blank line is ignored.
  Status status = problems.status();
  CHECK(status.kind == Status::Kind::partial);
  CHECK(status.error == "malformed line for sdb (and 5 more)");
  std::vector<std::string> names;
  for (const DiskStats& d : disks) names.push_back(d.device);
  CHECK(names == std::vector<std::string>{"sda", "sda1", "sde"});

  SECTION("20 fields: 17 counters") {
    const DiskStats* sda = find_disk(disks, "sda");
    REQUIRE(sda);
    CHECK(sda->columns == 17);
    CHECK(first(sda->stats, 17) ==
          std::vector<uint64_t>{100, 2, 3000, 40, 500, 6, 7000, 80, 1, 90, 120, 11, 12, 13, 14, 15, 16});
  }
  SECTION("18 fields: 15 counters") {
    const DiskStats* sda1 = find_disk(disks, "sda1");
    REQUIRE(sda1);
    CHECK(sda1->columns == 15);
    CHECK(first(sda1->stats, 15) == std::vector<uint64_t>{10, 0, 200, 4, 5, 0, 60, 8, 0, 9, 12, 1, 0, 8, 2});
  }
  SECTION("22 fields: counters past 17 are ignored, 2^64-1 is kept") {
    const DiskStats* sde = find_disk(disks, "sde");
    REQUIRE(sde);
    CHECK(sde->columns == 17);
    CHECK(sde->stats[0] == std::numeric_limits<uint64_t>::max());
    CHECK(sde->stats[16] == 17);
  }
}

// Regression (fixed): collectors/diskstats.cpp parse_diskstats accepts any counter count
// from 11 up, but the kernel writes exactly 11, 15 or 17 (the header says
// so). A line with 13 counters is a cut line (its last number may be cut
// too) and should be skipped and reported; it is accepted with columns=13.
TEST_CASE("parse_diskstats: a line of 13 counters is reported", "[parsers][diskstats][malformed]") {
  Problems problems;
  auto disks = parse_diskstats("   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 1\n", problems);
  CHECK(disks.empty());
  CHECK(problems.status().kind == Status::Kind::partial);
}

// ---------------------------------------------------------------------------
// /proc/meminfo

TEST_CASE("parse_meminfo: a real /proc/meminfo", "[parsers][meminfo]") {
  Problems problems;
  auto fields = parse_meminfo(read_fixture("hostroot-normal/proc/meminfo"), problems);
  CHECK(problems.status().kind == Status::Kind::ok);
  CHECK(fields.size() == 54);
  REQUIRE_FALSE(fields.empty());
  CHECK(fields.front().key == "MemTotal");
  CHECK(fields.front().value == 24684084.0 * 1024);
  auto value = [&](std::string_view key) {
    const MeminfoField* f = find_key(fields, key);
    INFO("meminfo key " << key);
    REQUIRE(f);
    return f->value;
  };
  CHECK(value("MemAvailable") == 23696116.0 * 1024);
  CHECK(value("Active_anon") == 1632.0 * 1024);      // "Active(anon)"
  CHECK(value("Inactive_file") == 265412.0 * 1024);  // "Inactive(file)"
  CHECK(value("VmallocTotal") == 34359738367.0 * 1024);
  CHECK(value("HugePages_Total") == 0);  // a count: no kB, no scaling
  CHECK(value("Hugepagesize") == 2048.0 * 1024);
  CHECK(value("DirectMap1G") == 25165824.0 * 1024);
  for (const MeminfoField& f : fields) {
    INFO(f.key);
    CHECK(f.key.find_first_of("():") == std::string::npos);
  }
}

TEST_CASE("parse_meminfo: an old kernel without MemAvailable", "[parsers][meminfo][old-kernel]") {
  Problems problems;
  auto fields = parse_meminfo(read_fixture("hostroot-old-kernel/proc/meminfo"), problems);
  CHECK(problems.status().kind == Status::Kind::ok);
  CHECK(fields.size() == 42);
  CHECK_FALSE(find_key(fields, "MemAvailable"));
  REQUIRE(find_key(fields, "VmallocChunk"));
  CHECK(find_key(fields, "VmallocChunk")->value == 34359367676.0 * 1024);
}

TEST_CASE("parse_meminfo: malformed lines are skipped and reported", "[parsers][meminfo][malformed]") {
  SECTION("the malformed fixture") {
    Problems problems;
    auto fields = parse_meminfo(read_fixture("hostroot-malformed/proc/meminfo"), problems);
    // MemFree (no colon), MemAvailable (negative), Buffers (> 2^64),
    // Cached (non-number), Dirty (MB, not kB), Shmem (no value).
    Status status = problems.status();
    CHECK(status.kind == Status::Kind::partial);
    CHECK(status.error == "malformed line 'MemFree  1024 kB' (and 5 more)");
    REQUIRE(find_key(fields, "MemTotal"));
    CHECK(find_key(fields, "MemTotal")->value == 16384.0 * 1024);
    REQUIRE(find_key(fields, "SwapTotal"));
    CHECK(find_key(fields, "SwapTotal")->value == 0);
    REQUIRE(find_key(fields, "HugePages_Total"));
    CHECK(find_key(fields, "HugePages_Total")->value == 4);
    for (std::string_view bad : {"MemFree", "MemAvailable", "Buffers", "Cached", "Dirty", "Shmem"}) {
      INFO(bad);
      CHECK_FALSE(find_key(fields, bad));
    }
  }
  SECTION("a bad value is named") {
    Problems problems;
    parse_meminfo("Cached: abc kB\n", problems);
    CHECK(problems.status().error == "bad value in 'Cached: abc kB'");
  }
  SECTION("blank lines are not problems") {
    Problems problems;
    auto fields = parse_meminfo("\nMemTotal: 1 kB\n  \n", problems);
    CHECK(problems.status().kind == Status::Kind::ok);
    CHECK(fields.size() == 1);
  }
}

// ---------------------------------------------------------------------------
// /proc/net/dev

TEST_CASE("parse_netdev: a real /proc/net/dev", "[parsers][netdev]") {
  Problems problems;
  auto devices = parse_netdev(read_fixture("hostroot-normal/proc/net/dev"), problems);
  CHECK(problems.status().kind == Status::Kind::ok);
  std::vector<std::string> names;
  for (const NetDevStats& d : devices) names.push_back(d.device);
  CHECK(names == std::vector<std::string>{"lo", "ifb0", "ifb1", "eth0"});
  const NetDevStats* eth0 = find_netdev(devices, "eth0");
  REQUIRE(eth0);
  CHECK(first(eth0->counters, 16) ==
        std::vector<uint64_t>{45318924, 1056, 0, 0, 0, 0, 0, 0, 42931, 536, 0, 0, 0, 0, 0, 0});
  const NetDevStats* lo = find_netdev(devices, "lo");
  REQUIRE(lo);
  CHECK(lo->counters[0] == 264862);
  CHECK(lo->counters[8] == 264862);
}

TEST_CASE("parse_netdev: a counter glued to the colon", "[parsers][netdev][old-kernel]") {
  Problems problems;
  auto devices = parse_netdev(read_fixture("hostroot-old-kernel/proc/net/dev"), problems);
  CHECK(problems.status().kind == Status::Kind::ok);
  const NetDevStats* eth0 = find_netdev(devices, "eth0");
  REQUIRE(eth0);
  CHECK(first(eth0->counters, 16) ==
        std::vector<uint64_t>{123456789012, 987654, 1, 2, 0, 0, 0, 12, 9876543210, 876543, 0, 0, 0, 3, 1, 0});
}

TEST_CASE("parse_netdev: odd names are kept, malformed lines reported", "[parsers][netdev][malformed]") {
  Problems problems;
  auto devices = parse_netdev(read_fixture("hostroot-malformed/proc/net/dev"), problems);
  // eth1 (negative), eth2 (non-number), eth3 (> 2^64), a line without a
  // name, eth5 (cut mid-line).
  Status status = problems.status();
  CHECK(status.kind == Status::Kind::partial);
  CHECK(status.error == "malformed line for 'eth1' (and 4 more)");
  std::vector<std::string> names;
  for (const NetDevStats& d : devices) names.push_back(d.device);
  CHECK(names == std::vector<std::string>{"lo", "we\"ird\\nic", "wlan-\xc3\xbc", "eth4"});
  const NetDevStats* weird = find_netdev(devices, "we\"ird\\nic");
  REQUIRE(weird);
  CHECK(first(weird->counters, 16) ==
        std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16});
  const NetDevStats* wlan = find_netdev(devices, "wlan-\xc3\xbc");
  REQUIRE(wlan);
  CHECK(first(wlan->counters, 16) ==
        std::vector<uint64_t>{100, 200, 0, 0, 0, 0, 0, 3, 400, 500, 0, 0, 0, 0, 0, 0});
  const NetDevStats* eth4 = find_netdev(devices, "eth4");
  REQUIRE(eth4);
  CHECK(eth4->counters[0] == 4294967296);
}

// ---------------------------------------------------------------------------
// /proc/net/snmp and /proc/net/netstat

TEST_CASE("parse_snmp: a real /proc/net/snmp and /proc/net/netstat", "[parsers][netstat]") {
  SECTION("snmp") {
    Problems problems;
    auto values = parse_snmp(read_fixture("hostroot-normal/proc/net/snmp"), "proc/net/snmp", problems);
    CHECK(problems.status().kind == Status::Kind::ok);
    CHECK(values.size() == 83);  // every name of every section
    auto value = [&](std::string_view key) {
      const SnmpValue* v = find_key(values, key);
      INFO("snmp key " << key);
      REQUIRE(v);
      return v->value;
    };
    CHECK(value("Ip_Forwarding") == 2);
    CHECK(value("Ip_OutTransmits") == 715);
    CHECK(value("Icmp_InMsgs") == 1);
    CHECK(value("IcmpMsg_InType3") == 1);
    CHECK(value("Tcp_MaxConn") == -1);  // signed
    CHECK(value("Tcp_ActiveOpens") == 24);
    CHECK(value("Tcp_PassiveOpens") == 13);
    CHECK(value("Tcp_InSegs") == 1216);
    CHECK(value("Tcp_OutSegs") == 690);
    CHECK(value("Tcp_OutRsts") == 2);
    CHECK(value("Udp_InDatagrams") == 26);
    CHECK(value("Udp_OutDatagrams") == 27);
    CHECK(value("UdpLite_MemErrors") == 0);
  }
  SECTION("netstat") {
    Problems problems;
    auto values = parse_snmp(read_fixture("hostroot-normal/proc/net/netstat"), "proc/net/netstat", problems);
    CHECK(problems.status().kind == Status::Kind::ok);
    CHECK(values.size() == 135 + 18 + 76);
    REQUIRE(find_key(values, "TcpExt_TW"));
    CHECK(find_key(values, "TcpExt_TW")->value == 22);
    REQUIRE(find_key(values, "TcpExt_TCPTimeouts"));
    CHECK(find_key(values, "TcpExt_TCPTimeouts")->value == 2);
    REQUIRE(find_key(values, "TcpExt_TCPRcvCoalesce"));
    CHECK(find_key(values, "TcpExt_TCPRcvCoalesce")->value == 815);
    REQUIRE(find_key(values, "IpExt_InOctets"));
    CHECK(find_key(values, "IpExt_InOctets")->value == 45568818);
    REQUIRE(find_key(values, "IpExt_OutOctets"));
    CHECK(find_key(values, "IpExt_OutOctets")->value == 299433);
    REQUIRE(find_key(values, "MPTcpExt_WinProbe"));
    CHECK(find_key(values, "MPTcpExt_WinProbe")->value == 0);
  }
}

TEST_CASE("parse_snmp: malformed pairs are reported with the file", "[parsers][netstat][malformed]") {
  SECTION("snmp: a bad value, short and mismatched pairs") {
    Problems problems;
    auto values = parse_snmp(read_fixture("hostroot-malformed/proc/net/snmp"), "proc/net/snmp", problems);
    Status status = problems.status();
    CHECK(status.kind == Status::Kind::partial);
    CHECK_THAT(status.error, StartsWith("proc/net/snmp: bad value for Icmp_InErrors (and "));
    REQUIRE(find_key(values, "Ip_Forwarding"));
    CHECK(find_key(values, "Ip_Forwarding")->value == 1);
    REQUIRE(find_key(values, "Ip_InHdrErrors"));
    CHECK(find_key(values, "Ip_InHdrErrors")->value == 7);
    REQUIRE(find_key(values, "Icmp_InMsgs"));
    CHECK(find_key(values, "Icmp_InMsgs")->value == 5);
    REQUIRE(find_key(values, "Icmp_OutMsgs"));
    CHECK(find_key(values, "Icmp_OutMsgs")->value == 9);
    CHECK_FALSE(find_key(values, "Icmp_InErrors"));
    CHECK_FALSE(find_key(values, "UdpLite_InErrors"));  // its values line is Udp's
  }
  SECTION("netstat: a mismatched pair, then a header cut short") {
    Problems problems;
    auto values = parse_snmp(read_fixture("hostroot-malformed/proc/net/netstat"), "proc/net/netstat", problems);
    Status status = problems.status();
    CHECK(status.kind == Status::Kind::partial);
    CHECK(status.error == "proc/net/netstat: mismatched lines 'MPTcpExt:' and 'IpExt:' (and 1 more)");
    REQUIRE(values.size() == 4);
    CHECK(values[0].key == "TcpExt_SyncookiesSent");
    CHECK(values[0].value == 1);
    CHECK(values[3].key == "TcpExt_ListenDrops");
    CHECK(values[3].value == 4);
  }
  SECTION("a header without values") {
    Problems problems;
    auto values = parse_snmp("Tcp: A B\n", "proc/net/snmp", problems);
    CHECK(values.empty());
    CHECK(problems.status().error == "proc/net/snmp: header without values");
  }
  SECTION("fewer values than names is reported") {
    Problems problems;
    parse_snmp("Tcp: A B C\nTcp: 1 2\n", "proc/net/snmp", problems);
    CHECK(problems.status().error == "proc/net/snmp: Tcp has fewer values than names");
  }
  SECTION("an empty file") {
    Problems problems;
    CHECK(parse_snmp("", "proc/net/snmp", problems).empty());
  }
}

// Regression (fixed): collectors/netstat.cpp parse_snmp: a value line with MORE values than
// its header has names ("Udp: InDatagrams NoPorts InErrors" / "Udp: 10 20 30
// 40") is taken silently: the extra value is dropped and no problem is
// reported, so Status stays ok although the pair does not line up. Expected:
// a problem naming the file and section (node_exporter rejects the file on
// any field count mismatch).
TEST_CASE("parse_snmp: more values than names is reported", "[parsers][netstat][malformed]") {
  Problems problems;
  parse_snmp("Udp: InDatagrams NoPorts InErrors\nUdp: 10 20 30 40\n", "proc/net/snmp", problems);
  CHECK(problems.status().kind == Status::Kind::partial);
}

// Regression (fixed): collectors/netstat.cpp parse_snmp: when a value line has FEWER values
// than names (a line cut short, e.g. "Tcp: 24 1" cut from "Tcp: 24 13 0"),
// the problem is reported but the values read so far are still returned,
// including the last one, which may be a number cut in the middle:
// Tcp_PassiveOpens comes out as 1 instead of 13. Expected: the mismatched
// pair is skipped whole, as node_exporter does; no garbage value.
TEST_CASE("parse_snmp: a cut value line yields no values", "[parsers][netstat][malformed]") {
  Problems problems;
  auto values = parse_snmp("Tcp: ActiveOpens PassiveOpens AttemptFails\nTcp: 24 1", "proc/net/snmp", problems);
  CHECK(problems.status().kind == Status::Kind::partial);
  CHECK_FALSE(find_key(values, "Tcp_PassiveOpens"));
}

// ---------------------------------------------------------------------------
// /proc/pressure/*

TEST_CASE("parse_pressure: real PSI files", "[parsers][pressure]") {
  auto cpu = parse_pressure(read_fixture("hostroot-normal/proc/pressure/cpu"));
  REQUIRE(cpu);
  CHECK(cpu->some_us == uint64_t{92545940});
  CHECK(cpu->full_us == uint64_t{0});
  auto memory = parse_pressure(read_fixture("hostroot-normal/proc/pressure/memory"));
  REQUIRE(memory);
  CHECK(memory->some_us == uint64_t{0});
  CHECK(memory->full_us == uint64_t{0});
  auto io = parse_pressure(read_fixture("hostroot-normal/proc/pressure/io"));
  REQUIRE(io);
  CHECK(io->some_us == uint64_t{3860040});
  CHECK(io->full_us == uint64_t{3506763});
}

TEST_CASE("parse_pressure: partial and malformed PSI text", "[parsers][pressure][malformed]") {
  SECTION("no full line (cpu before 5.13)") {
    auto p = parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n");
    REQUIRE(p);
    CHECK(p->some_us == uint64_t{42});
    CHECK_FALSE(p->full_us);
  }
  SECTION("a total that is not a number") {
    CHECK_FALSE(parse_pressure(read_fixture("hostroot-malformed/proc/pressure/cpu")));
    CHECK_FALSE(parse_pressure("some avg10=0.00 total=-5\n"));
    CHECK_FALSE(parse_pressure("some avg10=0.00 total=18446744073709551616\n"));
  }
  SECTION("an empty file or no some line") {
    CHECK_FALSE(parse_pressure(read_fixture("hostroot-malformed/proc/pressure/io")));
    CHECK_FALSE(parse_pressure("full avg10=0.00 avg60=0.00 avg300=0.00 total=3\n"));
    CHECK_FALSE(parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00\n"));
    CHECK_FALSE(parse_pressure("not psi at all"));
  }
}

// ---------------------------------------------------------------------------
// /proc/loadavg

TEST_CASE("parse_loadavg", "[parsers][loadavg]") {
  SECTION("real files") {
    auto load = parse_loadavg(read_fixture("hostroot-normal/proc/loadavg"));
    REQUIRE(load);
    CHECK(*load == std::array<double, 3>{4.63, 1.82, 0.72});
    auto old = parse_loadavg(read_fixture("hostroot-old-kernel/proc/loadavg"));
    REQUIRE(old);
    CHECK(*old == std::array<double, 3>{0.20, 0.18, 0.12});
  }
  SECTION("malformed") {
    CHECK_FALSE(parse_loadavg(read_fixture("hostroot-malformed/proc/loadavg")));  // cut mid-line
    CHECK_FALSE(parse_loadavg(""));
    CHECK_FALSE(parse_loadavg("0.5 -1.0 0.2 1/100 123\n"));
    CHECK_FALSE(parse_loadavg("0.5 x 0.2 1/100 123\n"));
  }
}

// ---------------------------------------------------------------------------
// /proc/<pid>/stat

TEST_CASE("parse_process_stat", "[parsers][process]") {
  SECTION("a real stat file") {
    auto stat = parse_process_stat(read_fixture("process/stat-cat"));
    REQUIRE(stat);
    CHECK(stat->utime_ticks == 0);
    CHECK(stat->stime_ticks == 0);
    CHECK(stat->start_ticks == 99786);
    CHECK(stat->vsize_bytes == 3133440);
    CHECK(stat->rss_pages == 411);
  }
  SECTION("a command name with spaces and parentheses") {
    auto stat = parse_process_stat(read_fixture("process/stat-odd-comm"));
    REQUIRE(stat);
    CHECK(stat->utime_ticks == 1234);
    CHECK(stat->stime_ticks == 567);
    CHECK(stat->start_ticks == 99786);
    CHECK(stat->vsize_bytes == 3133440);
    CHECK(stat->rss_pages == 411);
  }
  SECTION("malformed") {
    CHECK_FALSE(parse_process_stat(read_fixture("process/stat-truncated")));
    CHECK_FALSE(parse_process_stat(""));
    CHECK_FALSE(parse_process_stat("1 cat R 1 2 3"));  // no parenthesis
    CHECK_FALSE(parse_process_stat(
        "1 (x) R 1 1 1 0 -1 0 0 0 0 0 -5 0 0 0 20 0 1 0 99 3133440 411 0\n"));  // negative utime
  }
}
