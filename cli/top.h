// `nodeperf top`: a live terminal view of the node, read from an agent's
// JSON API (docs/api.md), or from an agent run in this process
// (--standalone). See docs/top.md.
#pragma once

#include <string>
#include <vector>

namespace nodeperf::top {

// Runs the command; returns the process exit code.
int run_top(const std::vector<std::string>& args);

// The text of `nodeperf top --help`.
std::string top_help();

}  // namespace nodeperf::top
