#pragma once

#include <string>
#include <string_view>

namespace nodeperf {

// gzip (RFC 1952) of the input. Level 1: scrapes are small text, and
// level 1 keeps most of the size gain at a fraction of the CPU.
std::string gzip(std::string_view input, int level = 1);

}  // namespace nodeperf
