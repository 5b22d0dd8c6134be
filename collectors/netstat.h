// /proc/net/snmp and /proc/net/netstat: IP, ICMP, TCP and UDP counters.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "collectors/collector.h"

namespace nodeperf {

struct SnmpValue {
  std::string key;  // "Tcp_RetransSegs"
  double value;
};

// Both files pair a header line ("Tcp: RtoAlgorithm RtoMin ...") with a value
// line ("Tcp: 1 200 ..."); keys are "<section>_<field>".
std::vector<SnmpValue> parse_snmp(std::string_view text, std::string_view file, Problems& problems);

// The same walk without building anything: visit(section, name, value) for
// each well-paired value; the caller converts only what it exports.
void for_each_snmp_value(std::string_view text, std::string_view file, Problems& problems,
                         const std::function<void(std::string_view, std::string_view, std::string_view)>& visit);

extern const CollectorFactory kNetstatCollector;

}  // namespace nodeperf
